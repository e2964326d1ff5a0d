/* test_kernels.c: the CPU thread pool, weight products and element-wise kernels. */
#include <check.h>
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "../backends/cpu/cpu_features.h"
#include "../backends/cpu/cpu_kernels.h"
#include "../backends/cpu/cpu_ops.h"
#include "../backends/cpu/kernels_exp.h"
#include "../backends/cpu/kernels_levels.h"
#include "../backends/cpu/threadpool.h"
#include "dtype.h"
#include "weight_layout.h"

static uint64_t rng_state;
static uint32_t rng_u32(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}
/* uniform in [-1, 1) */
static float rng_f(void)
{
    return (float)(rng_u32() & 0xffffff) / (float)(1 << 23) - 1.0f;
}

/* ---- thread pool ---------------------------------------------------------------------- */

typedef struct count_ctx {
    _Atomic int32_t *hits;
    _Atomic int32_t bad_worker;
    int32_t n_threads;
} count_ctx;

static void count_task(void *ctx, int64_t task, int32_t worker)
{
    count_ctx *c = ctx;
    if (worker < 0 || worker >= c->n_threads)
        atomic_store(&c->bad_worker, 1);
    atomic_fetch_add(&c->hits[task], 1);
}

START_TEST(test_kernels_pool_runs_every_task_once)
{
    for (int32_t n_threads = 1; n_threads <= 4; n_threads++) {
        for (int32_t spin = 0; spin <= 50; spin += 50) {
            r1_threadpool *pool = NULL;
            ck_assert_int_eq(r1_threadpool__create(&pool, n_threads, spin), R1_OK);
            ck_assert_int_eq(r1_threadpool__size(pool), n_threads);
            enum { N = 37 };
            _Atomic int32_t hits[N];
            count_ctx c = {.hits = hits, .n_threads = n_threads};
            /* many short runs back to back, through both the spinning and the sleeping paths */
            for (int run = 0; run < 2000; run++) {
                int64_t n = 1 + run % N;
                for (int i = 0; i < N; i++)
                    atomic_store(&hits[i], 0);
                r1_threadpool__run(pool, n, count_task, &c);
                for (int64_t i = 0; i < N; i++)
                    ck_assert_int_eq(atomic_load(&hits[i]), i < n ? 1 : 0);
            }
            ck_assert_int_eq(atomic_load(&c.bad_worker), 0);
            r1_threadpool__run(pool, 0, count_task, &c); /* no tasks: returns at once */
            r1_threadpool__destroy(pool);
        }
    }
    r1_threadpool__destroy(NULL);
}
END_TEST

static void scratch_task(void *ctx, int64_t task, int32_t worker)
{
    r1_threadpool *pool = ctx;
    size_t bytes = 1000 + (size_t)task * 100;
    unsigned char *p = r1_threadpool__scratch(pool, worker, bytes);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq((uintptr_t)p % 64, 0);
    memset(p, (int)task, bytes);
}

START_TEST(test_kernels_pool_scratch_and_null_pool)
{
    r1_threadpool *pool = NULL;
    ck_assert_int_eq(r1_threadpool__create(&pool, 3, -1), R1_OK);
    r1_threadpool__run(pool, 64, scratch_task, pool);
    r1_threadpool__destroy(pool);

    /* a NULL pool runs serially on the caller, with a thread-local scratch */
    enum { N = 10 };
    _Atomic int32_t hits[N] = {0};
    count_ctx c = {.hits = hits, .n_threads = 1};
    r1_threadpool__run(NULL, N, count_task, &c);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(atomic_load(&hits[i]), 1);
    r1_threadpool__run(NULL, 8, scratch_task, NULL);
    /* the shared pool: one per process while referenced */
    r1_threadpool *a = NULL, *b = NULL;
    ck_assert_int_eq(r1_threadpool__acquire_shared(&a), R1_OK);
    ck_assert_int_eq(r1_threadpool__acquire_shared(&b), R1_OK);
    ck_assert_ptr_eq(a, b);
    ck_assert_int_ge(r1_threadpool__size(a), 1);
    r1_threadpool__release_shared();
    r1_threadpool__release_shared();
}
END_TEST

/* ---- matmul --------------------------------------------------------------------------- */

typedef struct test_weight {
    r1_tensor t;
    void *data;
    float *scale;
    double *deq; /* (rows, cols) exact dequantised values */
} test_weight;

static void weight_make(test_weight *w, int32_t dt, int64_t rows, int64_t cols)
{
    memset(w, 0, sizeof *w);
    size_t row_bytes = r1_dtype__row_bytes(dt, cols);
    ck_assert_uint_gt(row_bytes, 0);
    w->data = malloc(row_bytes * (size_t)rows);
    float *src = malloc(sizeof(float) * (size_t)(rows * cols));
    for (int64_t i = 0; i < rows * cols; i++)
        src[i] = rng_f() * (float)(1 + (i / cols) % 3);
    int64_t sr = (rows + 127) / 128, sc = (cols + 127) / 128;
    for (int64_t r = 0; r < rows; r++) {
        const float *s = src + r * cols;
        uint8_t *d = (uint8_t *)w->data + (size_t)r * row_bytes;
        for (int64_t c = 0; c < cols; c++) {
            switch (dt) {
            case R1_DTYPE_F32: memcpy(d + 4 * c, &s[c], 4); break;
            case R1_DTYPE_F16: ((uint16_t *)(void *)d)[c] = r1_fp16__from_f32(s[c]); break;
            case R1_DTYPE_BF16: ((uint16_t *)(void *)d)[c] = r1_bf16__from_f32(s[c]); break;
            case R1_DTYPE_FP8_E4M3: {
                uint8_t b;
                do
                    b = (uint8_t)rng_u32();
                while ((b & 0x7f) == 0x7f);
                d[c] = b;
                break;
            }
            default: break;
            }
        }
        if (dt == R1_DTYPE_Q8_0)
            r1_quantize__q8_0(s, (r1_block_q8_0 *)(void *)d, cols);
        if (dt == R1_DTYPE_Q4_0)
            r1_quantize__q4_0(s, (r1_block_q4_0 *)(void *)d, cols);
    }
    if (dt == R1_DTYPE_FP8_E4M3) {
        w->scale = malloc(sizeof(float) * (size_t)(sr * sc));
        for (int64_t i = 0; i < sr * sc; i++)
            w->scale[i] = ldexpf(1.0f + 0.5f * rng_f(), (int)(rng_u32() % 9) - 12);
    }
    w->t = (r1_tensor){.dtype = dt,
                       .n_dims = 2,
                       .shape = {rows, cols},
                       .data = w->data,
                       .nbytes = row_bytes * (size_t)rows,
                       .scale = w->scale,
                       .scale_cols = sc};
    w->deq = malloc(sizeof(double) * (size_t)(rows * cols));
    float *row = malloc(sizeof(float) * (size_t)cols);
    for (int64_t r = 0; r < rows; r++) {
        r1_dtype__dequantize_row(dt, (uint8_t *)w->data + (size_t)r * row_bytes,
                                 w->scale ? w->scale + (r / 128) * sc : NULL, row, cols);
        for (int64_t c = 0; c < cols; c++)
            w->deq[r * cols + c] = row[c];
    }
    free(row);
    free(src);
}

static void weight_free(test_weight *w)
{
    free(w->data);
    free(w->scale);
    free(w->deq);
}

/* |y - ref| within 1e-5 of sum |w x|: the relative bound of a dot product, which stays
 * meaningful when the terms cancel. */
