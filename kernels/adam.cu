/* adam.cu - one Adam step over the flat parameter array on the device:
 * adam.c's float operations in adam.c's order.
 *
 * nvcc contracts a*b + c into an FMA by default, which adam.c (x86-64 SSE,
 * no FMA) does not do; the explicit __fmul_rn/__fadd_rn/__fdiv_rn/__fsqrt_rn
 * intrinsics are never contracted, so given the same scalars (computed on
 * the host exactly as adam.c does) a step gives adam.c's bits.
 */
#include "kernels.h"

#define S_THREADS 256
#define S_MAX_BLOCKS 65535

__global__ void s_adam(float *p, const float *g, float *m, float *v, int64_t n,
                       dq_k_adam_scalars k)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float gi = k.use_wd ? __fadd_rn(g[i], __fmul_rn(k.wd, p[i])) : g[i];
        float mi = __fadd_rn(__fmul_rn(m[i], k.b1), __fmul_rn(k.a1, gi));
        float vi = __fadd_rn(__fmul_rn(v[i], k.b2), __fmul_rn(__fmul_rn(k.a2, gi), gi));
        m[i] = mi;
        v[i] = vi;
        float den = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), k.bc2s), k.eps);
        p[i] = __fadd_rn(p[i], __fdiv_rn(__fmul_rn(k.nstep, mi), den));
    }
}

extern "C" cudaError_t dq_k_adam_step(float *params, const float *grads, float *m, float *v,
                                      int64_t n, dq_k_adam_scalars k, cudaStream_t stream)
{
    if (n <= 0) return cudaSuccess;
    int64_t b = (n + S_THREADS - 1) / S_THREADS;
    s_adam<<<(unsigned)(b < S_MAX_BLOCKS ? b : S_MAX_BLOCKS), S_THREADS, 0, stream>>>(
        params, grads, m, v, n, k);
    return cudaGetLastError();
}
