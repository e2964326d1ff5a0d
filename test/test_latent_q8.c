/* test_latent_q8.c: the q8_0 latent (MLA) cache: its row layout as written, the CPU attention ops
 * over it against the float ops on its dequantised rows, and its logits against the f32 cache. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "budget.h"
#include "compute.h"
#include "cpu_features.h"
#include "cpu_kernels.h"
#include "cpu_ops.h"
#include "dtype.h"
#include "forward.h"
#include "model.h"
#include "r1.h"
#include "threadpool.h"

static const char *models_dir(void)
{
    const char *d = getenv("R1_TEST_MODELS_DIR");
    return d ? d : R1_TEST_MODELS_DIR;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static float rng_f(void) /* uniform in [-1, 1) */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((double)(rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* The row layout of backend.h (R1_OP_MLA_DECODE), built here independently of the engine: c_kv
 * in rkv / 32 blocks, then k_pe in blocks of its own, the last zero-padded. */
static size_t q8_row_bytes(int64_t rkv, int64_t dr)
{
    return (size_t)(rkv / 32 + (dr + 31) / 32) * sizeof(r1_block_q8_0);
}

static void q8_row(const float *row, int64_t rkv, int64_t dr, uint8_t *out)
{
    r1_block_q8_0 *b = (r1_block_q8_0 *)(void *)out;
    r1_quantize__q8_0(row, b, rkv);
    for (int64_t k = 0; k < (dr + 31) / 32; k++) {
        float pe[32] = {0};
        for (int64_t i = 0; i < 32 && k * 32 + i < dr; i++)
            pe[i] = row[rkv + k * 32 + i];
        r1_quantize__q8_0(pe, b + rkv / 32 + k, 32);
    }
}

/* A random latent cache of n rows: f32 rows (c_kv about unit size after its norm, k_pe larger,
 * as a rotated key is), their q8_0 rows, and the q8_0 rows dequantised (rkv + dr floats each). */
typedef struct test_cache {
    int64_t n, rkv, dr;
    float *f32, *deq;
    uint8_t *q8;
} test_cache;

static void cache_make(test_cache *c, int64_t n, int64_t rkv, int64_t dr)
{
    const int64_t dl = rkv + dr;
    const size_t rb = q8_row_bytes(rkv, dr);
    c->n = n;
    c->rkv = rkv;
    c->dr = dr;
    c->f32 = malloc((size_t)(n * dl) * sizeof(float));
    c->deq = malloc((size_t)(n * dl) * sizeof(float));
    c->q8 = malloc((size_t)n * rb);
    ck_assert(c->f32 != NULL && c->deq != NULL && c->q8 != NULL);
    for (int64_t j = 0; j < n; j++) {
        float *row = c->f32 + j * dl;
        for (int64_t i = 0; i < dl; i++)
            row[i] = rng_f() * (i < rkv ? 1.5f : 6.0f);
        q8_row(row, rkv, dr, c->q8 + (size_t)j * rb);
        float full[2048];
        const int64_t padded = rkv + (dr + 31) / 32 * 32;
        ck_assert_int_le(padded, 2048);
        r1_dtype__dequantize_row(R1_DTYPE_Q8_0, c->q8 + (size_t)j * rb, NULL, full, padded);
        memcpy(c->deq + j * dl, full, (size_t)dl * sizeof(float));
        for (int64_t i = dl; i < padded; i++) /* the padding holds zeros */
            ck_assert(full[i] == 0.0f);
    }
}

static void cache_free(test_cache *c)
{
    free(c->f32);
    free(c->deq);
    free(c->q8);
}

static float *random_floats(int64_t n, float scale)
{
    float *x = malloc((size_t)n * sizeof(float));
    ck_assert_ptr_nonnull(x);
    for (int64_t i = 0; i < n; i++)
        x[i] = rng_f() * scale;
    return x;
}

/* The decode op on the q8_0 rows gives the float op's result on their dequantised rows bit for
 * bit, at every kernel level and on the pool or alone, for caches short enough for the head
 * groups and long enough for the split by key blocks (above 1024 keys), with the rope part a
 * whole block (V2-Lite / R1: 512 + 64) and half of one (the tiny models: 64 + 16). */
START_TEST(test_latent_q8_decode_op_is_float_op_on_dequantised_rows)
{
    static const int64_t SHAPES[][2] = {{64, 16}, {512, 64}};
    static const int64_t KEYS[] = {1, 130, 1100};
    enum { H = 4, DN = 32, DV = 32 };
    r1_threadpool *shared = NULL;
    ck_assert_int_eq(r1_threadpool__acquire_shared(&shared), R1_OK);
    const int32_t prev_act = r1_cpu__set_act_q8(0);
    for (size_t si = 0; si < sizeof SHAPES / sizeof SHAPES[0]; si++) {
        const int64_t rkv = SHAPES[si][0], dr = SHAPES[si][1];
        test_cache c;
        cache_make(&c, 1100, rkv, dr);
        float *q = random_floats(H * (DN + dr), 1.0f);
        float *wk = random_floats(H * (DN + DV) * rkv, 0.1f);
        const r1_tensor kv_b = r1_tensor__f32_matrix(wk, H * (DN + DV), rkv);
        float want[H * DV], got[H * DV];
        for (size_t ki = 0; ki < sizeof KEYS / sizeof KEYS[0]; ki++) {
            const r1_op_mla_decode_params p = {.n_heads = H,
                                               .qk_nope_dim = DN,
                                               .qk_rope_dim = dr,
                                               .v_dim = DV,
                                               .kv_lora_rank = rkv,
                                               .n_keys = KEYS[ki],
                                               .softmax_scale = 0.1};
            for (int32_t level = R1_CPU_SCALAR; level <= r1_cpu__detected_level(); level++) {
                ck_assert_int_eq(r1_cpu__force_level(level), level);
                for (int k = 0; k < 2; k++) {
                    r1_threadpool *pool = k ? shared : NULL;
                    ck_assert_int_eq(r1_cpu__mla_decode(pool, &p, q, c.deq, &kv_b, want), R1_OK);
                    memset(got, 0xff, sizeof got);
                    ck_assert_msg(r1_cpu__mla_decode_cache(pool, &p, q, c.q8, R1_DTYPE_Q8_0, &kv_b,
                                                           got) == R1_OK,
                                  "%s", r1_last_error());
                    ck_assert_msg(memcmp(want, got, sizeof got) == 0,
                                  "%lld + %lld, %lld keys, level %s, pool %d: q8_0 rows differ "
                                  "from their dequantised floats",
                                  (long long)rkv, (long long)dr, (long long)KEYS[ki],
                                  r1_cpu__level_name(level), k);
                }
            }
            r1_cpu__force_level(-1);
            /* and the quantisation did change the result (the rows are not all exact) */
            ck_assert_int_eq(r1_cpu__mla_decode(shared, &p, q, c.f32, &kv_b, want), R1_OK);
            ck_assert(memcmp(want, got, sizeof got) != 0);
        }
        /* a cache type the op does not know, or c_kv not whole blocks, is refused */
        r1_op_mla_decode_params p = {.n_heads = H,
                                     .qk_nope_dim = DN,
                                     .qk_rope_dim = dr,
                                     .v_dim = DV,
                                     .kv_lora_rank = rkv,
                                     .n_keys = 5,
                                     .softmax_scale = 0.1};
        ck_assert_int_eq(r1_cpu__mla_decode_cache(NULL, &p, q, c.q8, R1_DTYPE_F16, &kv_b, got),
                         R1_ERR_INVALID_ARG);
        ck_assert_int_eq(r1_cpu__mla_decode_cache(NULL, &p, q, c.q8, R1_DTYPE_Q4_0, &kv_b, got),
                         R1_ERR_INVALID_ARG);
        free(q);
        free(wk);
        cache_free(&c);
    }
    r1_cpu__set_act_q8(prev_act);
    r1_threadpool__release_shared();
}
END_TEST

/* The decode op's output on q8_0 rows against its output on the original f32 rows, within a bound
 * derived from q8_0's error alone, per output element. A value x of a block whose largest
 * magnitude is a is stored as fp16(d) * round(x / d) with d = a / 127: off by at most d / 2 (the
 * rounding, plus 2^-23 * 127 d for the float x / d) and |q| d 2^-11 (the fp16 scale), i.e.
 * delta = d (0.5 + 127 / 2048 + 127 / 2^23) for every value of the block. Then per head, with
 * q_lat the query in the latent space: each score moves by at most E = scale * max_j sum_b
 * |q_lat|_1(block b) delta_jb, so the softmax weights by sum_j |p'_j - p_j| <= e^(2E) - 1 (0 for
 * one key, whose weight is 1), latent output value i by max_j delta_j(i) + (e^(2E) - 1) max_j
 * |c_j|, and output o by sum_i |W_UV[o, i]| times that; plus 1e-5 of the magnitudes for float32
 * rounding in the two runs. With one key and W_UV a selection of c_kv values the bound is the
 * storage error itself (tight); with many keys and random weights it is a worst case over signs
 * that random data stays far inside. Returns the largest error over its bound. */
static double decode_error_against_bound(int64_t nk, int select)
{
    enum { H = 4, DN = 32, DV = 32, RKV = 512, DR = 64, DL = RKV + DR };
    test_cache c;
    cache_make(&c, nk, RKV, DR);
    float *q = random_floats(H * (DN + DR), 1.0f);
    float *wk = random_floats(H * (DN + DV) * RKV, 0.05f);
    for (int64_t h = 0; h < H && select; h++) /* W_UV row o picks c_kv value 7 o + h */
        for (int64_t o = 0; o < DV; o++)
            for (int64_t i = 0; i < RKV; i++)
                wk[(h * (DN + DV) + DN + o) * RKV + i] = i == 7 * o + h ? 1.0f : 0.0f;
    const r1_tensor kv_b = r1_tensor__f32_matrix(wk, H * (DN + DV), RKV);
    const r1_op_mla_decode_params p = {.n_heads = H,
                                       .qk_nope_dim = DN,
                                       .qk_rope_dim = DR,
                                       .v_dim = DV,
                                       .kv_lora_rank = RKV,
                                       .n_keys = nk,
                                       .softmax_scale = 0.07};
    float want[H * DV], got[H * DV];
    ck_assert_int_eq(r1_cpu__mla_decode(NULL, &p, q, c.f32, &kv_b, want), R1_OK);
    ck_assert_int_eq(r1_cpu__mla_decode_cache(NULL, &p, q, c.q8, R1_DTYPE_Q8_0, &kv_b, got), R1_OK);
    /* each block's delta; per c_kv value its largest delta over the keys; the largest |c_kv| */
    const int64_t NB = (DL + 31) / 32;
    double *delta = malloc((size_t)(nk * NB) * sizeof(double)), d_val[RKV] = {0}, c_max = 0;
    for (int64_t j = 0; j < nk; j++)
        for (int64_t b = 0; b < NB; b++) {
            double a = 0;
            for (int64_t i = b * 32; i < b * 32 + 32 && i < DL; i++) {
                a = fmax(a, fabs((double)c.f32[j * DL + i]));
                if (i < RKV)
                    c_max = fmax(c_max, fabs((double)c.f32[j * DL + i]));
            }
            delta[j * NB + b] = a / 127 * (0.5 + 127.0 / 2048 + 127.0 / 8388608.0);
            for (int64_t i = b * 32; i < b * 32 + 32 && i < RKV; i++)
                d_val[i] = fmax(d_val[i], delta[j * NB + b]);
        }
    double worst = 0;
    for (int64_t h = 0; h < H; h++) {
        double qlat[DL];
        for (int64_t k = 0; k < RKV; k++) {
            qlat[k] = 0;
            for (int64_t i = 0; i < DN; i++)
                qlat[k] += (double)wk[(h * (DN + DV) + i) * RKV + k] * q[h * (DN + DR) + i];
        }
        for (int64_t k = 0; k < DR; k++)
            qlat[RKV + k] = q[h * (DN + DR) + DN + k];
        double E = 0;
        for (int64_t j = 0; j < nk; j++) {
            double e = 0;
            for (int64_t b = 0; b < NB; b++) {
                double l1 = 0;
                for (int64_t i = b * 32; i < b * 32 + 32 && i < DL; i++)
                    l1 += fabs(qlat[i]);
                e += l1 * delta[j * NB + b];
            }
            E = fmax(E, e * p.softmax_scale);
        }
        const double dp = nk > 1 ? exp(2 * E) - 1 : 0;
        for (int64_t o = 0; o < DV; o++) {
            double bound = 0, w1 = 0;
            for (int64_t i = 0; i < RKV; i++) {
                const double w = fabs((double)wk[(h * (DN + DV) + DN + o) * RKV + i]);
                bound += w * (d_val[i] + dp * c_max);
                w1 += w;
            }
            bound += 1e-5 * w1 * c_max;
            const double d = fabs((double)got[h * DV + o] - (double)want[h * DV + o]);
            ck_assert_msg(d <= bound,
                          "%lld keys, head %lld, output %lld: |q8_0 - f32| = %.3e > bound %.3e",
                          (long long)nk, (long long)h, (long long)o, d, bound);
            worst = fmax(worst, d / bound);
        }
    }
    free(delta);
    free(q);
    free(wk);
    cache_free(&c);
    return worst;
}

START_TEST(test_latent_q8_decode_op_error_within_q8_bound)
{
    const double one = decode_error_against_bound(1, 1);
    const double many = decode_error_against_bound(300, 0);
    printf("decode op on q8_0 rows against f32 rows: at most %.3f of the bound (one key, c_kv "
           "values selected), %.2e (300 keys, random weights)\n",
           one, many);
    /* the tight case does come near its bound: the bound is the storage error, not slack */
    ck_assert_double_gt(one, 0.5);
}
END_TEST

/* The same through lib/compute (the op dispatch of the CPU backend): decode and a prompt chunk
 * (R1_OP_MLA_PREFILL) over a q8_0 latent give the float ops' results on the dequantised rows. */
START_TEST(test_latent_q8_compute_ops_read_q8_rows)
{
    enum { H = 3, DN = 32, DV = 32, RKV = 64, DR = 16, DL = RKV + DR, T = 5, POS0 = 40 };
    enum { N = POS0 + T };
    test_cache c;
    cache_make(&c, N, RKV, DR);
    float *q = random_floats(T * H * (DN + DR), 1.0f);
    float *wk = random_floats(H * (DN + DV) * RKV, 0.1f);
    const r1_tensor kv_b = r1_tensor__f32_matrix(wk, H * (DN + DV), RKV);
    r1_compute comp;
    ck_assert_int_eq(r1_compute__open(&comp, "cpu", NULL), R1_OK);
    const r1_compute_latent lat_f = {.rows = c.deq, .n_ctx = N};
    const r1_compute_latent lat_q = {
        .rows_q8 = c.q8, .row_bytes = q8_row_bytes(RKV, DR), .n_ctx = N};
    float want[T * H * DV], got[T * H * DV];
    const r1_op_mla_prefill_params pp = {.n_heads = H,
                                         .qk_nope_dim = DN,
                                         .qk_rope_dim = DR,
                                         .v_dim = DV,
                                         .kv_lora_rank = RKV,
                                         .n_tokens = T,
                                         .pos0 = POS0,
                                         .softmax_scale = 0.125};
    ck_assert_int_eq(r1_compute__mla_prefill(&comp, &pp, q, &lat_f, &kv_b, want), R1_OK);
    memset(got, 0xff, sizeof got);
    ck_assert_msg(r1_compute__mla_prefill(&comp, &pp, q, &lat_q, &kv_b, got) == R1_OK, "%s",
                  r1_last_error());
    ck_assert(memcmp(want, got, sizeof got) == 0);
    const r1_op_mla_decode_params dp = {.n_heads = H,
                                        .qk_nope_dim = DN,
                                        .qk_rope_dim = DR,
                                        .v_dim = DV,
                                        .kv_lora_rank = RKV,
                                        .n_keys = N,
                                        .softmax_scale = 0.125};
    ck_assert_int_eq(r1_compute__mla_decode(&comp, &dp, q, &lat_f, &kv_b, want), R1_OK);
    memset(got, 0xff, sizeof got);
    ck_assert_msg(r1_compute__mla_decode(&comp, &dp, q, &lat_q, &kv_b, got) == R1_OK, "%s",
                  r1_last_error());
    ck_assert(memcmp(want, got, (size_t)(H * DV) * sizeof(float)) == 0);
    r1_compute__close(&comp);
    free(q);
    free(wk);
    cache_free(&c);
}
END_TEST

static r1_model *load(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.r1m", models_dir(), name);
    r1_model *m = NULL;
    ck_assert_msg(r1_model_load(&m, path, NULL, NULL) == R1_OK, "load %s: %s", path,
                  r1_last_error());
    return m;
}

static const int32_t PROMPT[] = {0,   53,  110, 38,  154, 156, 39,  238, 48, 226,
                                 262, 241, 253, 221, 211, 74,  136, 266, 36, 234,
                                 283, 83,  264, 145, 254, 80,  84,  204};
enum { N_PROMPT = sizeof PROMPT / sizeof PROMPT[0] };

/* PROMPT through the forward pass in chunks of `chunk` tokens (1: the decode op every time;
 * N_PROMPT: the chunk path) over a cache of type dtype; every position's logits. */
static float *run(r1_model *m, int32_t dtype, int64_t chunk, r1_kv_cache *kv)
{
    const r1_model_config *cfg = r1_model__config(m);
    r1_forward f;
    ck_assert_msg(r1_forward__bind(&f, r1_model__container(m), r1_model__experts(m),
                                   r1_model__compute(m)) == R1_OK,
                  "%s", r1_last_error());
    r1_forward_scratch *s = NULL;
    ck_assert_int_eq(r1_forward_scratch__create(&s, cfg, chunk, N_PROMPT), R1_OK);
    ck_assert_int_eq(r1_kv_cache__create(kv, cfg, N_PROMPT, dtype), R1_OK);
    const int64_t V = cfg->vocab_size;
    float *logits = malloc((size_t)(N_PROMPT * V) * sizeof(float));
    for (int64_t pos = 0; pos < N_PROMPT; pos += chunk) {
        const int64_t n = N_PROMPT - pos < chunk ? N_PROMPT - pos : chunk;
        ck_assert_msg(r1_forward__run(&f, s, kv, PROMPT + pos, n, pos, logits + pos * V, 1) ==
                          R1_OK,
                      "%s", r1_last_error());
    }
    r1_forward_scratch__destroy(s);
    r1_forward__unbind(&f);
    return logits;
}

/* The q8_0 cache against an f32 cache that stores each new row as its q8_0 round trip
 * (r1_forward__set_latent_roundtrip): the same values reach every reader, so the logits agree bit
 * for bit, prefilled in one chunk or several (the chunk path of lib/model/forward.c) or decoded a
 * token at a time (the decode op). The rows layer 0 writes are the plain f32 run's rows quantised
 * once (layer 0's inputs do not depend on the cache), and the q8_0 logits differ from the plain f32
 * cache's (so the q8_0 rows were read); that difference is printed, not bounded: on these tiny
 * random MoE models a change of one quantisation step flips routing decisions (measured 8e-3 of
 * max|logit| before the first flip, 0.3 at one), so no bound derived from q8_0's error holds for
 * logits; the ops' outputs are bounded below. */
START_TEST(test_latent_q8_forward_against_f32_cache)
{
    static const char *const MODELS[] = {"tiny-v3-src", "tiny-v2lite-src", "tiny-v2lite-q4_0"};
    for (size_t mi = 0; mi < sizeof MODELS / sizeof MODELS[0]; mi++) {
        r1_model *m = load(MODELS[mi]);
        const r1_model_config *cfg = r1_model__config(m);
        const int64_t rkv = cfg->kv_lora_rank, dr = cfg->qk_rope_head_dim, dl = rkv + dr;
        const size_t rb = q8_row_bytes(rkv, dr);
        const size_t V = (size_t)cfg->vocab_size;
        static const int64_t CHUNKS[] = {1, 9, N_PROMPT};
        for (size_t ci = 0; ci < sizeof CHUNKS / sizeof CHUNKS[0]; ci++) {
            const int64_t chunk = CHUNKS[ci];
            r1_kv_cache kf, kq, kr;
            float *lf = run(m, R1_DTYPE_F32, chunk, &kf);
            float *lq = run(m, R1_DTYPE_Q8_0, chunk, &kq);
            r1_forward__set_latent_roundtrip(1);
            float *lr = run(m, R1_DTYPE_F32, chunk, &kr);
            r1_forward__set_latent_roundtrip(0);
            ck_assert_int_eq(kf.lat_dtype, R1_DTYPE_F32);
            ck_assert_uint_eq(kf.lat_row_bytes, (size_t)dl * sizeof(float));
            ck_assert_int_eq(kq.lat_dtype, R1_DTYPE_Q8_0);
            ck_assert_ptr_null(kq.lat);
            ck_assert_ptr_nonnull(kq.lat_q8);
            ck_assert_uint_eq(kq.lat_row_bytes, rb);
            uint8_t *want = malloc(rb);
            for (int64_t j = 0; j < N_PROMPT; j++) {
                q8_row(kf.lat + j * dl, rkv, dr, want);
                ck_assert_msg(memcmp(want, kq.lat_q8 + (size_t)j * rb, rb) == 0,
                              "%s, chunk %lld: layer 0 row %lld is not the f32 row quantised",
                              MODELS[mi], (long long)chunk, (long long)j);
            }
            free(want);
            ck_assert_msg(memcmp(lq, lr, (size_t)N_PROMPT * V * sizeof(float)) == 0,
                          "%s, chunks of %lld: the q8_0 cache's logits are not those of its "
                          "values in f32",
                          MODELS[mi], (long long)chunk);
            double mx = 0, md = 0, md0 = 0;
            for (size_t i = 0; i < (size_t)N_PROMPT * V; i++) {
                mx = fmax(mx, fabs((double)lf[i]));
                md = fmax(md, fabs((double)lq[i] - (double)lf[i]));
                if (i < V)
                    md0 = fmax(md0, fabs((double)lq[i] - (double)lf[i]));
            }
            printf("%s, chunks of %lld: q8_0 cache against f32: max|d|/max|f32| = %.2e (first "
                   "position %.2e)\n",
                   MODELS[mi], (long long)chunk, md / mx, md0 / mx);
            ck_assert_msg(md > 0, "%s: the q8_0 cache gave the f32 cache's logits", MODELS[mi]);
            free(lf);
            free(lq);
            free(lr);
            r1_kv_cache__destroy(&kf);
            r1_kv_cache__destroy(&kq);
            r1_kv_cache__destroy(&kr);
        }
        r1_model_destroy(m);
    }
}
END_TEST

/* Types the latent cache cannot keep are refused (internal and public API); q8_0 with c_kv not
 * whole blocks keeps f32; the per-token size the budget counts is what the cache allocates. */
START_TEST(test_latent_q8_types_and_sizes)
{
    r1_model *m = load("tiny-v3-src");
    const r1_model_config *cfg = r1_model__config(m);
    r1_kv_cache kv;
    static const int32_t BAD[] = {R1_DTYPE_F16, R1_DTYPE_BF16, R1_DTYPE_FP8_E4M3, R1_DTYPE_Q4_0};
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        ck_assert_int_eq(r1_kv_cache__create(&kv, cfg, 8, BAD[i]), R1_ERR_UNSUPPORTED);
        ck_assert_ptr_nonnull(strstr(r1_last_error(), "f32, q8_0"));
    }
    ck_assert_int_eq(r1_kv_cache__create(&kv, cfg, 8, -1), R1_OK);
    ck_assert_int_eq(kv.lat_dtype, R1_DTYPE_F32);
    ck_assert_uint_eq(r1_budget__kv_bytes_per_token(cfg),
                      (uint64_t)cfg->num_hidden_layers * kv.lat_row_bytes);
    r1_kv_cache__destroy(&kv);
    ck_assert_int_eq(r1_kv_cache__create(&kv, cfg, 8, R1_DTYPE_Q8_0), R1_OK);
    ck_assert_int_eq(kv.lat_dtype, R1_DTYPE_Q8_0);
    /* 64 + 16 values: 2 blocks of c_kv and one padded block of k_pe, 102 bytes against 320 */
    ck_assert_uint_eq(kv.lat_row_bytes, 3 * sizeof(r1_block_q8_0));
    ck_assert_uint_eq(r1_budget__kv_bytes_per_token_as(cfg, R1_DTYPE_Q8_0),
                      (uint64_t)cfg->num_hidden_layers * kv.lat_row_bytes);
    ck_assert_uint_eq(r1_budget__kv_bytes_per_token_as(cfg, R1_DTYPE_F32),
                      r1_budget__kv_bytes_per_token(cfg));
    r1_kv_cache__destroy(&kv);
    /* a V2-Lite / R1 row: 18 blocks, 612 bytes against 2304 */
    r1_model_config big = *cfg;
    big.kv_lora_rank = 512;
    big.qk_rope_head_dim = 64;
    ck_assert_uint_eq(r1_budget__kv_bytes_per_token_as(&big, R1_DTYPE_Q8_0),
                      (uint64_t)big.num_hidden_layers * 612);
    ck_assert_uint_eq(r1_budget__kv_bytes_per_token_as(&big, -1),
                      (uint64_t)big.num_hidden_layers * 2304);
    /* c_kv not whole blocks: q8_0 is taken as f32 (no DeepSeek model has such a rank) */
    r1_model_config odd = *cfg;
    odd.kv_lora_rank = 48;
    ck_assert_int_eq(r1_kv_cache__create(&kv, &odd, 8, R1_DTYPE_Q8_0), R1_OK);
    ck_assert_int_eq(kv.lat_dtype, R1_DTYPE_F32);
    ck_assert_ptr_nonnull(kv.lat);
    ck_assert_uint_eq(r1_budget__kv_bytes_per_token_as(&odd, R1_DTYPE_Q8_0),
                      (uint64_t)odd.num_hidden_layers * kv.lat_row_bytes);
    r1_kv_cache__destroy(&kv);

    /* the public API: "q8_0" makes a session, "f16" is refused at creation */
    r1_session_opts *so = NULL;
    ck_assert_int_eq(r1_session_opts_create(&so), R1_OK);
    ck_assert_int_eq(r1_session_opts_set_context(so, 16), R1_OK);
    r1_session *s = NULL;
    ck_assert_int_eq(r1_session_opts_set_cache_type(so, "f16"), R1_OK);
    ck_assert_int_eq(r1_session_create(&s, m, so), R1_ERR_UNSUPPORTED);
    ck_assert_ptr_null(s);
    ck_assert_int_eq(r1_session_opts_set_cache_type(so, "q4_0"), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_session_opts_set_cache_type(so, "q8_0"), R1_OK);
    ck_assert_msg(r1_session_create(&s, m, so) == R1_OK, "%s", r1_last_error());
    ck_assert_int_eq(r1_session_eval(s, PROMPT, 4), R1_OK);
    const float *row = NULL;
    size_t vocab = 0;
    ck_assert_int_eq(r1_session_logits(s, -1, &row, &vocab), R1_OK);
    ck_assert_uint_eq(vocab, (size_t)cfg->vocab_size);
    r1_session_destroy(s);
    r1_session_opts_destroy(so);
    r1_model_destroy(m);
}
END_TEST

static Suite *latent_q8_suite(void)
{
    Suite *s = suite_create("latent_q8");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_latent_q8_decode_op_is_float_op_on_dequantised_rows);
    tcase_add_test(tc, test_latent_q8_decode_op_error_within_q8_bound);
    tcase_add_test(tc, test_latent_q8_compute_ops_read_q8_rows);
    tcase_add_test(tc, test_latent_q8_forward_against_f32_cache);
    tcase_add_test(tc, test_latent_q8_types_and_sizes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(latent_q8_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
