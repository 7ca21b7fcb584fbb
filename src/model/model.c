/*
 * Model entry points: format detection, file loaders over q_init_memory_ex, config
 * validation shared by the parsers, tensor row access and the free functions.
 *
 * Format detection (first 4 bytes, little-endian uint32):
 *   1. "GGUF" (0x46554747)   -> GGUF, see gguf.c
 *   2. "ak42" (0x616b3432)   -> llama2.c versioned header, see llama2c.c
 *   3. anything else         -> llama2.c legacy (version 0): the bytes are the dim field
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/checked.h"
#include "core/os.h"
#include "kernels/quant_layout.h"
#include "model/model_internal.h"

q_error_code q_fail(q_diag *diag, q_error_code code, const char *field, uint64_t offset,
                    int64_t value)
{
    if (diag != NULL) {
        memset(diag, 0, sizeof *diag);
        if (field != NULL)
            snprintf(diag->field, sizeof diag->field, "%s", field);
        diag->offset = offset;
        diag->value = value;
    }
    return code;
}

q_error_code q_fail_named(q_diag *diag, q_error_code code, const char *prefix,
                          const unsigned char *name, size_t name_len, uint64_t offset,
                          int64_t value)
{
    if (diag != NULL) {
        size_t used, i;
        memset(diag, 0, sizeof *diag);
        snprintf(diag->field, sizeof diag->field, "%s", prefix);
        used = strlen(diag->field);
        /* printable bytes only: the driver prints this on one line */
        for (i = 0; i < name_len && used + 1 < sizeof diag->field; i++) {
            unsigned char c = name[i];
            diag->field[used++] = (char)(c >= 0x20 && c < 0x7f ? c : '?');
        }
        diag->field[used] = '\0';
        diag->offset = offset;
        diag->value = value;
    }
    return code;
}

static const char *const q_config_names[7] = {
    "dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len",
};

q_error_code q_config_check(const q_raw_config *raw, q_config *out, q_diag *diag)
{
    static const uint64_t max[7] = {
        Q_MAX_DIM, Q_MAX_HIDDEN_DIM, Q_MAX_LAYERS, Q_MAX_HEADS,
        Q_MAX_HEADS, Q_MAX_VOCAB, Q_MAX_SEQ_LEN,
    };
    size_t v[7];
    for (int i = 0; i < 7; i++) {
        if (raw->value[i] < 1 || (uint64_t)raw->value[i] > max[i])
            return q_fail(diag, Q_ERR_INVALID_CONFIG, q_config_names[i], raw->offset[i],
                          raw->value[i]);
        v[i] = (size_t)raw->value[i];
    }
    /* v[0] dim, v[3] n_heads, v[4] n_kv_heads */
    if (v[0] % v[3] != 0)
        return q_fail(diag, Q_ERR_INVALID_CONFIG, "n_heads", raw->offset[3], raw->value[3]);
    if ((v[0] / v[3]) % 2 != 0)
        return q_fail(diag, Q_ERR_INVALID_CONFIG, "head_size", raw->offset[3],
                      (int64_t)(v[0] / v[3]));
    if (v[4] > v[3] || v[3] % v[4] != 0)
        return q_fail(diag, Q_ERR_INVALID_CONFIG, "n_kv_heads", raw->offset[4],
                      raw->value[4]);
    out->dim = v[0];
    out->hidden_dim = v[1];
    out->n_layers = v[2];
    out->n_heads = v[3];
    out->n_kv_heads = v[4];
    out->vocab_size = v[5];
    out->seq_len = v[6];
    return Q_OK;
}

/* A float field as the diagnostic's integer value: truncated, saturated at the int64 range
 * (converting an out-of-range float is undefined behaviour), 0 for NaN. */
static int64_t diag_value_of_float(float f)
{
    if (f != f)
        return 0;
    if (f <= -9.2e18f)
        return INT64_MIN;
    if (f >= 9.2e18f)
        return INT64_MAX;
    return (int64_t)f;
}

