/* model_config.c: the table of stored config fields, enum names, config validation, and the
 * reader of Hugging Face config.json. */
#include "model_config.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "error.h"

#define F(key, kind, member, req, def)                                                             \
    {                                                                                              \
        key, kind, offsetof(r1_model_config, member), req, def                                     \
    }
static const r1_config_field config_fields[] = {
    F("hidden_size", R1_CONFIG_I64, hidden_size, 1, 0),
    F("intermediate_size", R1_CONFIG_I64, intermediate_size, 1, 0),
    F("moe_intermediate_size", R1_CONFIG_I64, moe_intermediate_size, R1_CONFIG_REQUIRED_MOE, 0),
    F("num_hidden_layers", R1_CONFIG_I64, num_hidden_layers, 1, 0),
    F("first_k_dense_replace", R1_CONFIG_I64, first_k_dense_replace, 0, 0),
    F("moe_layer_freq", R1_CONFIG_I64, moe_layer_freq, 0, 1),
    F("n_routed_experts", R1_CONFIG_I64, n_routed_experts, R1_CONFIG_REQUIRED_MOE, 0),
    F("n_shared_experts", R1_CONFIG_I64, n_shared_experts, 0, 0),
    F("num_experts_per_tok", R1_CONFIG_I64, num_experts_per_tok, R1_CONFIG_REQUIRED_MOE, 0),
    F("n_group", R1_CONFIG_I64, n_group, 0, 1),
    F("topk_group", R1_CONFIG_I64, topk_group, 0, 1),
    F("q_lora_rank", R1_CONFIG_I64, q_lora_rank, 0, 0),
    F("kv_lora_rank", R1_CONFIG_I64, kv_lora_rank, R1_CONFIG_REQUIRED_MOE, 0),
    F("qk_nope_head_dim", R1_CONFIG_I64, qk_nope_head_dim, R1_CONFIG_REQUIRED_MOE, 0),
    F("qk_rope_head_dim", R1_CONFIG_I64, qk_rope_head_dim, R1_CONFIG_REQUIRED_MOE, 0),
    F("v_head_dim", R1_CONFIG_I64, v_head_dim, R1_CONFIG_REQUIRED_MOE, 0),
    F("num_attention_heads", R1_CONFIG_I64, num_attention_heads, 1, 0),
    F("num_key_value_heads", R1_CONFIG_I64, num_key_value_heads, 0, 0),
    F("vocab_size", R1_CONFIG_I64, vocab_size, 1, 0),
    F("max_position_embeddings", R1_CONFIG_I64, max_position_embeddings, 1, 0),
    F("num_nextn_predict_layers", R1_CONFIG_I64, num_nextn_predict_layers, 0, 0),
    F("bos_token_id", R1_CONFIG_I64, bos_token_id, 0, -1),
    F("eos_token_id", R1_CONFIG_I64, eos_token_id, 0, -1),
    F("tie_word_embeddings", R1_CONFIG_I64, tie_word_embeddings, 0, 0),
    F("norm_topk_prob", R1_CONFIG_I64, norm_topk_prob, 0, 0),
    F("rope_scaling.original_max_position_embeddings", R1_CONFIG_I64,
      rope_original_max_position_embeddings, 0, 0),
    F("fp8_block_size", R1_CONFIG_I64, fp8_block_size, 0, 0),
    F("n_tokenizer_ids", R1_CONFIG_I64, n_tokenizer_ids, 0, 0),
    F("routed_scaling_factor", R1_CONFIG_F64, routed_scaling_factor, 0, 1.0),
    F("rms_norm_eps", R1_CONFIG_F64, rms_norm_eps, 1, 0),
    F("rope_theta", R1_CONFIG_F64, rope_theta, 0, 10000.0),
    F("rope_scaling.factor", R1_CONFIG_F64, rope_factor, 0, 1.0),
    F("rope_scaling.beta_fast", R1_CONFIG_F64, rope_beta_fast, 0, 32.0),
    F("rope_scaling.beta_slow", R1_CONFIG_F64, rope_beta_slow, 0, 1.0),
    F("rope_scaling.mscale", R1_CONFIG_F64, rope_mscale, 0, 1.0),
    F("rope_scaling.mscale_all_dim", R1_CONFIG_F64, rope_mscale_all_dim, 0, 0.0),
    F("head_dim", R1_CONFIG_I64, head_dim, 0, 0),
    F("rope_scaling.low_freq_factor", R1_CONFIG_F64, rope_low_freq_factor, 0, 1.0),
    F("rope_scaling.high_freq_factor", R1_CONFIG_F64, rope_high_freq_factor, 0, 4.0),
    F("model_type", R1_CONFIG_STR, architecture, 1, 0),
    F("topk_method", R1_CONFIG_STR, topk_method, 0, 0),
    F("scoring_func", R1_CONFIG_STR, scoring_func, 0, 0),
    F("rope_scaling.type", R1_CONFIG_STR, rope_scaling, 0, 0),
};
#undef F

