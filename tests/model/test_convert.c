/*
 * qorus-model round trips and API edge cases:
 *   - random v0 -> ak42 v1 -> v0 is byte-identical (weights, header, freq_cis);
 *   - random v0 -> GGUF (f32) -> v0 + tokenizer.bin is byte-identical;
 *   - v2 (Q8_0 split) dequantizes within half a quantization step of every group;
 *   - GGUF f16 / bf16 / q8_0 / q4_0 / q4_k / q5_k / q6_k within their rounding bounds;
 *   - --type q4_k_m gives Q6_K to exactly the tensors llama.cpp's recipe names;
 *   - random --arch qwen2 / llama3: the architecture, biases and rope factors survive a
 *     GGUF -> GGUF conversion bit for bit, a llama2.c checkpoint refuses them, and llama3's
 *     factors follow Llama 3.1's rule; --vocab-from takes another file's vocabulary;
 *   - --vocab-from a byte-level BPE GGUF (vocab-only or a whole model): the model and its
 *     GGUF -> GGUF conversion carry the whole vocabulary (kind, pre-tokenizer, pieces, types,
 *     merges, special ids, add_bos); llama2.c outputs refuse it with one line;
 *   - stories260K.bin -> v1 -> v0 has identical tensors, -> v2 within the Q8 bound
 *     (skipped without the models folder);
 *   - q_model_free / q_tokenizer_free on zeroed structs and twice; NULL arguments.
 *
 * usage: test_convert QORUS_MODEL_TOOL WORKDIR MODELS_DIR
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../check.h"
#include "qorus.h"

static const char *tool, *work, *models;

static const char *wpath(const char *name)
{
    static char buf[8][4096];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", work, name);
    return buf[k];
}

static int run(const char *args)
{
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "'%s' %s >/dev/null", tool, args);
    return system(cmd);
}

static int same_file(const char *a, const char *b)
{
    FILE *x = fopen(a, "rb"), *y = fopen(b, "rb");
    int same = x != NULL && y != NULL;
    while (same) {
        int c = fgetc(x), d = fgetc(y);
        if (c != d)
            same = 0;
        if (c == EOF || d == EOF)
            break;
    }
    if (x)
        fclose(x);
    if (y)
        fclose(y);
    return same;
}

typedef struct loaded {
    q_context ctx;
    q_model m;
    q_tokenizer t;
    q_error_code rc;
} loaded;

static void load(loaded *l, const char *path)
{
    q_diag d;
    memset(l, 0, sizeof *l);
    l->rc = q_model_load(&l->m, &l->t, &l->ctx, path, Q_MMAP_LAZY, &d);
    if (l->rc != Q_OK)
        fprintf(stderr, "  %s: %s (%s)\n", path, q_error_name(l->rc), d.field);
}

static void unload(loaded *l)
{
    q_model_free(&l->m);
    q_tokenizer_free(&l->t);
    q_free_memory(&l->ctx);
}

/* max |a - b| over a row-wise walk, and whether every element is within
 * rel * max|group of a| (group = `group` consecutive values of a row) */
static int close_tensor(const q_tensor *ref, const q_tensor *got, size_t group, float rel)
{
    float *x, *y;
    int ok = ref->rows == got->rows && ref->cols == got->cols;
    if (!ok)
        return 0;
    x = malloc(ref->cols * sizeof(float));
    y = malloc(ref->cols * sizeof(float));
    for (size_t r = 0; ok && r < ref->rows; r++) {
        ok = q_tensor_read_row(ref, r, x) == Q_OK && q_tensor_read_row(got, r, y) == Q_OK;
        for (size_t g0 = 0; ok && g0 < ref->cols; g0 += group) {
            float amax = 0.0f;
            for (size_t i = g0; i < g0 + group && i < ref->cols; i++)
                amax = fmaxf(amax, fabsf(x[i]));
            for (size_t i = g0; i < g0 + group && i < ref->cols; i++)
                if (fabsf(x[i] - y[i]) > rel * amax + 3e-8f * (rel > 0.0f))
                    ok = 0;
        }
    }
    free(x);
    free(y);
    return ok;
}

static int models_close(const q_model *a, const q_model *b, size_t group, float rel)
{
    int ok = a->config.n_layers == b->config.n_layers && a->config.dim == b->config.dim;
    ok = ok && close_tensor(&a->token_embedding, &b->token_embedding, group, rel);
    ok = ok && close_tensor(&a->classifier, &b->classifier, group, rel);
    ok = ok && close_tensor(&a->final_norm, &b->final_norm, 1, 0.0f);
    for (size_t l = 0; ok && l < a->config.n_layers; l++) {
        const q_layer *x = &a->layers[l], *y = &b->layers[l];
        ok = close_tensor(&x->attn_norm, &y->attn_norm, 1, 0.0f) &&
             close_tensor(&x->ffn_norm, &y->ffn_norm, 1, 0.0f) &&
             close_tensor(&x->wq, &y->wq, group, rel) && close_tensor(&x->wk, &y->wk, group, rel) &&
             close_tensor(&x->wv, &y->wv, group, rel) && close_tensor(&x->wo, &y->wo, group, rel) &&
             close_tensor(&x->w1, &y->w1, group, rel) && close_tensor(&x->w2, &y->w2, group, rel) &&
             close_tensor(&x->w3, &y->w3, group, rel);
    }
    return ok;
}

