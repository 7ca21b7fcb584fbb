/*
 * AVX2 + FMA + F16C quantize_q8 and matmul (compiled with -mavx2 -mfma -mf16c; reached only
 * through the table dispatch.c hands out after checking the CPU).
 *
 * ---- accumulation scheme (the determinism rule) ----
 *
 * Every output element out[t][i] = dot(W row i, x row t) is computed by the SAME sequence of
 * floating-point operations whatever tile it falls into, whatever [r0, r1) and n_rows are:
 *
 *   float weights (F32, F16, BF16):  one 8-lane accumulator, acc = 0; for each 8-column step j
 *       (in order) acc = fma(w[j..j+8), x[j..j+8), acc); the last cols % 8 columns are one
 *       more step on zero-padded copies of w and x; then q_hsum8(acc).
 *   int8 (Q8_0, Q4_0, Q8_SPLIT with x->q): one 8-lane accumulator; the blocks go in chunks of 8
 *       (in order): the exact int32 sum of each 32-value block (maddubs + madd, then an
 *       hadd tree that leaves block c+k's sum in lane k), converted to float, times the 8
 *       scale products ws_b * xd_b (the same float product as the reference), FMA'd into
 *       acc (acc = fma(sums, scales, acc)); a short last chunk has zero sums and scales in
 *       its missing lanes; then q_hsum8(acc).
 *   hsum8: (low half + high half), then (+ movehl), then (+ movehdup): a fixed tree.
 *
 * Tiles only choose which outputs are computed together: a tile of R weight rows x T
 * activation rows keeps R*T accumulators in registers, loads each weight vector once per
 * step and uses it for the T tokens, loads each activation vector once and uses it for the
 * R rows. The tiles (rows x tokens):
 *   float prefill (n_rows >= 3): 4x3 (12 accumulators + 3 x + 1 w = 16 ymm), edges 4x1,
 *       1x3, 1x1; rows outermost, so a 4-row panel of W stays in L1/L2 while every token
 *       group streams past it: each weight row is read from memory once per batch.
 *   float decode (n_rows 1, 2): 8x1 (8 independent FMA chains hide the FMA latency; the
 *       activation vector is loaded once per step for 8 rows), edge 1x1.
 *   int8: 4x4 prefill (n_rows >= 4; per chunk each row's |w| blocks and 8 scales are
 *       computed once for the 4 tokens), 4x1 token remainders, edges 1x4, 1x1; decode
 *       (fewer than 4 usable activation rows): 8x1 (8 weight streams), edges 4x1, 1x1.
 *       Q8_SPLIT scales are read a chunk at a time (q_split_scales8), not one by one.
 *       Q4_0 blocks are unpacked into their 32 int8 codes in [-8, 7] (q_wblock) and then
 *       take the same path as Q8_0; decode (T == 1) instead feeds the nibbles (code + 8)
 *       to maddubs unsigned and takes 8 * sum(x) off each block sum (the same exact sums).
 *       Q6_K: a chunk of 8 blocks is one super-block (one d
 *       for its 8 lanes); each block's codes are unpacked to int8 in [-32, 31] and its pair
 *       sums multiplied by its two 16-weight halves' int8 scales instead of ones (q_wmul;
 *       decode: q6k_pair_scales from the scales widened once per super-block),
 *       so a block sum is the exact sum of scale * code * x. Q4_K, Q5_K: a chunk is one
 *       super-block; each block's unsigned codes (unpacked to [0, 15] / [0, 31]) go
 *       straight into maddubs (no sign trick), the 8 exact sums are multiplied by the 8
 *       6-bit scales in int32 and FMA'd with d * xd; then the mins times the exact
 *       activation block sums are FNMA'd with dmin * xd (qchunk_kmin): two steps per chunk.
 *
 * Int8 precondition handled here: the sign trick (maddubs(|w|, sign(x, w))) is exact for any
 * weight byte and any activation in [-127, 127] (what quantize_q8 produces; pair sums stay
 * <= 2*128*127 < 32767). An activation row holding -128 would not be: such a row (checked
 * per row, so the choice depends on that row alone) goes through the reference kernel.
 * Q8 weights on float activations (x->q NULL, or a Q8_SPLIT group size not a multiple of
 * 32) also go to the reference: the forward pass quantizes its activations.
 */
#include <immintrin.h>

#include "kernels/avx2_sums.h"
#include "kernels/float_tiles.h"
#include "kernels/kernels_internal.h"
#include "kernels/quant_unpack.h"

#define QA_INLINE static inline __attribute__((always_inline))

/* ---- quantize_q8 ---- */

void q_avx2_quantize_q8(int8_t *q, float *d, const float *x, size_t n)
{
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (size_t b = 0; b < n / Q_QBLOCK; b++) {
        const float *xb = x + b * Q_QBLOCK; /* (32) this block */
        __m256 v[4];
        __m256 m = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(xb + 8 * k);
            /* maxps returns its SECOND operand when either is NaN: NaN |x| is ignored */
            m = _mm256_max_ps(_mm256_and_ps(v[k], absmask), m);
        }
        /* m holds no NaN now; max is exact, so the reduction order does not matter */
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        float amax = _mm_cvtss_f32(m4);
        float scale = amax / 127.0f;
        float inv = scale != 0.0f ? 1.0f / scale : 0.0f;
        d[b] = scale;
        const __m256 vinv = _mm256_set1_ps(inv);
        __m256i iv[4];
        for (int k = 0; k < 4; k++) {
            __m256 r = _mm256_round_ps(_mm256_mul_ps(v[k], vinv),
                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            r = _mm256_and_ps(r, _mm256_cmp_ps(r, r, _CMP_ORD_Q)); /* NaN -> +0 */
            r = _mm256_min_ps(_mm256_max_ps(r, lo), hi);
            iv[k] = _mm256_cvtps_epi32(r); /* exact: integral values in [-127, 127] */
        }
        /* packs work per 128-bit half: bytes come out as 4-value groups in the order
         * v0[0..3] v1[0..3] v2[0..3] v3[0..3] v0[4..7] v1[4..7] v2[4..7] v3[4..7] */
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(iv[0], iv[1]),
                                       _mm256_packs_epi32(iv[2], iv[3]));
        p = _mm256_permutevar8x32_epi32(p, order);
        _mm256_storeu_si256((__m256i *)(void *)(q + b * Q_QBLOCK), p);
    }
}

