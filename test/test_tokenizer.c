/* test_tokenizer.c: tokenizer vs Hugging Face reference ids; decode, streaming, blobs. */
#include "error.h"
#include "tokenizer.h"
#include "tokenizer_normalize.h"

#include <check.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer_testutil.h"

/* Reference records: text bytes and ids. */
typedef struct ref_case {
    char *text;
    size_t len;
    int32_t *ids;
    size_t n_ids;
} ref_case;

typedef struct ref_set {
    ref_case *v;
    size_t n;
} ref_set;

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static ref_set load_refs(const char *name)
{
    size_t len;
    char *json = read_file(name, &len);
    cJSON *root = cJSON_ParseWithLength(json, len);
    ck_assert_msg(cJSON_IsArray(root), "%s is not a JSON array", name);
    ref_set s;
    s.n = (size_t)cJSON_GetArraySize(root);
    s.v = calloc(s.n, sizeof *s.v);
    size_t k = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, root)
    {
        ref_case *c = &s.v[k++];
        const cJSON *hex = cJSON_GetObjectItemCaseSensitive(e, "hex");
        if (cJSON_IsString(hex)) {
            size_t hl = strlen(hex->valuestring);
            c->len = hl / 2;
            c->text = malloc(c->len + 1);
            for (size_t i = 0; i < c->len; i++)
                c->text[i] = (char)(hexval(hex->valuestring[2 * i]) * 16 +
                                    hexval(hex->valuestring[2 * i + 1]));
        } else {
            const char *t = cJSON_GetObjectItemCaseSensitive(e, "text")->valuestring;
            c->len = strlen(t);
            c->text = malloc(c->len + 1);
            memcpy(c->text, t, c->len);
        }
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(e, "ids");
        c->n_ids = (size_t)cJSON_GetArraySize(ids);
        c->ids = malloc((c->n_ids + 1) * sizeof *c->ids);
        size_t j = 0;
        const cJSON *id;
        cJSON_ArrayForEach(id, ids) c->ids[j++] = (int32_t)id->valuedouble;
    }
    cJSON_Delete(root);
    free(json);
    return s;
}

static void free_refs(ref_set *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->v[i].text);
        free(s->v[i].ids);
    }
    free(s->v);
}

/* Shared fixtures: loading the 6 MB tokenizer.json once per TCase keeps the suite fast. */
static r1_tokenizer_spec *g_spec, *g_spec_v3;
static r1_tokenizer *g_r1, *g_v3;

static r1_tokenizer_spec *load_spec(void)
{
    size_t jl, cl;
    char *json = read_file("tokenizer.json", &jl);
    char *cfg = read_file("tokenizer_config.json", &cl);
    r1_tokenizer_spec *spec = NULL;
    r1_status st = r1_tokenizer__spec_from_json(&spec, json, jl, cfg, cl);
    ck_assert_msg(st == R1_OK, "spec_from_json: %d %s", st, r1_error__message());
    free(json);
    free(cfg);
    return spec;
}

/* DeepSeek-V3's tokenizer.json is R1's with ids 128798/128799 back as special placeholders
 * (verified against the shipped V3 file), so V3 is derived instead of stored. */
static void make_v3(r1_tokenizer_spec *s)
{
    for (uint32_t i = 0; i < s->n_added; i++) {
        r1_tokenizer_added *a = &s->added[i];
        if (a->id != 128798 && a->id != 128799)
            continue;
        char buf[64];
        snprintf(buf, sizeof buf,
                 "<\xef\xbd\x9cplace\xe2\x96\x81holder\xe2\x96\x81no\xe2\x96\x81%d\xef\xbd\x9c>",
                 a->id - 128000);
        free(a->content);
        a->content = strdup(buf);
        a->content_len = (uint32_t)strlen(buf);
        a->special = 1;
        a->normalized = 0;
        /* Not in vocab, so the per-id bytes are the content too: rebuild them. */
    }
    uint64_t total = 0;
    uint32_t *len = malloc(s->n_ids * sizeof *len);
    for (uint32_t i = 0; i < s->n_ids; i++)
        len[i] = (uint32_t)(s->token_off[i + 1] - s->token_off[i]);
    len[128798] = (uint32_t)strlen("<\xef\xbd\x9cplace\xe2\x96\x81holder\xe2\x96\x81no\xe2\x96\x81"
                                   "798\xef\xbd\x9c>");
    len[128799] = len[128798];
    for (uint32_t i = 0; i < s->n_ids; i++)
        total += len[i];
    char *bytes = malloc(total);
    uint64_t *off = malloc((s->n_ids + 1) * sizeof *off);
    off[0] = 0;
    for (uint32_t i = 0; i < s->n_ids; i++) {
        const char *src = s->token_bytes + s->token_off[i];
        if (i == 128798 || i == 128799)
            for (uint32_t k = 0; k < s->n_added; k++)
                if (s->added[k].id == (int32_t)i)
                    src = s->added[k].content;
        memcpy(bytes + off[i], src, len[i]);
        off[i + 1] = off[i] + len[i];
    }
    free(s->token_bytes);
    free(s->token_off);
    s->token_bytes = bytes;
    s->token_off = off;
    free(len);
}

static void setup_tokenizers(void)
{
    g_spec = load_spec();
    ck_assert_int_eq(r1_tokenizer__create(&g_r1, g_spec), R1_OK);
    g_spec_v3 = load_spec();
    make_v3(g_spec_v3);
    r1_status st = r1_tokenizer__create(&g_v3, g_spec_v3);
    ck_assert_msg(st == R1_OK, "v3: %s", r1_error__message());
}

static void teardown_tokenizers(void)
{
    r1_tokenizer__destroy(g_r1);
    r1_tokenizer__destroy(g_v3);
    r1_tokenizer__spec_destroy(g_spec);
    r1_tokenizer__spec_destroy(g_spec_v3);
    g_r1 = g_v3 = NULL;
    g_spec = g_spec_v3 = NULL;
}

static int32_t *encode_all(const r1_tokenizer *tok, const char *t, size_t n, uint32_t flags,
                           size_t *n_out, r1_status *st_out)
{
    size_t need = 0;
    r1_status st = r1_tokenizer__encode(tok, t, n, flags, NULL, 0, &need);
    int32_t *ids = malloc((need + 1) * sizeof *ids);
    if (st == R1_ERR_BUFFER_TOO_SMALL)
        st = r1_tokenizer__encode(tok, t, n, flags, ids, need, &need);
    *n_out = need;
    *st_out = st;
    return ids;
}

static size_t count_matches(const r1_tokenizer *tok, const ref_set *refs, int verbose)
{
    size_t ok = 0;
    for (size_t i = 0; i < refs->n; i++) {
        const ref_case *c = &refs->v[i];
        size_t n;
        r1_status st;
        int32_t *ids = encode_all(tok, c->text, c->len, R1_TOKENIZE_PARSE_SPECIAL, &n, &st);
        int same = st == R1_OK && n == c->n_ids && memcmp(ids, c->ids, n * sizeof *ids) == 0;
        ok += same;
        if (!same && verbose) {
            fprintf(stderr, "MISMATCH #%zu st=%d len=%zu: ", i, st, c->len);
            for (size_t k = 0; k < c->len && k < 60; k++)
                fprintf(stderr, "%02x", (uint8_t)c->text[k]);
            fprintf(stderr, "\n  want:");
            for (size_t k = 0; k < c->n_ids && k < 24; k++)
                fprintf(stderr, " %d", c->ids[k]);
            fprintf(stderr, "\n  got: ");
            for (size_t k = 0; k < n && k < 24; k++)
                fprintf(stderr, " %d", ids[k]);
            fprintf(stderr, "\n");
        }
        free(ids);
    }
    return ok;
}

START_TEST(test_tokenizer_reference_r1)
{
    ref_set refs = load_refs("reference-ids-r1.json");
    ck_assert_uint_eq(refs.n, 62);
    ck_assert_uint_eq(count_matches(g_r1, &refs, 1), refs.n);
    free_refs(&refs);
}
END_TEST

START_TEST(test_tokenizer_reference_v3)
{
    ref_set refs = load_refs("reference-ids-v3.json");
    ck_assert_uint_eq(refs.n, 62);
    ck_assert_uint_eq(count_matches(g_v3, &refs, 1), refs.n);
    free_refs(&refs);
}
END_TEST

