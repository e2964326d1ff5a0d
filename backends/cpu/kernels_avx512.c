/* kernels_avx512.c: AVX-512 F/BW/VL/DQ row kernels, called only on CPUs that have them. */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "kernels_exp.h"
#include "kernels_levels.h"
#define R1_QX_VNNI 0
#include "kernels_qx_avx512.h"

/* Fixed pairing order, so a row's result never depends on anything but its data. */
static inline float r1_hsum512(__m512 v)
{
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v),
                             _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline __mmask16 r1_tail_mask(int64_t rem)
{
    return (__mmask16)((1u << rem) - 1);
}

/* Sixteen elements from p (the first rem only when masked; the rest read as zero). */
static inline __m512 r1_load16_f32(const float *p, __mmask16 m)
{
    return _mm512_maskz_loadu_ps(m, p);
}

static inline __m512 r1_load16_f16(const uint16_t *p, __mmask16 m)
{
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}

static inline __m512 r1_load16_bf16(const uint16_t *p, __mmask16 m)
{
    __m512i w = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}

/* e4m3fn to float times 2^-8 through f16 (see kernels_avx2.c): the 2^8 goes into the block
 * scale. NaN codes decode as +-480; valid checkpoints never contain them. */
static inline __m512 r1_load16_fp8(const uint8_t *p, __mmask16 m)
{
    __m256i w = _mm256_slli_epi16(_mm256_cvtepu8_epi16(_mm_maskz_loadu_epi8(m, p)), 8);
    __m256i h = _mm256_and_si256(_mm256_srai_epi16(w, 1), _mm256_set1_epi16((short)0xBF80));
    return _mm512_cvtph_ps(h);
}

#define R1_ALL 0xFFFF

/* 64 elements per step in four accumulators, then 16, then one masked tail, then a fixed
 * reduction. */
#define R1_DOT_PLAIN(load, w, x, n)                                                                \
    __extension__({                                                                                \
        __m512 a0_ = _mm512_setzero_ps(), a1_ = a0_, a2_ = a0_, a3_ = a0_;                         \
        int64_t i_ = 0;                                                                            \
        for (; i_ + 64 <= (n); i_ += 64) {                                                         \
            a0_ = _mm512_fmadd_ps(load((w) + i_, R1_ALL), _mm512_loadu_ps((x) + i_), a0_);         \
            a1_ =                                                                                  \
                _mm512_fmadd_ps(load((w) + i_ + 16, R1_ALL), _mm512_loadu_ps((x) + i_ + 16), a1_); \
            a2_ =                                                                                  \
                _mm512_fmadd_ps(load((w) + i_ + 32, R1_ALL), _mm512_loadu_ps((x) + i_ + 32), a2_); \
            a3_ =                                                                                  \
                _mm512_fmadd_ps(load((w) + i_ + 48, R1_ALL), _mm512_loadu_ps((x) + i_ + 48), a3_); \
        }                                                                                          \
        for (; i_ + 16 <= (n); i_ += 16)                                                           \
            a0_ = _mm512_fmadd_ps(load((w) + i_, R1_ALL), _mm512_loadu_ps((x) + i_), a0_);         \
        if (i_ < (n)) {                                                                            \
            __mmask16 m_ = r1_tail_mask((n)-i_);                                                   \
            a0_ = _mm512_fmadd_ps(load((w) + i_, m_), _mm512_maskz_loadu_ps(m_, (x) + i_), a0_);   \
        }                                                                                          \
        r1_hsum512(_mm512_add_ps(_mm512_add_ps(a0_, a1_), _mm512_add_ps(a2_, a3_)));               \
    })

static float r1_avx512_dot_f32(const float *a, const float *b, int64_t n)
{
    return R1_DOT_PLAIN(r1_load16_f32, a, b, n);
}

