/* test_forward_dense.c: the dense distills' forward pass (Qwen2, Llama-3) against the float64
 * reference's goldens (test/ref/reference_dense.py), its schema, config reader and attention op. */
#include <check.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "container.h"
#include "convert.h"
#include "cpu_kernels.h"
#include "cpu_ops.h"
#include "kernels_levels.h"
#include "dtype.h"
#include "file_testutil.h"
#include "forward_dense.h"
#include "model.h"
#include "model_config.h"
#include "model_schema.h"
#include "r1.h"
#include "session.h"

/* test/ref/README.md's bound for every weight type: max|engine - ref| / max|ref|. */
static const double GOLDEN_BOUND = 1e-4;

static r1_model *load(const char *model, const char *variant)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s-%s.r1m", tu_models_dir(), model, variant);
    r1_model *m = NULL;
    r1_status st = r1_model_load(&m, path, NULL, NULL);
    ck_assert_msg(st == R1_OK, "load %s: %s", path, r1_last_error());
    return m;
}

/* The cache type the sessions of logits_of() get (r1_session_opts_set_cache_type; NULL: the
 * model's default). */
static const char *cache_type;

/* Logits of every position of ids: evaluated in pieces of `step` tokens (n: one prefill, 1:
 * decode), so prefill at a later position is covered too. */
static float *logits_of(r1_model *m, const int32_t *ids, int n, int step, size_t *vocab)
{
    r1_session_opts *so = NULL;
    ck_assert_int_eq(r1_session_opts_create(&so), R1_OK);
    ck_assert_int_eq(r1_session_opts_set_context(so, 256), R1_OK);
    ck_assert_int_eq(r1_session_opts_set_logits_all(so, 1), R1_OK);
    ck_assert_int_eq(r1_session_opts_set_cache_type(so, cache_type), R1_OK);
    r1_session *s = NULL;
    ck_assert_msg(r1_session_create(&s, m, so) == R1_OK, "%s", r1_last_error());
    r1_session_opts_destroy(so);
    float *out = NULL;
    const float *row;
    for (int t = 0; t < n; t += step) {
        const int len = n - t < step ? n - t : step;
        ck_assert_msg(r1_session_eval(s, ids + t, (size_t)len) == R1_OK, "%s", r1_last_error());
        for (int k = 0; k < len; k++) {
            ck_assert_int_eq(r1_session_logits(s, k, &row, vocab), R1_OK);
            if (out == NULL)
                out = malloc((size_t)n * *vocab * sizeof(float));
            memcpy(out + (size_t)(t + k) * *vocab, row, *vocab * sizeof(float));
        }
    }
    r1_session_destroy(s);
    return out;
}

static double rel_diff(const float *a, const float *b, size_t n)
{
    double mx = 0, md = 0;
    for (size_t i = 0; i < n; i++) {
        mx = fmax(mx, fabs((double)b[i]));
        md = fmax(md, fabs((double)a[i] - (double)b[i]));
    }
    return md / mx;
}

/* ---- near-ties of the q8_0 cache (test/ref/reference_dense.py Q8_TAU) --------------------- */

static const double Q8_TAU = 1e-3;
static const double D_TAU = 1e-5;
static const double F16_TAU = 6e-6, F16_MIN = 1.0 / 8;

typedef struct near_ties {
    const cJSON *blocks; /* [[mask, q0 .. q31], ...] of the golden */
    const cJSON *scales; /* [[d16 bits, q0 .. q31], ...] */
    const cJSON *values; /* f16 cache: [[layer, is_value, pos, index, f16 bits], ...] */
    int n_engine_near;   /* engine blocks with a value within Q8_TAU of a half-step */
    int n_changed;       /* integers taken from the reference */
    int n_unmatched;     /* engine near-tie blocks the golden does not list */
} near_ties;

/* Relative distance of d > 0 to the nearest binary16 rounding midpoint. */
static double f16_midpoint_distance(float d)
{
    const uint16_t h = r1_fp16__from_f32(d);
    const double c = r1_fp16__to_f32(h), up = r1_fp16__to_f32((uint16_t)(h + 1));
    const double dn = r1_fp16__to_f32((uint16_t)(h - 1));
    return fmin(fabs(d - (c + up) / 2), fabs(d - (c + dn) / 2)) / d;
}

/* The scale the reference stored for the block with these integers, where the engine's d lies
 * at a binary16 midpoint too. */
static void pin_near_tie_scale(near_ties *nt, float d, r1_block_q8_0 *b)
{
    if (d <= 0 || f16_midpoint_distance(d) >= D_TAU)
        return;
    nt->n_engine_near++;
    const cJSON *e;
    cJSON_ArrayForEach(e, nt->scales)
    {
        int same = 1;
        for (int j = 0; j < 32 && same; j++)
            same = b->q[j] == cJSON_GetArrayItem(e, 1 + j)->valueint;
        if (!same)
            continue;
        const uint16_t want = (uint16_t)cJSON_GetArrayItem(e, 0)->valueint;
        nt->n_changed += b->d != want;
        b->d = want;
        return;
    }
    nt->n_unmatched++;
}

/* Where the engine's v = x / d lies within Q8_TAU of a half-step, either rounding is right; the
 * block the reference listed with the same integers elsewhere gives the one it took. */
static void pin_block(near_ties *nt, const float *x, r1_block_q8_0 *b)
{
    float amax = 0;
    for (int j = 0; j < 32; j++)
        amax = fmaxf(amax, fabsf(x[j]));
    const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
    int near = 0;
    for (int j = 0; j < 32; j++) {
        const double a = fabs((double)(x[j] * id));
        near |= fabs(a - floor(a) - 0.5) < Q8_TAU;
    }
    if (!near) {
        pin_near_tie_scale(nt, d, b);
        return;
    }
    nt->n_engine_near++;
    const cJSON *e;
    cJSON_ArrayForEach(e, nt->blocks)
    {
        const uint32_t mask = (uint32_t)cJSON_GetArrayItem(e, 0)->valuedouble;
        int same = 1;
        for (int j = 0; j < 32 && same; j++)
            same = ((mask >> j) & 1) || b->q[j] == cJSON_GetArrayItem(e, 1 + j)->valueint;
        if (!same)
            continue;
        for (int j = 0; j < 32; j++)
            if ((mask >> j) & 1 && b->q[j] != cJSON_GetArrayItem(e, 1 + j)->valueint) {
                b->q[j] = (int8_t)cJSON_GetArrayItem(e, 1 + j)->valueint;
                nt->n_changed++;
            }
        pin_near_tie_scale(nt, d, b);
        return;
    }
    nt->n_unmatched++;
}

