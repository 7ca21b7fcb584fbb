/*
 * qorus: the reference driver.
 *
 *   qorus run MODEL [-z TOKENIZER] [-i PROMPT] [-n STEPS] [-t TEMP] [-p TOPP] [-s SEED]
 *   qorus inspect MODEL [-z TOKENIZER]
 *
 * Exit status: 0 on success, 1 when a file is rejected or generation fails (one line on
 * stderr: "qorus: FILE: <q_strerror text> (<field> = <value> at offset <off>)"), 2 on bad
 * arguments (one line on stderr). See docs/driver.md.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "output.h"
#include "qorus.h"

#define EXIT_BAD_INPUT 1
#define EXIT_USAGE 2

/* ---- messages ---- */

static const char usage_top[] =
    "usage: qorus <command> [options]\n"
    "\n"
    "commands:\n"
    "  run MODEL [-z TOKENIZER] [-i PROMPT] [-n STEPS] [-t TEMP] [-p TOPP] [-s SEED] [-j N]\n"
    "      [--batch N] [--no-mmap | --mmap lazy|eager|read]\n"
    "              generate text (streamed to stdout, one stats line on stderr)\n"
    "  inspect MODEL [-z TOKENIZER] [--no-mmap | --mmap lazy|eager|read]\n"
    "              validate a model and print its format, config, tensors, tokenizer\n"
    "\n"
    "'qorus <command> --help' describes each command.\n";

static const char usage_run[] =
    "usage: qorus run MODEL [-z TOKENIZER] [-i PROMPT] [-n STEPS] [-t TEMP] [-p TOPP] [-s SEED]\n"
    "                 [-j N] [--batch N] [--special] [--no-mmap | --mmap lazy|eager|read]\n"
    "\n"
    "Generates text from MODEL (llama2.c .bin, legacy or ak42 v1/v2, or GGUF) and streams it\n"
    "to stdout, the prompt echoed first. Ends with one stats line on stderr.\n"
    "\n"
    "  -z TOKENIZER  llama2.c tokenizer.bin; required for llama2.c checkpoints (no default\n"
    "                file is looked for); GGUF models use the vocabulary in their metadata\n"
    "                unless -z is given\n"
    "  -i PROMPT     prompt text (default: empty)\n"
    "  --special     read special-token text in the prompt (\"<|im_start|>\") as those\n"
    "                tokens (byte-level BPE vocabularies); without it it is plain text\n"
    "  -n STEPS      positions to run, prompt tokens included (default 256; 0 or more\n"
    "                than the model's seq_len means seq_len)\n"
    "  -t TEMP       temperature >= 0 (default 1.0; 0 = greedy, same text as llama2.c run.c)\n"
    "  -p TOPP       top-p in [0, 1] (default 0.9; 0 or 1 = sample the full distribution)\n"
    "  -s SEED       random seed, an unsigned integer (default or 0: the current time)\n"
    "  -j, --threads N  threads of the forward pass, 1..64 (default: the online cores);\n"
    "                the text does not depend on it\n"
    "  --batch N     prompt tokens per forward batch, 1..512 (default 48; 1 = one token\n"
    "                at a time); the text does not depend on it\n"
    "  --mmap MODE   how the model is loaded: lazy (map, read ahead; the default), eager\n"
    "                (map and read every page now), read (copy it into memory)\n"
    "  --no-mmap     same as --mmap read: later changes to the file cannot affect the run\n"
    "  -h, --help    this text\n"
    "\n"
    "QORUS_KERNELS=scalar in the environment forces the plain C reference kernels (the\n"
    "default takes the best the CPU has: avx512 on x86-64 with AVX-512 F/BW/VL and VNNI,\n"
    "else avx2 with AVX2, FMA and F16C; QORUS_KERNELS=avx2 or =avx512 picks one).\n"
    "The stats line: tokens (positions run), prompt, sampled, threads, kernels, time_s,\n"
    "tok_per_s (all positions), prefill_tok_per_s (prompt batches), decode_tok_per_s\n"
    "(positions after the prompt), ttft_ms (time to the first sampled token),\n"
    "arena_hwm_bytes, kv_bytes.\n"
    "\n"
    "Ctrl-C (SIGINT) or SIGTERM stops at the next token: the stats line is printed and the\n"
    "exit status is 130 (143). A model file truncated during the run: one error line, exit 1.\n";

