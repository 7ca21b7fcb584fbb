/*
 * The malformed-file generator: one file per validation rule and per known bug class of
 * docs/model-formats.md, plus valid seeds, for llama2.c checkpoints, llama2.c tokenizers
 * and GGUF. Files go to OUTDIR/fuzz_model_llama2c/, OUTDIR/fuzz_gguf/ and
 * OUTDIR/fuzz_tokenizer/ (the corpus folders of the fuzz targets); the manifest
 * OUTDIR/manifest.tsv has one line per file:
 *
 *   relative-path <TAB> kind <TAB> expected-error-name <TAB> expected-vocab
 *
 * kind is llama2c or gguf (parse with q_model_parse, tokenizer requested) or tokenizer
 * (q_tokenizer_parse with expected-vocab; 0 = every token the file holds). Every file is
 * deterministic and below 64 KiB.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "malformed.h"
#include "model_io.h"

typedef struct gen {
    const char *dir;
    FILE *manifest;
    int count;
    int failed;
} gen;

static const char *kind_dir(const char *kind)
{
    if (strcmp(kind, "gguf") == 0)
        return "fuzz_gguf";
    if (strcmp(kind, "tokenizer") == 0)
        return "fuzz_tokenizer";
    return "fuzz_model_llama2c";
}

static void emit(gen *g, const char *kind, const char *name, const tbuf *b, const char *expect,
                 size_t vocab)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/%s", g->dir, kind_dir(kind), name);
    if (b->n >= 65536) {
        fprintf(stderr, "qorus-model: %s: %zu bytes, over the 64 KiB corpus limit\n", path, b->n);
        g->failed = 1;
    }
    if (tb_save(b, path) != 0) {
        fprintf(stderr, "qorus-model: %s: %s\n", path, strerror(errno));
        g->failed = 1;
        return;
    }
    if (g->manifest != NULL)
        fprintf(g->manifest, "%s/%s\t%s\t%s\t%zu\n", kind_dir(kind), name, kind, expect, vocab);
    g->count++;
}

/* ---------------------------------------------------------------- llama2.c */

static void poke_i32(tbuf *b, size_t at, int32_t v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    tb_poke_u32(b, at, u);
}

static void copy_buf(tbuf *dst, const tbuf *src, size_t n)
{
    memset(dst, 0, sizeof *dst);
    tb_put(dst, src->p, n < src->n ? n : src->n);
}

/* Emits `base` with int32 field `at` set to `v`. */
static void emit_poke(gen *g, const char *name, const tbuf *base, size_t at, int32_t v,
                      const char *expect)
{
    tbuf b;
    copy_buf(&b, base, base->n);
    poke_i32(&b, at, v);
    emit(g, "llama2c", name, &b, expect, 0);
    tb_free(&b);
}

static void emit_cut(gen *g, const char *kind, const char *name, const tbuf *base, size_t n,
                     const char *expect, size_t vocab)
{
    tbuf b;
    copy_buf(&b, base, n);
    emit(g, kind, name, &b, expect, vocab);
    tb_free(&b);
}

static void emit_append(gen *g, const char *kind, const char *name, const tbuf *base,
                        size_t extra, const char *expect, size_t vocab)
{
    tbuf b;
    copy_buf(&b, base, base->n);
    for (size_t i = 0; i < extra; i++)
        tb_u8(&b, (uint8_t)(0xA0 + i));
    emit(g, kind, name, &b, expect, vocab);
    tb_free(&b);
}

