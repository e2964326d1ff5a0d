/* fuzz_tokenize.c: libFuzzer target for tokenizer encode on untrusted text (plain text, special
 * and added tokens parsed, invalid UTF-8 replaced), with the decode round trip as an oracle. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "tokenizer.h"
#include "tokenizer_normalize.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static r1_tokenizer *g_tok[FUZZ_N_TOKENIZERS];

/* Input: one control byte (bits 0-1: which tokenizer of fuzz_tokenizers(), bits 2-5: encode
 * flags, bit 6: encode into a buffer that is one id short first), then the text. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_tokenizers(g_tok);
    if (size < 1)
        return 0;
    uint8_t ctl = data[0];
    const r1_tokenizer *tok = g_tok[ctl & 3];
    uint32_t flags = (ctl >> 2) & 0xF; /* ADD_BOS, PARSE_SPECIAL, REPLACE_INVALID, PARSE_ADDED */
    const char *text = (const char *)data + 1;
    size_t n = size - 1;
    size_t need = 0;
    r1_status st = r1_tokenizer__encode(tok, text, n, flags, NULL, 0, &need);
    if (st == R1_ERR_INVALID_UTF8) {
        FUZZ_CHECK(!(flags & R1_TOKENIZE_REPLACE_INVALID));
        FUZZ_CHECK(!fuzz_valid_utf8(text, n));
        return 0;
    }
    FUZZ_CHECK(st == R1_OK || st == R1_ERR_BUFFER_TOO_SMALL);
    FUZZ_CHECK(st == R1_OK ? need == 0 : need > 0);
    int32_t *ids = malloc((need + 1) * sizeof *ids);
    FUZZ_CHECK(ids != NULL);
    size_t got = 0;
    if ((ctl & 0x40) && need > 1) {
        FUZZ_CHECK(r1_tokenizer__encode(tok, text, n, flags, ids, need - 1, &got) ==
                   R1_ERR_BUFFER_TOO_SMALL);
        FUZZ_CHECK(got == need);
    }
    st = r1_tokenizer__encode(tok, text, n, flags, ids, need, &got);
    FUZZ_CHECK(st == R1_OK && got == need);
    uint32_t n_ids = r1_tokenizer__n_ids(tok);
    for (size_t i = 0; i < got; i++)
        FUZZ_CHECK(ids[i] >= 0 && (uint32_t)ids[i] < n_ids);
    /* Byte-level BPE is lossless: plain valid text decodes back to itself (the DeepSeek and
     * Llama tokenizers have a token for every byte and no normalizer), or to its NFC (Qwen). */
    if (tok != g_tok[1] && flags == 0) {
        const char *want = text;
        size_t want_n = n;
        char *norm = NULL;
        if (tok == g_tok[2]) {
            FUZZ_CHECK(r1_tokenizer__nfc(text, n, &norm, &want_n) == R1_OK);
            if (norm)
                want = norm;
        }
        char *back = malloc(want_n + 1);
        size_t blen = 0;
        FUZZ_CHECK(back != NULL);
        st = r1_tokenizer__decode(tok, ids, got, 0, back, want_n, &blen);
        FUZZ_CHECK(st == R1_OK && blen == want_n && memcmp(back, want, want_n) == 0);
        free(back);
        free(norm);
    } else if (got > 0) {
        size_t blen = 0;
        st = r1_tokenizer__decode(tok, ids, got, R1_DETOKENIZE_SKIP_SPECIAL, NULL, 0, &blen);
        FUZZ_CHECK(st == R1_OK || st == R1_ERR_BUFFER_TOO_SMALL);
    }
    free(ids);
    return 0;
}
