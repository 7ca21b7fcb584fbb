/*
 * GGUF (ggml docs/gguf.md), versions 2 and 3, little-endian, llama and qwen2 architectures.
 *
 *   1. uint32 magic "GGUF" (bytes 47 47 55 46)                          offset 0
 *   2. uint32 version, 2 or 3 (v1 used 32-bit counts; a byte-swapped
 *      big-endian file shows up as an unknown version)                  offset 4
 *   3. uint64 n_tensors                                                 offset 8
 *   4. uint64 n_kv                                                      offset 16
 *   5. n_kv metadata pairs:
 *      a. string key: uint64 length n, then n bytes (no NUL)
 *      b. uint32 value type: 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32, 6 f32, 7 bool,
 *         8 string, 9 array, 10 u64, 11 i64, 12 f64
 *      c. the value; an array is uint32 element type, uint64 count, then the elements
 *         (arrays of arrays are rejected)
 *   6. n_tensors tensor infos:
 *      a. string name
 *      b. uint32 n_dims, 1..4
 *      c. n_dims x uint64 ne[i], each >= 1; ne[0] is the contiguous dimension
 *      d. uint32 ggml type: 0 F32, 1 F16, 8 Q8_0 (blocks of 32 along ne[0]: f16 scale then
 *         32 int8, 34 bytes), 2 Q4_0 (blocks of 32 along ne[0]: f16 scale d then 16 bytes,
 *         byte j holding weight j in its low nibble and weight j + 16 in its high nibble,
 *         each d * (nibble - 8); 18 bytes), 12 Q4_K (super-blocks of 256 along ne[0]:
 *         f16 d, f16 dmin, scales[12] holding eight 6-bit scales and eight 6-bit mins,
 *         qs[128] 4-bit codes; weight = d * scale * code - dmin * min per 32-weight
 *         sub-block; 144 bytes), 13 Q5_K (as Q4_K with qh[32], the fifth code bit, before
 *         qs; 176 bytes), 14 Q6_K (super-blocks of 256 along ne[0]: ql[128] low 4 bits,
 *         qh[64] high 2 bits of the 6-bit codes, int8 scales[16], f16 d; 210 bytes), 30 BF16
 *         (bfloat16, 2 bytes: the high half of a float32). The K-quant bit orders are in
 *         src/kernels/kernels_internal.h. Scales are IEEE binary16 as stored: a NaN or
 *         infinite scale is allowed by the format and reaches the logits as NaN or Inf,
 *         which the sampler handles (it never indexes with them).
 *      e. uint64 offset of the data, relative to the data section, a multiple of the
 *         alignment
 *   7. padding to the alignment (general.alignment, uint32, a power of two up to
 *      Q_GGUF_MAX_ALIGNMENT; default 32)
 *   8. the data section: each tensor at its offset. Overlaps are not checked (views are
 *      read-only); bytes after the last tensor are allowed (padding).
 *
 * Keys read: general.architecture ("llama" or "qwen2"; A below), general.alignment,
 * A.embedding_length, A.feed_forward_length, A.block_count, A.attention.head_count,
 * A.attention.head_count_kv (default head_count), A.context_length, A.rope.freq_base
 * (default 10000), A.attention.layer_norm_rms_epsilon (default 1e-5), A.rope.dimension_count
 * (must be head_size if present), A.vocab_size (must match if present),
 * A.rope.scaling.type ("none" or "linear"; others are rejected) with A.rope.scaling.factor
 * (>= 1, required for linear), or the older A.rope.scale_linear; tokenizer.ggml.model
 * (absent or "llama": SentencePiece; "gpt2": byte-level BPE), tokenizer.ggml.tokens (string
 * array), tokenizer.ggml.scores (f32 array; optional for gpt2), tokenizer.ggml.token_type
 * (i32 array, optional; for gpt2 each 1..6: normal, unknown, control, user-defined, unused,
 * byte), tokenizer.ggml.bos_token_id / eos_token_id (default 1 / 2; required for gpt2),
 * tokenizer.ggml.eot_token_id (optional), tokenizer.ggml.add_bos_token (bool, optional);
 * gpt2 only: tokenizer.ggml.pre (required: "gpt-2"/"gpt2", "llama-bpe"/"llama3"/"llama-v3",
 * "qwen2") and tokenizer.ggml.merges (string array, "left right" in rank order; rules in
 * src/model/tokenizer.c q_tok_bpe_finish). Integer keys take u8, i8, u16, i16, u32, i32,
 * u64 or i64 (not bool); float keys f32, or f64 within the float range.
 * Tensors: token_embd.weight (dim, vocab), output_norm.weight (dim), output.weight
 * (absent: shared classifier), blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_output,
 * ffn_norm, ffn_gate, ffn_down, ffn_up}.weight; optional: blk.N.{attn_q, attn_k,
 * attn_v}.bias (dim, kv_dim, kv_dim; qwen2 has them) and rope_freqs.weight (head_size / 2
 * factors, finite and > 0: Llama 3's per-frequency RoPE divisors). Norms, biases and the
 * rope factors must be F32. Other names are ignored.
 * Rotary pairing: llama tensors are stored permuted for llama2.c's pairs (2j, 2j+1) of a
 * head (q/k are used as they are); qwen2 rotates pairs (j, j + head_size / 2) (NEOX).
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/checked.h"
#include "core/os.h"
#include "model/model_internal.h"

enum {
    GT_U8, GT_I8, GT_U16, GT_I16, GT_U32, GT_I32, GT_F32, GT_BOOL, GT_STRING, GT_ARRAY,
    GT_U64, GT_I64, GT_F64, GT_COUNT
};

#define Q_GGUF_HEADER_BYTES 24u
#define Q_GGUF_MIN_KV_BYTES 13u     /* empty key (8), type (4), one-byte value */
#define Q_GGUF_MIN_TENSOR_BYTES 32u /* empty name (8), n_dims (4), ne[0] (8), type, offset */

typedef struct q_gguf_kv {
    const unsigned char *key;
    size_t key_len;
    size_t key_at;   /* file offset of the key */
    uint32_t type;
    size_t value_at; /* file offset of the value (arrays: of the element type field) */
    uint32_t arr_type;
    size_t arr_n;
    size_t arr_at;   /* arrays: offset of the first element */
} q_gguf_kv;

typedef struct q_gguf_tensor {
    const unsigned char *name;
    size_t name_len;
    size_t at;       /* file offset of the tensor info */
    uint32_t n_dims;
    uint64_t ne[4];
    uint32_t type;
    uint64_t offset;
    size_t bytes;
} q_gguf_tensor;

