/* placeholder: the AVX2 matmul until the AVX-512 one lands */
#include "kernels/kernels_internal.h"

void q_avx512_matmul(float *out, size_t out_stride, const q_tensor *w, size_t r0, size_t r1,
                     const q_act *x)
{
    q_avx2_matmul(out, out_stride, w, r0, r1, x);
}
