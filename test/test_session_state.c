/* test_session_state.c: saved sessions and samplers (r1_session_save/load, the buffer forms,
 * r1_sampler_save/load_to/from_buffer): bit-identical continuation on the tiny V3 (latent cache)
 * and Qwen2 (grouped-query cache) models, refusals of another model, context or cache type and of
 * damaged or truncated files with the session left as it was, the file written atomically, and
 * argument checks. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "file_testutil.h"
#include "r1.h"

enum { MAX_STEPS = 64, VOCAB_MAX = 4096, CTX = 256 };

static char tmp_dir[256];

static void load_model(r1_model **m, const char *name)
{
    const char *dir = getenv("R1_TEST_MODELS_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.r1m", dir ? dir : R1_TEST_MODELS_DIR, name);
    ck_assert_msg(r1_model_load(m, path, NULL, NULL) == R1_OK, "%s: %s", path, r1_last_error());
}

static r1_session *new_session(r1_model *m, int32_t n_ctx, const char *cache_type)
{
    r1_session_opts *o = NULL;
    ck_assert_int_eq(r1_session_opts_create(&o), R1_OK);
    ck_assert_int_eq(r1_session_opts_set_context(o, n_ctx), R1_OK);
    if (cache_type != NULL)
        ck_assert_int_eq(r1_session_opts_set_cache_type(o, cache_type), R1_OK);
    r1_session *s = NULL;
    ck_assert_msg(r1_session_create(&s, m, o) == R1_OK, "%s", r1_last_error());
    r1_session_opts_destroy(o);
    return s;
}

/* A sampler that uses every kind of state it has: random draws (temperature > 0), every filter,
 * the penalty window and a logit bias (EOS banned, so the untrained model keeps writing). */
static r1_sampler *busy_sampler(r1_model *m, uint64_t seed)
{
    r1_sampler *smp = NULL;
    ck_assert_int_eq(r1_sampler_create(&smp, seed), R1_OK);
    ck_assert_int_eq(r1_sampler_set_temperature(smp, 0.9f), R1_OK);
    ck_assert_int_eq(r1_sampler_set_top_k(smp, 60), R1_OK);
    ck_assert_int_eq(r1_sampler_set_top_p(smp, 0.97f), R1_OK);
    ck_assert_int_eq(r1_sampler_set_min_p(smp, 0.001f), R1_OK);
    ck_assert_int_eq(r1_sampler_set_penalties(smp, 16, 1.1f, 0.05f, 0.05f), R1_OK);
    ck_assert_int_eq(r1_sampler_set_logit_bias(smp, r1_token_eos(m), -INFINITY), R1_OK);
    ck_assert_int_eq(r1_sampler_set_logit_bias(smp, 7, 0.5f), R1_OK);
    return smp;
}

/* A prompt longer than one step's 64 prompt tokens, so a save can fall inside the prompt. */
static void feed_prompt(r1_session *s)
{
    char prompt[2048] = "<｜begin▁of▁sentence｜><｜User｜>";
    for (int i = 0; i < 4; i++) /* about 80 tokens */
        strcat(prompt, "What is 2+2 and then 3+3? ");
    strcat(prompt, "<｜Assistant｜><think>\n");
    ck_assert_msg(r1_session_feed_text(s, prompt, strlen(prompt), R1_TOKENIZE_PARSE_SPECIAL) ==
                      R1_OK,
                  "%s", r1_last_error());
}

/* The generation options: a thinking budget (its forced </think> and bridge are state a save
 * can fall into) and a stop string that holds text back. */
static r1_gen_opts *gen_opts(void)
{
    r1_gen_opts *o = NULL;
    ck_assert_int_eq(r1_gen_opts_create(&o), R1_OK);
    ck_assert_int_eq(r1_gen_opts_set_think_budget(o, 6), R1_OK);
    ck_assert_int_eq(r1_gen_opts_add_stop(o, "qqqqq"), R1_OK);
    return o;
}

