/*
 * Structure-aware mutator of llama2.c checkpoints (the input of fuzz_model_llama2c).
 *
 * Layouts (src/model/llama2c.c): legacy v0 = 7 int32 config (dim, hidden_dim, n_layers,
 * n_heads, n_kv_heads, vocab_size, seq_len; negative vocab = unshared classifier) then
 * float32 weights; ak42 v1/v2 = a 256-byte header (magic, version, the 7 int32, uint8
 * shared_classifier at 36, v2 int32 group_size at 37) then float32 (v1) or int8 + float32
 * group scales (v2) weights. The format has no offsets: the file size is what the config
 * implies, exactly. This file's own parser reads the header and computes that size
 * (lc_weight_bytes), independent of src/model.
 *
 * Mutations (1 to 3 per call):
 *   consistent config change   one of dim, hidden_dim, n_layers, n_heads, n_kv_heads,
 *                               vocab_size, seq_len, the shared flag, group_size gets a new
 *                               value AND the weights are resized to what the new config
 *                               implies (old bytes kept, the rest filled with them again),
 *                               so the file stays well framed. Values: plausible ones (a
 *                               dim that n_heads divides, a divisor of dim for n_heads, a
 *                               group dividing dim and hidden...) or values that matter
 *                               (0, 1, limits +- 1, neighbours' values, huge, negative).
 *   version change              v1 <-> v2 (group size chosen), ak42 <-> legacy, resized
 *   header-only change          a config field, the version, the magic, group_size or a
 *                               padding byte changes and the weights do not (inconsistent)
 *   size                        1..4 bytes appended or cut, or the file cut in half
 *   weights                     NaN, +-Inf, huge, denormal floats in the weights or scales
 * Cross-over: one file's header with the other's weights, resized to the header's config.
 */
#include "mutator_common.h"
#include "qorus_model.h"

#define LC_AK42_MAGIC 0x616b3432u
#define LC_AK42_HEADER 256u
#define LC_LEGACY_HEADER 28u

enum { LC_DIM, LC_HIDDEN, LC_LAYERS, LC_HEADS, LC_KV_HEADS, LC_VOCAB, LC_SEQ };

typedef struct lc_file {
    int ak42;            /* versioned header */
    uint8_t header[LC_AK42_HEADER]; /* ak42: the raw header (padding kept) */
    uint32_t version;    /* 0 legacy, else the ak42 field */
    int32_t cfg[7];
    uint8_t shared;      /* ak42 byte 36 */
    int32_t group;       /* ak42 v2, bytes 37..40 */
    const uint8_t *w;    /* the weights (everything after the header) */
    size_t w_len;
} lc_file;

static int lc_parse(const uint8_t *in, size_t size, lc_file *f)
{
    memset(f, 0, sizeof *f);
    if (size >= 4 && qm_rd32(in) == LC_AK42_MAGIC) {
        if (size < LC_AK42_HEADER)
            return 0;
        f->ak42 = 1;
        memcpy(f->header, in, LC_AK42_HEADER);
        f->version = qm_rd32(in + 4);
        for (int i = 0; i < 7; i++)
            f->cfg[i] = (int32_t)qm_rd32(in + 8 + 4 * i);
        f->shared = in[36];
        f->group = (int32_t)qm_rd32(in + 37);
        f->w = in + LC_AK42_HEADER;
        f->w_len = size - LC_AK42_HEADER;
        return 1;
    }
    if (size < LC_LEGACY_HEADER)
        return 0;
    for (int i = 0; i < 7; i++)
        f->cfg[i] = (int32_t)qm_rd32(in + 4 * i);
    f->w = in + LC_LEGACY_HEADER;
    f->w_len = size - LC_LEGACY_HEADER;
    return 1;
}

static void lc_write(const lc_file *f, qm_out *o)
{
    if (f->ak42) {
        uint8_t h[LC_AK42_HEADER];
        memcpy(h, f->header, sizeof h);
        qm_wr32(h, LC_AK42_MAGIC);
        qm_wr32(h + 4, f->version);
        for (int i = 0; i < 7; i++)
            qm_wr32(h + 8 + 4 * i, (uint32_t)f->cfg[i]);
        h[36] = f->shared;
        if (f->version == 2)
            qm_wr32(h + 37, (uint32_t)f->group);
        qm_put(o, h, sizeof h);
    } else {
        for (int i = 0; i < 7; i++)
            qm_put32(o, (uint32_t)f->cfg[i]);
    }
    qm_put(o, f->w, f->w_len);
}

