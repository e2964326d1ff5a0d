/* forward.c: one chunk of tokens through every layer: MLA over the latent cache, dense MLP or
 * MoE, final norm and head (docs/model.md §2). Every step that computes is a backend op
 * (lib/compute/compute.c: products, norms, rotary, attention, routing, combine); what stays here is
 * bookkeeping (the embedding lookup, gathering an expert's tokens, copies into the latent cache).
 */
#include "forward.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "dtype.h"
#include "error.h"
#include "expert_cache.h"
#include "expert_policy.h"
#include "model_schema.h"
#include "router.h"

/* ---- weights ---------------------------------------------------------------------------- */

static void r1_weight_row(const r1_tensor *w, int64_t r, float *out);
static r1_status r1_mm(r1_forward *f, const r1_tensor *w, const float *x, int64_t n, float *y);

/* A vector weight (norm gain, routing bias), checked by the schema, as a new float32 array. */
static r1_status r1_vector_f32(const r1_tensor *t, const char *name, float **out)
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

/* Schema entry e at layer (ignored for a global one), looked up and checked against the schema
 * (model_schema.h): a matrix as a view in *w, a vector (layout R1_SLAYOUT_F32_COPY) copied to
 * float32 into *vec. R1_ERR_NOT_FOUND naming a missing tensor, R1_ERR_FORMAT naming one whose
 * shape or type the schema does not allow. */
static r1_status r1_bind_tensor(const r1_model_config *cfg, const r1_container *c,
                                const r1_schema_tensor *e, int64_t layer, r1_tensor *w, float **vec)
{
    char name[256];
    r1_model_schema__name(e, layer, name, sizeof name);
    r1_tensor t;
    r1_status st = r1_container__tensor(c, name, &t);
    if (st == R1_OK)
        st = r1_model_schema__check(cfg, e, name, t.dtype, t.n_dims, t.shape);
    if (st != R1_OK)
        return st;
    if ((e->layout == R1_SLAYOUT_F32_COPY) != (vec != NULL))
        return r1_error__set(R1_ERR_UNSUPPORTED, "tensor '%s' has no place in the %s layer block",
                             name, cfg->architecture);
    if (vec != NULL)
        return r1_vector_f32(&t, name, vec);
    *w = t;
    return R1_OK;
}

/* Where the MLA + MoE layer block reads slot (model_schema.h R1_MSLOT_*) from: a matrix (*t) or
 * a float32 vector (*vec); both NULL for a slot it does not read. */
static void r1_mla_slot(r1_layer_weights *w, int32_t slot, r1_tensor **t, float ***vec)
{
    *t = NULL;
    *vec = NULL;
    switch (slot) {
    case R1_MSLOT_ATTN_NORM: *vec = &w->attn_norm; break;
    case R1_MSLOT_Q_A: *t = &w->q_a; break;
    case R1_MSLOT_Q_A_NORM: *vec = &w->q_a_norm; break;
    case R1_MSLOT_Q_B: *t = &w->q_b; break;
    case R1_MSLOT_Q: *t = &w->q; break;
    case R1_MSLOT_KV_A: *t = &w->kv_a; break;
    case R1_MSLOT_KV_A_NORM: *vec = &w->kv_a_norm; break;
    case R1_MSLOT_KV_B: *t = &w->kv_b; break;
    case R1_MSLOT_O: *t = &w->o; break;
    case R1_MSLOT_FFN_NORM: *vec = &w->ffn_norm; break;
    case R1_MSLOT_GATE: *t = &w->gate; break;
    case R1_MSLOT_UP: *t = &w->up; break;
    case R1_MSLOT_DOWN: *t = &w->down; break;
    case R1_MSLOT_ROUTER: *t = &w->router; break;
    case R1_MSLOT_ROUTER_BIAS: *vec = &w->router_bias; break;
    case R1_MSLOT_SH_GATE: *t = &w->sh_gate; break;
    case R1_MSLOT_SH_UP: *t = &w->sh_up; break;
    case R1_MSLOT_SH_DOWN: *t = &w->sh_down; break;
    default: break;
    }
}

/* Layer l's weights: every per-layer tensor of the schema that belongs at l (its when column:
 * q LoRA or not, dense or MoE FFN, shared experts, router bias) into its slot. */
static r1_status r1_bind_layer(const r1_model_config *cfg, const r1_container *c,
                               const r1_schema *schema, int64_t l, r1_layer_weights *w)
{
    w->is_moe = r1_model_config__layer_is_moe(cfg, l);
    r1_status st = R1_OK;
    for (size_t i = 0; i < schema->n_tensors && st == R1_OK; i++) {
        const r1_schema_tensor *e = &schema->tensors[i];
        r1_tensor *t;
        float **vec;
        if (!e->per_layer || e->slot == R1_MSLOT_NONE || !r1_model_schema__at(cfg, e, l))
            continue;
        r1_mla_slot(w, e->slot, &t, &vec);
        st = r1_bind_tensor(cfg, c, e, l, t, vec);
    }
    return st;
}

/* The embedding, the final norm and the head, by the schema's global slots (a tied model's head
 * is its embedding). */
static r1_status r1_bind_globals(r1_forward *f, const r1_container *c, const r1_schema *schema)
{
    const r1_model_config *cfg = f->cfg;
    const r1_schema_tensor *embed = r1_model_schema__global(schema, R1_SLOT_EMBED);
    const r1_schema_tensor *norm = r1_model_schema__global(schema, R1_SLOT_FINAL_NORM);
    const r1_schema_tensor *head = r1_model_schema__global(schema, R1_SLOT_HEAD);
    if (embed == NULL || norm == NULL || head == NULL)
        return r1_error__set(R1_ERR_UNSUPPORTED, "the %s schema lacks the embedding, norm or head",
                             cfg->architecture);
    r1_status st = r1_bind_tensor(cfg, c, embed, -1, &f->embed, NULL);
    if (st == R1_OK && r1_dtype__traits(f->embed.dtype)->has_block_scale)
        st = r1_error__set(R1_ERR_UNSUPPORTED, "block-scaled embeddings are not supported");
    if (st == R1_OK)
        st = r1_bind_tensor(cfg, c, norm, -1, NULL, &f->final_norm);
    if (st == R1_OK)
        st = r1_bind_tensor(cfg, c, cfg->tie_word_embeddings ? embed : head, -1, &f->head, NULL);
    return st;
}

/* Above this many bytes for all layers together, W_UK is not copied (DeepSeek-V3 would need
 * 2 GB per session); attention then dequantises kv_b rows per chunk. */
static uint64_t r1_uk_t_max_bytes = 256u << 20;

void r1_forward__set_uk_copy_limit(uint64_t bytes)
{
    r1_uk_t_max_bytes = bytes;
}

/* out (H, kv_lora_rank, d_nope) = every head's W_UK (the first d_nope rows of its block of
 * kv_b) transposed, in float32; row is scratch of kv_lora_rank floats. */
static void r1_fill_uk_t(const r1_model_config *cfg, const r1_tensor *kv_b, float *row, float *out)
{
    const int64_t H = cfg->num_attention_heads, dn = cfg->qk_nope_head_dim;
    const int64_t dv = cfg->v_head_dim, rkv = cfg->kv_lora_rank;
    for (int64_t h = 0; h < H; h++)
        for (int64_t r = 0; r < dn; r++) {
            r1_weight_row(kv_b, h * (dn + dv) + r, row);
            for (int64_t k = 0; k < rkv; k++)
                out[(h * rkv + k) * dn + r] = row[k];
        }
}

static r1_status r1_build_uk_t(const r1_model_config *cfg, r1_layer_weights *w)
{
    const int64_t H = cfg->num_attention_heads, dn = cfg->qk_nope_head_dim;
    const int64_t rkv = cfg->kv_lora_rank;
    float *row = malloc((size_t)rkv * sizeof *row);
    w->uk_t = malloc((size_t)(H * rkv * dn) * sizeof *w->uk_t);
    if (row == NULL || w->uk_t == NULL) {
        free(row);
        return r1_error__set(R1_ERR_NO_MEMORY, "cannot allocate the transposed W_UK");
    }
    r1_fill_uk_t(cfg, &w->kv_b, row, w->uk_t);
    free(row);
    return R1_OK;
}

/* The router lookahead's gate (r1_prefetch_gate): windows of passes and its phases. */
enum { R1_PF_WINDOW = 16, R1_PF_EXPLOIT = 8 };
enum { R1_PF_MEASURING = 0, R1_PF_EXPLOITING = 1 };

