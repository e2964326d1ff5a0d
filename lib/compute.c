/* compute.c: builds backend ops over host memory and runs them where they are supported. */
#include "compute.h"

#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "error.h"
#include "weight_layout.h"

/* What a device without host access keeps between products. One lock serialises the device's
 * use: sessions sharing a model call in from several threads, and each product is a whole
 * upload-run-download-wait sequence. */
struct r1_compute_device {
    pthread_mutex_t mu;
    r1_device_weights *dense;
    r1_device_expert_cache *experts; /* NULL until attach_model */
    r1_expert_cache *host_experts;
    const r1_container *container;
    r1_buf *x, *y, *w; /* scratch for activations and per-product weights, grown on demand */
    size_t x_bytes, y_bytes, w_bytes;
    uint64_t device_products, cpu_products;
};

static void r1_compute_device_destroy(r1_compute *c)
{
    r1_compute_device *d = c->device;
    if (d == NULL)
        return;
    c->ops->wait(c->dev, UINT64_MAX);
    r1_device_expert_cache__destroy(d->experts);
    r1_device_weights__destroy(d->dense);
    if (d->x != NULL)
        c->ops->free(c->dev, d->x);
    if (d->y != NULL)
        c->ops->free(c->dev, d->y);
    if (d->w != NULL)
        c->ops->free(c->dev, d->w);
    pthread_mutex_destroy(&d->mu);
    free(d);
    c->device = NULL;
}

static r1_status r1_compute_device_create(r1_compute *c)
{
    r1_compute_device *d = calloc(1, sizeof *d);
    if (d == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "cannot allocate the device state");
    r1_status st = r1_device_weights__create(&d->dense, c->ops, c->dev);
    if (st != R1_OK) {
        free(d);
        return st;
    }
    pthread_mutex_init(&d->mu, NULL);
    c->device = d;
    return R1_OK;
}

r1_status r1_compute__open(r1_compute *c, const char *backend_name, int32_t device_index)
{
    memset(c, 0, sizeof *c);
    const r1_backend_ops *cpu = r1_backend_registry__find("cpu");
    const r1_backend_ops *ops = backend_name ? r1_backend_registry__find(backend_name) : cpu;
    if (ops == NULL || cpu == NULL)
        return R1_ERR_NOT_FOUND; /* message set by the registry */
    if (r1_backend_registry__probe(ops) <= 0)
        return R1_ERR_UNSUPPORTED;
    r1_status st = cpu->open(&c->cpu_dev, 0);
    if (st != R1_OK)
        return st;
    c->cpu_ops = cpu;
    if (ops == cpu) {
        c->ops = cpu;
        c->dev = c->cpu_dev;
        return R1_OK;
    }
    st = ops->open(&c->dev, device_index);
    if (st != R1_OK) {
        cpu->close(c->cpu_dev);
        memset(c, 0, sizeof *c);
        return st;
    }
    c->ops = ops;
    if (ops->wrap_host == NULL && (st = r1_compute_device_create(c)) != R1_OK) {
        r1_compute__close(c);
        return st;
    }
    return R1_OK;
}

/* A host-memory backend that reads Q8_0/Q4_0 fastest in another layout gets it: experts as
 * they load, dense weights of the mapping on first use (r1_compute__matmul). */
static r1_status r1_compute_host_layout(r1_compute *c, const r1_container *container,
                                        r1_expert_cache *ec)
{
    r1_device_info info;
    if (c->host_weights != NULL || c->ops->device_info(c->dev, &info) != R1_OK ||
        info.weight_layout != R1_LAYOUT_R16)
        return R1_OK;
    r1_status st = r1_host_weights__create(&c->host_weights);
    if (st != R1_OK)
        return st;
    c->host_container = container;
    r1_expert_cache__set_layout(ec, R1_LAYOUT_R16);
    return R1_OK;
}

