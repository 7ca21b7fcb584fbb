/*
 * qorus-model: model-file tool.
 *
 *   qorus-model random  -o MODEL [-z TOKENIZER] [shape options] [--version V] [--seed S]
 *   qorus-model convert IN OUT [--version V] [--group-size G] [--gguf [--type T]] [-z TOK]
 *                       [--tokenizer-out TOK]
 *   qorus-model malformed OUTDIR [--no-manifest]
 *
 * Every model written is parsed back with the library before the tool reports success.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "malformed.h"
#include "model_io.h"
#include "qorus.h"

static int usage_main(FILE *f)
{
    fprintf(f,
            "usage: qorus-model COMMAND [options]\n"
            "commands:\n"
            "  random     write a random-weight llama2.c checkpoint (and tokenizer)\n"
            "  convert    convert between llama2.c v0, ak42 v1, ak42 v2 (Q8_0) and GGUF\n"
            "  malformed  write the malformed-file table and fuzz seeds\n"
            "run 'qorus-model COMMAND --help' for the options of each.\n");
    return f == stdout ? 0 : 2;
}

static int usage_random(FILE *f)
{
    fprintf(f,
            "usage: qorus-model random -o MODEL [-z TOKENIZER] [options]\n"
            "  --dim N (288) --hidden N (768) --layers N (6) --heads N (6) --kv-heads N (heads)\n"
            "  --vocab N (32000) --seq N (256)   model shape\n"
            "  --version 0|1|2 (0)   llama2.c legacy, ak42 float32, ak42 Q8_0\n"
            "  --group-size N        Q8_0 group for version 2 (default: largest power of two\n"
            "                        <= 64 dividing dim and hidden)\n"
            "  --gguf [--type f32|f16|bf16|q8_0|q4_0|q4_k|q5_k|q6_k|q4_k_m]\n"
            "                        write GGUF v3 instead (tokenizer in metadata); q4_k_m:\n"
            "                        Q4_K, with Q6_K for output and some attn_v / ffn_down\n"
            "  --unshared            separate classifier weights\n"
            "  --arch llama|llama3|qwen2 (llama)\n"
            "                        llama3: Llama 3.1's rope frequency factors (rope_freqs),\n"
            "                        theta 500000; qwen2: q/k/v biases, NEOX rotary pairs,\n"
            "                        theta 1000000 (both need --gguf)\n"
            "  --vocab-from FILE     the vocabulary of FILE (a llama2.c tokenizer.bin, or a GGUF\n"
            "                        model or vocab-only file: SentencePiece or byte-level BPE,\n"
            "                        which needs --gguf) instead of a random one; sets --vocab\n"
            "  --seed N (1)          weights and tokenizer are a function of the seed\n");
    return f == stdout ? 0 : 2;
}

static int usage_convert(FILE *f)
{
    fprintf(f,
            "usage: qorus-model convert IN OUT [options]\n"
            "  IN is any model qorus reads (llama2.c v0/v1/v2, GGUF).\n"
            "  --version 0|1|2 (0)   write a llama2.c checkpoint of that version\n"
            "  --group-size N        Q8_0 group for version 2 (must divide dim and hidden)\n"
            "  --gguf [--type f32|f16|bf16|q8_0|q4_0|q4_k|q5_k|q6_k|q4_k_m]\n"
            "                        write GGUF v3 (needs -z unless IN is GGUF); q4_k_m: Q4_K,\n"
            "                        with Q6_K for output and some attn_v / ffn_down\n"
            "  -z TOKENIZER          llama2.c tokenizer of IN\n"
            "  --tokenizer-out PATH  also write the vocabulary as a llama2.c tokenizer.bin\n");
    return f == stdout ? 0 : 2;
}

static int usage_malformed(FILE *f)
{
    fprintf(f,
            "usage: qorus-model malformed OUTDIR [--no-manifest]\n"
            "  writes OUTDIR/fuzz_model_llama2c/, OUTDIR/fuzz_gguf/, OUTDIR/fuzz_tokenizer/\n"
            "  (one file per validation rule and known bug class, plus valid seeds) and\n"
            "  OUTDIR/manifest.tsv: path, kind, expected error name, expected vocab.\n");
    return f == stdout ? 0 : 2;
}

static int parse_size(const char *s, size_t *out)
{
    char *end;
    unsigned long long v;
    errno = 0;
    if (s == NULL || *s == '\0' || *s == '-')
        return -1;
    v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > SIZE_MAX)
        return -1;
    *out = (size_t)v;
    return 0;
}

/* --type: a matrix type, or a recipe of several (q4_k_m) */
static int parse_type(const char *s, uint32_t *out, gguf_recipe *recipe)
{
    if (s == NULL)
        return -1;
    *recipe = GG_RECIPE_UNIFORM;
    if (strcmp(s, "f32") == 0)
        *out = Q_TENSOR_F32;
    else if (strcmp(s, "f16") == 0)
        *out = Q_TENSOR_F16;
    else if (strcmp(s, "bf16") == 0)
        *out = Q_TENSOR_BF16;
    else if (strcmp(s, "q8_0") == 0)
        *out = Q_TENSOR_Q8_0;
    else if (strcmp(s, "q4_0") == 0)
        *out = Q_TENSOR_Q4_0;
    else if (strcmp(s, "q4_k") == 0)
        *out = Q_TENSOR_Q4_K;
    else if (strcmp(s, "q5_k") == 0)
        *out = Q_TENSOR_Q5_K;
    else if (strcmp(s, "q6_k") == 0)
        *out = Q_TENSOR_Q6_K;
    else if (strcmp(s, "q4_k_m") == 0) {
        *out = Q_TENSOR_Q4_K;
        *recipe = GG_RECIPE_Q4_K_M;
    } else
        return -1;
    return 0;
}

