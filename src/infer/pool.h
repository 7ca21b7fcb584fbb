/* TEMPORARY serial stand-in for the thread pool (replaced by the pool branch). */
#ifndef QORUS_POOL_H
#define QORUS_POOL_H
#include <stddef.h>
#include "qorus_core.h"
#define Q_POOL_MAX_THREADS 64u
typedef struct q_pool q_pool;
typedef void (*q_pool_task_fn)(void *arg, size_t task, size_t thread);
q_error_code q_pool_create(q_pool **out, size_t n_threads);
void q_pool_run(q_pool *pool, q_pool_task_fn fn, void *arg, size_t n_tasks);
size_t q_pool_threads(const q_pool *pool);
void q_pool_destroy(q_pool *pool);
size_t q_pool_default_threads(void);
#endif
