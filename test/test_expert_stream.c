/* test_expert_stream.c: the forward pass over the asynchronous expert store: logits bit-identical
 * whatever the budget, prefetch, I/O workers and arrival order; router lookahead prefetching. */
#include <check.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "compute.h"
#include "container.h"
#include "error.h"
#include "expert_cache.h"
#include "expert_policy.h"
#include "file_testutil.h"
#include "forward.h"
#include "model.h"
#include "model_config.h"
#include "r1.h"
#include "weight_layout.h"

static const int32_t PROMPT[] = {0,   53,  110, 38,  154, 156, 39,  238, 48, 226,
                                 262, 241, 253, 221, 211, 74,  136, 266, 36, 234,
                                 283, 83,  264, 145, 254, 80,  84,  204};
enum { N_PROMPT = sizeof PROMPT / sizeof PROMPT[0] };

/* Expert budgets, in experts of the model's largest size: the store's minimum (one layer's
 * selected experts), half of all routed experts, or unbounded. */
enum { BUDGET_MIN = 0, BUDGET_HALF = 1, BUDGET_UNBOUNDED = 2 };

typedef struct stream_cfg {
    int budget; /* BUDGET_* */
    int32_t io_workers;
    int32_t prefetch;
    int64_t chunk; /* tokens per forward pass; 1 decodes */
    /* Before the run, the upper half of the first MoE layer's experts is made resident and the
     * I/O workers are held for a while, so those arrive first: completion order then differs
     * from index order. */
    int warm_high;
} stream_cfg;

typedef struct stream_run {
    float *logits; /* (N_PROMPT, vocab) */
    int64_t vocab;
    r1_expert_cache_counters k;
    uint64_t load_wait_ns; /* the profile's R1_PROFILE_EXPERT_LOAD */
    uint64_t lookaheads;   /* layers whose experts the lookahead predicted */
} stream_run;

/* Lets the store's I/O workers go after a while: long enough for a pass to take every resident
 * expert first (were it still running by then, the experts would only arrive in index order, and
 * the results must be the same either way). */
static void *release_later(void *ec)
{
    const struct timespec pause = {.tv_sec = 0, .tv_nsec = 200 * 1000 * 1000};
    nanosleep(&pause, NULL);
    r1_expert_cache__hold_workers(ec, 0);
    return NULL;
}

