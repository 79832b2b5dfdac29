/* clip.cu - clamp to [lo, hi] (relu6, ONNX Clip): the device twin of
 * src/tensor/clip.c, with the same expressions: NaN propagates forward, and
 * backward passes the gradient where lo < out < hi (reading the forward
 * OUTPUT, so the forward may run in place).
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

__global__ void s_clip_fwd(float *out, const float *in, int64_t n, float lo, float hi)
{
    S_FOR_EACH(i, n)
    {
        float v = in[i];
        out[i] = v < lo ? lo : v > hi ? hi : v;
    }
}

__global__ void s_clip_bwd(float *din, const float *dout, const float *out, int64_t n, float lo,
                           float hi)
{
    S_FOR_EACH(i, n)
    {
        float y = out[i];
        din[i] += y > lo && y < hi ? dout[i] : 0.0f;
    }
}

extern "C" cudaError_t dq_k_clip_forward(float *out, const float *in, int64_t n, float lo,
                                         float hi, cudaStream_t stream)
{
    if (n <= 0) return cudaSuccess;
    s_clip_fwd<<<s_blocks(n), S_THREADS, 0, stream>>>(out, in, n, lo, hi);
    return cudaGetLastError();
}

extern "C" cudaError_t dq_k_clip_backward(float *din, const float *dout, const float *out,
                                          int64_t n, float lo, float hi, cudaStream_t stream)
{
    if (n <= 0) return cudaSuccess;
    s_clip_bwd<<<s_blocks(n), S_THREADS, 0, stream>>>(din, dout, out, n, lo, hi);
    return cudaGetLastError();
}
