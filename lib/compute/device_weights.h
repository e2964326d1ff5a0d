/* device_weights.h: dense weights resident on a compute device, keyed by their host tensor
 * (internal). Each dense tensor is uploaded once, on first use, into a buffer of its own that
 * lives until the map is destroyed; a tensor the device's memory cannot hold is remembered as
 * host-only so the core runs its products on the CPU without asking again. */
#ifndef R1_DEVICE_WEIGHTS_H
#define R1_DEVICE_WEIGHTS_H

#include <stdint.h>

#include "backend.h"
#include "tensor.h"

typedef struct r1_device_weights r1_device_weights;

typedef struct r1_device_weights_counters {
    uint64_t tensors;   /* dense tensors resident */
    uint64_t bytes;     /* their device bytes */
    uint64_t host_only; /* tensors left on the host for want of device memory */
    uint64_t upload_ns; /* time spent recording their uploads */
} r1_device_weights_counters;

r1_status r1_device_weights__create(r1_device_weights **out, const r1_backend_ops *ops,
                                    r1_dev *dev);
/* Waits for the device and frees every buffer; accepts NULL. */
void r1_device_weights__destroy(r1_device_weights *dw);

/* The device copy of w, whose data (and fp8 scales) must stay at the same host address, with
 * the same contents, for the map's lifetime (the model's mapped file does). The first call
 * records the upload; the caller submits it with its product. R1_ERR_NO_MEMORY (now or on an
 * earlier call) when the device cannot hold it. Not thread-safe: the caller serialises. */
r1_status r1_device_weights__get(r1_device_weights *dw, const r1_tensor *w, r1_dtensor *out);

void r1_device_weights__counters(const r1_device_weights *dw, r1_device_weights_counters *out);

#endif
