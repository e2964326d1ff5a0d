/* test_generate.c: the step API, reasoning/answer tagging, thinking budget, stop strings,
 * cancellation from another thread, seeded reproducibility and misuse, on the tiny V3 model. */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "r1.h"

static r1_model *model;
static int32_t think_open, think_close, eos;

static r1_model *load_model(int32_t threads)
{
    const char *dir = getenv("R1_TEST_MODELS_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/tiny-v3-src.r1m", dir ? dir : R1_TEST_MODELS_DIR);
    r1_model_opts *o = NULL;
    ck_assert_int_eq(r1_model_opts_create(&o), R1_OK);
    ck_assert_int_eq(r1_model_opts_set_threads(o, threads), R1_OK);
    r1_model *m = NULL;
    ck_assert_msg(r1_model_load(&m, path, NULL, o) == R1_OK, "%s", r1_last_error());
    r1_model_opts_destroy(o);
    return m;
}

static void setup(void)
{
    model = load_model(0);
    ck_assert_int_eq(r1_token_find(model, "<think>", &think_open), R1_OK);
    ck_assert_int_eq(r1_token_find(model, "</think>", &think_close), R1_OK);
    eos = r1_token_eos(model);
    ck_assert_int_ge(eos, 0);
}

static void teardown(void)
{
    r1_model_destroy(model);
}

/* An R1 generation prompt: BOS, user turn, assistant turn opening <think>\n. */
static r1_session *prompted_session(r1_model *m)
{
    r1_session *s = NULL;
    ck_assert_int_eq(r1_session_create(&s, m, NULL), R1_OK);
    const char *prompt = "<｜begin▁of▁sentence｜><｜User｜>What is 2+2?<｜Assistant｜><think>\n";
    ck_assert_msg(r1_session_feed_text(s, prompt, strlen(prompt), R1_TOKENIZE_PARSE_SPECIAL) ==
                      R1_OK,
                  "%s", r1_last_error());
    return s;
}

static r1_sampler *greedy(void)
{
    r1_sampler *smp = NULL;
    ck_assert_int_eq(r1_sampler_create(&smp, 7), R1_OK);
    ck_assert_int_eq(r1_sampler_set_temperature(smp, 0.0f), R1_OK);
    return smp;
}

typedef struct run_log {
    int32_t ids[256];
    int32_t kinds[256];
    int n;
    char text[2][4096]; /* reasoning, answer */
    r1_status end;
} run_log;

static void run(r1_session *s, r1_sampler *smp, const r1_gen_opts *o, run_log *log)
{
    memset(log, 0, sizeof *log);
    ck_assert_msg(r1_session_begin(s, smp, o) == R1_OK, "%s", r1_last_error());
    r1_status st;
    int32_t id, kind;
    while ((st = r1_session_step(s, &id, &kind)) == R1_OK || st == R1_DONE) {
        const char *piece;
        size_t len;
        ck_assert_int_eq(r1_session_piece(s, &piece, &len), R1_OK);
        ck_assert_uint_eq(strlen(piece), len);
        if (len > 0) {
            ck_assert(kind == R1_PIECE_REASONING || kind == R1_PIECE_ANSWER);
            strncat(log->text[kind], piece, sizeof log->text[kind] - strlen(log->text[kind]) - 1);
        }
        if (st == R1_DONE)
            break;
        if (id >= 0 && log->n < 256) {
            log->ids[log->n] = id;
            log->kinds[log->n++] = kind;
        }
    }
    log->end = st;
}

