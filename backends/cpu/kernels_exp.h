/* kernels_exp.h: exp(x) for x <= 0 and the gated activation silu(a) * b, as every CPU level
 * computes them (internal).
 *
 * Why not libm's expf: the feed-forward's SwiGLU takes one exp per intermediate element, some
 * 300 thousand per decoded V2-Lite token, and a call per element ran single-threaded between
 * the weight products. The vector levels compute the same operations as this scalar form, in
 * the same order (a range reduction n = rint(x log2 e), r = x - n ln2 in two fused steps, a
 * degree-7 Taylor polynomial in Horner form with fused multiply-adds, a scaling by 2^n in two
 * exact steps so that results down to the smallest subnormal round once), so every level gives
 * the same bits. Relative error of exp below 3e-7 (the truncation term r^8/8! is 5e-9 at
 * |r| = ln2/2; the rest is the Horner rounding), checked against double in test_kernels. */
#ifndef R1_KERNELS_EXP_H
#define R1_KERNELS_EXP_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* Below this, exp(x) is under half the smallest subnormal float: the result is 0. */
#define R1_EXP_UNDERFLOW (-104.0f)
#define R1_EXP_LOG2E     1.44269504f
/* ln 2 = R1_EXP_LN2_HI + R1_EXP_LN2_LO, the first with few bits so that n * it is exact. */
#define R1_EXP_LN2_HI 0.693359375f
#define R1_EXP_LN2_LO (-2.12194440e-4f)
#define R1_EXP_C7     1.98412698e-4f /* 1/7! */
#define R1_EXP_C6     1.38888889e-3f /* 1/6! */
#define R1_EXP_C5     8.33333333e-3f /* 1/5! */
#define R1_EXP_C4     4.16666667e-2f /* 1/4! */
#define R1_EXP_C3     1.66666667e-1f /* 1/3! */
#define R1_EXP_C2     0.5f
/* 2^n is built as 2^(n + 64) (a normal float for every n >= -149 - 0.5 / log2 e) times 2^-64. */
#define R1_EXP_BIAS    (127 + 64)
#define R1_EXP_TWO_M64 5.42101086e-20f /* 2^-64, exact */

/* exp(x) for x <= 0 (a NaN gives 0, as the vector levels' masks do). */
static inline float r1_exp_nonpositive(float x)
{
    if (!(x >= R1_EXP_UNDERFLOW))
        return 0.0f;
    const float t = x * R1_EXP_LOG2E;
    const float n = rintf(t);
    float r = fmaf(n, -R1_EXP_LN2_HI, x);
    r = fmaf(n, -R1_EXP_LN2_LO, r);
    float p = R1_EXP_C7;
    p = fmaf(p, r, R1_EXP_C6);
    p = fmaf(p, r, R1_EXP_C5);
    p = fmaf(p, r, R1_EXP_C4);
    p = fmaf(p, r, R1_EXP_C3);
    p = fmaf(p, r, R1_EXP_C2);
    p = fmaf(p, r, 1.0f);
    p = fmaf(p, r, 1.0f);
    const int32_t bits = ((int32_t)n + R1_EXP_BIAS) * (1 << 23);
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    const float big = p * scale;
    return big * R1_EXP_TWO_M64;
}

/* silu(a) * b with the stable sigmoid (docs/model.md §8.10): e = exp(-|a|), silu = a / (1 + e) for
 * a >= 0 and a e / (1 + e) below, so exp never overflows. */
static inline float r1_silu_mul_one(float a, float b)
{
    const float e = r1_exp_nonpositive(-fabsf(a));
    const float ae = a * e;
    const float num = a >= 0.0f ? a : ae;
    const float den = 1.0f + e;
    const float s = num / den;
    return s * b;
}

#endif
