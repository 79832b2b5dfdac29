/* cuda_glue.h - host-side CUDA helpers: status mapping, cuDNN convolution
 * (grouped too) and batch norm, cuBLAS linear layers.
 *
 * Every CUDA runtime, cuDNN and cuBLAS call in the project goes through one
 * of the dq_*_check functions, which turn a failure into a dq_status with the call
 * named ("cudaMalloc: out of memory (cudaErrorMemoryAllocation, 2)").
 * Out-of-memory maps to DQ_ERR_NOMEM, a missing driver or device to
 * DQ_ERR_UNSUPPORTED, a sticky error (the context is lost: illegal address,
 * ECC, launch failure) to DQ_ERR_DEVICE, everything else to DQ_ERR_IO (this
 * call failed); see cuda_check.c.
 *
 * Convolution and linear follow the CPU ops' contract (ops.h): outputs
 * first, backward ADDS into din/dw/db (cuDNN and cuBLAS with beta = 1),
 * NULL gradients are skipped. All pointers are device memory, all work is
 * enqueued on the stream the handles were bound to; nothing synchronises.
 * Math is plain FP32: TF32 tensor-core paths are excluded (convolutions
 * accept only CUDNN_FMA_MATH algorithms; cuBLAS runs CUBLAS_DEFAULT_MATH,
 * which never lowers FP32 to TF32), so results stay within float rounding of the
 * CPU reference.
 */
#ifndef DQ_CUDA_GLUE_H
#define DQ_CUDA_GLUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include "base/status.h"

/* Map a result to DQ_OK or a failure naming `call` (text up to its '('). */
dq_status dq_cuda_check(cudaError_t e, const char *call, dq_err *err);
dq_status dq_cudnn_check(cudnnStatus_t s, const char *call, dq_err *err);
dq_status dq_cublas_check(cublasStatus_t s, const char *call, dq_err *err);

/* Whether e leaves the CUDA context unusable for the rest of the process. */
bool dq_cuda_is_sticky(cudaError_t e);
/* The dq_status of a result (no message); `last` is the runtime's last error
 * when the library call failed, which marks an execution failure sticky. */
dq_status dq_cuda_classify(cudaError_t e);
dq_status dq_cudnn_classify(cudnnStatus_t s, cudaError_t last);
dq_status dq_cublas_classify(cublasStatus_t s, cudaError_t last);

#define DQ_CUDA_TRY(expr, err) DQ_TRY(dq_cuda_check((expr), #expr, (err)))
#define DQ_CUDNN_TRY(expr, err) DQ_TRY(dq_cudnn_check((expr), #expr, (err)))
#define DQ_CUBLAS_TRY(expr, err) DQ_TRY(dq_cublas_check((expr), #expr, (err)))

/* ---- cudnn_conv.c: one conv2d layer ------------------------------------------------ */

typedef struct {
    cudnnTensorDescriptor_t x, y, bias;
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv;
    cudnnConvolutionFwdAlgo_t fwd;
    cudnnConvolutionBwdDataAlgo_t bwd_data;
    cudnnConvolutionBwdFilterAlgo_t bwd_filter;
    bool backward;            /* backward algorithms chosen */
    int64_t n, c, h, w_, oc, oh, ow; /* n: batch the descriptors are set for */
    int kernel, stride, padding;
    size_t ws_bytes;          /* workspace the chosen algorithms need at max_n */
    int groups;               /* 1, or G channel groups (weight [OC, C/G, k, k]) */
} dq_cuda_conv;

/* Creates the descriptors for in [max_n,C,H,W] -> out [max_n,OC,OH,OW] and
 * chooses algorithms once with cudnnGet*Algorithm_v7 (heuristics, ranked):
 * the first CUDNN_FMA_MATH one whose workspace fits ws_limit bytes (a
 * constant, not a share of free memory, so the choice depends on the shape
 * alone and is the same in every process),
 * and for backward (when `backward`) a deterministic one, so training is
 * reproducible. cv->ws_bytes is what they need; the caller allocates the
 * maximum over all layers once. On failure cv is destroyed. */
dq_status dq_cuda_conv_init(dq_cuda_conv *cv, cudnnHandle_t h, int64_t max_n, int64_t C,
                            int64_t H, int64_t W, int64_t OC, int kernel, int stride,
                            int padding, bool backward, size_t ws_limit, dq_err *err);

/* The same for a grouped convolution (cudnnSetConvolutionGroupCount):
 * groups 0 or 1 is dq_cuda_conv_init; G > 1 needs C and OC divisible by G
 * and takes weights [OC, C/G, k, k] (depthwise when G == C). */
