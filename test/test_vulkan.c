/* test_vulkan.c: the Vulkan backend against the CPU backend: buffers and queues, the matrix
 * product in every weight type, and whole-model parity (prefill and decode) on the tiny models,
 * with a device expert budget smaller than the model, under the validation layer. Skips (and
 * passes) only when no Vulkan device exists here. */
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "backend_vulkan.h"
#include "compute.h"
#include "dtype.h"
#include "model.h"
#include "r1.h"

/* max|vulkan - cpu| / max|cpu| over a model's logits; both accumulate in float32, in different
 * orders. */
static const double PARITY_BOUND = 1e-3;

static const char *MODELS[] = {"tiny-v3", "tiny-v2lite"};
static const char *VARIANTS[] = {"src", "q8_0", "q4_0", "f32", "f16"};

static int have_vulkan(void)
{
    static int answer = -1;
    if (answer < 0) {
        answer = r1_backend_available("vulkan");
        if (!answer)
            printf("vulkan suite skipped: %s\n", r1_last_error());
    }
    return answer;
}

static const char *models_dir(void)
{
    const char *d = getenv("R1_TEST_MODELS_DIR");
    return d ? d : R1_TEST_MODELS_DIR;
}

static double rel_diff(const float *got, const float *want, size_t n)
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

static void note_diff(double d)
{
    if (d > worst_seen)
        worst_seen = d;
}

static void assert_no_validation_errors(void)
{
    ck_assert_msg(r1_backend_vulkan__validation_errors() == 0,
                  "the validation layer reported %llu errors (see stderr)",
                  (unsigned long long)r1_backend_vulkan__validation_errors());
}

/* ---- buffers, transfers, queue ------------------------------------------------------------ */

START_TEST(test_vulkan_buffers_round_trip)
{
    if (!have_vulkan())
        return;
    const r1_backend_ops *ops = r1_backend_vulkan__ops();
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

    /* an upload larger than a frame's staging moves in pieces over several submits */
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
        ck_assert_uint_gt(last, first + 1); /* the upload flushed a frame on its way */
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
    assert_no_validation_errors();
}
END_TEST

START_TEST(test_vulkan_fences_and_budget)
{
    if (!have_vulkan())
        return;
    /* The fence path (devices without timeline semaphores) and a memory budget that refuses a
     * large buffer with a clear message. Both are read when a device is opened. */
    setenv("R1_VULKAN_NO_TIMELINE", "1", 1);
    setenv("R1_VULKAN_MEMORY_BUDGET", "1000000", 1);
    const r1_backend_ops *ops = r1_backend_vulkan__ops();
    r1_dev *dev = NULL;
    r1_status st = ops->open(&dev, 0);
    unsetenv("R1_VULKAN_NO_TIMELINE");
    unsetenv("R1_VULKAN_MEMORY_BUDGET");
    ck_assert_msg(st == R1_OK, "%s", r1_last_error());
    r1_buf *big = NULL, *small = NULL;
    ck_assert_int_eq(ops->alloc(dev, 2000000, &big), R1_ERR_NO_MEMORY);
    ck_assert_ptr_null(big);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "budget"));
    ck_assert_int_eq(ops->alloc(dev, 4096, &small), R1_OK);
    uint8_t src[4096], dst[4096];
    for (int round = 0; round < 10; round++) {
        for (int i = 0; i < 4096; i++)
            src[i] = (uint8_t)(i + round);
        uint64_t seq = 0;
        ck_assert_int_eq(ops->upload(dev, small, 0, src, sizeof src), R1_OK);
        ck_assert_int_eq(ops->download(dev, dst, small, 0, sizeof dst), R1_OK);
        ck_assert_int_eq(ops->submit(dev, &seq), R1_OK);
        ck_assert_int_eq(ops->wait(dev, seq), R1_OK);
        ck_assert_uint_ge(ops->completed(dev), seq);
        ck_assert_mem_eq(src, dst, sizeof src);
    }
    ops->free(dev, small);
    ops->close(dev);
    assert_no_validation_errors();
}
END_TEST

