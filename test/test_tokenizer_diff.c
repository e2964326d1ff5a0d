/* test_tokenizer_diff.c: libr1's tokenizers vs Hugging Face's ids on the differential corpus. */
/*
 * test/data/tokenizer/diff-corpus.bin.zst comes from test/ref/tokenizer/generate_diff.js: 25,000+
 * seeded strings over every Unicode plane and category, long words, whitespace runs, emoji and
 * added tokens in text, with the ids Hugging Face's Rust tokenizers library gives for DeepSeek-R1
 * and DeepSeek-V3 in three modes (every added token parsed, only non-special ones, none).
 * distill-diff-corpus.bin.zst (generate_diff_distill.js) has the same strings plus the distills'
 * added tokens and text around Unicode normalisation, with Hugging Face's ids for the
 * R1-Distill-Qwen (Qwen2.5 + NFC) and R1-Distill-Llama (Llama-3.1) tokenizers of
 * test/data/tokenizer/distill-*, and Hugging Face's decode wherever that is not the string itself
 * (NFC). Every string must give exactly those ids, and decoding them must give Hugging Face's
 * text back.
 */
#include "error.h"
#include "tokenizer.h"

#include <check.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "tokenizer_testutil.h"

#define N_TOKS    4 /* DeepSeek-R1, DeepSeek-V3, R1-Distill-Qwen, R1-Distill-Llama */
#define N_CORPORA 2 /* DeepSeek's, the distills' */

/* Parsed corpus: strings point into the decompressed buffer. */
typedef struct diff_ids {
    const uint8_t *p; /* n little-endian u32 ids */
    uint32_t n;
} diff_ids;

typedef struct diff_string {
    const char *text;
    uint32_t len, kind;
    diff_ids *ids; /* one per set */
} diff_string;

/* Hugging Face's decode of a set's ids where it is not the string itself. */
typedef struct diff_decoded {
    const char *text;
    uint32_t len;
} diff_decoded;

typedef struct diff_corpus {
    uint8_t *raw;
    size_t raw_len;
    uint32_t n_sets, n_kinds, n;
    char **set_names, **kind_names;
    diff_string *s;
    diff_ids *all_ids;
    diff_decoded *decoded; /* n_sets x n; text NULL: the string itself */
} diff_corpus;

typedef struct reader {
    const uint8_t *p, *end;
} reader;

