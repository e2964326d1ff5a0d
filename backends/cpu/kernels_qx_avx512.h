/* kernels_qx_avx512.h: the AVX-512 integer Q8_0/Q4_0 kernels on 8-bit activations, included by
 * kernels_avx512.c (maddubs + madd) and kernels_avx512vnni.c (vpdpbusd) with R1_QX_VNNI set to
 * 0 or 1. Both forms give the same int32 lanes (the sums of four adjacent byte products; no
 * maddubs pair can saturate since |w| <= 128 and |q| <= 127), hence the same floats. */
#ifndef R1_KERNELS_QX_AVX512_H
#define R1_KERNELS_QX_AVX512_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "kernels_levels.h"

#ifndef R1_QX_VNNI
#error "define R1_QX_VNNI to 0 or 1"
#endif

/* Rows per group sharing each activation load, and how far ahead (bytes, 0: not at all) each
 * row of a group prefetches its own blocks: a group reads R1_QX_GROUP separate streams, more
 * than the hardware prefetcher keeps ahead of on its own. -D can override both to compare. */
#ifndef R1_QX_GROUP
#define R1_QX_GROUP 4
#endif
#ifndef R1_QX_PREFETCH
#define R1_QX_PREFETCH 256
#endif

static inline __m512i r1_qx_sum_lanes(__m512i u, __m512i s)
{
#if R1_QX_VNNI
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, s);
#else
    return _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1));
#endif
}

/* Two 32-byte blocks side by side; a missing second block (p1 NULL) reads as zeros. */
static inline __m512i r1_qx_pair(const void *p0, const void *p1)
{
    __m256i hi = p1 != NULL ? _mm256_loadu_si256((const __m256i *)p1) : _mm256_setzero_si256();
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)p0)), hi,
                              1);
}

/* Which block of a pair each int32 lane sums: Q8_0 lanes 0-7 block 0, 8-15 block 1; Q4_0
 * (see r1_qx_nibbles) lanes 0-3 and 8-11 block 0, 4-7 and 12-15 block 1. */
#define R1_QX_SPREAD_Q8 _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0)
#define R1_QX_SPREAD_Q4 _mm512_set_epi32(1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0)

/* The activation scales of a block pair, spread over the lanes like its sums. */
static inline __m512 r1_qx_pair_scale(float d0, float d1, __m512i spread)
{
    return _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(_mm_setr_ps(d0, d1, 0, 0)));
}

/* The weight scales (f16) of a block pair spread the same way, times the activation scales:
 * one conversion and one permute per pair instead of two scalar conversions and broadcasts. */
static inline __m512 r1_qx_weight_scale(uint16_t d0, uint16_t d1, __m512 xs, __m512i spread)
{
    __m128 w = _mm_cvtph_ps(_mm_cvtsi32_si128((int)((uint32_t)d0 | (uint32_t)d1 << 16)));
    return _mm512_mul_ps(_mm512_permutexvar_ps(spread, _mm512_castps128_ps512(w)), xs);
}

static inline float r1_qx_hsum(__m512 v)
{
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v),
                             _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Blocks b and b + 1 of each row in one vector (lanes 0-7 and 8-15); n_rows is a constant at
 * each call site, so a row's arithmetic does not depend on how rows are grouped. */
static inline __attribute__((always_inline)) void r1_qx_q8_0_rows(const uint8_t *rows,
                                                                  size_t row_bytes, int32_t n_rows,
                                                                  const r1_cpu_qx_block *x,
                                                                  int64_t n_blocks, float *out)
{
    __m512 acc[R1_CPU_QX_MAX_ROWS];
    for (int32_t r = 0; r < n_rows; r++)
        acc[r] = _mm512_setzero_ps();
    for (int64_t b = 0; b < n_blocks; b += 2) {
        int two = b + 1 < n_blocks;
        __m512i xq = r1_qx_pair(x[b].q, two ? x[b + 1].q : NULL);
        __m512 xs = r1_qx_pair_scale(x[b].d, two ? x[b + 1].d : 0.0f, R1_QX_SPREAD_Q8);
        for (int32_t r = 0; r < n_rows; r++) {
            const r1_block_q8_0 *blk =
                (const r1_block_q8_0 *)(const void *)(rows + (size_t)r * row_bytes) + b;
            if (R1_QX_PREFETCH > 0)
                _mm_prefetch((const char *)blk + R1_QX_PREFETCH, _MM_HINT_T0);
            __m512i w = r1_qx_pair(blk[0].q, two ? blk[1].q : NULL);
            __m512i sx =
                _mm512_mask_sub_epi8(xq, _mm512_movepi8_mask(w), _mm512_setzero_si512(), xq);
            __m512i p = r1_qx_sum_lanes(_mm512_abs_epi8(w), sx);
            __m512 s = r1_qx_weight_scale(blk[0].d, two ? blk[1].d : 0, xs, R1_QX_SPREAD_Q8);
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), s, acc[r]);
        }
    }
    for (int32_t r = 0; r < n_rows; r++)
        out[r] = r1_qx_hsum(acc[r]);
}

