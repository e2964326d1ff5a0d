/* device_parity.c: the device backends' shared parity tests against the CPU backend (see
 * device_parity.h): the op tests, the whole-model tests and the helpers both suites use. */
#include "device_parity.h"

#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "dtype.h"
#include "file_testutil.h"
#include "model.h"
#include "model_config.h"
#include "session_testutil.h"

static const dp_backend *be; /* the backend under test (dp_use) */

void dp_use(const dp_backend *b)
{
    be = b;
}

/* After a shared test used the device: the backend's own check (Vulkan's validation layer). */
static void check_clean(void)
{
    if (be->check_clean != NULL)
        be->check_clean();
}

static const char *VARIANTS[] = {"src", "q8_0", "q4_0", "f32", "f16"};

double dp_rel_diff(const float *got, const float *want, size_t n)
{
    double mx = 0, md = 0;
    for (size_t i = 0; i < n; i++) {
        mx = fmax(mx, fabs((double)want[i]));
        md = fmax(md, fabs((double)got[i] - (double)want[i]));
        if (isnan(got[i]) != isnan(want[i]))
            return INFINITY;
    }
    return mx > 0 ? md / mx : md;
}

static double worst_seen; /* the largest relative difference any parity check reached */

double dp_worst_seen(void)
{
    return worst_seen;
}

void dp_note_diff(double d)
{
    if (d > worst_seen)
        worst_seen = d;
}

/* ---- buffers, transfers, queue ------------------------------------------------------------ */

START_TEST(dp_buffers_round_trip)
{
    const r1_backend_ops *ops = be->ops();
    r1_dev *dev = NULL;
    ck_assert_msg(ops->open(&dev, 0) == R1_OK, "%s", r1_last_error());
    r1_device_info info;
    ck_assert_int_eq(ops->device_info(dev, &info), R1_OK);
    ck_assert_str_ne(info.name, "");
    ck_assert_int_eq(info.host_shared, 0);

    enum { N = 100000 };
    uint8_t *src = malloc(N), *dst = calloc(1, N);
    for (int i = 0; i < N; i++)
        src[i] = (uint8_t)(i * 13 + 7);
    r1_buf *a = NULL, *b = NULL;
    ck_assert_int_eq(ops->alloc(dev, N, &a), R1_OK);
    ck_assert_int_eq(ops->alloc(dev, N, &b), R1_OK);
    uint64_t before = ops->completed(dev);
    ck_assert_int_eq(ops->upload(dev, a, 0, src, N), R1_OK);
    uint64_t s1 = 0, s2 = 0;
    ck_assert_int_eq(ops->submit(dev, &s1), R1_OK);
    ck_assert_uint_eq(s1, before + 1);
    /* a second batch: device-to-host of a part, after the first completes on the same queue */
    ck_assert_int_eq(ops->download(dev, dst + 10, a, 10, N - 20), R1_OK);
    ck_assert_int_eq(ops->submit(dev, &s2), R1_OK);
    ck_assert_uint_eq(s2, s1 + 1);
    ck_assert_int_eq(ops->wait(dev, s2), R1_OK);
    ck_assert_uint_ge(ops->completed(dev), s2);
    ck_assert_mem_eq(dst + 10, src + 10, N - 20);
    ck_assert_uint_eq(dst[0], 0);

    /* many submits cycle through the frame ring */
    for (int i = 0; i < 20; i++) {
        src[0] = (uint8_t)i;
        ck_assert_int_eq(ops->upload(dev, b, 0, src, 1), R1_OK);
        ck_assert_int_eq(ops->download(dev, dst, b, 0, 1), R1_OK);
        ck_assert_int_eq(ops->submit(dev, &s1), R1_OK);
        ck_assert_int_eq(ops->wait(dev, UINT64_MAX), R1_OK);
        ck_assert_uint_eq(dst[0], (uint8_t)i);
    }

    /* a large transfer both ways in one submit (Vulkan: the upload, larger than a frame's
     * staging, moves in pieces over several submits) */
    {
        const size_t big_n = (size_t)80 << 20;
        uint8_t *big_src = malloc(big_n), *big_dst = malloc(big_n);
        for (size_t i = 0; i < big_n; i++)
            big_src[i] = (uint8_t)(i * 31 + (i >> 20));
        r1_buf *big = NULL;
        ck_assert_int_eq(ops->alloc(dev, big_n, &big), R1_OK);
        uint64_t first = ops->completed(dev), last = 0;
        ck_assert_int_eq(ops->upload(dev, big, 0, big_src, big_n), R1_OK);
        ck_assert_int_eq(ops->download(dev, big_dst, big, 0, big_n), R1_OK);
        ck_assert_int_eq(ops->submit(dev, &last), R1_OK);
        /* Vulkan: the upload flushed a frame on its way */
        ck_assert_uint_gt(last, first + (be->big_upload_flushes ? 1 : 0));
        ck_assert_int_eq(ops->wait(dev, last), R1_OK);
        ck_assert(memcmp(big_src, big_dst, big_n) == 0);
        ops->free(dev, big);
        free(big_src);
        free(big_dst);
    }

    /* out of range and bad arguments: refused with a message, buffers stay usable */
    ck_assert_int_eq(ops->upload(dev, a, N - 1, src, 2), R1_ERR_OUT_OF_RANGE);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "exceeds"));
    ck_assert_int_eq(ops->download(dev, dst, a, SIZE_MAX, 1), R1_ERR_OUT_OF_RANGE);
    ck_assert_int_eq(ops->upload(dev, NULL, 0, src, 1), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(ops->download(dev, NULL, a, 0, 1), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(ops->run(dev, NULL), R1_ERR_INVALID_ARG);
    r1_op bad;
    memset(&bad, 0, sizeof bad);
    bad.kind = R1_OP_KIND_END;
    ck_assert_int_eq(ops->supports(dev, &bad), 0);
    ck_assert_int_eq(ops->run(dev, &bad), R1_ERR_UNSUPPORTED);

    ops->free(dev, a);
    ops->free(dev, b);
    ops->close(dev);
    free(src);
    free(dst);
    check_clean();
}
END_TEST

void dp_check_device_selectors(const char *absent_index, int names_present)
{
    const r1_backend_ops *ops = be->ops();
    r1_dev *dev = NULL;
    ck_assert_int_eq(ops->open(&dev, 999), R1_ERR_OUT_OF_RANGE);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "device index"));
    ck_assert_ptr_null(dev);

    /* The public selector: by index and by a part of the name in any case. */
    char name[256];
    ck_assert_int_eq(ops->open(&dev, 0), R1_OK);
    r1_device_info info;
    ck_assert_int_eq(ops->device_info(dev, &info), R1_OK);
    ops->close(dev);
    snprintf(name, sizeof name, "%s", info.name);
    for (char *c = name; *c; c++) /* the name upper-cased, cut to its first six characters */
        *c = (char)toupper((unsigned char)*c);
    name[6] = '\0';
    const char *good[] = {"0", name};
    for (size_t i = 0; i < 2; i++) {
        r1_compute c;
        ck_assert_msg(r1_compute__open(&c, be->name, good[i]) == R1_OK, "%s: %s", good[i],
                      r1_last_error());
        r1_compute__close(&c);
    }
    const char *bad[] = {absent_index, "no such device name"};
    for (size_t i = 0; i < 2; i++) {
        r1_compute c;
        ck_assert_int_eq(r1_compute__open(&c, be->name, bad[i]), R1_ERR_NOT_FOUND);
        ck_assert_ptr_nonnull(strstr(r1_last_error(), bad[i]));
        if (names_present)
            ck_assert_ptr_nonnull(strstr(r1_last_error(), info.name)); /* what is present */
    }
    r1_model_opts *o = NULL;
    ck_assert_int_eq(r1_model_opts_create(&o), R1_OK);
    ck_assert_int_eq(r1_model_opts_set_backend(o, be->name), R1_OK);
    ck_assert_int_eq(r1_model_opts_set_device(o, "no such device name"), R1_OK);
    char path[1024];
    snprintf(path, sizeof path, "%s/tiny-v3-q8_0.r1m", tu_models_dir());
    r1_model *m = NULL;
    ck_assert_int_eq(r1_model_load(&m, path, NULL, o), R1_ERR_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "no such device name"));
    ck_assert_int_eq(r1_model_opts_set_device(o, name), R1_OK);
    ck_assert_msg(r1_model_load(&m, path, NULL, o) == R1_OK, "%s", r1_last_error());
    r1_model_destroy(m);
    r1_model_opts_destroy(o);
}

