/*
 * An independent accept/reject oracle for the model-file formats, written from
 * docs/model-formats.md (the spec), NOT from src/model: it shares no code with the parsers
 * (only the public Q_MAX_* limits). The fuzz targets assert that the parser and the oracle
 * agree in both directions:
 *
 *   parser accepts, oracle rejects  -> the parser silently accepted a file the spec forbids;
 *   parser rejects, oracle accepts  -> a false reject (unless an injected failure fired).
 *
 * Only the verdict is compared, not the error code: the parser checks rules in its own
 * order, and a file that breaks two rules may be reported under either. On rejection
 * `oracle_verdict.rule` names the first rule the oracle found broken (for the assertion
 * message only).
 *
 *   oracle_model(buf, len, want_tokenizer, &v)      what q_model_parse must decide
 *   oracle_tokenizer(buf, len, expected_vocab, &v)  what q_tokenizer_parse must decide
 *
 * Both return 1 (valid) or 0 (invalid). They assume a 64-bit size_t (every fuzz build).
 * Everything here is deliberately written the straightforward way: whole-file size
 * formulas instead of a cursor, nested loops where the parser sorts.
 */
#ifndef QORUS_FUZZ_MODEL_ORACLE_H
#define QORUS_FUZZ_MODEL_ORACLE_H

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qorus_model.h"

typedef struct oracle_verdict {
    const char *rule; /* first broken rule found; NULL when valid */
} oracle_verdict;

#define ORACLE_REJECT(v, why) \
    do {                      \
        (v)->rule = (why);    \
        return 0;             \
    } while (0)