/* Q8: |x - q*s| <= s/2 with s = max|group|/127, plus float rounding */
#define Q8_REL (0.5f / 127.0f * 1.001f)
/* F16: relative 2^-11 of each value (group of 1), plus half the smallest subnormal step */
#define F16_REL (1.0f / 2048.0f * 1.001f)
/* Q4_0: d = max / -8 (max: the block's value of largest magnitude), codes 0..15: rounding
 * costs |d| / 2 = |max| / 16, but a value near -max needs code 16, clamped to 15: up to
 * |max| / 8; plus the f16 rounding of d, times |code - 8| <= 8: |max| * 2^-11 */
#define Q4_REL (1.0f / 8.0f * 1.001f + 1.0f / 2048.0f)
/* BF16: 8 significant bits, relative 2^-8 (its subnormals are float32's, below any weight) */
#define BF16_REL (1.0f / 256.0f * 1.001f)

/* Q6_K (super-blocks of 256): a 16-weight half-block's ideal step is s = big / -32 (big:
 * its value of largest magnitude) and its real one d * scale, scale = round(s / d), within
 * d / 2 of s (d = the largest ideal step of the super-block / 127). The value opposite big
 * needs code 32 and gets 31: off by 32 s - 31 (s - d / 2) = s + 15.5 d <= (1 + 15.5 / 127)
 * amax / 32 (amax: the super-block's largest magnitude); plus the f16 rounding of d */
#define Q6K_REL ((1.0f + 15.5f / 127.0f) / 32.0f * 1.001f + 1.0f / 1024.0f)

/*
 * Q4_K / Q5_K (super-blocks of 256, nmax = 15 or 31 steps per 32-weight sub-block; amax:
 * the super-block's largest magnitude). A sub-block's ideal step is scale = (hi - lo) /
 * nmax <= 2 amax / nmax (lo = min(0, min x), hi = max x) and its ideal offset min = -lo <=
 * amax; d = f16(max scale / 63), dmin = f16(max min / 63). The f16 rounding is relative
 * <= 2^-10 here (d >= 2^-15 in these models; 2^-11 where normal), so scale / d <= 63.07
 * still rounds to 63: the stored step S = d * round(scale / d) is within d / 2 of scale
 * and the offset M = dmin * round(min / dmin) within dmin / 2 of min. A weight in
 * [-M, -M + nmax S] is off by <= S / 2 <= scale / 2 + d / 4 <= amax / nmax + amax /
 * (126 nmax) (d <= 2 amax / (63 nmax)); one beyond either end by <= |M - min| + nmax |S -
 * scale| <= dmin / 2 + nmax d / 2 <= amax / 126 + amax / 63 = amax / 42, less. So
 * |x - x'| <= (1 + 1/126) amax / nmax; the factor 1.001 covers the f16 rounding in d / 4
 * and float arithmetic. The first term is reached (a weight half-way between two codes of a
 * sub-block spanning [-amax, amax]): the bound is tight, half of it fails.
 */
#define Q4K_REL ((1.0f + 1.0f / 126.0f) / 15.0f * 1.001f)
#define Q5K_REL ((1.0f + 1.0f / 126.0f) / 31.0f * 1.001f)

/* Q6_K needs rows of whole super-blocks: a model of width 256 */
static void test_q6_k_round_trip(void)
{
    loaded a, b;
    char args[8192];
    snprintf(args, sizeof args,
             "random -o '%s' -z '%s' --dim 256 --hidden 512 --layers 1 --heads 4 --vocab 64 "
             "--seq 8 --seed 3 --unshared",
             wpath("k0.bin"), wpath("k0.tok"));
    CHECK(run(args) == 0);
    snprintf(args, sizeof args, "convert '%s' '%s' --gguf --type q6_k -z '%s'", wpath("k0.bin"),
             wpath("k6.gguf"), wpath("k0.tok"));
    CHECK(run(args) == 0);
    /* a width that is not a multiple of 256 is refused with a message */
    snprintf(args, sizeof args, "convert '%s' '%s' --gguf --type q6_k -z '%s' 2>/dev/null",
             wpath("r0.bin"), wpath("bad6.gguf"), wpath("r0.tok"));
    CHECK(run(args) != 0);
    load(&a, wpath("k0.bin"));
    load(&b, wpath("k6.gguf"));
    CHECK(b.rc == Q_OK && b.m.layers && b.m.layers[0].w2.type == Q_TENSOR_Q6_K &&
          b.m.classifier.type == Q_TENSOR_Q6_K);
    CHECK(a.rc == Q_OK && b.rc == Q_OK && models_close(&a.m, &b.m, 256, Q6K_REL));
    CHECK(a.rc == Q_OK && b.rc == Q_OK && !models_close(&a.m, &b.m, 256, Q6K_REL / 16));
    unload(&b);
    unload(&a);
}

/* The raw float32 values of an F32 vector tensor equal `want` (n values) bit for bit */
static int f32_vector_is(const q_tensor *t, const float *want, size_t n)
{
    return t->data != NULL && t->type == Q_TENSOR_F32 && t->rows * t->cols == n &&
           memcmp(t->data, want, n * sizeof(float)) == 0;
}

