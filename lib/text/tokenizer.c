/* tokenizer.c: byte-level BPE encode/decode with Hugging Face semantics, streaming decoder. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer.h"

#include "error.h"
#include "tokenizer_normalize.h"
#include "tokenizer_unicode.h"

#include <pcre2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------ */
/* Spec lifecycle and validation                                                              */

r1_status r1_tokenizer__spec_create(r1_tokenizer_spec **out)
{
    if (!out)
        return r1_error__set(R1_ERR_INVALID_ARG, "tokenizer spec: out is NULL");
    r1_tokenizer_spec *s = calloc(1, sizeof *s);
    if (!s)
        return r1_error__set(R1_ERR_NO_MEMORY, "tokenizer spec: out of memory");
    s->unk_id = -1;
    s->bos_id = -1;
    s->eos_id = -1;
    *out = s;
    return R1_OK;
}

void r1_tokenizer__spec_destroy(r1_tokenizer_spec *spec)
{
    if (!spec)
        return;
    free(spec->token_bytes);
    free(spec->token_off);
    free(spec->in_vocab);
    free(spec->merges);
    for (uint32_t i = 0; spec->added && i < spec->n_added; i++)
        free(spec->added[i].content);
    free(spec->added);
    for (uint32_t i = 0; spec->steps && i < spec->n_steps; i++)
        free(spec->steps[i].pattern);
    free(spec->steps);
    free(spec->chat_template);
    free(spec);
}

static int id_ok(const r1_tokenizer_spec *s, int32_t id)
{
    return id >= 0 && (uint32_t)id < s->n_ids;
}

r1_status r1_tokenizer__spec_validate(const r1_tokenizer_spec *s)
{
    if (!s)
        return r1_error__set(R1_ERR_INVALID_ARG, "tokenizer spec is NULL");
    if (s->n_ids == 0 || s->n_ids > (UINT32_C(1) << 30))
        return r1_error__set(R1_ERR_FORMAT, "tokenizer: bad number of ids %u", s->n_ids);
    if (!s->token_off || !s->in_vocab || (s->n_merges && !s->merges) || (s->n_added && !s->added) ||
        !s->steps)
        return r1_error__set(R1_ERR_FORMAT, "tokenizer spec: missing arrays");
    if (s->token_off[0] != 0 || (s->token_off[s->n_ids] && !s->token_bytes))
        return r1_error__set(R1_ERR_FORMAT, "tokenizer spec: bad token offsets");
    for (uint32_t i = 0; i < s->n_ids; i++) {
        if (s->token_off[i + 1] < s->token_off[i] ||
            s->token_off[i + 1] - s->token_off[i] > (UINT32_C(1) << 20))
            return r1_error__set(R1_ERR_FORMAT, "tokenizer spec: bad offset of token %u", i);
        if (s->in_vocab[i] > 1)
            return r1_error__set(R1_ERR_FORMAT, "tokenizer spec: bad vocab flag of token %u", i);
        if (s->in_vocab[i] && s->token_off[i + 1] == s->token_off[i])
            return r1_error__set(R1_ERR_FORMAT, "tokenizer: vocab token %u is empty", i);
    }
    for (uint32_t i = 0; i < 2 * (uint64_t)s->n_merges; i++)
        if (!id_ok(s, s->merges[i]) || !s->in_vocab[s->merges[i]])
            return r1_error__set(R1_ERR_FORMAT, "tokenizer: merge %u names a bad id", i / 2);
    for (uint32_t i = 0; i < s->n_added; i++) {
        const r1_tokenizer_added *a = &s->added[i];
        if (!id_ok(s, a->id) || !a->content || a->content_len == 0)
            return r1_error__set(R1_ERR_FORMAT, "tokenizer: added token %u is malformed", i);
        if ((a->special | a->lstrip | a->rstrip | a->normalized | a->single_word) > 1)
            return r1_error__set(R1_ERR_FORMAT, "tokenizer: added token %u has bad flags", i);
    }
    if (s->n_steps == 0 || s->steps[s->n_steps - 1].kind != R1_TOKENIZER_STEP_BYTE_LEVEL)
        return r1_error__set(R1_ERR_UNSUPPORTED, "tokenizer: pre-tokenizer must end in ByteLevel");
    for (uint32_t i = 0; i < s->n_steps; i++) {
        const r1_tokenizer_step *st = &s->steps[i];
        if (st->kind == R1_TOKENIZER_STEP_BYTE_LEVEL) {
            if (i + 1 != s->n_steps)
                return r1_error__set(R1_ERR_UNSUPPORTED, "tokenizer: ByteLevel must be last");
            if ((st->add_prefix_space | st->use_regex | st->trim_offsets) > 1)
                return r1_error__set(R1_ERR_FORMAT, "tokenizer: bad ByteLevel flags");
        } else if (st->kind == R1_TOKENIZER_STEP_SPLIT) {
            if (st->behavior > R1_TOKENIZER_SPLIT_CONTIGUOUS || st->invert > 1 ||
                st->is_regex > 1 || !st->pattern)
                return r1_error__set(R1_ERR_FORMAT, "tokenizer: bad Split step %u", i);
        } else {
            return r1_error__set(R1_ERR_FORMAT, "tokenizer: bad pre-tokenizer kind %u", st->kind);
        }
    }
    if ((s->unk_id != -1 && !id_ok(s, s->unk_id)) || (s->bos_id != -1 && !id_ok(s, s->bos_id)) ||
        (s->eos_id != -1 && !id_ok(s, s->eos_id)))
        return r1_error__set(R1_ERR_FORMAT, "tokenizer: unk/bos/eos id out of range");
    if ((s->ignore_merges | s->add_bos | s->add_eos) > 1)
        return r1_error__set(R1_ERR_FORMAT, "tokenizer: bad flags");
    if (s->normalizer > R1_TOKENIZER_NORM_NFC)
        return r1_error__set(R1_ERR_FORMAT, "tokenizer: bad normalizer %u", s->normalizer);
    if (s->chat_template_len && !s->chat_template)
        return r1_error__set(R1_ERR_FORMAT, "tokenizer: chat template missing");
    return R1_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* UTF-8                                                                                      */

enum { UTF8_VALID = 0, UTF8_INVALID = 1, UTF8_TRUNCATED = 2 };

/* Classify the sequence at s[i]: returns its length when valid, the length of the maximal
 * invalid subpart (>= 1) when invalid, or the remaining length when a valid prefix hits the end. */
static size_t utf8_scan(const uint8_t *s, size_t n, size_t i, int *kind)
{
    uint8_t c = s[i];
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c < 0x80) {
        *kind = UTF8_VALID;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        need = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        *kind = UTF8_INVALID;
        return 1;
    }
    size_t k = 1;
    for (; k < need; k++) {
        if (i + k >= n) {
            *kind = UTF8_TRUNCATED;
            return k;
        }
        uint8_t b = s[i + k];
        if (b < lo || b > hi) {
            *kind = UTF8_INVALID;
            return k;
        }
        lo = 0x80;
        hi = 0xBF;
    }
    *kind = UTF8_VALID;
    return need;
}

static size_t utf8_put(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Decode one valid UTF-8 sequence of length len. */
static uint32_t utf8_get(const uint8_t *s, size_t len)
{
    if (len == 1)
        return s[0];
    if (len == 2)
        return ((uint32_t)(s[0] & 0x1F) << 6) | (s[1] & 0x3F);
    if (len == 3)
        return ((uint32_t)(s[0] & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    return ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
           ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
}

/* ------------------------------------------------------------------------------------------ */
/* Hash tables                                                                                */

static uint64_t hash_bytes(const char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325u ^ n;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0x100000001b3u;
        h ^= h >> 29;
    }
    for (; i < n; i++)
        h = (h ^ (uint8_t)p[i]) * 0x100000001b3u;
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93u;
    h ^= h >> 32;
    return h;
}

static uint64_t hash_u64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdu;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53u;
    x ^= x >> 33;
    return x;
}

/* Strings -> values; keys live in an external arena: key v is base[off[v] .. off[v+1]). */
typedef struct strmap {
    uint32_t *slot; /* value + 1; 0 = empty */
    size_t mask;
} strmap;

static int strmap_init(strmap *m, size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n + 2)
        cap <<= 1;
    m->slot = calloc(cap, sizeof *m->slot);
    m->mask = cap - 1;
    return m->slot != NULL;
}

static int64_t strmap_find(const strmap *m, const char *base, const uint64_t *off, const char *s,
                           size_t n)
{
    size_t i = (size_t)hash_bytes(s, n) & m->mask;
    for (;;) {
        uint32_t v = m->slot[i];
        if (!v)
            return -1;
        v--;
        if (off[v + 1] - off[v] == n && memcmp(base + off[v], s, n) == 0)
            return v;
        i = (i + 1) & m->mask;
    }
}