typedef struct q_gguf {
    q_reader r;
    q_diag *diag;
    q_gguf_kv *kv;
    size_t n_kv;
    q_gguf_tensor *ti;
    size_t n_tensors;
    size_t alignment;
    size_t data_at;
} q_gguf;

static size_t q_gguf_scalar_size(uint32_t type)
{
    switch (type) {
    case GT_U8: case GT_I8: case GT_BOOL: return 1;
    case GT_U16: case GT_I16: return 2;
    case GT_U32: case GT_I32: case GT_F32: return 4;
    case GT_U64: case GT_I64: case GT_F64: return 8;
    default: return 0;
    }
}

/* string: uint64 length then bytes. `what` names it in the diagnostic. */
static q_error_code q_gguf_string(q_gguf *g, const unsigned char **s, size_t *n, const char *what)
{
    size_t at = g->r.pos;
    uint64_t len;
    if (!q_rd_u64(&g->r, &len))
        return q_fail(g->diag, Q_ERR_TRUNCATED, what, at, 0);
    /* readers that copy add a NUL: n + 1 must not wrap */
    if (len >= SIZE_MAX || len >= (uint64_t)INT64_MAX)
        return q_fail(g->diag, Q_ERR_OVERFLOW, what, at, (int64_t)(len & INT64_MAX));
    if (!q_rd_take(&g->r, (size_t)len, s))
        return q_fail(g->diag, Q_ERR_TRUNCATED, what, at, (int64_t)len);
    *n = (size_t)len;
    return Q_OK;
}

static q_error_code q_gguf_value(q_gguf *g, q_gguf_kv *kv)
{
    size_t at = g->r.pos;
    const unsigned char *s;
    size_t n;
    kv->value_at = at;
    if (kv->type == GT_STRING)
        return q_gguf_string(g, &s, &n, "string value");
    if (kv->type == GT_ARRAY) {
        uint32_t et;
        uint64_t count;
        size_t esize;
        if (!q_rd_u32(&g->r, &et))
            return q_fail(g->diag, Q_ERR_TRUNCATED, "array type", at, 0);
        if (et >= GT_COUNT || et == GT_ARRAY)
            return q_fail_named(g->diag, Q_ERR_UNSUPPORTED_TYPE, "array type of ", kv->key,
                                kv->key_len, at, et);
        if (!q_rd_u64(&g->r, &count))
            return q_fail(g->diag, Q_ERR_TRUNCATED, "array length", at + 4, 0);
        kv->arr_type = et;
        kv->arr_at = g->r.pos;
        if (et == GT_STRING) {
            /* each element needs at least its 8-byte length */
            if (count > SIZE_MAX / sizeof(char *))
                return q_fail(g->diag, Q_ERR_OVERFLOW, "array length", at + 4,
                              (int64_t)(count & INT64_MAX));
            if (count > q_rd_left(&g->r) / 8)
                return q_fail(g->diag, Q_ERR_TRUNCATED, "array length", at + 4,
                              (int64_t)(count & INT64_MAX));
            kv->arr_n = (size_t)count;
            for (size_t i = 0; i < kv->arr_n; i++) {
                q_error_code rc = q_gguf_string(g, &s, &n, "array string");
                if (rc != Q_OK)
                    return rc;
            }
            return Q_OK;
        }
        esize = q_gguf_scalar_size(et);
        if (count > SIZE_MAX / esize)
            return q_fail(g->diag, Q_ERR_OVERFLOW, "array length", at + 4,
                          (int64_t)(count & INT64_MAX));
        if (!q_rd_take(&g->r, (size_t)count * esize, &s))
            return q_fail(g->diag, Q_ERR_TRUNCATED, "array data", kv->arr_at,
                          (int64_t)(count & INT64_MAX));
        kv->arr_n = (size_t)count;
        return Q_OK;
    }
    n = q_gguf_scalar_size(kv->type);
    if (n == 0)
        return q_fail_named(g->diag, Q_ERR_UNSUPPORTED_TYPE, "value type of ", kv->key,
                            kv->key_len, kv->key_at, kv->type);
    if (!q_rd_take(&g->r, n, &s))
        return q_fail(g->diag, Q_ERR_TRUNCATED, "value", at, 0);
    return Q_OK;
}

static int q_name_cmp(const unsigned char *a, size_t an, const unsigned char *b, size_t bn)
{
    size_t n = an < bn ? an : bn;
    int c = n ? memcmp(a, b, n) : 0;
    if (c != 0)
        return c;
    return an < bn ? -1 : an > bn;
}

static int q_kv_cmp(const void *a, const void *b)
{
    const q_gguf_kv *x = a, *y = b;
    return q_name_cmp(x->key, x->key_len, y->key, y->key_len);
}

static int q_ti_cmp(const void *a, const void *b)
{
    const q_gguf_tensor *x = a, *y = b;
    return q_name_cmp(x->name, x->name_len, y->name, y->name_len);
}

static int q_is(const unsigned char *s, size_t n, const char *lit)
{
    size_t ln = strlen(lit);
    return n == ln && memcmp(s, lit, n) == 0;
}

static const q_gguf_kv *q_gguf_find(const q_gguf *g, const char *key)
{
    for (size_t i = 0; i < g->n_kv; i++)
        if (q_is(g->kv[i].key, g->kv[i].key_len, key))
            return &g->kv[i];
    return NULL;
}

/* An integer-typed value as int64 (u64 above INT64_MAX -> INT64_MAX, out of every range). */
static q_error_code q_gguf_int(const q_gguf *g, const q_gguf_kv *kv, int64_t *out)
{
    const unsigned char *p = g->r.base + kv->value_at;
    switch (kv->type) {
    case GT_U8: *out = p[0]; return Q_OK; /* bool is not an integer type */
    case GT_I8: *out = (int8_t)p[0]; return Q_OK;
    case GT_U16: *out = (int64_t)(p[0] | (p[1] << 8)); return Q_OK;
    case GT_I16: *out = (int16_t)(uint16_t)(p[0] | (p[1] << 8)); return Q_OK;
    case GT_U32: *out = q_load_u32(p); return Q_OK;
    case GT_I32: *out = q_load_i32(p); return Q_OK;
    case GT_U64: {
        uint64_t v = q_load_u64(p);
        *out = v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v;
        return Q_OK;
    }
    case GT_I64: {
        uint64_t v = q_load_u64(p);
        memcpy(out, &v, sizeof *out);
        return Q_OK;
    }
    default:
        return q_fail_named(g->diag, Q_ERR_UNSUPPORTED_TYPE, "", kv->key, kv->key_len,
                            kv->key_at, kv->type);
    }
}

