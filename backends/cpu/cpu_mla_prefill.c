/* cpu_mla_prefill.c: a prompt chunk's latent attention (R1_OP_MLA_PREFILL) on the CPU: the
 * reference the device backends are tested against, and what runs a chunk a device refuses.
 *
 * The steps and their order are those of lib/model/forward.c's prefill on the CPU backend (products
 * batched over heads through r1_cpu__matmul, the softmax of lib/model/softmax.h), so a chunk gives
 * the same numbers whichever of the two runs it; a q8_0 cache is dequantised whole first, as
 * there. */
#include <stdlib.h>
#include <string.h>

#include "cpu_kernels.h"
#include "cpu_ops.h"
#include "dtype.h"
#include "error.h"
#include "softmax.h"

/* Heads share a score product up to about this many (head, query) rows, and a long chunk's
 * queries go in blocks of R1_PREFILL_QUERY_BLOCK, each against the keys up to its last query
 * only (lib/model/forward.c uses the same two numbers). */
enum { R1_PREFILL_GROUP_ROWS = 64, R1_PREFILL_QUERY_BLOCK = 128 };

static const float *r1_scale_row(const r1_tensor *w, int64_t r)
{
    return w->scale ? w->scale + (r / R1_FP8_SCALE_BLOCK) * w->scale_cols : NULL;
}

static void r1_weight_row(const r1_tensor *w, int64_t r, float *out)
{
    const int64_t cols = r1_tensor__cols(w);
    const size_t rb = r1_dtype__row_bytes(w->dtype, cols);
    r1_dtype__dequantize_row(w->dtype, (const uint8_t *)w->data + (size_t)r * rb,
                             r1_scale_row(w, r), out, cols);
}

/* Working memory of one call, in floats. */
typedef struct r1_prefill_scratch {
    float *uk;    /* (rkv, dn): one head's W_UK transposed */
    float *wrow;  /* (max(rkv, dn)) one dequantised row */
    float *gq;    /* (T, max(dn, dv)) */
    float *qry;   /* (H, T, dl): the queries in the layout of a cache row */
    float *olat;  /* (H, T, rkv) */
    float *score; /* (max(T, GROUP_ROWS), n_keys) */
    float *ckv_t; /* (rkv, n_keys) */
} r1_prefill_scratch;

/* The queries of every head in the latent space, head-major: qry[h][t] = (W_UK^h^T q_nope,
 * q_pe), W_UK^h as float32 so the product is the forward's. */
static r1_status r1_prefill_queries(r1_threadpool *pool, const r1_op_mla_prefill_params *p,
                                    const float *q, const r1_tensor *kv_b, r1_prefill_scratch *s)
{
    const int64_t H = p->n_heads, T = p->n_tokens, dn = p->qk_nope_dim, dr = p->qk_rope_dim;
    const int64_t dv = p->v_dim, rkv = p->kv_lora_rank, dl = rkv + dr, dqk = dn + dr;
    for (int64_t h = 0; h < H; h++) {
        for (int64_t r = 0; r < dn; r++) {
            r1_weight_row(kv_b, h * (dn + dv) + r, s->wrow);
            for (int64_t k = 0; k < rkv; k++)
                s->uk[k * dn + r] = s->wrow[k];
        }
        float *qh = s->qry + h * T * dl;
        for (int64_t t = 0; t < T; t++) {
            const float *src = q + t * H * dqk + h * dqk;
            memcpy(s->gq + t * dn, src, (size_t)dn * sizeof(float));
            memcpy(qh + t * dl + rkv, src + dn, (size_t)dr * sizeof(float));
        }
        const r1_tensor uk = r1_tensor__f32_matrix(s->uk, rkv, dn);
        r1_status st = r1_cpu__matmul(pool, &uk, s->gq, T, s->olat);
        if (st != R1_OK)
            return st;
        for (int64_t t = 0; t < T; t++)
            memcpy(qh + t * dl, s->olat + t * rkv, (size_t)rkv * sizeof(float));
    }
    return R1_OK;
}

/* Scores, causal softmax and value sums of every head into olat (H, T, rkv). Several heads
 * share a product only when T < GROUP_ROWS <= QUERY_BLOCK, i.e. with a single block, so a
 * group's rows are contiguous in qry and olat. */