/* ---- the matrix product in every weight type ---------------------------------------------- */

float dp_frand(unsigned *state)
{
    *state = *state * 1103515245u + 12345u;
    return (float)((*state >> 8) & 0xffff) / 32768.0f - 1.0f;
}

/* A (rows, cols) weight in type dt built from random floats; fp8 gets block scales. */
void dp_make_weight(int32_t dt, int64_t rows, int64_t cols, unsigned seed, r1_tensor *w,
                    void **data, float **scale)
{
    float *f = malloc((size_t)(rows * cols) * sizeof(float));
    for (int64_t i = 0; i < rows * cols; i++)
        f[i] = dp_frand(&seed);
    size_t row_bytes = r1_dtype__row_bytes(dt, cols);
    uint8_t *d = malloc((size_t)rows * row_bytes);
    *scale = NULL;
    memset(w, 0, sizeof *w);
    for (int64_t r = 0; r < rows; r++) {
        const float *src = f + r * cols;
        uint8_t *dst = d + (size_t)r * row_bytes;
        for (int64_t c = 0; c < cols; c++) {
            switch (dt) {
            case R1_DTYPE_F32: memcpy(dst + 4 * c, &src[c], 4); break;
            case R1_DTYPE_F16: {
                uint16_t h = r1_fp16__from_f32(src[c]);
                memcpy(dst + 2 * c, &h, 2);
                break;
            }
            case R1_DTYPE_BF16: {
                uint16_t h = r1_bf16__from_f32(src[c]);
                memcpy(dst + 2 * c, &h, 2);
                break;
            }
            case R1_DTYPE_FP8_E4M3: dst[c] = (uint8_t)((seed = seed * 69069u + 1u) >> 16); break;
            default: break;
            }
        }
        if (dt == R1_DTYPE_FP8_E4M3) /* avoid the NaN codes 0x7f and 0xff */
            for (int64_t c = 0; c < cols; c++)
                if ((dst[c] & 0x7f) == 0x7f)
                    dst[c] ^= 1;
        if (dt == R1_DTYPE_Q8_0)
            r1_quantize__q8_0(src, (r1_block_q8_0 *)(void *)dst, cols);
        if (dt == R1_DTYPE_Q4_0)
            r1_quantize__q4_0(src, (r1_block_q4_0 *)(void *)dst, cols);
    }
    w->dtype = dt;
    w->n_dims = 2;
    w->shape[0] = rows;
    w->shape[1] = cols;
    w->data = d;
    w->nbytes = (size_t)rows * row_bytes;
    if (dt == R1_DTYPE_FP8_E4M3) {
        int64_t sr = (rows + 127) / 128, sc = (cols + 127) / 128;
        *scale = malloc((size_t)(sr * sc) * sizeof(float));
        for (int64_t i = 0; i < sr * sc; i++)
            (*scale)[i] = 0.001f * (float)(i + 1);
        w->scale = *scale;
        w->scale_cols = sc;
    }
    *data = d;
    free(f);
}

void dp_check_matmul_every_dtype(r1_compute *cpu, r1_compute *gpu, const int64_t (*shapes)[3],
                                 size_t n_shapes)
{
    for (int32_t dt = 0; dt < R1_DTYPE_COUNT; dt++)
        for (size_t si = 0; si < n_shapes; si++) {
            const int64_t rows = shapes[si][0], cols = shapes[si][1], T = shapes[si][2];
            r1_tensor w;
            void *data;
            float *scale;
            dp_make_weight(dt, rows, cols, (unsigned)(dt * 100 + si), &w, &data, &scale);
            float *x = malloc((size_t)(T * cols) * sizeof(float));
            unsigned seed = 99;
            for (int64_t i = 0; i < T * cols; i++)
                x[i] = dp_frand(&seed);
            float *want = calloc((size_t)(T * rows), sizeof(float));
            float *got = calloc((size_t)(T * rows), sizeof(float));
            ck_assert_int_eq(r1_compute__matmul(cpu, &w, x, T, want), R1_OK);
            ck_assert_msg(r1_compute__matmul(gpu, &w, x, T, got) == R1_OK, "%s", r1_last_error());
            double d = dp_rel_diff(got, want, (size_t)(T * rows));
            dp_note_diff(d);
            ck_assert_msg(d < 1e-5, "%s (%lld, %lld) x %lld tokens: relative difference %g",
                          r1_dtype__traits(dt)->name, (long long)rows, (long long)cols,
                          (long long)T, d);
            /* a second product with the weight now resident: same answer */
            memset(got, 0, (size_t)(T * rows) * sizeof(float));
            ck_assert_int_eq(r1_compute__matmul(gpu, &w, x, T, got), R1_OK);
            ck_assert(dp_rel_diff(got, want, (size_t)(T * rows)) < 1e-5);
            free(x);
            free(want);
            free(got);
            free(data);
            free(scale);
        }
    r1_compute_device_counters k;
    ck_assert_int_eq(r1_compute__device_counters(gpu, &k), 1);
    ck_assert_uint_eq(k.cpu_products, 0);
    ck_assert_uint_eq(k.device_products, 2 * R1_DTYPE_COUNT * n_shapes);
    ck_assert_uint_eq(k.dense.tensors, 0); /* no model attached: uploaded per product */
    ck_assert_int_eq(r1_compute__device_counters(cpu, &k), 0);
}

/* ---- the other ops of a layer, each against the CPU backend's ------------------------- */

/* Largest relative difference per op kind and how many comparisons reached it, checked at the
 * end: an op whose test compared nothing must not pass as if it had been tested. */
static double op_worst[R1_OP_KIND_END];
static int op_compared[R1_OP_KIND_END];

void dp_note_op(int32_t kind, double d)
{
    dp_note_diff(d);
    op_compared[kind]++;
    if (d > op_worst[kind] || isnan(d))
        op_worst[kind] = d;
}

