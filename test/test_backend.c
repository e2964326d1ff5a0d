/* test_backend.c: the backend registry, availability queries and the CPU backend's memory ops. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "compute.h"
#include "dtype.h"
#include "r1.h"

START_TEST(test_backend_cpu_always_listed_and_available)
{
    int32_t n = r1_backend_count();
    ck_assert_int_ge(n, 1);
    int found = 0;
    for (int32_t i = 0; i < n; i++) {
        const char *name = r1_backend_name(i);
        ck_assert_ptr_nonnull(name);
        found |= strcmp(name, "cpu") == 0;
    }
    ck_assert(found);
    ck_assert_int_eq(r1_backend_available("cpu"), 1);
    ck_assert_str_eq(r1_last_error(), "");
}
END_TEST

START_TEST(test_backend_name_out_of_range_has_message)
{
    ck_assert_ptr_null(r1_backend_name(-1));
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "outside"));
    ck_assert_ptr_null(r1_backend_name(r1_backend_count()));
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "backend index"));
    /* the next successful call clears the message */
    ck_assert_ptr_nonnull(r1_backend_name(0));
    ck_assert_str_eq(r1_last_error(), "");
}
END_TEST

START_TEST(test_backend_unknown_name_unavailable_with_message)
{
    ck_assert_int_eq(r1_backend_available("tpu"), 0);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "no backend named 'tpu'"));
    ck_assert_int_eq(r1_backend_available(NULL), 0);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "NULL"));
    ck_assert_int_eq(r1_backend_available("CPU"), 0); /* names are case-sensitive */
}
END_TEST

/* r1_backend_describe() names each device and its kind, so that lavapipe (Vulkan on the CPU)
 * does not pass for a GPU in `r1 backends`. */
START_TEST(test_backend_describe_names_devices_and_software_ones)
{
    char desc[1024];
    size_t len = 0;
    ck_assert_int_eq(r1_backend_describe("cpu", desc, sizeof desc, &len), R1_OK);
    ck_assert_uint_eq(len, strlen(desc));
    ck_assert_ptr_nonnull(strstr(desc, "0: the host CPU"));
    char small[4];
    size_t need = 0;
    ck_assert_int_eq(r1_backend_describe("cpu", small, sizeof small, &need),
                     R1_ERR_BUFFER_TOO_SMALL);
    ck_assert_uint_eq(need, len);
    ck_assert_int_eq(r1_backend_describe("cpu", NULL, 0, &need), R1_ERR_BUFFER_TOO_SMALL);
    ck_assert_int_eq(r1_backend_describe("tpu", desc, sizeof desc, &len), R1_ERR_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "'tpu'"));
    ck_assert_int_eq(r1_backend_describe(NULL, desc, sizeof desc, &len), R1_ERR_INVALID_ARG);
    ck_assert_int_eq(r1_backend_describe("cpu", desc, sizeof desc, NULL), R1_ERR_INVALID_ARG);
    if (r1_backend_describe("vulkan", desc, sizeof desc, &len) != R1_OK)
        return; /* no Vulkan device here: nothing more to describe */
    ck_assert_ptr_nonnull(strstr(desc, "0: "));
    const char *llvmpipe = strstr(desc, "llvmpipe");
    if (llvmpipe != NULL) {
        const char *end = strchr(llvmpipe, ';');
        const char *kind = strstr(llvmpipe, "(software renderer on the CPU, not a GPU)");
        ck_assert_msg(kind != NULL && (end == NULL || kind < end), "llvmpipe is described as '%s'",
                      desc);
    }
}
END_TEST

/* r1_backend_available() agrees with everything else the library says and does about the
 * backend: 1 only for a listed backend whose description names its devices and whose device 0
 * opens; 0 with a reason, "no backend named" when it was not built. CI, which installs lavapipe,
 * sets R1_EXPECT_VULKAN=1: there the Vulkan answer must be 1. */
