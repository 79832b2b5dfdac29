/* test_cuda_host.c - the host-side logic of the CUDA backend, on any
 * machine (no GPU needed; built only with --with-cuda).
 *
 * What decides how a failure is handled is pure code and is checked here
 * for real: which CUDA runtime, cuDNN 9 and cuBLAS results are sticky
 * (DQ_ERR_DEVICE: the worker must leave) and how the others map; the
 * workspace bookkeeping of a convolution's batch change (a failed check
 * must not record the new batch); and when a GPU test may skip.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "cuda_testutil.h"
#include "kernels/cuda_glue.h"

static void test_cuda_classify(void **state)
{
    (void)state;
    assert_int_equal(dq_cuda_classify(cudaSuccess), DQ_OK);
    assert_int_equal(dq_cuda_classify(cudaErrorMemoryAllocation), DQ_ERR_NOMEM);
    assert_int_equal(dq_cuda_classify(cudaErrorNoDevice), DQ_ERR_UNSUPPORTED);
    assert_int_equal(dq_cuda_classify(cudaErrorNoKernelImageForDevice), DQ_ERR_UNSUPPORTED);
    const cudaError_t sticky[] = {cudaErrorIllegalAddress, cudaErrorECCUncorrectable,
                                  cudaErrorLaunchFailure, cudaErrorMisalignedAddress,
                                  cudaErrorIllegalInstruction, cudaErrorHardwareStackError,
                                  cudaErrorAssert, cudaErrorLaunchTimeout};
    for (size_t i = 0; i < sizeof sticky / sizeof sticky[0]; i++) {
        assert_true(dq_cuda_is_sticky(sticky[i]));
        assert_int_equal(dq_cuda_classify(sticky[i]), DQ_ERR_DEVICE);
    }
    /* recoverable: the call failed, the context is fine */
    const cudaError_t plain[] = {cudaErrorInvalidValue, cudaErrorLaunchOutOfResources,
                                 cudaErrorInvalidConfiguration, cudaErrorNotReady};
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++) {
        assert_false(dq_cuda_is_sticky(plain[i]));
        assert_int_equal(dq_cuda_classify(plain[i]), DQ_ERR_IO);
    }
}

static void test_cudnn_classify(void **state)
{
    (void)state;
    assert_int_equal(dq_cudnn_classify(CUDNN_STATUS_SUCCESS, cudaSuccess), DQ_OK);
    /* cuDNN 9 sub-codes map by category */
    assert_int_equal(dq_cudnn_classify(CUDNN_STATUS_NOT_SUPPORTED, cudaSuccess),
                     DQ_ERR_UNSUPPORTED);
    assert_int_equal(dq_cudnn_classify(CUDNN_STATUS_NOT_SUPPORTED_SHAPE, cudaSuccess),
                     DQ_ERR_UNSUPPORTED);
    assert_int_equal(dq_cudnn_classify(CUDNN_STATUS_NOT_SUPPORTED_ARCH_MISMATCH, cudaSuccess),
                     DQ_ERR_UNSUPPORTED);
    assert_int_equal(dq_cudnn_classify(CUDNN_STATUS_BAD_PARAM_NULL_POINTER, cudaSuccess),
                     DQ_ERR_ARG);
    assert_int_equal(dq_cudnn_classify(CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED,
                                       cudaSuccess),
                     DQ_ERR_NOMEM);
    assert_int_equal(dq_cudnn_classify(CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED,
                                       cudaSuccess),
                     DQ_ERR_NOMEM);
    assert_int_equal(dq_cudnn_classify(CUDNN_STATUS_SUBLIBRARY_LOADING_FAILED, cudaSuccess),
                     DQ_ERR_UNSUPPORTED);
    /* an execution failure is sticky exactly when the runtime says so */
    assert_int_equal(dq_cudnn_classify(CUDNN_STATUS_EXECUTION_FAILED, cudaSuccess), DQ_ERR_IO);
    assert_int_equal(dq_cudnn_classify(CUDNN_STATUS_EXECUTION_FAILED_CUDART,
                                       cudaErrorIllegalAddress),
                     DQ_ERR_DEVICE);
    assert_int_equal(dq_cudnn_classify(CUDNN_STATUS_EXECUTION_FAILED_CUDA_DRIVER,
                                       cudaErrorECCUncorrectable),
                     DQ_ERR_DEVICE);
    assert_int_equal(dq_cudnn_classify(CUDNN_STATUS_EXECUTION_FAILED, cudaErrorInvalidValue),
                     DQ_ERR_IO);
}

