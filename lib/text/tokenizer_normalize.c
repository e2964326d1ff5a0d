/* tokenizer_normalize.c: Hugging Face's NFC normalizer, computed by libutf8proc. */
#include "tokenizer_normalize.h"

#include "error.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* Hugging Face's NFC has the tables of Unicode 9.0 (crate unicode-normalization-alignments),
 * utf8proc those of its own, newer Unicode. Unicode never changes a character's normalisation
 * data once it is assigned, so the two agree on every character of Unicode 9.0, and to Hugging
 * Face every later one is an inert starter: nothing reorders or composes across it. So runs of
 * the code points Hugging Face's NFC acts on go through utf8proc, and every other code point
 * stays as it is, a boundary between runs. */
static int in_nfc_set(uint32_t cp)
{
    size_t lo = 0, hi = r1_tokenizer__n_nfc_ranges;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp > r1_tokenizer__nfc_ranges[2 * mid + 1])
            lo = mid + 1;
        else if (cp < r1_tokenizer__nfc_ranges[2 * mid])
            hi = mid;
        else
            return 1;
    }
    return 0;
}

typedef struct nfc_out {
    char *p;
    size_t n, cap;
    utf8proc_int32_t *cps; /* utf8proc's work buffer: code points, then the UTF-8 in place */
    size_t cap_cps;
} nfc_out;

static int append(nfc_out *o, const void *s, size_t n)
{
    if (o->cap - o->n < n) {
        size_t cap = o->cap ? o->cap : 64;
        while (cap - o->n < n)
            cap *= 2;
        char *p = realloc(o->p, cap);
        if (!p)
            return 0;
        o->p = p;
        o->cap = cap;
    }
    if (n)
        memcpy(o->p + o->n, s, n);
    o->n += n;
    return 1;
}

/* NFC of one run (utf8proc_NFC's steps, into a buffer kept across runs). */
static int append_nfc(nfc_out *o, const char *s, size_t n)
{
    const utf8proc_option_t opts = UTF8PROC_STABLE | UTF8PROC_COMPOSE;
    utf8proc_ssize_t k;
    for (;;) {
        /* Room for the code points plus the terminator utf8proc_reencode writes. */
        size_t room = o->cap_cps ? o->cap_cps - 1 : 0;
        k = utf8proc_decompose((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, o->cps,
                               (utf8proc_ssize_t)room, opts);
        if (k < 0)
            return k == UTF8PROC_ERROR_NOMEM ? 0 : -1;
        if ((size_t)k <= room)
            break;
        utf8proc_int32_t *c = realloc(o->cps, ((size_t)k + 1) * sizeof *c);
        if (!c)
            return 0;
        o->cps = c;
        o->cap_cps = (size_t)k + 1;
    }
    utf8proc_ssize_t len = utf8proc_reencode(o->cps, k, opts);
    if (len < 0)
        return -1;
    return append(o, o->cps, (size_t)len);
}

r1_status r1_tokenizer__nfc(const char *text, size_t n, char **out, size_t *out_len)
{
    const utf8proc_uint8_t *u = (const utf8proc_uint8_t *)text;
    *out = NULL;
    *out_len = n;
    /* Below U+0300 every code point is a starter that composes with nothing before it: text
     * without a lead byte of U+0300 or above (0xCC) is already NFC. */
    size_t first = 0;
    while (first < n && u[first] < 0xCC)
        first++;
    if (first == n)
        return R1_OK;
    nfc_out o = {NULL, 0, 0, NULL, 0};
    size_t done = 0, run = 0, i = 0; /* done: bytes dealt with; run: start of the current run */
    int in_run = 0, run_acts = 0;    /* run_acts: the run holds a code point of U+0300 or above */
    int rc = 1;
    while (rc == 1) {
        utf8proc_int32_t cp = -1;
        utf8proc_ssize_t l = 0;
        if (i < n) {
            l = utf8proc_iterate(u + i, (utf8proc_ssize_t)(n - i), &cp);
            if (l <= 0) { /* not valid UTF-8: the caller validated it, so keep the rest as is */
                l = (utf8proc_ssize_t)(n - i);
                cp = -1;
            }
        }
        /* Below U+0300 every code point is a starter that no version of Unicode decomposes, so
         * one outside the set changes nothing inside a run: they all join runs, unsearched. */
        int member = cp >= 0 && (cp < 0x300 || in_nfc_set((uint32_t)cp));
        if (in_run && !member) {
            if (run_acts) {
                rc = append(&o, text + done, run - done);
                if (rc == 1)
                    rc = append_nfc(&o, text + run, i - run);
                done = i;
            }
            in_run = 0;
        }
        if (i >= n)
            break;
        if (member && !in_run) {
            in_run = 1;
            run = i;
            run_acts = 0;
        }
        run_acts |= member && cp >= 0x300;
        i += (size_t)l;
    }
    if (rc == 1 && o.p)
        rc = append(&o, text + done, n - done);
    free(o.cps);
    if (rc != 1) {
        free(o.p);
        return rc == 0 ? r1_error__set(R1_ERR_NO_MEMORY, "tokenizer: out of memory normalizing")
                       : r1_error__set(R1_ERR_INTERNAL, "tokenizer: NFC failed");
    }
    if (o.p && (o.n != n || memcmp(o.p, text, n) != 0)) {
        *out = o.p;
        *out_len = o.n;
    } else {
        free(o.p);
    }
    return R1_OK;
}