const r1_config_field *r1_model_config__fields(size_t *n_out)
{
    *n_out = sizeof config_fields / sizeof config_fields[0];
    return config_fields;
}

typedef struct enum_name {
    const char *key;
    const char *text;
    int32_t value;
} enum_name;

static const enum_name enum_names[] = {
    {"model_type", "deepseek_v3", R1_ARCH_DEEPSEEK_V3},
    {"model_type", "deepseek_v2", R1_ARCH_DEEPSEEK_V2},
    {"model_type", "qwen2", R1_ARCH_QWEN2},
    {"model_type", "llama", R1_ARCH_LLAMA},
    {"topk_method", "greedy", R1_TOPK_GREEDY},
    {"topk_method", "group_limited_greedy", R1_TOPK_GROUP_LIMITED_GREEDY},
    {"topk_method", "noaux_tc", R1_TOPK_NOAUX_TC},
    {"scoring_func", "softmax", R1_SCORING_SOFTMAX},
    {"scoring_func", "sigmoid", R1_SCORING_SIGMOID},
    {"rope_scaling.type", "none", R1_ROPE_NONE},
    {"rope_scaling.type", "yarn", R1_ROPE_YARN},
    {"rope_scaling.type", "llama3", R1_ROPE_LLAMA3},
};
enum { N_ENUM_NAMES = sizeof enum_names / sizeof enum_names[0] };

static int32_t *enum_slot(r1_model_config *cfg, const char *key)
{
    if (strcmp(key, "model_type") == 0)
        return &cfg->arch;
    if (strcmp(key, "topk_method") == 0)
        return &cfg->topk_method;
    if (strcmp(key, "scoring_func") == 0)
        return &cfg->scoring_func;
    if (strcmp(key, "rope_scaling.type") == 0)
        return &cfg->rope_scaling;
    return NULL;
}

r1_status r1_model_config__set_string(r1_model_config *cfg, const char *key, const char *value)
{
    int32_t *slot = enum_slot(cfg, key);
    if (slot == NULL)
        return r1_error__set(R1_ERR_INTERNAL, "config field '%s' is not a string", key);
    for (int i = 0; i < N_ENUM_NAMES; i++)
        if (strcmp(enum_names[i].key, key) == 0 && strcmp(enum_names[i].text, value) == 0) {
            *slot = enum_names[i].value;
            if (slot == &cfg->arch)
                snprintf(cfg->architecture, sizeof cfg->architecture, "%s", value);
            return R1_OK;
        }
    return r1_error__set(R1_ERR_UNSUPPORTED, "unsupported %s '%.64s'%s", key, value,
                         slot == &cfg->arch ? " (supported: deepseek_v3, deepseek_v2, qwen2, llama)"
                                            : "");
}

