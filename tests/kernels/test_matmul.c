/*
 * quantize_q8 and matmul: every optimized table this CPU runs (q_kernels_optimized: AVX-512,
 * AVX2) against the scalar reference, every table against a double-precision oracle, and
 * the determinism rule for every table. A table absent here is skipped with a note.
 *
 * Error bound (each optimized table vs reference, and vs the double oracle), per output
 * element:
 *
 *     |a - b| <= 4 * n * FLT_EPSILON * S + n * FLT_MIN,   S = sum_j |w_j * x_j|
 *
 * Derivation: with u = FLT_EPSILON / 2 the unit roundoff, a float sum of m terms in any order
 * (products rounded once, or fused into an FMA) differs from the exact sum by at most
 * gamma_m * S, gamma_m = m u / (1 - m u) ~ m u. The reference sums n products in index order:
 * m <= 2n (a product and an add per term). The AVX2 kernels keep 8 lanes of n/8 (+1 tail)
 * FMAs each, then 3 adds of the horizontal reduction: m <= n/8 + 4; the AVX-512 kernels
 * keep 16 lanes (n/16 + 1 FMAs, 4 adds: m <= n/16 + 5), and their int8 outputs add the
 * blocks one after the other with one FMA each (m <= n/32 + 2). The difference of two such
 * results is at most (2n + n/8 + 4) u S < 4 n FLT_EPSILON S for n >= 1. For the int8
 * path the terms are (float)(exact int32 block sum) * (weight scale * activation scale):
 * the scale product is the same float in every table, the int sums are exact, so the same
 * bound holds with S = sum_b |isum_b| * |scale_b| <= sum_j |w_j x_j| * |scale|. The
 * n * FLT_MIN term covers underflow of tiny products (denormal results lose the relative
 * bound). The double oracle sums the same float products exactly enough (53-bit) to count
 * as exact.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "kernels/kernels_internal.h"
#include "qorus_infer.h"
#include "qorus_kernels.h"

static uint64_t rng = 0x243F6A8885A308D3u;

static uint32_t next_u32(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}

/* uniform in [-1, 1) */
static float next_f(void)
{
    return (float)next_u32() / 2147483648.0f - 1.0f;
}

static const q_tensor_type all_types[] = {Q_TENSOR_F32,  Q_TENSOR_F16,  Q_TENSOR_BF16,
                                          Q_TENSOR_Q8_0, Q_TENSOR_Q4_0, Q_TENSOR_Q8_SPLIT};
/* Q4_K, Q5_K and Q6_K need rows of whole 256-weight super-blocks: their own shapes below */
static const char *type_name(q_tensor_type t)
{
    switch (t) {
    case Q_TENSOR_F32:
        return "F32";
    case Q_TENSOR_F16:
        return "F16";
    case Q_TENSOR_BF16:
        return "BF16";
    case Q_TENSOR_Q8_0:
        return "Q8_0";
    case Q_TENSOR_Q4_0:
        return "Q4_0";
    case Q_TENSOR_Q4_K:
        return "Q4_K";
    case Q_TENSOR_Q5_K:
        return "Q5_K";
    case Q_TENSOR_Q6_K:
        return "Q6_K";
    case Q_TENSOR_Q8_SPLIT:
        return "Q8_SPLIT";
    }
    return "?";
}

/* A weight tensor in a malloc'ed buffer at byte offset `off` (misaligned on purpose). */
typedef struct wbuf {
    unsigned char *mem;    /* data + scales, both misaligned by off */
    q_tensor t;
} wbuf;

