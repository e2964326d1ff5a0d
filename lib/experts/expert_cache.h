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
    uint64_t budget_bytes;    /* 0: unbounded */
    uint64_t prefetch_issued; /* prefetch requests that queued a load */
    uint64_t prefetch_used;   /* prefetched experts later demanded while resident or in flight */
    uint64_t prefetch_wasted_bytes;    /* raw bytes of prefetched experts evicted unused */
    uint64_t demand_misses;            /* demands that found the expert not resident (= misses) */
    uint64_t demand_misses_prefetched; /* of those, already on their way because of a prefetch */
    uint64_t stall_ns;                 /* time callers spent waiting in acquire/acquire_any */
    uint64_t direct_io;                /* 1 when reads bypass the page cache (O_DIRECT) */
    uint64_t io_workers;               /* I/O worker threads */
    uint64_t prefetch_dropped; /* prefetches dropped unread: no room in the budget, or stale */
} r1_expert_cache_counters;

typedef struct r1_expert_cache r1_expert_cache;

/* budget_bytes 0 is unbounded. A budget below num_experts_per_tok x the largest expert is
 * R1_ERR_BUDGET, with the minimum in bytes in the message. The store borrows c. It starts
 * n_io_workers I/O threads (0: R1_EXPERT_IO_WORKERS_DEFAULT; at most R1_EXPERT_IO_WORKERS_MAX),
 * with every signal blocked, that read, verify, decompress and lay out blobs; they are joined by
 * destroy, so no thread outlives the store. Reads bypass the page cache (O_DIRECT) when the
 * file's blobs are 4 KiB aligned (r1_container__open_direct), so the budget is all the memory
 * experts take: resident ones and loads in flight (reserved when a worker starts a load). Outside
 * it, each worker keeps scratch that grows to one projection (relayout) and one stored blob (for
 * zstd-coded blobs, and for raw ones laid out from it: see r1_expert_cache__set_layout). policy:
 * R1_EXPERT_POLICY_LRU or R1_EXPERT_POLICY_DEFAULT (expert_policy.h). r1_expert_cache__create is
 * create2 with the default worker count and policy. */
enum { R1_EXPERT_IO_WORKERS_DEFAULT = 8, R1_EXPERT_IO_WORKERS_MAX = 64 };
r1_status r1_expert_cache__create(r1_expert_cache **out, const r1_container *c,
                                  uint64_t budget_bytes);
r1_status r1_expert_cache__create2(r1_expert_cache **out, const r1_container *c,
                                   uint64_t budget_bytes, int32_t n_io_workers, int32_t policy);
void r1_expert_cache__destroy(r1_expert_cache *ec);

/* Asks for (layer, expert) without waiting; the store loads it in the background (I/O workers)
 * unless it is resident or already on its way; a queued prefetch asked for again as DEMAND moves
 * ahead of every prefetch. Errors only for bad arguments; a failed background load is reported by
 * the acquire that waits for it.
 * Demands are served first-come from their own queue, always before any prefetch. A prefetch
 * never evicts a pinned expert, one a caller waits for, or one demanded in the current forward
 * pass; it is dropped (not kept queued) when the budget has no such room, and when a new pass
 * begins before it started. The store sees a new pass begin when a demand asks for a layer
 * below the previous demand's layer. */
enum { R1_EXPERT_DEMAND = 0, R1_EXPERT_PREFETCH = 1 };
r1_status r1_expert_cache__request(r1_expert_cache *ec, int64_t layer, int64_t expert,
                                   int32_t priority);

/* Waits until one of experts[0..n) whose taken[i] is 0 is resident, pins it and returns it
 * (*index = i, *out = the expert); among several already resident it returns the lowest i.
 * Requests (DEMAND) any listed expert not yet requested. The caller sets taken[*index] = 1 and
 * later releases the expert with r1_expert_cache__release(). Errors: the load's status and
 * message (R1_ERR_IO/CHECKSUM/FORMAT/NO_MEMORY/BUDGET); the store stays usable. Also
 * R1_ERR_OUT_OF_RANGE for an expert that does not exist and R1_ERR_INVALID_ARG when every
 * expert is taken or n < 1. R1_ERR_BUDGET means that the budget is full of pinned experts with
 * nothing loading that could free room. */