static void gen_llama2c(gen *g, const tm_model *shared, const tm_model *unshared)
{
    tbuf v0 = {0}, v0u = {0}, v1 = {0}, v1u = {0}, v2 = {0}, b = {0};
    static const struct { const char *name; int field; int32_t value; } fields[] = {
        /* legacy header: dim 0, hidden 4, layers 8, heads 12, kv 16, vocab 20, seq 24 */
        {"l2c_dim_zero", 0, 0},
        {"l2c_dim_negative", 0, -8},
        {"l2c_dim_huge", 0, (int32_t)Q_MAX_DIM + 8},
        {"l2c_hidden_zero", 1, 0},
        {"l2c_hidden_huge", 1, (int32_t)Q_MAX_HIDDEN_DIM + 1},
        {"l2c_layers_zero", 2, 0},
        {"l2c_layers_huge", 2, (int32_t)Q_MAX_LAYERS + 1},
        {"l2c_n_heads_zero", 3, 0},
        {"l2c_n_heads_negative", 3, -2},
        {"l2c_n_heads_huge", 3, (int32_t)Q_MAX_HEADS + 1},
        {"l2c_n_heads_not_dividing_dim", 3, 3},
        {"l2c_head_size_odd", 3, 8},
        {"l2c_n_kv_heads_zero", 4, 0},
        {"l2c_n_kv_heads_above_n_heads", 4, 4},
        {"l2c_vocab_zero", 5, 0},
        {"l2c_vocab_int_min", 5, INT32_MIN},
        {"l2c_vocab_huge", 5, (int32_t)Q_MAX_VOCAB + 1},
        {"l2c_vocab_negative_huge", 5, -(int32_t)Q_MAX_VOCAB - 1},
        {"l2c_seq_len_zero", 6, 0},
        {"l2c_seq_len_huge", 6, (int32_t)Q_MAX_SEQ_LEN + 1},
    };

    tm_write_llama2c(&v0, shared, 0, 0);
    tm_write_llama2c(&v0u, unshared, 0, 0);
    tm_write_llama2c(&v1, shared, 1, 0);
    tm_write_llama2c(&v1u, unshared, 1, 0);
    tm_write_llama2c(&v2, shared, 2, 4);

    /* valid seeds; the ak42 ones are also the "ak42 header read as legacy" class: a
     * loader must take them as versions 1 and 2 */
    emit(g, "llama2c", "valid_v0_shared.bin", &v0, "Q_OK", 0);
    emit(g, "llama2c", "valid_v0_unshared.bin", &v0u, "Q_OK", 0);
    emit(g, "llama2c", "valid_ak42_v1.bin", &v1, "Q_OK", 0);
    emit(g, "llama2c", "valid_ak42_v1_unshared.bin", &v1u, "Q_OK", 0);
    emit(g, "llama2c", "valid_ak42_v2_q8.bin", &v2, "Q_OK", 0);

    /* sizes */
    emit_cut(g, "llama2c", "l2c_empty", &v0, 0, "Q_ERR_TRUNCATED", 0);
    emit_cut(g, "llama2c", "l2c_magic_only", &v0, 3, "Q_ERR_TRUNCATED", 0);
    emit_cut(g, "llama2c", "l2c_short_header", &v0, 12, "Q_ERR_TRUNCATED", 0);
    emit_cut(g, "llama2c", "l2c_header_only", &v0, 28, "Q_ERR_TRUNCATED", 0);
    emit_cut(g, "llama2c", "l2c_truncated_last_float", &v0, v0.n - 4, "Q_ERR_TRUNCATED", 0);
    emit_cut(g, "llama2c", "l2c_truncated_half", &v0, v0.n / 2, "Q_ERR_TRUNCATED", 0);
    emit_cut(g, "llama2c", "l2c_truncated_odd", &v0, v0.n - 1, "Q_ERR_TRUNCATED", 0);
    emit_append(g, "llama2c", "l2c_trailing_bytes", &v0, 4, "Q_ERR_INVALID_CONFIG", 0);

    /* config fields; the legacy dim doubles as the format's magic */
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        emit_poke(g, fields[i].name, &v0, 4 * (size_t)fields[i].field, fields[i].value,
                  fields[i].field == 0 ? "Q_ERR_BAD_MAGIC" : "Q_ERR_INVALID_CONFIG");
    /* heads 4 (head size 2) with 3 kv heads: n_kv_heads does not divide n_heads */
    copy_buf(&b, &v0, v0.n);
    poke_i32(&b, 12, 4);
    poke_i32(&b, 16, 3);
    emit(g, "llama2c", "l2c_n_kv_heads_not_dividing", &b, "Q_ERR_INVALID_CONFIG", 0);
    tb_free(&b);

    /* the config disagrees with the bytes present */
    emit_poke(g, "l2c_shared_flag_flipped_to_unshared", &v0, 20, -(int32_t)shared->cfg.vocab_size,
              "Q_ERR_TRUNCATED");
    emit_poke(g, "l2c_unshared_flag_flipped_to_shared", &v0u, 20, (int32_t)shared->cfg.vocab_size,
              "Q_ERR_INVALID_CONFIG");
    emit_poke(g, "l2c_vocab_larger_than_weights", &v0, 20, (int32_t)shared->cfg.vocab_size + 1,
              "Q_ERR_TRUNCATED");
    emit_poke(g, "l2c_layers_plus_one", &v0, 8, (int32_t)shared->cfg.n_layers + 1,
              "Q_ERR_TRUNCATED");
    emit_poke(g, "l2c_seq_len_doubled", &v0, 24, (int32_t)shared->cfg.seq_len * 2,
              "Q_ERR_TRUNCATED");

    /* ak42 header: magic 0, version 4, config 8.., shared flag 36, group size 37 */
    emit_poke(g, "ak42_version_0", &v1, 4, 0, "Q_ERR_UNSUPPORTED_VERSION");
    emit_poke(g, "ak42_version_3", &v1, 4, 3, "Q_ERR_UNSUPPORTED_VERSION");
    emit_poke(g, "ak42_version_negative", &v1, 4, -1, "Q_ERR_UNSUPPORTED_VERSION");
    emit_cut(g, "llama2c", "ak42_magic_only", &v1, 4, "Q_ERR_TRUNCATED", 0);
    emit_cut(g, "llama2c", "ak42_header_truncated", &v1, 100, "Q_ERR_TRUNCATED", 0);
    emit_cut(g, "llama2c", "ak42_v1_truncated", &v1, v1.n - 4, "Q_ERR_TRUNCATED", 0);
    emit_append(g, "llama2c", "ak42_v1_trailing_bytes", &v1, 8, "Q_ERR_INVALID_CONFIG", 0);
    emit_poke(g, "ak42_dim_zero", &v1, 8, 0, "Q_ERR_INVALID_CONFIG");
    emit_poke(g, "ak42_n_heads_zero", &v1, 20, 0, "Q_ERR_INVALID_CONFIG");
    emit_poke(g, "ak42_vocab_negative", &v1, 28, -(int32_t)shared->cfg.vocab_size,
              "Q_ERR_INVALID_CONFIG");
    emit_poke(g, "ak42_vocab_int_min", &v1, 28, INT32_MIN, "Q_ERR_INVALID_CONFIG");
    copy_buf(&b, &v1, v1.n);
    b.p[36] = 2;
    emit(g, "llama2c", "ak42_shared_flag_2", &b, "Q_ERR_INVALID_CONFIG", 0);
    tb_free(&b);
    emit_poke(g, "ak42_v1_read_as_v2", &v1, 4, 2, "Q_ERR_INVALID_CONFIG"); /* group size 0 */
    emit_poke(g, "ak42_v2_read_as_v1", &v2, 4, 1, "Q_ERR_TRUNCATED");
    emit_poke(g, "ak42_v2_group_size_zero", &v2, 37, 0, "Q_ERR_INVALID_CONFIG");
    emit_poke(g, "ak42_v2_group_size_negative", &v2, 37, -4, "Q_ERR_INVALID_CONFIG");
    emit_poke(g, "ak42_v2_group_size_not_dividing", &v2, 37, 3, "Q_ERR_INVALID_CONFIG");
    emit_poke(g, "ak42_v2_group_size_huge", &v2, 37, (int32_t)Q_MAX_GROUP_SIZE * 2,
              "Q_ERR_INVALID_CONFIG");
    emit_cut(g, "llama2c", "ak42_v2_truncated_scales", &v2, v2.n - 4, "Q_ERR_TRUNCATED", 0);

    tb_free(&v0);
    tb_free(&v0u);
    tb_free(&v1);
    tb_free(&v1u);
    tb_free(&v2);
}

