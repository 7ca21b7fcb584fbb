/*
 * Shared checks of the model-file targets (fuzz_model_llama2c, fuzz_gguf, fuzz_tokenizer).
 *
 * The payload is the WHOLE input (a model or tokenizer file as the corpus stores it), so
 * valid seed files are accepted as they are. Parameters that are not part of the file
 * (the failure injection position) are derived from a hash of the input, as libpng's
 * nalloc does: still a pure function of the input, so every crash reproduces.
 *
 * What "accepted" must mean, checked on every accepted file:
 *   - every config field within its Q_MAX_* limit, n_heads | dim, n_kv_heads | n_heads,
 *     even head size;
 *   - every tensor's bytes inside the input buffer, its shape as the config says; its
 *     first and last bytes are read (ASan sees a view past the end);
 *   - a tokenizer's pieces within max_token_length, ids below vocab_size;
 *   - parsing from memory and through the file path (q_model_load on a temporary file)
 *     give the same result;
 *   - with an injected OS failure the parser returns Q_ERR_ALLOC and leaves nothing behind.
 * And on every input, accepted or not: the parser's verdict is the independent oracle's
 * (model_oracle.h, written from docs/model-formats.md), so a file the spec forbids cannot
 * be accepted silently, nor a valid file refused.
 * When the model is small, one or two forward steps run and every logit is read (MSan).
 */
#ifndef QORUS_FUZZ_MODEL_COMMON_H
#define QORUS_FUZZ_MODEL_COMMON_H

#include <math.h>
#include <stdlib.h>

#include "fuzz_helpers.h"
#include "model_oracle.h"
#include "qorus_model.h"
#include "qorus_testing.h"
#if defined(QORUS_FUZZ_HAVE_FORWARD) || defined(QORUS_FUZZ_HAVE_ENCODE)
#include "qorus_infer.h"
#endif

/* Work caps per input: larger models are parsed and checked, not run. */
#define FUZZ_MAX_FORWARD_MACS ((size_t)1 << 21)
#define FUZZ_MAX_KV_BYTES ((size_t)64 << 20)
#define FUZZ_MAX_ENCODE_BYTES 48

static inline uint64_t fuzz_hash(const uint8_t *data, size_t size)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < size; i++) {
        h ^= data[i];
        h *= 0x100000001b3ull;
    }
    return h ^ (h >> 29);
}

/* Failure position for one run: 0 (none) in 3 of 4 inputs, else 1..16. */
static inline unsigned long fuzz_injection_from_hash(uint64_t h)
{
    if ((h & 3u) != 0)
        return 0;
    return 1 + (unsigned long)((h >> 2) % 16u);
}

static inline size_t fuzz_type_bytes(const q_tensor *t, size_t *scale_bytes)
{
    size_t n = t->rows * t->cols; /* the parser checked this product */
    *scale_bytes = 0;
    switch (t->type) {
    case Q_TENSOR_F32: return n * 4;
    case Q_TENSOR_F16: return n * 2;
    case Q_TENSOR_BF16: return n * 2;
    case Q_TENSOR_Q8_0:
        FUZZ_ASSERT(t->cols % 32 == 0);
        return n / 32 * 34;
    case Q_TENSOR_Q4_0:
        FUZZ_ASSERT(t->cols % 32 == 0);
        return n / 32 * 18;
    case Q_TENSOR_Q4_K:
        FUZZ_ASSERT(t->cols % 256 == 0);
        return n / 256 * 144;
    case Q_TENSOR_Q5_K:
        FUZZ_ASSERT(t->cols % 256 == 0);
        return n / 256 * 176;
    case Q_TENSOR_Q6_K:
        FUZZ_ASSERT(t->cols % 256 == 0);
        return n / 256 * 210;
    case Q_TENSOR_Q8_SPLIT:
        FUZZ_ASSERT(t->group_size > 0 && n % t->group_size == 0);
        *scale_bytes = n / t->group_size * 4;
        return n;
    }
    FUZZ_ASSERT_MSG(0, "unknown tensor type %d", (int)t->type);
    return 0;
}

