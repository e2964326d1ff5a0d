/* cpu_matmul.c: weight products: level dispatch, row split over the pool, BLAS panels. */
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_features.h"
#include "cpu_kernels.h"
#include "dtype.h"
#include "error.h"
#include "kernels_levels.h"
#include "weight_layout.h"

#ifdef R1_CPU_HAVE_BLAS
#include <cblas.h>
#endif

enum {
    /* Row chunks start at multiples of this: whole cache lines of y per task for f32 outputs,
     * and a grain coarse enough that claiming a task costs nothing next to computing it. */
    R1_MM_ROW_ALIGN = 16,
    /* Chunks per thread: enough to even out a slow core, few enough that each chunk's
     * prefetch stream gets going (test/bench_kernels, Q4_0 R16 1408 x 2048 on two threads:
     * 4 chunks 22-23 GB/s, 2 chunks 23-24, 1 chunk 23-25). */
    R1_MM_TASKS_PER_THREAD = 2,
    /* Below this many multiply-adds the op runs on the caller: waking workers costs more. */
    R1_MM_MIN_PARALLEL_MACS = 1 << 15,
    /* Rows per dequantised sgemm panel; panels start at fixed multiples of it, so every
     * element's sgemm call (and its arithmetic) is the same for any thread count. */
    R1_MM_PANEL_ROWS = 64,
    R1_MM_BLAS_MIN_TOKENS = 4,
    /* Up to this many tokens an R16 product reads its weights as parallel streams (decode);
     * above it the arithmetic per weight byte, not the memory, sets the pace. */
    R1_MM_STREAM_MAX_TOKENS = 4,
    /* A decode token's 8-bit activations (224 blocks for DeepSeek-V3's 7168 columns) stay on
     * the caller's stack, so a decode step allocates nothing here. */
    R1_MM_XQ_STACK_BYTES = 8192,
};

const r1_cpu_kernel_table *r1_cpu__kernels_active(void)
{
#ifdef R1_CPU_X86_KERNELS
    switch (r1_cpu__active_level()) {
    case R1_CPU_AVX512:
        return r1_cpu__has_avx512vnni() ? r1_cpu__kernels_avx512vnni() : r1_cpu__kernels_avx512();
    case R1_CPU_AVX2: return r1_cpu__kernels_avx2();
    default: break;
    }
#endif
    return r1_cpu__kernels_scalar();
}

static r1_cpu_qx_hook r1_mm_qx_hook;
static void *r1_mm_qx_hook_user;

void r1_cpu__set_qx_hook(r1_cpu_qx_hook fn, void *user)
{
    r1_mm_qx_hook = fn;
    r1_mm_qx_hook_user = user;
}

void r1_cpu__quantize_act(const r1_cpu_kernel_table *k, const float *x, r1_cpu_qx_block *out,
                          int64_t n)
{
    k->quantize_x(x, out, n);
    if (r1_mm_qx_hook != NULL)
        r1_mm_qx_hook(x, out, n, r1_mm_qx_hook_user);
}

static _Atomic int32_t r1_mm_blas_mode = 1;
static _Atomic int32_t r1_mm_act_q8_mode = 1;
static pthread_once_t r1_mm_act_q8_once = PTHREAD_ONCE_INIT;

static void r1_mm_act_q8_init(void)
{
    const char *env = getenv("R1_CPU_ACT_Q8");
    if (env != NULL && strcmp(env, "0") == 0)
        atomic_store(&r1_mm_act_q8_mode, 0);
}

static int32_t r1_mm_act_q8(void)
{
    pthread_once(&r1_mm_act_q8_once, r1_mm_act_q8_init);
    return atomic_load(&r1_mm_act_q8_mode);
}

int32_t r1_cpu__act_q8_enabled(void)
{
    return r1_mm_act_q8();
}

static int32_t r1_mm_repack = 1;
static pthread_once_t r1_mm_repack_once = PTHREAD_ONCE_INIT;

static void r1_mm_repack_init(void)
{
    const char *env = getenv("R1_CPU_REPACK");
    r1_mm_repack = !(env != NULL && strcmp(env, "0") == 0);
}

int32_t r1_cpu__weight_layout(void)
{
    pthread_once(&r1_mm_repack_once, r1_mm_repack_init);
    return r1_mm_repack && r1_mm_act_q8() ? R1_LAYOUT_R16 : R1_LAYOUT_ROWS;
}

