/* Writers of the qorus-model tool; see model_io.h. */
#include "model_io.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- byte buffer */

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL) {
        fprintf(stderr, "qorus-model: out of memory\n");
        exit(1);
    }
    return q;
}

static size_t xmul(size_t a, size_t b)
{
    size_t r;
    if (__builtin_mul_overflow(a, b, &r)) {
        fprintf(stderr, "qorus-model: size overflow\n");
        exit(1);
    }
    return r;
}

void tb_put(tbuf *b, const void *data, size_t n)
{
    if (n > b->cap - b->n) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->n < n)
            cap = xmul(cap, 2);
        b->p = xrealloc(b->p, cap);
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->n, data, n);
    b->n += n;
}

void tb_u8(tbuf *b, uint8_t v) { tb_put(b, &v, 1); }

void tb_u32(tbuf *b, uint32_t v)
{
    unsigned char x[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    tb_put(b, x, 4);
}

void tb_i32(tbuf *b, int32_t v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    tb_u32(b, u);
}

void tb_u64(tbuf *b, uint64_t v)
{
    tb_u32(b, (uint32_t)v);
    tb_u32(b, (uint32_t)(v >> 32));
}

void tb_f32(tbuf *b, float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    tb_u32(b, u);
}

void tb_str(tbuf *b, const char *s)
{
    size_t n = strlen(s);
    tb_u64(b, n);
    tb_put(b, s, n);
}

void tb_poke_u32(tbuf *b, size_t at, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        b->p[at + (size_t)i] = (unsigned char)(v >> (8 * i));
}

void tb_poke_u64(tbuf *b, size_t at, uint64_t v)
{
    tb_poke_u32(b, at, (uint32_t)v);
    tb_poke_u32(b, at + 4, (uint32_t)(v >> 32));
}

void tb_free(tbuf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

int tb_save(const tbuf *b, const char *path)
{
    FILE *f = fopen(path, "wb");
    int ok;
    if (f == NULL)
        return -1;
    ok = b->n == 0 || fwrite(b->p, 1, b->n, f) == b->n;
    if (fclose(f) != 0)
        ok = 0;
    return ok ? 0 : -1;
}

int tb_load(tbuf *b, const char *path)
{
    FILE *f = fopen(path, "rb");
    unsigned char chunk[65536];
    size_t n;
    if (f == NULL)
        return -1;
    memset(b, 0, sizeof *b);
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        tb_put(b, chunk, n);
    if (ferror(f)) {
        fclose(f);
        tb_free(b);
        errno = EIO;
        return -1;
    }
    fclose(f);
    return 0;
}

/* ---------------------------------------------------------------- models */

static float *falloc(size_t a, size_t b, size_t c)
{
    return xrealloc(NULL, xmul(xmul(xmul(a, b), c), sizeof(float)));
}

void tm_alloc(tm_model *m, const q_config *c, int shared)
{
    size_t L = c->n_layers, d = c->dim, h = c->hidden_dim;
    size_t kv = c->n_kv_heads * (c->dim / c->n_heads);
    memset(m, 0, sizeof *m);
    m->cfg = *c;
    m->shared = shared;
    m->emb = falloc(c->vocab_size, d, 1);
    m->rms_att = falloc(L, d, 1);
    m->wq = falloc(L, d, d);
    m->wk = falloc(L, kv, d);
    m->wv = falloc(L, kv, d);
    m->wo = falloc(L, d, d);
    m->rms_ffn = falloc(L, d, 1);
    m->w1 = falloc(L, h, d);
    m->w2 = falloc(L, d, h);
    m->w3 = falloc(L, h, d);
    m->rms_final = falloc(d, 1, 1);
    m->wcls = shared ? NULL : falloc(c->vocab_size, d, 1);
}

void tm_free(tm_model *m)
{
    float *all[] = {m->emb, m->rms_att, m->wq,        m->wk,   m->wv, m->wo,
                    m->rms_ffn, m->w1, m->w2,        m->w3,   m->rms_final,
                    m->wcls,    m->bq, m->bk,        m->bv,   m->rope_factors};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
    memset(m, 0, sizeof *m);
}

/* xorshift64*: deterministic across platforms */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}

static float rng_uniform(uint64_t *s) /* [-1, 1) */
{
    return (float)(rng_next(s) >> 40) / 8388608.0f - 1.0f;
}

static void fill(float *p, size_t n, float base, float amp, uint64_t *s)
{
    for (size_t i = 0; i < n; i++)
        p[i] = base + amp * rng_uniform(s);
}

void tm_random(tm_model *m, const q_config *c, int shared, uint64_t seed)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 1;
    size_t L = c->n_layers, d = c->dim, h = c->hidden_dim;
    size_t kv = c->n_kv_heads * (c->dim / c->n_heads);
    float ad = 1.0f / sqrtf((float)d), ah = 1.0f / sqrtf((float)h);
    tm_alloc(m, c, shared);
    fill(m->emb, c->vocab_size * d, 0.0f, 1.0f, &s);
    fill(m->rms_att, L * d, 1.0f, 0.1f, &s);
    fill(m->wq, L * d * d, 0.0f, ad, &s);
    fill(m->wk, L * kv * d, 0.0f, ad, &s);
    fill(m->wv, L * kv * d, 0.0f, ad, &s);
    fill(m->wo, L * d * d, 0.0f, ad, &s);
    fill(m->rms_ffn, L * d, 1.0f, 0.1f, &s);
    fill(m->w1, L * h * d, 0.0f, ad, &s);
    fill(m->w2, L * d * h, 0.0f, ah, &s);
    fill(m->w3, L * h * d, 0.0f, ad, &s);
    fill(m->rms_final, d, 1.0f, 0.1f, &s);
    if (!shared)
        fill(m->wcls, c->vocab_size * d, 0.0f, ad, &s);
}

int tm_add_arch(tm_model *m, const char *arch, uint64_t seed)
{
    const q_config *c = &m->cfg;
    size_t L = c->n_layers, d = c->dim, hs = c->dim / c->n_heads, kv = c->n_kv_heads * hs;
    uint64_t s = seed * 0xD1B54A32D192ED03ULL + 7;
    if (strcmp(arch, "llama") == 0)
        return 0;
    if (strcmp(arch, "qwen2") == 0) {
        m->bq = falloc(L, d, 1);
        m->bk = falloc(L, kv, 1);
        m->bv = falloc(L, kv, 1);
        fill(m->bq, L * d, 0.0f, 0.5f, &s);
        fill(m->bk, L * kv, 0.0f, 0.5f, &s);
        fill(m->bv, L * kv, 0.0f, 0.5f, &s);
        return 0;
    }
    if (strcmp(arch, "llama3") == 0) {
        /* Llama 3.1's rule: wavelengths shorter than 8192 / 4 keep their frequency, longer
         * than 8192 / 1 are divided by 8, in between a smooth blend */
        const double factor = 8.0, low = 1.0, high = 4.0, orig = 8192.0, pi = 3.14159265358979;
        m->rope_factors = falloc(hs / 2, 1, 1);
        for (size_t j = 0; j < hs / 2; j++) {
            double freq = pow((double)c->rope_theta, -(double)(2 * j) / (double)hs);
            double wavelen = 2.0 * pi / freq, f;
            if (wavelen < orig / high) {
                f = 1.0;
            } else if (wavelen > orig / low) {
                f = factor;
            } else {
                double smooth = (orig / wavelen - low) / (high - low);
                f = 1.0 / ((1.0 - smooth) / factor + smooth);
            }
            m->rope_factors[j] = (float)f;
        }
        return 0;
    }
    return -1;
}

