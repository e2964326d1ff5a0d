/* tokenizer_json.c: read HF tokenizer.json and tokenizer_config.json into a tokenizer spec. */
#include "error.h"
#include "tokenizer.h"
#include "tokenizer_normalize.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static int is_null(const cJSON *j)
{
    return !j || cJSON_IsNull(j);
}

static char *dup_str(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

/* A boolean field with a default; a present non-boolean is a format error (-1). */
static int get_bool(const cJSON *obj, const char *name, int dflt)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (is_null(j))
        return dflt;
    return cJSON_IsBool(j) ? cJSON_IsTrue(j) : -1;
}

/* The normalizers Hugging Face's tokenizer.json files for these models declare: none (null or
 * an empty Sequence: DeepSeek-V3/R1, Llama-3) and NFC (Qwen2); a Sequence of them is their
 * composition (NFC after NFC is NFC). Anything else would change ids silently, so it is refused
 * by name. */
static r1_status read_normalizer(const cJSON *n, uint8_t *kind)
{
    if (is_null(n))
        return R1_OK;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(n, "type");
    if (!cJSON_IsString(type))
        return r1_error__set(R1_ERR_FORMAT, "tokenizer.json: normalizer without a type");
    if (strcmp(type->valuestring, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, "normalizers");
        const cJSON *e;
        if (!cJSON_IsArray(list))
            return r1_error__set(R1_ERR_FORMAT, "tokenizer.json: bad normalizer Sequence");
        cJSON_ArrayForEach(e, list)
        {
            if (is_null(e))
                return r1_error__set(R1_ERR_FORMAT, "tokenizer.json: null in a normalizer "
                                                    "Sequence");
            r1_status st = read_normalizer(e, kind);
            if (st != R1_OK)
                return st;
        }
        return R1_OK;
    }
    if (strcmp(type->valuestring, "NFC") == 0) {
        *kind = R1_TOKENIZER_NORM_NFC;
        return R1_OK;
    }
    return r1_error__set(R1_ERR_UNSUPPORTED,
                         "tokenizer.json: normalizer '%s' is not supported (only NFC is)",
                         type->valuestring);
}

typedef struct step_list {
    r1_tokenizer_step *v;
    uint32_t n, cap;
} step_list;

