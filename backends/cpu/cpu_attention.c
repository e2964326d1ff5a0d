/* cpu_attention.c: one decoded token's latent attention (R1_OP_MLA_DECODE) as one op per layer.
 *
 * Decode used to issue two small products per head (the absorption into the latent space against
 * a float32 transposed copy of W_UK, and W_UV) plus the score and value products: about 35 pool
 * runs per layer, and 4 bytes per W_UK element read per token. Here each task is one head, from
 * the query to its output: W_UK and W_UV are read from kv_b_proj in the model's own dtype, the
 * latent cache is read by this head's scores and value sums, and the pool runs once. */
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "cpu_kernels.h"
#include "dtype.h"
#include "error.h"
#include "kernels_levels.h"
#include "softmax.h"

/* Rows of W_UK dequantised per pass: 16 x 512 floats (32 KiB) stay in L1 while summed. */
enum { R1_MLA_UK_ROWS = 16 };

typedef struct r1_mla_ctx {
    const r1_cpu_kernel_table *k;
    r1_threadpool *pool;
    const r1_op_mla_decode_params *p;
    const float *q;   /* (H, dn + dr) */
    const float *lat; /* (n_keys, rkv + dr) */
    const uint8_t *kv_b;
    const float *kv_b_scale; /* fp8 block scales, else NULL */
    int64_t scale_cols;
    size_t row_bytes;
    int32_t dtype;
    int32_t act_q8;
    float *out; /* (H, dv) */
    _Atomic int32_t failed;
} r1_mla_ctx;

static const float *r1_mla_scale_row(const r1_mla_ctx *c, int64_t r)
{
    return c->kv_b_scale != NULL ? c->kv_b_scale + (r / R1_FP8_SCALE_BLOCK) * c->scale_cols : NULL;
}

static void r1_mla_head_task(void *ctx, int64_t h, int32_t worker)
{
    r1_mla_ctx *c = ctx;
    const r1_op_mla_decode_params *p = c->p;
    const int64_t dn = p->qk_nope_dim, dr = p->qk_rope_dim, dv = p->v_dim, rkv = p->kv_lora_rank;
    const int64_t dl = rkv + dr, n_keys = p->n_keys;
    const int64_t n_blocks = rkv / R1_QBLOCK;
    const int64_t uk_rows = dn < R1_MLA_UK_ROWS ? dn : R1_MLA_UK_ROWS;
    size_t floats = (size_t)(dl + uk_rows * rkv + rkv + n_keys);
    size_t bytes = floats * sizeof(float) + (size_t)n_blocks * sizeof(r1_cpu_qx_block) + 64;
    float *qlat = r1_threadpool__scratch(c->pool, worker, bytes);
    if (qlat == NULL) {
        atomic_store(&c->failed, 1);
        return;
    }
    float *wrows = qlat + dl, *olat = wrows + uk_rows * rkv, *scores = olat + rkv;
    r1_cpu_qx_block *xq =
        (r1_cpu_qx_block *)(void *)(((uintptr_t)(scores + n_keys) + 63) & ~(uintptr_t)63);
    const float *qh = c->q + h * (dn + dr);
    const int64_t row0 = h * (dn + dv);

    /* The query in the latent space: W_UK^h^T q_nope, rows of W_UK dequantised a few at a time
     * and summed into it in row order (an axpy per row, with qlat kept in registers). */
    memset(qlat, 0, (size_t)rkv * sizeof(float));
    for (int64_t i0 = 0; i0 < dn; i0 += uk_rows) {
        const int64_t n = dn - i0 < uk_rows ? dn - i0 : uk_rows;
        for (int64_t i = 0; i < n; i++)
            c->k->dequant[c->dtype](c->kv_b + (size_t)(row0 + i0 + i) * c->row_bytes,
                                    r1_mla_scale_row(c, row0 + i0 + i), wrows + i * rkv, rkv);
        c->k->axpy_rows(qh + i0, wrows, rkv, n, rkv, qlat);
    }
    memcpy(qlat + rkv, qh + dn, (size_t)dr * sizeof(float));

    /* Scores against every cached row, the softmax, then the value sum over the latents. */
    for (int64_t j = 0; j < n_keys; j++)
        scores[j] = c->k->dot_f32(qlat, c->lat + j * dl, dl);
    r1_softmax__scaled(scores, n_keys, p->softmax_scale);
    memset(olat, 0, (size_t)rkv * sizeof(float));
    c->k->axpy_rows(scores, c->lat, dl, n_keys, rkv, olat);

    /* W_UV^h o_lat, with the kernels a matmul would use for this dtype (8-bit activations for
     * Q8_0/Q4_0 when that mode is on), so the result is what the product per head gave. */
    float *o = c->out + h * dv;
    const uint8_t *uv = c->kv_b + (size_t)(row0 + dn) * c->row_bytes;
    if (c->act_q8 && c->k->dot_qx[c->dtype] != NULL) {
        c->k->quantize_x(olat, xq, rkv);
        for (int64_t r = 0; r < dv; r += R1_CPU_QX_MAX_ROWS) {
            int32_t n = (int32_t)(dv - r < R1_CPU_QX_MAX_ROWS ? dv - r : R1_CPU_QX_MAX_ROWS);
            c->k->dot_qx[c->dtype](uv + (size_t)r * c->row_bytes, c->row_bytes, n, xq, n_blocks,
                                   o + r);
        }
    } else {
        for (int64_t r = 0; r < dv; r++)
            o[r] = c->k->dot[c->dtype](uv + (size_t)r * c->row_bytes,
                                       r1_mla_scale_row(c, row0 + dn + r), olat, rkv);
    }
}

