/* kernels_levels.h: the row-kernel table each SIMD level provides (internal). */
#ifndef R1_KERNELS_LEVELS_H
#define R1_KERNELS_LEVELS_H

#include <stdint.h>

#include "dtype.h"

/* The dot product of one weight row (n elements in the row's dtype; for fp8 scale_row holds the
 * row's ceil(n/128) block scales, else it is ignored) with float x. Each implementation fixes
 * its own summation order, which never depends on the row's index or on threads. */
typedef float (*r1_cpu_dot_fn)(const void *row, const float *scale_row, const float *x, int64_t n);
/* The row dequantised to float, the same values as r1_dtype__dequantize_row(). */
typedef void (*r1_cpu_dequant_fn)(const void *row, const float *scale_row, float *out, int64_t n);

/* An activation block quantised to 8 bits for the integer Q8_0/Q4_0 kernels: x ~= d * q with
 * q in [-127, 127], and sum = sum(q) so Q4_0's -8 offset costs one multiply per block. */
typedef struct r1_cpu_qx_block {
    float d;
    int32_t sum;
    int8_t q[R1_QBLOCK];
} r1_cpu_qx_block;

/* The dot products of n_rows (1..R1_CPU_QX_MAX_ROWS) consecutive weight rows, row_bytes apart,
 * with a quantised activation of n_blocks blocks. Each row's integer block sums are exact and
 * its float order is the same whatever n_rows, so grouping rows never changes a result. */
enum { R1_CPU_QX_MAX_ROWS = 4 };
typedef void (*r1_cpu_dot_qx_fn)(const void *rows, size_t row_bytes, int32_t n_rows,
                                 const r1_cpu_qx_block *x, int64_t n_blocks, float *out);

/* The dot products of the 16 rows of each of n_groups (1..R1_CPU_R16_STREAMS) R16 groups
 * (backends/cpu/weight_layout.h), groups[i] into out[i][0..15], with one quantised activation of
 * n_blocks blocks. A level may read the groups side by side (more streams from memory at once);
 * each group's result is what it would be alone. Every level computes each row the same way:
 * the block's exact integer sum (with Q8_0's +128 and Q4_0's -8 offsets undone through
 * x->sum), then acc[b % 4] = fma(float(sum), d_w * d_x, acc[b % 4]) block after block, the
 * four starting at 0 and summed (0 + 1) + (2 + 3); so all levels agree bit for bit. */
enum { R1_CPU_R16_STREAMS = 4 };
typedef void (*r1_cpu_dot_r16_fn)(const void *const *groups, int32_t n_groups,
                                  const r1_cpu_qx_block *x, int64_t n_blocks, float *const *out);

/* The 16 rows of one R16 group dequantised to float (16 x cols, row-major): exactly the
 * values of r1_layout__r16_dequant_group(), which is the scalar level's. */
typedef void (*r1_cpu_dequant_r16_fn)(const void *group, int64_t cols, float *out);

typedef struct r1_cpu_kernel_table {
    const char *name;
    r1_cpu_dot_fn dot[R1_DTYPE_COUNT];
    r1_cpu_dequant_fn dequant[R1_DTYPE_COUNT];
    float (*dot_f32)(const float *a, const float *b, int64_t n);
    /* y += alpha * x, one fused multiply-add per element where the level has one. */
    void (*axpy)(float alpha, const float *x, int64_t n, float *y);
    /* y += alpha[r] * row r of x (n_rows rows of n, ld floats apart) for r in order: the same
     * fused multiply-adds as n_rows axpy calls, with y loaded and stored once per element. */
    void (*axpy_rows)(const float *alpha, const float *x, int64_t ld, int64_t n_rows, int64_t n,
                      float *y);
    /* Q8_0 and Q4_0 only: the integer path on 8-bit activations (NULL for other dtypes). */
    r1_cpu_dot_qx_fn dot_qx[R1_DTYPE_COUNT];
    /* Q8_0 and Q4_0 only: the same on weights in the R16 layout. */
    r1_cpu_dot_r16_fn dot_r16[R1_DTYPE_COUNT];
    r1_cpu_dequant_r16_fn dequant_r16[R1_DTYPE_COUNT];
    /* r1_cpu__quantize_x() vectorised: the same blocks bit for bit, so that no level's
     * integers differ from another's. */
    void (*quantize_x)(const float *x, r1_cpu_qx_block *out, int64_t n);
    /* y[i] = silu(a[i]) * b[i] (kernels_exp.h: the same bits on every level); y may alias a
     * or b. */
    void (*silu_mul)(const float *a, const float *b, int64_t n, float *y);
} r1_cpu_kernel_table;

/* x (n elements, n % 32 == 0) to n / 32 blocks, the reference for every level's quantize_x.
 * The arithmetic of the Q8_0 weight quantiser (d = max|x| / 127,
 * q = round-half-away(x * (1 / d))) with d kept in float32: test/ref/quant.py's
 * act_q8_roundtrip() is the same in numpy. */
void r1_cpu__quantize_x(const float *x, r1_cpu_qx_block *out, int64_t n);

const r1_cpu_kernel_table *r1_cpu__kernels_scalar(void);
/* Only present on x86 builds (R1_CPU_X86_KERNELS), and only called when the CPU has them. */
const r1_cpu_kernel_table *r1_cpu__kernels_avx2(void);
const r1_cpu_kernel_table *r1_cpu__kernels_avx512(void);
/* The AVX-512 table with the AVX512-VNNI (vpdpbusd) integer kernels; only when the CPU has it.
 * Same integers as the table above, so the same results bit for bit. */
const r1_cpu_kernel_table *r1_cpu__kernels_avx512vnni(void);

/* The table for r1_cpu__active_level(). */
const r1_cpu_kernel_table *r1_cpu__kernels_active(void);

/* k->quantize_x(x, out, n), then the test hook if one is set: every 8-bit activation of the
 * forward pass is quantised through here. */
void r1_cpu__quantize_act(const r1_cpu_kernel_table *k, const float *x, r1_cpu_qx_block *out,
                          int64_t n);
/* Tests only (test_forward): fn sees each quantised row (x, its n / 32 blocks) and may change
 * the blocks, to round near-ties of x as a reference did (test/ref/README.md); it may run on
 * several threads at once. NULL removes it. Set it only while no forward pass runs. */
typedef void (*r1_cpu_qx_hook)(const float *x, r1_cpu_qx_block *out, int64_t n, void *user);
void r1_cpu__set_qx_hook(r1_cpu_qx_hook fn, void *user);

#endif
