/* model_schema.c: the tensor tables of the dense architectures (Qwen2, Llama-3) and the name,
 * shape and dtype rules every reader of a checkpoint applies through them. */
#include "model_schema.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"
#include "dtype.h"
#include "error.h"

#define LAYER_PREFIX "model.layers."

/* Vectors may be any float type (they are copied to float32 at binding); projections and the
 * embedding any type the converter makes from the BF16 checkpoints (no FP8: the distills have
 * none, and its scale tensors are no part of these tables). */
#define VEC R1_SDT_FLOAT
#define MAT (R1_SDT_FLOAT | R1_SDT(R1_DTYPE_Q8_0) | R1_SDT(R1_DTYPE_Q4_0))
#define EMB MAT

#define T(name, layer, role, rows, cols, qclass, dtypes, layout, optional, slot)                   \
    {                                                                                              \
        name, layer, role, rows, cols, qclass, dtypes, layout, optional, slot                      \
    }

/* Qwen2 (docs/model.md §7.1, §7.4): biases on q, k and v only; the head untied (but honoured
 * when tied). */
static const r1_schema_tensor qwen2_tensors[] = {
    T("model.embed_tokens.weight", 0, R1_TROLE_EMBEDDING, R1_SDIM_VOCAB, R1_SDIM_HIDDEN, -1, EMB,
      R1_SLAYOUT_ROWS, 0, R1_SLOT_EMBED),
    T("model.norm.weight", 0, R1_TROLE_NORM, R1_SDIM_HIDDEN, R1_SDIM_NONE, -1, VEC,
      R1_SLAYOUT_F32_COPY, 0, R1_SLOT_FINAL_NORM),
    T("lm_head.weight", 0, R1_TROLE_HEAD, R1_SDIM_VOCAB, R1_SDIM_HIDDEN, R1_QCLASS_HEAD, MAT,
      R1_SLAYOUT_ROWS, 1, R1_SLOT_HEAD),
    T("input_layernorm.weight", 1, R1_TROLE_NORM, R1_SDIM_HIDDEN, R1_SDIM_NONE, -1, VEC,
      R1_SLAYOUT_F32_COPY, 0, R1_SLOT_ATTN_NORM),
    T("self_attn.q_proj.weight", 1, R1_TROLE_DENSE, R1_SDIM_Q, R1_SDIM_HIDDEN, R1_QCLASS_ATTN, MAT,
      R1_SLAYOUT_ROWS, 0, R1_SLOT_Q),
    T("self_attn.q_proj.bias", 1, R1_TROLE_BIAS, R1_SDIM_Q, R1_SDIM_NONE, -1, VEC,
      R1_SLAYOUT_F32_COPY, 0, R1_SLOT_Q_BIAS),
    T("self_attn.k_proj.weight", 1, R1_TROLE_DENSE, R1_SDIM_KV, R1_SDIM_HIDDEN, R1_QCLASS_ATTN, MAT,
      R1_SLAYOUT_ROWS, 0, R1_SLOT_K),
    T("self_attn.k_proj.bias", 1, R1_TROLE_BIAS, R1_SDIM_KV, R1_SDIM_NONE, -1, VEC,
      R1_SLAYOUT_F32_COPY, 0, R1_SLOT_K_BIAS),
    T("self_attn.v_proj.weight", 1, R1_TROLE_DENSE, R1_SDIM_KV, R1_SDIM_HIDDEN, R1_QCLASS_ATTN, MAT,
      R1_SLAYOUT_ROWS, 0, R1_SLOT_V),
    T("self_attn.v_proj.bias", 1, R1_TROLE_BIAS, R1_SDIM_KV, R1_SDIM_NONE, -1, VEC,
      R1_SLAYOUT_F32_COPY, 0, R1_SLOT_V_BIAS),
    T("self_attn.o_proj.weight", 1, R1_TROLE_DENSE, R1_SDIM_HIDDEN, R1_SDIM_Q, R1_QCLASS_ATTN, MAT,
      R1_SLAYOUT_ROWS, 0, R1_SLOT_O),
    T("post_attention_layernorm.weight", 1, R1_TROLE_NORM, R1_SDIM_HIDDEN, R1_SDIM_NONE, -1, VEC,
      R1_SLAYOUT_F32_COPY, 0, R1_SLOT_FFN_NORM),
    T("mlp.gate_proj.weight", 1, R1_TROLE_DENSE, R1_SDIM_INTER, R1_SDIM_HIDDEN, R1_QCLASS_DENSE,
      MAT, R1_SLAYOUT_ROWS, 0, R1_SLOT_GATE),
    T("mlp.up_proj.weight", 1, R1_TROLE_DENSE, R1_SDIM_INTER, R1_SDIM_HIDDEN, R1_QCLASS_DENSE, MAT,
      R1_SLAYOUT_ROWS, 0, R1_SLOT_UP),
    T("mlp.down_proj.weight", 1, R1_TROLE_DENSE, R1_SDIM_HIDDEN, R1_SDIM_INTER, R1_QCLASS_DENSE,
      MAT, R1_SLAYOUT_ROWS, 0, R1_SLOT_DOWN),
};