r1_status r1_compute__attach_model(r1_compute *c, const r1_container *container,
                                   r1_expert_cache *ec, int64_t n_layers, int64_t n_experts,
                                   uint64_t device_budget)
{
    if (c == NULL || container == NULL || ec == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "attach_model: NULL argument");
    r1_compute_device *d = c->device;
    if (d == NULL)
        return r1_compute_host_layout(c, container, ec);
    pthread_mutex_lock(&d->mu);
    r1_status st = R1_OK;
    if (d->experts == NULL)
        st = r1_device_expert_cache__create(&d->experts, c->ops, c->dev, n_layers, n_experts,
                                            device_budget);
    if (st == R1_OK) {
        d->host_experts = ec;
        d->container = container;
    }
    pthread_mutex_unlock(&d->mu);
    return st;
}

int32_t r1_compute__device_counters(r1_compute *c, r1_compute_device_counters *out)
{
    memset(out, 0, sizeof *out);
    r1_compute_device *d = c ? c->device : NULL;
    if (d == NULL)
        return 0;
    pthread_mutex_lock(&d->mu);
    r1_device_expert_cache__counters(d->experts, &out->experts);
    r1_device_weights__counters(d->dense, &out->dense);
    out->device_products = d->device_products;
    out->cpu_products = d->cpu_products;
    pthread_mutex_unlock(&d->mu);
    return 1;
}

void r1_compute__close(r1_compute *c)
{
    r1_compute_device_destroy(c);
    r1_host_weights__destroy(c->host_weights);
    if (c->dev != NULL && c->dev != c->cpu_dev)
        c->ops->close(c->dev);
    if (c->cpu_dev != NULL)
        c->cpu_ops->close(c->cpu_dev);
    memset(c, 0, sizeof *c);
}

r1_status r1_compute__set_threads(r1_compute *c, int32_t n_threads)
{
    r1_status st = c->cpu_ops->set_threads ? c->cpu_ops->set_threads(c->cpu_dev, n_threads) : R1_OK;
    if (st == R1_OK && c->dev != c->cpu_dev && c->ops->set_threads != NULL)
        st = c->ops->set_threads(c->dev, n_threads);
    return st;
}

/* Host memory as a buffer of a host-shared device (no copy). */
static r1_status r1_wrap(const r1_backend_ops *ops, r1_dev *dev, const void *p, size_t n,
                         r1_buf **out)
{
    *out = NULL;
    if (p == NULL)
        return R1_OK;
    return ops->wrap_host(dev, p, n, out);
}

/* Activation scratch of at least bytes; every earlier product has completed (each one waits),
 * so the old buffer can go. */
static r1_status r1_scratch(r1_compute *c, r1_buf **buf, size_t *have, size_t bytes)
{
    if (*have >= bytes)
        return R1_OK;
    if (*buf != NULL)
        c->ops->free(c->dev, *buf);
    *buf = NULL;
    *have = 0;
    size_t want = bytes < 4096 ? 4096 : bytes + bytes / 2; /* prefill chunks grow a few times */
    r1_status st = c->ops->alloc(c->dev, want, buf);
    if (st == R1_ERR_NO_MEMORY && want > bytes)
        st = c->ops->alloc(c->dev, want = bytes, buf);
    if (st == R1_OK)
        *have = want;
    return st;
}

/* Offset of p from base when [p, p + n) lies in [base, base + size); -1 otherwise. */
static int64_t r1_offset_in(const void *base, uint64_t size, const void *p, size_t n)
{
    uintptr_t b = (uintptr_t)base, at = (uintptr_t)p;
    if (p == NULL || at < b || n > size || at - b > size - n)
        return -1;
    return (int64_t)(at - b);
}

/* Where the product's weight comes from on the device: a resident expert blob, the resident
 * copy of a dense tensor, or (anything else) an upload into scratch for this product only. */
