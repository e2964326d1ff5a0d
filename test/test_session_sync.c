/* test_session_sync.c: prefix reuse (r1_session_sync: a turn evaluates its new tokens only, with
 * the logits of a fresh evaluation), context shift (r1_session_shift: the rows move, the rotary
 * part is re-rotated, logits match a fresh evaluation at the new positions) and the shift
 * overflow policy (a chat continues past its context), on the tiny models of every
 * architecture. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "r1.h"
#include "session.h"

static const char *const models[] = {"tiny-v3", "tiny-v2lite", "tiny-qwen2", "tiny-llama"};
enum { N_MODELS = 4 };

static r1_model *load(const char *name)
{
    const char *dir = getenv("R1_TEST_MODELS_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.r1m", dir ? dir : R1_TEST_MODELS_DIR, name);
    r1_model *m = NULL;
    ck_assert_msg(r1_model_load(&m, path, NULL, NULL) == R1_OK, "%s: %s", path, r1_last_error());
    return m;
}

static r1_session *session(r1_model *m, int32_t ctx, const char *cache, int32_t overflow)
{
    r1_session_opts *o = NULL;
    ck_assert_int_eq(r1_session_opts_create(&o), R1_OK);
    ck_assert_int_eq(r1_session_opts_set_context(o, ctx), R1_OK);
    ck_assert_int_eq(r1_session_opts_set_cache_type(o, cache), R1_OK);
    ck_assert_int_eq(r1_session_opts_set_overflow(o, overflow, -1), R1_OK);
    r1_session *s = NULL;
    ck_assert_msg(r1_session_create(&s, m, o) == R1_OK, "%s", r1_last_error());
    r1_session_opts_destroy(o);
    ck_assert_int_eq(r1_session_set_profiling(s, 1), R1_OK);
    return s;
}

/* Deterministic ids among the model's ordinary tokens (above the specials). */
static void fill_ids(int32_t *ids, int n, uint32_t seed, int32_t vocab)
{
    for (int i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        ids[i] = 10 + (int32_t)((seed >> 8) % (uint32_t)(vocab - 10));
    }
}

static uint64_t evaluated(const r1_session *s)
{
    r1_session_profile p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    ck_assert_int_eq(r1_session_get_profile(s, &p), R1_OK);
    return p.n_tokens;
}

/* Runs what is queued through the step API up to the first sampled token, and ends the
 * generation; returns the tokens evaluated and copies the logits the token was sampled from. */
static uint64_t run_queue(r1_session *s, r1_sampler *smp, float *logits, size_t vocab)
{
    const uint64_t before = evaluated(s);
    ck_assert_msg(r1_session_begin(s, smp, NULL) == R1_OK, "%s", r1_last_error());
    int32_t id = -1;
    r1_status st;
    while ((st = r1_session_step(s, &id, NULL)) == R1_OK && id < 0)
        ;
    ck_assert_msg(st == R1_OK || st == R1_DONE, "%s", r1_last_error());
    const float *row;
    size_t nv = 0;
    ck_assert_int_eq(r1_session_logits(s, -1, &row, &nv), R1_OK);
    ck_assert_uint_eq(nv, vocab);
    memcpy(logits, row, vocab * sizeof *logits);
    if (st == R1_OK) {
        r1_session_cancel(s);
        ck_assert_int_eq(r1_session_step(s, NULL, NULL), R1_CANCELLED);
    }
    return evaluated(s) - before;
}

/* max |a - b| over max |b|. */
static double rel_err(const float *a, const float *b, size_t n)
{
    double d = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)b[i]));
    }
    return d / m;
}

static size_t vocab_of(r1_model *m)
{
    r1_model_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    ck_assert_int_eq(r1_model_get_info(m, &info), R1_OK);
    return (size_t)info.vocab_size;
}

/* Evaluates ids in the given slices (the chunks the synced session used). */
static void eval_slices(r1_session *s, const int32_t *ids, const int *cuts, int n_cuts)
{
    for (int i = 0; i + 1 < n_cuts; i++)
        ck_assert_msg(r1_session_eval(s, ids + cuts[i], (size_t)(cuts[i + 1] - cuts[i])) == R1_OK,
                      "%s", r1_last_error());
}

