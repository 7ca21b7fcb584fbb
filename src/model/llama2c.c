/*
 * llama2.c checkpoints (karpathy/llama2.c export.py, run.c, runq.c). All little-endian.
 *
 * Version 0 (legacy, no magic; a first int32 outside 1..Q_MAX_DIM is Q_ERR_BAD_MAGIC):
 *   1. 7 x int32: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
 *      (vocab_size < 0: the classifier is not shared and follows the weights; INT32_MIN and
 *      0 are invalid)
 *   2. float32 weights, in this order (L = n_layers, hs = dim / n_heads,
 *      kv = n_kv_heads * hs):
 *      token_embedding (vocab, dim); rms_att L x (dim); wq L x (dim, dim);
 *      wk L x (kv, dim); wv L x (kv, dim); wo L x (dim, dim); rms_ffn L x (dim);
 *      w1 L x (hidden, dim); w2 L x (dim, hidden); w3 L x (hidden, dim); rms_final (dim);
 *      freq_cis_real (seq_len * hs / 2) and freq_cis_imag (same), unused and skipped;
 *      wcls (vocab, dim) when not shared
 *   3. end of file
 *
 * Version 1 ("ak42", float32) and 2 ("ak42", Q8_0), a 256-byte header:
 *   1. uint32 magic 0x616b3432 ("ak42")                       offset 0
 *   2. int32 version (1 or 2)                                 offset 4
 *   3. 7 x int32 config as above, vocab_size > 0              offset 8
 *   4. uint8 shared_classifier (0 or 1)                       offset 36
 *   5. v2 only: int32 group_size (unaligned)                  offset 37
 *   6. zero padding up to offset 256 (contents not checked)
 *   v1 weights, float32: rms_att L x (dim); rms_ffn L x (dim); rms_final (dim);
 *      token_embedding; wq L; wk L; wv L; wo L; w1 L; w2 L; w3 L; wcls if not shared
 *      (no freq_cis block).
 *   v2 weights: the three norm blocks as in v1 in float32, then each quantized matrix in
 *      the order token_embedding, wq L, wk L, wv L, wo L, w1 L, w2 L, w3 L, wcls if not
 *      shared, each as rows*cols int8 followed by rows*cols/group_size float32 scales
 *      (runq.c init_quantized_tensors). group_size must divide dim and hidden_dim, so groups
 *      never straddle rows.
 *   end of file after the last tensor.
 *
 * Every tensor size is computed with overflow checks and compared with the bytes left; a
 * file longer than its config implies is rejected (Q_ERR_INVALID_CONFIG, "trailing_bytes"):
 * without offsets in the format, the exact size is the only proof the config describes it.
 */
#include <limits.h>
#include <string.h>

#include "core/checked.h"
#include "core/os.h"
#include "model/model_internal.h"

#define Q_AK42_HEADER_BYTES 256u
#define Q_LEGACY_HEADER_BYTES 28u

typedef struct q_cursor {
    const unsigned char *base;
    size_t len;
    size_t pos;
    uint32_t version;
    size_t group_size;
    q_diag *diag;
} q_cursor;

/* Takes one tensor of rows x cols at the cursor. */
static q_error_code q_take(q_cursor *c, q_tensor *t, size_t rows, size_t cols, int quantized,
                           const char *name)
{
    size_t numel, bytes, scale_bytes = 0;
    memset(t, 0, sizeof *t);
    if (!q_mul_size(rows, cols, &numel))
        return q_fail(c->diag, Q_ERR_OVERFLOW, name, c->pos, (int64_t)rows);
    if (quantized) {
        bytes = numel;
        if (!q_mul_size(numel / c->group_size, 4, &scale_bytes))
            return q_fail(c->diag, Q_ERR_OVERFLOW, name, c->pos, (int64_t)numel);
    } else if (!q_mul_size(numel, 4, &bytes)) {
        return q_fail(c->diag, Q_ERR_OVERFLOW, name, c->pos, (int64_t)numel);
    }
    if (bytes > c->len - c->pos)
        return q_fail(c->diag, Q_ERR_TRUNCATED, name, c->pos, (int64_t)(c->len - c->pos));
    t->data = c->base + c->pos;
    c->pos += bytes;
    if (quantized) {
        if (scale_bytes > c->len - c->pos)
            return q_fail(c->diag, Q_ERR_TRUNCATED, name, c->pos,
                          (int64_t)(c->len - c->pos));
        t->scales = c->base + c->pos;
        c->pos += scale_bytes;
        t->type = Q_TENSOR_Q8_SPLIT;
        t->group_size = c->group_size;
    } else {
        t->type = Q_TENSOR_F32;
    }
    t->rows = rows;
    t->cols = cols;
    return Q_OK;
}

