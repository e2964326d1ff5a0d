/* test_batch.c: several sessions stepped through shared forward passes (r1_session_step_many)
 * give each session the logits and tokens of stepping it alone; the model-derived forward data is
 * bound once per model; misuse is refused without touching any session. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_kernels.h"
#include "r1.h"
#include "session.h"

enum { N_SEQ = 4, STEPS = 12 };

/* Prompts of different lengths (one longer than a step's 64-token slice, so it is still in its
 * prompt while the others decode); session 2 also starts later in its cache (a history first),
 * session 1 ends after 3 tokens (it leaves the batch while the others go on). */
static const int32_t PROMPT_LEN[N_SEQ] = {2, 9, 70, 5};
static const int32_t MAX_TOKENS[N_SEQ] = {-1, 3, -1, -1};
static const int32_t HISTORY[] = {3, 9, 27, 14, 5, 8, 11};

/* Weight types whose products treat every row alike (integer Q8_0/Q4_0 kernels; f32 with the
 * BLAS path off, so one row and many take the same dot kernel). */
static const char *const MODELS[] = {
    "tiny-v3-q8_0",    "tiny-v3-q4_0", "tiny-v2lite-q8_0", "tiny-v2lite-q4_0", "tiny-qwen2-q8_0",
    "tiny-qwen2-q4_0", "tiny-v3-f32",  "tiny-v2lite-f32",  "tiny-qwen2-f32",
};
enum { N_MODELS = sizeof MODELS / sizeof MODELS[0] };

static r1_model *load(const char *name)
{
    const char *dir = getenv("R1_TEST_MODELS_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.r1m", dir ? dir : R1_TEST_MODELS_DIR, name);
    r1_model *m = NULL;
    ck_assert_msg(r1_model_load(&m, path, NULL, NULL) == R1_OK, "%s: %s", path, r1_last_error());
    return m;
}

typedef struct trace {
    int32_t n; /* steps recorded */
    r1_status st[STEPS];
    int32_t id[STEPS], kind[STEPS], pos[STEPS];
    float *logits[STEPS]; /* NULL when the session had none */
    size_t vocab;
} trace;

static void trace_free(trace *t)
{
    for (int32_t k = 0; k < t->n; k++)
        free(t->logits[k]);
}

static void record(trace *t, const r1_session *s, r1_status st, int32_t id, int32_t kind)
{
    const int32_t k = t->n++;
    t->st[k] = st;
    t->id[k] = id;
    t->kind[k] = kind;
    t->pos[k] = r1_session_position(s);
    const float *l;
    size_t nv;
    t->logits[k] = NULL;
    if (r1_session_logits(s, -1, &l, &nv) == R1_OK) {
        t->vocab = nv;
        t->logits[k] = malloc(nv * sizeof *l);
        memcpy(t->logits[k], l, nv * sizeof *l);
    }
}

/* The cache type of the sessions start() makes (NULL: the model's default). */
static const char *cache_type;

static r1_session *start(r1_model *m, int32_t i, r1_sampler **smp)
{
    r1_session *s = NULL;
    r1_session_opts *so = NULL;
    ck_assert_int_eq(r1_session_opts_create(&so), R1_OK);
    if (cache_type != NULL)
        ck_assert_int_eq(r1_session_opts_set_cache_type(so, cache_type), R1_OK);
    ck_assert_int_eq(r1_session_create(&s, m, so), R1_OK);
    r1_session_opts_destroy(so);
    if (i == 2)
        ck_assert_int_eq(r1_session_eval(s, HISTORY, sizeof HISTORY / sizeof HISTORY[0]), R1_OK);
    int32_t prompt[80];
    for (int32_t k = 0; k < PROMPT_LEN[i]; k++)
        prompt[k] = 3 + (i * 37 + k * 13) % 250; /* below every tiny model's 288 embeddings */
    ck_assert_msg(r1_session_feed(s, prompt, (size_t)PROMPT_LEN[i]) == R1_OK, "%s",
                  r1_last_error());
    ck_assert_int_eq(r1_sampler_create(smp, 11 + (uint64_t)i), R1_OK);
    ck_assert_int_eq(r1_sampler_set_temperature(*smp, 0.0f), R1_OK);
    r1_gen_opts *o = NULL;
    ck_assert_int_eq(r1_gen_opts_create(&o), R1_OK);
    ck_assert_int_eq(r1_gen_opts_set_max_tokens(o, MAX_TOKENS[i]), R1_OK);
    ck_assert_int_eq(r1_session_begin(s, *smp, o), R1_OK);
    r1_gen_opts_destroy(o);
    return s;
}

