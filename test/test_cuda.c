/* test_cuda.c: the CUDA backend against the CPU backend: buffers and queues, the matrix
 * product in every weight type (its own kernels for a few tokens, cuBLAS over float32 weights
 * dequantised on the device for a prompt, and the own kernels again with cuBLAS turned off),
 * every other op of a layer (RMSNorm, rotary, softmax, SwiGLU, routing, MoE combine, MLA decode
 * and prefill, grouped-query decode) on random inputs, and whole-model parity (prefill and
 * decode) on every tiny model (the MoE and the dense ones) in every weight type, with a device
 * expert budget smaller than the model. Where no CUDA device is usable the program exits 77
 * (meson's SKIP, with the reason printed), or fails when R1_EXPECT_CUDA=1 says one must be.
 * What test_vulkan checks the same way is in device_parity.c; the CUDA-only checks are here. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "backend_cuda.h"
#include "compute.h"
#include "device_parity.h"
#include "dtype.h"
#include "file_testutil.h"
#include "r1.h"

/* The MoE models first (the latent-cache and expert-budget tests take those), then the dense. */
static const char *const MODELS[] = {"tiny-v3", "tiny-v2lite", "tiny-qwen2", "tiny-llama"};

static const dp_backend CUDA = {
    .name = "cuda",
    .ops = r1_backend_cuda__ops,
    .models = MODELS,
    .n_models = (int)(sizeof MODELS / sizeof MODELS[0]),
    .n_moe_models = 2,
    .refused_lora_rank = 2048,
    .refused_says = "latent row longer",
    .last_op_kind = R1_OP_KIND_END - 1, /* it implements every kind */
    .memory_budget_env = "R1_CUDA_MEMORY_BUDGET",
    .only_env = "R1_TEST_CUDA_ONLY",
};

/* ---- buffers, transfers, queue ------------------------------------------------------------ */

START_TEST(test_cuda_memory_budget)
{
    /* A memory budget (R1_CUDA_MEMORY_BUDGET, read when a device is opened) refuses a large
     * buffer with a clear message; what fits keeps working. */
    setenv("R1_CUDA_MEMORY_BUDGET", "1000000", 1);
    const r1_backend_ops *ops = r1_backend_cuda__ops();
    r1_dev *dev = NULL;
    r1_status st = ops->open(&dev, 0);
    unsetenv("R1_CUDA_MEMORY_BUDGET");
    ck_assert_msg(st == R1_OK, "%s", r1_last_error());
    r1_buf *big = NULL, *small = NULL;
    ck_assert_int_eq(ops->alloc(dev, 2000000, &big), R1_ERR_NO_MEMORY);
    ck_assert_ptr_null(big);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "budget"));
    ck_assert_int_eq(ops->alloc(dev, 4096, &small), R1_OK);
    uint8_t src[4096], dst[4096];
    for (int round = 0; round < 10; round++) {
        for (int i = 0; i < 4096; i++)
            src[i] = (uint8_t)(i + round);
        uint64_t seq = 0;
        ck_assert_int_eq(ops->upload(dev, small, 0, src, sizeof src), R1_OK);
        ck_assert_int_eq(ops->download(dev, dst, small, 0, sizeof dst), R1_OK);
        ck_assert_int_eq(ops->submit(dev, &seq), R1_OK);
        ck_assert_int_eq(ops->wait(dev, seq), R1_OK);
        ck_assert_uint_ge(ops->completed(dev), seq);
        ck_assert_mem_eq(src, dst, sizeof src);
    }
    ops->free(dev, small);
    /* freed memory returns to the budget */
    ck_assert_int_eq(ops->alloc(dev, 900000, &big), R1_OK);
    ops->free(dev, big);
    ops->close(dev);
}
END_TEST

START_TEST(test_cuda_no_device_index)
{
    dp_check_device_selectors("99", 0);
}
END_TEST

/* ---- the matrix product in every weight type ---------------------------------------------- */