r1_status r1_forward__bind(r1_forward *f, const r1_container *c, r1_expert_cache *experts,
                           r1_compute *compute)
{
    memset(f, 0, sizeof *f);
    const r1_model_config *cfg = r1_container__config(c);
    if (r1_model_config__is_dense(cfg))
        return r1_forward_dense__bind(f, c, compute);
    f->cfg = cfg;
    f->container = c;
    f->experts = experts;
    f->compute = compute;
    f->prefetch = 1;
    if (experts != NULL) {
        r1_expert_cache_counters k;
        r1_expert_cache__counters(experts, &k);
        f->experts_bounded = k.budget_bytes != 0;
        for (int i = 0; i < 2; i++) { /* the lookahead gates' first windows start now */
            f->pf[i].phase = R1_PF_MEASURING;
            f->pf[i].left = 2 * R1_PF_WINDOW;
        }
    }
    const r1_schema *schema = r1_model_schema__get(cfg);
    r1_status st = r1_rope__init(&f->rope, cfg);
    if (st == R1_OK)
        st = r1_router__check(cfg);
    if (st == R1_OK && schema == NULL)
        st =
            r1_error__set(R1_ERR_UNSUPPORTED, "no schema for architecture '%s'", cfg->architecture);
    if (st == R1_OK)
        st = r1_bind_globals(f, c, schema);
    if (st == R1_OK) {
        f->layers = calloc((size_t)cfg->num_hidden_layers, sizeof *f->layers);
        if (f->layers == NULL)
            st = r1_error__set(R1_ERR_NO_MEMORY, "cannot allocate the layer table");
    }
    for (int64_t l = 0; st == R1_OK && l < cfg->num_hidden_layers; l++)
        st = r1_bind_layer(cfg, c, schema, l, &f->layers[l]);
    const uint64_t uk_bytes = (uint64_t)cfg->num_hidden_layers *
                              (uint64_t)cfg->num_attention_heads * (uint64_t)cfg->kv_lora_rank *
                              (uint64_t)cfg->qk_nope_head_dim * sizeof(float);
    for (int64_t l = 0; st == R1_OK && uk_bytes <= r1_uk_t_max_bytes && l < cfg->num_hidden_layers;
         l++)
        st = r1_build_uk_t(cfg, &f->layers[l]);
    if (st != R1_OK)
        r1_forward__unbind(f);
    return st;
}

void r1_forward__unbind(r1_forward *f)
{
    if (f->dense != NULL) {
        r1_forward_dense__unbind(f);
        return;
    }
    if (f->layers != NULL) {
        for (int64_t l = 0; l < f->cfg->num_hidden_layers; l++) {
            r1_layer_weights *w = &f->layers[l];
            free(w->attn_norm);
            free(w->q_a_norm);
            free(w->kv_a_norm);
            free(w->ffn_norm);
            free(w->router_bias);
            free(w->uk_t);
        }
    }
    free(f->layers);
    free(f->final_norm);
    memset(f, 0, sizeof *f);
}

void r1_forward__share(r1_forward *f, const r1_forward *bound)
{
    /* The bound copy never runs a pass, so its gates are still at their first window. */
    *f = *bound;
    f->prof = NULL;
    f->pf_stall0 = 0;
    f->lookaheads = 0;
}

/* ---- cache and scratch -------------------------------------------------------------------- */

int32_t r1_kv_cache__latent_dtype(const r1_model_config *cfg, int32_t dtype)
{
    /* A kv_lora_rank that is not whole blocks (no DeepSeek model has one) keeps f32, as a
     * grouped-query cache of odd head size keeps f16. */
    return dtype == R1_DTYPE_Q8_0 && cfg->kv_lora_rank % R1_QBLOCK == 0 ? R1_DTYPE_Q8_0
                                                                        : R1_DTYPE_F32;
}

size_t r1_kv_cache__latent_row_bytes(const r1_model_config *cfg, int32_t dtype)
{
    const int64_t dl = cfg->kv_lora_rank + cfg->qk_rope_head_dim;
    /* q8_0 rows (backend.h, R1_OP_MLA_DECODE): c_kv in blocks of 32, then k_pe in blocks of its
     * own (the last zero-padded), so the two parts, of different magnitudes, never share a
     * scale. */
    if (r1_kv_cache__latent_dtype(cfg, dtype) == R1_DTYPE_Q8_0)
        return r1_dtype__row_bytes(R1_DTYPE_Q8_0, (dl + R1_QBLOCK - 1) / R1_QBLOCK * R1_QBLOCK);
    return (size_t)dl * sizeof(float);
}

r1_status r1_kv_cache__create(r1_kv_cache *kv, const r1_model_config *cfg, int64_t n_ctx,
                              int32_t dtype)
{
    /* Never reused, unlike an address: a new cache can never be taken for a freed one whose
     * rows a device still mirrors. */
    static _Atomic uint64_t last_id;
    memset(kv, 0, sizeof *kv);
    kv->id = atomic_fetch_add(&last_id, 1) + 1;
    if (r1_model_config__is_dense(cfg)) {
        r1_status gst = r1_gqa_cache__create(&kv->gqa, cfg, n_ctx, dtype);
        kv->n_ctx = gst == R1_OK ? n_ctx : 0;
        return gst;
    }
    /* The latent cache is f32 or q8_0 (f16 would save less than q8_0 and cost as much work). */
    if (dtype >= 0 && dtype != R1_DTYPE_F32 && dtype != R1_DTYPE_Q8_0)
        return r1_error__set(R1_ERR_UNSUPPORTED,
                             "a latent attention cache of type %s is not supported (f32, q8_0)",
                             r1_dtype__traits(dtype) ? r1_dtype__traits(dtype)->name : "?");
    kv->lat_dtype = r1_kv_cache__latent_dtype(cfg, dtype);
    kv->lat_row_bytes = r1_kv_cache__latent_row_bytes(cfg, dtype);
    const size_t bytes = (size_t)cfg->num_hidden_layers * (size_t)n_ctx * kv->lat_row_bytes;
    if (kv->lat_dtype == R1_DTYPE_Q8_0)
        kv->lat_q8 = malloc(bytes);
    else
        kv->lat = malloc(bytes);
    if (kv->lat == NULL && kv->lat_q8 == NULL) {
        r1_kv_cache__destroy(kv);
        return r1_error__set(R1_ERR_NO_MEMORY, "cannot allocate a latent cache of %lld positions",
                             (long long)n_ctx);
    }
    kv->n_ctx = n_ctx;
    return R1_OK;
}

void r1_kv_cache__destroy(r1_kv_cache *kv)
{
    r1_gqa_cache__destroy(kv->gqa);
    free(kv->lat);
    free(kv->lat_q8);
    memset(kv, 0, sizeof *kv);
}

/* Attention runs heads in groups of about this many (head, token) rows, so a decode step is one
 * product per group over all heads while a long chunk's score matrix stays one head at a time;
 * and a long chunk's queries in blocks of R1_ATTN_QUERY_BLOCK (see r1_attention). */
enum { R1_ATTN_GROUP_ROWS = 64, R1_ATTN_QUERY_BLOCK = 128 };

static int64_t r1_attn_heads_per_group(int64_t H, int64_t T)
{
    int64_t g = T >= R1_ATTN_GROUP_ROWS ? 1 : R1_ATTN_GROUP_ROWS / T;
    return g < H ? g : H;
}

struct r1_forward_scratch {
    int64_t max_tokens;
    int64_t n_ctx;
    float *h, *a, *cq, *q, *kva, *qlat, *olat, *oh, *attn, *b, *ffn, *g, *u, *router;
    float *gx, *gy, *rope_cs, *scores, *wrow, *ckv_t, *gq;
    float *uk_tmp;  /* made on first use when the forward pass keeps no W_UK copy */
    float *lat_f32; /* (lat_f32_rows, dl): a q8_0 cache's rows dequantised; made on first use */
    int64_t lat_f32_rows;
    int32_t *sel;
    float *selw;
    /* A MoE layer's (token, expert) pairs grouped by expert: the experts used, in increasing
     * order, own rows [ex_off[i], ex_off[i + 1]) of tok (the token), tokw (its routing weight)
     * and ey (the expert's output for it), so experts can finish in any order and still be
     * combined in one fixed order. */
    int32_t *tok;            /* (T * K) */
    float *tokw;             /* (T * K) */
    float *ey;               /* (T * K, D) */
    int32_t *ex_ids;         /* (E) */
    int32_t *ex_off;         /* (E + 1) */
    uint8_t *taken;          /* (E) */
    r1_dense_scratch *dense; /* the dense architectures' instead of all the above */
    /* The sequences of the pass running (r1_forward__run_batch), for the products made per
     * sequence (r1_seq_mm). */
    const r1_forward_seq *seqs;
    int64_t n_seqs;
};

