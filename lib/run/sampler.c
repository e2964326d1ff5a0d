/* sampler.c: token selection from logits: bias, penalties, temperature, top-k/p, min-p, draw. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "r1.h"
#include "sampler.h"

/*
 * One sample call runs these stages, in this order, over the ids below n_allowed:
 *
 *  1. logit bias: logit += bias for every id with a bias (-INFINITY bans the id);
 *  2. penalties over the last last_n accepted ids, each distinct id once: repetition (a
 *     positive logit is divided by the factor, a negative one multiplied), then frequency
 *     (minus frequency * count) and presence (minus presence when seen at all);
 *  3. temperature 0: the largest logit wins (the lowest id on ties) and the draw is skipped;
 *  4. temperature: logits are divided by it;
 *  5. top-k: the k largest logits are kept (ties broken towards the lower id);
 *  6. softmax in float64 after subtracting the largest logit, so it never overflows;
 *  7. top-p: candidates are ordered by probability descending, then id ascending, and the
 *     shortest prefix whose mass reaches p is kept;
 *  8. min-p: candidates below min_p times the largest probability are dropped;
 *  9. renormalisation and one draw, walking the cumulative mass of the survivors in id order.
 *
 * Random numbers come from a counter-based generator: draw n of a sampler is SplitMix64's
 * output for (seed, n), never a hidden evolving state, so the same seed gives the same tokens on
 * every run, platform and thread count, and r1_sampler_reset() only has to zero the counter.
 * Every successful sample call consumes exactly one draw index, greedy ones included, so
 * changing settings between calls never shifts the numbers later calls see.
 *
 * Cost: the stages over the whole vocabulary are linear and nothing the size of the vocabulary is
 * ever sorted: top-k keeps a bounded heap, and top-p buckets the probabilities by magnitude
 * (eight buckets per power of two) and sorts only the bucket where the nucleus ends.
 */

/* Probability buckets for top-p: 8 per binade over 64 binades below 1, plus one for the rest. */
#define R1_SAMPLER_BUCKETS_PER_BINADE 8
#define R1_SAMPLER_BINADES            64
#define R1_SAMPLER_N_BUCKETS          ((R1_SAMPLER_BINADES + 2) * R1_SAMPLER_BUCKETS_PER_BINADE)

typedef struct r1_cand {
    double w; /* unnormalised probability exp((logit - max) / T), 1 for the largest */
    float logit;
    int32_t id;
} r1_cand;

/* ------------------------------------------------------------------------------------------ */
/* Random numbers                                                                             */

