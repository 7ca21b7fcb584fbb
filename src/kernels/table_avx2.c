/* The AVX2 + FMA + F16C kernel table (compiled with -mavx2 -mfma -mf16c; used only when
 * dispatch.c has checked the CPU). */
#include "kernels/kernels_internal.h"

static const q_kernels avx2_table = {
    .name = "avx2",
    .quantize_q8 = q_avx2_quantize_q8,
    .matmul = q_avx2_matmul,
    .rmsnorm = q_avx2_rmsnorm,
    .softmax = q_avx2_softmax,
    .swiglu = q_avx2_swiglu,
    .rope = q_avx2_rope,
    .rope_neox = q_avx2_rope_neox,
    .attention = q_avx2_attention,
};

const q_kernels *q_kernels_avx2_table(void)
{
    return &avx2_table;
}