static void wbuf_make(wbuf *b, q_tensor_type type, size_t rows, size_t cols, size_t gs,
                      size_t off)
{
    size_t count = rows * cols, data_bytes = 0, scale_bytes = 0;
    switch (type) {
    case Q_TENSOR_F32:
        data_bytes = count * 4;
        break;
    case Q_TENSOR_F16:
    case Q_TENSOR_BF16:
        data_bytes = count * 2;
        break;
    case Q_TENSOR_Q8_0:
        data_bytes = count / 32 * Q_Q8_0_BLOCK_BYTES;
        gs = 32;
        break;
    case Q_TENSOR_Q4_0:
        data_bytes = count / 32 * Q_Q4_0_BLOCK_BYTES;
        gs = 32;
        break;
    case Q_TENSOR_Q4_K:
        data_bytes = count / 256 * Q_Q4_K_BLOCK_BYTES;
        gs = 256;
        break;
    case Q_TENSOR_Q5_K:
        data_bytes = count / 256 * Q_Q5_K_BLOCK_BYTES;
        gs = 256;
        break;
    case Q_TENSOR_Q6_K:
        data_bytes = count / 256 * Q_Q6_K_BLOCK_BYTES;
        gs = 256;
        break;
    case Q_TENSOR_Q8_SPLIT:
        data_bytes = count;
        scale_bytes = count / gs * 4;
        break;
    }
    b->mem = malloc(data_bytes + scale_bytes + 2 * 64);
    unsigned char *data = b->mem + off;
    unsigned char *scales = data + data_bytes + 64 - off % 64 + (off * 7) % 63;
    switch (type) {
    case Q_TENSOR_F32:
        for (size_t e = 0; e < count; e++) {
            float f = next_f();
            memcpy(data + e * 4, &f, 4);
        }
        break;
    case Q_TENSOR_F16:
        for (size_t e = 0; e < count; e++) {
            uint16_t h = q_f32_to_f16(next_f() * 2.0f);
            memcpy(data + e * 2, &h, 2);
        }
        break;
    case Q_TENSOR_BF16:
        for (size_t e = 0; e < count; e++) {
            uint16_t h = q_f32_to_bf16(next_f() * 2.0f);
            memcpy(data + e * 2, &h, 2);
        }
        break;
    case Q_TENSOR_Q8_0:
        for (size_t k = 0; k < count / 32; k++) {
            unsigned char *blk = data + k * Q_Q8_0_BLOCK_BYTES;
            uint16_t h = q_f32_to_f16(next_f() * 0.05f);
            memcpy(blk, &h, 2);
            for (size_t j = 0; j < 32; j++)
                blk[2 + j] = (unsigned char)next_u32(); /* any byte, -128 included */
        }
        break;
    case Q_TENSOR_Q4_0:
        for (size_t k = 0; k < count / 32; k++) {
            unsigned char *blk = data + k * Q_Q4_0_BLOCK_BYTES;
            uint16_t h = q_f32_to_f16(next_f() * 0.3f);
            memcpy(blk, &h, 2);
            for (size_t j = 0; j < 16; j++)
                blk[2 + j] = (unsigned char)next_u32(); /* any two codes, -8 and 7 included */
        }
        break;
    case Q_TENSOR_Q6_K: /* any code bits and any int8 scales (-128 included), a small d */
        for (size_t k = 0; k < count / 256; k++) {
            unsigned char *blk = data + k * Q_Q6_K_BLOCK_BYTES;
            for (size_t j = 0; j < Q_Q6_K_D; j++)
                blk[j] = (unsigned char)next_u32();
            uint16_t h = q_f32_to_f16(next_f() * 0.002f);
            memcpy(blk + Q_Q6_K_D, &h, 2);
        }
        break;
    case Q_TENSOR_Q4_K:
    case Q_TENSOR_Q5_K: { /* any scale, min and code bits; small d and dmin of either sign */
        size_t bb = type == Q_TENSOR_Q4_K ? Q_Q4_K_BLOCK_BYTES : Q_Q5_K_BLOCK_BYTES;
        for (size_t k = 0; k < count / 256; k++) {
            unsigned char *blk = data + k * bb;
            for (size_t j = 4; j < bb; j++)
                blk[j] = (unsigned char)next_u32();
            uint16_t h[2] = {q_f32_to_f16(next_f() * 0.004f), q_f32_to_f16(next_f() * 0.02f)};
            memcpy(blk, h, 4);
        }
        break;
    }
    case Q_TENSOR_Q8_SPLIT:
        for (size_t e = 0; e < count; e++)
            data[e] = (unsigned char)next_u32();
        for (size_t g = 0; g < count / gs; g++) {
            float f = next_f() * 0.02f;
            memcpy(scales + g * 4, &f, 4);
        }
        break;
    }
    b->t = (q_tensor){.type = type, .data = data,
                      .scales = type == Q_TENSOR_Q8_SPLIT ? scales : NULL,
                      .rows = rows, .cols = cols, .group_size = gs};
}

