/* test_budget.c: the auto expert budget (MemAvailable minus dense, KV and headroom) and the
 * planner r1_model_plan, on the tiny test models. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "budget.h"
#include "container.h"
#include "error.h"
#include "file_testutil.h"
#include "r1.h"

static char v3_path[4096];
static r1_container *c;
static const r1_model_config *g;

static void setup(void)
{
    snprintf(v3_path, sizeof v3_path, "%s/tiny-v3-q8_0.r1m", tu_models_dir());
    ck_assert_int_eq(r1_container__open(&c, v3_path), R1_OK);
    g = r1_container__config(c);
}

static void teardown(void)
{
    r1_budget__set_mem_available(0);
    r1_container__close(c);
}

/* The headroom, written out independently of the library: 512 MiB plus 5 % of what is there. */
static uint64_t headroom(uint64_t available)
{
    return (UINT64_C(512) << 20) + available / 100 * 5;
}

/* Memory that leaves exactly `left` bytes for experts with the default context. */
static uint64_t available_for(uint64_t left)
{
    uint64_t kv = (uint64_t)g->num_hidden_layers *
                  (uint64_t)(g->kv_lora_rank + g->qk_rope_head_dim) * 4u *
                  (uint64_t)(g->max_position_embeddings < 4096 ? g->max_position_embeddings : 4096);
    uint64_t fixed = r1_container__dense_bytes(c) + kv + (UINT64_C(512) << 20) + left;
    /* a = fixed + a / 100 * 5: search upward from fixed / 0.95 */
    uint64_t a = (uint64_t)((double)fixed / 0.95) - 200;
    while (a - headroom(a) - r1_container__dense_bytes(c) - kv != left)
        a++;
    return a;
}

START_TEST(test_budget_kv_per_token)
{
    /* MLA keeps one latent of kv_lora_rank + qk_rope_head_dim floats per layer and position */
    ck_assert_uint_eq(r1_budget__kv_bytes_per_token(g),
                      (uint64_t)g->num_hidden_layers * (64 + 16) * 4);
    ck_assert_int_eq(r1_budget__default_context(g), 4096);
}
END_TEST

START_TEST(test_budget_arithmetic)
{
    uint64_t all = r1_container__expert_raw_bytes(c);
    uint64_t min = (uint64_t)g->num_experts_per_tok * r1_container__max_expert_bytes(c);
    uint64_t left = min + (all - min) / 3;
    uint64_t avail = available_for(left);
    r1_budget_parts p;
    ck_assert_int_eq(r1_budget__auto(c, avail, 0, &p), R1_OK);
    ck_assert_uint_eq(p.available, avail);
    ck_assert_uint_eq(p.dense, r1_container__dense_bytes(c));
    ck_assert_int_eq(p.context, 4096);
    ck_assert_uint_eq(p.kv, r1_budget__kv_bytes_per_token(g) * 4096);
    ck_assert_uint_eq(p.headroom, headroom(avail));
    ck_assert_uint_eq(p.minimum, min);
    ck_assert_uint_eq(p.all_experts, all);
    ck_assert_uint_eq(p.left, left);
    ck_assert_uint_eq(p.budget, left);
    /* a longer context takes its KV cache out of the experts' share */
    uint64_t kv1000 = r1_budget__kv_bytes_per_token(g) * 1000;
    ck_assert_int_eq(r1_budget__auto(c, available_for(left + kv1000), 5096, &p), R1_OK);
    ck_assert_int_eq(p.context, 5096);
    ck_assert_uint_eq(p.kv, r1_budget__kv_bytes_per_token(g) * 5096);
    ck_assert_uint_eq(p.budget, left);
}
END_TEST

START_TEST(test_budget_everything_fits_is_unbounded)
{
    uint64_t all = r1_container__expert_raw_bytes(c);
    r1_budget_parts p;
    ck_assert_int_eq(r1_budget__auto(c, available_for(all), 0, &p), R1_OK);
    ck_assert_uint_eq(p.budget, 0);
    ck_assert_int_eq(r1_budget__auto(c, available_for(all - 1), 0, &p), R1_OK);
    ck_assert_uint_eq(p.budget, all - 1);
}
END_TEST

