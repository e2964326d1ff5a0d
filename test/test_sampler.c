/* test_sampler.c: each sampling stage against hand-computed distributions, draws, validation. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "r1.h"
#include "sampler.h"

#define N_DRAWS 200000

static r1_sampler *smp;

static void setup(void)
{
    ck_assert_int_eq(r1_sampler_create(&smp, 1234), R1_OK);
}

static void teardown(void)
{
    r1_sampler_destroy(smp);
    smp = NULL;
}

/* A plain sampler: temperature 1, no top-p (the R1 defaults are covered separately). */
static void plain(void)
{
    ck_assert_int_eq(r1_sampler_set_temperature(smp, 1.0f), R1_OK);
    ck_assert_int_eq(r1_sampler_set_top_p(smp, 1.0f), R1_OK);
}

/* Check the candidate set (ids in draw order) and its probabilities, then draw N_DRAWS times
 * and check every frequency is within 4 sigma of its probability and that nothing outside the
 * set is ever drawn. */
static void expect(const float *logits, size_t n, const int32_t *want_ids, const double *want_p,
                   size_t n_want)
{
    int32_t ids[16];
    double probs[16];
    size_t n_got = 0;
    ck_assert_int_eq(r1_sampler__distribution(smp, logits, n, n, ids, probs, 16, &n_got), R1_OK);
    ck_assert_uint_eq(n_got, n_want);
    for (size_t i = 0; i < n_want; i++) {
        ck_assert_int_eq(ids[i], want_ids[i]);
        ck_assert_double_eq_tol(probs[i], want_p[i], 1e-6);
    }
    long count[16] = {0};
    for (int d = 0; d < N_DRAWS; d++) {
        int32_t id = -1;
        ck_assert_int_eq(r1_sampler_sample(smp, logits, n, &id), R1_OK);
        ck_assert(id >= 0 && (size_t)id < n);
        count[id]++;
    }
    for (size_t id = 0; id < n; id++) {
        double p = 0.0;
        for (size_t i = 0; i < n_want; i++)
            if ((size_t)want_ids[i] == id)
                p = want_p[i];
        double mean = N_DRAWS * p, sigma = sqrt(N_DRAWS * p * (1.0 - p));
        ck_assert_msg(fabs((double)count[id] - mean) <= 4.0 * sigma,
                      "id %zu: %ld draws, expected %.1f +- %.1f", id, count[id], mean, sigma);
    }
}

/* logits ln 4, ln 3, ln 2, ln 1: probabilities 0.4, 0.3, 0.2, 0.1 at temperature 1. */
static float base[4];

static void setup_base(void)
{
    setup();
    base[0] = logf(4.0f);
    base[1] = logf(3.0f);
    base[2] = logf(2.0f);
    base[3] = 0.0f;
}

START_TEST(test_sampler_softmax_at_temperature_1)
{
    plain();
    const int32_t ids[] = {0, 1, 2, 3};
    const double p[] = {0.4, 0.3, 0.2, 0.1};
    expect(base, 4, ids, p, 4);
}
END_TEST

START_TEST(test_sampler_temperature_sharpens_and_flattens)
{
    plain();
    /* T = 0.5 squares the weights: 16, 9, 4, 1 over 30. */
    ck_assert_int_eq(r1_sampler_set_temperature(smp, 0.5f), R1_OK);
    const int32_t ids[] = {0, 1, 2, 3};
    const double sharp[] = {16.0 / 30, 9.0 / 30, 4.0 / 30, 1.0 / 30};
    expect(base, 4, ids, sharp, 4);
    /* T = 2 takes square roots: 2, sqrt 3, sqrt 2, 1. */
    ck_assert_int_eq(r1_sampler_set_temperature(smp, 2.0f), R1_OK);
    double z = 2.0 + sqrt(3.0) + sqrt(2.0) + 1.0;
    const double flat[] = {2.0 / z, sqrt(3.0) / z, sqrt(2.0) / z, 1.0 / z};
    expect(base, 4, ids, flat, 4);
}
END_TEST