/* Llama-3 (docs/model.md §7.1, §7.4): Qwen2's table without the biases. */
static const r1_schema_tensor llama_tensors[] = {
    T("model.embed_tokens.weight", 0, R1_TROLE_EMBEDDING, R1_SDIM_VOCAB, R1_SDIM_HIDDEN, -1, EMB,
      R1_SLAYOUT_ROWS, 0, R1_SLOT_EMBED),
    T("model.norm.weight", 0, R1_TROLE_NORM, R1_SDIM_HIDDEN, R1_SDIM_NONE, -1, VEC,
      R1_SLAYOUT_F32_COPY, 0, R1_SLOT_FINAL_NORM),
    T("lm_head.weight", 0, R1_TROLE_HEAD, R1_SDIM_VOCAB, R1_SDIM_HIDDEN, R1_QCLASS_HEAD, MAT,
      R1_SLAYOUT_ROWS, 1, R1_SLOT_HEAD),
    T("input_layernorm.weight", 1, R1_TROLE_NORM, R1_SDIM_HIDDEN, R1_SDIM_NONE, -1, VEC,
      R1_SLAYOUT_F32_COPY, 0, R1_SLOT_ATTN_NORM),
    T("self_attn.q_proj.weight", 1, R1_TROLE_DENSE, R1_SDIM_Q, R1_SDIM_HIDDEN, R1_QCLASS_ATTN, MAT,
      R1_SLAYOUT_ROWS, 0, R1_SLOT_Q),
    T("self_attn.k_proj.weight", 1, R1_TROLE_DENSE, R1_SDIM_KV, R1_SDIM_HIDDEN, R1_QCLASS_ATTN, MAT,
      R1_SLAYOUT_ROWS, 0, R1_SLOT_K),
    T("self_attn.v_proj.weight", 1, R1_TROLE_DENSE, R1_SDIM_KV, R1_SDIM_HIDDEN, R1_QCLASS_ATTN, MAT,
      R1_SLAYOUT_ROWS, 0, R1_SLOT_V),
    T("self_attn.o_proj.weight", 1, R1_TROLE_DENSE, R1_SDIM_HIDDEN, R1_SDIM_Q, R1_QCLASS_ATTN, MAT,
      R1_SLAYOUT_ROWS, 0, R1_SLOT_O),
    T("post_attention_layernorm.weight", 1, R1_TROLE_NORM, R1_SDIM_HIDDEN, R1_SDIM_NONE, -1, VEC,
      R1_SLAYOUT_F32_COPY, 0, R1_SLOT_FFN_NORM),
    T("mlp.gate_proj.weight", 1, R1_TROLE_DENSE, R1_SDIM_INTER, R1_SDIM_HIDDEN, R1_QCLASS_DENSE,
      MAT, R1_SLAYOUT_ROWS, 0, R1_SLOT_GATE),
    T("mlp.up_proj.weight", 1, R1_TROLE_DENSE, R1_SDIM_INTER, R1_SDIM_HIDDEN, R1_QCLASS_DENSE, MAT,
      R1_SLAYOUT_ROWS, 0, R1_SLOT_UP),
    T("mlp.down_proj.weight", 1, R1_TROLE_DENSE, R1_SDIM_HIDDEN, R1_SDIM_INTER, R1_QCLASS_DENSE,
      MAT, R1_SLAYOUT_ROWS, 0, R1_SLOT_DOWN),
};
#undef T