static inline void fuzz_check_view(const void *p, size_t n, const uint8_t *buf, size_t len,
                                   const char *what)
{
    const uint8_t *b = p;
    FUZZ_ASSERT_MSG(b != NULL && n > 0, "%s: empty view", what);
    FUZZ_ASSERT_MSG(b >= buf && b <= buf + len && n <= (size_t)(buf + len - b),
                    "%s: %zu bytes at offset %td outside the %zu-byte file", what, n, b - buf,
                    len);
    volatile uint8_t first = b[0], last = b[n - 1];
    (void)first;
    (void)last;
}

/* q_tensor_read_row on the first and last rows: every value read (MSan), and a row past
 * the end refused. */
static inline void fuzz_read_rows(const q_tensor *t)
{
    static float row[Q_MAX_HIDDEN_DIM > Q_MAX_DIM ? Q_MAX_HIDDEN_DIM : Q_MAX_DIM];
    if (t->cols > sizeof row / sizeof row[0])
        return;
    size_t rows_to_read[2] = {0, t->rows - 1};
    for (int k = 0; k < 2; k++) {
        q_error_code rc = q_tensor_read_row(t, rows_to_read[k], row);
        FUZZ_ASSERT_MSG(rc == Q_OK, "q_tensor_read_row: %s", q_error_name(rc));
        volatile size_t nan = 0;
        for (size_t i = 0; i < t->cols; i++)
            if (row[i] != row[i])
                nan++;
        (void)nan;
    }
    FUZZ_ASSERT(q_tensor_read_row(t, t->rows, row) == Q_ERR_INVALID_ARG);
    FUZZ_ASSERT(q_tensor_read_row(t, 0, NULL) == Q_ERR_INVALID_ARG);
}

static inline void fuzz_check_tensor(const q_tensor *t, size_t rows, size_t cols,
                                     const uint8_t *buf, size_t len, const char *what)
{
    FUZZ_ASSERT_MSG(t->rows == rows && t->cols == cols,
                    "%s: shape %zux%zu, config says %zux%zu", what, t->rows, t->cols, rows, cols);
    FUZZ_ASSERT(t->rows > 0 && t->cols > 0);
    FUZZ_ASSERT(t->rows <= SIZE_MAX / t->cols);
    size_t scale_bytes;
    size_t bytes = fuzz_type_bytes(t, &scale_bytes);
    fuzz_check_view(t->data, bytes, buf, len, what);
    if (scale_bytes)
        fuzz_check_view(t->scales, scale_bytes, buf, len, what);
    fuzz_read_rows(t);
}

static inline void fuzz_check_config(const q_config *c)
{
    FUZZ_ASSERT(c->dim >= 1 && c->dim <= Q_MAX_DIM);
    FUZZ_ASSERT(c->hidden_dim >= 1 && c->hidden_dim <= Q_MAX_HIDDEN_DIM);
    FUZZ_ASSERT(c->n_layers >= 1 && c->n_layers <= Q_MAX_LAYERS);
    FUZZ_ASSERT(c->n_heads >= 1 && c->n_heads <= Q_MAX_HEADS);
    FUZZ_ASSERT(c->n_kv_heads >= 1 && c->n_kv_heads <= c->n_heads);
    FUZZ_ASSERT(c->vocab_size >= 1 && c->vocab_size <= Q_MAX_VOCAB);
    FUZZ_ASSERT(c->seq_len >= 1 && c->seq_len <= Q_MAX_SEQ_LEN);
    FUZZ_ASSERT(c->dim % c->n_heads == 0);
    FUZZ_ASSERT(c->n_heads % c->n_kv_heads == 0);
    FUZZ_ASSERT((c->dim / c->n_heads) % 2 == 0);
    FUZZ_ASSERT(isfinite(c->rope_theta) && c->rope_theta > 0.0f);
    FUZZ_ASSERT(isfinite(c->norm_eps) && c->norm_eps > 0.0f);
}

