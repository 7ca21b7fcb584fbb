/*
 * Kernel unit tests: F16 and BF16 conversion (exhaustive round trip, rounding), and
 * q_matvec / q_tensor_row on F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K and Q8_SPLIT weights
 * stored at unaligned addresses,
 * against a double-precision reference over the dequantized values.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "qorus.h"

static uint64_t rng = 0x1234567887654321ull;

static float frand(void) /* in [-1, 1) */
{
    return q_random_f32(&rng) * 2.0f - 1.0f;
}

static int f16_is_nan(uint16_t h)
{
    return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0;
}

static void test_f16(void)
{
    for (uint32_t h = 0; h < 65536; h++) {
        float f = q_f16_to_f32((uint16_t)h);
        uint16_t back = q_f32_to_f16(f);
        if (f16_is_nan((uint16_t)h))
            CHECK(f16_is_nan(back));
        else if (back != h) {
            CHECK_EQ_INT(back, h);
            break;
        }
    }
    CHECK_EQ_INT(q_f32_to_f16(1.0f), 0x3C00);
    CHECK_EQ_INT(q_f32_to_f16(-2.0f), 0xC000);
    CHECK_EQ_INT(q_f32_to_f16(65504.0f), 0x7BFF);
    CHECK_EQ_INT(q_f32_to_f16(65520.0f), 0x7C00);             /* rounds up to infinity */
    CHECK_EQ_INT(q_f32_to_f16(1.0f + ldexpf(1.0f, -11)), 0x3C00); /* tie to even */
    CHECK_EQ_INT(q_f32_to_f16(1.0f + 3 * ldexpf(1.0f, -11)), 0x3C02);
    CHECK_EQ_INT(q_f32_to_f16(ldexpf(1.0f, -24)), 0x0001); /* smallest subnormal */
    CHECK_EQ_INT(q_f32_to_f16(ldexpf(1.0f, -25)), 0x0000); /* tie to even: zero */
    CHECK_EQ_INT(q_f32_to_f16(3 * ldexpf(1.0f, -25)), 0x0002);
    CHECK_EQ_INT(q_f32_to_f16(ldexpf(1.0f, -14)), 0x0400); /* smallest normal */
    CHECK(f16_is_nan(q_f32_to_f16(NAN)));
    CHECK_EQ_INT(q_f32_to_f16(INFINITY), 0x7C00);
    CHECK(q_f16_to_f32(0x0001) == ldexpf(1.0f, -24));
}

/* bfloat16 is the high half of a float32: every pattern converts exactly and back;
 * float32 -> bfloat16 rounds to nearest even on the 16 dropped bits. */
static void test_bf16(void)
{
    for (uint32_t h = 0; h < 65536; h++) {
        float f = q_bf16_to_f32((uint16_t)h);
        uint32_t bits;
        memcpy(&bits, &f, 4);
        if (bits != h << 16) {
            CHECK_EQ_INT(bits >> 16, h);
            break;
        }
        uint16_t back = q_f32_to_bf16(f);
        int nan = (h & 0x7f80u) == 0x7f80u && (h & 0x7fu) != 0;
        if (nan ? back != (h | 0x40u) : back != h) { /* NaN: made quiet, sign kept */
            CHECK_EQ_INT(back, h);
            break;
        }
    }
    CHECK_EQ_INT(q_f32_to_bf16(1.0f), 0x3F80);
    CHECK_EQ_INT(q_f32_to_bf16(-2.0f), 0xC000);
    CHECK_EQ_INT(q_f32_to_bf16(1.0f + ldexpf(1.0f, -8)), 0x3F80);     /* tie to even: down */
    CHECK_EQ_INT(q_f32_to_bf16(1.0f + 3 * ldexpf(1.0f, -8)), 0x3F82); /* tie to even: up */
    CHECK_EQ_INT(q_f32_to_bf16(1.0f + ldexpf(1.0f, -8) + ldexpf(1.0f, -20)), 0x3F81);
    CHECK_EQ_INT(q_f32_to_bf16(FLT_MAX), 0x7F80); /* rounds up to infinity */
    CHECK_EQ_INT(q_f32_to_bf16(-INFINITY), 0xFF80);
    CHECK_EQ_INT(q_f32_to_bf16(ldexpf(1.0f, -149)), 0x0000); /* below half the last bf16 ulp */
    float snan;
    uint32_t snan_bits = 0xFF800001u; /* negative signaling NaN, payload only in low bits */
    memcpy(&snan, &snan_bits, 4);
    CHECK_EQ_INT(q_f32_to_bf16(snan), 0xFFC0); /* stays NaN (a truncation would be -inf) */
}

