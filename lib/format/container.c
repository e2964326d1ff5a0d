/* container.c: opens .r1m files: header, metadata and index validation, tensor lookup by name. */
#include "container.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checksum.h"
#include "dtype.h"
#include "error.h"
#include "le.h"
#include "model_schema.h"
#include "name_index.h"

typedef struct meta_entry {
    const char *key;
    uint32_t key_len;
    uint8_t type;
    const uint8_t *value;
    uint64_t value_len;
} meta_entry;

typedef struct tensor_entry {
    const char *name;
    uint32_t name_len;
    int32_t dtype;
    int32_t n_dims;
    int64_t shape[R1_MAX_DIMS];
    uint64_t offset, size, checksum;
    int32_t scale_index; /* fp8: index of "<name>_scale_inv", else -1 */
} tensor_entry;

struct r1_container {
    int fd;
    uint64_t file_size;
    const uint8_t *map;
    uint8_t *meta_buf, *index_buf;
    uint32_t n_meta;
    meta_entry *meta;
    r1_name_index meta_ix;
    uint32_t n_tensors;
    tensor_entry *tensors;
    r1_name_index tensor_ix;
    uint32_t n_blobs;
    r1_expert_blob *blobs;
    int32_t *blob_of; /* (n_layers_stored * n_routed_experts): index into blobs or -1 */
    uint64_t max_expert_bytes, dense_bytes, expert_bytes;
    r1_model_config cfg;
    uint16_t version_minor;
    int32_t direct_ok; /* every blob's padded span is block-aligned and inside the file */
    /* The header's checksum: names this file's model (saved sessions, session_state.c). */
    uint64_t header_sum;
};

/* A bounds-checked cursor over untrusted bytes. */
typedef struct cursor {
    const uint8_t *p;
    uint64_t left;
    uint64_t base; /* file offset of p, for messages */
} cursor;

static int take(cursor *c, uint64_t n, const uint8_t **out)
{
    if (n > c->left)
        return 0;
    *out = c->p;
    c->p += n;
    c->left -= n;
    c->base += n;
    return 1;
}

static int add_ok(uint64_t a, uint64_t b, uint64_t *sum)
{
    *sum = a + b;
    return *sum >= a;
}

static int mul_ok(uint64_t a, uint64_t b, uint64_t *prod)
{
    if (a != 0 && b > UINT64_MAX / a)
        return 0;
    *prod = a * b;
    return 1;
}

static r1_status read_exact(int fd, void *buf, uint64_t n, uint64_t off, const char *what)
{
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t got = pread(fd, p, n > (1u << 30) ? (1u << 30) : (size_t)n, (off_t)off);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return r1_error__set(R1_ERR_IO, "cannot read %s at offset %" PRIu64 ": %s", what, off,
                                 strerror(errno));
        if (got == 0)
            return r1_error__set(R1_ERR_FORMAT,
                                 "file truncated while reading %s at offset %" PRIu64, what, off);
        p += got;
        n -= (uint64_t)got;
        off += (uint64_t)got;
    }
    return R1_OK;
}

static r1_status parse_meta(r1_container *c, uint64_t meta_off, uint64_t meta_size)
{
    cursor cur = {c->meta_buf, meta_size, meta_off};
    const uint8_t *p;
    if (!take(&cur, 4, &p))
        return r1_error__set(R1_ERR_FORMAT,
                             "metadata at offset %" PRIu64 " is shorter than its count", meta_off);
    uint32_t n = r1_le__u32(p);
    if ((uint64_t)n * 4 > meta_size)
        return r1_error__set(R1_ERR_FORMAT, "metadata claims %u entries in %" PRIu64 " bytes", n,
                             meta_size);
    c->meta = calloc(n ? n : 1, sizeof *c->meta);
    if (c->meta == NULL || r1_name_index__init(&c->meta_ix, n) != R1_OK)
        return r1_error__set(R1_ERR_NO_MEMORY, "out of memory reading metadata");
    for (uint32_t i = 0; i < n; i++) {
        meta_entry *m = &c->meta[i];
        uint64_t at = cur.base;
        if (!take(&cur, 4, &p))
            return r1_error__set(R1_ERR_FORMAT, "metadata entry %u at offset %" PRIu64 " truncated",
                                 i, at);
        m->key_len = r1_le__u16(p);
        m->type = p[2];
        if (p[3] != 0 || m->key_len == 0 || m->key_len > 256)
            return r1_error__set(R1_ERR_FORMAT,
                                 "metadata entry %u at offset %" PRIu64 " has a bad key header", i,
                                 at);
        if (!take(&cur, m->key_len, &p))
            return r1_error__set(R1_ERR_FORMAT, "metadata entry %u key truncated", i);
        m->key = (const char *)p;
        if (memchr(m->key, 0, m->key_len))
            return r1_error__set(R1_ERR_FORMAT, "metadata entry %u key contains NUL", i);
        if (m->type == R1M_META_I64 || m->type == R1M_META_F64) {
            m->value_len = 8;
        } else if (m->type == R1M_META_STR || m->type == R1M_META_BYTES) {
            if (!take(&cur, 8, &p))
                return r1_error__set(R1_ERR_FORMAT, "metadata '%.*s' length truncated",
                                     (int)m->key_len, m->key);
            m->value_len = r1_le__u64(p);
        } else {
            return r1_error__set(R1_ERR_UNSUPPORTED, "metadata '%.*s' has unknown type %u",
                                 (int)m->key_len, m->key, m->type);
        }
        if (!take(&cur, m->value_len, &m->value))
            return r1_error__set(R1_ERR_FORMAT,
                                 "metadata '%.*s' value of %" PRIu64 " bytes runs past the "
                                 "metadata section (offset %" PRIu64 ")",
                                 (int)m->key_len, m->key, m->value_len, cur.base);
        if (r1_name_index__insert(&c->meta_ix, m->key, m->key_len, (int32_t)i, NULL) != 0)
            return r1_error__set(R1_ERR_FORMAT, "duplicate metadata key '%.*s'", (int)m->key_len,
                                 m->key);
    }
    if (cur.left != 0)
        return r1_error__set(R1_ERR_FORMAT, "%" PRIu64 " stray bytes after the metadata entries",
                             cur.left);
    c->n_meta = n;
    return R1_OK;
}