r1_status r1_expert_cache__acquire_any(r1_expert_cache *ec, int64_t layer, const int32_t *experts,
                                       int32_t n, const uint8_t *taken, int32_t *index,
                                       const r1_expert **out);

/* Returns (layer, expert) pinned: request (DEMAND) and wait, as acquire_any with one expert.
 * Thread-safe; two threads asking for the same expert share one load. Errors: R1_ERR_OUT_OF_RANGE
 * (no such expert), R1_ERR_BUDGET (everything resident is pinned and the budget is full),
 * R1_ERR_IO, R1_ERR_CHECKSUM, R1_ERR_FORMAT (bad zstd frame), R1_ERR_NO_MEMORY; the store stays
 * usable after any of them. */
r1_status r1_expert_cache__acquire(r1_expert_cache *ec, int64_t layer, int64_t expert,
                                   const r1_expert **out);
/* Unpins one acquire (ex as returned by it; NULL is ignored). */
void r1_expert_cache__release(r1_expert_cache *ec, const r1_expert *ex);

void r1_expert_cache__counters(r1_expert_cache *ec, r1_expert_cache_counters *out);

/* Projections loaded from now on that can take layout (enum r1_layout, weight_layout.h) are
 * stored in it (a raw blob is then read into a worker's buffer and laid out from there into its
 * own, one pass over its bytes): R1_LAYOUT_R16 when the model's products run on the CPU, whose
 * integer kernels read Q8_0/Q4_0 fastest that way; the default, R1_LAYOUT_ROWS, keeps the file's
 * rows (what a device backend uploads). Each r1_expert's tensors say which layout they have. */
void r1_expert_cache__set_layout(r1_expert_cache *ec, int32_t layout);

/* Whether [p, p + n) lies inside the raw blob of an expert that is resident and pinned by the
 * caller: 1 with its layer, expert, and the blob's first byte and size, else 0. Device caches
 * use it to key any view of an expert's weights (one projection, adjacent ones merged, a row
 * range) by expert identity rather than by a host address the store reuses after an eviction.
 * Takes the store's lock; remembers the last blob found, so asking for an expert's projections
 * in turn is one comparison each. */
int32_t r1_expert_cache__find(r1_expert_cache *ec, const void *p, size_t n, int64_t *layer,
                              int64_t *expert, const uint8_t **blob, uint64_t *blob_bytes);

/* Test hook: the nth blob read from now (1 = the next) fails with EIO (kind 1) or returns fewer
 * bytes than asked (kind 2). kind 0 disarms. The read happens in an I/O worker; the error
 * reaches the thread that acquires the expert. */
enum { R1_FAULT_NONE = 0, R1_FAULT_EIO = 1, R1_FAULT_SHORT = 2 };
void r1_expert_cache__inject_fault(r1_expert_cache *ec, uint64_t nth, int32_t kind);

/* Test hooks: hold 1 keeps the I/O workers from starting any load (queued requests wait), hold 0
 * lets them go. start_order is the ordinal (1, 2, ...) at which the latest load of (layer,
 * expert) was started by a worker, 0 when never. */
void r1_expert_cache__hold_workers(r1_expert_cache *ec, int32_t hold);
uint64_t r1_expert_cache__start_order(r1_expert_cache *ec, int64_t layer, int64_t expert);
/* Test hook: how many experts of layer wait in the prefetch queue (asked for ahead of use, not
 * started, not demanded). */
int32_t r1_expert_cache__queued_prefetches(r1_expert_cache *ec, int64_t layer);

#endif