/* ---- the shared per-output pieces ---- */

/* 8 weights of a float-type row at column j, as float32 */
QA_INLINE __m256 bf16x8_to_ps(__m128i h)
{
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

QA_INLINE __m256 load_w8(const unsigned char *row, size_t j, int kind)
{
    if (kind == Q_FK_F16)
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(row + j * 2)));
    if (kind == Q_FK_BF16)
        return bf16x8_to_ps(_mm_loadu_si128((const __m128i *)(const void *)(row + j * 2)));
    return _mm256_loadu_ps((const float *)(const void *)(row + j * 4));
}

/* The last rem (< 8) weights from column j, zero-padded to 8 */
QA_INLINE __m256 load_w_tail(const unsigned char *row, size_t j, size_t rem, int kind)
{
    if (kind != Q_FK_F32) {
        uint16_t h[8] = {0};
        memcpy(h, row + j * 2, rem * 2);
        __m128i hv = _mm_loadu_si128((const __m128i *)(const void *)h);
        return kind == Q_FK_F16 ? _mm256_cvtph_ps(hv) : bf16x8_to_ps(hv);
    }
    float f[8] = {0};
    memcpy(f, row + j * 4, rem * 4);
    return _mm256_loadu_ps(f);
}

#define MAX_R 8
#define MAX_T 4
#define QT 4 /* tokens per int8 prefill tile */

/* Layouts of the int8 weights (the `lay` argument of the int8 helpers) */
enum { LAY_Q8_0 = 0, LAY_SPLIT = 1, LAY_Q4_0 = 2, LAY_Q6_K = 3, LAY_Q4_K = 4, LAY_Q5_K = 5 };

/* The K layouts with a min per sub-block (unsigned codes) */
#define LAY_IS_KMIN(lay) ((lay) == LAY_Q4_K || (lay) == LAY_Q5_K)
/* Bytes per 256-value super-block of a K layout */
#define LAY_SB_BYTES(lay)                                                                \
    ((lay) == LAY_Q4_K ? Q_Q4_K_BLOCK_BYTES                                              \
     : (lay) == LAY_Q5_K ? Q_Q5_K_BLOCK_BYTES                                            \
                         : Q_Q6_K_BLOCK_BYTES)

/* The tensor type of a layout (the name of its bench/mca.sh region) */
#define LAY_TYPE(lay)                                                                    \
    ((lay) == LAY_Q8_0   ? Q_TENSOR_Q8_0                                                 \
     : (lay) == LAY_SPLIT ? Q_TENSOR_Q8_SPLIT                                            \
     : (lay) == LAY_Q4_0  ? Q_TENSOR_Q4_0                                                \
     : (lay) == LAY_Q6_K  ? Q_TENSOR_Q6_K                                                \
     : (lay) == LAY_Q4_K  ? Q_TENSOR_Q4_K                                                \
                          : Q_TENSOR_Q5_K)

/* Bytes per 32-value block of a blocked layout (Q8_0, Q4_0) */
#define LAY_BLOCK_BYTES(lay) ((lay) == LAY_Q4_0 ? Q_Q4_0_BLOCK_BYTES : Q_Q8_0_BLOCK_BYTES)

/*
 * Float tile: R weight rows starting at w (row stride wstride bytes) x T activation rows
 * xs[0..T) (n floats each); out[t][r] = outs[t][r]. R, T are compile-time constants at every
 * call site (the loops unroll and the accumulators live in registers).
 */
