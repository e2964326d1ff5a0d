/* name_index.c: FNV-1a hashed, linearly probed name lookup for tensor tables. */
#include "name_index.h"

#include <stdlib.h>
#include <string.h>

static uint32_t name_hash(const char *s, size_t len)
{
    uint64_t h = UINT64_C(14695981039346656037);
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)s[i];
        h *= UINT64_C(1099511628211);
    }
    return (uint32_t)(h ^ (h >> 32));
}

r1_status r1_name_index__init(r1_name_index *ix, uint32_t n_keys)
{
    uint32_t cap = 16;
    while (cap < 2 * (uint64_t)n_keys + 1 && cap < (UINT32_C(1) << 30))
        cap <<= 1;
    ix->slots = calloc(cap, sizeof ix->slots[0]);
    ix->cap = ix->slots ? cap : 0;
    ix->count = 0;
    return ix->slots ? R1_OK : R1_ERR_NO_MEMORY;
}

void r1_name_index__free(r1_name_index *ix)
{
    free(ix->slots);
    ix->slots = NULL;
    ix->cap = ix->count = 0;
}

int32_t r1_name_index__insert(r1_name_index *ix, const char *name, uint32_t len, int32_t value,
                              int32_t *existing_out)
{
    if (ix->count + 1 > ix->cap / 2)
        return -1;
    uint32_t mask = ix->cap - 1;
    for (uint32_t i = name_hash(name, len) & mask;; i = (i + 1) & mask) {
        struct r1_name_slot *s = &ix->slots[i];
        if (s->name == NULL) {
            s->name = name;
            s->len = len;
            s->value = value;
            ix->count++;
            return 0;
        }
        if (s->len == len && memcmp(s->name, name, len) == 0) {
            if (existing_out)
                *existing_out = s->value;
            return 1;
        }
    }
}

int32_t r1_name_index__find(const r1_name_index *ix, const char *name, size_t len)
{
    if (ix->cap == 0)
        return -1;
    uint32_t mask = ix->cap - 1;
    for (uint32_t i = name_hash(name, len) & mask;; i = (i + 1) & mask) {
        const struct r1_name_slot *s = &ix->slots[i];
        if (s->name == NULL)
            return -1;
        if (s->len == len && memcmp(s->name, name, len) == 0)
            return s->value;
    }
}
