/* test_expert_cache.c: the on-demand expert store: budget, LRU, pinning, statistics, threads, I/O
 * faults. */
#include <check.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checksum.h"
#include "container.h"
#include "convert.h"
#include "error.h"
#include "expert_cache.h"
#include "r1m_testutil.h"

static char *tmp;
static char v3_path[4096], v2_path[4096];
static r1_container *c3;
static uint64_t expert_bytes; /* every tiny-v3 expert has the same raw size */

static void setup_files(void)
{
    tmp = tu_mkdtemp();
    ck_assert_ptr_nonnull(tmp);
    snprintf(v3_path, sizeof v3_path, "%s/v3.r1m", tmp);
    snprintf(v2_path, sizeof v2_path, "%s/v2.r1m", tmp);
    r1_convert_opts o = {0};
    ck_assert_int_eq(r1_convert__run(R1_TEST_DATA_DIR "/tiny-v3", v3_path, &o, NULL), R1_OK);
    ck_assert_int_eq(r1_convert__run(R1_TEST_DATA_DIR "/tiny-v2lite", v2_path, &o, NULL), R1_OK);
}

static void teardown_files(void)
{
    tu_rmtree(tmp);
    free(tmp);
}

static void setup_container(void)
{
    ck_assert_int_eq(r1_container__open(&c3, v3_path), R1_OK);
    expert_bytes = r1_container__max_expert_bytes(c3);
    ck_assert_uint_eq(r1_container__expert(c3, 1, 0)->raw_size, expert_bytes);
}

static void teardown_container(void)
{
    r1_container__close(c3);
}

/* The data of a returned expert hash to the blob's checksum (raw layout starts at gate_proj). */
static void check_data(const r1_expert *ex)
{
    const r1_expert_blob *b = r1_container__expert(c3, ex->layer, ex->expert);
    ck_assert_uint_eq(r1_checksum__xxh64(ex->gate_proj.data, (size_t)b->raw_size), b->checksum);
    ck_assert_ptr_eq((const uint8_t *)ex->down_proj.data,
                     (const uint8_t *)ex->gate_proj.data + b->data_off[2]);
}

START_TEST(test_expert_cache_budget_too_small)
{
    r1_expert_cache *ec = NULL;
    uint64_t need = 4 * expert_bytes; /* num_experts_per_tok = 4 */
    ck_assert_int_eq(r1_expert_cache__create(&ec, c3, need - 1), R1_ERR_BUDGET);
    ck_assert_ptr_null(ec);
    char want[64];
    snprintf(want, sizeof want, "at least %llu bytes", (unsigned long long)need);
    ck_assert_msg(strstr(r1_error__message(), want), "%s", r1_error__message());
    ck_assert_int_eq(r1_expert_cache__create(&ec, c3, need), R1_OK);
    r1_expert_cache__destroy(ec);
    ck_assert_int_eq(r1_expert_cache__create(&ec, c3, 0), R1_OK); /* unbounded */
    r1_expert_cache__destroy(ec);
}
END_TEST

static void get_put(r1_expert_cache *ec, int layer, int expert)
{
    const r1_expert *ex = NULL;
    ck_assert_msg(r1_expert_cache__acquire(ec, layer, expert, &ex) == R1_OK, "%s",
                  r1_error__message());
    ck_assert_int_eq(ex->layer, layer);
    ck_assert_int_eq(ex->expert, expert);
    check_data(ex);
    r1_expert_cache__release(ec, ex);
}

START_TEST(test_expert_cache_lru_exact_statistics)
{
    r1_expert_cache *ec;
    ck_assert_int_eq(r1_expert_cache__create(&ec, c3, 5 * expert_bytes), R1_OK);
    /* fill 5, touch 0 again, then 2 new ones evict the least recent (1, then 2) */
    for (int e = 0; e < 5; e++)
        get_put(ec, 1, e); /* 5 misses */
    get_put(ec, 1, 0);     /* hit; order now 1 2 3 4 0 */
    get_put(ec, 2, 7);     /* miss, evicts (1,1) */
    get_put(ec, 2, 8);     /* miss, evicts (1,2) */
    get_put(ec, 1, 0);     /* hit */
    get_put(ec, 1, 1);     /* miss, evicts (1,3) */
    r1_expert_cache_counters k;
    r1_expert_cache__counters(ec, &k);
    ck_assert_uint_eq(k.hits, 2);
    ck_assert_uint_eq(k.misses, 8);
    ck_assert_uint_eq(k.evictions, 3);
    ck_assert_uint_eq(k.current_bytes, 5 * expert_bytes);
    ck_assert_uint_eq(k.peak_bytes, 5 * expert_bytes);
    ck_assert_uint_eq(k.bytes_decompressed, 8 * expert_bytes);
    uint64_t read = 0;
    const int seq[8][2] = {{1, 0}, {1, 1}, {1, 2}, {1, 3}, {1, 4}, {2, 7}, {2, 8}, {1, 1}};
    for (int i = 0; i < 8; i++)
        read += r1_container__expert(c3, seq[i][0], seq[i][1])->stored_size;
    ck_assert_uint_eq(k.bytes_read, read);
    ck_assert_uint_eq(k.budget_bytes, 5 * expert_bytes);
    ck_assert_uint_gt(k.load_ns, 0);
    /* (1,4) is still resident, (1,3) is not */
    get_put(ec, 1, 4);
    r1_expert_cache__counters(ec, &k);
    ck_assert_uint_eq(k.hits, 3);
    get_put(ec, 1, 3);
    r1_expert_cache__counters(ec, &k);
    ck_assert_uint_eq(k.misses, 9);
    r1_expert_cache__destroy(ec);
}
END_TEST

