/* kv_shift.c: context shift: drops a span of cached positions and re-rotates the rotary part of
 * the positions that move down, so no kept token is evaluated again. */
#include "kv_shift.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "error.h"

enum { R1_Q8_BLOCK = 32 };

/* cos/sin of -n_drop * inv_freq[m] per pair, in double: the stored rows were rotated by their old
 * position p, and a rotation by p - n_drop is that rotation followed by one by -n_drop (the
 * YaRN magnitude scale of MLA's k_pe was applied with the first and is kept as it is). */
static void r1_shift_table(const double *inv_freq, int64_t n_pairs, int64_t n_drop, double *cs)
{
    for (int64_t m = 0; m < n_pairs; m++) {
        const double a = -(double)n_drop * inv_freq[m];
        cs[2 * m] = cos(a);
        cs[2 * m + 1] = sin(a);
    }
}

/* Rotates the interleaved pairs (x[2m], x[2m+1]) of one rotary vector by the table's angles. */
static void r1_shift_rotate(const double *cs, int64_t n_pairs, float *x)
{
    for (int64_t m = 0; m < n_pairs; m++) {
        const double c = cs[2 * m], s = cs[2 * m + 1], a = x[2 * m], b = x[2 * m + 1];
        x[2 * m] = (float)(a * c - b * s);
        x[2 * m + 1] = (float)(a * s + b * c);
    }
}

/* Moves rows [keep + drop, n_past) of every layer of a (layers, n_ctx, row_bytes) array down by
 * drop rows. */
static void r1_shift_rows(uint8_t *base, int64_t layers, int64_t n_ctx, size_t row_bytes,
                          int64_t n_past, int64_t keep, int64_t drop)
{
    const size_t moved = (size_t)(n_past - keep - drop) * row_bytes;
    for (int64_t l = 0; l < layers; l++) {
        uint8_t *layer = base + (size_t)l * (size_t)n_ctx * row_bytes;
        memmove(layer + (size_t)keep * row_bytes, layer + (size_t)(keep + drop) * row_bytes, moved);
    }
}

/* The latent cache (MLA): each row is c_kv then k_pe; only k_pe (the last qk_rope_head_dim
 * values) was rotated. A q8_0 row (forward.c r1_latent_quantize_row) is the blocks of c_kv
 * (kv_lora_rank a multiple of 32) then those of k_pe, zero-padded to whole blocks: the k_pe
 * blocks are dequantised, rotated and requantised the way they were stored, the others are
 * moved as they are. */
static r1_status r1_shift_latent(r1_kv_cache *kv, const r1_forward *f, int64_t n_past, int64_t keep,
                                 int64_t drop)
{
    const r1_model_config *cfg = f->cfg;
    const int64_t rkv = cfg->kv_lora_rank, dr = cfg->qk_rope_head_dim, dl = rkv + dr;
    const int64_t layers = cfg->num_hidden_layers, np = f->rope.n_pairs;
    const int32_t q8 = kv->lat_dtype == R1_DTYPE_Q8_0;
    uint8_t *base = q8 ? kv->lat_q8 : (uint8_t *)kv->lat;
    if (kv->lat_dtype != R1_DTYPE_F32 && !q8)
        return r1_error__set(R1_ERR_UNSUPPORTED,
                             "context shift: a latent cache of type %d is not supported",
                             (int)kv->lat_dtype);
    const int64_t padded = rkv + (dr + R1_Q8_BLOCK - 1) / R1_Q8_BLOCK * R1_Q8_BLOCK;
    const size_t expect = !q8                      ? (size_t)dl * sizeof(float)
                          : rkv % R1_Q8_BLOCK == 0 ? r1_dtype__row_bytes(R1_DTYPE_Q8_0, padded)
                                                   : 0;
    if (base == NULL || expect == 0 || kv->lat_row_bytes != expect || np * 2 != dr)
        return r1_error__set(R1_ERR_UNSUPPORTED,
                             "context shift: latent rows of %zu bytes are not the layout it "
                             "knows (%zu)",
                             kv->lat_row_bytes, expect);
    /* The q8_0 blocks that hold k_pe: from block rkv / 32 to the row's end. */
    const int64_t b0 = rkv / R1_Q8_BLOCK, nb = (padded - rkv) / R1_Q8_BLOCK;
    float *tmp = q8 ? malloc((size_t)(nb * R1_Q8_BLOCK) * sizeof *tmp) : NULL;
    if (q8 && tmp == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "context shift: cannot allocate a row buffer");
    double cs[2 * R1_ROPE_MAX_PAIRS];
    r1_shift_table(f->rope.inv_freq, np, drop, cs);
    r1_shift_rows(base, layers, kv->n_ctx, kv->lat_row_bytes, n_past, keep, drop);
    for (int64_t l = 0; l < layers; l++) {
        uint8_t *layer = base + (size_t)l * (size_t)kv->n_ctx * kv->lat_row_bytes;
        for (int64_t p = keep; p < n_past - drop; p++) {
            uint8_t *row = layer + (size_t)p * kv->lat_row_bytes;
            if (!q8) {
                r1_shift_rotate(cs, np, (float *)(void *)row + rkv);
                continue;
            }
            r1_block_q8_0 *blocks = (r1_block_q8_0 *)(void *)row + b0;
            r1_dtype__dequantize_row(R1_DTYPE_Q8_0, blocks, NULL, tmp, nb * R1_Q8_BLOCK);
            r1_shift_rotate(cs, np, tmp);
            r1_quantize__q8_0(tmp, blocks, nb * R1_Q8_BLOCK);
        }
    }
    free(tmp);
    return R1_OK;
}