/* ---------------------------------------------------------------- tokenizers */

static void emit_tok(gen *g, const char *name, const tm_tok *t, const char *expect, size_t vocab)
{
    tbuf b = {0};
    tok_write(&b, t);
    emit(g, "tokenizer", name, &b, expect, vocab);
    tb_free(&b);
}

static void gen_tokenizers(gen *g, size_t vocab)
{
    tm_tok t, small;
    tbuf base = {0}, b = {0};
    size_t last_len_at;
    static const struct { const char *name; const char *piece; const char *expect; } bytes[] = {
        {"tok_byte_token_minus_1", "<0x-1>", "Q_ERR_BAD_TOKEN"},
        {"tok_byte_token_one_digit", "<0x1>", "Q_ERR_BAD_TOKEN"},
        {"tok_byte_token_three_digits", "<0x100>", "Q_ERR_BAD_TOKEN"},
        {"tok_byte_token_not_hex", "<0xGG>", "Q_ERR_BAD_TOKEN"},
        {"tok_byte_token_empty", "<0x>", "Q_ERR_BAD_TOKEN"},
        {"tok_byte_token_duplicate", "<0x41>", "Q_ERR_DUPLICATE"},
    };

    tok_random(&t, vocab, 1);
    tok_write(&base, &t);
    emit(g, "tokenizer", "valid_tokenizer.bin", &base, "Q_OK", vocab);
    emit(g, "tokenizer", "valid_tokenizer_count_mode.bin", &base, "Q_OK", 0);

    emit_cut(g, "tokenizer", "tok_empty", &base, 0, "Q_ERR_TRUNCATED", vocab);
    emit_cut(g, "tokenizer", "tok_truncated_score", &base, base.n - t.lens[vocab - 1] - 6,
             "Q_ERR_TRUNCATED", vocab);
    emit_cut(g, "tokenizer", "tok_truncated_length", &base, base.n - t.lens[vocab - 1] - 2,
             "Q_ERR_TRUNCATED", vocab);
    emit_cut(g, "tokenizer", "tok_truncated_piece", &base, base.n - 1, "Q_ERR_TRUNCATED", vocab);
    emit_append(g, "tokenizer", "tok_trailing_garbage", &base, 3, "Q_ERR_INVALID_CONFIG", vocab);

    copy_buf(&b, &base, base.n);
    poke_i32(&b, 0, 0);
    emit(g, "tokenizer", "tok_max_token_length_zero", &b, "Q_ERR_INVALID_CONFIG", vocab);
    poke_i32(&b, 0, -1);
    emit(g, "tokenizer", "tok_max_token_length_negative", &b, "Q_ERR_INVALID_CONFIG", vocab);
    poke_i32(&b, 0, (int32_t)Q_MAX_TOKEN_BYTES + 1);
    emit(g, "tokenizer", "tok_max_token_length_huge", &b, "Q_ERR_INVALID_CONFIG", vocab);
    poke_i32(&b, 0, 2);
    emit(g, "tokenizer", "tok_length_above_max_token_length", &b, "Q_ERR_BAD_TOKEN", vocab);
    tb_free(&b);

    /* first entry: score at 4, length at 8 */
    copy_buf(&b, &base, base.n);
    poke_i32(&b, 8, -1);
    emit(g, "tokenizer", "tok_negative_length", &b, "Q_ERR_BAD_TOKEN", vocab);
    poke_i32(&b, 8, INT32_MIN);
    emit(g, "tokenizer", "tok_length_int_min", &b, "Q_ERR_BAD_TOKEN", vocab);
    tb_free(&b);
    copy_buf(&b, &base, base.n);
    tb_poke_u32(&b, 4, 0x7fc00000u); /* quiet NaN */
    emit(g, "tokenizer", "tok_nan_score", &b, "Q_ERR_BAD_TOKEN", vocab);
    tb_free(&b);
    /* last piece's length runs past the end (max_token_length raised so it is legal) */
    copy_buf(&b, &base, base.n);
    last_len_at = base.n - t.lens[vocab - 1] - 4;
    poke_i32(&b, 0, 64);
    poke_i32(&b, last_len_at, 60);
    emit(g, "tokenizer", "tok_length_past_end", &b, "Q_ERR_TRUNCATED", vocab);
    tb_free(&b);

    for (size_t i = 0; i < sizeof bytes / sizeof bytes[0]; i++) {
        char keep[16];
        size_t keep_len = t.lens[3];
        memcpy(keep, t.pieces[3], keep_len);
        tok_set_piece(&t, 3, bytes[i].piece, strlen(bytes[i].piece));
        emit_tok(g, bytes[i].name, &t, bytes[i].expect, vocab);
        tok_set_piece(&t, 3, keep, keep_len);
    }

    /* vocabulary mismatch both ways: the tokenizer of another model */
    emit_tok(g, "tok_fewer_tokens_than_model", &t, "Q_ERR_VOCAB_MISMATCH", vocab + 1);
    emit_tok(g, "tok_more_tokens_than_model", &t, "Q_ERR_VOCAB_MISMATCH", vocab - 1);
    /* two tokens: bos (1) exists, eos (2) does not */
    tok_random(&small, 2, 1);
    emit_tok(g, "tok_eos_out_of_range", &small, "Q_ERR_BAD_TOKEN", 2);
    tok_free(&small);

    tok_free(&t);
    tb_free(&base);
}

