/*
 * The element-wise kernels (RMSNorm, softmax, SwiGLU, RoPE, attention) of every optimized
 * table this CPU runs (q_kernels_optimized: AVX-512, AVX2) against the scalar reference on
 * chosen shapes (every tail length, in place, strides) and edge values (0, -0, subnormals,
 * the exp overflow / underflow thresholds, +-inf, NaN), within the bounds of
 * docs/kernels.md (fuzz/fuzz_kernels.c checks the same on drawn inputs). Each table sees
 * the same inputs (the generator restarts per table). A table absent here is skipped with
 * a note; the whole test is skipped when there is none (no AVX2/FMA/F16C, or not built).
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "qorus_kernels.h"

#define U 0x1p-24
#define EXP_E (4.0 * U)

static const q_kernels *ref, *opt;
static uint64_t lcg = 12345;

static float rnd(float scale) /* uniform in [-scale, scale) */
{
    lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
    return scale * ((float)(uint32_t)(lcg >> 40) / (float)(1u << 23) - 1.0f);
}

/* NaN in both or neither, else |a - b| <= rel * max(|a|, |b|) + abs_tol (inf as 2^128) */
static int close_to(float a, float b, double rel, double abs_tol)
{
    if (isnan(a) || isnan(b))
        return isnan(a) && isnan(b);
    double da = isinf(a) ? copysign(0x1p128, a) : a, db = isinf(b) ? copysign(0x1p128, b) : b;
    return fabs(da - db) <= rel * fmax(fabs(da), fabs(db)) + abs_tol;
}

static int report_close(const char *what, size_t n, size_t i, float a, float b, double rel,
                        double abs_tol)
{
    if (close_to(a, b, rel, abs_tol))
        return 1;
    fprintf(stderr, "%s n=%zu [%zu]: reference %a, %s %a (rel bound %.3g)\n", what, n, i,
            (double)a, opt->name, (double)b, rel);
    return 0;
}

static float *dup_at(const float *src, size_t n, size_t shift, float **block)
{
    *block = (float *)malloc((n + shift + 1) * sizeof(float));
    if (*block == NULL)
        abort();
    if (n != 0)
        memcpy(*block + shift, src, n * sizeof(float));
    return *block + shift;
}

static void test_softmax(void)
{
    static const size_t sizes[] = {1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 64, 100, 257, 1000};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t n = sizes[s];
        float *x = malloc(n * sizeof(float)), *a, *b, *ba, *bb;
        if (x == NULL)
            abort();
        for (size_t i = 0; i < n; i++)
            x[i] = rnd(12.0f);
        a = dup_at(x, n, 0, &ba);
        b = dup_at(x, n, 1, &bb); /* misaligned on purpose */
        ref->softmax(a, n);
        opt->softmax(b, n);
        double rel = 2.0 * EXP_E + (2.0 * (double)n + 8.0) * U;
        for (size_t i = 0; i < n; i++)
            CHECK(report_close("softmax", n, i, a[i], b[i], rel, 0x1p-146));
        free(ba);
        free(bb);
        free(x);
    }
    opt->softmax(NULL, 0); /* n == 0: nothing read */

    /* classes: a NaN or a +inf anywhere makes every output NaN; -inf gives 0; values far
     * below the maximum underflow to 0 exactly where expf does */
    float cases[][5] = {
        {1.0f, NAN, 2.0f, 3.0f, 4.0f},
        {NAN, 1.0f, 2.0f, 3.0f, 4.0f},
        {1.0f, INFINITY, 2.0f, 3.0f, 4.0f},
        {-INFINITY, 0.0f, 1.0f, -INFINITY, 2.0f},
        {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY},
        {0.0f, -103.972076f, -103.972084f, -87.5f, -0.0f},
        {FLT_MAX, -FLT_MAX, 0.0f, 0x1p-149f, -0x1p-149f},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        float a[5], b[5];
        memcpy(a, cases[c], sizeof a);
        memcpy(b, cases[c], sizeof b);
        ref->softmax(a, 5);
        opt->softmax(b, 5);
        for (size_t i = 0; i < 5; i++) {
            CHECK(report_close("softmax edge", c, i, a[i], b[i], 2.0 * EXP_E + 18.0 * U, 0x1p-146));
            CHECK((a[i] == 0.0f) == (b[i] == 0.0f));
        }
    }
}

