/* kernels_avx2.c: AVX2+FMA+F16C row kernels, called only on CPUs that have them. */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels_exp.h"
#include "kernels_levels.h"

/* Fixed pairing order, so a row's result never depends on anything but its data. */
static inline float r1_hsum256(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Eight f16 values to float. */
static inline __m256 r1_load8_f16(const uint16_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

/* bf16 is the top half of a float: widen and shift. */
static inline __m256 r1_load8_bf16(const uint16_t *p)
{
    __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

/* Eight e4m3fn bytes to float, scaled by 2^-8: moving the 7 magnitude bits down one place
 * gives the f16 with the same mantissa and an exponent 8 lower (bias 15 vs 7), subnormals
 * included, and F16C converts that exactly. The 2^8 goes into the block scale. The NaN codes
 * 0x7f/0xff decode as +-480 here; valid checkpoints never contain them. */
static inline __m256 r1_load8_fp8(const uint8_t *p)
{
    __m128i b = _mm_loadl_epi64((const __m128i *)p);
    __m128i w = _mm_unpacklo_epi8(_mm_setzero_si128(), b); /* byte << 8 */
    __m128i h = _mm_and_si128(_mm_srai_epi16(w, 1), _mm_set1_epi16((short)0xBF80));
    return _mm256_cvtph_ps(h);
}

static inline __m256 r1_load8_f32(const float *p)
{
    return _mm256_loadu_ps(p);
}

/* Tails: copy the last (< 8) elements into zeroed buffers and run the same load. */
#define R1_TAIL_LOAD(load, type, p, rem)                                                           \
    __extension__({                                                                                \
        type buf_[8];                                                                              \
        memset(buf_, 0, sizeof buf_);                                                              \
        memcpy(buf_, (p), (size_t)(rem) * sizeof(type));                                           \
        load(buf_);                                                                                \
    })

static inline __m256 r1_load_tail_x(const float *x, int64_t rem)
{
    return R1_TAIL_LOAD(r1_load8_f32, float, x, rem);
}

/* The body shared by the plain types: 32 elements per step in four accumulators, then 8, then
 * the tail, then a fixed reduction. */
#define R1_DOT_PLAIN(load, type, w, x, n)                                                          \
    __extension__({                                                                                \
        __m256 a0_ = _mm256_setzero_ps(), a1_ = a0_, a2_ = a0_, a3_ = a0_;                         \
        int64_t i_ = 0;                                                                            \
        for (; i_ + 32 <= (n); i_ += 32) {                                                         \
            a0_ = _mm256_fmadd_ps(load((w) + i_), _mm256_loadu_ps((x) + i_), a0_);                 \
            a1_ = _mm256_fmadd_ps(load((w) + i_ + 8), _mm256_loadu_ps((x) + i_ + 8), a1_);         \
            a2_ = _mm256_fmadd_ps(load((w) + i_ + 16), _mm256_loadu_ps((x) + i_ + 16), a2_);       \
            a3_ = _mm256_fmadd_ps(load((w) + i_ + 24), _mm256_loadu_ps((x) + i_ + 24), a3_);       \
        }                                                                                          \
        for (; i_ + 8 <= (n); i_ += 8)                                                             \
            a0_ = _mm256_fmadd_ps(load((w) + i_), _mm256_loadu_ps((x) + i_), a0_);                 \
        if (i_ < (n))                                                                              \
            a0_ = _mm256_fmadd_ps(R1_TAIL_LOAD(load, type, (w) + i_, (n)-i_),                      \
                                  r1_load_tail_x((x) + i_, (n)-i_), a0_);                          \
        r1_hsum256(_mm256_add_ps(_mm256_add_ps(a0_, a1_), _mm256_add_ps(a2_, a3_)));               \
    })

static void r1_avx2_axpy(float alpha, const float *x, int64_t n, float *y)
{
    const __m256 a = _mm256_set1_ps(alpha);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(a, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++)
        y[i] = fmaf(alpha, x[i], y[i]);
}

/* Four vectors of y at a time stay in registers over all the rows. */
static void r1_avx2_axpy_rows(const float *alpha, const float *x, int64_t ld, int64_t n_rows,
                              int64_t n, float *y)
{
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256 y0 = _mm256_loadu_ps(y + i), y1 = _mm256_loadu_ps(y + i + 8),
               y2 = _mm256_loadu_ps(y + i + 16), y3 = _mm256_loadu_ps(y + i + 24);
        for (int64_t r = 0; r < n_rows; r++) {
            const __m256 a = _mm256_set1_ps(alpha[r]);
            const float *xr = x + r * ld + i;
            y0 = _mm256_fmadd_ps(a, _mm256_loadu_ps(xr), y0);
            y1 = _mm256_fmadd_ps(a, _mm256_loadu_ps(xr + 8), y1);
            y2 = _mm256_fmadd_ps(a, _mm256_loadu_ps(xr + 16), y2);
            y3 = _mm256_fmadd_ps(a, _mm256_loadu_ps(xr + 24), y3);
        }
        _mm256_storeu_ps(y + i, y0);
        _mm256_storeu_ps(y + i + 8, y1);
        _mm256_storeu_ps(y + i + 16, y2);
        _mm256_storeu_ps(y + i + 24, y3);
    }
    for (; i + 8 <= n; i += 8) {
        __m256 y0 = _mm256_loadu_ps(y + i);
        for (int64_t r = 0; r < n_rows; r++)
            y0 = _mm256_fmadd_ps(_mm256_set1_ps(alpha[r]), _mm256_loadu_ps(x + r * ld + i), y0);
        _mm256_storeu_ps(y + i, y0);
    }
    for (; i < n; i++) {
        float acc = y[i];
        for (int64_t r = 0; r < n_rows; r++)
            acc = fmaf(alpha[r], x[r * ld + i], acc);
        y[i] = acc;
    }
}

static float r1_avx2_dot_f32(const float *a, const float *b, int64_t n)
{
    return R1_DOT_PLAIN(r1_load8_f32, float, a, b, n);
}

static float r1_avx2_row_f32(const void *row, const float *scale_row, const float *x, int64_t n)
{
    (void)scale_row;
    return r1_avx2_dot_f32(row, x, n);
}

static float r1_avx2_row_f16(const void *row, const float *scale_row, const float *x, int64_t n)
{
    (void)scale_row;
    const uint16_t *w = row;
    return R1_DOT_PLAIN(r1_load8_f16, uint16_t, w, x, n);
}

static float r1_avx2_row_bf16(const void *row, const float *scale_row, const float *x, int64_t n)
{
    (void)scale_row;
    const uint16_t *w = row;
    return R1_DOT_PLAIN(r1_load8_bf16, uint16_t, w, x, n);
}

static float r1_avx2_row_fp8(const void *row, const float *scale_row, const float *x, int64_t n)
{
    const uint8_t *q = row;
    __m256 total = _mm256_setzero_ps();
    for (int64_t b0 = 0; b0 < n; b0 += R1_FP8_SCALE_BLOCK) {
        int64_t len = n - b0 < R1_FP8_SCALE_BLOCK ? n - b0 : R1_FP8_SCALE_BLOCK;
        const uint8_t *qb = q + b0;
        const float *xb = x + b0;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        int64_t i = 0;
        for (; i + 32 <= len; i += 32) {
            a0 = _mm256_fmadd_ps(r1_load8_fp8(qb + i), _mm256_loadu_ps(xb + i), a0);
            a1 = _mm256_fmadd_ps(r1_load8_fp8(qb + i + 8), _mm256_loadu_ps(xb + i + 8), a1);
            a2 = _mm256_fmadd_ps(r1_load8_fp8(qb + i + 16), _mm256_loadu_ps(xb + i + 16), a2);
            a3 = _mm256_fmadd_ps(r1_load8_fp8(qb + i + 24), _mm256_loadu_ps(xb + i + 24), a3);
        }
        for (; i + 8 <= len; i += 8)
            a0 = _mm256_fmadd_ps(r1_load8_fp8(qb + i), _mm256_loadu_ps(xb + i), a0);
        if (i < len)
            a0 = _mm256_fmadd_ps(R1_TAIL_LOAD(r1_load8_fp8, uint8_t, qb + i, len - i),
                                 r1_load_tail_x(xb + i, len - i), a0);
        __m256 part = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
        __m256 s = _mm256_set1_ps(scale_row[b0 / R1_FP8_SCALE_BLOCK] * 256.0f);
        total = _mm256_fmadd_ps(part, s, total);
    }
    return r1_hsum256(total);
}

/* 32 signed bytes times 32 floats, as one vector of partial sums (two independent chains). */
static inline __m256 r1_block_dot_i8(__m128i q0, __m128i q1, const float *x)
{
    __m256 f0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q0));
    __m256 f1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q0, 8)));
    __m256 f2 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q1));
    __m256 f3 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q1, 8)));
    __m256 p01 = _mm256_fmadd_ps(f1, _mm256_loadu_ps(x + 8), _mm256_mul_ps(f0, _mm256_loadu_ps(x)));
    __m256 p23 =
        _mm256_fmadd_ps(f3, _mm256_loadu_ps(x + 24), _mm256_mul_ps(f2, _mm256_loadu_ps(x + 16)));
    return _mm256_add_ps(p01, p23);
}

