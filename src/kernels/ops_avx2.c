/*
 * AVX2 + FMA element-wise kernels: RMSNorm, softmax, SwiGLU, RoPE and one attention head.
 * Contracts: the q_kernels fields of the same names (qorus_kernels.h); the reference is
 * src/kernels/ref.c; error bounds and their derivation: docs/kernels.md.
 *
 * Every loop starts at index 0 and uses unaligned loads and stores, 8 floats at a time; the
 * last n % 8 values go through a small local block (copied in, computed as a full vector,
 * copied back), so no kernel reads or writes outside its buffers, and results depend only
 * on the input values: not on the alignment of the buffers, nor on anything else.
 * (attention: its tails are blocks of 8 ending at the row's or the array's end instead,
 * overlapping the previous block and computing its lanes to the same values; see there.)
 * Horizontal sums always reduce the lanes in the same fixed order.
 *
 * exp: exp8() below, a polynomial approximation (max relative error 9.3e-8 = 1.56 * 2^-24,
 * measured over every float), with the reference's overflow (+inf) and underflow (0)
 * thresholds reproduced exactly, so that 0, +inf and NaN come out of the same inputs as
 * glibc's expf (checked on all 2^32 inputs).
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels/avx2_sums.h"
#include "kernels/kernels_internal.h"

/* Products and sums stay separately rounded where this file writes them separately (RoPE
 * is bitwise identical to the reference only then); FMA is used only through intrinsics. */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

/* ---- helpers ---- */

/* Largest of the 8 lanes (NaN handling irrelevant to the callers: see softmax). */
static inline float hmax8(__m256 v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

/*
 * exp8: e^x for 8 floats.
 *
 *   1. Range reduction by ln 2: k = round(x * log2(e)), r = x - k * ln2, |r| <= ln2/2
 *      (slightly more when x * log2(e) rounds). ln 2 is split Cody-Waite style into
 *      LN2_HI (9 significant bits, so k * LN2_HI is exact for |k| <= 150) and LN2_LO, each
 *      subtracted with one FMA.
 *   2. e^r by a degree-6 polynomial: Chebyshev interpolation of e^r on [-ln2/2, ln2/2]
 *      (7 Chebyshev nodes, coefficients computed for this file and rounded to float), within
 *      2.2e-8 relative of e^r there; evaluated by Horner's rule with FMA.
 *   3. 2^k from exponent bits. k ranges over [-150, 128] after clamping x to
 *      [-104, 88.7228317], more than one float exponent holds, so 2^k is applied as
 *      2^(k>>1) * 2^(k - (k>>1)), two normal powers of two: the last multiplication is the
 *      only rounding into the subnormal range, as in a correctly rounded exp.
 *   4. Special inputs: x > 88.7228317 (0x1.62e42ep+6, the largest float whose expf is
 *      finite) gives +inf, x < -103.972076 (-0x1.9fe368p+6, the smallest float whose expf is
 *      not 0) gives 0: the reference's thresholds, so +inf, -inf, overflow and underflow
 *      agree with expf exactly. NaN propagates (the clamps keep it; the comparisons are
 *      false for it).
 *
 * Measured over all 2^32 float inputs against exp() in double: where e^x >= FLT_MIN the max
 * relative error is 9.3e-8 (< 1.56 * 2^-24; x = 0x1.4cbe4ep+2); subnormal results are within
 * 0.93 * 2^-149 of e^x; the result is 0 / +inf / NaN for exactly the inputs where glibc
 * 2.36's expf gives 0 / +inf / NaN.
 */
#define EXP_OVERFLOW 0x1.62e42ep+6f   /* largest x with finite expf(x) */
#define EXP_UNDERFLOW -0x1.9fe368p+6f /* smallest x with expf(x) != 0 */

/* overflow = 0: for inputs known to be <= 0 or NaN (softmax's x - max), the upper clamp and
 * the +inf case are left out; the result is the same for every such input. */
static inline __attribute__((always_inline)) __m256 exp8_impl(__m256 x, const int overflow)
{
    const __m256 log2e = _mm256_set1_ps(0x1.715476p+0f);
    const __m256 ln2_hi = _mm256_set1_ps(0.693359375f);
    const __m256 ln2_lo = _mm256_set1_ps(-2.12194440e-4f);
    const __m256 c6 = _mm256_set1_ps(1.394110848e-03f);
    const __m256 c5 = _mm256_set1_ps(8.375125937e-03f);
    const __m256 c4 = _mm256_set1_ps(4.166635126e-02f);
    const __m256 c3 = _mm256_set1_ps(1.666641533e-01f);
    const __m256 c2 = _mm256_set1_ps(5.000000000e-01f);
    const __m256 c1 = _mm256_set1_ps(1.0f);
    const __m256 c0 = _mm256_set1_ps(1.0f);
    const __m256 hi = _mm256_set1_ps(EXP_OVERFLOW);
    const __m256 lo = _mm256_set1_ps(-104.0f);

    /* min/max return their second operand when either is NaN: x stays NaN */
    __m256 xc = _mm256_max_ps(lo, x);
    if (overflow)
        xc = _mm256_min_ps(hi, xc);
    __m256 kf = _mm256_round_ps(_mm256_mul_ps(xc, log2e),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(kf, ln2_hi, xc);
    r = _mm256_fnmadd_ps(kf, ln2_lo, r);

    __m256 p = _mm256_fmadd_ps(c6, r, c5);
    p = _mm256_fmadd_ps(p, r, c4);
    p = _mm256_fmadd_ps(p, r, c3);
    p = _mm256_fmadd_ps(p, r, c2);
    p = _mm256_fmadd_ps(p, r, c1);
    p = _mm256_fmadd_ps(p, r, c0);

    /* k in [-150, 128]; NaN lanes give an arbitrary k, but p is NaN there */
    __m256i k = _mm256_cvtps_epi32(kf);
    __m256i k1 = _mm256_srai_epi32(k, 1);
    __m256i k2 = _mm256_sub_epi32(k, k1);
    const __m256i bias = _mm256_set1_epi32(127);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k1, bias), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k2, bias), 23));
    __m256 y = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);

    if (overflow)
        y = _mm256_blendv_ps(y, _mm256_set1_ps(INFINITY), _mm256_cmp_ps(x, hi, _CMP_GT_OQ));
    /* the comparison gives all-ones or all-zero lanes: andnot is the blend with 0 */
    y = _mm256_andnot_ps(_mm256_cmp_ps(x, _mm256_set1_ps(EXP_UNDERFLOW), _CMP_LT_OQ), y);
    return y;
}

