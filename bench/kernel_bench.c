/*
 * kernel_bench: matmul speed of each kernel table, single thread, at the shapes of the 110M
 * TinyStories model (dim 768, hidden 2048, vocabulary 32000), for F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K and
 * Q8_SPLIT (group size 64) weights. Every optimized table this CPU runs
 * (q_kernels_optimized, best first: avx512, avx2) gets its own set of columns (dec-T, hot-T,
 * ratio-T, p32-T, p64-T, x-T), so one run compares them side by side with the reference
 * ("ref") and the plain read; a table absent here is noted and has no columns.
 *
 *   decode   one activation row (x->n_rows = 1): weight GB/s. The weights rotate through a
 *            pool larger than the caches (--pool-mb, default 320), as in a forward pass
 *            that streams every layer, so this is the memory-bound figure. "hot" repeats
 *            one matrix (cache-resident when it fits: the kernel's own ceiling).
 *   read     a plain read of the same bytes from the same pool (a 4-accumulator 64-bit
 *            integer sum, SSE2): the bandwidth the decode figure is compared with
 *            (ratio-T = dec-T / read).
 *   prefill  32 and 64 activation rows: GFLOP/s = 2 * rows * cols * n_rows / time;
 *            x-T = p64-T / p32-ref, the batched speed-up over the reference.
 *
 * Q8 types take int8 activations (quantize_q8 is done once, outside the timing). Every
 * figure is the best of --repeats runs (default 5) of at least --min-ms milliseconds
 * (default 40); the machine is shared, so take the ratios more seriously than the
 * absolute figures. --no-scalar skips the (slow) reference rows.
 *
 * For instruction counts (valgrind --tool=callgrind, repeatable where time is not):
 *   kernel_bench --count TYPE ROWS COLS NROWS CALLS [TABLE]
 * runs only CALLS matmuls of one shape (TYPE: f32, f16, bf16, q8_0, q4_0, q4_k, q5_k, q6_k, q8_split) on TABLE (scalar,
 * avx2, avx512; default: the best this CPU runs); divide the table's matmul's inclusive Ir
 * (q_avx2_matmul, q_avx512_matmul...) by CALLS * weight bytes. Valgrind's CPU has no
 * AVX-512 (its cpuid says so), so under callgrind the best table is avx2.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qorus_infer.h"
#include "qorus_kernels.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rng = 0x9E3779B97F4A7C15u;
static uint32_t next_u32(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}

static int repeats = 5;
static double min_s = 0.040;
static size_t pool_bytes = (size_t)320 << 20;
static unsigned char *pool; /* (pool_bytes) random bytes, weights are carved from it */

/* Sum of bytes [p, p + n) as 64-bit words (n a multiple of 64): the read baseline. */
static uint64_t read_sum(const unsigned char *p, size_t n)
{
#if defined(__SSE2__)
    __m128i a = _mm_setzero_si128(), b = a, c = a, d = a;
    for (size_t i = 0; i + 64 <= n; i += 64) {
        a = _mm_add_epi64(a, _mm_loadu_si128((const __m128i *)(const void *)(p + i)));
        b = _mm_add_epi64(b, _mm_loadu_si128((const __m128i *)(const void *)(p + i + 16)));
        c = _mm_add_epi64(c, _mm_loadu_si128((const __m128i *)(const void *)(p + i + 32)));
        d = _mm_add_epi64(d, _mm_loadu_si128((const __m128i *)(const void *)(p + i + 48)));
    }
    a = _mm_add_epi64(_mm_add_epi64(a, b), _mm_add_epi64(c, d));
    uint64_t lanes[2];
    _mm_storeu_si128((__m128i *)(void *)lanes, a);
    return lanes[0] + lanes[1];
#else
    uint64_t s[4] = {0, 0, 0, 0};
    for (size_t i = 0; i + 32 <= n; i += 32)
        for (int k = 0; k < 4; k++) {
            uint64_t v;
            memcpy(&v, p + i + 8 * (size_t)k, 8);
            s[k] += v;
        }
    return s[0] + s[1] + s[2] + s[3];
#endif
}

typedef struct shape {
    const char *name;
    size_t rows, cols;
} shape;

/* Bytes of a rows x cols tensor's data (and scales) */
static size_t data_bytes(q_tensor_type type, size_t count)
{
    switch (type) {
    case Q_TENSOR_F32:
        return count * 4;
    case Q_TENSOR_F16:
    case Q_TENSOR_BF16:
        return count * 2;
    case Q_TENSOR_Q8_0:
        return count / 32 * 34;
    case Q_TENSOR_Q4_0:
        return count / 32 * 18;
    case Q_TENSOR_Q4_K:
        return count / 256 * 144;
    case Q_TENSOR_Q5_K:
        return count / 256 * 176;
    case Q_TENSOR_Q6_K:
        return count / 256 * 210;
    case Q_TENSOR_Q8_SPLIT:
        return count + count / 64 * 4;
    }
    return 0;
}

