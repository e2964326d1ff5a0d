/* test_tiny_r1.c: the shipped model examples/tiny-r1/tiny-r1.r1m through the public API, used as
 * a newcomer would (default options), against the README's transcript and PyTorch's outputs. */
#include <check.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "r1.h"

static r1_model *model;

static r1_model *load(const char *path)
{
    r1_model *m = NULL;
    ck_assert_msg(r1_model_load(&m, path, NULL, NULL) == R1_OK, "%s: %s", path, r1_last_error());
    return m;
}

static void setup(void)
{
    model = load(R1_TINY_R1_MODEL);
}

static void teardown(void)
{
    r1_model_destroy(model);
}

typedef struct answer {
    int32_t ids[256];
    int n;
    char text[2][1024]; /* reasoning, answer */
    r1_status end;
} answer;

/* Asks QUESTION as one user turn with default session options, greedily, to the end. */
static void ask(const char *question, answer *a)
{
    memset(a, 0, sizeof *a);
    const int32_t role = R1_ROLE_USER;
    char prompt[1024];
    size_t len = 0;
    ck_assert_int_eq(r1_chat_render(model, &role, &question, 1, 1, prompt, sizeof prompt, &len),
                     R1_OK);
    r1_session *s = NULL;
    ck_assert_msg(r1_session_create(&s, model, NULL) == R1_OK, "%s", r1_last_error());
    r1_sampler *smp = NULL;
    ck_assert_int_eq(r1_sampler_create(&smp, 1), R1_OK);
    ck_assert_int_eq(r1_sampler_set_temperature(smp, 0.0f), R1_OK);
    ck_assert_int_eq(r1_session_feed_text(s, prompt, len, R1_TOKENIZE_PARSE_SPECIAL), R1_OK);
    ck_assert_int_eq(r1_session_begin(s, smp, NULL), R1_OK);
    int32_t id, kind;
    while ((a->end = r1_session_step(s, &id, &kind)) >= R1_OK) {
        const char *piece;
        size_t n;
        ck_assert_int_eq(r1_session_piece(s, &piece, &n), R1_OK);
        if (n > 0) {
            ck_assert(kind == R1_PIECE_REASONING || kind == R1_PIECE_ANSWER);
            strncat(a->text[kind], piece, sizeof a->text[kind] - strlen(a->text[kind]) - 1);
        }
        if (id >= 0) { /* the end of sentence comes with R1_DONE */
            ck_assert_int_lt(a->n, 256);
            a->ids[a->n++] = id;
        }
        if (a->end == R1_DONE)
            break;
    }
    ck_assert_msg(a->end == R1_DONE, "%s: %s", r1_status_name(a->end), r1_last_error());
    r1_sampler_destroy(smp);
    r1_session_destroy(s);
}

/* The transcript of README.md and examples/tiny-r1/README.md, token for token of text. */
START_TEST(test_tiny_r1_answers_the_readme_question)
{
    answer a;
    ask("What is 347 + 285?", &a);
    ck_assert_str_eq(a.text[R1_PIECE_REASONING], "347+285\n7+5+0=12\n4+8+1=13\n3+2+1=06\n=0632\n");
    ck_assert_str_eq(a.text[R1_PIECE_ANSWER], "\n\nThe answer is 632.");
    int32_t think_close;
    ck_assert_int_eq(r1_token_find(model, "</think>", &think_close), R1_OK);
    int closed_at = -1; /* the tag's text is not part of either piece kind */
    for (int i = a.n - 1; i >= 0; i--)
        closed_at = a.ids[i] == think_close ? i : closed_at;
    ck_assert_int_gt(closed_at, 20);                       /* after the working */
    ck_assert_int_eq(a.ids[a.n - 1], r1_token_eos(model)); /* it stopped by itself */
}
END_TEST

START_TEST(test_tiny_r1_answers_a_worded_addition)
{
    answer a;
    ask("Tom has 347 apples and buys 285 more. How many apples does he have now?", &a);
    ck_assert_str_eq(a.text[R1_PIECE_ANSWER], "\n\nThe answer is 632 apples.");
    ck_assert_ptr_nonnull(strstr(a.text[R1_PIECE_REASONING], "\n=0632\n"));
}
END_TEST

/* Every plain held-out addition of examples/tiny-r1/results/torch_greedy.jsonl (79, all right in
 * PyTorch): the same prompt ids from the chat template and tokenizer, the same greedy output ids
 * as PyTorch's, and the expected answer. */
