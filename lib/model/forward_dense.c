/* forward_dense.c: one chunk of tokens through a dense distill (Qwen2, Llama-3: docs/model.md
 * §7): the schema-bound weights, grouped-query attention over an f16/q8_0 key/value cache, SwiGLU
 * MLP, final norm and head. Products, norms, rotary, softmax and the decode attention are
 * backend ops (lib/compute/compute.c); what stays here is bookkeeping (lookups, copies, the cache).
 */
#include "forward_dense.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "dtype.h"
#include "error.h"
#include "forward.h"

/* ---- weights ---------------------------------------------------------------------------- */

/* A vector weight (norm gain, bias) as a new float32 array. */
static r1_status r1_dense_vector(const r1_tensor *t, const char *name, float **out)
{
    const int64_t n = t->shape[0];
    float *v = malloc((size_t)n * sizeof *v);
    if (v == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "cannot allocate %lld floats for '%s'", (long long)n,
                             name);
    r1_dtype__dequantize_row(t->dtype, t->data, NULL, v, n);
    *out = v;
    return R1_OK;
}

/* One schema entry at layer (or global): found, checked, and placed into *w or *vec. */
static r1_status r1_dense_bind_one(const r1_model_config *cfg, const r1_container *c,
                                   const r1_schema_tensor *e, int64_t layer, r1_tensor *w,
                                   float **vec, int32_t *absent)
{
    char name[256];
    r1_model_schema__name(e, layer, name, sizeof name);
    *absent = 0;
    r1_status st = r1_container__tensor(c, name, w);
    if (st == R1_ERR_NOT_FOUND && !r1_model_schema__required(cfg, e)) {
        *absent = 1;
        memset(w, 0, sizeof *w);
        return R1_OK;
    }
    if (st == R1_OK)
        st = r1_model_schema__check(cfg, e, name, w->dtype, w->n_dims, w->shape);
    if (st == R1_OK && e->layout == R1_SLAYOUT_F32_COPY)
        st = r1_dense_vector(w, name, vec);
    return st;
}

double r1_forward_dense__inv_freq(const r1_model_config *cfg, int64_t m)
{
    const double hd = (double)cfg->head_dim;
    const double theta = pow(cfg->rope_theta, -2.0 * (double)m / hd);
    if (cfg->rope_scaling != R1_ROPE_LLAMA3)
        return theta;
    /* docs/model.md §7.3: wavelengths beyond the original context are interpolated by the
     * factor, short ones kept, and those between blended linearly in L / wavelength. */
    const double L = (double)cfg->rope_original_max_position_embeddings;
    const double lo = cfg->rope_low_freq_factor, hi = cfg->rope_high_freq_factor;
    const double f = cfg->rope_factor, wavelen = 2.0 * M_PI / theta;
    if (wavelen < L / hi)
        return theta;
    if (wavelen > L / lo)
        return theta / f;
    const double s = (L / wavelen - lo) / (hi - lo);
    return (1.0 - s) * theta / f + s * theta;
}

