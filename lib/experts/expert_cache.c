/* expert_cache.c: the budgeted store of routed experts, loaded ahead of use by I/O workers. */
#include "expert_cache.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blob_codec.h"
#include "clock.h"
#include "dtype.h"
#include "error.h"
#include "expert_policy.h"
#include "weight_layout.h"

/* EMPTY -> QUEUED (a request) -> LOADING (a worker took it and reserved its bytes) -> READY,
 * or back to EMPTY when a load fails, a prefetch is dropped, or an expert is evicted. */
enum { SLOT_EMPTY = 0, SLOT_QUEUED = 1, SLOT_LOADING = 2, SLOT_READY = 3 };
enum { Q_DEMAND = 0, Q_PREFETCH = 1 };
/* Which experts a reservation may evict: a demand any unpinned one that is not claimed (see
 * claimed()); a prefetch only those colder than the prediction it loads (see evictable()); a
 * demand's last resort also claimed ones nobody waits for. */
enum { EVICT_FOR_DEMAND = 0, EVICT_FOR_PREFETCH = 1, EVICT_STALE_CLAIMS = 2 };
enum { DIRECT_ALIGN = 4096, FAIL_MSG_BYTES = 512 };

typedef struct slot {
    struct slot *qnext, *qprev; /* queue links while QUEUED */
    int32_t state;
    int32_t queue; /* Q_DEMAND or Q_PREFETCH while QUEUED */
    int32_t pins;
    int32_t waiters; /* threads in acquire_any that list this slot */
    /* A demand was counted in the statistics and no pin has taken it yet: however often the
     * expert is asked for before that (once per token that routes to it, say), it counts once. */
    int32_t demand_open;
    int32_t demanded;    /* the queued or running load has been asked for by a demand */
    int32_t prefetched;  /* loaded (or loading) because of a prefetch, no demand since */
    int32_t unconfirmed; /* prefetched, and its layer has run without demanding it */
    r1_status fail_st;   /* a demanded load's failure, until an acquirer reports it */
    char *fail_msg;
    uint64_t demand_pass; /* the pass that last demanded it */
    uint64_t start_order;
    uint8_t *data; /* raw blob, DIRECT_ALIGN-aligned; while LOADING, a buffer to reuse or NULL */
    uint64_t bytes;
    uint64_t alloc_bytes; /* of data's allocation */
    r1_expert view;
} slot;

typedef struct queue {
    slot *head, *tail;
} queue;

struct r1_expert_cache;

typedef struct io_worker {
    struct r1_expert_cache *ec;
    pthread_t tid;
    r1_blob_decoder *dec;
    uint8_t *stored; /* read buffer for coded blobs, DIRECT_ALIGN-aligned */
    size_t stored_cap;
    void *rows_copy; /* to_layout's scratch */
    size_t rows_copy_cap;
} io_worker;

/* The buffer of an expert evicted to make room for a load, handed to that load rather than
 * freed when it is large enough (need bytes): a load in a full store then writes memory that
 * is already mapped, instead of faulting in fresh pages while another buffer is unmapped. */
typedef struct spare {
    uint8_t *p;
    uint64_t bytes, need;
} spare;

struct r1_expert_cache {
    const r1_container *c;
    int64_t n_experts;
    int32_t n_layers;
    size_t n_slots;
    slot *slots;
    r1_expert_policy *policy;
    pthread_mutex_t mu;
    pthread_cond_t done_cv; /* a load finished or failed: acquirers look again */
    pthread_cond_t work_cv; /* a request was queued or room may have appeared: workers look */
    queue q[2];
    int32_t stop, hold;
    int32_t n_waiting;      /* threads waiting in acquire_any */
    uint64_t loading_bytes; /* reserved by loads now running */
    uint64_t pass, starts;
    /* Layer of the latest request, demand or prefetch: a request for a lower one begins a new
     * pass, a request for another one ends the predictions for this one (resolve()). */
    int64_t last_layer;
    int64_t last_demand_layer; /* of the latest demand request (-1: none yet) */
    r1_expert_cache_counters k;
    uint64_t reads, fault_at;
    int32_t fault_kind;
    int direct_fd;          /* O_DIRECT descriptor, or -1: pread through the page cache */
    size_t last_found;      /* r1_expert_cache__find's hint */
    _Atomic int32_t layout; /* enum r1_layout for projections loaded from now on */
    int32_t n_workers;
    io_worker *workers;
};

static slot *slot_of(r1_expert_cache *ec, int64_t layer, int64_t expert)
{
    return &ec->slots[(size_t)layer * (size_t)ec->n_experts + (size_t)expert];
}

static int32_t slot_layer(const r1_expert_cache *ec, const slot *s)
{
    return (int32_t)((size_t)(s - ec->slots) / (size_t)ec->n_experts);
}

static int32_t slot_expert(const r1_expert_cache *ec, const slot *s)
{
    return (int32_t)((size_t)(s - ec->slots) % (size_t)ec->n_experts);
}

