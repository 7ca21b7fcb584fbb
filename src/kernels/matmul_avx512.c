/*
 * AVX-512 matmul (compiled with -mavx512f -mavx512bw -mavx512vl -mavx512vnni on top of the
 * AVX2 flags; reached only through the table dispatch.c hands out after checking the CPU
 * and the OS).
 *
 * ---- accumulation scheme (the determinism rule) ----
 *
 * Every output element out[t][i] = dot(W row i, x row t) is computed by the SAME sequence of
 * floating-point operations whatever tile it falls into, whatever [r0, r1) and n_rows are:
 *
 *   float weights (F32, F16, BF16): one 16-lane accumulator, acc = 0; for each 16-column step
 *       (in order) acc = fma(w[j..j+16), x[j..j+16), acc); the last cols % 16 columns are
 *       one more step with masked (zero-filling) loads of w and x; then hsum16: (low 256
 *       bits + high 256 bits), then the AVX2 table's fixed 8-lane tree.
 *   int8 (Q8_0, Q4_0, Q8_SPLIT with x->q): one float per output, acc = 0; for each block b in
 *       order: acc = fma((float)S_b, ws_b * xd_b, acc), S_b the exact int32 sum of the
 *       block's 32 products, ws_b the weight scale, xd_b the activation scale (one float
 *       product, as the reference). The block sums come from vpdpbusd (unsigned x signed
 *       bytes), with one operand offset by 128 and the offset's exact contribution taken
 *       back (below), so they are exact for EVERY int8 input, -128 included.
 *   Q4_0: the 4-bit codes are nibbles n in 0..15 standing for n - 8. Prefill unpacks each
 *       block's 16 bytes into its 32 int8 codes (the low nibbles are weights 0..15, the
 *       high nibbles 16..31) and proceeds as Q8_0; decode feeds the nibbles themselves to
 *       vpdpbusd as its unsigned operand (the offset is then 8, not 128).
 *   Q6_K: a block (32 weights) is two 16-weight halves with int8 scales s0, s1 under the
 *       super-block's d (the block's weight scale), S_b = s0 * (sum over half 0) + s1 *
 *       (sum over half 1), exact. Prefill unpacks the block's codes (code - 32, int8),
 *       keeps one vpdpbusd chain per half (each with its own offset term) and multiplies
 *       them by s0, s1; decode feeds the 6-bit codes (weight + 32) as the unsigned operand,
 *       takes 32 * sum(x) off each dword lane (4 weights of one half) and multiplies the
 *       lane by its half's scale before the lanes merge (q6k_decode_token).
 *   Q4_K, Q5_K: the AVX2 table's float sequence exactly (qk_decode), so the prefill
 *       runs on the AVX2 tiles; decode computes the exact block sums with vpdpbusd on the
 *       unsigned codes and merges them with merge_rows2.
 *
 * Tiles only choose which outputs are computed together:
 *   float: prefill (n_rows >= 4) 4 rows x 4 tokens (16 accumulators), edges 4x1, 1x4, 1x1,
 *       rows outermost so a 4-row panel of W stays in L1 while the tokens stream past;
 *       decode 8x1 (8 independent FMA chains), edge 1x1.
 *   int8 prefill (n_rows >= 4): lanes are TOKENS. The activation rows of up to 16 tokens
 *       are first transposed into a stack buffer, per block b and per 4-byte group p:
 *       xt[b][p] = the 16 tokens' bytes 4p..4p+3 of block b, each xor 0x80 (x + 128, as
 *       unsigned). Then for a weight row, vpdpbusd(acc, xt[b][p], broadcast(w bytes
 *       4p..4p+3)) over p = 0..7 leaves in lane t the sum over the block of
 *       (x_t + 128) * w = S_b(t) + 128 * sum(w); the accumulator starts at -128 * sum(w),
 *       computed once per row and block. Four rows at a time, two dpbusd chains per row;
 *       no horizontal sums at all.
 *   int8 decode (fewer rows): lanes are ROWS. For 8 rows and two blocks, each row gives
 *       vpdpbusd(init, w xor 0x80, x) on 512 bits = 8 partial sums of (w + 128) * x per
 *       block, where init holds -128 * sum(x_b) (-8 * sum(x_b) for Q4_0; one value per
 *       block, the same for every row) in one lane of each block; three levels of 2-source
 *       permutes and adds turn those 8 vectors into 8 exact row sums per block. An odd
 *       last block goes through the AVX2 table's 256-bit hadd tree (from the same init).
 *       The 8 rows' scales of two blocks come in one gather (Q8_SPLIT: one per block, from
 *       its group counters). Rows past r1 repeat the last row (read, never stored), so
 *       there are no edge tiles.
 *   Decode prefetches the next tile's bytes, as the AVX2 table does (see matmul_avx2.c).
 *
 * Both int8 paths give each output the same sequence: the block sums are exact integers
 * and the float steps are the same fma of the same product, so a token computed in a batch
 * equals the same token computed alone, bitwise.
 *
 * Stack: about 152 KiB in the int8 prefill (the transposed activations of up to 256
 * group-blocks, the panel's scales and offset terms), a few KiB elsewhere.
 * Size limit: the stack buffers hold rows of up to Q512_MAX_BLOCKS blocks (8192 columns);
 * an int8 matmul on wider rows goes to the AVX2 table's matmul, for every call on that
 * tensor (the choice depends only on the tensor), so the rule above still holds per tensor.
 */
#include <immintrin.h>

#include "core/sanitize.h"
#include "kernels/avx2_sums.h"
#include "kernels/float_tiles.h"
#include "kernels/kernels_internal.h"
#include "kernels/quant_unpack.h"

#define QZ_INLINE static inline __attribute__((always_inline))

/* ASan and MSan do not see the addresses a gather instruction reads. In their builds every
 * gathered element is also read by a plain load of the same bytes, which they check (an
 * out-of-bounds gather is then reported like any other read); other builds read nothing
 * more. */
#if defined(Q_HAVE_ASAN) || defined(Q_HAVE_MSAN)
static void gather_check(const unsigned char *p, size_t bytes)
{
    unsigned char sink[4];
    memcpy(sink, p, bytes);
    __asm__ volatile("" : : "r"(sink) : "memory");
#if defined(Q_HAVE_MSAN)
    /* the gathered bytes feed the result: they must be initialized */
    uint32_t v = 0;
    memcpy(&v, sink, bytes);
    if (v == 0x5a5a5a5au)
        __asm__ volatile("");
#endif
}
#define Q_GATHER_CHECK(p, bytes) gather_check((p), (bytes))
#else
#define Q_GATHER_CHECK(p, bytes) ((void)0)
#endif

/* ---- float weights ---- */

/* 16 weights of a float-type row from column j, as float32; `m` masks the valid lanes of a
 * tail (all ones for a full step). Masked loads never touch the masked-off bytes. */
QZ_INLINE __m512 load_w16(const unsigned char *row, size_t j, int kind, __mmask16 m)
{
    if (kind == Q_FK_F16)
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, row + j * 2));
    if (kind == Q_FK_BF16) /* bfloat16: the high half of a float32 */
        return _mm512_castsi512_ps(
            _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, row + j * 2)), 16));
    return _mm512_maskz_loadu_ps(m, row + j * 4);
}

