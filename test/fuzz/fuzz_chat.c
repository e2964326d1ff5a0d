/* fuzz_chat.c: libFuzzer target for chat rendering on untrusted messages: the output is sized
 * exactly, NUL-terminated, truncation-safe, and contains each (R1: kept part of each) message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Input: a control byte (bit 0: flavour, bit 1: generation prompt, bit 2: a BOS string, bits
 * 3-5: a small output capacity to try first), then messages separated by FUZZ_SEP, each a
 * role byte (0-3; 3 is an unsupported role) and its content (NULs cut it short). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t ctl = data[0];
    int32_t flavour = ctl & 1 ? R1_CHAT__FLAVOUR_V3 : R1_CHAT__FLAVOUR_R1;
    const char *bos =
        ctl & 4 ? "<\357\275\234begin\342\226\201of\342\226\201sentence\357\275\234>" : "";
    enum { MAX_MSG = 64 };
    int32_t roles[MAX_MSG];
    char *contents[MAX_MSG];
    size_t n = 0;
    const uint8_t *p = data + 1, *part;
    size_t len;
    while (n < MAX_MSG && fuzz_next_part(&p, data + size, &part, &len)) {
        if (len == 0)
            continue;
        roles[n] = part[0] % 4;
        contents[n] = malloc(len);
        FUZZ_CHECK(contents[n] != NULL);
        memcpy(contents[n], part + 1, len - 1);
        contents[n][len - 1] = '\0';
        n++;
    }
    size_t need = 0;
    r1_status st = r1_chat__render(flavour, bos, roles, (const char *const *)contents, n,
                                   (ctl >> 1) & 1, NULL, 0, &need);
    if (st == R1_ERR_BUFFER_TOO_SMALL) {
        size_t small = (ctl >> 3) & 7, got = 0;
        char tiny[8];
        memset(tiny, 'x', sizeof tiny);
        if (small > 0 && small <= need) {
            FUZZ_CHECK(r1_chat__render(flavour, bos, roles, (const char *const *)contents, n,
                                       (ctl >> 1) & 1, tiny, small,
                                       &got) == R1_ERR_BUFFER_TOO_SMALL);
            FUZZ_CHECK(got == need);
        }
        char *buf = malloc(need + 1);
        FUZZ_CHECK(buf != NULL);
        st = r1_chat__render(flavour, bos, roles, (const char *const *)contents, n, (ctl >> 1) & 1,
                             buf, need + 1, &got);
        FUZZ_CHECK(st == R1_OK && got == need && buf[need] == '\0');
        FUZZ_CHECK(strncmp(buf, bos, strlen(bos)) == 0);
        /* Every user message appears whole. */
        for (size_t i = 0; i < n; i++)
            if (roles[i] == R1_CHAT__ROLE_USER)
                FUZZ_CHECK(strstr(buf, contents[i]) != NULL);
        free(buf);
    } else if (st == R1_OK) {
        FUZZ_CHECK(need == 0);
    } else {
        FUZZ_CHECK(st == R1_ERR_INVALID_ARG || st == R1_ERR_INVALID_UTF8);
    }
    for (size_t i = 0; i < n; i++)
        free(contents[i]);
    return 0;
}
