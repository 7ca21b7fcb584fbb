/*
 * Choosing a kernel table: the reference everywhere, the AVX2 table on x86-64 CPUs that
 * have AVX2, FMA and F16C, the AVX-512 table on those that also have AVX512F/BW/VL and
 * AVX512_VNNI (read with cpuid, with the OS's consent to use the YMM, and for AVX-512 the
 * ZMM and mask, state read with xgetbv), unless QORUS_KERNELS names a table. Chosen once
 * per process.
 */
#include "qorus_kernels.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels_internal.h"

#if defined(QORUS_HAVE_AVX2) && (defined(__x86_64__) || defined(__i386__))
#include <cpuid.h>

/* AVX2 + FMA + F16C usable: the CPU has them and the OS saves the YMM registers. */
static int cpu_has_avx2_fma_f16c(void)
{
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx))
        return 0;
    const unsigned int fma = 1u << 12, osxsave = 1u << 27, avx = 1u << 28, f16c = 1u << 29;
    if ((ecx & (fma | osxsave | avx | f16c)) != (fma | osxsave | avx | f16c))
        return 0;
    unsigned int xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    (void)xcr0_hi;
    if ((xcr0_lo & 6u) != 6u) /* XMM and YMM state */
        return 0;
    if (__get_cpuid_max(0, NULL) < 7)
        return 0;
    __cpuid_count(7, 0, eax, ebx, ecx, edx);
    return (ebx & (1u << 5)) != 0; /* AVX2 */
}

/* AVX512F + BW + VL + VNNI usable on top of the AVX2 set: the CPU has them and the OS
 * saves the opmask and the full ZMM registers (XCR0 bits 5, 6, 7). */
static int cpu_has_avx512_vnni(void)
{
    if (!cpu_has_avx2_fma_f16c())
        return 0;
    unsigned int eax, ebx, ecx, edx;
    unsigned int xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    (void)xcr0_hi;
    if ((xcr0_lo & 0xE6u) != 0xE6u)
        return 0;
    __cpuid_count(7, 0, eax, ebx, ecx, edx);
    const unsigned int f = 1u << 16, bw = 1u << 30, vl = 1u << 31, vnni = 1u << 11;
    return (ebx & (f | bw | vl)) == (f | bw | vl) && (ecx & vnni) != 0;
}

/* 1 or -1 once checked: the result of `check`, cached in `known`. */
static int known_once(atomic_int *known, int (*check)(void))
{
    int k = atomic_load_explicit(known, memory_order_relaxed);
    if (k == 0) {
        k = check() ? 1 : -1;
        atomic_store_explicit(known, k, memory_order_relaxed);
    }
    return k;
}

const q_kernels *q_kernels_avx2(void)
{
    static atomic_int known = 0; /* 0 unknown, 1 yes, -1 no */
    return known_once(&known, cpu_has_avx2_fma_f16c) > 0 ? q_kernels_avx2_table() : NULL;
}

#if defined(QORUS_HAVE_AVX512)
const q_kernels *q_kernels_avx512(void)
{
    static atomic_int known = 0;
    return known_once(&known, cpu_has_avx512_vnni) > 0 ? q_kernels_avx512_table() : NULL;
}
#else
const q_kernels *q_kernels_avx512(void)
{
    return NULL;
}
#endif
#else
const q_kernels *q_kernels_avx2(void)
{
    return NULL;
}

const q_kernels *q_kernels_avx512(void)
{
    return NULL;
}
#endif

size_t q_kernels_optimized(const q_kernels **out, size_t cap)
{
    const q_kernels *all[2] = {q_kernels_avx512(), q_kernels_avx2()}; /* best first */
    size_t n = 0;
    for (size_t i = 0; i < 2; i++) {
        if (all[i] == NULL)
            continue;
        if (out != NULL && n < cap)
            out[n] = all[i];
        n++;
    }
    return n;
}

int q_kernels_wants_q8(const q_tensor *w)
{
    if (w == NULL)
        return 0;
    if (w->cols % Q_QBLOCK != 0)
        return 0;
    /* every 32-value block of a row then lies inside one Q8_SPLIT scale group */
    return w->type == Q_TENSOR_Q8_0 || w->type == Q_TENSOR_Q4_0 || w->type == Q_TENSOR_Q4_K ||
           w->type == Q_TENSOR_Q5_K || w->type == Q_TENSOR_Q6_K ||
           (w->type == Q_TENSOR_Q8_SPLIT && w->group_size != 0 && w->group_size % Q_QBLOCK == 0);
}

const q_kernels *q_kernels_select(void)
{
    static _Atomic(const q_kernels *) chosen = NULL;
    const q_kernels *k = atomic_load_explicit(&chosen, memory_order_acquire);
    if (k != NULL)
        return k;
    const char *want = getenv("QORUS_KERNELS");
    if (want != NULL && strcmp(want, "scalar") == 0)
        k = q_kernels_scalar();
    else if (want != NULL && strcmp(want, "avx2") == 0)
        k = q_kernels_avx2();
    else
        k = q_kernels_avx512() != NULL ? q_kernels_avx512() : q_kernels_avx2();
    if (k == NULL)
        k = q_kernels_scalar();
    atomic_store_explicit(&chosen, k, memory_order_release);
    return k;
}