START_TEST(test_backend_gpu_answers_are_consistent)
{
    const char *gpus[] = {"cuda", "vulkan"};
    for (size_t i = 0; i < 2; i++) {
        const char *name = gpus[i];
        int32_t a = r1_backend_available(name);
        char why[512];
        snprintf(why, sizeof why, "%s", r1_last_error());
        const r1_backend_ops *ops = r1_backend_registry__find(name);
        int listed = 0;
        for (int32_t k = 0; k < r1_backend_count(); k++)
            listed |= strcmp(r1_backend_name(k), name) == 0;
        ck_assert_int_eq(listed, ops != NULL);
        char desc[512];
        size_t len = 0;
        r1_status described = r1_backend_describe(name, desc, sizeof desc, &len);
        if (a == 1) {
            ck_assert_ptr_nonnull(ops);
            ck_assert_str_eq(why, "");
            ck_assert_msg(described == R1_OK, "%s: %s", name, r1_last_error());
            ck_assert_uint_gt(len, 0);
            r1_dev *dev = NULL;
            ck_assert_msg(ops->open(&dev, 0) == R1_OK, "%s is available but device 0: %s", name,
                          r1_last_error());
            ops->close(dev);
        } else {
            ck_assert_int_eq(a, 0);
            ck_assert_str_ne(why, "");
            if (ops == NULL) {
                ck_assert_ptr_nonnull(strstr(why, "no backend named"));
                ck_assert_int_eq(described, R1_ERR_NOT_FOUND);
            } else {
                ck_assert_ptr_nonnull(strstr(why, name));
                ck_assert_int_eq(described, R1_ERR_UNSUPPORTED);
            }
        }
        ck_assert_int_eq(r1_backend_available(name), a); /* cached, stable */
    }
    const char *expect = getenv("R1_EXPECT_VULKAN");
    if (expect != NULL && strcmp(expect, "1") == 0)
        ck_assert_msg(r1_backend_available("vulkan") == 1,
                      "R1_EXPECT_VULKAN=1, but Vulkan is unavailable: %s", r1_last_error());
}
END_TEST

START_TEST(test_backend_registry_tables_are_complete)
{
    for (int32_t i = 0; i < r1_backend_registry__count(); i++) {
        const r1_backend_ops *ops = r1_backend_registry__at(i);
        ck_assert_ptr_nonnull(ops);
        ck_assert_uint_eq(ops->abi, R1_BACKEND_ABI);
        ck_assert(ops->probe && ops->open && ops->close && ops->device_info && ops->alloc &&
                  ops->free && ops->upload && ops->download && ops->supports && ops->run &&
                  ops->submit && ops->wait && ops->completed);
    }
    ck_assert_ptr_null(r1_backend_registry__at(-1));
    ck_assert_ptr_eq(r1_backend_registry__find("cpu"), r1_backend_cpu__ops());
}
END_TEST

START_TEST(test_backend_cpu_buffers_round_trip)
{
    const r1_backend_ops *ops = r1_backend_cpu__ops();
    r1_dev *dev = NULL;
    ck_assert_int_eq(ops->open(&dev, 0), R1_OK);
    r1_device_info info;
    ck_assert_int_eq(ops->device_info(dev, &info), R1_OK);
    ck_assert_int_eq(info.host_shared, 1);
    ck_assert_uint_gt(info.memory_total_bytes, 0);

    r1_buf *buf = NULL;
    ck_assert_int_eq(ops->alloc(dev, 1000, &buf), R1_OK);
    uint8_t src[1000], dst[1000];
    for (int i = 0; i < 1000; i++)
        src[i] = (uint8_t)(i * 7);
    ck_assert_int_eq(ops->upload(dev, buf, 0, src, 1000), R1_OK);
    uint64_t seq = 0;
    ck_assert_int_eq(ops->submit(dev, &seq), R1_OK);
    ck_assert_int_eq(ops->wait(dev, seq), R1_OK);
    ck_assert_uint_ge(ops->completed(dev), seq);
    ck_assert_int_eq(ops->download(dev, dst, buf, 0, 1000), R1_OK);
    ck_assert_mem_eq(src, dst, 1000);

    /* transfers past the end are refused with a message, and the buffer stays usable */
    ck_assert_int_eq(ops->upload(dev, buf, 999, src, 2), R1_ERR_OUT_OF_RANGE);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "exceeds"));
    ck_assert_int_eq(ops->download(dev, dst, buf, SIZE_MAX, 1), R1_ERR_OUT_OF_RANGE);
    ck_assert_int_eq(ops->download(dev, dst, buf, 500, 500), R1_OK);
    ops->free(dev, buf);

    r1_buf *view = NULL;
    ck_assert_int_eq(ops->wrap_host(dev, src, sizeof src, &view), R1_OK);
    ck_assert_int_eq(ops->download(dev, dst, view, 10, 10), R1_OK);
    ck_assert_mem_eq(dst, src + 10, 10);
    ops->free(dev, view);
    ops->free(dev, NULL);
    ops->close(dev);
}
END_TEST

START_TEST(test_backend_cpu_rejects_bad_device_index)
{
    r1_dev *dev = NULL;
    ck_assert_int_eq(r1_backend_cpu__ops()->open(&dev, 1), R1_ERR_OUT_OF_RANGE);
    ck_assert_ptr_null(dev);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "one device"));
}
END_TEST

static float next_float(unsigned *state)
{
    *state = *state * 1103515245u + 12345u;
    return (float)((*state >> 8) & 0xffff) / 32768.0f - 1.0f;
}