/* Q4_0 nibbles of two blocks as 128-bit lanes [lo0, lo1, hi0, hi1] (lo: elements 0-15 of a
 * block, hi: 16-31): one load pair, one shift and one mask. The activation pair is permuted to
 * match once per pair (r1_qx_q4_order), so int32 lanes 0-3 and 8-11 belong to block 0. */
static inline __m512i r1_qx_nibbles(const uint8_t *qs0, const uint8_t *qs1)
{
    __m128i v1 = qs1 != NULL ? _mm_loadu_si128((const __m128i *)qs1) : _mm_setzero_si128();
    __m256i v = _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)qs0)), v1, 1);
    __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(v), v, 1);
    z = _mm512_srlv_epi64(z, _mm512_set_epi64(4, 4, 4, 4, 0, 0, 0, 0));
    return _mm512_and_si512(z, _mm512_set1_epi8(0x0f));
}

/* [x0[0:16], x0[16:32], x1[0:16], x1[16:32]] to the nibbles' [x0 lo, x1 lo, x0 hi, x1 hi]. */
static inline __m512i r1_qx_q4_order(__m512i xq)
{
    return _mm512_shuffle_i64x2(xq, xq, _MM_SHUFFLE(3, 1, 2, 0));
}

static inline __attribute__((always_inline)) void r1_qx_q4_0_rows(const uint8_t *rows,
                                                                  size_t row_bytes, int32_t n_rows,
                                                                  const r1_cpu_qx_block *x,
                                                                  int64_t n_blocks, float *out)
{
    __m512 acc[R1_CPU_QX_MAX_ROWS];
    for (int32_t r = 0; r < n_rows; r++)
        acc[r] = _mm512_setzero_ps();
    for (int64_t b = 0; b < n_blocks; b += 2) {
        int two = b + 1 < n_blocks;
        __m512i xq = r1_qx_q4_order(r1_qx_pair(x[b].q, two ? x[b + 1].q : NULL));
        /* 8 * each lane's activation sum: the nibbles' -8 offset, exact and shared by rows */
        __m512i offset = r1_qx_sum_lanes(_mm512_set1_epi8(8), xq);
        __m512 xs = r1_qx_pair_scale(x[b].d, two ? x[b + 1].d : 0.0f, R1_QX_SPREAD_Q4);
        for (int32_t r = 0; r < n_rows; r++) {
            const r1_block_q4_0 *blk =
                (const r1_block_q4_0 *)(const void *)(rows + (size_t)r * row_bytes) + b;
            if (R1_QX_PREFETCH > 0)
                _mm_prefetch((const char *)blk + R1_QX_PREFETCH, _MM_HINT_T0);
            __m512i nib = r1_qx_nibbles(blk[0].qs, two ? blk[1].qs : NULL);
            __m512i p = _mm512_sub_epi32(r1_qx_sum_lanes(nib, xq), offset);
            __m512 s = r1_qx_weight_scale(blk[0].d, two ? blk[1].d : 0, xs, R1_QX_SPREAD_Q4);
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), s, acc[r]);
        }
    }
    for (int32_t r = 0; r < n_rows; r++)
        out[r] = r1_qx_hsum(acc[r]);
}

/* A table entry: groups of R1_QX_GROUP rows, then single rows (the same arithmetic per row). */
static inline __attribute__((always_inline)) void r1_qx_rows(int32_t is_q4_0, const void *rows,
                                                             size_t row_bytes, int32_t n_rows,
                                                             const r1_cpu_qx_block *x,
                                                             int64_t n_blocks, float *out)
{
    const uint8_t *w = rows;
    int32_t r = 0;
    for (; r + R1_QX_GROUP <= n_rows; r += R1_QX_GROUP) {
        if (is_q4_0)
            r1_qx_q4_0_rows(w + (size_t)r * row_bytes, row_bytes, R1_QX_GROUP, x, n_blocks,
                            out + r);
        else
            r1_qx_q8_0_rows(w + (size_t)r * row_bytes, row_bytes, R1_QX_GROUP, x, n_blocks,
                            out + r);
    }
    for (; r < n_rows; r++) {
        if (is_q4_0)
            r1_qx_q4_0_rows(w + (size_t)r * row_bytes, row_bytes, 1, x, n_blocks, out + r);
        else
            r1_qx_q8_0_rows(w + (size_t)r * row_bytes, row_bytes, 1, x, n_blocks, out + r);
    }
}

