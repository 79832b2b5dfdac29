/* test_cuda.c - the CUDA backend against the CPU reference, op by op and as
 * whole networks.
 *
 * Every GPU op runs forward and backward on random inputs (odd sizes,
 * stride/padding edge cases, overlapping pooling windows) next to the CPU
 * op of src/tensor, and each output is compared by normalised error
 * max|gpu - cpu| / max|cpu| <= 1e-4; a NaN on either side always fails.
 * Backward gradients start from random values, so "adds into" is checked
 * too. Then full teacher forwards (the shipped models, with random
 * batch-norm running statistics), the eval forward's batch invariance bit
 * for bit (as test_net on the CPU), and a training
 * step (forward, backward, Adam) of a network with branches run through the
 * executor (src/model/net_cuda.c) against dq_net_*.
 *
 * Without a GPU (no driver, no device) the binary prints the TAP plan
 * "1..0 # SKIP ..." and exits 0, which the TAP driver counts as skipped,
 * never as passed; a GPU that is there but unusable (no kernel image for
 * it, ...) is a failure (cuda_testutil.h).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "cuda_testutil.h"
#include "gradcheck.h"
#include "kernels/cuda_glue.h"
#include "kernels/kernels.h"
#include "model/net.h"
#include "model/net_cuda.h"
#include "tensor/backend_cuda.h"
#include "tensor/loss.h"
#include "tensor/ops.h"
#include "tensor/optim.h"

#ifndef DQ_TOP_SRCDIR
#define DQ_TOP_SRCDIR ".."
#endif

/* The source tree: $top_srcdir when set (a build made on another machine and
 * run on a GPU machine, scripts/gpu-check), else the one configured. */
static const char *s_srcdir(void)
{
    const char *e = getenv("top_srcdir");
    return e && *e ? e : DQ_TOP_SRCDIR;
}

/* ---- elementwise ------------------------------------------------------------------------- */

static void test_relu(void **state)
{
    dq_tgpu *g = *state;
    dq_err err = {{0}};
    const int64_t n = 1000003;
    float *x = dq_tgpu_random(g, n, -1, 1), *dy = dq_tgpu_random(g, n, -1, 1),
          *dx = dq_tgpu_random(g, n, -1, 1);
    x[5] = 0.0f;
    x[7] = NAN; /* propagates on both sides; compared below with it replaced */
    float *y = malloc((size_t)n * sizeof(float));
    dq_tensor tx = dq_tensor_view2(x, 1, n), ty = dq_tensor_view2(y, 1, n);
    float *d_x = dq_tgpu_up(g, x, n), *d_y = dq_tgpu_alloc(g, (size_t)n * 4),
          *d_dy = dq_tgpu_up(g, dy, n);
    float *d_dx = dq_tgpu_up(g, dx, n);
    DQ_TGPU_OK(dq_relu_forward(&ty, &tx, &err));
    DQ_TGPU_CUDA(dq_k_relu_forward(d_y, d_x, n, g->stream));
    float got7;
    dq_tgpu_down(g, &got7, d_y + 7, sizeof got7);
    assert_true(isnan(got7) && isnan(y[7]));
    y[7] = 0.0f;
    DQ_TGPU_CUDA(cudaMemcpy(d_y + 7, &y[7], sizeof(float), cudaMemcpyHostToDevice));
    dq_tgpu_expect(g, "relu forward", d_y, y, n);
    dq_tensor tdy = dq_tensor_view2(dy, 1, n), tdx = dq_tensor_view2(dx, 1, n);
    DQ_TGPU_OK(dq_relu_backward(&tdx, &tdy, &ty, &err));
    DQ_TGPU_CUDA(dq_k_relu_backward(d_dx, d_dy, d_y, n, g->stream));
    dq_tgpu_expect(g, "relu backward", d_dx, dx, n);
    free(x), free(y), free(dy), free(dx);
    dq_tgpu_release(g);
}

/* The host twin of the device hash (kernels/elementwise.cu). */
static uint64_t s_mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void test_dropout(void **state)
{
    dq_tgpu *g = *state;
    dq_err err = {{0}};
    const int64_t n = 200001;
    const float p = 0.3f, scale = 1.0f / (1.0f - p);
    const uint64_t seed = 99, offset = 12345;
    float *x = dq_tgpu_random(g, n, -1, 1), *dy = dq_tgpu_random(g, n, -1, 1),
          *dx = dq_tgpu_random(g, n, -1, 1);
    float *u = malloc((size_t)n * 4), *mask = malloc((size_t)n * 4), *y = malloc((size_t)n * 4);
    float *d_x = dq_tgpu_up(g, x, n), *d_y = dq_tgpu_alloc(g, (size_t)n * 4),
          *d_m = dq_tgpu_alloc(g, (size_t)n * 4);
    float *d_u = dq_tgpu_alloc(g, (size_t)n * 4), *d_dy = dq_tgpu_up(g, dy, n),
          *d_dx = dq_tgpu_up(g, dx, n);
    /* The uniform stream is exactly the documented hash. */
    DQ_TGPU_CUDA(dq_k_uniform(d_u, n, seed, offset, g->stream));
    dq_tgpu_down(g, u, d_u, (size_t)n * 4);
    for (int64_t i = 0; i < n; i += 997) {
        uint64_t h = s_mix(seed ^ s_mix(offset + (uint64_t)i + 0x9e3779b97f4a7c15ULL));
        assert_true(u[i] == (float)(h >> 40) * (1.0f / 16777216.0f));
    }
    DQ_TGPU_CUDA(dq_k_dropout_forward(d_y, d_m, d_x, n, p, seed, offset, g->stream));
    dq_tgpu_down(g, mask, d_m, (size_t)n * 4);
    dq_tgpu_down(g, y, d_y, (size_t)n * 4);
    int64_t kept = 0;
    for (int64_t i = 0; i < n; i++) {
        assert_true(mask[i] == (u[i] >= p ? scale : 0.0f));
        assert_true(y[i] == x[i] * mask[i]);
        kept += mask[i] != 0.0f;
    }
    double rate = (double)kept / (double)n; /* 1 - p within ~10 standard deviations */
    assert_true(fabs(rate - (1.0 - p)) < 0.01);
    /* Backward against the CPU's with the GPU's mask; eval mode adds dout. */
    dq_tensor tdy = dq_tensor_view2(dy, 1, n), tdx = dq_tensor_view2(dx, 1, n);
    DQ_TGPU_OK(dq_dropout_backward(&tdx, &tdy, mask, p, true, &err));
    DQ_TGPU_CUDA(dq_k_mul_add(d_dx, d_dy, d_m, n, g->stream));
    dq_tgpu_expect(g, "dropout backward", d_dx, dx, n);
    DQ_TGPU_OK(dq_dropout_backward(&tdx, &tdy, NULL, p, false, &err));
    DQ_TGPU_CUDA(dq_k_mul_add(d_dx, d_dy, NULL, n, g->stream));
    dq_tgpu_expect(g, "dropout backward (eval)", d_dx, dx, n);
    free(x), free(dy), free(dx), free(u), free(mask), free(y);
    dq_tgpu_release(g);
}