/* A conversation's turns through r1_session_sync: each evaluates only what follows the longest
 * prefix shared with the cache (one token when nothing is new), and its logits equal those of a
 * fresh session that evaluated the same ids. */
START_TEST(test_sync_evaluates_new_tokens_only)
{
    char name[64];
    snprintf(name, sizeof name, "%s-src", models[_i]);
    r1_model *m = load(name);
    const size_t vocab = vocab_of(m);
    r1_session *s = session(m, 256, NULL, R1_OVERFLOW_FAIL);
    r1_sampler *smp = NULL;
    ck_assert_int_eq(r1_sampler_create(&smp, 1), R1_OK);
    enum { A = 150, B = 37, C = 5, SHARED = 170, D = 30 };
    int32_t ids[A + B + C], alt[SHARED + D];
    fill_ids(ids, A + B + C, 11, (int32_t)vocab);
    memcpy(alt, ids, SHARED * sizeof *ids);
    fill_ids(alt + SHARED, D, 99, (int32_t)vocab);
    alt[SHARED] = ids[SHARED] == 10 ? 11 : 10; /* the turns part at SHARED exactly */
    float *got = malloc(vocab * sizeof *got), *want = malloc(vocab * sizeof *want);

    ck_assert_int_eq(r1_session_sync(s, ids, A), R1_OK);
    ck_assert_uint_eq(run_queue(s, smp, got, vocab), A);
    ck_assert_int_eq(r1_session_sync(s, ids, A + B), R1_OK);
    ck_assert_uint_eq(run_queue(s, smp, got, vocab), B);
    ck_assert_int_eq(r1_session_sync(s, ids, A + B + C), R1_OK);
    ck_assert_uint_eq(run_queue(s, smp, got, vocab), C);
    /* Equal to the cache: the last id again, for its logits. */
    ck_assert_int_eq(r1_session_sync(s, ids, A + B + C), R1_OK);
    ck_assert_uint_eq(run_queue(s, smp, got, vocab), 1);
    ck_assert_int_eq(r1_session_position(s), A + B + C);
    /* A turn that differs from position SHARED on: the cache keeps SHARED positions. */
    ck_assert_int_eq(r1_session_sync(s, alt, SHARED + D), R1_OK);
    ck_assert_int_eq(r1_session_position(s), SHARED);
    ck_assert_uint_eq(run_queue(s, smp, got, vocab), D);
    ck_assert_int_eq(r1_session_position(s), SHARED + D);

    /* Bit-identical to a fresh session that evaluated the same ids in the same chunks (steps
     * evaluate a prompt 64 tokens at a time; the cache of [150, 170) came from the chunk
     * [150, 187)). */
    r1_session *f = session(m, 256, NULL, R1_OVERFLOW_FAIL);
    const int cuts[] = {0, 64, 128, A, A + B};
    eval_slices(f, ids, cuts, 5);
    ck_assert_int_eq(r1_session_truncate(f, SHARED), R1_OK);
    ck_assert_int_eq(r1_session_eval(f, alt + SHARED, D), R1_OK);
    const float *row;
    ck_assert_int_eq(r1_session_logits(f, -1, &row, NULL), R1_OK);
    ck_assert_msg(memcmp(row, got, vocab * sizeof *got) == 0, "%s: logits differ", name);
    /* Against one evaluation of all 200 ids, only the float32 summation order of the chunked
     * products differs: within 1e-5 of the largest logit. */
    r1_session *g = session(m, 256, NULL, R1_OVERFLOW_FAIL);
    ck_assert_int_eq(r1_session_eval(g, alt, SHARED + D), R1_OK);
    ck_assert_int_eq(r1_session_logits(g, -1, &row, NULL), R1_OK);
    memcpy(want, row, vocab * sizeof *want);
    const double e = rel_err(got, want, vocab);
    ck_assert_msg(e <= 1e-5, "%s: one-shot logits differ by %g", name, e);
    r1_session_destroy(g);
    r1_session_destroy(f);
    free(got);
    free(want);
    r1_sampler_destroy(smp);
    r1_session_destroy(s);
    r1_model_destroy(m);
}
END_TEST

