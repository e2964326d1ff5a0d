/* budget.c: the `auto` expert budget: MemAvailable minus dense weights, KV cache and headroom. */
#include "budget.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "error.h"
#include "forward.h"
#include "forward_dense.h"
#include "model_config.h"
#include "session.h"

static _Atomic uint64_t mem_available_override;

void r1_budget__set_mem_available(uint64_t bytes)
{
    atomic_store(&mem_available_override, bytes);
}

uint64_t r1_budget__mem_available(void)
{
    uint64_t v = atomic_load(&mem_available_override);
    if (v != 0)
        return v;
    FILE *f = fopen("/proc/meminfo", "r");
    if (f == NULL)
        return 0;
    char line[256];
    unsigned long long kib = 0;
    while (fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1)
            break;
    fclose(f);
    return (uint64_t)kib * 1024u;
}

uint64_t r1_budget__kv_bytes_per_token(const r1_model_config *g)
{
    return r1_budget__kv_bytes_per_token_as(g, -1);
}

uint64_t r1_budget__kv_bytes_per_token_as(const r1_model_config *g, int32_t dtype)
{
    /* Grouped-query models: keys and values of every layer in the cache type. */
    if (r1_model_config__is_dense(g))
        return r1_gqa_cache__position_bytes(g, dtype);
    /* r1_kv_cache__create: one latent row of kv_lora_rank + qk_rope_head_dim values per layer,
     * in f32 or q8_0. */
    return (uint64_t)g->num_hidden_layers * (uint64_t)r1_kv_cache__latent_row_bytes(g, dtype);
}

int64_t r1_budget__default_context(const r1_model_config *g)
{
    return g->max_position_embeddings < R1_SESSION_DEFAULT_CTX ? g->max_position_embeddings
                                                               : R1_SESSION_DEFAULT_CTX;
}

static uint64_t sub(uint64_t a, uint64_t b)
{
    return a > b ? a - b : 0;
}

#define MIB(x) ((double)(x) / (1024.0 * 1024.0))

r1_status r1_budget__auto(const r1_container *c, uint64_t available, int64_t context,
                          r1_budget_parts *parts)
{
    const r1_model_config *g = r1_container__config(c);
    r1_budget_parts p;
    memset(&p, 0, sizeof p);
    p.available = available;
    p.dense = r1_container__dense_bytes(c);
    p.context = context > 0 ? context : r1_budget__default_context(g);
    p.kv = r1_budget__kv_bytes_per_token(g) * (uint64_t)p.context;
    p.headroom = R1_BUDGET_HEADROOM_FIXED + available / 100u * R1_BUDGET_HEADROOM_PERCENT;
    p.minimum = (uint64_t)g->num_experts_per_tok * r1_container__max_expert_bytes(c);
    p.all_experts = r1_container__expert_raw_bytes(c);
    p.left = sub(sub(sub(available, p.dense), p.kv), p.headroom);
    p.budget = p.left >= p.all_experts ? 0 : p.left;
    *parts = p;
    if (available == 0)
        return r1_error__set(R1_ERR_IO, "auto expert budget: cannot read MemAvailable from "
                                        "/proc/meminfo; set the budget in bytes instead");
    if (p.left < p.all_experts && p.left < p.minimum)
        return r1_error__set(R1_ERR_BUDGET,
                             "auto expert budget: %.0f MiB available minus %.0f MiB of dense "
                             "weights, %.0f MiB of KV cache for %" PRId64
                             " tokens and %.0f MiB of headroom leaves %.0f MiB, less than "
                             "the %.0f MiB that one layer's %" PRId64
                             " selected experts need; free memory, shorten the context or set "
                             "a budget in bytes",
                             MIB(available), MIB(p.dense), MIB(p.kv), p.context, MIB(p.headroom),
                             MIB(p.left), MIB(p.minimum), g->num_experts_per_tok);
    return R1_OK;
}