static void q_push(queue *q, slot *s)
{
    s->qnext = NULL;
    s->qprev = q->tail;
    if (q->tail)
        q->tail->qnext = s;
    else
        q->head = s;
    q->tail = s;
}

static void q_unlink(queue *q, slot *s)
{
    if (s->qprev)
        s->qprev->qnext = s->qnext;
    else
        q->head = s->qnext;
    if (s->qnext)
        s->qnext->qprev = s->qprev;
    else
        q->tail = s->qprev;
    s->qnext = s->qprev = NULL;
}

static void *worker_main(void *arg);

r1_status r1_expert_cache__create(r1_expert_cache **out, const r1_container *c,
                                  uint64_t budget_bytes)
{
    return r1_expert_cache__create2(out, c, budget_bytes, 0, R1_EXPERT_POLICY_DEFAULT);
}

/* Starts the workers with every signal blocked (they inherit the mask), so that a host's
 * signal handlers never run on a thread the host does not know about. */
static r1_status start_workers(r1_expert_cache *ec)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    r1_status st = R1_OK;
    for (int32_t i = 0; i < ec->n_workers && st == R1_OK; i++) {
        int err = pthread_create(&ec->workers[i].tid, NULL, worker_main, &ec->workers[i]);
        if (err != 0)
            st = r1_error__set(R1_ERR_NO_MEMORY, "cannot start expert I/O thread %d: %s", (int)i,
                               strerror(err));
        else
            ec->k.io_workers++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return st;
}

r1_status r1_expert_cache__create2(r1_expert_cache **out, const r1_container *c,
                                   uint64_t budget_bytes, int32_t n_io_workers, int32_t policy)
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
    if (n_io_workers < 0 || n_io_workers > R1_EXPERT_IO_WORKERS_MAX)
        return r1_error__set(R1_ERR_INVALID_ARG, "I/O worker count %d is outside 0..%d",
                             (int)n_io_workers, R1_EXPERT_IO_WORKERS_MAX);
    r1_expert_cache *ec = calloc(1, sizeof *ec);
    if (ec == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "out of memory");
    ec->c = c;
    ec->direct_fd = -1;
    ec->n_experts = g->n_routed_experts;
    ec->n_layers = (int32_t)r1_model_config__n_layers_stored(g);
    ec->n_slots = (size_t)ec->n_layers * (size_t)g->n_routed_experts;
    ec->n_workers = n_io_workers ? n_io_workers : R1_EXPERT_IO_WORKERS_DEFAULT;
    ec->slots = calloc(ec->n_slots ? ec->n_slots : 1, sizeof *ec->slots);
    ec->workers = calloc((size_t)ec->n_workers, sizeof *ec->workers);
    if (ec->slots == NULL || ec->workers == NULL) {
        free(ec->slots);
        free(ec->workers);
        free(ec);
        return r1_error__set(R1_ERR_NO_MEMORY, "out of memory");
    }
    pthread_mutex_init(&ec->mu, NULL);
    pthread_cond_init(&ec->done_cv, NULL);
    pthread_cond_init(&ec->work_cv, NULL);
    ec->k.budget_bytes = budget_bytes;
    ec->last_layer = ec->last_demand_layer = -1;
    ec->pass = 1;
    r1_status st =
        r1_expert_policy__create(&ec->policy, policy, ec->n_layers, (int32_t)g->n_routed_experts);
    for (int32_t i = 0; i < ec->n_workers && st == R1_OK; i++) {
        ec->workers[i].ec = ec;
        st = r1_blob_decoder__create(&ec->workers[i].dec);
    }
    if (st == R1_OK) {
        ec->direct_fd = r1_container__open_direct(c);
        ec->k.direct_io = ec->direct_fd >= 0;
        st = start_workers(ec);
    }
    if (st != R1_OK) {
        r1_expert_cache__destroy(ec);
        return st;
    }
    *out = ec;
    return R1_OK;
}

void r1_expert_cache__destroy(r1_expert_cache *ec)
{
    if (ec == NULL)
        return;
    pthread_mutex_lock(&ec->mu);
    ec->stop = 1;
    pthread_cond_broadcast(&ec->work_cv);
    pthread_mutex_unlock(&ec->mu);
    for (uint64_t i = 0; i < ec->k.io_workers; i++)
        pthread_join(ec->workers[i].tid, NULL);
    for (int32_t i = 0; i < ec->n_workers; i++) {
        r1_blob_decoder__destroy(ec->workers[i].dec);
        free(ec->workers[i].stored);
        free(ec->workers[i].rows_copy);
    }
    for (size_t i = 0; i < ec->n_slots; i++) {
        free(ec->slots[i].data);
        free(ec->slots[i].fail_msg);
    }
    if (ec->direct_fd >= 0)
        close(ec->direct_fd);
    r1_expert_policy__destroy(ec->policy);
    free(ec->workers);
    free(ec->slots);
    pthread_mutex_destroy(&ec->mu);
    pthread_cond_destroy(&ec->done_cv);
    pthread_cond_destroy(&ec->work_cv);
    free(ec);
}

typedef struct evict_ctx {
    r1_expert_cache *ec;
    int32_t mode;
} evict_ctx;

