/* convert.c: streams a Hugging Face DeepSeek checkpoint into an .r1m file (docs/format.md). */
#include "convert.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blob_codec.h"
#include "checksum.h"
#include "container.h"
#include "error.h"
#include "le.h"
#include "model_config.h"
#include "model_schema.h"
#include "safetensors.h"
#include "tokenizer.h"

/* ---- quantisation rules ------------------------------------------------------------------ */

static const char *const class_names[R1_QCLASS_COUNT] = {"experts", "shared", "attn", "dense",
                                                         "head"};

/* A target type: any weight type the converter can produce from float32 rows (every type but
 * fp8, whose block scales only the checkpoint can supply), or "keep" (-1); -2 when unknown. */
static int32_t rule_value(const char *s, size_t n)
{
    if (n == 4 && memcmp(s, "keep", 4) == 0)
        return -1;
    char name[16];
    if (n == 0 || n >= sizeof name)
        return -2;
    memcpy(name, s, n);
    name[n] = '\0';
    int32_t dt = r1_dtype__from_name(name);
    return dt < 0 || dt == R1_DTYPE_FP8_E4M3 ? -2 : dt;
}

r1_status r1_convert__parse_rules(const char *spec, r1_quant_rules *out)
{
    for (int c = 0; c < R1_QCLASS_COUNT; c++)
        out->rule[c] = -1;
    if (spec == NULL || spec[0] == 0)
        return R1_OK;
    if (strchr(spec, '=') == NULL) {
        int32_t v = rule_value(spec, strlen(spec));
        if (v == -2)
            return r1_error__set(R1_ERR_INVALID_ARG,
                                 "unknown quantisation type '%.64s' "
                                 "(expected q8_0, q4_0, bf16, f16, f32 or keep)",
                                 spec);
        for (int c = 0; c < R1_QCLASS_COUNT; c++)
            out->rule[c] = v;
        return R1_OK;
    }
    const char *p = spec;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', n);
        int cls = -1;
        if (eq)
            for (int c = 0; c < R1_QCLASS_COUNT; c++)
                if (strlen(class_names[c]) == (size_t)(eq - p) &&
                    memcmp(class_names[c], p, (size_t)(eq - p)) == 0)
                    cls = c;
        int32_t v = eq ? rule_value(eq + 1, n - (size_t)(eq + 1 - p)) : -2;
        if (cls < 0 || v == -2)
            return r1_error__set(R1_ERR_INVALID_ARG,
                                 "bad quantisation rule '%.*s' (expected "
                                 "CLASS=TYPE with CLASS in experts, shared, attn, dense, head and "
                                 "TYPE in q8_0, q4_0, bf16, f16, f32, keep)",
                                 (int)n, p);
        out->rule[cls] = v;
        p += n;
        if (*p == ',')
            p++;
    }
    return R1_OK;
}

void r1_convert__format_rules(const r1_quant_rules *rules, char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = 0;
    for (int c = 0; c < R1_QCLASS_COUNT && used < cap; c++) {
        int32_t r = rules->rule[c];
        int n = snprintf(buf + used, cap - used, "%s%s=%s", c ? "," : "", class_names[c],
                         r < 0 ? "keep" : r1_dtype__traits(r)->name);
        used += n > 0 ? (size_t)n : 0;
    }
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && memcmp(s + a - b, suffix, b) == 0;
}

int32_t r1_convert__classify(const char *name, int32_t n_dims)
{
    if (n_dims != 2)
        return -1;
    if (strcmp(name, "lm_head.weight") == 0)
        return R1_QCLASS_HEAD;
    if (strncmp(name, "model.layers.", 13) != 0 || !ends_with(name, ".weight"))
        return -1;
    if (strstr(name, "embed_tokens") || ends_with(name, ".mlp.gate.weight"))
        return -1;
    /* the module name (second-to-last component) of a norm contains "norm" */
    const char *last = name + strlen(name) - strlen(".weight");
    const char *mod = last;
    while (mod > name && mod[-1] != '.')
        mod--;
    for (const char *q = mod; q + 4 <= last; q++)
        if (memcmp(q, "norm", 4) == 0)
            return -1;
    if (strstr(name, ".mlp.experts."))
        return R1_QCLASS_EXPERTS;
    if (strstr(name, ".mlp.shared_experts."))
        return R1_QCLASS_SHARED;
    if (strstr(name, ".self_attn."))
        return R1_QCLASS_ATTN;
    if (strstr(name, ".shared_head.head."))
        return R1_QCLASS_HEAD;
    return R1_QCLASS_DENSE;
}

/* ---- growable byte buffer (metadata and index) ------------------------------------------- */

typedef struct bytebuf {
    uint8_t *p;
    size_t len, cap;
    int failed;
} bytebuf;

static uint8_t *bb_grow(bytebuf *b, size_t n)
{
    if (b->failed)
        return NULL;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (p == NULL) {
            b->failed = 1;
            return NULL;
        }
        b->p = p;
        b->cap = cap;
    }
    uint8_t *at = b->p + b->len;
    b->len += n;
    return at;
}

static void bb_put(bytebuf *b, const void *p, size_t n)
{
    uint8_t *at = bb_grow(b, n);
    if (at && n)
        memcpy(at, p, n);
}

static void bb_u16(bytebuf *b, uint16_t v)
{
    uint8_t *at = bb_grow(b, 2);
    if (at)
        r1_le__put16(at, v);
}

static void bb_u32(bytebuf *b, uint32_t v)
{
    uint8_t *at = bb_grow(b, 4);
    if (at)
        r1_le__put32(at, v);
}

static void bb_u64(bytebuf *b, uint64_t v)
{
    uint8_t *at = bb_grow(b, 8);
    if (at)
        r1_le__put64(at, v);
}

/* ---- metadata ----------------------------------------------------------------------------- */

typedef struct meta_writer {
    bytebuf b;
    uint32_t n;
} meta_writer;

