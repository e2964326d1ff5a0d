/* cpu_layer_ops.c: the CPU backend's ops for the rest of a layer (RMSNorm, rotary, softmax,
 * SwiGLU, routing, MoE combine; lib/compute/backend.h), the reference every device backend is
 * tested against. Each op checks its operands against their buffers, then runs the helpers the
 * forward pass used before these ops existed (cpu_elementwise.c, lib/model/rope.c,
 * lib/model/router.c, lib/model/softmax.h), so routing an op through the backend changes no result.
 */
#include <stdint.h>
#include <string.h>

#include "cpu_kernels.h"
#include "cpu_ops.h"
#include "dtype.h"
#include "error.h"
#include "model_config.h"
#include "rope.h"
#include "router.h"
#include "softmax.h"

/* Floats a strided row set spans: the last row starts at (n_rows - 1) * stride. */
static uint64_t r1_span(int64_t n_rows, int64_t stride, int64_t n)
{
    return (uint64_t)(n_rows - 1) * (uint64_t)stride + (uint64_t)n;
}

/* t's first n_floats floats inside its buffer, or NULL when they do not fit. */
static float *r1_floats(const r1_dtensor *t, uint64_t n_floats)
{
    if (t->buf == NULL || t->offset % sizeof(float) != 0)
        return NULL;
    const size_t bytes = r1_cpu__buf_bytes(t->buf);
    if (t->offset > bytes || n_floats > (bytes - t->offset) / sizeof(float))
        return NULL;
    return (float *)(void *)((char *)r1_cpu__buf_data(t->buf) + t->offset);
}

static int64_t r1_or(int64_t stride, int64_t n)
{
    return stride > 0 ? stride : n;
}

/* A rows op's strides are valid: each row fits its stride and nothing is negative. */
static int r1_rows_ok(const r1_op_rows_params *p)
{
    return p != NULL && p->n_rows > 0 && p->n > 0 && p->x_stride >= 0 && p->b_stride >= 0 &&
           p->y_stride >= 0 && r1_or(p->x_stride, p->n) >= p->n &&
           r1_or(p->b_stride, p->n) >= p->n && r1_or(p->y_stride, p->n) >= p->n;
}

static int r1_all_f32(const r1_op *op, int32_t n_src)
{
    if (op->n_src != n_src || op->dst.dtype != R1_DTYPE_F32)
        return 0;
    for (int32_t i = 0; i < n_src; i++)
        if (op->src[i].dtype != R1_DTYPE_F32)
            return 0;
    return 1;
}

/* ---- the ops ------------------------------------------------------------------------------ */

static r1_status r1_cpu_rmsnorm(const r1_op *op)
{
    const r1_op_rows_params *p = op->params;
    const int64_t xs = r1_or(p->x_stride, p->n), ys = r1_or(p->y_stride, p->n);
    const float *x = r1_floats(&op->src[0], r1_span(p->n_rows, xs, p->n));
    const float *g = r1_floats(&op->src[1], (uint64_t)p->n);
    float *y = r1_floats(&op->dst, r1_span(p->n_rows, ys, p->n));
    if (x == NULL || g == NULL || y == NULL)
        return r1_error__set(R1_ERR_OUT_OF_RANGE, "cpu rmsnorm: an operand exceeds its buffer");
    for (int64_t r = 0; r < p->n_rows; r++)
        r1_cpu__rmsnorm(x + r * xs, g, (float)p->eps, p->n, y + r * ys);
    return R1_OK;
}

static r1_status r1_cpu_rope(const r1_op *op)
{
    const r1_op_rope_params *p = op->params;
    float *x = r1_floats(&op->dst, (uint64_t)(p->n_rows - 1) * (uint64_t)p->row_stride +
                                       (uint64_t)(p->n_vecs - 1) * (uint64_t)p->vec_stride +
                                       (uint64_t)(2 * p->n_pairs));
    const float *cs = r1_floats(&op->src[0], (uint64_t)(p->n_rows * 2 * p->n_pairs));
    if (x == NULL || cs == NULL)
        return r1_error__set(R1_ERR_OUT_OF_RANGE, "cpu rope: an operand exceeds its buffer");
    r1_rope rope;
    memset(&rope, 0, sizeof rope);
    rope.n_pairs = (int32_t)p->n_pairs; /* all that r1_rope__apply reads */
    for (int64_t r = 0; r < p->n_rows; r++)
        for (int64_t v = 0; v < p->n_vecs; v++)
            r1_rope__apply(&rope, cs + r * 2 * p->n_pairs,
                           x + r * p->row_stride + v * p->vec_stride);
    return R1_OK;
}

