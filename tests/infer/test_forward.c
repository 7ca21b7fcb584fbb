/*
 * Forward-pass tests on a tiny random model built in memory (q_model_from_floats):
 * logits at every position against an independent double-precision reference (grouped-query
 * attention, RoPE, SwiGLU, shared and separate classifier), the same with every tensor
 * converted to F16, Q8_0 and Q8_SPLIT (reference on the dequantized values; for Q8_0 also
 * on int8-rounded activations, as the kernels multiply them) with every kernel table (the
 * scalar reference and each optimized table this CPU runs, q_kernels_optimized), arena
 * reset after each token, KV cache size, bitwise-identical logits for any thread count and
 * batch size on every kernel table, and the errors of q_state_init / q_forward. An
 * optimized table absent here is skipped with a note.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "qorus.h"
#include "qorus_testing.h"

static uint64_t rng = 0xC0FFEEull;

/* ---- reference (llama2.c order, doubles) ---- */

typedef struct ref_model {
    q_config c;
    const float *w; /* llama2.c order without freq_cis */
    int shared;
    int quantize_act; /* matmul inputs rounded to int8 blocks of 32, as for Q8_0 weights */
} ref_model;

static int quantize_act; /* the ref_model flag, for ref_matmul */

/* x rounded as the kernels' quantize_q8 does: per block of 32, d = max|x| / 127 and
 * x -> round(x / d) * d (ties to even). */
static void ref_quantize(double *out, const double *x, size_t n)
{
    for (size_t b = 0; b < n / 32; b++) {
        double amax = 0.0;
        for (size_t j = 0; j < 32; j++)
            amax = fmax(amax, fabs(x[b * 32 + j]));
        double d = (double)(float)amax / 127.0;
        for (size_t j = 0; j < 32; j++)
            out[b * 32 + j] = d > 0.0 ? nearbyint(x[b * 32 + j] / d) * d : 0.0;
    }
}

static void ref_matmul(double *out, const float *w, const double *x, size_t n, size_t d)
{
    double xq[256];
    if (quantize_act && n % 32 == 0) {
        ref_quantize(xq, x, n);
        x = xq;
    }
    for (size_t i = 0; i < d; i++) {
        double v = 0.0;
        for (size_t j = 0; j < n; j++)
            v += (double)w[i * n + j] * x[j];
        out[i] = v;
    }
}

static void ref_rmsnorm(double *o, const double *x, const float *w, size_t n, double eps)
{
    double ss = 0.0;
    for (size_t j = 0; j < n; j++)
        ss += x[j] * x[j];
    ss = 1.0 / sqrt(ss / (double)n + eps);
    for (size_t j = 0; j < n; j++)
        o[j] = (double)w[j] * x[j] * ss;
}

