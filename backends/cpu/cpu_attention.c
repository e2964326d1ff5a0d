/* cpu_attention.c: one decoded token's latent attention (R1_OP_MLA_DECODE) as one op per layer.
 *
 * Decode used to issue two small products per head (the absorption into the latent space against
 * a float32 transposed copy of W_UK, and W_UV) plus the score and value products: about 35 pool
 * runs per layer, and 4 bytes per W_UK element read per token. Here each task is a group of
 * heads (one per thread), from the queries to their outputs: W_UK and W_UV are read from
 * kv_b_proj in the model's own dtype, the latent cache is walked in blocks shared by the group's
 * heads, and the pool runs once. Long caches are split by keys instead (R1_MLA_SPLIT_KEYS), so
 * that each cache row is read from memory once per layer.
 *
 * A q8_0 cache (backend.h) is read a block of keys at a time, dequantised into the task's scratch
 * by the level's SIMD kernel and then used as float32 by every head of the task: one dequantised
 * row serves 2 x heads dot products or axpys, so the float path's kernels do the arithmetic and
 * the result is exactly the float cache's on the dequantised values. Integer dot products for the
 * scores would also round each head's query to 8 bits, and the value sums (weights times rows)
 * need the rows in float anyway; the bytes read from memory, which a quarter-size cache is
 * about, are the same either way. */
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_kernels.h"
#include "dtype.h"
#include "error.h"
#include "kernels_levels.h"
#include "softmax.h"

enum {
    /* Rows of W_UK dequantised per pass: 16 x 512 floats (32 KiB) stay in L1 while summed. */
    R1_MLA_UK_ROWS = 16,
    /* Latent-cache rows per block: 128 x 576 floats (288 KiB) stay in L2 while a group of
     * heads passes over them. */
    R1_MLA_KEY_BLOCK = 128,
    /* Above this many keys (for V2-Lite, 2.3 MiB of cache per layer: more than one core's L2
     * on the 2-core VM of docs/performance.md) the cache is walked once per layer: key blocks are
     * the tasks, each block's scores, softmax terms and value sums made for every head while it
     * sits in L2, and the blocks' partial results merged per head (the log-sum-exp of split-key
     * attention). Below it, a group of heads per thread (fewer pool runs); the threads then read
     * the same blocks at the same time and the second read hits the shared cache. A fixed count,
     * not a thread count: the path, hence every bit of the result, is the same on any pool. */
    R1_MLA_SPLIT_KEYS = 1024,
};

typedef struct r1_mla_ctx {
    const r1_cpu_kernel_table *k;
    r1_threadpool *pool;
    const r1_op_mla_decode_params *p;
    const float *q;   /* (H, dn + dr) */
    const float *lat; /* (n_keys, rkv + dr), or NULL with lat_q8 */
    /* A q8_0 cache instead: rows of lat_row_bytes. ld: the float stride of key rows as the
     * heads read them (rkv + dr for lat; the row's blocks times 32 once dequantised). */
    const uint8_t *lat_q8;
    size_t lat_row_bytes;
    int64_t ld;
    const uint8_t *kv_b;
    const float *kv_b_scale; /* fp8 block scales, else NULL */
    int64_t scale_cols;
    size_t row_bytes;
    int32_t dtype;
    int32_t act_q8;
    float *out;    /* (H, dv) */
    int64_t group; /* heads per task */
    /* Split keys only: every head's latent query (H, dl), then per key block and head its
     * partial result (rkv value sums, the block's max score, its sum of exponentials). */
    float *qlat;
    float *part;
    _Atomic int32_t failed;
} r1_mla_ctx;

static const float *r1_mla_scale_row(const r1_mla_ctx *c, int64_t r)
{
    return c->kv_b_scale != NULL ? c->kv_b_scale + (r / R1_FP8_SCALE_BLOCK) * c->scale_cols : NULL;
}

int64_t r1_cpu__mla_cache_row_floats(int64_t rkv, int64_t dr)
{
    return rkv + (dr + R1_QBLOCK - 1) / R1_QBLOCK * R1_QBLOCK;
}

size_t r1_cpu__mla_cache_row_bytes(int32_t lat_dtype, int64_t rkv, int64_t dr)
{
    if (lat_dtype == R1_DTYPE_Q8_0)
        return rkv % R1_QBLOCK == 0
                   ? r1_dtype__row_bytes(R1_DTYPE_Q8_0, r1_cpu__mla_cache_row_floats(rkv, dr))
                   : 0;
    return lat_dtype == R1_DTYPE_F32 ? (size_t)(rkv + dr) * sizeof(float) : 0;
}

