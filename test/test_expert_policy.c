/* test_expert_policy.c: eviction order of the expert store's policies (LRU, decayed counts). */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "expert_policy.h"

static r1_expert_policy *p;

static int any(void *ctx, int32_t layer, int32_t expert)
{
    (void)ctx;
    (void)layer;
    (void)expert;
    return 1;
}

/* ctx points at an (layer, expert) pair that is pinned. */
static int not_pinned(void *ctx, int32_t layer, int32_t expert)
{
    const int32_t *pin = ctx;
    return !(layer == pin[0] && expert == pin[1]);
}

static int none(void *ctx, int32_t layer, int32_t expert)
{
    (void)ctx;
    (void)layer;
    (void)expert;
    return 0;
}

/* The victim as layer * 100 + expert, or -1 when there is none. */
static int victim_of(r1_expert_policy *q, int (*ok)(void *, int32_t, int32_t), void *ctx)
{
    int32_t l = -1, e = -1;
    if (!r1_expert_policy__victim(q, ok, ctx, &l, &e))
        return -1;
    return l * 100 + e;
}

/* A demand miss as the store reports it: the use, then the insert. */
static void demand(r1_expert_policy *q, int32_t layer, int32_t expert)
{
    r1_expert_policy__on_access(q, layer, expert);
    r1_expert_policy__on_insert(q, layer, expert, 0);
}

static void setup_lru(void)
{
    ck_assert_int_eq(r1_expert_policy__create(&p, R1_EXPERT_POLICY_LRU, 3, 8), R1_OK);
}

static void setup_default(void)
{
    ck_assert_int_eq(r1_expert_policy__create(&p, R1_EXPERT_POLICY_DEFAULT, 3, 8), R1_OK);
}

static void teardown(void)
{
    r1_expert_policy__destroy(p);
    p = NULL;
}

START_TEST(test_expert_policy_create_rejects)
{
    r1_expert_policy *q = (r1_expert_policy *)1;
    ck_assert_int_eq(r1_expert_policy__create(&q, 7, 3, 8), R1_ERR_INVALID_ARG);
    ck_assert_ptr_null(q);
    ck_assert_int_eq(r1_expert_policy__create(&q, R1_EXPERT_POLICY_LRU, -1, 8), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_expert_policy__create(&q, R1_EXPERT_POLICY_LRU, INT32_MAX, 8),
                     R1_ERR_INVALID_ARG);
    r1_expert_policy__destroy(NULL);
}
END_TEST

START_TEST(test_expert_policy_lru_order)
{
    ck_assert_int_eq(victim_of(p, any, NULL), -1);
    demand(p, 0, 1);
    demand(p, 1, 2);
    demand(p, 2, 3);
    ck_assert_int_eq(r1_expert_policy__resident(p), 3);
    ck_assert_int_eq(victim_of(p, any, NULL), 1);
    r1_expert_policy__on_access(p, 0, 1); /* a hit makes it the most recent */
    ck_assert_int_eq(victim_of(p, any, NULL), 102);
    int32_t pin[2] = {1, 2};
    ck_assert_int_eq(victim_of(p, not_pinned, pin), 203);
    ck_assert_int_eq(victim_of(p, none, NULL), -1);
    r1_expert_policy__on_evict(p, 1, 2);
    ck_assert_int_eq(r1_expert_policy__resident(p), 2);
    ck_assert_int_eq(victim_of(p, any, NULL), 203);
    r1_expert_policy__on_evict(p, 1, 2);     /* not resident: ignored */
    r1_expert_policy__on_insert(p, 2, 3, 0); /* resident: ignored, stays the oldest */
    ck_assert_int_eq(r1_expert_policy__resident(p), 2);
    ck_assert_int_eq(victim_of(p, any, NULL), 203);
}
END_TEST

/* Plain LRU ignores how often an expert was used: the frequent one goes first. */
START_TEST(test_expert_policy_lru_ignores_frequency)
{
    demand(p, 0, 0);
    for (int i = 0; i < 5; i++)
        r1_expert_policy__on_access(p, 0, 0);
    demand(p, 0, 1);
    ck_assert_int_eq(victim_of(p, any, NULL), 0);
}
END_TEST

