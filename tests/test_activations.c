/* test_activations.c - relu, dropout, softmax and log_softmax (with T).
 *
 * Each op's float forward is compared with a double reference and its
 * backward with central finite differences of L = sum(out * R) on that
 * reference (dropout's reference uses the mask our forward drew), starting
 * from non-zero gradients so accumulation is checked too. Hand values:
 * softmax and log_softmax of [1,2,3] at T = 1 and T = 2.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "gradcheck.h"
#include "tensor/ops.h"

static void *s_calloc(int64_t n, size_t size)
{
    void *p = calloc((size_t)(n > 0 ? n : 1), size);
    assert_non_null(p);
    return p;
}

/* A shared finite-difference context: an element-wise or row-wise double
 * forward fwd(y, x, ctx) over n inputs and m outputs, loss sum(y * r). */
typedef struct fd_ctx fd_ctx;
struct fd_ctx {
    void (*fwd)(double *y, const double *x, const fd_ctx *c);
    int64_t n, m;
    const double *r;
    double *y;
    /* op parameters */
    const float *mask;
    int64_t K;
    double T;
};

static double fd_loss(const double *x, void *ctx)
{
    fd_ctx *c = ctx;
    c->fwd(c->y, x, c);
    double l = 0.0;
    for (int64_t i = 0; i < c->m; i++) l += c->y[i] * c->r[i];
    return l;
}

/* want = g0 + numerical gradient of the context's loss at xd; checks got. */
static void check_backward(const float *got, const float *g0, double *xd, fd_ctx *c, double h,
                           const char *what)
{
    double *want = s_calloc(c->n, sizeof(double));
    dq_test_numgrad(want, xd, c->n, fd_loss, c, h);
    for (int64_t i = 0; i < c->n; i++) want[i] += g0[i];
    dq_test_assert_close(got, want, c->n, 1e-5, 1e-5, what);
    free(want);
}

/* ---- relu ------------------------------------------------------------------ */

static void relu_ref(double *y, const double *x, const fd_ctx *c)
{
    for (int64_t i = 0; i < c->n; i++) y[i] = x[i] > 0 ? x[i] : 0.0;
}

static void test_relu(void **state)
{
    (void)state;
    float x[5] = {-2, -0.5f, 0, 0.5f, 3}, y[5], dy[5] = {1, 1, 1, 1, 1}, dx[5] = {0};
    dq_tensor tx = dq_tensor_view2(x, 1, 5), ty = dq_tensor_view2(y, 1, 5);
    dq_tensor tdy = dq_tensor_view2(dy, 1, 5), tdx = dq_tensor_view2(dx, 1, 5);
    dq_err err = {{0}};
    assert_int_equal(dq_relu_forward(&ty, &tx, &err), DQ_OK);
    const float want[5] = {0, 0, 0, 0.5f, 3}, want_dx[5] = {0, 0, 0, 1, 1};
    for (int i = 0; i < 5; i++) assert_true(y[i] == want[i]);
    for (int rep = 1; rep <= 2; rep++) {
        assert_int_equal(dq_relu_backward(&tdx, &tdy, &ty, &err), DQ_OK);
        for (int i = 0; i < 5; i++) assert_true(dx[i] == rep * want_dx[i]);
    }
    /* in place, and NaN propagates */
    x[1] = NAN;
    assert_int_equal(dq_relu_forward(&tx, &tx, &err), DQ_OK);
    assert_true(x[0] == 0.0f && isnan(x[1]) && x[3] == 0.5f && x[4] == 3.0f);

    /* random 4-D tensor with an odd element count, away from the kink */
    enum { N = 3 * 2 * 5 * 7 };
    float *a = s_calloc(N, 4), *b = s_calloc(N, 4), *r = s_calloc(N, 4), *g = s_calloc(N, 4);
    float *g0 = s_calloc(N, 4);
    double *ad = s_calloc(N, 8), *rd = s_calloc(N, 8), *yd = s_calloc(N, 8);
    dq_rng rng;
    dq_rng_seed(&rng, 21);
    dq_test_fill(a, NULL, N, &rng, -1, 1);
    for (int i = 0; i < N; i++) {
        if (fabsf(a[i]) < 0.05f) a[i] = 0.5f;
        ad[i] = a[i];
    }
    dq_test_fill(r, rd, N, &rng, -1, 1);
    dq_test_fill(g, NULL, N, &rng, -1, 1);
    memcpy(g0, g, N * 4);
    dq_tensor ta = dq_tensor_view4(a, 3, 2, 5, 7), tb = dq_tensor_view4(b, 3, 2, 5, 7);
    dq_tensor tr = dq_tensor_view4(r, 3, 2, 5, 7), tg = dq_tensor_view4(g, 3, 2, 5, 7);
    assert_int_equal(dq_relu_forward(&tb, &ta, &err), DQ_OK);
    fd_ctx c = {.fwd = relu_ref, .n = N, .m = N, .r = rd, .y = yd};
    relu_ref(yd, ad, &c);
    dq_test_assert_close(b, yd, N, 0, 0, "relu forward");
    assert_int_equal(dq_relu_backward(&tg, &tr, &tb, &err), DQ_OK);
    check_backward(g, g0, ad, &c, 1e-3, "relu backward");

    /* shape errors */
    dq_tensor b_bad = dq_tensor_view4(b, 3, 2, 7, 5);
    assert_int_equal(dq_relu_forward(&b_bad, &ta, &err), DQ_ERR_SHAPE);
    assert_string_equal(err.msg, "relu: output has shape [3, 2, 7, 5], expected [3, 2, 5, 7]");
    assert_int_equal(dq_relu_backward(&b_bad, &tr, &tb, &err), DQ_ERR_SHAPE);
    assert_non_null(strstr(err.msg, "relu backward: input gradient"));
    assert_int_equal(dq_relu_backward(&tg, &b_bad, &tb, &err), DQ_ERR_SHAPE);
    assert_non_null(strstr(err.msg, "relu backward: output gradient"));
    assert_int_equal(dq_relu_backward(NULL, &tr, &tb, &err), DQ_OK);
    free(a), free(b), free(r), free(g), free(g0), free(ad), free(rd), free(yd);
}