float *dp_rand_floats(size_t n, unsigned seed, float scale)
{
    float *v = malloc((n ? n : 1) * sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = scale * dp_frand(&seed);
    return v;
}

static float *copy_floats(const float *v, size_t n)
{
    float *c = malloc((n ? n : 1) * sizeof *c);
    memcpy(c, v, n * sizeof *c);
    return c;
}

/* A latent cache without identity: the op uploads its rows each time (no device mirror). */
static r1_compute_latent rows_only(const float *rows, int64_t n_rows)
{
    return (r1_compute_latent){.rows = rows, .n_ctx = n_rows};
}

void dp_op_pair_open(dp_op_pair *o)
{
    ck_assert_int_eq(r1_compute__open(&o->cpu, "cpu", NULL), R1_OK);
    ck_assert_msg(r1_compute__open(&o->gpu, be->name, NULL) == R1_OK, "%s", r1_last_error());
    ck_assert_int_eq(r1_compute__device_counters(&o->gpu, &o->before), 1);
}

/* Closes both; every op since the open ran on the device (n_ops of them). */
void dp_op_pair_close(dp_op_pair *o, uint64_t n_ops)
{
    r1_compute_device_counters k;
    ck_assert_int_eq(r1_compute__device_counters(&o->gpu, &k), 1);
    ck_assert_uint_eq(k.cpu_ops, o->before.cpu_ops);
    ck_assert_uint_eq(k.device_ops - o->before.device_ops, n_ops);
    r1_compute__close(&o->gpu);
    r1_compute__close(&o->cpu);
    check_clean();
}

START_TEST(dp_op_rmsnorm)
{
    dp_op_pair o;
    dp_op_pair_open(&o);
    /* rows, n, x stride, y stride (0: n); n not a multiple of any workgroup size */
    const int64_t shapes[][4] = {
        {1, 7, 0, 0}, {3, 300, 0, 0}, {5, 1000, 1100, 1050}, {70, 577, 640, 0}, {2, 7168, 0, 0}};
    const size_t n_shapes = sizeof shapes / sizeof shapes[0];
    for (size_t si = 0; si < n_shapes; si++) {
        const r1_op_rows_params p = {.n_rows = shapes[si][0],
                                     .n = shapes[si][1],
                                     .x_stride = shapes[si][2],
                                     .y_stride = shapes[si][3],
                                     .eps = 1e-6};
        const int64_t xs = p.x_stride ? p.x_stride : p.n, ys = p.y_stride ? p.y_stride : p.n;
        const size_t xn = (size_t)((p.n_rows - 1) * xs + p.n),
                     yn = (size_t)((p.n_rows - 1) * ys + p.n);
        float *x = dp_rand_floats(xn, (unsigned)si + 1, 3.0f),
              *g = dp_rand_floats((size_t)p.n, 77, 1.0f);
        float *want = dp_rand_floats(yn, 5, 1.0f), *got = copy_floats(want, yn);
        ck_assert_int_eq(r1_compute__rmsnorm(&o.cpu, &p, x, g, want), R1_OK);
        ck_assert_msg(r1_compute__rmsnorm(&o.gpu, &p, x, g, got) == R1_OK, "%s", r1_last_error());
        double d = dp_rel_diff(got, want, yn); /* the gaps between strided rows stay as they were */
        dp_note_op(R1_OP_RMSNORM, d);
        ck_assert_msg(d < DP_OP_BOUND, "rmsnorm (%lld, %lld): %g", (long long)p.n_rows,
                      (long long)p.n, d);
        free(x), free(g), free(want), free(got);
    }
    dp_op_pair_close(&o, n_shapes);
}
END_TEST

START_TEST(dp_op_rope)
{
    dp_op_pair o;
    dp_op_pair_open(&o);
    /* rows, vectors per row, row stride, vector stride, pairs */
    const int64_t shapes[][5] = {
        {1, 1, 8, 0, 4}, {5, 3, 3 * 40, 40, 16}, {12, 1, 576, 0, 32}, {70, 16, 16 * 192, 192, 32}};
    const size_t n_shapes = sizeof shapes / sizeof shapes[0];
    for (size_t si = 0; si < n_shapes; si++) {
        const r1_op_rope_params p = {.n_rows = shapes[si][0],
                                     .n_vecs = shapes[si][1],
                                     .row_stride = shapes[si][2],
                                     .vec_stride = shapes[si][3],
                                     .n_pairs = shapes[si][4]};
        const size_t n =
            (size_t)((p.n_rows - 1) * p.row_stride + (p.n_vecs - 1) * p.vec_stride + 2 * p.n_pairs);
        /* real YaRN-style tables: cos and sin of angles, times an mscale */
        float *cs = malloc((size_t)(p.n_rows * 2 * p.n_pairs) * sizeof *cs);
        for (int64_t r = 0; r < p.n_rows; r++)
            for (int64_t m = 0; m < p.n_pairs; m++) {
                double angle = (double)(r + 3) * pow(10000.0, -2.0 * (double)m / (2.0 * p.n_pairs));
                cs[(r * p.n_pairs + m) * 2] = (float)(1.07 * cos(angle));
                cs[(r * p.n_pairs + m) * 2 + 1] = (float)(1.07 * sin(angle));
            }
        float *want = dp_rand_floats(n, (unsigned)si + 10, 2.0f), *got = copy_floats(want, n);
        ck_assert_int_eq(r1_compute__rope(&o.cpu, &p, cs, want), R1_OK);
        ck_assert_msg(r1_compute__rope(&o.gpu, &p, cs, got) == R1_OK, "%s", r1_last_error());
        double d = dp_rel_diff(got, want, n);
        dp_note_op(R1_OP_ROPE, d);
        ck_assert_msg(d < DP_OP_BOUND, "rope shape %zu: %g", si, d);
        free(cs), free(want), free(got);
    }
    dp_op_pair_close(&o, n_shapes);
}
END_TEST

START_TEST(dp_op_softmax)
{
    dp_op_pair o;
    dp_op_pair_open(&o);
    /* rows, n, causal base, causal period (0: no mask) */
    const int64_t shapes[][4] = {
        {1, 5, 0, 0}, {7, 300, 0, 0}, {8, 37, 30, 4}, {6, 1000, 997, 3}, {130, 129, 0, 129}};
    const size_t n_shapes = sizeof shapes / sizeof shapes[0];
    for (size_t si = 0; si < n_shapes; si++) {
        const r1_op_softmax_params p = {.n_rows = shapes[si][0],
                                        .n = shapes[si][1],
                                        .causal_base = shapes[si][2],
                                        .causal_period = shapes[si][3],
                                        .scale = 0.1352};
        const size_t n = (size_t)(p.n_rows * p.n);
        float *want = dp_rand_floats(n, (unsigned)si + 20, 30.0f), *got = copy_floats(want, n);
        ck_assert_int_eq(r1_compute__softmax(&o.cpu, &p, want), R1_OK);
        ck_assert_msg(r1_compute__softmax(&o.gpu, &p, got) == R1_OK, "%s", r1_last_error());
        double d = dp_rel_diff(got, want, n);
        dp_note_op(R1_OP_SOFTMAX, d);
        ck_assert_msg(d < DP_OP_BOUND, "softmax shape %zu: %g", si, d);
        for (int64_t r = 0; r < p.n_rows && p.causal_period > 0; r++) /* masked: exactly 0 */
            for (int64_t j = p.causal_base + r % p.causal_period + 1; j < p.n; j++)
                ck_assert(got[r * p.n + j] == 0.0f);
        free(want), free(got);
    }
    dp_op_pair_close(&o, n_shapes);
}
END_TEST

START_TEST(dp_op_swiglu)
{
    dp_op_pair o;
    dp_op_pair_open(&o);
    /* rows, n, and whether gate and up are the halves of one merged row */
    const int64_t shapes[][3] = {{1, 3, 0}, {4, 300, 1}, {19, 1407, 0}, {33, 2048, 1}};
    const size_t n_shapes = sizeof shapes / sizeof shapes[0];
    for (size_t si = 0; si < n_shapes; si++) {
        const int64_t T = shapes[si][0], n = shapes[si][1];
        const int merged = (int)shapes[si][2];
        r1_op_rows_params p = {.n_rows = T, .n = n};
        float *g = dp_rand_floats((size_t)(2 * T * n), (unsigned)si + 30, 12.0f), *b = g + n;
        if (merged)
            p.x_stride = p.b_stride = 2 * n;
        else
            b = g + T * n;
        float *want = calloc((size_t)(T * n), sizeof *want), *got = calloc((size_t)(T * n), 4);
        ck_assert_int_eq(r1_compute__swiglu(&o.cpu, &p, g, b, want), R1_OK);
        ck_assert_msg(r1_compute__swiglu(&o.gpu, &p, g, b, got) == R1_OK, "%s", r1_last_error());
        double d = dp_rel_diff(got, want, (size_t)(T * n));
        dp_note_op(R1_OP_SWIGLU, d);
        ck_assert_msg(d < DP_OP_BOUND, "swiglu shape %zu: %g", si, d);
        free(g), free(want), free(got);
    }
    dp_op_pair_close(&o, n_shapes);
}
END_TEST

START_TEST(dp_op_router)
{
    dp_op_pair o;
    dp_op_pair_open(&o);
    /* DeepSeek-V3 (sigmoid, noaux_tc with a bias, 8 groups keep 4), V2 (softmax, group-limited
     * greedy), plain greedy softmax and sigmoid, and a single expert; every one also with
     * logits on a coarse grid so that scores tie and the lower index must win. */
    const r1_op_router_params cfgs[] = {
        {.n_experts = 256,
         .top_k = 8,
         .n_group = 8,
         .topk_group = 4,
         .topk_method = R1_TOPK_NOAUX_TC,
         .scoring_func = R1_SCORING_SIGMOID,
         .norm_topk_prob = 1,
         .routed_scaling_factor = 2.5},
        {.n_experts = 160,
         .top_k = 6,
         .n_group = 8,
         .topk_group = 3,
         .topk_method = R1_TOPK_GROUP_LIMITED_GREEDY,
         .scoring_func = R1_SCORING_SOFTMAX,
         .norm_topk_prob = 0,
         .routed_scaling_factor = 16.0},
        {.n_experts = 100,
         .top_k = 7,
         .n_group = 1,
         .topk_group = 1,
         .topk_method = R1_TOPK_GREEDY,
         .scoring_func = R1_SCORING_SOFTMAX,
         .norm_topk_prob = 1,
         .routed_scaling_factor = 1.0},
        {.n_experts = 1000,
         .top_k = 64,
         .n_group = 1,
         .topk_group = 1,
         .topk_method = R1_TOPK_GREEDY,
         .scoring_func = R1_SCORING_SIGMOID,
         .norm_topk_prob = 1,
         .routed_scaling_factor = 1.0},
        {.n_experts = 1,
         .top_k = 1,
         .n_group = 1,
         .topk_group = 1,
         .topk_method = R1_TOPK_GREEDY,
         .scoring_func = R1_SCORING_SOFTMAX,
         .norm_topk_prob = 1,
         .routed_scaling_factor = 1.0},
    };
    const size_t n_cfgs = sizeof cfgs / sizeof cfgs[0];
    uint64_t n_ops = 0;
    for (size_t ci = 0; ci < n_cfgs; ci++)
        for (int ties = 0; ties <= 1; ties++) {
            r1_op_router_params p = cfgs[ci];
            p.n_rows = 37;
            const int64_t E = p.n_experts, K = p.top_k;
            float *u = dp_rand_floats((size_t)(p.n_rows * E), (unsigned)(ci * 2 + ties) + 40, 4.0f);
            if (ties)
                for (int64_t i = 0; i < p.n_rows * E; i++)
                    u[i] = roundf(u[i]); /* nine levels */
            float *bias =
                p.topk_method == R1_TOPK_NOAUX_TC ? dp_rand_floats((size_t)E, 41, 0.05f) : NULL;
            if (bias != NULL && ties)
                for (int64_t i = 0; i < E; i++)
                    bias[i] = 0.0f;
            int32_t *ew = malloc((size_t)(p.n_rows * K) * 4),
                    *eg = malloc((size_t)(p.n_rows * K) * 4);
            float *ww = malloc((size_t)(p.n_rows * K) * 4),
                  *wg = malloc((size_t)(p.n_rows * K) * 4);
            ck_assert_int_eq(r1_compute__route(&o.cpu, &p, u, bias, ew, ww), R1_OK);
            ck_assert_msg(r1_compute__route(&o.gpu, &p, u, bias, eg, wg) == R1_OK, "%s",
                          r1_last_error());
            for (int64_t i = 0; i < p.n_rows * K; i++)
                ck_assert_msg(eg[i] == ew[i],
                              "router %zu (ties %d) token %lld slot %lld: expert "
                              "%d, the CPU picked %d",
                              ci, ties, (long long)(i / K), (long long)(i % K), eg[i], ew[i]);
            double d = dp_rel_diff(wg, ww, (size_t)(p.n_rows * K));
            dp_note_op(R1_OP_ROUTER, d);
            ck_assert_msg(d < 1e-6, "router %zu weights: %g", ci, d);
            free(u), free(bias), free(ew), free(eg), free(ww), free(wg);
            n_ops++;
        }
    dp_op_pair_close(&o, n_ops);
}
END_TEST

START_TEST(dp_op_moe_combine)
{
    dp_op_pair o;
    dp_op_pair_open(&o);
    /* routed rows, destination rows, row length; then the plain residual form */
    const int64_t shapes[][3] = {{1, 1, 5}, {37, 50, 300}, {8, 8, 7168}, {129, 200, 65}};
    const size_t n_shapes = sizeof shapes / sizeof shapes[0];
    for (size_t si = 0; si < n_shapes; si++) {
        const int64_t n = shapes[si][0], n_dst = shapes[si][1], D = shapes[si][2];
        const r1_op_rows_params p = {.n_rows = n, .n = D};
        float *src = dp_rand_floats((size_t)(n * D), (unsigned)si + 50, 1.0f);
        float *w = dp_rand_floats((size_t)n, (unsigned)si + 51, 1.0f);
        int32_t *rows = malloc((size_t)n * sizeof *rows);
        for (int64_t i = 0; i < n; i++) /* distinct rows, in a scattered order */
            rows[i] = (int32_t)((i * 7 + 3) % n_dst);
        if (n_dst % 7 == 0)
            for (int64_t i = 0; i < n; i++)
                rows[i] = (int32_t)(n_dst - 1 - i);
        float *want = dp_rand_floats((size_t)(n_dst * D), 52, 1.0f);
        float *got = copy_floats(want, (size_t)(n_dst * D));
        ck_assert_int_eq(r1_compute__moe_combine(&o.cpu, &p, src, w, rows, n_dst, want), R1_OK);
        ck_assert_msg(r1_compute__moe_combine(&o.gpu, &p, src, w, rows, n_dst, got) == R1_OK, "%s",
                      r1_last_error());
        ck_assert_int_eq(r1_compute__moe_combine(&o.cpu, &p, src, NULL, NULL, n_dst, want), R1_OK);
        ck_assert_int_eq(r1_compute__moe_combine(&o.gpu, &p, src, NULL, NULL, n_dst, got), R1_OK);
        double d = dp_rel_diff(got, want, (size_t)(n_dst * D));
        dp_note_op(R1_OP_MOE_COMBINE, d);
        ck_assert_msg(d < DP_OP_BOUND, "combine shape %zu: %g", si, d);
        free(src), free(w), free(rows), free(want), free(got);
    }
    dp_op_pair_close(&o, 2 * n_shapes);
}
END_TEST

START_TEST(dp_op_mla_decode_every_dtype)
{
    dp_op_pair o;
    dp_op_pair_open(&o);
    /* heads, nope, rope, v, latent rank; keys across several device chunks of 512 */
    const int64_t shapes[][5] = {{1, 16, 8, 16, 32}, {3, 16, 8, 12, 64}, {5, 40, 16, 24, 160}};
    const int64_t keys[] = {1, 37, 1100};
    uint64_t n_ops = 0;
    for (int32_t dt = 0; dt < R1_DTYPE_COUNT; dt++)
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
            for (size_t ki = 0; ki < sizeof keys / sizeof keys[0]; ki++) {
                const r1_op_mla_decode_params p = {.n_heads = shapes[si][0],
                                                   .qk_nope_dim = shapes[si][1],
                                                   .qk_rope_dim = shapes[si][2],
                                                   .v_dim = shapes[si][3],
                                                   .kv_lora_rank = shapes[si][4],
                                                   .n_keys = keys[ki],
                                                   .softmax_scale = 0.1875};
                const int64_t H = p.n_heads, dl = p.kv_lora_rank + p.qk_rope_dim;
                r1_tensor kv_b;
                void *data;
                float *scale;
                dp_make_weight(dt, H * (p.qk_nope_dim + p.v_dim), p.kv_lora_rank,
                               (unsigned)(dt * 10 + si), &kv_b, &data, &scale);
                float *q = dp_rand_floats((size_t)(H * (p.qk_nope_dim + p.qk_rope_dim)), 60, 1.0f);
                float *lat = dp_rand_floats((size_t)(p.n_keys * dl), 61, 1.0f);
                const size_t n_out = (size_t)(H * p.v_dim);
                float *want = calloc(n_out, 4), *got = calloc(n_out, 4);
                const r1_compute_latent cache = rows_only(lat, p.n_keys);
                ck_assert_int_eq(r1_compute__mla_decode(&o.cpu, &p, q, &cache, &kv_b, want), R1_OK);
                ck_assert_msg(r1_compute__mla_decode(&o.gpu, &p, q, &cache, &kv_b, got) == R1_OK,
                              "%s", r1_last_error());
                double d = dp_rel_diff(got, want, n_out);
                dp_note_op(R1_OP_MLA_DECODE, d);
                ck_assert_msg(d < DP_OP_BOUND, "mla %s shape %zu, %lld keys: %g",
                              r1_dtype__traits(dt)->name, si, (long long)p.n_keys, d);
                free(q), free(lat), free(want), free(got), free(data), free(scale);
                n_ops++;
            }
    dp_op_pair_close(&o, n_ops);
}
END_TEST

START_TEST(dp_op_mla_prefill_every_dtype)
{
    dp_op_pair o;
    dp_op_pair_open(&o);
    /* heads, nope, rope, v, latent rank; kv_b rows past a 128-row fp8 scale block */
    const int64_t shapes[][5] = {{1, 16, 8, 16, 32}, {3, 16, 8, 12, 64}, {5, 40, 16, 24, 160}};
    /* (queries, pos0): a first chunk, a later one, a chunk over keys across the device's
     * chunks of 512, and chunks past the CPU's group (64 rows) and query block (128) sizes */
    const int64_t chunks[][2] = {{2, 0}, {9, 0}, {6, 25}, {3, 600}, {70, 5}, {130, 3}};
    uint64_t n_ops = 0;
    for (int32_t dt = 0; dt < R1_DTYPE_COUNT; dt++)
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
            for (size_t ci = 0; ci < sizeof chunks / sizeof chunks[0]; ci++) {
                if (be->long_prefill_once && ci >= 4 && si != 1)
                    continue;
                const r1_op_mla_prefill_params p = {.n_heads = shapes[si][0],
                                                    .qk_nope_dim = shapes[si][1],
                                                    .qk_rope_dim = shapes[si][2],
                                                    .v_dim = shapes[si][3],
                                                    .kv_lora_rank = shapes[si][4],
                                                    .n_tokens = chunks[ci][0],
                                                    .pos0 = chunks[ci][1],
                                                    .softmax_scale = 0.1875};
                const int64_t H = p.n_heads, T = p.n_tokens, n_keys = p.pos0 + T;
                const int64_t dl = p.kv_lora_rank + p.qk_rope_dim;
                r1_tensor kv_b;
                void *data;
                float *scale;
                dp_make_weight(dt, H * (p.qk_nope_dim + p.v_dim), p.kv_lora_rank,
                               (unsigned)(dt * 10 + si), &kv_b, &data, &scale);
                float *q =
                    dp_rand_floats((size_t)(T * H * (p.qk_nope_dim + p.qk_rope_dim)), 62, 1.0f);
                float *lat = dp_rand_floats((size_t)(n_keys * dl), 63, 1.0f);
                const size_t n_out = (size_t)(T * H * p.v_dim);
                float *want = calloc(n_out, 4), *got = calloc(n_out, 4);
                const r1_compute_latent cache = rows_only(lat, n_keys);
                ck_assert_int_eq(r1_compute__mla_prefill(&o.cpu, &p, q, &cache, &kv_b, want),
                                 R1_OK);
                ck_assert_msg(r1_compute__mla_prefill(&o.gpu, &p, q, &cache, &kv_b, got) == R1_OK,
                              "%s", r1_last_error());
                double d = dp_rel_diff(got, want, n_out);
                dp_note_op(R1_OP_MLA_PREFILL, d);
                ck_assert_msg(d < DP_OP_BOUND, "mla prefill %s shape %zu, %lld queries at %lld: %g",
                              r1_dtype__traits(dt)->name, si, (long long)T, (long long)p.pos0, d);
                /* A query's output is the decode op's over the keys up to its position. */
                if (ci == 2) {
                    const r1_op_mla_decode_params dp = {.n_heads = H,
                                                        .qk_nope_dim = p.qk_nope_dim,
                                                        .qk_rope_dim = p.qk_rope_dim,
                                                        .v_dim = p.v_dim,
                                                        .kv_lora_rank = p.kv_lora_rank,
                                                        .n_keys = p.pos0 + 2,
                                                        .softmax_scale = p.softmax_scale};
                    const int64_t dqk = p.qk_nope_dim + p.qk_rope_dim;
                    float *one = calloc((size_t)(H * p.v_dim), 4);
                    const r1_compute_latent keys = rows_only(lat, dp.n_keys);
                    ck_assert_int_eq(
                        r1_compute__mla_decode(&o.cpu, &dp, q + H * dqk, &keys, &kv_b, one), R1_OK);
                    d = dp_rel_diff(got + H * p.v_dim, one, (size_t)(H * p.v_dim));
                    ck_assert_msg(d < DP_OP_BOUND, "prefill query 1 against decode: %g", d);
                    d = dp_rel_diff(want + H * p.v_dim, one, (size_t)(H * p.v_dim));
                    ck_assert_msg(d < DP_OP_BOUND, "cpu prefill query 1 against decode: %g", d);
                    free(one);
                }
                free(q), free(lat), free(want), free(got), free(data), free(scale);
                n_ops++;
            }
    dp_op_pair_close(&o, n_ops);
}
END_TEST

START_TEST(dp_op_refused_runs_on_cpu)
{
    /* The largest routing the device's tables hold runs on the device; a latent row longer
     * than its attention op holds is refused there and runs on the CPU (the hybrid rule);
     * the backend itself refuses to run it, with a message. */
    dp_op_pair o;
    dp_op_pair_open(&o);
    const r1_op_router_params p = {.n_rows = 2,
                                   .n_experts = 1024,
                                   .top_k = 2,
                                   .n_group = 1,
                                   .topk_group = 1,
                                   .topk_method = R1_TOPK_GREEDY,
                                   .scoring_func = R1_SCORING_SOFTMAX,
                                   .norm_topk_prob = 1,
                                   .routed_scaling_factor = 1.0};
    float *u = dp_rand_floats(2 * 1024, 70, 1.0f);
    int32_t e[4];
    float w[4];
    ck_assert_int_eq(r1_compute__route(&o.gpu, &p, u, NULL, e, w), R1_OK);
    r1_compute_device_counters k;
    ck_assert_int_eq(r1_compute__device_counters(&o.gpu, &k), 1);
    ck_assert_uint_eq(k.cpu_ops, 0);
    const r1_op_mla_decode_params mp = {.n_heads = 1,
                                        .qk_nope_dim = 4,
                                        .qk_rope_dim = 8,
                                        .v_dim = 4,
                                        .kv_lora_rank = be->refused_lora_rank,
                                        .n_keys = 3,
                                        .softmax_scale = 0.5};
    r1_tensor kv_b;
    void *data;
    float *scale;
    const int64_t rank = be->refused_lora_rank;
    dp_make_weight(R1_DTYPE_F32, 8, rank, 3, &kv_b, &data, &scale);
    float *q = dp_rand_floats(12, 71, 1.0f);
    float *lat = dp_rand_floats((size_t)(3 * (rank + 8)), 72, 1.0f);
    float want[4], got[4];
    const r1_compute_latent cache = rows_only(lat, 3);
    ck_assert_int_eq(r1_compute__mla_decode(&o.cpu, &mp, q, &cache, &kv_b, want), R1_OK);
    ck_assert_int_eq(r1_compute__mla_decode(&o.gpu, &mp, q, &cache, &kv_b, got), R1_OK);
    ck_assert(dp_rel_diff(got, want, 4) == 0); /* the same code ran */
    ck_assert_int_eq(r1_compute__device_counters(&o.gpu, &k), 1);
    ck_assert_uint_eq(k.cpu_ops, 1);
    r1_op op;
    memset(&op, 0, sizeof op);
    op.kind = R1_OP_MLA_DECODE;
    op.n_src = 3;
    op.params = &mp;
    op.src[2] = (r1_dtensor){.dtype = R1_DTYPE_F32, .n_dims = 2, .shape = {8, rank}};
    ck_assert_int_eq(o.gpu.ops->supports(o.gpu.dev, &op), 0);
    ck_assert_int_eq(o.gpu.ops->run(o.gpu.dev, &op), R1_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), be->refused_says));
    /* an op with operands but no buffers is refused, not run */
    const r1_op_softmax_params sp = {.n_rows = 1, .n = 4, .scale = 1.0};
    memset(&op, 0, sizeof op);
    op.kind = R1_OP_SOFTMAX;
    op.params = &sp;
    op.dst = (r1_dtensor){.dtype = R1_DTYPE_F32, .n_dims = 2, .shape = {1, 4}};
    ck_assert_int_eq(o.gpu.ops->supports(o.gpu.dev, &op), 1);
    ck_assert_int_eq(o.gpu.ops->run(o.gpu.dev, &op), R1_ERR_INVALID_ARG);
    op.params = NULL;
    ck_assert_int_eq(o.gpu.ops->supports(o.gpu.dev, &op), 0);
    free(u), free(q), free(lat), free(data), free(scale);
    r1_compute__close(&o.gpu);
    r1_compute__close(&o.cpu);
    check_clean();
}
END_TEST