/* True for the types whose matmul takes int8 activations (q_kernels_wants_q8 at these
 * shapes): the forward pass quantizes its activations for them, so the bench does too */
static int int8_type(q_tensor_type type)
{
    return type != Q_TENSOR_F32 && type != Q_TENSOR_F16 && type != Q_TENSOR_BF16;
}

/* The k-th copy of the weights in the pool (k wraps around). */
static q_tensor tensor_at(q_tensor_type type, size_t rows, size_t cols, size_t k)
{
    size_t bytes = data_bytes(type, rows * cols);
    size_t slots = pool_bytes / bytes;
    if (slots == 0)
        slots = 1;
    unsigned char *base = pool + (k % slots) * bytes;
    q_tensor t = {.type = type, .data = base, .scales = NULL, .rows = rows, .cols = cols,
                  .group_size = type == Q_TENSOR_Q8_SPLIT ? 64 : type == Q_TENSOR_Q6_K || type == Q_TENSOR_Q4_K ||
                                          type == Q_TENSOR_Q5_K
                                      ? 256
                                      : 32};
    if (type == Q_TENSOR_Q8_SPLIT)
        t.scales = base + rows * cols;
    return t;
}

/* Seconds per call, best of the repeats; hot: always copy 0. */
static double time_matmul(const q_kernels *k, q_tensor_type type, size_t rows, size_t cols,
                          const q_act *x, float *out, int hot)
{
    double best = 1e30;
    size_t copy = 1;
    for (int r = 0; r < repeats; r++) {
        size_t calls = 0;
        double t0 = now_s(), t1;
        do {
            q_tensor w = tensor_at(type, rows, cols, hot ? 0 : copy++);
            k->matmul(out, rows, &w, 0, rows, x);
            calls++;
            t1 = now_s();
        } while (t1 - t0 < min_s);
        double per = (t1 - t0) / (double)calls;
        if (per < best)
            best = per;
    }
    return best;
}

static double time_read(size_t bytes)
{
    double best = 1e30;
    size_t slots = pool_bytes / bytes, copy = 1;
    volatile uint64_t sink = 0;
    for (int r = 0; r < repeats; r++) {
        size_t calls = 0;
        double t0 = now_s(), t1;
        do {
            sink += read_sum(pool + (copy++ % slots) * bytes, bytes & ~(size_t)63);
            calls++;
            t1 = now_s();
        } while (t1 - t0 < min_s);
        double per = (t1 - t0) / (double)calls;
        if (per < best)
            best = per;
    }
    (void)sink;
    return best;
}

/* --count: a fixed number of calls, nothing timed. */
static int count_mode(int argc, char **argv)
{
    if (argc < 7)
        return 2;
    static const char *names[] = {"f32",  "f16",  "bf16", "q8_0",    "q4_0",
                                  "q4_k", "q5_k", "q6_k", "q8_split"};
    static const q_tensor_type tys[] = {Q_TENSOR_F32,  Q_TENSOR_F16,  Q_TENSOR_BF16,
                                        Q_TENSOR_Q8_0, Q_TENSOR_Q4_0, Q_TENSOR_Q4_K,
                                        Q_TENSOR_Q5_K, Q_TENSOR_Q6_K, Q_TENSOR_Q8_SPLIT};
    int ti = -1;
    for (int k = 0; k < 9; k++)
        if (strcmp(argv[2], names[k]) == 0)
            ti = k;
    size_t rows = (size_t)atol(argv[3]), cols = (size_t)atol(argv[4]),
           nt = (size_t)atol(argv[5]), calls = (size_t)atol(argv[6]);
    if (ti < 0 || rows == 0 || cols == 0 || cols % 32 != 0 || nt == 0 ||
        ((tys[ti] == Q_TENSOR_Q6_K || tys[ti] == Q_TENSOR_Q4_K || tys[ti] == Q_TENSOR_Q5_K) &&
         cols % 256 != 0))
        return 2;
    const q_kernels *k = q_kernels_select(); /* the best, unless QORUS_KERNELS says */
    if (argc > 7) {
        k = strcmp(argv[7], "scalar") == 0   ? q_kernels_scalar()
            : strcmp(argv[7], "avx2") == 0   ? q_kernels_avx2()
            : strcmp(argv[7], "avx512") == 0 ? q_kernels_avx512()
                                             : NULL;
        if (k == NULL) {
            fprintf(stderr, "kernel_bench: no table \"%s\" on this CPU/build\n", argv[7]);
            return 1;
        }
    }
    pool_bytes = data_bytes(tys[ti], rows * cols);
    pool = malloc(pool_bytes);
    float *xf = malloc(nt * cols * sizeof(float));      /* (nt, cols) */
    int8_t *xq = malloc(nt * cols);                     /* (nt, cols) */
    float *xd = malloc(nt * cols / 32 * sizeof(float)); /* (nt, cols/32) */
    float *out = malloc(nt * rows * sizeof(float));     /* (nt, rows) */
    for (size_t i = 0; i < pool_bytes; i++)
        pool[i] = (unsigned char)(0x20 + next_u32() % 16); /* normal, finite in every view */
    for (size_t e = 0; e < nt * cols; e++)
        xf[e] = (float)next_u32() / 4294967296.0f - 0.5f;
    q_kernels_scalar()->quantize_q8(xq, xd, xf, nt * cols);
    int q8 = int8_type(tys[ti]);
    q_act x = {.f = xf, .q = q8 ? xq : NULL, .d = q8 ? xd : NULL, .cols = cols, .n_rows = nt};
    q_tensor w = tensor_at(tys[ti], rows, cols, 0);
    for (size_t c = 0; c < calls; c++)
        k->matmul(out, rows, &w, 0, rows, &x);
    printf("%s %s %zux%zu n_rows %zu: %zu calls, %zu weight bytes per call (checksum %g)\n",
           k->name, names[ti], rows, cols, nt, calls, pool_bytes, (double)out[0]);
    free(xf);
    free(xq);
    free(xd);
    free(out);
    free(pool);
    return 0;
}

