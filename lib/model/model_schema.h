/* model_schema.h: each architecture's tensors as data: names, shapes, roles, quantisation and
 * layout, read by the converter, the container's validation and the forward pass's binding
 * (internal). */
#ifndef R1_MODEL_SCHEMA_H
#define R1_MODEL_SCHEMA_H

#include <stddef.h>
#include <stdint.h>

#include "model_config.h"
#include "r1.h"

/* What a tensor is for: decides what it may be stored as and how binding reads it. */
enum {
    R1_TROLE_EMBEDDING = 1, /* rows looked up by token id */
    R1_TROLE_DENSE = 2,     /* a projection read whole by every token */
    R1_TROLE_EXPERT = 3,    /* a routed expert's projection (expert blobs) */
    R1_TROLE_NORM = 4,      /* an RMSNorm gain vector */
    R1_TROLE_BIAS = 5,      /* a projection's bias vector */
    R1_TROLE_HEAD = 6,      /* the output projection to the vocabulary */
    R1_TROLE_ROUTER = 7,    /* a MoE layer's router gate: read whole, never quantised */
};

/* A dimension as a function of the configuration. */
enum {
    R1_SDIM_NONE = 0, /* no second dimension: a vector */
    R1_SDIM_HIDDEN,   /* hidden_size */
    R1_SDIM_VOCAB,    /* vocab_size */
    R1_SDIM_INTER,    /* intermediate_size */
    R1_SDIM_Q,        /* num_attention_heads * head_dim */
    R1_SDIM_KV,       /* num_key_value_heads * head_dim */
    /* Multi-head latent attention and MoE (DeepSeek-V3/V2: docs/model.md §1.1, §5.2) */
    R1_SDIM_Q_LORA,    /* q_lora_rank */
    R1_SDIM_MLA_Q,     /* num_attention_heads * (qk_nope_head_dim + qk_rope_head_dim) */
    R1_SDIM_KV_A,      /* kv_lora_rank + qk_rope_head_dim */
    R1_SDIM_KV_LORA,   /* kv_lora_rank */
    R1_SDIM_KV_B,      /* num_attention_heads * (qk_nope_head_dim + v_head_dim) */
    R1_SDIM_MLA_O,     /* num_attention_heads * v_head_dim */
    R1_SDIM_EXPERTS,   /* n_routed_experts */
    R1_SDIM_MOE_INTER, /* moe_intermediate_size (one routed expert) */
    R1_SDIM_SHARED,    /* n_shared_experts * moe_intermediate_size */
    R1_SDIM_HIDDEN2,   /* 2 * hidden_size (the MTP layer's eh_proj input) */
};

/* Which layers a per-layer tensor is in, beyond per_layer's range: a predicate on the config
 * and the layer, so q LoRA, dense-first layers, shared experts, the router bias and the MTP
 * layer are data too. */
enum {
    R1_SWHEN_ALWAYS = 0,
    R1_SWHEN_Q_LORA,      /* q_lora_rank > 0 (V3; the full V2) */
    R1_SWHEN_NO_Q_LORA,   /* q_lora_rank == 0 (V2-Lite): a plain q_proj */
    R1_SWHEN_DENSE_FFN,   /* the layer's FFN is a dense MLP (first_k_dense_replace, freq) */
    R1_SWHEN_MOE,         /* the layer's FFN is MoE */
    R1_SWHEN_MOE_SHARED,  /* MoE with n_shared_experts > 0 */
    R1_SWHEN_ROUTER_BIAS, /* MoE routed by noaux_tc: e_score_correction_bias (V3) */
    R1_SWHEN_MTP,         /* a multi-token-prediction layer (index >= num_hidden_layers) */
};

/* How many layers a tensor is stored for. */
enum {
    R1_SLAYERS_GLOBAL = 0, /* one, outside the layers */
    R1_SLAYERS_MAIN = 1,   /* each of num_hidden_layers */
    R1_SLAYERS_STORED = 2, /* each of num_hidden_layers + num_nextn_predict_layers (MTP kept) */
};