/* A resident expert that a caller is about to pin: one waits for it, or the current pass has
 * asked for it and not yet taken it. Evicting it would only make that caller read it again. */
static int claimed(const r1_expert_cache *ec, const slot *s)
{
    return s->state == SLOT_READY && s->pins == 0 &&
           (s->waiters > 0 || (s->demand_open && s->demand_pass == ec->pass));
}

/* A prefetch is a guess (right about two times in three on the models measured): it may
 * take the place only of what is colder than a guess, a prediction that already proved wrong
 * or an expert no demand has asked for in the last two passes, never of an expert the last
 * passes used (under skewed routing those are hit again, and wrong prefetches evicting them
 * tripled the misses) nor of another prediction still waiting for its layer. */
static int evictable(void *ctx, int32_t layer, int32_t expert)
{
    evict_ctx *x = ctx;
    const slot *s = slot_of(x->ec, layer, expert);
    if (s->state != SLOT_READY || s->pins > 0 || s->waiters > 0)
        return 0;
    if (x->mode == EVICT_STALE_CLAIMS)
        return 1;
    if (claimed(x->ec, s))
        return 0;
    if (x->mode == EVICT_FOR_DEMAND)
        return 1;
    if (s->prefetched)
        return s->unconfirmed;
    return s->demand_pass + 2 <= x->ec->pass;
}

/* Under the lock. keep (may be NULL) takes the buffer if it wants one of this size. */
static void evict(r1_expert_cache *ec, slot *s, spare *keep)
{
    r1_expert_policy__on_evict(ec->policy, slot_layer(ec, s), slot_expert(ec, s));
    if (s->prefetched)
        ec->k.prefetch_wasted_bytes += s->bytes;
    if (keep != NULL && keep->p == NULL && s->alloc_bytes >= keep->need) {
        keep->p = s->data;
        keep->bytes = s->alloc_bytes;
    } else {
        free(s->data);
    }
    s->data = NULL;
    s->alloc_bytes = 0;
    ec->k.current_bytes -= s->bytes;
    s->bytes = 0;
    s->state = SLOT_EMPTY;
    s->prefetched = s->unconfirmed = 0;
    s->demand_open = 0;
    ec->k.evictions++;
}

/* Under the lock: makes room for bytes, evicting what mode allows (a victim's buffer may go to
 * keep). 0 when impossible. */
static int reserve(r1_expert_cache *ec, uint64_t bytes, int32_t mode, spare *keep)
{
    evict_ctx x = {ec, mode};
    while (ec->k.budget_bytes != 0 && ec->k.current_bytes + bytes > ec->k.budget_bytes) {
        int32_t layer, expert;
        if (!r1_expert_policy__victim(ec->policy, evictable, &x, &layer, &expert))
            return 0;
        evict(ec, slot_of(ec, layer, expert), keep);
    }
    ec->k.current_bytes += bytes;
    if (ec->k.current_bytes > ec->k.peak_bytes)
        ec->k.peak_bytes = ec->k.current_bytes;
    return 1;
}

static size_t round_block(uint64_t n)
{
    return (size_t)((n + DIRECT_ALIGN - 1) / DIRECT_ALIGN * DIRECT_ALIGN);
}

/* The allocation that holds a blob: its raw bytes, or its stored bytes when a raw blob is read
 * into it and they are more (a damaged index), in whole blocks for direct reads. */
static uint64_t blob_alloc_bytes(const r1_expert_blob *b)
{
    uint64_t n =
        b->codec == R1M_CODEC_RAW && b->stored_size > b->raw_size ? b->stored_size : b->raw_size;
    return round_block(n ? n : 1);
}

/* Under the lock: records a demanded load's failure (the calling thread's message) for the
 * acquirer that waits for it, and frees the slot for a new attempt. */
static void fail_slot(r1_expert_cache *ec, slot *s, r1_status st)
{
    if (s->demanded) {
        if (s->fail_msg == NULL)
            s->fail_msg = malloc(FAIL_MSG_BYTES);
        if (s->fail_msg != NULL)
            snprintf(s->fail_msg, FAIL_MSG_BYTES, "%s", r1_error__message());
        s->fail_st = st;
    }
    s->state = SLOT_EMPTY;
    s->demanded = 0;
    s->prefetched = s->unconfirmed = 0;
    s->demand_open = 0;
    (void)ec;
}

/* Under the lock: whether some resident expert is claimed, and whether one of those is waited
 * for (its waiter is about to pin it). */
static void scan_claims(r1_expert_cache *ec, int *any, int *waited)
{
    *any = *waited = 0;
    for (size_t i = 0; i < ec->n_slots; i++)
        if (claimed(ec, &ec->slots[i])) {
            *any = 1;
            *waited |= ec->slots[i].waiters > 0;
        }
}

/* Under the lock: room for the demand at the head of its queue. 1: reserved. 0: wait, room will
 * come: a load is running (it ends READY, then its user releases it), a waiter is about to pin
 * a resident expert, or an expert the pass asked for is resident and its caller has yet to come
 * and take it. -1: it never will (everything is pinned and nothing loads). A claim is not
 * waited out while some caller already waits for experts that are not resident: that caller
 * might be the claimant, so the claimed expert is evicted (read again if asked for). */
