/* session_file.h: the session file format of docs/format.md "Session files": writing it from a
 * session's parts and parsing it, untrusted, into owned parts (internal). */
#ifndef R1_SESSION_FILE_H
#define R1_SESSION_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "r1.h"

enum {
    R1_SESSION_FILE_HEADER = 128,
    R1_SESSION_FILE_DIR_ENTRY = 32,
    R1_SESSION_FILE_MAX_SECTIONS = 64,
    /* The cache kinds of the header's cache_kind field. */
    R1_SESSION_CACHE_LATENT = 1, /* MLA: one latent row per layer and position */
    R1_SESSION_CACHE_GQA = 2, /* grouped-query: a key row and a value row per layer and position */
    /* r1_gen_opts' limits on stop strings (generate.c), which a file's may not exceed. */
    R1_SESSION_MAX_STOPS = 16,
    R1_SESSION_MAX_STOP_BYTES = 256,
};

/* What identifies the sessions a file fits: every field must equal the target session's. */
typedef struct r1_session_shape {
    uint64_t model_id; /* the model's .r1m header checksum (r1_container__header_sum) */
    int32_t cache_kind;
    int32_t cache_dtype; /* R1_DTYPE_* */
    int64_t n_ctx;
    int32_t n_layers;
    uint64_t row_bytes; /* one position of one layer (of keys or of values for GQA) */
    int64_t vocab;      /* logits per row; token ids are below it */
} r1_session_shape;

/* A sampler's settings and state, the history oldest first. */
typedef struct r1_sampler_image {
    uint64_t seed, n_draws;
    float temperature, top_p, min_p;
    int32_t top_k, last_n;
    float repeat, frequency, presence;
    uint32_t n_bias, n_hist;
    int32_t *bias_ids; /* (n_bias) strictly ascending */
    float *bias;       /* (n_bias) */
    int32_t *hist;     /* (n_hist), n_hist <= last_n */
} r1_sampler_image;

/* The generation state of lib/run/session.h r1_generation that outlives a step. */
typedef struct r1_gen_image {
    int32_t active, finished, in_reasoning;
    int32_t max_tokens, think_budget, last_token;
    int32_t n_prompt, n_reasoning, n_answer, held_kind;
    int32_t *queue;
    size_t n_queue;
    int32_t *forced;
    size_t n_forced, i_forced;
    char *bridge; /* NUL-terminated; NULL when no generation is active */
    size_t n_bridge;
    char **stops; /* NUL-terminated each */
    int32_t n_stops;
    uint8_t stream_held[4]; /* the detokenizer's incomplete UTF-8 character */
    uint32_t n_stream_held;
    char *held; /* n_held bytes and a NUL */
    size_t n_held;
} r1_gen_image;

/* Where the cache rows of a session lie in memory: the rows [0, position) of layer l and part
 * j (0: latent or keys, 1: values) start at cache[j] + l * layer_stride and are contiguous. */
typedef struct r1_session_rows {
    uint8_t *cache[2];
    uint64_t layer_stride;
} r1_session_rows;

/* What the writer writes. */
typedef struct r1_session_file_src {
    r1_session_shape shape;
    int64_t position;
    const int32_t *tokens; /* (position) */
    const float *logits;   /* (logits_rows, vocab) */
    int64_t logits_rows;
    const r1_gen_image *gen;
    const r1_sampler_image *sampler; /* the active generation's; NULL when none is active */
    r1_session_rows rows;
    /* The ids a context shift removed after position dropped_keep (lib/run/session.h). */
    const int32_t *dropped;
    size_t n_dropped;
    int64_t dropped_keep;
} r1_session_file_src;

/* Bytes the file of src takes; R1_ERR_INVALID_ARG when that does not fit in 64 bits. */
r1_status r1_session_file__size(const r1_session_file_src *src, uint64_t *size_out);
/* Writes the file into buf (cap >= its size) or, with buf NULL, into the regular file fd from
 * offset 0 (pwrite, sections streamed from src's memory; the header last). */
r1_status r1_session_file__write(const r1_session_file_src *src, uint8_t *buf, size_t cap, int fd);

/* A session file being read: a buffer, or an open regular file (buf NULL). */
typedef struct r1_session_file_in {
    const uint8_t *buf;
    int fd;
    uint64_t size;
    const char *name; /* for messages: "'PATH'" or "the buffer" */
} r1_session_file_in;

/* A parsed file: everything but the cache rows, owned, and where those rows lie. */
typedef struct r1_session_image {
    r1_session_shape shape;
    int64_t position;
    int32_t *tokens; /* (position) */
    float *logits;   /* (logits_rows, vocab) */
    int64_t logits_rows;
    r1_gen_image gen;
    int32_t has_sampler;
    r1_sampler_image sampler;
    int32_t *dropped; /* (n_dropped) */
    size_t n_dropped;
    int64_t dropped_keep;
    uint64_t cache_offset, cache_size, cache_sum; /* the rows' section */
    int32_t n_unknown;                            /* optional sections of later versions skipped */
} r1_session_image;

/* Reads, checks and parses a whole file but the cache rows, whose checksum it verifies without
 * keeping them. want: the target's shape; NULL takes the file's own (the fuzz target). Failures,
 * each naming the file, field or section: R1_ERR_FORMAT (malformed, truncated), R1_ERR_CHECKSUM,
 * R1_ERR_UNSUPPORTED (a later major version, a required section of a later version),
 * R1_ERR_INVALID_ARG (a file of another model, context, cache type), R1_ERR_IO,
 * R1_ERR_NO_MEMORY. On failure *img holds nothing. */
r1_status r1_session_file__parse(const r1_session_file_in *in, const r1_session_shape *want,
                                 r1_session_image *img);
/* Copies the cache rows of a parsed file into dst (position rows per layer and part); a file
 * whose rows no longer match the checksum seen by the parse (changed in between) is R1_ERR_IO,
 * with dst's rows then unspecified. */
r1_status r1_session_file__read_rows(const r1_session_file_in *in, const r1_session_image *img,
                                     const r1_session_rows *dst);
void r1_session_file__free(r1_session_image *img);
void r1_session_file__free_gen(r1_gen_image *g);
void r1_session_file__free_sampler(r1_sampler_image *smp);

/* The standalone sampler blob (also the payload of a session file's sampler section). */
size_t r1_session_file__sampler_size(const r1_sampler_image *smp);
void r1_session_file__sampler_encode(const r1_sampler_image *smp, uint8_t *out);
/* Parses and checks a sampler blob of exactly n bytes (settings within the setters' ranges);
 * what names the blob in messages. */
r1_status r1_session_file__sampler_decode(const uint8_t *p, size_t n, const char *what,
                                          r1_sampler_image *smp);

#endif
