/*
 * The plain reference of the byte-level BPE encoder (src/infer/tokenizer.c, q_encode_ex),
 * written the obvious way for fuzz_bpe to compare against:
 *   - special pieces: at each position, every control (when asked) and user-defined piece
 *     is tried; the longest wins, the lowest id among equals;
 *   - words: PCRE2 called directly on the pre-tokenizer's pattern, one match after another,
 *     unmatched bytes between matches a word of their own;
 *   - Llama 3's ignore_merges: a linear scan for the lowest normal / byte id whose bytes
 *     are the word;
 *   - merges: again and again, the adjacent pair with the lowest rank (a linear scan of
 *     the merge list), the leftmost on ties, until no pair has a merge: O(n^2 * merges).
 * It reads the tokenizer's fields only, never the encoder's index.
 */
#ifndef QORUS_FUZZ_BPE_NAIVE_H
#define QORUS_FUZZ_BPE_NAIVE_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "fuzz_helpers.h"
#include "infer/pretok.h"
#include "model/byte_level.h"
#include "qorus_infer.h"

/* The bytes token `id` stands for (normal and byte pieces: through the alphabet). */
static size_t naive_token_bytes(const q_tokenizer *t, uint32_t id, unsigned char *out)
{
    const unsigned char *p = (const unsigned char *)t->pieces[id];
    size_t n = t->piece_lengths[id], k = 0, used;
    for (size_t i = 0; i < n; i += used) {
        int b = q_byte_unspell(p + i, n - i, &used);
        FUZZ_ASSERT(b >= 0);
        out[k++] = (unsigned char)b;
    }
    return k;
}

static int naive_is_text(const q_tokenizer *t, uint32_t id)
{
    return t->token_types == NULL || t->token_types[id] == Q_TOKEN_TYPE_NORMAL ||
           t->token_types[id] == Q_TOKEN_TYPE_BYTE;
}

/* The merges of one word w[0..n) (n > 0), appended to out[*k]. */
static void naive_word(const q_tokenizer *t, const unsigned char *w, size_t n, uint32_t *out,
                       size_t *k)
{
    if (t->pretok == Q_PRETOK_LLAMA3) {
        unsigned char buf[Q_MAX_TOKEN_BYTES];
        for (uint32_t id = 0; id < t->vocab_size; id++)
            if (naive_is_text(t, id) && t->piece_lengths[id] >= n &&
                naive_token_bytes(t, id, buf) == n && memcmp(buf, w, n) == 0) {
                out[(*k)++] = id;
                return;
            }
    }
    uint32_t *s = out + *k;
    size_t len = n;
    for (size_t i = 0; i < n; i++)
        s[i] = t->byte_tokens[w[i]];
    for (;;) {
        size_t best_at = 0, best_rank = SIZE_MAX;
        for (size_t i = 0; i + 1 < len; i++)
            for (size_t r = 0; r < t->n_merges && r < best_rank; r++)
                if (t->merges[3 * r] == s[i] && t->merges[3 * r + 1] == s[i + 1]) {
                    best_rank = r;
                    best_at = i;
                    break;
                }
        if (best_rank == SIZE_MAX)
            break;
        s[best_at] = t->merges[3 * best_rank + 2];
        memmove(s + best_at + 1, s + best_at + 2, (len - best_at - 2) * sizeof *s);
        len--;
    }
    *k += len;
}

/* The words of text[0..n) and their merges. */
static void naive_plain(const q_tokenizer *t, const pcre2_code *re, const char *text, size_t n,
                        uint32_t *out, size_t *k)
{
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    FUZZ_ASSERT(md != NULL);
    size_t at = 0;
    while (at < n) {
        size_t start = n, end = n;
        int rc = pcre2_match(re, (PCRE2_SPTR)text, n, at, 0, md, NULL);
        if (rc > 0) {
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
#ifdef FUZZ_HAVE_MSAN
            __msan_unpoison(ov, 2 * sizeof *ov);
#endif
            start = ov[0];
            end = ov[1];
        } else {
            FUZZ_ASSERT_MSG(rc == PCRE2_ERROR_NOMATCH, "pcre2_match: %d", rc);
        }
        if (start > at)
            naive_word(t, (const unsigned char *)text + at, start - at, out, k);
        if (end > start)
            naive_word(t, (const unsigned char *)text + start, end - start, out, k);
        at = end;
    }
    pcre2_match_data_free(md);
}

/* The whole encoding of text[0..n) with Q_ENCODE_* flags; returns the token count. */
static size_t naive_encode(const q_tokenizer *t, const char *text, size_t n, unsigned flags,
                           uint32_t *out)
{
    int err;
    PCRE2_SIZE err_at;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)q_pretok_pattern(t->pretok), PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err,
                                   &err_at, NULL);
    FUZZ_ASSERT(re != NULL);
    size_t k = 0, from = 0;
    if (flags & Q_ENCODE_BOS)
        out[k++] = t->bos_id;
    for (size_t at = 0; at <= n; at++) {
        int64_t best = -1;
        for (uint32_t id = 0; at < n && id < t->vocab_size; id++) {
            size_t len = t->piece_lengths[id];
            int type = t->token_types != NULL ? t->token_types[id] : Q_TOKEN_TYPE_NORMAL;
            if (len == 0 || len > n - at || memcmp(text + at, t->pieces[id], len) != 0)
                continue;
            if (type != Q_TOKEN_TYPE_USER_DEFINED &&
                !(type == Q_TOKEN_TYPE_CONTROL && (flags & Q_ENCODE_SPECIAL)))
                continue;
            if (best < 0 || len > t->piece_lengths[best])
                best = id;
        }
        if (best < 0 && at < n)
            continue;
        naive_plain(t, re, text + from, at - from, out, &k);
        if (best >= 0) {
            out[k++] = (uint32_t)best;
            at += t->piece_lengths[best] - 1;
            from = at + 1;
        }
    }
    if (flags & Q_ENCODE_EOS)
        out[k++] = t->eos_id;
    pcre2_code_free(re);
    return k;
}

#endif
