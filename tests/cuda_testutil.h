/* cuda_testutil.h - what the GPU parity tests share: when they may skip
 * and when they must fail, and the device fixture they run on.
 *
 * A machine without a GPU skips the GPU tests ("1..0 # SKIP", counted as
 * skipped, never passed): no driver (cudaErrorInsufficientDriver is what
 * the runtime says without libcuda), no device, or zero devices. Any other
 * failure to select cuda:0 (a device whose kernels this build has no image
 * for, a device the driver cannot initialise, ...) is a broken setup the
 * tests must report as a failure, not hide as a skip.
 *
 * The fixture (dq_tgpu, cuda_testutil.c) is test_cuda.c's and
 * test_cuda_ops.c's cmocka group state: cuda:0 selected, one stream with a
 * cuDNN and a cuBLAS handle bound to it, the current test's device
 * allocations (freed by dq_tgpu_release at the end of each test) and
 * the group's random stream. Its helpers upload, download and compare a
 * device buffer with the CPU op's result by normalised error, failing the
 * test (cmocka fail_msg) on any CUDA error. The inline skip rule below
 * needs no cmocka, for test_cuda_host.c.
 */
#ifndef DQ_CUDA_TESTUTIL_H
#define DQ_CUDA_TESTUTIL_H

#include <stdbool.h>
#include <stdio.h>

#include <stddef.h>
#include <stdint.h>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include "tensor/backend_cuda.h"
#include "tensor/rng.h"

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

/* ---- the device fixture (cuda_testutil.c; links cmocka) ------------------------------ */

#define DQ_TGPU_TOL 1e-4   /* normalised error the parity tests accept */
#define DQ_TGPU_ALLOCS 64  /* device allocations per test */

typedef struct {
    dq_device dev;
    cudaStream_t stream;
    cudnnHandle_t dnn;
    cublasHandle_t blas;
    void *ptr[DQ_TGPU_ALLOCS];
    int n;
    dq_rng rng;
} dq_tgpu;

/* Fails the current test with the expression and CUDA's message. */
#define DQ_TGPU_CUDA(expr)                                                             \
    do {                                                                               \
        cudaError_t e_ = (expr);                                                       \
        if (e_ != cudaSuccess) fail_msg("%s: %s", #expr, cudaGetErrorString(e_));      \
    } while (0)

/* Expects DQ_OK from a call that reports into the caller's local `err`. */
#define DQ_TGPU_OK(expr)                                                               \
    do {                                                                               \
        if ((expr) != DQ_OK) fail_msg("%s: %s", #expr, err.msg);                       \
    } while (0)

/* cmocka group setup: a new fixture in *state, rng seeded with seed; -1
 * (message on stderr naming prog) when a handle cannot be made. */
int dq_tgpu_setup(void **state, const char *prog, uint64_t seed);

/* cmocka group teardown: frees what setup made and any leftover buffers. */
int dq_tgpu_teardown(void **state);

/* A zeroed device buffer of bytes (4 when 0), freed by dq_tgpu_release. */
void *dq_tgpu_alloc(dq_tgpu *g, size_t bytes);

/* A device copy of n host floats. */
float *dq_tgpu_up(dq_tgpu *g, const float *h, int64_t n);

/* Waits for the stream, then copies bytes from device d to host h. */
void dq_tgpu_down(dq_tgpu *g, void *h, const void *d, size_t bytes);

/* Frees this test's device buffers (after the stream is idle). */
void dq_tgpu_release(dq_tgpu *g);

/* n host floats uniform in [lo, hi) from the fixture's stream; the caller
 * frees them. */
float *dq_tgpu_random(dq_tgpu *g, int64_t n, float lo, float hi);

/* max|got - want| / max|want| (the plain max when want is all zero); +inf
 * when either has a NaN. */
double dq_tgpu_norm_err(const float *got, const float *want, int64_t n);

/* Downloads n floats from d and fails the test, naming what, when their
 * normalised error against the CPU's want is over DQ_TGPU_TOL. */
void dq_tgpu_expect(dq_tgpu *g, const char *what, const float *d, const float *want,
                        int64_t n);

#endif