/* Absolute distance of x to the nearest binary16 rounding midpoint. */
static double f16_midpoint_abs(float x)
{
    const uint16_t h = r1_fp16__from_f32(x);
    const double c = r1_fp16__to_f32(h), a = r1_fp16__to_f32((uint16_t)(h + 1));
    const double b = r1_fp16__to_f32((uint16_t)(h - 1));
    return fmin(fabs(x - (c + a) / 2), fabs(x - (c + b) / 2));
}

/* An f16 cache row: where the engine's value lies within F16_TAU of a rounding midpoint, the
 * reference's rounding of the same cache slot, which it listed. */
static void pin_f16_row(near_ties *nt, int64_t layer, int32_t is_value, int64_t pos, const float *x,
                        int64_t n, uint16_t *stored)
{
    for (int64_t i = 0; i < n; i++) {
        if (fabsf(x[i]) < F16_MIN || f16_midpoint_abs(x[i]) >= F16_TAU)
            continue;
        nt->n_engine_near++;
        const cJSON *e;
        int found = 0;
        cJSON_ArrayForEach(e, nt->values)
        {
            if (cJSON_GetArrayItem(e, 0)->valueint != layer ||
                cJSON_GetArrayItem(e, 1)->valueint != is_value ||
                cJSON_GetArrayItem(e, 2)->valueint != pos ||
                cJSON_GetArrayItem(e, 3)->valueint != i)
                continue;
            const uint16_t want = (uint16_t)cJSON_GetArrayItem(e, 4)->valueint;
            nt->n_changed += stored[i] != want;
            stored[i] = want;
            found = 1;
            break;
        }
        if (!found)
            printf(
                "unlisted near-tie: layer %lld %s pos %lld [%lld] = %.9g (%.3g from a midpoint)\n",
                (long long)layer, is_value ? "v" : "k", (long long)pos, (long long)i, x[i],
                f16_midpoint_abs(x[i]));
        nt->n_unmatched += !found;
    }
}

/* The kv hook (forward_dense.h): a q8_0 row block by block, or an f16 row. */
static void pin_near_ties(int64_t layer, int32_t is_value, int64_t pos, int32_t dtype,
                          const float *x, int64_t n, void *stored, void *user_data)
{
    if (dtype == R1_DTYPE_F16) {
        pin_f16_row(user_data, layer, is_value, pos, x, n, stored);
        return;
    }
    ck_assert_int_eq(dtype, R1_DTYPE_Q8_0);
    for (int64_t i = 0; i < n / 32; i++)
        pin_block(user_data, x + i * 32, (r1_block_q8_0 *)stored + i);
}

/* Every golden of model (with as_type set: the src goldens of the default f16 cache only, on
 * the checkpoint converted to that type, which represents BF16 values exactly), each prefilled
 * whole, decoded token by token, and in pieces of 7 tokens. Returns how many were checked. */
static int check_goldens(const char *model, const char *as_type)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s/goldens.json", tu_data_dir(), model);
    char *text = tu_read_file(path, NULL);
    cJSON *root = cJSON_Parse(text);
    ck_assert_ptr_nonnull(root);
    /* The goldens multiply float activations (8-bit ones are the CPU's own speed choice). */
    r1_cpu__set_act_q8(0);
    int checked = 0;
    const cJSON *g;
    cJSON_ArrayForEach(g, cJSON_GetObjectItem(root, "goldens"))
    {
        const char *variant = cJSON_GetObjectItem(g, "weights_variant")->valuestring;
        const char *kv = cJSON_GetObjectItem(g, "kv")->valuestring;
        if (cJSON_IsTrue(cJSON_GetObjectItem(g, "tied")) ||
            (as_type != NULL && (strcmp(variant, "src") != 0 || strcmp(kv, "f16") != 0)))
            continue; /* tied: test_forward_dense_tied_head_is_the_embedding */
        const cJSON *toks = cJSON_GetObjectItem(g, "tokens");
        const int n = cJSON_GetArraySize(toks);
        int32_t *ids = malloc((size_t)n * sizeof *ids);
        for (int i = 0; i < n; i++)
            ids[i] = cJSON_GetArrayItem(toks, i)->valueint;
        snprintf(path, sizeof path, "%s/%s/%s", tu_data_dir(), model,
                 cJSON_GetObjectItem(g, "file")->valuestring);
        size_t bytes;
        float *ref = (float *)tu_read_file(path, &bytes);
        cache_type = kv;
        r1_model *m = load(model, as_type ? as_type : variant);
        const int steps[3] = {n, 1, 7};
        for (int k = 0; k < 3; k++) {
            size_t vocab = 0;
            near_ties nt = {.blocks = cJSON_GetObjectItem(g, "near_tie_blocks"),
                            .scales = cJSON_GetObjectItem(g, "near_tie_scales"),
                            .values = cJSON_GetObjectItem(g, "near_tie_values")};
            if (nt.blocks != NULL || nt.values != NULL)
                r1_forward_dense__set_kv_hook(pin_near_ties, &nt);
            float *got = logits_of(m, ids, n, steps[k], &vocab);
            r1_forward_dense__set_kv_hook(NULL, NULL);
            /* Away from near-ties the engine rounds as the reference; at most a few roundings
             * per run are taken from it. */
            ck_assert_int_eq(nt.n_unmatched, 0);
            /* q8_0: a few roundings per run; f16 rounds every value, so a few per hundred
             * values at a near-tie */
            ck_assert_int_le(nt.n_changed, nt.values != NULL ? 8 + nt.n_engine_near / 20 : 8);
            if (nt.blocks != NULL || nt.values != NULL)
                printf("  %s cache: %d engine values or blocks at a near-tie, %d roundings "
                       "taken from the reference\n",
                       kv, nt.n_engine_near, nt.n_changed);
            ck_assert_uint_eq(bytes, (size_t)n * vocab * sizeof(float));
            const double d = rel_diff(got, ref, (size_t)n * vocab);
            printf("%s%s%s step %d: max|d|/max|ref| = %.2e\n",
                   cJSON_GetObjectItem(g, "name")->valuestring, as_type ? " as " : "",
                   as_type ? as_type : "", steps[k], d);
            ck_assert_msg(d <= GOLDEN_BOUND, "%s step %d: %.3e > %.1e",
                          cJSON_GetObjectItem(g, "name")->valuestring, steps[k], d, GOLDEN_BOUND);
            free(got);
        }
        r1_model_destroy(m);
        free(ref);
        free(ids);
        checked++;
    }
    cache_type = NULL;
    cJSON_Delete(root);
    free(text);
    return checked;
}

