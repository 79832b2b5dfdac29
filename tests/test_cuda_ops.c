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

static float *s_copy(const float *h, int64_t n)
{
    float *c = malloc((size_t)(n ? n : 1) * sizeof(float));
    assert_non_null(c);
    memcpy(c, h, (size_t)n * sizeof(float));
    return c;
}

/* ---- batch norm (cuDNN) ------------------------------------------------------------- */

static void s_bn_case(dq_tgpu *g, int64_t N, int64_t C, int64_t H, int64_t W)
{
    dq_err err = {{0}};
    const int64_t nx = N * C * H * W;
    float *x = dq_tgpu_random(g, nx, -2, 3), *w = dq_tgpu_random(g, C, 0.5f, 1.5f),
          *b = dq_tgpu_random(g, C, -1, 1);
    float *rm = dq_tgpu_random(g, C, -1, 1), *rv = dq_tgpu_random(g, C, 0.5f, 2),
          *dy = dq_tgpu_random(g, nx, -1, 1);
    float *dx = dq_tgpu_random(g, nx, -1, 1), *dw = dq_tgpu_random(g, C, -1, 1),
          *db = dq_tgpu_random(g, C, -1, 1);
    float *y = malloc((size_t)nx * 4), *sm = malloc((size_t)C * 4), *si = malloc((size_t)C * 4);
    float *d_x = dq_tgpu_up(g, x, nx), *d_w = dq_tgpu_up(g, w, C), *d_b = dq_tgpu_up(g, b, C);
    float *d_rm = dq_tgpu_up(g, rm, C), *d_rv = dq_tgpu_up(g, rv, C), *d_dy = dq_tgpu_up(g, dy, nx);
    float *d_dx = dq_tgpu_up(g, dx, nx), *d_dw = dq_tgpu_up(g, dw, C), *d_db = dq_tgpu_up(g, db, C);
    float *d_y = dq_tgpu_alloc(g, (size_t)nx * 4), *d_sm = dq_tgpu_alloc(g, (size_t)C * 4);
    float *d_si = dq_tgpu_alloc(g, (size_t)C * 4);
    dq_tensor tx = dq_tensor_view4(x, N, C, H, W), ty = dq_tensor_view4(y, N, C, H, W);
    dq_tensor tw = dq_tensor_view(w, 1, &C), tb = dq_tensor_view(b, 1, &C);
    dq_tensor trm = dq_tensor_view(rm, 1, &C), trv = dq_tensor_view(rv, 1, &C);
    dq_tensor tdy = dq_tensor_view4(dy, N, C, H, W), tdx = dq_tensor_view4(dx, N, C, H, W);
    dq_tensor tdw = dq_tensor_view(dw, 1, &C), tdb = dq_tensor_view(db, 1, &C);

    dq_cuda_bn bn;
    DQ_TGPU_OK(dq_cuda_bn_init(&bn, N, C, H, W, &err));
    DQ_TGPU_OK(
        dq_batchnorm2d_forward(&ty, sm, si, &trm, &trv, &tx, &tw, &tb, 1e-5f, 0.1f, true, &err));
    DQ_TGPU_OK(dq_cuda_bn_forward(&bn, g->dnn, d_y, d_sm, d_si, d_rm, d_rv, d_x, d_w, d_b, 1e-5f,
                                  0.1f, true, &err));
    dq_tgpu_expect(g, "batchnorm train out", d_y, y, nx);
    dq_tgpu_expect(g, "batchnorm save_mean", d_sm, sm, C);
    dq_tgpu_expect(g, "batchnorm save_invstd", d_si, si, C);
    dq_tgpu_expect(g, "batchnorm running_mean", d_rm, rm, C);
    dq_tgpu_expect(g, "batchnorm running_var", d_rv, rv, C);
    DQ_TGPU_OK(dq_batchnorm2d_backward(&tdx, &tdw, &tdb, &tdy, &tx, &tw, sm, si, &err));
    DQ_TGPU_OK(dq_cuda_bn_backward(&bn, g->dnn, d_dx, d_dw, d_db, d_dy, d_x, d_w, d_sm, d_si, 1e-5f,
                             &err));
    dq_tgpu_expect(g, "batchnorm din", d_dx, dx, nx);
    dq_tgpu_expect(g, "batchnorm dw", d_dw, dw, C);
    dq_tgpu_expect(g, "batchnorm db", d_db, db, C);
    /* eval with the updated running stats, then a batch of one */
    DQ_TGPU_OK(dq_batchnorm2d_forward(&ty, NULL, NULL, &trm, &trv, &tx, &tw, &tb, 1e-5f, 0.1f,
                                      false, &err));
    DQ_TGPU_OK(dq_cuda_bn_forward(&bn, g->dnn, d_y, NULL, NULL, d_rm, d_rv, d_x, d_w, d_b, 1e-5f,
                                  0.1f, false, &err));
    dq_tgpu_expect(g, "batchnorm eval out", d_y, y, nx);
    DQ_TGPU_OK(dq_cuda_bn_set_batch(&bn, 1, &err));
    DQ_TGPU_OK(dq_cuda_bn_forward(&bn, g->dnn, d_y, NULL, NULL, d_rm, d_rv, d_x, d_w, d_b, 1e-5f,
                                  0.1f, false, &err));
    dq_tgpu_expect(g, "batchnorm eval out, batch 1", d_y, y, C * H * W);
    /* the GPU requires all three gradients */
    assert_int_equal(dq_cuda_bn_backward(&bn, g->dnn, NULL, d_dw, d_db, d_dy, d_x, d_w, d_sm,
                                         d_si, 1e-5f, &err),
                     DQ_ERR_ARG);
    dq_cuda_bn_destroy(&bn);
    free(x), free(w), free(b), free(rm), free(rv), free(dy), free(dx), free(dw), free(db);
    free(y), free(sm), free(si);
    dq_tgpu_release(g);
}