/* How the weight's rows are laid out for the products. */
enum {
    R1_SLAYOUT_ROWS = 0,     /* as the file stores them; the CPU may re-lay Q8_0/Q4_0 as R16 */
    R1_SLAYOUT_F32_COPY = 1, /* copied to float32 at binding (vectors) */
};

/* Bit (1u << dtype) per storable dtype. */
#define R1_SDT(dt)   (1u << (dt))
#define R1_SDT_FLOAT (R1_SDT(R1_DTYPE_F32) | R1_SDT(R1_DTYPE_F16) | R1_SDT(R1_DTYPE_BF16))
#define R1_SDT_ANY                                                                                 \
    (R1_SDT_FLOAT | R1_SDT(R1_DTYPE_Q8_0) | R1_SDT(R1_DTYPE_Q4_0) | R1_SDT(R1_DTYPE_FP8_E4M3))

/* The places a dense layer block reads its weights from (lib/model/forward_dense.c): a layer's
 * tensors, then the model's. */
enum {
    R1_SLOT_ATTN_NORM = 0,
    R1_SLOT_Q,
    R1_SLOT_Q_BIAS,
    R1_SLOT_K,
    R1_SLOT_K_BIAS,
    R1_SLOT_V,
    R1_SLOT_V_BIAS,
    R1_SLOT_O,
    R1_SLOT_FFN_NORM,
    R1_SLOT_GATE,
    R1_SLOT_UP,
    R1_SLOT_DOWN,
    R1_SLOT_LAYER_COUNT,
    R1_SLOT_EMBED = R1_SLOT_LAYER_COUNT,
    R1_SLOT_FINAL_NORM,
    R1_SLOT_HEAD,
    R1_SLOT_COUNT
};

/* The places the MLA + MoE layer block (lib/model/forward.c, r1_layer_weights) reads a layer's
 * weights from; global tensors use R1_SLOT_EMBED, R1_SLOT_FINAL_NORM and R1_SLOT_HEAD. */
enum {
    R1_MSLOT_NONE = -1, /* stored and checked, not bound (the MTP layer's own, routed experts) */
    R1_MSLOT_ATTN_NORM = 0,
    R1_MSLOT_Q_A,
    R1_MSLOT_Q_A_NORM,
    R1_MSLOT_Q_B,
    R1_MSLOT_Q,
    R1_MSLOT_KV_A,
    R1_MSLOT_KV_A_NORM,
    R1_MSLOT_KV_B,
    R1_MSLOT_O,
    R1_MSLOT_FFN_NORM,
    R1_MSLOT_GATE,
    R1_MSLOT_UP,
    R1_MSLOT_DOWN,
    R1_MSLOT_ROUTER,
    R1_MSLOT_ROUTER_BIAS,
    R1_MSLOT_SH_GATE,
    R1_MSLOT_SH_UP,
    R1_MSLOT_SH_DOWN,
    R1_MSLOT_COUNT
};

/* One tensor of an architecture. A routed expert's projection (role R1_TROLE_EXPERT) is named
 * with "{e}" for the expert index ("mlp.experts.{e}.gate_proj.weight") and stored inside that
 * expert's blob (docs/format.md §6) as projection blob_part. */
typedef struct r1_schema_tensor {
    const char *name;  /* checkpoint name, or its suffix after "model.layers.<l>." */
    int32_t per_layer; /* R1_SLAYERS_*: 0 global, 1 each main layer, 2 each stored layer */
    int32_t role;      /* R1_TROLE_* */
    int32_t rows;      /* R1_SDIM_*: first dimension */
    int32_t cols;      /* R1_SDIM_*: second dimension, R1_SDIM_NONE for a vector */
    int32_t qclass;    /* the converter's quantisation class (convert.h R1_QCLASS_*), -1: none */
    uint32_t dtypes;   /* R1_SDT bits this tensor may be stored as */
    int32_t layout;    /* R1_SLAYOUT_* */
    int32_t optional;  /* 1: may be absent (lm_head of a tied model) */
    int32_t slot;      /* where binding puts it: R1_SLOT_* (dense), R1_MSLOT_* (MLA + MoE) */
    int32_t when;      /* R1_SWHEN_*: the layers (of per_layer's range) that have it */
    int32_t blob_part; /* a routed expert's: 0 gate, 1 up, 2 down in its blob */
    /* A copy of this global tensor that the converter stores once when bit-identical (the MTP
     * layer's embedding and head: docs/model.md §4.1), or NULL. */
    const char *copy_of;
} r1_schema_tensor;