/* Q4_0 nibbles as signed bytes: low nibbles are elements 0..15, high nibbles 16..31. */
static inline void r1_unpack_q4(const uint8_t *qs, __m128i *lo, __m128i *hi)
{
    __m128i v = _mm_loadu_si128((const __m128i *)qs);
    __m128i m = _mm_set1_epi8(0x0f), eight = _mm_set1_epi8(8);
    *lo = _mm_sub_epi8(_mm_and_si128(v, m), eight);
    *hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(v, 4), m), eight);
}

/* Even and odd blocks go to separate accumulators so the scale multiply-adds of consecutive
 * blocks do not wait on each other. */
static float r1_avx2_row_q8_0(const void *row, const float *scale_row, const float *x, int64_t n)
{
    (void)scale_row;
    const r1_block_q8_0 *blk = row;
    int64_t nb = n / R1_QBLOCK;
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t b = 0; b < nb; b++) {
        __m128i q0 = _mm_loadu_si128((const __m128i *)blk[b].q);
        __m128i q1 = _mm_loadu_si128((const __m128i *)(blk[b].q + 16));
        __m256 p = r1_block_dot_i8(q0, q1, x + b * R1_QBLOCK);
        __m256 d = _mm256_set1_ps(_cvtsh_ss(blk[b].d));
        acc[b & 1] = _mm256_fmadd_ps(p, d, acc[b & 1]);
    }
    return r1_hsum256(_mm256_add_ps(acc[0], acc[1]));
}

