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
};

/* A dimension as a function of the configuration. */
enum {
    R1_SDIM_NONE = 0, /* no second dimension: a vector */
    R1_SDIM_HIDDEN,   /* hidden_size */
    R1_SDIM_VOCAB,    /* vocab_size */
    R1_SDIM_INTER,    /* intermediate_size */
    R1_SDIM_Q,        /* num_attention_heads * head_dim */
    R1_SDIM_KV,       /* num_key_value_heads * head_dim */
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

/* One tensor of an architecture. */
typedef struct r1_schema_tensor {
    const char *name;  /* checkpoint name, or its suffix after "model.layers.<l>." */
    int32_t per_layer; /* 1: one per layer */
    int32_t role;      /* R1_TROLE_* */
    int32_t rows;      /* R1_SDIM_*: first dimension */
    int32_t cols;      /* R1_SDIM_*: second dimension, R1_SDIM_NONE for a vector */
    int32_t qclass;    /* the converter's quantisation class (convert.h R1_QCLASS_*), -1: none */
    uint32_t dtypes;   /* R1_SDT bits this tensor may be stored as */
    int32_t layout;    /* R1_SLAYOUT_* */
    int32_t optional;  /* 1: may be absent (lm_head of a tied model) */
    int32_t slot;      /* where binding puts it: R1_SLOT_* */
} r1_schema_tensor;

typedef struct r1_schema {
    int32_t arch; /* R1_ARCH_* */
    const r1_schema_tensor *tensors;
    size_t n_tensors;
} r1_schema;

/* The schema of cfg's architecture, or NULL when it has none yet (the MoE architectures are
 * still checked by container.c's own code). */
const r1_schema *r1_model_schema__get(const r1_model_config *cfg);

/* A schema dimension's value for cfg. */
int64_t r1_model_schema__dim(const r1_model_config *cfg, int32_t dim);

/* 1 when tensor t is required by cfg (an optional head of an untied model is). */
int32_t r1_model_schema__required(const r1_model_config *cfg, const r1_schema_tensor *t);

/* The schema entry a checkpoint name matches (*layer_out: its layer, -1 for a global one), or
 * NULL. */
const r1_schema_tensor *r1_model_schema__match(const r1_schema *s, const char *name,
                                               int64_t *layer_out);

/* The full name of t at layer (ignored for a global one) into buf. */
void r1_model_schema__name(const r1_schema_tensor *t, int64_t layer, char *buf, size_t cap);

/* Checks a tensor's stored dtype and shape (n_dims, shape) against t for cfg: R1_ERR_FORMAT
 * naming it and what the config needs. */
r1_status r1_model_schema__check(const r1_model_config *cfg, const r1_schema_tensor *t,
                                 const char *name, int32_t dtype, int32_t n_dims,
                                 const int64_t *shape);

/* The float32 block scales of an FP8 weight of (rows, cols): one per 128 x 128 block
 * (docs/model.md §5.3.2). The one place the formula is written. */
static inline int64_t r1_model_schema__fp8_scale_rows(int64_t rows)
{
    return (rows + 127) / 128;
}
static inline int64_t r1_model_schema__fp8_scale_cols(int64_t cols)
{
    return (cols + 127) / 128;
}

#endif