/* ---------------------------------------------------------------- GGUF */

static void emit_gguf(gen *g, const char *name, const tm_model *m, const tm_tok *t,
                      const gguf_opts *o, const char *expect)
{
    tbuf b = {0};
    tm_write_gguf(&b, m, t, o);
    emit(g, "gguf", name, &b, expect, 0);
    tb_free(&b);
}

#define GG(name, expect, ...)                                                               \
    do {                                                                                    \
        gguf_opts o_ = {__VA_ARGS__};                                                       \
        if (o_.version == 0) /* version 3, F32 matrices unless given */                     \
            o_.version = 3;                                                                 \
        emit_gguf(g, name, m, t, &o_, expect);                                              \
    } while (0)

/*
 * The architectures: qwen2 (q/k/v biases, NEOX) and Llama 3 (rope_freqs.weight), valid, and
 * their rules broken: bias shape and type, rope factor count and value, RoPE scaling
 * type and factor. One layer, dim 16, 2 heads of 8 (4 rope factors), 1 kv head.
 */
static void gen_gguf_archs(gen *g, const tm_model *m32, tm_tok *t)
{
    q_config cq = m32->cfg, cl;
    tm_model mq, ml;
    cq.dim = 16; /* 2 heads of 8 (4 rope factors), 1 kv head: small enough for the corpus */
    cq.hidden_dim = 32;
    cq.n_heads = 2;
    cq.n_kv_heads = 1;
    cl = cq;
    cq.arch = Q_ARCH_QWEN2;
    cq.rope_neox = 1;
    cq.rope_theta = 1000000.0f;
    cl.rope_theta = 500000.0f;
    tm_random(&mq, &cq, 1, 11);
    tm_add_arch(&mq, "qwen2", 11);
    tm_random(&ml, &cl, 1, 12);
    tm_add_arch(&ml, "llama3", 12);
    const tm_model *m = &mq;
    GG("valid_qwen2.gguf", "Q_OK");
    GG("gguf_qwen2_bias_wrong_shape", "Q_ERR_BAD_SHAPE", .tensor = "blk.0.attn_k.bias",
       .t_set_ne = 1, .t_ne = {5, 1, 1, 1});
    GG("gguf_qwen2_bias_f16", "Q_ERR_UNSUPPORTED_TYPE", .tensor = "blk.0.attn_v.bias",
       .t_set_type = 1, .t_type = Q_TENSOR_F16);
    GG("gguf_qwen2_llama_keys", "Q_ERR_MISSING", .omit_key = "qwen2.block_count");
    m = &ml;
    GG("valid_llama3.gguf", "Q_OK");
    GG("gguf_rope_freqs_count", "Q_ERR_BAD_SHAPE", .tensor = "rope_freqs.weight", .t_set_ne = 1,
       .t_ne = {3, 1, 1, 1});
    GG("gguf_rope_freqs_f16", "Q_ERR_UNSUPPORTED_TYPE", .tensor = "rope_freqs.weight",
       .t_set_type = 1, .t_type = Q_TENSOR_F16);
    ml.rope_factors[2] = 0.0f;
    GG("gguf_rope_freqs_zero", "Q_ERR_INVALID_CONFIG");
    ml.rope_factors[2] = -INFINITY;
    GG("gguf_rope_freqs_negative_infinity", "Q_ERR_INVALID_CONFIG");
    ml.rope_factors[2] = 1.0f;
    GG("gguf_rope_scaling_yarn", "Q_ERR_UNSUPPORTED_TYPE", .extra_str_key = "llama.rope.scaling.type",
       .extra_str_value = "yarn");
    GG("gguf_rope_scaling_linear_without_factor", "Q_ERR_MISSING",
       .extra_str_key = "llama.rope.scaling.type", .extra_str_value = "linear");
    ml.cfg.rope_linear_factor = 4.0f;
    GG("valid_llama3_linear_scaling.gguf", "Q_OK");
    ml.cfg.rope_linear_factor = 0.5f;
    GG("gguf_rope_scaling_factor_below_1", "Q_ERR_INVALID_CONFIG");
    tm_free(&mq);
    tm_free(&ml);
}

/* The id of piece s in t (the sample vocabulary's pieces are unique), or t->n. */
static size_t tok_find(const tm_tok *t, const char *s)
{
    size_t n = strlen(s), i;
    for (i = 0; i < t->n; i++)
        if (t->lens[i] == n && memcmp(t->pieces[i], s, n) == 0)
            break;
    return i;
}

/*
 * Byte-level BPE vocabularies (tokenizer.ggml.model "gpt2"): valid seeds for the three
 * pre-tokenizers (llama3 / qwen2 / gpt-2 models), a vocab-only file, and one file per rule
 * of the vocabulary: model and pre names and types, merges (presence, element type, form,
 * known pieces, result, duplicates), token types, byte-level text, the byte pieces, the
 * special ids and add_bos_token. One layer, dim 8, 2 heads of 4, 1 kv head.
 */
