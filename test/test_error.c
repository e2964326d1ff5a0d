/* test_error.c: per-thread r1_last_error() semantics. */
#include <check.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "r1.h"

static void *other_thread_fails(void *arg)
{
    (void)arg;
    r1_backend_available("no-such-backend-in-thread");
    return strstr(r1_last_error(), "in-thread") ? (void *)1 : NULL;
}

START_TEST(test_error_message_is_per_thread)
{
    ck_assert_int_eq(r1_backend_available("first"), 0);
    pthread_t t;
    void *seen = NULL;
    ck_assert_int_eq(pthread_create(&t, NULL, other_thread_fails, NULL), 0);
    ck_assert_int_eq(pthread_join(t, &seen), 0);
    ck_assert_ptr_eq(seen, (void *)1);
    /* the other thread's failure did not overwrite this thread's message */
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "'first'"));
}
END_TEST

START_TEST(test_error_message_survives_until_next_call)
{
    ck_assert_int_eq(r1_backend_available("gone"), 0);
    const char *msg = r1_last_error();
    ck_assert_ptr_nonnull(strstr(msg, "'gone'"));
    /* status names and version queries do not clear it */
    (void)r1_status_name(R1_ERR_IO);
    (void)r1_version_string();
    (void)r1_version_number();
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "'gone'"));
    /* a successful r1 call does */
    ck_assert_int_eq(r1_backend_count() >= 1, 1);
    ck_assert_str_eq(r1_last_error(), "");
}
END_TEST

static Suite *error_suite(void)
{
    Suite *s = suite_create("error");
    TCase *tc = tcase_create("last error");
    tcase_add_test(tc, test_error_message_is_per_thread);
    tcase_add_test(tc, test_error_message_survives_until_next_call);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(error_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