static void run_alone(r1_model *m, int32_t i, trace *t)
{
    r1_sampler *smp;
    r1_session *s = start(m, i, &smp);
    memset(t, 0, sizeof *t);
    while (t->n < STEPS) {
        int32_t id, kind;
        const r1_status st = r1_session_step(s, &id, &kind);
        record(t, s, st, id, kind);
        if (st != R1_OK)
            break;
    }
    r1_session_destroy(s);
    r1_sampler_destroy(smp);
}

/* Steps sessions first .. first + n - 1 together, comparing each step with alone[]. */
static void run_batched(r1_model *m, const trace *alone, int32_t first, int32_t n, const char *what)
{
    r1_session *s[N_SEQ];
    r1_sampler *smp[N_SEQ];
    trace got[N_SEQ];
    int32_t live[N_SEQ];
    for (int32_t i = first; i < first + n; i++) {
        s[i] = start(m, i, &smp[i]);
        memset(&got[i], 0, sizeof got[i]);
        live[i] = 1;
    }
    for (int32_t k = 0; k < STEPS; k++) {
        r1_session *list[N_SEQ];
        int32_t idx[N_SEQ], n_live = 0;
        for (int32_t i = first; i < first + n; i++)
            if (live[i]) {
                idx[n_live] = i;
                list[n_live++] = s[i];
            }
        if (n_live == 0)
            break;
        int32_t ids[N_SEQ], kinds[N_SEQ];
        r1_status sts[N_SEQ];
        ck_assert_msg(r1_session_step_many(list, (size_t)n_live, ids, kinds, sts) == R1_OK, "%s",
                      r1_last_error());
        for (int32_t j = 0; j < n_live; j++) {
            const int32_t i = idx[j];
            record(&got[i], s[i], sts[j], ids[j], kinds[j]);
            if (sts[j] != R1_OK)
                live[i] = 0;
        }
    }
    for (int32_t i = first; i < first + n; i++) {
        const trace *a = &alone[i], *b = &got[i];
        ck_assert_msg(a->n == b->n, "%s seq %d: %d steps alone, %d batched", what, i, a->n, b->n);
        for (int32_t k = 0; k < a->n; k++) {
            ck_assert_msg(a->st[k] == b->st[k] && a->id[k] == b->id[k] &&
                              a->kind[k] == b->kind[k] && a->pos[k] == b->pos[k],
                          "%s seq %d step %d: alone %d/%d/%d at %d, batched %d/%d/%d at %d", what,
                          i, k, a->st[k], a->id[k], a->kind[k], a->pos[k], b->st[k], b->id[k],
                          b->kind[k], b->pos[k]);
            ck_assert_msg((a->logits[k] == NULL) == (b->logits[k] == NULL), "%s seq %d step %d",
                          what, i, k);
            if (a->logits[k] != NULL)
                ck_assert_msg(memcmp(a->logits[k], b->logits[k], a->vocab * sizeof(float)) == 0,
                              "%s seq %d step %d: batched logits differ from alone", what, i, k);
        }
        trace_free(&got[i]);
        r1_session_destroy(s[i]);
        r1_sampler_destroy(smp[i]);
    }
}

START_TEST(test_batch_logits_equal_alone)
{
    const char *name = MODELS[_i];
    /* On float weights a product of 4 or more rows goes to BLAS, one row to the dot kernel. */
    if (strstr(name, "f32") != NULL)
        r1_cpu__set_blas(0);
    r1_model *m = load(name);
    trace alone[N_SEQ];
    for (int32_t i = 0; i < N_SEQ; i++)
        run_alone(m, i, &alone[i]);
    /* The batch's rows mix prompt slices and decoded tokens, positions and lengths differ, one
     * session leaves after its third token. */
    ck_assert_int_eq(alone[1].st[alone[1].n - 1], R1_DONE);
    ck_assert_int_lt(alone[1].n, STEPS);
    run_batched(m, alone, 0, N_SEQ, name);
    run_batched(m, alone, 2, 2, name);
    for (int32_t i = 0; i < N_SEQ; i++)
        trace_free(&alone[i]);
    r1_model_destroy(m);
}
END_TEST

/* The same with q8_0 caches (the latent rows of the MoE models, keys and values of the dense
 * one): each sequence's attention reads its own quantised rows in the shared pass. */