START_TEST(test_sampler_top_k_keeps_k_largest)
{
    plain();
    ck_assert_int_eq(r1_sampler_set_top_k(smp, 2), R1_OK);
    const int32_t ids[] = {0, 1};
    const double p[] = {4.0 / 7, 3.0 / 7};
    expect(base, 4, ids, p, 2);
    /* Ties at the cut go to the lower id: logits 1, 2, 1, 1 with k = 2 keep ids 0 and 1. */
    const float tied[] = {1.0f, 2.0f, 1.0f, 1.0f};
    const int32_t tied_ids[] = {0, 1};
    double e = exp(1.0);
    const double tied_p[] = {1.0 / (1.0 + e), e / (1.0 + e)};
    expect(tied, 4, tied_ids, tied_p, 2);
    /* k at least the vocabulary is no filter. */
    ck_assert_int_eq(r1_sampler_set_top_k(smp, 4), R1_OK);
    const int32_t all[] = {0, 1, 2, 3};
    const double pall[] = {0.4, 0.3, 0.2, 0.1};
    expect(base, 4, all, pall, 4);
}
END_TEST

START_TEST(test_sampler_top_p_keeps_shortest_prefix)
{
    plain();
    /* 0.4 + 0.3 = 0.7 >= 0.65: ids 0 and 1. */
    ck_assert_int_eq(r1_sampler_set_top_p(smp, 0.65f), R1_OK);
    const int32_t two[] = {0, 1};
    const double p2[] = {4.0 / 7, 3.0 / 7};
    expect(base, 4, two, p2, 2);
    /* 0.7 < 0.75 <= 0.9: ids 0, 1, 2. */
    ck_assert_int_eq(r1_sampler_set_top_p(smp, 0.75f), R1_OK);
    const int32_t three[] = {0, 1, 2};
    const double p3[] = {4.0 / 9, 3.0 / 9, 2.0 / 9};
    expect(base, 4, three, p3, 3);
    /* 0.4 >= 0.3: the single best. */
    ck_assert_int_eq(r1_sampler_set_top_p(smp, 0.3f), R1_OK);
    const int32_t one[] = {0};
    const double p1[] = {1.0};
    expect(base, 4, one, p1, 1);
}
END_TEST

START_TEST(test_sampler_top_p_orders_by_probability_then_id)
{
    plain();
    /* Probabilities 0.2, 0.4, 0.2, 0.2: the order is 1, 0, 2, 3 and 0.4 + 0.2 + 0.2 reaches
     * 0.65 at id 2, so id 3 (same probability, higher id) is the one left out. The survivors
     * come back in id order, the order the draw walks. */
    const float tied[] = {logf(2.0f), logf(4.0f), logf(2.0f), logf(2.0f)};
    ck_assert_int_eq(r1_sampler_set_top_p(smp, 0.65f), R1_OK);
    const int32_t ids[] = {0, 1, 2};
    const double p[] = {0.25, 0.5, 0.25};
    expect(tied, 4, ids, p, 3);
    /* A permuted vocabulary: the least likely (id 0) is the one dropped. */
    const float perm[] = {0.0f, logf(4.0f), logf(2.0f), logf(3.0f)};
    ck_assert_int_eq(r1_sampler_set_top_p(smp, 0.85f), R1_OK);
    const int32_t pids[] = {1, 2, 3};
    const double pp[] = {4.0 / 9, 2.0 / 9, 3.0 / 9};
    expect(perm, 4, pids, pp, 3);
}
END_TEST

START_TEST(test_sampler_min_p_drops_unlikely)
{
    plain();
    /* p_max 0.4: 0.6 * 0.4 = 0.24 keeps 0.4 and 0.3. */
    ck_assert_int_eq(r1_sampler_set_min_p(smp, 0.6f), R1_OK);
    const int32_t two[] = {0, 1};
    const double p2[] = {4.0 / 7, 3.0 / 7};
    expect(base, 4, two, p2, 2);
    /* 0.45 * 0.4 = 0.18 keeps 0.2 too. */
    ck_assert_int_eq(r1_sampler_set_min_p(smp, 0.45f), R1_OK);
    const int32_t three[] = {0, 1, 2};
    const double p3[] = {4.0 / 9, 3.0 / 9, 2.0 / 9};
    expect(base, 4, three, p3, 3);
    /* After top-k 3 and temperature 0.5 (16, 9, 4 over 29): 0.3 * 16/29 keeps 9/29, drops 4/29. */
    ck_assert_int_eq(r1_sampler_set_top_k(smp, 3), R1_OK);
    ck_assert_int_eq(r1_sampler_set_temperature(smp, 0.5f), R1_OK);
    ck_assert_int_eq(r1_sampler_set_min_p(smp, 0.3f), R1_OK);
    const double p25[] = {16.0 / 25, 9.0 / 25};
    expect(base, 4, two, p25, 2);
}
END_TEST