static inline uint32_t oracle_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t oracle_u64(const uint8_t *p)
{
    return (uint64_t)oracle_u32(p) | (uint64_t)oracle_u32(p + 4) << 32;
}
static inline int64_t oracle_i32(const uint8_t *p)
{
    uint32_t u = oracle_u32(p);
    return u >= 0x80000000u ? (int64_t)u - 0x100000000LL : (int64_t)u;
}
static inline float oracle_f32(const uint8_t *p)
{
    uint32_t u = oracle_u32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ------------------------------------------------------------------------------------ */
/* Shared rules: the seven config fields and the tokenizer pieces                        */
/* ------------------------------------------------------------------------------------ */

/* dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len: each in 1..Q_MAX_*
 * (n_kv_heads up to Q_MAX_HEADS), n_heads | dim, even head size, n_kv_heads | n_heads. */
static inline int oracle_config_ok(const int64_t f[7], oracle_verdict *v)
{
    static const uint64_t max[7] = {Q_MAX_DIM, Q_MAX_HIDDEN_DIM, Q_MAX_LAYERS, Q_MAX_HEADS,
                                    Q_MAX_HEADS, Q_MAX_VOCAB, Q_MAX_SEQ_LEN};
    static const char *const name[7] = {"dim range", "hidden_dim range", "n_layers range",
                                        "n_heads range", "n_kv_heads range", "vocab_size range",
                                        "seq_len range"};
    for (int i = 0; i < 7; i++)
        if (f[i] < 1 || (uint64_t)f[i] > max[i])
            ORACLE_REJECT(v, name[i]);
    if (f[0] % f[3] != 0)
        ORACLE_REJECT(v, "n_heads divides dim");
    if ((f[0] / f[3]) % 2 != 0)
        ORACLE_REJECT(v, "head size even");
    if (f[4] > f[3] || f[3] % f[4] != 0)
        ORACLE_REJECT(v, "n_kv_heads divides n_heads");
    return 1;
}

static inline int oracle_hex(uint8_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static inline unsigned oracle_hex_value(uint8_t c)
{
    return c <= '9' ? (unsigned)(c - '0') : (unsigned)((c | 0x20) - 'a' + 10);
}

/* Byte-fallback pieces: every piece of 4+ bytes that starts with "<0x" and ends with '>'
 * must be exactly "<0xHH>", and no byte may have two pieces. `seen` has 256 entries. */
static inline int oracle_byte_piece_ok(const uint8_t *s, uint64_t n, uint8_t *seen,
                                       oracle_verdict *v)
{
    if (n < 4 || s[0] != '<' || s[1] != '0' || s[2] != 'x' || s[n - 1] != '>')
        return 1; /* an ordinary piece */
    if (n != 6 || !oracle_hex(s[3]) || !oracle_hex(s[4]))
        ORACLE_REJECT(v, "byte piece form <0xHH>");
    unsigned b = oracle_hex_value(s[3]) * 16 + oracle_hex_value(s[4]);
    if (seen[b])
        ORACLE_REJECT(v, "byte piece duplicate");
    seen[b] = 1;
    return 1;
}

/* ------------------------------------------------------------------------------------ */
/* tokenizer.bin                                                                         */
/* ------------------------------------------------------------------------------------ */

/* One entry at `*off`: float32 score (not NaN), int32 length in 0..max_len, the bytes. */
static inline int oracle_tok_entry(const uint8_t *buf, size_t len, size_t *off, int64_t max_len,
                                   const uint8_t **piece, uint64_t *plen)
{
    if (len - *off < 8)
        return 0;
    float score = oracle_f32(buf + *off);
    int64_t n = oracle_i32(buf + *off + 4);
    if (score != score || n < 0 || n > max_len || (uint64_t)n > len - *off - 8)
        return 0;
    *piece = buf + *off + 8;
    *plen = (uint64_t)n;
    *off += 8 + (size_t)n;
    return 1;
}

static inline int oracle_tokenizer(const uint8_t *buf, size_t len, size_t expected_vocab,
                                   oracle_verdict *v)
{
    v->rule = NULL;
    if (expected_vocab > Q_MAX_VOCAB)
        ORACLE_REJECT(v, "expected vocab range");
    if (len < 4)
        ORACLE_REJECT(v, "max_token_length present");
    int64_t max_len = oracle_i32(buf);
    if (max_len < 1 || max_len > (int64_t)Q_MAX_TOKEN_BYTES)
        ORACLE_REJECT(v, "max_token_length range");
    /* the file must be exactly whole entries, each well formed */
    size_t off = 4, n = 0;
    uint8_t seen[256] = {0};
    while (off < len) {
        const uint8_t *piece;
        uint64_t plen;
        if (!oracle_tok_entry(buf, len, &off, max_len, &piece, &plen))
            ORACLE_REJECT(v, "token entry (score not NaN, length 0..max, bytes present)");
        if (!oracle_byte_piece_ok(piece, plen, seen, v))
            return 0;
        n++;
        if (n > Q_MAX_VOCAB)
            ORACLE_REJECT(v, "vocab_size range");
    }
    if (n == 0)
        ORACLE_REJECT(v, "at least one token");
    if (expected_vocab != 0 && n != expected_vocab)
        ORACLE_REJECT(v, "token count = expected vocab");
    if (n <= 2)
        ORACLE_REJECT(v, "bos 1 / eos 2 below vocab");
    return 1;
}

/* ------------------------------------------------------------------------------------ */
/* llama2.c checkpoints                                                                  */
/* ------------------------------------------------------------------------------------ */

/* The exact file size the config implies (no overflow within the Q_MAX_* limits:
 * the largest term is 1024 * 262144 * 65536 * 4 * 3 < 2^48). */
static inline uint64_t oracle_llama2c_size(int version, const int64_t f[7], int shared,
                                           uint64_t gs)
{
    uint64_t dim = (uint64_t)f[0], hidden = (uint64_t)f[1], L = (uint64_t)f[2];
    uint64_t hs = dim / (uint64_t)f[3], kv = (uint64_t)f[4] * hs;
    uint64_t vocab = (uint64_t)f[5], seq = (uint64_t)f[6];
    /* element counts of the matrices of one layer, and of the embedding */
    uint64_t layer_mat = dim * dim + kv * dim + kv * dim + dim * dim + 3 * hidden * dim;
    uint64_t emb = vocab * dim;
    uint64_t mats = emb + L * layer_mat + (shared ? 0 : emb);
    uint64_t norms = 2 * L * dim + dim;
    if (version == 0)
        return 28 + 4 * (norms + mats + 2 * seq * (hs / 2));
    if (version == 1)
        return 256 + 4 * (norms + mats);
    /* v2: int8 values plus one float32 scale per group (gs divides every row) */
    return 256 + 4 * norms + mats + 4 * (mats / gs);
}

static inline int oracle_llama2c(const uint8_t *buf, size_t len, oracle_verdict *v)
{
    int version = 0, shared;
    int64_t f[7];
    size_t cfg_at;
    uint64_t gs = 0;
    if (oracle_u32(buf) == 0x616b3432u) { /* "ak42" */
        if (len < 8)
            ORACLE_REJECT(v, "ak42 version present");
        int64_t ver = oracle_i32(buf + 4);
        if (ver != 1 && ver != 2)
            ORACLE_REJECT(v, "ak42 version 1 or 2");
        version = (int)ver;
        if (len < 256)
            ORACLE_REJECT(v, "ak42 header 256 bytes");
        cfg_at = 8;
    } else {
        int64_t dim = oracle_i32(buf);
        if (dim < 1 || dim > (int64_t)Q_MAX_DIM)
            ORACLE_REJECT(v, "legacy magic (dim range)");
        if (len < 28)
            ORACLE_REJECT(v, "legacy header 28 bytes");
        cfg_at = 0;
    }
    for (int i = 0; i < 7; i++)
        f[i] = oracle_i32(buf + cfg_at + 4 * (size_t)i);
    if (version == 0) {
        shared = f[5] > 0;
        if (f[5] < 0)
            f[5] = -f[5]; /* INT32_MIN becomes 2^31, above Q_MAX_VOCAB */
    } else {
        if (buf[36] > 1)
            ORACLE_REJECT(v, "ak42 shared_classifier 0 or 1");
        shared = buf[36] == 1;
    }
    if (!oracle_config_ok(f, v))
        return 0;
    if (version == 2) {
        int64_t g = (int64_t)oracle_i32(buf + 37);
        if (g < 1 || g > (int64_t)Q_MAX_GROUP_SIZE || f[0] % g != 0 || f[1] % g != 0)
            ORACLE_REJECT(v, "v2 group_size range and divides dim, hidden_dim");
        gs = (uint64_t)g;
    }
    if ((uint64_t)len != oracle_llama2c_size(version, f, shared, gs))
        ORACLE_REJECT(v, "file size = config size exactly");
    return 1;
}

/* ------------------------------------------------------------------------------------ */
/* GGUF                                                                                  */
/* ------------------------------------------------------------------------------------ */

enum { OG_U8, OG_I8, OG_U16, OG_I16, OG_U32, OG_I32, OG_F32, OG_BOOL, OG_STRING, OG_ARRAY,
       OG_U64, OG_I64, OG_F64 };

typedef struct oracle_kv {
    const uint8_t *key;
    uint64_t key_len;
    uint32_t type;
    const uint8_t *value;  /* scalar / string (its length field) / array (first element) */
    uint32_t elem_type;    /* arrays */
    uint64_t count;        /* arrays */
} oracle_kv;

typedef struct oracle_ti {
    const uint8_t *name;
    uint64_t name_len;
    uint32_t n_dims;
    uint64_t ne[4];
    uint32_t type;
    uint64_t offset;
    uint64_t bytes;
} oracle_ti;

typedef struct oracle_gguf {
    const uint8_t *buf;
    size_t len, pos;
    oracle_kv *kv;
    size_t n_kv;
    oracle_ti *ti;
    size_t n_ti;
    uint64_t data_at; /* file offset of the data section (set with the tensor infos) */
} oracle_gguf;

static inline uint64_t oracle_scalar_size(uint32_t t)
{
    static const uint8_t size[13] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return t < 13 ? size[t] : 0;
}

static inline int oracle_g_bytes(oracle_gguf *g, uint64_t n, const uint8_t **p)
{
    if (n > g->len - g->pos)
        return 0;
    *p = g->buf + g->pos;
    g->pos += (size_t)n;
    return 1;
}

/* A GGUF string: uint64 length n (n + 1 must not overflow a signed 64-bit size), bytes. */
static inline int oracle_g_string(oracle_gguf *g, const uint8_t **s, uint64_t *n)
{
    const uint8_t *p;
    if (!oracle_g_bytes(g, 8, &p))
        return 0;
    *n = oracle_u64(p);
    if (*n >= (uint64_t)INT64_MAX)
        return 0;
    return oracle_g_bytes(g, *n, s);
}

static inline int oracle_name_is(const uint8_t *s, uint64_t n, const char *lit)
{
    return n == strlen(lit) && memcmp(s, lit, (size_t)n) == 0;
}

static inline const oracle_kv *oracle_find(const oracle_gguf *g, const char *key)
{
    for (size_t i = 0; i < g->n_kv; i++)
        if (oracle_name_is(g->kv[i].key, g->kv[i].key_len, key))
            return &g->kv[i];
    return NULL;
}

/* An integer-typed value (u8..i64, not bool, not float). 0 when not integer-typed;
 * u64 above INT64_MAX becomes INT64_MAX (outside every range). */
static inline int oracle_int(const oracle_kv *kv, int64_t *out)
{
    const uint8_t *p = kv->value;
    switch (kv->type) {
    case OG_U8: *out = p[0]; return 1;
    case OG_I8: *out = p[0] >= 128 ? (int64_t)p[0] - 256 : p[0]; return 1;
    case OG_U16: *out = p[0] | p[1] << 8; return 1;
    case OG_I16: {
        int64_t u = p[0] | p[1] << 8;
        *out = u >= 32768 ? u - 65536 : u;
        return 1;
    }
    case OG_U32: *out = oracle_u32(p); return 1;
    case OG_I32: *out = oracle_i32(p); return 1;
    case OG_U64: {
        uint64_t u = oracle_u64(p);
        *out = u > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)u;
        return 1;
    }
    case OG_I64: {
        uint64_t u = oracle_u64(p);
        *out = u > (uint64_t)INT64_MAX ? -(int64_t)(~u) - 1 : (int64_t)u;
        return 1;
    }
    default: return 0;
    }
}

/* f32, or f64 within the float range; 0 otherwise. */
static inline int oracle_float(const oracle_kv *kv, float *out)
{
    if (kv->type == OG_F32) {
        *out = oracle_f32(kv->value);
        return 1;
    }
    if (kv->type == OG_F64) {
        uint64_t u = oracle_u64(kv->value);
        double d;
        memcpy(&d, &u, 8);
        if (!(d >= -(double)FLT_MAX && d <= (double)FLT_MAX))
            return 0;
        *out = (float)d;
        return 1;
    }
    return 0;
}

static inline int oracle_string_is(const oracle_kv *kv, const char *lit)
{
    return kv->type == OG_STRING && oracle_name_is(kv->value + 8, oracle_u64(kv->value), lit);
}

static inline int oracle_sort_cmp(const uint8_t *a, uint64_t an, const uint8_t *b, uint64_t bn)
{
    if (an != bn)
        return an < bn ? -1 : 1;
    return an ? memcmp(a, b, (size_t)an) : 0;
}
static inline int oracle_kv_cmp(const void *a, const void *b)
{
    const oracle_kv *x = a, *y = b;
    return oracle_sort_cmp(x->key, x->key_len, y->key, y->key_len);
}
static inline int oracle_ti_cmp(const void *a, const void *b)
{
    const oracle_ti *x = a, *y = b;
    return oracle_sort_cmp(x->name, x->name_len, y->name, y->name_len);
}

/* Header, metadata pairs and their framing; duplicate keys. */
static inline int oracle_gguf_metadata(oracle_gguf *g, uint64_t *n_tensors, oracle_verdict *v)
{
    if (g->len < 24)
        ORACLE_REJECT(v, "GGUF header 24 bytes");
    uint32_t version = oracle_u32(g->buf + 4);
    if (version != 2 && version != 3)
        ORACLE_REJECT(v, "GGUF version 2 or 3");
    *n_tensors = oracle_u64(g->buf + 8);
    uint64_t n_kv = oracle_u64(g->buf + 16);
    g->pos = 24;
    /* a pair takes at least 13 bytes: a cheap bound before allocating */
    if (n_kv > (g->len - g->pos) / 13)
        ORACLE_REJECT(v, "n_kv within the file");
    g->kv = calloc(n_kv ? (size_t)n_kv : 1, sizeof *g->kv);
    if (g->kv == NULL)
        abort();
    for (uint64_t i = 0; i < n_kv; i++) {
        oracle_kv *kv = &g->kv[g->n_kv++];
        const uint8_t *p, *s;
        uint64_t n;
        if (!oracle_g_string(g, &kv->key, &kv->key_len))
            ORACLE_REJECT(v, "key string");
        if (!oracle_g_bytes(g, 4, &p))
            ORACLE_REJECT(v, "value type present");
        kv->type = oracle_u32(p);
        kv->value = g->buf + g->pos;
        if (kv->type == OG_STRING) {
            if (!oracle_g_string(g, &s, &n))
                ORACLE_REJECT(v, "string value");
        } else if (kv->type == OG_ARRAY) {
            if (!oracle_g_bytes(g, 12, &p))
                ORACLE_REJECT(v, "array header");
            kv->elem_type = oracle_u32(p);
            kv->count = oracle_u64(p + 4);
            kv->value = g->buf + g->pos;
            if (kv->elem_type > OG_F64 || kv->elem_type == OG_ARRAY)
                ORACLE_REJECT(v, "array element type known, not array");
            if (kv->elem_type == OG_STRING) {
                for (uint64_t k = 0; k < kv->count; k++)
                    if (!oracle_g_string(g, &s, &n))
                        ORACLE_REJECT(v, "array string");
            } else {
                uint64_t es = oracle_scalar_size(kv->elem_type);
                if (kv->count > (g->len - g->pos) / es ||
                    !oracle_g_bytes(g, kv->count * es, &s))
                    ORACLE_REJECT(v, "array data");
            }
        } else {
            uint64_t es = oracle_scalar_size(kv->type);
            if (es == 0)
                ORACLE_REJECT(v, "value type known");
            if (!oracle_g_bytes(g, es, &s))
                ORACLE_REJECT(v, "scalar value");
        }
    }
    oracle_kv *sorted = malloc((g->n_kv ? g->n_kv : 1) * sizeof *sorted);
    if (sorted == NULL)
        abort();
    memcpy(sorted, g->kv, g->n_kv * sizeof *sorted);
    qsort(sorted, g->n_kv, sizeof *sorted, oracle_kv_cmp);
    int dup = 0;
    for (size_t i = 1; i < g->n_kv; i++)
        if (oracle_kv_cmp(&sorted[i - 1], &sorted[i]) == 0)
            dup = 1;
    free(sorted);
    if (dup)
        ORACLE_REJECT(v, "keys unique");
    return 1;
}

static inline int oracle_is_pow2(uint64_t a)
{
    return a != 0 && (a & (a - 1)) == 0;
}

/* Tensor infos and the data extents. */
static inline int oracle_gguf_tensors(oracle_gguf *g, uint64_t n_tensors, uint64_t align,
                                      oracle_verdict *v)
{
    if (n_tensors > (g->len - g->pos) / 32) /* an info takes at least 32 bytes */
        ORACLE_REJECT(v, "n_tensors within the file");
    g->ti = calloc(n_tensors ? (size_t)n_tensors : 1, sizeof *g->ti);
    if (g->ti == NULL)
        abort();
    uint64_t total = 0;
    for (uint64_t i = 0; i < n_tensors; i++) {
        oracle_ti *t = &g->ti[g->n_ti++];
        const uint8_t *p;
        if (!oracle_g_string(g, &t->name, &t->name_len))
            ORACLE_REJECT(v, "tensor name");
        if (!oracle_g_bytes(g, 4, &p))
            ORACLE_REJECT(v, "n_dims present");
        t->n_dims = oracle_u32(p);
        if (t->n_dims < 1 || t->n_dims > Q_GGUF_MAX_DIMS)
            ORACLE_REJECT(v, "n_dims 1..4");
        unsigned __int128 numel = 1;
        for (uint32_t d = 0; d < 4; d++)
            t->ne[d] = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            if (!oracle_g_bytes(g, 8, &p))
                ORACLE_REJECT(v, "ne present");
            t->ne[d] = oracle_u64(p);
            if (t->ne[d] == 0)
                ORACLE_REJECT(v, "ne >= 1");
            if (t->ne[d] > (uint64_t)INT64_MAX)
                ORACLE_REJECT(v, "ne <= INT64_MAX");
            numel *= t->ne[d];
            if (numel > UINT64_MAX)
                ORACLE_REJECT(v, "element count fits 64 bits");
        }
        if (!oracle_g_bytes(g, 4, &p))
            ORACLE_REJECT(v, "tensor type present");
        t->type = oracle_u32(p);
        unsigned __int128 bytes;
        if (t->type == 0)
            bytes = numel * 4;
        else if (t->type == 1 || t->type == 30) /* F16, BF16 */
            bytes = numel * 2;
        else if (t->type == 8) {
            if (t->ne[0] % 32 != 0)
                ORACLE_REJECT(v, "Q8_0 rows a multiple of 32");
            bytes = numel / 32 * 34;
        } else if (t->type == 2) {
            if (t->ne[0] % 32 != 0)
                ORACLE_REJECT(v, "Q4_0 rows a multiple of 32");
            bytes = numel / 32 * 18;
        } else if (t->type == 12 || t->type == 13) {
            if (t->ne[0] % 256 != 0)
                ORACLE_REJECT(v, t->type == 12 ? "Q4_K rows a multiple of 256"
                                               : "Q5_K rows a multiple of 256");
            bytes = numel / 256 * (t->type == 12 ? 144 : 176);
        } else if (t->type == 14) {
            if (t->ne[0] % 256 != 0)
                ORACLE_REJECT(v, "Q6_K rows a multiple of 256");
            bytes = numel / 256 * 210;
        } else
            ORACLE_REJECT(v, "tensor type F32, F16, Q4_0, Q8_0, Q4_K, Q5_K, Q6_K or BF16");
        if (bytes > UINT64_MAX)
            ORACLE_REJECT(v, "tensor bytes fit 64 bits");
        t->bytes = (uint64_t)bytes;
        if (!oracle_g_bytes(g, 8, &p))
            ORACLE_REJECT(v, "tensor offset present");
        t->offset = oracle_u64(p);
        if (t->offset % align != 0)
            ORACLE_REJECT(v, "tensor offset aligned");
        /* the data section, every tensor padded to the alignment, fits 64 bits */
        unsigned __int128 padded = (bytes + align - 1) / align * align;
        if (padded + total > UINT64_MAX)
            ORACLE_REJECT(v, "cumulative data size fits 64 bits");
        total += (uint64_t)padded;
    }
    uint64_t data_at = ((uint64_t)g->pos + align - 1) / align * align;
    g->data_at = data_at;
    if (g->n_ti > 0 && data_at > g->len)
        ORACLE_REJECT(v, "data section inside the file");
    for (size_t i = 0; i < g->n_ti; i++) {
        const oracle_ti *t = &g->ti[i];
        if ((unsigned __int128)t->offset + t->bytes > (unsigned __int128)(g->len - data_at))
            ORACLE_REJECT(v, "tensor data inside the file");
    }
    oracle_ti *sorted = malloc((g->n_ti ? g->n_ti : 1) * sizeof *sorted);
    if (sorted == NULL)
        abort();
    memcpy(sorted, g->ti, g->n_ti * sizeof *sorted);
    qsort(sorted, g->n_ti, sizeof *sorted, oracle_ti_cmp);
    int dup = 0;
    for (size_t i = 1; i < g->n_ti; i++)
        if (oracle_ti_cmp(&sorted[i - 1], &sorted[i]) == 0)
            dup = 1;
    free(sorted);
    if (dup)
        ORACLE_REJECT(v, "tensor names unique");
    return 1;
}

