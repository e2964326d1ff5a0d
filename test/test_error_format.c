/* test_error_format.c: r1_error__set may quote the calling thread's current message. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

START_TEST(test_error_format_may_quote_the_current_message)
{
    /* lib/model/model.c and lib/format/convert.c add context this way; it used to vsnprintf the
     * buffer into itself, overwriting the quoted text while reading it */
    r1_error__set(R1_ERR_NOT_FOUND, "no metadata entry '%s'", "tokenizer.blob");
    ck_assert_int_eq(
        r1_error__set(R1_ERR_FORMAT, "the model file has no tokenizer: %s", r1_error__message()),
        R1_ERR_FORMAT);
    ck_assert_str_eq(r1_error__message(),
                     "the model file has no tokenizer: no metadata entry 'tokenizer.blob'");
    /* twice nested, and with the quoted message first */
    r1_error__set(R1_ERR_IO, "%s (while converting)", r1_error__message());
    ck_assert_str_eq(r1_error__message(), "the model file has no tokenizer: no metadata entry "
                                          "'tokenizer.blob' (while converting)");
}
END_TEST

START_TEST(test_error_format_quoting_a_full_message_truncates)
{
    char long_text[2000];
    memset(long_text, 'x', sizeof long_text - 1);
    long_text[sizeof long_text - 1] = '\0';
    r1_error__set(R1_ERR_IO, "%s", long_text);
    size_t full = strlen(r1_error__message());
    ck_assert_uint_gt(full, 500);
    r1_error__set(R1_ERR_IO, "ctx: %s", r1_error__message());
    const char *m = r1_error__message();
    ck_assert_uint_eq(strlen(m), full); /* truncated to the buffer, never overflowed */
    ck_assert_int_eq(strncmp(m, "ctx: xxxx", 9), 0);
    ck_assert_uint_eq(strspn(m + 5, "x"), full - 5);
}
END_TEST

static Suite *error_format_suite(void)
{
    Suite *s = suite_create("error_format");
    TCase *tc = tcase_create("quoting");
    tcase_add_test(tc, test_error_format_may_quote_the_current_message);
    tcase_add_test(tc, test_error_format_quoting_a_full_message_truncates);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(error_format_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
