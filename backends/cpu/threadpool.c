/* threadpool.c: fixed worker threads that spin briefly, then sleep, between the runs of an op. */
#include "threadpool.h"

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "error.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define R1_CPU_RELAX() _mm_pause()
#else
#define R1_CPU_RELAX() ((void)0)
#endif

enum { R1_POOL_LINE = 64, R1_POOL_DEFAULT_SPIN_US = 50, R1_POOL_MAX_THREADS = 512 };

/* Each worker's own state on its own cache line(s): the scratch pointer is rewritten by its
 * owner only, and no two workers' fields share a line. */
typedef struct r1_pool_worker {
    alignas(R1_POOL_LINE) pthread_t thread;
    struct r1_threadpool *pool;
    int32_t index;
    void *scratch;
    size_t scratch_bytes;
} r1_pool_worker;

struct r1_threadpool {
    /* Written by the caller of a run before it publishes the new generation, read-only after. */
    alignas(R1_POOL_LINE) r1_threadpool_fn fn;
    void *ctx;
    int64_t n_tasks;
    int32_t n_threads;
    int64_t spin_ns;
    /* Hot counters, each on its own line so that claiming a task does not invalidate the line
     * that sleepers poll. */
    alignas(R1_POOL_LINE) _Atomic uint64_t generation;
    alignas(R1_POOL_LINE) _Atomic int64_t next_task;
    alignas(R1_POOL_LINE) _Atomic int32_t pending; /* workers not yet done with this run */
    alignas(R1_POOL_LINE) _Atomic int32_t sleepers;
    _Atomic int32_t caller_sleeping;
    _Atomic int32_t stop;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_cond_t done;
    pthread_mutex_t run_lock; /* one run at a time */
    int32_t n_started;
    r1_pool_worker *workers; /* n_threads entries; [0] is the caller's slot */
};

/* Spin deadlines are signed nanoseconds of the shared monotonic clock. */
static int64_t r1_pool_now_ns(void)
{
    return (int64_t)r1_clock__now_ns();
}

static void r1_pool_work(r1_threadpool *pool, int32_t worker)
{
    int64_t n = pool->n_tasks;
    int64_t t;
    while ((t = atomic_fetch_add_explicit(&pool->next_task, 1, memory_order_relaxed)) < n)
        pool->fn(pool->ctx, t, worker);
}

/* Polls for `generation` to move past seen for at most spin_ns, checking the clock only every
 * 64 pauses; 1 when it moved. */
static int r1_pool_spin_for_generation(r1_threadpool *pool, uint64_t seen)
{
    int64_t deadline = 0;
    for (uint32_t i = 0;; i++) {
        if (atomic_load_explicit(&pool->generation, memory_order_acquire) != seen ||
            atomic_load_explicit(&pool->stop, memory_order_relaxed))
            return 1;
        R1_CPU_RELAX();
        if ((i & 63) == 0) {
            int64_t now = r1_pool_now_ns();
            if (deadline == 0)
                deadline = now + pool->spin_ns;
            else if (now >= deadline)
                return 0;
        }
    }
}

static void *r1_pool_worker_main(void *arg)
{
    r1_pool_worker *self = arg;
    r1_threadpool *pool = self->pool;
    uint64_t seen = 0;
    for (;;) {
        if (!r1_pool_spin_for_generation(pool, seen)) {
            /* sleepers is raised before generation is re-read (both sequentially consistent)
             * and the caller publishes generation before reading sleepers: one of the two
             * always sees the other, so no wake-up is lost. */
            pthread_mutex_lock(&pool->lock);
            atomic_fetch_add(&pool->sleepers, 1);
            while (atomic_load(&pool->generation) == seen && !atomic_load(&pool->stop))
                pthread_cond_wait(&pool->wake, &pool->lock);
            atomic_fetch_sub(&pool->sleepers, 1);
            pthread_mutex_unlock(&pool->lock);
        }
        if (atomic_load(&pool->stop))
            return NULL;
        seen = atomic_load_explicit(&pool->generation, memory_order_acquire);
        r1_pool_work(pool, self->index);
        if (atomic_fetch_sub(&pool->pending, 1) == 1 && atomic_load(&pool->caller_sleeping)) {
            pthread_mutex_lock(&pool->lock);
            pthread_cond_signal(&pool->done);
            pthread_mutex_unlock(&pool->lock);
        }
    }
}

static void r1_pool_stop_workers(r1_threadpool *pool)
{
    pthread_mutex_lock(&pool->lock);
    atomic_store(&pool->stop, 1);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->lock);
    for (int32_t i = 1; i <= pool->n_started; i++)
        pthread_join(pool->workers[i].thread, NULL);
}

