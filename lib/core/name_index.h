/* name_index.h: an open-addressing hash table from names to array indices (internal). */
#ifndef R1_NAME_INDEX_H
#define R1_NAME_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "r1.h"

/* Maps borrowed (name, length) keys to int32 values; names must outlive the table. */
typedef struct r1_name_index {
    uint32_t cap; /* power of two, at least twice the number of keys */
    uint32_t count;
    struct r1_name_slot {
        const char *name; /* NULL: empty */
        uint32_t len;
        int32_t value;
    } * slots;
} r1_name_index;

/* Sized for up to n_keys keys. R1_ERR_NO_MEMORY on failure. */
r1_status r1_name_index__init(r1_name_index *ix, uint32_t n_keys);
void r1_name_index__free(r1_name_index *ix);
/* 0 when inserted, 1 when the name is already present (*existing_out gets its value), -1 when
 * the table is full. */
int32_t r1_name_index__insert(r1_name_index *ix, const char *name, uint32_t len, int32_t value,
                              int32_t *existing_out);
/* The value of name, or -1. */
int32_t r1_name_index__find(const r1_name_index *ix, const char *name, size_t len);

#endif