START_TEST(test_batch_q8_0_cache_equal_alone)
{
    const char *name = MODELS[_i];
    cache_type = "q8_0";
    r1_model *m = load(name);
    trace alone[N_SEQ];
    for (int32_t i = 0; i < N_SEQ; i++)
        run_alone(m, i, &alone[i]);
    run_batched(m, alone, 0, N_SEQ, name);
    for (int32_t i = 0; i < N_SEQ; i++)
        trace_free(&alone[i]);
    r1_model_destroy(m);
    cache_type = NULL;
}
END_TEST

/* Rows beyond one pass's scratch: a short context makes the chunk smaller than the rows of
 * every session's prompt slice together, so the step takes several passes. */
START_TEST(test_batch_several_passes)
{
    r1_model *m = load("tiny-v2lite-q8_0");
    r1_session_opts *so = NULL;
    ck_assert_int_eq(r1_session_opts_create(&so), R1_OK);
    ck_assert_int_eq(r1_session_opts_set_context(so, 48), R1_OK);
    enum { N = 3 };
    r1_session *s[N];
    r1_session *alone[N];
    r1_sampler *smp[2 * N];
    static const int32_t prompt[30] = {3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16, 17,
                                       18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
    for (int32_t i = 0; i < 2 * N; i++) {
        r1_session *x = NULL;
        ck_assert_int_eq(r1_session_create(&x, m, so), R1_OK);
        ck_assert_int_eq(r1_session_feed(x, prompt + i % N, 30 - (size_t)(i % N) * 5), R1_OK);
        ck_assert_int_eq(r1_sampler_create(&smp[i], 5), R1_OK);
        ck_assert_int_eq(r1_session_begin(x, smp[i], NULL), R1_OK);
        if (i < N)
            s[i] = x;
        else
            alone[i - N] = x;
    }
    for (int32_t k = 0; k < 4; k++) {
        int32_t ids[N], kinds[N];
        r1_status sts[N];
        ck_assert_int_eq(r1_session_step_many(s, N, ids, kinds, sts), R1_OK);
        for (int32_t i = 0; i < N; i++) {
            int32_t id, kind;
            ck_assert_int_eq(r1_session_step(alone[i], &id, &kind), sts[i]);
            ck_assert_int_eq(id, ids[i]);
            const float *a, *b;
            size_t nv;
            ck_assert_int_eq(r1_session_logits(alone[i], -1, &a, &nv), R1_OK);
            ck_assert_int_eq(r1_session_logits(s[i], -1, &b, &nv), R1_OK);
            ck_assert(memcmp(a, b, nv * sizeof *a) == 0);
        }
    }
    for (int32_t i = 0; i < N; i++) {
        r1_session_destroy(s[i]);
        r1_session_destroy(alone[i]);
    }
    for (int32_t i = 0; i < 2 * N; i++)
        r1_sampler_destroy(smp[i]);
    r1_session_opts_destroy(so);
    r1_model_destroy(m);
}
END_TEST

START_TEST(test_batch_bad_arguments)
{
    r1_model *m = load("tiny-v3-q8_0"), *other = load("tiny-v2lite-q8_0");
    r1_sampler *smp[3];
    r1_session *a = start(m, 0, &smp[0]), *b = start(m, 3, &smp[1]), *c = start(other, 0, &smp[2]);
    r1_session *idle = NULL;
    ck_assert_int_eq(r1_session_create(&idle, m, NULL), R1_OK);
    int32_t ids[3], kinds[3];
    r1_status sts[3];
    const int32_t pa = r1_session_position(a), pb = r1_session_position(b);

    r1_session *two_models[] = {a, c};
    ck_assert_int_eq(r1_session_step_many(two_models, 2, ids, kinds, sts), R1_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "another model"));
    r1_session *dup[] = {a, b, a};
    ck_assert_int_eq(r1_session_step_many(dup, 3, ids, kinds, sts), R1_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "sessions[2] is sessions[0]"));
    r1_session *not_begun[] = {a, idle};
    ck_assert_int_eq(r1_session_step_many(not_begun, 2, ids, kinds, sts), R1_ERR_BAD_STATE);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "sessions[1]"));
    r1_session *with_null[] = {a, NULL};
    ck_assert_int_eq(r1_session_step_many(with_null, 2, ids, kinds, sts), R1_ERR_INVALID_ARG);
    r1_session *ok[] = {a, b};
    ck_assert_int_eq(r1_session_step_many(NULL, 2, ids, kinds, sts), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_session_step_many(ok, 0, ids, kinds, sts), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_session_step_many(ok, 2, ids, kinds, NULL), R1_ERR_INVALID_ARG);
    /* None of those touched a session: the first real step evaluates each prompt from the start. */
    ck_assert_int_eq(r1_session_position(a), pa);
    ck_assert_int_eq(r1_session_position(b), pb);
    ck_assert_msg(r1_session_step_many(ok, 2, NULL, NULL, sts) == R1_OK, "%s", r1_last_error());
    ck_assert_int_eq(sts[0], R1_OK);
    ck_assert_int_gt(r1_session_position(a), pa);

    /* A session ended by cancel reports it in its own status; the others step on. */
    ck_assert_int_eq(r1_session_cancel(b), R1_OK);
    ck_assert_int_eq(r1_session_step_many(ok, 2, ids, kinds, sts), R1_OK);
    ck_assert_int_eq(sts[0], R1_OK);
    ck_assert_int_eq(sts[1], R1_CANCELLED);
    ck_assert_int_eq(r1_session_step_many(ok, 2, ids, kinds, sts), R1_ERR_BAD_STATE);

    r1_session_destroy(idle);
    r1_session_destroy(a);
    r1_session_destroy(b);
    r1_session_destroy(c);
    for (int32_t i = 0; i < 3; i++)
        r1_sampler_destroy(smp[i]);
    r1_model_destroy(m);
    r1_model_destroy(other);
}
END_TEST