START_TEST(test_vulkan_no_device_index)
{
    if (!have_vulkan())
        return;
    r1_dev *dev = NULL;
    ck_assert_int_eq(r1_backend_vulkan__ops()->open(&dev, 999), R1_ERR_OUT_OF_RANGE);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "device index"));
    ck_assert_ptr_null(dev);
    setenv("R1_VULKAN_DEVICE", "no such device name", 1);
    ck_assert_int_eq(r1_backend_vulkan__ops()->open(&dev, 0), R1_ERR_NOT_FOUND);
    unsetenv("R1_VULKAN_DEVICE");
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "no such device name"));
}
END_TEST

/* ---- the matrix product in every weight type ---------------------------------------------- */

static float frand(unsigned *state)
{
    *state = *state * 1103515245u + 12345u;
    return (float)((*state >> 8) & 0xffff) / 32768.0f - 1.0f;
}

/* A (rows, cols) weight in type dt built from random floats; fp8 gets block scales. */
static void make_weight(int32_t dt, int64_t rows, int64_t cols, unsigned seed, r1_tensor *w,
                        void **data, float **scale)
{
    float *f = malloc((size_t)(rows * cols) * sizeof(float));
    for (int64_t i = 0; i < rows * cols; i++)
        f[i] = frand(&seed);
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

START_TEST(test_vulkan_matmul_every_dtype)
{
    if (!have_vulkan())
        return;
    r1_compute cpu, vk;
    ck_assert_int_eq(r1_compute__open(&cpu, "cpu", 0), R1_OK);
    ck_assert_msg(r1_compute__open(&vk, "vulkan", 0) == R1_OK, "%s", r1_last_error());
    /* shapes: one row, rows past a 128 block, columns not a multiple of 128 (fp8 partial
     * scale block), many tokens (several token groups) */
    const int64_t shapes[][3] = {{1, 32, 1}, {200, 160, 1}, {70, 256, 3}, {129, 288, 19}};
    for (int32_t dt = 0; dt < R1_DTYPE_COUNT; dt++)
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            const int64_t rows = shapes[si][0], cols = shapes[si][1], T = shapes[si][2];
            r1_tensor w;
            void *data;
            float *scale;
            make_weight(dt, rows, cols, (unsigned)(dt * 100 + si), &w, &data, &scale);
            float *x = malloc((size_t)(T * cols) * sizeof(float));
            unsigned seed = 99;
            for (int64_t i = 0; i < T * cols; i++)
                x[i] = frand(&seed);
            float *want = calloc((size_t)(T * rows), sizeof(float));
            float *got = calloc((size_t)(T * rows), sizeof(float));
            ck_assert_int_eq(r1_compute__matmul(&cpu, &w, x, T, want), R1_OK);
            ck_assert_msg(r1_compute__matmul(&vk, &w, x, T, got) == R1_OK, "%s", r1_last_error());
            double d = rel_diff(got, want, (size_t)(T * rows));
            note_diff(d);
            ck_assert_msg(d < 1e-5, "%s (%lld, %lld) x %lld tokens: relative difference %g",
                          r1_dtype__traits(dt)->name, (long long)rows, (long long)cols,
                          (long long)T, d);
            /* a second product with the weight now resident: same answer */
            memset(got, 0, (size_t)(T * rows) * sizeof(float));
            ck_assert_int_eq(r1_compute__matmul(&vk, &w, x, T, got), R1_OK);
            ck_assert(rel_diff(got, want, (size_t)(T * rows)) < 1e-5);
            free(x);
            free(want);
            free(got);
            free(data);
            free(scale);
        }
    r1_compute_device_counters k;
    ck_assert_int_eq(r1_compute__device_counters(&vk, &k), 1);
    ck_assert_uint_eq(k.cpu_products, 0);
    ck_assert_uint_eq(k.device_products, 2 * R1_DTYPE_COUNT * 4);
    ck_assert_uint_eq(k.dense.tensors, 0); /* no model attached: uploaded per product */
    ck_assert_int_eq(r1_compute__device_counters(&cpu, &k), 0);
    r1_compute__close(&vk);
    r1_compute__close(&cpu);
    assert_no_validation_errors();
}
END_TEST

