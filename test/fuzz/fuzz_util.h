/* fuzz_util.h: helpers shared by the libFuzzer targets (input splitting, fixture loading). */
#ifndef R1_FUZZ_UTIL_H
#define R1_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "error.h"
#include "tokenizer.h"
#include "utf8.h"

#ifndef R1_FUZZ_DATA_DIR
#define R1_FUZZ_DATA_DIR "test/data"
#endif

/* A failed invariant: abort so libFuzzer records the input as a crash. */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Several inputs in one: parts are separated by this marker, which the seed corpora use and
 * libFuzzer's mutations keep (it is also in the targets' dictionaries). */
#define FUZZ_SEP     "\n#-#\n"
#define FUZZ_SEP_LEN 5

/* The next part of [*p, end): its start and length; advances *p past the marker. Returns 0 when
 * no part is left. */
static inline int fuzz_next_part(const uint8_t **p, const uint8_t *end, const uint8_t **part,
                                 size_t *len)
{
    if (*p == NULL)
        return 0;
    const uint8_t *s = *p;
    const uint8_t *m = NULL;
    for (const uint8_t *q = s; q + FUZZ_SEP_LEN <= end; q++)
        if (memcmp(q, FUZZ_SEP, FUZZ_SEP_LEN) == 0) {
            m = q;
            break;
        }
    *part = s;
    if (m) {
        *len = (size_t)(m - s);
        *p = m + FUZZ_SEP_LEN;
    } else {
        *len = (size_t)(end - s);
        *p = NULL; /* nothing after the last part */
    }
    return 1;
}

/* A whole file from R1_FUZZ_DATA_DIR (or $R1_FUZZ_DATA), NUL-terminated; exits when missing,
 * since a target without its fixture would fuzz nothing. */
static inline char *fuzz_read_data(const char *name, size_t *len_out)
{
    const char *dir = getenv("R1_FUZZ_DATA");
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir && *dir ? dir : R1_FUZZ_DATA_DIR, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "fuzz: cannot open %s (set R1_FUZZ_DATA)\n", path);
        exit(2);
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "fuzz: cannot read %s\n", path);
        exit(2);
    }
    fclose(f);
    buf[n] = '\0';
    *len_out = (size_t)n;
    return buf;
}

/* The DeepSeek-R1 tokenizer of test/data/tokenizer, built once per process. */
static inline r1_tokenizer *fuzz_deepseek_tokenizer(void)
{
    size_t jl, cl;
    char *json = fuzz_read_data("tokenizer/tokenizer.json", &jl);
    char *cfg = fuzz_read_data("tokenizer/tokenizer_config.json", &cl);
    r1_tokenizer_spec *spec = NULL;
    r1_tokenizer *tok = NULL;
    if (r1_tokenizer__spec_from_json(&spec, json, jl, cfg, cl) != R1_OK ||
        r1_tokenizer__create(&tok, spec) != R1_OK) {
        fprintf(stderr, "fuzz: cannot build the DeepSeek tokenizer: %s\n", r1_error__message());
        exit(2);
    }
    r1_tokenizer__spec_destroy(spec);
    free(json);
    free(cfg);
    return tok;
}

/* A small tokenizer that takes the paths DeepSeek's does not: ByteLevel with a prefix space and
 * the GPT-2 regex, ignore_merges, an unk token, bytes without a token, and added tokens with
 * lstrip/rstrip/single_word/normalized. */