QA_INLINE void ftile(float *const *outs, const unsigned char *w, size_t wstride,
                     const float *const *xs, size_t n, int R, int T, int kind)
{
    __m256 acc[MAX_R][MAX_T]; /* (R, T) one accumulator chain per output */
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 3
        for (int t = 0; t < T; t++)
            acc[r][t] = _mm256_setzero_ps();
    /* Decode (T == 1): prefetch the next tile's bytes (R contiguous rows, like this
     * tile's), spread over this tile's steps in address order, one line per line consumed:
     * short rows never let the hardware prefetcher ramp up (see the int8 decode). */
    size_t steps = n / 8 > 0 ? n / 8 : 1;
    size_t pf_step = T == 1 ? ((size_t)R * wstride + steps - 1) / steps : 0;
    uintptr_t pf = (uintptr_t)w + (size_t)R * wstride; /* an address only: never read */
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        if (T == 1) {
            for (size_t o = 0; o < pf_step; o += 64)
                _mm_prefetch((const char *)(pf + o), _MM_HINT_T0);
            pf += pf_step;
        }
        __m256 xv[MAX_T];
#pragma GCC unroll 3
        for (int t = 0; t < T; t++)
            xv[t] = _mm256_loadu_ps(xs[t] + j);
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            __m256 wv = load_w8(w + (size_t)r * wstride, j, kind);
#pragma GCC unroll 3
            for (int t = 0; t < T; t++)
                acc[r][t] = _mm256_fmadd_ps(wv, xv[t], acc[r][t]);
        }
    }
    if (j < n) {
        size_t rem = n - j;
        __m256 xv[MAX_T];
#pragma GCC unroll 3
        for (int t = 0; t < T; t++) {
            float f[8] = {0};
            memcpy(f, xs[t] + j, rem * sizeof(float));
            xv[t] = _mm256_loadu_ps(f);
        }
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            __m256 wv = load_w_tail(w + (size_t)r * wstride, j, rem, kind);
#pragma GCC unroll 3
            for (int t = 0; t < T; t++)
                acc[r][t] = _mm256_fmadd_ps(wv, xv[t], acc[r][t]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 3
        for (int t = 0; t < T; t++)
            outs[t][r] = q_hsum8(acc[r][t]);
}

#define FTILE(R, T, KIND, NAME)                                                              \
    static __attribute__((noinline)) void NAME(float *const *outs, const unsigned char *w, \
                                               size_t wstride, const float *const *xs,   \
                                               size_t n)                                 \
    {                                                                                    \
        ftile(outs, w, wstride, xs, n, R, T, KIND);                                      \
    }
FTILE(4, 3, Q_FK_F32, f32_4x3)
FTILE(4, 1, Q_FK_F32, f32_4x1)
FTILE(8, 1, Q_FK_F32, f32_8x1)
FTILE(1, 3, Q_FK_F32, f32_1x3)
FTILE(1, 1, Q_FK_F32, f32_1x1)
FTILE(4, 3, Q_FK_F16, f16_4x3)
FTILE(4, 1, Q_FK_F16, f16_4x1)
FTILE(8, 1, Q_FK_F16, f16_8x1)
FTILE(1, 3, Q_FK_F16, f16_1x3)
FTILE(1, 1, Q_FK_F16, f16_1x1)
FTILE(4, 3, Q_FK_BF16, bf16_4x3)
FTILE(4, 1, Q_FK_BF16, bf16_4x1)
FTILE(8, 1, Q_FK_BF16, bf16_8x1)
FTILE(1, 3, Q_FK_BF16, bf16_1x3)
FTILE(1, 1, Q_FK_BF16, bf16_1x1)

static const q_ftiles f32_tiles = {f32_4x3, f32_4x1, f32_8x1, f32_1x3, f32_1x1, 3};
static const q_ftiles f16_tiles = {f16_4x3, f16_4x1, f16_8x1, f16_1x3, f16_1x1, 3};
static const q_ftiles bf16_tiles = {bf16_4x3, bf16_4x1, bf16_8x1, bf16_1x3, bf16_1x1, 3};

static void matmul_float(float *out, size_t out_stride, const q_tensor *w, size_t r0, size_t r1,
                         const q_act *x, int kind)
{
    q_float_tiles_run(out, out_stride, w, r0, r1, x, kind == Q_FK_F32 ? 4u : 2u,
                      kind == Q_FK_F16    ? &f16_tiles
                      : kind == Q_FK_BF16 ? &bf16_tiles
                                          : &f32_tiles);
}

/* ---- int8 x int8 ---- */

/* Where a tile's weight rows are: Q8_0 rows of 34-byte blocks, Q4_0 rows of 18-byte blocks,
 * or Q8_SPLIT rows of bytes with a float scale per group of gs values (gs a multiple of 32;
 * the group index of each row's block advances incrementally, no division per block). */
typedef struct qrows {
    const unsigned char *row[MAX_R]; /* Q8_0, Q4_0: first block of the row; split: first byte */
    const unsigned char *scales;     /* split: the float32 scales */
    size_t group[MAX_R];             /* split: group of the current block */
    size_t inb[MAX_R];               /* split: blocks of the current group already passed */
    size_t bpg;                      /* split: blocks per group */
} qrows;

/* Scale of the current block of row r, advancing the split group counters. */
QA_INLINE float q_wscale(qrows *wr, int r, size_t b, int lay)
{
    if (lay == LAY_SPLIT) {
        float ws = q_load_f32(wr->scales + wr->group[r] * 4);
        if (++wr->inb[r] == wr->bpg) {
            wr->inb[r] = 0;
            wr->group[r]++;
        }
        return ws;
    }
    uint16_t h;
    if (lay == LAY_Q6_K) /* the super-block's d */
        memcpy(&h, wr->row[r] + b / 8 * Q_Q6_K_BLOCK_BYTES + Q_Q6_K_D, 2);
    else if (LAY_IS_KMIN(lay)) /* the super-block's d (its dmin: q_kmins) */
        memcpy(&h, wr->row[r] + b / 8 * LAY_SB_BYTES(lay), 2);
    else
        memcpy(&h, wr->row[r] + b * LAY_BLOCK_BYTES(lay), 2);
    return _cvtsh_ss(h);
}

/*
 * The 8 scales of a full chunk of row r of a Q8_SPLIT tensor (the chunk starts at the
 * current block), advancing the group counters by 8 blocks: the same floats q_wscale
 * returns one by one, read with one or two loads where the layout allows it. Groups of
 * 1, 2 or 4 blocks starting at the chunk's first block: 8, 4 or 2 consecutive scales,
 * each repeated per block; groups of 8 blocks or more: the chunk spans at most two groups
 * (one broadcast, or a blend of two at the group boundary). Anything else (groups of 3, 5,
 * 6 or 7 blocks, or of 2 or 4 not aligned with the chunk) goes one scale at a time.
 * Never reads a scale the chunk does not use.
 */
QA_INLINE __m256 q_split_scales8(qrows *wr, int r)
{
    size_t bpg = wr->bpg, g = wr->group[r], inb = wr->inb[r];
    const unsigned char *sb = wr->scales + g * 4; /* unaligned: byte loads (memcpy) */
    const float *s = (const float *)(const void *)sb;
    if (bpg == 1) {
        wr->group[r] = g + 8;
        return _mm256_loadu_ps(s);
    }
    if (bpg >= 8) {
        size_t left = bpg - inb; /* blocks of group g from the chunk's first on */
        if (left > 8) {
            wr->inb[r] = inb + 8;
            return _mm256_set1_ps(q_load_f32(sb));
        }
        if (left == 8) {
            wr->inb[r] = 0;
            wr->group[r] = g + 1;
            return _mm256_set1_ps(q_load_f32(sb));
        }
        /* lanes k < left: group g; the others: group g + 1 (bpg >= 8 > 8 - left) */
        const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        __m256 in_next = _mm256_castsi256_ps(
            _mm256_cmpgt_epi32(iota, _mm256_set1_epi32((int)left - 1)));
        wr->inb[r] = 8 - left;
        wr->group[r] = g + 1;
        return _mm256_blendv_ps(_mm256_set1_ps(q_load_f32(sb)),
                                _mm256_set1_ps(q_load_f32(sb + 4)), in_next);
    }
    if (inb == 0 && bpg == 2) {
        wr->group[r] = g + 4;
        __m128 v = _mm_loadu_ps(s);
        return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(v),
                                        _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3));
    }
    if (inb == 0 && bpg == 4) {
        wr->group[r] = g + 2;
        __m128 v = _mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)(const void *)s));
        return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(v),
                                        _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1));
    }
    float ws[8];
    for (size_t k = 0; k < 8; k++)
        ws[k] = q_wscale(wr, r, 0, LAY_SPLIT);
    return _mm256_loadu_ps(ws);
}