/* The logits of every position of PROMPT through the internal forward pass on its own store. */
static stream_run run_stream(const char *model, const stream_cfg *sc)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.r1m", tu_models_dir(), model);
    r1_container *c = NULL;
    ck_assert_msg(r1_container__open(&c, path) == R1_OK, "%s: %s", path, r1_error__message());
    const r1_model_config *cfg = r1_container__config(c);
    const uint64_t one = r1_container__max_expert_bytes(c);
    const int64_t E = cfg->n_routed_experts, first_moe = cfg->first_k_dense_replace;
    const int64_t n_moe = cfg->num_hidden_layers - first_moe;
    const uint64_t budget = sc->budget == BUDGET_MIN    ? (uint64_t)cfg->num_experts_per_tok * one
                            : sc->budget == BUDGET_HALF ? (uint64_t)(n_moe * E / 2) * one
                                                        : 0;
    r1_expert_cache *ec = NULL;
    ck_assert_msg(
        r1_expert_cache__create2(&ec, c, budget, sc->io_workers, R1_EXPERT_POLICY_DEFAULT) == R1_OK,
        "%s", r1_error__message());
    r1_compute comp;
    ck_assert_int_eq(r1_compute__open(&comp, NULL, NULL), R1_OK);
    ck_assert_int_eq(
        r1_compute__attach_model(&comp, c, ec, r1_model_config__n_layers_stored(cfg), E, 0), R1_OK);
    pthread_t releaser;
    if (sc->warm_high) {
        for (int64_t e = E - 1; e >= E / 2; e--) {
            const r1_expert *ex = NULL;
            ck_assert_int_eq(r1_expert_cache__acquire(ec, first_moe, e, &ex), R1_OK);
            r1_expert_cache__release(ec, ex);
        }
        /* Nothing else loads until the pass has taken the resident experts and waits. */
        r1_expert_cache__hold_workers(ec, 1);
        ck_assert_int_eq(pthread_create(&releaser, NULL, release_later, ec), 0);
    }
    r1_forward f;
    ck_assert_msg(r1_forward__bind(&f, c, ec, &comp) == R1_OK, "%s", r1_error__message());
    f.prefetch = sc->prefetch;
    r1_forward_profile prof;
    memset(&prof, 0, sizeof prof);
    prof.expert_tokens = calloc((size_t)(cfg->num_hidden_layers * E), sizeof *prof.expert_tokens);
    f.prof = &prof;
    r1_forward_scratch *s = NULL;
    ck_assert_int_eq(r1_forward_scratch__create(&s, cfg, sc->chunk, N_PROMPT), R1_OK);
    r1_kv_cache kv;
    ck_assert_int_eq(r1_kv_cache__create(&kv, cfg, N_PROMPT, -1), R1_OK);
    stream_run out = {.vocab = cfg->vocab_size};
    out.logits = malloc((size_t)(N_PROMPT * out.vocab) * sizeof *out.logits);
    for (int64_t pos = 0; pos < N_PROMPT; pos += sc->chunk) {
        const int64_t n = N_PROMPT - pos < sc->chunk ? N_PROMPT - pos : sc->chunk;
        ck_assert_msg(r1_forward__run(&f, s, &kv, PROMPT + pos, n, pos,
                                      out.logits + pos * out.vocab, 1) == R1_OK,
                      "%s: %s", model, r1_error__message());
    }
    if (sc->warm_high)
        pthread_join(releaser, NULL);
    r1_expert_cache__counters(ec, &out.k);
    out.load_wait_ns = prof.ns[R1_PROFILE_EXPERT_LOAD];
    out.lookaheads = f.lookaheads;
    free(prof.expert_tokens);
    r1_kv_cache__destroy(&kv);
    r1_forward_scratch__destroy(s);
    r1_forward__unbind(&f);
    r1_compute__close(&comp);
    r1_expert_cache__destroy(ec);
    r1_container__close(c);
    return out;
}

static const char *const MODELS[] = {"tiny-v3-src", "tiny-v3-q8_0", "tiny-v2lite-src",
                                     "tiny-v2lite-q4_0"};
static const int64_t CHUNKS[] = {N_PROMPT, 9, 4, 1};

/* Every combination of budget, prefetch, I/O workers, and arrival order against the unbounded,
 * single-worker run without prefetch, bit for bit, for each chunk size: prefill in one pass, in
 * several, and decoding one token at a time. */
START_TEST(test_expert_stream_logits_bit_identical)
{
    const char *model = MODELS[_i];
    for (size_t ci = 0; ci < sizeof CHUNKS / sizeof CHUNKS[0]; ci++) {
        const stream_cfg ref_cfg = {BUDGET_UNBOUNDED, 1, 0, CHUNKS[ci], 0};
        stream_run ref = run_stream(model, &ref_cfg);
        int compared = 0;
        for (int budget = BUDGET_MIN; budget <= BUDGET_UNBOUNDED; budget++)
            for (int32_t prefetch = 0; prefetch <= 1; prefetch++)
                for (int32_t workers = 1; workers <= 4; workers += 3)
                    for (int warm = 0; warm <= (budget == BUDGET_HALF); warm++) {
                        const stream_cfg sc = {budget, workers, prefetch, CHUNKS[ci], warm};
                        stream_run got = run_stream(model, &sc);
                        ck_assert_msg(!memcmp(got.logits, ref.logits,
                                              (size_t)(N_PROMPT * ref.vocab) * sizeof(float)),
                                      "%s chunk %lld: budget %d, prefetch %d, %d I/O workers, "
                                      "warm %d: logits differ from the unbounded run",
                                      model, (long long)CHUNKS[ci], budget, (int)prefetch,
                                      (int)workers, warm);
                        if (budget != BUDGET_UNBOUNDED)
                            ck_assert_uint_le(got.k.peak_bytes, got.k.budget_bytes);
                        free(got.logits);
                        compared++;
                    }
        ck_assert_int_eq(compared, 16);
        free(ref.logits);
    }
}
END_TEST

