/* test_dlopen.c: libr1 as a plug-in leaves its host as it found it: dlopen, load, generate,
 * destroy, dlclose, repeated, with no thread left behind and the host's BLAS settings intact. */
#include <check.h>
#include <dirent.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "r1.h"
#include "thread_testutil.h"

#ifdef R1_TEST_HAVE_OPENBLAS
int openblas_get_num_threads(void);
void openblas_set_num_threads(int n);
#endif

enum { CYCLES = 20, GEN_TOKENS = 12 };

/* The public functions this host uses, looked up in each freshly loaded copy. */
typedef struct api {
    void *handle;
    const char *(*last_error)(void);
    r1_status (*model_opts_create)(r1_model_opts **);
    r1_status (*model_opts_set_threads)(r1_model_opts *, int32_t);
    void (*model_opts_destroy)(r1_model_opts *);
    r1_status (*model_load)(r1_model **, const char *, r1_backend *, const r1_model_opts *);
    void (*model_destroy)(r1_model *);
    r1_status (*session_opts_create)(r1_session_opts **);
    r1_status (*session_opts_set_context)(r1_session_opts *, int32_t);
    void (*session_opts_destroy)(r1_session_opts *);
    r1_status (*session_create)(r1_session **, r1_model *, const r1_session_opts *);
    void (*session_destroy)(r1_session *);
    r1_status (*sampler_create)(r1_sampler **, uint64_t);
    void (*sampler_destroy)(r1_sampler *);
    r1_status (*feed_text)(r1_session *, const char *, size_t, uint32_t);
    r1_status (*begin)(r1_session *, r1_sampler *, const r1_gen_opts *);
    r1_status (*step)(r1_session *, int32_t *, int32_t *);
} api;

#define LOOKUP(field, name)                                                                        \
    do {                                                                                           \
        *(void **)&a->field = dlsym(a->handle, name);                                              \
        ck_assert_msg(a->field != NULL, "%s: %s", name, dlerror());                                \
    } while (0)

static void api_open(api *a)
{
    memset(a, 0, sizeof *a);
    a->handle = dlopen(R1_TEST_LIBR1, RTLD_NOW | RTLD_LOCAL);
    ck_assert_msg(a->handle != NULL, "dlopen %s: %s", R1_TEST_LIBR1, dlerror());
    LOOKUP(last_error, "r1_last_error");
    LOOKUP(model_opts_create, "r1_model_opts_create");
    LOOKUP(model_opts_set_threads, "r1_model_opts_set_threads");
    LOOKUP(model_opts_destroy, "r1_model_opts_destroy");
    LOOKUP(model_load, "r1_model_load");
    LOOKUP(model_destroy, "r1_model_destroy");
    LOOKUP(session_opts_create, "r1_session_opts_create");
    LOOKUP(session_opts_set_context, "r1_session_opts_set_context");
    LOOKUP(session_opts_destroy, "r1_session_opts_destroy");
    LOOKUP(session_create, "r1_session_create");
    LOOKUP(session_destroy, "r1_session_destroy");
    LOOKUP(sampler_create, "r1_sampler_create");
    LOOKUP(sampler_destroy, "r1_sampler_destroy");
    LOOKUP(feed_text, "r1_session_feed_text");
    LOOKUP(begin, "r1_session_begin");
    LOOKUP(step, "r1_session_step");
}

/* A host thread that generates, then stays alive until the library is gone: whatever r1 left
 * in it (a thread-local destructor, say) runs when it exits, after the dlclose. */
typedef struct host_job {
    api *a;
    r1_session *s;
    r1_sampler *smp;
    int32_t generated;
    r1_status st;
    char err[256];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done, may_exit;
} host_job;

