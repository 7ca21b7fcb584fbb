/*
 * Tokenizer tests.
 *   test_infer_tokenizer            hand-built vocabularies: merges by score (leftmost on
 *                                   ties), byte fallback, <unk> without fallback,
 *                                   SentencePiece "▁" spelling, decoder UTF-8 assembler
 *   test_infer_tokenizer MODELS_DIR real tokenizers: round trips on tok512.bin, tok105.bin
 *                                   without byte fallback, GGUF vocabulary = tok512.bin
 *                                   (exit 77 when MODELS_DIR has no models)
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../check.h"
#include "qorus.h"

/* ---- a hand-built vocabulary ---- */

typedef struct toy {
    q_tokenizer tok;
    char *store[300];
} toy;

static void toy_add(toy *t, const char *piece, size_t len, float score)
{
    size_t i = t->tok.vocab_size++;
    t->store[i] = malloc(len + 1);
    memcpy(t->store[i], piece, len);
    t->store[i][len] = '\0';
    t->tok.pieces[i] = t->store[i];
    t->tok.piece_lengths[i] = len;
    t->tok.scores[i] = score;
}

/* ids: 0 <unk>, 1 BOS, 2 EOS, [3..259) <0xXX> when `fallback`, then `extra` pieces */
static void toy_init(toy *t, int fallback, const char *const *extra, const float *scores,
                     size_t n_extra)
{
    memset(t, 0, sizeof *t);
    t->tok.pieces = calloc(300, sizeof(char *));
    t->tok.piece_lengths = calloc(300, sizeof(size_t));
    t->tok.scores = calloc(300, sizeof(float));
    toy_add(t, "<unk>", 5, 0.0f);
    toy_add(t, "\n<s>\n", 5, 0.0f);
    toy_add(t, "\n</s>\n", 6, 0.0f);
    t->tok.bos_id = 1;
    t->tok.eos_id = 2;
    if (fallback) {
        for (int b = 0; b < 256; b++) {
            char p[8];
            snprintf(p, sizeof p, "<0x%02X>", b);
            t->tok.byte_tokens[b] = (uint32_t)t->tok.vocab_size;
            toy_add(t, p, 6, 0.0f);
        }
        t->tok.has_byte_fallback = 1;
    }
    for (size_t i = 0; i < n_extra; i++)
        toy_add(t, extra[i], strlen(extra[i]), scores[i]);
    t->tok.max_token_length = 16;
}

static void toy_free(toy *t)
{
    for (size_t i = 0; i < t->tok.vocab_size; i++)
        free(t->store[i]);
    free(t->tok.pieces);
    free(t->tok.piece_lengths);
    free(t->tok.scores);
}

static uint32_t id_of(const toy *t, const char *piece)
{
    for (size_t i = 0; i < t->tok.vocab_size; i++)
        if (strcmp(t->tok.pieces[i], piece) == 0)
            return (uint32_t)i;
    return UINT32_MAX;
}

/* Encodes `text` with BOS and compares with the expected pieces (BOS not listed). */
static void expect_encode(const toy *t, const q_encoder *enc, const char *text,
                          const char *const *want, size_t n_want)
{
    uint32_t ids[64];
    size_t n = 0;
    CHECK_EQ_INT(q_encode(enc, text, strlen(text), 1, 0, ids, 64, &n), Q_OK);
    int ok = n == n_want + 1 && ids[0] == 1;
    for (size_t i = 0; ok && i < n_want; i++)
        ok = ids[i + 1] == id_of(t, want[i]);
    if (!ok) {
        fprintf(stderr, "encode(\"%s\"):", text);
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, " [%s]", t->tok.pieces[ids[i]]);
        fprintf(stderr, "\n");
    }
    CHECK(ok);
}