/* The norm copies, W_UK copies and weight views are the model's, shared by every session. */
START_TEST(test_batch_bound_once_per_model)
{
    static const char *const names[] = {"tiny-v3-q8_0", "tiny-qwen2-q8_0"};
    for (size_t k = 0; k < 2; k++) {
        r1_model *m = load(names[k]);
        r1_session *a = NULL, *b = NULL;
        ck_assert_int_eq(r1_session_create(&a, m, NULL), R1_OK);
        ck_assert_int_eq(r1_session_create(&b, m, NULL), R1_OK);
        if (k == 0) {
            ck_assert_ptr_nonnull(a->forward.layers);
            ck_assert_ptr_eq(a->forward.layers, b->forward.layers);
            ck_assert_ptr_eq(a->forward.final_norm, b->forward.final_norm);
            ck_assert_ptr_nonnull(a->forward.layers[0].uk_t);
        } else {
            ck_assert_ptr_nonnull(a->forward.dense);
            ck_assert_ptr_eq(a->forward.dense, b->forward.dense);
        }
        /* Per session: the lookahead gates and the profile. */
        ck_assert_ptr_ne(&a->forward.pf[0], &b->forward.pf[0]);
        ck_assert_int_eq(r1_session_set_profiling(a, 1), R1_OK);
        ck_assert_ptr_null(b->forward.prof);
        /* The model outlives the first session's destruction with its bound data intact. */
        r1_session_destroy(a);
        ck_assert_int_eq(r1_session_eval(b, HISTORY, 3), R1_OK);
        r1_session_destroy(b);
        r1_model_destroy(m);
    }
}
END_TEST

/* Two threads step disjoint sessions of one model at once (and bind it at once: the first
 * sessions are created concurrently); each gets what it gets alone. */
typedef struct worker {
    r1_model *m;
    const trace *alone;
    int32_t first;
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    run_batched(w->m, w->alone, w->first, 2, "threaded");
    return NULL;
}

START_TEST(test_batch_two_threads)
{
    r1_model *m = load("tiny-v2lite-q8_0");
    trace alone[N_SEQ];
    for (int32_t i = 0; i < N_SEQ; i++)
        run_alone(m, i, &alone[i]);
    r1_model_destroy(m);
    m = load("tiny-v2lite-q8_0"); /* unbound again */
    pthread_t th[2];
    worker w[2] = {{m, alone, 0}, {m, alone, 2}};
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    for (int32_t i = 0; i < N_SEQ; i++)
        trace_free(&alone[i]);
    r1_model_destroy(m);
}
END_TEST

static Suite *batch_suite(void)
{
    Suite *s = suite_create("batch");
    TCase *tc = tcase_create("equal_alone");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_batch_logits_equal_alone, 0, N_MODELS);
    tcase_add_loop_test(tc, test_batch_q8_0_cache_equal_alone, 0, 6); /* the Q8_0/Q4_0 models */
    tcase_add_test(tc, test_batch_several_passes);
    tcase_add_test(tc, test_batch_two_threads);
    suite_add_tcase(s, tc);
    TCase *tm = tcase_create("misuse");
    tcase_add_test(tm, test_batch_bad_arguments);
    tcase_add_test(tm, test_batch_bound_once_per_model);
    suite_add_tcase(s, tm);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(batch_suite());
    srunner_run_all(sr, CK_NORMAL);
    const int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
