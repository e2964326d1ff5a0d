/* compute.c: builds backend ops over host memory and runs them where they are supported. */
#include "compute.h"

#include <ctype.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "error.h"
#include "model_schema.h"
#include "weight_layout.h"

/* A device copy of one latent cache (r1_compute_latent): a buffer per layer, made on the
 * layer's first attention op, whose rows [0, valid_rows[layer]) equal the host's. */
typedef struct r1_latent_mirror {
    uint64_t cache_id; /* 0: a free slot */
    uint64_t last_use; /* for evicting the least recently used slot */
    int64_t n_ctx, row_floats;
    int64_t n_layers; /* entries of the arrays below */
    r1_buf **layer_buf;
    size_t *layer_bytes;
    int64_t *valid_rows;
} r1_latent_mirror;

/* Sessions of one model each have a cache; this many keep their mirrors at a time, a further
 * one takes the slot used least recently (its rows are uploaded again when it comes back). */
enum { R1_LATENT_MIRRORS = 4 };

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
    r1_buf *op_buf[1 + R1_OP_MAX_SRC]; /* the other ops' operands: dst, then each source */
    size_t op_bytes[1 + R1_OP_MAX_SRC];
    uint64_t device_products, cpu_products, device_ops, cpu_ops;
    r1_latent_mirror latent[R1_LATENT_MIRRORS];
    uint64_t latent_clock; /* advances per attention op, for last_use */
    uint64_t latent_upload_bytes;
};

static void r1_latent_mirror_free(r1_compute *c, r1_latent_mirror *m)
{
    for (int64_t l = 0; l < m->n_layers; l++)
        if (m->layer_buf[l] != NULL)
            c->ops->free(c->dev, m->layer_buf[l]);
    free(m->layer_buf);
    free(m->layer_bytes);
    free(m->valid_rows);
    memset(m, 0, sizeof *m);
}

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
    for (int32_t i = 0; i <= R1_OP_MAX_SRC; i++)
        if (d->op_buf[i] != NULL)
            c->ops->free(c->dev, d->op_buf[i]);
    for (int32_t i = 0; i < R1_LATENT_MIRRORS; i++)
        r1_latent_mirror_free(c, &d->latent[i]);
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

/* haystack contains needle, ignoring ASCII case. */
static int r1_contains_nocase(const char *haystack, const char *needle)
{
    const size_t n = strlen(needle);
    for (; *haystack != '\0'; haystack++) {
        size_t i = 0;
        while (i < n && haystack[i] != '\0' &&
               tolower((unsigned char)haystack[i]) == tolower((unsigned char)needle[i]))
            i++;
        if (i == n)
            return 1;
    }
    return n == 0;
}

/* A device named for a backend that cannot match names itself: by index, or by its
 * device_info() name. Also checks a name given for the CPU (its one device). */
static r1_status r1_open_named(const r1_backend_ops *ops, const char *device, r1_dev **out)
{
    char *end = NULL;
    const unsigned long index = strtoul(device, &end, 10);
    const int32_t n = r1_backend_registry__probe(ops);
    if (end != device && *end == '\0') {
        if (index >= (unsigned long)n)
            return r1_error__set(R1_ERR_NOT_FOUND, "%s: device index %s requested, %d present",
                                 ops->name, device, (int)n);
        return ops->open(out, (int32_t)index);
    }
    for (int32_t i = 0; i < n; i++) {
        r1_device_info info;
        r1_status st = ops->open(out, i);
        if (st != R1_OK)
            return st;
        if (ops->device_info(*out, &info) == R1_OK && r1_contains_nocase(info.name, device))
            return R1_OK;
        ops->close(*out);
        *out = NULL;
    }
    return r1_error__set(R1_ERR_NOT_FOUND, "%s: no device name contains '%s'", ops->name, device);
}

