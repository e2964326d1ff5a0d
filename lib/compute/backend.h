/* backend.h: the private interface between the core and the compute backends (internal).
 *
 * The core drives every backend through this table and never includes a GPU header: to it,
 * r1_dev and r1_buf are opaque. The design (docs/backends.md) is made for devices with their
 * own memory and asynchronous queues: weights live in device buffers (r1_buf), work is
 * recorded in order on the device's queue and flushed by submit(), which returns a sequence
 * number; wait() blocks until a number is complete. The per-device expert cache
 * (lib/compute/device_expert_cache.c) uses these numbers to evict an expert only once no queued
 * work still reads it. */
#ifndef R1_BACKEND_H
#define R1_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "r1.h"

/* Bump on any change to this file; a backend whose table carries another value is refused. */
#define R1_BACKEND_ABI 5

typedef struct r1_dev r1_dev; /* an open device; defined by each backend */
typedef struct r1_buf r1_buf; /* a region of device memory; defined by each backend */

/* A tensor resident on a device: where it is, what it holds. Shapes in PyTorch order. */
typedef struct r1_dtensor {
    r1_buf *buf;
    size_t offset; /* bytes from the start of buf */
    int32_t dtype; /* r1_dtype */
    int32_t n_dims;
    int64_t shape[4];
    r1_buf *scale_buf; /* fp8 only: (ceil(rows/128), ceil(cols/128)) float32 block scales */
    size_t scale_offset;
    int32_t layout; /* enum r1_layout (weight_layout.h); a backend refuses one it does not know */
} r1_dtensor;

/* Operation kinds. Coarse on purpose: a GPU backend fuses what is inside one op, and the hybrid
 * rule (supports() == 0: run it on the CPU backend) works at this granularity. */