/* The cache type is a session option: each type is what its sessions store (a q8_0 cache holds
 * 34 bytes per 32 values), an unknown name is refused when set, and an MLA model refuses any type
 * but its f32 latent cache when the session is made. */
START_TEST(test_forward_dense_cache_type_is_a_session_option)
{
    r1_model *m = load("tiny-qwen2", "q8_0");
    const r1_model_config *cfg = r1_container__config(r1_model__container(m));
    static const char *types[] = {"f16", "q8_0", "f32"};
    static const int32_t dtypes[] = {R1_DTYPE_F16, R1_DTYPE_Q8_0, R1_DTYPE_F32};
    for (int i = 0; i < 3; i++) {
        r1_session_opts *so = NULL;
        ck_assert_int_eq(r1_session_opts_create(&so), R1_OK);
        ck_assert_int_eq(r1_session_opts_set_cache_type(so, types[i]), R1_OK);
        r1_session *s = NULL;
        ck_assert_msg(r1_session_create(&s, m, so) == R1_OK, "%s", r1_last_error());
        const int32_t want =
            dtypes[i] == R1_DTYPE_Q8_0 && cfg->head_dim % R1_QBLOCK != 0 ? R1_DTYPE_F16 : dtypes[i];
        ck_assert_int_eq(s->kv.gqa->dtype, want);
        r1_session_destroy(s);
        r1_session_opts_destroy(so);
    }
    r1_session_opts *so = NULL;
    ck_assert_int_eq(r1_session_opts_create(&so), R1_OK);
    ck_assert_int_eq(r1_session_opts_set_cache_type(so, "q4_0"), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_session_opts_set_cache_type(so, "bogus"), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_session_opts_set_cache_type(NULL, "f16"), R1_ERR_INVALID_ARG);
    r1_model_destroy(m);
    m = load("tiny-v3", "q8_0");
    /* the latent (MLA) cache: f32 or q8_0 (test_latent_q8), never f16 */
    ck_assert_int_eq(r1_session_opts_set_cache_type(so, "f16"), R1_OK);
    r1_session *s = NULL;
    ck_assert_int_eq(r1_session_create(&s, m, so), R1_ERR_UNSUPPORTED);
    ck_assert_ptr_null(s);
    ck_assert_int_eq(r1_session_opts_set_cache_type(so, "f32"), R1_OK);
    ck_assert_msg(r1_session_create(&s, m, so) == R1_OK, "%s", r1_last_error());
    ck_assert_int_eq(s->kv.lat_dtype, R1_DTYPE_F32);
    r1_session_destroy(s);
    ck_assert_int_eq(r1_session_opts_set_cache_type(so, "q8_0"), R1_OK);
    ck_assert_msg(r1_session_create(&s, m, so) == R1_OK, "%s", r1_last_error());
    ck_assert_int_eq(s->kv.lat_dtype, R1_DTYPE_Q8_0);
    r1_session_destroy(s);
    r1_model_destroy(m);
    r1_session_opts_destroy(so);
}
END_TEST

START_TEST(test_forward_dense_qwen2_matches_reference)
{
    ck_assert_int_eq(check_goldens("tiny-qwen2", NULL), 13);
}
END_TEST

START_TEST(test_forward_dense_llama_matches_reference)
{
    ck_assert_int_eq(check_goldens("tiny-llama", NULL), 13);
}
END_TEST

START_TEST(test_forward_dense_f32_and_f16_weights_match_reference)
{
    ck_assert_int_eq(check_goldens("tiny-qwen2", "f32"), 4);
    ck_assert_int_eq(check_goldens("tiny-qwen2", "f16"), 4);
    ck_assert_int_eq(check_goldens("tiny-llama", "f32"), 4);
    ck_assert_int_eq(check_goldens("tiny-llama", "f16"), 4);
}
END_TEST

/* dir (a mkdtemp template) becomes a copy of test/data/model whose config.json has `from`
 * replaced by `to` (same length); the weights and tokenizer are links. */
static const char *const variant_links[] = {"model.safetensors", "tokenizer.json",
                                            "tokenizer_config.json"};

static void variant_dir(const char *model, const char *from, const char *to, char *dir)
{
    char src[1024], path[1200];
    ck_assert_uint_eq(strlen(from), strlen(to));
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(src, sizeof src, "%s/%s", tu_data_dir(), model);
    for (int i = 0; i < 3; i++) {
        char target[1200];
        snprintf(target, sizeof target, "%s/%s", src, variant_links[i]);
        snprintf(path, sizeof path, "%s/%s", dir, variant_links[i]);
        ck_assert_int_eq(symlink(target, path), 0);
    }
    snprintf(path, sizeof path, "%s/config.json", src);
    char *cfg = tu_read_file(path, NULL);
    char *at = strstr(cfg, from);
    ck_assert_msg(at != NULL, "%s has no %s", path, from);
    memcpy(at, to, strlen(to));
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    fputs(cfg, f);
    fclose(f);
    free(cfg);
}

static void remove_variant_dir(const char *dir)
{
    char path[1200];
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, variant_links[i]);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    ck_assert_int_eq(rmdir(dir), 0);
}

/* tie_word_embeddings true: the embedding is the head, whatever lm_head.weight the file holds
 * (docs/model.md §7.1). The checkpoint directory is copied with its config.json saying so. */
