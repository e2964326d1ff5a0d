/* device_weights.c: host dense tensor -> device buffer, an open-addressing map on the host
 * address and the view's extent (a row range or two adjacent tensors are views of their own). */
#include "device_weights.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"

enum { R1_DW_ALIGN = 256 };

typedef struct r1_dw_entry {
    const void *host; /* NULL: empty */
    size_t nbytes;
    int32_t dtype;
    int64_t rows;
    const float *scale;
    r1_buf *buf; /* NULL with host set: the device cannot hold it */
    size_t scale_off;
} r1_dw_entry;

struct r1_device_weights {
    const r1_backend_ops *ops;
    r1_dev *dev;
    r1_dw_entry *table;
    size_t cap, used; /* cap is a power of two */
    r1_device_weights_counters k;
};

static size_t r1_dw_hash(const void *p, size_t cap)
{
    uint64_t h = (uint64_t)(uintptr_t)p * UINT64_C(0x9e3779b97f4a7c15);
    return (size_t)(h >> 17) & (cap - 1);
}

r1_status r1_device_weights__create(r1_device_weights **out, const r1_backend_ops *ops, r1_dev *dev)
{
    *out = NULL;
    r1_device_weights *dw = calloc(1, sizeof *dw);
    if (dw == NULL || (dw->table = calloc(64, sizeof *dw->table)) == NULL) {
        free(dw);
        return r1_error__set(R1_ERR_NO_MEMORY, "cannot allocate the device weight map");
    }
    dw->cap = 64;
    dw->ops = ops;
    dw->dev = dev;
    *out = dw;
    return R1_OK;
}

void r1_device_weights__destroy(r1_device_weights *dw)
{
    if (dw == NULL)
        return;
    dw->ops->wait(dw->dev, UINT64_MAX);
    for (size_t i = 0; i < dw->cap; i++)
        if (dw->table[i].buf != NULL)
            dw->ops->free(dw->dev, dw->table[i].buf);
    free(dw->table);
    free(dw);
}

static int r1_dw_same(const r1_dw_entry *e, const r1_tensor *w)
{
    return e->host == w->data && e->nbytes == w->nbytes && e->dtype == w->dtype &&
           e->rows == r1_tensor__rows(w) && e->scale == w->scale;
}

static r1_dw_entry *r1_dw_slot(r1_dw_entry *table, size_t cap, const r1_tensor *w)
{
    size_t i = r1_dw_hash(w->data, cap);
    while (table[i].host != NULL && !r1_dw_same(&table[i], w))
        i = (i + 1) & (cap - 1);
    return &table[i];
}

static r1_tensor r1_dw_key(const r1_dw_entry *e)
{
    r1_tensor t;
    memset(&t, 0, sizeof t);
    t.data = e->host;
    t.nbytes = e->nbytes;
    t.dtype = e->dtype;
    t.n_dims = 2;
    t.shape[0] = e->rows;
    t.shape[1] = 1;
    t.scale = e->scale;
    return t;
}

static r1_status r1_dw_grow(r1_device_weights *dw)
{
    size_t cap = dw->cap * 2;
    r1_dw_entry *table = calloc(cap, sizeof *table);
    if (table == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "cannot grow the device weight map");
    for (size_t i = 0; i < dw->cap; i++)
        if (dw->table[i].host != NULL) {
            r1_tensor key = r1_dw_key(&dw->table[i]);
            *r1_dw_slot(table, cap, &key) = dw->table[i];
        }
    free(dw->table);
    dw->table = table;
    dw->cap = cap;
    return R1_OK;
}

static r1_dtensor r1_dw_view(const r1_tensor *w, const r1_dw_entry *e)
{
    return (r1_dtensor){
        .buf = e->buf,
        .offset = 0,
        .dtype = w->dtype,
        .n_dims = 2,
        .shape = {r1_tensor__rows(w), r1_tensor__cols(w)},
        .scale_buf = w->scale != NULL ? e->buf : NULL,
        .scale_offset = e->scale_off,
    };
}

r1_status r1_device_weights__get(r1_device_weights *dw, const r1_tensor *w, r1_dtensor *out)
{
    if (dw == NULL || w == NULL || w->data == NULL || out == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "device weights: bad arguments");
    r1_dw_entry *e = r1_dw_slot(dw->table, dw->cap, w);
    if (e->host != NULL) {
        if (e->buf == NULL)
            return r1_error__set(R1_ERR_NO_MEMORY, "the device has no room for this weight");
        *out = r1_dw_view(w, e);
        return R1_OK;
    }
    if (2 * (dw->used + 1) > dw->cap) {
        r1_status st = r1_dw_grow(dw);
        if (st != R1_OK)
            return st;
        e = r1_dw_slot(dw->table, dw->cap, w);
    }
    const int64_t rows = r1_tensor__rows(w);
    size_t scale_bytes = r1_tensor__scale_bytes(w);
    size_t scale_off = (w->nbytes + R1_DW_ALIGN - 1) / R1_DW_ALIGN * R1_DW_ALIGN;
    r1_buf *buf = NULL;
    r1_status st = dw->ops->alloc(dw->dev, scale_off + scale_bytes, &buf);
    *e = (r1_dw_entry){
        .host = w->data, .nbytes = w->nbytes, .dtype = w->dtype, .rows = rows, .scale = w->scale};
    dw->used++;
    if (st != R1_OK) {
        /* Out of device memory is remembered: the product runs on the CPU from now on. */
        if (st == R1_ERR_NO_MEMORY)
            dw->k.host_only++;
        else
            e->host = NULL, dw->used--;
        return st;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    st = dw->ops->upload(dw->dev, buf, 0, w->data, w->nbytes);
    if (st == R1_OK && scale_bytes > 0)
        st = dw->ops->upload(dw->dev, buf, scale_off, w->scale, scale_bytes);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    dw->k.upload_ns +=
        (uint64_t)(t1.tv_sec - t0.tv_sec) * 1000000000u + (uint64_t)(t1.tv_nsec - t0.tv_nsec);
    if (st != R1_OK) {
        dw->ops->wait(dw->dev, UINT64_MAX);
        dw->ops->free(dw->dev, buf);
        e->host = NULL;
        dw->used--;
        return st;
    }
    e->buf = buf;
    e->scale_off = scale_off;
    dw->k.tensors++;
    dw->k.bytes += scale_off + scale_bytes;
    *out = r1_dw_view(w, e);
    return R1_OK;
}

void r1_device_weights__counters(const r1_device_weights *dw, r1_device_weights_counters *out)
{
    memset(out, 0, sizeof *out);
    if (dw != NULL)
        *out = dw->k;
}