/* ---- the R16 layout (weight_layout.h): 16 rows per vector, one lane per row ---------- */

/* How far ahead (bytes) an R16 kernel asks for its weights: measured on a 2-core AVX-512 VM
 * with a 1408 x 2048 expert-shaped Q4_0 weight streamed from memory, 0 / 512 / 1024 / 2048 /
 * 4096 bytes gave 20.9 / 22.1 / 24.1 / 27.0 / 28.3 GB/s on two threads (the triad: 28.1). One
 * core has too few misses in flight to stream from memory unless told early. */
#ifndef R1_R16_PREFETCH
#define R1_R16_PREFETCH 4096
#endif
/* The same for each of the R1_CPU_R16_STREAMS groups the streaming kernel reads side by side:
 * four streams 2 KiB ahead keep as many lines in flight as one stream 8 KiB ahead, and spread
 * them over four places in memory. Measured on the same VM with expert-shaped Q4_0 products
 * alternated in one process: 512 / 1024 / 2048 bytes within noise of each other. */
#ifndef R1_R16_STREAM_PREFETCH
#define R1_R16_STREAM_PREFETCH 2048
#endif

/* acc + the sums of four adjacent products of unsigned bytes u and signed bytes x per lane. */
static inline __m512i r1_r16_dot4(__m512i acc, __m512i u, __m512i x)
{
#if R1_QX_VNNI
    return _mm512_dpbusd_epi32(acc, u, x);
#else
    return _mm512_add_epi32(acc,
                            _mm512_madd_epi16(_mm512_maddubs_epi16(u, x), _mm512_set1_epi16(1)));
#endif
}

/* Four activation bytes x[4j..4j+3] in every lane. */
static inline __m512i r1_r16_x4(const int8_t *q, int j)
{
    int32_t v;
    memcpy(&v, q + 4 * j, sizeof v);
    return _mm512_set1_epi32(v);
}

/* Block b's exact integer sums of the 16 rows. Q8_0 weights are stored as q + 128: vpdpbusd
 * takes them as unsigned bytes and 128 * sum(x) comes off after; maddubs would saturate on
 * them (two products of up to 255 * 127), so without VNNI the bias is undone and |q| times x
 * with q's sign is summed instead (as r1_qx_q8_0_rows does). Both give the same integers. */
static inline __m512i r1_r16_q8_0_block(const uint8_t *wblock, const r1_cpu_qx_block *xb)
{
#if R1_QX_VNNI
    __m512i s0 = _mm512_set1_epi32(-128 * xb->sum), s1 = _mm512_setzero_si512();
    for (int j = 0; j < 8; j += 2) {
        s0 = r1_r16_dot4(s0, _mm512_loadu_si512(wblock + 64 * j), r1_r16_x4(xb->q, j));
        s1 = r1_r16_dot4(s1, _mm512_loadu_si512(wblock + 64 * (j + 1)), r1_r16_x4(xb->q, j + 1));
    }
    return _mm512_add_epi32(s0, s1);
#else
    __m512i s = _mm512_setzero_si512();
    for (int j = 0; j < 8; j++) {
        __m512i w = _mm512_xor_si512(_mm512_loadu_si512(wblock + 64 * j), _mm512_set1_epi8(-128));
        __m512i x = r1_r16_x4(xb->q, j);
        __m512i sx = _mm512_mask_sub_epi8(x, _mm512_movepi8_mask(w), _mm512_setzero_si512(), x);
        s = r1_r16_dot4(s, _mm512_abs_epi8(w), sx);
    }
    return s;
#endif
}

/* Each 64-byte unit j holds elements 4j.. in its low nibbles and 16+4j.. in its high ones.
 * With VNNI the high nibbles are taken in place (v & 0xf0, 16 times their value: vpdpbusd sums
 * them exactly in int32) and the block's sum shifted down once, instead of a shift per unit:
 * port 5 is what limits this loop on Sapphire Rapids (8 vpdpbusd share port 0). maddubs would
 * saturate on those bytes (two products of up to 240 * 127), so without VNNI they are shifted. */
