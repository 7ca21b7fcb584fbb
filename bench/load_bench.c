/*
 * Start-up cost of the three ways q_init_memory_ex loads a model: Q_MMAP_LAZY (map + read-
 * ahead hint), Q_MMAP_EAGER (MAP_POPULATE) and Q_MMAP_READ (--no-mmap: pread into an
 * anonymous mapping). For each file and strategy it prints the best of N runs of
 *   init   q_init_memory_ex alone (what `qorus run` pays before the first token)
 *   touch  then reading one byte per page (what the first token pays for the weights)
 *   total  both: the start-up cost until every weight is in memory
 * The page cache is warm (the file was read before): this measures the mapping work, not
 * the disk. Usage: load_bench [-r RUNS] FILE...
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "qorus.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static volatile unsigned sink;

int main(int argc, char **argv)
{
    int runs = 5, first = 1;
    if (argc > 2 && strcmp(argv[1], "-r") == 0) {
        runs = atoi(argv[2]);
        first = 3;
    }
    if (first >= argc || runs < 1) {
        fprintf(stderr, "usage: load_bench [-r RUNS] FILE...\n");
        return 2;
    }
    const char *names[3] = {"lazy", "eager", "read (--no-mmap)"};
    const q_mmap_strategy strategies[3] = {Q_MMAP_LAZY, Q_MMAP_EAGER, Q_MMAP_READ};
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    printf("%-40s %-17s %10s %10s %10s\n", "file", "strategy", "init ms", "touch ms", "total ms");
    for (int f = first; f < argc; f++) {
        for (int s = 0; s < 3; s++) {
            double best_init = 1e30, best_touch = 1e30, best_total = 1e30;
            size_t size = 0;
            for (int r = 0; r < runs; r++) {
                q_context ctx = {0};
                double t0 = now_ms();
                q_error_code err = q_init_memory_ex(&ctx, argv[f], strategies[s]);
                double t1 = now_ms();
                if (err != Q_OK) {
                    fprintf(stderr, "%s: %s\n", argv[f], q_strerror(err));
                    return 1;
                }
                const unsigned char *p = ctx.weights_mmap;
                unsigned acc = 0;
                for (size_t off = 0; off < ctx.weights_size; off += page)
                    acc += p[off];
                sink = acc;
                double t2 = now_ms();
                size = ctx.weights_size;
                q_free_memory(&ctx);
                if (t1 - t0 < best_init)
                    best_init = t1 - t0;
                if (t2 - t1 < best_touch)
                    best_touch = t2 - t1;
                if (t2 - t0 < best_total)
                    best_total = t2 - t0;
            }
            char label[64];
            const char *base = strrchr(argv[f], '/');
            snprintf(label, sizeof label, "%.28s (%.1f MB)", base ? base + 1 : argv[f],
                     (double)size / 1e6);
            printf("%-40s %-17s %10.3f %10.3f %10.3f\n", label, names[s], best_init,
                   best_touch, best_total);
        }
    }
    return 0;
}