/* A weight matrix in every layout, each at an odd address, plus its dequantized values. */
typedef struct fixture {
    size_t rows, cols, gs;
    float *ref;            /* (rows, cols) the values the quantized layouts stand for */
    unsigned char *f32, *f16, *bf16, *q80, *q40, *q4k, *q5k, *q6k, *q8s, *q8s_scales;
} fixture;

static void make_fixture(fixture *fx, size_t rows, size_t cols, size_t gs)
{
    size_t n = rows * cols;
    fx->rows = rows;
    fx->cols = cols;
    fx->gs = gs;
    fx->ref = malloc(n * sizeof(float));
    fx->f32 = malloc(n * 4 + 1);
    fx->f16 = malloc(n * 2 + 1);
    fx->bf16 = malloc(n * 2 + 1);
    fx->q80 = malloc(n / 32 * 34 + 1);
    fx->q40 = malloc(n / 32 * 18 + 1);
    fx->q4k = malloc(n / 256 * 144 + 1); /* the K layouts: used when cols % 256 == 0 */
    fx->q5k = malloc(n / 256 * 176 + 1);
    fx->q6k = malloc(n / 256 * 210 + 1);
    fx->q8s = malloc(n + 1);
    fx->q8s_scales = malloc(n / gs * 4 + 1);
    float *w = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        w[i] = frand();
    /* F32, F16 and BF16 */
    memcpy(fx->f32 + 1, w, n * 4);
    for (size_t i = 0; i < n; i++) {
        uint16_t h = q_f32_to_f16(w[i]);
        fx->f16[1 + 2 * i] = (unsigned char)(h & 0xff);
        fx->f16[2 + 2 * i] = (unsigned char)(h >> 8);
        uint16_t b = q_f32_to_bf16(w[i]);
        fx->bf16[1 + 2 * i] = (unsigned char)(b & 0xff);
        fx->bf16[2 + 2 * i] = (unsigned char)(b >> 8);
    }
    /* Q8_0: per row, blocks of 32 with an f16 scale */
    for (size_t b = 0; b < n / 32; b++) {
        float amax = 0.0f;
        for (size_t j = 0; j < 32; j++)
            amax = fmaxf(amax, fabsf(w[b * 32 + j]));
        uint16_t dh = q_f32_to_f16(amax / 127.0f);
        float d = q_f16_to_f32(dh);
        unsigned char *blk = fx->q80 + 1 + b * 34;
        blk[0] = (unsigned char)(dh & 0xff);
        blk[1] = (unsigned char)(dh >> 8);
        for (size_t j = 0; j < 32; j++) {
            int8_t q = (int8_t)lrintf(d > 0 ? w[b * 32 + j] / d : 0.0f);
            memcpy(blk + 2 + j, &q, 1);
        }
    }
    /* Q4_0: per row, blocks of 32: f16 scale d = (the value of largest magnitude) / -8,
     * then weight j's 4-bit code (x / d + 8, clamped to 0..15) in the low nibble of byte j
     * (j < 16) or the high nibble of byte j - 16 */
    for (size_t b = 0; b < n / 32; b++) {
        float big = 0.0f;
        for (size_t j = 0; j < 32; j++)
            if (fabsf(w[b * 32 + j]) > fabsf(big))
                big = w[b * 32 + j];
        uint16_t dh = q_f32_to_f16(big / -8.0f);
        float d = q_f16_to_f32(dh);
        unsigned char *blk = fx->q40 + 1 + b * 18;
        blk[0] = (unsigned char)(dh & 0xff);
        blk[1] = (unsigned char)(dh >> 8);
        memset(blk + 2, 0, 16);
        for (size_t j = 0; j < 32; j++) {
            float c = d != 0.0f ? floorf(w[b * 32 + j] / d + 8.5f) : 8.0f;
            unsigned code = c < 0.0f ? 0u : c > 15.0f ? 15u : (unsigned)c;
            blk[2 + j % 16] |= (unsigned char)(j < 16 ? code : code << 4);
        }
    }
    /* Q6_K (when cols % 256 == 0): per super-block of 256, each 16-weight half-block's own
     * scale s = (value of largest magnitude) / -32, d = max |s| / 127 in f16, the int8
     * scales round(s / d), codes round(x / (d * scale)) + 32 in 0..63, packed as ggml's
     * block_q6_K (ql: low 4 bits, qh: high 2 bits, then scales, then d) */
    if (cols % 256 == 0) {
        memset(fx->q6k, 0, n / 256 * 210 + 1);
        for (size_t s = 0; s < n / 256; s++) {
            const float *x = w + s * 256;
            unsigned char *blk = fx->q6k + 1 + s * 210;
            float sub[16], smax = 0.0f;
            for (size_t i = 0; i < 16; i++) {
                float big = 0.0f;
                for (size_t j = 0; j < 16; j++)
                    if (fabsf(x[i * 16 + j]) > fabsf(big))
                        big = x[i * 16 + j];
                sub[i] = big / -32.0f;
                smax = fmaxf(smax, fabsf(sub[i]));
            }
            uint16_t dh = q_f32_to_f16(smax / 127.0f);
            float d = q_f16_to_f32(dh);
            blk[208] = (unsigned char)(dh & 0xff);
            blk[209] = (unsigned char)(dh >> 8);
            for (size_t i = 0; i < 16; i++) {
                long sc = d != 0.0f ? lrintf(sub[i] / d) : 0;
                sc = sc < -128 ? -128 : sc > 127 ? 127 : sc;
                blk[192 + i] = (unsigned char)(int8_t)sc;
            }
            for (size_t j = 0; j < 256; j++) {
                float step = d * (float)(int8_t)blk[192 + j / 16];
                long c = step != 0.0f ? lrintf(x[j] / step) : 0;
                unsigned code = (unsigned)((c < -32 ? -32 : c > 31 ? 31 : c) + 32);
                size_t h = j / 128, q = j % 128 / 32, l = j % 32;
                blk[64 * h + 32 * (q % 2) + l] |= (unsigned char)(q < 2 ? code & 15 : (code & 15) << 4);
                blk[128 + 32 * h + l] |= (unsigned char)((code >> 4) << (2 * q));
            }
        }
    }
    /* Q4_K, Q5_K (when cols % 256 == 0): random bytes (any scale, min and code) with a
     * small f16 d and dmin; ref holds what they stand for only for the type being tested,
     * read back field by field in reference_values */
    if (cols % 256 == 0) {
        for (size_t s = 0; s < n / 256; s++) {
            unsigned char *b4 = fx->q4k + 1 + s * 144, *b5 = fx->q5k + 1 + s * 176;
            for (size_t j = 0; j < 176; j++) {
                if (j < 144)
                    b4[j] = (unsigned char)(q_random_u32(&rng) >> 24);
                b5[j] = (unsigned char)(q_random_u32(&rng) >> 24);
            }
            uint16_t h[2] = {q_f32_to_f16(frand() * 0.004f), q_f32_to_f16(frand() * 0.02f)};
            memcpy(b4, h, 4);
            memcpy(b5, h, 4);
        }
    }
    /* Q8_SPLIT: int8 of the whole tensor, then one float scale per flat group */
    for (size_t g = 0; g < n / gs; g++) {
        float amax = 0.0f;
        for (size_t j = 0; j < gs; j++)
            amax = fmaxf(amax, fabsf(w[g * gs + j]));
        float s = amax / 127.0f;
        memcpy(fx->q8s_scales + 1 + g * 4, &s, 4);
        for (size_t j = 0; j < gs; j++) {
            int8_t q = (int8_t)lrintf(s > 0 ? w[g * gs + j] / s : 0.0f);
            memcpy(fx->q8s + 1 + g * gs + j, &q, 1);
        }
    }
    free(w);
}