/* "blk.<N>.<rest>" with N decimal, no leading zero (N saturates at UINT64_MAX / 10). */
static inline int oracle_block_name(const uint8_t *s, uint64_t n, uint64_t *layer,
                                    const uint8_t **rest, uint64_t *rest_len)
{
    if (n < 6 || memcmp(s, "blk.", 4) != 0)
        return 0;
    uint64_t i = 4, val = 0;
    if (!(s[4] >= '0' && s[4] <= '9'))
        return 0;
    if (s[4] == '0' && s[5] >= '0' && s[5] <= '9')
        return 0; /* leading zero: not a llama.cpp name */
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++)
        val = val > UINT64_MAX / 10 - 10 ? UINT64_MAX / 10 : val * 10 + (uint64_t)(s[i] - '0');
    if (i >= n || s[i] != '.')
        return 0;
    *layer = val;
    *rest = s + i + 1;
    *rest_len = n - i - 1;
    return 1;
}

/* Shape rule of a used tensor: ne = [cols, rows, 1, 1]; norms F32. */
static inline int oracle_view_ok(const oracle_ti *t, uint64_t rows, uint64_t cols, int norm,
                                 oracle_verdict *v)
{
    if (t->ne[0] != cols || t->ne[1] != rows || t->ne[2] != 1 || t->ne[3] != 1)
        ORACLE_REJECT(v, "tensor shape = config");
    if (norm && t->type != 0)
        ORACLE_REJECT(v, "norm tensors F32");
    return 1;
}

