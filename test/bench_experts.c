/* bench_experts.c: expert-load throughput of the expert store, and the compression of the expert
 * blobs of an .r1m file (built, run by hand; numbers in docs/performance.md).
 *
 * Usage: bench_experts [--threads N] [--layers A:B] [--cold] [--report] MODEL.r1m
 *   --threads N   loader threads (default 1); each takes the next (layer, expert) in turn
 *   --layers A:B  MoE layers A..B-1 (default: the first 3 layers that have routed experts)
 *   --cold        sync and drop the page cache (/proc/sys/vm/drop_caches, root) before loading
 *   --report      also print, per expert dtype, the stored / raw sizes of every blob in the file
 * Every expert of the layers is acquired and released once with an unbounded store, so each is
 * one miss: read (pread), checksum, zstd decompression and un-shuffling. */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "container.h"
#include "dtype.h"
#include "expert_cache.h"

typedef struct job {
    r1_expert_cache *ec;
    int64_t layer0, n_layers, n_experts;
    atomic_int_fast64_t next;
    atomic_int failed;
} job;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void *worker(void *arg)
{
    job *j = arg;
    int64_t total = j->n_layers * j->n_experts;
    for (;;) {
        int64_t i = atomic_fetch_add(&j->next, 1);
        if (i >= total)
            break;
        const r1_expert *ex = NULL;
        r1_status st =
            r1_expert_cache__acquire(j->ec, j->layer0 + i / j->n_experts, i % j->n_experts, &ex);
        if (st != R1_OK) {
            fprintf(stderr, "bench_experts: acquire: %s: %s\n", r1_status_name(st),
                    r1_last_error());
            atomic_store(&j->failed, 1);
            break;
        }
        r1_expert_cache__release(j->ec, ex);
    }
    return NULL;
}

static const char *dtype_name(int32_t d)
{
    static const char *names[] = {"f32", "f16", "bf16", "fp8_e4m3", "q8_0", "q4_0"};
    return d >= 0 && d < (int32_t)(sizeof names / sizeof names[0]) ? names[d] : "?";
}

static void report(const r1_container *c)
{
    uint64_t n[R1_DTYPE_COUNT] = {0}, raw[R1_DTYPE_COUNT] = {0}, stored[R1_DTYPE_COUNT] = {0};
    uint64_t zstd[R1_DTYPE_COUNT] = {0}, shuf[R1_DTYPE_COUNT] = {0};
    for (int32_t i = 0; i < r1_container__n_expert_blobs(c); i++) {
        const r1_expert_blob *b = r1_container__expert_at(c, i);
        int32_t d = b->dtype[0];
        if (d < 0 || d >= R1_DTYPE_COUNT)
            continue;
        n[d]++;
        raw[d] += b->raw_size;
        stored[d] += b->stored_size;
        zstd[d] += b->codec == R1M_CODEC_ZSTD;
        shuf[d] += b->filter != R1M_FILTER_NONE; /* byte-plane (16-bit) or nibble-plane (FP8) */
    }
    printf("expert blobs by dtype (stored/raw over the whole file):\n");
    for (int32_t d = 0; d < R1_DTYPE_COUNT; d++)
        if (n[d])
            printf("  %-9s blobs %6" PRIu64 "  raw %10.1f MB  stored %10.1f MB  ratio %.4f  "
                   "zstd %" PRIu64 "  filtered %" PRIu64 "\n",
                   dtype_name(d), n[d], (double)raw[d] / 1e6, (double)stored[d] / 1e6,
                   (double)stored[d] / (double)raw[d], zstd[d], shuf[d]);
    printf("  file %.1f MB, dense %.1f MB, experts raw %.1f MB\n",
           (double)r1_container__file_size(c) / 1e6, (double)r1_container__dense_bytes(c) / 1e6,
           (double)r1_container__expert_raw_bytes(c) / 1e6);
}