static size_t default_group(const q_config *c)
{
    size_t g = 64;
    while (g > 1 && (c->dim % g != 0 || c->hidden_dim % g != 0))
        g /= 2;
    return g;
}

static int fail_code(const char *file, q_error_code rc, const q_diag *d)
{
    fprintf(stderr, "qorus-model: %s: %s (field %s = %lld at offset %llu)\n", file,
            q_strerror(rc), d->field, (long long)d->value, (unsigned long long)d->offset);
    return 1;
}

/* Saves `b` to `path` and parses it back (as a model, or as a tokenizer of `vocab`). */
static int save_checked(const tbuf *b, const char *path, int is_tokenizer, size_t vocab)
{
    q_diag d;
    q_error_code rc;
    if (tb_save(b, path) != 0) {
        fprintf(stderr, "qorus-model: %s: %s\n", path, strerror(errno));
        return 1;
    }
    if (is_tokenizer) {
        q_tokenizer t;
        rc = q_tokenizer_parse(&t, b->p, b->n, vocab, &d);
        q_tokenizer_free(&t);
    } else {
        q_model m;
        q_tokenizer t;
        rc = q_model_parse(&m, &t, b->p, b->n, &d);
        q_model_free(&m);
        q_tokenizer_free(&t);
    }
    if (rc != Q_OK)
        return fail_code(path, rc, &d);
    printf("qorus-model: wrote %s (%zu bytes)\n", path, b->n);
    return 0;
}