/* Which matrix of a layer, in file order. */
enum { M_WQ, M_WK, M_WV, M_WO, M_W1, M_W2, M_W3, M_COUNT };
static const char *const q_matrix_names[M_COUNT] = {"wq", "wk", "wv", "wo", "w1", "w2", "w3"};

static q_tensor *q_layer_matrix(q_layer *l, int which)
{
    switch (which) {
    case M_WQ: return &l->wq;
    case M_WK: return &l->wk;
    case M_WV: return &l->wv;
    case M_WO: return &l->wo;
    case M_W1: return &l->w1;
    case M_W2: return &l->w2;
    default: return &l->w3;
    }
}

static void q_matrix_shape(const q_config *cfg, int which, size_t *rows, size_t *cols)
{
    size_t hs = cfg->dim / cfg->n_heads, kv = cfg->n_kv_heads * hs; /* kv <= dim: no overflow */
    switch (which) {
    case M_WQ: *rows = cfg->dim; *cols = cfg->dim; break;
    case M_WK: case M_WV: *rows = kv; *cols = cfg->dim; break;
    case M_WO: *rows = cfg->dim; *cols = cfg->dim; break;
    case M_W2: *rows = cfg->dim; *cols = cfg->hidden_dim; break;
    default: *rows = cfg->hidden_dim; *cols = cfg->dim; break; /* w1, w3 */
    }
}

static q_error_code q_take_norms(q_cursor *c, q_model *m, int which /* 0 att, 1 ffn */)
{
    for (size_t l = 0; l < m->config.n_layers; l++) {
        q_tensor *t = which == 0 ? &m->layers[l].attn_norm : &m->layers[l].ffn_norm;
        q_error_code rc = q_take(c, t, 1, m->config.dim, 0, which == 0 ? "rms_att" : "rms_ffn");
        if (rc != Q_OK)
            return rc;
    }
    return Q_OK;
}

static q_error_code q_take_matrices(q_cursor *c, q_model *m, int which, int quantized)
{
    size_t rows, cols;
    q_matrix_shape(&m->config, which, &rows, &cols);
    for (size_t l = 0; l < m->config.n_layers; l++) {
        q_error_code rc = q_take(c, q_layer_matrix(&m->layers[l], which), rows, cols,
                                 quantized, q_matrix_names[which]);
        if (rc != Q_OK)
            return rc;
    }
    return Q_OK;
}

static q_error_code q_map_weights(q_cursor *c, q_model *m)
{
    const q_config *cfg = &m->config;
    q_error_code rc = Q_OK;
    int which;
    if (c->version == 0) {
        rc = q_take(c, &m->token_embedding, cfg->vocab_size, cfg->dim, 0, "token_embedding");
        if (rc == Q_OK)
            rc = q_take_norms(c, m, 0);
        for (which = M_WQ; rc == Q_OK && which <= M_WO; which++)
            rc = q_take_matrices(c, m, which, 0);
        if (rc == Q_OK)
            rc = q_take_norms(c, m, 1);
        for (which = M_W1; rc == Q_OK && which <= M_W3; which++)
            rc = q_take_matrices(c, m, which, 0);
        if (rc == Q_OK)
            rc = q_take(c, &m->final_norm, 1, cfg->dim, 0, "rms_final");
        if (rc == Q_OK) {
            /* freq_cis_real and freq_cis_imag: seq_len * head_size / 2 floats each */
            q_tensor skip;
            size_t half = cfg->dim / cfg->n_heads / 2;
            rc = q_take(c, &skip, cfg->seq_len, half, 0, "freq_cis_real");
            if (rc == Q_OK)
                rc = q_take(c, &skip, cfg->seq_len, half, 0, "freq_cis_imag");
        }
    } else {
        int quant = c->version == 2;
        rc = q_take_norms(c, m, 0);
        if (rc == Q_OK)
            rc = q_take_norms(c, m, 1);
        if (rc == Q_OK)
            rc = q_take(c, &m->final_norm, 1, cfg->dim, 0, "rms_final");
        if (rc == Q_OK)
            rc = q_take(c, &m->token_embedding, cfg->vocab_size, cfg->dim, quant,
                        "token_embedding");
        for (which = M_WQ; rc == Q_OK && which < M_COUNT; which++)
            rc = q_take_matrices(c, m, which, quant);
    }
    if (rc != Q_OK)
        return rc;
    if (m->shared_classifier) {
        m->classifier = m->token_embedding;
    } else {
        rc = q_take(c, &m->classifier, cfg->vocab_size, cfg->dim, c->version == 2, "wcls");
        if (rc != Q_OK)
            return rc;
    }
    if (c->pos != c->len)
        return q_fail(c->diag, Q_ERR_INVALID_CONFIG, "trailing_bytes", c->pos,
                      (int64_t)(c->len - c->pos));
    return Q_OK;
}

