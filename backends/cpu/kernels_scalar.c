/* kernels_scalar.c: portable row kernels, the reference level that runs on any CPU. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels_exp.h"
#include "kernels_levels.h"
#include "weight_layout.h"

/* Four interleaved accumulators: a fixed order that is less sequential than one running sum
 * (smaller rounding growth) and that the compiler cannot reorder without -ffast-math. */
static float r1_scalar_dot_f32(const float *a, const float *b, int64_t n)
{
    float acc[4] = {0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int k = 0; k < 4; k++)
            acc[k] += a[i + k] * b[i + k];
    for (; i < n; i++)
        acc[0] += a[i] * b[i];
    return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

static void r1_scalar_axpy(float alpha, const float *x, int64_t n, float *y)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = fmaf(alpha, x[i], y[i]);
}

static void r1_scalar_axpy_rows(const float *alpha, const float *x, int64_t ld, int64_t n_rows,
                                int64_t n, float *y)
{
    for (int64_t i = 0; i < n; i++) {
        float acc = y[i];
        for (int64_t r = 0; r < n_rows; r++)
            acc = fmaf(alpha[r], x[r * ld + i], acc);
        y[i] = acc;
    }
}

static float r1_scalar_row_f32(const void *row, const float *scale_row, const float *x, int64_t n)
{
    (void)scale_row;
    return r1_scalar_dot_f32(row, x, n);
}