r1_status r1_threadpool__create(r1_threadpool **out, int32_t n_threads, int32_t spin_us)
{
    *out = NULL;
    if (n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (int32_t)n : 1;
    }
    if (n_threads > R1_POOL_MAX_THREADS)
        n_threads = R1_POOL_MAX_THREADS;
    r1_threadpool *pool = aligned_alloc(R1_POOL_LINE, sizeof *pool);
    if (pool == NULL)
        return r1_error__set(R1_ERR_NO_MEMORY, "cannot allocate a thread pool");
    memset(pool, 0, sizeof *pool);
    pool->n_threads = n_threads;
    pool->spin_ns = (int64_t)(spin_us < 0 ? R1_POOL_DEFAULT_SPIN_US : spin_us) * 1000;
    pool->workers = aligned_alloc(R1_POOL_LINE, sizeof(r1_pool_worker) * (size_t)n_threads);
    if (pool->workers == NULL) {
        free(pool);
        return r1_error__set(R1_ERR_NO_MEMORY, "cannot allocate %d thread pool workers",
                             (int)n_threads);
    }
    memset(pool->workers, 0, sizeof(r1_pool_worker) * (size_t)n_threads);
    pthread_mutex_init(&pool->lock, NULL);
    pthread_mutex_init(&pool->run_lock, NULL);
    pthread_cond_init(&pool->wake, NULL);
    pthread_cond_init(&pool->done, NULL);
    for (int32_t i = 0; i < n_threads; i++) {
        pool->workers[i].pool = pool;
        pool->workers[i].index = i;
    }
    for (int32_t i = 1; i < n_threads; i++) {
        int rc =
            pthread_create(&pool->workers[i].thread, NULL, r1_pool_worker_main, &pool->workers[i]);
        if (rc != 0) {
            r1_threadpool__destroy(pool);
            return r1_error__set(R1_ERR_NO_MEMORY, "cannot start thread pool worker %d of %d",
                                 (int)i, (int)n_threads);
        }
        pool->n_started = i;
    }
    *out = pool;
    return R1_OK;
}

void r1_threadpool__destroy(r1_threadpool *pool)
{
    if (pool == NULL)
        return;
    r1_pool_stop_workers(pool);
    for (int32_t i = 0; i < pool->n_threads; i++)
        free(pool->workers[i].scratch);
    pthread_mutex_destroy(&pool->lock);
    pthread_mutex_destroy(&pool->run_lock);
    pthread_cond_destroy(&pool->wake);
    pthread_cond_destroy(&pool->done);
    free(pool->workers);
    free(pool);
}

int32_t r1_threadpool__size(const r1_threadpool *pool)
{
    return pool != NULL ? pool->n_threads : 1;
}

void r1_threadpool__run(r1_threadpool *pool, int64_t n_tasks, r1_threadpool_fn fn, void *ctx)
{
    if (n_tasks <= 0)
        return;
    if (pool == NULL || pool->n_threads == 1 || n_tasks == 1) {
        /* Nothing to share: waking workers would only add latency. The pool's worker 0 scratch
         * is used under run_lock so that callers on different threads never share it. */
        if (pool != NULL)
            pthread_mutex_lock(&pool->run_lock);
        for (int64_t t = 0; t < n_tasks; t++)
            fn(ctx, t, 0);
        if (pool != NULL)
            pthread_mutex_unlock(&pool->run_lock);
        return;
    }
    pthread_mutex_lock(&pool->run_lock);
    pool->fn = fn;
    pool->ctx = ctx;
    pool->n_tasks = n_tasks;
    atomic_store_explicit(&pool->next_task, 0, memory_order_relaxed);
    atomic_store_explicit(&pool->pending, pool->n_threads - 1, memory_order_relaxed);
    atomic_fetch_add(&pool->generation, 1); /* publishes the fields above */
    if (atomic_load(&pool->sleepers) > 0) {
        pthread_mutex_lock(&pool->lock);
        pthread_cond_broadcast(&pool->wake);
        pthread_mutex_unlock(&pool->lock);
    }
    r1_pool_work(pool, 0);

    /* Every worker checks in for every run, so none can still be reading fn or ctx when the
     * next run overwrites them. */
    int64_t deadline = r1_pool_now_ns() + pool->spin_ns;
    uint32_t i = 0;
    while (atomic_load_explicit(&pool->pending, memory_order_acquire) != 0) {
        R1_CPU_RELAX();
        if ((++i & 63) == 0 && r1_pool_now_ns() >= deadline) {
            pthread_mutex_lock(&pool->lock);
            atomic_store(&pool->caller_sleeping, 1);
            while (atomic_load(&pool->pending) != 0)
                pthread_cond_wait(&pool->done, &pool->lock);
            atomic_store(&pool->caller_sleeping, 0);
            pthread_mutex_unlock(&pool->lock);
        }
    }
    pthread_mutex_unlock(&pool->run_lock);
}