r1_status r1_forward_scratch__create(r1_forward_scratch **out, const r1_model_config *cfg,
                                     int64_t T, int64_t n_ctx)
{
    const int64_t D = cfg->hidden_size, H = cfg->num_attention_heads;
    const int64_t dqk = cfg->qk_nope_head_dim + cfg->qk_rope_head_dim;
    const int64_t rkv = cfg->kv_lora_rank, dr = cfg->qk_rope_head_dim;
    int64_t inter = cfg->intermediate_size;
    if (cfg->moe_intermediate_size * (cfg->n_shared_experts > 1 ? cfg->n_shared_experts : 1) >
        inter)
        inter =
            cfg->moe_intermediate_size * (cfg->n_shared_experts > 1 ? cfg->n_shared_experts : 1);
    int64_t widest = D > rkv ? D : rkv;
    r1_forward_scratch *s = calloc(1, sizeof *s);
    if (s == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "cannot allocate forward scratch");
    s->max_tokens = T;
    s->n_ctx = n_ctx;
    if (r1_model_config__is_dense(cfg)) {
        r1_status dst = r1_dense_scratch__create(&s->dense, cfg, T, n_ctx);
        if (dst != R1_OK)
            free(s);
        else
            *out = s;
        return dst;
    }
    struct {
        float **p;
        int64_t n;
    } bufs[] = {
        {&s->h, T * D},
        {&s->a, T * D},
        {&s->cq, T * (cfg->q_lora_rank > 0 ? cfg->q_lora_rank : 1)},
        {&s->q, T * H * dqk},
        {&s->kva, T * (rkv + dr)},
        {&s->qlat, T * H * (rkv + dr)},
        {&s->olat, T * H * rkv},
        {&s->oh, T * H * cfg->v_head_dim},
        {&s->attn, T * D},
        {&s->b, T * D},
        {&s->ffn, T * D},
        {&s->g, 2 * T * inter}, /* room for gate and up side by side */
        {&s->u, T * inter},
        {&s->router, T * cfg->n_routed_experts},
        {&s->gx, T * D},
        {&s->gy, T * D},
        {&s->rope_cs, T * dr},
        {&s->scores, (T > R1_ATTN_GROUP_ROWS ? T : R1_ATTN_GROUP_ROWS) * n_ctx},
        {&s->wrow, widest > cfg->v_head_dim ? widest : cfg->v_head_dim},
        {&s->ckv_t, rkv * n_ctx},
        {&s->gq,
         T * (cfg->qk_nope_head_dim > cfg->v_head_dim ? cfg->qk_nope_head_dim : cfg->v_head_dim)},
        {&s->selw, T * cfg->num_experts_per_tok},
        {&s->tokw, T * cfg->num_experts_per_tok},
        {&s->ey, T * cfg->num_experts_per_tok * D},
    };
    r1_status st = R1_OK;
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0] && st == R1_OK; i++)
        if ((*bufs[i].p = malloc((size_t)(bufs[i].n > 0 ? bufs[i].n : 1) * sizeof(float))) == NULL)
            st = R1_ERR_NO_MEMORY;
    if (st == R1_OK &&
        ((s->sel = malloc((size_t)(T * cfg->num_experts_per_tok) * sizeof(int32_t))) == NULL ||
         (s->tok = malloc((size_t)(T * cfg->num_experts_per_tok + 1) * sizeof(int32_t))) == NULL ||
         (s->ex_ids = malloc((size_t)(cfg->n_routed_experts + 1) * sizeof(int32_t))) == NULL ||
         (s->ex_off = malloc((size_t)(cfg->n_routed_experts + 1) * sizeof(int32_t))) == NULL ||
         (s->taken = malloc((size_t)(cfg->n_routed_experts + 1))) == NULL))
        st = R1_ERR_NO_MEMORY;
    if (st != R1_OK) {
        r1_forward_scratch__destroy(s);
        return r1_error__set(st, "cannot allocate forward scratch for %lld tokens", (long long)T);
    }
    *out = s;
    return R1_OK;
}

void r1_forward_scratch__destroy(r1_forward_scratch *s)
{
    if (s == NULL)
        return;
    r1_dense_scratch__destroy(s->dense);
    float *all[] = {s->h,       s->a,      s->cq,   s->q,     s->kva, s->qlat,   s->olat, s->oh,
                    s->attn,    s->b,      s->ffn,  s->g,     s->u,   s->router, s->gx,   s->gy,
                    s->rope_cs, s->scores, s->wrow, s->ckv_t, s->gq,  s->selw,   s->tokw, s->ey};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
    free(s->uk_tmp);
    free(s->lat_f32);
    free(s->sel);
    free(s->tok);
    free(s->ex_ids);
    free(s->ex_off);
    free(s->taken);
    free(s);
}

int64_t r1_forward_scratch__max_tokens(const r1_forward_scratch *s)
{
    return s->max_tokens;
}

int64_t r1_forward_scratch__n_ctx(const r1_forward_scratch *s)
{
    return s->n_ctx;
}

/* ---- small ops ---------------------------------------------------------------------------- */

/* RMSNorm of n_rows rows of n (docs/model.md §2.2) on the model's backend; strides in floats. */
static r1_status r1_rmsnorm(r1_forward *f, const float *x, int64_t x_stride, const float *g,
                            int64_t n_rows, int64_t n, float *y, int64_t y_stride)
{
    const r1_op_rows_params p = {.n_rows = n_rows,
                                 .n = n,
                                 .x_stride = x_stride,
                                 .y_stride = y_stride,
                                 .eps = f->cfg->rms_norm_eps};
    return r1_compute__rmsnorm(f->compute, &p, x, g, y);
}

/* x (n_rows, n) += y (n_rows, n): the residual stream and the shared expert's share. */
static r1_status r1_accumulate(r1_forward *f, const float *y, int64_t n_rows, int64_t n, float *x)
{
    const r1_op_rows_params p = {.n_rows = n_rows, .n = n};
    return r1_compute__moe_combine(f->compute, &p, y, NULL, NULL, n_rows, x);
}

/* Row r of a weight matrix dequantised to float32. */
static void r1_weight_row(const r1_tensor *w, int64_t r, float *out)
{
    const int64_t cols = r1_tensor__cols(w);
    const size_t rb = r1_dtype__row_bytes(w->dtype, cols);
    const float *scale = w->scale ? w->scale + (r / R1_FP8_SCALE_BLOCK) * w->scale_cols : NULL;
    r1_dtype__dequantize_row(w->dtype, (const uint8_t *)w->data + (size_t)r * rb, scale, out, cols);
}

/* a and b as one weight of twice the rows when b directly follows a in memory (an expert blob
 * stores its matrices back to back): one product then reads both, with one pass of threads. */
static int r1_adjacent(const r1_tensor *a, const r1_tensor *b, r1_tensor *out)
{
    if (a->dtype != b->dtype || a->layout != b->layout || a->scale != NULL || b->scale != NULL ||
        a->n_dims != 2 || b->n_dims != 2 || a->shape[0] != b->shape[0] ||
        a->shape[1] != b->shape[1] ||
        (const uint8_t *)a->data + a->nbytes != (const uint8_t *)b->data)
        return 0;
    *out = *a;
    out->shape[0] = 2 * a->shape[0];
    out->nbytes = 2 * a->nbytes;
    return 1;
}

/* y = (silu(x W_gate^T) * (x W_up^T)) W_down^T for n rows of x (docs/model.md §2.7). */
static r1_status r1_swiglu(r1_forward *f, r1_forward_scratch *s, const r1_tensor *gate,
                           const r1_tensor *up, const r1_tensor *down, const float *x, int64_t n,
                           float *y)
{
    const int64_t inter = r1_tensor__rows(gate);
    r1_tensor gate_up;
    if (r1_adjacent(gate, up, &gate_up)) {
        /* One product for both: row t of g is (gate, up); the gate goes to u. */
        r1_status st = r1_mm(f, &gate_up, x, n, s->g);
        const r1_op_rows_params p = {
            .n_rows = n, .n = inter, .x_stride = 2 * inter, .b_stride = 2 * inter};
        if (st == R1_OK)
            st = r1_compute__swiglu(f->compute, &p, s->g, s->g + inter, s->u);
        return st == R1_OK ? r1_mm(f, down, s->u, n, y) : st;
    }
    r1_status st = r1_mm(f, gate, x, n, s->g);
    if (st == R1_OK)
        st = r1_mm(f, up, x, n, s->u);
    const r1_op_rows_params p = {.n_rows = n, .n = inter};
    if (st == R1_OK)
        st = r1_compute__swiglu(f->compute, &p, s->g, s->u, s->g);
    return st == R1_OK ? r1_mm(f, down, s->g, n, y) : st;
}