START_TEST(test_sampler_repetition_penalty_divides_positive_multiplies_negative)
{
    plain();
    /* logits ln 4, ln 3, ln 2, -ln 2 (weights 4, 3, 2, 0.5); ids 0 and 3 were generated. A
     * factor 2 halves ln 4 to ln 2 (weight 2) and doubles -ln 2 to -ln 4 (weight 0.25), once
     * per distinct id however often it occurred. */
    const float l[] = {logf(4.0f), logf(3.0f), logf(2.0f), -logf(2.0f)};
    ck_assert_int_eq(r1_sampler_set_penalties(smp, 8, 2.0f, 0.0f, 0.0f), R1_OK);
    ck_assert_int_eq(r1_sampler_accept(smp, 0), R1_OK);
    ck_assert_int_eq(r1_sampler_accept(smp, 3), R1_OK);
    ck_assert_int_eq(r1_sampler_accept(smp, 3), R1_OK);
    const int32_t ids[] = {0, 1, 2, 3};
    const double p[] = {2 / 7.25, 3 / 7.25, 2 / 7.25, 0.25 / 7.25};
    expect(l, 4, ids, p, 4);
}
END_TEST

START_TEST(test_sampler_frequency_and_presence_penalties)
{
    plain();
    /* Same logits, id 0 seen once and id 3 twice; frequency 0.5, presence 0.25:
     * id 0 loses 0.75 (weight 4 e^-0.75), id 3 loses 1.25 (weight 0.5 e^-1.25). */
    const float l[] = {logf(4.0f), logf(3.0f), logf(2.0f), -logf(2.0f)};
    ck_assert_int_eq(r1_sampler_set_penalties(smp, 8, 1.0f, 0.5f, 0.25f), R1_OK);
    ck_assert_int_eq(r1_sampler_accept(smp, 3), R1_OK);
    ck_assert_int_eq(r1_sampler_accept(smp, 0), R1_OK);
    ck_assert_int_eq(r1_sampler_accept(smp, 3), R1_OK);
    double w0 = 4.0 * exp(-0.75), w3 = 0.5 * exp(-1.25), z = w0 + 3.0 + 2.0 + w3;
    const int32_t ids[] = {0, 1, 2, 3};
    const double p[] = {w0 / z, 3.0 / z, 2.0 / z, w3 / z};
    expect(l, 4, ids, p, 4);
}
END_TEST

START_TEST(test_sampler_penalty_window_is_last_n)
{
    plain();
    /* With last_n 2 only the last two accepted ids (3, 3) count: id 0 is not penalised. */
    const float l[] = {logf(4.0f), logf(3.0f), logf(2.0f), -logf(2.0f)};
    ck_assert_int_eq(r1_sampler_set_penalties(smp, 2, 2.0f, 0.0f, 0.0f), R1_OK);
    ck_assert_int_eq(r1_sampler_accept(smp, 0), R1_OK);
    ck_assert_int_eq(r1_sampler_accept(smp, 3), R1_OK);
    ck_assert_int_eq(r1_sampler_accept(smp, 3), R1_OK);
    const int32_t ids[] = {0, 1, 2, 3};
    const double p[] = {4 / 9.25, 3 / 9.25, 2 / 9.25, 0.25 / 9.25};
    expect(l, 4, ids, p, 4);
    /* Widening the window keeps what is remembered; narrowing keeps the most recent. */
    ck_assert_int_eq(r1_sampler_set_penalties(smp, 1, 2.0f, 0.0f, 0.0f), R1_OK);
    ck_assert_int_eq(r1_sampler_accept(smp, 0), R1_OK); /* window now {0} */
    ck_assert_int_eq(r1_sampler_set_penalties(smp, 4, 2.0f, 0.0f, 0.0f), R1_OK);
    ck_assert_int_eq(r1_sampler_accept(smp, 3), R1_OK); /* window {0, 3} */
    const double q[] = {2 / 7.25, 3 / 7.25, 2 / 7.25, 0.25 / 7.25};
    expect(l, 4, ids, q, 4);
    /* Reset forgets the history. */
    ck_assert_int_eq(r1_sampler_reset(smp), R1_OK);
    const double r[] = {4 / 9.5, 3 / 9.5, 2 / 9.5, 0.5 / 9.5};
    expect(l, 4, ids, r, 4);
}
END_TEST

