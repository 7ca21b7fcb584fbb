/*
 * Thread pool tests: every task runs exactly once for many task and thread counts, thread
 * indices in range, every thread takes part, workers have signals blocked, back-to-back runs
 * (the latency path) with a checksum, per-thread scratch, results independent of the thread
 * count (bitwise), create/destroy cycles, argument errors, and injected thread-creation
 * failures that leave no thread and no memory behind (LeakSanitizer; ThreadSanitizer reports
 * unjoined threads). Run under the tsan preset, it also checks the pool's synchronization.
 */
#include <dirent.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "../check.h"
#include "infer/pool.h"
#include "qorus_testing.h"

#define MAX_TASKS 1000

/* ---- helpers ---- */

/* Threads of this process now (/proc/self/task), or 0 if unreadable. */
static size_t count_process_threads(void)
{
    DIR *dir = opendir("/proc/self/task");
    size_t n_threads = 0;
    if (dir == NULL)
        return 0;
    for (struct dirent *entry; (entry = readdir(dir)) != NULL;)
        if (entry->d_name[0] != '.')
            n_threads++;
    closedir(dir);
    return n_threads;
}

/* The thread count once it is back to `expected`: a joined thread may stay listed for a
 * moment while the kernel reaps it, so look again a bounded number of times. */
static size_t settled_thread_count(size_t expected)
{
    size_t n_threads = count_process_threads();
    for (int attempt = 0; attempt < 100000 && n_threads != expected; attempt++) {
        sched_yield();
        n_threads = count_process_threads();
    }
    return n_threads;
}

/* ---- every task exactly once, thread index in range ---- */

typedef struct once_job {
    _Atomic unsigned runs[MAX_TASKS];
    _Atomic unsigned bad_thread;
    size_t n_threads;
} once_job;

static void count_task(void *arg, size_t task, size_t thread)
{
    once_job *job = arg;
    atomic_fetch_add_explicit(&job->runs[task], 1, memory_order_relaxed);
    if (thread >= job->n_threads)
        atomic_fetch_add_explicit(&job->bad_thread, 1, memory_order_relaxed);
}

static void test_every_task_once(void)
{
    static const size_t thread_counts[] = {1, 2, 3, 8};
    static const size_t task_counts[] = {0, 1, 2, 3, 63, 64, 1000};
    static once_job job;
    for (size_t t = 0; t < sizeof thread_counts / sizeof thread_counts[0]; t++) {
        q_pool *pool = NULL;
        CHECK_EQ_ERR(q_pool_create(&pool, thread_counts[t]), Q_OK);
        if (pool == NULL)
            continue;
        CHECK_EQ_INT(q_pool_threads(pool), thread_counts[t]);
        for (int repeat = 0; repeat < 3; repeat++) {
            for (size_t k = 0; k < sizeof task_counts / sizeof task_counts[0]; k++) {
                size_t n_tasks = task_counts[k];
                for (size_t i = 0; i < MAX_TASKS; i++)
                    atomic_store(&job.runs[i], 0);
                atomic_store(&job.bad_thread, 0);
                job.n_threads = thread_counts[t];
                q_pool_run(pool, count_task, &job, n_tasks);
                size_t n_wrong = 0;
                for (size_t i = 0; i < MAX_TASKS; i++)
                    n_wrong += atomic_load(&job.runs[i]) != (i < n_tasks ? 1u : 0u);
                if (n_wrong != 0)
                    fprintf(stderr, "  %zu threads, %zu tasks: %zu tasks ran != once\n",
                            thread_counts[t], n_tasks, n_wrong);
                CHECK_EQ_INT(n_wrong, 0);
                CHECK_EQ_INT(atomic_load(&job.bad_thread), 0);
            }
        }
        q_pool_destroy(pool);
    }
}

/* ---- every thread takes part; workers have signals blocked ---- */

typedef struct rendezvous_job {
    size_t n_threads;
    _Atomic size_t n_arrived;
    _Atomic unsigned thread_seen[Q_POOL_MAX_THREADS];
    _Atomic unsigned sigint_open; /* a worker (thread != 0) with SIGINT not blocked */
    _Atomic unsigned fault_blocked; /* a worker with SIGBUS or SIGSEGV blocked */
} rendezvous_job;

/* Each task waits until all n_threads tasks have started: only n_threads distinct threads
 * can get there, so every thread of the pool runs exactly one task. */
static void rendezvous_task(void *arg, size_t task, size_t thread)
{
    rendezvous_job *job = arg;
    (void)task;
    atomic_fetch_add(&job->thread_seen[thread], 1);
    if (thread != 0) {
        sigset_t mask;
        if (pthread_sigmask(SIG_BLOCK, NULL, &mask) != 0 || !sigismember(&mask, SIGINT))
            atomic_store(&job->sigint_open, 1);
        /* a fault signal raised while blocked kills the process without running the
         * model-mapping guard's handler: they must stay open on workers */
        if (sigismember(&mask, SIGBUS) || sigismember(&mask, SIGSEGV))
            atomic_store(&job->fault_blocked, 1);
    }
    atomic_fetch_add(&job->n_arrived, 1);
    while (atomic_load(&job->n_arrived) < job->n_threads)
        sched_yield();
}

