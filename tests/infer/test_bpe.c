/*
 * Byte-level BPE encode and decode on a hand-built vocabulary (the reference ids of real
 * vocabularies are tests/model/test_bpe_reference.c):
 *   merges follow their rank, the leftmost pair first on ties; special pieces only with
 *   Q_ENCODE_SPECIAL, the longest at a position; user-defined pieces always; Llama 3's
 *   ignore_merges and no other pre-tokenizer's; no dummy prefix; any bytes round-trip;
 *   decoding: control tokens are silent, user-defined ones raw, no space dropped after BOS;
 *   argument errors.
 */
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "qorus.h"

enum { N_MAX = 300 };

typedef struct bpe_toy {
    q_tokenizer tok;
    char *store[N_MAX];
    uint8_t types[N_MAX];
    uint32_t merges[3 * 16];
} bpe_toy;

static uint32_t toy_piece(bpe_toy *t, const char *p, size_t len, uint8_t type)
{
    uint32_t id = (uint32_t)t->tok.vocab_size++;
    t->store[id] = malloc(len + 1);
    memcpy(t->store[id], p, len);
    t->store[id][len] = '\0';
    t->tok.pieces[id] = t->store[id];
    t->tok.piece_lengths[id] = len;
    t->types[id] = type;
    return id;
}

/* GPT-2's spelling of byte b (byte_level.h): itself when printable Latin-1, else U+0100 + n. */
static size_t spell(unsigned b, char out[2])
{
    unsigned cp = b;
    if (b <= 0x20)
        cp = 0x100 + b;
    else if (b >= 0x7F && b <= 0xA0)
        cp = 0x100 + 33 + (b - 0x7F);
    else if (b == 0xAD)
        cp = 0x100 + 67;
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

/* Adds merge "a b" (both spelled pieces that exist), creating the merged piece. */
static uint32_t toy_merge(bpe_toy *t, const char *a, const char *b)
{
    uint32_t ia = UINT32_MAX, ib = UINT32_MAX;
    char joined[64];
    for (uint32_t i = 0; i < t->tok.vocab_size; i++) {
        if (strcmp(t->store[i], a) == 0 && ia == UINT32_MAX)
            ia = i;
        if (strcmp(t->store[i], b) == 0 && ib == UINT32_MAX)
            ib = i;
    }
    snprintf(joined, sizeof joined, "%s%s", a, b);
    uint32_t m = toy_piece(t, joined, strlen(joined), Q_TOKEN_TYPE_NORMAL);
    uint32_t *row = t->merges + 3 * t->tok.n_merges++;
    row[0] = ia;
    row[1] = ib;
    row[2] = m;
    return m;
}

/* ids 0..255: the byte pieces; then merged pieces; then the specials */
static uint32_t ID_LL, ID_HE, ID_HELL, ID_HELLO, ID_SPW, ID_START, ID_END, ID_IM, ID_TOOL,
    ID_XYZ;

static void toy_init(bpe_toy *t, q_pretok pretok)
{
    memset(t, 0, sizeof *t);
    t->tok.pieces = calloc(N_MAX, sizeof(char *));
    t->tok.piece_lengths = calloc(N_MAX, sizeof(size_t));
    t->tok.scores = calloc(N_MAX, sizeof(float));
    for (unsigned b = 0; b < 256; b++) {
        char s[2];
        t->tok.byte_tokens[b] = toy_piece(t, s, spell(b, s), Q_TOKEN_TYPE_NORMAL);
    }
    t->tok.merges = t->merges;
    ID_LL = toy_merge(t, "l", "l");        /* rank 0 */
    ID_HE = toy_merge(t, "h", "e");        /* rank 1 */
    ID_HELL = toy_merge(t, "he", "ll");    /* rank 2 */
    ID_HELLO = toy_merge(t, "hell", "o");  /* rank 3 */
    ID_SPW = toy_merge(t, "\xc4\xa0", "w"); /* rank 4: "Ġ w" */
    ID_START = toy_piece(t, "<|im_start|>", 12, Q_TOKEN_TYPE_CONTROL);
    ID_END = toy_piece(t, "<|im_end|>", 10, Q_TOKEN_TYPE_CONTROL);
    ID_IM = toy_piece(t, "<|im", 4, Q_TOKEN_TYPE_CONTROL);
    ID_TOOL = toy_piece(t, "<tool>", 6, Q_TOKEN_TYPE_USER_DEFINED);
    ID_XYZ = toy_piece(t, "xyz", 3, Q_TOKEN_TYPE_NORMAL); /* no merge builds it */
    t->tok.token_types = t->types;
    t->tok.kind = Q_VOCAB_BPE;
    t->tok.pretok = pretok;
    t->tok.bos_id = ID_START;
    t->tok.eos_id = ID_END;
    t->tok.eot_id = Q_TOKEN_NONE;
    t->tok.max_token_length = 12;
}

static void toy_free(bpe_toy *t)
{
    for (size_t i = 0; i < t->tok.vocab_size; i++)
        free(t->store[i]);
    free(t->tok.pieces);
    free(t->tok.piece_lengths);
    free(t->tok.scores);
}

static void expect(const q_encoder *enc, const char *text, unsigned flags, const uint32_t *want,
                   size_t n_want)
{
    uint32_t got[64];
    size_t n = 0;
    CHECK_EQ_ERR(q_encode_ex(enc, text, strlen(text), flags, got, 64, &n), Q_OK);
    int same = n == n_want && (n == 0 || memcmp(got, want, n * sizeof *got) == 0);
    if (!same) {
        fprintf(stderr, "encoding '%s' (flags %u):", text, flags);
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, " %u", got[i]);
        fprintf(stderr, "\n");
    }
    CHECK(same);
}