START_TEST(dp_op_bounds_reached)
{
    static const char *names[R1_OP_KIND_END] = {[R1_OP_MLA_DECODE] = "mla_decode",
                                                [R1_OP_RMSNORM] = "rmsnorm",
                                                [R1_OP_ROPE] = "rope",
                                                [R1_OP_SOFTMAX] = "softmax",
                                                [R1_OP_SWIGLU] = "swiglu",
                                                [R1_OP_ROUTER] = "router",
                                                [R1_OP_MOE_COMBINE] = "moe_combine",
                                                [R1_OP_MLA_PREFILL] = "mla_prefill",
                                                [R1_OP_GQA_DECODE] = "gqa_decode"};
    /* The kinds the backend implements; later ones run on the CPU by the hybrid rule, which the
     * dense models' tests cover. */
    ck_assert_int_lt(be->last_op_kind, R1_OP_KIND_END);
    for (int32_t k = R1_OP_MLA_DECODE; k <= be->last_op_kind; k++) {
        const double bound = k == R1_OP_ROUTER ? 1e-6 : DP_OP_BOUND;
        printf("%s op %s: largest relative difference to the CPU backend %.3g over %d "
               "comparisons (bound %g)\n",
               be->name, names[k], op_worst[k], op_compared[k], bound);
        /* Every op kind after the matrix product was compared on the device, within its bound
         * (the op tests above run first, in this process: CK_NOFORK). */
        ck_assert_msg(op_compared[k] > 0, "%s op %s was never compared with the CPU's", be->name,
                      names[k]);
        ck_assert_msg(op_worst[k] < bound, "%s op %s: %g", be->name, names[k], op_worst[k]);
    }
}
END_TEST