double r1_sampler__uniform(uint64_t seed, uint64_t index)
{
    /* SplitMix64: the state after index+1 steps is seed + (index+1)*golden; the finaliser
     * scrambles it. Its top 53 bits make an exactly representable double in [0, 1). */
    uint64_t z = seed + (index + 1) * UINT64_C(0x9E3779B97F4A7C15);
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

/* ------------------------------------------------------------------------------------------ */
/* Construction and settings                                                                  */

R1_API r1_status r1_sampler_create(r1_sampler **out, uint64_t seed)
{
    r1_error__clear();
    if (out == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_sampler_create: out is NULL");
    *out = NULL;
    r1_sampler *smp = calloc(1, sizeof *smp);
    if (smp == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "r1_sampler_create: out of memory");
    smp->seed = seed;
    /* DeepSeek-R1's recommended settings (model card and generation_config.json). */
    smp->temperature = 0.6f;
    smp->top_p = 0.95f;
    smp->repeat = 1.0f;
    *out = smp;
    return R1_OK;
}

R1_API void r1_sampler_destroy(r1_sampler *smp)
{
    if (smp == NULL)
        return;
    free(smp->bias);
    free(smp->hist);
    free(smp->counted);
    free(smp->cand);
    free(smp->edge);
    free(smp);
}

R1_API r1_status r1_sampler_set_temperature(r1_sampler *smp, float t)
{
    r1_error__clear();
    if (smp == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_sampler_set_temperature: sampler is NULL");
    if (!(t >= 0.0f) || isinf(t))
        return r1_error__set(R1_ERR_INVALID_ARG,
                             "r1_sampler_set_temperature: temperature %g is not finite and >= 0",
                             (double)t);
    smp->temperature = t;
    return R1_OK;
}

R1_API r1_status r1_sampler_set_top_k(r1_sampler *smp, int32_t k)
{
    r1_error__clear();
    if (smp == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_sampler_set_top_k: sampler is NULL");
    if (k < 0)
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_sampler_set_top_k: k %d is negative", (int)k);
    smp->top_k = k;
    return R1_OK;
}

R1_API r1_status r1_sampler_set_top_p(r1_sampler *smp, float p)
{
    r1_error__clear();
    if (smp == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_sampler_set_top_p: sampler is NULL");
    if (!(p > 0.0f && p <= 1.0f))
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_sampler_set_top_p: p %g is outside (0, 1]",
                             (double)p);
    smp->top_p = p;
    return R1_OK;
}

R1_API r1_status r1_sampler_set_min_p(r1_sampler *smp, float p)
{
    r1_error__clear();
    if (smp == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_sampler_set_min_p: sampler is NULL");
    if (!(p >= 0.0f && p <= 1.0f))
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_sampler_set_min_p: p %g is outside [0, 1]",
                             (double)p);
    smp->min_p = p;
    return R1_OK;
}

R1_API r1_status r1_sampler_set_penalties(r1_sampler *smp, int32_t last_n, float repeat,
                                          float frequency, float presence)
{
    r1_error__clear();
    if (smp == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_sampler_set_penalties: sampler is NULL");
    if (last_n < 0 || last_n > R1_SAMPLER_MAX_LAST_N)
        return r1_error__set(R1_ERR_INVALID_ARG,
                             "r1_sampler_set_penalties: last_n %d is outside 0..%d", (int)last_n,
                             R1_SAMPLER_MAX_LAST_N);
    if (!(repeat > 0.0f) || isinf(repeat))
        return r1_error__set(R1_ERR_INVALID_ARG,
                             "r1_sampler_set_penalties: repeat %g is not finite and > 0",
                             (double)repeat);
    if (!isfinite(frequency) || !isfinite(presence))
        return r1_error__set(R1_ERR_INVALID_ARG,
                             "r1_sampler_set_penalties: %s penalty is not finite",
                             isfinite(frequency) ? "presence" : "frequency");
    if (last_n != smp->last_n) {
        /* Keep the most recent ids that fit, oldest first, so changing the window mid-way
         * does not forget what was generated. */
        int32_t *hist = NULL, *counted = NULL;
        size_t keep = 0;
        if (last_n > 0) {
            hist = malloc((size_t)last_n * sizeof *hist);
            counted = malloc((size_t)last_n * sizeof *counted);
            if (hist == NULL || counted == NULL) {
                free(hist);
                free(counted);
                return r1_error__set(R1_ERR_NO_MEMORY, "r1_sampler_set_penalties: out of memory");
            }
            keep = smp->n_hist < (size_t)last_n ? smp->n_hist : (size_t)last_n;
            size_t cap = (size_t)smp->last_n;
            for (size_t i = 0; i < keep; i++)
                hist[i] = smp->hist[(smp->hist_next + cap - keep + i) % cap];
        }
        free(smp->hist);
        free(smp->counted);
        smp->hist = hist;
        smp->counted = counted;
        smp->n_hist = keep;
        smp->hist_next = last_n > 0 ? keep % (size_t)last_n : 0;
        smp->last_n = last_n;
    }
    smp->repeat = repeat;
    smp->frequency = frequency;
    smp->presence = presence;
    return R1_OK;
}

/* Index of the first bias entry with id >= the given one. */
static size_t r1_bias_find(const r1_sampler *smp, int32_t id)
{
    size_t lo = 0, hi = smp->n_bias;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (smp->bias[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

R1_API r1_status r1_sampler_set_logit_bias(r1_sampler *smp, int32_t id, float bias)
{
    r1_error__clear();
    if (smp == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_sampler_set_logit_bias: sampler is NULL");
    if (id < 0)
        return r1_error__set(R1_ERR_OUT_OF_RANGE, "r1_sampler_set_logit_bias: id %d is negative",
                             (int)id);
    if (isnan(bias) || bias == INFINITY)
        return r1_error__set(R1_ERR_INVALID_ARG,
                             "r1_sampler_set_logit_bias: bias %g for id %d is not finite or "
                             "-INFINITY",
                             (double)bias, (int)id);
    size_t at = r1_bias_find(smp, id);
    int present = at < smp->n_bias && smp->bias[at].id == id;
    if (bias == 0.0f) {
        /* A zero bias is the same as none; dropping it keeps the list short. */
        if (present) {
            memmove(smp->bias + at, smp->bias + at + 1, (smp->n_bias - at - 1) * sizeof *smp->bias);
            smp->n_bias--;
        }
        return R1_OK;
    }
    if (present) {
        smp->bias[at].bias = bias;
        return R1_OK;
    }
    if (smp->n_bias == smp->cap_bias) {
        size_t cap = smp->cap_bias ? 2 * smp->cap_bias : 8;
        r1_bias *grown = realloc(smp->bias, cap * sizeof *grown);
        if (grown == NULL)
            return r1_error__set(R1_ERR_NO_MEMORY, "r1_sampler_set_logit_bias: out of memory");
        smp->bias = grown;
        smp->cap_bias = cap;
    }
    memmove(smp->bias + at + 1, smp->bias + at, (smp->n_bias - at) * sizeof *smp->bias);
    smp->bias[at].id = id;
    smp->bias[at].bias = bias;
    smp->n_bias++;
    return R1_OK;
}

R1_API r1_status r1_sampler_clear_logit_bias(r1_sampler *smp)
{
    r1_error__clear();
    if (smp == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_sampler_clear_logit_bias: sampler is NULL");
    smp->n_bias = 0;
    return R1_OK;
}

R1_API r1_status r1_sampler_reset(r1_sampler *smp)
{
    r1_error__clear();
    if (smp == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_sampler_reset: sampler is NULL");
    smp->n_hist = 0;
    smp->hist_next = 0;
    smp->n_draws = 0;
    return R1_OK;
}

R1_API r1_status r1_sampler_accept(r1_sampler *smp, int32_t id)
{
    r1_error__clear();
    if (smp == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_sampler_accept: sampler is NULL");
    if (id < 0)
        return r1_error__set(R1_ERR_OUT_OF_RANGE, "r1_sampler_accept: id %d is negative", (int)id);
    if (smp->last_n == 0)
        return R1_OK;
    smp->hist[smp->hist_next] = id;
    smp->hist_next = (smp->hist_next + 1) % (size_t)smp->last_n;
    if (smp->n_hist < (size_t)smp->last_n)
        smp->n_hist++;
    return R1_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* The pipeline                                                                               */

static int r1_cmp_id(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Order of the top-p prefix: probability descending, then id ascending. */
static int r1_cmp_prob(const void *a, const void *b)
{
    const r1_cand *x = a, *y = b;
    if (x->w != y->w)
        return x->w > y->w ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static int r1_cmp_cand_id(const void *a, const void *b)
{
    const r1_cand *x = a, *y = b;
    return (x->id > y->id) - (x->id < y->id);
}

/* Whether a ranks before b for top-k and greedy: larger logit, then lower id. */
static int r1_cand_better(const r1_cand *a, const r1_cand *b)
{
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

/* Restore the heap below i, whose root is the candidate that ranks last. */
static void r1_heap_sift(r1_cand *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, worst = i;
        if (l < n && r1_cand_better(&h[worst], &h[l]))
            worst = l;
        if (r < n && r1_cand_better(&h[worst], &h[r]))
            worst = r;
        if (worst == i)
            return;
        r1_cand t = h[i];
        h[i] = h[worst];
        h[worst] = t;
        i = worst;
    }
}

/* Keep the k best of c[0..n) in c[0..k), in id order: O(n log k), no full sort. */
static void r1_top_k(r1_cand *c, size_t n, size_t k)
{
    for (size_t i = k / 2; i-- > 0;)
        r1_heap_sift(c, k, i);
    for (size_t j = k; j < n; j++) {
        if (r1_cand_better(&c[j], &c[0])) {
            c[0] = c[j];
            r1_heap_sift(c, k, 0);
        }
    }
    qsort(c, k, sizeof *c, r1_cmp_cand_id);
}

/* A bucket index that never decreases as w (in [0, 1]) decreases: the exponent and top three
 * mantissa bits, since the bits of a positive double order like its value. Equal probabilities
 * always share a bucket, and a higher bucket holds strictly smaller ones. */
static size_t r1_prob_bucket(double w)
{
    uint64_t bits;
    memcpy(&bits, &w, sizeof bits);
    uint64_t b = (UINT64_C(0x3FF0000000000000) >> 49) - (bits >> 49);
    return b < R1_SAMPLER_N_BUCKETS - 1 ? (size_t)b : R1_SAMPLER_N_BUCKETS - 1;
}

/* Top-p over c[0..n) with total mass z, keeping id order. The prefix is defined on the order
 * probability descending, id ascending, but only the bucket where its mass reaches p*z is
 * sorted: everything in earlier buckets is kept, everything later dropped. */
static r1_status r1_top_p(r1_sampler *smp, size_t n, double z, double p, size_t *n_out)
{
    r1_cand *c = smp->cand;
    double mass[R1_SAMPLER_N_BUCKETS] = {0};
    size_t count[R1_SAMPLER_N_BUCKETS] = {0};
    for (size_t i = 0; i < n; i++) {
        size_t b = r1_prob_bucket(c[i].w);
        mass[b] += c[i].w;
        count[b]++;
    }
    /* The bucket where the running mass reaches the target, or the last non-empty one when
     * rounding keeps the target just out of reach; cum is the mass before it. */
    size_t last = R1_SAMPLER_N_BUCKETS - 1;
    while (last > 0 && count[last] == 0)
        last--;
    double target = p * z, cum = 0.0;
    size_t at = last;
    for (size_t b = 0; b < last; b++) {
        if (cum + mass[b] >= target && count[b] > 0) {
            at = b;
            break;
        }
        cum += mass[b];
    }
    if (smp->cap_edge < count[at]) {
        r1_cand *grown = realloc(smp->edge, count[at] * sizeof *grown);
        if (grown == NULL)
            return r1_error__set(R1_ERR_NO_MEMORY, "r1_sampler_sample: out of memory");
        smp->edge = grown;
        smp->cap_edge = count[at];
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (r1_prob_bucket(c[i].w) == at)
            smp->edge[m++] = c[i];
    qsort(smp->edge, m, sizeof *smp->edge, r1_cmp_prob);
    /* The last candidate of the prefix; rounding may leave the target just out of reach, and
     * then the whole bucket is kept. */
    r1_cand cut = smp->edge[m - 1];
    for (size_t i = 0; i < m; i++) {
        cum += smp->edge[i].w;
        if (cum >= target) {
            cut = smp->edge[i];
            break;
        }
    }
    size_t keep = 0;
    for (size_t i = 0; i < n; i++)
        if (c[i].w > cut.w || (c[i].w == cut.w && c[i].id <= cut.id))
            c[keep++] = c[i];
    *n_out = keep;
    return R1_OK;
}

/* A bias or a tiny repetition factor can push a logit past FLT_MAX; +inf would turn the
 * softmax into NaN, and the largest float ranks the same. */
static float r1_finite_or_down(float l)
{
    return l == INFINITY ? FLT_MAX : l;
}

/* Apply the bias list and the penalties to c, which holds every id below n in id order. */
static void r1_adjust(r1_sampler *smp, r1_cand *c, size_t n)
{
    for (size_t i = 0; i < smp->n_bias && (size_t)smp->bias[i].id < n; i++)
        c[smp->bias[i].id].logit = r1_finite_or_down(c[smp->bias[i].id].logit + smp->bias[i].bias);
    int penalise = smp->repeat != 1.0f || smp->frequency != 0.0f || smp->presence != 0.0f;
    if (!penalise || smp->n_hist == 0)
        return;
    memcpy(smp->counted, smp->hist, smp->n_hist * sizeof *smp->counted);
    qsort(smp->counted, smp->n_hist, sizeof *smp->counted, r1_cmp_id);
    for (size_t i = 0; i < smp->n_hist;) {
        size_t j = i;
        while (j < smp->n_hist && smp->counted[j] == smp->counted[i])
            j++;
        size_t id = (size_t)smp->counted[i];
        float count = (float)(j - i);
        i = j;
        if (id >= n || c[id].logit == -INFINITY)
            continue;
        float l = c[id].logit;
        l = l > 0.0f ? l / smp->repeat : l * smp->repeat;
        c[id].logit = r1_finite_or_down(l - smp->frequency * count - smp->presence);
    }
}

/* Run the stages up to the renormalisation: leaves the survivors in smp->cand[0..*n_out) in id
 * order (the draw order) and their mass in *total. */
static r1_status r1_prepare(r1_sampler *smp, const float *logits, size_t n_vocab, size_t n_allowed,
                            const char *fn, size_t *n_out, double *total)
{
    if (smp == NULL || logits == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "%s: %s is NULL", fn,
                             smp == NULL ? "sampler" : "logits");
    if (n_vocab == 0 || n_vocab > (size_t)INT32_MAX)
        return r1_error__set(R1_ERR_INVALID_ARG, "%s: n_vocab %zu is outside 1..%d", fn, n_vocab,
                             INT32_MAX);
    if (n_allowed == 0 || n_allowed > n_vocab)
        return r1_error__set(R1_ERR_INVALID_ARG, "%s: n_allowed %zu is outside 1..%zu", fn,
                             n_allowed, n_vocab);
    if (smp->cap_cand < n_allowed) {
        r1_cand *grown = realloc(smp->cand, n_allowed * sizeof *grown);
        if (grown == NULL)
            return r1_error__set(R1_ERR_NO_MEMORY, "%s: out of memory for %zu candidates", fn,
                                 n_allowed);
        smp->cand = grown;
        smp->cap_cand = n_allowed;
    }
    r1_cand *c = smp->cand;
    for (size_t i = 0; i < n_allowed; i++) {
        float l = logits[i];
        if (!(l < INFINITY)) /* NaN or +inf: no distribution can be made of it */
            return r1_error__set(R1_ERR_INVALID_ARG, "%s: logit %zu is %s", fn, i,
                                 isnan(l) ? "NaN" : "+inf");
        c[i].logit = l;
        c[i].id = (int32_t)i;
    }
    r1_adjust(smp, c, n_allowed);

    /* Drop what is banned (-inf), tracking the best candidate as greedy ranks them. */
    size_t n = 0, best = 0;
    for (size_t i = 0; i < n_allowed; i++) {
        if (c[i].logit == -INFINITY || isnan(c[i].logit))
            continue;
        c[n] = c[i];
        if (n == 0 || r1_cand_better(&c[n], &c[best]))
            best = n;
        n++;
    }
    if (n == 0)
        return r1_error__set(R1_ERR_INVALID_ARG,
                             "%s: every token is banned (logit bias, penalties or -inf logits)",
                             fn);
    if (smp->temperature == 0.0f) {
        c[0] = c[best];
        c[0].w = 1.0;
        *n_out = 1;
        *total = 1.0;
        return R1_OK;
    }
    if (smp->top_k > 0 && (size_t)smp->top_k < n) {
        r1_top_k(c, n, (size_t)smp->top_k);
        n = (size_t)smp->top_k;
        best = 0;
        for (size_t i = 1; i < n; i++)
            if (r1_cand_better(&c[i], &c[best]))
                best = i;
    }
    double max = c[best].logit, inv_t = 1.0 / (double)smp->temperature, z = 0.0;
    for (size_t i = 0; i < n; i++) {
        c[i].w = exp(((double)c[i].logit - max) * inv_t);
        z += c[i].w;
    }
    if (smp->top_p < 1.0f) {
        r1_status st = r1_top_p(smp, n, z, (double)smp->top_p, &n);
        if (st != R1_OK)
            return st;
    }
    if (smp->min_p > 0.0f) {
        /* The largest w is exactly exp(0) = 1, so min_p * p_max is min_p in w's units. */
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            if (c[i].w >= (double)smp->min_p)
                c[m++] = c[i];
        n = m;
    }
    z = 0.0;
    for (size_t i = 0; i < n; i++)
        z += c[i].w;
    *n_out = n;
    *total = z;
    return R1_OK;
}

r1_status r1_sampler__sample_masked(r1_sampler *smp, const float *logits, size_t n_vocab,
                                    size_t n_allowed, int32_t *id_out)
{
    if (id_out == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_sampler_sample: id_out is NULL");
    size_t n = 0;
    double total = 0.0;
    r1_status st = r1_prepare(smp, logits, n_vocab, n_allowed, "r1_sampler_sample", &n, &total);
    if (st != R1_OK)
        return st;
    const r1_cand *c = smp->cand;
    double target = r1_sampler__uniform(smp->seed, smp->n_draws) * total, cum = 0.0;
    smp->n_draws++;
    /* Strictly below the running sum: a candidate whose probability underflowed to 0 can never
     * be drawn. Rounding can leave target at the very end; the last non-zero one then wins. */
    size_t pick = 0;
    for (size_t i = 0; i < n; i++) {
        if (c[i].w > 0.0)
            pick = i;
        cum += c[i].w;
        if (target < cum)
            break;
    }
    *id_out = c[pick].id;
    return R1_OK;
}

r1_status r1_sampler__distribution(r1_sampler *smp, const float *logits, size_t n_vocab,
                                   size_t n_allowed, int32_t *ids, double *probs, size_t cap,
                                   size_t *n_out)
{
    if (n_out == NULL || ((ids == NULL || probs == NULL) && cap > 0))
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_sampler__distribution: %s is NULL",
                             n_out == NULL ? "n_out"
                             : ids == NULL ? "ids"
                                           : "probs");
    size_t n = 0;
    double total = 0.0;
    r1_status st =
        r1_prepare(smp, logits, n_vocab, n_allowed, "r1_sampler__distribution", &n, &total);
    if (st != R1_OK)
        return st;
    *n_out = n;
    if (cap < n)
        return r1_error__set(R1_ERR_BUFFER_TOO_SMALL,
                             "r1_sampler__distribution: %zu entries needed", n);
    for (size_t i = 0; i < n; i++) {
        ids[i] = smp->cand[i].id;
        probs[i] = smp->cand[i].w / total;
    }
    return R1_OK;
}

R1_API r1_status r1_sampler_sample(r1_sampler *smp, const float *logits, size_t n_vocab,
                                   int32_t *id_out)
{
    r1_error__clear();
    return r1_sampler__sample_masked(smp, logits, n_vocab, n_vocab, id_out);
}
