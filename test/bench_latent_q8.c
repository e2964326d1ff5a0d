/* bench_latent_q8.c: what the q8_0 latent (MLA) cache costs and saves against the f32 cache on one
 * model: bytes per token, the logits' error over decoded tokens, and decode speed at depth.
 *
 *   bench_latent_q8 MODEL.r1m [--tokens 200] [--depth 2048,4096] [--gen 32] [--reps 3]
 *                   [--threads N] [--expert-ram BYTES]
 *   bench_latent_q8 --op [--depth 2048,4096] [--reps 20]
 *
 * Error: two sessions, f32 and q8_0 caches, fed the same tokens one at a time (the f32 session's
 * greedy choices from BOS), every position's logits compared: max |q8_0 - f32|, that over the
 * position's max |f32|, and how often the two argmax differ; then, for scale, the same between
 * float and 8-bit activations (the CPU backend's default for Q8_0/Q4_0 weights). Speed: for each
 * depth, a session of each cache type prefills depth random tokens once, then each decodes --gen
 * tokens --reps times from there (truncated back each time, the two alternated), median tokens/s.
 * --expert-ram bounds the expert store (the logits do not depend on it; speed does). --op times
 * the CPU decode op alone on V2-Lite's attention shape (16 heads, 512 + 64 latent, kv_b_proj in
 * q4_0) over 27 layers' caches of each type, no model needed. Run by hand (not a test). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "budget.h"
#include "cpu_kernels.h"
#include "dtype.h"
#include "forward.h"
#include "model.h"
#include "r1.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static r1_session *session(r1_model *m, const char *type, int64_t n_ctx)
{
    r1_session_opts *so = NULL;
    r1_session *s = NULL;
    if (r1_session_opts_create(&so) != R1_OK ||
        r1_session_opts_set_context(so, (int32_t)n_ctx) != R1_OK ||
        r1_session_opts_set_cache_type(so, type) != R1_OK || r1_session_create(&s, m, so) != R1_OK)
        fprintf(stderr, "session (%s cache, %lld positions): %s\n", type, (long long)n_ctx,
                r1_last_error());
    r1_session_opts_destroy(so);
    return s;
}

static int32_t argmax(const float *x, size_t n)
{
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return (int32_t)best;
}

/* actq8 0: the f32 cache against q8_0, both as the CPU backend runs by default; 1: for scale, the
 * f32 cache with float activations against the 8-bit activations the CPU backend's Q8_0/Q4_0
 * products use by default (r1_cpu__set_act_q8), both f32 caches. */
static int error_run(r1_model *m, int64_t n_tokens, int32_t bos, int actq8)
{
    r1_session *sf = session(m, "f32", n_tokens),
               *sq = session(m, actq8 ? "f32" : "q8_0", n_tokens);
    if (sf == NULL || sq == NULL)
        return 1;
    const int32_t act = r1_cpu__act_q8_enabled();
    int32_t tok = bos >= 0 ? bos : 0;
    double worst_abs = 0, worst_rel = 0, sum_rel = 0;
    int64_t flips = 0, worst_at = 0;
    double first = 0;
    for (int64_t t = 0; t < n_tokens; t++) {
        const float *lf = NULL, *lq = NULL;
        size_t vf = 0, vq = 0;
        r1_status st = r1_session_eval(sf, &tok, 1);
        if (actq8)
            r1_cpu__set_act_q8(0);
        if (st == R1_OK)
            st = r1_session_eval(sq, &tok, 1);
        r1_cpu__set_act_q8(act);
        if (st != R1_OK || r1_session_logits(sf, -1, &lf, &vf) != R1_OK ||
            r1_session_logits(sq, -1, &lq, &vq) != R1_OK || vf != vq) {
            fprintf(stderr, "token %lld: %s\n", (long long)t, r1_last_error());
            return 1;
        }
        double mx = 0, md = 0;
        for (size_t i = 0; i < vf; i++) {
            const double a = lf[i] < 0 ? -(double)lf[i] : lf[i];
            const double d = (double)lq[i] - (double)lf[i];
            mx = a > mx ? a : mx;
            md = (d < 0 ? -d : d) > md ? (d < 0 ? -d : d) : md;
        }
        flips += argmax(lf, vf) != argmax(lq, vq);
        if (md > worst_abs)
            worst_abs = md, worst_at = t;
        worst_rel = md / mx > worst_rel ? md / mx : worst_rel;
        sum_rel += md / mx;
        if (t == 0)
            first = md / mx;
        tok = argmax(lf, vf);
    }
    printf("%s over %lld decoded tokens: max |d| = %.4g (at token %lld), max|d|/max|f32 cache| "
           "per token: first token %.3e, max %.3e, mean %.3e; argmax differs at %lld of %lld\n",
           actq8 ? "8-bit against float activations (f32 caches)" : "q8_0 cache against f32",
           (long long)n_tokens, worst_abs, (long long)worst_at, first, worst_rel,
           sum_rel / (double)n_tokens, (long long)flips, (long long)n_tokens);
    r1_session_destroy(sf);
    r1_session_destroy(sq);
    return 0;
}

