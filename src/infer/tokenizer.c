/*
 * Tokenizer: llama2.c's BPE encode (run.c encode()) and a streaming, UTF-8-safe decode.
 *
 * Encode keeps run.c's algorithm and its results: dummy-prefix " ", one lookup per UTF-8
 * codepoint (lead byte + up to 3 continuation bytes), byte fallback, then repeated merges
 * of the adjacent pair with the highest score (leftmost on ties, strictly greater than
 * -1e10). Unlike run.c, each pair's lookup is cached and only the two neighbours of a merge
 * are looked up again, so a prompt of n tokens costs O(n^2) comparisons but O(n) string
 * lookups; the merge order is the same.
 *
 * Decode: see q_decoder in qorus_infer.h.
 */
#include "qorus_infer.h"

#include <stdlib.h>
#include <string.h>

#include "core/checked.h"

#define Q_FEED_MAX 4096 /* most bytes one q_decoder_feed_bytes call takes */

/* ---- piece text ---- */

static const char spm_space[3] = {(char)0xE2, (char)0x96, (char)0x81}; /* U+2581 "▁" */

static int has_spm_space(const char *p, size_t n)
{
    for (size_t i = 0; i + 3 <= n; i++)
        if (memcmp(p + i, spm_space, 3) == 0)
            return 1;
    return 0;
}

/* Sets *pieces / *lengths to the text of every piece: the tokenizer's own arrays, or, for
 * a SentencePiece-spelled vocabulary, copies with "▁" replaced by " " in one heap block
 * returned in *owned (the array of pointers, the lengths, then the bytes). */
static q_error_code piece_text(const q_tokenizer *tok, const char *const **pieces,
                               const size_t **lengths, void **owned)
{
    size_t n = tok->vocab_size, bytes = 0;
    int spm = 0;
    for (size_t i = 0; i < n; i++) {
        if (tok->pieces[i] == NULL)
            return Q_ERR_INVALID_ARG;
        if (memchr(tok->pieces[i], ' ', tok->piece_lengths[i]) != NULL) {
            spm = 0;
            break;
        }
        spm |= has_spm_space(tok->pieces[i], tok->piece_lengths[i]);
        if (!q_add_size(bytes, tok->piece_lengths[i], &bytes))
            return Q_ERR_OVERFLOW;
    }
    *owned = NULL;
    if (!spm) {
        *pieces = (const char *const *)tok->pieces;
        *lengths = tok->piece_lengths;
        return Q_OK;
    }
    size_t ptr_bytes, len_bytes, total;
    if (!q_mul_size(n, sizeof(char *), &ptr_bytes) ||
        !q_mul_size(n, sizeof(size_t), &len_bytes) ||
        !q_add_size(ptr_bytes, len_bytes, &total) || !q_add_size(total, bytes, &total))
        return Q_ERR_OVERFLOW;
    unsigned char *block = malloc(total);
    if (block == NULL)
        return Q_ERR_ALLOC;
    const char **ptrs = (const char **)(void *)block;      /* (n) */
    size_t *lens = (size_t *)(void *)(block + ptr_bytes);  /* (n) */
    char *text = (char *)block + ptr_bytes + len_bytes;     /* (bytes) */
    for (size_t i = 0; i < n; i++) {
        const char *p = tok->pieces[i];
        size_t len = tok->piece_lengths[i], out = 0;
        ptrs[i] = text;
        for (size_t j = 0; j < len;) {
            if (j + 3 <= len && memcmp(p + j, spm_space, 3) == 0) {
                text[out++] = ' ';
                j += 3;
            } else {
                text[out++] = p[j++];
            }
        }
        lens[i] = out;
        text += out;
    }
    *pieces = ptrs;
    *lengths = lens;
    *owned = block;
    return Q_OK;
}

/* ---- lookup index ---- */

/* Compares piece bytes a[0..na) with b[0..nb): memcmp order, shorter first on a common
 * prefix (strcmp order for pieces without NUL bytes). */
static int cmp_bytes(const char *a, size_t na, const char *b, size_t nb)
{
    int c = memcmp(a, b, na < nb ? na : nb);
    if (c != 0)
        return c;
    return (na > nb) - (na < nb);
}

/* qsort has no context argument: the tokenizer being sorted. Encoders are built before
 * generation, one at a time per thread in practice; the pointer is only read during the
 * qsort call below. */
static _Thread_local const q_encoder *sort_enc;