static r1_status r1_cpu_softmax(const r1_op *op)
{
    const r1_op_softmax_params *p = op->params;
    float *x = r1_floats(&op->dst, (uint64_t)p->n_rows * (uint64_t)p->n);
    if (x == NULL)
        return r1_error__set(R1_ERR_OUT_OF_RANGE, "cpu softmax: the rows exceed their buffer");
    for (int64_t r = 0; r < p->n_rows; r++) {
        float *row = x + r * p->n;
        int64_t valid = p->n;
        if (p->causal_period > 0 && p->causal_base + r % p->causal_period + 1 < valid)
            valid = p->causal_base + r % p->causal_period + 1;
        r1_softmax__scaled(row, valid, p->scale);
        for (int64_t j = valid; j < p->n; j++)
            row[j] = 0;
    }
    return R1_OK;
}

static r1_status r1_cpu_swiglu(const r1_op *op)
{
    const r1_op_rows_params *p = op->params;
    const int64_t as = r1_or(p->x_stride, p->n), bs = r1_or(p->b_stride, p->n);
    const int64_t ys = r1_or(p->y_stride, p->n);
    const float *a = r1_floats(&op->src[0], r1_span(p->n_rows, as, p->n));
    const float *b = r1_floats(&op->src[1], r1_span(p->n_rows, bs, p->n));
    float *y = r1_floats(&op->dst, r1_span(p->n_rows, ys, p->n));
    if (a == NULL || b == NULL || y == NULL)
        return r1_error__set(R1_ERR_OUT_OF_RANGE, "cpu swiglu: an operand exceeds its buffer");
    for (int64_t r = 0; r < p->n_rows; r++)
        r1_cpu__silu_mul(a + r * as, b + r * bs, p->n, y + r * ys);
    return R1_OK;
}

/* The op's routing fields as the configuration lib/model/router.c reads. */
static void r1_router_config(const r1_op_router_params *p, r1_model_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->n_routed_experts = p->n_experts;
    cfg->num_experts_per_tok = p->top_k;
    cfg->n_group = p->n_group;
    cfg->topk_group = p->topk_group;
    cfg->topk_method = p->topk_method;
    cfg->scoring_func = p->scoring_func;
    cfg->norm_topk_prob = p->norm_topk_prob;
    cfg->routed_scaling_factor = p->routed_scaling_factor;
}

static r1_status r1_cpu_router(const r1_op *op)
{
    const r1_op_router_params *p = op->params;
    const float *u = r1_floats(&op->src[0], (uint64_t)(p->n_rows * p->n_experts));
    const float *bias = op->n_src > 1 ? r1_floats(&op->src[1], (uint64_t)p->n_experts) : NULL;
    float *out = r1_floats(&op->dst, (uint64_t)(p->n_rows * 2 * p->top_k));
    if (u == NULL || out == NULL || (op->n_src > 1 && bias == NULL))
        return r1_error__set(R1_ERR_OUT_OF_RANGE, "cpu router: an operand exceeds its buffer");
    r1_model_config cfg;
    r1_router_config(p, &cfg);
    int32_t experts[R1_ROUTER_MAX_TOPK];
    for (int64_t r = 0; r < p->n_rows; r++) {
        float *row = out + r * 2 * p->top_k;
        r1_router__select(&cfg, u + r * p->n_experts, bias, experts, row);
        memcpy(row + p->top_k, experts, (size_t)p->top_k * sizeof(int32_t));
    }
    return R1_OK;
}

