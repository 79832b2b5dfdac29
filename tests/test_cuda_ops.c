/* test_cuda_ops.c - the residual / depthwise ops on the GPU against the CPU.
 *
 * The issue-9 ops beside test_cuda.c's (which keeps the original ops and the
 * executor): batch norm on cuDNN (training step with running statistics,
 * saved statistics and gradients; eval), grouped and depthwise convolution
 * on cuDNN, maxpool with padding, avgpool2d in both count_include_pad modes,
 * global average pooling, add and clip. Each runs forward and backward on
 * random inputs of odd sizes next to the CPU op of src/tensor and is
 * compared by normalised error max|gpu - cpu| / max|cpu| <= 1e-4 (NaN
 * fails); gradients start from random values, so "adds into" is checked.
 *
 * Without a GPU the binary prints "1..0 # SKIP ..." and exits 0; a GPU that
 * is there but unusable fails (cuda_testutil.h).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cuda_testutil.h"
#include "gradcheck.h"
#include "kernels/cuda_glue.h"
#include "kernels/kernels.h"
#include "tensor/backend_cuda.h"
#include "tensor/ops.h"

#define S_TOL 1e-4
#define S_MAX_ALLOCS 64

typedef struct {
    cudaStream_t stream;
    cudnnHandle_t dnn;
    void *ptr[S_MAX_ALLOCS];
    int n;
    dq_rng rng;
} s_gpu;

#define S_CUDA(expr)                                                                   \
    do {                                                                               \
        cudaError_t e_ = (expr);                                                       \
        if (e_ != cudaSuccess) fail_msg("%s: %s", #expr, cudaGetErrorString(e_));      \
    } while (0)

#define S_OK(expr)                                                                     \
    do {                                                                               \
        if ((expr) != DQ_OK) fail_msg("%s: %s", #expr, err.msg);                       \
    } while (0)

static void *s_alloc(s_gpu *g, size_t bytes)
{
    assert_true(g->n < S_MAX_ALLOCS);
    void *p = NULL;
    S_CUDA(cudaMalloc(&p, bytes ? bytes : 4));
    S_CUDA(cudaMemset(p, 0, bytes ? bytes : 4));
    g->ptr[g->n++] = p;
    return p;
}

static float *s_up(s_gpu *g, const float *h, int64_t n)
{
    float *d = s_alloc(g, (size_t)n * sizeof(float));
    S_CUDA(cudaMemcpy(d, h, (size_t)n * sizeof(float), cudaMemcpyHostToDevice));
    return d;
}

static void s_down(s_gpu *g, void *h, const void *d, size_t bytes)
{
    S_CUDA(cudaStreamSynchronize(g->stream));
    S_CUDA(cudaMemcpy(h, d, bytes, cudaMemcpyDeviceToHost));
}

static void s_release(s_gpu *g)
{
    (void)cudaStreamSynchronize(g->stream);
    for (int i = 0; i < g->n; i++) (void)cudaFree(g->ptr[i]);
    g->n = 0;
}

static float *s_random(s_gpu *g, int64_t n, float lo, float hi)
{
    float *h = malloc((size_t)(n ? n : 1) * sizeof(float));
    assert_non_null(h);
    dq_test_fill(h, NULL, n, &g->rng, lo, hi);
    return h;
}

static float *s_copy(const float *h, int64_t n)
{
    float *c = malloc((size_t)(n ? n : 1) * sizeof(float));
    assert_non_null(c);
    memcpy(c, h, (size_t)n * sizeof(float));
    return c;
}

static void s_expect(s_gpu *g, const char *what, const float *d, const float *want, int64_t n)
{
    float *got = malloc((size_t)(n ? n : 1) * sizeof(float));
    assert_non_null(got);
    s_down(g, got, d, (size_t)n * sizeof(float));
    double diff = 0.0, scale = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(got[i]) || isnan(want[i])) {
            diff = INFINITY;
            break;
        }
        double dd = fabs((double)got[i] - (double)want[i]);
        if (dd > diff) diff = dd;
        if (fabs((double)want[i]) > scale) scale = fabs((double)want[i]);
    }
    free(got);
    double e = scale > 0.0 ? diff / scale : diff;
    if (!(e <= S_TOL)) fail_msg("%s: normalised error %.3g > %.0e", what, e, S_TOL);
}

/* ---- batch norm (cuDNN) ------------------------------------------------------------- */