/* Logits after feeding tokens[0..n) at positions 0..n-1. */
static void ref_forward(const ref_model *m, const uint32_t *tokens, size_t n, double *logits)
{
    const q_config *c = &m->c;
    size_t dim = c->dim, hid = c->hidden_dim, nl = c->n_layers, hs = dim / c->n_heads;
    size_t kvd = c->n_kv_heads * hs, kv_mul = c->n_heads / c->n_kv_heads;
    const float *emb = m->w;
    const float *att_norm = emb + c->vocab_size * dim;
    const float *wq = att_norm + nl * dim, *wk = wq + nl * dim * dim, *wv = wk + nl * kvd * dim;
    const float *wo = wv + nl * kvd * dim, *ffn_norm = wo + nl * dim * dim;
    const float *w1 = ffn_norm + nl * dim, *w2 = w1 + nl * hid * dim, *w3 = w2 + nl * dim * hid;
    const float *fnorm = w3 + nl * hid * dim;
    const float *cls = m->shared ? emb : fnorm + dim;
    quantize_act = m->quantize_act;
    double *kc = calloc(nl * n * kvd, sizeof(double)), *vc = calloc(nl * n * kvd, sizeof(double));
    double x[128], xb[128], q[128], t[128], h1[256], h3[256], att[64];
    for (size_t pos = 0; pos < n; pos++) {
        for (size_t i = 0; i < dim; i++)
            x[i] = emb[tokens[pos] * dim + i];
        for (size_t l = 0; l < nl; l++) {
            ref_rmsnorm(xb, x, att_norm + l * dim, dim, c->norm_eps);
            double *k = kc + (l * n + pos) * kvd, *v = vc + (l * n + pos) * kvd;
            ref_matmul(q, wq + l * dim * dim, xb, dim, dim);
            ref_matmul(k, wk + l * kvd * dim, xb, dim, kvd);
            ref_matmul(v, wv + l * kvd * dim, xb, dim, kvd);
            for (size_t i = 0; i < dim; i += 2) {
                double f = pow((double)c->rope_theta, -(double)(i % hs) / (double)hs);
                double cr = cos((double)pos * f), ci = sin((double)pos * f);
                double a = q[i], b = q[i + 1];
                q[i] = a * cr - b * ci;
                q[i + 1] = a * ci + b * cr;
                if (i < kvd) {
                    a = k[i];
                    b = k[i + 1];
                    k[i] = a * cr - b * ci;
                    k[i + 1] = a * ci + b * cr;
                }
            }
            for (size_t h = 0; h < c->n_heads; h++) {
                size_t off = (h / kv_mul) * hs;
                double mx = -1e300, sum = 0.0;
                for (size_t s = 0; s <= pos; s++) {
                    double sc = 0.0;
                    for (size_t i = 0; i < hs; i++)
                        sc += q[h * hs + i] * kc[(l * n + s) * kvd + off + i];
                    att[s] = sc / sqrt((double)hs);
                    if (att[s] > mx)
                        mx = att[s];
                }
                for (size_t s = 0; s <= pos; s++)
                    sum += (att[s] = exp(att[s] - mx));
                for (size_t i = 0; i < hs; i++) {
                    double v_acc = 0.0;
                    for (size_t s = 0; s <= pos; s++)
                        v_acc += att[s] / sum * vc[(l * n + s) * kvd + off + i];
                    xb[h * hs + i] = v_acc;
                }
            }
            ref_matmul(t, wo + l * dim * dim, xb, dim, dim);
            for (size_t i = 0; i < dim; i++)
                x[i] += t[i];
            ref_rmsnorm(xb, x, ffn_norm + l * dim, dim, c->norm_eps);
            ref_matmul(h1, w1 + l * hid * dim, xb, dim, hid);
            ref_matmul(h3, w3 + l * hid * dim, xb, dim, hid);
            for (size_t i = 0; i < hid; i++)
                h1[i] = h1[i] / (1.0 + exp(-h1[i])) * h3[i];
            ref_matmul(t, w2 + l * dim * hid, h1, hid, dim);
            for (size_t i = 0; i < dim; i++)
                x[i] += t[i];
        }
        ref_rmsnorm(xb, x, fnorm, dim, c->norm_eps);
        ref_matmul(logits, cls, xb, dim, c->vocab_size);
    }
    free(kc);
    free(vc);
}

/* ---- quantized copies ---- */

/* Converts `t` (an F32 view into `floats`) to `type` in a new buffer, and writes the
 * dequantized values back into `deq` (same layout as floats) for the reference. */
