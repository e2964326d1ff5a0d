/* test_dtype.c: weight type traits, conversions, reference quantisers, dequantisation. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float float_of(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* xorshift: reproducible inputs without depending on the C library's rand(). */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rng_u32(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

START_TEST(test_dtype_traits_table)
{
    static const struct {
        const char *name;
        uint32_t elems, bytes;
        int32_t scale;
    } want[R1_DTYPE_COUNT] = {
        {"f32", 1, 4, 0},      {"f16", 1, 2, 0},    {"bf16", 1, 2, 0},
        {"fp8_e4m3", 1, 1, 1}, {"q8_0", 32, 34, 0}, {"q4_0", 32, 18, 0},
    };
    for (int32_t dt = 0; dt < R1_DTYPE_COUNT; dt++) {
        const r1_dtype_traits *t = r1_dtype__traits(dt);
        ck_assert_ptr_nonnull(t);
        ck_assert_str_eq(t->name, want[dt].name);
        ck_assert_uint_eq(t->block_elems, want[dt].elems);
        ck_assert_uint_eq(t->block_bytes, want[dt].bytes);
        ck_assert_int_eq(t->has_block_scale, want[dt].scale);
        ck_assert_int_eq(r1_dtype__from_name(want[dt].name), dt);
    }
    ck_assert_ptr_null(r1_dtype__traits(-1));
    ck_assert_ptr_null(r1_dtype__traits(R1_DTYPE_COUNT));
    ck_assert_int_eq(r1_dtype__from_name("q4_1"), -1);
    ck_assert_int_eq(r1_dtype__from_name("F32"), -1);
    ck_assert_int_eq(r1_dtype__from_name(NULL), -1);
}
END_TEST

START_TEST(test_dtype_row_bytes)
{
    ck_assert_uint_eq(r1_dtype__row_bytes(R1_DTYPE_F32, 7168), 7168 * 4);
    ck_assert_uint_eq(r1_dtype__row_bytes(R1_DTYPE_F16, 3), 6);
    ck_assert_uint_eq(r1_dtype__row_bytes(R1_DTYPE_BF16, 5), 10);
    ck_assert_uint_eq(r1_dtype__row_bytes(R1_DTYPE_FP8_E4M3, 576), 576);
    ck_assert_uint_eq(r1_dtype__row_bytes(R1_DTYPE_Q8_0, 7168), 7168 / 32 * 34);
    ck_assert_uint_eq(r1_dtype__row_bytes(R1_DTYPE_Q4_0, 64), 36);
    ck_assert_uint_eq(r1_dtype__row_bytes(R1_DTYPE_Q4_0, 48), 0); /* not whole blocks */
    ck_assert_uint_eq(r1_dtype__row_bytes(R1_DTYPE_Q8_0, 33), 0);
    ck_assert_uint_eq(r1_dtype__row_bytes(R1_DTYPE_COUNT, 32), 0);
    ck_assert_uint_eq(r1_dtype__row_bytes(R1_DTYPE_F32, -4), 0);
    ck_assert_uint_eq(r1_dtype__row_bytes(R1_DTYPE_F32, 0), 0);
}
END_TEST

START_TEST(test_dtype_fp8_appendix_a)
{
    ck_assert(r1_fp8_e4m3__to_f32(0x38) == 1.0f);
    ck_assert(r1_fp8_e4m3__to_f32(0x40) == 2.0f);
    ck_assert(r1_fp8_e4m3__to_f32(0x7E) == 448.0f);
    ck_assert(r1_fp8_e4m3__to_f32(0xFE) == -448.0f);
    ck_assert(r1_fp8_e4m3__to_f32(0x01) == 0x1p-9f);
    ck_assert(r1_fp8_e4m3__to_f32(0x07) == 7 * 0x1p-9f); /* largest subnormal */
    ck_assert(r1_fp8_e4m3__to_f32(0x08) == 0x1p-6f);
    ck_assert_uint_eq(bits_of(r1_fp8_e4m3__to_f32(0x80)), 0x80000000u); /* -0 */
    ck_assert_uint_eq(bits_of(r1_fp8_e4m3__to_f32(0x00)), 0u);
    ck_assert(r1_fp8_e4m3__to_f32(0x3C) == 1.5f);
    ck_assert(r1_fp8_e4m3__to_f32(0xB8) == -1.0f);
    ck_assert(isnan(r1_fp8_e4m3__to_f32(0x7F)));
    ck_assert(isnan(r1_fp8_e4m3__to_f32(0xFF)));
    /* no other NaN or infinity, positive codes strictly increasing, sign symmetric */
    for (int b = 0; b < 256; b++) {
        float v = r1_fp8_e4m3__to_f32((uint8_t)b);
        if ((b & 0x7f) == 0x7f)
            continue;
        ck_assert(isfinite(v));
        ck_assert_uint_eq(bits_of(v) ^ 0x80000000u,
                          bits_of(r1_fp8_e4m3__to_f32((uint8_t)(b ^ 0x80))));
        if ((b & 0x7f) > 0)
            ck_assert(fabsf(v) > fabsf(r1_fp8_e4m3__to_f32((uint8_t)(b - 1))));
    }
    ck_assert(r1_fp8_e4m3__table()[0x38] == 1.0f);
}
END_TEST

START_TEST(test_dtype_fp16_special_values)
{
    ck_assert_uint_eq(r1_fp16__from_f32(1.0f), 0x3C00);
    ck_assert_uint_eq(r1_fp16__from_f32(-2.0f), 0xC000);
    ck_assert_uint_eq(r1_fp16__from_f32(0.0f), 0x0000);
    ck_assert_uint_eq(r1_fp16__from_f32(-0.0f), 0x8000);
    ck_assert_uint_eq(r1_fp16__from_f32(65504.0f), 0x7BFF);
    ck_assert_uint_eq(r1_fp16__from_f32(65519.0f), 0x7BFF);
    ck_assert_uint_eq(r1_fp16__from_f32(65520.0f), 0x7C00); /* tie rounds to even: infinity */
    ck_assert_uint_eq(r1_fp16__from_f32(1e6f), 0x7C00);
    ck_assert_uint_eq(r1_fp16__from_f32(INFINITY), 0x7C00);
    ck_assert_uint_eq(r1_fp16__from_f32(-INFINITY), 0xFC00);
    uint16_t n = r1_fp16__from_f32(NAN);
    ck_assert_uint_eq(n & 0x7C00, 0x7C00);
    ck_assert_uint_ne(n & 0x03FF, 0);
    ck_assert_uint_ne(r1_fp16__from_f32(float_of(0x7f800001u)) & 0x03FF, 0); /* signalling NaN */
    /* ties to even in the normal range */
    ck_assert_uint_eq(r1_fp16__from_f32(1.0f + 0x1p-11f), 0x3C00);
    ck_assert_uint_eq(r1_fp16__from_f32(1.0f + 3 * 0x1p-11f), 0x3C02);
    ck_assert_uint_eq(r1_fp16__from_f32(1.0f + 0x1p-11f + 0x1p-20f), 0x3C01);
    /* subnormals: 2^-24 is the smallest; ties to even at the bottom */
    ck_assert_uint_eq(r1_fp16__from_f32(0x1p-24f), 0x0001);
    ck_assert_uint_eq(r1_fp16__from_f32(0x1p-25f), 0x0000);
    ck_assert_uint_eq(r1_fp16__from_f32(0x1.000002p-25f), 0x0001);
    ck_assert_uint_eq(r1_fp16__from_f32(3 * 0x1p-25f), 0x0002);
    ck_assert_uint_eq(r1_fp16__from_f32(-5 * 0x1p-25f), 0x8002);
    ck_assert_uint_eq(r1_fp16__from_f32(0x1p-30f), 0x0000);
    ck_assert_uint_eq(r1_fp16__from_f32(0x1p-14f - 0x1p-26f), 0x0400); /* carries to normal */
    ck_assert(r1_fp16__to_f32(0x0001) == 0x1p-24f);
    ck_assert(r1_fp16__to_f32(0x03FF) == 1023 * 0x1p-24f);
    ck_assert(r1_fp16__to_f32(0x0400) == 0x1p-14f);
    ck_assert(r1_fp16__to_f32(0x7BFF) == 65504.0f);
    ck_assert(r1_fp16__to_f32(0xFC00) == -INFINITY);
    ck_assert(isnan(r1_fp16__to_f32(0x7E00)));
    ck_assert_uint_eq(bits_of(r1_fp16__to_f32(0x8000)), 0x80000000u);
}
END_TEST

START_TEST(test_dtype_fp16_round_trips_every_half)
{
    for (uint32_t h = 0; h < 65536; h++) {
        float f = r1_fp16__to_f32((uint16_t)h);
        if ((h & 0x7C00) == 0x7C00 && (h & 0x03FF) != 0) {
            ck_assert(isnan(f));
            /* quiet NaNs keep their payload */
            if (h & 0x0200)
                ck_assert_uint_eq(r1_fp16__from_f32(f), h);
            continue;
        }
        ck_assert_uint_eq(r1_fp16__from_f32(f), h);
    }
}
END_TEST

START_TEST(test_dtype_fp16_matches_compiler_conversion)
{
#ifdef __FLT16_MAX__
    /* GCC's _Float16 conversion is an independent IEEE round-to-nearest-even implementation. */
    for (int i = 0; i < 2000000; i++) {
        uint32_t u = rng_u32() ^ (rng_u32() << 16);
        /* concentrate on the exponents a half can represent, edges included */
        if (i & 1)
            u = (u & 0x807fffffu) | ((uint32_t)(96 + rng_u32() % 50) << 23);
        float f = float_of(u);
        if (isnan(f))
            continue;
        _Float16 h = (_Float16)f;
        uint16_t want;
        memcpy(&want, &h, sizeof want);
        ck_assert_msg(r1_fp16__from_f32(f) == want, "f32 bits 0x%08x: got 0x%04x want 0x%04x",
                      (unsigned)u, (unsigned)r1_fp16__from_f32(f), (unsigned)want);
    }
#endif
}
END_TEST

START_TEST(test_dtype_bf16_rounding_and_specials)
{
    ck_assert_uint_eq(r1_bf16__from_f32(1.0f), 0x3F80);
    ck_assert_uint_eq(r1_bf16__from_f32(-1.0f), 0xBF80);
    ck_assert_uint_eq(r1_bf16__from_f32(1.0f + 0x1p-8f), 0x3F80);     /* tie, even stays */
    ck_assert_uint_eq(r1_bf16__from_f32(1.0f + 3 * 0x1p-8f), 0x3F82); /* tie, odd rounds up */
    ck_assert_uint_eq(r1_bf16__from_f32(1.0f + 0x1p-8f + 0x1p-20f), 0x3F81);
    ck_assert_uint_eq(r1_bf16__from_f32(INFINITY), 0x7F80);
    ck_assert_uint_eq(r1_bf16__from_f32(-INFINITY), 0xFF80);
    ck_assert_uint_eq(r1_bf16__from_f32(float_of(0x7F7FFFFFu)), 0x7F80); /* overflows to inf */
    ck_assert_uint_eq(r1_bf16__from_f32(NAN), 0x7FC0);
    ck_assert_uint_eq(r1_bf16__from_f32(float_of(0xFF800001u)), 0xFFC0);
    ck_assert_uint_eq(r1_bf16__from_f32(float_of(0x00000001u)), 0x0000); /* subnormal, RNE */
    ck_assert_uint_eq(r1_bf16__from_f32(float_of(0x00018000u)), 0x0002);
    ck_assert(r1_bf16__to_f32(0x3F80) == 1.0f);
    ck_assert(r1_bf16__to_f32(0x0001) == float_of(0x00010000u));
    ck_assert(isnan(r1_bf16__to_f32(0x7FC1)));
    for (uint32_t h = 0; h < 65536; h++) {
        float f = r1_bf16__to_f32((uint16_t)h);
        if (isnan(f))
            continue;
        ck_assert_uint_eq(r1_bf16__from_f32(f), h);
    }
}
END_TEST

START_TEST(test_dtype_q8_0_exact_blocks)
{
    float x[96] = {0};
    /* block 0: amax 127 gives d = 1, so q = roundf(x): halves go away from zero */
    x[0] = 0.5f, x[1] = -0.5f, x[2] = 1.5f, x[3] = -2.5f, x[4] = 127.0f, x[5] = -126.6f;
    x[31] = 0.49f;
    /* block 1: amax 254 gives d = 2, id = 0.5 */
    x[32] = 3.0f, x[33] = -5.0f, x[34] = 254.0f, x[35] = -254.0f, x[63] = 1.0f;
    /* block 2: all zero -> d = 0, q = 0 */
    r1_block_q8_0 out[3];
    memset(out, 0x55, sizeof out);
    r1_quantize__q8_0(x, out, 96);

    ck_assert_uint_eq(out[0].d, 0x3C00);
    int8_t want0[32] = {1, -1, 2, -3, 127, -127};
    ck_assert_mem_eq(out[0].q, want0, 32);
    ck_assert_uint_eq(out[1].d, 0x4000);
    int8_t want1[32] = {2, -3, 127, -127};
    want1[31] = 1; /* 1.0 * 0.5 = 0.5 -> 1 */
    ck_assert_mem_eq(out[1].q, want1, 32);
    ck_assert_uint_eq(out[2].d, 0);
    int8_t zero[32] = {0};
    ck_assert_mem_eq(out[2].q, zero, 32);

    float back[96];
    r1_dtype__dequantize_row(R1_DTYPE_Q8_0, out, NULL, back, 96);
    ck_assert(back[3] == -3.0f);
    ck_assert(back[5] == -127.0f);
    ck_assert(back[34] == 254.0f);
    ck_assert(back[33] == -6.0f);
    ck_assert(back[63] == 2.0f);
    ck_assert(back[80] == 0.0f);
}
END_TEST

START_TEST(test_dtype_q8_0_properties)
{
    enum { N = 32 * 64 };
    static float x[N], back[N];
    static r1_block_q8_0 q[N / 32];
    for (int i = 0; i < N; i++)
        x[i] = ((float)(rng_u32() % 20001) - 10000.0f) * 1e-3f * (float)(1 + i / 32);
    r1_quantize__q8_0(x, q, N);
    r1_dtype__dequantize_row(R1_DTYPE_Q8_0, q, NULL, back, N);
    for (int b = 0; b < N / 32; b++) {
        float amax = 0;
        int has_127 = 0;
        for (int j = 0; j < 32; j++) {
            amax = fmaxf(amax, fabsf(x[b * 32 + j]));
            has_127 |= abs(q[b].q[j]) == 127;
            ck_assert_int_ge(q[b].q[j], -127);
        }
        ck_assert(has_127); /* the largest element uses the full range */
        float d = r1_fp16__to_f32(q[b].d);
        for (int j = 0; j < 32; j++) /* half a step of d, plus the f16 error of d itself */
            ck_assert(fabsf(back[b * 32 + j] - x[b * 32 + j]) <= 0.5f * d + amax * 1e-3f);
    }
}
END_TEST

START_TEST(test_dtype_q4_0_exact_blocks)
{
    float x[64] = {0};
    /* block 0: the largest |x| is -16 (index 5); +16 at index 9 ties and loses (first wins).
     * d = -16 / -8 = 2, id = 0.5, t = x/2 + 8.5. */
    x[5] = -16.0f; /* t = 0.5  -> 0 */
    x[9] = 16.0f;  /* t = 16.5 -> 16 -> clamped 15 */
    x[1] = 1.0f;   /* t = 9    -> 9 */
    x[2] = -1.0f;  /* t = 8    -> 8 */
    x[17] = 3.0f;  /* t = 10   -> 10 (high nibble of qs[1]) */
    x[18] = 2.9f;  /* t = 9.95 -> 9 */
    x[31] = -7.0f; /* t = 5    -> 5 */
    /* block 1: largest is +8 -> d = -1, id = -1, t = 8.5 - x */
    x[32] = 8.0f;  /* t = 0.5  -> 0 */
    x[33] = -8.0f; /* t = 16.5 -> 15 */
    x[34] = 3.0f;  /* t = 5.5  -> 5 */
    x[48] = -0.4f; /* t = 8.9  -> 8 */
    r1_block_q4_0 out[2];
    r1_quantize__q4_0(x, out, 64);

    ck_assert_uint_eq(out[0].d, 0x4000);
    uint8_t q0[32];
    for (int j = 0; j < 32; j++)
        q0[j] = 8;
    q0[5] = 0, q0[9] = 15, q0[1] = 9, q0[2] = 8, q0[17] = 10, q0[18] = 9, q0[31] = 5;
    for (int j = 0; j < 16; j++)
        ck_assert_uint_eq(out[0].qs[j], q0[j] | (q0[j + 16] << 4));
    ck_assert_uint_eq(out[0].qs[1], 0xA9);
    ck_assert_uint_eq(out[0].qs[15], 0x58);

    ck_assert_uint_eq(out[1].d, 0xBC00);
    ck_assert_uint_eq(out[1].qs[0], 0x80); /* element 0 -> 0, element 16 -> 8 */
    ck_assert_uint_eq(out[1].qs[1], 0x8F);
    ck_assert_uint_eq(out[1].qs[2], 0x85);

    float back[64];
    r1_dtype__dequantize_row(R1_DTYPE_Q4_0, out, NULL, back, 64);
    ck_assert(back[5] == -16.0f);
    ck_assert(back[9] == 14.0f);
    ck_assert(back[17] == 4.0f);
    ck_assert(back[0] == 0.0f);
    ck_assert(back[32] == 8.0f);
    ck_assert(back[33] == -7.0f);
    ck_assert(back[34] == 3.0f);
    ck_assert(back[48] == 0.0f);
}
END_TEST

START_TEST(test_dtype_q4_0_zero_block_and_properties)
{
    float z[32] = {0};
    r1_block_q4_0 b;
    r1_quantize__q4_0(z, &b, 32);
    ck_assert_uint_eq(b.d, 0x8000); /* d = 0 / -8 = -0, exactly what quant.py stores */
    for (int j = 0; j < 16; j++)
        ck_assert_uint_eq(b.qs[j], 0x88);

    enum { N = 32 * 64 };
    static float x[N], back[N];
    static r1_block_q4_0 q[N / 32];
    for (int i = 0; i < N; i++)
        x[i] = ((float)(rng_u32() % 20001) - 10000.0f) * 1e-4f;
    r1_quantize__q4_0(x, q, N);
    r1_dtype__dequantize_row(R1_DTYPE_Q4_0, q, NULL, back, N);
    for (int blk = 0; blk < N / 32; blk++) {
        float amax = 0;
        for (int j = 0; j < 32; j++)
            amax = fmaxf(amax, fabsf(x[blk * 32 + j]));
        float d = fabsf(r1_fp16__to_f32(q[blk].d));
        for (int j = 0; j < 32; j++)
            ck_assert(fabsf(back[blk * 32 + j] - x[blk * 32 + j]) <= d + amax * 1e-3f);
    }
}
END_TEST

START_TEST(test_dtype_dequantize_plain_and_fp8_rows)
{
    float f[3] = {1.5f, -2.0f, 3.25f}, out[300];
    r1_dtype__dequantize_row(R1_DTYPE_F32, f, NULL, out, 3);
    ck_assert_mem_eq(out, f, sizeof f);

    uint16_t h[3] = {0x3C00, 0xC000, 0x7BFF};
    r1_dtype__dequantize_row(R1_DTYPE_F16, h, NULL, out, 3);
    ck_assert(out[0] == 1.0f && out[1] == -2.0f && out[2] == 65504.0f);

    uint16_t bf[2] = {0x3F80, 0xC040};
    r1_dtype__dequantize_row(R1_DTYPE_BF16, bf, NULL, out, 2);
    ck_assert(out[0] == 1.0f && out[1] == -3.0f);

    /* 300 columns span three scale blocks, the last one partial (44 columns) */
    uint8_t q[300];
    for (int i = 0; i < 300; i++)
        q[i] = (uint8_t)(i % 2 ? 0x40 : 0xB8); /* 2.0, -1.0 */
    float scale[3] = {0.5f, 3.0f, -0.25f};
    r1_dtype__dequantize_row(R1_DTYPE_FP8_E4M3, q, scale, out, 300);
    ck_assert(out[0] == -0.5f && out[1] == 1.0f);
    ck_assert(out[127] == 1.0f && out[128] == -3.0f && out[129] == 6.0f);
    ck_assert(out[255] == 6.0f && out[256] == 0.25f && out[299] == -0.5f);
}
END_TEST

static Suite *dtype_suite(void)
{
    Suite *s = suite_create("dtype");
    TCase *traits = tcase_create("traits");
    tcase_add_test(traits, test_dtype_traits_table);
    tcase_add_test(traits, test_dtype_row_bytes);
    suite_add_tcase(s, traits);
    TCase *conv = tcase_create("conversions");
    tcase_add_test(conv, test_dtype_fp8_appendix_a);
    tcase_add_test(conv, test_dtype_fp16_special_values);
    tcase_add_test(conv, test_dtype_fp16_round_trips_every_half);
    tcase_add_test(conv, test_dtype_fp16_matches_compiler_conversion);
    tcase_add_test(conv, test_dtype_bf16_rounding_and_specials);
    suite_add_tcase(s, conv);
    TCase *quant = tcase_create("quantisers");
    tcase_add_test(quant, test_dtype_q8_0_exact_blocks);
    tcase_add_test(quant, test_dtype_q8_0_properties);
    tcase_add_test(quant, test_dtype_q4_0_exact_blocks);
    tcase_add_test(quant, test_dtype_q4_0_zero_block_and_properties);
    tcase_add_test(quant, test_dtype_dequantize_plain_and_fp8_rows);
    suite_add_tcase(s, quant);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(dtype_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