/* ---- profiling ---------------------------------------------------------------------------- */

void r1_forward__lap(r1_forward *f, int32_t cls, uint64_t *mark)
{
    if (f->prof == NULL)
        return;
    const uint64_t now = r1_clock__now_ns();
    f->prof->ns[cls] += now - *mark;
    *mark = now;
    /* Every weight read between two laps belongs to the class the second one charges. */
    f->prof->class_bytes[cls] += f->prof->weight_bytes - f->prof->lapped_bytes;
    f->prof->lapped_bytes = f->prof->weight_bytes;
}

static size_t r1_weight_bytes(const r1_tensor *w)
{
    return w->nbytes + r1_tensor__scale_bytes(w);
}

/* A weight product that counts the weight's bytes as read. */
static r1_status r1_mm(r1_forward *f, const r1_tensor *w, const float *x, int64_t n, float *y)
{
    if (f->prof != NULL)
        f->prof->weight_bytes += r1_weight_bytes(w);
    return r1_compute__matmul(f->compute, w, x, n, y);
}

/* ---- attention ---------------------------------------------------------------------------- */

/* Rows [r0, r0 + n) of a weight as a weight of its own; 0 when its block scales do not start
 * at r0 (FP8 scales cover 128 rows). */
static int r1_row_view(const r1_tensor *w, int64_t r0, int64_t n, r1_tensor *out)
{
    const int64_t cols = r1_tensor__cols(w);
    const size_t rb = r1_dtype__row_bytes(w->dtype, cols);
    if (w->scale != NULL && r0 % R1_FP8_SCALE_BLOCK != 0)
        return 0;
    *out = *w;
    out->n_dims = 2;
    out->shape[0] = n;
    out->shape[1] = cols;
    out->data = (const uint8_t *)w->data + (size_t)r0 * rb;
    out->nbytes = (size_t)n * rb;
    if (w->scale != NULL)
        out->scale = w->scale + (r0 / R1_FP8_SCALE_BLOCK) * w->scale_cols;
    return 1;
}

/* One latent row (c_kv normalised, then k_pe rotated: rkv + dr floats) as q8_0 blocks in the
 * layout of backend.h (R1_OP_MLA_DECODE): c_kv's, then k_pe's, the last zero-padded. */
static void r1_latent_quantize_row(int64_t rkv, int64_t dr, const float *row, r1_block_q8_0 *out)
{
    r1_quantize__q8_0(row, out, rkv);
    float pe[R1_QBLOCK];
    for (int64_t b = 0; b < (dr + R1_QBLOCK - 1) / R1_QBLOCK; b++) {
        const int64_t n = dr - b * R1_QBLOCK < R1_QBLOCK ? dr - b * R1_QBLOCK : R1_QBLOCK;
        memset(pe, 0, sizeof pe);
        memcpy(pe, row + rkv + b * R1_QBLOCK, (size_t)n * sizeof(float));
        r1_quantize__q8_0(pe, out + rkv / R1_QBLOCK + b, R1_QBLOCK);
    }
}

/* T new rows of dl floats into layer l of a q8_0 cache at pos0; returns the layer's first row. */
static const uint8_t *r1_latent_store_q8(const r1_model_config *cfg, r1_kv_cache *kv, int64_t l,
                                         int64_t pos0, int64_t T, const float *rows)
{
    const int64_t rkv = cfg->kv_lora_rank, dr = cfg->qk_rope_head_dim;
    uint8_t *layer = kv->lat_q8 + (size_t)l * (size_t)kv->n_ctx * kv->lat_row_bytes;
    for (int64_t t = 0; t < T; t++)
        r1_latent_quantize_row(
            rkv, dr, rows + t * (rkv + dr),
            (r1_block_q8_0 *)(void *)(layer + (size_t)(pos0 + t) * kv->lat_row_bytes));
    return layer;
}

static _Atomic int32_t r1_latent_roundtrip;

void r1_forward__set_latent_roundtrip(int32_t on)
{
    atomic_store(&r1_latent_roundtrip, on != 0);
}

/* Tests (r1_forward__set_latent_roundtrip): T rows of an f32 cache replaced by what a q8_0
 * cache's readers see of them; R1_ERR_NO_MEMORY without room for one row's blocks. */
static r1_status r1_latent_round_trip(const r1_model_config *cfg, float *rows, int64_t T,
                                      int64_t row_stride)
{
    const int64_t rkv = cfg->kv_lora_rank, dr = cfg->qk_rope_head_dim;
    const int64_t padded = (rkv + dr + R1_QBLOCK - 1) / R1_QBLOCK * R1_QBLOCK;
    r1_block_q8_0 *blocks = malloc((size_t)(padded / R1_QBLOCK) * sizeof *blocks);
    float *deq = malloc((size_t)padded * sizeof *deq);
    for (int64_t t = 0; t < T && blocks != NULL && deq != NULL; t++) {
        r1_latent_quantize_row(rkv, dr, rows + t * row_stride, blocks);
        r1_dtype__dequantize_row(R1_DTYPE_Q8_0, blocks, NULL, deq, padded);
        memcpy(rows + t * row_stride, deq, (size_t)(rkv + dr) * sizeof(float));
    }
    const r1_status st = blocks != NULL && deq != NULL
                             ? R1_OK
                             : r1_error__set(R1_ERR_NO_MEMORY, "latent round trip: no memory");
    free(blocks);
    free(deq);
    return st;
}

/* The first n rows of a q8_0 cache's layer dequantised into the scratch's float rows (dl floats
 * each: as much as one layer of an f32 cache at most), which grow with the rows read; NULL when
 * they cannot be had. The same values as the decode op reads (r1_dtype__dequantize_row is every
 * kernel level's reference). */
static float *r1_latent_rows_f32(const r1_model_config *cfg, r1_forward_scratch *s,
                                 const uint8_t *layer, const r1_kv_cache *kv, int64_t n)
{
    const int64_t rkv = cfg->kv_lora_rank, dr = cfg->qk_rope_head_dim, dl = rkv + dr;
    const int64_t padded = (dl + R1_QBLOCK - 1) / R1_QBLOCK * R1_QBLOCK;
    if (s->lat_f32_rows < n) {
        /* twice what is needed, up to the cache's length: a long prompt's chunks regrow it a
         * few times only */
        const int64_t rows = 2 * n < kv->n_ctx ? 2 * n : kv->n_ctx;
        free(s->lat_f32);
        s->lat_f32_rows = 0;
        /* a padded row's room at the end: each row is dequantised whole, padding included,
         * and the next row overwrites that padding */
        if ((s->lat_f32 = malloc((size_t)(rows * dl + padded) * sizeof(float))) == NULL)
            return NULL;
        s->lat_f32_rows = rows;
    }
    for (int64_t j = 0; j < n; j++)
        r1_dtype__dequantize_row(R1_DTYPE_Q8_0, layer + (size_t)j * kv->lat_row_bytes, NULL,
                                 s->lat_f32 + j * dl, padded);
    return s->lat_f32;
}

/* The attention's input side for T rows, of however many sequences (their rows share every
 * product): the normalised input, the queries into s->q and the latent projection into s->kva. */
static r1_status r1_attention_in(r1_forward *f, r1_forward_scratch *s, int64_t l, int64_t T)
{
    const r1_model_config *cfg = f->cfg;
    const r1_layer_weights *w = &f->layers[l];
    const int64_t D = cfg->hidden_size, rq = cfg->q_lora_rank;
    r1_status st;
    if ((st = r1_rmsnorm(f, s->h, 0, w->attn_norm, T, D, s->a, 0)) != R1_OK)
        return st;
    if (rq > 0) {
        if ((st = r1_mm(f, &w->q_a, s->a, T, s->cq)) != R1_OK)
            return st;
        if ((st = r1_rmsnorm(f, s->cq, 0, w->q_a_norm, T, rq, s->cq, 0)) != R1_OK)
            return st;
        st = r1_mm(f, &w->q_b, s->cq, T, s->q);
    } else {
        st = r1_mm(f, &w->q, s->a, T, s->q);
    }
    return st == R1_OK ? r1_mm(f, &w->kv_a, s->a, T, s->kva) : st;
}