/* Decoding with half the experts' room and the lookahead on: predicted experts are read ahead
 * and some demanded expert was already on its way or in memory because of it. */
START_TEST(test_expert_stream_lookahead_prefetches)
{
    for (int mi = 0; mi < 4; mi += 2) {
        const stream_cfg sc = {BUDGET_HALF, 1, 1, 1, 0};
        stream_run r = run_stream(MODELS[mi], &sc);
        ck_assert_msg(r.k.prefetch_issued > 0, "%s: no prefetch issued", MODELS[mi]);
        ck_assert_msg(r.k.prefetch_used > 0, "%s: %llu prefetches, none used", MODELS[mi],
                      (unsigned long long)r.k.prefetch_issued);
        ck_assert_uint_le(r.k.prefetch_used, r.k.prefetch_issued);
        ck_assert_uint_le(r.k.demand_misses_prefetched, r.k.prefetch_used);
        free(r.logits);
    }
}
END_TEST

/* Lookahead off, or nothing to gain (an unbounded store): nothing is prefetched. */
START_TEST(test_expert_stream_no_prefetch_when_off_or_unbounded)
{
    for (int mi = 0; mi < 4; mi += 2) {
        const stream_cfg off = {BUDGET_HALF, 4, 0, 1, 0};
        stream_run r = run_stream(MODELS[mi], &off);
        ck_assert_uint_eq(r.k.prefetch_issued, 0);
        ck_assert_uint_eq(r.k.prefetch_used, 0);
        ck_assert_uint_eq(r.k.demand_misses_prefetched, 0);
        ck_assert_uint_gt(r.k.demand_misses, 0);
        free(r.logits);
        const stream_cfg unbounded = {BUDGET_UNBOUNDED, 4, 1, 1, 0};
        r = run_stream(MODELS[mi], &unbounded);
        ck_assert_uint_eq(r.k.prefetch_issued, 0);
        free(r.logits);
    }
}
END_TEST

/* The lookahead's gate measures with and without it, interleaved so that both halves see the
 * same state of the cache: in its first 32 passes it runs (after every layer that precedes a
 * MoE layer) in every other pass, beginning with the first; decoded tokens and prompt chunks
 * have a gate each. Switched off (as the other tests of this suite have it) it runs in every
 * pass. */
