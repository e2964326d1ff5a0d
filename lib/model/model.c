/* model.c: r1_model load, info, expert-cache statistics and reference counting (public API). */
#include "model.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "budget.h"
#include "dtype.h"
#include "error.h"
#include "expert_policy.h"

struct r1_model_opts {
    uint64_t expert_cache_bytes;
    uint64_t device_expert_cache_bytes; /* 0: bounded by the device's memory */
    /* r1_model_opts_set_expert_cache_auto: size the budget at load (budget.h), leaving KV room
     * for expert_cache_auto_context tokens (0: the default context). */
    int32_t expert_cache_auto;
    int32_t expert_cache_auto_context;
    int32_t expert_policy; /* R1_CACHE_POLICY_* + 1; 0: R1_CACHE_POLICY_DEFAULT */
    int32_t verify_weights;
    int32_t n_threads; /* 0: one per core */
    char backend[32];  /* "" : cpu */
    char device[256];  /* "" : the backend's default device */
    /* Router lookahead off (r1_model_opts_set_expert_prefetch); zeroed options leave it on. */
    int32_t no_expert_prefetch;
    int32_t expert_io_threads; /* 0: R1_EXPERT_IO_WORKERS_DEFAULT */
};

struct r1_model {
    atomic_int refs;
    r1_container *c;
    r1_expert_cache *experts;
    r1_tokenizer *tokenizer;
    r1_compute compute;
    int32_t expert_prefetch; /* whether sessions run the router lookahead */
    /* The model-derived part of the forward pass (r1_model__forward), bound on first use:
     * forward_bound says it is, and both change only under forward_lock. */
    pthread_mutex_t forward_lock;
    atomic_int forward_bound;
    r1_forward forward;
};

R1_API r1_status r1_model_opts_create(r1_model_opts **out)
{
    r1_error__clear();
    if (out == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "out is NULL");
    *out = calloc(1, sizeof **out);
    return *out ? R1_OK : r1_error__set(R1_ERR_NO_MEMORY, "out of memory");
}

R1_API void r1_model_opts_destroy(r1_model_opts *opts)
{
    free(opts);
}

R1_API r1_status r1_model_opts_set_expert_cache_bytes(r1_model_opts *opts, uint64_t bytes)
{
    r1_error__clear();
    if (opts == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "opts is NULL");
    opts->expert_cache_bytes = bytes;
    opts->expert_cache_auto = 0;
    return R1_OK;
}

/* The public policy numbers are the store's (expert_policy.h). */
_Static_assert((int)R1_CACHE_POLICY_LRU == (int)R1_EXPERT_POLICY_LRU &&
                   (int)R1_CACHE_POLICY_DEFAULT == (int)R1_EXPERT_POLICY_DEFAULT,
               "r1.h and expert_policy.h number the policies alike");

R1_API r1_status r1_model_opts_set_expert_cache_policy(r1_model_opts *opts, int32_t policy)
{
    r1_error__clear();
    if (opts == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "opts is NULL");
    if (policy != R1_CACHE_POLICY_LRU && policy != R1_CACHE_POLICY_DEFAULT)
        return r1_error__set(R1_ERR_INVALID_ARG,
                             "expert cache policy %d is neither R1_CACHE_POLICY_DEFAULT (1) nor "
                             "R1_CACHE_POLICY_LRU (0)",
                             (int)policy);
    opts->expert_policy = policy + 1;
    return R1_OK;
}

R1_API r1_status r1_model_opts_set_expert_cache_auto(r1_model_opts *opts, int32_t context_tokens)
{
    r1_error__clear();
    if (opts == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "opts is NULL");
    if (context_tokens < 0)
        return r1_error__set(R1_ERR_INVALID_ARG, "context of %d tokens is negative",
                             (int)context_tokens);
    opts->expert_cache_auto = 1;
    opts->expert_cache_auto_context = context_tokens;
    return R1_OK;
}

R1_API r1_status r1_model_opts_set_device_expert_cache_bytes(r1_model_opts *opts, uint64_t bytes)
{
    r1_error__clear();
    if (opts == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "opts is NULL");
    opts->device_expert_cache_bytes = bytes;
    return R1_OK;
}

R1_API r1_status r1_model_opts_set_verify_weights(r1_model_opts *opts, int32_t verify)
{
    r1_error__clear();
    if (opts == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "opts is NULL");
    if (verify != 0 && verify != 1)
        return r1_error__set(R1_ERR_INVALID_ARG, "verify must be 0 or 1, not %d", (int)verify);
    opts->verify_weights = verify;
    return R1_OK;
}