static float r1_avx2_row_q4_0(const void *row, const float *scale_row, const float *x, int64_t n)
{
    (void)scale_row;
    const r1_block_q4_0 *blk = row;
    int64_t nb = n / R1_QBLOCK;
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t b = 0; b < nb; b++) {
        __m128i lo, hi;
        r1_unpack_q4(blk[b].qs, &lo, &hi);
        __m256 p = r1_block_dot_i8(lo, hi, x + b * R1_QBLOCK);
        __m256 d = _mm256_set1_ps(_cvtsh_ss(blk[b].d));
        acc[b & 1] = _mm256_fmadd_ps(p, d, acc[b & 1]);
    }
    return r1_hsum256(_mm256_add_ps(acc[0], acc[1]));
}
/* The integer path on 8-bit activations: per block, 8 int32 lanes of exact sums (maddubs
 * pairs stay below 2^15 since |w| <= 128 and |q| <= 127), converted and scaled per lane. */
static inline __m256i r1_avx2_sum_i8_lanes(__m256i u, __m256i s)
{
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

static inline __m256 r1_avx2_block_scale(uint16_t wd, float xd)
{
    return _mm256_set1_ps(_cvtsh_ss(wd) * xd);
}

/* n_rows is a constant at each call site, so every row's loop is the same code. */
static inline __attribute__((always_inline)) void
r1_avx2_qx_q8_0_rows(const uint8_t *rows, size_t row_bytes, int32_t n_rows,
                     const r1_cpu_qx_block *x, int64_t n_blocks, float *out)
{
    __m256 acc[R1_CPU_QX_MAX_ROWS];
    for (int32_t r = 0; r < n_rows; r++)
        acc[r] = _mm256_setzero_ps();
    for (int64_t b = 0; b < n_blocks; b++) {
        __m256i xq = _mm256_loadu_si256((const __m256i *)x[b].q);
        for (int32_t r = 0; r < n_rows; r++) {
            const r1_block_q8_0 *blk =
                (const r1_block_q8_0 *)(const void *)(rows + (size_t)r * row_bytes) + b;
            /* a few lines ahead of each row: the rows of a group are separate streams */
            _mm_prefetch((const char *)blk + 256, _MM_HINT_T0);
            __m256i w = _mm256_loadu_si256((const __m256i *)blk->q);
            __m256i p = r1_avx2_sum_i8_lanes(_mm256_abs_epi8(w), _mm256_sign_epi8(xq, w));
            acc[r] =
                _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), r1_avx2_block_scale(blk->d, x[b].d), acc[r]);
        }
    }
    for (int32_t r = 0; r < n_rows; r++)
        out[r] = r1_hsum256(acc[r]);
}