static uint32_t rd_u32(reader *r)
{
    ck_assert_msg(r->end - r->p >= 4, "corpus truncated");
    uint32_t v = (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 |
                 (uint32_t)r->p[3] << 24;
    r->p += 4;
    return v;
}

static const uint8_t *rd_bytes(reader *r, size_t n)
{
    ck_assert_msg((size_t)(r->end - r->p) >= n, "corpus truncated");
    const uint8_t *p = r->p;
    r->p += n;
    return p;
}

static char *rd_name(reader *r)
{
    uint32_t n = rd_u32(r);
    const uint8_t *p = rd_bytes(r, n);
    char *s = malloc(n + 1u);
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

static int32_t id_at(const diff_ids *d, uint32_t i)
{
    const uint8_t *p = d->p + 4u * i;
    return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                     (uint32_t)p[3] << 24);
}

static diff_corpus g_corpus[N_CORPORA];
static const char *const corpus_files[N_CORPORA] = {"diff-corpus.bin.zst",
                                                    "distill-diff-corpus.bin.zst"};

static void load_corpus(diff_corpus *c, const char *file)
{
    c->raw = (uint8_t *)read_zstd(file, &c->raw_len);
    reader r = {c->raw, c->raw + c->raw_len};
    ck_assert_msg(memcmp(rd_bytes(&r, 8), "R1TOKDF1", 8) == 0, "bad corpus magic");
    c->n_sets = rd_u32(&r);
    c->n_kinds = rd_u32(&r);
    c->n = rd_u32(&r);
    ck_assert_uint_le(c->n_sets, 64);
    ck_assert_uint_le(c->n_kinds, 1024);
    c->set_names = calloc(c->n_sets, sizeof *c->set_names);
    c->kind_names = calloc(c->n_kinds, sizeof *c->kind_names);
    for (uint32_t i = 0; i < c->n_sets; i++)
        c->set_names[i] = rd_name(&r);
    for (uint32_t i = 0; i < c->n_kinds; i++)
        c->kind_names[i] = rd_name(&r);
    c->s = calloc(c->n, sizeof *c->s);
    c->all_ids = calloc((size_t)c->n * c->n_sets, sizeof *c->all_ids);
    ck_assert(c->s && c->all_ids);
    for (uint32_t i = 0; i < c->n; i++) {
        diff_string *s = &c->s[i];
        s->kind = rd_u32(&r);
        ck_assert_uint_lt(s->kind, c->n_kinds);
        s->len = rd_u32(&r);
        s->text = (const char *)rd_bytes(&r, s->len);
        s->ids = &c->all_ids[(size_t)i * c->n_sets];
        for (uint32_t k = 0; k < c->n_sets; k++) {
            uint32_t n = rd_u32(&r);
            if (n & 0x80000000u) {
                uint32_t same = n & 0x7fffffffu;
                ck_assert_uint_lt(same, k);
                s->ids[k] = s->ids[same];
            } else {
                s->ids[k].n = n;
                s->ids[k].p = rd_bytes(&r, (size_t)n * 4u);
            }
        }
    }
    c->decoded = calloc((size_t)c->n * c->n_sets, sizeof *c->decoded);
    ck_assert_ptr_nonnull(c->decoded);
    if (r.p != r.end) { /* the decode trailer (generate_diff_distill.js) */
        ck_assert_msg(memcmp(rd_bytes(&r, 8), "R1TOKDEC", 8) == 0, "trailing bytes in %s", file);
        uint32_t n_dec = rd_u32(&r);
        for (uint32_t d = 0; d < n_dec; d++) {
            uint32_t set = rd_u32(&r), m = rd_u32(&r);
            ck_assert_uint_lt(set, c->n_sets);
            for (uint32_t j = 0; j < m; j++) {
                uint32_t i = rd_u32(&r);
                ck_assert_uint_lt(i, c->n);
                diff_decoded *dd = &c->decoded[(size_t)set * c->n + i];
                dd->len = rd_u32(&r);
                dd->text = (const char *)rd_bytes(&r, dd->len);
            }
        }
    }
    ck_assert_msg(r.p == r.end, "trailing bytes in %s", file);
}

static void free_corpus(diff_corpus *c)
{
    for (uint32_t i = 0; i < c->n_sets; i++)
        free(c->set_names[i]);
    for (uint32_t i = 0; i < c->n_kinds; i++)
        free(c->kind_names[i]);
    free(c->set_names);
    free(c->kind_names);
    free(c->s);
    free(c->all_ids);
    free(c->decoded);
    free(c->raw);
    memset(c, 0, sizeof *c);
}

/* Tokenizers: R1 from test/data; V3 is R1's file with ids 128798/128799 turned back into the
 * special placeholders V3 ships (generate_diff.js checks that against the real V3 file), made
 * at the JSON level so the tokenizer.json loader sees exactly V3's content; the distills' from
 * test/data/tokenizer/distill-*. */
static const char *const tok_names[N_TOKS] = {"r1", "v3", "qwen", "llama"};
static const int tok_corpus[N_TOKS] = {0, 0, 1, 1};
static r1_tokenizer *g_tok[N_TOKS];

static char *v3_json(const char *r1_json, size_t len, size_t *len_out)
{
    cJSON *root = cJSON_ParseWithLength(r1_json, len);
    ck_assert_ptr_nonnull(root);
    cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    ck_assert(cJSON_IsArray(added));
    int changed = 0;
    cJSON *a;
    cJSON_ArrayForEach(a, added)
    {
        int id = cJSON_GetObjectItemCaseSensitive(a, "id")->valueint;
        if (id != 128798 && id != 128799)
            continue;
        char buf[64];
        snprintf(buf, sizeof buf,
                 "<\xef\xbd\x9cplace\xe2\x96\x81holder\xe2\x96\x81no\xe2\x96\x81%d\xef\xbd\x9c>",
                 id - 128000);
        ck_assert(cJSON_ReplaceItemInObjectCaseSensitive(a, "content", cJSON_CreateString(buf)));
        ck_assert(cJSON_ReplaceItemInObjectCaseSensitive(a, "normalized", cJSON_CreateFalse()));
        ck_assert(cJSON_ReplaceItemInObjectCaseSensitive(a, "special", cJSON_CreateTrue()));
        changed++;
    }
    ck_assert_int_eq(changed, 2);
    char *out = cJSON_PrintUnformatted(root);
    ck_assert_ptr_nonnull(out);
    cJSON_Delete(root);
    *len_out = strlen(out);
    return out;
}

static r1_tokenizer *make_tok(const char *json, size_t jl, const char *cfg, size_t cl)
{
    r1_tokenizer_spec *spec = NULL;
    r1_status st = r1_tokenizer__spec_from_json(&spec, json, jl, cfg, cl);
    ck_assert_msg(st == R1_OK, "spec_from_json: %d %s", st, r1_error__message());
    r1_tokenizer *tok = NULL;
    st = r1_tokenizer__create(&tok, spec);
    ck_assert_msg(st == R1_OK, "create: %d %s", st, r1_error__message());
    r1_tokenizer__spec_destroy(spec);
    return tok;
}

static void setup(void)
{
    size_t jl, cl, vl;
    char *json = read_file("tokenizer.json", &jl);
    char *cfg = read_file("tokenizer_config.json", &cl);
    g_tok[0] = make_tok(json, jl, cfg, cl);
    char *v3 = v3_json(json, jl, &vl);
    g_tok[1] = make_tok(v3, vl, cfg, cl);
    free(v3);
    free(json);
    free(cfg);
    static const char *const distill_dirs[2] = {"distill-qwen", "distill-llama"};
    for (int d = 0; d < 2; d++) {
        char name[128];
        snprintf(name, sizeof name, "%s/tokenizer.json.zst", distill_dirs[d]);
        json = read_zstd(name, &jl);
        snprintf(name, sizeof name, "%s/tokenizer_config.json", distill_dirs[d]);
        cfg = read_file(name, &cl);
        g_tok[2 + d] = make_tok(json, jl, cfg, cl);
        free(json);
        free(cfg);
    }
    for (int k = 0; k < N_CORPORA; k++)
        load_corpus(&g_corpus[k], corpus_files[k]);
}

static void teardown(void)
{
    for (int t = 0; t < N_TOKS; t++) {
        r1_tokenizer__destroy(g_tok[t]);
        g_tok[t] = NULL;
    }
    for (int k = 0; k < N_CORPORA; k++)
        free_corpus(&g_corpus[k]);
}

/* A set name is "<tokenizer> <mode>"; the mode picks libr1's flags (see generate_diff.js). */
static int set_flags(const char *name, int *tok, uint32_t *flags)
{
    for (int t = 0; t < N_TOKS; t++) {
        size_t l = strlen(tok_names[t]);
        if (strncmp(name, tok_names[t], l) != 0 || name[l] != ' ')
            continue;
        const char *mode = name + l + 1;
        *tok = t;
        if (strcmp(mode, "special") == 0)
            *flags = R1_TOKENIZE_PARSE_SPECIAL;
        else if (strcmp(mode, "added") == 0)
            *flags = R1_TOKENIZE_PARSE_ADDED;
        else if (strcmp(mode, "plain") == 0)
            *flags = 0;
        else
            return 0;
        return 1;
    }
    return 0;
}

static void print_case(const diff_string *s, const diff_ids *want, const int32_t *got, size_t n_got,
                       r1_status st)
{
    fprintf(stderr, "  st=%d len=%u text:", st, s->len);
    for (uint32_t k = 0; k < s->len && k < 80; k++)
        fprintf(stderr, "%02x", (uint8_t)s->text[k]);
    fprintf(stderr, "%s\n  want(%u):", s->len > 80 ? "..." : "", want->n);
    for (uint32_t k = 0; k < want->n && k < 32; k++)
        fprintf(stderr, " %d", id_at(want, k));
    fprintf(stderr, "\n  got(%zu): ", n_got);
    for (size_t k = 0; k < n_got && k < 32; k++)
        fprintf(stderr, " %d", got[k]);
    fprintf(stderr, "\n");
}

/* Encode every string of every set of tokenizer t; count equal id sequences. */
static void check_ids(int t)
{
    const diff_corpus *c = &g_corpus[tok_corpus[t]];
    ck_assert_uint_ge(c->n, 20000);
    size_t cap = 1u << 16;
    int32_t *ids = malloc(cap * sizeof *ids);
    size_t *bad_kind = calloc(c->n_kinds, sizeof *bad_kind);
    size_t compared = 0, equal = 0, shown = 0, sets = 0;
    /* $R1_TOKENIZER_DIFF_SHOW: how many mismatches to print (20). */
    const char *show_env = getenv("R1_TOKENIZER_DIFF_SHOW");
    size_t show = show_env && *show_env ? (size_t)strtoul(show_env, NULL, 10) : 20;
    for (uint32_t k = 0; k < c->n_sets; k++) {
        int tk;
        uint32_t flags;
        ck_assert_msg(set_flags(c->set_names[k], &tk, &flags), "unknown set %s", c->set_names[k]);
        if (tk != t)
            continue;
        sets++;
        size_t set_equal = 0;
        for (uint32_t i = 0; i < c->n; i++) {
            const diff_string *s = &c->s[i];
            const diff_ids *want = &s->ids[k];
            size_t n = 0;
            r1_status st = r1_tokenizer__encode(g_tok[t], s->text, s->len, flags, ids, cap, &n);
            if (st == R1_ERR_BUFFER_TOO_SMALL) {
                cap = n;
                ids = realloc(ids, cap * sizeof *ids);
                ck_assert_ptr_nonnull(ids);
                st = r1_tokenizer__encode(g_tok[t], s->text, s->len, flags, ids, cap, &n);
            }
            int same = st == R1_OK && n == want->n;
            for (size_t j = 0; same && j < n; j++)
                same = ids[j] == id_at(want, (uint32_t)j);
            compared++;
            set_equal += (size_t)same;
            if (!same) {
                bad_kind[s->kind]++;
                if (shown++ < show) {
                    fprintf(stderr, "MISMATCH %s #%u (%s):\n", c->set_names[k], i,
                            c->kind_names[s->kind]);
                    print_case(s, want, ids, n, st);
                }
            }
        }
        fprintf(stderr, "tokenizer diff %s: %zu/%u strings give Hugging Face's ids\n",
                c->set_names[k], set_equal, c->n);
        equal += set_equal;
    }
    for (uint32_t q = 0; q < c->n_kinds; q++)
        if (bad_kind[q])
            fprintf(stderr, "  %s: %zu mismatches\n", c->kind_names[q], bad_kind[q]);
    free(bad_kind);
    free(ids);
    /* Each tokenizer has special, added and plain sets. */
    ck_assert_uint_eq(sets, 3);
    ck_assert_msg(equal == compared, "%s: %zu of %zu encodes differ from Hugging Face",
                  tok_names[t], compared - equal, compared);
}

START_TEST(test_tokenizer_diff_r1_ids)
{
    check_ids(0);
}
END_TEST

START_TEST(test_tokenizer_diff_v3_ids)
{
    check_ids(1);
}
END_TEST

/* Decoding Hugging Face's ids gives Hugging Face's decode back: the text itself (byte-level BPE
 * without a normalizer loses nothing) or its NFC, both at once and pushed id by id through the
 * streaming decoder. */
static void check_roundtrip(int t)
{
    const diff_corpus *c = &g_corpus[tok_corpus[t]];
    size_t normalized = 0;
    size_t cap = 1u << 16, checked = 0;
    char *buf = malloc(cap);
    int32_t *ids = NULL;
    size_t ids_cap = 0;
    r1_tokenizer_stream *stream = NULL;
    ck_assert_int_eq(r1_tokenizer__stream_create(&stream, g_tok[t], 0), R1_OK);
    for (uint32_t k = 0; k < c->n_sets; k++) {
        int tk;
        uint32_t flags;
        ck_assert(set_flags(c->set_names[k], &tk, &flags));
        if (tk != t)
            continue;
        for (uint32_t i = 0; i < c->n; i++) {
            const diff_string *s = &c->s[i];
            const diff_ids *want = &s->ids[k];
            const diff_decoded *dd = &c->decoded[(size_t)k * c->n + i];
            const char *text = dd->text ? dd->text : s->text;
            uint32_t text_len = dd->text ? dd->len : s->len;
            normalized += dd->text != NULL;
            if (want->n > ids_cap) {
                ids_cap = want->n;
                ids = realloc(ids, ids_cap * sizeof *ids);
                ck_assert_ptr_nonnull(ids);
            }
            for (uint32_t j = 0; j < want->n; j++)
                ids[j] = id_at(want, j);
            if (cap < (size_t)text_len + 64) {
                cap = (size_t)text_len + 64;
                buf = realloc(buf, cap);
                ck_assert_ptr_nonnull(buf);
            }
            size_t len = 0;
            r1_status st = r1_tokenizer__decode(g_tok[t], ids, want->n, 0, buf, cap, &len);
            ck_assert_msg(st == R1_OK && len == text_len && memcmp(buf, text, len) == 0,
                          "%s #%u: decode st=%d len=%zu want %u", c->set_names[k], i, st, len,
                          text_len);
            /* Streaming: every push's output appended gives the text too. */
            size_t acc = 0;
            for (uint32_t j = 0; j < want->n; j++) {
                size_t m = 0;
                ck_assert_uint_ge(cap - acc, 8);
                st = r1_tokenizer__stream_push(stream, ids[j], buf + acc, cap - acc, &m);
                ck_assert_msg(st == R1_OK, "%s #%u: stream push %u: %d", c->set_names[k], i, j, st);
                acc += m;
            }
            size_t m = 0;
            ck_assert_int_eq(r1_tokenizer__stream_flush(stream, buf + acc, cap - acc, &m), R1_OK);
            acc += m;
            ck_assert_msg(acc == text_len && memcmp(buf, text, acc) == 0,
                          "%s #%u: streamed %zu bytes, want %u", c->set_names[k], i, acc, text_len);
            checked++;
        }
    }
    fprintf(stderr,
            "tokenizer diff %s: %zu decodes and streams round-trip (%zu of them to Hugging "
            "Face's normalized text)\n",
            tok_names[t], checked, normalized);
    /* Only a normalizer changes text; DeepSeek's and Llama's have none. */
    ck_assert(t == 2 ? normalized > 0 : normalized == 0);
    ck_assert_uint_eq(checked, 3u * c->n);
    r1_tokenizer__stream_destroy(stream);
    free(ids);
    free(buf);
}

START_TEST(test_tokenizer_diff_r1_roundtrip)
{
    check_roundtrip(0);
}
END_TEST

START_TEST(test_tokenizer_diff_v3_roundtrip)
{
    check_roundtrip(1);
}
END_TEST

START_TEST(test_tokenizer_diff_qwen_ids)
{
    check_ids(2);
}
END_TEST

START_TEST(test_tokenizer_diff_llama_ids)
{
    check_ids(3);
}
END_TEST

START_TEST(test_tokenizer_diff_qwen_roundtrip)
{
    check_roundtrip(2);
}
END_TEST

START_TEST(test_tokenizer_diff_llama_roundtrip)
{
    check_roundtrip(3);
}
END_TEST

static Suite *diff_suite(void)
{
    Suite *s = suite_create("tokenizer_diff");
    TCase *tc = tcase_create("hf");
    /* Unchecked: load the tokenizers and the corpus once, not once per test. */
    tcase_add_unchecked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_tokenizer_diff_r1_ids);
    tcase_add_test(tc, test_tokenizer_diff_v3_ids);
    tcase_add_test(tc, test_tokenizer_diff_r1_roundtrip);
    tcase_add_test(tc, test_tokenizer_diff_v3_roundtrip);
    tcase_add_test(tc, test_tokenizer_diff_qwen_ids);
    tcase_add_test(tc, test_tokenizer_diff_llama_ids);
    tcase_add_test(tc, test_tokenizer_diff_qwen_roundtrip);
    tcase_add_test(tc, test_tokenizer_diff_llama_roundtrip);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(diff_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
