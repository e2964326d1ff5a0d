/* tokenizer_blob.c: the tokenizer spec as a little-endian blob (docs/tokenizer-blob.md). */
#include "error.h"
#include "tokenizer.h"

#include <stdlib.h>
#include <string.h>

/* Version 2 is version 1 with a normalizer in the byte version 1 reserves; a spec without a
 * normalizer is still written as version 1, byte for byte as before. */
enum { BLOB_HEADER_BYTES = 20, BLOB_VERSION = 1, BLOB_VERSION_NORMALIZER = 2 };
static const uint8_t BLOB_MAGIC[4] = {'R', '1', 'T', 'K'};
#define BLOB_NO_TEMPLATE UINT32_C(0xFFFFFFFF)

/* CRC-32 (ISO-HDLC: reflected polynomial 0xEDB88320, init and final xor 0xFFFFFFFF; zlib's). */
static uint32_t crc32_bytes(const uint8_t *p, size_t n)
{
    static uint32_t table[256];
    static int ready;
    if (!ready) {
        /* Idempotent: concurrent first calls write identical values. */
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        ready = 1;
    }
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++)
        c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

/* Writer: counts when buf is NULL. */
typedef struct wr {
    uint8_t *p;
    size_t n;
} wr;

static void put_bytes(wr *w, const void *s, size_t n)
{
    if (w->p && n)
        memcpy(w->p + w->n, s, n);
    w->n += n;
}

static void put_u8(wr *w, uint8_t v)
{
    put_bytes(w, &v, 1);
}

static void put_u32(wr *w, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put_bytes(w, b, 4);
}

static void put_u64(wr *w, uint64_t v)
{
    put_u32(w, (uint32_t)v);
    put_u32(w, (uint32_t)(v >> 32));
}

static void write_payload(const r1_tokenizer_spec *s, wr *w)
{
    put_u32(w, s->n_ids);
    put_u32(w, s->n_merges);
    put_u32(w, s->n_added);
    put_u32(w, s->n_steps);
    put_u32(w, (uint32_t)s->unk_id);
    put_u32(w, (uint32_t)s->bos_id);
    put_u32(w, (uint32_t)s->eos_id);
    put_u8(w, s->ignore_merges);
    put_u8(w, s->add_bos);
    put_u8(w, s->add_eos);
    put_u8(w, s->normalizer);
    put_u32(w, s->chat_template ? s->chat_template_len : BLOB_NO_TEMPLATE);
    if (s->chat_template)
        put_bytes(w, s->chat_template, s->chat_template_len);
    for (uint32_t i = 0; i < s->n_ids; i++)
        put_u32(w, (uint32_t)(s->token_off[i + 1] - s->token_off[i]));
    put_bytes(w, s->in_vocab, s->n_ids);
    put_bytes(w, s->token_bytes, s->token_off[s->n_ids]);
    for (uint64_t i = 0; i < 2 * (uint64_t)s->n_merges; i++)
        put_u32(w, (uint32_t)s->merges[i]);
    for (uint32_t i = 0; i < s->n_added; i++) {
        const r1_tokenizer_added *a = &s->added[i];
        put_u32(w, (uint32_t)a->id);
        put_u8(w, (uint8_t)(a->special | a->lstrip << 1 | a->rstrip << 2 | a->normalized << 3 |
                            a->single_word << 4));
        put_u32(w, a->content_len);
        put_bytes(w, a->content, a->content_len);
    }
    for (uint32_t i = 0; i < s->n_steps; i++) {
        const r1_tokenizer_step *t = &s->steps[i];
        put_u8(w, t->kind);
        if (t->kind == R1_TOKENIZER_STEP_SPLIT) {
            put_u8(w, t->is_regex);
            put_u8(w, t->behavior);
            put_u8(w, t->invert);
            put_u32(w, t->pattern_len);
            put_bytes(w, t->pattern, t->pattern_len);
        } else {
            put_u8(w, t->add_prefix_space);
            put_u8(w, t->use_regex);
            put_u8(w, t->trim_offsets);
            put_u32(w, 0);
        }
    }
}