static inline __m512i r1_r16_q4_0_block(const uint8_t *wblock, const r1_cpu_qx_block *xb)
{
    const __m512i m = _mm512_set1_epi8(0x0f);
    __m512i s0 = _mm512_set1_epi32(-8 * xb->sum), s1 = _mm512_setzero_si512();
#if R1_QX_VNNI
    const __m512i mh = _mm512_set1_epi8((char)0xf0);
    for (int j = 0; j < 4; j++) {
        __m512i v = _mm512_loadu_si512(wblock + 64 * j);
        s0 = r1_r16_dot4(s0, _mm512_and_si512(v, m), r1_r16_x4(xb->q, j));
        s1 = r1_r16_dot4(s1, _mm512_and_si512(v, mh), r1_r16_x4(xb->q, 4 + j));
    }
    return _mm512_add_epi32(s0, _mm512_srai_epi32(s1, 4));
#else
    for (int j = 0; j < 4; j++) {
        __m512i v = _mm512_loadu_si512(wblock + 64 * j);
        s0 = r1_r16_dot4(s0, _mm512_and_si512(v, m), r1_r16_x4(xb->q, j));
        s1 = r1_r16_dot4(s1, _mm512_and_si512(_mm512_srli_epi16(v, 4), m), r1_r16_x4(xb->q, 4 + j));
    }
    return _mm512_add_epi32(s0, s1);
#endif
}

/* Block b's scaled sums added to acc: the block's integer sums times its 16 weight scales times
 * the activation scale; the weights ahead bytes further on prefetched. */
static inline __attribute__((always_inline)) __m512
r1_r16_block(int32_t is_q4_0, const uint16_t *scales, const uint8_t *w, size_t wb,
             const r1_cpu_qx_block *x, int64_t b, __m512 acc, size_t ahead)
{
    const uint8_t *wblock = w + (size_t)b * wb;
    for (size_t line = 0; line < wb; line += 64)
        _mm_prefetch((const char *)wblock + ahead + line, _MM_HINT_T0);
    if ((b & 1) == 0) /* 32 bytes of scales per block: one line per two blocks */
        _mm_prefetch((const char *)(scales + b * 16) + 1024, _MM_HINT_T0);
    __m512i s = is_q4_0 ? r1_r16_q4_0_block(wblock, x + b) : r1_r16_q8_0_block(wblock, x + b);
    __m512 d = _mm512_mul_ps(
        _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(scales + b * 16))),
        _mm512_set1_ps(x[b].d));
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), d, acc);
}

/* n_groups groups (1 or R1_CPU_R16_STREAMS, a constant once inlined) side by side: block b of
 * every group before block b + 1 of any, so the core streams from that many places at once. One
 * stream leaves the memory idle between the misses a core can have in flight; measured with
 * expert-shaped products alternated in one process on a 2-core AVX-512 VM, four streams read
 * Q4_0 at 21.0-23.1 GB/s against one stream's 17.7-19.6, and Q8_0 at 24.4-24.5 against 20.5.
 * Each group has four accumulators, block b into acc[b % 4], summed (0 + 1) + (2 + 3) at the
 * end as every level does (the results are bit-identical, whatever n_groups); the loops are
 * unrolled so that the accumulators stay in registers rather than an array on the stack. */
static inline __attribute__((always_inline)) void
r1_r16_set(int32_t is_q4_0, const void *const *groups, int32_t n_groups, const r1_cpu_qx_block *x,
           int64_t n_blocks, float *const *out)
{
    enum { G = R1_CPU_R16_STREAMS };
    const size_t wb = is_q4_0 ? 256 : 512;
    const size_t ahead = n_groups > 1 ? R1_R16_STREAM_PREFETCH : R1_R16_PREFETCH;
    const uint16_t *scales[G];
    const uint8_t *w[G];
    __m512 acc[G][4];
#pragma GCC unroll 4
    for (int32_t g = 0; g < n_groups; g++) {
        scales[g] = groups[g];
        w[g] = (const uint8_t *)groups[g] + (size_t)n_blocks * 16 * 2;
        acc[g][0] = acc[g][1] = acc[g][2] = acc[g][3] = _mm512_setzero_ps();
    }
    int64_t b = 0;
    for (; b + 4 <= n_blocks; b += 4) {
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++)
#pragma GCC unroll 4
            for (int32_t g = 0; g < n_groups; g++)
                acc[g][k] = r1_r16_block(is_q4_0, scales[g], w[g], wb, x, b + k, acc[g][k], ahead);
    }