/* ---- dropout ------------------------------------------------------------------ */

static void dropout_ref(double *y, const double *x, const fd_ctx *c)
{
    for (int64_t i = 0; i < c->n; i++) y[i] = x[i] * c->mask[i];
}

static void test_dropout_train(void **state)
{
    (void)state;
    enum { N = 10000 };
    const float p = 0.3f, keep = 1.0f / (1.0f - p);
    float *x = s_calloc(N, 4), *y = s_calloc(N, 4), *mask = s_calloc(N, 4);
    float *mask2 = s_calloc(N, 4);
    dq_rng rng, start, ref;
    dq_rng_seed(&rng, 77);
    dq_test_fill(x, NULL, N, &rng, -1, 1);
    start = rng;
    ref = rng;
    dq_tensor tx = dq_tensor_view2(x, 100, 100), ty = dq_tensor_view2(y, 100, 100);
    dq_err err = {{0}};
    assert_int_equal(dq_dropout_forward(&ty, mask, &tx, p, true, &rng, &err), DQ_OK);
    int kept = 0;
    for (int i = 0; i < N; i++) {
        /* one uniform per element, kept when u >= p */
        float u = dq_rng_uniform(&ref);
        assert_true(mask[i] == (u >= p ? keep : 0.0f));
        assert_true(y[i] == x[i] * mask[i]);
        kept += mask[i] != 0.0f;
    }
    assert_memory_equal(&rng, &ref, sizeof rng); /* advanced exactly N times */
    assert_true(kept > 6800 && kept < 7200);     /* 7000 +- 4.4 sigma */
    /* same stream, same mask */
    dq_rng again = start;
    assert_int_equal(dq_dropout_forward(&ty, mask2, &tx, p, true, &again, &err), DQ_OK);
    assert_memory_equal(mask, mask2, N * 4);
    /* p = 0 keeps everything but still consumes the stream */
    again = start;
    assert_int_equal(dq_dropout_forward(&ty, mask2, &tx, 0.0f, true, &again, &err), DQ_OK);
    for (int i = 0; i < N; i++) assert_true(mask2[i] == 1.0f && y[i] == x[i]);
    assert_memory_equal(&again, &ref, sizeof again);

    /* backward against finite differences with the drawn mask (small slice) */
    enum { M = 2 * 37 };
    float *dy = s_calloc(M, 4), *dx = s_calloc(M, 4), *dx0 = s_calloc(M, 4);
    double *xd = s_calloc(M, 8), *rd = s_calloc(M, 8), *yd = s_calloc(M, 8);
    for (int i = 0; i < M; i++) xd[i] = x[i];
    dq_test_fill(dy, rd, M, &rng, -1, 1);
    dq_test_fill(dx, NULL, M, &rng, -1, 1);
    memcpy(dx0, dx, M * 4);
    dq_tensor tdy = dq_tensor_view2(dy, 2, 37), tdx = dq_tensor_view2(dx, 2, 37);
    assert_int_equal(dq_dropout_backward(&tdx, &tdy, mask, p, true, &err), DQ_OK);
    fd_ctx c = {.fwd = dropout_ref, .n = M, .m = M, .r = rd, .y = yd, .mask = mask};
    check_backward(dx, dx0, xd, &c, 1e-3, "dropout backward");
    free(x), free(y), free(mask), free(mask2), free(dy), free(dx), free(dx0), free(xd);
    free(rd), free(yd);
}