enum r1_op_kind {
    R1_OP_MATMUL = 1, /* dst(T, out) = src0(T, in) . src1(out, in)^T; src1 any weight dtype */
    /* One decoded token's MLA in the absorbed form (docs/model.md §2.6), all heads of a layer: src0
     * the query (H, dn + dr) with rope applied, src1 the latent cache (n_keys, rkv + dr): c_kv then
     * the rotated k_pe per row, src2 kv_b_proj (H * (dn + dv), rkv), any weight dtype; dst the
     * heads' outputs (H, dv) before o_proj. Params: r1_op_mla_decode_params. src1 may instead be
     * a q8_0 cache (dtype R1_DTYPE_Q8_0, shape still (n_keys, rkv + dr) values): per row rkv / 32
     * blocks of c_kv, then ceil(dr / 32) blocks of k_pe, the last zero-padded (34 bytes a block);
     * a backend that does not read it refuses the op (lib/compute keeps such a cache on the host
     * and runs its ops on the CPU). The same for R1_OP_MLA_PREFILL. */
    R1_OP_MLA_DECODE = 2,
    /* The rest of a layer, so a device can run all of it (docs/backends.md). Row strides are in
     * floats and let an op read or write a part of each row (the latent cache's c_kv, the rope
     * dims of every head). Every tensor below is float32 unless it says otherwise. */
    /* RMSNorm of rows (docs/model.md §2.2): dst row r = src0 row r / sqrt(mean(src0 row r ^ 2) +
     * eps) * src1, over the first n elements of each row; src1 the gain (n). dst may be src0 (same
     * buffer and offset). Params: r1_op_rows_params (eps used). */
    R1_OP_RMSNORM = 3,
    /* Rotary embedding with the YaRN tables (docs/model.md §2.4, §3), in place: dst holds n_rows
     * rows of n_vecs vectors (vector v of row r at r * row_stride + v * vec_stride), and the pairs
     * (x[2m], x[2m+1]) for m < n_pairs of each vector are rotated by row r's angles; src0 the
     * tables (n_rows, 2 * n_pairs) as lib/model/rope.c's r1_rope__table writes them (cos, sin
     * interleaved, already times the YaRN mscale). Params: r1_op_rope_params. */
    R1_OP_ROPE = 4,
    /* Scaled softmax of rows in place (lib/model/softmax.h): dst (n_rows, n); row r is normalised
     * over its first n_valid(r) entries, the rest become 0, where n_valid(r) = n without a mask and
     * min(n, causal_base + r % causal_period + 1) with one (causal_period > 0: prefill's
     * queries, one block of causal_period tokens per head). Params: r1_op_softmax_params. */
    R1_OP_SOFTMAX = 5,
    /* SwiGLU's gate (docs/model.md §2.7): dst row r = silu(src0 row r) * src1 row r over n
     * elements; the two sources may be one buffer (the gate and up halves of a merged product). dst
     * must not overlap a source in another row. Params: r1_op_rows_params (x_stride for src0,
     * b_stride for src1, y_stride for dst). */
    R1_OP_SWIGLU = 6,
    /* MoE routing of n_rows tokens (docs/model.md §2.8, exactly as lib/model/router.c: scores in
     * double, group-limited top-k, ties toward the lower index, normalisation,
     * routed_scaling_factor): src0 the gate logits (n_rows, n_experts); src1 (optional, n_src = 2)
     * the correction bias (n_experts); dst (n_rows, 2 * top_k): the top_k combination weights, then
     * the top_k expert indices as int32 bit patterns, in increasing expert order. Params:
     * r1_op_router_params. */
    R1_OP_ROUTER = 7,
    /* MoE combine: dst (n_dst_rows, n) accumulates weighted rows of src0 (n_rows, n): with
     * n_src = 3, dst row src2[i] += src1[i] * src0 row i (src1 (n_rows) float32 weights, src2
     * (n_rows) int32 destination rows, distinct within one op: one routed expert's tokens);
     * with n_src = 1, dst row i += src0 row i (a residual or the shared expert). Params:
     * r1_op_rows_params (n_rows, n). */
    R1_OP_MOE_COMBINE = 8,
    /* A prompt chunk's MLA in the absorbed form (docs/model.md §2.6), all heads of a layer:
     * n_tokens new queries at positions pos0 .. pos0 + n_tokens - 1, each attending causally over
     * the latent cache rows 0 .. its own position. src0 the queries (n_tokens, H, dn + dr) with
     * rope applied, src1 the latent cache (pos0 + n_tokens, rkv + dr) as for R1_OP_MLA_DECODE (the
     * chunk's own rows already written), src2 kv_b_proj (H * (dn + dv), rkv), any weight dtype;
     * dst (n_tokens, H, dv) before o_proj. Per head and token: q_lat = W_UK^T q_nope, scores =
     * q_lat . c_kv + q_pe . k_pe times softmax_scale, causal softmax, ctx = P . c_kv, out =
     * W_UV ctx. Params: r1_op_mla_prefill_params. */
    R1_OP_MLA_PREFILL = 9,
    /* One decoded token's grouped-query attention (docs/model.md §7.1), all heads of a layer:
     * src0 the queries (n_heads, head_dim) float32 with rope applied; src1 the key cache and src2
     * the value cache, each (n_keys, n_kv_heads * head_dim) in kv_dtype (f32, f16 or q8_0, rows
     * of whole blocks); dst (n_heads, head_dim). Query head j reads kv head j / (n_heads /
     * n_kv_heads); each cache row is read once for all the heads of its group. Params:
     * r1_op_gqa_decode_params. */
    R1_OP_GQA_DECODE = 10,
    R1_OP_KIND_END
};

typedef struct r1_op_mla_decode_params {
    int64_t n_heads, qk_nope_dim, qk_rope_dim, v_dim, kv_lora_rank, n_keys;
    double softmax_scale;
} r1_op_mla_decode_params;

typedef struct r1_op_mla_prefill_params {
    int64_t n_heads, qk_nope_dim, qk_rope_dim, v_dim, kv_lora_rank;
    int64_t n_tokens, pos0; /* the keys are the cache rows 0 .. pos0 + n_tokens - 1 */
    double softmax_scale;
} r1_op_mla_prefill_params;

typedef struct r1_op_gqa_decode_params {
    int64_t n_heads, n_kv_heads, head_dim, n_keys;
    int32_t kv_dtype; /* r1_dtype of both caches */
    double softmax_scale;
} r1_op_gqa_decode_params;

/* Rows of n elements; strides in floats (0: n). */
typedef struct r1_op_rows_params {
    int64_t n_rows, n;
    int64_t x_stride, b_stride, y_stride;
    double eps; /* RMSNorm only */
} r1_op_rows_params;