q_error_code q_config_check_floats(const q_config *c, uint64_t theta_off, uint64_t eps_off,
                                   q_diag *diag)
{
    if (!isfinite(c->rope_theta) || !(c->rope_theta > 0.0f))
        return q_fail(diag, Q_ERR_INVALID_CONFIG, "rope_theta", theta_off,
                      diag_value_of_float(c->rope_theta));
    if (!isfinite(c->norm_eps) || !(c->norm_eps > 0.0f) || !(c->norm_eps < 1.0f))
        return q_fail(diag, Q_ERR_INVALID_CONFIG, "norm_eps", eps_off, 0);
    return Q_OK;
}

q_error_code q_model_parse(q_model *model, q_tokenizer *tokenizer, const void *buf, size_t len,
                           q_diag *diag)
{
    const unsigned char *p = buf;
    if (diag != NULL)
        memset(diag, 0, sizeof *diag);
    if (tokenizer != NULL)
        memset(tokenizer, 0, sizeof *tokenizer);
    if (model == NULL)
        return q_fail(diag, Q_ERR_INVALID_ARG, "model", 0, 0);
    memset(model, 0, sizeof *model);
    if (buf == NULL)
        return q_fail(diag, Q_ERR_INVALID_ARG, "buf", 0, 0);
    if (len < 4)
        return q_fail(diag, Q_ERR_TRUNCATED, "magic", 0, (int64_t)len);
    if (q_load_u32(p) == Q_GGUF_MAGIC)
        return q_gguf_parse(model, tokenizer, p, len, diag);
    return q_llama2c_parse(model, p, len, diag);
}

q_error_code q_model_load(q_model *model, q_tokenizer *tokenizer, q_context *ctx,
                          const char *path, q_mmap_strategy strategy, q_diag *diag)
{
    q_error_code rc;
    if (diag != NULL)
        memset(diag, 0, sizeof *diag);
    if (model != NULL)
        memset(model, 0, sizeof *model);
    if (tokenizer != NULL)
        memset(tokenizer, 0, sizeof *tokenizer);
    if (model == NULL || ctx == NULL || path == NULL)
        return q_fail(diag, Q_ERR_INVALID_ARG, model == NULL ? "model" : ctx == NULL ? "ctx" : "path", 0, 0);
    /* A parse error releases the context (q_free_memory): refuse one holding regions this
     * call did not create, or a live q_state on it would be left pointing at freed memory. */
    if (ctx->kv_buffer != NULL || ctx->scratch_buffer != NULL)
        return q_fail(diag, Q_ERR_INVALID_STATE, "ctx", 0, 0);
    rc = q_init_memory_ex(ctx, path, strategy);
    if (rc != Q_OK)
        return q_fail(diag, rc, NULL, 0, 0); /* the file itself: no field */
    rc = q_model_parse(model, tokenizer, ctx->weights_mmap, ctx->weights_size, diag);
    if (q_mapping_status(ctx) != Q_OK) { /* the file shrank under the parser: zeros were read */
        if (rc == Q_OK) {
            q_model_free(model);
            q_tokenizer_free(tokenizer);
        }
        rc = q_fail(diag, Q_ERR_MODEL_CHANGED, NULL, 0, 0);
    }
    if (rc != Q_OK)
        q_free_memory(ctx);
    return rc;
}

/* Maps `path`, parses it as a llama2.c tokenizer.bin (q_tokenizer_parse with
 * `expected_vocab`) or a GGUF vocabulary (`gguf`: q_vocab_parse), unmaps it. */