START_TEST(test_expert_stream_gate_measures_with_and_without)
{
    enum { PASSES = 2 * N_PROMPT };
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.r1m", tu_models_dir(), MODELS[0]);
    r1_container *c = NULL;
    ck_assert_int_eq(r1_container__open(&c, path), R1_OK);
    const r1_model_config *cfg = r1_container__config(c);
    r1_expert_cache *ec = NULL;
    ck_assert_int_eq(r1_expert_cache__create2(&ec, c, 8 * r1_container__max_expert_bytes(c), 1,
                                              R1_EXPERT_POLICY_DEFAULT),
                     R1_OK);
    r1_compute comp;
    ck_assert_int_eq(r1_compute__open(&comp, NULL, NULL), R1_OK);
    r1_forward f;
    ck_assert_int_eq(r1_forward__bind(&f, c, ec, &comp), R1_OK);
    r1_forward_scratch *s = NULL;
    ck_assert_int_eq(r1_forward_scratch__create(&s, cfg, 2, PASSES + 8), R1_OK);
    r1_kv_cache kv;
    ck_assert_int_eq(r1_kv_cache__create(&kv, cfg, PASSES + 8, -1), R1_OK);
    float *logits = malloc((size_t)cfg->vocab_size * sizeof *logits);
    uint64_t after[PASSES];
    r1_forward__set_prefetch_adaptive(1);
    for (int64_t i = 0; i < PASSES; i++) {
        ck_assert_int_eq(r1_forward__run(&f, s, &kv, PROMPT + i % N_PROMPT, 1, i, logits, 0),
                         R1_OK);
        after[i] = f.lookaheads;
    }
    /* tiny-v3: layer 0 dense, layers 1 and 2 MoE, so two lookaheads per pass */
    for (int i = 0; i < 32; i++)
        ck_assert_uint_eq(after[i], 2 * (uint64_t)(i / 2 + 1));
    /* then the better of the two runs; every pass is one or the other */
    const uint64_t rest = after[PASSES - 1] - after[31];
    ck_assert(rest == 0 || rest == 2 * (PASSES - 32));
    /* prompt chunks start their own measurement, with the lookahead in every other pass */
    for (int64_t i = 0; i < 4; i++)
        ck_assert_int_eq(r1_forward__run(&f, s, &kv, PROMPT + 2 * i, 2, PASSES + 2 * i, logits, 0),
                         R1_OK);
    r1_forward__set_prefetch_adaptive(0);
    ck_assert_uint_eq(f.lookaheads, after[PASSES - 1] + 2 * 2);
    free(logits);
    r1_kv_cache__destroy(&kv);
    r1_forward_scratch__destroy(s);
    r1_forward__unbind(&f);
    r1_compute__close(&comp);
    r1_expert_cache__destroy(ec);
    r1_container__close(c);
}
END_TEST

/* With every expert resident (a budget above the working set) neither half of the gate's
 * measurement waits for expert data: the tie goes to no lookahead, which would only add its
 * norm and router products to every layer. */
START_TEST(test_expert_stream_gate_off_when_nothing_waits)
{
    enum { PASSES = 48 };
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.r1m", tu_models_dir(), MODELS[0]);
    r1_container *c = NULL;
    ck_assert_int_eq(r1_container__open(&c, path), R1_OK);
    const r1_model_config *cfg = r1_container__config(c);
    const int64_t E = cfg->n_routed_experts;
    r1_expert_cache *ec = NULL;
    const uint64_t all = (uint64_t)(cfg->num_hidden_layers * E) * r1_container__max_expert_bytes(c);
    ck_assert_int_eq(r1_expert_cache__create2(&ec, c, all, 2, R1_EXPERT_POLICY_DEFAULT), R1_OK);
    for (int64_t l = cfg->first_k_dense_replace; l < cfg->num_hidden_layers; l++)
        for (int64_t e = 0; e < E; e++) {
            const r1_expert *ex = NULL;
            ck_assert_int_eq(r1_expert_cache__acquire(ec, l, e, &ex), R1_OK);
            r1_expert_cache__release(ec, ex);
        }
    r1_expert_cache_counters k0, k;
    r1_expert_cache__counters(ec, &k0);
    r1_compute comp;
    ck_assert_int_eq(r1_compute__open(&comp, NULL, NULL), R1_OK);
    r1_forward f;
    ck_assert_int_eq(r1_forward__bind(&f, c, ec, &comp), R1_OK);
    ck_assert(f.experts_bounded);
    r1_forward_scratch *s = NULL;
    ck_assert_int_eq(r1_forward_scratch__create(&s, cfg, 1, PASSES + 8), R1_OK);
    r1_kv_cache kv;
    ck_assert_int_eq(r1_kv_cache__create(&kv, cfg, PASSES + 8, -1), R1_OK);
    float *logits = malloc((size_t)cfg->vocab_size * sizeof *logits);
    uint64_t after[PASSES];
    r1_forward__set_prefetch_adaptive(1);
    for (int64_t i = 0; i < PASSES; i++) {
        ck_assert_int_eq(r1_forward__run(&f, s, &kv, PROMPT + i % N_PROMPT, 1, i, logits, 0),
                         R1_OK);
        after[i] = f.lookaheads;
    }
    r1_forward__set_prefetch_adaptive(0);
    r1_expert_cache__counters(ec, &k);
    ck_assert_uint_eq(k.stall_ns, k0.stall_ns);
    ck_assert_uint_eq(k.misses, k0.misses);
    ck_assert_uint_eq(after[31], 2 * 16); /* measured: every other pass of the first 32 */
    ck_assert_uint_eq(after[PASSES - 1], after[31]);
    free(logits);
    r1_kv_cache__destroy(&kv);
    r1_forward_scratch__destroy(s);
    r1_forward__unbind(&f);
    r1_compute__close(&comp);
    r1_expert_cache__destroy(ec);
    r1_container__close(c);
}
END_TEST

