/* The AVX-512 kernel table (compiled with the AVX2 flags plus -mavx512f -mavx512bw
 * -mavx512vl -mavx512vnni; used only when dispatch.c has checked the CPU and the OS): the
 * AVX-512 matmul; quantize_q8 and the element-wise kernels are the AVX2 ones, which are
 * bound by memory or by their serial parts, not by vector width. */
#include "kernels/kernels_internal.h"

static const q_kernels avx512_table = {
    .name = "avx512",
    .quantize_q8 = q_avx2_quantize_q8,
    .matmul = q_avx512_matmul,
    .rmsnorm = q_avx2_rmsnorm,
    .softmax = q_avx2_softmax,
    .swiglu = q_avx2_swiglu,
    .rope = q_avx2_rope,
    .rope_neox = q_avx2_rope_neox,
    .attention = q_avx2_attention,
};

const q_kernels *q_kernels_avx512_table(void)
{
    return &avx512_table;
}
