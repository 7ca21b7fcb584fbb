/*
 * Structure-aware mutator of llama2.c tokenizer.bin files (the input of fuzz_tokenizer).
 *
 * Layout (src/model/tokenizer.c): int32 max_token_length, then per token float32 score,
 * int32 len, len bytes; nothing after the last token. This file has its own small parser
 * (independent of src/model): the input becomes { max_token_length, tokens[], tail }, a few
 * fields change, and the file is written back well framed (every len field equal to its
 * piece's length) unless the mutation is one of the deliberate framing breaks (a len field
 * that lies, a partial trailing entry).
 *
 * Mutations (1 to 3 per call):
 *   max_token_length   0, 1, -1, the longest piece and +- 1, Q_MAX_TOKEN_BYTES +- 1, huge
 *   piece              byte-token shapes (<0xHH>, <0x-1>, <0x1>, <0xG0>...), a neighbour's
 *                      piece (duplicates), BOS/EOS spellings, broken UTF-8, empty, a piece of
 *                      exactly max_token_length or one byte more (sometimes raising
 *                      max_token_length with it)
 *   score              NaN, +-Inf, +-0, FLT_MAX, denormal, a neighbour's score
 *   vocabulary         insert or delete tokens, cut it to 0..3 tokens, add the 256 byte
 *                      tokens, swap two tokens (BOS/EOS ids 1 and 2 among them)
 *   framing            a len field different from the piece (negative, INT32_MIN, +-1),
 *                      trailing bytes (a partial entry), the tail removed
 * Cross-over: tokens [0, i) of one file, a run of the other's tokens, then the rest.
 */
#include <stdio.h>

#include "mutator_common.h"
#include "qorus_model.h"

typedef struct tk_token {
    uint32_t score; /* float32 bits */
    uint32_t len_field;
    const uint8_t *piece;
    size_t piece_len;
} tk_token;

typedef struct tk_file {
    uint32_t max_len;
    tk_token *tok;
    size_t n, cap;
    const uint8_t *tail;
    size_t tail_len;
} tk_file;

#define TK_MAX_TOKENS 65536u

/* Parses as many whole entries as fit; the rest is the tail. 0 when the input is shorter
 * than max_token_length or out of memory. */
static int tk_parse(qm_pool *pool, const uint8_t *in, size_t size, tk_file *f)
{
    qm_reader r = {in, size, 0};
    memset(f, 0, sizeof *f);
    if (!qm_get32(&r, &f->max_len))
        return 0;
    f->cap = 16;
    f->tok = qm_alloc(pool, f->cap * sizeof *f->tok);
    if (f->tok == NULL)
        return 0;
    for (;;) {
        size_t at = r.pos;
        uint32_t score, len;
        const uint8_t *piece;
        if (!qm_get32(&r, &score) || !qm_get32(&r, &len) || len > INT32_MAX ||
            !qm_take(&r, len, &piece) || f->n == TK_MAX_TOKENS) {
            r.pos = at;
            break;
        }
        if (f->n == f->cap) {
            tk_token *t = qm_alloc(pool, 2 * f->cap * sizeof *t);
            if (t == NULL)
                return 0;
            memcpy(t, f->tok, f->n * sizeof *t);
            f->tok = t;
            f->cap *= 2;
        }
        f->tok[f->n++] = (tk_token){score, len, piece, len};
    }
    f->tail = in + r.pos;
    f->tail_len = size - r.pos;
    return 1;
}

static void tk_write(const tk_file *f, qm_out *o)
{
    qm_put32(o, f->max_len);
    for (size_t i = 0; i < f->n; i++) {
        qm_put32(o, f->tok[i].score);
        qm_put32(o, f->tok[i].len_field);
        qm_put(o, f->tok[i].piece, f->tok[i].piece_len);
    }
    qm_put(o, f->tail, f->tail_len);
}

/* Room for `extra` more tokens. */
static int tk_reserve(qm_pool *pool, tk_file *f, size_t extra)
{
    if (f->n + extra <= f->cap)
        return 1;
    if (f->n + extra > TK_MAX_TOKENS)
        return 0;
    size_t cap = 2 * (f->n + extra);
    tk_token *t = qm_alloc(pool, cap * sizeof *t);
    if (t == NULL)
        return 0;
    memcpy(t, f->tok, f->n * sizeof *t);
    f->tok = t;
    f->cap = cap;
    return 1;
}