static float r1_scalar_row_f16(const void *row, const float *scale_row, const float *x, int64_t n)
{
    (void)scale_row;
    const uint16_t *h = row;
    float acc[4] = {0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int k = 0; k < 4; k++)
            acc[k] += r1_fp16__to_f32(h[i + k]) * x[i + k];
    for (; i < n; i++)
        acc[0] += r1_fp16__to_f32(h[i]) * x[i];
    return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

static float r1_scalar_row_bf16(const void *row, const float *scale_row, const float *x, int64_t n)
{
    (void)scale_row;
    const uint16_t *h = row;
    float acc[4] = {0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int k = 0; k < 4; k++)
            acc[k] += r1_bf16__to_f32(h[i + k]) * x[i + k];
    for (; i < n; i++)
        acc[0] += r1_bf16__to_f32(h[i]) * x[i];
    return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

/* The block scale multiplies each 128-column partial sum once instead of every weight: the
 * fp32-scale-inside-the-GEMM form of docs/model.md §5.3.2, fewer multiplies and no extra rounding
 * of w. */
static float r1_scalar_row_fp8(const void *row, const float *scale_row, const float *x, int64_t n)
{
    const uint8_t *q = row;
    const float *table = r1_fp8_e4m3__table();
    float total = 0.0f;
    for (int64_t b0 = 0; b0 < n; b0 += R1_FP8_SCALE_BLOCK) {
        int64_t b1 = b0 + R1_FP8_SCALE_BLOCK < n ? b0 + R1_FP8_SCALE_BLOCK : n;
        float acc[4] = {0, 0, 0, 0};
        int64_t i = b0;
        for (; i + 4 <= b1; i += 4)
            for (int k = 0; k < 4; k++)
                acc[k] += table[q[i + k]] * x[i + k];
        for (; i < b1; i++)
            acc[0] += table[q[i]] * x[i];
        total += ((acc[0] + acc[1]) + (acc[2] + acc[3])) * scale_row[b0 / R1_FP8_SCALE_BLOCK];
    }
    return total;
}

static float r1_scalar_row_q8_0(const void *row, const float *scale_row, const float *x, int64_t n)
{
    (void)scale_row;
    const r1_block_q8_0 *blk = row;
    float total = 0.0f;
    for (int64_t b = 0; b < n / R1_QBLOCK; b++) {
        const float *xb = x + b * R1_QBLOCK;
        float acc[4] = {0, 0, 0, 0};
        for (int j = 0; j < R1_QBLOCK; j += 4)
            for (int k = 0; k < 4; k++)
                acc[k] += (float)blk[b].q[j + k] * xb[j + k];
        total += ((acc[0] + acc[1]) + (acc[2] + acc[3])) * r1_fp16__to_f32(blk[b].d);
    }
    return total;
}

static float r1_scalar_row_q4_0(const void *row, const float *scale_row, const float *x, int64_t n)
{
    (void)scale_row;
    const r1_block_q4_0 *blk = row;
    float total = 0.0f;
    for (int64_t b = 0; b < n / R1_QBLOCK; b++) {
        const float *xb = x + b * R1_QBLOCK;
        float lo = 0.0f, hi = 0.0f;
        for (int j = 0; j < R1_QBLOCK / 2; j++) {
            lo += (float)((int)(blk[b].qs[j] & 0x0f) - 8) * xb[j];
            hi += (float)((int)(blk[b].qs[j] >> 4) - 8) * xb[j + R1_QBLOCK / 2];
        }
        total += (lo + hi) * r1_fp16__to_f32(blk[b].d);
    }
    return total;
}

/* Round half away from zero without libm: truncation, then the exact fraction decides. */
void r1_cpu__quantize_x(const float *x, r1_cpu_qx_block *out, int64_t n)
{
    for (int64_t b = 0; b < n / R1_QBLOCK; b++) {
        const float *xb = x + b * R1_QBLOCK;
        float amax = 0.0f;
        for (int j = 0; j < R1_QBLOCK; j++)
            amax = fmaxf(amax, fabsf(xb[j]));
        float d = amax / 127.0f;
        float inv = d != 0.0f ? 1.0f / d : 0.0f;
        int32_t sum = 0;
        for (int j = 0; j < R1_QBLOCK; j++) {
            float v = xb[j] * inv, a = fabsf(v);
            int32_t t = a < 127.5f ? (int32_t)a : 127; /* also NaN: no undefined conversion */
            t += a - (float)t >= 0.5f;
            t = t > 127 ? 127 : t;
            int32_t q = v < 0.0f ? -t : t;
            out[b].q[j] = (int8_t)q;
            sum += q;
        }
        out[b].d = d;
        out[b].sum = sum;
    }
}

/* Exact integer block sums; their float products with the block scales go to four interleaved
 * accumulators (block b to b % 4), a fixed order per row. */
static void r1_scalar_qx_q8_0(const void *rows, size_t row_bytes, int32_t n_rows,
                              const r1_cpu_qx_block *x, int64_t n_blocks, float *out)
{
    for (int32_t r = 0; r < n_rows; r++) {
        const r1_block_q8_0 *blk =
            (const r1_block_q8_0 *)(const void *)((const uint8_t *)rows + (size_t)r * row_bytes);
        float acc[4] = {0, 0, 0, 0};
        for (int64_t b = 0; b < n_blocks; b++) {
            int32_t isum = 0;
            for (int j = 0; j < R1_QBLOCK; j++)
                isum += (int32_t)blk[b].q[j] * (int32_t)x[b].q[j];
            acc[b & 3] += (float)isum * (r1_fp16__to_f32(blk[b].d) * x[b].d);
        }
        out[r] = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    }
}

/* sum (nibble - 8) * q = sum nibble * q - 8 * sum q, all in integers. */
static void r1_scalar_qx_q4_0(const void *rows, size_t row_bytes, int32_t n_rows,
                              const r1_cpu_qx_block *x, int64_t n_blocks, float *out)
{
    for (int32_t r = 0; r < n_rows; r++) {
        const r1_block_q4_0 *blk =
            (const r1_block_q4_0 *)(const void *)((const uint8_t *)rows + (size_t)r * row_bytes);
        float acc[4] = {0, 0, 0, 0};
        for (int64_t b = 0; b < n_blocks; b++) {
            int32_t isum = 0;
            for (int j = 0; j < R1_QBLOCK / 2; j++)
                isum += (int32_t)(blk[b].qs[j] & 0x0f) * x[b].q[j] +
                        (int32_t)(blk[b].qs[j] >> 4) * x[b].q[j + R1_QBLOCK / 2];
            isum -= 8 * x[b].sum;
            acc[b & 3] += (float)isum * (r1_fp16__to_f32(blk[b].d) * x[b].d);
        }
        out[r] = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    }
}

/* The R16 kernels' arithmetic in plain C (kernels_levels.h): block b of a row goes to
 * accumulator b % 4 by an explicit fused multiply-add, as the vector levels' lanes do. */
static void r1_scalar_r16(int32_t dt, const void *group, const r1_cpu_qx_block *x, int64_t n_blocks,
                          float *out)
{
    const uint16_t *scales = group;
    const uint8_t *w = (const uint8_t *)group + (size_t)n_blocks * R1_R16_ROWS * 2;
    const size_t wb = dt == R1_DTYPE_Q8_0 ? R1_R16_ROWS * R1_QBLOCK : R1_R16_ROWS * R1_QBLOCK / 2;
    float acc[R1_R16_ROWS][4];
    memset(acc, 0, sizeof acc);
    for (int64_t b = 0; b < n_blocks; b++) {
        const uint8_t *wblock = w + (size_t)b * wb;
        for (int r = 0; r < R1_R16_ROWS; r++) {
            int32_t isum = 0;
            if (dt == R1_DTYPE_Q8_0) {
                for (int j = 0; j < 8; j++)
                    for (int k = 0; k < 4; k++)
                        isum += (int32_t)wblock[(j * R1_R16_ROWS + r) * 4 + k] * x[b].q[4 * j + k];
                isum -= 128 * x[b].sum;
            } else {
                for (int j = 0; j < 4; j++)
                    for (int k = 0; k < 4; k++) {
                        const uint8_t v = wblock[(j * R1_R16_ROWS + r) * 4 + k];
                        isum += (int32_t)(v & 0x0f) * x[b].q[4 * j + k] +
                                (int32_t)(v >> 4) * x[b].q[16 + 4 * j + k];
                    }
                isum -= 8 * x[b].sum;
            }
            const float d = r1_fp16__to_f32(scales[b * R1_R16_ROWS + r]) * x[b].d;
            acc[r][b & 3] = fmaf((float)isum, d, acc[r][b & 3]);
        }
    }
    for (int r = 0; r < R1_R16_ROWS; r++)
        out[r] = (acc[r][0] + acc[r][1]) + (acc[r][2] + acc[r][3]);
}

static void r1_scalar_silu_mul(const float *a, const float *b, int64_t n, float *y)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = r1_silu_mul_one(a[i], b[i]);
}

static void r1_scalar_r16_q8_0(const void *const *groups, int32_t n_groups,
                               const r1_cpu_qx_block *x, int64_t n_blocks, float *const *out)
{
    for (int32_t g = 0; g < n_groups; g++)
        r1_scalar_r16(R1_DTYPE_Q8_0, groups[g], x, n_blocks, out[g]);
}

static void r1_scalar_r16_q4_0(const void *const *groups, int32_t n_groups,
                               const r1_cpu_qx_block *x, int64_t n_blocks, float *const *out)
{
    for (int32_t g = 0; g < n_groups; g++)
        r1_scalar_r16(R1_DTYPE_Q4_0, groups[g], x, n_blocks, out[g]);
}

static void r1_scalar_dequant_r16_q8_0(const void *group, int64_t cols, float *out)
{
    r1_layout__r16_dequant_group(R1_DTYPE_Q8_0, group, cols, out);
}

static void r1_scalar_dequant_r16_q4_0(const void *group, int64_t cols, float *out)
{
    r1_layout__r16_dequant_group(R1_DTYPE_Q4_0, group, cols, out);
}

static void r1_scalar_dequant(int32_t dt, const void *row, const float *scale_row, float *out,
                              int64_t n)
{
    r1_dtype__dequantize_row(dt, row, scale_row, out, n);
}

static void r1_scalar_dequant_f32(const void *row, const float *s, float *out, int64_t n)
{
    r1_scalar_dequant(R1_DTYPE_F32, row, s, out, n);
}
static void r1_scalar_dequant_f16(const void *row, const float *s, float *out, int64_t n)
{
    r1_scalar_dequant(R1_DTYPE_F16, row, s, out, n);
}
static void r1_scalar_dequant_bf16(const void *row, const float *s, float *out, int64_t n)
{
    r1_scalar_dequant(R1_DTYPE_BF16, row, s, out, n);
}
static void r1_scalar_dequant_fp8(const void *row, const float *s, float *out, int64_t n)
{
    r1_scalar_dequant(R1_DTYPE_FP8_E4M3, row, s, out, n);
}
static void r1_scalar_dequant_q8_0(const void *row, const float *s, float *out, int64_t n)
{
    r1_scalar_dequant(R1_DTYPE_Q8_0, row, s, out, n);
}
static void r1_scalar_dequant_q4_0(const void *row, const float *s, float *out, int64_t n)
{
    r1_scalar_dequant(R1_DTYPE_Q4_0, row, s, out, n);
}

static const r1_cpu_kernel_table r1_scalar_table = {
    .name = "scalar",
    .dot =
        {
            [R1_DTYPE_F32] = r1_scalar_row_f32,
            [R1_DTYPE_F16] = r1_scalar_row_f16,
            [R1_DTYPE_BF16] = r1_scalar_row_bf16,
            [R1_DTYPE_FP8_E4M3] = r1_scalar_row_fp8,
            [R1_DTYPE_Q8_0] = r1_scalar_row_q8_0,
            [R1_DTYPE_Q4_0] = r1_scalar_row_q4_0,
        },
    .dequant =
        {
            [R1_DTYPE_F32] = r1_scalar_dequant_f32,
            [R1_DTYPE_F16] = r1_scalar_dequant_f16,
            [R1_DTYPE_BF16] = r1_scalar_dequant_bf16,
            [R1_DTYPE_FP8_E4M3] = r1_scalar_dequant_fp8,
            [R1_DTYPE_Q8_0] = r1_scalar_dequant_q8_0,
            [R1_DTYPE_Q4_0] = r1_scalar_dequant_q4_0,
        },
    .dot_f32 = r1_scalar_dot_f32,
    .axpy = r1_scalar_axpy,
    .axpy_rows = r1_scalar_axpy_rows,
    .quantize_x = r1_cpu__quantize_x,
    .silu_mul = r1_scalar_silu_mul,
    .dot_qx =
        {
            [R1_DTYPE_Q8_0] = r1_scalar_qx_q8_0,
            [R1_DTYPE_Q4_0] = r1_scalar_qx_q4_0,
        },
    .dot_r16 =
        {
            [R1_DTYPE_Q8_0] = r1_scalar_r16_q8_0,
            [R1_DTYPE_Q4_0] = r1_scalar_r16_q4_0,
        },
    .dequant_r16 =
        {
            [R1_DTYPE_Q8_0] = r1_scalar_dequant_r16_q8_0,
            [R1_DTYPE_Q4_0] = r1_scalar_dequant_r16_q4_0,
        },
};

const r1_cpu_kernel_table *r1_cpu__kernels_scalar(void)
{
    return &r1_scalar_table;
}