R1_API r1_status r1_model_opts_set_threads(r1_model_opts *opts, int32_t n_threads)
{
    r1_error__clear();
    if (opts == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "opts is NULL");
    if (n_threads < 0 || n_threads > 1024)
        return r1_error__set(R1_ERR_INVALID_ARG, "thread count %d is outside 0..1024",
                             (int)n_threads);
    opts->n_threads = n_threads;
    return R1_OK;
}

R1_API r1_status r1_model_opts_set_expert_io_threads(r1_model_opts *opts, int32_t n_threads)
{
    r1_error__clear();
    if (opts == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "opts is NULL");
    if (n_threads < 0 || n_threads > R1_EXPERT_IO_WORKERS_MAX)
        return r1_error__set(R1_ERR_INVALID_ARG, "expert I/O thread count %d is outside 0..%d",
                             (int)n_threads, R1_EXPERT_IO_WORKERS_MAX);
    opts->expert_io_threads = n_threads;
    return R1_OK;
}

R1_API r1_status r1_model_opts_set_expert_prefetch(r1_model_opts *opts, int32_t on)
{
    r1_error__clear();
    if (opts == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "opts is NULL");
    if (on != 0 && on != 1)
        return r1_error__set(R1_ERR_INVALID_ARG, "on must be 0 or 1, not %d", (int)on);
    opts->no_expert_prefetch = !on;
    return R1_OK;
}

R1_API r1_status r1_model_opts_set_backend(r1_model_opts *opts, const char *name)
{
    r1_error__clear();
    if (opts == NULL || name == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "%s is NULL", opts ? "name" : "opts");
    if (strlen(name) >= sizeof opts->backend)
        return r1_error__set(R1_ERR_INVALID_ARG, "backend name '%.40s...' is too long", name);
    if (r1_backend_registry__find(name) == NULL)
        return R1_ERR_NOT_FOUND; /* message from the registry */
    snprintf(opts->backend, sizeof opts->backend, "%s", name);
    return R1_OK;
}

R1_API r1_status r1_model_opts_set_device(r1_model_opts *opts, const char *device)
{
    r1_error__clear();
    if (opts == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "opts is NULL");
    if (device != NULL && device[0] == '\0')
        return r1_error__set(R1_ERR_INVALID_ARG,
                             "device name is empty (NULL selects the default device)");
    if (device != NULL && strlen(device) >= sizeof opts->device)
        return r1_error__set(R1_ERR_INVALID_ARG, "device name '%.40s...' is too long", device);
    snprintf(opts->device, sizeof opts->device, "%s", device != NULL ? device : "");
    return R1_OK;
}

/* The expert budget the options ask for: their bytes, or the auto budget (budget.h). */
static r1_status model_expert_budget(const r1_container *c, const r1_model_opts *opts,
                                     uint64_t *out)
{
    *out = opts->expert_cache_bytes;
    if (!opts->expert_cache_auto)
        return R1_OK;
    r1_budget_parts parts;
    r1_status st =
        r1_budget__auto(c, r1_budget__mem_available(), opts->expert_cache_auto_context, &parts);
    *out = parts.budget;
    return st;
}

static void model_free(r1_model *m)
{
    /* After every session: they only borrowed the bound forward pass. */
    if (atomic_load(&m->forward_bound))
        r1_forward__unbind(&m->forward);
    pthread_mutex_destroy(&m->forward_lock);
    if (m->compute.ops != NULL)
        r1_compute__close(&m->compute);
    r1_tokenizer__destroy(m->tokenizer);
    r1_expert_cache__destroy(m->experts);
    r1_container__close(m->c);
    free(m);
}

static r1_status load_tokenizer(r1_model *m)
{
    const uint8_t *blob;
    size_t len;
    r1_status st = r1_container__meta_bytes(m->c, "tokenizer.blob", &blob, &len);
    if (st != R1_OK)
        return r1_error__set(R1_ERR_FORMAT, "the model file has no tokenizer: %s",
                             r1_error__message());
    r1_tokenizer_spec *spec = NULL;
    if ((st = r1_tokenizer__spec_parse(&spec, blob, len)) == R1_OK)
        st = r1_tokenizer__create(&m->tokenizer, spec);
    r1_tokenizer__spec_destroy(spec);
    return st;
}