static const meta_entry *meta_find(const r1_container *c, const char *key)
{
    int32_t i = r1_name_index__find(&c->meta_ix, key, strlen(key));
    return i < 0 ? NULL : &c->meta[i];
}

static r1_status meta_typed(const r1_container *c, const char *key, uint8_t type,
                            const meta_entry **out)
{
    const meta_entry *m = meta_find(c, key);
    if (m == NULL)
        return r1_error__set(R1_ERR_NOT_FOUND, "metadata key '%s' not found", key);
    if (m->type != type)
        return r1_error__set(R1_ERR_FORMAT, "metadata key '%s' has type %u, expected %u", key,
                             m->type, type);
    *out = m;
    return R1_OK;
}

r1_status r1_container__meta_i64(const r1_container *c, const char *key, int64_t *out)
{
    const meta_entry *m = NULL;
    r1_status st = meta_typed(c, key, R1M_META_I64, &m);
    if (st == R1_OK)
        *out = (int64_t)r1_le__u64(m->value);
    return st;
}

r1_status r1_container__meta_f64(const r1_container *c, const char *key, double *out)
{
    const meta_entry *m = NULL;
    r1_status st = meta_typed(c, key, R1M_META_F64, &m);
    if (st == R1_OK)
        *out = r1_le__f64(m->value);
    return st;
}

r1_status r1_container__meta_bytes(const r1_container *c, const char *key, const uint8_t **data_out,
                                   size_t *len_out)
{
    const meta_entry *m = meta_find(c, key);
    if (m == NULL)
        return r1_error__set(R1_ERR_NOT_FOUND, "metadata key '%s' not found", key);
    if (m->type != R1M_META_STR && m->type != R1M_META_BYTES)
        return r1_error__set(R1_ERR_FORMAT, "metadata key '%s' is not a string or bytes", key);
    *data_out = m->value;
    *len_out = (size_t)m->value_len;
    return R1_OK;
}

static r1_status parse_config(r1_container *c)
{
    size_t n;
    const r1_config_field *f = r1_model_config__fields(&n);
    r1_model_config *cfg = &c->cfg;
    char key[128];
    for (size_t i = 0; i < n; i++) {
        snprintf(key, sizeof key, "config.%s", f[i].key);
        const meta_entry *m = meta_find(c, key);
        if (m == NULL) {
            if (f[i].required)
                return r1_error__set(R1_ERR_FORMAT, "metadata key '%s' is missing", key);
            if (f[i].kind == R1_CONFIG_I64)
                *(int64_t *)((char *)cfg + f[i].offset) = (int64_t)f[i].default_value;
            else if (f[i].kind == R1_CONFIG_F64)
                *(double *)((char *)cfg + f[i].offset) = f[i].default_value;
            continue;
        }
        static const uint8_t want[] = {0, R1M_META_I64, R1M_META_F64, R1M_META_STR};
        if (m->type != want[f[i].kind])
            return r1_error__set(R1_ERR_FORMAT, "metadata key '%s' has type %u, expected %u", key,
                                 m->type, want[f[i].kind]);
        if (f[i].kind == R1_CONFIG_I64) {
            *(int64_t *)((char *)cfg + f[i].offset) = (int64_t)r1_le__u64(m->value);
        } else if (f[i].kind == R1_CONFIG_F64) {
            *(double *)((char *)cfg + f[i].offset) = r1_le__f64(m->value);
        } else {
            char text[64];
            if (m->value_len >= sizeof text)
                return r1_error__set(R1_ERR_UNSUPPORTED, "metadata '%s' value is too long", key);
            memcpy(text, m->value, (size_t)m->value_len);
            text[m->value_len] = 0;
            r1_status st = r1_model_config__set_string(cfg, f[i].key, text);
            if (st != R1_OK)
                return st;
        }
    }
    if (cfg->arch == 0)
        return r1_error__set(R1_ERR_FORMAT, "metadata key 'config.model_type' is missing");
    return r1_model_config__validate(cfg);
}

