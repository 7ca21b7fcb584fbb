/*
 * Structure-aware mutator of GGUF files (the input of fuzz_gguf).
 *
 * Layout (src/model/gguf.c): "GGUF", uint32 version, uint64 n_tensors, uint64 n_kv; n_kv
 * pairs (uint64-length key, uint32 value type, value; arrays are uint32 element type,
 * uint64 count, elements); n_tensors infos (name, uint32 n_dims, n_dims uint64 ne, uint32
 * ggml type, uint64 offset into the data section); padding to general.alignment (default
 * 32); the data section. This file has its own small parser (independent of src/model): the
 * input becomes { version, kv[], tensor infos[] (each pointing at its current bytes), data },
 * a few fields change, and the file is written back with counts, lengths and padding that
 * match, unless the mutation is a deliberate framing break (a header count that lies).
 *
 * Mutations (1 to 3 per call):
 *   consistent config change  dim, hidden, block count, head counts or vocabulary size
 *                              changes in the llama.* (qwen2.*) keys AND in every tensor shape that
 *                              depends on it (blk.N tensors added or removed with the block
 *                              count; tokenizer arrays resized with the vocabulary;
 *                              rope.dimension_count follows the head size), then the data
 *                              section is laid out again (each tensor keeps its bytes,
 *                              resized), so the file stays well framed. Now and then one
 *                              dependent field is left stale on purpose.
 *   tensor type               one tensor or all matrices become F32, F16, Q8_0, Q4_0, Q4_K,
 *                              Q5_K, Q6_K, BF16 or an unknown type, with their byte size and
 *                              the layout
 *   metadata values           integers (0, 1, limits +- 1, neighbours' values, huge,
 *                              negative), floats (NaN, Inf, 0, huge), strings ("llama",
 *                              "qwen2", "gpt2", empty, RoPE scaling types), bos/eos ids,
 *                              token pieces (byte-token shapes)
 *   swapped types             a value re-encoded as another type (u32 <-> i64, string <->
 *                              int, array element types)
 *   metadata structure        a pair deleted, duplicated, moved, renamed to another known
 *                              key, a known key added; an array resized
 *   tensor infos              n_dims, ne[i], type, offset, name (blk index, another
 *                              tensor's name); a tensor deleted, duplicated, moved
 *   header                    version; n_tensors or n_kv that lie (framing break)
 *   data                      special floats in a tensor; general.alignment changed and the
 *                              data laid out again
 *   byte-level BPE            tokenizer.ggml.pre (the six names, unknown ones, not a string),
 *                              the model name, one token type (0..7; an all-normal array
 *                              added), eot_token_id, add_bos_token (bool or not), pieces in
 *                              byte-level shapes; merges: sides swapped, a side replaced by an
 *                              unknown or a real piece, the space dropped / doubled / at an
 *                              end, a merge duplicated, deleted, moved to another rank or
 *                              added by splitting a real piece, the element type changed
 * Cross-over: one file's metadata with the other's tensors (and their bytes), a run of the
 * other's metadata pairs, the other's llama.* / qwen2.* hyperparameters, or one tensor of the other.
 */
#include <limits.h>
#include <stdio.h>

#include "mutator_common.h"
#include "qorus_model.h"

enum { GT_U8, GT_I8, GT_U16, GT_I16, GT_U32, GT_I32, GT_F32, GT_BOOL, GT_STRING, GT_ARRAY,
       GT_U64, GT_I64, GT_F64, GT_COUNT };

#define GG_MAX_ITEMS 4096u  /* pairs or tensors this mutator handles */
#define GG_MAX_DIMS 8u      /* the library takes 1..4; a few more still parse here */
#define GG_DEFAULT_ALIGNMENT 32u

typedef struct gg_kv {
    const uint8_t *key;
    size_t key_len;
    uint32_t type;
    const uint8_t *val; /* the value as written after the type field */
    size_t val_len;
} gg_kv;

typedef struct gg_ti {
    const uint8_t *name;
    size_t name_len;
    uint32_t n_dims;
    uint64_t ne[GG_MAX_DIMS];
    uint32_t type;
    uint64_t offset;
    const uint8_t *src; /* the tensor's current bytes (clipped to the data section) */
    size_t src_len;
} gg_ti;

typedef struct gg_file {
    uint32_t version;
    gg_kv *kv;
    size_t n_kv;
    gg_ti *ti;
    size_t n_ti;
    const uint8_t *data;
    size_t data_len;
    int lie;             /* write n_kv_field / n_ti_field instead of the real counts */
    uint64_t n_kv_field, n_ti_field;
} gg_file;

/* ---- value framing ---- */

