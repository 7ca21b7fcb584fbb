/*
 * Real pretrained models (../shared/models, see its MANIFEST.md): every checkpoint and
 * tokenizer parses with the documented config; mismatched pairs are rejected;
 * stories260K.gguf holds exactly the weights and vocabulary of stories260K.bin + tok512.bin.
 *
 * usage: test_real_models MODELS_DIR   (exit 77 = skipped when the folder is missing)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../check.h"
#include "qorus.h"

static const char *dir;

static const char *at(const char *name)
{
    static char buf[4][4096];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static const struct {
    const char *file;
    size_t c[7]; /* dim, hidden, layers, heads, kv heads, vocab, seq */
    const char *tok;
} models[] = {
    {"stories260K.bin", {64, 172, 5, 8, 4, 512, 512}, "tok512.bin"},
    {"aidreams260K.bin", {64, 172, 4, 4, 4, 512, 128}, "tok512_aidreams.bin"},
    {"llama2xs.bin", {64, 192, 5, 8, 4, 512, 256}, "tok512.bin"},
    {"babyllama105.bin", {128, 352, 5, 8, 4, 105, 256}, "tok105.bin"},
};

static void test_checkpoints(void)
{
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        q_context ctx = {0};
        q_model m;
        q_tokenizer t;
        q_diag d;
        q_error_code rc = q_model_load(&m, NULL, &ctx, at(models[i].file), Q_MMAP_EAGER, &d);
        CHECK_EQ_ERR(rc, Q_OK);
        if (rc != Q_OK) {
            fprintf(stderr, "  %s: %s at %llu\n", models[i].file, d.field,
                    (unsigned long long)d.offset);
            continue;
        }
        CHECK(m.format == Q_FORMAT_LLAMA2C && m.version == 0);
        CHECK(m.config.dim == models[i].c[0] && m.config.hidden_dim == models[i].c[1]);
        CHECK(m.config.n_layers == models[i].c[2] && m.config.n_heads == models[i].c[3]);
        CHECK(m.config.n_kv_heads == models[i].c[4] && m.config.vocab_size == models[i].c[5]);
        CHECK(m.config.seq_len == models[i].c[6]);
        CHECK(m.shared_classifier && m.classifier.data == m.token_embedding.data);
        CHECK(m.layers[0].wk.rows == models[i].c[4] * (models[i].c[0] / models[i].c[3]));
        CHECK(m.layers[m.config.n_layers - 1].w2.cols == models[i].c[1]);
        /* the freq_cis block sits between the final norm and the end of the file */
        CHECK((const unsigned char *)m.final_norm.data + 4 * m.config.dim +
                  4 * m.config.seq_len * (m.config.dim / m.config.n_heads) ==
              (const unsigned char *)ctx.weights_mmap + ctx.weights_size);
        rc = q_tokenizer_load(&t, at(models[i].tok), m.config.vocab_size, &d);
        CHECK_EQ_ERR(rc, Q_OK);
        CHECK(t.vocab_size == m.config.vocab_size);
        CHECK(t.bos_id == 1 && t.eos_id == 2);
        CHECK(t.has_byte_fallback == (t.vocab_size == 512));
        if (t.has_byte_fallback)
            CHECK(t.byte_tokens[0] == 3 && t.byte_tokens[255] == 258);
        else
            CHECK(t.byte_tokens[0] == Q_TOKEN_NONE);
        if (rc == Q_OK)
            CHECK(strcmp(t.pieces[1], "\n<s>\n") == 0);
        q_tokenizer_free(&t);
        q_model_free(&m);
        q_free_memory(&ctx);
    }
}

static void test_mismatched_pairs(void)
{
    q_tokenizer t;
    q_diag d;
    /* the checkpoint/tokenizer mismatch in both directions */
    CHECK_EQ_ERR(q_tokenizer_load(&t, at("tok105.bin"), 512, &d), Q_ERR_VOCAB_MISMATCH);
    CHECK(t.vocab_size == 0 && t.pieces == NULL);
    CHECK_EQ_ERR(q_tokenizer_load(&t, at("tok512.bin"), 105, &d), Q_ERR_VOCAB_MISMATCH);
    CHECK_EQ_ERR(q_tokenizer_load(&t, at("tok512.bin"), 0, &d), Q_OK);
    CHECK(t.vocab_size == 512 && t.max_token_length == 7);
    q_tokenizer_free(&t);
    /* a tokenizer is no model, a model no tokenizer */
    {
        q_context ctx = {0};
        q_model m;
        CHECK(q_model_load(&m, NULL, &ctx, at("tok512.bin"), Q_MMAP_LAZY, &d) != Q_OK);
        CHECK(ctx.weights_mmap == NULL);
        CHECK(q_tokenizer_load(&t, at("stories260K.bin"), 512, &d) != Q_OK);
    }
}

static int same_tensor(const q_tensor *a, const q_tensor *b)
{
    float *x, *y;
    int same = a->rows == b->rows && a->cols == b->cols;
    if (!same)
        return 0;
    x = malloc(a->cols * sizeof(float));
    y = malloc(a->cols * sizeof(float));
    for (size_t r = 0; same && r < a->rows; r++) {
        same = q_tensor_read_row(a, r, x) == Q_OK && q_tensor_read_row(b, r, y) == Q_OK &&
               memcmp(x, y, a->cols * sizeof(float)) == 0;
    }
    free(x);
    free(y);
    return same;
}