/* A shift on a one-layer model, where a cache row depends on its token and position only: the
 * next token's logits equal, within 1e-4 of the largest logit, those of a fresh session that
 * evaluated the kept tokens at their new positions. Without the re-rotation they are far off. */
static void shift_matches_fresh(const char *name, const char *cache, int keep, int drop)
{
    r1_model *m = load(name);
    const size_t vocab = vocab_of(m);
    enum { N = 40 };
    int32_t ids[N + 1], kept[N + 1];
    fill_ids(ids, N + 1, 5, (int32_t)vocab);
    r1_session *s = session(m, 64, cache, R1_OVERFLOW_FAIL);
    ck_assert_int_eq(r1_session_eval(s, ids, N), R1_OK);
    ck_assert_msg(r1_session_shift(s, keep, drop) == R1_OK, "%s", r1_last_error());
    ck_assert_int_eq(r1_session_position(s), N - drop);
    const float *row;
    ck_assert_int_eq(r1_session_logits(s, -1, &row, NULL), R1_ERR_BAD_STATE);
    ck_assert_int_eq(r1_session_eval(s, ids + N, 1), R1_OK);
    ck_assert_int_eq(r1_session_logits(s, -1, &row, NULL), R1_OK);
    float *got = malloc(vocab * sizeof *got);
    memcpy(got, row, vocab * sizeof *got);
    ck_assert_mem_eq(s->tokens, ids, (size_t)keep * sizeof *ids);
    ck_assert_mem_eq(s->tokens + keep, ids + keep + drop, (size_t)(N + 1 - keep - drop) * 4);

    memcpy(kept, ids, (size_t)keep * sizeof *ids);
    memcpy(kept + keep, ids + keep + drop, (size_t)(N - keep - drop) * sizeof *ids);
    r1_session *f = session(m, 64, cache, R1_OVERFLOW_FAIL);
    ck_assert_int_eq(r1_session_eval(f, kept, (size_t)(N - drop)), R1_OK);
    ck_assert_int_eq(r1_session_eval(f, ids + N, 1), R1_OK);
    ck_assert_int_eq(r1_session_logits(f, -1, &row, NULL), R1_OK);
    const double e = rel_err(got, row, vocab);
    const int32_t type = s->kv.gqa != NULL ? s->kv.gqa->dtype : s->kv.lat_dtype;
    if (type == R1_DTYPE_F32) {
        ck_assert_msg(e <= 1e-4, "%s (%s cache, keep %d, drop %d): logits differ by %g", name,
                      cache ? cache : "default", keep, drop, e);
    } else {
        /* A rounded cache (f16, q8_0) is rounded again after the rotation, where a fresh
         * evaluation rounds once: against the exact (f32) cache the shifted one may be off by
         * twice what the fresh rounded cache is (measured: f16 1-2e-4, q8_0 3-8e-3 of the
         * largest logit either way, so 1e-4 cannot hold for them). */
        float *fr = malloc(vocab * sizeof *fr);
        memcpy(fr, row, vocab * sizeof *fr);
        r1_session *x = session(m, 64, "f32", R1_OVERFLOW_FAIL);
        ck_assert_int_eq(r1_session_eval(x, kept, (size_t)(N - drop)), R1_OK);
        ck_assert_int_eq(r1_session_eval(x, ids + N, 1), R1_OK);
        ck_assert_int_eq(r1_session_logits(x, -1, &row, NULL), R1_OK);
        const double e_fresh = rel_err(fr, row, vocab), e_shift = rel_err(got, row, vocab);
        ck_assert_msg(e_shift <= 2 * e_fresh + 1e-5,
                      "%s (%s cache, keep %d, drop %d): %g from the exact logits, a fresh %s "
                      "cache %g",
                      name, cache ? cache : "default", keep, drop, e_shift,
                      cache ? cache : "default", e_fresh);
        free(fr);
        r1_session_destroy(x);
    }
    free(got);
    r1_session_destroy(f);
    r1_session_destroy(s);
    r1_model_destroy(m);
}

