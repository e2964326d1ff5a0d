/* test_device_hybrid.c: the hybrid rule for a device without host access, on a scripted device
 * that multiplies float weights only (as a GPU backend refuses what it has no kernel for): a
 * weight whose product the device refuses is never uploaded, and the CPU runs it in the layout
 * it reads fastest, bit for bit as the CPU backend alone does. Runs everywhere (no GPU). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "compute.h"
#include "container.h"
#include "dtype.h"
#include "error.h"
#include "expert_cache.h"
#include "expert_policy.h"
#include "file_testutil.h"
#include "model_config.h"
#include "tensor.h"
#include "weight_layout.h"

/* ---- the scripted device: host memory behind an upload/download interface -------------- */

struct r1_buf {
    uint8_t *p;
    size_t n;
};

struct r1_dev {
    uint64_t seq;
    uint64_t upload_bytes; /* every byte that went up */
    uint64_t products;     /* products run here */
};

static int32_t fake_probe(char *why, size_t why_len)
{
    (void)why;
    (void)why_len;
    return 1;
}

static r1_status fake_open(r1_dev **out, int32_t index)
{
    (void)index;
    *out = calloc(1, sizeof **out);
    return *out != NULL ? R1_OK : R1_ERR_NO_MEMORY;
}

static void fake_close(r1_dev *dev)
{
    free(dev);
}

static r1_status fake_device_info(r1_dev *dev, r1_device_info *out)
{
    (void)dev;
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "scripted float-only device");
    out->memory_total_bytes = out->memory_free_bytes = UINT64_C(1) << 32;
    return R1_OK;
}

static r1_status fake_alloc(r1_dev *dev, size_t bytes, r1_buf **out)
{
    (void)dev;
    r1_buf *b = calloc(1, sizeof *b);
    if (b == NULL || (b->p = calloc(1, bytes ? bytes : 1)) == NULL) {
        free(b);
        return R1_ERR_NO_MEMORY;
    }
    b->n = bytes;
    *out = b;
    return R1_OK;
}

static void fake_free(r1_dev *dev, r1_buf *buf)
{
    (void)dev;
    if (buf != NULL)
        free(buf->p);
    free(buf);
}

static r1_status fake_upload(r1_dev *dev, r1_buf *dst, size_t off, const void *src, size_t n)
{
    ck_assert(off <= dst->n && n <= dst->n - off);
    memcpy(dst->p + off, src, n);
    dev->upload_bytes += n;
    return R1_OK;
}

static r1_status fake_download(r1_dev *dev, void *dst, r1_buf *src, size_t off, size_t n)
{
    (void)dev;
    ck_assert(off <= src->n && n <= src->n - off);
    memcpy(dst, src->p + off, n);
    return R1_OK;
}

static int fake_float_type(int32_t dt)
{
    return dt == R1_DTYPE_F32 || dt == R1_DTYPE_F16 || dt == R1_DTYPE_BF16;
}

static int32_t fake_supports(r1_dev *dev, const r1_op *op)
{
    (void)dev;
    return op->kind == R1_OP_MATMUL && op->n_src == 2 && fake_float_type(op->src[1].dtype) &&
           op->src[1].layout == R1_LAYOUT_ROWS;
}

static r1_status fake_run(r1_dev *dev, const r1_op *op)
{
    ck_assert(fake_supports(dev, op));
    const int64_t T = op->src[0].shape[0], rows = op->src[1].shape[0], cols = op->src[1].shape[1];
    const size_t row_bytes = r1_dtype__row_bytes(op->src[1].dtype, cols);
    const float *x = (const float *)(op->src[0].buf->p + op->src[0].offset);
    const uint8_t *w = op->src[1].buf->p + op->src[1].offset;
    float *y = (float *)(op->dst.buf->p + op->dst.offset);
    float *row = malloc((size_t)cols * sizeof *row);
    ck_assert_ptr_nonnull(row);
    for (int64_t r = 0; r < rows; r++) {
        r1_dtype__dequantize_row(op->src[1].dtype, w + (size_t)r * row_bytes, NULL, row, cols);
        for (int64_t t = 0; t < T; t++) {
            float acc = 0;
            for (int64_t c = 0; c < cols; c++)
                acc += row[c] * x[t * cols + c];
            y[t * rows + r] = acc;
        }
    }
    free(row);
    dev->products++;
    return R1_OK;
}

static r1_status fake_submit(r1_dev *dev, uint64_t *seq_out)
{
    dev->seq++;
    if (seq_out != NULL)
        *seq_out = dev->seq;
    return R1_OK;
}

static r1_status fake_wait(r1_dev *dev, uint64_t seq)
{
    (void)dev;
    (void)seq;
    return R1_OK;
}

static uint64_t fake_completed(r1_dev *dev)
{
    return dev->seq;
}