typedef struct early_probe {
    r1_expert_cache *ec;
    int32_t want;   /* layer 2's prefetches expected while the pass waits in layer 1 */
    int32_t queued; /* layer 2's prefetches queued by then */
} early_probe;

/* Waits (up to 2 s) for want prefetches of layer 2 while the workers are held, then notes how
 * many are queued and lets the workers go. */
static void *probe_then_release(void *arg)
{
    early_probe *p = arg;
    const struct timespec tick = {.tv_sec = 0, .tv_nsec = 10 * 1000 * 1000};
    for (int i = 0; i < 200 && r1_expert_cache__queued_prefetches(p->ec, 2) < p->want; i++)
        nanosleep(&tick, NULL);
    nanosleep(&tick, NULL);
    p->queued = r1_expert_cache__queued_prefetches(p->ec, 2);
    r1_expert_cache__hold_workers(p->ec, 0);
    return NULL;
}

/* The next MoE layer's surest predictions are asked for as soon as a MoE layer has made its
 * demands, before its experts have arrived: with the I/O workers held, a decoded token on a cold
 * store waits in layer 1 (tiny-v3's first MoE layer) with the first half of layer 2's K
 * predictions queued. */
START_TEST(test_expert_stream_lookahead_before_experts_arrive)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.r1m", tu_models_dir(), MODELS[0]);
    r1_container *c = NULL;
    ck_assert_int_eq(r1_container__open(&c, path), R1_OK);
    const r1_model_config *cfg = r1_container__config(c);
    const int64_t K = cfg->num_experts_per_tok;
    ck_assert_int_eq(cfg->first_k_dense_replace, 1);
    ck_assert_int_eq(cfg->num_hidden_layers, 3);
    r1_expert_cache *ec = NULL;
    ck_assert_int_eq(r1_expert_cache__create2(&ec, c, 4 * K * r1_container__max_expert_bytes(c), 2,
                                              R1_EXPERT_POLICY_DEFAULT),
                     R1_OK);
    r1_compute comp;
    ck_assert_int_eq(r1_compute__open(&comp, NULL, NULL), R1_OK);
    r1_forward f;
    ck_assert_int_eq(r1_forward__bind(&f, c, ec, &comp), R1_OK);
    r1_forward_scratch *s = NULL;
    ck_assert_int_eq(r1_forward_scratch__create(&s, cfg, 1, 8), R1_OK);
    r1_kv_cache kv;
    ck_assert_int_eq(r1_kv_cache__create(&kv, cfg, 8, -1), R1_OK);
    float *logits = malloc((size_t)cfg->vocab_size * sizeof *logits);
    early_probe probe = {.ec = ec, .want = (int32_t)((K + 1) / 2)};
    r1_expert_cache__hold_workers(ec, 1);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, probe_then_release, &probe), 0);
    ck_assert_int_eq(r1_forward__run(&f, s, &kv, PROMPT, 1, 0, logits, 0), R1_OK);
    pthread_join(th, NULL);
    ck_assert_int_eq(probe.queued, probe.want);
    ck_assert_uint_eq(f.lookaheads, 2); /* counted once per predicted layer */
    free(logits);
    r1_kv_cache__destroy(&kv);
    r1_forward_scratch__destroy(s);
    r1_forward__unbind(&f);
    r1_compute__close(&comp);
    r1_expert_cache__destroy(ec);
    r1_container__close(c);
}
END_TEST