/* ---- whole models ------------------------------------------------------------------------- */

static r1_model *load(const char *model, const char *variant, const char *backend,
                      uint64_t device_expert_budget)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s-%s.r1m", tu_models_dir(), model, variant);
    r1_model_opts *o = NULL;
    ck_assert_int_eq(r1_model_opts_create(&o), R1_OK);
    ck_assert_int_eq(r1_model_opts_set_backend(o, backend), R1_OK);
    ck_assert_int_eq(r1_model_opts_set_device_expert_cache_bytes(o, device_expert_budget), R1_OK);
    r1_model *m = NULL;
    r1_status st = r1_model_load(&m, path, NULL, o);
    ck_assert_msg(st == R1_OK, "load %s on %s: %s", path, backend, r1_last_error());
    r1_model_opts_destroy(o);
    return m;
}

static const int32_t IDS[] = {1, 17, 5, 42, 9, 3, 77, 12, 30, 2, 64, 8};
enum { N_IDS = (int)(sizeof IDS / sizeof IDS[0]) };

START_TEST(dp_models_match_cpu)
{
    const char *model = be->models[_i / 5], *variant = VARIANTS[_i % 5];
    /* only_env=MODEL-VARIANT runs that one model alone (test/gpu/emu: the emulated kernels take
     * minutes per model); a device run leaves it unset. */
    const char *only = be->only_env != NULL ? getenv(be->only_env) : NULL;
    char name[64];
    snprintf(name, sizeof name, "%s-%s", model, variant);
    if (only != NULL && strcmp(only, name) != 0)
        return;
    r1_model *cpu = load(model, variant, "cpu", 0);
    r1_model *gpu = load(model, variant, be->name, 0);
    r1_compute_device_counters at_load;
    ck_assert_int_eq(r1_compute__device_counters(r1_model__compute(gpu), &at_load), 1);
    ck_assert_uint_gt(at_load.dense.tensors, 0); /* uploaded by r1_model_load, not first use */
    ck_assert_uint_eq(at_load.device_products + at_load.device_ops, 0);
    for (int decode = 0; decode <= 1; decode++) {
        size_t vocab = 0, vocab2 = 0;
        float *want = tu_logits(cpu, IDS, N_IDS, decode, &vocab);
        float *got = tu_logits(gpu, IDS, N_IDS, decode, &vocab2);
        ck_assert_uint_eq(vocab, vocab2);
        double d = dp_rel_diff(got, want, (size_t)N_IDS * vocab);
        dp_note_diff(d);
        printf("%s parity %s-%s %s: %.3g\n", be->name, model, variant,
               decode ? "decode" : "prefill", d);
        ck_assert_msg(d < DP_PARITY_BOUND, "%s-%s %s: relative difference %g", model, variant,
                      decode ? "decode" : "prefill", d);
        free(want);
        free(got);
    }
    r1_expert_cache_stats ds = {.struct_size = sizeof ds};
    ck_assert_int_eq(r1_model_get_device_expert_cache_stats(gpu, &ds), R1_OK);
    if (_i / 5 < be->n_moe_models)
        ck_assert_uint_gt(ds.misses, 0); /* the experts really ran on the device */
    ck_assert_uint_eq(ds.evictions, 0);
    /* every product ran on the device, dense weights resident after their first use */
    r1_compute_device_counters k;
    ck_assert_int_eq(r1_compute__device_counters(r1_model__compute(gpu), &k), 1);
    ck_assert_uint_gt(k.device_products, 0);
    ck_assert_uint_eq(k.cpu_products, 0);
    /* ... and so did every other op of every layer (norms, rotary, attention, routing) */
    ck_assert_uint_gt(k.device_ops, 0);
    ck_assert_uint_eq(k.cpu_ops, 0);
    ck_assert_uint_gt(k.dense.tensors, 0);
    ck_assert_uint_eq(k.dense.host_only, 0);
    r1_model_destroy(gpu);
    r1_model_destroy(cpu);
    check_clean();
}
END_TEST