/* Insert v unless its key is present; returns the existing value or -1 when inserted. */
static int64_t strmap_insert(strmap *m, const char *base, const uint64_t *off, uint32_t v)
{
    const char *s = base + off[v];
    size_t n = off[v + 1] - off[v];
    size_t i = (size_t)hash_bytes(s, n) & m->mask;
    for (;;) {
        uint32_t w = m->slot[i];
        if (!w) {
            m->slot[i] = v + 1;
            return -1;
        }
        w--;
        if (off[w + 1] - off[w] == n && memcmp(base + off[w], s, n) == 0)
            return w;
        i = (i + 1) & m->mask;
    }
}

/* (left id, right id) -> (rank, merged id). */
typedef struct merge_slot {
    uint64_t key; /* (left << 32 | right) + 1; 0 = empty */
    uint32_t rank;
    int32_t id;
} merge_slot;

typedef struct mergemap {
    merge_slot *slot;
    size_t mask;
} mergemap;

static const merge_slot *mergemap_find(const mergemap *m, int32_t a, int32_t b)
{
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    size_t i = (size_t)hash_u64(key) & m->mask;
    for (;;) {
        const merge_slot *s = &m->slot[i];
        if (s->key == key)
            return s;
        if (!s->key)
            return NULL;
        i = (i + 1) & m->mask;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Tokenizer object                                                                           */

/* Added tokens that share one "normalized" flag are matched in one pass. */
typedef struct added_set {
    uint32_t n;
    uint32_t *index; /* into tok->added */
    char *bytes;     /* contents, concatenated */
    uint64_t *off;   /* n + 1 */
    strmap map;
    uint32_t *lens; /* distinct content lengths, descending */
    uint32_t n_lens;
    uint8_t first[256]; /* 1 when some content starts with that byte */
} added_set;

typedef struct split_step {
    pcre2_code *re;
    uint8_t behavior, invert;
} split_step;

enum { CACHE_SLOTS = 8192, CACHE_KEY_MAX = 40, CACHE_IDS_MAX = 20 };

typedef struct cache_entry {
    uint64_t hash;
    uint8_t key_len, n_ids; /* key_len 0 = empty */
    char key[CACHE_KEY_MAX];
    int32_t ids[CACHE_IDS_MAX];
} cache_entry;

struct r1_tokenizer {
    uint32_t n_ids;
    char *keys; /* vocab keys (spec->token_bytes) */
    uint64_t *key_off;
    uint8_t *in_vocab;
    strmap vocab; /* vocab key -> id */
    mergemap merges;
    int32_t byte_id[256]; /* id of the one-character token of each byte; -1 when none */
    int16_t cp_byte[324]; /* inverse byte-level map for code points < 324; -1 when none */
    uint16_t byte_cp[256];
    char *dec; /* decode bytes per id */
    uint64_t *dec_off;
    uint8_t *is_added, *is_special;
    r1_tokenizer_added *added;
    uint32_t n_added;
    added_set sets[2]; /* [0]: normalized == 0, matched first; [1]: normalized == 1 */
    char *added_keys;  /* added contents, for token_to_id */
    uint64_t *added_off;
    strmap added_map;
    split_step *splits;
    uint32_t n_splits;
    uint8_t add_prefix_space, use_regex_bl;
    pcre2_code *gpt2_re; /* ByteLevel use_regex */
    int32_t unk_id, bos_id, eos_id;
    uint8_t ignore_merges;
    uint8_t normalizer; /* R1_TOKENIZER_NORM_* */
    char *chat_template;
    pthread_mutex_t cache_lock;
    cache_entry *cache;
};

static void added_set_free(added_set *s)
{
    free(s->index);
    free(s->bytes);
    free(s->off);
    free(s->map.slot);
    free(s->lens);
}

void r1_tokenizer__destroy(r1_tokenizer *tok)
{
    if (!tok)
        return;
    free(tok->keys);
    free(tok->key_off);
    free(tok->in_vocab);
    free(tok->vocab.slot);
    free(tok->merges.slot);
    free(tok->dec);
    free(tok->dec_off);
    free(tok->is_added);
    free(tok->is_special);
    for (uint32_t i = 0; tok->added && i < tok->n_added; i++)
        free(tok->added[i].content);
    free(tok->added);
    added_set_free(&tok->sets[0]);
    added_set_free(&tok->sets[1]);
    free(tok->added_keys);
    free(tok->added_off);
    free(tok->added_map.slot);
    for (uint32_t i = 0; tok->splits && i < tok->n_splits; i++)
        pcre2_code_free(tok->splits[i].re);
    free(tok->splits);
    pcre2_code_free(tok->gpt2_re);
    free(tok->chat_template);
    if (tok->cache) {
        pthread_mutex_destroy(&tok->cache_lock);
        free(tok->cache);
    }
    free(tok);
}

static void *dup_bytes(const void *p, size_t n)
{
    void *q = malloc(n ? n : 1);
    if (q && n)
        memcpy(q, p, n);
    return q;
}

/* The class body of one general category as Hugging Face matches it, or NULL when the table
 * has no such category. */
static const r1_unicode_class *unicode_class(const char *pat, size_t len, size_t i, size_t *end)
{
    /* pat[i] is the p or P of \p{X}. */
    if (i + 3 >= len || pat[i + 1] != '{' || pat[i + 3] != '}')
        return NULL;
    for (size_t c = 0; c < r1_tokenizer__n_unicode_classes; c++)
        if (r1_tokenizer__unicode_classes[c].name == pat[i + 2]) {
            *end = i + 3;
            return &r1_tokenizer__unicode_classes[c];
        }
    return NULL;
}

/* A class of hundreds of ranges makes PCRE2 test them one by one (encode took 60 % more time). So
 * where PCRE2's own \p{X} is a subset of Hugging Face's class (as when PCRE2's Unicode is older),
 * the pattern says \p{X} plus the few ranges PCRE2 lacks; only otherwise does it spell out every
 * range. The difference is measured once per process against the PCRE2 at hand, in static
 * storage (no heap: nothing to free when the library is unloaded). */
#define DELTA_CLASSES 8
#define DELTA_RANGES  256
typedef struct class_delta {
    int usable;
    size_t n;
    uint32_t ranges[2 * DELTA_RANGES];
} class_delta;
static class_delta g_delta[DELTA_CLASSES];
static pthread_once_t g_delta_once = PTHREAD_ONCE_INIT;

/* The code point of the UTF-8 sequence at s (valid, lead byte first). */
static uint32_t cp_at(const uint8_t *s)
{
    return utf8_get(s, s[0] < 0x80 ? 1 : s[0] < 0xE0 ? 2 : s[0] < 0xF0 ? 3 : 4);
}

/* Hugging Face's class minus PCRE2's runs (both sorted ranges without surrogates) into d; d is
 * usable when every PCRE2 run lies inside one of the class's ranges and the rest fits. */
static void delta_of(class_delta *d, const r1_unicode_class *u, const uint32_t *run, size_t n_run)
{
    d->n = 0;
    d->usable = 0;
    for (size_t j = 0, h = 0; j < n_run; j++) {
        while (h < u->n && u->ranges[2 * h + 1] < run[2 * j])
            h++;
        if (h == u->n || u->ranges[2 * h] > run[2 * j] || u->ranges[2 * h + 1] < run[2 * j + 1])
            return; /* PCRE2 has a member Hugging Face has not */
    }
    for (size_t h = 0, j = 0; h < u->n; h++) {
        uint32_t cur = u->ranges[2 * h], end = u->ranges[2 * h + 1];
        while (j < n_run && run[2 * j + 1] < cur)
            j++;
        for (size_t q = j; cur <= end; q++) {
            uint32_t stop = q < n_run && run[2 * q] <= end ? run[2 * q] : end + 1;
            if (stop > cur) {
                if (d->n == DELTA_RANGES)
                    return;
                d->ranges[2 * d->n] = cur;
                d->ranges[2 * d->n + 1] = stop - 1;
                d->n++;
            }
            if (stop > end)
                break;
            cur = run[2 * q + 1] + 1;
        }
    }
    d->usable = 1;
}

static void compute_deltas(void)
{
    size_t nc = r1_tokenizer__n_unicode_classes;
    if (nc > DELTA_CLASSES)
        return;
    /* Every scalar value in order, as UTF-8; PCRE2's \p{X}+ finds its runs of members. */
    size_t len = 0x80 + 2 * 0x780 + 3 * (0x10000 - 0x800 - 0x800) + 4 * 0x100000;
    char *all = malloc(len);
    size_t cap_run = 4096;
    uint32_t *run = malloc(2 * cap_run * sizeof *run);
    if (!all || !run)
        goto done;
    size_t k = 0;
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
        if (cp == 0xD800)
            cp = 0xE000;
        k += utf8_put(cp, all + k);
    }
    for (size_t c = 0; c < nc; c++) {
        const r1_unicode_class *u = &r1_tokenizer__unicode_classes[c];
        char pat[16];
        int pl = snprintf(pat, sizeof pat, "\\p{%c}+", u->name);
        int err;
        PCRE2_SIZE erroff;
        pcre2_code *re =
            pcre2_compile((PCRE2_SPTR)pat, (size_t)pl, PCRE2_UTF | PCRE2_UCP, &err, &erroff, NULL);
        pcre2_match_data *md = re ? pcre2_match_data_create_from_pattern(re, NULL) : NULL;
        if (!md) {
            pcre2_code_free(re);
            continue;
        }
        /* pcre2_jit_match skips pcre2_match's checks, a little faster over 4 MB. */
        int jit = pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) == 0;
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t n_run = 0, at = 0;
        int ok = 1;
        while (ok) {
            int rc = jit ? pcre2_jit_match(re, (PCRE2_SPTR)all, len, at, 0, md, NULL)
                         : pcre2_match(re, (PCRE2_SPTR)all, len, at, PCRE2_NO_UTF_CHECK, md, NULL);
            if (rc == PCRE2_ERROR_NOMATCH)
                break;
            if (rc <= 0) { /* out of memory, say: an unverified class is not used */
                ok = 0;
                break;
            }
            size_t last = ov[1] - 1;
            while (((uint8_t)all[last] & 0xC0) == 0x80)
                last--;
            const uint8_t *u8 = (const uint8_t *)all;
            uint32_t lo = cp_at(u8 + ov[0]), hi = cp_at(u8 + last);
            /* Split a run at the surrogates, as the class's ranges are. */
            for (int part = 0; part < 2 && ok; part++) {
                uint32_t a = part ? (lo > 0xE000 ? lo : 0xE000) : lo;
                uint32_t b = part ? hi : (hi < 0xD7FF ? hi : 0xD7FF);
                if (a > b || (part == 0 && lo >= 0xE000))
                    continue;
                if (n_run == cap_run) {
                    uint32_t *r = realloc(run, 4 * cap_run * sizeof *run);
                    if (!r) {
                        ok = 0;
                        break;
                    }
                    run = r;
                    cap_run *= 2;
                }
                run[2 * n_run] = a;
                run[2 * n_run + 1] = b;
                n_run++;
            }
            at = ov[1];
        }
        if (ok)
            delta_of(&g_delta[c], u, run, n_run);
        pcre2_match_data_free(md);
        pcre2_code_free(re);
    }
done:
    free(all);
    free(run);
}