static int room_for_demand(r1_expert_cache *ec, uint64_t bytes, spare *keep)
{
    if (reserve(ec, bytes, EVICT_FOR_DEMAND, keep))
        return 1;
    int any, waited;
    scan_claims(ec, &any, &waited);
    if (ec->loading_bytes > 0 || waited)
        return 0;
    if (ec->n_waiting > 0 && reserve(ec, bytes, EVICT_STALE_CLAIMS, keep))
        return 1;
    return any && ec->n_waiting == 0 ? 0 : -1;
}

/* Under the lock: the next load to start, its bytes reserved, or NULL (nothing to do now).
 * Demands first; a demand without room waits at the head (no prefetch could fit either) or,
 * when nothing can ever free room, fails with R1_ERR_BUDGET; a prefetch without room is
 * dropped. */
static slot *take_job(r1_expert_cache *ec)
{
    slot *s;
    while ((s = ec->q[Q_DEMAND].head) != NULL) {
        const r1_expert_blob *b =
            r1_container__expert(ec->c, slot_layer(ec, s), slot_expert(ec, s));
        spare keep = {NULL, 0, blob_alloc_bytes(b)};
        int room = room_for_demand(ec, b->raw_size, &keep);
        if (room > 0) {
            q_unlink(&ec->q[Q_DEMAND], s);
            s->data = keep.p;
            s->alloc_bytes = keep.bytes;
            return s;
        }
        free(keep.p); /* evicted on the way to a reservation that then failed */
        if (room == 0)
            return NULL;
        q_unlink(&ec->q[Q_DEMAND], s);
        r1_error__set(R1_ERR_BUDGET,
                      "expert cache full: (layer %d, expert %d) needs %" PRIu64 " bytes, %" PRIu64
                      " of %" PRIu64 " are pinned or loading",
                      b->layer, b->expert, b->raw_size, ec->k.current_bytes, ec->k.budget_bytes);
        fail_slot(ec, s, R1_ERR_BUDGET);
        pthread_cond_broadcast(&ec->done_cv);
    }
    while ((s = ec->q[Q_PREFETCH].head) != NULL) {
        q_unlink(&ec->q[Q_PREFETCH], s);
        const r1_expert_blob *b =
            r1_container__expert(ec->c, slot_layer(ec, s), slot_expert(ec, s));
        spare keep = {NULL, 0, blob_alloc_bytes(b)};
        if (reserve(ec, b->raw_size, EVICT_FOR_PREFETCH, &keep)) {
            s->data = keep.p;
            s->alloc_bytes = keep.bytes;
            return s;
        }
        free(keep.p);
        s->state = SLOT_EMPTY;
        s->prefetched = 0;
        ec->k.prefetch_dropped++;
    }
    return NULL;
}

/* One blob read of exactly b->stored_size bytes into buf, with the fault hook. Direct reads
 * ask for whole 4 KiB blocks (buf has room: see load_blob). */
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
    int fd = ec->direct_fd >= 0 ? ec->direct_fd : r1_container__fd(ec->c);
    uint64_t got = 0, want = b->stored_size;
    if (ec->direct_fd >= 0)
        want = (want + DIRECT_ALIGN - 1) / DIRECT_ALIGN * DIRECT_ALIGN;
    while (got < want) {
        ssize_t r = pread(fd, buf + got, (size_t)(want - got), (off_t)(b->offset + got));
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
    if (fault == R1_FAULT_SHORT && got > b->stored_size / 2)
        got = b->stored_size / 2; /* as if the file ended there */
    if (got < b->stored_size)
        return r1_error__set(R1_ERR_IO,
                             "short read of expert (layer %d, expert %d): %" PRIu64 " of %" PRIu64
                             " bytes at offset %" PRIu64,
                             b->layer, b->expert, got, b->stored_size, b->offset);
    return R1_OK;
}

static int takes_layout(const r1_expert_blob *b, int k, int32_t layout);
static void lay_out_from(const r1_expert_blob *b, const uint8_t *src, uint8_t *data, int32_t layout,
                         int32_t out[3]);

/* In a worker, outside the lock: reads, decodes and verifies one blob into *data_out (reuse,
 * of *alloc_bytes, when not NULL; else a new allocation, its size in *alloc_bytes). A raw blob
 * is read straight into its final buffer, unless a projection of it takes the layout: it is then
 * read into the worker's read buffer, verified there and laid out from it into the final buffer
 * (*laid_out set, out[] saying which projections took it), which saves copying each projection
 * aside to rewrite it in place (a third of the work a load does on the CPU). A coded blob is
 * read into the worker's read buffer first. */