START_TEST(dp_small_device_expert_budget)
{
    const char *model = be->models[_i];
    r1_model *cpu = load(model, "src", "cpu", 0);
    r1_model_info info = {.struct_size = sizeof info};
    ck_assert_int_eq(r1_model_get_info(cpu, &info), R1_OK);
    /* room for two experts (each rounded up inside its device buffer) of the model's many */
    uint64_t budget = 2 * info.max_expert_bytes + 4096;
    ck_assert_uint_lt(budget, info.expert_bytes);
    r1_model *gpu = load(model, "src", be->name, budget);
    for (int decode = 0; decode <= 1; decode++) {
        size_t vocab = 0;
        float *want = tu_logits(cpu, IDS, N_IDS, decode, &vocab);
        float *got = tu_logits(gpu, IDS, N_IDS, decode, &vocab);
        double d = dp_rel_diff(got, want, (size_t)N_IDS * vocab);
        dp_note_diff(d);
        ck_assert_msg(d < DP_PARITY_BOUND, "%s with a small device budget: %g", model, d);
        free(want);
        free(got);
    }
    r1_expert_cache_stats ds = {.struct_size = sizeof ds};
    ck_assert_int_eq(r1_model_get_device_expert_cache_stats(gpu, &ds), R1_OK);
    ck_assert_uint_gt(ds.evictions, 0);
    ck_assert_uint_le(ds.peak_bytes, budget);
    ck_assert_uint_eq(ds.budget_bytes, budget);
    ck_assert_uint_gt(ds.bytes_read, 0);
    printf("%s %s device budget %llu: %llu misses, %llu hits, %llu evictions\n", be->name, model,
           (unsigned long long)budget, (unsigned long long)ds.misses, (unsigned long long)ds.hits,
           (unsigned long long)ds.evictions);
    /* the CPU backend has no device cache: zeros */
    ck_assert_int_eq(r1_model_get_device_expert_cache_stats(cpu, &ds), R1_OK);
    ck_assert_uint_eq(ds.misses, 0);
    ck_assert_int_eq(r1_model_get_device_expert_cache_stats(NULL, &ds), R1_ERR_INVALID_ARG);
    r1_model_destroy(gpu);
    r1_model_destroy(cpu);
    check_clean();
}
END_TEST