/* The 32 int8 weights of block b of row r, in order: Q8_0 and split read them; Q4_0
 * unpacks its 16 bytes (low nibbles are weights 0..15, high nibbles 16..31) and subtracts 8,
 * giving codes in [-8, 7] */
QA_INLINE __m256i q_wblock(const qrows *wr, int r, size_t b, int lay)
{
    if (lay == LAY_Q4_0)
        return q_unpack_q4_0(wr->row[r] + b * Q_Q4_0_BLOCK_BYTES + 2);
    if (lay == LAY_Q6_K) /* block b % 8 of its super-block */
        return q_unpack_q6_k(wr->row[r] + b / 8 * Q_Q6_K_BLOCK_BYTES, b % 8);
    if (lay == LAY_Q4_K) /* sub-block b % 8, codes in [0, 15] */
        return q_unpack_q4_k(wr->row[r] + b / 8 * Q_Q4_K_BLOCK_BYTES, b % 8);
    if (lay == LAY_Q5_K) /* sub-block b % 8, codes in [0, 31] */
        return q_unpack_q5_k(wr->row[r] + b / 8 * Q_Q5_K_BLOCK_BYTES, b % 8);
    const unsigned char *p = lay == LAY_SPLIT ? wr->row[r] + b * Q_QBLOCK
                                              : wr->row[r] + b * Q_Q8_0_BLOCK_BYTES + 2;
    return _mm256_loadu_si256((const __m256i *)(const void *)p);
}

/* The 16-bit multipliers of a block's pair sums (q_block_dot): ones, or for Q6_K the
 * int8 scales of its two 16-weight halves (lanes 0-7: the first half's, 8-15: the second's) */
QA_INLINE __m256i q_wmul(const qrows *wr, int r, size_t b, int lay)
{
    if (lay != LAY_Q6_K)
        return _mm256_set1_epi16(1);
    const unsigned char *sc = wr->row[r] + b / 8 * Q_Q6_K_BLOCK_BYTES + Q_Q6_K_SCALES + b % 8 * 2;
    return _mm256_set_m128i(_mm_set1_epi16((short)(int8_t)sc[1]), _mm_set1_epi16((short)(int8_t)sc[0]));
}

/* Q6_K decode: block 4h + j's multipliers (as q_wmul) from the super-block's 16 half-block
 * scales as int16 with 128-bit half h in both halves of s16h (h = 0: scales 0..7, 1: 8..15):
 * lanes 0-7 take scale 2j of that half, lanes 8-15 scale 2j + 1 (one in-lane shuffle). */
QA_INLINE __m256i q6k_pair_scales(__m256i s16h, int j)
{
    const char a = (char)(4 * j), b = (char)(4 * j + 2);
    const __m256i pick = _mm256_setr_epi8(a, (char)(a + 1), a, (char)(a + 1), a, (char)(a + 1), a,
                                          (char)(a + 1), a, (char)(a + 1), a, (char)(a + 1), a,
                                          (char)(a + 1), a, (char)(a + 1), b, (char)(b + 1), b,
                                          (char)(b + 1), b, (char)(b + 1), b, (char)(b + 1), b,
                                          (char)(b + 1), b, (char)(b + 1), b, (char)(b + 1), b,
                                          (char)(b + 1));
    return _mm256_shuffle_epi8(s16h, pick);
}

/* 8 exact int32 partial sums of one 32-value block: sum of x[j] * w[j] = |w[j]| * (x[j] *
 * sign(w[j])) through maddubs (u8 x s8 -> pairs of s16, no saturation for x in [-127, 127]
 * and |w| <= 128) and madd with the multipliers m (-> s32: ones, or Q6_K's half-block
 * scales, |pair sum * scale| <= 2 * 32 * 127 * 128 < 2^21). aw = |wv|. */