/* Activations: n_rows x cols floats, and their quantized form when cols % 32 == 0. */
typedef struct abuf {
    float *f;    /* (n_rows, cols) */
    int8_t *q;   /* (n_rows, cols) */
    float *d;    /* (n_rows, cols / 32) */
    q_act a;
} abuf;

static void abuf_make(abuf *b, size_t n_rows, size_t cols, int raw_int8)
{
    b->f = malloc(n_rows * cols * sizeof(float) + 1);
    b->q = malloc(n_rows * cols + 1);
    b->d = malloc(n_rows * (cols / 32) * sizeof(float) + 1);
    for (size_t e = 0; e < n_rows * cols; e++)
        b->f[e] = next_f();
    int quant = cols % 32 == 0;
    if (quant)
        q_kernels_scalar()->quantize_q8(b->q, b->d, b->f, n_rows * cols);
    if (quant && raw_int8) /* any int8, -128 included, in the first row */
        for (size_t j = 0; j < cols; j++)
            b->q[j] = (int8_t)(uint8_t)next_u32();
    b->a = (q_act){.f = b->f, .q = quant ? b->q : NULL, .d = quant ? b->d : NULL,
                   .cols = cols, .n_rows = n_rows};
}

static void abuf_free(abuf *b)
{
    free(b->f);
    free(b->q);
    free(b->d);
}

/* Value of weight (i, j) and of its scale factor as the reference sees them (for S). */
static double weight_at(const q_tensor *w, size_t i, size_t j, int use_int, double *scale)
{
    const unsigned char *base = (const unsigned char *)w->data;
    size_t n = w->cols, e = i * n + j;
    *scale = 1.0;
    switch (w->type) {
    case Q_TENSOR_F32:
        return q_load_f32(base + e * 4);
    case Q_TENSOR_F16:
        return q_load_f16(base + e * 2);
    case Q_TENSOR_BF16:
        return q_load_bf16(base + e * 2);
    case Q_TENSOR_Q8_0: {
        const unsigned char *blk = base + (i * (n / 32) + j / 32) * Q_Q8_0_BLOCK_BYTES;
        *scale = q_load_f16(blk);
        return (int8_t)blk[2 + j % 32];
    }
    case Q_TENSOR_Q4_0: {
        const unsigned char *blk = base + (i * (n / 32) + j / 32) * Q_Q4_0_BLOCK_BYTES;
        *scale = q_load_f16(blk);
        unsigned char b = blk[2 + j % 16];
        return (j % 32 < 16 ? b & 15 : b >> 4) - 8;
    }
    case Q_TENSOR_Q6_K: { /* the integer scale * code; d is the scale */
        const unsigned char *blk = base + (i * (n / 256) + j / 256) * Q_Q6_K_BLOCK_BYTES;
        size_t jj = j % 256, h = jj / 128, q = jj % 128 / 32, l = jj % 32;
        unsigned lo = blk[64 * h + 32 * (q % 2) + l];
        lo = q < 2 ? lo & 15 : lo >> 4;
        int code = (int)(lo | ((blk[128 + 32 * h + l] >> (2 * q)) & 3u) << 4) - 32;
        *scale = q_load_f16(blk + Q_Q6_K_D);
        return (double)((int8_t)blk[Q_Q6_K_SCALES + jj / 16] * code);
    }
    case Q_TENSOR_Q4_K:
    case Q_TENSOR_Q5_K: /* two terms: k_terms */
        return 0.0;
    case Q_TENSOR_Q8_SPLIT:
        *scale = q_load_f32((const unsigned char *)w->scales + e / w->group_size * 4);
        return (int8_t)base[e];
    }
    (void)use_int;
    return 0.0;
}

/* Weight (i, j) of a Q4_K / Q5_K tensor as its two terms, read field by field here:
 * value = a * a_scale - b * b_scale with a = scale * code (integer), a_scale = d,
 * b = min (integer), b_scale = dmin. */