START_TEST(test_shift_one_layer)
{
    char name[64];
    snprintf(name, sizeof name, "%s-1l", models[_i]);
    const char *caches[] = {"f32", NULL, "q8_0"};
    for (int c = 0; c < 3; c++) {
        shift_matches_fresh(name, caches[c], 4, 10);
        shift_matches_fresh(name, caches[c], 0, 25);
        shift_matches_fresh(name, caches[c], 1, 1);
    }
}
END_TEST

/* On the full models (several layers): every row moves by n_drop intact except its rotary part,
 * the kept prefix is untouched, and layer 0, whose rows depend on token and position only,
 * equals a fresh evaluation of the kept tokens (f32 cache: float32 rounding apart). */
START_TEST(test_shift_moves_rows)
{
    char name[64];
    snprintf(name, sizeof name, "%s-src", models[_i]);
    r1_model *m = load(name);
    const size_t vocab = vocab_of(m);
    enum { N = 40, KEEP = 3, DROP = 12 };
    int32_t ids[N], kept[N];
    fill_ids(ids, N, 17, (int32_t)vocab);
    r1_session *s = session(m, 64, "f32", R1_OVERFLOW_FAIL);
    ck_assert_int_eq(r1_session_eval(s, ids, N), R1_OK);
    const r1_model_config *cfg = s->forward.cfg;
    const int64_t layers = cfg->num_hidden_layers, n_ctx = 64;
    const int dense = s->kv.gqa != NULL;
    const size_t rb = dense ? s->kv.gqa->row_bytes : s->kv.lat_row_bytes;
    const size_t fixed = dense ? 0 : (size_t)cfg->kv_lora_rank * sizeof(float); /* not rotated */
    uint8_t *k0 = dense ? s->kv.gqa->k : (uint8_t *)s->kv.lat;
    const size_t bytes = (size_t)layers * n_ctx * rb;
    uint8_t *before = malloc(bytes), *vbefore = dense ? malloc(bytes) : NULL;
    memcpy(before, k0, bytes);
    if (dense)
        memcpy(vbefore, s->kv.gqa->v, bytes);
    ck_assert_int_eq(r1_session_shift(s, KEEP, DROP), R1_OK);
    for (int64_t l = 0; l < layers; l++) {
        const size_t lo = (size_t)l * n_ctx * rb;
        ck_assert_mem_eq(k0 + lo, before + lo, KEEP * rb);
        for (int64_t p = KEEP; p < N - DROP; p++) {
            const size_t at = lo + (size_t)p * rb, from = lo + (size_t)(p + DROP) * rb;
            if (dense)
                ck_assert_mem_eq(s->kv.gqa->v + at, vbefore + from, rb);
            else
                ck_assert_mem_eq(k0 + at, before + from, fixed);
            ck_assert_msg(memcmp(k0 + at, before + from, rb) != 0, "%s: rows not rotated", name);
        }
    }
    memcpy(kept, ids, KEEP * sizeof *ids);
    memcpy(kept + KEEP, ids + KEEP + DROP, (N - KEEP - DROP) * sizeof *ids);
    r1_session *f = session(m, 64, "f32", R1_OVERFLOW_FAIL);
    ck_assert_int_eq(r1_session_eval(f, kept, N - DROP), R1_OK);
    const uint8_t *fk = dense ? f->kv.gqa->k : (const uint8_t *)f->kv.lat;
    const double e = rel_err((const float *)(const void *)k0, (const float *)(const void *)fk,
                             (size_t)(N - DROP) * rb / sizeof(float));
    ck_assert_msg(e <= 1e-5, "%s: layer 0 differs from a fresh evaluation by %g", name, e);
    free(before);
    free(vbefore);
    r1_session_destroy(f);
    r1_session_destroy(s);
    r1_model_destroy(m);
}
END_TEST