static q_error_code read_tensor(float *dst, const q_tensor *t)
{
    for (size_t r = 0; r < t->rows; r++) {
        q_error_code rc = q_tensor_read_row(t, r, dst + r * t->cols);
        if (rc != Q_OK)
            return rc;
    }
    return Q_OK;
}

q_error_code tm_from_model(tm_model *m, const q_model *qm)
{
    const q_config *c = &qm->config;
    size_t d = c->dim, h = c->hidden_dim, kv = c->n_kv_heads * (c->dim / c->n_heads);
    q_error_code rc = Q_OK;
    tm_alloc(m, c, qm->shared_classifier);
    rc = read_tensor(m->emb, &qm->token_embedding);
    for (size_t l = 0; rc == Q_OK && l < c->n_layers; l++) {
        const q_layer *y = &qm->layers[l];
        if (rc == Q_OK) rc = read_tensor(m->rms_att + l * d, &y->attn_norm);
        if (rc == Q_OK) rc = read_tensor(m->wq + l * d * d, &y->wq);
        if (rc == Q_OK) rc = read_tensor(m->wk + l * kv * d, &y->wk);
        if (rc == Q_OK) rc = read_tensor(m->wv + l * kv * d, &y->wv);
        if (rc == Q_OK) rc = read_tensor(m->wo + l * d * d, &y->wo);
        if (rc == Q_OK) rc = read_tensor(m->rms_ffn + l * d, &y->ffn_norm);
        if (rc == Q_OK) rc = read_tensor(m->w1 + l * h * d, &y->w1);
        if (rc == Q_OK) rc = read_tensor(m->w2 + l * d * h, &y->w2);
        if (rc == Q_OK) rc = read_tensor(m->w3 + l * h * d, &y->w3);
    }
    if (rc == Q_OK)
        rc = read_tensor(m->rms_final, &qm->final_norm);
    if (rc == Q_OK && !qm->shared_classifier)
        rc = read_tensor(m->wcls, &qm->classifier);
    /* biases (all or none: the writer writes the three of every layer) and rope factors */
    int biased = 1;
    for (size_t l = 0; l < c->n_layers; l++)
        biased &= qm->layers[l].bq.data != NULL && qm->layers[l].bk.data != NULL &&
                  qm->layers[l].bv.data != NULL;
    if (rc == Q_OK && biased) {
        m->bq = falloc(c->n_layers, d, 1);
        m->bk = falloc(c->n_layers, kv, 1);
        m->bv = falloc(c->n_layers, kv, 1);
        for (size_t l = 0; rc == Q_OK && l < c->n_layers; l++) {
            rc = read_tensor(m->bq + l * d, &qm->layers[l].bq);
            if (rc == Q_OK) rc = read_tensor(m->bk + l * kv, &qm->layers[l].bk);
            if (rc == Q_OK) rc = read_tensor(m->bv + l * kv, &qm->layers[l].bv);
        }
    }
    if (rc == Q_OK && qm->rope_factors.data != NULL) {
        m->rope_factors = falloc(qm->rope_factors.cols, 1, 1);
        rc = read_tensor(m->rope_factors, &qm->rope_factors);
    }
    if (rc != Q_OK)
        tm_free(m);
    return rc;
}

/* ---------------------------------------------------------------- llama2.c */

static void put_f32s(tbuf *b, const float *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        tb_f32(b, p[i]);
}

/* llama2.c export.py quantize_q80: symmetric int8 per group, scale = max|x| / 127 */
static void put_q8_split(tbuf *b, const float *p, size_t n, size_t gs)
{
    size_t groups = n / gs;
    float *scales = falloc(groups ? groups : 1, 1, 1);
    for (size_t g = 0; g < groups; g++) {
        float wmax = 0.0f, scale;
        for (size_t i = 0; i < gs; i++)
            wmax = fmaxf(wmax, fabsf(p[g * gs + i]));
        scale = wmax / 127.0f;
        scales[g] = scale;
        for (size_t i = 0; i < gs; i++) {
            float q = scale > 0.0f ? roundf(p[g * gs + i] / scale) : 0.0f;
            tb_u8(b, (uint8_t)(int8_t)fmaxf(-127.0f, fminf(127.0f, q)));
        }
    }
    put_f32s(b, scales, groups);
    free(scales);
}

void tm_write_llama2c(tbuf *b, const tm_model *m, int version, size_t gs)
{
    const q_config *c = &m->cfg;
    size_t L = c->n_layers, d = c->dim, h = c->hidden_dim, hs = d / c->n_heads;
    size_t kv = c->n_kv_heads * hs;
    int32_t cfg[7] = {(int32_t)d, (int32_t)h, (int32_t)L, (int32_t)c->n_heads,
                      (int32_t)c->n_kv_heads, (int32_t)c->vocab_size, (int32_t)c->seq_len};
    if (version == 0) {
        if (!m->shared)
            cfg[5] = -cfg[5];
        for (int i = 0; i < 7; i++)
            tb_i32(b, cfg[i]);
        put_f32s(b, m->emb, c->vocab_size * d);
        put_f32s(b, m->rms_att, L * d);
        put_f32s(b, m->wq, L * d * d);
        put_f32s(b, m->wk, L * kv * d);
        put_f32s(b, m->wv, L * kv * d);
        put_f32s(b, m->wo, L * d * d);
        put_f32s(b, m->rms_ffn, L * d);
        put_f32s(b, m->w1, L * h * d);
        put_f32s(b, m->w2, L * d * h);
        put_f32s(b, m->w3, L * h * d);
        put_f32s(b, m->rms_final, d);
        /* freq_cis (unused by readers): cos then sin of pos * 10000^(-2i/hs) */
        for (int part = 0; part < 2; part++)
            for (size_t pos = 0; pos < c->seq_len; pos++)
                for (size_t i = 0; i < hs / 2; i++) {
                    double a = (double)pos * pow(10000.0, -2.0 * (double)i / (double)hs);
                    tb_f32(b, (float)(part == 0 ? cos(a) : sin(a)));
                }
        if (!m->shared)
            put_f32s(b, m->wcls, c->vocab_size * d);
        return;
    }
    tb_u32(b, 0x616b3432u);
    tb_i32(b, version);
    for (int i = 0; i < 7; i++)
        tb_i32(b, cfg[i]);
    tb_u8(b, (uint8_t)(m->shared ? 1 : 0));
    if (version == 2)
        tb_i32(b, (int32_t)gs);
    while (b->n < 256)
        tb_u8(b, 0);
    put_f32s(b, m->rms_att, L * d);
    put_f32s(b, m->rms_ffn, L * d);
    put_f32s(b, m->rms_final, d);
    if (version == 1) {
        put_f32s(b, m->emb, c->vocab_size * d);
        put_f32s(b, m->wq, L * d * d);
        put_f32s(b, m->wk, L * kv * d);
        put_f32s(b, m->wv, L * kv * d);
        put_f32s(b, m->wo, L * d * d);
        put_f32s(b, m->w1, L * h * d);
        put_f32s(b, m->w2, L * d * h);
        put_f32s(b, m->w3, L * h * d);
        if (!m->shared)
            put_f32s(b, m->wcls, c->vocab_size * d);
        return;
    }
    put_q8_split(b, m->emb, c->vocab_size * d, gs);
    for (size_t l = 0; l < L; l++) put_q8_split(b, m->wq + l * d * d, d * d, gs);
    for (size_t l = 0; l < L; l++) put_q8_split(b, m->wk + l * kv * d, kv * d, gs);
    for (size_t l = 0; l < L; l++) put_q8_split(b, m->wv + l * kv * d, kv * d, gs);
    for (size_t l = 0; l < L; l++) put_q8_split(b, m->wo + l * d * d, d * d, gs);
    for (size_t l = 0; l < L; l++) put_q8_split(b, m->w1 + l * h * d, h * d, gs);
    for (size_t l = 0; l < L; l++) put_q8_split(b, m->w2 + l * d * h, d * h, gs);
    for (size_t l = 0; l < L; l++) put_q8_split(b, m->w3 + l * h * d, h * d, gs);
    if (!m->shared)
        put_q8_split(b, m->wcls, c->vocab_size * d, gs);
}