static void test_dropout_eval_and_errors(void **state)
{
    (void)state;
    float x[6] = {1, -2, 3, -4, 5, -6}, y[6] = {0}, mask[6] = {7, 7, 7, 7, 7, 7};
    dq_tensor tx = dq_tensor_view2(x, 2, 3), ty = dq_tensor_view2(y, 2, 3);
    dq_rng rng, before;
    dq_rng_seed(&rng, 1);
    before = rng;
    dq_err err = {{0}};
    /* eval is an identity copy that leaves rng and mask alone */
    assert_int_equal(dq_dropout_forward(&ty, mask, &tx, 0.5f, false, &rng, &err), DQ_OK);
    assert_memory_equal(x, y, sizeof x);
    assert_memory_equal(&rng, &before, sizeof rng);
    for (int i = 0; i < 6; i++) assert_true(mask[i] == 7.0f);
    assert_int_equal(dq_dropout_forward(&tx, NULL, &tx, 0.5f, false, NULL, &err), DQ_OK);
    float dy[6] = {1, 2, 3, 4, 5, 6}, dx[6] = {1, 1, 1, 1, 1, 1};
    dq_tensor tdy = dq_tensor_view2(dy, 2, 3), tdx = dq_tensor_view2(dx, 2, 3);
    assert_int_equal(dq_dropout_backward(&tdx, &tdy, NULL, 0.5f, false, &err), DQ_OK);
    for (int i = 0; i < 6; i++) assert_true(dx[i] == 1.0f + dy[i]);

    /* p outside [0, 1) */
    assert_int_equal(dq_dropout_forward(&ty, mask, &tx, 1.0f, true, &rng, &err), DQ_ERR_ARG);
    assert_string_equal(err.msg, "dropout: p = 1 must be in [0, 1)");
    assert_int_equal(dq_dropout_forward(&ty, mask, &tx, -0.1f, false, &rng, &err), DQ_ERR_ARG);
    assert_int_equal(dq_dropout_forward(&ty, mask, &tx, NAN, true, &rng, &err), DQ_ERR_ARG);
    assert_int_equal(dq_dropout_backward(&tdx, &tdy, mask, 1.5f, true, &err), DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "dropout backward: p = 1.5"));
    /* training needs rng and mask */
    assert_int_equal(dq_dropout_forward(&ty, mask, &tx, 0.5f, true, NULL, &err), DQ_ERR_ARG);
    assert_string_equal(err.msg, "dropout: training needs a rng");
    assert_int_equal(dq_dropout_forward(&ty, NULL, &tx, 0.5f, true, &rng, &err), DQ_ERR_ARG);
    assert_string_equal(err.msg, "dropout: training needs a mask");
    assert_int_equal(dq_dropout_backward(&tdx, &tdy, NULL, 0.5f, true, &err), DQ_ERR_ARG);
    assert_memory_equal(&rng, &before, sizeof rng); /* failures draw nothing */
    /* shapes */
    dq_tensor y_bad = dq_tensor_view2(y, 3, 2);
    assert_int_equal(dq_dropout_forward(&y_bad, mask, &tx, 0.5f, true, &rng, &err),
                     DQ_ERR_SHAPE);
    assert_string_equal(err.msg, "dropout: output has shape [3, 2], expected [2, 3]");
    assert_int_equal(dq_dropout_backward(&y_bad, &tdy, mask, 0.5f, true, &err), DQ_ERR_SHAPE);
    assert_non_null(strstr(err.msg, "dropout backward: input gradient"));
}

