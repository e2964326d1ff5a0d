/* test_alloc_fail.c: allocation-failure injection: the n-th allocation of load, session creation,
 * generation and conversion fails, for every n; each must fail cleanly and leave the rest usable.
 *
 * Linked with -Wl,--wrap for every allocation function libr1's own objects call (malloc, calloc,
 * realloc, strdup, aligned_alloc, posix_memalign), for pthread_create (a thread's stack) and for
 * the third-party constructors they call (ZSTD_createCCtx/DCtx, pcre2's match data, match context
 * and JIT stack), so a failure is injected exactly where the library would see one. Allocations
 * made inside zstd, pcre2 or cJSON themselves are not reached by --wrap (they call their own
 * libc malloc); cJSON has only process-global hooks, which a library must not install.
 *
 * Only allocations on the armed (calling) thread count, so runs are deterministic; the shared
 * pool has one thread (R1_NUM_THREADS=1), so every op's work runs on that thread. Each injected
 * failure must give R1_ERR_NO_MEMORY and a message; leaks are LeakSanitizer's to find (the ASan
 * build). R1_ALLOC_FAIL_STRIDE=k sweeps every k-th n only (a deterministic subset, for CI). */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <execinfo.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "r1.h"

/* ---- the injector --------------------------------------------------------------------------- */

static _Thread_local int armed;
static _Thread_local int64_t n_calls, fail_at;

/* 1 when this call is to fail. R1_ALLOC_FAIL_TRACE=1 prints where each failure is injected. */
/* The distinct call sites (return addresses into the library) seen by a counting run. */
enum { MAX_SITES = 4096 };
static void *sites[MAX_SITES];
static int32_t n_sites;

static void note_site(void *site)
{
    for (int32_t i = 0; i < n_sites; i++)
        if (sites[i] == site)
            return;
    if (n_sites < MAX_SITES)
        sites[n_sites++] = site;
}

static int inject(void *site)
{
    if (!armed)
        return 0;
    n_calls++;
    if (fail_at == 0)
        note_site(site);
    if (fail_at <= 0 || n_calls != fail_at)
        return 0;
    if (getenv("R1_ALLOC_FAIL_TRACE") != NULL) {
        void *frames[16];
        fprintf(stderr, "-- failing allocation %lld:\n", (long long)n_calls);
        backtrace_symbols_fd(frames, backtrace(frames, 16), 2);
    }
    return 1;
}

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
void *__real_aligned_alloc(size_t align, size_t n);
int __real_posix_memalign(void **p, size_t align, size_t n);
int __real_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg);
void *__real_ZSTD_createCCtx(void);
void *__real_ZSTD_createDCtx(void);
size_t __real_ZSTD_decompress(void *dst, size_t cap, const void *src, size_t n);
void *__real_pcre2_match_data_create_8(uint32_t n, void *gctx);
void *__real_pcre2_match_context_create_8(void *gctx);
void *__real_pcre2_jit_stack_create_8(size_t start, size_t max, void *gctx);
int __real_pcre2_match_8(const void *code, const uint8_t *subject, size_t length,
                         size_t start_offset, uint32_t options, void *match_data, void *mcontext);

void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
void *__wrap_aligned_alloc(size_t align, size_t n);
int __wrap_posix_memalign(void **p, size_t align, size_t n);
int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg);
void *__wrap_ZSTD_createCCtx(void);
void *__wrap_ZSTD_createDCtx(void);
size_t __wrap_ZSTD_decompress(void *dst, size_t cap, const void *src, size_t n);
void *__wrap_pcre2_match_data_create_8(uint32_t n, void *gctx);
void *__wrap_pcre2_match_context_create_8(void *gctx);
void *__wrap_pcre2_jit_stack_create_8(size_t start, size_t max, void *gctx);
int __wrap_pcre2_match_8(const void *code, const uint8_t *subject, size_t length,
                         size_t start_offset, uint32_t options, void *match_data, void *mcontext);