int32_t r1_cpu__set_act_q8(int32_t mode)
{
    pthread_once(&r1_mm_act_q8_once, r1_mm_act_q8_init);
    return atomic_exchange(&r1_mm_act_q8_mode, mode ? 1 : 0);
}

int32_t r1_cpu__set_blas(int32_t mode)
{
    return atomic_exchange(&r1_mm_blas_mode, mode ? 1 : 0);
}

int64_t r1_cpu__blas_min_tokens(void)
{
#ifdef R1_CPU_HAVE_BLAS
    return R1_MM_BLAS_MIN_TOKENS;
#else
    return 0;
#endif
}

typedef struct r1_mm_ctx {
    const r1_cpu_kernel_table *k;
    r1_threadpool *pool;
    const uint8_t *w;
    size_t row_bytes;
    const float *scale;
    int64_t scale_cols;
    int32_t dtype;
    int32_t layout;     /* enum r1_layout */
    size_t group_bytes; /* R16: bytes of 16 rows */
    int64_t rows, cols; /* out, in */
    const float *x;
    int64_t n_tokens;
    float *y;
    const r1_cpu_qx_block *xq; /* n_tokens rows of cols / 32 blocks, or NULL */
    int64_t rows_per_task;
    _Atomic int32_t failed; /* a panel buffer could not be allocated */
} r1_mm_ctx;

static const float *r1_mm_scale_row(const r1_mm_ctx *c, int64_t r)
{
    return c->scale != NULL ? c->scale + (r / R1_FP8_SCALE_BLOCK) * c->scale_cols : NULL;
}

/* Each row's dot product runs in full for one token at a time: the order inside the kernel is
 * the only order, whoever runs the row. */
static void r1_mm_rows_task(void *ctx, int64_t task, int32_t worker)
{
    r1_mm_ctx *c = ctx;
    int64_t r0 = task * c->rows_per_task;
    int64_t r1 = r0 + c->rows_per_task < c->rows ? r0 + c->rows_per_task : c->rows;
    if (c->layout == R1_LAYOUT_R16) {
        /* Float activations on interleaved rows: each group of 16 rows dequantised once into
         * the worker's scratch, then plain float dots (the integer kernels are the fast path;
         * this one serves callers that turned 8-bit activations off). */
        float *rows = r1_threadpool__scratch(c->pool, worker,
                                             (size_t)R1_R16_ROWS * (size_t)c->cols * sizeof(float));
        if (rows == NULL) {
            atomic_store(&c->failed, 1);
            return;
        }
        for (int64_t g = r0; g < r1; g += R1_R16_ROWS) {
            c->k->dequant_r16[c->dtype](c->w + (size_t)(g / R1_R16_ROWS) * c->group_bytes, c->cols,
                                        rows);
            for (int64_t i = 0; i < R1_R16_ROWS; i++)
                for (int64_t t = 0; t < c->n_tokens; t++)
                    c->y[t * c->rows + g + i] =
                        c->k->dot_f32(rows + i * c->cols, c->x + t * c->cols, c->cols);
        }
        return;
    }
    r1_cpu_dot_fn dot = c->k->dot[c->dtype];
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = c->w + (size_t)r * c->row_bytes;
        const float *srow = r1_mm_scale_row(c, r);
        for (int64_t t = 0; t < c->n_tokens; t++)
            c->y[t * c->rows + r] = dot(row, srow, c->x + t * c->cols, c->cols);
    }
}

enum { R1_MM_QX_ROW_GROUP = 16 }; /* rows kept in L1/L2 while every token passes over them */

/* Groups [g0, g0 + n) of an R16 weight. With few tokens the product is bound by how fast the
 * weights stream in, so the range is cut into R1_CPU_R16_STREAMS equal runs read side by side
 * (kernels_levels.h); with more, each group is reused from L1 by every token in turn. */