/* ---- linear and conv2d (cuBLAS, cuDNN) ------------------------------------------------- */

static void s_linear_case(dq_tgpu *g, int64_t N, int64_t I, int64_t O)
{
    dq_err err = {{0}};
    float *x = dq_tgpu_random(g, N * I, -1, 1), *w = dq_tgpu_random(g, O * I, -1, 1),
          *b = dq_tgpu_random(g, O, -1, 1);
    float *dy = dq_tgpu_random(g, N * O, -1, 1), *dx = dq_tgpu_random(g, N * I, -1, 1);
    float *dw = dq_tgpu_random(g, O * I, -1, 1), *db = dq_tgpu_random(g, O, -1, 1);
    float *y = malloc((size_t)(N * O) * 4);
    dq_tensor tx = dq_tensor_view2(x, N, I), tw = dq_tensor_view2(w, O, I),
              ty = dq_tensor_view2(y, N, O);
    dq_tensor tb = dq_tensor_view(b, 1, &O), tdb = dq_tensor_view(db, 1, &O);
    dq_tensor tdy = dq_tensor_view2(dy, N, O), tdx = dq_tensor_view2(dx, N, I);
    dq_tensor tdw = dq_tensor_view2(dw, O, I);
    float *d_x = dq_tgpu_up(g, x, N * I), *d_w = dq_tgpu_up(g, w, O * I),
          *d_b = dq_tgpu_up(g, b, O);
    float *d_y = dq_tgpu_alloc(g, (size_t)(N * O) * 4), *d_dy = dq_tgpu_up(g, dy, N * O);
    float *d_dx = dq_tgpu_up(g, dx, N * I), *d_dw = dq_tgpu_up(g, dw, O * I),
          *d_db = dq_tgpu_up(g, db, O);
    DQ_TGPU_OK(dq_linear_forward(&ty, &tx, &tw, &tb, &err));
    DQ_TGPU_OK(dq_cuda_linear_forward(g->blas, g->stream, d_y, d_x, d_w, d_b, N, I, O, &err));
    dq_tgpu_expect(g, "linear forward", d_y, y, N * O);
    DQ_TGPU_OK(dq_linear_backward(&tdx, &tdw, &tdb, &tdy, &tx, &tw, &err));
    DQ_TGPU_OK(dq_cuda_linear_backward(g->blas, g->stream, d_dx, d_dw, d_db, d_dy, d_x, d_w, N, I,
                                       O, &err));
    dq_tgpu_expect(g, "linear din", d_dx, dx, N * I);
    dq_tgpu_expect(g, "linear dw", d_dw, dw, O * I);
    dq_tgpu_expect(g, "linear db", d_db, db, O);
    free(x), free(w), free(b), free(dy), free(dx), free(dw), free(db), free(y);
    dq_tgpu_release(g);
}

static void test_linear(void **state)
{
    s_linear_case(*state, 37, 53, 19);
    s_linear_case(*state, 1, 1568, 512);
    s_linear_case(*state, 130, 512, 10);
}

