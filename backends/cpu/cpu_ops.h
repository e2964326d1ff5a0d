/* cpu_ops.h: what the CPU backend's table calls into (internal to backends/cpu). */
#ifndef R1_CPU_OPS_H
#define R1_CPU_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "tensor.h"
#include "threadpool.h"

/* "x86-64 CPU (avx512 kernels)" and the like. */
const char *r1_cpu__description(void);
void r1_cpu__memory(uint64_t *total_bytes, uint64_t *available_bytes);

void *r1_cpu__buf_data(r1_buf *buf);
size_t r1_cpu__buf_bytes(const r1_buf *buf);

int32_t r1_cpu__op_supported(const r1_op *op);
/* Runs op on pool (NULL: on the caller alone). */
r1_status r1_cpu__op_run(r1_threadpool *pool, const r1_op *op);

/* The rest of a layer (R1_OP_RMSNORM .. R1_OP_MOE_COMBINE; cpu_layer_ops.c), on the caller's
 * thread: small next to the products around them. */
int32_t r1_cpu__layer_op_supported(const r1_op *op);
r1_status r1_cpu__layer_op_run(const r1_op *op);

/* A prompt chunk's latent attention (R1_OP_MLA_PREFILL; cpu_mla_prefill.c) on pool (NULL: the
 * caller alone), in lib/model/forward.c's order of operations: q (T, H, dn + dr), the latent
 * cache lat (pos0 + T, rkv + dr), kv_b_proj of any dtype in the file's rows; out (T, H, dv).
 * R1_ERR_INVALID_ARG on shapes that do not fit, R1_ERR_NO_MEMORY without scratch. */
r1_status r1_cpu__mla_prefill(r1_threadpool *pool, const r1_op_mla_prefill_params *p,
                              const float *q, const float *lat, const r1_tensor *kv_b, float *out);
/* The same over a latent cache of lat_dtype (f32, or q8_0 rows as backend.h's R1_OP_MLA_DECODE
 * lays them out, dequantised before the steps above). */
r1_status r1_cpu__mla_prefill_cache(r1_threadpool *pool, const r1_op_mla_prefill_params *p,
                                    const float *q, const void *lat, int32_t lat_dtype,
                                    const r1_tensor *kv_b, float *out);
int32_t r1_cpu__mla_prefill_supported(const r1_op *op);
r1_status r1_cpu__mla_prefill_run(r1_threadpool *pool, const r1_op *op);

/* One decoded token's grouped-query attention (R1_OP_GQA_DECODE; cpu_gqa_attention.c) on pool
 * (NULL: the caller alone): q (H, hd), the key and value caches (n_keys, n_kv * hd) in
 * p->kv_dtype; out (H, hd). */
r1_status r1_cpu__gqa_decode(r1_threadpool *pool, const r1_op_gqa_decode_params *p, const float *q,
                             const void *k, const void *v, float *out);
int32_t r1_cpu__gqa_decode_supported(const r1_op *op);
r1_status r1_cpu__gqa_decode_run(r1_threadpool *pool, const r1_op *op);

#endif