START_TEST(test_generate_step_tags_reasoning_then_answer)
{
    r1_session *s = prompted_session(model);
    r1_sampler *smp = greedy();
    /* The untrained model writes </think> only by chance, and a test that passes without the tag
     * tests nothing: it reasons five tokens with the tag banned, then a bias makes it sample
     * </think> (sampled, unlike the think budget's injected one), then answers to the limit. */
    ck_assert_int_eq(r1_sampler_set_logit_bias(smp, think_close, -INFINITY), R1_OK);
    ck_assert_int_eq(r1_sampler_set_logit_bias(smp, eos, -INFINITY), R1_OK);
    r1_gen_opts *o = NULL;
    ck_assert_int_eq(r1_gen_opts_create(&o), R1_OK);
    ck_assert_int_eq(r1_gen_opts_set_max_tokens(o, 20), R1_OK);
    ck_assert_msg(r1_session_begin(s, smp, o) == R1_OK, "%s", r1_last_error());
    int32_t ids[20], kinds[20], id, kind;
    int n = 0;
    char text[2][1024] = {"", ""};
    r1_status st;
    while ((st = r1_session_step(s, &id, &kind)) == R1_OK || st == R1_DONE) {
        const char *piece;
        size_t len;
        ck_assert_int_eq(r1_session_piece(s, &piece, &len), R1_OK);
        if (len > 0) {
            ck_assert(kind == R1_PIECE_REASONING || kind == R1_PIECE_ANSWER);
            strncat(text[kind], piece, sizeof text[kind] - strlen(text[kind]) - 1);
        }
        if (st == R1_DONE)
            break;
        if (id < 0) /* prompt progress */
            continue;
        ck_assert_int_lt(n, 20);
        ids[n] = id;
        kinds[n++] = kind;
        if (n == 5)
            ck_assert_int_eq(r1_sampler_set_logit_bias(smp, think_close, 1e4f), R1_OK);
        else if (n == 6)
            ck_assert_int_eq(r1_sampler_set_logit_bias(smp, think_close, 0.0f), R1_OK);
    }
    ck_assert_int_eq(st, R1_DONE);
    ck_assert_int_eq(n, 20);
    /* The prompt opened <think>: everything up to and including </think> is reasoning, every
     * token after it answer. */
    ck_assert_int_eq(ids[5], think_close);
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(kinds[i], i <= 5 ? R1_PIECE_REASONING : R1_PIECE_ANSWER);
    ck_assert_str_ne(text[R1_PIECE_ANSWER], "");
    ck_assert_ptr_null(strstr(text[R1_PIECE_ANSWER], "</think>"));
    int32_t prompt, reasoning, answer;
    ck_assert_int_eq(r1_session_counts(s, &prompt, &reasoning, &answer), R1_OK);
    ck_assert_int_gt(prompt, 5);
    ck_assert_int_eq(reasoning, 6);
    ck_assert_int_eq(answer, 14);
    /* Step after the end: no generation in progress. */
    ck_assert_int_eq(r1_session_step(s, NULL, NULL), R1_ERR_BAD_STATE);
    ck_assert_str_ne(r1_last_error(), "");
    r1_gen_opts_destroy(o);
    r1_sampler_destroy(smp);
    r1_session_destroy(s);
}
END_TEST

START_TEST(test_generate_think_budget_closes_reasoning)
{
    r1_session *s = prompted_session(model);
    r1_sampler *smp = greedy();
    /* The untrained model must not close its reasoning or stop by itself. */
    ck_assert_int_eq(r1_sampler_set_logit_bias(smp, think_close, -INFINITY), R1_OK);
    ck_assert_int_eq(r1_sampler_set_logit_bias(smp, eos, -INFINITY), R1_OK);
    r1_gen_opts *o = NULL;
    ck_assert_int_eq(r1_gen_opts_create(&o), R1_OK);
    ck_assert_int_eq(r1_gen_opts_set_think_budget(o, 5), R1_OK);
    ck_assert_int_eq(r1_gen_opts_set_think_bridge(o, "\n\nOK:"), R1_OK);
    ck_assert_int_eq(r1_gen_opts_set_max_tokens(o, 20), R1_OK);
    run_log log;
    run(s, smp, o, &log);
    ck_assert_int_eq(log.end, R1_DONE);
    ck_assert_int_ge(log.n, 7);
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(log.kinds[i], R1_PIECE_REASONING);
    ck_assert_int_eq(log.ids[5], think_close); /* injected, although banned for sampling */
    for (int i = 6; i < log.n; i++)
        ck_assert_int_eq(log.kinds[i], R1_PIECE_ANSWER);
    ck_assert_msg(strncmp(log.text[R1_PIECE_ANSWER], "\n\nOK:", 5) == 0, "answer '%s'",
                  log.text[R1_PIECE_ANSWER]);
    int32_t reasoning, answer;
    ck_assert_int_eq(r1_session_counts(s, NULL, &reasoning, &answer), R1_OK);
    ck_assert_int_eq(reasoning, 6);
    ck_assert_int_eq(answer, 14);
    r1_gen_opts_destroy(o);
    r1_sampler_destroy(smp);
    r1_session_destroy(s);
}
END_TEST

