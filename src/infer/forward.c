/*
 * The forward pass of a llama-family transformer, as llama2.c run.c's forward():
 * RMSNorm, RoPE on interleaved pairs (or NEOX pairs, qwen2; with Llama 3's per-frequency
 * factors and linear scaling when the model has them), q/k/v biases when the model has
 * them (qwen2), grouped-query attention over the KV cache, SwiGLU feed-forward, final
 * RMSNorm and the classifier; run on a batch of B tokens at once
 * (q_forward_batch; q_forward is a batch of one), every weight row read once per batch.
 *
 * Memory of one q_state in its q_context:
 *   KV cache (q_alloc_kv_cache): key_cache then value_cache, each (n_layers, seq_len,
 *     kv_dim) float32; kv_bytes = n_layers * seq_len * kv_dim * 2 * 4, overflow-checked.
 *     The k and v projections of a batch are written straight into their rows.
 *   Arena (q_alloc_arena):
 *     | logits (vocab_size) | <- base (q_arena_set_base)
 *     | per batch (batch_bufs): x, xb, xb2, q (B, dim); hb, hb2 (B, hidden_dim); int8
 *       activations and their scales (B, max(dim, hidden_dim)); a norm weight (dim);
 *       rope cos/sin (B, head_size / 2); attention scores (n_threads, seq_len) |
 *     The per-batch part is carved at the start of each batch and released by
 *     q_arena_reset at its end; the sampler's top-p scratch (vocab_size pairs) reuses it.
 *
 * Arithmetic goes through a kernel table (qorus_kernels.h: the scalar reference or the
 * AVX2 one). Parallel steps are tasks on the state's thread pool (infer/pool.h): the
 * matrix products split in chunks of rows, attention one task per (token, head); each
 * output element is computed by one task, and the kernels' results do not depend on the
 * chunk or the batch, so the logits are bitwise the same for any thread count and batch
 * size (tests/infer/test_forward.c, fuzz/fuzz_generate.c).
 */
#include "qorus_infer.h"

#include <math.h>
#include <string.h>

#include "core/checked.h"
#include "core/os.h"
#include "infer/pool.h"

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

/* Biases and rope factors: F32 vectors of n values, added or divided as they are. */
static q_error_code check_f32_vector(const q_tensor *t, size_t n)
{
    q_error_code err = check_vector(t, n);
    if (err != Q_OK)
        return err;
    return t->type == Q_TENSOR_F32 ? Q_OK : Q_ERR_UNSUPPORTED_TYPE;
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
        if ((L->bq.data != NULL && (err = check_f32_vector(&L->bq, c->dim)) != Q_OK) ||
            (L->bk.data != NULL && (err = check_f32_vector(&L->bk, kv_dim)) != Q_OK) ||
            (L->bv.data != NULL && (err = check_f32_vector(&L->bv, kv_dim)) != Q_OK))
            return err;
    }
    if (m->rope_factors.data != NULL) {
        if ((err = check_f32_vector(&m->rope_factors, head_size / 2)) != Q_OK)
            return err;
        for (size_t j = 0; j < head_size / 2; j++) {
            float f;
            memcpy(&f, (const unsigned char *)m->rope_factors.data + 4 * j, 4);
            if (!isfinite(f) || !(f > 0.0f))
                return Q_ERR_INVALID_CONFIG;
        }
    }
    return Q_OK;
}

/* ---- the activations of one batch ---- */

/* Buffers of one batch of B tokens, carved from the arena in this order by
 * batch_buffers() and counted by batch_bytes() from the same list. */
typedef struct batch_bufs {
    float *x;        /* (B, dim) residual stream */
    float *xb;       /* (B, dim) normed input, then attention output */
    float *xb2;      /* (B, dim) projection output */
    float *q;        /* (B, dim) queries, n_heads * head_size */
    float *hb;       /* (B, hidden_dim) gate, then silu(gate) * up */
    float *hb2;      /* (B, hidden_dim) up */
    int8_t *aq;      /* (B, max(dim, hidden_dim)) activations quantized to int8 */
    float *ad;       /* (B, max(dim, hidden_dim) / Q_QBLOCK) their block scales */
    float *norm_w;   /* (dim) a norm weight as float32 */
    float *rope_cos; /* (B, head_size / 2) cos of each token's rotation angles */
    float *rope_sin; /* (B, head_size / 2) sin of the same */
    float *att;      /* (n_threads, seq_len) attention scores, one row per thread */
} batch_bufs;