static const char usage_inspect[] =
    "usage: qorus inspect MODEL [-z TOKENIZER] [--no-mmap | --mmap lazy|eager|read]\n"
    "\n"
    "Validates MODEL completely and prints its format and version, config, tensor table\n"
    "(name, type, shape as (rows, cols), byte offset in the file) and a tokenizer summary\n"
    "(from -z, or from GGUF metadata).\n"
    "\n"
    "  -z TOKENIZER  llama2.c tokenizer.bin to validate against the model\n"
    "  --mmap MODE, --no-mmap  how the model is loaded (see 'qorus run --help')\n"
    "  -h, --help    this text\n";

static int usage_error(const char *cmd, const char *what, const char *arg)
{
    fprintf(stderr, "qorus: %s: %s '%s' (see 'qorus %s --help')\n", cmd, what, arg, cmd);
    return EXIT_USAGE;
}

/* The one-line report of a rejected file. */
static int file_error(const char *file, q_error_code err, const q_diag *diag)
{
    if (diag != NULL && diag->field[0] != '\0')
        fprintf(stderr, "qorus: %s: %s (%.64s = %" PRId64 " at offset %" PRIu64 ")\n", file,
                q_strerror(err), diag->field, diag->value, diag->offset);
    else if (err == Q_ERR_FILE_OPEN || err == Q_ERR_FILE_STAT || err == Q_ERR_MMAP ||
             err == Q_ERR_IO)
        fprintf(stderr, "qorus: %s: %s (%s)\n", file, q_strerror(err), strerror(errno));
    else
        fprintf(stderr, "qorus: %s: %s\n", file, q_strerror(err));
    return EXIT_BAD_INPUT;
}

/* ---- arguments ---- */

typedef struct options {
    const char *model;
    const char *tokenizer;
    const char *prompt;
    size_t steps;
    float temperature;
    float topp;
    uint64_t seed;
    size_t threads; /* 0: q_default_threads() */
    size_t batch;   /* 0: Q_DEFAULT_BATCH */
    q_mmap_strategy strategy;
    int special;    /* --special: Q_ENCODE_SPECIAL for the prompt */
} options;

static int parse_size(const char *s, size_t *out)
{
    if (s[0] < '0' || s[0] > '9')
        return 0;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > SIZE_MAX)
        return 0;
    *out = (size_t)v;
    return 1;
}

static int parse_u64(const char *s, uint64_t *out)
{
    size_t v;
    if (sizeof(size_t) >= sizeof(uint64_t)) {
        if (!parse_size(s, &v))
            return 0;
        *out = (uint64_t)v;
        return 1;
    }
    if (s[0] < '0' || s[0] > '9')
        return 0;
    errno = 0;
    char *end;
    unsigned long long u = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return 0;
    *out = (uint64_t)u;
    return 1;
}

static int parse_float(const char *s, float lo, float hi, float *out)
{
    if (s[0] == '\0')
        return 0;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (errno != 0 || *end != '\0' || !isfinite(v) || v < (double)lo || v > (double)hi)
        return 0;
    *out = (float)v;
    return 1;
}

static int is_help(const char *a)
{
    return strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0;
}

/* Parses argv[0..argc) of a subcommand. Returns -1 to continue, else an exit status. */
static int parse_options(const char *cmd, int argc, char **argv, options *o, int run)
{
    int seed_given = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (run && strcmp(a, "--threads") == 0)
            a = "-j";
        else if (run && strcmp(a, "--batch") == 0)
            a = "-b";
        if (is_help(a)) {
            fputs(run ? usage_run : usage_inspect, stdout);
            return 0;
        }
        if (run && strcmp(a, "--special") == 0) {
            o->special = 1;
            continue;
        }
        if (strcmp(a, "--no-mmap") == 0) {
            o->strategy = Q_MMAP_READ;
            continue;
        }
        if (strcmp(a, "--mmap") == 0) {
            const char *m = i + 1 < argc ? argv[++i] : "";
            if (strcmp(m, "lazy") == 0)
                o->strategy = Q_MMAP_LAZY;
            else if (strcmp(m, "eager") == 0)
                o->strategy = Q_MMAP_EAGER;
            else if (strcmp(m, "read") == 0)
                o->strategy = Q_MMAP_READ;
            else
                return usage_error(cmd, "--mmap needs lazy, eager or read, not", m);
            continue;
        }
        if (a[0] != '-' || a[1] == '\0') {
            if (o->model != NULL)
                return usage_error(cmd, "unexpected argument", a);
            o->model = a;
            continue;
        }
        const char *flags = run ? "zinptsjb" : "z";
        if (a[2] != '\0' || strchr(flags, a[1]) == NULL)
            return usage_error(cmd, "unknown option", a);
        if (i + 1 >= argc)
            return usage_error(cmd, "missing value after", a);
        const char *v = argv[++i];
        switch (a[1]) {
        case 'z': o->tokenizer = v; break;
        case 'i': o->prompt = v; break;
        case 'n':
            if (!parse_size(v, &o->steps))
                return usage_error(cmd, "-n needs a non-negative integer, not", v);
            break;
        case 't':
            if (!parse_float(v, 0.0f, 1e30f, &o->temperature))
                return usage_error(cmd, "-t needs a number >= 0, not", v);
            break;
        case 'p':
            if (!parse_float(v, 0.0f, 1.0f, &o->topp))
                return usage_error(cmd, "-p needs a number in [0, 1], not", v);
            break;
        case 'j':
            if (!parse_size(v, &o->threads) || o->threads == 0 || o->threads > Q_MAX_THREADS)
                return usage_error(cmd, "-j needs a thread count in 1..64, not", v);
            break;
        case 'b':
            if (!parse_size(v, &o->batch) || o->batch == 0 || o->batch > Q_MAX_BATCH)
                return usage_error(cmd, "--batch needs a token count in 1..512, not", v);
            break;
        case 's':
            if (!parse_u64(v, &o->seed))
                return usage_error(cmd, "-s needs an unsigned integer, not", v);
            seed_given = 1;
            break;
        }
    }
    if (o->model == NULL) {
        fprintf(stderr, "qorus: %s: no MODEL given (see 'qorus %s --help')\n", cmd, cmd);
        return EXIT_USAGE;
    }
    if (!seed_given || o->seed == 0)
        o->seed = (uint64_t)time(NULL);
    return -1;
}