/* Append s (n bytes) at o + *k, or only count when o is NULL. */
static void put(char *o, size_t *k, const char *s, size_t n)
{
    if (o)
        memcpy(o + *k, s, n);
    *k += n;
}

static void put_range_list(char *o, size_t *k, const uint32_t *ranges, size_t n_ranges)
{
    for (size_t r = 0; r < n_ranges; r++) {
        char buf[40];
        uint32_t lo = ranges[2 * r], hi = ranges[2 * r + 1];
        int n = lo == hi ? snprintf(buf, sizeof buf, "\\x{%x}", (unsigned)lo)
                         : snprintf(buf, sizeof buf, "\\x{%x}-\\x{%x}", (unsigned)lo, (unsigned)hi);
        put(o, k, buf, (size_t)n);
    }
}

/* The body of a class (no brackets) that matches exactly Hugging Face's category cls. */
static void put_ranges(char *o, size_t *k, const r1_unicode_class *cls)
{
    size_t c = (size_t)(cls - r1_tokenizer__unicode_classes);
    const class_delta *d = c < DELTA_CLASSES ? &g_delta[c] : NULL;
    if (d && d->usable) {
        char buf[8];
        put(o, k, buf, (size_t)snprintf(buf, sizeof buf, "\\p{%c}", cls->name));
        put_range_list(o, k, d->ranges, d->n);
    } else {
        put_range_list(o, k, cls->ranges, cls->n);
    }
}

/* Translate an Oniguruma pattern into PCRE2 syntax with Oniguruma's meaning; writes to o (when
 * not NULL) and returns the length. Hugging Face's \s is U+0009-U+000D, U+0085 and the Z
 * category; PCRE2's \s also takes U+180E, so \s (and \S outside classes) is spelled out. And the
 * general categories \p{L}, \p{M}, \p{N}, \p{P}, \p{S}, \p{Z} (and \P{..} outside classes) take
 * Hugging Face's members (tokenizer_unicode.c): PCRE2's own tables are of the Unicode version
 * of the PCRE2 at hand (10.42: 14.0, Hugging Face: 16.0), and letters it does not know split text
 * into other pieces, so other ids. */
static size_t onig_translate(const char *pat, size_t len, char *o)
{
    static const char WS[] = "\\t-\\r\\x{85}";
    const r1_unicode_class *z = NULL;
    for (size_t c = 0; c < r1_tokenizer__n_unicode_classes; c++)
        if (r1_tokenizer__unicode_classes[c].name == 'Z')
            z = &r1_tokenizer__unicode_classes[c];
    size_t k = 0, end = 0;
    int in_class = 0;
    for (size_t i = 0; i < len; i++) {
        char c = pat[i];
        if (c == '\\' && i + 1 < len) {
            char d = pat[i + 1];
            const r1_unicode_class *cls = NULL;
            if (d == 's' || (d == 'S' && !in_class)) {
                if (!in_class)
                    put(o, &k, d == 'S' ? "[^" : "[", d == 'S' ? 2 : 1);
                put(o, &k, WS, sizeof WS - 1);
                if (z)
                    put_ranges(o, &k, z);
                if (!in_class)
                    put(o, &k, "]", 1);
            } else if ((d == 'p' || (d == 'P' && !in_class)) &&
                       (cls = unicode_class(pat, len, i + 1, &end)) != NULL) {
                if (!in_class)
                    put(o, &k, d == 'P' ? "[^" : "[", d == 'P' ? 2 : 1);
                put_ranges(o, &k, cls);
                if (!in_class)
                    put(o, &k, "]", 1);
                i = end;
                continue;
            } else {
                put(o, &k, pat + i, 2);
            }
            i++;
            continue;
        }
        put(o, &k, &c, 1);
        if (!in_class && c == '[') {
            in_class = 1;
            /* A leading ^ and a leading ] belong to the class. */
            if (i + 1 < len && pat[i + 1] == '^')
                put(o, &k, &pat[++i], 1);
            if (i + 1 < len && pat[i + 1] == ']')
                put(o, &k, &pat[++i], 1);
        } else if (in_class && c == '[' && i + 1 < len && pat[i + 1] == ':') {
            const char *e = memchr(pat + i + 2, ']', len - i - 2);
            size_t stop = e ? (size_t)(e - pat) : len - 1;
            put(o, &k, pat + i + 1, stop - i);
            i = stop;
        } else if (in_class && c == ']') {
            in_class = 0;
        }
    }
    return k;
}

/* onig_translate into a malloc'd pattern of *len_out bytes, or NULL when out of memory. */
static char *onig_to_pcre2(const char *pat, size_t len, size_t *len_out)
{
    pthread_once(&g_delta_once, compute_deltas);
    size_t n = onig_translate(pat, len, NULL);
    char *o = malloc(n + 1);
    if (!o)
        return NULL;
    *len_out = onig_translate(pat, len, o);
    o[n] = '\0';
    return o;
}

static r1_status compile_regex(pcre2_code **out, const char *pat_in, size_t len_in, int literal)
{
    int err = 0;
    PCRE2_SIZE erroff = 0;
    /* PCRE2 refuses PCRE2_UCP together with PCRE2_LITERAL, and a literal has no character
     * classes for it to affect. */
    uint32_t opts = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
    size_t len = len_in;
    char *pat = literal ? NULL : onig_to_pcre2(pat_in, len_in, &len);
    if (!literal && !pat)
        return r1_error__set(R1_ERR_NO_MEMORY, "tokenizer: out of memory");
    pcre2_code *re =
        pcre2_compile((PCRE2_SPTR)(literal ? pat_in : pat), len, opts, &err, &erroff, NULL);
    free(pat);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(err, msg, sizeof msg);
        return r1_error__set(R1_ERR_UNSUPPORTED, "tokenizer: regex error at %zu: %s",
                             (size_t)erroff, (const char *)msg);
    }
    /* The interpreter gives the same matches, only slower, so a JIT failure is not an error. */
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    *out = re;
    return R1_OK;
}

/* GPT-2 ByteLevel alphabet: printable bytes keep their code point, the other 68 bytes take
 * 256, 257, ... in increasing byte order. */
static void build_byte_level(r1_tokenizer *tok)
{
    uint32_t next = 256;
    for (uint32_t i = 0; i < 324; i++)
        tok->cp_byte[i] = -1;
    for (uint32_t b = 0; b < 256; b++) {
        int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
        tok->byte_cp[b] = (uint16_t)(printable ? b : next++);
        tok->cp_byte[tok->byte_cp[b]] = (int16_t)b;
    }
}

/* HF's ByteLevel decoder maps a token through the inverse alphabet only when every character
 * of it is in the alphabet; otherwise the token's own UTF-8 bytes are kept. */
