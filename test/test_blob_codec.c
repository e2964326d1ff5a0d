/* test_blob_codec.c: expert blob coding: the converter's codec choice, decoding, damaged data. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "blob_codec.h"
#include "checksum.h"
#include "container.h"
#include "dtype.h"
#include "error.h"

static uint64_t rng_state;

static uint8_t next_byte(void)
{
    rng_state = rng_state * 6364136223846793005u + 1442695040888963407u;
    return (uint8_t)(rng_state >> 56);
}

/* A blob record for (layer 3, expert 7) of the given type and shape at offset 12288, its raw
 * bytes random except for a zeroed share of zero_pct percent (what zstd can save on it). */
static uint8_t *make_blob(r1_expert_blob *b, int32_t dt, int64_t inter, int64_t hidden,
                          int zero_pct)
{
    memset(b, 0, sizeof *b);
    b->layer = 3;
    b->expert = 7;
    b->offset = 12288;
    b->inter = inter;
    b->hidden = hidden;
    for (int k = 0; k < 3; k++)
        b->dtype[k] = dt;
    b->raw_size = r1_container__expert_layout(b);
    ck_assert_uint_gt(b->raw_size, 0);
    uint8_t *raw = aligned_alloc(64, ((size_t)b->raw_size + 63) / 64 * 64);
    rng_state = 12345;
    for (size_t i = 0; i < b->raw_size; i++)
        raw[i] = next_byte();
    memset(raw, 0, (size_t)(b->raw_size * (uint64_t)zero_pct / 100));
    b->checksum = r1_checksum__xxh64(raw, (size_t)b->raw_size);
    return raw;
}

/* Refills b's raw bytes with small BF16 weights (few distinct exponents), as trained ones. */
static void small_bf16(r1_expert_blob *b, uint8_t *raw)
{
    uint16_t *w = (uint16_t *)(void *)raw;
    for (size_t i = 0; i < b->raw_size / 2; i++)
        w[i] = r1_bf16__from_f32((float)((int)next_byte() - 128) * 1e-4f);
    b->checksum = r1_checksum__xxh64(raw, (size_t)b->raw_size);
}

/* Encodes b with the converter's rules and decodes the result back; returns the stored bytes. */
static uint8_t *round_trip(r1_expert_blob *b, const uint8_t *raw, int32_t no_shuffle)
{
    r1_blob_encoder *enc;
    r1_blob_decoder *dec;
    const uint8_t *coded;
    ck_assert_int_eq(r1_blob_encoder__create(&enc, 0, no_shuffle), R1_OK);
    ck_assert_int_eq(r1_blob_encoder__encode(enc, b, raw, &coded, NULL), R1_OK);
    uint8_t *stored = malloc((size_t)b->stored_size);
    memcpy(stored, coded, (size_t)b->stored_size);
    r1_blob_encoder__destroy(enc);
    uint8_t *out = aligned_alloc(64, ((size_t)b->raw_size + 63) / 64 * 64);
    ck_assert_int_eq(r1_blob_decoder__create(&dec), R1_OK);
    ck_assert_msg(r1_blob_decoder__decode(dec, b, stored, out) == R1_OK, "%s", r1_error__message());
    ck_assert_int_eq(memcmp(out, raw, (size_t)b->raw_size), 0);
    r1_blob_decoder__destroy(dec);
    free(out);
    return stored;
}

/* The stored frame decompresses to the planes docs/format.md §6 defines, computed here from the
 * specification, independently of the library's filter code. */
static void expect_planes(const r1_expert_blob *b, const uint8_t *stored, const uint8_t *raw)
{
    size_t n = (size_t)b->raw_size, half = n / 2;
    uint8_t *planes = malloc(n);
    ck_assert_uint_eq(ZSTD_decompress(planes, n, stored, (size_t)b->stored_size), n);
    for (size_t i = 0; i < half; i++) {
        uint8_t lo = raw[2 * i], hi = raw[2 * i + 1];
        if (b->filter == R1M_FILTER_BYTEPLANE2) {
            ck_assert(planes[i] == lo && planes[half + i] == hi);
        } else {
            ck_assert_int_eq(planes[i], (lo >> 4) | (hi & 0xf0));
            ck_assert_int_eq(planes[half + i], ((lo & 0x0f) | (hi << 4)) & 0xff);
        }
    }
    free(planes);
}

START_TEST(test_blob_codec_raw_below_the_saving_threshold)
{
    r1_expert_blob b;
    /* zstd saves about 4 %: not worth a decode per load */
    uint8_t *raw = make_blob(&b, R1_DTYPE_BF16, 64, 256, 4);
    uint8_t *stored = round_trip(&b, raw, 0);
    ck_assert_int_eq(b.codec, R1M_CODEC_RAW);
    ck_assert_int_eq(b.filter, R1M_FILTER_NONE);
    ck_assert_uint_eq(b.stored_size, b.raw_size);
    free(stored);
    free(raw);
    /* about 10 %: kept */
    raw = make_blob(&b, R1_DTYPE_BF16, 64, 256, 10);
    stored = round_trip(&b, raw, 0);
    ck_assert_int_eq(b.codec, R1M_CODEC_ZSTD);
    ck_assert_uint_le(b.stored_size * 100, b.raw_size * (100 - R1_BLOB_MIN_SAVING_PCT));
    free(stored);
    free(raw);
}
END_TEST

