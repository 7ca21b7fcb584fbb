/*
 * fuzz_bpe: the byte-level BPE encoder (q_encode_ex) against its plain reference
 * (bpe_naive.h), on a vocabulary built from the input itself.
 *
 * Input: the text is the head; the tail (fuzz_producer) picks the pre-tokenizer (gpt-2,
 * llama-bpe, qwen2), the flags (BOS, EOS, special), how many merges to learn and a seed.
 * The vocabulary: the 256 byte-level pieces in a seeded order, then merges learned from the
 * text as BPE training does (the most frequent adjacent pair, merged, again) and kept in a
 * seeded shuffle of their ranks (any order is a valid merge list), plus one control and one
 * user-defined piece cut from the text, so special matching fires.
 * Checks: every id in range, BOS / EOS where asked, ids equal to the reference's, and the
 * text back byte for byte from q_decoder_piece (control tokens matched with
 * Q_ENCODE_SPECIAL read back as their text).
 */
#include "bpe_naive.h"

#define MAX_TEXT 512u   /* the reference is O(n^2 * merges) */
#define MAX_MERGES 64u
#define MAX_PIECES (256u + MAX_MERGES + 3u) /* bytes, merges, control, user-defined, <|end|> */

typedef struct vocab {
    q_tokenizer tok;
    char *pieces[MAX_PIECES];
    size_t lengths[MAX_PIECES];
    float scores[MAX_PIECES];
    uint8_t types[MAX_PIECES];
    uint32_t merges[3 * MAX_MERGES];
    char storage[MAX_PIECES * 2 * (MAX_TEXT + 1)];
    size_t used;
} vocab;

static uint64_t next_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static uint32_t add_piece(vocab *v, const char *text, size_t len, uint8_t type)
{
    uint32_t id = (uint32_t)v->tok.vocab_size++;
    memcpy(v->storage + v->used, text, len);
    v->pieces[id] = v->storage + v->used;
    v->lengths[id] = len;
    v->types[id] = type;
    v->used += len;
    if (len > v->tok.max_token_length)
        v->tok.max_token_length = len;
    return id;
}

/* Id of the normal piece spelled text[0..len), or a new one. */
static uint32_t find_or_add(vocab *v, const char *text, size_t len)
{
    for (uint32_t id = 0; id < v->tok.vocab_size; id++)
        if (v->types[id] == Q_TOKEN_TYPE_NORMAL && v->lengths[id] == len &&
            memcmp(v->pieces[id], text, len) == 0)
            return id;
    return add_piece(v, text, len, Q_TOKEN_TYPE_NORMAL);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* BPE training on the text's bytes: up to `want` merges, most frequent pair first. */
static void learn_merges(vocab *v, const unsigned char *text, size_t n, size_t want)
{
    uint32_t seq[MAX_TEXT];
    uint64_t pairs[MAX_TEXT];
    for (size_t i = 0; i < n; i++)
        seq[i] = v->tok.byte_tokens[text[i]];
    while (v->tok.n_merges < want && n >= 2) {
        for (size_t i = 0; i + 1 < n; i++)
            pairs[i] = (uint64_t)seq[i] << 32 | seq[i + 1];
        qsort(pairs, n - 1, sizeof *pairs, cmp_u64);
        uint64_t best = pairs[0];
        size_t best_count = 0;
        for (size_t i = 0, run = 1; i < n - 1; i++, run++) {
            if (i + 1 < n - 1 && pairs[i + 1] == pairs[i])
                continue;
            if (run > best_count) {
                best_count = run;
                best = pairs[i];
            }
            run = 0;
        }
        uint32_t a = (uint32_t)(best >> 32), b = (uint32_t)best;
        char joined[2 * (MAX_TEXT + 1)];
        if (v->lengths[a] + v->lengths[b] > Q_MAX_TOKEN_BYTES)
            break;
        memcpy(joined, v->pieces[a], v->lengths[a]);
        memcpy(joined + v->lengths[a], v->pieces[b], v->lengths[b]);
        uint32_t m = find_or_add(v, joined, v->lengths[a] + v->lengths[b]);
        uint32_t *row = v->merges + 3 * v->tok.n_merges++;
        row[0] = a;
        row[1] = b;
        row[2] = m;
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            if (i + 1 < n && seq[i] == a && seq[i + 1] == b) {
                seq[k++] = m;
                i++;
            } else {
                seq[k++] = seq[i];
            }
        }
        n = k;
    }
}