static void test_swiglu(void)
{
    /* gate values around every threshold of exp(-gate): overflow at -88.7228317 / -88.7228394,
     * underflow at +103.972076 / +103.972084, subnormals, zeros, infinities, NaN */
    static const float edges[] = {
        0.0f, -0.0f, 0x1p-149f, -0x1p-149f, FLT_MIN, 1e-30f, -1e-30f, 0.5f, -0.5f, 1.0f,
        -1.0f, 17.0f, -17.0f, 80.0f, -80.0f, -87.3f, -88.0f, -88.7228317f, -88.7228394f,
        -89.0f, 88.7228317f, 88.7228394f, 103.972076f, 103.972084f, 104.0f, -104.0f, 200.0f,
        -200.0f, FLT_MAX, -FLT_MAX, INFINITY, -INFINITY, NAN,
    };
    static const float ups[] = {1.0f, -2.5f, 0.0f, 1e30f, INFINITY, -INFINITY, NAN, FLT_MAX};
    size_t ne = sizeof edges / sizeof edges[0];
    for (size_t u = 0; u < sizeof ups / sizeof ups[0]; u++) {
        float a[sizeof edges / sizeof edges[0]], b[sizeof edges / sizeof edges[0]];
        float up[sizeof edges / sizeof edges[0]];
        for (size_t i = 0; i < ne; i++)
            up[i] = ups[u];
        memcpy(a, edges, sizeof a);
        memcpy(b, edges, sizeof b);
        ref->swiglu(a, up, ne);
        opt->swiglu(b, up, ne);
        for (size_t i = 0; i < ne; i++)
            CHECK(report_close("swiglu edge", u, i, a[i], b[i], EXP_E + 8.0 * U,
                               0x1p-147 * (1.0 + fabs((double)edges[i])) * (1.0 + fabs((double)ups[u]))));
    }
    for (size_t n = 0; n <= 70; n++) {
        float g[70], up[70], a[70], b[71];
        for (size_t i = 0; i < n; i++) {
            g[i] = rnd(20.0f);
            up[i] = rnd(4.0f);
        }
        memcpy(a, g, n * sizeof(float));
        memcpy(b + 1, g, n * sizeof(float));
        ref->swiglu(a, up, n);
        opt->swiglu(b + 1, up, n);
        for (size_t i = 0; i < n; i++)
            CHECK(report_close("swiglu", n, i, a[i], b[i + 1], EXP_E + 8.0 * U, 0x1p-140));
    }
}

static void test_rmsnorm(void)
{
    static const size_t sizes[] = {1, 2, 7, 8, 9, 15, 16, 17, 23, 24, 25, 33, 288, 768, 4096};
    static const float epss[] = {1e-5f, 1e-6f, 0.0f};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t n = sizes[s];
        float *x = malloc(n * sizeof(float)), *w = malloc(n * sizeof(float));
        float *a = malloc(n * sizeof(float)), *bblk, *b;
        if (x == NULL || w == NULL || a == NULL)
            abort();
        for (size_t i = 0; i < n; i++) {
            x[i] = rnd(3.0f);
            w[i] = 1.0f + rnd(0.2f);
        }
        for (size_t e = 0; e < sizeof epss / sizeof epss[0]; e++) {
            ref->rmsnorm(a, x, w, n, epss[e]);
            b = dup_at(x, n, 3, &bblk);
            opt->rmsnorm(b, b, w, n, epss[e]); /* in place, misaligned */
            for (size_t i = 0; i < n; i++)
                CHECK(report_close("rmsnorm", n, i, a[i], b[i], ((double)n + 16.0) * U, 0x1p-140));
            free(bblk);
        }
        free(x);
        free(w);
        free(a);
    }
    /* a zero vector with eps 0: 0 * inf = NaN in both; a NaN: NaN everywhere */
    float z[9] = {0}, w[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1}, a[9], b[9];
    ref->rmsnorm(a, z, w, 9, 0.0f);
    opt->rmsnorm(b, z, w, 9, 0.0f);
    for (size_t i = 0; i < 9; i++)
        CHECK(isnan(a[i]) && isnan(b[i]));
    z[4] = NAN;
    ref->rmsnorm(a, z, w, 9, 1e-5f);
    opt->rmsnorm(b, z, w, 9, 1e-5f);
    for (size_t i = 0; i < 9; i++)
        CHECK(isnan(a[i]) && isnan(b[i]));
}