static void s_conv_case(dq_tgpu *g, int64_t N, int64_t C, int64_t H, int64_t W, int64_t OC, int k,
                        int stride, int pad, bool bias)
{
    dq_err err = {{0}};
    int64_t OH = dq_conv2d_out_size(H, k, stride, pad), OW = dq_conv2d_out_size(W, k, stride, pad);
    int64_t nx = N * C * H * W, nw = OC * C * k * k, ny = N * OC * OH * OW;
    float *x = dq_tgpu_random(g, nx, -1, 1), *w = dq_tgpu_random(g, nw, -0.5f, 0.5f);
    float *b = dq_tgpu_random(g, OC, -1, 1), *dy = dq_tgpu_random(g, ny, -1, 1);
    float *dx = dq_tgpu_random(g, nx, -1, 1), *dw = dq_tgpu_random(g, nw, -1, 1),
          *db = dq_tgpu_random(g, OC, -1, 1);
    float *y = malloc((size_t)ny * 4);
    dq_conv2d_params cp = {stride, pad, 0, 1};
    int64_t wsf = dq_conv2d_workspace(N, C, H, W, k, k, cp);
    float *ws = malloc((size_t)(wsf ? wsf : 1) * 4);
    dq_tensor tx = dq_tensor_view4(x, N, C, H, W), tw = dq_tensor_view4(w, OC, C, k, k);
    dq_tensor ty = dq_tensor_view4(y, N, OC, OH, OW), tb = dq_tensor_view(b, 1, &OC);
    dq_tensor tdy = dq_tensor_view4(dy, N, OC, OH, OW), tdx = dq_tensor_view4(dx, N, C, H, W);
    dq_tensor tdw = dq_tensor_view4(dw, OC, C, k, k), tdb = dq_tensor_view(db, 1, &OC);
    DQ_TGPU_OK(dq_conv2d_forward(&ty, &tx, &tw, bias ? &tb : NULL, cp, ws, wsf, &err));

    dq_cuda_conv cv;
    DQ_TGPU_OK(dq_cuda_conv_init(&cv, g->dnn, N, C, H, W, OC, k, stride, pad, true, (size_t)1 << 28,
                           &err));
    void *d_ws = cv.ws_bytes ? dq_tgpu_alloc(g, cv.ws_bytes) : NULL;
    float *d_x = dq_tgpu_up(g, x, nx), *d_w = dq_tgpu_up(g, w, nw), *d_b = dq_tgpu_up(g, b, OC);
    float *d_y = dq_tgpu_alloc(g, (size_t)ny * 4), *d_dy = dq_tgpu_up(g, dy, ny);
    float *d_dx = dq_tgpu_up(g, dx, nx), *d_dw = dq_tgpu_up(g, dw, nw),
          *d_db = dq_tgpu_up(g, db, OC);
    /* The CPU reference accumulates into dx, dw, db in place: only after their
     * starting values went to the device. */
    DQ_TGPU_OK(
        dq_conv2d_backward(&tdx, &tdw, bias ? &tdb : NULL, &tdy, &tx, &tw, cp, ws, wsf, &err));
    DQ_TGPU_OK(dq_cuda_conv_forward(&cv, g->dnn, d_y, d_x, d_w, bias ? d_b : NULL, d_ws,
                                    cv.ws_bytes, &err));
    dq_tgpu_expect(g, "conv2d forward", d_y, y, ny);
    DQ_TGPU_OK(dq_cuda_conv_backward(&cv, g->dnn, d_dx, d_dw, bias ? d_db : NULL, d_dy, d_x, d_w,
                                     d_ws, cv.ws_bytes, &err));
    dq_tgpu_expect(g, "conv2d din", d_dx, dx, nx);
    dq_tgpu_expect(g, "conv2d dw", d_dw, dw, nw);
    if (bias) dq_tgpu_expect(g, "conv2d db", d_db, db, OC);
    /* A smaller batch through the same descriptors (the executor's tail batch). */
    if (N > 1) {
        ty.shape[0] = tx.shape[0] = 1;
        DQ_TGPU_OK(dq_conv2d_forward(&ty, &tx, &tw, bias ? &tb : NULL, cp, ws, wsf, &err));
        DQ_TGPU_OK(dq_cuda_conv_set_batch(&cv, g->dnn, 1, cv.ws_bytes, &err));
        DQ_TGPU_OK(dq_cuda_conv_forward(&cv, g->dnn, d_y, d_x, d_w, bias ? d_b : NULL, d_ws,
                                  cv.ws_bytes, &err));
        dq_tgpu_expect(g, "conv2d forward, batch 1", d_y, y, OC * OH * OW);
    }
    dq_cuda_conv_destroy(&cv);
    free(x), free(w), free(b), free(dy), free(dx), free(dw), free(db), free(y), free(ws);
    dq_tgpu_release(g);
}

static void test_conv2d(void **state)
{
    s_conv_case(*state, 3, 5, 9, 7, 4, 3, 1, 1, true);
    s_conv_case(*state, 2, 3, 8, 8, 6, 3, 2, 0, true);
    s_conv_case(*state, 4, 7, 5, 6, 3, 1, 1, 0, false);
    s_conv_case(*state, 2, 2, 11, 9, 5, 5, 2, 2, true);
    s_conv_case(*state, 2, 64, 14, 14, 32, 3, 1, 1, true); /* a teacher layer's shape */
}

/* ---- pooling ------------------------------------------------------------------------------ */

static void s_maxpool_case(dq_tgpu *g, int64_t N, int64_t C, int64_t H, int64_t W, int k, int s)
{
    dq_err err = {{0}};
    int64_t OH = dq_maxpool2d_out_size(H, k, s), OW = dq_maxpool2d_out_size(W, k, s);
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
    DQ_TGPU_OK(dq_maxpool2d_forward(&ty, am, &tx, k, s, &err));
    DQ_TGPU_CUDA(dq_k_maxpool2d_forward(d_y, d_am, d_x, N * C, H, W, OH, OW, k, s, g->stream));
    dq_tgpu_expect(g, "maxpool2d forward", d_y, y, ny);
    dq_tgpu_down(g, gam, d_am, (size_t)ny * 4);
    assert_memory_equal(gam, am, (size_t)ny * 4);
    DQ_TGPU_OK(dq_maxpool2d_backward(&tdx, &tdy, am, &err));
    DQ_TGPU_CUDA(dq_k_maxpool2d_backward(d_dx, d_dy, d_am, N * C, H, W, OH, OW, k, s, g->stream));
    dq_tgpu_expect(g, "maxpool2d backward", d_dx, dx, nx);
    free(x), free(dy), free(dx), free(y), free(am), free(gam);
    dq_tgpu_release(g);
}

static void test_maxpool2d(void **state)
{
    s_maxpool_case(*state, 3, 4, 28, 28, 2, 2);
    s_maxpool_case(*state, 2, 3, 9, 8, 3, 2); /* overlapping windows */
    s_maxpool_case(*state, 2, 2, 7, 6, 3, 1);
    s_maxpool_case(*state, 1, 5, 7, 9, 2, 3); /* gaps between windows */
}

