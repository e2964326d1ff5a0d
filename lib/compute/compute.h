/* compute.h: how the forward pass runs an op on the model's backend, with CPU fallback (internal).
 */
#ifndef R1_COMPUTE_H
#define R1_COMPUTE_H

#include <stdint.h>

#include "backend.h"
#include "container.h"
#include "device_expert_cache.h"
#include "device_weights.h"
#include "expert_cache.h"
#include "host_weights.h"
#include "tensor.h"

/* Device residency for a backend that cannot read host memory in place (compute.c). */
typedef struct r1_compute_device r1_compute_device;

/* An opened device of a backend plus the CPU device that runs what the backend cannot (the
 * hybrid rule of docs/backends.md). */
typedef struct r1_compute {
    const r1_backend_ops *ops;
    r1_dev *dev;
    const r1_backend_ops *cpu_ops;
    r1_dev *cpu_dev;           /* == dev when the backend is the CPU */
    r1_compute_device *device; /* NULL when ops run on host memory (the CPU backend) */
    /* Host-memory backends whose kernels want another weight layout (device_info's
     * weight_layout): the mapped file's dense weights in it, made on first use; NULL when
     * the file's rows serve. Set by r1_compute__attach_model. */
    r1_host_weights *host_weights;
    const r1_container *host_container;
} r1_compute;

/* Opens a device of the named backend ("cpu" when name is NULL): the one device names (a decimal
 * index or a case-insensitive part of its name, r1_model_opts_set_device), or the backend's
 * default when device is NULL. R1_ERR_NOT_FOUND with a message when nothing matches. */
r1_status r1_compute__open(r1_compute *c, const char *backend_name, const char *device);
void r1_compute__close(r1_compute *c);
/* The CPU device with dev, an opened device of a backend outside the registry (a scripted device
 * in the tests of the hybrid rule), beside it; c owns dev from then on, and closes it on failure
 * too. */
r1_status r1_compute__open_with(r1_compute *c, const r1_backend_ops *ops, r1_dev *dev);

/* Host threads for ops run on the CPU (the fallback included); <= 0: one per core. */
r1_status r1_compute__set_threads(r1_compute *c, int32_t n_threads);

/* Tells a host-memory backend that wants its own weight layout (the CPU's R16) to use it: the
 * expert store rewrites experts as it loads them and dense weights of the mapping are copied
 * on first use (host_weights.h). Tells a device without host access where the model's weights
 * live, so it can keep them:
 * weights inside the container's mapping stay resident once uploaded (device_weights.c), weights
 * inside a pinned expert of ec go to a device expert cache of device_budget bytes (0: bounded by
 * the device's memory only), keyed (layer, expert) for n_layers x n_experts. Anything else (an
 * activation used as a matrix, as attention does) is uploaded for each product. */
r1_status r1_compute__attach_model(r1_compute *c, const r1_container *container,
                                   r1_expert_cache *ec, int64_t n_layers, int64_t n_experts,
                                   uint64_t device_budget);

/* Residency counters of the device; 0 (and zeros) when the model runs on host memory. */
typedef struct r1_compute_device_counters {
    r1_device_expert_counters experts;
    r1_device_weights_counters dense;
    uint64_t device_products; /* products run on the device */
    uint64_t cpu_products;    /* products the hybrid rule sent to the CPU */
    uint64_t device_ops;      /* the other ops (norms, rotary, attention, routing ...) */
    uint64_t cpu_ops;         /* ... and those the hybrid rule sent to the CPU */
    /* Latent-cache bytes sent to the device by the attention ops: the rows written since a
     * mirror's last upload, or a whole cache where no mirror could be had. */
    uint64_t latent_upload_bytes;
    uint64_t latent_device_bytes; /* device memory the latent mirrors hold now */
} r1_compute_device_counters;
int32_t r1_compute__device_counters(r1_compute *c, r1_compute_device_counters *out);

/* y(T, out) = x(T, in) . w(out, in)^T for any weight dtype; x and y are host float32. */
r1_status r1_compute__matmul(r1_compute *c, const r1_tensor *w, const float *x, int64_t n_tokens,
                             float *y);

/* One layer's latent cache as the attention ops read it. A device without host access keeps a
 * mirror of it per (cache_id, layer), sized for n_ctx rows and counted against the device's
 * memory, and uploads only the rows from first_written on (or those it never had): the caller
 * names the first row it wrote since its previous attention op on this cache and layer, so a
 * rewind or a reset that rewrites lower rows is seen. Where no mirror can be had, every op
 * uploads all its rows, as it does for cache_id 0 (a cache without identity, as in tests). */