static void meta_key(meta_writer *m, const char *key, uint8_t type)
{
    bb_u16(&m->b, (uint16_t)strlen(key));
    uint8_t t[2] = {type, 0};
    bb_put(&m->b, t, 2);
    bb_put(&m->b, key, strlen(key));
    m->n++;
}

static void meta_i64(meta_writer *m, const char *key, int64_t v)
{
    meta_key(m, key, R1M_META_I64);
    bb_u64(&m->b, (uint64_t)v);
}

static void meta_f64(meta_writer *m, const char *key, double v)
{
    meta_key(m, key, R1M_META_F64);
    uint8_t *at = bb_grow(&m->b, 8);
    if (at)
        r1_le__putf64(at, v);
}

static void meta_blob(meta_writer *m, const char *key, uint8_t type, const void *p, size_t n)
{
    meta_key(m, key, type);
    bb_u64(&m->b, n);
    bb_put(&m->b, p, n);
}

static void meta_str(meta_writer *m, const char *key, const char *s)
{
    meta_blob(m, key, R1M_META_STR, s, strlen(s));
}

/* ---- output file -------------------------------------------------------------------------- */

typedef struct out_file {
    int fd;
    uint64_t pos;
    uint8_t *buf;
    size_t len;
} out_file;

enum { OUT_BUF = 1 << 20 };

static r1_status write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n > (1u << 30) ? (1u << 30) : n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return r1_error__set(R1_ERR_IO, "cannot write the output file: %s",
                                 w < 0 ? strerror(errno) : "no progress");
        p += w;
        n -= (size_t)w;
    }
    return R1_OK;
}

static r1_status out_flush(out_file *o)
{
    r1_status st = write_all(o->fd, o->buf, o->len);
    o->len = 0;
    return st;
}

static r1_status out_write(out_file *o, const void *p, size_t n)
{
    o->pos += n;
    if (o->len + n <= OUT_BUF) {
        memcpy(o->buf + o->len, p, n);
        o->len += n;
        return R1_OK;
    }
    r1_status st = out_flush(o);
    if (st != R1_OK)
        return st;
    if (n <= OUT_BUF) {
        memcpy(o->buf, p, n);
        o->len = n;
        return R1_OK;
    }
    return write_all(o->fd, p, n);
}

static r1_status out_pad(out_file *o, uint64_t align)
{
    static const uint8_t zeros[R1M_BLOB_ALIGN]; /* the largest alignment asked for */
    uint64_t pad = (align - o->pos % align) % align;
    return pad ? out_write(o, zeros, (size_t)pad) : R1_OK;
}

/* ---- conversion state --------------------------------------------------------------------- */

typedef struct written {
    int32_t done;
    int32_t dtype;
    uint64_t offset, size, checksum;
} written;

typedef struct conv {
    const r1_convert_opts *opts;
    r1_quant_rules rules;
    r1_model_config cfg;
    r1_safetensors *st;
    out_file out;
    bytebuf tensors_ix, experts_ix;
    uint32_t n_tensors, n_blobs;
    written *done; /* per source tensor */
    uint64_t src_done, src_total;
    r1_convert_report rep;
} conv;

static r1_status report_progress(conv *cv)
{
    if (cv->opts->progress && cv->opts->progress(cv->src_done, cv->src_total, cv->opts->user_data))
        return r1_error__set(R1_CANCELLED, "conversion cancelled");
    return R1_OK;
}

static void index_tensor(conv *cv, const char *name, int32_t dtype, int32_t n_dims,
                         const int64_t *shape, uint64_t off, uint64_t size, uint64_t sum)
{
    bytebuf *b = &cv->tensors_ix;
    bb_u16(b, (uint16_t)strlen(name));
    uint8_t fixed[6] = {(uint8_t)dtype, (uint8_t)n_dims, R1M_CODEC_RAW, 0, 0, 0};
    bb_put(b, fixed, 6);
    for (int32_t d = 0; d < n_dims; d++)
        bb_u64(b, (uint64_t)shape[d]);
    bb_u64(b, off);
    bb_u64(b, size);
    bb_u64(b, size);
    bb_u64(b, sum);
    bb_put(b, name, strlen(name));
    cv->n_tensors++;
    cv->rep.n_tensors++;
}

/* Copies an FP8 scale tensor to aligned memory after checking its shape against the weight. */
static int load_scale(const r1_st_tensor *s, int64_t rows, int64_t cols, float **out, char *err,
                      size_t err_cap, const char *wname)
{
    int64_t sr = r1_fp8__scale_blocks(rows), sc = r1_fp8__scale_blocks(cols);
    if (s == NULL || s->dtype != R1_DTYPE_F32 || s->n_dims != 2 || s->shape[0] != sr ||
        s->shape[1] != sc) {
        snprintf(err, err_cap,
                 "fp8 tensor '%.200s' needs an F32 [%" PRId64 ", %" PRId64 "] weight_scale_inv",
                 wname, sr, sc);
        return R1_ERR_FORMAT;
    }
    *out = malloc((size_t)s->nbytes);
    if (*out == NULL) {
        snprintf(err, err_cap, "out of memory");
        return R1_ERR_NO_MEMORY;
    }
    memcpy(*out, s->data, (size_t)s->nbytes);
    return R1_OK;
}

/* Dequantises each row of a 2-D source tensor to f32 and quantises it to out_dt, handing each
 * output row to sink (a file or a memory buffer). */
typedef r1_status (*row_sink)(void *ctx, const void *row, size_t n);