/* --arch qwen2 and llama3 through random, convert and the llama2.c refusal */
static void test_arch_round_trips(void)
{
    loaded a, b;
    char args[8192];
    /* qwen2: biases in every layer, NEOX pairs, its keys; kept by GGUF -> GGUF */
    snprintf(args, sizeof args,
             "random -o '%s' --gguf --arch qwen2 --dim 64 --hidden 96 --layers 2 --heads 4 "
             "--kv-heads 2 --vocab 64 --seq 16 --seed 5",
             wpath("q2.gguf"));
    CHECK(run(args) == 0);
    snprintf(args, sizeof args, "convert '%s' '%s' --gguf --type f32", wpath("q2.gguf"),
             wpath("q2b.gguf"));
    CHECK(run(args) == 0);
    load(&a, wpath("q2.gguf"));
    load(&b, wpath("q2b.gguf"));
    CHECK(a.rc == Q_OK && a.m.config.arch == Q_ARCH_QWEN2 && a.m.config.rope_neox == 1 &&
          a.m.config.rope_theta == 1000000.0f && a.m.rope_factors.data == NULL);
    for (size_t l = 0; a.rc == Q_OK && b.rc == Q_OK && l < 2; l++) {
        const q_layer *x = &a.m.layers[l], *y = &b.m.layers[l];
        CHECK(x->bq.data != NULL && x->bk.data != NULL && x->bv.data != NULL);
        CHECK(x->bq.cols == 64 && x->bk.cols == 32 && x->bv.cols == 32);
        CHECK(f32_vector_is(&y->bq, x->bq.data, 64) && f32_vector_is(&y->bk, x->bk.data, 32) &&
              f32_vector_is(&y->bv, x->bv.data, 32));
    }
    CHECK(b.rc == Q_OK && b.m.config.arch == Q_ARCH_QWEN2 && b.m.config.rope_neox == 1);
    unload(&b);
    unload(&a);
    /* a llama2.c checkpoint holds none of it: refused, nothing written */
    snprintf(args, sizeof args, "convert '%s' '%s' --version 0 2>/dev/null", wpath("q2.gguf"),
             wpath("q2.bin"));
    CHECK(run(args) != 0);
    FILE *f = fopen(wpath("q2.bin"), "rb");
    CHECK(f == NULL);
    if (f != NULL)
        fclose(f);

    /* llama3: rope factors by Llama 3.1's rule (8 / 1 / 4 / 8192) for theta 500000 and a
     * head size of 16: 1 for wavelengths below 2048, 8 above 8192, a blend between */
    snprintf(args, sizeof args,
             "random -o '%s' --gguf --arch llama3 --dim 64 --hidden 96 --layers 1 --heads 4 "
             "--vocab 64 --seq 16 --seed 6",
             wpath("l3.gguf"));
    CHECK(run(args) == 0);
    snprintf(args, sizeof args, "convert '%s' '%s' --gguf --type q8_0", wpath("l3.gguf"),
             wpath("l3b.gguf"));
    CHECK(run(args) == 0);
    load(&a, wpath("l3.gguf"));
    load(&b, wpath("l3b.gguf"));
    CHECK(a.rc == Q_OK && a.m.config.arch == Q_ARCH_LLAMA && a.m.config.rope_neox == 0 &&
          a.m.config.rope_theta == 500000.0f && a.m.rope_factors.cols == 8);
    if (a.rc == Q_OK && a.m.rope_factors.data != NULL) {
        float fac[8];
        memcpy(fac, a.m.rope_factors.data, sizeof fac);
        for (int j = 0; j < 8; j++) {
            double wavelen = 2.0 * 3.14159265358979 * pow(500000.0, (double)(2 * j) / 16.0);
            double want = wavelen < 2048.0   ? 1.0
                          : wavelen > 8192.0 ? 8.0
                                             : 1.0 / ((1.0 - (8192.0 / wavelen - 1.0) / 3.0) / 8.0 +
                                                      (8192.0 / wavelen - 1.0) / 3.0);
            if (fabs(fac[j] - want) > 1e-6 * want)
                fprintf(stderr, "  rope factor %d: %g, want %g\n", j, (double)fac[j], want);
            CHECK(fabs(fac[j] - want) <= 1e-6 * want);
        }
        CHECK(fac[0] == 1.0f && fac[7] == 8.0f); /* both ends of the rule occur */
        CHECK(b.rc == Q_OK && f32_vector_is(&b.m.rope_factors, fac, 8));
    }
    unload(&b);
    unload(&a);
}

/* --vocab-from: a GGUF model with another file's vocabulary (a tokenizer.bin) */
static void test_vocab_from(void)
{
    loaded a;
    char args[8192];
    q_tokenizer t;
    q_diag d;
    snprintf(args, sizeof args,
             "random -o '%s' -z '%s' --dim 32 --hidden 48 --layers 1 --heads 2 --vocab 300 "
             "--seq 8 --seed 7",
             wpath("v0.bin"), wpath("v0.tok"));
    CHECK(run(args) == 0);
    /* --vocab 64 is overridden by the file's 300 pieces */
    snprintf(args, sizeof args,
             "random -o '%s' --gguf --vocab 64 --vocab-from '%s' --dim 32 --hidden 48 "
             "--layers 1 --heads 2 --seq 8 --seed 9",
             wpath("vf.gguf"), wpath("v0.tok"));
    CHECK(run(args) == 0);
    memset(&t, 0, sizeof t);
    CHECK_EQ_INT(q_tokenizer_load(&t, wpath("v0.tok"), 0, &d), Q_OK);
    load(&a, wpath("vf.gguf"));
    CHECK(a.rc == Q_OK && a.m.config.vocab_size == 300 && a.t.vocab_size == 300);
    for (size_t i = 0; a.rc == Q_OK && i < t.vocab_size && i < a.t.vocab_size; i++)
        if (t.piece_lengths[i] != a.t.piece_lengths[i] ||
            memcmp(t.pieces[i], a.t.pieces[i], t.piece_lengths[i]) != 0 ||
            t.scores[i] != a.t.scores[i]) {
            fprintf(stderr, "  piece %zu differs\n", i);
            CHECK(0);
            break;
        }
    unload(&a);
    q_tokenizer_free(&t);
    /* a file that is neither: a clear error */
    snprintf(args, sizeof args, "random -o '%s' --gguf --vocab-from '%s' 2>/dev/null",
             wpath("vbad.gguf"), wpath("missing.tok"));
    CHECK(run(args) != 0);
}

