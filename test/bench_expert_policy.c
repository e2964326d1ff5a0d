/* bench_expert_policy.c: replays expert-routing traces through the expert store's policies at
 * budgets of 10-90 % of all experts and prints their hit rates (docs/performance.md).
 *
 * Workloads: (a) a trace recorded from the library: a model decodes one token at a time (the
 * tokens of a text, or seeded random ids) and the experts each token selected are read from the
 * profiling counters (r1_session_get_expert_counts) after each token; on the random-weight
 * models routing is near uniform, the worst case for any cache. (b) A SYNTHETIC trace: per layer
 * a Zipf popularity over a random order of the experts, temporal correlation (each selection
 * repeats one of the previous token's experts of that layer with probability --stick), and
 * drift (every --drift tokens a quarter of each layer's popularity ranks are reshuffled, as a
 * conversation changes topic). Each is replayed in forward-pass order (token by token, layer by
 * layer), the experts of the layer being computed pinned, one expert per budget unit (experts
 * of a model have one size); hits are counted after a warm-up of --warmup tokens. Besides LRU
 * and the default policy (decayed use counts, half-lives from --half-life) it prints Belady's
 * offline optimum (evict the expert needed furthest in the future) as the bound.
 *
 *   bench_expert_policy --model M.r1m [--text FILE] [--tokens N]      workload (a)
 *   bench_expert_policy --zipf [--layers 26 --experts 64 --k 6] [--tokens N] [--zipf-s 1.0]
 *                       [--stick 0.3] [--drift 256]                    workload (b)
 *   common: [--seed S] [--warmup N] [--half-life 4,16,64] [--save FILE] [--load FILE] */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "expert_policy.h"
#include "r1.h"

typedef struct trace {
    int32_t n_layers, n_experts, k; /* MoE layers only, renumbered 0.. */
    int64_t n_tokens;
    int16_t *ids; /* (n_tokens, n_layers, k); -1 pads a layer that selected fewer */
} trace;

static uint64_t rng_state;