typedef struct r1_schema {
    int32_t arch; /* R1_ARCH_* */
    const r1_schema_tensor *tensors;
    size_t n_tensors;
    /* 1: a tensor the table does not name is stored and tolerated, never read (the MoE
     * architectures, as their converter always did); 0: such a tensor is refused. */
    int32_t extra_ok;
} r1_schema;

/* The schema of cfg's architecture, or NULL when it has none (an unknown arch value). */
const r1_schema *r1_model_schema__get(const r1_model_config *cfg);

/* How many layers per-layer tensor t is looked for in (0 for a global one). */
int64_t r1_model_schema__n_layers(const r1_model_config *cfg, const r1_schema_tensor *t);

/* 1 when t belongs at layer (ignored for a global one): inside per_layer's range and its when
 * predicate holds. */
int32_t r1_model_schema__at(const r1_model_config *cfg, const r1_schema_tensor *t, int64_t layer);

/* The global tensor of s at slot R1_SLOT_EMBED, R1_SLOT_FINAL_NORM or R1_SLOT_HEAD, or NULL. */
const r1_schema_tensor *r1_model_schema__global(const r1_schema *s, int32_t slot);

/* The routed expert projection part (0 gate, 1 up, 2 down) of s, or NULL when s has no
 * experts. */
const r1_schema_tensor *r1_model_schema__expert(const r1_schema *s, int32_t part);

/* A schema dimension's value for cfg. */
int64_t r1_model_schema__dim(const r1_model_config *cfg, int32_t dim);

/* 1 when tensor t is required by cfg (an optional head of an untied model is). */
int32_t r1_model_schema__required(const r1_model_config *cfg, const r1_schema_tensor *t);

/* The schema entry a checkpoint name matches (*layer_out: its layer, -1 for a global one), or
 * NULL; the layer is not checked against the config (r1_model_schema__at does). */
const r1_schema_tensor *r1_model_schema__match(const r1_schema *s, const char *name,
                                               int64_t *layer_out);
/* Same, also matching routed experts' names (*expert_out: the expert, -1 for any other). */
const r1_schema_tensor *r1_model_schema__find(const r1_schema *s, const char *name,
                                              int64_t *layer_out, int64_t *expert_out);

/* The full name of t at layer (ignored for a global one) into buf. */
void r1_model_schema__name(const r1_schema_tensor *t, int64_t layer, char *buf, size_t cap);
/* The full name of routed expert projection t of (layer, expert) into buf. */
void r1_model_schema__expert_name(const r1_schema_tensor *t, int64_t layer, int64_t expert,
                                  char *buf, size_t cap);

/* Checks a tensor's stored dtype and shape (n_dims, shape) against t for cfg: R1_ERR_FORMAT
 * naming it and what the config needs. */
r1_status r1_model_schema__check(const r1_model_config *cfg, const r1_schema_tensor *t,
                                 const char *name, int32_t dtype, int32_t n_dims,
                                 const int64_t *shape);

/* An FP8 weight's block scales are the tensor "<name>" R1_SCHEMA_SCALE_SUFFIX, f32
 * [r1_fp8__scale_blocks(rows), r1_fp8__scale_blocks(cols)] (dtype.h; docs/model.md §5.3.2). */
#define R1_SCHEMA_SCALE_SUFFIX "_scale_inv"

#endif