START_TEST(test_generate_stop_string_ends_before_it)
{
    r1_sampler *smp = greedy();
    ck_assert_int_eq(r1_sampler_set_logit_bias(smp, eos, -INFINITY), R1_OK);
    r1_gen_opts *o = NULL;
    ck_assert_int_eq(r1_gen_opts_create(&o), R1_OK);
    ck_assert_int_eq(r1_gen_opts_set_max_tokens(o, 30), R1_OK);
    run_log full, cut;
    r1_session *s = prompted_session(model);
    run(s, smp, o, &full);
    r1_session_destroy(s);
    size_t n = strlen(full.text[R1_PIECE_REASONING]);
    ck_assert_uint_ge(n, 6);
    /* A stop string taken from the middle of what greedy decoding writes. */
    char stop[4];
    memcpy(stop, full.text[R1_PIECE_REASONING] + n / 2, 3);
    stop[3] = 0;
    if ((stop[0] & 0xC0) == 0x80 || (stop[2] & 0x80)) /* keep it whole characters */
        memcpy(stop, full.text[R1_PIECE_REASONING], 1), stop[1] = 0;
    ck_assert_int_eq(r1_gen_opts_add_stop(o, stop), R1_OK);
    ck_assert_int_eq(r1_sampler_reset(smp), R1_OK);
    s = prompted_session(model);
    run(s, smp, o, &cut);
    ck_assert_int_eq(cut.end, R1_DONE);
    const char *hit = strstr(full.text[R1_PIECE_REASONING], stop);
    ck_assert_ptr_nonnull(hit);
    size_t before = (size_t)(hit - full.text[R1_PIECE_REASONING]);
    ck_assert_uint_eq(strlen(cut.text[R1_PIECE_REASONING]), before);
    ck_assert(strncmp(cut.text[R1_PIECE_REASONING], full.text[R1_PIECE_REASONING], before) == 0);
    ck_assert_int_eq(r1_gen_opts_add_stop(o, ""), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_gen_opts_add_stop(o, "\xff"), R1_ERR_INVALID_UTF8);
    r1_session_destroy(s);
    r1_gen_opts_destroy(o);
    r1_sampler_destroy(smp);
}
END_TEST

typedef struct cancel_ctx {
    r1_session *s;
    atomic_int steps;
    atomic_int cancelled_at;
} cancel_ctx;

static void *canceller(void *arg)
{
    cancel_ctx *c = arg;
    while (atomic_load(&c->steps) < 3)
        ;
    ck_assert_int_eq(r1_session_cancel(c->s), R1_OK);
    /* Read after the cancel returned: a count read before it could be stale by any number of
     * steps if this thread is descheduled in between (seen under TSan on a loaded host). */
    atomic_store(&c->cancelled_at, atomic_load(&c->steps));
    return NULL;
}

START_TEST(test_generate_cancel_from_another_thread)
{
    r1_session *s = prompted_session(model);
    r1_sampler *smp = greedy();
    ck_assert_int_eq(r1_sampler_set_logit_bias(smp, eos, -INFINITY), R1_OK);
    ck_assert_int_eq(r1_session_begin(s, smp, NULL), R1_OK);
    cancel_ctx c = {.s = s};
    atomic_init(&c.steps, 0);
    atomic_init(&c.cancelled_at, -1);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, canceller, &c), 0);
    r1_status st;
    int n = 0;
    while ((st = r1_session_step(s, NULL, NULL)) == R1_OK && n < 1000)
        atomic_store(&c.steps, ++n);
    pthread_join(t, NULL);
    ck_assert_int_eq(st, R1_CANCELLED);
    /* The step running when cancel came completes and the next one reports it. cancelled_at
     * counts the steps stored when the cancel had returned; one more may have completed without
     * being stored yet, and the one running then may complete too. */
    ck_assert_int_le(n, atomic_load(&c.cancelled_at) + 2);
    /* the session stays usable: a new generation runs */
    ck_assert_int_eq(r1_session_begin(s, smp, NULL), R1_OK);
    ck_assert_int_eq(r1_session_step(s, NULL, NULL), R1_OK);
    r1_sampler_destroy(smp);
    r1_session_destroy(s);
}
END_TEST

