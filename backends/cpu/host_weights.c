/* host_weights.c: a hash map from a mapped weight view to its R16 copy (host_weights.h). */
#include "host_weights.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "error.h"
#include "weight_layout.h"

typedef struct hw_entry {
    const void *data; /* NULL: free slot */
    size_t nbytes;
    int32_t dtype;
    int64_t rows, cols;
    void *copy; /* NULL: could not be had; the weight stays in rows */
} hw_entry;

struct r1_host_weights {
    pthread_mutex_t mu;
    hw_entry *slots;
    size_t n_slots, n_used; /* n_slots a power of two, at most half full */
    r1_host_weights_counters k;
    const r1_container *source; /* whose mapping copied weights are released from, or NULL */
};

r1_status r1_host_weights__create(r1_host_weights **out)
{
    *out = NULL;
    r1_host_weights *hw = calloc(1, sizeof *hw);
    if (hw == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "out of memory for the host weight map");
    pthread_mutex_init(&hw->mu, NULL);
    *out = hw;
    return R1_OK;
}

void r1_host_weights__destroy(r1_host_weights *hw)
{
    if (hw == NULL)
        return;
    for (size_t i = 0; i < hw->n_slots; i++)
        free(hw->slots[i].copy);
    free(hw->slots);
    pthread_mutex_destroy(&hw->mu);
    free(hw);
}

void r1_host_weights__set_source(r1_host_weights *hw, const r1_container *c)
{
    pthread_mutex_lock(&hw->mu);
    hw->source = c;
    pthread_mutex_unlock(&hw->mu);
}

static size_t hw_hash(const void *p, size_t n_slots)
{
    uint64_t h = (uint64_t)(uintptr_t)p * 0x9e3779b97f4a7c15ull;
    return (size_t)(h >> 20) & (n_slots - 1);
}

static int hw_same(const hw_entry *e, const r1_tensor *w, int64_t rows, int64_t cols)
{
    return e->data == w->data && e->nbytes == w->nbytes && e->dtype == w->dtype &&
           e->rows == rows && e->cols == cols;
}

/* Under the lock: the entry of w, or the free slot where it goes (NULL: no table yet). */
static hw_entry *hw_find(r1_host_weights *hw, const r1_tensor *w, int64_t rows, int64_t cols)
{
    if (hw->n_slots == 0)
        return NULL;
    for (size_t i = hw_hash(w->data, hw->n_slots);; i = (i + 1) & (hw->n_slots - 1))
        if (hw->slots[i].data == NULL || hw_same(&hw->slots[i], w, rows, cols))
            return &hw->slots[i];
}

/* Under the lock: room for one more entry; 0 when the table cannot grow. */
static int hw_reserve(r1_host_weights *hw)
{
    if (2 * (hw->n_used + 1) <= hw->n_slots)
        return 1;
    size_t n = hw->n_slots ? 2 * hw->n_slots : 64;
    hw_entry *slots = calloc(n, sizeof *slots);
    if (slots == NULL)
        return 0;
    for (size_t i = 0; i < hw->n_slots; i++) {
        const hw_entry *e = &hw->slots[i];
        if (e->data == NULL)
            continue;
        size_t j = hw_hash(e->data, n);
        while (slots[j].data != NULL)
            j = (j + 1) & (n - 1);
        slots[j] = *e;
    }
    free(hw->slots);
    hw->slots = slots;
    hw->n_slots = n;
    return 1;
}

int32_t r1_host_weights__get(r1_host_weights *hw, const r1_tensor *w, r1_tensor *out)
{
    if (hw == NULL || w == NULL || w->data == NULL || w->layout != R1_LAYOUT_ROWS ||
        w->scale != NULL || w->n_dims < 1)
        return 0;
    const int64_t rows = r1_tensor__rows(w), cols = r1_tensor__cols(w);
    if (!r1_layout__r16_eligible(w->dtype, rows, cols) ||
        r1_dtype__row_bytes(w->dtype, cols) * (size_t)rows > w->nbytes)
        return 0;
    pthread_mutex_lock(&hw->mu);
    hw_entry *e = hw_find(hw, w, rows, cols);
    if (e == NULL || e->data == NULL) {
        if (!hw_reserve(hw)) {
            pthread_mutex_unlock(&hw->mu);
            return 0;
        }
        e = hw_find(hw, w, rows, cols);
        const size_t bytes = r1_dtype__row_bytes(w->dtype, cols) * (size_t)rows;
        *e = (hw_entry){.data = w->data,
                        .nbytes = w->nbytes,
                        .dtype = w->dtype,
                        .rows = rows,
                        .cols = cols,
                        .copy = aligned_alloc(64, (bytes + 63) / 64 * 64)};
        hw->n_used++;
        if (e->copy != NULL) {
            /* Made under the lock: a second product of the same weight waits for it instead
             * of making its own. Only the first pass over the model pays this. */
            r1_layout__to_r16(w->dtype, w->data, rows, cols, e->copy);
            hw->k.tensors++;
            hw->k.bytes += bytes;
            /* Products read the copy from now on; the mapped pages would be a second copy in
             * the resident set (1.25 GB of an 8 GB limit on the V2-Lite Q8_0 model). */
            hw->k.released += r1_container__release(hw->source, w->data, w->nbytes);
        } else {
            hw->k.kept++;
        }
    }
    void *copy = e->copy;
    pthread_mutex_unlock(&hw->mu);
    if (copy == NULL)
        return 0;
    *out = *w;
    out->data = copy;
    out->nbytes = r1_dtype__row_bytes(w->dtype, cols) * (size_t)rows;
    out->layout = R1_LAYOUT_R16;
    return 1;
}

void r1_host_weights__counters(r1_host_weights *hw, r1_host_weights_counters *out)
{
    memset(out, 0, sizeof *out);
    if (hw == NULL)
        return;
    pthread_mutex_lock(&hw->mu);
    *out = hw->k;
    pthread_mutex_unlock(&hw->mu);
}