/* ---------------------------------------------------------------- tokenizers */

void tok_set_piece(tm_tok *t, size_t i, const char *piece, size_t len)
{
    free(t->pieces[i]);
    t->pieces[i] = xrealloc(NULL, len + 1);
    memcpy(t->pieces[i], piece, len);
    t->pieces[i][len] = '\0';
    t->lens[i] = len;
    if (len > t->max_len)
        t->max_len = len;
}

static void tok_alloc(tm_tok *t, size_t n)
{
    memset(t, 0, sizeof *t);
    t->n = n;
    t->pieces = xrealloc(NULL, xmul(n ? n : 1, sizeof(char *)));
    memset(t->pieces, 0, n * sizeof(char *));
    t->lens = xrealloc(NULL, xmul(n ? n : 1, sizeof(size_t)));
    t->scores = falloc(n ? n : 1, 1, 1);
    t->kind = Q_VOCAB_SPM;
    t->bos = 1;
    t->eos = 2;
    t->eot = -1;
    t->add_bos = -1;
}

void tok_set_type(tm_tok *t, size_t i, int32_t type)
{
    if (t->types == NULL) {
        t->types = xrealloc(NULL, xmul(t->n ? t->n : 1, sizeof(int32_t)));
        for (size_t k = 0; k < t->n; k++)
            t->types[k] = Q_TOKEN_TYPE_NORMAL;
    }
    t->types[i] = type;
}

size_t tok_add(tm_tok *t, const char *piece, size_t len)
{
    size_t i = t->n++;
    t->pieces = xrealloc(t->pieces, xmul(t->n, sizeof(char *)));
    t->pieces[i] = NULL;
    t->lens = xrealloc(t->lens, xmul(t->n, sizeof(size_t)));
    t->scores = xrealloc(t->scores, xmul(t->n, sizeof(float)));
    t->scores[i] = 0.0f;
    if (t->types != NULL) {
        t->types = xrealloc(t->types, xmul(t->n, sizeof(int32_t)));
        t->types[i] = Q_TOKEN_TYPE_NORMAL;
    }
    tok_set_piece(t, i, piece, len);
    return i;
}

void tok_set_merge(tm_tok *t, size_t i, const char *merge)
{
    size_t len = strlen(merge);
    free(t->merges[i]);
    t->merges[i] = xrealloc(NULL, len + 1);
    memcpy(t->merges[i], merge, len + 1);
    t->merge_lens[i] = len;
}

void tok_add_merge(tm_tok *t, const char *merge)
{
    size_t i = t->n_merges++;
    t->merges = xrealloc(t->merges, xmul(t->n_merges, sizeof(char *)));
    t->merges[i] = NULL;
    t->merge_lens = xrealloc(t->merge_lens, xmul(t->n_merges, sizeof(size_t)));
    tok_set_merge(t, i, merge);
}

/* GPT-2's byte-level alphabet, written from its definition (bytes_to_unicode): the bytes
 * printable in Latin-1 stand for themselves, the other 68 become U+0100.. in byte order. */
