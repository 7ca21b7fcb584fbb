/*
 * Tokenizer: llama2.c's BPE encode (run.c encode()) and a streaming, UTF-8-safe decode.
 *
 * Encode keeps run.c's algorithm and its results: dummy-prefix " ", one lookup per UTF-8
 * codepoint (lead byte + up to 3 continuation bytes), byte fallback, then repeated merges
 * of the adjacent pair with the highest score (leftmost on ties, strictly greater than
 * -1e10). Unlike run.c (O(n^2) lookups), merges run in O(n log n) with a heap; the merge
 * order and the result are the same.
 *
 * Byte-level BPE vocabularies (GGUF "gpt2": GPT-2, Llama 3, Qwen2) share the heap: special
 * pieces are cut out of the text, the pre-tokenizer (pretok.c) splits the rest into words,
 * each word starts as its byte pieces and merges the pair of lowest rank (a hash of the
 * merge list) first, leftmost on ties — the original tokenizers' order. The plain reference
 * of that path is fuzz/bpe_naive.h, compared by fuzz_bpe.
 *
 * Decode: see q_decoder in qorus_infer.h.
 */
#include "qorus_infer.h"

#include <stdlib.h>
#include <string.h>

#include "core/checked.h"
#include "core/os.h"
#include "infer/pretok.h"
#include "model/byte_level.h"

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
static q_error_code bpe_piece_text(const q_tokenizer *tok, const char *const **pieces,
                                   const size_t **lengths, void **owned);

/* One heap block for n translated pieces of at most `bytes` bytes in all: *ptrs (n
 * pointers), *lens (n lengths), then *text (bytes + 1, so an empty vocabulary text is no
 * zero-byte request). Returns the block (free it with q_os_free) or NULL with *err set. */
static unsigned char *piece_block(size_t n, size_t bytes, const char ***ptrs, size_t **lens,
                                  char **text, q_error_code *err)
{
    size_t ptr_bytes, len_bytes, total;
    if (!q_mul_size(n, sizeof(char *), &ptr_bytes) ||
        !q_mul_size(n, sizeof(size_t), &len_bytes) ||
        !q_add_size(ptr_bytes, len_bytes, &total) || !q_add_size(total, bytes, &total) ||
        !q_add_size(total, 1, &total)) {
        *err = Q_ERR_OVERFLOW;
        return NULL;
    }
    unsigned char *block = q_os_malloc(total);
    if (block == NULL) {
        *err = Q_ERR_ALLOC;
        return NULL;
    }
    *ptrs = (const char **)(void *)block;                 /* (n) */
    *lens = (size_t *)(void *)(block + ptr_bytes);        /* (n) */
    *text = (char *)block + ptr_bytes + len_bytes;        /* (bytes + 1) */
    return block;
}

