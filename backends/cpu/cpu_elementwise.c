/* cpu_elementwise.c: norm, gated activation, softmax and vector arithmetic. */
#include <math.h>
#include <stdint.h>

#include "cpu_kernels.h"
#include "kernels_levels.h"

/* These run on one activation row of a few thousand floats, next to matmuls that stream
 * megabytes: plain C that the compiler vectorises where the order does not matter, and fixed
 * (double) accumulation where it does. */

/* Four double accumulators: a fixed order, a short dependency chain, and ~29 more bits than
 * the float inputs, so the sum of squares is exact to float precision for any row length we
 * meet and identical on every SIMD level. */
static double r1_sum_squares(const float *x, int64_t n)
{
    double acc[4] = {0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int k = 0; k < 4; k++)
            acc[k] += (double)x[i + k] * (double)x[i + k];
    for (; i < n; i++)
        acc[0] += (double)x[i] * (double)x[i];
    return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

void r1_cpu__rmsnorm(const float *x, const float *g, float eps, int64_t n, float *y)
{
    if (n <= 0)
        return;
    double mean = r1_sum_squares(x, n) / (double)n;
    float inv = (float)(1.0 / sqrt(mean + (double)eps));
    for (int64_t i = 0; i < n; i++)
        y[i] = (x[i] * inv) * g[i];
}

void r1_cpu__rmsnorm_rows(const float *x, const float *g, float eps, int64_t n_rows, int64_t n,
                          float *y)
{
    for (int64_t r = 0; r < n_rows; r++)
        r1_cpu__rmsnorm(x + r * n, g, eps, n, y + r * n);
}

void r1_cpu__silu_mul(const float *a, const float *b, int64_t n, float *y)
{
    r1_cpu__kernels_active()->silu_mul(a, b, n, y);
}

void r1_cpu__softmax(float *x, int64_t n)
{
    if (n <= 0)
        return;
    float mx = x[0];
    for (int64_t i = 1; i < n; i++)
        mx = x[i] > mx ? x[i] : mx;
    if (mx == -INFINITY) { /* guards -inf - -inf = NaN (docs/model.md §8.2) */
        for (int64_t i = 0; i < n; i++)
            x[i] = 0.0f;
        return;
    }
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += (double)x[i];
    }
    float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++)
        x[i] *= inv;
}

void r1_cpu__add(const float *a, const float *b, int64_t n, float *y)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = a[i] + b[i];
}

void r1_cpu__scale(float *x, float s, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        x[i] *= s;
}

void r1_cpu__axpy(float alpha, const float *x, int64_t n, float *y)
{
    r1_cpu__kernels_active()->axpy(alpha, x, n, y);
}

float r1_cpu__dot_f32(const float *a, const float *b, int64_t n)
{
    return r1_cpu__kernels_active()->dot_f32(a, b, n);
}