static r1_status load_blob(io_worker *w, const r1_expert_blob *b, uint8_t *reuse,
                           uint64_t *alloc_bytes, uint8_t **data_out, int32_t layout, int *laid_out,
                           int32_t out[3])
{
    *laid_out = 0;
    *data_out = NULL;
    uint8_t *data = reuse;
    if (data == NULL) {
        *alloc_bytes = blob_alloc_bytes(b);
        data = aligned_alloc(DIRECT_ALIGN, (size_t)*alloc_bytes);
    }
    if (data == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY,
                             "out of memory for expert (layer %d, expert %d) of %" PRIu64 " bytes",
                             b->layer, b->expert, b->raw_size);
    uint8_t *stored = data;
    r1_status st = R1_OK;
    const int lay_from_stored =
        b->codec == R1M_CODEC_RAW &&
        (takes_layout(b, 0, layout) || takes_layout(b, 1, layout) || takes_layout(b, 2, layout));
    if (b->codec != R1M_CODEC_RAW || lay_from_stored) {
        size_t need = round_block(b->stored_size ? b->stored_size : 1);
        if (w->stored_cap < need) {
            free(w->stored);
            w->stored_cap = 0;
            if ((w->stored = aligned_alloc(DIRECT_ALIGN, need)) != NULL)
                w->stored_cap = need;
        }
        if (w->stored == NULL) {
            free(data);
            return r1_error__set(R1_ERR_NO_MEMORY,
                                 "out of memory reading expert (layer %d, expert %d)", b->layer,
                                 b->expert);
        }
        stored = w->stored;
    }
    if ((st = read_blob(w->ec, b, stored)) == R1_OK)
        st = r1_blob_decoder__decode(w->dec, b, stored, lay_from_stored ? stored : data);
    if (st != R1_OK) {
        free(data);
        return st;
    }
    if (lay_from_stored) {
        lay_out_from(b, stored, data, layout, out);
        *laid_out = 1;
    }
    *data_out = data;
    return R1_OK;
}

/* The projection k's shape: gate and up are (inter, hidden), down is (hidden, inter). */
static void proj_shape(const r1_expert_blob *b, int k, int64_t *rows, int64_t *cols)
{
    *rows = k == 2 ? b->hidden : b->inter;
    *cols = k == 2 ? b->inter : b->hidden;
}

/* Whether projection k of b is stored in layout (R1_LAYOUT_R16) when loaded. */
static int takes_layout(const r1_expert_blob *b, int k, int32_t layout)
{
    int64_t rows, cols;
    proj_shape(b, k, &rows, &cols);
    return layout == R1_LAYOUT_R16 && b->scale_bytes[k] == 0 &&
           r1_layout__r16_eligible(b->dtype[k], rows, cols) &&
           r1_dtype__row_bytes(b->dtype[k], cols) * (uint64_t)rows <= b->data_bytes[k];
}

/* Outside the lock, after the checksum: the verified raw blob at src into data, every
 * projection that takes the layout rewritten into it on the way, every other byte copied. */
static void lay_out_from(const r1_expert_blob *b, const uint8_t *src, uint8_t *data, int32_t layout,
                         int32_t out[3])
{
    for (int k = 0; k < 3; k++)
        out[k] = R1_LAYOUT_ROWS;
    uint64_t at = 0; /* bytes before it are written */
    for (;;) {
        int next = -1; /* the laid-out projection that starts first at or after at */
        for (int k = 0; k < 3; k++)
            if (takes_layout(b, k, layout) && b->data_off[k] >= at &&
                (next < 0 || b->data_off[k] < b->data_off[next]))
                next = k;
        const uint64_t end = next < 0 ? b->raw_size : b->data_off[next];
        memcpy(data + at, src + at, (size_t)(end - at));
        if (next < 0)
            break;
        int64_t rows, cols;
        proj_shape(b, next, &rows, &cols);
        r1_layout__to_r16(b->dtype[next], src + b->data_off[next], rows, cols,
                          data + b->data_off[next]);
        /* the bytes of data_bytes past the rows (none in a well-formed blob) stay as stored */
        const uint64_t laid = r1_dtype__row_bytes(b->dtype[next], cols) * (uint64_t)rows;
        memcpy(data + b->data_off[next] + laid, src + b->data_off[next] + laid,
               (size_t)(b->data_bytes[next] - laid));
        out[next] = R1_LAYOUT_R16;
        at = b->data_off[next] + b->data_bytes[next];
    }
}

/* Outside the lock, after the checksum: rewrites in place every projection of a freshly loaded
 * (decoded) blob that can take the layout, and says which did. A projection whose temporary copy
 * cannot be had stays in rows: the layout is a speed-up, never a reason to fail a load. */
static void to_layout(io_worker *w, const r1_expert_blob *b, uint8_t *data, int32_t layout,
                      int32_t out[3])
{
    for (int k = 0; k < 3; k++) {
        int64_t rows, cols;
        proj_shape(b, k, &rows, &cols);
        out[k] = R1_LAYOUT_ROWS;
        if (!takes_layout(b, k, layout))
            continue;
        if (w->rows_copy_cap < b->data_bytes[k]) {
            free(w->rows_copy);
            w->rows_copy_cap = 0;
            if ((w->rows_copy = malloc((size_t)b->data_bytes[k])) == NULL)
                continue;
            w->rows_copy_cap = (size_t)b->data_bytes[k];
        }
        memcpy(w->rows_copy, data + b->data_off[k], (size_t)b->data_bytes[k]);
        r1_layout__to_r16(b->dtype[k], w->rows_copy, rows, cols, data + b->data_off[k]);
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
            t[k]->scale_cols = r1_fp8__scale_blocks(t[k]->shape[1]);
        }
    }
}

