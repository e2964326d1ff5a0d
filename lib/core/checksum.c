/* checksum.c: XXH64 (one-shot and incremental), written from the algorithm's description. */
#include "checksum.h"

#include "le.h"

#define P1 UINT64_C(11400714785074694791)
#define P2 UINT64_C(14029467366897019727)
#define P3 UINT64_C(1609587929392839161)
#define P4 UINT64_C(9650029242287828579)
#define P5 UINT64_C(2870177450012600261)

static uint64_t rotl64(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

static uint64_t xxh_round(uint64_t acc, uint64_t input)
{
    acc += input * P2;
    acc = rotl64(acc, 31);
    return acc * P1;
}

static uint64_t xxh_merge(uint64_t acc, uint64_t val)
{
    acc ^= xxh_round(0, val);
    return acc * P1 + P4;
}

/* The tail (fewer than 32 bytes) and the final avalanche, shared by both forms. */
static uint64_t xxh_finish(uint64_t h, const uint8_t *p, size_t len)
{
    while (len >= 8) {
        h ^= xxh_round(0, r1_le__u64(p));
        h = rotl64(h, 27) * P1 + P4;
        p += 8;
        len -= 8;
    }
    if (len >= 4) {
        h ^= (uint64_t)r1_le__u32(p) * P1;
        h = rotl64(h, 23) * P2 + P3;
        p += 4;
        len -= 4;
    }
    while (len > 0) {
        h ^= (uint64_t)(*p) * P5;
        h = rotl64(h, 11) * P1;
        p++;
        len--;
    }
    h ^= h >> 33;
    h *= P2;
    h ^= h >> 29;
    h *= P3;
    h ^= h >> 32;
    return h;
}

static uint64_t xxh_converge(const uint64_t v[4])
{
    uint64_t h = rotl64(v[0], 1) + rotl64(v[1], 7) + rotl64(v[2], 12) + rotl64(v[3], 18);
    for (int i = 0; i < 4; i++)
        h = xxh_merge(h, v[i]);
    return h;
}

static void xxh_stripe(uint64_t v[4], const uint8_t *p)
{
    v[0] = xxh_round(v[0], r1_le__u64(p));
    v[1] = xxh_round(v[1], r1_le__u64(p + 8));
    v[2] = xxh_round(v[2], r1_le__u64(p + 16));
    v[3] = xxh_round(v[3], r1_le__u64(p + 24));
}

void r1_checksum__xxh64_init(r1_xxh64_state *st)
{
    st->v[0] = P1 + P2;
    st->v[1] = P2;
    st->v[2] = 0;
    st->v[3] = (uint64_t)0 - P1;
    st->total_len = 0;
    st->buf_len = 0;
}

void r1_checksum__xxh64_update(r1_xxh64_state *st, const void *data, size_t len)
{
    const uint8_t *p = data;
    st->total_len += len;
    if (st->buf_len > 0) {
        size_t take = 32 - st->buf_len;
        if (take > len)
            take = len;
        memcpy(st->buf + st->buf_len, p, take);
        st->buf_len += (uint32_t)take;
        p += take;
        len -= take;
        if (st->buf_len < 32)
            return;
        xxh_stripe(st->v, st->buf);
        st->buf_len = 0;
    }
    while (len >= 32) {
        xxh_stripe(st->v, p);
        p += 32;
        len -= 32;
    }
    memcpy(st->buf, p, len);
    st->buf_len = (uint32_t)len;
}

uint64_t r1_checksum__xxh64_digest(const r1_xxh64_state *st)
{
    uint64_t h = st->total_len >= 32 ? xxh_converge(st->v) : P5;
    h += st->total_len;
    return xxh_finish(h, st->buf, st->buf_len);
}

uint64_t r1_checksum__xxh64(const void *data, size_t len)
{
    const uint8_t *p = data;
    size_t n = len;
    uint64_t h;
    if (n >= 32) {
        uint64_t v[4] = {P1 + P2, P2, 0, (uint64_t)0 - P1};
        while (n >= 32) {
            xxh_stripe(v, p);
            p += 32;
            n -= 32;
        }
        h = xxh_converge(v);
    } else {
        h = P5;
    }
    h += (uint64_t)len;
    return xxh_finish(h, p, n);
}
