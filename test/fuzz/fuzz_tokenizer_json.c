/* fuzz_tokenizer_json.c: libFuzzer target for the tokenizer.json (+ tokenizer_config.json)
 * importer; a spec it accepts must build, encode, and survive the blob round trip unchanged. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Encode and decode a little text with every flag combination. */
static void exercise(const r1_tokenizer *tok)
{
    static const char *const texts[] = {"Hello, world 123!", " a  ab abc\n\tword Ab <s><|x|>",
                                        "\xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80 \xff"};
    int32_t ids[256];
    char back[1024];
    for (size_t t = 0; t < sizeof texts / sizeof texts[0]; t++)
        for (uint32_t f = 0; f < 16; f++) {
            size_t n = 0, len = 0;
            if (r1_tokenizer__encode(tok, texts[t], strlen(texts[t]), f, ids, 256, &n) == R1_OK)
                (void)r1_tokenizer__decode(tok, ids, n, f & 1, back, sizeof back, &len);
        }
}

/* Input: tokenizer.json, optionally followed by FUZZ_SEP and tokenizer_config.json. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *p = data, *json, *cfg = NULL;
    size_t jl, cl = 0;
    fuzz_next_part(&p, data + size, &json, &jl);
    if (!fuzz_next_part(&p, data + size, &cfg, &cl))
        cfg = NULL;
    r1_tokenizer_spec *spec = NULL;
    r1_status st =
        r1_tokenizer__spec_from_json(&spec, (const char *)json, jl, (const char *)cfg, cl);
    if (st != R1_OK) {
        FUZZ_CHECK(spec == NULL);
        FUZZ_CHECK(st == R1_ERR_FORMAT || st == R1_ERR_UNSUPPORTED || st == R1_ERR_NO_MEMORY);
        return 0;
    }
    FUZZ_CHECK(r1_tokenizer__spec_validate(spec) == R1_OK);
    r1_tokenizer *tok = NULL;
    if (r1_tokenizer__create(&tok, spec) == R1_OK) {
        exercise(tok);
        r1_tokenizer__destroy(tok);
    }
    /* The blob holds the spec exactly: serialize, parse, serialize gives the same bytes. */
    size_t need = 0, len = 0;
    FUZZ_CHECK(r1_tokenizer__spec_serialize(spec, NULL, 0, &need) == R1_ERR_BUFFER_TOO_SMALL);
    uint8_t *blob = malloc(need), *again = malloc(need);
    FUZZ_CHECK(blob && again);
    FUZZ_CHECK(r1_tokenizer__spec_serialize(spec, blob, need, &len) == R1_OK && len == need);
    r1_tokenizer_spec *back = NULL;
    FUZZ_CHECK(r1_tokenizer__spec_parse(&back, blob, len) == R1_OK);
    FUZZ_CHECK(r1_tokenizer__spec_serialize(back, again, need, &len) == R1_OK && len == need);
    FUZZ_CHECK(memcmp(blob, again, need) == 0);
    r1_tokenizer__spec_destroy(back);
    r1_tokenizer__spec_destroy(spec);
    free(blob);
    free(again);
    return 0;
}
