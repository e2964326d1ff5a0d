/* cpu_gqa_attention.c: one decoded token's grouped-query attention over an f32/f16/q8_0 key and
 * value cache (R1_OP_GQA_DECODE) on the CPU. */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_ops.h"
#include "dtype.h"
#include "error.h"

/* Keys per task: a long cache is split into blocks of this many keys, each block's partial
 * softmax sums merged afterwards, so every thread has work whatever the number of kv heads. */
enum { R1_GQA_KEY_BLOCK = 256 };

typedef struct r1_gqa_ctx {
    r1_threadpool *pool;
    const r1_op_gqa_decode_params *p;
    const float *q;       /* (n_heads, head_dim) */
    const uint8_t *k, *v; /* (n_keys, n_kv_heads * head_dim) rows of row_bytes */
    size_t row_bytes, head_bytes;
    int64_t n_blocks; /* key blocks */
    /* (n_kv_heads, n_blocks, G) partials: the block's score maximum, its sum of exponentials
     * and its unnormalised value sum (head_dim) */
    double *parts;
    atomic_int failed;
} r1_gqa_ctx;

/* One kv head's group over one block of keys: every cache row of that head is dequantised
 * once and serves all the group's queries, so the cache is read once per layer whatever the
 * group size. Scores and sums are accumulated in double, as the reference does, so the cache's
 * type is the only rounding beyond float32 activations. */
static void r1_gqa_block_task(void *ctx_, int64_t task, int32_t worker)
{
    r1_gqa_ctx *c = ctx_;
    const r1_op_gqa_decode_params *p = c->p;
    const int64_t hd = p->head_dim, G = p->n_heads / p->n_kv_heads;
    const int64_t g = task / c->n_blocks, blk = task % c->n_blocks;
    const int64_t n0 = blk * R1_GQA_KEY_BLOCK;
    const int64_t N = p->n_keys - n0 < R1_GQA_KEY_BLOCK ? p->n_keys - n0 : R1_GQA_KEY_BLOCK;
    float *row = r1_threadpool__scratch(c->pool, worker, (size_t)(hd + G * N) * sizeof(float));
    if (row == NULL) {
        atomic_store(&c->failed, 1);
        return;
    }
    float *scores = row + hd; /* (G, N) */
    const float *qg = c->q + g * G * hd;
    const uint8_t *kg = c->k + (size_t)n0 * c->row_bytes + (size_t)g * c->head_bytes;
    const uint8_t *vg = c->v + (size_t)n0 * c->row_bytes + (size_t)g * c->head_bytes;
    for (int64_t n = 0; n < N; n++) {
        r1_dtype__dequantize_row(p->kv_dtype, kg + (size_t)n * c->row_bytes, NULL, row, hd);
        for (int64_t j = 0; j < G; j++) {
            double dot = 0;
            for (int64_t d = 0; d < hd; d++)
                dot += (double)qg[j * hd + d] * row[d];
            scores[j * N + n] = (float)(dot * p->softmax_scale);
        }
    }
    double *part = c->parts + (g * c->n_blocks + blk) * G * (hd + 2);
    for (int64_t j = 0; j < G; j++) {
        double *pj = part + j * (hd + 2);
        float mx = scores[j * N];
        for (int64_t n = 1; n < N; n++)
            mx = scores[j * N + n] > mx ? scores[j * N + n] : mx;
        double sum = 0;
        for (int64_t n = 0; n < N; n++) {
            const float e = (float)exp((double)scores[j * N + n] - mx);
            scores[j * N + n] = e;
            sum += e;
        }
        pj[0] = mx;
        pj[1] = sum;
        memset(pj + 2, 0, (size_t)hd * sizeof(double));
    }
    for (int64_t n = 0; n < N; n++) {
        r1_dtype__dequantize_row(p->kv_dtype, vg + (size_t)n * c->row_bytes, NULL, row, hd);
        for (int64_t j = 0; j < G; j++) {
            double *acc = part + j * (hd + 2) + 2;
            const double w = scores[j * N + n];
            for (int64_t d = 0; d < hd; d++)
                acc[d] += w * row[d];
        }
    }
}

/* out head (g, j) = sum over blocks of acc * e^(max_b - M) / sum of sum_b * e^(max_b - M). */
static void r1_gqa_merge(const r1_gqa_ctx *c, float *out)
{
    const r1_op_gqa_decode_params *p = c->p;
    const int64_t hd = p->head_dim, G = p->n_heads / p->n_kv_heads, B = c->n_blocks;
    for (int64_t g = 0; g < p->n_kv_heads; g++)
        for (int64_t j = 0; j < G; j++) {
            const double *first = c->parts + (g * B * G + j) * (hd + 2);
            double M = first[0], total = 0;
            for (int64_t b = 1; b < B; b++)
                M = fmax(M, first[b * G * (hd + 2)]);
            float *o = out + (g * G + j) * hd;
            for (int64_t d = 0; d < hd; d++) {
                double acc = 0;
                for (int64_t b = 0; b < B; b++) {
                    const double *pb = first + b * G * (hd + 2);
                    acc += pb[2 + d] * (B > 1 ? exp(pb[0] - M) : 1.0);
                }
                o[d] = (float)acc;
            }
            for (int64_t b = 0; b < B; b++) {
                const double *pb = first + b * G * (hd + 2);
                total += pb[1] * (B > 1 ? exp(pb[0] - M) : 1.0);
            }
            for (int64_t d = 0; d < hd; d++)
                o[d] = (float)((double)o[d] / total);
        }
}

