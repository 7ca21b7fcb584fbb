/*
 * The reference kernel table: plain, portable C, written for clarity. Every optimized
 * table is tested and fuzzed against this one (tests/kernels, fuzz/fuzz_kernels.c), and
 * QORUS_KERNELS=scalar makes the forward pass use it.
 *
 * Weight layouts (q_tensor, `rows` x `cols`, row-major; data may be unaligned: every load
 * goes through memcpy or bytes; the host is little-endian, as the file formats are):
 *   F32       rows*cols float32
 *   F16       rows*cols binary16
 *   BF16      rows*cols bfloat16 (the high half of a float32)
 *   Q8_0      per row cols/32 blocks of {binary16 scale d; int8 q[32]} (34 bytes)
 *   Q4_0      per row cols/32 blocks of {binary16 scale d; uint8 qs[16]} (18 bytes): weight
 *             j is d * (code - 8), code = low nibble of qs[j] for j < 16, high nibble of
 *             qs[j - 16] for j >= 16
 *   Q4_K,     per row cols/256 super-blocks (kernels_internal.h): weight l of 32-weight
 *   Q5_K      sub-block s is d * sc_s * code - dmin * m_s, 6-bit sc_s and m_s, 4-bit
 *             (Q4_K) or 5-bit (Q5_K) unsigned code
 *   Q6_K      per row cols/256 super-blocks (kernels_internal.h): weight j is
 *             d * scales[j / 16] * (6-bit code - 32)
 *   Q8_SPLIT  rows*cols int8 q, then rows*cols/group_size float32 scales; flat element e
 *             has scale[e / group_size]
 *
 * Sums run in float, in index order (as llama2.c's matmul). The integer path (quantized
 * activations, q_kernels_wants_q8) sums each 32-value block exactly in int32, then adds
 * (float)isum * (weight scale * activation scale) block by block in order. Q4_K / Q5_K
 * blocks (one sub-block each) have two exact sums, sc * sum(code * x) and m * sum(x), and
 * add (float)(sc * isum) * (d * xd) - (float)(m * xsum) * (dmin * xd).
 */
#include "qorus_kernels.h"

#include <math.h>
#include <string.h>

#include "kernels/kernels_internal.h"

/* ---- quantized activations ---- */

static void quantize_q8_ref(int8_t *q, float *d, const float *x, size_t n)
{
    for (size_t b = 0; b < n / Q_QBLOCK; b++) {
        const float *xb = x + b * Q_QBLOCK; /* (32) this block */
        float amax = 0.0f;
        for (size_t j = 0; j < Q_QBLOCK; j++) {
            float a = fabsf(xb[j]);
            if (a > amax) /* false for NaN: NaN is ignored */
                amax = a;
        }
        float scale = amax / 127.0f;
        float inv = scale != 0.0f ? 1.0f / scale : 0.0f;
        d[b] = scale;
        for (size_t j = 0; j < Q_QBLOCK; j++)
            q[b * Q_QBLOCK + j] = q_quantize_one(xb[j], inv);
    }
}

/* ---- matmul ---- */

/* W row (n F32) . x (n) */
static float dot_f32(const unsigned char *w, const float *x, size_t n)
{
    float val = 0.0f;
    for (size_t j = 0; j < n; j++)
        val += q_load_f32(w + j * 4) * x[j];
    return val;
}

/* W row (n F16) . x (n) */
static float dot_f16(const unsigned char *w, const float *x, size_t n)
{
    float val = 0.0f;
    for (size_t j = 0; j < n; j++)
        val += q_load_f16(w + j * 2) * x[j];
    return val;
}

/* W row (n BF16) . x (n) */
static float dot_bf16(const unsigned char *w, const float *x, size_t n)
{
    float val = 0.0f;
    for (size_t j = 0; j < n; j++)
        val += q_load_bf16(w + j * 2) * x[j];
    return val;
}

/* W row (n/32 Q8_0 blocks) . x (n float32), one block at a time */
static float dot_q8_0_float(const unsigned char *blk, const float *x, size_t n)
{
    float val = 0.0f;
    for (size_t b = 0; b < n / Q_QBLOCK; b++, blk += Q_Q8_0_BLOCK_BYTES) {
        const float *xb = x + b * Q_QBLOCK;
        float sum = 0.0f;
        for (size_t j = 0; j < Q_QBLOCK; j++)
            sum += (float)(int8_t)blk[2 + j] * xb[j];
        val += sum * q_load_f16(blk);
    }
    return val;
}