static r1_status quantise_rows(const r1_st_tensor *w, const float *scale, int32_t out_dt,
                               row_sink sink, void *ctx, char *err, size_t err_cap)
{
    int64_t rows = w->shape[0], cols = w->shape[1];
    size_t out_row = r1_dtype__row_bytes(out_dt, cols);
    size_t in_row = (size_t)(w->nbytes / (uint64_t)rows);
    if (out_row == 0) {
        snprintf(err, err_cap,
                 "tensor '%.200s' has %" PRId64 " columns, not a multiple of the block "
                 "size; it cannot be stored as %s",
                 w->name, cols, r1_dtype__traits(out_dt)->name);
        return R1_ERR_UNSUPPORTED;
    }
    int64_t scale_cols = r1_fp8__scale_blocks(cols);
    uint8_t *src = malloc(in_row + 16);
    float *f = malloc((size_t)cols * sizeof *f);
    uint8_t *q = malloc(out_row);
    r1_status st = R1_OK;
    if (!src || !f || !q) {
        snprintf(err, err_cap, "out of memory");
        st = R1_ERR_NO_MEMORY;
    }
    for (int64_t r = 0; r < rows && st == R1_OK; r++) {
        memcpy(src, w->data + (uint64_t)r * in_row, in_row);
        const float *srow = scale ? scale + (r / R1_FP8_SCALE_BLOCK) * scale_cols : NULL;
        r1_dtype__dequantize_row(w->dtype, src, srow, f, cols);
        switch (out_dt) {
        case R1_DTYPE_Q8_0: r1_quantize__q8_0(f, (r1_block_q8_0 *)(void *)q, cols); break;
        case R1_DTYPE_Q4_0: r1_quantize__q4_0(f, (r1_block_q4_0 *)(void *)q, cols); break;
        case R1_DTYPE_F32: memcpy(q, f, out_row); break;
        default: /* 16-bit types, little-endian */
            for (int64_t c = 0; c < cols; c++) {
                uint16_t h =
                    out_dt == R1_DTYPE_F16 ? r1_fp16__from_f32(f[c]) : r1_bf16__from_f32(f[c]);
                q[2 * c] = (uint8_t)h;
                q[2 * c + 1] = (uint8_t)(h >> 8);
            }
        }
        st = sink(ctx, q, out_row);
        if (st != R1_OK)
            snprintf(err, err_cap, "%s", r1_error__message());
    }
    free(src);
    free(f);
    free(q);
    return st;
}

typedef struct file_sink {
    out_file *o;
    r1_xxh64_state h;
} file_sink;

static r1_status to_file(void *ctx, const void *row, size_t n)
{
    file_sink *fs = ctx;
    r1_checksum__xxh64_update(&fs->h, row, n);
    return out_write(fs->o, row, n);
}

typedef struct mem_sink {
    uint8_t *at;
} mem_sink;

static r1_status to_mem(void *ctx, const void *row, size_t n)
{
    mem_sink *ms = ctx;
    memcpy(ms->at, row, n);
    ms->at += n;
    return R1_OK;
}

/* A copy of a global tensor (the MTP layer's embedding and head: the schema's copy_of,
 * docs/model.md §4.1) is stored once when bit-identical: the original, or NULL. */
static const r1_st_tensor *alias_source(conv *cv, const r1_st_tensor *t, const char *main_name)
{
    if (main_name == NULL)
        return NULL;
    const r1_st_tensor *m = r1_safetensors__find(cv->st, main_name);
    if (m == NULL || m->dtype != t->dtype || m->dtype == R1_DTYPE_FP8_E4M3 ||
        m->n_dims != t->n_dims || m->nbytes != t->nbytes ||
        memcmp(m->shape, t->shape, sizeof m->shape) != 0 || !cv->done[m - cv->st->tensors].done ||
        memcmp(m->data, t->data, (size_t)t->nbytes) != 0)
        return NULL;
    return m;
}

static r1_status write_dense(conv *cv, const r1_st_tensor *t)
{
    char err[512] = "";
    r1_status st;
    if (t->dtype < 0 || t->n_dims < 1 || t->n_dims > R1_MAX_DIMS)
        return r1_error__set(R1_ERR_UNSUPPORTED, "tensor '%.200s' (%s, %d dims) cannot be stored",
                             t->name, t->st_dtype, (int)t->n_dims);
    /* The architecture's table names the tensor and its class; one it does not name is refused,
     * or, where the schema tolerates extras, stored with the class its name implies. */
    const r1_schema *schema = r1_model_schema__get(&cv->cfg);
    int64_t layer, expert;
    const r1_schema_tensor *e = r1_model_schema__find(schema, t->name, &layer, &expert);
    if (e != NULL && (e->role == R1_TROLE_EXPERT || !r1_model_schema__at(&cv->cfg, e, layer)))
        e = NULL;
    if (e == NULL && !schema->extra_ok)
        return r1_error__set(R1_ERR_FORMAT, "tensor '%.200s' is not part of a %s model", t->name,
                             cv->cfg.architecture);
    int32_t cls = e == NULL        ? r1_convert__classify(t->name, t->n_dims)
                  : t->n_dims == 2 ? e->qclass
                                   : -1; /* the container refuses it; never quantise it */
    int32_t out_dt = cls >= 0 && cv->rules.rule[cls] >= 0 ? cv->rules.rule[cls] : t->dtype;
    written *w = &cv->done[t - cv->st->tensors];
    const r1_st_tensor *alias = alias_source(cv, t, e ? e->copy_of : NULL);
    if (alias && cv->done[alias - cv->st->tensors].dtype == out_dt) {
        *w = cv->done[alias - cv->st->tensors];
        index_tensor(cv, t->name, w->dtype, t->n_dims, t->shape, w->offset, w->size, w->checksum);
        cv->rep.n_aliased++;
        cv->src_done += t->nbytes; /* consumed, so the progress still reaches its total */
        return R1_OK;
    }
    const r1_st_tensor *scale = NULL;
    float *scale_f32 = NULL;
    char sname[R1M_MAX_NAME + 16];
    int64_t rows = 1, cols = t->shape[t->n_dims - 1];
    for (int32_t d = 0; d + 1 < t->n_dims; d++)
        rows *= t->shape[d];
    if (t->dtype == R1_DTYPE_FP8_E4M3) {
        snprintf(sname, sizeof sname, "%s" R1_SCHEMA_SCALE_SUFFIX, t->name);
        scale = r1_safetensors__find(cv->st, sname);
        if ((st = load_scale(scale, rows, cols, &scale_f32, err, sizeof err, t->name)) != R1_OK)
            return r1_error__set(st, "%s", err);
    }
    if ((st = out_pad(&cv->out, R1M_ALIGN)) != R1_OK)
        goto done;
    uint64_t off = cv->out.pos, sum;
    if (out_dt == t->dtype) {
        sum = r1_checksum__xxh64(t->data, (size_t)t->nbytes);
        if ((st = out_write(&cv->out, t->data, (size_t)t->nbytes)) != R1_OK)
            goto done;
    } else {
        file_sink fs = {&cv->out, {{0}, 0, {0}, 0}};
        r1_checksum__xxh64_init(&fs.h);
        st = quantise_rows(t, scale_f32, out_dt, to_file, &fs, err, sizeof err);
        if (st != R1_OK) {
            st = r1_error__set(st, "%s", err);
            goto done;
        }
        sum = r1_checksum__xxh64_digest(&fs.h);
    }
    w->done = 1;
    w->dtype = out_dt;
    w->offset = off;
    w->size = cv->out.pos - off;
    w->checksum = sum;
    index_tensor(cv, t->name, out_dt, t->n_dims, t->shape, off, w->size, sum);
    if (scale && out_dt == R1_DTYPE_FP8_E4M3) {
        if ((st = out_pad(&cv->out, R1M_ALIGN)) != R1_OK)
            goto done;
        off = cv->out.pos;
        sum = r1_checksum__xxh64(scale->data, (size_t)scale->nbytes);
        if ((st = out_write(&cv->out, scale->data, (size_t)scale->nbytes)) != R1_OK)
            goto done;
        index_tensor(cv, sname, R1_DTYPE_F32, 2, scale->shape, off, scale->nbytes, sum);
    }
    /* a scale folded into a quantised weight is consumed too */
    cv->src_done += t->nbytes + (scale ? scale->nbytes : 0);
    cv->rep.dense_bytes += cv->out.pos - off;
done:
    free(scale_f32);
    return st;
}

