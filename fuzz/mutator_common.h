/*
 * Shared parts of the structure-aware mutators (fuzz/mutator_gguf.c, mutator_llama2c.c,
 * mutator_tokenizer.c):
 *
 *   qm_rng         a small deterministic PRNG (splitmix64); every choice of a mutator comes
 *                  from it, so a mutation is a pure function of (input, seed).
 *   qm_pool        every allocation of one mutation, freed at once at the end.
 *   qm_out         a bounded output buffer: writing past max_size marks it failed, so a
 *                  mutator never produces more than max_size bytes.
 *   qm_pick_*      the "values that matter": 0, 1, limits and limit +- 1, the old value +- 1,
 *                  doubled and halved, neighbours' values, huge, negative, NaN/Inf...
 *   qm_byte_mutate a plain byte-level mutation (bit flips, interesting integers, inserts,
 *                  erases), the fallback for inputs a format mutator cannot parse when no
 *                  engine mutator (LLVMFuzzerMutate) is available.
 *   QM_ENGINE_ENTRY_POINTS(fmt)
 *                  the engine glue, expanded once at the end of each mutator file:
 *                  with QORUS_MUTATOR_LIBFUZZER, LLVMFuzzerCustomMutator and
 *                  LLVMFuzzerCustomCrossOver (QORUS_FUZZ_STRUCTURED=0 in the environment makes
 *                  them plain byte mutators); with QORUS_MUTATOR_AFL, AFL++'s custom mutator
 *                  API (afl_custom_init / afl_custom_fuzz / afl_custom_describe /
 *                  afl_custom_deinit); with neither (the unit test), nothing.
 *
 * A format provides two functions (see qm_format): mutate one input into `out`, and cross
 * two inputs over. Both return 0 when they cannot parse an input (the glue then falls back
 * to byte mutation) or when the result would not fit in max_size.
 */
#ifndef QORUS_FUZZ_MUTATOR_COMMON_H
#define QORUS_FUZZ_MUTATOR_COMMON_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- deterministic PRNG ---- */

typedef struct qm_rng {
    uint64_t s;
} qm_rng;

static inline uint64_t qm_next(qm_rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [0, n); 0 when n == 0. */
static inline size_t qm_below(qm_rng *r, size_t n)
{
    return n ? (size_t)(qm_next(r) % n) : 0;
}

/* True once in `k` draws. */
static inline int qm_one_in(qm_rng *r, unsigned k)
{
    return qm_below(r, k) == 0;
}

/* ---- allocation pool ---- */

typedef struct qm_pool {
    void **blocks;
    size_t n, cap;
    int failed;
} qm_pool;

/* Zeroed allocation owned by the pool; NULL (and pool->failed) when out of memory. */
static inline void *qm_alloc(qm_pool *p, size_t bytes)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 64;
        void **b = realloc(p->blocks, cap * sizeof *b);
        if (b == NULL) {
            p->failed = 1;
            return NULL;
        }
        p->blocks = b;
        p->cap = cap;
    }
    void *m = calloc(1, bytes ? bytes : 1);
    if (m == NULL) {
        p->failed = 1;
        return NULL;
    }
    p->blocks[p->n++] = m;
    return m;
}

static inline void *qm_dup(qm_pool *p, const void *src, size_t bytes)
{
    void *m = qm_alloc(p, bytes);
    if (m != NULL && bytes)
        memcpy(m, src, bytes);
    return m;
}

static inline void qm_pool_free(qm_pool *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->blocks[i]);
    free(p->blocks);
    memset(p, 0, sizeof *p);
}

/* ---- little-endian reads (the caller checked the bounds) ---- */

static inline uint32_t qm_rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t qm_rd64(const uint8_t *p)
{
    return (uint64_t)qm_rd32(p) | (uint64_t)qm_rd32(p + 4) << 32;
}

static inline void qm_wr32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline void qm_wr64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Bounds-checked sequential reader over an input. */
typedef struct qm_reader {
    const uint8_t *p;
    size_t len, pos;
} qm_reader;

