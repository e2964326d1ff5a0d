/* expert_cache.c: loads expert blobs on demand into a budgeted LRU cache with pinning. */
#include "expert_cache.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#include "checksum.h"
#include "clock.h"
#include "dtype.h"
#include "error.h"
#include "lru.h"
#include "weight_layout.h"

enum { SLOT_EMPTY = 0, SLOT_LOADING = 1, SLOT_READY = 2 };

typedef struct slot {
    r1_lru_node lru; /* first (lru.h): listed while READY and unpinned */
    int32_t state;
    int32_t pins;
    uint8_t *data; /* raw blob, 64-byte aligned */
    uint64_t bytes;
    r1_expert view;
} slot;

struct r1_expert_cache {
    const r1_container *c;
    int64_t n_experts;
    size_t n_slots;
    slot *slots;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    r1_lru_node lru; /* READY, unpinned slots, least recent first */
    r1_expert_cache_counters k;
    uint64_t reads, fault_at;
    int32_t fault_kind;
    size_t last_found;      /* r1_expert_cache__find's hint */
    _Atomic int32_t layout; /* enum r1_layout for projections loaded from now on */
};

r1_status r1_expert_cache__create(r1_expert_cache **out, const r1_container *c,
                                  uint64_t budget_bytes)
{
    *out = NULL;
    const r1_model_config *g = r1_container__config(c);
    uint64_t need = (uint64_t)g->num_experts_per_tok * r1_container__max_expert_bytes(c);
    if (budget_bytes != 0 && budget_bytes < need)
        return r1_error__set(R1_ERR_BUDGET,
                             "expert cache budget of %" PRIu64 " bytes is too "
                             "small: one layer's %" PRId64
                             " selected experts need at least %" PRIu64 " bytes",
                             budget_bytes, g->num_experts_per_tok, need);
    r1_expert_cache *ec = calloc(1, sizeof *ec);
    if (ec == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "out of memory");
    ec->c = c;
    ec->n_experts = g->n_routed_experts;
    ec->n_slots = (size_t)r1_model_config__n_layers_stored(g) * (size_t)g->n_routed_experts;
    ec->slots = calloc(ec->n_slots, sizeof *ec->slots);
    if (ec->slots == NULL) {
        free(ec);
        return r1_error__set(R1_ERR_NO_MEMORY, "out of memory");
    }
    pthread_mutex_init(&ec->mu, NULL);
    pthread_cond_init(&ec->cv, NULL);
    r1_lru__init(&ec->lru);
    ec->k.budget_bytes = budget_bytes;
    *out = ec;
    return R1_OK;
}

void r1_expert_cache__destroy(r1_expert_cache *ec)
{
    if (ec == NULL)
        return;
    for (size_t i = 0; i < ec->n_slots; i++)
        free(ec->slots[i].data);
    free(ec->slots);
    pthread_mutex_destroy(&ec->mu);
    pthread_cond_destroy(&ec->cv);
    free(ec);
}

/* Under the lock: makes room for bytes, evicting from the LRU head. 0 when impossible. */
static int reserve(r1_expert_cache *ec, uint64_t bytes)
{
    while (ec->k.budget_bytes != 0 && ec->k.current_bytes + bytes > ec->k.budget_bytes) {
        slot *victim = (slot *)(void *)r1_lru__oldest(&ec->lru);
        if (victim == NULL)
            return 0;
        r1_lru__unlink(&victim->lru);
        free(victim->data);
        victim->data = NULL;
        ec->k.current_bytes -= victim->bytes;
        victim->bytes = 0;
        victim->state = SLOT_EMPTY;
        ec->k.evictions++;
    }
    ec->k.current_bytes += bytes;
    if (ec->k.current_bytes > ec->k.peak_bytes)
        ec->k.peak_bytes = ec->k.current_bytes;
    return 1;
}