QA_INLINE __m256i q_block_dot(__m256i aw, __m256i wv, __m256i m, const int8_t *xq)
{
    __m256i xv = _mm256_loadu_si256((const __m256i *)(const void *)xq);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(xv, wv)), m);
}

/* 8 exact int32 partial sums of the unsigned codes w (Q4_K, Q5_K: <= 31) times a 32-value
 * activation block: maddubs (u8 x s8, |pair| <= 2 * 31 * 128) then madd with ones. */
QA_INLINE __m256i q_block_dot_u(__m256i w, const int8_t *xq)
{
    __m256i xv = _mm256_loadu_si256((const __m256i *)(const void *)xq);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(w, xv), _mm256_set1_epi16(1));
}

/* The 8 block sums of a chunk's activations (lane k: sum of block c+k's 32 int8), exact,
 * as float (|sum| <= 32 * 128) */
QA_INLINE __m256 q_xsums8(const int8_t *xq)
{
    __m256i v[8];
#pragma GCC unroll 8
    for (size_t k = 0; k < 8; k++)
        v[k] = q_block_dot_u(_mm256_set1_epi8(1), xq + k * Q_QBLOCK);
    return _mm256_cvtepi32_ps(q_sum8x8(v));
}

/*
 * One chunk of a Q4_K / Q5_K tile: a whole super-block (8 blocks c .. c+8, one d and one
 * dmin). For each output: the 8 exact code sums sum(code * x) (lane k: block c+k) times
 * the 8 6-bit scales (exact int32), as float, FMA'd with d * xd; then the 8 mins times the
 * 8 exact activation block sums (exact in float), FNMA'd with dmin * xd: the reference's
 * two terms, in the same order for every output.
 */
QA_INLINE void qchunk_kmin(__m256 (*acc)[MAX_T], const qrows *wr, const int8_t *const *xq,
                           const float *const *xd, size_t c, int R, int T, int lay)
{
    __m256 dv[MAX_R], dminv[MAX_R], minv[MAX_R], xdv[MAX_T], xsv[MAX_T];
    __m256i scv[MAX_R], wv[MAX_R][8];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        const unsigned char *sb = wr->row[r] + c / 8 * LAY_SB_BYTES(lay);
        uint16_t h[2];
        memcpy(h, sb, 4);
        dv[r] = _mm256_set1_ps(_cvtsh_ss(h[0]));
        dminv[r] = _mm256_set1_ps(_cvtsh_ss(h[1]));
        __m128i sm = q_k_scales_mins(sb + Q_QK_SCALES);
        scv[r] = _mm256_cvtepu8_epi32(sm);
        minv[r] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(sm, 8)));
        if (T > 1)
#pragma GCC unroll 8
            for (size_t k = 0; k < 8; k++)
                wv[r][k] = q_wblock(wr, r, c + k, lay);
    }
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
        xdv[t] = _mm256_loadu_ps(xd[t] + c);
        xsv[t] = q_xsums8(xq[t] + c * Q_QBLOCK);
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            __m256i v[8]; /* (8) the chunk's block partial sums */
#pragma GCC unroll 8
            for (size_t k = 0; k < 8; k++)
                v[k] = q_block_dot_u(T > 1 ? wv[r][k] : q_wblock(wr, r, c + k, lay),
                                     xq[t] + (c + k) * Q_QBLOCK);
            __m256 qs = _mm256_cvtepi32_ps(_mm256_mullo_epi32(q_sum8x8(v), scv[r]));
            acc[r][t] = _mm256_fmadd_ps(qs, _mm256_mul_ps(dv[r], xdv[t]), acc[r][t]);
            acc[r][t] = _mm256_fnmadd_ps(_mm256_mul_ps(minv[r], xsv[t]),
                                         _mm256_mul_ps(dminv[r], xdv[t]), acc[r][t]);
        }
}

/*
 * One chunk of up to 8 blocks (c .. c+nbc) for an int8 tile; see qtile. Inlined with
 * nbc = 8 for the full chunks, so their per-block tests fold away.
 */