r1_status r1_compute__open(r1_compute *c, const char *backend_name, const char *device)
{
    memset(c, 0, sizeof *c);
    const r1_backend_ops *cpu = r1_backend_registry__find("cpu");
    const r1_backend_ops *ops = backend_name ? r1_backend_registry__find(backend_name) : cpu;
    if (ops == NULL || cpu == NULL)
        return R1_ERR_NOT_FOUND; /* message set by the registry */
    if (r1_backend_registry__probe(ops) <= 0)
        return R1_ERR_UNSUPPORTED;
    r1_status st = R1_OK;
    if (ops == cpu && device != NULL) /* the CPU's one device, if that is what was named */
        st = r1_open_named(cpu, device, &c->cpu_dev);
    else
        st = cpu->open(&c->cpu_dev, 0);
    if (st != R1_OK)
        return st;
    c->cpu_ops = cpu;
    if (ops == cpu) {
        c->ops = cpu;
        c->dev = c->cpu_dev;
        return R1_OK;
    }
    if (device == NULL)
        st = ops->open(&c->dev, 0);
    else if (ops->open_selected != NULL)
        st = ops->open_selected(&c->dev, device);
    else
        st = r1_open_named(ops, device, &c->dev);
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

r1_status r1_compute__open_with(r1_compute *c, const r1_backend_ops *ops, r1_dev *dev)
{
    r1_status st = r1_compute__open(c, NULL, NULL);
    if (st != R1_OK) {
        ops->close(dev);
        return st;
    }
    c->ops = ops;
    c->dev = dev;
    if (ops->wrap_host == NULL && (st = r1_compute_device_create(c)) != R1_OK) {
        r1_compute__close(c);
        return st;
    }
    return R1_OK;
}

/* A host-memory backend that reads Q8_0/Q4_0 fastest in another layout gets it: experts as
 * they load, dense weights of the mapping on first use (r1_compute__matmul). Beside a device
 * (ec NULL), the CPU gets it for the dense weights the device does not take, so those products
 * run as fast as on the CPU backend alone; experts stay in the device's rows. */
static r1_status r1_compute_host_layout(r1_compute *c, const r1_container *container,
                                        r1_expert_cache *ec)
{
    r1_device_info info;
    const r1_backend_ops *ops = ec != NULL ? c->ops : c->cpu_ops;
    r1_dev *dev = ec != NULL ? c->dev : c->cpu_dev;
    if (c->host_weights != NULL || ops->device_info(dev, &info) != R1_OK ||
        info.weight_layout != R1_LAYOUT_R16)
        return R1_OK;
    r1_status st = r1_host_weights__create(&c->host_weights);
    if (st != R1_OK)
        return st;
    c->host_container = container;
    r1_host_weights__set_source(c->host_weights, container);
    if (ec != NULL)
        r1_expert_cache__set_layout(ec, R1_LAYOUT_R16);
    return R1_OK;
}

/* The product of n_tokens tokens with w, as r1_compute__matmul asks the device about it. */
static r1_op r1_matmul_op(const r1_tensor *w, int64_t n_tokens)
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
    return op;
}

/* Every dense weight matrix goes to the device now, so the first token does not pay for the
 * uploads: 2-d tensors other than an untied embedding (only ever read by row on the host).
 * What the device's memory cannot hold is remembered as host-only (device_weights.c) and its
 * products run on the CPU; a weight whose product the device does not support is not uploaded
 * at all (the CPU runs it in its own layout, r1_compute_host_layout). The uploads are waited
 * for once at the end. The caller holds mu. */