void *__wrap_malloc(size_t n)
{
    return inject(__builtin_return_address(0)) ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
    return inject(__builtin_return_address(0)) ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n)
{
    return inject(__builtin_return_address(0)) ? NULL : __real_realloc(p, n);
}

char *__wrap_strdup(const char *s)
{
    return inject(__builtin_return_address(0)) ? NULL : __real_strdup(s);
}

void *__wrap_aligned_alloc(size_t align, size_t n)
{
    return inject(__builtin_return_address(0)) ? NULL : __real_aligned_alloc(align, n);
}

int __wrap_posix_memalign(void **p, size_t align, size_t n)
{
    return inject(__builtin_return_address(0)) ? ENOMEM : __real_posix_memalign(p, align, n);
}

int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
    return inject(__builtin_return_address(0)) ? EAGAIN : __real_pthread_create(t, attr, fn, arg);
}

void *__wrap_ZSTD_createCCtx(void)
{
    return inject(__builtin_return_address(0)) ? NULL : __real_ZSTD_createCCtx();
}

void *__wrap_ZSTD_createDCtx(void)
{
    return inject(__builtin_return_address(0)) ? NULL : __real_ZSTD_createDCtx();
}

/* ZSTD_decompress() allocates its context itself; the library no longer calls it (a failure
 * there read as a damaged blob), but an old or new call is still caught here. */
size_t __wrap_ZSTD_decompress(void *dst, size_t cap, const void *src, size_t n)
{
    return inject(__builtin_return_address(0)) ? (size_t)-64 /* -ZSTD_error_memory_allocation */
                                               : __real_ZSTD_decompress(dst, cap, src, n);
}

void *__wrap_pcre2_match_data_create_8(uint32_t n, void *gctx)
{
    return inject(__builtin_return_address(0)) ? NULL : __real_pcre2_match_data_create_8(n, gctx);
}

void *__wrap_pcre2_match_context_create_8(void *gctx)
{
    return inject(__builtin_return_address(0)) ? NULL : __real_pcre2_match_context_create_8(gctx);
}

void *__wrap_pcre2_jit_stack_create_8(size_t start, size_t max, void *gctx)
{
    return inject(__builtin_return_address(0)) ? NULL
                                               : __real_pcre2_jit_stack_create_8(start, max, gctx);
}

/* pcre2_match() allocates its backtracking frames on the heap when they outgrow the stack. */
int __wrap_pcre2_match_8(const void *code, const uint8_t *subject, size_t length,
                         size_t start_offset, uint32_t options, void *match_data, void *mcontext)
{
    return inject(__builtin_return_address(0))
               ? -48 /* PCRE2_ERROR_NOMEMORY */
               : __real_pcre2_match_8(code, subject, length, start_offset, options, match_data,
                                      mcontext);
}

static void arm(int64_t n)
{
    n_calls = 0;
    fail_at = n;
    armed = 1;
}

static int64_t disarm(void)
{
    armed = 0;
    return n_calls;
}

/* ---- the sweep ------------------------------------------------------------------------------ */

/* One operation under test: run() does it (armed) and returns its status; undo() releases
 * what a successful run made; check() proves the surviving handles still work (unarmed). */
typedef struct op {
    const char *name;
    void (*setup)(void);
    r1_status (*run)(void);
    void (*undo)(void);
    void (*check)(void);
    void (*teardown)(void);
} op;

static int64_t stride(void)
{
    const char *s = getenv("R1_ALLOC_FAIL_STRIDE");
    long v = s != NULL ? strtol(s, NULL, 10) : 1;
    return v > 1 ? v : 1;
}

