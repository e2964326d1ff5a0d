/* cpu_ops.c: the CPU backend's op dispatch and host description. */
#include "cpu_ops.h"

#include <stdio.h>
#include <unistd.h>

#include "cpu_features.h"
#include "cpu_kernels.h"
#include "dtype.h"
#include "error.h"

const char *r1_cpu__description(void)
{
    static _Thread_local char text[64];
    snprintf(text, sizeof text, "host CPU (%s kernels)",
             r1_cpu__level_name(r1_cpu__active_level()));
    return text;
}

void r1_cpu__memory(uint64_t *total_bytes, uint64_t *available_bytes)
{
    long page = sysconf(_SC_PAGESIZE);
    long total = sysconf(_SC_PHYS_PAGES), avail = sysconf(_SC_AVPHYS_PAGES);
    *total_bytes = (page > 0 && total > 0) ? (uint64_t)page * (uint64_t)total : 0;
    *available_bytes = (page > 0 && avail > 0) ? (uint64_t)page * (uint64_t)avail : 0;
}

/* A device tensor's shape as rows (all but the last dim) and columns. */
static void r1_cpu_dt_shape(const r1_dtensor *t, int64_t *rows, int64_t *cols)
{
    int64_t r = 1;
    for (int32_t i = 0; i + 1 < t->n_dims; i++)
        r *= t->shape[i];
    *rows = r;
    *cols = t->n_dims > 0 ? t->shape[t->n_dims - 1] : 0;
}

static int r1_cpu_dt_ok(const r1_dtensor *t)
{
    return t->buf != NULL && t->n_dims >= 1 && t->n_dims <= 4 &&
           t->offset <= r1_cpu__buf_bytes(t->buf);
}

int32_t r1_cpu__op_supported(const r1_op *op)
{
    if (op == NULL || op->kind != R1_OP_MATMUL || op->n_src < 2)
        return 0;
    const r1_dtensor *x = &op->src[0], *w = &op->src[1], *y = &op->dst;
    if (!r1_cpu_dt_ok(x) || !r1_cpu_dt_ok(w) || !r1_cpu_dt_ok(y))
        return 0;
    if (x->dtype != R1_DTYPE_F32 || y->dtype != R1_DTYPE_F32 || r1_dtype__traits(w->dtype) == NULL)
        return 0;
    if (r1_dtype__traits(w->dtype)->has_block_scale && w->scale_buf == NULL)
        return 0;
    int64_t xr, xc, wr, wc, yr, yc;
    r1_cpu_dt_shape(x, &xr, &xc);
    r1_cpu_dt_shape(w, &wr, &wc);
    r1_cpu_dt_shape(y, &yr, &yc);
    return xc == wc && yr == xr && yc == wr;
}

/* MATMUL runs on the device's own pool when the model asked for a thread count, else on the
 * process-wide pool (threadpool.h) that every such device shares. */
r1_status r1_cpu__op_run(r1_threadpool *pool, const r1_op *op)
{
    if (!r1_cpu__op_supported(op))
        return r1_error__set(R1_ERR_UNSUPPORTED,
                             "cpu backend: op kind %d with these operands is not implemented",
                             op != NULL ? (int)op->kind : -1);
    const r1_dtensor *x = &op->src[0], *w = &op->src[1], *y = &op->dst;
    int64_t xr, xc, wr, wc, yr, yc;
    r1_cpu_dt_shape(x, &xr, &xc);
    r1_cpu_dt_shape(w, &wr, &wc);
    r1_cpu_dt_shape(y, &yr, &yc);
    size_t x_need = (size_t)xr * (size_t)xc * sizeof(float);
    size_t y_need = (size_t)yr * (size_t)yc * sizeof(float);
    if (r1_cpu__buf_bytes(x->buf) - x->offset < x_need ||
        r1_cpu__buf_bytes(y->buf) - y->offset < y_need)
        return r1_error__set(R1_ERR_OUT_OF_RANGE, "cpu matmul: activation exceeds its buffer");

    r1_tensor t = {
        .dtype = w->dtype,
        .n_dims = w->n_dims,
        .data = (const char *)r1_cpu__buf_data(w->buf) + w->offset,
        .nbytes = r1_cpu__buf_bytes(w->buf) - w->offset,
    };
    for (int32_t i = 0; i < w->n_dims; i++)
        t.shape[i] = w->shape[i];
    if (r1_dtype__traits(w->dtype)->has_block_scale) {
        int64_t scale_rows = (wr + R1_FP8_SCALE_BLOCK - 1) / R1_FP8_SCALE_BLOCK;
        t.scale_cols = (wc + R1_FP8_SCALE_BLOCK - 1) / R1_FP8_SCALE_BLOCK;
        size_t s_need = (size_t)scale_rows * (size_t)t.scale_cols * sizeof(float);
        if (w->scale_offset > r1_cpu__buf_bytes(w->scale_buf) ||
            r1_cpu__buf_bytes(w->scale_buf) - w->scale_offset < s_need)
            return r1_error__set(R1_ERR_OUT_OF_RANGE, "cpu matmul: block scale exceeds its buffer");
        t.scale = (const float *)(const void *)((const char *)r1_cpu__buf_data(w->scale_buf) +
                                                w->scale_offset);
    }
    const float *xp = (const float *)(const void *)((char *)r1_cpu__buf_data(x->buf) + x->offset);
    float *yp = (float *)(void *)((char *)r1_cpu__buf_data(y->buf) + y->offset);
    return r1_cpu__matmul(pool != NULL ? pool : r1_threadpool__default(), &t, xp, xr, yp);
}