static inline __m256 exp8(__m256 x)
{
    return exp8_impl(x, 1);
}

/* exp8 for x <= 0 or NaN (no other input reaches it) */
static inline __m256 exp8_nonpos(__m256 x)
{
    return exp8_impl(x, 0);
}

/* ---- RMSNorm ---- */

/*
 * The sum of squares uses separate multiplies and adds (no FMA): every square is rounded as
 * in the reference, so only the summation order differs. That keeps "the sum is 0", "the
 * sum overflowed" and subnormal sums (exact in any order) the same as the reference's.
 */
void q_avx2_rmsnorm(float *out, const float *x, const float *weight, size_t n, float eps)
{
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
        acc0 = _mm256_add_ps(acc0, _mm256_mul_ps(a, a));
        acc1 = _mm256_add_ps(acc1, _mm256_mul_ps(b, b));
    }
    for (; i + 8 <= n; i += 8) {
        __m256 a = _mm256_loadu_ps(x + i);
        acc0 = _mm256_add_ps(acc0, _mm256_mul_ps(a, a));
    }
    float tail = 0.0f;
    for (; i < n; i++) {
        float sq = x[i] * x[i];
        tail += sq;
    }
    float ss = q_hsum8(_mm256_add_ps(acc0, acc1)) + tail;
    ss /= (float)n;
    ss += eps;
    ss = 1.0f / sqrtf(ss);

    /* out = weight * (ss * x), element by element as the reference */
    const __m256 s = _mm256_set1_ps(ss);
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 v = _mm256_mul_ps(s, _mm256_loadu_ps(x + i));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_loadu_ps(weight + i), v));
    }
    for (; i < n; i++) {
        float v = ss * x[i];
        out[i] = weight[i] * v;
    }
}

/* ---- softmax ---- */

/*
 * As the reference: max subtracted, exp, sum, divide. The maximum of the non-NaN values is
 * exact in any order; where the input holds a NaN every output is NaN in both (the NaN's
 * exp makes the sum NaN), whichever value this loop takes as the maximum.
 */