/* Nibbles are unsigned bytes, so maddubs takes them as they are; the -8 offset is subtracted
 * per lane (8 * the lane's activation sum), exact and shared by the rows. */
static inline __attribute__((always_inline)) void
r1_avx2_qx_q4_0_rows(const uint8_t *rows, size_t row_bytes, int32_t n_rows,
                     const r1_cpu_qx_block *x, int64_t n_blocks, float *out)
{
    __m256 acc[R1_CPU_QX_MAX_ROWS];
    for (int32_t r = 0; r < n_rows; r++)
        acc[r] = _mm256_setzero_ps();
    const __m256i low = _mm256_set1_epi8(0x0f), eight = _mm256_set1_epi8(8);
    for (int64_t b = 0; b < n_blocks; b++) {
        __m256i xq = _mm256_loadu_si256((const __m256i *)x[b].q);
        __m256i offset = r1_avx2_sum_i8_lanes(eight, xq);
        for (int32_t r = 0; r < n_rows; r++) {
            const r1_block_q4_0 *blk =
                (const r1_block_q4_0 *)(const void *)(rows + (size_t)r * row_bytes) + b;
            /* a few lines ahead of each row: the rows of a group are separate streams */
            _mm_prefetch((const char *)blk + 256, _MM_HINT_T0);
            __m128i v = _mm_loadu_si128((const __m128i *)blk->qs);
            __m256i nib = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), low);
            __m256i p = _mm256_sub_epi32(r1_avx2_sum_i8_lanes(nib, xq), offset);
            acc[r] =
                _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), r1_avx2_block_scale(blk->d, x[b].d), acc[r]);
        }
    }
    for (int32_t r = 0; r < n_rows; r++)
        out[r] = r1_hsum256(acc[r]);
}

/* r1_cpu__quantize_x's exact arithmetic on 8 lanes (see kernels_scalar.c). */
static inline __m256i r1_avx2_round_away8(__m256 v)
{
    __m256 a = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v);
    __m256 t = _mm256_round_ps(a, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256 up = _mm256_cmp_ps(_mm256_sub_ps(a, t), _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    t = _mm256_add_ps(t, _mm256_and_ps(up, _mm256_set1_ps(1.0f)));
    __m256i q = _mm256_cvttps_epi32(_mm256_min_ps(t, _mm256_set1_ps(127.0f)));
    __m256i neg = _mm256_castps_si256(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LT_OQ));
    return _mm256_sub_epi32(_mm256_xor_si256(q, neg), neg);
}

static void r1_avx2_quantize_x(const float *x, r1_cpu_qx_block *out, int64_t n)
{
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int64_t b = 0; b < n / R1_QBLOCK; b++) {
        const float *xb = x + b * R1_QBLOCK;
        __m256 v[4];
        __m256 m = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(xb + 8 * k);
            m = _mm256_max_ps(m, _mm256_and_ps(v[k], abs_mask));
        }
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        float d = _mm_cvtss_f32(h) / 127.0f;
        __m256 inv = _mm256_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
        __m256i q[4];
        for (int k = 0; k < 4; k++)
            q[k] = r1_avx2_round_away8(_mm256_mul_ps(v[k], inv));
        /* packs interleave 128-bit lanes; the permute puts the 4-byte groups back in order */
        __m256i p =
            _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)out[b].q, p);
        __m256i s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(1, 0, 3, 2)));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(2, 3, 0, 1)));
        out[b].d = d;
        out[b].sum = _mm_cvtsi128_si32(s4);
    }
}

