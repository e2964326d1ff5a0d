/* batch.c: one step of several sessions of one model through shared forward passes
 * (r1_session_step_many). */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "generate.h"
#include "model.h"
#include "r1.h"
#include "session.h"

/* One listed session's part of the step. */
typedef struct r1_batch_item {
    r1_session *s;
    const int32_t *eval; /* the ids its pass evaluates (in the session) */
    size_t n_eval;
    r1_status st;    /* step_begin's, then the pass's */
    int32_t stepped; /* step_begin let the step continue */
    int32_t in_pass; /* its ids go into a shared pass */
} r1_batch_item;

static r1_status r1_batch_check(r1_session *const *sessions, size_t n, const r1_status *status_out)
{
    if (sessions == NULL || status_out == NULL || n == 0)
        return r1_error__set(R1_ERR_INVALID_ARG, "r1_session_step_many: %s",
                             sessions == NULL     ? "sessions is NULL"
                             : status_out == NULL ? "status_out is NULL"
                                                  : "no sessions");
    for (size_t i = 0; i < n; i++) {
        const r1_session *s = sessions[i];
        if (s == NULL)
            return r1_error__set(R1_ERR_INVALID_ARG, "r1_session_step_many: sessions[%zu] is NULL",
                                 i);
        if (s->model != sessions[0]->model)
            return r1_error__set(R1_ERR_INVALID_ARG,
                                 "r1_session_step_many: sessions[%zu] belongs to another model "
                                 "than sessions[0]",
                                 i);
        for (size_t j = 0; j < i; j++)
            if (sessions[j] == s)
                return r1_error__set(R1_ERR_INVALID_ARG,
                                     "r1_session_step_many: sessions[%zu] is sessions[%zu] again",
                                     i, j);
    }
    for (size_t i = 0; i < n; i++)
        if (!sessions[i]->gen.active)
            return r1_error__set(R1_ERR_BAD_STATE,
                                 "r1_session_step_many: sessions[%zu] has no generation in "
                                 "progress: call r1_session_begin first",
                                 i);
    return R1_OK;
}

/* Logits rows a session's pass produces. */
static int64_t r1_batch_out_rows(const r1_batch_item *it)
{
    return it->s->logits_all ? (int64_t)it->n_eval : 1;
}

/* The shared passes: the sessions in_pass packed in order into passes of at most the scratch's
 * rows. The scratch is that of the session with the longest context (it holds every cache's
 * positions; a session's slice of at most R1_SESSION_CHUNK rows always fits it), the forward
 * state (profile, lookahead gates) that of the first session in each pass. */
static r1_status r1_batch_passes(r1_batch_item *items, size_t n)
{
    r1_session *host = NULL;
    int64_t total_rows = 0, out_rows = 0, n_pass = 0;
    for (size_t i = 0; i < n; i++)
        if (items[i].in_pass) {
            if (host == NULL || items[i].s->n_ctx > host->n_ctx)
                host = items[i].s;
            total_rows += (int64_t)items[i].n_eval;
            out_rows += r1_batch_out_rows(&items[i]);
            n_pass++;
        }
    if (host == NULL)
        return R1_OK;
    const int64_t vocab = host->forward.cfg->vocab_size;
    const int64_t max_rows = r1_forward_scratch__max_tokens(host->scratch);
    int32_t *ids = malloc((size_t)total_rows * sizeof *ids);
    float *logits = malloc((size_t)out_rows * (size_t)vocab * sizeof *logits);
    r1_forward_seq *seqs = malloc((size_t)n_pass * sizeof *seqs);
    if (ids == NULL || logits == NULL || seqs == NULL) {
        free(ids);
        free(logits);
        free(seqs);
        return r1_error__set(R1_ERR_NO_MEMORY, "cannot allocate a batched pass of %lld rows",
                             (long long)total_rows);
    }
    r1_status st = R1_OK;
    for (size_t first = 0; first < n;) {
        /* One pass: the next sessions while their rows fit. */
        int64_t k = 0, rows = 0;
        size_t end = first;
        for (; end < n; end++) {
            r1_batch_item *it = &items[end];
            if (!it->in_pass)
                continue;
            if (rows == 0 && (int64_t)it->n_eval > max_rows) {
                /* Never for a step's slice (at most R1_SESSION_CHUNK, and at most the
                 * session's context); should it happen, the session evaluates alone. */
                it->in_pass = 0;
                it->st = r1_session__eval(it->s, it->eval, it->n_eval);
                continue;
            }
            if (rows + (int64_t)it->n_eval > max_rows)
                break;
            seqs[k] = (r1_forward_seq){.kv = &it->s->kv,
                                       .pos0 = it->s->position,
                                       .n_rows = (int64_t)it->n_eval,
                                       .all_logits = it->s->logits_all};
            memcpy(ids + rows, it->eval, it->n_eval * sizeof *ids);
            rows += (int64_t)it->n_eval;
            k++;
        }
        if (k == 0) {
            first = end;
            continue;
        }
        r1_session *lead = NULL;
        for (size_t i = first; i < end && lead == NULL; i++)
            if (items[i].in_pass)
                lead = items[i].s;
        st = r1_forward__run_batch(&lead->forward, host->scratch, seqs, k, ids, logits);
        const float *out = logits;
        for (size_t i = first; i < end; i++) {
            r1_batch_item *it = &items[i];
            if (!it->in_pass)
                continue;
            r1_session__eval_commit(it->s, it->eval, it->n_eval, out, st);
            it->st = st;
            out += r1_batch_out_rows(it) * vocab;
        }
        first = end;
    }
    free(ids);
    free(logits);
    free(seqs);
    return R1_OK;
}

R1_API r1_status r1_session_step_many(r1_session *const *sessions, size_t n, int32_t *ids_out,
                                      int32_t *kinds_out, r1_status *status_out)
{
    r1_error__clear();
    r1_status st = r1_batch_check(sessions, n, status_out);
    if (st != R1_OK)
        return st;
    r1_batch_item *items = calloc(n, sizeof *items);
    if (items == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "cannot allocate a step of %zu sessions", n);
    /* Every session's step up to its forward pass, as r1_session_step would take it. */
    for (size_t i = 0; i < n; i++) {
        r1_batch_item *it = &items[i];
        it->s = sessions[i];
        it->st = r1_generate__step_begin(it->s, ids_out ? &ids_out[i] : NULL,
                                         kinds_out ? &kinds_out[i] : NULL, &it->eval, &it->n_eval);
        it->stepped = it->st == R1_OK;
        if (!it->stepped)
            status_out[i] = it->st;
        else if (it->n_eval > 0)
            it->in_pass = (it->st = r1_session__eval_prepare(it->s, it->n_eval)) == R1_OK;
    }
    /* Without the memory for a shared pass, each session takes its own. */
    if (r1_batch_passes(items, n) != R1_OK)
        for (size_t i = 0; i < n; i++)
            if (items[i].in_pass)
                items[i].st = r1_session__eval(items[i].s, items[i].eval, items[i].n_eval);
    for (size_t i = 0; i < n; i++) {
        r1_batch_item *it = &items[i];
        if (it->stepped)
            status_out[i] =
                r1_generate__step_end(it->s, it->st, it->n_eval, ids_out ? &ids_out[i] : NULL,
                                      kinds_out ? &kinds_out[i] : NULL);
    }
    free(items);
    return R1_OK;
}