/* Under the lock: a started load's outcome. */
static void finish_load(r1_expert_cache *ec, slot *s, const r1_expert_blob *b, r1_status st,
                        uint8_t *data, uint64_t alloc_bytes, const int32_t layout[3], uint64_t dt)
{
    ec->loading_bytes -= b->raw_size;
    ec->k.load_ns += dt;
    if (st == R1_OK) {
        ec->k.bytes_read += b->stored_size;
        ec->k.bytes_decompressed += b->raw_size;
        s->data = data;
        s->alloc_bytes = alloc_bytes;
        s->bytes = b->raw_size;
        s->state = SLOT_READY;
        s->demanded = 0;
        make_view(b, data, layout, &s->view);
        /* a prediction whose layer ran while it loaded is no longer one */
        r1_expert_policy__on_insert(ec->policy, b->layer, b->expert,
                                    s->prefetched && !s->unconfirmed);
    } else {
        ec->k.current_bytes -= b->raw_size;
        fail_slot(ec, s, st);
    }
    pthread_cond_broadcast(&ec->done_cv);
    /* A failed load freed its bytes; a finished one may let a waiting demand evict it later. */
    if (ec->q[Q_DEMAND].head != NULL)
        pthread_cond_broadcast(&ec->work_cv);
}

static void *worker_main(void *arg)
{
    io_worker *w = arg;
    r1_expert_cache *ec = w->ec;
    pthread_mutex_lock(&ec->mu);
    for (;;) {
        slot *s = NULL;
        while (!ec->stop && (ec->hold || (s = take_job(ec)) == NULL))
            pthread_cond_wait(&ec->work_cv, &ec->mu);
        if (ec->stop)
            break;
        const r1_expert_blob *b =
            r1_container__expert(ec->c, slot_layer(ec, s), slot_expert(ec, s));
        s->state = SLOT_LOADING;
        s->start_order = ++ec->starts;
        ec->loading_bytes += b->raw_size;
        int32_t layout_kind = atomic_load(&ec->layout);
        uint8_t *reuse = s->data;
        uint64_t alloc_bytes = s->alloc_bytes;
        s->data = NULL;
        s->alloc_bytes = 0;
        pthread_mutex_unlock(&ec->mu);

        uint64_t t0 = r1_clock__now_ns();
        uint8_t *data = NULL;
        int32_t layout[3] = {R1_LAYOUT_ROWS, R1_LAYOUT_ROWS, R1_LAYOUT_ROWS};
        int laid_out = 0;
        r1_status st = load_blob(w, b, reuse, &alloc_bytes, &data, layout_kind, &laid_out, layout);
        if (st == R1_OK && !laid_out)
            to_layout(w, b, data, layout_kind, layout);
        uint64_t dt = r1_clock__now_ns() - t0;

        pthread_mutex_lock(&ec->mu);
        finish_load(ec, s, b, st, data, alloc_bytes, layout, dt);
    }
    pthread_mutex_unlock(&ec->mu);
    return NULL;
}

/* Under the lock: the requests for layer have moved on to another layer, so its demands are
 * all in: its predictions that no demand confirmed are wrong ones. Those still queued are
 * dropped, those resident or loading rank by their own history from now on (and may be
 * evicted for a prefetch). */
static void resolve(r1_expert_cache *ec, int64_t layer)
{
    for (int64_t e = 0; e < ec->n_experts; e++) {
        slot *s = slot_of(ec, layer, e);
        if (!s->prefetched || s->unconfirmed)
            continue;
        if (s->state == SLOT_QUEUED && s->queue == Q_PREFETCH) {
            q_unlink(&ec->q[Q_PREFETCH], s);
            s->state = SLOT_EMPTY;
            s->prefetched = 0;
            ec->k.prefetch_dropped++;
            continue;
        }
        s->unconfirmed = 1;
        if (s->state == SLOT_READY)
            r1_expert_policy__on_unconfirmed(ec->policy, (int32_t)layer, (int32_t)e);
    }
}

/* Under the lock: a request (demand or prefetch) for layer. A new pass begins when a request
 * goes back to a lower layer: a demand, or the lookahead's prefetch for the first MoE layer,
 * which comes before that layer's demand (were it left in the old pass, every expert the old
 * pass demanded would look demanded by the current one, and it would find no room). Prefetches
 * still queued were for the pass that ended. */