START_TEST(test_forward_dense_tied_head_is_the_embedding)
{
    const char *models[2] = {"tiny-qwen2", "tiny-llama"};
    for (int k = 0; k < 2; k++) {
        char src[1024], dir[] = "/tmp/r1-dense-tied-XXXXXX", path[1200], out[1200];
        snprintf(src, sizeof src, "%s/%s", tu_data_dir(), models[k]);
        variant_dir(models[k], "\"tie_word_embeddings\": false", "\"tie_word_embeddings\": true ",
                    dir);
        snprintf(out, sizeof out, "%s/tied.r1m", dir);
        ck_assert_msg(r1_convert__run(dir, out, NULL, NULL) == R1_OK, "%s", r1_last_error());

        snprintf(path, sizeof path, "%s/goldens.json", src);
        char *text = tu_read_file(path, NULL);
        cJSON *root = cJSON_Parse(text);
        const cJSON *g, *tied = NULL;
        cJSON_ArrayForEach(
            g,
            cJSON_GetObjectItem(root, "goldens")) if (cJSON_IsTrue(cJSON_GetObjectItem(g, "tied")))
            tied = g;
        ck_assert_ptr_nonnull(tied);
        const cJSON *toks = cJSON_GetObjectItem(tied, "tokens");
        const int n = cJSON_GetArraySize(toks);
        int32_t ids[64];
        ck_assert_int_le(n, 64);
        for (int i = 0; i < n; i++)
            ids[i] = cJSON_GetArrayItem(toks, i)->valueint;
        snprintf(path, sizeof path, "%s/%s", src, cJSON_GetObjectItem(tied, "file")->valuestring);
        float *ref = (float *)tu_read_file(path, NULL);
        r1_cpu__set_act_q8(0);
        cache_type = NULL;
        r1_model *m = NULL;
        ck_assert_msg(r1_model_load(&m, out, NULL, NULL) == R1_OK, "%s", r1_last_error());
        for (int step = 1; step <= n; step += n - 1) {
            size_t vocab = 0;
            near_ties nt = {.values = cJSON_GetObjectItem(tied, "near_tie_values")};
            r1_forward_dense__set_kv_hook(pin_near_ties, &nt);
            float *got = logits_of(m, ids, n, step, &vocab);
            r1_forward_dense__set_kv_hook(NULL, NULL);
            ck_assert_int_eq(nt.n_unmatched, 0);
            const double d = rel_diff(got, ref, (size_t)n * vocab);
            printf("%s tied step %d: max|d|/max|ref| = %.2e\n", models[k], step, d);
            ck_assert_msg(d <= GOLDEN_BOUND, "%s tied: %.3e", models[k], d);
            free(got);
        }
        r1_model_destroy(m);
        free(ref);
        cJSON_Delete(root);
        free(text);
        unlink(out);
        remove_variant_dir(dir);
    }
}
END_TEST

/* What the schema does not allow is refused by name: by the converter (a tensor the
 * architecture does not have) and by the container (a shape the configuration does not give). */
START_TEST(test_forward_dense_schema_refuses_what_it_does_not_name)
{
    char dir[] = "/tmp/r1-dense-bad-XXXXXX", out[1200];
    /* tiny-qwen2's biases are no part of a Llama model */
    variant_dir("tiny-qwen2", "\"model_type\": \"qwen2\"", "\"model_type\": \"llama\"", dir);
    snprintf(out, sizeof out, "%s/bad.r1m", dir);
    ck_assert_int_eq(r1_convert__run(dir, out, NULL, NULL), R1_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "_proj.bias' is not part of a llama model"));
    remove_variant_dir(dir);
    /* 3 key/value heads need k_proj [96, 192]; the file's is [64, 192] */
    char dir2[] = "/tmp/r1-dense-bad-XXXXXX";
    variant_dir("tiny-qwen2", "\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3", dir2);
    snprintf(out, sizeof out, "%s/bad.r1m", dir2);
    /* The container's validation refuses it: when the converter checks its output, or at load. */
    r1_status st = r1_convert__run(dir2, out, NULL, NULL);
    if (st == R1_OK) {
        r1_model *m = NULL;
        st = r1_model_load(&m, out, NULL, NULL);
    }
    ck_assert_int_eq(st, R1_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "k_proj.weight' has 2 dims [64, 192]"));
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "needs [96, 192]"));
    unlink(out);
    remove_variant_dir(dir2);
}
END_TEST

/* ---- the decode attention op against a naive double-precision one ----------------------- */

static void naive_gqa(const r1_op_gqa_decode_params *p, const float *q, const float *k,
                      const float *v, float *out)
{
    const int64_t hd = p->head_dim, G = p->n_heads / p->n_kv_heads, W = p->n_kv_heads * hd;
    for (int64_t h = 0; h < p->n_heads; h++) {
        const int64_t g = h / G;
        double *s = malloc((size_t)p->n_keys * sizeof *s), mx = -INFINITY, sum = 0;
        for (int64_t n = 0; n < p->n_keys; n++) {
            double dot = 0;
            for (int64_t d = 0; d < hd; d++)
                dot += (double)q[h * hd + d] * k[n * W + g * hd + d];
            s[n] = dot * p->softmax_scale;
            mx = fmax(mx, s[n]);
        }
        for (int64_t n = 0; n < p->n_keys; n++)
            sum += (s[n] = exp(s[n] - mx));
        for (int64_t d = 0; d < hd; d++) {
            double acc = 0;
            for (int64_t n = 0; n < p->n_keys; n++)
                acc += s[n] * v[n * W + g * hd + d];
            out[h * hd + d] = (float)(acc / sum);
        }
        free(s);
    }
}

/* Caches of each type hold their own rounding of the same values; the op must compute exactly
 * the attention over those rounded values (every group size of the distills, 1 to 8). */