/* Whether two vocabularies are the same: kind, pre-tokenizer, pieces, scores, token types,
 * merges, special ids and add_bos. */
static int same_vocab(const q_tokenizer *a, const q_tokenizer *b)
{
    if (a->vocab_size != b->vocab_size || a->kind != b->kind || a->pretok != b->pretok ||
        a->bos_id != b->bos_id || a->eos_id != b->eos_id || a->eot_id != b->eot_id ||
        a->add_bos != b->add_bos || a->n_merges != b->n_merges ||
        (a->token_types == NULL) != (b->token_types == NULL))
        return 0;
    for (size_t i = 0; i < a->vocab_size; i++)
        if (a->piece_lengths[i] != b->piece_lengths[i] ||
            memcmp(a->pieces[i], b->pieces[i], a->piece_lengths[i]) != 0 ||
            a->scores[i] != b->scores[i] ||
            (a->token_types != NULL && a->token_types[i] != b->token_types[i]))
            return 0;
    return a->n_merges == 0 || memcmp(a->merges, b->merges, 3 * a->n_merges * sizeof(uint32_t)) == 0;
}

/* Runs the tool expecting failure with exactly one stderr line naming `name`. */
static int refused_one_line(const char *args, const char *name)
{
    char cmd[16384], line[4096];
    int lines = 0, named = 0;
    snprintf(cmd, sizeof cmd, "'%s' %s >/dev/null 2>'%s'", tool, args, wpath("err.txt"));
    if (system(cmd) == 0)
        return 0;
    FILE *f = fopen(wpath("err.txt"), "r");
    if (f == NULL)
        return 0;
    while (fgets(line, sizeof line, f) != NULL) {
        lines++;
        named |= strstr(line, name) != NULL;
    }
    fclose(f);
    return lines == 1 && named;
}

/* --vocab-from a byte-level BPE vocabulary (the generator's vocab-only GGUF, and a whole
 * qwen2 model): the model GGUF carries the whole vocabulary, and so does a GGUF -> GGUF
 * conversion; llama2.c outputs refuse it with one line. */
static void test_vocab_from_bpe(void)
{
    char args[8192], src[4096], src_q[4096];
    q_tokenizer want, got;
    q_diag d;
    loaded a, b;
    snprintf(args, sizeof args, "malformed '%s' --no-manifest", wpath("mal"));
    CHECK(run(args) == 0);
    snprintf(src, sizeof src, "%s", wpath("mal/fuzz_gguf/vocab_only_bpe_llama3.gguf"));
    snprintf(src_q, sizeof src_q, "%s", wpath("mal/fuzz_gguf/valid_bpe_qwen2.gguf"));
    memset(&want, 0, sizeof want);
    CHECK_EQ_ERR(q_vocab_load(&want, src, &d), Q_OK);
    CHECK(want.kind == Q_VOCAB_BPE && want.pretok == Q_PRETOK_LLAMA3 && want.n_merges > 20 &&
          want.token_types != NULL && want.eot_id != Q_TOKEN_NONE && want.add_bos == 0);

    snprintf(args, sizeof args,
             "random -o '%s' --gguf --arch llama3 --vocab-from '%s' --dim 32 --hidden 64 "
             "--layers 1 --heads 2 --seq 8 --seed 5",
             wpath("vbpe.gguf"), src);
    CHECK(run(args) == 0);
    load(&a, wpath("vbpe.gguf"));
    CHECK(a.rc == Q_OK && a.m.config.vocab_size == want.vocab_size);
    CHECK(a.rc == Q_OK && same_vocab(&want, &a.t));

    /* GGUF -> GGUF keeps it (q8_0 matrices: dim 32) */
    snprintf(args, sizeof args, "convert '%s' '%s' --gguf --type q8_0", wpath("vbpe.gguf"),
             wpath("vbpe_q8.gguf"));
    CHECK(run(args) == 0);
    load(&b, wpath("vbpe_q8.gguf"));
    CHECK(b.rc == Q_OK && same_vocab(&want, &b.t));
    unload(&b);
    unload(&a);
    q_tokenizer_free(&want);

    /* a whole model's vocabulary (qwen2 pre-tokenizer) */
    memset(&want, 0, sizeof want);
    CHECK_EQ_ERR(q_vocab_load(&want, src_q, &d), Q_OK);
    CHECK(want.kind == Q_VOCAB_BPE && want.pretok == Q_PRETOK_QWEN2);
    snprintf(args, sizeof args,
             "random -o '%s' --gguf --arch qwen2 --vocab-from '%s' --dim 16 --hidden 32 "
             "--layers 1 --heads 2 --seq 8",
             wpath("vbpe_q.gguf"), src_q);
    CHECK(run(args) == 0);
    memset(&got, 0, sizeof got);
    CHECK_EQ_ERR(q_vocab_load(&got, wpath("vbpe_q.gguf"), &d), Q_OK);
    CHECK(same_vocab(&want, &got));
    q_tokenizer_free(&got);
    q_tokenizer_free(&want);

    /* llama2.c outputs: no place for merges */
    snprintf(args, sizeof args, "random -o '%s' --vocab-from '%s' --dim 32 --hidden 48 "
             "--layers 1 --heads 2 --seq 8", wpath("vbpe.bin"), src);
    CHECK(refused_one_line(args, "vocab_only_bpe_llama3.gguf"));
    snprintf(args, sizeof args, "random -o '%s' --gguf -z '%s' --vocab-from '%s' --dim 32 "
             "--hidden 48 --layers 1 --heads 2 --seq 8", wpath("vbpe2.gguf"), wpath("vbpe.tok"),
             src);
    CHECK(refused_one_line(args, "vocab_only_bpe_llama3.gguf"));
    snprintf(args, sizeof args, "convert '%s' '%s'", wpath("vbpe.gguf"), wpath("vbpe_c.bin"));
    CHECK(refused_one_line(args, "vbpe.gguf"));
    snprintf(args, sizeof args, "convert '%s' '%s' --gguf --tokenizer-out '%s'",
             wpath("vbpe.gguf"), wpath("vbpe_c.gguf"), wpath("vbpe_c.tok"));
    CHECK(refused_one_line(args, "vbpe.gguf"));
    struct stat st;
    CHECK(stat(wpath("vbpe.bin"), &st) != 0 && stat(wpath("vbpe_c.bin"), &st) != 0 &&
          stat(wpath("vbpe_c.tok"), &st) != 0);
}

