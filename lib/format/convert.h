/* convert.h: Hugging Face checkpoint -> .r1m conversion (internal core behind r1_convert). */
#ifndef R1_CONVERT_H
#define R1_CONVERT_H

#include <stdint.h>

#include "dtype.h"
#include "r1.h"

/* Tensor classes that quantisation rules name (--quant experts=q4_0,attn=q8_0,...). */
enum {
    R1_QCLASS_EXPERTS = 0, /* routed experts: model.layers.*.mlp.experts.* */
    R1_QCLASS_SHARED = 1,  /* shared experts: model.layers.*.mlp.shared_experts.* */
    R1_QCLASS_ATTN = 2,    /* model.layers.*.self_attn.* projections */
    R1_QCLASS_DENSE = 3,   /* dense-layer MLP and the MTP eh_proj */
    R1_QCLASS_HEAD = 4,    /* lm_head.weight and the MTP shared_head.head.weight */
    R1_QCLASS_COUNT
};

/* rules[class]: -1 keeps the source type, otherwise R1_DTYPE_Q8_0 or R1_DTYPE_Q4_0. */
typedef struct r1_quant_rules {
    int32_t rule[R1_QCLASS_COUNT];
} r1_quant_rules;

/* Parses "q8_0" (every class), "keep", or "class=type,..." (type: q8_0, q4_0, keep). NULL or ""
 * keeps everything. R1_ERR_INVALID_ARG naming the bad part. */
r1_status r1_convert__parse_rules(const char *spec, r1_quant_rules *out);
/* Writes the canonical text of rules ("experts=q4_0,shared=keep,...") into buf. */
void r1_convert__format_rules(const r1_quant_rules *rules, char *buf, size_t cap);
/* The class of a tensor eligible for quantisation, or -1 (embeddings, norms, the router
 * mlp.gate.weight, e_score_correction_bias, scales, and anything not 2-D), from its DeepSeek-style
 * name. The converter takes the class from the architecture's schema (model_schema.h) and asks
 * this only for a tensor no table names (stored where the schema tolerates extras). */
int32_t r1_convert__classify(const char *name, int32_t n_dims);

typedef struct r1_convert_opts {
    const char *quant;  /* rules as for r1_convert__parse_rules; NULL keeps all */
    int32_t n_threads;  /* compression workers; <= 0 means 1 */
    int32_t no_shuffle; /* 1: never filter, so every expert is stored raw (blob_codec.h) */
    int32_t zstd_level; /* 0: R1_BLOB_ZSTD_LEVEL (blob_codec.h) */
    /* Called after each tensor or batch of experts; non-zero cancels (R1_CANCELLED). */
    int32_t (*progress)(uint64_t done_bytes, uint64_t total_bytes, void *user_data);
    void *user_data;
    /* 1: write an .r1m 1.0 file as the 1.0 converter did (blobs on 64-byte boundaries, no
     * padding, its codec choices at zstd level 3), so that tests can check that files from
     * before 1.1 still read; never needed otherwise. */
    int32_t legacy_v1_0;
} r1_convert_opts;

/* What happened to the expert blobs, per (first projection's) stored dtype. */
typedef struct r1_convert_dtype_stats {
    uint64_t n_blobs;
    uint64_t raw_bytes;    /* uncompressed */
    uint64_t stored_bytes; /* as written (compressed or raw, whichever was chosen) */
    uint64_t coded_bytes;  /* the coding tried (blob_codec.h), whether or not it was kept */
    uint64_t n_filtered, n_raw;
} r1_convert_dtype_stats;

typedef struct r1_convert_report {
    r1_convert_dtype_stats experts[R1_DTYPE_COUNT];
    uint64_t n_tensors, n_blobs, dense_bytes, file_bytes, n_aliased;
} r1_convert_report;

/* Converts hf_dir (config.json, safetensors, tokenizer.json, tokenizer_config.json) into
 * out_path, written through out_path.tmp-XXXXXX and renamed at the end, so an interrupted run
 * never leaves a file at out_path. Tensor data are streamed from mmapped shards, so peak memory
 * is bounded by the largest expert times the thread count, not by the model size. Output is
 * byte-identical for any n_threads. report may be NULL. */
r1_status r1_convert__run(const char *hf_dir, const char *out_path, const r1_convert_opts *opts,
                          r1_convert_report *report);

#endif
