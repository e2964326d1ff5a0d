/* safetensors.h: a validating, mmap-based reader of Hugging Face safetensors checkpoints
 * (internal). */
#ifndef R1_SAFETENSORS_H
#define R1_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "name_index.h"
#include "r1.h"

typedef struct r1_st_tensor {
    char *name;        /* owned, NUL-terminated */
    int32_t dtype;     /* r1_dtype, or -1 for a type libr1 does not convert (I64, F64, ...) */
    char st_dtype[12]; /* the safetensors dtype string */
    int32_t n_dims;    /* 0 .. 8 */
    int64_t shape[8];
    const uint8_t *data; /* inside the file's read-only mapping; no alignment guarantee */
    uint64_t nbytes;
    int32_t file; /* index into files */
} r1_st_tensor;

typedef struct r1_st_file {
    char *name; /* file name inside the checkpoint directory */
    const uint8_t *map;
    uint64_t size;
    uint64_t header_len; /* N: the JSON header length */
} r1_st_file;

typedef struct r1_safetensors {
    int32_t n_files;
    r1_st_file *files;
    int32_t n_tensors;
    r1_st_tensor *tensors;
    r1_name_index ix;
} r1_safetensors;

/* Opens dir/model.safetensors.index.json and every shard it names, or dir/model.safetensors
 * when there is no index. Every header, offset, size and shape is checked (R1_ERR_FORMAT naming
 * file and tensor); missing files are R1_ERR_NOT_FOUND; a weight_map entry that its shard lacks
 * is R1_ERR_FORMAT. The data stay on disk: nothing is read until a tensor's bytes are touched. */
r1_status r1_safetensors__open_dir(r1_safetensors **out, const char *dir);
/* Opens one file (for tests and fuzzing). */
r1_status r1_safetensors__open_file(r1_safetensors **out, const char *path);
void r1_safetensors__close(r1_safetensors *st);
const r1_st_tensor *r1_safetensors__find(const r1_safetensors *st, const char *name);

/* Reads a small whole file (config.json, tokenizer.json) into a NUL-terminated heap buffer.
 * R1_ERR_NOT_FOUND when absent, R1_ERR_FORMAT when larger than max_bytes. */
r1_status r1_safetensors__read_small(const char *path, size_t max_bytes, char **data_out,
                                     size_t *len_out);

#endif
