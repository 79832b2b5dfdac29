/* avgpool2d.cu - average pooling with padding and global average pooling:
 * the device twins of src/tensor/avgpool2d.c.
 *
 * avgpool2d: one thread per output sums its window clipped to the input
 * and divides by k*k (count_include_pad) or by the clipped window's size,
 * as the CPU. Backward runs one thread per INPUT element and gathers the
 * outputs whose windows cover it (in output order): no atomics, fixed sum
 * order. Global pooling: one warp per [H,W] plane, each lane summing a
 * strided slice, then a shuffle tree, so the order is fixed and the result
 * does not depend on the launch; backward adds dout/(H*W) everywhere.
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

/* Window of output o along one dim clipped to [0, in): [*s, *e). */
__device__ static void s_window(int64_t *s, int64_t *e, int64_t o, int64_t in, int k, int stride,
                                int pad)
{
    int64_t a = o * stride - pad, b = a + k;
    *s = a < 0 ? 0 : a;
    *e = b < in ? b : in;
}

__device__ static float s_divisor(int64_t hs, int64_t he, int64_t ws, int64_t we, int k,
                                  int include_pad)
{
    return include_pad ? (float)((int64_t)k * k) : (float)((he - hs) * (we - ws));
}

__global__ void s_avgpool_fwd(float *out, const float *in, int64_t planes, int64_t H, int64_t W,
                              int64_t OH, int64_t OW, int k, int stride, int pad, int include_pad)
{
    S_FOR_EACH(o, planes * OH * OW)
    {
        int64_t pl = o / (OH * OW), r = o % (OH * OW), oh = r / OW, ow = r % OW;
        int64_t hs, he, ws, we;
        s_window(&hs, &he, oh, H, k, stride, pad);
        s_window(&ws, &we, ow, W, k, stride, pad);
        const float *x = in + pl * H * W;
        float s = 0.0f;
        for (int64_t h = hs; h < he; h++)
            for (int64_t w = ws; w < we; w++) s += x[h * W + w];
        out[o] = s / s_divisor(hs, he, ws, we, k, include_pad);
    }
}

/* Outputs along one dim whose window covers input i: [*lo, *hi]. */
__device__ static void s_covers(int64_t *lo, int64_t *hi, int64_t i, int64_t out, int k,
                                int stride, int pad)
{
    int64_t ip = i + pad, first = ip - k + 1;
    *lo = first <= 0 ? 0 : (first + stride - 1) / stride;
    *hi = ip / stride;
    if (*hi > out - 1) *hi = out - 1;
}

__global__ void s_avgpool_bwd(float *din, const float *dout, int64_t planes, int64_t H, int64_t W,
                              int64_t OH, int64_t OW, int k, int stride, int pad, int include_pad)
{
    S_FOR_EACH(e, planes * H * W)
    {
        int64_t pl = e / (H * W), r = e % (H * W), h = r / W, w = r % W;
        int64_t oh0, oh1, ow0, ow1;
        s_covers(&oh0, &oh1, h, OH, k, stride, pad);
        s_covers(&ow0, &ow1, w, OW, k, stride, pad);
        const float *dy = dout + pl * OH * OW;
        float acc = din[e];
        for (int64_t oh = oh0; oh <= oh1; oh++) {
            int64_t hs, he;
            s_window(&hs, &he, oh, H, k, stride, pad);
            for (int64_t ow = ow0; ow <= ow1; ow++) {
                int64_t ws, we;
                s_window(&ws, &we, ow, W, k, stride, pad);
                acc += dy[oh * OW + ow] / s_divisor(hs, he, ws, we, k, include_pad);
            }
        }
        din[e] = acc;
    }
}

#define S_WARPS 8 /* planes per block of global pooling */

__global__ void s_gap_fwd(float *out, const float *in, int64_t planes, int64_t HW)
{
    int64_t pl = (int64_t)blockIdx.x * S_WARPS + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (pl >= planes) return; /* whole warps leave together */
    const float *x = in + pl * HW;
    float s = 0.0f;
    for (int64_t i = lane; i < HW; i += 32) s += x[i];
    for (int off = 16; off > 0; off /= 2) s += __shfl_down_sync(0xffffffffu, s, off);
    if (lane == 0) out[pl] = s / (float)HW;
}

__global__ void s_gap_bwd(float *din, const float *dout, int64_t planes, int64_t HW)
{
    S_FOR_EACH(e, planes * HW) din[e] += dout[e / HW] / (float)HW;
}

extern "C" cudaError_t dq_k_avgpool2d_forward(float *out, const float *in, int64_t planes,
                                              int64_t H, int64_t W, int64_t OH, int64_t OW,
                                              int kernel, int stride, int padding,
                                              int count_include_pad, cudaStream_t stream)
{
    int64_t n = planes * OH * OW;
    if (n <= 0) return cudaSuccess;
    s_avgpool_fwd<<<s_blocks(n), S_THREADS, 0, stream>>>(out, in, planes, H, W, OH, OW, kernel,
                                                         stride, padding, count_include_pad);
    return cudaGetLastError();
}

extern "C" cudaError_t dq_k_avgpool2d_backward(float *din, const float *dout, int64_t planes,
                                               int64_t H, int64_t W, int64_t OH, int64_t OW,
                                               int kernel, int stride, int padding,
                                               int count_include_pad, cudaStream_t stream)
{
    int64_t n = planes * H * W;
    if (n <= 0 || OH <= 0 || OW <= 0) return cudaSuccess;
    s_avgpool_bwd<<<s_blocks(n), S_THREADS, 0, stream>>>(din, dout, planes, H, W, OH, OW, kernel,
                                                         stride, padding, count_include_pad);
    return cudaGetLastError();
}

extern "C" cudaError_t dq_k_global_avgpool_forward(float *out, const float *in, int64_t planes,
                                                   int64_t HW, cudaStream_t stream)
{
    if (planes <= 0 || HW <= 0) return cudaSuccess;
    int64_t blocks = (planes + S_WARPS - 1) / S_WARPS;
    if (blocks > 2147483647) return cudaErrorInvalidValue;
    s_gap_fwd<<<(unsigned)blocks, 32 * S_WARPS, 0, stream>>>(out, in, planes, HW);
    return cudaGetLastError();
}

extern "C" cudaError_t dq_k_global_avgpool_backward(float *din, const float *dout,
                                                    int64_t planes, int64_t HW,
                                                    cudaStream_t stream)
{
    int64_t n = planes * HW;
    if (n <= 0) return cudaSuccess;
    s_gap_bwd<<<s_blocks(n), S_THREADS, 0, stream>>>(din, dout, planes, HW);
    return cudaGetLastError();
}