static int write_model(const tm_model *m, const tm_tok *tok, const char *out, int gguf,
                       uint32_t type, gguf_recipe recipe, int version, size_t group)
{
    tbuf b = {0};
    int rc;
    if (gguf) {
        gguf_opts o = {.version = 3, .mat_type = type, .recipe = recipe};
        int k_type = type == Q_TENSOR_Q4_K || type == Q_TENSOR_Q5_K || type == Q_TENSOR_Q6_K;
        if (tok == NULL) {
            fprintf(stderr, "qorus-model: GGUF output needs a tokenizer (-z)\n");
            return 1;
        }
        if ((type == Q_TENSOR_Q8_0 || type == Q_TENSOR_Q4_0) &&
            (m->cfg.dim % 32 != 0 || m->cfg.hidden_dim % 32 != 0)) {
            fprintf(stderr, "qorus-model: q8_0 and q4_0 need dim and hidden divisible by 32\n");
            return 1;
        }
        if (k_type && (m->cfg.dim % 256 != 0 || m->cfg.hidden_dim % 256 != 0)) {
            fprintf(stderr, "qorus-model: q4_k, q5_k, q6_k and q4_k_m need dim and hidden "
                            "divisible by 256\n");
            return 1;
        }
        tm_write_gguf(&b, m, tok, &o);
    } else {
        if (version < 0 || version > 2) {
            fprintf(stderr, "qorus-model: --version must be 0, 1 or 2\n");
            return 1;
        }
        if (m->cfg.arch != Q_ARCH_LLAMA || m->bq != NULL || m->rope_factors != NULL ||
            (m->cfg.rope_linear_factor != 0.0f && m->cfg.rope_linear_factor != 1.0f) ||
            m->cfg.rope_theta != 10000.0f) {
            fprintf(stderr, "qorus-model: a llama2.c checkpoint holds only the plain llama "
                            "architecture (rope theta 10000, no biases, rope factors or "
                            "scaling): write --gguf\n");
            return 1;
        }
        if (version == 2) {
            if (group == 0)
                group = default_group(&m->cfg);
            if (m->cfg.dim % group != 0 || m->cfg.hidden_dim % group != 0) {
                fprintf(stderr, "qorus-model: group size %zu does not divide dim %zu and hidden %zu\n",
                        group, m->cfg.dim, m->cfg.hidden_dim);
                return 1;
            }
        }
        tm_write_llama2c(&b, m, version, group);
    }
    rc = save_checked(&b, out, 0, 0);
    tb_free(&b);
    return rc;
}

/* A llama2.c checkpoint's tokenizer.bin has pieces and scores only: a byte-level BPE
 * vocabulary (its pre-tokenizer, token types and merges) can only be written as GGUF.
 * Returns 0, or 1 after one line naming the vocabulary's file. */
static int refuse_bpe_llama2c(const tm_tok *t, const char *from, int gguf, const char *tok_out)
{
    if (t == NULL || t->kind != Q_VOCAB_BPE || (gguf && tok_out == NULL))
        return 0;
    fprintf(stderr, "qorus-model: %s: a byte-level BPE vocabulary (tokenizer.ggml.model gpt2) "
                    "cannot be written as a llama2.c %s (it has no place for merges): write "
                    "--gguf%s\n",
            from, gguf ? "tokenizer.bin" : "checkpoint or tokenizer.bin",
            tok_out != NULL ? " without -z / --tokenizer-out" : "");
    return 1;
}

/* The vocabulary of `path`: a GGUF file's metadata (a whole model or a vocab-only file), or
 * a llama2.c tokenizer.bin. */
static int load_vocab(const char *path, tm_tok *t)
{
    q_diag d;
    q_error_code e;
    q_tokenizer qt;
    memset(&qt, 0, sizeof qt);
    FILE *f = fopen(path, "rb");
    unsigned char magic[4] = {0};
    if (f == NULL) {
        fprintf(stderr, "qorus-model: %s: %s\n", path, strerror(errno));
        return 1;
    }
    size_t got = fread(magic, 1, 4, f);
    fclose(f);
    if (got == 4 && memcmp(magic, "GGUF", 4) == 0) {
        e = q_vocab_load(&qt, path, &d);
    } else {
        e = q_tokenizer_load(&qt, path, 0, &d);
    }
    if (e != Q_OK)
        return fail_code(path, e, &d);
    tok_from_q(t, &qt);
    q_tokenizer_free(&qt);
    return 0;
}