static void test_batchnorm(void **state)
{
    s_bn_case(*state, 4, 5, 7, 9);
    s_bn_case(*state, 3, 64, 14, 14); /* a ResNet stage's shape */
    s_bn_case(*state, 8, 3, 1, 1);    /* statistics over the batch only */
}

/* ---- grouped / depthwise convolution (cuDNN) --------------------------------------- */

static void s_gconv_case(dq_tgpu *g, int64_t N, int64_t C, int64_t H, int64_t W, int64_t OC, int k,
                         int stride, int pad, int groups)
{
    dq_err err = {{0}};
    int64_t OH = dq_conv2d_out_size(H, k, stride, pad), OW = dq_conv2d_out_size(W, k, stride, pad);
    int64_t nx = N * C * H * W, nw = OC * (C / groups) * k * k, ny = N * OC * OH * OW;
    float *x = dq_tgpu_random(g, nx, -1, 1), *w = dq_tgpu_random(g, nw, -0.5f, 0.5f);
    float *b = dq_tgpu_random(g, OC, -1, 1), *dy = dq_tgpu_random(g, ny, -1, 1);
    float *dx = dq_tgpu_random(g, nx, -1, 1), *dw = dq_tgpu_random(g, nw, -1, 1),
          *db = dq_tgpu_random(g, OC, -1, 1);
    float *y = malloc((size_t)ny * 4);
    dq_conv2d_params cp = {.stride = stride, .padding = pad, .max_group = 0, .groups = groups};
    int64_t wsf = dq_conv2d_workspace(N, C, H, W, k, k, cp);
    float *ws = malloc((size_t)(wsf ? wsf : 1) * 4);
    dq_tensor tx = dq_tensor_view4(x, N, C, H, W), tw = dq_tensor_view4(w, OC, C / groups, k, k);
    dq_tensor ty = dq_tensor_view4(y, N, OC, OH, OW), tb = dq_tensor_view(b, 1, &OC);
    dq_tensor tdy = dq_tensor_view4(dy, N, OC, OH, OW), tdx = dq_tensor_view4(dx, N, C, H, W);
    dq_tensor tdw = dq_tensor_view4(dw, OC, C / groups, k, k), tdb = dq_tensor_view(db, 1, &OC);
    DQ_TGPU_OK(dq_conv2d_forward(&ty, &tx, &tw, &tb, cp, ws, wsf, &err));

    dq_cuda_conv cv;
    DQ_TGPU_OK(dq_cuda_conv_init_grouped(&cv, g->dnn, N, C, H, W, OC, k, stride, pad, groups, true,
                                   (size_t)1 << 28, &err));
    void *d_ws = cv.ws_bytes ? dq_tgpu_alloc(g, cv.ws_bytes) : NULL;
    float *d_x = dq_tgpu_up(g, x, nx), *d_w = dq_tgpu_up(g, w, nw), *d_b = dq_tgpu_up(g, b, OC);
    float *d_y = dq_tgpu_alloc(g, (size_t)ny * 4), *d_dy = dq_tgpu_up(g, dy, ny);
    float *d_dx = dq_tgpu_up(g, dx, nx), *d_dw = dq_tgpu_up(g, dw, nw),
          *d_db = dq_tgpu_up(g, db, OC);
    /* The CPU reference accumulates into dx, dw, db in place: only after their
     * starting values went to the device. */
    DQ_TGPU_OK(dq_conv2d_backward(&tdx, &tdw, &tdb, &tdy, &tx, &tw, cp, ws, wsf, &err));
    DQ_TGPU_OK(dq_cuda_conv_forward(&cv, g->dnn, d_y, d_x, d_w, d_b, d_ws, cv.ws_bytes, &err));
    dq_tgpu_expect(g, "grouped conv forward", d_y, y, ny);
    DQ_TGPU_OK(dq_cuda_conv_backward(&cv, g->dnn, d_dx, d_dw, d_db, d_dy, d_x, d_w, d_ws,
                                     cv.ws_bytes, &err));
    dq_tgpu_expect(g, "grouped conv din", d_dx, dx, nx);
    dq_tgpu_expect(g, "grouped conv dw", d_dw, dw, nw);
    dq_tgpu_expect(g, "grouped conv db", d_db, db, OC);
    dq_cuda_conv_destroy(&cv);
    free(x), free(w), free(b), free(dy), free(dx), free(dw), free(db), free(y), free(ws);
    dq_tgpu_release(g);
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
    dq_tgpu *g = *state;
    assert_int_equal(dq_cuda_conv_init_grouped(&cv, g->dnn, 2, 6, 5, 5, 6, 3, 1, 1, 4, false,
                                               (size_t)1 << 20, &err),
                     DQ_ERR_SHAPE);
}