static void s_bn_case(s_gpu *g, int64_t N, int64_t C, int64_t H, int64_t W)
{
    dq_err err = {{0}};
    const int64_t nx = N * C * H * W;
    float *x = s_random(g, nx, -2, 3), *w = s_random(g, C, 0.5f, 1.5f), *b = s_random(g, C, -1, 1);
    float *rm = s_random(g, C, -1, 1), *rv = s_random(g, C, 0.5f, 2), *dy = s_random(g, nx, -1, 1);
    float *dx = s_random(g, nx, -1, 1), *dw = s_random(g, C, -1, 1), *db = s_random(g, C, -1, 1);
    float *y = malloc((size_t)nx * 4), *sm = malloc((size_t)C * 4), *si = malloc((size_t)C * 4);
    float *d_x = s_up(g, x, nx), *d_w = s_up(g, w, C), *d_b = s_up(g, b, C);
    float *d_rm = s_up(g, rm, C), *d_rv = s_up(g, rv, C), *d_dy = s_up(g, dy, nx);
    float *d_dx = s_up(g, dx, nx), *d_dw = s_up(g, dw, C), *d_db = s_up(g, db, C);
    float *d_y = s_alloc(g, (size_t)nx * 4), *d_sm = s_alloc(g, (size_t)C * 4);
    float *d_si = s_alloc(g, (size_t)C * 4);
    dq_tensor tx = dq_tensor_view4(x, N, C, H, W), ty = dq_tensor_view4(y, N, C, H, W);
    dq_tensor tw = dq_tensor_view(w, 1, &C), tb = dq_tensor_view(b, 1, &C);
    dq_tensor trm = dq_tensor_view(rm, 1, &C), trv = dq_tensor_view(rv, 1, &C);
    dq_tensor tdy = dq_tensor_view4(dy, N, C, H, W), tdx = dq_tensor_view4(dx, N, C, H, W);
    dq_tensor tdw = dq_tensor_view(dw, 1, &C), tdb = dq_tensor_view(db, 1, &C);

    dq_cuda_bn bn;
    S_OK(dq_cuda_bn_init(&bn, N, C, H, W, &err));
    S_OK(dq_batchnorm2d_forward(&ty, sm, si, &trm, &trv, &tx, &tw, &tb, 1e-5f, 0.1f, true, &err));
    S_OK(dq_cuda_bn_forward(&bn, g->dnn, d_y, d_sm, d_si, d_rm, d_rv, d_x, d_w, d_b, 1e-5f, 0.1f,
                            true, &err));
    s_expect(g, "batchnorm train out", d_y, y, nx);
    s_expect(g, "batchnorm save_mean", d_sm, sm, C);
    s_expect(g, "batchnorm save_invstd", d_si, si, C);
    s_expect(g, "batchnorm running_mean", d_rm, rm, C);
    s_expect(g, "batchnorm running_var", d_rv, rv, C);
    S_OK(dq_batchnorm2d_backward(&tdx, &tdw, &tdb, &tdy, &tx, &tw, sm, si, &err));
    S_OK(dq_cuda_bn_backward(&bn, g->dnn, d_dx, d_dw, d_db, d_dy, d_x, d_w, d_sm, d_si, 1e-5f,
                             &err));
    s_expect(g, "batchnorm din", d_dx, dx, nx);
    s_expect(g, "batchnorm dw", d_dw, dw, C);
    s_expect(g, "batchnorm db", d_db, db, C);
    /* eval with the updated running stats, then a batch of one */
    S_OK(dq_batchnorm2d_forward(&ty, NULL, NULL, &trm, &trv, &tx, &tw, &tb, 1e-5f, 0.1f, false,
                                &err));
    S_OK(dq_cuda_bn_forward(&bn, g->dnn, d_y, NULL, NULL, d_rm, d_rv, d_x, d_w, d_b, 1e-5f, 0.1f,
                            false, &err));
    s_expect(g, "batchnorm eval out", d_y, y, nx);
    S_OK(dq_cuda_bn_set_batch(&bn, 1, &err));
    S_OK(dq_cuda_bn_forward(&bn, g->dnn, d_y, NULL, NULL, d_rm, d_rv, d_x, d_w, d_b, 1e-5f, 0.1f,
                            false, &err));
    s_expect(g, "batchnorm eval out, batch 1", d_y, y, C * H * W);
    /* the GPU requires all three gradients */
    assert_int_equal(dq_cuda_bn_backward(&bn, g->dnn, NULL, d_dw, d_db, d_dy, d_x, d_w, d_sm,
                                         d_si, 1e-5f, &err),
                     DQ_ERR_ARG);
    dq_cuda_bn_destroy(&bn);
    free(x), free(w), free(b), free(rm), free(rv), free(dy), free(dx), free(dw), free(db);
    free(y), free(sm), free(si);
    s_release(g);
}

