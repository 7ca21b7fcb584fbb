/*
 * Helpers shared by the kernel tables (reference and per-instruction-set files): unaligned
 * little-endian loads and the one-value quantizer whose result every table must reproduce
 * bit for bit; the quantized block layouts are in quant_layout.h.
 */
#ifndef QORUS_KERNELS_INTERNAL_H
#define QORUS_KERNELS_INTERNAL_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "qorus_kernels.h"

#include "kernels/quant_layout.h"

/*
 * Q_MCA_BEGIN(name, k) / Q_MCA_END(name, k): llvm-mca region markers ("name_k", k an integer
 * constant such as the weight type of an inlined copy) around the body of a decode kernel's
 * inner loop. They exist only when bench/mca.sh compiles a kernel file to assembly with
 * -DQ_MCA_MARKERS, for llvm-mca to report the loop's cycles per iteration on a CPU model: a
 * repeatable figure where time on this machine is not, and one for the AVX-512 loops, which
 * valgrind's CPU cannot run. A normal build has nothing there.
 */
#if defined(Q_MCA_MARKERS)
#define Q_MCA_BEGIN(name, k) __asm__ volatile("# LLVM-MCA-BEGIN " name "_%c0" ::"i"(k))
#define Q_MCA_END(name, k) __asm__ volatile("# LLVM-MCA-END " name "_%c0" ::"i"(k))
#else
#define Q_MCA_BEGIN(name, k) ((void)0)
#define Q_MCA_END(name, k) ((void)0)
#endif

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
void q_avx2_rope_neox(float *vec, size_t n, size_t head_size, const float *cos_p,
                      const float *sin_p);
void q_avx2_attention(float *out, const float *q, const float *keys, const float *values,
                      size_t stride, size_t n_pos, size_t head_size, float *att);

/* The AVX-512 table (table_avx512.c), defined only when QORUS_HAVE_AVX512: the AVX2
 * element-wise kernels and quantize_q8 with the AVX-512 matmul (matmul_avx512.c). */
const q_kernels *q_kernels_avx512_table(void);
void q_avx512_matmul(float *out, size_t out_stride, const q_tensor *w, size_t r0, size_t r1,
                     const q_act *x);

#endif