/* A projection as the store holds it: the file's rows, or with the R16 layout asked for, those
 * rows rewritten by r1_layout__to_r16 (a raw blob is laid out from the worker's read buffer
 * into its own). Every expert of the first MoE layer of a Q8_0 and a Q4_0 model, both ways. */
START_TEST(test_expert_stream_layout_of_loaded_experts)
{
    static const char *const quantised[] = {"tiny-v3-q8_0", "tiny-v2lite-q4_0"};
    for (int mi = 0; mi < 2; mi++)
        for (int32_t layout = R1_LAYOUT_ROWS; layout <= R1_LAYOUT_R16; layout++) {
            char path[1024];
            snprintf(path, sizeof path, "%s/%s.r1m", tu_models_dir(), quantised[mi]);
            r1_container *c = NULL;
            ck_assert_int_eq(r1_container__open(&c, path), R1_OK);
            const r1_model_config *cfg = r1_container__config(c);
            const int64_t l = cfg->first_k_dense_replace;
            r1_expert_cache *ec = NULL;
            ck_assert_int_eq(r1_expert_cache__create2(&ec, c, 0, 2, R1_EXPERT_POLICY_DEFAULT),
                             R1_OK);
            r1_expert_cache__set_layout(ec, layout);
            int laid = 0;
            for (int64_t e = 0; e < cfg->n_routed_experts; e++) {
                const r1_expert_blob *b = r1_container__expert(c, l, e);
                ck_assert_int_eq(b->codec, R1M_CODEC_RAW);
                uint8_t *file = malloc((size_t)b->raw_size);
                uint8_t *want = malloc((size_t)b->raw_size);
                ck_assert_int_eq(
                    pread(r1_container__fd(c), file, (size_t)b->raw_size, (off_t)b->offset),
                    (ssize_t)b->raw_size);
                const r1_expert *ex = NULL;
                ck_assert_int_eq(r1_expert_cache__acquire(ec, l, e, &ex), R1_OK);
                const r1_tensor *t[3] = {&ex->gate_proj, &ex->up_proj, &ex->down_proj};
                for (int k = 0; k < 3; k++) {
                    const uint8_t *rows = file + b->data_off[k];
                    const int r16 =
                        layout == R1_LAYOUT_R16 &&
                        r1_layout__r16_eligible(t[k]->dtype, t[k]->shape[0], t[k]->shape[1]);
                    ck_assert_int_eq(t[k]->layout, r16 ? R1_LAYOUT_R16 : R1_LAYOUT_ROWS);
                    ck_assert_uint_eq(t[k]->nbytes, b->data_bytes[k]);
                    if (r16)
                        r1_layout__to_r16(t[k]->dtype, rows, t[k]->shape[0], t[k]->shape[1], want);
                    else
                        memcpy(want, rows, (size_t)b->data_bytes[k]);
                    ck_assert_msg(memcmp(t[k]->data, want, (size_t)b->data_bytes[k]) == 0,
                                  "%s: expert (%lld, %lld) projection %d, layout %d", quantised[mi],
                                  (long long)l, (long long)e, k, (int)layout);
                    laid += r16;
                }
                r1_expert_cache__release(ec, ex);
                free(file);
                free(want);
            }
            ck_assert_int_eq(laid > 0, layout == R1_LAYOUT_R16);
            r1_expert_cache__destroy(ec);
            r1_container__close(c);
        }
}
END_TEST

