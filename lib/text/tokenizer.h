/* tokenizer.h: byte-level BPE tokenizer: spec, JSON/blob loaders, encode, decode, stream. */
#ifndef R1_TOKENIZER_H
#define R1_TOKENIZER_H

#include "r1.h"

#include <stddef.h>
#include <stdint.h>

/* Encode flags. The public API is expected to reuse these values. */
#ifndef R1_TOKENIZE_ADD_BOS
#define R1_TOKENIZE_ADD_BOS 0x1u /* prepend the BOS id (when the spec has one) */
#endif
#ifndef R1_TOKENIZE_PARSE_SPECIAL
/* Match every added token in the text, special or not (Hugging Face's encode() default). Without
 * this flag and without R1_TOKENIZE_PARSE_ADDED the whole text is plain text: no control token
 * can come out of it, which is what untrusted user content needs. */
#define R1_TOKENIZE_PARSE_SPECIAL 0x2u
#endif
#ifndef R1_TOKENIZE_REPLACE_INVALID
/* Replace each maximal invalid UTF-8 subpart by U+FFFD instead of failing. */
#define R1_TOKENIZE_REPLACE_INVALID 0x4u
#endif
#ifndef R1_TOKENIZE_PARSE_ADDED
/* Match only the non-special added tokens (Hugging Face's encode_special_tokens=true). */
#define R1_TOKENIZE_PARSE_ADDED 0x8u
#endif

/* Decode flags. */
#ifndef R1_DETOKENIZE_SKIP_SPECIAL
#define R1_DETOKENIZE_SKIP_SPECIAL 0x1u /* drop added tokens flagged special */
#endif

/* Split behaviours, as Hugging Face names them. */
enum {
    R1_TOKENIZER_SPLIT_REMOVED = 0,
    R1_TOKENIZER_SPLIT_ISOLATED = 1,
    R1_TOKENIZER_SPLIT_MERGED_WITH_PREVIOUS = 2,
    R1_TOKENIZER_SPLIT_MERGED_WITH_NEXT = 3,
    R1_TOKENIZER_SPLIT_CONTIGUOUS = 4
};

/* Pre-tokenizer step kinds. */
enum { R1_TOKENIZER_STEP_SPLIT = 0, R1_TOKENIZER_STEP_BYTE_LEVEL = 1 };

/* One added token (tokenizer.json "added_tokens"). */
typedef struct r1_tokenizer_added {
    int32_t id;
    char *content; /* UTF-8, content_len bytes, NUL-terminated for convenience */
    uint32_t content_len;
    uint8_t special, lstrip, rstrip, normalized, single_word;
} r1_tokenizer_added;

/* One pre-tokenizer step, applied in order. A spec has exactly one BYTE_LEVEL step, the last. */
typedef struct r1_tokenizer_step {
    uint8_t kind;     /* R1_TOKENIZER_STEP_* */
    uint8_t is_regex; /* SPLIT: 1 = pattern is a regex, 0 = a literal string */
    uint8_t behavior; /* SPLIT: R1_TOKENIZER_SPLIT_* */
    uint8_t invert;   /* SPLIT */
    uint8_t add_prefix_space, use_regex, trim_offsets; /* BYTE_LEVEL */
    char *pattern;                                     /* SPLIT: UTF-8, NUL-terminated */
    uint32_t pattern_len;
} r1_tokenizer_step;

/* Everything that defines a tokenizer; plain data, owned by r1_tokenizer__spec_destroy(). */
typedef struct r1_tokenizer_spec {
    uint32_t n_ids; /* ids are 0 .. n_ids-1; some may be unused */
    /* Per id: the vocabulary key exactly as in tokenizer.json (byte-level alphabet), or the
     * added token's content for ids only in added_tokens; empty for unused ids. Token id i is
     * token_bytes[token_off[i] .. token_off[i+1]). */
    char *token_bytes;
    uint64_t *token_off; /* n_ids + 1 */
    uint8_t *in_vocab;   /* n_ids: 1 when the id is a model.vocab entry */
    uint32_t n_merges;
    int32_t *merges; /* 2 * n_merges: (left id, right id) in rank order */
    uint32_t n_added;
    r1_tokenizer_added *added;
    uint32_t n_steps;
    r1_tokenizer_step *steps;
    int32_t unk_id;           /* -1 when none */
    uint8_t ignore_merges;    /* BPE: emit a piece that is a vocab entry as is */
    uint8_t normalizer;       /* R1_TOKENIZER_NORM_* (tokenizer_normalize.h) */
    uint8_t add_bos, add_eos; /* tokenizer_config.json add_bos_token / add_eos_token */
    int32_t bos_id, eos_id;   /* -1 when unknown */
    char *chat_template;      /* NULL when absent; NUL-terminated */
    uint32_t chat_template_len;
} r1_tokenizer_spec;

typedef struct r1_tokenizer r1_tokenizer;
typedef struct r1_tokenizer_stream r1_tokenizer_stream;

/* Spec: an empty spec (all zero, bos/eos/unk -1), and its destructor (accepts NULL). */
r1_status r1_tokenizer__spec_create(r1_tokenizer_spec **out);
void r1_tokenizer__spec_destroy(r1_tokenizer_spec *spec);