/* ---- loading ---- */

typedef struct loaded {
    q_context ctx;
    q_model model;
    q_tokenizer tok; /* from -z, or from GGUF metadata */
    int have_tok;
    const char *tok_source;
} loaded;

static void unload(loaded *L)
{
    q_tokenizer_free(&L->tok);
    q_model_free(&L->model);
    q_free_memory(&L->ctx);
}

/* Loads the model and the tokenizer (-z wins over GGUF metadata). Returns -1 or an exit
 * status after printing the error line. */
static int load(loaded *L, const options *o, int need_tokenizer)
{
    memset(L, 0, sizeof *L);
    q_diag diag;
    memset(&diag, 0, sizeof diag);
    q_error_code err = q_model_load(&L->model, &L->tok, &L->ctx, o->model, o->strategy, &diag);
    if (err != Q_OK)
        return file_error(o->model, err, &diag);
    L->have_tok = L->tok.vocab_size != 0;
    L->tok_source = "model metadata";
    if (o->tokenizer != NULL) {
        q_tokenizer_free(&L->tok);
        memset(&diag, 0, sizeof diag);
        err = q_tokenizer_load(&L->tok, o->tokenizer, L->model.config.vocab_size, &diag);
        if (err != Q_OK) {
            unload(L);
            return file_error(o->tokenizer, err, &diag);
        }
        L->have_tok = 1;
        L->tok_source = o->tokenizer;
    }
    if (need_tokenizer && !L->have_tok) {
        fprintf(stderr, "qorus: %s: llama2.c checkpoints carry no vocabulary: give its "
                        "tokenizer with -z TOKENIZER\n", o->model);
        unload(L);
        return EXIT_USAGE;
    }
    if (L->have_tok && L->tok.vocab_size != L->model.config.vocab_size) {
        unload(L);
        return file_error(L->tok_source, Q_ERR_VOCAB_MISMATCH, NULL);
    }
    return -1;
}

/* ---- run ---- */