/* W row (n/32 Q8_0 blocks) . x (n int8 in blocks with scales xd) */
static float dot_q8_0_int(const unsigned char *blk, const int8_t *xq, const float *xd, size_t n)
{
    float val = 0.0f;
    for (size_t b = 0; b < n / Q_QBLOCK; b++, blk += Q_Q8_0_BLOCK_BYTES) {
        int32_t isum = 0;
        for (size_t j = 0; j < Q_QBLOCK; j++)
            isum += (int32_t)(int8_t)blk[2 + j] * (int32_t)xq[b * Q_QBLOCK + j];
        val += (float)isum * (q_load_f16(blk) * xd[b]);
    }
    return val;
}

/* W row (n/32 Q4_0 blocks) . x (n float32), one block at a time */
static float dot_q4_0_float(const unsigned char *blk, const float *x, size_t n)
{
    float val = 0.0f;
    for (size_t b = 0; b < n / Q_QBLOCK; b++, blk += Q_Q4_0_BLOCK_BYTES) {
        const float *xb = x + b * Q_QBLOCK;
        float sum = 0.0f;
        for (size_t j = 0; j < Q_QBLOCK; j++)
            sum += (float)q_q4_0_code(blk, j) * xb[j];
        val += sum * q_load_f16(blk);
    }
    return val;
}

/* W row (n/32 Q4_0 blocks) . x (n int8 in blocks with scales xd) */
static float dot_q4_0_int(const unsigned char *blk, const int8_t *xq, const float *xd, size_t n)
{
    float val = 0.0f;
    for (size_t b = 0; b < n / Q_QBLOCK; b++, blk += Q_Q4_0_BLOCK_BYTES) {
        int32_t isum = 0;
        for (size_t j = 0; j < Q_QBLOCK; j++)
            isum += (int32_t)q_q4_0_code(blk, j) * (int32_t)xq[b * Q_QBLOCK + j];
        val += (float)isum * (q_load_f16(blk) * xd[b]);
    }
    return val;
}

/* W row (n/256 Q6_K super-blocks) . x (n float32): per 32 weights, sum of
 * (scale * code) * x (exact integer weights), times d */
static float dot_q6_k_float(const unsigned char *sb, const float *x, size_t n)
{
    float val = 0.0f;
    for (size_t b = 0; b < n / Q_QBLOCK; b++) {
        const unsigned char *blk = sb + b / 8 * Q_Q6_K_BLOCK_BYTES;
        const float *xb = x + b * Q_QBLOCK;
        float sum = 0.0f;
        for (size_t k = 0; k < Q_QBLOCK; k++) {
            size_t j = b % 8 * Q_QBLOCK + k; /* in the super-block */
            int w = (int)(int8_t)blk[Q_Q6_K_SCALES + j / 16] * (int)q_q6_k_code(blk, j);
            sum += (float)w * xb[k];
        }
        val += sum * q_load_f16(blk + Q_Q6_K_D);
    }
    return val;
}

/* W row (n/256 Q6_K super-blocks) . x (n int8 in blocks of 32 with scales xd): per block of
 * 32, the exact sum of scale * code * x over its two 16-weight halves, times d * xd */
static float dot_q6_k_int(const unsigned char *sb, const int8_t *xq, const float *xd, size_t n)
{
    float val = 0.0f;
    for (size_t b = 0; b < n / Q_QBLOCK; b++) {
        const unsigned char *blk = sb + b / 8 * Q_Q6_K_BLOCK_BYTES;
        int32_t isum = 0;
        for (size_t k = 0; k < Q_QBLOCK; k++) {
            size_t j = b % 8 * Q_QBLOCK + k;
            isum += (int32_t)(int8_t)blk[Q_Q6_K_SCALES + j / 16] * (int32_t)q_q6_k_code(blk, j) *
                    (int32_t)xq[b * Q_QBLOCK + k];
        }
        val += (float)isum * (q_load_f16(blk + Q_Q6_K_D) * xd[b]);
    }
    return val;
}

/* Code j (0..255) of a Q4_K (q5 == 0) or Q5_K super-block */
static unsigned k_code(const unsigned char *blk, size_t j, int q5)
{
    return q5 ? q_q5_k_code(blk, j) : q_q4_k_code(blk, j);
}

/* W row (n/256 Q4_K or Q5_K super-blocks of bb bytes) . x (n float32): per 32-weight
 * sub-block, d * sum((sc * code) * x) - dmin * (m * sum(x)) */
static float dot_k_float(const unsigned char *sb, size_t bb, int q5, const float *x, size_t n)
{
    float val = 0.0f;
    for (size_t b = 0; b < n / Q_QBLOCK; b++) {
        const unsigned char *blk = sb + b / 8 * bb;
        const float *xb = x + b * Q_QBLOCK;
        unsigned sc, m;
        q_k_scale_min(blk + Q_QK_SCALES, b % 8, &sc, &m);
        float sum_q = 0.0f, sum_x = 0.0f;
        for (size_t k = 0; k < Q_QBLOCK; k++) {
            sum_q += (float)(sc * k_code(blk, b % 8 * Q_QBLOCK + k, q5)) * xb[k];
            sum_x += xb[k];
        }
        val += sum_q * q_load_f16(blk) - ((float)m * sum_x) * q_load_f16(blk + 2);
    }
    return val;
}