START_TEST(test_tokenizer_broad_r1)
{
    ref_set refs = load_refs("broad-ids-r1.json");
    ck_assert_uint_ge(refs.n, 600);
    size_t ok = count_matches(g_r1, &refs, 1);
    fprintf(stderr, "tokenizer broad set: %zu/%zu match\n", ok, refs.n);
    ck_assert_uint_eq(ok, refs.n);
    free_refs(&refs);
}
END_TEST

static void check_roundtrip_set(const char *name)
{
    ref_set refs = load_refs(name);
    for (size_t i = 0; i < refs.n; i++) {
        const ref_case *c = &refs.v[i];
        size_t n, len = 0;
        r1_status st;
        int32_t *ids = encode_all(g_r1, c->text, c->len, R1_TOKENIZE_PARSE_SPECIAL, &n, &st);
        ck_assert_int_eq(st, R1_OK);
        char *out = malloc(c->len + 16);
        st = r1_tokenizer__decode(g_r1, ids, n, 0, out, c->len + 16, &len);
        ck_assert_int_eq(st, R1_OK);
        ck_assert_uint_eq(len, c->len);
        ck_assert(memcmp(out, c->text, len) == 0);
        /* The same without added-token parsing: still a faithful round trip. */
        free(ids);
        ids = encode_all(g_r1, c->text, c->len, 0, &n, &st);
        ck_assert_int_eq(st, R1_OK);
        st = r1_tokenizer__decode(g_r1, ids, n, 0, out, c->len + 16, &len);
        ck_assert_int_eq(st, R1_OK);
        ck_assert_uint_eq(len, c->len);
        ck_assert(memcmp(out, c->text, len) == 0);
        free(out);
        free(ids);
    }
    free_refs(&refs);
}

START_TEST(test_tokenizer_roundtrip)
{
    check_roundtrip_set("reference-ids-r1.json");
    check_roundtrip_set("broad-ids-r1.json");
}
END_TEST

static int valid_utf8(const char *s, size_t n)
{
    const uint8_t *u = (const uint8_t *)s;
    size_t i = 0;
    while (i < n) {
        uint8_t c = u[i];
        size_t need = c < 0x80                 ? 1
                      : c >= 0xC2 && c <= 0xDF ? 2
                      : c >= 0xE0 && c <= 0xEF ? 3
                      : c >= 0xF0 && c <= 0xF4 ? 4
                                               : 0;
        if (!need || i + need > n)
            return 0;
        for (size_t k = 1; k < need; k++)
            if ((u[i + k] & 0xC0) != 0x80)
                return 0;
        if ((c == 0xE0 && u[i + 1] < 0xA0) || (c == 0xED && u[i + 1] > 0x9F) ||
            (c == 0xF0 && u[i + 1] < 0x90) || (c == 0xF4 && u[i + 1] > 0x8F))
            return 0;
        i += need;
    }
    return 1;
}

START_TEST(test_tokenizer_stream)
{
    ref_set refs = load_refs("broad-ids-r1.json");
    r1_tokenizer_stream *st;
    ck_assert_int_eq(r1_tokenizer__stream_create(&st, g_r1, 0), R1_OK);
    for (size_t i = 0; i < refs.n; i++) {
        const ref_case *c = &refs.v[i];
        char *acc = malloc(c->len + 64);
        size_t n_acc = 0;
        char chunk[1024];
        for (size_t k = 0; k < c->n_ids; k++) {
            size_t len = 0;
            r1_status s = r1_tokenizer__stream_push(st, c->ids[k], chunk, 0, &len);
            if (s == R1_ERR_BUFFER_TOO_SMALL) /* nothing consumed: retry with room */
                s = r1_tokenizer__stream_push(st, c->ids[k], chunk, sizeof chunk, &len);
            ck_assert_int_eq(s, R1_OK);
            ck_assert(valid_utf8(chunk, len));
            memcpy(acc + n_acc, chunk, len);
            n_acc += len;
        }
        size_t len = 0;
        ck_assert_int_eq(r1_tokenizer__stream_flush(st, chunk, sizeof chunk, &len), R1_OK);
        ck_assert_uint_eq(len, 0);
        ck_assert_uint_eq(n_acc, c->len);
        ck_assert(memcmp(acc, c->text, n_acc) == 0);
        free(acc);
    }
    /* A split character is held back, then completed; a dangling one flushes as U+FFFD. */
    int32_t b_c3 = r1_tokenizer__token_to_id(g_r1, "\xc3\x83", 2); /* byte 0xC3 */
    int32_t b_a9 = r1_tokenizer__token_to_id(g_r1, "\xc2\xa9", 2); /* byte 0xA9 */
    ck_assert_int_ge(b_c3, 0);
    ck_assert_int_ge(b_a9, 0);
    char out[16];
    size_t len = 99;
    ck_assert_int_eq(r1_tokenizer__stream_push(st, b_c3, out, sizeof out, &len), R1_OK);
    ck_assert_uint_eq(len, 0);
    ck_assert_int_eq(r1_tokenizer__stream_push(st, b_a9, out, sizeof out, &len), R1_OK);
    ck_assert_uint_eq(len, 2);
    ck_assert(memcmp(out, "\xc3\xa9", 2) == 0);
    ck_assert_int_eq(r1_tokenizer__stream_push(st, b_c3, out, sizeof out, &len), R1_OK);
    ck_assert_uint_eq(len, 0);
    ck_assert_int_eq(r1_tokenizer__stream_flush(st, out, 0, &len), R1_ERR_BUFFER_TOO_SMALL);
    ck_assert_uint_eq(len, 3);
    ck_assert_int_eq(r1_tokenizer__stream_flush(st, out, sizeof out, &len), R1_OK);
    ck_assert_uint_eq(len, 3);
    ck_assert(memcmp(out, "\xef\xbf\xbd", 3) == 0);
    /* A byte that can never start a character comes out at once as U+FFFD. */
    int32_t b_ff = r1_tokenizer__token_to_id(g_r1, "\xc3\xbf", 2); /* byte 0xFF */
    ck_assert_int_eq(r1_tokenizer__stream_push(st, b_ff, out, sizeof out, &len), R1_OK);
    ck_assert_uint_eq(len, 3);
    ck_assert_int_eq(r1_tokenizer__stream_push(st, -1, out, sizeof out, &len), R1_ERR_OUT_OF_RANGE);
    ck_assert_int_eq(r1_tokenizer__stream_push(st, 200000, out, sizeof out, &len),
                     R1_ERR_OUT_OF_RANGE);
    free_refs(&refs);
    r1_tokenizer__stream_destroy(st);
}
END_TEST

START_TEST(test_tokenizer_invalid_utf8)
{
    static const char *const bad[] = {
        "\x80",       "a\xc3",    "\xc0\xaf",    "\xed\xa0\x80", "\xf4\x90\x80\x80",
        "ok\xe2\x82", "\xff\xfe", "\xf0\x9f\x98"};
    static const char *const fixed[] = {"\xef\xbf\xbd",
                                        "a\xef\xbf\xbd",
                                        "\xef\xbf\xbd\xef\xbf\xbd",
                                        "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd",
                                        "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd",
                                        "ok\xef\xbf\xbd",
                                        "\xef\xbf\xbd\xef\xbf\xbd",
                                        "\xef\xbf\xbd"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        size_t n = 0;
        int32_t ids[64];
        r1_status st = r1_tokenizer__encode(g_r1, bad[i], strlen(bad[i]), 0, ids, 64, &n);
        ck_assert_int_eq(st, R1_ERR_INVALID_UTF8);
        ck_assert_ptr_nonnull(strstr(r1_error__message(), "byte"));
        st = r1_tokenizer__encode(g_r1, bad[i], strlen(bad[i]), R1_TOKENIZE_REPLACE_INVALID, ids,
                                  64, &n);
        ck_assert_int_eq(st, R1_OK);
        char out[64];
        size_t len;
        ck_assert_int_eq(r1_tokenizer__decode(g_r1, ids, n, 0, out, sizeof out, &len), R1_OK);
        ck_assert_uint_eq(len, strlen(fixed[i]));
        ck_assert(memcmp(out, fixed[i], len) == 0);
    }
    /* Random bytes: an error or a valid encode, never a crash. */
    uint32_t seed = 12345;
    char buf[64];
    int32_t ids[256];
    for (int t = 0; t < 2000; t++) {
        size_t n = (size_t)(t % 60), got;
        for (size_t k = 0; k < n; k++) {
            seed = seed * 1103515245u + 12345u;
            buf[k] = (char)(seed >> 16);
        }
        r1_status st = r1_tokenizer__encode(g_r1, buf, n, 0, ids, 256, &got);
        ck_assert(st == R1_OK || st == R1_ERR_INVALID_UTF8);
        st = r1_tokenizer__encode(g_r1, buf, n, R1_TOKENIZE_REPLACE_INVALID, ids, 256, &got);
        ck_assert_int_eq(st, R1_OK);
    }
}
END_TEST

