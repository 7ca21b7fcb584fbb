/*
 * arena_bench: what q_arena_alloc and q_arena_reset cost, against baselines built into the
 * same binary and run in the same process:
 *
 *   bump      a bare inline bump pointer (base/head/size, one bounds check, no context or
 *             NULL handling) - the floor the audit calls "theoretical"
 *   malloc    glibc malloc + free of the same sizes (freed at each "reset")
 *   mimalloc  mi_malloc + mi_free, dlopen'ed when Debian's libmimalloc2.0 is installed
 *   jemalloc  mallocx + dallocx, when Debian's libjemalloc2 is installed: it cannot be
 *             dlopen'ed (static TLS), so the bench re-runs itself with LD_PRELOAD for it
 *
 * Each workload allocates from a fixed table of sizes and resets every RESET_EVERY
 * allocations; every figure is the best of REPEATS runs (the least disturbed by the noisy
 * machine), in ns per operation, with its ratio to the bump baseline.
 *
 * Then a 4 GiB KV cache: q_alloc_kv_cache against aligned_alloc + memset, time and RSS.
 *
 * Options: --iterations N (default 20000000), --repeats R (default 5), --only NAME (run one
 * workload: qorus-aligned, bump-aligned, qorus-unaligned, bump-unaligned, qorus-reset; for
 * callgrind, see bench/callgrind.sh), --no-kv (skip the KV cache part).
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "qorus_core.h"

#define RESET_EVERY 64
#define SIZE_TABLE 1024 /* a power of two */
#define ARENA_BYTES ((size_t)RESET_EVERY * 4096 + 4096)

static size_t aligned_sizes[SIZE_TABLE];   /* multiples of 64 in [64, 4096] */
static size_t unaligned_sizes[SIZE_TABLE]; /* anything in [1, 4096] */

static void fill_size_tables(void)
{
    uint64_t state = 0x9E3779B97F4A7C15u;
    for (size_t i = 0; i < SIZE_TABLE; i++) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        aligned_sizes[i] = ((size_t)(state % 64) + 1) * 64;
        unaligned_sizes[i] = (size_t)((state >> 20) % 4096) + 1;
    }
}

/* ---- the bare bump pointer baseline ---- */

typedef struct bump {
    unsigned char *base;
    size_t head;
    size_t size;
} bump;

/* For sizes already multiples of 64. */
static inline void *bump_alloc_aligned(bump *b, size_t size)
{
    if (size > b->size - b->head)
        return NULL;
    void *p = b->base + b->head;
    b->head += size;
    return p;
}

/* Any size: rounds up first (unchecked: the baseline trusts its caller). */
static inline void *bump_alloc(bump *b, size_t size)
{
    size_t rounded = (size + 63) & ~(size_t)63;
    if (rounded > b->size - b->head)
        return NULL;
    void *p = b->base + b->head;
    b->head += rounded;
    return p;
}

/* ---- workloads: noinline so callgrind can count each one ---- */

/* noipa (gcc): no inlining and no constant propagation of the context's address either,
 * so every workload sees its context as an unknown pointer, as real callers do. */
#if defined(__GNUC__) && !defined(__clang__)
#define NOINLINE __attribute__((noipa))
#else
#define NOINLINE __attribute__((noinline))
#endif

NOINLINE static uintptr_t run_qorus_aligned(q_context *ctx, size_t n)
{
    uintptr_t sink = 0;
    for (size_t i = 0; i < n; i++) {
        sink ^= (uintptr_t)q_arena_alloc(ctx, aligned_sizes[i & (SIZE_TABLE - 1)]);
        if ((i & (RESET_EVERY - 1)) == RESET_EVERY - 1)
            q_arena_reset(ctx);
    }
    return sink;
}

NOINLINE static uintptr_t run_bump_aligned(bump *b, size_t n)
{
    uintptr_t sink = 0;
    for (size_t i = 0; i < n; i++) {
        sink ^= (uintptr_t)bump_alloc_aligned(b, aligned_sizes[i & (SIZE_TABLE - 1)]);
        if ((i & (RESET_EVERY - 1)) == RESET_EVERY - 1)
            b->head = 0;
    }
    return sink;
}

NOINLINE static uintptr_t run_qorus_unaligned(q_context *ctx, size_t n)
{
    uintptr_t sink = 0;
    for (size_t i = 0; i < n; i++) {
        sink ^= (uintptr_t)q_arena_alloc(ctx, unaligned_sizes[i & (SIZE_TABLE - 1)]);
        if ((i & (RESET_EVERY - 1)) == RESET_EVERY - 1)
            q_arena_reset(ctx);
    }
    return sink;
}