/* Q4_K and Q5_K, like Q6_K: a model of width 256 */
static void test_q4_k_q5_k_round_trips(void)
{
    loaded a, b;
    char args[8192];
    snprintf(args, sizeof args,
             "random -o '%s' -z '%s' --dim 256 --hidden 512 --layers 1 --heads 4 --vocab 64 "
             "--seq 8 --seed 4 --unshared",
             wpath("kk.bin"), wpath("kk.tok"));
    CHECK(run(args) == 0);
    snprintf(args, sizeof args, "convert '%s' '%s' --gguf --type q4_k -z '%s'", wpath("kk.bin"),
             wpath("kk4.gguf"), wpath("kk.tok"));
    CHECK(run(args) == 0);
    snprintf(args, sizeof args, "convert '%s' '%s' --gguf --type q5_k -z '%s'", wpath("kk.bin"),
             wpath("kk5.gguf"), wpath("kk.tok"));
    CHECK(run(args) == 0);
    /* widths that are not multiples of 256 are refused with a message */
    snprintf(args, sizeof args, "convert '%s' '%s' --gguf --type q4_k -z '%s' 2>/dev/null",
             wpath("r0.bin"), wpath("bad4k.gguf"), wpath("r0.tok"));
    CHECK(run(args) != 0);
    snprintf(args, sizeof args, "convert '%s' '%s' --gguf --type q5_k -z '%s' 2>/dev/null",
             wpath("r0.bin"), wpath("bad5k.gguf"), wpath("r0.tok"));
    CHECK(run(args) != 0);
    load(&a, wpath("kk.bin"));
    load(&b, wpath("kk4.gguf"));
    CHECK(b.rc == Q_OK && b.m.layers && b.m.layers[0].w2.type == Q_TENSOR_Q4_K &&
          b.m.layers[0].wk.type == Q_TENSOR_Q4_K && b.m.classifier.type == Q_TENSOR_Q4_K &&
          b.m.token_embedding.type == Q_TENSOR_Q4_K);
    CHECK(a.rc == Q_OK && b.rc == Q_OK && models_close(&a.m, &b.m, 256, Q4K_REL));
    CHECK(a.rc == Q_OK && b.rc == Q_OK && !models_close(&a.m, &b.m, 256, Q4K_REL / 2));
    unload(&b);
    load(&b, wpath("kk5.gguf"));
    CHECK(b.rc == Q_OK && b.m.layers && b.m.layers[0].w2.type == Q_TENSOR_Q5_K &&
          b.m.layers[0].wq.type == Q_TENSOR_Q5_K && b.m.classifier.type == Q_TENSOR_Q5_K &&
          b.m.token_embedding.type == Q_TENSOR_Q5_K);
    CHECK(a.rc == Q_OK && b.rc == Q_OK && models_close(&a.m, &b.m, 256, Q5K_REL));
    CHECK(a.rc == Q_OK && b.rc == Q_OK && !models_close(&a.m, &b.m, 256, Q5K_REL / 2));
    unload(&b);
    unload(&a);
}

/* Whether every matrix of `m` has the type llama.cpp's Q4_K_M gives it: Q6_K for the
 * classifier (output.weight, or token_embd.weight when the classifier is shared) and for
 * attn_v / ffn_down of the layers flagged in `q6`, Q4_K for the rest */