static inline int qm_take(qm_reader *r, size_t n, const uint8_t **out)
{
    if (n > r->len - r->pos)
        return 0;
    *out = r->p + r->pos;
    r->pos += n;
    return 1;
}

static inline int qm_get32(qm_reader *r, uint32_t *v)
{
    const uint8_t *b;
    if (!qm_take(r, 4, &b))
        return 0;
    *v = qm_rd32(b);
    return 1;
}

static inline int qm_get64(qm_reader *r, uint64_t *v)
{
    const uint8_t *b;
    if (!qm_take(r, 8, &b))
        return 0;
    *v = qm_rd64(b);
    return 1;
}

/* ---- bounded output ---- */

typedef struct qm_out {
    uint8_t *p;
    size_t len, max;
    int overflow; /* something did not fit: the result is unusable */
} qm_out;

static inline void qm_put(qm_out *o, const void *src, size_t n)
{
    if (o->overflow || n > o->max - o->len) {
        o->overflow = 1;
        return;
    }
    if (n)
        memcpy(o->p + o->len, src, n);
    o->len += n;
}

static inline void qm_put32(qm_out *o, uint32_t v)
{
    uint8_t b[4];
    qm_wr32(b, v);
    qm_put(o, b, 4);
}

static inline void qm_put64(qm_out *o, uint64_t v)
{
    uint8_t b[8];
    qm_wr64(b, v);
    qm_put(o, b, 8);
}

static inline void qm_put_zeros(qm_out *o, size_t n)
{
    if (o->overflow || n > o->max - o->len) {
        o->overflow = 1;
        return;
    }
    memset(o->p + o->len, 0, n);
    o->len += n;
}

/* Fills dst with src repeated (zeros when src is empty): resized tensors keep plausible
 * values of their old contents. */
static inline void qm_fill_cyclic(uint8_t *dst, size_t n, const uint8_t *src, size_t src_len)
{
    if (src_len == 0 || src == NULL) {
        memset(dst, 0, n);
        return;
    }
    for (size_t done = 0; done < n;) {
        size_t k = n - done < src_len ? n - done : src_len;
        memcpy(dst + done, src, k);
        done += k;
    }
}

/* ---- values that matter ---- */

/*
 * An integer field's new value: one of 0, 1, 2, limit - 1, limit, limit + 1, old +- 1,
 * 2 old, old / 2, a neighbour's value (another field of the same file), a small power of
 * two, huge (2^31 - 1, 2^31, 2^32 - 1, 2^32, 2^63, 2^64 - 1), negative (-1, -old as
 * two's complement) or a random small value. Callers truncate to the field's width.
 */
static inline uint64_t qm_pick_int(qm_rng *r, uint64_t old, uint64_t limit,
                                   const uint64_t *neighbours, size_t n_neighbours)
{
    switch (qm_below(r, 16)) {
    case 0: return 0;
    case 1: return 1;
    case 2: return 2;
    case 3: return limit - 1;
    case 4: return limit;
    case 5: return limit + 1;
    case 6: return old + 1;
    case 7: return old - 1;
    case 8: return old * 2;
    case 9: return old / 2;
    case 10:
    case 11:
        if (n_neighbours)
            return neighbours[qm_below(r, n_neighbours)];
        return old;
    case 12: return (uint64_t)1 << qm_below(r, 8);
    case 13: {
        static const uint64_t huge[] = {0x7fffffffu, 0x80000000u, 0xffffffffu,
                                        0x100000000ull, 0x8000000000000000ull, UINT64_MAX,
                                        0x7fffffffffffffffull, 0x4000000000000000ull};
        return huge[qm_below(r, sizeof huge / sizeof huge[0])];
    }
    case 14: return qm_one_in(r, 2) ? UINT64_MAX : (uint64_t)0 - old;
    default: return 1 + qm_below(r, 64);
    }
}

/* A 32-bit float that matters, as its bit pattern: NaN, -NaN, +-Inf, +-0, FLT_MAX,
 * FLT_MIN, the smallest denormal, -1, 1, a huge or tiny value, or a neighbour's bits. */
