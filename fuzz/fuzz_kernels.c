/*
 * fuzz_kernels: differential fuzzing of every optimized kernel table against the scalar
 * reference (qorus_kernels.h), plus determinism and bounds checks inside each table.
 *
 * Each input runs one kernel on a drawn shape with drawn values, in the reference table and
 * in EVERY optimized table this CPU runs (q_kernels_optimized: avx512, avx2; each checked
 * against the reference on its own), on copies of the same inputs. Checking them all on
 * every input, rather than letting the input pick one, keeps the input format of the
 * single-table target (the corpus decodes exactly as before) and makes each input, and
 * each corpus replay, cover every table; the reference runs once per input. Checks that
 * need only one table still run when the CPU has no optimized table. What is checked
 * (docs/kernels.md derives the bounds, which hold for every table: none is per table):
 *
 *   quantize_q8   q bytes and d floats memcmp-identical, for every input;
 *   matmul        F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K and Q8_SPLIT (group sizes 32, 64,
 *                 multiples of 32, odd),
 *                 float and integer (quantized activation) paths:
 *                 - "exact" values (small integers, power-of-two scales: every sum exact in
 *                   any order) give memcmp-identical outputs, so the integer block sums are
 *                   checked exactly, the full int8 range (-128 in the weights) included;
 *                 - otherwise |ref - opt| <= (2n + 32) u S + floor, S = sum of |products|
 *                   (and of the unscaled block sums), u = 2^-24, when no input it reads is
 *                   NaN or infinite and S <= FLT_MAX / 8 (no overflow in any order); NaN in
 *                   an input it reads gives NaN in both; infinities are not compared (one
 *                   bound for the 8-lane AVX2 and the 16-lane AVX-512 summation orders);
 *                 - determinism within each table, bits equal (a NaN equals any NaN: IEEE
 *                   754 leaves which NaN comes out of an operation with several NaN
 *                   operands to the operand order, and gcc commutes FMA operands
 *                   differently in different tiles; no comparison tells NaNs apart, so
 *                   nothing downstream can): all rows at once = rows split at a drawn point
 *                   = one token at a time; a drawn sub-range [a, b) writes exactly its rows
 *                   (the rest of the output keeps its fill pattern);
 *   rmsnorm, softmax, swiglu, attention: NaN exactly where the reference has NaN, other
 *                 values within the relative bounds of docs/kernels.md (infinities compared
 *                 as +-2^128, an absolute floor for subnormal results);
 *   rope, rope_neox  bitwise identical to the reference (NaN payloads aside);
 *   every kernel  output bits independent of the buffers' alignment (run twice at different
 *                 offsets); inputs not written; nothing read or written outside the buffers:
 *                 each buffer ends exactly at the end of its heap block, its unaligned head
 *                 offset is poisoned (ASan), and outputs start uninitialized (MSan).
 *
 * A mismatch prints the kernel, the table, the shape, the index and both values, then traps.
 *
 * Input layout: parameters from the tail (fuzz_producer, one byte each unless said): kernel
 * (0..6: quantize_q8, matmul, rmsnorm, softmax, swiglu, rope, attention), value mode (0 raw
 * bits, 1 moderate, 2 moderate with special values, 3 exact small integers), a 4-byte PRNG
 * seed, then the kernel's shape and buffer offsets (see each run_* function, in draw order;
 * fuzz/make_seeds.py writes them). The head is the value bytes, continued by the PRNG once
 * exhausted.
 */
#include <float.h>
#include <math.h>

#include "fuzz_helpers.h"
#include "qorus_infer.h"
#include "qorus_kernels.h"

#define U 0x1p-24                /* unit roundoff of float */
#define EXP_E (4.0 * U)          /* |polynomial exp - libm expf| / expf, docs/kernels.md */
#define SAFE_MAX (FLT_MAX / 8.0) /* sums below this cannot overflow in any order */
#define WORK_CAP ((size_t)1 << 16)

enum { M_RAW, M_MODERATE, M_SPECIAL, M_EXACT, M_COUNT };

/* ---- value source: the input's head, then a PRNG ---- */

typedef struct vsrc {
    const uint8_t *p;
    size_t n, pos;
    uint64_t rng;
    int mode;
} vsrc;

static uint8_t vs_byte(vsrc *v)
{
    if (v->pos < v->n)
        return v->p[v->pos++];
    v->rng ^= v->rng << 13; /* xorshift64 */
    v->rng ^= v->rng >> 7;
    v->rng ^= v->rng << 17;
    return (uint8_t)(v->rng >> 56);
}

static uint32_t vs_u32(vsrc *v)
{
    uint32_t r = 0;
    for (unsigned i = 0; i < 4; i++)
        r |= (uint32_t)vs_byte(v) << (8 * i);
    return r;
}

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* a value below 2^e in magnitude, multiple of 2^(e-15) */
static float vs_moderate(vsrc *v, int e)
{
    uint16_t k = (uint16_t)(vs_byte(v) | (vs_byte(v) << 8));
    int16_t s;
    memcpy(&s, &k, sizeof s);
    return ldexpf((float)s, e - 15);
}

static const float specials[] = {
    0.0f, -0.0f, INFINITY, -INFINITY, NAN, -NAN, FLT_MIN, -FLT_MIN, 0x1p-149f, -0x1p-149f,
    1e-40f, FLT_MAX, -FLT_MAX, 88.7228317f, 88.7228394f, -103.972076f, -103.972084f, 89.0f,
    -89.0f, 1e30f, -1e30f, 0.5f, -0.5f, 1.5f, 65504.0f, 1e-20f, 127.0f, -127.0f, 2.5f, -2.5f,
    20.0f, -20.0f,
};

/* One float of the buffer's kind: exponent e for moderate values. */
static float vs_float(vsrc *v, int e)
{
    switch (v->mode) {
    case M_RAW:
        return bits_f32(vs_u32(v));
    case M_SPECIAL: {
        uint8_t b = vs_byte(v);
        if ((b & 3) == 0)
            return specials[(size_t)(b >> 2) % (sizeof specials / sizeof specials[0])];
        return vs_moderate(v, e);
    }
    case M_EXACT:
        return (float)((int)(vs_byte(v) % 33) - 16);
    default:
        return vs_moderate(v, e);
    }
}

static void fill_f32(float *dst, size_t n, vsrc *v)
{
    int e = (int)(vs_byte(v) % 7) - 3; /* moderate values below 2^-3 .. 2^3 */
    for (size_t i = 0; i < n; i++)
        dst[i] = vs_float(v, e);
}

/* ---- buffers: exact-size heap blocks, unaligned start (head poisoned) ---- */

typedef struct buf {
    unsigned char *base;
    size_t off;
} buf;

static void *buf_new(buf *b, size_t bytes, size_t off)
{
    void *p = NULL;
    size_t total = off + bytes;
    if (posix_memalign(&p, 64, total != 0 ? total : 1) != 0 || p == NULL) {
        fprintf(stderr, "fuzz_kernels: out of memory\n");
        abort();
    }
    b->base = (unsigned char *)p;
    b->off = off;
#ifdef FUZZ_HAVE_ASAN
    __asan_poison_memory_region(b->base, off);
#endif
    return b->base + off;
}

static void buf_free(buf *b)
{
    if (b->base == NULL)
        return;
#ifdef FUZZ_HAVE_ASAN
    __asan_unpoison_memory_region(b->base, b->off);
#endif
    free(b->base);
    b->base = NULL;
}

