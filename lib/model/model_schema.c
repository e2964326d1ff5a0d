/* model_schema.c: the tensor tables of every architecture (DeepSeek-V3/V2, Qwen2, Llama-3) and
 * the name, shape and dtype rules every reader of a checkpoint applies through them. */
#include "model_schema.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"
#include "dtype.h"
#include "error.h"
#include "model_config.h"

#define LAYER_PREFIX "model.layers."

/* Vectors may be any float type (they are copied to float32 at binding); projections and the
 * embedding any type the converter makes from the BF16 checkpoints (no FP8: the distills have
 * none, and its scale tensors are no part of these tables). */
#define VEC R1_SDT_FLOAT
#define MAT (R1_SDT_FLOAT | R1_SDT(R1_DTYPE_Q8_0) | R1_SDT(R1_DTYPE_Q4_0))
#define EMB MAT

#define T(name, layer, role, rows, cols, qclass, dtypes, layout, optional, slot)                   \
    {                                                                                              \
        name, layer, role, rows, cols, qclass, dtypes, layout, optional, slot, R1_SWHEN_ALWAYS, 0, \
            NULL                                                                                   \
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

/* DeepSeek-V3 / R1 and V2 / V2-Lite (docs/model.md §4.1, §5.2, §5.4): multi-head latent
 * attention and a dense-first stack of MoE layers, every tensor any type the file format has
 * (the checkpoints' FP8 with its block scales included; vectors float). One table serves both:
 * what tells them apart is config, so it is the when column: q LoRA (V3, the full V2) or a plain
 * q_proj (V2-Lite), the router bias of noaux_tc routing (V3), shared experts, the dense-first
 * layers (first_k_dense_replace, moe_layer_freq) and the MTP layer (V3: num_nextn_predict_layers),
 * which is stored and checked but not bound. */
#define MOE_MAT R1_SDT_ANY
#define M(name, layers, role, rows, cols, qclass, dtypes, layout, slot, when, part, copy_of)       \
    {                                                                                              \
        name, layers, role, rows, cols, qclass, dtypes, layout, 0, slot, when, part, copy_of       \
    }
#define MV(name, layers, rows, slot, when) /* a norm gain */                                       \
    M(name, layers, R1_TROLE_NORM, rows, R1_SDIM_NONE, -1, VEC, R1_SLAYOUT_F32_COPY, slot, when,   \
      0, NULL)
#define MP(name, rows, cols, qclass, slot, when) /* a projection of each stored layer */           \
    M(name, R1_SLAYERS_STORED, R1_TROLE_DENSE, rows, cols, qclass, MOE_MAT, R1_SLAYOUT_ROWS, slot, \
      when, 0, NULL)
#define MX(name, rows, cols, part) /* a routed expert's projection, in its blob */                 \
    M(name, R1_SLAYERS_STORED, R1_TROLE_EXPERT, rows, cols, R1_QCLASS_EXPERTS, MOE_MAT,            \
      R1_SLAYOUT_ROWS, R1_MSLOT_NONE, R1_SWHEN_MOE, part, NULL)
#define STORED R1_SLAYERS_STORED /* each layer, the MTP layer included */
static const r1_schema_tensor deepseek_tensors[] = {
    M("model.embed_tokens.weight", R1_SLAYERS_GLOBAL, R1_TROLE_EMBEDDING, R1_SDIM_VOCAB,
      R1_SDIM_HIDDEN, -1, MOE_MAT, R1_SLAYOUT_ROWS, R1_SLOT_EMBED, R1_SWHEN_ALWAYS, 0, NULL),
    MV("model.norm.weight", R1_SLAYERS_GLOBAL, R1_SDIM_HIDDEN, R1_SLOT_FINAL_NORM, R1_SWHEN_ALWAYS),
    {"lm_head.weight", R1_SLAYERS_GLOBAL, R1_TROLE_HEAD, R1_SDIM_VOCAB, R1_SDIM_HIDDEN,
     R1_QCLASS_HEAD, MOE_MAT, R1_SLAYOUT_ROWS, 1, R1_SLOT_HEAD, R1_SWHEN_ALWAYS, 0, NULL},
    MV("input_layernorm.weight", STORED, R1_SDIM_HIDDEN, R1_MSLOT_ATTN_NORM, R1_SWHEN_ALWAYS),
    MP("self_attn.q_a_proj.weight", R1_SDIM_Q_LORA, R1_SDIM_HIDDEN, R1_QCLASS_ATTN, R1_MSLOT_Q_A,
       R1_SWHEN_Q_LORA),
    MV("self_attn.q_a_layernorm.weight", STORED, R1_SDIM_Q_LORA, R1_MSLOT_Q_A_NORM,
       R1_SWHEN_Q_LORA),
    MP("self_attn.q_b_proj.weight", R1_SDIM_MLA_Q, R1_SDIM_Q_LORA, R1_QCLASS_ATTN, R1_MSLOT_Q_B,
       R1_SWHEN_Q_LORA),
    MP("self_attn.q_proj.weight", R1_SDIM_MLA_Q, R1_SDIM_HIDDEN, R1_QCLASS_ATTN, R1_MSLOT_Q,
       R1_SWHEN_NO_Q_LORA),
    MP("self_attn.kv_a_proj_with_mqa.weight", R1_SDIM_KV_A, R1_SDIM_HIDDEN, R1_QCLASS_ATTN,
       R1_MSLOT_KV_A, R1_SWHEN_ALWAYS),
    MV("self_attn.kv_a_layernorm.weight", STORED, R1_SDIM_KV_LORA, R1_MSLOT_KV_A_NORM,
       R1_SWHEN_ALWAYS),
    MP("self_attn.kv_b_proj.weight", R1_SDIM_KV_B, R1_SDIM_KV_LORA, R1_QCLASS_ATTN, R1_MSLOT_KV_B,
       R1_SWHEN_ALWAYS),
    MP("self_attn.o_proj.weight", R1_SDIM_HIDDEN, R1_SDIM_MLA_O, R1_QCLASS_ATTN, R1_MSLOT_O,
       R1_SWHEN_ALWAYS),
    MV("post_attention_layernorm.weight", STORED, R1_SDIM_HIDDEN, R1_MSLOT_FFN_NORM,
       R1_SWHEN_ALWAYS),
    MP("mlp.gate_proj.weight", R1_SDIM_INTER, R1_SDIM_HIDDEN, R1_QCLASS_DENSE, R1_MSLOT_GATE,
       R1_SWHEN_DENSE_FFN),
    MP("mlp.up_proj.weight", R1_SDIM_INTER, R1_SDIM_HIDDEN, R1_QCLASS_DENSE, R1_MSLOT_UP,
       R1_SWHEN_DENSE_FFN),
    MP("mlp.down_proj.weight", R1_SDIM_HIDDEN, R1_SDIM_INTER, R1_QCLASS_DENSE, R1_MSLOT_DOWN,
       R1_SWHEN_DENSE_FFN),
    M("mlp.gate.weight", STORED, R1_TROLE_ROUTER, R1_SDIM_EXPERTS, R1_SDIM_HIDDEN, -1, MOE_MAT,
      R1_SLAYOUT_ROWS, R1_MSLOT_ROUTER, R1_SWHEN_MOE, 0, NULL),
    M("mlp.gate.e_score_correction_bias", STORED, R1_TROLE_BIAS, R1_SDIM_EXPERTS, R1_SDIM_NONE, -1,
      VEC, R1_SLAYOUT_F32_COPY, R1_MSLOT_ROUTER_BIAS, R1_SWHEN_ROUTER_BIAS, 0, NULL),
    MP("mlp.shared_experts.gate_proj.weight", R1_SDIM_SHARED, R1_SDIM_HIDDEN, R1_QCLASS_SHARED,
       R1_MSLOT_SH_GATE, R1_SWHEN_MOE_SHARED),
    MP("mlp.shared_experts.up_proj.weight", R1_SDIM_SHARED, R1_SDIM_HIDDEN, R1_QCLASS_SHARED,
       R1_MSLOT_SH_UP, R1_SWHEN_MOE_SHARED),
    MP("mlp.shared_experts.down_proj.weight", R1_SDIM_HIDDEN, R1_SDIM_SHARED, R1_QCLASS_SHARED,
       R1_MSLOT_SH_DOWN, R1_SWHEN_MOE_SHARED),
    MX("mlp.experts.{e}.gate_proj.weight", R1_SDIM_MOE_INTER, R1_SDIM_HIDDEN, 0),
    MX("mlp.experts.{e}.up_proj.weight", R1_SDIM_MOE_INTER, R1_SDIM_HIDDEN, 1),
    MX("mlp.experts.{e}.down_proj.weight", R1_SDIM_HIDDEN, R1_SDIM_MOE_INTER, 2),
    /* the MTP layer's own (docs/model.md §4.1) */
    M("embed_tokens.weight", STORED, R1_TROLE_EMBEDDING, R1_SDIM_VOCAB, R1_SDIM_HIDDEN, -1, MOE_MAT,
      R1_SLAYOUT_ROWS, R1_MSLOT_NONE, R1_SWHEN_MTP, 0, "model.embed_tokens.weight"),
    MV("enorm.weight", STORED, R1_SDIM_HIDDEN, R1_MSLOT_NONE, R1_SWHEN_MTP),
    MV("hnorm.weight", STORED, R1_SDIM_HIDDEN, R1_MSLOT_NONE, R1_SWHEN_MTP),
    MP("eh_proj.weight", R1_SDIM_HIDDEN, R1_SDIM_HIDDEN2, R1_QCLASS_DENSE, R1_MSLOT_NONE,
       R1_SWHEN_MTP),
    MV("shared_head.norm.weight", STORED, R1_SDIM_HIDDEN, R1_MSLOT_NONE, R1_SWHEN_MTP),
    M("shared_head.head.weight", STORED, R1_TROLE_HEAD, R1_SDIM_VOCAB, R1_SDIM_HIDDEN,
      R1_QCLASS_HEAD, MOE_MAT, R1_SLAYOUT_ROWS, R1_MSLOT_NONE, R1_SWHEN_MTP, 0, "lm_head.weight"),
};
#undef STORED
#undef MX
#undef MP
#undef MV
#undef M

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))
static const r1_schema schemas[] = {
    {R1_ARCH_DEEPSEEK_V3, deepseek_tensors, N_OF(deepseek_tensors), 1},
    {R1_ARCH_DEEPSEEK_V2, deepseek_tensors, N_OF(deepseek_tensors), 1},
    {R1_ARCH_QWEN2, qwen2_tensors, N_OF(qwen2_tensors), 0},
    {R1_ARCH_LLAMA, llama_tensors, N_OF(llama_tensors), 0},
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
    case R1_SDIM_Q_LORA: return cfg->q_lora_rank;
    case R1_SDIM_MLA_Q:
        return cfg->num_attention_heads * (cfg->qk_nope_head_dim + cfg->qk_rope_head_dim);
    case R1_SDIM_KV_A: return cfg->kv_lora_rank + cfg->qk_rope_head_dim;
    case R1_SDIM_KV_LORA: return cfg->kv_lora_rank;
    case R1_SDIM_KV_B: return cfg->num_attention_heads * (cfg->qk_nope_head_dim + cfg->v_head_dim);
    case R1_SDIM_MLA_O: return cfg->num_attention_heads * cfg->v_head_dim;
    case R1_SDIM_EXPERTS: return cfg->n_routed_experts;
    case R1_SDIM_MOE_INTER: return cfg->moe_intermediate_size;
    case R1_SDIM_SHARED: return cfg->n_shared_experts * cfg->moe_intermediate_size;
    case R1_SDIM_HIDDEN2: return 2 * cfg->hidden_size;
    default: return 0;
    }
}

