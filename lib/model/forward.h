/* forward.h: the DeepSeek-V3/V2 forward pass over a latent KV cache (internal). */
#ifndef R1_FORWARD_H
#define R1_FORWARD_H

#include <stdint.h>

#include "compute.h"
#include "container.h"
#include "forward_dense.h"
#include "model_config.h"
#include "r1.h"
#include "rope.h"
#include "tensor.h"

typedef struct r1_expert_cache r1_expert_cache;

/* One layer's weights, resolved by name once (docs/model.md §5 names). Norm weights and the routing
 * bias are copied to float32 because every use needs them in that form. */
typedef struct r1_layer_weights {
    int32_t is_moe;
    float *attn_norm;                  /* (D) */
    r1_tensor q_a;                     /* (q_lora_rank, D); data NULL without q LoRA */
    float *q_a_norm;                   /* (q_lora_rank) */
    r1_tensor q_b;                     /* (H*d_qk, q_lora_rank) */
    r1_tensor q;                       /* (H*d_qk, D) when there is no q LoRA */
    r1_tensor kv_a;                    /* (kv_lora_rank + d_rope, D) */
    float *kv_a_norm;                  /* (kv_lora_rank) */
    r1_tensor kv_b;                    /* (H*(d_nope+d_v), kv_lora_rank) */
    r1_tensor o;                       /* (D, H*d_v) */
    float *ffn_norm;                   /* (D) */
    r1_tensor gate, up, down;          /* dense MLP */
    r1_tensor router;                  /* (E, D) */
    float *router_bias;                /* (E) or NULL */
    r1_tensor sh_gate, sh_up, sh_down; /* shared experts; data NULL when none */
    /* W_UK of every head transposed to (kv_lora_rank, d_nope) in float32, so absorbing q_nope
     * into the latent space is one product per head; NULL when the copies of all layers would
     * be too big (then each pass transposes the layer's into scratch). */
    float *uk_t;
} r1_layer_weights;

/* Time per operation class and weight traffic, accumulated while profiling is on (classes are
 * R1_PROFILE_* of r1.h). Cheap: a clock read at each class boundary. */
typedef struct r1_forward_profile {
    uint64_t ns[R1_PROFILE_N_CLASSES];
    uint64_t total_ns;
    uint64_t n_tokens, n_chunks;
    uint64_t weight_bytes, expert_bytes, expert_uses;
    /* weight_bytes split by the class whose lap follows the read (r1_prof_lap), and the
     * embedding rows; lapped_bytes is weight_bytes at the last lap. */
    uint64_t class_bytes[R1_PROFILE_N_CLASSES], embed_bytes, lapped_bytes;
    uint64_t *expert_tokens; /* (num_hidden_layers, n_routed_experts) tokens routed */
} r1_forward_profile;

/* One gate of the router lookahead (forward.c, r1_prefetch_gate). */
typedef struct r1_lookahead_gate {
    int32_t phase, left;
    int32_t choice;                  /* while exploiting: run the lookahead */
    uint64_t stall_ns[2], tokens[2]; /* this measurement's passes without [0] and with [1] it */
} r1_lookahead_gate;

typedef struct r1_forward {
    const r1_model_config *cfg;
    const r1_container *container;
    r1_expert_cache *experts;
    r1_compute *compute;
    r1_rope rope;
    r1_tensor embed;          /* (vocab_size, D) */
    float *final_norm;        /* (D) */
    r1_tensor head;           /* (vocab_size, D) */
    r1_layer_weights *layers; /* num_hidden_layers */
    r1_forward_profile *prof; /* NULL unless profiling; owned by the caller */
    /* Router lookahead (on after bind): once a layer's output is known, the next MoE layer's
     * router is applied to it and the experts it predicts are prefetched. Only a bounded store
     * can miss, so with an unbounded one (experts_bounded 0) the lookahead never runs. */
    int32_t prefetch;
    int32_t experts_bounded;
    /* The lookahead's gate (forward.c, r1_prefetch_gate), one for prompt chunks ([0]) and one
     * for decoded tokens ([1]): its phase, passes left in it, and what it measured or chose.
     * stall0 is the store's stall time when the current pass began. lookaheads counts layers
     * whose experts the lookahead predicted. */
    r1_lookahead_gate pf[2];
    uint64_t pf_stall0;
    uint64_t lookaheads;
    r1_dense *dense; /* the dense architectures (forward_dense.c); NULL for MoE */
} r1_forward;

/* Resolves and checks every weight the forward pass reads: R1_ERR_NOT_FOUND naming a missing
 * tensor, R1_ERR_FORMAT naming one whose shape disagrees with the configuration. */
r1_status r1_forward__bind(r1_forward *f, const r1_container *c, r1_expert_cache *experts,
                           r1_compute *compute);
void r1_forward__unbind(r1_forward *f);
/* Makes f a session's forward pass over the model-derived data of bound (one r1_forward__bind
 * per model, kept by the model: weights, norm and W_UK copies, rope), which f only reads, so any
 * number of sessions on any threads share it; what is per session (profile, lookahead gates and
 * counters) starts afresh in f. f is never unbound: bound goes with the model. */
void r1_forward__share(r1_forward *f, const r1_forward *bound);
/* Largest total size of the float32 copies of W_UK that binding makes (default 256 MiB);
 * process-wide, for tests: 0 makes every pass transpose W_UK into scratch instead. */
void r1_forward__set_uk_copy_limit(uint64_t bytes);
/* Whether the lookahead measures its worth and runs only where it shortens the waits for
 * expert data (1, the default), or runs in every pass (0); process-wide, for tests. */
