/* session.h: the session object shared by evaluation (session.c) and generation (generate.c). */
#ifndef R1_SESSION_H
#define R1_SESSION_H

#include <stdatomic.h>
#include <stdint.h>

#include "forward.h"
#include "r1.h"

/* Prompts longer than this are evaluated in chunks; it bounds the scratch memory. Large enough
 * that in a chunk each routed expert sees about chunk * k / E tokens (48 for V2-Lite), over
 * which the dequantisation of its weights for one batched product is shared. */
enum { R1_SESSION_CHUNK = 512, R1_SESSION_DEFAULT_CTX = 4096 };

struct r1_session_opts {
    int32_t n_ctx; /* 0: not set, the default R1_SESSION_DEFAULT_CTX capped at the model's */
    int32_t logits_all;
    int32_t cache_dtype;   /* R1_DTYPE_* + 1; 0: the model's default */
    int32_t overflow;      /* R1_OVERFLOW_*; 0: fail */
    int32_t overflow_keep; /* positions kept by a shift + 1; 0: up to the first user turn */
};

typedef struct r1_sampler r1_sampler;
typedef struct r1_tokenizer_stream r1_tokenizer_stream;

/* What r1_session_begin() .. r1_session_step() carry between calls (generate.c). */
typedef struct r1_generation {
    int32_t active;       /* between begin and the end of that generation */
    int32_t finished;     /* the next step returns R1_DONE */
    r1_sampler *sampler;  /* borrowed from the caller */
    int32_t max_tokens;   /* < 0: no limit */
    int32_t think_budget; /* < 0: no limit */
    char *bridge;         /* injected after a forced </think> */
    char **stops;
    int32_t n_stops;
    size_t max_stop_len;
    int32_t *queue; /* tokens to evaluate before the next sample (prompt) */
    size_t n_queue, cap_queue;
    int32_t *forced; /* tokens to emit instead of sampling (budget injection) */
    size_t n_forced, i_forced;
    int32_t last_token;   /* emitted, not yet evaluated; -1 none */
    int32_t in_reasoning; /* inside <think> ... </think> */
    int32_t n_prompt, n_reasoning, n_answer;
    r1_tokenizer_stream *stream;
    char *held; /* visible text held back while it may begin a stop string */
    size_t n_held, cap_held;
    int32_t held_kind;
    char *piece; /* the text of the last step, borrowed by the caller */
    size_t n_piece, cap_piece;
} r1_generation;

struct r1_session {
    r1_model *model; /* holds a reference */
    r1_forward forward;
    r1_forward_scratch *scratch;
    r1_kv_cache kv;
    int64_t n_ctx;
    int64_t position;
    int32_t logits_all;
    float *logits;       /* (max rows, vocab) */
    int64_t logits_rows; /* rows valid after the last eval; 0 = none */
    int64_t logits_cap;  /* rows allocated */
    int32_t *tokens;     /* (n_ctx) the ids at each cached position */
    int32_t think_open;  /* the tokens so far leave a <think> unclosed */
    atomic_int cancel;   /* set by r1_session_cancel() from any thread */
    r1_generation gen;
    r1_forward_profile *prof; /* kept after profiling stops, for reading (profile.c) */
    /* Context overflow (session_sync.c): the policy and kept prefix of the options, and the ids
     * that shifts removed after dropped_keep positions (in order), so r1_session_sync() can
     * match a caller's whole conversation against a shifted cache: the history the cache
     * stands for is tokens[0..dropped_keep) + dropped + tokens[dropped_keep..position). */
    int32_t overflow, overflow_keep;
    int32_t *dropped;
    size_t n_dropped, cap_dropped;
    int64_t dropped_keep;
};

/* Evaluates ids (already validated) and keeps the last row's logits. */
r1_status r1_session__eval(r1_session *s, const int32_t *ids, size_t n);
/* Makes room for need more positions (need > the room left) by the overflow policy: a shift
 * that drops the oldest turns after the kept prefix, or R1_ERR_CONTEXT_FULL ("<need> <what> at
 * position ... exceed the context of ...") (session_sync.c). */
r1_status r1_session__make_room(r1_session *s, int64_t need, const char *what);
/* The cache was cut to n_keep positions (truncate, reset): forgets a dropped span it no longer
 * follows. */
void r1_session__forget_dropped(r1_session *s, int64_t n_keep);
/* r1_session__eval in two halves around its forward passes, also used around a pass shared with
 * other sessions (batch.c): prepare makes room for n ids (the overflow policy, or
 * R1_ERR_CONTEXT_FULL) and for their logits; after the passes at the session's position, commit
 * takes the ids and their logits rows (n if logits_all, else 1; NULL: already in s->logits) into
 * the session when st (the passes' status) is R1_OK, else leaves it where it was. */
r1_status r1_session__eval_prepare(r1_session *s, size_t n);
void r1_session__eval_commit(r1_session *s, const int32_t *ids, size_t n, const float *logits,
                             r1_status st);
/* Tokenizes text with the session's model (flags: R1_TOKENIZE_*) into *ids_out, which the caller
 * frees (NULL on failure). */
r1_status r1_session__encode(const r1_session *s, const char *text, size_t len, uint32_t flags,
                             int32_t **ids_out, size_t *n_out);
/* Checks ids against the embedding rows; R1_ERR_OUT_OF_RANGE with the offending index. */
r1_status r1_session__check_ids(const r1_session *s, const int32_t *ids, size_t n);

#endif