static int speed_run(r1_model *m, int64_t depth, int64_t gen, int64_t reps)
{
    const int64_t V = r1_model__config(m)->vocab_size;
    int32_t *ids = malloc((size_t)(depth + gen) * sizeof *ids);
    uint64_t x = 88172645463325252u;
    for (int64_t i = 0; i < depth + gen; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        ids[i] = (int32_t)(x % (uint64_t)V);
    }
    static const char *const TYPES[] = {"f32", "q8_0"};
    /* Both sessions prefilled, then their repetitions alternated, so that a change of load on a
     * shared host falls on both. */
    r1_session *s[2] = {NULL, NULL};
    double prefill[2], *tps[2];
    for (int k = 0; k < 2; k++) {
        if ((s[k] = session(m, TYPES[k], depth + gen)) == NULL)
            return 1;
        const double t0 = now_s();
        if (r1_session_eval(s[k], ids, (size_t)depth) != R1_OK) {
            fprintf(stderr, "prefill: %s\n", r1_last_error());
            return 1;
        }
        prefill[k] = now_s() - t0;
        tps[k] = malloc((size_t)(reps + 1) * sizeof *tps[k]);
    }
    for (int64_t r = 0; r <= reps; r++) /* r = 0: warm-up, not counted */
        for (int k = 0; k < 2; k++) {
            if (r1_session_truncate(s[k], (int32_t)depth) != R1_OK)
                return 1;
            const double t1 = now_s();
            for (int64_t g = 0; g < gen; g++)
                if (r1_session_eval(s[k], ids + depth + g, 1) != R1_OK) {
                    fprintf(stderr, "decode: %s\n", r1_last_error());
                    return 1;
                }
            tps[k][r] = (double)gen / (now_s() - t1);
        }
    for (int k = 0; k < 2; k++) {
        qsort(tps[k] + 1, (size_t)reps, sizeof *tps[k], cmp_double);
        printf("depth %lld, %s cache: prefill %.1f s, decode %.2f tokens/s (median of %lld, "
               "alternated with the other cache; min %.2f, max %.2f)\n",
               (long long)depth, TYPES[k], prefill[k], tps[k][1 + reps / 2], (long long)reps,
               tps[k][1], tps[k][reps]);
        free(tps[k]);
        r1_session_destroy(s[k]);
    }
    free(ids);
    return 0;
}