static int cmd_run(int argc, char **argv)
{
    options o = {NULL, NULL, "", 256, 1.0f, 0.9f, 0, 0, 0, Q_MMAP_LAZY, 0};
    int rc = parse_options("run", argc, argv, &o, 1);
    if (rc >= 0)
        return rc;
    q_out_catch_interrupts(); /* from here Ctrl-C stops at the next token */
    loaded L;
    if ((rc = load(&L, &o, 1)) >= 0)
        return rc;

    q_output out = {stdout, "stdout", 0};
    q_state st;
    q_sampler sampler;
    q_gen_stats stats;
    q_state_options sopt = {.n_threads = o.threads != 0 ? o.threads : q_default_threads(),
                            .max_batch = o.batch, .kernels = NULL};
    q_error_code err = q_state_init_ex(&st, &L.ctx, &L.model, &sopt);
    if (err == Q_OK) {
        err = q_sampler_init(&sampler, L.model.config.vocab_size, o.temperature, o.topp,
                             o.seed);
        if (err == Q_OK)
            err = q_generate_ex(&st, &L.tok, &sampler, o.prompt, o.steps,
                                o.special ? (unsigned)Q_ENCODE_SPECIAL : 0u, q_out_emit, &out,
                                &stats);
        q_state_free(&st);
    }
    if (err == Q_ERR_IO && (rc = q_out_report(&out)) >= 0) {
        /* the output failed: one line naming it (q_out_report) */
    } else if (err != Q_OK && q_out_stop_signal() == 0) {
        fflush(stdout);
        rc = file_error(o.model, err, NULL);
    } else { /* done, or interrupted: the stats line for what was done */
        fprintf(stderr,
                "stats: tokens=%zu prompt=%zu sampled=%zu threads=%zu kernels=%s time_s=%.3f "
                "tok_per_s=%.1f prefill_tok_per_s=%.1f decode_tok_per_s=%.1f ttft_ms=%.2f "
                "arena_hwm_bytes=%zu kv_bytes=%zu\n",
                stats.n_positions, stats.n_prompt_tokens, stats.n_sampled, stats.n_threads,
                stats.kernels, stats.seconds, stats.tokens_per_second,
                stats.prefill_tokens_per_second, stats.decode_tokens_per_second,
                stats.seconds_to_first * 1000.0, stats.arena_high_water, stats.kv_bytes);
        rc = q_out_interrupt_status(); /* 0, or 130 / 143 */
    }
    unload(&L);
    return rc;
}

/* ---- inspect ---- */

static const char *type_name(q_tensor_type t)
{
    switch (t) {
    case Q_TENSOR_F32: return "F32";
    case Q_TENSOR_F16: return "F16";
    case Q_TENSOR_BF16: return "BF16";
    case Q_TENSOR_Q8_0: return "Q8_0";
    case Q_TENSOR_Q4_0: return "Q4_0";
    case Q_TENSOR_Q4_K: return "Q4_K";
    case Q_TENSOR_Q5_K: return "Q5_K";
    case Q_TENSOR_Q6_K: return "Q6_K";
    case Q_TENSOR_Q8_SPLIT: return "Q8_SPLIT";
    }
    return "?";
}

static void print_tensor(const loaded *L, const char *name, const q_tensor *t)
{
    const char *base = (const char *)L->ctx.weights_mmap;
    unsigned long long off = (unsigned long long)((const char *)t->data - base);
    char shape[64];
    snprintf(shape, sizeof shape, "(%zu, %zu)", t->rows, t->cols);
    printf("  %-32s %-8s %-14s offset %llu", name, type_name(t->type), shape, off);
    if (t->type == Q_TENSOR_Q8_SPLIT && t->scales != NULL)
        printf(", scales at %llu (group %zu)",
               (unsigned long long)((const char *)t->scales - base), t->group_size);
    printf("\n");
}