/* A chat of 12 turns in a 160-position context: with R1_OVERFLOW_SHIFT every turn is answered,
 * the oldest turns go while the system prompt stays, and each turn evaluates only what follows
 * the cache; with R1_OVERFLOW_FAIL the same chat fails once it outgrows the context. */
static int chat(r1_model *m, int32_t overflow, int *shifted)
{
    r1_session *s = session(m, 160, NULL, overflow);
    r1_sampler *smp = NULL;
    ck_assert_int_eq(r1_sampler_create(&smp, 3), R1_OK);
    r1_gen_opts *go = NULL;
    ck_assert_int_eq(r1_gen_opts_create(&go), R1_OK);
    ck_assert_int_eq(r1_gen_opts_set_max_tokens(go, 10), R1_OK);
    int32_t roles[32];
    const char *contents[32];
    char answers[16][512], users[16][64];
    size_t n = 0;
    roles[n] = R1_ROLE_SYSTEM;
    contents[n++] = "Be brief.";
    int32_t sys_ids[16];
    size_t n_sys = 0;
    const char *sys = "<｜begin▁of▁sentence｜>Be brief.";
    ck_assert_int_eq(
        r1_tokenize(m, sys, strlen(sys), R1_TOKENIZE_PARSE_SPECIAL, sys_ids, 16, &n_sys), R1_OK);
    int turns = 0;
    *shifted = 0;
    for (int t = 0; t < 12; t++) {
        snprintf(users[t], sizeof users[t], "Turn %d: tell me about the number %d.", t, t * 7);
        roles[n] = R1_ROLE_USER;
        contents[n++] = users[t];
        char prompt[8192];
        size_t len = 0;
        ck_assert_int_eq(r1_chat_render(m, roles, contents, n, 1, prompt, sizeof prompt, &len),
                         R1_OK);
        int32_t ids[2048];
        size_t n_ids = 0;
        ck_assert_int_eq(r1_tokenize(m, prompt, len, R1_TOKENIZE_PARSE_SPECIAL, ids, 2048, &n_ids),
                         R1_OK);
        r1_status st = r1_session_sync(s, ids, n_ids);
        const uint64_t before = evaluated(s);
        answers[t][0] = '\0';
        if (st == R1_OK)
            st = r1_session_begin(s, smp, go);
        int32_t id, kind;
        while (st == R1_OK && (st = r1_session_step(s, &id, &kind)) == R1_OK) {
            const char *piece;
            size_t plen;
            r1_session_piece(s, &piece, &plen);
            if (kind == R1_PIECE_ANSWER && strlen(answers[t]) + plen < sizeof answers[t])
                strncat(answers[t], piece, plen);
        }
        if (st != R1_DONE) {
            ck_assert_int_eq(st, R1_ERR_CONTEXT_FULL);
            ck_assert_int_eq(overflow, R1_OVERFLOW_FAIL);
            break;
        }
        /* This turn's message, the last answer (its reasoning dropped by the format) and this
         * answer, about 43 tokens a turn, also after shifts: the conversation before is never
         * evaluated again (it grows to 392 tokens). */
        ck_assert_uint_le(evaluated(s) - before, 64);
        ck_assert_int_le(r1_session_position(s), 160);
        if ((size_t)r1_session_position(s) < n_ids)
            (*shifted)++;
        ck_assert_mem_eq(s->tokens, sys_ids, n_sys * sizeof *sys_ids); /* the kept prefix */
        roles[n] = R1_ROLE_ASSISTANT;
        contents[n++] = answers[t];
        turns++;
    }
    r1_gen_opts_destroy(go);
    r1_sampler_destroy(smp);
    r1_session_destroy(s);
    return turns;
}

START_TEST(test_chat_continues_past_context)
{
    r1_model *m = load("tiny-v3-src");
    int shifted = 0;
    ck_assert_int_eq(chat(m, R1_OVERFLOW_SHIFT, &shifted), 12);
    ck_assert_int_ge(shifted, 5);
    ck_assert_int_lt(chat(m, R1_OVERFLOW_FAIL, &shifted), 12);
    r1_model_destroy(m);
}
END_TEST

