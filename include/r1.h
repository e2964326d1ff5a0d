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

/* ============================================================================================ */
/** @name Models
 *  Loading an .r1m model file (see docs/format.md), describing it, and its expert store.
 *  A model is immutable after loading apart from its internally locked expert cache, so one
 *  r1_model may be shared by any number of threads and sessions.
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
    int32_t architecture;            /**< 1 = DeepSeek-V3/R1, 2 = DeepSeek-V2/V2-Lite. */
    char architecture_name[32];      /**< "deepseek_v3" or "deepseek_v2", NUL-terminated. */
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
 * @brief Progress callback of r1_convert().
 * @param done_bytes Source bytes processed so far.
 * @param total_bytes Source bytes in all.
 * @param user_data The pointer given to r1_convert().
 * @return 0 to continue; non-zero cancels the conversion (r1_convert() returns R1_CANCELLED).
 */
typedef int32_t (*r1_progress_fn)(uint64_t done_bytes, uint64_t total_bytes, void *user_data);

/** r1_convert() flag: never byte-plane shuffle 16-bit experts before compressing them. */
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
 * @param out_path_utf8 Output path, UTF-8 (replaced if it exists).
 * @param quant_rules NULL to keep every weight's type; "q8_0" or "q4_0" for every eligible
 *        weight; or a comma-separated list such as "experts=q4_0,attn=q8_0" over the classes
 *        experts, shared, attn, dense, head with types q8_0, q4_0, keep. Embeddings, norms and
 *        the router are never quantised.
 * @param n_threads Compression threads (1 to 64; <= 0 means 1).
 * @param flags 0 or R1_CONVERT_NO_SHUFFLE.
 * @param progress Called on the calling thread after each tensor or batch of experts; may be
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
 * @brief Creates session options with the defaults (context 4096, logits of the last position).
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
 *        bytes per position.
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
 * @brief Creates a session on a model.
 * @param out Receives the session; release with r1_session_destroy().
 * @param model The model; the session keeps a reference, so the model may be destroyed first.
 * @param opts Options, or NULL for the defaults.
 * @return R1_OK; R1_ERR_INVALID_ARG (NULL argument, context above the model's maximum);
 *         R1_ERR_NO_MEMORY; R1_ERR_NOT_FOUND or R1_ERR_FORMAT when a weight the forward pass
 *         needs is missing or misshapen.
 * @note Thread-safe with respect to the model; the new session belongs to the calling thread.
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
 * @brief Empties the cache (position 0), keeping the session's memory for reuse.
 * @param session The session.
 * @return R1_OK or R1_ERR_INVALID_ARG.
 * @since 1.1
 */
R1_API r1_status r1_session_reset(r1_session *session);
/** @} */

#ifdef __cplusplus
}
#endif

#endif /* R1_H */
