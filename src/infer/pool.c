/*
 * The persistent thread pool.
 *
 * Threads. q_pool_create starts n_threads - 1 workers (through q_os_thread_create: signals
 * blocked, counted by the failure hook); thread index 0 is whoever calls q_pool_run, which
 * works like any worker. Nothing on the q_pool_run path allocates, creates a thread or takes a
 * lock unless a thread has gone to sleep.
 *
 * One run, in four shared words (each on its own cache line):
 *   generation  bumped by the caller to say "a run started"; workers wait for it to change
 *   remaining   tasks not yet claimed. The caller stores n_tasks (release) after writing the
 *               job (fn, arg, n_tasks); a thread claims a task with fetch_sub (acquire): a
 *               result r > 0 makes it the owner of task n_tasks - r, so tasks start in
 *               increasing order and each is claimed exactly once. A result <= 0 means the
 *               run has nothing left; the counter may go a few below zero (one failed claim
 *               per thread per run) until the next run overwrites it.
 *   n_done      tasks finished. A thread adds the tasks it ran (release) once its claims fail;
 *               the caller returns when n_done == n_tasks (acquire), so every write made by a
 *               task happens before q_pool_run returns.
 *   n_sleeping, caller_waiting   see "Sleeping".
 *
 * Why the job fields can be plain variables: a thread reads fn/arg/n_tasks only after a
 * successful claim, and a run cannot finish while one of its tasks is claimed but not counted
 * in n_done; the caller writes the next job only after seeing the run finish. A worker that
 * was descheduled in the middle of an old run touches only the atomic counters, and if its
 * claim lands in a newer run it is a valid claim of that run (the acquire on `remaining`
 * pairs with the store that published it). So the caller never waits for a worker that has
 * no task: a run finishes as soon as its tasks do, even if some workers never woke up.
 *
 * Spinning. A worker polls `generation` with a pause instruction for Q_POOL_SPIN_ROUNDS before
 * sleeping, and the caller polls `n_done` as long before sleeping: the forward pass calls
 * q_pool_run hundreds of times per token with little serial work between the calls, and a
 * futex/condition-variable round trip per call would cost more than the work.
 *
 * Sleeping. A worker that spun in vain takes the mutex, increments n_sleeping, re-checks
 * `generation` and waits on work_cond. The caller, after bumping `generation`, broadcasts
 * work_cond (under the mutex) only if n_sleeping != 0. Both sides use seq_cst for the
 * increment-then-check, so at least one of them sees the other: either the worker sees the new
 * generation, or the caller sees n_sleeping != 0 and broadcasts, and since the worker checks
 * and waits under the mutex the broadcast cannot fall between its check and its wait. The
 * caller sleeps on done_cond the same way with caller_waiting; the thread whose n_done add
 * completes the run signals it.
 *
 * Every synchronization is a C11 atomic with an explicit order, or the mutex: no hand-rolled
 * fences, no racy plain reads, so ThreadSanitizer checks the whole protocol.
 */
#include "infer/pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <unistd.h>

#include "core/os.h"

/* Polls before sleeping: with `pause` at 10-150 cycles, tens of microseconds to a millisecond. */
#define Q_POOL_SPIN_ROUNDS 16384u

/* Fields written by different threads are kept this far apart. The pool comes from calloc,
 * which does not promise 64-byte alignment, so the layout pads rather than _Alignas. */
#define Q_POOL_LINE 64

typedef struct pool_worker {
    q_pool *pool;
    size_t thread; /* 1..n_threads-1 */
    pthread_t handle;
} pool_worker;

struct q_pool {
    /* set by q_pool_create, then read-only */
    size_t n_threads;
    size_t n_workers; /* started, n_threads - 1 once created */
    pool_worker workers[Q_POOL_MAX_THREADS];
    pthread_mutex_t lock;
    pthread_cond_t work_cond; /* workers sleep here for a new generation */
    pthread_cond_t done_cond; /* the caller sleeps here for n_done == n_tasks */

