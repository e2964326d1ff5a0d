/* bench_expert_io.c: drive read throughput by method and queue depth, and the expert store's. */
/*
 * usage: bench_expert_io FILE [--block BYTES] [--seconds S] [--depths 1,2,4,8,16]
 *                             [--methods pread,direct,uring] [--store WORKERS,...]
 *
 * For each method and depth: reads --block-sized blocks at random block-aligned offsets of FILE
 * for --seconds and prints MB/s (10^6 bytes per second).
 *   pread   buffered pread from `depth` threads (the page cache of FILE is dropped first with
 *           POSIX_FADV_DONTNEED, which needs no privilege, so the drive is read, not memory);
 *   direct  O_DIRECT pread from `depth` threads (4 KiB-aligned buffers and offsets);
 *   uring   one thread keeping `depth` O_DIRECT reads in flight through io_uring (built only
 *           where liburing was found).
 * With --store and a .r1m FILE: the expert store itself (lib/experts/expert_cache.c) with each
 * worker count: every expert of the file demanded in index order and taken in completion order with
 * r1_expert_cache__acquire_any, through a budget of 16 experts (so that each load evicts one, as
 * in a store far smaller than the model), in whole passes over the file for at least --seconds;
 * prints stored MB/s, including read, checksum and decode.
 * Blocks of 8-16 MiB are the size of a DeepSeek-V3 or V2-Lite expert in 8 bits.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifdef R1_BENCH_HAVE_URING
#include <liburing.h>
#endif

#include "clock.h"
#include "container.h"
#include "error.h"
#include "expert_cache.h"
#include "expert_policy.h"

enum { ALIGN = 4096, MAX_DEPTH = 64 };

typedef struct run {
    int fd;
    uint64_t file_bytes, block, n_blocks;
    uint64_t deadline_ns;
    _Atomic uint64_t bytes;
    _Atomic uint64_t seed;
    _Atomic int failed;
} run;

/* A random block index (a shared xorshift step, so threads do not read in lockstep). */
static uint64_t next_block(run *r)
{
    uint64_t x = atomic_load(&r->seed), y;
    do {
        y = x;
        y ^= y << 13;
        y ^= y >> 7;
        y ^= y << 17;
    } while (!atomic_compare_exchange_weak(&r->seed, &x, y));
    return y % r->n_blocks;
}

static void *pread_thread(void *arg)
{
    run *r = arg;
    uint8_t *buf = aligned_alloc(ALIGN, (size_t)r->block);
    if (buf == NULL) {
        atomic_store(&r->failed, 1);
        return NULL;
    }
    while (r1_clock__now_ns() < r->deadline_ns) {
        uint64_t off = next_block(r) * r->block, got = 0;
        while (got < r->block) {
            ssize_t n = pread(r->fd, buf + got, (size_t)(r->block - got), (off_t)(off + got));
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                atomic_store(&r->failed, 1);
                free(buf);
                return NULL;
            }
            got += (uint64_t)n;
        }
        atomic_fetch_add(&r->bytes, got);
    }
    free(buf);
    return NULL;
}

static double threads_mbps(run *r, int depth, double seconds)
{
    pthread_t t[MAX_DEPTH];
    uint64_t t0 = r1_clock__now_ns();
    r->deadline_ns = t0 + (uint64_t)(seconds * 1e9);
    int started = 0;
    for (int i = 0; i < depth; i++)
        started += pthread_create(&t[i], NULL, pread_thread, r) == 0;
    for (int i = 0; i < started; i++)
        pthread_join(t[i], NULL);
    double dt = (double)(r1_clock__now_ns() - t0) / 1e9;
    return started == depth && !atomic_load(&r->failed) ? (double)atomic_load(&r->bytes) / dt / 1e6
                                                        : -1.0;
}