#define B(c) ((uint32_t)(unsigned char)(c))

static void test_bpe_merges_by_rank(void)
{
    bpe_toy t;
    q_encoder enc;
    toy_init(&t, Q_PRETOK_GPT2);
    CHECK_EQ_ERR(q_encoder_init(&enc, &t.tok), Q_OK);
    expect(&enc, "hello", 0, (uint32_t[]){ID_HELLO}, 1);
    expect(&enc, "hell", 0, (uint32_t[]){ID_HELL}, 1);
    /* ties: (l, l) at 0 and 1 of "lll": the leftmost merges first */
    expect(&enc, "lll", 0, (uint32_t[]){ID_LL, B('l')}, 2);
    /* a word boundary stops merges; the space joins the next word as "Ġw"; no dummy prefix */
    expect(&enc, "he world", 0, (uint32_t[]){ID_HE, ID_SPW, B('o'), B('r'), B('l'), B('d')}, 6);
    expect(&enc, "", 0, NULL, 0);
    expect(&enc, "", Q_ENCODE_BOS | Q_ENCODE_EOS, (uint32_t[]){ID_START, ID_END}, 2);
    expect(&enc, "he", Q_ENCODE_BOS, (uint32_t[]){ID_START, ID_HE}, 2);
    q_encoder_free(&enc);
    toy_free(&t);
}

static void test_bpe_special_pieces(void)
{
    bpe_toy t;
    q_encoder enc;
    toy_init(&t, Q_PRETOK_QWEN2);
    CHECK_EQ_ERR(q_encoder_init(&enc, &t.tok), Q_OK);
    /* without Q_ENCODE_SPECIAL control text is text ... */
    expect(&enc, "<|im_end|>", 0,
           (uint32_t[]){B('<'), B('|'), B('i'), B('m'), B('_'), B('e'), B('n'), B('d'), B('|'),
                        B('>')},
           10);
    /* ... with it, the longest control piece at a position wins ("<|im_start|>", not "<|im") */
    expect(&enc, "<|im_start|>he<|im_end|>", Q_ENCODE_SPECIAL,
           (uint32_t[]){ID_START, ID_HE, ID_END}, 3);
    expect(&enc, "<|im", Q_ENCODE_SPECIAL, (uint32_t[]){ID_IM}, 1);
    /* user-defined pieces are matched in every prompt */
    expect(&enc, "he<tool>he", 0, (uint32_t[]){ID_HE, ID_TOOL, ID_HE}, 3);
    q_encoder_free(&enc);
    toy_free(&t);
}

static void test_bpe_ignore_merges(void)
{
    bpe_toy t;
    q_encoder enc;
    toy_init(&t, Q_PRETOK_LLAMA3); /* a word that is a normal piece is that piece */
    CHECK_EQ_ERR(q_encoder_init(&enc, &t.tok), Q_OK);
    expect(&enc, "xyz", 0, (uint32_t[]){ID_XYZ}, 1);
    q_encoder_free(&enc);
    t.tok.pretok = Q_PRETOK_QWEN2; /* only Llama 3 does that */
    CHECK_EQ_ERR(q_encoder_init(&enc, &t.tok), Q_OK);
    expect(&enc, "xyz", 0, (uint32_t[]){B('x'), B('y'), B('z')}, 3);
    q_encoder_free(&enc);
    toy_free(&t);
}