static int q4_k_m_types(const q_model *m, const int *q6, size_t n_layers)
{
    int ok = m->config.n_layers == n_layers &&
             m->token_embedding.type == (m->shared_classifier ? Q_TENSOR_Q6_K : Q_TENSOR_Q4_K);
    ok = ok && m->classifier.type == Q_TENSOR_Q6_K;
    for (size_t l = 0; ok && l < n_layers; l++) {
        const q_layer *y = &m->layers[l];
        q_tensor_type hi = q6[l] ? Q_TENSOR_Q6_K : Q_TENSOR_Q4_K;
        ok = y->wv.type == hi && y->w2.type == hi && y->wq.type == Q_TENSOR_Q4_K &&
             y->wk.type == Q_TENSOR_Q4_K && y->wo.type == Q_TENSOR_Q4_K &&
             y->w1.type == Q_TENSOR_Q4_K && y->w3.type == Q_TENSOR_Q4_K;
        if (!ok)
            fprintf(stderr, "  layer %zu: attn_v %d ffn_down %d\n", l, (int)y->wv.type,
                    (int)y->w2.type);
    }
    return ok;
}

/* --type q4_k_m: the layers whose attn_v and ffn_down are Q6_K, i < n/8 || i >= 7n/8 ||
 * (i - n/8) % 3 == 2, written out for 8 and 16 layers */
static void test_q4_k_m_recipe(void)
{
    /* n = 8: n/8 = 1, 7n/8 = 7: layers 0, 3, 6 ((i - 1) % 3 == 2) and 7 */
    static const int q6_8[8] = {1, 0, 0, 1, 0, 0, 1, 1};
    /* n = 16: n/8 = 2, 7n/8 = 14: layers 0, 1, 4, 7, 10, 13, 14, 15 */
    static const int q6_16[16] = {1, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 1, 1};
    loaded a, b;
    char args[8192];
    /* convert from float32, separate classifier: output.weight is Q6_K */
    snprintf(args, sizeof args,
             "random -o '%s' -z '%s' --dim 256 --hidden 256 --layers 8 --heads 4 --kv-heads 1 "
             "--vocab 64 --seq 8 --seed 5 --unshared",
             wpath("km.bin"), wpath("km.tok"));
    CHECK(run(args) == 0);
    snprintf(args, sizeof args, "convert '%s' '%s' --gguf --type q4_k_m -z '%s'",
             wpath("km.bin"), wpath("km.gguf"), wpath("km.tok"));
    CHECK(run(args) == 0);
    load(&a, wpath("km.bin"));
    load(&b, wpath("km.gguf"));
    CHECK(b.rc == Q_OK && !b.m.shared_classifier && q4_k_m_types(&b.m, q6_8, 8));
    /* Q6K_REL < Q4K_REL: the Q4_K bound holds for the whole mix */
    CHECK(a.rc == Q_OK && b.rc == Q_OK && models_close(&a.m, &b.m, 256, Q4K_REL));
    unload(&b);
    unload(&a);
    /* random straight to GGUF, shared classifier: the token embedding stays Q4_K */
    snprintf(args, sizeof args,
             "random -o '%s' --dim 256 --hidden 256 --layers 16 --heads 4 --kv-heads 1 "
             "--vocab 64 --seq 8 --seed 6 --gguf --type q4_k_m",
             wpath("km16.gguf"));
    CHECK(run(args) == 0);
    load(&b, wpath("km16.gguf"));
    CHECK(b.rc == Q_OK && b.m.shared_classifier && q4_k_m_types(&b.m, q6_16, 16));
    unload(&b);
    /* the mix needs whole super-blocks too */
    snprintf(args, sizeof args, "convert '%s' '%s' --gguf --type q4_k_m -z '%s' 2>/dev/null",
             wpath("r0.bin"), wpath("badkm.gguf"), wpath("r0.tok"));
    CHECK(run(args) != 0);
}