#ifdef R1_BENCH_HAVE_URING
static double uring_mbps(run *r, int depth, double seconds)
{
    struct io_uring ring;
    if (io_uring_queue_init((unsigned)depth, &ring, 0) != 0)
        return -1.0;
    uint8_t *bufs[MAX_DEPTH];
    int ok = 1;
    for (int i = 0; i < depth; i++)
        ok &= (bufs[i] = aligned_alloc(ALIGN, (size_t)r->block)) != NULL;
    uint64_t t0 = r1_clock__now_ns(), deadline = t0 + (uint64_t)(seconds * 1e9), bytes = 0;
    int in_flight = 0;
    for (int i = 0; ok && i < depth; i++) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
        io_uring_prep_read(sqe, r->fd, bufs[i], (unsigned)r->block, next_block(r) * r->block);
        io_uring_sqe_set_data(sqe, bufs[i]);
        in_flight++;
    }
    if (ok)
        io_uring_submit(&ring);
    while (ok && in_flight > 0) {
        struct io_uring_cqe *cqe;
        if (io_uring_wait_cqe(&ring, &cqe) != 0) {
            ok = 0;
            break;
        }
        uint8_t *buf = io_uring_cqe_get_data(cqe);
        if (cqe->res != (int)r->block)
            ok = 0; /* whole blocks only: offsets are block-aligned inside the file */
        else
            bytes += (uint64_t)cqe->res;
        io_uring_cqe_seen(&ring, cqe);
        in_flight--;
        if (ok && r1_clock__now_ns() < deadline) {
            struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
            io_uring_prep_read(sqe, r->fd, buf, (unsigned)r->block, next_block(r) * r->block);
            io_uring_sqe_set_data(sqe, buf);
            io_uring_submit(&ring);
            in_flight++;
        }
    }
    double dt = (double)(r1_clock__now_ns() - t0) / 1e9;
    io_uring_queue_exit(&ring);
    for (int i = 0; i < depth; i++)
        free(bufs[i]);
    return ok ? (double)bytes / dt / 1e6 : -1.0;
}
#endif

/* The store: every expert of the file demanded and taken in completion order, one layer at a
 * time, as a forward pass does. */
static double store_mbps(const char *path, int32_t workers, double seconds, uint64_t *stored_out,
                         int *direct, double *coded_share)
{
    r1_container *c = NULL;
    if (r1_container__open(&c, path) != R1_OK)
        return -1.0;
    int32_t n_coded = 0, n_blobs = r1_container__n_expert_blobs(c);
    for (int32_t i = 0; i < n_blobs; i++)
        n_coded += r1_container__expert_at(c, i)->codec != R1M_CODEC_RAW;
    *coded_share = n_blobs ? (double)n_coded / n_blobs : 0.0;
    r1_expert_cache *ec = NULL;
    const r1_model_config *g = r1_container__config(c);
    /* 16 experts: every load but the first few evicts one, as in a store far smaller than the
     * model */
    uint64_t budget = r1_container__max_expert_bytes(c) * 16;
    if (r1_expert_cache__create2(&ec, c, budget, workers, R1_EXPERT_POLICY_LRU) != R1_OK) {
        r1_container__close(c);
        return -1.0;
    }
    int64_t n_layers = r1_model_config__n_layers_stored(g), n_experts = g->n_routed_experts;
    int32_t *list = malloc((size_t)n_experts * sizeof *list);
    uint8_t *taken = malloc((size_t)n_experts);
    uint64_t t0 = r1_clock__now_ns(), stored = 0;
    int ok = list != NULL && taken != NULL;
    /* whole passes over the file's experts until the time is up */
    for (int64_t l = 0; ok && l < n_layers; l++) {
        if (l == 0)
            /* not in the page cache: each blob is read from the drive */
            posix_fadvise(r1_container__fd(c), 0, 0, POSIX_FADV_DONTNEED);
        if (r1_container__expert(c, l, 0) == NULL)
            continue;
        for (int64_t e = 0; e < n_experts; e++) {
            list[e] = (int32_t)e;
            taken[e] = 0;
            r1_expert_cache__request(ec, l, e, R1_EXPERT_DEMAND);
        }
        for (int64_t i = 0; ok && i < n_experts; i++) {
            int32_t index;
            const r1_expert *ex;
            if (r1_expert_cache__acquire_any(ec, l, list, (int32_t)n_experts, taken, &index, &ex) !=
                R1_OK) {
                fprintf(stderr, "store: %s\n", r1_error__message());
                ok = 0;
                break;
            }
            taken[index] = 1;
            r1_expert_cache__release(ec, ex);
        }
        if (l + 1 == n_layers && (double)(r1_clock__now_ns() - t0) / 1e9 < seconds)
            l = -1;
    }
    double dt = (double)(r1_clock__now_ns() - t0) / 1e9;
    r1_expert_cache_counters k;
    r1_expert_cache__counters(ec, &k);
    stored = k.bytes_read;
    *direct = (int)k.direct_io;
    r1_expert_cache__destroy(ec);
    r1_container__close(c);
    free(list);
    free(taken);
    *stored_out = stored;
    return ok ? (double)stored / dt / 1e6 : -1.0;
}