/* acc += a * b * c (element counts), saturating to "no" on overflow. */
static int lc_acc(uint64_t *acc, uint64_t a, uint64_t b, uint64_t c)
{
    uint64_t p;
    if (__builtin_mul_overflow(a, b, &p) || __builtin_mul_overflow(p, c, &p) ||
        __builtin_add_overflow(*acc, p, acc))
        return 0;
    return 1;
}

/* The weight bytes the config implies, in *bytes; 0 when it implies none (a field out of
 * range for the arithmetic: non-positive, n_heads not dividing, overflow). */
static int lc_weight_bytes(const lc_file *f, uint64_t *bytes)
{
    const int32_t *c = f->cfg;
    for (int i = 0; i < 7; i++)
        if (i != LC_VOCAB && c[i] <= 0)
            return 0;
    if (c[LC_VOCAB] == 0 || c[LC_VOCAB] == INT32_MIN || (f->ak42 && c[LC_VOCAB] < 0))
        return 0;
    uint64_t d = (uint64_t)c[LC_DIM], h = (uint64_t)c[LC_HIDDEN], L = (uint64_t)c[LC_LAYERS];
    uint64_t hs = d / (uint64_t)c[LC_HEADS], kv = (uint64_t)c[LC_KV_HEADS] * hs;
    uint64_t vocab = (uint64_t)(c[LC_VOCAB] < 0 ? -(int64_t)c[LC_VOCAB] : c[LC_VOCAB]);
    int shared = f->ak42 ? f->shared != 0 : c[LC_VOCAB] > 0;
    uint64_t norms = 0, mats = 0;
    int ok = lc_acc(&norms, 2, L, d) && lc_acc(&norms, 1, 1, d) && lc_acc(&mats, vocab, d, 1) &&
             lc_acc(&mats, L, d, d) && lc_acc(&mats, 2 * L, kv, d) && lc_acc(&mats, L, d, d) &&
             lc_acc(&mats, 3 * L, h, d) && (shared || lc_acc(&mats, vocab, d, 1));
    if (!ok)
        return 0;
    uint64_t total = 0;
    if (!f->ak42) { /* legacy: everything float32, plus freq_cis real and imag */
        if (!lc_acc(&total, 4, norms + mats, 1) ||
            !lc_acc(&total, 4, 2, (uint64_t)c[LC_SEQ] * hs / 2))
            return 0;
    } else if (f->version == 2) {
        if (f->group <= 0)
            return 0;
        /* per matrix: n int8 + n / group float32 scales; matrices are whole groups when
         * the group divides dim and hidden, so the sum of the quotients is close enough */
        if (!lc_acc(&total, 4, norms, 1) || !lc_acc(&total, mats, 1, 1) ||
            !lc_acc(&total, 4, mats / (uint64_t)f->group, 1))
            return 0;
    } else {
        if (!lc_acc(&total, 4, norms + mats, 1))
            return 0;
    }
    *bytes = total;
    return 1;
}

/* Resizes the weights to what the config implies; 0 if that is not computable or does not
 * fit in max_size. */
static int lc_resize(qm_pool *pool, lc_file *f, size_t max_size)
{
    uint64_t want;
    size_t header = f->ak42 ? LC_AK42_HEADER : LC_LEGACY_HEADER;
    if (!lc_weight_bytes(f, &want) || want > max_size || header > max_size - want)
        return 0;
    if (want == f->w_len)
        return 1;
    uint8_t *w = qm_alloc(pool, (size_t)want);
    if (w == NULL)
        return 0;
    qm_fill_cyclic(w, (size_t)want, f->w, f->w_len);
    f->w = w;
    f->w_len = (size_t)want;
    return 1;
}

/* A divisor of n (n > 0) chosen at random among the first few (below 256) and n itself;
 * bounded work whatever n is. */
static uint64_t lc_divisor(qm_rng *r, uint64_t n)
{
    uint64_t divs[17];
    size_t k = 0;
    for (uint64_t d = 1; d <= n && d < 256 && k < 16; d++)
        if (n % d == 0)
            divs[k++] = d;
    divs[k++] = n;
    return divs[qm_below(r, k)];
}