static void k_terms(const q_tensor *w, size_t i, size_t j, double *a, double *a_scale,
                    double *b, double *b_scale)
{
    int q5 = w->type == Q_TENSOR_Q5_K;
    size_t bb = q5 ? Q_Q5_K_BLOCK_BYTES : Q_Q4_K_BLOCK_BYTES, n = w->cols;
    const unsigned char *blk =
        (const unsigned char *)w->data + (i * (n / 256) + j / 256) * bb;
    size_t jj = j % 256, s = jj / 32, l = jj % 32;
    const unsigned char *scales = blk + 4;
    unsigned sc, m;
    if (s < 4) {
        sc = scales[s] & 63u;
        m = scales[s + 4] & 63u;
    } else {
        sc = (scales[s + 4] & 15u) | (unsigned)(scales[s - 4] >> 6) << 4;
        m = (unsigned)(scales[s + 4] >> 4) | (unsigned)(scales[s] >> 6) << 4;
    }
    unsigned byte = blk[(q5 ? 48 : 16) + 32 * (s / 2) + l];
    unsigned code = s % 2 == 0 ? byte & 15u : byte >> 4;
    if (q5)
        code |= ((blk[16 + l] >> s) & 1u) << 4;
    *a = (double)(sc * code);
    *a_scale = q_load_f16(blk);
    *b = (double)m;
    *b_scale = q_load_f16(blk + 2);
}

/* Oracle (double) for out[t][i] and the bound's S. */
static double oracle(const q_tensor *w, size_t i, const q_act *x, size_t t, double *s_abs)
{
    int use_int = x->q != NULL && q_kernels_wants_q8(w);
    size_t n = w->cols;
    double sum = 0.0, sabs = 0.0;
    int kmin = w->type == Q_TENSOR_Q4_K || w->type == Q_TENSOR_Q5_K;
    for (size_t j = 0; j < n; j++) {
        if (kmin) { /* a term per part: a * d * x and -b * dmin * x */
            double a, as, b, bs, xv;
            float sa, sb;
            k_terms(w, i, j, &a, &as, &b, &bs);
            if (use_int) {
                float xd = x->d[t * (n / 32) + j / 32];
                sa = (float)as * xd;
                sb = (float)bs * xd;
                xv = x->q[t * n + j];
            } else {
                sa = (float)as;
                sb = (float)bs;
                xv = x->f[t * n + j];
            }
            double ta = a * xv * (double)sa, tb = -b * xv * (double)sb;
            sum += ta + tb;
            sabs += fabs(ta) + fabs(tb);
            continue;
        }
        double ws, wv = weight_at(w, i, j, use_int, &ws), term;
        if (use_int) {
            /* (float)isum * (float)(ws * xd): the scale product is a float in every table */
            float sc = (float)ws * x->d[t * (n / 32) + j / 32];
            term = wv * (double)x->q[t * n + j] * (double)sc;
        } else {
            term = wv * ws * (double)x->f[t * n + j];
        }
        sum += term;
        sabs += fabs(term);
    }
    *s_abs = sabs;
    return sum;
}

static int within(double a, double b, size_t n, double s_abs)
{
    double bound = 4.0 * (double)n * FLT_EPSILON * s_abs + (double)n * FLT_MIN;
    return fabs(a - b) <= bound;
}

/* Compares table k against the oracle (and, when ref != NULL, against the reference
 * output ref_out), and checks the determinism rule for k. */
