/* dtype.c: weight type traits, float conversions, reference quantisers, row dequantisation. */

/* The quantisers must match test/ref/quant.py bit for bit, which rounds every float32 operation
 * separately. A fused multiply-add in `x * id + 8.5f` would skip one rounding and move Q4_0
 * codes at truncation boundaries, so contraction is switched off for this whole file whatever
 * flags the build passes (GCC honours the optimize pragma, clang the standard one). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "dtype.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

_Static_assert(sizeof(r1_block_q8_0) == 34, "q8_0 blocks are 34 bytes on disk");
_Static_assert(sizeof(r1_block_q4_0) == 18, "q4_0 blocks are 18 bytes on disk");

static const r1_dtype_traits r1_dtype_table[R1_DTYPE_COUNT] = {
    [R1_DTYPE_F32] = {"f32", 1, 4, 0},
    [R1_DTYPE_F16] = {"f16", 1, 2, 0},
    [R1_DTYPE_BF16] = {"bf16", 1, 2, 0},
    [R1_DTYPE_FP8_E4M3] = {"fp8_e4m3", 1, 1, 1},
    [R1_DTYPE_Q8_0] = {"q8_0", R1_QBLOCK, sizeof(r1_block_q8_0), 0},
    [R1_DTYPE_Q4_0] = {"q4_0", R1_QBLOCK, sizeof(r1_block_q4_0), 0},
};

const r1_dtype_traits *r1_dtype__traits(int32_t dt)
{
    if (dt < 0 || dt >= R1_DTYPE_COUNT)
        return NULL;
    return &r1_dtype_table[dt];
}

int32_t r1_dtype__from_name(const char *name)
{
    if (name == NULL)
        return -1;
    for (int32_t dt = 0; dt < R1_DTYPE_COUNT; dt++)
        if (strcmp(r1_dtype_table[dt].name, name) == 0)
            return dt;
    return -1;
}

size_t r1_dtype__row_bytes(int32_t dt, int64_t n_cols)
{
    const r1_dtype_traits *t = r1_dtype__traits(dt);
    if (t == NULL || n_cols < 0 || n_cols % t->block_elems != 0)
        return 0;
    return (size_t)(n_cols / t->block_elems) * t->block_bytes;
}

/* Bit casts through memcpy: the only aliasing-safe way in C11, and free after optimisation. */
static uint32_t r1_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float r1_f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float r1_fp16__to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    if (exp == 0x1f) /* inf, or NaN with its payload kept */
        return r1_f32_from_bits(sign | 0x7f800000u | (mant << 13));
    if (exp == 0) {
        if (mant == 0)
            return r1_f32_from_bits(sign);
        /* subnormal: mant * 2^-24, exact in float32 */
        float v = (float)mant * 0x1p-24f;
        return sign ? -v : v;
    }
    return r1_f32_from_bits(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t r1_fp16__from_f32(float f)
{
    uint32_t u = r1_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t exp = (u >> 23) & 0xff;
    uint32_t mant = u & 0x7fffff;

    if (exp == 0xff) {
        if (mant == 0)
            return sign | 0x7c00;
        /* NaN stays NaN: keep the top payload bits and force the quiet bit, as F16C does */
        return (uint16_t)(sign | 0x7e00 | (mant >> 13));
    }
    int32_t e = (int32_t)exp - 127 + 15; /* biased half exponent */
    if (e >= 31)
        return sign | 0x7c00; /* too large even before rounding */
    if (e <= 0) {
        /* Half subnormal (or zero): value = m * 2^-24 with m = full_mant >> shift, RNE. */
        if (e < -10)
            return sign; /* below half the smallest subnormal: rounds to zero */
        uint32_t full = mant | 0x800000;
        uint32_t shift = (uint32_t)(14 - e); /* 14..24 */
        uint32_t m = full >> shift;
        uint32_t rem = full & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (m & 1)))
            m++; /* may carry into the smallest normal, which is the right encoding */
        return (uint16_t)(sign | m);
    }
    uint32_t m = mant >> 13;
    uint32_t rem = mant & 0x1fff;
    uint32_t bits = ((uint32_t)e << 10) | m;
    if (rem > 0x1000 || (rem == 0x1000 && (m & 1)))
        bits++; /* a carry moves into the exponent; 0x7bff + 1 is infinity, as it should be */
    return (uint16_t)(sign | bits);
}

float r1_bf16__to_f32(uint16_t h)
{
    return r1_f32_from_bits((uint32_t)h << 16);
}