static r1_status add_step(step_list *l, const r1_tokenizer_step *s)
{
    if (l->n == l->cap) {
        uint32_t cap = l->cap ? 2 * l->cap : 4;
        r1_tokenizer_step *v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return r1_error__set(R1_ERR_NO_MEMORY, "tokenizer.json: out of memory");
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = *s;
    return R1_OK;
}

static const char *const BEHAVIORS[] = {"Removed", "Isolated", "MergedWithPrevious",
                                        "MergedWithNext", "Contiguous"};

static r1_status read_split(step_list *l, const cJSON *p)
{
    r1_tokenizer_step s;
    memset(&s, 0, sizeof s);
    s.kind = R1_TOKENIZER_STEP_SPLIT;
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(p, "pattern");
    const cJSON *re = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
    const cJSON *str = cJSON_GetObjectItemCaseSensitive(pat, "String");
    const cJSON *src = cJSON_IsString(re) ? re : str;
    if (!cJSON_IsString(src))
        return r1_error__set(R1_ERR_FORMAT, "tokenizer.json: Split without a pattern");
    s.is_regex = src == re;
    const cJSON *beh = cJSON_GetObjectItemCaseSensitive(p, "behavior");
    if (!cJSON_IsString(beh))
        return r1_error__set(R1_ERR_FORMAT, "tokenizer.json: Split without a behavior");
    uint32_t b = 0;
    while (b < 5 && strcmp(beh->valuestring, BEHAVIORS[b]) != 0)
        b++;
    if (b == 5)
        return r1_error__set(R1_ERR_UNSUPPORTED, "tokenizer.json: Split behavior '%s'",
                             beh->valuestring);
    s.behavior = (uint8_t)b;
    int inv = get_bool(p, "invert", 0);
    if (inv < 0)
        return r1_error__set(R1_ERR_FORMAT, "tokenizer.json: Split invert is not a boolean");
    s.invert = (uint8_t)inv;
    size_t n = strlen(src->valuestring);
    if (n > UINT32_MAX / 2)
        return r1_error__set(R1_ERR_FORMAT, "tokenizer.json: pattern too long");
    s.pattern = dup_str(src->valuestring, n);
    s.pattern_len = (uint32_t)n;
    if (!s.pattern)
        return r1_error__set(R1_ERR_NO_MEMORY, "tokenizer.json: out of memory");
    r1_status st = add_step(l, &s);
    if (st != R1_OK)
        free(s.pattern);
    return st;
}

static r1_status read_pretok(step_list *l, const cJSON *p)
{
    if (is_null(p))
        return R1_OK;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(p, "type");
    if (!cJSON_IsString(type))
        return r1_error__set(R1_ERR_FORMAT, "tokenizer.json: pre_tokenizer without a type");
    const char *t = type->valuestring;
    if (strcmp(t, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(p, "pretokenizers");
        const cJSON *e;
        if (!cJSON_IsArray(list))
            return r1_error__set(R1_ERR_FORMAT, "tokenizer.json: bad pre_tokenizer Sequence");
        cJSON_ArrayForEach(e, list)
        {
            r1_status st = read_pretok(l, e);
            if (st != R1_OK)
                return st;
        }
        return R1_OK;
    }
    if (strcmp(t, "Split") == 0)
        return read_split(l, p);
    if (strcmp(t, "ByteLevel") == 0) {
        r1_tokenizer_step s;
        memset(&s, 0, sizeof s);
        s.kind = R1_TOKENIZER_STEP_BYTE_LEVEL;
        /* HF's defaults for a ByteLevel without the fields. */
        int a = get_bool(p, "add_prefix_space", 1), r = get_bool(p, "use_regex", 1),
            o = get_bool(p, "trim_offsets", 1);
        if (a < 0 || r < 0 || o < 0)
            return r1_error__set(R1_ERR_FORMAT, "tokenizer.json: bad ByteLevel flags");
        s.add_prefix_space = (uint8_t)a;
        s.use_regex = (uint8_t)r;
        s.trim_offsets = (uint8_t)o;
        return add_step(l, &s);
    }
    return r1_error__set(R1_ERR_UNSUPPORTED, "tokenizer.json: pre_tokenizer '%s' is not supported",
                         t);
}

static r1_status check_model(const cJSON *m)
{
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(m, "type");
    if (!is_null(type) && (!cJSON_IsString(type) || strcmp(type->valuestring, "BPE") != 0))
        return r1_error__set(R1_ERR_UNSUPPORTED, "tokenizer.json: only BPE models are supported");
    if (!is_null(cJSON_GetObjectItemCaseSensitive(m, "dropout")))
        return r1_error__set(R1_ERR_UNSUPPORTED, "tokenizer.json: BPE dropout is not supported");
    static const char *const affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(m, affixes[i]);
        if (!is_null(a) && !(cJSON_IsString(a) && a->valuestring[0] == '\0'))
            return r1_error__set(R1_ERR_UNSUPPORTED, "tokenizer.json: %s is not supported",
                                 affixes[i]);
    }
    if (get_bool(m, "byte_fallback", 0) != 0)
        return r1_error__set(R1_ERR_UNSUPPORTED, "tokenizer.json: byte_fallback is not supported");
    return R1_OK;
}

/* Vocab key -> id. cJSON's object lookup is a linear scan, far too slow for resolving 255k merge
 * halves, so the keys (borrowed from the cJSON tree) are indexed here. */
typedef struct keymap {
    const char **key;
    int32_t *val;
    size_t mask;
} keymap;

static size_t key_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325u;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 0x100000001b3u;
    return (size_t)(h ^ (h >> 31));
}

static r1_status keymap_build(keymap *m, const cJSON *vocab)
{
    size_t n = (size_t)cJSON_GetArraySize(vocab), cap = 16;
    while (cap < 2 * n + 2)
        cap <<= 1;
    m->key = calloc(cap, sizeof *m->key);
    m->val = calloc(cap, sizeof *m->val);
    m->mask = cap - 1;
    if (!m->key || !m->val)
        return r1_error__set(R1_ERR_NO_MEMORY, "tokenizer.json: out of memory");
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab)
    {
        size_t i = key_hash(e->string) & m->mask;
        while (m->key[i] && strcmp(m->key[i], e->string) != 0)
            i = (i + 1) & m->mask;
        m->key[i] = e->string;
        m->val[i] = (int32_t)e->valuedouble;
    }
    return R1_OK;
}