/* ---- the latent cache on the device --------------------------------------------------- */

static r1_session *open_session(r1_model *m)
{
    r1_session_opts *so = NULL;
    ck_assert_int_eq(r1_session_opts_create(&so), R1_OK);
    ck_assert_int_eq(r1_session_opts_set_context(so, 64), R1_OK);
    r1_session *s = NULL;
    ck_assert_msg(r1_session_create(&s, m, so) == R1_OK, "%s", r1_last_error());
    r1_session_opts_destroy(so);
    return s;
}

/* Evaluates ids and returns a copy of the last row's logits. */
static float *eval_last(r1_session *s, const int32_t *ids, int n, size_t *vocab)
{
    ck_assert_msg(r1_session_eval(s, ids, (size_t)n) == R1_OK, "%s", r1_last_error());
    const float *row = NULL;
    ck_assert_int_eq(r1_session_logits(s, -1, &row, vocab), R1_OK);
    return copy_floats(row, *vocab);
}

static uint64_t latent_uploaded(r1_model *m)
{
    r1_compute_device_counters k;
    ck_assert_int_eq(r1_compute__device_counters(r1_model__compute(m), &k), 1);
    return k.latent_upload_bytes;
}

START_TEST(dp_latent_uploads_only_new_rows)
{
    /* The device keeps each layer's latent cache: a prompt uploads its rows once (by the
     * prefill attention op), then each decoded token uploads exactly its own row per layer. */
    r1_model *gpu = load(be->models[_i], "q8_0", be->name, 0);
    const r1_model_config *cfg = r1_model__config(gpu);
    const uint64_t row_bytes = (uint64_t)(cfg->kv_lora_rank + cfg->qk_rope_head_dim) * 4;
    const uint64_t per_token = row_bytes * (uint64_t)cfg->num_hidden_layers;
    r1_compute_device_counters k0, k;
    ck_assert_int_eq(r1_compute__device_counters(r1_model__compute(gpu), &k0), 1);
    r1_session *s = open_session(gpu);
    size_t vocab = 0;
    free(eval_last(s, IDS, N_IDS, &vocab));
    ck_assert_uint_eq(latent_uploaded(gpu) - k0.latent_upload_bytes, N_IDS * per_token);
    enum { N_DECODE = 7 };
    for (int t = 0; t < N_DECODE; t++) {
        const uint64_t before = latent_uploaded(gpu);
        free(eval_last(s, &IDS[t], 1, &vocab));
        ck_assert_uint_eq(latent_uploaded(gpu) - before, per_token);
    }
    ck_assert_int_eq(r1_compute__device_counters(r1_model__compute(gpu), &k), 1);
    ck_assert_uint_eq(k.latent_upload_bytes - k0.latent_upload_bytes,
                      (N_IDS + N_DECODE) * per_token);
    ck_assert_uint_eq(k.cpu_ops, k0.cpu_ops); /* no attention op (nor any other) fell back */
    /* one buffer per layer, sized for the session's context, released with the session */
    ck_assert_uint_ge(k.latent_device_bytes, 64 * per_token);
    r1_session_destroy(s);
    ck_assert_int_eq(r1_compute__device_counters(r1_model__compute(gpu), &k), 1);
    ck_assert_uint_eq(k.latent_device_bytes, 0);
    r1_model_destroy(gpu);
    check_clean();
}
END_TEST

/* Runs the same steps on a CPU and a device session and compares the last logits. */
typedef struct twin {
    r1_session *cpu, *gpu;
    const char *what;
} twin;

static void twin_eval(twin *t, const int32_t *ids, int n, const char *step)
{
    size_t vocab = 0, vocab2 = 0;
    float *want = eval_last(t->cpu, ids, n, &vocab);
    float *got = eval_last(t->gpu, ids, n, &vocab2);
    ck_assert_uint_eq(vocab, vocab2);
    double d = dp_rel_diff(got, want, vocab);
    dp_note_diff(d);
    ck_assert_msg(d < DP_PARITY_BOUND, "%s, %s: relative difference %g", t->what, step, d);
    free(want);
    free(got);
}

