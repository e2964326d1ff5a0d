/* file_testutil.h: where the tests find their files (the tiny models the build generates, the
 * checked-in data) and reading a whole file, shared by the suites instead of a copy each. Check
 * assertions: call from a test. */
#ifndef R1_FILE_TESTUTIL_H
#define R1_FILE_TESTUTIL_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#ifdef R1_TEST_MODELS_DIR
/* The tiny models: R1_TEST_MODELS_DIR in the environment, else the build's test directory. */
static inline const char *tu_models_dir(void)
{
    const char *d = getenv("R1_TEST_MODELS_DIR");
    return d ? d : R1_TEST_MODELS_DIR;
}
#endif

#ifdef R1_TEST_DATA_DIR
/* The checked-in test data: R1_TEST_DATA_DIR in the environment, else test/data. */
static inline const char *tu_data_dir(void)
{
    const char *d = getenv("R1_TEST_DATA_DIR");
    return d ? d : R1_TEST_DATA_DIR;
}
#endif

/* The whole file (malloc'd, with a NUL after its bytes); its length in *len unless len is NULL.
 * A file that cannot be opened or read fails the test. */
static inline char *tu_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    ck_assert_int_ge(n, 0);
    ck_assert_int_eq(fseek(f, 0, SEEK_SET), 0);
    char *buf = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    if (len != NULL)
        *len = (size_t)n;
    return buf;
}

#endif