START_TEST(test_forward_dense_gqa_decode_op_matches_naive)
{
    const int64_t groups[] = {1, 3, 4, 5, 6, 7, 8};
    const int32_t types[] = {R1_DTYPE_F32, R1_DTYPE_F16, R1_DTYPE_Q8_0};
    unsigned seed = 7;
    for (size_t gi = 0; gi < sizeof groups / sizeof groups[0]; gi++)
        for (size_t ti = 0; ti < 3; ti++) {
            /* 37 keys: one block; 600: three, merged (cpu_gqa_attention.c) */
            const int64_t KVH = 2, H = KVH * groups[gi], hd = 64, N = ti == 1 ? 600 : 37;
            const int64_t W = KVH * hd;
            const r1_op_gqa_decode_params p = {.n_heads = H,
                                               .n_kv_heads = KVH,
                                               .head_dim = hd,
                                               .n_keys = N,
                                               .kv_dtype = types[ti],
                                               .softmax_scale = 1.0 / 8.0};
            float *q = malloc((size_t)(H * hd) * sizeof *q);
            float *kf = malloc((size_t)(N * W) * sizeof *kf);
            float *vf = malloc((size_t)(N * W) * sizeof *vf);
            const size_t rb = r1_dtype__row_bytes(types[ti], W);
            uint8_t *kc = malloc((size_t)N * rb), *vc = malloc((size_t)N * rb);
            for (int64_t i = 0; i < H * hd; i++)
                q[i] = (float)((int)(rand_r(&seed) % 2001) - 1000) / 400.0f;
            for (int64_t i = 0; i < N * W; i++) {
                kf[i] = (float)((int)(rand_r(&seed) % 2001) - 1000) / 700.0f;
                vf[i] = (float)((int)(rand_r(&seed) % 2001) - 1000) / 900.0f;
            }
            for (int64_t n = 0; n < N; n++) {
                float *src[2] = {kf + n * W, vf + n * W};
                uint8_t *dst[2] = {kc + (size_t)n * rb, vc + (size_t)n * rb};
                for (int j = 0; j < 2; j++) {
                    if (types[ti] == R1_DTYPE_F32)
                        memcpy(dst[j], src[j], rb);
                    else if (types[ti] == R1_DTYPE_F16)
                        for (int64_t i = 0; i < W; i++)
                            ((uint16_t *)(void *)dst[j])[i] = r1_fp16__from_f32(src[j][i]);
                    else
                        r1_quantize__q8_0(src[j], (r1_block_q8_0 *)(void *)dst[j], W);
                    /* the naive op reads what the cache holds */
                    r1_dtype__dequantize_row(types[ti], dst[j], NULL, src[j], W);
                }
            }
            float *got = malloc((size_t)(H * hd) * sizeof *got);
            float *want = malloc((size_t)(H * hd) * sizeof *want);
            ck_assert_int_eq(r1_cpu__gqa_decode(NULL, &p, q, kc, vc, got), R1_OK);
            naive_gqa(&p, q, kf, vf, want);
            for (int64_t i = 0; i < H * hd; i++)
                ck_assert_msg(fabs(got[i] - want[i]) <= 1e-6 * (1 + fabs(want[i])),
                              "G %lld %s [%lld]: %g vs %g", (long long)groups[gi],
                              r1_dtype__traits(types[ti])->name, (long long)i, got[i], want[i]);
            free(q), free(kf), free(vf), free(kc), free(vc), free(got), free(want);
        }
}
END_TEST

/* ---- config reader and schema ------------------------------------------------------------ */

START_TEST(test_forward_dense_reads_distill_configs)
{
    /* R1-Distill-Llama-8B's config.json fields (docs/model.md §7). */
    static const char llama8b[] =
        "{\"architectures\":[\"LlamaForCausalLM\"],\"attention_bias\":false,"
        "\"bos_token_id\":128000,\"eos_token_id\":128001,\"hidden_act\":\"silu\","
        "\"hidden_size\":4096,\"intermediate_size\":14336,\"max_position_embeddings\":131072,"
        "\"mlp_bias\":false,\"model_type\":\"llama\",\"num_attention_heads\":32,"
        "\"num_hidden_layers\":32,\"num_key_value_heads\":8,\"rms_norm_eps\":1e-05,"
        "\"rope_scaling\":{\"factor\":8.0,\"high_freq_factor\":4.0,\"low_freq_factor\":1.0,"
        "\"original_max_position_embeddings\":8192,\"rope_type\":\"llama3\"},"
        "\"rope_theta\":500000.0,\"tie_word_embeddings\":false,\"vocab_size\":128256}";
    r1_model_config cfg;
    ck_assert_int_eq(r1_model_config__from_json(&cfg, llama8b, sizeof llama8b - 1), R1_OK);
    ck_assert_int_eq(r1_model_config__validate(&cfg), R1_OK);
    ck_assert_int_eq(cfg.arch, R1_ARCH_LLAMA);
    ck_assert_int_eq(r1_model_config__is_dense(&cfg), 1);
    ck_assert_int_eq(cfg.head_dim, 128);
    ck_assert_int_eq(cfg.num_key_value_heads, 8);
    ck_assert_int_eq(cfg.rope_scaling, R1_ROPE_LLAMA3);
    ck_assert_int_eq(cfg.rope_original_max_position_embeddings, 8192);
    /* docs/model.md §7.3: pairs 0-28 kept, 29-34 blended, 35-63 divided by 8. */
    const double s_want[6] = {0.8036, 0.5928, 0.4212, 0.2813, 0.1673, 0.0745};
    for (int m = 0; m < 64; m++) {
        const double th = pow(500000.0, -2.0 * m / 128.0),
                     got = r1_forward_dense__inv_freq(&cfg, m);
        if (m <= 28)
            ck_assert(got == th);
        else if (m >= 35)
            ck_assert(fabs(got - th / 8) <= 1e-15 * th);
        else
            ck_assert_msg(fabs((got - th / 8) / (th - th / 8) - s_want[m - 29]) < 5e-5, "m %d", m);
    }
    /* R1-Distill-Qwen-7B: no head_dim, no rope_scaling, no attention_bias key. */
    static const char qwen7b[] =
        "{\"architectures\":[\"Qwen2ForCausalLM\"],\"bos_token_id\":151643,"
        "\"eos_token_id\":151643,\"hidden_act\":\"silu\",\"hidden_size\":3584,"
        "\"intermediate_size\":18944,\"max_position_embeddings\":131072,"
        "\"max_window_layers\":28,\"model_type\":\"qwen2\",\"num_attention_heads\":28,"
        "\"num_hidden_layers\":28,\"num_key_value_heads\":4,\"rms_norm_eps\":1e-06,"
        "\"rope_theta\":10000,\"sliding_window\":4096,\"tie_word_embeddings\":false,"
        "\"use_sliding_window\":false,\"vocab_size\":152064}";
    ck_assert_int_eq(r1_model_config__from_json(&cfg, qwen7b, sizeof qwen7b - 1), R1_OK);
    ck_assert_int_eq(r1_model_config__validate(&cfg), R1_OK);
    ck_assert_int_eq(cfg.arch, R1_ARCH_QWEN2);
    ck_assert_int_eq(cfg.head_dim, 128);
    ck_assert_int_eq(cfg.rope_scaling, R1_ROPE_NONE);
    ck_assert(r1_forward_dense__inv_freq(&cfg, 5) == pow(10000.0, -10.0 / 128.0));
    /* docs/model.md §7.5: Qwen-7B's f16 cache takes 2 KiB per layer and position; q8_0 34/32 of
     * half that */
    ck_assert_uint_eq(r1_gqa_cache__position_bytes(&cfg, -1), 28u * 2048u);
    ck_assert_uint_eq(r1_gqa_cache__position_bytes(&cfg, R1_DTYPE_F16), 28u * 2048u);
    ck_assert_uint_eq(r1_gqa_cache__position_bytes(&cfg, R1_DTYPE_Q8_0),
                      28u * 2u * 512u / 32u * 34u);
    /* What libr1 does not implement is refused by name, not misread. */
    static const char biased[] = "{\"model_type\":\"llama\",\"attention_bias\":true,"
                                 "\"hidden_size\":64,\"intermediate_size\":64,"
                                 "\"num_hidden_layers\":1,\"num_attention_heads\":2,"
                                 "\"vocab_size\":8,\"max_position_embeddings\":8,"
                                 "\"rms_norm_eps\":1e-5}";
    ck_assert_int_eq(r1_model_config__from_json(&cfg, biased, sizeof biased - 1),
                     R1_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "attention_bias"));
}
END_TEST