static inline void fuzz_check_model(const q_model *m, const uint8_t *buf, size_t len)
{
    const q_config *c = &m->config;
    fuzz_check_config(c);
    size_t hs = c->dim / c->n_heads, kv_dim = c->n_kv_heads * hs;
    FUZZ_ASSERT(m->layers != NULL);
    fuzz_check_tensor(&m->token_embedding, c->vocab_size, c->dim, buf, len, "token_embedding");
    for (size_t l = 0; l < c->n_layers; l++) {
        const q_layer *L = &m->layers[l];
        fuzz_check_tensor(&L->attn_norm, 1, c->dim, buf, len, "attn_norm");
        fuzz_check_tensor(&L->wq, c->n_heads * hs, c->dim, buf, len, "wq");
        fuzz_check_tensor(&L->wk, kv_dim, c->dim, buf, len, "wk");
        fuzz_check_tensor(&L->wv, kv_dim, c->dim, buf, len, "wv");
        fuzz_check_tensor(&L->wo, c->dim, c->n_heads * hs, buf, len, "wo");
        fuzz_check_tensor(&L->ffn_norm, 1, c->dim, buf, len, "ffn_norm");
        fuzz_check_tensor(&L->w1, c->hidden_dim, c->dim, buf, len, "w1");
        fuzz_check_tensor(&L->w2, c->dim, c->hidden_dim, buf, len, "w2");
        fuzz_check_tensor(&L->w3, c->hidden_dim, c->dim, buf, len, "w3");
    }
    fuzz_check_tensor(&m->final_norm, 1, c->dim, buf, len, "final_norm");
    fuzz_check_tensor(&m->classifier, c->vocab_size, c->dim, buf, len, "classifier");
    if (m->shared_classifier)
        FUZZ_ASSERT(m->classifier.data == m->token_embedding.data);
}

static inline void fuzz_check_tokenizer(const q_tokenizer *t)
{
    FUZZ_ASSERT(t->vocab_size >= 1 && t->vocab_size <= Q_MAX_VOCAB);
    FUZZ_ASSERT(t->pieces != NULL && t->piece_lengths != NULL && t->scores != NULL);
    FUZZ_ASSERT(t->max_token_length <= Q_MAX_TOKEN_BYTES);
    for (size_t i = 0; i < t->vocab_size; i++) {
        FUZZ_ASSERT(t->pieces[i] != NULL);
        FUZZ_ASSERT_MSG(t->piece_lengths[i] <= t->max_token_length,
                        "piece %zu: %zu bytes > max_token_length %zu", i, t->piece_lengths[i],
                        t->max_token_length);
        FUZZ_ASSERT(t->pieces[i][t->piece_lengths[i]] == '\0');
        fuzz_touch_bytes(t->pieces[i], t->piece_lengths[i]);
        volatile float score = t->scores[i];
        (void)score;
    }
    if (t->has_byte_fallback)
        for (unsigned b = 0; b < 256; b++)
            FUZZ_ASSERT(t->byte_tokens[b] < t->vocab_size);
}

static inline int fuzz_model_is_small(const q_config *c)
{
    size_t hs = c->dim / c->n_heads, kv_dim = c->n_kv_heads * hs;
    /* Per token: layers * (dim * (2 dim + 2 kv_dim) + 3 dim hidden) + vocab dim, and the
     * attention over at most 2 positions. All factors are bounded by Q_MAX_*, so the
     * products fit in 64 bits; saturate anyway. */
    double macs = (double)c->n_layers *
                      ((double)c->dim * (2.0 * (double)c->dim + 2.0 * (double)kv_dim) +
                       3.0 * (double)c->dim * (double)c->hidden_dim) +
                  (double)c->vocab_size * (double)c->dim;
    double kv = (double)c->n_layers * (double)c->seq_len * (double)kv_dim * 8.0;
    return macs <= (double)FUZZ_MAX_FORWARD_MACS && kv <= (double)FUZZ_MAX_KV_BYTES;
}

#ifdef QORUS_FUZZ_HAVE_FORWARD
/* One or two forward steps; every logit is read. Failures other than injected ones are
 * bugs: the model was accepted. */
