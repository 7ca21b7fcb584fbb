/*
 * test_mutators: checks the structure-aware mutators (fuzz/mutator_*.c) without an engine.
 *
 *   test_mutators FORMAT=SEED [FORMAT=SEED...]      FORMAT: gguf, llama2c, tokenizer
 *   test_mutators hostile:FORMAT=SEED ...           a well-framed seed the library refuses
 *
 * For each valid seed file: 1000 mutations (seeds 1..1000, output capacity twice the seed,
 * every 10th call a capacity below the seed's size) must
 *   - never write past the capacity (ASan) nor report more bytes than it; every output
 *     byte is read (MSan);
 *   - be deterministic: the same input and seed give the same bytes;
 *   - mostly be well framed by the mutator's own parser (at least 70% of the outputs);
 *   - include well-framed outputs of another size (a config/shape change made consistent
 *     by resizing the data) that the library's parser accepts (q_model_parse or
 *     q_tokenizer_parse), at least 10 of them;
 * for a byte-level BPE seed, well-framed outputs reach both verdicts: at least 50 accepted
 * (5 of them with another merge list) and 50 rejected by a vocabulary rule (pre, merges,
 * token types, byte-level text, special ids);
 * and 200 cross-overs of the seed with the next seed of the same format (or itself) are
 * bounded and deterministic. A hostile seed (extreme header values: the mutators compute
 * with them, e.g. a GGUF block count of 2^63) gets the same checks except the library's
 * acceptance, under UBSan too. Prints the counts; exit status 1 on any failure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mutator_common.h"
#include "qorus_model.h"

#define N_MUTATIONS 1000u
#define N_CROSSOVERS 200u

static int failures;

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "test_mutators: %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                                  \
            fputc('\n', stderr);                                           \
            failures++;                                                    \
        }                                                                  \
    } while (0)

typedef struct fmt_entry {
    const char *name;
    const qm_format *fmt;
    int (*well_framed)(const uint8_t *, size_t);
} fmt_entry;

static const fmt_entry formats[] = {
    {"gguf", &qm_format_gguf, qm_gguf_well_framed},
    {"llama2c", &qm_format_llama2c, qm_llama2c_well_framed},
    {"tokenizer", &qm_format_tokenizer, qm_tokenizer_well_framed},
};

static uint8_t *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    uint8_t *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? 2 * cap : 4096;
            uint8_t *b = realloc(buf, cap);
            if (b == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = b;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        if (got == 0)
            break;
        n += got;
    }
    fclose(f);
    *size = n;
    return buf;
}

/* The library accepts the file (a model with its tokenizer, or a tokenizer). */
static int library_accepts(const fmt_entry *e, const uint8_t *data, size_t size)
{
    if (strcmp(e->name, "tokenizer") == 0) {
        q_tokenizer t;
        q_error_code rc = q_tokenizer_parse(&t, data, size, 0, NULL);
        q_tokenizer_free(&t);
        return rc == Q_OK;
    }
    q_model m;
    q_tokenizer t;
    int gguf = strcmp(e->name, "gguf") == 0;
    q_error_code rc = q_model_parse(&m, gguf ? &t : NULL, data, size, NULL);
    if (rc == Q_OK) {
        q_model_free(&m);
        if (gguf)
            q_tokenizer_free(&t);
    }
    return rc == Q_OK;
}

/* Whether a rejection's diagnostic field names a rule of byte-level BPE vocabularies (or the
 * keys both kinds share that BPE seeds carry: eot_token_id, add_bos_token). */