QA_INLINE void qchunk(__m256 (*acc)[MAX_T], qrows *wr, const int8_t *const *xq,
                      const float *const *xd, size_t c, size_t nbc, int R, int T, int lay)
{
    __m256 wsv[MAX_R], xdv[MAX_T]; /* (R), (T) scales of the chunk's blocks */
    __m256i wv[MAX_R][8], aw[MAX_R][8]; /* (R, 8) weights and |w| of the chunk (T > 1) */
    /* Q6_K decode (T == 1): each row's 16 half-block scales as int16, half 0 (scales 0..7)
     * in both 128-bit halves of s16[r][0], half 1 in s16[r][1]: q6k_pair_scales takes a
     * block's multipliers from them with one shuffle (instead of q_wmul's loads and
     * broadcasts per block) */
    __m256i s16[MAX_R][2];
    const int q6k_decode = lay == LAY_Q6_K && T == 1 && nbc == 8;
    /* Q4_0 decode (T == 1, a full chunk): the nibbles (code + 8, 0..15) go into maddubs as
     * its unsigned operand, no |w| / sign steps, and 8 * (each block's activation sum, the
     * same for every row) comes off the 8 block sums at once: exact, as the signed path */
    const int q40_decode = lay == LAY_Q4_0 && T == 1 && nbc == 8;
    __m256i x8off = _mm256_setzero_si256(); /* lane k: 8 * sum of block c + k's activations */
    if (q40_decode) {
        __m256i xs[8];
#pragma GCC unroll 8
        for (size_t k = 0; k < 8; k++)
            xs[k] = q_block_dot_u(_mm256_set1_epi8(1), xq[0] + (c + k) * Q_QBLOCK);
        x8off = _mm256_slli_epi32(q_sum8x8(xs), 3);
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        if (q6k_decode) {
            __m256i v = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(
                wr->row[r] + c / 8 * Q_Q6_K_BLOCK_BYTES + Q_Q6_K_SCALES)));
            s16[r][0] = _mm256_permute2x128_si256(v, v, 0x00);
            s16[r][1] = _mm256_permute2x128_si256(v, v, 0x11);
        } else {
            s16[r][0] = s16[r][1] = _mm256_setzero_si256(); /* unused */
        }
        if (lay == LAY_Q6_K && nbc == 8) { /* a whole super-block: one d */
            wsv[r] = _mm256_set1_ps(q_wscale(wr, r, c, lay));
        } else if (lay == LAY_SPLIT && nbc == 8) {
            wsv[r] = q_split_scales8(wr, r);
        } else if (lay == LAY_SPLIT || lay == LAY_Q6_K) {
            float ws[8] = {0};
            for (size_t k = 0; k < nbc; k++)
                ws[k] = q_wscale(wr, r, c + k, lay);
            wsv[r] = _mm256_loadu_ps(ws);
        } else if (nbc == 8) { /* the 8 binary16 block scales (a block apart) into one
                                * vector: packed four to a 64-bit word by integer shifts
                                * and ors, then two moves into the vector. One pinsrw per
                                * scale kept the vector-insert pipes busiest (llvm-mca,
                                * znver3: 93.8 -> 62.3 cycles per 1000 Q8_0 weights) */
            const size_t bb = LAY_BLOCK_BYTES(lay);
            const unsigned char *p0 = wr->row[r] + c * bb;
            uint64_t half[2] = {0, 0};
#pragma GCC unroll 8
            for (size_t k = 0; k < 8; k++) {
                uint16_t hk;
                memcpy(&hk, p0 + k * bb, 2);
                half[k / 4] |= (uint64_t)hk << (16 * (k % 4));
            }
            wsv[r] = _mm256_cvtph_ps(_mm_set_epi64x((long long)half[1], (long long)half[0]));
        } else { /* a short last chunk: the nbc scales one by one */
            __m128i h = _mm_setzero_si128();
            const size_t bb = LAY_BLOCK_BYTES(lay);
            const unsigned char *p0 = wr->row[r] + c * bb;
#define Q_INS(k) /* (the lane index of pinsrw must be a constant) */                    \
    if ((k) < nbc) {                                                                     \
        uint16_t hk;                                                                     \
        memcpy(&hk, p0 + (k) * bb, 2);                                                   \
        h = _mm_insert_epi16(h, (short)hk, (k));                                         \
    }
            Q_INS(0)
            Q_INS(1)
            Q_INS(2)
            Q_INS(3)
            Q_INS(4)
            Q_INS(5)
            Q_INS(6)
            Q_INS(7)
#undef Q_INS
            wsv[r] = _mm256_cvtph_ps(h);
        }
        if (T > 1)
#pragma GCC unroll 8
            for (size_t k = 0; k < 8; k++) {
                wv[r][k] = k < nbc ? q_wblock(wr, r, c + k, lay) : _mm256_setzero_si256();
                aw[r][k] = _mm256_abs_epi8(wv[r][k]);
            }
    }
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
        if (nbc == 8) {
            xdv[t] = _mm256_loadu_ps(xd[t] + c);
        } else {
            float f[8] = {0};
            memcpy(f, xd[t] + c, nbc % 8 * sizeof(float)); /* nbc < 8 here */
            xdv[t] = _mm256_loadu_ps(f);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            __m256i v[8]; /* (8) the chunk's block partial sums */
#pragma GCC unroll 8
            for (size_t k = 0; k < 8; k++) {
                if (q40_decode) {
                    /* the block's 16 bytes in both 128-bit halves (a broadcast load), the
                     * upper half shifted down a nibble: weights 0..15 | 16..31 as 0..15 */
                    const unsigned char *qs = wr->row[r] + (c + k) * Q_Q4_0_BLOCK_BYTES + 2;
                    __m256i nib = _mm256_and_si256(
                        _mm256_srlv_epi64(_mm256_broadcastsi128_si256(
                                              _mm_loadu_si128((const __m128i *)(const void *)qs)),
                                          _mm256_setr_epi64x(0, 0, 4, 4)),
                        _mm256_set1_epi8(15));
                    v[k] = q_block_dot_u(nib, xq[t] + (c + k) * Q_QBLOCK);
                } else if (k < nbc) {
                    __m256i w = T > 1 ? wv[r][k] : q_wblock(wr, r, c + k, lay);
                    __m256i a = T > 1 ? aw[r][k] : _mm256_abs_epi8(w);
                    __m256i m = q6k_decode ? q6k_pair_scales(s16[r][k / 4], (int)(k % 4))
                                           : q_wmul(wr, r, c + k, lay);
                    v[k] = q_block_dot(a, w, m, xq[t] + (c + k) * Q_QBLOCK);
                } else {
                    v[k] = _mm256_setzero_si256();
                }
            }
            __m256 sc = _mm256_mul_ps(wsv[r], xdv[t]); /* ws * xd, as the reference */
            __m256i sums = nbc == 8 ? q_sum8x8(v) : q_sum8x8_first(v, nbc);
            if (q40_decode)
                sums = _mm256_sub_epi32(sums, x8off);
            acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), sc, acc[r][t]);
        }
}