static int by_name(const void *a, const void *b)
{
    const r1_st_tensor *x = *(const r1_st_tensor *const *)a, *y = *(const r1_st_tensor *const *)b;
    return strcmp(x->name, y->name);
}

static r1_status write_dense_all(conv *cv)
{
    r1_safetensors *st = cv->st;
    const r1_st_tensor **order = malloc(((size_t)st->n_tensors + 1) * sizeof *order);
    if (order == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "out of memory");
    for (int32_t i = 0; i < st->n_tensors; i++)
        order[i] = &st->tensors[i];
    qsort(order, (size_t)st->n_tensors, sizeof *order, by_name);
    r1_status s = R1_OK;
    const r1_schema *schema = r1_model_schema__get(&cv->cfg);
    const size_t suffix_len = strlen(R1_SCHEMA_SCALE_SUFFIX);
    if (schema == NULL) {
        free(order);
        return r1_error__set(R1_ERR_UNSUPPORTED, "no schema for architecture '%s'",
                             cv->cfg.architecture);
    }
    for (int32_t i = 0; i < st->n_tensors && s == R1_OK; i++) {
        const r1_st_tensor *t = order[i];
        int64_t layer, expert;
        const r1_schema_tensor *e = r1_model_schema__find(schema, t->name, &layer, &expert);
        if (e != NULL && e->role == R1_TROLE_EXPERT) {
            if (!r1_model_schema__at(&cv->cfg, e, layer) || expert < 0 ||
                expert >= cv->cfg.n_routed_experts)
                s = r1_error__set(R1_ERR_FORMAT,
                                  "tensor '%.200s' names an expert the config "
                                  "does not have",
                                  t->name);
            continue; /* stored in expert blobs */
        }
        if (ends_with(t->name, ".weight" R1_SCHEMA_SCALE_SUFFIX)) {
            char wname[R1M_MAX_NAME + 1];
            snprintf(wname, sizeof wname, "%.*s", (int)(strlen(t->name) - suffix_len), t->name);
            const r1_st_tensor *w = r1_safetensors__find(st, wname);
            if (w == NULL || w->dtype != R1_DTYPE_FP8_E4M3)
                s = r1_error__set(R1_ERR_FORMAT, "'%.200s' has no FP8 weight '%.200s'", t->name,
                                  wname);
            continue; /* written with (or folded into) its weight */
        }
        if (ends_with(t->name, "rotary_emb.inv_freq")) {
            cv->src_done += t->nbytes; /* recomputed from the config */
            continue;
        }
        if ((s = write_dense(cv, t)) == R1_OK)
            s = report_progress(cv);
    }
    free(order);
    return s;
}

/* ---- expert blobs ------------------------------------------------------------------------- */

typedef struct expert_job {
    conv *cv;
    int64_t layer, expert;
    r1_expert_blob blob;
    uint8_t *raw;
    size_t raw_cap;
    r1_blob_encoder *enc;
    const uint8_t *stored;
    uint64_t coded_bytes, src_bytes;
    r1_status st;
    char err[512];
} expert_job;

static int job_fail(expert_job *j, r1_status st, const char *msg)
{
    if (msg != j->err)
        snprintf(j->err, sizeof j->err, "%s", msg);
    j->st = st;
    return 0;
}

static int job_grow(uint8_t **p, size_t *cap, size_t n)
{
    if (*cap >= n)
        return 1;
    free(*p);
    *p = malloc(n);
    *cap = *p ? n : 0;
    return *p != NULL;
}