/* ---- whole models ------------------------------------------------------------------------- */

static r1_model *load(const char *model, const char *variant, const char *backend,
                      uint64_t device_expert_budget)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s-%s.r1m", models_dir(), model, variant);
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

/* Logits of every position: prefill in one call (decode = 0) or one token per call. */
static float *run(r1_model *m, const int32_t *ids, int n, int decode, size_t *vocab)
{
    r1_session_opts *so = NULL;
    ck_assert_int_eq(r1_session_opts_create(&so), R1_OK);
    ck_assert_int_eq(r1_session_opts_set_context(so, 64), R1_OK);
    ck_assert_int_eq(r1_session_opts_set_logits_all(so, 1), R1_OK);
    r1_session *s = NULL;
    ck_assert_msg(r1_session_create(&s, m, so) == R1_OK, "%s", r1_last_error());
    r1_session_opts_destroy(so);
    float *out = NULL;
    const float *row;
    for (int t = 0; t < n; t += decode ? 1 : n) {
        int len = decode ? 1 : n;
        ck_assert_msg(r1_session_eval(s, ids + t, (size_t)len) == R1_OK, "%s", r1_last_error());
        for (int k = 0; k < len; k++) {
            ck_assert_int_eq(r1_session_logits(s, decode ? -1 : k, &row, vocab), R1_OK);
            if (out == NULL)
                out = malloc((size_t)n * *vocab * sizeof(float));
            memcpy(out + (size_t)(t + k) * *vocab, row, *vocab * sizeof(float));
        }
    }
    r1_session_destroy(s);
    return out;
}

static const int32_t IDS[] = {1, 17, 5, 42, 9, 3, 77, 12, 30, 2, 64, 8};
enum { N_IDS = (int)(sizeof IDS / sizeof IDS[0]) };

START_TEST(test_vulkan_models_match_cpu)
{
    if (!have_vulkan())
        return;
    const char *model = MODELS[_i / 5], *variant = VARIANTS[_i % 5];
    r1_model *cpu = load(model, variant, "cpu", 0);
    r1_model *vk = load(model, variant, "vulkan", 0);
    for (int decode = 0; decode <= 1; decode++) {
        size_t vocab = 0, vocab2 = 0;
        float *want = run(cpu, IDS, N_IDS, decode, &vocab);
        float *got = run(vk, IDS, N_IDS, decode, &vocab2);
        ck_assert_uint_eq(vocab, vocab2);
        double d = rel_diff(got, want, (size_t)N_IDS * vocab);
        note_diff(d);
        printf("vulkan parity %s-%s %s: %.3g\n", model, variant, decode ? "decode" : "prefill", d);
        ck_assert_msg(d < PARITY_BOUND, "%s-%s %s: relative difference %g", model, variant,
                      decode ? "decode" : "prefill", d);
        free(want);
        free(got);
    }
    r1_expert_cache_stats ds = {.struct_size = sizeof ds};
    ck_assert_int_eq(r1_model_get_device_expert_cache_stats(vk, &ds), R1_OK);
    ck_assert_uint_gt(ds.misses, 0); /* the experts really ran on the device */
    ck_assert_uint_eq(ds.evictions, 0);
    /* every product ran on the device, dense weights resident after their first use */
    r1_compute_device_counters k;
    ck_assert_int_eq(r1_compute__device_counters(r1_model__compute(vk), &k), 1);
    ck_assert_uint_gt(k.device_products, 0);
    ck_assert_uint_eq(k.cpu_products, 0);
    ck_assert_uint_gt(k.dense.tensors, 0);
    ck_assert_uint_eq(k.dense.host_only, 0);
    r1_model_destroy(vk);
    r1_model_destroy(cpu);
    assert_no_validation_errors();
}
END_TEST