static void test_encode(void)
{
    static const char *const extra[] = {" ", "a", "b", "ab", " a", " ab", "bb", "\xC3\xA9"};
    static const float scores[] = {-1, -1, -1, 3, 5, 4, 1, -1};
    toy t;
    toy_init(&t, 1, extra, scores, 8);
    q_encoder enc;
    CHECK_EQ_INT(q_encoder_init(&enc, &t.tok), Q_OK);
    CHECK_EQ_INT(enc.space_id, id_of(&t, " "));

    expect_encode(&t, &enc, "ab", (const char *const[]){" ab"}, 1); /* " a" first, then " ab" */
    expect_encode(&t, &enc, "bbb", (const char *const[]){" ", "bb", "b"}, 3); /* leftmost tie */
    expect_encode(&t, &enc, "x\xC3\xA9", (const char *const[]){" ", "<0x78>", "\xC3\xA9"}, 3);
    expect_encode(&t, &enc, "\xE6\x97\xA5", (const char *const[]){" ", "<0xE6>", "<0x97>", "<0xA5>"}, 4);
    expect_encode(&t, &enc, "", NULL, 0); /* no dummy prefix for empty text */

    uint32_t ids[16];
    size_t n = 99;
    CHECK_EQ_INT(q_encode(&enc, "ab", 2, 0, 1, ids, 16, &n), Q_OK); /* no BOS, EOS */
    CHECK(n == 2 && ids[0] == id_of(&t, " ab") && ids[1] == 2);
    CHECK_EQ_INT(q_encode(&enc, "ab", 2, 1, 1, ids, 4, &n), Q_ERR_OVERFLOW); /* needs 5 */
    CHECK_EQ_INT(n, 0);
    CHECK_EQ_INT(q_encode_capacity(SIZE_MAX), 0);
    CHECK_EQ_INT(q_encode(&enc, NULL, 1, 1, 0, ids, 16, &n), Q_ERR_INVALID_ARG);
    /* invalid UTF-8: a lone continuation byte and a truncated sequence become bytes */
    CHECK_EQ_INT(q_encode(&enc, "\x80\xE6\x97", 3, 1, 0, ids, 16, &n), Q_OK);
    CHECK(n == 5 && ids[2] == id_of(&t, "<0x80>") && ids[4] == id_of(&t, "<0x97>"));
    q_encoder_free(&enc);
    q_encoder_free(&enc); /* twice is safe */
    toy_free(&t);

    /* no byte fallback: one <unk> per unknown codepoint */
    toy_init(&t, 0, extra, scores, 8);
    CHECK_EQ_INT(q_encoder_init(&enc, &t.tok), Q_OK);
    expect_encode(&t, &enc, "x\xE6\x97\xA5" "a", (const char *const[]){" ", "<unk>", "<unk>", "a"}, 4);
    q_encoder_free(&enc);
    toy_free(&t);

    /* SentencePiece spelling (GGUF): "▁" stands for a space */
    static const char *const spm[] = {"\xE2\x96\x81", "a", ("\xE2\x96\x81" "a")};
    static const float spm_scores[] = {-1, -1, 2};
    toy_init(&t, 1, spm, spm_scores, 3);
    CHECK_EQ_INT(q_encoder_init(&enc, &t.tok), Q_OK);
    CHECK_EQ_INT(q_encode(&enc, "a a", 3, 1, 0, ids, 16, &n), Q_OK);
    CHECK(n == 3 && ids[1] == id_of(&t, "\xE2\x96\x81" "a") && ids[2] == ids[1]);
    q_decoder dec;
    const char *out;
    size_t len;
    CHECK_EQ_INT(q_decoder_init(&dec, &t.tok), Q_OK);
    CHECK_EQ_INT(q_decoder_next(&dec, 1, ids[1], &out, &len), Q_OK);
    CHECK(len == 1 && memcmp(out, "a", 1) == 0); /* space stripped after BOS */
    CHECK_EQ_INT(q_decoder_next(&dec, ids[1], ids[2], &out, &len), Q_OK);
    CHECK(len == 2 && memcmp(out, " a", 2) == 0);
    q_decoder_free(&dec);
    q_encoder_free(&enc);
    toy_free(&t);
}

/* Feeds `in` to the assembler and compares what comes out. */
static void expect_feed(q_decoder *dec, const char *in, size_t in_len, const char *want)
{
    const char *out;
    size_t len;
    CHECK_EQ_INT(q_decoder_feed_bytes(dec, in, in_len, &out, &len), Q_OK);
    if (len != strlen(want) || memcmp(out, want, len) != 0) {
        fprintf(stderr, "feed: got %zu bytes '%.*s', want '%s'\n", len, (int)len, out, want);
        CHECK(0);
    }
}

