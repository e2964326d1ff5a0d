/* compute.h: how the forward pass runs an op on the model's backend, with CPU fallback (internal).
 */
#ifndef R1_COMPUTE_H
#define R1_COMPUTE_H

#include <stdint.h>

#include "backend.h"
#include "tensor.h"

/* An opened device of a backend plus the CPU device that runs what the backend cannot (the
 * hybrid rule of docs/backends.md). */
typedef struct r1_compute {
    const r1_backend_ops *ops;
    r1_dev *dev;
    const r1_backend_ops *cpu_ops;
    r1_dev *cpu_dev; /* == dev when the backend is the CPU */
} r1_compute;

/* Opens device index of the named backend ("cpu" when name is NULL). */
r1_status r1_compute__open(r1_compute *c, const char *backend_name, int32_t device_index);
void r1_compute__close(r1_compute *c);

/* Host threads for ops run on the CPU (the fallback included); <= 0: one per core. */
r1_status r1_compute__set_threads(r1_compute *c, int32_t n_threads);

/* y(T, out) = x(T, in) . w(out, in)^T for any weight dtype; x and y are host float32. */
r1_status r1_compute__matmul(r1_compute *c, const r1_tensor *w, const float *x, int64_t n_tokens,
                             float *y);

#endif
