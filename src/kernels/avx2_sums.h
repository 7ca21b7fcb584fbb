/*
 * The fixed horizontal-sum trees of the SIMD matmuls, shared by the AVX2 and AVX-512
 * tables (include only from files compiled with -mavx2). Their order is part of each
 * table's accumulation scheme: changing it changes results (see matmul_avx2.c).
 */
#ifndef QORUS_AVX2_SUMS_H
#define QORUS_AVX2_SUMS_H

#include <stddef.h>
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

/* q_sum8x8 when only v[0 .. nblocks) can be non-zero (the others are zero): the same
 * lanes, bitwise, without the hadds of all-zero pairs (a short last chunk of 1 or 2 blocks
 * takes 2 hadds, of 3 or 4 blocks 3, instead of 6, and one 128-bit add for the last step). */
static inline __attribute__((always_inline)) __m256i q_sum8x8_first(const __m256i *v,
                                                                     size_t nblocks)
{
    if (nblocks > 4)
        return q_sum8x8(v);
    __m256i a = nblocks > 2 ? _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]),
                                                _mm256_hadd_epi32(v[2], v[3]))
                            : _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]),
                                                _mm256_setzero_si256());
    /* q_sum8x8's last step with its second operand zero: the halves of a added in lanes
     * 0-3, zeros in 4-7 */
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
    return _mm256_set_m128i(_mm_setzero_si128(), s);
}

#endif