static void test_avgpool1d(void **state)
{
    dq_tgpu *g = *state;
    dq_err err = {{0}};
    const int64_t N = 5, F = 1570;
    const int k = 4; /* 1570 mod 4 = 2: the floor tail gets no gradient */
    const int64_t OF = F / k;
    float *x = dq_tgpu_random(g, N * F, -1, 1), *dy = dq_tgpu_random(g, N * OF, -1, 1);
    float *dx = dq_tgpu_random(g, N * F, -1, 1), *y = malloc((size_t)(N * OF) * 4);
    dq_tensor tx = dq_tensor_view2(x, N, F), ty = dq_tensor_view2(y, N, OF);
    dq_tensor tdx = dq_tensor_view2(dx, N, F), tdy = dq_tensor_view2(dy, N, OF);
    float *d_x = dq_tgpu_up(g, x, N * F), *d_y = dq_tgpu_alloc(g, (size_t)(N * OF) * 4);
    float *d_dy = dq_tgpu_up(g, dy, N * OF), *d_dx = dq_tgpu_up(g, dx, N * F);
    DQ_TGPU_OK(dq_avgpool1d_forward(&ty, &tx, k, &err));
    DQ_TGPU_CUDA(dq_k_avgpool1d_forward(d_y, d_x, N, F, k, g->stream));
    dq_tgpu_expect(g, "avgpool1d forward", d_y, y, N * OF);
    DQ_TGPU_OK(dq_avgpool1d_backward(&tdx, &tdy, k, &err));
    DQ_TGPU_CUDA(dq_k_avgpool1d_backward(d_dx, d_dy, N, F, k, g->stream));
    dq_tgpu_expect(g, "avgpool1d backward", d_dx, dx, N * F);
    free(x), free(dy), free(dx), free(y);
    dq_tgpu_release(g);
}

/* ---- softmax and losses ----------------------------------------------------------------- */

static void test_softmax(void **state)
{
    dq_tgpu *g = *state;
    dq_err err = {{0}};
    /* K = 100 strides the row block's 32 lanes unevenly */
    const int64_t N = 67, Ks[2] = {10, 100};
    for (int ki = 0; ki < 2; ki++)
    for (int as_log = 0; as_log < 2; as_log++) {
        const int64_t K = Ks[ki];
        for (float T = 1.0f; T < 5.0f; T += 2.5f) {
            float *x = dq_tgpu_random(g, N * K, -8, 8), *dy = dq_tgpu_random(g, N * K, -1, 1);
            float *dx = dq_tgpu_random(g, N * K, -1, 1), *y = malloc((size_t)(N * K) * 4);
            dq_tensor tx = dq_tensor_view2(x, N, K), ty = dq_tensor_view2(y, N, K);
            dq_tensor tdy = dq_tensor_view2(dy, N, K), tdx = dq_tensor_view2(dx, N, K);
            float *d_x = dq_tgpu_up(g, x, N * K), *d_y = dq_tgpu_alloc(g, (size_t)(N * K) * 4);
            float *d_dy = dq_tgpu_up(g, dy, N * K), *d_dx = dq_tgpu_up(g, dx, N * K);
            if (as_log) {
                DQ_TGPU_OK(dq_log_softmax_forward(&ty, &tx, T, &err));
                DQ_TGPU_OK(dq_log_softmax_backward(&tdx, &tdy, &ty, T, &err));
            } else {
                DQ_TGPU_OK(dq_softmax_forward(&ty, &tx, T, &err));
                DQ_TGPU_OK(dq_softmax_backward(&tdx, &tdy, &ty, T, &err));
            }
            DQ_TGPU_CUDA(dq_k_softmax_forward(d_y, d_x, N, K, T, as_log, g->stream));
            dq_tgpu_expect(g, as_log ? "log_softmax forward" : "softmax forward", d_y, y, N * K);
            DQ_TGPU_CUDA(dq_k_softmax_backward(d_dx, d_dy, d_y, N, K, T, as_log, g->stream));
            dq_tgpu_expect(g, as_log ? "log_softmax backward" : "softmax backward", d_dx, dx,
                           N * K);
            free(x), free(dy), free(dx), free(y);
            dq_tgpu_release(g);
        }
    }
}

/* Sums the device rows and checks value = sum * mul against the CPU loss. */
static void s_expect_loss(dq_tgpu *g, const char *what, const double *d_rows, int64_t n_rows,
                          double mul, float want)
{
    double *d_sum = dq_tgpu_alloc(g, sizeof(double)), sum = 0;
    DQ_TGPU_CUDA(dq_k_sum_rows(d_sum, d_rows, n_rows, g->stream));
    dq_tgpu_down(g, &sum, d_sum, sizeof sum);
    double got = sum * mul;
    double e = fabs(got - (double)want) / fmax(fabs((double)want), 1e-30);
    if (!(e <= DQ_TGPU_TOL)) fail_msg("%s: loss %.9g, CPU %.9g (relative error %.3g)", what, got,
                                (double)want, e);
}

enum { S_XENT, S_KD, S_COSINE, S_MSE };

/* The CPU loss `kind` on the host tensors, adding scale * gradient into g. */
static float s_cpu_loss(int kind, dq_tensor *gr, const dq_tensor *a, const dq_tensor *b,
                        const int32_t *lab, float T, float scale)
{
    dq_err err = {{0}};
    float loss = 0;
    switch (kind) {
    case S_XENT: DQ_TGPU_OK(dq_loss_cross_entropy(&loss, gr, a, lab, scale, &err)); break;
    case S_KD: DQ_TGPU_OK(dq_loss_kd(&loss, gr, a, b, T, scale, &err)); break;
    case S_COSINE: DQ_TGPU_OK(dq_loss_cosine(&loss, gr, a, b, scale, &err)); break;
    default: DQ_TGPU_OK(dq_loss_mse(&loss, gr, a, b, scale, &err)); break;
    }
    return loss;
}

/* One loss against the CPU: value and gradient. The gradient buffer starts
 * from random values of the gradient's OWN magnitude (measured by a CPU run
 * from zero), so "adds into" is checked and the normalised error is
 * relative to the gradient, not swamped by an O(1) start (with a start in
 * [-1, 1] the MSE gradient, ~1e-5 per element here, could be anything). */