START_TEST(test_budget_below_minimum_fails)
{
    uint64_t min = (uint64_t)g->num_experts_per_tok * r1_container__max_expert_bytes(c);
    r1_budget_parts p;
    ck_assert_int_eq(r1_budget__auto(c, available_for(min), 0, &p), R1_OK);
    ck_assert_uint_eq(p.budget, min);
    ck_assert_int_eq(r1_budget__auto(c, available_for(min - 1), 0, &p), R1_ERR_BUDGET);
    const char *msg = r1_error__message();
    ck_assert_ptr_nonnull(strstr(msg, "auto expert budget"));
    ck_assert_ptr_nonnull(strstr(msg, "dense"));
    ck_assert_ptr_nonnull(strstr(msg, "KV cache for 4096 tokens"));
    ck_assert_ptr_nonnull(strstr(msg, "headroom"));
    /* less memory than the headroom alone */
    ck_assert_int_eq(r1_budget__auto(c, 1000, 0, &p), R1_ERR_BUDGET);
    ck_assert_uint_eq(p.left, 0);
    ck_assert_int_eq(r1_budget__auto(c, 0, 0, &p), R1_ERR_IO);
}
END_TEST

START_TEST(test_budget_mem_available_hook)
{
    uint64_t real = r1_budget__mem_available();
    ck_assert_uint_gt(real, 0); /* Linux: /proc/meminfo */
    r1_budget__set_mem_available(12345);
    ck_assert_uint_eq(r1_budget__mem_available(), 12345);
    r1_budget__set_mem_available(0);
    ck_assert_uint_gt(r1_budget__mem_available(), 0);
}
END_TEST

static uint64_t loaded_budget(r1_model_opts *o, r1_status *st)
{
    r1_model *m = NULL;
    *st = r1_model_load(&m, v3_path, NULL, o);
    if (*st != R1_OK)
        return UINT64_MAX;
    r1_expert_cache_stats s;
    memset(&s, 0, sizeof s);
    s.struct_size = sizeof s;
    ck_assert_int_eq(r1_model_get_expert_cache_stats(m, &s), R1_OK);
    r1_model_destroy(m);
    return s.budget_bytes;
}

START_TEST(test_budget_model_load_auto)
{
    uint64_t all = r1_container__expert_raw_bytes(c);
    uint64_t min = (uint64_t)g->num_experts_per_tok * r1_container__max_expert_bytes(c);
    uint64_t left = min + (all - min) / 2;
    r1_model_opts *o = NULL;
    r1_status st;
    ck_assert_int_eq(r1_model_opts_create(&o), R1_OK);
    ck_assert_int_eq(r1_model_opts_set_expert_cache_auto(NULL, 0), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_model_opts_set_expert_cache_auto(o, -1), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_model_opts_set_expert_cache_auto(o, 0), R1_OK);
    r1_budget__set_mem_available(available_for(left));
    ck_assert_uint_eq(loaded_budget(o, &st), left);
    /* a context named explicitly: its KV cache comes out of the budget */
    ck_assert_int_eq(r1_model_opts_set_expert_cache_auto(o, 4096 + 10), R1_OK);
    ck_assert_uint_eq(loaded_budget(o, &st), left - 10 * r1_budget__kv_bytes_per_token(g));
    /* too little memory: the load fails and says why */
    ck_assert_int_eq(r1_model_opts_set_expert_cache_auto(o, 0), R1_OK);
    r1_budget__set_mem_available(available_for(min - 1));
    loaded_budget(o, &st);
    ck_assert_int_eq(st, R1_ERR_BUDGET);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "auto expert budget"));
    /* bytes set afterwards replace auto */
    ck_assert_int_eq(r1_model_opts_set_expert_cache_bytes(o, min), R1_OK);
    ck_assert_uint_eq(loaded_budget(o, &st), min);
    /* plenty of memory: unbounded */
    ck_assert_int_eq(r1_model_opts_set_expert_cache_auto(o, 0), R1_OK);
    r1_budget__set_mem_available(UINT64_C(1) << 40);
    ck_assert_uint_eq(loaded_budget(o, &st), 0);
    ck_assert_int_eq(st, R1_OK);
    r1_model_opts_destroy(o);
}
END_TEST