static void gen_gguf_bpe(gen *g, tm_tok *spm_tok, const tm_model *spm_model)
{
    tm_tok bt, *t = &bt;
    tm_model ml, mq, mg;
    q_config c = {.dim = 8, .hidden_dim = 12, .n_layers = 1, .n_heads = 2, .n_kv_heads = 1,
                  .seq_len = 16, .rope_theta = 500000.0f, .norm_eps = 1e-5f};
    q_config cq;
    size_t spare, tilde = 0x7E; /* '~' spells itself; no merge uses it */
    tok_bpe_sample(t, "llama-bpe");
    c.vocab_size = t->n;
    cq = c;
    cq.arch = Q_ARCH_QWEN2;
    cq.rope_neox = 1;
    cq.rope_theta = 1000000.0f;
    tm_random(&ml, &c, 1, 21);
    tm_add_arch(&ml, "llama3", 21);
    tm_random(&mq, &cq, 1, 22);
    tm_add_arch(&mq, "qwen2", 22);
    c.rope_theta = 10000.0f;
    tm_random(&mg, &c, 1, 23);
    spare = tok_find(t, "xyz");

    const tm_model *m = &ml;
    GG("valid_bpe_llama3.gguf", "Q_OK");
    GG("vocab_only_bpe_llama3.gguf", "Q_ERR_MISSING", .vocab_only = 1);
    m = &mq;
    snprintf(t->pre, sizeof t->pre, "qwen2");
    GG("valid_bpe_qwen2.gguf", "Q_OK");
    m = &mg;
    snprintf(t->pre, sizeof t->pre, "gpt-2");
    GG("valid_bpe_gpt2.gguf", "Q_OK");
    {
        int32_t *types = t->types; /* without token types every piece is byte-level text */
        t->types = NULL;
        GG("valid_bpe_no_token_types.gguf", "Q_OK");
        t->types = types;
    }
    m = &ml;
    snprintf(t->pre, sizeof t->pre, "llama-bpe");

    /* names */
    GG("gguf_bpe_model_unknown", "Q_ERR_UNSUPPORTED_TYPE", .tok_model = "bert");
    GG("gguf_bpe_model_not_string", "Q_ERR_UNSUPPORTED_TYPE", .tok_model_gtype = 4);
    GG("gguf_bpe_pre_missing", "Q_ERR_MISSING", .omit_key = "tokenizer.ggml.pre");
    GG("gguf_bpe_pre_not_string", "Q_ERR_UNSUPPORTED_TYPE", .pre_gtype = 4);
    snprintf(t->pre, sizeof t->pre, "falcon");
    GG("gguf_bpe_pre_unknown", "Q_ERR_UNSUPPORTED_TYPE");
    snprintf(t->pre, sizeof t->pre, "llama-bpe");

    /* merges */
    GG("gguf_bpe_merges_missing", "Q_ERR_MISSING", .omit_key = "tokenizer.ggml.merges");
    GG("gguf_bpe_merges_i32", "Q_ERR_UNSUPPORTED_TYPE", .merges_gtype = 5);
    {
        static const struct { const char *name, *merge, *expect; } bad[] = {
            {"gguf_bpe_merge_no_space", "he", "Q_ERR_BAD_TOKEN"},
            {"gguf_bpe_merge_two_spaces", "h  e", "Q_ERR_BAD_TOKEN"},
            {"gguf_bpe_merge_empty_side", "h ", "Q_ERR_BAD_TOKEN"},
            {"gguf_bpe_merge_unknown_token", "hello e", "Q_ERR_BAD_TOKEN"},
            {"gguf_bpe_merge_result_not_token", "q x", "Q_ERR_BAD_TOKEN"},
            /* "<tool>" is a user-defined piece: merges name normal or byte pieces only */
            {"gguf_bpe_merge_side_user_defined", "<tool> h", "Q_ERR_BAD_TOKEN"},
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            tok_set_merge(t, 1, bad[i].merge);
            GG(bad[i].name, bad[i].expect);
        }
        tok_set_merge(t, 1, "h e");
        tok_add_merge(t, "h e"); /* rank 1 again, last */
        GG("gguf_bpe_merge_duplicate", "Q_ERR_DUPLICATE");
        t->n_merges--;
        free(t->merges[t->n_merges]);
    }

    /* token types, byte-level text, byte pieces */
    GG("gguf_bpe_token_type_0", "Q_ERR_BAD_TOKEN", .set_type = 1, .type_index = 5, .type_value = 0);
    GG("gguf_bpe_token_type_7", "Q_ERR_BAD_TOKEN", .set_type = 1, .type_index = 5, .type_value = 7);
    tok_set_piece(t, spare, "x z", 3);
    GG("gguf_bpe_token_raw_space", "Q_ERR_BAD_TOKEN");
    tok_set_piece(t, spare, "x\xff", 2);
    GG("gguf_bpe_token_not_utf8", "Q_ERR_BAD_TOKEN");
    tok_set_piece(t, spare, "", 0);
    GG("gguf_bpe_token_empty", "Q_ERR_BAD_TOKEN");
    tok_set_piece(t, spare, "xyz", 3);
    tok_set_piece(t, tilde, "~~", 2);
    GG("gguf_bpe_byte_piece_missing", "Q_ERR_MISSING");
    tok_set_piece(t, tilde, "~", 1);
    /* a byte's piece typed control is no byte piece: it would decode to nothing */
    GG("gguf_bpe_byte_piece_control", "Q_ERR_MISSING", .set_type = 1, .type_index = tilde,
       .type_value = 3);

    /* special ids, add_bos_token */
    GG("gguf_bpe_bos_missing", "Q_ERR_MISSING", .omit_key = "tokenizer.ggml.bos_token_id");
    GG("gguf_bpe_eos_out_of_range", "Q_ERR_BAD_TOKEN", .set_eos = 1, .eos = (int64_t)t->n);
    GG("gguf_bpe_eot_out_of_range", "Q_ERR_BAD_TOKEN", .set_eot = 1, .eot = (int64_t)t->n + 5);
    GG("gguf_bpe_add_bos_not_bool", "Q_ERR_UNSUPPORTED_TYPE", .add_bos_gtype = 4);
    /* eot and add_bos_token are read for SentencePiece vocabularies too */
    t = spm_tok;
    m = spm_model;
    GG("gguf_spm_eot_out_of_range", "Q_ERR_BAD_TOKEN", .set_eot = 1, .eot = (int64_t)t->n);
    GG("gguf_spm_add_bos_not_bool", "Q_ERR_UNSUPPORTED_TYPE", .add_bos_gtype = 1 /* i8 */);

    tm_free(&ml);
    tm_free(&mq);
    tm_free(&mg);
    tok_free(&bt);
}