static void run_job(expert_job *j)
{
    conv *cv = j->cv;
    const r1_model_config *g = &cv->cfg;
    const r1_schema *schema = r1_model_schema__get(g);
    char name[R1M_MAX_NAME + 16];
    const r1_st_tensor *w[3], *s[3] = {NULL, NULL, NULL};
    int32_t rule = cv->rules.rule[R1_QCLASS_EXPERTS];
    j->st = R1_OK;
    j->src_bytes = 0;
    r1_expert_blob *b = &j->blob;
    memset(b, 0, sizeof *b);
    b->layer = (int32_t)j->layer;
    b->expert = (int32_t)j->expert;
    /* The blob's three parts are the schema's routed expert projections; the gate's shape is
     * the blob's (inter, hidden). */
    const r1_schema_tensor *part[3];
    for (int k = 0; k < 3; k++)
        part[k] = r1_model_schema__expert(schema, k);
    b->inter = r1_model_schema__dim(g, part[0]->rows);
    b->hidden = r1_model_schema__dim(g, part[0]->cols);
    for (int k = 0; k < 3; k++) {
        r1_model_schema__expert_name(part[k], j->layer, j->expert, name, sizeof name);
        w[k] = r1_safetensors__find(cv->st, name);
        int64_t want0 = r1_model_schema__dim(g, part[k]->rows);
        int64_t want1 = r1_model_schema__dim(g, part[k]->cols);
        if (w[k] == NULL || w[k]->n_dims != 2 || w[k]->shape[0] != want0 ||
            w[k]->shape[1] != want1 || w[k]->dtype < 0) {
            snprintf(j->err, sizeof j->err,
                     "expert tensor '%.400s' is missing or is not a "
                     "supported [%" PRId64 ", %" PRId64 "] tensor",
                     name, want0, want1);
            job_fail(j, R1_ERR_FORMAT, j->err);
            return;
        }
        if (w[k]->dtype == R1_DTYPE_FP8_E4M3) {
            snprintf(name + strlen(name), sizeof name - strlen(name), R1_SCHEMA_SCALE_SUFFIX);
            s[k] = r1_safetensors__find(cv->st, name);
            j->src_bytes += s[k] ? s[k]->nbytes : 0;
        }
        b->dtype[k] = rule >= 0 ? rule : w[k]->dtype;
        j->src_bytes += w[k]->nbytes;
    }
    b->raw_size = r1_container__expert_layout(b);
    if (b->raw_size == 0) {
        snprintf(j->err, sizeof j->err,
                 "expert (layer %" PRId64 ", expert %" PRId64 ") cannot "
                 "be stored as %s: a row is not a whole number of blocks",
                 j->layer, j->expert, r1_dtype__traits(b->dtype[0])->name);
        job_fail(j, R1_ERR_UNSUPPORTED, j->err);
        return;
    }
    size_t raw = (size_t)b->raw_size;
    if (!job_grow(&j->raw, &j->raw_cap, raw)) {
        job_fail(j, R1_ERR_NO_MEMORY, "out of memory");
        return;
    }
    memset(j->raw, 0, raw);
    for (int k = 0; k < 3; k++) {
        float *scale = NULL;
        if (w[k]->dtype == R1_DTYPE_FP8_E4M3) {
            r1_status st = load_scale(s[k], w[k]->shape[0], w[k]->shape[1], &scale, j->err,
                                      sizeof j->err, w[k]->name);
            if (st != R1_OK) {
                job_fail(j, st, j->err);
                return;
            }
        }
        if (b->dtype[k] == w[k]->dtype) {
            memcpy(j->raw + b->data_off[k], w[k]->data, (size_t)w[k]->nbytes);
            if (scale)
                memcpy(j->raw + b->scale_off[k], scale, (size_t)b->scale_bytes[k]);
        } else {
            mem_sink ms = {j->raw + b->data_off[k]};
            r1_status st =
                quantise_rows(w[k], scale, b->dtype[k], to_mem, &ms, j->err, sizeof j->err);
            if (st != R1_OK) {
                free(scale);
                job_fail(j, st, j->err);
                return;
            }
        }
        free(scale);
    }
    b->checksum = r1_checksum__xxh64(j->raw, raw);
    r1_status est = r1_blob_encoder__encode(j->enc, b, j->raw, &j->stored, &j->coded_bytes);
    if (est != R1_OK)
        job_fail(j, est, r1_error__message());
}

static void *job_thread(void *arg)
{
    run_job(arg);
    return NULL;
}

static r1_status write_blob(conv *cv, expert_job *j)
{
    r1_expert_blob *b = &j->blob;
    r1_status st = out_pad(&cv->out, cv->opts->legacy_v1_0 ? R1M_ALIGN : R1M_BLOB_ALIGN);
    if (st != R1_OK)
        return st;
    b->offset = cv->out.pos;
    if ((st = out_write(&cv->out, j->stored, (size_t)b->stored_size)) != R1_OK)
        return st;
    uint8_t rec[R1M_EXPERT_RECORD] = {0};
    r1_le__put32(rec, (uint32_t)b->layer);
    r1_le__put32(rec + 4, (uint32_t)b->expert);
    r1_le__put64(rec + 8, b->offset);
    r1_le__put64(rec + 16, b->stored_size);
    r1_le__put64(rec + 24, b->raw_size);
    r1_le__put64(rec + 32, b->checksum);
    rec[40] = b->codec;
    rec[41] = b->filter;
    for (int k = 0; k < 3; k++)
        rec[42 + k] = (uint8_t)b->dtype[k];
    r1_le__put32(rec + 48, (uint32_t)b->inter);
    r1_le__put32(rec + 52, (uint32_t)b->hidden);
    bb_put(&cv->experts_ix, rec, sizeof rec);
    cv->n_blobs++;
    r1_convert_dtype_stats *ds = &cv->rep.experts[b->dtype[0]];
    ds->n_blobs++;
    ds->raw_bytes += b->raw_size;
    ds->stored_bytes += b->stored_size;
    ds->coded_bytes += j->coded_bytes;
    ds->n_filtered += b->filter != R1M_FILTER_NONE;
    ds->n_raw += b->codec == R1M_CODEC_RAW;
    cv->rep.n_blobs++;
    cv->src_done += j->src_bytes;
    return R1_OK;
}