START_TEST(test_budget_plan_numbers)
{
    uint64_t all = r1_container__expert_raw_bytes(c);
    uint64_t min = (uint64_t)g->num_experts_per_tok * r1_container__max_expert_bytes(c);
    uint64_t left = min + (all - min) / 4;
    uint64_t ram = available_for(left);
    r1_plan p;
    memset(&p, 0xff, sizeof p);
    p.struct_size = sizeof p;
    ck_assert_int_eq(r1_model_plan(v3_path, ram, 0, 20e9, 2e9, &p), R1_OK);
    ck_assert_uint_eq(p.struct_size, sizeof p);
    ck_assert_int_eq(p.fits, R1_PLAN_STREAMS);
    ck_assert_uint_eq(p.file_bytes, r1_container__file_size(c));
    ck_assert_uint_eq(p.dense_bytes, r1_container__dense_bytes(c));
    ck_assert_uint_eq(p.expert_bytes, all);
    uint64_t stored = 0, span_per_layer = 0;
    for (int32_t i = 0; i < r1_container__n_expert_blobs(c); i++) {
        const r1_expert_blob *b = r1_container__expert_at(c, i);
        stored += b->stored_size;
        if (b->layer == 1)
            span_per_layer += r1_container__blob_span(b);
    }
    ck_assert_uint_eq(p.expert_stored_bytes, stored);
    /* tiny-v3: layers 1 and 2 are MoE (layer 3 is the MTP layer), 4 of 16 experts each, all of
     * one size */
    int64_t moe_layers = g->num_hidden_layers - g->first_k_dense_replace;
    ck_assert_int_eq(moe_layers, 2);
    ck_assert_uint_eq(p.expert_bytes_per_token,
                      (uint64_t)moe_layers * 4 * r1_container__max_expert_bytes(c));
    ck_assert_uint_eq(p.kv_bytes_per_token, r1_budget__kv_bytes_per_token(g));
    ck_assert_int_eq(p.context, 4096);
    ck_assert_uint_eq(p.ram_bytes, ram);
    ck_assert_uint_eq(p.headroom_bytes, headroom(ram));
    ck_assert_uint_eq(p.min_expert_budget_bytes, min);
    ck_assert_uint_eq(p.expert_budget_bytes, left);
    ck_assert_double_eq_tol(p.hit_rate, (double)left / (double)all, 1e-12);
    r1_tensor emb;
    ck_assert_int_eq(r1_container__tensor(c, "model.embed_tokens.weight", &emb), R1_OK);
    ck_assert_uint_eq(p.memory_bytes_per_token, p.dense_bytes - emb.nbytes +
                                                    emb.nbytes / (uint64_t)g->vocab_size +
                                                    p.expert_bytes_per_token);
    double drive =
        (1.0 - p.hit_rate) * (double)(span_per_layer * (uint64_t)moe_layers) * 4.0 / 16.0;
    ck_assert_uint_eq(p.drive_bytes_per_token, (uint64_t)(drive + 0.5));
    ck_assert_double_eq(p.mem_bytes_per_s, 20e9);
    ck_assert_double_eq(p.drive_bytes_per_s, 2e9);
    ck_assert_double_eq_tol(p.memory_tokens_per_s, 20e9 / (double)p.memory_bytes_per_token,
                            1e-9 * p.memory_tokens_per_s);
    ck_assert_double_eq_tol(p.drive_tokens_per_s, 2e9 / (double)p.drive_bytes_per_token,
                            1e-9 * p.drive_tokens_per_s);
    ck_assert_double_eq(p.decode_tokens_per_s, fmin(p.memory_tokens_per_s, p.drive_tokens_per_s));
}
END_TEST

