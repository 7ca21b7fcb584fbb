/*
 * llama2.c tokenizer.bin, and the tokenizer construction shared with GGUF (SentencePiece
 * vocabularies, and the checks of byte-level BPE ones: q_tok_bpe_finish).
 *
 * On-disk format (little-endian, no header magic, no token count: the count is the model's
 * vocab_size):
 *   1. int32 max_token_length        longest piece in bytes, 1..Q_MAX_TOKEN_BYTES
 *   2. vocab_size times:
 *      a. float32 score              merge priority (NaN rejected)
 *      b. int32 len                  0..max_token_length
 *      c. len bytes                  the piece, not NUL-terminated, any bytes
 *   3. end of file (bytes after the last token: if they parse as whole further tokens the
 *      vocabularies differ, Q_ERR_VOCAB_MISMATCH; otherwise Q_ERR_INVALID_CONFIG,
 *      field "trailing_bytes")
 *
 * Token ids 1 and 2 are BOS and EOS. Pieces `<0xHH>` are byte-fallback tokens; any other
 * piece shaped `<0x...>` (`<0x-1>`, `<0x1>`, `<0xG0>`) is rejected, as is a second piece for
 * the same byte.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/checked.h"
#include "core/os.h"
#include "model/byte_level.h"
#include "model/model_internal.h"

q_error_code q_tok_alloc(q_tokenizer *t, size_t n, size_t text_bytes)
{
    size_t storage;
    memset(t, 0, sizeof *t);
    /* every piece gets a NUL: text_bytes + n, plus one so an empty vocabulary is no
     * zero-byte allocation */
    if (!q_add_size(text_bytes, n, &storage) || !q_add_size(storage, 1, &storage))
        return Q_ERR_OVERFLOW;
    if (n > SIZE_MAX / sizeof(char *) || n > SIZE_MAX / sizeof(float))
        return Q_ERR_OVERFLOW;
    t->pieces = q_os_calloc(n ? n : 1, sizeof(char *));
    t->piece_lengths = q_os_calloc(n ? n : 1, sizeof(size_t));
    t->scores = q_os_calloc(n ? n : 1, sizeof(float));
    t->piece_storage = q_os_malloc(storage);
    if (t->pieces == NULL || t->piece_lengths == NULL || t->scores == NULL ||
        t->piece_storage == NULL) {
        q_tokenizer_free(t);
        return Q_ERR_ALLOC;
    }
    t->vocab_size = n;
    t->eot_id = Q_TOKEN_NONE;
    t->add_bos = 1;
    return Q_OK;
}

void q_tok_set(q_tokenizer *t, size_t i, const unsigned char *piece, size_t len, float score,
               size_t *storage_used)
{
    char *dst = t->piece_storage + *storage_used;
    if (len > 0)
        memcpy(dst, piece, len);
    dst[len] = '\0';
    t->pieces[i] = dst;
    t->piece_lengths[i] = len;
    t->scores[i] = score;
    if (len > t->max_token_length)
        t->max_token_length = len;
    *storage_used += len + 1;
}

static int q_hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

q_error_code q_tok_finish(q_tokenizer *t, uint64_t offset, q_diag *diag)
{
    size_t i, found = 0;
    for (i = 0; i < 256; i++)
        t->byte_tokens[i] = Q_TOKEN_NONE;
    for (i = 0; i < t->vocab_size; i++) {
        const char *s = t->pieces[i];
        size_t n = t->piece_lengths[i];
        int hi, lo;
        unsigned b;
        if (n < 4 || memcmp(s, "<0x", 3) != 0 || s[n - 1] != '>')
            continue;
        hi = n == 6 ? q_hex_digit(s[3]) : -1;
        lo = n == 6 ? q_hex_digit(s[4]) : -1;
        if (hi < 0 || lo < 0)
            return q_fail_named(diag, Q_ERR_BAD_TOKEN, "byte token ",
                                (const unsigned char *)s, n, offset, (int64_t)i);
        b = (unsigned)(hi * 16 + lo);
        if (t->byte_tokens[b] != Q_TOKEN_NONE)
            return q_fail_named(diag, Q_ERR_DUPLICATE, "byte token ",
                                (const unsigned char *)s, n, offset, (int64_t)i);
        t->byte_tokens[b] = (uint32_t)i;
        found++;
    }
    t->has_byte_fallback = found == 256;
    if (t->bos_id >= t->vocab_size)
        return q_fail(diag, Q_ERR_BAD_TOKEN, "bos_id", offset, (int64_t)t->bos_id);
    if (t->eos_id >= t->vocab_size)
        return q_fail(diag, Q_ERR_BAD_TOKEN, "eos_id", offset, (int64_t)t->eos_id);
    return Q_OK;
}