static int cmd_random(int argc, char **argv)
{
    q_config c = {.dim = 288, .hidden_dim = 768, .n_layers = 6, .n_heads = 6, .n_kv_heads = 0,
                  .vocab_size = 32000, .seq_len = 256, .rope_theta = 10000.0f, .norm_eps = 1e-5f};
    const char *out = NULL, *tok_out = NULL;
    size_t version = 0, group = 0, seed = 1;
    int shared = 1, gguf = 0, rc;
    uint32_t type = Q_TENSOR_F32;
    gguf_recipe recipe = GG_RECIPE_UNIFORM;
    const char *arch = "llama", *vocab_from = NULL;
    tm_model m;
    tm_tok t;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        size_t *dst = NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            return usage_random(stdout);
        if (strcmp(a, "--unshared") == 0) { shared = 0; continue; }
        if (strcmp(a, "--gguf") == 0) { gguf = 1; continue; }
        if (strcmp(a, "-o") == 0 && v) { out = v; i++; continue; }
        if (strcmp(a, "-z") == 0 && v) { tok_out = v; i++; continue; }
        if (strcmp(a, "--arch") == 0 && v) { arch = v; i++; continue; }
        if (strcmp(a, "--vocab-from") == 0 && v) { vocab_from = v; i++; continue; }
        if (strcmp(a, "--type") == 0) {
            if (parse_type(v, &type, &recipe) != 0)
                return usage_random(stderr);
            i++;
            continue;
        }
        if (strcmp(a, "--dim") == 0) dst = &c.dim;
        else if (strcmp(a, "--hidden") == 0) dst = &c.hidden_dim;
        else if (strcmp(a, "--layers") == 0) dst = &c.n_layers;
        else if (strcmp(a, "--heads") == 0) dst = &c.n_heads;
        else if (strcmp(a, "--kv-heads") == 0) dst = &c.n_kv_heads;
        else if (strcmp(a, "--vocab") == 0) dst = &c.vocab_size;
        else if (strcmp(a, "--seq") == 0) dst = &c.seq_len;
        else if (strcmp(a, "--version") == 0) dst = &version;
        else if (strcmp(a, "--group-size") == 0) dst = &group;
        else if (strcmp(a, "--seed") == 0) dst = &seed;
        if (dst == NULL || parse_size(v, dst) != 0) {
            fprintf(stderr, "qorus-model random: bad option '%s'\n", a);
            return usage_random(stderr);
        }
        i++;
    }
    if (out == NULL)
        return usage_random(stderr);
    if (c.n_kv_heads == 0)
        c.n_kv_heads = c.n_heads;
    if (strcmp(arch, "qwen2") == 0) {
        c.arch = Q_ARCH_QWEN2;
        c.rope_neox = 1;
        c.rope_theta = 1000000.0f;
    } else if (strcmp(arch, "llama3") == 0) {
        c.rope_theta = 500000.0f;
    } else if (strcmp(arch, "llama") != 0) {
        fprintf(stderr, "qorus-model random: unknown --arch '%s' (llama, llama3, qwen2)\n", arch);
        return 2;
    }
    if (strcmp(arch, "llama") != 0 && !gguf) {
        fprintf(stderr, "qorus-model random: --arch %s needs --gguf\n", arch);
        return 2;
    }
    int have_vocab = 0;
    if (vocab_from != NULL) {
        if (load_vocab(vocab_from, &t) != 0)
            return 1;
        c.vocab_size = t.n;
        have_vocab = 1;
        if (refuse_bpe_llama2c(&t, vocab_from, gguf, tok_out) != 0) {
            tok_free(&t);
            return 1;
        }
    }
    /* the shape is checked by parsing the result; guard only what the writer needs */
    if (c.dim == 0 || c.n_heads == 0 || c.n_kv_heads == 0 || c.dim > Q_MAX_DIM ||
        c.hidden_dim > Q_MAX_HIDDEN_DIM || c.n_layers > Q_MAX_LAYERS ||
        c.vocab_size > Q_MAX_VOCAB || c.seq_len > Q_MAX_SEQ_LEN || c.n_heads > c.dim ||
        c.dim % c.n_heads != 0 || c.n_kv_heads > c.n_heads || c.vocab_size < 3) {
        fprintf(stderr, "qorus-model random: invalid shape\n");
        return 2;
    }
    tm_random(&m, &c, shared, seed);
    if (tm_add_arch(&m, arch, seed) != 0) { /* unreachable: the name was checked */
        tm_free(&m);
        return 2;
    }
    if (!have_vocab)
        tok_random(&t, c.vocab_size, seed);
    rc = write_model(&m, &t, out, gguf, type, recipe, (int)(version > 2 ? 3 : version), group);
    if (rc == 0 && tok_out != NULL) {
        tbuf b = {0};
        tok_write(&b, &t);
        rc = save_checked(&b, tok_out, 1, c.vocab_size);
        tb_free(&b);
    }
    tm_free(&m);
    tok_free(&t);
    return rc;
}