void q_avx2_softmax(float *x, size_t n)
{
    if (n == 0)
        return;
    size_t full = n - n % 8, rest = n % 8;

    float max_val = x[0];
    if (full > 0) {
        __m256 vm = _mm256_loadu_ps(x);
        for (size_t i = 8; i < full; i += 8)
            vm = _mm256_max_ps(vm, _mm256_loadu_ps(x + i));
        float m = hmax8(vm);
        if (m > max_val)
            max_val = m;
    }
    for (size_t i = full; i < n; i++)
        if (x[i] > max_val)
            max_val = x[i];

    const __m256 vmax = _mm256_set1_ps(max_val);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= full; i += 16) {
        __m256 e0 = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmax));
        __m256 e1 = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i + 8), vmax));
        _mm256_storeu_ps(x + i, e0);
        _mm256_storeu_ps(x + i + 8, e1);
        acc0 = _mm256_add_ps(acc0, e0);
        acc1 = _mm256_add_ps(acc1, e1);
    }
    for (; i < full; i += 8) {
        __m256 e0 = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmax));
        _mm256_storeu_ps(x + i, e0);
        acc0 = _mm256_add_ps(acc0, e0);
    }
    float tail = 0.0f;
    if (rest > 0) {
        float buf[8] = {0}; /* lanes past the tail: computed, never stored nor summed */
        memcpy(buf, x + full, rest * sizeof(float));
        _mm256_storeu_ps(buf, exp8(_mm256_sub_ps(_mm256_loadu_ps(buf), vmax)));
        memcpy(x + full, buf, rest * sizeof(float));
        for (size_t j = 0; j < rest; j++)
            tail += buf[j];
    }
    float sum = q_hsum8(_mm256_add_ps(acc0, acc1)) + tail;

    const __m256 vsum = _mm256_set1_ps(sum);
    for (i = 0; i < full; i += 8)
        _mm256_storeu_ps(x + i, _mm256_div_ps(_mm256_loadu_ps(x + i), vsum));
    for (; i < n; i++)
        x[i] /= sum;
}

/* ---- SwiGLU ---- */

/* gate * (1 / (1 + exp(-gate))) * up for 8 values, in the reference's order of operations */
static inline __m256 swiglu8(__m256 g, __m256 u)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 e = exp8(_mm256_xor_ps(g, _mm256_set1_ps(-0.0f)));
    __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, e));
    return _mm256_mul_ps(_mm256_mul_ps(g, s), u);
}

void q_avx2_swiglu(float *gate, const float *up, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(gate + i, swiglu8(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i)));
    if (i < n) {
        size_t rest = n - i;
        float g[8] = {0}, u[8] = {0};
        memcpy(g, gate + i, rest * sizeof(float));
        memcpy(u, up + i, rest * sizeof(float));
        _mm256_storeu_ps(g, swiglu8(_mm256_loadu_ps(g), _mm256_loadu_ps(u)));
        memcpy(gate + i, g, rest * sizeof(float));
    }
}

/* ---- RoPE ---- */

/*
 * 4 pairs at a time: with v = (v0, v1, ...), c and s each pair's cos / sin in both lanes of
 * the pair, and w = v with the lanes of every pair swapped, addsub(v * c, w * s) gives
 * (v0 c - v1 s, v1 c + v0 s): the reference's products, rounded the same way, and the same
 * sum (addition commutes), so the result is bitwise the reference's (NaN payloads aside).
 */
void q_avx2_rope(float *vec, size_t n, size_t head_size, const float *cos_p,
                 const float *sin_p)
{
    if (head_size == 0)
        return;
    const __m256i dup = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
    size_t pairs = head_size / 2;
    for (size_t h = 0; h + head_size <= n; h += head_size) {
        float *v = vec + h;
        size_t p = 0;
        for (; p + 4 <= pairs; p += 4) {
            __m256 c = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(cos_p + p)), dup);
            __m256 s = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(sin_p + p)), dup);
            __m256 x = _mm256_loadu_ps(v + 2 * p);
            __m256 xs = _mm256_permute_ps(x, 0xB1); /* (v1, v0, v3, v2, ...) */
            _mm256_storeu_ps(v + 2 * p, _mm256_addsub_ps(_mm256_mul_ps(x, c), _mm256_mul_ps(xs, s)));
        }
        for (; p < pairs; p++) {
            float v0 = v[2 * p], v1 = v[2 * p + 1];
            float a = v0 * cos_p[p], b = v1 * sin_p[p];
            float d = v0 * sin_p[p], e = v1 * cos_p[p];
            v[2 * p] = a - b;
            v[2 * p + 1] = d + e;
        }
    }
}

/*
 * NEOX rotation: the pairs are (v[p], v[p + half]), so 8 pairs are two plain loads, 8
 * cosines and sines, and the reference's four products and two sums, each rounded once
 * (no FMA): bitwise the reference's.
 */