/* ---- softmax / log_softmax ----------------------------------------------------- */

static void softmax_ref(double *y, const double *x, const fd_ctx *c, bool as_log)
{
    for (int64_t n = 0; n < c->n / c->K; n++) {
        const double *z = x + n * c->K;
        double m = z[0], s = 0.0;
        for (int64_t k = 1; k < c->K; k++) m = z[k] > m ? z[k] : m;
        for (int64_t k = 0; k < c->K; k++) s += exp((z[k] - m) / c->T);
        for (int64_t k = 0; k < c->K; k++) {
            double ls = (z[k] - m) / c->T - log(s);
            y[n * c->K + k] = as_log ? ls : exp(ls);
        }
    }
}

static void softmax_fwd(double *y, const double *x, const fd_ctx *c)
{
    softmax_ref(y, x, c, false);
}

static void log_softmax_fwd(double *y, const double *x, const fd_ctx *c)
{
    softmax_ref(y, x, c, true);
}

typedef dq_status (*fwd_fn)(dq_tensor *, const dq_tensor *, float, dq_err *);
typedef dq_status (*bwd_fn)(dq_tensor *, const dq_tensor *, const dq_tensor *, float, dq_err *);

static void softmax_case(int N, int K, float T, bool as_log, dq_rng *rng)
{
    const int64_t n = (int64_t)N * K;
    fwd_fn fwd = as_log ? dq_log_softmax_forward : dq_softmax_forward;
    bwd_fn bwd = as_log ? dq_log_softmax_backward : dq_softmax_backward;
    float *x = s_calloc(n, 4), *y = s_calloc(n, 4), *r = s_calloc(n, 4), *g = s_calloc(n, 4);
    float *g0 = s_calloc(n, 4);
    double *xd = s_calloc(n, 8), *yd = s_calloc(n, 8), *rd = s_calloc(n, 8);
    dq_test_fill(x, xd, n, rng, -4, 4);
    dq_test_fill(r, rd, n, rng, -1, 1);
    dq_test_fill(g, NULL, n, rng, -1, 1);
    memcpy(g0, g, (size_t)n * 4);
    fd_ctx c = {.fwd = as_log ? log_softmax_fwd : softmax_fwd, .n = n, .m = n, .r = rd, .y = yd,
                .K = K, .T = T};
    dq_tensor tx = dq_tensor_view2(x, N, K), ty = dq_tensor_view2(y, N, K);
    dq_tensor tr = dq_tensor_view2(r, N, K), tg = dq_tensor_view2(g, N, K);
    dq_err err = {{0}};
    char what[64];
    snprintf(what, sizeof what, "%s %dx%d T=%g", as_log ? "log_softmax" : "softmax", N, K,
             (double)T);
    assert_int_equal(fwd(&ty, &tx, T, &err), DQ_OK);
    c.fwd(yd, xd, &c);
    dq_test_assert_close(y, yd, n, 1e-5, 1e-6, what);
    assert_int_equal(bwd(&tg, &tr, &ty, T, &err), DQ_OK);
    check_backward(g, g0, xd, &c, 1e-4, what);
    free(x), free(y), free(r), free(g), free(g0), free(xd), free(yd), free(rd);
}

static void test_softmax_against_reference(void **state)
{
    (void)state;
    dq_rng rng;
    dq_rng_seed(&rng, 8);
    const float temps[3] = {1.0f, 2.5f, 0.5f};
    for (int as_log = 0; as_log < 2; as_log++)
        for (int t = 0; t < 3; t++) {
            softmax_case(3, 5, temps[t], as_log, &rng);
            softmax_case(2, 10, temps[t], as_log, &rng);
            softmax_case(1, 1, temps[t], as_log, &rng); /* one class: constant */
            softmax_case(4, 13, temps[t], as_log, &rng);
        }
}