QZ_INLINE float hsum16(__m512 v)
{
    return q_hsum8(_mm256_add_ps(_mm512_castps512_ps256(v),
                                 _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
}

#define FMAX_R 8
#define FMAX_T 4

/* Float tile: R weight rows from w (row stride wstride bytes) x T activation rows xs[t]
 * (n floats each); outs[t][r] receives the results. R and T are constants at every call
 * site, so the loops unroll and the accumulators stay in registers. */
QZ_INLINE void ftile(float *const *outs, const unsigned char *w, size_t wstride,
                     const float *const *xs, size_t n, int R, int T, int kind)
{
    __m512 acc[FMAX_R][FMAX_T]; /* (R, T) one accumulator chain per output */
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
            acc[r][t] = _mm512_setzero_ps();
    /* Decode (T == 1): prefetch the next tile's bytes (R contiguous rows, like this
     * tile's), spread over this tile's steps in address order, one line per line consumed:
     * short rows never let the hardware prefetcher ramp up (see the int8 decode). */
    size_t steps = n / 16 > 0 ? n / 16 : 1;
    size_t pf_step = T == 1 ? ((size_t)R * wstride + steps - 1) / steps : 0;
    uintptr_t pf = (uintptr_t)w + (size_t)R * wstride; /* an address only: never read */
    size_t j = 0;
    for (; j + 16 <= n; j += 16) {
        if (T == 1) {
            for (size_t o = 0; o < pf_step; o += 64)
                _mm_prefetch((const char *)(pf + o), _MM_HINT_T0);
            pf += pf_step;
        }
        __m512 xv[FMAX_T];
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
            xv[t] = _mm512_loadu_ps(xs[t] + j);
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            __m512 wv = load_w16(w + (size_t)r * wstride, j, kind, (__mmask16)0xFFFF);
#pragma GCC unroll 4
            for (int t = 0; t < T; t++)
                acc[r][t] = _mm512_fmadd_ps(wv, xv[t], acc[r][t]);
        }
    }
    if (j < n) {
        __mmask16 m = (__mmask16)((1u << (n - j)) - 1u);
        __m512 xv[FMAX_T];
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
            xv[t] = _mm512_maskz_loadu_ps(m, xs[t] + j);
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            __m512 wv = load_w16(w + (size_t)r * wstride, j, kind, m);
#pragma GCC unroll 4
            for (int t = 0; t < T; t++)
                acc[r][t] = _mm512_fmadd_ps(wv, xv[t], acc[r][t]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
            outs[t][r] = hsum16(acc[r][t]);
}

#define FTILE(R, T, KIND, NAME)                                                              \
    static __attribute__((noinline)) void NAME(float *const *outs, const unsigned char *w, \
                                               size_t wstride, const float *const *xs,   \
                                               size_t n)                                 \
    {                                                                                    \
        ftile(outs, w, wstride, xs, n, R, T, KIND);                                      \
    }
FTILE(4, 4, Q_FK_F32, f32_4x4)
FTILE(4, 1, Q_FK_F32, f32_4x1)
FTILE(8, 1, Q_FK_F32, f32_8x1)
FTILE(1, 4, Q_FK_F32, f32_1x4)
FTILE(1, 1, Q_FK_F32, f32_1x1)
FTILE(4, 4, Q_FK_F16, f16_4x4)
FTILE(4, 1, Q_FK_F16, f16_4x1)
FTILE(8, 1, Q_FK_F16, f16_8x1)
FTILE(1, 4, Q_FK_F16, f16_1x4)
FTILE(1, 1, Q_FK_F16, f16_1x1)
FTILE(4, 4, Q_FK_BF16, bf16_4x4)
FTILE(4, 1, Q_FK_BF16, bf16_4x1)
FTILE(8, 1, Q_FK_BF16, bf16_8x1)
FTILE(1, 4, Q_FK_BF16, bf16_1x4)
FTILE(1, 1, Q_FK_BF16, bf16_1x1)

static const q_ftiles f32_tiles = {f32_4x4, f32_4x1, f32_8x1, f32_1x4, f32_1x1, 4};
static const q_ftiles f16_tiles = {f16_4x4, f16_4x1, f16_8x1, f16_1x4, f16_1x1, 4};
static const q_ftiles bf16_tiles = {bf16_4x4, bf16_4x1, bf16_8x1, bf16_1x4, bf16_1x1, 4};

static void matmul_float(float *out, size_t out_stride, const q_tensor *w, size_t r0, size_t r1,
                         const q_act *x, int kind)
{
    q_float_tiles_run(out, out_stride, w, r0, r1, x, kind == Q_FK_F32 ? 4u : 2u,
                      kind == Q_FK_F16    ? &f16_tiles
                      : kind == Q_FK_BF16 ? &bf16_tiles
                                          : &f32_tiles);
}

/* ---- int8 x int8 ---- */

#define Q512_MAX_BLOCKS 256u /* blocks per row the stack buffers hold (8192 columns) */
#define QG 16                /* tokens per prefill group: the 16 lanes of a zmm */
#define QPR 4                /* weight rows per prefill tile */
#define QDR 8                /* weight rows per decode tile */
#define QXT_BLOCKS 256u      /* group-blocks the transposed activations hold (128 KiB) */
/* one token group of the widest row must fit, or a pass would hold no group at all */
_Static_assert(QXT_BLOCKS >= Q512_MAX_BLOCKS, "QXT_BLOCKS below Q512_MAX_BLOCKS");

/* Row `row` of a Q8_0, Q4_0 or Q8_SPLIT tensor: where its blocks' quants start (block b at
 * quants + b * step: 32 int8, or Q4_0's 16 bytes of 4-bit codes); its nb weight scales are
 * written to ws[b], b < nb. */
typedef struct qrow {
    const unsigned char *quants;
    size_t step; /* bytes from one block's quants to the next */
} qrow;

static qrow qrow_at(const q_tensor *w, size_t row, float *ws)
{
    size_t n = w->cols, nb = n / Q_QBLOCK;
    const unsigned char *base = (const unsigned char *)w->data;
    qrow q;
    if (w->type == Q_TENSOR_Q6_K) { /* quants: the row's first super-block; step unused */
        const unsigned char *r = base + row * (nb / 8) * Q_Q6_K_BLOCK_BYTES;
        for (size_t b = 0; b < nb; b++) {
            uint16_t h;
            memcpy(&h, r + b / 8 * Q_Q6_K_BLOCK_BYTES + Q_Q6_K_D, 2);
            ws[b] = _cvtsh_ss(h);
        }
        q.quants = r;
        q.step = 0;
        return q;
    }
    if (w->type == Q_TENSOR_Q8_0 || w->type == Q_TENSOR_Q4_0) {
        size_t bb = w->type == Q_TENSOR_Q4_0 ? Q_Q4_0_BLOCK_BYTES : Q_Q8_0_BLOCK_BYTES;
        const unsigned char *r = base + row * nb * bb;
        for (size_t b = 0; b < nb; b++) {
            uint16_t h;
            memcpy(&h, r + b * bb, 2);
            ws[b] = _cvtsh_ss(h);
        }
        q.quants = r + 2;
        q.step = bb;
        return q;
    }
    /* Q8_SPLIT: group_size is a multiple of 32 (q_kernels_wants_q8), so each block lies in
     * one group; walk the groups without a division per block */
    size_t e0 = row * n, bpg = w->group_size / Q_QBLOCK;
    size_t g = e0 / w->group_size, inb = e0 % w->group_size / Q_QBLOCK;
    const unsigned char *scales = (const unsigned char *)w->scales;
    for (size_t b = 0; b < nb; b++) {
        ws[b] = q_load_f32(scales + g * 4);
        if (++inb == bpg) {
            inb = 0;
            g++;
        }
    }
    q.quants = base + e0;
    q.step = Q_QBLOCK;
    return q;
}

/* The nibbles (codes + 8, unsigned 0..15) of Q4_0 blocks b and b + 1 of a row (code bytes
 * at q0 and q0 + step), in weight order: block b in the low 256 bits, b + 1 in the high.
 * Each block's 16 bytes go into both 128-bit lanes of its half by broadcast loads (no
 * shuffle uop), and one variable shift moves the upper lane's high nibbles down (weights
 * 16..31) while the lower lane keeps its low nibbles (weights 0..15). */
QZ_INLINE __m512i q4_0_nibbles2(const unsigned char *q0, size_t step)
{
    const long long nib = 0x0004000400040004LL; /* 16-bit lanes shifted by 4 */
    const __m512i shift = _mm512_setr_epi64(0, 0, nib, nib, 0, 0, nib, nib);
    __m512i v = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(const void *)q0));
    v = _mm512_mask_broadcast_i32x4(v, (__mmask16)0xFF00,
                                    _mm_loadu_si128((const __m128i *)(const void *)(q0 + step)));
    return _mm512_and_si512(_mm512_srlv_epi16(v, shift), _mm512_set1_epi8(15));
}

/* -128 * (sum of the 16 signed bytes at p), exact: Q6_K's half-block offset share. */
QZ_INLINE int32_t offset_term16(const int8_t *p)
{
    __m128i v = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(const void *)p),
                              _mm_set1_epi8((char)0x80));
    __m128i s = _mm_sad_epu8(v, _mm_setzero_si128()); /* two sums of 8 (w + 128) */
    s = _mm_add_epi64(s, _mm_unpackhi_epi64(s, s));
    return -128 * ((int32_t)_mm_cvtsi128_si32(s) - 16 * 128);
}