/* A cold store makes the pass wait for expert data, and the profile says how long. */
START_TEST(test_expert_stream_profile_counts_waiting)
{
    const stream_cfg sc = {BUDGET_MIN, 1, 0, N_PROMPT, 0};
    stream_run r = run_stream(MODELS[0], &sc);
    ck_assert_uint_gt(r.k.misses, 0);
    ck_assert_uint_gt(r.load_wait_ns, 0);
    free(r.logits);
}
END_TEST

/* r1_model_opts_set_expert_prefetch reaches the sessions of the model it loads (on < 0: not
 * called). Decodes PROMPT with room for half the experts of tiny-v3's two MoE layers. */
static uint64_t prefetches_through_api(int32_t on)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.r1m", tu_models_dir(), MODELS[0]);
    r1_model *m = NULL;
    ck_assert_int_eq(r1_model_load(&m, path, NULL, NULL), R1_OK);
    r1_model_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    ck_assert_int_eq(r1_model_get_info(m, &info), R1_OK);
    r1_model_destroy(m);
    r1_model_opts *o = NULL;
    ck_assert_int_eq(r1_model_opts_create(&o), R1_OK);
    ck_assert_int_eq(r1_model_opts_set_expert_cache_bytes(o, 16 * info.max_expert_bytes), R1_OK);
    if (on >= 0)
        ck_assert_int_eq(r1_model_opts_set_expert_prefetch(o, on), R1_OK);
    ck_assert_int_eq(r1_model_load(&m, path, NULL, o), R1_OK);
    r1_model_opts_destroy(o);
    r1_session *s = NULL;
    ck_assert_int_eq(r1_session_create(&s, m, NULL), R1_OK);
    for (int i = 0; i < N_PROMPT; i++)
        ck_assert_int_eq(r1_session_eval(s, PROMPT + i, 1), R1_OK);
    r1_expert_cache_counters k;
    r1_expert_cache__counters(r1_model__experts(m), &k);
    r1_session_destroy(s);
    r1_model_destroy(m);
    return k.prefetch_issued;
}

START_TEST(test_expert_stream_prefetch_option)
{
    ck_assert_uint_gt(prefetches_through_api(-1), 0); /* on by default */
    ck_assert_uint_gt(prefetches_through_api(1), 0);
    ck_assert_uint_eq(prefetches_through_api(0), 0);
    r1_model_opts *o = NULL;
    ck_assert_int_eq(r1_model_opts_create(&o), R1_OK);
    ck_assert_int_eq(r1_model_opts_set_expert_prefetch(o, 2), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_model_opts_set_expert_prefetch(NULL, 1), R1_ERR_INVALID_ARG);
    r1_model_opts_destroy(o);
}
END_TEST

static Suite *expert_stream_suite(void)
{
    /* Lookahead in every pass, so prefetch happens where a test asks for it (the gate has its
     * own test). */
    r1_forward__set_prefetch_adaptive(0);
    Suite *s = suite_create("expert_stream");
    TCase *same = tcase_create("bit_identical");
    tcase_set_timeout(same, 600);
    tcase_add_loop_test(same, test_expert_stream_logits_bit_identical, 0, 4);
    suite_add_tcase(s, same);
    TCase *pf = tcase_create("prefetch");
    tcase_set_timeout(pf, 120);
    tcase_add_test(pf, test_expert_stream_lookahead_prefetches);
    tcase_add_test(pf, test_expert_stream_no_prefetch_when_off_or_unbounded);
    tcase_add_test(pf, test_expert_stream_gate_measures_with_and_without);
    tcase_add_test(pf, test_expert_stream_gate_off_when_nothing_waits);
    tcase_add_test(pf, test_expert_stream_lookahead_before_experts_arrive);
    tcase_add_test(pf, test_expert_stream_layout_of_loaded_experts);
    tcase_add_test(pf, test_expert_stream_profile_counts_waiting);
    tcase_add_test(pf, test_expert_stream_prefetch_option);
    suite_add_tcase(s, pf);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(expert_stream_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