static void test_batchnorm(void **state)
{
    s_bn_case(*state, 4, 5, 7, 9);
    s_bn_case(*state, 3, 64, 14, 14); /* a ResNet stage's shape */
    s_bn_case(*state, 8, 3, 1, 1);    /* statistics over the batch only */
}

/* ---- grouped / depthwise convolution (cuDNN) --------------------------------------- */

static void s_gconv_case(s_gpu *g, int64_t N, int64_t C, int64_t H, int64_t W, int64_t OC, int k,
                         int stride, int pad, int groups)
{
    dq_err err = {{0}};
    int64_t OH = dq_conv2d_out_size(H, k, stride, pad), OW = dq_conv2d_out_size(W, k, stride, pad);
    int64_t nx = N * C * H * W, nw = OC * (C / groups) * k * k, ny = N * OC * OH * OW;
    float *x = s_random(g, nx, -1, 1), *w = s_random(g, nw, -0.5f, 0.5f);
    float *b = s_random(g, OC, -1, 1), *dy = s_random(g, ny, -1, 1);
    float *dx = s_random(g, nx, -1, 1), *dw = s_random(g, nw, -1, 1), *db = s_random(g, OC, -1, 1);
    float *y = malloc((size_t)ny * 4);
    dq_conv2d_params cp = {.stride = stride, .padding = pad, .max_group = 0, .groups = groups};
    int64_t wsf = dq_conv2d_workspace(N, C, H, W, k, k, cp);
    float *ws = malloc((size_t)(wsf ? wsf : 1) * 4);
    dq_tensor tx = dq_tensor_view4(x, N, C, H, W), tw = dq_tensor_view4(w, OC, C / groups, k, k);
    dq_tensor ty = dq_tensor_view4(y, N, OC, OH, OW), tb = dq_tensor_view(b, 1, &OC);
    dq_tensor tdy = dq_tensor_view4(dy, N, OC, OH, OW), tdx = dq_tensor_view4(dx, N, C, H, W);
    dq_tensor tdw = dq_tensor_view4(dw, OC, C / groups, k, k), tdb = dq_tensor_view(db, 1, &OC);
    S_OK(dq_conv2d_forward(&ty, &tx, &tw, &tb, cp, ws, wsf, &err));

    dq_cuda_conv cv;
    S_OK(dq_cuda_conv_init_grouped(&cv, g->dnn, N, C, H, W, OC, k, stride, pad, groups, true,
                                   (size_t)1 << 28, &err));
    void *d_ws = cv.ws_bytes ? s_alloc(g, cv.ws_bytes) : NULL;
    float *d_x = s_up(g, x, nx), *d_w = s_up(g, w, nw), *d_b = s_up(g, b, OC);
    float *d_y = s_alloc(g, (size_t)ny * 4), *d_dy = s_up(g, dy, ny);
    float *d_dx = s_up(g, dx, nx), *d_dw = s_up(g, dw, nw), *d_db = s_up(g, db, OC);
    /* The CPU reference accumulates into dx, dw, db in place: only after their
     * starting values went to the device. */
    S_OK(dq_conv2d_backward(&tdx, &tdw, &tdb, &tdy, &tx, &tw, cp, ws, wsf, &err));
    S_OK(dq_cuda_conv_forward(&cv, g->dnn, d_y, d_x, d_w, d_b, d_ws, cv.ws_bytes, &err));
    s_expect(g, "grouped conv forward", d_y, y, ny);
    S_OK(dq_cuda_conv_backward(&cv, g->dnn, d_dx, d_dw, d_db, d_dy, d_x, d_w, d_ws, cv.ws_bytes,
                               &err));
    s_expect(g, "grouped conv din", d_dx, dx, nx);
    s_expect(g, "grouped conv dw", d_dw, dw, nw);
    s_expect(g, "grouped conv db", d_db, db, OC);
    dq_cuda_conv_destroy(&cv);
    free(x), free(w), free(b), free(dy), free(dx), free(dw), free(db), free(y), free(ws);
    s_release(g);
}

