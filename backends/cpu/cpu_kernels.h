/* cpu_kernels.h: the CPU kernels the forward pass calls (internal). */
#ifndef R1_CPU_KERNELS_H
#define R1_CPU_KERNELS_H

#include <stdint.h>

#include "backend.h"
#include "r1.h"
#include "tensor.h"
#include "threadpool.h"

/* y(n_tokens, out) = x(n_tokens, in) . W(out, in)^T for a weight of any r1_dtype, dequantised
 * on the fly; x and y are dense row-major float32 (row strides in and out) and must not overlap.
 * W is w->data with r1_tensor__rows(w) = out rows of r1_tensor__cols(w) = in elements; fp8
 * needs w->scale and w->scale_cols = ceil(in/128); q8_0/q4_0 need in % 32 == 0.
 *
 * Work is split over pool's threads by output rows (NULL pool: the caller alone). Each output
 * element is computed by one task in an order fixed by the data and the kernel level alone, so
 * results are bit-identical for any thread count; levels differ only by summation rounding.
 * With n_tokens >= r1_cpu__blas_min_tokens() and BLAS built in, panels of 64 rows are
 * dequantised to float and multiplied by sgemm (one OpenBLAS thread per pool thread), except
 * for Q8_0/Q4_0 with 8-bit activations on, which take the integer kernels for any n_tokens.
 * Q8_0/Q4_0 may be in the R16 layout (w->layout, weight_layout.h) when rows % 16 == 0.
 * Returns R1_ERR_INVALID_ARG (with a message) on a bad shape, dtype or missing scale,
 * R1_ERR_NO_MEMORY when a panel buffer cannot be had. */
r1_status r1_cpu__matmul(r1_threadpool *pool, const r1_tensor *w, const float *x, int64_t n_tokens,
                         float *y);

/* The smallest n_tokens that takes the BLAS path (0 when BLAS is not built in). mode: 1 use BLAS
 * when built (default), 0 never (tests, benchmarks); returns the previous mode. */
int64_t r1_cpu__blas_min_tokens(void);
int32_t r1_cpu__set_blas(int32_t mode);

/* Q8_0 and Q4_0 weights: mode 1 (default) quantises each token's activation row once per op
 * to 8-bit blocks of 32 and takes the integer kernels for any token count, whose
 * results then differ from the float ones by the activation rounding (test/ref/README.md
 * states the bound); 0 keeps float activations, as does R1_CPU_ACT_Q8=0 in the environment
 * (read once, before the first such product). Returns the previous mode. */
int32_t r1_cpu__set_act_q8(int32_t mode);
/* The mode above now (the environment read on first use). */
int32_t r1_cpu__act_q8_enabled(void);

/* The layout (enum r1_layout) this backend wants Q8_0/Q4_0 weights in: R1_LAYOUT_R16, whose
 * integer kernels stream at the memory's bandwidth, unless 8-bit activations are off or
 * R1_CPU_REPACK=0 is in the environment (read once), which keep the file's rows. */
int32_t r1_cpu__weight_layout(void);

/* One decoded token's absorbed MLA for all heads of a layer (R1_OP_MLA_DECODE in backend.h):
 * q (H, dn + dr), the latent cache lat (n_keys, rkv + dr), kv_b_proj of any dtype; out (H, dv).
 * A group of heads per pool thread; above 1024 keys the cache is split by key blocks instead, so
 * that each row is read once (cpu_attention.c). R1_ERR_INVALID_ARG on shapes that do not fit,
 * R1_ERR_NO_MEMORY when a head's scratch cannot be had. */
r1_status r1_cpu__mla_decode(r1_threadpool *pool, const r1_op_mla_decode_params *p, const float *q,
                             const float *lat, const r1_tensor *kv_b, float *out);
/* The same over a latent cache of lat_dtype: R1_DTYPE_F32 as above, or R1_DTYPE_Q8_0 rows in the
 * layout of backend.h (R1_OP_MLA_DECODE; kv_lora_rank % 32 == 0), each key block dequantised once
 * into scratch, so the result is the float cache's on the dequantised values. */
r1_status r1_cpu__mla_decode_cache(r1_threadpool *pool, const r1_op_mla_decode_params *p,
                                   const float *q, const void *lat, int32_t lat_dtype,
                                   const r1_tensor *kv_b, float *out);
/* A latent cache row of kv_lora_rank rkv and rope dims dr: its values once a q8_0 row is
 * dequantised (k_pe padded to whole blocks), and its bytes in lat_dtype (0: not a cache type or
 * not whole blocks). */
int64_t r1_cpu__mla_cache_row_floats(int64_t rkv, int64_t dr);
size_t r1_cpu__mla_cache_row_bytes(int32_t lat_dtype, int64_t rkv, int64_t dr);

/* y = x * g / sqrt(mean(x^2) + eps) over n elements; y may alias x. The sum of squares is
 * accumulated in double: for n up to 7168 that makes the normaliser correctly rounded in
 * practice, independent of SIMD level, at a cost invisible next to the matmuls. */
void r1_cpu__rmsnorm(const float *x, const float *g, float eps, int64_t n, float *y);
/* n_rows independent rows of n elements (row stride n). */
void r1_cpu__rmsnorm_rows(const float *x, const float *g, float eps, int64_t n_rows, int64_t n,
                          float *y);

/* y[i] = silu(a[i]) * b[i] with the stable sigmoid (docs/model.md §8.10); y may alias a or b. */
void r1_cpu__silu_mul(const float *a, const float *b, int64_t n, float *y);

/* In place: x = exp(x - max(x)) / sum. A row of all -inf becomes all zero rather than NaN. */
void r1_cpu__softmax(float *x, int64_t n);

/* y = a + b; y may alias a or b. */
void r1_cpu__add(const float *a, const float *b, int64_t n, float *y);
/* x *= s. */
void r1_cpu__scale(float *x, float s, int64_t n);
/* y += alpha * x (a fused multiply-add per element on SIMD levels). */
void r1_cpu__axpy(float alpha, const float *x, int64_t n, float *y);
/* sum a[i] * b[i], accumulated in float32 by the active level's kernel. */
float r1_cpu__dot_f32(const float *a, const float *b, int64_t n);

#endif