static void s_loss_case(dq_tgpu *g, int kind, const char *what, const float *a, const float *b,
                        const int32_t *lab, int64_t N, int64_t K, float T, float scale)
{
    const int64_t n = N * K;
    dq_tensor ta = dq_tensor_view2((float *)a, N, K), tb = dq_tensor_view2((float *)b, N, K);
    float *zero = calloc((size_t)n, sizeof(float)), *want = malloc((size_t)n * sizeof(float));
    assert_non_null(zero);
    assert_non_null(want);
    dq_tensor tz = dq_tensor_view2(zero, N, K), tw = dq_tensor_view2(want, N, K);
    (void)s_cpu_loss(kind, &tz, &ta, &tb, lab, T, scale);
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs((double)zero[i]));
    if (!(m > 0)) fail_msg("%s: the CPU gradient is zero; the case tests nothing", what);
    dq_test_fill(want, NULL, n, &g->rng, (float)-m, (float)m);
    float *d_a = dq_tgpu_up(g, a, n), *d_b = b ? dq_tgpu_up(g, b, n) : NULL,
          *d_g = dq_tgpu_up(g, want, n);
    double *d_rows = dq_tgpu_alloc(g, (size_t)(N > DQ_K_MSE_PARTS ? N : DQ_K_MSE_PARTS) * 8);
    int32_t *d_lab = NULL;
    if (lab) {
        d_lab = dq_tgpu_alloc(g, (size_t)N * sizeof(int32_t));
        DQ_TGPU_CUDA(cudaMemcpy(d_lab, lab, (size_t)N * sizeof(int32_t), cudaMemcpyHostToDevice));
    }
    float loss = s_cpu_loss(kind, &tw, &ta, &tb, lab, T, scale);
    switch (kind) {
    case S_XENT:
        DQ_TGPU_CUDA(dq_k_loss_xent(d_rows, d_g, d_a, d_lab, N, K, scale, g->stream));
        s_expect_loss(g, what, d_rows, N, 1.0 / N, loss);
        break;
    case S_KD:
        DQ_TGPU_CUDA(dq_k_loss_kd(d_rows, d_g, d_a, d_b, N, K, T, scale, g->stream));
        s_expect_loss(g, what, d_rows, N, (double)T * T / N, loss);
        break;
    case S_COSINE:
        DQ_TGPU_CUDA(dq_k_loss_cosine(d_rows, d_g, d_a, d_b, N, K, scale, g->stream));
        s_expect_loss(g, what, d_rows, N, 1.0 / N, loss);
        break;
    default:
        DQ_TGPU_CUDA(dq_k_loss_mse(d_rows, d_g, d_a, d_b, n, scale, g->stream));
        s_expect_loss(g, what, d_rows, DQ_K_MSE_PARTS, 1.0 / (double)n, loss);
        break;
    }
    char gw[64];
    snprintf(gw, sizeof gw, "%s grad", what);
    dq_tgpu_expect(g, gw, d_g, want, n);
    free(zero), free(want);
    dq_tgpu_release(g);
}

static void test_losses(void **state)
{
    dq_tgpu *g = *state;
    const int64_t N = 45, K = 10, F = 1568;
    const float T = 2.0f, scale = 0.75f;
    float *s = dq_tgpu_random(g, N * K, -6, 6), *t = dq_tgpu_random(g, N * K, -6, 6);
    int32_t lab[45];
    for (int i = 0; i < N; i++) lab[i] = (int32_t)dq_rng_below(&g->rng, (uint64_t)K);
    s_loss_case(g, S_XENT, "cross-entropy", s, NULL, lab, N, K, 0, scale);
    s_loss_case(g, S_KD, "kd", s, t, NULL, N, K, T, scale);
    /* rows longer than the row block's 32 lanes (uneven stride) */
    const int64_t K2 = 100;
    float *s2 = dq_tgpu_random(g, N * K2, -6, 6), *t2 = dq_tgpu_random(g, N * K2, -6, 6);
    int32_t lab2[45];
    for (int i = 0; i < N; i++) lab2[i] = (int32_t)dq_rng_below(&g->rng, (uint64_t)K2);
    s_loss_case(g, S_XENT, "cross-entropy K=100", s2, NULL, lab2, N, K2, 0, scale);
    s_loss_case(g, S_KD, "kd K=100", s2, t2, NULL, N, K2, T, scale);
    free(s2), free(t2);
    float *a = dq_tgpu_random(g, N * F, -1, 1), *b = dq_tgpu_random(g, N * F, -1, 1);
    s_loss_case(g, S_COSINE, "cosine", a, b, NULL, N, F, 0, scale);
    s_loss_case(g, S_MSE, "mse", a, b, NULL, N, F, 0, scale);
    free(s), free(t), free(a), free(b);
}

static void test_adam(void **state)
{
    dq_tgpu *g = *state;
    const int64_t n = 100003;
    float *p = dq_tgpu_random(g, n, -1, 1), *gr = dq_tgpu_random(g, n, -1, 1);
    float *m = dq_tgpu_random(g, n, 0, 0), *v = dq_tgpu_random(g, n, 0, 0);
    float *d_p = dq_tgpu_up(g, p, n), *d_g = dq_tgpu_up(g, gr, n), *d_m = dq_tgpu_up(g, m, n),
          *d_v = dq_tgpu_up(g, v, n);
    for (int wd = 0; wd < 2; wd++) {
        dq_adam_config cfg = dq_adam_defaults();
        cfg.weight_decay = wd ? 0.01 : 0.0;
        for (int64_t step = 1 + 3 * wd; step <= 3 + 3 * wd; step++) {
            dq_adam_step(p, gr, m, v, n, step, &cfg);
            double bc1 = 1.0 - pow(cfg.beta1, (double)step),
                   bc2 = 1.0 - pow(cfg.beta2, (double)step);
            dq_k_adam_scalars k = {(float)cfg.beta1, (float)(1.0 - cfg.beta1), (float)cfg.beta2,
                                   (float)(1.0 - cfg.beta2), (float)cfg.weight_decay,
                                   cfg.weight_decay != 0.0, (float)sqrt(bc2), (float)cfg.eps,
                                   (float)(-(cfg.lr / bc1))};
            DQ_TGPU_CUDA(dq_k_adam_step(d_p, d_g, d_m, d_v, n, k, g->stream));
        }
        dq_tgpu_expect(g, "adam params", d_p, p, n);
        dq_tgpu_expect(g, "adam m", d_m, m, n);
        dq_tgpu_expect(g, "adam v", d_v, v, n);
    }
    free(p), free(gr), free(m), free(v);
    dq_tgpu_release(g);
}