static void test_decode(void)
{
    static const char *const extra[] = {" ", "a", " ab", "\x01", "\x1b[0m"};
    static const float scores[] = {0, 0, 0, 0, 0};
    toy t;
    toy_init(&t, 1, extra, scores, 5);
    q_decoder dec;
    CHECK_EQ_INT(q_decoder_init(&dec, &t.tok), Q_OK);

    /* a sequence split over calls */
    expect_feed(&dec, "Ol\xC3", 3, "Ol");
    expect_feed(&dec, "\xA1", 1, "\xC3\xA1");
    expect_feed(&dec, "\xF0\x9F", 2, "");
    expect_feed(&dec, "\x98", 1, "");
    expect_feed(&dec, "\x80!", 2, "\xF0\x9F\x98\x80!");
    /* control bytes dropped, whitespace kept, DEL dropped */
    expect_feed(&dec, "\x01" "a\x1b[31m\x7f\n\t\r", 11, "a[31m\n\t\r");
    /* invalid sequences dropped: interrupted, stray continuation, never-valid bytes,
     * overlong, surrogate, above U+10FFFF */
    expect_feed(&dec, "\xC3x", 2, "x");
    expect_feed(&dec, "\x80\xBF\xC0\xC1\xF5\xFF", 6, "");
    expect_feed(&dec, "\xE0\x80\x80", 3, "");
    expect_feed(&dec, "\xED\xA0\x80", 3, "");
    expect_feed(&dec, "\xF4\x90\x80\x80", 4, "");
    expect_feed(&dec, "\xED\x9F\xBF", 3, "\xED\x9F\xBF"); /* U+D7FF is fine */
    /* finish drops a pending sequence */
    expect_feed(&dec, "\xE6\x97", 2, "");
    q_decoder_finish(&dec);
    expect_feed(&dec, "\xA5" "b", 2, "b");

    /* tokens: byte fallback assembles across tokens; run.c rules for pieces */
    const char *out;
    size_t len;
    uint32_t a = id_of(&t, "a"), ab = id_of(&t, " ab");
    CHECK_EQ_INT(q_decoder_next(&dec, a, t.tok.byte_tokens[0xE6], &out, &len), Q_OK);
    CHECK_EQ_INT(len, 0);
    CHECK_EQ_INT(q_decoder_next(&dec, a, t.tok.byte_tokens[0x97], &out, &len), Q_OK);
    CHECK_EQ_INT(len, 0);
    CHECK_EQ_INT(q_decoder_next(&dec, a, t.tok.byte_tokens[0xA5], &out, &len), Q_OK);
    CHECK(len == 3 && memcmp(out, "\xE6\x97\xA5", 3) == 0);
    CHECK_EQ_INT(q_decoder_next(&dec, a, t.tok.byte_tokens['\n'], &out, &len), Q_OK);
    CHECK(len == 1 && out[0] == '\n');
    CHECK_EQ_INT(q_decoder_next(&dec, a, t.tok.byte_tokens[0x07], &out, &len), Q_OK);
    CHECK_EQ_INT(len, 0); /* BEL dropped, as run.c */
    CHECK_EQ_INT(q_decoder_next(&dec, 1, ab, &out, &len), Q_OK);
    CHECK(len == 2 && memcmp(out, "ab", 2) == 0);
    CHECK_EQ_INT(q_decoder_next(&dec, a, ab, &out, &len), Q_OK);
    CHECK(len == 3 && memcmp(out, " ab", 3) == 0);
    CHECK_EQ_INT(q_decoder_next(&dec, a, id_of(&t, "\x01"), &out, &len), Q_OK);
    CHECK_EQ_INT(len, 0);
    CHECK_EQ_INT(q_decoder_next(&dec, a, id_of(&t, "\x1b[0m"), &out, &len), Q_OK);
    CHECK(len == 3 && memcmp(out, "[0m", 3) == 0); /* escape byte dropped in pieces too */
    /* an interrupted fallback sequence is dropped, the piece printed */
    CHECK_EQ_INT(q_decoder_next(&dec, a, t.tok.byte_tokens[0xC3], &out, &len), Q_OK);
    CHECK_EQ_INT(q_decoder_next(&dec, a, a, &out, &len), Q_OK);
    CHECK(len == 1 && out[0] == 'a');
    CHECK_EQ_INT(q_decoder_next(&dec, a, (uint32_t)t.tok.vocab_size, &out, &len),
                 Q_ERR_BAD_TOKEN);
    CHECK_EQ_INT(len, 0);
    q_decoder_free(&dec);
    q_decoder_free(&dec);
    toy_free(&t);
}

/* ---- real tokenizers ---- */

static int exists(const char *dir, const char *name)
{
    char path[4096];
    struct stat sb;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &sb) == 0;
}