static void r1_avx512_axpy(float alpha, const float *x, int64_t n, float *y)
{
    const __m512 a = _mm512_set1_ps(alpha);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(a, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(
            y + i, m,
            _mm512_fmadd_ps(a, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
    }
}

/* Four vectors of y at a time stay in registers over all the rows; the tail masked. */
static void r1_avx512_axpy_rows(const float *alpha, const float *x, int64_t ld, int64_t n_rows,
                                int64_t n, float *y)
{
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m512 y0 = _mm512_loadu_ps(y + i), y1 = _mm512_loadu_ps(y + i + 16),
               y2 = _mm512_loadu_ps(y + i + 32), y3 = _mm512_loadu_ps(y + i + 48);
        for (int64_t r = 0; r < n_rows; r++) {
            const __m512 a = _mm512_set1_ps(alpha[r]);
            const float *xr = x + r * ld + i;
            y0 = _mm512_fmadd_ps(a, _mm512_loadu_ps(xr), y0);
            y1 = _mm512_fmadd_ps(a, _mm512_loadu_ps(xr + 16), y1);
            y2 = _mm512_fmadd_ps(a, _mm512_loadu_ps(xr + 32), y2);
            y3 = _mm512_fmadd_ps(a, _mm512_loadu_ps(xr + 48), y3);
        }
        _mm512_storeu_ps(y + i, y0);
        _mm512_storeu_ps(y + i + 16, y1);
        _mm512_storeu_ps(y + i + 32, y2);
        _mm512_storeu_ps(y + i + 48, y3);
    }
    for (; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 y0 = _mm512_maskz_loadu_ps(m, y + i);
        for (int64_t r = 0; r < n_rows; r++)
            y0 = _mm512_fmadd_ps(_mm512_set1_ps(alpha[r]), _mm512_maskz_loadu_ps(m, x + r * ld + i),
                                 y0);
        _mm512_mask_storeu_ps(y + i, m, y0);
    }
}

static float r1_avx512_row_f32(const void *row, const float *scale_row, const float *x, int64_t n)
{
    (void)scale_row;
    return r1_avx512_dot_f32(row, x, n);
}

static float r1_avx512_row_f16(const void *row, const float *scale_row, const float *x, int64_t n)
{
    (void)scale_row;
    const uint16_t *w = row;
    return R1_DOT_PLAIN(r1_load16_f16, w, x, n);
}

static float r1_avx512_row_bf16(const void *row, const float *scale_row, const float *x, int64_t n)
{
    (void)scale_row;
    const uint16_t *w = row;
    return R1_DOT_PLAIN(r1_load16_bf16, w, x, n);
}

static float r1_avx512_row_fp8(const void *row, const float *scale_row, const float *x, int64_t n)
{
    const uint8_t *q = row;
    __m512 total = _mm512_setzero_ps();
    for (int64_t b0 = 0; b0 < n; b0 += R1_FP8_SCALE_BLOCK) {
        int64_t len = n - b0 < R1_FP8_SCALE_BLOCK ? n - b0 : R1_FP8_SCALE_BLOCK;
        const uint8_t *qb = q + b0;
        const float *xb = x + b0;
        __m512 part;
        if (len == R1_FP8_SCALE_BLOCK) {
            /* the common whole block: two independent chains of four */
            __m512 a0 = _mm512_mul_ps(r1_load16_fp8(qb, R1_ALL), _mm512_loadu_ps(xb));
            __m512 a1 = _mm512_mul_ps(r1_load16_fp8(qb + 16, R1_ALL), _mm512_loadu_ps(xb + 16));
            a0 = _mm512_fmadd_ps(r1_load16_fp8(qb + 32, R1_ALL), _mm512_loadu_ps(xb + 32), a0);
            a1 = _mm512_fmadd_ps(r1_load16_fp8(qb + 48, R1_ALL), _mm512_loadu_ps(xb + 48), a1);
            a0 = _mm512_fmadd_ps(r1_load16_fp8(qb + 64, R1_ALL), _mm512_loadu_ps(xb + 64), a0);
            a1 = _mm512_fmadd_ps(r1_load16_fp8(qb + 80, R1_ALL), _mm512_loadu_ps(xb + 80), a1);
            a0 = _mm512_fmadd_ps(r1_load16_fp8(qb + 96, R1_ALL), _mm512_loadu_ps(xb + 96), a0);
            a1 = _mm512_fmadd_ps(r1_load16_fp8(qb + 112, R1_ALL), _mm512_loadu_ps(xb + 112), a1);
            part = _mm512_add_ps(a0, a1);
        } else {
            part = _mm512_setzero_ps();
            for (int64_t i = 0; i < len; i += 16) {
                __mmask16 m = len - i >= 16 ? (__mmask16)R1_ALL : r1_tail_mask(len - i);
                part = _mm512_fmadd_ps(r1_load16_fp8(qb + i, m), _mm512_maskz_loadu_ps(m, xb + i),
                                       part);
            }
        }
        __m512 s = _mm512_set1_ps(scale_row[b0 / R1_FP8_SCALE_BLOCK] * 256.0f);
        total = _mm512_fmadd_ps(part, s, total);
    }
    return r1_hsum512(total);
}

/* 32 signed bytes times 32 floats, as one vector of partial sums. */
static inline __m512 r1_block_dot_i8(__m128i q0, __m128i q1, const float *x)
{
    __m512 f0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q0));
    __m512 f1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q1));
    return _mm512_fmadd_ps(f1, _mm512_loadu_ps(x + 16), _mm512_mul_ps(f0, _mm512_loadu_ps(x)));
}