/* Same layer, both used in this pass: the one used in each of the 40 passes before stays. */
START_TEST(test_expert_policy_default_keeps_frequent)
{
    for (int i = 0; i < 40; i++) {
        demand(p, 0, 0);
        r1_expert_policy__on_pass(p);
    }
    demand(p, 0, 0);
    demand(p, 0, 1); /* more recent, used once */
    ck_assert_int_eq(victim_of(p, any, NULL), 1);
    int32_t pin[2] = {0, 1};
    ck_assert_int_eq(victim_of(p, not_pinned, pin), 0);
}
END_TEST

/* Equal counts in the same pass and layer: the least recent goes first. */
START_TEST(test_expert_policy_default_ties_by_recency)
{
    demand(p, 2, 5);
    demand(p, 2, 4);
    demand(p, 2, 3);
    ck_assert_int_eq(victim_of(p, any, NULL), 205);
    r1_expert_policy__on_evict(p, 2, 5);
    ck_assert_int_eq(victim_of(p, any, NULL), 204);
}
END_TEST

/* Equal histories: the expert whose layer is furthest ahead goes first, the one of the layer
 * that has just run (a whole pass away) before all; LRU would drop the oldest, 0/0. */
START_TEST(test_expert_policy_default_layer_distance)
{
    demand(p, 0, 0); /* pass 0: every layer once */
    demand(p, 1, 0);
    demand(p, 2, 0);
    r1_expert_policy__on_pass(p);
    demand(p, 0, 1); /* pass 1, now at layer 1 */
    demand(p, 1, 1);
    int32_t pin[2] = {1, 1};
    /* chance of use: 1/4 for pass-0 experts, 1/2 for 0/1; layers ahead: 2 for layer 0, 1 for
     * layer 2, 3 for layer 1 (the whole pass): room per hit 12 (1/0), 8 (0/0), 4 (0/1, 2/0) */
    ck_assert_int_eq(victim_of(p, not_pinned, pin), 100);
    r1_expert_policy__on_evict(p, 1, 0);
    ck_assert_int_eq(victim_of(p, not_pinned, pin), 0);
    r1_expert_policy__on_evict(p, 0, 0);
    ck_assert_int_eq(victim_of(p, not_pinned, pin), 200); /* tie with 0/1: the older */
}
END_TEST

/* Ten uses long ago against one use two passes ago (same layer): with half-life H = 32, the old
 * ones are worth sum 2^(-j/H) / (1 / (1 - 2^(-1/H))) for j = k .. k + 9 passes ago, the recent
 * one 2^-2 / 2 by the one-pass half-life: 0.17 > 0.125 at k = 5, 0.02 < 0.125 at k = 100. */
static int decay_victim(int k)
{
    r1_expert_policy *q = NULL;
    ck_assert_int_eq(r1_expert_policy__create(&q, R1_EXPERT_POLICY_DEFAULT, 3, 8), R1_OK);
    for (int i = 0; i < 10; i++) {
        demand(q, 0, 0);
        r1_expert_policy__on_pass(q);
    }
    for (int i = 0; i < k - 2; i++)
        r1_expert_policy__on_pass(q);
    demand(q, 0, 1);
    r1_expert_policy__on_pass(q);
    r1_expert_policy__on_pass(q);
    int v = victim_of(q, any, NULL);
    r1_expert_policy__destroy(q);
    return v;
}

START_TEST(test_expert_policy_default_decay)
{
    ck_assert_int_eq(R1_EXPERT_POLICY_HALF_LIFE, 32);
    ck_assert_int_eq(decay_victim(5), 1);
    ck_assert_int_eq(decay_victim(100), 0);
}
END_TEST

/* The evicted expert's history survives: asked for again, it stays ahead of a newcomer used
 * once in the same pass, although the newcomer is the more recent. */
START_TEST(test_expert_policy_default_remembers_evicted)
{
    for (int i = 0; i < 100; i++) {
        demand(p, 1, 1);
        r1_expert_policy__on_pass(p);
    }
    r1_expert_policy__on_evict(p, 1, 1);
    for (int i = 0; i < 6; i++)
        r1_expert_policy__on_pass(p);
    demand(p, 1, 1);
    demand(p, 1, 2);
    ck_assert_int_eq(victim_of(p, any, NULL), 102);
}
END_TEST

