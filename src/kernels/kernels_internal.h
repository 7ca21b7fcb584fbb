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

/* The AVX2 table (src/kernels/ files named ..._avx2.c), defined only when QORUS_HAVE_AVX2. */
const q_kernels *q_kernels_avx2_table(void);

#endif