#define BATCH_N_BUFS 12

/* Byte sizes of the batch buffers for B tokens, in batch_bufs order; 0 on overflow. */
static int batch_sizes(const q_config *c, size_t B, size_t n_threads,
                       size_t sizes[BATCH_N_BUFS])
{
    size_t widest = c->dim > c->hidden_dim ? c->dim : c->hidden_dim;
    size_t half_head = c->dim / c->n_heads / 2;
    size_t counts[BATCH_N_BUFS][2] = {
        {c->dim, sizeof(float)},        {c->dim, sizeof(float)},
        {c->dim, sizeof(float)},        {c->dim, sizeof(float)},
        {c->hidden_dim, sizeof(float)}, {c->hidden_dim, sizeof(float)},
        {widest, 1},                    {widest / Q_QBLOCK + 1, sizeof(float)},
        {0, 0} /* norm_w */,            {half_head, sizeof(float)},
        {half_head, sizeof(float)},     {0, 0} /* att */,
    };
    for (size_t i = 0; i < BATCH_N_BUFS; i++) {
        if (!q_mul_size(counts[i][0], counts[i][1], &sizes[i]) ||
            !q_mul_size(sizes[i], B, &sizes[i]))
            return 0;
    }
    sizes[8] = c->dim * sizeof(float); /* dim <= Q_MAX_DIM: no overflow */
    return q_mul_size(n_threads, c->seq_len, &sizes[11]) &&
           q_mul_size(sizes[11], sizeof(float), &sizes[11]);
}

/* Arena bytes of one batch (every buffer rounded up to Q_ALIGN as the arena does). */
static int batch_bytes(const q_config *c, size_t B, size_t n_threads, size_t *out)
{
    size_t sizes[BATCH_N_BUFS], total = 0;
    if (!batch_sizes(c, B, n_threads, sizes))
        return 0;
    for (size_t i = 0; i < BATCH_N_BUFS; i++) {
        size_t rounded;
        if (!q_align_up(sizes[i], Q_ALIGN, &rounded) || !q_add_size(total, rounded, &total))
            return 0;
    }
    *out = total;
    return 1;
}

/* Carves the batch buffers from the arena; Q_ERR_ARENA_OOM if it cannot. */
static q_error_code batch_buffers(q_state *st, size_t B, batch_bufs *bb)
{
    size_t sizes[BATCH_N_BUFS];
    if (!batch_sizes(&st->model->config, B, st->n_threads, sizes))
        return Q_ERR_OVERFLOW;
    void *p[BATCH_N_BUFS];
    for (size_t i = 0; i < BATCH_N_BUFS; i++) {
        p[i] = q_arena_alloc(st->ctx, sizes[i]);
        if (p[i] == NULL) {
            q_arena_reset(st->ctx);
            return Q_ERR_ARENA_OOM;
        }
    }
    bb->x = p[0];
    bb->xb = p[1];
    bb->xb2 = p[2];
    bb->q = p[3];
    bb->hb = p[4];
    bb->hb2 = p[5];
    bb->aq = p[6];
    bb->ad = p[7];
    bb->norm_w = p[8];
    bb->rope_cos = p[9];
    bb->rope_sin = p[10];
    bb->att = p[11];
    size_t used = q_arena_used(st->ctx);
    if (used > st->arena_high_water)
        st->arena_high_water = used;
    return Q_OK;
}

/* Bytes of the sampler's top-p scratch: vocab_size (prob, index) pairs of 8 bytes. */
static int sampler_bytes(const q_config *c, size_t *out)
{
    return q_mul_size(c->vocab_size, 8, out) && q_align_up(*out, Q_ALIGN, out);
}

/* ---- state ---- */

size_t q_default_threads(void)
{
    size_t n = q_pool_default_threads();
    return n > Q_MAX_THREADS ? Q_MAX_THREADS : n;
}

q_error_code q_state_init(q_state *st, q_context *ctx, const q_model *model)
{
    return q_state_init_ex(st, ctx, model, NULL);
}

