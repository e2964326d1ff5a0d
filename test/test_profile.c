/* test_profile.c: session profiling: what it counts, that counting changes nothing, and its
 * argument checks. */
#include <check.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "file_testutil.h"
#include "r1.h"

static r1_model *load(const char *name, r1_model_info *info)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.r1m", tu_models_dir(), name);
    r1_model *m = NULL;
    ck_assert_msg(r1_model_load(&m, path, NULL, NULL) == R1_OK, "%s: %s", path, r1_last_error());
    memset(info, 0, sizeof *info);
    info->struct_size = sizeof *info;
    ck_assert_int_eq(r1_model_get_info(m, info), R1_OK);
    return m;
}

static r1_session *session(r1_model *m)
{
    r1_session *s = NULL;
    ck_assert_int_eq(r1_session_create(&s, m, NULL), R1_OK);
    return s;
}

static const int32_t IDS[] = {0, 53, 110, 38, 154, 156, 39, 238, 48, 226, 262, 241, 253};
enum { N_PREFILL = 10, N_IDS = sizeof IDS / sizeof IDS[0] };

/* A prefill of N_PREFILL ids, then the rest one at a time. */
static void feed(r1_session *s)
{
    ck_assert_int_eq(r1_session_eval(s, IDS, N_PREFILL), R1_OK);
    for (int i = N_PREFILL; i < N_IDS; i++)
        ck_assert_int_eq(r1_session_eval(s, IDS + i, 1), R1_OK);
}

static r1_session_profile get_profile(const r1_session *s)
{
    r1_session_profile p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    ck_assert_int_eq(r1_session_get_profile(s, &p), R1_OK);
    ck_assert_uint_eq(p.struct_size, sizeof p);
    return p;
}

START_TEST(test_profile_counts_tokens_passes_and_routing)
{
    const char *models[] = {"tiny-v2lite-q8_0", "tiny-v3-src"};
    for (int mi = 0; mi < 2; mi++) {
        r1_model_info info;
        r1_model *m = load(models[mi], &info);
        r1_session *s = session(m);
        ck_assert_int_eq(r1_session_set_profiling(s, 1), R1_OK);
        feed(s);
        r1_session_profile p = get_profile(s);
        ck_assert_uint_eq(p.n_tokens, N_IDS);
        ck_assert_uint_eq(p.n_passes, 1 + (N_IDS - N_PREFILL));
        ck_assert_uint_gt(p.expert_bytes, 0);
        ck_assert_uint_gt(p.weight_bytes, p.expert_bytes);
        ck_assert_uint_gt(p.expert_uses, 0);
        double sum = 0;
        for (int c = 0; c < R1_PROFILE_N_CLASSES; c++) {
            ck_assert(p.ms[c] >= 0);
            sum += p.ms[c];
        }
        ck_assert(p.total_ms > 0);
        ck_assert(sum <= p.total_ms * 1.0001 + 1e-6);

        /* Every MoE layer routed every token to k experts; dense layers to none. */
        size_t n = (size_t)(info.n_layers * info.n_routed_experts);
        uint64_t *counts = calloc(n, sizeof *counts);
        ck_assert_int_eq(r1_session_get_expert_counts(s, counts, n), R1_OK);
        int moe_layers = 0;
        for (int64_t l = 0; l < info.n_layers; l++) {
            uint64_t total = 0;
            for (int64_t e = 0; e < info.n_routed_experts; e++)
                total += counts[l * info.n_routed_experts + e];
            if (total == 0)
                continue;
            moe_layers++;
            ck_assert_uint_eq(total, (uint64_t)N_IDS * (uint64_t)info.n_experts_per_token);
        }
        ck_assert_int_gt(moe_layers, 0);
        /* A pass reads each selected expert once: the decode passes read k per MoE layer. */
        ck_assert_uint_ge(p.expert_uses, (uint64_t)(N_IDS - N_PREFILL) * (uint64_t)moe_layers *
                                             (uint64_t)info.n_experts_per_token);
        ck_assert_uint_le(p.expert_bytes, p.expert_uses * info.max_expert_bytes);

        /* Switching on again starts from zero. */
        ck_assert_int_eq(r1_session_set_profiling(s, 1), R1_OK);
        p = get_profile(s);
        ck_assert_uint_eq(p.n_tokens, 0);
        ck_assert_uint_eq(p.weight_bytes, 0);
        ck_assert_int_eq(r1_session_get_expert_counts(s, counts, n), R1_OK);
        for (size_t i = 0; i < n; i++)
            ck_assert_uint_eq(counts[i], 0);

        /* Off: the counters stay readable and stop moving. */
        ck_assert_int_eq(r1_session_eval(s, IDS, 2), R1_OK);
        ck_assert_int_eq(r1_session_set_profiling(s, 0), R1_OK);
        ck_assert_int_eq(r1_session_eval(s, IDS + 2, 1), R1_OK);
        p = get_profile(s);
        ck_assert_uint_eq(p.n_tokens, 2);
        free(counts);
        r1_session_destroy(s);
        r1_model_destroy(m);
    }
}
END_TEST