static r1_status r1_upload_dense(r1_compute *c, const r1_container *container)
{
    const r1_schema *schema = r1_model_schema__get(r1_container__config(container));
    const r1_schema_tensor *emb = schema ? r1_model_schema__global(schema, R1_SLOT_EMBED) : NULL;
    const char *embed = emb ? emb->name : "";
    const int tied = r1_container__config(container)->tie_word_embeddings != 0;
    r1_status st = R1_OK;
    for (int32_t i = 0; st == R1_OK && i < r1_container__n_tensors(container); i++) {
        const char *name = NULL;
        size_t name_len = 0;
        r1_tensor t;
        r1_dtensor wd;
        st = r1_container__tensor_at(container, i, &name, &name_len, &t);
        if (st != R1_OK || t.n_dims != 2 || r1_tensor__rows(&t) <= 0)
            continue;
        if (!tied && name_len == strlen(embed) && memcmp(name, embed, name_len) == 0)
            continue;
        r1_op op = r1_matmul_op(&t, 1);
        if (!c->ops->supports(c->dev, &op))
            continue;
        st = r1_device_weights__get(c->device->dense, &t, &wd);
        if (st == R1_ERR_NO_MEMORY) { /* stays on the host: the hybrid rule */
            r1_error__clear();
            st = R1_OK;
        }
    }
    uint64_t seq = 0;
    if (st == R1_OK)
        st = c->ops->submit(c->dev, &seq);
    if (st == R1_OK)
        st = c->ops->wait(c->dev, seq);
    return st;
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
    if (st == R1_OK && d->container == NULL)
        st = r1_upload_dense(c, container);
    if (st == R1_OK)
        st = r1_compute_host_layout(c, container, NULL);
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
    out->device_ops = d->device_ops;
    out->cpu_ops = d->cpu_ops;
    out->latent_upload_bytes = d->latent_upload_bytes;
    for (int32_t i = 0; i < R1_LATENT_MIRRORS; i++)
        for (int64_t l = 0; l < d->latent[i].n_layers; l++)
            if (d->latent[i].layer_buf[l] != NULL)
                out->latent_device_bytes += d->latent[i].layer_bytes[l];
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
/* Queues op, then the download of its result (n bytes of dst_buf into host), submits, marks
 * the pinned expert (layer >= 0) used by that submission and waits for it. Under d->mu. */
static r1_status r1_device_run_fetch(r1_compute *c, const r1_op *op, void *host, r1_buf *dst_buf,
                                     size_t n, int64_t layer, int64_t expert)
{
    uint64_t seq = 0;
    r1_status st = c->ops->run(c->dev, op);
    if (st == R1_OK)
        st = c->ops->download(c->dev, host, dst_buf, 0, n);
    if (st == R1_OK)
        st = c->ops->submit(c->dev, &seq);
    if (st == R1_OK && layer >= 0)
        r1_device_expert_cache__used(c->device->experts, layer, expert, seq);
    if (st == R1_OK)
        st = c->ops->wait(c->dev, seq);
    return st;
}

static r1_status r1_matmul_on_device(r1_compute *c, r1_op *op, const r1_tensor *w, const float *x,
                                     float *y, int32_t *fallback)
{
    r1_compute_device *d = c->device;
    const int64_t T = op->src[0].shape[0], rows = op->dst.shape[1], cols = op->src[0].shape[1];
    const size_t x_bytes = (size_t)(T * cols) * sizeof(float);
    const size_t y_bytes = (size_t)(T * rows) * sizeof(float);
    const size_t scale_bytes = r1_tensor__scale_bytes(w);
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
    if (st == R1_OK) {
        op->src[0].buf = d->x;
        op->src[1] = wd;
        op->dst.buf = d->y;
        st = c->ops->upload(c->dev, d->x, 0, x, x_bytes);
    }
    if (st == R1_OK)
        st = r1_device_run_fetch(c, op, y, d->y, y_bytes, layer, expert);
    if (st == R1_OK)
        d->device_products++;
    pthread_mutex_unlock(&d->mu);
    return st;
}

r1_status r1_compute__matmul(r1_compute *c, const r1_tensor *w, const float *x, int64_t n_tokens,
                             float *y)
{
    const int64_t rows = r1_tensor__rows(w), cols = r1_tensor__cols(w);
    r1_op op = r1_matmul_op(w, n_tokens);

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
    size_t scale_bytes = r1_tensor__scale_bytes(w);
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

/* ---- the other ops --------------------------------------------------------------------- */

/* An op over host memory: slot 0 is dst, slot 1 + i is src[i]; at most one source is a model
 * weight (placed like a product's weight on a device), the others host float32 arrays. */
typedef struct r1_host_op {
    r1_op op;
    const void *host[1 + R1_OP_MAX_SRC];
    size_t bytes[1 + R1_OP_MAX_SRC];
    const r1_tensor *weight; /* src[weight_src], or NULL */
    int32_t weight_src;
    /* src[latent_src] is the rows of this latent cache, kept mirrored on a device; or NULL. */
    const r1_compute_latent *latent;
    int32_t latent_src;
} r1_host_op;

static size_t r1_scale_bytes(const r1_tensor *w)
{
    return r1_tensor__scale_bytes(w);
}

/* The mirror slot of a cache, or NULL when it has none. The caller holds mu. */
static r1_latent_mirror *r1_latent_find(r1_compute_device *d, uint64_t cache_id)
{
    for (int32_t i = 0; cache_id != 0 && i < R1_LATENT_MIRRORS; i++)
        if (d->latent[i].cache_id == cache_id)
            return &d->latent[i];
    return NULL;
}

void r1_compute__drop_latent(r1_compute *c, uint64_t cache_id)
{
    r1_compute_device *d = c != NULL ? c->device : NULL;
    if (d == NULL)
        return;
    pthread_mutex_lock(&d->mu);
    r1_latent_mirror *m = r1_latent_find(d, cache_id);
    if (m != NULL) /* every op waited for its work, so no queued work reads the buffers */
        r1_latent_mirror_free(c, m);
    pthread_mutex_unlock(&d->mu);
}

int32_t r1_compute__has_device(const r1_compute *c)
{
    return c != NULL && c->device != NULL;
}

/* The host rows from lat->first_written on changed: the mirror (if any) holds fewer valid rows
 * from now on, wherever the op then runs. The caller holds mu. */
static void r1_latent_written(r1_compute_device *d, const r1_compute_latent *lat)
{
    r1_latent_mirror *m = r1_latent_find(d, lat->cache_id);
    if (m != NULL && lat->layer >= 0 && lat->layer < m->n_layers &&
        m->valid_rows[lat->layer] > lat->first_written)
        m->valid_rows[lat->layer] = lat->first_written > 0 ? lat->first_written : 0;
}

/* The cache's mirror slot, taking a free one or the least recently used; NULL when the arrays
 * for layer cannot be had. The caller holds mu. */
static r1_latent_mirror *r1_latent_slot(r1_compute *c, const r1_compute_latent *lat,
                                        int64_t row_floats)
{
    r1_compute_device *d = c->device;
    r1_latent_mirror *m = r1_latent_find(d, lat->cache_id);
    if (m != NULL && (m->n_ctx != lat->n_ctx || m->row_floats != row_floats))
        r1_latent_mirror_free(c, m); /* the same cache cannot change shape; be safe anyway */
    else if (m == NULL) {
        m = &d->latent[0];
        for (int32_t i = 1; i < R1_LATENT_MIRRORS && m->cache_id != 0; i++)
            if (d->latent[i].cache_id == 0 || d->latent[i].last_use < m->last_use)
                m = &d->latent[i];
        r1_latent_mirror_free(c, m);
    }
    if (m->cache_id == 0) {
        m->cache_id = lat->cache_id;
        m->n_ctx = lat->n_ctx;
        m->row_floats = row_floats;
    }
    if (lat->layer >= m->n_layers) {
        const int64_t n = lat->layer + 1;
        r1_buf **bufs = realloc(m->layer_buf, (size_t)n * sizeof *bufs);
        if (bufs != NULL)
            m->layer_buf = bufs;
        size_t *bytes = realloc(m->layer_bytes, (size_t)n * sizeof *bytes);
        if (bytes != NULL)
            m->layer_bytes = bytes;
        int64_t *valid = realloc(m->valid_rows, (size_t)n * sizeof *valid);
        if (valid != NULL)
            m->valid_rows = valid;
        if (bufs == NULL || bytes == NULL || valid == NULL)
            return NULL;
        for (int64_t l = m->n_layers; l < n; l++) {
            m->layer_buf[l] = NULL;
            m->layer_bytes[l] = 0;
            m->valid_rows[l] = 0;
        }
        m->n_layers = n;
    }
    m->last_use = ++d->latent_clock;
    return m;
}

/* Places the latent operand of h on the device: the layer's mirror, with the rows it lacks of
 * the op's n_keys recorded for upload. *placed 0 (and R1_OK) when no mirror can be had: the
 * caller then uploads the rows into scratch. *valid_before is what to restore should the op
 * fail. The caller holds mu. */
static r1_status r1_latent_place(r1_compute *c, r1_host_op *h, int32_t *placed,
                                 int64_t *valid_before)
{
    r1_compute_device *d = c->device;
    const r1_compute_latent *lat = h->latent;
    r1_dtensor *t = &h->op.src[h->latent_src];
    const int64_t row_floats = t->shape[1], n_keys = t->shape[0];
    *placed = 0;
    if (lat->cache_id == 0 || lat->layer < 0 || n_keys > lat->n_ctx)
        return R1_OK;
    r1_latent_mirror *m = r1_latent_slot(c, lat, row_floats);
    if (m == NULL)
        return R1_OK;
    const int64_t l = lat->layer;
    const size_t row_bytes = (size_t)row_floats * sizeof(float);
    if (m->layer_buf[l] == NULL) {
        const size_t bytes = (size_t)m->n_ctx * row_bytes;
        r1_status st = c->ops->alloc(c->dev, bytes, &m->layer_buf[l]);
        if (st != R1_OK) { /* the device's memory is spoken for: upload per op, as before */
            m->layer_buf[l] = NULL;
            r1_error__clear();
            return R1_OK;
        }
        m->layer_bytes[l] = bytes;
        m->valid_rows[l] = 0;
    }
    const int64_t from = m->valid_rows[l];
    *valid_before = from;
    if (from < n_keys) {
        r1_status st =
            c->ops->upload(c->dev, m->layer_buf[l], (size_t)from * row_bytes,
                           lat->rows + from * row_floats, (size_t)(n_keys - from) * row_bytes);
        if (st != R1_OK)
            return st;
        d->latent_upload_bytes += (uint64_t)(n_keys - from) * row_bytes;
        m->valid_rows[l] = n_keys;
    }
    t->buf = m->layer_buf[l];
    t->offset = 0;
    *placed = 1;
    return R1_OK;
}

/* The op on a device without host access: every host operand (dst too, so the parts of its
 * rows the op does not write come back unchanged) goes up into scratch, the op runs, dst comes
 * back, and the call waits; a latent cache goes to its mirror instead (r1_latent_place), only
 * the rows it lacks. *fallback as for r1_matmul_on_device. */
static r1_status r1_op_on_device(r1_compute *c, r1_host_op *h, int32_t *fallback)
{
    r1_compute_device *d = c->device;
    r1_op *op = &h->op;
    int64_t layer = -1, expert = -1;
    *fallback = 0;
    pthread_mutex_lock(&d->mu);
    r1_status st = R1_OK;
    if (h->weight != NULL) {
        r1_dtensor wd = op->src[h->weight_src];
        st = r1_place_weight(c, h->weight, r1_scale_bytes(h->weight), &wd, &layer, &expert);
        if (st == R1_OK)
            op->src[h->weight_src] = wd;
    }
    /* Slot i is on the device already (a placed weight or latent mirror): no scratch, no copy. */
    int32_t resident[1 + R1_OP_MAX_SRC] = {0};
    if (h->weight != NULL)
        resident[h->weight_src + 1] = 1;
    int64_t latent_valid = 0;
    if (st == R1_OK && h->latent != NULL) {
        r1_latent_written(d, h->latent);
        st = r1_latent_place(c, h, &resident[h->latent_src + 1], &latent_valid);
    }
    for (int32_t i = 0; st == R1_OK && i <= op->n_src; i++)
        if (!resident[i])
            st = r1_scratch(c, &d->op_buf[i], &d->op_bytes[i], h->bytes[i]);
    if (st == R1_ERR_NO_MEMORY || st == R1_ERR_BUDGET) {
        uint64_t seq = 0;
        const int flushed =
            c->ops->submit(c->dev, &seq) == R1_OK && c->ops->wait(c->dev, seq) == R1_OK;
        if (!flushed && h->latent != NULL && resident[h->latent_src + 1])
            r1_latent_find(d, h->latent->cache_id)->valid_rows[h->latent->layer] = latent_valid;
        d->cpu_ops++;
        pthread_mutex_unlock(&d->mu);
        r1_error__clear();
        *fallback = 1;
        return R1_OK;
    }
    for (int32_t i = 0; st == R1_OK && i <= op->n_src; i++) {
        if (resident[i])
            continue;
        r1_dtensor *t = i == 0 ? &op->dst : &op->src[i - 1];
        t->buf = d->op_buf[i];
        t->offset = 0;
        st = c->ops->upload(c->dev, d->op_buf[i], 0, h->host[i], h->bytes[i]);
        if (st == R1_OK && h->latent != NULL && i == h->latent_src + 1)
            d->latent_upload_bytes += h->bytes[i];
    }
    if (st == R1_OK)
        st = r1_device_run_fetch(c, op, (void *)(uintptr_t)h->host[0], d->op_buf[0], h->bytes[0],
                                 layer, expert);
    if (st == R1_OK)
        d->device_ops++;
    else if (h->latent != NULL && resident[h->latent_src + 1]) {
        /* The rows recorded for upload may never have arrived. */
        r1_latent_mirror *m = r1_latent_find(d, h->latent->cache_id);
        if (m != NULL)
            m->valid_rows[h->latent->layer] = latent_valid;
    }
    pthread_mutex_unlock(&d->mu);
    return st;
}

/* The op where host memory is read in place: the model's backend when it can (the CPU), else
 * the CPU device. */
static r1_status r1_op_on_host(r1_compute *c, r1_host_op *h)
{
    const r1_backend_ops *ops = c->ops;
    r1_dev *dev = c->dev;
    r1_op *op = &h->op;
    if (c->device != NULL || ops->wrap_host == NULL || !ops->supports(dev, op)) {
        ops = c->cpu_ops;
        dev = c->cpu_dev;
    }
    r1_buf *bufs[2 + R1_OP_MAX_SRC] = {NULL};
    r1_status st = R1_OK;
    for (int32_t i = 0; st == R1_OK && i <= op->n_src; i++) {
        r1_dtensor *t = i == 0 ? &op->dst : &op->src[i - 1];
        if (h->weight != NULL && i == h->weight_src + 1) {
            st = r1_wrap(ops, dev, h->weight->data, h->weight->nbytes, &bufs[i]);
            if (st == R1_OK)
                st = r1_wrap(ops, dev, h->weight->scale, r1_scale_bytes(h->weight),
                             &bufs[1 + R1_OP_MAX_SRC]);
            t->scale_buf = bufs[1 + R1_OP_MAX_SRC];
            t->scale_offset = 0;
        } else {
            st = r1_wrap(ops, dev, h->host[i], h->bytes[i], &bufs[i]);
        }
        t->buf = bufs[i];
        t->offset = 0;
    }
    if (st == R1_OK)
        st = ops->supports(dev, op) ? ops->run(dev, op)
                                    : r1_error__set(R1_ERR_UNSUPPORTED,
                                                    "no backend runs op kind %d with these "
                                                    "operands",
                                                    (int)op->kind);
    uint64_t seq = 0;
    if (st == R1_OK)
        st = ops->submit(dev, &seq);
    if (st == R1_OK)
        st = ops->wait(dev, seq);
    for (int32_t i = 0; i < 2 + R1_OP_MAX_SRC; i++)
        ops->free(dev, bufs[i]);
    return st;
}

/* The hybrid rule for one op over host memory. */
static r1_status r1_run_host_op(r1_compute *c, r1_host_op *h)
{
    /* A q8_0 latent cache stays on the host, whatever a device would accept (compute.h). */
    const int host_only = h->latent != NULL && h->latent->rows_q8 != NULL;
    if (c->device != NULL && !host_only && c->ops->supports(c->dev, &h->op)) {
        int32_t fallback = 0;
        r1_status st = r1_op_on_device(c, h, &fallback);
        if (!fallback)
            return st;
        for (int32_t i = 0; i <= h->op.n_src; i++) {
            r1_dtensor *t = i == 0 ? &h->op.dst : &h->op.src[i - 1];
            t->buf = t->scale_buf = NULL;
            t->offset = t->scale_offset = 0;
        }
    } else if (c->device != NULL) {
        pthread_mutex_lock(&c->device->mu);
        c->device->cpu_ops++;
        if (h->latent != NULL) /* the host rows changed all the same */
            r1_latent_written(c->device, h->latent);
        pthread_mutex_unlock(&c->device->mu);
    }
    return r1_op_on_host(c, h);
}

static r1_dtensor r1_f32_2d(int64_t rows, int64_t cols)
{
    return (r1_dtensor){.dtype = R1_DTYPE_F32, .n_dims = 2, .shape = {rows, cols}};
}

/* Host bytes of n_rows rows of n floats at a row stride (0: n). */
static size_t r1_rows_bytes(int64_t n_rows, int64_t stride, int64_t n)
{
    return (size_t)((n_rows - 1) * (stride > 0 ? stride : n) + n) * sizeof(float);
}

static void r1_host_op_init(r1_host_op *h, int32_t kind, int32_t n_src, const void *params)
{
    memset(h, 0, sizeof *h);
    h->op.kind = kind;
    h->op.n_src = n_src;
    h->op.params = params;
}

static void r1_host_operand(r1_host_op *h, int32_t slot, const void *p, size_t bytes,
                            r1_dtensor shape)
{
    h->host[slot] = p;
    h->bytes[slot] = bytes;
    if (slot == 0)
        h->op.dst = shape;
    else
        h->op.src[slot - 1] = shape;
}

/* An attention op's operands: out (n_out rows of out_cols), q (n_q rows of q_cols), the first
 * n_keys rows of the latent cache, kv_b_proj as the weight. */
static r1_status r1_mla_op(r1_compute *c, r1_host_op *h, float *out, int64_t n_out,
                           int64_t out_cols, const float *q, int64_t n_q, int64_t q_cols,
                           const r1_compute_latent *lat, int64_t n_keys, int64_t row_floats,
                           const r1_tensor *kv_b)
{
    r1_host_operand(h, 0, out, (size_t)(n_out * out_cols) * sizeof(float),
                    r1_f32_2d(n_out, out_cols));
    r1_host_operand(h, 1, q, (size_t)(n_q * q_cols) * sizeof(float), r1_f32_2d(n_q, q_cols));
    if (lat->rows_q8 != NULL) /* a q8_0 cache: row_floats values per row of row_bytes */
        r1_host_operand(
            h, 2, lat->rows_q8, (size_t)n_keys * lat->row_bytes,
            (r1_dtensor){.dtype = R1_DTYPE_Q8_0, .n_dims = 2, .shape = {n_keys, row_floats}});
    else
        r1_host_operand(h, 2, lat->rows, (size_t)(n_keys * row_floats) * sizeof(float),
                        r1_f32_2d(n_keys, row_floats));
    r1_host_operand(h, 3, NULL, 0,
                    (r1_dtensor){.dtype = kv_b->dtype,
                                 .n_dims = 2,
                                 .shape = {r1_tensor__rows(kv_b), r1_tensor__cols(kv_b)}});
    h->weight = kv_b;
    h->weight_src = 2;
    h->latent = lat;
    h->latent_src = 1;
    return r1_run_host_op(c, h);
}

r1_status r1_compute__mla_decode(r1_compute *c, const r1_op_mla_decode_params *p, const float *q,
                                 const r1_compute_latent *lat, const r1_tensor *kv_b, float *out)
{
    r1_host_op h;
    r1_host_op_init(&h, R1_OP_MLA_DECODE, 3, p);
    return r1_mla_op(c, &h, out, p->n_heads, p->v_dim, q, p->n_heads,
                     p->qk_nope_dim + p->qk_rope_dim, lat, p->n_keys,
                     p->kv_lora_rank + p->qk_rope_dim, kv_b);
}

r1_status r1_compute__mla_prefill(r1_compute *c, const r1_op_mla_prefill_params *p, const float *q,
                                  const r1_compute_latent *lat, const r1_tensor *kv_b, float *out)
{
    const int64_t H = p->n_heads;
    r1_host_op h;
    r1_host_op_init(&h, R1_OP_MLA_PREFILL, 3, p);
    return r1_mla_op(c, &h, out, p->n_tokens, H * p->v_dim, q, p->n_tokens,
                     H * (p->qk_nope_dim + p->qk_rope_dim), lat, p->pos0 + p->n_tokens,
                     p->kv_lora_rank + p->qk_rope_dim, kv_b);
}

r1_status r1_compute__gqa_decode(r1_compute *c, const r1_op_gqa_decode_params *p, const float *q,
                                 const void *k, const void *v, float *out)
{
    const int64_t H = p->n_heads, hd = p->head_dim, kv_cols = p->n_kv_heads * hd;
    const size_t kv_bytes = r1_dtype__row_bytes(p->kv_dtype, kv_cols) * (size_t)p->n_keys;
    const r1_dtensor kv = {.dtype = p->kv_dtype, .n_dims = 2, .shape = {p->n_keys, kv_cols}};
    r1_host_op h;
    r1_host_op_init(&h, R1_OP_GQA_DECODE, 3, p);
    r1_host_operand(&h, 0, out, (size_t)(H * hd) * sizeof(float), r1_f32_2d(H, hd));
    r1_host_operand(&h, 1, q, (size_t)(H * hd) * sizeof(float), r1_f32_2d(H, hd));
    r1_host_operand(&h, 2, k, kv_bytes, kv);
    r1_host_operand(&h, 3, v, kv_bytes, kv);
    return r1_run_host_op(c, &h);
}

/* An op over rows of n floats: dst y (p->y_stride) from a (p->x_stride) and b, whose extent
 * differs by op (RMSNorm's gain vector, SwiGLU's second rows). */
static r1_status r1_rows_op(r1_compute *c, int32_t kind, const r1_op_rows_params *p, float *y,
                            const float *a, const float *b, size_t b_bytes, r1_dtensor b_shape)
{
    r1_host_op h;
    r1_host_op_init(&h, kind, 2, p);
    r1_host_operand(&h, 0, y, r1_rows_bytes(p->n_rows, p->y_stride, p->n),
                    r1_f32_2d(p->n_rows, p->n));
    r1_host_operand(&h, 1, a, r1_rows_bytes(p->n_rows, p->x_stride, p->n),
                    r1_f32_2d(p->n_rows, p->n));
    r1_host_operand(&h, 2, b, b_bytes, b_shape);
    return r1_run_host_op(c, &h);
}

r1_status r1_compute__rmsnorm(r1_compute *c, const r1_op_rows_params *p, const float *x,
                              const float *g, float *y)
{
    return r1_rows_op(c, R1_OP_RMSNORM, p, y, x, g, (size_t)p->n * sizeof(float),
                      r1_f32_2d(1, p->n));
}

r1_status r1_compute__rope(r1_compute *c, const r1_op_rope_params *p, const float *cs, float *x)
{
    r1_host_op h;
    r1_host_op_init(&h, R1_OP_ROPE, 1, p);
    const int64_t span =
        (p->n_rows - 1) * p->row_stride + (p->n_vecs - 1) * p->vec_stride + 2 * p->n_pairs;
    r1_host_operand(&h, 0, x, (size_t)span * sizeof(float), r1_f32_2d(1, span));
    r1_host_operand(&h, 1, cs, (size_t)(p->n_rows * 2 * p->n_pairs) * sizeof(float),
                    r1_f32_2d(p->n_rows, 2 * p->n_pairs));
    return r1_run_host_op(c, &h);
}

r1_status r1_compute__softmax(r1_compute *c, const r1_op_softmax_params *p, float *x)
{
    r1_host_op h;
    r1_host_op_init(&h, R1_OP_SOFTMAX, 0, p);
    r1_host_operand(&h, 0, x, (size_t)(p->n_rows * p->n) * sizeof(float),
                    r1_f32_2d(p->n_rows, p->n));
    return r1_run_host_op(c, &h);
}

r1_status r1_compute__swiglu(r1_compute *c, const r1_op_rows_params *p, const float *a,
                             const float *b, float *y)
{
    return r1_rows_op(c, R1_OP_SWIGLU, p, y, a, b, r1_rows_bytes(p->n_rows, p->b_stride, p->n),
                      r1_f32_2d(p->n_rows, p->n));
}

r1_status r1_compute__route(r1_compute *c, const r1_op_router_params *p, const float *logits,
                            const float *bias, int32_t *experts, float *weights)
{
    const int64_t K = p->top_k;
    float *out = calloc((size_t)(p->n_rows * 2 * K), sizeof *out);
    if (out == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "cannot allocate the routing of %lld tokens",
                             (long long)p->n_rows);
    r1_host_op h;
    r1_host_op_init(&h, R1_OP_ROUTER, bias != NULL ? 2 : 1, p);
    r1_host_operand(&h, 0, out, (size_t)(p->n_rows * 2 * K) * sizeof(float),
                    r1_f32_2d(p->n_rows, 2 * K));
    r1_host_operand(&h, 1, logits, (size_t)(p->n_rows * p->n_experts) * sizeof(float),
                    r1_f32_2d(p->n_rows, p->n_experts));
    if (bias != NULL)
        r1_host_operand(&h, 2, bias, (size_t)p->n_experts * sizeof(float),
                        r1_f32_2d(1, p->n_experts));
    r1_status st = r1_run_host_op(c, &h);
    for (int64_t r = 0; st == R1_OK && r < p->n_rows; r++) {
        memcpy(weights + r * K, out + r * 2 * K, (size_t)K * sizeof(float));
        memcpy(experts + r * K, out + r * 2 * K + K, (size_t)K * sizeof(int32_t));
    }
    free(out);
    return st;
}

r1_status r1_compute__moe_combine(r1_compute *c, const r1_op_rows_params *p, const float *src,
                                  const float *w, const int32_t *rows, int64_t n_dst_rows,
                                  float *dst)
{
    r1_host_op h;
    const int32_t scatter = w != NULL && rows != NULL;
    r1_host_op_init(&h, R1_OP_MOE_COMBINE, scatter ? 3 : 1, p);
    r1_host_operand(&h, 0, dst, (size_t)(n_dst_rows * p->n) * sizeof(float),
                    r1_f32_2d(n_dst_rows, p->n));
    r1_host_operand(&h, 1, src, (size_t)(p->n_rows * p->n) * sizeof(float),
                    r1_f32_2d(p->n_rows, p->n));
    if (scatter) {
        r1_host_operand(&h, 2, w, (size_t)p->n_rows * sizeof(float), r1_f32_2d(1, p->n_rows));
        /* The destination rows travel as 32-bit words in a float32 tensor's place. */
        r1_host_operand(&h, 3, rows, (size_t)p->n_rows * sizeof(int32_t), r1_f32_2d(1, p->n_rows));
    }
    return r1_run_host_op(c, &h);
}