r1_status r1_forward_dense__bind(r1_forward *f, const r1_container *c, r1_compute *compute)
{
    const r1_model_config *cfg = r1_container__config(c);
    const r1_schema *schema = r1_model_schema__get(cfg);
    memset(f, 0, sizeof *f);
    f->cfg = cfg;
    f->container = c;
    f->compute = compute;
    if (schema == NULL)
        return r1_error__set(R1_ERR_UNSUPPORTED, "no schema for architecture '%s'",
                             cfg->architecture);
    r1_dense *d = calloc(1, sizeof *d);
    if (d == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "cannot allocate the dense model");
    f->dense = d;
    r1_status st = R1_OK;
    if ((d->layers = calloc((size_t)cfg->num_hidden_layers, sizeof *d->layers)) == NULL)
        st = r1_error__set(R1_ERR_NO_MEMORY, "cannot allocate the layer table");
    int32_t head_absent = 0;
    for (size_t i = 0; i < schema->n_tensors && st == R1_OK; i++) {
        const r1_schema_tensor *e = &schema->tensors[i];
        int32_t absent;
        if (!e->per_layer) {
            r1_tensor *w = e->slot == R1_SLOT_EMBED  ? &d->embed
                           : e->slot == R1_SLOT_HEAD ? &d->head
                                                     : &(r1_tensor){0};
            st = r1_dense_bind_one(cfg, c, e, -1, w, &d->final_norm, &absent);
            if (e->slot == R1_SLOT_HEAD)
                head_absent = absent;
            continue;
        }
        for (int64_t l = 0; l < cfg->num_hidden_layers && st == R1_OK; l++)
            st = r1_dense_bind_one(cfg, c, e, l, &d->layers[l].w[e->slot],
                                   &d->layers[l].vec[e->slot], &absent);
    }
    /* A tied model's head is its embedding (docs/model.md §1.3: honoured generically). */
    if (st == R1_OK && (head_absent || cfg->tie_word_embeddings))
        d->head = d->embed;
    if (st == R1_OK) {
        d->n_pairs = cfg->head_dim / 2;
        d->softmax_scale = 1.0 / sqrt((double)cfg->head_dim);
        for (int64_t m = 0; m < d->n_pairs; m++)
            d->inv_freq[m] = r1_forward_dense__inv_freq(cfg, m);
        f->embed = d->embed;
        f->head = d->head;
    }
    if (st != R1_OK)
        r1_forward_dense__unbind(f);
    return st;
}

void r1_forward_dense__unbind(r1_forward *f)
{
    r1_dense *d = f->dense;
    if (d != NULL) {
        for (int64_t l = 0; d->layers != NULL && l < f->cfg->num_hidden_layers; l++)
            for (int32_t k = 0; k < R1_SLOT_LAYER_COUNT; k++)
                free(d->layers[l].vec[k]);
        free(d->layers);
        free(d->final_norm);
        free(d);
    }
    memset(f, 0, sizeof *f);
}

/* ---- cache and scratch -------------------------------------------------------------------- */

int32_t r1_gqa_cache__valid_dtype(int32_t dtype)
{
    return dtype == R1_DTYPE_F16 || dtype == R1_DTYPE_Q8_0 || dtype == R1_DTYPE_F32;
}

/* The type a cache of cfg takes when asked for dtype (-1: the default, f16): q8_0 blocks run
 * along each head's dims, so a head must be whole blocks (else f16). */
static int32_t r1_dense_kv_type_for(const r1_model_config *cfg, int32_t dtype)
{
    const int32_t dt = dtype < 0 ? R1_DTYPE_F16 : dtype;
    return dt == R1_DTYPE_Q8_0 && cfg->head_dim % R1_QBLOCK != 0 ? R1_DTYPE_F16 : dt;
}

uint64_t r1_gqa_cache__position_bytes(const r1_model_config *cfg, int32_t dtype)
{
    const size_t row = r1_dtype__row_bytes(r1_dense_kv_type_for(cfg, dtype),
                                           cfg->num_key_value_heads * cfg->head_dim);
    return 2 * (uint64_t)cfg->num_hidden_layers * (uint64_t)row;
}