R1_API r1_status r1_model_load(r1_model **out, const char *path_utf8, r1_backend *be,
                               const r1_model_opts *opts)
{
    r1_error__clear();
    if (out == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (path_utf8 == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "path_utf8 is NULL");
    if (be != NULL)
        return r1_error__set(R1_ERR_UNSUPPORTED, "backend handles are not supported yet; pass "
                                                 "NULL to run on the CPU");
    r1_model_opts defaults = {0};
    if (opts == NULL)
        opts = &defaults;
    r1_model *m = calloc(1, sizeof *m);
    if (m == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "out of memory");
    atomic_init(&m->refs, 1);
    atomic_init(&m->forward_bound, 0);
    if (pthread_mutex_init(&m->forward_lock, NULL) != 0) {
        free(m);
        return r1_error__set(R1_ERR_NO_MEMORY, "cannot create the model's lock");
    }
    m->expert_prefetch = !opts->no_expert_prefetch;
    uint64_t expert_budget = 0;
    r1_status st = r1_container__open(&m->c, path_utf8);
    if (st == R1_OK && opts->verify_weights)
        for (int32_t i = 0; i < r1_container__n_tensors(m->c) && st == R1_OK; i++)
            st = r1_container__verify_tensor(m->c, i);
    if (st == R1_OK)
        st = model_expert_budget(m->c, opts, &expert_budget);
    if (st == R1_OK)
        st = r1_expert_cache__create2(&m->experts, m->c, expert_budget, opts->expert_io_threads,
                                      opts->expert_policy ? opts->expert_policy - 1
                                                          : R1_EXPERT_POLICY_DEFAULT);
    if (st == R1_OK)
        st = load_tokenizer(m);
    if (st == R1_OK)
        st = r1_compute__open(&m->compute, opts->backend[0] ? opts->backend : NULL,
                              opts->device[0] ? opts->device : NULL);
    /* An explicit count gets a pool of its own; 0 shares the process-wide pool. */
    if (st == R1_OK && opts->n_threads > 0)
        st = r1_compute__set_threads(&m->compute, opts->n_threads);
    if (st == R1_OK) {
        const r1_model_config *g = r1_container__config(m->c);
        st = r1_compute__attach_model(&m->compute, m->c, m->experts,
                                      r1_model_config__n_layers_stored(g), g->n_routed_experts,
                                      opts->device_expert_cache_bytes);
    }
    if (st != R1_OK) {
        model_free(m);
        return st;
    }
    *out = m;
    return R1_OK;
}

r1_status r1_model__forward(r1_model *m, const r1_forward **out)
{
    /* The acquire pairs with the release below: a session that sees the flag sees the bound
     * data. Bound at the first session rather than at load, so that loading for the tokenizer
     * or the header (r1 tokenize, r1 plan) costs no W_UK copies. */
    if (!atomic_load_explicit(&m->forward_bound, memory_order_acquire)) {
        pthread_mutex_lock(&m->forward_lock);
        r1_status st = R1_OK;
        if (!atomic_load_explicit(&m->forward_bound, memory_order_relaxed)) {
            st = r1_forward__bind(&m->forward, m->c, m->experts, &m->compute);
            if (st == R1_OK)
                atomic_store_explicit(&m->forward_bound, 1, memory_order_release);
        }
        pthread_mutex_unlock(&m->forward_lock);
        if (st != R1_OK)
            return st;
    }
    *out = &m->forward;
    return R1_OK;
}

r1_model *r1_model__retain(r1_model *m)
{
    if (m)
        atomic_fetch_add(&m->refs, 1);
    return m;
}

void r1_model__release(r1_model *m)
{
    if (m && atomic_fetch_sub(&m->refs, 1) == 1)
        model_free(m);
}

R1_API void r1_model_destroy(r1_model *model)
{
    r1_model__release(model);
}

r1_container *r1_model__container(const r1_model *m)
{
    return m->c;
}

r1_expert_cache *r1_model__experts(const r1_model *m)
{
    return m->experts;
}

const r1_tokenizer *r1_model__tokenizer(const r1_model *m)
{
    return m->tokenizer;
}

r1_compute *r1_model__compute(r1_model *m)
{
    return &m->compute;
}

int32_t r1_model__expert_prefetch(const r1_model *m)
{
    return m->expert_prefetch;
}

const r1_model_config *r1_model__config(const r1_model *m)
{
    return r1_container__config(m->c);
}

/* Size-first output structs: copy at most the caller's struct_size bytes of ours. */
static r1_status check_size(uint32_t got, size_t ours, const char *what)
{
    if (got < sizeof(uint32_t) * 2 || got > (1u << 16))
        return r1_error__set(R1_ERR_INVALID_ARG,
                             "%s->struct_size is %u; set it to sizeof(%s) "
                             "(%zu)",
                             what, got, what, ours);
    return R1_OK;
}

R1_API r1_status r1_model_get_info(const r1_model *model, r1_model_info *info)
{
    r1_error__clear();
    if (model == NULL || info == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "%s is NULL", model ? "info" : "model");
    uint32_t size = info->struct_size;
    r1_status st = check_size(size, sizeof *info, "r1_model_info");
    if (st != R1_OK)
        return st;
    const r1_model_config *g = r1_container__config(model->c);
    r1_model_info v;
    memset(&v, 0, sizeof v);
    v.struct_size = size < sizeof v ? size : (uint32_t)sizeof v;
    v.architecture = g->arch;
    snprintf(v.architecture_name, sizeof v.architecture_name, "%s", g->architecture);
    v.n_layers = g->num_hidden_layers;
    v.n_mtp_layers = g->num_nextn_predict_layers;
    v.hidden_size = g->hidden_size;
    v.n_heads = g->num_attention_heads;
    v.n_routed_experts = g->n_routed_experts;
    v.n_experts_per_token = g->num_experts_per_tok;
    v.n_shared_experts = g->n_shared_experts;
    v.vocab_size = g->vocab_size;
    v.n_tokenizer_ids = g->n_tokenizer_ids;
    v.max_position_embeddings = g->max_position_embeddings;
    v.bos_token_id = g->bos_token_id;
    v.eos_token_id = g->eos_token_id;
    v.file_bytes = r1_container__file_size(model->c);
    v.dense_bytes = r1_container__dense_bytes(model->c);
    v.expert_bytes = r1_container__expert_raw_bytes(model->c);
    v.n_tensors = (uint64_t)r1_container__n_tensors(model->c);
    v.n_expert_blobs = (uint64_t)r1_container__n_expert_blobs(model->c);
    v.max_expert_bytes = r1_container__max_expert_bytes(model->c);
    const r1_expert_blob *b = r1_container__expert_at(model->c, 0);
    snprintf(v.expert_dtype, sizeof v.expert_dtype, "%s",
             b ? r1_dtype__traits(b->dtype[0])->name : "");
    memcpy(info, &v, v.struct_size);
    return R1_OK;
}

/* What both cache-statistics getters check first; v comes back zeroed, with the struct_size of
 * the caller's version of the struct. */
static r1_status r1_cache_stats_begin(const r1_model *model, const r1_expert_cache_stats *stats,
                                      r1_expert_cache_stats *v)
{
    r1_error__clear();
    if (model == NULL || stats == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "%s is NULL", model ? "stats" : "model");
    uint32_t size = stats->struct_size;
    r1_status st = check_size(size, sizeof *stats, "r1_expert_cache_stats");
    if (st != R1_OK)
        return st;
    memset(v, 0, sizeof *v);
    v->struct_size = size < sizeof *v ? size : (uint32_t)sizeof *v;
    return R1_OK;
}

R1_API r1_status r1_model_get_expert_cache_stats(const r1_model *model,
                                                 r1_expert_cache_stats *stats)
{
    r1_expert_cache_stats v = {0}; /* filled by the call; initialised for -O3's flow analysis */
    r1_status st = r1_cache_stats_begin(model, stats, &v);
    if (st != R1_OK)
        return st;
    r1_expert_cache_counters k;
    r1_expert_cache__counters(model->experts, &k);
    v.hits = k.hits;
    v.misses = k.misses;
    v.evictions = k.evictions;
    v.bytes_read = k.bytes_read;
    v.bytes_decompressed = k.bytes_decompressed;
    v.load_ns = k.load_ns;
    v.current_bytes = k.current_bytes;
    v.peak_bytes = k.peak_bytes;
    v.budget_bytes = k.budget_bytes;
    v.prefetch_issued = k.prefetch_issued;
    v.prefetch_used = k.prefetch_used;
    v.prefetch_wasted_bytes = k.prefetch_wasted_bytes;
    v.misses_prefetched = k.demand_misses_prefetched;
    v.stall_ns = k.stall_ns;
    v.io_workers = (uint32_t)k.io_workers;
    v.direct_io = (uint32_t)k.direct_io;
    memcpy(stats, &v, v.struct_size);
    return R1_OK;
}

R1_API r1_status r1_model_get_device_expert_cache_stats(const r1_model *model,
                                                        r1_expert_cache_stats *stats)
{
    r1_expert_cache_stats v = {0}; /* filled by the call; initialised for -O3's flow analysis */
    r1_status st = r1_cache_stats_begin(model, stats, &v);
    if (st != R1_OK)
        return st;
    r1_compute_device_counters k;
    /* The counters are read under the device's lock; the model itself is not modified. */
    r1_compute__device_counters((r1_compute *)&model->compute, &k);
    v.hits = k.experts.hits;
    v.misses = k.experts.misses;
    v.evictions = k.experts.evictions;
    v.bytes_read = k.experts.bytes_uploaded;
    v.load_ns = k.experts.upload_ns;
    v.current_bytes = k.experts.current_bytes;
    v.peak_bytes = k.experts.peak_bytes;
    v.budget_bytes = k.experts.budget_bytes;
    memcpy(stats, &v, v.struct_size);
    return R1_OK;
}