int32_t r1_cpu__gqa_decode_supported(const r1_op *op)
{
    const r1_op_gqa_decode_params *p = op != NULL ? op->params : NULL;
    if (p == NULL || op->kind != R1_OP_GQA_DECODE || op->n_src < 3 || op->dst.buf == NULL)
        return 0;
    for (int32_t i = 0; i < 3; i++)
        if (op->src[i].buf == NULL || op->src[i].layout != 0)
            return 0;
    if (p->n_heads <= 0 || p->n_kv_heads <= 0 || p->n_heads % p->n_kv_heads != 0 ||
        p->head_dim <= 0 || p->n_keys <= 0)
        return 0;
    if (p->kv_dtype != R1_DTYPE_F32 && p->kv_dtype != R1_DTYPE_F16 && p->kv_dtype != R1_DTYPE_Q8_0)
        return 0;
    return op->src[0].dtype == R1_DTYPE_F32 && op->dst.dtype == R1_DTYPE_F32 &&
           op->src[1].dtype == p->kv_dtype && op->src[2].dtype == p->kv_dtype &&
           r1_dtype__row_bytes(p->kv_dtype, p->head_dim) > 0;
}

r1_status r1_cpu__gqa_decode(r1_threadpool *pool, const r1_op_gqa_decode_params *p, const float *q,
                             const void *k, const void *v, float *out)
{
    if (p == NULL || q == NULL || k == NULL || v == NULL || out == NULL || p->n_heads <= 0 ||
        p->n_kv_heads <= 0 || p->n_heads % p->n_kv_heads != 0 || p->head_dim <= 0 ||
        p->n_keys <= 0 || r1_dtype__row_bytes(p->kv_dtype, p->head_dim) == 0)
        return r1_error__set(R1_ERR_INVALID_ARG, "gqa decode: bad operands");
    const size_t head_bytes = r1_dtype__row_bytes(p->kv_dtype, p->head_dim);
    const int64_t G = p->n_heads / p->n_kv_heads;
    r1_gqa_ctx c = {
        .pool = pool,
        .p = p,
        .q = q,
        .k = k,
        .v = v,
        .row_bytes = head_bytes * (size_t)p->n_kv_heads,
        .head_bytes = head_bytes,
        .n_blocks = (p->n_keys + R1_GQA_KEY_BLOCK - 1) / R1_GQA_KEY_BLOCK,
    };
    c.parts = malloc((size_t)(p->n_kv_heads * c.n_blocks * G * (p->head_dim + 2)) * sizeof(double));
    r1_status st = c.parts == NULL
                       ? r1_error__set(R1_ERR_NO_MEMORY, "gqa decode: cannot allocate partials")
                       : r1_threadpool__reserve(pool, (size_t)(p->head_dim + G * R1_GQA_KEY_BLOCK) *
                                                          sizeof(float));
    if (st == R1_OK) {
        r1_threadpool__run(pool, p->n_kv_heads * c.n_blocks, r1_gqa_block_task, &c);
        if (atomic_load(&c.failed))
            st = r1_error__set(R1_ERR_NO_MEMORY, "gqa decode: cannot allocate a block's scratch");
        else
            r1_gqa_merge(&c, out);
    }
    free(c.parts);
    return st;
}

r1_status r1_cpu__gqa_decode_run(r1_threadpool *pool, const r1_op *op)
{
    if (!r1_cpu__gqa_decode_supported(op))
        return r1_error__set(R1_ERR_UNSUPPORTED, "cpu gqa decode: unsupported operands");
    const r1_op_gqa_decode_params *p = op->params;
    const size_t q_bytes = (size_t)(p->n_heads * p->head_dim) * sizeof(float);
    const size_t kv_bytes =
        r1_dtype__row_bytes(p->kv_dtype, p->head_dim) * (size_t)(p->n_kv_heads * p->n_keys);
    const r1_dtensor *t[4] = {&op->dst, &op->src[0], &op->src[1], &op->src[2]};
    const size_t need[4] = {q_bytes, q_bytes, kv_bytes, kv_bytes};
    void *ptr[4];
    for (int i = 0; i < 4; i++) {
        const size_t have = r1_cpu__buf_bytes(t[i]->buf);
        if (t[i]->offset > have || have - t[i]->offset < need[i])
            return r1_error__set(R1_ERR_OUT_OF_RANGE,
                                 "cpu gqa decode: an operand exceeds its buffer");
        ptr[i] = (char *)r1_cpu__buf_data(t[i]->buf) + t[i]->offset;
    }
    return r1_cpu__gqa_decode(pool, p, ptr[1], ptr[2], ptr[3], ptr[0]);
}
