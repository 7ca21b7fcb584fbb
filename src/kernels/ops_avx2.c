/*
 * AVX2 + FMA element-wise kernels: RMSNorm, softmax, SwiGLU, RoPE and one attention head.
 * Contracts: the q_kernels fields of the same names (qorus_kernels.h); the reference is
 * src/kernels/ref.c; error bounds and their derivation: docs/kernels.md.
 *
 * Every loop starts at index 0 and uses unaligned loads and stores, 8 floats at a time; the
 * last n % 8 values go through a small local block (copied in, computed as a full vector,
 * copied back), so no kernel reads or writes outside its buffers, and results depend only
 * on the input values: not on the alignment of the buffers, nor on anything else.
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

#include "kernels/kernels_internal.h"

/* Products and sums stay separately rounded where this file writes them separately (RoPE
 * is bitwise identical to the reference only then); FMA is used only through intrinsics. */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

/* ---- helpers ---- */

/* Sum of the 8 lanes in a fixed order: (l0+l4) + (l2+l6) + (l1+l5) + (l3+l7) pairwise. */
static inline float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

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

static inline __m256 exp8(__m256 x)
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
    __m256 xc = _mm256_min_ps(hi, _mm256_max_ps(lo, x));
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

    y = _mm256_blendv_ps(y, _mm256_set1_ps(INFINITY), _mm256_cmp_ps(x, hi, _CMP_GT_OQ));
    y = _mm256_blendv_ps(y, _mm256_setzero_ps(),
                         _mm256_cmp_ps(x, _mm256_set1_ps(EXP_UNDERFLOW), _CMP_LT_OQ));
    return y;
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
    float ss = hsum8(_mm256_add_ps(acc0, acc1)) + tail;
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
    float sum = hsum8(_mm256_add_ps(acc0, acc1)) + tail;

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

/* ---- attention (one head) ---- */

/* dot(q, k) over hs values: two 8-lane FMA accumulators, the last hs % 8 values through a
 * zero-padded block, lanes summed in a fixed order. */
static inline float dot_hs(const float *q, const float *k, size_t hs)
{
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= hs; i += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(k + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), _mm256_loadu_ps(k + i + 8), acc1);
    }
    if (i + 8 <= hs) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(k + i), acc0);
        i += 8;
    }
    if (i < hs) {
        float qb[8] = {0}, kb[8] = {0};
        memcpy(qb, q + i, (hs - i) * sizeof(float));
        memcpy(kb, k + i, (hs - i) * sizeof(float));
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(qb), _mm256_loadu_ps(kb), acc1);
    }
    return hsum8(_mm256_add_ps(acc0, acc1));
}

/*
 * Scores divided by sqrtf(head_size) as the reference, softmax above, then for each block of
 * 8 output values the weighted sum over positions in order t = 0, 1, ... with one FMA per
 * position (the last head_size % 8 values with scalar fmaf: the same arithmetic).
 */
void q_avx2_attention(float *out, const float *q, const float *keys, const float *values,
                      size_t stride, size_t n_pos, size_t head_size, float *att)
{
    float sqrt_head_size = sqrtf((float)head_size);
    for (size_t t = 0; t < n_pos; t++)
        att[t] = dot_hs(q, keys + t * stride, head_size) / sqrt_head_size;
    q_avx2_softmax(att, n_pos);

    size_t i = 0;
    for (; i + 16 <= head_size; i += 16) {
        __m256 o0 = _mm256_setzero_ps(), o1 = _mm256_setzero_ps();
        for (size_t t = 0; t < n_pos; t++) {
            const float *vt = values + t * stride + i;
            __m256 a = _mm256_set1_ps(att[t]);
            o0 = _mm256_fmadd_ps(a, _mm256_loadu_ps(vt), o0);
            o1 = _mm256_fmadd_ps(a, _mm256_loadu_ps(vt + 8), o1);
        }
        _mm256_storeu_ps(out + i, o0);
        _mm256_storeu_ps(out + i + 8, o1);
    }
    for (; i + 8 <= head_size; i += 8) {
        __m256 o = _mm256_setzero_ps();
        for (size_t t = 0; t < n_pos; t++)
            o = _mm256_fmadd_ps(_mm256_set1_ps(att[t]), _mm256_loadu_ps(values + t * stride + i), o);
        _mm256_storeu_ps(out + i, o);
    }
    for (; i < head_size; i++) {
        float o = 0.0f;
        for (size_t t = 0; t < n_pos; t++)
            o = fmaf(att[t], values[t * stride + i], o);
        out[i] = o;
    }
}