static void test_all_threads_take_part(void)
{
    static const size_t thread_counts[] = {2, 3, 8};
    for (size_t t = 0; t < sizeof thread_counts / sizeof thread_counts[0]; t++) {
        size_t n_threads = thread_counts[t];
        q_pool *pool = NULL;
        CHECK_EQ_ERR(q_pool_create(&pool, n_threads), Q_OK);
        if (pool == NULL)
            continue;
        for (int repeat = 0; repeat < 20; repeat++) {
            static rendezvous_job job;
            memset(&job, 0, sizeof job);
            job.n_threads = n_threads;
            q_pool_run(pool, rendezvous_task, &job, n_threads);
            for (size_t i = 0; i < Q_POOL_MAX_THREADS; i++)
                CHECK_EQ_INT(atomic_load(&job.thread_seen[i]), i < n_threads ? 1 : 0);
            CHECK_EQ_INT(atomic_load(&job.sigint_open), 0);
            CHECK_EQ_INT(atomic_load(&job.fault_blocked), 0);
        }
        q_pool_destroy(pool);
    }
}

/* ---- back-to-back runs with a checksum (the latency path) ---- */

typedef struct checksum_job {
    uint64_t run;
    uint64_t out[8];
} checksum_job;

/* Plain writes: q_pool_run must make them visible to the caller. */
static void checksum_task(void *arg, size_t task, size_t thread)
{
    checksum_job *job = arg;
    (void)thread;
    job->out[task] = job->run * 8 + task + 1;
}

static void test_back_to_back_runs(size_t n_threads, uint64_t n_runs)
{
    q_pool *pool = NULL;
    CHECK_EQ_ERR(q_pool_create(&pool, n_threads), Q_OK);
    if (pool == NULL)
        return;
    checksum_job job;
    memset(&job, 0, sizeof job);
    uint64_t sum = 0, expected = 0;
    for (uint64_t run = 0; run < n_runs; run++) {
        size_t n_tasks = (size_t)(run % 8) + 1;
        job.run = run;
        q_pool_run(pool, checksum_task, &job, n_tasks);
        for (size_t task = 0; task < n_tasks; task++) {
            sum += job.out[task];
            expected += run * 8 + task + 1;
            job.out[task] = 0;
        }
    }
    if (sum != expected)
        fprintf(stderr, "  %zu threads: checksum %llu, expected %llu\n", n_threads,
                (unsigned long long)sum, (unsigned long long)expected);
    CHECK(sum == expected);
    q_pool_destroy(pool);
}

static void test_latency_path(void)
{
    test_back_to_back_runs(2, 20000);
    test_back_to_back_runs(3, 20000);
    test_back_to_back_runs(8, 2000); /* more threads than cores: sleeping and waking */
}

/* ---- per-thread scratch, and results independent of the thread count ---- */

#define ROWS 257
#define COLS 301

typedef struct matvec_job {
    const float *matrix; /* ROWS x COLS */
    const float *vector; /* COLS */
    float *out;          /* ROWS */
    float scratch[Q_POOL_MAX_THREADS][COLS]; /* one row of products per thread */
} matvec_job;

/* out[row] = sum of matrix[row][j] * vector[j] in increasing j, the products staged in the
 * thread's scratch row (two threads sharing one would race and mix rows). */
static void matvec_task(void *arg, size_t row, size_t thread)
{
    matvec_job *job = arg;
    float *products = job->scratch[thread];
    for (size_t j = 0; j < COLS; j++)
        products[j] = job->matrix[row * COLS + j] * job->vector[j];
    float sum = 0.0f;
    for (size_t j = 0; j < COLS; j++)
        sum += products[j];
    job->out[row] = sum;
}

static void matvec_with(size_t n_threads, const float *matrix, const float *vector, float *out)
{
    static matvec_job job;
    q_pool *pool = NULL;
    CHECK_EQ_ERR(q_pool_create(&pool, n_threads), Q_OK);
    if (pool == NULL)
        return;
    job.matrix = matrix;
    job.vector = vector;
    job.out = out;
    for (int repeat = 0; repeat < 5; repeat++)
        q_pool_run(pool, matvec_task, &job, ROWS);
    q_pool_destroy(pool);
}

