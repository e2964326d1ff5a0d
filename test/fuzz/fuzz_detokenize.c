/* fuzz_detokenize.c: libFuzzer target for decode and the streaming detokenizer on untrusted id
 * sequences: the stream's output must always be valid UTF-8, and a failed push must change
 * nothing (its retry gives what one large buffer gives). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static r1_tokenizer *g_tok[FUZZ_N_TOKENIZERS];

/* Input: a control byte (bit 0: tokenizer, DeepSeek's or the small one, or with bit 2 set
 * R1-Distill-Qwen's or R1-Distill-Llama's; bit 1: skip special), then 3 bytes per step: a 20-bit
 * id (values past n_ids test the range check) and a 4-bit output capacity (0-15 bytes, so
 * R1_ERR_BUFFER_TOO_SMALL and its retry happen often). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_tokenizers(g_tok);
    if (size < 1)
        return 0;
    const r1_tokenizer *tok = g_tok[(data[0] & 1) + ((data[0] & 4) ? 2 : 0)];
    uint32_t flags = (data[0] & 2) ? R1_DETOKENIZE_SKIP_SPECIAL : 0;
    uint32_t n_ids = r1_tokenizer__n_ids(tok);
    size_t steps = (size - 1) / 3;
    int32_t *ids = malloc((steps + 1) * sizeof *ids);
    FUZZ_CHECK(ids != NULL);
    r1_tokenizer_stream *st = NULL;
    FUZZ_CHECK(r1_tokenizer__stream_create(&st, tok, flags) == R1_OK);
    char out[4096];
    /* Everything the stream emitted, to compare with the whole-sequence decode. */
    char *all = malloc(steps * sizeof out + sizeof out);
    size_t n_all = 0, n_ok = 0;
    FUZZ_CHECK(all != NULL);
    for (size_t k = 0; k < steps; k++) {
        const uint8_t *p = data + 1 + 3 * k;
        uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)(p[2] & 0x0F) << 16;
        /* Mostly real ids; the high values go past n_ids and to negative ids. */
        int32_t id = v < 0xF0000 ? (int32_t)(v % n_ids) : (int32_t)(v - 0xF8000);
        size_t cap = p[2] >> 4, len = 0;
        r1_status s = r1_tokenizer__stream_push(st, id, out, cap, &len);
        if (s == R1_ERR_BUFFER_TOO_SMALL) {
            FUZZ_CHECK(len > cap && len <= sizeof out);
            s = r1_tokenizer__stream_push(st, id, out, sizeof out, &len);
        }
        if (id < 0 || (uint32_t)id >= n_ids) {
            FUZZ_CHECK(s == R1_ERR_OUT_OF_RANGE);
            continue;
        }
        FUZZ_CHECK(s == R1_OK || s == R1_ERR_OUT_OF_RANGE); /* unused ids are out of range */
        if (s != R1_OK)
            continue;
        FUZZ_CHECK(len <= sizeof out && fuzz_valid_utf8(out, len));
        memcpy(all + n_all, out, len);
        n_all += len;
        ids[n_ok++] = id;
    }
    size_t len = 0;
    r1_status s = r1_tokenizer__stream_flush(st, out, 0, &len);
    if (s == R1_ERR_BUFFER_TOO_SMALL)
        s = r1_tokenizer__stream_flush(st, out, sizeof out, &len);
    FUZZ_CHECK(s == R1_OK && fuzz_valid_utf8(out, len));
    memcpy(all + n_all, out, len);
    n_all += len;
    r1_tokenizer__stream_destroy(st);
    /* Whole-sequence decode of the accepted ids: sized, then written. */
    size_t need = 0;
    s = r1_tokenizer__decode(tok, ids, n_ok, flags, NULL, 0, &need);
    FUZZ_CHECK(s == R1_OK || s == R1_ERR_BUFFER_TOO_SMALL);
    char *buf = malloc(need + 1);
    size_t got = 0;
    FUZZ_CHECK(buf != NULL);
    FUZZ_CHECK(r1_tokenizer__decode(tok, ids, n_ok, flags, buf, need, &got) == R1_OK);
    FUZZ_CHECK(got == need);
    /* When the whole text is valid UTF-8 the stream must have produced exactly it. */
    if (fuzz_valid_utf8(buf, got))
        FUZZ_CHECK(n_all == got && memcmp(all, buf, got) == 0);
    free(buf);
    free(all);
    free(ids);
    return 0;
}