q_error_code q_state_init_ex(q_state *st, q_context *ctx, const q_model *model,
                             const q_state_options *opt)
{
    if (st == NULL)
        return Q_ERR_INVALID_ARG;
    memset(st, 0, sizeof *st);
    if (ctx == NULL || model == NULL)
        return Q_ERR_INVALID_ARG;
    q_state_options o = {0};
    if (opt != NULL)
        o = *opt;
    if (o.n_threads == 0)
        o.n_threads = 1;
    if (o.max_batch == 0)
        o.max_batch = Q_DEFAULT_BATCH;
    if (o.kernels == NULL)
        o.kernels = q_kernels_select();
    if (o.parallel_min_work == 0)
        o.parallel_min_work = Q_DEFAULT_PARALLEL_MIN_WORK;
    if (o.n_threads > Q_MAX_THREADS || o.max_batch > Q_MAX_BATCH)
        return Q_ERR_INVALID_ARG;
    q_error_code err = check_model(model);
    if (err != Q_OK)
        return err;
    if (ctx->kv_buffer != NULL || ctx->scratch_buffer != NULL)
        return Q_ERR_INVALID_STATE;
    const q_config *c = &model->config;
    size_t head_size = c->dim / c->n_heads;
    size_t kv_dim = c->n_kv_heads * head_size;
    if (o.max_batch > c->seq_len)
        o.max_batch = c->seq_len;

    size_t cache_floats, kv_bytes; /* one of key/value: (n_layers, seq_len, kv_dim) */
    if (!q_mul_size(c->n_layers, c->seq_len, &cache_floats) ||
        !q_mul_size(cache_floats, kv_dim, &cache_floats) ||
        !q_mul_size(cache_floats, 2 * sizeof(float), &kv_bytes))
        return Q_ERR_OVERFLOW;

    size_t arena, fwd, smp;
    if (!q_mul_size(c->vocab_size, sizeof(float), &arena) ||
        !q_align_up(arena, Q_ALIGN, &arena) ||
        !batch_bytes(c, o.max_batch, o.n_threads, &fwd) || !sampler_bytes(c, &smp) ||
        !q_add_size(arena, fwd > smp ? fwd : smp, &arena))
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
    q_pool *pool = NULL;
    if (o.n_threads > 1 && (err = q_pool_create(&pool, o.n_threads)) != Q_OK) {
        q_free_arena(ctx);
        q_free_kv_cache(ctx);
        return err;
    }

    st->model = model;
    st->ctx = ctx;
    st->kernels = o.kernels;
    st->pool = pool;
    st->n_threads = o.n_threads;
    st->max_batch = o.max_batch;
    st->parallel_min_work = o.parallel_min_work;
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
    q_pool_destroy(st->pool);
    if (st->ctx != NULL) {
        q_free_arena(st->ctx);
        q_free_kv_cache(st->ctx);
    }
    memset(st, 0, sizeof *st);
}

/* ---- parallel steps ---- */

/* Runs fn on tasks 0..n_tasks-1: on the pool when there is one and the step's work
 * (multiply-adds, roughly) is worth it, else inline on the calling thread. */
static void run_tasks(const q_state *st, q_pool_task_fn fn, void *arg, size_t n_tasks,
                      size_t work)
{
    if (st->pool != NULL && work >= st->parallel_min_work) {
        q_pool_run(st->pool, fn, arg, n_tasks);
        return;
    }
    for (size_t i = 0; i < n_tasks; i++)
        fn(arg, i, 0);
}

/* One weight matrix times a batch of activation rows, split in chunks of rows. */
typedef struct matmul_job {
    const q_tensor *w;
    float *out;        /* (B, out_stride): out[t * out_stride + i] for row i of w */
    size_t out_stride;
    q_act act;
    size_t chunk_rows; /* rows per task: a multiple of 16, one cache line of outputs */
    size_t n_chunks;
} matmul_job;

/* Up to three matmuls sharing one input (wq, wk, wv or w1, w3), as one set of tasks. */
typedef struct matmul_set {
    const q_kernels *k;
    matmul_job jobs[3];
    size_t n_jobs;
} matmul_set;

