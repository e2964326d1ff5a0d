/* fuzz_tokenizer_blob.c: libFuzzer target for the tokenizer blob reader (docs/tokenizer-blob.md)
 * on untrusted bytes, its CRC recomputed so mutations reach the payload checks; a blob it
 * accepts must build a tokenizer that encodes and decodes without fault. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint32_t crc32_bytes(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    }
    return c ^ 0xFFFFFFFFu;
}

/* Input: a blob. Its length and CRC fields are rewritten to match (a flip would otherwise almost
 * always stop at them); an input that starts with a byte other than 'R' is parsed as is. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *b = malloc(size ? size : 1);
    FUZZ_CHECK(b != NULL);
    if (size)
        memcpy(b, data, size);
    if (size >= 20 && b[0] == 'R') {
        uint64_t pl = size - 20;
        for (int i = 0; i < 8; i++)
            b[8 + i] = (uint8_t)(pl >> (8 * i));
        uint32_t c = crc32_bytes(b + 20, size - 20);
        for (int i = 0; i < 4; i++)
            b[16 + i] = (uint8_t)(c >> (8 * i));
    }
    r1_tokenizer_spec *spec = NULL;
    r1_status st = r1_tokenizer__spec_parse(&spec, b, size);
    if (st != R1_OK) {
        FUZZ_CHECK(spec == NULL);
        FUZZ_CHECK(st == R1_ERR_FORMAT || st == R1_ERR_CHECKSUM || st == R1_ERR_UNSUPPORTED ||
                   st == R1_ERR_NO_MEMORY);
        free(b);
        return 0;
    }
    /* An accepted blob is canonical: it serializes back to the same bytes. */
    size_t len = 0;
    uint8_t *again = malloc(size);
    FUZZ_CHECK(again != NULL);
    FUZZ_CHECK(r1_tokenizer__spec_serialize(spec, again, size, &len) == R1_OK && len == size);
    FUZZ_CHECK(memcmp(again, b, size) == 0);
    free(again);
    r1_tokenizer *tok = NULL;
    if (r1_tokenizer__create(&tok, spec) == R1_OK) {
        static const char *const texts[] = {"Hello, world 123!", " a  ab abc\n\tzz <s>",
                                            "\xe4\xb8\xad \xf0\x9f\x98\x80 \xff\xfe"};
        int32_t ids[256];
        char back[1024];
        for (size_t t = 0; t < sizeof texts / sizeof texts[0]; t++)
            for (uint32_t f = 0; f < 16; f++) {
                size_t n = 0, l = 0;
                if (r1_tokenizer__encode(tok, texts[t], strlen(texts[t]), f, ids, 256, &n) == R1_OK)
                    (void)r1_tokenizer__decode(tok, ids, n, f & 1, back, sizeof back, &l);
            }
        r1_tokenizer_stream *s = NULL;
        if (r1_tokenizer__stream_create(&s, tok, 0) == R1_OK) {
            for (int32_t id = 0; id < 64 && (uint32_t)id < r1_tokenizer__n_ids(tok); id++) {
                size_t l = 0;
                (void)r1_tokenizer__stream_push(s, id, back, sizeof back, &l);
            }
            size_t l = 0;
            (void)r1_tokenizer__stream_flush(s, back, sizeof back, &l);
            r1_tokenizer__stream_destroy(s);
        }
        r1_tokenizer__destroy(tok);
    }
    r1_tokenizer__spec_destroy(spec);
    free(b);
    return 0;
}