static int32_t keymap_find(const keymap *m, const char *s)
{
    size_t i = key_hash(s) & m->mask;
    while (m->key[i]) {
        if (strcmp(m->key[i], s) == 0)
            return m->val[i];
        i = (i + 1) & m->mask;
    }
    return -1;
}

/* Fill per-id token bytes from the vocab object and the added tokens. */
static r1_status read_vocab(r1_tokenizer_spec *s, const cJSON *vocab, const cJSON *added)
{
    const cJSON *e;
    int64_t max_id = -1;
    uint64_t total = 0;
    cJSON_ArrayForEach(e, vocab)
    {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble >= (double)(1 << 30) ||
            e->valuedouble != (double)(int64_t)e->valuedouble || !e->string)
            return r1_error__set(R1_ERR_FORMAT, "tokenizer.json: bad vocab entry");
        if ((int64_t)e->valuedouble > max_id)
            max_id = (int64_t)e->valuedouble;
        total += strlen(e->string);
    }
    cJSON_ArrayForEach(e, added)
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble >= (double)(1 << 30) ||
            id->valuedouble != (double)(int64_t)id->valuedouble || !cJSON_IsString(content))
            return r1_error__set(R1_ERR_FORMAT, "tokenizer.json: bad added token");
        if ((int64_t)id->valuedouble > max_id)
            max_id = (int64_t)id->valuedouble;
        total += strlen(content->valuestring);
        s->n_added++;
    }
    if (max_id < 0)
        return r1_error__set(R1_ERR_FORMAT, "tokenizer.json: empty vocabulary");
    s->n_ids = (uint32_t)max_id + 1;
    uint32_t *len = calloc(s->n_ids, sizeof *len);
    const char **src = calloc(s->n_ids, sizeof *src);
    s->token_off = calloc((size_t)s->n_ids + 1, sizeof *s->token_off);
    s->in_vocab = calloc(s->n_ids, 1);
    s->token_bytes = malloc(total + 1);
    s->added = calloc((size_t)s->n_added + 1, sizeof *s->added);
    r1_status st = R1_OK;
    if (!len || !src || !s->token_off || !s->in_vocab || !s->token_bytes || !s->added) {
        st = r1_error__set(R1_ERR_NO_MEMORY, "tokenizer.json: out of memory");
        goto done;
    }
    cJSON_ArrayForEach(e, vocab)
    {
        uint32_t id = (uint32_t)e->valuedouble;
        if (s->in_vocab[id]) {
            st = r1_error__set(R1_ERR_FORMAT, "tokenizer.json: two vocab keys for id %u", id);
            goto done;
        }
        s->in_vocab[id] = 1;
        src[id] = e->string;
        len[id] = (uint32_t)strlen(e->string);
    }
    uint32_t k = 0;
    cJSON_ArrayForEach(e, added)
    {
        r1_tokenizer_added *a = &s->added[k++];
        const char *c = cJSON_GetObjectItemCaseSensitive(e, "content")->valuestring;
        int f[5];
        static const char *const names[5] = {"special", "lstrip", "rstrip", "normalized",
                                             "single_word"};
        /* HF: normalized defaults to !special. */
        int special = get_bool(e, "special", 0);
        for (int i = 0; i < 5; i++) {
            f[i] = get_bool(e, names[i], i == 3 ? !special : 0);
            if (f[i] < 0) {
                st = r1_error__set(R1_ERR_FORMAT, "tokenizer.json: bad added token flag");
                goto done;
            }
        }
        a->id = (int32_t)cJSON_GetObjectItemCaseSensitive(e, "id")->valuedouble;
        a->content_len = (uint32_t)strlen(c);
        a->content = dup_str(c, a->content_len);
        if (!a->content) {
            st = r1_error__set(R1_ERR_NO_MEMORY, "tokenizer.json: out of memory");
            goto done;
        }
        a->special = (uint8_t)f[0];
        a->lstrip = (uint8_t)f[1];
        a->rstrip = (uint8_t)f[2];
        a->normalized = (uint8_t)f[3];
        a->single_word = (uint8_t)f[4];
        if (!s->in_vocab[a->id]) {
            src[a->id] = a->content;
            len[a->id] = a->content_len;
        }
    }
    for (uint32_t i = 0; i < s->n_ids; i++) {
        if (len[i])
            memcpy(s->token_bytes + s->token_off[i], src[i], len[i]);
        s->token_off[i + 1] = s->token_off[i] + len[i];
    }
done:
    free(len);
    free(src);
    return st;
}

