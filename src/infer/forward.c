/*
 * The forward pass of a llama-family transformer, as llama2.c run.c's forward():
 * RMSNorm, RoPE on interleaved pairs, grouped-query attention over the KV cache, SwiGLU
 * feed-forward, final RMSNorm and the classifier.
 *
 * Memory of one q_state in its q_context:
 *   KV cache (q_alloc_kv_cache): key_cache then value_cache, each (n_layers, seq_len,
 *     kv_dim) float32; kv_bytes = n_layers * seq_len * kv_dim * 2 * 4, overflow-checked.
 *   Arena (q_alloc_arena):
 *     | logits (vocab_size) | <- base (q_arena_set_base)
 *     | per token: x, xb, xb2, q (dim), hb, hb2 (hidden_dim), att (seq_len), w (dim),
 *       rope_cos, rope_sin (head_size / 2) |
 *     The per-token part is allocated at the start of q_forward and released by
 *     q_arena_reset at its end; the sampler's top-p scratch (vocab_size pairs) reuses it.
 */
#include "qorus_infer.h"

#include <math.h>
#include <string.h>

#include "core/checked.h"
#include "core/os.h"

/* ---- validation ---- */

static q_error_code check_config(const q_config *c)
{
    if (c->dim == 0 || c->dim > Q_MAX_DIM || c->hidden_dim == 0 ||
        c->hidden_dim > Q_MAX_HIDDEN_DIM || c->n_layers == 0 || c->n_layers > Q_MAX_LAYERS ||
        c->n_heads == 0 || c->n_heads > Q_MAX_HEADS || c->n_kv_heads == 0 ||
        c->n_kv_heads > c->n_heads || c->vocab_size == 0 || c->vocab_size > Q_MAX_VOCAB ||
        c->seq_len == 0 || c->seq_len > Q_MAX_SEQ_LEN)
        return Q_ERR_INVALID_CONFIG;
    if (c->dim % c->n_heads != 0 || (c->dim / c->n_heads) % 2 != 0 ||
        c->n_heads % c->n_kv_heads != 0)
        return Q_ERR_INVALID_CONFIG;
    if (!(c->rope_theta > 0.0f) || !isfinite(c->rope_theta) || !(c->norm_eps >= 0.0f) ||
        !isfinite(c->norm_eps))
        return Q_ERR_INVALID_CONFIG;
    return Q_OK;
}

static q_error_code check_tensor(const q_tensor *t, size_t rows, size_t cols)
{
    q_error_code err = q_tensor_check(t);
    if (err != Q_OK)
        return err;
    if (t->rows != rows || t->cols != cols)
        return Q_ERR_BAD_SHAPE;
    return Q_OK;
}

/* A 1-D norm weight may come as (1, n) or (n, 1). */
static q_error_code check_vector(const q_tensor *t, size_t n)
{
    q_error_code err = q_tensor_check(t);
    if (err != Q_OK)
        return err;
    if (!((t->rows == 1 && t->cols == n) || (t->rows == n && t->cols == 1)))
        return Q_ERR_BAD_SHAPE;
    return Q_OK;
}

static q_error_code check_model(const q_model *m)
{
    const q_config *c = &m->config;
    q_error_code err = check_config(c);
    if (err != Q_OK)
        return err;
    size_t head_size = c->dim / c->n_heads;
    size_t kv_dim = c->n_kv_heads * head_size;
    if (m->layers == NULL)
        return Q_ERR_BAD_SHAPE;
    if ((err = check_tensor(&m->token_embedding, c->vocab_size, c->dim)) != Q_OK ||
        (err = check_vector(&m->final_norm, c->dim)) != Q_OK ||
        (err = check_tensor(&m->classifier, c->vocab_size, c->dim)) != Q_OK)
        return err;
    for (size_t l = 0; l < c->n_layers; l++) {
        const q_layer *L = &m->layers[l];
        if ((err = check_vector(&L->attn_norm, c->dim)) != Q_OK ||
            (err = check_tensor(&L->wq, c->dim, c->dim)) != Q_OK ||
            (err = check_tensor(&L->wk, kv_dim, c->dim)) != Q_OK ||
            (err = check_tensor(&L->wv, kv_dim, c->dim)) != Q_OK ||
            (err = check_tensor(&L->wo, c->dim, c->dim)) != Q_OK ||
            (err = check_vector(&L->ffn_norm, c->dim)) != Q_OK ||
            (err = check_tensor(&L->w1, c->hidden_dim, c->dim)) != Q_OK ||
            (err = check_tensor(&L->w2, c->dim, c->hidden_dim)) != Q_OK ||
            (err = check_tensor(&L->w3, c->hidden_dim, c->dim)) != Q_OK)
            return err;
    }
    return Q_OK;
}

