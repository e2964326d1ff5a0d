/* device_expert_cache.h: routed experts resident on a compute device, LRU under a byte budget
 * (internal). The second level below the host expert store (docs/backends.md): generic over the
 * backend table, so the core never sees a GPU type. */
#ifndef R1_DEVICE_EXPERT_CACHE_H
#define R1_DEVICE_EXPERT_CACHE_H

#include <stdint.h>

#include "backend.h"
#include "expert_cache.h"

typedef struct r1_device_expert_cache r1_device_expert_cache;

typedef struct r1_device_expert_counters {
    uint64_t hits, misses, evictions;
    uint64_t bytes_uploaded;
    uint64_t upload_ns;
    uint64_t current_bytes, peak_bytes;
    uint64_t budget_bytes; /* 0: unbounded (the device's memory is the limit) */
} r1_device_expert_counters;

/* Slots for n_layers x n_experts (layer indices below n_layers). Not thread-safe: the caller
 * serialises use of the device. */
r1_status r1_device_expert_cache__create(r1_device_expert_cache **out, const r1_backend_ops *ops,
                                         r1_dev *dev, int64_t n_layers, int64_t n_experts,
                                         uint64_t budget_bytes);
/* Waits for the device and frees every buffer; accepts NULL. */
void r1_device_expert_cache__destroy(r1_device_expert_cache *dc);

/* The device buffer holding the raw blob of (layer, expert), as the host store holds it (so a
 * weight's offset in the buffer is its offset in the host blob), uploading it on a miss and
 * evicting least recently used experts that no queued work reads. R1_ERR_BUDGET when the blob
 * cannot fit the budget and R1_ERR_NO_MEMORY when the device has no room even with nothing
 * cached: the caller then runs the product on the CPU. The upload is recorded, not submitted:
 * the caller submits it with the product. */
r1_status r1_device_expert_cache__get(r1_device_expert_cache *dc, int64_t layer, int64_t expert,
                                      const uint8_t *blob, uint64_t blob_bytes, r1_buf **out);
/* Records that the expert is read by work up to submit seq (eviction waits for it). */
void r1_device_expert_cache__used(r1_device_expert_cache *dc, int64_t layer, int64_t expert,
                                  uint64_t seq);

void r1_device_expert_cache__counters(const r1_device_expert_cache *dc,
                                      r1_device_expert_counters *out);

#endif