static void check_against_reference(const test_weight *w, const float *x, int64_t n_tokens,
                                    const float *y, const char *what)
{
    int64_t rows = w->t.shape[0], cols = w->t.shape[1];
    for (int64_t t = 0; t < n_tokens; t++)
        for (int64_t r = 0; r < rows; r++) {
            double ref = 0, mag = 0;
            for (int64_t c = 0; c < cols; c++) {
                double p = w->deq[r * cols + c] * (double)x[t * cols + c];
                ref += p;
                mag += fabs(p);
            }
            double err = fabs((double)y[t * rows + r] - ref);
            ck_assert_msg(err <= 1e-5 * mag + 1e-30,
                          "%s: y[%lld][%lld] = %.9g, reference %.9g (sum |wx| %.3g)", what,
                          (long long)t, (long long)r, (double)y[t * rows + r], ref, mag);
        }
}

/* n_rows rows of cols floats quantised by r1_cpu__quantize_x and dequantised (d * q). */
static float *activation_roundtrip(const float *x, int64_t n_rows, int64_t cols)
{
    int64_t nb = cols / R1_QBLOCK;
    r1_cpu_qx_block *b = malloc(sizeof *b * (size_t)(n_rows * nb));
    float *out = malloc(sizeof(float) * (size_t)(n_rows * cols));
    for (int64_t r = 0; r < n_rows; r++)
        r1_cpu__quantize_x(x + r * cols, b + r * nb, cols);
    for (int64_t i = 0; i < n_rows * nb; i++)
        for (int j = 0; j < R1_QBLOCK; j++)
            out[i * R1_QBLOCK + j] = b[i].d * (float)b[i].q[j];
    free(b);
    return out;
}

static const struct {
    int64_t rows, cols;
} plain_shapes[] = {{200, 300}, {19, 7}, {1, 1}, {130, 128}, {64, 1031}};
static const struct {
    int64_t rows, cols;
} quant_shapes[] = {{37, 32}, {200, 320}, {16, 64}, {48, 96}};

/* The R16 (16 rows interleaved) copy of a Q8_0/Q4_0 weight, or 0 when it cannot take it. */
static int weight_r16(const test_weight *w, r1_tensor *out, void **data)
{
    int64_t rows = w->t.shape[0], cols = w->t.shape[1];
    if (!r1_layout__r16_eligible(w->t.dtype, rows, cols))
        return 0;
    *data = malloc(w->t.nbytes);
    r1_layout__to_r16(w->t.dtype, w->t.data, rows, cols, *data);
    *out = w->t;
    out->data = *data;
    out->layout = R1_LAYOUT_R16;
    return 1;
}

static void run_matmul_matrix(int32_t dt)
{
    r1_threadpool *pools[2] = {NULL, NULL};
    ck_assert_int_eq(r1_threadpool__create(&pools[0], 1, -1), R1_OK);
    ck_assert_int_eq(r1_threadpool__create(&pools[1], 2, -1), R1_OK);
    int quant = dt == R1_DTYPE_Q8_0 || dt == R1_DTYPE_Q4_0;
    size_t n_shapes = quant ? sizeof quant_shapes / sizeof quant_shapes[0]
                            : sizeof plain_shapes / sizeof plain_shapes[0];
    int32_t top = r1_cpu__detected_level();
    for (size_t s = 0; s < n_shapes; s++) {
        int64_t rows = quant ? quant_shapes[s].rows : plain_shapes[s].rows;
        int64_t cols = quant ? quant_shapes[s].cols : plain_shapes[s].cols;
        rng_state = 0x1234567ull + s * 77 + (uint64_t)dt;
        test_weight w;
        weight_make(&w, dt, rows, cols);
        float *x = malloc(sizeof(float) * (size_t)(5 * cols));
        for (int64_t i = 0; i < 5 * cols; i++)
            x[i] = rng_f();
        float *y[2], *y16 = malloc(sizeof(float) * (size_t)(5 * rows));
        y[0] = malloc(sizeof(float) * (size_t)(5 * rows));
        y[1] = malloc(sizeof(float) * (size_t)(5 * rows));
        r1_tensor t16;
        void *data16 = NULL;
        int has16 = quant && weight_r16(&w, &t16, &data16);
        /* What the 8-bit activation path computes exactly: x rounded through its blocks. */
        float *xq = quant ? activation_roundtrip(x, 5, cols) : NULL;
        for (int32_t level = R1_CPU_SCALAR; level <= top; level++) {
            ck_assert_int_eq(r1_cpu__force_level(level), level);
            for (int blas = 0; blas <= 1; blas++)
                for (int act = 0; act <= quant; act++)
                    for (int64_t n_tokens = 1; n_tokens <= 5; n_tokens += 4) {
                        r1_cpu__set_blas(blas);
                        r1_cpu__set_act_q8(act);
                        /* 8-bit activations take the integer kernels at any token count */
                        int integer_path = act;
                        int blas_path = !act && blas && r1_cpu__blas_min_tokens() > 0 &&
                                        n_tokens >= r1_cpu__blas_min_tokens();
                        for (int p = 0; p < 2; p++) {
                            for (int64_t i = 0; i < n_tokens * rows; i++)
                                y[p][i] = NAN;
                            ck_assert_int_eq(r1_cpu__matmul(pools[p], &w.t, x, n_tokens, y[p]),
                                             R1_OK);
                        }
                        char what[128];
                        snprintf(what, sizeof what,
                                 "%s %lldx%lld level %s blas %d act_q8 %d T=%lld",
                                 r1_dtype__traits(dt)->name, (long long)rows, (long long)cols,
                                 r1_cpu__level_name(level), blas, act, (long long)n_tokens);
                        check_against_reference(&w, integer_path ? xq : x, n_tokens, y[0], what);
                        ck_assert_msg(
                            memcmp(y[0], y[1], sizeof(float) * (size_t)(n_tokens * rows)) == 0,
                            "%s: 1 and 2 threads differ", what);
                        if (!has16)
                            continue;
                        /* The interleaved layout: the same bound, the same answer from 1 and 2
                         * threads, and on the BLAS path (same dequantised panels) the row
                         * layout's answer bit for bit. */
                        for (int p = 0; p < 2; p++) {
                            ck_assert_int_eq(r1_cpu__matmul(pools[p], &t16, x, n_tokens, y16),
                                             R1_OK);
                            strcat(what, " r16");
                            check_against_reference(&w, integer_path ? xq : x, n_tokens, y16, what);
                            what[strlen(what) - 4] = 0;
                            if (p == 0)
                                memcpy(y[1], y16, sizeof(float) * (size_t)(n_tokens * rows));
                        }
                        ck_assert_msg(
                            memcmp(y[1], y16, sizeof(float) * (size_t)(n_tokens * rows)) == 0,
                            "%s r16: 1 and 2 threads differ", what);
                        if (blas_path)
                            ck_assert_msg(
                                memcmp(y[0], y16, sizeof(float) * (size_t)(n_tokens * rows)) == 0,
                                "%s r16: BLAS panels differ from the row layout's", what);
                    }
        }
        r1_cpu__force_level(-1);
        r1_cpu__set_blas(1);
        r1_cpu__set_act_q8(1);
        free(xq);
        free(x);
        free(y[0]);
        free(y[1]);
        free(y16);
        free(data16);
        weight_free(&w);
    }
    r1_threadpool__destroy(pools[0]);
    r1_threadpool__destroy(pools[1]);
}