static r1_status read_merges(r1_tokenizer_spec *s, const cJSON *merges, const keymap *vocab)
{
    int n = cJSON_GetArraySize(merges);
    s->merges = malloc(((size_t)n + 1) * 2 * sizeof *s->merges);
    if (!s->merges)
        return r1_error__set(R1_ERR_NO_MEMORY, "tokenizer.json: out of memory");
    const cJSON *e;
    uint32_t r = 0;
    char *buf = NULL;
    r1_status st = R1_OK;
    cJSON_ArrayForEach(e, merges)
    {
        const char *part[2] = {NULL, NULL};
        if (cJSON_IsString(e)) {
            const char *sp = strchr(e->valuestring, ' ');
            if (!sp || strchr(sp + 1, ' ')) {
                st = r1_error__set(R1_ERR_FORMAT, "tokenizer.json: bad merge %u", r);
                break;
            }
            free(buf);
            buf = dup_str(e->valuestring, strlen(e->valuestring));
            if (!buf) {
                st = r1_error__set(R1_ERR_NO_MEMORY, "tokenizer.json: out of memory");
                break;
            }
            buf[sp - e->valuestring] = '\0';
            part[0] = buf;
            part[1] = buf + (sp - e->valuestring) + 1;
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 &&
                   cJSON_IsString(cJSON_GetArrayItem(e, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(e, 1))) {
            part[0] = cJSON_GetArrayItem(e, 0)->valuestring;
            part[1] = cJSON_GetArrayItem(e, 1)->valuestring;
        } else {
            st = r1_error__set(R1_ERR_FORMAT, "tokenizer.json: bad merge %u", r);
            break;
        }
        for (int i = 0; i < 2; i++) {
            int32_t id = keymap_find(vocab, part[i]);
            if (id < 0) {
                st = r1_error__set(R1_ERR_FORMAT,
                                   "tokenizer.json: merge %u names '%s', not in vocab", r, part[i]);
                break;
            }
            s->merges[2 * r + (uint32_t)i] = id;
        }
        if (st != R1_OK)
            break;
        r++;
    }
    free(buf);
    s->n_merges = r;
    return st;
}

static int32_t resolve_token(const r1_tokenizer_spec *s, const keymap *vocab, const cJSON *tok)
{
    const char *name = NULL;
    if (cJSON_IsString(tok))
        name = tok->valuestring;
    else if (cJSON_IsObject(tok) &&
             cJSON_IsString(cJSON_GetObjectItemCaseSensitive(tok, "content")))
        name = cJSON_GetObjectItemCaseSensitive(tok, "content")->valuestring;
    if (!name)
        return -2;
    for (uint32_t i = 0; i < s->n_added; i++)
        if (strcmp(s->added[i].content, name) == 0)
            return s->added[i].id;
    return keymap_find(vocab, name);
}

static r1_status read_config(r1_tokenizer_spec *s, const cJSON *cfg, const keymap *vocab)
{
    if (!cJSON_IsObject(cfg))
        return r1_error__set(R1_ERR_FORMAT, "tokenizer_config.json: not an object");
    int ab = get_bool(cfg, "add_bos_token", 0), ae = get_bool(cfg, "add_eos_token", 0);
    if (ab < 0 || ae < 0)
        return r1_error__set(R1_ERR_FORMAT, "tokenizer_config.json: bad add_*_token");
    s->add_bos = (uint8_t)ab;
    s->add_eos = (uint8_t)ae;
    static const char *const names[2] = {"bos_token", "eos_token"};
    for (int i = 0; i < 2; i++) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(cfg, names[i]);
        if (is_null(t))
            continue;
        int32_t id = resolve_token(s, vocab, t);
        if (id < 0)
            return r1_error__set(R1_ERR_FORMAT, "tokenizer_config.json: %s is %s", names[i],
                                 id == -2 ? "malformed" : "not a known token");
        if (i == 0)
            s->bos_id = id;
        else
            s->eos_id = id;
    }
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template");
    const char *tmpl = NULL;
    if (cJSON_IsString(ct)) {
        tmpl = ct->valuestring;
    } else if (cJSON_IsArray(ct)) {
        /* The list form names templates; the one called "default" is the chat template. */
        const cJSON *e;
        cJSON_ArrayForEach(e, ct)
        {
            const cJSON *nm = cJSON_GetObjectItemCaseSensitive(e, "name");
            const cJSON *tp = cJSON_GetObjectItemCaseSensitive(e, "template");
            if (cJSON_IsString(nm) && cJSON_IsString(tp) && strcmp(nm->valuestring, "default") == 0)
                tmpl = tp->valuestring;
        }
    } else if (!is_null(ct)) {
        return r1_error__set(R1_ERR_FORMAT, "tokenizer_config.json: bad chat_template");
    }
    if (tmpl) {
        size_t n = strlen(tmpl);
        if (n > UINT32_MAX / 2)
            return r1_error__set(R1_ERR_FORMAT, "tokenizer_config.json: chat_template too long");
        s->chat_template = dup_str(tmpl, n);
        if (!s->chat_template)
            return r1_error__set(R1_ERR_NO_MEMORY, "tokenizer_config.json: out of memory");
        s->chat_template_len = (uint32_t)n;
    }
    return R1_OK;
}