static void sweep(const op *o)
{
    /* once unarmed first: what the process initialises once (tables built on first use) is the
     * business of first_load_sweep(), not of every operation's count */
    if (o->setup)
        o->setup();
    ck_assert_msg(o->run() == R1_OK, "%s: %s", o->name, r1_last_error());
    if (o->undo)
        o->undo();
    if (o->teardown)
        o->teardown();
    if (o->setup)
        o->setup();
    n_sites = 0;
    arm(0);
    r1_status st = o->run();
    int64_t total = disarm();
    ck_assert_msg(st == R1_OK, "%s without injected failures: %s", o->name, r1_last_error());
    if (o->undo)
        o->undo();
    if (o->teardown)
        o->teardown();
    ck_assert_int_gt(total, 0);
    int64_t swept = 0, clean = 0, survived = 0;
    const int64_t k = stride();
    for (int64_t n = 1; n <= total; n += n < 16 ? 1 : k) { /* the first 16 always */
        if (o->setup)
            o->setup();
        arm(n);
        st = o->run();
        disarm();
        swept++;
        if (st == R1_OK) {
            /* a failure the operation recovered from (a cache that does without, say) */
            survived++;
            if (getenv("R1_ALLOC_FAIL_TRACE") != NULL)
                fprintf(stderr, "-- %s recovered from allocation %lld failing\n", o->name,
                        (long long)n);
            if (o->undo)
                o->undo();
        } else {
            ck_assert_msg(st == R1_ERR_NO_MEMORY, "%s, allocation %lld of %lld failing: %s (%s)",
                          o->name, (long long)n, (long long)total, r1_status_name(st),
                          r1_last_error());
            ck_assert_msg(r1_last_error()[0] != '\0', "%s, allocation %lld: no message", o->name,
                          (long long)n);
            clean++;
        }
        if (o->check)
            o->check();
        if (o->teardown)
            o->teardown();
    }
    printf("%-14s %4d sites, %5lld calls, %5lld swept: %lld R1_ERR_NO_MEMORY with a message, "
           "%lld recovered (R1_OK)\n",
           o->name, (int)n_sites, (long long)total, (long long)swept, (long long)clean,
           (long long)survived);
    fflush(stdout);
}

/* ---- the operations ------------------------------------------------------------------------- */

static const char *const prompt = "<|User|>What is 347 + 285?<|Assistant|><think>\n";
enum { GEN_TOKENS = 6, CONTEXT = 128 };

static r1_model *model, *survivor;
static r1_session *session;
static r1_sampler *sampler;

/* A model that answers: one token evaluated and sampled on a fresh session. */
static void model_works(r1_model *m)
{
    r1_session_opts *so = NULL;
    r1_session *s = NULL;
    ck_assert_int_eq(r1_session_opts_create(&so), R1_OK);
    ck_assert_int_eq(r1_session_opts_set_context(so, CONTEXT), R1_OK);
    ck_assert_msg(r1_session_create(&s, m, so) == R1_OK, "%s", r1_last_error());
    r1_session_opts_destroy(so);
    const int32_t ids[2] = {1, 2};
    ck_assert_msg(r1_session_eval(s, ids, 2) == R1_OK, "%s", r1_last_error());
    ck_assert_int_eq(r1_session_position(s), 2);
    r1_session_destroy(s);
}

static r1_model *load(void)
{
    r1_model *m = NULL;
    ck_assert_msg(r1_model_load(&m, R1_TEST_TINY_R1, NULL, NULL) == R1_OK, "%s", r1_last_error());
    return m;
}

/* load: the only model, so the shared pool starts (and stops) with it */
static r1_status load_run(void)
{
    return r1_model_load(&model, R1_TEST_TINY_R1, NULL, NULL);
}

static void load_undo(void)
{
    r1_model_destroy(model);
    model = NULL;
}

static void load_check(void)
{
    ck_assert_ptr_null(model);
    r1_model *m = load(); /* nothing global was left half-made */
    model_works(m);
    r1_model_destroy(m);
}

/* load with a thread count of its own: a pool of two, one of them started here */
static r1_status load_threads_run(void)
{
    r1_model_opts *mo = NULL;
    r1_status st = r1_model_opts_create(&mo);
    if (st == R1_OK && (st = r1_model_opts_set_threads(mo, 2)) == R1_OK)
        st = r1_model_load(&model, R1_TEST_TINY_R1, NULL, mo);
    r1_model_opts_destroy(mo);
    return st;
}