static void note_layer(r1_expert_cache *ec, int64_t layer)
{
    if (layer != ec->last_layer && ec->last_layer >= 0)
        resolve(ec, ec->last_layer);
    if (layer < ec->last_layer) {
        ec->pass++;
        r1_expert_policy__on_pass(ec->policy);
        slot *s;
        while ((s = ec->q[Q_PREFETCH].head) != NULL) {
            q_unlink(&ec->q[Q_PREFETCH], s);
            s->state = SLOT_EMPTY;
            s->prefetched = s->unconfirmed = 0;
            ec->k.prefetch_dropped++;
        }
        /* Experts the last pass asked for and never took are no longer claimed. */
        if (ec->q[Q_DEMAND].head != NULL)
            pthread_cond_broadcast(&ec->work_cv);
    }
    ec->last_layer = layer;
}

/* Under the lock: a demand for s. Counts it once until a pin consumes it, and queues a load
 * unless the expert is resident or on its way (a queued prefetch moves to the demand queue). */
static void demand(r1_expert_cache *ec, slot *s)
{
    int32_t layer = slot_layer(ec, s), expert = slot_expert(ec, s);
    s->demand_pass = ec->pass;
    if (!s->demand_open) {
        r1_expert_policy__on_access(ec->policy, layer, expert);
        if (s->state == SLOT_READY) {
            ec->k.hits++;
            ec->k.prefetch_used += s->prefetched != 0;
        } else if (s->state != SLOT_EMPTY && s->demanded) {
            ec->k.hits++; /* joins a load another demand started */
        } else {
            ec->k.misses++;
            ec->k.demand_misses++;
            if (s->state != SLOT_EMPTY) {
                ec->k.demand_misses_prefetched++;
                ec->k.prefetch_used++;
            }
        }
        s->prefetched = s->unconfirmed = 0;
    }
    s->demand_open = 1;
    if (s->state == SLOT_EMPTY) {
        s->fail_st = R1_OK;
        s->state = SLOT_QUEUED;
        s->queue = Q_DEMAND;
        q_push(&ec->q[Q_DEMAND], s);
        pthread_cond_signal(&ec->work_cv);
    } else if (s->state == SLOT_QUEUED && s->queue == Q_PREFETCH) {
        q_unlink(&ec->q[Q_PREFETCH], s);
        s->queue = Q_DEMAND;
        q_push(&ec->q[Q_DEMAND], s);
    }
    if (s->state == SLOT_QUEUED || s->state == SLOT_LOADING)
        s->demanded = 1;
}

r1_status r1_expert_cache__request(r1_expert_cache *ec, int64_t layer, int64_t expert,
                                   int32_t priority)
{
    if (ec == NULL || (priority != R1_EXPERT_DEMAND && priority != R1_EXPERT_PREFETCH))
        return r1_error__set(R1_ERR_INVALID_ARG, "bad expert request (priority %d)", (int)priority);
    if (r1_container__expert(ec->c, layer, expert) == NULL)
        return r1_error__set(R1_ERR_OUT_OF_RANGE, "no routed expert (layer %d, expert %d)",
                             (int)layer, (int)expert);
    slot *s = slot_of(ec, layer, expert);
    pthread_mutex_lock(&ec->mu);
    note_layer(ec, layer);
    if (priority == R1_EXPERT_DEMAND) {
        ec->last_demand_layer = layer;
        if (s->state == SLOT_EMPTY)
            s->fail_st = R1_OK; /* a new request is a new attempt */
        demand(ec, s);
    } else if (s->state == SLOT_EMPTY) {
        s->fail_st = R1_OK;
        s->state = SLOT_QUEUED;
        s->queue = Q_PREFETCH;
        s->prefetched = 1;
        s->unconfirmed = 0;
        q_push(&ec->q[Q_PREFETCH], s);
        ec->k.prefetch_issued++;
        pthread_cond_signal(&ec->work_cv);
    }
    pthread_mutex_unlock(&ec->mu);
    return R1_OK;
}

/* Under the lock: takes the failure recorded in s for the calling thread. */
static r1_status report_failure(slot *s)
{
    r1_status st = s->fail_st;
    s->fail_st = R1_OK;
    if (s->fail_msg != NULL)
        return r1_error__set(st, "%s", s->fail_msg);
    return r1_error__set(st, "loading an expert failed");
}

