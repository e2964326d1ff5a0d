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
#define R1_VERSION_MINOR 0 /**< Incremented when functions are added. */
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

#ifdef __cplusplus
}
#endif

#endif /* R1_H */
