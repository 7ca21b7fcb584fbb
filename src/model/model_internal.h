/*
 * Internals shared by the model-file parsers: a bounds-tracking little-endian reader, the
 * diagnostic helper, config validation and tokenizer construction.
 *
 * Reader invariant: pos <= len at all times; every read first checks that the bytes it
 * needs are present (n <= len - pos), so no read ever leaves the buffer. Multi-byte fields
 * are assembled from byte loads, never by casting pointers into the mapping.
 */
#ifndef QORUS_MODEL_INTERNAL_H
#define QORUS_MODEL_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "qorus_model.h"

typedef struct q_reader {
    const unsigned char *base;
    size_t len;
    size_t pos;
} q_reader;

static inline size_t q_rd_left(const q_reader *r)
{
    return r->len - r->pos;
}

/* Takes `n` bytes: 1 and *out set, or 0 (nothing consumed) when fewer remain. */
static inline int q_rd_take(q_reader *r, size_t n, const unsigned char **out)
{
    if (n > r->len - r->pos)
        return 0;
    *out = r->base + r->pos;
    r->pos += n;
    return 1;
}

static inline uint32_t q_load_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static inline uint64_t q_load_u64(const unsigned char *p)
{
    return (uint64_t)q_load_u32(p) | ((uint64_t)q_load_u32(p + 4) << 32);
}

static inline int32_t q_load_i32(const unsigned char *p)
{
    uint32_t u = q_load_u32(p);
    int32_t v;
    memcpy(&v, &u, sizeof v);
    return v;
}

static inline float q_load_f32(const unsigned char *p)
{
    uint32_t u = q_load_u32(p);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline int q_rd_u32(q_reader *r, uint32_t *v)
{
    const unsigned char *p;
    if (!q_rd_take(r, 4, &p))
        return 0;
    *v = q_load_u32(p);
    return 1;
}

static inline int q_rd_i32(q_reader *r, int32_t *v)
{
    const unsigned char *p;
    if (!q_rd_take(r, 4, &p))
        return 0;
    *v = q_load_i32(p);
    return 1;
}

static inline int q_rd_u64(q_reader *r, uint64_t *v)
{
    const unsigned char *p;
    if (!q_rd_take(r, 8, &p))
        return 0;
    *v = q_load_u64(p);
    return 1;
}

static inline int q_rd_f32(q_reader *r, float *v)
{
    const unsigned char *p;
    if (!q_rd_take(r, 4, &p))
        return 0;
    *v = q_load_f32(p);
    return 1;
}

/* Fills `diag` (may be NULL) and returns `code`, so error exits read
 * `return q_fail(diag, Q_ERR_TRUNCATED, "n_kv", off, v);`. */
q_error_code q_fail(q_diag *diag, q_error_code code, const char *field, uint64_t offset,
                    int64_t value);
/* Same with a field made of a prefix and a (not NUL-terminated) name. */
q_error_code q_fail_named(q_diag *diag, q_error_code code, const char *prefix,
                          const unsigned char *name, size_t name_len, uint64_t offset,
                          int64_t value);

/* The seven llama2.c config fields as read from a file, with where each was found. */
typedef struct q_raw_config {
    int64_t value[7];   /* dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab, seq_len */
    uint64_t offset[7];
} q_raw_config;

/* Checks every field against its Q_MAX_* range, n_heads | dim, n_kv_heads | n_heads and an
 * even head size, then stores the fields in `out` (rope_theta/norm_eps untouched). Returns
 * Q_OK or Q_ERR_INVALID_CONFIG with `diag` naming the field. */
q_error_code q_config_check(const q_raw_config *raw, q_config *out, q_diag *diag);

/* Checks rope_theta and norm_eps (finite, positive, eps < 1). */
q_error_code q_config_check_floats(const q_config *c, uint64_t theta_off, uint64_t eps_off,
                                   q_diag *diag);

/* Tokenizer construction. q_tok_alloc allocates the arrays for `n` pieces holding
 * `text_bytes` bytes in total (NUL terminators not included); q_tok_set copies piece i
 * (pieces must be set in order 0..n-1); q_tok_finish detects byte-fallback pieces and checks
 * bos/eos. On error the caller frees with q_tokenizer_free. */
q_error_code q_tok_alloc(q_tokenizer *t, size_t n, size_t text_bytes);
void q_tok_set(q_tokenizer *t, size_t i, const unsigned char *piece, size_t len, float score,
               size_t *storage_used);
q_error_code q_tok_finish(q_tokenizer *t, uint64_t offset, q_diag *diag);

/* Most merges a byte-level BPE vocabulary may list: ranks stay exact in a float. */
#define Q_MAX_MERGES (1u << 24)

/* Finishes a byte-level BPE vocabulary whose pieces (and token_types, when not NULL) are
 * set: every normal and byte piece must be non-empty byte-level text (byte_level.h), every
 * byte's one-character piece must exist as a normal or byte piece (byte_tokens), and the
 * `n_merges` merges, GGUF strings "left right" framed from base + merges_at (framing
 * already validated), must each name two normal or byte pieces whose concatenation is one
 * too, no pair twice. Fills t->merges. Checks bos / eos. On error the caller frees with
 * q_tokenizer_free. */
q_error_code q_tok_bpe_finish(q_tokenizer *t, const unsigned char *base, size_t merges_at,
                              size_t n_merges, uint64_t tokens_at, q_diag *diag);

/* Format-specific entry points behind q_model_parse. Both leave `model` zeroed on error. */
q_error_code q_llama2c_parse(q_model *model, const unsigned char *buf, size_t len,
                             q_diag *diag);
q_error_code q_gguf_parse(q_model *model, q_tokenizer *tokenizer, const unsigned char *buf,
                          size_t len, q_diag *diag);
/* The vocabulary of a GGUF file (header and metadata only); tokenizer zeroed on error. */
q_error_code q_gguf_vocab_parse(q_tokenizer *tokenizer, const unsigned char *buf, size_t len,
                                q_diag *diag);

#define Q_AK42_MAGIC 0x616b3432u
#define Q_GGUF_MAGIC 0x46554747u /* "GGUF" read as a little-endian uint32 */

#endif