static void test_grouped_conv(void **state)
{
    s_gconv_case(*state, 3, 8, 9, 7, 8, 3, 1, 1, 8);    /* depthwise */
    s_gconv_case(*state, 2, 6, 11, 10, 12, 3, 2, 1, 6); /* depthwise x2, stride 2 */
    s_gconv_case(*state, 2, 5, 9, 9, 5, 5, 2, 2, 5);    /* depthwise 5x5 */
    s_gconv_case(*state, 3, 6, 7, 8, 9, 3, 1, 1, 3);    /* 3 groups */
    s_gconv_case(*state, 2, 8, 5, 5, 4, 1, 1, 0, 2);    /* grouped pointwise */
    dq_err err = {{0}};
    dq_cuda_conv cv;
    s_gpu *g = *state;
    assert_int_equal(dq_cuda_conv_init_grouped(&cv, g->dnn, 2, 6, 5, 5, 6, 3, 1, 1, 4, false,
                                               (size_t)1 << 20, &err),
                     DQ_ERR_SHAPE);
}

/* ---- pooling -------------------------------------------------------------------------- */

static void s_maxpool_pad_case(s_gpu *g, int64_t N, int64_t C, int64_t H, int64_t W, int k, int s,
                               int p)
{
    dq_err err = {{0}};
    int64_t OH = dq_maxpool2d_out_size_pad(H, k, s, p), OW = dq_maxpool2d_out_size_pad(W, k, s, p);
    int64_t nx = N * C * H * W, ny = N * C * OH * OW;
    float *x = s_random(g, nx, -1, 1), *dy = s_random(g, ny, -1, 1), *dx = s_random(g, nx, -1, 1);
    for (int64_t i = 0; i < nx; i += 13) x[i] = x[i > 0 ? i - 1 : 0]; /* ties */
    float *y = malloc((size_t)ny * 4);
    int32_t *am = malloc((size_t)ny * 4), *gam = malloc((size_t)ny * 4);
    dq_tensor tx = dq_tensor_view4(x, N, C, H, W), ty = dq_tensor_view4(y, N, C, OH, OW);
    dq_tensor tdy = dq_tensor_view4(dy, N, C, OH, OW), tdx = dq_tensor_view4(dx, N, C, H, W);
    float *d_x = s_up(g, x, nx), *d_y = s_alloc(g, (size_t)ny * 4), *d_dy = s_up(g, dy, ny);
    float *d_dx = s_up(g, dx, nx);
    int32_t *d_am = s_alloc(g, (size_t)ny * 4);
    S_OK(dq_maxpool2d_forward_pad(&ty, am, &tx, k, s, p, &err));
    S_CUDA(dq_k_maxpool2d_forward_pad(d_y, d_am, d_x, N * C, H, W, OH, OW, k, s, p, g->stream));
    s_expect(g, "maxpool2d pad forward", d_y, y, ny);
    s_down(g, gam, d_am, (size_t)ny * 4);
    assert_memory_equal(gam, am, (size_t)ny * 4);
    S_OK(dq_maxpool2d_backward(&tdx, &tdy, am, &err));
    S_CUDA(dq_k_maxpool2d_backward_pad(d_dx, d_dy, d_am, N * C, H, W, OH, OW, k, s, p,
                                       g->stream));
    s_expect(g, "maxpool2d pad backward", d_dx, dx, nx);
    free(x), free(dy), free(dx), free(y), free(am), free(gam);
    s_release(g);
}

static void test_maxpool2d_padding(void **state)
{
    s_maxpool_pad_case(*state, 2, 3, 7, 6, 3, 2, 1);
    s_maxpool_pad_case(*state, 2, 64, 14, 14, 3, 2, 1); /* ResNet-18 stem on FMNIST */
    s_maxpool_pad_case(*state, 1, 2, 5, 5, 2, 2, 1);
    s_maxpool_pad_case(*state, 2, 2, 6, 7, 5, 1, 2);
    s_maxpool_pad_case(*state, 2, 3, 9, 8, 3, 2, 0); /* padding 0 through the _pad form */
}

