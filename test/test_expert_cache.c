/* test_expert_cache.c: the expert store: budget, LRU, pinning, statistics, threads, I/O faults,
 * its I/O workers (priorities, acquire_any, errors, prefetch room, joined threads). */
#include <check.h>
#include <dirent.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checksum.h"
#include "container.h"
#include "convert.h"
#include "error.h"
#include "expert_cache.h"
#include "expert_policy.h"
#include "r1m_testutil.h"
#include "thread_testutil.h"

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
    ck_assert_int_eq(r1_expert_cache__create2(&ec, c3, 5 * expert_bytes, 0, R1_EXPERT_POLICY_LRU),
                     R1_OK);
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
    ck_assert_msg(strstr(r1_error__message(), "short read") != NULL, "%s", r1_error__message());
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

START_TEST(test_expert_cache_workers_joined_at_destroy)
{
    r1_expert_cache *ec;
    /* a first store, so that a sanitizer's helper thread, started with the first thread, is
     * counted in before */
    ck_assert_int_eq(r1_expert_cache__create2(&ec, c3, 0, 1, R1_EXPERT_POLICY_DEFAULT), R1_OK);
    r1_expert_cache__destroy(ec);
    int before = count_threads();
    ck_assert_int_eq(r1_expert_cache__create2(&ec, c3, 0, 5, R1_EXPERT_POLICY_DEFAULT), R1_OK);
    ck_assert_int_eq(count_threads(), before + 5);
    r1_expert_cache_counters k;
    r1_expert_cache__counters(ec, &k);
    ck_assert_uint_eq(k.io_workers, 5);
    get_put(ec, 1, 2);
    /* destroyed with loads still queued (held) and one in the prefetch queue */
    r1_expert_cache__hold_workers(ec, 1);
    ck_assert_int_eq(r1_expert_cache__request(ec, 2, 3, R1_EXPERT_DEMAND), R1_OK);
    ck_assert_int_eq(r1_expert_cache__request(ec, 2, 4, R1_EXPERT_PREFETCH), R1_OK);
    r1_expert_cache__destroy(ec);
    ck_assert_int_eq(settled_threads(before), before);
    ck_assert_int_eq(r1_expert_cache__create(&ec, c3, 0), R1_OK); /* the default count */
    r1_expert_cache__counters(ec, &k);
    ck_assert_uint_eq(k.io_workers, R1_EXPERT_IO_WORKERS_DEFAULT);
    ck_assert_int_eq(count_threads(), before + R1_EXPERT_IO_WORKERS_DEFAULT);
    r1_expert_cache__destroy(ec);
    ck_assert_int_eq(settled_threads(before), before);
    ck_assert_int_eq(r1_expert_cache__create2(&ec, c3, 0, -1, 0), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_expert_cache__create2(&ec, c3, 0, R1_EXPERT_IO_WORKERS_MAX + 1, 0),
                     R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_expert_cache__create2(&ec, c3, 0, 1, 99), R1_ERR_INVALID_ARG);
    ck_assert_ptr_null(ec);
    ck_assert_int_eq(count_threads(), before);
}
END_TEST

/* A demand submitted behind many prefetches is started first, and so is a queued prefetch asked
 * for again as a demand; with one worker the order is exactly the queues'. */