/* pread of exactly n bytes, with the fault hook. */
static r1_status read_blob(r1_expert_cache *ec, const r1_expert_blob *b, uint8_t *buf)
{
    pthread_mutex_lock(&ec->mu);
    uint64_t nth = ++ec->reads;
    int32_t fault = nth == ec->fault_at ? ec->fault_kind : R1_FAULT_NONE;
    pthread_mutex_unlock(&ec->mu);
    if (fault == R1_FAULT_EIO)
        return r1_error__set(R1_ERR_IO,
                             "cannot read expert (layer %d, expert %d) at offset %" PRIu64
                             ": %s (injected)",
                             b->layer, b->expert, b->offset, strerror(EIO));
    uint64_t got = 0, want = b->stored_size;
    if (fault == R1_FAULT_SHORT)
        want /= 2;
    while (got < want) {
        ssize_t r = pread(r1_container__fd(ec->c), buf + got, (size_t)(want - got),
                          (off_t)(b->offset + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return r1_error__set(
                R1_ERR_IO, "cannot read expert (layer %d, expert %d) at offset %" PRIu64 ": %s",
                b->layer, b->expert, b->offset + got, strerror(errno));
        if (r == 0)
            break;
        got += (uint64_t)r;
    }
    if (got != b->stored_size)
        return r1_error__set(R1_ERR_IO,
                             "short read of expert (layer %d, expert %d): %" PRIu64 " of %" PRIu64
                             " bytes at offset %" PRIu64,
                             b->layer, b->expert, got, b->stored_size, b->offset);
    return R1_OK;
}

/* Outside the lock: reads, decompresses, un-shuffles and verifies one blob into *data_out. */
static r1_status load_blob(r1_expert_cache *ec, const r1_expert_blob *b, uint8_t **data_out)
{
    size_t raw = (size_t)b->raw_size, alloc = (raw + 63) / 64 * 64;
    uint8_t *data = aligned_alloc(64, alloc), *stored = NULL, *tmp = NULL;
    r1_status st = R1_OK;
    if (data == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "out of memory for an expert of %zu bytes", raw);
    if (b->codec == R1M_CODEC_RAW) {
        st = read_blob(ec, b, data);
    } else {
        stored = malloc((size_t)b->stored_size);
        tmp = b->filter == R1M_FILTER_BYTEPLANE2 ? malloc(raw) : NULL;
        if (stored == NULL || (b->filter == R1M_FILTER_BYTEPLANE2 && tmp == NULL)) {
            st = r1_error__set(R1_ERR_NO_MEMORY, "out of memory loading an expert");
            goto done;
        }
        if ((st = read_blob(ec, b, stored)) != R1_OK)
            goto done;
        unsigned long long fcs = ZSTD_getFrameContentSize(stored, (size_t)b->stored_size);
        size_t fsz = ZSTD_findFrameCompressedSize(stored, (size_t)b->stored_size);
        if (fcs != b->raw_size || ZSTD_isError(fsz) || fsz != b->stored_size) {
            st = r1_error__set(R1_ERR_FORMAT,
                               "expert (layer %d, expert %d) at offset %" PRIu64
                               " is not one zstd frame of %" PRIu64 " bytes",
                               b->layer, b->expert, b->offset, b->raw_size);
            goto done;
        }
        uint8_t *dst = tmp ? tmp : data;
        /* Our own context rather than ZSTD_decompress()'s hidden one, so that running out of
         * memory for it reads as that and not as a damaged blob. */
        ZSTD_DCtx *dctx = ZSTD_createDCtx();
        if (dctx == NULL) {
            st = r1_error__set(R1_ERR_NO_MEMORY, "out of memory for a zstd decompression context");
            goto done;
        }
        size_t n = ZSTD_decompressDCtx(dctx, dst, raw, stored, (size_t)b->stored_size);
        ZSTD_freeDCtx(dctx);
        if (ZSTD_isError(n) || n != raw) {
            st = r1_error__set(R1_ERR_FORMAT,
                               "expert (layer %d, expert %d) at offset %" PRIu64 ": zstd: %s",
                               b->layer, b->expert, b->offset,
                               ZSTD_isError(n) ? ZSTD_getErrorName(n) : "wrong size");
            goto done;
        }
        if (tmp) {
            size_t half = raw / 2;
            for (size_t i = 0; i < half; i++) {
                data[2 * i] = tmp[i];
                data[2 * i + 1] = tmp[half + i];
            }
            if (raw & 1)
                data[raw - 1] = tmp[raw - 1];
        }
    }
    if (st == R1_OK) {
        uint64_t h = r1_checksum__xxh64(data, raw);
        if (h != b->checksum)
            st = r1_error__set(R1_ERR_CHECKSUM,
                               "expert (layer %d, expert %d) at offset %" PRIu64
                               " fails its checksum (stored %016" PRIx64 ", computed %016" PRIx64
                               ")",
                               b->layer, b->expert, b->offset, b->checksum, h);
    }
done:
    free(stored);
    free(tmp);
    if (st != R1_OK) {
        free(data);
        data = NULL;
    }
    *data_out = data;
    return st;
}

/* The projection k's shape: gate and up are (inter, hidden), down is (hidden, inter). */
static void proj_shape(const r1_expert_blob *b, int k, int64_t *rows, int64_t *cols)
{
    *rows = k == 2 ? b->hidden : b->inter;
    *cols = k == 2 ? b->inter : b->hidden;
}

/* Outside the lock, after the checksum: rewrites in place every projection of a freshly loaded
 * blob that can take the layout, and says which did. A projection whose temporary copy cannot
 * be had stays in rows: the layout is a speed-up, never a reason to fail a load. */
static void to_layout(const r1_expert_blob *b, uint8_t *data, int32_t layout, int32_t out[3])
{
    for (int k = 0; k < 3; k++) {
        int64_t rows, cols;
        proj_shape(b, k, &rows, &cols);
        out[k] = R1_LAYOUT_ROWS;
        if (layout != R1_LAYOUT_R16 || b->scale_bytes[k] != 0 ||
            !r1_layout__r16_eligible(b->dtype[k], rows, cols) ||
            r1_dtype__row_bytes(b->dtype[k], cols) * (uint64_t)rows > b->data_bytes[k])
            continue;
        void *rows_copy = malloc((size_t)b->data_bytes[k]);
        if (rows_copy == NULL)
            continue;
        memcpy(rows_copy, data + b->data_off[k], (size_t)b->data_bytes[k]);
        r1_layout__to_r16(b->dtype[k], rows_copy, rows, cols, data + b->data_off[k]);
        free(rows_copy);
        out[k] = R1_LAYOUT_R16;
    }
}

static void make_view(const r1_expert_blob *b, const uint8_t *data, const int32_t layout[3],
                      r1_expert *out)
{
    r1_tensor *t[3] = {&out->gate_proj, &out->up_proj, &out->down_proj};
    out->layer = b->layer;
    out->expert = b->expert;
    for (int k = 0; k < 3; k++) {
        memset(t[k], 0, sizeof *t[k]);
        t[k]->dtype = b->dtype[k];
        t[k]->n_dims = 2;
        proj_shape(b, k, &t[k]->shape[0], &t[k]->shape[1]);
        t[k]->layout = layout[k];
        t[k]->data = data + b->data_off[k];
        t[k]->nbytes = (size_t)b->data_bytes[k];
        if (b->scale_bytes[k]) {
            t[k]->scale = (const float *)(const void *)(data + b->scale_off[k]);
            t[k]->scale_cols = (t[k]->shape[1] + 127) / 128;
        }
    }
}

r1_status r1_expert_cache__acquire(r1_expert_cache *ec, int64_t layer, int64_t expert,
                                   const r1_expert **out)
{
    *out = NULL;
    const r1_expert_blob *b = r1_container__expert(ec->c, layer, expert);
    if (b == NULL)
        return r1_error__set(R1_ERR_OUT_OF_RANGE, "no routed expert (layer %d, expert %d)",
                             (int)layer, (int)expert);
    slot *s = &ec->slots[(size_t)layer * (size_t)ec->n_experts + (size_t)expert];
    pthread_mutex_lock(&ec->mu);
    for (;;) {
        if (s->state == SLOT_READY) {
            if (s->pins++ == 0)
                r1_lru__unlink(&s->lru);
            ec->k.hits++;
            *out = &s->view;
            pthread_mutex_unlock(&ec->mu);
            return R1_OK;
        }
        if (s->state == SLOT_EMPTY)
            break;
        pthread_cond_wait(&ec->cv, &ec->mu); /* another thread is loading it */
    }
    if (!reserve(ec, b->raw_size)) {
        uint64_t cur = ec->k.current_bytes, budget = ec->k.budget_bytes;
        pthread_mutex_unlock(&ec->mu);
        return r1_error__set(R1_ERR_BUDGET,
                             "expert cache full: (layer %d, expert %d) needs %" PRIu64
                             " bytes, %" PRIu64 " of %" PRIu64 " are pinned or loading",
                             (int)layer, (int)expert, b->raw_size, cur, budget);
    }
    s->state = SLOT_LOADING;
    ec->k.misses++;
    pthread_mutex_unlock(&ec->mu);

    uint64_t t0 = r1_clock__now_ns();
    uint8_t *data = NULL;
    int32_t layout[3] = {R1_LAYOUT_ROWS, R1_LAYOUT_ROWS, R1_LAYOUT_ROWS};
    r1_status st = load_blob(ec, b, &data);
    if (st == R1_OK)
        to_layout(b, data, atomic_load(&ec->layout), layout);
    uint64_t dt = r1_clock__now_ns() - t0;

    pthread_mutex_lock(&ec->mu);
    ec->k.load_ns += dt;
    if (st == R1_OK) {
        ec->k.bytes_read += b->stored_size;
        ec->k.bytes_decompressed += b->raw_size;
        s->data = data;
        s->bytes = b->raw_size;
        s->state = SLOT_READY;
        s->pins = 1;
        make_view(b, data, layout, &s->view);
        *out = &s->view;
    } else {
        ec->k.current_bytes -= b->raw_size;
        s->state = SLOT_EMPTY;
    }
    pthread_cond_broadcast(&ec->cv);
    pthread_mutex_unlock(&ec->mu);
    return st;
}

void r1_expert_cache__release(r1_expert_cache *ec, const r1_expert *ex)
{
    if (ec == NULL || ex == NULL || r1_container__expert(ec->c, ex->layer, ex->expert) == NULL)
        return;
    slot *s = &ec->slots[(size_t)ex->layer * (size_t)ec->n_experts + (size_t)ex->expert];
    pthread_mutex_lock(&ec->mu);
    if (s->state == SLOT_READY && s->pins > 0 && --s->pins == 0)
        r1_lru__push(&ec->lru, &s->lru);
    pthread_mutex_unlock(&ec->mu);
}

void r1_expert_cache__set_layout(r1_expert_cache *ec, int32_t layout)
{
    atomic_store(&ec->layout, layout);
}

void r1_expert_cache__counters(r1_expert_cache *ec, r1_expert_cache_counters *out)
{
    pthread_mutex_lock(&ec->mu);
    *out = ec->k;
    pthread_mutex_unlock(&ec->mu);
}

void r1_expert_cache__inject_fault(r1_expert_cache *ec, uint64_t nth, int32_t kind)
{
    pthread_mutex_lock(&ec->mu);
    ec->fault_at = kind == R1_FAULT_NONE ? 0 : ec->reads + nth;
    ec->fault_kind = kind;
    pthread_mutex_unlock(&ec->mu);
}

static int blob_holds(const slot *s, uintptr_t p, size_t n)
{
    if (s->state != SLOT_READY || s->pins == 0 || s->data == NULL)
        return 0;
    uintptr_t first = (uintptr_t)s->data; /* integers: pointers into other objects don't compare */
    return p >= first && n <= s->bytes && p - first <= s->bytes - n;
}

int32_t r1_expert_cache__find(r1_expert_cache *ec, const void *p, size_t n, int64_t *layer,
                              int64_t *expert, const uint8_t **blob, uint64_t *blob_bytes)
{
    if (ec == NULL || p == NULL)
        return 0;
    uintptr_t at = (uintptr_t)p;
    pthread_mutex_lock(&ec->mu);
    const slot *hit = NULL;
    if (ec->last_found < ec->n_slots && blob_holds(&ec->slots[ec->last_found], at, n))
        hit = &ec->slots[ec->last_found];
    for (size_t i = 0; hit == NULL && i < ec->n_slots; i++)
        if (blob_holds(&ec->slots[i], at, n)) {
            hit = &ec->slots[i];
            ec->last_found = i;
        }
    if (hit != NULL) {
        *layer = hit->view.layer;
        *expert = hit->view.expert;
        *blob = hit->data;
        *blob_bytes = hit->bytes;
    }
    pthread_mutex_unlock(&ec->mu);
    return hit != NULL;
}