static size_t tok_byte_spell(unsigned b, char out[2])
{
    unsigned cp = b, k = 0;
    int printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    if (!printable) {
        for (unsigned x = 0; x < b; x++)
            if (!((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE))
                k++;
        cp = 0x100 + k;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

void tok_bpe_sample(tm_tok *t, const char *pre)
{
    /* rank order; each side and the result is a piece ("Ġ" is a space, "Ċ" a newline) */
    static const char *const merges[] = {
        "\xc4\xa0 t", "h e", "\xc4\xa0t he", "\xc4\xa0 a", "i n", "\xc4\xa0 s", "e r",
        "o n", "\xc4\xa0" "a n", "\xc4\xa0" "an d", "r e", "\xc4\xa0 o", "\xc4\xa0o f", "i s",
        "\xc4\xa0 is", "\xc4\xa0 w", "o r", "\xc4\xa0w or", "l d", "\xc4\xa0wor ld",
        "in g", "i t", "\xc4\xa0 it", "1 2", "3 4", "12 34", "0 0", "00 0",
        "\xc4\x8a \xc4\x8a", "\xc4\xa0 \xc4\xa0", "\xc4\xa0\xc4\xa0 \xc4\xa0\xc4\xa0",
        "h i", "\xc4\xa0t hi",
    };
    size_t n_m = sizeof merges / sizeof merges[0], id;
    tok_alloc(t, 0);
    t->kind = Q_VOCAB_BPE;
    snprintf(t->pre, sizeof t->pre, "%s", pre);
    for (unsigned b = 0; b < 256; b++) {
        char s[2];
        tok_add(t, s, tok_byte_spell(b, s));
    }
    for (size_t m = 0; m < n_m; m++) {
        char joined[64];
        const char *sp = strchr(merges[m], ' ');
        size_t nl = (size_t)(sp - merges[m]), nr = strlen(sp + 1);
        memcpy(joined, merges[m], nl);
        memcpy(joined + nl, sp + 1, nr);
        tok_add(t, joined, nl + nr);
        tok_add_merge(t, merges[m]);
    }
    tok_add(t, "xyz", 3);
    id = tok_add(t, "<|endoftext|>", 13);
    tok_set_type(t, id, Q_TOKEN_TYPE_CONTROL);
    t->bos = t->eos = t->eot = (int64_t)id;
    id = tok_add(t, "<tool>", 6);
    tok_set_type(t, id, Q_TOKEN_TYPE_USER_DEFINED);
    t->add_bos = 0;
}

void tok_random(tm_tok *t, size_t n, uint64_t seed)
{
    static const char *const special[3] = {"<unk>", "\n<s>\n", "\n</s>\n"};
    size_t i, k = 0;
    (void)seed; /* pieces are a deterministic enumeration; kept for symmetry */
    tok_alloc(t, n);
    for (i = 0; i < n; i++) {
        char buf[32];
        size_t len = 0;
        if (i < 3) {
            len = strlen(special[i]);
            memcpy(buf, special[i], len);
        } else if (n >= 259 && i < 259) {
            len = (size_t)snprintf(buf, sizeof buf, "<0x%02X>", (unsigned)(i - 3));
        } else {
            /* distinct pieces: optional leading space, then k/2 written in base 26 */
            size_t v = k / 2;
            if (k % 2 == 0)
                buf[len++] = ' ';
            do {
                buf[len++] = (char)('a' + v % 26);
                v /= 26;
            } while (v > 0 && len < sizeof buf - 1);
            k++;
        }
        tok_set_piece(t, i, buf, len);
        t->scores[i] = i < 259 ? 0.0f : -(float)(i - 259);
    }
}

void tok_from_q(tm_tok *t, const q_tokenizer *q)
{
    static const char *const pre_names[] = {"", "gpt-2", "llama-bpe", "qwen2"};
    tok_alloc(t, q->vocab_size);
    for (size_t i = 0; i < q->vocab_size; i++) {
        tok_set_piece(t, i, q->pieces[i], q->piece_lengths[i]);
        t->scores[i] = q->scores[i];
        if (q->scores[i] != 0.0f)
            t->has_scores = 1;
    }
    t->kind = q->kind;
    t->bos = q->bos_id;
    t->eos = q->eos_id;
    t->eot = q->eot_id == Q_TOKEN_NONE ? -1 : (int64_t)q->eot_id;
    t->add_bos = q->add_bos;
    if (q->kind != Q_VOCAB_BPE)
        return;
    if ((size_t)q->pretok < sizeof pre_names / sizeof pre_names[0])
        snprintf(t->pre, sizeof t->pre, "%s", pre_names[q->pretok]);
    if (q->token_types != NULL)
        for (size_t i = 0; i < q->vocab_size; i++)
            tok_set_type(t, i, q->token_types[i]);
    /* sized once: growing by one merge at a time copies the arrays every time (quadratic in
     * Llama 3's 280k merges; minutes under ASan, whose realloc always moves) */
    t->n_merges = q->n_merges;
    t->merges = xrealloc(NULL, xmul(q->n_merges ? q->n_merges : 1, sizeof(char *)));
    memset(t->merges, 0, q->n_merges * sizeof(char *));
    t->merge_lens = xrealloc(NULL, xmul(q->n_merges ? q->n_merges : 1, sizeof(size_t)));
    for (size_t m = 0; m < q->n_merges; m++) {
        uint32_t l = q->merges[3 * m], r = q->merges[3 * m + 1];
        size_t nl = q->piece_lengths[l], nr = q->piece_lengths[r];
        char *s = xrealloc(NULL, nl + nr + 2);
        memcpy(s, q->pieces[l], nl);
        s[nl] = ' ';
        memcpy(s + nl + 1, q->pieces[r], nr);
        s[nl + 1 + nr] = '\0';
        tok_set_merge(t, m, s);
        free(s);
    }
}

void tok_write(tbuf *b, const tm_tok *t)
{
    tb_i32(b, (int32_t)(t->max_len ? t->max_len : 1));
    for (size_t i = 0; i < t->n; i++) {
        tb_f32(b, t->scores[i]);
        tb_i32(b, (int32_t)t->lens[i]);
        tb_put(b, t->pieces[i], t->lens[i]);
    }
}

void tok_free(tm_tok *t)
{
    if (t->pieces)
        for (size_t i = 0; i < t->n; i++)
            free(t->pieces[i]);
    free(t->pieces);
    free(t->lens);
    free(t->scores);
    free(t->types);
    for (size_t m = 0; m < t->n_merges; m++)
        free(t->merges[m]);
    free(t->merges);
    free(t->merge_lens);
    memset(t, 0, sizeof *t);
}

/* ---------------------------------------------------------------- GGUF */

uint16_t tm_f32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) /* NaN stays NaN: quiet bit set */
        return (uint16_t)((x >> 16) | 0x40u);
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16); /* nearest, ties to even */
}

uint16_t tm_f32_to_f16(float f)
{
    uint32_t x, mant, half, rem;
    int exp;
    uint16_t sign;
    memcpy(&x, &f, 4);
    sign = (uint16_t)((x >> 16) & 0x8000u);
    mant = x & 0x7fffffu;
    exp = (int)((x >> 23) & 0xffu);
    if (exp == 255)
        return (uint16_t)(sign | 0x7c00u | (mant ? 0x200u : 0u));
    exp = exp - 127 + 15;
    if (exp >= 31)
        return (uint16_t)(sign | 0x7c00u);
    if (exp <= 0) {
        unsigned shift;
        if (exp < -10)
            return sign;
        mant |= 0x800000u;
        shift = (unsigned)(14 - exp);
        half = mant >> shift;
        rem = mant & ((1u << shift) - 1u);
        if (rem > (1u << (shift - 1)) || (rem == (1u << (shift - 1)) && (half & 1u)))
            half++;
        return (uint16_t)(sign | half);
    }
    half = ((uint32_t)exp << 10) | (mant >> 13);
    rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (half & 1u)))
        half++; /* may carry into the exponent: still correct */
    return (uint16_t)(sign | half);
}

enum { GT_U32 = 4, GT_I32 = 5, GT_F32 = 6, GT_BOOL = 7, GT_STRING = 8, GT_ARRAY = 9, GT_U64 = 10, GT_I64 = 11 };

typedef struct gg_tensor {
    char name[64];
    size_t rows, cols;
    int is_1d;
    uint32_t type;
    const float *data;
    uint64_t offset;
    size_t bytes;
} gg_tensor;

static size_t gg_bytes(uint32_t type, size_t rows, size_t cols)
{
    size_t n = xmul(rows, cols);
    if (type == Q_TENSOR_F16 || type == Q_TENSOR_BF16)
        return xmul(n, 2);
    if (type == Q_TENSOR_Q8_0)
        return xmul(n / 32, 34);
    if (type == Q_TENSOR_Q4_0)
        return xmul(n / 32, 18);
    if (type == Q_TENSOR_Q4_K)
        return xmul(n / 256, 144);
    if (type == Q_TENSOR_Q5_K)
        return xmul(n / 256, 176);
    if (type == Q_TENSOR_Q6_K)
        return xmul(n / 256, 210);
    return xmul(n, 4);
}