static void r1_avx2_qx_q8_0(const void *rows, size_t row_bytes, int32_t n_rows,
                            const r1_cpu_qx_block *x, int64_t n_blocks, float *out)
{
    const uint8_t *w = rows;
    int32_t r = 0;
    for (; r + 4 <= n_rows; r += 4)
        r1_avx2_qx_q8_0_rows(w + (size_t)r * row_bytes, row_bytes, 4, x, n_blocks, out + r);
    for (; r < n_rows; r++)
        r1_avx2_qx_q8_0_rows(w + (size_t)r * row_bytes, row_bytes, 1, x, n_blocks, out + r);
}

static void r1_avx2_qx_q4_0(const void *rows, size_t row_bytes, int32_t n_rows,
                            const r1_cpu_qx_block *x, int64_t n_blocks, float *out)
{
    const uint8_t *w = rows;
    int32_t r = 0;
    for (; r + 4 <= n_rows; r += 4)
        r1_avx2_qx_q4_0_rows(w + (size_t)r * row_bytes, row_bytes, 4, x, n_blocks, out + r);
    for (; r < n_rows; r++)
        r1_avx2_qx_q4_0_rows(w + (size_t)r * row_bytes, row_bytes, 1, x, n_blocks, out + r);
}

/* ---- the R16 layout (weight_layout.h): rows 0-7 and 8-15 of a group in two vectors ---- */

static inline __m256i r1_avx2_r16_x4(const int8_t *q, int j)
{
    int32_t v;
    memcpy(&v, q + 4 * j, sizeof v);
    return _mm256_set1_epi32(v);
}

/* acc + per lane the sum of four products of unsigned bytes u and signed bytes x (no maddubs
 * pair can saturate: |u| <= 128 against |x| <= 127). */
static inline __m256i r1_avx2_r16_dot4(__m256i acc, __m256i u, __m256i x)
{
    return _mm256_add_epi32(acc,
                            _mm256_madd_epi16(_mm256_maddubs_epi16(u, x), _mm256_set1_epi16(1)));
}

/* One block's exact sums for the 8 rows whose 4-byte groups start at w (unit stride 64). Q8_0's
 * stored q + 128 is turned back into q, then |q| times x with q's sign (maddubs would
 * saturate on the biased bytes); Q4_0 nibbles take the -8 off through x's sum. */
static inline __m256i r1_avx2_r16_block(int32_t is_q4_0, const uint8_t *w,
                                        const r1_cpu_qx_block *xb)
{
    __m256i s = _mm256_setzero_si256();
    if (is_q4_0) {
        const __m256i m = _mm256_set1_epi8(0x0f);
        for (int j = 0; j < 4; j++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(w + 64 * j));
            s = r1_avx2_r16_dot4(s, _mm256_and_si256(v, m), r1_avx2_r16_x4(xb->q, j));
            s = r1_avx2_r16_dot4(s, _mm256_and_si256(_mm256_srli_epi16(v, 4), m),
                                 r1_avx2_r16_x4(xb->q, 4 + j));
        }
        return _mm256_sub_epi32(s, _mm256_set1_epi32(8 * xb->sum));
    }
    for (int j = 0; j < 8; j++) {
        __m256i q =
            _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(const void *)(w + 64 * j)),
                             _mm256_set1_epi8(-128));
        s = r1_avx2_r16_dot4(s, _mm256_sign_epi8(q, q),
                             _mm256_sign_epi8(r1_avx2_r16_x4(xb->q, j), q));
    }
    return s;
}

/* n_groups (1 or R1_CPU_R16_STREAMS, a constant once inlined) groups side by side, block b of
 * each before block b + 1 of any: more streams from memory at once, as the AVX-512 kernel reads
 * them (kernels_qx_avx512.h); each group's arithmetic is the same whatever n_groups. */