static void build_vocab(vocab *v, const unsigned char *text, size_t n, q_pretok pretok,
                        size_t want_merges, uint64_t seed)
{
    uint32_t order[256];
    memset(&v->tok, 0, sizeof v->tok);
    v->used = 0;
    for (unsigned b = 0; b < 256; b++)
        order[b] = b;
    for (unsigned b = 255; b > 0; b--) { /* seeded order of the byte pieces */
        unsigned j = (unsigned)(next_rand(&seed) % (b + 1));
        uint32_t tmp = order[b];
        order[b] = order[j];
        order[j] = tmp;
    }
    for (unsigned i = 0; i < 256; i++) {
        unsigned char spelled[2];
        size_t len = q_byte_spell(order[i], spelled);
        v->tok.byte_tokens[order[i]] = add_piece(v, (const char *)spelled, len,
                                                 Q_TOKEN_TYPE_NORMAL);
    }
    v->tok.merges = v->merges;
    learn_merges(v, text, n, want_merges);
    for (size_t r = v->tok.n_merges; r > 1; r--) { /* a seeded rank order */
        size_t j = (size_t)(next_rand(&seed) % r);
        for (size_t c = 0; c < 3; c++) {
            uint32_t tmp = v->merges[3 * (r - 1) + c];
            v->merges[3 * (r - 1) + c] = v->merges[3 * j + c];
            v->merges[3 * j + c] = tmp;
        }
    }
    /* a control and a user-defined piece cut from the text (raw text, not byte-level) */
    for (int k = 0; k < 2 && n > 0; k++) {
        size_t at = (size_t)(next_rand(&seed) % n);
        size_t len = 1 + (size_t)(next_rand(&seed) % (n - at < 6 ? n - at : 6));
        add_piece(v, (const char *)text + at, len,
                  k == 0 ? Q_TOKEN_TYPE_CONTROL : Q_TOKEN_TYPE_USER_DEFINED);
    }
    uint32_t eos = add_piece(v, "<|end|>", 7, Q_TOKEN_TYPE_CONTROL);
    for (size_t i = 0; i < v->tok.vocab_size; i++)
        v->scores[i] = 0.0f;
    v->tok.pieces = v->pieces;
    v->tok.piece_lengths = v->lengths;
    v->tok.scores = v->scores;
    v->tok.token_types = v->types;
    v->tok.kind = Q_VOCAB_BPE;
    v->tok.pretok = pretok;
    v->tok.bos_id = eos;
    v->tok.eos_id = eos;
    v->tok.eot_id = Q_TOKEN_NONE;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const q_pretok kinds[3] = {Q_PRETOK_GPT2, Q_PRETOK_LLAMA3, Q_PRETOK_QWEN2};
    static vocab v; /* large; rebuilt for every input */
    static uint32_t got[MAX_TEXT + 3], want[MAX_TEXT + 3];
    fuzz_producer p = fuzz_producer_make(data, size);
    q_pretok pretok = kinds[fuzz_producer_u32(&p, 0, 2)];
    unsigned flags = fuzz_producer_u32(&p, 0, 7);
    size_t want_merges = fuzz_producer_size(&p, 0, MAX_MERGES);
    uint64_t seed = fuzz_producer_bits(&p, 4) | 1u;
    size_t n;
    const char *text = (const char *)fuzz_producer_payload(&p, &n);
    if (n > MAX_TEXT)
        n = MAX_TEXT;
    build_vocab(&v, (const unsigned char *)text, n, pretok, want_merges, seed);

    q_encoder enc;
    q_decoder dec;
    size_t n_got = 0;
    FUZZ_ASSERT(q_encoder_init(&enc, &v.tok) == Q_OK);
    FUZZ_ASSERT(q_decoder_init(&dec, &v.tok) == Q_OK);
    q_error_code rc = q_encode_ex(&enc, text, n, flags, got, q_encode_capacity(n), &n_got);
    FUZZ_ASSERT_MSG(rc == Q_OK, "q_encode_ex: %s", q_error_name(rc));
    for (size_t i = 0; i < n_got; i++)
        FUZZ_ASSERT(got[i] < v.tok.vocab_size);
    if (flags & Q_ENCODE_BOS)
        FUZZ_ASSERT(n_got > 0 && got[0] == v.tok.bos_id);
    if (flags & Q_ENCODE_EOS)
        FUZZ_ASSERT(n_got > 0 && got[n_got - 1] == v.tok.eos_id);

    size_t n_want = naive_encode(&v.tok, text, n, flags, want);
    FUZZ_ASSERT_MSG(n_got == n_want, "%zu tokens, the reference %zu", n_got, n_want);
    for (size_t i = 0; i < n_got; i++)
        FUZZ_ASSERT_MSG(got[i] == want[i], "token %zu: %u, the reference %u", i, got[i], want[i]);

    /* the text back, byte for byte */
    size_t at = 0;
    for (size_t i = (flags & Q_ENCODE_BOS) ? 1 : 0;
         i < n_got - ((flags & Q_ENCODE_EOS) ? 1 : 0); i++) {
        const char *piece;
        size_t len;
        FUZZ_ASSERT(q_decoder_piece(&dec, got[i], &piece, &len) == Q_OK);
        if (v.types[got[i]] == Q_TOKEN_TYPE_CONTROL) { /* matched as written */
            FUZZ_ASSERT(len == 0);
            piece = v.pieces[got[i]];
            len = v.lengths[got[i]];
        }
        FUZZ_ASSERT_MSG(len <= n - at && memcmp(text + at, piece, len) == 0,
                        "token %zu does not read back as the text at byte %zu", i, at);
        at += len;
    }
    FUZZ_ASSERT_MSG(at == n, "the tokens read back %zu of %zu bytes", at, n);
    q_encoder_free(&enc);
    q_decoder_free(&dec);
    return 0;
}