/*
 * Int8 tile: R rows x T activation rows (xq[t]: n int8, xd[t]: n/32 scales), lay selects
 * the weight layout (Q8_0, Q8_SPLIT, Q4_0). The blocks go 8 at a time (a chunk): for each output, the 8 exact
 * block sums become one int32 vector (lane k = block c+k), converted to float and FMA'd
 * with the 8 scale products ws*xd into the output's accumulator. A short last chunk has
 * zero sums and zero scales in its missing lanes. Per chunk, each row's 8 scales are
 * gathered once and (T > 1) its |w| blocks computed once for the T tokens.
 */
QA_INLINE void qtile(float *const *outs, const qrows *wr_in, const int8_t *const *xq,
                     const float *const *xd, size_t n, int R, int T, int lay)
{
    qrows w = *wr_in, *wr = &w; /* a local copy: row pointers and counters in registers */
    __m256 acc[MAX_R][MAX_T]; /* (R, T) one accumulator chain per output */
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
            acc[r][t] = _mm256_setzero_ps();
    size_t nb = n / Q_QBLOCK, c = 0;
    /* Decode (T == 1): the tile's R rows are contiguous, and so is the next tile; spread
     * prefetches of the next tile's bytes over this tile's chunks, in address order. Short
     * rows (816 bytes at 768 Q8_0 columns) are too short for the hardware prefetcher to
     * ramp up on each; a linear software stream one tile ahead is not (kernel_bench: cold
     * decode 7.5-9.4 -> 10-12.3 GB/s). Prefetches never fault, past the end included. */
    size_t tile_bytes = (size_t)R * (lay == LAY_SPLIT                       ? n
                                     : lay == LAY_Q6_K || LAY_IS_KMIN(lay) ? nb / 8 * LAY_SB_BYTES(lay)
                                                                           : nb * LAY_BLOCK_BYTES(lay));
    size_t full_chunks = nb / 8 > 0 ? nb / 8 : 1;
    size_t pf_step = (tile_bytes + full_chunks - 1) / full_chunks; /* bytes per chunk */
    uintptr_t pf = (uintptr_t)wr->row[0] + tile_bytes; /* an address only: never read */
    for (; c + 8 <= nb; c += 8) {
        if (T == 1 && R == 8)
            Q_MCA_BEGIN("avx2_decode", LAY_TYPE(lay));
        if (T == 1) {
            for (size_t o = 0; o < pf_step; o += 64)
                _mm_prefetch((const char *)(pf + o), _MM_HINT_T0);
            pf += pf_step;
        }
        if (LAY_IS_KMIN(lay)) /* rows of whole super-blocks: every chunk is full */
            qchunk_kmin(acc, wr, xq, xd, c, R, T, lay);
        else
            qchunk(acc, wr, xq, xd, c, 8, R, T, lay);
        if (T == 1 && R == 8)
            Q_MCA_END("avx2_decode", LAY_TYPE(lay));
    }
    if (c < nb && !LAY_IS_KMIN(lay))
        qchunk(acc, wr, xq, xd, c, nb - c, R, T, lay);
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
            outs[t][r] = q_hsum8(acc[r][t]);
}

#define QTILE(R, T, LAY, NAME)                                                          \
    static __attribute__((noinline)) void NAME(float *const *outs, const qrows *wr,         \
                                               const int8_t *const *xq,                 \
                                               const float *const *xd, size_t n)        \
    {                                                                                   \
        qtile(outs, wr, xq, xd, n, R, T, LAY);                                          \
    }