const char *r1_model_config__get_string(const r1_model_config *cfg, const char *key)
{
    const int32_t *slot = enum_slot((r1_model_config *)cfg, key);
    if (slot == NULL)
        return NULL;
    for (int i = 0; i < N_ENUM_NAMES; i++)
        if (strcmp(enum_names[i].key, key) == 0 && enum_names[i].value == *slot)
            return enum_names[i].text;
    return NULL;
}

int32_t r1_model_config__is_dense(const r1_model_config *cfg)
{
    return cfg->arch == R1_ARCH_QWEN2 || cfg->arch == R1_ARCH_LLAMA;
}

int64_t r1_model_config__n_layers_stored(const r1_model_config *cfg)
{
    return cfg->num_hidden_layers + cfg->num_nextn_predict_layers;
}

int32_t r1_model_config__layer_is_moe(const r1_model_config *cfg, int64_t layer)
{
    if (cfg->n_routed_experts <= 0 || layer < cfg->first_k_dense_replace)
        return 0;
    if (layer >= cfg->num_hidden_layers)
        return 1; /* MTP layers are MoE layers (docs/model.md §1.4) */
    return layer % cfg->moe_layer_freq == 0;
}

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            return r1_error__set(R1_ERR_FORMAT, "invalid model config: " __VA_ARGS__);             \
    } while (0)

/* The dense architectures (docs/model.md §7): no experts, no latent attention, grouped-query
 * attention with head_dim-wide heads. */
static r1_status r1_validate_dense(const r1_model_config *c)
{
    const int64_t big = INT64_C(1) << 24;
    const struct {
        const char *name;
        int64_t v;
        int64_t lo, hi;
    } dims[] = {
        {"hidden_size", c->hidden_size, 1, big},
        {"intermediate_size", c->intermediate_size, 1, big},
        {"num_hidden_layers", c->num_hidden_layers, 1, 4096},
        {"num_attention_heads", c->num_attention_heads, 1, 4096},
        {"num_key_value_heads", c->num_key_value_heads, 1, 4096},
        {"head_dim", c->head_dim, 2, 2 * 128}, /* rope tables hold up to 128 pairs */
        {"vocab_size", c->vocab_size, 1, big},
        {"max_position_embeddings", c->max_position_embeddings, 1, big},
        {"n_routed_experts", c->n_routed_experts, 0, 0},
        {"num_nextn_predict_layers", c->num_nextn_predict_layers, 0, 0},
        {"n_tokenizer_ids", c->n_tokenizer_ids, 0, big},
    };
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
        CHECK(dims[i].v >= dims[i].lo && dims[i].v <= dims[i].hi,
              "%s = %lld is outside [%lld, %lld]", dims[i].name, (long long)dims[i].v,
              (long long)dims[i].lo, (long long)dims[i].hi);
    CHECK(c->num_attention_heads % c->num_key_value_heads == 0,
          "num_attention_heads %lld not divisible by num_key_value_heads %lld",
          (long long)c->num_attention_heads, (long long)c->num_key_value_heads);
    CHECK(c->head_dim % 2 == 0, "head_dim %lld is odd", (long long)c->head_dim);
    CHECK(c->tie_word_embeddings == 0 || c->tie_word_embeddings == 1, "tie_word_embeddings");
    CHECK(c->fp8_block_size == 0 || c->fp8_block_size == 128, "fp8_block_size %lld",
          (long long)c->fp8_block_size);
    CHECK(c->rope_scaling == R1_ROPE_NONE || c->rope_scaling == R1_ROPE_LLAMA3,
          "rope_scaling must be none or llama3 for %s", c->architecture);
    CHECK(isfinite(c->rms_norm_eps) && c->rms_norm_eps > 0 && c->rms_norm_eps < 1,
          "rms_norm_eps %g", c->rms_norm_eps);
    CHECK(isfinite(c->rope_theta) && c->rope_theta > 1, "rope_theta %g", c->rope_theta);
    if (c->rope_scaling == R1_ROPE_LLAMA3) {
        CHECK(isfinite(c->rope_factor) && c->rope_factor >= 1, "rope_scaling.factor %g",
              c->rope_factor);
        CHECK(isfinite(c->rope_low_freq_factor) && isfinite(c->rope_high_freq_factor) &&
                  c->rope_low_freq_factor > 0 && c->rope_high_freq_factor > c->rope_low_freq_factor,
              "llama3 rope needs 0 < low_freq_factor < high_freq_factor (%g, %g)",
              c->rope_low_freq_factor, c->rope_high_freq_factor);
        CHECK(c->rope_original_max_position_embeddings >= 1 &&
                  c->rope_original_max_position_embeddings <= big,
              "rope_scaling.original_max_position_embeddings %lld",
              (long long)c->rope_original_max_position_embeddings);
    }
    return R1_OK;
}