START_TEST(test_sampler_logit_bias_shifts_and_bans)
{
    plain();
    /* +ln 2 on id 3 doubles its weight (4, 3, 2, 2 over 11); -inf bans id 1. */
    ck_assert_int_eq(r1_sampler_set_logit_bias(smp, 3, logf(2.0f)), R1_OK);
    ck_assert_int_eq(r1_sampler_set_logit_bias(smp, 1, -INFINITY), R1_OK);
    ck_assert_int_eq(r1_sampler_set_logit_bias(smp, 1000, 5.0f), R1_OK); /* beyond: ignored */
    const int32_t ids[] = {0, 2, 3};
    const double p[] = {4.0 / 8, 2.0 / 8, 2.0 / 8};
    expect(base, 4, ids, p, 3);
    /* Setting again replaces; a zero bias removes. */
    ck_assert_int_eq(r1_sampler_set_logit_bias(smp, 3, 0.0f), R1_OK);
    ck_assert_int_eq(r1_sampler_set_logit_bias(smp, 1, -INFINITY), R1_OK);
    const double q[] = {4.0 / 7, 2.0 / 7, 1.0 / 7};
    expect(base, 4, ids, q, 3);
    ck_assert_int_eq(r1_sampler_clear_logit_bias(smp), R1_OK);
    const int32_t all[] = {0, 1, 2, 3};
    const double pall[] = {0.4, 0.3, 0.2, 0.1};
    expect(base, 4, all, pall, 4);
    /* Banning everything is an error with a message, not a crash or a random id. */
    for (int32_t i = 0; i < 4; i++)
        ck_assert_int_eq(r1_sampler_set_logit_bias(smp, i, -INFINITY), R1_OK);
    int32_t id = 7;
    ck_assert_int_eq(r1_sampler_sample(smp, base, 4, &id), R1_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "banned"));
}
END_TEST

START_TEST(test_sampler_greedy_takes_lowest_id_on_ties)
{
    ck_assert_int_eq(r1_sampler_set_temperature(smp, 0.0f), R1_OK);
    const float l[] = {1.0f, 3.0f, 3.0f, 2.0f, -INFINITY};
    int32_t id = -1;
    for (int i = 0; i < 100; i++) {
        ck_assert_int_eq(r1_sampler_sample(smp, l, 5, &id), R1_OK);
        ck_assert_int_eq(id, 1);
    }
    ck_assert_int_eq(r1_sampler_set_logit_bias(smp, 1, -INFINITY), R1_OK);
    ck_assert_int_eq(r1_sampler_sample(smp, l, 5, &id), R1_OK);
    ck_assert_int_eq(id, 2);
    /* top-k, top-p and min-p do not change a greedy choice. */
    ck_assert_int_eq(r1_sampler_set_top_k(smp, 1), R1_OK);
    ck_assert_int_eq(r1_sampler_set_min_p(smp, 1.0f), R1_OK);
    ck_assert_int_eq(r1_sampler_sample(smp, l, 5, &id), R1_OK);
    ck_assert_int_eq(id, 2);
    const float neg[] = {-5.0f, -1.0f, -1.0f};
    ck_assert_int_eq(r1_sampler_clear_logit_bias(smp), R1_OK);
    ck_assert_int_eq(r1_sampler_sample(smp, neg, 3, &id), R1_OK);
    ck_assert_int_eq(id, 1);
}
END_TEST

START_TEST(test_sampler_r1_defaults)
{
    /* T 0.6 and top-p 0.95 over 0.4, 0.3, 0.2, 0.1: weights 4^(5/3), 3^(5/3), 2^(5/3), 1; the
     * first three hold 0.951 of the mass, reaching 0.95, so the last one goes. */
    double w0 = pow(4.0, 5.0 / 3), w1 = pow(3.0, 5.0 / 3), w2 = pow(2.0, 5.0 / 3);
    ck_assert((w0 + w1 + w2) / (w0 + w1 + w2 + 1.0) >= 0.95);
    ck_assert((w0 + w1) / (w0 + w1 + w2 + 1.0) < 0.95);
    double z = w0 + w1 + w2;
    const int32_t ids[] = {0, 1, 2};
    const double p[] = {w0 / z, w1 / z, w2 / z};
    expect(base, 4, ids, p, 3);
}
END_TEST