START_TEST(test_expert_cache_demand_before_prefetch)
{
    /* all in one layer: a demand for a lower layer would begin a new pass and drop the queued
     * prefetches */
    for (int workers = 1; workers <= 3; workers += 2) {
        r1_expert_cache *ec;
        ck_assert_int_eq(r1_expert_cache__create2(&ec, c3, 0, workers, 0), R1_OK);
        r1_expert_cache__hold_workers(ec, 1);
        for (int e = 0; e < 16; e++)
            if (e != 9)
                ck_assert_int_eq(r1_expert_cache__request(ec, 3, e, R1_EXPERT_PREFETCH), R1_OK);
        ck_assert_int_eq(r1_expert_cache__request(ec, 3, 9, R1_EXPERT_DEMAND), R1_OK);
        ck_assert_int_eq(r1_expert_cache__request(ec, 3, 11, R1_EXPERT_DEMAND), R1_OK);
        /* asking again changes nothing */
        ck_assert_int_eq(r1_expert_cache__request(ec, 3, 11, R1_EXPERT_PREFETCH), R1_OK);
        ck_assert_int_eq(r1_expert_cache__request(ec, 3, 9, R1_EXPERT_DEMAND), R1_OK);
        r1_expert_cache_counters k;
        r1_expert_cache__counters(ec, &k);
        ck_assert_uint_eq(k.prefetch_issued, 15);
        ck_assert_uint_eq(k.demand_misses, 2);
        ck_assert_uint_eq(k.demand_misses_prefetched, 1); /* (3, 11) was on its way */
        ck_assert_uint_eq(r1_expert_cache__start_order(ec, 3, 9), 0);
        r1_expert_cache__hold_workers(ec, 0);
        const r1_expert *a, *b;
        ck_assert_int_eq(r1_expert_cache__acquire(ec, 3, 9, &a), R1_OK);
        ck_assert_int_eq(r1_expert_cache__acquire(ec, 3, 11, &b), R1_OK);
        check_data(a);
        check_data(b);
        ck_assert_uint_eq(r1_expert_cache__start_order(ec, 3, 9), 1);
        ck_assert_uint_eq(r1_expert_cache__start_order(ec, 3, 11), 2);
        for (int e = 0; e < 16; e++) { /* every other prefetch was started after both */
            if (e == 9 || e == 11)
                continue;
            const r1_expert *p;
            ck_assert_int_eq(r1_expert_cache__acquire(ec, 3, e, &p), R1_OK);
            ck_assert_uint_gt(r1_expert_cache__start_order(ec, 3, e), 2);
            check_data(p);
            r1_expert_cache__release(ec, p);
        }
        r1_expert_cache__release(ec, a);
        r1_expert_cache__release(ec, b);
        r1_expert_cache__counters(ec, &k);
        ck_assert_uint_eq(k.prefetch_used, 15);
        ck_assert_uint_eq(k.prefetch_wasted_bytes, 0);
        ck_assert_uint_eq(k.bytes_decompressed, 16 * expert_bytes);
        r1_expert_cache__destroy(ec);
    }
}
END_TEST

/* acquire_any: the lowest resident index without waiting; then the others as they arrive. */
START_TEST(test_expert_cache_acquire_any)
{
    r1_expert_cache *ec;
    ck_assert_int_eq(r1_expert_cache__create2(&ec, c3, 0, 2, 0), R1_OK);
    get_put(ec, 1, 7);
    get_put(ec, 1, 5);
    r1_expert_cache__hold_workers(ec, 1);
    const int32_t list[4] = {3, 7, 12, 5};
    uint8_t taken[4] = {0};
    int32_t index;
    const r1_expert *ex[4];
    ck_assert_int_eq(r1_expert_cache__acquire_any(ec, 1, list, 4, taken, &index, &ex[0]), R1_OK);
    ck_assert_int_eq(index, 1); /* 7 and 5 are resident: the lower index */
    ck_assert_int_eq(ex[0]->expert, 7);
    taken[1] = 1;
    ck_assert_int_eq(r1_expert_cache__acquire_any(ec, 1, list, 4, taken, &index, &ex[1]), R1_OK);
    ck_assert_int_eq(index, 3);
    taken[3] = 1;
    r1_expert_cache__hold_workers(ec, 0); /* 3 and 12 were requested by the calls above */
    for (int i = 2; i < 4; i++) {
        ck_assert_int_eq(r1_expert_cache__acquire_any(ec, 1, list, 4, taken, &index, &ex[i]),
                         R1_OK);
        ck_assert(index == 0 || index == 2);
        ck_assert_int_eq(ex[i]->expert, list[index]);
        check_data(ex[i]);
        taken[index] = 1;
    }
    int32_t got = 0;
    ck_assert_int_eq(r1_expert_cache__acquire_any(ec, 1, list, 4, taken, &got, &ex[0]),
                     R1_ERR_INVALID_ARG);
    const int32_t bad[2] = {1, 16};
    ck_assert_int_eq(r1_expert_cache__acquire_any(ec, 1, bad, 2, NULL, &got, &ex[0]),
                     R1_ERR_OUT_OF_RANGE);
    ck_assert_int_eq(r1_expert_cache__request(ec, 1, 16, R1_EXPERT_DEMAND), R1_ERR_OUT_OF_RANGE);
    ck_assert_int_eq(r1_expert_cache__request(ec, 1, 1, 7), R1_ERR_INVALID_ARG);
    for (int e = 0; e < 16; e++)
        if (e == 3 || e == 5 || e == 7 || e == 12) {
            const r1_expert *p;
            ck_assert_int_eq(r1_expert_cache__acquire(ec, 1, e, &p), R1_OK);
            r1_expert_cache__release(ec, p); /* the extra pin */
            r1_expert_cache__release(ec, p); /* acquire_any's */
        }
    r1_expert_cache_counters k;
    r1_expert_cache__counters(ec, &k);
    ck_assert_uint_gt(k.stall_ns, 0); /* the last two waited */
    ck_assert_uint_eq(k.misses, 4);
    ck_assert_uint_eq(k.hits, 2 + 4);
    r1_expert_cache__destroy(ec);
}
END_TEST

