/* sampler.h: token selection from logits (internal entry points of lib/run/sampler.c). */
#ifndef R1_SAMPLER_H
#define R1_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "r1.h"

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
