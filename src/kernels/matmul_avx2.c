/* AVX2 quantize_q8 and matmul: PLACEHOLDER forwarding to the reference, replaced by the
 * real implementation. */
#include "kernels/kernels_internal.h"

void q_avx2_quantize_q8(int8_t *q, float *d, const float *x, size_t n)
{
    q_kernels_scalar()->quantize_q8(q, d, x, n);
}

void q_avx2_matmul(float *out, size_t out_stride, const q_tensor *w, size_t r0, size_t r1,
                   const q_act *x)
{
    q_kernels_scalar()->matmul(out, out_stride, w, r0, r1, x);
}