/* ---- whole networks through the executor ------------------------------------------------ */

static dq_net_t *s_load(const char *path)
{
    dq_net_t *net = NULL;
    dq_err err = {{0}};
    if (dq_net_load(&net, path, &err) != DQ_OK) fail_msg("%s: %s", path, err.msg);
    return net;
}

/* Random batch-norm running statistics (init leaves them at mean 0, var 1,
 * where an executor that never uploaded them would pass unnoticed). */
static void s_random_buffers(dq_net_t *net, dq_rng *r)
{
    for (int k = 0; k < dq_net_buffer_count(net); k++) {
        dq_tensor *b = dq_net_buffer(net, k);
        if (!b) continue;
        bool var = strstr(dq_net_buffer_name(net, k), "running_var") != NULL;
        dq_test_fill(b->data, NULL, dq_tensor_numel(b), r, var ? 0.5f : -0.2f, var ? 1.5f : 0.2f);
    }
}

/* The eval forward of a shipped model: every output, batches 5 and then 2. */
static void s_teacher_case(dq_tgpu *g, const char *model)
{
    dq_err err = {{0}};
    char path[512];
    snprintf(path, sizeof path, "%s/models/%s.model", s_srcdir(), model);
    dq_net_t *net = s_load(path);
    dq_net_init_params(net, &g->rng);
    s_random_buffers(net, &g->rng); /* the executor must take them up */
    const dq_net_input *ip = dq_net_input_spec(net);
    const int64_t B = 5, per = (int64_t)ip->channels * ip->height * ip->width;
    float *x = dq_tgpu_random(g, B * per, -1, 1);
    DQ_TGPU_OK(dq_net_plan(net, B, &err));
    dq_net_cuda_t *gx = NULL;
    DQ_TGPU_OK(dq_net_cuda_new(&gx, net, path, g->dev, B, false, 1, &err));
    for (int64_t n = B; n >= 2; n -= 3) {
        dq_tensor in = dq_tensor_view4(x, n, ip->channels, ip->height, ip->width);
        DQ_TGPU_OK(dq_net_forward(net, &in, false, NULL, &err));
        DQ_TGPU_OK(dq_net_cuda_forward(gx, &in, false, NULL, 0, &err));
        for (int o = 0; o < dq_net_output_count(net); o++) {
            const char *name = dq_net_output_name(net, o);
            const dq_tensor *want = dq_net_output(net, name), *got = dq_net_cuda_output(gx, name);
            assert_non_null(got);
            assert_int_equal(got->shape[0], n);
            assert_int_equal(dq_tensor_numel(got), dq_tensor_numel(want));
            double e = dq_tgpu_norm_err(got->data, want->data, dq_tensor_numel(want));
            if (!(e <= DQ_TGPU_TOL))
                fail_msg("%s output %s (batch %lld): normalised error %.3g", model, name,
                         (long long)n, e);
        }
    }
    /* Only what was asked for comes down. */
    const char *want_logits[1] = {"logits"};
    dq_tensor in1 = dq_tensor_view4(x, 1, ip->channels, ip->height, ip->width);
    DQ_TGPU_OK(dq_net_cuda_forward(gx, &in1, false, want_logits, 1, &err));
    assert_non_null(dq_net_cuda_output(gx, "logits"));
    if (dq_net_output_count(net) > 1) assert_null(dq_net_cuda_output(gx, "features"));
    /* Errors are reported, not crashed on. */
    dq_tensor big = dq_tensor_view4(x, B + 1, ip->channels, ip->height, ip->width);
    assert_int_equal(dq_net_cuda_forward(gx, &big, false, NULL, 0, &err), DQ_ERR_SHAPE);
    const char *bad[1] = {"nope"};
    assert_int_equal(dq_net_cuda_forward(gx, &in1, false, bad, 1, &err), DQ_ERR_NOT_FOUND);
    assert_int_equal(dq_net_cuda_backward(gx, &err), DQ_ERR_ARG);
    dq_net_cuda_destroy(&gx);
    assert_null(gx);
    dq_net_destroy(&net);
    free(x);
}

static void test_teacher_forward(void **state)
{
    s_teacher_case(*state, "deepnn-fmnist");
    s_teacher_case(*state, "deepnn-cifar10");
    s_teacher_case(*state, "deepnn-cosine-fmnist");
    s_teacher_case(*state, "lightnn-regressor-fmnist");
    /* residual, batch norm (folded on the CPU, cuDNN's on the GPU), depthwise */
    s_teacher_case(*state, "resnet18-fmnist");
    s_teacher_case(*state, "mobilenet-tiny-fmnist");
}

/* Batch invariance on the GPU, bit for bit, as test_net checks it on the
 * CPU: every sample's outputs are the same in any batch, at any position,
 * across chunk boundaries (DQ_NET_CUDA_EVAL_CHUNK) and in a second executor
 * made for another max_batch (algorithms chosen for the chunk's shape, not
 * the executor's); and they equal the CPU's up to float rounding (which
 * also checks that the running statistics were uploaded). */
