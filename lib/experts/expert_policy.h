/* expert_policy.h: which resident routed expert the expert store drops next (internal). */
#ifndef R1_EXPERT_POLICY_H
#define R1_EXPERT_POLICY_H

#include <stdint.h>

#include "r1.h"

/* R1_EXPERT_POLICY_LRU drops the least recently used expert. R1_EXPERT_POLICY_DEFAULT keeps
 * decayed use counts for every (layer, expert), resident or not (half-life
 * R1_EXPERT_POLICY_HALF_LIFE passes, and one pass for the token-to-token repetition), turns them
 * into the chance that the expert is chosen when its layer next runs, and drops the expert with
 * the fewest expected hits per layer step it would occupy until then (the layer about to run is
 * 1 step away, the one just run a whole pass). test/bench_expert_policy.c compares
 * the two (docs/performance.md): at the budget's share under uniform routing, where LRU's
 * cyclic order of layers loses up to 4 points; up to 6 points above LRU on skewed synthetic
 * routing and up to 10 on a trained model's; at most 0.2 below it on any trace measured. */
enum { R1_EXPERT_POLICY_LRU = 0, R1_EXPERT_POLICY_DEFAULT = 1 };
enum { R1_EXPERT_POLICY_HALF_LIFE = 32 };

typedef struct r1_expert_policy r1_expert_policy;

/* kind: R1_EXPERT_POLICY_LRU or R1_EXPERT_POLICY_DEFAULT (anything else is R1_ERR_INVALID_ARG).
 * layer indexes are 0 .. n_layers - 1 and experts 0 .. n_experts - 1. Not thread-safe: the
 * store calls every function below under its own lock. */
r1_status r1_expert_policy__create(r1_expert_policy **out, int32_t kind, int32_t n_layers,
                                   int32_t n_experts);
void r1_expert_policy__destroy(r1_expert_policy *p);

/* (layer, expert) became resident (its load finished or started: either, as long as it is
 * consistent). prefetched 1: loaded ahead of a demand, as a prediction for the layer about to
 * run. Until that layer runs it is kept like a certain use of that layer, but it is no use:
 * the expert's history (decayed counts, LRU's recency) gains nothing unless a demand comes, so
 * a wrong prediction leaves no trace once on_unconfirmed or on_evict says so. Inserting a
 * resident expert again is ignored. */
void r1_expert_policy__on_insert(r1_expert_policy *p, int32_t layer, int32_t expert,
                                 int32_t prefetched);
/* A demand use of (layer, expert), resident or not (a miss counts too, before or after its
 * insert). */
void r1_expert_policy__on_access(r1_expert_policy *p, int32_t layer, int32_t expert);
/* A resident (layer, expert) inserted by a prefetch was not demanded when its layer ran: from
 * now on it ranks by its own history (LRU: as recent as its last demand use, or older than
 * any used expert), not as a prediction. Ignored unless it is such a pending prefetch. */
void r1_expert_policy__on_unconfirmed(r1_expert_policy *p, int32_t layer, int32_t expert);
/* (layer, expert) left memory. Evicting a non-resident expert is ignored. */
void r1_expert_policy__on_evict(r1_expert_policy *p, int32_t layer, int32_t expert);
/* One forward pass ended: advances the decay clock. */
void r1_expert_policy__on_pass(r1_expert_policy *p);

/* The resident expert to drop next among those evictable(ctx, layer, expert) accepts (nonzero),
 * in *layer and *expert: 1, or 0 when none is. It stays resident until on_evict. evictable is
 * called only for candidates that would beat the best one found so far. */
int32_t r1_expert_policy__victim(r1_expert_policy *p,
                                 int (*evictable)(void *ctx, int32_t layer, int32_t expert),
                                 void *ctx, int32_t *layer, int32_t *expert);

/* For the evaluator's sweeps (test/bench_expert_policy.c): R1_EXPERT_POLICY_DEFAULT's decay
 * half-life in passes (R1_EXPERT_POLICY_HALF_LIFE unless set; <= 0 keeps it) and whether it
 * weighs scores by layer distance (1 unless set). Call before any other use. */
void r1_expert_policy__tune(r1_expert_policy *p, double half_life, int32_t layer_distance);

/* The router lookahead's predictions (r1_lookahead in forward.c) from a router's n picks of
 * one layer (the experts in sel, their routing weights in selw; a chunk's tokens one after the
 * other): the distinct experts, each with the sum of its weights, compacted into the front of
 * sel and selw in place and ordered surest first (largest sum; ties keep the order of first
 * appearance). Returns how many of them, from the front, to prefetch:
 * R1_PREDICT_SUREST_HALF, the first half (rounded up), for a guess made a whole layer ahead;
 * R1_PREDICT_CONFIDENT, those whose sum is at least R1_PREDICT_CONFIDENCE times the mean over the
 * distinct experts, for a guess made just before the layer's own router runs: below that, a
 * guess was wrong one time in four on the V2-Lite-shaped model (against one in eleven above it),
 * and a right one gains only the time of one attention block over the demand that follows. */
enum { R1_PREDICT_SUREST_HALF = 0, R1_PREDICT_CONFIDENT = 1 };
#define R1_PREDICT_CONFIDENCE 0.75
int32_t r1_expert_policy__predict(int32_t *sel, float *selw, int64_t n, int32_t mode);

/* Number of resident experts the policy tracks (for tests and assertions). */
int32_t r1_expert_policy__resident(const r1_expert_policy *p);

#endif