/* -128 * (sum of the 32 signed bytes at p), exact: the offset's share in a block sum. */
QZ_INLINE int32_t offset_term(const unsigned char *p)
{
    __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)p);
    /* sad of (w + 128) against 0: four sums of 8 unsigned bytes */
    __m256i s = _mm256_sad_epu8(_mm256_xor_si256(v, _mm256_set1_epi8((char)0x80)),
                                _mm256_setzero_si256());
    __m128i h = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    h = _mm_add_epi64(h, _mm_unpackhi_epi64(h, h));
    int32_t sum_biased = (int32_t)_mm_cvtsi128_si32(h); /* sum(w) + 32 * 128 */
    return -128 * (sum_biased - 32 * 128);
}

/*
 * Prefill: activation rows [t0, t0 + nt) against weight rows [r0, r1). The tokens go in
 * groups of QG (the last one padded with x = 0, scale 0: computed, never stored); the
 * groups' transposed, offset activations are built once on the stack, then every 4-row
 * panel of W (its scales and offset terms computed once) meets every group.
 */
static void int8_prefill(float *out, size_t out_stride, const q_tensor *w, size_t r0,
                         size_t r1, const q_act *x, size_t t0, size_t nt)
{
    size_t n = w->cols, nb = n / Q_QBLOCK, ngroups = (nt + QG - 1) / QG;
    int q4 = w->type == Q_TENSOR_Q4_0, q6 = w->type == Q_TENSOR_Q6_K; /* unpacked per block */
    /* (ngroups, nb, 8, QG) 4-byte groups: bytes 4p..4p+3 of block b of token t, + 128 */
    uint32_t xt[QXT_BLOCKS * 8 * QG];
    float xdt[QXT_BLOCKS * QG]; /* (ngroups, nb, QG) the tokens' block scales */
    for (size_t g = 0; g < ngroups; g++)
        for (size_t tl = 0; tl < QG; tl++) {
            size_t t = g * QG + tl;
            for (size_t b = 0; b < nb; b++) {
                uint32_t *dst = xt + ((g * nb + b) * 8) * QG + tl;
                if (t < nt) {
                    const unsigned char *src =
                        (const unsigned char *)(x->q + (t0 + t) * n + b * Q_QBLOCK);
                    for (size_t p = 0; p < 8; p++) {
                        uint32_t v;
                        memcpy(&v, src + 4 * p, 4);
                        dst[p * QG] = v ^ 0x80808080u;
                    }
                    xdt[(g * nb + b) * QG + tl] = x->d[(t0 + t) * nb + b];
                } else {
                    for (size_t p = 0; p < 8; p++)
                        dst[p * QG] = 0x80808080u; /* x = 0 */
                    xdt[(g * nb + b) * QG + tl] = 0.0f;
                }
            }
        }
    float ws[QPR][Q512_MAX_BLOCKS];     /* (QPR, nb) weight scales of the panel's rows */
    int32_t corr[QPR][Q512_MAX_BLOCKS]; /* (QPR, nb) -128 * sum of each block's weights */
    for (size_t i = r0; i < r1; i += QPR) {
        qrow rows[QPR];
        for (int r = 0; r < QPR; r++) {
            size_t row = i + (size_t)r < r1 ? i + (size_t)r : r1 - 1; /* edge: repeat */
            rows[r] = qrow_at(w, row, ws[r]);
            for (size_t b = 0; b < nb && !q6; b++) { /* Q6_K: per half-block, below */
                const unsigned char *p = rows[r].quants + b * rows[r].step;
                int8_t codes[Q_QBLOCK]; /* (32) Q4_0: the block's codes */
                if (q4) {
                    _mm256_storeu_si256((__m256i *)(void *)codes, q_unpack_q4_0(p));
                    p = (const unsigned char *)codes;
                }
                corr[r][b] = offset_term(p);
            }
        }
        for (size_t g = 0; g < ngroups; g++) {
            __m512 acc[QPR]; /* (QPR) lane t: token g * QG + t */
            for (int r = 0; r < QPR; r++)
                acc[r] = _mm512_setzero_ps();
            for (size_t b = 0; b < nb; b++) {
                const uint32_t *xb = xt + ((g * nb + b) * 8) * QG;
                __m512i xv[8];
                for (int p = 0; p < 8; p++)
                    xv[p] = _mm512_loadu_si512(xb + p * QG);
                __m512 xd = _mm512_loadu_ps(xdt + (g * nb + b) * QG);
                int8_t codes[QPR][Q_QBLOCK]; /* (QPR, 32) Q4_0, Q6_K: block b's codes per row */
                int32_t half0[QPR], half1[QPR];  /* (QPR) Q6_K: -128 * sum of each half */
                if (q4)
                    for (int r = 0; r < QPR; r++)
                        _mm256_storeu_si256((__m256i *)(void *)codes[r],
                                            q_unpack_q4_0(rows[r].quants + b * rows[r].step));
                if (q6)
                    for (int r = 0; r < QPR; r++) {
                        _mm256_storeu_si256(
                            (__m256i *)(void *)codes[r],
                            q_unpack_q6_k(rows[r].quants + b / 8 * Q_Q6_K_BLOCK_BYTES, b % 8));
                        half0[r] = offset_term16(codes[r]);
                        half1[r] = offset_term16(codes[r] + 16);
                    }
#pragma GCC unroll 4
                for (int r = 0; r < QPR; r++) {
                    const unsigned char *wq = q4 || q6 ? (const unsigned char *)codes[r]
                                                       : rows[r].quants + b * rows[r].step;
                    /* c0: weights 0..15 of the block, c1: 16..31 */
                    __m512i c0 = _mm512_set1_epi32(q6 ? half0[r] : corr[r][b]);
                    __m512i c1 = q6 ? _mm512_set1_epi32(half1[r]) : _mm512_setzero_si512();
#pragma GCC unroll 4
                    for (int p = 0; p < 4; p++) {
                        int32_t w0, w1;
                        memcpy(&w0, wq + 4 * p, 4);
                        memcpy(&w1, wq + 16 + 4 * p, 4);
                        c0 = _mm512_dpbusd_epi32(c0, xv[p], _mm512_set1_epi32(w0));
                        c1 = _mm512_dpbusd_epi32(c1, xv[4 + p], _mm512_set1_epi32(w1));
                    }
                    __m512i isum; /* S_b: Q6_K weighs each half by its int8 scale */
                    if (q6) {
                        const unsigned char *sc = rows[r].quants + b / 8 * Q_Q6_K_BLOCK_BYTES +
                                                  Q_Q6_K_SCALES + b % 8 * 2;
                        isum = _mm512_add_epi32(
                            _mm512_mullo_epi32(c0, _mm512_set1_epi32((int8_t)sc[0])),
                            _mm512_mullo_epi32(c1, _mm512_set1_epi32((int8_t)sc[1])));
                    } else {
                        isum = _mm512_add_epi32(c0, c1);
                    }
                    __m512 sum = _mm512_cvtepi32_ps(isum);
                    __m512 sc = _mm512_mul_ps(_mm512_set1_ps(ws[r][b]), xd); /* ws * xd */
                    acc[r] = _mm512_fmadd_ps(sum, sc, acc[r]);
                }
            }
            size_t in_group = nt - g * QG < QG ? nt - g * QG : QG;
            for (int r = 0; r < QPR && i + (size_t)r < r1; r++) {
                float res[QG];
                _mm512_storeu_ps(res, acc[r]);
                for (size_t tl = 0; tl < in_group; tl++)
                    out[(t0 + g * QG + tl) * out_stride + i + (size_t)r] = res[tl];
            }
        }
    }
}

