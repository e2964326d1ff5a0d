/* test_model.c: the public model API: convert, load, info, expert-cache stats, errors, lifetime. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "r1.h"
#include "r1m_testutil.h"

static char *tmp;
static char v3_path[4096];

static void setup_files(void)
{
    tmp = tu_mkdtemp();
    ck_assert_ptr_nonnull(tmp);
    snprintf(v3_path, sizeof v3_path, "%s/v3.r1m", tmp);
    r1_status st = r1_convert(R1_TEST_DATA_DIR "/tiny-v3", v3_path, NULL, 2, 0, NULL, NULL);
    ck_assert_msg(st == R1_OK, "%s", r1_last_error());
}

static void teardown_files(void)
{
    tu_rmtree(tmp);
    free(tmp);
}

static void expect_failure(r1_status got, r1_status want)
{
    ck_assert_msg(got == want, "status %s, want %s (%s)", r1_status_name(got), r1_status_name(want),
                  r1_last_error());
    ck_assert_str_ne(r1_last_error(), "");
    ck_assert_str_ne(r1_status_name(got), "R1_UNKNOWN_STATUS");
}

START_TEST(test_model_load_info_stats_destroy)
{
    r1_model *m = NULL;
    ck_assert_int_eq(r1_model_load(&m, v3_path, NULL, NULL), R1_OK);
    ck_assert_str_eq(r1_last_error(), "");
    r1_model_info info;
    memset(&info, 0xab, sizeof info);
    info.struct_size = sizeof info;
    ck_assert_int_eq(r1_model_get_info(m, &info), R1_OK);
    ck_assert_uint_eq(info.struct_size, sizeof info);
    ck_assert_int_eq(info.architecture, 1);
    ck_assert_str_eq(info.architecture_name, "deepseek_v3");
    ck_assert_int_eq(info.n_layers, 3);
    ck_assert_int_eq(info.n_mtp_layers, 1);
    ck_assert_int_eq(info.hidden_size, 160);
    ck_assert_int_eq(info.n_routed_experts, 16);
    ck_assert_int_eq(info.n_experts_per_token, 4);
    ck_assert_int_eq(info.vocab_size, 320);
    ck_assert_int_eq(info.n_tokenizer_ids, 304);
    ck_assert_int_eq(info.bos_token_id, 0);
    ck_assert_int_eq(info.n_expert_blobs, 48); /* layers 1, 2 and the MTP layer 3 */
    ck_assert_str_eq(info.expert_dtype, "fp8_e4m3");
    ck_assert_uint_gt(info.file_bytes, info.dense_bytes);
    r1_expert_cache_stats stats;
    stats.struct_size = sizeof stats;
    ck_assert_int_eq(r1_model_get_expert_cache_stats(m, &stats), R1_OK);
    ck_assert_uint_eq(stats.hits + stats.misses + stats.current_bytes + stats.budget_bytes, 0);
    r1_model_destroy(m);
    r1_model_destroy(NULL);
}
END_TEST

START_TEST(test_model_size_first_structs_respect_size)
{
    r1_model *m;
    ck_assert_int_eq(r1_model_load(&m, v3_path, NULL, NULL), R1_OK);
    /* an older, shorter struct: nothing past its size is written */
    uint8_t buf[sizeof(r1_model_info)];
    memset(buf, 0xcd, sizeof buf);
    uint32_t small = 8;
    memcpy(buf, &small, sizeof small);
    ck_assert_int_eq(r1_model_get_info(m, (r1_model_info *)(void *)buf), R1_OK);
    for (size_t i = 8; i < sizeof buf; i++)
        ck_assert_uint_eq(buf[i], 0xcd);
    r1_model_info info;
    info.struct_size = 0;
    expect_failure(r1_model_get_info(m, &info), R1_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "struct_size"));
    r1_expert_cache_stats st;
    st.struct_size = 3;
    expect_failure(r1_model_get_expert_cache_stats(m, &st), R1_ERR_INVALID_ARG);
    r1_model_destroy(m);
}
END_TEST