static int cmp_ids(const void *pa, const void *pb)
{
    uint32_t a = *(const uint32_t *)pa, b = *(const uint32_t *)pb;
    int c = cmp_bytes(sort_enc->pieces[a], sort_enc->piece_lengths[a], sort_enc->pieces[b],
                      sort_enc->piece_lengths[b]);
    if (c != 0)
        return c;
    return (a > b) - (a < b);
}

/* Lowest id whose piece is s[0..n), or -1. */
static int64_t lookup(const q_encoder *enc, const char *s, size_t n)
{
    size_t lo = 0, hi = enc->tok->vocab_size; /* first index whose piece >= s */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint32_t id = enc->sorted[mid];
        if (cmp_bytes(enc->pieces[id], enc->piece_lengths[id], s, n) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == enc->tok->vocab_size)
        return -1;
    uint32_t id = enc->sorted[lo];
    if (cmp_bytes(enc->pieces[id], enc->piece_lengths[id], s, n) != 0)
        return -1;
    return id;
}

q_error_code q_encoder_init(q_encoder *enc, const q_tokenizer *tok)
{
    if (enc == NULL)
        return Q_ERR_INVALID_ARG;
    memset(enc, 0, sizeof *enc);
    if (tok == NULL || tok->vocab_size == 0 || tok->vocab_size > UINT32_MAX ||
        tok->pieces == NULL || tok->piece_lengths == NULL)
        return Q_ERR_INVALID_ARG;
    q_error_code err = piece_text(tok, &enc->pieces, &enc->piece_lengths, &enc->owned);
    if (err != Q_OK)
        return err;
    size_t max_len = 0;
    for (size_t i = 0; i < tok->vocab_size; i++)
        if (enc->piece_lengths[i] > max_len)
            max_len = enc->piece_lengths[i];
    size_t sorted_bytes, cap;
    enc->tok = tok;
    if (!q_mul_size(tok->vocab_size, sizeof(uint32_t), &sorted_bytes) ||
        !q_mul_size(max_len, 2, &cap) || !q_add_size(cap, 1, &cap)) {
        q_encoder_free(enc);
        return Q_ERR_OVERFLOW;
    }
    enc->sorted = malloc(sorted_bytes);
    enc->buf = malloc(cap);
    if (enc->sorted == NULL || enc->buf == NULL) {
        q_encoder_free(enc);
        return Q_ERR_ALLOC;
    }
    enc->buf_cap = cap;
    for (size_t i = 0; i < tok->vocab_size; i++)
        enc->sorted[i] = (uint32_t)i;
    sort_enc = enc;
    qsort(enc->sorted, tok->vocab_size, sizeof *enc->sorted, cmp_ids);
    sort_enc = NULL;

    enc->space_id = lookup(enc, " ", 1);
    int64_t unk = lookup(enc, "<unk>", 5);
    enc->unk_id = unk < 0 ? 0 : (uint32_t)unk;
    return Q_OK;
}

void q_encoder_free(q_encoder *enc)
{
    if (enc == NULL)
        return;
    free(enc->sorted);
    free(enc->buf);
    free(enc->owned);
    memset(enc, 0, sizeof *enc);
}

size_t q_encode_capacity(size_t text_len)
{
    size_t n;
    return q_add_size(text_len, 3, &n) ? n : 0;
}

/* Looks up the concatenation of the pieces of a and b; the id or -1. */
static int64_t lookup_pair(const q_encoder *enc, uint32_t a, uint32_t b)
{
    size_t na = enc->piece_lengths[a], nb = enc->piece_lengths[b];
    memcpy(enc->buf, enc->pieces[a], na);
    memcpy(enc->buf + na, enc->pieces[b], nb);
    return lookup(enc, enc->buf, na + nb);
}