static q_error_code q_gguf_float(const q_gguf *g, const q_gguf_kv *kv, float *out)
{
    const unsigned char *p = g->r.base + kv->value_at;
    if (kv->type == GT_F32) {
        *out = q_load_f32(p);
        return Q_OK;
    }
    if (kv->type == GT_F64) {
        uint64_t u = q_load_u64(p);
        double d;
        memcpy(&d, &u, sizeof d);
        /* NaN and doubles outside the float range become -1, rejected by the range check */
        *out = (d >= -(double)FLT_MAX && d <= (double)FLT_MAX) ? (float)d : -1.0f;
        return Q_OK;
    }
    return q_fail_named(g->diag, Q_ERR_UNSUPPORTED_TYPE, "", kv->key, kv->key_len, kv->key_at,
                        kv->type);
}

/* A required (or defaulted) integer key. */
static q_error_code q_gguf_req_int(const q_gguf *g, const char *key, int have_default,
                                   int64_t def, int64_t *out, uint64_t *at)
{
    const q_gguf_kv *kv = q_gguf_find(g, key);
    if (kv == NULL) {
        if (!have_default)
            return q_fail(g->diag, Q_ERR_MISSING, key, 0, 0);
        *out = def;
        *at = 0;
        return Q_OK;
    }
    *at = kv->value_at;
    return q_gguf_int(g, kv, out);
}

static q_error_code q_gguf_header(q_gguf *g, uint64_t *n_tensors)
{
    uint32_t version;
    uint64_t n_kv;
    size_t i;
    q_error_code rc;

    if (g->r.len < Q_GGUF_HEADER_BYTES)
        return q_fail(g->diag, Q_ERR_TRUNCATED, "header", 0, (int64_t)g->r.len);
    version = q_load_u32(g->r.base + 4);
    if (version != 2 && version != 3)
        return q_fail(g->diag, Q_ERR_UNSUPPORTED_VERSION, "version", 4, version);
    *n_tensors = q_load_u64(g->r.base + 8);
    n_kv = q_load_u64(g->r.base + 16);
    g->r.pos = Q_GGUF_HEADER_BYTES;
    if (*n_tensors > SIZE_MAX / sizeof(q_gguf_tensor))
        return q_fail(g->diag, Q_ERR_OVERFLOW, "n_tensors", 8, (int64_t)(*n_tensors & INT64_MAX));
    if (n_kv > SIZE_MAX / sizeof(q_gguf_kv))
        return q_fail(g->diag, Q_ERR_OVERFLOW, "n_kv", 16, (int64_t)(n_kv & INT64_MAX));
    if (n_kv > q_rd_left(&g->r) / Q_GGUF_MIN_KV_BYTES)
        return q_fail(g->diag, Q_ERR_TRUNCATED, "n_kv", 16, (int64_t)n_kv);

    g->kv = q_os_calloc(n_kv ? (size_t)n_kv : 1, sizeof(q_gguf_kv));
    if (g->kv == NULL)
        return q_fail(g->diag, Q_ERR_ALLOC, "n_kv", 16, (int64_t)n_kv);
    for (i = 0; i < (size_t)n_kv; i++) {
        q_gguf_kv *kv = &g->kv[i];
        size_t at;
        kv->key_at = g->r.pos;
        rc = q_gguf_string(g, &kv->key, &kv->key_len, "key");
        if (rc != Q_OK)
            return rc;
        at = g->r.pos;
        if (!q_rd_u32(&g->r, &kv->type))
            return q_fail(g->diag, Q_ERR_TRUNCATED, "value type", at, 0);
        g->n_kv = i + 1;
        rc = q_gguf_value(g, kv);
        if (rc != Q_OK)
            return rc;
    }
    /* duplicate keys: sort by name, compare neighbours */
    qsort(g->kv, g->n_kv, sizeof(q_gguf_kv), q_kv_cmp);
    for (i = 1; i < g->n_kv; i++)
        if (q_kv_cmp(&g->kv[i - 1], &g->kv[i]) == 0) {
            const q_gguf_kv *d = g->kv[i - 1].key_at > g->kv[i].key_at ? &g->kv[i - 1] : &g->kv[i];
            return q_fail_named(g->diag, Q_ERR_DUPLICATE, "key ", d->key, d->key_len, d->key_at, 0);
        }
    return Q_OK;
}

static q_error_code q_gguf_alignment(q_gguf *g)
{
    const q_gguf_kv *kv = q_gguf_find(g, "general.alignment");
    uint32_t a;
    g->alignment = Q_GGUF_DEFAULT_ALIGNMENT;
    if (kv == NULL)
        return Q_OK;
    if (kv->type != GT_U32)
        return q_fail(g->diag, Q_ERR_UNSUPPORTED_TYPE, "general.alignment", kv->key_at, kv->type);
    a = q_load_u32(g->r.base + kv->value_at);
    if (!q_is_pow2(a) || a > Q_GGUF_MAX_ALIGNMENT)
        return q_fail(g->diag, Q_ERR_BAD_ALIGNMENT, "general.alignment", kv->value_at, a);
    g->alignment = a;
    return Q_OK;
}