static size_t byte_level_decode(const r1_tokenizer *tok, const char *s, size_t n, char *out)
{
    const uint8_t *u = (const uint8_t *)s;
    size_t i = 0, o = 0;
    while (i < n) {
        int kind;
        size_t l = utf8_scan(u, n, i, &kind);
        uint32_t cp = kind == UTF8_VALID ? utf8_get(u + i, l) : 0xFFFFFFFFu;
        if (cp >= 324 || tok->cp_byte[cp] < 0) {
            memcpy(out, s, n);
            return n;
        }
        out[o++] = (char)tok->cp_byte[cp];
        i += l;
    }
    return o;
}

static int cmp_u32_desc(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* The text an added token of the set is matched by: its content, normalized for the tokens
 * matched in normalized text (HF normalizes them when it builds its added vocabulary). *norm is
 * a malloc'd copy or NULL when the content is that text already. */
static r1_status added_match_text(const r1_tokenizer *tok, const r1_tokenizer_added *a, char **norm,
                                  size_t *len)
{
    *norm = NULL;
    *len = a->content_len;
    if (a->normalized && tok->normalizer == R1_TOKENIZER_NORM_NFC)
        return r1_tokenizer__nfc(a->content, a->content_len, norm, len);
    return R1_OK;
}

static r1_status build_added_set(r1_tokenizer *tok, added_set *set, uint8_t normalized)
{
    uint64_t total = 0;
    for (uint32_t i = 0; i < tok->n_added; i++)
        if (tok->added[i].normalized == normalized) {
            char *norm;
            size_t len;
            r1_status st = added_match_text(tok, &tok->added[i], &norm, &len);
            if (st != R1_OK)
                return st;
            free(norm);
            set->n++;
            total += len;
        }
    set->index = malloc((set->n + 1) * sizeof *set->index);
    set->off = malloc((set->n + 1) * sizeof *set->off);
    set->bytes = malloc(total + 1);
    set->lens = malloc((set->n + 1) * sizeof *set->lens);
    if (!set->index || !set->off || !set->bytes || !set->lens || !strmap_init(&set->map, set->n))
        return r1_error__set(R1_ERR_NO_MEMORY, "tokenizer: out of memory");
    uint32_t k = 0;
    set->off[0] = 0;
    for (uint32_t i = 0; i < tok->n_added; i++) {
        const r1_tokenizer_added *a = &tok->added[i];
        if (a->normalized != normalized)
            continue;
        char *norm;
        size_t len;
        r1_status st = added_match_text(tok, a, &norm, &len);
        if (st != R1_OK)
            return st;
        const char *text = norm ? norm : a->content;
        set->index[k] = i;
        memcpy(set->bytes + set->off[k], text, len);
        set->off[k + 1] = set->off[k] + len;
        set->first[(uint8_t)text[0]] = 1;
        free(norm);
        /* A later duplicate replaces an earlier one, as in HF's added vocabulary. */
        int64_t old = strmap_insert(&set->map, set->bytes, set->off, k);
        if (old >= 0)
            set->index[old] = i;
        int seen = 0;
        for (uint32_t j = 0; j < set->n_lens; j++)
            seen |= set->lens[j] == len;
        if (!seen)
            set->lens[set->n_lens++] = (uint32_t)len;
        k++;
    }
    qsort(set->lens, set->n_lens, sizeof *set->lens, cmp_u32_desc);
    return R1_OK;
}

static r1_status build_vocab(r1_tokenizer *tok, const r1_tokenizer_spec *spec)
{
    uint64_t nbytes = spec->token_off[spec->n_ids];
    tok->keys = dup_bytes(spec->token_bytes, nbytes);
    tok->key_off = dup_bytes(spec->token_off, (spec->n_ids + 1) * sizeof *tok->key_off);
    tok->in_vocab = dup_bytes(spec->in_vocab, spec->n_ids);
    if (!tok->keys || !tok->key_off || !tok->in_vocab || !strmap_init(&tok->vocab, spec->n_ids))
        return r1_error__set(R1_ERR_NO_MEMORY, "tokenizer: out of memory");
    for (uint32_t i = 0; i < spec->n_ids; i++) {
        if (!spec->in_vocab[i])
            continue;
        if (strmap_insert(&tok->vocab, tok->keys, tok->key_off, i) >= 0)
            return r1_error__set(R1_ERR_FORMAT, "tokenizer: vocab key of id %u is duplicated", i);
    }
    for (uint32_t b = 0; b < 256; b++) {
        char s[4];
        size_t n = utf8_put(tok->byte_cp[b], s);
        int64_t id = strmap_find(&tok->vocab, tok->keys, tok->key_off, s, n);
        tok->byte_id[b] = (int32_t)id;
    }
    return R1_OK;
}

static r1_status build_merges(r1_tokenizer *tok, const r1_tokenizer_spec *spec)
{
    size_t cap = 16;
    while (cap < 2 * (size_t)spec->n_merges + 2)
        cap <<= 1;
    tok->merges.slot = calloc(cap, sizeof *tok->merges.slot);
    tok->merges.mask = cap - 1;
    char *tmp = NULL;
    size_t tmp_cap = 0;
    if (!tok->merges.slot)
        return r1_error__set(R1_ERR_NO_MEMORY, "tokenizer: out of memory");
    for (uint32_t r = 0; r < spec->n_merges; r++) {
        int32_t a = spec->merges[2 * r], b = spec->merges[2 * r + 1];
        size_t la = tok->key_off[a + 1] - tok->key_off[a];
        size_t lb = tok->key_off[b + 1] - tok->key_off[b];
        if (la + lb > tmp_cap) {
            free(tmp);
            tmp_cap = 2 * (la + lb);
            tmp = malloc(tmp_cap);
            if (!tmp)
                return r1_error__set(R1_ERR_NO_MEMORY, "tokenizer: out of memory");
        }
        memcpy(tmp, tok->keys + tok->key_off[a], la);
        memcpy(tmp + la, tok->keys + tok->key_off[b], lb);
        int64_t id = strmap_find(&tok->vocab, tok->keys, tok->key_off, tmp, la + lb);
        if (id < 0) {
            free(tmp);
            return r1_error__set(R1_ERR_FORMAT, "tokenizer: merge %u makes a token not in vocab",
                                 r);
        }
        uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
        size_t i = (size_t)hash_u64(key) & tok->merges.mask;
        while (tok->merges.slot[i].key && tok->merges.slot[i].key != key)
            i = (i + 1) & tok->merges.mask;
        /* HF collects merges into a map, so a repeated pair keeps its last rank. */
        tok->merges.slot[i].key = key;
        tok->merges.slot[i].rank = r;
        tok->merges.slot[i].id = (int32_t)id;
    }
    free(tmp);
    return R1_OK;
}

static r1_status build_added(r1_tokenizer *tok, const r1_tokenizer_spec *spec)
{
    uint32_t n = spec->n_added;
    uint64_t total = 0;
    tok->n_added = n;
    tok->added = calloc(n + 1, sizeof *tok->added);
    tok->is_added = calloc(spec->n_ids, 1);
    tok->is_special = calloc(spec->n_ids, 1);
    tok->added_off = malloc((n + 1) * sizeof *tok->added_off);
    if (!tok->added || !tok->is_added || !tok->is_special || !tok->added_off)
        return r1_error__set(R1_ERR_NO_MEMORY, "tokenizer: out of memory");
    for (uint32_t i = 0; i < n; i++) {
        tok->added[i] = spec->added[i];
        tok->added[i].content = dup_bytes(spec->added[i].content, spec->added[i].content_len);
        if (!tok->added[i].content)
            return r1_error__set(R1_ERR_NO_MEMORY, "tokenizer: out of memory");
        tok->is_added[tok->added[i].id] = 1;
        tok->is_special[tok->added[i].id] = tok->added[i].special;
        total += spec->added[i].content_len;
    }
    tok->added_keys = malloc(total + 1);
    if (!tok->added_keys || !strmap_init(&tok->added_map, n))
        return r1_error__set(R1_ERR_NO_MEMORY, "tokenizer: out of memory");
    tok->added_off[0] = 0;
    for (uint32_t i = 0; i < n; i++) {
        memcpy(tok->added_keys + tok->added_off[i], tok->added[i].content,
               tok->added[i].content_len);
        tok->added_off[i + 1] = tok->added_off[i] + tok->added[i].content_len;
        (void)strmap_insert(&tok->added_map, tok->added_keys, tok->added_off, i);
    }
    r1_status st = build_added_set(tok, &tok->sets[0], 0);
    if (st == R1_OK)
        st = build_added_set(tok, &tok->sets[1], 1);
    return st;
}

/* Per id, the bytes decode produces: the added content or vocab key, through the ByteLevel
 * decoder. An added token's content wins over a vocab key with the same id, as in HF. */
static r1_status build_decode(r1_tokenizer *tok)
{
    uint64_t total = 0;
    const char **src = malloc(tok->n_ids * sizeof *src);
    uint32_t *len = malloc(tok->n_ids * sizeof *len);
    tok->dec_off = malloc((tok->n_ids + 1) * sizeof *tok->dec_off);
    if (!src || !len || !tok->dec_off) {
        free(src);
        free(len);
        return r1_error__set(R1_ERR_NO_MEMORY, "tokenizer: out of memory");
    }
    for (uint32_t i = 0; i < tok->n_ids; i++) {
        src[i] = tok->keys + tok->key_off[i];
        len[i] = (uint32_t)(tok->key_off[i + 1] - tok->key_off[i]);
    }
    for (uint32_t i = 0; i < tok->n_added; i++) {
        src[tok->added[i].id] = tok->added[i].content;
        len[tok->added[i].id] = tok->added[i].content_len;
    }
    for (uint32_t i = 0; i < tok->n_ids; i++)
        total += len[i];
    tok->dec = malloc(total + 1);
    if (!tok->dec) {
        free(src);
        free(len);
        return r1_error__set(R1_ERR_NO_MEMORY, "tokenizer: out of memory");
    }
    tok->dec_off[0] = 0;
    for (uint32_t i = 0; i < tok->n_ids; i++)
        tok->dec_off[i + 1] =
            tok->dec_off[i] + byte_level_decode(tok, src[i], len[i], tok->dec + tok->dec_off[i]);
    free(src);
    free(len);
    return R1_OK;
}

static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static r1_status build_steps(r1_tokenizer *tok, const r1_tokenizer_spec *spec)
{
    tok->splits = calloc(spec->n_steps, sizeof *tok->splits);
    if (!tok->splits)
        return r1_error__set(R1_ERR_NO_MEMORY, "tokenizer: out of memory");
    for (uint32_t i = 0; i < spec->n_steps; i++) {
        const r1_tokenizer_step *s = &spec->steps[i];
        if (s->kind == R1_TOKENIZER_STEP_BYTE_LEVEL) {
            tok->add_prefix_space = s->add_prefix_space;
            tok->use_regex_bl = s->use_regex;
            if (s->use_regex) {
                r1_status st =
                    compile_regex(&tok->gpt2_re, GPT2_PATTERN, sizeof GPT2_PATTERN - 1, 0);
                if (st != R1_OK)
                    return st;
            }
            continue;
        }
        split_step *sp = &tok->splits[tok->n_splits];
        r1_status st = compile_regex(&sp->re, s->pattern, s->pattern_len, !s->is_regex);
        if (st != R1_OK)
            return st;
        sp->behavior = s->behavior;
        sp->invert = s->invert;
        tok->n_splits++;
    }
    return R1_OK;
}

r1_status r1_tokenizer__create(r1_tokenizer **out, const r1_tokenizer_spec *spec)
{
    if (!out || !spec)
        return r1_error__set(R1_ERR_INVALID_ARG, "tokenizer create: NULL argument");
    *out = NULL;
    r1_status st = r1_tokenizer__spec_validate(spec);
    if (st != R1_OK)
        return st;
    r1_tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok)
        return r1_error__set(R1_ERR_NO_MEMORY, "tokenizer: out of memory");
    tok->n_ids = spec->n_ids;
    tok->unk_id = spec->unk_id;
    tok->bos_id = spec->bos_id;
    tok->eos_id = spec->eos_id;
    tok->ignore_merges = spec->ignore_merges;
    tok->normalizer = spec->normalizer;
    build_byte_level(tok);
    st = build_vocab(tok, spec);
    if (st == R1_OK)
        st = build_merges(tok, spec);
    if (st == R1_OK)
        st = build_added(tok, spec);
    if (st == R1_OK)
        st = build_decode(tok);
    if (st == R1_OK)
        st = build_steps(tok, spec);
    if (st == R1_OK && spec->chat_template) {
        tok->chat_template = malloc((size_t)spec->chat_template_len + 1);
        if (!tok->chat_template)
            st = r1_error__set(R1_ERR_NO_MEMORY, "tokenizer: out of memory");
        else {
            memcpy(tok->chat_template, spec->chat_template, spec->chat_template_len);
            tok->chat_template[spec->chat_template_len] = '\0';
        }
    }
    if (st == R1_OK) {
        /* Zeroed by hand (explicit_bzero, which the compiler cannot turn back into calloc): a
         * calloc'd 1 MiB block is fresh pages that become resident one by one as words fill
         * their slots, so the resident set crept up over the first ~14k generated tokens
         * (test/soak.c); touched now, the cache is resident from the start. */
        tok->cache = malloc(CACHE_SLOTS * sizeof *tok->cache);
        if (tok->cache)
            explicit_bzero(tok->cache, CACHE_SLOTS * sizeof *tok->cache);
        if (!tok->cache)
            st = r1_error__set(R1_ERR_NO_MEMORY, "tokenizer: out of memory");
        else if (pthread_mutex_init(&tok->cache_lock, NULL) != 0) {
            free(tok->cache);
            tok->cache = NULL;
            st = r1_error__set(R1_ERR_NO_MEMORY, "tokenizer: cannot create a mutex");
        }
    }
    if (st != R1_OK) {
        r1_tokenizer__destroy(tok);
        return st;
    }
    *out = tok;
    return R1_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Encoding                                                                                   */

typedef struct piece {
    size_t off, len;
    int is_match;
} piece;

typedef struct sym {
    int32_t id;
    int32_t prev, next;
} sym;

typedef struct heap_item {
    uint32_t rank, pos;
    int32_t left, right;
} heap_item;

/* Per-call scratch, so a tokenizer can be shared between threads. */
typedef struct enc_ctx {
    const r1_tokenizer *tok;
    int32_t *ids;
    size_t n_ids, cap_ids;
    piece *pa, *pb, *pm; /* current pieces, next pieces, matches of one piece */
    size_t na, nb, nm, cap_a, cap_b, cap_m;
    sym *syms;
    size_t cap_syms;
    heap_item *heap;
    size_t cap_heap;
    char *scratch; /* the piece with its prefix space: bpe_word's words may point into it */
    size_t cap_scratch;
    char *key; /* bpe_word's vocabulary key (ignore_merges), apart from scratch */
    size_t cap_key;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jstack;
} enc_ctx;

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 1;
    size_t c = *cap ? *cap : 16;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q)
        return 0;
    *p = q;
    *cap = c;
    return 1;
}