static int matmul_case(const q_kernels *k, const q_tensor *w, const q_act *x, float *ref_out)
{
    size_t rows = w->rows, nt = x->n_rows, n = w->cols, ostride = rows + 3;
    size_t obytes = nt * ostride * sizeof(float);
    float *all = malloc(obytes), *by_row = malloc(obytes), *by_tok = malloc(obytes),
          *split = malloc(obytes);
    memset(all, 0, obytes);
    memset(by_row, 0, obytes);
    memset(by_tok, 0, obytes);
    memset(split, 0, obytes);
    int fails = 0;

    k->matmul(all, ostride, w, 0, rows, x);
    for (size_t i = 0; i < rows; i++) /* one row at a time */
        k->matmul(by_row, ostride, w, i, i + 1, x);
    for (size_t t = 0; t < nt; t++) { /* one token at a time */
        q_act one = *x;
        one.f = x->f + t * n;
        one.q = x->q != NULL ? x->q + t * n : NULL;
        one.d = x->d != NULL ? x->d + t * (n / 32) : NULL;
        one.n_rows = 1;
        k->matmul(by_tok + t * ostride, ostride, w, 0, rows, &one);
    }
    size_t cut = rows / 3; /* uneven thread-like chunks */
    k->matmul(split, ostride, w, 0, cut, x);
    k->matmul(split, ostride, w, cut, rows, x);
    for (size_t t = 0; t < nt; t++) {
        size_t o = t * ostride;
        if (memcmp(all + o, by_row + o, rows * sizeof(float)) != 0 ||
            memcmp(all + o, by_tok + o, rows * sizeof(float)) != 0 ||
            memcmp(all + o, split + o, rows * sizeof(float)) != 0) {
            fprintf(stderr, "  %s %s determinism: rows %zu cols %zu n_rows %zu token %zu\n",
                    k->name, type_name(w->type), rows, n, nt, t);
            fails++;
        }
        for (size_t i = 0; i < rows; i++) {
            double s_abs, want = oracle(w, i, x, t, &s_abs);
            float got = all[o + i];
            if (!within(got, want, n, s_abs)) {
                fprintf(stderr, "  %s %s vs oracle: rows %zu cols %zu n_rows %zu (%zu,%zu): %.9g vs %.9g\n",
                        k->name, type_name(w->type), rows, n, nt, t, i, (double)got, want);
                fails++;
            }
            if (ref_out != NULL && !within(got, ref_out[o + i], n, s_abs)) {
                fprintf(stderr, "  %s %s vs reference: rows %zu cols %zu n_rows %zu (%zu,%zu): %.9g vs %.9g\n",
                        k->name, type_name(w->type), rows, n, nt, t, i, (double)got,
                        (double)ref_out[o + i]);
                fails++;
            }
        }
        /* nothing written outside [0, rows) of the row */
        for (size_t i = rows; i < ostride; i++)
            if (all[o + i] != 0.0f)
                fails++;
    }
    free(all);
    free(by_row);
    free(by_tok);
    free(split);
    return fails;
}

/* The optimized tables this CPU runs (q_kernels_optimized), filled once by main. */
static const q_kernels *opt[4];
static size_t n_opt;

/* Runs one shape for the reference and every optimized table. */
static void run_shape(q_tensor_type type, size_t rows, size_t cols, size_t gs, size_t nt,
                      size_t off, int use_q, int raw_int8)
{
    wbuf wb;
    wbuf_make(&wb, type, rows, cols, gs, off);
    abuf ab;
    abuf_make(&ab, nt, cols, raw_int8);
    if (!use_q) {
        ab.a.q = NULL;
        ab.a.d = NULL;
    }
    size_t ostride = rows + 3;
    float *ref = malloc(nt * ostride * sizeof(float));
    memset(ref, 0, nt * ostride * sizeof(float));
    q_kernels_scalar()->matmul(ref, ostride, &wb.t, 0, rows, &ab.a);
    CHECK(matmul_case(q_kernels_scalar(), &wb.t, &ab.a, NULL) == 0);
    for (size_t k = 0; k < n_opt; k++)
        CHECK(matmul_case(opt[k], &wb.t, &ab.a, ref) == 0);
    free(ref);
    abuf_free(&ab);
    free(wb.mem);
}

