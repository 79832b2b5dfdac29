/* pool.cu - maxpool2d (with argmax, optional -inf padding) and avgpool1d:
 * the device twins of maxpool2d.c and avgpool1d.c.
 *
 * One thread per output in the forward passes. maxpool2d's backward runs
 * one thread per INPUT element and gathers the outputs whose windows cover
 * it, in increasing output order: no atomics even for overlapping windows,
 * and each element sums its contributions in the order the CPU's scatter
 * adds them, so the result is the CPU's to the bit.
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

__global__ void s_maxpool_fwd(float *out, int32_t *argmax, const float *in, int64_t planes,
                              int64_t H, int64_t W, int64_t OH, int64_t OW, int k, int stride,
                              int pad)
{
    S_FOR_EACH(o, planes * OH * OW)
    {
        int64_t pl = o / (OH * OW), r = o % (OH * OW);
        int64_t oh = r / OW, ow = r % OW;
        const float *x = in + pl * H * W;
        /* the window clipped to the input: padding is -inf (maxpool2d.c) */
        int64_t h0 = oh * stride - pad, w0 = ow * stride - pad;
        int64_t hs = h0 < 0 ? 0 : h0, he = h0 + k < H ? h0 + k : H;
        int64_t ws = w0 < 0 ? 0 : w0, we = w0 + k < W ? w0 + k : W;
        int64_t best = hs * W + ws;
        float v = -__int_as_float(0x7f800000); /* -inf */
        for (int64_t h = hs; h < he; h++)
            for (int64_t w = ws; w < we; w++) {
                float c = x[h * W + w];
                if (c > v || c != c) {
                    v = c;
                    best = h * W + w;
                }
            }
        out[o] = v;
        argmax[o] = (int32_t)best;
    }
}

/* First output index whose window (start o*stride, length k) covers i. */
__device__ static int64_t s_first_cover(int64_t i, int k, int stride)
{
    int64_t lo = i - k + 1;
    return lo <= 0 ? 0 : (lo + stride - 1) / stride;
}

__global__ void s_maxpool_bwd(float *din, const float *dout, const int32_t *argmax,
                              int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW,
                              int k, int stride, int pad)
{
    S_FOR_EACH(e, planes * H * W)
    {
        int64_t pl = e / (H * W), r = e % (H * W);
        int64_t h = r / W + pad, w = r % W + pad; /* in padded coordinates */
        int64_t oh0 = s_first_cover(h, k, stride), oh1 = h / stride;
        int64_t ow0 = s_first_cover(w, k, stride), ow1 = w / stride;
        if (oh1 >= OH) oh1 = OH - 1;
        if (ow1 >= OW) ow1 = OW - 1;
        const int32_t *am = argmax + pl * OH * OW;
        const float *dy = dout + pl * OH * OW;
        float acc = din[e];
        for (int64_t oh = oh0; oh <= oh1; oh++)
            for (int64_t ow = ow0; ow <= ow1; ow++)
                if (am[oh * OW + ow] == (int32_t)r) acc += dy[oh * OW + ow];
        din[e] = acc;
    }
}

__global__ void s_avgpool_fwd(float *out, const float *in, int64_t N, int64_t F, int k)
{
    int64_t OF = F / k;
    S_FOR_EACH(o, N * OF)
    {
        int64_t n = o / OF, j = o % OF;
        const float *x = in + n * F + j * k;
        float s = 0.0f;
        for (int i = 0; i < k; i++) s += x[i];
        out[o] = s / (float)k;
    }
}

__global__ void s_avgpool_bwd(float *din, const float *dout, int64_t N, int64_t F, int k)
{
    int64_t OF = F / k;
    float inv = 1.0f / (float)k;
    S_FOR_EACH(e, N * F)
    {
        int64_t n = e / F, f = e % F, j = f / k;
        if (j < OF) din[e] += dout[n * OF + j] * inv; /* the floor tail gets nothing */
    }
}

extern "C" cudaError_t dq_k_maxpool2d_forward_pad(float *out, int32_t *argmax, const float *in,
                                                  int64_t planes, int64_t H, int64_t W,
                                                  int64_t OH, int64_t OW, int kernel, int stride,
                                                  int padding, cudaStream_t stream)
{
    int64_t n = planes * OH * OW;
    if (n <= 0) return cudaSuccess;
    s_maxpool_fwd<<<s_blocks(n), S_THREADS, 0, stream>>>(out, argmax, in, planes, H, W, OH, OW,
                                                         kernel, stride, padding);
    return cudaGetLastError();
}

extern "C" cudaError_t dq_k_maxpool2d_backward_pad(float *din, const float *dout,
                                                   const int32_t *argmax, int64_t planes,
                                                   int64_t H, int64_t W, int64_t OH, int64_t OW,
                                                   int kernel, int stride, int padding,
                                                   cudaStream_t stream)
{
    int64_t n = planes * H * W;
    if (n <= 0 || OH <= 0 || OW <= 0) return cudaSuccess;
    s_maxpool_bwd<<<s_blocks(n), S_THREADS, 0, stream>>>(din, dout, argmax, planes, H, W, OH,
                                                         OW, kernel, stride, padding);
    return cudaGetLastError();
}

extern "C" cudaError_t dq_k_maxpool2d_forward(float *out, int32_t *argmax, const float *in,
                                              int64_t planes, int64_t H, int64_t W, int64_t OH,
                                              int64_t OW, int kernel, int stride,
                                              cudaStream_t stream)
{
    return dq_k_maxpool2d_forward_pad(out, argmax, in, planes, H, W, OH, OW, kernel, stride, 0,
                                      stream);
}

extern "C" cudaError_t dq_k_maxpool2d_backward(float *din, const float *dout,
                                               const int32_t *argmax, int64_t planes, int64_t H,
                                               int64_t W, int64_t OH, int64_t OW, int kernel,
                                               int stride, cudaStream_t stream)
{
    return dq_k_maxpool2d_backward_pad(din, dout, argmax, planes, H, W, OH, OW, kernel, stride,
                                       0, stream);
}

extern "C" cudaError_t dq_k_avgpool1d_forward(float *out, const float *in, int64_t N, int64_t F,
                                              int kernel, cudaStream_t stream)
{
    int64_t n = N * (F / kernel);
    if (n <= 0) return cudaSuccess;
    s_avgpool_fwd<<<s_blocks(n), S_THREADS, 0, stream>>>(out, in, N, F, kernel);
    return cudaGetLastError();
}

extern "C" cudaError_t dq_k_avgpool1d_backward(float *din, const float *dout, int64_t N,
                                               int64_t F, int kernel, cudaStream_t stream)
{
    int64_t n = N * F;
    if (n <= 0) return cudaSuccess;
    s_avgpool_bwd<<<s_blocks(n), S_THREADS, 0, stream>>>(din, dout, N, F, kernel);
    return cudaGetLastError();
}
