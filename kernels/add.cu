/* add.cu - the residual sum: the device twin of src/tensor/add.c.
 *
 * out = a + b elementwise (out may alias a or b: each thread reads its
 * element before writing it); backward is din += dout, launched once per
 * input. Grid-stride loops as elementwise.cu.
 */
#include "kernels.h"

#define S_THREADS 256
#define S_MAX_BLOCKS 65535

static unsigned s_blocks(int64_t n)
{
    int64_t b = (n + S_THREADS - 1) / S_THREADS;
    return (unsigned)(b < S_MAX_BLOCKS ? b : S_MAX_BLOCKS);
}

#define S_FOR_EACH(i, n)                                                               \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);          \
         i += (int64_t)gridDim.x * blockDim.x)

__global__ void s_add_fwd(float *out, const float *a, const float *b, int64_t n)
{
    S_FOR_EACH(i, n) out[i] = a[i] + b[i];
}

__global__ void s_add_bwd(float *din, const float *dout, int64_t n)
{
    S_FOR_EACH(i, n) din[i] += dout[i];
}

extern "C" cudaError_t dq_k_add_forward(float *out, const float *a, const float *b, int64_t n,
                                        cudaStream_t stream)
{
    if (n <= 0) return cudaSuccess;
    s_add_fwd<<<s_blocks(n), S_THREADS, 0, stream>>>(out, a, b, n);
    return cudaGetLastError();
}

extern "C" cudaError_t dq_k_add_backward(float *din, const float *dout, int64_t n,
                                         cudaStream_t stream)
{
    if (n <= 0) return cudaSuccess;
    s_add_bwd<<<s_blocks(n), S_THREADS, 0, stream>>>(din, dout, n);
    return cudaGetLastError();
}