/* Any bytes come back byte for byte from q_decoder_piece; decode is silent for control. */
static void test_bpe_round_trip_and_decode(void)
{
    static const char text[] = "he\xff\xfe l\xc3\x28 <tool>\n\n  \xf0\x9f\x98\x80 \x80z";
    bpe_toy t;
    q_encoder enc;
    q_decoder dec;
    uint32_t ids[64];
    size_t n = 0, at = 0;
    toy_init(&t, Q_PRETOK_LLAMA3);
    CHECK_EQ_ERR(q_encoder_init(&enc, &t.tok), Q_OK);
    CHECK_EQ_ERR(q_decoder_init(&dec, &t.tok), Q_OK);
    CHECK_EQ_ERR(q_encode_ex(&enc, text, sizeof text - 1, 0, ids, 64, &n), Q_OK);
    for (size_t i = 0; i < n; i++) {
        const char *p;
        size_t len;
        CHECK_EQ_ERR(q_decoder_piece(&dec, ids[i], &p, &len), Q_OK);
        CHECK(len <= sizeof text - 1 - at && memcmp(text + at, p, len) == 0);
        at += len;
    }
    CHECK_EQ_INT(at, sizeof text - 1);

    const char *out;
    size_t len;
    CHECK_EQ_ERR(q_decoder_piece(&dec, ID_START, &out, &len), Q_OK);
    CHECK_EQ_INT(len, 0);
    CHECK_EQ_ERR(q_decoder_piece(&dec, ID_TOOL, &out, &len), Q_OK);
    CHECK(len == 6 && memcmp(out, "<tool>", 6) == 0);
    /* no SentencePiece space drop after BOS: "Ġw" after BOS prints " w" */
    CHECK_EQ_ERR(q_decoder_next(&dec, ID_START, ID_SPW, &out, &len), Q_OK);
    CHECK(len == 2 && memcmp(out, " w", 2) == 0);
    CHECK_EQ_ERR(q_decoder_next(&dec, ID_SPW, ID_END, &out, &len), Q_OK);
    CHECK_EQ_INT(len, 0);
    q_decoder_free(&dec);
    q_encoder_free(&enc);
    toy_free(&t);
}

static void test_bpe_errors(void)
{
    bpe_toy t;
    q_encoder enc;
    q_decoder dec;
    uint32_t ids[8];
    size_t n = 7;
    const char *out;
    size_t len = 9;
    toy_init(&t, Q_PRETOK_GPT2);
    CHECK_EQ_ERR(q_encoder_init(&enc, &t.tok), Q_OK);
    CHECK_EQ_ERR(q_decoder_init(&dec, &t.tok), Q_OK);
    CHECK_EQ_ERR(q_encode_ex(&enc, "he", 2, 8u, ids, 8, &n), Q_ERR_INVALID_ARG);
    CHECK_EQ_INT(n, 0);
    CHECK_EQ_ERR(q_encode_ex(&enc, "he", 2, 0, ids, 4, &n), Q_ERR_OVERFLOW); /* below 2 + 3 */
    CHECK_EQ_ERR(q_decoder_piece(&dec, (uint32_t)t.tok.vocab_size, &out, &len), Q_ERR_BAD_TOKEN);
    CHECK_EQ_INT(len, 0);
    CHECK_EQ_ERR(q_decoder_piece(&dec, 0, NULL, &len), Q_ERR_INVALID_ARG);
    q_decoder_free(&dec);
    CHECK_EQ_ERR(q_decoder_piece(&dec, 0, &out, &len), Q_ERR_INVALID_ARG);
    q_encoder_free(&enc);
    /* a hand-built merge naming a token outside the vocabulary is refused at init */
    t.merges[0] = (uint32_t)t.tok.vocab_size;
    CHECK_EQ_ERR(q_encoder_init(&enc, &t.tok), Q_ERR_INVALID_ARG);
    toy_free(&t);
}

int main(void)
{
    RUN_TEST(test_bpe_merges_by_rank);
    RUN_TEST(test_bpe_special_pieces);
    RUN_TEST(test_bpe_ignore_merges);
    RUN_TEST(test_bpe_round_trip_and_decode);
    RUN_TEST(test_bpe_errors);
    return check_result("test_infer_bpe");
}
