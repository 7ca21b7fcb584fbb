/*
 * qorus kernels: the arithmetic of the forward pass as a table of functions, one table per
 * instruction set, chosen once at start-up.
 *
 *   q_kernels_scalar()   the REFERENCE: plain C, portable, what tests and fuzz targets
 *                        compare every optimized table against.
 *   q_kernels_avx2()     x86-64 AVX2 + FMA + F16C, compiled in its own file with its own
 *                        target flags; NULL when not compiled in or when the CPU lacks it.
 *   q_kernels_avx512()   x86-64 AVX-512 (F, BW, VL) + VNNI on top of AVX2: 512-bit float
 *                        matmul tiles and int8 matmuls on vpdpbusd; the element-wise
 *                        kernels are the AVX2 ones. NULL when not compiled in or unusable.
 *   q_kernels_select()   the table the forward pass uses: the best the CPU has, unless the
 *                        environment variable QORUS_KERNELS names one ("scalar", "avx2",
 *                        "avx512").
 *
 * Rules every table follows (DESIGN.md, "Optimized paths and their references"):
 *   - Weights are read in place from the mapping (unaligned, never expanded to float32).
 *   - Nothing allocates, prints, or keeps state; every function is thread-safe. A matmul
 *     may use up to 160 KiB of the calling thread's stack (the AVX-512 int8 prefill keeps
 *     its transposed activations there).
 *   - A matmul output element depends only on its weight row and its activation row: not
 *     on the row range [r0, r1) it was computed in, nor on how many activation rows were
 *     given. So splitting rows across threads, or running tokens as a batch instead of one
 *     at a time, gives bitwise-identical results within one table (a NaN result may come
 *     out with another sign or payload: IEEE 754 leaves that to the operand order).
 *   - Quantized activations (quantize_q8) are bitwise identical in every table, for every
 *     input (NaN, infinities and denormals included); integer block sums are exact, so
 *     tables differ only by float summation order (bounds: docs/kernels.md).
 */
#ifndef QORUS_KERNELS_H
#define QORUS_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "qorus_model.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Values per block of a quantized activation row (as ggml's Q8_0). */
#define Q_QBLOCK 32u

/**
 * `n_rows` activation rows of `cols` values each, in the forms the matmul kernels read:
 * always float32; also int8 blocks when the rows were quantized (cols % Q_QBLOCK == 0).
 */
typedef struct q_act {
    const float *f;  /* (n_rows, cols) float32, row stride cols */
    const int8_t *q; /* (n_rows, cols) int8, row stride cols; NULL when not quantized */
    const float *d;  /* (n_rows, cols / Q_QBLOCK) block scales, row stride cols / Q_QBLOCK */
    size_t cols;
    size_t n_rows;
} q_act;

/** True when matmul on `w` can use int8 activations: cols a multiple of Q_QBLOCK, and
 *  Q8_0, Q4_0, Q4_K, Q5_K, Q6_K, or Q8_SPLIT whose group_size is a multiple of Q_QBLOCK. */
int q_kernels_wants_q8(const q_tensor *w);