/* The five tiles of a layout: 4 x QT, 8 x 1, 4 x 1, 1 x QT, 1 x 1 */
#define QTILES(LAY, P)                                                                  \
    QTILE(4, QT, LAY, P##_4xT)                                                          \
    QTILE(8, 1, LAY, P##_8x1)                                                           \
    QTILE(4, 1, LAY, P##_4x1)                                                           \
    QTILE(1, QT, LAY, P##_1xT)                                                          \
    QTILE(1, 1, LAY, P##_1x1)
QTILES(LAY_Q8_0, q80)
QTILES(LAY_SPLIT, q8s)
QTILES(LAY_Q4_0, q40)
QTILES(LAY_Q6_K, q6k)
QTILES(LAY_Q4_K, q4k)
QTILES(LAY_Q5_K, q5k)

typedef void (*qtile_fn)(float *const *outs, const qrows *wr, const int8_t *const *xq,
                         const float *const *xd, size_t n);

/* Sets up the rows i .. i+R-1 of w in wr. */
static void qrows_at(qrows *wr, const q_tensor *w, size_t i, int R)
{
    size_t n = w->cols;
    const unsigned char *base = (const unsigned char *)w->data;
    for (int r = 0; r < R; r++) {
        size_t row = i + (size_t)r;
        if (w->type == Q_TENSOR_Q8_0) {
            wr->row[r] = base + row * (n / Q_QBLOCK) * Q_Q8_0_BLOCK_BYTES;
        } else if (w->type == Q_TENSOR_Q4_0) {
            wr->row[r] = base + row * (n / Q_QBLOCK) * Q_Q4_0_BLOCK_BYTES;
        } else if (w->type == Q_TENSOR_Q6_K) {
            wr->row[r] = base + row * (n / Q_QK_K) * Q_Q6_K_BLOCK_BYTES;
        } else if (w->type == Q_TENSOR_Q4_K) {
            wr->row[r] = base + row * (n / Q_QK_K) * Q_Q4_K_BLOCK_BYTES;
        } else if (w->type == Q_TENSOR_Q5_K) {
            wr->row[r] = base + row * (n / Q_QK_K) * Q_Q5_K_BLOCK_BYTES;
        } else {
            size_t e0 = row * n; /* flat index of the row's first value */
            wr->row[r] = base + e0;
            wr->group[r] = e0 / w->group_size;
            wr->inb[r] = e0 % w->group_size / Q_QBLOCK;
        }
    }
    wr->scales = (const unsigned char *)w->scales;
    wr->bpg = w->group_size / Q_QBLOCK;
}

/* True when activation row xq (n values) holds a -128, outside the sign trick's range. */
static int has_min_int8(const int8_t *xq, size_t n)
{
    const __m256i m = _mm256_set1_epi8(-128);
    __m256i any = _mm256_setzero_si256();
    for (size_t j = 0; j < n; j += Q_QBLOCK)
        any = _mm256_or_si256(any, _mm256_cmpeq_epi8(
                                       _mm256_loadu_si256((const __m256i *)(const void *)(xq + j)), m));
    return !_mm256_testz_si256(any, any);
}

static void matmul_int8(float *out, size_t out_stride, const q_tensor *w, size_t r0, size_t r1,
                        const q_act *x)
{
    size_t n = w->cols, nt = x->n_rows, nb = n / Q_QBLOCK;
    static const qtile_fn tiles[6][5] = {
        /* 4 x QT, 4 x 1, 1 x QT, 1 x 1, 8 x 1 */
        [LAY_Q8_0] = {q80_4xT, q80_4x1, q80_1xT, q80_1x1, q80_8x1},
        [LAY_SPLIT] = {q8s_4xT, q8s_4x1, q8s_1xT, q8s_1x1, q8s_8x1},
        [LAY_Q4_0] = {q40_4xT, q40_4x1, q40_1xT, q40_1x1, q40_8x1},
        [LAY_Q6_K] = {q6k_4xT, q6k_4x1, q6k_1xT, q6k_1x1, q6k_8x1},
        [LAY_Q4_K] = {q4k_4xT, q4k_4x1, q4k_1xT, q4k_1x1, q4k_8x1},
        [LAY_Q5_K] = {q5k_4xT, q5k_4x1, q5k_1xT, q5k_1x1, q5k_8x1},
    };
    int lay = w->type == Q_TENSOR_Q8_SPLIT ? LAY_SPLIT
              : w->type == Q_TENSOR_Q4_0   ? LAY_Q4_0
              : w->type == Q_TENSOR_Q6_K   ? LAY_Q6_K
              : w->type == Q_TENSOR_Q4_K   ? LAY_Q4_K
              : w->type == Q_TENSOR_Q5_K   ? LAY_Q5_K
                                           : LAY_Q8_0;
    qtile_fn big = tiles[lay][0], rows4 = tiles[lay][1], toksT = tiles[lay][2],
             one = tiles[lay][3], rows8 = tiles[lay][4];
    /* the activation rows the tiles take (at most 64 at a time), the others go to the
     * reference one row at a time */
    size_t good[64];
    for (size_t t0 = 0; t0 < nt; t0 += 64) {
        size_t t_end = nt - t0 < 64 ? nt : t0 + 64, ng = 0;
        for (size_t t = t0; t < t_end; t++) {
            if (!has_min_int8(x->q + t * n, n)) {
                good[ng++] = t;
                continue;
            }
            q_act one_row = {.f = x->f != NULL ? x->f + t * n : NULL, .q = x->q + t * n,
                             .d = x->d + t * nb, .cols = n, .n_rows = 1};
            q_kernels_scalar()->matmul(out + t * out_stride, out_stride, w, r0, r1, &one_row);
        }
        float *outs[MAX_T];
        const int8_t *xq[MAX_T];
        const float *xd[MAX_T];
        qrows wr;
        if (ng < QT) { /* decode: 8 rows per pass (8 weight streams), one token at a time */
            for (size_t g = 0; g < ng; g++) {
                size_t t = good[g];
                xq[0] = x->q + t * n;
                xd[0] = x->d + t * nb;
                for (size_t i = r0; i < r1;) {
                    int R = r1 - i >= 8 ? 8 : r1 - i >= 4 ? 4 : 1;
                    outs[0] = out + t * out_stride + i;
                    qrows_at(&wr, w, i, R);
                    (R == 8 ? rows8 : R == 4 ? rows4 : one)(outs, &wr, xq, xd, n);
                    i += (size_t)R;
                }
            }
            continue;
        }
        for (size_t i = r0; i < r1;) {
            int R = r1 - i >= 4 ? 4 : 1;
            size_t g = 0;
            for (; g + QT <= ng; g += QT) {
                for (int k = 0; k < QT; k++) {
                    size_t t = good[g + (size_t)k];
                    xq[k] = x->q + t * n;
                    xd[k] = x->d + t * nb;
                    outs[k] = out + t * out_stride + i;
                }
                qrows_at(&wr, w, i, R);
                (R == 4 ? big : toksT)(outs, &wr, xq, xd, n);
            }
            for (; g < ng; g++) {
                size_t t = good[g];
                xq[0] = x->q + t * n;
                xd[0] = x->d + t * nb;
                outs[0] = out + t * out_stride + i;
                qrows_at(&wr, w, i, R);
                (R == 4 ? rows4 : one)(outs, &wr, xq, xd, n);
            }
            i += (size_t)R;
        }
    }
}

void q_avx2_matmul(float *out, size_t out_stride, const q_tensor *w, size_t r0, size_t r1,
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
    case Q_TENSOR_Q8_0:
    case Q_TENSOR_Q4_0:
    case Q_TENSOR_Q4_K:
    case Q_TENSOR_Q5_K:
    case Q_TENSOR_Q6_K:
    case Q_TENSOR_Q8_SPLIT:
        if (x->q != NULL && q_kernels_wants_q8(w)) {
            matmul_int8(out, out_stride, w, r0, r1, x);
            return;
        }
        break;
    }
    q_kernels_scalar()->matmul(out, out_stride, w, r0, r1, x);
}