static void test_thread_count_independence(void)
{
    static float matrix[ROWS * COLS], vector[COLS];
    static float one_thread[ROWS], many_threads[ROWS], reference[ROWS];
    uint32_t state = 12345;
    for (size_t i = 0; i < ROWS * COLS; i++) {
        state = state * 1664525u + 1013904223u;
        matrix[i] = (float)(int32_t)(state >> 8) / (float)(1 << 23) - 1.0f;
    }
    for (size_t j = 0; j < COLS; j++)
        vector[j] = 1.0f / (float)(j + 3);

    /* the same arithmetic without a pool (products rounded to float first, as staged) */
    for (size_t row = 0; row < ROWS; row++) {
        float sum = 0.0f;
        for (size_t j = 0; j < COLS; j++) {
            float product = matrix[row * COLS + j] * vector[j];
            sum += product;
        }
        reference[row] = sum;
    }
    matvec_with(1, matrix, vector, one_thread);
    CHECK(memcmp(one_thread, reference, sizeof reference) == 0);
    static const size_t thread_counts[] = {2, 3, 8};
    for (size_t t = 0; t < sizeof thread_counts / sizeof thread_counts[0]; t++) {
        memset(many_threads, 0, sizeof many_threads);
        matvec_with(thread_counts[t], matrix, vector, many_threads);
        CHECK(memcmp(one_thread, many_threads, sizeof many_threads) == 0);
    }
}

/* ---- lifetime, arguments, injected failures ---- */

static void noop_task(void *arg, size_t task, size_t thread)
{
    (void)arg;
    (void)task;
    (void)thread;
}

static void test_create_destroy_cycles(void)
{
    size_t threads_before = count_process_threads();
    for (size_t cycle = 0; cycle < 200; cycle++) {
        q_pool *pool = NULL;
        size_t n_threads = cycle % 8 + 1;
        CHECK_EQ_ERR(q_pool_create(&pool, n_threads), Q_OK);
        if (pool == NULL)
            continue;
        if (cycle % 3 == 0)
            q_pool_run(pool, noop_task, NULL, cycle % 17);
        q_pool_destroy(pool); /* also right after creation, workers maybe not started yet */
    }
    CHECK_EQ_INT(settled_thread_count(threads_before), threads_before);
}

static void test_invalid_args(void)
{
    q_pool *pool = (q_pool *)&pool; /* not NULL, to see it cleared */
    CHECK_EQ_ERR(q_pool_create(NULL, 2), Q_ERR_INVALID_ARG);
    CHECK_EQ_ERR(q_pool_create(&pool, 0), Q_ERR_INVALID_ARG);
    CHECK(pool == NULL);
    pool = (q_pool *)&pool;
    CHECK_EQ_ERR(q_pool_create(&pool, Q_POOL_MAX_THREADS + 1), Q_ERR_INVALID_ARG);
    CHECK(pool == NULL);
    CHECK_EQ_ERR(q_pool_create(&pool, SIZE_MAX), Q_ERR_INVALID_ARG);
    CHECK(pool == NULL);
    q_pool_destroy(NULL);

    size_t n_default = q_pool_default_threads();
    CHECK(n_default >= 1 && n_default <= Q_POOL_MAX_THREADS);

    /* the largest pool works too */
    CHECK_EQ_ERR(q_pool_create(&pool, Q_POOL_MAX_THREADS), Q_OK);
    if (pool != NULL) {
        static once_job job;
        memset(&job, 0, sizeof job);
        job.n_threads = Q_POOL_MAX_THREADS;
        q_pool_run(pool, count_task, &job, MAX_TASKS);
        size_t n_wrong = 0;
        for (size_t i = 0; i < MAX_TASKS; i++)
            n_wrong += atomic_load(&job.runs[i]) != 1u;
        CHECK_EQ_INT(n_wrong, 0);
        q_pool_destroy(pool);
    }
}

/* Countdown: OS call n fails for n = 1, 2, ... until creation succeeds. Call 1 is the pool's
 * allocation, calls 2..n_threads its worker threads. */
static void test_injected_failures(void)
{
    const size_t n_threads = 4;
    size_t threads_before = count_process_threads();
    unsigned long n;
    for (n = 1; n < 100; n++) {
        q_pool *pool = (q_pool *)&pool;
        q_test_fail_nth_os_call(n);
        q_error_code rc = q_pool_create(&pool, n_threads);
        int fired = q_test_failure_fired();
        q_test_fail_nth_os_call(0);
        if (!fired) {
            CHECK_EQ_ERR(rc, Q_OK);
            CHECK(pool != NULL);
            q_pool_destroy(pool);
            break;
        }
        CHECK_EQ_ERR(rc, n == 1 ? Q_ERR_ALLOC : Q_ERR_THREAD);
        CHECK(pool == NULL);
        CHECK_EQ_INT(settled_thread_count(threads_before), threads_before);
    }
    CHECK_EQ_INT(n, n_threads + 1); /* one allocation, then n_threads - 1 thread creations */
    CHECK_EQ_INT(settled_thread_count(threads_before), threads_before);
}

int main(void)
{
    RUN_TEST(test_invalid_args);
    RUN_TEST(test_every_task_once);
    RUN_TEST(test_all_threads_take_part);
    RUN_TEST(test_latency_path);
    RUN_TEST(test_thread_count_independence);
    RUN_TEST(test_create_destroy_cycles);
    RUN_TEST(test_injected_failures);
    return check_result("infer_pool");
}