static r1_status parse_tensor(r1_container *c, cursor *cur, uint32_t i, uint32_t align)
{
    tensor_entry *t = &c->tensors[i];
    const uint8_t *p;
    uint64_t at = cur->base;
    if (!take(cur, 8, &p))
        return r1_error__set(R1_ERR_FORMAT, "tensor record %u at offset %" PRIu64 " truncated", i,
                             at);
    t->name_len = r1_le__u16(p);
    t->dtype = p[2];
    t->n_dims = p[3];
    uint8_t codec = p[4];
    if (p[5] | p[6] | p[7])
        return r1_error__set(R1_ERR_FORMAT,
                             "tensor record %u at offset %" PRIu64 " has non-zero reserved bytes",
                             i, at);
    if (t->name_len == 0 || t->name_len > R1M_MAX_NAME)
        return r1_error__set(R1_ERR_FORMAT,
                             "tensor record %u at offset %" PRIu64 " has name length %u", i, at,
                             t->name_len);
    if (t->n_dims < 1 || t->n_dims > R1_MAX_DIMS)
        return r1_error__set(R1_ERR_FORMAT, "tensor record %u at offset %" PRIu64 " has %d dims", i,
                             at, (int)t->n_dims);
    const uint8_t *shape_p, *fixed, *name;
    if (!take(cur, 8 * (uint64_t)t->n_dims, &shape_p) || !take(cur, 32, &fixed) ||
        !take(cur, t->name_len, &name))
        return r1_error__set(R1_ERR_FORMAT, "tensor record %u at offset %" PRIu64 " truncated", i,
                             at);
    t->name = (const char *)name;
    if (memchr(name, 0, t->name_len))
        return r1_error__set(R1_ERR_FORMAT, "tensor record %u name contains NUL", i);
    int nl = (int)t->name_len;
    if (r1_dtype__traits(t->dtype) == NULL)
        return r1_error__set(R1_ERR_UNSUPPORTED, "tensor '%.*s' has unknown dtype %d", nl, t->name,
                             (int)t->dtype);
    if (codec != R1M_CODEC_RAW)
        return r1_error__set(R1_ERR_UNSUPPORTED,
                             "tensor '%.*s' uses codec %u; dense tensors must "
                             "be stored raw",
                             nl, t->name, codec);
    uint64_t elems = 1;
    for (int32_t d = 0; d < t->n_dims; d++) {
        uint64_t v = r1_le__u64(shape_p + 8 * d);
        if (v == 0 || v > (UINT64_C(1) << 40))
            return r1_error__set(R1_ERR_FORMAT, "tensor '%.*s' dimension %d is %" PRIu64, nl,
                                 t->name, (int)d, v);
        t->shape[d] = (int64_t)v;
        if (!mul_ok(elems, v, &elems) || elems > (UINT64_C(1) << 48))
            return r1_error__set(R1_ERR_FORMAT, "tensor '%.*s' element count overflows", nl,
                                 t->name);
    }
    t->offset = r1_le__u64(fixed);
    t->size = r1_le__u64(fixed + 8);
    uint64_t raw = r1_le__u64(fixed + 16);
    t->checksum = r1_le__u64(fixed + 24);
    int64_t cols = t->shape[t->n_dims - 1];
    uint64_t rows = elems / (uint64_t)cols, need = 0;
    size_t row_bytes = r1_dtype__row_bytes(t->dtype, cols);
    if (row_bytes == 0)
        return r1_error__set(R1_ERR_FORMAT,
                             "tensor '%.*s': %" PRId64 " columns is not a whole "
                             "number of %s blocks",
                             nl, t->name, cols, r1_dtype__traits(t->dtype)->name);
    if (!mul_ok(rows, row_bytes, &need) || need != raw || raw != t->size)
        return r1_error__set(R1_ERR_FORMAT,
                             "tensor '%.*s': shape and dtype %s need %" PRIu64
                             " bytes but the index says raw %" PRIu64 ", stored %" PRIu64,
                             nl, t->name, r1_dtype__traits(t->dtype)->name, need, raw, t->size);
    uint64_t end;
    if (t->offset % align != 0 || t->offset < R1M_HEADER_SIZE ||
        !add_ok(t->offset, t->size, &end) || end > c->file_size)
        return r1_error__set(R1_ERR_FORMAT,
                             "tensor '%.*s': bytes [%" PRIu64 ", +%" PRIu64
                             ") are misaligned or outside the file (%" PRIu64 " bytes)",
                             nl, t->name, t->offset, t->size, c->file_size);
    int32_t prev;
    if (r1_name_index__insert(&c->tensor_ix, t->name, t->name_len, (int32_t)i, &prev) != 0)
        return r1_error__set(R1_ERR_FORMAT, "duplicate tensor '%.*s' (records %d and %u)", nl,
                             t->name, (int)prev, i);
    t->scale_index = -1;
    c->dense_bytes += t->size;
    return R1_OK;
}

uint64_t r1_container__expert_layout(r1_expert_blob *b)
{
    uint64_t off = 0;
    for (int k = 0; k < 3; k++) {
        int64_t rows = k == 2 ? b->hidden : b->inter, cols = k == 2 ? b->inter : b->hidden;
        size_t rb = r1_dtype__row_bytes(b->dtype[k], cols);
        const r1_dtype_traits *tr = r1_dtype__traits(b->dtype[k]);
        if (rb == 0 || rows <= 0 || tr == NULL)
            return 0;
        off = (off + R1M_ALIGN - 1) / R1M_ALIGN * R1M_ALIGN;
        b->data_off[k] = off;
        b->data_bytes[k] = (uint64_t)rows * rb;
        off += b->data_bytes[k];
        b->scale_off[k] = b->scale_bytes[k] = 0;
        if (tr->has_block_scale) {
            off = (off + R1M_ALIGN - 1) / R1M_ALIGN * R1M_ALIGN;
            b->scale_off[k] = off;
            b->scale_bytes[k] =
                (uint64_t)r1_fp8__scale_blocks(rows) * (uint64_t)r1_fp8__scale_blocks(cols) * 4;
            off += b->scale_bytes[k];
        }
    }
    return off;
}