static inline __attribute__((always_inline)) void
r1_avx2_r16_set(int32_t is_q4_0, const void *const *groups, int32_t n_groups,
                const r1_cpu_qx_block *x, int64_t n_blocks, float *const *out)
{
    const size_t wb = is_q4_0 ? 256 : 512, ahead = n_groups > 1 ? 2048 : 4096;
    __m256 acc[R1_CPU_R16_STREAMS][2][4];
    for (int32_t g = 0; g < n_groups; g++)
        for (int h = 0; h < 2; h++)
            for (int k = 0; k < 4; k++)
                acc[g][h][k] = _mm256_setzero_ps();
    for (int64_t b = 0; b < n_blocks; b++) {
        const __m256 xd = _mm256_set1_ps(x[b].d);
        for (int32_t g = 0; g < n_groups; g++) {
            const uint16_t *scales = groups[g];
            const uint8_t *wblock =
                (const uint8_t *)groups[g] + (size_t)n_blocks * 16 * 2 + (size_t)b * wb;
            for (size_t line = 0; line < wb; line += 64)
                _mm_prefetch((const char *)wblock + ahead + line, _MM_HINT_T0);
            for (int h = 0; h < 2; h++) {
                __m256i s = r1_avx2_r16_block(is_q4_0, wblock + 32 * h, x + b);
                __m256 d =
                    _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128(
                                      (const __m128i *)(const void *)(scales + b * 16 + 8 * h))),
                                  xd);
                acc[g][h][b & 3] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), d, acc[g][h][b & 3]);
            }
        }
    }
    for (int32_t g = 0; g < n_groups; g++)
        for (int h = 0; h < 2; h++)
            _mm256_storeu_ps(out[g] + 8 * h,
                             _mm256_add_ps(_mm256_add_ps(acc[g][h][0], acc[g][h][1]),
                                           _mm256_add_ps(acc[g][h][2], acc[g][h][3])));
}

static inline __attribute__((always_inline)) void
r1_avx2_r16(int32_t is_q4_0, const void *const *groups, int32_t n_groups, const r1_cpu_qx_block *x,
            int64_t n_blocks, float *const *out)
{
    if (n_groups == R1_CPU_R16_STREAMS) {
        r1_avx2_r16_set(is_q4_0, groups, R1_CPU_R16_STREAMS, x, n_blocks, out);
        return;
    }
    for (int32_t g = 0; g < n_groups; g++)
        r1_avx2_r16_set(is_q4_0, groups + g, 1, x, n_blocks, out + g);
}

/* kernels_exp.h's operations on 8 lanes. */
static inline __m256 r1_avx2_exp_nonpositive(__m256 x)
{
    const __m256 lo = _mm256_set1_ps(R1_EXP_UNDERFLOW);
    const __m256 live = _mm256_cmp_ps(x, lo, _CMP_GE_OQ);
    x = _mm256_max_ps(x, lo);
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(R1_EXP_LOG2E)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-R1_EXP_LN2_HI), x);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(-R1_EXP_LN2_LO), r);
    __m256 p = _mm256_set1_ps(R1_EXP_C7);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(R1_EXP_C6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(R1_EXP_C5));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(R1_EXP_C4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(R1_EXP_C3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(R1_EXP_C2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i bits = _mm256_slli_epi32(
        _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(R1_EXP_BIAS)), 23);
    const __m256 e =
        _mm256_mul_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(bits)), _mm256_set1_ps(R1_EXP_TWO_M64));
    return _mm256_and_ps(live, e);
}

static void r1_avx2_silu_mul(const float *a, const float *b, int64_t n, float *y)
{
    const __m256 sign = _mm256_set1_ps(-0.0f), zero = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 va = _mm256_loadu_ps(a + i), vb = _mm256_loadu_ps(b + i);
        const __m256 e = r1_avx2_exp_nonpositive(_mm256_or_ps(va, sign)); /* -|a| */
        const __m256 num =
            _mm256_blendv_ps(_mm256_mul_ps(va, e), va, _mm256_cmp_ps(va, zero, _CMP_GE_OQ));
        const __m256 s = _mm256_div_ps(num, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
        _mm256_storeu_ps(y + i, _mm256_mul_ps(s, vb));
    }
    for (; i < n; i++)
        y[i] = r1_silu_mul_one(a[i], b[i]);
}

static void r1_avx2_r16_q8_0(const void *const *groups, int32_t n_groups, const r1_cpu_qx_block *x,
                             int64_t n_blocks, float *const *out)
{
    r1_avx2_r16(0, groups, n_groups, x, n_blocks, out);
}

static void r1_avx2_r16_q4_0(const void *const *groups, int32_t n_groups, const r1_cpu_qx_block *x,
                             int64_t n_blocks, float *const *out)
{
    r1_avx2_r16(1, groups, n_groups, x, n_blocks, out);
}

/* Eight signed bytes (four elements of rows r and r + 1) times the rows' scales (d8 holds rows
 * r0..r0+7, r - r0 = k), stored at the rows' elements; d * (float)q as dtype.c. */