static r1_status check_decoder(const cJSON *d)
{
    if (is_null(d))
        return R1_OK;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(d, "type");
    if (cJSON_IsString(type) && strcmp(type->valuestring, "ByteLevel") == 0)
        return R1_OK;
    return r1_error__set(R1_ERR_UNSUPPORTED,
                         "tokenizer.json: only the ByteLevel decoder is supported");
}

r1_status r1_tokenizer__spec_from_json(r1_tokenizer_spec **out, const char *json, size_t json_len,
                                       const char *config_json, size_t config_len)
{
    if (!out || !json)
        return r1_error__set(R1_ERR_INVALID_ARG, "tokenizer.json: NULL argument");
    *out = NULL;
    r1_tokenizer_spec *s = NULL;
    cJSON *cfg = NULL;
    keymap vidx = {NULL, NULL, 0};
    cJSON *root = cJSON_ParseWithLength(json, json_len);
    r1_status st;
    if (!cJSON_IsObject(root)) {
        st = r1_error__set(R1_ERR_FORMAT, "tokenizer.json: not valid JSON");
        goto done;
    }
    st = r1_tokenizer__spec_create(&s);
    if (st != R1_OK)
        goto done;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (!cJSON_IsObject(model) || !cJSON_IsObject(vocab) || !cJSON_IsArray(merges) ||
        (!is_null(added) && !cJSON_IsArray(added))) {
        st = r1_error__set(R1_ERR_FORMAT, "tokenizer.json: missing model, vocab or merges");
        goto done;
    }
    if ((st = check_model(model)) != R1_OK ||
        (st = read_normalizer(cJSON_GetObjectItemCaseSensitive(root, "normalizer"),
                              &s->normalizer)) != R1_OK ||
        (st = check_decoder(cJSON_GetObjectItemCaseSensitive(root, "decoder"))) != R1_OK)
        goto done;
    int im = get_bool(model, "ignore_merges", 0);
    if (im < 0) {
        st = r1_error__set(R1_ERR_FORMAT, "tokenizer.json: bad ignore_merges");
        goto done;
    }
    s->ignore_merges = (uint8_t)im;
    if ((st = read_vocab(s, vocab, is_null(added) ? NULL : added)) != R1_OK ||
        (st = keymap_build(&vidx, vocab)) != R1_OK || (st = read_merges(s, merges, &vidx)) != R1_OK)
        goto done;
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    if (!is_null(unk)) {
        s->unk_id = resolve_token(s, &vidx, unk);
        if (s->unk_id < 0) {
            st = r1_error__set(R1_ERR_FORMAT, "tokenizer.json: unk_token is not in vocab");
            goto done;
        }
    }
    step_list steps = {NULL, 0, 0};
    st = read_pretok(&steps, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"));
    s->steps = steps.v;
    s->n_steps = steps.n;
    if (st != R1_OK)
        goto done;
    if (config_json) {
        cfg = cJSON_ParseWithLength(config_json, config_len);
        if (!cfg) {
            st = r1_error__set(R1_ERR_FORMAT, "tokenizer_config.json: not valid JSON");
            goto done;
        }
        if ((st = read_config(s, cfg, &vidx)) != R1_OK)
            goto done;
    }
    st = r1_tokenizer__spec_validate(s);
done:
    cJSON_Delete(root);
    cJSON_Delete(cfg);
    free(vidx.key);
    free(vidx.val);
    if (st != R1_OK) {
        r1_tokenizer__spec_destroy(s);
        return st;
    }
    *out = s;
    return R1_OK;
}