int main(int argc, char **argv)
{
    int threads = 1, cold = 0, want_report = 0;
    int64_t la = -1, lb = -1;
    const char *path = NULL;
    for (int a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "--threads") && a + 1 < argc) {
            threads = atoi(argv[++a]);
        } else if (!strcmp(argv[a], "--layers") && a + 1 < argc) {
            if (sscanf(argv[++a], "%" SCNd64 ":%" SCNd64, &la, &lb) != 2)
                la = lb = -2;
        } else if (!strcmp(argv[a], "--cold")) {
            cold = 1;
        } else if (!strcmp(argv[a], "--report")) {
            want_report = 1;
        } else if (argv[a][0] != '-' && !path) {
            path = argv[a];
        } else {
            path = NULL;
            break;
        }
    }
    if (!path || threads < 1 || threads > 256 || la < -1) {
        fprintf(stderr, "usage: bench_experts [--threads N] [--layers A:B] [--cold] [--report] "
                        "MODEL.r1m\n");
        return 2;
    }
    r1_container *c = NULL;
    r1_status st = r1_container__open(&c, path);
    if (st != R1_OK) {
        fprintf(stderr, "bench_experts: %s: %s: %s\n", path, r1_status_name(st), r1_last_error());
        return 1;
    }
    if (want_report)
        report(c);
    const r1_model_config *cfg = r1_container__config(c);
    if (la < 0) {
        la = 0;
        while (la < cfg->num_hidden_layers && !r1_container__expert(c, la, 0))
            la++;
        lb = la + 3 < cfg->num_hidden_layers ? la + 3 : cfg->num_hidden_layers;
    }
    for (int64_t l = la; l < lb; l++)
        if (!r1_container__expert(c, l, 0)) {
            fprintf(stderr, "bench_experts: layer %" PRId64 " has no routed experts\n", l);
            return 2;
        }
    if (cold) {
        sync();
        FILE *f = fopen("/proc/sys/vm/drop_caches", "w");
        if (!f || fputs("3\n", f) < 0 || fclose(f) != 0) {
            fprintf(stderr, "bench_experts: cannot drop caches (root needed)\n");
            return 1;
        }
    }
    job j = {.layer0 = la, .n_layers = lb - la, .n_experts = cfg->n_routed_experts};
    atomic_init(&j.next, 0);
    atomic_init(&j.failed, 0);
    if ((st = r1_expert_cache__create(&j.ec, c, 0)) != R1_OK) {
        fprintf(stderr, "bench_experts: %s: %s\n", r1_status_name(st), r1_last_error());
        return 1;
    }
    pthread_t tid[256];
    double t0 = now_s();
    for (int i = 0; i < threads; i++)
        pthread_create(&tid[i], NULL, worker, &j);
    for (int i = 0; i < threads; i++)
        pthread_join(tid[i], NULL);
    double wall = now_s() - t0;
    r1_expert_cache_counters k;
    r1_expert_cache__counters(j.ec, &k);
    int64_t n = j.n_layers * j.n_experts;
    printf("%s: layers %" PRId64 "..%" PRId64 ", %" PRId64 " experts, %d thread(s), %s cache\n",
           path, la, lb - 1, n, threads, cold ? "cold" : "warm");
    printf("  misses %" PRIu64 "  bytes_read %.1f MB  bytes_decompressed %.1f MB  wall %.3f s  "
           "load time (sum over threads) %.3f s\n",
           k.misses, (double)k.bytes_read / 1e6, (double)k.bytes_decompressed / 1e6, wall,
           (double)k.load_ns / 1e9);
    printf("  decompressed MB/s: %.1f total, %.1f per thread; read MB/s: %.1f; peak resident "
           "%.1f MB\n",
           (double)k.bytes_decompressed / 1e6 / wall,
           (double)k.bytes_decompressed / 1e6 / wall / threads, (double)k.bytes_read / 1e6 / wall,
           (double)k.peak_bytes / 1e6);
    r1_expert_cache__destroy(j.ec);
    r1_container__close(c);
    return atomic_load(&j.failed) ? 1 : 0;
}