START_TEST(test_forward_dense_schema_names_shapes_and_types)
{
    r1_model_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.arch = R1_ARCH_QWEN2;
    cfg.hidden_size = 3584, cfg.num_attention_heads = 28, cfg.num_key_value_heads = 4;
    cfg.head_dim = 128, cfg.intermediate_size = 18944, cfg.vocab_size = 152064;
    const r1_schema *s = r1_model_schema__get(&cfg);
    ck_assert_ptr_nonnull(s);
    int64_t layer = 0;
    const r1_schema_tensor *t =
        r1_model_schema__match(s, "model.layers.27.self_attn.k_proj.bias", &layer);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(layer, 27);
    ck_assert_int_eq(t->role, R1_TROLE_BIAS);
    const int64_t kb[1] = {512}, kw[2] = {512, 3584}, bad[2] = {3584, 3584};
    ck_assert_int_eq(r1_model_schema__check(&cfg, t, "k_proj.bias", R1_DTYPE_BF16, 1, kb), R1_OK);
    ck_assert_int_eq(r1_model_schema__check(&cfg, t, "k_proj.bias", R1_DTYPE_Q8_0, 1, kb),
                     R1_ERR_FORMAT); /* vectors stay float */
    t = r1_model_schema__match(s, "model.layers.0.self_attn.k_proj.weight", &layer);
    ck_assert_int_eq(t->qclass, 2 /* R1_QCLASS_ATTN */);
    ck_assert_int_eq(r1_model_schema__check(&cfg, t, "k", R1_DTYPE_Q4_0, 2, kw), R1_OK);
    ck_assert_int_eq(r1_model_schema__check(&cfg, t, "k", R1_DTYPE_Q4_0, 2, bad), R1_ERR_FORMAT);
    ck_assert_ptr_null(
        r1_model_schema__match(s, "model.layers.0.mlp.experts.0.up_proj.weight", &layer));
    ck_assert_ptr_null(r1_model_schema__match(s, "model.layers.x.mlp.up_proj.weight", &layer));
    t = r1_model_schema__match(s, "lm_head.weight", &layer);
    ck_assert_int_eq(layer, -1);
    ck_assert_int_eq(r1_model_schema__required(&cfg, t), 1);
    cfg.tie_word_embeddings = 1;
    ck_assert_int_eq(r1_model_schema__required(&cfg, t), 0);
    /* Llama has no biases. */
    cfg.arch = R1_ARCH_LLAMA;
    ck_assert_ptr_null(r1_model_schema__match(r1_model_schema__get(&cfg),
                                              "model.layers.0.self_attn.q_proj.bias", &layer));
    /* The MoE architectures have their table too (test_model_schema.c checks it). */
    cfg.arch = R1_ARCH_DEEPSEEK_V3;
    ck_assert_ptr_nonnull(r1_model_schema__get(&cfg));
    cfg.arch = 99;
    ck_assert_ptr_null(r1_model_schema__get(&cfg));
}
END_TEST

/* The model reports its architecture, and the chat template gets the tokenizer's BOS. */
START_TEST(test_forward_dense_model_info_and_chat)
{
    r1_model *m = load("tiny-qwen2", "src");
    r1_model_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    ck_assert_int_eq(r1_model_get_info(m, &info), R1_OK);
    ck_assert_int_eq(info.architecture, R1_ARCH_QWEN2);
    ck_assert_str_eq(info.architecture_name, "qwen2");
    const int32_t role = R1_ROLE_USER;
    const char *msg = "hi";
    char buf[256];
    size_t len;
    ck_assert_int_eq(r1_chat_render(m, &role, &msg, 1, 1, buf, sizeof buf, &len), R1_OK);
    ck_assert_str_eq(buf, "<\357\275\234begin\342\226\201of\342\226\201sentence\357\275\234>"
                          "<\357\275\234User\357\275\234>hi<\357\275\234Assistant\357\275\234>"
                          "<think>\n");
    r1_model_destroy(m);
}
END_TEST

/* A tiny model's weights with a distill's real tokenizer (test/data/tokenizer/distill-*): the
 * chat template renders with that distill's BOS and EOS ids (docs/model.md §6.4). */