/* ---- pooling -------------------------------------------------------------------------- */

static void s_maxpool_pad_case(dq_tgpu *g, int64_t N, int64_t C, int64_t H, int64_t W, int k, int s,
                               int p)
{
    dq_err err = {{0}};
    int64_t OH = dq_maxpool2d_out_size_pad(H, k, s, p), OW = dq_maxpool2d_out_size_pad(W, k, s, p);
    int64_t nx = N * C * H * W, ny = N * C * OH * OW;
    float *x = dq_tgpu_random(g, nx, -1, 1), *dy = dq_tgpu_random(g, ny, -1, 1),
          *dx = dq_tgpu_random(g, nx, -1, 1);
    for (int64_t i = 0; i < nx; i += 13) x[i] = x[i > 0 ? i - 1 : 0]; /* ties */
    float *y = malloc((size_t)ny * 4);
    int32_t *am = malloc((size_t)ny * 4), *gam = malloc((size_t)ny * 4);
    dq_tensor tx = dq_tensor_view4(x, N, C, H, W), ty = dq_tensor_view4(y, N, C, OH, OW);
    dq_tensor tdy = dq_tensor_view4(dy, N, C, OH, OW), tdx = dq_tensor_view4(dx, N, C, H, W);
    float *d_x = dq_tgpu_up(g, x, nx), *d_y = dq_tgpu_alloc(g, (size_t)ny * 4),
          *d_dy = dq_tgpu_up(g, dy, ny);
    float *d_dx = dq_tgpu_up(g, dx, nx);
    int32_t *d_am = dq_tgpu_alloc(g, (size_t)ny * 4);
    DQ_TGPU_OK(dq_maxpool2d_forward_pad(&ty, am, &tx, k, s, p, &err));
    DQ_TGPU_CUDA(
        dq_k_maxpool2d_forward_pad(d_y, d_am, d_x, N * C, H, W, OH, OW, k, s, p, g->stream));
    dq_tgpu_expect(g, "maxpool2d pad forward", d_y, y, ny);
    dq_tgpu_down(g, gam, d_am, (size_t)ny * 4);
    assert_memory_equal(gam, am, (size_t)ny * 4);
    DQ_TGPU_OK(dq_maxpool2d_backward(&tdx, &tdy, am, &err));
    DQ_TGPU_CUDA(dq_k_maxpool2d_backward_pad(d_dx, d_dy, d_am, N * C, H, W, OH, OW, k, s, p,
                                       g->stream));
    dq_tgpu_expect(g, "maxpool2d pad backward", d_dx, dx, nx);
    free(x), free(dy), free(dx), free(y), free(am), free(gam);
    dq_tgpu_release(g);
}