static r1_status write_experts(conv *cv)
{
    int32_t n_threads = cv->opts->n_threads > 0 ? cv->opts->n_threads : 1;
    if (n_threads > 64)
        n_threads = 64;
    expert_job *jobs = calloc((size_t)n_threads, sizeof *jobs);
    pthread_t *tids = calloc((size_t)n_threads, sizeof *tids);
    r1_status st = R1_OK;
    if (jobs == NULL || tids == NULL) {
        st = r1_error__set(R1_ERR_NO_MEMORY, "out of memory");
        goto done;
    }
    for (int32_t i = 0; i < n_threads; i++) {
        jobs[i].cv = cv;
        int32_t mode = cv->opts->legacy_v1_0  ? R1_BLOB_ENCODE_V1_0
                       : cv->opts->no_shuffle ? R1_BLOB_ENCODE_NO_FILTER
                                              : R1_BLOB_ENCODE_DEFAULT;
        if ((st = r1_blob_encoder__create(&jobs[i].enc, cv->opts->zstd_level, mode)) != R1_OK)
            goto done;
    }
    const r1_model_config *g = &cv->cfg;
    /* Every layer the schema's routed experts are in (none without them) has a blob each. */
    const r1_schema_tensor *experts = r1_model_schema__expert(r1_model_schema__get(g), 0);
    int64_t total = experts ? r1_model_schema__n_layers(g, experts) * g->n_routed_experts : 0;
    int64_t next = 0;
    while (next < total && st == R1_OK) {
        int32_t batch = 0;
        for (; batch < n_threads && next < total; next++) {
            int64_t layer = next / g->n_routed_experts;
            if (!r1_model_schema__at(g, experts, layer))
                continue;
            jobs[batch].layer = layer;
            jobs[batch].expert = next % g->n_routed_experts;
            batch++;
        }
        int32_t started = 1;
        for (int32_t i = 1; i < batch; i++, started++)
            if (pthread_create(&tids[i], NULL, job_thread, &jobs[i]) != 0)
                break;
        for (int32_t i = started; i < batch; i++) /* thread creation failed: run inline */
            run_job(&jobs[i]);
        if (batch > 0)
            run_job(&jobs[0]);
        for (int32_t i = 1; i < started; i++)
            pthread_join(tids[i], NULL);
        for (int32_t i = 0; i < batch && st == R1_OK; i++) {
            if (jobs[i].st != R1_OK)
                st = r1_error__set(jobs[i].st, "%s", jobs[i].err);
            else
                st = write_blob(cv, &jobs[i]);
        }
        if (st == R1_OK && batch > 0)
            st = report_progress(cv);
    }
done:
    for (int32_t i = 0; jobs && i < n_threads; i++) {
        r1_blob_encoder__destroy(jobs[i].enc);
        free(jobs[i].raw);
    }
    free(jobs);
    free(tids);
    return st;
}

/* ---- metadata: config, tokenizer, provenance ---------------------------------------------- */

static void hex64(char *buf, uint64_t v)
{
    snprintf(buf, 17, "%016" PRIx64, v);
}

static r1_status build_meta(conv *cv, meta_writer *m, const char *dir, const char *config_json,
                            size_t config_len)
{
    char path[4096], line[512], hex[17];
    r1_status st;

    /* tokenizer: the raw files and the parsed blob (docs/tokenizer-blob.md) */
    char *tok = NULL, *tok_cfg = NULL;
    size_t tok_len = 0, tok_cfg_len = 0;
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if ((st = r1_safetensors__read_small(path, 1u << 30, &tok, &tok_len)) != R1_OK)
        return st;
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    st = r1_safetensors__read_small(path, 64u << 20, &tok_cfg, &tok_cfg_len);
    if (st != R1_OK && st != R1_ERR_NOT_FOUND) {
        free(tok);
        return st;
    }
    r1_tokenizer_spec *spec = NULL;
    uint8_t *blob = NULL;
    size_t blob_len = 0;
    st = r1_tokenizer__spec_from_json(&spec, tok, tok_len, tok_cfg, tok_cfg ? tok_cfg_len : 0);
    if (st == R1_OK &&
        (st = r1_tokenizer__spec_serialize(spec, NULL, 0, &blob_len)) == R1_ERR_BUFFER_TOO_SMALL) {
        blob = malloc(blob_len);
        st = blob ? r1_tokenizer__spec_serialize(spec, blob, blob_len, &blob_len)
                  : r1_error__set(R1_ERR_NO_MEMORY, "out of memory");
    }
    if (st == R1_OK) {
        cv->cfg.n_tokenizer_ids = spec->n_ids;
        meta_blob(m, "tokenizer.blob", R1M_META_BYTES, blob, blob_len);
        meta_blob(m, "tokenizer.json", R1M_META_BYTES, tok, tok_len);
        if (tok_cfg)
            meta_blob(m, "tokenizer.config_json", R1M_META_BYTES, tok_cfg, tok_cfg_len);
        meta_i64(m, "tokenizer.n_ids", spec->n_ids);
        if (spec->chat_template) {
            hex64(hex, r1_checksum__xxh64(spec->chat_template, spec->chat_template_len));
            snprintf(line, sizeof line, "xxh64:%s", hex);
            meta_str(m, "tokenizer.chat_template_id", line);
        }
        hex64(hex, r1_checksum__xxh64(tok, tok_len));
        meta_str(m, "source.tokenizer_json_xxh64", hex);
    }
    free(blob);
    r1_tokenizer__spec_destroy(spec);
    free(tok);
    free(tok_cfg);
    if (st != R1_OK || (st = r1_model_config__validate(&cv->cfg)) != R1_OK)
        return st;
    const r1_model_config *g = &cv->cfg;
    meta_str(m, "general.architecture", g->architecture);
    size_t n;
    const r1_config_field *f = r1_model_config__fields(&n);
    for (size_t i = 0; i < n; i++) {
        char key[128];
        snprintf(key, sizeof key, "config.%s", f[i].key);
        if (f[i].kind == R1_CONFIG_I64)
            meta_i64(m, key, *(const int64_t *)((const char *)g + f[i].offset));
        else if (f[i].kind == R1_CONFIG_F64)
            meta_f64(m, key, *(const double *)((const char *)g + f[i].offset));
        else
            meta_str(m, key, r1_model_config__get_string(g, f[i].key));
    }
    meta_blob(m, "hf.config_json", R1M_META_BYTES, config_json, config_len);

    /* provenance */
    meta_str(m, "convert.version", r1_version_string());
    r1_convert__format_rules(&cv->rules, line, sizeof line);
    meta_str(m, "convert.quant_rules", line);
    meta_i64(m, "convert.byteplane_shuffle", cv->opts->no_shuffle ? 0 : 1);
    meta_i64(m, "convert.zstd_level", cv->opts->zstd_level);
    hex64(hex, r1_checksum__xxh64(config_json, config_len));
    meta_str(m, "source.config_json_xxh64", hex);
    bytebuf files = {0};
    for (int32_t i = 0; i < cv->st->n_files; i++) {
        const r1_st_file *sf = &cv->st->files[i];
        hex64(hex, r1_checksum__xxh64(sf->map, (size_t)(8 + sf->header_len)));
        snprintf(line, sizeof line, "%s %" PRIu64 " %s\n", sf->name, sf->size, hex);
        bb_put(&files, line, strlen(line));
    }
    meta_blob(m, "source.files", R1M_META_STR, files.p, files.len);
    free(files.p);
    return files.failed || m->b.failed ? r1_error__set(R1_ERR_NO_MEMORY, "out of memory") : R1_OK;
}

