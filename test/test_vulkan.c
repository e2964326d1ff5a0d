/* test_vulkan.c: the Vulkan backend against the CPU backend: buffers and queues, the matrix
 * product in every weight type, every other op of a layer (RMSNorm, rotary, softmax, SwiGLU,
 * routing, MoE combine, decode attention) on random inputs, and whole-model parity (prefill and
 * decode) on the tiny models, with a device expert budget smaller than the model, under the
 * validation layer. Where no Vulkan device exists the program exits 77 (meson's SKIP), or fails
 * when R1_EXPECT_VULKAN=1 says one must (CI installs lavapipe). What test_cuda checks the same
 * way is in device_parity.c; the Vulkan-only checks (fences, the validation layer) are here. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "backend_vulkan.h"
#include "compute.h"
#include "device_parity.h"
#include "file_testutil.h"
#include "r1.h"

static void assert_no_validation_errors(void)
{
    ck_assert_msg(r1_backend_vulkan__validation_errors() == 0,
                  "the validation layer reported %llu errors (see stderr)",
                  (unsigned long long)r1_backend_vulkan__validation_errors());
}

static const char *const MODELS[] = {"tiny-v3", "tiny-v2lite"};

static const dp_backend VULKAN = {
    .name = "vulkan",
    .ops = r1_backend_vulkan__ops,
    .models = MODELS,
    .n_models = (int)(sizeof MODELS / sizeof MODELS[0]),
    .n_moe_models = 2,
    .check_clean = assert_no_validation_errors,
    .long_prefill_once = 1, /* lavapipe is slow */
    .refused_lora_rank = 1024,
    .refused_says = "1024",
    /* later kinds (R1_OP_GQA_DECODE) run on the CPU by the hybrid rule */
    .last_op_kind = R1_OP_MLA_PREFILL,
    .big_upload_flushes = 1,
    .memory_budget_env = "R1_VULKAN_MEMORY_BUDGET",
    .shared_load_env = "R1_VULKAN_NO_TIMELINE",
};

/* ---- buffers, transfers, queue ------------------------------------------------------------ */

START_TEST(test_vulkan_fences_and_budget)
{
    /* The fence path (devices without timeline semaphores) and a memory budget that refuses a
     * large buffer with a clear message. Both are read when a device is opened. */
    setenv("R1_VULKAN_NO_TIMELINE", "1", 1);
    setenv("R1_VULKAN_MEMORY_BUDGET", "1000000", 1);
    const r1_backend_ops *ops = r1_backend_vulkan__ops();
    r1_dev *dev = NULL;
    r1_status st = ops->open(&dev, 0);
    unsetenv("R1_VULKAN_NO_TIMELINE");
    unsetenv("R1_VULKAN_MEMORY_BUDGET");
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
    ops->close(dev);
    assert_no_validation_errors();
}
END_TEST

START_TEST(test_vulkan_no_device_index)
{
    dp_check_device_selectors("7", 1);
    /* what the environment variable names stays the default */
    r1_dev *dev = NULL;
    setenv("R1_VULKAN_DEVICE", "no such device name", 1);
    ck_assert_int_eq(r1_backend_vulkan__ops()->open(&dev, 0), R1_ERR_NOT_FOUND);
    unsetenv("R1_VULKAN_DEVICE");
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "no such device name"));
    ck_assert_ptr_null(dev);
    assert_no_validation_errors();
}
END_TEST

/* ---- the matrix product in every weight type ---------------------------------------------- */

START_TEST(test_vulkan_matmul_every_dtype)
{
    r1_compute cpu, vk;
    ck_assert_int_eq(r1_compute__open(&cpu, "cpu", NULL), R1_OK);
    ck_assert_msg(r1_compute__open(&vk, "vulkan", NULL) == R1_OK, "%s", r1_last_error());
    /* shapes: one row, rows past a 128 block, columns not a multiple of 128 (fp8 partial
     * scale block), many tokens (several token groups) */
    const int64_t shapes[][3] = {{1, 32, 1}, {200, 160, 1}, {70, 256, 3}, {129, 288, 19}};
    dp_check_matmul_every_dtype(&cpu, &vk, shapes, sizeof shapes / sizeof shapes[0]);
    r1_compute__close(&vk);
    r1_compute__close(&cpu);
    assert_no_validation_errors();
}
END_TEST

START_TEST(test_vulkan_validation_was_active)
{
    printf("vulkan: largest relative difference to the CPU backend: %.3g (bound %g)\n",
           dp_worst_seen(), DP_PARITY_BOUND);
    const char *want = getenv("R1_VULKAN_VALIDATION");
    /* Where the distribution's layer is installed (CI: vulkan-validationlayers), the zero
     * error count above must come from a live messenger, not from validation being off. */
    FILE *layer = fopen("/usr/share/vulkan/explicit_layer.d/VkLayer_khronos_validation.json", "r");
    if (layer != NULL) {
        fclose(layer);
        if (want != NULL && strcmp(want, "1") == 0)
            ck_assert_msg(r1_backend_vulkan__validation_enabled(),
                          "the validation layer is installed but was not enabled");
    }
    if (want != NULL && strcmp(want, "1") == 0 && !r1_backend_vulkan__validation_enabled())
        printf("vulkan: R1_VULKAN_VALIDATION=1 but the validation layer is not installed\n");
    else
        printf("vulkan: validation layer %s, %llu errors\n",
               r1_backend_vulkan__validation_enabled() ? "on" : "off",
               (unsigned long long)r1_backend_vulkan__validation_errors());
    assert_no_validation_errors();
}
END_TEST

static Suite *vulkan_suite(void)
{
    Suite *s = suite_create("vulkan");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 600);
    dp_add_buffer_tests(tc);
    tcase_add_test(tc, test_vulkan_fences_and_budget);
    tcase_add_test(tc, test_vulkan_no_device_index);
    tcase_add_test(tc, test_vulkan_matmul_every_dtype);
    dp_add_op_tests(tc);
    dp_add_op_final_tests(tc);
    dp_add_model_tests(tc);
    tcase_add_test(tc, test_vulkan_validation_was_active);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    /* Validation on unless the caller said otherwise; read when a device is opened. */
    setenv("R1_VULKAN_VALIDATION", "1", 0);
    /* Check has no per-test skip, and a test that returns early passes: without a device the
     * whole program reports SKIP to meson instead, or a failure where one is expected. */
    if (!r1_backend_available("vulkan")) {
        const char *expect = getenv("R1_EXPECT_VULKAN");
        if (expect != NULL && strcmp(expect, "1") == 0) {
            printf("FAIL: R1_EXPECT_VULKAN=1 but no Vulkan device is usable: %s\n",
                   r1_last_error());
            return EXIT_FAILURE;
        }
        printf("SKIP: no Vulkan device is usable: %s\n", r1_last_error());
        return 77;
    }
    dp_use(&VULKAN);
    SRunner *sr = srunner_create(vulkan_suite());
    srunner_set_fork_status(sr, CK_NOFORK); /* worst_seen and the error count span the tests */
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