static r1_status parse_blob(r1_container *c, cursor *cur, uint32_t i)
{
    r1_expert_blob *b = &c->blobs[i];
    const uint8_t *p;
    uint64_t at = cur->base;
    if (!take(cur, R1M_EXPERT_RECORD, &p))
        return r1_error__set(R1_ERR_FORMAT, "expert record %u at offset %" PRIu64 " truncated", i,
                             at);
    uint32_t layer = r1_le__u32(p), expert = r1_le__u32(p + 4);
    const r1_model_config *cfg = &c->cfg;
    /* A blob holds the schema's routed expert projections, in the layers they are in, and its
     * (inter, hidden) are the gate projection's shape. */
    const r1_schema *schema = r1_model_schema__get(cfg);
    const r1_schema_tensor *gate = schema ? r1_model_schema__expert(schema, 0) : NULL;
    if (gate == NULL || !r1_model_schema__at(cfg, gate, layer) ||
        expert >= (uint64_t)cfg->n_routed_experts)
        return r1_error__set(R1_ERR_FORMAT,
                             "expert record %u at offset %" PRIu64
                             " names (layer %u, expert %u), which has no routed expert",
                             i, at, layer, expert);
    b->layer = (int32_t)layer;
    b->expert = (int32_t)expert;
    b->offset = r1_le__u64(p + 8);
    b->stored_size = r1_le__u64(p + 16);
    b->raw_size = r1_le__u64(p + 24);
    b->checksum = r1_le__u64(p + 32);
    b->codec = p[40];
    b->filter = p[41];
    for (int k = 0; k < 3; k++)
        b->dtype[k] = p[42 + k];
    b->inter = r1_le__u32(p + 48);
    b->hidden = r1_le__u32(p + 52);
    if (p[45] | p[46] | p[47] | r1_le__u64(p + 56))
        return r1_error__set(R1_ERR_FORMAT, "expert (layer %u, expert %u): non-zero reserved bytes",
                             layer, expert);
    for (int k = 0; k < 3; k++)
        if (r1_dtype__traits(b->dtype[k]) == NULL)
            return r1_error__set(R1_ERR_UNSUPPORTED,
                                 "expert (layer %u, expert %u) has unknown "
                                 "dtype %d",
                                 layer, expert, (int)b->dtype[k]);
    if (b->codec > R1M_CODEC_ZSTD)
        return r1_error__set(R1_ERR_UNSUPPORTED,
                             "expert (layer %u, expert %u) uses unknown codec "
                             "%u",
                             layer, expert, b->codec);
    if (b->filter > R1M_FILTER_NIBBLEPLANE2)
        return r1_error__set(R1_ERR_UNSUPPORTED,
                             "expert (layer %u, expert %u) uses unknown "
                             "filter %u",
                             layer, expert, b->filter);
    const int64_t want_inter = r1_model_schema__dim(cfg, gate->rows);
    const int64_t want_hidden = r1_model_schema__dim(cfg, gate->cols);
    if (b->inter != want_inter || b->hidden != want_hidden)
        return r1_error__set(R1_ERR_FORMAT,
                             "expert (layer %u, expert %u) has shape (%" PRId64 ", %" PRId64
                             "), config says (%" PRId64 ", %" PRId64 ")",
                             layer, expert, b->inter, b->hidden, want_inter, want_hidden);
    uint64_t raw = r1_container__expert_layout(b);
    /* A compressed blob may claim any size; cap it so a tiny crafted file cannot make a load
     * allocate and fill an absurd buffer (the largest real expert is 42 MiB). */
    if (raw > R1M_MAX_EXPERT_BYTES)
        return r1_error__set(R1_ERR_FORMAT,
                             "expert (layer %u, expert %u) would be %" PRIu64
                             " bytes, more than the %" PRIu64 " allowed",
                             layer, expert, raw, (uint64_t)R1M_MAX_EXPERT_BYTES);
    if (raw == 0 || raw != b->raw_size)
        return r1_error__set(R1_ERR_FORMAT,
                             "expert (layer %u, expert %u): dtypes and shapes need "
                             "%" PRIu64 " raw bytes, the index says %" PRIu64,
                             layer, expert, raw, b->raw_size);
    if (b->filter == R1M_FILTER_BYTEPLANE2)
        for (int k = 0; k < 3; k++)
            if (r1_dtype__traits(b->dtype[k])->block_bytes != 2)
                return r1_error__set(R1_ERR_FORMAT,
                                     "expert (layer %u, expert %u): byte-plane "
                                     "filter on a non-16-bit dtype",
                                     layer, expert);
    if (b->filter == R1M_FILTER_NIBBLEPLANE2)
        for (int k = 0; k < 3; k++)
            if (b->dtype[k] != R1_DTYPE_FP8_E4M3)
                return r1_error__set(R1_ERR_FORMAT,
                                     "expert (layer %u, expert %u): nibble-plane "
                                     "filter on a non-FP8 dtype",
                                     layer, expert);
    if (b->filter != R1M_FILTER_NONE && b->codec == R1M_CODEC_RAW)
        return r1_error__set(
            R1_ERR_FORMAT, "expert (layer %u, expert %u): a filter without a codec", layer, expert);
    uint64_t end;
    if ((b->codec == R1M_CODEC_RAW && b->stored_size != b->raw_size) || b->stored_size == 0 ||
        b->offset < R1M_HEADER_SIZE || !add_ok(b->offset, b->stored_size, &end) ||
        end > c->file_size)
        return r1_error__set(R1_ERR_FORMAT,
                             "expert (layer %u, expert %u): stored bytes [%" PRIu64 ", +%" PRIu64
                             ") are invalid or outside the file (%" PRIu64 " bytes)",
                             layer, expert, b->offset, b->stored_size, c->file_size);
    size_t slot = (size_t)layer * (size_t)cfg->n_routed_experts + expert;
    if (c->blob_of[slot] >= 0)
        return r1_error__set(R1_ERR_FORMAT, "duplicate expert blob (layer %u, expert %u)", layer,
                             expert);
    c->blob_of[slot] = (int32_t)i;
    if (b->raw_size > c->max_expert_bytes)
        c->max_expert_bytes = b->raw_size;
    c->expert_bytes += b->raw_size;
    return R1_OK;
}