/* MLA in the weight-absorbed form (docs/model.md §2.6) for T new tokens of one sequence at
 * pos0... (their queries and latents in s->q and s->kva, r1_attention_in): caches the latent and
 * rotated rope key of each, then attends over every cached position <= its own, into s->oh (the
 * caller applies the output projection over every sequence's rows at once). Every product goes
 * to the backend: queries are moved into the latent space per head, and the scores and value
 * sums of a group of heads are one product each against the cache. */
static r1_status r1_attention(r1_forward *f, r1_forward_scratch *s, r1_kv_cache *kv, int64_t l,
                              int64_t T, int64_t pos0)
{
    const r1_model_config *cfg = f->cfg;
    const r1_layer_weights *w = &f->layers[l];
    const int64_t H = cfg->num_attention_heads;
    const int64_t dn = cfg->qk_nope_head_dim, dr = cfg->qk_rope_head_dim, dv = cfg->v_head_dim;
    const int64_t dqk = dn + dr, rkv = cfg->kv_lora_rank;
    const int64_t dl = rkv + dr; /* one latent-cache row: c_kv then k_pe */
    r1_status st;

    /* The new latent rows: c_kv normalised straight into the cache, k_pe copied then rotated;
     * every head's rope dims of the query rotated by the same angles. A q8_0 cache's rows are
     * made in place in kva instead, then quantised once (r1_latent_store_q8). */
    const int lat_q8 = kv->lat_dtype == R1_DTYPE_Q8_0;
    float *lat = lat_q8 ? NULL : kv->lat + (size_t)l * (size_t)kv->n_ctx * (size_t)dl;
    float *fresh = lat_q8 ? s->kva : lat + pos0 * dl;
    if ((st = r1_rmsnorm(f, s->kva, rkv + dr, w->kv_a_norm, T, rkv, fresh, dl)) != R1_OK)
        return st;
    for (int64_t t = 0; t < T && !lat_q8; t++)
        memcpy(fresh + t * dl + rkv, s->kva + t * (rkv + dr) + rkv, (size_t)dr * sizeof(float));
    const r1_op_rope_params kp = {
        .n_rows = T, .n_vecs = 1, .row_stride = dl, .vec_stride = 0, .n_pairs = dr / 2};
    const r1_op_rope_params qp = {
        .n_rows = T, .n_vecs = H, .row_stride = H * dqk, .vec_stride = dqk, .n_pairs = dr / 2};
    if ((st = r1_compute__rope(f->compute, &kp, s->rope_cs, fresh + rkv)) != R1_OK ||
        (st = r1_compute__rope(f->compute, &qp, s->rope_cs, s->q + dn)) != R1_OK)
        return st;
    const uint8_t *lat_rows_q8 = lat_q8 ? r1_latent_store_q8(cfg, kv, l, pos0, T, fresh) : NULL;
    if (!lat_q8 && atomic_load(&r1_latent_roundtrip) &&
        (st = r1_latent_round_trip(cfg, fresh, T, dl)) != R1_OK)
        return st;

    /* One decoded token, or a chunk on a device: the whole attention of the layer is one op
     * (compute.c), over the latent cache a device mirrors, rows from pos0 on being new. */
    const r1_compute_latent cache = {.rows = lat,
                                     .rows_q8 = lat_rows_q8,
                                     .row_bytes = kv->lat_row_bytes,
                                     .cache_id = kv->id,
                                     .layer = l,
                                     .n_ctx = kv->n_ctx,
                                     .first_written = pos0};
    if (T == 1) {
        const r1_op_mla_decode_params mp = {
            .n_heads = H,
            .qk_nope_dim = dn,
            .qk_rope_dim = dr,
            .v_dim = dv,
            .kv_lora_rank = rkv,
            .n_keys = pos0 + 1,
            .softmax_scale = f->rope.softmax_scale,
        };
        if ((st = r1_compute__mla_decode(f->compute, &mp, s->q, &cache, &w->kv_b, s->oh)) != R1_OK)
            return st;
        if (f->prof != NULL)
            f->prof->weight_bytes += r1_weight_bytes(&w->kv_b);
        return R1_OK;
    }
    /* A device without host access takes the chunk as one op and saves the round trips of the
     * products below. The CPU backend keeps them: they reuse the W_UK copies made at bind time
     * and its own layout of kv_b; its op repeats the same steps for chunks a device refuses. */
    if (r1_compute__has_device(f->compute)) {
        const r1_op_mla_prefill_params pp = {
            .n_heads = H,
            .qk_nope_dim = dn,
            .qk_rope_dim = dr,
            .v_dim = dv,
            .kv_lora_rank = rkv,
            .n_tokens = T,
            .pos0 = pos0,
            .softmax_scale = f->rope.softmax_scale,
        };
        if ((st = r1_compute__mla_prefill(f->compute, &pp, s->q, &cache, &w->kv_b, s->oh)) != R1_OK)
            return st;
        if (f->prof != NULL)
            f->prof->weight_bytes += r1_weight_bytes(&w->kv_b);
        return R1_OK;
    }

    /* A q8_0 cache's rows as float32 for the products below. */
    if (lat_q8 && (lat = r1_latent_rows_f32(cfg, s, lat_rows_q8, kv, pos0 + T)) == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "cannot allocate float rows of a q8_0 cache");

    /* Without a kept copy, this layer's W_UK is transposed for this chunk only. */
    const float *uk_t = w->uk_t;
    if (uk_t == NULL) {
        if (s->uk_tmp == NULL &&
            (s->uk_tmp = malloc((size_t)(H * rkv * dn) * sizeof *s->uk_tmp)) == NULL)
            return r1_error__set(R1_ERR_NO_MEMORY, "cannot allocate a transposed W_UK");
        r1_fill_uk_t(cfg, &w->kv_b, s->wrow, s->uk_tmp);
        uk_t = s->uk_tmp;
        if (f->prof != NULL)
            f->prof->weight_bytes += r1_weight_bytes(&w->kv_b) / 2;
    }

    /* Queries head-major, in the layout of a cache row: qry[h][t] = (W_UK^h^T q_nope, q_pe). */
    float *qry = s->qlat;
    for (int64_t h = 0; h < H; h++) {
        float *qh = qry + h * T * dl;
        for (int64_t t = 0; t < T; t++) {
            const float *src = s->q + t * H * dqk + h * dqk;
            memcpy(s->gq + t * dn, src, (size_t)dn * sizeof(float));
            memcpy(qh + t * dl + rkv, src + dn, (size_t)dr * sizeof(float));
        }
        const r1_tensor uk = r1_tensor__f32_matrix(uk_t + h * rkv * dn, rkv, dn);
        st = w->uk_t != NULL ? r1_mm(f, &uk, s->gq, T, s->olat)
                             : r1_compute__matmul(f->compute, &uk, s->gq, T, s->olat);
        if (st != R1_OK)
            return st;
        for (int64_t t = 0; t < T; t++)
            memcpy(qh + t * dl, s->olat + t * rkv, (size_t)rkv * sizeof(float));
    }

    /* Queries in blocks, each against the keys up to its last token only, so a long chunk
     * skips most of the products the causal mask would zero. Several heads share a product
     * only when T < R1_ATTN_GROUP_ROWS <= R1_ATTN_QUERY_BLOCK, i.e. with a single block, so a
     * group's rows are always contiguous in qry and olat. */
    const int64_t group = r1_attn_heads_per_group(H, T);
    for (int64_t t0 = 0; t0 < T; t0 += R1_ATTN_QUERY_BLOCK) {
        const int64_t nt = T - t0 < R1_ATTN_QUERY_BLOCK ? T - t0 : R1_ATTN_QUERY_BLOCK;
        const int64_t n_keys = pos0 + t0 + nt;
        r1_tensor__transpose_f32(lat, n_keys, rkv, dl, s->ckv_t);
        const r1_tensor keys = r1_tensor__f32_matrix(lat, n_keys, dl);
        const r1_tensor values_t = r1_tensor__f32_matrix(s->ckv_t, rkv, n_keys);
        for (int64_t h0 = 0; h0 < H; h0 += group) {
            const int64_t nh = h0 + group <= H ? group : H - h0, rows = nh * nt;
            st = r1_compute__matmul(f->compute, &keys, qry + (h0 * T + t0) * dl, rows, s->scores);
            if (st != R1_OK)
                return st;
            const r1_op_softmax_params sp = {.n_rows = rows,
                                             .n = n_keys,
                                             .causal_base = pos0 + t0,
                                             .causal_period = nt,
                                             .scale = f->rope.softmax_scale};
            if ((st = r1_compute__softmax(f->compute, &sp, s->scores)) != R1_OK)
                return st;
            st = r1_compute__matmul(f->compute, &values_t, s->scores, rows,
                                    s->olat + (h0 * T + t0) * rkv);
            if (st != R1_OK)
                return st;
        }
    }

    /* o[t,h] = W_UV^h o_lat[t,h]; then the output projection over the concatenated heads. */
    for (int64_t h = 0; h < H; h++) {
        const float *olh = s->olat + h * T * rkv;
        r1_tensor uv;
        if (r1_row_view(&w->kv_b, h * (dn + dv) + dn, dv, &uv)) {
            if ((st = r1_mm(f, &uv, olh, T, s->gq)) != R1_OK)
                return st;
            for (int64_t t = 0; t < T; t++)
                memcpy(s->oh + t * H * dv + h * dv, s->gq + t * dv, (size_t)dv * sizeof(float));
            continue;
        }
        for (int64_t c = 0; c < dv; c++) {
            r1_weight_row(&w->kv_b, h * (dn + dv) + dn + c, s->wrow);
            for (int64_t t = 0; t < T; t++) {
                const float *ol = olh + t * rkv;
                double dot = 0;
                for (int64_t k = 0; k < rkv; k++)
                    dot += (double)s->wrow[k] * ol[k];
                s->oh[t * H * dv + h * dv + c] = (float)dot;
            }
        }
        if (f->prof != NULL)
            f->prof->weight_bytes += r1_weight_bytes(&w->kv_b) / (size_t)(2 * H);
    }
    return R1_OK;
}

