/* safetensors.c: parses safetensors headers and shard indexes; maps tensor bytes in place. */
#include "safetensors.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dtype.h"
#include "error.h"
#include "le.h"

enum { ST_MAX_HEADER = 100 << 20, ST_MAX_FILES = 100000 };

static const struct {
    const char *name;
    uint32_t size;
    int32_t dtype;
} st_dtypes[] = {
    {"F32", 4, R1_DTYPE_F32},
    {"F16", 2, R1_DTYPE_F16},
    {"BF16", 2, R1_DTYPE_BF16},
    {"F8_E4M3", 1, R1_DTYPE_FP8_E4M3},
    {"F8_E5M2", 1, -1},
    {"F64", 8, -1},
    {"I64", 8, -1},
    {"U64", 8, -1},
    {"I32", 4, -1},
    {"U32", 4, -1},
    {"I16", 2, -1},
    {"U16", 2, -1},
    {"I8", 1, -1},
    {"U8", 1, -1},
    {"BOOL", 1, -1},
};

r1_status r1_safetensors__read_small(const char *path, size_t max_bytes, char **data_out,
                                     size_t *len_out)
{
    *data_out = NULL;
    /* O_NONBLOCK: a FIFO opens at once (and is refused below) instead of waiting for a writer. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return r1_error__set(errno == ENOENT ? R1_ERR_NOT_FOUND : R1_ERR_IO, "cannot open '%s': %s",
                             path, strerror(errno));
    struct stat sb;
    r1_status st = R1_OK;
    char *buf = NULL;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = r1_error__set(R1_ERR_IO, "'%s' is not a readable regular file", path);
        goto done;
    }
    if ((uint64_t)sb.st_size > max_bytes) {
        st = r1_error__set(R1_ERR_FORMAT, "'%s' is %lld bytes, more than the %zu allowed", path,
                           (long long)sb.st_size, max_bytes);
        goto done;
    }
    size_t n = (size_t)sb.st_size, got = 0;
    buf = malloc(n + 1);
    if (buf == NULL) {
        st = r1_error__set(R1_ERR_NO_MEMORY, "out of memory reading '%s'", path);
        goto done;
    }
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            st = r1_error__set(R1_ERR_IO, "cannot read '%s': %s", path,
                               r < 0 ? strerror(errno) : "unexpected end of file");
            goto done;
        }
        got += (size_t)r;
    }
    buf[n] = 0;
    *data_out = buf;
    *len_out = n;
    buf = NULL;
done:
    free(buf);
    close(fd);
    return st;
}

static int is_whole(double v, double max)
{
    return isfinite(v) && v >= 0 && v <= max && v == floor(v);
}

/* Parses one mapped file's header and appends its tensors. */
static r1_status parse_file(r1_safetensors *st, int32_t fi, cJSON **json_out)
{
    r1_st_file *f = &st->files[fi];
    if (f->size < 8)
        return r1_error__set(R1_ERR_FORMAT,
                             "safetensors file '%s' is %" PRIu64 " bytes, shorter "
                             "than its 8-byte header length",
                             f->name, f->size);
    uint64_t n = r1_le__u64(f->map);
    if (n < 2 || n > ST_MAX_HEADER || n > f->size - 8)
        return r1_error__set(R1_ERR_FORMAT,
                             "safetensors file '%s': header length %" PRIu64
                             " is invalid for a %" PRIu64 "-byte file",
                             f->name, n, f->size);
    f->header_len = n;
    cJSON *j = cJSON_ParseWithLength((const char *)f->map + 8, (size_t)n);
    *json_out = j;
    if (j == NULL || !cJSON_IsObject(j))
        return r1_error__set(R1_ERR_FORMAT,
                             "safetensors file '%s': the header is not a JSON "
                             "object",
                             f->name);
    const uint8_t *buffer = f->map + 8 + n;
    uint64_t buffer_len = f->size - 8 - n;
    int32_t count = 0;
    for (cJSON *e = j->child; e; e = e->next)
        count++;
    r1_st_tensor *grown = realloc(st->tensors, ((size_t)st->n_tensors + count + 1) * sizeof *grown);
    if (grown == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "out of memory");
    st->tensors = grown;
    for (cJSON *e = j->child; e; e = e->next) {
        const char *name = e->string;
        if (strcmp(name, "__metadata__") == 0) {
            if (!cJSON_IsObject(e))
                return r1_error__set(R1_ERR_FORMAT, "'%s': __metadata__ is not an object", f->name);
            continue;
        }
        cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
        cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
        cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
        if (!cJSON_IsObject(e) || !cJSON_IsString(dt) || !cJSON_IsArray(shape) ||
            !cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2)
            return r1_error__set(R1_ERR_FORMAT,
                                 "'%s': tensor '%.200s' lacks dtype, shape or "
                                 "data_offsets",
                                 f->name, name);
        r1_st_tensor *t = &st->tensors[st->n_tensors];
        memset(t, 0, sizeof *t);
        uint32_t elem = 0;
        t->dtype = -1;
        for (size_t k = 0; k < sizeof st_dtypes / sizeof st_dtypes[0]; k++)
            if (strcmp(dt->valuestring, st_dtypes[k].name) == 0) {
                elem = st_dtypes[k].size;
                t->dtype = st_dtypes[k].dtype;
                snprintf(t->st_dtype, sizeof t->st_dtype, "%s", st_dtypes[k].name);
            }
        if (elem == 0)
            return r1_error__set(R1_ERR_UNSUPPORTED,
                                 "'%s': tensor '%.200s' has unknown dtype "
                                 "'%.32s'",
                                 f->name, name, dt->valuestring);
        int nd = cJSON_GetArraySize(shape);
        if (nd > 8)
            return r1_error__set(R1_ERR_FORMAT, "'%s': tensor '%.200s' has %d dimensions", f->name,
                                 name, nd);
        t->n_dims = nd;
        uint64_t elems = 1;
        int d = 0;
        for (cJSON *s = shape->child; s; s = s->next, d++) {
            if (!cJSON_IsNumber(s) || !is_whole(s->valuedouble, 9007199254740992.0))
                return r1_error__set(R1_ERR_FORMAT, "'%s': tensor '%.200s' has a bad shape",
                                     f->name, name);
            uint64_t v = (uint64_t)s->valuedouble;
            t->shape[d] = (int64_t)v;
            if (v != 0 && elems > UINT64_MAX / v)
                return r1_error__set(R1_ERR_FORMAT, "'%s': tensor '%.200s' size overflows", f->name,
                                     name);
            elems *= v;
        }
        double b = offs->child->valuedouble, en = offs->child->next->valuedouble;
        if (!cJSON_IsNumber(offs->child) || !cJSON_IsNumber(offs->child->next) ||
            !is_whole(b, 9007199254740992.0) || !is_whole(en, 9007199254740992.0) || b > en ||
            (uint64_t)en > buffer_len)
            return r1_error__set(R1_ERR_FORMAT,
                                 "'%s': tensor '%.200s' data_offsets [%.0f, %.0f] "
                                 "lie outside the %" PRIu64 "-byte data buffer",
                                 f->name, name, b, en, buffer_len);
        t->data = buffer + (uint64_t)b;
        t->nbytes = (uint64_t)en - (uint64_t)b;
        if (elems > UINT64_MAX / elem || elems * elem != t->nbytes)
            return r1_error__set(R1_ERR_FORMAT,
                                 "'%s': tensor '%.200s' has %" PRIu64 " bytes but "
                                 "its shape and dtype need %" PRIu64,
                                 f->name, name, t->nbytes, elems * (uint64_t)elem);
        t->file = fi;
        t->name = strdup(name);
        if (t->name == NULL)
            return r1_error__set(R1_ERR_NO_MEMORY, "out of memory");
        st->n_tensors++;
    }
    return R1_OK;
}

static r1_status map_file(r1_safetensors *st, const char *dir, const char *name)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return r1_error__set(R1_ERR_INVALID_ARG, "path too long");
    r1_st_file *f = &st->files[st->n_files];
    memset(f, 0, sizeof *f);
    f->name = strdup(name);
    if (f->name == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "out of memory");
    st->n_files++;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return r1_error__set(errno == ENOENT ? R1_ERR_NOT_FOUND : R1_ERR_IO, "cannot open '%s': %s",
                             path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size == 0) {
        close(fd);
        return r1_error__set(R1_ERR_FORMAT, "'%s' is not a non-empty regular file", path);
    }
    void *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int saved = errno;
    close(fd);
    if (m == MAP_FAILED)
        return r1_error__set(R1_ERR_IO, "cannot map '%s': %s", path, strerror(saved));
    f->map = m;
    f->size = (uint64_t)sb.st_size;
    cJSON *j = NULL;
    r1_status s = parse_file(st, st->n_files - 1, &j);
    cJSON_Delete(j);
    return s;
}