static q_tensor convert(const q_tensor *t, q_tensor_type type, const float *floats, float *deq,
                        void **owned)
{
    size_t n = t->rows * t->cols, at = (size_t)((const float *)t->data - floats);
    const float *src = (const float *)t->data;
    q_tensor out = {type, NULL, NULL, t->rows, t->cols, 0};
    unsigned char *buf;
    if (type == Q_TENSOR_F16) {
        buf = malloc(n * 2);
        for (size_t i = 0; i < n; i++) {
            uint16_t h = q_f32_to_f16(src[i]);
            memcpy(buf + 2 * i, &h, 2);
        }
    } else if (type == Q_TENSOR_BF16) {
        buf = malloc(n * 2);
        for (size_t i = 0; i < n; i++) {
            uint16_t h = q_f32_to_bf16(src[i]);
            memcpy(buf + 2 * i, &h, 2);
        }
    } else if (type == Q_TENSOR_Q8_0) {
        buf = malloc(n / 32 * 34);
        out.group_size = 32;
        for (size_t b = 0; b < n / 32; b++) {
            float amax = 0.0f;
            for (size_t j = 0; j < 32; j++)
                amax = fmaxf(amax, fabsf(src[b * 32 + j]));
            uint16_t dh = q_f32_to_f16(amax / 127.0f);
            float d = q_f16_to_f32(dh);
            memcpy(buf + b * 34, &dh, 2);
            for (size_t j = 0; j < 32; j++) {
                int8_t q = (int8_t)lrintf(d > 0 ? src[b * 32 + j] / d : 0.0f);
                memcpy(buf + b * 34 + 2 + j, &q, 1);
            }
        }
    } else if (type == Q_TENSOR_Q4_0) { /* blocks of 32: f16 d = max / -8, 4-bit codes */
        buf = malloc(n / 32 * 18);
        out.group_size = 32;
        for (size_t b = 0; b < n / 32; b++) {
            float big = 0.0f;
            for (size_t j = 0; j < 32; j++)
                if (fabsf(src[b * 32 + j]) > fabsf(big))
                    big = src[b * 32 + j];
            uint16_t dh = q_f32_to_f16(big / -8.0f);
            float d = q_f16_to_f32(dh);
            unsigned char *blk = buf + b * 18;
            memcpy(blk, &dh, 2);
            memset(blk + 2, 0, 16);
            for (size_t j = 0; j < 32; j++) {
                float c = d != 0.0f ? floorf(src[b * 32 + j] / d + 8.5f) : 8.0f;
                unsigned code = c < 0.0f ? 0u : c > 15.0f ? 15u : (unsigned)c;
                blk[2 + j % 16] |= (unsigned char)(j < 16 ? code : code << 4);
            }
        }
    } else { /* Q8_SPLIT, groups of 16 over the flat tensor */
        size_t gs = 16;
        buf = malloc(n + n / gs * 4);
        out.group_size = gs;
        out.scales = buf + n;
        for (size_t g = 0; g < n / gs; g++) {
            float amax = 0.0f;
            for (size_t j = 0; j < gs; j++)
                amax = fmaxf(amax, fabsf(src[g * gs + j]));
            float s = amax / 127.0f;
            memcpy(buf + n + 4 * g, &s, 4);
            for (size_t j = 0; j < gs; j++) {
                int8_t q = (int8_t)lrintf(s > 0 ? src[g * gs + j] / s : 0.0f);
                memcpy(buf + g * gs + j, &q, 1);
            }
        }
    }
    out.data = buf;
    *owned = buf;
    for (size_t r = 0; r < t->rows; r++)
        CHECK_EQ_INT(q_tensor_row(deq + at + r * t->cols, &out, r), Q_OK);
    return out;
}

/* ---- tests ---- */

static float *random_floats(size_t n)
{
    float *w = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        w[i] = (q_random_f32(&rng) * 2.0f - 1.0f) * 0.5f;
    return w;
}

/* The kernel tables to test: the reference, then the optimized ones this CPU runs. */
static const q_kernels *tables[5];
static size_t n_tables;

/* Runs every position through q_forward on kernel table `k` (NULL: q_state_init's default,
 * q_kernels_select()) and compares with the reference on `ref_w`. */