static inline void fuzz_run_forward(const q_model *m, uint64_t h)
{
    if (!fuzz_model_is_small(&m->config))
        return;
    q_context ctx = {0};
    q_state st = {0};
    q_error_code rc = q_state_init(&st, &ctx, m);
    FUZZ_ASSERT_MSG(rc == Q_OK, "q_state_init on an accepted model: %s", q_error_name(rc));
    size_t steps = m->config.seq_len < 2 ? 1 : 2;
    for (size_t pos = 0; pos < steps; pos++) {
        uint32_t token = (uint32_t)((h >> (8 * pos)) % m->config.vocab_size);
        float *logits = NULL;
        rc = q_forward(&st, token, pos, &logits);
        FUZZ_ASSERT_MSG(rc == Q_OK, "q_forward: %s", q_error_name(rc));
        FUZZ_ASSERT(logits != NULL);
        volatile size_t nonfinite = 0;
        for (size_t i = 0; i < m->config.vocab_size; i++)
            if (!isfinite(logits[i]))
                nonfinite++;
        (void)nonfinite;
    }
    FUZZ_ASSERT(q_forward(&st, m->config.vocab_size > UINT32_MAX ? 0 : (uint32_t)m->config.vocab_size,
                          0, NULL) == Q_ERR_BAD_TOKEN);
    FUZZ_ASSERT(q_forward(&st, 0, m->config.seq_len, NULL) == Q_ERR_INVALID_CONFIG);
    q_state_free(&st);
    q_free_memory(&ctx);
}
#else
static inline void fuzz_run_forward(const q_model *m, uint64_t h)
{
    (void)m;
    (void)h;
}
#endif

#ifdef QORUS_FUZZ_HAVE_ENCODE
/* Encodes a few bytes with an accepted tokenizer and decodes the tokens back. */
static inline void fuzz_run_tokenizer(const q_tokenizer *tok, const uint8_t *text, size_t n)
{
    if (n > FUZZ_MAX_ENCODE_BYTES)
        n = FUZZ_MAX_ENCODE_BYTES;
    q_encoder enc;
    q_error_code rc = q_encoder_init(&enc, tok);
    if (rc != Q_OK) {
        FUZZ_ASSERT_MSG(rc == Q_ERR_ALLOC || rc == Q_ERR_OVERFLOW, "q_encoder_init: %s",
                        q_error_name(rc));
        return;
    }
    uint32_t tokens[FUZZ_MAX_ENCODE_BYTES + 3];
    size_t n_tokens = 0;
    rc = q_encode(&enc, (const char *)text, n, 1, 0, tokens, q_encode_capacity(n), &n_tokens);
    if (rc == Q_OK) {
        FUZZ_ASSERT(n_tokens <= q_encode_capacity(n));
        for (size_t i = 0; i < n_tokens; i++)
            FUZZ_ASSERT_MSG(tokens[i] < tok->vocab_size, "token %u >= vocab %zu", tokens[i],
                            tok->vocab_size);
        q_decoder dec;
        if (q_decoder_init(&dec, tok) == Q_OK) {
            for (size_t i = 1; i < n_tokens; i++) {
                const char *out = NULL;
                size_t out_len = 0;
                FUZZ_ASSERT(q_decoder_next(&dec, tokens[i - 1], tokens[i], &out, &out_len) == Q_OK);
                if (out_len)
                    fuzz_touch_bytes(out, out_len);
            }
            const char *out = NULL;
            size_t out_len = 0;
            FUZZ_ASSERT(q_decoder_next(&dec, 0, (uint32_t)tok->vocab_size, &out, &out_len) ==
                        Q_ERR_BAD_TOKEN);
            q_decoder_finish(&dec);
            q_decoder_free(&dec);
        }
    } else {
        FUZZ_ASSERT_MSG(rc == Q_ERR_BAD_TOKEN || rc == Q_ERR_ALLOC, "q_encode: %s",
                        q_error_name(rc));
    }
    q_encoder_free(&enc);
}
#else
static inline void fuzz_run_tokenizer(const q_tokenizer *tok, const uint8_t *text, size_t n)
{
    (void)tok;
    (void)text;
    (void)n;
}
#endif

static inline int fuzz_model_equal(const q_model *a, const q_model *b)
{
    return a->format == b->format && a->version == b->version &&
           memcmp(&a->config, &b->config, sizeof a->config) == 0 &&
           a->shared_classifier == b->shared_classifier;
}

static inline int fuzz_model_is_empty(const q_model *m)
{
    static const q_model zero;
    return memcmp(m, &zero, sizeof zero) == 0;
}

