/* le.h: little-endian loads and stores for on-disk formats, independent of host alignment
 * (internal). */
#ifndef R1_LE_H
#define R1_LE_H

#include <stdint.h>
#include <string.h>

static inline uint16_t r1_le__u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (uint16_t)p[1] << 8);
}
static inline uint32_t r1_le__u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t r1_le__u64(const uint8_t *p)
{
    return (uint64_t)r1_le__u32(p) | (uint64_t)r1_le__u32(p + 4) << 32;
}
static inline void r1_le__put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void r1_le__put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline void r1_le__put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline double r1_le__f64(const uint8_t *p)
{
    uint64_t u = r1_le__u64(p);
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}
static inline void r1_le__putf64(uint8_t *p, double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    r1_le__put64(p, u);
}

#endif