static q_error_code q_gguf_tensor_infos(q_gguf *g, uint64_t n_tensors)
{
    size_t i, total = 0;
    q_error_code rc;
    if (n_tensors > q_rd_left(&g->r) / Q_GGUF_MIN_TENSOR_BYTES)
        return q_fail(g->diag, Q_ERR_TRUNCATED, "n_tensors", 8, (int64_t)n_tensors);
    g->ti = q_os_calloc(n_tensors ? (size_t)n_tensors : 1, sizeof(q_gguf_tensor));
    if (g->ti == NULL)
        return q_fail(g->diag, Q_ERR_ALLOC, "n_tensors", 8, (int64_t)n_tensors);
    g->n_tensors = (size_t)n_tensors;
    for (i = 0; i < g->n_tensors; i++) {
        q_gguf_tensor *t = &g->ti[i];
        size_t numel = 1, bytes, padded, at;
        t->at = g->r.pos;
        rc = q_gguf_string(g, &t->name, &t->name_len, "tensor name");
        if (rc != Q_OK)
            return rc;
        at = g->r.pos;
        if (!q_rd_u32(&g->r, &t->n_dims))
            return q_fail_named(g->diag, Q_ERR_TRUNCATED, "n_dims of ", t->name, t->name_len, at, 0);
        if (t->n_dims == 0 || t->n_dims > Q_GGUF_MAX_DIMS)
            return q_fail_named(g->diag, Q_ERR_BAD_SHAPE, "n_dims of ", t->name, t->name_len,
                                at, t->n_dims);
        for (uint32_t d = 0; d < 4; d++)
            t->ne[d] = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            at = g->r.pos;
            if (!q_rd_u64(&g->r, &t->ne[d]))
                return q_fail_named(g->diag, Q_ERR_TRUNCATED, "ne of ", t->name, t->name_len, at, 0);
            if (t->ne[d] == 0)
                return q_fail_named(g->diag, Q_ERR_BAD_SHAPE, "zero dimension of ", t->name,
                                    t->name_len, at, 0);
            if (t->ne[d] > (uint64_t)INT64_MAX || t->ne[d] > SIZE_MAX ||
                !q_mul_size(numel, (size_t)t->ne[d], &numel))
                return q_fail_named(g->diag, Q_ERR_OVERFLOW, "ne of ", t->name, t->name_len,
                                    at, (int64_t)(t->ne[d] & INT64_MAX));
        }
        at = g->r.pos;
        if (!q_rd_u32(&g->r, &t->type))
            return q_fail_named(g->diag, Q_ERR_TRUNCATED, "type of ", t->name, t->name_len, at, 0);
        switch (t->type) {
        case Q_TENSOR_F32: bytes = 4; break;
        case Q_TENSOR_F16: bytes = 2; break;
        case Q_TENSOR_BF16: bytes = 2; break;
        case Q_TENSOR_Q8_0:
            if (t->ne[0] % 32 != 0)
                return q_fail_named(g->diag, Q_ERR_BAD_SHAPE, "Q8_0 row of ", t->name,
                                    t->name_len, at, (int64_t)t->ne[0]);
            numel /= 32; /* blocks */
            bytes = 34;
            break;
        case Q_TENSOR_Q4_0:
            if (t->ne[0] % 32 != 0)
                return q_fail_named(g->diag, Q_ERR_BAD_SHAPE, "Q4_0 row of ", t->name,
                                    t->name_len, at, (int64_t)t->ne[0]);
            numel /= 32; /* blocks */
            bytes = 18;
            break;
        case Q_TENSOR_Q4_K:
        case Q_TENSOR_Q5_K:
            if (t->ne[0] % 256 != 0)
                return q_fail_named(g->diag, Q_ERR_BAD_SHAPE,
                                    t->type == Q_TENSOR_Q4_K ? "Q4_K row of " : "Q5_K row of ",
                                    t->name, t->name_len, at, (int64_t)t->ne[0]);
            numel /= 256; /* super-blocks */
            bytes = t->type == Q_TENSOR_Q4_K ? 144 : 176;
            break;
        case Q_TENSOR_Q6_K:
            if (t->ne[0] % 256 != 0)
                return q_fail_named(g->diag, Q_ERR_BAD_SHAPE, "Q6_K row of ", t->name,
                                    t->name_len, at, (int64_t)t->ne[0]);
            numel /= 256; /* super-blocks */
            bytes = 210;
            break;
        default:
            return q_fail_named(g->diag, Q_ERR_UNSUPPORTED_TYPE, "type of ", t->name,
                                t->name_len, at, t->type);
        }
        if (!q_mul_size(numel, bytes, &bytes))
            return q_fail_named(g->diag, Q_ERR_OVERFLOW, "size of ", t->name, t->name_len, at,
                                (int64_t)numel);
        t->bytes = bytes;
        at = g->r.pos;
        if (!q_rd_u64(&g->r, &t->offset))
            return q_fail_named(g->diag, Q_ERR_TRUNCATED, "offset of ", t->name, t->name_len, at, 0);
        if ((t->offset & (g->alignment - 1)) != 0)
            return q_fail_named(g->diag, Q_ERR_BAD_ALIGNMENT, "offset of ", t->name,
                                t->name_len, at, (int64_t)(t->offset & INT64_MAX));
        /* the data section holds every tensor padded to the alignment */
        if (!q_align_up(bytes, g->alignment, &padded) || !q_add_size(total, padded, &total))
            return q_fail_named(g->diag, Q_ERR_OVERFLOW, "data size at ", t->name,
                                t->name_len, at, (int64_t)bytes);
    }
    if (!q_align_up(g->r.pos, g->alignment, &g->data_at))
        return q_fail(g->diag, Q_ERR_OVERFLOW, "data section", g->r.pos, 0);
    if (g->n_tensors > 0 && g->data_at > g->r.len)
        return q_fail(g->diag, Q_ERR_TRUNCATED, "data section", g->r.pos, (int64_t)g->r.len);
    for (i = 0; i < g->n_tensors; i++) {
        const q_gguf_tensor *t = &g->ti[i];
        uint64_t end;
        if (__builtin_add_overflow(t->offset, (uint64_t)t->bytes, &end))
            return q_fail_named(g->diag, Q_ERR_OVERFLOW, "offset of ", t->name, t->name_len,
                                t->at, (int64_t)(t->offset & INT64_MAX));
        if (end > g->r.len - g->data_at)
            return q_fail_named(g->diag, Q_ERR_TRUNCATED, "data of ", t->name, t->name_len,
                                t->at, (int64_t)(t->offset & INT64_MAX));
    }
    qsort(g->ti, g->n_tensors, sizeof(q_gguf_tensor), q_ti_cmp);
    for (i = 1; i < g->n_tensors; i++)
        if (q_ti_cmp(&g->ti[i - 1], &g->ti[i]) == 0)
            return q_fail_named(g->diag, Q_ERR_DUPLICATE, "tensor ", g->ti[i].name,
                                g->ti[i].name_len, g->ti[i].at > g->ti[i - 1].at ? g->ti[i].at : g->ti[i - 1].at, 0);
    return Q_OK;
}

static const q_gguf_tensor *q_gguf_tensor_named(const q_gguf *g, const char *name)
{
    for (size_t i = 0; i < g->n_tensors; i++)
        if (q_is(g->ti[i].name, g->ti[i].name_len, name))
            return &g->ti[i];
    return NULL;
}

/* Views tensor `t` as (rows, cols); `norm` tensors must be F32 vectors. */
static q_error_code q_gguf_view(const q_gguf *g, const q_gguf_tensor *t, size_t rows,
                                size_t cols, int norm, q_tensor *out)
{
    if (t->ne[0] != cols || t->ne[1] != rows || t->ne[2] != 1 || t->ne[3] != 1)
        return q_fail_named(g->diag, Q_ERR_BAD_SHAPE, "tensor ", t->name, t->name_len, t->at,
                            (int64_t)(t->ne[t->ne[0] != cols ? 0 : 1] & INT64_MAX));
    if (norm && t->type != Q_TENSOR_F32)
        return q_fail_named(g->diag, Q_ERR_UNSUPPORTED_TYPE, "type of ", t->name, t->name_len,
                            t->at, t->type);
    memset(out, 0, sizeof *out);
    out->type = (q_tensor_type)t->type;
    out->data = g->r.base + g->data_at + t->offset;
    out->rows = rows;
    out->cols = cols;
    out->group_size = t->type == Q_TENSOR_Q8_0 || t->type == Q_TENSOR_Q4_0 ? 32
                      : t->type == Q_TENSOR_Q6_K || t->type == Q_TENSOR_Q4_K ||
                              t->type == Q_TENSOR_Q5_K
                          ? 256
                                                                          : 0;
    return Q_OK;
}