/* The first n ids a sampler draws from fixed logits. */
static void sequence(r1_sampler *s, const float *l, size_t n_vocab, int32_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(r1_sampler_sample(s, l, n_vocab, &out[i]), R1_OK);
}

START_TEST(test_sampler_same_seed_same_sequence_and_reset)
{
    float l[64];
    for (int i = 0; i < 64; i++)
        l[i] = (float)((i * 37) % 64) / 16.0f;
    int32_t a[500], b[500], c[500], d[500];
    r1_sampler *other = NULL, *third = NULL;
    ck_assert_int_eq(r1_sampler_create(&other, 1234), R1_OK);
    ck_assert_int_eq(r1_sampler_create(&third, 1235), R1_OK);
    sequence(smp, l, 64, a, 500);
    sequence(other, l, 64, b, 500);
    sequence(third, l, 64, c, 500);
    ck_assert_mem_eq(a, b, sizeof a);
    ck_assert(memcmp(a, c, sizeof a) != 0);
    /* Reset replays the sequence; inspecting the distribution consumes no draw. */
    ck_assert_int_eq(r1_sampler_reset(smp), R1_OK);
    int32_t ids[64];
    double probs[64];
    size_t n = 0;
    ck_assert_int_eq(r1_sampler__distribution(smp, l, 64, 64, ids, probs, 64, &n), R1_OK);
    sequence(smp, l, 64, d, 500);
    ck_assert_mem_eq(a, d, sizeof a);
    /* The generator itself: fixed values, so a platform that differs shows up here. */
    ck_assert_double_eq(r1_sampler__uniform(0, 0), r1_sampler__uniform(0, 0));
    ck_assert(r1_sampler__uniform(0, 0) != r1_sampler__uniform(0, 1));
    ck_assert(r1_sampler__uniform(0, 0) != r1_sampler__uniform(1, 0));
    /* SplitMix64 from state 0: first output 0xE220A8397B1DCDAF. */
    ck_assert_double_eq(r1_sampler__uniform(0, 0),
                        (double)(UINT64_C(0xE220A8397B1DCDAF) >> 11) / 9007199254740992.0);
    r1_sampler_destroy(other);
    r1_sampler_destroy(third);
}
END_TEST

START_TEST(test_sampler_does_not_modify_logits)
{
    float l[8] = {1, 2, 3, 4, 5, 6, 7, 8}, copy[8];
    memcpy(copy, l, sizeof l);
    ck_assert_int_eq(r1_sampler_set_penalties(smp, 4, 1.5f, 0.5f, 0.5f), R1_OK);
    ck_assert_int_eq(r1_sampler_accept(smp, 7), R1_OK);
    ck_assert_int_eq(r1_sampler_set_logit_bias(smp, 6, -INFINITY), R1_OK);
    int32_t id;
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(r1_sampler_sample(smp, l, 8, &id), R1_OK);
    ck_assert_mem_eq(l, copy, sizeof l);
}
END_TEST

START_TEST(test_sampler_masked_never_returns_padding)
{
    /* Padding rows carry the largest logits on purpose. */
    float l[10] = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f, 50.0f, 60.0f, 70.0f, 80.0f};
    plain();
    int32_t id;
    for (int i = 0; i < 20000; i++) {
        ck_assert_int_eq(r1_sampler__sample_masked(smp, l, 10, 6, &id), R1_OK);
        ck_assert_int_lt(id, 6);
    }
    ck_assert_int_eq(r1_sampler_set_temperature(smp, 0.0f), R1_OK);
    ck_assert_int_eq(r1_sampler__sample_masked(smp, l, 10, 6, &id), R1_OK);
    ck_assert_int_eq(id, 5);
    /* A bias on a padding id cannot bring it back. */
    ck_assert_int_eq(r1_sampler_set_logit_bias(smp, 8, 1000.0f), R1_OK);
    ck_assert_int_eq(r1_sampler__sample_masked(smp, l, 10, 6, &id), R1_OK);
    ck_assert_int_eq(id, 5);
    ck_assert_int_eq(r1_sampler__sample_masked(smp, l, 10, 0, &id), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_sampler__sample_masked(smp, l, 10, 11, &id), R1_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "n_allowed"));
}
END_TEST

/* Reference top-p/top-k/min-p by a full sort, to check the bucketed fast path on a real-sized
 * vocabulary. */