static void s_avgpool_case(s_gpu *g, int64_t N, int64_t C, int64_t H, int64_t W, int k, int s,
                           int p, int inc)
{
    dq_err err = {{0}};
    int64_t OH = dq_avgpool2d_out_size(H, k, s, p), OW = dq_avgpool2d_out_size(W, k, s, p);
    int64_t nx = N * C * H * W, ny = N * C * OH * OW;
    float *x = s_random(g, nx, -1, 1), *dy = s_random(g, ny, -1, 1), *dx = s_random(g, nx, -1, 1);
    float *y = malloc((size_t)ny * 4);
    dq_tensor tx = dq_tensor_view4(x, N, C, H, W), ty = dq_tensor_view4(y, N, C, OH, OW);
    dq_tensor tdy = dq_tensor_view4(dy, N, C, OH, OW), tdx = dq_tensor_view4(dx, N, C, H, W);
    float *d_x = s_up(g, x, nx), *d_y = s_alloc(g, (size_t)ny * 4), *d_dy = s_up(g, dy, ny);
    float *d_dx = s_up(g, dx, nx);
    S_OK(dq_avgpool2d_forward(&ty, &tx, k, s, p, inc, &err));
    S_CUDA(dq_k_avgpool2d_forward(d_y, d_x, N * C, H, W, OH, OW, k, s, p, inc, g->stream));
    s_expect(g, inc ? "avgpool2d forward (include pad)" : "avgpool2d forward", d_y, y, ny);
    S_OK(dq_avgpool2d_backward(&tdx, &tdy, k, s, p, inc, &err));
    S_CUDA(dq_k_avgpool2d_backward(d_dx, d_dy, N * C, H, W, OH, OW, k, s, p, inc, g->stream));
    s_expect(g, inc ? "avgpool2d backward (include pad)" : "avgpool2d backward", d_dx, dx, nx);
    free(x), free(dy), free(dx), free(y);
    s_release(g);
}

static void test_avgpool2d(void **state)
{
    for (int inc = 0; inc < 2; inc++) {
        s_avgpool_case(*state, 2, 3, 7, 6, 3, 2, 1, inc);
        s_avgpool_case(*state, 3, 4, 28, 28, 2, 2, 0, inc);
        s_avgpool_case(*state, 1, 2, 9, 8, 3, 1, 1, inc); /* overlapping */
        s_avgpool_case(*state, 2, 2, 9, 9, 2, 3, 1, inc); /* stride > kernel */
    }
}

static void s_gap_case(s_gpu *g, int64_t N, int64_t C, int64_t H, int64_t W)
{
    dq_err err = {{0}};
    const int64_t nx = N * C * H * W, ny = N * C;
    float *x = s_random(g, nx, -1, 1), *dy = s_random(g, ny, -1, 1), *dx = s_random(g, nx, -1, 1);
    float *y = malloc((size_t)ny * 4);
    dq_tensor tx = dq_tensor_view4(x, N, C, H, W), ty = dq_tensor_view4(y, N, C, 1, 1);
    dq_tensor tdy = dq_tensor_view4(dy, N, C, 1, 1), tdx = dq_tensor_view4(dx, N, C, H, W);
    float *d_x = s_up(g, x, nx), *d_y = s_alloc(g, (size_t)ny * 4), *d_dy = s_up(g, dy, ny);
    float *d_dx = s_up(g, dx, nx);
    S_OK(dq_global_avgpool_forward(&ty, &tx, &err));
    S_CUDA(dq_k_global_avgpool_forward(d_y, d_x, N * C, H * W, g->stream));
    s_expect(g, "global avgpool forward", d_y, y, ny);
    S_OK(dq_global_avgpool_backward(&tdx, &tdy, &err));
    S_CUDA(dq_k_global_avgpool_backward(d_dx, d_dy, N * C, H * W, g->stream));
    s_expect(g, "global avgpool backward", d_dx, dx, nx);
    free(x), free(dy), free(dx), free(y);
    s_release(g);
}

static void test_global_avgpool(void **state)
{
    s_gap_case(*state, 3, 5, 7, 7);
    s_gap_case(*state, 2, 512, 1, 1); /* ResNet-18's last stage on FMNIST */
    s_gap_case(*state, 2, 3, 56, 57);
    s_gap_case(*state, 5, 11, 1, 33); /* fewer planes than a block's warps */
}