/* weight_bytes split by class and embedding rows: the parts add up, routed experts are
 * expert_bytes, every pass reads the head once and every token one embedding row, and the
 * classes that read weights say so; an older, shorter struct is filled only as far as it goes. */
START_TEST(test_profile_bytes_by_class)
{
    const char *models[] = {"tiny-v2lite-q8_0", "tiny-v3-src"};
    for (int mi = 0; mi < 2; mi++) {
        r1_model_info info;
        r1_model *m = load(models[mi], &info);
        r1_session *s = session(m);
        ck_assert_int_eq(r1_session_set_profiling(s, 1), R1_OK);
        feed(s);
        r1_session_profile p = get_profile(s);
        uint64_t sum = p.embed_bytes;
        for (int c = 0; c < R1_PROFILE_N_CLASSES; c++)
            sum += p.class_weight_bytes[c];
        ck_assert_uint_eq(sum, p.weight_bytes);
        ck_assert_uint_eq(p.class_weight_bytes[R1_PROFILE_EXPERTS], p.expert_bytes);
        ck_assert_uint_eq(p.class_weight_bytes[R1_PROFILE_EXPERT_LOAD], 0);
        ck_assert_uint_gt(p.class_weight_bytes[R1_PROFILE_ATTENTION], 0);
        ck_assert_uint_gt(p.class_weight_bytes[R1_PROFILE_ROUTER], 0);
        ck_assert_uint_gt(p.class_weight_bytes[R1_PROFILE_HEAD], 0);
        if (info.n_shared_experts > 0)
            ck_assert_uint_gt(p.class_weight_bytes[R1_PROFILE_SHARED], 0);
        ck_assert_uint_gt(p.embed_bytes, 0);
        ck_assert_uint_eq(p.embed_bytes % N_IDS, 0);
        ck_assert_uint_eq(p.class_weight_bytes[R1_PROFILE_HEAD] % p.n_passes, 0);
        /* The head is the (vocab, hidden) output matrix: at least 4 bits a weight. */
        ck_assert_uint_ge(p.class_weight_bytes[R1_PROFILE_HEAD] / p.n_passes,
                          (uint64_t)info.vocab_size * (uint64_t)info.hidden_size / 2);
        const uint64_t head_per_pass = p.class_weight_bytes[R1_PROFILE_HEAD] / p.n_passes;
        const uint64_t row = p.embed_bytes / N_IDS;

        /* One more decoded token adds one head and one embedding row, nothing left over. */
        ck_assert_int_eq(r1_session_set_profiling(s, 1), R1_OK);
        ck_assert_int_eq(r1_session_eval(s, IDS, 1), R1_OK);
        p = get_profile(s);
        ck_assert_uint_eq(p.embed_bytes, row);
        ck_assert_uint_eq(p.class_weight_bytes[R1_PROFILE_HEAD], head_per_pass);
        sum = p.embed_bytes;
        for (int c = 0; c < R1_PROFILE_N_CLASSES; c++)
            sum += p.class_weight_bytes[c];
        ck_assert_uint_eq(sum, p.weight_bytes);

        r1_session_profile old;
        memset(&old, 0xAB, sizeof old);
        old.struct_size = (uint32_t)offsetof(r1_session_profile, class_weight_bytes);
        ck_assert_int_eq(r1_session_get_profile(s, &old), R1_OK);
        ck_assert_uint_eq(old.struct_size, offsetof(r1_session_profile, class_weight_bytes));
        ck_assert_uint_eq(old.weight_bytes, p.weight_bytes);
        ck_assert_uint_eq(old.embed_bytes, UINT64_C(0xABABABABABABABAB));
        r1_session_destroy(s);
        r1_model_destroy(m);
    }
}
END_TEST