static void test_cublas_classify(void **state)
{
    (void)state;
    assert_int_equal(dq_cublas_classify(CUBLAS_STATUS_SUCCESS, cudaSuccess), DQ_OK);
    assert_int_equal(dq_cublas_classify(CUBLAS_STATUS_ALLOC_FAILED, cudaSuccess), DQ_ERR_NOMEM);
    assert_int_equal(dq_cublas_classify(CUBLAS_STATUS_INVALID_VALUE, cudaSuccess), DQ_ERR_ARG);
    assert_int_equal(dq_cublas_classify(CUBLAS_STATUS_ARCH_MISMATCH, cudaSuccess),
                     DQ_ERR_UNSUPPORTED);
    assert_int_equal(dq_cublas_classify(CUBLAS_STATUS_EXECUTION_FAILED, cudaSuccess), DQ_ERR_IO);
    assert_int_equal(dq_cublas_classify(CUBLAS_STATUS_EXECUTION_FAILED, cudaErrorLaunchFailure),
                     DQ_ERR_DEVICE);
}

/* The messages name the call, the result and, when sticky, say so. */
static void test_check_messages(void **state)
{
    (void)state;
    dq_err err = {{0}};
    assert_int_equal(dq_cuda_check(cudaErrorIllegalAddress, "cudaMemcpyAsync(d, s, n)", &err),
                     DQ_ERR_DEVICE);
    assert_non_null(strstr(err.msg, "cudaMemcpyAsync: "));
    assert_non_null(strstr(err.msg, "cudaErrorIllegalAddress"));
    assert_non_null(strstr(err.msg, "sticky"));
    assert_int_equal(dq_cuda_check(cudaErrorInvalidValue, "cudaMalloc(&p, n)", &err), DQ_ERR_IO);
    assert_null(strstr(err.msg, "sticky"));
    /* no driver here or a healthy one there: never sticky */
    assert_int_equal(dq_cudnn_check(CUDNN_STATUS_NOT_SUPPORTED_SHAPE, "cudnnConvolutionForward(h)",
                                     &err),
                     DQ_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "cudnnConvolutionForward: "));
    assert_non_null(strstr(err.msg, "(3002)"));
    assert_int_equal(dq_cublas_check(CUBLAS_STATUS_INVALID_VALUE, "cublasSgemm(h)", &err),
                     DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "cublasSgemm: "));
    assert_int_equal(dq_cuda_check(cudaSuccess, "x()", &err), DQ_OK);
}

/* A failed workspace check keeps the old batch, so the next call at the
 * same batch checks again instead of running with too small a workspace. */
static void test_ws_admit(void **state)
{
    (void)state;
    dq_err err = {{0}};
    int64_t n = 64;
    assert_int_equal(dq_cuda_ws_admit(&n, 128, 2000, 1000, &err), DQ_ERR_NOMEM);
    assert_int_equal(n, 64);
    assert_non_null(strstr(err.msg, "batch 128 needs 2000 bytes"));
    assert_int_equal(dq_cuda_ws_admit(&n, 128, 2000, 1000, &err), DQ_ERR_NOMEM);
    assert_int_equal(n, 64);
    assert_int_equal(dq_cuda_ws_admit(&n, 32, 1000, 1000, &err), DQ_OK);
    assert_int_equal(n, 32);
}

static void test_skip_rule(void **state)
{
    (void)state;
    assert_true(dq_test_no_gpu(cudaErrorNoDevice, 0));
    assert_true(dq_test_no_gpu(cudaErrorInsufficientDriver, 0));
    assert_true(dq_test_no_gpu(cudaSuccess, 0));
    assert_false(dq_test_no_gpu(cudaSuccess, 1));
    assert_false(dq_test_no_gpu(cudaErrorInitializationError, 0));
    assert_false(dq_test_no_gpu(cudaErrorNoKernelImageForDevice, 1));
    assert_false(dq_test_no_gpu(cudaErrorECCUncorrectable, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cuda_classify),  cmocka_unit_test(test_cudnn_classify),
        cmocka_unit_test(test_cublas_classify), cmocka_unit_test(test_check_messages),
        cmocka_unit_test(test_ws_admit),       cmocka_unit_test(test_skip_rule),
    };
    return cmocka_run_group_tests_name("cuda_host", tests, NULL, NULL);
}