/* A load that fails in a worker reaches the acquiring thread with its message, also through
 * acquire_any and for a demand that caught up with a prefetch; a failed prefetch nobody asked
 * for stays silent. */
START_TEST(test_expert_cache_worker_errors)
{
    r1_expert_cache *ec;
    /* one worker: the reads happen in the order of the demand queue */
    ck_assert_int_eq(r1_expert_cache__create2(&ec, c3, 4 * expert_bytes, 1, 0), R1_OK);
    r1_expert_cache__inject_fault(ec, 1, R1_FAULT_EIO);
    const int32_t list[2] = {4, 6};
    uint8_t taken[2] = {0, 0};
    int32_t index;
    const r1_expert *ex = NULL;
    r1_expert_cache__hold_workers(ec, 1); /* (1, 4) is read first */
    ck_assert_int_eq(r1_expert_cache__request(ec, 1, 4, R1_EXPERT_DEMAND), R1_OK);
    r1_expert_cache__hold_workers(ec, 0);
    r1_status st = r1_expert_cache__acquire_any(ec, 1, list, 2, taken, &index, &ex);
    if (st == R1_OK) { /* (1, 6) arrived first: the failure comes next */
        ck_assert_int_eq(index, 1);
        r1_expert_cache__release(ec, ex);
        taken[1] = 1;
        st = r1_expert_cache__acquire_any(ec, 1, list, 2, taken, &index, &ex);
    }
    ck_assert_int_eq(st, R1_ERR_IO);
    ck_assert_ptr_null(ex);
    ck_assert_msg(strstr(r1_error__message(), "layer 1, expert 4") != NULL, "%s",
                  r1_error__message());
    ck_assert_ptr_nonnull(strstr(r1_error__message(), "injected"));
    get_put(ec, 1, 4); /* a new attempt succeeds */
    /* a prefetch fails: nobody hears of it, the demand that follows loads it again */
    r1_expert_cache_counters k;
    r1_expert_cache__counters(ec, &k);
    uint64_t load_ns = k.load_ns; /* grows when a load ends, failed or not */
    r1_expert_cache__inject_fault(ec, 1, R1_FAULT_SHORT);
    ck_assert_int_eq(r1_expert_cache__request(ec, 2, 1, R1_EXPERT_PREFETCH), R1_OK);
    do {
        usleep(1000);
        r1_expert_cache__counters(ec, &k);
    } while (k.load_ns == load_ns);
    get_put(ec, 2, 1);
    /* a demand that catches a prefetch in flight gets the prefetch's failure */
    r1_expert_cache__hold_workers(ec, 1);
    ck_assert_int_eq(r1_expert_cache__request(ec, 3, 2, R1_EXPERT_PREFETCH), R1_OK);
    r1_expert_cache__inject_fault(ec, 1, R1_FAULT_EIO);
    ck_assert_int_eq(r1_expert_cache__request(ec, 3, 2, R1_EXPERT_DEMAND), R1_OK);
    r1_expert_cache__hold_workers(ec, 0);
    const int32_t two = 2;
    ck_assert_int_eq(r1_expert_cache__acquire_any(ec, 3, &two, 1, NULL, &index, &ex), R1_ERR_IO);
    ck_assert_ptr_nonnull(strstr(r1_error__message(), "layer 3, expert 2"));
    get_put(ec, 3, 4); /* the store still serves others */
    ck_assert_int_eq(r1_expert_cache__acquire(ec, 3, 2, &ex), R1_OK); /* a new request retries */
    r1_expert_cache__release(ec, ex);
    r1_expert_cache__counters(ec, &k);
    ck_assert_uint_le(k.peak_bytes, 4 * expert_bytes);
    r1_expert_cache__destroy(ec);
}
END_TEST

/* Prefetches never evict pinned experts or those the last two passes demanded; without room
 * they are dropped, not kept; two passes later the old experts are theirs to evict. */