r1_status r1_model_config__validate(const r1_model_config *c)
{
    if (r1_model_config__is_dense(c))
        return r1_validate_dense(c);
    const int64_t big = INT64_C(1) << 24; /* no dimension of a real model comes near */
    const struct {
        const char *name;
        int64_t v;
        int64_t lo;
    } dims[] = {
        {"hidden_size", c->hidden_size, 1},
        {"intermediate_size", c->intermediate_size, 1},
        {"moe_intermediate_size", c->moe_intermediate_size, 1},
        {"num_hidden_layers", c->num_hidden_layers, 1},
        {"first_k_dense_replace", c->first_k_dense_replace, 0},
        {"moe_layer_freq", c->moe_layer_freq, 1},
        {"n_routed_experts", c->n_routed_experts, 1},
        {"n_shared_experts", c->n_shared_experts, 0},
        {"num_experts_per_tok", c->num_experts_per_tok, 1},
        {"n_group", c->n_group, 1},
        {"topk_group", c->topk_group, 1},
        {"q_lora_rank", c->q_lora_rank, 0},
        {"kv_lora_rank", c->kv_lora_rank, 1},
        {"qk_nope_head_dim", c->qk_nope_head_dim, 1},
        {"qk_rope_head_dim", c->qk_rope_head_dim, 2},
        {"v_head_dim", c->v_head_dim, 1},
        {"num_attention_heads", c->num_attention_heads, 1},
        {"vocab_size", c->vocab_size, 1},
        {"max_position_embeddings", c->max_position_embeddings, 1},
        {"num_nextn_predict_layers", c->num_nextn_predict_layers, 0},
        {"n_tokenizer_ids", c->n_tokenizer_ids, 0},
    };
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
        CHECK(dims[i].v >= dims[i].lo && dims[i].v <= big, "%s = %lld is outside [%lld, %lld]",
              dims[i].name, (long long)dims[i].v, (long long)dims[i].lo, (long long)big);
    CHECK(c->arch == R1_ARCH_DEEPSEEK_V3 || c->arch == R1_ARCH_DEEPSEEK_V2,
          "unknown architecture %d", (int)c->arch);
    CHECK(c->num_hidden_layers + c->num_nextn_predict_layers <= 4096, "too many layers");
    CHECK(c->num_experts_per_tok <= c->n_routed_experts,
          "num_experts_per_tok %lld > n_routed_experts %lld", (long long)c->num_experts_per_tok,
          (long long)c->n_routed_experts);
    CHECK(c->n_routed_experts % c->n_group == 0,
          "n_routed_experts %lld not divisible by n_group %lld", (long long)c->n_routed_experts,
          (long long)c->n_group);
    CHECK(c->topk_group <= c->n_group, "topk_group %lld > n_group %lld", (long long)c->topk_group,
          (long long)c->n_group);
    CHECK(c->qk_rope_head_dim % 2 == 0, "qk_rope_head_dim %lld is odd",
          (long long)c->qk_rope_head_dim);
    CHECK(c->tie_word_embeddings == 0 || c->tie_word_embeddings == 1, "tie_word_embeddings");
    CHECK(c->norm_topk_prob == 0 || c->norm_topk_prob == 1, "norm_topk_prob");
    CHECK(c->fp8_block_size == 0 || c->fp8_block_size == 128, "fp8_block_size %lld",
          (long long)c->fp8_block_size);
    CHECK(c->topk_method >= R1_TOPK_GREEDY && c->topk_method <= R1_TOPK_NOAUX_TC, "topk_method");
    CHECK(c->scoring_func == R1_SCORING_SOFTMAX || c->scoring_func == R1_SCORING_SIGMOID,
          "scoring_func");
    CHECK(c->rope_scaling == R1_ROPE_NONE || c->rope_scaling == R1_ROPE_YARN, "rope_scaling");
    CHECK(isfinite(c->rms_norm_eps) && c->rms_norm_eps > 0 && c->rms_norm_eps < 1,
          "rms_norm_eps %g", c->rms_norm_eps);
    CHECK(isfinite(c->rope_theta) && c->rope_theta > 0, "rope_theta %g", c->rope_theta);
    CHECK(isfinite(c->routed_scaling_factor) && c->routed_scaling_factor > 0,
          "routed_scaling_factor %g", c->routed_scaling_factor);
    CHECK(isfinite(c->rope_factor) && c->rope_factor >= 1, "rope_scaling.factor %g",
          c->rope_factor);
    CHECK(isfinite(c->rope_beta_fast) && isfinite(c->rope_beta_slow) && isfinite(c->rope_mscale) &&
              isfinite(c->rope_mscale_all_dim),
          "rope_scaling values must be finite");
    return R1_OK;
}