static void compare(const q_model *m, const q_kernels *k, const float *ref_w, int shared,
                    int quant, double tol)
{
    const q_config *c = &m->config;
    q_context ctx = {0};
    q_state st;
    q_state_options opt = {.kernels = k};
    CHECK_EQ_INT(k == NULL ? q_state_init(&st, &ctx, m) : q_state_init_ex(&st, &ctx, m, &opt),
                 Q_OK);
    CHECK(st.kernels == (k != NULL ? k : q_kernels_select()));
    size_t kv_dim = c->n_kv_heads * (c->dim / c->n_heads);
    CHECK_EQ_INT(st.kv_bytes, c->n_layers * c->seq_len * kv_dim * 2 * sizeof(float));
    CHECK_EQ_INT(ctx.kv_size, st.kv_bytes);
    size_t base = q_arena_used(&ctx);
    uint32_t tokens[64];
    double want[64];
    ref_model rm = {*c, ref_w, shared, quant};
    for (size_t pos = 0; pos < c->seq_len; pos++) {
        tokens[pos] = (uint32_t)((pos * 7 + 3) % c->vocab_size);
        float *logits;
        CHECK_EQ_INT(q_forward(&st, tokens[pos], pos, &logits), Q_OK);
        CHECK_EQ_INT(q_arena_used(&ctx), base); /* activations released */
        ref_forward(&rm, tokens, pos + 1, want);
        double worst = 0.0; /* a NaN logit is the worst (fmax would drop it) */
        for (size_t i = 0; i < c->vocab_size && !isnan(worst); i++) {
            double d = fabs((double)logits[i] - want[i]);
            if (isnan(d) || d > worst)
                worst = d;
        }
        if (!(worst <= tol)) {
            fprintf(stderr, "%s: pos %zu: max |logit - reference| = %g > %g\n",
                    st.kernels->name, pos, worst, tol);
            CHECK(0);
            break;
        }
    }
    CHECK(st.arena_high_water > base && st.arena_high_water <= st.arena_bytes);
    /* q_forward_tokens gives the last logits */
    float out[64];
    CHECK_EQ_INT(q_forward_tokens(&st, tokens, c->seq_len, out), Q_OK);
    CHECK(memcmp(out, st.logits, c->vocab_size * sizeof(float)) == 0);
    /* errors */
    CHECK_EQ_INT(q_forward_batch(&st, NULL, 1, 0, NULL), Q_ERR_INVALID_ARG);
    CHECK_EQ_INT(q_forward_batch(&st, tokens, 0, 0, NULL), Q_ERR_INVALID_ARG);
    CHECK_EQ_INT(q_forward_batch(&st, tokens, 2, c->seq_len - 1, NULL), Q_ERR_INVALID_CONFIG);
    CHECK_EQ_INT(q_forward_batch(&st, tokens, 1, SIZE_MAX, NULL), Q_ERR_INVALID_CONFIG);
    {
        /* a bad token anywhere in a batch: an error before anything runs (the KV cache
         * keeps what the earlier positions wrote) */
        uint32_t bad[3] = {tokens[0], tokens[1], (uint32_t)c->vocab_size};
        unsigned char *kv_before = malloc(ctx.kv_size);
        memcpy(kv_before, ctx.kv_buffer, ctx.kv_size);
        CHECK_EQ_INT(q_forward_batch(&st, bad, 3, 0, NULL), Q_ERR_BAD_TOKEN);
        CHECK(memcmp(kv_before, ctx.kv_buffer, ctx.kv_size) == 0);
        free(kv_before);
    }
    CHECK_EQ_INT(q_forward(&st, (uint32_t)c->vocab_size, 0, NULL), Q_ERR_BAD_TOKEN);
    CHECK_EQ_INT(q_forward(&st, 0, c->seq_len, NULL), Q_ERR_INVALID_CONFIG);
    CHECK_EQ_INT(q_forward_tokens(&st, tokens, c->seq_len + 1, NULL), Q_ERR_INVALID_CONFIG);
    q_state st2;
    CHECK_EQ_INT(q_state_init(&st2, &ctx, m), Q_ERR_INVALID_STATE);
    q_state_free(&st);
    q_state_free(&st);
    CHECK(ctx.kv_buffer == NULL && ctx.scratch_buffer == NULL);
    q_free_memory(&ctx);
}

/* Logits of every position, run with `threads` threads in batches of `batch` tokens on
 * kernel table `k`, into out (seq_len, vocab). */
static void run_all_positions(const q_model *m, const q_kernels *k, size_t threads,
                              size_t batch, float *out)
{
    const q_config *c = &m->config;
    q_context ctx = {0};
    q_state st;
    /* parallel_min_work 1: every step on the pool, however small the model */
    q_state_options opt = {.n_threads = threads, .max_batch = batch, .kernels = k,
                           .parallel_min_work = 1};
    CHECK_EQ_INT(q_state_init_ex(&st, &ctx, m, &opt), Q_OK);
    CHECK(st.kernels == k && st.n_threads == threads);
    uint32_t tokens[64];
    for (size_t pos = 0; pos < c->seq_len; pos++)
        tokens[pos] = (uint32_t)((pos * 5 + 1) % c->vocab_size);
    /* every prefix as one batched call: the logits after its last token */
    for (size_t n = 1; n <= c->seq_len; n++) {
        float *logits = NULL;
        CHECK_EQ_INT(q_forward_batch(&st, tokens, n, 0, &logits), Q_OK);
        if (logits != NULL)
            memcpy(out + (n - 1) * c->vocab_size, logits, c->vocab_size * sizeof(float));
    }
    q_state_free(&st);
    q_free_memory(&ctx);
}

/* The thread pool and batched prefill change nothing: bitwise-identical logits with 1, 2
 * and 3 threads and batches of 1, 3 and 32 tokens, for every kernel table. */