START_TEST(test_expert_cache_pinning_and_budget_errors)
{
    r1_expert_cache *ec;
    ck_assert_int_eq(r1_expert_cache__create(&ec, c3, 4 * expert_bytes), R1_OK);
    const r1_expert *ex[4], *more = NULL;
    for (int e = 0; e < 4; e++)
        ck_assert_int_eq(r1_expert_cache__acquire(ec, 2, e, &ex[e]), R1_OK);
    ck_assert_int_eq(r1_expert_cache__acquire(ec, 2, 9, &more), R1_ERR_BUDGET);
    ck_assert_ptr_null(more);
    ck_assert_ptr_nonnull(strstr(r1_error__message(), "pinned"));
    /* a pinned expert may be acquired again (two users) */
    const r1_expert *again;
    ck_assert_int_eq(r1_expert_cache__acquire(ec, 2, 0, &again), R1_OK);
    ck_assert_ptr_eq(again, ex[0]);
    r1_expert_cache__release(ec, again);
    r1_expert_cache__release(ec, ex[0]); /* now unpinned: evictable */
    ck_assert_int_eq(r1_expert_cache__acquire(ec, 2, 9, &more), R1_OK);
    check_data(more);
    for (int e = 1; e < 4; e++)
        check_data(ex[e]); /* pinned data survived the eviction */
    r1_expert_cache_counters k;
    r1_expert_cache__counters(ec, &k);
    ck_assert_uint_eq(k.evictions, 1);
    ck_assert_uint_le(k.peak_bytes, 4 * expert_bytes);
    r1_expert_cache__release(ec, more);
    for (int e = 1; e < 4; e++)
        r1_expert_cache__release(ec, ex[e]);
    r1_expert_cache__release(ec, NULL);
    ck_assert_int_eq(r1_expert_cache__acquire(ec, 0, 0, &more), R1_ERR_OUT_OF_RANGE);
    ck_assert_int_eq(r1_expert_cache__acquire(ec, 1, 16, &more), R1_ERR_OUT_OF_RANGE);
    ck_assert_int_eq(r1_expert_cache__acquire(ec, 99, 0, &more), R1_ERR_OUT_OF_RANGE);
    r1_expert_cache__destroy(ec);
}
END_TEST

typedef struct worker {
    r1_expert_cache *ec;
    unsigned seed;
    int errors;
} worker;

static void *hammer(void *arg)
{
    worker *w = arg;
    for (int i = 0; i < 400; i++) {
        w->seed = w->seed * 1103515245u + 12345u;
        int layer = 1 + (int)((w->seed >> 8) % 3), expert = (int)((w->seed >> 16) % 16);
        const r1_expert *ex;
        r1_status st = r1_expert_cache__acquire(w->ec, layer, expert, &ex);
        if (st == R1_ERR_BUDGET)
            continue; /* every slot pinned by the other threads at this instant */
        if (st != R1_OK || ex->layer != layer || ex->expert != expert) {
            w->errors++;
            continue;
        }
        const r1_expert_blob *b = r1_container__expert(c3, layer, expert);
        if (r1_checksum__xxh64(ex->gate_proj.data, (size_t)b->raw_size) != b->checksum)
            w->errors++;
        r1_expert_cache__release(w->ec, ex);
    }
    return NULL;
}

