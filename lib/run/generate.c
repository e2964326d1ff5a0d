/* generate.c: pull-based generation: prompt queue, one forward pass per step, reasoning/answer
 * tagging at </think>, thinking budget, stop strings, cancellation and token counts. */
#include "generate.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "model.h"
#include "sampler.h"
#include "session.h"
#include "tokenizer.h"
#include "utf8.h"

/* Prompt tokens evaluated per step, so a long prompt never blocks a frame for long. */
enum { R1_STEP_PROMPT_TOKENS = 64, R1_MAX_STOPS = 16, R1_MAX_STOP_BYTES = 256 };

struct r1_gen_opts {
    int32_t max_tokens;
    int32_t think_budget;
    char *bridge;
    char *stops[R1_MAX_STOPS];
    int32_t n_stops;
};

/* ---- options ------------------------------------------------------------------------------ */

static char *r1_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

R1_API r1_status r1_gen_opts_create(r1_gen_opts **out)
{
    r1_error__clear();
    if (out == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_gen_opts_create: out is NULL");
    r1_gen_opts *o = calloc(1, sizeof *o);
    if (o == NULL || (o->bridge = r1_strdup("\n\n")) == NULL) {
        free(o);
        return r1_error__set(R1_ERR_NO_MEMORY, "cannot allocate generation options");
    }
    o->max_tokens = -1;
    o->think_budget = -1;
    *out = o;
    return R1_OK;
}

R1_API void r1_gen_opts_destroy(r1_gen_opts *opts)
{
    if (opts == NULL)
        return;
    for (int32_t i = 0; i < opts->n_stops; i++)
        free(opts->stops[i]);
    free(opts->bridge);
    free(opts);
}

R1_API r1_status r1_gen_opts_set_max_tokens(r1_gen_opts *opts, int32_t n)
{
    r1_error__clear();
    if (opts == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_gen_opts_set_max_tokens: opts is NULL");
    opts->max_tokens = n < 0 ? -1 : n;
    return R1_OK;
}

R1_API r1_status r1_gen_opts_set_think_budget(r1_gen_opts *opts, int32_t n_tokens)
{
    r1_error__clear();
    if (opts == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_gen_opts_set_think_budget: opts is NULL");
    opts->think_budget = n_tokens < 0 ? -1 : n_tokens;
    return R1_OK;
}

static r1_status r1_check_utf8(const char *text, const char *what)
{
    size_t n = strlen(text), valid = r1_utf8__valid_prefix((const unsigned char *)text, n);
    return valid == n
               ? R1_OK
               : r1_error__set(R1_ERR_INVALID_UTF8, "%s: invalid UTF-8 at byte %zu", what, valid);
}

R1_API r1_status r1_gen_opts_set_think_bridge(r1_gen_opts *opts, const char *text)
{
    r1_error__clear();
    if (opts == NULL || text == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_gen_opts_set_think_bridge: %s is NULL",
                             opts ? "text" : "opts");
    r1_status st = r1_check_utf8(text, "think bridge");
    if (st != R1_OK)
        return st;
    char *copy = r1_strdup(text);
    if (copy == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "cannot copy the think bridge");
    free(opts->bridge);
    opts->bridge = copy;
    return R1_OK;
}

R1_API r1_status r1_gen_opts_add_stop(r1_gen_opts *opts, const char *text)
{
    r1_error__clear();
    if (opts == NULL || text == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_gen_opts_add_stop: %s is NULL",
                             opts ? "text" : "opts");
    size_t n = strlen(text);
    if (n == 0 || n > R1_MAX_STOP_BYTES)
        return r1_error__set(R1_ERR_INVALID_ARG, "a stop string has 1 to %d bytes, not %zu",
                             R1_MAX_STOP_BYTES, n);
    if (opts->n_stops == R1_MAX_STOPS)
        return r1_error__set(R1_ERR_OUT_OF_RANGE, "at most %d stop strings", R1_MAX_STOPS);
    r1_status st = r1_check_utf8(text, "stop string");
    if (st != R1_OK)
        return st;
    if ((opts->stops[opts->n_stops] = r1_strdup(text)) == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "cannot copy a stop string");
    opts->n_stops++;
    return R1_OK;
}

R1_API r1_status r1_gen_opts_clear_stops(r1_gen_opts *opts)
{
    r1_error__clear();
    if (opts == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_gen_opts_clear_stops: opts is NULL");
    for (int32_t i = 0; i < opts->n_stops; i++)
        free(opts->stops[i]);
    opts->n_stops = 0;
    return R1_OK;
}

/* ---- think markers ------------------------------------------------------------------------ */

static int32_t r1_token_id(const r1_session *s, const char *text)
{
    return r1_tokenizer__token_to_id(r1_model__tokenizer(s->model), text, strlen(text));
}

void r1_generate__track_think(r1_session *s, const int32_t *ids, size_t n)
{
    const int32_t open = r1_token_id(s, "<think>"), close = r1_token_id(s, "</think>");
    for (size_t i = 0; i < n; i++) {
        if (ids[i] == open && open >= 0)
            s->think_open = 1;
        else if (ids[i] == close && close >= 0)
            s->think_open = 0;
    }
}

/* ---- growing buffers ---------------------------------------------------------------------- */

static r1_status r1_reserve(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return R1_OK;
    size_t n = *cap ? *cap : 64;
    while (n < need)
        n *= 2;
    void *q = realloc(*p, n * elem);
    if (q == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "out of memory growing a generation buffer");
    *p = q;
    *cap = n;
    return R1_OK;
}

static r1_status r1_append_text(char **buf, size_t *n, size_t *cap, const char *text, size_t len)
{
    r1_status st = r1_reserve((void **)buf, cap, *n + len + 1, 1);
    if (st != R1_OK)
        return st;
    memcpy(*buf + *n, text, len);
    *n += len;
    (*buf)[*n] = '\0';
    return R1_OK;
}

/* ---- feeding ------------------------------------------------------------------------------ */

R1_API r1_status r1_session_feed(r1_session *s, const int32_t *ids, size_t n)
{
    r1_error__clear();
    if (s == NULL || (ids == NULL && n > 0))
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_session_feed: %s is NULL",
                             s ? "ids" : "session");
    if (s->gen.active)
        return r1_error__set(R1_ERR_BAD_STATE, "r1_session_feed: a generation is in progress");
    r1_status st = r1_session__check_ids(s, ids, n);
    /* Beyond the room left, the overflow policy shifts the cache or refuses. */
    if (st == R1_OK && (int64_t)(s->gen.n_queue + n) > s->n_ctx - s->position)
        st = r1_session__make_room(s, (int64_t)(s->gen.n_queue + n), "queued tokens");
    if (st == R1_OK)
        st = r1_reserve((void **)&s->gen.queue, &s->gen.cap_queue, s->gen.n_queue + n,
                        sizeof(int32_t));
    if (st != R1_OK)
        return st;
    memcpy(s->gen.queue + s->gen.n_queue, ids, n * sizeof *ids);
    s->gen.n_queue += n;
    return R1_OK;
}

r1_status r1_session__encode(const r1_session *s, const char *text, size_t len, uint32_t flags,
                             int32_t **ids_out, size_t *n_out)
{
    const r1_tokenizer *tok = r1_model__tokenizer(s->model);
    size_t n = 0;
    *ids_out = NULL;
    r1_status st = r1_tokenizer__encode(tok, text, len, flags, NULL, 0, &n);
    if (st != R1_OK && st != R1_ERR_BUFFER_TOO_SMALL)
        return st;
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    if (ids == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "cannot allocate %zu token ids", n);
    if ((st = r1_tokenizer__encode(tok, text, len, flags, ids, n, &n)) != R1_OK) {
        free(ids);
        return st;
    }
    *ids_out = ids;
    *n_out = n;
    return R1_OK;
}

R1_API r1_status r1_session_feed_text(r1_session *s, const char *text, size_t len, uint32_t flags)
{
    r1_error__clear();
    if (s == NULL || (text == NULL && len > 0))
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_session_feed_text: %s is NULL",
                             s ? "text" : "session");
    int32_t *ids = NULL;
    size_t n = 0;
    r1_status st = r1_session__encode(s, text, len, flags, &ids, &n);
    if (st == R1_OK)
        st = r1_session_feed(s, ids, n);
    free(ids);
    return st;
}

/* ---- the state machine -------------------------------------------------------------------- */

/* Frees what one generation owns; the queue, piece and held buffers are kept for reuse. */
static void r1_generation_release(r1_generation *g)
{
    r1_tokenizer__stream_destroy(g->stream);
    g->stream = NULL;
    for (int32_t i = 0; i < g->n_stops; i++)
        free(g->stops[i]);
    free(g->stops);
    g->stops = NULL;
    g->n_stops = 0;
    g->max_stop_len = 0;
    free(g->bridge);
    g->bridge = NULL;
    free(g->forced);
    g->forced = NULL;
    g->n_forced = g->i_forced = 0;
    g->active = g->finished = 0;
    g->sampler = NULL;
}

void r1_generate__end(r1_session *s)
{
    r1_generation_release(&s->gen);
    s->gen.n_queue = 0;
    s->gen.last_token = -1;
    s->gen.n_held = 0;
    s->gen.n_piece = 0;
}

void r1_generate__free(r1_session *s)
{
    r1_generate__end(s);
    free(s->gen.queue);
    free(s->gen.piece);
    free(s->gen.held);
    memset(&s->gen, 0, sizeof s->gen);
}

R1_API r1_status r1_session_begin(r1_session *s, r1_sampler *smp, const r1_gen_opts *opts)
{
    r1_error__clear();
    if (s == NULL || smp == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_session_begin: %s is NULL",
                             s ? "sampler" : "session");
    if (s->gen.active)
        return r1_error__set(R1_ERR_BAD_STATE, "r1_session_begin: a generation is in progress");
    if (s->gen.n_queue == 0 && s->logits_rows == 0)
        return r1_error__set(R1_ERR_BAD_STATE, "r1_session_begin: nothing to continue from: feed "
                                               "a prompt first");
    r1_generation *g = &s->gen;
    r1_gen_opts defaults = {.max_tokens = -1, .think_budget = -1, .bridge = (char *)"\n\n"};
    if (opts == NULL)
        opts = &defaults;
    r1_status st = r1_tokenizer__stream_create(&g->stream, r1_model__tokenizer(s->model),
                                               R1_DETOKENIZE_SKIP_SPECIAL);
    if (st == R1_OK && (g->bridge = r1_strdup(opts->bridge)) == NULL)
        st = r1_error__set(R1_ERR_NO_MEMORY, "cannot copy the think bridge");
    if (st == R1_OK && opts->n_stops > 0 &&
        (g->stops = calloc((size_t)opts->n_stops, sizeof *g->stops)) == NULL)
        st = r1_error__set(R1_ERR_NO_MEMORY, "cannot copy the stop strings");
    for (int32_t i = 0; st == R1_OK && i < opts->n_stops; i++) {
        if ((g->stops[i] = r1_strdup(opts->stops[i])) == NULL)
            st = r1_error__set(R1_ERR_NO_MEMORY, "cannot copy the stop strings");
        else {
            g->n_stops = i + 1;
            size_t len = strlen(g->stops[i]);
            g->max_stop_len = len > g->max_stop_len ? len : g->max_stop_len;
        }
    }
    if (st != R1_OK) {
        r1_generate__end(s);
        return st;
    }
    g->active = 1;
    g->sampler = smp;
    g->max_tokens = opts->max_tokens;
    g->think_budget = opts->think_budget;
    g->last_token = -1;
    g->n_prompt = (int32_t)g->n_queue;
    g->n_reasoning = g->n_answer = 0;
    g->n_held = 0;
    /* A prompt that leaves <think> open (R1's generation prompt) starts in reasoning. */
    const int32_t saved = s->think_open;
    r1_generate__track_think(s, g->queue, g->n_queue);
    g->in_reasoning = s->think_open;
    s->think_open = saved; /* the cache learns the prompt when it is evaluated */
    g->held_kind = g->in_reasoning ? R1_PIECE_REASONING : R1_PIECE_ANSWER;
    atomic_store(&s->cancel, 0);
    return R1_OK;
}

/* The piece of this step: (part of) the held text, cut so a stop string can still be seen. */
static r1_status r1_emit(r1_generation *g, const char *text, size_t len, int32_t *finished)
{
    r1_status st = r1_append_text(&g->held, &g->n_held, &g->cap_held, text, len);
    if (st != R1_OK)
        return st;
    size_t cut = g->n_held, keep_from = g->n_held;
    for (int32_t i = 0; i < g->n_stops; i++) {
        const char *hit = strstr(g->held, g->stops[i]);
        if (hit != NULL && (size_t)(hit - g->held) < cut)
            cut = (size_t)(hit - g->held);
    }
    if (cut < g->n_held) {
        *finished = 1;
        keep_from = g->n_held; /* the stop string and what follows are dropped */
    } else if (g->max_stop_len > 1 && g->n_held >= g->max_stop_len - 1) {
        cut = keep_from = g->n_held - (g->max_stop_len - 1);
        while (cut > 0 && ((unsigned char)g->held[cut] & 0xC0) == 0x80)
            cut--; /* never split a UTF-8 sequence */
        keep_from = cut;
    } else if (g->max_stop_len > 1) {
        cut = keep_from = 0;
    }
    st = r1_append_text(&g->piece, &g->n_piece, &g->cap_piece, g->held, cut);
    if (st != R1_OK)
        return st;
    memmove(g->held, g->held + keep_from, g->n_held - keep_from);
    g->n_held -= keep_from;
    g->held[g->n_held] = '\0';
    return R1_OK;
}

/* Everything held back becomes visible (end of a section or of the generation). */
static r1_status r1_flush(r1_generation *g)
{
    char tail[64];
    size_t n = 0;
    r1_status st = r1_tokenizer__stream_flush(g->stream, tail, sizeof tail, &n);
    if (st == R1_OK)
        st = r1_append_text(&g->held, &g->n_held, &g->cap_held, tail, n);
    int32_t finished = 0;
    size_t saved = g->max_stop_len;
    g->max_stop_len = 0; /* no more text can complete a stop string */
    if (st == R1_OK)
        st = r1_emit(g, "", 0, &finished);
    g->max_stop_len = saved;
    return st;
}

/* Ends the generation. A token that was emitted but not evaluated goes back to the front of
 * the queue, so a later r1_session_begin() continues from the complete history. */
static r1_status r1_finish(r1_session *s, r1_status st, int32_t pending)
{
    r1_generation *g = &s->gen;
    if (pending >= 0 && pending < s->forward.cfg->vocab_size &&
        r1_reserve((void **)&g->queue, &g->cap_queue, g->n_queue + 1, sizeof(int32_t)) == R1_OK) {
        memmove(g->queue + 1, g->queue, g->n_queue * sizeof *g->queue);
        g->queue[0] = pending;
        g->n_queue++;
    }
    g->last_token = -1;
    r1_generation_release(g);
    return st;
}

/* Queues </think> and the bridge text in place of sampling (the thinking budget). */
static r1_status r1_force_close_think(r1_session *s, int32_t close)
{
    r1_generation *g = &s->gen;
    const r1_tokenizer *tok = r1_model__tokenizer(s->model);
    size_t n = 0, len = strlen(g->bridge);
    r1_status st = r1_tokenizer__encode(tok, g->bridge, len, 0, NULL, 0, &n);
    if (st != R1_OK && st != R1_ERR_BUFFER_TOO_SMALL)
        return st;
    free(g->forced);
    if ((g->forced = malloc((n + 1) * sizeof(int32_t))) == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "cannot queue the think bridge");
    g->forced[0] = close;
    st = r1_tokenizer__encode(tok, g->bridge, len, 0, g->forced + 1, n, &n);
    if (st != R1_OK)
        return st;
    /* Bridge ids beyond the embeddings cannot be evaluated: leave them out. */
    size_t m = 1;
    for (size_t i = 1; i <= n; i++)
        if (g->forced[i] < s->forward.cfg->vocab_size)
            g->forced[m++] = g->forced[i];
    g->n_forced = m;
    g->i_forced = 0;
    return R1_OK;
}

r1_status r1_generate__step_begin(r1_session *s, int32_t *id_out, int32_t *kind_out,
                                  const int32_t **eval, size_t *n_eval)
{
    r1_generation *g = &s->gen;
    *eval = NULL;
    *n_eval = 0;
    if (id_out != NULL)
        *id_out = -1;
    if (kind_out != NULL)
        *kind_out = R1_PIECE_NONE;
    g->n_piece = 0;
    if (g->piece != NULL)
        g->piece[0] = '\0';
    if (!g->active)
        return r1_error__set(R1_ERR_BAD_STATE, "r1_session_step: no generation in progress: call "
                                               "r1_session_begin first");
    if (atomic_exchange(&s->cancel, 0))
        return r1_finish(s, R1_CANCELLED, g->last_token);
    if (g->finished)
        return r1_finish(s, R1_DONE, g->last_token);

    /* The one forward pass of this step: a slice of the prompt, or the last emitted token. */
    if (g->n_queue > 0) {
        *eval = g->queue;
        *n_eval = g->n_queue < R1_STEP_PROMPT_TOKENS ? g->n_queue : R1_STEP_PROMPT_TOKENS;
    } else if (g->last_token >= 0) {
        *eval = &g->last_token;
        *n_eval = 1;
    }
    return R1_OK;
}

r1_status r1_generate__step_end(r1_session *s, r1_status st, size_t n_eval, int32_t *id_out,
                                int32_t *kind_out)
{
    r1_generation *g = &s->gen;
    if (g->n_queue > 0) {
        if (st != R1_OK)
            return r1_finish(s, st, -1);
        memmove(g->queue, g->queue + n_eval, (g->n_queue - n_eval) * sizeof *g->queue);
        g->n_queue -= n_eval;
        if (g->n_queue > 0)
            return R1_OK; /* prompt progress: no token yet */
    } else if (n_eval > 0) {
        if (st != R1_OK)
            return r1_finish(s, st, g->last_token);
        g->last_token = -1;
    }

    const int32_t eos = r1_tokenizer__eos_id(r1_model__tokenizer(s->model));
    const int32_t close = r1_token_id(s, "</think>"), open = r1_token_id(s, "<think>");
    if (g->max_tokens >= 0 && g->n_reasoning + g->n_answer >= g->max_tokens) {
        if ((st = r1_flush(g)) != R1_OK)
            return r1_finish(s, st, -1);
        if (kind_out != NULL)
            *kind_out = g->held_kind;
        return r1_finish(s, R1_DONE, -1);
    }
    if (g->in_reasoning && g->think_budget >= 0 && g->n_reasoning >= g->think_budget &&
        g->n_forced == 0 && close >= 0) {
        if ((st = r1_force_close_think(s, close)) != R1_OK)
            return r1_finish(s, st, -1);
    }
    int32_t tok;
    if (g->i_forced < g->n_forced) {
        tok = g->forced[g->i_forced++];
    } else {
        const r1_model_config *cfg = s->forward.cfg;
        size_t n_ids = r1_tokenizer__n_ids(r1_model__tokenizer(s->model));
        size_t allowed = n_ids < (size_t)cfg->vocab_size ? n_ids : (size_t)cfg->vocab_size;
        st = r1_sampler__sample_masked(g->sampler,
                                       s->logits + (s->logits_rows - 1) * cfg->vocab_size,
                                       (size_t)cfg->vocab_size, allowed, &tok);
        if (st != R1_OK)
            return r1_finish(s, st, -1);
    }
    r1_sampler_accept(g->sampler, tok);
    if (id_out != NULL)
        *id_out = tok;

    if (tok == eos) {
        st = r1_flush(g);
        if (kind_out != NULL)
            *kind_out = g->held_kind;
        return r1_finish(s, st != R1_OK ? st : R1_DONE, tok);
    }
    int32_t finished = 0;
    int32_t kind = g->in_reasoning ? R1_PIECE_REASONING : R1_PIECE_ANSWER;
    if (tok == close && close >= 0) {
        /* The marker ends the reasoning: what reasoning text was held back goes out now. */
        g->n_reasoning++;
        st = r1_flush(g);
        g->in_reasoning = 0;
        g->held_kind = R1_PIECE_ANSWER;
    } else if (tok == open && open >= 0) {
        st = r1_flush(g);
        g->in_reasoning = 1;
        g->held_kind = R1_PIECE_REASONING;
        g->n_answer++;
        kind = R1_PIECE_ANSWER;
    } else {
        char text[256];
        size_t n = 0;
        st = r1_tokenizer__stream_push(g->stream, tok, text, sizeof text, &n);
        if (st == R1_OK)
            st = r1_emit(g, text, n, &finished);
        if (g->in_reasoning)
            g->n_reasoning++;
        else
            g->n_answer++;
    }
    if (st != R1_OK)
        return r1_finish(s, st, tok);
    if (kind_out != NULL)
        *kind_out = kind;
    g->last_token = tok;
    if (finished)
        g->finished = 1;
    return R1_OK;
}

R1_API r1_status r1_session_step(r1_session *s, int32_t *id_out, int32_t *kind_out)
{
    r1_error__clear();
    if (s == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_session_step: session is NULL");
    const int32_t *eval;
    size_t n;
    r1_status st = r1_generate__step_begin(s, id_out, kind_out, &eval, &n);
    if (st != R1_OK)
        return st;
    if (n > 0)
        st = r1_session__eval(s, eval, n);
    return r1_generate__step_end(s, st, n, id_out, kind_out);
}

R1_API r1_status r1_session_piece(const r1_session *s, const char **text_out, size_t *len_out)
{
    r1_error__clear();
    if (s == NULL || text_out == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_session_piece: %s is NULL",
                             s ? "text_out" : "session");
    *text_out = s->gen.piece != NULL ? s->gen.piece : "";
    if (len_out != NULL)
        *len_out = s->gen.n_piece;
    return R1_OK;
}

R1_API r1_status r1_session_cancel(r1_session *s)
{
    /* Any thread: only an atomic store, no r1_error__clear() of the caller's message state
     * beyond its own thread. */
    r1_error__clear();
    if (s == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_session_cancel: session is NULL");
    atomic_store(&s->cancel, 1);
    return R1_OK;
}

R1_API r1_status r1_session_counts(const r1_session *s, int32_t *prompt, int32_t *reasoning,
                                   int32_t *answer)
{
    r1_error__clear();
    if (s == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_session_counts: session is NULL");
    if (prompt != NULL)
        *prompt = s->gen.n_prompt;
    if (reasoning != NULL)
        *reasoning = s->gen.n_reasoning;
    if (answer != NULL)
        *answer = s->gen.n_answer;
    return R1_OK;
}

R1_API r1_status r1_session_generate(r1_session *s, r1_sampler *smp, const r1_gen_opts *opts,
                                     r1_piece_fn on_piece, void *user_data)
{
    r1_status st = r1_session_begin(s, smp, opts);
    int32_t id, kind;
    while (st == R1_OK) {
        st = r1_session_step(s, &id, &kind);
        if ((st == R1_OK || st == R1_DONE) && s->gen.n_piece > 0 && on_piece != NULL &&
            on_piece(s->gen.piece, s->gen.n_piece, kind, user_data) != 0 && st == R1_OK)
            r1_session_cancel(s);
    }
    return st;
}