int64_t r1_model_schema__n_layers(const r1_model_config *cfg, const r1_schema_tensor *t)
{
    switch (t->per_layer) {
    case R1_SLAYERS_MAIN: return cfg->num_hidden_layers;
    case R1_SLAYERS_STORED: return r1_model_config__n_layers_stored(cfg);
    default: return 0;
    }
}

int32_t r1_model_schema__at(const r1_model_config *cfg, const r1_schema_tensor *t, int64_t layer)
{
    if (t->per_layer == R1_SLAYERS_GLOBAL)
        return 1;
    if (layer < 0 || layer >= r1_model_schema__n_layers(cfg, t))
        return 0;
    switch (t->when) {
    case R1_SWHEN_ALWAYS: return 1;
    case R1_SWHEN_Q_LORA: return cfg->q_lora_rank > 0;
    case R1_SWHEN_NO_Q_LORA: return cfg->q_lora_rank <= 0;
    case R1_SWHEN_DENSE_FFN: return !r1_model_config__layer_is_moe(cfg, layer);
    case R1_SWHEN_MOE: return r1_model_config__layer_is_moe(cfg, layer);
    case R1_SWHEN_MOE_SHARED:
        return r1_model_config__layer_is_moe(cfg, layer) && cfg->n_shared_experts > 0;
    case R1_SWHEN_ROUTER_BIAS:
        return r1_model_config__layer_is_moe(cfg, layer) && cfg->topk_method == R1_TOPK_NOAUX_TC;
    case R1_SWHEN_MTP: return layer >= cfg->num_hidden_layers;
    default: return 0;
    }
}

