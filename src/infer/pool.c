/* TEMPORARY serial stand-in for the thread pool (replaced by the pool branch). */
#include "infer/pool.h"
#include <unistd.h>
#include "core/os.h"
struct q_pool { size_t n; };
q_error_code q_pool_create(q_pool **out, size_t n_threads)
{
    if (out == NULL || n_threads == 0 || n_threads > Q_POOL_MAX_THREADS)
        return Q_ERR_INVALID_ARG;
    *out = q_os_calloc(1, sizeof **out);
    if (*out == NULL)
        return Q_ERR_ALLOC;
    (*out)->n = n_threads;
    return Q_OK;
}
void q_pool_run(q_pool *pool, q_pool_task_fn fn, void *arg, size_t n_tasks)
{
    for (size_t i = 0; i < n_tasks; i++)
        fn(arg, i, i % pool->n);
}
size_t q_pool_threads(const q_pool *pool) { return pool->n; }
void q_pool_destroy(q_pool *pool) { q_os_free(pool); }
size_t q_pool_default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 64 ? 64 : (size_t)n;
}