static r1_status r1_place_weight(r1_compute *c, const r1_tensor *w, size_t scale_bytes,
                                 r1_dtensor *wd, int64_t *layer, int64_t *expert)
{
    r1_compute_device *d = c->device;
    const uint8_t *blob = NULL;
    uint64_t blob_bytes = 0;
    *layer = *expert = -1;
    /* The mapping first: a cheap range check that settles most products (the expert store's
     * lookup walks its slots). */
    if (d->container != NULL && r1_container__maps(d->container, w->data, w->nbytes) &&
        (w->scale == NULL || r1_container__maps(d->container, w->scale, scale_bytes)))
        return r1_device_weights__get(d->dense, w, wd);
    if (d->experts != NULL && r1_expert_cache__find(d->host_experts, w->data, w->nbytes, layer,
                                                    expert, &blob, &blob_bytes)) {
        int64_t w_off = r1_offset_in(blob, blob_bytes, w->data, w->nbytes);
        int64_t s_off = w->scale ? r1_offset_in(blob, blob_bytes, w->scale, scale_bytes) : 0;
        if (w_off >= 0 && s_off >= 0) {
            r1_buf *buf = NULL;
            r1_status st =
                r1_device_expert_cache__get(d->experts, *layer, *expert, blob, blob_bytes, &buf);
            if (st != R1_OK)
                return st;
            wd->buf = buf;
            wd->offset = (size_t)w_off;
            wd->scale_buf = w->scale ? buf : NULL;
            wd->scale_offset = (size_t)s_off;
            return R1_OK;
        }
        *layer = *expert = -1;
    }
    size_t scale_off = (w->nbytes + 255) / 256 * 256;
    r1_status st = r1_scratch(c, &d->w, &d->w_bytes, scale_off + scale_bytes);
    if (st == R1_OK)
        st = c->ops->upload(c->dev, d->w, 0, w->data, w->nbytes);
    if (st == R1_OK && scale_bytes > 0)
        st = c->ops->upload(c->dev, d->w, scale_off, w->scale, scale_bytes);
    if (st == R1_OK) {
        wd->buf = d->w;
        wd->offset = 0;
        wd->scale_buf = w->scale ? d->w : NULL;
        wd->scale_offset = scale_off;
    }
    return st;
}

/* The product on a device without host access: the weight placed by r1_place_weight, the
 * activations through scratch buffers. *fallback is set (and R1_OK returned) when the device
 * has no room for it, so the caller runs it on the CPU. */
static r1_status r1_matmul_on_device(r1_compute *c, r1_op *op, const r1_tensor *w, const float *x,
                                     float *y, int32_t *fallback)
{
    r1_compute_device *d = c->device;
    const int64_t T = op->src[0].shape[0], rows = op->dst.shape[1], cols = op->src[0].shape[1];
    const size_t x_bytes = (size_t)(T * cols) * sizeof(float);
    const size_t y_bytes = (size_t)(T * rows) * sizeof(float);
    const size_t scale_bytes =
        w->scale ? (size_t)((rows + 127) / 128) * (size_t)w->scale_cols * sizeof(float) : 0;
    int64_t layer = -1, expert = -1;
    *fallback = 0;
    pthread_mutex_lock(&d->mu);
    r1_dtensor wd = op->src[1];
    r1_status st = r1_place_weight(c, w, scale_bytes, &wd, &layer, &expert);
    if (st == R1_OK)
        st = r1_scratch(c, &d->x, &d->x_bytes, x_bytes);
    if (st == R1_OK)
        st = r1_scratch(c, &d->y, &d->y_bytes, y_bytes);
    if (st == R1_ERR_NO_MEMORY || st == R1_ERR_BUDGET) {
        /* Whatever was recorded (an upload into scratch) is flushed so nothing stale remains. */
        uint64_t seq = 0;
        if (c->ops->submit(c->dev, &seq) == R1_OK)
            c->ops->wait(c->dev, seq);
        d->cpu_products++;
        pthread_mutex_unlock(&d->mu);
        r1_error__clear();
        *fallback = 1;
        return R1_OK;
    }
    uint64_t seq = 0;
    if (st == R1_OK) {
        op->src[0].buf = d->x;
        op->src[1] = wd;
        op->dst.buf = d->y;
        st = c->ops->upload(c->dev, d->x, 0, x, x_bytes);
    }
    if (st == R1_OK)
        st = c->ops->run(c->dev, op);
    if (st == R1_OK)
        st = c->ops->download(c->dev, y, d->y, 0, y_bytes);
    if (st == R1_OK)
        st = c->ops->submit(c->dev, &seq);
    if (st == R1_OK && layer >= 0)
        r1_device_expert_cache__used(d->experts, layer, expert, seq);
    if (st == R1_OK)
        st = c->ops->wait(c->dev, seq);
    if (st == R1_OK)
        d->device_products++;
    pthread_mutex_unlock(&d->mu);
    return st;
}