static int tk_insert(qm_pool *pool, tk_file *f, size_t at, const tk_token *t, size_t count)
{
    if (!tk_reserve(pool, f, count))
        return 0;
    memmove(f->tok + at + count, f->tok + at, (f->n - at) * sizeof *f->tok);
    memcpy(f->tok + at, t, count * sizeof *t);
    f->n += count;
    return 1;
}

static size_t tk_longest(const tk_file *f)
{
    size_t m = 0;
    for (size_t i = 0; i < f->n; i++)
        if (f->tok[i].piece_len > m)
            m = f->tok[i].piece_len;
    return m;
}

/* A new piece of `len` bytes from the pool, copied cyclically from `like`. */
static const uint8_t *tk_piece_of_len(qm_pool *pool, size_t len, const uint8_t *like,
                                      size_t like_len)
{
    uint8_t *p = qm_alloc(pool, len);
    if (p != NULL)
        qm_fill_cyclic(p, len, like_len ? like : (const uint8_t *)"ab", like_len ? like_len : 2);
    return p;
}

static int tk_mutate_once(qm_rng *r, qm_pool *pool, tk_file *f)
{
    size_t i = qm_below(r, f->n);
    tk_token *t = f->n ? &f->tok[i] : NULL;
    switch (qm_below(r, 12)) {
    case 0: { /* max_token_length */
        uint64_t longest = tk_longest(f);
        uint64_t nb[] = {longest, longest + 1, longest - 1, f->n};
        f->max_len = (uint32_t)qm_pick_int(r, f->max_len, Q_MAX_TOKEN_BYTES, nb, 4);
        return 1;
    }
    case 1:
    case 2: { /* a piece that matters */
        if (t == NULL)
            return 0;
        uint8_t buf[16];
        size_t n = qm_pick_piece(r, buf);
        t->piece = qm_dup(pool, buf, n);
        t->piece_len = n;
        t->len_field = (uint32_t)n;
        if (n > f->max_len && qm_one_in(r, 2))
            f->max_len = (uint32_t)n;
        return t->piece != NULL || n == 0;
    }
    case 3: { /* a neighbour's piece: duplicate */
        if (f->n < 2)
            return 0;
        const tk_token *o = &f->tok[qm_below(r, f->n)];
        t->piece = o->piece;
        t->piece_len = o->piece_len;
        t->len_field = o->len_field;
        return 1;
    }
    case 4: { /* a piece of exactly max_token_length, or one more */
        if (t == NULL || f->max_len > Q_MAX_TOKEN_BYTES + 1)
            return 0;
        size_t len = f->max_len + (qm_one_in(r, 2) ? 1 : 0);
        t->piece = tk_piece_of_len(pool, len, t->piece, t->piece_len);
        t->piece_len = len;
        t->len_field = (uint32_t)len;
        if (qm_one_in(r, 3))
            f->max_len = (uint32_t)len;
        return t->piece != NULL;
    }
    case 5: /* score */
        if (t == NULL)
            return 0;
        t->score = qm_one_in(r, 3) ? f->tok[qm_below(r, f->n)].score
                                   : qm_pick_f32_bits(r, t->score);
        return 1;
    case 6: { /* insert copies of existing tokens, or new byte tokens */
        size_t count = 1 + qm_below(r, 4), at = qm_below(r, f->n + 1);
        tk_token add[4];
        for (size_t k = 0; k < count; k++) {
            if (f->n && qm_one_in(r, 2)) {
                add[k] = f->tok[qm_below(r, f->n)];
            } else {
                uint8_t buf[16];
                size_t n = qm_pick_piece(r, buf);
                add[k] = (tk_token){qm_pick_f32_bits(r, 0), (uint32_t)n, qm_dup(pool, buf, n), n};
            }
        }
        return tk_insert(pool, f, at, add, count);
    }
    case 7: { /* delete a run of tokens */
        if (f->n == 0)
            return 0;
        size_t count = 1 + qm_below(r, f->n < 4 ? f->n : 4);
        if (count > f->n - i)
            count = f->n - i;
        memmove(f->tok + i, f->tok + i + count, (f->n - i - count) * sizeof *f->tok);
        f->n -= count;
        return 1;
    }
    case 8: /* a tiny vocabulary: 0..3 tokens (BOS/EOS ids out of range) */
        f->n = qm_below(r, f->n < 4 ? f->n + 1 : 4);
        return 1;
    case 9: { /* the 256 byte tokens (full byte fallback), appended */
        if (!tk_reserve(pool, f, 256))
            return 0;
        uint8_t *text = qm_alloc(pool, 256 * 6);
        if (text == NULL)
            return 0;
        for (unsigned b = 0; b < 256; b++) {
            char s[7];
            snprintf(s, sizeof s, "<0x%02X>", b);
            memcpy(text + 6 * b, s, 6);
            f->tok[f->n++] = (tk_token){0xc2c80000u /* -100 */, 6, text + 6 * b, 6};
        }
        if (f->max_len < 6)
            f->max_len = 6;
        return 1;
    }
    case 10: { /* swap two tokens (often BOS and EOS) */
        if (f->n < 2)
            return 0;
        size_t a = qm_one_in(r, 2) && f->n > 2 ? 1 : qm_below(r, f->n);
        size_t b = a == 1 && f->n > 2 ? 2 : qm_below(r, f->n);
        tk_token tmp = f->tok[a];
        f->tok[a] = f->tok[b];
        f->tok[b] = tmp;
        return 1;
    }
    default: /* framing: a lying len field, or trailing bytes */
        if (t != NULL && qm_one_in(r, 2)) {
            uint64_t nb[] = {f->max_len, t->piece_len + 1, t->piece_len - 1};
            t->len_field = (uint32_t)qm_pick_int(r, t->len_field, f->max_len, nb, 3);
            return 1;
        }
        if (f->tail_len) {
            f->tail_len = 0;
        } else {
            static const uint8_t partial[7] = {0, 0, 0x80, 0xbf, 3, 0, 0};
            f->tail = partial;
            f->tail_len = 1 + qm_below(r, 7);
        }
        return 1;
    }
}