static inline r1_tokenizer *fuzz_small_tokenizer(void)
{
    static const char json[] =
        "{\"added_tokens\": ["
        "{\"id\": 12, \"content\": \"<s>\", \"special\": true},"
        "{\"id\": 13, \"content\": \"<|x|>\", \"special\": true, \"lstrip\": true, \"rstrip\": "
        "true},"
        "{\"id\": 14, \"content\": \"word\", \"special\": false, \"single_word\": true},"
        "{\"id\": 15, \"content\": \"Ab\", \"special\": false, \"normalized\": true}],"
        "\"normalizer\": null,"
        "\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": ["
        "{\"type\": \"Split\", \"pattern\": {\"String\": \",\"}, \"behavior\": \"MergedWithNext\", "
        "\"invert\": false},"
        "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\d\"}, \"behavior\": "
        "\"MergedWithPrevious\", \"invert\": true},"
        "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\s+\"}, \"behavior\": "
        "\"Contiguous\", \"invert\": false},"
        "{\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, "
        "\"use_regex\": true}]},"
        "\"model\": {\"type\": \"BPE\", \"unk_token\": \"?\", \"ignore_merges\": true, "
        "\"vocab\": {\"a\": 0, \"b\": 1, \"c\": 2, \"\\u0120\": 3, \"ab\": 4, \"abc\": 5, "
        "\"\\u0120a\": 6, \"\\u0120ab\": 7, \"?\": 8, \"0\": 9, \"1\": 10, \"01\": 11},"
        "\"merges\": [\"a b\", \"ab c\", \"\\u0120 a\", \"\\u0120a b\", \"0 1\"]}}";
    r1_tokenizer_spec *spec = NULL;
    r1_tokenizer *tok = NULL;
    if (r1_tokenizer__spec_from_json(&spec, json, sizeof json - 1, NULL, 0) != R1_OK ||
        r1_tokenizer__create(&tok, spec) != R1_OK) {
        fprintf(stderr, "fuzz: cannot build the small tokenizer: %s\n", r1_error__message());
        exit(2);
    }
    r1_tokenizer__spec_destroy(spec);
    return tok;
}

/* A distill's tokenizer of test/data/tokenizer (dir: "distill-qwen" or "distill-llama"), whose
 * tokenizer.json is stored zstd-compressed, built once per process. */
static inline r1_tokenizer *fuzz_distill_tokenizer(const char *dir)
{
    char name[256];
    size_t zl, cl;
    snprintf(name, sizeof name, "tokenizer/%s/tokenizer.json.zst", dir);
    char *z = fuzz_read_data(name, &zl);
    snprintf(name, sizeof name, "tokenizer/%s/tokenizer_config.json", dir);
    char *cfg = fuzz_read_data(name, &cl);
    /* The generator pipes into zstd, so the frame has no content size: decompress as a stream. */
    size_t cap = 16u << 20, jl = 0;
    char *json = malloc(cap);
    ZSTD_DStream *ds = ZSTD_createDStream();
    ZSTD_inBuffer in = {z, zl, 0};
    size_t rc = 1;
    while (json && ds && (in.pos < in.size || rc != 0)) {
        if (jl == cap) {
            char *more = realloc(json, cap *= 2);
            if (!more)
                break;
            json = more;
        }
        ZSTD_outBuffer ob = {json + jl, cap - jl, 0};
        size_t before = in.pos;
        rc = ZSTD_decompressStream(ds, &ob, &in);
        jl += ob.pos;
        if (ZSTD_isError(rc) || (rc != 0 && in.pos == before && ob.pos == 0 && jl < cap))
            break;
    }
    r1_tokenizer_spec *spec = NULL;
    r1_tokenizer *tok = NULL;
    if (!json || !ds || rc != 0 ||
        r1_tokenizer__spec_from_json(&spec, json, jl, cfg, cl) != R1_OK ||
        r1_tokenizer__create(&tok, spec) != R1_OK) {
        fprintf(stderr, "fuzz: cannot build the %s tokenizer: %s\n", dir, r1_error__message());
        exit(2);
    }
    ZSTD_freeDStream(ds);
    r1_tokenizer__spec_destroy(spec);
    free(json);
    free(z);
    free(cfg);
    return tok;
}

/* The text targets' tokenizers, made on the first input: [0] DeepSeek's, [1] the small one
 * with the paths DeepSeek's lacks, [2] R1-Distill-Qwen's (NFC, digits one at a time), [3]
 * R1-Distill-Llama's (digits by three, ignore_merges). */
#define FUZZ_N_TOKENIZERS 4
static inline void fuzz_tokenizers(r1_tokenizer *tok[FUZZ_N_TOKENIZERS])
{
    if (!tok[0]) {
        tok[0] = fuzz_deepseek_tokenizer();
        tok[1] = fuzz_small_tokenizer();
        tok[2] = fuzz_distill_tokenizer("distill-qwen");
        tok[3] = fuzz_distill_tokenizer("distill-llama");
    }
}

static inline int fuzz_valid_utf8(const char *s, size_t n)
{
    return r1_utf8__valid_prefix((const unsigned char *)s, n) == n;
}

#endif