/* Reads "<arch>.<key>" (arch "llama" or "qwen2") */
static inline const oracle_kv *oracle_arch_find(oracle_gguf *g, const char *arch, const char *key)
{
    char full[96];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    return oracle_find(g, full);
}

/* RoPE scaling: no type or "none"; "linear" needs a float factor, finite and >= 1; no type
 * but the older rope.scale_linear: that factor, same rule. */
static inline int oracle_rope_scaling(oracle_gguf *g, const char *arch, oracle_verdict *v)
{
    const oracle_kv *type = oracle_arch_find(g, arch, "rope.scaling.type");
    const oracle_kv *factor;
    if (type != NULL) {
        if (type->type != OG_STRING)
            ORACLE_REJECT(v, "rope.scaling.type string");
        if (oracle_string_is(type, "none"))
            return 1;
        if (!oracle_string_is(type, "linear"))
            ORACLE_REJECT(v, "rope.scaling.type none or linear");
        factor = oracle_arch_find(g, arch, "rope.scaling.factor");
        if (factor == NULL)
            ORACLE_REJECT(v, "rope.scaling.factor present for linear scaling");
    } else {
        factor = oracle_arch_find(g, arch, "rope.scale_linear");
        if (factor == NULL)
            return 1;
    }
    float f;
    if (!oracle_float(factor, &f))
        ORACLE_REJECT(v, "rope scaling factor f32/f64 in float range");
    if (!(isfinite(f) && f >= 1.0f))
        ORACLE_REJECT(v, "rope scaling factor finite, >= 1");
    return 1;
}