START_TEST(test_cuda_matmul_every_dtype)
{
    /* _i 0: prompt-sized products through cuBLAS (where it loads); 1: the backend's own kernels
     * for every product (R1_CUDA_CUBLAS=0, read when the device first multiplies a prompt). */
    r1_compute cpu, gpu;
    ck_assert_int_eq(r1_compute__open(&cpu, "cpu", NULL), R1_OK);
    const char *before = getenv("R1_CUDA_CUBLAS");
    char *saved = before != NULL ? strdup(before) : NULL;
    if (_i == 1)
        setenv("R1_CUDA_CUBLAS", "0", 1);
    ck_assert_msg(r1_compute__open(&gpu, "cuda", NULL) == R1_OK, "%s", r1_last_error());
    /* shapes: one row, rows past a 128 block, columns not a multiple of 128 (fp8 partial
     * scale block), many tokens (several token groups, and the cuBLAS path from 9 on) */
    const int64_t shapes[][3] = {{1, 32, 1},     {200, 160, 1},  {70, 256, 3},
                                 {129, 288, 19}, {300, 1024, 8}, {257, 96, 40}};
    enum { N_SHAPES = (int)(sizeof shapes / sizeof shapes[0]) };
    dp_check_matmul_every_dtype(&cpu, &gpu, shapes, N_SHAPES);
    char why[256] = "";
    const int32_t blas = r1_backend_cuda__uses_cublas(gpu.dev, why, sizeof why);
    printf("cuda matmul (%s): cuBLAS %s%s%s\n", _i ? "R1_CUDA_CUBLAS=0" : "default",
           blas ? "used" : "not used", blas ? "" : ": ", why);
    if (_i == 1) { /* as it was: test/gpu/emu names a stand-in library there */
        if (saved != NULL)
            setenv("R1_CUDA_CUBLAS", saved, 1);
        else
            unsetenv("R1_CUDA_CUBLAS");
        ck_assert_int_eq(blas, 0);
    } else {
        const char *expect = getenv("R1_EXPECT_CUBLAS");
        if (expect != NULL && strcmp(expect, "1") == 0)
            ck_assert_msg(blas, "R1_EXPECT_CUBLAS=1 but cuBLAS was not used: %s", why);
    }
    free(saved);
    r1_compute__close(&gpu);
    r1_compute__close(&cpu);
}
END_TEST

/* ---- the other ops of a layer, each against the CPU backend's ------------------------- */

