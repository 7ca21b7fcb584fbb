/* AVX2 element-wise kernels: PLACEHOLDER forwarding to the reference, replaced by the real
 * implementation. */
#include "kernels/kernels_internal.h"

void q_avx2_rmsnorm(float *out, const float *x, const float *weight, size_t n, float eps)
{
    q_kernels_scalar()->rmsnorm(out, x, weight, n, eps);
}

void q_avx2_softmax(float *x, size_t n)
{
    q_kernels_scalar()->softmax(x, n);
}

void q_avx2_swiglu(float *gate, const float *up, size_t n)
{
    q_kernels_scalar()->swiglu(gate, up, n);
}

void q_avx2_rope(float *vec, size_t n, size_t head_size, const float *cos_p,
                 const float *sin_p)
{
    q_kernels_scalar()->rope(vec, n, head_size, cos_p, sin_p);
}

void q_avx2_attention(float *out, const float *q, const float *keys, const float *values,
                      size_t stride, size_t n_pos, size_t head_size, float *att)
{
    q_kernels_scalar()->attention(out, q, keys, values, stride, n_pos, head_size, att);
}