/* What n steps produced: statuses, ids, kinds, text and each step's logits. */
typedef struct trace {
    int n;
    r1_status st[MAX_STEPS];
    int32_t id[MAX_STEPS], kind[MAX_STEPS];
    char text[8192];
    float *logits; /* (n, vocab); NaN rows where none were available */
    size_t vocab;
    int32_t position, counts[3];
} trace;

static void run_steps(r1_session *s, int n, trace *t)
{
    memset(t, 0, sizeof *t);
    t->logits = calloc((size_t)n * VOCAB_MAX, sizeof(float));
    ck_assert_ptr_nonnull(t->logits);
    for (int i = 0; i < n; i++) {
        r1_status st = r1_session_step(s, &t->id[i], &t->kind[i]);
        t->st[i] = st;
        t->n = i + 1;
        const char *piece;
        size_t len;
        ck_assert_int_eq(r1_session_piece(s, &piece, &len), R1_OK);
        strncat(t->text, piece, sizeof t->text - strlen(t->text) - 1);
        const float *row;
        size_t vocab = 0;
        if (r1_session_logits(s, -1, &row, &vocab) == R1_OK) {
            ck_assert_uint_le(vocab, VOCAB_MAX);
            memcpy(t->logits + (size_t)i * VOCAB_MAX, row, vocab * sizeof(float));
            t->vocab = vocab;
        } else {
            t->logits[(size_t)i * VOCAB_MAX] = NAN;
        }
        ck_assert_msg(st == R1_OK || st == R1_DONE, "step %d: %s", i, r1_last_error());
        if (st != R1_OK)
            break;
    }
    t->position = r1_session_position(s);
    ck_assert_int_eq(r1_session_counts(s, &t->counts[0], &t->counts[1], &t->counts[2]), R1_OK);
}

static void assert_same_trace(const trace *a, const trace *b)
{
    ck_assert_int_eq(a->n, b->n);
    for (int i = 0; i < a->n; i++) {
        ck_assert_int_eq(a->st[i], b->st[i]);
        ck_assert_int_eq(a->id[i], b->id[i]);
        ck_assert_int_eq(a->kind[i], b->kind[i]);
        ck_assert_msg(memcmp(a->logits + (size_t)i * VOCAB_MAX, b->logits + (size_t)i * VOCAB_MAX,
                             VOCAB_MAX * sizeof(float)) == 0,
                      "step %d: logits differ", i);
    }
    ck_assert_str_eq(a->text, b->text);
    ck_assert_int_eq(a->position, b->position);
    for (int k = 0; k < 3; k++)
        ck_assert_int_eq(a->counts[k], b->counts[k]);
}

/* The session's state as bytes (malloc'd). */
static uint8_t *snapshot(const r1_session *s, size_t *size)
{
    ck_assert_int_eq(r1_session_save_to_buffer(s, NULL, 0, size), R1_ERR_BUFFER_TOO_SMALL);
    uint8_t *buf = malloc(*size);
    ck_assert_ptr_nonnull(buf);
    size_t again = 0;
    ck_assert_msg(r1_session_save_to_buffer(s, buf, *size, &again) == R1_OK, "%s", r1_last_error());
    ck_assert_uint_eq(again, *size);
    return buf;
}

static void assert_unchanged(const r1_session *s, const uint8_t *before, size_t size)
{
    size_t now_size = 0;
    uint8_t *now = snapshot(s, &now_size);
    ck_assert_uint_eq(now_size, size);
    ck_assert_msg(memcmp(now, before, size) == 0, "the session changed");
    free(now);
}

static void write_file(const char *path, const uint8_t *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

static void make_tmp_dir(void)
{
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/r1-session-state-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmp_dir));
}

static void remove_tmp_dir(void)
{
    DIR *d = opendir(tmp_dir);
    if (d == NULL)
        return;
    struct dirent *e;
    char path[512];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", tmp_dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(tmp_dir);
}

