/* kernels.h - our own CUDA kernels, as C-callable launchers.
 *
 * One .cu file per op family (elementwise.cu, pool.cu, avgpool2d.cu, add.cu,
 * clip.cu, softmax_loss.cu, adam.cu), each the device twin of a CPU file in src/tensor/ and validated
 * against it by tests/test_cuda.c. Conventions are the CPU ops' (ops.h,
 * loss.h, optim.h): outputs first, then inputs, then sizes; backward ADDS
 * into gradients; every pointer is device memory unless it says host.
 *
 * A launcher only enqueues work on `stream` and returns the launch status
 * (cudaGetLastError), never blocks; asynchronous faults surface at the next
 * synchronising call. Sizes are validated by the callers (net_cuda.c, the
 * tests), which hold the shapes; launchers assert nothing. Mapping
 * cudaError_t to dq_status is the glue's job (cuda_glue.h).
 */
#ifndef DQ_KERNELS_H
#define DQ_KERNELS_H

#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- elementwise.cu ---------------------------------------------------------- */

/* out = in <= 0 ? 0 : in (NaN propagates); out may alias in. */
cudaError_t dq_k_relu_forward(float *out, const float *in, int64_t n, cudaStream_t stream);
/* din += out > 0 ? dout : 0 (reads the forward OUTPUT, as relu.c). */
cudaError_t dq_k_relu_backward(float *din, const float *dout, const float *out, int64_t n,
                               cudaStream_t stream);
/* out[r, c] += b[c] for r < rows, c < cols (linear bias). */
cudaError_t dq_k_bias_add(float *out, const float *b, int64_t rows, int64_t cols,
                          cudaStream_t stream);
/* db[c] += sum_r dout[r, c] (linear bias gradient; one thread per column,
 * rows summed in order, so the result does not depend on the launch). */
cudaError_t dq_k_bias_grad(float *db, const float *dout, int64_t rows, int64_t cols,
                           cudaStream_t stream);
/* Inverted dropout. Element i keeps when u(seed, offset + i) >= p, u a
 * uniform in [0, 1) with 24 bits from a counter-based hash (splitmix64 of
 * seed and counter), so masks need no rng state on the device and a batch is
 * reproducible from (seed, offset). mask[i] = 0 or 1/(1-p); out = in * mask.
 * The stream differs from the CPU's xoshiro draws: same distribution, not
 * the same masks. */
cudaError_t dq_k_dropout_forward(float *out, float *mask, const float *in, int64_t n, float p,
                                 uint64_t seed, uint64_t offset, cudaStream_t stream);
/* din += dout * mask (mask NULL: din += dout, eval-mode dropout). */
cudaError_t dq_k_mul_add(float *din, const float *dout, const float *mask, int64_t n,
                         cudaStream_t stream);
/* The same uniform as dropout's, for tests: u[i] = u(seed, offset + i). */
cudaError_t dq_k_uniform(float *u, int64_t n, uint64_t seed, uint64_t offset,
                         cudaStream_t stream);

/* cudaSuccess when this build's kernels have an image (SASS or PTX) the
 * current device can run; cudaErrorNoKernelImageForDevice or
 * cudaErrorInvalidDeviceFunction otherwise (see NVCC_ARCHFLAGS). */
cudaError_t dq_k_probe_image(void);

/* ---- pool.cu ------------------------------------------------------------------- */

/* maxpool2d over planes of H x W, no padding, floor mode; argmax is the index
 * in the plane; first maximum in row-major window order wins and NaN wins,
 * as maxpool2d.c. */
cudaError_t dq_k_maxpool2d_forward(float *out, int32_t *argmax, const float *in,
                                   int64_t planes, int64_t H, int64_t W, int64_t OH,
                                   int64_t OW, int kernel, int stride, cudaStream_t stream);
/* din[plane][argmax] += dout: one thread per INPUT element gathering the
 * outputs whose window covers it (in output order), so overlapping windows
 * need no atomics and the sum order is fixed. */
cudaError_t dq_k_maxpool2d_backward(float *din, const float *dout, const int32_t *argmax,
                                    int64_t planes, int64_t H, int64_t W, int64_t OH,
                                    int64_t OW, int kernel, int stride, cudaStream_t stream);
/* The same with padding (-inf, at most kernel/2; OH = (H + 2p - k)/stride + 1);
 * argmax still indexes the unpadded plane, as dq_maxpool2d_forward_pad. */
cudaError_t dq_k_maxpool2d_forward_pad(float *out, int32_t *argmax, const float *in,
                                       int64_t planes, int64_t H, int64_t W, int64_t OH,
                                       int64_t OW, int kernel, int stride, int padding,
                                       cudaStream_t stream);
cudaError_t dq_k_maxpool2d_backward_pad(float *din, const float *dout, const int32_t *argmax,
                                        int64_t planes, int64_t H, int64_t W, int64_t OH,
                                        int64_t OW, int kernel, int stride, int padding,
                                        cudaStream_t stream);
/* avgpool1d on [N,F] with stride = kernel: out [N, F/kernel]. */
cudaError_t dq_k_avgpool1d_forward(float *out, const float *in, int64_t N, int64_t F,
                                   int kernel, cudaStream_t stream);