START_TEST(test_expert_cache_prefetch_room)
{
    r1_expert_cache *ec;
    ck_assert_int_eq(r1_expert_cache__create2(&ec, c3, 4 * expert_bytes, 2, 0), R1_OK);
    const r1_expert *ex[4];
    for (int e = 0; e < 4; e++)
        ck_assert_int_eq(r1_expert_cache__acquire(ec, 2, e, &ex[e]), R1_OK);
    ck_assert_int_eq(r1_expert_cache__request(ec, 3, 0, R1_EXPERT_PREFETCH), R1_OK);
    r1_expert_cache_counters k;
    do { /* dropped: every resident expert is pinned */
        usleep(1000);
        r1_expert_cache__counters(ec, &k);
    } while (k.prefetch_dropped == 0);
    for (int e = 0; e < 4; e++)
        r1_expert_cache__release(ec, ex[e]);
    ck_assert_int_eq(r1_expert_cache__request(ec, 3, 1, R1_EXPERT_PREFETCH), R1_OK);
    do { /* dropped: all four were demanded in this pass */
        usleep(1000);
        r1_expert_cache__counters(ec, &k);
    } while (k.prefetch_dropped < 2);
    ck_assert_uint_eq(k.evictions, 0);
    ck_assert_uint_eq(k.prefetch_issued, 2);
    get_put(ec, 1, 0); /* a lower layer: a new pass; this demand evicts one of layer 2 */
    ck_assert_int_eq(r1_expert_cache__request(ec, 3, 1, R1_EXPERT_PREFETCH), R1_OK);
    do { /* dropped: the others were demanded by the last pass, hotter than a guess */
        usleep(1000);
        r1_expert_cache__counters(ec, &k);
    } while (k.prefetch_dropped < 3);
    ck_assert_uint_eq(k.evictions, 1);
    get_put(ec, 1, 1); /* another pass: layer 2's experts are two passes old */
    ck_assert_int_eq(r1_expert_cache__request(ec, 3, 1, R1_EXPERT_PREFETCH), R1_OK);
    const r1_expert *p;
    ck_assert_int_eq(r1_expert_cache__acquire(ec, 3, 1, &p), R1_OK);
    check_data(p);
    r1_expert_cache__release(ec, p);
    r1_expert_cache__counters(ec, &k);
    ck_assert_uint_eq(k.prefetch_issued, 4);
    ck_assert_uint_eq(k.prefetch_used, 1);
    ck_assert_uint_eq(k.evictions, 3);
    /* a prefetch evicted before use is waste */
    ck_assert_int_eq(r1_expert_cache__request(ec, 3, 9, R1_EXPERT_PREFETCH), R1_OK);
    do {
        usleep(1000);
        r1_expert_cache__counters(ec, &k);
    } while (k.bytes_decompressed < 8 * expert_bytes);
    for (int e = 10; e < 14; e++)
        get_put(ec, 3, e); /* fill with demands of this pass: (3, 9) goes */
    r1_expert_cache__counters(ec, &k);
    ck_assert_uint_eq(k.prefetch_wasted_bytes, expert_bytes);
    ck_assert_uint_le(k.peak_bytes, 4 * expert_bytes);
    r1_expert_cache__destroy(ec);
}
END_TEST

/* Waits until the store has decoded n experts' bytes or dropped `dropped` prefetches. */
static void wait_loads(r1_expert_cache *ec, uint64_t n, uint64_t dropped,
                       r1_expert_cache_counters *k)
{
    do {
        usleep(1000);
        r1_expert_cache__counters(ec, k);
    } while (k->bytes_decompressed < n * expert_bytes && k->prefetch_dropped < dropped);
}

/* The lookahead's prefetch for the first MoE layer comes before that layer's demand: being for
 * a lower layer than the last request, it begins the new pass itself, so the experts the
 * passes before last demanded are old enough for it to evict (else it would be dropped). */
START_TEST(test_expert_cache_prefetch_starts_pass)
{
    r1_expert_cache *ec;
    ck_assert_int_eq(r1_expert_cache__create2(&ec, c3, 4 * expert_bytes, 2, R1_EXPERT_POLICY_LRU),
                     R1_OK);
    for (int e = 0; e < 4; e++)
        get_put(ec, 2, e); /* pass 1 */
    get_put(ec, 1, 4);     /* pass 2: evicts (2, 0) */
    get_put(ec, 3, 5);     /* evicts (2, 1) */
    ck_assert_int_eq(r1_expert_cache__request(ec, 1, 6, R1_EXPERT_PREFETCH), R1_OK); /* pass 3 */
    r1_expert_cache_counters k;
    wait_loads(ec, 7, 1, &k);
    ck_assert_uint_eq(k.prefetch_dropped, 0);
    ck_assert_uint_eq(k.evictions, 3);
    get_put(ec, 1, 6);
    r1_expert_cache__counters(ec, &k);
    ck_assert_uint_eq(k.prefetch_used, 1);
    ck_assert_uint_eq(k.misses, 6);
    r1_expert_cache__destroy(ec);
}
END_TEST