static const char *q_arch_key(const q_model *m, const char *name, char *buf, size_t cap);

/*
 * RoPE scaling: <arch>.rope.scaling.type absent or "none": none; "linear": angles divided
 * by <arch>.rope.scaling.factor (required, finite, >= 1); any other type (yarn, longrope)
 * is Q_ERR_UNSUPPORTED_TYPE. The older key <arch>.rope.scale_linear (a factor) counts as
 * linear scaling when no type is given. Llama 3's per-frequency factors are a tensor
 * (rope_freqs.weight, read with the tensors), not a scaling type.
 */
static q_error_code q_gguf_rope_scaling(q_gguf *g, q_model *m)
{
    char key[64];
    const q_gguf_kv *kv = q_gguf_find(g, q_arch_key(m, "rope.scaling.type", key, sizeof key));
    const char *factor_key = "rope.scale_linear";
    if (kv != NULL) {
        size_t n;
        if (kv->type != GT_STRING)
            return q_fail(g->diag, Q_ERR_UNSUPPORTED_TYPE, key, kv->key_at, kv->type);
        n = (size_t)q_load_u64(g->r.base + kv->value_at);
        if (q_is(g->r.base + kv->value_at + 8, n, "none"))
            return Q_OK;
        if (!q_is(g->r.base + kv->value_at + 8, n, "linear"))
            return q_fail_named(g->diag, Q_ERR_UNSUPPORTED_TYPE, "rope scaling ",
                                g->r.base + kv->value_at + 8, n, kv->value_at, 0);
        factor_key = "rope.scaling.factor";
    }
    const q_gguf_kv *f = q_gguf_find(g, q_arch_key(m, factor_key, key, sizeof key));
    if (f == NULL) {
        if (kv != NULL) /* linear scaling without its factor */
            return q_fail(g->diag, Q_ERR_MISSING, key, 0, 0);
        return Q_OK;
    }
    float factor;
    q_error_code rc = q_gguf_float(g, f, &factor);
    if (rc != Q_OK)
        return rc;
    if (!isfinite(factor) || !(factor >= 1.0f))
        return q_fail(g->diag, Q_ERR_INVALID_CONFIG, key, f->value_at,
                      factor >= 1.0f ? INT64_MAX : 0); /* an infinity, NaN, or below 1 */
    m->config.rope_linear_factor = factor;
    return Q_OK;
}

/* "<arch>.<name>" in buf (the architecture's key prefix, as ggml spells its keys) */
static const char *q_arch_key(const q_model *m, const char *name, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s.%s", m->config.arch == Q_ARCH_QWEN2 ? "qwen2" : "llama", name);
    return buf;
}

static q_error_code q_gguf_config(q_gguf *g, q_model *m)
{
    static const char *const names[7] = {
        "embedding_length", "feed_forward_length", "block_count", "attention.head_count",
        "attention.head_count_kv", NULL, "context_length",
    };
    const q_gguf_kv *kv = q_gguf_find(g, "general.architecture");
    const q_gguf_tensor *emb;
    q_raw_config raw;
    uint64_t theta_at = 0, eps_at = 0, at;
    int64_t v;
    q_error_code rc;
    char key[64];

    if (kv == NULL)
        return q_fail(g->diag, Q_ERR_MISSING, "general.architecture", 0, 0);
    if (kv->type != GT_STRING)
        return q_fail(g->diag, Q_ERR_UNSUPPORTED_TYPE, "general.architecture", kv->key_at, kv->type);
    const unsigned char *arch = g->r.base + kv->value_at + 8;
    size_t arch_len = (size_t)q_load_u64(g->r.base + kv->value_at);
    if (q_is(arch, arch_len, "llama")) {
        m->config.arch = Q_ARCH_LLAMA;
    } else if (q_is(arch, arch_len, "qwen2")) {
        m->config.arch = Q_ARCH_QWEN2;
        m->config.rope_neox = 1;
    } else {
        return q_fail_named(g->diag, Q_ERR_UNSUPPORTED_TYPE, "general.architecture ", arch,
                            arch_len, kv->value_at, 0);
    }
    for (int i = 0; i < 7; i++) {
        if (i == 5)
            continue;
        rc = q_gguf_req_int(g, q_arch_key(m, names[i], key, sizeof key), i == 4, raw.value[3],
                            &raw.value[i], &raw.offset[i]);
        if (rc != Q_OK)
            return rc;
    }
    emb = q_gguf_tensor_named(g, "token_embd.weight");
    if (emb == NULL)
        return q_fail(g->diag, Q_ERR_MISSING, "tensor token_embd.weight", 0, 0);
    raw.value[5] = (int64_t)emb->ne[1]; /* ne <= INT64_MAX was checked */
    raw.offset[5] = emb->at;
    rc = q_config_check(&raw, &m->config, g->diag); /* the integer fields only */
    if (rc != Q_OK)
        return rc;
    kv = q_gguf_find(g, q_arch_key(m, "vocab_size", key, sizeof key));
    if (kv != NULL) {
        rc = q_gguf_int(g, kv, &v);
        if (rc != Q_OK)
            return rc;
        if (v != raw.value[5])
            return q_fail(g->diag, Q_ERR_VOCAB_MISMATCH, key, kv->value_at, v);
    }
    rc = q_gguf_req_int(g, q_arch_key(m, "rope.dimension_count", key, sizeof key), 1,
                        (int64_t)(m->config.dim / m->config.n_heads), &v, &at);
    if (rc != Q_OK)
        return rc;
    if (v != (int64_t)(m->config.dim / m->config.n_heads))
        return q_fail(g->diag, Q_ERR_INVALID_CONFIG, key, at, v);
    m->config.rope_theta = 10000.0f;
    m->config.norm_eps = 1e-5f;
    kv = q_gguf_find(g, q_arch_key(m, "rope.freq_base", key, sizeof key));
    if (kv != NULL) {
        theta_at = kv->value_at;
        if ((rc = q_gguf_float(g, kv, &m->config.rope_theta)) != Q_OK)
            return rc;
    }
    kv = q_gguf_find(g, q_arch_key(m, "attention.layer_norm_rms_epsilon", key, sizeof key));
    if (kv != NULL) {
        eps_at = kv->value_at;
        if ((rc = q_gguf_float(g, kv, &m->config.norm_eps)) != Q_OK)
            return rc;
    }
    if ((rc = q_gguf_rope_scaling(g, m)) != Q_OK)
        return rc;
    return q_config_check_floats(&m->config, theta_at, eps_at, g->diag);
}