static r1_status build_index(r1_safetensors *st)
{
    if (r1_name_index__init(&st->ix, (uint32_t)st->n_tensors) != R1_OK)
        return r1_error__set(R1_ERR_NO_MEMORY, "out of memory");
    for (int32_t i = 0; i < st->n_tensors; i++) {
        int32_t prev;
        const char *n = st->tensors[i].name;
        if (r1_name_index__insert(&st->ix, n, (uint32_t)strlen(n), i, &prev) != 0)
            return r1_error__set(R1_ERR_FORMAT, "tensor '%.200s' appears in both '%s' and '%s'", n,
                                 st->files[st->tensors[prev].file].name,
                                 st->files[st->tensors[i].file].name);
    }
    return R1_OK;
}

static int plain_file_name(const char *s)
{
    return s[0] != 0 && s[0] != '.' && strchr(s, '/') == NULL && strchr(s, '\\') == NULL &&
           strlen(s) < 256;
}

static r1_status open_sharded(r1_safetensors *st, const char *dir, const char *index_json,
                              size_t len)
{
    r1_status s = R1_OK;
    cJSON *j = cJSON_ParseWithLength(index_json, len);
    cJSON *wm = j ? cJSON_GetObjectItemCaseSensitive(j, "weight_map") : NULL;
    if (!cJSON_IsObject(wm)) {
        s = r1_error__set(R1_ERR_FORMAT, "model.safetensors.index.json has no weight_map object");
        goto done;
    }
    int n = cJSON_GetArraySize(wm);
    st->files = calloc((size_t)n + 1, sizeof *st->files);
    if (st->files == NULL) {
        s = r1_error__set(R1_ERR_NO_MEMORY, "out of memory");
        goto done;
    }
    for (cJSON *e = wm->child; e; e = e->next) {
        if (!cJSON_IsString(e) || !plain_file_name(e->valuestring)) {
            s = r1_error__set(R1_ERR_FORMAT,
                              "weight_map entry '%.200s' does not name a file in "
                              "the checkpoint directory",
                              e->string);
            goto done;
        }
        int seen = 0;
        for (int32_t i = 0; i < st->n_files && !seen; i++)
            seen = strcmp(st->files[i].name, e->valuestring) == 0;
        if (!seen && (s = map_file(st, dir, e->valuestring)) != R1_OK)
            goto done;
    }
    if ((s = build_index(st)) != R1_OK)
        goto done;
    for (cJSON *e = wm->child; e; e = e->next) {
        const r1_st_tensor *t = r1_safetensors__find(st, e->string);
        if (t == NULL || strcmp(st->files[t->file].name, e->valuestring) != 0) {
            s = r1_error__set(R1_ERR_FORMAT,
                              "weight_map says tensor '%.200s' is in '%s', but it "
                              "is not there",
                              e->string, e->valuestring);
            goto done;
        }
    }
done:
    cJSON_Delete(j);
    return s;
}