/* W row (n/256 Q4_K or Q5_K super-blocks) . x (n int8 in blocks of 32 with scales xd): per
 * block (= sub-block), the exact isum = sum(code * x) and xsum = sum(x), then
 * (float)(sc * isum) * (d * xd) - (float)(m * xsum) * (dmin * xd) */
static float dot_k_int(const unsigned char *sb, size_t bb, int q5, const int8_t *xq,
                       const float *xd, size_t n)
{
    float val = 0.0f;
    for (size_t b = 0; b < n / Q_QBLOCK; b++) {
        const unsigned char *blk = sb + b / 8 * bb;
        unsigned sc, m;
        q_k_scale_min(blk + Q_QK_SCALES, b % 8, &sc, &m);
        int32_t isum = 0, xsum = 0;
        for (size_t k = 0; k < Q_QBLOCK; k++) {
            int32_t xk = xq[b * Q_QBLOCK + k];
            isum += (int32_t)k_code(blk, b % 8 * Q_QBLOCK + k, q5) * xk;
            xsum += xk;
        }
        val += (float)((int32_t)sc * isum) * (q_load_f16(blk) * xd[b]) -
               (float)((int32_t)m * xsum) * (q_load_f16(blk + 2) * xd[b]);
    }
    return val;
}

/* Row i of a Q8_SPLIT tensor . x (cols float32), one scale group (or the part of it in
 * this row) at a time */
static float dot_q8_split_float(const q_tensor *t, size_t i, const float *x)
{
    const unsigned char *q8 = (const unsigned char *)t->data;
    const unsigned char *sc = (const unsigned char *)t->scales;
    size_t n = t->cols, gs = t->group_size;
    float val = 0.0f;
    size_t j = 0;
    while (j < n) {
        size_t e = i * n + j;
        size_t span = gs - e % gs; /* elements left in this group */
        if (span > n - j)
            span = n - j;
        float sum = 0.0f;
        for (size_t k = 0; k < span; k++)
            sum += (float)(int8_t)q8[e + k] * x[j + k];
        val += sum * q_load_f32(sc + e / gs * 4);
        j += span;
    }
    return val;
}

/* Row i of a Q8_SPLIT tensor (group_size a multiple of 32) . x (cols int8, scales xd) */
static float dot_q8_split_int(const q_tensor *t, size_t i, const int8_t *xq, const float *xd)
{
    const unsigned char *q8 = (const unsigned char *)t->data + i * t->cols;
    const unsigned char *sc = (const unsigned char *)t->scales;
    size_t e0 = i * t->cols;
    float val = 0.0f;
    for (size_t b = 0; b < t->cols / Q_QBLOCK; b++) {
        int32_t isum = 0;
        for (size_t j = 0; j < Q_QBLOCK; j++)
            isum += (int32_t)(int8_t)q8[b * Q_QBLOCK + j] * (int32_t)xq[b * Q_QBLOCK + j];
        float ws = q_load_f32(sc + (e0 + b * Q_QBLOCK) / t->group_size * 4);
        val += (float)isum * (ws * xd[b]);
    }
    return val;
}

/* One output element: W row i . activation row t. */
static float dot_row(const q_tensor *w, size_t i, const q_act *x, size_t t)
{
    const unsigned char *base = (const unsigned char *)w->data;
    size_t n = w->cols;
    const float *xf = x->f != NULL ? x->f + t * n : NULL;
    int use_int = x->q != NULL && q_kernels_wants_q8(w);
    switch (w->type) {
    case Q_TENSOR_F32:
        return dot_f32(base + i * n * 4, xf, n);
    case Q_TENSOR_F16:
        return dot_f16(base + i * n * 2, xf, n);
    case Q_TENSOR_BF16:
        return dot_bf16(base + i * n * 2, xf, n);
    case Q_TENSOR_Q8_0: {
        const unsigned char *row = base + i * (n / Q_QBLOCK) * Q_Q8_0_BLOCK_BYTES;
        if (use_int)
            return dot_q8_0_int(row, x->q + t * n, x->d + t * (n / Q_QBLOCK), n);
        return dot_q8_0_float(row, xf, n);
    }
    case Q_TENSOR_Q4_0: {
        const unsigned char *row = base + i * (n / Q_QBLOCK) * Q_Q4_0_BLOCK_BYTES;
        if (use_int)
            return dot_q4_0_int(row, x->q + t * n, x->d + t * (n / Q_QBLOCK), n);
        return dot_q4_0_float(row, xf, n);
    }
    case Q_TENSOR_Q6_K: {
        const unsigned char *row = base + i * (n / Q_QK_K) * Q_Q6_K_BLOCK_BYTES;
        if (use_int)
            return dot_q6_k_int(row, x->q + t * n, x->d + t * (n / Q_QBLOCK), n);
        return dot_q6_k_float(row, xf, n);
    }
    case Q_TENSOR_Q4_K:
    case Q_TENSOR_Q5_K: {
        int q5 = w->type == Q_TENSOR_Q5_K;
        size_t bb = q5 ? Q_Q5_K_BLOCK_BYTES : Q_Q4_K_BLOCK_BYTES;
        const unsigned char *row = base + i * (n / Q_QK_K) * bb;
        if (use_int)
            return dot_k_int(row, bb, q5, x->q + t * n, x->d + t * (n / Q_QBLOCK), n);
        return dot_k_float(row, bb, q5, xf, n);
    }
    case Q_TENSOR_Q8_SPLIT:
        if (use_int)
            return dot_q8_split_int(w, i, x->q + t * n, x->d + t * (n / Q_QBLOCK));
        return dot_q8_split_float(w, i, xf);
    }
    return 0.0f;
}