START_TEST(test_vulkan_small_device_expert_budget)
{
    if (!have_vulkan())
        return;
    const char *model = MODELS[_i];
    r1_model *cpu = load(model, "src", "cpu", 0);
    r1_model_info info = {.struct_size = sizeof info};
    ck_assert_int_eq(r1_model_get_info(cpu, &info), R1_OK);
    /* room for two experts (each rounded up inside its device buffer) of the model's many */
    uint64_t budget = 2 * info.max_expert_bytes + 4096;
    ck_assert_uint_lt(budget, info.expert_bytes);
    r1_model *vk = load(model, "src", "vulkan", budget);
    for (int decode = 0; decode <= 1; decode++) {
        size_t vocab = 0;
        float *want = run(cpu, IDS, N_IDS, decode, &vocab);
        float *got = run(vk, IDS, N_IDS, decode, &vocab);
        double d = rel_diff(got, want, (size_t)N_IDS * vocab);
        note_diff(d);
        ck_assert_msg(d < PARITY_BOUND, "%s with a small device budget: %g", model, d);
        free(want);
        free(got);
    }
    r1_expert_cache_stats ds = {.struct_size = sizeof ds};
    ck_assert_int_eq(r1_model_get_device_expert_cache_stats(vk, &ds), R1_OK);
    ck_assert_uint_gt(ds.evictions, 0);
    ck_assert_uint_le(ds.peak_bytes, budget);
    ck_assert_uint_eq(ds.budget_bytes, budget);
    ck_assert_uint_gt(ds.bytes_read, 0);
    printf("vulkan %s device budget %llu: %llu misses, %llu hits, %llu evictions\n", model,
           (unsigned long long)budget, (unsigned long long)ds.misses, (unsigned long long)ds.hits,
           (unsigned long long)ds.evictions);
    /* the CPU backend has no device cache: zeros */
    ck_assert_int_eq(r1_model_get_device_expert_cache_stats(cpu, &ds), R1_OK);
    ck_assert_uint_eq(ds.misses, 0);
    ck_assert_int_eq(r1_model_get_device_expert_cache_stats(NULL, &ds), R1_ERR_INVALID_ARG);
    r1_model_destroy(vk);
    r1_model_destroy(cpu);
    assert_no_validation_errors();
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
    r->logits = run(r->model, IDS, N_IDS, r->decode, &r->vocab);
    return NULL;
}