uint16_t r1_bf16__from_f32(float f)
{
    uint32_t u = r1_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: the canonical quiet NaN, like PyTorch */
        return (uint16_t)(((u >> 16) & 0x8000) | 0x7fc0);
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

/* Decoded once; every value is exact in float32 (at most 4 significant bits). */
static float r1_fp8_table[256];
static pthread_once_t r1_fp8_once = PTHREAD_ONCE_INIT;

static void r1_fp8_init(void)
{
    for (int b = 0; b < 256; b++) {
        int s = b >> 7, ex = (b >> 3) & 0xf, m = b & 7;
        float v;
        if (ex == 0xf && m == 7)
            v = NAN;
        else if (ex == 0)
            v = (float)m * 0x1p-9f; /* subnormal: 2^-6 * m/8 */
        else
            v = ldexpf(1.0f + (float)m / 8.0f, ex - 7);
        r1_fp8_table[b] = s ? -v : v;
    }
}

const float *r1_fp8_e4m3__table(void)
{
    pthread_once(&r1_fp8_once, r1_fp8_init);
    return r1_fp8_table;
}

float r1_fp8_e4m3__to_f32(uint8_t b)
{
    return r1_fp8_e4m3__table()[b];
}

void r1_quantize__q8_0(const float *x, r1_block_q8_0 *out, int64_t n)
{
    for (int64_t b = 0; b < n / R1_QBLOCK; b++) {
        const float *xb = x + b * R1_QBLOCK;
        float amax = 0.0f;
        for (int j = 0; j < R1_QBLOCK; j++) {
            float a = fabsf(xb[j]);
            if (a > amax)
                amax = a;
        }
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        out[b].d = r1_fp16__from_f32(d);
        for (int j = 0; j < R1_QBLOCK; j++) {
            float v = roundf(xb[j] * id); /* half away from zero */
            if (v > 127.0f)
                v = 127.0f;
            if (v < -127.0f)
                v = -127.0f;
            out[b].q[j] = (int8_t)v;
        }
    }
}

void r1_quantize__q4_0(const float *x, r1_block_q4_0 *out, int64_t n)
{
    for (int64_t b = 0; b < n / R1_QBLOCK; b++) {
        const float *xb = x + b * R1_QBLOCK;
        float amax = 0.0f, m = 0.0f;
        for (int j = 0; j < R1_QBLOCK; j++) {
            float a = fabsf(xb[j]);
            if (a > amax) { /* strict: the first of equal magnitudes wins */
                amax = a;
                m = xb[j];
            }
        }
        float d = m / -8.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        out[b].d = r1_fp16__from_f32(d);
        uint8_t q[R1_QBLOCK];
        for (int j = 0; j < R1_QBLOCK; j++) {
            /* The store through volatile rounds the product to float32 even under
             * clang -ffp-contract=fast, which ignores the pragma above. */
            volatile float p = xb[j] * id;
            float t = p + 8.5f;
            int qi = (int)t;
            q[j] = (uint8_t)(qi < 15 ? qi : 15);
        }
        for (int j = 0; j < R1_QBLOCK / 2; j++)
            out[b].qs[j] = (uint8_t)(q[j] | (q[j + R1_QBLOCK / 2] << 4));
    }
}

void r1_dtype__dequantize_row(int32_t dt, const void *row_data, const float *scale_row, float *out,
                              int64_t n_cols)
{
    switch (dt) {
    case R1_DTYPE_F32: memcpy(out, row_data, (size_t)n_cols * sizeof(float)); break;
    case R1_DTYPE_F16: {
        const uint16_t *h = row_data;
        for (int64_t i = 0; i < n_cols; i++)
            out[i] = r1_fp16__to_f32(h[i]);
        break;
    }
    case R1_DTYPE_BF16: {
        const uint16_t *h = row_data;
        for (int64_t i = 0; i < n_cols; i++)
            out[i] = r1_bf16__to_f32(h[i]);
        break;
    }
    case R1_DTYPE_FP8_E4M3: {
        const uint8_t *q = row_data;
        const float *table = r1_fp8_e4m3__table();
        for (int64_t i = 0; i < n_cols; i++)
            out[i] = table[q[i]] * scale_row[i / R1_FP8_SCALE_BLOCK];
        break;
    }
    case R1_DTYPE_Q8_0: {
        const r1_block_q8_0 *blk = row_data;
        for (int64_t b = 0; b < n_cols / R1_QBLOCK; b++) {
            float d = r1_fp16__to_f32(blk[b].d);
            for (int j = 0; j < R1_QBLOCK; j++)
                out[b * R1_QBLOCK + j] = d * (float)blk[b].q[j];
        }
        break;
    }
    case R1_DTYPE_Q4_0: {
        const r1_block_q4_0 *blk = row_data;
        for (int64_t b = 0; b < n_cols / R1_QBLOCK; b++) {
            float d = r1_fp16__to_f32(blk[b].d);
            float *o = out + b * R1_QBLOCK;
            for (int j = 0; j < R1_QBLOCK / 2; j++) {
                o[j] = d * (float)((int)(blk[b].qs[j] & 0x0f) - 8);
                o[j + R1_QBLOCK / 2] = d * (float)((int)(blk[b].qs[j] >> 4) - 8);
            }
        }
        break;
    }
    default: break;
    }
}