static inline void r1_avx2_r16_store2(__m128i q8, __m256 d8, int k, float *o, int64_t cols)
{
    __m256 d =
        _mm256_permutevar8x32_ps(d8, _mm256_setr_epi32(k, k, k, k, k + 1, k + 1, k + 1, k + 1));
    __m256 v = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q8)));
    _mm_storeu_ps(o + k * cols, _mm256_castps256_ps128(v));
    _mm_storeu_ps(o + (k + 1) * cols, _mm256_extractf128_ps(v, 1));
}

/* 32 signed bytes (4 elements of 8 rows) to those rows at o. */
static inline void r1_avx2_r16_store_half(__m256i v, __m256 d8, float *o, int64_t cols)
{
    __m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
    r1_avx2_r16_store2(lo, d8, 0, o, cols);
    r1_avx2_r16_store2(_mm_unpackhi_epi64(lo, lo), d8, 2, o, cols);
    r1_avx2_r16_store2(hi, d8, 4, o, cols);
    r1_avx2_r16_store2(_mm_unpackhi_epi64(hi, hi), d8, 6, o, cols);
}

static inline __attribute__((always_inline)) void
r1_avx2_r16_dequant(int32_t is_q4_0, const void *group, int64_t cols, float *out)
{
    const int64_t n_blocks = cols / 32;
    const uint16_t *scales = group;
    const uint8_t *w = (const uint8_t *)group + (size_t)n_blocks * 16 * 2;
    for (int64_t b = 0; b < n_blocks; b++) {
        for (int h = 0; h < 2; h++) {
            __m256 d = _mm256_cvtph_ps(
                _mm_loadu_si128((const __m128i *)(const void *)(scales + b * 16 + 8 * h)));
            float *o = out + 8 * h * cols + b * 32;
            if (is_q4_0) {
                const __m256i m = _mm256_set1_epi8(0x0f), eight = _mm256_set1_epi8(8);
                for (int j = 0; j < 4; j++) {
                    __m256i v = _mm256_loadu_si256(
                        (const __m256i *)(const void *)(w + (size_t)b * 256 + 64 * j + 32 * h));
                    r1_avx2_r16_store_half(_mm256_sub_epi8(_mm256_and_si256(v, m), eight), d,
                                           o + 4 * j, cols);
                    r1_avx2_r16_store_half(
                        _mm256_sub_epi8(_mm256_and_si256(_mm256_srli_epi16(v, 4), m), eight), d,
                        o + 16 + 4 * j, cols);
                }
            } else {
                for (int j = 0; j < 8; j++) {
                    __m256i v = _mm256_xor_si256(
                        _mm256_loadu_si256(
                            (const __m256i *)(const void *)(w + (size_t)b * 512 + 64 * j + 32 * h)),
                        _mm256_set1_epi8(-128));
                    r1_avx2_r16_store_half(v, d, o + 4 * j, cols);
                }
            }
        }
    }
}

static void r1_avx2_dequant_r16_q8_0(const void *group, int64_t cols, float *out)
{
    r1_avx2_r16_dequant(0, group, cols, out);
}

static void r1_avx2_dequant_r16_q4_0(const void *group, int64_t cols, float *out)
{
    r1_avx2_r16_dequant(1, group, cols, out);
}

/* Dequantisers: the same values as r1_dtype__dequantize_row (each a single float rounding). */
static void r1_avx2_dequant_f32(const void *row, const float *s, float *out, int64_t n)
{
    (void)s;
    memcpy(out, row, (size_t)n * sizeof(float));
}

static void r1_avx2_dequant_f16(const void *row, const float *s, float *out, int64_t n)
{
    const uint16_t *h = row;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, r1_load8_f16(h + i));
    if (i < n)
        r1_dtype__dequantize_row(R1_DTYPE_F16, h + i, s, out + i, n - i);
}

static void r1_avx2_dequant_bf16(const void *row, const float *s, float *out, int64_t n)
{
    const uint16_t *h = row;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, r1_load8_bf16(h + i));
    if (i < n)
        r1_dtype__dequantize_row(R1_DTYPE_BF16, h + i, s, out + i, n - i);
}

