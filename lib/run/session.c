/* session.c: one conversation's state: latent cache, position, logits of the last evaluation. */
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "error.h"
#include "forward_dense.h"
#include "generate.h"
#include "model.h"
#include "r1.h"
#include "session.h"

R1_API r1_status r1_session_opts_create(r1_session_opts **out)
{
    r1_error__clear();
    if (out == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_session_opts_create: out is NULL");
    r1_session_opts *o = calloc(1, sizeof *o);
    if (o == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "cannot allocate session options");
    *out = o; /* n_ctx 0: the default, which depends on the model, is chosen at creation */
    return R1_OK;
}

R1_API void r1_session_opts_destroy(r1_session_opts *opts)
{
    free(opts);
}

R1_API r1_status r1_session_opts_set_context(r1_session_opts *opts, int32_t n_ctx)
{
    r1_error__clear();
    if (opts == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_session_opts_set_context: opts is NULL");
    if (n_ctx <= 0)
        return r1_error__set(R1_ERR_INVALID_ARG, "context length %d must be positive", (int)n_ctx);
    opts->n_ctx = n_ctx;
    return R1_OK;
}

R1_API r1_status r1_session_opts_set_logits_all(r1_session_opts *opts, int32_t on)
{
    r1_error__clear();
    if (opts == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_session_opts_set_logits_all: opts is NULL");
    opts->logits_all = on != 0;
    return R1_OK;
}

R1_API r1_status r1_session_opts_set_cache_type(r1_session_opts *opts, const char *type)
{
    r1_error__clear();
    if (opts == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_session_opts_set_cache_type: opts is NULL");
    if (type == NULL) {
        opts->cache_dtype = 0;
        return R1_OK;
    }
    const int32_t dt = r1_dtype__from_name(type);
    if (!r1_gqa_cache__valid_dtype(dt))
        return r1_error__set(R1_ERR_INVALID_ARG,
                             "r1_session_opts_set_cache_type: unknown cache type \"%.32s\" (f16, "
                             "q8_0 or f32)",
                             type);
    opts->cache_dtype = dt + 1;
    return R1_OK;
}

R1_API void r1_session_destroy(r1_session *s)
{
    if (s == NULL)
        return;
    r1_generate__free(s);
    free(s->tokens);
    free(s->dropped);
    free(s->logits);
    /* The device's copy of the cache goes with it (its id is never seen again anyway). */
    r1_compute__drop_latent(r1_model__compute(s->model), s->kv.id);
    r1_kv_cache__destroy(&s->kv);
    r1_forward_scratch__destroy(s->scratch);
    if (s->prof != NULL)
        free(s->prof->expert_tokens);
    free(s->prof);
    /* s->forward only borrowed the model's bound data (r1_forward__share): nothing to unbind. */
    r1_model__release(s->model);
    free(s);
}

R1_API r1_status r1_session_create(r1_session **out, r1_model *model, const r1_session_opts *opts)
{
    r1_error__clear();
    if (out == NULL || model == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_session_create: %s is NULL",
                             out == NULL ? "out" : "model");
    *out = NULL;
    const r1_model_config *cfg = r1_container__config(r1_model__container(model));
    /* Unset, the context is the default capped at what the model was made for, so that a model
     * with a short maximum (tiny-r1: 1024) works without options; an explicit length above the
     * maximum is refused rather than silently shortened. */
    int64_t n_ctx = opts ? opts->n_ctx : 0;
    if (n_ctx == 0)
        n_ctx = cfg->max_position_embeddings < R1_SESSION_DEFAULT_CTX ? cfg->max_position_embeddings
                                                                      : R1_SESSION_DEFAULT_CTX;
    if (n_ctx > cfg->max_position_embeddings)
        return r1_error__set(R1_ERR_INVALID_ARG, "context %lld exceeds the model's maximum %lld",
                             (long long)n_ctx, (long long)cfg->max_position_embeddings);
    r1_session *s = calloc(1, sizeof *s);
    if (s == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "cannot allocate a session");
    s->model = r1_model__retain(model);
    s->n_ctx = n_ctx;
    s->logits_all = opts ? opts->logits_all : 0;
    s->overflow = opts ? opts->overflow : 0;
    s->overflow_keep = opts ? opts->overflow_keep : 0;
    int64_t chunk = n_ctx < R1_SESSION_CHUNK ? n_ctx : R1_SESSION_CHUNK;
    /* The model-derived data is bound once per model and shared; the session keeps its own
     * profile pointer and lookahead gates. */
    const r1_forward *bound = NULL;
    r1_status st = r1_model__forward(model, &bound);
    if (st == R1_OK)
        r1_forward__share(&s->forward, bound);
    s->forward.prefetch = r1_model__expert_prefetch(model);
    if (st == R1_OK)
        st = r1_forward_scratch__create(&s->scratch, cfg, chunk, n_ctx);
    if (st == R1_OK)
        st = r1_kv_cache__create(&s->kv, cfg, n_ctx, opts ? opts->cache_dtype - 1 : -1);
    if (st == R1_OK && (s->tokens = malloc((size_t)n_ctx * sizeof *s->tokens)) == NULL)
        st = r1_error__set(R1_ERR_NO_MEMORY, "cannot allocate the token history");
    if (st != R1_OK) {
        r1_session_destroy(s);
        return st;
    }
    *out = s;
    return R1_OK;
}

/* Room for rows logit rows. */
static r1_status r1_session_reserve_logits(r1_session *s, int64_t rows)
{
    if (rows <= s->logits_cap)
        return R1_OK;
    const int64_t vocab = s->forward.cfg->vocab_size;
    float *p = realloc(s->logits, (size_t)rows * (size_t)vocab * sizeof(float));
    if (p == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "cannot allocate logits for %lld positions",
                             (long long)rows);
    s->logits = p;
    s->logits_cap = rows;
    return R1_OK;
}

r1_status r1_session__check_ids(const r1_session *s, const int32_t *ids, size_t n)
{
    const int64_t vocab = s->forward.cfg->vocab_size;
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab)
            return r1_error__set(R1_ERR_OUT_OF_RANGE,
                                 "token id %d at index %zu is outside the model's %lld embeddings",
                                 (int)ids[i], i, (long long)vocab);
    return R1_OK;
}

r1_status r1_session__eval(r1_session *s, const int32_t *ids, size_t n)
{
    r1_status st = r1_session__eval_prepare(s, n);
    if (st != R1_OK)
        return st;
    const int64_t vocab = s->forward.cfg->vocab_size;
    const int64_t start = s->position, chunk = r1_forward_scratch__max_tokens(s->scratch);
    for (int64_t done = 0; done < (int64_t)n && st == R1_OK; done += chunk) {
        int64_t m = (int64_t)n - done < chunk ? (int64_t)n - done : chunk;
        /* Only the final chunk's last row matters unless every row was asked for. */
        float *out = s->logits_all ? s->logits + done * vocab : s->logits;
        st = r1_forward__run(&s->forward, s->scratch, &s->kv, ids + done, m, start + done, out,
                             s->logits_all);
    }
    /* On failure the cache past the start is partial: the session stays where it was. */
    r1_session__eval_commit(s, ids, n, NULL, st);
    return st;
}

r1_status r1_session__eval_prepare(r1_session *s, size_t n)
{
    if ((int64_t)n > s->n_ctx - s->position) {
        r1_status room = r1_session__make_room(s, (int64_t)n, "tokens");
        if (room != R1_OK)
            return room;
    }
    return r1_session_reserve_logits(s, s->logits_all ? (int64_t)n : 1);
}

void r1_session__eval_commit(r1_session *s, const int32_t *ids, size_t n, const float *logits,
                             r1_status st)
{
    if (st != R1_OK) {
        /* The cache past the position is partial: the session stays where it was. */
        s->logits_rows = 0;
        return;
    }
    const int64_t rows = s->logits_all ? (int64_t)n : 1;
    if (logits != NULL)
        memcpy(s->logits, logits,
               (size_t)rows * (size_t)s->forward.cfg->vocab_size * sizeof(float));
    memcpy(s->tokens + s->position, ids, n * sizeof *ids);
    s->position += (int64_t)n;
    s->logits_rows = rows;
    r1_generate__track_think(s, ids, n);
}

R1_API r1_status r1_session_eval(r1_session *s, const int32_t *ids, size_t n)
{
    r1_error__clear();
    if (s == NULL || (ids == NULL && n > 0))
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_session_eval: %s is NULL",
                             s == NULL ? "session" : "ids");
    if (n == 0)
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_session_eval: no tokens");
    if (s->gen.active)
        return r1_error__set(R1_ERR_BAD_STATE, "r1_session_eval: a generation is in progress; "
                                               "finish it, cancel it or reset the session");
    r1_status st = r1_session__check_ids(s, ids, n);
    return st != R1_OK ? st : r1_session__eval(s, ids, n);
}

R1_API r1_status r1_session_logits(const r1_session *s, int32_t row, const float **logits_out,
                                   size_t *n_vocab_out)
{
    r1_error__clear();
    if (s == NULL || logits_out == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_session_logits: %s is NULL",
                             s == NULL ? "session" : "logits_out");
    if (s->logits_rows == 0)
        return r1_error__set(R1_ERR_BAD_STATE, "no logits: nothing was evaluated since the "
                                               "session was created, reset or truncated");
    int64_t r = row < 0 ? s->logits_rows - 1 : row;
    if (row < -1 || r >= s->logits_rows)
        return r1_error__set(R1_ERR_OUT_OF_RANGE,
                             "logits row %d is not available (%lld row%s kept; set logits_all "
                             "for every position)",
                             (int)row, (long long)s->logits_rows, s->logits_rows == 1 ? "" : "s");
    *logits_out = s->logits + r * s->forward.cfg->vocab_size;
    if (n_vocab_out != NULL)
        *n_vocab_out = (size_t)s->forward.cfg->vocab_size;
    return R1_OK;
}

R1_API int32_t r1_session_position(const r1_session *s)
{
    r1_error__clear();
    if (s == NULL) {
        r1_error__set(R1_ERR_INVALID_ARG, "r1_session_position: session is NULL");
        return -1;
    }
    return (int32_t)s->position;
}

R1_API r1_status r1_session_truncate(r1_session *s, int32_t n_keep)
{
    r1_error__clear();
    if (s == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_session_truncate: session is NULL");
    if (n_keep < 0 || n_keep > s->position)
        return r1_error__set(R1_ERR_OUT_OF_RANGE, "cannot truncate to %d: the cache holds %lld",
                             (int)n_keep, (long long)s->position);
    /* Positions >= n_keep are overwritten by the next evaluation; nothing to clear. */
    r1_generate__end(s);
    r1_session__forget_dropped(s, n_keep);
    s->position = n_keep;
    s->think_open = 0;
    r1_generate__track_think(s, s->tokens, (size_t)n_keep);
    s->logits_rows = 0;
    return R1_OK;
}

R1_API r1_status r1_session_reset(r1_session *s)
{
    r1_error__clear();
    if (s == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_session_reset: session is NULL");
    r1_generate__end(s);
    r1_session__forget_dropped(s, 0);
    s->think_open = 0;
    s->position = 0;
    s->logits_rows = 0;
    return R1_OK;
}