/* ---- feed-forward ------------------------------------------------------------------------- */

/* y = x W^T over the pass's rows as one product per sequence (counted as weight traffic when
 * count), for a weight kept in float (the router): the CPU backend takes BLAS for a product of
 * several rows and its dot kernel for a few, so a product over every sequence's rows would round
 * a row differently from the same row run alone. Per sequence, each row's kernel depends on its
 * own sequence only; the router is small next to the experts it picks, so reading it per
 * sequence costs little. */
static r1_status r1_seq_mm(r1_forward *f, const r1_forward_scratch *s, const r1_tensor *w,
                           const float *x, float *y, int32_t count)
{
    const int64_t cols = r1_tensor__cols(w), rows = r1_tensor__rows(w);
    r1_status st = R1_OK;
    for (int64_t i = 0, r0 = 0; i < s->n_seqs && st == R1_OK; r0 += s->seqs[i].n_rows, i++) {
        const int64_t n = s->seqs[i].n_rows;
        st = count ? r1_mm(f, w, x + r0 * cols, n, y + r0 * rows)
                   : r1_compute__matmul(f->compute, w, x + r0 * cols, n, y + r0 * rows);
    }
    return st;
}

/* The router's parameters for a MoE layer of f's model, over n_rows tokens. */
static r1_op_router_params r1_router_params(const r1_model_config *cfg, int64_t n_rows)
{
    const r1_op_router_params rp = {
        .n_rows = n_rows,
        .n_experts = cfg->n_routed_experts,
        .top_k = cfg->num_experts_per_tok,
        .n_group = cfg->n_group,
        .topk_group = cfg->topk_group,
        .topk_method = cfg->topk_method,
        .scoring_func = cfg->scoring_func,
        .norm_topk_prob = (int32_t)cfg->norm_topk_prob,
        .routed_scaling_factor = cfg->routed_scaling_factor,
    };
    return rp;
}

/* Groups the T x K selections of s->sel by expert (scratch's ex_ids, ex_off, tok, tokw): the
 * experts used in increasing index, each with its tokens in increasing order. Returns how many
 * experts are used. */
static int32_t r1_group_by_expert(r1_forward_scratch *s, int64_t T, int64_t K, int64_t E)
{
    int32_t *count = s->ex_off + 1; /* counts first, then turned into offsets in place */
    memset(s->ex_off, 0, (size_t)(E + 1) * sizeof *s->ex_off);
    for (int64_t i = 0; i < T * K; i++)
        count[s->sel[i]]++;
    int32_t n_used = 0;
    for (int64_t e = 0; e < E; e++) {
        if (count[e] > 0)
            s->ex_ids[n_used++] = (int32_t)e;
        count[e] += s->ex_off[e]; /* ex_off[e + 1] = rows of experts <= e */
    }
    /* ex_off[e] is now where expert e's rows start; fill them, moving each start along. */
    for (int64_t t = 0; t < T; t++)
        for (int64_t k = 0; k < K; k++) {
            const int32_t e = s->sel[t * K + k], r = s->ex_off[e]++;
            s->tok[r] = (int32_t)t;
            s->tokw[r] = s->selw[t * K + k];
        }
    /* Each start moved to the next expert's: shift back, indexed by use rather than expert. */
    int32_t prev = 0;
    for (int32_t i = 0; i < n_used; i++) {
        const int32_t end = s->ex_off[s->ex_ids[i]];
        s->ex_off[i] = prev;
        prev = end;
    }
    s->ex_off[n_used] = prev;
    return n_used;
}

/* One routed expert on its rows of the grouped selection (rows [r0, r1) of s->tok): gathers
 * their inputs, runs the expert's SwiGLU into the same rows of s->ey. */
static r1_status r1_routed_expert(r1_forward *f, r1_forward_scratch *s, const r1_expert *ex,
                                  int32_t r0, int32_t r1)
{
    const int64_t D = f->cfg->hidden_size, n = r1 - r0;
    for (int64_t i = 0; i < n; i++)
        memcpy(s->gx + i * D, s->b + (int64_t)s->tok[r0 + i] * D, (size_t)D * sizeof(float));
    if (f->prof != NULL) {
        f->prof->expert_bytes += r1_weight_bytes(&ex->gate_proj) + r1_weight_bytes(&ex->up_proj) +
                                 r1_weight_bytes(&ex->down_proj);
        f->prof->expert_uses++;
        f->prof->expert_tokens[(int64_t)ex->layer * f->cfg->n_routed_experts + ex->expert] +=
            (uint64_t)n;
    }
    return r1_swiglu(f, s, &ex->gate_proj, &ex->up_proj, &ex->down_proj, s->gx, n,
                     s->ey + (int64_t)r0 * D);
}

static r1_status r1_lookahead(r1_forward *f, r1_forward_scratch *s, int64_t l, int64_t T,
                              int32_t first_half);

/* The MoE block of layer l: routing; a request for every selected expert at once (the store's
 * I/O workers read them while the shared experts run); the routed experts in the order they
 * become resident, one pinned at a time, each into its own output rows; then the combination in
 * a fixed order (increasing expert index, each expert's tokens in order, then the shared
 * experts), so the result never depends on arrival order, budget, prefetch or I/O workers.
 * look: whether this pass runs the router lookahead (r1_prefetch_gate). *mark is the profiling
 * clock. */