START_TEST(test_kernels_matmul_every_dtype_level_and_threads)
{
    run_matmul_matrix((int32_t)_i);
}
END_TEST

/* The 8-bit activation quantiser: bounds, exact block sums, zero blocks. */
START_TEST(test_kernels_quantize_x_blocks)
{
    enum { N = 32 * 5 };
    float x[N];
    rng_state = 4242;
    for (int i = 0; i < N; i++)
        x[i] = rng_f() * (float)(1 + i / 32) * (i / 32 == 3 ? 1e-6f : 1.0f);
    for (int i = 64; i < 96; i++)
        x[i] = 0.0f; /* block 2: all zero */
    x[128] = -5.0f;  /* block 4: a negative maximum */
    r1_cpu_qx_block b[N / 32];
    r1_cpu__quantize_x(x, b, N);
    for (int k = 0; k < N / 32; k++) {
        float amax = 0;
        int32_t sum = 0;
        for (int j = 0; j < 32; j++) {
            amax = fmaxf(amax, fabsf(x[k * 32 + j]));
            sum += b[k].q[j];
            ck_assert_int_le(abs(b[k].q[j]), 127);
            ck_assert_msg(fabsf(x[k * 32 + j] - b[k].d * (float)b[k].q[j]) <=
                              0.5f * b[k].d * (1 + 1e-6f),
                          "block %d element %d", k, j);
        }
        ck_assert_int_eq(sum, b[k].sum);
        ck_assert(b[k].d == amax / 127.0f);
    }
    ck_assert(b[2].d == 0.0f && b[2].sum == 0);
    ck_assert_int_eq(b[4].q[0], -127);

    /* every level's vectorised quantiser gives the same blocks, ties included: block 0 of y has
     * max 127 so d = 1 and x * (1 / d) = x exactly, with halves to round away from zero */
    float y[N];
    memcpy(y, x, sizeof y);
    y[0] = 127.0f;
    for (int j = 1; j < 32; j++)
        y[j] = (float)(j - 16) + (j % 3 == 0 ? 0.5f : j % 3 == 1 ? -0.5f : 0.25f);
    r1_cpu_qx_block ref[N / 32];
    r1_cpu__quantize_x(y, ref, N);
    ck_assert(ref[0].d == 1.0f);
    ck_assert_int_eq(ref[0].q[3], -13); /* -12.5 */
    ck_assert_int_eq(ref[0].q[6], -10); /* -9.5 */
    ck_assert_int_eq(ref[0].q[18], 3);  /* 2.5 */
    ck_assert_int_eq(ref[0].q[5], -11); /* -10.75 */
    const r1_cpu_kernel_table *tables[] = {r1_cpu__kernels_scalar(), NULL, NULL};
#if defined(__x86_64__) || defined(__i386__)
    if (r1_cpu__detected_level() >= R1_CPU_AVX2)
        tables[1] = r1_cpu__kernels_avx2();
    if (r1_cpu__detected_level() >= R1_CPU_AVX512)
        tables[2] = r1_cpu__kernels_avx512();
#endif
    for (int t = 0; t < 3; t++) {
        if (tables[t] == NULL)
            continue;
        r1_cpu_qx_block got[N / 32];
        memset(got, 0xAB, sizeof got);
        tables[t]->quantize_x(y, got, N);
        ck_assert_msg(memcmp(got, ref, sizeof got) == 0, "%s quantiser differs", tables[t]->name);
    }
}
END_TEST

/* The kernel tables this CPU can run: scalar, AVX2, AVX-512, AVX-512 VNNI (NULL when absent). */
static void level_tables(const r1_cpu_kernel_table *tables[4])
{
    tables[0] = r1_cpu__kernels_scalar();
    tables[1] = tables[2] = tables[3] = NULL;
#if defined(__x86_64__) || defined(__i386__)
    if (r1_cpu__detected_level() >= R1_CPU_AVX2)
        tables[1] = r1_cpu__kernels_avx2();
    if (r1_cpu__detected_level() >= R1_CPU_AVX512)
        tables[2] = r1_cpu__kernels_avx512();
    if (r1_cpu__has_avx512vnni())
        tables[3] = r1_cpu__kernels_avx512vnni();
#endif
}

/* Every level's integer kernels (and VNNI next to maddubs) against exact integer arithmetic,
 * rows grouped any way giving the same bits, at the extremes where maddubs could saturate. */
START_TEST(test_kernels_qx_levels_agree)
{
    enum { ROWS = 9, MAXB = 67 };
    const int64_t block_counts[] = {1, 2, 3, 8, MAXB};
    const r1_cpu_kernel_table *tables[4];
    level_tables(tables);
    for (int32_t dt = R1_DTYPE_Q8_0; dt <= R1_DTYPE_Q4_0; dt++)
        for (size_t bc = 0; bc < sizeof block_counts / sizeof block_counts[0]; bc++) {
            int64_t nb = block_counts[bc], cols = nb * 32;
            size_t rb = r1_dtype__row_bytes(dt, cols);
            uint8_t *w = malloc(rb * ROWS);
            float *src = malloc(sizeof(float) * (size_t)cols),
                  *x = malloc(sizeof(float) * (size_t)cols);
            rng_state = 777 + (uint64_t)(dt * 100 + (int)bc);
            for (int64_t c = 0; c < cols; c++)
                x[c] = c % 5 == 0 ? 1.0f : rng_f(); /* q = +-127 next to small values */
            for (int r = 0; r < ROWS; r++) {
                for (int64_t c = 0; c < cols; c++)
                    src[c] = r == 0 ? 1.0f : r == 1 ? (c & 1 ? 1.0f : -1.0f) : rng_f();
                if (dt == R1_DTYPE_Q8_0)
                    r1_quantize__q8_0(src, (r1_block_q8_0 *)(void *)(w + rb * (size_t)r), cols);
                else
                    r1_quantize__q4_0(src, (r1_block_q4_0 *)(void *)(w + rb * (size_t)r), cols);
            }
            r1_cpu_qx_block *xq = malloc(sizeof *xq * (size_t)nb);
            r1_cpu__quantize_x(x, xq, cols);
            float *wd = malloc(sizeof(float) * (size_t)cols);
            double ref[ROWS], mag[ROWS];
            for (int r = 0; r < ROWS; r++) {
                r1_dtype__dequantize_row(dt, w + rb * (size_t)r, NULL, wd, cols);
                ref[r] = mag[r] = 0;
                for (int64_t c = 0; c < cols; c++) {
                    double p = (double)wd[c] * (double)xq[c / 32].d * (double)xq[c / 32].q[c % 32];
                    ref[r] += p;
                    mag[r] += fabs(p);
                }
            }
            float grouped[4][ROWS];
            for (int t = 0; t < 4; t++) {
                if (tables[t] == NULL)
                    continue;
                ck_assert_ptr_nonnull(tables[t]->dot_qx[dt]);
                tables[t]->dot_qx[dt](w, rb, ROWS, xq, nb, grouped[t]);
                for (int r = 0; r < ROWS; r++) {
                    float single;
                    tables[t]->dot_qx[dt](w + rb * (size_t)r, rb, 1, xq, nb, &single);
                    ck_assert_msg(memcmp(&single, &grouped[t][r], sizeof single) == 0,
                                  "%s table %d row %d: grouping changed the result",
                                  r1_dtype__traits(dt)->name, t, r);
                    ck_assert_msg(fabs(grouped[t][r] - ref[r]) <= 1e-5 * mag[r] + 1e-30,
                                  "%s table %d blocks %lld row %d: %.9g vs %.9g",
                                  r1_dtype__traits(dt)->name, t, (long long)nb, r,
                                  (double)grouped[t][r], ref[r]);
                }
            }
            if (tables[3] != NULL)
                ck_assert_mem_eq(grouped[2], grouped[3], sizeof grouped[2]);
            free(wd);
            free(xq);
            free(src);
            free(x);
            free(w);
        }
}
END_TEST

