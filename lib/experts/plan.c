/* plan.c: r1_model_plan: memory and speed of a model from its header, with bandwidth probes. */
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "budget.h"
#include "clock.h"
#include "container.h"
#include "error.h"
#include "model_schema.h"

/* Memory probe: a triad a[i] = b[i] + s * c[i] over three arrays of this many bytes each (far
 * beyond any cache), split over one thread per core, best of a few rounds. */
#define TRIAD_BYTES (UINT64_C(64) << 20)
enum { TRIAD_ROUNDS = 4, TRIAD_MAX_THREADS = 64 };
/* Drive probe: direct reads of this size, for at most this long or this many bytes. */
#define DRIVE_CHUNK     (UINT64_C(16) << 20)
#define DRIVE_MAX_BYTES (UINT64_C(1) << 30)
#define DRIVE_MAX_NS    (UINT64_C(1500) * 1000 * 1000)

typedef struct triad_part {
    double *a, *b, *c;
    size_t n;
    int32_t touch; /* 1: write every page first (untimed), so timing sees no page faults */
} triad_part;

static void *triad_run(void *arg)
{
    triad_part *t = arg;
    if (t->touch) {
        for (size_t i = 0; i < t->n; i++) {
            t->a[i] = 0.0;
            t->b[i] = 1.0;
            t->c[i] = 2.0;
        }
        return NULL;
    }
    for (size_t i = 0; i < t->n; i++)
        t->a[i] = t->b[i] + 0.5 * t->c[i];
    return NULL;
}

/* One round on every part: a thread each (a part whose thread cannot start runs here). */
static void triad_round(triad_part *parts, int n_threads, int32_t touch)
{
    pthread_t th[TRIAD_MAX_THREADS];
    int started[TRIAD_MAX_THREADS];
    for (int i = 0; i < n_threads; i++) {
        parts[i].touch = touch;
        started[i] = pthread_create(&th[i], NULL, triad_run, &parts[i]) == 0;
    }
    for (int i = 0; i < n_threads; i++)
        if (!started[i])
            triad_run(&parts[i]);
    for (int i = 0; i < n_threads; i++)
        if (started[i])
            pthread_join(th[i], NULL);
}

/* Bytes per second of the triad (two arrays read, one written), or 0 when it cannot run. The
 * rounds include starting the threads (tens of microseconds against tens of milliseconds). */
static double measure_memory(void)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int n_threads = cores < 1 ? 1 : cores > TRIAD_MAX_THREADS ? TRIAD_MAX_THREADS : (int)cores;
    size_t n = (size_t)(TRIAD_BYTES / sizeof(double));
    double *a = aligned_alloc(64, (size_t)TRIAD_BYTES), *b = aligned_alloc(64, (size_t)TRIAD_BYTES),
           *c = aligned_alloc(64, (size_t)TRIAD_BYTES);
    triad_part parts[TRIAD_MAX_THREADS];
    double best = 0.0;
    if (a != NULL && b != NULL && c != NULL) {
        for (int i = 0; i < n_threads; i++) {
            size_t lo = n * (size_t)i / (size_t)n_threads;
            size_t hi = n * (size_t)(i + 1) / (size_t)n_threads;
            parts[i] = (triad_part){a + lo, b + lo, c + lo, hi - lo, 0};
        }
        triad_round(parts, n_threads, 1);
        for (int r = 0; r < TRIAD_ROUNDS; r++) {
            uint64_t t0 = r1_clock__now_ns();
            triad_round(parts, n_threads, 0);
            uint64_t dt = r1_clock__now_ns() - t0;
            double bw = dt > 0 ? 3.0 * (double)TRIAD_BYTES * 1e9 / (double)dt : 0.0;
            if (bw > best)
                best = bw;
        }
    }
    free(a);
    free(b);
    free(c);
    return best;
}

/* Bytes per second of sequential 16 MiB reads of the file, direct when the file system allows
 * (else buffered, and perhaps from the page cache); 0 when nothing could be read. Starts in the
 * middle of the file, where the expert blobs are. */
static double measure_drive(const char *path, uint64_t file_bytes)
{
    int fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
    if (fd < 0)
        fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0.0;
    void *buf = aligned_alloc(4096, (size_t)DRIVE_CHUNK);
    double bw = 0.0;
    if (buf != NULL) {
        uint64_t off = file_bytes / 2 / 4096 * 4096, done = 0;
        uint64_t t0 = r1_clock__now_ns(), dt = 0;
        while (done < DRIVE_MAX_BYTES && dt < DRIVE_MAX_NS) {
            if (off + DRIVE_CHUNK > file_bytes)
                off = 0;
            ssize_t got = pread(fd, buf, (size_t)DRIVE_CHUNK, (off_t)off);
            if (got <= 0)
                break;
            done += (uint64_t)got;
            off += (uint64_t)got / 4096 * 4096 + 4096 * ((uint64_t)got % 4096 != 0);
            dt = r1_clock__now_ns() - t0;
        }
        bw = dt > 0 && done > 0 ? (double)done * 1e9 / (double)dt : 0.0;
    }
    free(buf);
    close(fd);
    return bw;
}

/* Bytes of the embedding table, which a token reads one row of. */
static uint64_t embedding_bytes(const r1_container *c)
{
    const r1_schema *schema = r1_model_schema__get(r1_container__config(c));
    const r1_schema_tensor *e = schema ? r1_model_schema__global(schema, R1_SLOT_EMBED) : NULL;
    r1_tensor t;
    if (e == NULL || r1_container__tensor(c, e->name, &t) != R1_OK)
        return 0;
    return (uint64_t)t.nbytes;
}