START_TEST(test_tokenizer_buffers_and_flags)
{
    const char *text = "<\xef\xbd\x9cUser\xef\xbd\x9c>Hi<think>";
    size_t n = 0;
    int32_t ids[64];
    ck_assert_int_eq(
        r1_tokenizer__encode(g_r1, text, strlen(text), R1_TOKENIZE_PARSE_SPECIAL, ids, 1, &n),
        R1_ERR_BUFFER_TOO_SMALL);
    ck_assert_uint_eq(n, 3);
    ck_assert_int_eq(r1_tokenizer__encode(g_r1, text, strlen(text),
                                          R1_TOKENIZE_PARSE_SPECIAL | R1_TOKENIZE_ADD_BOS, ids, 64,
                                          &n),
                     R1_OK);
    ck_assert_uint_eq(n, 4);
    ck_assert_int_eq(ids[0], 0);
    ck_assert_int_eq(ids[1], 128803);
    ck_assert_int_eq(ids[3], 128798);
    /* Plain text: no added token can come out. */
    ck_assert_int_eq(r1_tokenizer__encode(g_r1, text, strlen(text), 0, ids, 64, &n), R1_OK);
    ck_assert_uint_gt(n, 3);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_lt(ids[i], 128000);
    /* Non-special added tokens only: BOS text stays text, <think> is parsed. */
    const char *bos = "<\xef\xbd\x9c"
                      "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c><think>";
    ck_assert_int_eq(
        r1_tokenizer__encode(g_v3, bos, strlen(bos), R1_TOKENIZE_PARSE_SPECIAL, ids, 64, &n),
        R1_OK);
    ck_assert_int_eq(ids[0], 0);
    ck_assert_int_eq(
        r1_tokenizer__encode(g_r1, bos, strlen(bos), R1_TOKENIZE_PARSE_ADDED, ids, 64, &n), R1_OK);
    ck_assert_int_ne(ids[0], 0);
    ck_assert_int_eq(ids[n - 1], 128798);
    /* Decode: capacity, skip special, bad ids. */
    int32_t in[3] = {0, 19923, 1};
    char out[64];
    size_t len;
    ck_assert_int_eq(r1_tokenizer__decode(g_r1, in, 3, 0, out, 2, &len), R1_ERR_BUFFER_TOO_SMALL);
    ck_assert_uint_gt(len, 2);
    ck_assert_int_eq(
        r1_tokenizer__decode(g_r1, in, 3, R1_DETOKENIZE_SKIP_SPECIAL, out, sizeof out, &len),
        R1_OK);
    ck_assert_uint_eq(len, 5);
    ck_assert(memcmp(out, "Hello", 5) == 0);
    int32_t badid[1] = {128815};
    ck_assert_int_eq(r1_tokenizer__decode(g_r1, badid, 1, 0, out, sizeof out, &len),
                     R1_ERR_OUT_OF_RANGE);
    badid[0] = -5;
    ck_assert_int_eq(r1_tokenizer__decode(g_r1, badid, 1, 0, out, sizeof out, &len),
                     R1_ERR_OUT_OF_RANGE);
    ck_assert_int_eq(r1_tokenizer__bos_id(g_r1), 0);
    ck_assert_int_eq(r1_tokenizer__eos_id(g_r1), 1);
    ck_assert_uint_eq(r1_tokenizer__n_ids(g_r1), 128815);
    ck_assert_ptr_nonnull(r1_tokenizer__chat_template(g_r1));
    ck_assert_int_eq(r1_tokenizer__encode(g_r1, "", 0, 0, NULL, 0, &n), R1_OK);
    ck_assert_uint_eq(n, 0);
}
END_TEST

/* Issue 16, found 1: the BPE merge queue was sized by the word's byte count while stale entries
 * stay queued, so ordinary words overflowed it (heap overflow in try_pair). The ids are those of
 * Hugging Face tokenizers 0.23.2 (npm) with this tokenizer.json, encode(text, addSpecial=false).
 * The 16-letter words overflowed the 16-entry queue; the 896-letter word overflowed 1024. */
static const struct {
    const char *text;
    int32_t ids[16];
    size_t n;
} bpe_queue_cases[] = {
    {"jcnerlodevkcvfpr", {78011, 1826, 78, 1184, 88, 29183, 78634, 1253}, 8},
    {"tinnhaldxfvvtzwe", {86, 4702, 8604, 18437, 72, 42122, 20228, 971}, 8},
    {"blakospunjlxpqcf", {3778, 480, 3235, 26275, 78, 66562, 83, 16079}, 8},
    {"feraxitobtxmognu lndontitzqbalmdg",
     {725, 1325, 279, 924, 25104, 79, 3169, 87, 314, 289, 1039, 9208, 83, 7887, 17949, 73},
     16},
    /* The short strings: U+F0000, U+10FFFD, U+FFFE, U+FFFF. */
    {"x\xf3\xb0\x80\x80y", {90, 178, 111, 225, 225, 91}, 6},
    {"\xf4\x8f\xbf\xbd", {179, 240, 126, 124}, 4},
    {"\xef\xbf\xbe", {2779, 125}, 2},
    {"\xef\xbf\xbf", {2779, 126}, 2},
    {"Hi \xf3\xb0\x80\x80\xf4\x8f\xbf\xbd\xef\xbf\xbe\xef\xbf\xbf!",
     {23166, 223, 178, 111, 225, 225, 179, 240, 126, 124, 2779, 125, 2779, 126, 3},
     15},
};

static void check_ids(const r1_tokenizer *tok, const char *text, size_t len, const int32_t *want,
                      size_t n_want)
{
    size_t n;
    r1_status st;
    int32_t *ids = encode_all(tok, text, len, 0, &n, &st);
    ck_assert_msg(st == R1_OK, "encode: %d %s", st, r1_error__message());
    ck_assert_uint_eq(n, n_want);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(ids[i] == want[i], "id %zu: %d, want %d", i, ids[i], want[i]);
    free(ids);
}

START_TEST(test_tokenizer_bpe_queue_bound)
{
    const r1_tokenizer *toks[2] = {g_r1, g_v3};
    for (int t = 0; t < 2; t++) {
        for (size_t i = 0; i < sizeof bpe_queue_cases / sizeof bpe_queue_cases[0]; i++)
            check_ids(toks[t], bpe_queue_cases[i].text, strlen(bpe_queue_cases[i].text),
                      bpe_queue_cases[i].ids, bpe_queue_cases[i].n);
        /* Long words: 56 x "blakospunjlxpqcf" (896 letters) and 900 x "a". */
        char word[901];
        int32_t want[448];
        static const int32_t period[8] = {3778, 480, 3235, 26275, 78, 66562, 83, 16079};
        for (size_t i = 0; i < 896; i++)
            word[i] = "blakospunjlxpqcf"[i % 16];
        for (size_t i = 0; i < 448; i++)
            want[i] = period[i % 8];
        check_ids(toks[t], word, 896, want, 448);
        memset(word, 'a', 900);
        for (size_t i = 0; i < 112; i++)
            want[i] = 89086; /* "aaaaaaaa" */
        want[112] = 39535;   /* "aaaa" */
        check_ids(toks[t], word, 900, want, 113);
    }
    /* Many more words of 9-16 letters (of which about one in 2,000 overflowed the old queue)
     * and words up to 1,100 letters: each must decode back to itself. */
    uint32_t seed = 16;
    char text[1101], back[1101 * 4];
    for (int k = 0; k < 20000; k++) {
        seed = seed * 1103515245u + 12345u;
        size_t len = k < 19900 ? 9 + (seed >> 16) % 8 : 500 + (seed >> 16) % 600;
        for (size_t i = 0; i < len; i++) {
            seed = seed * 1103515245u + 12345u;
            text[i] = (char)('a' + (seed >> 16) % 26);
        }
        size_t n, blen;
        r1_status st;
        int32_t *ids = encode_all(g_r1, text, len, 0, &n, &st);
        ck_assert_int_eq(st, R1_OK);
        ck_assert_int_eq(r1_tokenizer__decode(g_r1, ids, n, 0, back, sizeof back, &blen), R1_OK);
        ck_assert_uint_eq(blen, len);
        ck_assert(memcmp(back, text, len) == 0);
        free(ids);
    }
}
END_TEST

