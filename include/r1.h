/* r1.h: the public, stable C API of libr1 (the only installed header). */
#ifndef R1_H
#define R1_H

#include <stddef.h>
#include <stdint.h>

/**
 * @file r1.h
 * @brief libr1: run DeepSeek-R1-class models on the user's own machine.
 *
 * Every type crossing this boundary is a fixed-width integer, size_t, float, double, an opaque
 * handle pointer or a UTF-8 string, so that ctypes, C#, Rust and Lua bindings can mirror it
 * without knowing any struct layout. See docs/api.md for the design and docs/abi.md for the
 * stability promise.
 */

/**
 * @def R1_API
 * @brief Marks a public function: exported from the shared library (default visibility, or
 *        dllexport/dllimport on Windows chosen by R1_BUILDING), empty when R1_STATIC is set.
 */
#if defined(_WIN32) && !defined(R1_STATIC)
#if defined(R1_BUILDING)
#define R1_API __declspec(dllexport)
#else
#define R1_API __declspec(dllimport)
#endif
#elif defined(R1_STATIC)
#define R1_API
#else
#define R1_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/** @name Version
 *  The version of the header. r1_version_number() reports the loaded library, which may be
 *  newer (never older, for a program built against this header and an ABI-compatible library).
 *  @{ */
#define R1_VERSION_MAJOR 1 /**< Incremented on an ABI break (SONAME libr1.so.MAJOR). */
#define R1_VERSION_MINOR 1 /**< Incremented when functions are added. */
#define R1_VERSION_PATCH 0 /**< Incremented for fixes that change no interface. */
/** major*1000000 + minor*1000 + patch. */
#define R1_VERSION_NUMBER (R1_VERSION_MAJOR * 1000000 + R1_VERSION_MINOR * 1000 + R1_VERSION_PATCH)
/** @} */

/**
 * @brief Status code returned by every fallible r1 function.
 *
 * Negative values are failures, 0 is success, positive values are non-error outcomes. The
 * numeric values are frozen: a code is never renumbered or reused.
 */
typedef int32_t r1_status;

/** Status codes. Frozen: append only, never renumber. */
enum r1_status_code {
    R1_OK = 0,                    /**< Success. */
    R1_DONE = 1,                  /**< Generation finished (end token, stop string, limit). */
    R1_CANCELLED = 2,             /**< The operation was cancelled by r1_session_cancel(). */
    R1_ERR_INVALID_ARG = -1,      /**< An argument was NULL, out of range or malformed. */
    R1_ERR_NO_MEMORY = -2,        /**< An allocation failed. */
    R1_ERR_IO = -3,               /**< Reading or writing a file failed. */
    R1_ERR_FORMAT = -4,           /**< A model file is malformed or truncated. */
    R1_ERR_CHECKSUM = -5,         /**< Stored data does not match its checksum. */
    R1_ERR_UNSUPPORTED = -6,      /**< Valid input that this build cannot handle. */
    R1_ERR_NOT_FOUND = -7,        /**< A named thing (file, tensor, backend) does not exist. */
    R1_ERR_BUFFER_TOO_SMALL = -8, /**< The caller's buffer is too small; size reported back. */
    R1_ERR_OUT_OF_RANGE = -9,     /**< An index or token id is outside its valid range. */
    R1_ERR_CONTEXT_FULL = -10,    /**< The session's context length would be exceeded. */
    R1_ERR_BAD_STATE = -11,       /**< The call is not valid in the object's current state. */
    R1_ERR_INVALID_UTF8 = -12,    /**< Text is not valid UTF-8. */
    R1_ERR_BACKEND = -13,         /**< A compute backend or device failed. */
    R1_ERR_BUDGET = -14,          /**< A memory budget is too small for the request. */
    R1_ERR_INTERNAL = -15         /**< A bug in libr1; please report it with r1_last_error(). */
};

/** @name Opaque handles
 *  Declared, never defined: their layout is private and may change in any release.
 *  @{ */
typedef struct r1_model r1_model;     /**< A loaded model (weights, tokenizer, expert store). */
typedef struct r1_session r1_session; /**< One conversation: KV cache and generation state. */
typedef struct r1_sampler r1_sampler; /**< Token selection settings and random state. */
typedef struct r1_backend r1_backend; /**< A compute backend bound to one device. */
/** @} */

/**
 * @brief The loaded library's version as major*1000000 + minor*1000 + patch.
 * @return The version number; compare with R1_VERSION_NUMBER to detect a mismatch.
 * @note Thread-safe. Never fails.
 * @since 1.0
 */
R1_API uint32_t r1_version_number(void);

/**
 * @brief The loaded library's version as a string, e.g. "1.0.0".
 * @return A static string owned by the library; never NULL.
 * @note Thread-safe. Never fails.
 * @since 1.0
 */
R1_API const char *r1_version_string(void);

/**
 * @brief The symbolic name of a status code, e.g. "R1_ERR_IO".
 * @param st Any value; unknown codes give "R1_UNKNOWN_STATUS".
 * @return A static string owned by the library; never NULL.
 * @note Thread-safe.
 * @since 1.0
 */
R1_API const char *r1_status_name(r1_status st);

/**
 * @brief The message of the calling thread's most recent failure.
 *
 * Every r1 function that returns a failure status leaves a human-readable message here. The
 * message stays until the same thread makes its next r1 call (other than r1_last_error(),
 * r1_status_name() and the version functions), so it survives constructors that fail before any
 * handle exists, and no other thread can overwrite it.
 *
 * @return A thread-local string owned by the library; "" when the last call succeeded.
 *         Valid until this thread's next r1 call.
 * @note Thread-safe (each thread sees its own message).
 * @since 1.0
 */
R1_API const char *r1_last_error(void);

/**
 * @brief The number of compute backends compiled into (or loadable by) this library.
 *
 * The list includes backends whose device is absent on this machine; use
 * r1_backend_available() to ask whether one can run here.
 *
 * @return The number of backends; at least 1 (the CPU backend is always built).
 * @note Thread-safe.
 * @since 1.0
 */
R1_API int32_t r1_backend_count(void);

/**
 * @brief The name of the backend at @p index ("cpu", "cuda", "vulkan").
 * @param index 0 <= index < r1_backend_count().
 * @return A static string owned by the library, or NULL when @p index is out of range (the
 *         reason is then in r1_last_error()).
 * @note Thread-safe.
 * @since 1.0
 */
R1_API const char *r1_backend_name(int32_t index);

/**
 * @brief Whether the named backend is built and can run on this machine now.
 *
 * Probing is done once per process and cached: for GPU backends it loads the driver and counts
 * devices, so the first call may take a moment.
 *
 * @param name A backend name such as "cpu", "cuda" or "vulkan" (case-sensitive).
 * @return 1 when usable, 0 when not built, not loadable or without a device; the reason for 0
 *         is in r1_last_error(). An unknown or NULL name also gives 0.
 * @note Thread-safe.
 * @since 1.0
 */
R1_API int32_t r1_backend_available(const char *name);

/**
 * @brief Describe the devices of a backend that can run here, for a person to read.
 *
 * One entry per device in the order r1_model_opts_set_device() indexes them, separated by
 * "; ", each "INDEX: NAME (KIND)". KIND tells a real accelerator from an implementation that
 * runs on the CPU: "discrete GPU", "integrated GPU", "virtual GPU", or "software renderer on
 * the CPU, not a GPU" (Mesa's llvmpipe behind lavapipe, for instance). A backend that does not
 * describe its devices gives their count ("1 device"). The text is not a stable format.
 *
 * @param name A backend name such as "cpu", "cuda" or "vulkan".
 * @param buf Receives the text and a NUL; may be NULL when cap is 0.
 * @param cap Capacity of buf in bytes, the NUL included.
 * @param len_out Receives the length without the NUL (the needed length on
 *        R1_ERR_BUFFER_TOO_SMALL).
 * @return R1_OK; R1_ERR_BUFFER_TOO_SMALL; R1_ERR_NOT_FOUND (no such backend is built);
 *         R1_ERR_UNSUPPORTED (the backend cannot run here: the reason is in r1_last_error(), as
 *         for r1_backend_available()); R1_ERR_INVALID_ARG (NULL name or len_out).
 * @note Thread-safe. Probes the backend like r1_backend_available() (once per process).
 * @since 1.1
 */
R1_API r1_status r1_backend_describe(const char *name, char *buf, size_t cap, size_t *len_out);

/* ============================================================================================ */
/** @name Models
 *  Loading an .r1m model file (see docs/format.md), describing it, and its expert store.
 *  A model is immutable after loading apart from its internally locked expert cache (and the
 *  forward data its first session binds, under a lock), so one r1_model may be shared by any
 *  number of threads and sessions.
 *  @{ */

/** Options for r1_model_load(); opaque, changed only through its setters. */
typedef struct r1_model_opts r1_model_opts;

/**
 * @brief Create a set of model options holding the defaults (unbounded expert cache, no
 *        weight verification at load).
 * @param out Receives the new options; set to NULL on failure.
 * @return R1_OK, R1_ERR_INVALID_ARG (out is NULL) or R1_ERR_NO_MEMORY.
 * @note Ownership: the caller owns *out and releases it with r1_model_opts_destroy().
 *       Thread rule: options may be used by one thread at a time.
 * @since 1.1
 */
R1_API r1_status r1_model_opts_create(r1_model_opts **out);

/**
 * @brief Destroy model options. Models loaded with them are not affected.
 * @param opts Options from r1_model_opts_create(), or NULL (ignored).
 * @since 1.1
 */
R1_API void r1_model_opts_destroy(r1_model_opts *opts);

/**
 * @brief Bound the memory that routed experts loaded on demand may use.
 *
 * Experts are read from the model file when the router first selects them and kept in a least
 * recently used cache of at most @p bytes. A budget smaller than one layer's selected experts
 * (num_experts_per_tok times the largest expert) makes r1_model_load() fail with
 * R1_ERR_BUDGET and a message giving the minimum.
 *
 * @param opts Options to change.
 * @param bytes Budget in bytes; 0 (the default) means unbounded.
 * @return R1_OK or R1_ERR_INVALID_ARG (opts is NULL).
 * @note Thread rule: one thread at a time per options object.
 * @since 1.1
 */
R1_API r1_status r1_model_opts_set_expert_cache_bytes(r1_model_opts *opts, uint64_t bytes);

/**
 * @brief Bound the device memory that routed experts may use on a GPU backend.
 *
 * With a backend whose device has its own memory (e.g. "vulkan"), routed experts are uploaded
 * from the host expert store when first used and kept in a least recently used device cache of
 * at most @p bytes; an expert larger than the budget runs on the CPU. Results do not depend on
 * the budget. Ignored by the CPU backend.
 *
 * @param opts Options to change.
 * @param bytes Budget in bytes; 0 (the default) means bounded only by the device's memory.
 * @return R1_OK or R1_ERR_INVALID_ARG (opts is NULL).
 * @note Thread rule: one thread at a time per options object.
 * @since 1.1
 */
R1_API r1_status r1_model_opts_set_device_expert_cache_bytes(r1_model_opts *opts, uint64_t bytes);

/**
 * @brief Size the routed-expert budget from the memory available when the model loads.
 *
 * r1_model_load() then reads MemAvailable (Linux /proc/meminfo) and gives the expert cache
 * what is left after the model's dense weights, the KV cache of @p context_tokens tokens and a
 * headroom of 512 MiB plus 5 % of MemAvailable; when every expert fits in that, the cache is
 * unbounded. If what is left is less than one layer's selected experts (num_experts_per_tok
 * times the largest expert), the load fails with R1_ERR_BUDGET and a message giving each term;
 * where MemAvailable cannot be read it fails with R1_ERR_IO. r1_model_get_expert_cache_stats()
 * reports the budget chosen. A later r1_model_opts_set_expert_cache_bytes() replaces this.
 * The command-line program and the Python binding use it unless given a budget.
 *
 * @param opts Options to change.
 * @param context_tokens Context whose KV cache to leave room for; 0 for the default context of
 *        a session (4096, or the model's maximum if less).
 * @return R1_OK or R1_ERR_INVALID_ARG (opts is NULL or context_tokens is negative).
 * @note Thread rule: one thread at a time per options object.
 * @since 1.1
 */
R1_API r1_status r1_model_opts_set_expert_cache_auto(r1_model_opts *opts, int32_t context_tokens);

/** Eviction policies of the expert cache (r1_model_opts_set_expert_cache_policy). @since 1.1 */
enum {
    R1_CACHE_POLICY_LRU = 0,     /**< Least recently used. */
    R1_CACHE_POLICY_DEFAULT = 1, /**< Decayed use counts weighed by how soon each layer runs. */
};

/**
 * @brief Choose which routed expert the cache drops when its budget is full.
 *
 * R1_CACHE_POLICY_DEFAULT (the default) keeps decayed use counts per layer and expert and drops
 * the expert with the fewest expected uses per unit of room until its layer runs again;
 * R1_CACHE_POLICY_LRU drops the least recently used one (for comparison). Logits do not depend
 * on the policy; only hit rates and speed do (docs/performance.md compares them).
 *
 * @param opts Options to change.
 * @param policy R1_CACHE_POLICY_DEFAULT or R1_CACHE_POLICY_LRU.
 * @return R1_OK or R1_ERR_INVALID_ARG (opts is NULL or an unknown policy).
 * @note Thread rule: one thread at a time per options object.
 * @since 1.1
 */
R1_API r1_status r1_model_opts_set_expert_cache_policy(r1_model_opts *opts, int32_t policy);

/**
 * @brief Set how many I/O threads read, verify and decode routed experts in the background.
 *
 * Each model's expert store starts its own threads at load (with every signal blocked) and
 * joins them when the model is destroyed. Forward passes ask for all experts of a layer at once
 * and compute them in the order they arrive; each thread has one read in flight, so the count
 * is the drive's queue depth. Logits do not depend on it.
 *
 * @param opts Options to change.
 * @param n_threads 1 to 64, or 0 for the default (8).
 * @return R1_OK or R1_ERR_INVALID_ARG (opts is NULL or n_threads is outside 0..64).
 * @note Thread rule: one thread at a time per options object.
 * @since 1.1
 */
R1_API r1_status r1_model_opts_set_expert_io_threads(r1_model_opts *opts, int32_t n_threads);

/**
 * @brief Turn the prefetch of routed experts by router lookahead on or off.
 *
 * With a bounded expert budget (r1_model_opts_set_expert_cache_bytes()), each forward pass
 * applies the router of the next MoE layer to the output of the layer just computed and starts
 * reading the experts it predicts, at a lower priority than experts a layer is waiting for, so
 * that the reads overlap the attention in between. Costs one small product per MoE layer and
 * the bytes of experts predicted but not used; the expert-cache statistics report both. Each
 * session measures, over alternating passes with and without it, whether it shortens the waits
 * for expert data, keeps it only where it does, and measures again from time to time. Does nothing
 * when every expert stays in memory (an unbounded budget). Logits do not depend on it.
 *
 * @param opts Options to change.
 * @param on 1 (the default) to prefetch, 0 not to.
 * @return R1_OK or R1_ERR_INVALID_ARG (opts is NULL or on is not 0 or 1).
 * @note Thread rule: one thread at a time per options object.
 * @since 1.1
 */
R1_API r1_status r1_model_opts_set_expert_prefetch(r1_model_opts *opts, int32_t on);

/**
 * @brief Verify the checksum of every dense weight while loading.
 *
 * Off by default: loading then reads only the file's header and index, so it takes the same
 * time for any model size. When on, r1_model_load() reads every dense weight once and fails
 * with R1_ERR_CHECKSUM naming the first damaged tensor. Expert weights are always verified
 * when they are loaded.
 *
 * @param opts Options to change.
 * @param verify 1 to verify, 0 not to.
 * @return R1_OK or R1_ERR_INVALID_ARG (opts is NULL or verify is not 0 or 1).
 * @since 1.1
 */
R1_API r1_status r1_model_opts_set_verify_weights(r1_model_opts *opts, int32_t verify);

/**
 * @brief Set how many CPU threads the model's operations use.
 * @param opts Options.
 * @param n_threads 1..1024 threads (the calling thread counts as one), or 0 (the default) to
 *        share one process-wide pool with a thread per core (override with the R1_NUM_THREADS
 *        environment variable). Results do not depend on the thread count.
 * @return R1_OK, or R1_ERR_INVALID_ARG (NULL opts, count out of range).
 * @since 1.1
 */
R1_API r1_status r1_model_opts_set_threads(r1_model_opts *opts, int32_t n_threads);

/**
 * @brief Choose the compute backend by name ("cpu", "cuda", "vulkan"; see r1_backend_name()).
 *
 * Operations the backend cannot run go to the CPU backend transparently. The default is "cpu".
 *
 * @param opts Options.
 * @param name A backend built into this library; whether its device is present is checked
 *        by r1_model_load().
 * @return R1_OK; R1_ERR_NOT_FOUND (no such backend built in); R1_ERR_INVALID_ARG.
 * @since 1.1
 */
R1_API r1_status r1_model_opts_set_backend(r1_model_opts *opts, const char *name);

/**
 * @brief Choose which device of the backend the model runs on.
 *
 * Devices are counted in the backend's order of preference (for "vulkan": discrete GPUs, then
 * integrated, then the rest; `r1 backends` lists them). Without this call the backend's first
 * device is used, or for "vulkan" the one the R1_VULKAN_DEVICE environment variable names.
 *
 * @param opts Options.
 * @param device A decimal index ("1") or a case-insensitive part of the device's name
 *        ("radeon", "llvmpipe"), at most 255 bytes of UTF-8; NULL restores the default. Which
 *        device matches is decided by r1_model_load(), which fails with R1_ERR_NOT_FOUND and a
 *        message naming the request when none does.
 * @return R1_OK, or R1_ERR_INVALID_ARG (NULL opts, an empty or too long name). The string is
 *         copied.
 * @note Thread rule: one thread at a time per options object.
 * @since 1.1
 */
R1_API r1_status r1_model_opts_set_device(r1_model_opts *opts, const char *device);

/**
 * @brief Load a model from an .r1m file (made by `r1 convert` or r1_convert()).
 *
 * The file's header, metadata and index are read and validated; dense weights are memory
 * mapped and used in place; routed experts are read on demand. The model file is never
 * modified.
 *
 * @param out Receives the model; set to NULL on failure.
 * @param path_utf8 Path of the .r1m file, UTF-8.
 * @param be Compute backend; must be NULL for now (the CPU backend).
 * @param opts Options, or NULL for the defaults. Not retained after the call.
 * @return R1_OK; R1_ERR_INVALID_ARG (out or path NULL); R1_ERR_NOT_FOUND (no such file);
 *         R1_ERR_IO; R1_ERR_FORMAT (malformed or truncated file); R1_ERR_CHECKSUM (damaged
 *         header, index or, with verification on, weights); R1_ERR_UNSUPPORTED (newer format
 *         version, unknown architecture, or a non-NULL backend); R1_ERR_BUDGET (expert cache
 *         budget too small); R1_ERR_NO_MEMORY. r1_last_error() names the offending part.
 * @note Ownership: the caller owns *out and releases it with r1_model_destroy().
 *       Thread-safe: several threads may load models concurrently.
 * @since 1.1
 */
R1_API r1_status r1_model_load(r1_model **out, const char *path_utf8, r1_backend *be,
                               const r1_model_opts *opts);

/**
 * @brief Release the caller's reference to a model.
 *
 * Sessions hold their own references, so a model destroyed while sessions still use it is
 * freed only when the last of them is destroyed; objects may thus be finalized in any order.
 *
 * @param model A model from r1_model_load(), or NULL (ignored). Must not be used afterwards.
 * @note Thread-safe with respect to other references to the same model.
 * @since 1.1
 */
R1_API void r1_model_destroy(r1_model *model);

/**
 * @brief Description of a loaded model, filled by r1_model_get_info().
 *
 * Size-first: set struct_size to sizeof(r1_model_info) before the call. The library fills at
 * most that many bytes, so a program built against an older header keeps working. Fields are
 * only ever appended.
 */
typedef struct r1_model_info {
    uint32_t struct_size;            /**< In: sizeof(r1_model_info). Out: bytes filled. */
    int32_t architecture;            /**< 1 = DeepSeek-V3/R1, 2 = DeepSeek-V2/V2-Lite, 3 = Qwen2
                                          (R1-Distill-Qwen), 4 = Llama (R1-Distill-Llama). */
    char architecture_name[32];      /**< "deepseek_v3", "deepseek_v2", "qwen2" or "llama",
                                          NUL-terminated. */
    int64_t n_layers;                /**< Main transformer layers (num_hidden_layers). */
    int64_t n_mtp_layers;            /**< Multi-token-prediction layers stored (0 or 1). */
    int64_t hidden_size;             /**< Model width. */
    int64_t n_heads;                 /**< Attention heads. */
    int64_t n_routed_experts;        /**< Routed experts per MoE layer. */
    int64_t n_experts_per_token;     /**< Experts selected per token and layer. */
    int64_t n_shared_experts;        /**< Shared experts per MoE layer. */
    int64_t vocab_size;              /**< Rows of the embedding and output matrices. */
    int64_t n_tokenizer_ids;         /**< Ids the tokenizer can produce (may differ). */
    int64_t max_position_embeddings; /**< Longest context the model was configured for. */
    int64_t bos_token_id;            /**< Beginning-of-sequence id from the config, or -1. */
    int64_t eos_token_id;            /**< End-of-sequence id from the config, or -1. */
    uint64_t file_bytes;             /**< Size of the .r1m file. */
    uint64_t dense_bytes;            /**< Bytes of the memory-mapped dense weights. */
    uint64_t expert_bytes;           /**< Uncompressed bytes of all routed experts. */
    uint64_t max_expert_bytes;       /**< Uncompressed bytes of the largest expert. */
    uint64_t n_tensors;              /**< Dense tensors in the file. */
    uint64_t n_expert_blobs;         /**< Stored (layer, expert) pairs. */
    char expert_dtype[16];           /**< Routed expert weight type, e.g. "fp8_e4m3", "q4_0". */
} r1_model_info;

/**
 * @brief Describe a loaded model.
 * @param model The model.
 * @param info Output; info->struct_size must be set to sizeof(r1_model_info) first.
 * @return R1_OK, or R1_ERR_INVALID_ARG (NULL argument or unset struct_size).
 * @note Thread-safe. The struct is the caller's; nothing in it is borrowed.
 * @since 1.1
 */
R1_API r1_status r1_model_get_info(const r1_model *model, r1_model_info *info);

/**
 * @brief Counters of a model's expert store, filled by r1_model_get_expert_cache_stats().
 *
 * Size-first, like r1_model_info: set struct_size to sizeof(r1_expert_cache_stats).
 */
typedef struct r1_expert_cache_stats {
    uint32_t struct_size;        /**< In: sizeof(r1_expert_cache_stats). Out: bytes filled. */
    uint32_t reserved;           /**< Zero. */
    uint64_t hits;               /**< Requests served from memory. */
    uint64_t misses;             /**< Requests that loaded the expert from the file. */
    uint64_t evictions;          /**< Experts dropped to stay within the budget. */
    uint64_t bytes_read;         /**< Bytes read from the file (compressed). */
    uint64_t bytes_decompressed; /**< Bytes of expert weights produced by loads. */
    uint64_t load_ns;            /**< Nanoseconds spent loading (summed over threads). */
    uint64_t current_bytes;      /**< Bytes held now (resident and loading). */
    uint64_t peak_bytes;         /**< Largest value current_bytes has had. */
    uint64_t budget_bytes;       /**< The budget; 0 when unbounded. */
    /* Appended in 1.1 with the asynchronous expert store. A caller whose struct_size ends
     * before a field does not get it. */
    uint64_t prefetch_issued;       /**< Experts asked for ahead of use (router lookahead). */
    uint64_t prefetch_used;         /**< Of those, demanded while resident or still loading. */
    uint64_t prefetch_wasted_bytes; /**< Bytes of prefetched experts evicted before any use. */
    uint64_t misses_prefetched;     /**< Of misses, those a prefetch had already queued or
                                         started; prefetch_used - misses_prefetched prefetched
                                         experts arrived in time (hits), so prefetch recall is
                                         prefetch_used / (misses - misses_prefetched +
                                         prefetch_used). */
    uint64_t stall_ns;              /**< Nanoseconds forward passes waited for experts (summed
                                         over threads). */
    uint32_t io_workers;            /**< I/O threads that read and decode experts. */
    uint32_t direct_io;             /**< 1 when expert reads bypass the page cache (O_DIRECT), so
                                         the budget is all the memory experts take. */
} r1_expert_cache_stats;

/**
 * @brief Read the expert store's counters (a consistent snapshot).
 * @param model The model.
 * @param stats Output; stats->struct_size must be set to sizeof(r1_expert_cache_stats) first.
 * @return R1_OK, or R1_ERR_INVALID_ARG (NULL argument or unset struct_size).
 * @note Thread-safe.
 * @since 1.1
 */
R1_API r1_status r1_model_get_expert_cache_stats(const r1_model *model,
                                                 r1_expert_cache_stats *stats);

/**
 * @brief Read the device expert cache's counters (a consistent snapshot).
 *
 * Same struct as r1_model_get_expert_cache_stats(): `misses` counts uploads of an expert to the
 * device, `bytes_read` the bytes uploaded, `load_ns` the time spent recording uploads,
 * `bytes_decompressed` is 0. All counters are 0 when the model's backend runs on host memory
 * (the CPU backend).
 *
 * @param model The model.
 * @param stats Output; stats->struct_size must be set to sizeof(r1_expert_cache_stats) first.
 * @return R1_OK, or R1_ERR_INVALID_ARG (NULL argument or unset struct_size).
 * @note Thread-safe.
 * @since 1.1
 */
R1_API r1_status r1_model_get_device_expert_cache_stats(const r1_model *model,
                                                        r1_expert_cache_stats *stats);

/** r1_plan::fits: how a model fits in the memory planned for. @since 1.1 */
enum {
    R1_PLAN_NO_FIT = 0,    /**< Not even one layer's selected experts fit beside the rest. */
    R1_PLAN_STREAMS = 1,   /**< Runs with part of the experts read from the drive as needed. */
    R1_PLAN_IN_MEMORY = 2, /**< Every weight fits in memory. */
};

/**
 * @brief What a model needs and how fast it should decode, filled by r1_model_plan().
 *
 * Size-first: set struct_size to sizeof(r1_plan). Byte counts of experts are raw (as held in
 * memory) unless named stored (as in the file). Speeds assume each decoded token reads every
 * dense weight but the embedding table once from memory, plus its selected experts, and that
 * routing is uniform (every expert equally likely: the worst case for a cache), so the expected
 * share of expert bytes found in memory is the budget over all expert bytes; reads from the
 * drive are taken to overlap compute, so the slower of the two bounds decides.
 * @since 1.1
 */
typedef struct r1_plan {
    uint32_t struct_size;             /**< In: sizeof(r1_plan). Out: bytes filled. */
    int32_t fits;                     /**< R1_PLAN_NO_FIT, R1_PLAN_STREAMS or R1_PLAN_IN_MEMORY. */
    uint64_t file_bytes;              /**< Size of the .r1m file. */
    uint64_t dense_bytes;             /**< Dense (non-expert) weights. */
    uint64_t expert_bytes;            /**< All routed experts, raw. */
    uint64_t expert_stored_bytes;     /**< All routed experts as stored in the file. */
    uint64_t expert_bytes_per_token;  /**< Raw bytes of the experts one token selects. */
    uint64_t kv_bytes_per_token;      /**< KV cache per token of context, in the default
                                           cache type (f32 latent for MLA models: with "q8_0"
                                           it is 612 / 2304 of this for V3/R1 and V2-Lite). */
    int64_t context;                  /**< Tokens of context the plan leaves KV room for. */
    uint64_t ram_bytes;               /**< Memory planned for (given, or MemAvailable). */
    uint64_t headroom_bytes;          /**< Kept free (see r1_model_opts_set_expert_cache_auto). */
    uint64_t min_expert_budget_bytes; /**< One layer's selected experts: the smallest budget. */
    uint64_t expert_budget_bytes;     /**< Memory left for experts (at most expert_bytes). */
    double hit_rate;                  /**< Expected share of expert bytes found in memory. */
    uint64_t memory_bytes_per_token;  /**< Weight bytes read from memory per decoded token. */
    uint64_t drive_bytes_per_token;   /**< Expected bytes read from the drive per token. */
    double mem_bytes_per_s;           /**< Memory bandwidth used (given or measured). */
    double drive_bytes_per_s;         /**< Drive bandwidth used (given or measured). */
    double memory_tokens_per_s;       /**< Decode bound by memory bandwidth. */
    double drive_tokens_per_s;        /**< Decode bound by the drive; 0: no drive reads. */
    double decode_tokens_per_s;       /**< Expected decode speed: the lower bound; 0: no fit. */
} r1_plan;

/**
 * @brief Plan running a model in a given amount of memory without loading it.
 *
 * Reads only the file's header and index (planning a 400 GB model reads none of its weights),
 * works out the budget r1_model_opts_set_expert_cache_auto() would choose with @p ram_bytes
 * available, and the expected decode speed from the two bandwidths. A bandwidth given as 0 is
 * measured: memory by a short triad over 3 x 64 MiB on every core (about 0.3 s), the drive by
 * direct (O_DIRECT, bypassing the page cache where the file system allows) 16 MiB reads of the
 * model file for at most about 1.5 s.
 *
 * @param path_utf8 The .r1m file.
 * @param ram_bytes Memory to plan for; 0 for MemAvailable now.
 * @param context_tokens Context to leave KV room for; 0 for a session's default.
 * @param mem_bytes_per_s Memory bandwidth in bytes per second, or 0 to measure it.
 * @param drive_bytes_per_s Drive bandwidth in bytes per second, or 0 to measure it.
 * @param plan Output; plan->struct_size must be set to sizeof(r1_plan) first.
 * @return R1_OK (also when the model does not fit: see plan->fits), R1_ERR_INVALID_ARG (NULL
 *         argument, unset struct_size, negative value), or the errors of opening the file as
 *         r1_model_load() reports them (R1_ERR_IO, R1_ERR_FORMAT, R1_ERR_UNSUPPORTED, ...).
 * @note Thread-safe; takes the time of the measurements it makes.
 * @since 1.1
 */
R1_API r1_status r1_model_plan(const char *path_utf8, uint64_t ram_bytes, int32_t context_tokens,
                               double mem_bytes_per_s, double drive_bytes_per_s, r1_plan *plan);

/**
 * @brief Progress callback of r1_convert().
 * @param done_bytes Source bytes processed so far.
 * @param total_bytes Source bytes in all.
 * @param user_data The pointer given to r1_convert().
 * @return 0 to continue; non-zero cancels the conversion (r1_convert() returns R1_CANCELLED).
 */
typedef int32_t (*r1_progress_fn)(uint64_t done_bytes, uint64_t total_bytes, void *user_data);

/** r1_convert() flag: never filter experts (byte-plane or nibble-plane split) before
 * compressing them; as unfiltered zstd decodes too slowly to pay, every expert is then stored
 * raw (docs/format.md §6). */
#define R1_CONVERT_NO_SHUFFLE 0x1u

/**
 * @brief Convert a Hugging Face DeepSeek-V3/R1 or V2/V2-Lite checkpoint into an .r1m file.
 *
 * Reads config.json, model.safetensors or the shards listed by model.safetensors.index.json,
 * tokenizer.json and tokenizer_config.json from @p hf_dir_utf8, streaming one tensor at a time.
 * The output is written to a temporary file beside @p out_path_utf8 and renamed at the end, so
 * an interrupted or failed conversion never leaves a file at that path. The source is never
 * modified. The output does not depend on @p n_threads.
 *
 * @param hf_dir_utf8 Checkpoint directory, UTF-8.
 * @param out_path_utf8 Output path, UTF-8: a new path, or a regular file that is replaced
 *        (anything else there, a symbolic link or a device for instance, is refused with
 *        R1_ERR_INVALID_ARG).
 * @param quant_rules NULL to keep every weight's type; "q8_0" or "q4_0" for every eligible
 *        weight; or a comma-separated list such as "experts=q4_0,attn=q8_0" over the classes
 *        experts, shared, attn, dense, head with types q8_0, q4_0, keep. Embeddings, norms and
 *        the router are never quantised.
 * @param n_threads Compression threads (1 to 64; <= 0 means 1).
 * @param flags 0 or R1_CONVERT_NO_SHUFFLE.
 * @param progress Called on the calling thread after each tensor or batch of experts with the
 *        source bytes consumed so far and their total, which the last call reaches; may be
 *        NULL.
 * @param user_data Passed to @p progress.
 * @return R1_OK; R1_ERR_INVALID_ARG; R1_ERR_NOT_FOUND (missing file); R1_ERR_IO;
 *         R1_ERR_FORMAT (malformed checkpoint); R1_ERR_UNSUPPORTED (architecture, dtype);
 *         R1_ERR_NO_MEMORY; R1_CANCELLED when @p progress asked to stop.
 * @note Thread-safe (independent conversions may run concurrently).
 * @since 1.1
 */
R1_API r1_status r1_convert(const char *hf_dir_utf8, const char *out_path_utf8,
                            const char *quant_rules, int32_t n_threads, uint32_t flags,
                            r1_progress_fn progress, void *user_data);

/** @} */

/** @name Sessions
 *  A session is one conversation on a model: its latent KV cache, its position and the logits
 *  of its last evaluation. It holds a reference on its model. One thread at a time.
 *  @{ */

/** Options for r1_session_create(); set one at a time, destroy after use. */
typedef struct r1_session_opts r1_session_opts;

/**
 * @brief Creates session options with the defaults (context 4096, or the model's
 *        max_position_embeddings where that is smaller; logits of the last position).
 * @param out Receives the options; release with r1_session_opts_destroy().
 * @return R1_OK, R1_ERR_INVALID_ARG (NULL out) or R1_ERR_NO_MEMORY.
 * @note Thread-safe.
 * @since 1.1
 */
R1_API r1_status r1_session_opts_create(r1_session_opts **out);

/**
 * @brief Releases session options.
 * @param opts Options from r1_session_opts_create(), or NULL.
 * @since 1.1
 */
R1_API void r1_session_opts_destroy(r1_session_opts *opts);

/**
 * @brief Sets the context length: the most positions the session's cache holds.
 * @param opts The options.
 * @param n_ctx Positions, 1 up to the model's max_position_embeddings (checked at
 *        r1_session_create()). The cache costs (kv_lora_rank + qk_rope_head_dim) x layers x 4
 *        bytes per position. Left unset (and with NULL options), a session gets 4096 positions,
 *        or max_position_embeddings where that is smaller; a length set here is never shortened.
 * @return R1_OK or R1_ERR_INVALID_ARG.
 * @since 1.1
 */
R1_API r1_status r1_session_opts_set_context(r1_session_opts *opts, int32_t n_ctx);

/**
 * @brief Chooses whether r1_session_eval() keeps the logits of every position it evaluates
 *        (on != 0) or only of the last one (0, the default).
 * @param opts The options.
 * @param on 0 or 1.
 * @return R1_OK or R1_ERR_INVALID_ARG.
 * @since 1.1
 */
R1_API r1_status r1_session_opts_set_logits_all(r1_session_opts *opts, int32_t on);

/**
 * @brief Chooses the value type of the session's attention cache.
 *
 * The grouped-query models (R1-Distill Qwen2 / Llama) keep keys and values in "f16" by default;
 * "q8_0" takes 34 bytes per 32 values (53 % of f16) at a small cost in accuracy
 * (docs/model.md §7), "f32" is exact. The DeepSeek (MLA) models keep their latent cache in "f32"
 * by default, or in "q8_0": each row (kv_lora_rank values of c_kv, then qk_rope_head_dim of the
 * rotated key, each part in blocks of 32 of its own, the last zero-padded) is quantised once
 * when written, 612 bytes instead of 2304 per token and layer for V3/R1 and V2-Lite (27 %), and
 * attention reads it as those values dequantised (docs/model.md §2.6). A kv_lora_rank that is
 * not a multiple of 32 (no released model has one) keeps f32. With a device backend, attention
 * over a q8_0 latent cache runs on the CPU over host memory (the device mirrors f32 caches
 * only); the rest of the layer stays on the device. For MLA models r1_session_create() refuses
 * "f16" with R1_ERR_UNSUPPORTED.
 * @param opts The options.
 * @param type "f16", "q8_0", "f32", or NULL for the model's default.
 * @return R1_OK or R1_ERR_INVALID_ARG (NULL opts, unknown name).
 * @since 1.1
 */
R1_API r1_status r1_session_opts_set_cache_type(r1_session_opts *opts, const char *type);

/** Context overflow policies for r1_session_opts_set_overflow(). */
enum r1_overflow {
    R1_OVERFLOW_FAIL = 0, /**< Refuse with R1_ERR_CONTEXT_FULL (the default). */
    R1_OVERFLOW_SHIFT = 1 /**< Drop the oldest turns after a kept prefix (r1_session_shift()). */
};

/**
 * @brief Chooses what happens when feeding, evaluating or generating would exceed the context.
 *
 * With R1_OVERFLOW_SHIFT, r1_session_feed(), r1_session_sync(), r1_session_eval() and each
 * generation step that would not fit first drop cached positions after the first n_keep, as
 * r1_session_shift() does: whole turns, each beginning at a user-turn marker (`<｜User｜>`), the
 * oldest first, until the tokens pending fit with a quarter of the remaining room to spare
 * where the turns allow it. Between turns, when no marker frees enough, every position after
 * the kept prefix goes; during a generation whose own turn is that long, the oldest tokens
 * after the prefix go instead. Tokens that would not fit even after the prefix alone still
 * fail with R1_ERR_CONTEXT_FULL. No kept token is evaluated again; a shift stays made when the
 * evaluation that needed it then fails.
 * @param opts The options.
 * @param policy R1_OVERFLOW_FAIL (default) or R1_OVERFLOW_SHIFT.
 * @param n_keep Positions always kept (the system prompt), or -1 for the default: everything
 *        before the first user-turn marker in the cache (BOS and the system prompt of the
 *        chat format), or the BOS alone where there is no marker.
 * @return R1_OK or R1_ERR_INVALID_ARG (NULL opts, unknown policy, n_keep below -1).
 * @since 1.1
 */
R1_API r1_status r1_session_opts_set_overflow(r1_session_opts *opts, int32_t policy,
                                              int32_t n_keep);

/**
 * @brief Creates a session on a model.
 * @param out Receives the session; release with r1_session_destroy().
 * @param model The model; the session keeps a reference, so the model may be destroyed first.
 * @param opts Options, or NULL for the defaults (the context: 4096 positions, or the model's
 *        max_position_embeddings where that is smaller).
 * @return R1_OK; R1_ERR_INVALID_ARG (NULL argument, a context set above the model's maximum);
 *         R1_ERR_NO_MEMORY; R1_ERR_NOT_FOUND or R1_ERR_FORMAT when a weight the forward pass
 *         needs is missing or misshapen.
 * @note Thread-safe with respect to the model; the new session belongs to the calling thread.
 *       The first session of a model binds the forward pass's model-derived data (weight views,
 *       float32 norm and W_UK copies: up to 256 MiB), under the model's lock; every later
 *       session shares it, so a further session costs only its cache and working memory.
 * @since 1.1
 */
R1_API r1_status r1_session_create(r1_session **out, r1_model *model, const r1_session_opts *opts);

/**
 * @brief Destroys a session and drops its reference on the model.
 * @param session The session, or NULL.
 * @since 1.1
 */
R1_API void r1_session_destroy(r1_session *session);

/**
 * @brief Evaluates tokens at the session's position (prefill when n > 1, decode when n == 1),
 *        appending them to the cache.
 * @param session The session.
 * @param ids Token ids, each below the model's embedding rows (r1_model_info.vocab_size).
 * @param n Number of ids, at least 1.
 * @return R1_OK; R1_ERR_OUT_OF_RANGE (an id outside the embeddings); R1_ERR_CONTEXT_FULL
 *         (n exceeds the room left); R1_ERR_INVALID_ARG; R1_ERR_IO, R1_ERR_CHECKSUM or
 *         R1_ERR_BUDGET while loading experts. On any failure the position is unchanged and the
 *         session stays usable.
 * @note The session must not be used by another thread during the call.
 * @since 1.1
 */
R1_API r1_status r1_session_eval(r1_session *session, const int32_t *ids, size_t n);

/**
 * @brief Borrows the logits of one position of the last r1_session_eval().
 * @param session The session.
 * @param row -1 for the last position; 0 .. n-1 for each position of the last evaluation when
 *        logits_all is set.
 * @param logits_out Receives a pointer to n_vocab floats, valid until the next eval, truncate,
 *        reset or destroy of this session.
 * @param n_vocab_out Receives the row length (the model's embedding rows); may be NULL.
 * @return R1_OK; R1_ERR_BAD_STATE (nothing evaluated since creation, reset or truncation);
 *         R1_ERR_OUT_OF_RANGE (row not kept); R1_ERR_INVALID_ARG.
 * @since 1.1
 */
R1_API r1_status r1_session_logits(const r1_session *session, int32_t row, const float **logits_out,
                                   size_t *n_vocab_out);

/**
 * @brief The number of positions in the session's cache.
 * @param session The session.
 * @return The position, or -1 for a NULL session (message in r1_last_error()).
 * @since 1.1
 */
R1_API int32_t r1_session_position(const r1_session *session);

/**
 * @brief Keeps the first n_keep positions of the cache and forgets the rest, so a shared prompt
 *        prefix is evaluated once.
 * @param session The session.
 * @param n_keep 0 <= n_keep <= r1_session_position().
 * @return R1_OK, R1_ERR_OUT_OF_RANGE or R1_ERR_INVALID_ARG.
 * @since 1.1
 */
R1_API r1_status r1_session_truncate(r1_session *session, int32_t n_keep);

/**
 * @brief Removes cached positions [n_keep, n_keep + n_drop) and moves the later ones down by
 *        n_drop (context shift), without evaluating anything again.
 *
 * The rotary part of each moved cache row was stored rotated by its position; it is rotated
 * by -n_drop (in double, then rounded to the cache's type again), so the kept rows stand at
 * their new positions. Rows of later layers still carry what they attended to when they were
 * evaluated, the dropped tokens included (as in other engines' context shift). The logits of
 * the last evaluation are no longer available (R1_ERR_BAD_STATE from r1_session_logits()).
 * @param session The session (no generation in progress).
 * @param n_keep Positions kept at the start.
 * @param n_drop Positions removed after them; n_keep + n_drop <= r1_session_position().
 * @return R1_OK; R1_ERR_OUT_OF_RANGE; R1_ERR_BAD_STATE (a generation is in progress);
 *         R1_ERR_UNSUPPORTED (a cache type it cannot rotate); R1_ERR_NO_MEMORY;
 *         R1_ERR_INVALID_ARG.
 * @since 1.1
 */
R1_API r1_status r1_session_shift(r1_session *session, int32_t n_keep, int32_t n_drop);

/**
 * @brief Gives the session the whole token sequence it should hold before the next
 *        evaluation, reusing the longest prefix its cache already holds.
 *
 * The cache is truncated to the longest common prefix of ids and the cached tokens (as
 * r1_session_truncate() does; anything queued is dropped) and only the rest of ids is queued
 * (as r1_session_feed() does), so the next r1_session_begin()/r1_session_step() evaluates the
 * new suffix only. When ids equal the cache, the last id is evaluated again, for its logits.
 * After a context shift the cache stands for the whole conversation: ids that repeat the
 * dropped turns match, and only what follows the cache is queued. With R1's chat format a
 * re-rendered conversation shares the cache up to the last assistant turn only (the format
 * drops the reasoning of earlier answers), so that answer is evaluated again: expected. On
 * R1_ERR_CONTEXT_FULL the cache keeps the shared prefix and nothing is queued.
 * @param session The session (no generation in progress).
 * @param ids The full sequence, ids below the model's embedding rows.
 * @param n Number of ids, at least 1.
 * @return R1_OK; R1_ERR_OUT_OF_RANGE; R1_ERR_CONTEXT_FULL (by the overflow policy);
 *         R1_ERR_BAD_STATE; R1_ERR_INVALID_ARG; R1_ERR_NO_MEMORY.
 * @since 1.1
 */
R1_API r1_status r1_session_sync(r1_session *session, const int32_t *ids, size_t n);

/**
 * @brief Tokenizes text with the model's tokenizer and passes it to r1_session_sync().
 * @param session The session.
 * @param text UTF-8 text, e.g. the whole conversation rendered by r1_chat_render().
 * @param len Bytes of text.
 * @param flags R1_TOKENIZE_* bits (R1_TOKENIZE_PARSE_SPECIAL for rendered chat prompts).
 * @return As r1_session_sync() and r1_tokenize().
 * @since 1.1
 */
R1_API r1_status r1_session_sync_text(r1_session *session, const char *text, size_t len,
                                      uint32_t flags);

/**
 * @brief Empties the cache (position 0), keeping the session's memory for reuse.
 * @param session The session.
 * @return R1_OK or R1_ERR_INVALID_ARG.
 * @since 1.1
 */
R1_API r1_status r1_session_reset(r1_session *session);

/**
 * @brief Operation classes of r1_session_profile::ms.
 *
 * Attention includes the q/kv projections, the latent-cache products and the output
 * projection; experts are the routed experts' products once their weights are in memory;
 * expert loading is the time spent waiting for expert data: the expert store reads, verifies and
 * decompresses experts on its own I/O threads while the pass computes (the shared experts, the
 * experts already in memory, the next layer's attention after a prefetch), and only what that
 * overlap does not hide is counted here; other is everything else (embedding, norms, residual
 * sums). The router class includes the lookahead that predicts the next layer's experts.
 */
enum r1_profile_class {
    R1_PROFILE_ATTENTION = 0,   /**< MLA: projections, scores, softmax, values, output. */
    R1_PROFILE_ROUTER = 1,      /**< Router logits and expert selection. */
    R1_PROFILE_EXPERTS = 2,     /**< Routed experts' products. */
    R1_PROFILE_SHARED = 3,      /**< Shared experts. */
    R1_PROFILE_DENSE_MLP = 4,   /**< The dense MLP of the first layers. */
    R1_PROFILE_HEAD = 5,        /**< Final norm and output projection. */
    R1_PROFILE_EXPERT_LOAD = 6, /**< Waiting for expert data. */
    R1_PROFILE_OTHER = 7,       /**< Everything else. */
    R1_PROFILE_N_CLASSES = 8    /**< Number of classes. */
};

/**
 * @brief Time per operation class and weight traffic of a session, filled by
 *        r1_session_get_profile().
 *
 * Size-first, like r1_model_info: set struct_size to sizeof(r1_session_profile). Counts cover
 * the evaluations since profiling was last switched on with r1_session_set_profiling().
 */
typedef struct r1_session_profile {
    uint32_t struct_size;            /**< In: sizeof(r1_session_profile). Out: bytes filled. */
    uint32_t reserved;               /**< Zero. */
    uint64_t n_tokens;               /**< Tokens evaluated. */
    uint64_t n_passes;               /**< Forward passes (one per chunk of a prompt). */
    uint64_t weight_bytes;           /**< Weight bytes read: each matrix once per pass. */
    uint64_t expert_bytes;           /**< Of weight_bytes, routed experts (once per pass). */
    uint64_t expert_uses;            /**< (layer, expert) pairs run, summed over passes. */
    double total_ms;                 /**< Wall time inside the forward passes. */
    double ms[R1_PROFILE_N_CLASSES]; /**< Wall time per class (r1_profile_class). */
    /** Of weight_bytes, the bytes each class read (r1_profile_class; expert loading reads
     *  none), so bytes per token compare part by part with another engine's. @since 1.1 */
    uint64_t class_weight_bytes[R1_PROFILE_N_CLASSES];
    uint64_t embed_bytes; /**< Of weight_bytes, embedding rows (one per token). @since 1.1 */
} r1_session_profile;

/**
 * @brief Switches per-operation timing and traffic counting on or off.
 *
 * Switching on (again) resets every counter. Costs a clock read per operation class boundary.
 * @param session The session.
 * @param on Non-zero to count, 0 to stop.
 * @return R1_OK, R1_ERR_INVALID_ARG or R1_ERR_NO_MEMORY.
 * @since 1.1
 */
R1_API r1_status r1_session_set_profiling(r1_session *session, int32_t on);

/**
 * @brief Reads the counters that profiling accumulated (zeros if it was never on).
 * @param session The session.
 * @param profile Output; profile->struct_size must be set to sizeof(r1_session_profile) first.
 * @return R1_OK or R1_ERR_INVALID_ARG (NULL argument or unset struct_size).
 * @since 1.1
 */
R1_API r1_status r1_session_get_profile(const r1_session *session, r1_session_profile *profile);

/**
 * @brief Tokens routed to each expert of each layer while profiling was on.
 *
 * counts[layer * n_routed_experts + expert] receives how many tokens selected that expert;
 * dense layers read 0. Shows the routing's load balance.
 * @param session The session.
 * @param counts Output array.
 * @param n Entries of counts: exactly n_layers * n_routed_experts (r1_model_info).
 * @return R1_OK, or R1_ERR_INVALID_ARG (NULL argument or wrong n).
 * @since 1.1
 */
R1_API r1_status r1_session_get_expert_counts(const r1_session *session, uint64_t *counts,
                                              size_t n);
/** @} */

/** @name Tokenizer
 *  The model's own byte-level BPE tokenizer (Hugging Face tokenizers semantics).
 *  @{ */
/** r1_tokenize() flag: prepend the model's BOS token. */
#define R1_TOKENIZE_ADD_BOS 0x1u
/** r1_tokenize() flag: recognise added and special tokens written in the text. */
#define R1_TOKENIZE_PARSE_SPECIAL 0x2u
/** r1_tokenize() flag: replace invalid UTF-8 by U+FFFD instead of failing. */
#define R1_TOKENIZE_REPLACE_INVALID 0x4u
/** r1_detokenize() flag: leave special tokens out of the decoded text. */
#define R1_DETOKENIZE_SKIP_SPECIAL 0x1u

/**
 * @brief Encodes UTF-8 text into token ids.
 * @param model The model.
 * @param text The text (need not be NUL-terminated); may be NULL when text_len is 0.
 * @param text_len Bytes of text.
 * @param flags R1_TOKENIZE_* bits.
 * @param ids Receives up to cap ids; may be NULL when cap is 0.
 * @param cap Capacity of ids.
 * @param n_out Receives the number of ids produced, or needed when the call fails with
 *        R1_ERR_BUFFER_TOO_SMALL.
 * @return R1_OK; R1_ERR_BUFFER_TOO_SMALL; R1_ERR_INVALID_UTF8 (the byte offset is in the
 *         message) unless R1_TOKENIZE_REPLACE_INVALID; R1_ERR_INVALID_ARG.
 * @note Thread-safe: a model's tokenizer may be used by many threads at once.
 * @since 1.1
 */
R1_API r1_status r1_tokenize(const r1_model *model, const char *text, size_t text_len,
                             uint32_t flags, int32_t *ids, size_t cap, size_t *n_out);

/**
 * @brief Decodes token ids into UTF-8 text, NUL-terminated.
 * @param model The model.
 * @param ids Token ids; may be NULL when n is 0.
 * @param n Number of ids.
 * @param flags R1_DETOKENIZE_* bits.
 * @param buf Receives the text and a NUL; may be NULL when cap is 0.
 * @param cap Capacity of buf in bytes, the NUL included.
 * @param len_out Receives the text's length without the NUL (needed length on
 *        R1_ERR_BUFFER_TOO_SMALL).
 * @return R1_OK; R1_ERR_BUFFER_TOO_SMALL; R1_ERR_OUT_OF_RANGE (an id the tokenizer does not
 *         have); R1_ERR_INVALID_ARG. Ids that split a character give bytes that are not valid
 *         UTF-8 on their own; the step API's pieces never do.
 * @note Thread-safe.
 * @since 1.1
 */
R1_API r1_status r1_detokenize(const r1_model *model, const int32_t *ids, size_t n, uint32_t flags,
                               char *buf, size_t cap, size_t *len_out);

/**
 * @brief The number of ids the tokenizer defines (may differ from the embedding rows).
 * @param model The model.
 * @return The count, or -1 for a NULL model.
 * @since 1.1
 */
R1_API int32_t r1_token_count(const r1_model *model);

/**
 * @brief The beginning-of-sentence token id.
 * @param model The model.
 * @return The id, or -1 when the model has none (or model is NULL).
 * @since 1.1
 */
R1_API int32_t r1_token_bos(const r1_model *model);

/**
 * @brief The end-of-sentence token id, which ends generation.
 * @param model The model.
 * @return The id, or -1 when the model has none (or model is NULL).
 * @since 1.1
 */
R1_API int32_t r1_token_eos(const r1_model *model);

/**
 * @brief Looks up the id of a token by its exact text (e.g. `</think>`).
 * @param model The model.
 * @param piece NUL-terminated token text.
 * @param id_out Receives the id.
 * @return R1_OK, R1_ERR_NOT_FOUND or R1_ERR_INVALID_ARG.
 * @since 1.1
 */
R1_API r1_status r1_token_find(const r1_model *model, const char *piece, int32_t *id_out);
/** @} */

/** @name Generation
 *  Pull-based generation with reasoning control: feed a prompt, begin, then call
 *  r1_session_step() once per token (a game loop can budget its frame), or let
 *  r1_session_generate() loop with a callback.
 *  @{ */

/** Kinds of generated text. */
enum r1_piece_kind {
    R1_PIECE_NONE = -1,     /**< No text this step (prompt progress). */
    R1_PIECE_REASONING = 0, /**< Inside the model's `<think>` ... `</think>` section. */
    R1_PIECE_ANSWER = 1     /**< The answer after `</think>`. */
};

/** Options for a generation: limits, thinking budget and stop strings. */
typedef struct r1_gen_opts r1_gen_opts;

/**
 * @brief Creates generation options with the defaults: no token limit (until end of sentence
 *        or the context is full), no thinking budget, bridge "\n\n", no stop strings.
 * @param out Receives the options; release with r1_gen_opts_destroy().
 * @return R1_OK, R1_ERR_INVALID_ARG or R1_ERR_NO_MEMORY.
 * @since 1.1
 */
R1_API r1_status r1_gen_opts_create(r1_gen_opts **out);

/**
 * @brief Releases generation options.
 * @param opts The options, or NULL.
 * @since 1.1
 */
R1_API void r1_gen_opts_destroy(r1_gen_opts *opts);

/**
 * @brief Limits the generated tokens (reasoning and answer together).
 * @param opts The options.
 * @param n The limit; negative for none.
 * @return R1_OK or R1_ERR_INVALID_ARG.
 * @since 1.1
 */
R1_API r1_status r1_gen_opts_set_max_tokens(r1_gen_opts *opts, int32_t n);

/**
 * @brief Limits the reasoning: after n reasoning tokens the session emits `</think>` and the
 *        bridge text itself, and the model continues with the answer.
 * @param opts The options.
 * @param n_tokens The budget; negative for none. Ignored for models without `</think>`.
 * @return R1_OK or R1_ERR_INVALID_ARG.
 * @since 1.1
 */
R1_API r1_status r1_gen_opts_set_think_budget(r1_gen_opts *opts, int32_t n_tokens);

/**
 * @brief Sets the text injected after a budget-forced `</think>` (default "\n\n").
 * @param opts The options.
 * @param text NUL-terminated UTF-8; copied.
 * @return R1_OK, R1_ERR_INVALID_UTF8, R1_ERR_INVALID_ARG or R1_ERR_NO_MEMORY.
 * @since 1.1
 */
R1_API r1_status r1_gen_opts_set_think_bridge(r1_gen_opts *opts, const char *text);

/**
 * @brief Adds a stop string: generation ends when the visible text contains it; the stop
 *        string itself is not emitted.
 * @param opts The options.
 * @param text NUL-terminated UTF-8, 1 to 256 bytes; copied. At most 16 stop strings.
 * @return R1_OK, R1_ERR_OUT_OF_RANGE (too many), R1_ERR_INVALID_UTF8, R1_ERR_INVALID_ARG.
 * @since 1.1
 */
R1_API r1_status r1_gen_opts_add_stop(r1_gen_opts *opts, const char *text);

/**
 * @brief Removes every stop string.
 * @param opts The options.
 * @return R1_OK or R1_ERR_INVALID_ARG.
 * @since 1.1
 */
R1_API r1_status r1_gen_opts_clear_stops(r1_gen_opts *opts);

/**
 * @brief Queues prompt tokens; they are evaluated by the following steps.
 * @param session The session (no generation in progress).
 * @param ids Token ids below the model's embedding rows.
 * @param n Number of ids.
 * @return R1_OK; R1_ERR_OUT_OF_RANGE; R1_ERR_CONTEXT_FULL; R1_ERR_BAD_STATE (a generation is
 *         in progress); R1_ERR_INVALID_ARG.
 * @since 1.1
 */
R1_API r1_status r1_session_feed(r1_session *session, const int32_t *ids, size_t n);

/**
 * @brief Tokenizes text with the model's tokenizer and queues it (see r1_session_feed()).
 * @param session The session.
 * @param text UTF-8 text, e.g. a prompt made by r1_chat_render().
 * @param len Bytes of text.
 * @param flags R1_TOKENIZE_* bits (R1_TOKENIZE_PARSE_SPECIAL for rendered chat prompts).
 * @return As r1_session_feed() and r1_tokenize().
 * @since 1.1
 */
R1_API r1_status r1_session_feed_text(r1_session *session, const char *text, size_t len,
                                      uint32_t flags);

/**
 * @brief Starts a generation from the queued prompt (or from the end of the last evaluation).
 *
 * When the prompt leaves a `<think>` open (R1's generation prompt does) the generation starts
 * in reasoning and switches to the answer at `</think>`.
 *
 * @param session The session.
 * @param sampler Chooses the tokens; borrowed until the generation ends, not to be used
 *        elsewhere meanwhile.
 * @param opts Options (copied), or NULL for the defaults.
 * @return R1_OK; R1_ERR_BAD_STATE (nothing fed, or a generation already in progress);
 *         R1_ERR_INVALID_ARG; R1_ERR_NO_MEMORY.
 * @since 1.1
 */
R1_API r1_status r1_session_begin(r1_session *session, r1_sampler *sampler,
                                  const r1_gen_opts *opts);

/**
 * @brief Runs at most one forward pass and produces at most one token.
 *
 * A long prompt is evaluated 64 tokens per step (those steps return R1_OK with id -1 and kind
 * R1_PIECE_NONE). The text of the step is read with r1_session_piece(): complete UTF-8, never
 * a partial character, possibly empty (a character split across tokens, or text held back
 * while it could still begin a stop string).
 *
 * @param session The session.
 * @param id_out Receives the token id, or -1; may be NULL.
 * @param kind_out Receives an r1_piece_kind; may be NULL.
 * @return R1_OK (a token or prompt progress); R1_DONE (end of sentence, a stop string, the token
 *         limit; the final text, if any, is in r1_session_piece()); R1_CANCELLED (after
 *         r1_session_cancel()); R1_ERR_CONTEXT_FULL; R1_ERR_BAD_STATE (no generation begun);
 *         errors of r1_session_eval(). After any status but R1_OK the generation has ended and
 *         the session remains usable; the tokens produced stay in its history.
 * @since 1.1
 */
R1_API r1_status r1_session_step(r1_session *session, int32_t *id_out, int32_t *kind_out);

/**
 * @brief One r1_session_step() of each of several sessions of one model, through shared forward
 *        passes: a game's characters or a server's requests decoding together.
 *
 * Every row but attention goes through one pass for all the sessions: each weight, and each
 * routed expert for all the rows routed to it, is read once per pass rather than once per
 * session, so n sessions cost much less than n steps. Attention runs per session on its own
 * cache at its own positions. A session still in its prompt contributes its next slice of it
 * (up to 64 tokens, as r1_session_step() would) to the same pass, so sessions at any stage mix.
 * Each session's outcome is what r1_session_step() would have returned for it, and its logits
 * are those of stepping it alone: bit-identical on Q8_0 and Q4_0 weights (whose products treat
 * every row alike); on float weights a product over several rows may take the BLAS kernel
 * where one row takes the dot kernel, so logits may differ in the last bits.
 *
 * @param sessions n distinct sessions of the same model, each with a generation begun
 *        (r1_session_begin()). A session whose generation ended (any status but R1_OK) is left
 *        out of the next call, or begun again.
 * @param n Number of sessions, at least 1.
 * @param ids_out n entries: each session's token id, or -1; may be NULL.
 * @param kinds_out n entries: each session's r1_piece_kind; may be NULL.
 * @param status_out n entries: each session's step result, as r1_session_step() returns it
 *        (its text: r1_session_piece()). r1_last_error() describes the last failed one.
 * @return R1_OK when every session was stepped (read status_out); R1_ERR_INVALID_ARG (NULL
 *         arguments, n 0, a NULL, repeated or other model's session) or R1_ERR_BAD_STATE (a
 *         session without a generation in progress): then no session was touched;
 *         R1_ERR_NO_MEMORY.
 * @note Thread rule: the calling thread must be the only one using each listed session for the
 *       duration of the call (as for r1_session_step()); disjoint sets of sessions of one model
 *       may be stepped from different threads at once. r1_session_cancel() may be called on
 *       any of them from any thread. A session with profiling on (r1_session_set_profiling())
 *       is charged for a whole shared pass when it is the first of the pass's sessions.
 * @since 1.1
 */
R1_API r1_status r1_session_step_many(r1_session *const *sessions, size_t n, int32_t *ids_out,
                                      int32_t *kinds_out, r1_status *status_out);

/**
 * @brief Borrows the text produced by the last r1_session_step().
 * @param session The session.
 * @param text_out Receives NUL-terminated UTF-8, valid until the next step, reset or destroy.
 * @param len_out Receives its length in bytes; may be NULL.
 * @return R1_OK or R1_ERR_INVALID_ARG.
 * @since 1.1
 */
R1_API r1_status r1_session_piece(const r1_session *session, const char **text_out,
                                  size_t *len_out);

/**
 * @brief Asks the session's generation to stop: the next r1_session_step() returns
 *        R1_CANCELLED (a step in progress completes first).
 * @param session The session.
 * @return R1_OK or R1_ERR_INVALID_ARG.
 * @note May be called from any thread, also while another thread is in r1_session_step().
 * @since 1.1
 */
R1_API r1_status r1_session_cancel(r1_session *session);

/**
 * @brief Token counts of the current or last generation.
 * @param session The session.
 * @param prompt Receives the prompt tokens it evaluated; may be NULL.
 * @param reasoning Receives the reasoning tokens (the closing `</think>` included); may be NULL.
 * @param answer Receives the answer tokens; may be NULL.
 * @return R1_OK or R1_ERR_INVALID_ARG.
 * @since 1.1
 */
R1_API r1_status r1_session_counts(const r1_session *session, int32_t *prompt, int32_t *reasoning,
                                   int32_t *answer);

/**
 * @brief Receives generated text: called on the generating thread with a non-empty piece.
 * @param piece UTF-8 text, not NUL-terminated, valid during the call.
 * @param len Bytes of piece.
 * @param kind R1_PIECE_REASONING or R1_PIECE_ANSWER.
 * @param user_data The pointer given to r1_session_generate().
 * @return 0 to continue; non-zero cancels the generation.
 */
typedef int32_t (*r1_piece_fn)(const char *piece, size_t len, int32_t kind, void *user_data);

/**
 * @brief Generates until done, calling on_piece for each piece of text: r1_session_begin()
 *        plus r1_session_step() in a loop.
 * @param session The session with a prompt fed.
 * @param sampler Chooses the tokens.
 * @param opts Options, or NULL.
 * @param on_piece Callback, or NULL; it must not call functions of this session.
 * @param user_data Passed to on_piece.
 * @return R1_DONE, R1_CANCELLED (by the callback or r1_session_cancel()), or an error.
 * @since 1.1
 */
R1_API r1_status r1_session_generate(r1_session *session, r1_sampler *sampler,
                                     const r1_gen_opts *opts, r1_piece_fn on_piece,
                                     void *user_data);
/** @} */

/** @name Chat format
 *  @{ */

/** Message roles for r1_chat_render(). */
enum r1_role {
    R1_ROLE_SYSTEM = 0,   /**< Instructions placed after BOS (R1 recommends none). */
    R1_ROLE_USER = 1,     /**< A user turn. */
    R1_ROLE_ASSISTANT = 2 /**< An earlier answer; text up to its last `</think>` is dropped. */
};

/**
 * @brief Renders a conversation in the model's chat format (DeepSeek-R1: BOS, system prompts,
 *        `<｜User｜>` and `<｜Assistant｜>` turns, earlier reasoning dropped, and a generation
 *        prompt that opens `<think>\n`), ready for r1_session_feed_text() with
 *        R1_TOKENIZE_PARSE_SPECIAL.
 * @param model The model (its tokenizer decides between the R1 and V3 formats).
 * @param roles n_messages R1_ROLE_* values.
 * @param contents n_messages NUL-terminated UTF-8 strings.
 * @param n_messages Number of messages.
 * @param add_generation_prompt Non-zero to end with the assistant's opening.
 * @param buf Receives the text and a NUL; may be NULL when cap is 0.
 * @param cap Capacity of buf in bytes, the NUL included.
 * @param len_out Receives the length without the NUL (the needed length on
 *        R1_ERR_BUFFER_TOO_SMALL).
 * @return R1_OK; R1_ERR_BUFFER_TOO_SMALL; R1_ERR_INVALID_UTF8 (message index and offset in the
 *         message); R1_ERR_INVALID_ARG (NULL, unknown role).
 * @note Thread-safe.
 * @since 1.1
 */
R1_API r1_status r1_chat_render(const r1_model *model, const int32_t *roles,
                                const char *const *contents, size_t n_messages,
                                int32_t add_generation_prompt, char *buf, size_t cap,
                                size_t *len_out);
/** @} */

/** @name Samplers
 *  Token selection from logits. Each sample call runs, in this order: logit bias; repetition,
 *  frequency and presence penalties over the last accepted ids; greedy choice when the
 *  temperature is 0; temperature; top-k; softmax (float64, largest logit subtracted); top-p
 *  (the shortest prefix, by probability descending then id ascending, whose mass reaches p);
 *  min-p; renormalisation and one draw. Draws come from a counter-based generator (SplitMix64
 *  of the seed and the draw index, 53-bit uniform doubles), so the same seed and logits give
 *  the same tokens on every run, platform and thread count. A sampler holds settings, the
 *  history of accepted ids and the draw counter; it must be used by one thread at a time.
 *  @{ */

/**
 * @brief Creates a sampler with DeepSeek-R1's recommended settings: temperature 0.6, top-p 0.95,
 *        top-k 0 (off), min-p 0 (off), no penalties, no logit bias.
 * @param out Receives the sampler; set to NULL on failure.
 * @param seed Seed of the random draws; any value.
 * @return R1_OK, R1_ERR_INVALID_ARG (out is NULL) or R1_ERR_NO_MEMORY.
 * @note Ownership: the caller owns *out and releases it with r1_sampler_destroy().
 *       Thread rule: a sampler may be used by one thread at a time.
 * @since 1.1
 */
R1_API r1_status r1_sampler_create(r1_sampler **out, uint64_t seed);

/**
 * @brief Destroys a sampler.
 * @param smp A sampler from r1_sampler_create(), or NULL (ignored). It must not be in use by a
 *        generation (see r1_session_begin()).
 * @since 1.1
 */
R1_API void r1_sampler_destroy(r1_sampler *smp);

/**
 * @brief Sets the temperature that divides the logits before the softmax.
 * @param smp The sampler.
 * @param t A finite value >= 0; 0 means greedy: the largest logit after bias and penalties wins
 *        (the lowest id on ties) and top-k, top-p and min-p do not apply.
 * @return R1_OK, or R1_ERR_INVALID_ARG (NULL sampler, negative, infinite or NaN t).
 * @note Thread rule: one thread at a time per sampler.
 * @since 1.1
 */
R1_API r1_status r1_sampler_set_temperature(r1_sampler *smp, float t);

/**
 * @brief Keeps only the k most likely tokens (ties broken towards the lower id).
 * @param smp The sampler.
 * @param k The number of tokens kept; 0 (the default) turns top-k off.
 * @return R1_OK, or R1_ERR_INVALID_ARG (NULL sampler, negative k).
 * @note Thread rule: one thread at a time per sampler.
 * @since 1.1
 */
R1_API r1_status r1_sampler_set_top_k(r1_sampler *smp, int32_t k);

/**
 * @brief Keeps the smallest set of most likely tokens whose probability mass reaches p
 *        (nucleus sampling).
 * @param smp The sampler.
 * @param p In (0, 1]; 1 turns top-p off. The default is 0.95.
 * @return R1_OK, or R1_ERR_INVALID_ARG (NULL sampler, p outside (0, 1] or NaN).
 * @note Thread rule: one thread at a time per sampler.
 * @since 1.1
 */
R1_API r1_status r1_sampler_set_top_p(r1_sampler *smp, float p);

/**
 * @brief Drops tokens whose probability is below p times the most likely token's.
 * @param smp The sampler.
 * @param p In [0, 1]; 0 (the default) turns min-p off.
 * @return R1_OK, or R1_ERR_INVALID_ARG (NULL sampler, p outside [0, 1] or NaN).
 * @note Thread rule: one thread at a time per sampler.
 * @since 1.1
 */
R1_API r1_status r1_sampler_set_min_p(r1_sampler *smp, float p);

/**
 * @brief Penalises tokens among the last @p last_n accepted ones (see r1_sampler_accept()).
 *
 * For each distinct id in that window, counted c times: a positive logit is divided by
 * @p repeat and a negative one multiplied by it; then frequency * c and presence are
 * subtracted. Changing last_n keeps the most recent ids that still fit.
 *
 * @param smp The sampler.
 * @param last_n Window length, 0..1048576; 0 (the default) turns penalties off.
 * @param repeat Repetition factor, finite and > 0; 1 means none.
 * @param frequency Frequency penalty per occurrence, finite; 0 means none.
 * @param presence Presence penalty, finite; 0 means none.
 * @return R1_OK, R1_ERR_INVALID_ARG (NULL sampler, value out of range or NaN) or
 *         R1_ERR_NO_MEMORY.
 * @note Thread rule: one thread at a time per sampler.
 * @since 1.1
 */
R1_API r1_status r1_sampler_set_penalties(r1_sampler *smp, int32_t last_n, float repeat,
                                          float frequency, float presence);

/**
 * @brief Adds @p bias to the logit of token @p id before every other stage.
 *
 * Several ids may carry a bias; setting one again replaces its bias, and a bias of 0 removes
 * it. An id at or beyond the logits given to a sample call is ignored by that call.
 *
 * @param smp The sampler.
 * @param id A token id >= 0.
 * @param bias A finite value, or -INFINITY to ban the token.
 * @return R1_OK, R1_ERR_OUT_OF_RANGE (negative id), R1_ERR_INVALID_ARG (NULL sampler, NaN or
 *         +infinite bias) or R1_ERR_NO_MEMORY.
 * @note Thread rule: one thread at a time per sampler.
 * @since 1.1
 */
R1_API r1_status r1_sampler_set_logit_bias(r1_sampler *smp, int32_t id, float bias);

/**
 * @brief Removes every logit bias.
 * @param smp The sampler.
 * @return R1_OK or R1_ERR_INVALID_ARG (NULL sampler).
 * @note Thread rule: one thread at a time per sampler.
 * @since 1.1
 */
R1_API r1_status r1_sampler_clear_logit_bias(r1_sampler *smp);

/**
 * @brief Forgets the accepted ids and rewinds the random draws to the seed, so the sampler
 *        repeats its sequence; settings and logit biases are kept.
 * @param smp The sampler.
 * @return R1_OK or R1_ERR_INVALID_ARG (NULL sampler).
 * @note Thread rule: one thread at a time per sampler.
 * @since 1.1
 */
R1_API r1_status r1_sampler_reset(r1_sampler *smp);

/**
 * @brief Chooses a token from one row of logits.
 * @param smp The sampler; each successful call consumes one random draw (greedy ones too).
 * @param logits n_vocab logits; read only, never modified. NaN or +infinity fails; -infinity
 *        bans a token.
 * @param n_vocab Number of logits, 1..INT32_MAX.
 * @param id_out Receives the chosen id, 0 <= id < n_vocab.
 * @return R1_OK; R1_ERR_INVALID_ARG (NULL argument, n_vocab out of range, a NaN or +infinite
 *         logit, or every token banned); R1_ERR_NO_MEMORY.
 * @note The chosen id is not added to the penalty history: call r1_sampler_accept() (the
 *       session's generation functions do). Thread rule: one thread at a time per sampler.
 * @since 1.1
 */
R1_API r1_status r1_sampler_sample(r1_sampler *smp, const float *logits, size_t n_vocab,
                                   int32_t *id_out);

/**
 * @brief Records a token as part of the text, for the penalties' window.
 * @param smp The sampler.
 * @param id The token id (sampled, forced or from the prompt), >= 0.
 * @return R1_OK, R1_ERR_OUT_OF_RANGE (negative id) or R1_ERR_INVALID_ARG (NULL sampler).
 * @note Thread rule: one thread at a time per sampler.
 * @since 1.1
 */
R1_API r1_status r1_sampler_accept(r1_sampler *smp, int32_t id);
/** @} */

/** @name Saved sessions
 *  A session's state saved to a file or a buffer and restored into a session, which then
 *  continues exactly as the saved one would have: the cache rows of every cached position, the
 *  token history, the logits of the last evaluation, a generation in progress (its queued
 *  prompt, counts, stop strings, held-back text) and the state of the sampler that generation
 *  draws from (settings, penalty history, random draw counter). The format (docs/format.md,
 *  "Session files") is versioned, little-endian and checksummed, and names the model it belongs
 *  to: a state restores only into a session of the same model file, context length and cache
 *  type. Loading checks the whole file before it changes anything, so a failed load leaves the
 *  session as it was. Not saved: the session's options (they must match), profiling, and a
 *  cancel request not yet seen by a step.
 *  @{ */

/**
 * @brief Saves the session's state to a file, replacing any file at that path.
 *
 * The state is written to a temporary file beside @p path_utf8, synced and renamed over it, so
 * a failure (a full disk, a crash) never leaves a damaged or partial file at the path, and an
 * existing file there stays as it was. The file is created readable by its owner only (it holds
 * the conversation). Sections are written from the session's memory as they are, without a
 * copy of the whole state.
 *
 * @param session The session; it may be in the middle of a generation (the file then holds the
 *        state of the generation's sampler too).
 * @param path_utf8 The file to write.
 * @return R1_OK; R1_ERR_INVALID_ARG (NULL or empty argument); R1_ERR_IO (with the path and the
 *         system's reason); R1_ERR_NO_MEMORY.
 * @note Thread rule: the session (and the sampler of its generation) must not be used by
 *       another thread meanwhile.
 * @since 1.1
 */
R1_API r1_status r1_session_save(const r1_session *session, const char *path_utf8);

/**
 * @brief Saves the session's state into a caller's buffer (the same bytes as r1_session_save()
 *        writes to a file).
 * @param session The session.
 * @param buf Receives the state; may be NULL when cap is 0 (a size query).
 * @param cap Capacity of buf in bytes.
 * @param size_out Receives the state's size in bytes, also when the call fails with
 *        R1_ERR_BUFFER_TOO_SMALL.
 * @return R1_OK; R1_ERR_BUFFER_TOO_SMALL (nothing written; *size_out is the size needed);
 *         R1_ERR_INVALID_ARG; R1_ERR_NO_MEMORY.
 * @note Thread rule: as r1_session_save().
 * @since 1.1
 */
R1_API r1_status r1_session_save_to_buffer(const r1_session *session, void *buf, size_t cap,
                                           size_t *size_out);

/**
 * @brief Restores a state saved by r1_session_save() into a session, replacing its own.
 *
 * Every check comes before any change: the file must be a whole, undamaged session file (each
 * part is checksummed) of the model this session runs (the same .r1m file), with the session's
 * context length and cache type. Then the session holds the saved cache, tokens, logits and
 * generation: r1_session_step() continues a saved generation, r1_session_logits() and sampling
 * work at once. If the file changes on disk while its cache rows are being copied (after every
 * check passed), the call fails with R1_ERR_IO and the session is left empty, as after
 * r1_session_reset().
 *
 * @param session The session to restore into (any state; a generation in progress is ended).
 * @param path_utf8 The file.
 * @param sampler The sampler a saved generation continues with: it takes the saved sampler's
 *        settings and state and becomes the generation's sampler (as in r1_session_begin()).
 *        May be NULL when the file holds no generation in progress; it is then left unchanged.
 * @return R1_OK; R1_ERR_NOT_FOUND (no such file); R1_ERR_IO; R1_ERR_FORMAT (not a session
 *         file, truncated, malformed); R1_ERR_CHECKSUM (damaged); R1_ERR_UNSUPPORTED (a later
 *         major version of the format); R1_ERR_INVALID_ARG (NULL argument; a file of another
 *         model, context length or cache type, with both values in the message; a generation
 *         in the file and no sampler); R1_ERR_NO_MEMORY. On any failure but the one above the
 *         session and the sampler are unchanged.
 * @note Thread rule: the session and the sampler must not be used by another thread meanwhile.
 * @since 1.1
 */
R1_API r1_status r1_session_load(r1_session *session, const char *path_utf8, r1_sampler *sampler);

/**
 * @brief Restores a state saved by r1_session_save_to_buffer() (or read from a file written by
 *        r1_session_save()) into a session; as r1_session_load().
 * @param session The session to restore into.
 * @param buf The saved state; may be NULL when size is 0 (which fails as too short).
 * @param size Its size in bytes: exactly the saved size.
 * @param sampler As for r1_session_load().
 * @return As r1_session_load() (never R1_ERR_NOT_FOUND or R1_ERR_IO); on failure the session
 *         and the sampler are unchanged.
 * @note Thread rule: as r1_session_load(). The buffer is only read, and not kept.
 * @since 1.1
 */
R1_API r1_status r1_session_load_from_buffer(r1_session *session, const void *buf, size_t size,
                                             r1_sampler *sampler);

/**
 * @brief Saves a sampler's settings and state (logit biases, penalty window and history, seed
 *        and draw counter) into a buffer, for callers that sample with r1_sampler_sample()
 *        outside a generation (a generation's sampler is saved with its session).
 * @param smp The sampler.
 * @param buf Receives the state; may be NULL when cap is 0 (a size query).
 * @param cap Capacity of buf in bytes.
 * @param size_out Receives the size in bytes, also on R1_ERR_BUFFER_TOO_SMALL.
 * @return R1_OK; R1_ERR_BUFFER_TOO_SMALL; R1_ERR_INVALID_ARG; R1_ERR_NO_MEMORY.
 * @note Thread rule: one thread at a time per sampler.
 * @since 1.1
 */
R1_API r1_status r1_sampler_save_to_buffer(const r1_sampler *smp, void *buf, size_t cap,
                                           size_t *size_out);

/**
 * @brief Gives a sampler the settings and state saved by r1_sampler_save_to_buffer(): it then
 *        draws exactly what the saved one would have.
 * @param smp The sampler.
 * @param buf The saved state.
 * @param size Its size in bytes.
 * @return R1_OK; R1_ERR_FORMAT (not a saved sampler, or a setting out of range);
 *         R1_ERR_CHECKSUM; R1_ERR_UNSUPPORTED (a later major version); R1_ERR_INVALID_ARG;
 *         R1_ERR_NO_MEMORY. On failure the sampler is unchanged.
 * @note Thread rule: one thread at a time per sampler.
 * @since 1.1
 */
R1_API r1_status r1_sampler_load_from_buffer(r1_sampler *smp, const void *buf, size_t size);
/** @} */

#ifdef __cplusplus
}
#endif

#endif /* R1_H */