static const r1_schema schemas[] = {
    {R1_ARCH_QWEN2, qwen2_tensors, sizeof qwen2_tensors / sizeof qwen2_tensors[0]},
    {R1_ARCH_LLAMA, llama_tensors, sizeof llama_tensors / sizeof llama_tensors[0]},
};

const r1_schema *r1_model_schema__get(const r1_model_config *cfg)
{
    for (size_t i = 0; i < sizeof schemas / sizeof schemas[0]; i++)
        if (schemas[i].arch == cfg->arch)
            return &schemas[i];
    return NULL;
}

int64_t r1_model_schema__dim(const r1_model_config *cfg, int32_t dim)
{
    switch (dim) {
    case R1_SDIM_HIDDEN: return cfg->hidden_size;
    case R1_SDIM_VOCAB: return cfg->vocab_size;
    case R1_SDIM_INTER: return cfg->intermediate_size;
    case R1_SDIM_Q: return cfg->num_attention_heads * cfg->head_dim;
    case R1_SDIM_KV: return cfg->num_key_value_heads * cfg->head_dim;
    default: return 0;
    }
}

int32_t r1_model_schema__required(const r1_model_config *cfg, const r1_schema_tensor *t)
{
    /* The one optional tensor is the head, needed unless tie_word_embeddings says the
     * embedding serves as it (docs/model.md §7.1). */
    return !t->optional || (t->role == R1_TROLE_HEAD && !cfg->tie_word_embeddings);
}

const r1_schema_tensor *r1_model_schema__match(const r1_schema *s, const char *name,
                                               int64_t *layer_out)
{
    int64_t layer = -1;
    const char *rest = name;
    if (strncmp(name, LAYER_PREFIX, strlen(LAYER_PREFIX)) == 0) {
        const char *p = name + strlen(LAYER_PREFIX);
        char *end;
        if (*p < '0' || *p > '9')
            return NULL;
        long long l = strtoll(p, &end, 10);
        if (*end != '.' || l < 0 || l > INT32_MAX)
            return NULL;
        layer = l;
        rest = end + 1;
    }
    for (size_t i = 0; i < s->n_tensors; i++) {
        const r1_schema_tensor *t = &s->tensors[i];
        if ((layer >= 0) == (t->per_layer != 0) && strcmp(t->name, rest) == 0) {
            *layer_out = layer;
            return t;
        }
    }
    return NULL;
}

void r1_model_schema__name(const r1_schema_tensor *t, int64_t layer, char *buf, size_t cap)
{
    if (t->per_layer)
        snprintf(buf, cap, LAYER_PREFIX "%" PRId64 ".%s", layer, t->name);
    else
        snprintf(buf, cap, "%s", t->name);
}

r1_status r1_model_schema__check(const r1_model_config *cfg, const r1_schema_tensor *t,
                                 const char *name, int32_t dtype, int32_t n_dims,
                                 const int64_t *shape)
{
    const int64_t d0 = r1_model_schema__dim(cfg, t->rows), d1 = r1_model_schema__dim(cfg, t->cols);
    const int32_t want_dims = t->cols == R1_SDIM_NONE ? 1 : 2;
    if (n_dims != want_dims || shape[0] != d0 || (want_dims == 2 && shape[1] != d1)) {
        if (want_dims == 1)
            return r1_error__set(R1_ERR_FORMAT,
                                 "tensor '%s' has %d dims [%" PRId64 "%s], the config needs "
                                 "[%" PRId64 "]",
                                 name, (int)n_dims, shape[0], n_dims > 1 ? ", ..." : "", d0);
        return r1_error__set(R1_ERR_FORMAT,
                             "tensor '%s' has %d dims [%" PRId64 "%s%" PRId64 "], the config "
                             "needs [%" PRId64 ", %" PRId64 "]",
                             name, (int)n_dims, shape[0], n_dims > 1 ? ", " : "",
                             n_dims > 1 ? shape[1] : 0, d0, d1);
    }
    if (dtype < 0 || dtype >= 32 || !(t->dtypes & R1_SDT(dtype))) {
        const r1_dtype_traits *tr = r1_dtype__traits(dtype);
        return r1_error__set(R1_ERR_FORMAT, "tensor '%s' cannot be stored as %s", name,
                             tr ? tr->name : "an unknown dtype");
    }
    return R1_OK;
}