static void matmul_task(void *arg, size_t task, size_t thread)
{
    (void)thread;
    const matmul_set *set = arg;
    size_t j = 0;
    while (task >= set->jobs[j].n_chunks)
        task -= set->jobs[j++].n_chunks;
    const matmul_job *job = &set->jobs[j];
    size_t r0 = task * job->chunk_rows;
    size_t r1 = job->w->rows - r0 < job->chunk_rows ? job->w->rows : r0 + job->chunk_rows;
    set->k->matmul(job->out, job->out_stride, job->w, r0, r1, &job->act);
}

/* Adds W (rows, cols) @ act -> out to `set`. */
static void add_matmul(matmul_set *set, const q_state *st, const q_tensor *w, float *out,
                       size_t out_stride, const q_act *act)
{
    matmul_job *job = &set->jobs[set->n_jobs++];
    job->w = w;
    job->out = out;
    job->out_stride = out_stride;
    job->act = *act;
    if (!q_kernels_wants_q8(w))
        job->act.q = NULL; /* float path: the kernels must not read the int8 rows */
    /* about four chunks per thread, so that threads finishing early take more */
    size_t per = (w->rows + 4 * st->n_threads - 1) / (4 * st->n_threads);
    job->chunk_rows = (per + 15) / 16 * 16;
    job->n_chunks = (w->rows + job->chunk_rows - 1) / job->chunk_rows;
}

static void run_matmuls(const q_state *st, matmul_set *set)
{
    size_t n = 0, work = 0;
    for (size_t j = 0; j < set->n_jobs; j++) {
        const matmul_job *job = &set->jobs[j];
        n += job->n_chunks;
        /* at most 2^20 * 2^18 * 2^9 (Q_MAX_*): no overflow with a 64-bit size_t; a wrap
         * on 32-bit targets would only change where the step runs, not its result */
        work += job->w->rows * job->w->cols * job->act.n_rows;
    }
    run_tasks(st, matmul_task, set, n, work);
}

/* The activation rows `x` (B, n) as the kernels read them, quantized to int8 blocks when
 * one of the matrices `w0`, `w1`, `w2` (may be NULL) multiplies int8 activations. */
static q_act make_act(const q_state *st, const batch_bufs *bb, const float *x, size_t B,
                      size_t n, const q_tensor *w0, const q_tensor *w1, const q_tensor *w2)
{
    q_act act = {.f = x, .q = NULL, .d = NULL, .cols = n, .n_rows = B};
    int wants = q_kernels_wants_q8(w0) || q_kernels_wants_q8(w1) || q_kernels_wants_q8(w2);
    if (wants && n % Q_QBLOCK == 0) {
        for (size_t t = 0; t < B; t++)
            st->kernels->quantize_q8(bb->aq + t * n, bb->ad + t * (n / Q_QBLOCK), x + t * n, n);
        act.q = bb->aq;
        act.d = bb->ad;
    }
    return act;
}

/* Attention of every (token, head) of a batch: one task each. */
typedef struct attention_set {
    const q_kernels *k;
    const float *q;          /* (B, dim) queries after RoPE */
    const float *keys;       /* (seq_len, kv_dim) this layer's key cache */
    const float *values;     /* (seq_len, kv_dim) this layer's value cache */
    float *out;              /* (B, dim) */
    float *att;              /* (n_threads, seq_len) */
    size_t pos0, dim, kv_dim, head_size, n_heads, kv_mul, seq_len;
} attention_set;