static void s_invariance_case(dq_tgpu *g, const char *model, const char *output)
{
    dq_err err = {{0}};
    char path[512];
    snprintf(path, sizeof path, "%s/models/%s.model", s_srcdir(), model);
    dq_net_t *net = s_load(path);
    dq_net_init_params(net, &g->rng);
    s_random_buffers(net, &g->rng);
    const int64_t C = DQ_NET_CUDA_EVAL_CHUNK, N = C + 44, small = 7, n_cpu = 20;
    const dq_net_input *ip = dq_net_input_spec(net);
    const int64_t sz = (int64_t)ip->channels * ip->height * ip->width;
    float *x = dq_tgpu_random(g, N * sz, -1, 1);
    dq_net_cuda_t *ga = NULL, *gb = NULL;
    DQ_TGPU_OK(dq_net_cuda_new(&ga, net, path, g->dev, N, false, 0, &err));
    DQ_TGPU_OK(dq_net_cuda_new(&gb, net, path, g->dev, small, false, 0, &err));
    const char *want[1] = {output};
    dq_tensor all = dq_tensor_view4(x, N, ip->channels, ip->height, ip->width);
    DQ_TGPU_OK(dq_net_cuda_forward(ga, &all, false, want, 1, &err));
    const dq_tensor *o = dq_net_cuda_output(ga, output);
    assert_non_null(o);
    assert_int_equal(o->shape[0], N);
    const int64_t K = dq_tensor_inner(o, 1);
    float *ref = malloc((size_t)(N * K) * sizeof(float));
    assert_non_null(ref);
    memcpy(ref, o->data, (size_t)(N * K) * sizeof(float));
    /* against the CPU */
    DQ_TGPU_OK(dq_net_plan(net, n_cpu, &err));
    dq_tensor head = dq_tensor_view4(x, n_cpu, ip->channels, ip->height, ip->width);
    DQ_TGPU_OK(dq_net_forward(net, &head, false, NULL, &err));
    double e = dq_tgpu_norm_err(ref, dq_net_output(net, output)->data, n_cpu * K);
    if (!(e <= DQ_TGPU_TOL)) fail_msg("%s %s: GPU vs CPU normalised error %.3g", model, output, e);
    const int64_t sizes[] = {1, 2, small, 50, C - 1, C, C + 1, N};
    int checked = 0;
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++)
        for (int64_t off = 0; off + sizes[si] <= N; off += 37) {
            int64_t n = sizes[si];
            dq_tensor t = dq_tensor_view4(x + off * sz, n, ip->channels, ip->height, ip->width);
            dq_net_cuda_t *ex = n <= small && (off / 37) % 2 ? gb : ga;
            DQ_TGPU_OK(dq_net_cuda_forward(ex, &t, false, want, 1, &err));
            o = dq_net_cuda_output(ex, output);
            assert_non_null(o);
            assert_int_equal(o->shape[0], n);
            for (int64_t i = 0; i < n; i++, checked++)
                if (memcmp(o->data + i * K, ref + (off + i) * K, (size_t)K * sizeof(float)))
                    fail_msg("%s %s: sample %lld differs in a batch of %lld at row %lld "
                             "(executor for %lld)", model, output, (long long)(off + i),
                             (long long)n, (long long)i, (long long)dq_net_cuda_max_batch(ex));
            if (n == N) break;
        }
    assert_true(checked > 1000);
    dq_net_cuda_destroy(&ga);
    dq_net_cuda_destroy(&gb);
    dq_net_destroy(&net);
    free(x), free(ref);
}

static void test_eval_batch_invariant(void **state)
{
    s_invariance_case(*state, "deepnn-fmnist", "logits");
    s_invariance_case(*state, "deepnn-cosine-fmnist", "features");
    s_invariance_case(*state, "resnet18-fmnist", "logits");
    s_invariance_case(*state, "mobilenet-tiny-fmnist", "logits");
}

/* Branches (from=), a flatten with two consumers, overlapping pooling,
 * avgpool1d and three outputs; no dropout, whose masks differ by design. */
static const char *s_train_model =
    "name gpu-train\n"
    "input channels=2 height=9 width=8\n"
    "layer c1 conv2d in=2 out=6 kernel=3 padding=1\n"
    "layer r1 relu\n"
    "layer p1 maxpool2d kernel=3 stride=2\n"               /* [6,4,3] */
    "layer c2 conv2d in=6 out=5 kernel=2\n"                /* [5,3,2] */
    "layer reg conv2d in=6 out=4 kernel=1 bias=0 from=p1\n" /* [4,4,3] */
    "layer flat flatten from=c2\n"                         /* [30] */
    "layer fc1 linear in=30 out=12\n"
    "layer r2 relu\n"
    "layer fc2 linear in=12 out=5\n"
    "layer pool avgpool1d kernel=4 from=flat\n"            /* [7] */
    "output logits fc2\n"
    "output features pool\n"
    "output hint reg\n";

/* The residual layers in training: batch norm (batch statistics, running
 * statistics, backward), a depthwise conv, an add whose input is also read
 * elsewhere, relu6/clip, padded maxpool, avgpool2d and global pooling. */
static const char *s_res_train_model =
    "name gpu-res\n"
    "input channels=2 height=9 width=8\n"
    "layer c1 conv2d in=2 out=6 kernel=3 padding=1 bias=0\n"
    "layer bn1 batchnorm2d features=6\n"
    "layer r1 relu6\n"
    "layer dw conv2d in=6 out=6 kernel=3 padding=1 groups=6 bias=0\n"
    "layer bn2 batchnorm2d features=6\n"
    "layer s add from=bn2,r1\n"
    "layer mp maxpool2d kernel=3 stride=2 padding=1\n"                      /* [6,5,4] */
    "layer ap avgpool2d kernel=2 stride=1 padding=1 count_include_pad=0\n"  /* [6,6,5] */
    "layer g global_avgpool\n"
    "layer f flatten\n"
    "layer fc linear in=6 out=5\n"
    "layer cl clip min=-1 max=1 from=mp\n"
    "layer fl flatten\n"
    "output logits fc\n"
    "output features fl\n";