/* ---- add and clip ------------------------------------------------------------------------- */

static void test_add_and_clip(void **state)
{
    s_gpu *g = *state;
    dq_err err = {{0}};
    const int64_t n = 300007;
    float *a = s_random(g, n, -8, 8), *b = s_random(g, n, -8, 8), *dy = s_random(g, n, -1, 1);
    float *dx = s_random(g, n, -1, 1), *y = malloc((size_t)n * 4);
    dq_tensor ta = dq_tensor_view2(a, 1, n), tb = dq_tensor_view2(b, 1, n);
    dq_tensor ty = dq_tensor_view2(y, 1, n), tdy = dq_tensor_view2(dy, 1, n);
    dq_tensor tdx = dq_tensor_view2(dx, 1, n);
    float *d_a = s_up(g, a, n), *d_b = s_up(g, b, n), *d_y = s_alloc(g, (size_t)n * 4);
    float *d_dy = s_up(g, dy, n), *d_dx = s_up(g, dx, n);
    S_OK(dq_add_forward(&ty, &ta, &tb, &err));
    S_CUDA(dq_k_add_forward(d_y, d_a, d_b, n, g->stream));
    s_expect(g, "add forward", d_y, y, n);
    S_CUDA(dq_k_add_forward(d_a, d_a, d_b, n, g->stream)); /* in place */
    s_expect(g, "add forward in place", d_a, y, n);
    S_OK(dq_add_backward(&tdx, &tdy, &err));
    S_CUDA(dq_k_add_backward(d_dx, d_dy, n, g->stream));
    s_expect(g, "add backward", d_dx, dx, n);

    /* relu6 and a general clip, in place, from the outputs */
    const float bounds[2][2] = {{0.0f, 6.0f}, {-1.5f, 2.0f}};
    for (int i = 0; i < 2; i++) {
        const float lo = bounds[i][0], hi = bounds[i][1];
        float *c = s_copy(a, n);
        float *d_c = s_up(g, c, n);
        dq_tensor tc = dq_tensor_view2(c, 1, n);
        S_OK(dq_clip_forward(&tc, &tc, lo, hi, &err));
        S_CUDA(dq_k_clip_forward(d_c, d_c, n, lo, hi, g->stream));
        s_expect(g, "clip forward", d_c, c, n);
        S_OK(dq_clip_backward(&tdx, &tdy, &tc, lo, hi, &err));
        S_CUDA(dq_k_clip_backward(d_dx, d_dy, d_c, n, lo, hi, g->stream));
        s_expect(g, "clip backward", d_dx, dx, n);
        free(c);
    }
    free(a), free(b), free(dy), free(dx), free(y);
    s_release(g);
}

/* ---- group --------------------------------------------------------------------------------- */

static int s_setup(void **state)
{
    s_gpu *g = calloc(1, sizeof *g);
    if (!g) return -1;
    if (cudaStreamCreate(&g->stream) != cudaSuccess || cudnnCreate(&g->dnn) != CUDNN_STATUS_SUCCESS ||
        cudnnSetStream(g->dnn, g->stream) != CUDNN_STATUS_SUCCESS) {
        fprintf(stderr, "test_cuda_ops: setup failed\n");
        free(g);
        return -1;
    }
    dq_rng_seed(&g->rng, 20261129);
    *state = g;
    return 0;
}

static int s_teardown(void **state)
{
    s_gpu *g = *state;
    if (!g) return 0;
    s_release(g);
    cudnnDestroy(g->dnn);
    cudaStreamDestroy(g->stream);
    free(g);
    return 0;
}

int main(void)
{
    /* The same detection the programs use; no GPU skips, a broken one fails. */
    dq_device dev;
    int gate = dq_test_gpu_or_skip("test_cuda_ops", &dev);
    if (gate != 0) return gate < 0 ? 0 : gate;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batchnorm),         cmocka_unit_test(test_grouped_conv),
        cmocka_unit_test(test_maxpool2d_padding), cmocka_unit_test(test_avgpool2d),
        cmocka_unit_test(test_global_avgpool),    cmocka_unit_test(test_add_and_clip),
    };
    return cmocka_run_group_tests_name("cuda_ops", tests, s_setup, s_teardown);
}
