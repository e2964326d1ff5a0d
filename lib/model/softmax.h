/* softmax.h: the attention softmax shared by the forward pass and the CPU backend (internal). */
#ifndef R1_SOFTMAX_H
#define R1_SOFTMAX_H

#include <math.h>
#include <stdint.h>

/* p[j] = exp((p[j] - max) * scale) / sum over j < n, in place. The sum is kept in double, so
 * that prefill (lib/model/forward.c) and decode (backends/cpu/cpu_attention.c) normalise alike. */
static inline void r1_softmax__scaled(float *p, int64_t n, double scale)
{
    float mx = -INFINITY;
    for (int64_t j = 0; j < n; j++)
        mx = p[j] > mx ? p[j] : mx;
    double sum = 0;
    const float sc = (float)scale;
    for (int64_t j = 0; j < n; j++)
        sum += (p[j] = expf((p[j] - mx) * sc));
    const float inv = (float)(1.0 / sum);
    for (int64_t j = 0; j < n; j++)
        p[j] *= inv;
}

#endif