/* The gathers of the decode path's scales. gcc's -O0 forms of the gather intrinsics are
 * macros whose all-ones mask trips -Wsign-conversion in the caller's file; the pragmas
 * keep that to these two functions. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wsign-conversion"
/* The float32 scales at scales[g[r]], r < 8 (Q8_SPLIT). */
static inline __m256 gather_split_scales(__m512i g, const void *scales)
{
    return _mm512_i64gather_ps(g, scales, 4);
}

/* The binary16 scales of 8 Q8_0 block headers at hdr + idx[r] bytes, as float32 (each
 * gathered dword holds a scale and the first 2 quants of its block). */
static inline __m256 gather_q80_scales(const unsigned char *hdr, __m256i idx)
{
    __m256i h = _mm256_i32gather_epi32((const int *)(const void *)hdr, idx, 1);
    return _mm256_cvtph_ps(_mm256_cvtepi32_epi16(h));
}

/* The binary16 scales of blocks b (lanes 0-7) and b + 1 (lanes 8-15) of 8 rows, as float32:
 * the block headers at hdr + idx[r] bytes, idx = (row offsets, row offsets + block size). */
static inline __m512 gather_q80_scales2(const unsigned char *hdr, __m512i idx)
{
    __m512i h = _mm512_i32gather_epi32(idx, (const int *)(const void *)hdr, 1);
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(h));
}

/* The binary16 d of 8 Q6_K super-blocks at at + idx[r] bytes, as float32: each gathered
 * dword is bytes 206..209 of its super-block (the last two scales, then d), so nothing past
 * the super-block is read. */
static inline __m256 gather_q6k_d(const unsigned char *at, __m256i idx)
{
    __m256i h = _mm256_i32gather_epi32((const int *)(const void *)at, idx, 1);
    return _mm256_cvtph_ps(_mm256_cvtepi32_epi16(_mm256_srli_epi32(h, 16)));
}
#pragma GCC diagnostic pop

#if defined(Q_HAVE_ASAN) || defined(Q_HAVE_MSAN)
/* Lane r of the 8 group counters g (the gather check of sanitizer builds). */
static inline size_t grp_now(__m512i g, int r)
{
    long long v[8];
    _mm512_storeu_si512(v, g);
    return (size_t)v[r];
}
#endif

/* [lo | hi] and [v | v] as one 512-bit register (AVX512F only: no DQ insert / broadcast) */
QZ_INLINE __m512 f32x8_pair(__m256 lo, __m256 hi)
{
    return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(lo)),
                                               _mm256_castps_pd(hi), 1));
}

QZ_INLINE __m512 f32x8_twice(__m256 v)
{
    return f32x8_pair(v, v);
}

/*
 * The 8 rows' partial sums of two blocks (part[r]: 8 dwords of block b in the low 256 bits,
 * 8 of block b + 1 in the high) merged into block sums: lane r = S_b(row r), lane 8 + r =
 * S_b+1(row r). Three levels of pairwise merges (two 2-source permutes and an add each), a
 * fixed tree: half the shuffles per block of the 256-bit one. part is overwritten.
 */
QZ_INLINE __m512i merge_rows2(__m512i *part)
{
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 16, 18, 20, 22, 8, 10, 12, 14, 24, 26,
                                           28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
#pragma GCC unroll 4
    for (int r = 0; r < QDR / 2; r++) /* rows (2r, 2r+1): 4 sums per row and block */
        part[r] = _mm512_add_epi32(_mm512_permutex2var_epi32(part[2 * r], even, part[2 * r + 1]),
                                   _mm512_permutex2var_epi32(part[2 * r], odd, part[2 * r + 1]));
#pragma GCC unroll 2
    for (int r = 0; r < QDR / 4; r++) /* 2 sums per row and block */
        part[r] = _mm512_add_epi32(_mm512_permutex2var_epi32(part[2 * r], even, part[2 * r + 1]),
                                   _mm512_permutex2var_epi32(part[2 * r], odd, part[2 * r + 1]));
    return _mm512_add_epi32(_mm512_permutex2var_epi32(part[0], even, part[1]),
                            _mm512_permutex2var_epi32(part[0], odd, part[1]));
}

/*
 * Decode: one token (xq: n int8, xd: n / 32 scales) against rows [r0, r1), 8 rows at a
 * time (lanes = rows), in block order, two blocks per step. Q8_0 / Q4_0: the 8 rows' scales
 * of both blocks come in one 16-lane gather from the block headers (a constant offset per
 * row); Q8_SPLIT: one gather per block from the scale array at each row's current group (8
 * group counters in vectors). `type` is a constant in each of the three copies below.
 */