static int tk_mutate(qm_rng *r, const uint8_t *in, size_t size, uint8_t *out, size_t max_size,
                     size_t *out_len)
{
    qm_pool pool = {0};
    tk_file f;
    int ok = 0;
    if (tk_parse(&pool, in, size, &f)) {
        size_t want = 1 + qm_below(r, 3), done = 0;
        for (int attempt = 0; attempt < 16 && done < want && !pool.failed; attempt++)
            done += (size_t)tk_mutate_once(r, &pool, &f);
        qm_out o = {out, 0, max_size, 0};
        tk_write(&f, &o);
        ok = done > 0 && !o.overflow && !pool.failed;
        *out_len = o.len;
    }
    qm_pool_free(&pool);
    return ok;
}

static int tk_crossover(qm_rng *r, const uint8_t *a, size_t na, const uint8_t *b, size_t nb,
                        uint8_t *out, size_t max_out, size_t *out_len)
{
    qm_pool pool = {0};
    tk_file fa, fb;
    int ok = 0;
    if (tk_parse(&pool, a, na, &fa) && tk_parse(&pool, b, nb, &fb) && fb.n > 0) {
        size_t at = qm_below(r, fa.n + 1), from = qm_below(r, fb.n);
        size_t count = 1 + qm_below(r, fb.n - from);
        size_t drop = qm_one_in(r, 2) ? (count < fa.n - at ? count : fa.n - at) : 0;
        memmove(fa.tok + at, fa.tok + at + drop, (fa.n - at - drop) * sizeof *fa.tok);
        fa.n -= drop;
        if (tk_insert(&pool, &fa, at, fb.tok + from, count)) {
            if (fb.max_len > fa.max_len && qm_one_in(r, 2))
                fa.max_len = fb.max_len;
            qm_out o = {out, 0, max_out, 0};
            tk_write(&fa, &o);
            ok = !o.overflow && !pool.failed;
            *out_len = o.len;
        }
    }
    qm_pool_free(&pool);
    return ok;
}

const qm_format qm_format_tokenizer = {"tokenizer", tk_mutate, tk_crossover};

/* For the unit test: 1 when the input is a well-framed tokenizer file (a max_token_length,
 * whole entries, nothing after the last entry). */
int qm_tokenizer_well_framed(const uint8_t *in, size_t size)
{
    qm_pool pool = {0};
    tk_file f;
    int ok = tk_parse(&pool, in, size, &f) && f.tail_len == 0;
    qm_pool_free(&pool);
    return ok;
}

QM_ENGINE_ENTRY_POINTS(qm_format_tokenizer)
