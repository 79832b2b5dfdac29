/* softmax_loss.cu - softmax/log_softmax with temperature and the four
 * losses (cross-entropy, kd, cosine, MSE) with gradients: the device twins
 * of softmax.c and loss_*.c, formula for formula, with the same double
 * accumulations.
 *
 * Softmax, cross-entropy and kd run one block per row: a warp-sized block
 * (S_ROW lanes) strides over the row's K entries and reduces with a fixed
 * xor-shuffle butterfly, so a batch of N rows is N blocks (spread over the
 * SMs) instead of N threads (a few blocks, each thread looping over its
 * whole row), and a long row (K in the thousands) is read coalesced.
 * Cosine rows are feature maps (thousands of floats): one 256-thread block
 * per row with a fixed-shape tree reduction. MSE reduces over a fixed grid.
 * Every reduction has a fixed order, so a loss value does not depend on
 * scheduling (it differs from the CPU's sequential sums only by rounding).
 */
#include "kernels.h"

#define S_THREADS 256
#define S_ROW 32 /* threads of a row block: one warp, so row reductions are shuffles */
#define S_MAX_BLOCKS 65535

/* Row kernels: one block per row, at most S_MAX_BLOCKS (rows loop). */
static unsigned s_row_blocks(int64_t rows)
{
    return (unsigned)(rows < S_MAX_BLOCKS ? rows : S_MAX_BLOCKS);
}

#define S_FOR_EACH(i, n)                                                               \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);          \
         i += (int64_t)gridDim.x * blockDim.x)

/* Sum of v over the block (S_THREADS threads) in a fixed tree order;
 * every thread gets the result. sh holds S_THREADS doubles. */
__device__ static double s_block_sum(double v, double *sh)
{
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int s = S_THREADS / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    double r = sh[0];
    __syncthreads(); /* sh is reused by the next call */
    return r;
}

/* ---- row kernels: one warp-sized block per row --------------------------------------- */

/* Max / sum over the S_ROW lanes of the row's block (one warp) by a fixed
 * xor-shuffle butterfly: every lane ends with the same value (addition is
 * commutative, so partners compute the same pair sums), the order never
 * depends on timing. The max is broadcast from lane 0 so a NaN (which the
 * comparison ignores) cannot leave lanes disagreeing. */