static inline int oracle_gguf_model(oracle_gguf *g, int64_t f[7], oracle_verdict *v)
{
    static const char *const keys[7] = {
        "embedding_length", "feed_forward_length", "block_count", "attention.head_count",
        "attention.head_count_kv", NULL, "context_length"};
    const oracle_kv *kv = oracle_find(g, "general.architecture");
    const char *arch;
    if (kv == NULL)
        ORACLE_REJECT(v, "general.architecture present");
    if (oracle_string_is(kv, "llama"))
        arch = "llama";
    else if (oracle_string_is(kv, "qwen2"))
        arch = "qwen2";
    else
        ORACLE_REJECT(v, "general.architecture string llama or qwen2");
    for (int i = 0; i < 7; i++) {
        if (i == 5)
            continue;
        kv = oracle_arch_find(g, arch, keys[i]);
        if (kv == NULL) {
            if (i != 4)
                ORACLE_REJECT(v, "<arch>.* key present");
            f[4] = f[3];
        } else if (!oracle_int(kv, &f[i])) {
            ORACLE_REJECT(v, "<arch>.* key integer-typed");
        }
    }
    const oracle_ti *emb = NULL;
    for (size_t i = 0; i < g->n_ti; i++)
        if (oracle_name_is(g->ti[i].name, g->ti[i].name_len, "token_embd.weight"))
            emb = &g->ti[i];
    if (emb == NULL)
        ORACLE_REJECT(v, "token_embd.weight present");
    f[5] = (int64_t)emb->ne[1];
    if (!oracle_config_ok(f, v))
        return 0;
    int64_t x, hs = f[0] / f[3];
    if ((kv = oracle_arch_find(g, arch, "vocab_size")) != NULL &&
        (!oracle_int(kv, &x) || x != f[5]))
        ORACLE_REJECT(v, "<arch>.vocab_size integer = token_embd rows");
    if ((kv = oracle_arch_find(g, arch, "rope.dimension_count")) != NULL &&
        (!oracle_int(kv, &x) || x != hs))
        ORACLE_REJECT(v, "<arch>.rope.dimension_count integer = head size");
    float theta = 10000.0f, eps = 1e-5f;
    if ((kv = oracle_arch_find(g, arch, "rope.freq_base")) != NULL && !oracle_float(kv, &theta))
        ORACLE_REJECT(v, "<arch>.rope.freq_base f32/f64 in float range");
    if ((kv = oracle_arch_find(g, arch, "attention.layer_norm_rms_epsilon")) != NULL &&
        !oracle_float(kv, &eps))
        ORACLE_REJECT(v, "rms_epsilon f32/f64 in float range");
    if (!oracle_rope_scaling(g, arch, v))
        return 0;
    if (!(isfinite(theta) && theta > 0.0f))
        ORACLE_REJECT(v, "freq_base finite positive");
    if (!(isfinite(eps) && eps > 0.0f && eps < 1.0f))
        ORACLE_REJECT(v, "rms_epsilon in (0, 1)");

    /* tensors: every used one shaped as the config says, all present (the last three, the
     * q/k/v biases, are optional vectors, F32 like the norms) */
    static const char *const suffix[12] = {
        "attn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight",
        "attn_output.weight", "ffn_norm.weight", "ffn_gate.weight", "ffn_down.weight",
        "ffn_up.weight", "attn_q.bias", "attn_k.bias", "attn_v.bias"};
    uint64_t dim = (uint64_t)f[0], hidden = (uint64_t)f[1], L = (uint64_t)f[2];
    uint64_t vocab = (uint64_t)f[5], kvd = (uint64_t)f[4] * (uint64_t)hs;
    const uint64_t rows[12] = {1, dim, kvd, kvd, dim, 1, hidden, dim, hidden, 1, 1, 1};
    const uint64_t cols[12] = {dim, dim, dim, dim, dim, dim, dim, hidden, dim, dim, kvd, kvd};
    uint8_t *have = calloc((size_t)L * 9, 1);
    int have_norm = 0, ok = 1;
    if (have == NULL)
        abort();
    for (size_t i = 0; ok && i < g->n_ti; i++) {
        const oracle_ti *t = &g->ti[i];
        const uint8_t *rest;
        uint64_t rest_len, l;
        if (oracle_name_is(t->name, t->name_len, "token_embd.weight"))
            ok = oracle_view_ok(t, vocab, dim, 0, v);
        else if (oracle_name_is(t->name, t->name_len, "output.weight"))
            ok = oracle_view_ok(t, vocab, dim, 0, v);
        else if (oracle_name_is(t->name, t->name_len, "output_norm.weight")) {
            ok = oracle_view_ok(t, 1, dim, 1, v);
            have_norm = 1;
        } else if (oracle_name_is(t->name, t->name_len, "rope_freqs.weight")) {
            /* Llama 3's factors: head_size / 2 F32 values, each finite and > 0 */
            ok = oracle_view_ok(t, 1, (uint64_t)hs / 2, 1, v);
            for (uint64_t j = 0; ok && j < (uint64_t)hs / 2; j++) {
                float fj = oracle_f32(g->buf + g->data_at + t->offset + 4 * j);
                if (!(isfinite(fj) && fj > 0.0f)) {
                    v->rule = "rope_freqs values finite, > 0";
                    ok = 0;
                }
            }
        } else if (oracle_block_name(t->name, t->name_len, &l, &rest, &rest_len)) {
            for (int k = 0; k < 12; k++)
                if (oracle_name_is(rest, rest_len, suffix[k])) {
                    if (l >= L) {
                        v->rule = "blk.N below block_count";
                        ok = 0;
                    } else {
                        ok = oracle_view_ok(t, rows[k], cols[k], k == 0 || k == 5 || k >= 9, v);
                        if (k < 9)
                            have[l * 9 + (uint64_t)k] = 1;
                    }
                }
        }
    }
    for (size_t i = 0; ok && i < (size_t)L * 9; i++)
        if (!have[i]) {
            v->rule = "every blk tensor present";
            ok = 0;
        }
    free(have);
    if (ok && !have_norm)
        ORACLE_REJECT(v, "output_norm.weight present");
    return ok;
}