static int cmp_ref(const void *a, const void *b)
{
    const double *x = a, *y = b; /* (w, id) pairs */
    if (x[0] != y[0])
        return x[0] > y[0] ? -1 : 1;
    return (x[1] > y[1]) - (x[1] < y[1]);
}

static int cmp_ref_id(const void *a, const void *b)
{
    const double *x = a, *y = b;
    return (x[1] > y[1]) - (x[1] < y[1]);
}

START_TEST(test_sampler_large_vocab_matches_full_sort)
{
    const size_t n = 129280;
    float *l = malloc(n * sizeof *l);
    double *ref = malloc(2 * n * sizeof *ref);
    int32_t *ids = malloc(n * sizeof *ids);
    double *probs = malloc(n * sizeof *probs);
    ck_assert(l && ref && ids && probs);
    uint64_t x = 88172645463325252u;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        /* A peaked distribution like a model's: a few large logits over a broad tail. */
        l[i] = (float)((double)(x >> 11) / 9007199254740992.0 * 8.0);
        if (i % 9973 == 0)
            l[i] += 12.0f;
    }
    const float top_ps[] = {0.95f, 0.5f, 0.999f};
    for (size_t t = 0; t < 3; t++) {
        ck_assert_int_eq(r1_sampler_set_top_p(smp, top_ps[t]), R1_OK);
        double max = -INFINITY, z = 0.0;
        for (size_t i = 0; i < n; i++)
            max = l[i] > max ? l[i] : max;
        for (size_t i = 0; i < n; i++) {
            ref[2 * i] = exp(((double)l[i] - max) * (1.0 / (double)0.6f));
            ref[2 * i + 1] = (double)i;
            z += ref[2 * i];
        }
        qsort(ref, n, 2 * sizeof *ref, cmp_ref);
        size_t keep = 0;
        double cum = 0.0;
        while (keep < n) {
            cum += ref[2 * keep];
            keep++;
            if (cum >= (double)top_ps[t] * z)
                break;
        }
        size_t got = 0;
        ck_assert_int_eq(r1_sampler__distribution(smp, l, n, n, ids, probs, n, &got), R1_OK);
        ck_assert_uint_eq(got, keep);
        qsort(ref, keep, 2 * sizeof *ref, cmp_ref_id);
        for (size_t i = 0; i < keep; i++) {
            ck_assert_int_eq(ids[i], (int32_t)ref[2 * i + 1]);
            ck_assert_double_eq_tol(probs[i], ref[2 * i] / cum, 1e-12);
        }
    }
    /* top-k 40 then min-p 0.05 over the same logits. */
    ck_assert_int_eq(r1_sampler_set_top_p(smp, 1.0f), R1_OK);
    ck_assert_int_eq(r1_sampler_set_top_k(smp, 40), R1_OK);
    ck_assert_int_eq(r1_sampler_set_min_p(smp, 0.05f), R1_OK);
    for (size_t i = 0; i < n; i++) {
        ref[2 * i] = l[i];
        ref[2 * i + 1] = (double)i;
    }
    qsort(ref, n, 2 * sizeof *ref, cmp_ref);
    size_t got = 0;
    ck_assert_int_eq(r1_sampler__distribution(smp, l, n, n, ids, probs, n, &got), R1_OK);
    size_t want = 0;
    for (size_t i = 0; i < 40; i++)
        want += exp((ref[2 * i] - ref[0]) / (double)0.6f) >= (double)0.05f;
    ck_assert_uint_eq(got, want);
    for (size_t i = 1; i < got; i++)
        ck_assert_int_lt(ids[i - 1], ids[i]); /* id order without top-p */
    free(l);
    free(ref);
    free(ids);
    free(probs);
}
END_TEST