typedef struct r1_op_rope_params {
    int64_t n_rows, n_vecs, row_stride, vec_stride; /* strides in floats */
    int64_t n_pairs;                                /* rotated pairs per vector */
} r1_op_rope_params;

typedef struct r1_op_softmax_params {
    int64_t n_rows, n;
    int64_t causal_base, causal_period; /* causal_period 0: no mask */
    double scale;                       /* the logits are multiplied by it first */
} r1_op_softmax_params;

/* The routing configuration of lib/model/model_config.h, in fixed-width fields. */
typedef struct r1_op_router_params {
    int64_t n_rows, n_experts, top_k, n_group, topk_group;
    int32_t topk_method;  /* r1_topk_method */
    int32_t scoring_func; /* r1_scoring_func */
    int32_t norm_topk_prob;
    double routed_scaling_factor;
} r1_op_router_params;

enum { R1_OP_MAX_SRC = 8 };

typedef struct r1_op {
    int32_t kind; /* enum r1_op_kind */
    int32_t n_src;
    r1_dtensor dst;
    r1_dtensor src[R1_OP_MAX_SRC];
    const void *params; /* kind-specific parameters, or NULL */
} r1_op;

/* The attention ops' parameters in one form, for a device backend's checks and launches:
 * decode is a chunk of one query. */
typedef struct r1_mla_shape {
    int64_t H, dn, dr, dv, rkv;
    int64_t n_tokens, n_keys; /* n_keys: the rows the chunk's last query sees */
    double scale;
} r1_mla_shape;

/* 0 when op (R1_OP_MLA_DECODE or R1_OP_MLA_PREFILL) has no parameters or a prefill chunk is
 * empty or starts before position 0. */
static inline int r1_backend__mla_shape_of(const r1_op *op, r1_mla_shape *out)
{
    if (op->params == NULL)
        return 0;
    if (op->kind == R1_OP_MLA_DECODE) {
        const r1_op_mla_decode_params *p = op->params;
        *out = (r1_mla_shape){.H = p->n_heads,
                              .dn = p->qk_nope_dim,
                              .dr = p->qk_rope_dim,
                              .dv = p->v_dim,
                              .rkv = p->kv_lora_rank,
                              .n_tokens = 1,
                              .n_keys = p->n_keys,
                              .scale = p->softmax_scale};
        return 1;
    }
    const r1_op_mla_prefill_params *p = op->params;
    if (p->pos0 < 0 || p->n_tokens <= 0)
        return 0;
    *out = (r1_mla_shape){.H = p->n_heads,
                          .dn = p->qk_nope_dim,
                          .dr = p->qk_rope_dim,
                          .dv = p->v_dim,
                          .rkv = p->kv_lora_rank,
                          .n_tokens = p->n_tokens,
                          .n_keys = p->pos0 + p->n_tokens,
                          .scale = p->softmax_scale};
    return 1;
}

/* The operand checks every device backend makes of an op before its own limits (NULL: the op
 * is well formed; else why not), so that the backends refuse the same ops with the same words. */

/* 1 when dst and every source are float32. */
static inline int r1_backend__f32_op(const r1_op *op)
{
    if (op->dst.dtype != R1_DTYPE_F32)
        return 0;
    for (int32_t i = 0; i < op->n_src; i++)
        if (op->src[i].dtype != R1_DTYPE_F32)
            return 0;
    return 1;
}

static inline const char *r1_backend__moe_combine_refusal(const r1_op *op)
{
    const r1_op_rows_params *p = op->params;
    if (p == NULL || (op->n_src != 1 && op->n_src != 3) || op->dst.dtype != R1_DTYPE_F32 ||
        op->src[0].dtype != R1_DTYPE_F32 || op->dst.n_dims != 2 || p->n_rows <= 0 || p->n <= 0 ||
        op->dst.shape[1] != p->n || op->dst.shape[0] <= 0)
        return "moe combine takes float32 rows";
    return NULL;
}

