/*
 * Dispatch + barrier latency of the thread pool: q_pool_run with an empty task, as many tasks
 * as threads, back to back. Prints ns per run for each thread count (best of five batches).
 *
 * usage: pool_bench [THREADS...]   (default: 1 2)
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "infer/pool.h"

#define RUNS_PER_BATCH 100000

static void empty_task(void *arg, size_t task, size_t thread)
{
    (void)arg;
    (void)task;
    (void)thread;
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int bench(size_t n_threads)
{
    q_pool *pool = NULL;
    q_error_code rc = q_pool_create(&pool, n_threads);
    if (rc != Q_OK) {
        fprintf(stderr, "pool_bench: %zu threads: %s\n", n_threads, q_strerror(rc));
        return 1;
    }
    double best = -1.0;
    for (int batch = 0; batch < 5; batch++) {
        double start = now_ns();
        for (int run = 0; run < RUNS_PER_BATCH; run++)
            q_pool_run(pool, empty_task, NULL, n_threads);
        double per_run = (now_ns() - start) / RUNS_PER_BATCH;
        if (best < 0.0 || per_run < best)
            best = per_run;
    }
    printf("threads=%zu tasks=%zu ns_per_run=%.0f\n", n_threads, n_threads, best);
    q_pool_destroy(pool);
    return 0;
}

int main(int argc, char **argv)
{
    int failed = 0;
    if (argc < 2)
        return bench(1) | bench(2);
    for (int i = 1; i < argc; i++)
        failed |= bench((size_t)strtoul(argv[i], NULL, 10));
    return failed;
}