static void same_logits_any_threads_and_batch(const q_model *m)
{
    const q_config *c = &m->config;
    size_t n = c->seq_len * c->vocab_size;
    float *ref = malloc(n * sizeof(float)), *got = malloc(n * sizeof(float));
    for (size_t k = 0; k < n_tables; k++) {
        run_all_positions(m, tables[k], 1, 1, ref);
        const size_t runs[3][2] = {{2, 1}, {1, 3}, {3, 32}};
        for (int r = 0; r < 3; r++) {
            memset(got, 0xff, n * sizeof(float));
            run_all_positions(m, tables[k], runs[r][0], runs[r][1], got);
            if (memcmp(ref, got, n * sizeof(float)) != 0) {
                fprintf(stderr, "%s: threads %zu batch %zu: logits differ from 1 thread, "
                                "1 token at a time\n",
                        tables[k]->name, runs[r][0], runs[r][1]);
                CHECK(0);
            }
        }
    }
    free(ref);
    free(got);
}

static void test_config(q_config c, int shared)
{
    size_t n = q_model_float_count(&c, shared);
    CHECK(n > 0);
    float *w = random_floats(n);
    q_model m;
    CHECK_EQ_INT(q_model_from_floats(&m, &c, w, n - 1, shared), Q_ERR_TRUNCATED);
    CHECK_EQ_INT(q_model_from_floats(&m, &c, w, n, shared), Q_OK);
    compare(&m, NULL, w, shared, 0, 1e-4);
    for (size_t k = 0; k < n_tables; k++)
        compare(&m, tables[k], w, shared, 0, 1e-4);
    same_logits_any_threads_and_batch(&m);

    /* the same model in every other weight type */
    const q_tensor_type types[5] = {Q_TENSOR_F16, Q_TENSOR_BF16, Q_TENSOR_Q8_0, Q_TENSOR_Q4_0,
                                    Q_TENSOR_Q8_SPLIT};
    for (int k = 0; k < 5; k++) {
        int blocked = types[k] == Q_TENSOR_Q8_0 || types[k] == Q_TENSOR_Q4_0;
        if (blocked && (c.dim % 32 != 0 || c.hidden_dim % 32 != 0))
            continue;
        float *deq = malloc(n * sizeof(float));
        memcpy(deq, w, n * sizeof(float));
        q_model qm = m;
        qm.layers = malloc(c.n_layers * sizeof(q_layer));
        memcpy(qm.layers, m.layers, c.n_layers * sizeof(q_layer));
        void *owned[1 + 9 * 8 + 1];
        size_t n_owned = 0;
        qm.token_embedding = convert(&m.token_embedding, types[k], w, deq, &owned[n_owned++]);
        if (shared)
            qm.classifier = qm.token_embedding;
        else
            qm.classifier = convert(&m.classifier, types[k], w, deq, &owned[n_owned++]);
        for (size_t l = 0; l < c.n_layers; l++) {
            q_tensor *ts[7] = {&qm.layers[l].wq, &qm.layers[l].wk, &qm.layers[l].wv,
                               &qm.layers[l].wo, &qm.layers[l].w1, &qm.layers[l].w2,
                               &qm.layers[l].w3};
            for (int j = 0; j < 7; j++)
                *ts[j] = convert(ts[j], types[k], w, deq, &owned[n_owned++]);
        }
        /* Q8_0 and Q4_0 weights multiply int8-quantized activations (the reference does
         * the same) */
        for (size_t t = 0; t < n_tables; t++)
            compare(&qm, tables[t], deq, shared, blocked, 1e-4);
        same_logits_any_threads_and_batch(&qm);
        for (size_t i = 0; i < n_owned; i++)
            free(owned[i]);
        free(qm.layers);
        free(deq);
    }
    q_model_free(&m);
    free(w);
}