/* a second model while another one lives */
static void survivor_setup(void)
{
    survivor = load();
}

static void survivor_check(void)
{
    model_works(survivor);
}

static void survivor_teardown(void)
{
    r1_model_destroy(survivor);
    survivor = NULL;
}

static void load_second_check(void)
{
    ck_assert_ptr_null(model);
    survivor_check();
}

/* session creation on a live model */
static r1_status session_run(void)
{
    r1_session_opts *so = NULL;
    r1_status st = r1_session_opts_create(&so);
    if (st == R1_OK && (st = r1_session_opts_set_context(so, CONTEXT)) == R1_OK)
        st = r1_session_create(&session, survivor, so);
    r1_session_opts_destroy(so);
    return st;
}

static void session_undo(void)
{
    r1_session_destroy(session);
    session = NULL;
}

static void session_check(void)
{
    ck_assert_ptr_null(session);
    survivor_check();
}

/* generation: a fresh model each time, so every run loads the same experts; with an expert
 * budget of three experts (two per token), so that experts are also evicted and reloaded */
static uint64_t gen_expert_budget;

static void gen_setup(void)
{
    r1_model_opts *mo = NULL;
    ck_assert_int_eq(r1_model_opts_create(&mo), R1_OK);
    ck_assert_int_eq(r1_model_opts_set_expert_cache_bytes(mo, gen_expert_budget), R1_OK);
    ck_assert_msg(r1_model_load(&survivor, R1_TEST_TINY_R1, NULL, mo) == R1_OK, "%s",
                  r1_last_error());
    r1_model_opts_destroy(mo);
    r1_session_opts *so = NULL;
    ck_assert_int_eq(r1_session_opts_create(&so), R1_OK);
    ck_assert_int_eq(r1_session_opts_set_context(so, CONTEXT), R1_OK);
    ck_assert_msg(r1_session_create(&session, survivor, so) == R1_OK, "%s", r1_last_error());
    r1_session_opts_destroy(so);
    ck_assert_int_eq(r1_sampler_create(&sampler, 5), R1_OK);
}

static r1_status generate(void)
{
    r1_status st = r1_session_feed_text(session, prompt, strlen(prompt), R1_TOKENIZE_PARSE_SPECIAL);
    if (st == R1_OK)
        st = r1_session_begin(session, sampler, NULL);
    int32_t id = -1, kind, n = 0;
    while (st == R1_OK && n < GEN_TOKENS)
        if ((st = r1_session_step(session, &id, &kind)) == R1_OK && id >= 0)
            n++;
    return st == R1_DONE ? R1_OK : st;
}

/* a chat-rendered prompt and every generation option: token limit, reasoning budget (so the
 * session injects </think> and the bridge), a stop string */
static r1_status generate_with_opts(void)
{
    const int32_t role = R1_ROLE_USER;
    const char *text = "What is 12 + 34?";
    char rendered[256];
    size_t len = 0;
    r1_gen_opts *go = NULL;
    r1_status st = r1_chat_render(survivor, &role, &text, 1, 1, rendered, sizeof rendered, &len);
    if (st == R1_OK)
        st = r1_session_feed_text(session, rendered, len, R1_TOKENIZE_PARSE_SPECIAL);
    if (st == R1_OK)
        st = r1_gen_opts_create(&go);
    if (st == R1_OK)
        st = r1_gen_opts_set_max_tokens(go, 16);
    if (st == R1_OK)
        st = r1_gen_opts_set_think_budget(go, 3);
    if (st == R1_OK)
        st = r1_gen_opts_set_think_bridge(go, "\n\nSo:");
    if (st == R1_OK)
        st = r1_gen_opts_add_stop(go, "999");
    if (st == R1_OK)
        st = r1_session_begin(session, sampler, go);
    r1_gen_opts_destroy(go);
    int32_t id, kind;
    while (st == R1_OK)
        st = r1_session_step(session, &id, &kind);
    return st == R1_DONE ? R1_OK : st;
}