static inline uint32_t qm_pick_f32_bits(qm_rng *r, uint32_t old)
{
    static const uint32_t special[] = {
        0x7fc00000u, 0xffc00000u, 0x7f800000u, 0xff800000u, 0x00000000u, 0x80000000u,
        0x7f7fffffu, 0x00800000u, 0x00000001u, 0xbf800000u, 0x3f800000u, 0x7149f2cau,
        0x0da24260u, 0x7f800001u};
    if (qm_one_in(r, 8))
        return old ^ (1u << qm_below(r, 32));
    return special[qm_below(r, sizeof special / sizeof special[0])];
}

/* A tokenizer piece that matters: byte-fallback shapes (valid and malformed), BOS/EOS
 * spellings, the SentencePiece space, broken UTF-8, the empty piece. Returns its length
 * (at most 16) in buf. */
static inline size_t qm_pick_piece(qm_rng *r, uint8_t buf[16])
{
    static const char *const shapes[] = {
        "<0x-1>", "<0x1>", "<0xG0>", "<0x>", "<0x123>", "<0x0a>", "<0X41>", "<unk>",
        "<s>", "</s>", "\n<s>\n", "\n</s>\n", "\xe2\x96\x81", "\xe2\x96", "\xff\xfe", " ",
        "\xf0\x9f\x98\x80", "a", "\xe2\x96\x81the", "<0x"};
    size_t k = qm_below(r, 24);
    if (k < sizeof shapes / sizeof shapes[0]) {
        size_t n = strlen(shapes[k]);
        memcpy(buf, shapes[k], n);
        return n;
    }
    if (k == 20) /* empty */
        return 0;
    /* a well-formed byte token <0xHH> */
    static const char hex[] = "0123456789ABCDEF";
    unsigned b = (unsigned)qm_below(r, 256);
    memcpy(buf, "<0x", 3);
    buf[3] = (uint8_t)hex[b >> 4];
    buf[4] = (uint8_t)hex[b & 15];
    buf[5] = '>';
    return 6;
}

/* ---- byte-level fallback ---- */

/* Mutates data[0..size) in place (max_size capacity) with 1..4 byte-level edits; returns the
 * new size. Used when no engine byte mutator is linked (AFL++ library, unit test). */
static inline size_t qm_byte_mutate(qm_rng *r, uint8_t *data, size_t size, size_t max_size)
{
    static const uint32_t interesting[] = {0, 1, 2, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000,
                                           0xffff, 0x10000, 0x7fffffff, 0x80000000u,
                                           0xffffffffu, 32, 64};
    size_t edits = 1 + qm_below(r, 4);
    for (size_t e = 0; e < edits; e++) {
        switch (size ? qm_below(r, 6) : 3) {
        case 0:
            data[qm_below(r, size)] ^= (uint8_t)(1u << qm_below(r, 8));
            break;
        case 1:
            data[qm_below(r, size)] = (uint8_t)qm_next(r);
            break;
        case 2:
            if (size >= 4) {
                uint8_t b[4];
                qm_wr32(b, interesting[qm_below(r, sizeof interesting / sizeof interesting[0])]);
                memcpy(data + qm_below(r, size - 3), b, 4);
            }
            break;
        case 3: /* insert up to 8 bytes */
            if (size < max_size) {
                size_t n = 1 + qm_below(r, 8), at = qm_below(r, size + 1);
                if (n > max_size - size)
                    n = max_size - size;
                memmove(data + at + n, data + at, size - at);
                for (size_t i = 0; i < n; i++)
                    data[at + i] = (uint8_t)qm_next(r);
                size += n;
            }
            break;
        case 4: /* erase up to 8 bytes */
            if (size > 1) {
                size_t at = qm_below(r, size), n = 1 + qm_below(r, 8);
                if (n > size - at)
                    n = size - at;
                memmove(data + at, data + at + n, size - at - n);
                size -= n;
            }
            break;
        default: /* copy a chunk over another place */
            if (size >= 2) {
                size_t n = 1 + qm_below(r, size / 2), from = qm_below(r, size - n + 1),
                       to = qm_below(r, size - n + 1);
                memmove(data + to, data + from, n);
            }
            break;
        }
    }
    return size;
}