q_error_code q_encode(const q_encoder *enc, const char *text, size_t text_len, int add_bos,
                      int add_eos, uint32_t *tokens, size_t capacity, size_t *n_tokens)
{
    if (n_tokens != NULL)
        *n_tokens = 0;
    if (enc == NULL || enc->tok == NULL || enc->sorted == NULL || tokens == NULL ||
        n_tokens == NULL || (text == NULL && text_len > 0))
        return Q_ERR_INVALID_ARG;
    const q_tokenizer *tok = enc->tok;
    if ((add_bos && tok->bos_id >= tok->vocab_size) ||
        (add_eos && tok->eos_id >= tok->vocab_size))
        return Q_ERR_BAD_TOKEN;
    size_t need = q_encode_capacity(text_len);
    if (need == 0 || capacity < need)
        return Q_ERR_OVERFLOW;

    size_t n = 0;
    if (add_bos)
        tokens[n++] = tok->bos_id;
    if (text_len > 0 && enc->space_id >= 0)
        tokens[n++] = (uint32_t)enc->space_id;

    /* one lookup per codepoint: a lead byte and at most 3 continuation bytes (run.c) */
    const unsigned char *s = (const unsigned char *)text;
    size_t start = 0;
    for (size_t i = 0; i < text_len; i++) {
        size_t len = i + 1 - start;
        int next_is_cont = i + 1 < text_len && (s[i + 1] & 0xC0) == 0x80;
        if (next_is_cont && len < 4)
            continue;
        int64_t id = lookup(enc, text + start, len);
        if (id >= 0) {
            tokens[n++] = (uint32_t)id;
        } else if (tok->has_byte_fallback) {
            for (size_t k = start; k <= i; k++)
                tokens[n++] = tok->byte_tokens[s[k]];
        } else {
            tokens[n++] = enc->unk_id;
        }
        start = i + 1;
    }
    /* byte_tokens come from the parser; keep the promise that every id is in range */
    for (size_t i = 0; i < n; i++)
        if (tokens[i] >= tok->vocab_size)
            return Q_ERR_BAD_TOKEN;

    /* merges: pair_id[i] / pair_score[i] describe the pair (tokens[i], tokens[i+1]) */
    if (n >= 2) {
        int64_t *pair_id = malloc((n - 1) * sizeof *pair_id);
        if (pair_id == NULL)
            return Q_ERR_ALLOC;
        for (size_t i = 0; i + 1 < n; i++)
            pair_id[i] = lookup_pair(enc, tokens[i], tokens[i + 1]);
        for (;;) {
            float best_score = -1e10f;
            size_t best_idx = SIZE_MAX;
            for (size_t i = 0; i + 1 < n; i++) {
                if (pair_id[i] < 0)
                    continue;
                float score = tok->scores != NULL ? tok->scores[pair_id[i]] : 0.0f;
                if (score > best_score) {
                    best_score = score;
                    best_idx = i;
                }
            }
            if (best_idx == SIZE_MAX)
                break;
            tokens[best_idx] = (uint32_t)pair_id[best_idx];
            memmove(tokens + best_idx + 1, tokens + best_idx + 2,
                    (n - best_idx - 2) * sizeof *tokens);
            memmove(pair_id + best_idx, pair_id + best_idx + 1,
                    (n - best_idx - 2) * sizeof *pair_id);
            n--;
            if (best_idx > 0)
                pair_id[best_idx - 1] = lookup_pair(enc, tokens[best_idx - 1], tokens[best_idx]);
            if (best_idx + 1 < n)
                pair_id[best_idx] = lookup_pair(enc, tokens[best_idx], tokens[best_idx + 1]);
        }
        free(pair_id);
    }
    if (add_eos)
        tokens[n++] = tok->eos_id;
    *n_tokens = n;
    return Q_OK;
}

/* ---- decode ---- */

/* The output buffer holds the longest piece plus a completed pending sequence. */
q_error_code q_decoder_init(q_decoder *dec, const q_tokenizer *tok)
{
    if (dec == NULL)
        return Q_ERR_INVALID_ARG;
    memset(dec, 0, sizeof *dec);
    if (tok == NULL || tok->vocab_size == 0 || tok->pieces == NULL || tok->piece_lengths == NULL)
        return Q_ERR_INVALID_ARG;
    q_error_code err = piece_text(tok, &dec->pieces, &dec->piece_lengths, &dec->owned);
    if (err != Q_OK)
        return err;
    size_t max_len = 0;
    for (size_t i = 0; i < tok->vocab_size; i++)
        if (dec->piece_lengths[i] > max_len)
            max_len = dec->piece_lengths[i];
    size_t cap;
    if (!q_add_size(max_len, 8, &cap)) {
        q_decoder_free(dec);
        return Q_ERR_OVERFLOW;
    }
    if (cap < Q_FEED_MAX + 8) /* room for q_decoder_feed_bytes too */
        cap = Q_FEED_MAX + 8;
    dec->out = malloc(cap);
    if (dec->out == NULL) {
        q_decoder_free(dec);
        return Q_ERR_ALLOC;
    }
    dec->out_cap = cap;
    dec->tok = tok;
    return Q_OK;
}

void q_decoder_free(q_decoder *dec)
{
    if (dec == NULL)
        return;
    free(dec->out);
    free(dec->owned);
    memset(dec, 0, sizeof *dec);
}

void q_decoder_finish(q_decoder *dec)
{
    if (dec != NULL) {
        dec->n_pending = 0;
        dec->n_needed = 0;
    }
}