r1_status r1_safetensors__open_dir(r1_safetensors **out, const char *dir)
{
    *out = NULL;
    r1_safetensors *st = calloc(1, sizeof *st);
    if (st == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "out of memory");
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    char *json = NULL;
    size_t len = 0;
    r1_status s = r1_safetensors__read_small(path, 256u << 20, &json, &len);
    if (s == R1_OK) {
        s = open_sharded(st, dir, json, len);
    } else if (s == R1_ERR_NOT_FOUND) {
        st->files = calloc(1, sizeof *st->files);
        s = st->files ? map_file(st, dir, "model.safetensors")
                      : r1_error__set(R1_ERR_NO_MEMORY, "out of memory");
        if (s == R1_OK)
            s = build_index(st);
    }
    free(json);
    if (s != R1_OK) {
        r1_safetensors__close(st);
        return s;
    }
    *out = st;
    return R1_OK;
}

r1_status r1_safetensors__open_file(r1_safetensors **out, const char *path)
{
    *out = NULL;
    r1_safetensors *st = calloc(1, sizeof *st);
    if (st == NULL || (st->files = calloc(1, sizeof *st->files)) == NULL) {
        free(st);
        return r1_error__set(R1_ERR_NO_MEMORY, "out of memory");
    }
    const char *slash = strrchr(path, '/');
    char dir[4096];
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
    r1_status s = map_file(st, dir, slash ? slash + 1 : path);
    if (s == R1_OK)
        s = build_index(st);
    if (s != R1_OK) {
        r1_safetensors__close(st);
        return s;
    }
    *out = st;
    return R1_OK;
}

void r1_safetensors__close(r1_safetensors *st)
{
    if (st == NULL)
        return;
    for (int32_t i = 0; i < st->n_tensors; i++)
        free(st->tensors[i].name);
    for (int32_t i = 0; i < st->n_files; i++) {
        if (st->files[i].map)
            munmap((void *)st->files[i].map, (size_t)st->files[i].size);
        free(st->files[i].name);
    }
    r1_name_index__free(&st->ix);
    free(st->tensors);
    free(st->files);
    free(st);
}

const r1_st_tensor *r1_safetensors__find(const r1_safetensors *st, const char *name)
{
    int32_t i = r1_name_index__find(&st->ix, name, strlen(name));
    return i < 0 ? NULL : &st->tensors[i];
}