static void free_fixture(fixture *fx)
{
    free(fx->ref);
    free(fx->f32);
    free(fx->f16);
    free(fx->bf16);
    free(fx->q80);
    free(fx->q40);
    free(fx->q4k);
    free(fx->q5k);
    free(fx->q6k);
    free(fx->q8s);
    free(fx->q8s_scales);
}

/* The values a layout stands for, computed here independently of the library. */
static void reference_values(const fixture *fx, q_tensor_type type, float *out)
{
    size_t n = fx->rows * fx->cols;
    for (size_t e = 0; e < n; e++) {
        switch (type) {
        case Q_TENSOR_F32: memcpy(&out[e], fx->f32 + 1 + 4 * e, 4); break;
        case Q_TENSOR_F16:
            out[e] = q_f16_to_f32((uint16_t)(fx->f16[1 + 2 * e] | (fx->f16[2 + 2 * e] << 8)));
            break;
        case Q_TENSOR_BF16: { /* the two bytes are the high half of the float32 */
            uint32_t bits = (uint32_t)fx->bf16[1 + 2 * e] << 16 | (uint32_t)fx->bf16[2 + 2 * e] << 24;
            memcpy(&out[e], &bits, 4);
            break;
        }
        case Q_TENSOR_Q8_0: {
            size_t row = e / fx->cols, c = e % fx->cols;
            const unsigned char *blk = fx->q80 + 1 + (row * (fx->cols / 32) + c / 32) * 34;
            int8_t q;
            memcpy(&q, blk + 2 + c % 32, 1);
            out[e] = q_f16_to_f32((uint16_t)(blk[0] | (blk[1] << 8))) * (float)q;
            break;
        }
        case Q_TENSOR_Q4_0: {
            size_t row = e / fx->cols, c = e % fx->cols;
            const unsigned char *blk = fx->q40 + 1 + (row * (fx->cols / 32) + c / 32) * 18;
            unsigned char byte = blk[2 + c % 16];
            int code = (c % 32 < 16 ? byte & 15 : byte >> 4) - 8;
            out[e] = q_f16_to_f32((uint16_t)(blk[0] | (blk[1] << 8))) * (float)code;
            break;
        }
        case Q_TENSOR_Q6_K: { /* read back field by field, as the packing above wrote it */
            size_t row = e / fx->cols, c = e % fx->cols;
            const unsigned char *blk = fx->q6k + 1 + (row * (fx->cols / 256) + c / 256) * 210;
            size_t j = c % 256, h = j / 128, q = j % 128 / 32, l = j % 32;
            unsigned lo = blk[64 * h + 32 * (q % 2) + l];
            lo = q < 2 ? lo & 15 : lo >> 4;
            int code = (int)(lo | ((blk[128 + 32 * h + l] >> (2 * q)) & 3u) << 4) - 32;
            out[e] = q_f16_to_f32((uint16_t)(blk[208] | (blk[209] << 8))) *
                     (float)((int8_t)blk[192 + j / 16] * code);
            break;
        }
        case Q_TENSOR_Q4_K:
        case Q_TENSOR_Q5_K: { /* d * sc * code - dmin * m, fields read one by one */
            int q5 = type == Q_TENSOR_Q5_K;
            size_t row = e / fx->cols, c = e % fx->cols, bb = q5 ? 176 : 144;
            const unsigned char *blk = (q5 ? fx->q5k : fx->q4k) + 1 +
                                       (row * (fx->cols / 256) + c / 256) * bb;
            size_t j = c % 256, sub = j / 32, l = j % 32;
            const unsigned char *sc6 = blk + 4;
            unsigned sc = sub < 4 ? sc6[sub] & 63u
                                  : (sc6[sub + 4] & 15u) | (unsigned)(sc6[sub - 4] >> 6) << 4;
            unsigned mn = sub < 4 ? sc6[sub + 4] & 63u
                                  : (unsigned)(sc6[sub + 4] >> 4) | (unsigned)(sc6[sub] >> 6) << 4;
            unsigned byte = blk[(q5 ? 48 : 16) + 32 * (sub / 2) + l];
            unsigned code = (sub % 2 == 0 ? byte & 15u : byte >> 4) |
                            (q5 ? ((blk[16 + l] >> sub) & 1u) << 4 : 0u);
            float d = q_f16_to_f32((uint16_t)(blk[0] | (blk[1] << 8)));
            float dmin = q_f16_to_f32((uint16_t)(blk[2] | (blk[3] << 8)));
            out[e] = d * (float)(sc * code) - dmin * (float)mn;
            break;
        }
        case Q_TENSOR_Q8_SPLIT: {
            int8_t q;
            float s;
            memcpy(&q, fx->q8s + 1 + e, 1);
            memcpy(&s, fx->q8s_scales + 1 + e / fx->gs * 4, 4);
            out[e] = (float)q * s;
            break;
        }
        }
    }
}