/* ---- driver ------------------------------------------------------------------------------- */

static r1_status finish_file(conv *cv, meta_writer *m)
{
    r1_status st;
    uint8_t h[R1M_HEADER_SIZE] = {0};
    /* From 1.1 a direct reader reads whole blocks, so the last blob's block is completed. */
    if ((st = out_pad(&cv->out, cv->opts->legacy_v1_0 ? 8 : R1M_BLOB_ALIGN)) != R1_OK)
        return st;
    uint64_t meta_off = cv->out.pos;
    uint8_t count[4];
    r1_le__put32(count, m->n);
    /* The entry count leads the section; entries were appended after it. */
    bytebuf meta = {0};
    bb_put(&meta, count, 4);
    bb_put(&meta, m->b.p, m->b.len);
    bytebuf index = {0};
    bb_u32(&index, cv->n_tensors);
    bb_u32(&index, cv->n_blobs);
    bb_put(&index, cv->tensors_ix.p, cv->tensors_ix.len);
    bb_put(&index, cv->experts_ix.p, cv->experts_ix.len);
    if (meta.failed || index.failed || cv->tensors_ix.failed || cv->experts_ix.failed) {
        st = r1_error__set(R1_ERR_NO_MEMORY, "out of memory");
        goto done;
    }
    if ((st = out_write(&cv->out, meta.p, meta.len)) != R1_OK ||
        (st = out_pad(&cv->out, 8)) != R1_OK)
        goto done;
    uint64_t index_off = cv->out.pos;
    if ((st = out_write(&cv->out, index.p, index.len)) != R1_OK ||
        (st = out_flush(&cv->out)) != R1_OK)
        goto done;
    memcpy(h, R1M_MAGIC, R1M_MAGIC_LEN);
    r1_le__put16(h + R1M_H_VMAJOR, R1M_VERSION_MAJOR);
    r1_le__put16(h + R1M_H_VMINOR, cv->opts->legacy_v1_0 ? 0 : R1M_VERSION_MINOR);
    r1_le__put32(h + R1M_H_HEADER_SIZE, R1M_HEADER_SIZE);
    r1_le__put64(h + R1M_H_FILE_SIZE, cv->out.pos);
    r1_le__put64(h + R1M_H_META_OFF, meta_off);
    r1_le__put64(h + R1M_H_META_SIZE, meta.len);
    r1_le__put64(h + R1M_H_META_SUM, r1_checksum__xxh64(meta.p, meta.len));
    r1_le__put64(h + R1M_H_INDEX_OFF, index_off);
    r1_le__put64(h + R1M_H_INDEX_SIZE, index.len);
    r1_le__put64(h + R1M_H_INDEX_SUM, r1_checksum__xxh64(index.p, index.len));
    r1_le__put32(h + R1M_H_N_TENSORS, cv->n_tensors);
    r1_le__put32(h + R1M_H_N_EXPERTS, cv->n_blobs);
    r1_le__put32(h + R1M_H_ALIGN, R1M_ALIGN);
    r1_le__put64(h + R1M_H_SUM, r1_checksum__xxh64(h, R1M_H_SUM));
    /* The header goes in last: until then the file has no magic and cannot pass for valid. */
    if (fdatasync(cv->out.fd) != 0 || pwrite(cv->out.fd, h, sizeof h, 0) != (ssize_t)sizeof h ||
        fdatasync(cv->out.fd) != 0)
        st = r1_error__set(R1_ERR_IO, "cannot write the output header: %s", strerror(errno));
    cv->rep.file_bytes = cv->out.pos;
done:
    free(meta.p);
    free(index.p);
    return st;
}

/* The output takes its name by rename(), which would replace whatever is there: a device node
 * such as /dev/full (when run as root), a FIFO, or a symbolic link instead of its target. Only
 * a new path or an existing regular file may be replaced. */