/*
 * The whole model-file check: parse with an injected failure (some inputs), parse from
 * memory, check what was accepted, compare with the file path, run forward steps.
 */
/* Argument errors of the model API: refused with Q_ERR_INVALID_ARG, outputs zeroed. */
static inline void fuzz_check_model_api_misuse(const uint8_t *data, size_t size)
{
    q_model m;
    q_tokenizer t;
    q_context ctx = {0};
    q_diag d;
    FUZZ_ASSERT(q_model_parse(NULL, NULL, data, size, &d) == Q_ERR_INVALID_ARG);
    FUZZ_ASSERT(q_model_parse(&m, &t, NULL, size, NULL) == Q_ERR_INVALID_ARG);
    FUZZ_ASSERT(fuzz_model_is_empty(&m) && t.pieces == NULL);
    FUZZ_ASSERT(q_model_load(NULL, NULL, &ctx, "x", Q_MMAP_LAZY, &d) == Q_ERR_INVALID_ARG);
    FUZZ_ASSERT(q_model_load(&m, NULL, NULL, "x", Q_MMAP_LAZY, NULL) == Q_ERR_INVALID_ARG);
    FUZZ_ASSERT(q_model_load(&m, NULL, &ctx, NULL, Q_MMAP_LAZY, NULL) == Q_ERR_INVALID_ARG);
    FUZZ_ASSERT(q_model_load(&m, NULL, &ctx, "/nonexistent/qorus", Q_MMAP_LAZY, &d) == Q_ERR_FILE_OPEN);
    FUZZ_ASSERT(ctx.weights_mmap == NULL);
    FUZZ_ASSERT(q_tokenizer_parse(NULL, data, size, 1, &d) == Q_ERR_INVALID_ARG);
    FUZZ_ASSERT(q_tokenizer_parse(&t, NULL, size, 1, NULL) == Q_ERR_INVALID_ARG);
    FUZZ_ASSERT(q_tokenizer_parse(&t, data, size, (size_t)Q_MAX_VOCAB + 1, NULL) ==
                Q_ERR_INVALID_CONFIG);
    FUZZ_ASSERT(q_tokenizer_load(NULL, "x", 1, &d) == Q_ERR_INVALID_ARG);
    FUZZ_ASSERT(q_tokenizer_load(&t, NULL, 1, NULL) == Q_ERR_INVALID_ARG);
    FUZZ_ASSERT(q_tokenizer_load(&t, "/nonexistent/qorus", 1, &d) == Q_ERR_FILE_OPEN);
    FUZZ_ASSERT(q_tensor_read_row(NULL, 0, NULL) == Q_ERR_INVALID_ARG);
    q_model_free(NULL);
    q_tokenizer_free(NULL);
}

/* The parser's verdict (rc) against the oracle's: both directions are bugs. */
static inline void fuzz_check_model_oracle(const uint8_t *data, size_t size, int want_tokenizer,
                                           q_error_code rc, const q_diag *diag)
{
    oracle_verdict v;
    int valid = oracle_model(data, size, want_tokenizer, &v);
    FUZZ_ASSERT_MSG(rc != Q_OK || valid, "parser accepted a file the oracle rejects (rule: %s)",
                    v.rule);
    FUZZ_ASSERT_MSG(rc == Q_OK || !valid,
                    "parser rejected a file the oracle accepts: %s (field '%s' = %lld at %llu)",
                    q_error_name(rc), diag->field, (long long)diag->value,
                    (unsigned long long)diag->offset);
}