/* ---- arena budget ---- */

/* Adds `count` floats, rounded up to Q_ALIGN as the arena rounds them, to *total. */
static int add_floats(size_t *total, size_t count)
{
    size_t bytes;
    return q_mul_size(count, sizeof(float), &bytes) && q_align_up(bytes, Q_ALIGN, &bytes) &&
           q_add_size(*total, bytes, total);
}

/* Bytes of one token's activations (the allocations of q_forward, in its order). */
static int per_token_bytes(const q_config *c, size_t *out)
{
    size_t t = 0;
    size_t half_head = c->dim / c->n_heads / 2;
    int ok = add_floats(&t, c->dim) && add_floats(&t, c->dim) && add_floats(&t, c->dim) &&
             add_floats(&t, c->dim) && add_floats(&t, c->hidden_dim) &&
             add_floats(&t, c->hidden_dim) && add_floats(&t, c->seq_len) &&
             add_floats(&t, c->dim) && add_floats(&t, half_head) && add_floats(&t, half_head);
    *out = t;
    return ok;
}

/* Bytes of the sampler's top-p scratch: vocab_size (prob, index) pairs of 8 bytes. */
static int sampler_bytes(const q_config *c, size_t *out)
{
    return q_mul_size(c->vocab_size, 8, out) && q_align_up(*out, Q_ALIGN, out);
}

/* ---- state ---- */

q_error_code q_state_init(q_state *st, q_context *ctx, const q_model *model)
{
    if (st == NULL)
        return Q_ERR_INVALID_ARG;
    memset(st, 0, sizeof *st);
    if (ctx == NULL || model == NULL)
        return Q_ERR_INVALID_ARG;
    q_error_code err = check_model(model);
    if (err != Q_OK)
        return err;
    if (ctx->kv_buffer != NULL || ctx->scratch_buffer != NULL)
        return Q_ERR_INVALID_STATE;
    const q_config *c = &model->config;
    size_t head_size = c->dim / c->n_heads;
    size_t kv_dim = c->n_kv_heads * head_size;

    size_t cache_floats, kv_bytes; /* one of key/value: (n_layers, seq_len, kv_dim) */
    if (!q_mul_size(c->n_layers, c->seq_len, &cache_floats) ||
        !q_mul_size(cache_floats, kv_dim, &cache_floats) ||
        !q_mul_size(cache_floats, 2 * sizeof(float), &kv_bytes))
        return Q_ERR_OVERFLOW;

    size_t arena = 0, fwd, smp;
    if (!add_floats(&arena, c->vocab_size) || !per_token_bytes(c, &fwd) ||
        !sampler_bytes(c, &smp) || !q_add_size(arena, fwd > smp ? fwd : smp, &arena))
        return Q_ERR_OVERFLOW;

    if ((err = q_alloc_kv_cache(ctx, kv_bytes)) != Q_OK)
        return err;
    if ((err = q_alloc_arena(ctx, arena)) != Q_OK) {
        q_free_kv_cache(ctx);
        return err;
    }
    float *logits = q_arena_alloc(ctx, c->vocab_size * sizeof(float)); /* (vocab_size) */
    if (logits == NULL || (err = q_arena_set_base(ctx)) != Q_OK) {
        q_free_arena(ctx);
        q_free_kv_cache(ctx);
        return logits == NULL ? Q_ERR_ARENA_OOM : err;
    }
    memset(logits, 0, c->vocab_size * sizeof(float));

    st->model = model;
    st->ctx = ctx;
    st->head_size = head_size;
    st->kv_dim = kv_dim;
    st->key_cache = (float *)ctx->kv_buffer;
    st->value_cache = st->key_cache + cache_floats;
    st->logits = logits;
    st->kv_bytes = kv_bytes;
    st->arena_bytes = arena;
    st->arena_high_water = q_arena_used(ctx);
    return Q_OK;
}