/* ---- byte-level BPE vocabularies ---- */

/* qsort has no context argument: the tokenizer being sorted (only read during the call). */
static _Thread_local const q_tokenizer *sort_tok;

static int q_piece_cmp(const unsigned char *a, size_t na, const unsigned char *b, size_t nb)
{
    int c = memcmp(a, b, na < nb ? na : nb);
    return c != 0 ? c : (na > nb) - (na < nb);
}

static int q_id_cmp(const void *pa, const void *pb)
{
    uint32_t a = *(const uint32_t *)pa, b = *(const uint32_t *)pb;
    int c = q_piece_cmp((const unsigned char *)sort_tok->pieces[a], sort_tok->piece_lengths[a],
                        (const unsigned char *)sort_tok->pieces[b], sort_tok->piece_lengths[b]);
    return c != 0 ? c : (a > b) - (a < b);
}

/* Lowest normal or byte id whose piece is s[0..n) in the id list sorted by q_id_cmp, or -1:
 * the byte pieces and merges of a BPE vocabulary are text, never a control or user-defined
 * piece spelled the same (that would decode to nothing, or to other bytes). */
static int64_t q_sorted_find(const q_tokenizer *t, const uint32_t *sorted,
                             const unsigned char *s, size_t n)
{
    size_t lo = 0, hi = t->vocab_size;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint32_t id = sorted[mid];
        if (q_piece_cmp((const unsigned char *)t->pieces[id], t->piece_lengths[id], s, n) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (; lo < t->vocab_size; lo++) {
        uint32_t id = sorted[lo];
        if (q_piece_cmp((const unsigned char *)t->pieces[id], t->piece_lengths[id], s, n) != 0)
            return -1;
        if (q_bpe_is_text_token(t, id))
            return id;
    }
    return -1;
}

static int q_merge_cmp(const void *pa, const void *pb)
{
    const uint32_t *a = pa, *b = pb; /* left id, right id, rank */
    if (a[0] != b[0])
        return a[0] < b[0] ? -1 : 1;
    if (a[1] != b[1])
        return a[1] < b[1] ? -1 : 1;
    return (a[2] > b[2]) - (a[2] < b[2]);
}

static q_error_code q_bpe_resolve_merges(q_tokenizer *t, const uint32_t *sorted,
                                         const unsigned char *base, size_t at, size_t n_merges,
                                         q_diag *diag)
{
    size_t rows;
    unsigned char joined[2 * Q_MAX_TOKEN_BYTES];
    if (n_merges > Q_MAX_MERGES)
        return q_fail(diag, Q_ERR_INVALID_CONFIG, "tokenizer.ggml.merges", at,
                      (int64_t)n_merges);
    if (!q_mul_size(n_merges ? n_merges : 1, 3 * sizeof(uint32_t), &rows))
        return q_fail(diag, Q_ERR_OVERFLOW, "tokenizer.ggml.merges", at, (int64_t)n_merges);
    t->merges = q_os_malloc(rows);
    if (t->merges == NULL)
        return q_fail(diag, Q_ERR_ALLOC, "tokenizer.ggml.merges", at, (int64_t)n_merges);
    t->n_merges = n_merges;
    for (size_t m = 0; m < n_merges; m++) {
        size_t len = (size_t)q_load_u64(base + at);
        const unsigned char *s = base + at + 8;
        const unsigned char *sp = len > 0 ? memchr(s, ' ', len) : NULL;
        size_t nl = sp != NULL ? (size_t)(sp - s) : 0, nr = sp != NULL ? len - nl - 1 : 0;
        int64_t left, right, merged;
        /* exactly one space, with a piece on each side */
        if (sp == NULL || nl == 0 || nr == 0 || memchr(sp + 1, ' ', nr) != NULL)
            return q_fail(diag, Q_ERR_BAD_TOKEN, "merge (not \"left right\")", at, (int64_t)m);
        left = q_sorted_find(t, sorted, s, nl);
        right = q_sorted_find(t, sorted, sp + 1, nr);
        if (left < 0 || right < 0 || nl + nr > sizeof joined)
            return q_fail(diag, Q_ERR_BAD_TOKEN, "merge names an unknown token", at, (int64_t)m);
        memcpy(joined, s, nl);
        memcpy(joined + nl, sp + 1, nr);
        merged = q_sorted_find(t, sorted, joined, nl + nr);
        if (merged < 0)
            return q_fail(diag, Q_ERR_BAD_TOKEN, "merge result is not a token", at, (int64_t)m);
        t->merges[3 * m] = (uint32_t)left;
        t->merges[3 * m + 1] = (uint32_t)right;
        t->merges[3 * m + 2] = (uint32_t)merged;
        at += 8 + len;
    }
    /* the same pair twice would make its rank ambiguous: sort (left, right, rank) rows */
    uint32_t *pairs = q_os_malloc(rows);
    if (pairs == NULL)
        return q_fail(diag, Q_ERR_ALLOC, "tokenizer.ggml.merges", 0, (int64_t)n_merges);
    for (size_t m = 0; m < n_merges; m++) {
        pairs[3 * m] = t->merges[3 * m];
        pairs[3 * m + 1] = t->merges[3 * m + 1];
        pairs[3 * m + 2] = (uint32_t)m;
    }
    qsort(pairs, n_merges, 3 * sizeof(uint32_t), q_merge_cmp);
    for (size_t m = 1; m < n_merges; m++)
        if (pairs[3 * m] == pairs[3 * m - 3] && pairs[3 * m + 1] == pairs[3 * m - 2]) {
            int64_t later = pairs[3 * m + 2];
            q_os_free(pairs);
            return q_fail(diag, Q_ERR_DUPLICATE, "tokenizer.ggml.merges", 0, later);
        }
    q_os_free(pairs);
    return Q_OK;
}

q_error_code q_tok_bpe_finish(q_tokenizer *t, const unsigned char *base, size_t merges_at,
                              size_t n_merges, uint64_t tokens_at, q_diag *diag)
{
    size_t n = t->vocab_size, sorted_bytes;
    q_error_code rc;
    t->kind = Q_VOCAB_BPE;
    for (size_t i = 0; i < n; i++) {
        const unsigned char *p = (const unsigned char *)t->pieces[i];
        size_t len = t->piece_lengths[i], used;
        if (!q_bpe_is_text_token(t, i))
            continue;
        if (len == 0)
            return q_fail(diag, Q_ERR_BAD_TOKEN, "token (empty)", tokens_at, (int64_t)i);
        for (size_t j = 0; j < len; j += used)
            if (q_byte_unspell(p + j, len - j, &used) < 0)
                return q_fail(diag, Q_ERR_BAD_TOKEN, "token (not byte-level text)", tokens_at,
                              (int64_t)i);
    }
    if (!q_mul_size(n, sizeof(uint32_t), &sorted_bytes))
        return q_fail(diag, Q_ERR_OVERFLOW, "tokenizer", 0, (int64_t)n);
    uint32_t *sorted = q_os_malloc(sorted_bytes ? sorted_bytes : 1);
    if (sorted == NULL)
        return q_fail(diag, Q_ERR_ALLOC, "tokenizer", 0, (int64_t)n);
    for (size_t i = 0; i < n; i++)
        sorted[i] = (uint32_t)i;
    sort_tok = t;
    qsort(sorted, n, sizeof *sorted, q_id_cmp);
    sort_tok = NULL;
    rc = Q_OK;
    for (unsigned b = 0; b < 256 && rc == Q_OK; b++) {
        unsigned char spelled[2];
        int64_t id = q_sorted_find(t, sorted, spelled, q_byte_spell(b, spelled));
        if (id < 0)
            rc = q_fail(diag, Q_ERR_MISSING, "byte-level token of byte", tokens_at, b);
        else
            t->byte_tokens[b] = (uint32_t)id;
    }
    if (rc == Q_OK)
        rc = q_bpe_resolve_merges(t, sorted, base, merges_at, n_merges, diag);
    q_os_free(sorted);
    if (rc != Q_OK)
        return rc;
    t->has_byte_fallback = 0;
    if (t->bos_id >= n)
        return q_fail(diag, Q_ERR_BAD_TOKEN, "bos_id", tokens_at, (int64_t)t->bos_id);
    if (t->eos_id >= n)
        return q_fail(diag, Q_ERR_BAD_TOKEN, "eos_id", tokens_at, (int64_t)t->eos_id);
    return Q_OK;
}

void q_tokenizer_free(q_tokenizer *tokenizer)
{
    if (tokenizer == NULL)
        return;
    q_os_free(tokenizer->token_types);
    q_os_free(tokenizer->merges);
    q_os_free(tokenizer->pieces);
    q_os_free(tokenizer->piece_lengths);
    q_os_free(tokenizer->scores);
    q_os_free(tokenizer->piece_storage);
    memset(tokenizer, 0, sizeof *tokenizer);
}

/* Reads one token entry (score, len, bytes) with every check. Returns Q_OK, or an error
 * with `diag` set; on Q_ERR_TRUNCATED nothing is consumed beyond what was read. */
static q_error_code q_tok_entry(q_reader *r, size_t max_len, size_t index, float *score,
                                const unsigned char **piece, size_t *len, q_diag *diag)
{
    size_t at = r->pos;
    int32_t n;
    if (!q_rd_f32(r, score))
        return q_fail(diag, Q_ERR_TRUNCATED, "token score", at, (int64_t)index);
    if (isnan(*score))
        return q_fail(diag, Q_ERR_BAD_TOKEN, "token score (NaN)", at, (int64_t)index);
    at = r->pos;
    if (!q_rd_i32(r, &n))
        return q_fail(diag, Q_ERR_TRUNCATED, "token length", at, (int64_t)index);
    if (n < 0 || (uint32_t)n > max_len)
        return q_fail(diag, Q_ERR_BAD_TOKEN, "token length", at, n);
    if (!q_rd_take(r, (size_t)n, piece))
        return q_fail(diag, Q_ERR_TRUNCATED, "token bytes", r->pos, n);
    *len = (size_t)n;
    return Q_OK;
}

q_error_code q_tokenizer_parse(q_tokenizer *tokenizer, const void *buf, size_t len,
                               size_t expected_vocab, q_diag *diag)
{
    q_reader r;
    int32_t max_len;
    size_t n, i, text = 0, used = 0;
    float score;
    const unsigned char *piece;
    size_t plen;
    q_error_code rc;

    if (diag != NULL)
        memset(diag, 0, sizeof *diag);
    if (tokenizer == NULL)
        return q_fail(diag, Q_ERR_INVALID_ARG, "tokenizer", 0, 0);
    memset(tokenizer, 0, sizeof *tokenizer);
    if (buf == NULL)
        return q_fail(diag, Q_ERR_INVALID_ARG, "buf", 0, 0);
    if (expected_vocab > Q_MAX_VOCAB)
        return q_fail(diag, Q_ERR_INVALID_CONFIG, "vocab_size", 0, (int64_t)expected_vocab);
    r.base = buf;
    r.len = len;
    r.pos = 0;
    if (!q_rd_i32(&r, &max_len))
        return q_fail(diag, Q_ERR_TRUNCATED, "max_token_length", 0, (int64_t)len);
    if (max_len < 1 || (uint32_t)max_len > Q_MAX_TOKEN_BYTES)
        return q_fail(diag, Q_ERR_INVALID_CONFIG, "max_token_length", 0, max_len);

    /* pass 1: validate every entry and size the copy, allocating nothing */
    for (n = 0; expected_vocab == 0 || n < expected_vocab; n++) {
        if (q_rd_left(&r) == 0) {
            if (expected_vocab == 0)
                break;
            return q_fail(diag, Q_ERR_VOCAB_MISMATCH, "vocab_size", r.pos, (int64_t)n);
        }
        if (n == Q_MAX_VOCAB)
            return q_fail(diag, Q_ERR_INVALID_CONFIG, "vocab_size", r.pos, (int64_t)n);
        rc = q_tok_entry(&r, (size_t)max_len, n, &score, &piece, &plen, diag);
        if (rc != Q_OK)
            return rc;
        text += plen; /* <= len: the bytes are in the buffer */
    }
    if (n == 0)
        return q_fail(diag, Q_ERR_INVALID_CONFIG, "vocab_size", r.pos, 0);
    if (q_rd_left(&r) != 0) {
        /* more tokens than the model's vocabulary, or garbage? */
        size_t at = r.pos, extra = 0;
        q_reader probe = r;
        while (q_rd_left(&probe) != 0) {
            if (q_tok_entry(&probe, (size_t)max_len, n + extra, &score, &piece, &plen, NULL) !=
                Q_OK)
                break;
            extra++;
        }
        if (q_rd_left(&probe) == 0 && extra > 0)
            return q_fail(diag, Q_ERR_VOCAB_MISMATCH, "vocab_size", at, (int64_t)(n + extra));
        return q_fail(diag, Q_ERR_INVALID_CONFIG, "trailing_bytes", at,
                      (int64_t)(len - at));
    }

    /* pass 2: copy */
    rc = q_tok_alloc(tokenizer, n, text);
    if (rc != Q_OK)
        return q_fail(diag, rc, "tokenizer", 0, (int64_t)n);
    r.pos = 4;
    for (i = 0; i < n; i++) {
        rc = q_tok_entry(&r, (size_t)max_len, i, &score, &piece, &plen, diag);
        if (rc != Q_OK) { /* unreachable: pass 1 accepted the same bytes */
            q_tokenizer_free(tokenizer);
            return rc;
        }
        q_tok_set(tokenizer, i, piece, plen, score, &used);
    }
    tokenizer->max_token_length = (size_t)max_len;
    tokenizer->bos_id = 1;
    tokenizer->eos_id = 2;
    tokenizer->add_bos = 1;
    rc = q_tok_finish(tokenizer, 4, diag);
    if (rc != Q_OK)
        q_tokenizer_free(tokenizer);
    return rc;
}
