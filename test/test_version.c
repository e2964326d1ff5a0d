/* test_version.c: the version functions and status names. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "r1.h"

START_TEST(test_version_number_matches_header)
{
    ck_assert_uint_eq(r1_version_number(), R1_VERSION_NUMBER);
    ck_assert_uint_eq(R1_VERSION_NUMBER,
                      R1_VERSION_MAJOR * 1000000u + R1_VERSION_MINOR * 1000u + R1_VERSION_PATCH);
}
END_TEST

START_TEST(test_version_string_matches_number)
{
    char expect[32];
    snprintf(expect, sizeof expect, "%d.%d.%d", R1_VERSION_MAJOR, R1_VERSION_MINOR,
             R1_VERSION_PATCH);
    ck_assert_str_eq(r1_version_string(), expect);
}
END_TEST

START_TEST(test_version_status_names_are_frozen)
{
    /* The numbering is part of the ABI: these pairs may never change. */
    static const struct {
        r1_status st;
        const char *name;
        int value;
    } frozen[] = {
        {R1_OK, "R1_OK", 0},
        {R1_DONE, "R1_DONE", 1},
        {R1_CANCELLED, "R1_CANCELLED", 2},
        {R1_ERR_INVALID_ARG, "R1_ERR_INVALID_ARG", -1},
        {R1_ERR_NO_MEMORY, "R1_ERR_NO_MEMORY", -2},
        {R1_ERR_IO, "R1_ERR_IO", -3},
        {R1_ERR_FORMAT, "R1_ERR_FORMAT", -4},
        {R1_ERR_CHECKSUM, "R1_ERR_CHECKSUM", -5},
        {R1_ERR_UNSUPPORTED, "R1_ERR_UNSUPPORTED", -6},
        {R1_ERR_NOT_FOUND, "R1_ERR_NOT_FOUND", -7},
        {R1_ERR_BUFFER_TOO_SMALL, "R1_ERR_BUFFER_TOO_SMALL", -8},
        {R1_ERR_OUT_OF_RANGE, "R1_ERR_OUT_OF_RANGE", -9},
        {R1_ERR_CONTEXT_FULL, "R1_ERR_CONTEXT_FULL", -10},
        {R1_ERR_BAD_STATE, "R1_ERR_BAD_STATE", -11},
        {R1_ERR_INVALID_UTF8, "R1_ERR_INVALID_UTF8", -12},
        {R1_ERR_BACKEND, "R1_ERR_BACKEND", -13},
        {R1_ERR_BUDGET, "R1_ERR_BUDGET", -14},
        {R1_ERR_INTERNAL, "R1_ERR_INTERNAL", -15},
    };
    for (size_t i = 0; i < sizeof frozen / sizeof frozen[0]; i++) {
        ck_assert_int_eq(frozen[i].st, frozen[i].value);
        ck_assert_str_eq(r1_status_name(frozen[i].st), frozen[i].name);
    }
    ck_assert_str_eq(r1_status_name(12345), "R1_UNKNOWN_STATUS");
    ck_assert_str_eq(r1_status_name(-16), "R1_UNKNOWN_STATUS");
}
END_TEST

static Suite *version_suite(void)
{
    Suite *s = suite_create("version");
    TCase *tc = tcase_create("version");
    tcase_add_test(tc, test_version_number_matches_header);
    tcase_add_test(tc, test_version_string_matches_number);
    tcase_add_test(tc, test_version_status_names_are_frozen);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(version_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