QZ_INLINE void int8_decode(float *out, const q_tensor *w, size_t r0, size_t r1,
                           const int8_t *xq, const float *xd, int type)
{
    size_t n = w->cols, nb = n / Q_QBLOCK;
    int split = type == Q_TENSOR_Q8_SPLIT, q4 = type == Q_TENSOR_Q4_0;
    size_t step = split ? Q_QBLOCK : q4 ? Q_Q4_0_BLOCK_BYTES : Q_Q8_0_BLOCK_BYTES;
    size_t row_bytes = nb * step;
    const unsigned char *base = (const unsigned char *)w->data;
    const __m256i bias = _mm256_set1_epi8((char)0x80), ones = _mm256_set1_epi8(1);
    /* The unsigned operand of vpdpbusd is w + 128 (Q8) or the Q4_0 nibble = code + 8: its
     * offset times sum(x) of each block is every row's excess in that block's sum */
    const int32_t offset = q4 ? 8 : 128;
    /* xinit[8b .. 8b+8): lane 0 is -offset * sum(x_b), the others 0. Every row's lanes of
     * block b start there (vpdpbusd adds onto them), so after the merge each block sum has
     * its offset taken off exactly once, with no subtraction per block. */
    _Alignas(64) int32_t xinit[Q512_MAX_BLOCKS * 8];
    memset(xinit, 0, nb * 8 * sizeof xinit[0]);
    for (size_t b = 0; b < nb; b++) {
        __m256i sx = _mm256_dpbusd_epi32(
            _mm256_setzero_si256(), ones,
            _mm256_loadu_si256((const __m256i *)(const void *)(xq + b * Q_QBLOCK)));
        __m128i h = _mm_add_epi32(_mm256_castsi256_si128(sx), _mm256_extracti128_si256(sx, 1));
        h = _mm_add_epi32(h, _mm_unpackhi_epi64(h, h));
        h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x55));
        xinit[8 * b] = -offset * _mm_cvtsi128_si32(h);
    }
    /* Q8_SPLIT: the group of row r0's first block and the blocks of that group before it;
     * each next row is n values on (row_groups groups and row_blocks blocks), so the
     * counters advance without a division per row */
    size_t bpg_n = split ? w->group_size / Q_QBLOCK : 1;
    size_t row_groups = split ? n / w->group_size : 0, row_blocks = split ? n % w->group_size / Q_QBLOCK : 0;
    size_t g_row = split ? r0 * n / w->group_size : 0;
    size_t inb_row = split ? r0 * n % w->group_size / Q_QBLOCK : 0;
    for (size_t i = r0; i < r1; i += QDR) {
        const unsigned char *quants[QDR]; /* (QDR) each row's first block's quants */
        int32_t row_off[QDR];             /* (QDR) Q8_0: row r's bytes from row 0's */
        long long grp[QDR], inb[QDR];     /* (QDR) Q8_SPLIT: group of block 0, blocks in */
        for (int r = 0; r < QDR; r++) {
            size_t row = i + (size_t)r < r1 ? i + (size_t)r : r1 - 1; /* edge: repeat */
            quants[r] = base + row * row_bytes + (split ? 0 : 2);
            row_off[r] = (int32_t)((row - i) * row_bytes);
            grp[r] = (long long)g_row;
            inb[r] = (long long)inb_row;
            if (i + (size_t)r + 1 < r1) { /* on to the next row (the edge repeats the last) */
                g_row += row_groups;
                inb_row += row_blocks;
                if (inb_row >= bpg_n) {
                    inb_row -= bpg_n;
                    g_row++;
                }
            }
        }
        __m256i hdr_idx = _mm256_loadu_si256((const __m256i *)(const void *)row_off);
        /* (16) the row offsets, then the same plus one block: blocks b and b + 1 */
        __m512i hdr_idx2 = _mm512_inserti64x4(
            _mm512_castsi256_si512(hdr_idx),
            _mm256_add_epi32(hdr_idx, _mm256_set1_epi32((int)step)), 1);
        __m512i g = _mm512_loadu_si512(grp), k = _mm512_loadu_si512(inb);
        const __m512i bpg = _mm512_set1_epi64((long long)(split ? w->group_size / Q_QBLOCK : 1));
        const __m512i one64 = _mm512_set1_epi64(1);
        /* the next tile's bytes, spread over this tile's blocks (see matmul_avx2.c) */
        size_t tile_bytes = (size_t)QDR * row_bytes;
        size_t pf_step = (tile_bytes + nb - 1) / nb;
        uintptr_t pf_end = (uintptr_t)(base + i * row_bytes) + tile_bytes; /* never read */
        uintptr_t pf = pf_end & ~(uintptr_t)63; /* the next line to prefetch: one per line */
        /* The scales of block b of the 8 rows, in one gather; Q8_SPLIT: then advance the
         * group counters to block b + 1. */
#define BLOCK_SCALES(b, wsv)                                                                   \
    do {                                                                                      \
        if (split) {                                                                          \
            for (int r_ = 0; r_ < QDR; r_++)                                                  \
                Q_GATHER_CHECK((const unsigned char *)w->scales + grp_now(g, r_) * 4, 4);     \
            (wsv) = gather_split_scales(g, w->scales);                                        \
            k = _mm512_add_epi64(k, one64);                                                   \
            __mmask8 full_ = _mm512_cmpeq_epi64_mask(k, bpg);                                 \
            g = _mm512_mask_add_epi64(g, full_, g, one64);                                    \
            k = _mm512_mask_mov_epi64(k, full_, _mm512_setzero_si512());                      \
        } else { /* 4 bytes at each row's block header: the binary16 scale and 2 quants */   \
            for (int r_ = 0; r_ < QDR; r_++)                                                  \
                Q_GATHER_CHECK(quants[0] - 2 + (b) * step + row_off[r_], 4);                  \
            (wsv) = gather_q80_scales(quants[0] - 2 + (b) * step, hdr_idx);                   \
        }                                                                                     \
    } while (0)
        __m256 acc = _mm256_setzero_ps(); /* lane r: row i + r */
        size_t b = 0;
        /* Two blocks at a time in 512-bit registers (merge_rows2) */
        const __m512i bias2 = _mm512_set1_epi8((char)0x80);
        for (; b + 2 <= nb; b += 2) {
            Q_MCA_BEGIN("avx512_int8_decode", type);
            pf_end += 2 * pf_step;
            for (; pf < pf_end; pf += 64)
                _mm_prefetch((const char *)pf, _MM_HINT_T0);
            __m512i xv = _mm512_loadu_si512(xq + b * Q_QBLOCK); /* blocks b, b+1 */
            const __m512i init = _mm512_load_si512(xinit + 8 * b); /* blocks b, b+1 (b even: aligned) */
            __m512i part[QDR]; /* (QDR) per row: 8 partial sums of block b, then of b+1 */
#pragma GCC unroll 8
            for (int r = 0; r < QDR; r++) {
                const unsigned char *q0 = quants[r] + b * step;
                __m512i wu; /* unsigned: w + 128, or the Q4_0 nibbles */
                if (q4) {
                    wu = q4_0_nibbles2(q0, step);
                } else {
                    __m512i wv = _mm512_inserti64x4(
                        _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)q0)),
                        _mm256_loadu_si256((const __m256i *)(const void *)(q0 + step)), 1);
                    wu = _mm512_xor_si512(wv, bias2);
                }
                part[r] = _mm512_dpbusd_epi32(init, wu, xv);
            }
            __m512 sf = _mm512_cvtepi32_ps(merge_rows2(part)); /* S_b per row | S_b+1 per row */
            __m256 sc0, sc1; /* ws * xd of block b, of block b + 1 (lanes: rows) */
            if (split) {
                __m256 ws0, ws1;
                BLOCK_SCALES(b, ws0);
                BLOCK_SCALES(b + 1, ws1);
                sc0 = _mm256_mul_ps(ws0, _mm256_set1_ps(xd[b]));
                sc1 = _mm256_mul_ps(ws1, _mm256_set1_ps(xd[b + 1]));
            } else { /* both blocks' scales in one gather, the same products 16 wide */
                const unsigned char *hdr = quants[0] - 2 + b * step;
                for (int r_ = 0; r_ < QDR; r_++) {
                    Q_GATHER_CHECK(hdr + row_off[r_], 4);
                    Q_GATHER_CHECK(hdr + step + row_off[r_], 4);
                }
                __m512 sc = _mm512_mul_ps(gather_q80_scales2(hdr, hdr_idx2),
                                          f32x8_pair(_mm256_set1_ps(xd[b]), _mm256_set1_ps(xd[b + 1])));
                sc0 = _mm512_castps512_ps256(sc);
                sc1 = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(sc), 1));
            }
            acc = _mm256_fmadd_ps(_mm512_castps512_ps256(sf), sc0, acc);
            acc = _mm256_fmadd_ps(
                _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(sf), 1)), sc1, acc);
            Q_MCA_END("avx512_int8_decode", type);
        }
        for (; b < nb; b++) { /* an odd last block: the 256-bit tree */
            pf_end += pf_step;
            for (; pf < pf_end; pf += 64)
                _mm_prefetch((const char *)pf, _MM_HINT_T0);
            __m256i xv = _mm256_loadu_si256((const __m256i *)(const void *)(xq + b * Q_QBLOCK));
            const __m256i init = _mm256_loadu_si256((const __m256i *)(const void *)(xinit + 8 * b));
            __m256i part[QDR]; /* (QDR) 8 partial sums of (w + offset) * x per row, less the offset */
#pragma GCC unroll 8
            for (int r = 0; r < QDR; r++) {
                const unsigned char *q0 = quants[r] + b * step;
                __m256i wu = q4 ? _mm256_add_epi8(q_unpack_q4_0(q0), _mm256_set1_epi8(8)) /* nibbles */
                                : _mm256_xor_si256(
                                      _mm256_loadu_si256((const __m256i *)(const void *)q0), bias);
                part[r] = _mm256_dpbusd_epi32(init, wu, xv);
            }
            __m256i s = q_sum8x8(part); /* S_b */
            __m256 wsv;
            BLOCK_SCALES(b, wsv);
            __m256 sc = _mm256_mul_ps(wsv, _mm256_set1_ps(xd[b])); /* ws * xd */
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), sc, acc);
        }
#undef BLOCK_SCALES
        float res[QDR];
        _mm256_storeu_ps(res, acc);
        for (int r = 0; r < QDR && i + (size_t)r < r1; r++)
            out[i + (size_t)r] = res[r];
    }
}

/* int8_decode with the weight type a compile-time constant: one copy per type, with no
 * per-row test of the type in its loops */
static void int8_decode_q8_0(float *out, const q_tensor *w, size_t r0, size_t r1,
                             const int8_t *xq, const float *xd)
{
    int8_decode(out, w, r0, r1, xq, xd, Q_TENSOR_Q8_0);
}

static void int8_decode_q4_0(float *out, const q_tensor *w, size_t r0, size_t r1,
                             const int8_t *xq, const float *xd)
{
    int8_decode(out, w, r0, r1, xq, xd, Q_TENSOR_Q4_0);
}