START_TEST(test_kernels_r16_layout_roundtrip)
{
    const int64_t block_counts[] = {1, 3, 64};
    for (int32_t dt = R1_DTYPE_Q8_0; dt <= R1_DTYPE_Q4_0; dt++)
        for (size_t bc = 0; bc < sizeof block_counts / sizeof block_counts[0]; bc++) {
            const int64_t rows = 32, cols = block_counts[bc] * 32;
            rng_state = 4242 + (uint64_t)(dt * 10 + (int)bc);
            test_weight w;
            weight_make(&w, dt, rows, cols);
            ck_assert(r1_layout__r16_eligible(dt, rows, cols));
            ck_assert(!r1_layout__r16_eligible(dt, rows + 8, cols));
            ck_assert(!r1_layout__r16_eligible(R1_DTYPE_BF16, rows, cols));
            ck_assert_uint_eq(r1_layout__r16_group_bytes(dt, cols),
                              16 * r1_dtype__row_bytes(dt, cols));
            uint8_t *packed = malloc(w.t.nbytes);
            r1_layout__to_r16(dt, w.t.data, rows, cols, packed);
            float *got = malloc(sizeof(float) * (size_t)(16 * cols));
            /* every level's vector dequantiser gives the scalar one's floats */
            for (int32_t level = R1_CPU_SCALAR; level <= r1_cpu__detected_level(); level++) {
                r1_cpu__force_level(level);
                for (int64_t g = 0; g < rows / 16; g++) {
                    r1_cpu__kernels_active()->dequant_r16[dt](
                        packed + (size_t)g * 16 * r1_dtype__row_bytes(dt, cols), cols, got);
                    for (int64_t i = 0; i < 16 * cols; i++)
                        ck_assert_msg(got[i] == (float)w.deq[(g * 16) * cols + i],
                                      "%s level %s group %lld element %lld: %g vs %g",
                                      r1_dtype__traits(dt)->name, r1_cpu__level_name(level),
                                      (long long)g, (long long)i, (double)got[i],
                                      w.deq[(g * 16) * cols + i]);
                }
            }
            r1_cpu__force_level(-1);
            for (int64_t g = 0; g < rows / 16; g++) {
                r1_layout__r16_dequant_group(
                    dt, packed + (size_t)g * 16 * r1_dtype__row_bytes(dt, cols), cols, got);
                for (int64_t i = 0; i < 16 * cols; i++)
                    ck_assert_msg(got[i] == (float)w.deq[(g * 16) * cols + i],
                                  "%s group %lld element %lld: %g vs %g",
                                  r1_dtype__traits(dt)->name, (long long)g, (long long)i,
                                  (double)got[i], w.deq[(g * 16) * cols + i]);
            }
            free(got);
            free(packed);
            weight_free(&w);
        }
}
END_TEST

/* Every level's R16 kernel gives the same bits, within 1e-5 of sum |w x| of the exact sum, for
 * rows that stress the integer paths: all q = +127, alternating signs, and q = -128 (no
 * quantiser writes it, a file may hold it: the sign tricks must not overflow on it). */
START_TEST(test_kernels_r16_levels_agree)
{
    const int64_t block_counts[] = {1, 2, 3, 8, 67};
    const r1_cpu_kernel_table *tables[4];
    level_tables(tables);
    for (int32_t dt = R1_DTYPE_Q8_0; dt <= R1_DTYPE_Q4_0; dt++)
        for (size_t bc = 0; bc < sizeof block_counts / sizeof block_counts[0]; bc++) {
            int64_t nb = block_counts[bc], cols = nb * 32;
            size_t rb = r1_dtype__row_bytes(dt, cols);
            uint8_t *w = malloc(rb * 16), *packed = malloc(rb * 16);
            float *src = malloc(sizeof(float) * (size_t)cols),
                  *x = malloc(sizeof(float) * (size_t)cols);
            rng_state = 9090 + (uint64_t)(dt * 100 + (int)bc);
            for (int64_t c = 0; c < cols; c++)
                x[c] = c % 5 == 0 ? -1.0f : rng_f();
            for (int r = 0; r < 16; r++) {
                for (int64_t c = 0; c < cols; c++)
                    src[c] = r == 0 ? 1.0f : r == 1 ? (c & 1 ? 1.0f : -1.0f) : rng_f();
                if (dt == R1_DTYPE_Q8_0) {
                    r1_block_q8_0 *blk = (r1_block_q8_0 *)(void *)(w + rb * (size_t)r);
                    r1_quantize__q8_0(src, blk, cols);
                    if (r == 2)
                        for (int64_t b = 0; b < nb; b++)
                            memset(blk[b].q, 0x80, sizeof blk[b].q);
                } else {
                    r1_quantize__q4_0(src, (r1_block_q4_0 *)(void *)(w + rb * (size_t)r), cols);
                }
            }
            r1_layout__to_r16(dt, w, 16, cols, packed);
            r1_cpu_qx_block *xq = malloc(sizeof *xq * (size_t)nb);
            r1_cpu__quantize_x(x, xq, cols);
            float *wd = malloc(sizeof(float) * (size_t)cols);
            double ref[16], mag[16];
            for (int r = 0; r < 16; r++) {
                r1_dtype__dequantize_row(dt, w + rb * (size_t)r, NULL, wd, cols);
                ref[r] = mag[r] = 0;
                for (int64_t c = 0; c < cols; c++) {
                    double p = (double)wd[c] * (double)xq[c / 32].d * (double)xq[c / 32].q[c % 32];
                    ref[r] += p;
                    mag[r] += fabs(p);
                }
            }
            float out[4][16];
            for (int t = 0; t < 4; t++) {
                if (tables[t] == NULL)
                    continue;
                ck_assert_ptr_nonnull(tables[t]->dot_r16[dt]);
                const void *group[1] = {packed};
                float *dst[1] = {out[t]};
                tables[t]->dot_r16[dt](group, 1, xq, nb, dst);
                for (int r = 0; r < 16; r++)
                    ck_assert_msg(fabs(out[t][r] - ref[r]) <= 1e-5 * mag[r] + 1e-30,
                                  "%s table %d blocks %lld row %d: %.9g vs %.9g",
                                  r1_dtype__traits(dt)->name, t, (long long)nb, r,
                                  (double)out[t][r], ref[r]);
                ck_assert_msg(memcmp(out[t], out[0], sizeof out[0]) == 0,
                              "%s blocks %lld: table %d differs from scalar",
                              r1_dtype__traits(dt)->name, (long long)nb, t);
            }
            free(wd);
            free(xq);
            free(src);
            free(x);
            free(w);
            free(packed);
        }
}
END_TEST

/* The R16 kernels on several groups at once (the streaming form decode uses): every group's
 * 16 sums are the bits that group gives alone, at every level and for every group count, with
 * block counts that leave each tail of the four-block loop. */