static r1_status r1_prefill_attend(r1_threadpool *pool, const r1_op_mla_prefill_params *p,
                                   const float *lat, r1_prefill_scratch *s)
{
    const int64_t H = p->n_heads, T = p->n_tokens, rkv = p->kv_lora_rank;
    const int64_t dl = rkv + p->qk_rope_dim;
    int64_t group = T >= R1_PREFILL_GROUP_ROWS ? 1 : R1_PREFILL_GROUP_ROWS / T;
    group = group < H ? group : H;
    for (int64_t t0 = 0; t0 < T; t0 += R1_PREFILL_QUERY_BLOCK) {
        const int64_t nt = T - t0 < R1_PREFILL_QUERY_BLOCK ? T - t0 : R1_PREFILL_QUERY_BLOCK;
        const int64_t n_keys = p->pos0 + t0 + nt;
        r1_tensor__transpose_f32(lat, n_keys, rkv, dl, s->ckv_t);
        const r1_tensor keys = r1_tensor__f32_matrix(lat, n_keys, dl);
        const r1_tensor values_t = r1_tensor__f32_matrix(s->ckv_t, rkv, n_keys);
        for (int64_t h0 = 0; h0 < H; h0 += group) {
            const int64_t nh = h0 + group <= H ? group : H - h0, rows = nh * nt;
            r1_status st = r1_cpu__matmul(pool, &keys, s->qry + (h0 * T + t0) * dl, rows, s->score);
            if (st != R1_OK)
                return st;
            for (int64_t r = 0; r < rows; r++) {
                float *row = s->score + r * n_keys;
                const int64_t valid = p->pos0 + t0 + r % nt + 1;
                r1_softmax__scaled(row, valid, p->softmax_scale);
                memset(row + valid, 0, (size_t)(n_keys - valid) * sizeof(float));
            }
            st = r1_cpu__matmul(pool, &values_t, s->score, rows, s->olat + (h0 * T + t0) * rkv);
            if (st != R1_OK)
                return st;
        }
    }
    return R1_OK;
}

/* out[t, h] = W_UV^h olat[h, t]: one product per head over the rows of kv_b in its dtype, or,
 * where fp8 block scales do not start at the head's first row, dot products in double. */
static r1_status r1_prefill_values(r1_threadpool *pool, const r1_op_mla_prefill_params *p,
                                   const r1_tensor *kv_b, r1_prefill_scratch *s, float *out)
{
    const int64_t H = p->n_heads, T = p->n_tokens, dn = p->qk_nope_dim, dv = p->v_dim;
    const int64_t rkv = p->kv_lora_rank;
    const size_t rb = r1_dtype__row_bytes(kv_b->dtype, rkv);
    for (int64_t h = 0; h < H; h++) {
        const float *olh = s->olat + h * T * rkv;
        const int64_t r0 = h * (dn + dv) + dn;
        if (kv_b->scale == NULL || r0 % R1_FP8_SCALE_BLOCK == 0) {
            r1_tensor uv = *kv_b;
            uv.shape[0] = dv;
            uv.shape[1] = rkv;
            uv.data = (const uint8_t *)kv_b->data + (size_t)r0 * rb;
            uv.nbytes = (size_t)dv * rb;
            uv.scale = r1_scale_row(kv_b, r0);
            r1_status st = r1_cpu__matmul(pool, &uv, olh, T, s->gq);
            if (st != R1_OK)
                return st;
            for (int64_t t = 0; t < T; t++)
                memcpy(out + t * H * dv + h * dv, s->gq + t * dv, (size_t)dv * sizeof(float));
            continue;
        }
        for (int64_t c = 0; c < dv; c++) {
            r1_weight_row(kv_b, r0 + c, s->wrow);
            for (int64_t t = 0; t < T; t++) {
                const float *ol = olh + t * rkv;
                double dot = 0;
                for (int64_t k = 0; k < rkv; k++)
                    dot += (double)s->wrow[k] * ol[k];
                out[t * H * dv + h * dv + c] = (float)dot;
            }
        }
    }
    return R1_OK;
}