/* GGUF spells the SentencePiece space as U+2581 where tokenizer.bin has ' ' */
static int same_piece(const char *gguf, size_t glen, const char *bin, size_t blen)
{
    size_t i = 0, j = 0;
    while (i < glen && j < blen) {
        if (glen - i >= 3 && memcmp(gguf + i, "\xe2\x96\x81", 3) == 0 && bin[j] == ' ') {
            i += 3;
            j++;
        } else if (gguf[i] == bin[j]) {
            i++;
            j++;
        } else {
            return 0;
        }
    }
    return i == glen && j == blen;
}

static void test_gguf_equals_bin(void)
{
    q_context cb = {0}, cg = {0};
    q_model b, g;
    q_tokenizer tb, tg;
    q_diag d;
    CHECK_EQ_ERR(q_model_load(&b, NULL, &cb, at("stories260K.bin"), Q_MMAP_LAZY, &d), Q_OK);
    CHECK_EQ_ERR(q_model_load(&g, &tg, &cg, at("stories260K.gguf"), Q_MMAP_LAZY, &d), Q_OK);
    CHECK_EQ_ERR(q_tokenizer_load(&tb, at("tok512.bin"), 512, &d), Q_OK);
    if (b.layers == NULL || g.layers == NULL || tb.pieces == NULL || tg.pieces == NULL) {
        fprintf(stderr, "  a stories260K file failed to load\n");
        CHECK(0);
        goto out;
    }
    CHECK(g.format == Q_FORMAT_GGUF && g.version == 3);
    CHECK(g.config.dim == b.config.dim && g.config.hidden_dim == b.config.hidden_dim);
    CHECK(g.config.n_layers == b.config.n_layers && g.config.n_heads == b.config.n_heads);
    CHECK(g.config.n_kv_heads == b.config.n_kv_heads && g.config.vocab_size == b.config.vocab_size);
    CHECK(g.config.seq_len == 2048 && b.config.seq_len == 512);
    CHECK(g.config.rope_theta == 10000.0f);
    CHECK(g.config.norm_eps > 0.0f && g.config.norm_eps <= 1e-5f);
    CHECK(same_tensor(&g.token_embedding, &b.token_embedding));
    CHECK(same_tensor(&g.classifier, &b.classifier)); /* written out, equal to the embedding */
    CHECK(same_tensor(&g.final_norm, &b.final_norm));
    for (size_t l = 0; l < b.config.n_layers; l++) {
        const q_layer *x = &g.layers[l], *y = &b.layers[l];
        CHECK(same_tensor(&x->attn_norm, &y->attn_norm));
        CHECK(same_tensor(&x->wq, &y->wq)); /* no q/k permutation */
        CHECK(same_tensor(&x->wk, &y->wk));
        CHECK(same_tensor(&x->wv, &y->wv));
        CHECK(same_tensor(&x->wo, &y->wo));
        CHECK(same_tensor(&x->ffn_norm, &y->ffn_norm));
        CHECK(same_tensor(&x->w1, &y->w1));
        CHECK(same_tensor(&x->w2, &y->w2));
        CHECK(same_tensor(&x->w3, &y->w3));
    }
    CHECK(tg.vocab_size == tb.vocab_size && tg.bos_id == 1 && tg.eos_id == 2);
    CHECK(strcmp(tg.pieces[1], "<s>") == 0 && strcmp(tg.pieces[2], "</s>") == 0);
    for (size_t i = 0; i < tb.vocab_size && i < tg.vocab_size; i++) {
        if (i != 1 && i != 2 && !same_piece(tg.pieces[i], tg.piece_lengths[i], tb.pieces[i],
                                            tb.piece_lengths[i])) {
            fprintf(stderr, "  piece %zu differs\n", i);
            CHECK(0);
            break;
        }
        if (tg.scores[i] != tb.scores[i]) {
            fprintf(stderr, "  score %zu differs\n", i);
            CHECK(0);
            break;
        }
    }
    CHECK(tg.has_byte_fallback && memcmp(tg.byte_tokens, tb.byte_tokens, sizeof tb.byte_tokens) == 0);
out:
    q_model_free(&b);
    q_model_free(&g);
    q_tokenizer_free(&tb);
    q_tokenizer_free(&tg);
    q_free_memory(&cb);
    q_free_memory(&cg);
}

int main(int argc, char **argv)
{
    struct stat st;
    if (argc != 2 || stat(argv[1], &st) != 0 || !S_ISDIR(st.st_mode) ||
        stat(((dir = argv[1]), at("stories260K.bin")), &st) != 0) {
        fprintf(stderr, "models folder missing: skipped\n");
        return 77;
    }
    RUN_TEST(test_checkpoints);
    RUN_TEST(test_mismatched_pairs);
    RUN_TEST(test_gguf_equals_bin);
    return check_failures ? 1 : 0;
}