static int count_dir_entries(void)
{
    DIR *d = opendir(tmp_dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

/* ---- bit-identical continuation ----------------------------------------------------------- */

/* Generates save_at steps, saves (to a buffer or a file), continues 20 steps; then a fresh
 * session with a fresh sampler of another seed restores the state and steps 20 times: same
 * statuses, ids, text and memcmp-equal logits. The original session also restores itself. */
static void check_continuation(const char *model_name, const char *cache_type, int save_at,
                               int to_file)
{
    r1_model *m = NULL;
    load_model(&m, model_name);
    r1_session *a = new_session(m, CTX, cache_type);
    r1_sampler *sa = busy_sampler(m, 1234);
    feed_prompt(a);
    r1_gen_opts *o = gen_opts();
    ck_assert_int_eq(r1_session_begin(a, sa, o), R1_OK);
    r1_gen_opts_destroy(o);
    trace before, ref, got;
    run_steps(a, save_at, &before);
    ck_assert_int_eq(before.st[before.n - 1], R1_OK);
    char path[512];
    snprintf(path, sizeof path, "%s/state.r1s", tmp_dir);
    size_t size = 0;
    uint8_t *buf = NULL;
    if (to_file)
        ck_assert_msg(r1_session_save(a, path) == R1_OK, "%s", r1_last_error());
    else
        buf = snapshot(a, &size);
    run_steps(a, 20, &ref);

    r1_session *b = new_session(m, CTX, cache_type);
    r1_sampler *sb = NULL;
    ck_assert_int_eq(r1_sampler_create(&sb, 99), R1_OK); /* its settings come from the file */
    r1_status st =
        to_file ? r1_session_load(b, path, sb) : r1_session_load_from_buffer(b, buf, size, sb);
    ck_assert_msg(st == R1_OK, "%s", r1_last_error());
    run_steps(b, 20, &got);
    assert_same_trace(&ref, &got);
    free(got.logits);

    /* Back in time: the original session restores its earlier self and repeats itself. */
    st = to_file ? r1_session_load(a, path, sa) : r1_session_load_from_buffer(a, buf, size, sa);
    ck_assert_msg(st == R1_OK, "%s", r1_last_error());
    run_steps(a, 20, &got);
    assert_same_trace(&ref, &got);

    free(before.logits);
    free(ref.logits);
    free(got.logits);
    free(buf);
    r1_sampler_destroy(sa);
    r1_sampler_destroy(sb);
    r1_session_destroy(a);
    r1_session_destroy(b);
    r1_model_destroy(m);
}

/* Save points: inside the prompt (step 1 of a >64-token prompt), just after it, around the
 * thinking budget's forced </think> and bridge (6 reasoning tokens), and in the answer. */
static const int save_points[] = {1, 3, 8, 9, 10, 14};

START_TEST(test_session_state_continues_bit_identically_v3)
{
    for (size_t i = 0; i < sizeof save_points / sizeof *save_points; i++)
        check_continuation("tiny-v3-src", NULL, save_points[i], (int)(i & 1));
}
END_TEST

/* The q8_0 latent cache: its rows are saved as they are (quantised), not as f32. */
START_TEST(test_session_state_continues_bit_identically_v3_q8_0)
{
    for (size_t i = 0; i < sizeof save_points / sizeof *save_points; i++)
        check_continuation("tiny-v3-src", "q8_0", save_points[i], (int)(i & 1));
}
END_TEST

START_TEST(test_session_state_continues_bit_identically_qwen2)
{
    static const char *const types[] = {"f16", "q8_0", "f32"};
    for (size_t t = 0; t < 3; t++)
        for (size_t i = 0; i < sizeof save_points / sizeof *save_points; i++)
            check_continuation("tiny-qwen2-src", types[t], save_points[i], (int)((i + t) & 1));
}
END_TEST

/* Outside a generation: the cache, tokens and logits; evaluating on gives the same logits, and a
 * sampler saved alone draws the same ids. */
START_TEST(test_session_state_eval_and_sampler_alone)
{
    r1_model *m = NULL;
    load_model(&m, "tiny-v3-src");
    r1_session *a = new_session(m, CTX, NULL);
    int32_t ids[40];
    for (int i = 0; i < 40; i++)
        ids[i] = (i * 37 + 11) % 300;
    ck_assert_int_eq(r1_session_eval(a, ids, 30), R1_OK);
    r1_sampler *sa = busy_sampler(m, 5);
    const float *row;
    size_t vocab;
    int32_t id;
    for (int i = 0; i < 5; i++) { /* some history and draws */
        ck_assert_int_eq(r1_session_logits(a, -1, &row, &vocab), R1_OK);
        ck_assert_int_eq(r1_sampler_sample(sa, row, vocab, &id), R1_OK);
        ck_assert_int_eq(r1_sampler_accept(sa, id), R1_OK);
    }
    size_t size = 0, ssize = 0;
    uint8_t *buf = snapshot(a, &size);
    ck_assert_int_eq(r1_sampler_save_to_buffer(sa, NULL, 0, &ssize), R1_ERR_BUFFER_TOO_SMALL);
    uint8_t *sbuf = malloc(ssize);
    ck_assert_int_eq(r1_sampler_save_to_buffer(sa, sbuf, ssize, &ssize), R1_OK);

    r1_session *b = new_session(m, CTX, NULL);
    ck_assert_int_eq(r1_session_logits(b, -1, &row, &vocab), R1_ERR_BAD_STATE);
    ck_assert_msg(r1_session_load_from_buffer(b, buf, size, NULL) == R1_OK, "%s", r1_last_error());
    ck_assert_int_eq(r1_session_position(b), 30);
    const float *ra, *rb;
    ck_assert_int_eq(r1_session_logits(a, -1, &ra, &vocab), R1_OK);
    ck_assert_int_eq(r1_session_logits(b, -1, &rb, &vocab), R1_OK);
    ck_assert(memcmp(ra, rb, vocab * sizeof(float)) == 0);
    r1_sampler *sb = NULL;
    ck_assert_int_eq(r1_sampler_create(&sb, 77), R1_OK);
    ck_assert_int_eq(r1_sampler_load_from_buffer(sb, sbuf, ssize), R1_OK);
    for (int i = 30; i < 40; i++) {
        int32_t id_a, id_b;
        ck_assert_int_eq(r1_session_logits(a, -1, &ra, &vocab), R1_OK);
        ck_assert_int_eq(r1_session_logits(b, -1, &rb, &vocab), R1_OK);
        ck_assert(memcmp(ra, rb, vocab * sizeof(float)) == 0);
        ck_assert_int_eq(r1_sampler_sample(sa, ra, vocab, &id_a), R1_OK);
        ck_assert_int_eq(r1_sampler_sample(sb, rb, vocab, &id_b), R1_OK);
        ck_assert_int_eq(id_a, id_b);
        ck_assert_int_eq(r1_sampler_accept(sa, id_a), R1_OK);
        ck_assert_int_eq(r1_sampler_accept(sb, id_b), R1_OK);
        ck_assert_int_eq(r1_session_eval(a, &ids[i], 1), R1_OK);
        ck_assert_int_eq(r1_session_eval(b, &ids[i], 1), R1_OK);
    }
    /* A generation begun on the restored session continues from its logits at once. */
    ck_assert_int_eq(r1_session_begin(b, sb, NULL), R1_OK);
    ck_assert_int_eq(r1_session_step(b, &id, NULL), R1_OK);
    ck_assert_int_ge(id, 0);
    free(buf);
    free(sbuf);
    r1_sampler_destroy(sa);
    r1_sampler_destroy(sb);
    r1_session_destroy(a);
    r1_session_destroy(b);
    r1_model_destroy(m);
}
END_TEST

/* ---- refusals leave the session as it was ------------------------------------------------- */

/* A session in the middle of a generation, to load into. */
static r1_session *busy_session(r1_model *m, int32_t n_ctx, const char *cache_type,
                                r1_sampler **smp)
{
    r1_session *s = new_session(m, n_ctx, cache_type);
    *smp = busy_sampler(m, 3);
    feed_prompt(s);
    ck_assert_int_eq(r1_session_begin(s, *smp, NULL), R1_OK);
    trace t;
    run_steps(s, 5, &t);
    free(t.logits);
    return s;
}

/* The refused load leaves the session byte for byte as it was, and it goes on generating. */
static void assert_refused(r1_session *s, r1_sampler *smp, const uint8_t *data, size_t n,
                           const char *path, r1_status want, const char *msg_part)
{
    size_t size = 0, ssize = 0, ssize2 = 0;
    uint8_t *before = snapshot(s, &size);
    uint8_t sbefore[4096], safter[4096];
    ck_assert_int_eq(r1_sampler_save_to_buffer(smp, sbefore, sizeof sbefore, &ssize), R1_OK);
    r1_status st;
    if (path != NULL) {
        write_file(path, data, n);
        st = r1_session_load(s, path, smp);
    } else {
        st = r1_session_load_from_buffer(s, data, n, smp);
    }
    ck_assert_msg(want == 0 ? st < 0 : st == want, "got %s (%s), want %s", r1_status_name(st),
                  r1_last_error(), want == 0 ? "a failure" : r1_status_name(want));
    ck_assert_str_ne(r1_last_error(), "");
    if (msg_part != NULL)
        ck_assert_msg(strstr(r1_last_error(), msg_part) != NULL, "'%s' lacks '%s'", r1_last_error(),
                      msg_part);
    assert_unchanged(s, before, size);
    ck_assert_int_eq(r1_sampler_save_to_buffer(smp, safter, sizeof safter, &ssize2), R1_OK);
    ck_assert_uint_eq(ssize, ssize2);
    ck_assert(memcmp(sbefore, safter, ssize) == 0);
    free(before);
}

static void assert_still_generates(r1_session *s)
{
    int32_t id;
    ck_assert_msg(r1_session_step(s, &id, NULL) == R1_OK, "%s", r1_last_error());
    ck_assert_int_ge(id, 0);
}

START_TEST(test_session_state_refuses_another_model_context_or_cache)
{
    r1_model *v3 = NULL, *v3q = NULL, *qwen = NULL;
    load_model(&v3, "tiny-v3-src");
    load_model(&v3q, "tiny-v3-q8_0"); /* the same shapes: only the model id tells them apart */
    load_model(&qwen, "tiny-qwen2-src");
    r1_sampler *s1, *s2, *s3, *s4, *s5;
    r1_session *a = busy_session(v3, CTX, NULL, &s1);
    size_t n = 0;
    uint8_t *state = snapshot(a, &n);
    char path[512];
    snprintf(path, sizeof path, "%s/state.r1s", tmp_dir);

    r1_session *other = busy_session(v3q, CTX, NULL, &s2);
    assert_refused(other, s2, state, n, NULL, R1_ERR_INVALID_ARG, "another model");
    assert_refused(other, s2, state, n, path, R1_ERR_INVALID_ARG, "another model");
    assert_still_generates(other);
    r1_session *dense = busy_session(qwen, CTX, NULL, &s3);
    assert_refused(dense, s3, state, n, NULL, R1_ERR_INVALID_ARG, "another model");
    assert_still_generates(dense);
    r1_session *shorter = busy_session(v3, CTX / 2, NULL, &s4);
    assert_refused(shorter, s4, state, n, path, R1_ERR_INVALID_ARG, "context length");
    assert_still_generates(shorter);

    /* The dense cache's types: an f16 state does not go into a q8_0 session. */
    size_t dn = 0;
    uint8_t *dstate = snapshot(dense, &dn);
    r1_session *q8 = busy_session(qwen, CTX, "q8_0", &s5);
    assert_refused(q8, s5, dstate, dn, NULL, R1_ERR_INVALID_ARG, "cache type");
    assert_still_generates(q8);

    /* Nor an f32 latent state into a session with a q8_0 latent cache. */
    r1_sampler *s7;
    r1_session *lat_q8 = busy_session(v3, CTX, "q8_0", &s7);
    assert_refused(lat_q8, s7, state, n, NULL, R1_ERR_INVALID_ARG, "cache type");
    assert_still_generates(lat_q8);
    r1_session_destroy(lat_q8);
    r1_sampler_destroy(s7);

    /* A generation in the file needs a sampler to continue with. */
    r1_sampler *s6;
    r1_session *same = busy_session(v3, CTX, NULL, &s6);
    size_t same_n = 0;
    uint8_t *same_before = snapshot(same, &same_n);
    ck_assert_int_eq(r1_session_load_from_buffer(same, state, n, NULL), R1_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "sampler"));
    assert_unchanged(same, same_before, same_n);
    free(same_before);
    free(state);
    free(dstate);
    r1_session_destroy(same);
    r1_session_destroy(a);
    r1_session_destroy(other);
    r1_session_destroy(dense);
    r1_session_destroy(shorter);
    r1_session_destroy(q8);
    r1_sampler_destroy(s1);
    r1_sampler_destroy(s2);
    r1_sampler_destroy(s3);
    r1_sampler_destroy(s4);
    r1_sampler_destroy(s5);
    r1_sampler_destroy(s6);
    r1_model_destroy(v3);
    r1_model_destroy(v3q);
    r1_model_destroy(qwen);
}
END_TEST

/* The section boundaries of a file, read from its directory (docs/format.md). */
static size_t boundaries(const uint8_t *f, size_t n, size_t *at)
{
    size_t k = 0;
    uint32_t n_sections = (uint32_t)f[60] | (uint32_t)f[61] << 8;
    at[k++] = 0;
    at[k++] = 128;
    for (uint32_t i = 0; i < n_sections; i++) {
        const uint8_t *e = f + 128 + 32 * i;
        uint64_t off = 0;
        for (int b = 7; b >= 0; b--)
            off = off << 8 | e[8 + b];
        at[k++] = (size_t)off;
    }
    at[k++] = n;
    return k;
}

START_TEST(test_session_state_refuses_damaged_and_truncated)
{
    r1_model *m = NULL;
    load_model(&m, "tiny-v3-src");
    r1_sampler *sa, *sb;
    r1_session *a = busy_session(m, CTX / 2, NULL, &sa);
    r1_session *b = busy_session(m, CTX / 2, NULL, &sb);
    size_t n = 0;
    uint8_t *state = snapshot(a, &n);
    uint8_t *bad = malloc(n + 1);
    char path[512];
    snprintf(path, sizeof path, "%s/damaged.r1s", tmp_dir);

    /* Every byte is under a checksum: one flipped anywhere is refused. Each byte of the header
     * and directory, and a stride over the sections (every byte would take minutes under ASan). */
    size_t at[16];
    const size_t n_at = boundaries(state, n, at);
    ck_assert_uint_ge(n_at, 7); /* header, directory, 5 sections at least */
    for (size_t i = 0; i < n; i += i < at[2] + 64 ? 1 : 61) {
        memcpy(bad, state, n);
        bad[i] ^= (uint8_t)(1u << (i % 8));
        assert_refused(b, sb, bad, n, (i % 5 == 0) ? path : NULL, 0, NULL);
    }
    /* Cut at every section boundary and a byte either side, and one byte too many. */
    for (size_t k = 0; k < n_at; k++)
        for (int d = -1; d <= 1; d++) {
            const long cut = (long)at[k] + d;
            if (cut < 0 || (size_t)cut >= n)
                continue;
            assert_refused(b, sb, state, (size_t)cut, (k & 1) ? path : NULL, R1_ERR_FORMAT, NULL);
        }
    memcpy(bad, state, n);
    bad[n] = 0;
    assert_refused(b, sb, bad, n + 1, NULL, R1_ERR_FORMAT, "trailing");
    assert_refused(b, sb, state, n - 1, path, R1_ERR_FORMAT, "truncated");
    /* A later major version is refused as such (before the header checksum, which may be
     * computed differently there). */
    ck_assert_int_eq(memcmp(state, "\x89R1S\r\n\x1a\n", 8), 0);
    ck_assert_int_eq(state[8] | state[9] << 8, 1);
    memcpy(bad, state, n);
    bad[8] = 2;
    assert_refused(b, sb, bad, n, NULL, R1_ERR_UNSUPPORTED, "version 2.0");
    assert_still_generates(b);
    free(bad);
    free(state);
    r1_session_destroy(a);
    r1_session_destroy(b);
    r1_sampler_destroy(sa);
    r1_sampler_destroy(sb);
    r1_model_destroy(m);
}
END_TEST

/* ---- files -------------------------------------------------------------------------------- */

START_TEST(test_session_state_file_is_replaced_atomically)
{
    r1_model *m = NULL;
    load_model(&m, "tiny-qwen2-src");
    r1_sampler *smp;
    r1_session *s = busy_session(m, CTX / 2, NULL, &smp);
    char path[512];
    snprintf(path, sizeof path, "%s/save.r1s", tmp_dir);
    const uint8_t old[] = "an older file";
    write_file(path, old, sizeof old);

    /* A write that fails half-way (the file size limit, EFBIG) leaves the old file and no
     * temporary one. */
    struct rlimit saved, small = {.rlim_cur = 4096, .rlim_max = RLIM_INFINITY};
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &saved), 0);
    small.rlim_max = saved.rlim_max;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &small), 0);
    r1_status st = r1_session_save(s, path);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &saved), 0);
    signal(SIGXFSZ, prev);
    ck_assert_int_eq(st, R1_ERR_IO);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), path));
    size_t n = 0;
    uint8_t *now = (uint8_t *)tu_read_file(path, &n);
    ck_assert_uint_eq(n, sizeof old);
    ck_assert(memcmp(now, old, n) == 0);
    free(now);
    ck_assert_int_eq(count_dir_entries(), 1);

    /* Then it succeeds, replacing the file with exactly the buffer form's bytes. */
    ck_assert_msg(r1_session_save(s, path) == R1_OK, "%s", r1_last_error());
    ck_assert_int_eq(count_dir_entries(), 1);
    size_t bn = 0;
    uint8_t *buf = snapshot(s, &bn);
    now = (uint8_t *)tu_read_file(path, &n);
    ck_assert_uint_eq(n, bn);
    ck_assert(memcmp(now, buf, n) == 0);
    free(now);
    free(buf);

    /* Paths that cannot work. */
    char missing[600];
    snprintf(missing, sizeof missing, "%s/no/such/dir/x.r1s", tmp_dir);
    ck_assert_int_eq(r1_session_save(s, missing), R1_ERR_IO);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), missing));
    ck_assert_int_eq(r1_session_load(s, missing, smp), R1_ERR_NOT_FOUND);
    ck_assert_int_eq(r1_session_load(s, tmp_dir, smp), R1_ERR_IO);
    ck_assert_int_eq(r1_session_save(s, tmp_dir), R1_ERR_IO);
    assert_still_generates(s);
    r1_session_destroy(s);
    r1_sampler_destroy(smp);
    r1_model_destroy(m);
}
END_TEST