static void s_train_case(dq_tgpu *g, const char *text)
{
    dq_err err = {{0}};
    char path[] = "/tmp/dq_test_cuda_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    dq_net_t *net = s_load(path);
    dq_net_init_params(net, &g->rng);
    const int64_t B = 6, per = 2 * 9 * 8, np = dq_net_param_floats(net);
    dq_net_cuda_t *gx = NULL;
    DQ_TGPU_OK(dq_net_plan(net, B, &err));
    dq_status st = dq_net_cuda_new(&gx, net, path, g->dev, B, true, 7, &err);
    remove(path);
    if (st != DQ_OK) fail_msg("executor: %s", err.msg);
    float *x = dq_tgpu_random(g, B * per, -1, 1), *m = calloc((size_t)np, 4),
          *v = calloc((size_t)np, 4);
    float *gpu = malloc((size_t)np * 4), *cpu_g = malloc((size_t)np * 4);
    dq_adam_config cfg = dq_adam_defaults();
    for (int64_t step = 1; step <= 2; step++) {
        int64_t n = step == 1 ? B : B - 2;
        dq_tensor in = dq_tensor_view4(x, n, 2, 9, 8);
        dq_rng drop_rng; /* the net has no dropout; train mode needs one */
        dq_rng_seed(&drop_rng, 1);
        dq_net_zero_grad(net);
        DQ_TGPU_OK(dq_net_cuda_zero_grad(gx, &err));
        DQ_TGPU_OK(dq_net_forward(net, &in, true, &drop_rng, &err));
        DQ_TGPU_OK(dq_net_cuda_forward(gx, &in, true, NULL, 0, &err));
        for (int o = 0; o < dq_net_output_count(net); o++) {
            const char *name = dq_net_output_name(net, o);
            const dq_tensor *want = dq_net_output(net, name);
            double e = dq_tgpu_norm_err(dq_net_cuda_output(gx, name)->data, want->data,
                                  dq_tensor_numel(want));
            if (!(e <= DQ_TGPU_TOL)) fail_msg("train forward %s: normalised error %.3g", name, e);
            dq_tensor *gc = dq_net_output_grad(net, name), *gg = dq_net_cuda_output_grad(gx, name);
            assert_non_null(gg);
            assert_int_equal(dq_tensor_numel(gg), dq_tensor_numel(gc));
            dq_test_fill(gc->data, NULL, dq_tensor_numel(gc), &g->rng, -1, 1);
            memcpy(gg->data, gc->data, (size_t)dq_tensor_numel(gc) * 4);
        }
        DQ_TGPU_OK(dq_net_backward(net, &err));
        DQ_TGPU_OK(dq_net_cuda_backward(gx, &err));
        /* download_grads writes into the net: keep the CPU's aside meanwhile. */
        memcpy(cpu_g, dq_net_grads(net), (size_t)np * 4);
        DQ_TGPU_OK(dq_net_cuda_download_grads(gx, net, &err));
        memcpy(gpu, dq_net_grads(net), (size_t)np * 4);
        memcpy(dq_net_grads(net), cpu_g, (size_t)np * 4);
        for (int i = 0; i < dq_net_param_count(net); i++) {
            const dq_tensor *gc = dq_net_param_grad(net, i);
            int64_t off = gc->data - dq_net_grads(net);
            double e = dq_tgpu_norm_err(gpu + off, gc->data, dq_tensor_numel(gc));
            if (!(e <= DQ_TGPU_TOL)) fail_msg("step %lld: gradient of %s: normalised error %.3g",
                                        (long long)step, dq_net_param_name(net, i), e);
        }
        dq_adam_step(dq_net_params(net), dq_net_grads(net), m, v, np, step, &cfg);
        DQ_TGPU_OK(dq_net_cuda_adam_step(gx, step, &cfg, &err));
    }
    /* After two steps the device parameters still track the CPU's. */
    float *cpu = malloc((size_t)np * 4);
    memcpy(cpu, dq_net_params(net), (size_t)np * 4);
    /* ... and so do the batch-norm running statistics (two training steps) */
    int nb = dq_net_buffer_count(net);
    float *cpu_b[64] = {NULL};
    assert_true(nb <= 64);
    for (int k = 0; k < nb; k++) {
        dq_tensor *b = dq_net_buffer(net, k);
        if (!b) continue;
        cpu_b[k] = malloc((size_t)dq_tensor_numel(b) * 4);
        memcpy(cpu_b[k], b->data, (size_t)dq_tensor_numel(b) * 4);
    }
    DQ_TGPU_OK(dq_net_cuda_download_params(gx, net, &err));
    double e = dq_tgpu_norm_err(dq_net_params(net), cpu, np);
    if (!(e <= DQ_TGPU_TOL)) fail_msg("parameters after 2 Adam steps: normalised error %.3g", e);
    for (int k = 0; k < nb; k++) {
        dq_tensor *b = dq_net_buffer(net, k);
        if (!b) continue;
        double eb = dq_tgpu_norm_err(b->data, cpu_b[k], dq_tensor_numel(b));
        if (!(eb <= DQ_TGPU_TOL)) fail_msg("%s after 2 steps: normalised error %.3g",
                                     dq_net_buffer_name(net, k), eb);
        free(cpu_b[k]);
    }
    dq_net_cuda_destroy(&gx);
    dq_net_destroy(&net);
    free(x), free(m), free(v), free(gpu), free(cpu_g), free(cpu);
}

static void test_train_step(void **state)
{
    s_train_case(*state, s_train_model);
}

static void test_train_step_residual(void **state)
{
    s_train_case(*state, s_res_train_model);
}

/* ---- group --------------------------------------------------------------------------------- */

static int s_setup(void **state)
{
    return dq_tgpu_setup(state, "test_cuda", 20260601);
}

int main(void)
{
    /* The same detection the programs use; no GPU skips, a broken one fails. */
    dq_device dev;
    int gate = dq_test_gpu_or_skip("test_cuda", &dev);
    if (gate != 0) return gate < 0 ? 0 : gate;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_relu),          cmocka_unit_test(test_dropout),
        cmocka_unit_test(test_linear),        cmocka_unit_test(test_conv2d),
        cmocka_unit_test(test_maxpool2d),     cmocka_unit_test(test_avgpool1d),
        cmocka_unit_test(test_softmax),       cmocka_unit_test(test_losses),
        cmocka_unit_test(test_adam),          cmocka_unit_test(test_teacher_forward),
        cmocka_unit_test(test_eval_batch_invariant),
        cmocka_unit_test(test_train_step),
        cmocka_unit_test(test_train_step_residual),
    };
    return cmocka_run_group_tests_name("cuda", tests, s_setup, dq_tgpu_teardown);
}