/* blk.N.<suffix>: N decimal without leading zeros (a huge N saturates, so it is still
 * above block_count). Returns 1 and sets *layer / *suffix. */
static int q_block_name(const unsigned char *s, size_t n, uint64_t *layer,
                        const unsigned char **suffix, size_t *suffix_len)
{
    size_t i = 4;
    uint64_t v = 0;
    if (n < 6 || memcmp(s, "blk.", 4) != 0)
        return 0;
    if (s[i] < '0' || s[i] > '9' || (s[i] == '0' && i + 1 < n && s[i + 1] != '.'))
        return 0;
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++)
        v = v > (UINT32_MAX - 9u) / 10u ? UINT32_MAX : v * 10 + (uint64_t)(s[i] - '0');
    if (i >= n || s[i] != '.')
        return 0;
    *layer = v;
    *suffix = s + i + 1;
    *suffix_len = n - i - 1;
    return 1;
}

/* Llama 3's rope_freqs.weight: F32, head_size / 2 values, each finite and > 0 (a divisor
 * of its rotation frequency). */
static q_error_code q_gguf_rope_factors(const q_gguf *g, const q_gguf_tensor *t, size_t half,
                                        q_tensor *out)
{
    q_error_code rc = q_gguf_view(g, t, 1, half, 1, out);
    if (rc != Q_OK)
        return rc;
    for (size_t j = 0; j < half; j++) {
        float f = q_load_f32((const unsigned char *)out->data + 4 * j);
        if (!isfinite(f) || !(f > 0.0f)) {
            memset(out, 0, sizeof *out);
            return q_fail_named(g->diag, Q_ERR_INVALID_CONFIG, "value of ", t->name,
                                t->name_len, g->data_at + t->offset + 4 * j, (int64_t)j);
        }
    }
    return Q_OK;
}

static q_error_code q_gguf_tensors(q_gguf *g, q_model *m)
{
    static const char *const suffixes[12] = {
        "attn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight",
        "attn_output.weight", "ffn_norm.weight", "ffn_gate.weight", "ffn_down.weight",
        "ffn_up.weight", "attn_q.bias", "attn_k.bias", "attn_v.bias", /* the last 3 optional */
    };
    const q_config *c = &m->config;
    size_t hs = c->dim / c->n_heads, kvd = c->n_kv_heads * hs;
    const q_gguf_tensor *t;
    q_error_code rc;

    m->layers = q_os_calloc(c->n_layers, sizeof(q_layer));
    if (m->layers == NULL)
        return q_fail(g->diag, Q_ERR_ALLOC, "layers", 0, 0);
    for (size_t i = 0; i < g->n_tensors; i++) {
        const unsigned char *suffix;
        size_t slen;
        uint64_t l;
        q_layer *ly;
        int k;
        t = &g->ti[i];
        if (q_is(t->name, t->name_len, "token_embd.weight"))
            rc = q_gguf_view(g, t, c->vocab_size, c->dim, 0, &m->token_embedding);
        else if (q_is(t->name, t->name_len, "output_norm.weight"))
            rc = q_gguf_view(g, t, 1, c->dim, 1, &m->final_norm);
        else if (q_is(t->name, t->name_len, "output.weight"))
            rc = q_gguf_view(g, t, c->vocab_size, c->dim, 0, &m->classifier);
        else if (q_is(t->name, t->name_len, "rope_freqs.weight"))
            rc = q_gguf_rope_factors(g, t, hs / 2, &m->rope_factors);
        else if (q_block_name(t->name, t->name_len, &l, &suffix, &slen)) {
            for (k = 0; k < 12; k++)
                if (q_is(suffix, slen, suffixes[k]))
                    break;
            if (k == 12)
                continue; /* a block tensor this driver does not use */
            if (l >= c->n_layers)
                return q_fail_named(g->diag, Q_ERR_INVALID_CONFIG, "block of ", t->name,
                                    t->name_len, t->at, (int64_t)l);
            ly = &m->layers[l];
            switch (k) {
            case 0: rc = q_gguf_view(g, t, 1, c->dim, 1, &ly->attn_norm); break;
            case 1: rc = q_gguf_view(g, t, c->dim, c->dim, 0, &ly->wq); break;
            case 2: rc = q_gguf_view(g, t, kvd, c->dim, 0, &ly->wk); break;
            case 3: rc = q_gguf_view(g, t, kvd, c->dim, 0, &ly->wv); break;
            case 4: rc = q_gguf_view(g, t, c->dim, c->dim, 0, &ly->wo); break;
            case 5: rc = q_gguf_view(g, t, 1, c->dim, 1, &ly->ffn_norm); break;
            case 6: rc = q_gguf_view(g, t, c->hidden_dim, c->dim, 0, &ly->w1); break;
            case 7: rc = q_gguf_view(g, t, c->dim, c->hidden_dim, 0, &ly->w2); break;
            case 8: rc = q_gguf_view(g, t, c->hidden_dim, c->dim, 0, &ly->w3); break;
            case 9: rc = q_gguf_view(g, t, 1, c->dim, 1, &ly->bq); break;
            case 10: rc = q_gguf_view(g, t, 1, kvd, 1, &ly->bk); break;
            default: rc = q_gguf_view(g, t, 1, kvd, 1, &ly->bv); break;
            }
        } else {
            continue; /* other extras */
        }
        if (rc != Q_OK)
            return rc;
    }
    /* names are unique, so a view with data is that tensor; any other is missing */
    if (m->final_norm.data == NULL)
        return q_fail(g->diag, Q_ERR_MISSING, "tensor output_norm.weight", 0, 0);
    for (size_t l = 0; l < c->n_layers; l++) {
        const q_tensor *v[9] = {
            &m->layers[l].attn_norm, &m->layers[l].wq, &m->layers[l].wk, &m->layers[l].wv,
            &m->layers[l].wo, &m->layers[l].ffn_norm, &m->layers[l].w1, &m->layers[l].w2,
            &m->layers[l].w3,
        };
        for (int k = 0; k < 9; k++)
            if (v[k]->data == NULL) {
                char name[64];
                snprintf(name, sizeof name, "tensor blk.%zu.%s", l, suffixes[k]);
                return q_fail(g->diag, Q_ERR_MISSING, name, 0, (int64_t)l);
            }
    }
    m->shared_classifier = m->classifier.data == NULL;
    if (m->shared_classifier)
        m->classifier = m->token_embedding;
    return Q_OK;
}