START_TEST(test_model_null_arguments)
{
    r1_model *m = (r1_model *)1;
    expect_failure(r1_model_load(NULL, v3_path, NULL, NULL), R1_ERR_INVALID_ARG);
    expect_failure(r1_model_load(&m, NULL, NULL, NULL), R1_ERR_INVALID_ARG);
    ck_assert_ptr_null(m);
    r1_model_info info;
    info.struct_size = sizeof info;
    expect_failure(r1_model_get_info(NULL, &info), R1_ERR_INVALID_ARG);
    r1_expert_cache_stats st;
    st.struct_size = sizeof st;
    expect_failure(r1_model_get_expert_cache_stats(NULL, &st), R1_ERR_INVALID_ARG);
    expect_failure(r1_model_opts_create(NULL), R1_ERR_INVALID_ARG);
    expect_failure(r1_model_opts_set_expert_cache_bytes(NULL, 1), R1_ERR_INVALID_ARG);
    expect_failure(r1_model_opts_set_verify_weights(NULL, 1), R1_ERR_INVALID_ARG);
    expect_failure(r1_convert(NULL, v3_path, NULL, 1, 0, NULL, NULL), R1_ERR_INVALID_ARG);
    expect_failure(r1_convert(R1_TEST_DATA_DIR "/tiny-v3", v3_path, NULL, 1, 0x80, NULL, NULL),
                   R1_ERR_INVALID_ARG);
    r1_model_opts_destroy(NULL);
    ck_assert_int_eq(r1_model_load(&m, v3_path, (r1_backend *)&info, NULL), R1_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "NULL"));
}
END_TEST

START_TEST(test_model_missing_and_bad_files)
{
    r1_model *m;
    char p[4200];
    snprintf(p, sizeof p, "%s/does-not-exist.r1m", tmp);
    expect_failure(r1_model_load(&m, p, NULL, NULL), R1_ERR_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "does-not-exist.r1m"));
    snprintf(p, sizeof p, "%s/garbage.r1m", tmp);
    const char *junk = "this is not a model file, but it is long enough to hold a header......."
                       "........................................................................";
    tu_write(p, (const uint8_t *)junk, strlen(junk));
    expect_failure(r1_model_load(&m, p, NULL, NULL), R1_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "magic"));
    expect_failure(r1_model_load(&m, tmp, NULL, NULL), R1_ERR_IO); /* a directory */
    /* a damaged weight is found at load only when verification is on */
    size_t n;
    uint8_t *bytes = tu_read(v3_path, &n);
    bytes[4096 + 17] ^= 0x40;
    snprintf(p, sizeof p, "%s/damaged.r1m", tmp);
    tu_write(p, bytes, n);
    free(bytes);
    ck_assert_int_eq(r1_model_load(&m, p, NULL, NULL), R1_OK);
    r1_model_destroy(m);
    r1_model_opts *o;
    ck_assert_int_eq(r1_model_opts_create(&o), R1_OK);
    ck_assert_int_eq(r1_model_opts_set_verify_weights(o, 1), R1_OK);
    expect_failure(r1_model_opts_set_verify_weights(o, 2), R1_ERR_INVALID_ARG);
    expect_failure(r1_model_load(&m, p, NULL, o), R1_ERR_CHECKSUM);
    ck_assert_int_eq(r1_model_load(&m, v3_path, NULL, o), R1_OK);
    r1_model_destroy(m);
    r1_model_opts_destroy(o);
}
END_TEST

START_TEST(test_model_expert_cache_budget)
{
    r1_model *m;
    ck_assert_int_eq(r1_model_load(&m, v3_path, NULL, NULL), R1_OK);
    r1_model_info info;
    info.struct_size = sizeof info;
    ck_assert_int_eq(r1_model_get_info(m, &info), R1_OK);
    r1_model_destroy(m);
    r1_model_opts *o;
    ck_assert_int_eq(r1_model_opts_create(&o), R1_OK);
    uint64_t need = (uint64_t)info.n_experts_per_token * info.max_expert_bytes;
    ck_assert_int_eq(r1_model_opts_set_expert_cache_bytes(o, need - 1), R1_OK);
    expect_failure(r1_model_load(&m, v3_path, NULL, o), R1_ERR_BUDGET);
    char want[64];
    snprintf(want, sizeof want, "at least %llu bytes", (unsigned long long)need);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), want));
    ck_assert_int_eq(r1_model_opts_set_expert_cache_bytes(o, need), R1_OK);
    ck_assert_int_eq(r1_model_load(&m, v3_path, NULL, o), R1_OK);
    r1_model_opts_destroy(o); /* the model keeps no reference to its options */
    r1_expert_cache_stats st;
    st.struct_size = sizeof st;
    ck_assert_int_eq(r1_model_get_expert_cache_stats(m, &st), R1_OK);
    ck_assert_uint_eq(st.budget_bytes, need);
    r1_model_destroy(m);
}
END_TEST