int main(int argc, char **argv)
{
    int scalar = 1;
    if (argc > 1 && strcmp(argv[1], "--count") == 0) {
        int rc = count_mode(argc, argv);
        if (rc == 2)
            fprintf(stderr, "usage: kernel_bench --count f32|f16|bf16|q8_0|q4_0|q4_k|q5_k|q6_k|q8_split ROWS COLS NROWS CALLS "
                            "[scalar|avx2|avx512]\n");
        return rc;
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--no-scalar") == 0)
            scalar = 0;
        else if (strcmp(argv[i], "--repeats") == 0 && i + 1 < argc)
            repeats = atoi(argv[++i]);
        else if (strcmp(argv[i], "--min-ms") == 0 && i + 1 < argc)
            min_s = atof(argv[++i]) / 1000.0;
        else if (strcmp(argv[i], "--pool-mb") == 0 && i + 1 < argc)
            pool_bytes = (size_t)atol(argv[++i]) << 20;
        else {
            fprintf(stderr, "usage: kernel_bench [--no-scalar] [--repeats R] [--min-ms MS] [--pool-mb MB]\n");
            return 2;
        }
    }
    if (repeats < 1)
        repeats = 1;
    /* the optimized tables, best first: one column set each */
    const q_kernels *opt[4];
    size_t n_opt = q_kernels_optimized(opt, 4);
    if (n_opt > 4)
        n_opt = 4;
    if (q_kernels_avx512() == NULL)
        printf("kernel_bench: no AVX-512 table on this CPU/build: no avx512 columns\n");
    if (q_kernels_avx2() == NULL)
        printf("kernel_bench: no AVX2 table on this CPU/build: no avx2 columns\n");

    pool = malloc(pool_bytes);
    if (pool == NULL) {
        fprintf(stderr, "kernel_bench: cannot allocate the %zu MiB pool\n", pool_bytes >> 20);
        return 1;
    }
    /* every 16-bit word a normal binary16 of magnitude in [2^-7, 2^-1) (exponent 8..14,
     * random sign and mantissa); read as float32, a word pair is then a normal float of
     * magnitude in [2^-63, 2^-8): no denormals (slow assists), Inf or NaN in any view;
     * as int8 the bytes are varied enough */
    for (size_t i = 0; i + 4 <= pool_bytes; i += 4) {
        uint32_t r = next_u32();
        uint16_t h[2];
        for (int k = 0; k < 2; k++) {
            uint32_t e = 8u + (r >> (16 * k)) % 7u;
            h[k] = (uint16_t)(((r >> (16 * k + 3)) & 0x83FFu) | (e << 10));
        }
        memcpy(pool + i, h, 4);
    }

    static const shape shapes[] = {
        {"768x768 (wq)", 768, 768},
        {"2048x768 (w1)", 2048, 768},
        {"768x2048 (w2)", 768, 2048},
        {"32000x768 (cls)", 32000, 768},
    };
    static const q_tensor_type types[] = {Q_TENSOR_F32,  Q_TENSOR_F16,  Q_TENSOR_BF16,
                                          Q_TENSOR_Q8_0, Q_TENSOR_Q4_0, Q_TENSOR_Q4_K,
                                          Q_TENSOR_Q5_K, Q_TENSOR_Q6_K, Q_TENSOR_Q8_SPLIT};
    static const char *type_names[] = {"F32",  "F16",  "BF16", "Q8_0",    "Q4_0",
                                       "Q4_K", "Q5_K", "Q6_K", "Q8_SPLIT"};

    size_t max_cols = 2048, max_nt = 64, max_rows = 32000;
    float *xf = malloc(max_nt * max_cols * sizeof(float));      /* (64, 2048) */
    int8_t *xq = malloc(max_nt * max_cols);                     /* (64, 2048) */
    float *xd = malloc(max_nt * max_cols / 32 * sizeof(float)); /* (64, 2048/32) */
    float *out = malloc(max_nt * max_rows * sizeof(float));     /* (64, 32000) */
    for (size_t e = 0; e < max_nt * max_cols; e++)
        xf[e] = (float)next_u32() / 4294967296.0f - 0.5f;

    printf("single thread; best of %d runs of >= %.0f ms; weight pool %zu MiB (noisy shared machine)\n",
           repeats, min_s * 1000.0, pool_bytes >> 20);
    /* header: decode columns (GB/s), then prefill columns (GFLOP/s), a set per table */
    char col[32];
    printf("%-9s %-16s %9s | %8s %8s |", "type", "shape", "MB", "read", "dec-ref");
    for (size_t k = 0; k < n_opt; k++) {
        const char *parts[3] = {"dec", "hot", "ratio"};
        for (int p = 0; p < 3; p++) {
            snprintf(col, sizeof col, "%s-%s", parts[p], opt[k]->name);
            printf(" %11s", col);
        }
        printf(" |");
    }
    printf(" %9s |", "p32-ref");
    for (size_t k = 0; k < n_opt; k++) {
        const char *parts[3] = {"p32", "p64", "x"};
        for (int p = 0; p < 3; p++) {
            snprintf(col, sizeof col, "%s-%s", parts[p], opt[k]->name);
            printf(" %11s", col);
        }
        printf(" |");
    }
    printf("\n%-9s %-16s %9s | %8s %8s |", "", "", "", "GB/s", "GB/s");
    for (size_t k = 0; k < n_opt; k++)
        printf(" %11s %11s %11s |", "GB/s", "GB/s", "dec/read");
    printf(" %9s |", "GFLOP/s");
    for (size_t k = 0; k < n_opt; k++)
        printf(" %11s %11s %11s |", "GFLOP/s", "GFLOP/s", "p64/p32ref");
    printf("\n");
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            q_tensor_type type = types[ti];
            size_t rows = shapes[si].rows, cols = shapes[si].cols;
            size_t bytes = data_bytes(type, rows * cols);
            int q8 = int8_type(type);
            if (q8) /* bitwise the same in every table: the reference's will do */
                q_kernels_scalar()->quantize_q8(xq, xd, xf, max_nt * cols);
            q_act x1 = {.f = xf, .q = q8 ? xq : NULL, .d = q8 ? xd : NULL, .cols = cols,
                        .n_rows = 1};
            q_act x32 = x1, x64 = x1;
            x32.n_rows = 32;
            x64.n_rows = 64;
            double flop32 = 2.0 * (double)rows * (double)cols * 32.0;
            double gb = (double)bytes * 1e-9;
            double rd = gb / time_read(bytes);
            double dec_ref = scalar ? gb / time_matmul(q_kernels_scalar(), type, rows, cols, &x1, out, 0) : 0;
            printf("%-9s %-16s %9.2f | %8.2f %8.2f |", type_names[ti], shapes[si].name,
                   (double)bytes / 1e6, rd, dec_ref);
            fflush(stdout);
            for (size_t k = 0; k < n_opt; k++) {
                double dec = gb / time_matmul(opt[k], type, rows, cols, &x1, out, 0);
                double hot = gb / time_matmul(opt[k], type, rows, cols, &x1, out, 1);
                printf(" %11.2f %11.2f %11.2f |", dec, hot, rd > 0 ? dec / rd : 0);
                fflush(stdout);
            }
            double p32_ref = 0;
            if (scalar && rows <= 2048) /* the classifier at 32 tokens takes seconds */
                p32_ref = flop32 * 1e-9 / time_matmul(q_kernels_scalar(), type, rows, cols, &x32, out, 0);
            printf(" %9.2f |", p32_ref);
            for (size_t k = 0; k < n_opt; k++) {
                double p32 = flop32 * 1e-9 / time_matmul(opt[k], type, rows, cols, &x32, out, 0);
                double p64 = 2 * flop32 * 1e-9 / time_matmul(opt[k], type, rows, cols, &x64, out, 0);
                printf(" %11.2f %11.2f %10.1fx |", p32, p64, p32_ref > 0 ? p64 / p32_ref : 0);
                fflush(stdout);
            }
            printf("\n");
            fflush(stdout);
        }
    }
    free(xf);
    free(xq);
    free(xd);
    free(out);
    free(pool);
    return 0;
}