/* Q4_0 nibbles as signed bytes: low nibbles are elements 0..15, high nibbles 16..31. */
static inline void r1_unpack_q4(const uint8_t *qs, __m128i *lo, __m128i *hi)
{
    __m128i v = _mm_loadu_si128((const __m128i *)qs);
    __m128i m = _mm_set1_epi8(0x0f), eight = _mm_set1_epi8(8);
    *lo = _mm_sub_epi8(_mm_and_si128(v, m), eight);
    *hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(v, 4), m), eight);
}

/* Even and odd blocks go to separate accumulators so consecutive blocks overlap. */
static float r1_avx512_row_q8_0(const void *row, const float *scale_row, const float *x, int64_t n)
{
    (void)scale_row;
    const r1_block_q8_0 *blk = row;
    __m512 acc[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
    for (int64_t b = 0; b < n / R1_QBLOCK; b++) {
        __m512 p =
            r1_block_dot_i8(_mm_loadu_si128((const __m128i *)blk[b].q),
                            _mm_loadu_si128((const __m128i *)(blk[b].q + 16)), x + b * R1_QBLOCK);
        acc[b & 1] = _mm512_fmadd_ps(p, _mm512_set1_ps(_cvtsh_ss(blk[b].d)), acc[b & 1]);
    }
    return r1_hsum512(_mm512_add_ps(acc[0], acc[1]));
}

static float r1_avx512_row_q4_0(const void *row, const float *scale_row, const float *x, int64_t n)
{
    (void)scale_row;
    const r1_block_q4_0 *blk = row;
    __m512 acc[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
    for (int64_t b = 0; b < n / R1_QBLOCK; b++) {
        __m128i lo, hi;
        r1_unpack_q4(blk[b].qs, &lo, &hi);
        __m512 p = r1_block_dot_i8(lo, hi, x + b * R1_QBLOCK);
        acc[b & 1] = _mm512_fmadd_ps(p, _mm512_set1_ps(_cvtsh_ss(blk[b].d)), acc[b & 1]);
    }
    return r1_hsum512(_mm512_add_ps(acc[0], acc[1]));
}

/* Dequantisers: the same values as r1_dtype__dequantize_row (each a single float rounding). */
static void r1_avx512_dequant_f32(const void *row, const float *s, float *out, int64_t n)
{
    (void)s;
    memcpy(out, row, (size_t)n * sizeof(float));
}

static void r1_avx512_dequant_f16(const void *row, const float *s, float *out, int64_t n)
{
    (void)s;
    const uint16_t *h = row;
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)R1_ALL : r1_tail_mask(n - i);
        _mm512_mask_storeu_ps(out + i, m, r1_load16_f16(h + i, m));
    }
}