static void test_softmax_hand_values(void **state)
{
    (void)state;
    float x[3] = {1, 2, 3}, y[3];
    dq_tensor tx = dq_tensor_view2(x, 1, 3), ty = dq_tensor_view2(y, 1, 3);
    dq_err err = {{0}};
    const double sm1[3] = {0.0900305732, 0.244728471, 0.665240956};
    const double sm2[3] = {0.186323723, 0.307195886, 0.506480391};
    const double ls1[3] = {-2.40760596, -1.40760596, -0.407605964};
    const double ls2[3] = {-1.68026967, -1.18026967, -0.680269671};
    assert_int_equal(dq_softmax_forward(&ty, &tx, 1.0f, &err), DQ_OK);
    dq_test_assert_close(y, sm1, 3, 1e-6, 0, "softmax T=1");
    assert_int_equal(dq_softmax_forward(&ty, &tx, 2.0f, &err), DQ_OK);
    dq_test_assert_close(y, sm2, 3, 1e-6, 0, "softmax T=2");
    assert_int_equal(dq_log_softmax_forward(&ty, &tx, 1.0f, &err), DQ_OK);
    dq_test_assert_close(y, ls1, 3, 1e-6, 0, "log_softmax T=1");
    assert_int_equal(dq_log_softmax_forward(&ty, &tx, 2.0f, &err), DQ_OK);
    dq_test_assert_close(y, ls2, 3, 1e-6, 0, "log_softmax T=2");

    /* large logits: shifted by the max, so no overflow */
    float big[3] = {1000, 1001, 1002};
    dq_tensor tbig = dq_tensor_view2(big, 1, 3);
    assert_int_equal(dq_softmax_forward(&ty, &tbig, 2.0f, &err), DQ_OK);
    dq_test_assert_close(y, sm2, 3, 1e-6, 0, "softmax of large logits");
    float far[2] = {-1000, 0};
    dq_tensor tfar = dq_tensor_view2(far, 1, 2), ty2 = dq_tensor_view2(y, 1, 2);
    assert_int_equal(dq_log_softmax_forward(&ty2, &tfar, 1.0f, &err), DQ_OK);
    assert_true(y[0] == -1000.0f && y[1] == 0.0f);
}

static void test_softmax_errors(void **state)
{
    (void)state;
    float x[6] = {0}, y[6] = {0}, g[6] = {0};
    dq_tensor tx = dq_tensor_view2(x, 2, 3), ty = dq_tensor_view2(y, 2, 3);
    dq_tensor tg = dq_tensor_view2(g, 2, 3);
    dq_err err = {{0}};
    const float bad_t[4] = {0.0f, -1.0f, INFINITY, NAN};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(dq_softmax_forward(&ty, &tx, bad_t[i], &err), DQ_ERR_ARG);
        assert_int_equal(dq_log_softmax_backward(&tg, &ty, &ty, bad_t[i], &err), DQ_ERR_ARG);
    }
    assert_string_equal(err.msg, "log_softmax backward: temperature nan must be finite and > 0");
    dq_tensor y_bad = dq_tensor_view2(y, 3, 2);
    assert_int_equal(dq_softmax_forward(&y_bad, &tx, 1.0f, &err), DQ_ERR_SHAPE);
    assert_string_equal(err.msg, "softmax: output has shape [3, 2], expected [2, 3]");
    assert_int_equal(dq_log_softmax_forward(&y_bad, &tx, 1.0f, &err), DQ_ERR_SHAPE);
    assert_non_null(strstr(err.msg, "log_softmax: output"));
    assert_int_equal(dq_softmax_backward(&tg, &y_bad, &ty, 1.0f, &err), DQ_ERR_SHAPE);
    assert_non_null(strstr(err.msg, "softmax backward: output gradient"));
    assert_int_equal(dq_softmax_backward(&y_bad, &tg, &ty, 1.0f, &err), DQ_ERR_SHAPE);
    assert_non_null(strstr(err.msg, "softmax backward: input gradient"));
    dq_tensor x4 = dq_tensor_view4(x, 1, 2, 1, 3);
    assert_int_equal(dq_softmax_forward(&ty, &x4, 1.0f, &err), DQ_ERR_SHAPE);
    assert_non_null(strstr(err.msg, "softmax: input must have 2 dims"));
    assert_int_equal(dq_softmax_backward(NULL, &tg, &ty, 1.0f, &err), DQ_OK);
}

