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
    int32_t cache_dtype; /* R1_DTYPE_* + 1; 0: the model's default */
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
};

/* Evaluates ids (already validated) and keeps the last row's logits. */
r1_status r1_session__eval(r1_session *s, const int32_t *ids, size_t n);
/* Checks ids against the embedding rows; R1_ERR_OUT_OF_RANGE with the offending index. */
r1_status r1_session__check_ids(const r1_session *s, const int32_t *ids, size_t n);

#endif