static void r1_avx2_dequant_fp8(const void *row, const float *scale_row, float *out, int64_t n)
{
    const uint8_t *q = row;
    for (int64_t b0 = 0; b0 < n; b0 += R1_FP8_SCALE_BLOCK) {
        int64_t len = n - b0 < R1_FP8_SCALE_BLOCK ? n - b0 : R1_FP8_SCALE_BLOCK;
        float scale = scale_row[b0 / R1_FP8_SCALE_BLOCK];
        __m256 s = _mm256_set1_ps(scale * 256.0f);
        int64_t i = 0;
        for (; i + 8 <= len; i += 8)
            _mm256_storeu_ps(out + b0 + i, _mm256_mul_ps(r1_load8_fp8(q + b0 + i), s));
        if (i < len)
            r1_dtype__dequantize_row(R1_DTYPE_FP8_E4M3, q + b0 + i, &scale, out + b0 + i, len - i);
    }
}

static inline void r1_store_block_i8(__m128i q0, __m128i q1, float d, float *out)
{
    __m256 vd = _mm256_set1_ps(d);
    _mm256_storeu_ps(out, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q0)), vd));
    _mm256_storeu_ps(
        out + 8,
        _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q0, 8))), vd));
    _mm256_storeu_ps(out + 16, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q1)), vd));
    _mm256_storeu_ps(
        out + 24,
        _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q1, 8))), vd));
}

static void r1_avx2_dequant_q8_0(const void *row, const float *s, float *out, int64_t n)
{
    (void)s;
    const r1_block_q8_0 *blk = row;
    for (int64_t b = 0; b < n / R1_QBLOCK; b++)
        r1_store_block_i8(_mm_loadu_si128((const __m128i *)blk[b].q),
                          _mm_loadu_si128((const __m128i *)(blk[b].q + 16)), _cvtsh_ss(blk[b].d),
                          out + b * R1_QBLOCK);
}

static void r1_avx2_dequant_q4_0(const void *row, const float *s, float *out, int64_t n)
{
    (void)s;
    const r1_block_q4_0 *blk = row;
    for (int64_t b = 0; b < n / R1_QBLOCK; b++) {
        __m128i lo, hi;
        r1_unpack_q4(blk[b].qs, &lo, &hi);
        r1_store_block_i8(lo, hi, _cvtsh_ss(blk[b].d), out + b * R1_QBLOCK);
    }
}

static const r1_cpu_kernel_table r1_avx2_table = {
    .name = "avx2",
    .dot =
        {
            [R1_DTYPE_F32] = r1_avx2_row_f32,
            [R1_DTYPE_F16] = r1_avx2_row_f16,
            [R1_DTYPE_BF16] = r1_avx2_row_bf16,
            [R1_DTYPE_FP8_E4M3] = r1_avx2_row_fp8,
            [R1_DTYPE_Q8_0] = r1_avx2_row_q8_0,
            [R1_DTYPE_Q4_0] = r1_avx2_row_q4_0,
        },
    .dequant =
        {
            [R1_DTYPE_F32] = r1_avx2_dequant_f32,
            [R1_DTYPE_F16] = r1_avx2_dequant_f16,
            [R1_DTYPE_BF16] = r1_avx2_dequant_bf16,
            [R1_DTYPE_FP8_E4M3] = r1_avx2_dequant_fp8,
            [R1_DTYPE_Q8_0] = r1_avx2_dequant_q8_0,
            [R1_DTYPE_Q4_0] = r1_avx2_dequant_q4_0,
        },
    .dot_f32 = r1_avx2_dot_f32,
    .axpy = r1_avx2_axpy,
    .axpy_rows = r1_avx2_axpy_rows,
    .quantize_x = r1_avx2_quantize_x,
    .silu_mul = r1_avx2_silu_mul,
    .dot_qx =
        {
            [R1_DTYPE_Q8_0] = r1_avx2_qx_q8_0,
            [R1_DTYPE_Q4_0] = r1_avx2_qx_q4_0,
        },
    .dot_r16 =
        {
            [R1_DTYPE_Q8_0] = r1_avx2_r16_q8_0,
            [R1_DTYPE_Q4_0] = r1_avx2_r16_q4_0,
        },
    .dequant_r16 =
        {
            [R1_DTYPE_Q8_0] = r1_avx2_dequant_r16_q8_0,
            [R1_DTYPE_Q4_0] = r1_avx2_dequant_r16_q4_0,
        },
};

const r1_cpu_kernel_table *r1_cpu__kernels_avx2(void)
{
    return &r1_avx2_table;
}