/* Length of the UTF-8 sequence a lead byte starts, 0 if it cannot start one. */
static size_t utf8_seq_len(unsigned char b)
{
    if (b >= 0xC2 && b <= 0xDF)
        return 2;
    if (b >= 0xE0 && b <= 0xEF)
        return 3;
    if (b >= 0xF0 && b <= 0xF4)
        return 4;
    return 0;
}

/* Whether `b` may be the second byte after `lead` (rejects overlongs, surrogates and
 * codepoints above U+10FFFF, as RFC 3629 table 3-7). */
static int utf8_second_ok(unsigned char lead, unsigned char b)
{
    switch (lead) {
    case 0xE0: return b >= 0xA0 && b <= 0xBF;
    case 0xED: return b >= 0x80 && b <= 0x9F;
    case 0xF0: return b >= 0x90 && b <= 0xBF;
    case 0xF4: return b >= 0x80 && b <= 0x8F;
    default: return (b & 0xC0) == 0x80;
    }
}

/* run.c's isprint || isspace in the C locale. */
static int ascii_printable(unsigned char b)
{
    return (b >= 0x20 && b <= 0x7E) || (b >= 0x09 && b <= 0x0D);
}

/* Feeds one byte to the assembler, appending what may be printed to out[*n]. */
static void feed_byte(q_decoder *dec, unsigned char b, char *out, size_t *n)
{
    if (dec->n_needed != 0) {
        int ok = dec->n_pending == 1 ? utf8_second_ok(dec->pending[0], b)
                                     : (b & 0xC0) == 0x80;
        if (ok) {
            dec->pending[dec->n_pending++] = b;
            if (dec->n_pending == dec->n_needed) {
                memcpy(out + *n, dec->pending, dec->n_pending);
                *n += dec->n_pending;
                dec->n_pending = 0;
                dec->n_needed = 0;
            }
            return;
        }
        dec->n_pending = 0; /* invalid or interrupted sequence: dropped */
        dec->n_needed = 0;
    }
    if (b < 0x80) {
        if (ascii_printable(b))
            out[(*n)++] = (char)b;
        return;
    }
    size_t len = utf8_seq_len(b);
    if (len != 0) {
        dec->pending[0] = b;
        dec->n_pending = 1;
        dec->n_needed = len;
    }
    /* a stray continuation byte or a byte that never appears in UTF-8: dropped */
}

q_error_code q_decoder_feed_bytes(q_decoder *dec, const void *bytes, size_t len,
                                  const char **out, size_t *out_len)
{
    if (out_len != NULL)
        *out_len = 0;
    if (dec == NULL || dec->out == NULL || out == NULL || out_len == NULL ||
        (bytes == NULL && len > 0) || len > Q_FEED_MAX)
        return Q_ERR_INVALID_ARG;
    const unsigned char *b = (const unsigned char *)bytes;
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        feed_byte(dec, b[i], dec->out, &n);
    *out = dec->out;
    *out_len = n;
    return Q_OK;
}

/* The byte a byte-fallback token stands for, or -1. */
static int fallback_byte(const q_tokenizer *tok, uint32_t token)
{
    if (!tok->has_byte_fallback)
        return -1;
    const char *p = tok->pieces[token];
    /* byte_tokens is the authority; the piece check avoids a 256-entry scan */
    if (tok->piece_lengths[token] != 6 || memcmp(p, "<0x", 3) != 0 || p[5] != '>')
        return -1;
    for (int b = 0; b < 256; b++)
        if (tok->byte_tokens[b] == token)
            return b;
    return -1;
}

q_error_code q_decoder_next(q_decoder *dec, uint32_t prev_token, uint32_t token,
                            const char **out, size_t *out_len)
{
    if (out_len != NULL)
        *out_len = 0;
    if (dec == NULL || dec->tok == NULL || dec->out == NULL || out == NULL || out_len == NULL)
        return Q_ERR_INVALID_ARG;
    const q_tokenizer *tok = dec->tok;
    if (token >= tok->vocab_size)
        return Q_ERR_BAD_TOKEN;
    size_t n = 0;
    int byte = fallback_byte(tok, token);
    if (byte >= 0) {
        feed_byte(dec, (unsigned char)byte, dec->out, &n);
    } else {
        const unsigned char *p = (const unsigned char *)dec->pieces[token];
        size_t len = dec->piece_lengths[token];
        if (prev_token == tok->bos_id && len > 0 && p[0] == ' ') {
            p++;
            len--;
        }
        for (size_t i = 0; i < len; i++)
            feed_byte(dec, p[i], dec->out, &n);
    }
    *out = dec->out;
    *out_len = n;
    return Q_OK;
}