static void gen_check(void)
{
    /* the session that failed is usable again from a reset */
    ck_assert_msg(r1_session_reset(session) == R1_OK, "%s", r1_last_error());
    ck_assert_msg(generate() == R1_OK, "after a failed generation: %s", r1_last_error());
}

static void gen_teardown(void)
{
    r1_sampler_destroy(sampler);
    r1_session_destroy(session);
    r1_model_destroy(survivor);
    sampler = NULL;
    session = NULL;
    survivor = NULL;
}

/* saving a session in the middle of a generation and loading that state back into it: success
 * or failure, the session is then the saved one, byte for byte, and generates on */
static uint8_t *state_buf, *state_copy;
static size_t state_size;
static char state_path[64];

static void state_setup(void)
{
    gen_setup();
    ck_assert_int_eq(r1_session_feed_text(session, prompt, strlen(prompt), 0), R1_OK);
    ck_assert_int_eq(r1_session_begin(session, sampler, NULL), R1_OK);
    int32_t id;
    for (int i = 0; i < 3; i++)
        ck_assert_msg(r1_session_step(session, &id, NULL) == R1_OK, "%s", r1_last_error());
    ck_assert_int_eq(r1_session_save_to_buffer(session, NULL, 0, &state_size),
                     R1_ERR_BUFFER_TOO_SMALL);
    state_buf = malloc(state_size);
    state_copy = malloc(state_size);
    ck_assert(state_buf != NULL && state_copy != NULL);
    ck_assert_int_eq(r1_session_save_to_buffer(session, state_buf, state_size, &state_size), R1_OK);
    snprintf(state_path, sizeof state_path, "/tmp/r1-alloc-fail-%d.r1s", (int)getpid());
}

static r1_status state_buffer_run(void)
{
    size_t n = 0;
    r1_status st = r1_session_save_to_buffer(session, state_copy, state_size, &n);
    return st == R1_OK ? r1_session_load_from_buffer(session, state_buf, state_size, sampler) : st;
}

static r1_status state_file_run(void)
{
    r1_status st = r1_session_save(session, state_path);
    return st == R1_OK ? r1_session_load(session, state_path, sampler) : st;
}

static void state_check(void)
{
    size_t n = 0;
    ck_assert_int_eq(r1_session_save_to_buffer(session, state_copy, state_size, &n), R1_OK);
    ck_assert_uint_eq(n, state_size);
    ck_assert_msg(memcmp(state_copy, state_buf, n) == 0, "the session is not the saved one");
    int32_t id;
    ck_assert_msg(r1_session_step(session, &id, NULL) == R1_OK, "%s", r1_last_error());
}

static void state_teardown(void)
{
    unlink(state_path);
    free(state_buf);
    free(state_copy);
    state_buf = state_copy = NULL;
    gen_teardown();
}

/* conversion of a test checkpoint, quantising */
static char convert_dir[64], convert_out[96];

static const char *convert_src, *convert_rules;

static r1_status convert_run(void)
{
    return r1_convert(convert_src, convert_out, convert_rules, 1, 0, NULL, NULL);
}

static void convert_undo(void)
{
    ck_assert_int_eq(unlink(convert_out), 0);
}

static void convert_check(void)
{
    /* no output and no temporary left beside it */
    DIR *d = opendir(convert_dir);
    ck_assert_ptr_nonnull(d);
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        ck_assert_msg(e->d_name[0] == '.', "conversion left %s behind", e->d_name);
    closedir(d);
}

/* ---- the first model of a process ---------------------------------------------------------- */

/* Letters, digits and punctuation of several scripts and planes, so that a tokenizer whose
 * once-per-process Unicode tables came out wrong is seen to split it differently. */