/* Encodes with BOS, decodes token after token; returns the text in a static buffer. */
static const char *round_trip(const q_tokenizer *tok, const char *text, size_t *n_tokens)
{
    static char result[4096];
    q_encoder enc;
    q_decoder dec;
    uint32_t ids[1024];
    size_t n = 0, at = 0;
    CHECK_EQ_INT(q_encoder_init(&enc, tok), Q_OK);
    CHECK_EQ_INT(q_decoder_init(&dec, tok), Q_OK);
    CHECK_EQ_INT(q_encode(&enc, text, strlen(text), 1, 0, ids, 1024, &n), Q_OK);
    for (size_t i = 1; i < n; i++) {
        const char *out;
        size_t len;
        CHECK_EQ_INT(q_decoder_next(&dec, ids[i - 1], ids[i], &out, &len), Q_OK);
        memcpy(result + at, out, len);
        at += len;
    }
    result[at] = '\0';
    q_encoder_free(&enc);
    q_decoder_free(&dec);
    *n_tokens = n;
    return result;
}

static const char *const texts[] = {
    "Once upon a time, there was a little girl named Lily.",
    "Ol\xC3\xA1 na\xC3\xAFve caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80",
    "tabs\tand\nnew lines  double  spaces",
    "  leading spaces",
    "",
};

/* run.c's merge loop, literally (O(n^2), linear lookups): the reference for q_encode's
 * heap. Takes the tokens q_encode produced before merging, i.e. BOS, " ", codepoints. */
static int64_t naive_lookup(const q_tokenizer *tok, const char *s, size_t n)
{
    for (size_t i = 0; i < tok->vocab_size; i++)
        if (tok->piece_lengths[i] == n && memcmp(tok->pieces[i], s, n) == 0)
            return (int64_t)i;
    return -1;
}

static size_t naive_merge(const q_tokenizer *tok, uint32_t *t, size_t n)
{
    char buf[2 * 1024 + 1];
    for (;;) {
        float best = -1e10f;
        size_t best_i = SIZE_MAX;
        uint32_t best_id = 0;
        for (size_t i = 0; i + 1 < n; i++) {
            size_t a = tok->piece_lengths[t[i]], b = tok->piece_lengths[t[i + 1]];
            memcpy(buf, tok->pieces[t[i]], a);
            memcpy(buf + a, tok->pieces[t[i + 1]], b);
            int64_t id = naive_lookup(tok, buf, a + b);
            if (id >= 0 && tok->scores[id] > best) {
                best = tok->scores[id];
                best_i = i;
                best_id = (uint32_t)id;
            }
        }
        if (best_i == SIZE_MAX)
            return n;
        t[best_i] = best_id;
        memmove(t + best_i + 1, t + best_i + 2, (n - best_i - 2) * sizeof *t);
        n--;
    }
}

/* q_encode == run.c's loop on random texts made of pieces of the vocabulary. */
static void compare_with_naive(const q_tokenizer *tok)
{
    q_encoder enc;
    CHECK_EQ_INT(q_encoder_init(&enc, tok), Q_OK);
    uint64_t rng = 99;
    for (int round = 0; round < 200; round++) {
        char text[512];
        size_t len = 0;
        size_t words = 1 + q_random_u32(&rng) % 30;
        for (size_t w = 0; w < words; w++) {
            uint32_t id = q_random_u32(&rng) % (uint32_t)tok->vocab_size;
            size_t pl = tok->piece_lengths[id];
            if (pl == 0 || len + pl + 1 >= sizeof text || (pl == 6 && tok->pieces[id][0] == '<'))
                continue; /* skip byte-token spellings like "<0x41>" */
            memcpy(text + len, tok->pieces[id], pl);
            len += pl;
            if (q_random_u32(&rng) % 3 == 0)
                text[len++] = ' ';
        }
        uint32_t got[600], want[600];
        size_t n_got, n_want = 0;
        CHECK_EQ_INT(q_encode(&enc, text, len, 1, 0, got, 600, &n_got), Q_OK);
        /* the unmerged tokens, built independently: BOS, " ", codepoints or bytes */
        want[n_want++] = tok->bos_id;
        if (len > 0)
            want[n_want++] = (uint32_t)naive_lookup(tok, " ", 1);
        for (size_t i = 0; i < len;) {
            size_t cl = 1;
            while (i + cl < len && cl < 4 && ((unsigned char)text[i + cl] & 0xC0) == 0x80)
                cl++;
            int64_t id = naive_lookup(tok, text + i, cl);
            if (id >= 0)
                want[n_want++] = (uint32_t)id;
            else
                for (size_t k = 0; k < cl; k++)
                    want[n_want++] = tok->byte_tokens[(unsigned char)text[i + k]];
            i += cl;
        }
        n_want = naive_merge(tok, want, n_want);
        if (n_got != n_want || memcmp(got, want, n_got * sizeof got[0]) != 0) {
            fprintf(stderr, "merge order differs from run.c on '%.*s'\n", (int)len, text);
            CHECK(0);
            break;
        }
    }
    q_encoder_free(&enc);
}