__device__ static double s_row_sum(double v)
{
    for (int o = S_ROW / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ static float s_row_maxf(float v)
{
    for (int o = S_ROW / 2; o > 0; o >>= 1) {
        float w = __shfl_xor_sync(0xffffffffu, v, o);
        if (w > v) v = w;
    }
    return __shfl_sync(0xffffffffu, v, 0);
}

__device__ static double s_row_max(double v)
{
    for (int o = S_ROW / 2; o > 0; o >>= 1) {
        double w = __shfl_xor_sync(0xffffffffu, v, o);
        if (w > v) v = w;
    }
    return __shfl_sync(0xffffffffu, v, 0);
}

#define S_FOR_ROW(k, K) for (int64_t k = threadIdx.x; k < (K); k += S_ROW)
#define S_EACH_ROW(i, N) for (int64_t i = blockIdx.x; i < (N); i += gridDim.x)

/* ---- softmax / log_softmax (softmax.c) --------------------------------------------- */

__global__ void s_softmax_fwd(float *out, const float *in, int64_t N, int64_t K, float T,
                              int as_log)
{
    S_EACH_ROW(n, N)
    {
        const float *x = in + n * K;
        float *y = out + n * K;
        float m = -INFINITY;
        S_FOR_ROW(k, K) if (x[k] > m) m = x[k];
        m = s_row_maxf(m);
        const float invT = 1.0f / T;
        double s = 0.0;
        S_FOR_ROW(k, K)
        {
            float e = expf((x[k] - m) * invT);
            if (!as_log) y[k] = e;
            s += e;
        }
        s = s_row_sum(s);
        if (as_log) {
            const float ls = (float)log(s);
            S_FOR_ROW(k, K) y[k] = (x[k] - m) * invT - ls;
        } else {
            const float inv = (float)(1.0 / s);
            S_FOR_ROW(k, K) y[k] *= inv; /* this lane wrote y[k] above */
        }
    }
}

__global__ void s_softmax_bwd(float *din, const float *dout, const float *out, int64_t N,
                              int64_t K, float T, int as_log)
{
    S_EACH_ROW(n, N)
    {
        const float *y = out + n * K, *g = dout + n * K;
        float *dx = din + n * K;
        const float invT = 1.0f / T;
        double dot = 0.0;
        S_FOR_ROW(k, K) dot += as_log ? (double)g[k] : (double)g[k] * y[k];
        const float d = (float)s_row_sum(dot);
        if (as_log)
            S_FOR_ROW(k, K) dx[k] += invT * (g[k] - expf(y[k]) * d);
        else
            S_FOR_ROW(k, K) dx[k] += invT * y[k] * (g[k] - d);
    }
}

/* ---- cross-entropy and kd (loss_xent.c, loss_kd.c) --------------------------------- */

/* log sum_j exp(x_j / T) with the max subtracted, in double, over the row's
 * lanes (every lane gets it). */
__device__ static double s_logsumexp_t(const float *x, int64_t K, double T)
{
    double mx = -INFINITY;
    S_FOR_ROW(j, K)
    {
        double z = (double)x[j] / T;
        if (z > mx) mx = z;
    }
    mx = s_row_max(mx);
    double sum = 0.0;
    S_FOR_ROW(j, K) sum += exp((double)x[j] / T - mx);
    return mx + log(s_row_sum(sum));
}

__global__ void s_xent(double *rows, float *grad, const float *logits, const int32_t *labels,
                       int64_t N, int64_t K, float scale)
{
    S_EACH_ROW(i, N)
    {
        const float *x = logits + i * K;
        int64_t lab = labels[i];
        if (lab < 0 || lab >= K) { /* the host checks labels; never read out of bounds */
            if (threadIdx.x == 0) rows[i] = nan("");
            continue;
        }
        double lse = s_logsumexp_t(x, K, 1.0);
        if (threadIdx.x == 0) rows[i] = lse - (double)x[lab];
        if (grad) {
            double gscale = (double)scale / (double)N;
            float *g = grad + i * K;
            S_FOR_ROW(j, K)
            {
                double p = exp((double)x[j] - lse);
                g[j] += (float)(gscale * (p - (j == lab ? 1.0 : 0.0)));
            }
        }
    }
}

__global__ void s_kd(double *rows, float *grad, const float *student, const float *teacher,
                     int64_t N, int64_t K, float T, float scale)
{
    S_EACH_ROW(i, N)
    {
        const double Td = (double)T;
        const float *s = student + i * K, *t = teacher + i * K;
        double lse_s = s_logsumexp_t(s, K, Td), lse_t = s_logsumexp_t(t, K, Td);
        double acc = 0.0;
        S_FOR_ROW(j, K)
        {
            double p = exp((double)t[j] / Td - lse_t);
            acc += p * ((double)s[j] / Td - lse_s);
        }
        acc = s_row_sum(acc);
        if (threadIdx.x == 0) rows[i] = -acc;
        if (grad) {
            double gscale = (double)scale * Td / (double)N;
            float *g = grad + i * K;
            S_FOR_ROW(j, K)
            {
                double p = exp((double)t[j] / Td - lse_t);
                double q = exp((double)s[j] / Td - lse_s);
                g[j] += (float)(gscale * (q - p));
            }
        }
    }
}

/* ---- cosine (loss_cosine.c): one block per row ---------------------------------------- */

__global__ void s_cosine(double *rows, float *grad, const float *a, const float *b, int64_t N,
                         int64_t F, float scale)
{
    __shared__ double sh[S_THREADS];
    for (int64_t i = blockIdx.x; i < N; i += gridDim.x) {
        const float *x = a + i * F, *y = b + i * F;
        double dot = 0.0, xx = 0.0, yy = 0.0;
        for (int64_t j = threadIdx.x; j < F; j += S_THREADS) {
            dot += (double)x[j] * y[j];
            xx += (double)x[j] * x[j];
            yy += (double)y[j] * y[j];
        }
        dot = s_block_sum(dot, sh);
        xx = s_block_sum(xx, sh);
        yy = s_block_sum(yy, sh);
        const double eps = (double)1e-12f; /* PyTorch's float EPSILON, see loss_cosine.c */
        double A = xx + eps, B = yy + eps;
        double denom = sqrt(A * B);
        double cos = dot / denom;
        if (threadIdx.x == 0) rows[i] = 1.0 - cos;
        if (grad) {
            double gscale = (double)scale / (double)N;
            double cy = -gscale / denom, cx = gscale * cos / A;
            float *g = grad + i * F;
            for (int64_t j = threadIdx.x; j < F; j += S_THREADS)
                g[j] += (float)(cy * y[j] + cx * x[j]);
        }
    }
}

/* ---- MSE (loss_mse.c): DQ_K_MSE_PARTS block partials ---------------------------------- */

__global__ void s_mse(double *parts, float *grad, const float *a, const float *b, int64_t n,
                      float scale)
{
    __shared__ double sh[S_THREADS];
    double acc = 0.0, gscale = 2.0 * (double)scale / (double)n;
    S_FOR_EACH(i, n)
    {
        double d = (double)a[i] - (double)b[i];
        acc += d * d;
        if (grad) grad[i] += (float)(gscale * d);
    }
    acc = s_block_sum(acc, sh);
    if (threadIdx.x == 0) parts[blockIdx.x] = acc;
}

__global__ void s_sum(double *out, const double *x, int64_t n)
{
    __shared__ double sh[S_THREADS];
    double acc = 0.0;
    for (int64_t i = threadIdx.x; i < n; i += S_THREADS) acc += x[i];
    acc = s_block_sum(acc, sh);
    if (threadIdx.x == 0) *out = acc;
}

/* ---- launchers ------------------------------------------------------------------------- */

extern "C" cudaError_t dq_k_softmax_forward(float *out, const float *in, int64_t N, int64_t K,
                                            float T, int as_log, cudaStream_t stream)
{
    if (N <= 0 || K <= 0) return cudaSuccess;
    s_softmax_fwd<<<s_row_blocks(N), S_ROW, 0, stream>>>(out, in, N, K, T, as_log);
    return cudaGetLastError();
}

extern "C" cudaError_t dq_k_softmax_backward(float *din, const float *dout, const float *out,
                                             int64_t N, int64_t K, float T, int as_log,
                                             cudaStream_t stream)
{
    if (N <= 0 || K <= 0) return cudaSuccess;
    s_softmax_bwd<<<s_row_blocks(N), S_ROW, 0, stream>>>(din, dout, out, N, K, T, as_log);
    return cudaGetLastError();
}

extern "C" cudaError_t dq_k_loss_xent(double *rows, float *grad, const float *logits,
                                      const int32_t *labels, int64_t N, int64_t K, float scale,
                                      cudaStream_t stream)
{
    if (N <= 0 || K <= 0) return cudaSuccess;
    s_xent<<<s_row_blocks(N), S_ROW, 0, stream>>>(rows, grad, logits, labels, N, K, scale);
    return cudaGetLastError();
}

extern "C" cudaError_t dq_k_loss_kd(double *rows, float *grad, const float *student,
                                    const float *teacher, int64_t N, int64_t K, float T,
                                    float scale, cudaStream_t stream)
{
    if (N <= 0 || K <= 0) return cudaSuccess;
    s_kd<<<s_row_blocks(N), S_ROW, 0, stream>>>(rows, grad, student, teacher, N, K, T, scale);
    return cudaGetLastError();
}

extern "C" cudaError_t dq_k_loss_cosine(double *rows, float *grad, const float *a,
                                        const float *b, int64_t N, int64_t F, float scale,
                                        cudaStream_t stream)
{
    if (N <= 0 || F <= 0) return cudaSuccess;
    unsigned blocks = (unsigned)(N < S_MAX_BLOCKS ? N : S_MAX_BLOCKS);
    s_cosine<<<blocks, S_THREADS, 0, stream>>>(rows, grad, a, b, N, F, scale);
    return cudaGetLastError();
}

extern "C" cudaError_t dq_k_loss_mse(double *rows, float *grad, const float *a, const float *b,
                                     int64_t n, float scale, cudaStream_t stream)
{
    if (n <= 0) return cudaSuccess;
    s_mse<<<DQ_K_MSE_PARTS, S_THREADS, 0, stream>>>(rows, grad, a, b, n, scale);
    return cudaGetLastError();
}

extern "C" cudaError_t dq_k_sum_rows(double *out, const double *x, int64_t n,
                                     cudaStream_t stream)
{
    s_sum<<<1, S_THREADS, 0, stream>>>(out, x, n);
    return cudaGetLastError();
}