r1_status r1_gqa_cache__create(r1_gqa_cache **out, const r1_model_config *cfg, int64_t n_ctx,
                               int32_t dtype)
{
    if (dtype >= 0 && !r1_gqa_cache__valid_dtype(dtype))
        return r1_error__set(R1_ERR_UNSUPPORTED,
                             "a key/value cache of type %s is not supported (f16, q8_0, f32)",
                             r1_dtype__traits(dtype) ? r1_dtype__traits(dtype)->name : "?");
    const int32_t use = r1_dense_kv_type_for(cfg, dtype);
    r1_gqa_cache *kv = calloc(1, sizeof *kv);
    if (kv == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "cannot allocate a key/value cache");
    kv->dtype = use;
    kv->n_ctx = n_ctx;
    kv->row_bytes = r1_dtype__row_bytes(use, cfg->num_key_value_heads * cfg->head_dim);
    const size_t bytes = (size_t)cfg->num_hidden_layers * (size_t)n_ctx * kv->row_bytes;
    kv->k = malloc(bytes);
    kv->v = malloc(bytes);
    if (kv->k == NULL || kv->v == NULL) {
        r1_gqa_cache__destroy(kv);
        return r1_error__set(R1_ERR_NO_MEMORY,
                             "cannot allocate a key/value cache of %lld positions",
                             (long long)n_ctx);
    }
    *out = kv;
    return R1_OK;
}

void r1_gqa_cache__destroy(r1_gqa_cache *kv)
{
    if (kv == NULL)
        return;
    free(kv->k);
    free(kv->v);
    free(kv);
}

/* Prefill attention takes queries in blocks of at most this many (head, token) rows, so the
 * score matrix of a block stays (R1_GQA_BLOCK_ROWS, n_ctx). */
enum { R1_GQA_BLOCK_ROWS = 128 };

struct r1_dense_scratch {
    int64_t max_tokens;
    float *h, *a, *q, *k, *v, *o, *attn, *b, *ffn, *g, *u, *cs, *perm;
    float *kf, *vt, *vf, *qb, *scores, *ob; /* prefill attention */
};

r1_status r1_dense_scratch__create(r1_dense_scratch **out, const r1_model_config *cfg, int64_t T,
                                   int64_t n_ctx)
{
    const int64_t D = cfg->hidden_size, hd = cfg->head_dim;
    const int64_t QD = cfg->num_attention_heads * hd, KV = cfg->num_key_value_heads * hd;
    const int64_t I = cfg->intermediate_size;
    r1_dense_scratch *s = calloc(1, sizeof *s);
    if (s == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "cannot allocate forward scratch");
    s->max_tokens = T;
    struct {
        float **p;
        int64_t n;
    } bufs[] = {
        {&s->h, T * D},
        {&s->a, T * D},
        {&s->q, T * QD},
        {&s->k, T * KV},
        {&s->v, T * KV},
        {&s->o, T * QD},
        {&s->attn, T * D},
        {&s->b, T * D},
        {&s->ffn, T * D},
        {&s->g, T * I},
        {&s->u, T * I},
        {&s->cs, T * hd},
        {&s->perm, hd},
        {&s->kf, n_ctx * hd},
        {&s->vf, n_ctx * hd},
        {&s->vt, n_ctx * hd},
        {&s->qb, R1_GQA_BLOCK_ROWS * hd},
        {&s->scores, R1_GQA_BLOCK_ROWS * n_ctx},
        {&s->ob, R1_GQA_BLOCK_ROWS * hd},
    };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if ((*bufs[i].p = malloc((size_t)(bufs[i].n > 0 ? bufs[i].n : 1) * sizeof(float))) ==
            NULL) {
            r1_dense_scratch__destroy(s);
            return r1_error__set(R1_ERR_NO_MEMORY,
                                 "cannot allocate forward scratch for %lld "
                                 "tokens",
                                 (long long)T);
        }
    *out = s;
    return R1_OK;
}

void r1_dense_scratch__destroy(r1_dense_scratch *s)
{
    if (s == NULL)
        return;
    float *all[] = {s->h, s->a,  s->q,    s->k,  s->v,  s->o,  s->attn, s->b,      s->ffn, s->g,
                    s->u, s->cs, s->perm, s->kf, s->vf, s->vt, s->qb,   s->scores, s->ob};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
    free(s);
}

/* ---- small steps -------------------------------------------------------------------------- */