START_TEST(test_backend_cpu_mla_prefill_is_causal_decode)
{
    /* Each query of a prefill chunk at pos0 attends to the cache rows up to its own position:
     * its output is the decode op's over those rows (summed in other orders). */
    enum { H = 3, DN = 16, DR = 8, DV = 12, RKV = 64, DL = RKV + DR, DQK = DN + DR };
    enum { POS0 = 5, T = 70, N_KEYS = POS0 + T }; /* past the 64-row head groups */
    unsigned seed = 7;
    float *kv_b_data = malloc((size_t)(H * (DN + DV) * RKV) * sizeof(float));
    float *q = malloc((size_t)(T * H * DQK) * sizeof(float));
    float *lat = malloc((size_t)(N_KEYS * DL) * sizeof(float));
    float *out = malloc((size_t)(T * H * DV) * sizeof(float));
    for (int i = 0; i < H * (DN + DV) * RKV; i++)
        kv_b_data[i] = next_float(&seed);
    for (int i = 0; i < T * H * DQK; i++)
        q[i] = next_float(&seed);
    for (int i = 0; i < N_KEYS * DL; i++)
        lat[i] = next_float(&seed);
    r1_tensor kv_b;
    memset(&kv_b, 0, sizeof kv_b);
    kv_b.dtype = R1_DTYPE_F32;
    kv_b.n_dims = 2;
    kv_b.shape[0] = H * (DN + DV);
    kv_b.shape[1] = RKV;
    kv_b.data = kv_b_data;
    kv_b.nbytes = (size_t)(H * (DN + DV) * RKV) * sizeof(float);
    r1_compute c;
    ck_assert_int_eq(r1_compute__open(&c, "cpu", NULL), R1_OK);
    const r1_op_mla_prefill_params p = {.n_heads = H,
                                        .qk_nope_dim = DN,
                                        .qk_rope_dim = DR,
                                        .v_dim = DV,
                                        .kv_lora_rank = RKV,
                                        .n_tokens = T,
                                        .pos0 = POS0,
                                        .softmax_scale = 0.125};
    const r1_compute_latent cache = {.rows = lat, .n_ctx = N_KEYS};
    ck_assert_msg(r1_compute__mla_prefill(&c, &p, q, &cache, &kv_b, out) == R1_OK, "%s",
                  r1_last_error());
    double worst = 0;
    for (int t = 0; t < T; t++) {
        const r1_op_mla_decode_params dp = {.n_heads = H,
                                            .qk_nope_dim = DN,
                                            .qk_rope_dim = DR,
                                            .v_dim = DV,
                                            .kv_lora_rank = RKV,
                                            .n_keys = POS0 + t + 1,
                                            .softmax_scale = 0.125};
        float one[H * DV];
        ck_assert_int_eq(r1_compute__mla_decode(&c, &dp, q + t * H * DQK, &cache, &kv_b, one),
                         R1_OK);
        for (int i = 0; i < H * DV; i++) {
            const double d = fabs((double)out[t * H * DV + i] - one[i]);
            worst = d > worst ? d : worst;
        }
    }
    ck_assert_msg(worst < 1e-5, "prefill against decode: %g", worst);
    /* shapes that do not match kv_b_proj are refused with a message */
    r1_op_mla_prefill_params bad = p;
    bad.v_dim = DV + 1;
    ck_assert_int_eq(r1_compute__mla_prefill(&c, &bad, q, &cache, &kv_b, out), R1_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(r1_last_error(), "kv_b_proj"));
    r1_compute__close(&c);
    free(kv_b_data), free(q), free(lat), free(out);
}
END_TEST

static Suite *backend_suite(void)
{
    Suite *s = suite_create("backend");
    TCase *api = tcase_create("public queries");
    tcase_add_test(api, test_backend_cpu_always_listed_and_available);
    tcase_add_test(api, test_backend_name_out_of_range_has_message);
    tcase_add_test(api, test_backend_unknown_name_unavailable_with_message);
    tcase_add_test(api, test_backend_gpu_answers_are_consistent);
    tcase_add_test(api, test_backend_describe_names_devices_and_software_ones);
    suite_add_tcase(s, api);
    TCase *cpu = tcase_create("cpu backend");
    tcase_add_test(cpu, test_backend_registry_tables_are_complete);
    tcase_add_test(cpu, test_backend_cpu_buffers_round_trip);
    tcase_add_test(cpu, test_backend_cpu_rejects_bad_device_index);
    tcase_add_test(cpu, test_backend_cpu_mla_prefill_is_causal_decode);
    suite_add_tcase(s, cpu);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(backend_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
