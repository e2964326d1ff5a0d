/* bench_kernels.c: weight-streaming GB/s of the CPU matvec per dtype and level (by hand). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../backends/cpu/cpu_features.h"
#include "../backends/cpu/cpu_kernels.h"
#include "dtype.h"

enum { ROWS = 4096, COLS = 4096 };

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Usage: bench_kernels [threads] [n_tokens]; prints one line per dtype and level. */
int main(int argc, char **argv)
{
    int32_t n_threads = argc > 1 ? atoi(argv[1]) : 1;
    int64_t n_tokens = argc > 2 ? atoll(argv[2]) : 1;
    r1_threadpool *pool = NULL;
    if (r1_threadpool__create(&pool, n_threads, -1) != R1_OK)
        return 1;
    float *src = malloc(sizeof(float) * COLS);
    float *x = malloc(sizeof(float) * COLS * (size_t)n_tokens);
    float *y = malloc(sizeof(float) * ROWS * (size_t)n_tokens);
    float scale[32 * 32];
    for (int i = 0; i < 32 * 32; i++)
        scale[i] = 0.01f;
    for (int64_t i = 0; i < COLS * n_tokens; i++)
        x[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
    printf("%dx%d matvec, %d thread(s), %lld token(s); weight GB/s (best of 20)\n", ROWS, COLS,
           (int)n_threads, (long long)n_tokens);
    for (int32_t dt = 0; dt < R1_DTYPE_COUNT; dt++) {
        size_t rb = r1_dtype__row_bytes(dt, COLS), bytes = rb * ROWS;
        uint8_t *w = aligned_alloc(64, bytes);
        for (int64_t r = 0; r < ROWS; r++) {
            for (int64_t c = 0; c < COLS; c++)
                src[c] = sinf((float)(r * COLS + c));
            uint8_t *d = w + (size_t)r * rb;
            if (dt == R1_DTYPE_Q8_0)
                r1_quantize__q8_0(src, (r1_block_q8_0 *)(void *)d, COLS);
            else if (dt == R1_DTYPE_Q4_0)
                r1_quantize__q4_0(src, (r1_block_q4_0 *)(void *)d, COLS);
            else
                for (int64_t c = 0; c < COLS; c++) {
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
        r1_tensor t = {.dtype = dt,
                       .n_dims = 2,
                       .shape = {ROWS, COLS},
                       .data = w,
                       .nbytes = bytes,
                       .scale = scale,
                       .scale_cols = COLS / 128};
        for (int32_t level = R1_CPU_SCALAR; level <= r1_cpu__detected_level(); level++) {
            r1_cpu__force_level(level);
            double best = 1e30;
            for (int rep = 0; rep < 21; rep++) {
                double t0 = now_s();
                if (r1_cpu__matmul(pool, &t, x, n_tokens, y) != R1_OK)
                    return 1;
                double dtm = now_s() - t0;
                if (rep > 0 && dtm < best)
                    best = dtm;
            }
            printf("  %-9s %-7s %7.2f GB/s  %8.3f ms  (%.1f MiB)\n", r1_dtype__traits(dt)->name,
                   r1_cpu__level_name(level), (double)bytes / best * 1e-9, best * 1e3,
                   (double)bytes / 1048576.0);
        }
        free(w);
    }
    r1_cpu__force_level(-1);
    r1_threadpool__destroy(pool);
    free(src);
    free(x);
    free(y);
    return 0;
}