static r1_status emit(enc_ctx *c, int32_t id)
{
    if (!grow((void **)&c->ids, &c->cap_ids, c->n_ids + 1, sizeof *c->ids))
        return r1_error__set(R1_ERR_NO_MEMORY, "tokenizer: out of memory");
    c->ids[c->n_ids++] = id;
    return R1_OK;
}

static r1_status push_piece(piece **v, size_t *n, size_t *cap, size_t off, size_t len, int m)
{
    if (!grow((void **)v, cap, *n + 1, sizeof **v))
        return r1_error__set(R1_ERR_NO_MEMORY, "tokenizer: out of memory");
    (*v)[*n].off = off;
    (*v)[*n].len = len;
    (*v)[*n].is_match = m;
    (*n)++;
    return R1_OK;
}

/* One match of re in s[0..n) starting at or after start: 1 found, 0 none, <0 error status. */
static int regex_next(enc_ctx *c, const pcre2_code *re, const char *s, size_t n, size_t start,
                      size_t *m0, size_t *m1)
{
    int rc = pcre2_match(re, (PCRE2_SPTR)s, n, start, PCRE2_NO_UTF_CHECK, c->md, c->mctx);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
        rc = pcre2_match(re, (PCRE2_SPTR)s, n, start, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, c->md,
                         c->mctx);
    if (rc == PCRE2_ERROR_NOMATCH)
        return 0;
    if (rc < 0) {
        if (rc == PCRE2_ERROR_NOMEMORY || rc == PCRE2_ERROR_HEAPLIMIT)
            return r1_error__set(R1_ERR_NO_MEMORY, "tokenizer: regex ran out of memory");
        return r1_error__set(R1_ERR_INTERNAL, "tokenizer: regex match failed (%d)", rc);
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
    *m0 = ov[0];
    *m1 = ov[1];
    return 1;
}

/* HF Pattern::find_matches: matches and the gaps between them, in order. */
static r1_status find_matches(enc_ctx *c, const pcre2_code *re, const char *s, size_t n)
{
    size_t prev = 0, pos = 0;
    c->nm = 0;
    while (pos <= n) {
        size_t m0 = 0, m1 = 0; /* set by regex_next when it matches */
        int r = regex_next(c, re, s, n, pos, &m0, &m1);
        if (r < 0)
            return (r1_status)r;
        if (r == 0)
            break;
        r1_status st = R1_OK;
        if (m0 != prev)
            st = push_piece(&c->pm, &c->nm, &c->cap_m, prev, m0 - prev, 0);
        if (st == R1_OK)
            st = push_piece(&c->pm, &c->nm, &c->cap_m, m0, m1 - m0, 1);
        if (st != R1_OK)
            return st;
        prev = m1;
        if (m1 > m0) {
            pos = m1;
        } else {
            /* An empty match: step over one character so the scan terminates. */
            if (m1 >= n)
                break;
            int kind;
            pos = m1 + utf8_scan((const uint8_t *)s, n, m1, &kind);
        }
    }
    if (prev != n)
        return push_piece(&c->pm, &c->nm, &c->cap_m, prev, n - prev, 0);
    return R1_OK;
}

/* Apply a split behaviour to the matches of one piece (HF SplitDelimiterBehavior). Appends the
 * resulting non-empty pieces, shifted by base, to pb. */
static r1_status apply_behavior(enc_ctx *c, const split_step *sp, size_t base)
{
    piece *m = c->pm;
    size_t n = c->nm, k = 0;
    if (sp->invert)
        for (size_t i = 0; i < n; i++)
            m[i].is_match = !m[i].is_match;
    /* Merge in place into m[0..k). */
    if (sp->behavior == R1_TOKENIZER_SPLIT_MERGED_WITH_NEXT) {
        int prev_match = 0;
        size_t w = n;
        for (size_t i = n; i-- > 0;) {
            piece p = m[i];
            if (p.is_match && !prev_match && w < n) {
                m[w].len += m[w].off - p.off;
                m[w].off = p.off;
            } else {
                m[--w] = p;
            }
            prev_match = p.is_match;
        }
        memmove(m, m + w, (n - w) * sizeof *m);
        k = n - w;
    } else {
        int prev_match = 0;
        for (size_t i = 0; i < n; i++) {
            piece p = m[i];
            int merge = 0;
            switch (sp->behavior) {
            case R1_TOKENIZER_SPLIT_REMOVED:
                if (p.is_match) {
                    prev_match = 1;
                    continue;
                }
                break;
            case R1_TOKENIZER_SPLIT_MERGED_WITH_PREVIOUS:
                merge = p.is_match && !prev_match && k > 0;
                break;
            case R1_TOKENIZER_SPLIT_CONTIGUOUS: merge = p.is_match == prev_match && k > 0; break;
            default: break;
            }
            prev_match = p.is_match;
            if (merge)
                m[k - 1].len = p.off + p.len - m[k - 1].off;
            else
                m[k++] = p;
        }
    }
    for (size_t i = 0; i < k; i++) {
        if (m[i].len == 0)
            continue;
        r1_status st = push_piece(&c->pb, &c->nb, &c->cap_b, base + m[i].off, m[i].len, 0);
        if (st != R1_OK)
            return st;
    }
    return R1_OK;
}

/* Binary min-heap ordered by (rank, pos): lowest rank first, leftmost among equal ranks. */
static int heap_less(const heap_item *a, const heap_item *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(heap_item *h, size_t *n, heap_item it)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&it, &h[p]))
            break;
        h[i] = h[p];
        i = p;
    }
    h[i] = it;
}

