/*
 * A persistent thread pool for the forward pass (internal to the library): worker threads are
 * created once by q_pool_create; q_pool_run hands them a batch of tasks and returns when every
 * task is done, without allocating or creating threads. See pool.c for the design.
 */
#ifndef QORUS_INFER_POOL_H
#define QORUS_INFER_POOL_H

#include <stddef.h>

#include "qorus_core.h"

/** Most threads a pool can have, the calling thread included. */
#define Q_POOL_MAX_THREADS 64

typedef struct q_pool q_pool;

/**
 * One task of a q_pool_run: runs task `task` (0 <= task < n_tasks) on pool thread `thread`
 * (0 <= thread < q_pool_threads; 0 is the thread that called q_pool_run). Which thread runs
 * which task varies from run to run: `thread` is only for choosing per-thread scratch.
 */
typedef void (*q_pool_task_fn)(void *arg, size_t task, size_t thread);

/**
 * Creates a pool of `n_threads` threads in total, the calling thread included (1 = no worker
 * threads: q_pool_run runs everything inline). Worker threads start with every signal blocked.
 *
 * Errors: Q_ERR_INVALID_ARG (out NULL, n_threads 0 or above Q_POOL_MAX_THREADS), Q_ERR_ALLOC,
 * Q_ERR_THREAD (the OS refused a thread). On error *out is NULL (when out is not NULL) and no
 * thread is left running, nothing allocated.
 */
q_error_code q_pool_create(q_pool **out, size_t n_threads);

/**
 * Runs fn(arg, task, thread) once for every task in 0..n_tasks-1, spread over the pool's
 * threads (the caller works too), and returns when all of them are done: everything the tasks
 * wrote is visible to the caller. Tasks are claimed one by one from a shared counter, so a
 * result must not depend on which thread ran a task. n_tasks 0 returns at once. No allocation,
 * no thread creation. Not reentrant: fn must not call q_pool_run on the same pool, and one
 * pool serves one calling thread at a time. n_tasks must not exceed PTRDIFF_MAX.
 */
void q_pool_run(q_pool *pool, q_pool_task_fn fn, void *arg, size_t n_tasks);

/** Number of threads of the pool, the caller included (n_threads of q_pool_create). */
size_t q_pool_threads(const q_pool *pool);

/** Stops and joins the worker threads, then frees the pool. Safe on NULL. */
void q_pool_destroy(q_pool *pool);

/** The number of online cores (sysconf), at least 1 and at most Q_POOL_MAX_THREADS. */
size_t q_pool_default_threads(void);

#endif
