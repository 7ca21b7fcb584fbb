/*
 * Building blocks of the forward pass that are not kernels: F16 conversion, the tensor
 * check, row dequantization, and the public q_matvec / q_rmsnorm / q_softmax, thin
 * wrappers over the reference kernel table (src/kernels/ref.c, where the weight layouts
 * are documented). Data may be unaligned (file offsets): every load goes through memcpy
 * or bytes; the host is assumed little-endian, as the file formats are.
 */
#include "qorus_infer.h"

#include <string.h>

#include "core/checked.h"
#include "kernels/kernels_internal.h"

/* ---- F16 ---- */

/* q_f16_to_f32 is the model module's (qorus_model.h). */

uint16_t q_f32_to_f16(float f)
{
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    uint16_t sign = (uint16_t)((bits >> 16) & 0x8000u);
    uint32_t exp = (bits >> 23) & 0xffu;
    uint32_t mant = bits & 0x7fffffu;
    if (exp == 0xff) /* inf or NaN (quiet bit forced so NaN stays NaN) */
        return (uint16_t)(sign | 0x7c00u | (mant ? 0x200u | (mant >> 13) : 0));
    int32_t e = (int32_t)exp - 127 + 15;
    if (e >= 31)
        return (uint16_t)(sign | 0x7c00u);
    if (e <= 0) { /* subnormal or zero in half precision */
        if (e < -10)
            return sign;
        mant |= 0x800000u;
        uint32_t shift = (uint32_t)(14 - e);
        uint32_t half = mant >> shift;
        uint32_t rem = mant & ((1u << shift) - 1);
        uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1u)))
            half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = ((uint32_t)e << 10) | (mant >> 13);
    uint32_t rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (half & 1u)))
        half++; /* may carry into the exponent, up to infinity: correct */
    return (uint16_t)(sign | half);
}

uint16_t q_f32_to_bf16(float f)
{
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    if ((bits & 0x7fffffffu) > 0x7f800000u) /* NaN: keep sign and top payload, force quiet */
        return (uint16_t)((bits >> 16) | 0x40u);
    /* round to nearest even on the 16 dropped bits; a carry may reach infinity: correct */
    uint32_t rounded = bits + 0x7fffu + ((bits >> 16) & 1u);
    return (uint16_t)(rounded >> 16);
}

/* ---- RMSNorm, softmax: the reference kernels (src/kernels/ref.c) ---- */

void q_rmsnorm(float *out, const float *x, const float *weight, size_t n, float eps)
{
    q_kernels_scalar()->rmsnorm(out, x, weight, n, eps);
}

void q_softmax(float *x, size_t n)
{
    q_kernels_scalar()->softmax(x, n);
}

/* ---- tensors ---- */

q_error_code q_tensor_check(const q_tensor *t)
{
    if (t == NULL)
        return Q_ERR_INVALID_ARG;
    if (t->data == NULL || t->rows == 0 || t->cols == 0)
        return Q_ERR_BAD_SHAPE;
    size_t count;
    if (!q_mul_size(t->rows, t->cols, &count))
        return Q_ERR_OVERFLOW;
    switch (t->type) {
    case Q_TENSOR_F32:
    case Q_TENSOR_F16:
    case Q_TENSOR_BF16:
        return Q_OK;
    case Q_TENSOR_Q8_0:
    case Q_TENSOR_Q4_0:
        if ((t->cols & (Q_QBLOCK - 1)) != 0 || t->group_size != Q_QBLOCK)
            return Q_ERR_BAD_SHAPE;
        return Q_OK;
    case Q_TENSOR_Q4_K:
    case Q_TENSOR_Q5_K:
    case Q_TENSOR_Q6_K:
        if (t->cols % Q_QK_K != 0 || t->group_size != Q_QK_K)
            return Q_ERR_BAD_SHAPE;
        return Q_OK;
    case Q_TENSOR_Q8_SPLIT:
        if (t->scales == NULL || t->group_size == 0 || count % t->group_size != 0)
            return Q_ERR_BAD_SHAPE;
        return Q_OK;
    }
    return Q_ERR_UNSUPPORTED_TYPE;
}