/* a copy of n floats in a new buffer at float offset off4 (0..15) */
static float *copy_f32(buf *b, const float *src, size_t n, size_t off4)
{
    float *p = (float *)buf_new(b, n * sizeof(float), off4 * sizeof(float));
    if (n != 0)
        memcpy(p, src, n * sizeof(float));
    return p;
}

/* ---- reporting ---- */

static char shape[256];
static const char *opt_name = "optimized"; /* the table being run or compared, for messages */

static void fail(const char *kernel, const char *what, size_t idx, float r, float g, double tol)
{
    fprintf(stderr,
            "fuzz_kernels: %s: %s at index %zu: reference %a (%.9g), %s %a (%.9g), "
            "tolerance %.4g; %s\n",
            kernel, what, idx, (double)r, (double)r, opt_name, (double)g, (double)g, tol, shape);
    __builtin_trap();
}

/* infinities as +-2^128 (the first value past FLT_MAX's rounding boundary) */
static double widen(float f)
{
    if (isinf(f))
        return f > 0 ? 0x1p128 : -0x1p128;
    return (double)f;
}

/* NaN in both or neither; otherwise |r - g| <= rel * max(|r|, |g|) + abs_tol */
static void check_close(const char *kernel, size_t idx, float r, float g, double rel,
                        double abs_tol)
{
    if (isnan(r) || isnan(g)) {
        if (!(isnan(r) && isnan(g)))
            fail(kernel, "NaN mismatch", idx, r, g, 0.0);
        return;
    }
    if (isinf(rel) || isnan(rel) || isinf(abs_tol) || isnan(abs_tol))
        return; /* no bound (its inputs made it infinite): NaN-ness only */
    double dr = widen(r), dg = widen(g);
    double m = fmax(fabs(dr), fabs(dg));
    double tol = (m != 0.0 ? rel * m : 0.0) + abs_tol;
    if (!(fabs(dr - dg) <= tol))
        fail(kernel, "value out of bound", idx, r, g, tol);
}

static void check_nan_class(const char *kernel, size_t idx, float r, float g)
{
    if (isnan(r) != isnan(g))
        fail(kernel, "NaN mismatch", idx, r, g, 0.0);
}

/* bits equal, or both NaN */
static void check_same(const char *kernel, const char *what, const float *a, const float *b,
                       size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0 && !(isnan(a[i]) && isnan(b[i])))
            fail(kernel, what, i, a[i], b[i], 0.0);
}

static void check_bits(const char *kernel, const char *what, const void *a, const void *b,
                       size_t bytes)
{
    if (bytes != 0 && memcmp(a, b, bytes) != 0) {
        const unsigned char *x = (const unsigned char *)a, *y = (const unsigned char *)b;
        size_t i = 0;
        while (x[i] == y[i])
            i++;
        fprintf(stderr, "fuzz_kernels: %s: %s: byte %zu differs (%02x vs %02x); table %s; %s\n",
                kernel, what, i, x[i], y[i], opt_name, shape);
        __builtin_trap();
    }
}

/* The tables of one input: tab[0] the reference, tab[1 .. n_tab) every optimized table this
 * CPU runs (q_kernels_optimized, best first). */
#define MAX_OPT 4
#define N_TAB (1 + MAX_OPT)

typedef struct ctx {
    fuzz_producer fp;
    vsrc vs;
    const q_kernels *ref;
    const q_kernels *tab[N_TAB];
    size_t n_tab;
} ctx;

/* The element-wise kernels run in "slots": slot 0 is the reference, slots 2j-1 and 2j run
 * optimized table j (j >= 1) twice, on buffers at two drawn offsets (the first at the
 * reference's offset), so each table's result is checked for independence from alignment. */
#define N_SLOT (1 + 2 * MAX_OPT)

static size_t n_slots(const ctx *c)
{
    return 2 * c->n_tab - 1;
}

static const q_kernels *slot_table(const ctx *c, size_t s)
{
    return c->tab[(s + 1) / 2];
}

static size_t draw(ctx *c, size_t lo, size_t hi)
{
    return fuzz_producer_size(&c->fp, lo, hi);
}

/* Called once every parameter is drawn: the rest of the input becomes the value bytes. */
static void start_values(ctx *c)
{
    size_t len;
    c->vs.p = fuzz_producer_payload(&c->fp, &len);
    c->vs.n = len;
    c->vs.pos = 0;
}

/* ======================================================================================
 * quantize_q8. Draws: blocks (1..64), offset of x (float units, 0..15), of q (bytes,
 * 0..63), of d (0..15).
 * ====================================================================================== */

static void run_quantize(ctx *c)
{
    size_t nb = draw(c, 1, 64), ox = draw(c, 0, 15), oq = draw(c, 0, 63), od = draw(c, 0, 15);
    start_values(c);
    size_t n = nb * Q_QBLOCK;
    snprintf(shape, sizeof shape, "n=%zu offsets x=%zu q=%zu d=%zu mode=%d", n, ox, oq, od,
             c->vs.mode);
    buf bx = {0}, bq[N_TAB] = {{0}}, bd[N_TAB] = {{0}}, bkeep = {0};
    float *x = (float *)buf_new(&bx, n * sizeof(float), ox * 4);
    fill_f32(x, n, &c->vs);
    if (c->vs.mode == M_EXACT) {
        /* halves with a block maximum of 127 or 63.5: x * (1/d) lands on ties */
        for (size_t i = 0; i < n; i++)
            x[i] = x[i] * 4.0f + 0.5f;
        for (size_t b = 0; b < nb; b++)
            x[b * Q_QBLOCK + (b % Q_QBLOCK)] = (b & 1) ? 127.0f : -63.5f;
    }
    float *keep = copy_f32(&bkeep, x, n, 0);
    int8_t *q[N_TAB] = {NULL};
    float *d[N_TAB] = {NULL};
    for (size_t k = 0; k < c->n_tab; k++) {
        opt_name = c->tab[k]->name;
        q[k] = (int8_t *)buf_new(&bq[k], n, oq);
        d[k] = (float *)buf_new(&bd[k], nb * sizeof(float), od * 4);
        c->tab[k]->quantize_q8(q[k], d[k], x, n);
        check_bits("quantize_q8", "input modified", keep, x, n * sizeof(float));
    }
    for (size_t i = 0; i < n; i++) /* every q in [-127, 127] (MSan: every byte written) */
        if (q[0][i] < -127)
            fail("quantize_q8", "q out of range", i, (float)q[0][i], 0.0f, 0.0);
    for (size_t k = 1; k < c->n_tab; k++) { /* bitwise identical in every table */
        opt_name = c->tab[k]->name;
        check_bits("quantize_q8", "q bytes", q[0], q[k], n);
        check_bits("quantize_q8", "d bits", d[0], d[k], nb * sizeof(float));
    }
    for (size_t k = 0; k < N_TAB; k++) {
        buf_free(&bq[k]);
        buf_free(&bd[k]);
    }
    buf_free(&bx);
    buf_free(&bkeep);
}