/* ---- byte-level BPE (tokenizer.ggml.model "gpt2") ---- */

/* GPT-2's byte-level alphabet, from its definition (bytes_to_unicode): a byte printable in
 * Latin-1 ('!'..'~', 0xA1..0xAC, 0xAE..0xFF) is its own character; the other 68 bytes, in
 * increasing order, are U+0100, U+0101, ... `others` lists those 68 bytes. */
static inline int oracle_bl_printable(unsigned b)
{
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

static inline void oracle_bl_others(uint8_t others[68])
{
    unsigned k = 0;
    for (unsigned b = 0; b < 256; b++)
        if (!oracle_bl_printable(b))
            others[k++] = (uint8_t)b;
}

/* The UTF-8 spelling of byte b in the alphabet: 1 or 2 bytes written to out. */
static inline size_t oracle_bl_spell(unsigned b, const uint8_t others[68], uint8_t out[2])
{
    uint32_t cp = b;
    if (!oracle_bl_printable(b))
        for (unsigned k = 0; k < 68; k++)
            if (others[k] == b)
                cp = 0x100 + k;
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    out[0] = (uint8_t)(0xC0 | (cp >> 6));
    out[1] = (uint8_t)(0x80 | (cp & 0x3F));
    return 2;
}

/* Whether s[0..n) is non-empty, valid UTF-8, and every character is in the alphabet. */
static inline int oracle_bl_text(const uint8_t *s, uint64_t n)
{
    if (n == 0)
        return 0;
    for (uint64_t i = 0; i < n;) {
        uint32_t cp;
        if (s[i] < 0x80) {
            cp = s[i];
            i += 1;
        } else if ((s[i] & 0xE0) == 0xC0) {
            if (i + 1 >= n || (s[i + 1] & 0xC0) != 0x80)
                return 0;
            cp = (uint32_t)(s[i] & 0x1F) << 6 | (s[i + 1] & 0x3F);
            if (cp < 0x80)
                return 0; /* overlong */
            i += 2;
        } else {
            return 0; /* continuation bytes, 3- and 4-byte forms: U+0800 and up, never in it */
        }
        if (cp < 0x100 ? !oracle_bl_printable(cp) : cp >= 0x100 + 68)
            return 0;
    }
    return 1;
}

typedef struct oracle_piece {
    const uint8_t *s;
    uint64_t n;
} oracle_piece;

static inline int oracle_piece_cmp(const void *a, const void *b)
{
    const oracle_piece *x = a, *y = b;
    return oracle_sort_cmp(x->s, x->n, y->s, y->n);
}

/* Whether s[0..n) is one of the `count` pieces sorted by oracle_piece_cmp. */
static inline int oracle_has_piece(const oracle_piece *sorted, size_t count, const uint8_t *s,
                                   uint64_t n)
{
    oracle_piece key = {s, n};
    return count > 0 && bsearch(&key, sorted, count, sizeof key, oracle_piece_cmp) != NULL;
}

/* The BPE rules past the arrays: token types 1..6; normal (1) and byte (6) pieces, all
 * pieces without types, byte-level text; every byte's spelling a normal or byte piece;
 * merges a string array of at most 2^24 "left right" strings (one space, both sides
 * non-empty normal or byte pieces, their concatenation one too), no pair twice. */
static inline int oracle_bpe(const oracle_gguf *g, const oracle_kv *tokens, const oracle_kv *types,
                             uint64_t vocab, oracle_verdict *v)
{
    const oracle_kv *merges = oracle_find(g, "tokenizer.ggml.merges");
    if (merges == NULL)
        ORACLE_REJECT(v, "BPE: tokenizer.ggml.merges present");
    if (merges->type != OG_ARRAY || merges->elem_type != OG_STRING)
        ORACLE_REJECT(v, "BPE: merges an array of strings");
    if (merges->count > ((uint64_t)1 << 24))
        ORACLE_REJECT(v, "BPE: at most 2^24 merges");
    oracle_piece *pieces = malloc((size_t)(vocab ? vocab : 1) * sizeof *pieces);
    oracle_piece *pairs = malloc((size_t)(merges->count ? merges->count : 1) * sizeof *pairs);
    uint8_t others[68];
    const char *why = NULL;
    size_t n_text = 0;
    if (pieces == NULL || pairs == NULL)
        abort();
    oracle_bl_others(others);
    const uint8_t *p = tokens->value;
    for (uint64_t i = 0; i < vocab; i++) {
        uint64_t n = oracle_u64(p);
        int64_t type = types != NULL ? oracle_i32(types->value + 4 * i) : 1;
        if (why == NULL && (type < 1 || type > 6))
            why = "BPE: token_type 1..6";
        if (why == NULL && (type == 1 || type == 6) && !oracle_bl_text(p + 8, n))
            why = "BPE: normal and byte pieces non-empty byte-level text";
        if (type == 1 || type == 6) { /* byte pieces and merges name text pieces only */
            pieces[n_text].s = p + 8;
            pieces[n_text].n = n;
            n_text++;
        }
        p += 8 + n;
    }
    qsort(pieces, n_text, sizeof *pieces, oracle_piece_cmp);
    for (unsigned b = 0; why == NULL && b < 256; b++) {
        uint8_t sp[2];
        size_t n = oracle_bl_spell(b, others, sp);
        if (!oracle_has_piece(pieces, n_text, sp, n))
            why = "BPE: every byte's one-character piece present (normal or byte)";
    }
    p = merges->value;
    for (uint64_t m = 0; why == NULL && m < merges->count; m++) {
        uint64_t n = oracle_u64(p), spaces = 0, at = 0;
        const uint8_t *s = p + 8;
        for (uint64_t k = 0; k < n; k++)
            if (s[k] == ' ') {
                spaces++;
                at = k;
            }
        if (spaces != 1 || at == 0 || at == n - 1) {
            why = "BPE: merge is \"left right\" (one space, both sides non-empty)";
        } else if (!oracle_has_piece(pieces, n_text, s, at) ||
                   !oracle_has_piece(pieces, n_text, s + at + 1, n - at - 1)) {
            why = "BPE: merge sides are normal or byte pieces";
        } else {
            uint8_t *joined = malloc((size_t)n);
            if (joined == NULL)
                abort();
            memcpy(joined, s, (size_t)at);
            memcpy(joined + at, s + at + 1, (size_t)(n - at - 1));
            if (!oracle_has_piece(pieces, n_text, joined, n - 1))
                why = "BPE: merge result is a normal or byte piece";
            free(joined);
        }
        pairs[m].s = s;
        pairs[m].n = n;
        p += 8 + n;
    }
    if (why == NULL) {
        /* one space each: the same string is the same (left, right) pair */
        qsort(pairs, (size_t)merges->count, sizeof *pairs, oracle_piece_cmp);
        for (uint64_t m = 1; why == NULL && m < merges->count; m++)
            if (oracle_piece_cmp(&pairs[m - 1], &pairs[m]) == 0)
                why = "BPE: no merge twice";
    }
    free(pieces);
    free(pairs);
    if (why != NULL)
        ORACLE_REJECT(v, why);
    return 1;
}

/* A token id key: integer-typed and < vocab; absent: `def` (-1: none, any value fine). */
static inline int oracle_token_id(const oracle_gguf *g, const char *key, int64_t def,
                                  uint64_t vocab, oracle_verdict *v, const char *why)
{
    const oracle_kv *kv = oracle_find(g, key);
    int64_t id = def;
    if (kv == NULL && def == -1)
        return 1;
    if (kv != NULL && !oracle_int(kv, &id))
        ORACLE_REJECT(v, why);
    if (id < 0 || (uint64_t)id >= vocab)
        ORACLE_REJECT(v, why);
    return 1;
}

/* The metadata vocabulary. tokenizer.ggml.model absent or "llama": SentencePiece (scores
 * required, byte-fallback pieces <0xHH>, bos / eos default 1 / 2); "gpt2": byte-level BPE
 * (tokenizer.ggml.pre a known name, scores optional, bos / eos required, oracle_bpe).
 * Both: tokens (strings), scores (f32, not NaN) and token_type (i32) of length vocab,
 * pieces up to Q_MAX_TOKEN_BYTES, eot_token_id optional and < vocab, add_bos_token a bool. */
static inline int oracle_gguf_vocab(oracle_gguf *g, uint64_t vocab, oracle_verdict *v)
{
    static const char *const pre_names[] = {"gpt-2", "gpt2", "llama-bpe", "llama3", "llama-v3",
                                            "qwen2"};
    const oracle_kv *kv = oracle_find(g, "tokenizer.ggml.model");
    int bpe = 0;
    if (kv != NULL && !oracle_string_is(kv, "llama")) {
        if (!oracle_string_is(kv, "gpt2"))
            ORACLE_REJECT(v, "tokenizer.ggml.model string llama or gpt2");
        bpe = 1;
        kv = oracle_find(g, "tokenizer.ggml.pre");
        if (kv == NULL)
            ORACLE_REJECT(v, "BPE: tokenizer.ggml.pre present");
        int known = 0;
        for (size_t i = 0; i < sizeof pre_names / sizeof pre_names[0]; i++)
            known |= oracle_string_is(kv, pre_names[i]);
        if (!known)
            ORACLE_REJECT(v, "BPE: tokenizer.ggml.pre a known string");
    }
    const oracle_kv *tokens = oracle_find(g, "tokenizer.ggml.tokens");
    const oracle_kv *scores = oracle_find(g, "tokenizer.ggml.scores");
    const oracle_kv *types = oracle_find(g, "tokenizer.ggml.token_type");
    if (tokens == NULL || (scores == NULL && !bpe))
        ORACLE_REJECT(v, "tokenizer.ggml.tokens and scores (SentencePiece) present");
    if (tokens->type != OG_ARRAY || tokens->elem_type != OG_STRING ||
        (scores != NULL && (scores->type != OG_ARRAY || scores->elem_type != OG_F32)) ||
        (types != NULL && (types->type != OG_ARRAY || types->elem_type != OG_I32)))
        ORACLE_REJECT(v, "tokenizer array element types");
    if (tokens->count != vocab || (scores != NULL && scores->count != vocab) ||
        (types != NULL && types->count != vocab))
        ORACLE_REJECT(v, "tokenizer array lengths = vocab");
    const uint8_t *p = tokens->value;
    uint8_t seen[256] = {0};
    for (uint64_t i = 0; i < vocab; i++) {
        uint64_t n = oracle_u64(p); /* framing checked with the metadata */
        if (n > Q_MAX_TOKEN_BYTES)
            ORACLE_REJECT(v, "GGUF piece length <= Q_MAX_TOKEN_BYTES");
        if (!bpe && !oracle_byte_piece_ok(p + 8, n, seen, v))
            return 0;
        p += 8 + n;
        if (scores != NULL) {
            float s = oracle_f32(scores->value + 4 * i);
            if (s != s)
                ORACLE_REJECT(v, "score not NaN");
        }
    }
    if (bpe) {
        if (oracle_find(g, "tokenizer.ggml.bos_token_id") == NULL ||
            oracle_find(g, "tokenizer.ggml.eos_token_id") == NULL)
            ORACLE_REJECT(v, "BPE: bos_token_id and eos_token_id present");
    }
    if (!oracle_token_id(g, "tokenizer.ggml.bos_token_id", 1, vocab, v,
                         "bos_token_id integer-typed, in range") ||
        !oracle_token_id(g, "tokenizer.ggml.eos_token_id", 2, vocab, v,
                         "eos_token_id integer-typed, in range") ||
        !oracle_token_id(g, "tokenizer.ggml.eot_token_id", -1, vocab, v,
                         "eot_token_id integer-typed, in range"))
        return 0;
    kv = oracle_find(g, "tokenizer.ggml.add_bos_token");
    if (kv != NULL && kv->type != OG_BOOL)
        ORACLE_REJECT(v, "add_bos_token a bool");
    return bpe ? oracle_bpe(g, tokens, types, vocab, v) : 1;
}

static inline int oracle_gguf_file(const uint8_t *buf, size_t len, int want_tokenizer,
                                   oracle_verdict *v)
{
    oracle_gguf g;
    uint64_t n_tensors = 0, align = Q_GGUF_DEFAULT_ALIGNMENT;
    int64_t f[7];
    int ok;
    memset(&g, 0, sizeof g);
    g.buf = buf;
    g.len = len;
    ok = oracle_gguf_metadata(&g, &n_tensors, v);
    if (ok) {
        const oracle_kv *kv = oracle_find(&g, "general.alignment");
        if (kv != NULL) {
            if (kv->type != OG_U32) {
                v->rule = "general.alignment uint32";
                ok = 0;
            } else {
                align = oracle_u32(kv->value);
                if (!oracle_is_pow2(align) || align > Q_GGUF_MAX_ALIGNMENT) {
                    v->rule = "general.alignment power of two <= Q_GGUF_MAX_ALIGNMENT";
                    ok = 0;
                }
            }
        }
    }
    if (ok)
        ok = oracle_gguf_tensors(&g, n_tensors, align, v);
    if (ok)
        ok = oracle_gguf_model(&g, f, v);
    /* the vocabulary is checked when asked for, or whenever the file has one */
    if (ok && (want_tokenizer || oracle_find(&g, "tokenizer.ggml.tokens") != NULL))
        ok = oracle_gguf_vocab(&g, (uint64_t)f[5], v);
    free(g.kv);
    free(g.ti);
    return ok;
}

/* What q_model_parse(model, want_tokenizer ? &tok : NULL, buf, len) must decide. */
static inline int oracle_model(const uint8_t *buf, size_t len, int want_tokenizer,
                               oracle_verdict *v)
{
    v->rule = NULL;
    if (len < 4)
        ORACLE_REJECT(v, "magic present");
    if (memcmp(buf, "GGUF", 4) == 0)
        return oracle_gguf_file(buf, len, want_tokenizer, v);
    return oracle_llama2c(buf, len, v);
}

#endif
