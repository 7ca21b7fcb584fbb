/*
 * Kernel selection: QORUS_KERNELS=scalar gives the reference table, the AVX2 table is
 * offered only with the CPU features it was compiled for, and the choice is made once.
 */
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "qorus.h"

int main(int argc, char **argv)
{
    /* argv[1]: what QORUS_KERNELS was set to by ctest ("scalar" or "auto") */
    const char *mode = argc > 1 ? argv[1] : "auto";
    const q_kernels *ref = q_kernels_scalar(), *avx2 = q_kernels_avx2();
    CHECK(ref != NULL && strcmp(ref->name, "scalar") == 0);
    CHECK(ref->quantize_q8 && ref->matmul && ref->rmsnorm && ref->softmax && ref->swiglu &&
          ref->rope && ref->attention);
    if (avx2 != NULL) {
        CHECK(strcmp(avx2->name, "avx2") == 0);
        CHECK(avx2->quantize_q8 && avx2->matmul && avx2->rmsnorm && avx2->softmax &&
              avx2->swiglu && avx2->rope && avx2->attention);
#if defined(__x86_64__)
        __builtin_cpu_init();
        CHECK(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"));
#endif
    }
    const q_kernels *chosen = q_kernels_select();
    if (strcmp(mode, "scalar") == 0)
        CHECK(chosen == ref);
    else
        CHECK(chosen == (avx2 != NULL ? avx2 : ref));
    /* chosen once: changing the environment later changes nothing */
    setenv("QORUS_KERNELS", strcmp(mode, "scalar") == 0 ? "auto" : "scalar", 1);
    CHECK(q_kernels_select() == chosen);
    printf("kernels: %s (avx2 %s)\n", chosen->name, avx2 != NULL ? "available" : "not available");
    return check_result("test_dispatch");
}
