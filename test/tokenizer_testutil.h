/* tokenizer_testutil.h: the tokenizer test data (test/data/tokenizer, or the directory named by
 * $R1_TOKENIZER_TEST_DATA) read whole, zstd-compressed files decompressed, shared by the
 * tokenizer suites. Check assertions: call from a test. */
#ifndef R1_TOKENIZER_TESTUTIL_H
#define R1_TOKENIZER_TESTUTIL_H

#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <zstd.h>

#ifndef R1_TEST_DATA_DIR
#define R1_TEST_DATA_DIR "test/data"
#endif

/* The tokenizer data directory: $R1_TOKENIZER_TEST_DATA, else R1_TEST_DATA_DIR/tokenizer. */
static void data_path(char *out, size_t cap, const char *name)
{
    const char *env = getenv("R1_TOKENIZER_TEST_DATA");
    if (env && *env)
        snprintf(out, cap, "%s/%s", env, name);
    else
        snprintf(out, cap, "%s/tokenizer/%s", R1_TEST_DATA_DIR, name);
}

/* The whole file, NUL-terminated (the terminator is not counted in *len_out); free() it. */
static char *read_file(const char *name, size_t *len_out)
{
    char path[4096];
    data_path(path, sizeof path, name);
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    ck_assert_int_ge(n, 0);
    ck_assert_int_eq(fseek(f, 0, SEEK_SET), 0);
    char *buf = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    buf[n] = '\0';
    *len_out = (size_t)n;
    return buf;
}

/* A zstd-compressed data file, decompressed and NUL-terminated (the terminator is not counted);
 * free() it. The generators pipe into zstd, so frames carry no content size: it is read as a
 * stream. */
static inline char *read_zstd(const char *name, size_t *len_out)
{
    size_t zn;
    char *z = read_file(name, &zn);
    size_t cap = 16u << 20, n = 0;
    char *out = malloc(cap);
    ck_assert_ptr_nonnull(out);
    ZSTD_DStream *ds = ZSTD_createDStream();
    ck_assert_ptr_nonnull(ds);
    ZSTD_inBuffer in = {z, zn, 0};
    size_t rc = 1;
    while (in.pos < in.size || rc != 0) {
        if (n + 1 >= cap) {
            cap *= 2;
            out = realloc(out, cap);
            ck_assert_ptr_nonnull(out);
        }
        ZSTD_outBuffer ob = {out + n, cap - 1 - n, 0};
        size_t before = in.pos;
        rc = ZSTD_decompressStream(ds, &ob, &in);
        ck_assert_msg(!ZSTD_isError(rc), "%s: %s", name, ZSTD_getErrorName(rc));
        n += ob.pos;
        /* No input consumed, no output made, room left: the frame is truncated. */
        ck_assert_msg(rc == 0 || in.pos != before || ob.pos != 0 || n + 1 >= cap, "%s: truncated",
                      name);
    }
    ZSTD_freeDStream(ds);
    free(z);
    out[n] = '\0';
    *len_out = n;
    return out;
}

#endif