static pthread_key_t r1_pool_tls_key;
static pthread_once_t r1_pool_tls_once = PTHREAD_ONCE_INIT;
static _Atomic int32_t r1_pool_tls_created;

static void r1_pool_tls_free(void *p)
{
    free(p);
}

static void r1_pool_tls_init(void)
{
    if (pthread_key_create(&r1_pool_tls_key, r1_pool_tls_free) == 0)
        atomic_store(&r1_pool_tls_created, 1);
}

/* Layout of a thread-local buffer when there is no pool: its size, then the data. */
typedef struct r1_pool_tls_buf {
    alignas(R1_POOL_LINE) size_t bytes;
} r1_pool_tls_buf;

static void *r1_pool_grow(void **buf, size_t *have, size_t bytes)
{
    if (*have >= bytes && *buf != NULL)
        return *buf;
    size_t rounded = (bytes + R1_POOL_LINE - 1) / R1_POOL_LINE * R1_POOL_LINE;
    void *p = aligned_alloc(R1_POOL_LINE, rounded ? rounded : R1_POOL_LINE);
    if (p == NULL)
        return NULL;
    free(*buf);
    *buf = p;
    *have = rounded;
    return p;
}

r1_status r1_threadpool__reserve(r1_threadpool *pool, size_t bytes)
{
    if (pool == NULL)
        return R1_OK;
    r1_status st = R1_OK;
    pthread_mutex_lock(&pool->run_lock); /* no run is using a buffer that grows */
    for (int32_t i = 0; i < pool->n_threads && st == R1_OK; i++) {
        r1_pool_worker *w = &pool->workers[i];
        if (w->scratch != NULL && w->scratch_bytes >= bytes)
            continue;
        if (r1_pool_grow(&w->scratch, &w->scratch_bytes, bytes) == NULL)
            st = r1_error__set(R1_ERR_NO_MEMORY,
                               "cannot allocate %zu bytes of scratch for thread %d", bytes, (int)i);
        else
            memset(w->scratch, 0, w->scratch_bytes);
    }
    pthread_mutex_unlock(&pool->run_lock);
    return st;
}

void *r1_threadpool__scratch(r1_threadpool *pool, int32_t worker, size_t bytes)
{
    if (pool != NULL)
        return r1_pool_grow(&pool->workers[worker].scratch, &pool->workers[worker].scratch_bytes,
                            bytes);
    pthread_once(&r1_pool_tls_once, r1_pool_tls_init);
    if (!atomic_load(&r1_pool_tls_created))
        return NULL;
    r1_pool_tls_buf *b = pthread_getspecific(r1_pool_tls_key);
    size_t have = b != NULL ? b->bytes : 0;
    if (b != NULL && have >= bytes)
        return b + 1;
    void *p = b;
    size_t total = 0;
    if (r1_pool_grow(&p, &total, sizeof *b + bytes) == NULL)
        return NULL;
    b = p;
    b->bytes = total - sizeof *b;
    if (pthread_setspecific(r1_pool_tls_key, b) != 0) {
        free(b);
        return NULL;
    }
    return b + 1;
}

static pthread_mutex_t r1_pool_shared_lock = PTHREAD_MUTEX_INITIALIZER;
static r1_threadpool *r1_pool_shared;
static int64_t r1_pool_shared_refs; /* guarded by r1_pool_shared_lock */

r1_status r1_threadpool__acquire_shared(r1_threadpool **out)
{
    r1_status st = R1_OK;
    pthread_mutex_lock(&r1_pool_shared_lock);
    if (r1_pool_shared_refs == 0) {
        int32_t n = 0;
        const char *env = getenv("R1_NUM_THREADS");
        if (env != NULL)
            n = (int32_t)strtol(env, NULL, 10);
        st = r1_threadpool__create(&r1_pool_shared, n, -1);
    }
    if (st == R1_OK)
        r1_pool_shared_refs++;
    *out = st == R1_OK ? r1_pool_shared : NULL;
    pthread_mutex_unlock(&r1_pool_shared_lock);
    return st;
}

void r1_threadpool__release_shared(void)
{
    pthread_mutex_lock(&r1_pool_shared_lock);
    if (r1_pool_shared_refs > 0 && --r1_pool_shared_refs == 0) {
        r1_threadpool__destroy(r1_pool_shared); /* joins every worker */
        r1_pool_shared = NULL;
    }
    pthread_mutex_unlock(&r1_pool_shared_lock);
}

/* When the library is unloaded, the thread-local buffers' destructor would be left pointing into
 * unmapped code for every thread that still holds one: forget the key first, leaving what those
 * threads hold to leak rather than crash them when they exit. The CPU device never creates the
 * key (its ops always run on a pool); only direct calls with a NULL pool do. */
__attribute__((destructor)) static void r1_pool_unload(void)
{
    if (atomic_load(&r1_pool_tls_created))
        pthread_key_delete(r1_pool_tls_key);
}