NOINLINE static uintptr_t run_bump_unaligned(bump *b, size_t n)
{
    uintptr_t sink = 0;
    for (size_t i = 0; i < n; i++) {
        sink ^= (uintptr_t)bump_alloc(b, unaligned_sizes[i & (SIZE_TABLE - 1)]);
        if ((i & (RESET_EVERY - 1)) == RESET_EVERY - 1)
            b->head = 0;
    }
    return sink;
}

/* q_arena_reset through its out-of-line symbol: the cost of a call, the store, a return. */
static void (*volatile reset_fn)(q_context *) = q_arena_reset_extern;

NOINLINE static uintptr_t run_qorus_reset(q_context *ctx, size_t n)
{
    void (*reset)(q_context *) = reset_fn;
    for (size_t i = 0; i < n; i++)
        reset(ctx);
    return ctx->scratch_head;
}

typedef struct heap_api {
    const char *name;
    void *(*alloc)(size_t);
    void (*release)(void *);
} heap_api;

NOINLINE static uintptr_t run_heap(const heap_api *api, const size_t *sizes, size_t n)
{
    void *live[RESET_EVERY];
    uintptr_t sink = 0;
    for (size_t i = 0; i < n; i++) {
        void *p = api->alloc(sizes[i & (SIZE_TABLE - 1)]);
        live[i & (RESET_EVERY - 1)] = p;
        sink ^= (uintptr_t)p;
        if ((i & (RESET_EVERY - 1)) == RESET_EVERY - 1)
            for (size_t j = 0; j < RESET_EVERY; j++)
                api->release(live[j]);
    }
    for (size_t j = 0; j < (n & (RESET_EVERY - 1)); j++)
        api->release(live[j]);
    return sink;
}

/* jemalloc's non-standard entry points (in the LD_PRELOAD'ed child). */
static void *(*je_mallocx)(size_t, int);
static void (*je_dallocx)(void *, int);
static void *jemalloc_alloc(size_t n)
{
    return je_mallocx(n, 0);
}
static void jemalloc_release(void *p)
{
    je_dallocx(p, 0);
}

/* ---- measurement ---- */

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static volatile uintptr_t global_sink;

typedef enum workload {
    QORUS_ALIGNED,
    BUMP_ALIGNED,
    QORUS_UNALIGNED,
    BUMP_UNALIGNED,
    QORUS_RESET,
    HEAP_ALIGNED,
    HEAP_UNALIGNED,
} workload;

typedef struct bench_state {
    q_context ctx;
    bump bump;
    const heap_api *heap;
} bench_state;

static void run_once(bench_state *s, workload w, size_t n)
{
    switch (w) {
    case QORUS_ALIGNED: global_sink ^= run_qorus_aligned(&s->ctx, n); break;
    case BUMP_ALIGNED: global_sink ^= run_bump_aligned(&s->bump, n); break;
    case QORUS_UNALIGNED: global_sink ^= run_qorus_unaligned(&s->ctx, n); break;
    case BUMP_UNALIGNED: global_sink ^= run_bump_unaligned(&s->bump, n); break;
    case QORUS_RESET: global_sink ^= run_qorus_reset(&s->ctx, n); break;
    case HEAP_ALIGNED: global_sink ^= run_heap(s->heap, aligned_sizes, n); break;
    case HEAP_UNALIGNED: global_sink ^= run_heap(s->heap, unaligned_sizes, n); break;
    }
    q_arena_reset(&s->ctx);
    s->bump.head = 0;
}

/* Best of `repeats` runs, in ns per operation. */
static double measure(bench_state *s, workload w, size_t n, int repeats)
{
    double best = 1e300;
    run_once(s, w, n / 10 + 1); /* warm up caches and page tables */
    for (int r = 0; r < repeats; r++) {
        double t0 = now_ns();
        run_once(s, w, n);
        double dt = (now_ns() - t0) / (double)n;
        if (dt < best)
            best = dt;
    }
    return best;
}

static size_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long total = 0, resident = 0;
    if (f == NULL)
        return 0;
    if (fscanf(f, "%lu %lu", &total, &resident) != 2)
        resident = 0;
    fclose(f);
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

/* aligned_alloc + memset through a volatile pointer: the compiler may not fold the pair
 * into calloc, which would hand out lazily zeroed pages like the KV cache does. */
static void *(*volatile memset_fn)(void *, int, size_t) = memset;

