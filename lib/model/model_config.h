/* model_config.h: the model hyperparameters the forward pass needs, and their validation
 * (internal). */
#ifndef R1_MODEL_CONFIG_H
#define R1_MODEL_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "r1.h"

/* The dense distills (Qwen2, Llama-3) follow the MoE models; lib/model/model_schema.c describes
 * each architecture's tensors. */
enum { R1_ARCH_DEEPSEEK_V3 = 1, R1_ARCH_DEEPSEEK_V2 = 2, R1_ARCH_QWEN2 = 3, R1_ARCH_LLAMA = 4 };
enum { R1_TOPK_GREEDY = 0, R1_TOPK_GROUP_LIMITED_GREEDY = 1, R1_TOPK_NOAUX_TC = 2 };
enum { R1_SCORING_SOFTMAX = 0, R1_SCORING_SIGMOID = 1 };
enum { R1_ROPE_NONE = 0, R1_ROPE_YARN = 1, R1_ROPE_LLAMA3 = 2 };

/* Every config.json field of docs/model.md §1.1 that changes the math. Integer fields absent from
 * config.json take the value noted; q_lora_rank 0 means "no q LoRA" (plain q_proj). */
typedef struct r1_model_config {
    char architecture[32]; /* "deepseek_v3" or "deepseek_v2" (the model_type) */
    int32_t arch;          /* R1_ARCH_* */
    int64_t hidden_size;
    int64_t intermediate_size;
    int64_t moe_intermediate_size;
    int64_t num_hidden_layers;
    int64_t first_k_dense_replace;
    int64_t moe_layer_freq;
    int64_t n_routed_experts;
    int64_t n_shared_experts;
    int64_t num_experts_per_tok;
    int64_t n_group;
    int64_t topk_group;
    int64_t q_lora_rank; /* 0: none */
    int64_t kv_lora_rank;
    int64_t qk_nope_head_dim;
    int64_t qk_rope_head_dim;
    int64_t v_head_dim;
    int64_t num_attention_heads;
    int64_t num_key_value_heads;
    int64_t vocab_size; /* embedding rows */
    int64_t max_position_embeddings;
    int64_t num_nextn_predict_layers; /* MTP layers, 0 when absent */
    int64_t bos_token_id;
    int64_t eos_token_id;
    int64_t tie_word_embeddings; /* 0/1 */
    int64_t norm_topk_prob;      /* 0/1 */
    int64_t rope_original_max_position_embeddings;
    int64_t fp8_block_size;  /* 128 for FP8 checkpoints, 0 otherwise (informational) */
    int64_t n_tokenizer_ids; /* tokenizer id count (may be < vocab_size) */
    int32_t topk_method;     /* R1_TOPK_* */
    int32_t scoring_func;    /* R1_SCORING_* */
    int32_t rope_scaling;    /* R1_ROPE_* */
    double routed_scaling_factor;
    double rms_norm_eps;
    double rope_theta;
    double rope_factor;
    double rope_beta_fast;
    double rope_beta_slow;
    double rope_mscale;
    double rope_mscale_all_dim;
    /* The dense architectures (docs/model.md §7); 0 / defaults for the MoE ones. */
    int64_t head_dim;             /* per attention head; 0 in config.json: hidden / heads */
    double rope_low_freq_factor;  /* llama3 rope scaling */
    double rope_high_freq_factor; /* llama3 rope scaling */
} r1_model_config;

/* One stored field: the .r1m metadata key is "config." + key; for the converter, key is the
 * config.json path ("rope_scaling.factor" is a member of the rope_scaling object). */
typedef struct r1_config_field {
    const char *key;
    int32_t kind; /* R1_CONFIG_I64, R1_CONFIG_F64, R1_CONFIG_STR */
    size_t offset;
    int32_t required; /* R1_CONFIG_REQUIRED*: must be present; 0: the default below applies */
    double default_value;
} r1_config_field;
enum { R1_CONFIG_I64 = 1, R1_CONFIG_F64 = 2, R1_CONFIG_STR = 3 };
/* Required by every architecture, or by the MoE ones only (absent from a dense config.json;
 * stored all the same, as 0, so a .r1m always holds every field). */
enum { R1_CONFIG_REQUIRED = 1, R1_CONFIG_REQUIRED_MOE = 2 };

/* The table of stored fields, in storage order. String fields (topk_method, scoring_func,
 * rope_scaling.type) are stored as text and converted with r1_model_config__set_string. */
const r1_config_field *r1_model_config__fields(size_t *n_out);

/* Sets an enum-valued field from its config.json text ("noaux_tc", "sigmoid", "yarn", the
 * architecture name). R1_ERR_UNSUPPORTED naming the key and value when unknown. */
r1_status r1_model_config__set_string(r1_model_config *cfg, const char *key, const char *value);
/* The text of an enum-valued field (for writing metadata). */
const char *r1_model_config__get_string(const r1_model_config *cfg, const char *key);

/* Reads a Hugging Face config.json (len bytes of untrusted text) into cfg: every field of the
 * table, defaults for absent optional ones, the fp8 quantization_config. R1_ERR_FORMAT naming
 * the field, R1_ERR_UNSUPPORTED for an unknown model_type or quantisation. Does not validate. */
r1_status r1_model_config__from_json(r1_model_config *cfg, const char *text, size_t len);

/* Consistency checks (positive sizes, divisibility, ranges). R1_ERR_FORMAT with the field. */
r1_status r1_model_config__validate(const r1_model_config *cfg);

/* 1 for the dense architectures (Qwen2, Llama-3: lib/model/forward_dense.c), 0 for the MoE ones. */
int32_t r1_model_config__is_dense(const r1_model_config *cfg);

/* 1 when layer l (0 <= l < num_hidden_layers + num_nextn_predict_layers) has a MoE FFN. */
int32_t r1_model_config__layer_is_moe(const r1_model_config *cfg, int64_t layer);
/* Total layers stored: main layers + MTP layers. */
int64_t r1_model_config__n_layers_stored(const r1_model_config *cfg);

#endif