r1_status r1_tokenizer__spec_serialize(const r1_tokenizer_spec *spec, uint8_t *buf, size_t cap,
                                       size_t *len_out)
{
    if (!spec || !len_out || (!buf && cap))
        return r1_error__set(R1_ERR_INVALID_ARG, "tokenizer blob: NULL argument");
    *len_out = 0;
    r1_status st = r1_tokenizer__spec_validate(spec);
    if (st != R1_OK)
        return st;
    wr count = {NULL, 0};
    write_payload(spec, &count);
    size_t need = BLOB_HEADER_BYTES + count.n;
    *len_out = need;
    if (need > cap)
        return r1_error__set(R1_ERR_BUFFER_TOO_SMALL, "tokenizer blob: needs %zu bytes", need);
    wr w = {buf + BLOB_HEADER_BYTES, 0};
    write_payload(spec, &w);
    wr h = {buf, 0};
    put_bytes(&h, BLOB_MAGIC, 4);
    put_u32(&h, spec->normalizer ? BLOB_VERSION_NORMALIZER : BLOB_VERSION);
    put_u64(&h, count.n);
    put_u32(&h, crc32_bytes(buf + BLOB_HEADER_BYTES, count.n));
    return R1_OK;
}

/* Reader over untrusted bytes: every read checks the remaining length first. */
typedef struct rd {
    const uint8_t *p;
    size_t n, at;
    int bad;
} rd;

static const uint8_t *take(rd *r, uint64_t n)
{
    if (r->bad || n > r->n - r->at) {
        r->bad = 1;
        return NULL;
    }
    const uint8_t *q = r->p + r->at;
    r->at += (size_t)n;
    return q;
}

static uint8_t get_u8(rd *r)
{
    const uint8_t *q = take(r, 1);
    return q ? q[0] : 0;
}