void q_avx2_rope_neox(float *vec, size_t n, size_t head_size, const float *cos_p,
                      const float *sin_p)
{
    size_t half = head_size / 2;
    if (half == 0)
        return;
    for (size_t h = 0; h + head_size <= n; h += head_size) {
        float *v = vec + h;
        size_t p = 0;
        for (; p + 8 <= half; p += 8) {
            __m256 c = _mm256_loadu_ps(cos_p + p), s = _mm256_loadu_ps(sin_p + p);
            __m256 v0 = _mm256_loadu_ps(v + p), v1 = _mm256_loadu_ps(v + p + half);
            _mm256_storeu_ps(v + p, _mm256_sub_ps(_mm256_mul_ps(v0, c), _mm256_mul_ps(v1, s)));
            _mm256_storeu_ps(v + p + half, _mm256_add_ps(_mm256_mul_ps(v0, s), _mm256_mul_ps(v1, c)));
        }
        for (; p < half; p++) {
            float v0 = v[p], v1 = v[p + half];
            float a = v0 * cos_p[p], b = v1 * sin_p[p];
            float d = v0 * sin_p[p], e = v1 * cos_p[p];
            v[p] = a - b;
            v[p + half] = d + e;
        }
    }
}

/* ---- attention (one head) ---- */

#define ATT_INLINE static inline __attribute__((always_inline))

/* loadu(ONES_ZEROS + 8 - r): lanes 0..r-1 all ones, the rest 0; loadu(ZEROS_ONES + r): lanes
 * 8-r..7 all ones, the rest 0 (r in 0..8). */