static void r1_mm_r16_range(const r1_mm_ctx *c, int64_t g0, int64_t n)
{
    const r1_cpu_dot_r16_fn dot16 = c->k->dot_r16[c->dtype];
    const int64_t n_blocks = c->cols / R1_QBLOCK;
    const int64_t streams = c->n_tokens <= R1_MM_STREAM_MAX_TOKENS ? R1_CPU_R16_STREAMS : 1;
    const int64_t run = n / streams;
    const void *groups[R1_CPU_R16_STREAMS];
    float *out[R1_CPU_R16_STREAMS];
    for (int64_t i = 0; i < run; i++)
        for (int64_t t = 0; t < c->n_tokens; t++) {
            for (int64_t k = 0; k < streams; k++) {
                const int64_t g = g0 + k * run + i;
                groups[k] = c->w + (size_t)g * c->group_bytes;
                out[k] = c->y + t * c->rows + g * R1_R16_ROWS;
            }
            dot16(groups, (int32_t)streams, c->xq + t * n_blocks, n_blocks, out);
        }
    for (int64_t g = g0 + streams * run; g < g0 + n; g++) /* fewer than `streams` left */
        for (int64_t t = 0; t < c->n_tokens; t++) {
            groups[0] = c->w + (size_t)g * c->group_bytes;
            out[0] = c->y + t * c->rows + g * R1_R16_ROWS;
            dot16(groups, 1, c->xq + t * n_blocks, n_blocks, out);
        }
}

/* The integer path: the task's rows in groups that every token reuses from cache. */
static void r1_mm_rows_qx_task(void *ctx, int64_t task, int32_t worker)
{
    (void)worker;
    r1_mm_ctx *c = ctx;
    int64_t r0 = task * c->rows_per_task;
    int64_t r1 = r0 + c->rows_per_task < c->rows ? r0 + c->rows_per_task : c->rows;
    int64_t n_blocks = c->cols / R1_QBLOCK;
    if (c->layout == R1_LAYOUT_R16) {
        r1_mm_r16_range(c, r0 / R1_R16_ROWS, (r1 - r0) / R1_R16_ROWS);
        return;
    }
    r1_cpu_dot_qx_fn dot = c->k->dot_qx[c->dtype];
    int64_t group = c->n_tokens == 1 ? r1 - r0 : R1_MM_QX_ROW_GROUP;
    for (int64_t g = r0; g < r1; g += group) {
        int32_t n = (int32_t)(r1 - g < group ? r1 - g : group);
        for (int64_t t = 0; t < c->n_tokens; t++)
            dot(c->w + (size_t)g * c->row_bytes, c->row_bytes, n, c->xq + t * n_blocks, n_blocks,
                c->y + t * c->rows + g);
    }
}

#ifdef R1_CPU_HAVE_BLAS
/* Our pool already gives every core a panel, so each panel's sgemm must run on one OpenBLAS
 * thread, or OpenBLAS's own threads would oversubscribe the cores. OpenBLAS 0.3.21 (Debian 12)
 * has no per-call or per-thread setting (openblas_set_num_threads_local came in 0.3.22), only
 * the process-wide one, which belongs to the host application. So it is lowered to 1 only while
 * some r1 BLAS product is running, and put back when the last one ends: the first product in
 * saves the host's value, the last one out restores it.
 *
 * The race this leaves (docs/embedding.md): while an r1 product runs, a BLAS call the host makes
 * on another thread runs on one OpenBLAS thread (the same result, slower); and a host call to
 * openblas_set_num_threads() in that window wins only if it sets a value other than 1 (the
 * restore skips a setting that is no longer ours). Nothing r1 does outlives its call. */
#ifdef R1_CPU_HAVE_OPENBLAS
static pthread_mutex_t r1_mm_blas_lock = PTHREAD_MUTEX_INITIALIZER;
static int64_t r1_mm_blas_users; /* guarded by r1_mm_blas_lock, as is the saved value */
static int r1_mm_blas_saved_threads;

static void r1_mm_blas_enter(void)
{
    pthread_mutex_lock(&r1_mm_blas_lock);
    if (r1_mm_blas_users++ == 0) {
        r1_mm_blas_saved_threads = openblas_get_num_threads();
        if (r1_mm_blas_saved_threads != 1)
            openblas_set_num_threads(1);
    }
    pthread_mutex_unlock(&r1_mm_blas_lock);
}

static void r1_mm_blas_leave(void)
{
    pthread_mutex_lock(&r1_mm_blas_lock);
    if (--r1_mm_blas_users == 0 && r1_mm_blas_saved_threads != 1 && openblas_get_num_threads() == 1)
        openblas_set_num_threads(r1_mm_blas_saved_threads);
    pthread_mutex_unlock(&r1_mm_blas_lock);
}
#else
static void r1_mm_blas_enter(void) {}

static void r1_mm_blas_leave(void) {}
#endif