/* round(v) clamped to 0..hi; NaN gives 0 */
static unsigned gg_code(float v, unsigned hi)
{
    return (unsigned)lrintf(fminf(fmaxf(v, 0.0f), (float)hi));
}

/*
 * One Q4_K (nmax 15) or Q5_K (nmax 31) super-block of the 256 weights at x (a reference
 * quantizer, not ggml's search). Per 32-weight sub-block s: lo = min(0, min x), hi = max x,
 * ideal step scale_s = (hi - lo) / nmax and offset min_s = -lo >= 0; d = max scale_s / 63
 * and dmin = max min_s / 63, stored as f16 and used as stored; sc_s = round(scale_s / d),
 * m_s = round(min_s / dmin), both clamped to 0..63 (0 when d or dmin is 0); code =
 * round((x + dmin * m_s) / (d * sc_s)) clamped to 0..nmax, 0 where the step is 0.
 * Written as ggml's block_q4_K / block_q5_K: d, dmin, scales[12] (for j < 4: scales[j] =
 * sc_j | (sc_{j+4} >> 4) << 6, scales[j + 4] = m_j | (m_{j+4} >> 4) << 6, scales[j + 8] =
 * (sc_{j+4} & 15) | (m_{j+4} & 15) << 4), Q5_K's qh[32] (bit s of qh[l]: bit 4 of the code
 * of weight l of sub-block s), qs[128] (the low 4 code bits of weight l of sub-block s in
 * the low (s even) or high (s odd) nibble of qs[32 (s / 2) + l]).
 */
static void gg_k_block(tbuf *b, const float *x, unsigned nmax)
{
    unsigned char blk[176] = {0};
    size_t qs = nmax == 15 ? 16 : 48, bytes = nmax == 15 ? 144 : 176;
    float scale[8], minv[8], smax = 0.0f, mmax = 0.0f, d, dmin;
    unsigned sc[8], m[8];
    uint16_t hd, hm;
    for (size_t s = 0; s < 8; s++) {
        float lo = 0.0f, hi = x[32 * s];
        for (size_t l = 0; l < 32; l++) {
            lo = fminf(lo, x[32 * s + l]);
            hi = fmaxf(hi, x[32 * s + l]);
        }
        scale[s] = (hi - lo) / (float)nmax;
        minv[s] = -lo;
        smax = fmaxf(smax, scale[s]);
        mmax = fmaxf(mmax, minv[s]);
    }
    hd = tm_f32_to_f16(smax / 63.0f);
    hm = tm_f32_to_f16(mmax / 63.0f);
    d = q_f16_to_f32(hd);
    dmin = q_f16_to_f32(hm);
    for (size_t s = 0; s < 8; s++) {
        sc[s] = d > 0.0f ? gg_code(scale[s] / d, 63) : 0;
        m[s] = dmin > 0.0f ? gg_code(minv[s] / dmin, 63) : 0;
    }
    blk[0] = (uint8_t)hd;
    blk[1] = (uint8_t)(hd >> 8);
    blk[2] = (uint8_t)hm;
    blk[3] = (uint8_t)(hm >> 8);
    for (size_t j = 0; j < 4; j++) {
        blk[4 + j] = (uint8_t)(sc[j] | (sc[j + 4] >> 4) << 6);
        blk[8 + j] = (uint8_t)(m[j] | (m[j + 4] >> 4) << 6);
        blk[12 + j] = (uint8_t)((sc[j + 4] & 15u) | (m[j + 4] & 15u) << 4);
    }
    for (size_t s = 0; s < 8; s++) {
        float step = d * (float)sc[s], off = dmin * (float)m[s];
        for (size_t l = 0; l < 32; l++) {
            unsigned c = step > 0.0f ? gg_code((x[32 * s + l] + off) / step, nmax) : 0;
            blk[qs + 32 * (s / 2) + l] |= (uint8_t)((c & 15u) << (4 * (s % 2)));
            if (nmax == 31)
                blk[16 + l] |= (uint8_t)((c >> 4) << s);
        }
    }
    tb_put(b, blk, bytes);
}

static void gg_data(tbuf *b, const gg_tensor *t)
{
    size_t n = t->rows * t->cols;
    if (t->type == Q_TENSOR_F32) {
        put_f32s(b, t->data, n);
    } else if (t->type == Q_TENSOR_F16) {
        for (size_t i = 0; i < n; i++) {
            uint16_t h = tm_f32_to_f16(t->data[i]);
            tb_u8(b, (uint8_t)h);
            tb_u8(b, (uint8_t)(h >> 8));
        }
    } else if (t->type == Q_TENSOR_BF16) {
        for (size_t i = 0; i < n; i++) {
            uint16_t h = tm_f32_to_bf16(t->data[i]);
            tb_u8(b, (uint8_t)h);
            tb_u8(b, (uint8_t)(h >> 8));
        }
    } else if (t->type == Q_TENSOR_Q4_0) {
        /* per block of 32 (as ggml): d = (the value of largest magnitude) / -8, stored as
         * f16; code = floor(x / d + 8.5) clamped to 0..15 (the largest value maps to code
         * 0); byte j holds weight j's code in its low nibble and weight j + 16's in its
         * high one */
        for (size_t blk = 0; blk < n / 32; blk++) {
            const float *x = t->data + blk * 32;
            float big = 0.0f, d, id;
            uint8_t qs[16] = {0};
            uint16_t h;
            for (int i = 0; i < 32; i++)
                if (fabsf(x[i]) > fabsf(big))
                    big = x[i];
            d = big / -8.0f;
            h = tm_f32_to_f16(d);
            id = d != 0.0f ? 1.0f / d : 0.0f;
            tb_u8(b, (uint8_t)h);
            tb_u8(b, (uint8_t)(h >> 8));
            for (int i = 0; i < 32; i++) {
                float c = floorf(x[i] * id + 8.5f);
                uint8_t code = (uint8_t)(c < 0.0f ? 0.0f : c > 15.0f ? 15.0f : c);
                qs[i % 16] = (uint8_t)(qs[i % 16] | (i < 16 ? code : code << 4));
            }
            for (int i = 0; i < 16; i++)
                tb_u8(b, qs[i]);
        }
    } else if (t->type == Q_TENSOR_Q4_K || t->type == Q_TENSOR_Q5_K) {
        for (size_t sb = 0; sb < n / 256; sb++)
            gg_k_block(b, t->data + sb * 256, t->type == Q_TENSOR_Q4_K ? 15 : 31);
    } else if (t->type == Q_TENSOR_Q6_K) {
        /* per super-block of 256 (a reference quantizer, not ggml's search): each 16-weight
         * half-block's scale s = (its value of largest magnitude) / -32; d = max |s| / 127
         * (f16); int8 scales round(s / d); codes round(x / (d * scale)) + 32 clamped to
         * 0..63; written as ggml's block_q6_K: ql[128] (low 4 bits: weight 128h + 32q + l
         * in ql[64h + 32(q % 2) + l], low nibble for q < 2, high for q >= 2), qh[64] (high
         * 2 bits at bits 2q of qh[32h + l]), scales[16], d */
        for (size_t sb = 0; sb < n / 256; sb++) {
            const float *x = t->data + sb * 256;
            uint8_t blk[210] = {0};
            float sub[16], smax = 0.0f, d;
            uint16_t h;
            for (int i = 0; i < 16; i++) {
                float big = 0.0f;
                for (int j = 0; j < 16; j++)
                    if (fabsf(x[i * 16 + j]) > fabsf(big))
                        big = x[i * 16 + j];
                sub[i] = big / -32.0f;
                smax = fmaxf(smax, fabsf(sub[i]));
            }
            d = smax / 127.0f;
            h = tm_f32_to_f16(d);
            for (int i = 0; i < 16; i++) {
                long sc = d > 0.0f ? lrintf(sub[i] / d) : 0;
                blk[192 + i] = (uint8_t)(int8_t)(sc < -128 ? -128 : sc > 127 ? 127 : sc);
            }
            for (int j = 0; j < 256; j++) {
                float step = d * (float)(int8_t)blk[192 + j / 16];
                long c = step != 0.0f ? lrintf(x[j] / step) : 0;
                unsigned code = (unsigned)((c < -32 ? -32 : c > 31 ? 31 : c) + 32);
                int hh = j / 128, q = j % 128 / 32, l = j % 32;
                blk[64 * hh + 32 * (q % 2) + l] |= (uint8_t)(q < 2 ? code & 15u : (code & 15u) << 4);
                blk[128 + 32 * hh + l] |= (uint8_t)((code >> 4) << (2 * q));
            }
            blk[208] = (uint8_t)h;
            blk[209] = (uint8_t)(h >> 8);
            for (int i = 0; i < 210; i++)
                tb_u8(b, blk[i]);
        }
    } else {
        for (size_t blk = 0; blk < n / 32; blk++) {
            const float *x = t->data + blk * 32;
            float amax = 0.0f, d, id;
            uint16_t h;
            for (int i = 0; i < 32; i++)
                amax = fmaxf(amax, fabsf(x[i]));
            d = amax / 127.0f;
            id = d > 0.0f ? 1.0f / d : 0.0f;
            h = tm_f32_to_f16(d);
            tb_u8(b, (uint8_t)h);
            tb_u8(b, (uint8_t)(h >> 8));
            for (int i = 0; i < 32; i++)
                tb_u8(b, (uint8_t)(int8_t)fmaxf(-127.0f, fminf(127.0f, roundf(x[i] * id))));
        }
    }
}