static const int32_t ONES_ZEROS[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
static const int32_t ZEROS_ONES[16] = {0, 0, 0, 0, 0, 0, 0, 0, -1, -1, -1, -1, -1, -1, -1, -1};

static inline __m256 lanes_below(size_t r)
{
    return _mm256_castsi256_ps(_mm256_loadu_si256((const __m256i *)(const void *)(ONES_ZEROS + 8 - r)));
}

static inline __m256 lanes_from(size_t r)
{
    return _mm256_castsi256_ps(_mm256_loadu_si256((const __m256i *)(const void *)(ZEROS_ONES + r)));
}

/*
 * The 8 dot products dot(q, r[j]) over hs >= 8 values, as one vector (lane j). Each row's
 * partial vector: products of the first 8 values, then one FMA per further 8 values; when
 * hs % 8 != 0 the last 8 values of the row (hs - 8 .. hs - 1, inside it) with the lanes
 * already counted zeroed in both q (qt, masked by the caller) and the row. Then a fixed
 * reduction tree: hadd, hadd, and the two 128-bit halves added, so every row's 8 lanes are
 * summed as ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)) whichever lane j it has.
 */
ATT_INLINE __m256 dot8_rows(const float *q, __m256 qt, __m256 tmask, const float *const r[8],
                            size_t hs)
{
    __m256 q0 = _mm256_loadu_ps(q);
    __m256 p0 = _mm256_mul_ps(q0, _mm256_loadu_ps(r[0]));
    __m256 p1 = _mm256_mul_ps(q0, _mm256_loadu_ps(r[1]));
    __m256 p2 = _mm256_mul_ps(q0, _mm256_loadu_ps(r[2]));
    __m256 p3 = _mm256_mul_ps(q0, _mm256_loadu_ps(r[3]));
    __m256 p4 = _mm256_mul_ps(q0, _mm256_loadu_ps(r[4]));
    __m256 p5 = _mm256_mul_ps(q0, _mm256_loadu_ps(r[5]));
    __m256 p6 = _mm256_mul_ps(q0, _mm256_loadu_ps(r[6]));
    __m256 p7 = _mm256_mul_ps(q0, _mm256_loadu_ps(r[7]));
    size_t i = 8;
    for (; i + 8 <= hs; i += 8) {
        __m256 qi = _mm256_loadu_ps(q + i);
        p0 = _mm256_fmadd_ps(qi, _mm256_loadu_ps(r[0] + i), p0);
        p1 = _mm256_fmadd_ps(qi, _mm256_loadu_ps(r[1] + i), p1);
        p2 = _mm256_fmadd_ps(qi, _mm256_loadu_ps(r[2] + i), p2);
        p3 = _mm256_fmadd_ps(qi, _mm256_loadu_ps(r[3] + i), p3);
        p4 = _mm256_fmadd_ps(qi, _mm256_loadu_ps(r[4] + i), p4);
        p5 = _mm256_fmadd_ps(qi, _mm256_loadu_ps(r[5] + i), p5);
        p6 = _mm256_fmadd_ps(qi, _mm256_loadu_ps(r[6] + i), p6);
        p7 = _mm256_fmadd_ps(qi, _mm256_loadu_ps(r[7] + i), p7);
    }
    if (i < hs) {
        size_t o = hs - 8;
        p0 = _mm256_fmadd_ps(qt, _mm256_and_ps(_mm256_loadu_ps(r[0] + o), tmask), p0);
        p1 = _mm256_fmadd_ps(qt, _mm256_and_ps(_mm256_loadu_ps(r[1] + o), tmask), p1);
        p2 = _mm256_fmadd_ps(qt, _mm256_and_ps(_mm256_loadu_ps(r[2] + o), tmask), p2);
        p3 = _mm256_fmadd_ps(qt, _mm256_and_ps(_mm256_loadu_ps(r[3] + o), tmask), p3);
        p4 = _mm256_fmadd_ps(qt, _mm256_and_ps(_mm256_loadu_ps(r[4] + o), tmask), p4);
        p5 = _mm256_fmadd_ps(qt, _mm256_and_ps(_mm256_loadu_ps(r[5] + o), tmask), p5);
        p6 = _mm256_fmadd_ps(qt, _mm256_and_ps(_mm256_loadu_ps(r[6] + o), tmask), p6);
        p7 = _mm256_fmadd_ps(qt, _mm256_and_ps(_mm256_loadu_ps(r[7] + o), tmask), p7);
    }
    /* h0123 = (row 0..3: lanes 0-3 summed | row 0..3: lanes 4-7 summed), h4567 likewise */
    __m256 h0123 = _mm256_hadd_ps(_mm256_hadd_ps(p0, p1), _mm256_hadd_ps(p2, p3));
    __m256 h4567 = _mm256_hadd_ps(_mm256_hadd_ps(p4, p5), _mm256_hadd_ps(p6, p7));
    __m256 lo = _mm256_blend_ps(h0123, h4567, 0xF0);
    __m256 hi = _mm256_permute2f128_ps(h0123, h4567, 0x21);
    return _mm256_add_ps(lo, hi);
}

/* Scores of the 8 rows r[0..7] divided by sqrtf(hs) as the reference (vsq). hs < 8: the
 * rows and q are copied into zero-padded blocks of 8 first. */
ATT_INLINE __m256 score8(const float *q, __m256 qt, __m256 tmask, const float *const r[8],
                         size_t hs, __m256 vsq)
{
    if (hs >= 8)
        return _mm256_div_ps(dot8_rows(q, qt, tmask, r, hs), vsq);
    float qb[8] = {0}, kb[8][8];
    memset(kb, 0, sizeof kb);
    memcpy(qb, q, hs * sizeof(float));
    for (size_t j = 0; j < 8; j++)
        memcpy(kb[j], r[j], hs * sizeof(float));
    const float *rb[8] = {kb[0], kb[1], kb[2], kb[3], kb[4], kb[5], kb[6], kb[7]};
    return _mm256_div_ps(dot8_rows(qb, qt, tmask, rb, 8), vsq);
}

/* The 8 rows from k on (a stride apart), the first np of them real, the rest repeating the
 * last real one (so every lane holds a real score). */
static inline void rows8(const float *r[8], const float *k, size_t stride, size_t np)
{
    r[0] = k;
    for (size_t j = 1; j < 8; j++)
        r[j] = j < np ? r[j - 1] + stride : r[j - 1];
}

/*
 * Weighted sums: out[c] = sum_t att[t] * values[t * stride + c] for the G 8-value columns
 * c0 .. c0 + G - 1 of the W = ceil(hs / 8) columns (column c at 8c, the last at hs - 8:
 * inside the row, overlapping its neighbour when hs % 8 != 0). C independent FMA
 * accumulators per column: position t goes to chain t % C; the chains are added at the end
 * as (c0 + c1) + (c2 + c3). divide (n_pos >= 8 only): att holds e_t and this loop first
 * replaces each block of 8 by e_t / sum (vsum), the reference's division; the block at
 * n_pos - 8 (overlapping the last full one when n_pos % 8 != 0) is divided before the loop
 * and stored after it, so no value is divided twice.
 */
ATT_INLINE void att_wsum(float *out, const float *values, size_t stride, size_t n_pos,
                         float *att, size_t last, const int G, const int C, const int divide,
                         __m256 vsum)
{
    /* columns 0 .. G-2 at 8c, column G-1 at last (8 (G-1), or hs - 8 for the head's last) */
    __m256 acc[4][8];
#pragma GCC unroll 4
    for (int k = 0; k < C; k++)
#pragma GCC unroll 8
        for (int c = 0; c < G; c++)
            acc[k][c] = _mm256_setzero_ps();
    const size_t full = n_pos - n_pos % 8;
    __m256 dlast = _mm256_setzero_ps();
    const size_t lastblk = n_pos >= 8 ? n_pos - 8 : 0; /* (divide: n_pos >= 8) */
    if (divide && full < n_pos)
        dlast = _mm256_div_ps(_mm256_loadu_ps(att + lastblk), vsum);
    const float *vt = values, *vl = values + last;
    const float *vt4 = vt + 4 * stride, *vl4 = vl + 4 * stride;
    const size_t s3 = 3 * stride, s8 = 8 * stride;
    size_t t = 0;
    for (; t < full; t += 8, vt += s8, vl += s8, vt4 += s8, vl4 += s8) {
        if (divide)
            _mm256_storeu_ps(att + t, _mm256_div_ps(_mm256_loadu_ps(att + t), vsum));
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) {
            __m256 a = _mm256_broadcast_ss(att + t + k);
            /* row k at base[k] + ks[k]: two bases, offsets of 0, 1, 2, 3 or 6 strides */
            const float *b = k == 4 || k == 5 || k == 7 ? vt4 : vt;
            const float *bl = k == 4 || k == 5 || k == 7 ? vl4 : vl;
            size_t ks = k == 0 || k == 4 ? 0
                      : k == 1 || k == 5 ? stride
                      : k == 2 ? 2 * stride
                      : k == 6 ? 2 * s3
                               : s3;
#pragma GCC unroll 8
            for (int c = 0; c + 1 < G; c++)
                acc[k % C][c] = _mm256_fmadd_ps(a, _mm256_loadu_ps(b + ks + 8 * c), acc[k % C][c]);
            acc[k % C][G - 1] = _mm256_fmadd_ps(a, _mm256_loadu_ps(bl + ks), acc[k % C][G - 1]);
        }
    }
    if (divide && full < n_pos)
        _mm256_storeu_ps(att + lastblk, dlast);
#pragma GCC unroll 8
    for (int k = 0; k < 7; k++) {
        if (t + (size_t)k >= n_pos)
            break;
        __m256 a = _mm256_broadcast_ss(att + t + k);
        size_t ks = (size_t)k * stride;
#pragma GCC unroll 8
        for (int c = 0; c + 1 < G; c++)
            acc[k % C][c] = _mm256_fmadd_ps(a, _mm256_loadu_ps(vt + ks + 8 * c), acc[k % C][c]);
        acc[k % C][G - 1] = _mm256_fmadd_ps(a, _mm256_loadu_ps(vl + ks), acc[k % C][G - 1]);
    }
#pragma GCC unroll 8
    for (int c = 0; c < G; c++) {
        __m256 o = acc[0][c];
        if (C == 2)
            o = _mm256_add_ps(acc[0][c], acc[1][c]);
        else if (C == 4)
            o = _mm256_add_ps(_mm256_add_ps(acc[0][c], acc[1][c]),
                              _mm256_add_ps(acc[2][c], acc[3][c]));
        _mm256_storeu_ps(out + (c + 1 < G ? 8 * (size_t)c : last), o);
    }
}