dq_status dq_cuda_conv_init_grouped(dq_cuda_conv *cv, cudnnHandle_t h, int64_t max_n, int64_t C,
                                    int64_t H, int64_t W, int64_t OC, int kernel, int stride,
                                    int padding, int groups, bool backward, size_t ws_limit,
                                    dq_err *err);

/* Re-sets the batch dim (1 <= n <= max_n) when it changed; fails if the
 * chosen algorithms would need more than ws_bytes at n, and then keeps the
 * previous batch (a retry at n checks again). */
dq_status dq_cuda_conv_set_batch(dq_cuda_conv *cv, cudnnHandle_t h, int64_t n, size_t ws_bytes,
                                 dq_err *err);

/* The bookkeeping of set_batch (pure, no device): records n into
 * *planned_n only when need <= ws_bytes, else DQ_ERR_NOMEM naming both. */
dq_status dq_cuda_ws_admit(int64_t *planned_n, int64_t n, size_t need, size_t ws_bytes,
                           dq_err *err);

/* out = conv(in, w) + b (b may be NULL). */
dq_status dq_cuda_conv_forward(const dq_cuda_conv *cv, cudnnHandle_t h, float *out,
                               const float *in, const float *w, const float *b, void *ws,
                               size_t ws_bytes, dq_err *err);

/* din += dconv/din, dw += dconv/dw, db += row sums of dout (each may be NULL). */
dq_status dq_cuda_conv_backward(const dq_cuda_conv *cv, cudnnHandle_t h, float *din, float *dw,
                                float *db, const float *dout, const float *in, const float *w,
                                void *ws, size_t ws_bytes, dq_err *err);

void dq_cuda_conv_destroy(dq_cuda_conv *cv);

/* ---- cudnn_batchnorm.c: batchnorm2d (spatial), as src/tensor/batchnorm2d.c ---------- */

typedef struct {
    cudnnTensorDescriptor_t x;     /* in/out [n, c, h, w] */
    cudnnTensorDescriptor_t param; /* w, b, running and saved statistics [1, c, 1, 1] */
    int64_t n, c, h, w;
} dq_cuda_bn;

/* Descriptors for in [max_n, C, H, W]. On failure bn is destroyed. */
dq_status dq_cuda_bn_init(dq_cuda_bn *bn, int64_t max_n, int64_t C, int64_t H, int64_t W,
                          dq_err *err);

/* Re-sets the batch dim when it changed. */
dq_status dq_cuda_bn_set_batch(dq_cuda_bn *bn, int64_t n, dq_err *err);

/* As dq_batchnorm2d_forward: train normalises with the batch statistics,
 * keeps save_mean/save_invstd [C] and updates the running statistics with
 * `momentum` and the unbiased variance (running_* both NULL: not tracked);
 * eval uses the running statistics. eps >= CUDNN_BN_MIN_EPSILON (1e-5).
 * out must not alias in. */
dq_status dq_cuda_bn_forward(const dq_cuda_bn *bn, cudnnHandle_t h, float *out, float *save_mean,
                             float *save_invstd, float *running_mean, float *running_var,
                             const float *in, const float *w, const float *b, float eps,
                             float momentum, bool train, dq_err *err);

/* Training-mode backward: din, dw, db += (all three required on cuDNN). */
dq_status dq_cuda_bn_backward(const dq_cuda_bn *bn, cudnnHandle_t h, float *din, float *dw,
                              float *db, const float *dout, const float *in, const float *w,
                              const float *save_mean, const float *save_invstd, float eps,
                              dq_err *err);

void dq_cuda_bn_destroy(dq_cuda_bn *bn);

/* ---- cublas_linear.c: out = in @ w^T + b --------------------------------------------- */

/* in [N,I], w [O,I] (PyTorch layout), b [O] or NULL, out [N,O]. */
dq_status dq_cuda_linear_forward(cublasHandle_t h, cudaStream_t stream, float *out,
                                 const float *in, const float *w, const float *b, int64_t N,
                                 int64_t I, int64_t O, dq_err *err);

/* din [N,I] += dout @ w, dw [O,I] += dout^T @ in, db [O] += column sums. */
dq_status dq_cuda_linear_backward(cublasHandle_t h, cudaStream_t stream, float *din, float *dw,
                                  float *db, const float *dout, const float *in,
                                  const float *w, int64_t N, int64_t I, int64_t O,
                                  dq_err *err);

#endif