static void seeded_run(r1_model *m, uint64_t seed, run_log *log)
{
    r1_session *s = prompted_session(m);
    r1_sampler *smp = NULL;
    ck_assert_int_eq(r1_sampler_create(&smp, seed), R1_OK); /* R1 defaults: T 0.6, top-p 0.95 */
    r1_gen_opts *o = NULL;
    ck_assert_int_eq(r1_gen_opts_create(&o), R1_OK);
    ck_assert_int_eq(r1_gen_opts_set_max_tokens(o, 24), R1_OK);
    run(s, smp, o, log);
    r1_gen_opts_destroy(o);
    r1_sampler_destroy(smp);
    r1_session_destroy(s);
}

START_TEST(test_generate_seed_reproducible_across_threads)
{
    run_log a, b, c;
    r1_model *one = load_model(1), *two = load_model(2);
    seeded_run(one, 1234, &a);
    seeded_run(two, 1234, &b);
    seeded_run(one, 1234, &c);
    ck_assert_int_eq(a.n, b.n);
    ck_assert_mem_eq(a.ids, b.ids, (size_t)a.n * sizeof a.ids[0]);
    ck_assert_mem_eq(a.ids, c.ids, (size_t)a.n * sizeof a.ids[0]);
    run_log d;
    seeded_run(one, 99, &d);
    ck_assert(d.n != a.n || memcmp(a.ids, d.ids, (size_t)a.n * sizeof a.ids[0]) != 0);
    r1_model_destroy(one);
    r1_model_destroy(two);
}
END_TEST

static int32_t stop_after_two(const char *piece, size_t len, int32_t kind, void *user_data)
{
    (void)piece, (void)len, (void)kind;
    return ++*(int *)user_data >= 2;
}

START_TEST(test_generate_callback_cancels)
{
    r1_session *s = prompted_session(model);
    r1_sampler *smp = greedy();
    ck_assert_int_eq(r1_sampler_set_logit_bias(smp, eos, -INFINITY), R1_OK);
    int calls = 0;
    ck_assert_int_eq(r1_session_generate(s, smp, NULL, stop_after_two, &calls), R1_CANCELLED);
    ck_assert_int_eq(calls, 2);
    r1_sampler_destroy(smp);
    r1_session_destroy(s);
}
END_TEST

START_TEST(test_generate_misuse_has_messages)
{
    r1_session *s = NULL;
    ck_assert_int_eq(r1_session_create(&s, model, NULL), R1_OK);
    r1_sampler *smp = greedy();
    ck_assert_int_eq(r1_session_step(s, NULL, NULL), R1_ERR_BAD_STATE);
    ck_assert_int_eq(r1_session_begin(s, smp, NULL), R1_ERR_BAD_STATE);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "feed"));
    int32_t bad = 320;
    ck_assert_int_eq(r1_session_feed(s, &bad, 1), R1_ERR_OUT_OF_RANGE);
    ck_assert_int_eq(r1_session_feed_text(s, "\xc3\x28", 2, 0), R1_ERR_INVALID_UTF8);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "at byte 0"));
    ck_assert_int_eq(r1_session_feed(NULL, &bad, 1), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_session_begin(s, NULL, NULL), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_session_cancel(NULL), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_session_piece(NULL, NULL, NULL), R1_ERR_INVALID_ARG);
    /* a prompt longer than the context */
    r1_session_opts *so = NULL;
    ck_assert_int_eq(r1_session_opts_create(&so), R1_OK);
    ck_assert_int_eq(r1_session_opts_set_context(so, 4), R1_OK);
    r1_session *small = NULL;
    ck_assert_int_eq(r1_session_create(&small, model, so), R1_OK);
    r1_session_opts_destroy(so);
    const char *p = "a long prompt that does not fit";
    ck_assert_int_eq(r1_session_feed_text(small, p, strlen(p), 0), R1_ERR_CONTEXT_FULL);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "context"));
    r1_session_destroy(small);
    /* generation fills the context: a clear status, and the session stays usable */
    ck_assert_int_eq(r1_session_opts_create(&so), R1_OK);
    ck_assert_int_eq(r1_session_opts_set_context(so, 24), R1_OK);
    ck_assert_int_eq(r1_session_create(&small, model, so), R1_OK);
    r1_session_opts_destroy(so);
    ck_assert_int_eq(r1_session_feed_text(small, "hello", 5, 0), R1_OK);
    ck_assert_int_eq(r1_sampler_set_logit_bias(smp, eos, -INFINITY), R1_OK);
    ck_assert_int_eq(r1_session_begin(small, smp, NULL), R1_OK);
    r1_status st;
    while ((st = r1_session_step(small, NULL, NULL)) == R1_OK)
        ;
    ck_assert_int_eq(st, R1_ERR_CONTEXT_FULL);
    ck_assert_int_eq(r1_session_reset(small), R1_OK);
    ck_assert_int_eq(r1_session_feed_text(small, "hello", 5, 0), R1_OK);
    ck_assert_int_eq(r1_session_begin(small, smp, NULL), R1_OK);
    ck_assert_int_eq(r1_session_step(small, NULL, NULL), R1_OK);
    r1_session_destroy(small);
    r1_sampler_destroy(smp);
    r1_session_destroy(s);
}
END_TEST