static r1_model *with_distill_tokenizer(const char *model, const char *tok, char *dir)
{
    char path[1200], src[1200];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    static const char *const files[2] = {"config.json", "model.safetensors"};
    for (int i = 0; i < 2; i++) {
        snprintf(src, sizeof src, "%s/%s/%s", tu_data_dir(), model, files[i]);
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        ck_assert_int_eq(symlink(src, path), 0);
    }
    snprintf(src, sizeof src, "%s/tokenizer/%s/tokenizer_config.json", tu_data_dir(), tok);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    ck_assert_int_eq(symlink(src, path), 0);
    snprintf(src, sizeof src, "%s/tokenizer/%s/tokenizer.json.zst", tu_data_dir(), tok);
    size_t zlen;
    char *z = tu_read_file(src, &zlen);
    /* The frame may not record its size: decompressed as a stream. */
    size_t n = 0, cap = 1 << 24;
    char *json = malloc(cap);
    ZSTD_DStream *zs = ZSTD_createDStream();
    ZSTD_inBuffer in = {z, zlen, 0};
    size_t rc = 1;
    while (rc != 0) {
        if (n == cap)
            ck_assert_ptr_nonnull(json = realloc(json, cap *= 2));
        ZSTD_outBuffer out = {json + n, cap - n, 0};
        rc = ZSTD_decompressStream(zs, &out, &in);
        ck_assert(!ZSTD_isError(rc));
        n += out.pos;
        ck_assert(rc == 0 || out.pos > 0 || in.pos < in.size);
    }
    ZSTD_freeDStream(zs);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(json, 1, n, f), n);
    fclose(f);
    free(json);
    free(z);
    snprintf(path, sizeof path, "%s/m.r1m", dir);
    ck_assert_msg(r1_convert__run(dir, path, NULL, NULL) == R1_OK, "%s", r1_last_error());
    r1_model *m = NULL;
    ck_assert_msg(r1_model_load(&m, path, NULL, NULL) == R1_OK, "%s", r1_last_error());
    static const char *const all[4] = {"config.json", "model.safetensors", "tokenizer_config.json",
                                       "tokenizer.json"};
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, all[i]);
        unlink(path);
    }
    return m;
}

static void remove_distill_dir(const char *dir)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/m.r1m", dir);
    unlink(path);
    ck_assert_int_eq(rmdir(dir), 0);
}

START_TEST(test_forward_dense_chat_uses_each_distills_bos_and_eos)
{
    static const struct {
        const char *model, *tok;
        int32_t bos, eos, user, assistant, think;
    } cases[2] = {{"tiny-qwen2", "distill-qwen", 151646, 151643, 151644, 151645, 151648},
                  {"tiny-llama", "distill-llama", 128000, 128001, -1, -1, -1}};
    for (int k = 0; k < 2; k++) {
        char dir[] = "/tmp/r1-dense-chat-XXXXXX";
        r1_model *m = with_distill_tokenizer(cases[k].model, cases[k].tok, dir);
        ck_assert_int_eq(r1_token_bos(m), cases[k].bos);
        ck_assert_int_eq(r1_token_eos(m), cases[k].eos);
        const int32_t roles[2] = {R1_ROLE_SYSTEM, R1_ROLE_USER};
        const char *msgs[2] = {"Be brief.", "What is 2+2?"};
        char buf[512];
        size_t len;
        ck_assert_int_eq(r1_chat_render(m, roles, msgs, 2, 1, buf, sizeof buf, &len), R1_OK);
        ck_assert_str_eq(buf, "<\357\275\234begin\342\226\201of\342\226\201sentence\357\275\234>"
                              "Be brief.<\357\275\234User\357\275\234>What is 2+2?"
                              "<\357\275\234Assistant\357\275\234><think>\n");
        int32_t ids[64];
        size_t n_ids = 0;
        ck_assert_int_eq(r1_tokenize(m, buf, len, R1_TOKENIZE_PARSE_SPECIAL, ids, 64, &n_ids),
                         R1_OK);
        ck_assert_int_eq(ids[0], cases[k].bos);
        if (cases[k].user >= 0) { /* the Qwen distills' ids; Llama's are looked up by string */
            ck_assert_int_eq(ids[4], cases[k].user);
            ck_assert_int_eq(ids[n_ids - 3], cases[k].assistant);
            ck_assert_int_eq(ids[n_ids - 2], cases[k].think);
        }
        ck_assert_int_eq(ids[n_ids - 2],
                         r1_tokenizer__token_to_id(r1_model__tokenizer(m), "<think>", 7));
        r1_model_destroy(m);
        remove_distill_dir(dir);
    }
}
END_TEST

/* ---- 8-bit activations (the CPU's kernels for Q8_0/Q4_0 weights) -------------------------- */

/* One act_q8 golden's activation near-tie blocks, as test_forward.c reads them
 * (test/ref/README.md): at the engine's own near-ties the reference's integers are taken. */
typedef struct act_ties {
    int n;
    double tau;
    uint32_t *mask;
    int8_t (*q)[R1_QBLOCK];
    long near, pinned, unmatched; /* the hook runs on the calling thread only */
} act_ties;

/* r1_cpu_qx_hook: as test_forward.c's pin_near_ties. */
static void pin_act_ties(const float *x, r1_cpu_qx_block *out, int64_t n, void *user)
{
    act_ties *nt = user;
    for (int64_t b = 0; b < n / R1_QBLOCK; b++) {
        const float *xb = x + b * R1_QBLOCK;
        const float inv = out[b].d != 0.0f ? 1.0f / out[b].d : 0.0f;
        uint32_t near = 0;
        for (int j = 0; j < R1_QBLOCK; j++) {
            const double a = fabs((double)(xb[j] * inv));
            if (fabs(a - floor(a) - 0.5) < nt->tau)
                near |= UINT32_C(1) << j;
        }
        if (near == 0)
            continue;
        nt->near += __builtin_popcount(near);
        int found = -1;
        for (int i = 0; i < nt->n && found < 0; i++) {
            const uint32_t both = near & nt->mask[i];
            int j = 0;
            for (; j < R1_QBLOCK; j++) {
                const int diff = out[b].q[j] - nt->q[i][j];
                if ((both >> j & 1) ? abs(diff) > 1 : diff != 0)
                    break;
            }
            if (j == R1_QBLOCK)
                found = i;
        }
        if (found < 0) {
            nt->unmatched++;
            continue;
        }
        for (int j = 0; j < R1_QBLOCK; j++)
            if (out[b].q[j] != nt->q[found][j]) {
                out[b].sum += nt->q[found][j] - out[b].q[j];
                out[b].q[j] = nt->q[found][j];
                nt->pinned++;
            }
    }
}

