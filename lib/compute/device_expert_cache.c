/* device_expert_cache.c: an LRU of routed experts in device buffers, one buffer per expert. */
#include "device_expert_cache.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "error.h"
#include "lru.h"

typedef struct r1_dec_slot {
    r1_lru_node lru; /* first (lru.h): listed while resident */
    r1_buf *buf;
    uint64_t bytes;
    uint64_t last_seq; /* the latest submit that reads the buffer */
} r1_dec_slot;

struct r1_device_expert_cache {
    const r1_backend_ops *ops;
    r1_dev *dev;
    int64_t n_layers, n_experts;
    r1_dec_slot *slots;
    r1_lru_node lru; /* resident slots, least recent first */
    r1_device_expert_counters k;
};

r1_status r1_device_expert_cache__create(r1_device_expert_cache **out, const r1_backend_ops *ops,
                                         r1_dev *dev, int64_t n_layers, int64_t n_experts,
                                         uint64_t budget_bytes)
{
    *out = NULL;
    if (ops == NULL || dev == NULL || n_layers < 0 || n_experts < 0)
        return r1_error__set(R1_ERR_INVALID_ARG, "device expert cache: bad arguments");
    r1_device_expert_cache *dc = calloc(1, sizeof *dc);
    size_t n = (size_t)n_layers * (size_t)n_experts;
    if (dc == NULL || (n > 0 && (dc->slots = calloc(n, sizeof *dc->slots)) == NULL)) {
        free(dc);
        return r1_error__set(R1_ERR_NO_MEMORY, "cannot allocate the device expert cache");
    }
    dc->ops = ops;
    dc->dev = dev;
    dc->n_layers = n_layers;
    dc->n_experts = n_experts;
    r1_lru__init(&dc->lru);
    dc->k.budget_bytes = budget_bytes;
    *out = dc;
    return R1_OK;
}

static void r1_dec_drop(r1_device_expert_cache *dc, r1_dec_slot *s)
{
    r1_lru__unlink(&s->lru);
    dc->ops->free(dc->dev, s->buf);
    dc->k.current_bytes -= s->bytes;
    s->buf = NULL;
    s->bytes = 0;
}

void r1_device_expert_cache__destroy(r1_device_expert_cache *dc)
{
    if (dc == NULL)
        return;
    dc->ops->wait(dc->dev, UINT64_MAX);
    r1_lru_node *n;
    while ((n = r1_lru__oldest(&dc->lru)) != NULL)
        r1_dec_drop(dc, (r1_dec_slot *)(void *)n);
    free(dc->slots);
    free(dc);
}

/* Frees the least recently used expert, first waiting for queued work that still reads it. */
static r1_status r1_dec_evict_one(r1_device_expert_cache *dc)
{
    r1_dec_slot *victim = (r1_dec_slot *)(void *)r1_lru__oldest(&dc->lru);
    if (victim == NULL)
        return r1_error__set(R1_ERR_BUDGET, "device expert cache: nothing left to evict");
    if (victim->last_seq > dc->ops->completed(dc->dev)) {
        r1_status st = dc->ops->wait(dc->dev, victim->last_seq);
        if (st != R1_OK)
            return st;
    }
    r1_dec_drop(dc, victim);
    dc->k.evictions++;
    return R1_OK;
}

/* Allocates slot s and records the upload of the blob into it. */
static r1_status r1_dec_load(r1_device_expert_cache *dc, r1_dec_slot *s, const uint8_t *blob,
                             uint64_t bytes)
{
    if (dc->k.budget_bytes != 0 && bytes > dc->k.budget_bytes)
        return r1_error__set(R1_ERR_BUDGET,
                             "an expert of %" PRIu64
                             " bytes exceeds the device expert budget of %" PRIu64 " bytes",
                             bytes, dc->k.budget_bytes);
    while (dc->k.budget_bytes != 0 && dc->k.current_bytes + bytes > dc->k.budget_bytes) {
        r1_status st = r1_dec_evict_one(dc);
        if (st != R1_OK)
            return st;
    }
    r1_status st;
    /* The device may run out before the budget does: make room from the cache itself. */
    while ((st = dc->ops->alloc(dc->dev, (size_t)bytes, &s->buf)) == R1_ERR_NO_MEMORY &&
           r1_lru__oldest(&dc->lru) != NULL) {
        if ((st = r1_dec_evict_one(dc)) != R1_OK)
            return st;
    }
    if (st != R1_OK)
        return st;
    uint64_t t0 = r1_clock__now_ns();
    st = dc->ops->upload(dc->dev, s->buf, 0, blob, (size_t)bytes);
    dc->k.upload_ns += r1_clock__now_ns() - t0;
    if (st != R1_OK) {
        dc->ops->free(dc->dev, s->buf); /* the failed upload recorded nothing */
        s->buf = NULL;
        return st;
    }
    s->bytes = bytes;
    s->last_seq = 0;
    dc->k.current_bytes += bytes;
    if (dc->k.current_bytes > dc->k.peak_bytes)
        dc->k.peak_bytes = dc->k.current_bytes;
    dc->k.bytes_uploaded += bytes;
    return R1_OK;
}

r1_status r1_device_expert_cache__get(r1_device_expert_cache *dc, int64_t layer, int64_t expert,
                                      const uint8_t *blob, uint64_t blob_bytes, r1_buf **out)
{
    if (dc == NULL || blob == NULL || out == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "device expert cache: bad arguments");
    *out = NULL;
    if (layer < 0 || layer >= dc->n_layers || expert < 0 || expert >= dc->n_experts)
        return r1_error__set(R1_ERR_OUT_OF_RANGE, "no routed expert (layer %d, expert %d)",
                             (int)layer, (int)expert);
    r1_dec_slot *s = &dc->slots[(size_t)layer * (size_t)dc->n_experts + (size_t)expert];
    if (s->buf != NULL) {
        dc->k.hits++;
        r1_lru__unlink(&s->lru);
    } else {
        dc->k.misses++;
        r1_status st = r1_dec_load(dc, s, blob, blob_bytes);
        if (st != R1_OK)
            return st;
    }
    r1_lru__push(&dc->lru, &s->lru);
    *out = s->buf;
    return R1_OK;
}

void r1_device_expert_cache__used(r1_device_expert_cache *dc, int64_t layer, int64_t expert,
                                  uint64_t seq)
{
    if (dc == NULL || layer < 0 || layer >= dc->n_layers || expert < 0 || expert >= dc->n_experts)
        return;
    r1_dec_slot *s = &dc->slots[(size_t)layer * (size_t)dc->n_experts + (size_t)expert];
    if (s->buf != NULL && seq > s->last_seq)
        s->last_seq = seq;
}

void r1_device_expert_cache__counters(const r1_device_expert_cache *dc,
                                      r1_device_expert_counters *out)
{
    memset(out, 0, sizeof *out);
    if (dc != NULL)
        *out = dc->k;
}