static void r1_avx512_dequant_bf16(const void *row, const float *s, float *out, int64_t n)
{
    (void)s;
    const uint16_t *h = row;
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)R1_ALL : r1_tail_mask(n - i);
        _mm512_mask_storeu_ps(out + i, m, r1_load16_bf16(h + i, m));
    }
}

static void r1_avx512_dequant_fp8(const void *row, const float *scale_row, float *out, int64_t n)
{
    const uint8_t *q = row;
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)R1_ALL : r1_tail_mask(n - i);
        __m512 s = _mm512_set1_ps(scale_row[i / R1_FP8_SCALE_BLOCK] * 256.0f);
        _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(r1_load16_fp8(q + i, m), s));
    }
}

static inline void r1_store_block_i8(__m128i q0, __m128i q1, float d, float *out)
{
    __m512 vd = _mm512_set1_ps(d);
    _mm512_storeu_ps(out, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q0)), vd));
    _mm512_storeu_ps(out + 16, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q1)), vd));
}

static void r1_avx512_dequant_q8_0(const void *row, const float *s, float *out, int64_t n)
{
    (void)s;
    const r1_block_q8_0 *blk = row;
    for (int64_t b = 0; b < n / R1_QBLOCK; b++)
        r1_store_block_i8(_mm_loadu_si128((const __m128i *)blk[b].q),
                          _mm_loadu_si128((const __m128i *)(blk[b].q + 16)), _cvtsh_ss(blk[b].d),
                          out + b * R1_QBLOCK);
}

static void r1_avx512_dequant_q4_0(const void *row, const float *s, float *out, int64_t n)
{
    (void)s;
    const r1_block_q4_0 *blk = row;
    for (int64_t b = 0; b < n / R1_QBLOCK; b++) {
        __m128i lo, hi;
        r1_unpack_q4(blk[b].qs, &lo, &hi);
        r1_store_block_i8(lo, hi, _cvtsh_ss(blk[b].d), out + b * R1_QBLOCK);
    }
}

/* r1_cpu__quantize_x's exact arithmetic on 16 lanes: truncate |v|, add one where the exact
 * fraction is >= 0.5, clamp, restore the sign. */