static uint64_t rng(void)
{
    /* splitmix64: seeded, portable, good enough for sampling */
    uint64_t z = (rng_state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static double rng_unit(void)
{
    return (double)(rng() >> 11) * (1.0 / 9007199254740992.0);
}

static int16_t *at(const trace *t, int64_t token, int32_t layer)
{
    return t->ids + ((size_t)token * (size_t)t->n_layers + (size_t)layer) * (size_t)t->k;
}

static int trace_alloc(trace *t)
{
    t->ids = malloc((size_t)t->n_tokens * (size_t)t->n_layers * (size_t)t->k * sizeof *t->ids);
    if (t->ids == NULL) {
        fprintf(stderr, "out of memory\n");
        return -1;
    }
    return 0;
}

/* ---- workload (a): recorded from a model ---------------------------------------------------- */

static int fail(const char *what)
{
    fprintf(stderr, "%s: %s\n", what, r1_last_error());
    return -1;
}

/* --live: the store itself with this budget and policy (0: unbounded, the default policy). */
static uint64_t live_budget;
static int32_t live_policy = R1_CACHE_POLICY_DEFAULT;
static uint64_t live_hits, live_total; /* demand requests after the warm-up */

static int record(trace *t, const char *model_path, const char *text_path, int64_t n_tokens,
                  int64_t warm)
{
    r1_model *m = NULL;
    r1_session *s = NULL;
    r1_session_opts *so = NULL;
    int32_t *ids = NULL;
    uint64_t *prev = NULL, *cur = NULL;
    int32_t *moe_index = NULL;
    int rc = -1;
    r1_model_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    r1_model_opts *mo = NULL;
    r1_status st = r1_model_opts_create(&mo);
    if (st == R1_OK)
        st = r1_model_opts_set_expert_cache_bytes(mo, live_budget);
    if (st == R1_OK)
        st = r1_model_opts_set_expert_cache_policy(mo, live_policy);
    if (st == R1_OK)
        st = r1_model_load(&m, model_path, NULL, mo);
    r1_model_opts_destroy(mo);
    if (st != R1_OK || r1_model_get_info(m, &info) != R1_OK)
        return fail(model_path);
    r1_expert_cache_stats k0, k1;
    memset(&k0, 0, sizeof k0);
    k0.struct_size = sizeof k0;
    k1 = k0;
    ids = malloc((size_t)n_tokens * sizeof *ids);
    if (ids == NULL)
        goto done;
    size_t n = 0;
    if (text_path != NULL) {
        FILE *f = fopen(text_path, "rb");
        char *text = malloc(1 << 20);
        size_t len = f && text ? fread(text, 1, (1 << 20) - 1, f) : 0;
        if (f)
            fclose(f);
        if (text == NULL || len == 0) {
            fprintf(stderr, "cannot read %s\n", text_path);
            free(text);
            goto done;
        }
        int32_t *all = malloc((len + 16) * sizeof *all);
        size_t got = 0;
        if (all == NULL || r1_tokenize(m, text, len, 0, all, len + 16, &got) != R1_OK) {
            free(all);
            free(text);
            fail("tokenize");
            goto done;
        }
        n = got < (size_t)n_tokens ? got : (size_t)n_tokens;
        memcpy(ids, all, n * sizeof *ids);
        free(all);
        free(text);
    } else {
        for (; n < (size_t)n_tokens; n++)
            ids[n] = (int32_t)(rng() % (uint64_t)info.vocab_size);
    }
    size_t n_counts = (size_t)info.n_layers * (size_t)info.n_routed_experts;
    prev = calloc(n_counts, sizeof *prev);
    cur = calloc(n_counts, sizeof *cur);
    moe_index = calloc((size_t)info.n_layers, sizeof *moe_index);
    if (prev == NULL || cur == NULL || moe_index == NULL)
        goto done;
    if (r1_session_opts_create(&so) != R1_OK ||
        r1_session_opts_set_context(so, (int32_t)n + 1) != R1_OK ||
        r1_session_create(&s, m, so) != R1_OK || r1_session_set_profiling(s, 1) != R1_OK) {
        fail("session");
        goto done;
    }
    /* Which layers route: a first token tells (dense layers count nothing). */
    t->n_layers = 0;
    t->n_experts = (int32_t)info.n_routed_experts;
    t->k = (int32_t)info.n_experts_per_token;
    t->n_tokens = (int64_t)n;
    for (size_t i = 0; i < n; i++) {
        if ((int64_t)i == warm)
            r1_model_get_expert_cache_stats(m, &k0);
        if (r1_session_eval(s, &ids[i], 1) != R1_OK ||
            r1_session_get_expert_counts(s, cur, n_counts) != R1_OK) {
            fail("eval");
            goto done;
        }
        if (i == 0) {
            for (int64_t l = 0; l < info.n_layers; l++) {
                uint64_t sum = 0;
                for (int64_t e = 0; e < info.n_routed_experts; e++)
                    sum += cur[l * info.n_routed_experts + e];
                moe_index[l] = sum > 0 ? t->n_layers++ : -1;
            }
            if (trace_alloc(t) != 0)
                goto done;
        }
        for (int64_t l = 0; l < info.n_layers; l++) {
            if (moe_index[l] < 0)
                continue;
            int16_t *row = at(t, (int64_t)i, moe_index[l]);
            int32_t got = 0;
            for (int64_t e = 0; e < info.n_routed_experts; e++) {
                size_t c = (size_t)(l * info.n_routed_experts + e);
                if (cur[c] != prev[c] && got < t->k)
                    row[got++] = (int16_t)e;
            }
            while (got < t->k)
                row[got++] = -1;
        }
        memcpy(prev, cur, n_counts * sizeof *cur);
    }
    r1_model_get_expert_cache_stats(m, &k1);
    live_hits = k1.hits - k0.hits;
    live_total = live_hits + (k1.misses - k0.misses);
    rc = 0;
done:
    free(ids);
    free(prev);
    free(cur);
    free(moe_index);
    r1_session_destroy(s);
    r1_session_opts_destroy(so);
    r1_model_destroy(m);
    return rc;
}

/* ---- workload (b): synthetic Zipf with temporal correlation and drift ------------------------ */

static int synth(trace *t, double zipf_s, double stick, int64_t drift)
{
    if (trace_alloc(t) != 0)
        return -1;
    int32_t E = t->n_experts;
    int32_t *order = malloc((size_t)t->n_layers * (size_t)E * sizeof *order);
    double *cdf = malloc((size_t)E * sizeof *cdf);
    if (order == NULL || cdf == NULL) {
        free(order);
        free(cdf);
        return -1;
    }
    double sum = 0.0;
    for (int32_t r = 0; r < E; r++)
        cdf[r] = (sum += pow((double)(r + 1), -zipf_s));
    for (int32_t r = 0; r < E; r++)
        cdf[r] /= sum;
    for (int32_t l = 0; l < t->n_layers; l++) { /* rank -> expert, a random order per layer */
        int32_t *o = order + (size_t)l * (size_t)E;
        for (int32_t e = 0; e < E; e++)
            o[e] = e;
        for (int32_t e = E - 1; e > 0; e--) {
            int32_t j = (int32_t)(rng() % (uint64_t)(e + 1)), x = o[e];
            o[e] = o[j];
            o[j] = x;
        }
    }
    for (int64_t tok = 0; tok < t->n_tokens; tok++) {
        if (drift > 0 && tok > 0 && tok % drift == 0)
            for (int32_t l = 0; l < t->n_layers; l++) {
                int32_t *o = order + (size_t)l * (size_t)E;
                for (int32_t q = 0; q < E / 4; q++) {
                    int32_t a = (int32_t)(rng() % (uint64_t)E), b = (int32_t)(rng() % (uint64_t)E);
                    int32_t x = o[a];
                    o[a] = o[b];
                    o[b] = x;
                }
            }
        for (int32_t l = 0; l < t->n_layers; l++) {
            int16_t *row = at(t, tok, l);
            const int16_t *before = tok > 0 ? at(t, tok - 1, l) : NULL;
            for (int32_t j = 0; j < t->k; j++) {
                int16_t e;
                int dup;
                do {
                    if (before != NULL && rng_unit() < stick)
                        e = before[rng() % (uint64_t)t->k];
                    else {
                        double u = rng_unit();
                        int32_t r = 0;
                        while (r < E - 1 && cdf[r] < u)
                            r++;
                        e = (int16_t)order[(size_t)l * (size_t)E + (size_t)r];
                    }
                    dup = 0;
                    for (int32_t q = 0; q < j; q++)
                        dup |= row[q] == e;
                } while (dup);
                row[j] = e;
            }
        }
    }
    free(order);
    free(cdf);
    return 0;
}

/* ---- replay ------------------------------------------------------------------------------- */

typedef struct pinned {
    int32_t layer;
    const int16_t *row;
    int32_t n;
} pinned;

static int evictable(void *ctx, int32_t layer, int32_t expert)
{
    const pinned *p = ctx;
    if (layer != p->layer)
        return 1;
    for (int32_t i = 0; i < p->n; i++)
        if (p->row[i] == expert)
            return 0;
    return 1;
}

/* Hit rate of a policy (kind) at a budget of `budget` experts, counted after `warm` tokens. */
static double replay(const trace *t, int32_t kind, double half_life, int32_t layer_distance,
                     int64_t budget, int64_t warm)
{
    r1_expert_policy *p = NULL;
    if (r1_expert_policy__create(&p, kind, t->n_layers, t->n_experts) != R1_OK)
        return -1.0;
    r1_expert_policy__tune(p, half_life, layer_distance);
    uint8_t *res = calloc((size_t)t->n_layers * (size_t)t->n_experts, 1);
    int64_t n_res = 0, hits = 0, total = 0;
    for (int64_t tok = 0; tok < t->n_tokens && res != NULL; tok++) {
        for (int32_t l = 0; l < t->n_layers; l++) {
            /* The forward pass asks for all of a layer's experts at once and keeps them until
             * the layer is done: the store never evicts one of them for another. */
            const int16_t *row = at(t, tok, l);
            int32_t n = 0;
            while (n < t->k && row[n] >= 0)
                n++;
            for (int32_t j = 0; j < n; j++) {
                if (tok >= warm) {
                    hits += res[(size_t)l * (size_t)t->n_experts + (size_t)row[j]];
                    total++;
                }
                r1_expert_policy__on_access(p, l, row[j]);
            }
            for (int32_t j = 0; j < n; j++) {
                size_t id = (size_t)l * (size_t)t->n_experts + (size_t)row[j];
                if (res[id])
                    continue;
                pinned pin = {l, row, n};
                while (n_res >= budget) {
                    int32_t vl, ve;
                    if (!r1_expert_policy__victim(p, evictable, &pin, &vl, &ve))
                        break;
                    r1_expert_policy__on_evict(p, vl, ve);
                    res[(size_t)vl * (size_t)t->n_experts + (size_t)ve] = 0;
                    n_res--;
                }
                r1_expert_policy__on_insert(p, l, row[j], 0);
                res[id] = 1;
                n_res++;
            }
        }
        r1_expert_policy__on_pass(p);
    }
    free(res);
    r1_expert_policy__destroy(p);
    return total ? (double)hits / (double)total : 0.0;
}

/* Belady's optimum: on a miss with the budget full, drop the unpinned resident expert whose
 * next use is furthest away (never used again first). */
static double replay_opt(const trace *t, int64_t budget, int64_t warm)
{
    size_t n_ids = (size_t)t->n_layers * (size_t)t->n_experts;
    int64_t n_acc = t->n_tokens * t->n_layers * t->k;
    int64_t *next = malloc((size_t)n_acc * sizeof *next), *last = malloc(n_ids * sizeof *last);
    int64_t *next_of = malloc(n_ids * sizeof *next_of); /* resident id -> its next use */
    int32_t *resident = malloc(n_ids * sizeof *resident);
    uint8_t *res = calloc(n_ids, 1);
    double rate = -1.0;
    if (!next || !last || !next_of || !resident || !res)
        goto done;
    for (size_t i = 0; i < n_ids; i++)
        last[i] = INT64_MAX;
    for (int64_t a = n_acc - 1; a >= 0; a--) {
        int16_t e = t->ids[a];
        int32_t l = (int32_t)((a / t->k) % t->n_layers);
        if (e < 0) {
            next[a] = INT64_MAX;
            continue;
        }
        size_t id = (size_t)l * (size_t)t->n_experts + (size_t)e;
        next[a] = last[id];
        last[id] = a;
    }
    int64_t n_res = 0, hits = 0, total = 0;
    for (int64_t a = 0; a < n_acc; a++) {
        int16_t e = t->ids[a];
        if (e < 0)
            continue;
        int64_t tok = a / ((int64_t)t->k * t->n_layers);
        int32_t l = (int32_t)((a / t->k) % t->n_layers);
        size_t id = (size_t)l * (size_t)t->n_experts + (size_t)e;
        if (tok >= warm) {
            hits += res[id];
            total++;
        }
        next_of[id] = next[a];
        if (res[id])
            continue;
        if (n_res >= budget) {
            /* pinned: this layer's experts of this token (as in replay()) */
            int64_t row0 = a - a % t->k, row_end = row0 + t->k;
            int32_t best = -1;
            for (int32_t i = 0; i < n_res; i++) {
                int32_t r = resident[i];
                int pin = 0;
                for (int64_t q = row0; q < row_end; q++)
                    pin |= t->ids[q] >= 0 &&
                           (size_t)l * (size_t)t->n_experts + (size_t)t->ids[q] == (size_t)r;
                if (!pin && (best < 0 || next_of[r] > next_of[resident[best]]))
                    best = i;
            }
            if (best >= 0) {
                res[resident[best]] = 0;
                resident[best] = resident[--n_res];
            }
        }
        res[id] = 1;
        resident[n_res++] = (int32_t)id;
    }
    rate = total ? (double)hits / (double)total : 0.0;
done:
    free(next);
    free(last);
    free(next_of);
    free(resident);
    free(res);
    return rate;
}

/* ---- trace files: a header of four int64 then the ids ---------------------------------------- */

static int save(const trace *t, const char *path)
{
    FILE *f = fopen(path, "wb");
    int64_t h[4] = {t->n_layers, t->n_experts, t->k, t->n_tokens};
    size_t n = (size_t)t->n_tokens * (size_t)t->n_layers * (size_t)t->k;
    int ok = f && fwrite(h, sizeof h, 1, f) == 1 && fwrite(t->ids, sizeof *t->ids, n, f) == n;
    if (f && fclose(f) != 0)
        ok = 0;
    if (!ok)
        fprintf(stderr, "cannot write %s\n", path);
    return ok ? 0 : -1;
}

static int load(trace *t, const char *path)
{
    FILE *f = fopen(path, "rb");
    int64_t h[4];
    if (f == NULL || fread(h, sizeof h, 1, f) != 1 || h[0] < 1 || h[0] > 4096 || h[1] < 1 ||
        h[1] > 32767 || h[2] < 1 || h[2] > h[1] || h[3] < 1 || h[3] > (INT64_C(1) << 24)) {
        fprintf(stderr, "cannot read a trace from %s\n", path);
        if (f)
            fclose(f);
        return -1;
    }
    t->n_layers = (int32_t)h[0];
    t->n_experts = (int32_t)h[1];
    t->k = (int32_t)h[2];
    t->n_tokens = h[3];
    size_t n = (size_t)t->n_tokens * (size_t)t->n_layers * (size_t)t->k;
    int ok = trace_alloc(t) == 0 && fread(t->ids, sizeof *t->ids, n, f) == n;
    fclose(f);
    for (size_t i = 0; ok && i < n; i++)
        ok = t->ids[i] >= -1 && t->ids[i] < t->n_experts;
    if (!ok)
        fprintf(stderr, "%s is truncated or damaged\n", path);
    return ok ? 0 : -1;
}

static int usage(void)
{
    fprintf(stderr, "usage: bench_expert_policy (--model M.r1m [--text FILE] | --zipf [--layers L]"
                    " [--experts E] [--k K] [--zipf-s S] [--stick P] [--drift T] | --load F)\n"
                    "       [--tokens N] [--seed S] [--warmup N] [--half-life H,H,...] [--opt 0]"
                    " [--save F]\n"
                    "       [--sweep 1: also the default policy without layer distance]\n"
                    "       [--live BYTES: with --model, first the store itself at that budget]\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *model = NULL, *text = NULL, *save_path = NULL, *load_path = NULL;
    const char *half_lives = NULL, *live = NULL;
    int zipf = 0, opt = 1, sweep = 0;
    int64_t n_tokens = 0, warm = -1, drift = 256;
    double zipf_s = 1.0, stick = 0.3;
    trace t = {26, 64, 6, 0, NULL}; /* the synthetic default: DeepSeek-V2-Lite's MoE shape */
    rng_state = 42;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--zipf")) {
            zipf = 1;
            continue;
        }
        if (i + 1 >= argc)
            return usage();
        const char *v = argv[++i];
        if (!strcmp(a, "--model"))
            model = v;
        else if (!strcmp(a, "--text"))
            text = v;
        else if (!strcmp(a, "--save"))
            save_path = v;
        else if (!strcmp(a, "--load"))
            load_path = v;
        else if (!strcmp(a, "--half-life"))
            half_lives = v;
        else if (!strcmp(a, "--tokens"))
            n_tokens = atoll(v);
        else if (!strcmp(a, "--warmup"))
            warm = atoll(v);
        else if (!strcmp(a, "--seed"))
            rng_state = strtoull(v, NULL, 0);
        else if (!strcmp(a, "--layers"))
            t.n_layers = atoi(v);
        else if (!strcmp(a, "--experts"))
            t.n_experts = atoi(v);
        else if (!strcmp(a, "--k"))
            t.k = atoi(v);
        else if (!strcmp(a, "--zipf-s"))
            zipf_s = atof(v);
        else if (!strcmp(a, "--stick"))
            stick = atof(v);
        else if (!strcmp(a, "--drift"))
            drift = atoll(v);
        else if (!strcmp(a, "--opt"))
            opt = atoi(v);
        else if (!strcmp(a, "--sweep"))
            sweep = atoi(v);
        else if (!strcmp(a, "--live"))
            live = v;
        else
            return usage();
    }
    if ((model != NULL) + zipf + (load_path != NULL) != 1 || t.n_layers < 1 || t.n_experts < 1 ||
        t.n_experts > 32767 || t.k < 1 || t.k > t.n_experts || n_tokens < 0 ||
        !(stick >= 0 && stick < 1))
        return usage();
    const char *what;
    int rc;
    if (model != NULL && live != NULL) {
        /* The store itself (I/O workers, prefetch as the library is built) at this budget,
         * with each policy, on the same tokens: a check of the replay below. */
        live_budget = strtoull(live, NULL, 10);
        int64_t n = n_tokens > 0 ? n_tokens : 400;
        for (live_policy = R1_CACHE_POLICY_LRU; live_policy <= R1_CACHE_POLICY_DEFAULT;
             live_policy++) {
            uint64_t seed = rng_state;
            if (record(&t, model, text, n, warm >= 0 ? warm : n / 5) != 0)
                return 1;
            rng_state = seed; /* the same random ids for the next policy */
            free(t.ids);
            t.ids = NULL;
            t.n_layers = 0;
            printf("store at %" PRIu64 " bytes, %s: hit rate %.2f %% (%" PRIu64 " of %" PRIu64
                   " demands)\n",
                   live_budget, live_policy == R1_CACHE_POLICY_LRU ? "LRU" : "default",
                   live_total ? 100.0 * (double)live_hits / (double)live_total : 0.0, live_hits,
                   live_total);
        }
        live_budget = 0;
        live_policy = R1_CACHE_POLICY_DEFAULT;
    }
    if (model != NULL) {
        rc = record(&t, model, text, n_tokens > 0 ? n_tokens : 400, 0);
        what = text ? "recorded (text)" : "recorded (random ids)";
    } else if (zipf) {
        t.n_tokens = n_tokens > 0 ? n_tokens : 4000;
        rc = synth(&t, zipf_s, stick, drift);
        what = "synthetic Zipf";
    } else {
        rc = load(&t, load_path);
        what = "loaded";
    }
    if (rc != 0)
        return 1;
    if (save_path != NULL && save(&t, save_path) != 0)
        return 1;
    if (warm < 0)
        warm = t.n_tokens / 5;
    double hl[16];
    int n_hl = 0;
    for (const char *p = half_lives; p != NULL && *p && n_hl < 16; p = strchr(p, ',')) {
        if (*p == ',')
            p++;
        hl[n_hl++] = atof(p);
    }
    if (n_hl == 0)
        hl[n_hl++] = R1_EXPERT_POLICY_HALF_LIFE;
    int64_t all = (int64_t)t.n_layers * t.n_experts;
    printf("workload: %s, %d MoE layers x %d experts, %d per token, %" PRId64 " tokens (%" PRId64
           " warm-up)",
           what, t.n_layers, t.n_experts, t.k, t.n_tokens, warm);
    if (zipf)
        printf(", Zipf s=%.2f, stick %.2f, drift every %" PRId64 " tokens", zipf_s, stick, drift);
    printf("\nhit rate %% by budget (%% of all %" PRId64 " experts):\n%-8s %7s", all, "budget",
           "LRU");
    for (int h = 0; h < n_hl; h++)
        for (int d = 1; d >= (sweep ? 0 : 1); d--) {
            char name[32];
            snprintf(name, sizeof name, "%s%g", d ? "dens" : "freq", hl[h]);
            printf(" %9s", name);
        }
    printf("%s\n", opt ? "     OPT" : "");
    for (int pct = 10; pct <= 90; pct += 10) {
        int64_t budget = all * pct / 100;
        if (budget < t.k)
            budget = t.k;
        printf("%6d %% %7.2f", pct, 100.0 * replay(&t, R1_EXPERT_POLICY_LRU, 1, 0, budget, warm));
        for (int h = 0; h < n_hl; h++)
            for (int d = 1; d >= (sweep ? 0 : 1); d--)
                printf(" %9.2f",
                       100.0 * replay(&t, R1_EXPERT_POLICY_DEFAULT, hl[h], d, budget, warm));
        if (opt)
            printf(" %7.2f", 100.0 * replay_opt(&t, budget, warm));
        printf("\n");
        fflush(stdout);
    }
    free(t.ids);
    return 0;
}