START_TEST(test_tokenizer_blob_roundtrip)
{
    size_t need = 0;
    ck_assert_int_eq(r1_tokenizer__spec_serialize(g_spec, NULL, 0, &need), R1_ERR_BUFFER_TOO_SMALL);
    uint8_t *blob = malloc(need);
    size_t len = 0;
    ck_assert_int_eq(r1_tokenizer__spec_serialize(g_spec, blob, need, &len), R1_OK);
    ck_assert_uint_eq(len, need);
    fprintf(stderr, "tokenizer blob: %zu bytes\n", len);
    r1_tokenizer_spec *back = NULL;
    r1_status st = r1_tokenizer__spec_parse(&back, blob, len);
    ck_assert_msg(st == R1_OK, "%s", r1_error__message());
    r1_tokenizer *tok = NULL;
    ck_assert_int_eq(r1_tokenizer__create(&tok, back), R1_OK);
    ref_set refs = load_refs("broad-ids-r1.json");
    ck_assert_uint_eq(count_matches(tok, &refs, 1), refs.n);
    free_refs(&refs);
    /* Serialising the parsed spec gives the same bytes. */
    uint8_t *again = malloc(need);
    ck_assert_int_eq(r1_tokenizer__spec_serialize(back, again, need, &len), R1_OK);
    ck_assert(memcmp(blob, again, need) == 0);
    free(again);
    r1_tokenizer__destroy(tok);
    r1_tokenizer__spec_destroy(back);
    free(blob);
}
END_TEST

/* A tiny byte-level tokenizer: the 256 byte tokens, plus "Ġt", "he", "Ġthe". */
static r1_tokenizer_spec *tiny_spec(void)
{
    r1_tokenizer_spec *s;
    ck_assert_int_eq(r1_tokenizer__spec_create(&s), R1_OK);
    s->n_ids = 256 + 3 + 1;
    s->token_off = calloc(s->n_ids + 1, sizeof *s->token_off);
    s->in_vocab = calloc(s->n_ids, 1);
    s->token_bytes = malloc(4096);
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; b++) {
        int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
        uint32_t cp = printable ? b : next++;
        char *p = s->token_bytes + s->token_off[b];
        size_t n = cp < 0x80 ? 1 : 2;
        if (n == 1)
            p[0] = (char)cp;
        else {
            p[0] = (char)(0xC0 | (cp >> 6));
            p[1] = (char)(0x80 | (cp & 0x3F));
        }
        s->token_off[b + 1] = s->token_off[b] + n;
        s->in_vocab[b] = 1;
    }
    static const char *const extra[4] = {"\xc4\xa0t", "he", "\xc4\xa0the", "<|x|>"};
    for (uint32_t k = 0; k < 4; k++) {
        size_t n = strlen(extra[k]);
        memcpy(s->token_bytes + s->token_off[256 + k], extra[k], n);
        s->token_off[257 + k] = s->token_off[256 + k] + n;
        s->in_vocab[256 + k] = k < 3;
    }
    s->n_merges = 3;
    s->merges = malloc(6 * sizeof *s->merges);
    /* Ġ is byte 0x20, whose token id is 0x20 here. */
    s->merges[0] = 0x20;
    s->merges[1] = 't';
    s->merges[2] = 'h';
    s->merges[3] = 'e';
    s->merges[4] = 256;
    s->merges[5] = 257;
    s->n_added = 1;
    s->added = calloc(1, sizeof *s->added);
    s->added[0].id = 259;
    s->added[0].content = strdup("<|x|>");
    s->added[0].content_len = 5;
    s->added[0].special = 1;
    s->n_steps = 2;
    s->steps = calloc(2, sizeof *s->steps);
    s->steps[0].kind = R1_TOKENIZER_STEP_SPLIT;
    s->steps[0].is_regex = 1;
    s->steps[0].behavior = R1_TOKENIZER_SPLIT_ISOLATED;
    s->steps[0].pattern = strdup(" ?\\p{L}+|\\s+");
    s->steps[0].pattern_len = (uint32_t)strlen(s->steps[0].pattern);
    s->steps[1].kind = R1_TOKENIZER_STEP_BYTE_LEVEL;
    s->bos_id = 259;
    s->chat_template = strdup("{{ x }}");
    s->chat_template_len = 7;
    return s;
}

START_TEST(test_tokenizer_blob_corrupt)
{
    r1_tokenizer_spec *s = tiny_spec();
    r1_tokenizer *tok = NULL;
    ck_assert_int_eq(r1_tokenizer__create(&tok, s), R1_OK);
    int32_t ids[16];
    size_t n;
    ck_assert_int_eq(
        r1_tokenizer__encode(tok, "a the<|x|>", 10, R1_TOKENIZE_PARSE_SPECIAL, ids, 16, &n), R1_OK);
    ck_assert_uint_eq(n, 3);
    ck_assert_int_eq(ids[0], 'a');
    ck_assert_int_eq(ids[1], 258);
    ck_assert_int_eq(ids[2], 259);
    r1_tokenizer__destroy(tok);
    size_t len;
    ck_assert_int_eq(r1_tokenizer__spec_serialize(s, NULL, 0, &len), R1_ERR_BUFFER_TOO_SMALL);
    uint8_t *blob = malloc(len), *copy = malloc(len);
    ck_assert_int_eq(r1_tokenizer__spec_serialize(s, blob, len, &len), R1_OK);
    r1_tokenizer_spec *back = NULL;
    for (size_t cut = 0; cut < len; cut++) {
        ck_assert_int_eq(r1_tokenizer__spec_parse(&back, blob, cut), R1_ERR_FORMAT);
        ck_assert_ptr_null(back);
    }
    uint32_t seed = 99;
    for (int t = 0; t < 3000; t++) {
        memcpy(copy, blob, len);
        int flips = 1 + t % 3;
        for (int f = 0; f < flips; f++) {
            seed = seed * 1103515245u + 12345u;
            size_t at = (seed >> 8) % len;
            copy[at] ^= (uint8_t)(1u << ((seed >> 4) % 8));
        }
        if (memcmp(copy, blob, len) == 0)
            continue;
        r1_status st = r1_tokenizer__spec_parse(&back, copy, len);
        ck_assert(st == R1_ERR_FORMAT || st == R1_ERR_CHECKSUM || st == R1_ERR_UNSUPPORTED);
    }
    /* With the checksum recomputed, flips reach the payload checks: never a crash. */
    int parsed = 0;
    for (int t = 0; t < 3000; t++) {
        memcpy(copy, blob, len);
        seed = seed * 1103515245u + 12345u;
        size_t at = 20 + (seed >> 8) % (len - 20);
        copy[at] ^= (uint8_t)(1u << ((seed >> 4) % 8));
        uint32_t c = 0xFFFFFFFFu;
        for (size_t i = 20; i < len; i++) {
            c ^= copy[i];
            for (int k = 0; k < 8; k++)
                c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        }
        c ^= 0xFFFFFFFFu;
        copy[16] = (uint8_t)c;
        copy[17] = (uint8_t)(c >> 8);
        copy[18] = (uint8_t)(c >> 16);
        copy[19] = (uint8_t)(c >> 24);
        r1_status st = r1_tokenizer__spec_parse(&back, copy, len);
        if (st == R1_OK) {
            parsed++;
            if (r1_tokenizer__create(&tok, back) == R1_OK) {
                (void)r1_tokenizer__encode(tok, "a the x", 7, R1_TOKENIZE_PARSE_SPECIAL, ids, 16,
                                           &n);
                r1_tokenizer__destroy(tok);
            }
            r1_tokenizer__spec_destroy(back);
            back = NULL;
        } else {
            ck_assert(st == R1_ERR_FORMAT || st == R1_ERR_UNSUPPORTED);
        }
    }
    ck_assert_int_gt(parsed, 0);
    free(blob);
    free(copy);
    r1_tokenizer__spec_destroy(s);
}
END_TEST