/* tokenizer_json.c: parse tokenizer.json (and optionally tokenizer_config.json, config may be
 * NULL) into a new spec. Normalizers: none, NFC, or a Sequence of those. Other normalizers,
 * models or pre-tokenizers: R1_ERR_UNSUPPORTED;
 * malformed JSON or inconsistent content: R1_ERR_FORMAT. */
r1_status r1_tokenizer__spec_from_json(r1_tokenizer_spec **out, const char *json, size_t json_len,
                                       const char *config_json, size_t config_len);

/* tokenizer_blob.c: the byte format of docs/tokenizer-blob.md. serialize writes at most cap
 * bytes; with cap too small (buf may then be NULL) it fails with R1_ERR_BUFFER_TOO_SMALL and sets
 * *len_out to the size needed. parse treats the bytes as untrusted: R1_ERR_FORMAT on any defect. */
r1_status r1_tokenizer__spec_serialize(const r1_tokenizer_spec *spec, uint8_t *buf, size_t cap,
                                       size_t *len_out);
r1_status r1_tokenizer__spec_parse(r1_tokenizer_spec **out, const uint8_t *buf, size_t len);

/* Validate a spec's internal consistency (ids in range, merges resolvable, one final ByteLevel
 * step). Called by create and by the parsers. */
r1_status r1_tokenizer__spec_validate(const r1_tokenizer_spec *spec);

/* Build a tokenizer from a spec (copied; the spec may be destroyed afterwards). The tokenizer is
 * immutable apart from an internally locked word cache, so one may be shared across threads. */
r1_status r1_tokenizer__create(r1_tokenizer **out, const r1_tokenizer_spec *spec);
void r1_tokenizer__destroy(r1_tokenizer *tok);

/* Encode text_len bytes of UTF-8. Writes at most cap ids; if more are needed, fails with
 * R1_ERR_BUFFER_TOO_SMALL (ids may be NULL when cap is 0). *n_out is the number of ids produced
 * or needed. Invalid UTF-8: R1_ERR_INVALID_UTF8 naming the byte offset, unless
 * R1_TOKENIZE_REPLACE_INVALID. */
r1_status r1_tokenizer__encode(const r1_tokenizer *tok, const char *text, size_t text_len,
                               uint32_t flags, int32_t *ids, size_t cap, size_t *n_out);

/* Decode ids to bytes (not NUL-terminated; may be invalid UTF-8 when the ids split a character).
 * Same capacity rule as encode, with *len_out in bytes. Ids outside 0..n_ids-1 or unused:
 * R1_ERR_OUT_OF_RANGE. */
r1_status r1_tokenizer__decode(const r1_tokenizer *tok, const int32_t *ids, size_t n_ids,
                               uint32_t flags, char *buf, size_t cap, size_t *len_out);

/* Bytes of one token as decode would produce them (borrowed from tok), or NULL when out of
 * range. */
const char *r1_tokenizer__token_bytes(const r1_tokenizer *tok, int32_t id, size_t *len_out);

/* The id of an exact vocabulary key or added-token content, or -1. */
int32_t r1_tokenizer__token_to_id(const r1_tokenizer *tok, const char *s, size_t len);

uint32_t r1_tokenizer__n_ids(const r1_tokenizer *tok);
int32_t r1_tokenizer__bos_id(const r1_tokenizer *tok);
int32_t r1_tokenizer__eos_id(const r1_tokenizer *tok);
/* 1 when id is an added token flagged special. */
int32_t r1_tokenizer__is_special(const r1_tokenizer *tok, int32_t id);
/* The chat template string (borrowed, NUL-terminated) or NULL. */
const char *r1_tokenizer__chat_template(const r1_tokenizer *tok);

/* Streaming decoder: push one id at a time; only complete UTF-8 sequences come out, an
 * incomplete tail is held back until later bytes complete it; bytes that can never form valid
 * UTF-8 come out as U+FFFD, so the output is always valid UTF-8. A push or flush that fails
 * (R1_ERR_BUFFER_TOO_SMALL, R1_ERR_OUT_OF_RANGE) changes nothing and may be retried. flush
 * emits the held-back tail as U+FFFD and resets the stream. The stream borrows tok. */
r1_status r1_tokenizer__stream_create(r1_tokenizer_stream **out, const r1_tokenizer *tok,
                                      uint32_t flags);
void r1_tokenizer__stream_destroy(r1_tokenizer_stream *st);
r1_status r1_tokenizer__stream_push(r1_tokenizer_stream *st, int32_t id, char *buf, size_t cap,
                                    size_t *len_out);
r1_status r1_tokenizer__stream_flush(r1_tokenizer_stream *st, char *buf, size_t cap,
                                     size_t *len_out);
/* The bytes held back (at most 3: an incomplete UTF-8 character) into held; returns their count.
 * set_held puts n <= 3 such bytes back (a saved session's stream, session_state.c). */
size_t r1_tokenizer__stream_held(const r1_tokenizer_stream *st, uint8_t held[4]);
void r1_tokenizer__stream_set_held(r1_tokenizer_stream *st, const uint8_t *held, size_t n);

#endif