static void attention_task(void *arg, size_t task, size_t thread)
{
    const attention_set *a = arg;
    size_t t = task / a->n_heads, h = task % a->n_heads;
    size_t kv_off = (h / a->kv_mul) * a->head_size; /* query head h reads kv head h/kv_mul */
    a->k->attention(a->out + t * a->dim + h * a->head_size, a->q + t * a->dim + h * a->head_size,
                    a->keys + kv_off, a->values + kv_off, a->kv_dim, a->pos0 + t + 1,
                    a->head_size, a->att + thread * a->seq_len);
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

/* x (B, n) += y (B, n) */
static void add_rows(float *x, const float *y, size_t count)
{
    for (size_t i = 0; i < count; i++)
        x[i] += y[i];
}

/* rows[t * n + i] += bias[i] for t < B, when the model has this bias (F32, n values). */
static void add_bias(float *rows, const q_tensor *bias, size_t B, size_t n)
{
    if (bias->data == NULL)
        return;
    const unsigned char *b = (const unsigned char *)bias->data;
    for (size_t t = 0; t < B; t++)
        for (size_t i = 0; i < n; i++) {
            float v;
            memcpy(&v, b + 4 * i, 4);
            rows[t * n + i] += v;
        }
}

/* Runs one batch: tokens[0..B) at positions pos0.. (checked by the caller); the logits of
 * the last token when `want_logits`. */
static q_error_code forward_chunk(q_state *st, const uint32_t *tokens, size_t B, size_t pos0,
                                  int want_logits)
{
    const q_model *m = st->model;
    const q_config *p = &m->config;
    const q_kernels *k = st->kernels;
    size_t dim = p->dim, hidden_dim = p->hidden_dim, head_size = st->head_size;
    size_t kv_dim = st->kv_dim, half = head_size / 2;
    batch_bufs bb;
    q_error_code err = batch_buffers(st, B, &bb);
    if (err != Q_OK)
        return err;

    for (size_t t = 0; t < B; t++) {
        q_tensor_row(bb.x + t * dim, &m->token_embedding, tokens[t]);
        /* RoPE rotation of pair j of a head at this position, the same for every layer:
         * angle pos / theta^(2j / head_size), computed with run.c's float expressions;
         * divided by Llama 3's factor j and the linear scaling factor when the model has
         * them (as ggml: the frequency is divided, then multiplied by the position). */
        for (size_t j = 0; j < half; j++) {
            float freq = 1.0f / powf(p->rope_theta, (float)(2 * j) / (float)head_size);
            if (m->rope_factors.data != NULL) {
                float f;
                memcpy(&f, (const unsigned char *)m->rope_factors.data + 4 * j, 4);
                freq /= f;
            }
            if (p->rope_linear_factor != 0.0f && p->rope_linear_factor != 1.0f)
                freq /= p->rope_linear_factor;
            float val = (float)(pos0 + t) * freq;
            bb.rope_cos[t * half + j] = cosf(val);
            bb.rope_sin[t * half + j] = sinf(val);
        }
    }

    attention_set att = {.k = k, .q = bb.q, .out = bb.xb, .att = bb.att, .pos0 = pos0,
                         .dim = dim, .kv_dim = kv_dim, .head_size = head_size,
                         .n_heads = p->n_heads, .kv_mul = p->n_heads / p->n_kv_heads,
                         .seq_len = p->seq_len};
    for (size_t l = 0; l < p->n_layers; l++) {
        const q_layer *L = &m->layers[l];
        size_t loff = l * p->seq_len * kv_dim; /* this layer's cache: (seq_len, kv_dim) */
        float *kc = st->key_cache + loff + pos0 * kv_dim;   /* (B, kv_dim) these positions */
        float *vc = st->value_cache + loff + pos0 * kv_dim; /* (B, kv_dim) these positions */

        /* attention: q, k, v of every token, RoPE, then each (token, head) */
        load_vector(bb.norm_w, &L->attn_norm);
        for (size_t t = 0; t < B; t++)
            k->rmsnorm(bb.xb + t * dim, bb.x + t * dim, bb.norm_w, dim, p->norm_eps);
        q_act act = make_act(st, &bb, bb.xb, B, dim, &L->wq, &L->wk, &L->wv);
        matmul_set qkv = {.k = k};
        add_matmul(&qkv, st, &L->wq, bb.q, dim, &act);
        add_matmul(&qkv, st, &L->wk, kc, kv_dim, &act);
        add_matmul(&qkv, st, &L->wv, vc, kv_dim, &act);
        run_matmuls(st, &qkv);
        add_bias(bb.q, &L->bq, B, dim);
        add_bias(kc, &L->bk, B, kv_dim);
        add_bias(vc, &L->bv, B, kv_dim);
        void (*rope)(float *, size_t, size_t, const float *, const float *) =
            p->rope_neox ? k->rope_neox : k->rope;
        for (size_t t = 0; t < B; t++) {
            rope(bb.q + t * dim, dim, head_size, bb.rope_cos + t * half, bb.rope_sin + t * half);
            rope(kc + t * kv_dim, kv_dim, head_size, bb.rope_cos + t * half,
                 bb.rope_sin + t * half);
        }
        att.keys = st->key_cache + loff;
        att.values = st->value_cache + loff;
        /* work: every query head reads its keys and values at positions 0..pos0+B-1 */
        run_tasks(st, attention_task, &att, B * p->n_heads,
                  B * p->n_heads * (pos0 + B) * head_size * 2);
        act = make_act(st, &bb, bb.xb, B, dim, &L->wo, NULL, NULL);
        matmul_set wo = {.k = k};
        add_matmul(&wo, st, &L->wo, bb.xb2, dim, &act);
        run_matmuls(st, &wo);
        add_rows(bb.x, bb.xb2, B * dim);

        /* SwiGLU feed-forward: w2(silu(w1 x) * w3 x) */
        load_vector(bb.norm_w, &L->ffn_norm);
        for (size_t t = 0; t < B; t++)
            k->rmsnorm(bb.xb + t * dim, bb.x + t * dim, bb.norm_w, dim, p->norm_eps);
        act = make_act(st, &bb, bb.xb, B, dim, &L->w1, &L->w3, NULL);
        matmul_set up = {.k = k};
        add_matmul(&up, st, &L->w1, bb.hb, hidden_dim, &act);
        add_matmul(&up, st, &L->w3, bb.hb2, hidden_dim, &act);
        run_matmuls(st, &up);
        k->swiglu(bb.hb, bb.hb2, B * hidden_dim);
        act = make_act(st, &bb, bb.hb, B, hidden_dim, &L->w2, NULL, NULL);
        matmul_set down = {.k = k};
        add_matmul(&down, st, &L->w2, bb.xb, dim, &act);
        run_matmuls(st, &down);
        add_rows(bb.x, bb.xb, B * dim);
    }

    if (want_logits) {
        const float *last = bb.x + (B - 1) * dim; /* (dim) the last token's stream */
        load_vector(bb.norm_w, &m->final_norm);
        k->rmsnorm(bb.xb, last, bb.norm_w, dim, p->norm_eps);
        q_act act = make_act(st, &bb, bb.xb, 1, dim, &m->classifier, NULL, NULL);
        matmul_set cls = {.k = k};
        add_matmul(&cls, st, &m->classifier, st->logits, p->vocab_size, &act);
        run_matmuls(st, &cls);
    }
    q_arena_reset(st->ctx);
    return Q_OK;
}

q_error_code q_forward_batch(q_state *st, const uint32_t *tokens, size_t n, size_t pos0,
                             float **logits)
{
    if (st == NULL || st->model == NULL || st->ctx == NULL || st->kernels == NULL ||
        tokens == NULL || n == 0)
        return Q_ERR_INVALID_ARG;
    const q_config *p = &st->model->config;
    for (size_t i = 0; i < n; i++)
        if (tokens[i] >= p->vocab_size)
            return Q_ERR_BAD_TOKEN;
    if (pos0 >= p->seq_len || n > p->seq_len - pos0)
        return Q_ERR_INVALID_CONFIG;
    for (size_t done = 0; done < n;) {
        size_t B = n - done < st->max_batch ? n - done : st->max_batch;
        q_error_code err = forward_chunk(st, tokens + done, B, pos0 + done, done + B == n);
        /* Q_ERR_MODEL_CHANGED: the model file shrank under the mapping, weights read as 0:
         * checked after every batch, before its logits can be used */
        if (err == Q_OK)
            err = q_mapping_status(st->ctx);
        if (err != Q_OK)
            return err;
        done += B;
    }
    if (logits != NULL)
        *logits = st->logits;
    return Q_OK;
}

q_error_code q_forward(q_state *st, uint32_t token, size_t pos, float **logits)
{
    return q_forward_batch(st, &token, 1, pos, logits);
}

q_error_code q_forward_tokens(q_state *st, const uint32_t *tokens, size_t n, float *logits_out)
{
    if (st == NULL || st->model == NULL || tokens == NULL || n == 0)
        return Q_ERR_INVALID_ARG;
    if (n > st->model->config.seq_len)
        return Q_ERR_INVALID_CONFIG;
    float *logits = NULL;
    q_error_code err = q_forward_batch(st, tokens, n, 0, &logits);
    if (err != Q_OK)
        return err;
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