static uint32_t get_u32(rd *r)
{
    const uint8_t *q = take(r, 4);
    return q ? (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24
             : 0;
}

/* A copy of n bytes plus a NUL, or NULL (r->bad set when the bytes are missing). */
static char *get_str(rd *r, uint32_t n)
{
    const uint8_t *q = take(r, n);
    if (!q)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (s) {
        memcpy(s, q, n);
        s[n] = '\0';
    }
    return s;
}

static r1_status read_payload(r1_tokenizer_spec *s, rd *r, uint32_t version)
{
    s->n_ids = get_u32(r);
    s->n_merges = get_u32(r);
    s->n_added = get_u32(r);
    s->n_steps = get_u32(r);
    s->unk_id = (int32_t)get_u32(r);
    s->bos_id = (int32_t)get_u32(r);
    s->eos_id = (int32_t)get_u32(r);
    s->ignore_merges = get_u8(r);
    s->add_bos = get_u8(r);
    s->add_eos = get_u8(r);
    s->normalizer = get_u8(r);
    uint32_t tl = get_u32(r);
    /* Version 2 exists for its normalizer: a version 2 blob without one is not written. */
    if (r->bad || (version == BLOB_VERSION) != (s->normalizer == 0))
        return R1_ERR_FORMAT;
    if (tl != BLOB_NO_TEMPLATE) {
        s->chat_template = get_str(r, tl);
        s->chat_template_len = tl;
        if (!s->chat_template)
            return r->bad ? R1_ERR_FORMAT : R1_ERR_NO_MEMORY;
    }
    /* Each count must fit in the bytes left before anything is allocated for it. */
    size_t left = r->n - r->at;
    if (s->n_ids == 0 || s->n_ids > left / 5 || s->n_merges > left / 8 || s->n_added > left / 9 ||
        s->n_steps > left / 8)
        return R1_ERR_FORMAT;
    s->token_off = malloc(((size_t)s->n_ids + 1) * sizeof *s->token_off);
    s->in_vocab = malloc(s->n_ids);
    s->merges = malloc(((size_t)s->n_merges + 1) * 2 * sizeof *s->merges);
    s->added = calloc((size_t)s->n_added + 1, sizeof *s->added);
    s->steps = calloc((size_t)s->n_steps + 1, sizeof *s->steps);
    if (!s->token_off || !s->in_vocab || !s->merges || !s->added || !s->steps)
        return R1_ERR_NO_MEMORY;
    s->token_off[0] = 0;
    for (uint32_t i = 0; i < s->n_ids; i++)
        s->token_off[i + 1] = s->token_off[i] + get_u32(r);
    const uint8_t *iv = take(r, s->n_ids);
    if (!iv)
        return R1_ERR_FORMAT;
    memcpy(s->in_vocab, iv, s->n_ids);
    uint64_t nb = s->token_off[s->n_ids];
    const uint8_t *tb = take(r, nb);
    if (!tb)
        return R1_ERR_FORMAT;
    s->token_bytes = malloc((size_t)nb + 1);
    if (!s->token_bytes)
        return R1_ERR_NO_MEMORY;
    memcpy(s->token_bytes, tb, (size_t)nb);
    for (uint64_t i = 0; i < 2 * (uint64_t)s->n_merges; i++)
        s->merges[i] = (int32_t)get_u32(r);
    for (uint32_t i = 0; i < s->n_added && !r->bad; i++) {
        r1_tokenizer_added *a = &s->added[i];
        a->id = (int32_t)get_u32(r);
        uint8_t f = get_u8(r);
        if (f & 0xE0)
            return R1_ERR_FORMAT;
        a->special = f & 1;
        a->lstrip = (f >> 1) & 1;
        a->rstrip = (f >> 2) & 1;
        a->normalized = (f >> 3) & 1;
        a->single_word = (f >> 4) & 1;
        a->content_len = get_u32(r);
        a->content = get_str(r, a->content_len);
        if (!a->content)
            return r->bad ? R1_ERR_FORMAT : R1_ERR_NO_MEMORY;
    }
    for (uint32_t i = 0; i < s->n_steps && !r->bad; i++) {
        r1_tokenizer_step *t = &s->steps[i];
        t->kind = get_u8(r);
        uint8_t a = get_u8(r), b = get_u8(r), c = get_u8(r);
        uint32_t pl = get_u32(r);
        if (t->kind == R1_TOKENIZER_STEP_SPLIT) {
            t->is_regex = a;
            t->behavior = b;
            t->invert = c;
            t->pattern_len = pl;
            t->pattern = get_str(r, pl);
            if (!t->pattern)
                return r->bad ? R1_ERR_FORMAT : R1_ERR_NO_MEMORY;
        } else if (t->kind == R1_TOKENIZER_STEP_BYTE_LEVEL && pl == 0) {
            t->add_prefix_space = a;
            t->use_regex = b;
            t->trim_offsets = c;
        } else {
            return R1_ERR_FORMAT;
        }
    }
    if (r->bad || r->at != r->n)
        return R1_ERR_FORMAT;
    return R1_OK;
}

r1_status r1_tokenizer__spec_parse(r1_tokenizer_spec **out, const uint8_t *buf, size_t len)
{
    if (!out || (!buf && len))
        return r1_error__set(R1_ERR_INVALID_ARG, "tokenizer blob: NULL argument");
    *out = NULL;
    rd h = {buf, len, 0, 0};
    const uint8_t *magic = take(&h, 4);
    uint32_t version = get_u32(&h);
    uint32_t lo = get_u32(&h), hi = get_u32(&h);
    uint32_t crc = get_u32(&h);
    if (h.bad || memcmp(magic, BLOB_MAGIC, 4) != 0)
        return r1_error__set(R1_ERR_FORMAT, "tokenizer blob: bad header");
    if (version != BLOB_VERSION && version != BLOB_VERSION_NORMALIZER)
        return r1_error__set(R1_ERR_UNSUPPORTED, "tokenizer blob: version %u", version);
    uint64_t plen = (uint64_t)hi << 32 | lo;
    if (plen != len - BLOB_HEADER_BYTES)
        return r1_error__set(R1_ERR_FORMAT, "tokenizer blob: length %llu, have %zu bytes",
                             (unsigned long long)plen, len - BLOB_HEADER_BYTES);
    if (crc32_bytes(buf + BLOB_HEADER_BYTES, (size_t)plen) != crc)
        return r1_error__set(R1_ERR_CHECKSUM, "tokenizer blob: CRC-32 mismatch");
    r1_tokenizer_spec *s;
    r1_status st = r1_tokenizer__spec_create(&s);
    if (st != R1_OK)
        return st;
    rd r = {buf + BLOB_HEADER_BYTES, (size_t)plen, 0, 0};
    st = read_payload(s, &r, version);
    if (st == R1_ERR_FORMAT)
        st = r1_error__set(R1_ERR_FORMAT, "tokenizer blob: malformed payload near byte %zu",
                           BLOB_HEADER_BYTES + r.at);
    else if (st == R1_ERR_NO_MEMORY)
        st = r1_error__set(R1_ERR_NO_MEMORY, "tokenizer blob: out of memory");
    if (st == R1_OK)
        st = r1_tokenizer__spec_validate(s);
    if (st != R1_OK) {
        r1_tokenizer__spec_destroy(s);
        return st;
    }
    *out = s;
    return R1_OK;
}