typedef struct gg_kvs {
    tbuf b;
    uint64_t n;
    const gguf_opts *o;
} gg_kvs;

static int gg_skip(const gg_kvs *k, const char *key)
{
    return k->o->omit_key != NULL && strcmp(k->o->omit_key, key) == 0;
}

static void gg_key(gg_kvs *k, const char *key, uint32_t type)
{
    tb_str(&k->b, key);
    tb_u32(&k->b, type);
    k->n++;
}

static void gg_int(gg_kvs *k, const char *key, int64_t v)
{
    const gguf_opts *o = k->o;
    if (gg_skip(k, key))
        return;
    if (o->string_key != NULL && strcmp(o->string_key, key) == 0) {
        gg_key(k, key, GT_STRING);
        tb_str(&k->b, "42");
        return;
    }
    if (o->int_key != NULL && strcmp(o->int_key, key) == 0)
        v = o->int_value;
    if (v < 0) {
        gg_key(k, key, GT_I64);
        tb_u64(&k->b, (uint64_t)v);
    } else if (v > (int64_t)UINT32_MAX) {
        gg_key(k, key, GT_U64);
        tb_u64(&k->b, (uint64_t)v);
    } else {
        gg_key(k, key, GT_U32);
        tb_u32(&k->b, (uint32_t)v);
    }
}

static void gg_float(gg_kvs *k, const char *key, float v)
{
    if (gg_skip(k, key))
        return;
    if (k->o->float_key != NULL && strcmp(k->o->float_key, key) == 0)
        v = k->o->float_value;
    gg_key(k, key, GT_F32);
    tb_f32(&k->b, v);
}

static void gg_string(gg_kvs *k, const char *key, const char *v)
{
    if (gg_skip(k, key))
        return;
    gg_key(k, key, GT_STRING);
    tb_str(&k->b, v);
}