static inline const char *r1_backend__rope_refusal(const r1_op *op)
{
    const r1_op_rope_params *p = op->params;
    if (p == NULL || op->n_src != 1 || !r1_backend__f32_op(op))
        return "rotary takes float32 vectors and their tables";
    if (p->n_rows <= 0 || p->n_vecs <= 0 || p->n_pairs <= 0 || p->row_stride < 0 ||
        p->vec_stride < 0)
        return "bad rotary shape";
    return NULL;
}

/* What a device is; filled by device_info(). */
typedef struct r1_device_info {
    char name[256];
    uint64_t memory_total_bytes;
    uint64_t memory_free_bytes;
    int32_t host_shared; /* 1 when device buffers are host memory (wrap_host is zero-copy) */
    /* enum r1_layout (weight_layout.h) the device's products read Q8_0/Q4_0 weights fastest
     * in; the core then gives it weights in that layout (0: the file's rows). */
    int32_t weight_layout;
} r1_device_info;

typedef struct r1_backend_ops {
    uint32_t abi;     /* R1_BACKEND_ABI */
    const char *name; /* "cpu", "cuda", "vulkan" */

    /* How many devices can be opened here; 0 = unusable, with the reason written to why. When
     * usable it may describe the devices in why for r1_backend_describe(): "INDEX: NAME (KIND)"
     * joined by "; ", KIND saying whether it is a GPU or runs on the CPU. */
    int32_t (*probe)(char *why, size_t why_len);
    r1_status (*open)(r1_dev **out, int32_t index);
    /* Opens the device a user named: a decimal index into the backend's device order or a
     * case-insensitive part of a device's name; R1_ERR_NOT_FOUND (with the devices present in
     * the message) when none matches. NULL: the core matches names against device_info(). */
    r1_status (*open_selected)(r1_dev **out, const char *selector);
    void (*close)(r1_dev *dev); /* waits for queued work; accepts NULL */
    r1_status (*device_info)(r1_dev *dev, r1_device_info *out);

    r1_status (*alloc)(r1_dev *dev, size_t bytes, r1_buf **out);
    void (*free)(r1_dev *dev, r1_buf *buf); /* caller guarantees no queued work reads buf */
    /* A buffer over host memory the caller keeps alive (a mapped file); NULL when the device
     * cannot read host memory in place, and the core then allocates and uploads. */
    r1_status (*wrap_host)(r1_dev *dev, const void *host, size_t bytes, r1_buf **out);

    /* Queued, in order: src must stay valid until the submit() that follows completes. */
    r1_status (*upload)(r1_dev *dev, r1_buf *dst, size_t off, const void *src, size_t n);
    r1_status (*download)(r1_dev *dev, void *dst, r1_buf *src, size_t off, size_t n);

    /* 0 when this device cannot run op (kind, dtype or size): the core runs it on the CPU. */
    int32_t (*supports)(r1_dev *dev, const r1_op *op);
    r1_status (*run)(r1_dev *dev, const r1_op *op); /* queued */

    /* Flush recorded work; *seq_out names it. Sequence numbers grow by one per submit. */
    r1_status (*submit)(r1_dev *dev, uint64_t *seq_out);
    /* Block until every submit up to seq is complete (UINT64_MAX: all of them). */
    r1_status (*wait)(r1_dev *dev, uint64_t seq);
    /* The highest sequence number known complete, without blocking. */
    uint64_t (*completed)(r1_dev *dev);

    /* Host threads the device may use for its ops (<= 0: one per core); NULL when the backend
     * has no use for host threads. */
    r1_status (*set_threads)(r1_dev *dev, int32_t n_threads);
} r1_backend_ops;

/* Each backend's entry point: its operations table (backends/<name>/). The build links the
 * ones it was configured with; backends/meson.build generates the list. */
const r1_backend_ops *r1_backend_cpu__ops(void);
const r1_backend_ops *r1_backend_cuda__ops(void);
const r1_backend_ops *r1_backend_vulkan__ops(void);

/* The registry (backend_registry.c). */
int32_t r1_backend_registry__count(void);
const r1_backend_ops *r1_backend_registry__at(int32_t index);
/* NULL (and a message) when no backend of that name is built. */
const r1_backend_ops *r1_backend_registry__find(const char *name);
/* Cached probe: device count, 0 when unusable (message set). */
int32_t r1_backend_registry__probe(const r1_backend_ops *ops);

#endif