static r1_status check_out_path(const char *out_path)
{
    struct stat sb;
    if (lstat(out_path, &sb) != 0) {
        if (errno == ENOENT)
            return R1_OK;
        return r1_error__set(R1_ERR_IO, "cannot check the output path '%s': %s", out_path,
                             strerror(errno));
    }
    if (S_ISREG(sb.st_mode))
        return R1_OK;
    const char *what = S_ISLNK(sb.st_mode)    ? "a symbolic link"
                       : S_ISDIR(sb.st_mode)  ? "a directory"
                       : S_ISCHR(sb.st_mode)  ? "a character device"
                       : S_ISBLK(sb.st_mode)  ? "a block device"
                       : S_ISFIFO(sb.st_mode) ? "a FIFO"
                                              : "not a regular file";
    return r1_error__set(R1_ERR_INVALID_ARG,
                         "the output path '%s' is %s; the converter writes only to a new path or "
                         "replaces a regular file",
                         out_path, what);
}

r1_status r1_convert__run(const char *hf_dir, const char *out_path, const r1_convert_opts *opts,
                          r1_convert_report *report)
{
    r1_convert_opts o = opts ? *opts : (r1_convert_opts){0};
    if (o.zstd_level == 0) /* the 1.0 converter's level was 3 */
        o.zstd_level = o.legacy_v1_0 ? 3 : R1_BLOB_ZSTD_LEVEL;
    conv cv = {0};
    cv.opts = &o;
    cv.out.fd = -1;
    meta_writer m = {0};
    char *config_json = NULL, tmp[4096], path[4096];
    size_t config_len = 0;
    int have_tmp = 0;
    r1_status st;
    if (hf_dir == NULL || out_path == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "hf_dir and out_path must not be NULL");
    if ((st = r1_convert__parse_rules(o.quant, &cv.rules)) != R1_OK ||
        (st = check_out_path(out_path)) != R1_OK)
        return st;
    snprintf(path, sizeof path, "%s/config.json", hf_dir);
    if ((st = r1_safetensors__read_small(path, 16u << 20, &config_json, &config_len)) != R1_OK)
        goto done;
    if ((st = r1_model_config__from_json(&cv.cfg, config_json, config_len)) != R1_OK)
        goto done;
    if ((st = r1_safetensors__open_dir(&cv.st, hf_dir)) != R1_OK)
        goto done;
    cv.done = calloc((size_t)cv.st->n_tensors + 1, sizeof *cv.done);
    cv.out.buf = malloc(OUT_BUF);
    if (cv.done == NULL || cv.out.buf == NULL) {
        st = r1_error__set(R1_ERR_NO_MEMORY, "out of memory");
        goto done;
    }
    for (int32_t i = 0; i < cv.st->n_tensors; i++)
        cv.src_total += cv.st->tensors[i].nbytes;
    /* the tokenizer decides n_tokenizer_ids, which the config validation checks */
    if ((st = build_meta(&cv, &m, hf_dir, config_json, config_len)) != R1_OK)
        goto done;
    if (snprintf(tmp, sizeof tmp, "%s.tmp-XXXXXX", out_path) >= (int)sizeof tmp) {
        st = r1_error__set(R1_ERR_INVALID_ARG, "output path too long");
        goto done;
    }
    cv.out.fd = mkstemp(tmp);
    if (cv.out.fd < 0) {
        st = r1_error__set(R1_ERR_IO, "cannot create '%s': %s", tmp, strerror(errno));
        goto done;
    }
    have_tmp = 1;
    fchmod(cv.out.fd, 0644);
    {
        uint8_t zero[R1M_HEADER_SIZE] = {0};
        if ((st = out_write(&cv.out, zero, sizeof zero)) != R1_OK)
            goto done;
    }
    if ((st = write_dense_all(&cv)) != R1_OK || (st = write_experts(&cv)) != R1_OK ||
        (st = finish_file(&cv, &m)) != R1_OK)
        goto done;
    close(cv.out.fd);
    cv.out.fd = -1;
    /* Read the result back through the reader before it takes the final name. */
    r1_container *check = NULL;
    if ((st = r1_container__open(&check, tmp)) != R1_OK) {
        st = r1_error__set(st, "the converted file does not validate: %s", r1_error__message());
        goto done;
    }
    r1_container__close(check);
    if ((st = check_out_path(out_path)) != R1_OK) /* again: the conversion took a while */
        goto done;
    if (rename(tmp, out_path) != 0) {
        st = r1_error__set(R1_ERR_IO, "cannot rename '%s' to '%s': %s", tmp, out_path,
                           strerror(errno));
        goto done;
    }
    have_tmp = 0;
    if (report)
        *report = cv.rep;
done:
    if (cv.out.fd >= 0)
        close(cv.out.fd);
    if (have_tmp)
        unlink(tmp);
    free(cv.out.buf);
    free(cv.done);
    free(cv.tensors_ix.p);
    free(cv.experts_ix.p);
    free(m.b.p);
    free(config_json);
    r1_safetensors__close(cv.st);
    return st;
}

R1_API r1_status r1_convert(const char *hf_dir_utf8, const char *out_path_utf8,
                            const char *quant_rules, int32_t n_threads, uint32_t flags,
                            r1_progress_fn progress, void *user_data)
{
    r1_error__clear();
    if ((flags & ~R1_CONVERT_NO_SHUFFLE) != 0)
        return r1_error__set(R1_ERR_INVALID_ARG, "unknown flags 0x%x", flags);
    if (n_threads > 64)
        return r1_error__set(R1_ERR_INVALID_ARG, "n_threads %d is more than 64", (int)n_threads);
    r1_convert_opts o = {0};
    o.quant = quant_rules;
    o.n_threads = n_threads;
    o.no_shuffle = (flags & R1_CONVERT_NO_SHUFFLE) != 0;
    o.progress = progress;
    o.user_data = user_data;
    return r1_convert__run(hf_dir_utf8, out_path_utf8, &o, NULL);
}