/* Decides whether the expert blobs can be read with O_DIRECT: each starts on an
 * R1M_BLOB_ALIGN boundary and its stored bytes rounded up to whole blocks stay inside the file
 * (docs/format.md §6). Version 1.1 files promise this, so there it is a format error when false;
 * in a 1.0 file it only decides what r1_container__open_direct() answers. */
static r1_status check_blob_spans(r1_container *c)
{
    c->direct_ok = c->n_blobs > 0;
    for (uint32_t i = 0; i < c->n_blobs; i++) {
        const r1_expert_blob *b = &c->blobs[i];
        uint64_t span = r1_container__blob_span(b), end;
        if (b->offset % R1M_BLOB_ALIGN == 0 && add_ok(b->offset, span, &end) && end <= c->file_size)
            continue;
        c->direct_ok = 0;
        if (c->version_minor >= R1M_VERSION_MINOR_ALIGNED)
            return r1_error__set(R1_ERR_FORMAT,
                                 "expert (layer %d, expert %d): an .r1m %d.%u file must start "
                                 "it on a %d-byte boundary with %" PRIu64
                                 " readable bytes, but it lies at offset %" PRIu64
                                 " in a file of %" PRIu64 " bytes",
                                 b->layer, b->expert, R1M_VERSION_MAJOR, c->version_minor,
                                 R1M_BLOB_ALIGN, span, b->offset, c->file_size);
    }
    return R1_OK;
}

uint64_t r1_container__blob_span(const r1_expert_blob *b)
{
    return (b->stored_size + R1M_BLOB_ALIGN - 1) / R1M_BLOB_ALIGN * R1M_BLOB_ALIGN;
}

static r1_status parse_index(r1_container *c, uint64_t index_off, uint64_t index_size,
                             uint32_t n_tensors, uint32_t n_blobs, uint32_t align)
{
    cursor cur = {c->index_buf, index_size, index_off};
    const uint8_t *p;
    if (!take(&cur, 8, &p) || r1_le__u32(p) != n_tensors || r1_le__u32(p + 4) != n_blobs)
        return r1_error__set(R1_ERR_FORMAT, "index counts disagree with the header");
    if ((uint64_t)n_tensors * (8 + 8 + 32 + 1) + (uint64_t)n_blobs * R1M_EXPERT_RECORD > index_size)
        return r1_error__set(R1_ERR_FORMAT,
                             "index of %" PRIu64 " bytes cannot hold %u tensors and "
                             "%u expert blobs",
                             index_size, n_tensors, n_blobs);
    const r1_model_config *cfg = &c->cfg;
    size_t n_slots = (size_t)r1_model_config__n_layers_stored(cfg) * (size_t)cfg->n_routed_experts;
    c->tensors = calloc(n_tensors ? n_tensors : 1, sizeof *c->tensors);
    c->blobs = calloc(n_blobs ? n_blobs : 1, sizeof *c->blobs);
    c->blob_of = malloc((n_slots > 0 ? n_slots : 1) * sizeof *c->blob_of); /* dense: none */
    if (!c->tensors || !c->blobs || !c->blob_of ||
        r1_name_index__init(&c->tensor_ix, n_tensors) != R1_OK)
        return r1_error__set(R1_ERR_NO_MEMORY, "out of memory reading the index");
    for (size_t s = 0; s < n_slots; s++)
        c->blob_of[s] = -1;
    r1_status st;
    for (uint32_t i = 0; i < n_tensors; i++)
        if ((st = parse_tensor(c, &cur, i, align)) != R1_OK)
            return st;
    c->n_tensors = n_tensors;
    for (uint32_t i = 0; i < n_blobs; i++)
        if ((st = parse_blob(c, &cur, i)) != R1_OK)
            return st;
    c->n_blobs = n_blobs;
    if (cur.left != 0)
        return r1_error__set(R1_ERR_FORMAT, "%" PRIu64 " stray bytes at the end of the index",
                             cur.left);
    return R1_OK;
}

/* Every tensor the architecture's schema (model_schema.h) names at each layer where it belongs,
 * in the shape and type it allows; every routed expert of a MoE layer as a blob; and, unless the
 * schema tolerates extras (the MoE architectures, as always), nothing it does not name, so a
 * file the forward pass would misread never opens (docs/model.md §4.1, §5.2, §5.4, §7.4). */
static r1_status check_schema(r1_container *c, const r1_schema *schema)
{
    const r1_model_config *g = &c->cfg;
    char name[R1M_MAX_NAME + 1];
    const r1_schema_tensor *experts = r1_model_schema__expert(schema, 0);
    if (c->n_blobs != 0 && experts == NULL)
        return r1_error__set(R1_ERR_FORMAT, "a %s model has no expert blobs", g->architecture);
    for (size_t i = 0; i < schema->n_tensors; i++) {
        const r1_schema_tensor *e = &schema->tensors[i];
        const int64_t n_layers = e->per_layer ? r1_model_schema__n_layers(g, e) : 1;
        for (int64_t l = 0; l < n_layers; l++) {
            if (!r1_model_schema__at(g, e, l))
                continue;
            if (e->role == R1_TROLE_EXPERT) { /* blobs: parse_blob checked each one's shape */
                for (int64_t x = 0; e == experts && x < g->n_routed_experts; x++)
                    if (c->blob_of[l * g->n_routed_experts + x] < 0)
                        return r1_error__set(
                            R1_ERR_FORMAT,
                            "expert blob (layer %" PRId64 ", expert %" PRId64 ") is missing", l, x);
                continue;
            }
            r1_model_schema__name(e, l, name, sizeof name);
            int32_t k = r1_name_index__find(&c->tensor_ix, name, strlen(name));
            if (k < 0) {
                if (!r1_model_schema__required(g, e))
                    continue;
                return r1_error__set(R1_ERR_FORMAT, "required tensor '%s' is missing", name);
            }
            const tensor_entry *t = &c->tensors[k];
            r1_status st = r1_model_schema__check(g, e, name, t->dtype, t->n_dims, t->shape);
            if (st != R1_OK)
                return st;
        }
    }
    for (uint32_t i = 0; i < c->n_tensors && !schema->extra_ok; i++) {
        const tensor_entry *t = &c->tensors[i];
        snprintf(name, sizeof name, "%.*s", (int)t->name_len, t->name);
        int64_t layer, expert;
        const r1_schema_tensor *e = r1_model_schema__find(schema, name, &layer, &expert);
        if (e == NULL || e->role == R1_TROLE_EXPERT || !r1_model_schema__at(g, e, layer))
            return r1_error__set(R1_ERR_FORMAT, "tensor '%s' is not part of a %s model", name,
                                 g->architecture);
    }
    return R1_OK;
}