/* BF16 weights: the byte-plane filter puts the sign-and-exponent bytes together, where zstd
 * finds their redundancy. */
START_TEST(test_blob_codec_bf16_exponents_byteplane)
{
    r1_expert_blob b;
    uint8_t *raw = make_blob(&b, R1_DTYPE_BF16, 64, 256, 0);
    small_bf16(&b, raw);
    uint8_t *stored = round_trip(&b, raw, 0);
    ck_assert_int_eq(b.codec, R1M_CODEC_ZSTD);
    ck_assert_int_eq(b.filter, R1M_FILTER_BYTEPLANE2);
    expect_planes(&b, stored, raw);
    free(stored);
    /* without a filter zstd alone would decode too slowly to pay: stored raw */
    stored = round_trip(&b, raw, 1);
    ck_assert_int_eq(b.codec, R1M_CODEC_RAW);
    ck_assert_int_eq(b.filter, R1M_FILTER_NONE);
    free(stored);
    free(raw);
}
END_TEST

/* FP8 E4M3 weights with block scales: the nibble-plane filter puts sign and top exponent bits
 * together. */
START_TEST(test_blob_codec_fp8_nibbleplane)
{
    r1_expert_blob b;
    uint8_t *raw = make_blob(&b, R1_DTYPE_FP8_E4M3, 128, 256, 0);
    for (int k = 0; k < 3; k++) {
        for (uint64_t i = 0; i < b.data_bytes[k]; i++) { /* exponents 5..8 of either sign */
            uint8_t x = next_byte();
            raw[b.data_off[k] + i] = (uint8_t)((x & 0x80) | (0x28 + (x & 0x1f)));
        }
        float *scale = (float *)(void *)(raw + b.scale_off[k]);
        for (uint64_t i = 0; i < b.scale_bytes[k] / 4; i++)
            scale[i] = 1e-4f * (float)(i + 1);
    }
    b.checksum = r1_checksum__xxh64(raw, (size_t)b.raw_size);
    uint8_t *stored = round_trip(&b, raw, 0);
    ck_assert_int_eq(b.codec, R1M_CODEC_ZSTD);
    ck_assert_int_eq(b.filter, R1M_FILTER_NIBBLEPLANE2);
    expect_planes(&b, stored, raw);
    free(stored);
    free(raw);
    /* types where no coding pays are not even tried */
    raw = make_blob(&b, R1_DTYPE_Q4_0, 64, 256, 50);
    r1_blob_encoder *enc;
    const uint8_t *coded;
    uint64_t tried = 1;
    ck_assert_int_eq(r1_blob_encoder__create(&enc, 0, 0), R1_OK);
    ck_assert_int_eq(r1_blob_encoder__encode(enc, &b, raw, &coded, &tried), R1_OK);
    ck_assert_int_eq(b.codec, R1M_CODEC_RAW);
    ck_assert_ptr_eq(coded, raw);
    ck_assert_uint_eq(tried, 0);
    r1_blob_encoder__destroy(enc);
    free(raw);
}
END_TEST

START_TEST(test_blob_codec_decoder_reused_across_sizes)
{
    r1_blob_decoder *dec;
    ck_assert_int_eq(r1_blob_decoder__create(&dec), R1_OK);
    const int64_t inters[] = {32, 256, 64};
    for (int i = 0; i < 3; i++) {
        r1_expert_blob b;
        uint8_t *raw = make_blob(&b, R1_DTYPE_BF16, inters[i], 128, 0);
        small_bf16(&b, raw);
        r1_blob_encoder *enc;
        const uint8_t *coded;
        ck_assert_int_eq(r1_blob_encoder__create(&enc, 0, 0), R1_OK);
        ck_assert_int_eq(r1_blob_encoder__encode(enc, &b, raw, &coded, NULL), R1_OK);
        ck_assert_int_eq(b.filter, R1M_FILTER_BYTEPLANE2);
        uint8_t *out = aligned_alloc(64, ((size_t)b.raw_size + 63) / 64 * 64);
        ck_assert_int_eq(r1_blob_decoder__decode(dec, &b, coded, out), R1_OK);
        ck_assert_int_eq(memcmp(out, raw, (size_t)b.raw_size), 0);
        r1_blob_encoder__destroy(enc);
        free(out);
        free(raw);
    }
    /* a raw blob is verified in place */
    r1_expert_blob b;
    uint8_t *raw = make_blob(&b, R1_DTYPE_Q8_0, 32, 64, 0);
    b.codec = R1M_CODEC_RAW;
    b.stored_size = b.raw_size;
    ck_assert_int_eq(r1_blob_decoder__decode(dec, &b, raw, raw), R1_OK);
    free(raw);
    r1_blob_decoder__destroy(dec);
}
END_TEST