static const r1_backend_ops FAKE_OPS = {
    .abi = R1_BACKEND_ABI,
    .name = "scripted",
    .probe = fake_probe,
    .open = fake_open,
    .close = fake_close,
    .device_info = fake_device_info,
    .alloc = fake_alloc,
    .free = fake_free,
    .wrap_host = NULL,
    .upload = fake_upload,
    .download = fake_download,
    .supports = fake_supports,
    .run = fake_run,
    .submit = fake_submit,
    .wait = fake_wait,
    .completed = fake_completed,
};

/* ---- a model attached beside the scripted device -------------------------------------------- */

typedef struct attached {
    r1_container *c;
    r1_expert_cache *ec;
    r1_compute comp;
    r1_dev *dev; /* owned by comp */
} attached;

static void attach(attached *a, const char *model)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.r1m", tu_models_dir(), model);
    memset(a, 0, sizeof *a);
    ck_assert_msg(r1_container__open(&a->c, path) == R1_OK, "%s: %s", path, r1_error__message());
    const r1_model_config *cfg = r1_container__config(a->c);
    ck_assert_int_eq(r1_expert_cache__create2(&a->ec, a->c, 0, 1, R1_EXPERT_POLICY_DEFAULT), R1_OK);
    ck_assert_int_eq(FAKE_OPS.open(&a->dev, 0), R1_OK);
    ck_assert_int_eq(r1_compute__open_with(&a->comp, &FAKE_OPS, a->dev), R1_OK);
    ck_assert(r1_compute__has_device(&a->comp));
    ck_assert_int_eq(r1_compute__attach_model(&a->comp, a->c, a->ec,
                                              r1_model_config__n_layers_stored(cfg),
                                              cfg->n_routed_experts, 0),
                     R1_OK);
}

static void detach(attached *a)
{
    r1_compute__close(&a->comp);
    r1_expert_cache__destroy(a->ec);
    r1_container__close(a->c);
}

/* The 2-d weights attach_model considers (as r1_upload_dense walks them). */
static int dense_candidate(const r1_container *c, const char *name, size_t name_len,
                           const r1_tensor *t)
{
    static const char embed[] = "model.embed_tokens.weight";
    if (t->n_dims != 2 || r1_tensor__rows(t) <= 0)
        return 0;
    return r1_container__config(c)->tie_word_embeddings != 0 || name_len != sizeof embed - 1 ||
           memcmp(name, embed, name_len) != 0;
}

/* Only the weights the device multiplies go up: exactly their bytes, none of the others. */
START_TEST(test_hybrid_refused_weights_are_not_uploaded)
{
    static const char *MODELS[] = {"tiny-v2lite-q4_0", "tiny-v3-q8_0", "tiny-v3-f16"};
    attached a;
    attach(&a, MODELS[_i]);
    uint64_t want_tensors = 0, want_bytes = 0, refused = 0;
    const void *uploaded[1024];
    for (int32_t i = 0; i < r1_container__n_tensors(a.c); i++) {
        const char *name = NULL;
        size_t name_len = 0;
        r1_tensor t;
        ck_assert_int_eq(r1_container__tensor_at(a.c, i, &name, &name_len, &t), R1_OK);
        if (!dense_candidate(a.c, name, name_len, &t))
            continue;
        if (!fake_float_type(t.dtype)) {
            refused++;
            continue;
        }
        /* a tensor stored once for two names is one resident copy */
        int seen = 0;
        for (uint64_t j = 0; j < want_tensors && !seen; j++)
            seen = uploaded[j] == t.data;
        if (seen)
            continue;
        ck_assert_uint_lt(want_tensors, sizeof uploaded / sizeof uploaded[0]);
        uploaded[want_tensors++] = t.data;
        want_bytes += t.nbytes + r1_tensor__scale_bytes(&t);
    }
    r1_compute_device_counters k;
    ck_assert(r1_compute__device_counters(&a.comp, &k));
    ck_assert_uint_eq(k.dense.tensors, want_tensors);
    ck_assert_uint_eq(a.dev->upload_bytes, want_bytes);
    if (_i < 2) /* the quantised variants have weights the device refuses */
        ck_assert_uint_gt(refused, 0);
    else /* f16: everything goes up */
        ck_assert_uint_eq(refused, 0);
    detach(&a);
}
END_TEST

/* A refused product runs on the CPU exactly as on the CPU backend alone (its own layout of the
 * weight included), and nothing of it goes up. */