static void test_rope(void)
{
    static const size_t head_sizes[] = {2, 4, 6, 8, 10, 14, 16, 48, 64, 128};
    for (size_t h = 0; h < sizeof head_sizes / sizeof head_sizes[0]; h++) {
        size_t hs = head_sizes[h], n = hs * 3;
        float v[384], a[384], b[385], c[64], s[64];
        for (size_t i = 0; i < n; i++)
            v[i] = rnd(5.0f);
        for (size_t p = 0; p < hs / 2; p++) {
            c[p] = cosf((float)p * 0.37f);
            s[p] = sinf((float)p * 0.37f);
        }
        v[1] = INFINITY;
        v[2] = NAN;
        v[3] = 0x1p-149f;
        for (int neox = 0; neox < 2; neox++) {
            memcpy(a, v, n * sizeof(float));
            memcpy(b + 1, v, n * sizeof(float));
            (neox ? ref->rope_neox : ref->rope)(a, n, hs, c, s);
            (neox ? opt->rope_neox : opt->rope)(b + 1, n, hs, c, s);
            for (size_t i = 0; i < n; i++) /* bitwise, NaN payloads aside */
                CHECK(memcmp(&a[i], &b[i + 1], 4) == 0 || (isnan(a[i]) && isnan(b[i + 1])));
        }
    }
    opt->rope(NULL, 0, 2, NULL, NULL);
    opt->rope_neox(NULL, 0, 2, NULL, NULL);
}

/* The pairs each rotation turns: a quarter turn (cos 0, sin 1) maps (v0, v1) to (-v1, v0).
 * Interleaved: (2p, 2p + 1) of each head; NEOX: (p, p + head_size / 2). */
static void test_rope_pairs(void)
{
    const q_kernels *tabs[2] = {ref, opt};
    float c[4] = {0.0f, 0.0f, 0.0f, 0.0f}, s[4] = {1.0f, 1.0f, 1.0f, 1.0f};
    for (int k = 0; k < 2; k++) {
        float v[16], w[16];
        for (int i = 0; i < 16; i++)
            v[i] = w[i] = (float)(i + 1);
        tabs[k]->rope(v, 16, 8, c, s);
        tabs[k]->rope_neox(w, 16, 8, c, s);
        for (int h = 0; h < 16; h += 8)
            for (int p = 0; p < 4; p++) {
                CHECK(v[h + 2 * p] == -(float)(h + 2 * p + 2) && v[h + 2 * p + 1] == (float)(h + 2 * p + 1));
                CHECK(w[h + p] == -(float)(h + p + 5) && w[h + p + 4] == (float)(h + p + 1));
            }
    }
}