START_TEST(test_sampler_validates_arguments)
{
    r1_sampler *none = NULL;
    ck_assert_int_eq(r1_sampler_create(NULL, 1), R1_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "out is NULL"));
    ck_assert_int_eq(r1_sampler_set_temperature(none, 1.0f), R1_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "sampler is NULL"));
    ck_assert_int_eq(r1_sampler_set_temperature(smp, NAN), R1_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "temperature"));
    ck_assert_int_eq(r1_sampler_set_temperature(smp, -0.1f), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_sampler_set_temperature(smp, INFINITY), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_sampler_set_top_k(smp, -1), R1_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "negative"));
    ck_assert_int_eq(r1_sampler_set_top_p(smp, 0.0f), R1_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "outside (0, 1]"));
    ck_assert_int_eq(r1_sampler_set_top_p(smp, 1.01f), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_sampler_set_top_p(smp, NAN), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_sampler_set_min_p(smp, -0.01f), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_sampler_set_min_p(smp, 1.5f), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_sampler_set_min_p(smp, NAN), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_sampler_set_penalties(smp, -1, 1.0f, 0.0f, 0.0f), R1_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "last_n"));
    ck_assert_int_eq(r1_sampler_set_penalties(smp, 64, 0.0f, 0.0f, 0.0f), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_sampler_set_penalties(smp, 64, NAN, 0.0f, 0.0f), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_sampler_set_penalties(smp, 64, 1.1f, NAN, 0.0f), R1_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "frequency"));
    ck_assert_int_eq(r1_sampler_set_penalties(smp, 64, 1.1f, 0.0f, INFINITY), R1_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "presence"));
    ck_assert_int_eq(r1_sampler_set_logit_bias(smp, -1, 1.0f), R1_ERR_OUT_OF_RANGE);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "id -1"));
    ck_assert_int_eq(r1_sampler_set_logit_bias(smp, 3, NAN), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_sampler_set_logit_bias(smp, 3, INFINITY), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_sampler_clear_logit_bias(none), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_sampler_reset(none), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_sampler_accept(none, 1), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_sampler_accept(smp, -2), R1_ERR_OUT_OF_RANGE);

    float l[3] = {0.0f, 1.0f, 2.0f};
    int32_t id;
    ck_assert_int_eq(r1_sampler_sample(none, l, 3, &id), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_sampler_sample(smp, NULL, 3, &id), R1_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "logits is NULL"));
    ck_assert_int_eq(r1_sampler_sample(smp, l, 3, NULL), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_sampler_sample(smp, l, 0, &id), R1_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "n_vocab"));
    l[1] = NAN;
    ck_assert_int_eq(r1_sampler_sample(smp, l, 3, &id), R1_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "logit 1 is NaN"));
    l[1] = INFINITY;
    ck_assert_int_eq(r1_sampler_sample(smp, l, 3, &id), R1_ERR_INVALID_ARG);
    l[1] = -INFINITY;
    ck_assert_int_eq(r1_sampler_sample(smp, l, 3, &id), R1_OK);
    ck_assert_int_ne(id, 1);
    ck_assert_str_eq(r1_last_error(), "");
    r1_sampler_destroy(NULL);
}
END_TEST

static Suite *sampler_suite(void)
{
    Suite *s = suite_create("sampler");
    TCase *stages = tcase_create("stages");
    tcase_add_checked_fixture(stages, setup_base, teardown);
    tcase_set_timeout(stages, 120);
    tcase_add_test(stages, test_sampler_softmax_at_temperature_1);
    tcase_add_test(stages, test_sampler_temperature_sharpens_and_flattens);
    tcase_add_test(stages, test_sampler_top_k_keeps_k_largest);
    tcase_add_test(stages, test_sampler_top_p_keeps_shortest_prefix);
    tcase_add_test(stages, test_sampler_top_p_orders_by_probability_then_id);
    tcase_add_test(stages, test_sampler_min_p_drops_unlikely);
    tcase_add_test(stages, test_sampler_repetition_penalty_divides_positive_multiplies_negative);
    tcase_add_test(stages, test_sampler_frequency_and_presence_penalties);
    tcase_add_test(stages, test_sampler_penalty_window_is_last_n);
    tcase_add_test(stages, test_sampler_logit_bias_shifts_and_bans);
    tcase_add_test(stages, test_sampler_greedy_takes_lowest_id_on_ties);
    tcase_add_test(stages, test_sampler_r1_defaults);
    suite_add_tcase(s, stages);
    TCase *draws = tcase_create("draws");
    tcase_add_checked_fixture(draws, setup, teardown);
    tcase_set_timeout(draws, 120);
    tcase_add_test(draws, test_sampler_same_seed_same_sequence_and_reset);
    tcase_add_test(draws, test_sampler_does_not_modify_logits);
    tcase_add_test(draws, test_sampler_masked_never_returns_padding);
    tcase_add_test(draws, test_sampler_large_vocab_matches_full_sort);
    suite_add_tcase(s, draws);
    TCase *args = tcase_create("arguments");
    tcase_add_checked_fixture(args, setup, teardown);
    tcase_add_test(args, test_sampler_validates_arguments);
    suite_add_tcase(s, args);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(sampler_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
