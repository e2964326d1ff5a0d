/* container.h: the .r1m file format constants and its validating, mmap-based reader (internal). */
#ifndef R1_CONTAINER_H
#define R1_CONTAINER_H

#include <stddef.h>
#include <stdint.h>

#include "model_config.h"
#include "r1.h"
#include "tensor.h"

/* docs/format.md is the specification; these constants mirror it. */
#define R1M_MAGIC "\x89R1M\r\n\x1a\n"
enum {
    R1M_MAGIC_LEN = 8,
    R1M_VERSION_MAJOR = 1,
    /* 1.1 (R1M_VERSION_MINOR_ALIGNED): expert blobs start on R1M_BLOB_ALIGN boundaries and the
     * file is padded so that every blob's span (r1_container__blob_span) lies inside it. */
    R1M_VERSION_MINOR = 1,
    R1M_VERSION_MINOR_ALIGNED = 1,
    R1M_BLOB_ALIGN = 4096, /* O_DIRECT's block: expert blob alignment from version 1.1 */
    R1M_HEADER_SIZE = 128,
    R1M_ALIGN = 64,         /* data_alignment written by this converter */
    R1M_EXPERT_RECORD = 64, /* bytes per expert-blob record in the index */
    R1M_TENSOR_FIXED = 40,  /* bytes of a tensor record besides shape and name */
    R1M_MAX_NAME = 1024,
    R1M_MAX_META_VALUE = 1 << 30,
};
/* Largest raw expert blob a reader accepts (docs/format.md §6). */
#define R1M_MAX_EXPERT_BYTES (UINT64_C(1) << 34)
enum { R1M_CODEC_RAW = 0, R1M_CODEC_ZSTD = 1 };
enum { R1M_FILTER_NONE = 0, R1M_FILTER_BYTEPLANE2 = 1, R1M_FILTER_NIBBLEPLANE2 = 2 };
enum { R1M_META_I64 = 1, R1M_META_F64 = 2, R1M_META_STR = 3, R1M_META_BYTES = 4 };
/* Header field offsets. */
enum {
    R1M_H_VMAJOR = 8,
    R1M_H_VMINOR = 10,
    R1M_H_HEADER_SIZE = 12,
    R1M_H_FILE_SIZE = 16,
    R1M_H_META_OFF = 24,
    R1M_H_META_SIZE = 32,
    R1M_H_META_SUM = 40,
    R1M_H_INDEX_OFF = 48,
    R1M_H_INDEX_SIZE = 56,
    R1M_H_INDEX_SUM = 64,
    R1M_H_N_TENSORS = 72,
    R1M_H_N_EXPERTS = 76,
    R1M_H_ALIGN = 80,
    R1M_H_FLAGS = 84,
    R1M_H_SUM = 120,
};

/* One expert blob: (layer, expert) -> gate, up, down projections and their FP8 scales. */
typedef struct r1_expert_blob {
    int32_t layer, expert;
    uint64_t offset, stored_size, raw_size, checksum;
    uint8_t codec, filter;
    int32_t dtype[3]; /* gate, up, down */
    int64_t inter, hidden;
    /* Section offsets inside the raw blob (docs/format.md §6): data and scale of each
     * projection; scale_off is 0 and scale_bytes 0 when the dtype has no block scale. */
    uint64_t data_off[3], data_bytes[3], scale_off[3], scale_bytes[3];
} r1_expert_blob;

typedef struct r1_container r1_container;

/* Open and validate path: reads the header, metadata and index only (time and memory do not
 * depend on the size of the weights) and maps the file read-only. Failures: R1_ERR_IO (cannot
 * open/read/map), R1_ERR_FORMAT, R1_ERR_CHECKSUM (header/metadata/index), R1_ERR_UNSUPPORTED
 * (newer major version, unknown flags/dtype/codec, unsupported architecture), each with a
 * message naming the offending field, tensor and offsets. */
r1_status r1_container__open(r1_container **out, const char *path);
void r1_container__close(r1_container *c);

/* The validated model configuration (borrowed). */
const r1_model_config *r1_container__config(const r1_container *c);

/* A dense tensor by exact name, as a view into the mapping (FP8 tensors get their
 * "<name>_scale_inv" attached as scale/scale_cols). R1_ERR_NOT_FOUND with the name. */