static void matmul_ref(float *out, size_t out_stride, const q_tensor *w, size_t r0, size_t r1,
                       const q_act *x)
{
    for (size_t t = 0; t < x->n_rows; t++)
        for (size_t i = r0; i < r1; i++)
            out[t * out_stride + i] = dot_row(w, i, x, t);
}

/* ---- element-wise kernels, as llama2.c run.c ---- */

static void rmsnorm_ref(float *out, const float *x, const float *weight, size_t n, float eps)
{
    float ss = 0.0f;
    for (size_t j = 0; j < n; j++)
        ss += x[j] * x[j];
    ss /= (float)n;
    ss += eps;
    ss = 1.0f / sqrtf(ss);
    for (size_t j = 0; j < n; j++)
        out[j] = weight[j] * (ss * x[j]);
}

static void softmax_ref(float *x, size_t n)
{
    if (n == 0)
        return;
    float max_val = x[0];
    for (size_t i = 1; i < n; i++)
        if (x[i] > max_val)
            max_val = x[i];
    float sum = 0.0f;
    for (size_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - max_val);
        sum += x[i];
    }
    for (size_t i = 0; i < n; i++)
        x[i] /= sum;
}

static void swiglu_ref(float *gate, const float *up, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float val = gate[i];
        val *= (1.0f / (1.0f + expf(-val)));
        val *= up[i];
        gate[i] = val;
    }
}

static void rope_ref(float *vec, size_t n, size_t head_size, const float *cos_p,
                     const float *sin_p)
{
    for (size_t i = 0; i + 1 < n; i += 2) {
        size_t pair = (i % head_size) / 2;
        float v0 = vec[i];
        float v1 = vec[i + 1];
        vec[i] = v0 * cos_p[pair] - v1 * sin_p[pair];
        vec[i + 1] = v0 * sin_p[pair] + v1 * cos_p[pair];
    }
}

static void rope_neox_ref(float *vec, size_t n, size_t head_size, const float *cos_p,
                          const float *sin_p)
{
    size_t half = head_size / 2;
    for (size_t h = 0; half > 0 && h + head_size <= n; h += head_size)
        for (size_t p = 0; p < half; p++) {
            float v0 = vec[h + p];
            float v1 = vec[h + p + half];
            vec[h + p] = v0 * cos_p[p] - v1 * sin_p[p];
            vec[h + p + half] = v0 * sin_p[p] + v1 * cos_p[p];
        }
}

static void attention_ref(float *out, const float *q, const float *keys, const float *values,
                          size_t stride, size_t n_pos, size_t head_size, float *att)
{
    float sqrt_head_size = sqrtf((float)head_size); /* scores are divided by it, as run.c */
    for (size_t t = 0; t < n_pos; t++) {
        const float *kt = keys + t * stride; /* (head_size) */
        float score = 0.0f;
        for (size_t i = 0; i < head_size; i++)
            score += q[i] * kt[i];
        att[t] = score / sqrt_head_size;
    }
    softmax_ref(att, n_pos);
    memset(out, 0, head_size * sizeof(float));
    for (size_t t = 0; t < n_pos; t++) {
        const float *vt = values + t * stride; /* (head_size) */
        float a = att[t];
        for (size_t i = 0; i < head_size; i++)
            out[i] += a * vt[i];
    }
}

static const q_kernels scalar_table = {
    .name = "scalar",
    .quantize_q8 = quantize_q8_ref,
    .matmul = matmul_ref,
    .rmsnorm = rmsnorm_ref,
    .softmax = softmax_ref,
    .swiglu = swiglu_ref,
    .rope = rope_ref,
    .rope_neox = rope_neox_ref,
    .attention = attention_ref,
};

const q_kernels *q_kernels_scalar(void)
{
    return &scalar_table;
}