static void test_maxpool2d_padding(void **state)
{
    s_maxpool_pad_case(*state, 2, 3, 7, 6, 3, 2, 1);
    s_maxpool_pad_case(*state, 2, 64, 14, 14, 3, 2, 1); /* ResNet-18 stem on FMNIST */
    s_maxpool_pad_case(*state, 1, 2, 5, 5, 2, 2, 1);
    s_maxpool_pad_case(*state, 2, 2, 6, 7, 5, 1, 2);
    s_maxpool_pad_case(*state, 2, 3, 9, 8, 3, 2, 0); /* padding 0 through the _pad form */
}

static void s_avgpool_case(dq_tgpu *g, int64_t N, int64_t C, int64_t H, int64_t W, int k, int s,
                           int p, int inc)
{
    dq_err err = {{0}};
    int64_t OH = dq_avgpool2d_out_size(H, k, s, p), OW = dq_avgpool2d_out_size(W, k, s, p);
    int64_t nx = N * C * H * W, ny = N * C * OH * OW;
    float *x = dq_tgpu_random(g, nx, -1, 1), *dy = dq_tgpu_random(g, ny, -1, 1),
          *dx = dq_tgpu_random(g, nx, -1, 1);
    float *y = malloc((size_t)ny * 4);
    dq_tensor tx = dq_tensor_view4(x, N, C, H, W), ty = dq_tensor_view4(y, N, C, OH, OW);
    dq_tensor tdy = dq_tensor_view4(dy, N, C, OH, OW), tdx = dq_tensor_view4(dx, N, C, H, W);
    float *d_x = dq_tgpu_up(g, x, nx), *d_y = dq_tgpu_alloc(g, (size_t)ny * 4),
          *d_dy = dq_tgpu_up(g, dy, ny);
    float *d_dx = dq_tgpu_up(g, dx, nx);
    DQ_TGPU_OK(dq_avgpool2d_forward(&ty, &tx, k, s, p, inc, &err));
    DQ_TGPU_CUDA(dq_k_avgpool2d_forward(d_y, d_x, N * C, H, W, OH, OW, k, s, p, inc, g->stream));
    dq_tgpu_expect(g, inc ? "avgpool2d forward (include pad)" : "avgpool2d forward", d_y, y, ny);
    DQ_TGPU_OK(dq_avgpool2d_backward(&tdx, &tdy, k, s, p, inc, &err));
    DQ_TGPU_CUDA(dq_k_avgpool2d_backward(d_dx, d_dy, N * C, H, W, OH, OW, k, s, p, inc, g->stream));
    dq_tgpu_expect(g, inc ? "avgpool2d backward (include pad)" : "avgpool2d backward", d_dx, dx,
                   nx);
    free(x), free(dy), free(dx), free(y);
    dq_tgpu_release(g);
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

static void s_gap_case(dq_tgpu *g, int64_t N, int64_t C, int64_t H, int64_t W)
{
    dq_err err = {{0}};
    const int64_t nx = N * C * H * W, ny = N * C;
    float *x = dq_tgpu_random(g, nx, -1, 1), *dy = dq_tgpu_random(g, ny, -1, 1),
          *dx = dq_tgpu_random(g, nx, -1, 1);
    float *y = malloc((size_t)ny * 4);
    dq_tensor tx = dq_tensor_view4(x, N, C, H, W), ty = dq_tensor_view4(y, N, C, 1, 1);
    dq_tensor tdy = dq_tensor_view4(dy, N, C, 1, 1), tdx = dq_tensor_view4(dx, N, C, H, W);
    float *d_x = dq_tgpu_up(g, x, nx), *d_y = dq_tgpu_alloc(g, (size_t)ny * 4),
          *d_dy = dq_tgpu_up(g, dy, ny);
    float *d_dx = dq_tgpu_up(g, dx, nx);
    DQ_TGPU_OK(dq_global_avgpool_forward(&ty, &tx, &err));
    DQ_TGPU_CUDA(dq_k_global_avgpool_forward(d_y, d_x, N * C, H * W, g->stream));
    dq_tgpu_expect(g, "global avgpool forward", d_y, y, ny);
    DQ_TGPU_OK(dq_global_avgpool_backward(&tdx, &tdy, &err));
    DQ_TGPU_CUDA(dq_k_global_avgpool_backward(d_dx, d_dy, N * C, H * W, g->stream));
    dq_tgpu_expect(g, "global avgpool backward", d_dx, dx, nx);
    free(x), free(dy), free(dx), free(y);
    dq_tgpu_release(g);
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
    dq_tgpu *g = *state;
    dq_err err = {{0}};
    const int64_t n = 300007;
    float *a = dq_tgpu_random(g, n, -8, 8), *b = dq_tgpu_random(g, n, -8, 8),
          *dy = dq_tgpu_random(g, n, -1, 1);
    float *dx = dq_tgpu_random(g, n, -1, 1), *y = malloc((size_t)n * 4);
    dq_tensor ta = dq_tensor_view2(a, 1, n), tb = dq_tensor_view2(b, 1, n);
    dq_tensor ty = dq_tensor_view2(y, 1, n), tdy = dq_tensor_view2(dy, 1, n);
    dq_tensor tdx = dq_tensor_view2(dx, 1, n);
    float *d_a = dq_tgpu_up(g, a, n), *d_b = dq_tgpu_up(g, b, n),
          *d_y = dq_tgpu_alloc(g, (size_t)n * 4);
    float *d_dy = dq_tgpu_up(g, dy, n), *d_dx = dq_tgpu_up(g, dx, n);
    DQ_TGPU_OK(dq_add_forward(&ty, &ta, &tb, &err));
    DQ_TGPU_CUDA(dq_k_add_forward(d_y, d_a, d_b, n, g->stream));
    dq_tgpu_expect(g, "add forward", d_y, y, n);
    DQ_TGPU_CUDA(dq_k_add_forward(d_a, d_a, d_b, n, g->stream)); /* in place */
    dq_tgpu_expect(g, "add forward in place", d_a, y, n);
    DQ_TGPU_OK(dq_add_backward(&tdx, &tdy, &err));
    DQ_TGPU_CUDA(dq_k_add_backward(d_dx, d_dy, n, g->stream));
    dq_tgpu_expect(g, "add backward", d_dx, dx, n);

    /* relu6 and a general clip, in place, from the outputs */
    const float bounds[2][2] = {{0.0f, 6.0f}, {-1.5f, 2.0f}};
    for (int i = 0; i < 2; i++) {
        const float lo = bounds[i][0], hi = bounds[i][1];
        float *c = s_copy(a, n);
        float *d_c = dq_tgpu_up(g, c, n);
        dq_tensor tc = dq_tensor_view2(c, 1, n);
        DQ_TGPU_OK(dq_clip_forward(&tc, &tc, lo, hi, &err));
        DQ_TGPU_CUDA(dq_k_clip_forward(d_c, d_c, n, lo, hi, g->stream));
        dq_tgpu_expect(g, "clip forward", d_c, c, n);
        DQ_TGPU_OK(dq_clip_backward(&tdx, &tdy, &tc, lo, hi, &err));
        DQ_TGPU_CUDA(dq_k_clip_backward(d_dx, d_dy, d_c, n, lo, hi, g->stream));
        dq_tgpu_expect(g, "clip backward", d_dx, dx, n);
        free(c);
    }
    free(a), free(b), free(dy), free(dx), free(y);
    dq_tgpu_release(g);
}

/* ---- group --------------------------------------------------------------------------------- */

static int s_setup(void **state)
{
    return dq_tgpu_setup(state, "test_cuda_ops", 20261129);
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
    return cmocka_run_group_tests_name("cuda_ops", tests, s_setup, dq_tgpu_teardown);
}