int main(void)
{
    tables[0] = q_kernels_scalar();
    size_t n_opt = q_kernels_optimized(tables + 1, 4);
    n_tables = 1 + (n_opt < 4 ? n_opt : 4);
    for (size_t k = 0; k < n_tables; k++)
        printf("test_forward: kernel table %s\n", tables[k]->name);
    if (q_kernels_avx2() == NULL)
        printf("test_forward: no AVX2 table on this CPU/build: skipped\n");
    if (q_kernels_avx512() == NULL)
        printf("test_forward: no AVX-512 table on this CPU/build: skipped\n");
    /* grouped-query attention, shared classifier, Q8_0-compatible widths */
    test_config((q_config){64, 96, 2, 8, 4, 37, 10, 10000.0f, 1e-5f, Q_ARCH_LLAMA, 0, 0.0f}, 1);
    /* plain attention, separate classifier, odd hidden size, another theta */
    test_config((q_config){32, 44, 3, 4, 4, 19, 7, 500000.0f, 1e-6f, Q_ARCH_LLAMA, 0, 0.0f}, 0);
    /* one kv head for all */
    test_config((q_config){32, 32, 1, 4, 1, 11, 5, 10000.0f, 1e-5f, Q_ARCH_LLAMA, 0, 0.0f}, 0);

    /* bad configs */
    float w[8] = {0};
    q_model m;
    q_config bad = {32, 32, 1, 3, 1, 11, 5, 0.0f, 0.0f, Q_ARCH_LLAMA, 0, 0.0f}; /* 3 does not divide 32 */
    CHECK_EQ_INT(q_model_from_floats(&m, &bad, w, 8, 1), Q_ERR_INVALID_CONFIG);
    bad = (q_config){36, 32, 1, 4, 1, 11, 5, 0.0f, 0.0f, Q_ARCH_LLAMA, 0, 0.0f}; /* head size 9 is odd */
    CHECK_EQ_INT(q_model_from_floats(&m, &bad, w, 8, 1), Q_ERR_INVALID_CONFIG);
    bad = (q_config){32, 32, 1, 4, 3, 11, 5, 0.0f, 0.0f, Q_ARCH_LLAMA, 0, 0.0f}; /* 3 kv heads for 4 heads */
    CHECK_EQ_INT(q_model_from_floats(&m, &bad, w, 8, 1), Q_ERR_INVALID_CONFIG);
    bad = (q_config){32, 32, 1, 4, 4, 0, 5, 0.0f, 0.0f, Q_ARCH_LLAMA, 0, 0.0f};
    CHECK_EQ_INT(q_model_from_floats(&m, &bad, w, 8, 1), Q_ERR_INVALID_CONFIG);
    CHECK_EQ_INT(q_model_float_count(&bad, 1), 0);
    CHECK_EQ_INT(q_model_from_floats(&m, NULL, w, 8, 1), Q_ERR_INVALID_ARG);
    q_context ctx = {0};
    q_state st;
    q_model empty;
    memset(&empty, 0, sizeof empty);
    CHECK_EQ_INT(q_state_init(&st, &ctx, &empty), Q_ERR_INVALID_CONFIG);
    {
        /* options outside their domain: rejected before anything is allocated */
        q_config c = {32, 32, 1, 4, 4, 11, 5, 10000.0f, 1e-5f, Q_ARCH_LLAMA, 0, 0.0f};
        size_t n = q_model_float_count(&c, 1);
        float *wts = random_floats(n);
        q_model tiny;
        CHECK_EQ_INT(q_model_from_floats(&tiny, &c, wts, n, 1), Q_OK);
        q_state_options too_many = {.n_threads = Q_MAX_THREADS + 1};
        q_state_options too_big = {.max_batch = Q_MAX_BATCH + 1};
        CHECK_EQ_INT(q_state_init_ex(&st, &ctx, &tiny, &too_many), Q_ERR_INVALID_ARG);
        CHECK_EQ_INT(q_state_init_ex(&st, &ctx, &tiny, &too_big), Q_ERR_INVALID_ARG);
        CHECK(ctx.kv_buffer == NULL && ctx.scratch_buffer == NULL);
        /* the defaults: one thread, batches of Q_DEFAULT_BATCH capped at seq_len */
        CHECK_EQ_INT(q_state_init_ex(&st, &ctx, &tiny, NULL), Q_OK);
        CHECK(st.n_threads == 1 && st.pool == NULL && st.max_batch == c.seq_len &&
              st.kernels == q_kernels_select());
        q_state_free(&st);
        /* a thread that cannot start: Q_ERR_THREAD, nothing left in ctx */
        q_state_options two = {.n_threads = 2};
        int failed = 0;
        for (unsigned k = 1; k < 16 && !failed; k++) {
            q_test_fail_nth_os_call(k);
            q_error_code err = q_state_init_ex(&st, &ctx, &tiny, &two);
            int fired = q_test_failure_fired();
            q_test_fail_nth_os_call(0);
            if (fired) {
                CHECK(err == Q_ERR_ALLOC || err == Q_ERR_THREAD);
                CHECK(ctx.kv_buffer == NULL && ctx.scratch_buffer == NULL);
                failed = err == Q_ERR_THREAD;
            } else {
                CHECK_EQ_INT(err, Q_OK);
                q_state_free(&st);
                break;
            }
        }
        CHECK(failed); /* the countdown reached the worker's creation */
        q_model_free(&tiny);
        free(wts);
    }
    CHECK_EQ_INT(q_forward(&st, 0, 0, NULL), Q_ERR_INVALID_ARG);
    return check_result("test_forward");
}