r1_status r1_cpu__mla_prefill(r1_threadpool *pool, const r1_op_mla_prefill_params *p,
                              const float *q, const float *lat, const r1_tensor *kv_b, float *out)
{
    if (p == NULL || q == NULL || lat == NULL || kv_b == NULL || kv_b->data == NULL || out == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "mla prefill: NULL operand");
    const r1_dtype_traits *tr = r1_dtype__traits(kv_b->dtype);
    const int64_t H = p->n_heads, T = p->n_tokens, dn = p->qk_nope_dim, dr = p->qk_rope_dim;
    const int64_t dv = p->v_dim, rkv = p->kv_lora_rank, n_keys = p->pos0 + T;
    if (tr == NULL || H <= 0 || T <= 0 || p->pos0 < 0 || dn <= 0 || dr < 0 || dv <= 0 || rkv <= 0 ||
        kv_b->n_dims != 2 || r1_tensor__rows(kv_b) != H * (dn + dv) || r1_tensor__cols(kv_b) != rkv)
        return r1_error__set(R1_ERR_INVALID_ARG, "mla prefill: kv_b_proj does not match the heads");
    const size_t rb = r1_dtype__row_bytes(kv_b->dtype, rkv);
    if (rb == 0 || (size_t)r1_tensor__rows(kv_b) > kv_b->nbytes / rb ||
        (tr->has_block_scale && kv_b->scale == NULL))
        return r1_error__set(R1_ERR_INVALID_ARG, "mla prefill: %s kv_b_proj rows of %lld", tr->name,
                             (long long)rkv);
    const int64_t dl = rkv + dr, wide = dn > dv ? dn : dv;
    const int64_t score_rows = T > R1_PREFILL_GROUP_ROWS ? T : R1_PREFILL_GROUP_ROWS;
    r1_prefill_scratch s = {
        .uk = malloc((size_t)(rkv * dn) * sizeof(float)),
        .wrow = malloc((size_t)(rkv > dn ? rkv : dn) * sizeof(float)),
        .gq = malloc((size_t)(T * wide) * sizeof(float)),
        .qry = malloc((size_t)(H * T * dl) * sizeof(float)),
        .olat = malloc((size_t)(H * T * rkv) * sizeof(float)),
        .score = malloc((size_t)(score_rows * n_keys) * sizeof(float)),
        .ckv_t = malloc((size_t)(rkv * n_keys) * sizeof(float)),
    };
    r1_status st = R1_OK;
    if (s.uk == NULL || s.wrow == NULL || s.gq == NULL || s.qry == NULL || s.olat == NULL ||
        s.score == NULL || s.ckv_t == NULL)
        st = r1_error__set(R1_ERR_NO_MEMORY,
                           "mla prefill: cannot allocate scratch for %lld "
                           "queries over %lld keys",
                           (long long)T, (long long)n_keys);
    if (st == R1_OK)
        st = r1_prefill_queries(pool, p, q, kv_b, &s);
    if (st == R1_OK)
        st = r1_prefill_attend(pool, p, lat, &s);
    if (st == R1_OK)
        st = r1_prefill_values(pool, p, kv_b, &s, out);
    free(s.uk);
    free(s.wrow);
    free(s.gq);
    free(s.qry);
    free(s.olat);
    free(s.score);
    free(s.ckv_t);
    return st;
}

r1_status r1_cpu__mla_prefill_cache(r1_threadpool *pool, const r1_op_mla_prefill_params *p,
                                    const float *q, const void *lat, int32_t lat_dtype,
                                    const r1_tensor *kv_b, float *out)
{
    if (lat_dtype == R1_DTYPE_F32 || p == NULL || lat == NULL)
        return r1_cpu__mla_prefill(pool, p, q, lat, kv_b, out);
    const int64_t rkv = p->kv_lora_rank, dr = p->qk_rope_dim, n_keys = p->pos0 + p->n_tokens;
    const size_t row_bytes = r1_cpu__mla_cache_row_bytes(lat_dtype, rkv, dr);
    if (row_bytes == 0 || rkv <= 0 || dr < 0 || p->pos0 < 0 || p->n_tokens <= 0)
        return r1_error__set(R1_ERR_INVALID_ARG, "mla prefill: a latent cache of type %d",
                             lat_dtype);
    /* rows of rkv + dr floats; each is dequantised whole (padding included) and the next row
     * overwrites that padding, hence one padded row of room at the end */
    const int64_t dl = rkv + dr, padded = r1_cpu__mla_cache_row_floats(rkv, dr);
    float *rows = malloc((size_t)(n_keys * dl + padded) * sizeof(float));
    if (rows == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY,
                             "mla prefill: cannot dequantise %lld rows of the latent cache",
                             (long long)n_keys);
    for (int64_t j = 0; j < n_keys; j++)
        r1_dtype__dequantize_row(lat_dtype, (const uint8_t *)lat + (size_t)j * row_bytes, NULL,
                                 rows + j * dl, padded);
    r1_status st = r1_cpu__mla_prefill(pool, p, q, rows, kv_b, out);
    free(rows);
    return st;
}

/* ---- the op ------------------------------------------------------------------------------- */