static void bench_kv_cache(void)
{
    const size_t bytes = (size_t)4 << 30;
    const double mib = 1024.0 * 1024.0;

    q_context ctx = {0};
    size_t rss0 = rss_bytes();
    double t0 = now_ns();
    q_error_code err = q_alloc_kv_cache(&ctx, bytes);
    double q_ms = (now_ns() - t0) / 1e6;
    size_t rss1 = rss_bytes();
    if (err != Q_OK) {
        printf("kv cache 4 GiB: q_alloc_kv_cache failed: %s\n", q_strerror(err));
        return;
    }
    q_free_memory(&ctx);

    size_t rss2 = rss_bytes();
    t0 = now_ns();
    unsigned char *p = aligned_alloc(Q_ALIGN, bytes);
    if (p == NULL) {
        printf("kv cache 4 GiB: aligned_alloc failed\n");
        return;
    }
    memset_fn(p, 0, bytes);
    double m_ms = (now_ns() - t0) / 1e6;
    global_sink ^= p[bytes / 2];
    size_t rss3 = rss_bytes();
    free(p);

    printf("\n%-34s %12s %14s\n", "4 GiB KV cache", "time (ms)", "RSS growth (MiB)");
    printf("%-34s %12.3f %14.2f\n", "q_alloc_kv_cache (own mapping)", q_ms,
           (double)(rss1 > rss0 ? rss1 - rss0 : 0) / mib);
    printf("%-34s %12.3f %14.2f\n", "aligned_alloc + memset", m_ms,
           (double)(rss3 > rss2 ? rss3 - rss2 : 0) / mib);
    printf("%-34s %12.0fx\n", "speed-up", m_ms / (q_ms > 0 ? q_ms : 1e-9));
}

/* Runs this program again under LD_PRELOAD=libjemalloc.so.2 in --jemalloc-child mode;
 * returns 1 and its two figures (aligned, unaligned ns/op) on success. */
static int measure_jemalloc_in_child(size_t iterations, size_t repeats, double *aligned,
                                     double *unaligned)
{
    if (access("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", R_OK) != 0 &&
        access("/usr/lib/libjemalloc.so.2", R_OK) != 0)
        return 0;
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0)
        return 0;
    self[len] = '\0';
    char command[4400];
    snprintf(command, sizeof command,
             "LD_PRELOAD=libjemalloc.so.2 '%s' --jemalloc-child --iterations %zu --repeats %zu",
             self, iterations, repeats);
    FILE *child = popen(command, "r");
    if (child == NULL)
        return 0;
    int got = fscanf(child, "%lf %lf", aligned, unaligned);
    return pclose(child) == 0 && got == 2;
}

static void print_row(const char *name, double ns, double baseline)
{
    printf("%-34s %10.3f %10.2fx\n", name, ns, ns / baseline);
}

static int parse_size(const char *s, size_t *out)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v == 0)
        return 0;
    *out = (size_t)v;
    return 1;
}