/* A weight product that counts the weight's bytes as read. */
static r1_status r1_dense_mm(r1_forward *f, const r1_tensor *w, const float *x, int64_t n, float *y)
{
    if (f->prof != NULL)
        f->prof->weight_bytes += w->nbytes;
    return r1_compute__matmul(f->compute, w, x, n, y);
}

static r1_status r1_dense_rmsnorm(r1_forward *f, const float *x, const float *g, int64_t n_rows,
                                  float *y)
{
    const r1_op_rows_params p = {
        .n_rows = n_rows, .n = f->cfg->hidden_size, .eps = f->cfg->rms_norm_eps};
    return r1_compute__rmsnorm(f->compute, &p, x, g, y);
}

/* x (n_rows, n) += y (n_rows, n): the residual stream. */
static r1_status r1_dense_accumulate(r1_forward *f, const float *y, int64_t n_rows, float *x)
{
    const r1_op_rows_params p = {.n_rows = n_rows, .n = f->cfg->hidden_size};
    return r1_compute__moe_combine(f->compute, &p, y, NULL, NULL, n_rows, x);
}

/* y = x W^T (+ bias): the bias, when the architecture has one, added to every row. */
static r1_status r1_dense_proj(r1_forward *f, const r1_tensor *w, const float *bias, const float *x,
                               int64_t T, float *y)
{
    r1_status st = r1_dense_mm(f, w, x, T, y);
    if (st != R1_OK || bias == NULL)
        return st;
    const int64_t n = r1_tensor__rows(w);
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < n; i++)
            y[t * n + i] += bias[i];
    return R1_OK;
}

/* Each head of n_rows rows of n_heads heads from the checkpoint's half-split order (x[m] pairs
 * with x[m + hd/2]: docs/model.md §7.2) into the interleaved order the rope op rotates; the same
 * permutation of queries and keys leaves every score unchanged. */
static void r1_dense_interleave(float *x, int64_t n_rows, int64_t n_heads, int64_t hd, float *tmp)
{
    const int64_t half = hd / 2;
    for (int64_t r = 0; r < n_rows * n_heads; r++) {
        float *v = x + r * hd;
        for (int64_t m = 0; m < half; m++) {
            tmp[2 * m] = v[m];
            tmp[2 * m + 1] = v[m + half];
        }
        memcpy(v, tmp, (size_t)hd * sizeof(float));
    }
}

static r1_dense_kv_hook r1_dense_hook;
static void *r1_dense_hook_data;

void r1_forward_dense__set_kv_hook(r1_dense_kv_hook fn, void *user_data)
{
    r1_dense_hook = fn;
    r1_dense_hook_data = user_data;
}

/* n values into a cache row segment of dtype (whole q8_0 blocks: n % 32 == 0 there). */
static void r1_dense_store(int32_t dtype, const float *x, int64_t n, uint8_t *dst)
{
    if (dtype == R1_DTYPE_F32) {
        memcpy(dst, x, (size_t)n * sizeof(float));
    } else if (dtype == R1_DTYPE_F16) {
        uint16_t *h = (uint16_t *)(void *)dst;
        for (int64_t i = 0; i < n; i++)
            h[i] = r1_fp16__from_f32(x[i]);
    } else {
        r1_quantize__q8_0(x, (r1_block_q8_0 *)(void *)dst, n);
    }
}

/* ---- attention ---------------------------------------------------------------------------- */

/* A prompt chunk's attention through products: per kv head, its cached keys and values as float32
 * matrices (dequantised once for the group), then per block of (head, token) query rows one
 * product for the scores, a causal softmax and one product for the values. */