static q_error_code piece_text(const q_tokenizer *tok, const char *const **pieces,
                               const size_t **lengths, void **owned)
{
    size_t n = tok->vocab_size, bytes = 0;
    int spm = 0;
    if (tok->kind == Q_VOCAB_BPE)
        return bpe_piece_text(tok, pieces, lengths, owned);
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
    const char **ptrs;
    size_t *lens;
    char *text;
    q_error_code err = Q_OK;
    unsigned char *block = piece_block(n, bytes, &ptrs, &lens, &text, &err);
    if (block == NULL)
        return err;
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

/* What a BPE token stands for: its bytes (text tokens, q_bpe_is_text_token, through the
 * byte-level alphabet, which the parser checked), its text (user-defined), nothing (the
 * others). */
static int bpe_shown(const q_tokenizer *tok, size_t i)
{
    return q_bpe_is_text_token(tok, i) || tok->token_types[i] == Q_TOKEN_TYPE_USER_DEFINED;
}

/* Like piece_text for byte-level BPE: one heap block (pointers, lengths, bytes) holding the
 * bytes every token stands for. A decoded piece is never longer than its spelling. */
static q_error_code bpe_piece_text(const q_tokenizer *tok, const char *const **pieces,
                                   const size_t **lengths, void **owned)
{
    size_t n = tok->vocab_size, bytes = 0;
    for (size_t i = 0; i < n; i++) {
        if (tok->pieces[i] == NULL)
            return Q_ERR_INVALID_ARG;
        if (!q_add_size(bytes, tok->piece_lengths[i], &bytes))
            return Q_ERR_OVERFLOW;
    }
    const char **ptrs;
    size_t *lens;
    char *text;
    q_error_code err = Q_OK;
    unsigned char *block = piece_block(n, bytes, &ptrs, &lens, &text, &err);
    if (block == NULL)
        return err;
    for (size_t i = 0; i < n; i++) {
        const unsigned char *p = (const unsigned char *)tok->pieces[i];
        size_t len = tok->piece_lengths[i], out = 0, used = 1;
        ptrs[i] = text;
        if (q_bpe_is_text_token(tok, i)) {
            for (size_t j = 0; j < len; j += used) {
                int b = q_byte_unspell(p + j, len - j, &used);
                if (b < 0) { /* the parser refuses these vocabularies; a hand-built one */
                    q_os_free(block);
                    return Q_ERR_BAD_TOKEN;
                }
                text[out++] = (char)b;
            }
        } else if (bpe_shown(tok, i)) {
            memcpy(text, p, len);
            out = len;
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

/* The first index of enc->sorted whose piece is >= s[0..n). */
static size_t lower_bound(const q_encoder *enc, const char *s, size_t n)
{
    size_t lo = 0, hi = enc->tok->vocab_size;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint32_t id = enc->sorted[mid];
        if (cmp_bytes(enc->pieces[id], enc->piece_lengths[id], s, n) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Lowest id whose piece is s[0..n), or -1. */
static int64_t lookup(const q_encoder *enc, const char *s, size_t n)
{
    size_t at = lower_bound(enc, s, n);
    if (at == enc->tok->vocab_size)
        return -1;
    uint32_t id = enc->sorted[at];
    if (cmp_bytes(enc->pieces[id], enc->piece_lengths[id], s, n) != 0)
        return -1;
    return id;
}

/* ---- byte-level BPE: merge ranks, special pieces ---- */

static size_t pair_slot(uint64_t key, size_t mask)
{
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & mask;
}

/* Rank of the merge of tokens a and b, or -1. */
static int64_t pair_rank(const q_encoder *enc, uint32_t a, uint32_t b)
{
    uint64_t key = (uint64_t)a << 32 | b;
    for (size_t i = pair_slot(key, enc->pair_mask);; i = (i + 1) & enc->pair_mask) {
        if (enc->pair_keys[i] == key)
            return enc->pair_ranks[i];
        if (enc->pair_keys[i] == UINT64_MAX)
            return -1;
    }
}

/* qsort context for the special pieces (see sort_enc). */
static _Thread_local const q_tokenizer *sort_special_tok;

/* By first byte, then longer first, then id. */
static int cmp_specials(const void *pa, const void *pb)
{
    const q_tokenizer *t = sort_special_tok;
    uint32_t a = *(const uint32_t *)pa, b = *(const uint32_t *)pb;
    unsigned char fa = (unsigned char)t->pieces[a][0], fb = (unsigned char)t->pieces[b][0];
    if (fa != fb)
        return fa < fb ? -1 : 1;
    if (t->piece_lengths[a] != t->piece_lengths[b])
        return t->piece_lengths[a] > t->piece_lengths[b] ? -1 : 1;
    return (a > b) - (a < b);
}

static int is_special(const q_tokenizer *tok, size_t i)
{
    return tok->token_types != NULL && tok->piece_lengths[i] > 0 &&
           (tok->token_types[i] == Q_TOKEN_TYPE_CONTROL ||
            tok->token_types[i] == Q_TOKEN_TYPE_USER_DEFINED);
}

static q_error_code bpe_init(q_encoder *enc, const q_tokenizer *tok)
{
    size_t slots = 16, n_special = 0;
    if (tok->merges == NULL && tok->n_merges > 0)
        return Q_ERR_INVALID_ARG;
    while (slots < 2 * tok->n_merges) { /* load factor at most 1/2 */
        if (slots > SIZE_MAX / 2 / sizeof(uint64_t))
            return Q_ERR_OVERFLOW;
        slots *= 2;
    }
    enc->pair_keys = q_os_malloc(slots * sizeof(uint64_t));
    enc->pair_ranks = q_os_malloc(slots * sizeof(uint32_t));
    for (size_t i = 0; i < tok->vocab_size; i++)
        n_special += (size_t)is_special(tok, i);
    enc->specials = q_os_malloc((n_special ? n_special : 1) * sizeof(uint32_t));
    enc->special_at = q_os_calloc(257, sizeof(size_t));
    if (enc->pair_keys == NULL || enc->pair_ranks == NULL || enc->specials == NULL ||
        enc->special_at == NULL)
        return Q_ERR_ALLOC;
    enc->pair_mask = slots - 1;
    for (size_t i = 0; i < slots; i++)
        enc->pair_keys[i] = UINT64_MAX;
    for (size_t m = 0; m < tok->n_merges; m++) {
        const uint32_t *row = tok->merges + 3 * m;
        if (row[0] >= tok->vocab_size || row[1] >= tok->vocab_size ||
            row[2] >= tok->vocab_size)
            return Q_ERR_INVALID_ARG;
        uint64_t key = (uint64_t)row[0] << 32 | row[1];
        size_t i = pair_slot(key, enc->pair_mask);
        while (enc->pair_keys[i] != UINT64_MAX && enc->pair_keys[i] != key)
            i = (i + 1) & enc->pair_mask;
        if (enc->pair_keys[i] == UINT64_MAX) { /* a repeated pair keeps its first rank */
            enc->pair_keys[i] = key;
            enc->pair_ranks[i] = (uint32_t)m;
        }
    }
    for (size_t i = 0; i < tok->vocab_size; i++)
        if (is_special(tok, i))
            enc->specials[enc->n_specials++] = (uint32_t)i;
    sort_special_tok = tok;
    qsort(enc->specials, enc->n_specials, sizeof *enc->specials, cmp_specials);
    sort_special_tok = NULL;
    for (size_t k = 0, b = 0; b <= 256; b++) { /* special_at[b]: first special of byte >= b */
        while (k < enc->n_specials && (unsigned char)tok->pieces[enc->specials[k]][0] < b)
            k++;
        enc->special_at[b] = k;
    }
    enc->ignore_merges = tok->pretok == Q_PRETOK_LLAMA3;
    return q_pretok_compile(tok->pretok, &enc->pretok);
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
    enc->sorted = q_os_malloc(sorted_bytes);
    enc->buf = q_os_malloc(cap);
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

    if (tok->kind == Q_VOCAB_BPE) {
        enc->space_id = -1; /* no dummy prefix */
        enc->unk_id = 0;
        err = bpe_init(enc, tok);
        if (err != Q_OK)
            q_encoder_free(enc);
        return err;
    }
    enc->space_id = lookup(enc, " ", 1);
    int64_t unk = lookup(enc, "<unk>", 5);
    enc->unk_id = unk < 0 ? 0 : (uint32_t)unk;
    return Q_OK;
}

void q_encoder_free(q_encoder *enc)
{
    if (enc == NULL)
        return;
    q_os_free(enc->sorted);
    q_os_free(enc->buf);
    q_os_free(enc->owned);
    q_os_free(enc->pair_keys);
    q_os_free(enc->pair_ranks);
    q_os_free(enc->specials);
    q_os_free(enc->special_at);
    q_pretok_free(enc->pretok);
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

/* ---- merges ----
 *
 * run.c merges, again and again, the adjacent pair whose concatenation is a piece with the
 * highest score (the leftmost on ties, and only scores above -1e10). Same result here in
 * O(n log n): the tokens form a linked list (a merge keeps the left node, so node indices
 * stay in text order) and candidate pairs sit in a max-heap ordered by (score, -left
 * index). A merge invalidates the entries of its neighbours lazily: an entry is applied only
 * if its two nodes are still adjacent and still hold the tokens it was computed for. */

typedef struct pair_entry {
    float score;
    uint32_t merged;       /* id of the concatenation */
    uint32_t left_tok, right_tok;
    size_t left, right;    /* node indices */
} pair_entry;

/* Whether a is a better merge than b: higher score, then further left. */
static int pair_before(const pair_entry *a, const pair_entry *b)
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void heap_push(pair_entry *heap, size_t *len, pair_entry e)
{
    size_t i = (*len)++;
    while (i > 0 && pair_before(&e, &heap[(i - 1) / 2])) {
        heap[i] = heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    heap[i] = e;
}

static pair_entry heap_pop(pair_entry *heap, size_t *len)
{
    pair_entry top = heap[0], last = heap[--*len];
    size_t i = 0, n = *len;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && pair_before(&heap[c + 1], &heap[c]))
            c++;
        if (!pair_before(&heap[c], &last))
            break;
        heap[i] = heap[c];
        i = c;
    }
    if (n > 0)
        heap[i] = last;
    return top;
}

#define NO_NODE SIZE_MAX

/* Pushes the pair (left, right) if its concatenation is a piece with a usable score. */
static void push_pair(const q_encoder *enc, const uint32_t *tok_at, size_t left, size_t right,
                      pair_entry *heap, size_t *len)
{
    if (left == NO_NODE || right == NO_NODE)
        return;
    if (enc->pair_keys != NULL) { /* BPE: ranked merges, the lowest rank first */
        int64_t rank = pair_rank(enc, tok_at[left], tok_at[right]);
        if (rank < 0)
            return;
        /* ranks are below Q_MAX_MERGES = 2^24: exact as floats */
        pair_entry e = {-(float)rank, enc->tok->merges[3 * rank + 2], tok_at[left],
                        tok_at[right], left, right};
        heap_push(heap, len, e);
        return;
    }
    int64_t id = lookup_pair(enc, tok_at[left], tok_at[right]);
    if (id < 0)
        return;
    float score = enc->tok->scores != NULL ? enc->tok->scores[id] : 0.0f;
    if (!(score > -1e10f)) /* run.c's starting best score; NaN never merges */
        return;
    pair_entry e = {score, (uint32_t)id, tok_at[left], tok_at[right], left, right};
    heap_push(heap, len, e);
}

/* Merges tokens[0..*n) in place as run.c does; *n shrinks. */
static q_error_code merge_pairs(const q_encoder *enc, uint32_t *tokens, size_t *n_io)
{
    size_t n = *n_io;
    if (n < 2)
        return Q_OK;
    /* each merge pushes at most 2 entries and there are at most n - 1 merges */
    size_t links_bytes, heap_cap, heap_bytes;
    if (!q_mul_size(n, 2 * sizeof(size_t), &links_bytes) || !q_mul_size(n, 3, &heap_cap) ||
        !q_mul_size(heap_cap, sizeof(pair_entry), &heap_bytes))
        return Q_ERR_OVERFLOW;
    size_t *prev = q_os_malloc(links_bytes); /* (2n): prev[i], then next[i] at prev + n */
    pair_entry *heap = q_os_malloc(heap_bytes); /* (3n) */
    if (prev == NULL || heap == NULL) {
        q_os_free(prev);
        q_os_free(heap);
        return Q_ERR_ALLOC;
    }
    size_t *next = prev + n;
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        prev[i] = i == 0 ? NO_NODE : i - 1;
        next[i] = i + 1 == n ? NO_NODE : i + 1;
    }
    for (size_t i = 0; i + 1 < n; i++)
        push_pair(enc, tokens, i, i + 1, heap, &len);
    while (len > 0) {
        pair_entry e = heap_pop(heap, &len);
        if (next[e.left] != e.right || tokens[e.left] != e.left_tok ||
            tokens[e.right] != e.right_tok)
            continue; /* stale */
        tokens[e.left] = e.merged;
        next[e.left] = next[e.right];
        if (next[e.right] != NO_NODE)
            prev[next[e.right]] = e.left;
        next[e.right] = e.right; /* dead: never adjacent to anything again */
        prev[e.right] = NO_NODE;
        push_pair(enc, tokens, prev[e.left], e.left, heap, &len);
        push_pair(enc, tokens, e.left, next[e.left], heap, &len);
    }
    size_t out = 0;
    for (size_t i = 0; i != NO_NODE; i = next[i])
        tokens[out++] = tokens[i];
    q_os_free(prev);
    q_os_free(heap);
    *n_io = out;
    return Q_OK;
}

/* ---- byte-level BPE encode ---- */

typedef struct bpe_out {
    const q_encoder *enc;
    const char *text;
    uint32_t *tokens;
    size_t n;
} bpe_out;

/* One pre-tokenizer word text[start..end): its byte tokens, merged. */
static q_error_code bpe_word(void *user, size_t start, size_t end)
{
    bpe_out *o = user;
    const q_encoder *enc = o->enc;
    const q_tokenizer *tok = enc->tok;
    const unsigned char *w = (const unsigned char *)o->text + start;
    size_t len = end - start, n;
    if (enc->ignore_merges) { /* the lowest normal or byte id standing for the word */
        for (size_t at = lower_bound(enc, (const char *)w, len); at < tok->vocab_size; at++) {
            uint32_t id = enc->sorted[at];
            if (cmp_bytes(enc->pieces[id], enc->piece_lengths[id], (const char *)w, len) != 0)
                break;
            if (q_bpe_is_text_token(tok, id)) {
                o->tokens[o->n++] = id;
                return Q_OK;
            }
        }
    }
    uint32_t *t = o->tokens + o->n;
    for (size_t i = 0; i < len; i++)
        t[i] = tok->byte_tokens[w[i]];
    for (size_t i = 0; i < len; i++) /* the parser's promise, kept for hand-built vocabularies */
        if (t[i] >= tok->vocab_size)
            return Q_ERR_BAD_TOKEN;
    n = len;
    q_error_code err = merge_pairs(enc, t, &n);
    if (err == Q_OK)
        o->n += n;
    return err;
}

/* The longest special piece (control ones only with `special`) at text[at..len), or -1. */
static int64_t special_at(const q_encoder *enc, const char *text, size_t at, size_t len,
                          int special)
{
    const q_tokenizer *tok = enc->tok;
    unsigned char b = (unsigned char)text[at];
    for (size_t k = enc->special_at[b]; k < enc->special_at[b + 1]; k++) {
        uint32_t id = enc->specials[k];
        size_t n = tok->piece_lengths[id];
        if (!special && tok->token_types[id] == Q_TOKEN_TYPE_CONTROL)
            continue;
        if (n <= len - at && memcmp(text + at, tok->pieces[id], n) == 0)
            return id;
    }
    return -1;
}

static q_error_code bpe_encode(const q_encoder *enc, const char *text, size_t text_len,
                               int special, uint32_t *tokens, size_t *n_io)
{
    bpe_out o = {enc, text, tokens, *n_io};
    size_t from = 0;
    q_error_code err = Q_OK;
    for (size_t at = 0; at <= text_len && err == Q_OK; at++) {
        int64_t id = at < text_len ? special_at(enc, text, at, text_len, special) : -1;
        if (id < 0 && at < text_len)
            continue;
        /* the plain text before the special piece (or the end) */
        o.text = text + from;
        err = q_pretok_split(enc->pretok, text + from, at - from, bpe_word, &o);
        if (id >= 0 && err == Q_OK) {
            tokens[o.n++] = (uint32_t)id;
            at += enc->tok->piece_lengths[id] - 1;
            from = at + 1;
        }
    }
    *n_io = o.n;
    return err;
}

q_error_code q_encode(const q_encoder *enc, const char *text, size_t text_len, int add_bos,
                      int add_eos, uint32_t *tokens, size_t capacity, size_t *n_tokens)
{
    return q_encode_ex(enc, text, text_len,
                       (add_bos ? Q_ENCODE_BOS : 0u) | (add_eos ? Q_ENCODE_EOS : 0u), tokens,
                       capacity, n_tokens);
}

q_error_code q_encode_ex(const q_encoder *enc, const char *text, size_t text_len,
                         unsigned flags, uint32_t *tokens, size_t capacity, size_t *n_tokens)
{
    if (n_tokens != NULL)
        *n_tokens = 0;
    if (enc == NULL || enc->tok == NULL || enc->sorted == NULL || tokens == NULL ||
        n_tokens == NULL || (text == NULL && text_len > 0) ||
        (flags & ~(unsigned)(Q_ENCODE_BOS | Q_ENCODE_EOS | Q_ENCODE_SPECIAL)) != 0)
        return Q_ERR_INVALID_ARG;
    const q_tokenizer *tok = enc->tok;
    int add_bos = (flags & Q_ENCODE_BOS) != 0, add_eos = (flags & Q_ENCODE_EOS) != 0;
    if ((add_bos && tok->bos_id >= tok->vocab_size) ||
        (add_eos && tok->eos_id >= tok->vocab_size))
        return Q_ERR_BAD_TOKEN;
    size_t need = q_encode_capacity(text_len);
    if (need == 0 || capacity < need)
        return Q_ERR_OVERFLOW;

    size_t n = 0;
    if (add_bos)
        tokens[n++] = tok->bos_id;
    if (enc->pretok != NULL) {
        /* every byte gives at most one token: text_len + 2 fit */
        q_error_code err = bpe_encode(enc, text, text_len, (flags & Q_ENCODE_SPECIAL) != 0,
                                      tokens, &n);
        if (err != Q_OK)
            return err;
        if (add_eos)
            tokens[n++] = tok->eos_id;
        *n_tokens = n;
        return Q_OK;
    }
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

    q_error_code err = merge_pairs(enc, tokens, &n);
    if (err != Q_OK)
        return err;
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
    dec->out = q_os_malloc(cap);
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
    q_os_free(dec->out);
    q_os_free(dec->owned);
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
        if (tok->kind == Q_VOCAB_SPM && prev_token == tok->bos_id && len > 0 && p[0] == ' ') {
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

q_error_code q_decoder_piece(q_decoder *dec, uint32_t token, const char **out, size_t *out_len)
{
    if (out_len != NULL)
        *out_len = 0;
    if (dec == NULL || dec->tok == NULL || dec->out == NULL || out == NULL || out_len == NULL)
        return Q_ERR_INVALID_ARG;
    if (token >= dec->tok->vocab_size)
        return Q_ERR_BAD_TOKEN;
    int byte = fallback_byte(dec->tok, token);
    if (byte >= 0) {
        dec->out[0] = (char)byte;
        *out = dec->out;
        *out_len = 1;
        return Q_OK;
    }
    *out = dec->pieces[token];
    *out_len = dec->piece_lengths[token];
    return Q_OK;
}
