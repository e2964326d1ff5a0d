/* test_map_release.c: once the CPU backend has copied a mapped dense weight into its own layout,
 * the mapping's pages of it leave the resident set, and the logits stay bit-identical. */
#include <check.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compute.h"
#include "cpu_kernels.h"
#include "file_testutil.h"
#include "host_weights.h"
#include "model.h"
#include "r1.h"
#include "session_testutil.h"
#include "weight_layout.h"

static const int32_t PROMPT[] = {0, 53, 110, 38, 154, 156, 39, 238, 48, 226, 262, 241};
enum { N_PROMPT = sizeof PROMPT / sizeof PROMPT[0] };

/* The mapping of the file at path in this process (/proc/self/smaps): its address range and
 * resident bytes. The model maps its file once; 0 when no mapping of it is found. */
static int mapping_of(const char *path, uintptr_t *start, uintptr_t *end, uint64_t *rss)
{
    char real[PATH_MAX];
    ck_assert_ptr_nonnull(realpath(path, real));
    FILE *f = fopen("/proc/self/smaps", "r");
    ck_assert_ptr_nonnull(f);
    char line[PATH_MAX + 256];
    int in = 0, found = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        unsigned long a, b, kb;
        int name_at = 0;
        if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %n", &a, &b, &name_at) == 2 && name_at > 0) {
            char *name = line + name_at;
            name[strcspn(name, "\n")] = '\0';
            in = strcmp(name, real) == 0;
            if (in) {
                *start = a;
                *end = b;
            }
        } else if (in && sscanf(line, "Rss: %lu kB", &kb) == 1) {
            *rss = (uint64_t)kb * 1024;
            found = 1;
            in = 0;
        }
    }
    fclose(f);
    return found;
}

static r1_model *load(const char *path)
{
    r1_model_opts *o = NULL;
    ck_assert_int_eq(r1_model_opts_create(&o), R1_OK);
    ck_assert_int_eq(r1_model_opts_set_expert_cache_bytes(o, 0), R1_OK);
    r1_model *m = NULL;
    ck_assert_msg(r1_model_load(&m, path, NULL, o) == R1_OK, "load %s: %s", path, r1_last_error());
    r1_model_opts_destroy(o);
    return m;
}

/* Every page of the model's mapping read once, as a pass over weights still in rows would. */
static uint64_t touch_all(const char *path)
{
    uintptr_t a = 0, b = 0;
    uint64_t rss = 0;
    ck_assert(mapping_of(path, &a, &b, &rss));
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    unsigned sum = 0;
    for (uintptr_t p = a; p < b; p += page)
        sum += *(volatile const uint8_t *)p;
    ck_assert(mapping_of(path, &a, &b, &rss));
    (void)sum;
    return rss;
}

static void check_variant(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.r1m", tu_models_dir(), name);

    /* The reference: the same model whose copied weights keep their mapped pages. */
    r1_model *keep = load(path);
    r1_host_weights__set_source(r1_model__compute(keep)->host_weights, NULL);
    size_t vocab = 0, vocab2 = 0;
    float *ref_pp = tu_logits(keep, PROMPT, N_PROMPT, 0, &vocab);
    float *ref_tg = tu_logits(keep, PROMPT, N_PROMPT, 1, &vocab);
    r1_host_weights_counters kk;
    r1_host_weights__counters(r1_model__compute(keep)->host_weights, &kk);
    ck_assert_uint_gt(kk.tensors, 0);
    ck_assert_uint_eq(kk.released, 0);
    r1_model_destroy(keep);

    r1_model *m = load(path);
    r1_host_weights_counters k;
    r1_host_weights__counters(r1_model__compute(m)->host_weights, &k);
    ck_assert_uint_eq(k.tensors, 0); /* copies are made on first use */
    const uint64_t before = touch_all(path);
    float *pp = tu_logits(m, PROMPT, N_PROMPT, 0, &vocab2);
    uintptr_t a, b;
    uint64_t after = 0;
    ck_assert(mapping_of(path, &a, &b, &after));
    r1_host_weights__counters(r1_model__compute(m)->host_weights, &k);
    ck_assert_uint_eq(k.tensors, kk.tensors);
    ck_assert_uint_gt(k.released, 0);
    /* Whole pages of every copied weight left; reads in place since (the embedding rows of the
     * prompt, vectors, the float32 router) may have brought a few back. */
    ck_assert_msg(after + k.released / 2 <= before,
                  "%s: mapping resident %llu bytes before the first pass, %llu after; %llu "
                  "released (copies of %llu bytes)",
                  name, (unsigned long long)before, (unsigned long long)after,
                  (unsigned long long)k.released, (unsigned long long)k.bytes);
    float *tg = tu_logits(m, PROMPT, N_PROMPT, 1, &vocab2);
    ck_assert_uint_eq(vocab, vocab2);
    const size_t bytes = (size_t)N_PROMPT * vocab * sizeof(float);
    ck_assert_msg(memcmp(pp, ref_pp, bytes) == 0, "%s: prefill logits changed", name);
    ck_assert_msg(memcmp(tg, ref_tg, bytes) == 0, "%s: decode logits changed", name);
    r1_model_destroy(m);
    free(pp);
    free(tg);
    free(ref_pp);
    free(ref_tg);
}

START_TEST(test_release_q8_0)
{
    check_variant("tiny-v3-q8_0");
}
END_TEST

START_TEST(test_release_q4_0)
{
    check_variant("tiny-v2lite-q4_0");
}
END_TEST

int main(void)
{
    /* The copies exist only where the CPU backend multiplies 8-bit activations (weight_layout.h).
     */
    r1_cpu__set_act_q8(1);
    if (r1_cpu__weight_layout() != R1_LAYOUT_R16) {
        printf("SKIP: this CPU's kernels read the file's rows; no weight is copied\n");
        return 77;
    }
    Suite *s = suite_create("map_release");
    TCase *tc = tcase_create("release");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_release_q8_0);
    tcase_add_test(tc, test_release_q4_0);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