/* A prediction is protected until its layer has run: another prefetch cannot evict it. Once
 * the requests move past its layer without demanding it, it is a wrong one, and the first
 * thing a prefetch may evict (waste). */
START_TEST(test_expert_cache_prefetch_evicts_wrong_predictions)
{
    r1_expert_cache *ec;
    ck_assert_int_eq(r1_expert_cache__create2(&ec, c3, 4 * expert_bytes, 2, R1_EXPERT_POLICY_LRU),
                     R1_OK);
    get_put(ec, 1, 0);
    get_put(ec, 1, 1);
    ck_assert_int_eq(r1_expert_cache__request(ec, 2, 5, R1_EXPERT_PREFETCH), R1_OK);
    r1_expert_cache_counters k;
    wait_loads(ec, 3, 1, &k);
    get_put(ec, 2, 0); /* layer 2 runs without (2, 5) */
    ck_assert_int_eq(r1_expert_cache__request(ec, 3, 7, R1_EXPERT_PREFETCH), R1_OK);
    wait_loads(ec, 5, 1, &k);
    ck_assert_uint_eq(k.prefetch_dropped, 0);
    ck_assert_uint_eq(k.prefetch_wasted_bytes, expert_bytes); /* (3, 7) took (2, 5)'s place */
    ck_assert_int_eq(r1_expert_cache__request(ec, 3, 8, R1_EXPERT_PREFETCH), R1_OK);
    wait_loads(ec, 6, 1, &k);
    ck_assert_uint_eq(k.prefetch_dropped, 1); /* only (3, 7) was old enough, and it is pending */
    ck_assert_uint_eq(k.evictions, 1);
    get_put(ec, 3, 7);
    r1_expert_cache__counters(ec, &k);
    ck_assert_uint_eq(k.prefetch_used, 1);
    ck_assert_uint_eq(k.misses, 3);
    r1_expert_cache__destroy(ec);
}
END_TEST

/* With the minimum budget, a caller that asks for more experts than fit gets them all, one at a
 * time, as long as it releases each: a demand waits for room instead of failing. */
START_TEST(test_expert_cache_demands_wait_for_room)
{
    r1_expert_cache *ec;
    ck_assert_int_eq(r1_expert_cache__create2(&ec, c3, 4 * expert_bytes, 4, 0), R1_OK);
    int32_t list[16];
    uint8_t taken[16] = {0};
    for (int e = 0; e < 16; e++) {
        list[e] = 15 - e;
        ck_assert_int_eq(r1_expert_cache__request(ec, 1, list[e], R1_EXPERT_DEMAND), R1_OK);
    }
    for (int i = 0; i < 16; i++) {
        int32_t index;
        const r1_expert *ex;
        ck_assert_msg(r1_expert_cache__acquire_any(ec, 1, list, 16, taken, &index, &ex) == R1_OK,
                      "%s", r1_error__message());
        ck_assert_int_eq(ex->expert, list[index]);
        check_data(ex);
        taken[index] = 1;
        r1_expert_cache__release(ec, ex);
    }
    r1_expert_cache_counters k;
    r1_expert_cache__counters(ec, &k);
    ck_assert_uint_le(k.peak_bytes, 4 * expert_bytes);
    ck_assert_uint_eq(k.misses, 16);
    r1_expert_cache__destroy(ec);
}
END_TEST

/* An expert asked for many times (once per token routed to it) counts once and is taken by one
 * pin; experts asked for and then left untaken do not stop a caller that waits for others. */