static int cmd_convert(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *tok_in = NULL, *tok_out = NULL;
    size_t version = 0, group = 0;
    int gguf = 0, rc;
    uint32_t type = Q_TENSOR_F32;
    gguf_recipe recipe = GG_RECIPE_UNIFORM;
    q_context ctx = {0};
    q_model qm;
    q_tokenizer qt, qz;
    q_diag d;
    q_error_code e;
    tm_model m;
    tm_tok t;
    int have_tok = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            return usage_convert(stdout);
        if (strcmp(a, "--gguf") == 0) { gguf = 1; continue; }
        if (strcmp(a, "-z") == 0 && v) { tok_in = v; i++; continue; }
        if (strcmp(a, "--tokenizer-out") == 0 && v) { tok_out = v; i++; continue; }
        if (strcmp(a, "--type") == 0) {
            if (parse_type(v, &type, &recipe) != 0)
                return usage_convert(stderr);
            i++;
            continue;
        }
        if (strcmp(a, "--version") == 0 || strcmp(a, "--group-size") == 0) {
            if (parse_size(v, a[2] == 'v' ? &version : &group) != 0)
                return usage_convert(stderr);
            i++;
            continue;
        }
        if (a[0] == '-') {
            fprintf(stderr, "qorus-model convert: bad option '%s'\n", a);
            return usage_convert(stderr);
        }
        if (in == NULL) in = a;
        else if (out == NULL) out = a;
        else return usage_convert(stderr);
    }
    if (in == NULL || out == NULL)
        return usage_convert(stderr);
    e = q_model_load(&qm, &qt, &ctx, in, Q_MMAP_LAZY, &d);
    if (e != Q_OK)
        return fail_code(in, e, &d);
    if (tok_in != NULL) {
        e = q_tokenizer_load(&qz, tok_in, qm.config.vocab_size, &d);
        if (e != Q_OK) {
            q_model_free(&qm);
            q_tokenizer_free(&qt);
            q_free_memory(&ctx);
            return fail_code(tok_in, e, &d);
        }
        tok_from_q(&t, &qz);
        q_tokenizer_free(&qz);
        have_tok = 1;
    } else if (qt.vocab_size > 0) {
        tok_from_q(&t, &qt);
        have_tok = 1;
    }
    if (have_tok && refuse_bpe_llama2c(&t, in, gguf, tok_out) != 0) {
        tok_free(&t);
        q_model_free(&qm);
        q_tokenizer_free(&qt);
        q_free_memory(&ctx);
        return 1;
    }
    e = tm_from_model(&m, &qm);
    q_model_free(&qm);
    q_tokenizer_free(&qt);
    q_free_memory(&ctx);
    if (e != Q_OK) {
        if (have_tok)
            tok_free(&t);
        fprintf(stderr, "qorus-model: %s: %s\n", in, q_strerror(e));
        return 1;
    }
    rc = write_model(&m, have_tok ? &t : NULL, out, gguf, type, recipe,
                     (int)(version > 2 ? 3 : version), group);
    if (rc == 0 && tok_out != NULL) {
        if (!have_tok) {
            fprintf(stderr, "qorus-model: %s has no vocabulary to write\n", in);
            rc = 1;
        } else {
            tbuf b = {0};
            tok_write(&b, &t);
            rc = save_checked(&b, tok_out, 1, m.cfg.vocab_size);
            tb_free(&b);
        }
    }
    tm_free(&m);
    if (have_tok)
        tok_free(&t);
    return rc;
}

static int cmd_malformed(int argc, char **argv)
{
    const char *dir = NULL;
    int manifest = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return usage_malformed(stdout);
        if (strcmp(argv[i], "--no-manifest") == 0)
            manifest = 0;
        else if (dir == NULL && argv[i][0] != '-')
            dir = argv[i];
        else
            return usage_malformed(stderr);
    }
    if (dir == NULL)
        return usage_malformed(stderr);
    return gen_malformed(dir, manifest);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage_main(stderr);
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
        return usage_main(stdout);
    if (strcmp(argv[1], "random") == 0)
        return cmd_random(argc - 1, argv + 1);
    if (strcmp(argv[1], "convert") == 0)
        return cmd_convert(argc - 1, argv + 1);
    if (strcmp(argv[1], "malformed") == 0)
        return cmd_malformed(argc - 1, argv + 1);
    fprintf(stderr, "qorus-model: unknown command '%s'\n", argv[1]);
    return usage_main(stderr);
}
