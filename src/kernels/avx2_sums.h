/*
 * The fixed horizontal-sum trees of the SIMD matmuls, shared by the AVX2 and AVX-512
 * tables (include only from files compiled with -mavx2). Their order is part of each
 * table's accumulation scheme: changing it changes results (see matmul_avx2.c).
 */
#ifndef QORUS_AVX2_SUMS_H
#define QORUS_AVX2_SUMS_H

#include <immintrin.h>

/* Sum of the 8 lanes in a fixed order: (low half + high half), then (+ movehl), then
 * (+ movehdup), i.e. ((l0+l4) + (l2+l6)) + ((l1+l5) + (l3+l7)). */
static inline __attribute__((always_inline)) float q_hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Lane k of the result = the (exact, int32) sum of the 8 lanes of v[k]: an hadd tree. The
 * callers' sums are block sums of int8 products, far from overflowing. */
static inline __attribute__((always_inline)) __m256i q_sum8x8(const __m256i *v)
{
    __m256i a = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    __m256i b = _mm256_hadd_epi32(_mm256_hadd_epi32(v[4], v[5]), _mm256_hadd_epi32(v[6], v[7]));
    /* a: per 128-bit half, the half-sums of v0..v3; b: of v4..v7 */
    return _mm256_add_epi32(_mm256_permute2x128_si256(a, b, 0x20),
                            _mm256_permute2x128_si256(a, b, 0x31));
}

#endif
