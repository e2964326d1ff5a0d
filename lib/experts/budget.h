/* budget.h: the `auto` expert budget: what memory is left for routed experts at load (internal). */
#ifndef R1_BUDGET_H
#define R1_BUDGET_H

#include <stdint.h>

#include "container.h"
#include "r1.h"

/* Memory kept free beyond dense weights and KV cache: R1_BUDGET_HEADROOM_FIXED bytes plus
 * R1_BUDGET_HEADROOM_PERCENT % of MemAvailable, for what the budget does not count (activation
 * scratch, thread stacks, the expert policy's tables, allocator slack, the host's other needs). */
#define R1_BUDGET_HEADROOM_FIXED (UINT64_C(512) << 20)
enum { R1_BUDGET_HEADROOM_PERCENT = 5 };

/* The terms of an auto budget, all in bytes. */
typedef struct r1_budget_parts {
    uint64_t available;   /* MemAvailable (or the test hook's value) */
    uint64_t dense;       /* dense weights (r1_container__dense_bytes) */
    uint64_t kv;          /* KV cache of `context` tokens */
    int64_t context;      /* tokens the KV term is for */
    uint64_t headroom;    /* see R1_BUDGET_HEADROOM_* */
    uint64_t minimum;     /* num_experts_per_tok x the largest expert: the store's floor */
    uint64_t all_experts; /* raw bytes of every routed expert */
    uint64_t left;        /* available - dense - kv - headroom (0 when negative) */
    uint64_t budget;      /* what the store gets: left, or 0 (unbounded) when every expert fits */
} r1_budget_parts;

/* MemAvailable from /proc/meminfo in bytes (or the value set with the hook); 0 when unknown. */
uint64_t r1_budget__mem_available(void);
/* Test hook: r1_budget__mem_available() returns bytes from now on; 0 reads /proc/meminfo again.
 * Process-wide. */
void r1_budget__set_mem_available(uint64_t bytes);

/* Bytes of KV (MLA latent) cache per token of context, as a session allocates it. */
uint64_t r1_budget__kv_bytes_per_token(const r1_model_config *g);
/* The same for a session's cache type (R1_DTYPE_*, -1 the default: r1_session_opts_set_cache_type),
 * e.g. R1_DTYPE_Q8_0: a latent row of 612 bytes instead of 2304 per layer for V3/R1. */
uint64_t r1_budget__kv_bytes_per_token_as(const r1_model_config *g, int32_t dtype);
/* The context a session gets without options: R1_SESSION_DEFAULT_CTX capped at the model's. */
int64_t r1_budget__default_context(const r1_model_config *g);

/* Fills parts for the model in c with `available` bytes of memory and KV room for context tokens
 * (0: the default context). R1_ERR_BUDGET when what is left is below the minimum, with every term
 * in the message; R1_ERR_IO when available is 0 (unknown). */
r1_status r1_budget__auto(const r1_container *c, uint64_t available, int64_t context,
                          r1_budget_parts *parts);

#endif