static size_t gg_scalar_size(uint32_t t)
{
    static const uint8_t sz[GT_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return t < GT_COUNT ? sz[t] : 0;
}

/* Skips one value of type t; 0 when it does not fit or the type is unknown/nested. */
static int gg_skip_value(qm_reader *r, uint32_t t, int in_array)
{
    const uint8_t *p;
    if (gg_scalar_size(t))
        return qm_take(r, gg_scalar_size(t), &p);
    if (t == GT_STRING) {
        uint64_t n;
        return qm_get64(r, &n) && n <= r->len - r->pos && qm_take(r, (size_t)n, &p);
    }
    if (t == GT_ARRAY && !in_array) {
        uint32_t et;
        uint64_t count;
        if (!qm_get32(r, &et) || !qm_get64(r, &count))
            return 0;
        if (gg_scalar_size(et))
            return count <= (r->len - r->pos) / gg_scalar_size(et) &&
                   qm_take(r, (size_t)count * gg_scalar_size(et), &p);
        if (et != GT_STRING || count > (r->len - r->pos) / 8)
            return 0;
        for (uint64_t i = 0; i < count; i++)
            if (!gg_skip_value(r, GT_STRING, 1))
                return 0;
        return 1;
    }
    return 0;
}

/* ggml type: elements per block and bytes per block; 0 for types this mutator does not
 * size (their bytes are kept as they are). */
static int gg_type_layout(uint32_t type, uint64_t *block, uint64_t *bytes)
{
    switch (type) {
    case 0: *block = 1; *bytes = 4; return 1;   /* F32 */
    case 1: *block = 1; *bytes = 2; return 1;   /* F16 */
    case 2: *block = 32; *bytes = 18; return 1; /* Q4_0 */
    case 3: *block = 32; *bytes = 20; return 1; /* Q4_1 */
    case 8: *block = 32; *bytes = 34; return 1; /* Q8_0 */
    case 12: *block = 256; *bytes = 144; return 1; /* Q4_K */
    case 13: *block = 256; *bytes = 176; return 1; /* Q5_K */
    case 14: *block = 256; *bytes = 210; return 1; /* Q6_K */
    case 24: *block = 1; *bytes = 1; return 1;  /* I8 */
    case 26: *block = 1; *bytes = 4; return 1;  /* I32 */
    case 30: *block = 1; *bytes = 2; return 1;  /* BF16 */
    default: return 0;
    }
}

/* Bytes of tensor t as its shape and type say; 0 when not computable. */
static int gg_tensor_bytes(const gg_ti *t, uint64_t *bytes)
{
    uint64_t block, bb, n = 1;
    if (!gg_type_layout(t->type, &block, &bb))
        return 0;
    for (uint32_t i = 0; i < t->n_dims; i++)
        if (__builtin_mul_overflow(n, t->ne[i], &n))
            return 0;
    n = (n + block - 1) / block;
    return !__builtin_mul_overflow(n, bb, bytes);
}

/* ---- parse / write ---- */

static int gg_key_is(const gg_kv *kv, const char *s)
{
    return kv->key_len == strlen(s) && memcmp(kv->key, s, kv->key_len) == 0;
}

static gg_kv *gg_find(gg_file *f, const char *key)
{
    for (size_t i = 0; i < f->n_kv; i++)
        if (gg_key_is(&f->kv[i], key))
            return &f->kv[i];
    return NULL;
}

/* An integer-typed value as uint64 (signed types sign-extended); 0 if not an integer. */
static int gg_int_value(const gg_kv *kv, uint64_t *v)
{
    const uint8_t *p = kv->val;
    switch (kv->type) {
    case GT_U8: case GT_BOOL: *v = p[0]; return 1;
    case GT_I8: *v = (uint64_t)(int64_t)(int8_t)p[0]; return 1;
    case GT_U16: *v = (uint64_t)p[0] | (uint64_t)p[1] << 8; return 1;
    case GT_I16: *v = (uint64_t)(int64_t)(int16_t)(p[0] | p[1] << 8); return 1;
    case GT_U32: *v = qm_rd32(p); return 1;
    case GT_I32: *v = (uint64_t)(int64_t)(int32_t)qm_rd32(p); return 1;
    case GT_U64: case GT_I64: *v = qm_rd64(p); return 1;
    default: return 0;
    }
}

/* Sets kv to a scalar of type t holding v (truncated to the width; f32/f64 take v as the
 * integer value to represent). */
static int gg_set_scalar(qm_pool *pool, gg_kv *kv, uint32_t t, uint64_t v)
{
    size_t n = gg_scalar_size(t);
    uint8_t *b = qm_alloc(pool, 8);
    if (b == NULL || n == 0)
        return 0;
    if (t == GT_F32) {
        float x = (float)(int64_t)v;
        uint32_t bits;
        memcpy(&bits, &x, 4);
        qm_wr32(b, bits);
    } else if (t == GT_F64) {
        double x = (double)(int64_t)v;
        uint64_t bits;
        memcpy(&bits, &x, 8);
        qm_wr64(b, bits);
    } else {
        qm_wr64(b, v);
    }
    kv->type = t;
    kv->val = b;
    kv->val_len = n;
    return 1;
}

static int gg_set_string(qm_pool *pool, gg_kv *kv, const void *s, size_t n)
{
    uint8_t *b = qm_alloc(pool, 8 + n);
    if (b == NULL)
        return 0;
    qm_wr64(b, n);
    if (n)
        memcpy(b + 8, s, n);
    kv->type = GT_STRING;
    kv->val = b;
    kv->val_len = 8 + n;
    return 1;
}

static size_t gg_alignment(gg_file *f)
{
    gg_kv *a = gg_find(f, "general.alignment");
    uint64_t v;
    if (a != NULL && gg_int_value(a, &v) && v > 0 && v <= Q_GGUF_MAX_ALIGNMENT &&
        (v & (v - 1)) == 0)
        return (size_t)v;
    return GG_DEFAULT_ALIGNMENT;
}

static int gg_parse(qm_pool *pool, const uint8_t *in, size_t size, gg_file *f)
{
    qm_reader r = {in, size, 0};
    uint32_t magic;
    uint64_t n_ti, n_kv;
    memset(f, 0, sizeof *f);
    if (!qm_get32(&r, &magic) || magic != 0x46554747u || !qm_get32(&r, &f->version) ||
        !qm_get64(&r, &n_ti) || !qm_get64(&r, &n_kv) || n_ti > GG_MAX_ITEMS ||
        n_kv > GG_MAX_ITEMS)
        return 0;
    f->kv = qm_alloc(pool, (size_t)n_kv * sizeof *f->kv);
    f->ti = qm_alloc(pool, (size_t)n_ti * sizeof *f->ti);
    if (f->kv == NULL || f->ti == NULL)
        return 0;
    for (size_t i = 0; i < n_kv; i++) {
        gg_kv *kv = &f->kv[i];
        uint64_t klen;
        if (!qm_get64(&r, &klen) || klen > r.len - r.pos || !qm_take(&r, (size_t)klen, &kv->key) ||
            !qm_get32(&r, &kv->type))
            return 0;
        kv->key_len = (size_t)klen;
        size_t at = r.pos;
        if (!gg_skip_value(&r, kv->type, 0))
            return 0;
        kv->val = in + at;
        kv->val_len = r.pos - at;
    }
    f->n_kv = (size_t)n_kv;
    for (size_t i = 0; i < n_ti; i++) {
        gg_ti *t = &f->ti[i];
        uint64_t nlen;
        if (!qm_get64(&r, &nlen) || nlen > r.len - r.pos ||
            !qm_take(&r, (size_t)nlen, &t->name) || !qm_get32(&r, &t->n_dims) ||
            t->n_dims > GG_MAX_DIMS)
            return 0;
        t->name_len = (size_t)nlen;
        for (uint32_t d = 0; d < t->n_dims; d++)
            if (!qm_get64(&r, &t->ne[d]))
                return 0;
        if (!qm_get32(&r, &t->type) || !qm_get64(&r, &t->offset))
            return 0;
    }
    f->n_ti = (size_t)n_ti;
    size_t align = gg_alignment(f);
    size_t data_at = (r.pos + align - 1) / align * align;
    if (data_at > size)
        return 0;
    f->data = in + data_at;
    f->data_len = size - data_at;
    for (size_t i = 0; i < f->n_ti; i++) {
        gg_ti *t = &f->ti[i];
        uint64_t bytes;
        if (t->offset < f->data_len) {
            t->src = f->data + t->offset;
            t->src_len = f->data_len - (size_t)t->offset;
            if (gg_tensor_bytes(t, &bytes) && bytes < t->src_len)
                t->src_len = (size_t)bytes;
        }
    }
    return 1;
}

static void gg_write(gg_file *f, qm_out *o)
{
    qm_put(o, "GGUF", 4);
    qm_put32(o, f->version);
    qm_put64(o, f->lie ? f->n_ti_field : f->n_ti);
    qm_put64(o, f->lie ? f->n_kv_field : f->n_kv);
    for (size_t i = 0; i < f->n_kv; i++) {
        qm_put64(o, f->kv[i].key_len);
        qm_put(o, f->kv[i].key, f->kv[i].key_len);
        qm_put32(o, f->kv[i].type);
        qm_put(o, f->kv[i].val, f->kv[i].val_len);
    }
    for (size_t i = 0; i < f->n_ti; i++) {
        const gg_ti *t = &f->ti[i];
        qm_put64(o, t->name_len);
        qm_put(o, t->name, t->name_len);
        qm_put32(o, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++)
            qm_put64(o, t->ne[d]);
        qm_put32(o, t->type);
        qm_put64(o, t->offset);
    }
    size_t align = gg_alignment(f);
    qm_put_zeros(o, (align - o->len % align) % align);
    qm_put(o, f->data, f->data_len);
}

/* A copy whose arrays can grow by `extra` entries and change without touching f. */
static int gg_clone(qm_pool *pool, const gg_file *f, gg_file *g, size_t extra)
{
    *g = *f;
    g->kv = qm_alloc(pool, (f->n_kv + extra) * sizeof *g->kv);
    g->ti = qm_alloc(pool, (f->n_ti + extra) * sizeof *g->ti);
    if (g->kv == NULL || g->ti == NULL)
        return 0;
    if (f->n_kv)
        memcpy(g->kv, f->kv, f->n_kv * sizeof *g->kv);
    if (f->n_ti)
        memcpy(g->ti, f->ti, f->n_ti * sizeof *g->ti);
    return 1;
}

/* Lays the data section out again: every tensor at the next aligned offset with the bytes
 * its shape and type imply (its old bytes, repeated if it grew). 0 if it would not fit. */
static int gg_relayout(qm_pool *pool, gg_file *f, size_t max_size)
{
    size_t align = gg_alignment(f);
    uint64_t total = 0;
    for (size_t i = 0; i < f->n_ti; i++) {
        uint64_t bytes;
        if (!gg_tensor_bytes(&f->ti[i], &bytes))
            bytes = f->ti[i].src_len;
        total = (total + align - 1) / align * align;
        if (bytes > max_size || total + bytes > max_size)
            return 0;
        total += bytes;
    }
    uint8_t *data = qm_alloc(pool, (size_t)total);
    if (data == NULL)
        return 0;
    size_t at = 0;
    for (size_t i = 0; i < f->n_ti; i++) {
        gg_ti *t = &f->ti[i];
        uint64_t bytes;
        if (!gg_tensor_bytes(t, &bytes))
            bytes = t->src_len;
        at = (at + align - 1) / align * align;
        qm_fill_cyclic(data + at, (size_t)bytes, t->src, t->src_len);
        t->offset = at;
        t->src = data + at;
        t->src_len = (size_t)bytes;
        at += (size_t)bytes;
    }
    f->data = data;
    f->data_len = (size_t)total;
    return 1;
}

/* ---- tensor roles ---- */

enum {
    R_OTHER, R_EMBD, R_OUTPUT, R_OUT_NORM, R_NORM, R_Q, R_K, R_V, R_O, R_GATE, R_DOWN, R_UP,
    R_BIAS_Q, R_BIAS_KV, R_ROPE_FREQS
};

/* The tensor's role and its block index (-1 outside blk.N). */
static int gg_role(const gg_ti *t, long *layer)
{
    char name[96];
    size_t n = t->name_len < sizeof name - 1 ? t->name_len : sizeof name - 1;
    memcpy(name, t->name, n);
    name[n] = '\0';
    *layer = -1;
    if (strcmp(name, "token_embd.weight") == 0)
        return R_EMBD;
    if (strcmp(name, "output.weight") == 0)
        return R_OUTPUT;
    if (strcmp(name, "output_norm.weight") == 0)
        return R_OUT_NORM;
    if (strcmp(name, "rope_freqs.weight") == 0)
        return R_ROPE_FREQS;
    int used = 0;
    long l;
    if (sscanf(name, "blk.%ld.%n", &l, &used) != 1 || used == 0)
        return R_OTHER;
    static const char *const suffix[] = {"attn_norm.weight", "ffn_norm.weight", "attn_q.weight",
                                         "attn_k.weight", "attn_v.weight",
                                         "attn_output.weight", "ffn_gate.weight",
                                         "ffn_down.weight", "ffn_up.weight", "attn_q.bias",
                                         "attn_k.bias", "attn_v.bias"};
    static const int role[] = {R_NORM, R_NORM, R_Q,    R_K,      R_V,       R_O,
                               R_GATE, R_DOWN, R_UP, R_BIAS_Q, R_BIAS_KV, R_BIAS_KV};
    *layer = l;
    for (size_t i = 0; i < 12; i++)
        if (strcmp(name + used, suffix[i]) == 0)
            return role[i];
    return R_OTHER;
}

typedef struct gg_cfg {
    uint64_t dim, hidden, layers, heads, kv_heads, vocab;
} gg_cfg;

/* "<arch>.<name>" for the file's general.architecture ("qwen2" or else "llama") in buf */
static const char *gg_akey(gg_file *f, const char *name, char *buf, size_t cap)
{
    gg_kv *kv = gg_find(f, "general.architecture");
    int qwen2 = kv != NULL && kv->type == GT_STRING && kv->val_len == 13 &&
                memcmp(kv->val + 8, "qwen2", 5) == 0;
    snprintf(buf, cap, "%s.%s", qwen2 ? "qwen2" : "llama", name);
    return buf;
}

static uint64_t gg_get(gg_file *f, const char *key, uint64_t dflt)
{
    gg_kv *kv = gg_find(f, key);
    uint64_t v;
    return kv != NULL && gg_int_value(kv, &v) ? v : dflt;
}

static void gg_read_cfg(gg_file *f, gg_cfg *c)
{
    char k[64];
    c->dim = gg_get(f, gg_akey(f, "embedding_length", k, sizeof k), 8);
    c->hidden = gg_get(f, gg_akey(f, "feed_forward_length", k, sizeof k), 8);
    c->layers = gg_get(f, gg_akey(f, "block_count", k, sizeof k), 1);
    c->heads = gg_get(f, gg_akey(f, "attention.head_count", k, sizeof k), 1);
    c->kv_heads = gg_get(f, gg_akey(f, "attention.head_count_kv", k, sizeof k), c->heads);
    c->vocab = 0;
    for (size_t i = 0; i < f->n_ti; i++) {
        long l;
        if (gg_role(&f->ti[i], &l) == R_EMBD && f->ti[i].n_dims >= 2)
            c->vocab = f->ti[i].ne[1];
    }
    if (c->vocab == 0)
        c->vocab = gg_get(f, gg_akey(f, "vocab_size", k, sizeof k), 16);
}

static void gg_set_int_key(qm_pool *pool, gg_file *f, const char *key, uint64_t v)
{
    gg_kv *kv = gg_find(f, key);
    if (kv != NULL && gg_scalar_size(kv->type))
        (void)gg_set_scalar(pool, kv, kv->type, v);
}

/* Sets ne of t as its role needs under config c (matrices rows x cols are ne = [cols, rows]). */
static void gg_shape(gg_ti *t, const gg_cfg *c)
{
    long l;
    uint64_t hs = c->heads ? c->dim / c->heads : 0, kv = c->kv_heads * hs;
    uint64_t rows = 0, cols = c->dim;
    switch (gg_role(t, &l)) {
    case R_EMBD: case R_OUTPUT: rows = c->vocab; break;
    case R_OUT_NORM: case R_NORM: rows = 1; break;
    case R_Q: case R_O: rows = c->heads * hs; cols = c->dim; break;
    case R_K: case R_V: rows = kv; break;
    case R_GATE: case R_UP: rows = c->hidden; break;
    case R_DOWN: rows = c->dim; cols = c->hidden; break;
    case R_BIAS_Q: rows = 1; break;
    case R_BIAS_KV: rows = 1; cols = kv; break;
    case R_ROPE_FREQS: rows = 1; cols = hs / 2; break;
    default: return;
    }
    if (rows == 1) {
        t->n_dims = 1;
        t->ne[0] = cols;
    } else {
        t->n_dims = 2;
        t->ne[0] = cols;
        t->ne[1] = rows;
    }
}

/* Resizes array kv to `count` elements: kept ones stay, new ones copy the last (or are
 * "pN" strings / zeros). */
static int gg_resize_array(qm_rng *r, qm_pool *pool, gg_kv *kv, uint64_t count, size_t max_size)
{
    if (kv == NULL || kv->type != GT_ARRAY || kv->val_len < 12)
        return 0;
    uint32_t et = qm_rd32(kv->val);
    uint64_t old = qm_rd64(kv->val + 4);
    const uint8_t *el = kv->val + 12;
    size_t el_len = kv->val_len - 12;
    size_t keep_len = 0;
    uint64_t keep = old < count ? old : count;
    if (et == GT_STRING) {
        qm_reader rd = {el, el_len, 0};
        for (uint64_t i = 0; i < keep; i++)
            (void)gg_skip_value(&rd, GT_STRING, 1);
        keep_len = rd.pos;
    } else {
        keep_len = (size_t)keep * gg_scalar_size(et);
    }
    size_t per = et == GT_STRING ? 8 + 16 : gg_scalar_size(et);
    if (per == 0 || count - keep > max_size / per)
        return 0;
    size_t cap = 12 + keep_len + (size_t)(count - keep) * per;
    uint8_t *b = qm_alloc(pool, cap);
    if (b == NULL)
        return 0;
    qm_wr32(b, et);
    qm_wr64(b + 4, count);
    memcpy(b + 12, el, keep_len);
    size_t at = 12 + keep_len;
    for (uint64_t i = keep; i < count; i++) {
        if (et == GT_STRING) {
            uint8_t piece[16];
            size_t n;
            if (qm_one_in(r, 4)) {
                n = qm_pick_piece(r, piece);
            } else {
                char s[16];
                n = (size_t)snprintf(s, sizeof s, "p%llu", (unsigned long long)i);
                memcpy(piece, s, n);
            }
            qm_wr64(b + at, n);
            memcpy(b + at + 8, piece, n);
            at += 8 + n;
        } else {
            size_t sz = gg_scalar_size(et);
            if (keep_len >= sz)
                memcpy(b + at, b + 12 + keep_len - sz, sz);
            else
                memset(b + at, 0, sz);
            at += sz;
        }
    }
    kv->val = b;
    kv->val_len = at;
    return 1;
}

/* Renames a blk.N tensor to blk.L with the same suffix. */
static int gg_rename_layer(qm_pool *pool, gg_ti *t, long layer)
{
    long old;
    int used = 0;
    char name[96];
    size_t n = t->name_len < sizeof name - 1 ? t->name_len : sizeof name - 1;
    memcpy(name, t->name, n);
    name[n] = '\0';
    if (sscanf(name, "blk.%ld.%n", &old, &used) != 1 || used == 0)
        return 0;
    char *out = qm_alloc(pool, n + 24);
    if (out == NULL)
        return 0;
    int len = snprintf(out, n + 24, "blk.%ld.%s", layer, name + used);
    t->name = (const uint8_t *)out;
    t->name_len = (size_t)len;
    return 1;
}

/* A config field (0 dim, 1 hidden, 2 layers, 3 heads, 4 kv heads, 5 vocab) gets a new
 * value and everything depending on it follows; the data is laid out again. */
static int gg_config_change(qm_rng *r, qm_pool *pool, gg_file *f, size_t max_size)
{
    gg_cfg c;
    gg_read_cfg(f, &c);
    gg_cfg n = c;
    uint64_t *field[] = {&n.dim, &n.hidden, &n.layers, &n.heads, &n.kv_heads, &n.vocab};
    static const uint64_t limits[] = {Q_MAX_DIM, Q_MAX_HIDDEN_DIM, Q_MAX_LAYERS, Q_MAX_HEADS,
                                      Q_MAX_HEADS, Q_MAX_VOCAB};
    int k = (int)qm_below(r, 6);
    uint64_t old = *field[k];
    if (qm_one_in(r, 2)) { /* plausible: keeps the divisibility rules */
        uint64_t heads = c.heads ? c.heads : 1;
        switch (k) {
        case 0: *field[k] = heads * 2 * (1 + qm_below(r, 8)) * (qm_one_in(r, 2) ? 16 : 1); break;
        case 3: {
            uint64_t d = 1 + qm_below(r, 8);
            *field[k] = c.dim % d == 0 ? d : 1;
            break;
        }
        case 4: {
            uint64_t d = 1 + qm_below(r, 4);
            *field[k] = heads % d == 0 ? d : 1;
            break;
        }
        default: {
            uint64_t v = old + qm_below(r, 5) - 2;
            *field[k] = v >= 1 && v <= 64 ? v : 1 + qm_below(r, 8);
            if (k == 1 && qm_one_in(r, 2))
                *field[k] = 32 * (1 + qm_below(r, 3));
        }
        }
    } else {
        uint64_t nb[] = {c.dim, c.hidden, c.layers, c.heads, c.kv_heads, c.vocab};
        *field[k] = qm_pick_int(r, old, limits[k], nb, 6);
    }
    if (*field[k] == old)
        return 0;
    /* keep the block count and vocabulary small enough to lay out */
    if ((k == 2 && n.layers > 64) || (k == 5 && n.vocab > 4096))
        return 0;
    int stale = qm_one_in(r, 12) ? (int)qm_below(r, 4) : -1; /* one dependent left as is */

    gg_file g;
    size_t extra = k == 2 && n.layers > c.layers ? (size_t)(n.layers - c.layers) * 16 : 0;
    if (!gg_clone(pool, f, &g, extra))
        return 0;
    char ak[64];
    gg_set_int_key(pool, &g, gg_akey(&g, "embedding_length", ak, sizeof ak), n.dim);
    gg_set_int_key(pool, &g, gg_akey(&g, "feed_forward_length", ak, sizeof ak), n.hidden);
    gg_set_int_key(pool, &g, gg_akey(&g, "block_count", ak, sizeof ak), n.layers);
    gg_set_int_key(pool, &g, gg_akey(&g, "attention.head_count", ak, sizeof ak), n.heads);
    gg_set_int_key(pool, &g, gg_akey(&g, "attention.head_count_kv", ak, sizeof ak), n.kv_heads);
    if (stale != 0)
        gg_set_int_key(pool, &g, gg_akey(&g, "rope.dimension_count", ak, sizeof ak),
                       n.heads ? n.dim / n.heads : 0);
    if (stale != 1)
        gg_set_int_key(pool, &g, gg_akey(&g, "vocab_size", ak, sizeof ak), n.vocab);
    if (k == 5 && stale != 2) {
        (void)gg_resize_array(r, pool, gg_find(&g, "tokenizer.ggml.tokens"), n.vocab, max_size);
        (void)gg_resize_array(r, pool, gg_find(&g, "tokenizer.ggml.scores"), n.vocab, max_size);
        (void)gg_resize_array(r, pool, gg_find(&g, "tokenizer.ggml.token_type"), n.vocab,
                              max_size);
    }
    if (k == 2) { /* blocks removed, or copies of the last block added */
        size_t w = 0, n_old = g.n_ti;
        /* the old last block's index; none when the count is 0 or beyond a long */
        int have_last = c.layers >= 1 && c.layers - 1 <= (uint64_t)LONG_MAX;
        long last = have_last ? (long)(c.layers - 1) : 0;
        for (size_t i = 0; i < n_old; i++) {
            long l;
            (void)gg_role(&g.ti[i], &l);
            if (l < 0 || (uint64_t)l < n.layers)
                g.ti[w++] = g.ti[i];
        }
        g.n_ti = w;
        for (uint64_t L = c.layers; L < n.layers && stale != 3; L++)
            for (size_t i = 0; i < n_old && g.n_ti < f->n_ti + extra; i++) {
                long l;
                (void)gg_role(&f->ti[i], &l);
                if (have_last && l == last) {
                    g.ti[g.n_ti] = f->ti[i];
                    if (!gg_rename_layer(pool, &g.ti[g.n_ti], (long)L))
                        return 0;
                    g.n_ti++;
                }
            }
    }
    for (size_t i = 0; i < g.n_ti; i++)
        if (stale != 3 || !qm_one_in(r, 4))
            gg_shape(&g.ti[i], &n);
    if (!gg_relayout(pool, &g, max_size))
        return 0;
    *f = g;
    return 1;
}

static const char *const gg_known_keys[] = {
    "general.architecture", "general.alignment", "llama.embedding_length",
    "llama.feed_forward_length", "llama.block_count", "llama.attention.head_count",
    "llama.attention.head_count_kv", "llama.context_length", "llama.rope.freq_base",
    "llama.attention.layer_norm_rms_epsilon", "llama.rope.dimension_count", "llama.vocab_size",
    "llama.rope.scaling.type", "llama.rope.scaling.factor", "llama.rope.scale_linear",
    "qwen2.embedding_length", "qwen2.feed_forward_length", "qwen2.block_count",
    "qwen2.attention.head_count", "qwen2.attention.head_count_kv", "qwen2.context_length",
    "qwen2.rope.freq_base", "qwen2.rope.scaling.type", "qwen2.rope.scaling.factor",
    "tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.scores",
    "tokenizer.ggml.token_type", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.pre", "tokenizer.ggml.merges", "tokenizer.ggml.eot_token_id",
    "tokenizer.ggml.add_bos_token"};
#define GG_N_KNOWN (sizeof gg_known_keys / sizeof gg_known_keys[0])

static const char *const gg_known_tensors[] = {
    "token_embd.weight", "output.weight", "output_norm.weight", "blk.0.attn_norm.weight",
    "blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight",
    "blk.0.attn_output.weight", "blk.0.ffn_norm.weight", "blk.0.ffn_gate.weight",
    "blk.0.ffn_down.weight", "blk.0.ffn_up.weight", "blk.1.attn_q.weight", "rope_freqs.weight",
    "blk.0.attn_q.bias", "blk.0.attn_k.bias", "blk.0.attn_v.bias"};

/* A metadata value changes, keeping its type (or its element type). */
static int gg_value_change(qm_rng *r, qm_pool *pool, gg_file *f)
{
    if (f->n_kv == 0)
        return 0;
    gg_kv *kv = &f->kv[qm_below(r, f->n_kv)];
    gg_cfg c;
    gg_read_cfg(f, &c);
    uint64_t nb[] = {c.dim, c.hidden, c.layers, c.heads, c.kv_heads, c.vocab, c.vocab - 1};
    uint64_t v;
    if (gg_int_value(kv, &v)) {
        uint64_t limit = kv->type == GT_U8 || kv->type == GT_I8 ? 0x80
                       : kv->type == GT_U16 || kv->type == GT_I16 ? 0x8000
                       : kv->type == GT_U64 || kv->type == GT_I64 ? 0x8000000000000000ull
                                                                   : 0x80000000u;
        return gg_set_scalar(pool, kv, kv->type, qm_pick_int(r, v, limit, nb, 7));
    }
    if (kv->type == GT_F32) {
        uint8_t *b = qm_alloc(pool, 4);
        if (b == NULL)
            return 0;
        qm_wr32(b, qm_pick_f32_bits(r, qm_rd32(kv->val)));
        kv->val = b;
        return 1;
    }
    if (kv->type == GT_STRING) {
        static const char *const s[] = {"llama", "gpt2",   "",     "LLAMA",  "llama\0x",
                                        "mistral", "qwen2", "none", "linear", "yarn",
                                        "llama-bpe", "gpt-2"};
        size_t i = qm_below(r, sizeof s / sizeof s[0]);
        return gg_set_string(pool, kv, s[i], i == 4 ? 7 : strlen(s[i]));
    }
    if (kv->type == GT_ARRAY && kv->val_len > 12) {
        uint32_t et = qm_rd32(kv->val);
        uint64_t count = qm_rd64(kv->val + 4);
        uint8_t *b = qm_dup(pool, kv->val, kv->val_len);
        if (b == NULL || count == 0)
            return 0;
        uint64_t at = qm_one_in(r, 2) ? qm_below(r, count < 4 ? count : 4) : qm_below(r, count);
        size_t sz = gg_scalar_size(et);
        if (sz == 4 && et == GT_F32) {
            qm_wr32(b + 12 + at * 4, qm_pick_f32_bits(r, qm_rd32(b + 12 + at * 4)));
        } else if (sz) {
            uint8_t tmp[8];
            qm_wr64(tmp, qm_pick_int(r, 0, 6, nb, 7));
            memcpy(b + 12 + at * sz, tmp, sz);
        } else if (et == GT_STRING) { /* a token piece: rebuild the array around it */
            qm_reader rd = {kv->val + 12, kv->val_len - 12, 0};
            for (uint64_t i = 0; i < at; i++)
                (void)gg_skip_value(&rd, GT_STRING, 1);
            size_t before = rd.pos;
            (void)gg_skip_value(&rd, GT_STRING, 1);
            size_t after = rd.pos;
            uint8_t piece[16];
            size_t n = qm_pick_piece(r, piece);
            size_t len = 12 + before + 8 + n + (kv->val_len - 12 - after);
            uint8_t *nbuf = qm_alloc(pool, len);
            if (nbuf == NULL)
                return 0;
            memcpy(nbuf, kv->val, 12 + before);
            qm_wr64(nbuf + 12 + before, n);
            memcpy(nbuf + 12 + before + 8, piece, n);
            memcpy(nbuf + 12 + before + 8 + n, kv->val + 12 + after, kv->val_len - 12 - after);
            kv->val = nbuf;
            kv->val_len = len;
            return 1;
        }
        kv->val = b;
        return 1;
    }
    return 0;
}

/* A value re-encoded as another type: integers change width or signedness, become floats
 * or strings; strings become integers; arrays change element type (elements re-encoded). */
static int gg_type_swap(qm_rng *r, qm_pool *pool, gg_file *f)
{
    if (f->n_kv == 0)
        return 0;
    gg_kv *kv = &f->kv[qm_below(r, f->n_kv)];
    uint64_t v = 0;
    if (kv->type == GT_ARRAY && kv->val_len >= 12) {
        uint64_t count = qm_rd64(kv->val + 4);
        static const uint32_t et[] = {GT_U8, GT_I32, GT_U32, GT_F32, GT_STRING, GT_F64, GT_U64,
                                      GT_ARRAY, GT_COUNT};
        uint32_t t = et[qm_below(r, sizeof et / sizeof et[0])];
        size_t sz = gg_scalar_size(t);
        if (count > 4096)
            return 0;
        size_t len = 12 + (size_t)count * (sz ? sz : 9);
        uint8_t *b = qm_alloc(pool, len);
        if (b == NULL)
            return 0;
        qm_wr32(b, t);
        qm_wr64(b + 4, count);
        for (uint64_t i = 0; i < count; i++) {
            if (sz)
                memset(b + 12 + i * sz, (int)(i & 0x7f), sz);
            else { /* strings of one char (for GT_ARRAY/unknown: bytes that will not parse) */
                qm_wr64(b + 12 + i * 9, 1);
                b[12 + i * 9 + 8] = (uint8_t)('a' + i % 26);
            }
        }
        kv->val = b;
        kv->val_len = len;
        return 1;
    }
    if (!gg_int_value(kv, &v) && kv->type == GT_STRING && kv->val_len > 8)
        v = kv->val[8];
    static const uint32_t to[] = {GT_U8, GT_I8, GT_U16, GT_I16, GT_U32, GT_I32, GT_F32, GT_BOOL,
                                  GT_U64, GT_I64, GT_F64, GT_STRING};
    uint32_t t = to[qm_below(r, sizeof to / sizeof to[0])];
    if (t == kv->type)
        return 0;
    if (t == GT_STRING) {
        char s[24];
        int n = snprintf(s, sizeof s, "%llu", (unsigned long long)v);
        return gg_set_string(pool, kv, s, (size_t)n);
    }
    return gg_set_scalar(pool, kv, t, v);
}

/* Metadata structure: delete, duplicate, move, rename, add a known key. */
static int gg_kv_structure(qm_rng *r, qm_pool *pool, gg_file *f)
{
    gg_file g;
    if (!gg_clone(pool, f, &g, 1))
        return 0;
    size_t i = qm_below(r, g.n_kv);
    switch (qm_below(r, 5)) {
    case 0: /* delete */
        if (g.n_kv == 0)
            return 0;
        memmove(g.kv + i, g.kv + i + 1, (g.n_kv - i - 1) * sizeof *g.kv);
        g.n_kv--;
        break;
    case 1: /* duplicate (same key: Q_ERR_DUPLICATE) at another place */
        if (g.n_kv == 0)
            return 0;
        g.kv[g.n_kv++] = g.kv[i];
        break;
    case 2: { /* move */
        if (g.n_kv < 2)
            return 0;
        size_t j = qm_below(r, g.n_kv);
        gg_kv t = g.kv[i];
        g.kv[i] = g.kv[j];
        g.kv[j] = t;
        break;
    }
    case 3: { /* rename to a known key (its value type may not fit the key) */
        if (g.n_kv == 0)
            return 0;
        const char *k = gg_known_keys[qm_below(r, GG_N_KNOWN)];
        g.kv[i].key = (const uint8_t *)k;
        g.kv[i].key_len = strlen(k);
        break;
    }
    default: { /* add a known key with a value that matters */
        const char *k = gg_known_keys[qm_below(r, GG_N_KNOWN)];
        gg_kv *kv = &g.kv[g.n_kv];
        kv->key = (const uint8_t *)k;
        kv->key_len = strlen(k);
        gg_cfg c;
        gg_read_cfg(f, &c);
        uint64_t hs = c.dim / (c.heads ? c.heads : 1);
        uint64_t nb[] = {c.dim, c.hidden, c.layers, c.heads, c.vocab, hs};
        if (!gg_set_scalar(pool, kv, qm_one_in(r, 4) ? GT_I32 : GT_U32,
                           qm_pick_int(r, 0, 0x80000000u, nb, 6)))
            return 0;
        g.n_kv++;
        break;
    }
    }
    *f = g;
    return 1;
}

/* One field of one tensor info (no relayout: the bytes no longer match, on purpose). */
static int gg_ti_field(qm_rng *r, qm_pool *pool, gg_file *f)
{
    if (f->n_ti == 0)
        return 0;
    size_t i = qm_below(r, f->n_ti);
    gg_ti *t = &f->ti[i];
    const gg_ti *o = &f->ti[qm_below(r, f->n_ti)];
    switch (qm_below(r, 5)) {
    case 0: {
        uint32_t nd = (uint32_t)qm_below(r, 6);
        for (uint32_t d = t->n_dims; d < nd; d++)
            t->ne[d] = 1;
        t->n_dims = nd;
        return 1;
    }
    case 1: {
        if (t->n_dims == 0)
            return 0;
        uint32_t d = (uint32_t)qm_below(r, t->n_dims);
        uint64_t nb[] = {o->ne[0], o->n_dims > 1 ? o->ne[1] : 1, t->ne[0] * 32, 32};
        t->ne[d] = qm_pick_int(r, t->ne[d], 0x8000000000000000ull, nb, 4);
        return 1;
    }
    case 2: {
        uint64_t nb[] = {0, 1, 8, 2, 30, o->type};
        t->type = (uint32_t)qm_pick_int(r, t->type, 40, nb, 6);
        return 1;
    }
    case 3: {
        uint64_t nb[] = {o->offset, f->data_len, f->data_len - 1, t->offset + 32, 1};
        t->offset = qm_pick_int(r, t->offset, f->data_len, nb, 5);
        return 1;
    }
    default: { /* another tensor's name, a known name, or another block index */
        if (qm_one_in(r, 3)) {
            long l;
            if (gg_role(t, &l) != R_OTHER && l >= 0) {
                uint64_t nb[] = {(uint64_t)l + 1, 1024, 0};
                uint64_t to = qm_pick_int(r, (uint64_t)l, 64, nb, 3);
                return gg_rename_layer(pool, t, (long)(int32_t)to);
            }
        }
        if (qm_one_in(r, 2)) {
            t->name = o->name;
            t->name_len = o->name_len;
        } else {
            const char *s = gg_known_tensors[qm_below(r, sizeof gg_known_tensors /
                                                             sizeof gg_known_tensors[0])];
            t->name = (const uint8_t *)s;
            t->name_len = strlen(s);
        }
        return 1;
    }
    }
}

/* A tensor (or all matrices) changes type, with its byte size: the data is laid out again. */
static int gg_tensor_type(qm_rng *r, qm_pool *pool, gg_file *f, size_t max_size)
{
    static const uint32_t types[] = {0, 1, 8, 8, 2, 12, 13, 14, 30, 99};
    gg_file g;
    if (f->n_ti == 0 || !gg_clone(pool, f, &g, 0))
        return 0;
    uint32_t t = types[qm_below(r, sizeof types / sizeof types[0])];
    if (qm_one_in(r, 2)) {
        for (size_t i = 0; i < g.n_ti; i++)
            if (g.ti[i].n_dims >= 2)
                g.ti[i].type = t;
    } else {
        g.ti[qm_below(r, g.n_ti)].type = t;
    }
    if (!gg_relayout(pool, &g, max_size))
        return 0;
    *f = g;
    return 1;
}

/* Tensor structure: delete, duplicate, move; laid out again half the time. */
static int gg_ti_structure(qm_rng *r, qm_pool *pool, gg_file *f, size_t max_size)
{
    gg_file g;
    if (f->n_ti == 0 || !gg_clone(pool, f, &g, 1))
        return 0;
    size_t i = qm_below(r, g.n_ti), j = qm_below(r, g.n_ti);
    switch (qm_below(r, 3)) {
    case 0:
        memmove(g.ti + i, g.ti + i + 1, (g.n_ti - i - 1) * sizeof *g.ti);
        g.n_ti--;
        break;
    case 1:
        g.ti[g.n_ti++] = g.ti[i];
        break;
    default: {
        gg_ti t = g.ti[i];
        g.ti[i] = g.ti[j];
        g.ti[j] = t;
        break;
    }
    }
    if (qm_one_in(r, 2) && !gg_relayout(pool, &g, max_size))
        return 0;
    *f = g;
    return 1;
}

/* ---- byte-level BPE vocabularies (tokenizer.ggml.model "gpt2") ---- */

typedef struct gg_str {
    const uint8_t *s;
    size_t n;
} gg_str;

/* The elements of string array kv, with room for `extra` more; 0 if kv is not one. */
static int gg_strings(qm_pool *pool, const gg_kv *kv, size_t extra, gg_str **out, size_t *n)
{
    if (kv == NULL || kv->type != GT_ARRAY || kv->val_len < 12 || qm_rd32(kv->val) != GT_STRING)
        return 0;
    uint64_t count = qm_rd64(kv->val + 4);
    if (count > (kv->val_len - 12) / 8) /* each element has its 8-byte length */
        return 0;
    gg_str *a = qm_alloc(pool, ((size_t)count + extra + 1) * sizeof *a);
    if (a == NULL)
        return 0;
    qm_reader rd = {kv->val + 12, kv->val_len - 12, 0};
    for (uint64_t i = 0; i < count; i++) {
        uint64_t len;
        if (!qm_get64(&rd, &len) || len > rd.len - rd.pos || !qm_take(&rd, (size_t)len, &a[i].s))
            return 0;
        a[i].n = (size_t)len;
    }
    *out = a;
    *n = (size_t)count;
    return 1;
}

/* kv becomes a string array of a[0..n). */
static int gg_set_strings(qm_pool *pool, gg_kv *kv, const gg_str *a, size_t n)
{
    size_t len = 12;
    for (size_t i = 0; i < n; i++)
        len += 8 + a[i].n;
    uint8_t *b = qm_alloc(pool, len);
    if (b == NULL)
        return 0;
    qm_wr32(b, GT_STRING);
    qm_wr64(b + 4, n);
    size_t at = 12;
    for (size_t i = 0; i < n; i++) {
        qm_wr64(b + at, a[i].n);
        if (a[i].n)
            memcpy(b + at + 8, a[i].s, a[i].n);
        at += 8 + a[i].n;
    }
    kv->type = GT_ARRAY;
    kv->val = b;
    kv->val_len = len;
    return 1;
}

/* The pair `key` (added, empty, when absent). */
static gg_kv *gg_find_or_add(qm_pool *pool, gg_file *f, const char *key)
{
    gg_kv *kv = gg_find(f, key);
    gg_file g;
    if (kv != NULL)
        return kv;
    if (!gg_clone(pool, f, &g, 1))
        return NULL;
    kv = &g.kv[g.n_kv++];
    memset(kv, 0, sizeof *kv);
    kv->key = (const uint8_t *)key;
    kv->key_len = strlen(key);
    *f = g;
    return kv;
}

/* "left right" of a[i]: the offset of its first space, or n when it has none. */
static size_t gg_space(const gg_str *a)
{
    const uint8_t *sp = a->n ? memchr(a->s, ' ', a->n) : NULL;
    return sp != NULL ? (size_t)(sp - a->s) : a->n;
}

/* "x y" from two byte ranges, in the pool. */
static int gg_join(qm_pool *pool, gg_str *out, const uint8_t *x, size_t nx, const char *mid,
                   const uint8_t *y, size_t ny)
{
    size_t nm = strlen(mid);
    uint8_t *b = qm_alloc(pool, nx + nm + ny + 1);
    if (b == NULL)
        return 0;
    if (nx)
        memcpy(b, x, nx);
    memcpy(b + nx, mid, nm);
    if (ny)
        memcpy(b + nx + nm, y, ny);
    out->s = b;
    out->n = nx + nm + ny;
    return 1;
}

/* One merge of tokenizer.ggml.merges changes: sides swapped, a side replaced by an unknown or
 * a real piece, the space dropped or doubled or moved to an end, a merge duplicated, deleted,
 * moved (another rank) or added by splitting a real piece (often valid), or the array's
 * element type changed. */
static int gg_merges_change(qm_rng *r, qm_pool *pool, gg_file *f)
{
    gg_kv *kv = gg_find(f, "tokenizer.ggml.merges");
    gg_str *m, *tok = NULL;
    size_t n, n_tok = 0;
    if (!gg_strings(pool, kv, 1, &m, &n))
        return 0;
    (void)gg_strings(pool, gg_find(f, "tokenizer.ggml.tokens"), 0, &tok, &n_tok);
    size_t i = n ? (qm_one_in(r, 2) ? qm_below(r, n < 8 ? n : 8) : qm_below(r, n)) : 0;
    const gg_str *piece = n_tok ? &tok[qm_below(r, n_tok)] : NULL;
    switch (qm_below(r, 8)) {
    case 0: { /* swap sides */
        size_t sp = n ? gg_space(&m[i]) : 0;
        if (n == 0 || sp == m[i].n)
            return 0;
        gg_str a = m[i];
        return gg_join(pool, &m[i], a.s + sp + 1, a.n - sp - 1, " ", a.s, sp) &&
               gg_set_strings(pool, kv, m, n);
    }
    case 1: { /* a side becomes an unknown piece or a real one */
        static const char *const unknown[] = {"zq\x01", "\xc4", "<0x41>", "\xc4\xa0\xc4\xa0\xc4\xa0x"};
        size_t sp = n ? gg_space(&m[i]) : 0;
        if (n == 0 || sp == m[i].n)
            return 0;
        const uint8_t *w;
        size_t nw;
        if (piece != NULL && qm_one_in(r, 2)) {
            w = piece->s;
            nw = piece->n;
        } else {
            const char *u = unknown[qm_below(r, sizeof unknown / sizeof unknown[0])];
            w = (const uint8_t *)u;
            nw = strlen(u);
        }
        gg_str a = m[i];
        int ok = qm_one_in(r, 2) ? gg_join(pool, &m[i], w, nw, " ", a.s + sp + 1, a.n - sp - 1)
                                 : gg_join(pool, &m[i], a.s, sp, " ", w, nw);
        return ok && gg_set_strings(pool, kv, m, n);
    }
    case 2: { /* the space: dropped, doubled, or at an end */
        if (n == 0)
            return 0;
        size_t sp = gg_space(&m[i]);
        gg_str a = m[i];
        int ok;
        switch (qm_below(r, 4)) {
        case 0: ok = sp < a.n && gg_join(pool, &m[i], a.s, sp, "", a.s + sp + 1, a.n - sp - 1); break;
        case 1: ok = gg_join(pool, &m[i], a.s, sp, sp < a.n ? "  " : " ", a.s + sp + (sp < a.n),
                             a.n - sp - (sp < a.n)); break;
        case 2: ok = gg_join(pool, &m[i], (const uint8_t *)"", 0, " ", a.s, a.n); break;
        default: ok = gg_join(pool, &m[i], a.s, a.n, " ", (const uint8_t *)"", 0); break;
        }
        return ok && gg_set_strings(pool, kv, m, n);
    }
    case 3: { /* duplicated at another rank */
        if (n == 0)
            return 0;
        size_t j = qm_below(r, n + 1);
        gg_str a = m[i];
        memmove(m + j + 1, m + j, (n - j) * sizeof *m);
        m[j] = a;
        return gg_set_strings(pool, kv, m, n + 1);
    }
    case 4: /* deleted */
        if (n == 0)
            return 0;
        memmove(m + i, m + i + 1, (n - i - 1) * sizeof *m);
        return gg_set_strings(pool, kv, m, n - 1);
    case 5: { /* moved: another rank */
        if (n < 2)
            return 0;
        size_t j = qm_below(r, n);
        gg_str a = m[i];
        m[i] = m[j];
        m[j] = a;
        return gg_set_strings(pool, kv, m, n);
    }
    case 6: { /* a new merge splitting a real piece of 2+ bytes (both halves often pieces) */
        if (piece == NULL || piece->n < 2)
            return 0;
        size_t k = 1 + qm_below(r, piece->n - 1), j = qm_below(r, n + 1);
        memmove(m + j + 1, m + j, (n - j) * sizeof *m);
        return gg_join(pool, &m[j], piece->s, k, " ", piece->s + k, piece->n - k) &&
               gg_set_strings(pool, kv, m, n + 1);
    }
    default: { /* the element type: i32 / u32 elements, or one string instead of an array */
        if (qm_one_in(r, 3))
            return gg_set_string(pool, kv, n ? m[0].s : (const uint8_t *)"", n ? m[0].n : 0);
        uint8_t *b = qm_alloc(pool, 12 + 4 * n);
        if (b == NULL)
            return 0;
        qm_wr32(b, qm_one_in(r, 2) ? GT_I32 : GT_U32);
        qm_wr64(b + 4, n);
        for (size_t k = 0; k < n; k++)
            qm_wr32(b + 12 + 4 * k, (uint32_t)k);
        kv->type = GT_ARRAY;
        kv->val = b;
        kv->val_len = 12 + 4 * n;
        return 1;
    }
    }
}

/* The other BPE keys: tokenizer.ggml.pre (known, unknown, not a string), the model name, one
 * token type (0..7; an all-normal array added when there is none), eot_token_id, add_bos_token
 * (bool or another type), one piece in byte-level shapes (raw space, invalid UTF-8, empty...).
 * Absent keys are added. */
static int gg_bpe_change(qm_rng *r, qm_pool *pool, gg_file *f)
{
    static const char *const pre[] = {"gpt-2", "gpt2", "llama-bpe", "llama3", "llama-v3",
                                      "qwen2", "",      "falcon",    "LLAMA-BPE", "qwen2\0"};
    gg_kv *kv;
    gg_cfg c;
    gg_read_cfg(f, &c);
    switch (qm_below(r, 7)) {
    case 0: {
        size_t k = qm_below(r, sizeof pre / sizeof pre[0]);
        if ((kv = gg_find_or_add(pool, f, "tokenizer.ggml.pre")) == NULL)
            return 0;
        if (qm_one_in(r, 8))
            return gg_set_scalar(pool, kv, GT_U32, k);
        return gg_set_string(pool, kv, pre[k], k == 9 ? 6 : strlen(pre[k]));
    }
    case 1: {
        static const char *const model[] = {"gpt2", "gpt2", "llama", "bert"};
        const char *s = model[qm_below(r, 4)];
        if ((kv = gg_find_or_add(pool, f, "tokenizer.ggml.model")) == NULL)
            return 0;
        return gg_set_string(pool, kv, s, strlen(s));
    }
    case 2: { /* one token type */
        gg_kv *tokens = gg_find(f, "tokenizer.ggml.tokens");
        uint64_t count = tokens != NULL && tokens->type == GT_ARRAY && tokens->val_len >= 12
                             ? qm_rd64(tokens->val + 4) : 0;
        if ((kv = gg_find(f, "tokenizer.ggml.token_type")) == NULL) {
            if (count == 0 || count > 1u << 20 || (kv = gg_find_or_add(pool, f,
                                                        "tokenizer.ggml.token_type")) == NULL)
                return 0;
            uint8_t *b = qm_alloc(pool, 12 + 4 * (size_t)count);
            if (b == NULL)
                return 0;
            qm_wr32(b, GT_I32);
            qm_wr64(b + 4, count);
            for (uint64_t k = 0; k < count; k++)
                qm_wr32(b + 12 + 4 * k, 1);
            kv->type = GT_ARRAY;
            kv->val = b;
            kv->val_len = 12 + 4 * (size_t)count;
            if (qm_one_in(r, 2))
                return 1; /* all normal */
        }
        if (kv->type != GT_ARRAY || kv->val_len < 16 || qm_rd32(kv->val) != GT_I32)
            return 0;
        size_t n = (kv->val_len - 12) / 4;
        uint8_t *b = qm_dup(pool, kv->val, kv->val_len);
        if (b == NULL)
            return 0;
        size_t at = qm_one_in(r, 2) ? n - 1 - qm_below(r, n < 4 ? n : 4) : qm_below(r, n);
        qm_wr32(b + 12 + 4 * at, (uint32_t)qm_below(r, 8));
        kv->val = b;
        return 1;
    }
    case 3: { /* eot_token_id */
        uint64_t nb[] = {c.vocab - 1, c.vocab, 0, 1, 2, 0xffffffffu};
        if ((kv = gg_find_or_add(pool, f, "tokenizer.ggml.eot_token_id")) == NULL)
            return 0;
        return gg_set_scalar(pool, kv, qm_one_in(r, 4) ? GT_I32 : GT_U32,
                             nb[qm_below(r, sizeof nb / sizeof nb[0])]);
    }
    case 4: { /* add_bos_token */
        static const uint32_t types[] = {GT_BOOL, GT_BOOL, GT_BOOL, GT_U8, GT_I32, GT_STRING};
        uint32_t t = types[qm_below(r, sizeof types / sizeof types[0])];
        if ((kv = gg_find_or_add(pool, f, "tokenizer.ggml.add_bos_token")) == NULL)
            return 0;
        if (t == GT_STRING)
            return gg_set_string(pool, kv, "true", 4);
        return gg_set_scalar(pool, kv, t, qm_below(r, 2));
    }
    case 5: { /* one piece in a byte-level shape */
        static const char *const shapes[] = {"\xc4\xa0",     " ",        "\xff",
                                             "",             "\xc4\x8a", "<|endoftext|>",
                                             "\xc3\xa9",     "\xc0\x80", "\xc4\xa0\xc4\xa0",
                                             "\xe2\x96\x81", "t",        "\xc4\xa0the"};
        gg_str *tok;
        size_t n;
        kv = gg_find(f, "tokenizer.ggml.tokens");
        if (!gg_strings(pool, kv, 0, &tok, &n) || n == 0)
            return 0;
        const char *sh = shapes[qm_below(r, sizeof shapes / sizeof shapes[0])];
        size_t at = qm_one_in(r, 2) ? qm_below(r, n < 260 ? n : 260) : qm_below(r, n);
        tok[at].s = (const uint8_t *)sh;
        tok[at].n = strlen(sh);
        return gg_set_strings(pool, kv, tok, n);
    }
    default:
        return gg_merges_change(r, pool, f);
    }
}

static int gg_mutate_once(qm_rng *r, qm_pool *pool, gg_file *f, size_t max_size)
{
    switch (qm_below(r, 16)) {
    case 14: case 15: /* BPE keys and merges; the merges again half the time */
        return qm_one_in(r, 2) ? gg_merges_change(r, pool, f) : gg_bpe_change(r, pool, f);
    case 0: case 1: case 2: case 3:
        return gg_config_change(r, pool, f, max_size);
    case 4:
        return gg_tensor_type(r, pool, f, max_size);
    case 5: case 6:
        return gg_value_change(r, pool, f);
    case 7:
        return gg_type_swap(r, pool, f);
    case 8:
        return gg_kv_structure(r, pool, f);
    case 9:
        return gg_ti_field(r, pool, f);
    case 10:
        return gg_ti_structure(r, pool, f, max_size);
    case 11: /* header: version, or counts that lie */
        if (qm_one_in(r, 2)) {
            uint64_t nb[] = {2, 3, 0x03000000u};
            f->version = (uint32_t)qm_pick_int(r, f->version, 3, nb, 3);
        } else {
            uint64_t nb[] = {f->n_ti, f->n_kv, (uint64_t)1 << 61, (uint64_t)1 << 62};
            f->lie = 1;
            f->n_ti_field = qm_one_in(r, 2) ? qm_pick_int(r, f->n_ti, f->n_ti, nb, 4) : f->n_ti;
            f->n_kv_field = qm_one_in(r, 2) ? qm_pick_int(r, f->n_kv, f->n_kv, nb, 4) : f->n_kv;
        }
        return 1;
    case 12: { /* special floats in one tensor's bytes */
        if (f->n_ti == 0)
            return 0;
        gg_ti *t = &f->ti[qm_below(r, f->n_ti)];
        if (t->src_len < 4 || t->src < f->data || t->src + t->src_len > f->data + f->data_len)
            return 0;
        uint8_t *d = qm_dup(pool, f->data, f->data_len);
        if (d == NULL)
            return 0;
        size_t base = (size_t)(t->src - f->data);
        for (size_t k = 1 + qm_below(r, 3); k > 0; k--) {
            size_t at = base + qm_below(r, t->src_len / 4) * 4;
            if (t->type == 1 || t->type == 30) /* 16-bit: NaN, Inf, max */
                qm_wr32(d + at, qm_one_in(r, 2) ? 0x7e007c00u : 0xfc007bffu);
            else
                qm_wr32(d + at, qm_pick_f32_bits(r, qm_rd32(d + at)));
        }
        for (size_t k = 0; k < f->n_ti; k++)
            if (f->ti[k].src >= f->data && f->ti[k].src <= f->data + f->data_len)
                f->ti[k].src = d + (f->ti[k].src - f->data);
        f->data = d;
        return 1;
    }
    default: { /* general.alignment, and the layout that follows it */
        gg_file g;
        if (!gg_clone(pool, f, &g, 1))
            return 0;
        gg_kv *a = gg_find(&g, "general.alignment");
        if (a == NULL) {
            a = &g.kv[g.n_kv++];
            a->key = (const uint8_t *)"general.alignment";
            a->key_len = strlen("general.alignment");
        }
        uint64_t nb[] = {1, 4, 8, 16, 64, 128, 3, 48};
        if (!gg_set_scalar(pool, a, qm_one_in(r, 8) ? GT_U64 : GT_U32,
                           qm_pick_int(r, 32, Q_GGUF_MAX_ALIGNMENT, nb, 8)))
            return 0;
        if (!gg_relayout(pool, &g, max_size))
            return 0;
        *f = g;
        return 1;
    }
    }
}

static int gg_mutate(qm_rng *r, const uint8_t *in, size_t size, uint8_t *out, size_t max_size,
                     size_t *out_len)
{
    qm_pool pool = {0};
    gg_file f;
    int ok = 0;
    if (gg_parse(&pool, in, size, &f)) {
        size_t want = 1 + qm_below(r, 3), done = 0;
        for (int attempt = 0; attempt < 16 && done < want && !pool.failed; attempt++)
            done += (size_t)gg_mutate_once(r, &pool, &f, max_size);
        qm_out o = {out, 0, max_size, 0};
        gg_write(&f, &o);
        ok = done > 0 && !o.overflow && !pool.failed;
        *out_len = o.len;
    }
    qm_pool_free(&pool);
    return ok;
}

static int gg_crossover(qm_rng *r, const uint8_t *a, size_t na, const uint8_t *b, size_t nb,
                        uint8_t *out, size_t max_out, size_t *out_len)
{
    qm_pool pool = {0};
    gg_file fa, fb, g;
    int ok = 0;
    if (gg_parse(&pool, a, na, &fa) && gg_parse(&pool, b, nb, &fb) &&
        gg_clone(&pool, &fa, &g, fb.n_kv + fb.n_ti)) {
        switch (qm_below(r, 4)) {
        case 0: /* a's metadata, b's tensors (with their bytes) */
            memcpy(g.ti, fb.ti, fb.n_ti * sizeof *g.ti);
            g.n_ti = fb.n_ti;
            break;
        case 1: { /* a run of b's pairs replaces a run of a's */
            size_t from = qm_below(r, fb.n_kv), count = qm_below(r, fb.n_kv - from + 1);
            size_t at = qm_below(r, g.n_kv + 1), drop = qm_below(r, g.n_kv - at + 1);
            memmove(g.kv + at + count, g.kv + at + drop, (g.n_kv - at - drop) * sizeof *g.kv);
            memcpy(g.kv + at, fb.kv + from, count * sizeof *g.kv);
            g.n_kv = g.n_kv - drop + count;
            break;
        }
        case 2: /* b's llama.* / qwen2.* hyperparameters, a's shapes made to follow them */
            for (size_t i = 0; i < fb.n_kv; i++) {
                if (fb.kv[i].key_len < 6 || (memcmp(fb.kv[i].key, "llama.", 6) != 0 &&
                                             memcmp(fb.kv[i].key, "qwen2.", 6) != 0))
                    continue;
                char key[128];
                size_t n = fb.kv[i].key_len < sizeof key - 1 ? fb.kv[i].key_len : sizeof key - 1;
                memcpy(key, fb.kv[i].key, n);
                key[n] = '\0';
                gg_kv *kv = gg_find(&g, key);
                if (kv != NULL)
                    *kv = fb.kv[i];
                else
                    g.kv[g.n_kv++] = fb.kv[i];
            }
            if (qm_below(r, 4) != 0) {
                gg_cfg c;
                gg_read_cfg(&fb, &c);
                for (size_t i = 0; i < g.n_ti; i++)
                    gg_shape(&g.ti[i], &c);
            }
            break;
        default: /* one of b's tensors replaces a's of the same role, or is added */
            if (fb.n_ti) {
                const gg_ti *t = &fb.ti[qm_below(r, fb.n_ti)];
                size_t i = 0;
                while (i < g.n_ti && !(g.ti[i].name_len == t->name_len &&
                                       memcmp(g.ti[i].name, t->name, t->name_len) == 0))
                    i++;
                g.ti[i] = *t;
                if (i == g.n_ti)
                    g.n_ti++;
            }
            break;
        }
        if (gg_relayout(&pool, &g, max_out)) {
            qm_out o = {out, 0, max_out, 0};
            gg_write(&g, &o);
            ok = !o.overflow && !pool.failed;
            *out_len = o.len;
        }
    }
    qm_pool_free(&pool);
    return ok;
}

const qm_format qm_format_gguf = {"gguf", gg_mutate, gg_crossover};

/* For the unit test: 1 when this file's parser reads the whole structure (header, every
 * pair, every tensor info, padding) and every tensor with a known type has its bytes
 * inside the data section. */
int qm_gguf_well_framed(const uint8_t *in, size_t size)
{
    qm_pool pool = {0};
    gg_file f;
    int ok = gg_parse(&pool, in, size, &f);
    for (size_t i = 0; ok && i < f.n_ti; i++) {
        uint64_t bytes;
        if (gg_tensor_bytes(&f.ti[i], &bytes) &&
            (f.ti[i].offset > f.data_len || bytes > f.data_len - f.ti[i].offset))
            ok = 0;
    }
    qm_pool_free(&pool);
    return ok;
}

QM_ENGINE_ENTRY_POINTS(qm_format_gguf)