/* The q8_0/q4_0 goldens of the reference's act_q8 mode: prefilled, decoded and fed in pieces
 * with the CPU's 8-bit activations on, both near-tie kinds pinned (activations and the f16
 * cache), against the float bound. */
START_TEST(test_forward_dense_8bit_activations_match_reference)
{
    const char *models[2] = {"tiny-qwen2", "tiny-llama"};
    long near_total = 0;
    for (int k = 0; k < 2; k++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s/goldens_actq8.json", tu_data_dir(), models[k]);
        char *text = tu_read_file(path, NULL);
        cJSON *root = cJSON_Parse(text);
        ck_assert_ptr_nonnull(root);
        const double tau = cJSON_GetObjectItem(root, "near_tie_tau")->valuedouble;
        ck_assert(tau > 0 && tau < 0.01);
        r1_cpu__set_act_q8(1);
        cache_type = NULL;
        int checked = 0;
        const cJSON *g;
        cJSON_ArrayForEach(g, cJSON_GetObjectItem(root, "goldens"))
        {
            const char *name = cJSON_GetObjectItem(g, "name")->valuestring;
            const cJSON *blocks = cJSON_GetObjectItem(g, "near_tie_blocks");
            act_ties at = {.n = cJSON_GetArraySize(blocks), .tau = tau};
            at.mask = calloc((size_t)at.n + 1, sizeof *at.mask);
            at.q = calloc((size_t)at.n + 1, sizeof *at.q);
            for (int i = 0; i < at.n; i++) {
                const cJSON *row = cJSON_GetArrayItem(blocks, i);
                at.mask[i] = (uint32_t)cJSON_GetArrayItem(row, 0)->valuedouble;
                for (int j = 0; j < R1_QBLOCK; j++)
                    at.q[i][j] = (int8_t)cJSON_GetArrayItem(row, 1 + j)->valueint;
            }
            const cJSON *toks = cJSON_GetObjectItem(g, "tokens");
            const int n = cJSON_GetArraySize(toks);
            int32_t ids[16];
            ck_assert_int_le(n, 16);
            for (int i = 0; i < n; i++)
                ids[i] = cJSON_GetArrayItem(toks, i)->valueint;
            snprintf(path, sizeof path, "%s/%s/%s", tu_data_dir(), models[k],
                     cJSON_GetObjectItem(g, "file")->valuestring);
            float *ref = (float *)tu_read_file(path, NULL);
            r1_model *m = load(models[k], cJSON_GetObjectItem(g, "weights_variant")->valuestring);
            for (int step = n; step >= 1; step = step > 1 ? 1 : 0) {
                at.near = at.pinned = at.unmatched = 0;
                near_ties kvt = {.values = cJSON_GetObjectItem(g, "near_tie_values")};
                r1_cpu__set_qx_hook(pin_act_ties, &at);
                r1_forward_dense__set_kv_hook(pin_near_ties, &kvt);
                size_t vocab = 0;
                float *got = logits_of(m, ids, n, step, &vocab);
                r1_forward_dense__set_kv_hook(NULL, NULL);
                r1_cpu__set_qx_hook(NULL, NULL);
                const double d = rel_diff(got, ref, (size_t)n * vocab);
                printf("%s step %d: max|d|/max|ref| = %.2e (activation near-ties %ld, pinned "
                       "%ld; cache %d)\n",
                       name, step, d, at.near, at.pinned, kvt.n_changed);
                ck_assert_int_eq(at.unmatched, 0);
                ck_assert_int_eq(kvt.n_unmatched, 0);
                ck_assert_int_le(at.pinned, 8);
                ck_assert_msg(d <= GOLDEN_BOUND, "%s step %d: %.3e > %.1e", name, step, d,
                              GOLDEN_BOUND);
                near_total += at.near;
                free(got);
            }
            r1_model_destroy(m);
            free(ref);
            free(at.mask);
            free(at.q);
            checked++;
        }
        ck_assert_int_eq(checked, 4);
        cJSON_Delete(root);
        free(text);
    }
    r1_cpu__set_act_q8(0);
    /* the activation near-tie matching did run */
    ck_assert_int_gt(near_total, 5);
}
END_TEST

static Suite *forward_dense_suite(void)
{
    Suite *s = suite_create("forward_dense");
    TCase *g = tcase_create("goldens");
    tcase_set_timeout(g, 600);
    tcase_add_test(g, test_forward_dense_qwen2_matches_reference);
    tcase_add_test(g, test_forward_dense_llama_matches_reference);
    tcase_add_test(g, test_forward_dense_f32_and_f16_weights_match_reference);
    tcase_add_test(g, test_forward_dense_tied_head_is_the_embedding);
    tcase_add_test(g, test_forward_dense_8bit_activations_match_reference);
    suite_add_tcase(s, g);
    TCase *o = tcase_create("op");
    tcase_add_test(o, test_forward_dense_gqa_decode_op_matches_naive);
    suite_add_tcase(s, o);
    TCase *c = tcase_create("schema");
    tcase_add_test(c, test_forward_dense_reads_distill_configs);
    tcase_add_test(c, test_forward_dense_cache_type_is_a_session_option);
    tcase_add_test(c, test_forward_dense_schema_names_shapes_and_types);
    tcase_add_test(c, test_forward_dense_model_info_and_chat);
    tcase_add_test(c, test_forward_dense_schema_refuses_what_it_does_not_name);
    tcase_add_test(c, test_forward_dense_chat_uses_each_distills_bos_and_eos);
    suite_add_tcase(s, c);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(forward_dense_suite());
    srunner_run_all(sr, CK_NORMAL);
    const int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