static void *host_thread(void *arg)
{
    host_job *j = arg;
    /* five tokens or more: the prompt's products take the batched (BLAS) path */
    static const char prompt[] = "<|User|>What is 347 + 285?<|Assistant|><think>\n";
    r1_status st = j->a->feed_text(j->s, prompt, sizeof prompt - 1, R1_TOKENIZE_PARSE_SPECIAL);
    if (st == R1_OK)
        st = j->a->begin(j->s, j->smp, NULL);
    int32_t id = -1, kind = 0;
    while (st == R1_OK && j->generated < GEN_TOKENS)
        if ((st = j->a->step(j->s, &id, &kind)) == R1_OK && id >= 0)
            j->generated++;
    if (st == R1_DONE)
        st = R1_OK;
    if (st != R1_OK)
        snprintf(j->err, sizeof j->err, "%s", j->a->last_error());
    pthread_mutex_lock(&j->mu);
    j->st = st;
    j->done = 1;
    pthread_cond_broadcast(&j->cv);
    while (!j->may_exit)
        pthread_cond_wait(&j->cv, &j->mu);
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

/* One plug-in lifetime: load, generate on a host thread, destroy, unload; then the thread ends. */
static void cycle(int i, int baseline)
{
    /* the shipped model and a Q8_0 one (whose 8-bit activation path runs without BLAS), float
     * activations (BLAS for the prompt) and 8-bit ones, the shared pool and a model's own */
    const char *path = i % 4 < 2 ? R1_TEST_TINY_R1 : R1_TEST_MODELS_DIR "/tiny-v3-q8_0.r1m";
    setenv("R1_CPU_ACT_Q8", i % 2 ? "0" : "1", 1);
    api a;
    api_open(&a);
    r1_model_opts *mo = NULL;
    ck_assert_int_eq(a.model_opts_create(&mo), R1_OK);
    if (i % 4 == 3)
        ck_assert_int_eq(a.model_opts_set_threads(mo, 2), R1_OK);
    r1_model *m = NULL;
    ck_assert_msg(a.model_load(&m, path, NULL, mo) == R1_OK, "%s: %s", path, a.last_error());
    a.model_opts_destroy(mo);
    r1_session_opts *so = NULL;
    ck_assert_int_eq(a.session_opts_create(&so), R1_OK);
    ck_assert_int_eq(a.session_opts_set_context(so, 256), R1_OK);
    host_job j = {.a = &a, .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    ck_assert_msg(a.session_create(&j.s, m, so) == R1_OK, "%s", a.last_error());
    a.session_opts_destroy(so);
    ck_assert_int_eq(a.sampler_create(&j.smp, 42 + (uint64_t)i), R1_OK);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, host_thread, &j), 0);
    pthread_mutex_lock(&j.mu);
    while (!j.done)
        pthread_cond_wait(&j.cv, &j.mu);
    pthread_mutex_unlock(&j.mu);
    ck_assert_msg(j.st == R1_OK, "cycle %d: generation failed: %s", i, j.err);
    ck_assert_int_gt(j.generated, 0);
    ck_assert_int_gt(count_threads(), baseline + 1); /* the pool is working while models live */
    a.sampler_destroy(j.smp);
    a.session_destroy(j.s);
    a.model_destroy(m);
    const int left = settled_threads(baseline + 1);
    ck_assert_msg(left == baseline + 1,
                  "cycle %d: %d threads after the last model was destroyed, want %d (the host's "
                  "%d and its generating thread)",
                  i, left, baseline + 1, baseline);
    ck_assert_int_eq(dlclose(a.handle), 0);
    /* unloaded indeed, so the code the threads ran is gone */
    void *still = dlopen(R1_TEST_LIBR1, RTLD_NOW | RTLD_NOLOAD);
    ck_assert_msg(still == NULL, "cycle %d: libr1 is still mapped after dlclose", i);
    pthread_mutex_lock(&j.mu);
    j.may_exit = 1;
    pthread_cond_broadcast(&j.cv);
    pthread_mutex_unlock(&j.mu);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    ck_assert_int_eq(settled_threads(baseline), baseline);
}

START_TEST(test_dlopen_cycles_leave_host_as_found)
{
    setenv("R1_NUM_THREADS", "3", 1); /* two workers, even on a one-CPU machine */
#ifdef R1_TEST_HAVE_OPENBLAS
    /* the host's own choice, distinct from the 1 that r1 uses inside its products */
    openblas_set_num_threads(3);
    const int blas_threads = openblas_get_num_threads();
    ck_assert_int_eq(blas_threads, 3);
#endif
    const int baseline = count_threads();
    for (int i = 0; i < CYCLES; i++) {
        cycle(i, baseline);
#ifdef R1_TEST_HAVE_OPENBLAS
        ck_assert_msg(openblas_get_num_threads() == blas_threads,
                      "cycle %d: the host's OpenBLAS threads changed from %d to %d", i,
                      blas_threads, openblas_get_num_threads());
#endif
    }
    ck_assert_int_eq(count_threads(), baseline);
}
END_TEST

static Suite *dlopen_suite(void)
{
    Suite *s = suite_create("dlopen");
    TCase *tc = tcase_create("plugin");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_dlopen_cycles_leave_host_as_found);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(dlopen_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