/* All the weighted sums (hs >= 8), in groups of up to 8 columns; divide as att_wsum, only
 * when every column is in one group (W <= 8). */
#define ATT_WSUM_CASES(DIV)                                                                  \
    switch (G) {                                                                             \
    case 1: att_wsum(o, v, stride, n_pos, att, last, 1, 4, DIV, vsum); break;                \
    case 2: att_wsum(o, v, stride, n_pos, att, last, 2, 4, DIV, vsum); break;                \
    case 3: att_wsum(o, v, stride, n_pos, att, last, 3, 2, DIV, vsum); break;                \
    case 4: att_wsum(o, v, stride, n_pos, att, last, 4, 2, DIV, vsum); break;                \
    case 5: att_wsum(o, v, stride, n_pos, att, last, 5, 2, DIV, vsum); break;                \
    case 6: att_wsum(o, v, stride, n_pos, att, last, 6, 2, DIV, vsum); break;                \
    case 7: att_wsum(o, v, stride, n_pos, att, last, 7, 1, DIV, vsum); break;                \
    default: att_wsum(o, v, stride, n_pos, att, last, 8, 1, DIV, vsum); break;               \
    }

static void att_wsums(float *out, const float *values, size_t stride, size_t n_pos, float *att,
                      size_t hs, int divide, __m256 vsum)
{
    const size_t W = (hs + 7) / 8;
    if (divide && W <= 8) {
        float *o = out;
        const float *v = values;
        size_t G = W, last = hs - 8;
        ATT_WSUM_CASES(1)
        return;
    }
    if (divide) {
        for (size_t t = 0; t + 8 <= n_pos; t += 8)
            _mm256_storeu_ps(att + t, _mm256_div_ps(_mm256_loadu_ps(att + t), vsum));
        for (size_t t = n_pos - n_pos % 8; t < n_pos; t++)
            att[t] /= _mm256_cvtss_f32(vsum);
    }
    /* groups of up to 8 columns: the head from column c0 on, as a head of its own */
    for (size_t c0 = 0; c0 < W;) {
        float *o = out + 8 * c0;
        const float *v = values + 8 * c0;
        size_t G = W - c0 < 8 ? W - c0 : 8;
        /* the last column relative to column c0: hs - 8 - 8 c0 >= 8 (G - 1) - 7 can be
         * negative only for G == 1, where it is the group's only column */
        if (c0 + G == W && hs - 8 < 8 * c0) {
            o = out + hs - 8;
            v = values + hs - 8;
        }
        size_t last = c0 + G == W ? hs - 8 - (size_t)(v - values) : 8 * (G - 1);
        ATT_WSUM_CASES(0)
        c0 += G;
    }
}