void q_state_free(q_state *st)
{
    if (st == NULL)
        return;
    if (st->ctx != NULL) {
        q_free_arena(st->ctx);
        q_free_kv_cache(st->ctx);
    }
    memset(st, 0, sizeof *st);
}

/* ---- forward ---- */

/* Dequantizes a norm weight (dim values, any layout check_vector accepts) into w. */
static void load_vector(float *w, const q_tensor *t)
{
    if (t->rows == 1) {
        q_tensor_row(w, t, 0);
    } else {
        for (size_t i = 0; i < t->rows; i++)
            q_tensor_row(w + i, t, i);
    }
}

q_error_code q_forward(q_state *st, uint32_t token, size_t pos, float **logits)
{
    if (st == NULL || st->model == NULL || st->ctx == NULL)
        return Q_ERR_INVALID_ARG;
    const q_model *m = st->model;
    const q_config *p = &m->config;
    q_context *ctx = st->ctx;
    if (token >= p->vocab_size)
        return Q_ERR_BAD_TOKEN;
    if (pos >= p->seq_len)
        return Q_ERR_INVALID_CONFIG;

    size_t dim = p->dim, hidden_dim = p->hidden_dim, head_size = st->head_size;
    size_t kv_dim = st->kv_dim, kv_mul = p->n_heads / p->n_kv_heads;

    float *x = q_arena_alloc(ctx, dim * sizeof(float));          /* (dim) residual stream */
    float *xb = q_arena_alloc(ctx, dim * sizeof(float));         /* (dim) normed / attn out */
    float *xb2 = q_arena_alloc(ctx, dim * sizeof(float));        /* (dim) projection out */
    float *q = q_arena_alloc(ctx, dim * sizeof(float));          /* (n_heads * head_size) */
    float *hb = q_arena_alloc(ctx, hidden_dim * sizeof(float));  /* (hidden_dim) gate */
    float *hb2 = q_arena_alloc(ctx, hidden_dim * sizeof(float)); /* (hidden_dim) up */
    float *att = q_arena_alloc(ctx, p->seq_len * sizeof(float)); /* (seq_len) one head */
    float *w = q_arena_alloc(ctx, dim * sizeof(float));          /* (dim) a norm weight */
    float *rope_cos = q_arena_alloc(ctx, head_size / 2 * sizeof(float)); /* (head_size/2) */
    float *rope_sin = q_arena_alloc(ctx, head_size / 2 * sizeof(float)); /* (head_size/2) */
    if (x == NULL || xb == NULL || xb2 == NULL || q == NULL || hb == NULL || hb2 == NULL ||
        att == NULL || w == NULL || rope_cos == NULL || rope_sin == NULL) {
        q_arena_reset(ctx);
        return Q_ERR_ARENA_OOM;
    }
    size_t used = q_arena_used(ctx);
    if (used > st->arena_high_water)
        st->arena_high_water = used;

    q_tensor_row(x, &m->token_embedding, token);

    /* RoPE rotation of pair j of a head at this position, the same for every layer:
     * angle pos / theta^(2j / head_size), computed with run.c's float expressions. */
    for (size_t j = 0; j < head_size / 2; j++) {
        float freq = 1.0f / powf(p->rope_theta, (float)(2 * j) / (float)head_size);
        float val = (float)pos * freq;
        rope_cos[j] = cosf(val);
        rope_sin[j] = sinf(val);
    }

    float sqrt_head_size = sqrtf((float)head_size); /* scores are divided by it, as run.c */
    for (size_t l = 0; l < p->n_layers; l++) {
        const q_layer *L = &m->layers[l];
        load_vector(w, &L->attn_norm);
        q_rmsnorm(xb, x, w, dim, p->norm_eps);

        size_t loff = l * p->seq_len * kv_dim; /* this layer's cache: (seq_len, kv_dim) */
        float *k = st->key_cache + loff + pos * kv_dim;   /* (kv_dim) this position */
        float *v = st->value_cache + loff + pos * kv_dim; /* (kv_dim) this position */
        q_matvec(q, &L->wq, xb, dim);
        q_matvec(k, &L->wk, xb, dim);
        q_matvec(v, &L->wv, xb, dim);

        /* RoPE: rotate each (even, odd) pair of every head of q and k */
        for (size_t i = 0; i < dim; i += 2) {
            size_t pair = (i % head_size) / 2;
            float fcr = rope_cos[pair];
            float fci = rope_sin[pair];
            size_t rotn = i < kv_dim ? 2 : 1; /* k has only kv_dim values */
            for (size_t r = 0; r < rotn; r++) {
                float *vec = r == 0 ? q : k;
                float v0 = vec[i];
                float v1 = vec[i + 1];
                vec[i] = v0 * fcr - v1 * fci;
                vec[i + 1] = v0 * fci + v1 * fcr;
            }
        }

        /* attention: each query head h reads kv head h / kv_mul at positions 0..pos */
        for (size_t h = 0; h < p->n_heads; h++) {
            const float *qh = q + h * head_size;     /* (head_size) */
            size_t kv_off = (h / kv_mul) * head_size;
            for (size_t t = 0; t <= pos; t++) {
                const float *kt = st->key_cache + loff + t * kv_dim + kv_off; /* (head_size) */
                float score = 0.0f;
                for (size_t i = 0; i < head_size; i++)
                    score += qh[i] * kt[i];
                att[t] = score / sqrt_head_size;
            }
            q_softmax(att, pos + 1);
            float *xh = xb + h * head_size; /* (head_size) */
            memset(xh, 0, head_size * sizeof(float));
            for (size_t t = 0; t <= pos; t++) {
                const float *vt = st->value_cache + loff + t * kv_dim + kv_off; /* (head_size) */
                float a = att[t];
                for (size_t i = 0; i < head_size; i++)
                    xh[i] += a * vt[i];
            }
        }
        q_matvec(xb2, &L->wo, xb, dim);
        for (size_t i = 0; i < dim; i++)
            x[i] += xb2[i];

        /* SwiGLU feed-forward: w2(silu(w1 x) * w3 x) */
        load_vector(w, &L->ffn_norm);
        q_rmsnorm(xb, x, w, dim, p->norm_eps);
        q_matvec(hb, &L->w1, xb, dim);
        q_matvec(hb2, &L->w3, xb, dim);
        for (size_t i = 0; i < hidden_dim; i++) {
            float val = hb[i];
            val *= (1.0f / (1.0f + expf(-val)));
            val *= hb2[i];
            hb[i] = val;
        }
        q_matvec(xb, &L->w2, hb, hidden_dim);
        for (size_t i = 0; i < dim; i++)
            x[i] += xb[i];
    }

    load_vector(w, &m->final_norm);
    q_rmsnorm(x, x, w, dim, p->norm_eps);
    q_matvec(st->logits, &m->classifier, x, dim);
    q_arena_reset(ctx);
    if (logits != NULL)
        *logits = st->logits;
    return q_mapping_status(ctx); /* Q_ERR_MODEL_CHANGED: the file shrank, weights read as 0 */
}

