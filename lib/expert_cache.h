/* expert_cache.h: the on-demand store of routed experts, bounded by a byte budget (internal). */
#ifndef R1_EXPERT_CACHE_H
#define R1_EXPERT_CACHE_H

#include <stdint.h>

#include "container.h"
#include "r1.h"
#include "tensor.h"

/* A resident expert: gate_proj and up_proj are (moe_inter, hidden), down_proj is
 * (hidden, moe_inter); FP8 projections carry their block scales. Owned by the store; valid
 * until the matching r1_expert_cache__release(). */
typedef struct r1_expert {
    int32_t layer, expert;
    r1_tensor gate_proj, up_proj, down_proj;
} r1_expert;

typedef struct r1_expert_cache_counters {
    uint64_t hits, misses, evictions;
    uint64_t bytes_read;         /* stored bytes read from the file */
    uint64_t bytes_decompressed; /* raw bytes produced by loads */
    uint64_t load_ns;            /* wall time spent in loads (read, verify, decompress) */
    uint64_t current_bytes;      /* resident plus loading */
    uint64_t peak_bytes;
    uint64_t budget_bytes; /* 0: unbounded */
} r1_expert_cache_counters;

typedef struct r1_expert_cache r1_expert_cache;

/* budget_bytes 0 is unbounded. A budget below num_experts_per_tok x the largest expert is
 * R1_ERR_BUDGET, with the minimum in bytes in the message. The store borrows c. */
r1_status r1_expert_cache__create(r1_expert_cache **out, const r1_container *c,
                                  uint64_t budget_bytes);
void r1_expert_cache__destroy(r1_expert_cache *ec);

/* Returns (layer, expert) pinned: loads it (pread, checksum, zstd, un-shuffle) unless it is
 * resident, evicting least recently used unpinned experts to stay within budget. Thread-safe;
 * two threads asking for the same expert share one load. Errors: R1_ERR_OUT_OF_RANGE (no such
 * expert), R1_ERR_BUDGET (everything resident is pinned and the budget is full), R1_ERR_IO,
 * R1_ERR_CHECKSUM, R1_ERR_FORMAT (bad zstd frame); the store stays usable after any of them. */
r1_status r1_expert_cache__acquire(r1_expert_cache *ec, int64_t layer, int64_t expert,
                                   const r1_expert **out);
/* Unpins one acquire (ex as returned by it; NULL is ignored). */
void r1_expert_cache__release(r1_expert_cache *ec, const r1_expert *ex);

void r1_expert_cache__counters(r1_expert_cache *ec, r1_expert_cache_counters *out);

/* Projections loaded from now on that can take layout (enum r1_layout, weight_layout.h) are
 * stored in it: R1_LAYOUT_R16 when the model's products run on the CPU, whose integer kernels
 * read Q8_0/Q4_0 fastest that way; the default, R1_LAYOUT_ROWS, keeps the file's rows (what a
 * device backend uploads). Each r1_expert's tensors say which layout they have. */
void r1_expert_cache__set_layout(r1_expert_cache *ec, int32_t layout);

/* Whether [p, p + n) lies inside the raw blob of an expert that is resident and pinned by the
 * caller: 1 with its layer, expert, and the blob's first byte and size, else 0. Device caches
 * use it to key any view of an expert's weights (one projection, adjacent ones merged, a row
 * range) by expert identity rather than by a host address the store reuses after an eviction.
 * Takes the store's lock; remembers the last blob found, so asking for an expert's projections
 * in turn is one comparison each. */
int32_t r1_expert_cache__find(r1_expert_cache *ec, const void *p, size_t n, int64_t *layer,
                              int64_t *expert, const uint8_t **blob, uint64_t *blob_bytes);

/* Test hook: the nth pread from now (1 = the next) fails with EIO (kind 1) or returns fewer
 * bytes than asked (kind 2). kind 0 disarms. */
enum { R1_FAULT_NONE = 0, R1_FAULT_EIO = 1, R1_FAULT_SHORT = 2 };
void r1_expert_cache__inject_fault(r1_expert_cache *ec, uint64_t nth, int32_t kind);

#endif