/* ======================================================================================
 * matmul. Draws: type (0 F32, 1 F16, 2 Q8_0, 3 Q8_SPLIT, 4 BF16, 5 Q4_0, 6 Q6_K, 7 Q4_K,
 * 8 Q5_K), cols class (0: 32k, 1: 1..64,
 * 2: 1..2048 (2 bytes)), cols value (1 byte, or 2 for class 2), Q8_SPLIT group class
 * (0: 32, 1: 64, 2: 32k, 3: odd, 4: 1..200), group value, rows (1..64), tokens (1..8),
 * stride extra (0..3), activation form (0 float, 1 quantized by the reference, 2 drawn int8),
 * split row (0..rows), sub-range a, b, offsets of weights, scales (bytes, 0..63), x (0..15),
 * xq (0..63), xd (0..15), out (0..15).
 * ====================================================================================== */

static size_t gcd_size(size_t a, size_t b)
{
    while (b != 0) {
        size_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* binary16 bits of a value by mode */
static uint16_t vs_f16(vsrc *v, int exact_exp)
{
    switch (v->mode) {
    case M_RAW:
        return (uint16_t)(vs_byte(v) | (vs_byte(v) << 8));
    case M_EXACT:
        return (uint16_t)((15 + exact_exp) << 10); /* 2^exact_exp */
    default: {
        uint16_t sign = (uint16_t)((vs_byte(v) & 1) << 15);
        uint16_t e = (uint16_t)(5 + vs_byte(v) % 11); /* 2^-10 .. 2^0 */
        uint16_t m = (uint16_t)((vs_byte(v) | (vs_byte(v) << 8)) & 0x3ff);
        return (uint16_t)(sign | (e << 10) | m);
    }
    }
}

/* small-integer binary16 (|v| <= 2048 is exact) */
static uint16_t f16_of_int(int v)
{
    if (v == 0)
        return 0;
    uint16_t sign = v < 0 ? 0x8000u : 0;
    unsigned a = (unsigned)(v < 0 ? -v : v);
    unsigned e = 0;
    while ((a >> e) > 1)
        e++;
    unsigned mant = (a << (10 - e)) & 0x3ffu;
    return (uint16_t)(sign | ((e + 15) << 10) | mant);
}

static float act_scale(vsrc *v, int exact_exp)
{
    switch (v->mode) {
    case M_RAW:
        return bits_f32(vs_u32(v));
    case M_EXACT:
        return ldexpf(1.0f, exact_exp);
    case M_SPECIAL: {
        uint8_t b = vs_byte(v);
        if ((b & 7) == 0)
            return specials[(size_t)(b >> 3) % (sizeof specials / sizeof specials[0])];
        return ldexpf(1.0f + (float)(b >> 3) / 32.0f, -(int)(vs_byte(v) % 8));
    }
    default:
        return ldexpf(1.0f + (float)vs_byte(v) / 256.0f, -(int)(vs_byte(v) % 8));
    }
}

typedef struct mm_case {
    q_tensor w;
    q_act x;
    size_t stride, out_len, rows, cols, nb;
    int use_int;
} mm_case;

/* The min part of a Q4_K / Q5_K weight (i, j): returns the 6-bit min m of its sub-block,
 * *scale = dmin (the weight is code * d - m * dmin); 0 and 0.0 for the other types. */
static int mm_kmin(const q_tensor *w, size_t i, size_t j, double *scale)
{
    *scale = 0.0;
    if (w->type != Q_TENSOR_Q4_K && w->type != Q_TENSOR_Q5_K)
        return 0;
    size_t n = w->cols, bb = w->type == Q_TENSOR_Q5_K ? 176 : 144;
    const unsigned char *blk = (const unsigned char *)w->data + (i * (n / 256) + j / 256) * bb;
    size_t sub = j % 256 / 32;
    unsigned m = sub < 4 ? blk[8 + sub] & 63u
                         : (unsigned)(blk[8 + sub] >> 4) | (unsigned)(blk[4 + sub] >> 6) << 4;
    *scale = q_f16_to_f32((uint16_t)(blk[2] | (blk[3] << 8)));
    return (int)m;
}

/* dequantized weight (i, j) as double, its int8 code (Q8 types) and its scale */
static double mm_weight(const q_tensor *w, size_t i, size_t j, int *code, double *scale)
{
    const unsigned char *base = (const unsigned char *)w->data;
    size_t n = w->cols;
    *code = 0;
    *scale = 1.0;
    switch (w->type) {
    case Q_TENSOR_F32: {
        float f;
        memcpy(&f, base + (i * n + j) * 4, 4);
        return f;
    }
    case Q_TENSOR_F16:
        return q_f16_to_f32((uint16_t)(base[(i * n + j) * 2] | (base[(i * n + j) * 2 + 1] << 8)));
    case Q_TENSOR_BF16:
        return q_bf16_to_f32((uint16_t)(base[(i * n + j) * 2] | (base[(i * n + j) * 2 + 1] << 8)));
    case Q_TENSOR_Q8_0: {
        const unsigned char *blk = base + i * (n / 32) * 34 + (j / 32) * 34;
        *scale = q_f16_to_f32((uint16_t)(blk[0] | (blk[1] << 8)));
        *code = (int8_t)blk[2 + j % 32];
        return *code * *scale;
    }
    case Q_TENSOR_Q4_0: {
        const unsigned char *blk = base + i * (n / 32) * 18 + (j / 32) * 18;
        unsigned char b = blk[2 + j % 16];
        *scale = q_f16_to_f32((uint16_t)(blk[0] | (blk[1] << 8)));
        *code = (j % 32 < 16 ? b & 15 : b >> 4) - 8;
        return *code * *scale;
    }
    case Q_TENSOR_Q6_K: { /* code: the integer scale * (6-bit code - 32); scale: d */
        const unsigned char *blk = base + (i * (n / 256) + j / 256) * 210;
        size_t jj = j % 256, h = jj / 128, q = jj % 128 / 32, l = jj % 32;
        unsigned lo = blk[64 * h + 32 * (q % 2) + l];
        lo = q < 2 ? lo & 15u : lo >> 4;
        int c6 = (int)(lo | ((blk[128 + 32 * h + l] >> (2 * q)) & 3u) << 4) - 32;
        *scale = q_f16_to_f32((uint16_t)(blk[208] | (blk[209] << 8)));
        *code = (int8_t)blk[192 + jj / 16] * c6;
        return *code * *scale;
    }
    case Q_TENSOR_Q4_K:
    case Q_TENSOR_Q5_K: { /* code: the integer scale * code; scale: d (the min: mm_kmin) */
        int q5 = w->type == Q_TENSOR_Q5_K;
        const unsigned char *blk = base + (i * (n / 256) + j / 256) * (q5 ? 176 : 144);
        size_t jj = j % 256, sub = jj / 32, l = jj % 32;
        unsigned sc = sub < 4 ? blk[4 + sub] & 63u
                              : (blk[8 + sub] & 15u) | (unsigned)(blk[sub] >> 6) << 4;
        unsigned byte = blk[(q5 ? 48 : 16) + 32 * (sub / 2) + l];
        unsigned cd = (sub % 2 == 0 ? byte & 15u : byte >> 4) |
                      (q5 ? ((blk[16 + l] >> sub) & 1u) << 4 : 0u);
        double mscale;
        int mcode = mm_kmin(w, i, j, &mscale);
        *scale = q_f16_to_f32((uint16_t)(blk[0] | (blk[1] << 8)));
        *code = (int)(sc * cd);
        return *code * *scale - mcode * mscale;
    }
    case Q_TENSOR_Q8_SPLIT: {
        float s;
        memcpy(&s, (const unsigned char *)w->scales + (i * n + j) / w->group_size * 4, 4);
        *scale = s;
        *code = (int8_t)base[i * n + j];
        return *code * *scale;
    }
    }
    return 0.0;
}

/* The reference's output (t, i) against the optimized one, as the header describes. */
static void mm_check_elem(const mm_case *m, size_t t, size_t i, float r, float g, int exact)
{
    size_t idx = t * m->stride + i;
    if (exact) { /* every sum exact: equal values (a zero's sign may differ) */
        if (!(r == g))
            fail("matmul", "exact sum differs", idx, r, g, 0.0);
        return;
    }
    size_t n = m->cols;
    int has_nan = 0, has_inf = 0;
    double S = 0.0, Sblock = 0.0, M = 1.0, isum_abs = 0.0;
    if (m->use_int) {
        for (size_t b = 0; b < m->nb; b++) {
            int code;
            double ws;
            (void)mm_weight(&m->w, i, b * 32, &code, &ws);
            double xd = m->x.d[t * m->nb + b];
            double ms; /* Q4_K / Q5_K: the block's min m and dmin (a second term) */
            long mc = mm_kmin(&m->w, i, b * 32, &ms);
            long isum = 0, iabs = 0, xsum = 0;
            for (size_t j = 0; j < 32; j++) {
                double dummy;
                (void)mm_weight(&m->w, i, b * 32 + j, &code, &dummy);
                long p = (long)code * m->x.q[t * n + b * 32 + j];
                isum += p;
                iabs += p < 0 ? -p : p;
                xsum += m->x.q[t * n + b * 32 + j];
            }
            long mabs = mc * (xsum < 0 ? -xsum : xsum);
            if (isnan(ws) || isnan(xd) || isnan(ms))
                has_nan = 1;
            if (isinf(ws) || isinf(xd) || isinf(ms))
                has_inf = 1;
            double sc = fabs(ws * xd);
            S += (double)iabs * sc + (double)mabs * fabs(ms * xd);
            Sblock = fmax(Sblock, fmax(fmax(fabs(ws), fabs(ms)), fabs(xd)) *
                                      (double)(iabs > mabs ? iabs : mabs));
            isum_abs += (double)(isum < 0 ? -isum : isum) + (double)mabs;
            M = fmax(M, fmax(fmax(fabs(ws), fabs(ms)), fabs(xd)) * (1.0 + (double)iabs));
        }
    } else {
        double blocksum = 0.0, msum = 0.0;
        for (size_t j = 0; j < n; j++) {
            int code;
            double sc;
            double wv = mm_weight(&m->w, i, j, &code, &sc);
            double xv = m->x.f[t * n + j];
            double ms;
            int mc = mm_kmin(&m->w, i, j, &ms);
            if (mc != 0 || ms != 0.0) { /* Q4_K / Q5_K: the min term on its own */
                if (isnan(ms))
                    has_nan = 1;
                if (isinf(ms))
                    has_inf = 1;
                S += fabs((double)mc * ms * xv);
                M = fmax(M, fabs(ms) * 256.0);
                wv = (double)code * sc; /* the scale part below */
                if (j % 32 == 0)
                    msum = 0.0;
                msum += fabs((double)mc * xv);
                Sblock = fmax(Sblock, fmax(msum, fabs((double)mc * ms)));
            }
            /* wv = code * scale for Q8 types: 0 * inf is a NaN of this check's own
             * making (the kernels multiply sums of code * x by the scale, giving inf or
             * NaN by order): an infinite scale is "inf", not "NaN" */
            if (isnan(xv) || isnan(sc) || (isnan(wv) && !isinf(sc)))
                has_nan = 1;
            if (isinf(wv) || isinf(xv) || isinf(sc))
                has_inf = 1;
            S += fabs(wv * xv);
            M = fmax(M, fmax(fabs(xv), fabs(sc)) * 256.0);
            if (m->w.type == Q_TENSOR_Q8_0 || m->w.type == Q_TENSOR_Q4_0 ||
                m->w.type == Q_TENSOR_Q4_K || m->w.type == Q_TENSOR_Q5_K ||
                m->w.type == Q_TENSOR_Q6_K || m->w.type == Q_TENSOR_Q8_SPLIT) {
                /* an implementation may sum code * x before scaling */
                if (j % 32 == 0)
                    blocksum = 0.0;
                blocksum += fabs((double)code * xv);
                Sblock = fmax(Sblock, blocksum);
                Sblock = fmax(Sblock, fabs((double)code * sc));
            }
        }
    }
    if (has_nan) {
        if (!isnan(r) || !isnan(g))
            fail("matmul", "NaN input, non-NaN output", idx, r, g, 0.0);
        return;
    }
    if (has_inf || !(S <= SAFE_MAX) || !(Sblock <= SAFE_MAX))
        return; /* infinities or possible overflow: order-dependent, not compared */
    double tol = (2.0 * (double)n + 32.0) * U * S + 0x1p-147 * ((double)n + 8.0) * M +
                 0x1p-147 * isum_abs;
    check_close("matmul", idx, r, g, 0.0, tol);
}

static void mm_fill_pattern(float *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = bits_f32(0x7fc0beefu);
}

static void run_matmul(ctx *c)
{
    int type_sel = (int)draw(c, 0, 8);
    size_t cols_class = draw(c, 0, 2);
    size_t cols = cols_class == 0 ? 32 * draw(c, 1, 32)
                  : cols_class == 1 ? draw(c, 1, 64)
                                    : draw(c, 1, 2048);
    size_t gs_class = draw(c, 0, 4), gs_val = draw(c, 1, 200);
    size_t rows = draw(c, 1, 64), n_rows = draw(c, 1, 8), stride_extra = draw(c, 0, 3);
    size_t act_form = draw(c, 0, 2);
    size_t split = draw(c, 0, 255), sub_a = draw(c, 0, 255), sub_b = draw(c, 0, 255);
    size_t ow = draw(c, 0, 63), osc = draw(c, 0, 63), ox = draw(c, 0, 15), oxq = draw(c, 0, 63),
           oxd = draw(c, 0, 15), oo = draw(c, 0, 15);
    start_values(c);
    int mode = c->vs.mode;

    q_tensor_type type = type_sel == 0   ? Q_TENSOR_F32
                         : type_sel == 1 ? Q_TENSOR_F16
                         : type_sel == 2 ? Q_TENSOR_Q8_0
                         : type_sel == 3 ? Q_TENSOR_Q8_SPLIT
                         : type_sel == 4 ? Q_TENSOR_BF16
                         : type_sel == 5 ? Q_TENSOR_Q4_0
                         : type_sel == 6 ? Q_TENSOR_Q6_K
                         : type_sel == 7 ? Q_TENSOR_Q4_K
                                         : Q_TENSOR_Q5_K;
    int k_super = type == Q_TENSOR_Q4_K || type == Q_TENSOR_Q5_K || type == Q_TENSOR_Q6_K;
    if ((type == Q_TENSOR_Q8_0 || type == Q_TENSOR_Q4_0) && cols % 32 != 0)
        cols = (cols + 31) / 32 * 32;
    if (k_super && cols % 256 != 0)
        cols = (cols + 255) / 256 * 256;
    if (mode == M_EXACT && cols > 1024)
        cols = 1024; /* integer block sums of up to 32 blocks stay below 2^24 */
    if (cols > 2048)
        cols = 2048;
    size_t gs = 32;
    if (type == Q_TENSOR_Q8_SPLIT) {
        gs = gs_class == 0 ? 32 : gs_class == 1 ? 64 : gs_class == 2 ? 32 * (gs_val % 4 + 1)
             : gs_class == 3                    ? (gs_val | 1)
                                                : gs_val;
        size_t g = gs / gcd_size(gs, cols); /* rows must be a multiple of g */
        if (g * cols > WORK_CAP) {
            gs = cols;
            g = 1;
        }
        rows = (rows + g - 1) / g * g;
        while (rows > g && rows * cols > WORK_CAP)
            rows -= g;
    } else {
        while (rows > 1 && rows * cols > WORK_CAP)
            rows--;
    }
    while (n_rows > 1 && rows * cols * n_rows > WORK_CAP)
        n_rows--;
    size_t nb = cols / 32;

    mm_case m;
    memset(&m, 0, sizeof m);
    m.rows = rows;
    m.cols = cols;
    m.nb = nb;
    m.stride = rows + stride_extra;
    m.out_len = (n_rows - 1) * m.stride + rows;
    m.w.type = type;
    m.w.rows = rows;
    m.w.cols = cols;
    m.w.group_size = type == Q_TENSOR_Q8_SPLIT ? gs : k_super ? 256 : 32;

    int wexp = (int)(vs_byte(&c->vs) % 9) - 4; /* exact mode: the one weight scale 2^wexp */
    int xexp = (int)(vs_byte(&c->vs) % 9) - 4; /* and activation scale 2^xexp */
    buf bw = {0}, bs = {0}, bx = {0}, bxq = {0}, bxd = {0};
    size_t wbytes = type == Q_TENSOR_F32 ? rows * cols * 4
                    : type == Q_TENSOR_F16 || type == Q_TENSOR_BF16 ? rows * cols * 2
                    : type == Q_TENSOR_Q8_0 ? rows * nb * 34
                    : type == Q_TENSOR_Q4_0 ? rows * nb * 18
                    : type == Q_TENSOR_Q6_K ? rows * (cols / 256) * 210
                    : type == Q_TENSOR_Q4_K ? rows * (cols / 256) * 144
                    : type == Q_TENSOR_Q5_K ? rows * (cols / 256) * 176
                                            : rows * cols;
    unsigned char *wd = (unsigned char *)buf_new(&bw, wbytes, ow);
    switch (type) {
    case Q_TENSOR_F32:
        for (size_t e = 0; e < rows * cols; e++) {
            float f = mode == M_EXACT ? (float)(int8_t)vs_byte(&c->vs) : vs_float(&c->vs, 0);
            memcpy(wd + e * 4, &f, 4);
        }
        break;
    case Q_TENSOR_F16:
        for (size_t e = 0; e < rows * cols; e++) {
            uint16_t h = mode == M_EXACT ? f16_of_int((int8_t)vs_byte(&c->vs)) : vs_f16(&c->vs, 0);
            wd[e * 2] = (unsigned char)(h & 0xff);
            wd[e * 2 + 1] = (unsigned char)(h >> 8);
        }
        break;
    case Q_TENSOR_BF16: /* raw mode: every 16-bit pattern; exact: small integers (exact) */
        for (size_t e = 0; e < rows * cols; e++) {
            uint16_t h = mode == M_RAW     ? (uint16_t)(vs_byte(&c->vs) | (vs_byte(&c->vs) << 8))
                         : mode == M_EXACT ? q_f32_to_bf16((float)(int8_t)vs_byte(&c->vs))
                                           : q_f32_to_bf16(vs_float(&c->vs, 0));
            wd[e * 2] = (unsigned char)(h & 0xff);
            wd[e * 2 + 1] = (unsigned char)(h >> 8);
        }
        break;
    case Q_TENSOR_Q8_0:
        for (size_t b = 0; b < rows * nb; b++) {
            uint16_t h = vs_f16(&c->vs, wexp);
            wd[b * 34] = (unsigned char)(h & 0xff);
            wd[b * 34 + 1] = (unsigned char)(h >> 8);
            for (size_t j = 0; j < 32; j++)
                wd[b * 34 + 2 + j] = vs_byte(&c->vs);
        }
        break;
    case Q_TENSOR_Q4_0: /* any nibbles: codes -8 .. 7 */
        for (size_t b = 0; b < rows * nb; b++) {
            uint16_t h = vs_f16(&c->vs, wexp);
            wd[b * 18] = (unsigned char)(h & 0xff);
            wd[b * 18 + 1] = (unsigned char)(h >> 8);
            for (size_t j = 0; j < 16; j++)
                wd[b * 18 + 2 + j] = vs_byte(&c->vs);
        }
        break;
    case Q_TENSOR_Q6_K: /* any code bits; any int8 scales (exact mode: -2..2, so the block
                         * sums of up to 1024 columns stay below 2^24); d as Q8_0's scale */
        for (size_t s = 0; s < rows * (cols / 256); s++) {
            unsigned char *blk = wd + s * 210;
            for (size_t j = 0; j < 192; j++)
                blk[j] = vs_byte(&c->vs);
            for (size_t j = 0; j < 16; j++)
                blk[192 + j] = mode == M_EXACT ? (unsigned char)(int8_t)(vs_byte(&c->vs) % 5 - 2)
                                               : vs_byte(&c->vs);
            uint16_t h = vs_f16(&c->vs, wexp);
            blk[208] = (unsigned char)(h & 0xff);
            blk[209] = (unsigned char)(h >> 8);
        }
        break;
    case Q_TENSOR_Q4_K:
    case Q_TENSOR_Q5_K: { /* any code bits; any 6-bit scales and mins (exact mode: 0..2,
                           * so the block sums stay below 2^24); d and dmin as Q8_0's scale */
        size_t bb = type == Q_TENSOR_Q4_K ? 144 : 176;
        for (size_t s = 0; s < rows * (cols / 256); s++) {
            unsigned char *blk = wd + s * bb;
            for (size_t k = 0; k < 2; k++) {
                uint16_t h = vs_f16(&c->vs, wexp);
                blk[2 * k] = (unsigned char)(h & 0xff);
                blk[2 * k + 1] = (unsigned char)(h >> 8);
            }
            for (size_t j = 0; j < 12; j++) {
                unsigned char b = vs_byte(&c->vs);
                if (mode == M_EXACT) /* every 6-bit field in 0..2 */
                    b = j < 8 ? (unsigned char)(b % 3)
                              : (unsigned char)(b % 3 | (b / 3 % 3) << 4);
                blk[4 + j] = b;
            }
            for (size_t j = 16; j < bb; j++)
                blk[j] = vs_byte(&c->vs);
        }
        break;
    }
    case Q_TENSOR_Q8_SPLIT: {
        for (size_t e = 0; e < rows * cols; e++)
            wd[e] = vs_byte(&c->vs);
        size_t n_sc = rows * cols / gs;
        unsigned char *sc = (unsigned char *)buf_new(&bs, n_sc * 4, osc);
        for (size_t g = 0; g < n_sc; g++) {
            float f = act_scale(&c->vs, wexp);
            memcpy(sc + g * 4, &f, 4);
        }
        m.w.scales = sc;
        break;
    }
    }
    m.w.data = wd;
    FUZZ_ASSERT(q_tensor_check(&m.w) == Q_OK);

    float *xf = (float *)buf_new(&bx, n_rows * cols * sizeof(float), ox * 4);
    fill_f32(xf, n_rows * cols, &c->vs);
    m.x.f = xf;
    m.x.cols = cols;
    m.x.n_rows = n_rows;
    int8_t *xq = NULL;
    float *xd = NULL;
    if (act_form != 0 && cols % 32 == 0) {
        xq = (int8_t *)buf_new(&bxq, n_rows * cols, oxq);
        xd = (float *)buf_new(&bxd, n_rows * nb * sizeof(float), oxd * 4);
        if (act_form == 1 && mode != M_EXACT) {
            for (size_t t = 0; t < n_rows; t++)
                c->ref->quantize_q8(xq + t * cols, xd + t * nb, xf + t * cols, cols);
        } else {
            for (size_t e = 0; e < n_rows * cols; e++)
                xq[e] = (int8_t)((int)(vs_byte(&c->vs) % 255) - 127); /* quantize_q8's range */
            for (size_t b = 0; b < n_rows * nb; b++)
                xd[b] = act_scale(&c->vs, xexp);
        }
        m.x.q = xq;
        m.x.d = xd;
    }
    m.use_int = m.x.q != NULL && q_kernels_wants_q8(&m.w);
    int exact = mode == M_EXACT;

    snprintf(shape, sizeof shape,
             "type=%d rows=%zu cols=%zu group=%zu tokens=%zu stride=%zu int=%d act_form=%zu "
             "mode=%d offsets w=%zu s=%zu x=%zu xq=%zu xd=%zu out=%zu",
             (int)type, rows, cols, m.w.group_size, n_rows, m.stride, m.use_int, act_form, mode,
             ow, osc, ox, oxq, oxd, oo);

    buf bo[N_TAB][4] = {{{0}}};
    float *whole[N_TAB] = {NULL};
    split %= rows + 1;
    size_t a = sub_a % (rows + 1), b = sub_b % (rows + 1);
    if (a > b) {
        size_t tmp = a;
        a = b;
        b = tmp;
    }
    for (size_t k = 0; k < c->n_tab; k++) {
        const q_kernels *K = c->tab[k];
        opt_name = K->name;
        float *o_all = (float *)buf_new(&bo[k][0], m.out_len * sizeof(float), oo * 4);
        float *o_split = (float *)buf_new(&bo[k][1], m.out_len * sizeof(float), (oo + 3) % 16 * 4);
        float *o_tok = (float *)buf_new(&bo[k][2], m.out_len * sizeof(float), (oo + 7) % 16 * 4);
        float *o_sub = (float *)buf_new(&bo[k][3], m.out_len * sizeof(float), (oo + 11) % 16 * 4);
        mm_fill_pattern(o_all, m.out_len);
        mm_fill_pattern(o_split, m.out_len);
        mm_fill_pattern(o_tok, m.out_len);
        mm_fill_pattern(o_sub, m.out_len);

        K->matmul(o_all, m.stride, &m.w, 0, rows, &m.x);
        K->matmul(o_split, m.stride, &m.w, 0, split, &m.x);
        K->matmul(o_split, m.stride, &m.w, split, rows, &m.x);
        for (size_t t = 0; t < n_rows; t++) {
            q_act one = m.x;
            one.f = xf + t * cols;
            one.q = xq != NULL ? xq + t * cols : NULL;
            one.d = xd != NULL ? xd + t * nb : NULL;
            one.n_rows = 1;
            K->matmul(o_tok + t * m.stride, m.stride, &m.w, 0, rows, &one);
        }
        K->matmul(o_sub, m.stride, &m.w, a, b, &m.x);

        char kn[48]; /* "matmul (scalar)", "matmul (avx2)"...: whose determinism failed */
        snprintf(kn, sizeof kn, "matmul (%s)", K->name);
        check_same(kn, "rows split != all rows", o_all, o_split, m.out_len);
        check_same(kn, "one token at a time != all tokens", o_all, o_tok, m.out_len);
        const float pat = bits_f32(0x7fc0beefu);
        for (size_t e = 0; e < m.out_len; e++) {
            size_t i = e % m.stride;
            if (i >= a && i < b) {
                if (memcmp(&o_sub[e], &o_all[e], 4) != 0 && !(isnan(o_sub[e]) && isnan(o_all[e])))
                    fail(kn, "row sub-range differs", e, o_all[e], o_sub[e], 0.0);
            } else if (memcmp(&o_sub[e], &pat, 4) != 0) {
                fail(kn, "wrote outside its row range", e, pat, o_sub[e], 0.0);
            }
        }
        for (size_t t = 0; t + 1 < n_rows; t++)
            for (size_t i = rows; i < m.stride; i++) {
                if (memcmp(&o_all[t * m.stride + i], &pat, 4) != 0)
                    fail(kn, "wrote into the output stride gap", t * m.stride + i, pat,
                         o_all[t * m.stride + i], 0.0);
            }
        whole[k] = o_all;
    }
    for (size_t k = 1; k < c->n_tab; k++) { /* each optimized table against the reference */
        opt_name = c->tab[k]->name;
        for (size_t t = 0; t < n_rows; t++)
            for (size_t i = 0; i < rows; i++)
                mm_check_elem(&m, t, i, whole[0][t * m.stride + i], whole[k][t * m.stride + i],
                              exact);
    }
    for (size_t k = 0; k < N_TAB; k++)
        for (int j = 0; j < 4; j++)
            buf_free(&bo[k][j]);
    buf_free(&bw);
    buf_free(&bs);
    buf_free(&bx);
    buf_free(&bxq);
    buf_free(&bxd);
}

/* ======================================================================================
 * rmsnorm. Draws: size class (0: 1..64, 1: 1..4096), n (1 or 2 bytes), eps (0..4),
 * in place (0/1), offsets of x, weight, out, and of the second optimized run (0..15 each).
 * ====================================================================================== */

static void run_rmsnorm(ctx *c)
{
    size_t cls = draw(c, 0, 1);
    size_t n = cls == 0 ? draw(c, 1, 64) : draw(c, 1, 4096);
    size_t ei = draw(c, 0, 4), inplace = draw(c, 0, 1);
    size_t ox = draw(c, 0, 15), ow = draw(c, 0, 15), oo = draw(c, 0, 15), o2 = draw(c, 0, 15);
    start_values(c);
    static const float eps_list[] = {1e-5f, 1e-6f, 0.0f, FLT_MIN, 1e-30f};
    float eps = eps_list[ei];
    snprintf(shape, sizeof shape, "n=%zu eps=%g inplace=%zu mode=%d offsets x=%zu w=%zu out=%zu/%zu",
             n, (double)eps, inplace, c->vs.mode, ox, ow, oo, o2);
    buf bx = {0}, bw = {0}, bo[N_SLOT] = {{0}}, bk = {0};
    float *x = (float *)buf_new(&bx, n * 4, ox * 4), *w = (float *)buf_new(&bw, n * 4, ow * 4);
    fill_f32(x, n, &c->vs);
    fill_f32(w, n, &c->vs);
    float *keep = copy_f32(&bk, x, n, 0);
    float *out[N_SLOT] = {NULL};
    for (size_t k = 0; k < n_slots(c); k++) {
        size_t off = k == 0 || k % 2 == 1 ? oo : o2;
        opt_name = slot_table(c, k)->name;
        if (inplace) {
            out[k] = copy_f32(&bo[k], x, n, off);
            slot_table(c, k)->rmsnorm(out[k], out[k], w, n, eps);
        } else {
            out[k] = (float *)buf_new(&bo[k], n * 4, off * 4);
            slot_table(c, k)->rmsnorm(out[k], x, w, n, eps);
            check_bits("rmsnorm", "input modified", keep, x, n * 4);
        }
    }
    for (size_t k = 1; k < n_slots(c); k += 2) { /* optimized table (k + 1) / 2 */
        opt_name = slot_table(c, k)->name;
        check_bits("rmsnorm", "result depends on alignment", out[k], out[k + 1], n * 4);
        int x_nan = 0, x_inf = 0;
        double ss = 0.0;
        for (size_t j = 0; j < n; j++) {
            x_nan |= isnan(x[j]);
            x_inf |= isinf(x[j]);
            ss += (double)x[j] * (double)x[j];
        }
        double v = ss / (double)n + (double)eps;
        /* overflow of the sum of squares is order dependent; so is the precision of a
         * subnormal mean square (then only NaN-ness is compared) */
        int compare = x_nan || x_inf || ss <= SAFE_MAX;
        double rel = v >= 0x1p-100 ? ((double)n + 16.0) * U : INFINITY;
        for (size_t j = 0; compare && j < n; j++) {
            if (isinf(w[j]) && !x_nan && !x_inf)
                continue; /* inf * (s * x): s * x may underflow to 0 in one table only */
            if (isinf(rel))
                check_nan_class("rmsnorm", j, out[0][j], out[k][j]);
            else
                check_close("rmsnorm", j, out[0][j], out[k][j], rel,
                            0x1p-146 * (1.0 + fabs((double)w[j])));
        }
    }
    for (size_t k = 0; k < N_SLOT; k++)
        buf_free(&bo[k]);
    buf_free(&bx);
    buf_free(&bw);
    buf_free(&bk);
}

/* ======================================================================================
 * softmax. Draws: size class (0: 0..64, 1: 0..2048), n, offsets of the two copies (0..15)
 * and of the second optimized run.
 * ====================================================================================== */

static double softmax_rel(size_t n)
{
    return 2.0 * EXP_E + (2.0 * (double)n + 8.0) * U;
}

static void run_softmax(ctx *c)
{
    size_t cls = draw(c, 0, 1);
    size_t n = cls == 0 ? draw(c, 0, 64) : draw(c, 0, 2048);
    size_t o0 = draw(c, 0, 15), o1 = draw(c, 0, 15), o2 = draw(c, 0, 15);
    start_values(c);
    snprintf(shape, sizeof shape, "n=%zu mode=%d offsets %zu/%zu/%zu", n, c->vs.mode, o0, o1, o2);
    buf bsrc = {0}, b[N_SLOT] = {{0}};
    float *src = (float *)buf_new(&bsrc, n * 4, 0);
    fill_f32(src, n, &c->vs);
    float *x[N_SLOT] = {NULL};
    for (size_t k = 0; k < n_slots(c); k++) {
        x[k] = copy_f32(&b[k], src, n, k == 0 ? o0 : k % 2 == 1 ? o1 : o2);
        slot_table(c, k)->softmax(x[k], n);
    }
    for (size_t k = 1; k < n_slots(c); k += 2) {
        opt_name = slot_table(c, k)->name;
        check_bits("softmax", "result depends on alignment", x[k], x[k + 1], n * 4);
        for (size_t i = 0; i < n; i++)
            check_close("softmax", i, x[0][i], x[k][i], softmax_rel(n), 0x1p-146);
    }
    for (size_t k = 0; k < N_SLOT; k++)
        buf_free(&b[k]);
    buf_free(&bsrc);
}

/* ======================================================================================
 * swiglu. Draws: size class (0: 0..64, 1: 0..4096), n, offsets of up, gate copies (three),
 * all 0..15.
 * ====================================================================================== */

static void run_swiglu(ctx *c)
{
    size_t cls = draw(c, 0, 1);
    size_t n = cls == 0 ? draw(c, 0, 64) : draw(c, 0, 4096);
    size_t ou = draw(c, 0, 15), o0 = draw(c, 0, 15), o1 = draw(c, 0, 15), o2 = draw(c, 0, 15);
    start_values(c);
    snprintf(shape, sizeof shape, "n=%zu mode=%d offsets up=%zu gate=%zu/%zu/%zu", n, c->vs.mode,
             ou, o0, o1, o2);
    buf bsrc = {0}, bu = {0}, bk = {0}, b[N_SLOT] = {{0}};
    float *src = (float *)buf_new(&bsrc, n * 4, 0);
    float *up = (float *)buf_new(&bu, n * 4, ou * 4);
    fill_f32(src, n, &c->vs);
    fill_f32(up, n, &c->vs);
    float *keep = copy_f32(&bk, up, n, 0);
    float *g[N_SLOT] = {NULL};
    for (size_t k = 0; k < n_slots(c); k++) {
        opt_name = slot_table(c, k)->name;
        g[k] = copy_f32(&b[k], src, n, k == 0 ? o0 : k % 2 == 1 ? o1 : o2);
        slot_table(c, k)->swiglu(g[k], up, n);
        check_bits("swiglu", "up modified", keep, up, n * 4);
    }
    for (size_t k = 1; k < n_slots(c); k += 2) {
        opt_name = slot_table(c, k)->name;
        check_bits("swiglu", "result depends on alignment", g[k], g[k + 1], n * 4);
        /* sigmoid's relative error <= exp's + 2u, then two products; a subnormal sigmoid
         * (gate below -87) is within 2^-149 absolute */
        double rel = EXP_E + 8.0 * U;
        for (size_t i = 0; i < n; i++)
            check_close("swiglu", i, g[0][i], g[k][i], rel,
                        0x1p-147 * (1.0 + fabs((double)src[i])) * (1.0 + fabs((double)up[i])));
    }
    for (size_t k = 0; k < N_SLOT; k++)
        buf_free(&b[k]);
    buf_free(&bsrc);
    buf_free(&bu);
    buf_free(&bk);
}

/* ======================================================================================
 * rope and rope_neox. Draws: head_size / 2 (1..128), heads (1..16), offsets of cos, sin,
 * the vector copies (three), all 0..15, then the pairing (0 interleaved, 1 NEOX).
 * ====================================================================================== */

static void run_rope(ctx *c)
{
    size_t hs = 2 * draw(c, 1, 128), heads = draw(c, 1, 16);
    size_t oc = draw(c, 0, 15), os = draw(c, 0, 15);
    size_t o0 = draw(c, 0, 15), o1 = draw(c, 0, 15), o2 = draw(c, 0, 15);
    int neox = (int)draw(c, 0, 1);
    start_values(c);
    size_t n = hs * heads;
    snprintf(shape, sizeof shape,
             "n=%zu head_size=%zu neox=%d mode=%d offsets cos=%zu sin=%zu vec=%zu/%zu/%zu", n, hs,
             neox, c->vs.mode, oc, os, o0, o1, o2);
    buf bsrc = {0}, bc = {0}, bs = {0}, b[N_SLOT] = {{0}};
    float *src = (float *)buf_new(&bsrc, n * 4, 0);
    float *cp = (float *)buf_new(&bc, hs / 2 * 4, oc * 4);
    float *sp = (float *)buf_new(&bs, hs / 2 * 4, os * 4);
    fill_f32(src, n, &c->vs);
    fill_f32(cp, hs / 2, &c->vs);
    fill_f32(sp, hs / 2, &c->vs);
    float *v[N_SLOT] = {NULL};
    for (size_t k = 0; k < n_slots(c); k++) {
        v[k] = copy_f32(&b[k], src, n, k == 0 ? o0 : k % 2 == 1 ? o1 : o2);
        (neox ? slot_table(c, k)->rope_neox : slot_table(c, k)->rope)(v[k], n, hs, cp, sp);
    }
    for (size_t k = 1; k < n_slots(c); k += 2) {
        opt_name = slot_table(c, k)->name;
        check_bits("rope", "result depends on alignment", v[k], v[k + 1], n * 4);
        check_same("rope", "differs from the reference", v[0], v[k], n);
    }
    for (size_t k = 0; k < N_SLOT; k++)
        buf_free(&b[k]);
    buf_free(&bsrc);
    buf_free(&bc);
    buf_free(&bs);
}

/* ======================================================================================
 * attention. Draws: head_size / 2 (1..80), positions (1..256), stride extra (0..40),
 * offsets of q, keys, values, att, out, and of the second optimized run's att and out
 * (0..15 each).
 * ====================================================================================== */

static void run_attention(ctx *c)
{
    size_t hs = 2 * draw(c, 1, 80), n_pos = draw(c, 1, 256), extra = draw(c, 0, 40);
    size_t oq = draw(c, 0, 15), ok = draw(c, 0, 15), ov = draw(c, 0, 15), oa = draw(c, 0, 15),
           oo = draw(c, 0, 15), oa2 = draw(c, 0, 15), oo2 = draw(c, 0, 15);
    start_values(c);
    size_t stride = hs + extra;
    while (n_pos > 1 && n_pos * stride > WORK_CAP / 2)
        n_pos--;
    size_t kv_len = (n_pos - 1) * stride + hs;
    snprintf(shape, sizeof shape,
             "head_size=%zu n_pos=%zu stride=%zu mode=%d offsets q=%zu k=%zu v=%zu att=%zu/%zu "
             "out=%zu/%zu",
             hs, n_pos, stride, c->vs.mode, oq, ok, ov, oa, oa2, oo, oo2);
    buf bq = {0}, bk = {0}, bv = {0}, ba[N_SLOT] = {{0}}, bo[N_SLOT] = {{0}};
    float *q = (float *)buf_new(&bq, hs * 4, oq * 4);
    float *keys = (float *)buf_new(&bk, kv_len * 4, ok * 4);
    float *vals = (float *)buf_new(&bv, kv_len * 4, ov * 4);
    fill_f32(q, hs, &c->vs);
    fill_f32(keys, kv_len, &c->vs);
    fill_f32(vals, kv_len, &c->vs);
    float *att[N_SLOT] = {NULL}, *out[N_SLOT] = {NULL};
    for (size_t k = 0; k < n_slots(c); k++) {
        int second = k != 0 && k % 2 == 0; /* an optimized table's run at other offsets */
        att[k] = (float *)buf_new(&ba[k], n_pos * 4, (second ? oa2 : oa) * 4);
        out[k] = (float *)buf_new(&bo[k], hs * 4, (second ? oo2 : oo) * 4);
        slot_table(c, k)->attention(out[k], q, keys, vals, stride, n_pos, hs, att[k]);
    }
    for (size_t k = 1; k < n_slots(c); k += 2) {
        opt_name = slot_table(c, k)->name;
        check_bits("attention", "att depends on alignment", att[k], att[k + 1], n_pos * 4);
        check_bits("attention", "out depends on alignment", out[k], out[k + 1], hs * 4);
        /* scores: class and error bound of each dot product */
        int unsafe = 0;
        double delta = 0.0;
        for (size_t t = 0; t < n_pos && !unsafe; t++) {
            const float *kt = keys + t * stride;
            int nan = 0, pinf = 0, ninf = 0;
            double S = 0.0;
            for (size_t i = 0; i < hs; i++) {
                double p = (double)q[i] * (double)kt[i];
                if (isnan(p))
                    nan = 1;
                else if (isinf(q[i]) || isinf(kt[i]))
                    p > 0 ? (pinf = 1) : (ninf = 1);
                else
                    S += fabs(p);
            }
            if (!nan && !pinf && !ninf) {
                if (!(S <= SAFE_MAX))
                    unsafe = 1;
                delta = fmax(delta, (2.0 * (double)hs + 16.0) * U * S / sqrt((double)hs));
            } else if (!(S <= SAFE_MAX)) {
                unsafe = 1; /* finite terms that may overflow beside the infinite ones */
            }
        }
        if (!unsafe) {
            double rel_att = softmax_rel(n_pos) + 3.0 * expm1(2.0 * delta);
            if (isnan(rel_att))
                rel_att = INFINITY;
            for (size_t t = 0; t < n_pos; t++)
                check_close("attention (att)", t, att[0][t], att[k][t], rel_att, 0x1p-146);
            int v_finite = 1;
            for (size_t e = 0; e < kv_len && v_finite; e++)
                v_finite = isfinite(vals[e]);
            for (size_t i = 0; v_finite && i < hs; i++) {
                double sav = 0.0, sv = 0.0;
                for (size_t t = 0; t < n_pos; t++) {
                    double vv = fabs((double)vals[t * stride + i]);
                    sav += fabs((double)att[0][t]) * vv;
                    sv += vv;
                }
                if (isnan(sav) || !(sav <= SAFE_MAX))
                    check_nan_class("attention (out)", i, out[0][i], out[k][i]);
                else
                    check_close("attention (out)", i, out[0][i], out[k][i], 0.0,
                                (rel_att + (2.0 * (double)n_pos + 4.0) * U) * sav * 1.01 +
                                    0x1p-146 * ((double)n_pos + sv));
            }
        }
    }
    for (size_t k = 0; k < N_SLOT; k++) {
        buf_free(&ba[k]);
        buf_free(&bo[k]);
    }
    buf_free(&bq);
    buf_free(&bk);
    buf_free(&bv);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ctx c;
    memset(&c, 0, sizeof c);
    c.fp = fuzz_producer_make(data, size);
    c.ref = q_kernels_scalar();
    c.tab[0] = c.ref;
    size_t n_opt = q_kernels_optimized(c.tab + 1, MAX_OPT);
    c.n_tab = 1 + (n_opt < MAX_OPT ? n_opt : MAX_OPT);
    size_t kernel = draw(&c, 0, 6);
    c.vs.mode = (int)draw(&c, 0, M_COUNT - 1);
    c.vs.rng = 0x9e3779b97f4a7c15ull ^ fuzz_producer_range(&c.fp, 0, UINT32_MAX);
    switch (kernel) {
    case 0: run_quantize(&c); break;
    case 1: run_matmul(&c); break;
    case 2: run_rmsnorm(&c); break;
    case 3: run_softmax(&c); break;
    case 4: run_swiglu(&c); break;
    case 5: run_rope(&c); break;
    default: run_attention(&c); break;
    }
#ifdef FUZZ_KERNELS_VERBOSE /* -DFUZZ_KERNELS_VERBOSE: print what each input ran */
    fprintf(stderr, "fuzz_kernels: kernel %zu: %s\n", kernel, shape);
#endif
    return 0;
}