START_TEST(test_kernels_r16_streams_match_single_groups)
{
    const int64_t block_counts[] = {1, 2, 3, 4, 7, 64};
    const r1_cpu_kernel_table *tables[4];
    level_tables(tables);
    for (int32_t dt = R1_DTYPE_Q8_0; dt <= R1_DTYPE_Q4_0; dt++)
        for (size_t bc = 0; bc < sizeof block_counts / sizeof block_counts[0]; bc++) {
            const int64_t nb = block_counts[bc], cols = nb * 32, rows = 16 * R1_CPU_R16_STREAMS;
            const size_t rb = r1_dtype__row_bytes(dt, cols), gb = rb * 16;
            uint8_t *w = malloc(rb * (size_t)rows), *packed = malloc(rb * (size_t)rows);
            float *src = malloc(sizeof(float) * (size_t)cols),
                  *x = malloc(sizeof(float) * (size_t)cols);
            r1_cpu_qx_block *xq = malloc(sizeof *xq * (size_t)nb);
            ck_assert(w != NULL && packed != NULL && src != NULL && x != NULL && xq != NULL);
            rng_state = 4242 + (uint64_t)(dt * 100 + (int)bc);
            for (int64_t c = 0; c < cols; c++)
                x[c] = rng_f();
            for (int64_t r = 0; r < rows; r++) {
                for (int64_t c = 0; c < cols; c++)
                    src[c] = rng_f() * (float)(1 + r % 5);
                if (dt == R1_DTYPE_Q8_0)
                    r1_quantize__q8_0(src, (r1_block_q8_0 *)(void *)(w + rb * (size_t)r), cols);
                else
                    r1_quantize__q4_0(src, (r1_block_q4_0 *)(void *)(w + rb * (size_t)r), cols);
            }
            r1_layout__to_r16(dt, w, rows, cols, packed);
            r1_cpu__quantize_x(x, xq, cols);
            float alone[R1_CPU_R16_STREAMS][16], together[R1_CPU_R16_STREAMS][16];
            for (int t = 0; t < 4; t++) {
                if (tables[t] == NULL)
                    continue;
                for (int g = 0; g < R1_CPU_R16_STREAMS; g++) {
                    const void *one[1] = {packed + gb * (size_t)g};
                    float *dst[1] = {alone[g]};
                    tables[t]->dot_r16[dt](one, 1, xq, nb, dst);
                }
                for (int32_t n = 1; n <= R1_CPU_R16_STREAMS; n++) {
                    /* the groups in reverse order: a set need not be ascending in memory */
                    const void *set[R1_CPU_R16_STREAMS];
                    float *dst[R1_CPU_R16_STREAMS];
                    for (int32_t g = 0; g < n; g++) {
                        set[g] = packed + gb * (size_t)(n - 1 - g);
                        dst[g] = together[n - 1 - g];
                    }
                    memset(together, 0xff, sizeof together);
                    tables[t]->dot_r16[dt](set, n, xq, nb, dst);
                    for (int32_t g = 0; g < n; g++)
                        ck_assert_msg(memcmp(together[g], alone[g], sizeof alone[g]) == 0,
                                      "%s table %d blocks %lld: group %d of %d differs from alone",
                                      r1_dtype__traits(dt)->name, t, (long long)nb, (int)g, (int)n);
                }
            }
            free(xq);
            free(x);
            free(src);
            free(packed);
            free(w);
        }
}
END_TEST

START_TEST(test_kernels_matmul_large_split_is_deterministic)
{
    /* big enough that the 4-thread pool really splits rows, in both the row and panel paths */
    rng_state = 99;
    test_weight w;
    weight_make(&w, R1_DTYPE_FP8_E4M3, 1000, 640);
    float *x = malloc(sizeof(float) * 640 * 8), *a = malloc(sizeof(float) * 1000 * 8),
          *b = malloc(sizeof(float) * 1000 * 8);
    for (int i = 0; i < 640 * 8; i++)
        x[i] = rng_f();
    r1_threadpool *p4 = NULL;
    ck_assert_int_eq(r1_threadpool__create(&p4, 4, -1), R1_OK);
    for (int64_t t = 1; t <= 8; t += 7) {
        ck_assert_int_eq(r1_cpu__matmul(NULL, &w.t, x, t, a), R1_OK);
        for (int rep = 0; rep < 5; rep++) {
            ck_assert_int_eq(r1_cpu__matmul(p4, &w.t, x, t, b), R1_OK);
            ck_assert_mem_eq(a, b, sizeof(float) * (size_t)(1000 * t));
        }
        check_against_reference(&w, x, t, a, "fp8 1000x640");
    }
    r1_threadpool__destroy(p4);
    free(x);
    free(a);
    free(b);
    weight_free(&w);
}
END_TEST

START_TEST(test_kernels_force_level_selects_table)
{
    ck_assert_str_eq(r1_cpu__kernels_scalar()->name, "scalar");
    r1_cpu__force_level(R1_CPU_SCALAR);
    ck_assert_ptr_eq(r1_cpu__kernels_active(), r1_cpu__kernels_scalar());
    if (r1_cpu__detected_level() >= R1_CPU_AVX2) {
        r1_cpu__force_level(R1_CPU_AVX2);
        ck_assert_str_eq(r1_cpu__kernels_active()->name, "avx2");
    }
    if (r1_cpu__detected_level() >= R1_CPU_AVX512) {
        r1_cpu__force_level(R1_CPU_AVX512);
        ck_assert_str_eq(r1_cpu__kernels_active()->name, "avx512");
    }
    ck_assert_int_eq(r1_cpu__force_level(-1), r1_cpu__active_level());
}
END_TEST

START_TEST(test_kernels_dequant_tables_match_dtype_c)
{
    /* the SIMD dequantisers feed sgemm: they must give exactly the reference values */
    for (int32_t dt = 0; dt < R1_DTYPE_COUNT; dt++) {
        int64_t cols = (dt == R1_DTYPE_Q8_0 || dt == R1_DTYPE_Q4_0) ? 320 : 301;
        rng_state = 5 + (uint64_t)dt;
        test_weight w;
        weight_make(&w, dt, 3, cols);
        float want[320], got[320];
        size_t rb = r1_dtype__row_bytes(dt, cols);
        for (int32_t level = R1_CPU_SCALAR; level <= r1_cpu__detected_level(); level++) {
            r1_cpu__force_level(level);
            const r1_cpu_kernel_table *k = r1_cpu__kernels_active();
            for (int64_t r = 0; r < 3; r++) {
                const void *row = (const uint8_t *)w.data + rb * (size_t)r;
                r1_dtype__dequantize_row(dt, row, w.scale, want, cols);
                k->dequant[dt](row, w.scale, got, cols);
                ck_assert_msg(memcmp(want, got, sizeof(float) * (size_t)cols) == 0,
                              "%s dequant differs at level %s", r1_dtype__traits(dt)->name,
                              k->name);
            }
        }
        r1_cpu__force_level(-1);
        weight_free(&w);
    }
}
END_TEST