/* Keys j0 .. j0 + n - 1 as float rows ld apart: the float cache itself, or a q8_0 cache's rows
 * dequantised into buf (n * ld floats). */
static const float *r1_mla_keys(const r1_mla_ctx *c, int64_t j0, int64_t n, float *buf)
{
    if (c->lat_q8 == NULL)
        return c->lat + j0 * c->ld;
    for (int64_t j = 0; j < n; j++)
        c->k->dequant[R1_DTYPE_Q8_0](c->lat_q8 + (size_t)(j0 + j) * c->lat_row_bytes, NULL,
                                     buf + j * c->ld, c->ld);
    return buf;
}

/* Floats of a task's dequantised key block (0 for a float cache). */
static size_t r1_mla_key_buf_floats(const r1_mla_ctx *c)
{
    return c->lat_q8 != NULL ? (size_t)(R1_MLA_KEY_BLOCK * c->ld) : 0;
}

/* One head's query in the latent space, W_UK^h^T q_nope, then q_pe: rows of W_UK dequantised
 * a few at a time into wrows and summed in row order (an axpy per row, with qlat kept in
 * registers). */
static void r1_mla_absorb(const r1_mla_ctx *c, int64_t h, float *wrows, float *qlat)
{
    const r1_op_mla_decode_params *p = c->p;
    const int64_t dn = p->qk_nope_dim, dr = p->qk_rope_dim, dv = p->v_dim, rkv = p->kv_lora_rank;
    const float *qh = c->q + h * (dn + dr);
    const int64_t row0 = h * (dn + dv);
    memset(qlat, 0, (size_t)rkv * sizeof(float));
    for (int64_t i0 = 0; i0 < dn; i0 += R1_MLA_UK_ROWS) {
        const int64_t n = dn - i0 < R1_MLA_UK_ROWS ? dn - i0 : R1_MLA_UK_ROWS;
        for (int64_t i = 0; i < n; i++)
            c->k->dequant[c->dtype](c->kv_b + (size_t)(row0 + i0 + i) * c->row_bytes,
                                    r1_mla_scale_row(c, row0 + i0 + i), wrows + i * rkv, rkv);
        c->k->axpy_rows(qh + i0, wrows, rkv, n, rkv, qlat);
    }
    memcpy(qlat + rkv, qh + dn, (size_t)dr * sizeof(float));
}

/* One head's output, W_UV^h o_lat, with the kernels a matmul would use for this dtype (8-bit
 * activations for Q8_0/Q4_0 when that mode is on), so the result is what the product per head
 * gave. */