static const char probe[] = "Hello, w\xc3\xb6rld! 347+285=632 \xd9\xa1\xd9\xa2\xd9\xa3 "
                            "\xe4\xbd\xa0\xe5\xa5\xbd\xe3\x80\x82 \xf0\x9d\x90\x80\xf0"
                            "\x9d\x90\x81 \xf0\xa0\x80\x80\xf0\xaa\x9b\x96 \xf0\x9e\xa4"
                            "\x80\xf0\x9e\xa5\x90 \xf3\xa0\x80\xa1 \xf4\x8f\xbf\xbd";

enum { PROBE_IDS = 256 };

typedef struct first_load_result {
    r1_status st, second_st;
    int64_t calls;
    int32_t sites;
    char error[200];
    size_t n_ids;
    int32_t ids[PROBE_IDS];
} first_load_result;

/* In a fresh child: the process's first load with allocation n failing, then the tokenizer's
 * answer on the probe from that model or, when the load failed, from a second load. */
static first_load_result first_load_child(int64_t n)
{
    first_load_result r;
    memset(&r, 0, sizeof r);
    r1_model *m = NULL;
    n_sites = 0;
    arm(n);
    r.st = r1_model_load(&m, R1_TEST_TINY_R1, NULL, NULL);
    r.calls = disarm();
    r.sites = n_sites;
    snprintf(r.error, sizeof r.error, "%s", r1_last_error());
    r.second_st = r.st == R1_OK ? R1_OK : r1_model_load(&m, R1_TEST_TINY_R1, NULL, NULL);
    if (r.second_st == R1_OK &&
        r1_tokenize(m, probe, sizeof probe - 1, 0, r.ids, PROBE_IDS, &r.n_ids) != R1_OK)
        r.n_ids = (size_t)-1;
    r1_model_destroy(m);
    return r;
}

static first_load_result first_load(int64_t n)
{
    int fd[2];
    ck_assert_int_eq(pipe(fd), 0);
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(fd[0]);
        first_load_result r = first_load_child(n);
        ssize_t w = write(fd[1], &r, sizeof r);
        exit(w == (ssize_t)sizeof r ? 0 : 3); /* through exit(): LeakSanitizer checks the child */
    }
    close(fd[1]);
    first_load_result r;
    size_t got = 0;
    for (ssize_t k; got < sizeof r && (k = read(fd[0], (char *)&r + got, sizeof r - got)) > 0;)
        got += (size_t)k;
    close(fd[0]);
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0 && got == sizeof r,
                  "first load with allocation %lld failing: the child %s %d", (long long)n,
                  WIFSIGNALED(status) ? "died of signal" : "exited with",
                  WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
    return r;
}

START_TEST(test_alloc_fail_first_load)
{
    const first_load_result want = first_load(0);
    ck_assert_msg(want.st == R1_OK, "%s", want.error);
    ck_assert_uint_gt(want.n_ids, 0);
    /* this sweep forks a process per n: a coarser subset in CI */
    const int64_t k = stride() > 1 ? 16 * stride() : 1;
    int64_t swept = 0, clean = 0, survived = 0;
    for (int64_t n = 1; n <= want.calls; n += n < 16 ? 1 : k) {
        const first_load_result r = first_load(n);
        swept++;
        if (r.st == R1_OK) {
            survived++;
        } else {
            ck_assert_msg(r.st == R1_ERR_NO_MEMORY && r.error[0] != '\0',
                          "first load, allocation %lld of %lld failing: %s (%s)", (long long)n,
                          (long long)want.calls, r1_status_name(r.st), r.error);
            clean++;
        }
        ck_assert_msg(r.second_st == R1_OK,
                      "first load, allocation %lld failing: a second load "
                      "failed too",
                      (long long)n);
        ck_assert_msg(r.n_ids == want.n_ids &&
                          memcmp(r.ids, want.ids, want.n_ids * sizeof *want.ids) == 0,
                      "first load, allocation %lld of %lld failing (%s): the "
                      "probe tokenizes differently afterwards",
                      (long long)n, (long long)want.calls, r1_status_name(r.st));
    }
    printf("%-14s %4d sites, %5lld calls, %5lld swept: %lld R1_ERR_NO_MEMORY with a message, "
           "%lld recovered (R1_OK); the same tokens after each\n",
           "first-load", (int)want.sites, (long long)want.calls, (long long)swept, (long long)clean,
           (long long)survived);
    fflush(stdout);
}
END_TEST