static void int8_decode_split(float *out, const q_tensor *w, size_t r0, size_t r1,
                              const int8_t *xq, const float *xd)
{
    int8_decode(out, w, r0, r1, xq, xd, Q_TENSOR_Q8_SPLIT);
}

/*
 * Q6_K decode: one token against rows [r0, r1), 8 rows in the lanes, a super-block per
 * iteration in four steps of two blocks (weights 32k .. 32k+63, k even; unrolled, so each
 * step's nibble and bit positions are constants). The unsigned operand of vpdpbusd is the
 * 6-bit code itself (weight + 32); each dword lane (4 weights, inside one 16-weight
 * half-block) starts at -32 * (the sum of its 4 activations, the same for every row), so it
 * ends at the exact sum of (code - 32) * x, and is multiplied by its half-block's int8 scale
 * (vpmaddwd against the scale widened once per super-block); merge_rows2 then gives the
 * exact block sums, which go into the accumulator as in int8_decode (and as in the prefill).
 */
static void q6k_decode_token(float *out, const q_tensor *w, size_t r0, size_t r1,
                             const int8_t *xq, const float *xd)
{
    size_t n = w->cols, nb = n / Q_QBLOCK, nsb = nb / 8, row_bytes = nsb * Q_Q6_K_BLOCK_BYTES;
    const unsigned char *base = (const unsigned char *)w->data;
    const __m512i ones = _mm512_set1_epi8(1), low4 = _mm512_set1_epi8(15),
                  bits45 = _mm512_set1_epi8(0x30);
    /* vpermd indices: dword lane i of step k (blocks k, k+1) takes half-block scale 2k + i / 4 */
    const __m512i scale_at = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    for (size_t i = r0; i < r1; i += QDR) {
        const unsigned char *rows[QDR]; /* (QDR) each row's first super-block */
        int32_t row_off[QDR];           /* (QDR) row r's bytes from row 0's */
        for (int r = 0; r < QDR; r++) {
            size_t row = i + (size_t)r < r1 ? i + (size_t)r : r1 - 1; /* edge: repeat */
            rows[r] = base + row * row_bytes;
            row_off[r] = (int32_t)((row - i) * row_bytes);
        }
        __m256i hdr_idx = _mm256_loadu_si256((const __m256i *)(const void *)row_off);
        size_t tile_bytes = (size_t)QDR * row_bytes, pf_step = (tile_bytes + nb - 1) / nb;
        uintptr_t pf_end = (uintptr_t)(base + i * row_bytes) + tile_bytes; /* never read */
        uintptr_t pf = pf_end & ~(uintptr_t)63;
        __m256 acc = _mm256_setzero_ps(); /* lane r: row i + r */
        for (size_t sbi = 0; sbi < nsb; sbi++) {
            Q_MCA_BEGIN("avx512_q6k_decode", Q_TENSOR_Q6_K);
            size_t sbo = sbi * Q_Q6_K_BLOCK_BYTES;
            /* each row's 16 half-block scales, sign-extended to 16 bits in the low half of a
             * dword whose high half is 0: vpmaddwd's operand for the exact lane * scale */
            __m512i sc16[QDR]; /* (QDR) 16 dwords per row */
#pragma GCC unroll 8
            for (int r = 0; r < QDR; r++)
                sc16[r] = _mm512_cvtepu16_epi32(_mm256_cvtepi8_epi16(
                    _mm_loadu_si128((const __m128i *)(const void *)(rows[r] + sbo + Q_Q6_K_SCALES))));
            for (int r_ = 0; r_ < QDR; r_++)
                Q_GATHER_CHECK(rows[0] + sbo + Q_Q6_K_D - 2 + row_off[r_], 4);
            __m256 d = gather_q6k_d(rows[0] + sbo + Q_Q6_K_D - 2, hdr_idx); /* every block's */
#pragma GCC unroll 4
            for (int k = 0; k < 8; k += 2) { /* blocks b = 8 sbi + k and b + 1 */
                size_t b = 8 * sbi + (size_t)k;
                const int h = k / 4, q = k % 4; /* q: 0, 2 */
                pf_end += 2 * pf_step;
                for (; pf < pf_end; pf += 64)
                    _mm_prefetch((const char *)pf, _MM_HINT_T0);
                __m512i xv = _mm512_loadu_si512(xq + b * Q_QBLOCK); /* blocks b, b+1 */
                /* -32 * the sum of each dword lane's 4 activations: every row's lanes start
                 * there, so the dpbusd that adds the codes' products leaves (code - 32) * x */
                __m512i nxoff = _mm512_sub_epi32(
                    _mm512_setzero_si512(),
                    _mm512_slli_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, xv), 5));
                /* the high 2 bits of block b's codes are bits 2q of qh, of block b+1's 2q + 2:
                 * moved straight to bits 4-5 (q = 0: left by 4 and 2; q = 2: by 0 and right
                 * by 2), 16-bit shifts whose spill into the neighbouring byte the mask drops */
                const __m512i qh_shift = q == 0 ? _mm512_inserti64x4(_mm512_set1_epi16(4),
                                                                     _mm256_set1_epi16(2), 1)
                                                : _mm512_inserti64x4(_mm512_setzero_si512(),
                                                                     _mm256_set1_epi16(2), 1);
                const __m512i scale_idx = _mm512_add_epi32(scale_at, _mm512_set1_epi32(2 * k));
                __m512i part[QDR]; /* (QDR) per row: 8 scaled lane sums of block b, then b+1 */
#pragma GCC unroll 8
                for (int r = 0; r < QDR; r++) {
                    const unsigned char *sb = rows[r] + sbo;
                    /* low 4 bits of both blocks: 64 contiguous ql bytes, low or high nibbles */
                    __m512i ql = _mm512_loadu_si512(sb + 64 * h);
                    __m512i lo = _mm512_and_si512(q == 0 ? ql : _mm512_srli_epi16(ql, 4), low4);
                    /* the 32 qh bytes in both halves: a broadcast load, no shuffle */
                    __m512i qh = _mm512_broadcast_i64x4(
                        _mm256_loadu_si256((const __m256i *)(const void *)(sb + 128 + 32 * h)));
                    __m512i hi = _mm512_and_si512(q == 0 ? _mm512_sllv_epi16(qh, qh_shift)
                                                         : _mm512_srlv_epi16(qh, qh_shift),
                                                  bits45);
                    __m512i code = _mm512_or_si512(lo, hi); /* 0..63 */
                    /* a lane is 4 products (code - 32) * x: |lane| <= 4 * 32 * 128 = 2^14,
                     * so it is its own low 16 bits, and vpmaddwd against (scale, 0) gives
                     * lane * scale exactly (at most 2^21), as a 32-bit multiply would */
                    __m512i lanes = _mm512_dpbusd_epi32(nxoff, code, xv);
                    part[r] = _mm512_madd_epi16(lanes, _mm512_permutexvar_epi32(scale_idx, sc16[r]));
                }
                __m512 sf = _mm512_cvtepi32_ps(merge_rows2(part)); /* S_b per row | S_b+1 */
                __m256 sc0 = _mm256_mul_ps(d, _mm256_set1_ps(xd[b])); /* ws * xd */
                __m256 sc1 = _mm256_mul_ps(d, _mm256_set1_ps(xd[b + 1]));
                acc = _mm256_fmadd_ps(_mm512_castps512_ps256(sf), sc0, acc);
                acc = _mm256_fmadd_ps(
                    _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(sf), 1)), sc1, acc);
            }
            Q_MCA_END("avx512_q6k_decode", Q_TENSOR_Q6_K);
        }
        float res[QDR];
        _mm256_storeu_ps(res, acc);
        for (int r = 0; r < QDR && i + (size_t)r < r1; r++)
            out[i + (size_t)r] = res[r];
    }
}