static void gen_gguf(gen *g, const tm_model *m, const tm_model *mu, const tm_model *m32,
                     const tm_model *mk, tm_tok *t)
{
    tbuf b = {0};
    gguf_opts o = {.version = 3, .mat_type = Q_TENSOR_F32};
    char keep[16];
    size_t keep_len;

    /* valid seeds */
    GG("valid_v3_f32.gguf", "Q_OK", .version = 3);
    GG("valid_v2_f16.gguf", "Q_OK", .version = 2, .mat_type = Q_TENSOR_F16);
    GG("valid_v3_bf16.gguf", "Q_OK", .version = 3, .mat_type = Q_TENSOR_BF16);
    GG("valid_alignment_64.gguf", "Q_OK", .alignment = 64);
    emit_gguf(g, "valid_unshared.gguf", mu, t, &o, "Q_OK");
    {
        gguf_opts q = {.version = 3, .mat_type = Q_TENSOR_Q8_0};
        emit_gguf(g, "valid_q8_0.gguf", m32, t, &q, "Q_OK");
        q.mat_type = Q_TENSOR_Q4_0;
        emit_gguf(g, "valid_q4_0.gguf", m32, t, &q, "Q_OK");
        /* the K types need rows of 256: mk's hidden is 256, so its ffn_down can be one */
        q.mat_type = Q_TENSOR_Q8_0;
        q.typed = "blk.0.ffn_down.weight";
        q.typed_type = Q_TENSOR_Q4_K;
        emit_gguf(g, "valid_q4_k.gguf", mk, t, &q, "Q_OK");
        q.typed_type = Q_TENSOR_Q5_K;
        emit_gguf(g, "valid_q5_k.gguf", mk, t, &q, "Q_OK");
    }
    gen_gguf_archs(g, m32, t);
    gen_gguf_bpe(g, t, m);

    /* header */
    tm_write_gguf(&b, m, t, &o);
    emit_cut(g, "gguf", "gguf_header_short", &b, 20, "Q_ERR_TRUNCATED", 0);
    emit_cut(g, "gguf", "gguf_truncated_in_metadata", &b, 200, "Q_ERR_TRUNCATED", 0);
    emit_cut(g, "gguf", "gguf_truncated_data", &b, b.n - 64, "Q_ERR_TRUNCATED", 0);
    tb_free(&b);
    GG("gguf_version_1", "Q_ERR_UNSUPPORTED_VERSION", .version = 1);
    GG("gguf_version_4", "Q_ERR_UNSUPPORTED_VERSION", .version = 4);
    GG("gguf_version_big_endian", "Q_ERR_UNSUPPORTED_VERSION", .version = 0x03000000u);
    GG("gguf_n_tensors_times_size_overflow", "Q_ERR_OVERFLOW", .set_n_tensors = 1,
       .n_tensors = (uint64_t)1 << 62);
    GG("gguf_n_kv_times_size_overflow", "Q_ERR_OVERFLOW", .set_n_kv = 1, .n_kv = (uint64_t)1 << 62);
    GG("gguf_n_kv_past_end", "Q_ERR_TRUNCATED", .set_n_kv = 1, .n_kv = (uint64_t)1 << 20);
    GG("gguf_n_tensors_past_end", "Q_ERR_TRUNCATED", .set_n_tensors = 1,
       .n_tensors = (uint64_t)1 << 20);

    /* metadata */
    GG("gguf_string_length_n_plus_1_overflow", "Q_ERR_OVERFLOW", .first_key_len_max = 1);
    GG("gguf_string_length_past_end", "Q_ERR_TRUNCATED", .first_key_len_past = 1);
    GG("gguf_token_length_n_plus_1_overflow", "Q_ERR_OVERFLOW", .token_len_max = 1);
    GG("gguf_value_type_unknown", "Q_ERR_UNSUPPORTED_TYPE", .bad_value_type = 1);
    GG("gguf_nested_array", "Q_ERR_UNSUPPORTED_TYPE", .nested_array = 1);
    GG("gguf_array_count_times_size_overflow", "Q_ERR_OVERFLOW", .huge_array = 1);
    GG("gguf_duplicate_key", "Q_ERR_DUPLICATE", .dup_key = 1);
    GG("gguf_alignment_zero", "Q_ERR_BAD_ALIGNMENT", .alignment = 0, .extra_int_key = "general.alignment",
       .extra_int_value = 0);
    GG("gguf_alignment_not_power_of_two", "Q_ERR_BAD_ALIGNMENT", .alignment = 48);
    GG("gguf_alignment_huge", "Q_ERR_BAD_ALIGNMENT", .alignment = 0x80000000u);
    GG("gguf_alignment_wrong_type", "Q_ERR_UNSUPPORTED_TYPE", .alignment = 32, .alignment_gtype = 10);
    GG("gguf_missing_architecture", "Q_ERR_MISSING", .arch = "");
    GG("gguf_architecture_gpt2", "Q_ERR_UNSUPPORTED_TYPE", .arch = "gpt2");
    GG("gguf_missing_block_count", "Q_ERR_MISSING", .omit_key = "llama.block_count");
    GG("gguf_missing_embedding_length", "Q_ERR_MISSING", .omit_key = "llama.embedding_length");
    GG("gguf_embedding_length_string", "Q_ERR_UNSUPPORTED_TYPE", .string_key = "llama.embedding_length");
    GG("gguf_block_count_zero", "Q_ERR_INVALID_CONFIG", .int_key = "llama.block_count", .int_value = 0);
    GG("gguf_head_count_zero", "Q_ERR_INVALID_CONFIG", .int_key = "llama.attention.head_count",
       .int_value = 0);
    GG("gguf_head_count_not_dividing", "Q_ERR_INVALID_CONFIG", .int_key = "llama.attention.head_count",
       .int_value = 3);
    GG("gguf_head_count_kv_not_dividing", "Q_ERR_INVALID_CONFIG",
       .int_key = "llama.attention.head_count_kv", .int_value = 3);
    GG("gguf_context_length_negative", "Q_ERR_INVALID_CONFIG", .int_key = "llama.context_length",
       .int_value = -1);
    GG("gguf_context_length_huge", "Q_ERR_INVALID_CONFIG", .int_key = "llama.context_length",
       .int_value = (int64_t)1 << 40);
    GG("gguf_rope_dimension_mismatch", "Q_ERR_INVALID_CONFIG", .int_key = "llama.rope.dimension_count",
       .int_value = 2);
    GG("gguf_rope_freq_base_nan", "Q_ERR_INVALID_CONFIG", .float_key = "llama.rope.freq_base",
       .float_value = NAN);
    /* fuzz_gguf crash: the diagnostic of a finite negative theta below INT64_MIN was a
     * float-to-int64 conversion out of range (undefined behaviour, UBSan). */
    GG("gguf_rope_freq_base_huge_negative", "Q_ERR_INVALID_CONFIG",
       .float_key = "llama.rope.freq_base", .float_value = -2.34e38f);
    GG("gguf_rope_freq_base_zero", "Q_ERR_INVALID_CONFIG", .float_key = "llama.rope.freq_base",
       .float_value = 0.0f);
    GG("gguf_rms_epsilon_negative", "Q_ERR_INVALID_CONFIG",
       .float_key = "llama.attention.layer_norm_rms_epsilon", .float_value = -1.0f);
    GG("gguf_vocab_size_key_mismatch", "Q_ERR_VOCAB_MISMATCH", .extra_int_key = "llama.vocab_size",
       .extra_int_value = 300);
    GG("gguf_block_count_above_tensors", "Q_ERR_MISSING", .int_key = "llama.block_count",
       .int_value = 3);
    GG("gguf_block_count_below_tensors", "Q_ERR_INVALID_CONFIG", .int_key = "llama.block_count",
       .int_value = 1);

    /* tensor infos */
    GG("gguf_n_dims_above_max", "Q_ERR_BAD_SHAPE", .tensor = "blk.0.attn_q.weight", .t_n_dims = 5);
    GG("gguf_n_dims_zero", "Q_ERR_BAD_SHAPE", .tensor = "blk.0.attn_q.weight", .t_n_dims = 0xffffffffu);
    GG("gguf_zero_dimension", "Q_ERR_BAD_SHAPE", .tensor = "blk.0.attn_q.weight", .t_set_ne = 1,
       .t_ne = {8, 0, 1, 1});
    GG("gguf_tensor_type_q4_1", "Q_ERR_UNSUPPORTED_TYPE", .tensor = "blk.0.attn_k.weight",
       .t_set_type = 1, .t_type = 3);
    GG("gguf_tensor_type_unknown", "Q_ERR_UNSUPPORTED_TYPE", .tensor = "blk.0.attn_k.weight",
       .t_set_type = 1, .t_type = 99);
    /* BF16 is ggml type 30: its neighbours are not read */
    GG("gguf_tensor_type_29", "Q_ERR_UNSUPPORTED_TYPE", .tensor = "blk.0.attn_k.weight",
       .t_set_type = 1, .t_type = 29);
    GG("gguf_tensor_type_31", "Q_ERR_UNSUPPORTED_TYPE", .tensor = "blk.0.attn_k.weight",
       .t_set_type = 1, .t_type = 31);
    GG("gguf_ne_product_overflow", "Q_ERR_OVERFLOW", .tensor = "token_embd.weight", .t_set_ne = 1,
       .t_ne = {(uint64_t)1 << 62, 8, 1, 1});
    GG("gguf_ne_times_type_size_overflow", "Q_ERR_OVERFLOW", .tensor = "output_norm.weight",
       .t_set_ne = 1, .t_ne = {(uint64_t)1 << 62, 1, 1, 1});
    GG("gguf_ne_above_int64", "Q_ERR_OVERFLOW", .tensor = "output_norm.weight", .t_set_ne = 1,
       .t_ne = {(uint64_t)1 << 63, 1, 1, 1});
    GG("gguf_cumulative_data_size_overflow", "Q_ERR_OVERFLOW", .big_tensors = 1);
    GG("gguf_duplicate_tensor_name", "Q_ERR_DUPLICATE", .dup_tensor = 1);
    GG("gguf_tensor_offset_unaligned", "Q_ERR_BAD_ALIGNMENT", .tensor = "blk.0.attn_v.weight",
       .t_offset_add = 1);
    GG("gguf_tensor_offset_past_end", "Q_ERR_TRUNCATED", .tensor = "output_norm.weight",
       .t_set_offset = 1, .t_offset = (uint64_t)1 << 20);
    GG("gguf_tensor_offset_wraps", "Q_ERR_OVERFLOW", .tensor = "output_norm.weight",
       .t_set_offset = 1, .t_offset = UINT64_MAX - 31);
    GG("gguf_q8_0_row_not_multiple_of_32", "Q_ERR_BAD_SHAPE", .tensor = "blk.0.attn_q.weight",
       .t_set_type = 1, .t_type = Q_TENSOR_Q8_0);
    GG("gguf_q4_0_row_not_multiple_of_32", "Q_ERR_BAD_SHAPE", .tensor = "blk.0.attn_q.weight",
       .t_set_type = 1, .t_type = Q_TENSOR_Q4_0);
    GG("gguf_q4_k_row_not_multiple_of_256", "Q_ERR_BAD_SHAPE", .tensor = "blk.0.attn_q.weight",
       .t_set_type = 1, .t_type = Q_TENSOR_Q4_K);
    GG("gguf_q5_k_row_not_multiple_of_256", "Q_ERR_BAD_SHAPE", .tensor = "blk.0.attn_q.weight",
       .t_set_type = 1, .t_type = Q_TENSOR_Q5_K);
    GG("gguf_q6_k_row_not_multiple_of_256", "Q_ERR_BAD_SHAPE", .tensor = "blk.0.attn_q.weight",
       .t_set_type = 1, .t_type = Q_TENSOR_Q6_K);
    GG("gguf_tensor_shape_mismatch", "Q_ERR_BAD_SHAPE", .tensor = "blk.0.attn_q.weight",
       .t_set_ne = 1, .t_ne = {8, 4, 1, 1});
    GG("gguf_tensor_3d", "Q_ERR_BAD_SHAPE", .tensor = "blk.0.attn_q.weight", .t_n_dims = 3,
       .t_set_ne = 1, .t_ne = {8, 4, 2, 1});
    GG("gguf_norm_not_f32", "Q_ERR_UNSUPPORTED_TYPE", .tensor = "output_norm.weight",
       .t_set_type = 1, .t_type = Q_TENSOR_F16);
    GG("gguf_norm_bf16", "Q_ERR_UNSUPPORTED_TYPE", .tensor = "blk.1.ffn_norm.weight",
       .t_set_type = 1, .t_type = Q_TENSOR_BF16);
    GG("gguf_missing_tensor", "Q_ERR_MISSING", .omit_tensor = "blk.1.ffn_up.weight");
    GG("gguf_missing_token_embd", "Q_ERR_MISSING", .omit_tensor = "token_embd.weight");
    GG("gguf_missing_output_norm", "Q_ERR_MISSING", .omit_tensor = "output_norm.weight");

    /* tokenizer metadata */
    GG("gguf_missing_tokens", "Q_ERR_MISSING", .omit_key = "tokenizer.ggml.tokens");
    GG("gguf_missing_scores", "Q_ERR_MISSING", .omit_key = "tokenizer.ggml.scores");
    GG("gguf_tokens_wrong_element_type", "Q_ERR_UNSUPPORTED_TYPE", .tokens_gtype = 5);
    GG("gguf_scores_wrong_element_type", "Q_ERR_UNSUPPORTED_TYPE", .scores_gtype = 5);
    GG("gguf_token_type_wrong_element_type", "Q_ERR_UNSUPPORTED_TYPE", .types_gtype = 6);
    GG("gguf_tokens_fewer_than_vocab", "Q_ERR_VOCAB_MISMATCH", .tokens_drop = 1);
    GG("gguf_scores_fewer_than_tokens", "Q_ERR_VOCAB_MISMATCH", .scores_drop = 1);
    GG("gguf_bos_out_of_range", "Q_ERR_BAD_TOKEN", .set_bos = 1, .bos = 260);
    GG("gguf_bos_negative", "Q_ERR_BAD_TOKEN", .set_bos = 1, .bos = -1);
    keep_len = t->lens[3];
    memcpy(keep, t->pieces[3], keep_len);
    tok_set_piece(t, 3, "<0x-1>", 6);
    GG("gguf_byte_token_minus_1", "Q_ERR_BAD_TOKEN", .version = 3);
    tok_set_piece(t, 3, keep, keep_len);
}