int main(int argc, char **argv)
{
    size_t iterations = 20000000;
    size_t repeats = 5;
    const char *only = NULL;
    int with_kv = 1;
    int jemalloc_child = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--iterations") == 0 && i + 1 < argc && parse_size(argv[i + 1], &iterations))
            i++;
        else if (strcmp(argv[i], "--repeats") == 0 && i + 1 < argc && parse_size(argv[i + 1], &repeats))
            i++;
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
            only = argv[++i];
        else if (strcmp(argv[i], "--no-kv") == 0)
            with_kv = 0;
        else if (strcmp(argv[i], "--jemalloc-child") == 0)
            jemalloc_child = 1;
        else {
            fprintf(stderr, "usage: arena_bench [--iterations N] [--repeats R] [--only WORKLOAD] [--no-kv]\n");
            return 2;
        }
    }
    fill_size_tables();

    static bench_state s;
    if (q_alloc_arena(&s.ctx, ARENA_BYTES) != Q_OK) {
        fprintf(stderr, "arena_bench: cannot create the arena\n");
        return 1;
    }
    s.bump.base = aligned_alloc(Q_ALIGN, ARENA_BYTES);
    s.bump.size = ARENA_BYTES;
    if (s.bump.base == NULL)
        return 1;
    memset(s.bump.base, 0, ARENA_BYTES);

    if (jemalloc_child) { /* under LD_PRELOAD: print aligned and unaligned ns/op */
        *(void **)&je_mallocx = dlsym(RTLD_DEFAULT, "mallocx");
        *(void **)&je_dallocx = dlsym(RTLD_DEFAULT, "dallocx");
        if (je_mallocx == NULL || je_dallocx == NULL)
            return 1;
        heap_api je = {"jemalloc", jemalloc_alloc, jemalloc_release};
        s.heap = &je;
        double a = measure(&s, HEAP_ALIGNED, iterations / 4, (int)repeats);
        double u = measure(&s, HEAP_UNALIGNED, iterations / 4, (int)repeats);
        printf("%f %f\n", a, u);
        return 0;
    }

    if (only != NULL) { /* one workload, one pass: for callgrind */
        static const struct { const char *name; workload w; } named[] = {
            {"qorus-aligned", QORUS_ALIGNED}, {"bump-aligned", BUMP_ALIGNED},
            {"qorus-unaligned", QORUS_UNALIGNED}, {"bump-unaligned", BUMP_UNALIGNED},
            {"qorus-reset", QORUS_RESET},
        };
        for (size_t i = 0; i < sizeof named / sizeof named[0]; i++)
            if (strcmp(only, named[i].name) == 0) {
                run_once(&s, named[i].w, iterations);
                q_free_memory(&s.ctx);
                free(s.bump.base);
                return 0;
            }
        fprintf(stderr, "arena_bench: unknown workload '%s'\n", only);
        return 2;
    }

    int r = (int)repeats;
    printf("arena_bench: %zu operations per run, best of %d runs, reset every %d allocations\n",
           iterations, r, RESET_EVERY);
    printf("Q_ARENA_INSTRUMENTED=%d (0 = inline release fast path)\n\n", Q_ARENA_INSTRUMENTED);

    double bump_a = measure(&s, BUMP_ALIGNED, iterations, r);
    double qorus_a = measure(&s, QORUS_ALIGNED, iterations, r);
    double bump_u = measure(&s, BUMP_UNALIGNED, iterations, r);
    double qorus_u = measure(&s, QORUS_UNALIGNED, iterations, r);
    double reset = measure(&s, QORUS_RESET, iterations, r);

    heap_api heaps[3];
    size_t n_heaps = 0;
    heaps[n_heaps++] = (heap_api){"glibc malloc+free", malloc, free};
    void *mi = dlopen("libmimalloc.so.2", RTLD_NOW | RTLD_LOCAL);
    if (mi != NULL) {
        void *a = dlsym(mi, "mi_malloc"), *f = dlsym(mi, "mi_free");
        if (a != NULL && f != NULL)
            heaps[n_heaps++] = (heap_api){"mimalloc mi_malloc+mi_free", (void *(*)(size_t))a, (void (*)(void *))f};
    }
    double je_aligned = 0, je_unaligned = 0;
    int je = measure_jemalloc_in_child(iterations, repeats, &je_aligned, &je_unaligned);

    printf("%-34s %10s %11s\n", "aligned sizes (64..4096)", "ns/op", "vs bump");
    print_row("bump pointer (baseline)", bump_a, bump_a);
    print_row("q_arena_alloc", qorus_a, bump_a);
    double malloc_a = 0;
    for (size_t h = 0; h < n_heaps; h++) {
        s.heap = &heaps[h];
        double ns = measure(&s, HEAP_ALIGNED, iterations / 4, r);
        if (h == 0)
            malloc_a = ns;
        print_row(heaps[h].name, ns, bump_a);
    }
    if (je)
        print_row("jemalloc mallocx+dallocx", je_aligned, bump_a);
    printf("\n%-34s %10s %11s\n", "unaligned sizes (1..4096)", "ns/op", "vs bump");
    print_row("bump pointer (baseline)", bump_u, bump_u);
    print_row("q_arena_alloc", qorus_u, bump_u);
    for (size_t h = 0; h < n_heaps; h++) {
        s.heap = &heaps[h];
        print_row(heaps[h].name, measure(&s, HEAP_UNALIGNED, iterations / 4, r), bump_u);
    }
    if (je)
        print_row("jemalloc mallocx+dallocx", je_unaligned, bump_u);
    if (mi == NULL || !je)
        printf("(%s%s not installed: apt-get install libmimalloc2.0 libjemalloc2)\n",
               mi == NULL ? "mimalloc " : "", !je ? "jemalloc" : "");
    printf("\n%-34s %10.3f\n", "q_arena_reset (out-of-line call)", reset);
    printf("\nq_arena_alloc aligned: %.2fx the bump baseline, %.1fx faster than glibc malloc+free\n",
           qorus_a / bump_a, malloc_a / qorus_a);

    q_free_memory(&s.ctx);
    free(s.bump.base);
    if (with_kv)
        bench_kv_cache();
    return 0;
}