START_TEST(test_model_device_selector)
{
    expect_failure(r1_model_opts_set_device(NULL, "0"), R1_ERR_INVALID_ARG);
    expect_failure(r1_model_opts_set_device(NULL, NULL), R1_ERR_INVALID_ARG);
    r1_model_opts *o;
    ck_assert_int_eq(r1_model_opts_create(&o), R1_OK);
    expect_failure(r1_model_opts_set_device(o, ""), R1_ERR_INVALID_ARG);
    char long_name[300];
    memset(long_name, 'x', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    expect_failure(r1_model_opts_set_device(o, long_name), R1_ERR_INVALID_ARG);
    /* The CPU backend has one device: index 0, or a part of its description, any case. */
    r1_model *m = NULL;
    const char *good[] = {"0", "CPU", "cpu"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        ck_assert_int_eq(r1_model_opts_set_device(o, good[i]), R1_OK);
        ck_assert_msg(r1_model_load(&m, v3_path, NULL, o) == R1_OK, "%s: %s", good[i],
                      r1_last_error());
        r1_model_destroy(m);
    }
    const char *bad[] = {"1", "no such device", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(r1_model_opts_set_device(o, bad[i]), R1_OK);
        m = (r1_model *)o; /* must be cleared on failure */
        expect_failure(r1_model_load(&m, v3_path, NULL, o), R1_ERR_NOT_FOUND);
        ck_assert_ptr_null(m);
        ck_assert_msg(strstr(r1_last_error(), i == 0 ? "index 1" : bad[i]) != NULL, "%s",
                      r1_last_error());
    }
    ck_assert_int_eq(r1_model_opts_set_device(o, NULL), R1_OK); /* back to the default */
    ck_assert_int_eq(r1_model_load(&m, v3_path, NULL, o), R1_OK);
    r1_model_destroy(m);
    r1_model_opts_destroy(o);
}
END_TEST

static int32_t cancel_now(uint64_t done, uint64_t total, void *user)
{
    (void)done;
    (void)total;
    (void)user;
    return 1;
}

START_TEST(test_model_convert_cancel_leaves_nothing)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/cancelled.r1m", tmp);
    int before = tu_count_entries(tmp);
    ck_assert_int_eq(r1_convert(R1_TEST_DATA_DIR "/tiny-v2lite", p, "q4_0", 1, 0, cancel_now, NULL),
                     R1_CANCELLED);
    ck_assert_int_eq(tu_count_entries(tmp), before);
    expect_failure(r1_convert(R1_TEST_DATA_DIR "/tiny-v2lite", p, "bogus", 1, 0, NULL, NULL),
                   R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_convert(R1_TEST_DATA_DIR "/tiny-v2lite", p, "q4_0", 1,
                                R1_CONVERT_NO_SHUFFLE, NULL, NULL),
                     R1_OK);
    r1_model *m;
    ck_assert_int_eq(r1_model_load(&m, p, NULL, NULL), R1_OK);
    r1_model_info info;
    info.struct_size = sizeof info;
    ck_assert_int_eq(r1_model_get_info(m, &info), R1_OK);
    ck_assert_str_eq(info.architecture_name, "deepseek_v2");
    ck_assert_str_eq(info.expert_dtype, "q4_0");
    r1_model_destroy(m);
}
END_TEST

static Suite *model_suite(void)
{
    Suite *s = suite_create("model");
    TCase *tc = tcase_create("public_api");
    tcase_add_unchecked_fixture(tc, setup_files, teardown_files);
    tcase_add_test(tc, test_model_load_info_stats_destroy);
    tcase_add_test(tc, test_model_size_first_structs_respect_size);
    tcase_add_test(tc, test_model_null_arguments);
    tcase_add_test(tc, test_model_missing_and_bad_files);
    tcase_add_test(tc, test_model_expert_cache_budget);
    tcase_add_test(tc, test_model_device_selector);
    tcase_add_test(tc, test_model_convert_cancel_leaves_nothing);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(model_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