START_TEST(test_cuda_op_gqa_decode_every_cache_type)
{
    dp_op_pair o;
    dp_op_pair_open(&o);
    /* heads, kv heads, head dim; keys across several kernel chunks of 512 */
    const int64_t shapes[][3] = {{1, 1, 32}, {4, 2, 64}, {12, 2, 128}, {8, 8, 96}};
    const int64_t keys[] = {1, 37, 1100};
    const int32_t types[] = {R1_DTYPE_F32, R1_DTYPE_F16, R1_DTYPE_Q8_0};
    uint64_t n_ops = 0;
    for (size_t ti = 0; ti < 3; ti++)
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
            for (size_t ki = 0; ki < sizeof keys / sizeof keys[0]; ki++) {
                const r1_op_gqa_decode_params p = {.n_heads = shapes[si][0],
                                                   .n_kv_heads = shapes[si][1],
                                                   .head_dim = shapes[si][2],
                                                   .n_keys = keys[ki],
                                                   .kv_dtype = types[ti],
                                                   .softmax_scale = 0.125};
                const int64_t H = p.n_heads, hd = p.head_dim, kv_cols = p.n_kv_heads * hd;
                const size_t row_bytes = r1_dtype__row_bytes(p.kv_dtype, kv_cols);
                uint8_t *kv[2];
                for (int c = 0; c < 2; c++) {
                    float *f =
                        dp_rand_floats((size_t)(p.n_keys * kv_cols), (unsigned)(80 + c), 1.0f);
                    kv[c] = malloc(row_bytes * (size_t)p.n_keys);
                    for (int64_t r = 0; r < p.n_keys; r++) {
                        const float *src = f + r * kv_cols;
                        uint8_t *dst = kv[c] + (size_t)r * row_bytes;
                        if (p.kv_dtype == R1_DTYPE_F32)
                            memcpy(dst, src, (size_t)kv_cols * sizeof(float));
                        else if (p.kv_dtype == R1_DTYPE_F16)
                            for (int64_t j = 0; j < kv_cols; j++) {
                                const uint16_t h = r1_fp16__from_f32(src[j]);
                                memcpy(dst + 2 * j, &h, 2);
                            }
                        else
                            r1_quantize__q8_0(src, (r1_block_q8_0 *)(void *)dst, kv_cols);
                    }
                    free(f);
                }
                float *q = dp_rand_floats((size_t)(H * hd), 82, 1.0f);
                float *want = calloc((size_t)(H * hd), 4), *got = calloc((size_t)(H * hd), 4);
                ck_assert_int_eq(r1_compute__gqa_decode(&o.cpu, &p, q, kv[0], kv[1], want), R1_OK);
                ck_assert_msg(r1_compute__gqa_decode(&o.gpu, &p, q, kv[0], kv[1], got) == R1_OK,
                              "%s", r1_last_error());
                double d = dp_rel_diff(got, want, (size_t)(H * hd));
                dp_note_op(R1_OP_GQA_DECODE, d);
                ck_assert_msg(d < DP_OP_BOUND, "gqa %s shape %zu, %lld keys: %g",
                              r1_dtype__traits(p.kv_dtype)->name, si, (long long)p.n_keys, d);
                free(q), free(want), free(got), free(kv[0]), free(kv[1]);
                n_ops++;
            }
    dp_op_pair_close(&o, n_ops);
}
END_TEST

START_TEST(test_cuda_summary)
{
    printf("cuda: largest relative difference to the CPU backend: %.3g (bound %g)\n",
           dp_worst_seen(), DP_PARITY_BOUND);
    ck_assert(dp_worst_seen() < DP_PARITY_BOUND);
}
END_TEST

static Suite *cuda_suite(void)
{
    Suite *s = suite_create("cuda");
    TCase *tc = tcase_create("ops");
    tcase_set_timeout(tc, 600);
    dp_add_buffer_tests(tc);
    tcase_add_test(tc, test_cuda_memory_budget);
    tcase_add_test(tc, test_cuda_no_device_index);
    tcase_add_loop_test(tc, test_cuda_matmul_every_dtype, 0, 2);
    dp_add_op_tests(tc);
    tcase_add_test(tc, test_cuda_op_gqa_decode_every_cache_type);
    dp_add_op_final_tests(tc);
    suite_add_tcase(s, tc);
    /* Whole models in a case of their own, so that CK_RUN_CASE=ops runs the rest alone (the
     * emulated kernels of test/gpu/emu are too slow for whole models). */
    tc = tcase_create("models");
    tcase_set_timeout(tc, 600);
    dp_add_model_tests(tc);
    tcase_add_test(tc, test_cuda_summary);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    /* Check has no per-test skip, and a test that returns early passes: without a device the
     * whole program reports SKIP to meson instead, or a failure where one is expected. */
    if (!r1_backend_available("cuda")) {
        const char *expect = getenv("R1_EXPECT_CUDA");
        if (expect != NULL && strcmp(expect, "1") == 0) {
            printf("FAIL: R1_EXPECT_CUDA=1 but no CUDA device is usable: %s\n", r1_last_error());
            return EXIT_FAILURE;
        }
        printf("SKIP: no CUDA device is usable: %s\n", r1_last_error());
        return 77;
    }
    dp_use(&CUDA);
    SRunner *sr = srunner_create(cuda_suite());
    srunner_set_fork_status(sr, CK_NOFORK); /* the worst differences span the tests */
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
