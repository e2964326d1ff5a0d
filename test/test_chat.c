/* test_chat.c: native chat rendering against the real templates' renderings, and its errors. */
#include <check.h>
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "r1.h"

#ifndef R1_TEST_DATA_DIR
#define R1_TEST_DATA_DIR "test/data"
#endif

#define BOS "<\357\275\234begin\342\226\201of\342\226\201sentence\357\275\234>"

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    ck_assert_int_ge(n, 0);
    rewind(f);
    char *s = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = '\0';
    fclose(f);
    return s;
}

static int32_t role_of(const char *name)
{
    if (strcmp(name, "system") == 0)
        return R1_CHAT__ROLE_SYSTEM;
    if (strcmp(name, "user") == 0)
        return R1_CHAT__ROLE_USER;
    ck_assert_str_eq(name, "assistant");
    return R1_CHAT__ROLE_ASSISTANT;
}

START_TEST(test_chat_matches_template_renderings)
{
    char *text = read_file(R1_TEST_DATA_DIR "/chat/renderings.json");
    cJSON *all = cJSON_Parse(text);
    ck_assert_ptr_nonnull(all);
    int n_cases = cJSON_GetArraySize(all);
    ck_assert_int_ge(n_cases, 40);
    int n_r1 = 0, n_v3 = 0;
    for (int c = 0; c < n_cases; c++) {
        const cJSON *e = cJSON_GetArrayItem(all, c);
        const char *flavour = cJSON_GetObjectItem(e, "flavour")->valuestring;
        const char *bos = cJSON_GetObjectItem(e, "bos")->valuestring;
        const char *expected = cJSON_GetObjectItem(e, "expected")->valuestring;
        int32_t add_gen = cJSON_IsTrue(cJSON_GetObjectItem(e, "add_generation_prompt"));
        const cJSON *msgs = cJSON_GetObjectItem(e, "messages");
        size_t n = (size_t)cJSON_GetArraySize(msgs);
        int32_t roles[16];
        const char *contents[16];
        ck_assert_uint_le(n, 16);
        for (size_t i = 0; i < n; i++) {
            const cJSON *m = cJSON_GetArrayItem(msgs, (int)i);
            roles[i] = role_of(cJSON_GetObjectItem(m, "role")->valuestring);
            contents[i] = cJSON_GetObjectItem(m, "content")->valuestring;
        }
        int32_t fl = strcmp(flavour, "r1") == 0 ? R1_CHAT__FLAVOUR_R1 : R1_CHAT__FLAVOUR_V3;
        n_r1 += fl == R1_CHAT__FLAVOUR_R1;
        n_v3 += fl == R1_CHAT__FLAVOUR_V3;

        /* Size query first, as a caller would, then the real call. */
        size_t need = 0;
        ck_assert_int_eq(r1_chat__render(fl, bos, roles, contents, n, add_gen, NULL, 0, &need),
                         R1_ERR_BUFFER_TOO_SMALL);
        ck_assert_uint_eq(need, strlen(expected));
        char *buf = malloc(need + 1);
        ck_assert_ptr_nonnull(buf);
        size_t len = 0;
        ck_assert_int_eq(r1_chat__render(fl, bos, roles, contents, n, add_gen, buf, need + 1, &len),
                         R1_OK);
        ck_assert_uint_eq(len, need);
        ck_assert_msg(memcmp(buf, expected, len + 1) == 0, "case %d (%s): got '%s', want '%s'", c,
                      flavour, buf, expected);
        free(buf);
    }
    ck_assert_int_ge(n_r1, 20);
    ck_assert_int_ge(n_v3, 20);
    cJSON_Delete(all);
    free(text);
}
END_TEST

START_TEST(test_chat_r1_drops_reasoning_keeps_untrimmed_answer)
{
    const int32_t roles[] = {R1_CHAT__ROLE_USER, R1_CHAT__ROLE_ASSISTANT};
    const char *contents[] = {"q", "<think>a</think>b</think>\n\n c "};
    char buf[256];
    size_t len = 0;
    ck_assert_int_eq(
        r1_chat__render(R1_CHAT__FLAVOUR_R1, "", roles, contents, 2, 0, buf, sizeof buf, &len),
        R1_OK);
    const char *want = "<\357\275\234User\357\275\234>q<\357\275\234Assistant\357\275\234>\n\n c "
                       "<\357\275\234end\342\226\201of\342\226\201sentence\357\275\234>";
    ck_assert_str_eq(buf, want);
    ck_assert_uint_eq(len, strlen(want));
}
END_TEST

START_TEST(test_chat_buffer_too_small_reports_size)
{
    const int32_t roles[] = {R1_CHAT__ROLE_USER};
    const char *contents[] = {"What is 1+1?"};
    size_t need = 0;
    ck_assert_int_eq(
        r1_chat__render(R1_CHAT__FLAVOUR_R1, BOS, roles, contents, 1, 1, NULL, 0, &need),
        R1_ERR_BUFFER_TOO_SMALL);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "bytes needed"));
    /* Room for the text but not its NUL is still too small, and nothing half-written shows. */
    char *buf = malloc(need + 1);
    ck_assert_ptr_nonnull(buf);
    size_t len = 0;
    ck_assert_int_eq(
        r1_chat__render(R1_CHAT__FLAVOUR_R1, BOS, roles, contents, 1, 1, buf, need, &len),
        R1_ERR_BUFFER_TOO_SMALL);
    ck_assert_uint_eq(len, need);
    ck_assert_str_eq(buf, "");
    ck_assert_int_eq(
        r1_chat__render(R1_CHAT__FLAVOUR_R1, BOS, roles, contents, 1, 1, buf, need + 1, &len),
        R1_OK);
    ck_assert_uint_eq(strlen(buf), need);
    free(buf);
}
END_TEST

