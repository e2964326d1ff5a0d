/* test_model_schema.c: the architecture schemas (lib/model/model_schema.c) of DeepSeek-V3, V2,
 * Qwen2 and Llama-3 against the tiny checkpoints and their conversions: every tensor either side
 * holds is in the table at its layer with the table's shape, every tensor the table asks for is
 * there, and a missing or misshapen tensor is refused naming it. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checksum.h"
#include "container.h"
#include "dtype.h"
#include "error.h"
#include "file_testutil.h"
#include "le.h"
#include "model_config.h"
#include "model_schema.h"
#include "r1m_testutil.h"
#include "safetensors.h"

static const char *const models[] = {"tiny-v3", "tiny-v2lite", "tiny-qwen2", "tiny-llama"};
static const char *const variants[] = {"src", "q8_0", "q4_0", "f32", "f16"};
enum { N_MODELS = 4, N_VARIANTS = 5 };

static void model_path(char *buf, size_t cap, const char *model, const char *variant)
{
    snprintf(buf, cap, "%s/%s-%s.r1m", tu_models_dir(), model, variant);
}

static r1_container *open_model(const char *model, const char *variant)
{
    char path[1024];
    model_path(path, sizeof path, model, variant);
    r1_container *c = NULL;
    ck_assert_msg(r1_container__open(&c, path) == R1_OK, "%s: %s", path, r1_error__message());
    return c;
}

/* Written out here, not taken from the library under test: docs/model.md §5.3.2. */
static int64_t blocks128(int64_t n)
{
    return (n + 127) / 128;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* The rules every table keeps, so that the readers can rely on them. */
static void check_table(const r1_model_config *cfg)
{
    const r1_schema *s = r1_model_schema__get(cfg);
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(s->arch, cfg->arch);
    int n_global[R1_SLOT_COUNT] = {0}, n_part[3] = {0};
    for (size_t i = 0; i < s->n_tensors; i++) {
        const r1_schema_tensor *e = &s->tensors[i];
        const int vector = e->cols == R1_SDIM_NONE;
        ck_assert_msg(vector == (e->layout == R1_SLAYOUT_F32_COPY), "%s: layout", e->name);
        ck_assert_msg(!vector || e->role == R1_TROLE_NORM || e->role == R1_TROLE_BIAS,
                      "%s: a vector is a norm or a bias", e->name);
        ck_assert_msg(!vector || e->qclass == -1, "%s: vectors are never quantised", e->name);
        ck_assert_msg(!vector || (e->dtypes & ~R1_SDT_FLOAT) == 0, "%s: vectors stay float",
                      e->name);
        ck_assert_msg((e->role == R1_TROLE_EXPERT) == (strstr(e->name, "{e}") != NULL), "%s",
                      e->name);
        if (e->per_layer == R1_SLAYERS_GLOBAL) {
            ck_assert_int_ge(e->slot, R1_SLOT_EMBED);
            ck_assert_int_lt(e->slot, R1_SLOT_COUNT);
            n_global[e->slot]++;
        }
        if (e->role == R1_TROLE_EXPERT) {
            ck_assert_int_ne(e->per_layer, R1_SLAYERS_GLOBAL);
            ck_assert_int_ge(e->blob_part, 0);
            ck_assert_int_le(e->blob_part, 2);
            n_part[e->blob_part]++;
        }
        if (e->copy_of != NULL) { /* a copy has the shape of what it copies */
            int64_t layer;
            const r1_schema_tensor *m = r1_model_schema__match(s, e->copy_of, &layer);
            ck_assert_ptr_nonnull(m);
            ck_assert_int_eq(m->per_layer, R1_SLAYERS_GLOBAL);
            ck_assert_int_eq(m->rows, e->rows);
            ck_assert_int_eq(m->cols, e->cols);
        }
        /* Names round-trip through the matcher at every layer the entry is in. */
        const int64_t n_layers = e->per_layer ? r1_model_schema__n_layers(cfg, e) : 1;
        for (int64_t l = 0; l < n_layers; l++) {
            char name[256];
            int64_t layer, expert;
            if (e->role == R1_TROLE_EXPERT)
                r1_model_schema__expert_name(e, l, 7, name, sizeof name);
            else
                r1_model_schema__name(e, l, name, sizeof name);
            ck_assert_ptr_eq(r1_model_schema__find(s, name, &layer, &expert), e);
            ck_assert_int_eq(layer, e->per_layer ? l : -1);
            ck_assert_int_eq(expert, e->role == R1_TROLE_EXPERT ? 7 : -1);
        }
    }
    ck_assert_int_eq(n_global[R1_SLOT_EMBED], 1);
    ck_assert_int_eq(n_global[R1_SLOT_FINAL_NORM], 1);
    ck_assert_int_eq(n_global[R1_SLOT_HEAD], 1);
    for (int k = 0; k < 3; k++)
        ck_assert_int_eq(n_part[k], r1_model_config__is_dense(cfg) ? 0 : 1);
    /* No layer has two tensors for one slot of its layer block. */
    for (int64_t l = 0; l < r1_model_config__n_layers_stored(cfg); l++)
        for (size_t i = 0; i < s->n_tensors; i++)
            for (size_t j = i + 1; j < s->n_tensors; j++) {
                const r1_schema_tensor *a = &s->tensors[i], *b = &s->tensors[j];
                if (!a->per_layer || !b->per_layer || a->slot < 0 || a->slot != b->slot)
                    continue;
                ck_assert_msg(!r1_model_schema__at(cfg, a, l) || !r1_model_schema__at(cfg, b, l),
                              "%s and %s share a slot at layer %lld", a->name, b->name,
                              (long long)l);
            }
}

/* Every tensor of the source checkpoint is in the table at its layer in the table's shape (a
 * scale belongs to an FP8 weight that is), and every tensor the table asks for is there. */
static void check_source(const char *model, const r1_model_config *cfg)
{
    const r1_schema *s = r1_model_schema__get(cfg);
    char dir[1024], name[512];
    snprintf(dir, sizeof dir, "%s/%s", tu_data_dir(), model);
    r1_safetensors *st = NULL;
    ck_assert_msg(r1_safetensors__open_dir(&st, dir) == R1_OK, "%s", r1_error__message());
    int64_t n_experts = 0, n_scales = 0;
    for (int32_t i = 0; i < st->n_tensors; i++) {
        const r1_st_tensor *t = &st->tensors[i];
        if (ends_with(t->name, R1_SCHEMA_SCALE_SUFFIX)) {
            snprintf(name, sizeof name, "%.*s", (int)(strlen(t->name) - 10), t->name);
            const r1_st_tensor *w = r1_safetensors__find(st, name);
            ck_assert_msg(w != NULL && w->dtype == R1_DTYPE_FP8_E4M3, "%s", t->name);
            ck_assert_int_eq(t->n_dims, 2);
            ck_assert_int_eq(t->shape[0], blocks128(w->shape[0]));
            ck_assert_int_eq(t->shape[1], blocks128(w->shape[1]));
            n_scales++;
            continue;
        }
        int64_t layer, expert;
        const r1_schema_tensor *e = r1_model_schema__find(s, t->name, &layer, &expert);
        ck_assert_msg(e != NULL, "%s: '%s' is not in the schema", model, t->name);
        ck_assert_msg(r1_model_schema__at(cfg, e, layer), "%s: '%s' not at its layer", model,
                      t->name);
        ck_assert_msg(r1_model_schema__check(cfg, e, t->name, t->dtype, t->n_dims, t->shape) ==
                          R1_OK,
                      "%s", r1_error__message());
        if (e->role == R1_TROLE_EXPERT) {
            ck_assert(expert >= 0 && expert < cfg->n_routed_experts);
            n_experts++;
        }
    }
    /* ... and the other way round */
    int64_t want_experts = 0;
    for (size_t i = 0; i < s->n_tensors; i++) {
        const r1_schema_tensor *e = &s->tensors[i];
        const int64_t n_layers = e->per_layer ? r1_model_schema__n_layers(cfg, e) : 1;
        for (int64_t l = 0; l < n_layers; l++) {
            if (!r1_model_schema__at(cfg, e, l))
                continue;
            if (e->role == R1_TROLE_EXPERT) {
                want_experts += cfg->n_routed_experts;
                continue;
            }
            r1_model_schema__name(e, l, name, sizeof name);
            ck_assert_msg(r1_safetensors__find(st, name) != NULL ||
                              !r1_model_schema__required(cfg, e),
                          "%s lacks '%s'", model, name);
        }
    }
    ck_assert_int_eq(n_experts, want_experts);
    if (strcmp(model, "tiny-v3") == 0) /* the FP8 checkpoint */
        ck_assert_int_gt(n_scales, 0);
    r1_safetensors__close(st);
}

/* Every tensor and expert blob of a converted file is in the table, in its shape. */
static void check_file(r1_container *c, const char *what)
{
    const r1_model_config *cfg = r1_container__config(c);
    const r1_schema *s = r1_model_schema__get(cfg);
    char name[1100];
    for (int32_t i = 0; i < r1_container__n_tensors(c); i++) {
        const char *np;
        size_t nl;
        r1_tensor t;
        ck_assert_int_eq(r1_container__tensor_at(c, i, &np, &nl, &t), R1_OK);
        snprintf(name, sizeof name, "%.*s", (int)nl, np);
        if (ends_with(name, R1_SCHEMA_SCALE_SUFFIX)) {
            r1_tensor w;
            name[strlen(name) - 10] = 0;
            ck_assert_int_eq(r1_container__tensor(c, name, &w), R1_OK);
            ck_assert_int_eq(w.dtype, R1_DTYPE_FP8_E4M3);
            continue;
        }
        int64_t layer, expert;
        const r1_schema_tensor *e = r1_model_schema__find(s, name, &layer, &expert);
        ck_assert_msg(e != NULL && e->role != R1_TROLE_EXPERT, "%s: '%s'", what, name);
        ck_assert_msg(r1_model_schema__at(cfg, e, layer), "%s: '%s'", what, name);
        ck_assert_msg(r1_model_schema__check(cfg, e, name, t.dtype, t.n_dims, t.shape) == R1_OK,
                      "%s: %s", what, r1_error__message());
    }
    const r1_schema_tensor *gate = r1_model_schema__expert(s, 0);
    const r1_schema_tensor *down = r1_model_schema__expert(s, 2);
    int64_t want_blobs = 0;
    for (int64_t l = 0; gate && l < r1_model_schema__n_layers(cfg, gate); l++)
        want_blobs += r1_model_schema__at(cfg, gate, l) ? cfg->n_routed_experts : 0;
    ck_assert_int_eq(r1_container__n_expert_blobs(c), want_blobs);
    for (int32_t i = 0; i < r1_container__n_expert_blobs(c); i++) {
        const r1_expert_blob *b = r1_container__expert_at(c, i);
        ck_assert(r1_model_schema__at(cfg, gate, b->layer));
        ck_assert_int_eq(b->inter, r1_model_schema__dim(cfg, gate->rows));
        ck_assert_int_eq(b->hidden, r1_model_schema__dim(cfg, gate->cols));
        ck_assert_int_eq(b->hidden, r1_model_schema__dim(cfg, down->rows));
        ck_assert_int_eq(b->inter, r1_model_schema__dim(cfg, down->cols));
        ck_assert_int_eq(b->data_bytes[0],
                         (uint64_t)b->inter * r1_dtype__row_bytes(b->dtype[0], b->hidden));
        if (b->dtype[2] == R1_DTYPE_FP8_E4M3)
            ck_assert_uint_eq(b->scale_bytes[2],
                              (uint64_t)(blocks128(b->hidden) * blocks128(b->inter) * 4));
    }
}

START_TEST(test_model_schema_tables_and_files_agree)
{
    const char *model = models[_i];
    r1_container *c = open_model(model, "src");
    const r1_model_config *cfg = r1_container__config(c);
    check_table(cfg);
    check_source(model, cfg);
    r1_container__close(c);
    for (int v = 0; v < N_VARIANTS; v++) {
        char what[256];
        snprintf(what, sizeof what, "%s-%s", model, variants[v]);
        c = open_model(model, variants[v]);
        check_file(c, what);
        r1_container__close(c);
    }
}
END_TEST

/* V3 and V2-Lite differ only in config, which the when column reads. */
START_TEST(test_model_schema_moe_differences_are_data)
{
    r1_container *v3 = open_model("tiny-v3", "src"), *v2 = open_model("tiny-v2lite", "src");
    const r1_model_config *c3 = r1_container__config(v3), *c2 = r1_container__config(v2);
    const r1_schema *s = r1_model_schema__get(c3);
    int64_t layer, expert;
    const r1_schema_tensor *q_a =
        r1_model_schema__match(s, "model.layers.0.self_attn.q_a_proj.weight", &layer);
    const r1_schema_tensor *q =
        r1_model_schema__match(s, "model.layers.0.self_attn.q_proj.weight", &layer);
    const r1_schema_tensor *bias =
        r1_model_schema__match(s, "model.layers.1.mlp.gate.e_score_correction_bias", &layer);
    const r1_schema_tensor *dense =
        r1_model_schema__match(s, "model.layers.0.mlp.up_proj.weight", &layer);
    const r1_schema_tensor *enorm =
        r1_model_schema__match(s, "model.layers.3.enorm.weight", &layer);
    ck_assert(q_a && q && bias && dense && enorm);
    ck_assert(r1_model_schema__at(c3, q_a, 0) && !r1_model_schema__at(c3, q, 0)); /* q LoRA */
    ck_assert(!r1_model_schema__at(c2, q_a, 0) && r1_model_schema__at(c2, q, 0));
    ck_assert(r1_model_schema__at(c3, bias, 1) && !r1_model_schema__at(c2, bias, 1));
    ck_assert(r1_model_schema__at(c3, dense, 0) && !r1_model_schema__at(c3, dense, 1));
    /* The MTP layer (index num_hidden_layers) is stored: its own tensors and a MoE block. */
    ck_assert_int_eq(c3->num_hidden_layers, 3);
    ck_assert(r1_model_schema__at(c3, enorm, 3) && !r1_model_schema__at(c3, enorm, 2));
    ck_assert(!r1_model_schema__at(c3, enorm, 4));
    ck_assert(r1_model_schema__at(c3, bias, 3));
    const r1_schema_tensor *up =
        r1_model_schema__find(s, "model.layers.2.mlp.experts.15.up_proj.weight", &layer, &expert);
    ck_assert_ptr_eq(up, r1_model_schema__expert(s, 1));
    ck_assert_int_eq(layer, 2);
    ck_assert_int_eq(expert, 15);
    /* An expert is not a plain tensor, and a scale is no tensor of the table. */
    ck_assert_ptr_null(
        r1_model_schema__match(s, "model.layers.2.mlp.experts.15.up_proj.weight", &layer));
    ck_assert_ptr_null(r1_model_schema__find(
        s, "model.layers.2.mlp.experts.15.up_proj.weight_scale_inv", &layer, &expert));
    /* The checks name the tensor and what the config needs. */
    const r1_schema_tensor *router =
        r1_model_schema__match(s, "model.layers.1.mlp.gate.weight", &layer);
    const int64_t good[2] = {16, 160}, bad[2] = {16, 161};
    ck_assert_int_eq(r1_model_schema__check(c3, router, "model.layers.1.mlp.gate.weight",
                                            R1_DTYPE_BF16, 2, good),
                     R1_OK);
    ck_assert_int_eq(
        r1_model_schema__check(c3, router, "model.layers.1.mlp.gate.weight", R1_DTYPE_BF16, 2, bad),
        R1_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(r1_error__message(), "'model.layers.1.mlp.gate.weight'"));
    ck_assert_ptr_nonnull(strstr(r1_error__message(), "[16, 160]"));
    r1_container__close(v3);
    r1_container__close(v2);
}
END_TEST

/* ---- crafted files: one tensor renamed or reshaped, every checksum resealed ---------------- */

static char *tmp;

static void setup(void)
{
    tmp = tu_mkdtemp();
    ck_assert_ptr_nonnull(tmp);
}

static void teardown(void)
{
    tu_rmtree(tmp);
    free(tmp);
}

/* The offset of the index record of tensor name in file f (0 when absent). */
static size_t find_record(const uint8_t *f, const char *name)
{
    size_t at = (size_t)r1_le__u64(f + R1M_H_INDEX_OFF) + 8;
    uint32_t n = r1_le__u32(f + R1M_H_N_TENSORS);
    for (uint32_t i = 0; i < n; i++) {
        uint16_t nl = r1_le__u16(f + at);
        size_t name_at = at + 8 + 8 * (size_t)f[at + 3] + 32;
        if (nl == strlen(name) && memcmp(f + name_at, name, nl) == 0)
            return at;
        at = name_at + nl;
    }
    return 0;
}

static void reseal(uint8_t *f)
{
    uint64_t io = r1_le__u64(f + R1M_H_INDEX_OFF), is = r1_le__u64(f + R1M_H_INDEX_SIZE);
    r1_le__put64(f + R1M_H_INDEX_SUM, r1_checksum__xxh64(f + io, (size_t)is));
    r1_le__put64(f + R1M_H_SUM, r1_checksum__xxh64(f, R1M_H_SUM));
}

enum { RENAME = 0, SWAP_DIMS = 1, BLOB_INTER = 2 };

/* Opens a copy of model-variant with tensor name renamed (its last letter changed), its two
 * dimensions swapped (the same bytes), or (BLOB_INTER) the first expert blob's inter doubled;
 * the open must fail with R1_ERR_FORMAT and a message holding each of needles. */
static void expect_refused(const char *model, const char *variant, int how, const char *name,
                           const char *needle1, const char *needle2)
{
    char path[1024], bad[4200];
    model_path(path, sizeof path, model, variant);
    size_t n;
    uint8_t *f = tu_read(path, &n);
    ck_assert_ptr_nonnull(f);
    if (how == BLOB_INTER) {
        size_t at = (size_t)r1_le__u64(f + R1M_H_INDEX_OFF) + 8;
        for (uint32_t i = 0; i < r1_le__u32(f + R1M_H_N_TENSORS); i++)
            at += 8 + 8 * (size_t)f[at + 3] + 32 + r1_le__u16(f + at);
        r1_le__put32(f + at + 48, 2 * r1_le__u32(f + at + 48));
    } else {
        size_t at = find_record(f, name);
        ck_assert_msg(at != 0, "%s has no '%s'", path, name);
        if (how == RENAME) {
            f[at + 8 + 8 * (size_t)f[at + 3] + 32 + strlen(name) - 1] ^= 0x20;
        } else {
            ck_assert_int_eq(f[at + 3], 2);
            uint64_t d0 = r1_le__u64(f + at + 8), d1 = r1_le__u64(f + at + 16);
            r1_le__put64(f + at + 8, d1);
            r1_le__put64(f + at + 16, d0);
        }
    }
    reseal(f);
    snprintf(bad, sizeof bad, "%s/bad.r1m", tmp);
    ck_assert_int_eq(tu_write(bad, f, n), 0);
    free(f);
    r1_container *c = NULL;
    r1_status st = r1_container__open(&c, bad);
    ck_assert_msg(st == R1_ERR_FORMAT, "%s-%s %s: status %d (%s)", model, variant, name, st,
                  st == R1_OK ? "opened" : r1_error__message());
    ck_assert_ptr_null(c);
    ck_assert_msg(strstr(r1_error__message(), needle1) && strstr(r1_error__message(), needle2),
                  "'%s' lacks '%s' or '%s'", r1_error__message(), needle1, needle2);
    unlink(bad);
}

START_TEST(test_model_schema_missing_tensor_named)
{
    static const struct {
        const char *model, *name;
    } cases[] = {
        {"tiny-v3", "model.norm.weight"},
        {"tiny-v3", "lm_head.weight"},
        {"tiny-v3", "model.layers.0.self_attn.q_a_layernorm.weight"},    /* q LoRA */
        {"tiny-v3", "model.layers.0.mlp.down_proj.weight"},              /* dense-first layer */
        {"tiny-v3", "model.layers.1.mlp.gate.e_score_correction_bias"},  /* router bias */
        {"tiny-v3", "model.layers.2.mlp.shared_experts.up_proj.weight"}, /* shared experts */
        {"tiny-v3", "model.layers.3.enorm.weight"},                      /* the MTP layer */
        {"tiny-v3", "model.layers.3.self_attn.kv_b_proj.weight"},        /* MTP layer's block */
        {"tiny-v2lite", "model.layers.0.self_attn.q_proj.weight"},       /* no q LoRA */
        {"tiny-v2lite", "model.layers.1.mlp.gate.weight"},               /* router */
        {"tiny-qwen2", "model.layers.1.self_attn.v_proj.bias"},
        {"tiny-llama", "model.layers.0.post_attention_layernorm.weight"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char needle[300];
        snprintf(needle, sizeof needle, "'%s' is missing", cases[i].name);
        expect_refused(cases[i].model, "src", RENAME, cases[i].name, "required tensor", needle);
    }
}
END_TEST

START_TEST(test_model_schema_wrong_shape_named)
{
    /* o_proj [160, 128] as [128, 160]: the same q8_0 bytes, a shape the config contradicts */
    expect_refused("tiny-v3", "q8_0", SWAP_DIMS, "model.layers.1.self_attn.o_proj.weight",
                   "'model.layers.1.self_attn.o_proj.weight'", "the config needs [160, 128]");
    expect_refused("tiny-v2lite", "src", SWAP_DIMS, "model.layers.1.mlp.gate.weight",
                   "'model.layers.1.mlp.gate.weight'", "the config needs [8, 64]");
    expect_refused("tiny-qwen2", "src", SWAP_DIMS, "model.layers.0.mlp.down_proj.weight",
                   "'model.layers.0.mlp.down_proj.weight'", "the config needs [192, 224]");
    expect_refused("tiny-llama", "f32", SWAP_DIMS, "model.layers.1.mlp.up_proj.weight",
                   "'model.layers.1.mlp.up_proj.weight'", "the config needs");
    /* an expert blob whose shape is not the schema's expert projections' */
    expect_refused("tiny-v3", "src", BLOB_INTER, "", "has shape (64, 160)",
                   "config says (32, 160)");
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("model_schema");
    TCase *tc = tcase_create("schema");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_model_schema_tables_and_files_agree, 0, N_MODELS);
    tcase_add_test(tc, test_model_schema_moe_differences_are_data);
    suite_add_tcase(s, tc);
    TCase *bad = tcase_create("refused");
    tcase_add_checked_fixture(bad, setup, teardown);
    tcase_add_test(bad, test_model_schema_missing_tensor_named);
    tcase_add_test(bad, test_model_schema_wrong_shape_named);
    suite_add_tcase(s, bad);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