/* ---- config.json (the converter's input) ---------------------------------------------- */

static cJSON *json_path(cJSON *root, const char *key)
{
    const char *dot = strchr(key, '.');
    if (dot == NULL)
        return cJSON_GetObjectItemCaseSensitive(root, key);
    char head[64];
    snprintf(head, sizeof head, "%.*s", (int)(dot - key), key);
    cJSON *sub = cJSON_GetObjectItemCaseSensitive(root, head);
    return cJSON_IsObject(sub) ? cJSON_GetObjectItemCaseSensitive(sub, dot + 1) : NULL;
}

/* What a dense config.json leaves implicit: the key/value heads (all heads: no grouping) and
 * the head width; and the module options libr1 does not implement, refused by name. */
static r1_status r1_dense_defaults(r1_model_config *cfg, cJSON *root)
{
    if (cfg->num_key_value_heads == 0)
        cfg->num_key_value_heads = cfg->num_attention_heads;
    if (cfg->head_dim == 0 && cfg->num_attention_heads > 0)
        cfg->head_dim = cfg->hidden_size / cfg->num_attention_heads;
    /* Qwen2 always has q/k/v biases and nothing else; Llama has none unless these say so. */
    static const char *const refused[] = {"attention_bias", "mlp_bias", "use_sliding_window"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, refused[i])))
            return r1_error__set(R1_ERR_UNSUPPORTED, "%s: '%s' true is not supported",
                                 cfg->architecture, refused[i]);
    cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "hidden_act");
    if (act != NULL && (!cJSON_IsString(act) || strcmp(act->valuestring, "silu") != 0))
        return r1_error__set(R1_ERR_UNSUPPORTED, "%s: hidden_act must be silu", cfg->architecture);
    return R1_OK;
}