/*
 * Q4_K / Q5_K decode: one token against rows [r0, r1), 8 rows at a time, a super-block (8
 * blocks) per step. The codes are unsigned (0..15, 0..31), so they are vpdpbusd's unsigned
 * operand as they are: no offset. A 512-bit register holds a pair of blocks (2p, 2p+1):
 * one 32-byte load of qs gives block 2p's codes in its low nibbles and 2p+1's in its high
 * ones (Q5_K: plus 16 where the block's bit of qh is set). For two rows, the 8 pair vectors
 * go through merge_rows2 and one permute into the 8 exact block sums of each row (lanes
 * 0-7: row a, 8-15: row b); from there every float step is the AVX2 table's (qchunk_kmin,
 * two rows per register, lane for lane): sums times the 6-bit scales in int32, as float,
 * FMA'd with d * xd, then mins times the exact activation block sums FNMA'd with
 * dmin * xd, and q_hsum8 per row at the end. So these outputs equal the AVX2 table's
 * bitwise, and the prefill can stay on its tiles (q_avx2_matmul) without breaking the
 * batch = one token at a time rule. xs: the token's exact block sums as float (nb).
 */
QZ_INLINE void qk_decode(float *out, const q_tensor *w, size_t r0, size_t r1,
                         const int8_t *xq, const float *xd, const float *xs, int q5)
{
    size_t n = w->cols, nb = n / Q_QBLOCK, nsb = nb / 8;
    size_t sb_bytes = q5 ? Q_Q5_K_BLOCK_BYTES : Q_Q4_K_BLOCK_BYTES, row_bytes = nsb * sb_bytes;
    size_t qs_at = q5 ? Q_Q5_K_QS : Q_Q4_K_QS;
    const unsigned char *base = (const unsigned char *)w->data;
    const __m512i low4 = _mm512_set1_epi8(15), sixteen = _mm512_set1_epi8(16);
    const __m512i nib_shift = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1);
    /* merge_rows2's lanes for rows (a, b): [a: 0 2 4 6 | b: 0 2 4 6 | a: 1 3 5 7 | b: 1 3 5 7]
     * -> [a: 0..7 | b: 0..7] */
    const __m512i to_rows = _mm512_setr_epi32(0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15);
    for (size_t i = r0; i < r1; i += QDR) {
        const unsigned char *rows[QDR]; /* (QDR) each row's first super-block */
        for (int r = 0; r < QDR; r++) {
            size_t row = i + (size_t)r < r1 ? i + (size_t)r : r1 - 1; /* edge: repeat */
            rows[r] = base + row * row_bytes;
        }
        size_t tile_bytes = (size_t)QDR * row_bytes, pf_step = (tile_bytes + nsb - 1) / nsb;
        uintptr_t pf_end = (uintptr_t)(base + i * row_bytes) + tile_bytes; /* never read */
        uintptr_t pf = pf_end & ~(uintptr_t)63;
        __m512 acc[QDR / 2]; /* (QDR / 2) lanes 0-7: row 2a's 8 block lanes, 8-15: 2a+1's */
        for (int a = 0; a < QDR / 2; a++)
            acc[a] = _mm512_setzero_ps();
        for (size_t c = 0; c < nb; c += 8) {
            Q_MCA_BEGIN("avx512_qk_decode", q5 ? Q_TENSOR_Q5_K : Q_TENSOR_Q4_K);
            pf_end += pf_step;
            for (; pf < pf_end; pf += 64)
                _mm_prefetch((const char *)pf, _MM_HINT_T0);
            __m512i xv[4]; /* (4) activation blocks c+2p, c+2p+1 */
            for (int p = 0; p < 4; p++)
                xv[p] = _mm512_loadu_si512(xq + (c + 2 * (size_t)p) * Q_QBLOCK);
            __m512 xdv = f32x8_twice(_mm256_loadu_ps(xd + c));
            __m512 xsv = f32x8_twice(_mm256_loadu_ps(xs + c));
            size_t sbo = c / 8 * sb_bytes;
            /* The 16 header bytes of the 8 rows' super-blocks (d, dmin, the 12 packed
             * scale bytes) as dword lanes = rows: the 4 dwords of rows r and r + 4 loaded
             * into one register, then a 4 x 4 dword transpose per 128-bit lane. */
            __m256i hd[4]; /* (4) dword j of the header of each row: rows 0-3 | 4-7 */
            {
                __m256i y[4]; /* (4) row r's header | row r + 4's */
                for (int r = 0; r < 4; r++)
                    y[r] = _mm256_inserti128_si256(
                        _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)(rows[r] + sbo))),
                        _mm_loadu_si128((const __m128i *)(const void *)(rows[r + 4] + sbo)), 1);
                __m256i t0 = _mm256_unpacklo_epi32(y[0], y[1]), t1 = _mm256_unpacklo_epi32(y[2], y[3]);
                __m256i t2 = _mm256_unpackhi_epi32(y[0], y[1]), t3 = _mm256_unpackhi_epi32(y[2], y[3]);
                hd[0] = _mm256_unpacklo_epi64(t0, t1);
                hd[1] = _mm256_unpackhi_epi64(t0, t1);
                hd[2] = _mm256_unpacklo_epi64(t2, t3);
                hd[3] = _mm256_unpackhi_epi64(t2, t3);
            }
            /* d and dmin of rows 0..7 (binary16 halves of dword 0) */
            __m512 d8 = _mm512_castps256_ps512(_mm256_cvtph_ps(_mm256_cvtepi32_epi16(hd[0])));
            __m512 dmin8 = _mm512_castps256_ps512(
                _mm256_cvtph_ps(_mm256_cvtepi32_epi16(_mm256_srli_epi32(hd[0], 16))));
            /* q_k_scales_mins on 8 rows at once: dwords w0, w1, w2 = hd[1..3]; the top two
             * bits of w0 / w1 bytes go to bits 4-5 of the high scales / mins */
            const __m256i low6 = _mm256_set1_epi8(0x3f), low4_8 = _mm256_set1_epi8(15),
                          bits45_8 = _mm256_set1_epi8(0x30);
            __m256i sc_lo = _mm256_and_si256(hd[1], low6), m_lo = _mm256_and_si256(hd[2], low6);
            __m256i sc_hi = _mm256_or_si256(_mm256_and_si256(hd[3], low4_8),
                                            _mm256_and_si256(_mm256_srli_epi32(hd[1], 2), bits45_8));
            __m256i m_hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(hd[3], 4), low4_8),
                                           _mm256_and_si256(_mm256_srli_epi32(hd[2], 2), bits45_8));
            /* per 128-bit lane, the 8 scales (or mins) of two rows: sc01 = rows 0, 1 | 4, 5,
             * sc23 = rows 2, 3 | 6, 7 */
            __m256i sc01 = _mm256_unpacklo_epi32(sc_lo, sc_hi), sc23 = _mm256_unpackhi_epi32(sc_lo, sc_hi);
            __m256i m01 = _mm256_unpacklo_epi32(m_lo, m_hi), m23 = _mm256_unpackhi_epi32(m_lo, m_hi);
