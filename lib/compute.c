/* compute.c: builds backend ops over host memory and runs them where they are supported. */
#include "compute.h"

#include <string.h>

#include "dtype.h"
#include "error.h"

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
    return R1_OK;
}

void r1_compute__close(r1_compute *c)
{
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
    op.src[1] = (r1_dtensor){.dtype = w->dtype, .n_dims = 2, .shape = {rows, cols}};

    /* Device-resident weights for non-host devices arrive with their kernels (docs/backends.md);
     * until a backend both supports the op and shares host memory, the CPU runs it. */
    const r1_backend_ops *ops = c->ops;
    r1_dev *dev = c->dev;
    if (ops->wrap_host == NULL || !ops->supports(dev, &op)) {
        ops = c->cpu_ops;
        dev = c->cpu_dev;
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