static q_error_code q_gguf_array(const q_gguf *g, const char *key, uint32_t elem_type,
                                 size_t n, const q_gguf_kv **out)
{
    const q_gguf_kv *kv = q_gguf_find(g, key);
    *out = kv;
    if (kv == NULL)
        return Q_OK;
    if (kv->type != GT_ARRAY || kv->arr_type != elem_type)
        return q_fail(g->diag, Q_ERR_UNSUPPORTED_TYPE, key, kv->value_at,
                      kv->type == GT_ARRAY ? (int64_t)kv->arr_type : (int64_t)kv->type);
    if (kv->arr_n != n)
        return q_fail(g->diag, Q_ERR_VOCAB_MISMATCH, key, kv->value_at, (int64_t)kv->arr_n);
    return Q_OK;
}

/* The vocabulary kind and, for BPE, the pre-tokenizer named in the metadata. */
static q_error_code q_gguf_vocab_kind(const q_gguf *g, q_vocab_kind *kind, q_pretok *pretok)
{
    static const struct { const char *name; q_pretok pretok; } pre_names[] = {
        {"gpt-2", Q_PRETOK_GPT2},       {"gpt2", Q_PRETOK_GPT2},
        {"llama-bpe", Q_PRETOK_LLAMA3}, {"llama3", Q_PRETOK_LLAMA3},
        {"llama-v3", Q_PRETOK_LLAMA3},  {"qwen2", Q_PRETOK_QWEN2},
    };
    const q_gguf_kv *kv = q_gguf_find(g, "tokenizer.ggml.model");
    const unsigned char *s;
    size_t n;
    *kind = Q_VOCAB_SPM;
    *pretok = Q_PRETOK_NONE;
    if (kv == NULL)
        return Q_OK;
    if (kv->type != GT_STRING)
        return q_fail(g->diag, Q_ERR_UNSUPPORTED_TYPE, "tokenizer.ggml.model", kv->key_at, kv->type);
    n = (size_t)q_load_u64(g->r.base + kv->value_at);
    s = g->r.base + kv->value_at + 8;
    if (q_is(s, n, "llama"))
        return Q_OK;
    if (!q_is(s, n, "gpt2"))
        return q_fail_named(g->diag, Q_ERR_UNSUPPORTED_TYPE, "tokenizer.ggml.model ", s, n,
                            kv->value_at, 0);
    *kind = Q_VOCAB_BPE;
    kv = q_gguf_find(g, "tokenizer.ggml.pre");
    if (kv == NULL)
        return q_fail(g->diag, Q_ERR_MISSING, "tokenizer.ggml.pre", 0, 0);
    if (kv->type != GT_STRING)
        return q_fail(g->diag, Q_ERR_UNSUPPORTED_TYPE, "tokenizer.ggml.pre", kv->key_at, kv->type);
    n = (size_t)q_load_u64(g->r.base + kv->value_at);
    s = g->r.base + kv->value_at + 8;
    for (size_t i = 0; i < sizeof pre_names / sizeof pre_names[0]; i++)
        if (q_is(s, n, pre_names[i].name)) {
            *pretok = pre_names[i].pretok;
            return Q_OK;
        }
    return q_fail_named(g->diag, Q_ERR_UNSUPPORTED_TYPE, "tokenizer.ggml.pre ", s, n,
                        kv->value_at, 0);
}

/* A token id key: required (or defaulted, or Q_TOKEN_NONE when absent and optional), < vocab. */
static q_error_code q_gguf_token_id(const q_gguf *g, const char *key, int required,
                                    int64_t def, size_t vocab, uint32_t *out)
{
    int64_t v = 0;
    uint64_t at = 0;
    q_error_code rc;
    if (def < 0 && !required && q_gguf_find(g, key) == NULL) {
        *out = Q_TOKEN_NONE;
        return Q_OK;
    }
    rc = q_gguf_req_int(g, key, !required, def, &v, &at);
    if (rc != Q_OK)
        return rc;
    if (v < 0 || (uint64_t)v >= vocab)
        return q_fail(g->diag, Q_ERR_BAD_TOKEN, key, at, v);
    *out = (uint32_t)v;
    return Q_OK;
}

/* Token types (BPE only): copied as bytes, each Q_TOKEN_TYPE_NORMAL..Q_TOKEN_TYPE_BYTE. */
static q_error_code q_gguf_token_types(const q_gguf *g, const q_gguf_kv *types, q_tokenizer *t)
{
    size_t n = t->vocab_size;
    t->token_types = q_os_malloc(n ? n : 1);
    if (t->token_types == NULL)
        return q_fail(g->diag, Q_ERR_ALLOC, "tokenizer.ggml.token_type", 0, (int64_t)n);
    for (size_t i = 0; i < n; i++) {
        int32_t type = q_load_i32(g->r.base + types->arr_at + 4 * i);
        if (type < Q_TOKEN_TYPE_NORMAL || type > Q_TOKEN_TYPE_BYTE)
            return q_fail(g->diag, Q_ERR_BAD_TOKEN, "tokenizer.ggml.token_type",
                          types->arr_at + 4 * i, type);
        t->token_types[i] = (uint8_t)type;
    }
    return Q_OK;
}