static void r1_mm_panel_task(void *ctx, int64_t task, int32_t worker)
{
    r1_mm_ctx *c = ctx;
    int64_t r0 = task * R1_MM_PANEL_ROWS;
    int64_t n = c->rows - r0 < R1_MM_PANEL_ROWS ? c->rows - r0 : R1_MM_PANEL_ROWS;
    const float *panel;
    if (c->dtype == R1_DTYPE_F32) {
        panel = (const float *)(const void *)(c->w + (size_t)r0 * c->row_bytes);
    } else {
        float *buf = r1_threadpool__scratch(
            c->pool, worker, (size_t)R1_MM_PANEL_ROWS * (size_t)c->cols * sizeof(float));
        if (buf == NULL) {
            atomic_store(&c->failed, 1);
            return;
        }
        if (c->layout == R1_LAYOUT_R16) /* panels start at multiples of 64: whole groups */
            for (int64_t i = 0; i < n; i += R1_R16_ROWS)
                c->k->dequant_r16[c->dtype](c->w +
                                                (size_t)((r0 + i) / R1_R16_ROWS) * c->group_bytes,
                                            c->cols, buf + i * c->cols);
        else
            for (int64_t i = 0; i < n; i++)
                c->k->dequant[c->dtype](c->w + (size_t)(r0 + i) * c->row_bytes,
                                        r1_mm_scale_row(c, r0 + i), buf + i * c->cols, c->cols);
        panel = buf;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)c->n_tokens, (int)n, (int)c->cols,
                1.0f, c->x, (int)c->cols, panel, (int)c->cols, 0.0f, c->y + r0, (int)c->rows);
}
#endif

static r1_status r1_mm_check(const r1_tensor *w, const float *x, int64_t n_tokens, const float *y)
{
    if (w == NULL || x == NULL || y == NULL || w->data == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "matmul: NULL weight, input or output");
    const r1_dtype_traits *tr = r1_dtype__traits(w->dtype);
    if (tr == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "matmul: unknown weight dtype %d", (int)w->dtype);
    if (w->n_dims < 1 || w->n_dims > R1_MAX_DIMS || n_tokens < 0)
        return r1_error__set(R1_ERR_INVALID_ARG, "matmul: %d-d weight, %lld tokens", (int)w->n_dims,
                             (long long)n_tokens);
    int64_t rows = r1_tensor__rows(w), cols = r1_tensor__cols(w);
    if (rows <= 0 || cols <= 0 || cols > INT32_MAX || rows > INT32_MAX)
        return r1_error__set(R1_ERR_INVALID_ARG, "matmul: bad weight shape %lld x %lld",
                             (long long)rows, (long long)cols);
    size_t row_bytes = r1_dtype__row_bytes(w->dtype, cols);
    if (row_bytes == 0)
        return r1_error__set(R1_ERR_INVALID_ARG,
                             "matmul: %lld columns are not whole %s blocks of %u", (long long)cols,
                             tr->name, (unsigned)tr->block_elems);
    if ((size_t)rows > w->nbytes / row_bytes)
        return r1_error__set(R1_ERR_INVALID_ARG,
                             "matmul: %s weight %lld x %lld needs %zu bytes per row, has %zu bytes",
                             tr->name, (long long)rows, (long long)cols, row_bytes, w->nbytes);
    if (tr->has_block_scale && (w->scale == NULL || w->scale_cols != r1_fp8__scale_blocks(cols)))
        return r1_error__set(R1_ERR_INVALID_ARG,
                             "matmul: %s weight needs a block scale with %lld columns", tr->name,
                             (long long)r1_fp8__scale_blocks(cols));
    if (w->layout != R1_LAYOUT_ROWS &&
        (w->layout != R1_LAYOUT_R16 || !r1_layout__r16_eligible(w->dtype, rows, cols)))
        return r1_error__set(R1_ERR_INVALID_ARG,
                             "matmul: a %s weight %lld x %lld cannot be in layout %d", tr->name,
                             (long long)rows, (long long)cols, (int)w->layout);
    return R1_OK;
}