START_TEST(dp_latent_rewrites_are_seen)
{
    /* A reset, a truncation, other sessions and a session made after one was destroyed all
     * rewrite cache rows the device already holds; none may read a stale row. */
    static const int32_t OTHER[] = {90, 4, 61, 33, 7, 25, 50, 11};
    enum { N_OTHER = (int)(sizeof OTHER / sizeof OTHER[0]), N_MANY = 6 };
    r1_model *cpu = load("tiny-v3", "src", "cpu", 0);
    r1_model *gpu = load("tiny-v3", "src", be->name, 0);
    twin a = {open_session(cpu), open_session(gpu), "first session"};
    twin_eval(&a, IDS, N_IDS, "prompt");
    for (int t = 0; t < 3; t++)
        twin_eval(&a, &OTHER[t], 1, "decode");
    ck_assert_int_eq(r1_session_reset(a.cpu), R1_OK);
    ck_assert_int_eq(r1_session_reset(a.gpu), R1_OK);
    twin_eval(&a, OTHER, N_OTHER, "second prompt after a reset");
    twin_eval(&a, &IDS[3], 1, "decode after a reset");
    ck_assert_int_eq(r1_session_truncate(a.cpu, 4), R1_OK);
    ck_assert_int_eq(r1_session_truncate(a.gpu, 4), R1_OK);
    twin_eval(&a, IDS + 6, 5, "chunk after truncating");
    twin_eval(&a, &IDS[0], 1, "decode after truncating");
    /* More sessions at once than the device keeps mirrors of: they take each other's slots */
    twin many[N_MANY];
    for (int i = 0; i < N_MANY; i++) {
        many[i] = (twin){open_session(cpu), open_session(gpu), "one of many sessions"};
        twin_eval(&many[i], i % 2 ? IDS : OTHER, 3 + i, "prompt");
    }
    for (int i = 0; i < N_MANY; i++)
        twin_eval(&many[i], &IDS[i], 1, "decode");
    twin_eval(&a, &IDS[1], 1, "decode after the others");
    for (int i = 0; i < N_MANY; i++) {
        r1_session_destroy(many[i].cpu);
        r1_session_destroy(many[i].gpu);
    }
    r1_session_destroy(a.cpu);
    r1_session_destroy(a.gpu);
    twin b = {open_session(cpu), open_session(gpu), "a session made after others were destroyed"};
    twin_eval(&b, &OTHER[2], 1, "one token");
    twin_eval(&b, IDS, 4, "a chunk");
    r1_session_destroy(b.cpu);
    r1_session_destroy(b.gpu);
    r1_compute_device_counters k;
    ck_assert_int_eq(r1_compute__device_counters(r1_model__compute(gpu), &k), 1);
    ck_assert_uint_eq(k.cpu_ops, 0);
    r1_model_destroy(gpu);
    r1_model_destroy(cpu);
    check_clean();
}
END_TEST

typedef struct shared_run {
    r1_model *model;
    int decode;
    float *logits;
    size_t vocab;
} shared_run;

static void *run_thread(void *arg)
{
    shared_run *r = arg;
    r->logits = tu_logits(r->model, IDS, N_IDS, r->decode, &r->vocab);
    return NULL;
}

START_TEST(dp_model_shared_across_threads)
{
    /* Sessions of one model on four threads share the device (and its expert cache, here too
     * small for all experts): the backend and the residency layer lock internally. */
    r1_model *cpu = load("tiny-v3", "q4_0", "cpu", 0);
    r1_model_info info = {.struct_size = sizeof info};
    ck_assert_int_eq(r1_model_get_info(cpu, &info), R1_OK);
    if (be->shared_load_env != NULL) /* Vulkan: completion through per-frame fences */
        setenv(be->shared_load_env, "1", 1);
    r1_model *gpu = load("tiny-v3", "q4_0", be->name, 3 * info.max_expert_bytes);
    if (be->shared_load_env != NULL)
        unsetenv(be->shared_load_env);
    size_t vocab = 0;
    float *want[2] = {tu_logits(cpu, IDS, N_IDS, 0, &vocab), tu_logits(cpu, IDS, N_IDS, 1, &vocab)};
    shared_run runs[4];
    pthread_t threads[4];
    for (int i = 0; i < 4; i++) {
        runs[i] = (shared_run){.model = gpu, .decode = i % 2};
        ck_assert_int_eq(pthread_create(&threads[i], NULL, run_thread, &runs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(pthread_join(threads[i], NULL), 0);
        ck_assert_ptr_nonnull(runs[i].logits);
        double d = dp_rel_diff(runs[i].logits, want[i % 2], (size_t)N_IDS * vocab);
        dp_note_diff(d);
        ck_assert_msg(d < DP_PARITY_BOUND, "thread %d: %g", i, d);
        free(runs[i].logits);
    }
    free(want[0]);
    free(want[1]);
    r1_model_destroy(gpu);
    r1_model_destroy(cpu);
    check_clean();
}
END_TEST

START_TEST(dp_budget_too_small_falls_back_to_cpu)
{
    /* A device memory budget that holds almost nothing: products go to the CPU (hybrid rule),
     * logits unchanged. */
    setenv(be->memory_budget_env, "65536", 1);
    r1_model *gpu = load("tiny-v3", "q8_0", be->name, 1);
    unsetenv(be->memory_budget_env);
    r1_model *cpu = load("tiny-v3", "q8_0", "cpu", 0);
    size_t vocab = 0;
    float *want = tu_logits(cpu, IDS, N_IDS, 0, &vocab);
    float *got = tu_logits(gpu, IDS, N_IDS, 0, &vocab);
    double d = dp_rel_diff(got, want, (size_t)N_IDS * vocab);
    dp_note_diff(d);
    ck_assert_msg(d < DP_PARITY_BOUND, "fallback: %g", d);
    r1_compute_device_counters k;
    ck_assert_int_eq(r1_compute__device_counters(r1_model__compute(gpu), &k), 1);
    ck_assert_uint_gt(k.cpu_products, 0); /* what did not fit ran on the CPU */
    ck_assert_uint_gt(k.dense.host_only, 0);
    /* the attention ops too (kv_b_proj stayed on the host): the CPU's prefill op gives the
     * CPU forward pass's logits */
    ck_assert_uint_gt(k.cpu_ops, 0);
    printf("%s fallback: %llu products and %llu other ops on the device, %llu and %llu on the "
           "CPU; logits %.3g\n",
           be->name, (unsigned long long)k.device_products, (unsigned long long)k.device_ops,
           (unsigned long long)k.cpu_products, (unsigned long long)k.cpu_ops, d);
    free(want);
    free(got);
    r1_model_destroy(gpu);
    r1_model_destroy(cpu);
    check_clean();
}
END_TEST

void dp_add_op_tests(TCase *tc)
{
    tcase_add_test(tc, dp_op_rmsnorm);
    tcase_add_test(tc, dp_op_rope);
    tcase_add_test(tc, dp_op_softmax);
    tcase_add_test(tc, dp_op_swiglu);
    tcase_add_test(tc, dp_op_router);
    tcase_add_test(tc, dp_op_moe_combine);
    tcase_add_test(tc, dp_op_mla_decode_every_dtype);
    tcase_add_test(tc, dp_op_mla_prefill_every_dtype);
}

void dp_add_op_final_tests(TCase *tc)
{
    tcase_add_test(tc, dp_op_refused_runs_on_cpu);
    tcase_add_test(tc, dp_op_bounds_reached);
}

void dp_add_model_tests(TCase *tc)
{
    tcase_add_loop_test(tc, dp_models_match_cpu, 0, 5 * be->n_models);
    tcase_add_loop_test(tc, dp_small_device_expert_budget, 0, be->n_moe_models);
    tcase_add_loop_test(tc, dp_latent_uploads_only_new_rows, 0, be->n_moe_models);
    tcase_add_test(tc, dp_latent_rewrites_are_seen);
    tcase_add_test(tc, dp_model_shared_across_threads);
    tcase_add_test(tc, dp_budget_too_small_falls_back_to_cpu);
}

void dp_add_buffer_tests(TCase *tc)
{
    tcase_add_test(tc, dp_buffers_round_trip);
}