r1_status r1_compute__matmul(r1_compute *c, const r1_tensor *w, const float *x, int64_t n_tokens,
                             float *y)
{
    const int64_t rows = r1_tensor__rows(w), cols = r1_tensor__cols(w);
    r1_op op;
    memset(&op, 0, sizeof op);
    op.kind = R1_OP_MATMUL;
    op.n_src = 2;
    op.dst = (r1_dtensor){.dtype = R1_DTYPE_F32, .n_dims = 2, .shape = {n_tokens, rows}};
    op.src[0] = (r1_dtensor){.dtype = R1_DTYPE_F32, .n_dims = 2, .shape = {n_tokens, cols}};
    op.src[1] =
        (r1_dtensor){.dtype = w->dtype, .n_dims = 2, .shape = {rows, cols}, .layout = w->layout};

    /* The hybrid rule: the device runs what it supports and has room for; the CPU the rest. */
    const r1_backend_ops *ops = c->ops;
    r1_dev *dev = c->dev;
    if (c->device != NULL && ops->supports(dev, &op)) {
        int32_t fallback = 0;
        r1_status dev_st = r1_matmul_on_device(c, &op, w, x, y, &fallback);
        if (!fallback)
            return dev_st;
        op.src[0].buf = op.dst.buf = NULL;
        op.src[1] = (r1_dtensor){
            .dtype = w->dtype, .n_dims = 2, .shape = {rows, cols}, .layout = w->layout};
    } else if (c->device != NULL) {
        pthread_mutex_lock(&c->device->mu);
        c->device->cpu_products++;
        pthread_mutex_unlock(&c->device->mu);
    }
    if (ops->wrap_host == NULL || !ops->supports(dev, &op)) {
        ops = c->cpu_ops;
        dev = c->cpu_dev;
    }
    /* A dense weight of the file in the layout the host backend asked for (host_weights.h). */
    r1_tensor laid;
    if (c->host_weights != NULL && w->layout == R1_LAYOUT_ROWS &&
        r1_container__maps(c->host_container, w->data, w->nbytes) &&
        r1_host_weights__get(c->host_weights, w, &laid)) {
        w = &laid;
        op.src[1].layout = w->layout;
    }
    size_t scale_bytes = w->scale ? (size_t)((rows + 127) / 128) * (size_t)w->scale_cols * 4 : 0;
    r1_buf *bw = NULL, *bs = NULL, *bx = NULL, *by = NULL;
    r1_status st = r1_wrap(ops, dev, w->data, w->nbytes, &bw);
    if (st == R1_OK)
        st = r1_wrap(ops, dev, w->scale, scale_bytes, &bs);
    if (st == R1_OK)
        st = r1_wrap(ops, dev, x, (size_t)(n_tokens * cols) * sizeof(float), &bx);
    if (st == R1_OK)
        st = r1_wrap(ops, dev, y, (size_t)(n_tokens * rows) * sizeof(float), &by);
    if (st == R1_OK) {
        op.dst.buf = by;
        op.src[0].buf = bx;
        op.src[1].buf = bw;
        op.src[1].scale_buf = bs;
        if (!ops->supports(dev, &op))
            st = r1_error__set(R1_ERR_UNSUPPORTED,
                               "no backend can multiply a %s weight of shape (%lld, %lld)",
                               r1_dtype__traits(w->dtype) ? r1_dtype__traits(w->dtype)->name : "?",
                               (long long)rows, (long long)cols);
        else
            st = ops->run(dev, &op);
    }
    uint64_t seq = 0;
    if (st == R1_OK)
        st = ops->submit(dev, &seq);
    if (st == R1_OK)
        st = ops->wait(dev, seq);
    ops->free(dev, by);
    ops->free(dev, bx);
    ops->free(dev, bs);
    ops->free(dev, bw);
    return st;
}