START_TEST(test_tiny_r1_matches_pytorch_on_plain_additions)
{
    FILE *f = fopen(R1_TINY_R1_GREEDY, "r");
    ck_assert_msg(f != NULL, "%s", R1_TINY_R1_GREEDY);
    static char line[65536];
    int checked = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        cJSON *j = cJSON_Parse(line);
        ck_assert_ptr_nonnull(j);
        const cJSON *cat = cJSON_GetObjectItem(j, "category");
        if (strcmp(cat->valuestring, "add") != 0 ||
            cJSON_IsTrue(cJSON_GetObjectItem(j, "worded"))) {
            cJSON_Delete(j);
            continue;
        }
        const char *question = cJSON_GetObjectItem(j, "question")->valuestring;
        const int32_t role = R1_ROLE_USER;
        char prompt[1024];
        int32_t ids[256];
        size_t len = 0, n_ids = 0;
        ck_assert_int_eq(r1_chat_render(model, &role, &question, 1, 1, prompt, sizeof prompt, &len),
                         R1_OK);
        ck_assert_int_eq(
            r1_tokenize(model, prompt, len, R1_TOKENIZE_PARSE_SPECIAL, ids, 256, &n_ids), R1_OK);
        const cJSON *want_prompt = cJSON_GetObjectItem(j, "prompt_ids");
        ck_assert_int_eq((int)n_ids, cJSON_GetArraySize(want_prompt));
        for (size_t i = 0; i < n_ids; i++)
            ck_assert_int_eq(ids[i], cJSON_GetArrayItem(want_prompt, (int)i)->valueint);
        answer a;
        ask(question, &a);
        const cJSON *want = cJSON_GetObjectItem(j, "output_ids");
        ck_assert_msg(a.n == cJSON_GetArraySize(want), "%s: %d ids, PyTorch %d", question, a.n,
                      cJSON_GetArraySize(want));
        for (int i = 0; i < a.n; i++)
            ck_assert_msg(a.ids[i] == cJSON_GetArrayItem(want, i)->valueint,
                          "%s: id %d is %d, PyTorch %d", question, i, a.ids[i],
                          cJSON_GetArrayItem(want, i)->valueint);
        const char *expected = cJSON_GetObjectItem(j, "expected")->valuestring;
        ck_assert_msg(strcmp(a.text[R1_PIECE_ANSWER] + 2, expected) == 0, "%s: '%s', want '%s'",
                      question, a.text[R1_PIECE_ANSWER], expected);
        checked++;
        cJSON_Delete(j);
    }
    fclose(f);
    ck_assert_int_eq(checked, 79);
}
END_TEST

/* Used positions until R1_ERR_CONTEXT_FULL, feeding one chunk of ids at a time. */
static int64_t context_of(r1_session *s)
{
    static int32_t ids[512];
    for (int i = 0; i < 512; i++)
        ids[i] = 32 + i % 64;
    r1_status st;
    while ((st = r1_session_eval(s, ids, 512)) == R1_OK)
        ;
    ck_assert_int_eq(st, R1_ERR_CONTEXT_FULL);
    while ((st = r1_session_eval(s, ids, 1)) == R1_OK)
        ;
    ck_assert_int_eq(st, R1_ERR_CONTEXT_FULL);
    return r1_session_position(s);
}

/* A model made for fewer than 4096 positions (tiny-r1: 1024) gets its maximum by default, with
 * NULL options and with options whose context was never set; a context set above the maximum is
 * refused, not shortened. */
START_TEST(test_tiny_r1_default_context_is_the_model_maximum)
{
    r1_session *s = NULL;
    ck_assert_msg(r1_session_create(&s, model, NULL) == R1_OK, "%s", r1_last_error());
    ck_assert_int_eq(context_of(s), 1024);
    r1_session_destroy(s);
    r1_session_opts *so = NULL;
    ck_assert_int_eq(r1_session_opts_create(&so), R1_OK);
    ck_assert_int_eq(r1_session_opts_set_logits_all(so, 1), R1_OK);
    ck_assert_msg(r1_session_create(&s, model, so) == R1_OK, "%s", r1_last_error());
    ck_assert_int_eq(context_of(s), 1024);
    r1_session_destroy(s);
    ck_assert_int_eq(r1_session_opts_set_context(so, 1025), R1_OK);
    ck_assert_int_eq(r1_session_create(&s, model, so), R1_ERR_INVALID_ARG);
    ck_assert_ptr_null(s);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "exceeds the model's maximum 1024"));
    ck_assert_int_eq(r1_session_opts_set_context(so, 1024), R1_OK);
    ck_assert_int_eq(r1_session_create(&s, model, so), R1_OK);
    r1_session_destroy(s);
    r1_session_opts_destroy(so);
}
END_TEST

/* A model made for more (tiny-v3: 163840) gets 4096 by default. */
START_TEST(test_tiny_r1_default_context_is_4096_below_a_larger_maximum)
{
    r1_model *m = load(R1_TEST_MODELS_DIR "/tiny-v3-q8_0.r1m");
    r1_model_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = (uint32_t)sizeof info;
    ck_assert_int_eq(r1_model_get_info(m, &info), R1_OK);
    ck_assert_int_gt(info.max_position_embeddings, 4096);
    r1_session *s = NULL;
    ck_assert_msg(r1_session_create(&s, m, NULL) == R1_OK, "%s", r1_last_error());
    ck_assert_int_eq(context_of(s), 4096);
    r1_session_destroy(s);
    r1_model_destroy(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("tiny_r1");
    TCase *tc = tcase_create("shipped_model");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_tiny_r1_answers_the_readme_question);
    tcase_add_test(tc, test_tiny_r1_answers_a_worded_addition);
    tcase_add_test(tc, test_tiny_r1_matches_pytorch_on_plain_additions);
    tcase_add_test(tc, test_tiny_r1_default_context_is_the_model_maximum);
    tcase_add_test(tc, test_tiny_r1_default_context_is_4096_below_a_larger_maximum);
    tcase_set_timeout(tc, 300);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