static q_tensor view(const fixture *fx, q_tensor_type type)
{
    q_tensor t = {type, NULL, NULL, fx->rows, fx->cols, 0};
    switch (type) {
    case Q_TENSOR_F32: t.data = fx->f32 + 1; break;
    case Q_TENSOR_F16: t.data = fx->f16 + 1; break;
    case Q_TENSOR_BF16: t.data = fx->bf16 + 1; break;
    case Q_TENSOR_Q8_0: t.data = fx->q80 + 1; t.group_size = 32; break;
    case Q_TENSOR_Q4_0: t.data = fx->q40 + 1; t.group_size = 32; break;
    case Q_TENSOR_Q4_K: t.data = fx->q4k + 1; t.group_size = 256; break;
    case Q_TENSOR_Q5_K: t.data = fx->q5k + 1; t.group_size = 256; break;
    case Q_TENSOR_Q6_K: t.data = fx->q6k + 1; t.group_size = 256; break;
    case Q_TENSOR_Q8_SPLIT:
        t.data = fx->q8s + 1;
        t.scales = fx->q8s_scales + 1;
        t.group_size = fx->gs;
        break;
    }
    return t;
}

static void test_matvec(size_t rows, size_t cols, size_t gs)
{
    fixture fx;
    make_fixture(&fx, rows, cols, gs);
    float *x = malloc(cols * sizeof(float));
    float *out = malloc(rows * sizeof(float));
    float *row = malloc(cols * sizeof(float));
    for (size_t j = 0; j < cols; j++)
        x[j] = frand();
    const q_tensor_type types[9] = {Q_TENSOR_F32,  Q_TENSOR_F16,  Q_TENSOR_BF16,
                                    Q_TENSOR_Q8_0, Q_TENSOR_Q4_0, Q_TENSOR_Q4_K,
                                    Q_TENSOR_Q5_K, Q_TENSOR_Q6_K, Q_TENSOR_Q8_SPLIT};
    for (int k = 0; k < 9; k++) {
        if ((types[k] == Q_TENSOR_Q4_K || types[k] == Q_TENSOR_Q5_K ||
             types[k] == Q_TENSOR_Q6_K) && cols % 256 != 0)
            continue;
        q_tensor t = view(&fx, types[k]);
        reference_values(&fx, types[k], fx.ref);
        CHECK_EQ_INT(q_matvec(out, &t, x, cols), Q_OK);
        for (size_t i = 0; i < rows; i++) {
            double want = 0.0, mag = 0.0;
            for (size_t j = 0; j < cols; j++) {
                want += (double)fx.ref[i * cols + j] * x[j];
                mag += fabs((double)fx.ref[i * cols + j] * x[j]);
            }
            if (fabs((double)out[i] - want) > 1e-5 * (mag + 1.0)) {
                fprintf(stderr, "type %d row %zu: got %g want %g\n", (int)types[k], i,
                        (double)out[i], want);
                CHECK(0);
            }
            CHECK_EQ_INT(q_tensor_row(row, &t, i), Q_OK);
            CHECK(memcmp(row, fx.ref + i * cols, cols * sizeof(float)) == 0);
        }
        CHECK_EQ_INT(q_matvec(out, &t, x, cols - 1), Q_ERR_BAD_SHAPE);
        CHECK_EQ_INT(q_tensor_row(row, &t, rows), Q_ERR_INVALID_ARG);
    }
    free(x);
    free(out);
    free(row);
    free_fixture(&fx);
}