static void r1_mla_values_out(const r1_mla_ctx *c, int64_t h, const float *olat,
                              r1_cpu_qx_block *xq)
{
    const r1_op_mla_decode_params *p = c->p;
    const int64_t dn = p->qk_nope_dim, dv = p->v_dim, rkv = p->kv_lora_rank;
    const int64_t n_blocks = rkv / R1_QBLOCK, row0 = h * (dn + dv);
    float *o = c->out + h * dv;
    const uint8_t *uv = c->kv_b + (size_t)(row0 + dn) * c->row_bytes;
    if (c->act_q8 && c->k->dot_qx[c->dtype] != NULL) {
        r1_cpu__quantize_act(c->k, olat, xq, rkv);
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

/* A group of heads: the latent cache is walked in blocks of keys that stay in L2 while every
 * head of the group uses them, once for the scores and once for the value sums, instead of once
 * per head. Each head's arithmetic is the same whatever the grouping (scores one dot per key,
 * value sums in key order), so the result does not depend on the thread count. */
static void r1_mla_group_task(void *ctx, int64_t g, int32_t worker)
{
    r1_mla_ctx *c = ctx;
    const r1_op_mla_decode_params *p = c->p;
    const int64_t rkv = p->kv_lora_rank, dl = rkv + p->qk_rope_dim, n_keys = p->n_keys;
    const int64_t h0 = g * c->group, nh = p->n_heads - h0 < c->group ? p->n_heads - h0 : c->group;
    const int64_t per_head = dl + rkv + n_keys; /* qlat, olat, scores */
    size_t floats = (size_t)(R1_MLA_UK_ROWS * rkv + nh * per_head) + r1_mla_key_buf_floats(c);
    size_t bytes =
        floats * sizeof(float) + (size_t)(rkv / R1_QBLOCK) * sizeof(r1_cpu_qx_block) + 64;
    float *wrows = r1_threadpool__scratch(c->pool, worker, bytes);
    if (wrows == NULL) {
        atomic_store(&c->failed, 1);
        return;
    }
    float *kbuf = wrows + R1_MLA_UK_ROWS * rkv; /* a q8_0 cache's dequantised key block */
    float *heads = kbuf + r1_mla_key_buf_floats(c);
    r1_cpu_qx_block *xq =
        (r1_cpu_qx_block *)(void *)(((uintptr_t)(heads + nh * per_head) + 63) & ~(uintptr_t)63);
    /* Head i of the group: its query in the latent space at heads + i * per_head, then its
     * latent output (rkv), then its scores (n_keys). */
    for (int64_t i = 0; i < nh; i++)
        r1_mla_absorb(c, h0 + i, wrows, heads + i * per_head);
    for (int64_t j0 = 0; j0 < n_keys; j0 += R1_MLA_KEY_BLOCK) {
        const int64_t j1 = j0 + R1_MLA_KEY_BLOCK < n_keys ? j0 + R1_MLA_KEY_BLOCK : n_keys;
        const float *keys = r1_mla_keys(c, j0, j1 - j0, kbuf);
        for (int64_t i = 0; i < nh; i++) {
            const float *qlat = heads + i * per_head;
            float *scores = heads + i * per_head + dl + rkv;
            for (int64_t j = j0; j < j1; j++)
                scores[j] = c->k->dot_f32(qlat, keys + (j - j0) * c->ld, dl);
        }
    }
    for (int64_t i = 0; i < nh; i++) {
        r1_softmax__scaled(heads + i * per_head + dl + rkv, n_keys, p->softmax_scale);
        memset(heads + i * per_head + dl, 0, (size_t)rkv * sizeof(float));
    }
    for (int64_t j0 = 0; j0 < n_keys; j0 += R1_MLA_KEY_BLOCK) {
        const int64_t nb = n_keys - j0 < R1_MLA_KEY_BLOCK ? n_keys - j0 : R1_MLA_KEY_BLOCK;
        const float *keys = r1_mla_keys(c, j0, nb, kbuf);
        for (int64_t i = 0; i < nh; i++) {
            float *olat = heads + i * per_head + dl;
            c->k->axpy_rows(olat + rkv + j0, keys, c->ld, nb, rkv, olat);
        }
    }
    for (int64_t i = 0; i < nh; i++)
        r1_mla_values_out(c, h0 + i, heads + i * per_head + dl, xq);
}

/* ---- split keys (more than R1_MLA_SPLIT_KEYS) ------------------------------------------ */

enum { R1_MLA_PART_EXTRA = 2 }; /* a partial's max score and sum of exponentials */

static size_t r1_mla_part_floats(const r1_op_mla_decode_params *p)
{
    return (size_t)(p->kv_lora_rank + R1_MLA_PART_EXTRA);
}

/* A group of heads' latent queries into c->qlat. */
static void r1_mla_absorb_task(void *ctx, int64_t g, int32_t worker)
{
    r1_mla_ctx *c = ctx;
    const r1_op_mla_decode_params *p = c->p;
    const int64_t rkv = p->kv_lora_rank, dl = rkv + p->qk_rope_dim;
    const int64_t h0 = g * c->group, nh = p->n_heads - h0 < c->group ? p->n_heads - h0 : c->group;
    float *wrows =
        r1_threadpool__scratch(c->pool, worker, (size_t)(R1_MLA_UK_ROWS * rkv) * sizeof(float));
    if (wrows == NULL) {
        atomic_store(&c->failed, 1);
        return;
    }
    for (int64_t i = 0; i < nh; i++)
        r1_mla_absorb(c, h0 + i, wrows, c->qlat + (h0 + i) * dl);
}

/* Key block kb for every head: scores, exponentials against the block's own max, and value sums,
 * the block read from memory once and reused from L2 by each head. */
static void r1_mla_block_task(void *ctx, int64_t kb, int32_t worker)
{
    r1_mla_ctx *c = ctx;
    const r1_op_mla_decode_params *p = c->p;
    const int64_t rkv = p->kv_lora_rank, dl = rkv + p->qk_rope_dim, j0 = kb * R1_MLA_KEY_BLOCK;
    const int64_t nb = p->n_keys - j0 < R1_MLA_KEY_BLOCK ? p->n_keys - j0 : R1_MLA_KEY_BLOCK;
    float *e = r1_threadpool__scratch(
        c->pool, worker, (R1_MLA_KEY_BLOCK + r1_mla_key_buf_floats(c)) * sizeof(float));
    if (e == NULL) {
        atomic_store(&c->failed, 1);
        return;
    }
    const float *block = r1_mla_keys(c, j0, nb, e + R1_MLA_KEY_BLOCK);
    const float sc = (float)p->softmax_scale;
    for (int64_t h = 0; h < p->n_heads; h++) {
        float *part =
            c->part + ((size_t)kb * (size_t)p->n_heads + (size_t)h) * r1_mla_part_floats(p);
        float mx = -INFINITY;
        for (int64_t j = 0; j < nb; j++) {
            e[j] = c->k->dot_f32(c->qlat + h * dl, block + j * c->ld, dl);
            mx = e[j] > mx ? e[j] : mx;
        }
        double sum = 0;
        for (int64_t j = 0; j < nb; j++)
            sum += (e[j] = expf((e[j] - mx) * sc));
        memset(part, 0, (size_t)rkv * sizeof(float));
        c->k->axpy_rows(e, block, c->ld, nb, rkv, part);
        part[rkv] = mx;
        part[rkv + 1] = (float)sum;
    }
}

/* A group of heads: the blocks' partials merged in block order (each weighed by exp of its max
 * less the overall max, over the total), then W_UV. */
static void r1_mla_merge_task(void *ctx, int64_t g, int32_t worker)
{
    r1_mla_ctx *c = ctx;
    const r1_op_mla_decode_params *p = c->p;
    const int64_t rkv = p->kv_lora_rank, H = p->n_heads;
    const int64_t n_blocks = (p->n_keys + R1_MLA_KEY_BLOCK - 1) / R1_MLA_KEY_BLOCK;
    const int64_t h0 = g * c->group, nh = H - h0 < c->group ? H - h0 : c->group;
    const size_t pf = r1_mla_part_floats(p);
    float *olat = r1_threadpool__scratch(c->pool, worker,
                                         (size_t)rkv * sizeof(float) + 64 +
                                             (size_t)(rkv / R1_QBLOCK) * sizeof(r1_cpu_qx_block));
    if (olat == NULL) {
        atomic_store(&c->failed, 1);
        return;
    }
    r1_cpu_qx_block *xq =
        (r1_cpu_qx_block *)(void *)(((uintptr_t)(olat + rkv) + 63) & ~(uintptr_t)63);
    for (int64_t h = h0; h < h0 + nh; h++) {
        /* Block b's partial for head h: first + b * stride. */
        const float *first = c->part + (size_t)h * pf;
        const size_t stride = (size_t)H * pf;
        float mx = -INFINITY;
        for (int64_t b = 0; b < n_blocks; b++)
            mx = fmaxf(mx, first[(size_t)b * stride + (size_t)rkv]);
        double total = 0;
        for (int64_t b = 0; b < n_blocks; b++) {
            const float *part = first + (size_t)b * stride;
            total += exp((double)(part[rkv] - mx) * p->softmax_scale) * (double)part[rkv + 1];
        }
        memset(olat, 0, (size_t)rkv * sizeof(float));
        for (int64_t b = 0; b < n_blocks; b++) {
            const float *part = first + (size_t)b * stride;
            const float wgt = (float)(exp((double)(part[rkv] - mx) * p->softmax_scale) / total);
            c->k->axpy(wgt, part, rkv, olat);
        }
        r1_mla_values_out(c, h, olat, xq);
    }
}

/* The three runs of the split-key path. The queries and partials are the op's own allocation
 * (the workers write disjoint parts of it): a serial run's tasks take the caller's scratch. */
static r1_status r1_mla_split_keys(r1_mla_ctx *c)
{
    const r1_op_mla_decode_params *p = c->p;
    const int64_t H = p->n_heads, dl = p->kv_lora_rank + p->qk_rope_dim;
    const int64_t n_blocks = (p->n_keys + R1_MLA_KEY_BLOCK - 1) / R1_MLA_KEY_BLOCK;
    const size_t qlat_floats = (size_t)(H * dl);
    const size_t part_floats = (size_t)n_blocks * (size_t)H * r1_mla_part_floats(p);
    float *buf = malloc((qlat_floats + part_floats) * sizeof(float));
    if (buf == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY,
                             "mla decode: cannot allocate the partial results of %lld key blocks",
                             (long long)n_blocks);
    c->qlat = buf;
    c->part = buf + qlat_floats;
    /* the largest scratch of the three runs' tasks (absorb, block, merge) */
    const int64_t rkv = p->kv_lora_rank;
    size_t scratch = (size_t)(R1_MLA_UK_ROWS * rkv) * sizeof(float);
    const size_t merge =
        (size_t)rkv * sizeof(float) + 64 + (size_t)(rkv / R1_QBLOCK) * sizeof(r1_cpu_qx_block);
    scratch = scratch > merge ? scratch : merge;
    const size_t block = (R1_MLA_KEY_BLOCK + r1_mla_key_buf_floats(c)) * sizeof(float);
    scratch = scratch > block ? scratch : block;
    r1_status st = r1_threadpool__reserve(c->pool, scratch);
    if (st != R1_OK) {
        free(buf);
        return st;
    }
    const int64_t n_groups = (H + c->group - 1) / c->group;
    r1_threadpool__run(c->pool, n_groups, r1_mla_absorb_task, c);
    if (!atomic_load(&c->failed))
        r1_threadpool__run(c->pool, n_blocks, r1_mla_block_task, c);
    if (!atomic_load(&c->failed))
        r1_threadpool__run(c->pool, n_groups, r1_mla_merge_task, c);
    free(buf);
    return R1_OK;
}

r1_status r1_cpu__mla_decode(r1_threadpool *pool, const r1_op_mla_decode_params *p, const float *q,
                             const float *lat, const r1_tensor *kv_b, float *out)
{
    return r1_cpu__mla_decode_cache(pool, p, q, lat, R1_DTYPE_F32, kv_b, out);
}

r1_status r1_cpu__mla_decode_cache(r1_threadpool *pool, const r1_op_mla_decode_params *p,
                                   const float *q, const void *lat, int32_t lat_dtype,
                                   const r1_tensor *kv_b, float *out)
{
    if (p == NULL || q == NULL || lat == NULL || kv_b == NULL || kv_b->data == NULL || out == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "mla decode: NULL operand");
    if ((lat_dtype != R1_DTYPE_F32 && lat_dtype != R1_DTYPE_Q8_0) ||
        (lat_dtype == R1_DTYPE_Q8_0 && p->kv_lora_rank % R1_QBLOCK != 0))
        return r1_error__set(R1_ERR_INVALID_ARG, "mla decode: a latent cache of type %d",
                             lat_dtype);
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
        .lat = lat_dtype == R1_DTYPE_F32 ? lat : NULL,
        .lat_q8 = lat_dtype == R1_DTYPE_Q8_0 ? lat : NULL,
        .lat_row_bytes = r1_cpu__mla_cache_row_bytes(lat_dtype, rkv, p->qk_rope_dim),
        .ld = lat_dtype == R1_DTYPE_Q8_0 ? r1_cpu__mla_cache_row_floats(rkv, p->qk_rope_dim)
                                         : rkv + p->qk_rope_dim,
        .kv_b = kv_b->data,
        .kv_b_scale = tr->has_block_scale ? kv_b->scale : NULL,
        .scale_cols = kv_b->scale_cols,
        .row_bytes = row_bytes,
        .dtype = kv_b->dtype,
        .act_q8 = r1_cpu__act_q8_enabled() && rkv % R1_QBLOCK == 0,
        .out = out,
    };
    /* One group of heads per thread (the absorption, W_UV and, for short caches, the whole op). */
    const int64_t n_threads = r1_threadpool__size(pool) > 0 ? r1_threadpool__size(pool) : 1;
    c.group = (p->n_heads + n_threads - 1) / n_threads;
    if (p->n_keys > R1_MLA_SPLIT_KEYS) {
        r1_status st = r1_mla_split_keys(&c);
        if (st != R1_OK)
            return st;
    } else {
        /* r1_mla_group_task's scratch for a full group */
        const int64_t per_head = rkv + p->qk_rope_dim + rkv + p->n_keys; /* qlat, olat, scores */
        const size_t scratch =
            ((size_t)(R1_MLA_UK_ROWS * rkv + c.group * per_head) + r1_mla_key_buf_floats(&c)) *
                sizeof(float) +
            (size_t)(rkv / R1_QBLOCK) * sizeof(r1_cpu_qx_block) + 64;
        r1_status st = r1_threadpool__reserve(pool, scratch);
        if (st != R1_OK)
            return st;
        r1_threadpool__run(pool, (p->n_heads + c.group - 1) / c.group, r1_mla_group_task, &c);
    }
    if (atomic_load(&c.failed))
        return r1_error__set(R1_ERR_NO_MEMORY, "mla decode: cannot allocate a head's scratch");
    return R1_OK;
}