START_TEST(test_alloc_fail_load)
{
    const op o = {.name = "load", .run = load_run, .undo = load_undo, .check = load_check};
    sweep(&o);
    const op t = {
        .name = "load+threads", .run = load_threads_run, .undo = load_undo, .check = load_check};
    sweep(&t);
    const op second = {.name = "load-second",
                       .setup = survivor_setup,
                       .run = load_run,
                       .undo = load_undo,
                       .check = load_second_check,
                       .teardown = survivor_teardown};
    sweep(&second);
}
END_TEST

START_TEST(test_alloc_fail_session)
{
    const op o = {.name = "session",
                  .setup = survivor_setup,
                  .run = session_run,
                  .undo = session_undo,
                  .check = session_check,
                  .teardown = survivor_teardown};
    sweep(&o);
}
END_TEST

START_TEST(test_alloc_fail_generate)
{
    const op o = {.name = "generate",
                  .setup = gen_setup,
                  .run = generate,
                  .check = gen_check,
                  .teardown = gen_teardown};
    sweep(&o);
    const op g = {.name = "generate+opts",
                  .setup = gen_setup,
                  .run = generate_with_opts,
                  .check = gen_check,
                  .teardown = gen_teardown};
    sweep(&g);
    gen_expert_budget = 3 * 49152; /* tiny-r1's experts are 48 KiB, two per token */
    const op b = {.name = "generate+evict",
                  .setup = gen_setup,
                  .run = generate_with_opts,
                  .check = gen_check,
                  .teardown = gen_teardown};
    sweep(&b);
    gen_expert_budget = 0;
}
END_TEST

START_TEST(test_alloc_fail_session_state)
{
    const op b = {.name = "state-buffer",
                  .setup = state_setup,
                  .run = state_buffer_run,
                  .check = state_check,
                  .teardown = state_teardown};
    sweep(&b);
    const op f = {.name = "state-file",
                  .setup = state_setup,
                  .run = state_file_run,
                  .check = state_check,
                  .teardown = state_teardown};
    sweep(&f);
}
END_TEST

START_TEST(test_alloc_fail_convert)
{
    snprintf(convert_dir, sizeof convert_dir, "/tmp/r1-alloc-fail-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(convert_dir));
    snprintf(convert_out, sizeof convert_out, "%s/out.r1m", convert_dir);
    /* V3 (three shards) quantised; V2-Lite with mixed rules */
    convert_src = R1_TEST_DATA_DIR "/tiny-v3";
    convert_rules = "q8_0";
    const op o = {
        .name = "convert", .run = convert_run, .undo = convert_undo, .check = convert_check};
    sweep(&o);
    convert_src = R1_TEST_DATA_DIR "/tiny-v2lite";
    convert_rules = "experts=q4_0,attn=keep";
    const op v2 = {
        .name = "convert-v2", .run = convert_run, .undo = convert_undo, .check = convert_check};
    sweep(&v2);
    ck_assert_int_eq(rmdir(convert_dir), 0);
}
END_TEST

static Suite *alloc_fail_suite(void)
{
    Suite *s = suite_create("alloc_fail");
    TCase *tc = tcase_create("sweep");
    tcase_set_timeout(tc, 1800);
    tcase_add_test(tc, test_alloc_fail_first_load);
    tcase_add_test(tc, test_alloc_fail_load);
    tcase_add_test(tc, test_alloc_fail_session);
    tcase_add_test(tc, test_alloc_fail_generate);
    tcase_add_test(tc, test_alloc_fail_session_state);
    tcase_add_test(tc, test_alloc_fail_convert);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    setenv("R1_NUM_THREADS", "1", 1); /* every op's work on the armed thread */
    SRunner *sr = srunner_create(alloc_fail_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
