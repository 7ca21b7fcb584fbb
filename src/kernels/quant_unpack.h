/*
 * Unpacking of the sub-byte weight formats into int8 codes, 32 weights (one activation
 * block) at a time, shared by the SIMD tables (matmul_avx2.c, matmul_avx512.c: both are
 * compiled with AVX2 enabled). The layouts are documented in kernels_internal.h; the
 * scalar reference reads the same codes one at a time (q_q4_0_code, q_q6_k_code,
 * q_q4_k_code, q_q5_k_code, q_k_scale_min).
 */
#ifndef QORUS_QUANT_UNPACK_H
#define QORUS_QUANT_UNPACK_H

#include <immintrin.h>

#include "kernels/kernels_internal.h"

/* The 32 weights of a Q4_0 block (its 16 code bytes at qs) as int8 codes in [-8, 7], in
 * weight order: low nibbles are weights 0..15, high nibbles 16..31. */
static inline __attribute__((always_inline)) __m256i q_unpack_q4_0(const unsigned char *qs)
{
    const __m128i low4 = _mm_set1_epi8(15);
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)qs);
    __m128i lo = _mm_and_si128(v, low4), hi = _mm_and_si128(_mm_srli_epi16(v, 4), low4);
    return _mm256_sub_epi8(_mm256_set_m128i(hi, lo), _mm256_set1_epi8(8));
}

/* Weights 32k .. 32k+31 (k < 8) of the Q6_K super-block at sb as int8 codes in [-32, 31]:
 * with h = k / 4, q = k % 4, the low 4 bits are the low (q < 2) or high nibbles of
 * ql[64h + 32(q % 2) ..], the high 2 bits are bits 2q, 2q+1 of qh[32h ..]. */
static inline __attribute__((always_inline)) __m256i q_unpack_q6_k(const unsigned char *sb,
                                                                    size_t k)
{
    size_t h = k / 4, q = k % 4;
    const __m256i low4 = _mm256_set1_epi8(15), low2 = _mm256_set1_epi8(3);
    __m256i ql = _mm256_loadu_si256((const __m256i *)(const void *)(sb + 64 * h + 32 * (q % 2)));
    __m256i qh = _mm256_loadu_si256((const __m256i *)(const void *)(sb + 128 + 32 * h));
    /* 16-bit shifts, then byte masks: no bit of a neighbouring byte reaches the kept ones */
    __m256i lo = _mm256_and_si256(q < 2 ? ql : _mm256_srli_epi16(ql, 4), low4);
    __m256i hi = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128((int)(2 * q))), low2);
    return _mm256_sub_epi8(_mm256_or_si256(lo, _mm256_slli_epi16(hi, 4)), _mm256_set1_epi8(32));
}

/* Sub-block k (< 8) of the Q4_K super-block at sb as its 32 codes in [0, 15]: the low
 * (k even) or high (k odd) nibbles of qs[32 * (k / 2) ..]. */
static inline __attribute__((always_inline)) __m256i q_unpack_q4_k(const unsigned char *sb,
                                                                    size_t k)
{
    __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(sb + Q_Q4_K_QS + 32 * (k / 2)));
    return _mm256_and_si256(k % 2 == 0 ? v : _mm256_srli_epi16(v, 4), _mm256_set1_epi8(15));
}

/* Sub-block k (< 8) of the Q5_K super-block at sb as its 32 codes in [0, 31]: the Q4_K
 * nibbles of qs (at byte 48) plus 16 where bit k of qh[l] is set. */
static inline __attribute__((always_inline)) __m256i q_unpack_q5_k(const unsigned char *sb,
                                                                    size_t k)
{
    __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(sb + Q_Q5_K_QS + 32 * (k / 2)));
    __m256i lo = _mm256_and_si256(k % 2 == 0 ? v : _mm256_srli_epi16(v, 4), _mm256_set1_epi8(15));
    __m256i qh = _mm256_loadu_si256((const __m256i *)(const void *)(sb + Q_Q5_K_QH));
    __m256i bit = _mm256_set1_epi8((char)(1u << k));
    __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit); /* 0xff where set */
    return _mm256_or_si256(lo, _mm256_and_si256(set, _mm256_set1_epi8(16)));
}

/* The eight 6-bit scales (bytes 0..7 of the result) and mins (bytes 8..15) of a Q4_K /
 * Q5_K super-block's scales[12], as q_k_scale_min reads them one at a time: scales 0..3
 * and mins 0..3 are the low 6 bits of bytes 0..3 and 4..7; scale 4+i is the low nibble of
 * byte 8+i with the top 2 bits of byte i above it, min 4+i the high nibble of byte 8+i
 * with the top 2 bits of byte 4+i. */
static inline __attribute__((always_inline)) __m128i q_k_scales_mins(const unsigned char *scales)
{
    uint32_t w0, w1, w2; /* bytes 0-3, 4-7, 8-11 */
    memcpy(&w0, scales, 4);
    memcpy(&w1, scales + 4, 4);
    memcpy(&w2, scales + 8, 4);
    const uint32_t low6 = 0x3f3f3f3fu, low4 = 0x0f0f0f0fu, top2 = 0x03030303u;
    uint32_t sc_lo = w0 & low6, m_lo = w1 & low6;
    uint32_t sc_hi = (w2 & low4) | ((w0 >> 6) & top2) << 4;
    uint32_t m_hi = ((w2 >> 4) & low4) | ((w1 >> 6) & top2) << 4;
    return _mm_setr_epi32((int)sc_lo, (int)sc_hi, (int)m_lo, (int)m_hi);
}

#endif /* QORUS_QUANT_UNPACK_H */
