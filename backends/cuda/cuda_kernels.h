/* cuda_kernels.h: the C interface between the CUDA backend's host code (backend_cuda.c) and its
 * kernels (cuda_kernels.cu) (internal).
 *
 * Every function queues its kernels on the stream it is given (a cudaStream_t passed as void *)
 * and returns a cudaError_t as int (0: queued). Pointers are device pointers; shapes and
 * parameters have been checked by the host code (backend_cuda.c's refusals), so the kernels
 * trust them. Semantics are those of lib/compute/backend.h's ops, computed as the Vulkan shaders
 * compute them (float32 accumulation, the router in double). */
#ifndef R1_CUDA_KERNELS_H
#define R1_CUDA_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A weight matrix (rows, cols) in its stored type (lib/core/dtype.h), rows of row_bytes bytes;
 * scale: fp8's (ceil(rows / 128), scale_cols) float32 block scales, else NULL. */
typedef struct r1_cuda_weight {
    const uint8_t *w;
    const float *scale;
    int32_t dtype;
    int64_t rows, cols;
    int64_t row_bytes;
    int64_t scale_cols;
} r1_cuda_weight;

/* y(T, rows) = x(T, cols) . W^T, W dequantised in registers, float32 sums: one warp per output
 * row and up to eight tokens per pass (decode's matrix-vector products). */
int r1_cuda__matmul(void *stream, const r1_cuda_weight *w, const float *x, int64_t n_tokens,
                    float *y);

/* Rows [row0, row0 + n_rows) of W as float32 (n_rows, cols) into out: what a cuBLAS SGEMM
 * then multiplies for a prompt chunk. */
int r1_cuda__dequantize(void *stream, const r1_cuda_weight *w, int64_t row0, int64_t n_rows,
                        float *out);

/* R1_OP_MLA_DECODE (n_tokens 1, n_keys the rows it sees) and R1_OP_MLA_PREFILL (n_keys =
 * pos0 + n_tokens, query t seeing n_keys - n_tokens + t + 1 rows): one block per head and
 * query. kv_b is (H * (dn + dv), rkv). */
int r1_cuda__mla(void *stream, const r1_cuda_weight *kv_b, int64_t n_heads, int64_t dn, int64_t dr,
                 int64_t dv, int64_t rkv, int64_t n_tokens, int64_t n_keys, float scale,
                 const float *q, const float *lat, float *out);

/* R1_OP_GQA_DECODE: one block per query head; caches in kv_dtype (f32, f16 or q8_0) rows of
 * n_kv_heads * head_dim values. */
int r1_cuda__gqa_decode(void *stream, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                        int64_t n_keys, int32_t kv_dtype, int64_t kv_row_bytes, double scale,
                        const float *q, const uint8_t *k, const uint8_t *v, float *out);

/* R1_OP_RMSNORM: strides in floats (already resolved: never 0). */
int r1_cuda__rmsnorm(void *stream, int64_t n_rows, int64_t n, int64_t x_stride, int64_t y_stride,
                     float eps, const float *x, const float *g, float *y);

/* R1_OP_ROPE, in place on x with the tables cs (n_rows, 2 * n_pairs). */
int r1_cuda__rope(void *stream, int64_t n_rows, int64_t n_vecs, int64_t row_stride,
                  int64_t vec_stride, int64_t n_pairs, const float *cs, float *x);

/* R1_OP_SOFTMAX in place on x (n_rows, n). */
int r1_cuda__softmax(void *stream, int64_t n_rows, int64_t n, int64_t causal_base,
                     int64_t causal_period, float scale, float *x);

/* R1_OP_SWIGLU: strides in floats (already resolved). */
int r1_cuda__swiglu(void *stream, int64_t n_rows, int64_t n, int64_t a_stride, int64_t b_stride,
                    int64_t y_stride, const float *a, const float *b, float *y);

/* R1_OP_ROUTER: bias NULL when absent; out (n_rows, 2 * top_k). */
int r1_cuda__router(void *stream, int64_t n_rows, int64_t n_experts, int64_t top_k, int64_t n_group,
                    int64_t topk_group, int32_t topk_method, int32_t scoring_func,
                    int32_t norm_topk_prob, double routed_scaling_factor, const float *logits,
                    const float *bias, float *out);

/* R1_OP_MOE_COMBINE: rows and w NULL for the plain sum (dst row i += src row i). */
int r1_cuda__combine(void *stream, int64_t n_rows, int64_t n, int64_t n_dst_rows, const float *src,
                     const float *w, const int32_t *rows, float *dst);

/* The largest table sizes the kernels hold in shared memory (the refusals check them). */
enum {
    R1_CUDA_MAX_LATENT = 2048,  /* kv_lora_rank + qk_rope_dim of MLA */
    R1_CUDA_MAX_EXPERTS = 1024, /* lib/model/router.h's bounds */
    R1_CUDA_MAX_GROUPS = 64,
    R1_CUDA_MAX_TOPK = 64,
    R1_CUDA_MAX_HEAD_DIM = 1024 /* GQA */
};

#ifdef __cplusplus
}
#endif

#endif