START_TEST(test_kernels_matmul_rejects_bad_arguments)
{
    float x[64] = {0}, y[64];
    uint8_t data[64 * 64] = {0};
    r1_tensor t = {
        .dtype = R1_DTYPE_Q8_0, .n_dims = 2, .shape = {2, 48}, .data = data, .nbytes = sizeof data};
    ck_assert_int_eq(r1_cpu__matmul(NULL, &t, x, 1, y), R1_ERR_INVALID_ARG); /* 48 % 32 */
    t.dtype = R1_DTYPE_FP8_E4M3;
    ck_assert_int_eq(r1_cpu__matmul(NULL, &t, x, 1, y), R1_ERR_INVALID_ARG); /* no scale */
    t.dtype = 17;
    ck_assert_int_eq(r1_cpu__matmul(NULL, &t, x, 1, y), R1_ERR_INVALID_ARG);
    t.dtype = R1_DTYPE_F32;
    t.shape[0] = 1000; /* more rows than the bytes hold */
    ck_assert_int_eq(r1_cpu__matmul(NULL, &t, x, 1, y), R1_ERR_INVALID_ARG);
    t.shape[0] = 2;
    ck_assert_int_eq(r1_cpu__matmul(NULL, &t, NULL, 1, y), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_cpu__matmul(NULL, &t, x, 0, y), R1_OK);
    /* interleaved rows: only Q8_0/Q4_0 in whole groups of 16 rows, and only known layouts */
    t.layout = R1_LAYOUT_R16;
    ck_assert_int_eq(r1_cpu__matmul(NULL, &t, x, 1, y), R1_ERR_INVALID_ARG); /* f32 */
    t.dtype = R1_DTYPE_Q8_0;
    t.shape[1] = 32;
    ck_assert_int_eq(r1_cpu__matmul(NULL, &t, x, 1, y), R1_ERR_INVALID_ARG); /* 2 rows */
    t.shape[0] = 16;
    ck_assert_int_eq(r1_cpu__matmul(NULL, &t, x, 1, y), R1_OK);
    t.layout = 9;
    ck_assert_int_eq(r1_cpu__matmul(NULL, &t, x, 1, y), R1_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "layout"));
}
END_TEST

START_TEST(test_kernels_cpu_backend_runs_matmul_op)
{
    const r1_backend_ops *ops = r1_backend_cpu__ops();
    r1_dev *dev = NULL;
    ck_assert_int_eq(ops->open(&dev, 0), R1_OK);
    rng_state = 4242;
    test_weight w;
    weight_make(&w, R1_DTYPE_FP8_E4M3, 150, 260);
    float x[3 * 260], want[3 * 150], got[3 * 150];
    for (int i = 0; i < 3 * 260; i++)
        x[i] = rng_f();
    ck_assert_int_eq(r1_cpu__matmul(NULL, &w.t, x, 3, want), R1_OK);

    r1_buf *wb, *sb, *xb, *yb;
    ck_assert_int_eq(ops->wrap_host(dev, w.data, w.t.nbytes, &wb), R1_OK);
    ck_assert_int_eq(ops->wrap_host(dev, w.scale, sizeof(float) * 2 * 3, &sb), R1_OK);
    ck_assert_int_eq(ops->alloc(dev, sizeof x, &xb), R1_OK);
    ck_assert_int_eq(ops->alloc(dev, sizeof got, &yb), R1_OK);
    ck_assert_int_eq(ops->upload(dev, xb, 0, x, sizeof x), R1_OK);
    r1_op op = {.kind = R1_OP_MATMUL, .n_src = 2};
    op.src[0] = (r1_dtensor){.buf = xb, .dtype = R1_DTYPE_F32, .n_dims = 2, .shape = {3, 260}};
    op.src[1] = (r1_dtensor){
        .buf = wb, .dtype = R1_DTYPE_FP8_E4M3, .n_dims = 2, .shape = {150, 260}, .scale_buf = sb};
    op.dst = (r1_dtensor){.buf = yb, .dtype = R1_DTYPE_F32, .n_dims = 2, .shape = {3, 150}};
    ck_assert_int_eq(ops->supports(dev, &op), 1);
    ck_assert_int_eq(ops->run(dev, &op), R1_OK);
    ck_assert_int_eq(ops->download(dev, got, yb, 0, sizeof got), R1_OK);
    ck_assert_mem_eq(got, want, sizeof got);

    op.dst.shape[1] = 151; /* shape mismatch: not supported, and run says so */
    ck_assert_int_eq(ops->supports(dev, &op), 0);
    ck_assert_int_eq(ops->run(dev, &op), R1_ERR_UNSUPPORTED);
    op.dst.shape[1] = 150;
    op.src[1].scale_buf = NULL;
    ck_assert_int_eq(ops->supports(dev, &op), 0);

    ops->free(dev, wb);
    ops->free(dev, sb);
    ops->free(dev, xb);
    ops->free(dev, yb);
    ops->close(dev);
    weight_free(&w);
}
END_TEST

/* ---- decode attention ------------------------------------------------------------------- */

/* R1_OP_MLA_DECODE against the absorbed MLA of docs/model.md §2.6 in double, for every kv_b_proj
 * dtype, with float activations (the 8-bit activation path is held to the reference's act_q8
 * goldens in test_forward.c), serially and on the pool. */
START_TEST(test_kernels_mla_decode_matches_double)
{
    const int32_t dt = _i / 2;
    /* More keys than one of the op's key blocks (128), and a last block part full; then more
     * than R1_MLA_SPLIT_KEYS (1024), which takes the split-key path. */
    enum { H = 3, DN = 32, DR = 16, DV = 32, RKV = 64, NK_MAX = 1300, DL = RKV + DR };
    const int NK = _i % 2 ? NK_MAX : 300;
    const r1_op_mla_decode_params p = {.n_heads = H,
                                       .qk_nope_dim = DN,
                                       .qk_rope_dim = DR,
                                       .v_dim = DV,
                                       .kv_lora_rank = RKV,
                                       .n_keys = NK,
                                       .softmax_scale = 0.1352337789};
    rng_state = 777 + (uint32_t)dt;
    test_weight kv_b;
    weight_make(&kv_b, dt, H * (DN + DV), RKV);
    static float lat[NK_MAX * DL];
    float q[H * (DN + DR)], got[H * DV], serial[H * DV];
    for (int i = 0; i < H * (DN + DR); i++)
        q[i] = rng_f();
    for (int i = 0; i < NK * DL; i++)
        lat[i] = rng_f();
    double want[H * DV], mx = 0;
    for (int h = 0; h < H; h++) {
        const double *wk = kv_b.deq + (size_t)h * (DN + DV) * RKV;
        double qlat[RKV] = {0}, sc[NK_MAX], olat[RKV] = {0}, m = -INFINITY, z = 0;
        for (int i = 0; i < DN; i++)
            for (int r = 0; r < RKV; r++)
                qlat[r] += wk[i * RKV + r] * q[h * (DN + DR) + i];
        for (int j = 0; j < NK; j++) {
            double d = 0;
            for (int r = 0; r < RKV; r++)
                d += qlat[r] * lat[j * DL + r];
            for (int e = 0; e < DR; e++)
                d += (double)q[h * (DN + DR) + DN + e] * lat[j * DL + RKV + e];
            sc[j] = d * p.softmax_scale;
            m = sc[j] > m ? sc[j] : m;
        }
        for (int j = 0; j < NK; j++)
            z += (sc[j] = exp(sc[j] - m));
        for (int j = 0; j < NK; j++)
            for (int r = 0; r < RKV; r++)
                olat[r] += sc[j] / z * lat[j * DL + r];
        for (int c = 0; c < DV; c++) {
            double o = 0;
            for (int r = 0; r < RKV; r++)
                o += wk[(DN + c) * RKV + r] * olat[r];
            want[h * DV + c] = o;
            mx = fabs(o) > mx ? fabs(o) : mx;
        }
    }
    int32_t prev = r1_cpu__set_act_q8(0);
    r1_threadpool *shared = NULL;
    ck_assert_int_eq(r1_threadpool__acquire_shared(&shared), R1_OK);
    r1_threadpool *pools[2] = {NULL, shared};
    for (int k = 0; k < 2; k++) {
        memset(got, 0, sizeof got);
        ck_assert_int_eq(r1_cpu__mla_decode(pools[k], &p, q, lat, &kv_b.t, got), R1_OK);
        for (int i = 0; i < H * DV; i++)
            ck_assert_msg(fabs(got[i] - want[i]) <= 1e-5 * mx,
                          "%s, %d keys: o[%d] = %.9g, reference %.9g", r1_dtype__traits(dt)->name,
                          NK, i, (double)got[i], want[i]);
        /* Heads grouped per thread, or key blocks spread over threads, change nothing: the
         * same bits as on the caller alone. */
        if (k == 0)
            memcpy(serial, got, sizeof got);
        else
            ck_assert_msg(memcmp(serial, got, sizeof got) == 0,
                          "%s: the pool's result differs from the serial one",
                          r1_dtype__traits(dt)->name);
    }
    r1_threadpool__release_shared();
    r1_cpu__set_act_q8(prev);

    /* shapes that do not fit are refused with a message, nothing written */
    r1_op_mla_decode_params bad = p;
    bad.v_dim = DV + 1;
    ck_assert_int_eq(r1_cpu__mla_decode(NULL, &bad, q, lat, &kv_b.t, got), R1_ERR_INVALID_ARG);
    bad = p;
    bad.n_keys = 0;
    ck_assert_int_eq(r1_cpu__mla_decode(NULL, &bad, q, lat, &kv_b.t, got), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_cpu__mla_decode(NULL, &p, NULL, lat, &kv_b.t, got), R1_ERR_INVALID_ARG);
    r1_tensor short_w = kv_b.t;
    short_w.nbytes /= 2;
    ck_assert_int_eq(r1_cpu__mla_decode(NULL, &p, q, lat, &short_w, got), R1_ERR_INVALID_ARG);
    weight_free(&kv_b);
}
END_TEST