static r1_status r1_dense_prefill_attention(r1_forward *f, r1_dense_scratch *s, const uint8_t *kl,
                                            const uint8_t *vl, size_t row_bytes, int32_t dtype,
                                            int64_t T, int64_t pos0)
{
    const r1_model_config *cfg = f->cfg;
    const int64_t H = cfg->num_attention_heads, KVH = cfg->num_key_value_heads;
    const int64_t hd = cfg->head_dim, G = H / KVH, n_all = pos0 + T;
    const size_t head_bytes = r1_dtype__row_bytes(dtype, hd);
    /* Rows of a block are (head j, token t) for the group's heads and a run of tokens. */
    int64_t nt = R1_GQA_BLOCK_ROWS / G;
    if (nt < 1)
        nt = 1;
    const int64_t heads_per_block = G <= R1_GQA_BLOCK_ROWS ? G : R1_GQA_BLOCK_ROWS;
    r1_status st;
    for (int64_t g = 0; g < KVH; g++) {
        for (int64_t n = 0; n < n_all; n++) {
            r1_dtype__dequantize_row(dtype, kl + (size_t)n * row_bytes + (size_t)g * head_bytes,
                                     NULL, s->kf + n * hd, hd);
            r1_dtype__dequantize_row(dtype, vl + (size_t)n * row_bytes + (size_t)g * head_bytes,
                                     NULL, s->vf + n * hd, hd);
        }
        for (int64_t t0 = 0; t0 < T; t0 += nt) {
            const int64_t bt = T - t0 < nt ? T - t0 : nt, n_keys = pos0 + t0 + bt;
            const r1_tensor keys = r1_tensor__f32_matrix(s->kf, n_keys, hd);
            r1_tensor__transpose_f32(s->vf, n_keys, hd, hd, s->vt);
            const r1_tensor values_t = r1_tensor__f32_matrix(s->vt, hd, n_keys);
            for (int64_t j0 = 0; j0 < G; j0 += heads_per_block) {
                const int64_t nj = G - j0 < heads_per_block ? G - j0 : heads_per_block;
                const int64_t rows = nj * bt;
                for (int64_t j = 0; j < nj; j++)
                    for (int64_t t = 0; t < bt; t++)
                        memcpy(s->qb + (j * bt + t) * hd,
                               s->q + (t0 + t) * H * hd + (g * G + j0 + j) * hd,
                               (size_t)hd * sizeof(float));
                if ((st = r1_compute__matmul(f->compute, &keys, s->qb, rows, s->scores)) != R1_OK)
                    return st;
                const r1_op_softmax_params sp = {.n_rows = rows,
                                                 .n = n_keys,
                                                 .causal_base = pos0 + t0,
                                                 .causal_period = bt,
                                                 .scale = f->dense->softmax_scale};
                if ((st = r1_compute__softmax(f->compute, &sp, s->scores)) != R1_OK)
                    return st;
                if ((st = r1_compute__matmul(f->compute, &values_t, s->scores, rows, s->ob)) !=
                    R1_OK)
                    return st;
                for (int64_t j = 0; j < nj; j++)
                    for (int64_t t = 0; t < bt; t++)
                        memcpy(s->o + (t0 + t) * H * hd + (g * G + j0 + j) * hd,
                               s->ob + (j * bt + t) * hd, (size_t)hd * sizeof(float));
            }
        }
    }
    return R1_OK;
}

/* The attention's input side for T rows, of however many sequences (docs/model.md §7.1): the
 * queries, keys and values of every row, rotated by each row's own angles (s->cs). */