const r1_schema_tensor *r1_model_schema__global(const r1_schema *s, int32_t slot)
{
    for (size_t i = 0; i < s->n_tensors; i++)
        if (s->tensors[i].per_layer == R1_SLAYERS_GLOBAL && s->tensors[i].slot == slot)
            return &s->tensors[i];
    return NULL;
}

const r1_schema_tensor *r1_model_schema__expert(const r1_schema *s, int32_t part)
{
    for (size_t i = 0; i < s->n_tensors; i++)
        if (s->tensors[i].role == R1_TROLE_EXPERT && s->tensors[i].blob_part == part)
            return &s->tensors[i];
    return NULL;
}

int32_t r1_model_schema__required(const r1_model_config *cfg, const r1_schema_tensor *t)
{
    /* The one optional tensor is the head, needed unless tie_word_embeddings says the
     * embedding serves as it (docs/model.md §7.1). */
    return !t->optional || (t->role == R1_TROLE_HEAD && !cfg->tie_word_embeddings);
}

#define EXPERT_MARK "{e}"

/* Whether rest is pattern with its "{e}" (if any) replaced by an expert index (*expert: that
 * index, read as the converter always read it, or -1 without a mark). */
static int match_pattern(const char *pattern, const char *rest, int64_t *expert)
{
    const char *mark = strstr(pattern, EXPERT_MARK);
    *expert = -1;
    if (mark == NULL)
        return strcmp(pattern, rest) == 0;
    const size_t n = (size_t)(mark - pattern);
    if (strncmp(pattern, rest, n) != 0)
        return 0;
    char *end;
    const char *p = rest + n;
    long long e = strtoll(p, &end, 10);
    if (end == p || strcmp(end, mark + strlen(EXPERT_MARK)) != 0)
        return 0;
    *expert = e;
    return 1;
}