#pragma GCC unroll 3
    for (int k = 0; k < 3; k++)
        if (b + k < n_blocks)
#pragma GCC unroll 4
            for (int32_t g = 0; g < n_groups; g++)
                acc[g][k] = r1_r16_block(is_q4_0, scales[g], w[g], wb, x, b + k, acc[g][k], ahead);
#pragma GCC unroll 4
    for (int32_t g = 0; g < n_groups; g++)
        _mm512_storeu_ps(out[g], _mm512_add_ps(_mm512_add_ps(acc[g][0], acc[g][1]),
                                               _mm512_add_ps(acc[g][2], acc[g][3])));
}

/* The table entry (kernels_levels.h): the streaming kernel on full sets of groups. */
static inline __attribute__((always_inline)) void
r1_r16_groups(int32_t is_q4_0, const void *const *groups, int32_t n_groups,
              const r1_cpu_qx_block *x, int64_t n_blocks, float *const *out)
{
    if (n_groups == R1_CPU_R16_STREAMS) {
        r1_r16_set(is_q4_0, groups, R1_CPU_R16_STREAMS, x, n_blocks, out);
        return;
    }
    for (int32_t g = 0; g < n_groups; g++)
        r1_r16_set(is_q4_0, groups + g, 1, x, n_blocks, out + g);
}

/* Sixteen signed bytes (four elements of each of four rows 4q..4q+3) times their rows' scales,
 * stored at the rows' element e of the output; d * (float)q, one rounding, as dtype.c. */
static inline void r1_r16_store4(__m128i q16, __m512 d, int q, float *out, int64_t cols)
{
    const __m512i rows = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    __m512 v =
        _mm512_mul_ps(_mm512_permutexvar_ps(_mm512_add_epi32(rows, _mm512_set1_epi32(4 * q)), d),
                      _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q16)));
    float *o = out + 4 * q * cols;
    _mm_storeu_ps(o, _mm512_castps512_ps128(v));
    _mm_storeu_ps(o + cols, _mm512_extractf32x4_ps(v, 1));
    _mm_storeu_ps(o + 2 * cols, _mm512_extractf32x4_ps(v, 2));
    _mm_storeu_ps(o + 3 * cols, _mm512_extractf32x4_ps(v, 3));
}

/* One 64-byte unit of signed bytes (4 elements of 16 rows) to the rows at out. */
static inline void r1_r16_store_unit(__m512i v, __m512 d, float *out, int64_t cols)
{
    r1_r16_store4(_mm512_castsi512_si128(v), d, 0, out, cols);
    r1_r16_store4(_mm512_extracti32x4_epi32(v, 1), d, 1, out, cols);
    r1_r16_store4(_mm512_extracti32x4_epi32(v, 2), d, 2, out, cols);
    r1_r16_store4(_mm512_extracti32x4_epi32(v, 3), d, 3, out, cols);
}

static inline __attribute__((always_inline)) void r1_r16_dequant(int32_t is_q4_0, const void *group,
                                                                 int64_t cols, float *out)
{
    const int64_t n_blocks = cols / 32;
    const uint16_t *scales = group;
    const uint8_t *w = (const uint8_t *)group + (size_t)n_blocks * 16 * 2;
    for (int64_t b = 0; b < n_blocks; b++) {
        __m512 d =
            _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(scales + b * 16)));
        float *o = out + b * 32;
        if (is_q4_0) {
            const __m512i m = _mm512_set1_epi8(0x0f), eight = _mm512_set1_epi8(8);
            for (int j = 0; j < 4; j++) {
                __m512i v = _mm512_loadu_si512(w + (size_t)b * 256 + 64 * j);
                r1_r16_store_unit(_mm512_sub_epi8(_mm512_and_si512(v, m), eight), d, o + 4 * j,
                                  cols);
                r1_r16_store_unit(
                    _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(v, 4), m), eight), d,
                    o + 16 + 4 * j, cols);
            }
        } else {
            for (int j = 0; j < 8; j++) {
                __m512i v = _mm512_xor_si512(_mm512_loadu_si512(w + (size_t)b * 512 + 64 * j),
                                             _mm512_set1_epi8(-128));
                r1_r16_store_unit(v, d, o + 4 * j, cols);
            }
        }
    }
}

#endif