static r1_status r1_dense_attention_in(r1_forward *f, r1_dense_scratch *s, int64_t l, int64_t T)
{
    const r1_model_config *cfg = f->cfg;
    const r1_dense_layer *w = &f->dense->layers[l];
    const int64_t H = cfg->num_attention_heads, KVH = cfg->num_key_value_heads;
    const int64_t hd = cfg->head_dim, KV = KVH * hd;
    r1_status st = r1_dense_rmsnorm(f, s->h, w->vec[R1_SLOT_ATTN_NORM], T, s->a);
    if (st == R1_OK)
        st = r1_dense_proj(f, &w->w[R1_SLOT_Q], w->vec[R1_SLOT_Q_BIAS], s->a, T, s->q);
    if (st == R1_OK)
        st = r1_dense_proj(f, &w->w[R1_SLOT_K], w->vec[R1_SLOT_K_BIAS], s->a, T, s->k);
    if (st == R1_OK)
        st = r1_dense_proj(f, &w->w[R1_SLOT_V], w->vec[R1_SLOT_V_BIAS], s->a, T, s->v);
    if (st != R1_OK)
        return st;
    r1_dense_interleave(s->q, T, H, hd, s->perm);
    r1_dense_interleave(s->k, T, KVH, hd, s->perm);
    const r1_op_rope_params qp = {
        .n_rows = T, .n_vecs = H, .row_stride = H * hd, .vec_stride = hd, .n_pairs = hd / 2};
    const r1_op_rope_params kp = {
        .n_rows = T, .n_vecs = KVH, .row_stride = KV, .vec_stride = hd, .n_pairs = hd / 2};
    if ((st = r1_compute__rope(f->compute, &qp, s->cs, s->q)) != R1_OK)
        return st;
    return r1_compute__rope(f->compute, &kp, s->cs, s->k);
}

/* The attention of T rows of one sequence at pos0 (their queries, keys and values from
 * r1_dense_attention_in) over its cache, into s->o; the caller applies the output projection to
 * every sequence's rows at once. */
static r1_status r1_dense_attention(r1_forward *f, r1_dense_scratch *s, r1_gqa_cache *kv, int64_t l,
                                    int64_t T, int64_t pos0)
{
    const r1_model_config *cfg = f->cfg;
    const int64_t H = cfg->num_attention_heads, KVH = cfg->num_key_value_heads;
    const int64_t hd = cfg->head_dim, KV = KVH * hd;
    r1_status st;

    /* The new rows into the cache, in its type; attention then reads them from there, so a
     * token attends to its own key exactly as later tokens will. */
    const size_t layer_bytes = (size_t)kv->n_ctx * kv->row_bytes;
    uint8_t *kl = kv->k + (size_t)l * layer_bytes, *vl = kv->v + (size_t)l * layer_bytes;
    for (int64_t t = 0; t < T; t++) {
        uint8_t *krow = kl + (size_t)(pos0 + t) * kv->row_bytes;
        uint8_t *vrow = vl + (size_t)(pos0 + t) * kv->row_bytes;
        r1_dense_store(kv->dtype, s->k + t * KV, KV, krow);
        r1_dense_store(kv->dtype, s->v + t * KV, KV, vrow);
        if (r1_dense_hook != NULL) {
            r1_dense_hook(l, 0, pos0 + t, kv->dtype, s->k + t * KV, KV, krow, r1_dense_hook_data);
            r1_dense_hook(l, 1, pos0 + t, kv->dtype, s->v + t * KV, KV, vrow, r1_dense_hook_data);
        }
    }
    if (T == 1) {
        const r1_op_gqa_decode_params p = {.n_heads = H,
                                           .n_kv_heads = KVH,
                                           .head_dim = hd,
                                           .n_keys = pos0 + 1,
                                           .kv_dtype = kv->dtype,
                                           .softmax_scale = f->dense->softmax_scale};
        st = r1_compute__gqa_decode(f->compute, &p, s->q, kl, vl, s->o);
    } else {
        st = r1_dense_prefill_attention(f, s, kl, vl, kv->row_bytes, kv->dtype, T, pos0);
    }
    return st;
}

/* y = (silu(x W_gate^T) * (x W_up^T)) W_down^T (docs/model.md §7.1). */
static r1_status r1_dense_mlp(r1_forward *f, r1_dense_scratch *s, const r1_dense_layer *w,
                              int64_t T)
{
    r1_status st = r1_dense_mm(f, &w->w[R1_SLOT_GATE], s->b, T, s->g);
    if (st == R1_OK)
        st = r1_dense_mm(f, &w->w[R1_SLOT_UP], s->b, T, s->u);
    const r1_op_rows_params p = {.n_rows = T, .n = f->cfg->intermediate_size};
    if (st == R1_OK)
        st = r1_compute__swiglu(f->compute, &p, s->g, s->u, s->g);
    return st == R1_OK ? r1_dense_mm(f, &w->w[R1_SLOT_DOWN], s->g, T, s->ffn) : st;
}