cudaError_t dq_k_avgpool1d_backward(float *din, const float *dout, int64_t N, int64_t F,
                                    int kernel, cudaStream_t stream);

/* ---- avgpool2d.cu ------------------------------------------------------------------- */

/* avgpool2d over planes of H x W (floor mode, zero padding <= kernel/2,
 * OH = (H + 2p - k)/stride + 1): divisor k*k when count_include_pad, else
 * the window's elements inside the input, as avgpool2d.c. Backward ADDS. */
cudaError_t dq_k_avgpool2d_forward(float *out, const float *in, int64_t planes, int64_t H,
                                   int64_t W, int64_t OH, int64_t OW, int kernel, int stride,
                                   int padding, int count_include_pad, cudaStream_t stream);
cudaError_t dq_k_avgpool2d_backward(float *din, const float *dout, int64_t planes, int64_t H,
                                    int64_t W, int64_t OH, int64_t OW, int kernel, int stride,
                                    int padding, int count_include_pad, cudaStream_t stream);
/* Global average pooling: out[plane] = mean of in's HW-element plane;
 * backward din += dout[plane]/HW. */
cudaError_t dq_k_global_avgpool_forward(float *out, const float *in, int64_t planes, int64_t HW,
                                        cudaStream_t stream);
cudaError_t dq_k_global_avgpool_backward(float *din, const float *dout, int64_t planes,
                                         int64_t HW, cudaStream_t stream);

/* ---- add.cu: the residual sum --------------------------------------------------------- */

/* out = a + b over n elements (out may alias a or b); backward din += dout,
 * once per input. */
cudaError_t dq_k_add_forward(float *out, const float *a, const float *b, int64_t n,
                             cudaStream_t stream);
cudaError_t dq_k_add_backward(float *din, const float *dout, int64_t n, cudaStream_t stream);

/* ---- clip.cu: relu6 / clip (hardtanh) --------------------------------------------------- */

/* out = min(max(in, lo), hi), NaN propagates; out may alias in. */
cudaError_t dq_k_clip_forward(float *out, const float *in, int64_t n, float lo, float hi,
                              cudaStream_t stream);
/* din += dout where lo < out < hi (reads the forward OUTPUT, as clip.c). */
cudaError_t dq_k_clip_backward(float *din, const float *dout, const float *out, int64_t n,
                               float lo, float hi, cudaStream_t stream);

/* ---- softmax_loss.cu ------------------------------------------------------------- */

/* Row-wise softmax (as_log 0) or log_softmax (as_log 1) of in / T, [N,K]. */
cudaError_t dq_k_softmax_forward(float *out, const float *in, int64_t N, int64_t K, float T,
                                 int as_log, cudaStream_t stream);
cudaError_t dq_k_softmax_backward(float *din, const float *dout, const float *out, int64_t N,
                                  int64_t K, float T, int as_log, cudaStream_t stream);

/* Losses write one double per row into rows[N] (the row's term, unscaled)
 * and, when grad is non-NULL, ADD scale * d(loss)/d(input) into grad, with
 * the same formulas and double accumulation as loss_*.c. The loss value is
 * dq_k_sum_rows(rows) / N (times T^2 for kd), reduced on the device. */
cudaError_t dq_k_loss_xent(double *rows, float *grad, const float *logits,
                           const int32_t *labels, int64_t N, int64_t K, float scale,
                           cudaStream_t stream);
cudaError_t dq_k_loss_kd(double *rows, float *grad, const float *student, const float *teacher,
                         int64_t N, int64_t K, float T, float scale, cudaStream_t stream);
cudaError_t dq_k_loss_cosine(double *rows, float *grad, const float *a, const float *b,
                             int64_t N, int64_t F, float scale, cudaStream_t stream);
/* MSE over n elements: rows gets DQ_K_MSE_PARTS partial sums of squares
 * (fixed grid, so the value does not depend on timing). */
#define DQ_K_MSE_PARTS 256
cudaError_t dq_k_loss_mse(double *rows, float *grad, const float *a, const float *b, int64_t n,
                          float scale, cudaStream_t stream);
/* *out = sum of x[0..n) in a fixed order (one block). */
cudaError_t dq_k_sum_rows(double *out, const double *x, int64_t n, cudaStream_t stream);

/* ---- adam.cu ----------------------------------------------------------------------- */

/* The float scalars of one Adam step, computed on the host exactly as
 * adam.c does (double, then rounded), so both run the same float ops. */
typedef struct {
    float b1, a1;  /* beta1, 1 - beta1 */
    float b2, a2;  /* beta2, 1 - beta2 */
    float wd;      /* weight decay (used when use_wd) */
    int use_wd;
    float bc2s;    /* sqrt(1 - beta2^t) */
    float eps;
    float nstep;   /* -lr / (1 - beta1^t) */
} dq_k_adam_scalars;

cudaError_t dq_k_adam_step(float *params, const float *grads, float *m, float *v, int64_t n,
                           dq_k_adam_scalars k, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