static r1_status r1_cpu_moe_combine(const r1_op *op)
{
    const r1_op_rows_params *p = op->params;
    const int64_t n_dst = op->dst.n_dims == 2 ? op->dst.shape[0] : 0;
    const float *src = r1_floats(&op->src[0], (uint64_t)(p->n_rows * p->n));
    float *dst = r1_floats(&op->dst, (uint64_t)n_dst * (uint64_t)p->n);
    if (src == NULL || dst == NULL)
        return r1_error__set(R1_ERR_OUT_OF_RANGE, "cpu moe combine: an operand exceeds its buffer");
    if (op->n_src == 1) {
        if (p->n_rows > n_dst)
            return r1_error__set(R1_ERR_OUT_OF_RANGE, "cpu moe combine: %lld rows into %lld",
                                 (long long)p->n_rows, (long long)n_dst);
        r1_cpu__axpy(1.0f, src, p->n_rows * p->n, dst);
        return R1_OK;
    }
    const float *w = r1_floats(&op->src[1], (uint64_t)p->n_rows);
    const int32_t *rows = (const int32_t *)r1_floats(&op->src[2], (uint64_t)p->n_rows);
    if (w == NULL || rows == NULL)
        return r1_error__set(R1_ERR_OUT_OF_RANGE, "cpu moe combine: an operand exceeds its buffer");
    for (int64_t i = 0; i < p->n_rows; i++) {
        if (rows[i] < 0 || rows[i] >= n_dst)
            return r1_error__set(R1_ERR_OUT_OF_RANGE, "cpu moe combine: row %d of %lld",
                                 (int)rows[i], (long long)n_dst);
        r1_cpu__axpy(w[i], src + i * p->n, p->n, dst + (int64_t)rows[i] * p->n);
    }
    return R1_OK;
}

/* ---- dispatch ----------------------------------------------------------------------------- */

int32_t r1_cpu__layer_op_supported(const r1_op *op)
{
    switch (op->kind) {
    case R1_OP_RMSNORM: return r1_all_f32(op, 2) && r1_rows_ok(op->params);
    case R1_OP_SWIGLU: return r1_all_f32(op, 2) && r1_rows_ok(op->params);
    case R1_OP_MOE_COMBINE: {
        const r1_op_rows_params *p = op->params;
        if (p == NULL || p->n_rows <= 0 || p->n <= 0 || op->dst.dtype != R1_DTYPE_F32 ||
            op->src[0].dtype != R1_DTYPE_F32 || op->dst.n_dims != 2 || op->dst.shape[1] != p->n)
            return 0;
        return op->n_src == 1 || (op->n_src == 3 && op->src[1].dtype == R1_DTYPE_F32);
    }
    case R1_OP_ROPE: {
        const r1_op_rope_params *p = op->params;
        return p != NULL && op->n_src == 1 && op->dst.dtype == R1_DTYPE_F32 &&
               op->src[0].dtype == R1_DTYPE_F32 && p->n_rows > 0 && p->n_vecs > 0 &&
               p->n_pairs > 0 && p->n_pairs <= R1_ROPE_MAX_PAIRS && p->row_stride >= 0 &&
               p->vec_stride >= 0;
    }
    case R1_OP_SOFTMAX: {
        const r1_op_softmax_params *p = op->params;
        return p != NULL && op->n_src == 0 && op->dst.dtype == R1_DTYPE_F32 && p->n_rows > 0 &&
               p->n > 0 && p->causal_period >= 0 && p->causal_base >= 0;
    }
    case R1_OP_ROUTER: {
        const r1_op_router_params *p = op->params;
        if (p == NULL || (op->n_src != 1 && op->n_src != 2) || op->dst.dtype != R1_DTYPE_F32 ||
            op->src[0].dtype != R1_DTYPE_F32 || p->n_rows <= 0)
            return 0;
        r1_model_config cfg;
        r1_router_config(p, &cfg);
        r1_status st = r1_router__check(&cfg); /* the fixed tables of lib/model/router.c */
        if (st != R1_OK)
            r1_error__clear();
        return st == R1_OK;
    }
    default: return 0;
    }
}

r1_status r1_cpu__layer_op_run(const r1_op *op)
{
    switch (op->kind) {
    case R1_OP_RMSNORM: return r1_cpu_rmsnorm(op);
    case R1_OP_ROPE: return r1_cpu_rope(op);
    case R1_OP_SOFTMAX: return r1_cpu_softmax(op);
    case R1_OP_SWIGLU: return r1_cpu_swiglu(op);
    case R1_OP_ROUTER: return r1_cpu_router(op);
    case R1_OP_MOE_COMBINE: return r1_cpu_moe_combine(op);
    default:
        return r1_error__set(R1_ERR_UNSUPPORTED, "cpu backend: op kind %d is not a layer op",
                             (int)op->kind);
    }
}