/* ---- the whole model ---------------------------------------------------------------------- */

r1_status r1_forward_dense__run(r1_forward *f, r1_dense_scratch *s, r1_gqa_cache *kv,
                                const int32_t *ids, int64_t T, int64_t pos0, float *logits,
                                int32_t all_logits)
{
    r1_kv_cache cache = {.n_ctx = kv != NULL ? kv->n_ctx : 0, .gqa = kv};
    const r1_forward_seq seq = {.kv = &cache, .pos0 = pos0, .n_rows = T, .all_logits = all_logits};
    return r1_forward_dense__run_batch(f, s, cache.n_ctx, &seq, 1, ids, logits);
}

/* Moves the per-row buffers one sequence's attention reads and writes (queries, keys, values,
 * output) by dr rows, so that row 0 is the sequence's first (and back with -dr). */
static void r1_dense_shift(r1_dense_scratch *s, const r1_model_config *cfg, int64_t dr)
{
    const int64_t QD = cfg->num_attention_heads * cfg->head_dim;
    const int64_t KV = cfg->num_key_value_heads * cfg->head_dim;
    s->q += dr * QD;
    s->o += dr * QD;
    s->k += dr * KV;
    s->v += dr * KV;
}

/* The final norm and head on the rows that get logits (all rows of a sequence with all_logits,
 * else its last), gathered into s->b when they are not one run of rows. */
static r1_status r1_dense_head(r1_forward *f, r1_dense_scratch *s, const r1_forward_seq *seqs,
                               int64_t n_seqs, int64_t T, float *logits)
{
    const int64_t D = f->cfg->hidden_size;
    const float *x;
    int64_t n_out = 0;
    if (n_seqs == 1) {
        const int64_t first = seqs[0].all_logits ? 0 : T - 1;
        x = s->h + first * D;
        n_out = T - first;
    } else {
        for (int64_t i = 0, r0 = 0; i < n_seqs; r0 += seqs[i].n_rows, i++) {
            const int64_t n = seqs[i].n_rows, first = seqs[i].all_logits ? r0 : r0 + n - 1;
            memcpy(s->b + n_out * D, s->h + first * D, (size_t)((r0 + n - first) * D) * 4);
            n_out += r0 + n - first;
        }
        x = s->b;
    }
    r1_status st = r1_dense_rmsnorm(f, x, f->dense->final_norm, n_out, s->a);
    if (st != R1_OK || n_seqs == 1 || r1_forward__rows_alike(&f->dense->head))
        return st == R1_OK ? r1_dense_mm(f, &f->dense->head, s->a, n_out, logits) : st;
    /* A float head (a tied embedding) rounds a row by the number of rows of its product (BLAS
     * or the dot kernel): one product per sequence, so each row's is that of its sequence. */
    const int64_t V = f->cfg->vocab_size;
    for (int64_t i = 0, r = 0; i < n_seqs && st == R1_OK; i++) {
        const int64_t n = seqs[i].all_logits ? seqs[i].n_rows : 1;
        st = r1_dense_mm(f, &f->dense->head, s->a + r * D, n, logits + r * V);
        r += n;
    }
    return st;
}