/* The grouped-query cache (dense distills): keys and values move; every kv head of a key row
 * holds head_dim / 2 interleaved rotary pairs (forward_dense.h), values none. */
static r1_status r1_shift_gqa(r1_gqa_cache *kv, const r1_forward *f, int64_t n_past, int64_t keep,
                              int64_t drop)
{
    const r1_model_config *cfg = f->cfg;
    const int64_t kvh = cfg->num_key_value_heads, hd = cfg->head_dim, n = kvh * hd;
    const int64_t layers = cfg->num_hidden_layers, np = f->dense->n_pairs;
    if (kv->dtype != R1_DTYPE_F32 && kv->dtype != R1_DTYPE_F16 && kv->dtype != R1_DTYPE_Q8_0)
        return r1_error__set(R1_ERR_UNSUPPORTED,
                             "context shift: a key/value cache of type %d is not supported",
                             (int)kv->dtype);
    if (np * 2 != hd || r1_dtype__row_bytes(kv->dtype, n) != kv->row_bytes)
        return r1_error__set(R1_ERR_UNSUPPORTED,
                             "context shift: key rows of %zu bytes are not the layout it knows",
                             kv->row_bytes);
    float *tmp = malloc((size_t)n * sizeof *tmp);
    if (tmp == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "context shift: cannot allocate a row buffer");
    double cs[2 * R1_ROPE_MAX_PAIRS];
    r1_shift_table(f->dense->inv_freq, np, drop, cs);
    r1_shift_rows(kv->k, layers, kv->n_ctx, kv->row_bytes, n_past, keep, drop);
    r1_shift_rows(kv->v, layers, kv->n_ctx, kv->row_bytes, n_past, keep, drop);
    for (int64_t l = 0; l < layers; l++) {
        uint8_t *layer = kv->k + (size_t)l * (size_t)kv->n_ctx * kv->row_bytes;
        for (int64_t p = keep; p < n_past - drop; p++) {
            uint8_t *row = layer + (size_t)p * kv->row_bytes;
            float *x = kv->dtype == R1_DTYPE_F32 ? (float *)(void *)row : tmp;
            if (kv->dtype != R1_DTYPE_F32)
                r1_dtype__dequantize_row(kv->dtype, row, NULL, x, n);
            for (int64_t h = 0; h < kvh; h++)
                r1_shift_rotate(cs, np, x + h * hd);
            if (kv->dtype == R1_DTYPE_F16) {
                uint16_t *o = (uint16_t *)(void *)row;
                for (int64_t i = 0; i < n; i++)
                    o[i] = r1_fp16__from_f32(x[i]);
            } else if (kv->dtype == R1_DTYPE_Q8_0) {
                r1_quantize__q8_0(x, (r1_block_q8_0 *)(void *)row, n);
            }
        }
    }
    free(tmp);
    return R1_OK;
}

r1_status r1_kv_cache__shift(r1_kv_cache *kv, const r1_forward *f, int64_t n_past, int64_t n_keep,
                             int64_t n_drop)
{
    if (n_keep < 0 || n_drop < 0 || n_past > kv->n_ctx || n_keep + n_drop > n_past)
        return r1_error__set(R1_ERR_OUT_OF_RANGE,
                             "context shift: cannot drop %lld positions after %lld of %lld",
                             (long long)n_drop, (long long)n_keep, (long long)n_past);
    if (n_drop == 0)
        return R1_OK;
    if (kv->gqa != NULL)
        return r1_shift_gqa(kv->gqa, f, n_past, n_keep, n_drop);
    return r1_shift_latent(kv, f, n_past, n_keep, n_drop);
}
