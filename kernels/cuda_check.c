/* cuda_check.c - CUDA runtime, cuDNN and cuBLAS results as dq_status.
 *
 * The call is named by the text of the expression up to its '(' (the
 * DQ_*_TRY macros pass #expr), so a failure reads
 * "cudnnConvolutionForward: CUDNN_STATUS_EXECUTION_FAILED (5000)" without
 * each call site spelling its own name.
 *
 * Classification (the pure dq_*_classify functions, testable without a GPU):
 *   - out of memory                      -> DQ_ERR_NOMEM
 *   - no driver/device/kernel image      -> DQ_ERR_UNSUPPORTED
 *   - a STICKY error (illegal address, ECC, launch failure, ...): the CUDA
 *     context is corrupt and every later call in this process fails too
 *                                        -> DQ_ERR_DEVICE, so a server leaves
 *     and exits instead of answering every later request with an error
 *   - anything else                      -> DQ_ERR_IO (this call failed)
 * cuDNN 9 numbers its statuses by category (CUDNN_STATUS_CATEGORY: 1000
 * uncategorised, 2000 bad parameter, 3000 not supported, 4000 internal,
 * 5000 execution failed), each with sub-codes; we map the category, not a
 * handful of cuDNN 8 values, and append cudnnGetLastErrorString's detail. A
 * cuDNN or cuBLAS execution failure may be the echo of a sticky CUDA error:
 * the runtime's own last error decides (s_last).
 */
#include "kernels/cuda_glue.h"

#include <string.h>

/* Length of the function name at the start of call ("cudaMalloc(&p, n)" -> 10). */
static int s_name_len(const char *call)
{
    size_t n = strcspn(call, "( ");
    return (int)(n > 80 ? 80 : n);
}

bool dq_cuda_is_sticky(cudaError_t e)
{
    switch (e) {
    case cudaErrorECCUncorrectable:
    case cudaErrorNvlinkUncorrectable:
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchTimeout:
    case cudaErrorContextIsDestroyed:
    case cudaErrorAssert:
    case cudaErrorHardwareStackError:
    case cudaErrorIllegalInstruction:
    case cudaErrorMisalignedAddress:
    case cudaErrorInvalidAddressSpace:
    case cudaErrorInvalidPc:
    case cudaErrorLaunchFailure:
    case cudaErrorExternalDevice:
    case cudaErrorUnknown: /* what an Xid often looks like from here: restart */
        return true;
    default: return false;
    }
}

dq_status dq_cuda_classify(cudaError_t e)
{
    if (e == cudaSuccess) return DQ_OK;
    if (e == cudaErrorMemoryAllocation) return DQ_ERR_NOMEM;
    if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver ||
        e == cudaErrorInvalidDevice || e == cudaErrorNoKernelImageForDevice ||
        e == cudaErrorUnsupportedPtxVersion)
        return DQ_ERR_UNSUPPORTED;
    if (dq_cuda_is_sticky(e)) return DQ_ERR_DEVICE;
    return DQ_ERR_IO;
}

dq_status dq_cudnn_classify(cudnnStatus_t s, cudaError_t last)
{
    if (s == CUDNN_STATUS_SUCCESS) return DQ_OK;
    if (s == CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED ||
        s == CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED)
        return DQ_ERR_NOMEM;
    switch ((int)CUDNN_STATUS_CATEGORY((int)s)) {
    case CUDNN_STATUS_NOT_SUPPORTED: return DQ_ERR_UNSUPPORTED;
    case CUDNN_STATUS_BAD_PARAM: return DQ_ERR_ARG;
    case CUDNN_STATUS_EXECUTION_FAILED:
        return dq_cuda_is_sticky(last) ? DQ_ERR_DEVICE : DQ_ERR_IO;
    case 1000: /* uncategorised (no enum names it): not initialised, version, licence, loading */
        if (s == CUDNN_STATUS_SUBLIBRARY_VERSION_MISMATCH ||
            s == CUDNN_STATUS_SUBLIBRARY_LOADING_FAILED || s == CUDNN_STATUS_LICENSE_ERROR)
            return DQ_ERR_UNSUPPORTED;
        return DQ_ERR_IO;
    default: return dq_cuda_is_sticky(last) ? DQ_ERR_DEVICE : DQ_ERR_IO;
    }
}

dq_status dq_cublas_classify(cublasStatus_t s, cudaError_t last)
{
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return DQ_OK;
    case CUBLAS_STATUS_ALLOC_FAILED: return DQ_ERR_NOMEM;
    case CUBLAS_STATUS_NOT_SUPPORTED:
    case CUBLAS_STATUS_ARCH_MISMATCH:
    case CUBLAS_STATUS_NOT_INITIALIZED: return DQ_ERR_UNSUPPORTED;
    case CUBLAS_STATUS_INVALID_VALUE: return DQ_ERR_ARG;
    default: return dq_cuda_is_sticky(last) ? DQ_ERR_DEVICE : DQ_ERR_IO;
    }
}

/* The runtime's view after a library failure: a sticky error is returned by
 * every call touching the context, even when this runtime instance (cuDNN
 * links its own) has not yet seen it; cudaStreamQuery only asks. */
static cudaError_t s_last(void)
{
    cudaError_t e = cudaPeekAtLastError();
    if (e == cudaSuccess) e = cudaStreamQuery(0);
    return e == cudaErrorNotReady ? cudaSuccess : e;
}

static const char *s_sticky_note(dq_status st)
{
    return st == DQ_ERR_DEVICE ? " [sticky: the device is unusable in this process]" : "";
}

dq_status dq_cuda_check(cudaError_t e, const char *call, dq_err *err)
{
    if (e == cudaSuccess) return DQ_OK;
    dq_status st = dq_cuda_classify(e);
    return dq_fail(err, st, "%.*s: %s (%s, %d)%s", s_name_len(call), call, cudaGetErrorString(e),
                   cudaGetErrorName(e), (int)e, s_sticky_note(st));
}

dq_status dq_cudnn_check(cudnnStatus_t s, const char *call, dq_err *err)
{
    if (s == CUDNN_STATUS_SUCCESS) return DQ_OK;
    dq_status st = dq_cudnn_classify(s, s_last());
    char last[256] = "";
    cudnnGetLastErrorString(last, sizeof last);
    return dq_fail(err, st, "%.*s: %s (%d)%s%s%s", s_name_len(call), call, cudnnGetErrorString(s),
                   (int)s, last[0] ? ": " : "", last, s_sticky_note(st));
}

/* cublasGetStatusString (cuBLAS >= 11.4) gives the status by name. */
dq_status dq_cublas_check(cublasStatus_t s, const char *call, dq_err *err)
{
    if (s == CUBLAS_STATUS_SUCCESS) return DQ_OK;
    dq_status st = dq_cublas_classify(s, s_last());
    return dq_fail(err, st, "%.*s: %s (%d)%s", s_name_len(call), call, cublasGetStatusString(s),
                   (int)s, s_sticky_note(st));
}