r1_status r1_forward_dense__run_batch(r1_forward *f, r1_dense_scratch *s, int64_t n_ctx,
                                      const r1_forward_seq *seqs, int64_t n_seqs,
                                      const int32_t *ids, float *logits)
{
    const r1_model_config *cfg = f->cfg;
    const r1_dense *d = f->dense;
    const int64_t D = cfg->hidden_size, np = d->n_pairs;
    int64_t T = 0;
    for (int64_t i = 0; i < n_seqs && seqs != NULL; i++) {
        const r1_forward_seq *q = &seqs[i];
        if (q->kv == NULL || q->kv->gqa == NULL || q->n_rows <= 0 || q->pos0 < 0 ||
            q->pos0 + q->n_rows > q->kv->gqa->n_ctx || q->kv->gqa->n_ctx > n_ctx)
            return r1_error__set(R1_ERR_INTERNAL,
                                 "forward chunk of %lld tokens at %lld does not fit",
                                 (long long)q->n_rows, (long long)q->pos0);
        T += q->n_rows;
    }
    if (s == NULL || seqs == NULL || n_seqs <= 0 || T > s->max_tokens)
        return r1_error__set(R1_ERR_INTERNAL, "forward pass of %lld rows does not fit",
                             (long long)T);
    const uint64_t start = f->prof != NULL ? r1_clock__now_ns() : 0;
    uint64_t mark = start;
    const size_t embed_row = r1_dtype__row_bytes(d->embed.dtype, D);
    for (int64_t i = 0, r = 0; i < n_seqs; i++)
        for (int64_t t = 0; t < seqs[i].n_rows; t++, r++) {
            r1_dtype__dequantize_row(d->embed.dtype,
                                     (const uint8_t *)d->embed.data + (size_t)ids[r] * embed_row,
                                     NULL, s->h + r * D, D);
            /* Angles in double, rounded once (docs/model.md §3.5). */
            for (int64_t m = 0; m < np; m++) {
                const double a = (double)(seqs[i].pos0 + t) * d->inv_freq[m];
                s->cs[r * 2 * np + 2 * m] = (float)cos(a);
                s->cs[r * 2 * np + 2 * m + 1] = (float)sin(a);
            }
        }
    for (int64_t l = 0; l < cfg->num_hidden_layers; l++) {
        const r1_dense_layer *w = &d->layers[l];
        r1_forward__lap(f, R1_PROFILE_OTHER, &mark);
        r1_status st = r1_dense_attention_in(f, s, l, T);
        for (int64_t i = 0, r0 = 0; i < n_seqs && st == R1_OK; r0 += seqs[i].n_rows, i++) {
            r1_dense_shift(s, cfg, r0);
            st = r1_dense_attention(f, s, seqs[i].kv->gqa, l, seqs[i].n_rows, seqs[i].pos0);
            r1_dense_shift(s, cfg, -r0);
        }
        if (st == R1_OK)
            st = r1_dense_mm(f, &w->w[R1_SLOT_O], s->o, T, s->attn);
        r1_forward__lap(f, R1_PROFILE_ATTENTION, &mark);
        if (st == R1_OK)
            st = r1_dense_accumulate(f, s->attn, T, s->h);
        if (st == R1_OK)
            st = r1_dense_rmsnorm(f, s->h, w->vec[R1_SLOT_FFN_NORM], T, s->b);
        if (st == R1_OK)
            st = r1_dense_mlp(f, s, w, T);
        r1_forward__lap(f, R1_PROFILE_DENSE_MLP, &mark);
        if (st == R1_OK)
            st = r1_dense_accumulate(f, s->ffn, T, s->h);
        if (st != R1_OK)
            return st;
    }
    r1_forward__lap(f, R1_PROFILE_OTHER, &mark);
    r1_status st = r1_dense_head(f, s, seqs, n_seqs, T, logits);
    if (f->prof != NULL) {
        r1_forward__lap(f, R1_PROFILE_HEAD, &mark);
        f->prof->total_ns += mark - start;
        f->prof->n_tokens += (uint64_t)T;
        f->prof->n_chunks++;
        f->prof->weight_bytes += (uint64_t)T * embed_row;
        f->prof->embed_bytes += (uint64_t)T * embed_row;
        f->prof->lapped_bytes = f->prof->weight_bytes; /* no class's */
    }
    return st;
}