/* One answer longer than the context: with R1_OVERFLOW_SHIFT the generation itself shifts the
 * cache whenever it is full (no older turn to drop: the oldest tokens after the kept prefix go)
 * and runs to its token limit; with R1_OVERFLOW_FAIL it stops with R1_ERR_CONTEXT_FULL. */
static r1_status long_answer(r1_model *m, int32_t overflow, int *steps)
{
    r1_session *s = session(m, 64, NULL, overflow);
    r1_sampler *smp = NULL;
    ck_assert_int_eq(r1_sampler_create(&smp, 9), R1_OK);
    ck_assert_int_eq(r1_sampler_set_logit_bias(smp, r1_token_eos(m), -1e30f), R1_OK);
    r1_gen_opts *go = NULL;
    ck_assert_int_eq(r1_gen_opts_create(&go), R1_OK);
    ck_assert_int_eq(r1_gen_opts_set_max_tokens(go, 150), R1_OK);
    const char *p = "<｜begin▁of▁sentence｜>Be brief.<｜User｜>Count to a hundred.<｜Assistant｜>";
    ck_assert_int_eq(r1_session_sync_text(s, p, strlen(p), R1_TOKENIZE_PARSE_SPECIAL), R1_OK);
    ck_assert_int_eq(r1_session_begin(s, smp, go), R1_OK);
    r1_status st;
    *steps = 0;
    while ((st = r1_session_step(s, NULL, NULL)) == R1_OK) {
        ck_assert_int_le(r1_session_position(s), 64);
        (*steps)++;
    }
    r1_gen_opts_destroy(go);
    r1_sampler_destroy(smp);
    r1_session_destroy(s);
    return st;
}

START_TEST(test_generation_continues_past_context)
{
    r1_model *m = load("tiny-v3-src");
    int steps = 0;
    ck_assert_int_eq(long_answer(m, R1_OVERFLOW_SHIFT, &steps), R1_DONE);
    ck_assert_int_ge(steps, 150);
    ck_assert_int_eq(long_answer(m, R1_OVERFLOW_FAIL, &steps), R1_ERR_CONTEXT_FULL);
    ck_assert_int_lt(steps, 64);
    r1_model_destroy(m);
}
END_TEST

/* After a shift the session stands for the whole conversation: a sync that repeats the dropped
 * span queues only what follows the cache; one that differs inside the dropped span keeps only
 * the prefix the shift kept; truncating inside that prefix forgets the span. */
START_TEST(test_sync_after_shift)
{
    r1_model *m = load("tiny-v3-src");
    const size_t vocab = vocab_of(m);
    int32_t ids[50];
    fill_ids(ids, 50, 23, (int32_t)vocab);
    float *got = malloc(vocab * sizeof *got);
    r1_sampler *smp = NULL;
    ck_assert_int_eq(r1_sampler_create(&smp, 1), R1_OK);
    r1_session *s = session(m, 64, NULL, R1_OVERFLOW_FAIL);
    ck_assert_int_eq(r1_session_eval(s, ids, 40), R1_OK);
    ck_assert_int_eq(r1_session_shift(s, 4, 10), R1_OK);
    ck_assert_int_eq(r1_session_sync(s, ids, 45), R1_OK);
    ck_assert_int_eq(r1_session_position(s), 30);
    ck_assert_uint_eq(run_queue(s, smp, got, vocab), 5);
    ck_assert_int_eq(r1_session_position(s), 35);
    ids[8] ^= 1; /* inside the dropped span */
    ck_assert_int_eq(r1_session_sync(s, ids, 45), R1_OK);
    ck_assert_int_eq(r1_session_position(s), 4);
    ck_assert_uint_eq(run_queue(s, smp, got, vocab), 41);
    r1_session_destroy(s);
    ids[8] ^= 1;
    s = session(m, 64, NULL, R1_OVERFLOW_FAIL);
    ck_assert_int_eq(r1_session_eval(s, ids, 40), R1_OK);
    ck_assert_int_eq(r1_session_shift(s, 4, 10), R1_OK);
    ck_assert_int_eq(r1_session_truncate(s, 2), R1_OK);
    ck_assert_int_eq(r1_session_sync(s, ids, 45), R1_OK);
    ck_assert_int_eq(r1_session_position(s), 2);
    ck_assert_uint_eq(run_queue(s, smp, got, vocab), 43);
    r1_session_destroy(s);
    r1_sampler_destroy(smp);
    free(got);
    r1_model_destroy(m);
}
END_TEST