static heap_item heap_pop(heap_item *h, size_t *n)
{
    heap_item top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const heap_item *best = &last;
        if (l < *n && heap_less(&h[l], best)) {
            m = l;
            best = &h[l];
        }
        if (r < *n && heap_less(&h[r], best))
            m = r;
        if (m == i)
            break;
        h[i] = h[m];
        i = m;
    }
    if (*n > 0)
        h[i] = last;
    return top;
}

/* Queue the pair (pos, next of pos) when it has a merge rank. The queue keeps stale entries (a
 * pair whose side was merged since) until they are popped, so it holds more entries than there
 * are symbols: bpe_word reserves the proven bound, and the queue still grows rather than write
 * past its end should that bound ever be wrong. */
static r1_status try_pair(enc_ctx *c, size_t *nh, int32_t pos)
{
    sym *s = c->syms;
    int32_t nx = s[pos].next;
    if (nx < 0)
        return R1_OK;
    const merge_slot *m = mergemap_find(&c->tok->merges, s[pos].id, s[nx].id);
    if (!m)
        return R1_OK;
    if (!grow((void **)&c->heap, &c->cap_heap, *nh + 1, sizeof *c->heap))
        return r1_error__set(R1_ERR_NO_MEMORY, "tokenizer: out of memory");
    heap_item it = {m->rank, (uint32_t)pos, s[pos].id, s[nx].id};
    heap_push(c->heap, nh, it);
    return R1_OK;
}

static int cache_get(const r1_tokenizer *tok_c, const char *w, size_t n, uint64_t h, enc_ctx *c)
{
    r1_tokenizer *tok = (r1_tokenizer *)tok_c; /* only the cache, under its lock, is mutated */
    if (n > CACHE_KEY_MAX || pthread_mutex_trylock(&tok->cache_lock) != 0)
        return 0;
    const cache_entry *e = &tok->cache[h & (CACHE_SLOTS - 1)];
    int hit = e->key_len == n && e->hash == h && memcmp(e->key, w, n) == 0;
    int32_t ids[CACHE_IDS_MAX];
    size_t k = hit ? e->n_ids : 0;
    if (hit)
        memcpy(ids, e->ids, k * sizeof *ids);
    pthread_mutex_unlock(&tok->cache_lock);
    if (!hit || !grow((void **)&c->ids, &c->cap_ids, c->n_ids + k, sizeof *c->ids))
        return 0;
    if (k > 0) /* c->ids is still NULL when nothing was emitted yet */
        memcpy(c->ids + c->n_ids, ids, k * sizeof *ids);
    c->n_ids += k;
    return 1;
}

static void cache_put(const r1_tokenizer *tok_c, const char *w, size_t n, uint64_t h,
                      const int32_t *ids, size_t k)
{
    r1_tokenizer *tok = (r1_tokenizer *)tok_c;
    if (n > CACHE_KEY_MAX || n == 0 || k > CACHE_IDS_MAX ||
        pthread_mutex_trylock(&tok->cache_lock) != 0)
        return;
    cache_entry *e = &tok->cache[h & (CACHE_SLOTS - 1)];
    e->hash = h;
    e->key_len = (uint8_t)n;
    e->n_ids = (uint8_t)k;
    memcpy(e->key, w, n);
    if (k > 0) /* ids may be NULL for an empty result; memcpy from NULL is undefined */
        memcpy(e->ids, ids, k * sizeof *ids);
    pthread_mutex_unlock(&tok->cache_lock);
}

/* BPE on one word of raw bytes: start from the byte tokens, repeatedly merge the adjacent pair of
 * lowest rank (leftmost on ties) until no pair has a rank. */
static r1_status bpe_word(enc_ctx *c, const char *w, size_t n)
{
    const r1_tokenizer *tok = c->tok;
    if (n == 0)
        return R1_OK;
    if (tok->ignore_merges) {
        /* Not c->scratch: w may point into it (a piece given a prefix space), and growing it
         * would free w under us. */
        if (!grow((void **)&c->key, &c->cap_key, 2 * n, 1))
            return r1_error__set(R1_ERR_NO_MEMORY, "tokenizer: out of memory");
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            k += utf8_put(tok->byte_cp[(uint8_t)w[i]], c->key + k);
        int64_t id = strmap_find(&tok->vocab, tok->keys, tok->key_off, c->key, k);
        if (id >= 0)
            return emit(c, (int32_t)id);
    }
    if (n == 1 && tok->byte_id[(uint8_t)w[0]] >= 0)
        return emit(c, tok->byte_id[(uint8_t)w[0]]);
    uint64_t h = hash_bytes(w, n);
    if (cache_get(tok, w, n, h, c))
        return R1_OK;
    /* The queue starts with at most n - 1 pairs; each merge pops one entry and pushes at most
     * two, and there are at most n - 1 merges, so it never holds more than 2 (n - 1) entries
     * (stale ones included). Sizing it by n alone overflowed on ordinary words. */
    if (!grow((void **)&c->syms, &c->cap_syms, n, sizeof *c->syms) ||
        !grow((void **)&c->heap, &c->cap_heap, 2 * n, sizeof *c->heap))
        return r1_error__set(R1_ERR_NO_MEMORY, "tokenizer: out of memory");
    sym *s = c->syms;
    int32_t count = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = tok->byte_id[(uint8_t)w[i]];
        if (id < 0)
            id = tok->unk_id; /* HF drops a character with no token when there is no unk */
        if (id < 0)
            continue;
        s[count].id = id;
        s[count].prev = count - 1;
        s[count].next = -1;
        if (count > 0)
            s[count - 1].next = count;
        count++;
    }
    size_t nh = 0;
    r1_status st = R1_OK;
    for (int32_t i = 0; st == R1_OK && i + 1 < count; i++)
        st = try_pair(c, &nh, i);
    while (st == R1_OK && nh > 0) {
        heap_item it = heap_pop(c->heap, &nh);
        int32_t p = (int32_t)it.pos, q = s[p].next;
        if (s[p].id != it.left || q < 0 || s[q].id != it.right)
            continue; /* stale: one side was merged since the pair was queued */
        const merge_slot *m = mergemap_find(&tok->merges, it.left, it.right);
        s[p].id = m->id;
        s[p].next = s[q].next;
        if (s[q].next >= 0)
            s[s[q].next].prev = p;
        s[q].id = -1;
        if (s[p].prev >= 0)
            st = try_pair(c, &nh, s[p].prev);
        if (st == R1_OK)
            st = try_pair(c, &nh, p);
    }
    if (st != R1_OK)
        return st;
    size_t first = c->n_ids;
    for (int32_t i = count > 0 ? 0 : -1; i >= 0; i = s[i].next) {
        st = emit(c, s[i].id);
        if (st != R1_OK)
            return st;
    }
    /* A word whose every byte lacks a token (and no unk) emits nothing: c->ids may still be
     * NULL, and NULL + 0 is undefined, so an empty result is cached without touching it. */
    cache_put(tok, w, n, h, c->n_ids > first ? c->ids + first : NULL, c->n_ids - first);
    return R1_OK;
}

