/* device_parity.h: the parity harness a device backend's suite (test_vulkan, test_cuda) shares:
 * random weights and inputs, every op of a layer against the CPU backend's, whole-model logits
 * against the CPU's on the tiny models, the device latent cache, threads and the memory-budget
 * fallback, parameterised by what differs between backends (dp_backend). Check assertions: call
 * from a test, in a runner with CK_NOFORK (the worst differences span the tests). */
#ifndef R1_DEVICE_PARITY_H
#define R1_DEVICE_PARITY_H

#include <check.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "backend.h"
#include "compute.h"
#include "r1.h"

/* What a backend's suite tells the shared tests. */
typedef struct dp_backend {
    const char *name; /* the backend's name for r1_compute__open and the model options */
    const r1_backend_ops *(*ops)(void); /* its operations table */
    const char *const *models; /* the tiny models of the whole-model tests, the MoE ones first */
    int n_models, n_moe_models;
    /* Runs after every shared test that used the device (the Vulkan validation layer's error
     * count); NULL for none. */
    void (*check_clean)(void);
    /* The longest prefill chunks (70 and 130 queries) on one shape per weight type only (a
     * software device is slow), instead of on every shape. */
    int long_prefill_once;
    /* A latent rank past what the device's decode attention holds, and a part of its refusal. */
    int64_t refused_lora_rank;
    const char *refused_says;
    int32_t last_op_kind; /* the op kinds MLA_DECODE..last_op_kind run on the device */
    /* A transfer of 80 MiB takes more than one submit (Vulkan: a frame's staging is smaller). */
    int big_upload_flushes;
    const char *memory_budget_env; /* the device memory budget, read when a device is opened */
    const char *shared_load_env;   /* set to "1" while the model the threads share loads; or NULL */
    const char *only_env; /* names one MODEL-VARIANT for the whole-model parity alone; or NULL */
} dp_backend;

/* The backend the shared tests run on: set before the runner starts. */
void dp_use(const dp_backend *b);

/* max|cpu| over a model's logits bounds max|device - cpu| times this: both accumulate in
 * float32, in different orders. */
#define DP_PARITY_BOUND 1e-3
/* The bound every op meets on these inputs: float32 sums in other orders (and, for the norm and
 * the softmax, float32 where the CPU keeps double). */
#define DP_OP_BOUND 1e-5

/* max|got - want| / max|want| (INFINITY where one holds a NaN the other does not). */
double dp_rel_diff(const float *got, const float *want, size_t n);
/* Keeps the largest relative difference any parity check reached (dp_worst_seen). */
void dp_note_diff(double d);
double dp_worst_seen(void);
float dp_frand(unsigned *state);
/* A (rows, cols) weight in type dt built from random floats; fp8 gets block scales. *data and
 * *scale (NULL unless fp8) are the caller's to free. */
void dp_make_weight(int32_t dt, int64_t rows, int64_t cols, unsigned seed, r1_tensor *w,
                    void **data, float **scale);

/* Buffers, transfers and the queue at the backend's own interface: round trips, many submits,
 * a large transfer, out-of-range and bad arguments refused. */
void dp_add_buffer_tests(TCase *tc);

/* Buffers, transfers and the queue at the backend's own interface: round trips, many submits,
 * a large transfer, out-of-range and bad arguments refused. */
void dp_add_buffer_tests(TCase *tc);

/* A device index past the last refused; the public selectors (an index, a part of the name in
 * any case) found, an absent index or name refused (naming the devices present where
 * names_present), at r1_compute__open and at r1_model_load. */
void dp_check_device_selectors(const char *absent_index, int names_present);

/* Every weight type in every shape (rows, cols, tokens): the device's product against the CPU's,
 * twice (the second with the weight resident), all on the device, nothing kept resident. */
void dp_check_matmul_every_dtype(r1_compute *cpu, r1_compute *gpu, const int64_t (*shapes)[3],
                                 size_t n_shapes);

/* The op tests (RMSNorm, rotary, softmax, SwiGLU, routing, MoE combine, MLA decode and prefill)
 * in that order. */
void dp_add_op_tests(TCase *tc);
/* The ops past the device's limits (run on the CPU by the hybrid rule, refused by the backend),
 * then the check that every op kind up to last_op_kind was compared, within its bound: after
 * every op test. */
void dp_add_op_final_tests(TCase *tc);
/* One op test's pair of backends: the CPU's and the device's (the device's counters at open). */
typedef struct dp_op_pair {
    r1_compute cpu, gpu;
    r1_compute_device_counters before;
} dp_op_pair;
void dp_op_pair_open(dp_op_pair *o);
/* Closes both; every op since the open ran on the device (n_ops of them). */
void dp_op_pair_close(dp_op_pair *o, uint64_t n_ops);
/* Records an op kind's comparison for the final check. */
void dp_note_op(int32_t kind, double d);
float *dp_rand_floats(size_t n, unsigned seed, float scale);

/* Whole models: parity on every model and weight type (5 * n_models runs), a device expert budget
 * smaller than the model, the device latent cache, threads, the memory-budget fallback. */
void dp_add_model_tests(TCase *tc);

#endif