q_error_code q_forward_tokens(q_state *st, const uint32_t *tokens, size_t n, float *logits_out)
{
    if (st == NULL || st->model == NULL || tokens == NULL || n == 0)
        return Q_ERR_INVALID_ARG;
    if (n > st->model->config.seq_len)
        return Q_ERR_INVALID_CONFIG;
    float *logits = NULL;
    for (size_t i = 0; i < n; i++) {
        q_error_code err = q_forward(st, tokens[i], i, &logits);
        if (err != Q_OK)
            return err;
    }
    if (logits_out != NULL)
        memcpy(logits_out, logits, st->model->config.vocab_size * sizeof(float));
    return Q_OK;
}

/* ---- models built in memory ---- */

/* Cursor over the float buffer of q_model_from_floats. */
typedef struct float_cursor {
    const float *base;
    size_t n, at;
} float_cursor;

/* Takes the next rows*cols floats as an F32 view; 0 when they are not there. */
static int take(float_cursor *cur, q_tensor *t, size_t rows, size_t cols)
{
    size_t count, end;
    if (!q_mul_size(rows, cols, &count) || !q_add_size(cur->at, count, &end) || end > cur->n)
        return 0;
    t->type = Q_TENSOR_F32;
    t->data = cur->base + cur->at;
    t->scales = NULL;
    t->rows = rows;
    t->cols = cols;
    t->group_size = 0;
    cur->at = end;
    return 1;
}