static q_error_code q_tokenizer_map_parse(q_tokenizer *tokenizer, const char *path, int gguf,
                                          size_t expected_vocab, q_diag *diag)
{
    q_context tmp;
    q_error_code rc;
    if (diag != NULL)
        memset(diag, 0, sizeof *diag);
    if (tokenizer == NULL || path == NULL)
        return q_fail(diag, Q_ERR_INVALID_ARG, tokenizer == NULL ? "tokenizer" : "path", 0, 0);
    memset(tokenizer, 0, sizeof *tokenizer);
    memset(&tmp, 0, sizeof tmp);
    rc = q_init_memory_ex(&tmp, path, Q_MMAP_LAZY);
    if (rc != Q_OK)
        return q_fail(diag, rc, NULL, 0, 0); /* the file itself: no field */
    rc = gguf ? q_vocab_parse(tokenizer, tmp.weights_mmap, tmp.weights_size, diag)
              : q_tokenizer_parse(tokenizer, tmp.weights_mmap, tmp.weights_size, expected_vocab,
                                  diag);
    if (q_mapping_status(&tmp) != Q_OK) { /* the file shrank under the parser */
        if (rc == Q_OK)
            q_tokenizer_free(tokenizer);
        rc = q_fail(diag, Q_ERR_MODEL_CHANGED, NULL, 0, 0);
    }
    q_free_memory(&tmp);
    return rc;
}

q_error_code q_tokenizer_load(q_tokenizer *tokenizer, const char *path, size_t expected_vocab,
                              q_diag *diag)
{
    return q_tokenizer_map_parse(tokenizer, path, 0, expected_vocab, diag);
}

q_error_code q_vocab_parse(q_tokenizer *tokenizer, const void *buf, size_t len, q_diag *diag)
{
    const unsigned char *p = buf;
    if (diag != NULL)
        memset(diag, 0, sizeof *diag);
    if (tokenizer == NULL)
        return q_fail(diag, Q_ERR_INVALID_ARG, "tokenizer", 0, 0);
    memset(tokenizer, 0, sizeof *tokenizer);
    if (buf == NULL)
        return q_fail(diag, Q_ERR_INVALID_ARG, "buf", 0, 0);
    if (len < 4)
        return q_fail(diag, Q_ERR_TRUNCATED, "magic", 0, (int64_t)len);
    if (q_load_u32(p) != Q_GGUF_MAGIC)
        return q_fail(diag, Q_ERR_BAD_MAGIC, "magic", 0, q_load_u32(p));
    return q_gguf_vocab_parse(tokenizer, p, len, diag);
}

q_error_code q_vocab_load(q_tokenizer *tokenizer, const char *path, q_diag *diag)
{
    return q_tokenizer_map_parse(tokenizer, path, 1, 0, diag);
}

void q_model_free(q_model *model)
{
    if (model == NULL)
        return;
    q_os_free(model->layers);
    memset(model, 0, sizeof *model);
}

float q_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    uint32_t bits;
    float f;
    if (exp == 0) {
        /* zero or subnormal: mant * 2^-24 */
        f = (float)mant * 5.9604644775390625e-8f;
        return sign ? -f : f;
    }
    if (exp == 31)
        bits = sign | 0x7f800000u | (mant << 13);
    else
        bits = sign | ((exp + 112u) << 23) | (mant << 13);
    memcpy(&f, &bits, sizeof f);
    return f;
}

float q_bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