/* ---- element-wise --------------------------------------------------------------------- */

static void assert_close(double got, double want, double rel, const char *what, int64_t i)
{
    ck_assert_msg(fabs(got - want) <= rel * fabs(want) + 1e-30, "%s[%lld]: %.9g vs %.9g", what,
                  (long long)i, got, want);
}

START_TEST(test_kernels_rmsnorm_matches_double)
{
    enum { N = 7168 };
    static float x[2 * N], g[N], y[2 * N];
    rng_state = 7;
    for (int i = 0; i < 2 * N; i++)
        x[i] = rng_f() * 30.0f;
    for (int i = 0; i < N; i++)
        g[i] = rng_f() + 1.5f;
    r1_cpu__rmsnorm_rows(x, g, 1e-6f, 2, N, y);
    for (int r = 0; r < 2; r++) {
        double ss = 0;
        for (int i = 0; i < N; i++)
            ss += (double)x[r * N + i] * x[r * N + i];
        double inv = 1.0 / sqrt(ss / N + 1e-6);
        for (int i = 0; i < N; i++)
            assert_close(y[r * N + i], x[r * N + i] * inv * g[i], 3e-7, "rmsnorm", i);
    }
    /* in place, and the eps dominating a zero row */
    float z[4] = {0, 0, 0, 0}, one[4] = {1, 1, 1, 1};
    r1_cpu__rmsnorm(z, one, 1e-5f, 4, z);
    for (int i = 0; i < 4; i++)
        ck_assert(z[i] == 0.0f);
    memcpy(y, x, sizeof(float) * N);
    r1_cpu__rmsnorm(y, g, 1e-6f, N, y);
    float ref[N];
    r1_cpu__rmsnorm(x, g, 1e-6f, N, ref);
    ck_assert_mem_eq(y, ref, sizeof ref);
}
END_TEST

START_TEST(test_kernels_silu_mul_is_stable)
{
    float a[] = {-1000.0f, -88.0f, -5.0f, -0.5f, 0.0f, 0.5f, 5.0f, 88.0f, 1000.0f};
    enum { N = sizeof a / sizeof a[0] };
    float b[N], y[N];
    for (int i = 0; i < N; i++)
        b[i] = 0.5f + (float)i;
    r1_cpu__silu_mul(a, b, N, y);
    for (int i = 0; i < N; i++) {
        double s = (double)a[i] / (1.0 + exp(-(double)a[i]));
        ck_assert(isfinite(y[i]));
        ck_assert_msg(fabs(y[i] - s * b[i]) <= 1e-6 * fabs(s * b[i]) + 1e-37, "silu[%d]", i);
    }
}
END_TEST

/* The exp of kernels_exp.h against double: relative error under 3e-7 while the result is a
 * normal float, that plus half a subnormal step below (the final rounding), exactly 0 under
 * -104. */
START_TEST(test_kernels_exp_matches_double)
{
    double worst = 0;
    for (int64_t i = 0; i <= 2000000; i++) {
        const float x = -110.0f * (float)i / 2000000.0f;
        const double want = exp((double)x);
        const float got = r1_exp_nonpositive(x);
        if (x < R1_EXP_UNDERFLOW) {
            ck_assert_msg(got == 0.0f, "exp(%.9g) = %.9g, want 0", (double)x, (double)got);
        } else if (want >= 1.17549435e-38) {
            const double rel = fabs(got - want) / want;
            worst = rel > worst ? rel : worst;
            ck_assert_msg(rel < 3e-7, "exp(%.9g) = %.9g, reference %.17g", (double)x, (double)got,
                          want);
        } else {
            ck_assert_msg(fabs(got - want) <= 3e-7 * want + 0.5 * 1.40129846e-45 * 1.0001,
                          "exp(%.9g) = %.9g, reference %.17g", (double)x, (double)got, want);
        }
    }
    ck_assert(worst > 0); /* the loop ran over the normal range */
    ck_assert(r1_exp_nonpositive(0.0f) == 1.0f);
    ck_assert(r1_exp_nonpositive(-INFINITY) == 0.0f);
}
END_TEST

/* silu_mul gives the same bits on every level, vector bodies and tails alike, over the whole
 * range of a (both branches, the underflow edge, infinities). */
START_TEST(test_kernels_silu_mul_levels_agree)
{
    enum { N = 4099 };
    static float a[N], b[N], y[4][N];
    rng_state = 31337;
    for (int i = 0; i < N; i++) {
        a[i] = i % 7 == 0 ? -104.0f - (float)(i % 13) * 0.25f : rng_f() * 120.0f;
        b[i] = rng_f() * 3.0f;
    }
    a[1] = INFINITY;
    a[2] = -INFINITY;
    a[3] = 0.0f;
    a[4] = -0.0f;
    const r1_cpu_kernel_table *tables[4];
    level_tables(tables);
    for (int t = 0; t < 4; t++) {
        if (tables[t] == NULL)
            continue;
        ck_assert_ptr_nonnull(tables[t]->silu_mul);
        for (int64_t n = 1; n <= 40; n++) /* every tail length */
            tables[t]->silu_mul(a, b, n, y[t]);
        tables[t]->silu_mul(a, b, N, y[t]);
        ck_assert_msg(memcmp(y[t], y[0], sizeof y[0]) == 0, "table %d differs from scalar", t);
    }
    for (int i = 5; i < N; i++) {
        const double s = (double)a[i] / (1.0 + exp(-(double)a[i])) * (double)b[i];
        ck_assert_msg(fabs(y[0][i] - s) <= 1e-6 * fabs(s) + 1e-37,
                      "silu(%.9g) * %.9g = %.9g, %.17g", (double)a[i], (double)b[i],
                      (double)y[0][i], s);
    }
    ck_assert(y[0][1] == INFINITY * b[1] || isnan(b[1] * 0.0f));
}
END_TEST