START_TEST(test_budget_plan_fit_classes)
{
    r1_plan p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    ck_assert_int_eq(r1_model_plan(v3_path, UINT64_C(1) << 40, 0, 20e9, 2e9, &p), R1_OK);
    ck_assert_int_eq(p.fits, R1_PLAN_IN_MEMORY);
    ck_assert_uint_eq(p.expert_budget_bytes, p.expert_bytes);
    ck_assert_double_eq(p.hit_rate, 1.0);
    ck_assert_uint_eq(p.drive_bytes_per_token, 0);
    ck_assert_double_eq(p.drive_tokens_per_s, 0.0);
    ck_assert_double_eq(p.decode_tokens_per_s, p.memory_tokens_per_s);
    ck_assert_int_eq(r1_model_plan(v3_path, 1000, 0, 20e9, 2e9, &p), R1_OK);
    ck_assert_int_eq(p.fits, R1_PLAN_NO_FIT);
    ck_assert_double_eq(p.decode_tokens_per_s, 0.0);
    /* measured bandwidths when none are given (the model streams, so the drive is read too) */
    uint64_t min = (uint64_t)g->num_experts_per_tok * r1_container__max_expert_bytes(c);
    ck_assert_int_eq(r1_model_plan(v3_path, available_for(min), 0, 0, 0, &p), R1_OK);
    ck_assert_int_eq(p.fits, R1_PLAN_STREAMS);
    ck_assert(p.mem_bytes_per_s > 1e8);
    ck_assert(p.drive_bytes_per_s > 0);
    ck_assert(p.decode_tokens_per_s > 0);
}
END_TEST

/* An older caller's shorter struct gets only its own fields; bad arguments are refused. */
START_TEST(test_budget_plan_arguments)
{
    struct {
        r1_plan p;
        uint8_t guard[8];
    } old;
    memset(&old, 0xab, sizeof old);
    old.p.struct_size = (uint32_t)offsetof(r1_plan, kv_bytes_per_token);
    ck_assert_int_eq(r1_model_plan(v3_path, UINT64_C(1) << 40, 0, 1e9, 1e9, &old.p), R1_OK);
    ck_assert_uint_eq(old.p.struct_size, offsetof(r1_plan, kv_bytes_per_token));
    ck_assert_uint_eq(old.p.dense_bytes, r1_container__dense_bytes(c));
    ck_assert_uint_eq(old.p.kv_bytes_per_token, UINT64_C(0xabababababababab));
    /* the layout bindings mirror (examples/python/r1/_ffi.py PlanC) */
    ck_assert_uint_eq(sizeof(r1_plan), 4 + 4 + 13 * 8 + 6 * 8);
    r1_plan p;
    memset(&p, 0, sizeof p);
    ck_assert_int_eq(r1_model_plan(v3_path, 0, 0, 1e9, 1e9, &p), R1_ERR_INVALID_ARG);
    p.struct_size = sizeof p;
    ck_assert_int_eq(r1_model_plan(NULL, 0, 0, 1e9, 1e9, &p), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_model_plan(v3_path, 0, 0, 1e9, 1e9, NULL), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_model_plan(v3_path, 0, -1, 1e9, 1e9, &p), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_model_plan(v3_path, 0, 0, -1.0, 1e9, &p), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_model_plan(v3_path, 0, 0, 1e9, NAN, &p), R1_ERR_INVALID_ARG);
    r1_container *none = NULL;
    r1_status open_st = r1_container__open(&none, "/nonexistent.r1m");
    ck_assert_int_lt(open_st, 0); /* the plan fails as opening the model fails */
    ck_assert_int_eq(r1_model_plan("/nonexistent.r1m", 0, 0, 1e9, 1e9, &p), open_st);
}
END_TEST

