/*
 * The walk over a float-weight matmul's outputs, shared by the SIMD tables: which tile
 * computes which outputs. The tiles themselves (register blocking, the per-output
 * operation sequence) are each table's own, in its *_avx2.c / *_avx512.c file; this walk
 * is plain C and only decides the grouping, which never changes a result (the
 * determinism rule of qorus_kernels.h).
 *
 *   decode (fewer than T activation rows): per token, 8 rows per pass, then single rows;
 *   prefill: 4-row panels outermost (a panel of W stays in L1 while every token group
 *   streams past it: each weight row is read from memory once per batch), groups of T
 *   tokens inside, then the tokens left over one at a time; a last panel of 1-3 rows
 *   goes row by row.
 */
#ifndef QORUS_FLOAT_TILES_H
#define QORUS_FLOAT_TILES_H

#include "qorus_kernels.h"

#define Q_FTILE_MAX_T 8 /* the largest token group a table's prefill tile takes */

/* Element types of float weights, as the tiles' load helpers take them (`kind`) */
enum { Q_FK_F32 = 0, Q_FK_F16 = 1, Q_FK_BF16 = 2 };

/* A tile: outs[t][r] = dot(row r of the R rows at w (row stride wstride bytes), xs[t]) */
typedef void (*q_ftile_fn)(float *const *outs, const unsigned char *w, size_t wstride,
                           const float *const *xs, size_t n);

/* One table's tiles for one weight type: R rows x T tokens */
typedef struct q_ftiles {
    q_ftile_fn big;   /* 4 x T */
    q_ftile_fn rows4; /* 4 x 1 */
    q_ftile_fn rows8; /* 8 x 1 */
    q_ftile_fn toks;  /* 1 x T */
    q_ftile_fn one;   /* 1 x 1 */
    size_t T;         /* tokens per prefill group, <= Q_FTILE_MAX_T */
} q_ftiles;

/* out[t * out_stride + i] for r0 <= i < r1, t < x->n_rows, with the tiles of `tl`;
 * elem_bytes: bytes per weight (4 for F32, 2 for F16 and BF16). */
static inline void q_float_tiles_run(float *out, size_t out_stride, const q_tensor *w,
                                     size_t r0, size_t r1, const q_act *x, size_t elem_bytes,
                                     const q_ftiles *tl)
{
    size_t n = w->cols, nt = x->n_rows, T = tl->T;
    size_t wstride = n * elem_bytes; /* bytes per weight row */
    const unsigned char *base = (const unsigned char *)w->data;
    float *outs[Q_FTILE_MAX_T];
    const float *xs[Q_FTILE_MAX_T];
    if (nt < T) { /* decode: 8 rows per pass, one token at a time */
        for (size_t t = 0; t < nt; t++) {
            xs[0] = x->f + t * n;
            size_t i = r0;
            for (; i + 8 <= r1; i += 8) {
                outs[0] = out + t * out_stride + i;
                tl->rows8(outs, base + i * wstride, wstride, xs, n);
            }
            for (; i < r1; i++) {
                outs[0] = out + t * out_stride + i;
                tl->one(outs, base + i * wstride, wstride, xs, n);
            }
        }
        return;
    }
    for (size_t i = r0; i < r1;) { /* prefill: 4-row panels (outer), token groups (inner) */
        int four = r1 - i >= 4;
        const unsigned char *wi = base + i * wstride;
        size_t t = 0;
        for (; t + T <= nt; t += T) {
            for (size_t k = 0; k < T; k++) {
                xs[k] = x->f + (t + k) * n;
                outs[k] = out + (t + k) * out_stride + i;
            }
            (four ? tl->big : tl->toks)(outs, wi, wstride, xs, n);
        }
        for (; t < nt; t++) {
            xs[0] = x->f + t * n;
            outs[0] = out + t * out_stride + i;
            (four ? tl->rows4 : tl->one)(outs, wi, wstride, xs, n);
        }
        i += four ? 4u : 1u;
    }
}

#endif
