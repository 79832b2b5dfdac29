/* cublas_linear.c - linear layers on cuBLAS sgemm (the device twin of
 * linear.c).
 *
 * cuBLAS is column-major; a row-major [R,C] matrix is the column-major
 * [C,R] one, so each row-major product is written as its transpose:
 *     forward   out [N,O]  = in x w^T      ->  out^T = op_T(w) x in^T
 *     backward  din [N,I] += dout x w      ->  din^T += w^T x dout^T
 *               dw  [O,I] += dout^T x in   ->  dw^T  += in^T x op_T(dout^T)
 *               db  [O]   += column sums of dout (dq_k_bias_grad)
 * Backward accumulates (beta = 1). The handle must be bound to `stream`
 * (cublasSetStream) by its owner; the bias kernels run on the same stream.
 */
#include "kernels/cuda_glue.h"

#include <limits.h>

#include "kernels/kernels.h"

static dq_status s_check(const char *op, int64_t N, int64_t I, int64_t O, dq_err *err)
{
    if (N < 0 || I < 1 || O < 1)
        return dq_fail(err, DQ_ERR_SHAPE, "%s on cuBLAS: %lld samples, %lld inputs, %lld outputs",
                       op, (long long)N, (long long)I, (long long)O);
    if (N > INT_MAX || I > INT_MAX || O > INT_MAX)
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "%s on cuBLAS: sizes exceed int range", op);
    return DQ_OK;
}

dq_status dq_cuda_linear_forward(cublasHandle_t h, cudaStream_t stream, float *out,
                                 const float *in, const float *w, const float *b, int64_t N,
                                 int64_t I, int64_t O, dq_err *err)
{
    DQ_TRY(s_check("linear", N, I, O, err));
    if (N == 0) return DQ_OK;
    const float one = 1.0f, zero = 0.0f;
    DQ_CUBLAS_TRY(cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)O, (int)N, (int)I, &one, w,
                              (int)I, in, (int)I, &zero, out, (int)O),
                  err);
    if (b) DQ_CUDA_TRY(dq_k_bias_add(out, b, N, O, stream), err);
    return DQ_OK;
}

dq_status dq_cuda_linear_backward(cublasHandle_t h, cudaStream_t stream, float *din, float *dw,
                                  float *db, const float *dout, const float *in,
                                  const float *w, int64_t N, int64_t I, int64_t O, dq_err *err)
{
    DQ_TRY(s_check("linear backward", N, I, O, err));
    if (N == 0) return DQ_OK;
    const float one = 1.0f;
    if (db) DQ_CUDA_TRY(dq_k_bias_grad(db, dout, N, O, stream), err);
    if (dw)
        DQ_CUBLAS_TRY(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_T, (int)I, (int)O, (int)N, &one, in,
                                  (int)I, dout, (int)O, &one, dw, (int)I),
                      err);
    if (din)
        DQ_CUBLAS_TRY(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, (int)I, (int)N, (int)O, &one, w,
                                  (int)I, dout, (int)O, &one, din, (int)I),
                      err);
    return DQ_OK;
}
