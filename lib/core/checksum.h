/* checksum.h: XXH64, the checksum of every .r1m header, index, tensor and expert blob (internal).
 */
#ifndef R1_CHECKSUM_H
#define R1_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

/* XXH64 with seed 0 as specified in docs/format.md §2 (the published xxHash64 algorithm). */
uint64_t r1_checksum__xxh64(const void *data, size_t len);

/* Incremental form: init, any number of updates, digest (digest does not change the state). */
typedef struct r1_xxh64_state {
    uint64_t v[4];
    uint64_t total_len;
    uint8_t buf[32];
    uint32_t buf_len;
} r1_xxh64_state;

void r1_checksum__xxh64_init(r1_xxh64_state *st);
void r1_checksum__xxh64_update(r1_xxh64_state *st, const void *data, size_t len);
uint64_t r1_checksum__xxh64_digest(const r1_xxh64_state *st);

#endif