static void test_random_round_trips(void)
{
    loaded a, b;
    char args[8192];
    snprintf(args, sizeof args,
             "random -o '%s' -z '%s' --dim 64 --hidden 96 --layers 2 --heads 4 --kv-heads 2 "
             "--vocab 300 --seq 32 --seed 7 --unshared",
             wpath("r0.bin"), wpath("r0.tok"));
    CHECK(run(args) == 0);
    snprintf(args, sizeof args, "convert '%s' '%s' --version 1", wpath("r0.bin"), wpath("r1.bin"));
    CHECK(run(args) == 0);
    snprintf(args, sizeof args, "convert '%s' '%s' --version 0", wpath("r1.bin"), wpath("r1-0.bin"));
    CHECK(run(args) == 0);
    CHECK(same_file(wpath("r0.bin"), wpath("r1-0.bin")));

    snprintf(args, sizeof args, "convert '%s' '%s' --gguf -z '%s'", wpath("r0.bin"),
             wpath("r.gguf"), wpath("r0.tok"));
    CHECK(run(args) == 0);
    snprintf(args, sizeof args, "convert '%s' '%s' --tokenizer-out '%s'", wpath("r.gguf"),
             wpath("rg-0.bin"), wpath("rg.tok"));
    CHECK(run(args) == 0);
    CHECK(same_file(wpath("r0.bin"), wpath("rg-0.bin")));
    CHECK(same_file(wpath("r0.tok"), wpath("rg.tok")));

    snprintf(args, sizeof args, "convert '%s' '%s' --version 2 --group-size 32", wpath("r0.bin"),
             wpath("r2.bin"));
    CHECK(run(args) == 0);
    snprintf(args, sizeof args, "convert '%s' '%s' --gguf --type f16 -z '%s'", wpath("r0.bin"),
             wpath("r16.gguf"), wpath("r0.tok"));
    CHECK(run(args) == 0);
    snprintf(args, sizeof args, "convert '%s' '%s' --gguf --type q8_0 -z '%s'", wpath("r0.bin"),
             wpath("rq8.gguf"), wpath("r0.tok"));
    CHECK(run(args) == 0);
    snprintf(args, sizeof args, "convert '%s' '%s' --gguf --type bf16 -z '%s'", wpath("r0.bin"),
             wpath("rbf16.gguf"), wpath("r0.tok"));
    CHECK(run(args) == 0);
    snprintf(args, sizeof args, "convert '%s' '%s' --gguf --type q4_0 -z '%s'", wpath("r0.bin"),
             wpath("rq4.gguf"), wpath("r0.tok"));
    CHECK(run(args) == 0);
    /* a group size that does not divide hidden (96) is refused */
    snprintf(args, sizeof args, "convert '%s' '%s' --version 2 --group-size 64 2>/dev/null",
             wpath("r0.bin"), wpath("bad.bin"));
    CHECK(run(args) != 0);

    load(&a, wpath("r0.bin"));
    load(&b, wpath("r2.bin"));
    CHECK(a.rc == Q_OK && b.rc == Q_OK && b.m.version == 2 && !b.m.shared_classifier);
    CHECK(b.m.layers && b.m.layers[0].wq.type == Q_TENSOR_Q8_SPLIT && b.m.layers[0].wq.group_size == 32);
    CHECK(a.rc == Q_OK && b.rc == Q_OK && models_close(&a.m, &b.m, 32, Q8_REL));
    unload(&b);
    load(&b, wpath("r16.gguf"));
    CHECK(b.rc == Q_OK && b.m.layers && b.m.layers[1].w2.type == Q_TENSOR_F16);
    CHECK(b.rc == Q_OK && models_close(&a.m, &b.m, 1, F16_REL));
    unload(&b);
    load(&b, wpath("rbf16.gguf"));
    CHECK(b.rc == Q_OK && b.m.layers && b.m.layers[0].w3.type == Q_TENSOR_BF16 &&
          b.m.classifier.type == Q_TENSOR_BF16);
    CHECK(b.rc == Q_OK && models_close(&a.m, &b.m, 1, BF16_REL));
    CHECK(b.rc == Q_OK && !models_close(&a.m, &b.m, 1, BF16_REL / 4)); /* really rounded */
    unload(&b);
    load(&b, wpath("rq4.gguf"));
    CHECK(b.rc == Q_OK && b.m.layers && b.m.layers[1].wo.type == Q_TENSOR_Q4_0);
    CHECK(b.rc == Q_OK && models_close(&a.m, &b.m, 32, Q4_REL));
    CHECK(b.rc == Q_OK && !models_close(&a.m, &b.m, 32, Q8_REL)); /* coarser than Q8 */
    unload(&b);
    load(&b, wpath("rq8.gguf"));
    CHECK(b.rc == Q_OK && b.m.layers && b.m.layers[0].w1.type == Q_TENSOR_Q8_0);
    /* ggml Q8_0 keeps its scale in f16: the step bound loosens by the scale's rounding */
    CHECK(b.rc == Q_OK && models_close(&a.m, &b.m, 32, Q8_REL + 128.0f / 127.0f / 2048.0f));
    unload(&b);
    unload(&a);
}

static void test_real_round_trips(void)
{
    char src[4096], args[16384];
    struct stat st;
    loaded a, b;
    snprintf(src, sizeof src, "%s/stories260K.bin", models);
    if (stat(src, &st) != 0) {
        fprintf(stderr, "  models folder missing: real round trips skipped\n");
        return;
    }
    snprintf(args, sizeof args, "convert '%s' '%s' --version 1", src, wpath("s1.bin"));
    CHECK(run(args) == 0);
    snprintf(args, sizeof args, "convert '%s' '%s' --version 0", wpath("s1.bin"), wpath("s1-0.bin"));
    CHECK(run(args) == 0);
    snprintf(args, sizeof args, "convert '%s' '%s' --version 2", src, wpath("s2.bin"));
    CHECK(run(args) == 0);
    load(&a, src);
    load(&b, wpath("s1-0.bin"));
    CHECK(a.rc == Q_OK && b.rc == Q_OK && models_close(&a.m, &b.m, 1, 0.0f));
    unload(&b);
    load(&b, wpath("s1.bin"));
    CHECK(b.rc == Q_OK && b.m.version == 1 && models_close(&a.m, &b.m, 1, 0.0f));
    unload(&b);
    load(&b, wpath("s2.bin"));
    /* hidden 172 and dim 64: the default group is 4 */
    CHECK(b.rc == Q_OK && b.m.version == 2 && b.m.token_embedding.group_size == 4);
    CHECK(b.rc == Q_OK && models_close(&a.m, &b.m, 4, Q8_REL));
    unload(&b);
    unload(&a);
}

