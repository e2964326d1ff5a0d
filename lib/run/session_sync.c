/* session_sync.c: a session's cache kept in step with a growing conversation: prefix reuse
 * (r1_session_sync), context shift (r1_session_shift) and the overflow policy that applies it. */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "generate.h"
#include "kv_shift.h"
#include "model.h"
#include "r1.h"
#include "session.h"
#include "tokenizer.h"

/* The chat template's user-turn marker: a turn boundary for the overflow policy. */
static const char r1_user_marker[] = "<\xef\xbd\x9cUser\xef\xbd\x9c>";

R1_API r1_status r1_session_opts_set_overflow(r1_session_opts *opts, int32_t policy, int32_t n_keep)
{
    r1_error__clear();
    if (opts == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_session_opts_set_overflow: opts is NULL");
    if (policy != R1_OVERFLOW_FAIL && policy != R1_OVERFLOW_SHIFT)
        return r1_error__set(R1_ERR_INVALID_ARG,
                             "r1_session_opts_set_overflow: unknown policy %d (R1_OVERFLOW_FAIL "
                             "or R1_OVERFLOW_SHIFT)",
                             (int)policy);
    if (n_keep < -1 || n_keep == INT32_MAX)
        return r1_error__set(R1_ERR_INVALID_ARG,
                             "r1_session_opts_set_overflow: n_keep %d is neither -1 nor a count",
                             (int)n_keep);
    opts->overflow = policy;
    opts->overflow_keep = n_keep + 1;
    return R1_OK;
}

void r1_session__forget_dropped(r1_session *s, int64_t n_keep)
{
    /* Cut inside the kept prefix, the cache no longer follows the dropped span. */
    if (s->n_dropped > 0 && n_keep < s->dropped_keep)
        s->n_dropped = 0;
}

/* Records the span a shift removes, so r1_session_sync() still recognises the conversation.
 * Shifts after a different prefix, or no memory, lose the record: sync then compares the cache
 * as it stands, which can only cost evaluation, never a wrong match. */
static void r1_session_record_drop(r1_session *s, int64_t keep, int64_t drop)
{
    if (s->n_dropped > 0 && s->dropped_keep != keep)
        s->n_dropped = 0;
    const size_t need = s->n_dropped + (size_t)drop;
    if (need > s->cap_dropped) {
        size_t cap = s->cap_dropped ? s->cap_dropped : 256;
        while (cap < need)
            cap *= 2;
        int32_t *p = realloc(s->dropped, cap * sizeof *p);
        if (p == NULL) {
            s->n_dropped = 0;
            return;
        }
        s->dropped = p;
        s->cap_dropped = cap;
    }
    memcpy(s->dropped + s->n_dropped, s->tokens + keep, (size_t)drop * sizeof *s->tokens);
    s->n_dropped = need;
    s->dropped_keep = keep;
}

/* Drops positions [keep, keep + drop) and moves the rest down (validated by the callers). */
static r1_status r1_session_do_shift(r1_session *s, int64_t keep, int64_t drop)
{
    if (drop == 0)
        return R1_OK;
    r1_status st = r1_kv_cache__shift(&s->kv, &s->forward, s->position, keep, drop);
    if (st != R1_OK)
        return st;
    /* A device's mirror holds the rows as they were: it uploads them again. */
    r1_compute__drop_latent(r1_model__compute(s->model), s->kv.id);
    r1_session_record_drop(s, keep, drop);
    memmove(s->tokens + keep, s->tokens + keep + drop,
            (size_t)(s->position - keep - drop) * sizeof *s->tokens);
    s->position -= drop;
    s->think_open = 0;
    r1_generate__track_think(s, s->tokens, (size_t)s->position);
    return R1_OK;
}

R1_API r1_status r1_session_shift(r1_session *s, int32_t n_keep, int32_t n_drop)
{
    r1_error__clear();
    if (s == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_session_shift: session is NULL");
    if (s->gen.active)
        return r1_error__set(R1_ERR_BAD_STATE, "r1_session_shift: a generation is in progress");
    if (n_keep < 0 || n_drop < 0 || (int64_t)n_keep + n_drop > s->position)
        return r1_error__set(R1_ERR_OUT_OF_RANGE,
                             "r1_session_shift: cannot drop %d positions after %d: the cache "
                             "holds %lld",
                             (int)n_drop, (int)n_keep, (long long)s->position);
    r1_status st = r1_session_do_shift(s, n_keep, n_drop);
    if (st == R1_OK && n_drop > 0)
        s->logits_rows = 0; /* they described the cache before the shift */
    return st;
}

/* The prefix a shift keeps: the options' count, else up to the first user-turn marker (BOS and
 * the system prompt), else the BOS alone. */
static int64_t r1_session_keep(const r1_session *s)
{
    if (s->overflow_keep > 0)
        return s->overflow_keep - 1 < s->position ? s->overflow_keep - 1 : s->position;
    const r1_tokenizer *tok = r1_model__tokenizer(s->model);
    const int32_t user = r1_tokenizer__token_to_id(tok, r1_user_marker, strlen(r1_user_marker));
    for (int64_t i = 0; user >= 0 && i < s->position; i++)
        if (s->tokens[i] == user)
            return i;
    return s->position > 0 && s->tokens[0] == r1_tokenizer__bos_id(tok) ? 1 : 0;
}

r1_status r1_session__make_room(r1_session *s, int64_t need, const char *what)
{
    const int64_t keep = s->overflow == R1_OVERFLOW_SHIFT ? r1_session_keep(s) : 0;
    if (s->overflow != R1_OVERFLOW_SHIFT || need > s->n_ctx - keep)
        return r1_error__set(R1_ERR_CONTEXT_FULL,
                             "%lld %s at position %lld exceed the context of %lld%s",
                             (long long)need, what, (long long)s->position, (long long)s->n_ctx,
                             s->overflow == R1_OVERFLOW_SHIFT ? " even after a shift" : "");
    /* At least what is missing, and if the turns allow a quarter of the room after the kept
     * prefix on top, so the next shifts are not one per token. */
    const int64_t missing = s->position + need - s->n_ctx, avail = s->position - keep;
    int64_t slack = (s->n_ctx - keep) / 4;
    if (slack > s->n_ctx - keep - need)
        slack = s->n_ctx - keep - need;
    const int64_t want = missing + slack < avail ? missing + slack : avail;
    /* Whole turns: the cut falls on a user-turn marker, the first one far enough. */
    const r1_tokenizer *tok = r1_model__tokenizer(s->model);
    const int32_t user = r1_tokenizer__token_to_id(tok, r1_user_marker, strlen(r1_user_marker));
    int64_t drop = -1;
    for (int32_t pass = 0; pass < 2 && drop < 0; pass++) {
        const int64_t least = pass == 0 ? want : missing;
        for (int64_t b = keep + least; user >= 0 && b < s->position && drop < 0; b++)
            if (s->tokens[b] == user)
                drop = b - keep;
    }
    if (drop < 0) {
        /* Between turns everything after the prefix goes; within a turn that is too long for
         * any marker to help (generation at the end of the context), the oldest tokens. */
        drop = s->gen.active ? want : avail;
    }
    return r1_session_do_shift(s, keep, drop);
}

/* The id at logical position i of the history the cache stands for (session.h). */
static int32_t r1_session_logical(const r1_session *s, int64_t i)
{
    const int64_t k = s->dropped_keep, nd = (int64_t)s->n_dropped;
    if (nd == 0 || i < k)
        return s->tokens[i];
    return i < k + nd ? s->dropped[i - k] : s->tokens[i - nd];
}

R1_API r1_status r1_session_sync(r1_session *s, const int32_t *ids, size_t n)
{
    r1_error__clear();
    if (s == NULL || ids == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_session_sync: %s is NULL",
                             s == NULL ? "session" : "ids");
    if (n == 0)
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_session_sync: no tokens");
    if (s->gen.active)
        return r1_error__set(R1_ERR_BAD_STATE, "r1_session_sync: a generation is in progress");
    r1_status st = r1_session__check_ids(s, ids, n);
    if (st != R1_OK)
        return st;
    const int64_t nd = (int64_t)s->n_dropped, k = s->dropped_keep;
    const int64_t logical = s->position + nd;
    int64_t lcp = 0;
    while (lcp < logical && lcp < (int64_t)n && r1_session_logical(s, lcp) == ids[lcp])
        lcp++;
    /* The last id is evaluated again when everything matches: sampling needs its logits. */
    if (lcp == (int64_t)n)
        lcp--;
    /* Where the match ends decides what the cache keeps: past the dropped span, the shifted
     * positions up to it; inside it, the prefix the shift kept; before it, the match. */
    int64_t cut = lcp, from = lcp;
    if (nd > 0 && lcp >= k + nd)
        cut = lcp - nd;
    else if (nd > 0 && lcp >= k)
        cut = from = k;
    st = r1_session_truncate(s, (int32_t)cut);
    if (st == R1_OK && nd > 0 && cut == k && from == k)
        s->n_dropped = 0; /* the cache is its literal tokens again */
    if (st == R1_OK)
        st = r1_session_feed(s, ids + from, n - (size_t)from);
    return st;
}

R1_API r1_status r1_session_sync_text(r1_session *s, const char *text, size_t len, uint32_t flags)
{
    r1_error__clear();
    if (s == NULL || (text == NULL && len > 0))
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_session_sync_text: %s is NULL",
                             s ? "text" : "session");
    int32_t *ids = NULL;
    size_t n = 0;
    r1_status st = r1_session__encode(s, text, len, flags, &ids, &n);
    if (st == R1_OK)
        st = r1_session_sync(s, ids, n);
    free(ids);
    return st;
}