/* A prefetch is a certain use only while pending, and adds no use: the demand that confirms
 * it counts once; if evicted unused it leaves nothing. */
START_TEST(test_expert_policy_default_prefetch_credit)
{
    demand(p, 0, 3);
    r1_expert_policy__on_insert(p, 0, 2, 1);
    ck_assert_int_eq(victim_of(p, any, NULL), 3); /* the prediction outranks a use */
    r1_expert_policy__on_access(p, 0, 2);         /* the credit is consumed: one use each */
    ck_assert_int_eq(victim_of(p, any, NULL), 3); /* equal: 0/3 is the older */
    r1_expert_policy__on_access(p, 0, 3);
    ck_assert_int_eq(victim_of(p, any, NULL), 2); /* 0/3 now has two uses */

    /* Prefetched and evicted unused: its history is back to nothing, so resident again
     * without a use it is the first to go. */
    r1_expert_policy__on_insert(p, 2, 7, 1);
    r1_expert_policy__on_evict(p, 2, 7);
    r1_expert_policy__on_insert(p, 2, 7, 0);
    ck_assert_int_eq(victim_of(p, any, NULL), 207);
}
END_TEST

/* A prediction its layer did not confirm ranks by its own history, not as a use: never used,
 * it goes first; used once before, it keeps that use. */
START_TEST(test_expert_policy_default_unconfirmed)
{
    demand(p, 0, 3);
    r1_expert_policy__on_insert(p, 1, 4, 1);
    ck_assert_int_eq(victim_of(p, any, NULL), 3); /* pending: kept like a certain use */
    r1_expert_policy__on_unconfirmed(p, 1, 4);
    ck_assert_int_eq(victim_of(p, any, NULL), 104); /* no use at all */
    r1_expert_policy__on_unconfirmed(p, 0, 3);      /* not a prediction: ignored */
    r1_expert_policy__on_access(p, 1, 4);           /* a later demand is a use */
    r1_expert_policy__on_access(p, 1, 4);
    ck_assert_int_eq(victim_of(p, any, NULL), 3);
}
END_TEST

/* LRU: a prediction is as recent as its insert while pending; unconfirmed, as recent as its
 * last demand use. */
START_TEST(test_expert_policy_lru_unconfirmed)
{
    demand(p, 0, 6);
    r1_expert_policy__on_evict(p, 0, 6);
    demand(p, 0, 1);
    demand(p, 0, 2);
    r1_expert_policy__on_insert(p, 0, 6, 1);
    r1_expert_policy__on_insert(p, 0, 7, 1);
    ck_assert_int_eq(victim_of(p, any, NULL), 1);
    r1_expert_policy__on_unconfirmed(p, 0, 6);
    ck_assert_int_eq(victim_of(p, any, NULL), 6); /* used before (0, 1) */
    r1_expert_policy__on_evict(p, 0, 6);
    r1_expert_policy__on_unconfirmed(p, 0, 7);
    ck_assert_int_eq(victim_of(p, any, NULL), 7); /* never used */
}
END_TEST

/* Thousands of passes rescale the counts without losing their order or overflowing. */
START_TEST(test_expert_policy_default_rebase)
{
    for (int i = 0; i < 20000; i++) {
        demand(p, 0, 0);
        if (i % 4 == 0)
            demand(p, 0, 1);
        r1_expert_policy__on_pass(p);
    }
    ck_assert_int_eq(victim_of(p, any, NULL), 1);
    r1_expert_policy__on_insert(p, 2, 2, 0); /* resident, never used */
    ck_assert_int_eq(victim_of(p, any, NULL), 202);
}
END_TEST

/* The lookahead's predictions: distinct experts surest first (ties in order of appearance),
 * the first half of them, or those at least 0.75 x the mean weight. */
