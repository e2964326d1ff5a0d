/* kv_shift.h: removing a span of cached positions and moving the later ones down, rotary part
 * re-rotated (internal). */
#ifndef R1_KV_SHIFT_H
#define R1_KV_SHIFT_H

#include <stdint.h>

#include "forward.h"
#include "r1.h"

/* Removes positions [n_keep, n_keep + n_drop) of a cache holding n_past positions: every later
 * position p moves to p - n_drop, and the rotary part of its row (stored after rotation by p)
 * is rotated by -n_drop, so the cache equals, up to rounding, one that evaluated the kept
 * tokens at their new positions. f (bound) gives the model's shape and rotary frequencies.
 * Latent rows (MLA) in f32 or q8_0, key/value rows (GQA) in f32, f16 or q8_0: values that are
 * stored rounded are dequantised, rotated in double and rounded again. R1_ERR_UNSUPPORTED for
 * a row layout it does not know; the cache is unchanged on failure. A device's mirror of the
 * cache is the caller's to drop (r1_compute__drop_latent). */
r1_status r1_kv_cache__shift(r1_kv_cache *kv, const r1_forward *f, int64_t n_past, int64_t n_keep,
                             int64_t n_drop);

#endif