static void test_matmul_shapes(void)
{
    static const size_t float_cols[] = {1, 7, 8, 9, 16, 33, 96, 172, 256};
    static const size_t q_cols[] = {32, 64, 96, 160, 288};
    static const size_t nts[] = {1, 2, 3, 4, 5, 6, 7, 64};
    size_t case_no = 0;
    for (size_t ti = 0; ti < sizeof all_types / sizeof all_types[0]; ti++) {
        q_tensor_type type = all_types[ti];
        int is_float = type == Q_TENSOR_F32 || type == Q_TENSOR_F16 || type == Q_TENSOR_BF16;
        const size_t *cols_list = is_float ? float_cols : q_cols;
        size_t n_cols = is_float ? sizeof float_cols / sizeof float_cols[0]
                                 : sizeof q_cols / sizeof q_cols[0];
        for (size_t rows = 1; rows <= 9; rows++)
            for (size_t ci = 0; ci < n_cols; ci++)
                for (size_t ni = 0; ni < sizeof nts / sizeof nts[0]; ni++) {
                    size_t cols = cols_list[ci], nt = nts[ni];
                    if (nt == 64 && rows % 4 != 1) /* keep the big batches few */
                        continue;
                    size_t off = case_no++ % 64; /* 0 (aligned) .. 63 */
                    size_t gs = 32;
                    if (type == Q_TENSOR_Q8_SPLIT) {
                        /* groups that straddle rows (gs 64 with cols 32/96/160), and
                         * 96 = 3 blocks; must divide rows*cols */
                        static const size_t gss[] = {32, 64, 96, 128};
                        gs = gss[case_no % 4];
                        if ((rows * cols) % gs != 0)
                            gs = 32;
                    }
                    run_shape(type, rows, cols, gs, nt, off, 1, 0);
                    if (!is_float && nt <= 3) {
                        run_shape(type, rows, cols, gs, nt, off, 0, 0); /* float activations */
                        run_shape(type, rows, cols, gs, nt, off, 1, 1); /* raw int8, -128 */
                    }
                }
    }
    /* Q8_SPLIT with a group size not a multiple of 32: float path (the reference) */
    run_shape(Q_TENSOR_Q8_SPLIT, 3, 96, 48, 4, 5, 1, 0);
    run_shape(Q_TENSOR_Q8_SPLIT, 5, 64, 20, 2, 9, 1, 0);
    /* Q8_SPLIT scales read per chunk of 8 blocks (matmul_avx2.c q_split_scales8): groups of
     * 1, 2, 4 blocks aligned or not with the chunks (odd rows of 9 or 10 blocks), groups of
     * 8, 12, 16, 24, 48 blocks ending inside a chunk or at its end, and the one-at-a-time
     * layouts (3, 5 blocks); decode (8x1 tiles and their 4x1 / 1x1 edges) and prefill */
    {
        static const struct { size_t rows, cols, gs; } sp[] = {
            {13, 768, 32},  {13, 768, 64},  {13, 768, 128}, {13, 768, 256}, {13, 768, 384},
            {14, 768, 512}, {13, 768, 768}, {14, 768, 1536}, {13, 768, 96},  {5, 768, 160},
            {12, 288, 64},  {12, 288, 128}, {8, 288, 256},  {16, 288, 512}, {9, 320, 64},
            {12, 320, 128}, {9, 320, 160},  {12, 320, 384}, {11, 2048, 2048}, {17, 256, 544},
        };
        for (size_t k = 0; k < sizeof sp / sizeof sp[0]; k++) {
            if ((sp[k].rows * sp[k].cols) % sp[k].gs != 0) {
                fprintf(stderr, "  bad split shape %zu\n", k);
                CHECK(0);
                continue;
            }
            run_shape(Q_TENSOR_Q8_SPLIT, sp[k].rows, sp[k].cols, sp[k].gs, 1, k % 64, 1, 0);
            run_shape(Q_TENSOR_Q8_SPLIT, sp[k].rows, sp[k].cols, sp[k].gs, 6, (k * 7) % 64, 1,
                      0);
        }
        run_shape(Q_TENSOR_Q8_0, 19, 768, 32, 1, 5, 1, 0);
        run_shape(Q_TENSOR_Q8_0, 19, 320, 32, 2, 7, 1, 0);
    }
    /* model-like shapes, a few tokens */
    run_shape(Q_TENSOR_F32, 67, 768, 32, 7, 13, 1, 0);
    run_shape(Q_TENSOR_F16, 67, 768, 32, 4, 3, 1, 0);
    run_shape(Q_TENSOR_BF16, 67, 768, 32, 4, 21, 1, 0);
    run_shape(Q_TENSOR_Q8_0, 67, 768, 32, 5, 17, 1, 0);
    run_shape(Q_TENSOR_Q4_0, 67, 768, 32, 5, 19, 1, 0);
    run_shape(Q_TENSOR_Q4_0, 67, 2048, 32, 1, 23, 1, 0);
    /* Q4_K, Q5_K, Q6_K: one to eight super-blocks per row; decode (8x1 tiles and edges),
     * prefill (4xT and edges), float activations, raw int8 activations with -128 */
    {
        static const q_tensor_type k_types[] = {Q_TENSOR_Q4_K, Q_TENSOR_Q5_K, Q_TENSOR_Q6_K};
        static const size_t q6_cols[] = {256, 512, 768, 2048};
        static const size_t q6_nts[] = {1, 2, 3, 4, 5, 9, 17};
        for (size_t ki = 0; ki < sizeof k_types / sizeof k_types[0]; ki++)
            for (size_t ci = 0; ci < sizeof q6_cols / sizeof q6_cols[0]; ci++)
                for (size_t ni = 0; ni < sizeof q6_nts / sizeof q6_nts[0]; ni++) {
                    q_tensor_type ty = k_types[ki];
                    size_t rows = 1 + (ci * 7 + ni * 3 + ki) % 13,
                           off = (ci * 11 + ni * 5 + ki * 3) % 64;
                    run_shape(ty, rows, q6_cols[ci], 256, q6_nts[ni], off, 1, 0);
                    if (q6_nts[ni] <= 3) {
                        run_shape(ty, rows, q6_cols[ci], 256, q6_nts[ni], off, 0, 0);
                        run_shape(ty, rows, q6_cols[ci], 256, q6_nts[ni], off, 1, 1);
                    }
                }
    }
    run_shape(Q_TENSOR_Q8_SPLIT, 67, 768, 64, 3, 33, 1, 0);
    /* the AVX-512 table's own edges (matmul_avx512.c): int8 prefill keeps 16 tokens in the
     * lanes of a register and float prefill runs 4x4 tiles (15, 16, 17, 33 tokens: one
     * short, exact, one over, two groups and one over); int8 rows of more than 256 blocks
     * (8192 columns) go to the AVX2 matmul for the whole tensor (8192: the widest it takes
     * itself; 8224: one block over), decode and prefill, -128 activations included */
    {
        static const size_t lane_nts[] = {15, 16, 17, 33};
        for (size_t k = 0; k < sizeof lane_nts / sizeof lane_nts[0]; k++) {
            run_shape(Q_TENSOR_Q8_0, 5, 96, 32, lane_nts[k], (k * 5) % 64, 1, 0);
            run_shape(Q_TENSOR_Q4_0, 7, 160, 32, lane_nts[k], (k * 3 + 1) % 64, 1, 1);
            run_shape(Q_TENSOR_Q8_SPLIT, 6, 64, 64, lane_nts[k], (k * 9 + 1) % 64, 1, 1);
            run_shape(Q_TENSOR_F32, 5, 33, 32, lane_nts[k], (k * 13 + 2) % 64, 1, 0);
            run_shape(Q_TENSOR_F16, 6, 17, 32, lane_nts[k], (k * 7 + 3) % 64, 1, 0);
            run_shape(Q_TENSOR_BF16, 9, 31, 32, lane_nts[k], (k * 11 + 5) % 64, 1, 0);
        }
        run_shape(Q_TENSOR_Q8_0, 3, 8192, 32, 1, 7, 1, 0);
        run_shape(Q_TENSOR_Q8_0, 3, 8192, 32, 5, 9, 1, 1);
        run_shape(Q_TENSOR_Q8_0, 3, 8224, 32, 1, 11, 1, 0);
        run_shape(Q_TENSOR_Q8_0, 3, 8224, 32, 5, 13, 1, 1);
        run_shape(Q_TENSOR_Q8_SPLIT, 2, 8224, 64, 1, 15, 1, 0);
        run_shape(Q_TENSOR_Q8_SPLIT, 2, 8224, 64, 4, 17, 1, 1);
    }
}