int gen_malformed(const char *dir, int write_manifest)
{
    gen g;
    tm_model shared, unshared, m32, mk;
    tm_tok tok;
    q_config c = {.dim = 8, .hidden_dim = 12, .n_layers = 2, .n_heads = 2, .n_kv_heads = 1,
                  .vocab_size = 260, .seq_len = 16, .rope_theta = 10000.0f, .norm_eps = 1e-5f};
    q_config c32 = c, ck;
    char path[4096];
    static const char *const sub[3] = {"fuzz_model_llama2c", "fuzz_gguf", "fuzz_tokenizer"};

    memset(&g, 0, sizeof g);
    g.dir = dir;
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "qorus-model: %s: %s\n", dir, strerror(errno));
        return 1;
    }
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, sub[i]);
        if (mkdir(path, 0777) != 0 && errno != EEXIST) {
            fprintf(stderr, "qorus-model: %s: %s\n", path, strerror(errno));
            return 1;
        }
    }
    if (write_manifest) {
        snprintf(path, sizeof path, "%s/manifest.tsv", dir);
        g.manifest = fopen(path, "w");
        if (g.manifest == NULL) {
            fprintf(stderr, "qorus-model: %s: %s\n", path, strerror(errno));
            return 1;
        }
    }
    c32.dim = 32;
    c32.hidden_dim = 64;
    c32.n_layers = 1;
    c32.n_heads = 4;
    c32.n_kv_heads = 2;
    tm_random(&shared, &c, 1, 1);
    tm_random(&unshared, &c, 0, 2);
    ck = c32;
    ck.hidden_dim = 256;
    tm_random(&m32, &c32, 1, 3);
    tm_random(&mk, &ck, 1, 4);
    tok_random(&tok, c.vocab_size, 1);

    gen_llama2c(&g, &shared, &unshared);
    gen_tokenizers(&g, c.vocab_size);
    gen_gguf(&g, &shared, &unshared, &m32, &mk, &tok);

    tm_free(&shared);
    tm_free(&unshared);
    tm_free(&m32);
    tm_free(&mk);
    tok_free(&tok);
    if (g.manifest != NULL && fclose(g.manifest) != 0)
        g.failed = 1;
    if (!g.failed)
        printf("qorus-model: wrote %d files to %s\n", g.count, dir);
    return g.failed;
}