/* Issue 16, found 7: a blob (valid CRC) whose vocabulary lacks byte tokens and has no unk token.
 * A word of such bytes BPE-encodes to nothing, and the empty result was cached through
 * memcpy(.., NULL, 0) and NULL + 0 (UBSan), then read back the same way. */
START_TEST(test_tokenizer_blob_missing_bytes)
{
    r1_tokenizer_spec *s;
    ck_assert_int_eq(r1_tokenizer__spec_create(&s), R1_OK);
    s->n_ids = 3;
    s->token_off = calloc(4, sizeof *s->token_off);
    s->in_vocab = calloc(3, 1);
    s->token_bytes = strdup("abab");
    s->token_off[1] = 1;
    s->token_off[2] = 2;
    s->token_off[3] = 4;
    s->in_vocab[0] = s->in_vocab[1] = s->in_vocab[2] = 1;
    s->n_merges = 1;
    s->merges = malloc(2 * sizeof *s->merges);
    s->merges[0] = 0;
    s->merges[1] = 1;
    s->n_steps = 1;
    s->steps = calloc(1, sizeof *s->steps);
    s->steps[0].kind = R1_TOKENIZER_STEP_BYTE_LEVEL;
    size_t len;
    ck_assert_int_eq(r1_tokenizer__spec_serialize(s, NULL, 0, &len), R1_ERR_BUFFER_TOO_SMALL);
    uint8_t *blob = malloc(len);
    ck_assert_int_eq(r1_tokenizer__spec_serialize(s, blob, len, &len), R1_OK);
    r1_tokenizer__spec_destroy(s);
    r1_tokenizer_spec *back = NULL;
    ck_assert_int_eq(r1_tokenizer__spec_parse(&back, blob, len), R1_OK);
    free(blob);
    r1_tokenizer *tok = NULL;
    ck_assert_int_eq(r1_tokenizer__create(&tok, back), R1_OK);
    r1_tokenizer__spec_destroy(back);
    int32_t ids[8];
    size_t n = 99;
    /* Twice: the first call caches the empty word, the second reads it from the cache. */
    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(r1_tokenizer__encode(tok, "zz", 2, 0, ids, 8, &n), R1_OK);
        ck_assert_uint_eq(n, 0);
        ck_assert_int_eq(r1_tokenizer__encode(tok, "zz", 2, 0, NULL, 0, &n), R1_OK);
        ck_assert_uint_eq(n, 0);
    }
    /* Characters without a token are dropped (Hugging Face without unk); the rest merge. */
    ck_assert_int_eq(r1_tokenizer__encode(tok, "azb", 3, 0, ids, 8, &n), R1_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(ids[0], 2);
    r1_tokenizer__destroy(tok);
}
END_TEST

/* Found by fuzz_tokenize: a Split with a literal {"String": ...} pattern was refused
 * ("invalid option bits with PCRE2_LITERAL": PCRE2_UCP was passed along). The ids are Hugging
 * Face tokenizers 0.23.2's for this tokenizer.json. */
