/*
 * Helpers shared by the kernel tables (reference and per-instruction-set files): unaligned
 * little-endian loads and the one-value quantizer whose result every table must reproduce
 * bit for bit.
 */
#ifndef QORUS_KERNELS_INTERNAL_H
#define QORUS_KERNELS_INTERNAL_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "qorus_kernels.h"

#define Q_Q8_0_BLOCK_BYTES 34u /* binary16 scale + 32 int8 */
#define Q_Q4_0_BLOCK_BYTES 18u /* binary16 scale + 16 bytes of two 4-bit codes */

/* Weight j (0..31) of a Q4_0 block as its int8 code in [-8, 7]: j < 16 is the low nibble
 * of byte j, j >= 16 the high nibble of byte j - 16 (ggml's order), minus 8. */
static inline int8_t q_q4_0_code(const unsigned char *blk, size_t j)
{
    unsigned char b = blk[2 + (j & 15u)];
    return (int8_t)((j < 16 ? b & 15u : b >> 4) - 8);
}

static inline float q_load_f32(const unsigned char *p)
{
    float f;
    memcpy(&f, p, sizeof f);
    return f;
}

static inline float q_load_f16(const unsigned char *p)
{
    return q_f16_to_f32((uint16_t)(p[0] | (p[1] << 8)));
}

static inline float q_load_bf16(const unsigned char *p)
{
    return q_bf16_to_f32((uint16_t)(p[0] | (p[1] << 8)));
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

/* x * inv rounded to nearest (ties to even), clamped to [-127, 127]; NaN gives 0. */
static inline int8_t q_quantize_one(float x, float inv)
{
    float v = nearbyintf(x * inv);
    if (!(v == v))
        return 0;
    if (v > 127.0f)
        v = 127.0f;
    if (v < -127.0f)
        v = -127.0f;
    return (int8_t)v;
}

/* The AVX2 table (table_avx2.c), defined only when QORUS_HAVE_AVX2, and its entries:
 * matmul_avx2.c (quantize_q8, matmul) and ops_avx2.c (the element-wise kernels). Their
 * contracts are those of the q_kernels fields of the same names (qorus_kernels.h). */
const q_kernels *q_kernels_avx2_table(void);
void q_avx2_quantize_q8(int8_t *q, float *d, const float *x, size_t n);
void q_avx2_matmul(float *out, size_t out_stride, const q_tensor *w, size_t r0, size_t r1,
                   const q_act *x);
void q_avx2_rmsnorm(float *out, const float *x, const float *weight, size_t n, float eps);
void q_avx2_softmax(float *x, size_t n);
void q_avx2_swiglu(float *gate, const float *up, size_t n);
void q_avx2_rope(float *vec, size_t n, size_t head_size, const float *cos_p,
                 const float *sin_p);
void q_avx2_attention(float *out, const float *q, const float *keys, const float *values,
                      size_t stride, size_t n_pos, size_t head_size, float *att);

/* The AVX-512 table (table_avx512.c), defined only when QORUS_HAVE_AVX512: the AVX2
 * element-wise kernels and quantize_q8 with the AVX-512 matmul (matmul_avx512.c). */
const q_kernels *q_kernels_avx512_table(void);
void q_avx512_matmul(float *out, size_t out_stride, const q_tensor *w, size_t r0, size_t r1,
                     const q_act *x);

#endif