/* t's first n_floats floats inside its buffer, or NULL when they do not fit. */
static const float *r1_floats(const r1_dtensor *t, uint64_t n_floats)
{
    if (t->buf == NULL || t->offset % sizeof(float) != 0)
        return NULL;
    const size_t bytes = r1_cpu__buf_bytes(t->buf);
    if (t->offset > bytes || n_floats > (bytes - t->offset) / sizeof(float))
        return NULL;
    return (const float *)(const void *)((const char *)r1_cpu__buf_data(t->buf) + t->offset);
}

int32_t r1_cpu__mla_prefill_supported(const r1_op *op)
{
    const r1_op_mla_prefill_params *p = op->params;
    if (p == NULL || op->n_src != 3 || op->src[0].dtype != R1_DTYPE_F32 ||
        r1_cpu__mla_cache_row_bytes(op->src[1].dtype, p->kv_lora_rank, p->qk_rope_dim) == 0 ||
        op->dst.dtype != R1_DTYPE_F32)
        return 0;
    const r1_dtensor *w = &op->src[2];
    const r1_dtype_traits *tr = w->dtype >= 0 ? r1_dtype__traits(w->dtype) : NULL;
    if (tr == NULL || w->layout != 0 || w->n_dims != 2) /* heads read kv_b_proj by rows */
        return 0;
    return w->buf == NULL || !tr->has_block_scale || w->scale_buf != NULL;
}

r1_status r1_cpu__mla_prefill_run(r1_threadpool *pool, const r1_op *op)
{
    if (!r1_cpu__mla_prefill_supported(op))
        return r1_error__set(R1_ERR_UNSUPPORTED, "cpu mla prefill: unsupported operands");
    const r1_op_mla_prefill_params *p = op->params;
    const int64_t H = p->n_heads, T = p->n_tokens;
    const int64_t dl = p->kv_lora_rank + p->qk_rope_dim;
    if (H <= 0 || T <= 0 || p->pos0 < 0 || dl <= 0 || p->v_dim <= 0)
        return r1_error__set(R1_ERR_INVALID_ARG, "cpu mla prefill: bad parameters");
    const float *q = r1_floats(&op->src[0], (uint64_t)(T * H * (p->qk_nope_dim + p->qk_rope_dim)));
    const r1_dtensor *c = &op->src[1];
    const size_t lat_bytes = (size_t)(p->pos0 + T) *
                             r1_cpu__mla_cache_row_bytes(c->dtype, p->kv_lora_rank, p->qk_rope_dim);
    const void *lat = c->dtype == R1_DTYPE_F32
                          ? (const void *)r1_floats(c, (uint64_t)((p->pos0 + T) * dl))
                      : c->buf != NULL && c->offset <= r1_cpu__buf_bytes(c->buf) &&
                              r1_cpu__buf_bytes(c->buf) - c->offset >= lat_bytes
                          ? (const char *)r1_cpu__buf_data(c->buf) + c->offset
                          : NULL;
    float *out = (float *)(uintptr_t)r1_floats(&op->dst, (uint64_t)(T * H * p->v_dim));
    const r1_dtensor *w = &op->src[2];
    if (q == NULL || lat == NULL || out == NULL || w->buf == NULL || w->offset % 4 != 0 ||
        w->offset > r1_cpu__buf_bytes(w->buf))
        return r1_error__set(R1_ERR_OUT_OF_RANGE, "cpu mla prefill: an operand exceeds its buffer");
    r1_tensor kv_b;
    memset(&kv_b, 0, sizeof kv_b);
    kv_b.dtype = w->dtype;
    kv_b.n_dims = 2;
    kv_b.shape[0] = w->shape[0];
    kv_b.shape[1] = w->shape[1];
    kv_b.data = (const char *)r1_cpu__buf_data(w->buf) + w->offset;
    kv_b.nbytes = r1_cpu__buf_bytes(w->buf) - w->offset;
    if (r1_dtype__traits(w->dtype)->has_block_scale) {
        const int64_t scale_rows = r1_fp8__scale_blocks(w->shape[0]);
        kv_b.scale_cols = r1_fp8__scale_blocks(w->shape[1]);
        const float *scale =
            r1_floats(&(r1_dtensor){.buf = w->scale_buf, .offset = w->scale_offset},
                      (uint64_t)(scale_rows * kv_b.scale_cols));
        if (scale == NULL)
            return r1_error__set(R1_ERR_OUT_OF_RANGE,
                                 "cpu mla prefill: kv_b_proj's scales exceed their buffer");
        kv_b.scale = scale;
    }
    return r1_cpu__mla_prefill_cache(pool, p, q, lat, c->dtype, &kv_b, out);
}