static r1_status check_required(r1_container *c)
{
    const r1_model_config *g = &c->cfg;
    const r1_schema *schema = r1_model_schema__get(g);
    if (schema == NULL)
        return r1_error__set(R1_ERR_UNSUPPORTED, "no schema for architecture '%s'",
                             g->architecture);
    r1_status st = check_schema(c, schema);
    if (st != R1_OK)
        return st;
    /* Every FP8 tensor carries its block scales, with the shape its own shape implies. */
    char name[R1M_MAX_NAME + 16];
    for (uint32_t i = 0; i < c->n_tensors; i++) {
        tensor_entry *t = &c->tensors[i];
        if (t->dtype != R1_DTYPE_FP8_E4M3)
            continue;
        snprintf(name, sizeof name, "%.*s" R1_SCHEMA_SCALE_SUFFIX, (int)t->name_len, t->name);
        int32_t s = r1_name_index__find(&c->tensor_ix, name, strlen(name));
        int64_t rows = 1;
        for (int32_t d = 0; d + 1 < t->n_dims; d++)
            rows *= t->shape[d];
        int64_t cols = t->shape[t->n_dims - 1];
        if (s < 0)
            return r1_error__set(R1_ERR_FORMAT, "fp8 tensor '%.*s' has no scale tensor '%s'",
                                 (int)t->name_len, t->name, name);
        const tensor_entry *sc = &c->tensors[s];
        const int64_t s_rows = r1_fp8__scale_blocks(rows), s_cols = r1_fp8__scale_blocks(cols);
        if (sc->dtype != R1_DTYPE_F32 || sc->n_dims != 2 || sc->shape[0] != s_rows ||
            sc->shape[1] != s_cols)
            return r1_error__set(R1_ERR_FORMAT,
                                 "scale tensor '%s' must be f32 [%" PRId64 ", %" PRId64 "]", name,
                                 s_rows, s_cols);
        t->scale_index = s;
    }
    return R1_OK;
}

