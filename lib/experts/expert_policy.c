/* expert_policy.c: eviction order of the expert store: plain LRU or decayed use counts. */
#include "expert_policy.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

/* Past this many half-lives since the last rebase, scores are scaled back down so that a use
 * weight of 2^(passes / half-life) never leaves the range of a double. */
#define REBASE_HALF_LIVES 256.0
#define RECENT_HALF_LIFE  1.0

typedef struct entry {
    /* Sum over demand uses of 2^((pass of use - base) / half-life):
     * the decayed count times a factor common to every entry, so comparing scores needs no
     * exponent per entry and a use adds one weight. */
    double score;
    /* The same with a half-life of RECENT_HALF_LIFE passes: routing repeats itself from one
     * token to the next more than the long-run counts say. */
    double recent;
    uint64_t stamp;  /* last insert or use, for LRU and ties */
    uint64_t used;   /* stamp of the last demand use (0: none), which a wrong prediction gets */
    int32_t pos;     /* index in resident[], -1 when not resident */
    int32_t pending; /* inserted by a prefetch whose layer has not run since */
} entry;

struct r1_expert_policy {
    int32_t kind, n_layers, n_experts;
    entry *e;          /* n_layers * n_experts */
    int32_t *resident; /* indexes into e, n_resident of them */
    int32_t n_resident;
    uint64_t tick;        /* insert or use counter */
    uint64_t passes;      /* since the last rebase */
    double weight;        /* 2^(passes / half_life): what a use adds now */
    double weight_recent; /* 2^(passes / RECENT_HALF_LIFE) */
    double half_life;     /* in passes */
    /* Weigh scores by how soon each expert's layer comes round again (see before()). */
    int32_t layer_distance;
    int32_t cur_layer; /* of the latest demand use */
    double every_pass; /* sum of 2^(-i / half_life), i >= 0: an expert used in every pass */
};

r1_status r1_expert_policy__create(r1_expert_policy **out, int32_t kind, int32_t n_layers,
                                   int32_t n_experts)
{
    *out = NULL;
    if ((kind != R1_EXPERT_POLICY_LRU && kind != R1_EXPERT_POLICY_DEFAULT) || n_layers < 0 ||
        n_experts < 0 || (n_experts > 0 && n_layers > INT32_MAX / n_experts))
        return r1_error__set(R1_ERR_INVALID_ARG, "expert policy %d for %d x %d experts", (int)kind,
                             (int)n_layers, (int)n_experts);
    size_t n = (size_t)n_layers * (size_t)n_experts;
    r1_expert_policy *p = calloc(1, sizeof *p);
    if (p == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "out of memory");
    p->e = calloc(n > 0 ? n : 1, sizeof *p->e);
    p->resident = calloc(n > 0 ? n : 1, sizeof *p->resident);
    if (p->e == NULL || p->resident == NULL) {
        r1_expert_policy__destroy(p);
        return r1_error__set(R1_ERR_NO_MEMORY, "out of memory");
    }
    for (size_t i = 0; i < n; i++)
        p->e[i].pos = -1;
    p->kind = kind;
    p->n_layers = n_layers;
    p->n_experts = n_experts;
    p->weight = 1.0;
    p->weight_recent = 1.0;
    p->half_life = R1_EXPERT_POLICY_HALF_LIFE;
    p->layer_distance = 1;
    p->every_pass = 1.0 / (1.0 - exp2(-1.0 / p->half_life));
    *out = p;
    return R1_OK;
}

void r1_expert_policy__destroy(r1_expert_policy *p)
{
    if (p == NULL)
        return;
    free(p->e);
    free(p->resident);
    free(p);
}

/* The entry of (layer, expert), or NULL when out of range (the store never asks for one, but a
 * wrong index must not write outside the table). */
static entry *lookup(r1_expert_policy *p, int32_t layer, int32_t expert)
{
    if (layer < 0 || layer >= p->n_layers || expert < 0 || expert >= p->n_experts)
        return NULL;
    return &p->e[(size_t)layer * (size_t)p->n_experts + (size_t)expert];
}

void r1_expert_policy__on_insert(r1_expert_policy *p, int32_t layer, int32_t expert,
                                 int32_t prefetched)
{
    entry *e = lookup(p, layer, expert);
    if (e == NULL || e->pos >= 0)
        return;
    e->pos = p->n_resident;
    p->resident[p->n_resident++] = (int32_t)(e - p->e);
    e->stamp = ++p->tick;
    e->pending = prefetched != 0;
}

void r1_expert_policy__on_access(r1_expert_policy *p, int32_t layer, int32_t expert)
{
    entry *e = lookup(p, layer, expert);
    if (e == NULL)
        return;
    e->used = e->stamp = ++p->tick;
    p->cur_layer = layer;
    e->pending = 0;
    e->score += p->weight;
    e->recent += p->weight_recent;
}

void r1_expert_policy__on_unconfirmed(r1_expert_policy *p, int32_t layer, int32_t expert)
{
    entry *e = lookup(p, layer, expert);
    if (e == NULL || e->pos < 0 || !e->pending)
        return;
    e->pending = 0;
    e->stamp = e->used;
}

void r1_expert_policy__on_evict(r1_expert_policy *p, int32_t layer, int32_t expert)
{
    entry *e = lookup(p, layer, expert);
    if (e == NULL || e->pos < 0)
        return;
    e->pending = 0;
    int32_t last = p->resident[--p->n_resident];
    p->resident[e->pos] = last;
    p->e[last].pos = e->pos;
    e->pos = -1;
}

