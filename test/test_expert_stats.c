/* test_expert_stats.c: the expert store through the public API: I/O thread option, statistics
 * of the asynchronous store, and callers built against the shorter r1_expert_cache_stats. */
#include <check.h>
#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "r1.h"
#include "thread_testutil.h"

/* The struct as 1.0-era callers knew it: everything before the fields of the async store. */
enum { OLD_STATS_SIZE = offsetof(r1_expert_cache_stats, prefetch_issued) };

static r1_model *load(int32_t io_threads, uint64_t budget)
{
    r1_model_opts *o = NULL;
    ck_assert_int_eq(r1_model_opts_create(&o), R1_OK);
    ck_assert_int_eq(r1_model_opts_set_expert_io_threads(o, io_threads), R1_OK);
    ck_assert_int_eq(r1_model_opts_set_expert_cache_bytes(o, budget), R1_OK);
    ck_assert_int_eq(r1_model_opts_set_threads(o, 1), R1_OK);
    r1_model *m = NULL;
    ck_assert_msg(r1_model_load(&m, R1_TEST_TINY_R1, NULL, o) == R1_OK, "%s", r1_last_error());
    r1_model_opts_destroy(o);
    return m;
}

/* A prefill and a few decode steps. */
static void run_some(r1_model *m)
{
    r1_session *s = NULL;
    ck_assert_int_eq(r1_session_create(&s, m, NULL), R1_OK);
    const int32_t ids[6] = {1, 5, 9, 14, 3, 7};
    ck_assert_msg(r1_session_eval(s, ids, 6) == R1_OK, "%s", r1_last_error());
    for (int i = 0; i < 4; i++)
        ck_assert_msg(r1_session_eval(s, &ids[i], 1) == R1_OK, "%s", r1_last_error());
    r1_session_destroy(s);
}

START_TEST(test_expert_stats_io_threads_option)
{
    r1_model_opts *o = NULL;
    ck_assert_int_eq(r1_model_opts_create(&o), R1_OK);
    ck_assert_int_eq(r1_model_opts_set_expert_io_threads(NULL, 1), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_model_opts_set_expert_io_threads(o, -1), R1_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "0..64"));
    ck_assert_int_eq(r1_model_opts_set_expert_io_threads(o, 65), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_model_opts_set_expert_io_threads(o, 64), R1_OK);
    ck_assert_int_eq(r1_model_opts_set_expert_io_threads(o, 0), R1_OK);
    r1_model_opts_destroy(o);

    /* a first run: threads that live as long as the process (a BLAS pool, say) start in it */
    r1_model *m = load(1, 0);
    run_some(m);
    r1_model_destroy(m);
    int before = settled_threads(count_threads());
    m = load(3, 0);
    ck_assert_int_ge(count_threads(), before + 3);
    r1_expert_cache_stats st = {.struct_size = sizeof st};
    ck_assert_int_eq(r1_model_get_expert_cache_stats(m, &st), R1_OK);
    ck_assert_uint_eq(st.io_workers, 3);
    ck_assert_uint_le(st.direct_io, 1);
    run_some(m);
    r1_model_destroy(m);
    ck_assert_int_eq(settled_threads(before), before); /* the store's threads are joined */
    m = load(0, 0);
    ck_assert_int_eq(r1_model_get_expert_cache_stats(m, &st), R1_OK);
    ck_assert_uint_eq(st.io_workers, 8); /* the default */
    r1_model_destroy(m);
}
END_TEST

START_TEST(test_expert_stats_after_a_run)
{
    r1_model_info info = {.struct_size = sizeof info};
    r1_model *m = load(2, 0);
    ck_assert_int_eq(r1_model_get_info(m, &info), R1_OK);
    r1_model_destroy(m);
    /* the smallest budget: experts are evicted and read again */
    uint64_t budget = (uint64_t)info.n_experts_per_token * info.max_expert_bytes;
    m = load(2, budget);
    run_some(m);
    r1_expert_cache_stats st = {.struct_size = sizeof st};
    ck_assert_int_eq(r1_model_get_expert_cache_stats(m, &st), R1_OK);
    ck_assert_uint_eq(st.struct_size, sizeof st);
    ck_assert_uint_gt(st.misses, 0);
    ck_assert_uint_gt(st.bytes_read, 0);
    ck_assert_uint_le(st.peak_bytes, budget);
    ck_assert_uint_le(st.misses_prefetched, st.misses);
    ck_assert_uint_le(st.prefetch_used, st.prefetch_issued);
    ck_assert_uint_eq(st.io_workers, 2);
    r1_model_destroy(m);
}
END_TEST

/* A caller built against the struct before the async store's fields: gets exactly its fields,
 * the same values, and nothing written past its struct_size. */
START_TEST(test_expert_stats_older_struct_size)
{
    r1_model *m = load(2, 0);
    run_some(m);
    r1_expert_cache_stats full = {.struct_size = sizeof full};
    ck_assert_int_eq(r1_model_get_expert_cache_stats(m, &full), R1_OK);
    ck_assert_uint_eq(full.io_workers, 2);
    unsigned char buf[sizeof(r1_expert_cache_stats) + 16];
    memset(buf, 0xab, sizeof buf);
    r1_expert_cache_stats old;
    memset(&old, 0, sizeof old);
    old.struct_size = OLD_STATS_SIZE;
    memcpy(buf, &old, sizeof old.struct_size);
    ck_assert_int_eq(r1_model_get_expert_cache_stats(m, (r1_expert_cache_stats *)(void *)buf),
                     R1_OK);
    for (size_t i = OLD_STATS_SIZE; i < sizeof buf; i++)
        ck_assert_uint_eq(buf[i], 0xab);
    memcpy(&old, buf, OLD_STATS_SIZE);
    ck_assert_uint_eq(old.struct_size, OLD_STATS_SIZE);
    ck_assert_uint_eq(old.hits, full.hits);
    ck_assert_uint_eq(old.misses, full.misses);
    ck_assert_uint_eq(old.bytes_read, full.bytes_read);
    ck_assert_uint_eq(old.budget_bytes, full.budget_bytes);
    /* and the device getter, which has none of the new counters, with the new size */
    ck_assert_int_eq(r1_model_get_device_expert_cache_stats(m, &full), R1_OK);
    ck_assert_uint_eq(full.struct_size, sizeof full);
    ck_assert_uint_eq(full.io_workers, 0);
    r1_model_destroy(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("expert_stats");
    TCase *tc = tcase_create("api");
    tcase_add_test(tc, test_expert_stats_io_threads_option);
    tcase_add_test(tc, test_expert_stats_after_a_run);
    tcase_add_test(tc, test_expert_stats_older_struct_size);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