/* Misuse: bad policies, out-of-range shifts, sync of nothing or during a generation. */
START_TEST(test_misuse)
{
    r1_session_opts *o = NULL;
    ck_assert_int_eq(r1_session_opts_create(&o), R1_OK);
    ck_assert_int_eq(r1_session_opts_set_overflow(o, 7, -1), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_session_opts_set_overflow(o, R1_OVERFLOW_SHIFT, -2), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_session_opts_set_overflow(NULL, R1_OVERFLOW_SHIFT, -1), R1_ERR_INVALID_ARG);
    r1_session_opts_destroy(o);
    r1_model *m = load("tiny-v3-src");
    r1_session *s = session(m, 64, NULL, R1_OVERFLOW_FAIL);
    int32_t ids[8] = {10, 11, 12, 13, 14, 15, 16, 17};
    ck_assert_int_eq(r1_session_shift(s, 0, 1), R1_ERR_OUT_OF_RANGE);
    ck_assert_int_eq(r1_session_eval(s, ids, 8), R1_OK);
    ck_assert_int_eq(r1_session_shift(s, 4, 5), R1_ERR_OUT_OF_RANGE);
    ck_assert_int_eq(r1_session_shift(s, -1, 1), R1_ERR_OUT_OF_RANGE);
    ck_assert_int_eq(r1_session_shift(s, 8, 0), R1_OK);
    ck_assert_int_eq(r1_session_sync(s, ids, 0), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_session_sync(s, NULL, 1), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_session_sync(NULL, ids, 1), R1_ERR_INVALID_ARG);
    ids[3] = 1 << 30;
    ck_assert_int_eq(r1_session_sync(s, ids, 8), R1_ERR_OUT_OF_RANGE);
    ck_assert_int_eq(r1_session_position(s), 8); /* a refused sync changes nothing */
    ids[3] = 13;
    r1_sampler *smp = NULL;
    ck_assert_int_eq(r1_sampler_create(&smp, 1), R1_OK);
    ck_assert_int_eq(r1_session_sync(s, ids, 8), R1_OK);
    ck_assert_int_eq(r1_session_begin(s, smp, NULL), R1_OK);
    ck_assert_int_eq(r1_session_sync(s, ids, 8), R1_ERR_BAD_STATE);
    ck_assert_int_eq(r1_session_shift(s, 1, 1), R1_ERR_BAD_STATE);
    r1_sampler_destroy(smp);
    r1_session_destroy(s);
    /* Fail (the default) refuses what does not fit, as before. */
    s = session(m, 8, NULL, R1_OVERFLOW_FAIL);
    ck_assert_int_eq(r1_session_eval(s, ids, 8), R1_OK);
    ck_assert_int_eq(r1_session_eval(s, ids, 1), R1_ERR_CONTEXT_FULL);
    ck_assert_int_eq(r1_session_feed(s, ids, 1), R1_ERR_CONTEXT_FULL);
    r1_session_destroy(s);
    r1_model_destroy(m);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("session_sync");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, test_sync_evaluates_new_tokens_only, 0, N_MODELS);
    tcase_add_loop_test(tc, test_shift_one_layer, 0, N_MODELS);
    tcase_add_loop_test(tc, test_shift_moves_rows, 0, N_MODELS);
    tcase_add_test(tc, test_chat_continues_past_context);
    tcase_add_test(tc, test_sync_after_shift);
    tcase_add_test(tc, test_generation_continues_past_context);
    tcase_add_test(tc, test_misuse);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