START_TEST(test_tokenizer_split_string_pattern)
{
    const char *json =
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2, \"\\u0120\": "
        "3, "
        "\",\": 4, \"\\u0120a\": 5}, \"merges\": [\"a b\", \"\\u0120 a\"]}, \"pre_tokenizer\": "
        "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": "
        "{\"String\": \", \"}, \"behavior\": \"Removed\", \"invert\": false}, {\"type\": "
        "\"Split\", \"pattern\": {\"String\": \"b\"}, \"behavior\": \"MergedWithPrevious\", "
        "\"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
        "\"trim_offsets\": true, \"use_regex\": false}]}}";
    r1_tokenizer_spec *s = NULL;
    ck_assert_int_eq(r1_tokenizer__spec_from_json(&s, json, strlen(json), NULL, 0), R1_OK);
    r1_tokenizer *tok = NULL;
    r1_status st = r1_tokenizer__create(&tok, s);
    ck_assert_msg(st == R1_OK, "create: %s", r1_error__message());
    r1_tokenizer__spec_destroy(s);
    static const struct {
        const char *text;
        int32_t ids[6];
        size_t n;
    } cases[] = {{"ab, ab", {2, 2}, 2},
                 {"a,b, a b", {0, 4, 1, 0, 3, 1}, 6},
                 {", , ab ab,", {2, 3, 2, 4}, 4},
                 {"bbb a", {1, 1, 1, 5}, 4}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_ids(tok, cases[i].text, strlen(cases[i].text), cases[i].ids, cases[i].n);
    r1_tokenizer__destroy(tok);
}
END_TEST

/* Found by fuzz_tokenize: with ignore_merges and add_prefix_space, bpe_word built its vocabulary
 * key in the scratch buffer that held the word itself (the piece with its prefix space), and
 * growing it freed the word (ASan: heap-use-after-free). Ids: Hugging Face tokenizers 0.23.2. */
START_TEST(test_tokenizer_ignore_merges_prefix_space)
{
    const char *json =
        "{\"model\": {\"type\": \"BPE\", \"ignore_merges\": true, \"vocab\": {\"a\": 0, \"b\": 1, "
        "\"c\": 2, \"\\u0120\": 3, \"ab\": 4, \"abc\": 5, \"\\u0120a\": 6, \"\\u0120ab\": 7, "
        "\"\\u0120abcabcabc\": 8}, \"merges\": [\"a b\", \"ab c\", \"\\u0120 a\", \"\\u0120a "
        "b\"]}, \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, "
        "\"trim_offsets\": true, \"use_regex\": false}}";
    r1_tokenizer_spec *s = NULL;
    ck_assert_int_eq(r1_tokenizer__spec_from_json(&s, json, strlen(json), NULL, 0), R1_OK);
    r1_tokenizer *tok = NULL;
    ck_assert_int_eq(r1_tokenizer__create(&tok, s), R1_OK);
    r1_tokenizer__spec_destroy(s);
    static const struct {
        const char *text;
        int32_t ids[8];
        size_t n;
    } cases[] = {{"abcabcabc", {8}, 1},
                 {"abcabcabcabcabc", {3, 5, 5, 5, 5, 5}, 6},
                 {"ab", {7}, 1},
                 {"abcabc abcabcabc", {3, 5, 5, 3, 5, 5, 5}, 7}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_ids(tok, cases[i].text, strlen(cases[i].text), cases[i].ids, cases[i].n);
    r1_tokenizer__destroy(tok);
}
END_TEST

START_TEST(test_tokenizer_json_errors)
{
    r1_tokenizer_spec *s = NULL;
    const char *bad = "{\"model\": ";
    ck_assert_int_eq(r1_tokenizer__spec_from_json(&s, bad, strlen(bad), NULL, 0), R1_ERR_FORMAT);
    const char *norm = "{\"normalizer\": {\"type\": \"NFKC\"}, \"model\": {\"type\": \"BPE\", "
                       "\"vocab\": {\"a\": 0},"
                       " \"merges\": []}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}";
    ck_assert_int_eq(r1_tokenizer__spec_from_json(&s, norm, strlen(norm), NULL, 0),
                     R1_ERR_UNSUPPORTED);
    /* Pre-tokenizers other than Sequence, Split and ByteLevel (which the DeepSeek, Qwen2 and
     * Llama-3 files use) are refused by name. */
    const char *digits = "{\"pre_tokenizer\": {\"type\": \"Digits\", \"individual_digits\": true}, "
                         "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}";
    ck_assert_int_eq(r1_tokenizer__spec_from_json(&s, digits, strlen(digits), NULL, 0),
                     R1_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(r1_error__message(), "'Digits'"));
    const char *wp =
        "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}, \"merges\": []}}";
    ck_assert_int_eq(r1_tokenizer__spec_from_json(&s, wp, strlen(wp), NULL, 0), R1_ERR_UNSUPPORTED);
    /* Both merge spellings; ByteLevel defaults (prefix space, GPT-2 regex). */
    const char *ok[2] = {
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2, \"\xc4\xa0\": "
        "3},"
        " \"merges\": [\"a b\"]}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}",
        "{\"model\": {\"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2, \"\xc4\xa0\": 3},"
        " \"merges\": [[\"a\", \"b\"]]}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}"};
    for (int i = 0; i < 2; i++) {
        r1_status st = r1_tokenizer__spec_from_json(&s, ok[i], strlen(ok[i]), NULL, 0);
        ck_assert_msg(st == R1_OK, "%s", r1_error__message());
        r1_tokenizer *tok;
        ck_assert_int_eq(r1_tokenizer__create(&tok, s), R1_OK);
        int32_t ids[8];
        size_t n;
        ck_assert_int_eq(r1_tokenizer__encode(tok, "ab", 2, 0, ids, 8, &n), R1_OK);
        ck_assert_uint_eq(n, 2);
        ck_assert_int_eq(ids[0], 3);
        ck_assert_int_eq(ids[1], 2);
        r1_tokenizer__destroy(tok);
        r1_tokenizer__spec_destroy(s);
    }
    const char *badmerge = "{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": [\"a c\"]},"
                           " \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}";
    ck_assert_int_eq(r1_tokenizer__spec_from_json(&s, badmerge, strlen(badmerge), NULL, 0),
                     R1_ERR_FORMAT);
}
END_TEST

/* NFC as Hugging Face's tokenizers 0.23.2 compute it (outputs from its NFC normalizer): canonical
 * order and composition of Unicode 9.0, and every later character (U+1DF6, U+16D63, U+16D67
 * here) an inert starter, as its Unicode 9.0 tables have them. utf8proc alone reorders
 * "a U+1DF6 U+0316" and composes U+16D63 U+16D67. */
START_TEST(test_tokenizer_nfc_hf)
{
    static const struct {
        const char *in, *out; /* out NULL: unchanged */
    } cases[] = {
        {"e\xcc\x81", "\xc3\xa9"},
        {"a\xcc\x81\xcc\x96", "\xc3\xa1\xcc\x96"},
        {"a\xe1\xb7\xb6\xcc\x96", NULL},
        {"\xe1\xb7\xb6\xcc\x96\xcc\x81", NULL},
        {"\xe1\x84\x80\xe1\x85\xa1\xe1\x86\xa8", "\xea\xb0\x81"},
        {"\xe2\x84\xab", "\xc3\x85"},
        {"\xcd\x84", "\xcc\x88\xcc\x81"},
        {"A\xcc\x8a\xcc\xa3", "\xe1\xba\xa0\xcc\x8a"},
        {"\xf0\x96\xb5\xa3\xf0\x96\xb5\xa7", NULL},
        {"x\xcd\x85\xcc\xb4y", "x\xcc\xb4\xcd\x85y"},
        {"\xea\xb0\x80\xe1\x86\xa8", "\xea\xb0\x81"},
        {"\xe0\xaf\x86\xe0\xae\xbe", "\xe0\xaf\x8a"},
        {"plain ascii", NULL},
        {"\xc3\xa9t\xc3\xa9", NULL},
        {"e\xcc\x81\xe1\xb7\xb6\xcc\x81", "\xc3\xa9\xe1\xb7\xb6\xcc\x81"},
        {"", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out = (char *)1;
        size_t n = 12345, in_len = strlen(cases[i].in);
        ck_assert_int_eq(r1_tokenizer__nfc(cases[i].in, in_len, &out, &n), R1_OK);
        if (!cases[i].out) {
            ck_assert_msg(out == NULL && n == in_len, "case %zu changed", i);
            continue;
        }
        ck_assert_msg(out != NULL, "case %zu unchanged", i);
        ck_assert_uint_eq(n, strlen(cases[i].out));
        ck_assert_msg(memcmp(out, cases[i].out, n) == 0, "case %zu", i);
        free(out);
    }
}
END_TEST

/* The normalizers tokenizer.json may declare: none, NFC, Sequences of them; others are refused
 * by name. */
START_TEST(test_tokenizer_json_normalizers)
{
    static const struct {
        const char *normalizer;
        r1_status st;
        int kind;
        const char *msg; /* in the error message */
    } cases[] = {
        {"null", R1_OK, R1_TOKENIZER_NORM_NONE, NULL},
        {"{\"type\": \"Sequence\", \"normalizers\": []}", R1_OK, R1_TOKENIZER_NORM_NONE, NULL},
        {"{\"type\": \"NFC\"}", R1_OK, R1_TOKENIZER_NORM_NFC, NULL},
        {"{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFC\"}]}", R1_OK,
         R1_TOKENIZER_NORM_NFC, NULL},
        {"{\"type\": \"NFD\"}", R1_ERR_UNSUPPORTED, 0, "'NFD'"},
        {"{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFC\"}, {\"type\": "
         "\"Lowercase\"}]}",
         R1_ERR_UNSUPPORTED, 0, "'Lowercase'"},
        {"{\"type\": \"Sequence\", \"normalizers\": [null]}", R1_ERR_FORMAT, 0, "null"},
        {"{\"normalizers\": []}", R1_ERR_FORMAT, 0, "without a type"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char json[512];
        snprintf(json, sizeof json,
                 "{\"normalizer\": %s, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, "
                 "\"merges\": []}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}",
                 cases[i].normalizer);
        r1_tokenizer_spec *s = NULL;
        r1_status st = r1_tokenizer__spec_from_json(&s, json, strlen(json), NULL, 0);
        ck_assert_msg(st == cases[i].st, "case %zu: %d %s", i, st, r1_error__message());
        if (st == R1_OK) {
            ck_assert_int_eq(s->normalizer, cases[i].kind);
            r1_tokenizer__spec_destroy(s);
        } else {
            ck_assert_ptr_null(s);
            ck_assert_msg(strstr(r1_error__message(), cases[i].msg) != NULL, "case %zu: %s", i,
                          r1_error__message());
        }
    }
}
END_TEST

static void encode_expect(const r1_tokenizer *tok, const char *text, const int32_t *want,
                          size_t n_want)
{
    int32_t ids[16];
    size_t n = 0;
    ck_assert_int_eq(r1_tokenizer__encode(tok, text, strlen(text), 0, ids, 16, &n), R1_OK);
    ck_assert_uint_eq(n, n_want);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(ids[i], want[i]);
}

/* A spec with NFC normalizes the text before pre-tokenizing (byte tokens: id = byte), keeps
 * added tokens that skip normalization apart from it, and its blob (version 2) keeps the
 * normalizer; a spec without one still writes version 1. */
START_TEST(test_tokenizer_nfc_encode_and_blob)
{
    r1_tokenizer_spec *s = tiny_spec();
    r1_tokenizer *plain = NULL, *nfc = NULL;
    ck_assert_int_eq(r1_tokenizer__create(&plain, s), R1_OK);
    s->normalizer = R1_TOKENIZER_NORM_NFC;
    ck_assert_int_eq(r1_tokenizer__create(&nfc, s), R1_OK);
    static const int32_t decomposed[] = {'x', 'e', 0xCC, 0x81}, composed[] = {'x', 0xC3, 0xA9};
    encode_expect(plain, "xe\xcc\x81", decomposed, 4);
    encode_expect(nfc, "xe\xcc\x81", composed, 3);
    /* The added token <|x|> (normalized: false) splits the text before NFC: the mark after it
     * has no starter to compose with. */
    int32_t ids[16];
    size_t n = 0;
    ck_assert_int_eq(
        r1_tokenizer__encode(nfc, "e<|x|>\xcc\x81", 8, R1_TOKENIZE_PARSE_SPECIAL, ids, 16, &n),
        R1_OK);
    ck_assert_uint_eq(n, 4);
    ck_assert_int_eq(ids[0], 'e');
    ck_assert_int_eq(ids[1], 259);
    ck_assert_int_eq(ids[2], 0xCC);
    ck_assert_int_eq(ids[3], 0x81);
    r1_tokenizer__destroy(plain);
    r1_tokenizer__destroy(nfc);

    uint8_t blob[8192];
    size_t len = 0;
    ck_assert_int_eq(r1_tokenizer__spec_serialize(s, blob, sizeof blob, &len), R1_OK);
    ck_assert_int_eq(blob[4], 2); /* version 2: it has a normalizer */
    r1_tokenizer_spec *back = NULL;
    ck_assert_int_eq(r1_tokenizer__spec_parse(&back, blob, len), R1_OK);
    ck_assert_int_eq(back->normalizer, R1_TOKENIZER_NORM_NFC);
    ck_assert_int_eq(r1_tokenizer__create(&nfc, back), R1_OK);
    encode_expect(nfc, "xe\xcc\x81", composed, 3);
    r1_tokenizer__destroy(nfc);
    r1_tokenizer__spec_destroy(back);
    /* A version 1 header on it (the version is outside the checksummed payload) is malformed. */
    blob[4] = 1;
    ck_assert_int_eq(r1_tokenizer__spec_parse(&back, blob, len), R1_ERR_FORMAT);
    s->normalizer = R1_TOKENIZER_NORM_NONE;
    ck_assert_int_eq(r1_tokenizer__spec_serialize(s, blob, sizeof blob, &len), R1_OK);
    ck_assert_int_eq(blob[4], 1);
    blob[4] = 2; /* and version 2 without a normalizer */
    ck_assert_int_eq(r1_tokenizer__spec_parse(&back, blob, len), R1_ERR_FORMAT);
    blob[4] = 3;
    ck_assert_int_eq(r1_tokenizer__spec_parse(&back, blob, len), R1_ERR_UNSUPPORTED);
    s->normalizer = 2;
    ck_assert_int_eq(r1_tokenizer__spec_validate(s), R1_ERR_FORMAT);
    r1_tokenizer__spec_destroy(s);
}
END_TEST

/* The distills' test tokenizers (test/ref/tokenizer/make_distill_tokenizers.js): [0] Qwen, [1]
 * Llama. */
static r1_tokenizer_spec *g_distill_spec[2];
static r1_tokenizer *g_distill[2];

static void setup_distill(void)
{
    static const char *const dirs[2] = {"distill-qwen", "distill-llama"};
    for (int d = 0; d < 2; d++) {
        char name[128];
        size_t jl, cl;
        snprintf(name, sizeof name, "%s/tokenizer.json.zst", dirs[d]);
        char *json = read_zstd(name, &jl);
        snprintf(name, sizeof name, "%s/tokenizer_config.json", dirs[d]);
        char *cfg = read_file(name, &cl);
        r1_status st = r1_tokenizer__spec_from_json(&g_distill_spec[d], json, jl, cfg, cl);
        ck_assert_msg(st == R1_OK, "%s: %s", dirs[d], r1_error__message());
        ck_assert_int_eq(r1_tokenizer__create(&g_distill[d], g_distill_spec[d]), R1_OK);
        free(json);
        free(cfg);
    }
}

static void teardown_distill(void)
{
    for (int d = 0; d < 2; d++) {
        r1_tokenizer__destroy(g_distill[d]);
        r1_tokenizer__spec_destroy(g_distill_spec[d]);
        g_distill[d] = NULL;
        g_distill_spec[d] = NULL;
    }
}

/* What the chat code and the model loader rely on: ids, BOS/EOS, which tokens are special. */
START_TEST(test_tokenizer_distill_tokens)
{
    static const struct {
        uint32_t n_ids;
        int32_t bos, eos, user, assistant, think, end_think;
        uint8_t normalizer;
    } want[2] = {{151665, 151646, 151643, 151644, 151645, 151648, 151649, R1_TOKENIZER_NORM_NFC},
                 {128256, 128000, 128001, 128011, 128012, 128013, 128014, R1_TOKENIZER_NORM_NONE}};
    for (int d = 0; d < 2; d++) {
        const r1_tokenizer *tok = g_distill[d];
        ck_assert_uint_eq(r1_tokenizer__n_ids(tok), want[d].n_ids);
        ck_assert_int_eq(r1_tokenizer__bos_id(tok), want[d].bos);
        ck_assert_int_eq(r1_tokenizer__eos_id(tok), want[d].eos);
        ck_assert_int_eq(g_distill_spec[d]->add_bos, 1);
        ck_assert_int_eq(g_distill_spec[d]->normalizer, want[d].normalizer);
        ck_assert_ptr_nonnull(r1_tokenizer__chat_template(tok));
        static const char *const names[4] = {"<\xef\xbd\x9cUser\xef\xbd\x9c>",
                                             "<\xef\xbd\x9c"
                                             "Assistant\xef\xbd\x9c>",
                                             "<think>", "</think>"};
        const int32_t ids[4] = {want[d].user, want[d].assistant, want[d].think, want[d].end_think};
        for (int k = 0; k < 4; k++) {
            ck_assert_int_eq(r1_tokenizer__token_to_id(tok, names[k], strlen(names[k])), ids[k]);
            ck_assert_int_eq(r1_tokenizer__is_special(tok, ids[k]), 0);
        }
        ck_assert_int_eq(r1_tokenizer__is_special(tok, want[d].bos), 1);
        ck_assert_int_eq(r1_tokenizer__is_special(tok, want[d].eos), 1);
    }
}
END_TEST

/* Ids of Hugging Face's tokenizers 0.23.2 (addSpecialTokens false) for both distills: Qwen2
 * splits digits one at a time and normalizes to NFC (e + U+0301 is é; U+1DF6, new since
 * Unicode 9.0, stays after U+0316), Llama-3 groups digits by three and does not normalize. */
START_TEST(test_tokenizer_distill_reference_ids)
{
    static const char *const texts[4] = {
        "12345 apples, 3.14159!",
        "<\xef\xbd\x9cUser\xef\xbd\x9c>What is 1+1?<\xef\xbd\x9c"
        "Assistant\xef\xbd\x9c><think>\n",
        "I'LL e\xcc\x81te\xcc\x81 caf\xc3\xa9 \xea\xb0\x80\xe1\x86\xa8 x\xe1\xb7\xb6\xcc\x96",
        "  \n\n\tdon't \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80"};
    static const struct {
        int32_t ids[20];
        size_t n;
    } want[2][4] = {
        {{{16, 17, 18, 19, 20, 40676, 11, 220, 18, 13, 16, 19, 16, 20, 24, 0}, 16},
         {{151644, 3838, 374, 220, 16, 10, 16, 30, 151645, 151648, 198}, 11},
         {{40, 6, 4086, 23639, 51950, 126804, 856, 157, 115, 114, 136, 244}, 12},
         {{18611, 2698, 263, 944, 72858, 16744, 90316}, 7}},
        {{{4513, 1774, 41776, 11, 220, 18, 13, 9335, 2946, 0}, 10},
         {{128011, 3923, 374, 220, 16, 10, 16, 30, 128012, 128013, 198}, 11},
         {{40, 6, 4178, 384, 54939, 668, 54939, 53050, 36609, 157, 228, 101, 865, 157, 115, 114,
           136, 244},
          18},
         {{19124, 2765, 263, 956, 73958, 17161, 91416}, 7}},
    };
    for (int d = 0; d < 2; d++)
        for (int k = 0; k < 4; k++) {
            size_t n = 0;
            r1_status st;
            int32_t *ids = encode_all(g_distill[d], texts[k], strlen(texts[k]),
                                      R1_TOKENIZE_PARSE_SPECIAL, &n, &st);
            ck_assert_int_eq(st, R1_OK);
            ck_assert_msg(n == want[d][k].n, "distill %d text %d: %zu ids", d, k, n);
            for (size_t i = 0; i < n; i++)
                ck_assert_msg(ids[i] == want[d][k].ids[i], "distill %d text %d id %zu: %d", d, k, i,
                              ids[i]);
            free(ids);
        }
}
END_TEST

/* Decode gives the text back (Qwen: its NFC), with BOS added and skipped, whole and streamed. */
START_TEST(test_tokenizer_distill_decode)
{
    const char *text = "Caf\xc3\xa9 e\xcc\x81 \xe4\xb8\xad 123 <think>\nok</think>";
    const char *nfc = "Caf\xc3\xa9 \xc3\xa9 \xe4\xb8\xad 123 <think>\nok</think>";
    for (int d = 0; d < 2; d++) {
        const char *want = d == 0 ? nfc : text;
        size_t n = 0, len = 0;
        r1_status est;
        int32_t *ids = encode_all(g_distill[d], text, strlen(text),
                                  R1_TOKENIZE_ADD_BOS | R1_TOKENIZE_PARSE_SPECIAL, &n, &est);
        ck_assert_int_eq(est, R1_OK);
        ck_assert_int_eq(ids[0], r1_tokenizer__bos_id(g_distill[d]));
        char buf[256];
        ck_assert_int_eq(r1_tokenizer__decode(g_distill[d], ids, n, R1_DETOKENIZE_SKIP_SPECIAL, buf,
                                              sizeof buf, &len),
                         R1_OK);
        ck_assert_uint_eq(len, strlen(want));
        ck_assert(memcmp(buf, want, len) == 0);
        r1_tokenizer_stream *st = NULL;
        ck_assert_int_eq(r1_tokenizer__stream_create(&st, g_distill[d], R1_DETOKENIZE_SKIP_SPECIAL),
                         R1_OK);
        size_t acc = 0, m = 0;
        for (size_t i = 0; i < n; i++) {
            ck_assert_int_eq(r1_tokenizer__stream_push(st, ids[i], buf + acc, sizeof buf - acc, &m),
                             R1_OK);
            acc += m;
        }
        ck_assert_int_eq(r1_tokenizer__stream_flush(st, buf + acc, sizeof buf - acc, &m), R1_OK);
        acc += m;
        ck_assert_uint_eq(acc, strlen(want));
        ck_assert(memcmp(buf, want, acc) == 0);
        r1_tokenizer__stream_destroy(st);
        free(ids);
    }
}
END_TEST

/* The blob (what a .r1m stores) holds the distills' specs exactly, normalizer included. */
START_TEST(test_tokenizer_distill_blob)
{
    for (int d = 0; d < 2; d++) {
        size_t need = 0, len = 0;
        ck_assert_int_eq(r1_tokenizer__spec_serialize(g_distill_spec[d], NULL, 0, &need),
                         R1_ERR_BUFFER_TOO_SMALL);
        uint8_t *blob = malloc(need), *again = malloc(need);
        ck_assert_int_eq(r1_tokenizer__spec_serialize(g_distill_spec[d], blob, need, &len), R1_OK);
        ck_assert_int_eq(blob[4], d == 0 ? 2 : 1);
        r1_tokenizer_spec *back = NULL;
        ck_assert_int_eq(r1_tokenizer__spec_parse(&back, blob, len), R1_OK);
        ck_assert_int_eq(back->normalizer, g_distill_spec[d]->normalizer);
        ck_assert_int_eq(r1_tokenizer__spec_serialize(back, again, need, &len), R1_OK);
        ck_assert(memcmp(blob, again, need) == 0);
        fprintf(stderr, "tokenizer blob (distill %s): %zu bytes\n", d == 0 ? "qwen" : "llama", len);
        r1_tokenizer__spec_destroy(back);
        free(blob);
        free(again);
    }
}
END_TEST

/* Added tokens matched in normalized text are matched by their normalized content, as HF
 * normalizes them when it builds its added vocabulary; the others by their content as written.
 * Ids: Hugging Face tokenizers 0.23.2 on the same tokenizer (byte tokens, NFC, "e U+0301"
 * normalized, "A U+030A" not). */
START_TEST(test_tokenizer_nfc_added_tokens)
{
    r1_tokenizer_spec *s = tiny_spec();
    static const char *const extra[2] = {"e\xcc\x81", "A\xcc\x8a"};
    s->n_ids = 262;
    s->token_off = realloc(s->token_off, (s->n_ids + 1) * sizeof *s->token_off);
    s->in_vocab = realloc(s->in_vocab, s->n_ids);
    s->added = realloc(s->added, 3 * sizeof *s->added);
    for (uint32_t k = 0; k < 2; k++) {
        uint32_t id = 260 + k;
        size_t n = strlen(extra[k]);
        memcpy(s->token_bytes + s->token_off[id], extra[k], n);
        s->token_off[id + 1] = s->token_off[id] + n;
        s->in_vocab[id] = 0;
        r1_tokenizer_added *a = &s->added[1 + k];
        memset(a, 0, sizeof *a);
        a->id = (int32_t)id;
        a->content = strdup(extra[k]);
        a->content_len = (uint32_t)n;
        a->normalized = k == 0;
    }
    s->n_added = 3;
    s->normalizer = R1_TOKENIZER_NORM_NFC;
    r1_tokenizer *tok = NULL;
    ck_assert_int_eq(r1_tokenizer__create(&tok, s), R1_OK);
    static const struct {
        const char *text;
        int32_t ids[4];
        size_t n;
    } cases[] = {{"xe\xcc\x81y", {'x', 260, 'y'}, 3},
                 {"x\xc3\xa9y", {'x', 260, 'y'}, 3},
                 {"A\xcc\x8a", {261}, 1},
                 {"\xc3\x85", {0xC3, 0x85}, 2},
                 {"\xe2\x84\xab", {0xC3, 0x85}, 2}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int32_t ids[8];
        size_t n = 0;
        ck_assert_int_eq(r1_tokenizer__encode(tok, cases[i].text, strlen(cases[i].text),
                                              R1_TOKENIZE_PARSE_SPECIAL, ids, 8, &n),
                         R1_OK);
        ck_assert_msg(n == cases[i].n, "case %zu: %zu ids", i, n);
        for (size_t j = 0; j < n; j++)
            ck_assert_msg(ids[j] == cases[i].ids[j], "case %zu id %zu: %d", i, j, ids[j]);
    }
    r1_tokenizer__destroy(tok);
    r1_tokenizer__spec_destroy(s);
}
END_TEST

static Suite *tokenizer_suite(void)
{
    Suite *s = suite_create("tokenizer");
    TCase *real = tcase_create("deepseek");
    /* Unchecked: parse the 6 MB tokenizer.json once per TCase, not once per test. */
    tcase_add_unchecked_fixture(real, setup_tokenizers, teardown_tokenizers);
    tcase_set_timeout(real, 120);
    tcase_add_test(real, test_tokenizer_reference_r1);
    tcase_add_test(real, test_tokenizer_reference_v3);
    tcase_add_test(real, test_tokenizer_broad_r1);
    tcase_add_test(real, test_tokenizer_roundtrip);
    tcase_add_test(real, test_tokenizer_stream);
    tcase_add_test(real, test_tokenizer_invalid_utf8);
    tcase_add_test(real, test_tokenizer_buffers_and_flags);
    tcase_add_test(real, test_tokenizer_blob_roundtrip);
    tcase_add_test(real, test_tokenizer_bpe_queue_bound);
    suite_add_tcase(s, real);
    TCase *blob = tcase_create("synthetic");
    tcase_set_timeout(blob, 60);
    tcase_add_test(blob, test_tokenizer_blob_corrupt);
    tcase_add_test(blob, test_tokenizer_json_errors);
    tcase_add_test(blob, test_tokenizer_blob_missing_bytes);
    tcase_add_test(blob, test_tokenizer_split_string_pattern);
    tcase_add_test(blob, test_tokenizer_ignore_merges_prefix_space);
    tcase_add_test(blob, test_tokenizer_nfc_hf);
    tcase_add_test(blob, test_tokenizer_json_normalizers);
    tcase_add_test(blob, test_tokenizer_nfc_encode_and_blob);
    tcase_add_test(blob, test_tokenizer_nfc_added_tokens);
    suite_add_tcase(s, blob);
    TCase *distill = tcase_create("distill");
    tcase_add_unchecked_fixture(distill, setup_distill, teardown_distill);
    tcase_set_timeout(distill, 120);
    tcase_add_test(distill, test_tokenizer_distill_tokens);
    tcase_add_test(distill, test_tokenizer_distill_reference_ids);
    tcase_add_test(distill, test_tokenizer_distill_decode);
    tcase_add_test(distill, test_tokenizer_distill_blob);
    suite_add_tcase(s, distill);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(tokenizer_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