START_TEST(test_expert_policy_predict_one_token)
{
    const int32_t ids[6] = {3, 7, 9, 12, 20, 41};
    const float w[6] = {0.15f, 0.3f, 0.04f, 0.2f, 0.25f, 0.06f};
    const int32_t order[6] = {7, 20, 12, 3, 41, 9};
    int32_t sel[6];
    float selw[6];
    memcpy(sel, ids, sizeof sel);
    memcpy(selw, w, sizeof selw);
    ck_assert_int_eq(r1_expert_policy__predict(sel, selw, 6, R1_PREDICT_SUREST_HALF), 3);
    for (int i = 0; i < 6; i++)
        ck_assert_int_eq(sel[i], order[i]);
    memcpy(sel, ids, sizeof sel);
    memcpy(selw, w, sizeof selw);
    /* the mean is 1/6; 0.15 >= 0.75/6 = 0.125 > 0.06 */
    ck_assert_int_eq(r1_expert_policy__predict(sel, selw, 6, R1_PREDICT_CONFIDENT), 4);
    for (int i = 0; i < 6; i++)
        ck_assert_int_eq(sel[i], order[i]);
    ck_assert_float_eq(selw[0], 0.3f);
    ck_assert_float_eq(selw[5], 0.04f);
}
END_TEST

START_TEST(test_expert_policy_predict_chunk)
{
    /* two tokens of three picks: 5 twice (0.2 + 0.3), 8 and 2 once each, 6 twice (0.1 + 0.1) */
    int32_t sel[6] = {5, 8, 6, 6, 2, 5};
    float selw[6] = {0.2f, 0.4f, 0.1f, 0.1f, 0.45f, 0.3f};
    ck_assert_int_eq(r1_expert_policy__predict(sel, selw, 6, R1_PREDICT_SUREST_HALF), 2);
    const int32_t order[4] = {5, 2, 8, 6};
    const float sum[4] = {0.5f, 0.45f, 0.4f, 0.2f};
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(sel[i], order[i]);
        ck_assert_float_eq_tol(selw[i], sum[i], 1e-6f);
    }
    memcpy(sel, (int32_t[6]){5, 8, 6, 6, 2, 5}, sizeof sel);
    memcpy(selw, (float[6]){0.2f, 0.4f, 0.1f, 0.1f, 0.45f, 0.3f}, sizeof selw);
    /* mean 1.55 / 4; 0.4 >= 0.75 x 0.3875 > 0.2 */
    ck_assert_int_eq(r1_expert_policy__predict(sel, selw, 6, R1_PREDICT_CONFIDENT), 3);
    /* equal weights: all of them are confident, in order of appearance */
    memcpy(sel, (int32_t[3]){4, 1, 9}, 3 * sizeof *sel);
    memcpy(selw, (float[3]){0.5f, 0.5f, 0.5f}, 3 * sizeof *selw);
    ck_assert_int_eq(r1_expert_policy__predict(sel, selw, 3, R1_PREDICT_CONFIDENT), 3);
    ck_assert_int_eq(sel[0], 4);
    ck_assert_int_eq(sel[2], 9);
}
END_TEST

static Suite *expert_policy_suite(void)
{
    Suite *s = suite_create("expert_policy");
    TCase *t = tcase_create("create");
    tcase_add_test(t, test_expert_policy_create_rejects);
    suite_add_tcase(s, t);
    t = tcase_create("lru");
    tcase_add_checked_fixture(t, setup_lru, teardown);
    tcase_add_test(t, test_expert_policy_lru_order);
    tcase_add_test(t, test_expert_policy_lru_ignores_frequency);
    tcase_add_test(t, test_expert_policy_lru_unconfirmed);
    suite_add_tcase(s, t);
    t = tcase_create("default");
    tcase_add_checked_fixture(t, setup_default, teardown);
    tcase_add_test(t, test_expert_policy_default_keeps_frequent);
    tcase_add_test(t, test_expert_policy_default_ties_by_recency);
    tcase_add_test(t, test_expert_policy_default_layer_distance);
    tcase_add_test(t, test_expert_policy_default_decay);
    tcase_add_test(t, test_expert_policy_default_remembers_evicted);
    tcase_add_test(t, test_expert_policy_default_prefetch_credit);
    tcase_add_test(t, test_expert_policy_default_unconfirmed);
    tcase_add_test(t, test_expert_policy_default_rebase);
    suite_add_tcase(s, t);
    t = tcase_create("predict");
    tcase_add_test(t, test_expert_policy_predict_one_token);
    tcase_add_test(t, test_expert_policy_predict_chunk);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(expert_policy_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