#pragma GCC unroll 4
            for (int a = 0; a < QDR / 2; a++) {
                __m512i part[8]; /* (2 rows, 4 pairs) 8 partial sums of each pair's 2 blocks */
#pragma GCC unroll 2
                for (int rr = 0; rr < 2; rr++) {
                    const unsigned char *sb = rows[2 * a + rr] + sbo;
                    __m512i qh = _mm512_setzero_si512();
                    if (q5)
                        qh = _mm512_broadcast_i64x4(
                            _mm256_loadu_si256((const __m256i *)(const void *)(sb + Q_Q5_K_QH)));
#pragma GCC unroll 4
                    for (int p = 0; p < 4; p++) {
                        /* the 32 bytes in both halves (a load, no shuffle), the high half
                         * shifted down a nibble */
                        __m512i v = _mm512_broadcast_i64x4(
                            _mm256_loadu_si256((const __m256i *)(const void *)(sb + qs_at + 32 * p)));
                        __m512i code = _mm512_and_si512(_mm512_srlv_epi16(v, nib_shift), low4);
                        if (q5) { /* + 16 where bit 2p (low half) or 2p + 1 (high half) is set */
                            const __m512i bits = _mm512_inserti64x4(
                                _mm512_set1_epi8((char)(1u << (2 * p))),
                                _mm256_set1_epi8((char)(1u << (2 * p + 1))), 1);
                            code = _mm512_mask_add_epi8(code, _mm512_test_epi8_mask(qh, bits), code,
                                                        sixteen);
                        }
                        part[rr * 4 + p] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), code, xv[p]);
                    }
                }
                __m512i sums = _mm512_permutexvar_epi32(to_rows, merge_rows2(part));
                /* rows 2a, 2a + 1: a = 0, 1 from the low 128-bit lanes, 2, 3 the high */
                __m256i scp = a % 2 == 0 ? sc01 : sc23, mp = a % 2 == 0 ? m01 : m23;
                __m128i sc2 = a < 2 ? _mm256_castsi256_si128(scp) : _mm256_extracti128_si256(scp, 1);
                __m128i m2 = a < 2 ? _mm256_castsi256_si128(mp) : _mm256_extracti128_si256(mp, 1);
                __m512i scv = _mm512_cvtepu8_epi32(sc2);
                __m512 minv = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(m2));
                /* [row 2a's value x 8 | row 2a + 1's x 8] */
                const __m512i pick = _mm512_inserti64x4(_mm512_set1_epi32(2 * a),
                                                        _mm256_set1_epi32(2 * a + 1), 1);
                __m512 dv = _mm512_permutexvar_ps(pick, d8);
                __m512 dminv = _mm512_permutexvar_ps(pick, dmin8);
                __m512 qsum = _mm512_cvtepi32_ps(_mm512_mullo_epi32(sums, scv));
                acc[a] = _mm512_fmadd_ps(qsum, _mm512_mul_ps(dv, xdv), acc[a]);
                acc[a] = _mm512_fnmadd_ps(_mm512_mul_ps(minv, xsv), _mm512_mul_ps(dminv, xdv), acc[a]);
            }
            Q_MCA_END("avx512_qk_decode", q5 ? Q_TENSOR_Q5_K : Q_TENSOR_Q4_K);
        }
        for (int a = 0; a < QDR / 2; a++) {
            size_t ra = i + 2 * (size_t)a;
            if (ra < r1)
                out[ra] = q_hsum8(_mm512_castps512_ps256(acc[a]));
            if (ra + 1 < r1)
                out[ra + 1] = q_hsum8(
                    _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[a]), 1)));
        }
    }
}

/* qk_decode with the layout a compile-time constant (one specialized copy per type) */
static void qk_decode_q4(float *out, const q_tensor *w, size_t r0, size_t r1, const int8_t *xq,
                         const float *xd, const float *xs)
{
    qk_decode(out, w, r0, r1, xq, xd, xs, 0);
}

static void qk_decode_q5(float *out, const q_tensor *w, size_t r0, size_t r1, const int8_t *xq,
                         const float *xd, const float *xs)
{
    qk_decode(out, w, r0, r1, xq, xd, xs, 1);
}

/* True when the activation row xq (n values, n % 32 == 0) holds a -128. */
static int has_min_int8_512(const int8_t *xq, size_t n)
{
    __mmask64 any = 0;
    for (size_t j = 0; j < n; j += 64)
        any |= _mm512_cmpeq_epi8_mask(_mm512_maskz_loadu_epi8(n - j >= 64 ? ~(__mmask64)0 : (__mmask64)0xffffffffu,
                                                              xq + j),
                                      _mm512_set1_epi8(-128));
    return any != 0;
}

/*
 * Q4_K / Q5_K: prefill (4 tokens or more) on the AVX2 table's tiles; decode on
 * qk_decode, whose outputs equal those tiles' bitwise. A token with a -128 activation
 * goes to the AVX2 matmul too (which hands such rows to the reference), as it would there.
 */
static void matmul_kmin(float *out, size_t out_stride, const q_tensor *w, size_t r0,
                        size_t r1, const q_act *x)
{
    size_t n = w->cols, nt = x->n_rows, nb = n / Q_QBLOCK;
    if (nt >= 4) {
        q_avx2_matmul(out, out_stride, w, r0, r1, x);
        return;
    }
    for (size_t t = 0; t < nt; t++) {
        const int8_t *xq = x->q + t * n;
        const float *xd = x->d + t * nb;
        if (has_min_int8_512(xq, n)) {
            q_act one = {.f = x->f != NULL ? x->f + t * n : NULL, .q = xq, .d = xd, .cols = n,
                         .n_rows = 1};
            q_avx2_matmul(out + t * out_stride, out_stride, w, r0, r1, &one);
            continue;
        }
        float xs[Q512_MAX_BLOCKS]; /* (nb) the exact sum of each activation block, as float */
        for (size_t b = 0; b < nb; b++) {
            __m256i v = _mm256_dpbusd_epi32(
                _mm256_setzero_si256(), _mm256_set1_epi8(1),
                _mm256_loadu_si256((const __m256i *)(const void *)(xq + b * Q_QBLOCK)));
            __m128i h = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
            h = _mm_add_epi32(h, _mm_unpackhi_epi64(h, h));
            h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x55));
            xs[b] = (float)_mm_cvtsi128_si32(h);
        }
        (w->type == Q_TENSOR_Q5_K ? qk_decode_q5 : qk_decode_q4)(out + t * out_stride, w, r0, r1,
                                                                  xq, xd, xs);
    }
}

static void matmul_int8(float *out, size_t out_stride, const q_tensor *w, size_t r0, size_t r1,
                        const q_act *x)
{
    size_t n = w->cols, nt = x->n_rows, nb = n / Q_QBLOCK;
    if (nt < 4) {
        void (*decode)(float *, const q_tensor *, size_t, size_t, const int8_t *,
                       const float *) = w->type == Q_TENSOR_Q6_K   ? q6k_decode_token
                                        : w->type == Q_TENSOR_Q4_0 ? int8_decode_q4_0
                                        : w->type == Q_TENSOR_Q8_0 ? int8_decode_q8_0
                                                                   : int8_decode_split;
        for (size_t t = 0; t < nt; t++)
            decode(out + t * out_stride, w, r0, r1, x->q + t * n, x->d + t * nb);
        return;
    }
    /* as many token groups per pass as the transposed-activation buffer holds */
    size_t groups = QXT_BLOCKS / nb, per_pass = groups * QG;
    for (size_t t0 = 0; t0 < nt; t0 += per_pass)
        int8_prefill(out, out_stride, w, r0, r1, x, t0, nt - t0 < per_pass ? nt - t0 : per_pass);
}

void q_avx512_matmul(float *out, size_t out_stride, const q_tensor *w, size_t r0, size_t r1,
                     const q_act *x)
{
    if (r0 >= r1 || x->n_rows == 0)
        return;
    switch (w->type) {
    case Q_TENSOR_F32:
        matmul_float(out, out_stride, w, r0, r1, x, Q_FK_F32);
        return;
    case Q_TENSOR_F16:
        matmul_float(out, out_stride, w, r0, r1, x, Q_FK_F16);
        return;
    case Q_TENSOR_BF16:
        matmul_float(out, out_stride, w, r0, r1, x, Q_FK_BF16);
        return;
    case Q_TENSOR_Q4_K:
    case Q_TENSOR_Q5_K:
        if (x->q != NULL && q_kernels_wants_q8(w) && w->cols / Q_QBLOCK <= Q512_MAX_BLOCKS) {
            matmul_kmin(out, out_stride, w, r0, r1, x);
            return;
        }
        q_avx2_matmul(out, out_stride, w, r0, r1, x); /* the reference for float activations */
        return;
    case Q_TENSOR_Q8_0:
    case Q_TENSOR_Q4_0:
    case Q_TENSOR_Q6_K:
    case Q_TENSOR_Q8_SPLIT:
        if (x->q != NULL && q_kernels_wants_q8(w)) {
            if (w->cols / Q_QBLOCK <= Q512_MAX_BLOCKS) {
                matmul_int8(out, out_stride, w, r0, r1, x);
                return;
            }
            q_avx2_matmul(out, out_stride, w, r0, r1, x); /* rows too wide for the buffers */
            return;
        }
        break;
    }
    q_kernels_scalar()->matmul(out, out_stride, w, r0, r1, x);
}