    /* the job: written by the caller between runs, read by a thread after a claim */
    q_pool_task_fn fn;
    void *arg;
    size_t n_tasks;

    char pad0[Q_POOL_LINE];
    _Atomic ptrdiff_t remaining;
    char pad1[Q_POOL_LINE];
    _Atomic size_t n_done;
    char pad2[Q_POOL_LINE];
    _Atomic size_t generation;
    _Atomic int stop;
    char pad3[Q_POOL_LINE];
    _Atomic size_t n_sleeping;
    _Atomic int caller_waiting;
    char pad4[Q_POOL_LINE];
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
}

/* Claims and runs tasks of the current run until none is left, then counts them in n_done. */
static void run_claimed_tasks(q_pool *pool, size_t thread)
{
    size_t n_ran = 0;
    size_t n_tasks = 0;
    for (;;) {
        ptrdiff_t unclaimed = atomic_fetch_sub_explicit(&pool->remaining, 1, memory_order_acquire);
        if (unclaimed <= 0)
            break;
        n_tasks = pool->n_tasks;
        pool->fn(pool->arg, n_tasks - (size_t)unclaimed, thread);
        n_ran++;
    }
    if (n_ran == 0)
        return;
    /* seq_cst: pairs with the caller's store of caller_waiting (see "Sleeping") */
    size_t done = atomic_fetch_add_explicit(&pool->n_done, n_ran, memory_order_seq_cst) + n_ran;
    if (done == n_tasks && atomic_load_explicit(&pool->caller_waiting, memory_order_seq_cst)) {
        pthread_mutex_lock(&pool->lock);
        pthread_cond_signal(&pool->done_cond);
        pthread_mutex_unlock(&pool->lock);
    }
}

/* Returns the first generation different from `seen`: spins, then sleeps on work_cond. */
static size_t wait_for_generation(q_pool *pool, size_t seen)
{
    size_t generation;
    for (unsigned round = 0; round < Q_POOL_SPIN_ROUNDS; round++) {
        generation = atomic_load_explicit(&pool->generation, memory_order_acquire);
        if (generation != seen)
            return generation;
        cpu_relax();
    }
    pthread_mutex_lock(&pool->lock);
    atomic_fetch_add_explicit(&pool->n_sleeping, 1, memory_order_seq_cst);
    while ((generation = atomic_load_explicit(&pool->generation, memory_order_seq_cst)) == seen)
        pthread_cond_wait(&pool->work_cond, &pool->lock);
    atomic_fetch_sub_explicit(&pool->n_sleeping, 1, memory_order_relaxed);
    pthread_mutex_unlock(&pool->lock);
    return generation;
}

static void *worker_main(void *opaque)
{
    pool_worker *worker = opaque;
    q_pool *pool = worker->pool;
    size_t seen = 0; /* the generation when the pool was created */
    for (;;) {
        seen = wait_for_generation(pool, seen);
        if (atomic_load_explicit(&pool->stop, memory_order_acquire))
            return NULL;
        run_claimed_tasks(pool, worker->thread);
    }
}

/* Bumps the generation and wakes sleeping workers if there are any. */
static void start_generation(q_pool *pool)
{
    atomic_fetch_add_explicit(&pool->generation, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&pool->n_sleeping, memory_order_seq_cst) != 0) {
        pthread_mutex_lock(&pool->lock);
        pthread_cond_broadcast(&pool->work_cond);
        pthread_mutex_unlock(&pool->lock);
    }
}

/* Returns once n_done == n_tasks: spins, then sleeps on done_cond. */
static void wait_for_completion(q_pool *pool, size_t n_tasks)
{
    for (unsigned round = 0; round < Q_POOL_SPIN_ROUNDS; round++) {
        if (atomic_load_explicit(&pool->n_done, memory_order_acquire) == n_tasks)
            return;
        cpu_relax();
    }
    pthread_mutex_lock(&pool->lock);
    atomic_store_explicit(&pool->caller_waiting, 1, memory_order_seq_cst);
    while (atomic_load_explicit(&pool->n_done, memory_order_seq_cst) != n_tasks)
        pthread_cond_wait(&pool->done_cond, &pool->lock);
    atomic_store_explicit(&pool->caller_waiting, 0, memory_order_relaxed);
    pthread_mutex_unlock(&pool->lock);
}