/*
 * n_pos < 8 or head_size < 8: the n_pos % 8 positions past the last multiple of 8 are
 * scored as rows repeating the last one and kept in a vector between the passes; the
 * probabilities are stored, then the weighted sums (head_size < 8: one sequential fmaf chain
 * per output value).
 */
static void att_general(float *out, const float *q, const float *keys, const float *values,
                        size_t stride, size_t n_pos, size_t hs, float *att, __m256 vsq)
{
    const size_t full = n_pos - n_pos % 8, rest = n_pos % 8;
    __m256 tmask = _mm256_setzero_ps(), qt = tmask;
    if (hs >= 8) {
        tmask = lanes_from(hs % 8);
        qt = _mm256_and_ps(_mm256_loadu_ps(q + hs - 8), tmask);
    }
    const float *r[8];
    __m256 vmax = _mm256_set1_ps(-INFINITY), tail = _mm256_setzero_ps();
    for (size_t t = 0; t < full; t += 8) {
        rows8(r, keys + t * stride, stride, 8);
        __m256 s = score8(q, qt, tmask, r, hs, vsq);
        _mm256_storeu_ps(att + t, s);
        vmax = _mm256_max_ps(vmax, s);
    }
    if (rest > 0) {
        rows8(r, keys + full * stride, stride, rest);
        tail = score8(q, qt, tmask, r, hs, vsq);
        vmax = _mm256_max_ps(vmax, tail);
    }
    const __m256 vm = _mm256_set1_ps(hmax8(vmax));
    __m256 acc = _mm256_setzero_ps();
    for (size_t t = 0; t < full; t += 8) {
        __m256 e = exp8_nonpos(_mm256_sub_ps(_mm256_loadu_ps(att + t), vm));
        _mm256_storeu_ps(att + t, e);
        acc = _mm256_add_ps(acc, e);
    }
    if (rest > 0) {
        tail = exp8_nonpos(_mm256_sub_ps(tail, vm));
        acc = _mm256_add_ps(acc, _mm256_and_ps(tail, lanes_below(rest)));
    }
    const __m256 vsum = _mm256_set1_ps(q_hsum8(acc));
    for (size_t t = 0; t < full; t += 8)
        _mm256_storeu_ps(att + t, _mm256_div_ps(_mm256_loadu_ps(att + t), vsum));
    if (rest > 0) {
        float buf[8];
        _mm256_storeu_ps(buf, _mm256_div_ps(tail, vsum));
        memcpy(att + full, buf, rest * sizeof(float));
    }
    if (hs >= 8) {
        att_wsums(out, values, stride, n_pos, att, hs, 0, vsum);
        return;
    }
    for (size_t i = 0; i < hs; i++) {
        float o = 0.0f;
        for (size_t t = 0; t < n_pos; t++)
            o = fmaf(att[t], values[t * stride + i], o);
        out[i] = o;
    }
}