size_t q_model_float_count(const q_config *c, int shared_classifier)
{
    if (c == NULL)
        return 0;
    q_config shape = *c; /* only the shape matters here */
    shape.rope_theta = 10000.0f;
    shape.norm_eps = 1e-5f;
    if (check_config(&shape) != Q_OK)
        return 0;
    size_t kv_dim = c->n_kv_heads * (c->dim / c->n_heads);
    size_t per_layer = 0, t, total = 0;
    /* per layer: 2 norms (dim), wq and wo (dim*dim), wk and wv (kv_dim*dim), w1 w2 w3 */
    if (!q_mul_size(c->dim, c->dim, &t) || !q_mul_size(t, 2, &t) ||
        !q_add_size(per_layer, t, &per_layer) || !q_mul_size(kv_dim, c->dim, &t) ||
        !q_mul_size(t, 2, &t) || !q_add_size(per_layer, t, &per_layer) ||
        !q_mul_size(c->hidden_dim, c->dim, &t) || !q_mul_size(t, 3, &t) ||
        !q_add_size(per_layer, t, &per_layer) || !q_add_size(per_layer, 2 * c->dim, &per_layer) ||
        !q_mul_size(per_layer, c->n_layers, &total) ||
        !q_mul_size(c->vocab_size, c->dim, &t) || !q_add_size(total, t, &total) ||
        (!shared_classifier && !q_add_size(total, t, &total)) ||
        !q_add_size(total, c->dim, &total))
        return 0;
    return total;
}

q_error_code q_model_from_floats(q_model *model, const q_config *config, const float *weights,
                                 size_t n_floats, int shared_classifier)
{
    if (model == NULL)
        return Q_ERR_INVALID_ARG;
    memset(model, 0, sizeof *model);
    if (config == NULL || weights == NULL)
        return Q_ERR_INVALID_ARG;
    q_config c = *config;
    if (c.rope_theta == 0.0f)
        c.rope_theta = 10000.0f;
    if (c.norm_eps == 0.0f)
        c.norm_eps = 1e-5f;
    q_error_code err = check_config(&c);
    if (err != Q_OK)
        return err;
    size_t need = q_model_float_count(&c, shared_classifier);
    if (need == 0)
        return Q_ERR_OVERFLOW;
    if (n_floats < need)
        return Q_ERR_TRUNCATED;
    q_layer *layers = q_os_calloc(c.n_layers, sizeof *layers);
    if (layers == NULL)
        return Q_ERR_ALLOC;

    size_t dim = c.dim, hid = c.hidden_dim, nl = c.n_layers;
    size_t kv_dim = c.n_kv_heads * (dim / c.n_heads);
    float_cursor cur = {weights, n_floats, 0};
    /* the sizes were checked by q_model_float_count: every take succeeds */
    take(&cur, &model->token_embedding, c.vocab_size, dim);
    for (size_t l = 0; l < nl; l++)
        take(&cur, &layers[l].attn_norm, 1, dim);
    for (size_t l = 0; l < nl; l++)
        take(&cur, &layers[l].wq, dim, dim);
    for (size_t l = 0; l < nl; l++)
        take(&cur, &layers[l].wk, kv_dim, dim);
    for (size_t l = 0; l < nl; l++)
        take(&cur, &layers[l].wv, kv_dim, dim);
    for (size_t l = 0; l < nl; l++)
        take(&cur, &layers[l].wo, dim, dim);
    for (size_t l = 0; l < nl; l++)
        take(&cur, &layers[l].ffn_norm, 1, dim);
    for (size_t l = 0; l < nl; l++)
        take(&cur, &layers[l].w1, hid, dim);
    for (size_t l = 0; l < nl; l++)
        take(&cur, &layers[l].w2, dim, hid);
    for (size_t l = 0; l < nl; l++)
        take(&cur, &layers[l].w3, hid, dim);
    take(&cur, &model->final_norm, 1, dim);
    if (shared_classifier)
        model->classifier = model->token_embedding;
    else
        take(&cur, &model->classifier, c.vocab_size, dim);

    model->format = Q_FORMAT_LLAMA2C;
    model->version = 0;
    model->config = c;
    model->layers = layers;
    model->shared_classifier = shared_classifier ? 1 : 0;
    return Q_OK;
}