q_error_code q_llama2c_parse(q_model *model, const unsigned char *buf, size_t len,
                             q_diag *diag)
{
    q_raw_config raw;
    q_cursor c;
    uint32_t version = 0;
    size_t header, cfg_at, group_size = 0;
    int shared;
    q_error_code rc;

    if (q_load_u32(buf) == Q_AK42_MAGIC) {
        int32_t v;
        if (len < 8)
            return q_fail(diag, Q_ERR_TRUNCATED, "version", 4, (int64_t)len);
        v = q_load_i32(buf + 4);
        if (v != 1 && v != 2)
            return q_fail(diag, Q_ERR_UNSUPPORTED_VERSION, "version", 4, v);
        version = (uint32_t)v;
        header = Q_AK42_HEADER_BYTES;
        cfg_at = 8;
    } else {
        /* no magic in version 0: its dim field stands in for one */
        int32_t dim = q_load_i32(buf);
        if (dim < 1 || (uint32_t)dim > Q_MAX_DIM)
            return q_fail(diag, Q_ERR_BAD_MAGIC, "magic (legacy dim)", 0, dim);
        header = Q_LEGACY_HEADER_BYTES;
        cfg_at = 0;
    }
    if (len < header)
        return q_fail(diag, Q_ERR_TRUNCATED, "header", 0, (int64_t)len);
    for (int i = 0; i < 7; i++) {
        raw.offset[i] = cfg_at + 4 * (size_t)i;
        raw.value[i] = q_load_i32(buf + cfg_at + 4 * (size_t)i);
    }
    if (version == 0) {
        /* the sign of vocab_size is the shared-classifier flag; INT32_MIN has no magnitude */
        if (raw.value[5] == INT32_MIN)
            return q_fail(diag, Q_ERR_INVALID_CONFIG, "vocab_size", raw.offset[5], raw.value[5]);
        shared = raw.value[5] > 0;
        if (raw.value[5] < 0)
            raw.value[5] = -raw.value[5];
    } else {
        unsigned char flag = buf[36];
        if (flag > 1)
            return q_fail(diag, Q_ERR_INVALID_CONFIG, "shared_classifier", 36, flag);
        shared = flag == 1;
    }
    rc = q_config_check(&raw, &model->config, diag);
    if (rc != Q_OK) {
        memset(model, 0, sizeof *model);
        return rc;
    }
    if (version == 2) {
        int32_t gs = q_load_i32(buf + 37);
        if (gs < 1 || (uint32_t)gs > Q_MAX_GROUP_SIZE ||
            model->config.dim % (size_t)gs != 0 || model->config.hidden_dim % (size_t)gs != 0) {
            memset(model, 0, sizeof *model);
            return q_fail(diag, Q_ERR_INVALID_CONFIG, "group_size", 37, gs);
        }
        group_size = (size_t)gs;
    }
    model->config.rope_theta = 10000.0f;
    model->config.norm_eps = 1e-5f;
    model->format = Q_FORMAT_LLAMA2C;
    model->version = version;
    model->shared_classifier = shared;

    model->layers = q_os_calloc(model->config.n_layers, sizeof(q_layer));
    if (model->layers == NULL) {
        memset(model, 0, sizeof *model);
        return q_fail(diag, Q_ERR_ALLOC, "layers", 0, 0);
    }
    c.base = buf;
    c.len = len;
    c.pos = header;
    c.version = version;
    c.group_size = group_size;
    c.diag = diag;
    rc = q_map_weights(&c, model);
    if (rc != Q_OK)
        q_model_free(model);
    return rc;
}