static int cmd_inspect(int argc, char **argv)
{
    options o = {NULL, NULL, "", 0, 0.0f, 0.0f, 0, 0, 0, Q_MMAP_LAZY, 0};
    int rc = parse_options("inspect", argc, argv, &o, 0);
    if (rc >= 0)
        return rc;
    loaded L;
    if ((rc = load(&L, &o, 0)) >= 0)
        return rc;
    const q_model *m = &L.model;
    const q_config *c = &m->config;
    int gguf = m->format == Q_FORMAT_GGUF;

    printf("file: %s (%zu bytes)\n", o.model, L.ctx.weights_size);
    if (gguf)
        printf("format: GGUF version %u\n", (unsigned)m->version);
    else
        printf("format: llama2.c version %u (%s)\n", (unsigned)m->version,
               m->version == 0 ? "legacy, float32"
               : m->version == 1 ? "ak42, float32" : "ak42, Q8 groups");
    printf("config: dim=%zu hidden_dim=%zu n_layers=%zu n_heads=%zu n_kv_heads=%zu "
           "vocab_size=%zu seq_len=%zu head_size=%zu rope_theta=%g norm_eps=%g "
           "classifier=%s arch=%s rope_pairs=%s rope_linear_factor=%g rope_factors=%s\n",
           c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->vocab_size,
           c->seq_len, c->dim / c->n_heads, (double)c->rope_theta, (double)c->norm_eps,
           m->shared_classifier ? "shared" : "separate",
           c->arch == Q_ARCH_QWEN2 ? "qwen2" : "llama", c->rope_neox ? "neox" : "interleaved",
           (double)(c->rope_linear_factor != 0.0f ? c->rope_linear_factor : 1.0f),
           m->rope_factors.data != NULL ? "yes" : "no");

    size_t n_biases = 0;
    for (size_t l = 0; l < c->n_layers; l++)
        n_biases += (m->layers[l].bq.data != NULL ? 1u : 0u) +
                    (m->layers[l].bk.data != NULL ? 1u : 0u) + (m->layers[l].bv.data != NULL ? 1u : 0u);
    size_t n_tensors = 2 + 9 * c->n_layers + (m->shared_classifier ? 0 : 1) + n_biases +
                       (m->rope_factors.data != NULL ? 1u : 0u);
    printf("tensors: %zu\n", n_tensors);
    print_tensor(&L, gguf ? "token_embd.weight" : "tok_embeddings", &m->token_embedding);
    static const char *const gguf_names[9] = {"attn_norm", "attn_q", "attn_k",
                                              "attn_v", "attn_output", "ffn_norm",
                                              "ffn_gate", "ffn_down", "ffn_up"};
    static const char *const l2c_names[9] = {"attention_norm", "attention.wq",
                                             "attention.wk", "attention.wv",
                                             "attention.wo", "ffn_norm",
                                             "feed_forward.w1", "feed_forward.w2",
                                             "feed_forward.w3"};
    for (size_t l = 0; l < c->n_layers; l++) {
        const q_layer *ly = &m->layers[l];
        const q_tensor *ts[9] = {&ly->attn_norm, &ly->wq, &ly->wk, &ly->wv, &ly->wo,
                                 &ly->ffn_norm, &ly->w1, &ly->w2, &ly->w3};
        for (int k = 0; k < 9; k++) {
            char name[96];
            if (gguf)
                snprintf(name, sizeof name, "blk.%zu.%s.weight", l, gguf_names[k]);
            else
                snprintf(name, sizeof name, "layers.%zu.%s", l, l2c_names[k]);
            print_tensor(&L, name, ts[k]);
        }
        const q_tensor *bias[3] = {&ly->bq, &ly->bk, &ly->bv};
        for (int k = 0; k < 3; k++)
            if (bias[k]->data != NULL) {
                char name[96];
                snprintf(name, sizeof name, "blk.%zu.%s.bias", l, gguf_names[1 + k]);
                print_tensor(&L, name, bias[k]);
            }
    }
    if (m->rope_factors.data != NULL)
        print_tensor(&L, "rope_freqs.weight", &m->rope_factors);
    print_tensor(&L, gguf ? "output_norm.weight" : "norm", &m->final_norm);
    if (!m->shared_classifier)
        print_tensor(&L, gguf ? "output.weight" : "output", &m->classifier);

    if (L.have_tok) {
        const q_tokenizer *t = &L.tok;
        size_t max_len = 0;
        for (size_t i = 0; i < t->vocab_size; i++)
            if (t->piece_lengths[i] > max_len)
                max_len = t->piece_lengths[i];
        static const char *const pre_names[] = {"none", "gpt-2", "llama-bpe", "qwen2"};
        printf("tokenizer: %s: vocab_size=%zu max_token_length=%zu (longest piece %zu) "
               "bos=%u eos=%u byte_fallback=%s model=%s add_bos=%s",
               L.tok_source, t->vocab_size, t->max_token_length, max_len,
               (unsigned)t->bos_id, (unsigned)t->eos_id, t->has_byte_fallback ? "yes" : "no",
               t->kind == Q_VOCAB_BPE ? "gpt2" : "llama", t->add_bos ? "yes" : "no");
        if (t->eot_id != Q_TOKEN_NONE)
            printf(" eot=%u", (unsigned)t->eot_id);
        if (t->kind == Q_VOCAB_BPE)
            printf(" pre=%s merges=%zu",
                   (size_t)t->pretok < sizeof pre_names / sizeof pre_names[0]
                       ? pre_names[t->pretok] : "?",
                   t->n_merges);
        printf("\n");
    } else {
        printf("tokenizer: none (llama2.c checkpoint; give one with -z)\n");
    }
    unload(&L);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "qorus: no command given: usage: qorus run|inspect MODEL [options] "
                        "(see 'qorus --help')\n");
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (is_help(cmd) || strcmp(cmd, "help") == 0) {
        fputs(usage_top, stdout);
        return 0;
    }
    if (strcmp(cmd, "run") == 0)
        return q_out_close_stdout(cmd_run(argc - 2, argv + 2));
    if (strcmp(cmd, "inspect") == 0)
        return q_out_close_stdout(cmd_inspect(argc - 2, argv + 2));
    fprintf(stderr, "qorus: unknown command '%s' (see 'qorus --help')\n", cmd);
    return EXIT_USAGE;
}