q_error_code q_tensor_read_row(const q_tensor *t, size_t row, float *out)
{
    size_t i;
    if (t == NULL || out == NULL || t->data == NULL || row >= t->rows)
        return Q_ERR_INVALID_ARG;
    /* row * cols cannot overflow: the parser checked rows * cols * element size */
    switch (t->type) {
    case Q_TENSOR_F32: {
        const unsigned char *p = (const unsigned char *)t->data + row * t->cols * 4;
        for (i = 0; i < t->cols; i++)
            out[i] = q_load_f32(p + 4 * i);
        return Q_OK;
    }
    case Q_TENSOR_F16: {
        const unsigned char *p = (const unsigned char *)t->data + row * t->cols * 2;
        for (i = 0; i < t->cols; i++)
            out[i] = q_f16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
        return Q_OK;
    }
    case Q_TENSOR_BF16: {
        const unsigned char *p = (const unsigned char *)t->data + row * t->cols * 2;
        for (i = 0; i < t->cols; i++)
            out[i] = q_bf16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
        return Q_OK;
    }
    case Q_TENSOR_Q8_0: {
        /* blocks of 32 along the row: f16 scale, then 32 int8 */
        const unsigned char *p = (const unsigned char *)t->data + row * (t->cols / 32) * 34;
        for (i = 0; i < t->cols; i++) {
            const unsigned char *blk = p + (i / 32) * 34;
            float d = q_f16_to_f32((uint16_t)(blk[0] | (blk[1] << 8)));
            out[i] = d * (float)(int8_t)blk[2 + i % 32];
        }
        return Q_OK;
    }
    case Q_TENSOR_Q4_0: {
        /* blocks of 32 (18 bytes): f16 scale d, 16 bytes of 4-bit codes; d * (code - 8)
         * (layout: src/kernels/quant_layout.h) */
        const unsigned char *p = (const unsigned char *)t->data + row * (t->cols / 32) * 18;
        for (i = 0; i < t->cols; i++) {
            const unsigned char *blk = p + (i / 32) * 18;
            float d = q_f16_to_f32((uint16_t)(blk[0] | (blk[1] << 8)));
            out[i] = d * (float)q_q4_0_code(blk, i % 32);
        }
        return Q_OK;
    }
    case Q_TENSOR_Q6_K: {
        /* super-blocks of 256 (210 bytes): 6-bit codes, int8 scales per 16, f16 d; value =
         * d * scales[j / 16] * (code - 32) */
        const unsigned char *p = (const unsigned char *)t->data + row * (t->cols / 256) * 210;
        for (i = 0; i < t->cols; i++) {
            const unsigned char *blk = p + (i / 256) * 210;
            size_t j = i % 256;
            float d = q_f16_to_f32((uint16_t)(blk[Q_Q6_K_D] | (blk[Q_Q6_K_D + 1] << 8)));
            out[i] = d * (float)((int)(int8_t)blk[Q_Q6_K_SCALES + j / 16] * q_q6_k_code(blk, j));
        }
        return Q_OK;
    }
    case Q_TENSOR_Q4_K:
    case Q_TENSOR_Q5_K: {
        /* super-blocks of 256 (144 / 176 bytes): f16 d, f16 dmin, scales[12] (a 6-bit
         * scale and min per 32-weight sub-block), Q5_K: qh[32], then qs[128]; value =
         * d * scale * code - dmin * min */
        size_t bb = t->type == Q_TENSOR_Q4_K ? Q_Q4_K_BLOCK_BYTES : Q_Q5_K_BLOCK_BYTES;
        const unsigned char *p = (const unsigned char *)t->data + row * (t->cols / 256) * bb;
        for (i = 0; i < t->cols; i++) {
            const unsigned char *blk = p + (i / 256) * bb;
            size_t j = i % 256;
            unsigned sc, mn;
            q_k_scale_min(blk + Q_QK_SCALES, j / 32, &sc, &mn);
            unsigned code = t->type == Q_TENSOR_Q4_K ? q_q4_k_code(blk, j) : q_q5_k_code(blk, j);
            float d = q_f16_to_f32((uint16_t)(blk[0] | (blk[1] << 8)));
            float dmin = q_f16_to_f32((uint16_t)(blk[2] | (blk[3] << 8)));
            out[i] = d * (float)(sc * code) - dmin * (float)mn;
        }
        return Q_OK;
    }
    case Q_TENSOR_Q8_SPLIT: {
        const signed char *q = (const signed char *)t->data + row * t->cols;
        const unsigned char *s = t->scales;
        size_t g0;
        if (s == NULL || t->group_size == 0)
            return Q_ERR_INVALID_ARG;
        g0 = row * t->cols / t->group_size;
        for (i = 0; i < t->cols; i++)
            out[i] = (float)q[i] * q_load_f32(s + 4 * (g0 + i / t->group_size));
        return Q_OK;
    }
    }
    return Q_ERR_UNSUPPORTED_TYPE;
}