r1_status r1_cpu__mla_decode(r1_threadpool *pool, const r1_op_mla_decode_params *p, const float *q,
                             const float *lat, const r1_tensor *kv_b, float *out)
{
    if (p == NULL || q == NULL || lat == NULL || kv_b == NULL || kv_b->data == NULL || out == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "mla decode: NULL operand");
    const r1_dtype_traits *tr = r1_dtype__traits(kv_b->dtype);
    const int64_t rkv = p->kv_lora_rank;
    if (tr == NULL || p->n_heads <= 0 || p->qk_nope_dim <= 0 || p->qk_rope_dim < 0 ||
        p->v_dim <= 0 || rkv <= 0 || p->n_keys <= 0 ||
        r1_tensor__rows(kv_b) != p->n_heads * (p->qk_nope_dim + p->v_dim) ||
        r1_tensor__cols(kv_b) != rkv)
        return r1_error__set(R1_ERR_INVALID_ARG, "mla decode: kv_b_proj does not match the heads");
    size_t row_bytes = r1_dtype__row_bytes(kv_b->dtype, rkv);
    if (row_bytes == 0 || (size_t)r1_tensor__rows(kv_b) > kv_b->nbytes / row_bytes ||
        (tr->has_block_scale && kv_b->scale == NULL))
        return r1_error__set(R1_ERR_INVALID_ARG, "mla decode: %s kv_b_proj rows of %lld", tr->name,
                             (long long)rkv);
    r1_mla_ctx c = {
        .k = r1_cpu__kernels_active(),
        .pool = pool,
        .p = p,
        .q = q,
        .lat = lat,
        .kv_b = kv_b->data,
        .kv_b_scale = tr->has_block_scale ? kv_b->scale : NULL,
        .scale_cols = kv_b->scale_cols,
        .row_bytes = row_bytes,
        .dtype = kv_b->dtype,
        .act_q8 = r1_cpu__act_q8_enabled() && rkv % R1_QBLOCK == 0,
        .out = out,
    };
    r1_threadpool__run(pool, p->n_heads, r1_mla_head_task, &c);
    if (atomic_load(&c.failed))
        return r1_error__set(R1_ERR_NO_MEMORY, "mla decode: cannot allocate a head's scratch");
    return R1_OK;
}