void r1_forward__set_prefetch_adaptive(int32_t on);
/* Tests only: with on != 0, an f32 latent cache stores each new row as its q8_0 round trip, i.e.
 * exactly the values a q8_0 cache gives its readers, so the two caches' logits must agree bit for
 * bit (test_latent_q8); process-wide, set only while no forward pass runs. */
void r1_forward__set_latent_roundtrip(int32_t on);

/* The latent cache of docs/model.md §2.6: per layer and position, RMSNorm(c_kv) followed by the
 * rotated k_pe, in float32 (kv_lora_rank + qk_rope_head_dim values per token and layer). One row
 * per position holds both, so the scores of every key are one matrix product. */
typedef struct r1_kv_cache {
    int64_t n_ctx;
    float *lat; /* (layers, n_ctx, kv_lora_rank + qk_rope_head_dim) if lat_dtype is f32 */
    /* The latent cache's value type (R1_DTYPE_F32, or R1_DTYPE_Q8_0 with the rows in lat_q8
     * instead of lat) and the bytes of one position of one layer in it. */
    int32_t lat_dtype;
    uint8_t *lat_q8; /* (layers, n_ctx, lat_row_bytes) when lat_dtype is q8_0, else NULL */
    size_t lat_row_bytes;
    uint64_t id; /* unique within the process: a device keys its mirror of lat by it */
    /* The dense architectures' cache instead of lat (forward_dense.h). */
    r1_gqa_cache *gqa;
} r1_kv_cache;

/* dtype: the cache's value type (R1_DTYPE_*), or -1 for the model's default (f32 latent for MLA,
 * f16 for grouped-query attention); R1_ERR_UNSUPPORTED for a type the model cannot keep (MLA:
 * f32 and q8_0; q8_0 is taken as f32 when kv_lora_rank is not a multiple of 32). */
r1_status r1_kv_cache__create(r1_kv_cache *kv, const r1_model_config *cfg, int64_t n_ctx,
                              int32_t dtype);
/* An MLA model's latent cache for a requested dtype (as above, -1: default): the type it gets,
 * and the bytes of one position of one layer (lat_row_bytes). */
int32_t r1_kv_cache__latent_dtype(const r1_model_config *cfg, int32_t dtype);
size_t r1_kv_cache__latent_row_bytes(const r1_model_config *cfg, int32_t dtype);
void r1_kv_cache__destroy(r1_kv_cache *kv);

/* Working memory for chunks of up to max_tokens tokens at a time. */
typedef struct r1_forward_scratch r1_forward_scratch;
r1_status r1_forward_scratch__create(r1_forward_scratch **out, const r1_model_config *cfg,
                                     int64_t max_tokens, int64_t n_ctx);
void r1_forward_scratch__destroy(r1_forward_scratch *s);
int64_t r1_forward_scratch__max_tokens(const r1_forward_scratch *s);

/* Evaluates n_tokens ids (n_tokens <= the scratch's max_tokens) at positions pos0 ... with the
 * cache holding positions < pos0, appending theirs. logits receives (n_tokens, vocab_size) rows
 * when all_logits, else the last position's row. Ids must be < vocab_size (checked by the
 * caller). On failure the cache beyond pos0 is unspecified; the caller rewinds to pos0. */
/* Profiling: charges the time since *mark to class cls (and the weight bytes read since the last
 * lap to its class_weight_bytes) and moves the mark to now; no-op when profiling is off. */
void r1_forward__lap(r1_forward *f, int32_t cls, uint64_t *mark);

r1_status r1_forward__run(r1_forward *f, r1_forward_scratch *s, r1_kv_cache *kv, const int32_t *ids,
                          int64_t n_tokens, int64_t pos0, float *logits, int32_t all_logits);

/* One sequence's rows of a batched pass: n_rows consecutive rows of the batch, the tokens at
 * positions pos0 ... pos0 + n_rows - 1 of its own cache kv (which holds the positions < pos0). */
typedef struct r1_forward_seq {
    r1_kv_cache *kv;
    int64_t pos0;
    int64_t n_rows;
    int32_t all_logits; /* a logits row for each of its rows, else for its last only */
} r1_forward_seq;

/* Rows of several sequences in one pass: everything but attention (every product, routing,
 * each routed expert once for all the rows routed to it, the lookahead) runs once over all the
 * rows; attention runs per sequence over its own cache at its own positions. ids has one id per
 * row, the sequences' rows in order; their total is at most the scratch's max_tokens, and every
 * cache's n_ctx at most the scratch's. logits receives, sequence after sequence, its rows'
 * logits (all_logits) or its last row's. Each row's result is bit-identical to the same rows
 * run alone (r1_forward__run of its sequence) where the backend's products treat every row
 * alike (r1_forward__rows_alike: the CPU's integer Q8_0/Q4_0 kernels); the products of weights
 * kept in float that every model has (the router, a tied head) run per sequence for that. On
 * failure every cache beyond its pos0 is unspecified. */
r1_status r1_forward__run_batch(r1_forward *f, r1_forward_scratch *s, const r1_forward_seq *seqs,
                                int64_t n_seqs, const int32_t *ids, float *logits);
/* Whether the CPU backend's products with w treat every row alike whatever the number of rows
 * (the integer kernels of Q8_0 and Q4_0); a float weight takes BLAS for several rows. */
int32_t r1_forward__rows_alike(const r1_tensor *w);
/* The n_ctx the scratch was made for: the longest cache a pass with it may read. */
int64_t r1_forward_scratch__n_ctx(const r1_forward_scratch *s);

#endif