r1_status r1_container__tensor(const r1_container *c, const char *name, r1_tensor *out);
/* Same, for "model.layers.<layer>.<suffix>". */
r1_status r1_container__layer_tensor(const r1_container *c, int64_t layer, const char *suffix,
                                     r1_tensor *out);
/* Enumeration: 0 <= i < n_tensors; name borrowed (not NUL-terminated: *name_len_out). */
int32_t r1_container__n_tensors(const r1_container *c);
r1_status r1_container__tensor_at(const r1_container *c, int32_t i, const char **name_out,
                                  size_t *name_len_out, r1_tensor *out);
/* Recompute a dense tensor's checksum (reads all its bytes). R1_ERR_CHECKSUM naming it. */
r1_status r1_container__verify_tensor(const r1_container *c, int32_t i);

/* The expert blob of (layer, expert), or NULL when that layer has no routed experts. */
const r1_expert_blob *r1_container__expert(const r1_container *c, int64_t layer, int64_t expert);
/* Largest raw_size over all blobs. */
uint64_t r1_container__max_expert_bytes(const r1_container *c);
int32_t r1_container__n_expert_blobs(const r1_container *c);
const r1_expert_blob *r1_container__expert_at(const r1_container *c, int32_t i);
/* The file descriptor (for pread by the expert store) and file size. */
int r1_container__fd(const r1_container *c);
/* A new descriptor of the container's file opened with O_DIRECT when every expert blob's offset
 * is a multiple of R1M_BLOB_ALIGN (4096) and reading r1_container__blob_span(b) bytes from it
 * stays inside the file; -1 otherwise or when the file system refuses O_DIRECT (not an error).
 * Caller closes it. Reads through it need R1M_BLOB_ALIGN-aligned buffers, offsets and lengths. */
int r1_container__open_direct(const r1_container *c);
/* The bytes a direct reader reads for blob b: stored_size rounded up to R1M_BLOB_ALIGN. */
uint64_t r1_container__blob_span(const r1_expert_blob *b);
/* The file's format minor version (docs/format.md §1). */
uint16_t r1_container__version_minor(const r1_container *c);
/* The header's checksum (XXH64 of its first 120 bytes, which hold the metadata's and the index's
 * checksums): an identity of the model file that costs nothing to read, for saved sessions. */
uint64_t r1_container__header_sum(const r1_container *c);
uint64_t r1_container__file_size(const r1_container *c);
/* 1 when [p, p + n) lies inside the file's read-only mapping, where dense tensors stay unchanged
 * at one address for the container's lifetime (device caches key them by address). */
int32_t r1_container__maps(const r1_container *c, const void *p, size_t n);
/* Gives back the memory of [p, p + n) inside the mapping once its bytes have been copied and the
 * copy is what is read: the whole pages within the range leave the process's resident set
 * (madvise MADV_DONTNEED) and the page cache (posix_fadvise POSIX_FADV_DONTNEED), so memory holds
 * those bytes once. The pages at its ends may hold a neighbour's bytes and stay. Safe whoever
 * reads the range later: the mapping is of the unchanged file, so a read faults the page back in
 * (it then counts again). Returns the bytes released from the mapping (0 when p is not in it). */
uint64_t r1_container__release(const r1_container *c, const void *p, size_t n);
/* Sum of the raw bytes of dense tensors / of expert blobs. */
uint64_t r1_container__dense_bytes(const r1_container *c);
uint64_t r1_container__expert_raw_bytes(const r1_container *c);

/* Metadata lookup. R1_ERR_NOT_FOUND when absent, R1_ERR_FORMAT when of another type.
 * Strings and bytes are borrowed from the container (not NUL-terminated). */
r1_status r1_container__meta_i64(const r1_container *c, const char *key, int64_t *out);
r1_status r1_container__meta_f64(const r1_container *c, const char *key, double *out);
r1_status r1_container__meta_bytes(const r1_container *c, const char *key, const uint8_t **data_out,
                                   size_t *len_out);

/* Raw expert blob layout for the given projection dtypes and shapes (docs/format.md §6): fills
 * the section offsets of b and returns its raw size, or 0 when a row size is invalid. */
uint64_t r1_container__expert_layout(r1_expert_blob *b);

#endif