START_TEST(test_expert_cache_concurrent_requests)
{
    for (int round = 0; round < 2; round++) {
        r1_expert_cache *ec;
        uint64_t budget = round == 0 ? 6 * expert_bytes : 0;
        ck_assert_int_eq(r1_expert_cache__create(&ec, c3, budget), R1_OK);
        pthread_t t[4];
        worker w[4];
        for (int i = 0; i < 4; i++) {
            w[i] = (worker){ec, (unsigned)(i * 7919 + 1), 0};
            ck_assert_int_eq(pthread_create(&t[i], NULL, hammer, &w[i]), 0);
        }
        for (int i = 0; i < 4; i++) {
            pthread_join(t[i], NULL);
            ck_assert_int_eq(w[i].errors, 0);
        }
        r1_expert_cache_counters k;
        r1_expert_cache__counters(ec, &k);
        if (budget)
            ck_assert_uint_le(k.peak_bytes, budget);
        else
            ck_assert_uint_eq(k.misses, 48); /* each expert loaded exactly once */
        ck_assert_uint_eq(k.bytes_decompressed, k.misses * expert_bytes);
        r1_expert_cache__destroy(ec);
    }
}
END_TEST

START_TEST(test_expert_cache_io_faults)
{
    r1_expert_cache *ec;
    ck_assert_int_eq(r1_expert_cache__create(&ec, c3, 4 * expert_bytes), R1_OK);
    const r1_expert *ex = NULL;
    get_put(ec, 1, 0);
    r1_expert_cache__inject_fault(ec, 2, R1_FAULT_EIO); /* the second read from now */
    get_put(ec, 1, 1);
    ck_assert_int_eq(r1_expert_cache__acquire(ec, 1, 2, &ex), R1_ERR_IO);
    ck_assert_ptr_null(ex);
    ck_assert_ptr_nonnull(strstr(r1_error__message(), "layer 1, expert 2"));
    ck_assert_ptr_nonnull(strstr(r1_error__message(), "offset"));
    get_put(ec, 1, 2); /* the store still serves it afterwards */
    r1_expert_cache__inject_fault(ec, 1, R1_FAULT_SHORT);
    ck_assert_int_eq(r1_expert_cache__acquire(ec, 3, 4, &ex), R1_ERR_IO);
    ck_assert_ptr_nonnull(strstr(r1_error__message(), "short read"));
    get_put(ec, 3, 4);
    r1_expert_cache_counters k;
    r1_expert_cache__counters(ec, &k);
    ck_assert_uint_eq(k.misses, 6);                            /* failed loads count as misses */
    ck_assert_uint_eq(k.bytes_decompressed, 4 * expert_bytes); /* failed loads produce nothing */
    ck_assert_uint_le(k.current_bytes, 4 * expert_bytes);
    r1_expert_cache__destroy(ec);
}
END_TEST

START_TEST(test_expert_cache_compressed_bf16_experts)
{
    /* tiny-v2lite experts are bf16: zstd after byte-plane shuffling */
    r1_container *c;
    ck_assert_int_eq(r1_container__open(&c, v2_path), R1_OK);
    const r1_expert_blob *b = r1_container__expert(c, 1, 3);
    ck_assert_int_eq(b->codec, R1M_CODEC_ZSTD);
    ck_assert_int_eq(b->filter, R1M_FILTER_BYTEPLANE2);
    r1_expert_cache *ec;
    ck_assert_int_eq(r1_expert_cache__create(&ec, c, 0), R1_OK);
    const r1_expert *ex;
    ck_assert_int_eq(r1_expert_cache__acquire(ec, 1, 3, &ex), R1_OK);
    ck_assert_int_eq(ex->gate_proj.dtype, R1_DTYPE_BF16);
    ck_assert_int_eq(ex->down_proj.shape[0], 64);
    ck_assert_int_eq(ex->down_proj.shape[1], 32);
    ck_assert_ptr_null(ex->up_proj.scale);
    ck_assert_uint_eq(r1_checksum__xxh64(ex->gate_proj.data, (size_t)b->raw_size), b->checksum);
    r1_expert_cache_counters k;
    r1_expert_cache__counters(ec, &k);
    ck_assert_uint_lt(k.bytes_read, k.bytes_decompressed);
    r1_expert_cache__release(ec, ex);
    r1_expert_cache__destroy(ec);
    r1_container__close(c);
}
END_TEST

static Suite *expert_cache_suite(void)
{
    Suite *s = suite_create("expert_cache");
    TCase *tc = tcase_create("store");
    tcase_add_unchecked_fixture(tc, setup_files, teardown_files);
    tcase_add_checked_fixture(tc, setup_container, teardown_container);
    tcase_add_test(tc, test_expert_cache_budget_too_small);
    tcase_add_test(tc, test_expert_cache_lru_exact_statistics);
    tcase_add_test(tc, test_expert_cache_pinning_and_budget_errors);
    tcase_add_test(tc, test_expert_cache_concurrent_requests);
    tcase_add_test(tc, test_expert_cache_io_faults);
    tcase_add_test(tc, test_expert_cache_compressed_bf16_experts);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(expert_cache_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