static uint64_t lc_gcd(uint64_t a, uint64_t b)
{
    while (b) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* A new value of config field k: plausible (keeps the file acceptable) half the time. */
static int32_t lc_pick_field(qm_rng *r, const lc_file *f, int k)
{
    static const uint64_t limits[7] = {Q_MAX_DIM, Q_MAX_HIDDEN_DIM, Q_MAX_LAYERS, Q_MAX_HEADS,
                                       Q_MAX_HEADS, Q_MAX_VOCAB, Q_MAX_SEQ_LEN};
    const int32_t *c = f->cfg;
    uint64_t old = (uint64_t)(int64_t)c[k];
    if (qm_one_in(r, 2)) {
        uint64_t heads = c[LC_HEADS] > 0 ? (uint64_t)c[LC_HEADS] : 1;
        uint64_t dim = c[LC_DIM] > 0 ? (uint64_t)c[LC_DIM] : 8;
        switch (k) {
        case LC_DIM: return (int32_t)(heads * 2 * (1 + qm_below(r, 8)));
        case LC_HEADS: return (int32_t)lc_divisor(r, dim);
        case LC_KV_HEADS: return (int32_t)lc_divisor(r, heads);
        case LC_VOCAB: {
            int64_t v = (int64_t)(1 + qm_below(r, 40));
            return (int32_t)(c[LC_VOCAB] < 0 && !f->ak42 ? -v : v);
        }
        default: {
            int64_t v = (int64_t)old + (int64_t)qm_below(r, 5) - 2;
            return (int32_t)(v >= 1 && v <= 64 ? v : 1 + (int64_t)qm_below(r, 8));
        }
        }
    }
    uint64_t nb[7];
    for (int i = 0; i < 7; i++)
        nb[i] = (uint64_t)(int64_t)c[i];
    return (int32_t)qm_pick_int(r, old, limits[k], nb, 7);
}

static int lc_mutate_once(qm_rng *r, qm_pool *pool, lc_file *f, size_t max_size)
{
    switch (qm_below(r, 10)) {
    case 0:
    case 1:
    case 2:
    case 3: { /* consistent: a config field and the weights together */
        lc_file g = *f;
        int k = (int)qm_below(r, 9);
        if (k < 7) {
            g.cfg[k] = lc_pick_field(r, f, k);
        } else if (k == 7) { /* shared flag */
            if (f->ak42)
                g.shared = qm_one_in(r, 4) ? (uint8_t)qm_next(r) : (uint8_t)!f->shared;
            else if (g.cfg[LC_VOCAB] != INT32_MIN)
                g.cfg[LC_VOCAB] = -g.cfg[LC_VOCAB];
        } else { /* group size */
            if (!f->ak42 || f->version != 2)
                return 0;
            uint64_t both = lc_gcd(f->cfg[LC_DIM] > 0 ? (uint64_t)f->cfg[LC_DIM] : 1,
                                   f->cfg[LC_HIDDEN] > 0 ? (uint64_t)f->cfg[LC_HIDDEN] : 1);
            uint64_t nb[] = {(uint64_t)f->cfg[LC_DIM], (uint64_t)f->cfg[LC_HIDDEN], both};
            g.group = qm_one_in(r, 2) ? (int32_t)lc_divisor(r, both)
                                      : (int32_t)qm_pick_int(r, (uint64_t)(int64_t)f->group,
                                                             Q_MAX_GROUP_SIZE, nb, 3);
        }
        if (!lc_resize(pool, &g, max_size))
            return 0;
        *f = g;
        return 1;
    }
    case 4: { /* version change, resized */
        lc_file g = *f;
        if (!f->ak42) {
            g.ak42 = 1;
            memset(g.header, 0, sizeof g.header);
            g.version = 1;
            g.shared = f->cfg[LC_VOCAB] > 0;
            if (g.cfg[LC_VOCAB] < 0 && g.cfg[LC_VOCAB] != INT32_MIN)
                g.cfg[LC_VOCAB] = -g.cfg[LC_VOCAB];
        } else if (qm_one_in(r, 3)) {
            g.ak42 = 0;
            g.version = 0;
            if (!f->shared && g.cfg[LC_VOCAB] > 0)
                g.cfg[LC_VOCAB] = -g.cfg[LC_VOCAB];
        } else {
            g.version = f->version == 2 ? 1 : 2;
            if (g.version == 2) {
                uint64_t both = lc_gcd(f->cfg[LC_DIM] > 0 ? (uint64_t)f->cfg[LC_DIM] : 1,
                                       f->cfg[LC_HIDDEN] > 0 ? (uint64_t)f->cfg[LC_HIDDEN] : 1);
                g.group = (int32_t)lc_divisor(r, both);
            } else {
                g.group = 0;
                memset(g.header + 37, 0, 4);
            }
        }
        if (!lc_resize(pool, &g, max_size))
            return 0;
        *f = g;
        return 1;
    }
    case 5: { /* header only: the config no longer describes the bytes */
        int k = (int)qm_below(r, 7);
        f->cfg[k] = lc_pick_field(r, f, k);
        return 1;
    }
    case 6: /* other header fields */
        if (!f->ak42)
            return 0;
        switch (qm_below(r, 4)) {
        case 0: {
            uint64_t nb[] = {1, 2, 3};
            f->version = (uint32_t)qm_pick_int(r, f->version, 2, nb, 3);
            break;
        }
        case 1: {
            uint64_t nb[] = {(uint64_t)f->cfg[LC_DIM], (uint64_t)f->cfg[LC_HIDDEN]};
            f->group = (int32_t)qm_pick_int(r, (uint64_t)(int64_t)f->group, Q_MAX_GROUP_SIZE,
                                            nb, 2);
            f->version = 2;
            break;
        }
        case 2:
            f->header[41 + qm_below(r, LC_AK42_HEADER - 41)] = (uint8_t)qm_next(r);
            break;
        default:
            f->shared = (uint8_t)qm_pick_int(r, f->shared, 1, NULL, 0);
            break;
        }
        return 1;
    case 7: { /* size: a few bytes more or fewer, or half */
        size_t k = 1 + qm_below(r, 4);
        if (qm_one_in(r, 3)) {
            f->w_len /= 2;
        } else if (qm_one_in(r, 2)) {
            f->w_len = f->w_len > k ? f->w_len - k : 0;
        } else {
            uint8_t *w = qm_alloc(pool, f->w_len + k);
            if (w == NULL)
                return 0;
            memcpy(w, f->w, f->w_len);
            f->w = w;
            f->w_len += k;
        }
        return 1;
    }
    default: { /* special floats in the weights (float32 everywhere but v2 int8 blocks) */
        if (f->w_len < 4)
            return 0;
        uint8_t *w = qm_dup(pool, f->w, f->w_len);
        if (w == NULL)
            return 0;
        size_t n = 1 + qm_below(r, 4);
        for (size_t i = 0; i < n; i++) {
            size_t at = qm_below(r, f->w_len / 4) * 4;
            qm_wr32(w + at, qm_pick_f32_bits(r, qm_rd32(w + at)));
        }
        f->w = w;
        return 1;
    }
    }
}

static int lc_mutate(qm_rng *r, const uint8_t *in, size_t size, uint8_t *out, size_t max_size,
                     size_t *out_len)
{
    qm_pool pool = {0};
    lc_file f;
    int ok = 0;
    if (lc_parse(in, size, &f)) {
        size_t want = 1 + qm_below(r, 3), done = 0;
        /* mostly one change on a well-framed file: stacking breaks would rarely parse */
        if (qm_below(r, 4) != 0)
            want = 1;
        for (int attempt = 0; attempt < 16 && done < want && !pool.failed; attempt++)
            done += (size_t)lc_mutate_once(r, &pool, &f, max_size);
        qm_out o = {out, 0, max_size, 0};
        lc_write(&f, &o);
        ok = done > 0 && !o.overflow && !pool.failed;
        *out_len = o.len;
    }
    qm_pool_free(&pool);
    return ok;
}

static int lc_crossover(qm_rng *r, const uint8_t *a, size_t na, const uint8_t *b, size_t nb,
                        uint8_t *out, size_t max_out, size_t *out_len)
{
    qm_pool pool = {0};
    lc_file fa, fb;
    int ok = 0;
    if (lc_parse(a, na, &fa) && lc_parse(b, nb, &fb)) {
        if (qm_one_in(r, 2)) { /* a's header, b's weights */
            fa.w = fb.w;
            fa.w_len = fb.w_len;
        } else { /* b's config on a's header kind and weights */
            memcpy(fa.cfg, fb.cfg, sizeof fa.cfg);
            if (fa.ak42 && fa.cfg[LC_VOCAB] < 0 && fa.cfg[LC_VOCAB] != INT32_MIN)
                fa.cfg[LC_VOCAB] = -fa.cfg[LC_VOCAB];
        }
        (void)lc_resize(&pool, &fa, max_out); /* unresizable: keep the bytes as they are */
        qm_out o = {out, 0, max_out, 0};
        lc_write(&fa, &o);
        ok = !o.overflow && !pool.failed;
        *out_len = o.len;
    }
    qm_pool_free(&pool);
    return ok;
}

const qm_format qm_format_llama2c = {"llama2c", lc_mutate, lc_crossover};

/* For the unit test: 1 when the header is complete and the file holds exactly the weight
 * bytes its config implies. */
int qm_llama2c_well_framed(const uint8_t *in, size_t size)
{
    lc_file f;
    uint64_t want;
    return lc_parse(in, size, &f) && lc_weight_bytes(&f, &want) && want == f.w_len;
}

QM_ENGINE_ENTRY_POINTS(qm_format_llama2c)