typedef struct q_kernels {
    const char *name; /* "scalar", "avx2", "avx512" */

    /**
     * Quantizes x (n values, n % Q_QBLOCK == 0) to n / Q_QBLOCK blocks: for each block,
     * amax = max |x| over its finite-or-infinite non-NaN values (NaN ignored),
     * d = amax / 127, id = d != 0 ? 1 / d : 0, q = nearest-even(x * id) clamped to
     * [-127, 127], with q = 0 where x * id is NaN. d[b] = d. Bitwise identical in every table.
     */
    void (*quantize_q8)(int8_t *q, float *d, const float *x, size_t n);

    /**
     * out[t * out_stride + i] = dot(W row i, x row t) for r0 <= i < r1 <= w->rows and
     * t < x->n_rows. `w` has passed q_tensor_check and w->cols == x->cols. When
     * q_kernels_wants_q8(w) and x->q is set (x->d too), the dot is the integer one:
     * sum over blocks b of (float)(sum of int8 products in b) * (weight scale * d[b]);
     * otherwise x->f is read (weights dequantized on the fly, float sums).
     * `out` must not overlap x or w.
     */
    void (*matmul)(float *out, size_t out_stride, const q_tensor *w, size_t r0, size_t r1,
                   const q_act *x);

    /** out[i] = weight[i] * (x[i] / sqrt(mean(x^2) + eps)) as run.c; `out` may equal `x`. */
    void (*rmsnorm)(float *out, const float *x, const float *weight, size_t n, float eps);

    /** In-place softmax of x[0..n) (max subtracted first); nothing for n == 0. */
    void (*softmax)(float *x, size_t n);

    /** gate[i] = silu(gate[i]) * up[i] = gate[i] / (1 + exp(-gate[i])) * up[i]. */
    void (*swiglu)(float *gate, const float *up, size_t n);

    /**
     * Rotates the interleaved pairs (vec[i], vec[i+1]), even i < n, by the angle of pair
     * p = (i % head_size) / 2: v0' = v0 cos[p] - v1 sin[p], v1' = v0 sin[p] + v1 cos[p].
     * n and head_size even, head_size divides n.
     */
    void (*rope)(float *vec, size_t n, size_t head_size, const float *cos_p,
                 const float *sin_p);

    /**
     * As rope, with NEOX pairs (qwen2): in each head (h a multiple of head_size, h < n) the
     * pair (v0, v1) = (vec[h + p], vec[h + p + head_size / 2]), p < head_size / 2, turns by
     * the angle of pair p: v0' = v0 cos[p] - v1 sin[p], v1' = v0 sin[p] + v1 cos[p].
     * n and head_size even, head_size divides n. Bitwise the same in every table.
     */
    void (*rope_neox)(float *vec, size_t n, size_t head_size, const float *cos_p,
                      const float *sin_p);

    /**
     * One attention head over positions 0..n_pos-1 (n_pos >= 1):
     * att[t] = dot(q, keys + t * stride) / sqrt(head_size) (head_size values),
     * softmax(att), out = sum_t att[t] * (values + t * stride). att holds n_pos floats
     * (scratch, left holding the probabilities). out must not overlap the others.
     */
    void (*attention)(float *out, const float *q, const float *keys, const float *values,
                      size_t stride, size_t n_pos, size_t head_size, float *att);
} q_kernels;

/** The reference table (always available). */
const q_kernels *q_kernels_scalar(void);

/** The AVX2+FMA+F16C table, or NULL when not built for this target or the CPU lacks a
 *  feature (checked with cpuid, once). */
const q_kernels *q_kernels_avx2(void);

/** The AVX-512 table: needs AVX512F, AVX512BW, AVX512VL and AVX512_VNNI besides what the
 *  AVX2 table needs, and the OS's consent to use the ZMM and mask state (xgetbv); NULL
 *  otherwise or when not built for this target (checked once). */
const q_kernels *q_kernels_avx512(void);

/**
 * The optimized tables this CPU can run, best first (each is compared with the reference
 * by the tests and fuzz_kernels): writes up to `cap` of them to out[] and returns how many
 * there are (which may exceed cap). The reference table is not among them.
 */
size_t q_kernels_optimized(const q_kernels **out, size_t cap);

/**
 * The table for the forward pass, chosen once per process: QORUS_KERNELS=scalar forces
 * the reference; QORUS_KERNELS=avx2 or =avx512 asks for that table (the next best when
 * unavailable: avx512 falls back to avx2, avx2 to the reference); anything else (or unset)
 * takes the best the CPU has. Never NULL.
 */
const q_kernels *q_kernels_select(void);

#ifdef __cplusplus
}
#endif

#endif /* QORUS_KERNELS_H */