START_TEST(test_chat_invalid_utf8_names_message_and_offset)
{
    const int32_t roles[] = {R1_CHAT__ROLE_USER, R1_CHAT__ROLE_ASSISTANT, R1_CHAT__ROLE_USER};
    const char *bad[] = {
        "ab\xc3",           /* truncated 2-byte sequence at 2 */
        "abc\xc0\xaf",      /* overlong at 3 */
        "abcd\xed\xa0\x80", /* surrogate at 4 */
        "\xf4\x90\x80\x80", /* past U+10FFFF at 0 */
        "ok \xe2\x82",      /* truncated 3-byte at 3 */
        "\x80",             /* lone continuation at 0 */
    };
    const size_t at[] = {2, 3, 4, 0, 3, 0};
    char buf[512];
    size_t len = 0;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *contents[] = {"fine \xe2\x82\xac \xf0\x9f\x98\x80", "also fine", bad[i]};
        ck_assert_int_eq(
            r1_chat__render(R1_CHAT__FLAVOUR_R1, BOS, roles, contents, 3, 1, buf, sizeof buf, &len),
            R1_ERR_INVALID_UTF8);
        char want[64];
        snprintf(want, sizeof want, "message 2 is not valid UTF-8 at byte %zu", at[i]);
        ck_assert_msg(strstr(r1_last_error(), want) != NULL, "case %zu: %s", i, r1_last_error());
    }
}
END_TEST

START_TEST(test_chat_rejects_unknown_role_and_bad_args)
{
    char buf[256];
    size_t len = 0;
    const int32_t tool[] = {R1_CHAT__ROLE_USER, 3};
    const char *contents[] = {"q", "tool output"};
    ck_assert_int_eq(
        r1_chat__render(R1_CHAT__FLAVOUR_R1, BOS, tool, contents, 2, 1, buf, sizeof buf, &len),
        R1_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "message 1 has role 3"));
    const int32_t negative[] = {-1};
    ck_assert_int_eq(
        r1_chat__render(R1_CHAT__FLAVOUR_R1, BOS, negative, contents, 1, 1, buf, sizeof buf, &len),
        R1_ERR_INVALID_ARG);

    const int32_t roles[] = {R1_CHAT__ROLE_USER, R1_CHAT__ROLE_USER};
    const char *with_null[] = {"q", NULL};
    ck_assert_int_eq(
        r1_chat__render(R1_CHAT__FLAVOUR_R1, BOS, roles, with_null, 2, 1, buf, sizeof buf, &len),
        R1_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "contents[1] is NULL"));
    ck_assert_int_eq(
        r1_chat__render(R1_CHAT__FLAVOUR_R1, BOS, roles, contents, 1, 1, buf, sizeof buf, NULL),
        R1_ERR_INVALID_ARG);
    ck_assert_int_eq(
        r1_chat__render(R1_CHAT__FLAVOUR_R1, NULL, roles, contents, 1, 1, buf, sizeof buf, &len),
        R1_ERR_INVALID_ARG);
    ck_assert_int_eq(
        r1_chat__render(R1_CHAT__FLAVOUR_R1, BOS, NULL, contents, 1, 1, buf, sizeof buf, &len),
        R1_ERR_INVALID_ARG);
    ck_assert_int_eq(
        r1_chat__render(R1_CHAT__FLAVOUR_R1, BOS, roles, NULL, 1, 1, buf, sizeof buf, &len),
        R1_ERR_INVALID_ARG);
    ck_assert_int_eq(
        r1_chat__render(R1_CHAT__FLAVOUR_R1, BOS, roles, contents, 1, 1, NULL, 8, &len),
        R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_chat__render(7, BOS, roles, contents, 1, 1, buf, sizeof buf, &len),
                     R1_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "flavour 7"));
    ck_assert_int_eq(
        r1_chat__render(R1_CHAT__FLAVOUR_R1, BOS, roles, contents, 1, 2, buf, sizeof buf, &len),
        R1_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "add_generation_prompt"));
    /* No messages at all is valid: BOS and the generation prompt. */
    ck_assert_int_eq(
        r1_chat__render(R1_CHAT__FLAVOUR_V3, "", NULL, NULL, 0, 0, buf, sizeof buf, &len), R1_OK);
    ck_assert_uint_eq(len, 0);
    ck_assert_str_eq(buf, "");
}
END_TEST

static Suite *chat_suite(void)
{
    Suite *s = suite_create("chat");
    TCase *render = tcase_create("rendering");
    tcase_add_test(render, test_chat_matches_template_renderings);
    tcase_add_test(render, test_chat_r1_drops_reasoning_keeps_untrimmed_answer);
    suite_add_tcase(s, render);
    TCase *errors = tcase_create("errors");
    tcase_add_test(errors, test_chat_buffer_too_small_reports_size);
    tcase_add_test(errors, test_chat_invalid_utf8_names_message_and_offset);
    tcase_add_test(errors, test_chat_rejects_unknown_role_and_bad_args);
    suite_add_tcase(s, errors);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(chat_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