START_TEST(test_vulkan_model_shared_across_threads)
{
    if (!have_vulkan())
        return;
    /* Sessions of one model on four threads share the device (and its expert cache, here too
     * small for all experts): the backend and the residency layer lock internally. */
    r1_model *cpu = load("tiny-v3", "q4_0", "cpu", 0);
    r1_model_info info = {.struct_size = sizeof info};
    ck_assert_int_eq(r1_model_get_info(cpu, &info), R1_OK);
    setenv("R1_VULKAN_NO_TIMELINE", "1", 1); /* and completion through per-frame fences */
    r1_model *vk = load("tiny-v3", "q4_0", "vulkan", 3 * info.max_expert_bytes);
    unsetenv("R1_VULKAN_NO_TIMELINE");
    size_t vocab = 0;
    float *want[2] = {run(cpu, IDS, N_IDS, 0, &vocab), run(cpu, IDS, N_IDS, 1, &vocab)};
    shared_run runs[4];
    pthread_t threads[4];
    for (int i = 0; i < 4; i++) {
        runs[i] = (shared_run){.model = vk, .decode = i % 2};
        ck_assert_int_eq(pthread_create(&threads[i], NULL, run_thread, &runs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(pthread_join(threads[i], NULL), 0);
        ck_assert_ptr_nonnull(runs[i].logits);
        double d = rel_diff(runs[i].logits, want[i % 2], (size_t)N_IDS * vocab);
        note_diff(d);
        ck_assert_msg(d < PARITY_BOUND, "thread %d: %g", i, d);
        free(runs[i].logits);
    }
    free(want[0]);
    free(want[1]);
    r1_model_destroy(vk);
    r1_model_destroy(cpu);
    assert_no_validation_errors();
}
END_TEST

START_TEST(test_vulkan_budget_too_small_falls_back_to_cpu)
{
    if (!have_vulkan())
        return;
    /* A device memory budget that holds almost nothing: products go to the CPU (hybrid rule),
     * logits unchanged. */
    setenv("R1_VULKAN_MEMORY_BUDGET", "65536", 1);
    r1_model *vk = load("tiny-v3", "q8_0", "vulkan", 1);
    unsetenv("R1_VULKAN_MEMORY_BUDGET");
    r1_model *cpu = load("tiny-v3", "q8_0", "cpu", 0);
    size_t vocab = 0;
    float *want = run(cpu, IDS, N_IDS, 0, &vocab);
    float *got = run(vk, IDS, N_IDS, 0, &vocab);
    double d = rel_diff(got, want, (size_t)N_IDS * vocab);
    note_diff(d);
    ck_assert_msg(d < PARITY_BOUND, "fallback: %g", d);
    r1_compute_device_counters k;
    ck_assert_int_eq(r1_compute__device_counters(r1_model__compute(vk), &k), 1);
    ck_assert_uint_gt(k.cpu_products, 0); /* what did not fit ran on the CPU */
    ck_assert_uint_gt(k.dense.host_only, 0);
    printf("vulkan fallback: %llu products on the device, %llu on the CPU\n",
           (unsigned long long)k.device_products, (unsigned long long)k.cpu_products);
    free(want);
    free(got);
    r1_model_destroy(vk);
    r1_model_destroy(cpu);
    assert_no_validation_errors();
}
END_TEST

START_TEST(test_vulkan_validation_was_active)
{
    if (!have_vulkan())
        return;
    printf("vulkan: largest relative difference to the CPU backend: %.3g (bound %g)\n", worst_seen,
           PARITY_BOUND);
    const char *want = getenv("R1_VULKAN_VALIDATION");
    /* Where the distribution's layer is installed (CI: vulkan-validationlayers), the zero
     * error count above must come from a live messenger, not from validation being off. */
    FILE *layer = fopen("/usr/share/vulkan/explicit_layer.d/VkLayer_khronos_validation.json", "r");
    if (layer != NULL) {
        fclose(layer);
        if (want != NULL && strcmp(want, "1") == 0)
            ck_assert_msg(r1_backend_vulkan__validation_enabled(),
                          "the validation layer is installed but was not enabled");
    }
    if (want != NULL && strcmp(want, "1") == 0 && !r1_backend_vulkan__validation_enabled())
        printf("vulkan: R1_VULKAN_VALIDATION=1 but the validation layer is not installed\n");
    else
        printf("vulkan: validation layer %s, %llu errors\n",
               r1_backend_vulkan__validation_enabled() ? "on" : "off",
               (unsigned long long)r1_backend_vulkan__validation_errors());
    assert_no_validation_errors();
}
END_TEST

static Suite *vulkan_suite(void)
{
    Suite *s = suite_create("vulkan");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_vulkan_buffers_round_trip);
    tcase_add_test(tc, test_vulkan_fences_and_budget);
    tcase_add_test(tc, test_vulkan_no_device_index);
    tcase_add_test(tc, test_vulkan_matmul_every_dtype);
    tcase_add_loop_test(tc, test_vulkan_models_match_cpu, 0, 10);
    tcase_add_loop_test(tc, test_vulkan_small_device_expert_budget, 0, 2);
    tcase_add_test(tc, test_vulkan_model_shared_across_threads);
    tcase_add_test(tc, test_vulkan_budget_too_small_falls_back_to_cpu);
    tcase_add_test(tc, test_vulkan_validation_was_active);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    /* Validation on unless the caller said otherwise; read when a device is opened. */
    setenv("R1_VULKAN_VALIDATION", "1", 0);
    SRunner *sr = srunner_create(vulkan_suite());
    srunner_set_fork_status(sr, CK_NOFORK); /* worst_seen and the error count span the tests */
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