static int parse_list(const char *s, int *out, int max)
{
    int n = 0;
    while (*s && n < max) {
        out[n++] = atoi(s);
        const char *comma = strchr(s, ',');
        if (comma == NULL)
            break;
        s = comma + 1;
    }
    return n;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr,
                "usage: %s FILE [--block BYTES] [--seconds S] [--depths 1,2,4,8,16] "
                "[--methods pread,direct,uring] [--store WORKERS,...]\n",
                argv[0]);
        return 2;
    }
    const char *path = argv[1], *methods = "pread,direct,uring";
    uint64_t block = UINT64_C(8) << 20;
    double seconds = 3.0;
    int depths[16] = {1, 2, 4, 8, 16}, n_depths = 5, stores[16], n_stores = 0;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--block") == 0)
            block = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--seconds") == 0)
            seconds = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--depths") == 0)
            n_depths = parse_list(argv[i + 1], depths, 16);
        else if (strcmp(argv[i], "--methods") == 0)
            methods = argv[i + 1];
        else if (strcmp(argv[i], "--store") == 0)
            n_stores = parse_list(argv[i + 1], stores, 16);
    }
    if (block == 0 || block % ALIGN != 0) {
        fprintf(stderr, "--block must be a positive multiple of %d\n", ALIGN);
        return 2;
    }
    struct stat sb;
    if (stat(path, &sb) != 0 || (uint64_t)sb.st_size < block) {
        fprintf(stderr, "%s: missing or smaller than one block\n", path);
        return 1;
    }
    printf("file %s: %.2f GB, block %" PRIu64 " bytes, %.1f s per point\n", path,
           (double)sb.st_size / 1e9, block, seconds);
    const char *names[3] = {"pread", "direct", "uring"};
    for (int m = 0; m < 3; m++) {
        if (strstr(methods, names[m]) == NULL)
            continue;
#ifndef R1_BENCH_HAVE_URING
        if (m == 2) {
            printf("uring: not built (liburing not found)\n");
            continue;
        }
#endif
        int fd = open(path, O_RDONLY | (m > 0 ? O_DIRECT : 0));
        if (fd < 0) {
            printf("%s: cannot open: %s\n", names[m], strerror(errno));
            continue;
        }
        for (int d = 0; d < n_depths; d++) {
            if (depths[d] < 1 || depths[d] > MAX_DEPTH)
                continue;
            posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
            run r = {.fd = fd, .file_bytes = (uint64_t)sb.st_size, .block = block};
            r.n_blocks = r.file_bytes / block;
            atomic_init(&r.bytes, 0);
            atomic_init(&r.seed, UINT64_C(0x9e3779b97f4a7c15) ^ (uint64_t)d);
            atomic_init(&r.failed, 0);
            double mbps = -1.0;
#ifdef R1_BENCH_HAVE_URING
            if (m == 2)
                mbps = uring_mbps(&r, depths[d], seconds);
            else
#endif
                mbps = threads_mbps(&r, depths[d], seconds);
            printf("%-6s depth %2d: %8.1f MB/s\n", names[m], depths[d], mbps);
            fflush(stdout);
        }
        close(fd);
    }
    for (int i = 0; i < n_stores; i++) {
        uint64_t stored = 0;
        int direct = 0;
        double coded = 0.0;
        double mbps = store_mbps(path, stores[i], seconds, &stored, &direct, &coded);
        printf(
            "store  %2d workers: %8.1f MB/s (%.2f GB stored bytes, %.0f %% of blobs coded, %s)\n",
            stores[i], mbps, (double)stored / 1e9, coded * 100.0, direct ? "O_DIRECT" : "buffered");
        fflush(stdout);
    }
    return 0;
}