static void gg_tokenizer(gg_kvs *k, const tm_tok *t)
{
    const gguf_opts *o = k->o;
    int bpe = t->kind == Q_VOCAB_BPE;
    size_t n = t->n - (size_t)o->tokens_drop;
    uint32_t tt = o->tokens_gtype ? o->tokens_gtype : GT_STRING;
    uint32_t st = o->scores_gtype ? o->scores_gtype : GT_F32;
    uint32_t yt = o->types_gtype ? o->types_gtype : GT_I32;
    if (o->tok_model_gtype) {
        if (!gg_skip(k, "tokenizer.ggml.model")) {
            gg_key(k, "tokenizer.ggml.model", GT_U32);
            tb_u32(&k->b, 0);
        }
    } else {
        gg_string(k, "tokenizer.ggml.model", o->tok_model ? o->tok_model : bpe ? "gpt2" : "llama");
    }
    if (bpe && o->pre_gtype) {
        if (!gg_skip(k, "tokenizer.ggml.pre")) {
            gg_key(k, "tokenizer.ggml.pre", GT_U32);
            tb_u32(&k->b, 0);
        }
    } else if (bpe) {
        gg_string(k, "tokenizer.ggml.pre", t->pre);
    }
    if (!gg_skip(k, "tokenizer.ggml.tokens")) {
        gg_key(k, "tokenizer.ggml.tokens", GT_ARRAY);
        tb_u32(&k->b, tt);
        tb_u64(&k->b, n);
        for (size_t i = 0; i < n; i++) {
            if (tt != GT_STRING) {
                tb_u32(&k->b, (uint32_t)i);
                continue;
            }
            tb_u64(&k->b, (o->token_len_max && i == 5) ? UINT64_MAX : t->lens[i]);
            tb_put(&k->b, t->pieces[i], t->lens[i]);
        }
    }
    /* byte-level BPE vocabularies carry scores only when they have some */
    if (!gg_skip(k, "tokenizer.ggml.scores") && (!bpe || t->has_scores || o->scores_gtype ||
                                                  o->scores_drop)) {
        n = t->n - (size_t)o->scores_drop;
        gg_key(k, "tokenizer.ggml.scores", GT_ARRAY);
        tb_u32(&k->b, st);
        tb_u64(&k->b, n);
        for (size_t i = 0; i < n; i++) {
            if (st == GT_F32)
                tb_f32(&k->b, t->scores[i]);
            else
                tb_i32(&k->b, (int32_t)t->scores[i]);
        }
    }
    if (!gg_skip(k, "tokenizer.ggml.token_type") &&
        (!bpe || t->types != NULL || o->types_gtype || o->set_type)) {
        gg_key(k, "tokenizer.ggml.token_type", GT_ARRAY);
        tb_u32(&k->b, yt);
        tb_u64(&k->b, t->n);
        for (size_t i = 0; i < t->n; i++) {
            int32_t ty;
            if (t->types != NULL)
                ty = t->types[i];
            else if (bpe)
                ty = Q_TOKEN_TYPE_NORMAL;
            else
                ty = i < 3 ? (i == 0 ? 2 : 3) : (t->lens[i] == 6 && t->pieces[i][0] == '<') ? 6 : 1;
            if (o->set_type && i == o->type_index)
                ty = o->type_value;
            if (yt == GT_I32)
                tb_i32(&k->b, ty);
            else
                tb_f32(&k->b, (float)ty);
        }
    }
    if (bpe && !gg_skip(k, "tokenizer.ggml.merges")) {
        gg_key(k, "tokenizer.ggml.merges", GT_ARRAY);
        tb_u32(&k->b, o->merges_gtype ? o->merges_gtype : GT_STRING);
        tb_u64(&k->b, t->n_merges);
        for (size_t m = 0; m < t->n_merges; m++) {
            if (o->merges_gtype) {
                tb_u32(&k->b, (uint32_t)m);
                continue;
            }
            tb_u64(&k->b, t->merge_lens[m]);
            tb_put(&k->b, t->merges[m], t->merge_lens[m]);
        }
    }
    gg_int(k, "tokenizer.ggml.bos_token_id", o->set_bos ? o->bos : t->bos);
    gg_int(k, "tokenizer.ggml.eos_token_id", o->set_eos ? o->eos : t->eos);
    if (o->set_eot || t->eot >= 0)
        gg_int(k, "tokenizer.ggml.eot_token_id", o->set_eot ? o->eot : t->eot);
    /* add_bos_token: written for BPE when known, for SentencePiece only when not the default */
    if (!gg_skip(k, "tokenizer.ggml.add_bos_token") &&
        (o->add_bos_gtype || (bpe ? t->add_bos >= 0 : t->add_bos == 0))) {
        if (o->add_bos_gtype) { /* an integer type: 1, 2, 4 or 8 bytes */
            uint32_t g = o->add_bos_gtype;
            gg_key(k, "tokenizer.ggml.add_bos_token", g);
            if (g <= 1) {
                tb_u8(&k->b, t->add_bos > 0);
            } else if (g <= 3) {
                tb_u8(&k->b, t->add_bos > 0);
                tb_u8(&k->b, 0);
            } else if (g <= 6) {
                tb_u32(&k->b, t->add_bos > 0);
            } else {
                tb_u64(&k->b, t->add_bos > 0);
            }
        } else {
            gg_key(k, "tokenizer.ggml.add_bos_token", GT_BOOL);
            tb_u8(&k->b, t->add_bos > 0);
        }
    }
}