static r1_status open_checked(r1_container *c, const char *path)
{
    /* O_NONBLOCK: opening a FIFO for reading would wait for a writer forever; this way it opens
     * at once and fails the regular-file check below. Regular files ignore the flag. */
    c->fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (c->fd < 0)
        return r1_error__set(errno == ENOENT ? R1_ERR_NOT_FOUND : R1_ERR_IO, "cannot open '%s': %s",
                             path, strerror(errno));
    struct stat sb;
    if (fstat(c->fd, &sb) != 0)
        return r1_error__set(R1_ERR_IO, "cannot stat '%s': %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return r1_error__set(R1_ERR_IO, "'%s' is not a regular file", path);
    c->file_size = (uint64_t)sb.st_size;
    if (c->file_size < R1M_HEADER_SIZE)
        return r1_error__set(R1_ERR_FORMAT,
                             "'%s' is %" PRIu64 " bytes, shorter than the %d-byte "
                             ".r1m header",
                             path, c->file_size, R1M_HEADER_SIZE);
    uint8_t h[R1M_HEADER_SIZE];
    r1_status st = read_exact(c->fd, h, sizeof h, 0, "the header");
    if (st != R1_OK)
        return st;
    if (memcmp(h, R1M_MAGIC, R1M_MAGIC_LEN) != 0)
        return r1_error__set(R1_ERR_FORMAT, "'%s' is not an .r1m file (bad magic)", path);
    uint16_t vmajor = r1_le__u16(h + R1M_H_VMAJOR), vminor = r1_le__u16(h + R1M_H_VMINOR);
    if (vmajor != R1M_VERSION_MAJOR)
        return r1_error__set(R1_ERR_UNSUPPORTED,
                             "'%s' is .r1m version %u.%u; this libr1 reads "
                             "major version %d",
                             path, vmajor, vminor, R1M_VERSION_MAJOR);
    uint64_t stored = r1_le__u64(h + R1M_H_SUM), computed = r1_checksum__xxh64(h, R1M_H_SUM);
    if (stored != computed)
        return r1_error__set(R1_ERR_CHECKSUM,
                             "'%s': header checksum mismatch (stored %016" PRIx64
                             ", computed %016" PRIx64 ")",
                             path, stored, computed);
    if (r1_le__u32(h + R1M_H_HEADER_SIZE) != R1M_HEADER_SIZE)
        return r1_error__set(R1_ERR_FORMAT, "header size %u, expected %d",
                             r1_le__u32(h + R1M_H_HEADER_SIZE), R1M_HEADER_SIZE);
    uint64_t fsize = r1_le__u64(h + R1M_H_FILE_SIZE);
    if (fsize != c->file_size)
        return r1_error__set(
            R1_ERR_FORMAT, "'%s' is %" PRIu64 " bytes but its header says %" PRIu64 " (%s)", path,
            c->file_size, fsize, c->file_size < fsize ? "truncated" : "trailing bytes");
    uint32_t flags = r1_le__u32(h + R1M_H_FLAGS), align = r1_le__u32(h + R1M_H_ALIGN);
    if (flags != 0)
        return r1_error__set(R1_ERR_UNSUPPORTED, "'%s' uses unknown feature flags 0x%x", path,
                             flags);
    if (align < 16 || align > (1u << 20) || (align & (align - 1)) != 0)
        return r1_error__set(R1_ERR_FORMAT,
                             "data alignment %u is not a power of two in "
                             "[16, 2^20]",
                             align);
    for (int i = 88; i < R1M_H_SUM; i++)
        if (h[i] != 0)
            return r1_error__set(R1_ERR_FORMAT, "header reserved byte %d is not zero", i);
    uint64_t moff = r1_le__u64(h + R1M_H_META_OFF), msize = r1_le__u64(h + R1M_H_META_SIZE);
    uint64_t ioff = r1_le__u64(h + R1M_H_INDEX_OFF), isize = r1_le__u64(h + R1M_H_INDEX_SIZE);
    uint64_t mend, iend;
    if (moff < R1M_HEADER_SIZE || !add_ok(moff, msize, &mend) || mend > c->file_size ||
        msize > (UINT64_C(1) << 32) || msize < 4)
        return r1_error__set(R1_ERR_FORMAT,
                             "metadata [%" PRIu64 ", +%" PRIu64 ") lies outside "
                             "the file (%" PRIu64 " bytes)",
                             moff, msize, c->file_size);
    if (ioff < R1M_HEADER_SIZE || !add_ok(ioff, isize, &iend) || iend > c->file_size ||
        isize > (UINT64_C(1) << 32) || isize < 8)
        return r1_error__set(R1_ERR_FORMAT,
                             "index [%" PRIu64 ", +%" PRIu64 ") lies outside "
                             "the file (%" PRIu64 " bytes)",
                             ioff, isize, c->file_size);
    c->meta_buf = malloc((size_t)msize);
    c->index_buf = malloc((size_t)isize);
    if (c->meta_buf == NULL || c->index_buf == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "out of memory for the index");
    if ((st = read_exact(c->fd, c->meta_buf, msize, moff, "the metadata")) != R1_OK ||
        (st = read_exact(c->fd, c->index_buf, isize, ioff, "the index")) != R1_OK)
        return st;
    stored = r1_le__u64(h + R1M_H_META_SUM);
    computed = r1_checksum__xxh64(c->meta_buf, (size_t)msize);
    if (stored != computed)
        return r1_error__set(R1_ERR_CHECKSUM,
                             "metadata checksum mismatch at [%" PRIu64 ", +%" PRIu64
                             ") (stored %016" PRIx64 ", computed %016" PRIx64 ")",
                             moff, msize, stored, computed);
    stored = r1_le__u64(h + R1M_H_INDEX_SUM);
    computed = r1_checksum__xxh64(c->index_buf, (size_t)isize);
    if (stored != computed)
        return r1_error__set(R1_ERR_CHECKSUM,
                             "index checksum mismatch at [%" PRIu64 ", +%" PRIu64
                             ") (stored %016" PRIx64 ", computed %016" PRIx64 ")",
                             ioff, isize, stored, computed);
    if ((st = parse_meta(c, moff, msize)) != R1_OK || (st = parse_config(c)) != R1_OK)
        return st;
    if ((st = parse_index(c, ioff, isize, r1_le__u32(h + R1M_H_N_TENSORS),
                          r1_le__u32(h + R1M_H_N_EXPERTS), align)) != R1_OK)
        return st;
    if ((st = check_required(c)) != R1_OK)
        return st;
    c->version_minor = vminor;
    c->header_sum = r1_le__u64(h + R1M_H_SUM);
    if ((st = check_blob_spans(c)) != R1_OK)
        return st;
    void *map = mmap(NULL, (size_t)c->file_size, PROT_READ, MAP_SHARED, c->fd, 0);
    if (map == MAP_FAILED)
        return r1_error__set(R1_ERR_IO, "cannot map '%s': %s", path, strerror(errno));
    c->map = map;
    return R1_OK;
}

r1_status r1_container__open(r1_container **out, const char *path)
{
    *out = NULL;
    r1_container *c = calloc(1, sizeof *c);
    if (c == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "out of memory");
    c->fd = -1;
    r1_status st = open_checked(c, path);
    if (st != R1_OK) {
        r1_container__close(c);
        return st;
    }
    *out = c;
    return R1_OK;
}

void r1_container__close(r1_container *c)
{
    if (c == NULL)
        return;
    if (c->map)
        munmap((void *)c->map, (size_t)c->file_size);
    if (c->fd >= 0)
        close(c->fd);
    r1_name_index__free(&c->meta_ix);
    r1_name_index__free(&c->tensor_ix);
    free(c->meta);
    free(c->tensors);
    free(c->blobs);
    free(c->blob_of);
    free(c->meta_buf);
    free(c->index_buf);
    free(c);
}

const r1_model_config *r1_container__config(const r1_container *c)
{
    return &c->cfg;
}

static void fill_view(const r1_container *c, const tensor_entry *t, r1_tensor *out)
{
    memset(out, 0, sizeof *out);
    out->dtype = t->dtype;
    out->n_dims = t->n_dims;
    for (int32_t d = 0; d < t->n_dims; d++)
        out->shape[d] = t->shape[d];
    out->data = c->map + t->offset;
    out->nbytes = (size_t)t->size;
    if (t->scale_index >= 0) {
        const tensor_entry *s = &c->tensors[t->scale_index];
        out->scale = (const float *)(const void *)(c->map + s->offset);
        out->scale_cols = s->shape[1];
    }
}

r1_status r1_container__tensor(const r1_container *c, const char *name, r1_tensor *out)
{
    int32_t i = r1_name_index__find(&c->tensor_ix, name, strlen(name));
    if (i < 0)
        return r1_error__set(R1_ERR_NOT_FOUND, "no tensor named '%s'", name);
    fill_view(c, &c->tensors[i], out);
    return R1_OK;
}

r1_status r1_container__layer_tensor(const r1_container *c, int64_t layer, const char *suffix,
                                     r1_tensor *out)
{
    char name[R1M_MAX_NAME + 1];
    snprintf(name, sizeof name, "model.layers.%" PRId64 ".%s", layer, suffix);
    return r1_container__tensor(c, name, out);
}

int32_t r1_container__n_tensors(const r1_container *c)
{
    return (int32_t)c->n_tensors;
}

r1_status r1_container__tensor_at(const r1_container *c, int32_t i, const char **name_out,
                                  size_t *name_len_out, r1_tensor *out)
{
    if (i < 0 || (uint32_t)i >= c->n_tensors)
        return r1_error__set(R1_ERR_OUT_OF_RANGE, "tensor index %d outside [0, %u)", (int)i,
                             c->n_tensors);
    *name_out = c->tensors[i].name;
    *name_len_out = c->tensors[i].name_len;
    fill_view(c, &c->tensors[i], out);
    return R1_OK;
}

r1_status r1_container__verify_tensor(const r1_container *c, int32_t i)
{
    if (i < 0 || (uint32_t)i >= c->n_tensors)
        return r1_error__set(R1_ERR_OUT_OF_RANGE, "tensor index %d outside [0, %u)", (int)i,
                             c->n_tensors);
    const tensor_entry *t = &c->tensors[i];
    uint64_t h = r1_checksum__xxh64(c->map + t->offset, (size_t)t->size);
    if (h != t->checksum)
        return r1_error__set(R1_ERR_CHECKSUM,
                             "tensor '%.*s' at [%" PRIu64 ", +%" PRIu64
                             ") fails its checksum (stored %016" PRIx64 ", computed %016" PRIx64
                             ")",
                             (int)t->name_len, t->name, t->offset, t->size, t->checksum, h);
    return R1_OK;
}

const r1_expert_blob *r1_container__expert(const r1_container *c, int64_t layer, int64_t expert)
{
    const r1_model_config *g = &c->cfg;
    if (layer < 0 || layer >= r1_model_config__n_layers_stored(g) || expert < 0 ||
        expert >= g->n_routed_experts)
        return NULL;
    int32_t i = c->blob_of[layer * g->n_routed_experts + expert];
    return i < 0 ? NULL : &c->blobs[i];
}

uint64_t r1_container__max_expert_bytes(const r1_container *c)
{
    return c->max_expert_bytes;
}

int32_t r1_container__n_expert_blobs(const r1_container *c)
{
    return (int32_t)c->n_blobs;
}

const r1_expert_blob *r1_container__expert_at(const r1_container *c, int32_t i)
{
    return i < 0 || (uint32_t)i >= c->n_blobs ? NULL : &c->blobs[i];
}

int r1_container__fd(const r1_container *c)
{
    return c->fd;
}

int r1_container__open_direct(const r1_container *c)
{
    if (c == NULL || !c->direct_ok)
        return -1;
    /* Through /proc rather than by path: the same file even if it was renamed or replaced since
     * the container opened it. */
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", c->fd);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_DIRECT);
    if (fd < 0)
        return -1;
    struct stat a, b;
    if (fstat(fd, &a) != 0 || fstat(c->fd, &b) != 0 || a.st_dev != b.st_dev ||
        a.st_ino != b.st_ino) {
        close(fd);
        return -1;
    }
    return fd;
}

uint16_t r1_container__version_minor(const r1_container *c)
{
    return c->version_minor;
}

uint64_t r1_container__header_sum(const r1_container *c)
{
    return c->header_sum;
}

uint64_t r1_container__file_size(const r1_container *c)
{
    return c->file_size;
}

int32_t r1_container__maps(const r1_container *c, const void *p, size_t n)
{
    if (c == NULL || c->map == NULL || p == NULL)
        return 0;
    /* As integers: relational operators on pointers into different objects are undefined. */
    uintptr_t first = (uintptr_t)c->map, at = (uintptr_t)p;
    return at >= first && n <= c->file_size && at - first <= c->file_size - n;
}

uint64_t r1_container__release(const r1_container *c, const void *p, size_t n)
{
    if (!r1_container__maps(c, p, n))
        return 0;
    const long page_l = sysconf(_SC_PAGESIZE);
    const uintptr_t page = page_l > 0 ? (uintptr_t)page_l : 4096;
    const uintptr_t base = (uintptr_t)c->map, at = (uintptr_t)p;
    /* The mapping starts on a page, so pages of the mapping are pages of the file. */
    const uintptr_t first = (at + page - 1) / page * page, end = (at + n) / page * page;
    if (end <= first)
        return 0;
    /* Neither call changes what a read returns; failing either only leaves memory in use. */
    (void)madvise((void *)first, (size_t)(end - first), MADV_DONTNEED);
    (void)posix_fadvise(c->fd, (off_t)(first - base), (off_t)(end - first), POSIX_FADV_DONTNEED);
    return (uint64_t)(end - first);
}

uint64_t r1_container__dense_bytes(const r1_container *c)
{
    return c->dense_bytes;
}

uint64_t r1_container__expert_raw_bytes(const r1_container *c)
{
    return c->expert_bytes;
}