/* ByteLevel step on one piece: optional prefix space and GPT-2 regex split, then BPE. */
static r1_status byte_level_piece(enc_ctx *c, const char *p, size_t n)
{
    const r1_tokenizer *tok = c->tok;
    if (tok->add_prefix_space && (n == 0 || p[0] != ' ')) {
        if (!grow((void **)&c->scratch, &c->cap_scratch, n + 1, 1))
            return r1_error__set(R1_ERR_NO_MEMORY, "tokenizer: out of memory");
        c->scratch[0] = ' ';
        memcpy(c->scratch + 1, p, n);
        p = c->scratch;
        n++;
    }
    if (!tok->use_regex_bl)
        return bpe_word(c, p, n);
    size_t pos = 0;
    while (pos < n) {
        size_t m0 = 0, m1 = 0;
        int r = regex_next(c, tok->gpt2_re, p, n, pos, &m0, &m1);
        if (r < 0)
            return (r1_status)r;
        if (r == 0 || m1 == m0)
            m0 = m1 = n;
        r1_status st = bpe_word(c, p + pos, m0 - pos);
        if (st == R1_OK)
            st = bpe_word(c, p + m0, m1 - m0);
        if (st != R1_OK)
            return st;
        pos = m1;
    }
    return R1_OK;
}

/* Pre-tokenize and BPE one stretch of plain text. */
static r1_status encode_plain(enc_ctx *c, const char *text, size_t n)
{
    const r1_tokenizer *tok = c->tok;
    if (n == 0)
        return R1_OK;
    c->na = 0;
    r1_status st = push_piece(&c->pa, &c->na, &c->cap_a, 0, n, 0);
    for (uint32_t k = 0; st == R1_OK && k < tok->n_splits; k++) {
        c->nb = 0;
        for (size_t i = 0; st == R1_OK && i < c->na; i++) {
            st = find_matches(c, tok->splits[k].re, text + c->pa[i].off, c->pa[i].len);
            if (st == R1_OK)
                st = apply_behavior(c, &tok->splits[k], c->pa[i].off);
        }
        piece *t = c->pa;
        size_t tc = c->cap_a;
        c->pa = c->pb;
        c->cap_a = c->cap_b;
        c->na = c->nb;
        c->pb = t;
        c->cap_b = tc;
    }
    for (size_t i = 0; st == R1_OK && i < c->na; i++)
        st = byte_level_piece(c, text + c->pa[i].off, c->pa[i].len);
    return st;
}

static int is_ws(uint8_t b)
{
    return b == ' ' || (b >= '\t' && b <= '\r');
}

static int is_word_byte(uint8_t b)
{
    return (b >= '0' && b <= '9') || (b >= 'A' && b <= 'Z') || (b >= 'a' && b <= 'z') || b == '_' ||
           b >= 0x80;
}

/* Leftmost-longest match of an allowed added token in text[from..n). */
static int find_added(const r1_tokenizer *tok, const added_set *set, const char *text, size_t n,
                      size_t from, uint32_t flags, size_t *m0, size_t *m1, int32_t *id)
{
    int want_special = (flags & R1_TOKENIZE_PARSE_SPECIAL) != 0;
    int want_plain = (flags & (R1_TOKENIZE_PARSE_SPECIAL | R1_TOKENIZE_PARSE_ADDED)) != 0;
    if (set->n == 0 || !want_plain)
        return 0;
    for (size_t p = from; p < n; p++) {
        if (!set->first[(uint8_t)text[p]])
            continue;
        for (uint32_t j = 0; j < set->n_lens; j++) {
            size_t l = set->lens[j];
            if (l > n - p)
                continue;
            int64_t k = strmap_find(&set->map, set->bytes, set->off, text + p, l);
            if (k < 0)
                continue;
            const r1_tokenizer_added *a = &tok->added[set->index[k]];
            if (a->special && !want_special)
                continue;
            if (a->single_word && ((p > 0 && is_word_byte((uint8_t)text[p - 1])) ||
                                   (p + l < n && is_word_byte((uint8_t)text[p + l]))))
                continue;
            size_t s0 = p, s1 = p + l;
            if (a->lstrip)
                while (s0 > from && is_ws((uint8_t)text[s0 - 1]))
                    s0--;
            if (a->rstrip)
                while (s1 < n && is_ws((uint8_t)text[s1]))
                    s1++;
            *m0 = s0;
            *m1 = s1;
            *id = a->id;
            return 1;
        }
    }
    return 0;
}

/* Second pass, on the text left by the first one, normalized (as HF normalizes each stretch
 * between the added tokens that skip normalization): the tokens with normalized == 1. */
static r1_status encode_pass2(enc_ctx *c, const char *text_in, size_t n_in, uint32_t flags)
{
    const char *text = text_in;
    size_t n = n_in, pos = 0;
    char *norm = NULL;
    r1_status st = R1_OK;
    if (c->tok->normalizer == R1_TOKENIZER_NORM_NFC && n_in > 0) {
        st = r1_tokenizer__nfc(text_in, n_in, &norm, &n);
        if (st != R1_OK)
            return st;
        if (norm)
            text = norm;
    }
    while (pos < n) {
        size_t m0, m1;
        int32_t id;
        if (!find_added(c->tok, &c->tok->sets[1], text, n, pos, flags, &m0, &m1, &id))
            break;
        st = encode_plain(c, text + pos, m0 - pos);
        if (st == R1_OK)
            st = emit(c, id);
        if (st != R1_OK)
            break;
        pos = m1;
    }
    if (st == R1_OK)
        st = encode_plain(c, text + pos, n - pos);
    free(norm);
    return st;
}

/* HF matches added tokens that skip normalization on the raw text first, then the others on
 * the (here unnormalized) remainder. */
static r1_status encode_text(enc_ctx *c, const char *text, size_t n, uint32_t flags)
{
    size_t pos = 0;
    while (pos < n) {
        size_t m0, m1;
        int32_t id;
        if (!find_added(c->tok, &c->tok->sets[0], text, n, pos, flags, &m0, &m1, &id))
            break;
        r1_status st = encode_pass2(c, text + pos, m0 - pos, flags);
        if (st == R1_OK)
            st = emit(c, id);
        if (st != R1_OK)
            return st;
        pos = m1;
    }
    return encode_pass2(c, text + pos, n - pos, flags);
}

/* Validate UTF-8, or with replace copy it with each maximal invalid subpart as U+FFFD. Sets
 * *clean to NULL when the input was already valid. */
static r1_status check_utf8(const char *text, size_t n, int replace, char **clean, size_t *clean_n)
{
    const uint8_t *u = (const uint8_t *)text;
    size_t i = 0;
    *clean = NULL;
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        int kind;
        size_t l = utf8_scan(u, n, i, &kind);
        if (kind == UTF8_VALID) {
            i += l;
            continue;
        }
        if (!replace)
            return r1_error__set(R1_ERR_INVALID_UTF8, "tokenizer: invalid UTF-8 at byte %zu", i);
        break;
    }
    if (i >= n)
        return R1_OK;
    if (n > (SIZE_MAX - 1) / 3)
        return r1_error__set(R1_ERR_NO_MEMORY, "tokenizer: text too large");
    char *o = malloc(3 * n + 1);
    if (!o)
        return r1_error__set(R1_ERR_NO_MEMORY, "tokenizer: out of memory");
    memcpy(o, text, i);
    size_t k = i;
    while (i < n) {
        int kind;
        size_t l = utf8_scan(u, n, i, &kind);
        if (kind == UTF8_VALID) {
            memcpy(o + k, text + i, l);
            k += l;
        } else {
            k += utf8_put(0xFFFD, o + k);
        }
        i += l;
    }
    *clean = o;
    *clean_n = k;
    return R1_OK;
}