/* Logits of `n` tokens decoded one at a time with the given budget and policy (malloc'ed). */
static float *decode_logits(uint64_t budget, int32_t policy, int n, size_t *vocab)
{
    r1_model_opts *o = NULL;
    r1_model *m = NULL;
    r1_session *s = NULL;
    ck_assert_int_eq(r1_model_opts_create(&o), R1_OK);
    ck_assert_int_eq(r1_model_opts_set_expert_cache_bytes(o, budget), R1_OK);
    ck_assert_int_eq(r1_model_opts_set_expert_cache_policy(o, policy), R1_OK);
    ck_assert_int_eq(r1_model_load(&m, v3_path, NULL, o), R1_OK);
    r1_model_opts_destroy(o);
    ck_assert_int_eq(r1_session_create(&s, m, NULL), R1_OK);
    *vocab = (size_t)g->vocab_size;
    float *out = malloc((size_t)n * *vocab * sizeof *out);
    ck_assert_ptr_nonnull(out);
    for (int i = 0; i < n; i++) {
        int32_t id = (int32_t)((i * 37 + 5) % g->vocab_size);
        const float *row;
        size_t len;
        ck_assert_int_eq(r1_session_eval(s, &id, 1), R1_OK);
        ck_assert_int_eq(r1_session_logits(s, 0, &row, &len), R1_OK);
        ck_assert_uint_eq(len, *vocab);
        memcpy(out + (size_t)i * *vocab, row, *vocab * sizeof *row);
    }
    r1_expert_cache_stats st;
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    ck_assert_int_eq(r1_model_get_expert_cache_stats(m, &st), R1_OK);
    ck_assert_uint_eq(st.budget_bytes, budget);
    if (budget != 0)
        ck_assert_uint_gt(st.evictions, 0); /* the policy had choices to make */
    r1_session_destroy(s);
    r1_model_destroy(m);
    return out;
}

/* The policy changes which experts stay, never the logits (bit for bit). */
START_TEST(test_budget_policy_keeps_logits)
{
    r1_model_opts *o = NULL;
    ck_assert_int_eq(r1_model_opts_create(&o), R1_OK);
    ck_assert_int_eq(r1_model_opts_set_expert_cache_policy(o, 2), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_model_opts_set_expert_cache_policy(o, -1), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_model_opts_set_expert_cache_policy(NULL, 0), R1_ERR_INVALID_ARG);
    r1_model_opts_destroy(o);
    const int n = 12;
    size_t vocab;
    uint64_t min = (uint64_t)g->num_experts_per_tok * r1_container__max_expert_bytes(c);
    float *ref = decode_logits(0, R1_CACHE_POLICY_DEFAULT, n, &vocab);
    const uint64_t budgets[] = {min, min + min / 2};
    for (int b = 0; b < 2; b++)
        for (int32_t policy = R1_CACHE_POLICY_LRU; policy <= R1_CACHE_POLICY_DEFAULT; policy++) {
            float *got = decode_logits(budgets[b], policy, n, &vocab);
            ck_assert_msg(memcmp(ref, got, (size_t)n * vocab * sizeof *ref) == 0,
                          "logits differ with budget %llu and policy %d",
                          (unsigned long long)budgets[b], (int)policy);
            free(got);
        }
    free(ref);
}
END_TEST

static Suite *budget_suite(void)
{
    Suite *s = suite_create("budget");
    TCase *t = tcase_create("auto");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_budget_kv_per_token);
    tcase_add_test(t, test_budget_arithmetic);
    tcase_add_test(t, test_budget_everything_fits_is_unbounded);
    tcase_add_test(t, test_budget_below_minimum_fails);
    tcase_add_test(t, test_budget_mem_available_hook);
    tcase_add_test(t, test_budget_model_load_auto);
    tcase_add_test(t, test_budget_policy_keeps_logits);
    suite_add_tcase(s, t);
    t = tcase_create("plan");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_set_timeout(t, 60);
    tcase_add_test(t, test_budget_plan_numbers);
    tcase_add_test(t, test_budget_plan_fit_classes);
    tcase_add_test(t, test_budget_plan_arguments);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(budget_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