static void expect_damage(r1_blob_decoder *dec, const r1_expert_blob *b, const uint8_t *stored,
                          r1_status want, const char *needle)
{
    uint8_t *out = aligned_alloc(64, ((size_t)b->raw_size + 63) / 64 * 64);
    r1_error__clear();
    r1_status st = r1_blob_decoder__decode(dec, b, stored, out);
    free(out);
    ck_assert_msg(st == want || (want == 0 && (st == R1_ERR_FORMAT || st == R1_ERR_CHECKSUM)),
                  "status %d, want %d (%s)", st, want, r1_error__message());
    const char *msg = r1_error__message();
    ck_assert_msg(strstr(msg, "layer 3, expert 7") && strstr(msg, "offset 12288"),
                  "'%s' does not name the blob", msg);
    ck_assert_msg(strstr(msg, needle), "'%s' lacks '%s'", msg, needle);
}

START_TEST(test_blob_codec_damaged_data)
{
    r1_blob_decoder *dec;
    ck_assert_int_eq(r1_blob_decoder__create(&dec), R1_OK);
    r1_expert_blob b;
    uint8_t *raw = make_blob(&b, R1_DTYPE_BF16, 64, 256, 60);
    uint8_t *stored = round_trip(&b, raw, 0);
    ck_assert_int_eq(b.codec, R1M_CODEC_ZSTD);
    size_t n = (size_t)b.stored_size;
    uint8_t *bad = malloc(n + 16);
    /* flipped bits anywhere in the frame: damaged coding or a checksum mismatch, never a crash */
    for (size_t at = 0; at < n; at += n / 97 + 1) {
        memcpy(bad, stored, n);
        bad[at] ^= 0x24;
        expect_damage(dec, &b, bad, 0, "expert");
    }
    /* a frame cut short or with trailing bytes is not one zstd frame of the blob's size */
    r1_expert_blob cut = b;
    cut.stored_size = n - 9;
    expect_damage(dec, &cut, stored, R1_ERR_FORMAT, "zstd frame");
    memcpy(bad, stored, n);
    memset(bad + n, 0, 16);
    cut.stored_size = n + 16;
    expect_damage(dec, &cut, bad, R1_ERR_FORMAT, "zstd frame");
    /* the wrong raw size */
    r1_expert_blob wrong = b;
    wrong.raw_size -= 64;
    expect_damage(dec, &wrong, stored, R1_ERR_FORMAT, "zstd frame");
    /* a valid frame of other bytes: the checksum catches it */
    r1_expert_blob other = b;
    other.checksum ^= 1;
    expect_damage(dec, &other, stored, R1_ERR_CHECKSUM, "fails its checksum");
    /* an unknown codec, a raw blob whose sizes disagree, a damaged raw blob */
    other = b;
    other.codec = 9;
    expect_damage(dec, &other, stored, R1_ERR_FORMAT, "codec 9");
    other = b;
    other.codec = R1M_CODEC_RAW;
    other.filter = R1M_FILTER_NONE;
    expect_damage(dec, &other, stored, R1_ERR_FORMAT, "stored raw");
    other.stored_size = other.raw_size;
    raw[100] ^= 1;
    expect_damage(dec, &other, raw, R1_ERR_CHECKSUM, "fails its checksum");
    free(bad);
    free(stored);
    free(raw);
    /* a filter on a raw blob, an unknown filter */
    raw = make_blob(&b, R1_DTYPE_BF16, 64, 256, 0);
    b.codec = R1M_CODEC_RAW;
    b.stored_size = b.raw_size;
    b.filter = R1M_FILTER_BYTEPLANE2;
    expect_damage(dec, &b, raw, R1_ERR_FORMAT, "filter 1");
    b.codec = R1M_CODEC_ZSTD;
    b.filter = 3;
    expect_damage(dec, &b, raw, R1_ERR_FORMAT, "filter 3");
    free(raw);
    r1_blob_decoder__destroy(dec);
}
END_TEST

static Suite *blob_codec_suite(void)
{
    Suite *s = suite_create("blob_codec");
    TCase *tc = tcase_create("coding");
    tcase_add_test(tc, test_blob_codec_raw_below_the_saving_threshold);
    tcase_add_test(tc, test_blob_codec_bf16_exponents_byteplane);
    tcase_add_test(tc, test_blob_codec_fp8_nibbleplane);
    tcase_add_test(tc, test_blob_codec_decoder_reused_across_sizes);
    tcase_add_test(tc, test_blob_codec_damaged_data);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(blob_codec_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