static inline __m512i r1_avx512_round_away16(__m512 v)
{
    __m512 a = _mm512_abs_ps(v);
    __m512 t = _mm512_roundscale_ps(a, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __mmask16 up = _mm512_cmp_ps_mask(_mm512_sub_ps(a, t), _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    t = _mm512_min_ps(_mm512_mask_add_ps(t, up, t, _mm512_set1_ps(1.0f)), _mm512_set1_ps(127.0f));
    __m512i q = _mm512_cvttps_epi32(t);
    __mmask16 neg = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ);
    return _mm512_mask_sub_epi32(q, neg, _mm512_setzero_si512(), q);
}

static void r1_avx512_quantize_x(const float *x, r1_cpu_qx_block *out, int64_t n)
{
    for (int64_t b = 0; b < n / R1_QBLOCK; b++) {
        __m512 v0 = _mm512_loadu_ps(x + b * R1_QBLOCK),
               v1 = _mm512_loadu_ps(x + b * R1_QBLOCK + 16);
        float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        float d = amax / 127.0f;
        __m512 inv = _mm512_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
        __m512i q0 = r1_avx512_round_away16(_mm512_mul_ps(v0, inv));
        __m512i q1 = r1_avx512_round_away16(_mm512_mul_ps(v1, inv));
        _mm_storeu_si128((__m128i *)out[b].q, _mm512_cvtepi32_epi8(q0));
        _mm_storeu_si128((__m128i *)(out[b].q + 16), _mm512_cvtepi32_epi8(q1));
        out[b].d = d;
        out[b].sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
    }
}

static void r1_avx512_qx_q8_0(const void *rows, size_t row_bytes, int32_t n_rows,
                              const r1_cpu_qx_block *x, int64_t n_blocks, float *out)
{
    r1_qx_rows(0, rows, row_bytes, n_rows, x, n_blocks, out);
}

static void r1_avx512_qx_q4_0(const void *rows, size_t row_bytes, int32_t n_rows,
                              const r1_cpu_qx_block *x, int64_t n_blocks, float *out)
{
    r1_qx_rows(1, rows, row_bytes, n_rows, x, n_blocks, out);
}

/* kernels_exp.h's operations on 16 lanes. */
static inline __m512 r1_avx512_exp_nonpositive(__m512 x)
{
    const __m512 lo = _mm512_set1_ps(R1_EXP_UNDERFLOW);
    const __mmask16 live = _mm512_cmp_ps_mask(x, lo, _CMP_GE_OQ);
    x = _mm512_max_ps(x, lo);
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(R1_EXP_LOG2E)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(-R1_EXP_LN2_HI), x);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(-R1_EXP_LN2_LO), r);
    __m512 p = _mm512_set1_ps(R1_EXP_C7);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(R1_EXP_C6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(R1_EXP_C5));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(R1_EXP_C4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(R1_EXP_C3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(R1_EXP_C2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    const __m512i bits = _mm512_slli_epi32(
        _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(R1_EXP_BIAS)), 23);
    const __m512 e =
        _mm512_mul_ps(_mm512_mul_ps(p, _mm512_castsi512_ps(bits)), _mm512_set1_ps(R1_EXP_TWO_M64));
    return _mm512_maskz_mov_ps(live, e);
}

static void r1_avx512_silu_mul(const float *a, const float *b, int64_t n, float *y)
{
    const __m512 sign = _mm512_set1_ps(-0.0f), zero = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : r1_tail_mask(n - i);
        const __m512 va = _mm512_maskz_loadu_ps(m, a + i), vb = _mm512_maskz_loadu_ps(m, b + i);
        const __m512 e = r1_avx512_exp_nonpositive(_mm512_or_ps(va, sign)); /* -|a| */
        const __m512 num = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(va, zero, _CMP_GE_OQ),
                                                _mm512_mul_ps(va, e), va);
        const __m512 s = _mm512_div_ps(num, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
        _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(s, vb));
    }
}

static void r1_avx512_r16_q8_0(const void *const *groups, int32_t n_groups,
                               const r1_cpu_qx_block *x, int64_t n_blocks, float *const *out)
{
    r1_r16_groups(0, groups, n_groups, x, n_blocks, out);
}

static void r1_avx512_r16_q4_0(const void *const *groups, int32_t n_groups,
                               const r1_cpu_qx_block *x, int64_t n_blocks, float *const *out)
{
    r1_r16_groups(1, groups, n_groups, x, n_blocks, out);
}

static void r1_avx512_dequant_r16_q8_0(const void *group, int64_t cols, float *out)
{
    r1_r16_dequant(0, group, cols, out);
}

static void r1_avx512_dequant_r16_q4_0(const void *group, int64_t cols, float *out)
{
    r1_r16_dequant(1, group, cols, out);
}

/* In kernels_avx512vnni.c, compiled with -mavx512vnni. */
void r1_cpu__avx512vnni_qx_q8_0(const void *rows, size_t row_bytes, int32_t n_rows,
                                const r1_cpu_qx_block *x, int64_t n_blocks, float *out);
void r1_cpu__avx512vnni_qx_q4_0(const void *rows, size_t row_bytes, int32_t n_rows,
                                const r1_cpu_qx_block *x, int64_t n_blocks, float *out);