START_TEST(test_profile_does_not_change_logits)
{
    r1_model_info info;
    r1_model *m = load("tiny-v2lite-q4_0", &info);
    r1_session *plain = session(m), *counted = session(m);
    ck_assert_int_eq(r1_session_set_profiling(counted, 1), R1_OK);
    feed(plain);
    feed(counted);
    const float *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    ck_assert_int_eq(r1_session_logits(plain, -1, &a, &na), R1_OK);
    ck_assert_int_eq(r1_session_logits(counted, -1, &b, &nb), R1_OK);
    ck_assert_uint_eq(na, nb);
    ck_assert_int_eq(memcmp(a, b, na * sizeof *a), 0);
    r1_session_destroy(plain);
    r1_session_destroy(counted);
    r1_model_destroy(m);
}
END_TEST

START_TEST(test_profile_never_on_reads_zero)
{
    r1_model_info info;
    r1_model *m = load("tiny-v2lite-q8_0", &info);
    r1_session *s = session(m);
    feed(s);
    r1_session_profile p = get_profile(s);
    ck_assert_uint_eq(p.n_tokens, 0);
    ck_assert(p.total_ms == 0);
    size_t n = (size_t)(info.n_layers * info.n_routed_experts);
    uint64_t *counts = malloc(n * sizeof *counts);
    memset(counts, 0xff, n * sizeof *counts);
    ck_assert_int_eq(r1_session_get_expert_counts(s, counts, n), R1_OK);
    for (size_t i = 0; i < n; i++)
        ck_assert_uint_eq(counts[i], 0);
    free(counts);
    r1_session_destroy(s);
    r1_model_destroy(m);
}
END_TEST

START_TEST(test_profile_argument_errors)
{
    r1_model_info info;
    r1_model *m = load("tiny-v2lite-q8_0", &info);
    r1_session *s = session(m);
    r1_session_profile p;
    memset(&p, 0, sizeof p);
    ck_assert_int_eq(r1_session_set_profiling(NULL, 1), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_session_get_profile(NULL, &p), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_session_get_profile(s, NULL), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_session_get_profile(s, &p), R1_ERR_INVALID_ARG); /* struct_size 0 */
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "struct_size"));
    size_t n = (size_t)(info.n_layers * info.n_routed_experts);
    uint64_t *counts = calloc(n + 1, sizeof *counts);
    ck_assert_int_eq(r1_session_get_expert_counts(NULL, counts, n), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_session_get_expert_counts(s, NULL, n), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_session_get_expert_counts(s, counts, n + 1), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_session_get_expert_counts(s, counts, n - 1), R1_ERR_INVALID_ARG);

    /* An older, shorter struct gets only its own fields. */
    unsigned char buf[sizeof(r1_session_profile) + 8];
    memset(buf, 0xab, sizeof buf);
    r1_session_profile *old = (r1_session_profile *)(void *)buf;
    const uint32_t short_size = (uint32_t)offsetof(r1_session_profile, total_ms);
    old->struct_size = short_size;
    ck_assert_int_eq(r1_session_set_profiling(s, 1), R1_OK);
    feed(s);
    ck_assert_int_eq(r1_session_get_profile(s, old), R1_OK);
    ck_assert_uint_eq(old->struct_size, short_size);
    ck_assert_uint_eq(old->n_tokens, N_IDS);
    for (size_t i = short_size; i < sizeof buf; i++)
        ck_assert_uint_eq(buf[i], 0xab);
    free(counts);
    r1_session_destroy(s);
    r1_model_destroy(m);
}
END_TEST

static Suite *profile_suite(void)
{
    Suite *s = suite_create("profile");
    TCase *tc = tcase_create("profile");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_profile_counts_tokens_passes_and_routing);
    tcase_add_test(tc, test_profile_bytes_by_class);
    tcase_add_test(tc, test_profile_does_not_change_logits);
    tcase_add_test(tc, test_profile_never_on_reads_zero);
    tcase_add_test(tc, test_profile_argument_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(profile_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
