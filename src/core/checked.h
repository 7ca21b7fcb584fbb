/*
 * Checked size arithmetic. Every size computation of the library goes through these: they
 * return 1 and store the result on success, return 0 (leaving *out unspecified) on overflow.
 */
#ifndef QORUS_CHECKED_H
#define QORUS_CHECKED_H

#include <stddef.h>
#include <stdint.h>

static inline int q_add_size(size_t a, size_t b, size_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}

static inline int q_mul_size(size_t a, size_t b, size_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}

/* Rounds `n` up to a multiple of `align` (a power of two). */
static inline int q_align_up(size_t n, size_t align, size_t *out)
{
    size_t sum;
    if (__builtin_add_overflow(n, align - 1, &sum))
        return 0;
    *out = sum & ~(align - 1);
    return 1;
}

static inline int q_is_pow2(size_t n)
{
    return n != 0 && (n & (n - 1)) == 0;
}

#endif