/* Stops and joins the first n_started workers, then frees the pool. */
static void shut_down(q_pool *pool, size_t n_started)
{
    atomic_store_explicit(&pool->stop, 1, memory_order_release);
    atomic_fetch_add_explicit(&pool->generation, 1, memory_order_seq_cst);
    pthread_mutex_lock(&pool->lock);
    pthread_cond_broadcast(&pool->work_cond);
    pthread_mutex_unlock(&pool->lock);
    for (size_t i = 0; i < n_started; i++)
        q_os_thread_join(pool->workers[i].handle);
    pthread_cond_destroy(&pool->done_cond);
    pthread_cond_destroy(&pool->work_cond);
    pthread_mutex_destroy(&pool->lock);
    q_os_free(pool);
}

q_error_code q_pool_create(q_pool **out, size_t n_threads)
{
    if (out == NULL)
        return Q_ERR_INVALID_ARG;
    *out = NULL;
    if (n_threads == 0 || n_threads > Q_POOL_MAX_THREADS)
        return Q_ERR_INVALID_ARG;

    q_pool *pool = q_os_calloc(1, sizeof *pool);
    if (pool == NULL)
        return Q_ERR_ALLOC;
    pool->n_threads = n_threads;
    atomic_init(&pool->remaining, 0);
    atomic_init(&pool->n_done, 0);
    atomic_init(&pool->generation, 0);
    atomic_init(&pool->stop, 0);
    atomic_init(&pool->n_sleeping, 0);
    atomic_init(&pool->caller_waiting, 0);
    if (pthread_mutex_init(&pool->lock, NULL) != 0) {
        q_os_free(pool);
        return Q_ERR_ALLOC;
    }
    if (pthread_cond_init(&pool->work_cond, NULL) != 0) {
        pthread_mutex_destroy(&pool->lock);
        q_os_free(pool);
        return Q_ERR_ALLOC;
    }
    if (pthread_cond_init(&pool->done_cond, NULL) != 0) {
        pthread_cond_destroy(&pool->work_cond);
        pthread_mutex_destroy(&pool->lock);
        q_os_free(pool);
        return Q_ERR_ALLOC;
    }

    for (size_t i = 0; i + 1 < n_threads; i++) {
        pool_worker *worker = &pool->workers[i];
        worker->pool = pool;
        worker->thread = i + 1;
        if (q_os_thread_create(&worker->handle, worker_main, worker) != 0) {
            shut_down(pool, i);
            return Q_ERR_THREAD;
        }
        pool->n_workers = i + 1;
    }
    *out = pool;
    return Q_OK;
}

void q_pool_run(q_pool *pool, q_pool_task_fn fn, void *arg, size_t n_tasks)
{
    if (n_tasks == 0)
        return;
    if (pool->n_workers == 0 || n_tasks == 1) {
        for (size_t task = 0; task < n_tasks; task++)
            fn(arg, task, 0);
        return;
    }
    pool->fn = fn;
    pool->arg = arg;
    pool->n_tasks = n_tasks;
    atomic_store_explicit(&pool->n_done, 0, memory_order_relaxed);
    /* publishes the job and the n_done reset to every thread whose claim reads this value */
    atomic_store_explicit(&pool->remaining, (ptrdiff_t)n_tasks, memory_order_release);
    start_generation(pool);
    run_claimed_tasks(pool, 0);
    wait_for_completion(pool, n_tasks);
}

size_t q_pool_threads(const q_pool *pool)
{
    return pool->n_threads;
}

void q_pool_destroy(q_pool *pool)
{
    if (pool != NULL)
        shut_down(pool, pool->n_workers);
}

size_t q_pool_default_threads(void)
{
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (online < 1)
        return 1;
    if ((unsigned long)online > Q_POOL_MAX_THREADS)
        return Q_POOL_MAX_THREADS;
    return (size_t)online;
}