static void test_attention(void)
{
    /* head sizes: below 8 (padded path), 8, tails of every group shape (10, 18, 34, 66),
     * one group of 1..8 columns (8..64), two groups (66, 72, 128, 130); positions: below 8
     * (one partial block), multiples of 8, and one past / one short of them */
    static const size_t head_sizes[] = {2, 4, 6, 8, 10, 16, 18, 24, 34, 48, 64, 66, 72, 128, 130};
    static const size_t positions[] = {1, 2, 7, 8, 9, 15, 16, 17, 33, 255, 256};
    for (size_t h = 0; h < sizeof head_sizes / sizeof head_sizes[0]; h++)
        for (size_t p = 0; p < sizeof positions / sizeof positions[0]; p++) {
            size_t hs = head_sizes[h], n_pos = positions[p], stride = hs + 3;
            size_t len = (n_pos - 1) * stride + hs;
            float *q = malloc(hs * 4), *k = malloc(len * 4), *v = malloc(len * 4);
            float *oa = malloc(hs * 4), *ob = malloc((hs + 1) * 4), *oc = malloc(hs * 4);
            float *aa = malloc(n_pos * 4), *ab = malloc((n_pos + 1) * 4), *ac = malloc(n_pos * 4);
            if (!q || !k || !v || !oa || !ob || !oc || !aa || !ab || !ac)
                abort();
            for (size_t i = 0; i < hs; i++)
                q[i] = rnd(1.0f);
            double S = 0.0;
            for (size_t i = 0; i < len; i++) {
                k[i] = rnd(1.0f);
                v[i] = rnd(2.0f);
            }
            for (size_t t = 0; t < n_pos; t++) {
                double st = 0.0;
                for (size_t i = 0; i < hs; i++)
                    st += fabs((double)q[i] * k[t * stride + i]);
                S = fmax(S, st);
            }
            ref->attention(oa, q, k, v, stride, n_pos, hs, aa);
            opt->attention(ob + 1, q, k, v, stride, n_pos, hs, ab + 1);
            opt->attention(oc, q, k, v, stride, n_pos, hs, ac); /* other alignment: same bits */
            CHECK(memcmp(ab + 1, ac, n_pos * 4) == 0);
            CHECK(memcmp(ob + 1, oc, hs * 4) == 0);
            double delta = (2.0 * (double)hs + 16.0) * U * S / sqrt((double)hs);
            double rel_att = 2.0 * EXP_E + (2.0 * (double)n_pos + 8.0) * U + 3.0 * expm1(2.0 * delta);
            for (size_t t = 0; t < n_pos; t++)
                CHECK(report_close("attention att", n_pos, t, aa[t], ab[t + 1], rel_att, 0x1p-146));
            for (size_t i = 0; i < hs; i++) {
                double sav = 0.0;
                for (size_t t = 0; t < n_pos; t++)
                    sav += aa[t] * fabs((double)v[t * stride + i]);
                double tol = (rel_att + (2.0 * (double)n_pos + 4.0) * U) * sav * 1.01 + 0x1p-140;
                CHECK(report_close("attention out", hs, i, oa[i], ob[i + 1], 0.0, tol));
            }
            free(q);
            free(k);
            free(v);
            free(oa);
            free(ob);
            free(oc);
            free(aa);
            free(ab);
            free(ac);
        }
}

int main(void)
{
    ref = q_kernels_scalar();
    if (q_kernels_avx512() == NULL)
        printf("kernels_ops: no AVX-512 table here (CPU without AVX512F/BW/VL/VNNI, or not "
               "built): skipped\n");
    const q_kernels *tables[4];
    size_t n = q_kernels_optimized(tables, 4);
    if (n == 0) {
        printf("kernels_ops: no optimized table here (CPU without AVX2/FMA/F16C, or not "
               "built): skipped\n");
        return SKIP_RETURN_CODE;
    }
    for (size_t k = 0; k < n && k < 4; k++) {
        opt = tables[k];
        lcg = 12345; /* the same inputs for every table */
        fprintf(stderr, "-- %s table\n", opt->name);
        RUN_TEST(test_softmax);
        RUN_TEST(test_swiglu);
        RUN_TEST(test_rmsnorm);
        RUN_TEST(test_rope);
        RUN_TEST(test_rope_pairs);
        RUN_TEST(test_attention);
    }
    return check_result("kernels_ops");
}