static r1_status r1_moe(r1_forward *f, r1_forward_scratch *s, int64_t l, int64_t T, int32_t look,
                        uint64_t *mark)
{
    const r1_model_config *cfg = f->cfg;
    const r1_layer_weights *w = &f->layers[l];
    const int64_t D = cfg->hidden_size, E = cfg->n_routed_experts, K = cfg->num_experts_per_tok;
    const r1_op_router_params rp = r1_router_params(cfg, T);
    r1_status st = r1_seq_mm(f, s, &w->router, s->b, s->router, 1);
    if (st == R1_OK)
        st = r1_compute__route(f->compute, &rp, s->router, w->router_bias, s->sel, s->selw);
    if (st != R1_OK)
        return st;
    const int32_t n_used = r1_group_by_expert(s, T, K, E);
    for (int32_t i = 0; i < n_used && st == R1_OK; i++)
        st = r1_expert_cache__request(f->experts, l, s->ex_ids[i], R1_EXPERT_DEMAND);
    if (st != R1_OK)
        return st;
    /* The surest half of the next MoE layer's experts is predicted now, not only once this
     * layer's output is known: the drive then reads them while this layer's experts are
     * computed instead of waiting for them (r1_lookahead). */
    if (look && l + 1 < cfg->num_hidden_layers && f->layers[l + 1].is_moe &&
        (st = r1_lookahead(f, s, l + 1, T, 1)) != R1_OK)
        return st;
    r1_forward__lap(f, R1_PROFILE_ROUTER, mark);

    /* The shared experts need no expert data: they run while the reads are in flight, into gy
     * (added after the routed experts, as the fixed order says). */
    if (w->sh_gate.data != NULL) {
        st = r1_swiglu(f, s, &w->sh_gate, &w->sh_up, &w->sh_down, s->b, T, s->gy);
        if (st != R1_OK)
            return st;
        r1_forward__lap(f, R1_PROFILE_SHARED, mark);
    }

    memset(s->taken, 0, (size_t)n_used);
    for (int32_t done = 0; done < n_used; done++) {
        int32_t i = -1;
        const r1_expert *ex = NULL;
        st = r1_expert_cache__acquire_any(f->experts, l, s->ex_ids, n_used, s->taken, &i, &ex);
        if (st != R1_OK)
            return st;
        r1_forward__lap(f, R1_PROFILE_EXPERT_LOAD, mark);
        s->taken[i] = 1;
        st = r1_routed_expert(f, s, ex, s->ex_off[i], s->ex_off[i + 1]);
        r1_expert_cache__release(f->experts, ex);
        if (st != R1_OK)
            return st;
        r1_forward__lap(f, R1_PROFILE_EXPERTS, mark);
    }

    memset(s->ffn, 0, (size_t)(T * D) * sizeof(float));
    for (int32_t i = 0; i < n_used; i++) {
        const int32_t r0 = s->ex_off[i];
        const r1_op_rows_params cp = {.n_rows = s->ex_off[i + 1] - r0, .n = D};
        st = r1_compute__moe_combine(f->compute, &cp, s->ey + (int64_t)r0 * D, s->tokw + r0,
                                     s->tok + r0, T, s->ffn);
        if (st != R1_OK)
            return st;
    }
    r1_forward__lap(f, R1_PROFILE_EXPERTS, mark);
    if (w->sh_gate.data != NULL) {
        if ((st = r1_accumulate(f, s->gy, T, D, s->ffn)) != R1_OK)
            return st;
        r1_forward__lap(f, R1_PROFILE_SHARED, mark);
    }
    return R1_OK;
}

/* Router lookahead for MoE layer l, whose input is still to be computed: layer l's norm and router
 * applied to the residual stream as it is now, and a prefetch of the experts that predicts for the
 * chunk's tokens, surest first (r1_expert_policy__predict): with first_half the first half, else
 * those it is confident of. It runs twice per layer (r1_forward__run): first_half as soon as the
 * previous MoE layer has demanded its experts, on the residual stream before they are added, so
 * that the reads of the surest predictions queue right behind those demands and the drive reads on
 * while that layer's experts are computed; then once the previous layer's output is known (a better
 * guess: the attention of layer l changes little; what the first asked for is not asked again),
 * only the confident ones: the demand that follows one attention block later asks for the rest.
 * Nothing here reaches the logits: the buffers it uses (gx, router, sel, selw) are rewritten before
 * their next use, the previous layer's grouping (ex_ids, ex_off, tok, tokw) is left alone, and a
 * wrong prediction only costs a read. Its product is not counted as weight traffic: the router is
 * read again, from cache, by the layer itself. */
static r1_status r1_lookahead(r1_forward *f, r1_forward_scratch *s, int64_t l, int64_t T,
                              int32_t first_half)
{
    const r1_model_config *cfg = f->cfg;
    const r1_layer_weights *w = &f->layers[l];
    const int64_t D = cfg->hidden_size, K = cfg->num_experts_per_tok;
    const r1_op_router_params rp = r1_router_params(cfg, T);
    r1_status st = r1_rmsnorm(f, s->h, 0, w->ffn_norm, T, D, s->gx, 0);
    if (st == R1_OK)
        st = r1_seq_mm(f, s, &w->router, s->gx, s->router, 0);
    if (st == R1_OK)
        st = r1_compute__route(f->compute, &rp, s->router, w->router_bias, s->sel, s->selw);
    if (st != R1_OK)
        return st;
    /* The predictions, surest first, in the front of sel (expert_policy.h): so that when the
     * budget has room for only some, it holds those the chunk most likely needs. */
    const int32_t n_ask = r1_expert_policy__predict(
        s->sel, s->selw, T * K, first_half ? R1_PREDICT_SUREST_HALF : R1_PREDICT_CONFIDENT);
    for (int32_t i = 0; i < n_ask; i++)
        if ((st = r1_expert_cache__request(f->experts, l, s->sel[i], R1_EXPERT_PREFETCH)) != R1_OK)
            return st;
    return R1_OK;
}

/* Whether the lookahead pays depends on things the forward pass cannot see: how well it
 * predicts this model's routing, how skewed the routing is (a wrong prefetch takes the place
 * of an expert that may be demanded again), and whether the drive is the bottleneck (then a
 * wrong prefetch delays the demanded reads as much as a miss would). So it is measured: over
 * 2 R1_PF_WINDOW passes it runs in every other pass, and whichever of the two halves waited
 * less for expert data per token (the store's stall time) runs for the next R1_PF_EXPLOIT
 * windows; then it is measured again, since routing changes with the text. The halves are
 * interleaved, not one window after the other, so that both see the same state of the cache:
 * a first window filling a cold cache would lose whatever it ran (and it was the lookahead's).
 * Logits never depend on it. */
static int32_t r1_prefetch_adaptive = 1;

void r1_forward__set_prefetch_adaptive(int32_t on)
{
    r1_prefetch_adaptive = on;
}

/* Whether this pass runs the lookahead; decode: its rows are decoded tokens (one per sequence),
 * not prompt chunks. Prompt chunks and decoded tokens wait for different amounts of expert data
 * per token, and the lookahead may pay for one and not the other, so each has its own gate, and
 * only the passes of its kind count in its windows. */
static int32_t r1_prefetch_gate(r1_forward *f, int32_t decode)
{
    if (!r1_prefetch_adaptive)
        return 1;
    r1_lookahead_gate *g = &f->pf[decode != 0];
    r1_expert_cache_counters k;
    r1_expert_cache__counters(f->experts, &k);
    f->pf_stall0 = k.stall_ns; /* r1_prefetch_gate_end adds this pass's share */
    if (g->left == 0) {
        if (g->phase == R1_PF_MEASURING) {
            /* on < off, per token: stall_on * tokens_off < stall_off * tokens_on. A tie is
             * off: with every expert resident neither half waits, and the lookahead would
             * only add its norm and router products to each layer. */
            g->choice = (double)g->stall_ns[1] * (double)g->tokens[0] <
                        (double)g->stall_ns[0] * (double)g->tokens[1];
            g->phase = R1_PF_EXPLOITING;
            g->left = R1_PF_WINDOW * R1_PF_EXPLOIT;
        } else {
            g->phase = R1_PF_MEASURING;
            g->left = 2 * R1_PF_WINDOW;
            g->stall_ns[0] = g->stall_ns[1] = g->tokens[0] = g->tokens[1] = 0;
        }
    }
    g->left--;
    if (g->phase == R1_PF_EXPLOITING)
        return g->choice;
    return g->left % 2; /* the first pass of a measurement with it */
}

/* Charges the store's stall time since the gate ran, and the pass's tokens, to this pass's
 * kind and to the half of its measurement that look (whether it ran the lookahead) says. */
static void r1_prefetch_gate_end(r1_forward *f, int64_t T, int32_t decode, int32_t look)
{
    if (!r1_prefetch_adaptive || !f->prefetch || !f->experts_bounded)
        return;
    r1_lookahead_gate *g = &f->pf[decode != 0];
    if (g->phase != R1_PF_MEASURING)
        return;
    r1_expert_cache_counters k;
    r1_expert_cache__counters(f->experts, &k);
    g->stall_ns[look != 0] += k.stall_ns - f->pf_stall0;
    g->tokens[look != 0] += (uint64_t)T;
}

/* ---- the whole model ---------------------------------------------------------------------- */