static void test_free_and_args(void)
{
    q_model m;
    q_tokenizer t;
    q_context ctx = {0};
    q_diag d;
    float row[4];
    q_tensor z;
    memset(&m, 0, sizeof m);
    memset(&t, 0, sizeof t);
    q_model_free(&m);
    q_model_free(&m);
    q_model_free(NULL);
    q_tokenizer_free(&t);
    q_tokenizer_free(&t);
    q_tokenizer_free(NULL);
    CHECK_EQ_ERR(q_model_parse(NULL, NULL, "x", 1, &d), Q_ERR_INVALID_ARG);
    CHECK_EQ_ERR(q_model_parse(&m, NULL, NULL, 0, &d), Q_ERR_INVALID_ARG);
    CHECK_EQ_ERR(q_model_parse(&m, &t, "", 0, NULL), Q_ERR_TRUNCATED);
    CHECK_EQ_ERR(q_tokenizer_parse(NULL, "x", 1, 0, &d), Q_ERR_INVALID_ARG);
    CHECK_EQ_ERR(q_tokenizer_parse(&t, NULL, 0, 0, &d), Q_ERR_INVALID_ARG);
    CHECK_EQ_ERR(q_model_load(&m, &t, NULL, "x", Q_MMAP_LAZY, &d), Q_ERR_INVALID_ARG);
    CHECK_EQ_ERR(q_model_load(&m, &t, &ctx, NULL, Q_MMAP_LAZY, &d), Q_ERR_INVALID_ARG);
    CHECK_EQ_ERR(q_model_load(&m, &t, &ctx, wpath("does-not-exist"), Q_MMAP_LAZY, &d),
                 Q_ERR_FILE_OPEN);
    CHECK(ctx.weights_mmap == NULL);
    CHECK_EQ_ERR(q_tokenizer_load(&t, wpath("does-not-exist"), 0, &d), Q_ERR_FILE_OPEN);
    CHECK_EQ_ERR(q_tensor_read_row(NULL, 0, row), Q_ERR_INVALID_ARG);
    memset(&z, 0, sizeof z);
    CHECK_EQ_ERR(q_tensor_read_row(&z, 0, row), Q_ERR_INVALID_ARG);
    CHECK(q_f16_to_f32(0x3c00) == 1.0f && q_f16_to_f32(0xc000) == -2.0f);
    CHECK(q_f16_to_f32(0x0001) == 5.9604644775390625e-8f && q_f16_to_f32(0x7bff) == 65504.0f);
    CHECK(isinf(q_f16_to_f32(0x7c00)) && isnan(q_f16_to_f32(0x7e00)));
}

/* q_model_load into a context that already holds a KV cache and an arena is refused before
 * the file is touched: a parse error used to release the whole context (q_free_memory),
 * freeing regions the call did not create (a live q_state on that context then pointed at
 * freed memory). Found by fuzz_api (corpus/fuzz_api/crash-model-load-released-foreign-kv-cache). */
static void test_model_load_refuses_used_context(void)
{
    /* a truncated llama2.c header: mapped (>= Q_MIN_MODEL_FILE_BYTES), then rejected */
    unsigned char bytes[40];
    memset(bytes, 0, sizeof bytes);
    const int32_t header[7] = {8, 12, 1, 2, 1, 32, 6};
    memcpy(bytes, header, sizeof header);
    const char *path = wpath("truncated_v0.bin");
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (f == NULL)
        return;
    CHECK(fwrite(bytes, 1, sizeof bytes, f) == sizeof bytes);
    fclose(f);

    q_model m;
    q_diag d;
    q_context ctx = {0};
    CHECK_EQ_ERR(q_model_load(&m, NULL, &ctx, path, Q_MMAP_LAZY, &d), Q_ERR_TRUNCATED);
    CHECK(ctx.weights_mmap == NULL); /* a fresh context: released again on the parse error */

    CHECK_EQ_ERR(q_alloc_kv_cache(&ctx, 4096), Q_OK);
    CHECK_EQ_ERR(q_alloc_arena(&ctx, 4096), Q_OK);
    q_context before = ctx;
    CHECK_EQ_ERR(q_model_load(&m, NULL, &ctx, path, Q_MMAP_LAZY, &d), Q_ERR_INVALID_STATE);
    CHECK(strcmp(d.field, "ctx") == 0);
    CHECK(memcmp(&before, &ctx, sizeof ctx) == 0);
    ((unsigned char *)ctx.kv_buffer)[4095] = 1; /* still ours */
    CHECK(q_arena_alloc(&ctx, 64) != NULL);
    /* also refused with the arena alone, and with a missing file (checked first) */
    CHECK_EQ_ERR(q_free_kv_cache(&ctx), Q_OK);
    CHECK_EQ_ERR(q_model_load(&m, NULL, &ctx, wpath("does-not-exist"), Q_MMAP_LAZY, &d),
                 Q_ERR_INVALID_STATE);
    CHECK(ctx.scratch_buffer != NULL);
    q_free_memory(&ctx);
    remove(path);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: test_convert TOOL WORKDIR MODELS_DIR\n");
        return 2;
    }
    tool = argv[1];
    work = argv[2];
    models = argv[3];
    mkdir(work, 0777);
    RUN_TEST(test_free_and_args);
    RUN_TEST(test_model_load_refuses_used_context);
    RUN_TEST(test_random_round_trips);
    RUN_TEST(test_q6_k_round_trip);
    RUN_TEST(test_q4_k_q5_k_round_trips);
    RUN_TEST(test_q4_k_m_recipe);
    RUN_TEST(test_arch_round_trips);
    RUN_TEST(test_vocab_from);
    RUN_TEST(test_vocab_from_bpe);
    RUN_TEST(test_real_round_trips);
    return check_failures ? 1 : 0;
}