r1_status r1_expert_cache__acquire_any(r1_expert_cache *ec, int64_t layer, const int32_t *experts,
                                       int32_t n, const uint8_t *taken, int32_t *index,
                                       const r1_expert **out)
{
    *out = NULL;
    *index = -1;
    int32_t open = 0;
    for (int32_t i = 0; i < n; i++) {
        if (taken != NULL && taken[i])
            continue;
        if (r1_container__expert(ec->c, layer, experts[i]) == NULL)
            return r1_error__set(R1_ERR_OUT_OF_RANGE, "no routed expert (layer %d, expert %d)",
                                 (int)layer, (int)experts[i]);
        open++;
    }
    if (open == 0)
        return r1_error__set(R1_ERR_INVALID_ARG, "no expert left to acquire (n = %d)", (int)n);
#define R1_OPEN(i) (taken == NULL || !taken[i])
    pthread_mutex_lock(&ec->mu);
    /* Waiting for a layer whose demands were just made is no new request for it: the forward
     * pass may have predicted the next layer since (r1_lookahead runs right after a layer's
     * demands), and going back to this layer must neither begin a new pass nor end the
     * predictions just made. */
    if (layer != ec->last_demand_layer) {
        note_layer(ec, layer);
        ec->last_demand_layer = layer;
    }
    r1_status st = R1_OK;
    for (int32_t i = 0; i < n; i++) {
        if (!R1_OPEN(i))
            continue;
        slot *s = slot_of(ec, layer, experts[i]);
        s->waiters++;
        /* A failure recorded for an expert nobody asked again is this caller's to report. */
        if (!(s->state == SLOT_EMPTY && s->fail_st != R1_OK) && !s->demand_open)
            demand(ec, s);
    }
    uint64_t t0 = 0;
    for (;;) {
        slot *found = NULL;
        for (int32_t i = 0; i < n && found == NULL && st == R1_OK; i++) {
            if (!R1_OPEN(i))
                continue;
            slot *s = slot_of(ec, layer, experts[i]);
            if (s->state == SLOT_READY) {
                found = s;
                *index = i;
            } else if (s->state == SLOT_EMPTY && s->fail_st != R1_OK) {
                st = report_failure(s);
            }
        }
        if (found != NULL) {
            found->pins++;
            found->demand_open = 0;
            *out = &found->view;
            break;
        }
        if (st != R1_OK)
            break;
        /* Evicted or dropped before it could be pinned: ask again. */
        for (int32_t i = 0; i < n; i++)
            if (R1_OPEN(i) && slot_of(ec, layer, experts[i])->state == SLOT_EMPTY) {
                slot *s = slot_of(ec, layer, experts[i]);
                s->demand_open = 0;
                demand(ec, s);
            }
        if (t0 == 0) {
            t0 = r1_clock__now_ns();
            ec->n_waiting++;
            /* a demand that waits for a claim to be taken may now take it instead */
            if (ec->q[Q_DEMAND].head != NULL)
                pthread_cond_broadcast(&ec->work_cv);
        }
        pthread_cond_wait(&ec->done_cv, &ec->mu);
    }
    if (t0 != 0)
        ec->n_waiting--;
    for (int32_t i = 0; i < n; i++)
        if (R1_OPEN(i))
            slot_of(ec, layer, experts[i])->waiters--;
#undef R1_OPEN
    if (t0 != 0)
        ec->k.stall_ns += r1_clock__now_ns() - t0;
    /* Waiters gone: READY experts nobody pins now may be evicted by a waiting demand. */
    if (ec->q[Q_DEMAND].head != NULL)
        pthread_cond_broadcast(&ec->work_cv);
    pthread_mutex_unlock(&ec->mu);
    return st;
}

r1_status r1_expert_cache__acquire(r1_expert_cache *ec, int64_t layer, int64_t expert,
                                   const r1_expert **out)
{
    *out = NULL;
    if (r1_container__expert(ec->c, layer, expert) == NULL)
        return r1_error__set(R1_ERR_OUT_OF_RANGE, "no routed expert (layer %d, expert %d)",
                             (int)layer, (int)expert);
    r1_status st = r1_expert_cache__request(ec, layer, expert, R1_EXPERT_DEMAND);
    if (st != R1_OK)
        return st;
    int32_t e = (int32_t)expert, index;
    uint8_t taken = 0;
    st = r1_expert_cache__acquire_any(ec, layer, &e, 1, &taken, &index, out);
    return st;
}

void r1_expert_cache__release(r1_expert_cache *ec, const r1_expert *ex)
{
    if (ec == NULL || ex == NULL || r1_container__expert(ec->c, ex->layer, ex->expert) == NULL)
        return;
    slot *s = slot_of(ec, ex->layer, ex->expert);
    pthread_mutex_lock(&ec->mu);
    if (s->state == SLOT_READY && s->pins > 0 && --s->pins == 0 && ec->q[Q_DEMAND].head != NULL)
        pthread_cond_broadcast(&ec->work_cv);
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

void r1_expert_cache__hold_workers(r1_expert_cache *ec, int32_t hold)
{
    pthread_mutex_lock(&ec->mu);
    ec->hold = hold != 0;
    pthread_cond_broadcast(&ec->work_cv);
    pthread_mutex_unlock(&ec->mu);
}

uint64_t r1_expert_cache__start_order(r1_expert_cache *ec, int64_t layer, int64_t expert)
{
    if (r1_container__expert(ec->c, layer, expert) == NULL)
        return 0;
    pthread_mutex_lock(&ec->mu);
    uint64_t order = slot_of(ec, layer, expert)->start_order;
    pthread_mutex_unlock(&ec->mu);
    return order;
}

int32_t r1_expert_cache__queued_prefetches(r1_expert_cache *ec, int64_t layer)
{
    int32_t n = 0;
    pthread_mutex_lock(&ec->mu);
    for (const slot *s = ec->q[Q_PREFETCH].head; s != NULL; s = s->qnext)
        n += slot_layer(ec, s) == layer;
    pthread_mutex_unlock(&ec->mu);
    return n;
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