/* The overwriting forms: din's old content must not matter. */
static void test_backward_set_overwrites(void **state)
{
    (void)state;
    enum { N = 2, C = 3, H = 6, W = 6 };
    float x[N * C * H * W], y[N * C * H * W], g[N * C * H * W];
    float d_add[N * C * H * W], d_set[N * C * H * W];
    dq_rng r;
    dq_rng_seed(&r, 17);
    dq_test_fill(x, NULL, N * C * H * W, &r, -1, 1);
    dq_test_fill(g, NULL, N * C * H * W, &r, -1, 1);
    dq_tensor tx = dq_tensor_view4(x, N, C, H, W), ty = dq_tensor_view4(y, N, C, H, W);
    dq_tensor tg = dq_tensor_view4(g, N, C, H, W);
    dq_tensor ta = dq_tensor_view4(d_add, N, C, H, W), ts = dq_tensor_view4(d_set, N, C, H, W);
    dq_err err = {{0}};
    assert_int_equal(dq_relu_forward(&ty, &tx, &err), DQ_OK);
    memset(d_add, 0, sizeof d_add);
    for (int i = 0; i < N * C * H * W; i++) d_set[i] = 1e6f; /* garbage */
    assert_int_equal(dq_relu_backward(&ta, &tg, &ty, &err), DQ_OK);
    assert_int_equal(dq_relu_backward_set(&ts, &tg, &ty, &err), DQ_OK);
    assert_memory_equal(d_add, d_set, sizeof d_add);

    float p[N * C * 3 * 3], pg[N * C * 3 * 3];
    int32_t am[N * C * 3 * 3];
    dq_tensor tp = dq_tensor_view4(p, N, C, 3, 3), tpg = dq_tensor_view4(pg, N, C, 3, 3);
    dq_test_fill(pg, NULL, N * C * 9, &r, -1, 1);
    assert_int_equal(dq_maxpool2d_forward(&tp, am, &tx, 2, 2, &err), DQ_OK);
    memset(d_add, 0, sizeof d_add);
    for (int i = 0; i < N * C * H * W; i++) d_set[i] = -3e5f;
    assert_int_equal(dq_maxpool2d_backward(&ta, &tpg, am, &err), DQ_OK);
    assert_int_equal(dq_maxpool2d_backward_set(&ts, &tpg, am, &err), DQ_OK);
    assert_memory_equal(d_add, d_set, sizeof d_add);
    /* relu -> maxpool backward fused == relu backward after maxpool backward,
     * including windows whose relu outputs are all 0 (x in [-1, 1): some are) */
    float comp[N * C * H * W], mid[N * C * H * W];
    dq_tensor tc = dq_tensor_view4(comp, N, C, H, W), tm = dq_tensor_view4(mid, N, C, H, W);
    assert_int_equal(dq_maxpool2d_forward(&tp, am, &ty, 2, 2, &err), DQ_OK);
    int dead = 0;
    for (int i = 0; i < N * C * 9; i++) dead += p[i] == 0.0f;
    assert_true(dead > 0);
    assert_int_equal(dq_maxpool2d_backward_set(&tm, &tpg, am, &err), DQ_OK);
    assert_int_equal(dq_relu_backward_set(&tc, &tm, &ty, &err), DQ_OK);
    for (int i = 0; i < N * C * H * W; i++) d_set[i] = 7e5f;
    assert_int_equal(dq_maxpool2d_relu_backward_set(&ts, &tpg, am, &ty, &err), DQ_OK);
    assert_memory_equal(comp, d_set, sizeof comp);
    assert_int_equal(dq_maxpool2d_relu_backward_set(&ts, &tpg, am, NULL, &err), DQ_ERR_ARG);

    /* shape errors are still checked */
    dq_tensor bad = dq_tensor_view4(d_set, N, C, H, W - 1);
    assert_int_equal(dq_relu_backward_set(&bad, &tg, &ty, &err), DQ_ERR_SHAPE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backward_set_overwrites),
        cmocka_unit_test(test_relu),
        cmocka_unit_test(test_dropout_train),
        cmocka_unit_test(test_dropout_eval_and_errors),
        cmocka_unit_test(test_softmax_hand_values),
        cmocka_unit_test(test_softmax_against_reference),
        cmocka_unit_test(test_softmax_errors),
    };
    return cmocka_run_group_tests_name("activations", tests, NULL, NULL);
}