/* ---- quantize_q8 ---- */

static void quant_compare(const float *x, size_t n, const char *what)
{
    int8_t *q_ref = malloc(n), *q_k = malloc(n);
    float *d_ref = malloc(n / 32 * sizeof(float)), *d_k = malloc(n / 32 * sizeof(float));
    q_kernels_scalar()->quantize_q8(q_ref, d_ref, x, n);
    /* reference properties: |q| <= 127, and d = amax / 127 */
    for (size_t e = 0; e < n; e++)
        CHECK(q_ref[e] >= -127 && q_ref[e] <= 127);
    for (size_t k = 0; k < n_opt; k++) { /* bitwise identical in every table */
        memset(q_k, 0x55, n);
        memset(d_k, 0x55, n / 32 * sizeof(float));
        opt[k]->quantize_q8(q_k, d_k, x, n);
        int same = memcmp(q_ref, q_k, n) == 0 && memcmp(d_ref, d_k, n / 32 * sizeof(float)) == 0;
        if (!same)
            fprintf(stderr, "  %s quantize_q8 differs: %s\n", opt[k]->name, what);
        CHECK(same);
    }
    free(q_ref);
    free(q_k);
    free(d_ref);
    free(d_k);
}

static float special(uint32_t r)
{
    switch (r % 16) {
    case 0:
        return NAN;
    case 1:
        return -NAN;
    case 2:
        return INFINITY;
    case 3:
        return -INFINITY;
    case 4:
        return 0.0f;
    case 5:
        return -0.0f;
    case 6:
        return FLT_MAX;
    case 7:
        return -FLT_MAX;
    case 8:
        return 1e-45f; /* smallest denormal */
    case 9:
        return -3e-39f;
    case 10:
        return FLT_MIN;
    case 11:
        return 127.0f;
    case 12:
        return 0.5f; /* ties */
    case 13:
        return 2.5f;
    default:
        return next_f() * 1000.0f;
    }
}