void r1_expert_policy__on_pass(r1_expert_policy *p)
{
    p->passes++;
    double age = (double)p->passes / p->half_life;
    double age_recent = (double)p->passes / RECENT_HALF_LIFE;
    if (age >= REBASE_HALF_LIVES || age_recent >= REBASE_HALF_LIVES) {
        size_t n = (size_t)p->n_layers * (size_t)p->n_experts;
        double scale = exp2(-age), scale_recent = exp2(-age_recent);
        for (size_t i = 0; i < n; i++) {
            p->e[i].score *= scale;
            p->e[i].recent *= scale_recent;
        }
        p->passes = 0;
        age = age_recent = 0.0;
    }
    p->weight = exp2(age);
    p->weight_recent = exp2(age_recent);
}

/* Layers from the one in use now until the forward pass reaches `layer` again: 1 for the next
 * layer, n_layers for the one in use (its experts not taken yet wait for the next pass). */
static int32_t distance(const r1_expert_policy *p, int32_t layer)
{
    int32_t d = layer - p->cur_layer;
    return d > 0 ? d : d + p->n_layers;
}

/* Layer steps of cache room an expert of `layer` takes per expected hit: holding it until its
 * layer comes round again takes distance() steps, and it is then chosen with probability prob,
 * estimated from its decayed use counts: the long-run count over that of an expert used in
 * every pass, or the last pass or two (half-life RECENT_HALF_LIFE), whichever says more, since
 * routing repeats itself from one token to the next more than long-run counts show. A
 * prefetched expert whose layer has not run yet counts as certain: it was predicted for the
 * coming layer (for one layer only: then the store says on_unconfirmed or the demand came).
 * Inf: never used. */
static double room_per_hit(const r1_expert_policy *p, const entry *e, int32_t layer)
{
    double d = (double)distance(p, layer);
    if (e->pending)
        return d;
    if (!(e->score > 0.0) && !(e->recent > 0.0))
        return INFINITY;
    double prob = e->score / (p->weight * p->every_pass);
    double prob_recent = e->recent * (1.0 - exp2(-1.0 / RECENT_HALF_LIFE)) / p->weight_recent;
    if (prob_recent > prob)
        prob = prob_recent;
    if (prob > 1.0)
        prob = 1.0;
    return d / prob;
}

/* Whether a (of layer la) should be dropped before b (of layer lb). The default policy drops
 * the expert with the fewest expected hits per unit of cache room and time (the least hit
 * density, as in LHD), which maximises the hit rate of a cache of equal-sized items: under
 * uniform routing the probabilities are alike and the expert whose layer has just run goes
 * first; under skew a hot expert stays unless its layer is a whole pass away and a colder
 * one's is close. Ties (and LRU): least recent first. */
static int before(const r1_expert_policy *p, const entry *a, int32_t la, const entry *b, int32_t lb)
{
    if (p->kind == R1_EXPERT_POLICY_DEFAULT) {
        if (p->layer_distance) {
            double ra = room_per_hit(p, a, la), rb = room_per_hit(p, b, lb);
            if (ra != rb)
                return ra > rb;
        } else if (a->score != b->score) {
            return a->score < b->score;
        }
    }
    return a->stamp < b->stamp;
}

int32_t r1_expert_policy__victim(r1_expert_policy *p,
                                 int (*evictable)(void *ctx, int32_t layer, int32_t expert),
                                 void *ctx, int32_t *layer, int32_t *expert)
{
    const entry *best = NULL;
    int32_t best_layer = 0;
    for (int32_t i = 0; i < p->n_resident; i++) {
        int32_t id = p->resident[i], l = id / p->n_experts;
        const entry *e = &p->e[id];
        if (best != NULL && !before(p, e, l, best, best_layer))
            continue;
        if (evictable(ctx, l, id % p->n_experts)) {
            best = e;
            best_layer = l;
        }
    }
    if (best == NULL)
        return 0;
    int32_t id = (int32_t)(best - p->e);
    *layer = id / p->n_experts;
    *expert = id % p->n_experts;
    return 1;
}

void r1_expert_policy__tune(r1_expert_policy *p, double half_life, int32_t layer_distance)
{
    if (half_life > 0.0) {
        p->half_life = half_life;
        p->every_pass = 1.0 / (1.0 - exp2(-1.0 / half_life));
    }
    p->layer_distance = layer_distance != 0;
}

int32_t r1_expert_policy__resident(const r1_expert_policy *p)
{
    return p->n_resident;
}

int32_t r1_expert_policy__predict(int32_t *sel, float *selw, int64_t n, int32_t mode)
{
    /* Compaction: slot n_used is written only after slot i >= n_used was read. */
    int32_t n_used = 0;
    double total = 0;
    for (int64_t i = 0; i < n; i++) {
        int32_t j = 0;
        while (j < n_used && sel[j] != sel[i])
            j++;
        const float w = selw[i];
        if (j == n_used) {
            sel[n_used] = sel[i];
            selw[n_used++] = 0;
        }
        selw[j] += w;
        total += w;
    }
    /* A stable selection sort, surest first (at most n_routed_experts entries). */
    for (int32_t i = 0; i < n_used; i++) {
        int32_t best = i;
        for (int32_t j = i + 1; j < n_used; j++)
            if (selw[j] > selw[best])
                best = j;
        const int32_t e = sel[best];
        const float w = selw[best];
        memmove(sel + i + 1, sel + i, (size_t)(best - i) * sizeof *sel);
        memmove(selw + i + 1, selw + i, (size_t)(best - i) * sizeof *selw);
        sel[i] = e;
        selw[i] = w;
    }
    if (mode == R1_PREDICT_SUREST_HALF)
        return (n_used + 1) / 2;
    int32_t n_ask = 0;
    while (n_ask < n_used && (double)selw[n_ask] * n_used >= R1_PREDICT_CONFIDENCE * total)
        n_ask++;
    return n_ask;
}