START_TEST(test_kernels_softmax_matches_double)
{
    float x[1000];
    double e[1000], sum = 0;
    rng_state = 11;
    for (int i = 0; i < 1000; i++)
        x[i] = rng_f() * 40.0f + 500.0f; /* large logits: exp without the max would overflow */
    x[3] = -INFINITY;
    double mx = -INFINITY;
    for (int i = 0; i < 1000; i++)
        mx = fmax(mx, x[i]);
    for (int i = 0; i < 1000; i++)
        sum += e[i] = exp((double)x[i] - mx);
    r1_cpu__softmax(x, 1000);
    double total = 0;
    for (int i = 0; i < 1000; i++) {
        assert_close(x[i], e[i] / sum, 1e-5, "softmax", i);
        total += x[i];
    }
    ck_assert(fabs(total - 1.0) < 1e-5);
    ck_assert(x[3] == 0.0f);
    float masked[3] = {-INFINITY, -INFINITY, -INFINITY};
    r1_cpu__softmax(masked, 3);
    ck_assert(masked[0] == 0.0f && masked[1] == 0.0f && masked[2] == 0.0f);
}
END_TEST

/* axpy_rows at every level against one fmaf per row and element in row order, bit for bit
 * (the attention op relies on it giving what an axpy per row gives), over widths that take
 * every vector body and tail, with rows further apart than they are wide. */
START_TEST(test_kernels_axpy_rows_levels_agree)
{
    enum { ROWS = 19, LD = 531 };
    const int64_t widths[] = {1, 7, 8, 15, 16, 33, 64, 100, 512};
    static float x[ROWS * LD], y0[LD], want[LD], got[LD];
    float alpha[ROWS];
    rng_state = 11;
    for (int i = 0; i < ROWS * LD; i++)
        x[i] = rng_f();
    for (int i = 0; i < LD; i++)
        y0[i] = rng_f();
    for (int r = 0; r < ROWS; r++)
        alpha[r] = rng_f();
    const r1_cpu_kernel_table *tables[4];
    level_tables(tables);
    for (size_t wi = 0; wi < sizeof widths / sizeof widths[0]; wi++)
        for (int64_t n_rows = 0; n_rows <= ROWS; n_rows += 6) {
            const int64_t n = widths[wi];
            for (int64_t i = 0; i < n; i++) {
                want[i] = y0[i];
                for (int64_t r = 0; r < n_rows; r++)
                    want[i] = fmaf(alpha[r], x[r * LD + i], want[i]);
            }
            for (int t = 0; t < 4; t++) {
                if (tables[t] == NULL)
                    continue;
                memcpy(got, y0, sizeof got);
                tables[t]->axpy_rows(alpha, x, LD, n_rows, n, got);
                ck_assert_msg(memcmp(got, want, (size_t)n * sizeof(float)) == 0,
                              "%s axpy_rows differs at n %lld, %lld rows", tables[t]->name,
                              (long long)n, (long long)n_rows);
                ck_assert_msg(memcmp(got + n, y0 + n, (size_t)(LD - n) * sizeof(float)) == 0,
                              "%s axpy_rows wrote past n %lld", tables[t]->name, (long long)n);
            }
        }
}
END_TEST

START_TEST(test_kernels_vector_ops)
{
    float a[37], b[37], y[37];
    for (int i = 0; i < 37; i++)
        a[i] = (float)i * 0.5f, b[i] = (float)(37 - i);
    r1_cpu__add(a, b, 37, y);
    for (int i = 0; i < 37; i++)
        ck_assert(y[i] == a[i] + b[i]);
    r1_cpu__axpy(2.0f, a, 37, y);
    for (int i = 0; i < 37; i++)
        ck_assert(y[i] == a[i] + b[i] + 2.0f * a[i]);
    r1_cpu__scale(y, 0.25f, 37);
    for (int i = 0; i < 37; i++)
        ck_assert(y[i] == (a[i] + b[i] + 2.0f * a[i]) * 0.25f);

    enum { N = 1003 };
    float u[N], v[N];
    rng_state = 3;
    double ref = 0, mag = 0;
    for (int i = 0; i < N; i++) {
        u[i] = rng_f(), v[i] = rng_f();
        ref += (double)u[i] * v[i];
        mag += fabs((double)u[i] * v[i]);
    }
    for (int32_t level = R1_CPU_SCALAR; level <= r1_cpu__detected_level(); level++) {
        r1_cpu__force_level(level);
        ck_assert(fabs(r1_cpu__dot_f32(u, v, N) - ref) <= 1e-5 * mag);
        ck_assert(r1_cpu__dot_f32(u, v, 0) == 0.0f);
        ck_assert(r1_cpu__dot_f32(u, v, 5) == r1_cpu__dot_f32(u, v, 5));
    }
    r1_cpu__force_level(-1);
}
END_TEST

static Suite *kernels_suite(void)
{
    Suite *s = suite_create("kernels");
    TCase *pool = tcase_create("thread pool");
    tcase_add_test(pool, test_kernels_pool_runs_every_task_once);
    tcase_add_test(pool, test_kernels_pool_scratch_and_null_pool);
    suite_add_tcase(s, pool);
    TCase *mm = tcase_create("matmul");
    tcase_add_loop_test(mm, test_kernels_matmul_every_dtype_level_and_threads, 0, R1_DTYPE_COUNT);
    tcase_add_test(mm, test_kernels_matmul_large_split_is_deterministic);
    tcase_add_test(mm, test_kernels_quantize_x_blocks);
    tcase_add_test(mm, test_kernels_qx_levels_agree);
    tcase_add_test(mm, test_kernels_r16_layout_roundtrip);
    tcase_add_test(mm, test_kernels_r16_levels_agree);
    tcase_add_test(mm, test_kernels_r16_streams_match_single_groups);
    tcase_add_test(mm, test_kernels_force_level_selects_table);
    tcase_add_test(mm, test_kernels_dequant_tables_match_dtype_c);
    tcase_add_test(mm, test_kernels_matmul_rejects_bad_arguments);
    tcase_add_test(mm, test_kernels_cpu_backend_runs_matmul_op);
    tcase_add_loop_test(mm, test_kernels_mla_decode_matches_double, 0, 2 * R1_DTYPE_COUNT);
    suite_add_tcase(s, mm);
    TCase *ew = tcase_create("element-wise");
    tcase_add_test(ew, test_kernels_rmsnorm_matches_double);
    tcase_add_test(ew, test_kernels_silu_mul_is_stable);
    tcase_add_test(ew, test_kernels_exp_matches_double);
    tcase_add_test(ew, test_kernels_silu_mul_levels_agree);
    tcase_add_test(ew, test_kernels_softmax_matches_double);
    tcase_add_test(ew, test_kernels_vector_ops);
    tcase_add_test(ew, test_kernels_axpy_rows_levels_agree);
    suite_add_tcase(s, ew);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(kernels_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