static inline void fuzz_model_input(const uint8_t *data, size_t size, int want_tokenizer)
{
    uint64_t h = fuzz_hash(data, size);
    if ((h & 0xf0u) == 0)
        fuzz_check_model_api_misuse(data, size);
    q_model model;
    q_tokenizer tok;
    q_diag diag;
    q_tokenizer *tp = want_tokenizer ? &tok : NULL;

    unsigned long inject = fuzz_injection_from_hash(h);
    if (inject) {
        q_test_fail_nth_os_call(inject);
        q_error_code rc = q_model_parse(&model, tp, data, size, &diag);
        int fired = q_test_failure_fired();
        q_test_fail_nth_os_call(0);
        if (fired) {
            FUZZ_ASSERT_MSG(rc == Q_ERR_ALLOC, "allocation %lu failed, parser said %s", inject,
                            q_error_name(rc));
            FUZZ_ASSERT(fuzz_model_is_empty(&model));
        } else {
            if (rc == Q_OK) {
                q_model_free(&model);
                if (tp)
                    q_tokenizer_free(tp);
            }
        }
    }

    q_error_code rc = q_model_parse(&model, tp, data, size, &diag);
    fuzz_check_model_oracle(data, size, want_tokenizer, rc, &diag);
    if (rc != Q_OK) {
        FUZZ_ASSERT(rc < 0 && q_strerror(rc) != NULL);
        FUZZ_ASSERT(fuzz_model_is_empty(&model));
        FUZZ_ASSERT(memchr(diag.field, '\0', sizeof diag.field) != NULL);
    } else {
        fuzz_check_model(&model, data, size);
        if (tp && tok.vocab_size) {
            fuzz_check_tokenizer(&tok);
            FUZZ_ASSERT(tok.vocab_size == model.config.vocab_size);
            fuzz_run_tokenizer(&tok, data, size);
        }
        fuzz_run_forward(&model, h);
    }

    /* The file path must agree with the memory path. */
    if (size >= Q_MIN_MODEL_FILE_BYTES) {
        const char *path = fuzz_temp_file(data, size);
        unsigned long load_inject = (h >> 12) % 8 == 0 ? 1 + (unsigned long)((h >> 16) % 4) : 0;
        if (path != NULL && load_inject) {
            /* open (1), mmap (2), then the parser's allocations: a clean error or success */
            q_context ctx = {0};
            q_model m2;
            q_tokenizer tok2;
            q_test_fail_nth_os_call(load_inject);
            q_error_code rc2 = q_model_load(&m2, tp ? &tok2 : NULL, &ctx, path, Q_MMAP_LAZY, NULL);
            int fired = q_test_failure_fired();
            q_test_fail_nth_os_call(0);
            if (fired) {
                FUZZ_ASSERT_MSG(rc2 == Q_ERR_FILE_OPEN || rc2 == Q_ERR_MMAP || rc2 == Q_ERR_ALLOC,
                                "injected failure %lu in q_model_load: %s", load_inject,
                                q_error_name(rc2));
                FUZZ_ASSERT(ctx.weights_mmap == NULL && fuzz_model_is_empty(&m2));
            } else {
                FUZZ_ASSERT(rc2 == rc);
            }
            if (rc2 == Q_OK) {
                if (tp)
                    q_tokenizer_free(&tok2);
                q_model_free(&m2);
            }
            q_free_memory(&ctx);
        }
        if (path != NULL) {
            q_context ctx = {0};
            q_model m2;
            q_tokenizer tok2;
            q_error_code rc2 = q_model_load(&m2, tp ? &tok2 : NULL, &ctx, path,
                                            (h >> 40) & 1 ? Q_MMAP_EAGER : Q_MMAP_LAZY, NULL);
            FUZZ_ASSERT_MSG(rc2 == rc, "q_model_parse said %s, q_model_load %s", q_error_name(rc),
                            q_error_name(rc2));
            if (rc2 == Q_OK) {
                FUZZ_ASSERT(fuzz_model_equal(&model, &m2));
                fuzz_check_model(&m2, ctx.weights_mmap, ctx.weights_size);
                if (tp) {
                    FUZZ_ASSERT(tok2.vocab_size == tok.vocab_size);
                    q_tokenizer_free(&tok2);
                }
                q_model_free(&m2);
                q_free_memory(&ctx);
            } else {
                FUZZ_ASSERT(ctx.weights_mmap == NULL && ctx.kv_buffer == NULL);
            }
            fuzz_remove_temp_file(path);
        }
    }
    if (rc == Q_OK) {
        q_model_free(&model);
        FUZZ_ASSERT(fuzz_model_is_empty(&model));
        q_model_free(&model);
    }
    if (tp) {
        q_tokenizer_free(tp);
        q_tokenizer_free(tp);
    }
}

#endif