const r1_schema_tensor *r1_model_schema__find(const r1_schema *s, const char *name,
                                              int64_t *layer_out, int64_t *expert_out)
{
    int64_t layer = -1, expert = -1;
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
        if ((layer >= 0) == (t->per_layer != R1_SLAYERS_GLOBAL) &&
            match_pattern(t->name, rest, &expert)) {
            *layer_out = layer;
            if (expert_out != NULL)
                *expert_out = expert;
            return t;
        }
    }
    return NULL;
}

const r1_schema_tensor *r1_model_schema__match(const r1_schema *s, const char *name,
                                               int64_t *layer_out)
{
    const r1_schema_tensor *t = r1_model_schema__find(s, name, layer_out, NULL);
    return t != NULL && t->role == R1_TROLE_EXPERT ? NULL : t;
}

void r1_model_schema__name(const r1_schema_tensor *t, int64_t layer, char *buf, size_t cap)
{
    if (t->per_layer)
        snprintf(buf, cap, LAYER_PREFIX "%" PRId64 ".%s", layer, t->name);
    else
        snprintf(buf, cap, "%s", t->name);
}

void r1_model_schema__expert_name(const r1_schema_tensor *t, int64_t layer, int64_t expert,
                                  char *buf, size_t cap)
{
    const char *mark = strstr(t->name, EXPERT_MARK);
    if (mark == NULL) {
        r1_model_schema__name(t, layer, buf, cap);
        return;
    }
    snprintf(buf, cap, LAYER_PREFIX "%" PRId64 ".%.*s%" PRId64 "%s", layer, (int)(mark - t->name),
             t->name, expert, mark + strlen(EXPERT_MARK));
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
