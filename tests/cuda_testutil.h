/* cuda_testutil.h - when a GPU test may skip and when it must fail.
 *
 * A machine without a GPU skips the GPU tests ("1..0 # SKIP", counted as
 * skipped, never passed): no driver (cudaErrorInsufficientDriver is what
 * the runtime says without libcuda), no device, or zero devices. Any other
 * failure to select cuda:0 (a device whose kernels this build has no image
 * for, a device the driver cannot initialise, ...) is a broken setup the
 * tests must report as a failure, not hide as a skip.
 */
#ifndef DQ_CUDA_TESTUTIL_H
#define DQ_CUDA_TESTUTIL_H

#include <stdbool.h>
#include <stdio.h>

#include <cuda_runtime_api.h>

#include "tensor/backend_cuda.h"

/* Whether cudaGetDeviceCount's answer means "no GPU here". */
static inline bool dq_test_no_gpu(cudaError_t e, int count)
{
    return e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver ||
           (e == cudaSuccess && count < 1);
}

/* 0: go on with *dev = cuda:0; otherwise main returns the value: 0 after
 * printing the TAP skip plan, 1 after a "Bail out!" line. */
static inline int dq_test_gpu_or_skip(const char *prog, dq_device *dev)
{
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (dq_test_no_gpu(e, count)) {
        printf("1..0 # SKIP no GPU: %s\n",
               e == cudaSuccess ? "0 CUDA devices" : cudaGetErrorString(e));
        return -1;
    }
    dq_err err = {{0}};
    if (dq_backend_select("cuda:0", dev, &err) != DQ_OK) {
        printf("Bail out! %s: a GPU is present but unusable: %s\n", prog, err.msg);
        return 1;
    }
    return 0;
}

#endif