/* Byte-level cross-over: a prefix of `a` followed by a suffix of `b`. */
static inline size_t qm_byte_crossover(qm_rng *r, const uint8_t *a, size_t na, const uint8_t *b,
                                       size_t nb, uint8_t *out, size_t max_out)
{
    size_t ka = qm_below(r, na + 1), kb = qm_below(r, nb + 1);
    if (ka > max_out)
        ka = max_out;
    if (kb > max_out - ka)
        kb = max_out - ka;
    if (ka)
        memcpy(out, a, ka);
    if (kb)
        memcpy(out + ka, b + nb - kb, kb);
    return ka + kb;
}

/* ---- one format ---- */

typedef struct qm_format {
    const char *name;
    /* Writes a mutation of in[0..size) into out (at most max_size bytes), sets *out_len;
     * returns 0 when `in` cannot be parsed or no mutation fits. */
    int (*mutate)(qm_rng *r, const uint8_t *in, size_t size, uint8_t *out, size_t max_size,
                  size_t *out_len);
    /* Splices structures of a and b into out; returns 0 when either cannot be parsed. */
    int (*crossover)(qm_rng *r, const uint8_t *a, size_t na, const uint8_t *b, size_t nb,
                     uint8_t *out, size_t max_out, size_t *out_len);
} qm_format;

/* The three formats (fuzz/mutator_gguf.c, mutator_llama2c.c, mutator_tokenizer.c), and
 * for the unit test their own framing check: 1 when the mutator's parser reads the whole
 * file (see each file). */
extern const qm_format qm_format_gguf, qm_format_llama2c, qm_format_tokenizer;
int qm_gguf_well_framed(const uint8_t *in, size_t size);
int qm_llama2c_well_framed(const uint8_t *in, size_t size);
int qm_tokenizer_well_framed(const uint8_t *in, size_t size);

/* QORUS_FUZZ_STRUCTURED=0 turns the structure-aware mutation off (read once). */
static inline int qm_structured_enabled(void)
{
    static int state = -1;
    if (state < 0) {
        const char *e = getenv("QORUS_FUZZ_STRUCTURED");
        state = !(e != NULL && strcmp(e, "0") == 0);
    }
    return state;
}

/* Structured mutation with a copy of the input (the engine's buffer is both input and
 * output); returns 0 when the format could not mutate it. */
static inline int qm_mutate_in_place(const qm_format *f, qm_rng *r, uint8_t *data, size_t size,
                                     size_t max_size, size_t *out_len)
{
    uint8_t *copy = malloc(size ? size : 1);
    if (copy == NULL)
        return 0;
    if (size)
        memcpy(copy, data, size);
    int ok = f->mutate(r, copy, size, data, max_size, out_len);
    if (!ok && size)
        memcpy(data, copy, size); /* a failed attempt may have scribbled on `data` */
    free(copy);
    return ok;
}

/* ---- engine glue ---- */

#if defined(QORUS_MUTATOR_LIBFUZZER)
/* libFuzzer calls the custom mutator for every mutation, so one in four keeps libFuzzer's
 * own byte mutations (LLVMFuzzerMutate), and so does every input the format cannot parse. */
