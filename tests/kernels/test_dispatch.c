/*
 * Kernel selection:
 *   - each optimized table is offered only with the CPU features it was compiled for
 *     (checked here with the compiler's own __builtin_cpu_supports, independently of the
 *     cpuid code in dispatch.c), and is offered when the library was built with it and
 *     the CPU has them;
 *   - q_kernels_optimized lists exactly the offered tables, best first (avx512, avx2);
 *   - the choice follows QORUS_KERNELS (argv[1] says what ctest set it to: "auto" for
 *     unset, "scalar", "avx2", "avx512"): auto takes the best table offered, a named table
 *     falls back to the next best when absent; and it is made once.
 * A table absent on this machine is reported with a note, never a failure.
 */
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "qorus.h"

/* Every function pointer of table k set, and its name as expected. */
static void check_complete(const q_kernels *k, const char *name)
{
    CHECK(strcmp(k->name, name) == 0);
    CHECK(k->quantize_q8 && k->matmul && k->rmsnorm && k->softmax && k->swiglu && k->rope &&
          k->attention);
}

/* What the CPU (and the OS: libgcc's and compiler-rt's feature checks read XCR0 too) lets
 * each table use, by the compiler's reckoning. */
static int cpu_avx2(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

static int cpu_avx512(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return cpu_avx2() && __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512vnni");
#else
    return 0;
#endif
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "auto";
    const q_kernels *ref = q_kernels_scalar(), *avx2 = q_kernels_avx2(),
                    *avx512 = q_kernels_avx512();
    CHECK(ref != NULL);
    check_complete(ref, "scalar");

    /* offered only with the features (gcc has no "f16c" for __builtin_cpu_supports;
     * dispatch.c checks it with cpuid) */
    if (avx2 != NULL) {
        check_complete(avx2, "avx2");
        CHECK(cpu_avx2());
    }
    if (avx512 != NULL) {
        check_complete(avx512, "avx512");
        CHECK(cpu_avx512());
        CHECK(avx2 != NULL); /* AVX-512 table builds on the AVX2 one */
    }
    /* and offered whenever the library has it and the CPU allows it (the build tells this
     * test which tables were compiled in: tests/kernels/CMakeLists.txt) */
#if defined(QORUS_TEST_BUILT_AVX2)
    if (cpu_avx2())
        CHECK(avx2 != NULL);
#endif
#if defined(QORUS_TEST_BUILT_AVX512)
    if (cpu_avx512())
        CHECK(avx512 != NULL);
#endif

    /* q_kernels_optimized: the offered tables, best first; the count even past cap */
    const q_kernels *want[2];
    size_t n_want = 0;
    if (avx512 != NULL)
        want[n_want++] = avx512;
    if (avx2 != NULL)
        want[n_want++] = avx2;
    const q_kernels *got[4] = {NULL, NULL, NULL, NULL};
    CHECK_EQ_INT(q_kernels_optimized(got, 4), n_want);
    for (size_t i = 0; i < n_want; i++)
        CHECK(got[i] == want[i]);
    for (size_t i = n_want; i < 4; i++)
        CHECK(got[i] == NULL); /* nothing written past the count */
    CHECK_EQ_INT(q_kernels_optimized(NULL, 0), n_want);
    const q_kernels *one[2] = {NULL, NULL};
    CHECK_EQ_INT(q_kernels_optimized(one, 1), n_want);
    CHECK(one[0] == (n_want > 0 ? want[0] : NULL) && one[1] == NULL);

    /* the choice */
    const q_kernels *best = n_want > 0 ? want[0] : ref;
    const q_kernels *expect = best;
    if (strcmp(mode, "scalar") == 0)
        expect = ref;
    else if (strcmp(mode, "avx2") == 0)
        expect = avx2 != NULL ? avx2 : ref;
    else if (strcmp(mode, "avx512") == 0)
        expect = avx512 != NULL ? avx512 : avx2 != NULL ? avx2 : ref;
    const q_kernels *chosen = q_kernels_select();
    if (chosen != expect)
        fprintf(stderr, "QORUS_KERNELS=%s: chose %s, expected %s\n", mode, chosen->name,
                expect->name);
    CHECK(chosen == expect);
    /* chosen once: changing the environment later changes nothing */
    setenv("QORUS_KERNELS", strcmp(mode, "scalar") == 0 ? "auto" : "scalar", 1);
    CHECK(q_kernels_select() == chosen);

    printf("kernels (QORUS_KERNELS=%s): %s; avx2 %s, avx512 %s\n", mode, chosen->name,
           avx2 != NULL ? "available" : "not available (skipped)",
           avx512 != NULL ? "available" : "not available (skipped)");
    return check_result("test_dispatch");
}
