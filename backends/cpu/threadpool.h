/* threadpool.h: the CPU backend's fixed-size worker pool that splits one op (internal). */
#ifndef R1_THREADPOOL_H
#define R1_THREADPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "r1.h"

typedef struct r1_threadpool r1_threadpool;

/* One task of a run: task is in [0, n_tasks); worker is in [0, r1_threadpool__size()) and names
 * the thread running it (0 is the caller), for r1_threadpool__scratch(). Which worker runs which
 * task changes from run to run, so a task's arithmetic must depend on task alone. */
typedef void (*r1_threadpool_fn)(void *ctx, int64_t task, int32_t worker);

/* A pool of n_threads threads counting the caller (n_threads - 1 are started here); n_threads
 * <= 0 means one per online CPU. spin_us bounds how long an idle worker polls for the next run
 * before sleeping on a condition variable (negative: the default, 50 us): a decode step issues
 * hundreds of small ops back to back, and a futex wake per op would cost more than the op. */
r1_status r1_threadpool__create(r1_threadpool **out, int32_t n_threads, int32_t spin_us);
/* Stops and joins the workers; accepts NULL. No run may be in progress. */
void r1_threadpool__destroy(r1_threadpool *pool);
int32_t r1_threadpool__size(const r1_threadpool *pool);

/* Calls fn(ctx, task, worker) once for every task in [0, n_tasks) and returns when all have
 * returned. The caller works too. Runs on one pool from several threads are serialised; fn must
 * not start a run on the same pool. A NULL pool runs every task on the caller. */
void r1_threadpool__run(r1_threadpool *pool, int64_t n_tasks, r1_threadpool_fn fn, void *ctx);

/* A buffer of at least bytes, 64-byte aligned, private to worker and kept between runs; only
 * worker itself may call this, from inside a task. NULL when out of memory. With a NULL pool it
 * is a buffer private to the calling thread (freed when that thread exits; never used by the
 * CPU device, whose ops always run on a pool). */
void *r1_threadpool__scratch(r1_threadpool *pool, int32_t worker, size_t bytes);

/* Makes every worker's scratch at least bytes (zeroed where new) before a run whose tasks need
 * that much. The memory is then taken on the calling thread, when the op starts, and made
 * resident there, instead of by whichever worker first happens to take such a task (on its own
 * malloc arena, at a moment that depends on timing); and running out of it is the caller's to
 * report. R1_OK or R1_ERR_NO_MEMORY (message set). With a NULL pool: R1_OK, nothing done. */
r1_status r1_threadpool__reserve(r1_threadpool *pool, size_t bytes);

/* The pool that every CPU device without a thread count of its own shares: R1_NUM_THREADS
 * threads from the environment, else one per online CPU. Reference-counted, because a library
 * loaded into someone else's process must leave no thread behind (dlclose would unmap code that
 * a worker is still parked in): the first acquire starts the workers, and the release that
 * drops the last reference stops and joins them. Each successful acquire needs one release. */
r1_status r1_threadpool__acquire_shared(r1_threadpool **out);
void r1_threadpool__release_shared(void);

#endif