static int bpe_field(const char *field)
{
    static const char *const prefixes[] = {
        "tokenizer.ggml.model", "tokenizer.ggml.pre",  "tokenizer.ggml.merges",
        "merge ",               "tokenizer.ggml.token_type", "token (",
        "byte-level token",     "tokenizer.ggml.eot_token_id", "tokenizer.ggml.add_bos_token",
        "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        if (strncmp(field, prefixes[i], strlen(prefixes[i])) == 0)
            return 1;
    return 0;
}

/* A GGUF output's verdict: 1 accepted, 0 rejected; *bpe_rule says whether the rejection was
 * a BPE vocabulary rule; *merges_differ whether an accepted BPE vocabulary's merges differ
 * from `seed_tok`'s. */
static int gguf_verdict(const uint8_t *data, size_t size, const q_tokenizer *seed_tok,
                        int *bpe_rule, int *merges_differ)
{
    q_model m;
    q_tokenizer t;
    q_diag d;
    q_error_code rc = q_model_parse(&m, &t, data, size, &d);
    *bpe_rule = rc != Q_OK && bpe_field(d.field);
    *merges_differ = 0;
    if (rc != Q_OK)
        return 0;
    if (t.kind == Q_VOCAB_BPE &&
        (t.n_merges != seed_tok->n_merges ||
         (t.n_merges && memcmp(t.merges, seed_tok->merges, 3 * t.n_merges * sizeof(uint32_t)))))
        *merges_differ = 1;
    q_model_free(&m);
    q_tokenizer_free(&t);
    return 1;
}

/* Reads every byte (MSan reports an uninitialized one). */
static unsigned touch(const uint8_t *p, size_t n)
{
    unsigned s = 0;
    for (size_t i = 0; i < n; i++)
        s += p[i];
    return s;
}

static void check_format(const fmt_entry *e, const uint8_t *seed, size_t size,
                         const uint8_t *other, size_t other_size, int hostile)
{
    CHECK(e->well_framed(seed, size), "%s: the seed itself is not well framed", e->name);
    size_t ok = 0, framed = 0, resized = 0, accepted_resized = 0, sum = 0;
    /* BPE seeds: the verdicts of the well-framed outputs */
    q_tokenizer seed_tok;
    q_model seed_model;
    int bpe = 0;
    size_t bpe_accepted = 0, bpe_rejected = 0, bpe_new_merges = 0;
    memset(&seed_tok, 0, sizeof seed_tok);
    if (strcmp(e->name, "gguf") == 0 && !hostile &&
        q_model_parse(&seed_model, &seed_tok, seed, size, NULL) == Q_OK) {
        q_model_free(&seed_model);
        bpe = seed_tok.kind == Q_VOCAB_BPE;
    }
    for (unsigned s = 1; s <= N_MUTATIONS; s++) {
        size_t max_size = s % 10 == 0 ? size / 2 + 1 : 2 * size;
        uint8_t *a = malloc(max_size), *b = malloc(max_size);
        if (a == NULL || b == NULL) {
            CHECK(0, "out of memory");
            free(a);
            free(b);
            return;
        }
        size_t na = 0, nb = 0;
        qm_rng r1 = {s}, r2 = {s};
        int oka = e->fmt->mutate(&r1, seed, size, a, max_size, &na);
        int okb = e->fmt->mutate(&r2, seed, size, b, max_size, &nb);
        CHECK(oka == okb, "%s seed %u: success differs between two runs", e->name, s);
        if (oka && okb) {
            ok++;
            CHECK(na <= max_size, "%s seed %u: %zu bytes > max_size %zu", e->name, s, na, max_size);
            CHECK(na == nb && memcmp(a, b, na) == 0, "%s seed %u: not deterministic", e->name, s);
            sum += touch(a, na);
            if (e->well_framed(a, na)) {
                framed++;
                if (bpe) {
                    int rule, differ;
                    if (gguf_verdict(a, na, &seed_tok, &rule, &differ)) {
                        bpe_accepted++;
                        bpe_new_merges += (size_t)differ;
                    } else {
                        bpe_rejected += (size_t)rule;
                    }
                }
                if (na != size) {
                    resized++;
                    accepted_resized += (size_t)library_accepts(e, a, na);
                }
            }
        }
        free(a);
        free(b);
    }
    printf("%s: %zu/%u mutations, %zu well framed, %zu of another size, %zu of those accepted "
           "by the library (checksum %zu)\n",
           e->name, ok, N_MUTATIONS, framed, resized, accepted_resized, sum & 0xff);
    CHECK(ok >= N_MUTATIONS / 2, "%s: only %zu of %u mutations succeeded", e->name, ok,
          N_MUTATIONS);
    CHECK(framed * 10 >= ok * 7, "%s: only %zu of %zu outputs well framed", e->name, framed, ok);
    CHECK(hostile || accepted_resized >= 10,
          "%s: only %zu resized outputs accepted by the library", e->name, accepted_resized);
    if (bpe) {
        printf("%s (byte-level BPE seed): %zu well-framed outputs accepted (%zu with other "
               "merges), %zu rejected by a vocabulary rule\n",
               e->name, bpe_accepted, bpe_new_merges, bpe_rejected);
        CHECK(bpe_accepted >= 50 && bpe_new_merges >= 5 && bpe_rejected >= 50,
              "%s: BPE seed mutants: %zu accepted, %zu with other merges, %zu rejected by a "
              "vocabulary rule", e->name, bpe_accepted, bpe_new_merges, bpe_rejected);
    }
    q_tokenizer_free(&seed_tok);

    size_t crossed = 0;
    for (unsigned s = 1; s <= N_CROSSOVERS; s++) {
        size_t max_out = size + other_size;
        uint8_t *a = malloc(max_out), *b = malloc(max_out);
        if (a == NULL || b == NULL) {
            CHECK(0, "out of memory");
            free(a);
            free(b);
            return;
        }
        size_t na = 0, nb = 0;
        qm_rng r1 = {s}, r2 = {s};
        int oka = e->fmt->crossover(&r1, seed, size, other, other_size, a, max_out, &na);
        int okb = e->fmt->crossover(&r2, seed, size, other, other_size, b, max_out, &nb);
        CHECK(oka == okb && (!oka || (na == nb && na <= max_out && memcmp(a, b, na) == 0)),
              "%s cross-over seed %u: not deterministic or too long", e->name, s);
        if (oka) {
            crossed += (size_t)e->well_framed(a, na);
            sum += touch(a, na);
        }
        free(a);
        free(b);
    }
    printf("%s: %zu/%u cross-overs well framed\n", e->name, crossed, N_CROSSOVERS);
    CHECK(crossed >= N_CROSSOVERS / 2, "%s: only %zu cross-overs well framed", e->name, crossed);

    /* An input the format cannot parse is refused (the engine then mutates bytes). */
    uint8_t junk[3] = {1, 2, 3}, out[16];
    size_t n;
    qm_rng r = {1};
    CHECK(!e->fmt->mutate(&r, junk, sizeof junk, out, sizeof out, &n),
          "%s: a 3-byte input was mutated structurally", e->name);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_mutators FORMAT=SEED...\n");
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        static const char hostile_prefix[] = "hostile:";
        int hostile = strncmp(argv[i], hostile_prefix, sizeof hostile_prefix - 1) == 0;
        if (hostile)
            argv[i] += sizeof hostile_prefix - 1;
        const char *eq = strchr(argv[i], '=');
        const fmt_entry *e = NULL;
        for (size_t k = 0; eq != NULL && k < sizeof formats / sizeof formats[0]; k++)
            if (strlen(formats[k].name) == (size_t)(eq - argv[i]) &&
                memcmp(formats[k].name, argv[i], (size_t)(eq - argv[i])) == 0)
                e = &formats[k];
        if (e == NULL) {
            fprintf(stderr, "test_mutators: bad argument %s\n", argv[i]);
            return 2;
        }
        /* the cross-over partner: the next argument of the same format, or the seed itself */
        const char *other_path = eq + 1;
        if (i + 1 < argc && strncmp(argv[i + 1], argv[i], (size_t)(eq - argv[i]) + 1) == 0)
            other_path = argv[i + 1] + (eq - argv[i]) + 1;
        size_t size = 0, other_size = 0;
        uint8_t *seed = read_file(eq + 1, &size), *other = read_file(other_path, &other_size);
        if (seed == NULL || other == NULL) {
            fprintf(stderr, "test_mutators: cannot read %s or %s\n", eq + 1, other_path);
            return 2;
        }
        check_format(e, seed, size, other, other_size, hostile);
        free(seed);
        free(other);
    }
    if (failures)
        fprintf(stderr, "test_mutators: %d failures\n", failures);
    return failures ? 1 : 0;
}
