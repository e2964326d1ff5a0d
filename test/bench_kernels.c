/* bench_kernels.c: weight-streaming GB/s of the CPU matvec per dtype and level (by hand), next
 * to a STREAM-triad figure of the same thread count: the ratio is how close the kernels get to
 * the memory-bandwidth floor of decode. */
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../backends/cpu/cpu_features.h"
#include "../backends/cpu/cpu_kernels.h"
#include "../backends/cpu/threadpool.h"
#include "dtype.h"
#include "weight_layout.h"

/* The weight shape: 4096 x 4096 unless given (V2-Lite experts: 1408 2048 and 2048 1408). */
static int64_t rows_w = 4096, cols_w = 4096;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* STREAM triad a = b + s * c over arrays far larger than the caches, split over the pool like the
 * matvec; bytes moved count 3 arrays (STREAM's convention, no write-allocate traffic). */
/* 3 x 256 MiB: past any last-level cache this benchmark is likely to meet (260 MiB here). */
enum { TRIAD_N = 1 << 26 };
typedef struct triad_ctx {
    float *a;
    const float *b, *c;
    int64_t per;
} triad_ctx;

static void triad_task(void *ctx, int64_t task, int32_t worker)
{
    (void)worker;
    triad_ctx *t = ctx;
    int64_t i0 = task * t->per, i1 = i0 + t->per < TRIAD_N ? i0 + t->per : TRIAD_N;
    for (int64_t i = i0; i < i1; i++)
        t->a[i] = t->b[i] + 3.0f * t->c[i];
}

static double triad_gbs(r1_threadpool *pool)
{
    float *a = aligned_alloc(64, sizeof(float) * TRIAD_N),
          *b = aligned_alloc(64, sizeof(float) * TRIAD_N),
          *c = aligned_alloc(64, sizeof(float) * TRIAD_N);
    for (int64_t i = 0; i < TRIAD_N; i++) {
        a[i] = 0;
        b[i] = (float)i;
        c[i] = 1.0f;
    }
    int64_t n_tasks = r1_threadpool__size(pool);
    triad_ctx t = {a, b, c, (TRIAD_N + n_tasks - 1) / n_tasks};
    double best = 1e30;
    for (int rep = 0; rep < 6; rep++) {
        double t0 = now_s();
        r1_threadpool__run(pool, n_tasks, triad_task, &t);
        double dt = now_s() - t0;
        if (rep > 0 && dt < best)
            best = dt;
    }
    free(a);
    free(b);
    free(c);
    return 3.0 * sizeof(float) * TRIAD_N / best * 1e-9;
}

/* Read-only streaming over 3 x TRIAD_N floats of zeros (the matvec's own access pattern:
 * weights read once, nothing written back) by memchr for a byte that is not there: libc's
 * vectorised scan, so the figure is the memory's and not this file's compiler flags'. */
typedef struct read_ctx {
    const uint8_t *p;
    int64_t n, per;
    _Atomic int32_t found;
} read_ctx;

static void read_task(void *ctx, int64_t task, int32_t worker)
{
    (void)worker;
    read_ctx *r = ctx;
    int64_t i0 = task * r->per, i1 = i0 + r->per < r->n ? i0 + r->per : r->n;
    if (memchr(r->p + i0, 1, (size_t)(i1 - i0)) != NULL)
        r->found = 1;
}

static double read_gbs(r1_threadpool *pool)
{
    int64_t n = 3 * (int64_t)TRIAD_N * (int64_t)sizeof(float);
    uint8_t *p = aligned_alloc(64, (size_t)n);
    memset(p, 0, (size_t)n);
    int64_t n_tasks = r1_threadpool__size(pool);
    read_ctx r = {.p = p, .n = n, .per = (n + n_tasks - 1) / n_tasks};
    double best = 1e30;
    for (int rep = 0; rep < 6; rep++) {
        double t0 = now_s();
        r1_threadpool__run(pool, n_tasks, read_task, &r);
        double dt = now_s() - t0;
        if (rep > 0 && dt < best)
            best = dt;
    }
    free(p);
    return r.found ? 0.0 : (double)n / best * 1e-9;
}

/* Usage: bench_kernels [threads] [n_tokens] [min_level] [set_mib] [rows cols] [blas]; prints the
 * triad bandwidth, then one line per dtype and level (Q8_0/Q4_0 with float and with 8-bit
 * activations).
 */
int main(int argc, char **argv)
{
    int32_t n_threads = argc > 1 ? atoi(argv[1]) : 1;
    int64_t n_tokens = argc > 2 ? atoll(argv[2]) : 1;
    int32_t min_level = argc > 3 ? atoi(argv[3]) : R1_CPU_SCALAR;
    /* Copies of the matrix, used in turn, so that every product streams its weights from
     * memory as decode does (0: one copy, cache-resident, the compute-bound view). */
    int64_t set_mib = argc > 4 ? atoll(argv[4]) : 768;
    if (argc > 6) {
        rows_w = atoll(argv[5]);
        cols_w = atoll(argv[6]);
    }
    if (rows_w <= 0 || cols_w <= 0 || cols_w % 32 != 0) {
        fprintf(stderr, "rows and cols must be positive, cols a multiple of 32\n");
        return 1;
    }
    r1_threadpool *pool = NULL;
    if (r1_threadpool__create(&pool, n_threads, -1) != R1_OK)
        return 1;
    /* blas 1: products of n_tokens >= r1_cpu__blas_min_tokens() take the dequantise + sgemm
     * path as in prefill (the default 0 times the row kernels) */
    r1_cpu__set_blas(argc > 7 ? atoi(argv[7]) : 0);
    double triad = triad_gbs(pool), read = read_gbs(pool);
    printf("%d thread(s): STREAM triad %.2f GB/s, read-only stream %.2f GB/s%s\n", (int)n_threads,
           triad, read, r1_cpu__has_avx512vnni() ? " (CPU has AVX512-VNNI)" : "");
    float *src = malloc(sizeof(float) * cols_w);
    float *x = malloc(sizeof(float) * cols_w * (size_t)n_tokens);
    float *y = malloc(sizeof(float) * rows_w * (size_t)n_tokens);
    int64_t n_scales = (rows_w / 128 + 1) * (cols_w / 128 + 1);
    float *scale = malloc(sizeof(float) * (size_t)n_scales);
    for (int64_t i = 0; i < n_scales; i++)
        scale[i] = 0.01f;
    for (int64_t i = 0; i < cols_w * n_tokens; i++)
        x[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
    printf(
        "%lldx%lld matvec, %d thread(s), %lld token(s), %lld MiB of weight copies in turn; weight "
        "GB/s (mean)\n",
        (long long)rows_w, (long long)cols_w, (int)n_threads, (long long)n_tokens,
        (long long)set_mib);
    for (int32_t dt = 0; dt < R1_DTYPE_COUNT; dt++) {
        size_t rb = r1_dtype__row_bytes(dt, cols_w), bytes = rb * rows_w;
        size_t n_copies = (size_t)set_mib * 1048576 / bytes + 1;
        uint8_t *w = aligned_alloc(64, bytes * n_copies);
        for (int64_t r = 0; r < rows_w; r++) {
            for (int64_t c = 0; c < cols_w; c++)
                src[c] = sinf((float)(r * cols_w + c));
            uint8_t *d = w + (size_t)r * rb;
            if (dt == R1_DTYPE_Q8_0)
                r1_quantize__q8_0(src, (r1_block_q8_0 *)(void *)d, cols_w);
            else if (dt == R1_DTYPE_Q4_0)
                r1_quantize__q4_0(src, (r1_block_q4_0 *)(void *)d, cols_w);
            else
                for (int64_t c = 0; c < cols_w; c++) {
                    if (dt == R1_DTYPE_F32)
                        memcpy(d + 4 * c, &src[c], 4);
                    else if (dt == R1_DTYPE_F16)
                        ((uint16_t *)(void *)d)[c] = r1_fp16__from_f32(src[c]);
                    else if (dt == R1_DTYPE_BF16)
                        ((uint16_t *)(void *)d)[c] = r1_bf16__from_f32(src[c]);
                    else
                        d[c] = (uint8_t)(c * 37 % 0x7e);
                }
        }
        for (size_t k = 1; k < n_copies; k++)
            memcpy(w + k * bytes, w, bytes);
        r1_tensor t = {.dtype = dt,
                       .n_dims = 2,
                       .shape = {rows_w, cols_w},
                       .data = w,
                       .nbytes = bytes,
                       .scale = scale,
                       .scale_cols = (cols_w + 127) / 128};
        int quant = dt == R1_DTYPE_Q8_0 || dt == R1_DTYPE_Q4_0;
        /* Q8_0/Q4_0 also in the R16 layout the CPU backend gives them (weight_layout.h). */
        int r16 = quant && r1_layout__r16_eligible(dt, rows_w, cols_w);
        uint8_t *w16 = NULL;
        if (r16) {
            w16 = aligned_alloc(64, bytes * n_copies);
            r1_layout__to_r16(dt, w, rows_w, cols_w, w16);
            for (size_t k = 1; k < n_copies; k++)
                memcpy(w16 + k * bytes, w16, bytes);
        }
        for (int32_t level = min_level; level <= r1_cpu__detected_level(); level++)
            for (int act = 0; act <= quant + r16; act++) {
                r1_cpu__force_level(level);
                r1_cpu__set_act_q8(act > 0);
                const int in_r16 = act == 2;
                t.layout = in_r16 ? R1_LAYOUT_R16 : R1_LAYOUT_ROWS;
                uint8_t *base = in_r16 ? w16 : w;
                /* one pass over every copy to warm up, then at least 20 timed products */
                size_t n_reps = n_copies + (n_copies > 20 ? n_copies : 20);
                double total = 0;
                for (size_t rep = 0; rep < n_reps; rep++) {
                    t.data = base + rep % n_copies * bytes;
                    double t0 = now_s();
                    if (r1_cpu__matmul(pool, &t, x, n_tokens, y) != R1_OK)
                        return 1;
                    if (rep >= n_copies)
                        total += now_s() - t0;
                }
                double best = total / (double)(n_reps - n_copies);
                double gbs = (double)bytes / best * 1e-9;
                const char *act_name = !quant     ? ""
                                       : act == 2 ? "r16-q8"
                                       : act      ? "act-q8"
                                                  : "act-f32";
                printf("  %-9s %-7s %-8s %6.2f GB/s  %4.0f%% of triad %4.0f%% of read  %7.3f ms"
                       "  (%.1f MiB)\n",
                       r1_dtype__traits(dt)->name, r1_cpu__level_name(level), act_name, gbs,
                       100.0 * gbs / triad, 100.0 * gbs / read, best * 1e3,
                       (double)bytes / 1048576.0);
            }
        free(w);
        free(w16);
    }
    r1_cpu__force_level(-1);
    r1_cpu__set_act_q8(1);
    r1_cpu__set_blas(1);
    r1_threadpool__destroy(pool);
    free(scale);
    free(src);
    free(x);
    free(y);
    return 0;
}