r1_status r1_model_config__from_json(r1_model_config *cfg, const char *text, size_t len)
{
    memset(cfg, 0, sizeof *cfg);
    cJSON *root = cJSON_ParseWithLength(text, len);
    r1_status st = R1_OK;
    if (!cJSON_IsObject(root)) {
        st = r1_error__set(R1_ERR_FORMAT, "config.json is not a JSON object");
        goto done;
    }
    /* The architecture first: an unsupported model fails as such, not on a missing field. */
    cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (!cJSON_IsString(mt)) {
        st = r1_error__set(R1_ERR_FORMAT, "config.json has no model_type string");
        goto done;
    }
    if ((st = r1_model_config__set_string(cfg, "model_type", mt->valuestring)) != R1_OK)
        goto done;
    size_t n;
    const r1_config_field *f = r1_model_config__fields(&n);
    for (size_t i = 0; i < n && st == R1_OK; i++) {
        cJSON *v = json_path(root, f[i].key);
        if (v && cJSON_IsArray(v) && f[i].kind == R1_CONFIG_I64) /* eos_token_id: [a, b] */
            v = v->child;
        if (f[i].kind == R1_CONFIG_STR) {
            const char *text_v = cJSON_IsString(v) ? v->valuestring : NULL;
            if (text_v == NULL && strcmp(f[i].key, "rope_scaling.type") == 0) {
                cJSON *rt = json_path(root, "rope_scaling.rope_type");
                text_v =
                    cJSON_IsString(rt)
                        ? rt->valuestring
                        : (cJSON_IsObject(json_path(root, "rope_scaling")) ? "unknown" : "none");
            }
            if (text_v == NULL && strcmp(f[i].key, "model_type") == 0)
                st = r1_error__set(R1_ERR_FORMAT, "config.json has no model_type");
            else if (text_v == NULL)
                text_v = strcmp(f[i].key, "topk_method") == 0 ? "greedy" : "softmax";
            if (st == R1_OK)
                st = r1_model_config__set_string(cfg, f[i].key, text_v);
            continue;
        }
        double value;
        if (v == NULL || cJSON_IsNull(v)) {
            if (f[i].required == R1_CONFIG_REQUIRED ||
                (f[i].required == R1_CONFIG_REQUIRED_MOE && !r1_model_config__is_dense(cfg))) {
                st = r1_error__set(R1_ERR_FORMAT, "config.json lacks '%s'", f[i].key);
                break;
            }
            value = f[i].default_value;
        } else if (cJSON_IsBool(v)) {
            value = cJSON_IsTrue(v) ? 1 : 0;
        } else if (cJSON_IsNumber(v)) {
            value = v->valuedouble;
        } else {
            st = r1_error__set(R1_ERR_FORMAT, "config.json field '%s' is not a number", f[i].key);
            break;
        }
        if (f[i].kind == R1_CONFIG_I64) {
            if (!isfinite(value) || value != floor(value) || fabs(value) > 9.0e15) {
                st = r1_error__set(R1_ERR_FORMAT, "config.json field '%s' = %g is not an integer",
                                   f[i].key, value);
                break;
            }
            *(int64_t *)((char *)cfg + f[i].offset) = (int64_t)value;
        } else {
            *(double *)((char *)cfg + f[i].offset) = value;
        }
    }
    if (st != R1_OK)
        goto done;
    if (cfg->rope_mscale_all_dim == 0 && json_path(root, "rope_scaling.mscale_all_dim") == NULL)
        cfg->rope_mscale_all_dim = cfg->rope_mscale;
    if (r1_model_config__is_dense(cfg) && (st = r1_dense_defaults(cfg, root)) != R1_OK)
        goto done;
    cJSON *qc = cJSON_GetObjectItemCaseSensitive(root, "quantization_config");
    if (cJSON_IsObject(qc)) {
        cJSON *method = cJSON_GetObjectItemCaseSensitive(qc, "quant_method");
        cJSON *bs = cJSON_GetObjectItemCaseSensitive(qc, "weight_block_size");
        if (!cJSON_IsString(method) || strcmp(method->valuestring, "fp8") != 0 ||
            !cJSON_IsArray(bs) || cJSON_GetArraySize(bs) != 2 || !cJSON_IsNumber(bs->child) ||
            bs->child->valuedouble != 128 || !cJSON_IsNumber(bs->child->next) ||
            bs->child->next->valuedouble != 128) {
            st = r1_error__set(R1_ERR_UNSUPPORTED, "quantization_config is not fp8 with "
                                                   "128x128 blocks");
            goto done;
        }
        cfg->fp8_block_size = 128;
    }
done:
    cJSON_Delete(root);
    return st;
}