/* Dequantizes elements [col0, col0+n) of row `row` (no checks). */
static void dequant_span(float *out, const q_tensor *t, size_t row, size_t col0, size_t n)
{
    const unsigned char *base = (const unsigned char *)t->data;
    size_t e0 = row * t->cols + col0; /* flat index of the first element */
    switch (t->type) {
    case Q_TENSOR_F32:
        memcpy(out, base + e0 * 4, n * 4);
        break;
    case Q_TENSOR_F16:
        for (size_t j = 0; j < n; j++)
            out[j] = q_load_f16(base + (e0 + j) * 2);
        break;
    case Q_TENSOR_BF16:
        for (size_t j = 0; j < n; j++)
            out[j] = q_load_bf16(base + (e0 + j) * 2);
        break;
    case Q_TENSOR_Q8_0: {
        size_t row_bytes = t->cols / Q_QBLOCK * Q_Q8_0_BLOCK_BYTES;
        const unsigned char *r = base + row * row_bytes;
        for (size_t j = 0; j < n; j++) {
            size_t c = col0 + j;
            const unsigned char *blk = r + c / Q_QBLOCK * Q_Q8_0_BLOCK_BYTES;
            int8_t q;
            memcpy(&q, blk + 2 + c % Q_QBLOCK, 1);
            out[j] = q_load_f16(blk) * (float)q;
        }
        break;
    }
    case Q_TENSOR_Q4_0: {
        const unsigned char *r = base + row * (t->cols / Q_QBLOCK * Q_Q4_0_BLOCK_BYTES);
        for (size_t j = 0; j < n; j++) {
            size_t c = col0 + j;
            const unsigned char *blk = r + c / Q_QBLOCK * Q_Q4_0_BLOCK_BYTES;
            out[j] = q_load_f16(blk) * (float)q_q4_0_code(blk, c % Q_QBLOCK);
        }
        break;
    }
    case Q_TENSOR_Q6_K: {
        const unsigned char *r = base + row * (t->cols / Q_QK_K * Q_Q6_K_BLOCK_BYTES);
        for (size_t j = 0; j < n; j++) {
            size_t c = col0 + j;
            const unsigned char *blk = r + c / Q_QK_K * Q_Q6_K_BLOCK_BYTES;
            int w = (int)(int8_t)blk[Q_Q6_K_SCALES + c % Q_QK_K / 16] *
                    (int)q_q6_k_code(blk, c % Q_QK_K);
            out[j] = q_load_f16(blk + Q_Q6_K_D) * (float)w;
        }
        break;
    }
    case Q_TENSOR_Q4_K:
    case Q_TENSOR_Q5_K: {
        int q4 = t->type == Q_TENSOR_Q4_K;
        size_t bb = q4 ? Q_Q4_K_BLOCK_BYTES : Q_Q5_K_BLOCK_BYTES;
        const unsigned char *r = base + row * (t->cols / Q_QK_K * bb);
        for (size_t j = 0; j < n; j++) {
            size_t c = col0 + j;
            const unsigned char *blk = r + c / Q_QK_K * bb;
            unsigned sc, m;
            q_k_scale_min(blk + Q_QK_SCALES, c % Q_QK_K / 32, &sc, &m);
            unsigned code = q4 ? q_q4_k_code(blk, c % Q_QK_K) : q_q5_k_code(blk, c % Q_QK_K);
            out[j] = q_load_f16(blk) * (float)(sc * code) - q_load_f16(blk + 2) * (float)m;
        }
        break;
    }
    case Q_TENSOR_Q8_SPLIT: {
        const unsigned char *sc = (const unsigned char *)t->scales;
        for (size_t j = 0; j < n; j++) {
            int8_t q;
            memcpy(&q, base + e0 + j, 1);
            out[j] = (float)q * q_load_f32(sc + (e0 + j) / t->group_size * 4);
        }
        break;
    }
    }
}

q_error_code q_tensor_row(float *out, const q_tensor *t, size_t row)
{
    q_error_code err = q_tensor_check(t);
    if (err != Q_OK)
        return err;
    if (out == NULL || row >= t->rows)
        return Q_ERR_INVALID_ARG;
    dequant_span(out, t, row, 0, t->cols);
    return Q_OK;
}

/* ---- matrix-vector product: the reference matmul on float activations ---- */

q_error_code q_matvec(float *out, const q_tensor *t, const float *x, size_t n_in)
{
    q_error_code err = q_tensor_check(t);
    if (err != Q_OK)
        return err;
    if (out == NULL || x == NULL)
        return Q_ERR_INVALID_ARG;
    if (n_in != t->cols)
        return Q_ERR_BAD_SHAPE;
    q_act act = {.f = x, .q = NULL, .d = NULL, .cols = n_in, .n_rows = 1};
    q_kernels_scalar()->matmul(out, t->rows, t, 0, t->rows, &act);
    return Q_OK;
}
