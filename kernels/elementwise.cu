/* elementwise.cu - relu, linear bias, dropout: the device twins of relu.c,
 * linear.c's bias and dropout.c.
 *
 * Grid-stride loops over int64 indices with a capped grid, so any n works
 * with one launch shape. Dropout draws from a counter-based hash instead of
 * a sequential rng: element i of a batch only needs (seed, offset + i), so
 * threads are independent and a batch is reproducible without device rng
 * state (see kernels.h for what that means against the CPU masks).
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

__global__ void s_relu_fwd(float *out, const float *in, int64_t n)
{
    S_FOR_EACH(i, n)
    {
        float x = in[i];
        out[i] = x <= 0.0f ? 0.0f : x;
    }
}

__global__ void s_relu_bwd(float *din, const float *dout, const float *out, int64_t n)
{
    S_FOR_EACH(i, n) din[i] += out[i] > 0.0f ? dout[i] : 0.0f;
}

__global__ void s_bias_add(float *out, const float *b, int64_t rows, int64_t cols)
{
    S_FOR_EACH(i, rows * cols) out[i] += b[i % cols];
}

__global__ void s_bias_grad(float *db, const float *dout, int64_t rows, int64_t cols)
{
    S_FOR_EACH(c, cols)
    {
        float s = db[c]; /* rows added in order into the running value, as linear.c */
        for (int64_t r = 0; r < rows; r++) s += dout[r * cols + c];
        db[c] = s;
    }
}

/* splitmix64's finaliser: a bijective mix of 64 bits. */
__device__ static uint64_t s_mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1) with 24 bits, a function of (seed, counter) only. */
__device__ static float s_uniform(uint64_t seed, uint64_t ctr)
{
    uint64_t h = s_mix(seed ^ s_mix(ctr + 0x9e3779b97f4a7c15ULL));
    return (float)(h >> 40) * (1.0f / 16777216.0f);
}

__global__ void s_dropout_fwd(float *out, float *mask, const float *in, int64_t n, float p,
                              float scale, uint64_t seed, uint64_t offset)
{
    S_FOR_EACH(i, n)
    {
        float mk = s_uniform(seed, offset + (uint64_t)i) >= p ? scale : 0.0f;
        mask[i] = mk;
        out[i] = in[i] * mk;
    }
}

__global__ void s_mul_add(float *din, const float *dout, const float *mask, int64_t n)
{
    S_FOR_EACH(i, n) din[i] += mask ? dout[i] * mask[i] : dout[i];
}

__global__ void s_uniform_fill(float *u, int64_t n, uint64_t seed, uint64_t offset)
{
    S_FOR_EACH(i, n) u[i] = s_uniform(seed, offset + (uint64_t)i);
}

/* Launches k over n elements (nothing for n <= 0: a zero grid is an error). */
#define S_LAUNCH(n, stream, kernel, ...)                                               \
    do {                                                                               \
        if ((n) <= 0) return cudaSuccess;                                              \
        kernel<<<s_blocks(n), S_THREADS, 0, stream>>>(__VA_ARGS__);                    \
        return cudaGetLastError();                                                     \
    } while (0)

extern "C" cudaError_t dq_k_relu_forward(float *out, const float *in, int64_t n,
                                         cudaStream_t stream)
{
    S_LAUNCH(n, stream, s_relu_fwd, out, in, n);
}

extern "C" cudaError_t dq_k_relu_backward(float *din, const float *dout, const float *out,
                                          int64_t n, cudaStream_t stream)
{
    S_LAUNCH(n, stream, s_relu_bwd, din, dout, out, n);
}

extern "C" cudaError_t dq_k_bias_add(float *out, const float *b, int64_t rows, int64_t cols,
                                     cudaStream_t stream)
{
    S_LAUNCH(rows * cols, stream, s_bias_add, out, b, rows, cols);
}

extern "C" cudaError_t dq_k_bias_grad(float *db, const float *dout, int64_t rows, int64_t cols,
                                      cudaStream_t stream)
{
    S_LAUNCH(cols, stream, s_bias_grad, db, dout, rows, cols);
}

extern "C" cudaError_t dq_k_dropout_forward(float *out, float *mask, const float *in, int64_t n,
                                            float p, uint64_t seed, uint64_t offset,
                                            cudaStream_t stream)
{
    S_LAUNCH(n, stream, s_dropout_fwd, out, mask, in, n, p, 1.0f / (1.0f - p), seed, offset);
}

extern "C" cudaError_t dq_k_mul_add(float *din, const float *dout, const float *mask, int64_t n,
                                    cudaStream_t stream)
{
    S_LAUNCH(n, stream, s_mul_add, din, dout, mask, n);
}

extern "C" cudaError_t dq_k_uniform(float *u, int64_t n, uint64_t seed, uint64_t offset,
                                    cudaStream_t stream)
{
    S_LAUNCH(n, stream, s_uniform_fill, u, n, seed, offset);
}

extern "C" cudaError_t dq_k_probe_image(void)
{
    cudaFuncAttributes attr;
    return cudaFuncGetAttributes(&attr, s_relu_fwd);
}