static void fill(const r1_container *c, uint64_t ram, int32_t context, r1_plan *p)
{
    const r1_model_config *g = r1_container__config(c);
    r1_budget_parts parts;
    r1_status st = r1_budget__auto(c, ram, context, &parts);
    p->file_bytes = r1_container__file_size(c);
    p->dense_bytes = parts.dense;
    p->expert_bytes = parts.all_experts;
    p->kv_bytes_per_token = r1_budget__kv_bytes_per_token(g);
    p->context = parts.context;
    p->ram_bytes = ram;
    p->headroom_bytes = parts.headroom;
    p->min_expert_budget_bytes = parts.minimum;
    /* A layer's k selected experts out of its E: each blob's share is k / E per token. Only the
     * layers a decode runs count (not the multi-token-prediction layers stored after them). */
    double raw_per_token = 0.0, stored_per_token = 0.0;
    for (int32_t i = 0; i < r1_container__n_expert_blobs(c); i++) {
        const r1_expert_blob *b = r1_container__expert_at(c, i);
        p->expert_stored_bytes += b->stored_size;
        if (b->layer < g->num_hidden_layers && g->n_routed_experts > 0) {
            double share = (double)g->num_experts_per_tok / (double)g->n_routed_experts;
            raw_per_token += share * (double)b->raw_size;
            stored_per_token += share * (double)r1_container__blob_span(b);
        }
    }
    p->expert_bytes_per_token = (uint64_t)(raw_per_token + 0.5);
    if (st != R1_OK) {
        p->fits = R1_PLAN_NO_FIT;
        p->expert_budget_bytes = 0;
        p->hit_rate = 0.0;
    } else if (parts.budget == 0) {
        p->fits = R1_PLAN_IN_MEMORY;
        p->expert_budget_bytes = parts.all_experts;
        p->hit_rate = 1.0;
    } else {
        p->fits = R1_PLAN_STREAMS;
        p->expert_budget_bytes = parts.budget;
        p->hit_rate = (double)parts.budget / (double)parts.all_experts;
    }
    uint64_t embed = embedding_bytes(c);
    uint64_t embed_row = g->vocab_size > 0 ? embed / (uint64_t)g->vocab_size : 0;
    p->memory_bytes_per_token = p->dense_bytes - embed + embed_row + p->expert_bytes_per_token;
    p->drive_bytes_per_token = (uint64_t)((1.0 - p->hit_rate) * stored_per_token + 0.5);
}

static void speeds(r1_plan *p)
{
    p->memory_tokens_per_s =
        p->mem_bytes_per_s > 0 ? p->mem_bytes_per_s / (double)p->memory_bytes_per_token : 0.0;
    p->drive_tokens_per_s = p->drive_bytes_per_token > 0 && p->drive_bytes_per_s > 0
                                ? p->drive_bytes_per_s / (double)p->drive_bytes_per_token
                                : 0.0;
    double v = p->memory_tokens_per_s;
    if (p->drive_bytes_per_token > 0 && p->drive_tokens_per_s < v)
        v = p->drive_tokens_per_s;
    p->decode_tokens_per_s = p->fits == R1_PLAN_NO_FIT ? 0.0 : v;
}

R1_API r1_status r1_model_plan(const char *path_utf8, uint64_t ram_bytes, int32_t context_tokens,
                               double mem_bytes_per_s, double drive_bytes_per_s, r1_plan *plan)
{
    r1_error__clear();
    if (path_utf8 == NULL || plan == NULL)
        return r1_error__set(R1_ERR_INVALID_ARG, "%s is NULL", plan ? "path_utf8" : "plan");
    uint32_t size = plan->struct_size;
    if (size < sizeof(uint32_t) * 2 || size > (1u << 16))
        return r1_error__set(R1_ERR_INVALID_ARG,
                             "plan->struct_size is %u; set it to sizeof(r1_plan) (%zu)", size,
                             sizeof *plan);
    if (context_tokens < 0 || !(mem_bytes_per_s >= 0.0) || !(drive_bytes_per_s >= 0.0))
        return r1_error__set(R1_ERR_INVALID_ARG,
                             "context_tokens and bandwidths must not be negative");
    if (ram_bytes == 0 && (ram_bytes = r1_budget__mem_available()) == 0)
        return r1_error__set(R1_ERR_IO, "cannot read MemAvailable from /proc/meminfo; give "
                                        "ram_bytes");
    r1_container *c = NULL;
    r1_status st = r1_container__open(&c, path_utf8);
    if (st != R1_OK)
        return st;
    r1_plan v;
    memset(&v, 0, sizeof v);
    v.struct_size = size < sizeof v ? size : (uint32_t)sizeof v;
    fill(c, ram_bytes, context_tokens, &v);
    v.mem_bytes_per_s = mem_bytes_per_s > 0 ? mem_bytes_per_s : measure_memory();
    v.drive_bytes_per_s = drive_bytes_per_s > 0         ? drive_bytes_per_s
                          : v.drive_bytes_per_token > 0 ? measure_drive(path_utf8, v.file_bytes)
                                                        : 0.0;
    speeds(&v);
    r1_container__close(c);
    r1_error__clear(); /* a plan that does not fit is an answer, not a failure */
    memcpy(plan, &v, v.struct_size);
    return R1_OK;
}
