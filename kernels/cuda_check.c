/* cuda_check.c - CUDA runtime, cuDNN and cuBLAS results as dq_status.
 *
 * The call is named by the text of the expression up to its '(' (the
 * DQ_*_TRY macros pass #expr), so a failure reads
 * "cudnnConvolutionForward: CUDNN_STATUS_EXECUTION_FAILED (8)" without each
 * call site spelling its own name.
 */
#include "kernels/cuda_glue.h"

#include <string.h>

/* Length of the function name at the start of call ("cudaMalloc(&p, n)" -> 10). */
static int s_name_len(const char *call)
{
    size_t n = strcspn(call, "( ");
    return (int)(n > 80 ? 80 : n);
}

dq_status dq_cuda_check(cudaError_t e, const char *call, dq_err *err)
{
    if (e == cudaSuccess) return DQ_OK;
    dq_status st = DQ_ERR_IO;
    if (e == cudaErrorMemoryAllocation) st = DQ_ERR_NOMEM;
    if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver ||
        e == cudaErrorInvalidDevice || e == cudaErrorNoKernelImageForDevice ||
        e == cudaErrorUnsupportedPtxVersion)
        st = DQ_ERR_UNSUPPORTED;
    return dq_fail(err, st, "%.*s: %s (%s, %d)", s_name_len(call), call, cudaGetErrorString(e),
                   cudaGetErrorName(e), (int)e);
}

dq_status dq_cudnn_check(cudnnStatus_t s, const char *call, dq_err *err)
{
    if (s == CUDNN_STATUS_SUCCESS) return DQ_OK;
    dq_status st = DQ_ERR_IO;
    if (s == CUDNN_STATUS_ALLOC_FAILED) st = DQ_ERR_NOMEM;
    if (s == CUDNN_STATUS_NOT_SUPPORTED || s == CUDNN_STATUS_ARCH_MISMATCH) st = DQ_ERR_UNSUPPORTED;
    return dq_fail(err, st, "%.*s: %s (%d)", s_name_len(call), call, cudnnGetErrorString(s),
                   (int)s);
}

/* cublasGetStatusString (cuBLAS >= 11.4) gives the status by name. */
dq_status dq_cublas_check(cublasStatus_t s, const char *call, dq_err *err)
{
    if (s == CUBLAS_STATUS_SUCCESS) return DQ_OK;
    dq_status st = DQ_ERR_IO;
    if (s == CUBLAS_STATUS_ALLOC_FAILED) st = DQ_ERR_NOMEM;
    if (s == CUBLAS_STATUS_NOT_SUPPORTED || s == CUBLAS_STATUS_ARCH_MISMATCH ||
        s == CUBLAS_STATUS_NOT_INITIALIZED)
        st = DQ_ERR_UNSUPPORTED;
    return dq_fail(err, st, "%.*s: %s (%d)", s_name_len(call), call,
                   cublasGetStatusString(s), (int)s);
}