void r1_cpu__avx512vnni_r16_q8_0(const void *const *groups, int32_t n_groups,
                                 const r1_cpu_qx_block *x, int64_t n_blocks, float *const *out);
void r1_cpu__avx512vnni_r16_q4_0(const void *const *groups, int32_t n_groups,
                                 const r1_cpu_qx_block *x, int64_t n_blocks, float *const *out);

#define R1_AVX512_TABLE(table_name, qx_q8_0, qx_q4_0, r16_q8_0, r16_q4_0)                          \
    static const r1_cpu_kernel_table table_name = {                                                \
        .name = "avx512",                                                                          \
        .dot =                                                                                     \
            {                                                                                      \
                [R1_DTYPE_F32] = r1_avx512_row_f32,                                                \
                [R1_DTYPE_F16] = r1_avx512_row_f16,                                                \
                [R1_DTYPE_BF16] = r1_avx512_row_bf16,                                              \
                [R1_DTYPE_FP8_E4M3] = r1_avx512_row_fp8,                                           \
                [R1_DTYPE_Q8_0] = r1_avx512_row_q8_0,                                              \
                [R1_DTYPE_Q4_0] = r1_avx512_row_q4_0,                                              \
            },                                                                                     \
        .dequant =                                                                                 \
            {                                                                                      \
                [R1_DTYPE_F32] = r1_avx512_dequant_f32,                                            \
                [R1_DTYPE_F16] = r1_avx512_dequant_f16,                                            \
                [R1_DTYPE_BF16] = r1_avx512_dequant_bf16,                                          \
                [R1_DTYPE_FP8_E4M3] = r1_avx512_dequant_fp8,                                       \
                [R1_DTYPE_Q8_0] = r1_avx512_dequant_q8_0,                                          \
                [R1_DTYPE_Q4_0] = r1_avx512_dequant_q4_0,                                          \
            },                                                                                     \
        .dot_f32 = r1_avx512_dot_f32,                                                              \
        .axpy = r1_avx512_axpy,                                                                    \
        .axpy_rows = r1_avx512_axpy_rows,                                                          \
        .quantize_x = r1_avx512_quantize_x,                                                        \
        .silu_mul = r1_avx512_silu_mul,                                                            \
        .dot_qx =                                                                                  \
            {                                                                                      \
                [R1_DTYPE_Q8_0] = qx_q8_0,                                                         \
                [R1_DTYPE_Q4_0] = qx_q4_0,                                                         \
            },                                                                                     \
        .dot_r16 =                                                                                 \
            {                                                                                      \
                [R1_DTYPE_Q8_0] = r16_q8_0,                                                        \
                [R1_DTYPE_Q4_0] = r16_q4_0,                                                        \
            },                                                                                     \
        .dequant_r16 =                                                                             \
            {                                                                                      \
                [R1_DTYPE_Q8_0] = r1_avx512_dequant_r16_q8_0,                                      \
                [R1_DTYPE_Q4_0] = r1_avx512_dequant_r16_q4_0,                                      \
            },                                                                                     \
    }

R1_AVX512_TABLE(r1_avx512_table, r1_avx512_qx_q8_0, r1_avx512_qx_q4_0, r1_avx512_r16_q8_0,
                r1_avx512_r16_q4_0);
R1_AVX512_TABLE(r1_avx512vnni_table, r1_cpu__avx512vnni_qx_q8_0, r1_cpu__avx512vnni_qx_q4_0,
                r1_cpu__avx512vnni_r16_q8_0, r1_cpu__avx512vnni_r16_q4_0);

const r1_cpu_kernel_table *r1_cpu__kernels_avx512(void)
{
    return &r1_avx512_table;
}

const r1_cpu_kernel_table *r1_cpu__kernels_avx512vnni(void)
{
    return &r1_avx512vnni_table;
}