START_TEST(test_expert_cache_repeated_and_untaken_demands)
{
    r1_expert_cache *ec;
    ck_assert_int_eq(r1_expert_cache__create2(&ec, c3, 4 * expert_bytes, 2, 0), R1_OK);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(r1_expert_cache__request(ec, 1, 0, R1_EXPERT_DEMAND), R1_OK);
    get_put(ec, 1, 0);
    get_put(ec, 1, 0);
    r1_expert_cache_counters k;
    r1_expert_cache__counters(ec, &k);
    ck_assert_uint_eq(k.misses, 1);
    ck_assert_uint_eq(k.hits, 1);
    /* four experts asked for and never taken fill the budget; a fifth is still served */
    for (int e = 1; e <= 4; e++)
        ck_assert_int_eq(r1_expert_cache__request(ec, 1, e, R1_EXPERT_DEMAND), R1_OK);
    do {
        usleep(1000);
        r1_expert_cache__counters(ec, &k);
    } while (k.bytes_decompressed < 5 * expert_bytes);
    get_put(ec, 1, 5);
    get_put(ec, 1, 6);
    r1_expert_cache__counters(ec, &k);
    ck_assert_uint_le(k.peak_bytes, 4 * expert_bytes);
    r1_expert_cache__destroy(ec);
}
END_TEST

static void *prefetcher(void *arg)
{
    worker *w = arg;
    for (int i = 0; i < 400; i++) {
        w->seed = w->seed * 1103515245u + 12345u;
        int layer = 1 + (int)((w->seed >> 8) % 3), expert = (int)((w->seed >> 16) % 16);
        if (r1_expert_cache__request(w->ec, layer, expert, R1_EXPERT_PREFETCH) != R1_OK)
            w->errors++;
    }
    return NULL;
}

static void *any_hammer(void *arg)
{
    worker *w = arg;
    for (int i = 0; i < 100; i++) {
        int32_t list[4];
        uint8_t taken[4] = {0};
        w->seed = w->seed * 1103515245u + 12345u;
        int layer = 1 + (int)((w->seed >> 8) % 3);
        for (int j = 0; j < 4; j++) /* distinct experts */
            list[j] = (int32_t)(((w->seed >> 16) + (unsigned)j * 5u) % 16);
        for (int j = 0; j < 4; j++) {
            int32_t index;
            const r1_expert *ex;
            r1_status st = r1_expert_cache__acquire_any(w->ec, layer, list, 4, taken, &index, &ex);
            if (st == R1_ERR_BUDGET)
                break;
            if (st != R1_OK || taken[index] || ex->expert != list[index]) {
                w->errors++;
                break;
            }
            const r1_expert_blob *b = r1_container__expert(c3, layer, ex->expert);
            if (r1_checksum__xxh64(ex->gate_proj.data, (size_t)b->raw_size) != b->checksum)
                w->errors++;
            taken[index] = 1;
            r1_expert_cache__release(w->ec, ex);
        }
    }
    return NULL;
}

/* Many threads acquiring overlapping experts (one at a time and four at a time) while others
 * prefetch, with a small budget: data always right, the budget never exceeded (run under TSan
 * too). */
START_TEST(test_expert_cache_concurrent_with_prefetch)
{
    r1_expert_cache *ec;
    uint64_t budget = 7 * expert_bytes;
    ck_assert_int_eq(r1_expert_cache__create2(&ec, c3, budget, 3, R1_EXPERT_POLICY_DEFAULT), R1_OK);
    pthread_t t[6];
    worker w[6];
    for (int i = 0; i < 6; i++) {
        w[i] = (worker){ec, (unsigned)(i * 104729 + 3), 0};
        void *(*fn)(void *) = i < 2 ? hammer : i < 4 ? any_hammer : prefetcher;
        ck_assert_int_eq(pthread_create(&t[i], NULL, fn, &w[i]), 0);
    }
    for (int i = 0; i < 6; i++) {
        pthread_join(t[i], NULL);
        ck_assert_int_eq(w[i].errors, 0);
    }
    r1_expert_cache_counters k;
    r1_expert_cache__counters(ec, &k);
    ck_assert_uint_le(k.peak_bytes, budget);
    ck_assert_uint_gt(k.prefetch_issued, 0);
    ck_assert_uint_le(k.current_bytes, budget);
    r1_expert_cache__destroy(ec);
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
    tcase_add_test(tc, test_expert_cache_workers_joined_at_destroy);
    tcase_add_test(tc, test_expert_cache_demand_before_prefetch);
    tcase_add_test(tc, test_expert_cache_acquire_any);
    tcase_add_test(tc, test_expert_cache_worker_errors);
    tcase_add_test(tc, test_expert_cache_prefetch_room);
    tcase_add_test(tc, test_expert_cache_prefetch_starts_pass);
    tcase_add_test(tc, test_expert_cache_prefetch_evicts_wrong_predictions);
    tcase_add_test(tc, test_expert_cache_demands_wait_for_room);
    tcase_add_test(tc, test_expert_cache_repeated_and_untaken_demands);
    tcase_add_test(tc, test_expert_cache_concurrent_with_prefetch);
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