static int test_real(const char *dir)
{
    if (!exists(dir, "tok512.bin") || !exists(dir, "tok105.bin") ||
        !exists(dir, "stories260K.gguf")) {
        printf("models not found in %s: skipped\n", dir);
        return SKIP_RETURN_CODE;
    }
    char path[4096];
    q_tokenizer tok, tok105;
    q_diag diag;
    snprintf(path, sizeof path, "%s/tok512.bin", dir);
    CHECK_EQ_INT(q_tokenizer_load(&tok, path, 512, &diag), Q_OK);
    size_t n;
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        const char *back = round_trip(&tok, texts[i], &n);
        if (strcmp(back, texts[i]) != 0) {
            fprintf(stderr, "round trip: '%s' -> '%s'\n", texts[i], back);
            CHECK(0);
        }
    }
    compare_with_naive(&tok);
    round_trip(&tok, "Once upon a time", &n);
    CHECK_EQ_INT(n, 5); /* BOS + 4, as run.c */

    /* the GGUF vocabulary ("▁" spelling) encodes exactly as tok512.bin */
    q_context ctx = {0};
    q_model model;
    q_tokenizer gtok;
    snprintf(path, sizeof path, "%s/stories260K.gguf", dir);
    CHECK_EQ_INT(q_model_load(&model, &gtok, &ctx, path, Q_MMAP_LAZY, &diag), Q_OK);
    q_encoder e1, e2;
    CHECK_EQ_INT(q_encoder_init(&e1, &tok), Q_OK);
    CHECK_EQ_INT(q_encoder_init(&e2, &gtok), Q_OK);
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        uint32_t a[256], b[256];
        size_t na, nb;
        size_t len = strlen(texts[i]);
        CHECK_EQ_INT(q_encode(&e1, texts[i], len, 1, 0, a, 256, &na), Q_OK);
        CHECK_EQ_INT(q_encode(&e2, texts[i], len, 1, 0, b, 256, &nb), Q_OK);
        CHECK(na == nb && memcmp(a, b, na * sizeof a[0]) == 0);
        const char *back = round_trip(&gtok, texts[i], &n);
        CHECK(strcmp(back, texts[i]) == 0);
    }
    q_encoder_free(&e1);
    q_encoder_free(&e2);
    q_tokenizer_free(&gtok);
    q_model_free(&model);
    q_free_memory(&ctx);

    /* tok105: character level, no byte fallback: unknown characters are <unk> (id 0) */
    snprintf(path, sizeof path, "%s/tok105.bin", dir);
    CHECK_EQ_INT(q_tokenizer_load(&tok105, path, 105, &diag), Q_OK);
    CHECK(!tok105.has_byte_fallback);
    const char *back = round_trip(&tok105, "the cat", &n);
    CHECK(strcmp(back, "the cat") == 0);
    q_encoder enc;
    uint32_t ids[32];
    CHECK_EQ_INT(q_encoder_init(&enc, &tok105), Q_OK);
    CHECK_EQ_INT(q_encode(&enc, "a\xE6\x97\xA5", 4, 1, 0, ids, 32, &n), Q_OK);
    CHECK(n >= 3 && ids[n - 1] == 0);
    q_encoder_free(&enc);
    back = round_trip(&tok105, "a\xE6\x97\xA5", &n);
    CHECK(strstr(back, "<unk>") != NULL);

    q_tokenizer_free(&tok105);
    q_tokenizer_free(&tok);
    return check_result("test_tokenizer (real models)");
}

int main(int argc, char **argv)
{
    if (argc > 1)
        return test_real(argv[1]);
    test_encode();
    test_decode();
    return check_result("test_tokenizer");
}