r1_status r1_forward__run(r1_forward *f, r1_forward_scratch *s, r1_kv_cache *kv, const int32_t *ids,
                          int64_t T, int64_t pos0, float *logits, int32_t all_logits)
{
    const r1_forward_seq seq = {.kv = kv, .pos0 = pos0, .n_rows = T, .all_logits = all_logits};
    return r1_forward__run_batch(f, s, &seq, 1, ids, logits);
}

/* Moves the per-row buffers the attention of one sequence reads and writes (its queries,
 * latents, rope angles and output) by dr rows, so that row 0 is the sequence's first (and back
 * with -dr); the rest is working memory it reuses from 0, and what the attention allocates on
 * first use stays in s. */
static void r1_scratch_shift(r1_forward_scratch *s, const r1_model_config *cfg, int64_t dr_rows)
{
    const int64_t H = cfg->num_attention_heads, dr = cfg->qk_rope_head_dim;
    s->q += dr_rows * H * (cfg->qk_nope_head_dim + dr);
    s->kva += dr_rows * (cfg->kv_lora_rank + dr);
    s->rope_cs += dr_rows * dr;
    s->oh += dr_rows * H * cfg->v_head_dim;
}

/* Whether the batch fits the scratch and every sequence its cache; T receives its rows. */
static r1_status r1_batch_check(const r1_forward_scratch *s, const r1_forward_seq *seqs,
                                int64_t n_seqs, int64_t *T)
{
    *T = 0;
    if (seqs == NULL || n_seqs <= 0)
        return r1_error__set(R1_ERR_INTERNAL, "forward pass over %lld sequences",
                             (long long)n_seqs);
    for (int64_t i = 0; i < n_seqs; i++) {
        const r1_forward_seq *q = &seqs[i];
        if (q->kv == NULL || q->n_rows <= 0 || q->pos0 < 0 || q->pos0 + q->n_rows > q->kv->n_ctx ||
            q->kv->n_ctx > s->n_ctx)
            return r1_error__set(R1_ERR_INTERNAL,
                                 "forward chunk of %lld tokens at %lld does not fit",
                                 (long long)q->n_rows, (long long)q->pos0);
        *T += q->n_rows;
    }
    if (*T > s->max_tokens)
        return r1_error__set(R1_ERR_INTERNAL,
                             "forward pass of %lld rows exceeds the scratch's %lld", (long long)*T,
                             (long long)s->max_tokens);
    return R1_OK;
}

/* The final norm and head on the rows that get logits: all rows of a sequence with all_logits,
 * else its last; gathered into s->gx when they are not already one run of rows. */
static r1_status r1_batch_head(r1_forward *f, r1_forward_scratch *s, const r1_forward_seq *seqs,
                               int64_t n_seqs, int64_t T, float *logits)
{
    const int64_t D = f->cfg->hidden_size;
    const float *x = s->h;
    int64_t n_out = 0;
    if (n_seqs == 1) {
        const int64_t first = seqs[0].all_logits ? 0 : T - 1;
        x = s->h + first * D;
        n_out = T - first;
    } else {
        int64_t r0 = 0;
        for (int64_t i = 0; i < n_seqs; i++) {
            const int64_t n = seqs[i].n_rows, first = seqs[i].all_logits ? r0 : r0 + n - 1;
            memcpy(s->gx + n_out * D, s->h + first * D, (size_t)((r0 + n - first) * D) * 4);
            n_out += r0 + n - first;
            r0 += n;
        }
        x = s->gx;
    }
    r1_status st = r1_rmsnorm(f, x, 0, f->final_norm, n_out, D, s->a, 0);
    if (st != R1_OK || n_seqs == 1 || r1_forward__rows_alike(&f->head))
        return st == R1_OK ? r1_mm(f, &f->head, s->a, n_out, logits) : st;
    /* A float head (a tied embedding): one product per sequence, as r1_seq_mm says. */
    const int64_t V = f->cfg->vocab_size;
    for (int64_t i = 0, r = 0; i < n_seqs && st == R1_OK; i++) {
        const int64_t n = seqs[i].all_logits ? seqs[i].n_rows : 1;
        st = r1_mm(f, &f->head, s->a + r * D, n, logits + r * V);
        r += n;
    }
    return st;
}

int32_t r1_forward__rows_alike(const r1_tensor *w)
{
    return w->dtype == R1_DTYPE_Q8_0 || w->dtype == R1_DTYPE_Q4_0;
}

r1_status r1_forward__run_batch(r1_forward *f, r1_forward_scratch *s, const r1_forward_seq *seqs,
                                int64_t n_seqs, const int32_t *ids, float *logits)
{
    if (f->dense != NULL)
        return r1_forward_dense__run_batch(f, s->dense, s->n_ctx, seqs, n_seqs, ids, logits);
    const r1_model_config *cfg = f->cfg;
    const int64_t D = cfg->hidden_size, dr = cfg->qk_rope_head_dim;
    int64_t T;
    r1_status st = r1_batch_check(s, seqs, n_seqs, &T);
    if (st != R1_OK)
        return st;
    s->seqs = seqs;
    s->n_seqs = n_seqs;
    const uint64_t start = f->prof != NULL ? r1_clock__now_ns() : 0;
    uint64_t mark = start;
    const int32_t decode = T == n_seqs;
    const int32_t look = f->prefetch && f->experts_bounded && r1_prefetch_gate(f, decode);
    for (int64_t i = 0, r = 0; i < n_seqs; i++)
        for (int64_t t = 0; t < seqs[i].n_rows; t++, r++) {
            r1_weight_row(&f->embed, ids[r], s->h + r * D);
            r1_rope__table(&f->rope, seqs[i].pos0 + t, s->rope_cs + r * dr);
        }
    for (int64_t l = 0; l < cfg->num_hidden_layers; l++) {
        const r1_layer_weights *w = &f->layers[l];
        r1_forward__lap(f, R1_PROFILE_OTHER, &mark);
        st = r1_attention_in(f, s, l, T);
        for (int64_t i = 0, r0 = 0; i < n_seqs && st == R1_OK; r0 += seqs[i].n_rows, i++) {
            r1_scratch_shift(s, cfg, r0);
            st = r1_attention(f, s, seqs[i].kv, l, seqs[i].n_rows, seqs[i].pos0);
            r1_scratch_shift(s, cfg, -r0);
        }
        if (st == R1_OK)
            st = r1_mm(f, &w->o, s->oh, T, s->attn);
        if (st != R1_OK)
            return st;
        r1_forward__lap(f, R1_PROFILE_ATTENTION, &mark);
        st = r1_accumulate(f, s->attn, T, D, s->h);
        if (st == R1_OK)
            st = r1_rmsnorm(f, s->h, 0, w->ffn_norm, T, D, s->b, 0);
        if (st != R1_OK)
            return st;
        r1_forward__lap(f, R1_PROFILE_OTHER, &mark);
        if (w->is_moe) {
            st = r1_moe(f, s, l, T, look, &mark);
        } else {
            st = r1_swiglu(f, s, &w->gate, &w->up, &w->down, s->b, T, s->ffn);
            r1_forward__lap(f, R1_PROFILE_DENSE_MLP, &mark);
        }
        if (st == R1_OK)
            st = r1_accumulate(f, s->ffn, T, D, s->h);
        if (st != R1_OK)
            return st;
        /* Layer l's output is known: guess the next layer's experts from it while this
         * thread still has the attention of layer l + 1 to compute. */
        if (look && l + 1 < cfg->num_hidden_layers && f->layers[l + 1].is_moe) {
            r1_forward__lap(f, R1_PROFILE_OTHER, &mark);
            if ((st = r1_lookahead(f, s, l + 1, T, 0)) != R1_OK)
                return st;
            f->lookaheads++;
            r1_forward__lap(f, R1_PROFILE_ROUTER, &mark);
        }
    }
    r1_prefetch_gate_end(f, T, decode, look);
    r1_forward__lap(f, R1_PROFILE_OTHER, &mark);
    st = r1_batch_head(f, s, seqs, n_seqs, T, logits);
    if (f->prof != NULL) {
        r1_forward__lap(f, R1_PROFILE_HEAD, &mark);
        f->prof->total_ns += mark - start;
        f->prof->n_tokens += (uint64_t)T;
        f->prof->n_chunks++;
        const uint64_t rows =
            (uint64_t)T * r1_dtype__row_bytes(f->embed.dtype, r1_tensor__cols(&f->embed));
        f->prof->weight_bytes += rows;
        f->prof->embed_bytes += rows;
        f->prof->lapped_bytes = f->prof->weight_bytes; /* no class's */
    }
    return st;
}