static void test_quantize(void)
{
    enum { N = 32 * 64 };
    float *x = malloc(N * sizeof(float)); /* (N) */
    for (size_t e = 0; e < N; e++)
        x[e] = next_f();
    quant_compare(x, N, "random");
    for (size_t e = 0; e < N; e++)
        x[e] = next_f() * 3e38f;
    quant_compare(x, N, "huge");
    for (size_t e = 0; e < N; e++)
        x[e] = next_f() * 1e-38f;
    quant_compare(x, N, "tiny (denormals)");
    for (size_t e = 0; e < N; e++)
        x[e] = next_f() * 1e-44f;
    quant_compare(x, N, "denormal only");
    memset(x, 0, N * sizeof(float));
    quant_compare(x, N, "zero");
    for (size_t e = 0; e < N; e++)
        x[e] = -0.0f;
    quant_compare(x, N, "-0");
    for (size_t e = 0; e < N; e++)
        x[e] = (next_u32() & 1) ? NAN : 0.0f;
    quant_compare(x, N, "NaN and zero");
    for (size_t e = 0; e < N; e++)
        x[e] = NAN;
    quant_compare(x, N, "all NaN");
    for (size_t e = 0; e < N; e++)
        x[e] = (next_u32() & 1) ? INFINITY : -1.0f;
    quant_compare(x, N, "Inf");
    /* blocks whose amax makes exact ties x * inv = k + 0.5 */
    for (size_t e = 0; e < N; e++)
        x[e] = (float)((int)(next_u32() % 255) - 127) * 0.5f;
    quant_compare(x, N, "ties");
    for (int round = 0; round < 50; round++) {
        for (size_t e = 0; e < N; e++)
            x[e] = (next_u32() % 4 == 0) ? special(next_u32()) : next_f() * 10.0f;
        quant_compare(x, N, "specials mixed");
    }
    /* one special per block, in every lane position */
    for (size_t e = 0; e < N; e++)
        x[e] = next_f();
    for (size_t b = 0; b < N / 32; b++)
        x[b * 32 + b % 32] = special((uint32_t)b);
    quant_compare(x, N, "one special per block");
    /* unaligned input */
    quant_compare(x + 1, N - 32, "unaligned");
    free(x);
}

int main(void)
{
    n_opt = q_kernels_optimized(opt, sizeof opt / sizeof opt[0]);
    if (n_opt > sizeof opt / sizeof opt[0])
        n_opt = sizeof opt / sizeof opt[0];
    for (size_t k = 0; k < n_opt; k++)
        printf("test_matmul: %s table against the reference\n", opt[k]->name);
    if (q_kernels_avx2() == NULL)
        printf("test_matmul: no AVX2 table on this CPU/build: skipped\n");
    if (q_kernels_avx512() == NULL)
        printf("test_matmul: no AVX-512 table on this CPU/build: skipped\n");
    RUN_TEST(test_quantize);
    RUN_TEST(test_matmul_shapes);
    return check_result("test_matmul");
}
