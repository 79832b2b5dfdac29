/* cuda_testutil.c - the device fixture of the GPU parity tests (see
 * cuda_testutil.h): one setup, teardown and set of upload / download /
 * compare helpers for test_cuda.c and test_cuda_ops.c, which each carried
 * their own copy. Failures go through cmocka's fail_msg, so these run
 * inside a test only (setup and teardown excepted).
 */
#include "cuda_testutil.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "gradcheck.h"

int dq_tgpu_setup(void **state, const char *prog, uint64_t seed)
{
    dq_tgpu *g = calloc(1, sizeof *g);
    if (!g) return -1;
    dq_err err = {{0}};
    if (dq_backend_select("cuda:0", &g->dev, &err) != DQ_OK) {
        fprintf(stderr, "%s: setup failed: %s\n", prog, err.msg);
        free(g);
        return -1;
    }
    /* calloc left every handle NULL: those still NULL were not made. */
    const char *what = NULL;
    if (cudaStreamCreate(&g->stream) != cudaSuccess)
        what = "cudaStreamCreate";
    else if (cudnnCreate(&g->dnn) != CUDNN_STATUS_SUCCESS)
        what = "cudnnCreate";
    else if (cudnnSetStream(g->dnn, g->stream) != CUDNN_STATUS_SUCCESS)
        what = "cudnnSetStream";
    else if (cublasCreate(&g->blas) != CUBLAS_STATUS_SUCCESS)
        what = "cublasCreate";
    else if (cublasSetStream(g->blas, g->stream) != CUBLAS_STATUS_SUCCESS ||
             cublasSetMathMode(g->blas, CUBLAS_DEFAULT_MATH) != CUBLAS_STATUS_SUCCESS)
        what = "cublasSetStream / cublasSetMathMode";
    if (what) {
        fprintf(stderr, "%s: setup failed: %s\n", prog, what);
        *state = g;
        (void)dq_tgpu_teardown(state);
        return -1;
    }
    dq_rng_seed(&g->rng, seed);
    *state = g;
    return 0;
}

int dq_tgpu_teardown(void **state)
{
    dq_tgpu *g = *state;
    if (!g) return 0;
    dq_tgpu_release(g);
    if (g->blas) (void)cublasDestroy(g->blas);
    if (g->dnn) (void)cudnnDestroy(g->dnn);
    if (g->stream) (void)cudaStreamDestroy(g->stream);
    free(g);
    *state = NULL;
    return 0;
}

void *dq_tgpu_alloc(dq_tgpu *g, size_t bytes)
{
    assert_true(g->n < DQ_TGPU_ALLOCS);
    void *p = NULL;
    DQ_TGPU_CUDA(cudaMalloc(&p, bytes ? bytes : 4));
    g->ptr[g->n++] = p; /* released even if the memset fails */
    DQ_TGPU_CUDA(cudaMemset(p, 0, bytes ? bytes : 4));
    return p;
}

float *dq_tgpu_up(dq_tgpu *g, const float *h, int64_t n)
{
    float *d = dq_tgpu_alloc(g, (size_t)n * sizeof(float));
    DQ_TGPU_CUDA(cudaMemcpy(d, h, (size_t)n * sizeof(float), cudaMemcpyHostToDevice));
    return d;
}

void dq_tgpu_down(dq_tgpu *g, void *h, const void *d, size_t bytes)
{
    DQ_TGPU_CUDA(cudaStreamSynchronize(g->stream));
    DQ_TGPU_CUDA(cudaMemcpy(h, d, bytes, cudaMemcpyDeviceToHost));
}

void dq_tgpu_release(dq_tgpu *g)
{
    (void)cudaStreamSynchronize(g->stream);
    for (int i = 0; i < g->n; i++) (void)cudaFree(g->ptr[i]);
    g->n = 0;
}

float *dq_tgpu_random(dq_tgpu *g, int64_t n, float lo, float hi)
{
    float *h = malloc((size_t)(n ? n : 1) * sizeof(float));
    assert_non_null(h);
    dq_test_fill(h, NULL, n, &g->rng, lo, hi);
    return h;
}

double dq_tgpu_norm_err(const float *got, const float *want, int64_t n)
{
    double diff = 0.0, scale = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(got[i]) || isnan(want[i])) return INFINITY;
        double d = fabs((double)got[i] - (double)want[i]);
        if (d > diff) diff = d;
        if (fabs((double)want[i]) > scale) scale = fabs((double)want[i]);
    }
    return scale > 0.0 ? diff / scale : diff;
}

void dq_tgpu_expect(dq_tgpu *g, const char *what, const float *d, const float *want,
                        int64_t n)
{
    float *got = malloc((size_t)(n ? n : 1) * sizeof(float));
    assert_non_null(got);
    dq_tgpu_down(g, got, d, (size_t)n * sizeof(float));
    double e = dq_tgpu_norm_err(got, want, n);
    free(got);
    if (!(e <= DQ_TGPU_TOL))
        fail_msg("%s: normalised error %.3g > %.0e", what, e, DQ_TGPU_TOL);
}