r1_status r1_tokenizer__encode(const r1_tokenizer *tok, const char *text, size_t text_len,
                               uint32_t flags, int32_t *ids, size_t cap, size_t *n_out)
{
    if (!tok || (!text && text_len) || (!ids && cap) || !n_out)
        return r1_error__set(R1_ERR_INVALID_ARG, "tokenizer encode: NULL argument");
    *n_out = 0;
    char *clean = NULL;
    size_t clean_n = 0;
    r1_status st =
        check_utf8(text, text_len, (flags & R1_TOKENIZE_REPLACE_INVALID) != 0, &clean, &clean_n);
    if (st != R1_OK)
        return st;
    if (clean) {
        text = clean;
        text_len = clean_n;
    }
    enc_ctx c;
    memset(&c, 0, sizeof c);
    c.tok = tok;
    c.md = pcre2_match_data_create(1, NULL);
    c.mctx = pcre2_match_context_create(NULL);
    c.jstack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
    if (!c.md || !c.mctx) {
        st = r1_error__set(R1_ERR_NO_MEMORY, "tokenizer: out of memory");
        goto done;
    }
    if (c.jstack)
        pcre2_jit_stack_assign(c.mctx, NULL, c.jstack);
    if ((flags & R1_TOKENIZE_ADD_BOS) && tok->bos_id >= 0)
        st = emit(&c, tok->bos_id);
    if (st == R1_OK && text_len)
        st = encode_text(&c, text, text_len, flags);
    if (st != R1_OK)
        goto done;
    *n_out = c.n_ids;
    if (c.n_ids > cap) {
        st = r1_error__set(R1_ERR_BUFFER_TOO_SMALL, "tokenizer: %zu ids do not fit in %zu", c.n_ids,
                           cap);
        goto done;
    }
    if (c.n_ids)
        memcpy(ids, c.ids, c.n_ids * sizeof *ids);
done:
    pcre2_match_data_free(c.md);
    pcre2_match_context_free(c.mctx);
    pcre2_jit_stack_free(c.jstack);
    free(c.ids);
    free(c.pa);
    free(c.pb);
    free(c.pm);
    free(c.syms);
    free(c.heap);
    free(c.scratch);
    free(c.key);
    free(clean);
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* Decoding                                                                                   */

static int id_used(const r1_tokenizer *tok, int32_t id)
{
    return id >= 0 && (uint32_t)id < tok->n_ids && (tok->in_vocab[id] || tok->is_added[id]);
}

r1_status r1_tokenizer__decode(const r1_tokenizer *tok, const int32_t *ids, size_t n_ids,
                               uint32_t flags, char *buf, size_t cap, size_t *len_out)
{
    if (!tok || (!ids && n_ids) || (!buf && cap) || !len_out)
        return r1_error__set(R1_ERR_INVALID_ARG, "tokenizer decode: NULL argument");
    *len_out = 0;
    size_t need = 0;
    for (size_t i = 0; i < n_ids; i++) {
        int32_t id = ids[i];
        if (!id_used(tok, id))
            return r1_error__set(R1_ERR_OUT_OF_RANGE, "tokenizer decode: id %d at %zu is unknown",
                                 (int)id, i);
        if ((flags & R1_DETOKENIZE_SKIP_SPECIAL) && tok->is_special[id])
            continue;
        need += tok->dec_off[id + 1] - tok->dec_off[id];
    }
    *len_out = need;
    if (need > cap)
        return r1_error__set(R1_ERR_BUFFER_TOO_SMALL, "tokenizer decode: needs %zu bytes", need);
    size_t o = 0;
    for (size_t i = 0; i < n_ids; i++) {
        int32_t id = ids[i];
        if ((flags & R1_DETOKENIZE_SKIP_SPECIAL) && tok->is_special[id])
            continue;
        size_t l = tok->dec_off[id + 1] - tok->dec_off[id];
        memcpy(buf + o, tok->dec + tok->dec_off[id], l);
        o += l;
    }
    return R1_OK;
}

const char *r1_tokenizer__token_bytes(const r1_tokenizer *tok, int32_t id, size_t *len_out)
{
    if (!tok || !id_used(tok, id))
        return NULL;
    if (len_out)
        *len_out = tok->dec_off[id + 1] - tok->dec_off[id];
    return tok->dec + tok->dec_off[id];
}

int32_t r1_tokenizer__token_to_id(const r1_tokenizer *tok, const char *s, size_t len)
{
    if (!tok || (!s && len))
        return -1;
    int64_t k = strmap_find(&tok->added_map, tok->added_keys, tok->added_off, s, len);
    if (k >= 0)
        return tok->added[k].id;
    return (int32_t)strmap_find(&tok->vocab, tok->keys, tok->key_off, s, len);
}

uint32_t r1_tokenizer__n_ids(const r1_tokenizer *tok)
{
    return tok ? tok->n_ids : 0;
}

int32_t r1_tokenizer__bos_id(const r1_tokenizer *tok)
{
    return tok ? tok->bos_id : -1;
}

int32_t r1_tokenizer__eos_id(const r1_tokenizer *tok)
{
    return tok ? tok->eos_id : -1;
}

int32_t r1_tokenizer__is_special(const r1_tokenizer *tok, int32_t id)
{
    return tok && id_used(tok, id) ? tok->is_special[id] : 0;
}

const char *r1_tokenizer__chat_template(const r1_tokenizer *tok)
{
    return tok ? tok->chat_template : NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Streaming decoder                                                                          */

struct r1_tokenizer_stream {
    const r1_tokenizer *tok;
    uint32_t flags;
    uint8_t held[4]; /* an incomplete UTF-8 prefix, at most 3 bytes */
    size_t n_held;
    uint8_t *work;
    size_t cap_work;
};

r1_status r1_tokenizer__stream_create(r1_tokenizer_stream **out, const r1_tokenizer *tok,
                                      uint32_t flags)
{
    if (!out || !tok)
        return r1_error__set(R1_ERR_INVALID_ARG, "tokenizer stream: NULL argument");
    r1_tokenizer_stream *s = calloc(1, sizeof *s);
    if (!s)
        return r1_error__set(R1_ERR_NO_MEMORY, "tokenizer stream: out of memory");
    s->tok = tok;
    s->flags = flags;
    *out = s;
    return R1_OK;
}

void r1_tokenizer__stream_destroy(r1_tokenizer_stream *st)
{
    if (!st)
        return;
    free(st->work);
    free(st);
}

/* Emit the valid part of w[0..n) (invalid subparts as U+FFFD) into out (NULL: count only);
 * returns bytes emitted and sets *tail to the length of an incomplete suffix, unless final. */
static size_t stream_emit(const uint8_t *w, size_t n, int final, char *out, size_t *tail)
{
    size_t i = 0, o = 0;
    char rep[4];
    *tail = 0;
    while (i < n) {
        int kind;
        size_t l = utf8_scan(w, n, i, &kind);
        if (kind == UTF8_TRUNCATED && !final) {
            *tail = n - i;
            break;
        }
        if (kind == UTF8_VALID) {
            if (out)
                memcpy(out + o, w + i, l);
            o += l;
        } else {
            size_t r = utf8_put(0xFFFD, rep);
            if (out)
                memcpy(out + o, rep, r);
            o += r;
        }
        i += l;
    }
    return o;
}

static r1_status stream_run(r1_tokenizer_stream *st, const char *add, size_t n_add, int final,
                            char *buf, size_t cap, size_t *len_out)
{
    size_t n = st->n_held + n_add;
    if (!grow((void **)&st->work, &st->cap_work, n + 1, 1))
        return r1_error__set(R1_ERR_NO_MEMORY, "tokenizer stream: out of memory");
    memcpy(st->work, st->held, st->n_held);
    if (n_add)
        memcpy(st->work + st->n_held, add, n_add);
    size_t tail;
    size_t need = stream_emit(st->work, n, final, NULL, &tail);
    *len_out = need;
    if (need > cap)
        return r1_error__set(R1_ERR_BUFFER_TOO_SMALL, "tokenizer stream: needs %zu bytes", need);
    stream_emit(st->work, n, final, buf, &tail);
    memcpy(st->held, st->work + n - tail, tail);
    st->n_held = tail;
    return R1_OK;
}

r1_status r1_tokenizer__stream_push(r1_tokenizer_stream *st, int32_t id, char *buf, size_t cap,
                                    size_t *len_out)
{
    if (!st || (!buf && cap) || !len_out)
        return r1_error__set(R1_ERR_INVALID_ARG, "tokenizer stream: NULL argument");
    *len_out = 0;
    const r1_tokenizer *tok = st->tok;
    if (!id_used(tok, id))
        return r1_error__set(R1_ERR_OUT_OF_RANGE, "tokenizer stream: id %d is unknown", (int)id);
    if ((st->flags & R1_DETOKENIZE_SKIP_SPECIAL) && tok->is_special[id])
        return R1_OK;
    return stream_run(st, tok->dec + tok->dec_off[id], tok->dec_off[id + 1] - tok->dec_off[id], 0,
                      buf, cap, len_out);
}

r1_status r1_tokenizer__stream_flush(r1_tokenizer_stream *st, char *buf, size_t cap,
                                     size_t *len_out)
{
    if (!st || (!buf && cap) || !len_out)
        return r1_error__set(R1_ERR_INVALID_ARG, "tokenizer stream: NULL argument");
    *len_out = 0;
    return stream_run(st, NULL, 0, 1, buf, cap, len_out);
}

size_t r1_tokenizer__stream_held(const r1_tokenizer_stream *st, uint8_t held[4])
{
    memcpy(held, st->held, st->n_held);
    return st->n_held;
}

void r1_tokenizer__stream_set_held(r1_tokenizer_stream *st, const uint8_t *held, size_t n)
{
    n = n < 3 ? n : 3;
    memcpy(st->held, held, n);
    st->n_held = n;
}