r1_status r1_cpu__matmul(r1_threadpool *pool, const r1_tensor *w, const float *x, int64_t n_tokens,
                         float *y)
{
    r1_status st = r1_mm_check(w, x, n_tokens, y);
    if (st != R1_OK || n_tokens == 0)
        return st;
    r1_mm_ctx c = {
        .k = r1_cpu__kernels_active(),
        .pool = pool,
        .w = w->data,
        .row_bytes = r1_dtype__row_bytes(w->dtype, r1_tensor__cols(w)),
        .scale = r1_dtype__traits(w->dtype)->has_block_scale ? w->scale : NULL,
        .scale_cols = w->scale_cols,
        .dtype = w->dtype,
        .layout = w->layout,
        .group_bytes = R1_R16_ROWS * r1_dtype__row_bytes(w->dtype, r1_tensor__cols(w)),
        .rows = r1_tensor__rows(w),
        .cols = r1_tensor__cols(w),
        .x = x,
        .n_tokens = n_tokens,
        .y = y,
    };
    /* Q8_0/Q4_0 on 8-bit activations take the integer kernels for any number of tokens, as
     * llama.cpp does: one arithmetic for prefill and decode (a token's result does not depend
     * on the chunk it came in), and on these weights faster than dequantise + sgemm (measured
     * with test/bench_kernels, 1408 x 2048, 64 tokens, two threads: Q8_0 0.9 ms in R16 against
     * 6.6 ms through sgemm). */
    const int integer = c.k->dot_qx[c.dtype] != NULL && r1_mm_act_q8();
#ifdef R1_CPU_HAVE_BLAS
    if (!integer && n_tokens >= R1_MM_BLAS_MIN_TOKENS && atomic_load(&r1_mm_blas_mode)) {
        int64_t n_panels = (c.rows + R1_MM_PANEL_ROWS - 1) / R1_MM_PANEL_ROWS;
        if (c.dtype != R1_DTYPE_F32 &&
            (st = r1_threadpool__reserve(pool, (size_t)R1_MM_PANEL_ROWS * (size_t)c.cols *
                                                   sizeof(float))) != R1_OK)
            return st;
        r1_mm_blas_enter();
        r1_threadpool__run(pool, n_panels, r1_mm_panel_task, &c);
        r1_mm_blas_leave();
        if (atomic_load(&c.failed))
            return r1_error__set(R1_ERR_NO_MEMORY,
                                 "matmul: cannot allocate a %d x %lld dequantisation panel",
                                 (int)R1_MM_PANEL_ROWS, (long long)c.cols);
        return R1_OK;
    }
#endif
    int64_t n_threads = r1_threadpool__size(pool);
    int64_t n_tasks = n_threads * R1_MM_TASKS_PER_THREAD;
    if (n_threads == 1 || c.rows * c.cols * n_tokens < R1_MM_MIN_PARALLEL_MACS)
        n_tasks = 1;
    int64_t per = (c.rows + n_tasks - 1) / n_tasks;
    per = (per + R1_MM_ROW_ALIGN - 1) / R1_MM_ROW_ALIGN * R1_MM_ROW_ALIGN;
    c.rows_per_task = per;
    r1_threadpool_fn task = r1_mm_rows_task;
    r1_cpu_qx_block *xq = NULL;
    alignas(64) unsigned char xq_stack[R1_MM_XQ_STACK_BYTES];
    if (integer) {
        /* Quantised once per op into the call's own buffer: concurrent callers sharing the
         * pool never share it, the workers only read it, and no thread-local buffer is left
         * behind in the host's threads (whose destructor would outlive a dlclose). A decode
         * token fits on the stack; a prompt chunk's goes to the heap. */
        int64_t n_blocks = c.cols / R1_QBLOCK;
        size_t xq_bytes = (size_t)(n_tokens * n_blocks) * sizeof(r1_cpu_qx_block);
        xq = xq_bytes <= sizeof xq_stack ? (r1_cpu_qx_block *)(void *)xq_stack : malloc(xq_bytes);
        if (xq == NULL)
            return r1_error__set(R1_ERR_NO_MEMORY,
                                 "matmul: cannot allocate %lld quantised activation blocks",
                                 (long long)(n_tokens * n_blocks));
        for (int64_t t = 0; t < n_tokens; t++)
            r1_cpu__quantize_act(c.k, x + t * c.cols, xq + t * n_blocks, c.cols);
        c.xq = xq;
        task = r1_mm_rows_qx_task;
    } else if (c.layout == R1_LAYOUT_R16 &&
               (st = r1_threadpool__reserve(pool, (size_t)R1_R16_ROWS * (size_t)c.cols *
                                                      sizeof(float))) != R1_OK) {
        return st;
    }
    r1_threadpool__run(pool, (c.rows + per - 1) / per, task, &c);
    if ((void *)xq != (void *)xq_stack)
        free(xq);
    if (atomic_load(&c.failed))
        return r1_error__set(R1_ERR_NO_MEMORY,
                             "matmul: cannot allocate %d dequantised rows of %lld",
                             (int)R1_R16_ROWS, (long long)c.cols);
    return R1_OK;
}
