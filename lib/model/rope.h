/* rope.h: YaRN rotary embedding tables and the interleaved rotation of MLA rope dims (internal). */
#ifndef R1_ROPE_H
#define R1_ROPE_H

#include <stdint.h>

#include "model_config.h"

enum { R1_ROPE_MAX_PAIRS = 128 };

/* The per-pair inverse frequencies after YaRN blending (docs/model.md §3), computed in double. */
typedef struct r1_rope {
    int32_t n_pairs;                    /* qk_rope_head_dim / 2 */
    double inv_freq[R1_ROPE_MAX_PAIRS]; /* theta'_m */
    int32_t corr_low, corr_high;        /* the ramp range (docs/model.md §3.2) */
    double softmax_scale;               /* d_qk^-1/2 * mscale(all_dim)^2 (docs/model.md §2.5) */
    double rope_scale;                  /* mscale(mscale)/mscale(mscale_all_dim) on cos/sin */
} r1_rope;

/* Fills r from the configuration; R1_ERR_UNSUPPORTED for a rope dim above the table size. */
r1_status r1_rope__init(r1_rope *r, const r1_model_config *cfg);

/* cos/sin of p * theta'_m for every pair: cs has 2 * n_pairs floats (cos, sin interleaved).
 * Angles and trig are evaluated in double and rounded once (docs/model.md §3.5). */
void r1_rope__table(const r1_rope *r, int64_t position, float *cs);

/* Rotates pairs (x[2m], x[2m+1]) of one rope vector in place by the angles in cs (the
 * interleaved layout in which the checkpoints were trained, docs/model.md §2.4). */
void r1_rope__apply(const r1_rope *r, const float *cs, float *x);

/* yarn_mscale(s, m) of docs/model.md §3.4. */
double r1_rope__mscale(double factor, double m);

#endif