START_TEST(test_hybrid_refused_product_runs_as_on_the_cpu)
{
    static const char *MODELS[] = {"tiny-v2lite-q4_0", "tiny-v3-q8_0"};
    attached a;
    attach(&a, MODELS[_i]);
    r1_compute cpu;
    ck_assert_int_eq(r1_compute__open(&cpu, NULL, NULL), R1_OK);
    r1_expert_cache *cpu_ec = NULL;
    ck_assert_int_eq(r1_expert_cache__create2(&cpu_ec, a.c, 0, 1, R1_EXPERT_POLICY_DEFAULT), R1_OK);
    const r1_model_config *cfg = r1_container__config(a.c);
    ck_assert_int_eq(r1_compute__attach_model(&cpu, a.c, cpu_ec,
                                              r1_model_config__n_layers_stored(cfg),
                                              cfg->n_routed_experts, 0),
                     R1_OK);
    /* The CPU's preferred layout is used beside the device as on the CPU alone. */
    r1_device_info info;
    ck_assert_int_eq(cpu.cpu_ops->device_info(cpu.cpu_dev, &info), R1_OK);
    ck_assert_int_eq(a.comp.host_weights != NULL, info.weight_layout == R1_LAYOUT_R16);
    ck_assert_int_eq(cpu.host_weights != NULL, info.weight_layout == R1_LAYOUT_R16);

    int tested = 0;
    for (int32_t i = 0; i < r1_container__n_tensors(a.c); i++) {
        const char *name = NULL;
        size_t name_len = 0;
        r1_tensor t;
        ck_assert_int_eq(r1_container__tensor_at(a.c, i, &name, &name_len, &t), R1_OK);
        if (!dense_candidate(a.c, name, name_len, &t) || fake_float_type(t.dtype))
            continue;
        const int64_t T = 3, rows = r1_tensor__rows(&t), cols = r1_tensor__cols(&t);
        float *x = malloc((size_t)(T * cols) * sizeof *x);
        float *y_dev = malloc((size_t)(T * rows) * sizeof *y_dev);
        float *y_cpu = malloc((size_t)(T * rows) * sizeof *y_cpu);
        for (int64_t j = 0; j < T * cols; j++)
            x[j] = (float)((j * 37 + i) % 101) / 50.0f - 1.0f;
        const uint64_t up_before = a.dev->upload_bytes;
        r1_compute_device_counters before, after;
        ck_assert(r1_compute__device_counters(&a.comp, &before));
        ck_assert_int_eq(r1_compute__matmul(&a.comp, &t, x, T, y_dev), R1_OK);
        ck_assert_int_eq(r1_compute__matmul(&cpu, &t, x, T, y_cpu), R1_OK);
        ck_assert(r1_compute__device_counters(&a.comp, &after));
        ck_assert_uint_eq(after.cpu_products, before.cpu_products + 1);
        ck_assert_uint_eq(after.device_products, before.device_products);
        ck_assert_uint_eq(a.dev->upload_bytes, up_before);
        ck_assert_msg(memcmp(y_dev, y_cpu, (size_t)(T * rows) * sizeof *y_cpu) == 0,
                      "%.*s: the refused product differs from the CPU backend's", (int)name_len,
                      name);
        free(x);
        free(y_dev);
        free(y_cpu);
        if (++tested == 4)
            break;
    }
    ck_assert_int_gt(tested, 0);
    r1_compute__close(&cpu);
    r1_expert_cache__destroy(cpu_ec);
    detach(&a);
}
END_TEST

/* A product the device accepts runs there (the other half of the rule). */
START_TEST(test_hybrid_accepted_product_runs_on_the_device)
{
    attached a;
    attach(&a, "tiny-v3-f16");
    int tested = 0;
    for (int32_t i = 0; i < r1_container__n_tensors(a.c) && !tested; i++) {
        const char *name = NULL;
        size_t name_len = 0;
        r1_tensor t;
        ck_assert_int_eq(r1_container__tensor_at(a.c, i, &name, &name_len, &t), R1_OK);
        if (!dense_candidate(a.c, name, name_len, &t) || !fake_float_type(t.dtype))
            continue;
        const int64_t rows = r1_tensor__rows(&t), cols = r1_tensor__cols(&t);
        float *x = calloc((size_t)cols, sizeof *x);
        float *y = malloc((size_t)rows * sizeof *y);
        x[0] = 1.0f;
        const uint64_t n = a.dev->products;
        ck_assert_int_eq(r1_compute__matmul(&a.comp, &t, x, 1, y), R1_OK);
        ck_assert_uint_eq(a.dev->products, n + 1);
        free(x);
        free(y);
        tested = 1;
    }
    ck_assert(tested);
    detach(&a);
}
END_TEST

static Suite *hybrid_suite(void)
{
    Suite *s = suite_create("device_hybrid");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_hybrid_refused_weights_are_not_uploaded, 0, 3);
    tcase_add_loop_test(tc, test_hybrid_refused_product_runs_as_on_the_cpu, 0, 2);
    tcase_add_test(tc, test_hybrid_accepted_product_runs_on_the_device);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(hybrid_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