/* The decode op alone: --reps tokens over 27 layers at each depth, f32 then q8_0 caches. */
static int op_run(const char *depths, int64_t reps)
{
    enum { L = 27, H = 16, DN = 128, DR = 64, DV = 128, RKV = 512, DL = RKV + DR };
    const size_t q8_row = r1_cpu__mla_cache_row_bytes(R1_DTYPE_Q8_0, RKV, DR);
    const size_t wq_row = r1_dtype__row_bytes(R1_DTYPE_Q4_0, RKV);
    r1_threadpool *pool = NULL;
    if (r1_threadpool__acquire_shared(&pool) != R1_OK)
        return 1;
    uint64_t x = 88172645463325252u;
    float *w = malloc((size_t)(H * (DN + DV) * RKV) * sizeof(float));
    uint8_t *wq = malloc((size_t)(H * (DN + DV)) * wq_row);
    float q[H * (DN + DR)], out[H * DV];
    for (int64_t i = 0; i < H * (DN + DV) * RKV; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        w[i] = (float)((double)(x >> 11) / 9007199254740992.0 - 0.5) * 0.1f;
    }
    for (int64_t r = 0; r < H * (DN + DV); r++)
        r1_quantize__q4_0(w + r * RKV, (r1_block_q4_0 *)(void *)(wq + (size_t)r * wq_row), RKV);
    for (int64_t i = 0; i < H * (DN + DR); i++)
        q[i] = (float)((i * 37) % 101) / 101.0f - 0.5f;
    const r1_tensor kv_b = {.dtype = R1_DTYPE_Q4_0,
                            .n_dims = 2,
                            .shape = {H * (DN + DV), RKV},
                            .data = wq,
                            .nbytes = (size_t)(H * (DN + DV)) * wq_row};
    printf("decode op alone, V2-Lite attention shape, %d layers, %d threads:\n", L,
           r1_threadpool__size(pool) > 0 ? r1_threadpool__size(pool) : 1);
    for (const char *d = depths; *d != 0;) {
        char *end = NULL;
        const int64_t depth = strtoll(d, &end, 10);
        if (end == d || depth < 1)
            return 2;
        float *lat = malloc((size_t)(L * depth * DL) * sizeof(float));
        uint8_t *lq = malloc((size_t)(L * depth) * q8_row);
        float row[DL + 64] = {0};
        for (int64_t j = 0; j < L * depth; j++) {
            for (int64_t i = 0; i < DL; i++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                row[i] = (float)((double)(x >> 11) / 9007199254740992.0 - 0.5) * 4.0f;
            }
            memcpy(lat + j * DL, row, sizeof(float) * DL);
            r1_quantize__q8_0(row, (r1_block_q8_0 *)(void *)(lq + (size_t)j * q8_row),
                              RKV + DR); /* 64 rope values: two whole blocks here */
        }
        double ms[2];
        for (int k = 0; k < 2; k++) {
            double *t = malloc((size_t)reps * sizeof *t);
            for (int64_t r = 0; r < reps; r++) {
                const double t0 = now_s();
                for (int64_t l = 0; l < L; l++) {
                    const r1_op_mla_decode_params p = {.n_heads = H,
                                                       .qk_nope_dim = DN,
                                                       .qk_rope_dim = DR,
                                                       .v_dim = DV,
                                                       .kv_lora_rank = RKV,
                                                       .n_keys = depth,
                                                       .softmax_scale = 0.1147};
                    const void *c = k ? (const void *)(lq + (size_t)(l * depth) * q8_row)
                                      : (const void *)(lat + l * depth * DL);
                    if (r1_cpu__mla_decode_cache(pool, &p, q, c, k ? R1_DTYPE_Q8_0 : R1_DTYPE_F32,
                                                 &kv_b, out) != R1_OK) {
                        fprintf(stderr, "op: %s\n", r1_last_error());
                        return 1;
                    }
                }
                t[r] = (now_s() - t0) * 1e3;
            }
            qsort(t, (size_t)reps, sizeof *t, cmp_double);
            ms[k] = t[reps / 2];
            printf("  depth %lld, %s cache (%.1f MB read per token): %.2f ms per token (median "
                   "of %lld; min %.2f, max %.2f)\n",
                   (long long)depth, k ? "q8_0" : "f32",
                   (double)(L * depth) * (double)(k ? q8_row : DL * sizeof(float)) / 1e6, ms[k],
                   (long long)reps, t[0], t[reps - 1]);
            free(t);
        }
        printf("  depth %lld: q8_0 / f32 time = %.2f\n", (long long)depth, ms[1] / ms[0]);
        free(lat);
        free(lq);
        d = *end == ',' ? end + 1 : end;
    }
    free(w);
    free(wq);
    r1_threadpool__release_shared();
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "--op")) {
        const char *depths = argc >= 4 && !strcmp(argv[2], "--depth") ? argv[3] : "2048,4096";
        const int64_t reps = argc >= 6 && !strcmp(argv[4], "--reps") ? atoll(argv[5]) : 20;
        return reps < 1 ? 2 : op_run(depths, reps);
    }
    if (argc < 2) {
        fprintf(stderr,
                "usage: %s MODEL.r1m [--tokens 200] [--depth 2048,4096] [--gen 32] "
                "[--reps 3] [--threads N] [--expert-ram BYTES]\n",
                argv[0]);
        return 2;
    }
    int64_t n_tokens = 200, gen = 32, reps = 3, threads = 0, expert_ram = 0;
    const char *depths = "";
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--tokens"))
            n_tokens = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--depth"))
            depths = argv[i + 1];
        else if (!strcmp(argv[i], "--gen"))
            gen = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps"))
            reps = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads"))
            threads = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--expert-ram"))
            expert_ram = atoll(argv[i + 1]);
        else {
            fprintf(stderr, "unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (reps < 1 || gen < 1 || n_tokens < 0)
        return 2;
    r1_model_opts *mo = NULL;
    r1_model *m = NULL;
    if (r1_model_opts_create(&mo) != R1_OK ||
        (threads > 0 && r1_model_opts_set_threads(mo, (int32_t)threads) != R1_OK) ||
        (expert_ram > 0 &&
         r1_model_opts_set_expert_cache_bytes(mo, (uint64_t)expert_ram) != R1_OK) ||
        r1_model_load(&m, argv[1], NULL, mo) != R1_OK) {
        fprintf(stderr, "load %s: %s\n", argv[1], r1_last_error());
        return 1;
    }
    r1_model_opts_destroy(mo);
    const r1_model_config *cfg = r1_model__config(m);
    const uint64_t f32 = r1_budget__kv_bytes_per_token_as(cfg, R1_DTYPE_F32);
    const uint64_t q8 = r1_budget__kv_bytes_per_token_as(cfg, R1_DTYPE_Q8_0);
    const uint64_t L = (uint64_t)cfg->num_hidden_layers;
    printf("%s: %lld layers, latent rows of %lld + %lld values\n", argv[1], (long long)L,
           (long long)cfg->kv_lora_rank, (long long)cfg->qk_rope_head_dim);
    printf("cache per token: f32 %llu B per layer, %llu B in all; q8_0 %llu B per layer, %llu B "
           "in all (%.1f %%)\n",
           (unsigned long long)(f32 / L), (unsigned long long)f32, (unsigned long long)(q8 / L),
           (unsigned long long)q8, 100.0 * (double)q8 / (double)f32);
    const int32_t bos = (int32_t)r1_model__config(m)->bos_token_id;
    if (n_tokens > 0 && (error_run(m, n_tokens, bos, 0) || error_run(m, n_tokens, bos, 1)))
        return 1;
    for (const char *d = depths; *d != 0;) {
        char *end = NULL;
        const int64_t depth = strtoll(d, &end, 10);
        if (end == d || depth < 1)
            return 2;
        if (speed_run(m, depth, gen, reps))
            return 1;
        d = *end == ',' ? end + 1 : end;
    }
    r1_model_destroy(m);
    return 0;
}