static q_error_code q_gguf_tokenizer(const q_gguf *g, q_tokenizer *t, size_t vocab)
{
    const q_gguf_kv *tokens, *scores, *types, *merges = NULL, *kv;
    size_t i, text = 0, used = 0;
    q_vocab_kind kind;
    q_pretok pretok;
    q_reader r;
    q_error_code rc;

    if ((rc = q_gguf_vocab_kind(g, &kind, &pretok)) != Q_OK)
        return rc;
    kv = q_gguf_find(g, "tokenizer.ggml.tokens");
    if (kv == NULL)
        return q_fail(g->diag, Q_ERR_MISSING, "tokenizer.ggml.tokens", 0, 0);
    if ((rc = q_gguf_array(g, "tokenizer.ggml.tokens", GT_STRING, vocab, &tokens)) != Q_OK)
        return rc;
    if ((rc = q_gguf_array(g, "tokenizer.ggml.scores", GT_F32, vocab, &scores)) != Q_OK)
        return rc;
    if (scores == NULL && kind == Q_VOCAB_SPM)
        return q_fail(g->diag, Q_ERR_MISSING, "tokenizer.ggml.scores", 0, 0);
    if ((rc = q_gguf_array(g, "tokenizer.ggml.token_type", GT_I32, vocab, &types)) != Q_OK)
        return rc;
    if (kind == Q_VOCAB_BPE) {
        merges = q_gguf_find(g, "tokenizer.ggml.merges");
        if (merges == NULL)
            return q_fail(g->diag, Q_ERR_MISSING, "tokenizer.ggml.merges", 0, 0);
        if (merges->type != GT_ARRAY || merges->arr_type != GT_STRING)
            return q_fail(g->diag, Q_ERR_UNSUPPORTED_TYPE, "tokenizer.ggml.merges",
                          merges->value_at,
                          merges->type == GT_ARRAY ? (int64_t)merges->arr_type
                                                   : (int64_t)merges->type);
    }
    /* pass 1 over the pieces (their framing was validated with the metadata) */
    r.base = g->r.base;
    r.len = g->r.len;
    r.pos = tokens->arr_at;
    for (i = 0; i < vocab; i++) {
        size_t p = r.pos;
        uint64_t n = q_load_u64(r.base + p);
        if (n > Q_MAX_TOKEN_BYTES)
            return q_fail(g->diag, Q_ERR_BAD_TOKEN, "token length", p, (int64_t)n);
        text += (size_t)n;
        r.pos = p + 8 + (size_t)n;
    }
    for (i = 0; scores != NULL && i < vocab; i++)
        if (q_load_f32(g->r.base + scores->arr_at + 4 * i) !=
            q_load_f32(g->r.base + scores->arr_at + 4 * i))
            return q_fail(g->diag, Q_ERR_BAD_TOKEN, "token score (NaN)",
                          scores->arr_at + 4 * i, (int64_t)i);
    rc = q_tok_alloc(t, vocab, text);
    if (rc != Q_OK)
        return q_fail(g->diag, rc, "tokenizer", 0, (int64_t)vocab);
    t->kind = kind;
    t->pretok = pretok;
    r.pos = tokens->arr_at;
    for (i = 0; i < vocab; i++) {
        size_t n = (size_t)q_load_u64(r.base + r.pos);
        float score = scores != NULL ? q_load_f32(g->r.base + scores->arr_at + 4 * i) : 0.0f;
        q_tok_set(t, i, r.base + r.pos + 8, n, score, &used);
        r.pos += 8 + n;
    }
    /* SentencePiece vocabularies keep their BOS / EOS defaults (1 / 2); BPE ones name theirs */
    if ((rc = q_gguf_token_id(g, "tokenizer.ggml.bos_token_id", t->kind == Q_VOCAB_BPE, 1, vocab,
                              &t->bos_id)) != Q_OK ||
        (rc = q_gguf_token_id(g, "tokenizer.ggml.eos_token_id", t->kind == Q_VOCAB_BPE, 2, vocab,
                              &t->eos_id)) != Q_OK ||
        (rc = q_gguf_token_id(g, "tokenizer.ggml.eot_token_id", 0, -1, vocab, &t->eot_id)) != Q_OK)
        return rc;
    kv = q_gguf_find(g, "tokenizer.ggml.add_bos_token");
    t->add_bos = t->kind == Q_VOCAB_SPM;
    if (kv != NULL) {
        if (kv->type != GT_BOOL)
            return q_fail(g->diag, Q_ERR_UNSUPPORTED_TYPE, "tokenizer.ggml.add_bos_token",
                          kv->key_at, kv->type);
        t->add_bos = g->r.base[kv->value_at] != 0;
    }
    if (t->kind == Q_VOCAB_SPM)
        return q_tok_finish(t, tokens->arr_at, g->diag);
    if (types != NULL && (rc = q_gguf_token_types(g, types, t)) != Q_OK)
        return rc;
    return q_tok_bpe_finish(t, g->r.base, merges->arr_at, merges->arr_n, tokens->arr_at, g->diag);
}

q_error_code q_gguf_parse(q_model *model, q_tokenizer *tokenizer, const unsigned char *buf,
                          size_t len, q_diag *diag)
{
    q_gguf g;
    q_tokenizer tok;
    uint64_t n_tensors = 0;
    q_error_code rc;

    memset(&g, 0, sizeof g);
    memset(&tok, 0, sizeof tok);
    g.r.base = buf;
    g.r.len = len;
    g.diag = diag;
    rc = q_gguf_header(&g, &n_tensors);
    if (rc == Q_OK)
        rc = q_gguf_alignment(&g);
    if (rc == Q_OK)
        rc = q_gguf_tensor_infos(&g, n_tensors);
    if (rc == Q_OK)
        rc = q_gguf_config(&g, model);
    if (rc == Q_OK)
        rc = q_gguf_tensors(&g, model);
    /* the vocabulary is validated even when the caller does not want it */
    if (rc == Q_OK && (tokenizer != NULL || q_gguf_find(&g, "tokenizer.ggml.tokens") != NULL))
        rc = q_gguf_tokenizer(&g, &tok, model->config.vocab_size);
    if (rc == Q_OK) {
        model->format = Q_FORMAT_GGUF;
        model->version = q_load_u32(buf + 4);
        if (tokenizer != NULL)
            *tokenizer = tok;
        else
            q_tokenizer_free(&tok);
    } else {
        q_tokenizer_free(&tok);
        q_model_free(model);
    }
    q_os_free(g.kv);
    q_os_free(g.ti);
    return rc;
}

q_error_code q_gguf_vocab_parse(q_tokenizer *tokenizer, const unsigned char *buf, size_t len,
                                q_diag *diag)
{
    q_gguf g;
    uint64_t n_tensors = 0;
    const q_gguf_kv *tokens;
    q_error_code rc;

    memset(&g, 0, sizeof g);
    g.r.base = buf;
    g.r.len = len;
    g.diag = diag;
    rc = q_gguf_header(&g, &n_tensors);
    if (rc == Q_OK) {
        tokens = q_gguf_find(&g, "tokenizer.ggml.tokens");
        if (tokens == NULL)
            rc = q_fail(diag, Q_ERR_MISSING, "tokenizer.ggml.tokens", 0, 0);
        else if (tokens->type != GT_ARRAY)
            rc = q_fail(diag, Q_ERR_UNSUPPORTED_TYPE, "tokenizer.ggml.tokens", tokens->value_at,
                        (int64_t)tokens->type);
        else if (tokens->arr_n == 0 || tokens->arr_n > Q_MAX_VOCAB)
            rc = q_fail(diag, Q_ERR_INVALID_CONFIG, "vocab_size", tokens->value_at,
                        (int64_t)tokens->arr_n);
        else
            rc = q_gguf_tokenizer(&g, tokenizer, tokens->arr_n);
    }
    if (rc != Q_OK)
        q_tokenizer_free(tokenizer);
    q_os_free(g.kv);
    return rc;
}