START_TEST(test_generate_session_outlives_model)
{
    r1_model *m = load_model(0);
    r1_session *s = prompted_session(m);
    r1_model_destroy(m); /* the session's reference keeps it alive */
    r1_sampler *smp = greedy();
    r1_gen_opts *o = NULL;
    ck_assert_int_eq(r1_gen_opts_create(&o), R1_OK);
    ck_assert_int_eq(r1_gen_opts_set_max_tokens(o, 3), R1_OK);
    run_log log;
    run(s, smp, o, &log);
    ck_assert_int_eq(log.end, R1_DONE);
    r1_gen_opts_destroy(o);
    r1_sampler_destroy(smp);
    r1_session_destroy(s); /* frees the model */
}
END_TEST

START_TEST(test_generate_tokenize_round_trip)
{
    const char *text = "What is 347 + 285? Ünïcödé ✓";
    int32_t ids[64];
    size_t n = 0;
    ck_assert_int_eq(r1_tokenize(model, text, strlen(text), R1_TOKENIZE_ADD_BOS, ids, 64, &n),
                     R1_OK);
    ck_assert_int_eq(ids[0], r1_token_bos(model));
    char buf[128];
    size_t len = 0;
    ck_assert_int_eq(r1_detokenize(model, ids + 1, n - 1, 0, buf, sizeof buf, &len), R1_OK);
    ck_assert_str_eq(buf, text);
    ck_assert_int_eq(r1_detokenize(model, ids + 1, n - 1, 0, buf, 3, &len),
                     R1_ERR_BUFFER_TOO_SMALL);
    ck_assert_uint_eq(len, strlen(text));
    size_t need = 0;
    ck_assert_int_eq(r1_tokenize(model, text, strlen(text), 0, NULL, 0, &need),
                     R1_ERR_BUFFER_TOO_SMALL);
    ck_assert_uint_eq(need, n - 1);
    ck_assert_int_eq(r1_token_count(model), 304);
    int32_t id;
    ck_assert_int_eq(r1_token_find(model, "<nope>", &id), R1_ERR_NOT_FOUND);
    int32_t bad = 100000;
    ck_assert_int_eq(r1_detokenize(model, &bad, 1, 0, buf, sizeof buf, &len), R1_ERR_OUT_OF_RANGE);
    ck_assert_int_eq(r1_tokenize(model, "\xff", 1, 0, ids, 64, &n), R1_ERR_INVALID_UTF8);
    ck_assert_int_eq(r1_tokenize(model, "\xff", 1, R1_TOKENIZE_REPLACE_INVALID, ids, 64, &n),
                     R1_OK);
    ck_assert_int_eq(r1_tokenize(NULL, "a", 1, 0, ids, 64, &n), R1_ERR_INVALID_ARG);
}
END_TEST

static Suite *generate_suite(void)
{
    Suite *s = suite_create("generate");
    TCase *tc = tcase_create("generation");
    tcase_set_timeout(tc, 300);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_generate_step_tags_reasoning_then_answer);
    tcase_add_test(tc, test_generate_think_budget_closes_reasoning);
    tcase_add_test(tc, test_generate_stop_string_ends_before_it);
    tcase_add_test(tc, test_generate_cancel_from_another_thread);
    tcase_add_test(tc, test_generate_seed_reproducible_across_threads);
    tcase_add_test(tc, test_generate_callback_cancels);
    tcase_add_test(tc, test_generate_misuse_has_messages);
    tcase_add_test(tc, test_generate_session_outlives_model);
    tcase_add_test(tc, test_generate_tokenize_round_trip);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(generate_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