/* Scores for n_pos >= 8, hs >= 8: blocks of 8 from 0, then (n_pos % 8 != 0) the block at
 * n_pos - 8, overlapping the last full one: its overlapping lanes are computed again, to the
 * same values (a score does not depend on its lane). Returns the lane-wise maximum. */
ATT_INLINE __m256 att_scores(float *att, const float *q, const float *keys, size_t stride,
                             size_t n_pos, size_t hs, __m256 vsq)
{
    const __m256 tmask = lanes_from(hs % 8);
    const __m256 qt = _mm256_and_ps(_mm256_loadu_ps(q + hs - 8), tmask);
    __m256 vmax = _mm256_set1_ps(-INFINITY);
    size_t t = 0;
    for (; t + 8 <= n_pos; t += 8) {
        const float *k = keys + t * stride;
        const float *r[8] = {k,
                             k + stride,
                             k + 2 * stride,
                             k + 3 * stride,
                             k + 4 * stride,
                             k + 5 * stride,
                             k + 6 * stride,
                             k + 7 * stride};
        __m256 s = _mm256_div_ps(dot8_rows(q, qt, tmask, r, hs), vsq);
        _mm256_storeu_ps(att + t, s);
        vmax = _mm256_max_ps(vmax, s);
    }
    if (t < n_pos) { /* the last, overlapping block */
        const float *r[8];
        rows8(r, keys + (n_pos - 8) * stride, stride, 8);
        __m256 s = _mm256_div_ps(dot8_rows(q, qt, tmask, r, hs), vsq);
        _mm256_storeu_ps(att + n_pos - 8, s);
        vmax = _mm256_max_ps(vmax, s);
    }
    return vmax;
}

/*
 * One head (n_pos >= 8, head_size >= 8) in three passes over att:
 *   1. scores, 8 positions at a time (dot8_rows), divided by sqrtf(head_size) as the
 *      reference, and their lane-wise maximum;
 *   2. e_t = exp(score_t - max) and their sum: one 8-lane accumulator over the blocks of 8,
 *      starting with the positions past the last full block (the block at n_pos - 8 with the
 *      lanes already in a full block masked; computed first, stored last), lanes summed by
 *      hsum8;
 *   3. att_t = e_t / sum (the reference's division) fused into the weighted sums (att_wsum).
 * n_pos < 8 or head_size < 8: att_general. Nothing is read outside q[0, hs),
 * keys/values[0, (n_pos - 1) * stride + hs), att[0, n_pos).
 * The maximum of the non-NaN scores is exact in any order; a NaN score makes the sum, hence
 * every probability, NaN (as in the reference) whichever value the maximum takes (a NaN in
 * one lane can hide earlier larger values of that lane: x - max > 0 then, which only
 * exp8_nonpos's result for it, irrelevant beside the NaN, depends on). Otherwise every
 * x - max is <= 0 or NaN (-inf - -inf, inf - inf), as exp8_nonpos requires.
 */
void q_avx2_attention(float *out, const float *q, const float *keys, const float *values,
                      size_t stride, size_t n_pos, size_t head_size, float *att)
{
    if (n_pos == 0) {
        memset(out, 0, head_size * sizeof(float));
        return;
    }
    const size_t hs = head_size;
    const __m256 vsq = _mm256_set1_ps(sqrtf((float)hs));
    if (n_pos < 8 || hs < 8) {
        att_general(out, q, keys, values, stride, n_pos, hs, att, vsq);
        return;
    }
    __m256 vmax = hs == 8 ? att_scores(att, q, keys, stride, n_pos, 8, vsq)
                          : att_scores(att, q, keys, stride, n_pos, hs, vsq);

    const __m256 vm = _mm256_set1_ps(hmax8(vmax));
    const size_t full = n_pos - n_pos % 8, rest = n_pos % 8;
    __m256 acc = _mm256_setzero_ps(), elast = acc;
    if (rest > 0) {
        elast = exp8_nonpos(_mm256_sub_ps(_mm256_loadu_ps(att + n_pos - 8), vm));
        acc = _mm256_and_ps(elast, lanes_from(rest));
    }
    for (size_t t = 0; t < full; t += 8) {
        __m256 e = exp8_nonpos(_mm256_sub_ps(_mm256_loadu_ps(att + t), vm));
        _mm256_storeu_ps(att + t, e);
        acc = _mm256_add_ps(acc, e);
    }
    if (rest > 0)
        _mm256_storeu_ps(att + n_pos - 8, elast);
    const __m256 vsum = _mm256_set1_ps(q_hsum8(acc));
    att_wsums(out, values, stride, n_pos, att, hs, 1, vsum);
}
