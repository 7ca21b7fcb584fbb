/*
 * The quantized weight layouts of ggml (Q8_0, Q4_0, Q4_K, Q5_K, Q6_K): block sizes, byte
 * offsets, and how to read one weight's code and its sub-block's scale. Shared by the
 * kernel tables (kernels_internal.h) and the model's row reader (model.c); the GGUF
 * parser (gguf.c) validates the sizes these imply. Needs nothing but <stdint.h>.
 */
#ifndef QORUS_QUANT_LAYOUT_H
#define QORUS_QUANT_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#define Q_Q8_0_BLOCK_BYTES 34u /* binary16 scale + 32 int8 */
#define Q_Q4_0_BLOCK_BYTES 18u /* binary16 scale + 16 bytes of two 4-bit codes */

/* Weight j (0..31) of a Q4_0 block as its int8 code in [-8, 7]: j < 16 is the low nibble
 * of byte j, j >= 16 the high nibble of byte j - 16 (ggml's order), minus 8. */
static inline int8_t q_q4_0_code(const unsigned char *blk, size_t j)
{
    unsigned char b = blk[2 + (j & 15u)];
    return (int8_t)((j < 16 ? b & 15u : b >> 4) - 8);
}

/*
 * Q6_K super-block of 256 weights (210 bytes, ggml's block_q6_K): ql[128] (low 4 bits of
 * the codes), qh[64] (their high 2 bits), int8 scales[16] (one per 16 weights), binary16 d
 * at byte 208. Weight j is d * scales[j / 16] * (code_j - 32), where for j = 128h + 32q + l
 * (h < 2, q < 4, l < 32) the code's low 4 bits are the low (q < 2) or high (q >= 2) nibble
 * of ql[64h + 32(q % 2) + l] and its high 2 bits are bits 2q, 2q + 1 of qh[32h + l].
 */
#define Q_QK_K 256u
#define Q_Q6_K_BLOCK_BYTES 210u
#define Q_Q6_K_SCALES 192u /* byte offset of scales[16] */
#define Q_Q6_K_D 208u      /* byte offset of d */

/* Weight j (0..255) of a Q6_K super-block as its code minus 32, in [-32, 31] */
static inline int8_t q_q6_k_code(const unsigned char *blk, size_t j)
{
    size_t h = j / 128, q = j % 128 / 32, l = j % 32;
    unsigned lo = blk[64 * h + 32 * (q % 2) + l];
    lo = q < 2 ? lo & 15u : lo >> 4;
    unsigned hi = (blk[128 + 32 * h + l] >> (2 * q)) & 3u;
    return (int8_t)((int)(lo | hi << 4) - 32);
}

/*
 * Q4_K and Q5_K super-blocks of 256 weights (ggml's block_q4_K, 144 bytes, and block_q5_K,
 * 176 bytes): binary16 d at byte 0, binary16 dmin at byte 2, scales[12] at byte 4 (eight
 * 6-bit scales sc and eight 6-bit mins m, one pair per 32-weight sub-block, packed as
 * q_k_scale_min reads them); Q5_K then has qh[32] at byte 16 (bit s of qh[l] is the fifth
 * code bit of weight l of sub-block s); then qs[128] (Q4_K at byte 16, Q5_K at byte 48):
 * weight l of sub-block s has its low 4 code bits in the low (s even) or high (s odd)
 * nibble of qs[32 * (s / 2) + l]. Weight value: d * sc_s * code - dmin * m_s, code in
 * [0, 15] (Q4_K) or [0, 31] (Q5_K).
 */
#define Q_Q4_K_BLOCK_BYTES 144u
#define Q_Q5_K_BLOCK_BYTES 176u
#define Q_QK_SCALES 4u /* byte offset of scales[12] in both */
#define Q_Q4_K_QS 16u
#define Q_Q5_K_QH 16u
#define Q_Q5_K_QS 48u

/* The 6-bit scale and min of sub-block s (0..7) from a K super-block's scales[12]: for
 * s < 4 the low 6 bits of scales[s] and scales[s + 4]; for s >= 4 the low nibble (scale) or
 * high nibble (min) of scales[s + 4], with the top 2 bits of scales[s - 4] (scale) or
 * scales[s] (min) above it. */
static inline void q_k_scale_min(const unsigned char *scales, size_t s, unsigned *sc,
                                 unsigned *m)
{
    if (s < 4) {
        *sc = scales[s] & 63u;
        *m = scales[s + 4] & 63u;
    } else {
        *sc = (scales[s + 4] & 15u) | (unsigned)(scales[s - 4] >> 6) << 4;
        *m = (unsigned)(scales[s + 4] >> 4) | (unsigned)(scales[s] >> 6) << 4;
    }
}

/* Weight j (0..255) of a Q4_K super-block as its 4-bit code, in [0, 15] */
static inline uint8_t q_q4_k_code(const unsigned char *blk, size_t j)
{
    size_t s = j / 32, l = j % 32;
    unsigned b = blk[Q_Q4_K_QS + 32 * (s / 2) + l];
    return (uint8_t)(s % 2 == 0 ? b & 15u : b >> 4);
}

/* Weight j (0..255) of a Q5_K super-block as its 5-bit code, in [0, 31] */
static inline uint8_t q_q5_k_code(const unsigned char *blk, size_t j)
{
    size_t s = j / 32, l = j % 32;
    unsigned b = blk[Q_Q5_K_QS + 32 * (s / 2) + l];
    unsigned lo = s % 2 == 0 ? b & 15u : b >> 4;
    return (uint8_t)(lo | ((blk[Q_Q5_K_QH + l] >> s) & 1u) << 4);
}

#endif /* QORUS_QUANT_LAYOUT_H */