#define QM_ENGINE_ENTRY_POINTS(fmt)                                                          \
    size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);                    \
    size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size,              \
                                   unsigned int seed);                                       \
    size_t LLVMFuzzerCustomCrossOver(const uint8_t *d1, size_t s1, const uint8_t *d2,        \
                                     size_t s2, uint8_t *out, size_t max_out,                \
                                     unsigned int seed);                                     \
    size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size,              \
                                   unsigned int seed)                                        \
    {                                                                                        \
        qm_rng r = {seed};                                                                   \
        size_t n;                                                                            \
        if (qm_structured_enabled() && !qm_one_in(&r, 4) &&                                  \
            qm_mutate_in_place(&(fmt), &r, data, size, max_size, &n))                        \
            return n;                                                                        \
        return LLVMFuzzerMutate(data, size, max_size);                                       \
    }                                                                                        \
    size_t LLVMFuzzerCustomCrossOver(const uint8_t *d1, size_t s1, const uint8_t *d2,        \
                                     size_t s2, uint8_t *out, size_t max_out,                \
                                     unsigned int seed)                                      \
    {                                                                                        \
        qm_rng r = {seed};                                                                   \
        size_t n;                                                                            \
        if (qm_structured_enabled() && (fmt).crossover(&r, d1, s1, d2, s2, out, max_out, &n)) \
            return n;                                                                        \
        return qm_byte_crossover(&r, d1, s1, d2, s2, out, max_out);                          \
    }
#elif defined(QORUS_MUTATOR_AFL)
/* AFL++ custom mutator API (docs/custom_mutators.md). It runs besides AFL's own havoc
 * unless AFL_CUSTOM_MUTATOR_ONLY is set; add_buf (another queue entry) feeds the cross-over. */
typedef struct qm_afl_state {
    qm_rng r;
    uint8_t *buf;
    size_t cap;
} qm_afl_state;
#define QM_ENGINE_ENTRY_POINTS(fmt)                                                          \
    void *afl_custom_init(void *afl, unsigned int seed);                                     \
    size_t afl_custom_fuzz(void *data, uint8_t *buf, size_t buf_size, uint8_t **out_buf,     \
                           uint8_t *add_buf, size_t add_buf_size, size_t max_size);          \
    const char *afl_custom_describe(void *data, size_t max_description_len);                 \
    void afl_custom_deinit(void *data);                                                      \
    void *afl_custom_init(void *afl, unsigned int seed)                                      \
    {                                                                                        \
        (void)afl;                                                                           \
        qm_afl_state *s = calloc(1, sizeof *s);                                              \
        if (s != NULL)                                                                       \
            s->r.s = seed;                                                                   \
        return s;                                                                            \
    }                                                                                        \
    size_t afl_custom_fuzz(void *data, uint8_t *buf, size_t buf_size, uint8_t **out_buf,     \
                           uint8_t *add_buf, size_t add_buf_size, size_t max_size)           \
    {                                                                                        \
        qm_afl_state *s = data;                                                              \
        size_t n = 0;                                                                        \
        if (max_size > s->cap) {                                                             \
            uint8_t *b = realloc(s->buf, max_size);                                          \
            if (b == NULL) {                                                                 \
                *out_buf = buf;                                                              \
                return buf_size;                                                             \
            }                                                                                \
            s->buf = b;                                                                      \
            s->cap = max_size;                                                               \
        }                                                                                    \
        *out_buf = s->buf;                                                                   \
        if (add_buf != NULL && qm_one_in(&s->r, 4) &&                                        \
            (fmt).crossover(&s->r, buf, buf_size, add_buf, add_buf_size, s->buf, max_size,  \
                            &n))                                                             \
            return n;                                                                        \
        if ((fmt).mutate(&s->r, buf, buf_size, s->buf, max_size, &n))                        \
            return n;                                                                        \
        n = buf_size < max_size ? buf_size : max_size;                                       \
        memcpy(s->buf, buf, n);                                                              \
        return qm_byte_mutate(&s->r, s->buf, n, max_size);                                   \
    }                                                                                        \
    const char *afl_custom_describe(void *data, size_t max_description_len)                 \
    {                                                                                        \
        (void)data;                                                                          \
        (void)max_description_len;                                                           \
        return "qorus-" #fmt;                                                                \
    }                                                                                        \
    void afl_custom_deinit(void *data)                                                       \
    {                                                                                        \
        qm_afl_state *s = data;                                                              \
        if (s != NULL)                                                                       \
            free(s->buf);                                                                    \
        free(s);                                                                             \
    }
#else
#define QM_ENGINE_ENTRY_POINTS(fmt)
#endif

#endif