/* No device backend implements R1_OP_MLA_DECODE yet, so it runs where host memory can be read in
 * place: on the model's backend when that is host memory (the CPU), else on the CPU device (the
 * hybrid rule); a device that gains the op would take the device path the way matmul does. */
r1_status r1_compute__mla_decode(r1_compute *c, const r1_op_mla_decode_params *p, const float *q,
                                 const float *lat, const r1_tensor *kv_b, float *out)
{
    const int64_t H = p->n_heads, dqk = p->qk_nope_dim + p->qk_rope_dim;
    const int64_t dl = p->kv_lora_rank + p->qk_rope_dim;
    const int64_t rows = r1_tensor__rows(kv_b), cols = r1_tensor__cols(kv_b);
    r1_op op;
    memset(&op, 0, sizeof op);
    op.kind = R1_OP_MLA_DECODE;
    op.n_src = 3;
    op.params = p;
    op.dst = (r1_dtensor){.dtype = R1_DTYPE_F32, .n_dims = 2, .shape = {H, p->v_dim}};
    op.src[0] = (r1_dtensor){.dtype = R1_DTYPE_F32, .n_dims = 2, .shape = {H, dqk}};
    op.src[1] = (r1_dtensor){.dtype = R1_DTYPE_F32, .n_dims = 2, .shape = {p->n_keys, dl}};
    op.src[2] = (r1_dtensor){.dtype = kv_b->dtype, .n_dims = 2, .shape = {rows, cols}};

    const r1_backend_ops *ops = c->ops;
    r1_dev *dev = c->dev;
    if (c->device != NULL || ops->wrap_host == NULL) {
        ops = c->cpu_ops;
        dev = c->cpu_dev;
    }
    size_t scale_bytes =
        kv_b->scale ? (size_t)((rows + 127) / 128) * (size_t)kv_b->scale_cols * 4 : 0;
    r1_buf *bw = NULL, *bs = NULL, *bq = NULL, *bl = NULL, *bo = NULL;
    r1_status st = r1_wrap(ops, dev, kv_b->data, kv_b->nbytes, &bw);
    if (st == R1_OK)
        st = r1_wrap(ops, dev, kv_b->scale, scale_bytes, &bs);
    if (st == R1_OK)
        st = r1_wrap(ops, dev, q, (size_t)(H * dqk) * sizeof(float), &bq);
    if (st == R1_OK)
        st = r1_wrap(ops, dev, lat, (size_t)(p->n_keys * dl) * sizeof(float), &bl);
    if (st == R1_OK)
        st = r1_wrap(ops, dev, out, (size_t)(H * p->v_dim) * sizeof(float), &bo);
    if (st == R1_OK) {
        op.dst.buf = bo;
        op.src[0].buf = bq;
        op.src[1].buf = bl;
        op.src[2].buf = bw;
        op.src[2].scale_buf = bs;
        st = ops->supports(dev, &op)
                 ? ops->run(dev, &op)
                 : r1_error__set(R1_ERR_UNSUPPORTED,
                                 "no backend runs the latent attention of a "
                                 "%s kv_b_proj",
                                 r1_dtype__traits(kv_b->dtype) ? r1_dtype__traits(kv_b->dtype)->name
                                                               : "?");
    }
    uint64_t seq = 0;
    if (st == R1_OK)
        st = ops->submit(dev, &seq);
    if (st == R1_OK)
        st = ops->wait(dev, seq);
    ops->free(dev, bo);
    ops->free(dev, bl);
    ops->free(dev, bq);
    ops->free(dev, bs);
    ops->free(dev, bw);
    return st;
}