/* ---- arguments ---------------------------------------------------------------------------- */

START_TEST(test_session_state_checks_arguments)
{
    r1_model *m = NULL;
    load_model(&m, "tiny-v3-src");
    r1_session *s = new_session(m, 32, NULL);
    r1_sampler *smp = NULL;
    ck_assert_int_eq(r1_sampler_create(&smp, 1), R1_OK);
    uint8_t buf[256];
    size_t size = 0;
    ck_assert_int_eq(r1_session_save(NULL, "x"), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_session_save(s, NULL), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_session_save(s, ""), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_session_save_to_buffer(NULL, buf, sizeof buf, &size), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_session_save_to_buffer(s, buf, sizeof buf, NULL), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_session_save_to_buffer(s, NULL, 8, &size), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_session_save_to_buffer(s, buf, 16, &size), R1_ERR_BUFFER_TOO_SMALL);
    ck_assert_uint_gt(size, 16);
    ck_assert_int_eq(r1_session_load(NULL, "x", smp), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_session_load(s, NULL, smp), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_session_load_from_buffer(NULL, buf, 8, smp), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_session_load_from_buffer(s, NULL, 8, smp), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_session_load_from_buffer(s, NULL, 0, smp), R1_ERR_FORMAT);
    ck_assert_int_eq(r1_session_load_from_buffer(s, "not a session", 13, smp), R1_ERR_FORMAT);
    ck_assert_int_eq(r1_sampler_save_to_buffer(NULL, buf, sizeof buf, &size), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_sampler_save_to_buffer(smp, buf, sizeof buf, NULL), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_sampler_save_to_buffer(smp, NULL, 4, &size), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_sampler_save_to_buffer(smp, buf, 8, &size), R1_ERR_BUFFER_TOO_SMALL);
    ck_assert_uint_gt(size, 8);
    ck_assert_uint_le(size, sizeof buf);
    ck_assert_int_eq(r1_sampler_load_from_buffer(NULL, buf, 8), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_sampler_load_from_buffer(smp, NULL, 8), R1_ERR_INVALID_ARG);
    /* A damaged sampler blob is refused and the sampler keeps its settings. */
    ck_assert_int_eq(r1_sampler_set_temperature(smp, 0.0f), R1_OK);
    ck_assert_int_eq(r1_sampler_save_to_buffer(smp, buf, sizeof buf, &size), R1_OK);
    buf[50] ^= 1;
    ck_assert_int_eq(r1_sampler_load_from_buffer(smp, buf, size), R1_ERR_CHECKSUM);
    ck_assert_int_lt(r1_sampler_load_from_buffer(smp, buf, size - 1), 0);
    ck_assert_int_eq(r1_sampler_load_from_buffer(smp, buf, 10), R1_ERR_FORMAT);
    const float logits[4] = {0.0f, 3.0f, 1.0f, 2.0f};
    int32_t id;
    ck_assert_int_eq(r1_sampler_sample(smp, logits, 4, &id), R1_OK);
    ck_assert_int_eq(id, 1); /* still greedy */
    /* An empty session saves and loads (no positions, no logits). */
    size_t n = 0;
    uint8_t *empty = snapshot(s, &n);
    ck_assert_int_eq(r1_session_load_from_buffer(s, empty, n, NULL), R1_OK);
    ck_assert_int_eq(r1_session_position(s), 0);
    free(empty);
    r1_sampler_destroy(smp);
    r1_session_destroy(s);
    r1_model_destroy(m);
}
END_TEST

static Suite *session_state_suite(void)
{
    Suite *s = suite_create("session_state");
    TCase *tc = tcase_create("continuation");
    tcase_add_checked_fixture(tc, make_tmp_dir, remove_tmp_dir);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_session_state_continues_bit_identically_v3);
    tcase_add_test(tc, test_session_state_continues_bit_identically_v3_q8_0);
    tcase_add_test(tc, test_session_state_continues_bit_identically_qwen2);
    tcase_add_test(tc, test_session_state_eval_and_sampler_alone);
    suite_add_tcase(s, tc);
    tc = tcase_create("refusals");
    tcase_add_checked_fixture(tc, make_tmp_dir, remove_tmp_dir);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_session_state_refuses_another_model_context_or_cache);
    tcase_add_test(tc, test_session_state_refuses_damaged_and_truncated);
    suite_add_tcase(s, tc);
    tc = tcase_create("files");
    tcase_add_checked_fixture(tc, make_tmp_dir, remove_tmp_dir);
    tcase_add_test(tc, test_session_state_file_is_replaced_atomically);
    tcase_add_test(tc, test_session_state_checks_arguments);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(session_state_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