static void test_checks(void)
{
    float data[64] = {0};
    float out[2];
    q_tensor t = {Q_TENSOR_Q8_0, data, NULL, 1, 40, 32};
    CHECK_EQ_INT(q_tensor_check(&t), Q_ERR_BAD_SHAPE); /* 40 not a multiple of 32 */
    t = (q_tensor){Q_TENSOR_Q8_SPLIT, data, data, 2, 10, 7};
    CHECK_EQ_INT(q_tensor_check(&t), Q_ERR_BAD_SHAPE); /* 7 does not divide 20 */
    t = (q_tensor){Q_TENSOR_Q8_SPLIT, data, NULL, 2, 10, 5};
    CHECK_EQ_INT(q_tensor_check(&t), Q_ERR_BAD_SHAPE); /* no scales */
    t = (q_tensor){(q_tensor_type)99, data, NULL, 2, 2, 0};
    CHECK_EQ_INT(q_tensor_check(&t), Q_ERR_UNSUPPORTED_TYPE);
    t = (q_tensor){Q_TENSOR_F32, data, NULL, SIZE_MAX / 2, 4, 0};
    CHECK_EQ_INT(q_tensor_check(&t), Q_ERR_OVERFLOW);
    t = (q_tensor){Q_TENSOR_F32, data, NULL, 0, 4, 0};
    CHECK_EQ_INT(q_tensor_check(&t), Q_ERR_BAD_SHAPE);
    CHECK_EQ_INT(q_tensor_check(NULL), Q_ERR_INVALID_ARG);
    t = (q_tensor){Q_TENSOR_F32, data, NULL, 2, 4, 0};
    CHECK_EQ_INT(q_matvec(out, &t, NULL, 4), Q_ERR_INVALID_ARG);

    float x[4] = {1.0f, -2.0f, 3.0f, -4.0f}, w[4] = {1.0f, 1.0f, 2.0f, 0.5f}, o[4];
    q_rmsnorm(o, x, w, 4, 0.0f);
    float inv = 1.0f / sqrtf(30.0f / 4.0f);
    CHECK(fabsf(o[2] - 2.0f * 3.0f * inv) < 1e-6f && fabsf(o[3] + 0.5f * 4.0f * inv) < 1e-6f);
    float s[3] = {1000.0f, 1000.0f, -INFINITY};
    q_softmax(s, 3);
    CHECK(s[0] == 0.5f && s[1] == 0.5f && s[2] == 0.0f);
}

int main(void)
{
    test_f16();
    test_bf16();
    test_matvec(5, 64, 32);   /* Q8_SPLIT groups align with rows */
    test_matvec(4, 96, 64);   /* Q8_SPLIT groups span rows (96 * 4 / 64 = 6 groups) */
    test_matvec(33, 160, 160);
    test_matvec(3, 512, 64); /* Q4_K, Q5_K, Q6_K: two super-blocks per row */
    test_checks();
    return check_result("test_kernels");
}
