/* forward_dense.h: the dense distills' forward pass (Qwen2, Llama-3: docs/model.md §7) over a
 * grouped-query key/value cache (internal). */
#ifndef R1_FORWARD_DENSE_H
#define R1_FORWARD_DENSE_H

#include <stdint.h>

#include "compute.h"
#include "container.h"
#include "model_config.h"
#include "model_schema.h"
#include "r1.h"
#include "rope.h"
#include "tensor.h"

typedef struct r1_forward r1_forward;

/* One layer's weights, placed by the schema's slots (model_schema.h R1_SLOT_*): matrices as
 * views of the file, vectors (norm gains, biases) copied to float32; a bias absent from the
 * architecture has vec NULL. */
typedef struct r1_dense_layer {
    r1_tensor w[R1_SLOT_LAYER_COUNT];
    float *vec[R1_SLOT_LAYER_COUNT];
} r1_dense_layer;

typedef struct r1_dense {
    r1_dense_layer *layers;             /* num_hidden_layers */
    r1_tensor embed;                    /* (vocab_size, D) */
    r1_tensor head;                     /* (vocab_size, D): lm_head, or the embedding when tied */
    float *final_norm;                  /* (D) */
    int64_t n_pairs;                    /* head_dim / 2 */
    double inv_freq[R1_ROPE_MAX_PAIRS]; /* theta'_m after llama3 scaling (docs/model.md §7.3) */
    double softmax_scale;               /* head_dim^-1/2 */
} r1_dense;

/* Binds every tensor the schema of the container's architecture names into f->dense (and the
 * cfg, container and compute fields of f): R1_ERR_NOT_FOUND naming a missing tensor,
 * R1_ERR_FORMAT one whose shape or type disagrees with the schema. */
r1_status r1_forward_dense__bind(r1_forward *f, const r1_container *c, r1_compute *compute);
void r1_forward_dense__unbind(r1_forward *f);

/* The inverse frequency of rope pair m of cfg (plain, or llama3-scaled: docs/model.md §7.3),
 * in double. */
double r1_forward_dense__inv_freq(const r1_model_config *cfg, int64_t m);

/* Per layer and position, the post-rope keys and the values of the n_kv heads, each row
 * n_kv * head_dim values in dtype (f16 by default; q8_0 or f32: r1_session_opts_set_cache_type).
 * The head dims of keys are stored pairwise interleaved (m, m + head_dim / 2), the order the
 * rope op rotates; queries get the same order, so every score is the same sum. */
typedef struct r1_gqa_cache {
    int32_t dtype;
    int64_t n_ctx;
    size_t row_bytes; /* one position of one layer */
    uint8_t *k, *v;   /* (layers, n_ctx, row_bytes) */
} r1_gqa_cache;

/* dtype: R1_DTYPE_F16, R1_DTYPE_Q8_0 or R1_DTYPE_F32, or -1 for the default (f16); q8_0 falls
 * back to f16 when a head is not whole 32-value blocks. R1_ERR_UNSUPPORTED for other types. */
r1_status r1_gqa_cache__create(r1_gqa_cache **out, const r1_model_config *cfg, int64_t n_ctx,
                               int32_t dtype);
/* Bytes one position takes in a cache r1_gqa_cache__create(cfg, dtype) makes (every layer, keys
 * and values), for memory budgets. */
uint64_t r1_gqa_cache__position_bytes(const r1_model_config *cfg, int32_t dtype);
void r1_gqa_cache__destroy(r1_gqa_cache *kv);
/* Whether dtype is a type a key/value cache can take. */
int32_t r1_gqa_cache__valid_dtype(int32_t dtype);

/* For tests: fn sees each cache row segment as it is stored (layer, keys 0 / values 1, position),
 * the n float32 values it was rounded from (keys in the cache's interleaved order) beside the
 * stored bytes (n values of dtype), and may change those, so a test can take the float64
 * reference's rounding where a value lies at a rounding midpoint (test/ref/reference_dense.py
 * near_tie_*). Process-wide; NULL removes it. */
typedef void (*r1_dense_kv_hook)(int64_t layer, int32_t is_value, int64_t pos, int32_t dtype,
                                 const float *x, int64_t n, void *stored, void *user_data);
void r1_forward_dense__set_kv_hook(r1_dense_kv_hook fn, void *user_data);

/* Working memory for chunks of up to max_tokens tokens over n_ctx positions. */
typedef struct r1_dense_scratch r1_dense_scratch;
r1_status r1_dense_scratch__create(r1_dense_scratch **out, const r1_model_config *cfg,
                                   int64_t max_tokens, int64_t n_ctx);
void r1_dense_scratch__destroy(r1_dense_scratch *s);

/* As r1_forward__run (forward.h) for a dense model. */
r1_status r1_forward_dense__run(r1_forward *f, r1_dense_scratch *s, r1_gqa_cache *kv,
                                const int32_t *ids, int64_t n_tokens, int64_t pos0, float *logits,
                                int32_t all_logits);
/* As r1_forward__run_batch (forward.h) for a dense model; n_ctx: the scratch's. */
typedef struct r1_forward_seq r1_forward_seq;
r1_status r1_forward_dense__run_batch(r1_forward *f, r1_dense_scratch *s, int64_t n_ctx,
                                      const r1_forward_seq *seqs, int64_t n_seqs,
                                      const int32_t *ids, float *logits);

#endif