typedef struct r1_compute_latent {
    const float *rows; /* (n_ctx, rkv + dr) host float32 */
    /* A q8_0 cache instead of rows (rows NULL): n_ctx rows of row_bytes in the layout of
     * backend.h (R1_OP_MLA_DECODE). No device backend reads them: the ops on such a cache run on
     * the CPU over host memory (the hybrid rule), so a device holds no mirror of it. */
    const uint8_t *rows_q8;
    size_t row_bytes;
    uint64_t cache_id; /* r1_kv_cache.id: never reused within a process; 0: no mirror */
    int64_t layer;
    int64_t n_ctx;
    int64_t first_written;
} r1_compute_latent;

/* Frees the device mirrors of a cache that is going away (no-op without a device). */
void r1_compute__drop_latent(r1_compute *c, uint64_t cache_id);

/* 1 when ops run on a device without host access (uploads and downloads around each op). */
int32_t r1_compute__has_device(const r1_compute *c);

/* One decoded token's absorbed MLA for all heads of a layer (R1_OP_MLA_DECODE, backend.h): q
 * (H, dn + dr) with rope applied, the layer's latent cache (its first p->n_keys rows of rkv +
 * dr), kv_b_proj of any dtype; out (H, dv), host float32. */
r1_status r1_compute__mla_decode(r1_compute *c, const r1_op_mla_decode_params *p, const float *q,
                                 const r1_compute_latent *lat, const r1_tensor *kv_b, float *out);

/* A prompt chunk's absorbed, causal MLA for all heads of a layer (R1_OP_MLA_PREFILL): q
 * (p->n_tokens, H, dn + dr) with rope applied, the latent cache (its first p->pos0 +
 * p->n_tokens rows), kv_b_proj of any dtype; out (p->n_tokens, H, dv), host float32. */
r1_status r1_compute__mla_prefill(r1_compute *c, const r1_op_mla_prefill_params *p, const float *q,
                                  const r1_compute_latent *lat, const r1_tensor *kv_b, float *out);

/* One decoded token's grouped-query attention for all heads of a layer (R1_OP_GQA_DECODE): q
 * (H, hd) with rope applied, the first p->n_keys rows of the layer's key and value caches
 * (n_kv * hd values each, in p->kv_dtype); out (H, hd), host float32. A device that lacks the
 * op leaves it to the CPU (the hybrid rule). */
r1_status r1_compute__gqa_decode(r1_compute *c, const r1_op_gqa_decode_params *p, const float *q,
                                 const void *k, const void *v, float *out);

/* The rest of a layer, each one backend op (backend.h documents operands and parameters) over
 * host float32 arrays: run on the device when it supports the op (operands go up, the result
 * comes back before return), else on the CPU backend in place. */

/* y rows = rmsnorm(x rows) * g (R1_OP_RMSNORM); y may be x. */
r1_status r1_compute__rmsnorm(r1_compute *c, const r1_op_rows_params *p, const float *x,
                              const float *g, float *y);
/* Rotates x in place by the tables cs (p->n_rows, 2 * p->n_pairs) (R1_OP_ROPE). */
r1_status r1_compute__rope(r1_compute *c, const r1_op_rope_params *p, const float *cs, float *x);
/* Scaled, optionally causal softmax of rows of x in place (R1_OP_SOFTMAX). */
r1_status r1_compute__softmax(r1_compute *c, const r1_op_softmax_params *p, float *x);
/* y rows = silu(a rows) * b rows (R1_OP_SWIGLU). */
r1_status r1_compute__swiglu(r1_compute *c, const r1_op_rows_params *p, const float *a,
                             const float *b, float *y);
/* Picks p->top_k experts per row of logits (bias: the correction bias or NULL) (R1_OP_ROUTER):
 * experts (n_rows, top_k) in increasing order and their weights (n_rows, top_k). */
r1_status r1_compute__route(r1_compute *c, const r1_op_router_params *p, const float *logits,
                            const float *bias, int32_t *experts, float *weights);
/* dst (n_dst_rows, p->n): row rows[i] += w[i] * src row i for i < p->n_rows, or with w and rows
 * NULL, row i += src row i (R1_OP_MOE_COMBINE). */
r1_status r1_compute__moe_combine(r1_compute *c, const r1_op_rows_params *p, const float *src,
                                  const float *w, const int32_t *rows, int64_t n_dst_rows,
                                  float *dst);

#endif