/* llama.cpp's use_more_bits: the layers whose attn_v and ffn_down Q4_K_M keeps in Q6_K */
static int gg_more_bits(size_t i, size_t n)
{
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

/* The type of matrix `name` (layer `i` of `n` for blk.* tensors) under o's recipe */
static uint32_t gg_matrix_type(const gguf_opts *o, const char *name, size_t i, size_t n,
                               int shared)
{
    if (o->typed != NULL && strcmp(o->typed, name) == 0)
        return o->typed_type;
    if (o->recipe != GG_RECIPE_Q4_K_M)
        return o->mat_type;
    /* the classifier; a shared one is token_embd.weight (as llama.cpp does without an
     * output.weight) */
    if (strcmp(name, "output.weight") == 0 || (shared && strcmp(name, "token_embd.weight") == 0))
        return Q_TENSOR_Q6_K;
    if (strncmp(name, "blk.", 4) == 0 && gg_more_bits(i, n)) {
        const char *role = strchr(name + 4, '.');
        if (role != NULL && (strcmp(role, ".attn_v.weight") == 0 ||
                             strcmp(role, ".ffn_down.weight") == 0))
            return Q_TENSOR_Q6_K;
    }
    return Q_TENSOR_Q4_K;
}

void tm_write_gguf(tbuf *b, const tm_model *m, const tm_tok *t, const gguf_opts *o)
{
    const q_config *c = &m->cfg;
    size_t L = c->n_layers, d = c->dim, h = c->hidden_dim, hs = d / c->n_heads;
    size_t kv = c->n_kv_heads * hs, nt = 0, i, align;
    gg_kvs k;
    tbuf info = {0};
    gg_tensor *ts = xrealloc(NULL, xmul(4 + 12 * L, sizeof(gg_tensor)));
    uint64_t off = 0, n_infos = 0;

    align = o->alignment;
    if (align == 0 || (align & (align - 1)) != 0 || align > 65536 || o->alignment_gtype)
        align = 32;

    /* metadata */
    memset(&k, 0, sizeof k);
    k.o = o;
    if (o->arch == NULL)
        gg_string(&k, "general.architecture", c->arch == Q_ARCH_QWEN2 ? "qwen2" : "llama");
    else if (o->arch[0] != '\0')
        gg_string(&k, "general.architecture", o->arch);
    if (o->alignment) {
        if (o->alignment_gtype == GT_U64) {
            gg_key(&k, "general.alignment", GT_U64);
            tb_u64(&k.b, o->alignment);
        } else {
            gg_key(&k, "general.alignment", GT_U32);
            tb_u32(&k.b, o->alignment);
        }
    }
    gg_string(&k, "general.name", "qorus-model");
    /* the architecture's keys: "<arch>.context_length" and so on */
    const char *ap = c->arch == Q_ARCH_QWEN2 ? "qwen2" : "llama";
    char key[96];
#define AKEY(name) (snprintf(key, sizeof key, "%s.%s", ap, (name)), key)
    gg_int(&k, AKEY("context_length"), (int64_t)c->seq_len);
    gg_int(&k, AKEY("embedding_length"), (int64_t)d);
    gg_int(&k, AKEY("feed_forward_length"), (int64_t)h);
    gg_int(&k, AKEY("block_count"), (int64_t)L);
    if (o->dup_key)
        gg_int(&k, AKEY("block_count"), (int64_t)L);
    gg_int(&k, AKEY("attention.head_count"), (int64_t)c->n_heads);
    gg_int(&k, AKEY("attention.head_count_kv"), (int64_t)c->n_kv_heads);
    gg_int(&k, AKEY("rope.dimension_count"), (int64_t)hs);
    gg_float(&k, AKEY("rope.freq_base"), c->rope_theta > 0 ? c->rope_theta : 10000.0f);
    gg_float(&k, AKEY("attention.layer_norm_rms_epsilon"), c->norm_eps > 0 ? c->norm_eps : 1e-5f);
    if (c->rope_linear_factor != 0.0f && c->rope_linear_factor != 1.0f) {
        gg_string(&k, AKEY("rope.scaling.type"), "linear");
        gg_float(&k, AKEY("rope.scaling.factor"), c->rope_linear_factor);
    }
#undef AKEY
    if (o->extra_str_key != NULL)
        gg_string(&k, o->extra_str_key, o->extra_str_value);
    if (o->extra_int_key != NULL) {
        gg_key(&k, o->extra_int_key, GT_U32);
        tb_u32(&k.b, o->extra_int_value);
    }
    if (o->bad_value_type) {
        gg_key(&k, "qorus.bad_type", 13);
        tb_u32(&k.b, 0);
    }
    if (o->nested_array) {
        gg_key(&k, "qorus.nested", GT_ARRAY);
        tb_u32(&k.b, GT_ARRAY);
        tb_u64(&k.b, 1);
        tb_u32(&k.b, GT_U32);
        tb_u64(&k.b, 0);
    }
    if (o->huge_array) {
        gg_key(&k, "qorus.huge", GT_ARRAY);
        tb_u32(&k.b, GT_U32);
        tb_u64(&k.b, (uint64_t)1 << 62);
    }
    if (!o->no_tokenizer)
        gg_tokenizer(&k, t);

    /* tensors, in llama.cpp's order */
#define ADD(nm_fmt, idx, r, cl, one_d, ptr)                                                 \
    do {                                                                                    \
        gg_tensor *x = &ts[nt++];                                                           \
        snprintf(x->name, sizeof x->name, nm_fmt, idx);                                     \
        x->rows = (r); x->cols = (cl); x->is_1d = (one_d); x->data = (ptr);                 \
        x->type = (one_d) ? (uint32_t)Q_TENSOR_F32 : gg_matrix_type(o, x->name, idx, L, m->shared); \
    } while (0)
    /* "%.0zu" of 0 prints nothing: names without a block index */
    ADD("token_embd.weight%.0zu", (size_t)0, c->vocab_size, d, 0, m->emb);
    ADD("output_norm.weight%.0zu", (size_t)0, (size_t)1, d, 1, m->rms_final);
    if (!m->shared)
        ADD("output.weight%.0zu", (size_t)0, c->vocab_size, d, 0, m->wcls);
    if (m->rope_factors != NULL)
        ADD("rope_freqs.weight%.0zu", (size_t)0, (size_t)1, hs / 2, 1, m->rope_factors);
    for (i = 0; i < L; i++) {
        ADD("blk.%zu.attn_norm.weight", i, (size_t)1, d, 1, m->rms_att + i * d);
        ADD("blk.%zu.attn_q.weight", i, d, d, 0, m->wq + i * d * d);
        if (m->bq != NULL)
            ADD("blk.%zu.attn_q.bias", i, (size_t)1, d, 1, m->bq + i * d);
        ADD("blk.%zu.attn_k.weight", i, kv, d, 0, m->wk + i * kv * d);
        if (m->bk != NULL)
            ADD("blk.%zu.attn_k.bias", i, (size_t)1, kv, 1, m->bk + i * kv);
        ADD("blk.%zu.attn_v.weight", i, kv, d, 0, m->wv + i * kv * d);
        if (m->bv != NULL)
            ADD("blk.%zu.attn_v.bias", i, (size_t)1, kv, 1, m->bv + i * kv);
        ADD("blk.%zu.attn_output.weight", i, d, d, 0, m->wo + i * d * d);
        ADD("blk.%zu.ffn_norm.weight", i, (size_t)1, d, 1, m->rms_ffn + i * d);
        ADD("blk.%zu.ffn_gate.weight", i, h, d, 0, m->w1 + i * h * d);
        ADD("blk.%zu.ffn_down.weight", i, d, h, 0, m->w2 + i * d * h);
        ADD("blk.%zu.ffn_up.weight", i, h, d, 0, m->w3 + i * h * d);
    }
#undef ADD
    if (o->vocab_only)
        nt = 0;
    for (i = 0; i < nt; i++) {
        ts[i].bytes = gg_bytes(ts[i].type, ts[i].rows, ts[i].cols);
        ts[i].offset = off;
        off += (ts[i].bytes + align - 1) & ~(uint64_t)(align - 1);
    }
    for (i = 0; i < nt; i++) {
        const gg_tensor *x = &ts[i];
        int hit = o->tensor != NULL && strcmp(o->tensor, x->name) == 0;
        uint32_t nd = x->is_1d ? 1 : 2, type = x->type;
        uint64_t ne[4] = {x->cols, x->rows, 1, 1}, offset = x->offset;
        int reps = (o->dup_tensor && strcmp(x->name, "output_norm.weight") == 0) ? 2 : 1;
        if (o->omit_tensor != NULL && strcmp(o->omit_tensor, x->name) == 0)
            continue;
        if (hit) {
            if (o->t_n_dims)
                nd = o->t_n_dims == UINT32_MAX ? 0 : o->t_n_dims;
            if (o->t_set_ne)
                memcpy(ne, o->t_ne, sizeof ne);
            if (o->t_set_type)
                type = o->t_type;
            if (o->t_set_offset)
                offset = o->t_offset;
            if (o->t_offset_add)
                offset += 4;
        }
        for (int r = 0; r < reps; r++) {
            tb_str(&info, x->name);
            tb_u32(&info, nd);
            for (uint32_t j = 0; j < nd; j++)
                tb_u64(&info, j < 4 ? ne[j] : 1);
            tb_u32(&info, type);
            tb_u64(&info, offset);
            n_infos++;
        }
    }
    if (o->big_tensors) {
        for (int r = 0; r < 2; r++) {
            tb_str(&info, r == 0 ? "qorus.big.a" : "qorus.big.b");
            tb_u32(&info, 3);
            tb_u64(&info, (uint64_t)1 << 30);
            tb_u64(&info, (uint64_t)1 << 30);
            tb_u64(&info, 2);
            tb_u32(&info, Q_TENSOR_F32);
            tb_u64(&info, 0);
            n_infos++;
        }
    }

    /* file */
    tb_u32(b, 0x46554747u);
    tb_u32(b, o->version);
    tb_u64(b, o->set_n_tensors ? o->n_tensors : n_infos);
    tb_u64(b, o->set_n_kv ? o->n_kv : k.n);
    {
        size_t kv_at = b->n;
        tb_put(b, k.b.p, k.b.n);
        if (o->first_key_len_max)
            tb_poke_u64(b, kv_at, UINT64_MAX);
        if (o->first_key_len_past)
            tb_poke_u64(b, kv_at, (uint64_t)1 << 40);
    }
    tb_put(b, info.p, info.n);
    while (b->n % align != 0)
        tb_u8(b, 0);
    for (i = 0; i < nt; i++) {
        size_t start = b->n;
        gg_data(b, &ts[i]);
        (void)start;
        while (b->n % align != 0)
            tb_u8(b, 0);
    }
    tb_free(&k.b);
    tb_free(&info);
    free(ts);
}
