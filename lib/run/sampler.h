/* sampler.h: token selection from logits (internal entry points of lib/run/sampler.c). */
#ifndef R1_SAMPLER_H
#define R1_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "r1.h"

/* Keeps the history ring and its scratch copy to a few megabytes. */
#define R1_SAMPLER_MAX_LAST_N (1 << 20)

typedef struct r1_bias {
    int32_t id;
    float bias;
} r1_bias;

typedef struct r1_cand r1_cand; /* a candidate of one sample call (sampler.c) */

/* Here rather than in sampler.c so that saving and restoring a sampler (session_state.c) reads
 * and replaces exactly these fields. */
struct r1_sampler {
    uint64_t seed;
    uint64_t n_draws; /* index of the next draw */
    float temperature, top_p, min_p;
    int32_t top_k;
    int32_t last_n;
    float repeat, frequency, presence;
    r1_bias *bias; /* n_bias entries sorted by id */
    size_t n_bias, cap_bias;
    int32_t *hist;    /* (last_n) ring of accepted ids, oldest at (hist_next - n_hist) */
    int32_t *counted; /* (last_n) scratch: the window sorted, to count each id once */
    size_t n_hist, hist_next;
    r1_cand *cand; /* (cap_cand) scratch for one sample call */
    size_t cap_cand;
    r1_cand *edge; /* (cap_edge) scratch: the top-p bucket being sorted */
    size_t cap_edge;
};

/* Sample as r1_sampler_sample() does, but only from ids below n_allowed: the rows of the output
 * matrix past the tokenizer's last id (vocabulary padding, docs/model.md §8.14) can never be
 * chosen. 1 <= n_allowed <= n_vocab. Advances the draw counter by one on success. */
r1_status r1_sampler__sample_masked(r1_sampler *smp, const float *logits, size_t n_vocab,
                                    size_t n_allowed, int32_t *id_out);

/* The distribution the next draw would use, for tests and diagnostics: runs every stage up to
 * the renormalisation without drawing or advancing the counter. Writes the surviving ids and
 * their probabilities (summing to 1) in id order, the order the draw walks, into ids/probs,
 * which hold cap entries, and their count into *n_out. With temperature 0 the result is the single
 * greedy id with probability 1. R1_ERR_BUFFER_TOO_SMALL when cap is short (*n_out is then the count
 * needed). */
r1_status r1_sampler__distribution(r1_sampler *smp, const float *logits, size_t n_vocab,
                                   size_t n_allowed, int32_t *ids, double *probs, size_t cap,
                                   size_t *n_out);

/* The counter-based generator behind every draw: a uniform double in [0, 1) that depends only on
 * (seed, index), so a sequence is reproducible on any platform and thread count. */
double r1_sampler__uniform(uint64_t seed, uint64_t index);

#endif
