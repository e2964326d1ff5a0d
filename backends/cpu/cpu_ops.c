/* cpu_ops.c: the CPU backend's op dispatch and host description. */
#include "cpu_ops.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cpu_features.h"
#include "cpu_kernels.h"
#include "dtype.h"
#include "error.h"
#include "weight_layout.h"

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

/* A weight operand as the kernels' r1_tensor (data and fp8 scales inside their buffers); 0 when
 * the scale buffer is too small. Whether the data holds every row is the kernels' check. */
static int r1_cpu_weight(const r1_dtensor *w, r1_tensor *t)
{
    int64_t wr, wc;
    r1_cpu_dt_shape(w, &wr, &wc);
    memset(t, 0, sizeof *t);
    t->dtype = w->dtype;
    t->layout = w->layout;
    t->n_dims = w->n_dims;
    t->data = (const char *)r1_cpu__buf_data(w->buf) + w->offset;
    t->nbytes = r1_cpu__buf_bytes(w->buf) - w->offset;
    for (int32_t i = 0; i < w->n_dims; i++)
        t->shape[i] = w->shape[i];
    if (r1_dtype__traits(w->dtype)->has_block_scale) {
        int64_t scale_rows = r1_fp8__scale_blocks(wr);
        t->scale_cols = r1_fp8__scale_blocks(wc);
        size_t s_need = (size_t)scale_rows * (size_t)t->scale_cols * sizeof(float);
        if (w->scale_buf == NULL || w->scale_offset > r1_cpu__buf_bytes(w->scale_buf) ||
            r1_cpu__buf_bytes(w->scale_buf) - w->scale_offset < s_need)
            return 0;
        t->scale = (const float *)(const void *)((const char *)r1_cpu__buf_data(w->scale_buf) +
                                                 w->scale_offset);
    }
    return 1;
}

static const float *r1_cpu_f32(const r1_dtensor *t, size_t n_floats)
{
    if (r1_cpu__buf_bytes(t->buf) - t->offset < n_floats * sizeof(float))
        return NULL;
    return (const float *)(const void *)((const char *)r1_cpu__buf_data(t->buf) + t->offset);
}

static int32_t r1_cpu_mla_supported(const r1_op *op)
{
    const r1_op_mla_decode_params *p = op->params;
    if (p == NULL || op->n_src < 3 || !r1_cpu_dt_ok(&op->dst))
        return 0;
    for (int32_t i = 0; i < 3; i++)
        if (!r1_cpu_dt_ok(&op->src[i]))
            return 0;
    /* the latent cache f32, or q8_0 rows of whole blocks of c_kv (cpu_attention.c) */
    if (op->src[0].dtype != R1_DTYPE_F32 ||
        r1_cpu__mla_cache_row_bytes(op->src[1].dtype, p->kv_lora_rank, p->qk_rope_dim) == 0 ||
        op->dst.dtype != R1_DTYPE_F32 || r1_dtype__traits(op->src[2].dtype) == NULL ||
        op->src[2].layout != R1_LAYOUT_ROWS) /* heads read kv_b_proj by rows */
        return 0;
    return !r1_dtype__traits(op->src[2].dtype)->has_block_scale || op->src[2].scale_buf != NULL;
}

static r1_status r1_cpu_mla_run(r1_threadpool *pool, const r1_op *op)
{
    const r1_op_mla_decode_params *p = op->params;
    const int64_t H = p->n_heads, dl = p->kv_lora_rank + p->qk_rope_dim;
    if (H <= 0 || dl <= 0 || p->n_keys <= 0 || p->v_dim <= 0 || p->qk_nope_dim <= 0)
        return r1_error__set(R1_ERR_INVALID_ARG, "cpu mla decode: bad parameters");
    const float *q = r1_cpu_f32(&op->src[0], (size_t)(H * (p->qk_nope_dim + p->qk_rope_dim)));
    const size_t lat_bytes =
        (size_t)p->n_keys *
        r1_cpu__mla_cache_row_bytes(op->src[1].dtype, p->kv_lora_rank, p->qk_rope_dim);
    const void *lat = r1_cpu__buf_bytes(op->src[1].buf) - op->src[1].offset >= lat_bytes
                          ? (const char *)r1_cpu__buf_data(op->src[1].buf) + op->src[1].offset
                          : NULL;
    float *out = (float *)r1_cpu_f32(&op->dst, (size_t)(H * p->v_dim));
    r1_tensor kv_b;
    if (q == NULL || lat == NULL || out == NULL || !r1_cpu_weight(&op->src[2], &kv_b))
        return r1_error__set(R1_ERR_OUT_OF_RANGE, "cpu mla decode: an operand exceeds its buffer");
    return r1_cpu__mla_decode_cache(pool, p, q, lat, op->src[1].dtype, &kv_b, out);
}

int32_t r1_cpu__op_supported(const r1_op *op)
{
    if (op != NULL && op->kind == R1_OP_MLA_DECODE)
        return r1_cpu_mla_supported(op);
    if (op != NULL && op->kind >= R1_OP_RMSNORM && op->kind < R1_OP_KIND_END)
        return r1_cpu__layer_op_supported(op);
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
    if (w->layout != R1_LAYOUT_ROWS &&
        (w->layout != R1_LAYOUT_R16 || !r1_layout__r16_eligible(w->dtype, wr, wc)))
        return 0;
    return xc == wc && yr == xr && yc == wr;
}

/* Ops run on the device's pool: its own when the model asked for a thread count, else the
 * shared one (threadpool.h). A NULL pool runs them on the caller alone. */
r1_status r1_cpu__op_run(r1_threadpool *pool, const r1_op *op)
{
    if (!r1_cpu__op_supported(op))
        return r1_error__set(R1_ERR_UNSUPPORTED,
                             "cpu backend: op kind %d with these operands is not implemented",
                             op != NULL ? (int)op->kind : -1);
    if (op->kind == R1_OP_MLA_DECODE)
        return r1_cpu_mla_run(pool, op);
    if (op->kind != R1_OP_MATMUL)
        return r1_cpu__layer_op_run(op);
    int64_t xr, xc, yr, yc;
    r1_cpu_dt_shape(&op->src[0], &xr, &xc);
    r1_cpu_dt_shape(&op->dst, &yr, &yc);
    const float *xp = r1_cpu_f32(&op->src[0], (size_t)xr * (size_t)xc);
    float *yp = (float *)r1_cpu_f32(&op->dst, (size_t)yr * (size_t)yc);
    if (xp == NULL || yp == NULL)
        return r1_error__set(R1_ERR_OUT_OF_RANGE, "cpu matmul: activation exceeds its buffer");
    r1_tensor t;
    if (!r1_cpu_weight(&op->src[1], &t))
        return r1_error__set(R1_ERR_OUT_OF_RANGE, "cpu matmul: block scale exceeds its buffer");
    return r1_cpu__matmul(pool, &t, xp, xr, yp);
}
