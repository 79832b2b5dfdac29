/* test_ops_resnet.c - the ops residual and MobileNet-style networks add:
 * batchnorm2d (train, eval, fold), add, global average pooling, avgpool2d,
 * clip/relu6 and maxpool2d with padding.
 *
 * Each forward is compared with a naive double reference written here and
 * with hand-computed values; each backward with central finite differences
 * of L = sum(out * R) on that reference, gradients pre-filled with random
 * values so that "adds into" is checked at the same time. Shapes are odd on
 * purpose (odd H/W, C = 3 or 5, N = 1, kernels that do not divide the
 * input). PyTorch itself is the reference in test_ops_torch.c.
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

/* ---- batchnorm2d --------------------------------------------------------------- */

typedef struct {
    int N, C, H, W;
    double eps;
    double *x, *w, *b, *r, *y;
} bn_ctx;

/* Training-mode batch norm on doubles: batch mean, biased variance. */
static void bn_ref(const bn_ctx *c, double *mean, double *var)
{
    const int64_t HW = (int64_t)c->H * c->W, cnt = c->N * HW;
    for (int ch = 0; ch < c->C; ch++) {
        double s = 0.0, ss = 0.0;
        for (int n = 0; n < c->N; n++)
            for (int64_t i = 0; i < HW; i++) s += c->x[(n * c->C + ch) * HW + i];
        double m = s / cnt;
        for (int n = 0; n < c->N; n++)
            for (int64_t i = 0; i < HW; i++) {
                double d = c->x[(n * c->C + ch) * HW + i] - m;
                ss += d * d;
            }
        double v = ss / cnt;
        if (mean) mean[ch] = m;
        if (var) var[ch] = v;
        for (int n = 0; n < c->N; n++)
            for (int64_t i = 0; i < HW; i++) {
                int64_t k = (n * c->C + ch) * HW + i;
                c->y[k] = (c->x[k] - m) / sqrt(v + c->eps) * c->w[ch] + c->b[ch];
            }
    }
}

static double bn_loss(const double *unused, void *ctx)
{
    (void)unused;
    bn_ctx *c = ctx;
    bn_ref(c, NULL, NULL);
    double l = 0.0;
    for (int64_t i = 0; i < (int64_t)c->N * c->C * c->H * c->W; i++) l += c->y[i] * c->r[i];
    return l;
}

static void bn_case(int N, int C, int H, int W, dq_rng *rng)
{
    const int64_t nx = (int64_t)N * C * H * W;
    float *x = s_calloc(nx, 4), *y = s_calloc(nx, 4), *r = s_calloc(nx, 4), *gx = s_calloc(nx, 4);
    float *w = s_calloc(C, 4), *b = s_calloc(C, 4), *rm = s_calloc(C, 4), *rv = s_calloc(C, 4);
    float *gw = s_calloc(C, 4), *gb = s_calloc(C, 4), *sm = s_calloc(C, 4), *si = s_calloc(C, 4);
    double *xd = s_calloc(nx, 8), *yd = s_calloc(nx, 8), *rd = s_calloc(nx, 8);
    double *wd = s_calloc(C, 8), *bd = s_calloc(C, 8), *md = s_calloc(C, 8), *vd = s_calloc(C, 8);
    double *want = s_calloc(nx, 8), *num = s_calloc(nx, 8);
    /* an offset and scale per channel, so mean and variance matter */
    for (int64_t i = 0; i < nx; i++) {
        int ch = (int)((i / ((int64_t)H * W)) % C);
        x[i] = dq_rng_range(rng, -1, 1) * (0.5f + (float)ch) + 0.3f * (float)ch;
        xd[i] = x[i];
    }
    dq_test_fill(w, wd, C, rng, 0.5f, 1.5f);
    dq_test_fill(b, bd, C, rng, -1, 1);
    dq_test_fill(rm, NULL, C, rng, -1, 1);
    dq_test_fill(rv, NULL, C, rng, 0.5f, 2);
    dq_test_fill(r, rd, nx, rng, -1, 1);
    dq_test_fill(gx, NULL, nx, rng, -1, 1);
    dq_test_fill(gw, NULL, C, rng, -1, 1);
    dq_test_fill(gb, NULL, C, rng, -1, 1);
    bn_ctx c = {N, C, H, W, 1e-5, xd, wd, bd, rd, yd};
    int64_t cs[1] = {C};
    dq_tensor tx = dq_tensor_view4(x, N, C, H, W), ty = dq_tensor_view4(y, N, C, H, W);
    dq_tensor tw = dq_tensor_view(w, 1, cs), tb = dq_tensor_view(b, 1, cs);
    dq_tensor trm = dq_tensor_view(rm, 1, cs), trv = dq_tensor_view(rv, 1, cs);
    dq_err err = {{0}};
    char what[80];
    snprintf(what, sizeof what, "batchnorm %dx%dx%dx%d", N, C, H, W);

    /* train forward, saved statistics and running-stat update */
    double rm0[8], rv0[8];
    assert_true(C <= 8);
    for (int i = 0; i < C; i++) rm0[i] = rm[i], rv0[i] = rv[i];
    assert_int_equal(dq_batchnorm2d_forward(&ty, sm, si, &trm, &trv, &tx, &tw, &tb, 1e-5f, 0.1f,
                                            true, &err),
                     DQ_OK);
    bn_ref(&c, md, vd);
    dq_test_assert_close(y, yd, nx, 1e-5, 1e-5, what);
    const double cnt = (double)N * H * W;
    double want_c[8];
    for (int i = 0; i < C; i++) want_c[i] = md[i];
    dq_test_assert_close(sm, want_c, C, 1e-6, 1e-6, "save_mean");
    for (int i = 0; i < C; i++) want_c[i] = 1.0 / sqrt(vd[i] + 1e-5);
    dq_test_assert_close(si, want_c, C, 1e-6, 1e-6, "save_invstd");
    for (int i = 0; i < C; i++) want_c[i] = 0.9 * rm0[i] + 0.1 * md[i];
    dq_test_assert_close(rm, want_c, C, 1e-6, 1e-6, "running_mean");
    for (int i = 0; i < C; i++) want_c[i] = 0.9 * rv0[i] + 0.1 * vd[i] * cnt / (cnt - 1);
    dq_test_assert_close(rv, want_c, C, 1e-6, 1e-6, "running_var");

    /* backward against finite differences (input, weight, bias) */
    double wantw[8], wantb[8], numc[8];
    dq_test_numgrad(num, xd, nx, bn_loss, &c, 1e-4);
    for (int64_t i = 0; i < nx; i++) want[i] = gx[i] + num[i];
    dq_test_numgrad(numc, wd, C, bn_loss, &c, 1e-4);
    for (int i = 0; i < C; i++) wantw[i] = gw[i] + numc[i];
    dq_test_numgrad(numc, bd, C, bn_loss, &c, 1e-4);
    for (int i = 0; i < C; i++) wantb[i] = gb[i] + numc[i];
    dq_tensor tgx = dq_tensor_view4(gx, N, C, H, W), tr = dq_tensor_view4(r, N, C, H, W);
    dq_tensor tgw = dq_tensor_view(gw, 1, cs), tgb = dq_tensor_view(gb, 1, cs);
    assert_int_equal(dq_batchnorm2d_backward(&tgx, &tgw, &tgb, &tr, &tx, &tw, sm, si, &err),
                     DQ_OK);
    dq_test_assert_close(gx, want, nx, 1e-4, 1e-4, "batchnorm dinput");
    dq_test_assert_close(gw, wantw, C, 1e-4, 1e-4, "batchnorm dweight");
    dq_test_assert_close(gb, wantb, C, 1e-4, 1e-4, "batchnorm dbias");

    /* eval with the (updated) running stats, in place */
    memcpy(y, x, (size_t)nx * 4);
    assert_int_equal(dq_batchnorm2d_forward(&ty, NULL, NULL, &trm, &trv, &ty, &tw, &tb, 1e-5f,
                                            0.1f, false, &err),
                     DQ_OK);
    for (int64_t i = 0; i < nx; i++) {
        int ch = (int)((i / ((int64_t)H * W)) % C);
        want[i] = (xd[i] - rm[ch]) / sqrt((double)rv[ch] + 1e-5) * w[ch] + b[ch];
    }
    dq_test_assert_close(y, want, nx, 1e-5, 1e-5, "batchnorm eval");
    free(x), free(y), free(r), free(gx), free(w), free(b), free(rm), free(rv), free(gw);
    free(gb), free(sm), free(si), free(xd), free(yd), free(rd), free(wd), free(bd), free(md);
    free(vd), free(want), free(num);
}

static void test_batchnorm_against_reference(void **state)
{
    (void)state;
    dq_rng rng;
    dq_rng_seed(&rng, 11);
    bn_case(3, 5, 7, 5, &rng); /* odd everything */
    bn_case(1, 3, 3, 3, &rng); /* N = 1: statistics over one image */
    bn_case(4, 2, 1, 1, &rng); /* 1x1 planes: statistics over the batch */
    bn_case(2, 1, 6, 9, &rng); /* one channel, plane length not a multiple of 8 */
}

/* C = 1, x = {1, 2, 3, 4} as [2,1,1,2]: mean 2.5, biased var 1.25, unbiased
 * 5/3; from running (0, 1), momentum 0.1: (0.25, 0.9 + 1/6). */
static void test_batchnorm_hand_computed(void **state)
{
    (void)state;
    float x[4] = {1, 2, 3, 4}, y[4], w[1] = {2}, b[1] = {0.5f}, rm[1] = {0}, rv[1] = {1};
    float sm[1], si[1];
    int64_t one[1] = {1};
    dq_tensor tx = dq_tensor_view4(x, 2, 1, 1, 2), ty = dq_tensor_view4(y, 2, 1, 1, 2);
    dq_tensor tw = dq_tensor_view(w, 1, one), tb = dq_tensor_view(b, 1, one);
    dq_tensor trm = dq_tensor_view(rm, 1, one), trv = dq_tensor_view(rv, 1, one);
    dq_err err = {{0}};
    assert_int_equal(dq_batchnorm2d_forward(&ty, sm, si, &trm, &trv, &tx, &tw, &tb, 1e-5f, 0.1f,
                                            true, &err),
                     DQ_OK);
    assert_float_equal(sm[0], 2.5f, 0);
    assert_float_equal(si[0], 1.0 / sqrt(1.25 + 1e-5), 1e-6);
    assert_float_equal(rm[0], 0.25f, 1e-7);
    assert_float_equal(rv[0], 0.9 + 0.1 * 5.0 / 3.0, 1e-6);
    for (int i = 0; i < 4; i++)
        assert_float_equal(y[i], (x[i] - 2.5) / sqrt(1.25 + 1e-5) * 2 + 0.5, 1e-5);
    /* momentum 1: the running stats become the batch's (var unbiased) */
    float rm1[1] = {7}, rv1[1] = {7};
    dq_tensor t1m = dq_tensor_view(rm1, 1, one), t1v = dq_tensor_view(rv1, 1, one);
    assert_int_equal(dq_batchnorm2d_forward(&ty, sm, si, &t1m, &t1v, &tx, &tw, &tb, 1e-5f, 1.0f,
                                            true, &err),
                     DQ_OK);
    assert_float_equal(rm1[0], 2.5f, 0);
    assert_float_equal(rv1[0], 5.0 / 3.0, 1e-6);
    /* eval: (x - 0.25)/sqrt(rv + eps)*2 + 0.5 with the stats of the first step */
    assert_int_equal(dq_batchnorm2d_forward(&ty, NULL, NULL, &trm, &trv, &tx, &tw, &tb, 1e-5f,
                                            0.1f, false, &err),
                     DQ_OK);
    for (int i = 0; i < 4; i++)
        assert_float_equal(y[i], (x[i] - 0.25) / sqrt(0.9 + 1.0 / 6.0 + 1e-5) * 2 + 0.5, 1e-5);
    /* running stats not tracked: NULL is allowed in training */
    assert_int_equal(dq_batchnorm2d_forward(&ty, sm, si, NULL, NULL, &tx, &tw, &tb, 1e-5f, 0.1f,
                                            true, &err),
                     DQ_OK);
    assert_float_equal(y[0], (1 - 2.5) / sqrt(1.25 + 1e-5) * 2 + 0.5, 1e-5);
}

static void test_batchnorm_errors(void **state)
{
    (void)state;
    float x[6] = {0}, y[6], w[3] = {1, 1, 1}, b[3] = {0}, rm[3] = {0}, rv[3] = {1, 1, 1};
    float sm[3], si[3];
    int64_t c3[1] = {3}, c2[1] = {2};
    dq_tensor tx = dq_tensor_view4(x, 1, 3, 1, 2), ty = dq_tensor_view4(y, 1, 3, 1, 2);
    dq_tensor tw = dq_tensor_view(w, 1, c3), tb = dq_tensor_view(b, 1, c3);
    dq_tensor trm = dq_tensor_view(rm, 1, c3), trv = dq_tensor_view(rv, 1, c3);
    dq_tensor bad = dq_tensor_view(w, 1, c2);
    dq_err err = {{0}};
    assert_int_equal(dq_batchnorm2d_forward(&ty, sm, si, &trm, &trv, &tx, &bad, &tb, 1e-5f, 0.1f,
                                            true, &err),
                     DQ_ERR_SHAPE);
    assert_string_equal(err.msg, "batchnorm2d: weight has shape [2], expected [3]");
    assert_int_equal(dq_batchnorm2d_forward(&ty, sm, si, &trm, &bad, &tx, &tw, &tb, 1e-5f, 0.1f,
                                            true, &err),
                     DQ_ERR_SHAPE);
    assert_non_null(strstr(err.msg, "running variance"));
    assert_int_equal(dq_batchnorm2d_forward(&ty, sm, si, NULL, NULL, &tx, &tw, &tb, 1e-5f, 0.1f,
                                            false, &err),
                     DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "eval mode needs the running statistics"));
    assert_int_equal(dq_batchnorm2d_forward(&ty, NULL, si, &trm, &trv, &tx, &tw, &tb, 1e-5f,
                                            0.1f, true, &err),
                     DQ_ERR_ARG);
    assert_int_equal(dq_batchnorm2d_forward(&ty, sm, si, &trm, &trv, &tx, &tw, &tb, 0.0f, 0.1f,
                                            true, &err),
                     DQ_ERR_ARG);
    /* one value per channel cannot be normalised in training (PyTorch refuses too) */
    dq_tensor x1 = dq_tensor_view4(x, 1, 3, 1, 1), y1 = dq_tensor_view4(y, 1, 3, 1, 1);
    assert_int_equal(dq_batchnorm2d_forward(&y1, sm, si, &trm, &trv, &x1, &tw, &tb, 1e-5f, 0.1f,
                                            true, &err),
                     DQ_ERR_SHAPE);
    assert_non_null(strstr(err.msg, "more than 1 value per channel"));
    assert_true(rm[0] == 0.0f && rv[0] == 1.0f); /* untouched */
    /* ... but eval is fine with one */
    assert_int_equal(dq_batchnorm2d_forward(&y1, NULL, NULL, &trm, &trv, &x1, &tw, &tb, 1e-5f,
                                            0.1f, false, &err),
                     DQ_OK);
    float gx[6];
    dq_tensor tgx = dq_tensor_view4(gx, 1, 3, 2, 1);
    assert_int_equal(dq_batchnorm2d_backward(&tgx, NULL, NULL, &ty, &tx, &tw, sm, si, &err),
                     DQ_ERR_SHAPE);
    assert_non_null(strstr(err.msg, "batchnorm2d backward: input gradient"));
    assert_int_equal(dq_batchnorm2d_backward(NULL, NULL, NULL, &ty, &tx, &tw, NULL, si, &err),
                     DQ_ERR_ARG);
}

/* conv -> eval batch norm equals the folded conv (within 1e-5). */
static void test_batchnorm_fold(void **state)
{
    (void)state;
    enum { N = 2, C = 3, H = 6, W = 5, OC = 4, K = 3 };
    dq_rng rng;
    dq_rng_seed(&rng, 17);
    float x[N * C * H * W], w[OC * C * K * K], cb[OC], y[N * OC * H * W], yf[N * OC * H * W];
    float bw[OC], bb[OC], rm[OC], rv[OC];
    dq_test_fill(x, NULL, N * C * H * W, &rng, -1, 1);
    dq_test_fill(w, NULL, OC * C * K * K, &rng, -1, 1);
    dq_test_fill(cb, NULL, OC, &rng, -1, 1);
    dq_test_fill(bw, NULL, OC, &rng, 0.5f, 2);
    dq_test_fill(bb, NULL, OC, &rng, -1, 1);
    dq_test_fill(rm, NULL, OC, &rng, -1, 1);
    dq_test_fill(rv, NULL, OC, &rng, 0.1f, 3);
    int64_t os[1] = {OC};
    dq_tensor tx = dq_tensor_view4(x, N, C, H, W), tw = dq_tensor_view4(w, OC, C, K, K);
    dq_tensor tcb = dq_tensor_view(cb, 1, os), ty = dq_tensor_view4(y, N, OC, H, W);
    dq_tensor tbw = dq_tensor_view(bw, 1, os), tbb = dq_tensor_view(bb, 1, os);
    dq_tensor trm = dq_tensor_view(rm, 1, os), trv = dq_tensor_view(rv, 1, os);
    dq_conv2d_params p = {1, 1, 1};
    int64_t wsn = dq_conv2d_workspace(N, C, H, W, K, K, p);
    float *ws = s_calloc(wsn, 4);
    dq_err err = {{0}};
    for (int with_bias = 0; with_bias < 2; with_bias++) {
        assert_int_equal(dq_conv2d_forward(&ty, &tx, &tw, with_bias ? &tcb : NULL, p, ws, wsn,
                                           &err),
                         DQ_OK);
        assert_int_equal(dq_batchnorm2d_forward(&ty, NULL, NULL, &trm, &trv, &ty, &tbw, &tbb,
                                                1e-5f, 0.1f, false, &err),
                         DQ_OK);
        float fw[OC * C * K * K], fb[OC];
        memcpy(fw, w, sizeof fw);
        for (int o = 0; o < OC; o++) fb[o] = with_bias ? cb[o] : 0.0f;
        dq_batchnorm2d_fold(fw, fb, OC, C * K * K, bw, bb, rm, rv, 1e-5f);
        dq_tensor tfw = dq_tensor_view4(fw, OC, C, K, K), tfb = dq_tensor_view(fb, 1, os);
        dq_tensor tyf = dq_tensor_view4(yf, N, OC, H, W);
        assert_int_equal(dq_conv2d_forward(&tyf, &tx, &tfw, &tfb, p, ws, wsn, &err), DQ_OK);
        double want[N * OC * H * W];
        for (int i = 0; i < N * OC * H * W; i++) want[i] = y[i];
        dq_test_assert_close(yf, want, N * OC * H * W, 1e-5, 1e-5, "folded conv");
        /* hand check of one channel's fold */
        double s = bw[1] / sqrt((double)rv[1] + 1e-5);
        assert_float_equal(fw[1 * C * K * K + 4], w[1 * C * K * K + 4] * s, 1e-6);
        assert_float_equal(fb[1], ((with_bias ? cb[1] : 0.0) - rm[1]) * s + bb[1], 1e-6);
    }
    free(ws);

    /* a depthwise conv (groups = C = OC, weight [OC, 1, K, K]): per_oc = K*K */
    float dwt[OC * K * K], dwf[OC * K * K], db0[OC], xs[N * OC * H * W];
    dq_test_fill(dwt, NULL, OC * K * K, &rng, -1, 1);
    dq_test_fill(xs, NULL, N * OC * H * W, &rng, -1, 1);
    dq_conv2d_params pd = {.stride = 1, .padding = 1, .max_group = 1, .groups = OC};
    int64_t wsd = dq_conv2d_workspace(N, OC, H, W, K, K, pd);
    float *wsdp = s_calloc(wsd, 4);
    dq_tensor txs = dq_tensor_view4(xs, N, OC, H, W), tdwt = dq_tensor_view4(dwt, OC, 1, K, K);
    assert_int_equal(dq_conv2d_forward(&ty, &txs, &tdwt, NULL, pd, wsdp, wsd, &err), DQ_OK);
    assert_int_equal(dq_batchnorm2d_forward(&ty, NULL, NULL, &trm, &trv, &ty, &tbw, &tbb, 1e-5f,
                                            0.1f, false, &err),
                     DQ_OK);
    memcpy(dwf, dwt, sizeof dwf);
    memset(db0, 0, sizeof db0);
    dq_batchnorm2d_fold(dwf, db0, OC, K * K, bw, bb, rm, rv, 1e-5f);
    dq_tensor tdwf = dq_tensor_view4(dwf, OC, 1, K, K), tdb0 = dq_tensor_view(db0, 1, os);
    dq_tensor tyf = dq_tensor_view4(yf, N, OC, H, W);
    assert_int_equal(dq_conv2d_forward(&tyf, &txs, &tdwf, &tdb0, pd, wsdp, wsd, &err), DQ_OK);
    double want[N * OC * H * W];
    for (int i = 0; i < N * OC * H * W; i++) want[i] = y[i];
    dq_test_assert_close(yf, want, N * OC * H * W, 1e-5, 1e-5, "folded depthwise conv");
    free(wsdp);
}

/* ---- add --------------------------------------------------------------------------- */

static void test_add(void **state)
{
    (void)state;
    float a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {0.5f, -2, 10, 0, -5, 1e-3f}, y[6];
    dq_tensor ta = dq_tensor_view4(a, 1, 2, 1, 3), tb = dq_tensor_view4(b, 1, 2, 1, 3);
    dq_tensor ty = dq_tensor_view4(y, 1, 2, 1, 3);
    dq_err err = {{0}};
    assert_int_equal(dq_add_forward(&ty, &ta, &tb, &err), DQ_OK);
    for (int i = 0; i < 6; i++) assert_true(y[i] == a[i] + b[i]);
    /* in place on either input */
    float want[6];
    for (int i = 0; i < 6; i++) want[i] = a[i] + b[i];
    assert_int_equal(dq_add_forward(&ta, &ta, &tb, &err), DQ_OK);
    assert_memory_equal(a, want, sizeof want);
    for (int i = 0; i < 6; i++) a[i] = (float)(i + 1);
    assert_int_equal(dq_add_forward(&tb, &ta, &tb, &err), DQ_OK);
    assert_memory_equal(b, want, sizeof want);
    /* a longer run (vector body + tail), in [N,C,H,W] of odd sizes */
    enum { L = 3 * 5 * 7 };
    float x1[L], x2[L], x3[L], g[L], dy[L];
    dq_rng rng;
    dq_rng_seed(&rng, 1);
    dq_test_fill(x1, NULL, L, &rng, -1, 1);
    dq_test_fill(x2, NULL, L, &rng, -1, 1);
    dq_test_fill(g, NULL, L, &rng, -1, 1);
    dq_test_fill(dy, NULL, L, &rng, -1, 1);
    dq_tensor t1 = dq_tensor_view4(x1, 3, 5, 7, 1), t2 = dq_tensor_view4(x2, 3, 5, 7, 1);
    dq_tensor t3 = dq_tensor_view4(x3, 3, 5, 7, 1);
    assert_int_equal(dq_add_forward(&t3, &t1, &t2, &err), DQ_OK);
    for (int i = 0; i < L; i++) assert_true(x3[i] == x1[i] + x2[i]);
    /* backward: din += dout, once per input; NULL skips */
    float g0[L];
    memcpy(g0, g, sizeof g);
    dq_tensor tg = dq_tensor_view4(g, 3, 5, 7, 1), tdy = dq_tensor_view4(dy, 3, 5, 7, 1);
    assert_int_equal(dq_add_backward(&tg, &tdy, &err), DQ_OK);
    assert_int_equal(dq_add_backward(&tg, &tdy, &err), DQ_OK);
    for (int i = 0; i < L; i++) assert_true(g[i] == (g0[i] + dy[i]) + dy[i]);
    assert_int_equal(dq_add_backward(NULL, &tdy, &err), DQ_OK);
    /* shapes must match */
    dq_tensor bad = dq_tensor_view4(x2, 3, 5, 1, 7);
    assert_int_equal(dq_add_forward(&t3, &t1, &bad, &err), DQ_ERR_SHAPE);
    assert_string_equal(err.msg, "add: second input has shape [3, 5, 1, 7], expected "
                                 "[3, 5, 7, 1]");
    assert_int_equal(dq_add_backward(&bad, &tdy, &err), DQ_ERR_SHAPE);
    assert_non_null(strstr(err.msg, "add backward: input gradient"));
}

/* ---- global average pooling ---------------------------------------------------------- */

static void test_global_avgpool(void **state)
{
    (void)state;
    /* hand: plane 1..6 -> 3.5; plane of one element -> itself */
    float x[12] = {1, 2, 3, 4, 5, 6, -1, -2, -3, -4, -5, -6}, y[2];
    dq_tensor tx = dq_tensor_view4(x, 1, 2, 2, 3), ty = dq_tensor_view4(y, 1, 2, 1, 1);
    dq_err err = {{0}};
    assert_int_equal(dq_global_avgpool_forward(&ty, &tx, &err), DQ_OK);
    assert_true(y[0] == 3.5f && y[1] == -3.5f);
    float dy[2] = {6, 12}, dx[12] = {0};
    dq_tensor tdy = dq_tensor_view4(dy, 1, 2, 1, 1), tdx = dq_tensor_view4(dx, 1, 2, 2, 3);
    for (int rep = 1; rep <= 2; rep++) {
        assert_int_equal(dq_global_avgpool_backward(&tdx, &tdy, &err), DQ_OK);
        for (int i = 0; i < 12; i++) assert_float_equal(dx[i], rep * (i < 6 ? 1 : 2), 1e-6);
    }
    /* odd sizes against a double reference; backward is linear: exact */
    enum { N = 3, C = 5, H = 7, W = 3 };
    float xs[N * C * H * W], ys[N * C], g[N * C * H * W], r[N * C];
    double want[N * C * H * W];
    dq_rng rng;
    dq_rng_seed(&rng, 2);
    dq_test_fill(xs, NULL, N * C * H * W, &rng, -1, 1);
    dq_test_fill(g, NULL, N * C * H * W, &rng, -1, 1);
    dq_test_fill(r, NULL, N * C, &rng, -1, 1);
    dq_tensor txs = dq_tensor_view4(xs, N, C, H, W), tys = dq_tensor_view4(ys, N, C, 1, 1);
    assert_int_equal(dq_global_avgpool_forward(&tys, &txs, &err), DQ_OK);
    for (int pl = 0; pl < N * C; pl++) {
        double s = 0.0;
        for (int i = 0; i < H * W; i++) s += xs[pl * H * W + i];
        want[pl] = s / (H * W);
    }
    dq_test_assert_close(ys, want, N * C, 1e-6, 1e-6, "global avgpool");
    for (int i = 0; i < N * C * H * W; i++) want[i] = g[i] + r[i / (H * W)] / (double)(H * W);
    dq_tensor tg = dq_tensor_view4(g, N, C, H, W), tr = dq_tensor_view4(r, N, C, 1, 1);
    assert_int_equal(dq_global_avgpool_backward(&tg, &tr, &err), DQ_OK);
    dq_test_assert_close(g, want, N * C * H * W, 1e-6, 1e-6, "global avgpool backward");
    /* batch-invariant: sample 2 alone gives the same bits */
    float y1[C];
    dq_tensor tx1 = dq_tensor_view4(xs + 2 * C * H * W, 1, C, H, W);
    dq_tensor ty1 = dq_tensor_view4(y1, 1, C, 1, 1);
    assert_int_equal(dq_global_avgpool_forward(&ty1, &tx1, &err), DQ_OK);
    assert_memory_equal(y1, ys + 2 * C, sizeof y1);
    /* errors */
    dq_tensor bad = dq_tensor_view4(y, 1, 2, 1, 2);
    assert_int_equal(dq_global_avgpool_forward(&bad, &tx, &err), DQ_ERR_SHAPE);
    assert_string_equal(err.msg, "global_avgpool: output has shape [1, 2, 1, 2], expected "
                                 "[1, 2, 1, 1]");
}

/* ---- avgpool2d ------------------------------------------------------------------------ */

typedef struct {
    int N, C, H, W, k, s, p;
    bool inc;
    int64_t OH, OW;
    const double *x, *r;
    double *y;
} av_ctx;

static void av_ref(const av_ctx *c)
{
    for (int pl = 0; pl < c->N * c->C; pl++)
        for (int64_t oh = 0; oh < c->OH; oh++)
            for (int64_t ow = 0; ow < c->OW; ow++) {
                double s = 0.0;
                int cnt = 0;
                for (int kh = 0; kh < c->k; kh++)
                    for (int kw = 0; kw < c->k; kw++) {
                        int64_t ih = oh * c->s - c->p + kh, iw = ow * c->s - c->p + kw;
                        if (ih < 0 || ih >= c->H || iw < 0 || iw >= c->W) continue;
                        s += c->x[(pl * c->H + ih) * c->W + iw];
                        cnt++;
                    }
                c->y[(pl * c->OH + oh) * c->OW + ow] = s / (c->inc ? c->k * c->k : cnt);
            }
}

static double av_loss(const double *unused, void *ctx)
{
    (void)unused;
    av_ctx *c = ctx;
    av_ref(c);
    double l = 0.0;
    for (int64_t i = 0; i < c->N * c->C * c->OH * c->OW; i++) l += c->y[i] * c->r[i];
    return l;
}

static void av_case(int N, int C, int H, int W, int k, int s, int p, bool inc, dq_rng *rng)
{
    const int64_t OH = dq_avgpool2d_out_size(H, k, s, p), OW = dq_avgpool2d_out_size(W, k, s, p);
    assert_true(OH > 0 && OW > 0);
    const int64_t nx = (int64_t)N * C * H * W, ny = N * C * OH * OW;
    float *x = s_calloc(nx, 4), *y = s_calloc(ny, 4), *r = s_calloc(ny, 4), *gx = s_calloc(nx, 4);
    double *xd = s_calloc(nx, 8), *yd = s_calloc(ny, 8), *rd = s_calloc(ny, 8);
    double *num = s_calloc(nx, 8);
    dq_test_fill(x, xd, nx, rng, -1, 1);
    dq_test_fill(r, rd, ny, rng, -1, 1);
    dq_test_fill(gx, NULL, nx, rng, -1, 1);
    av_ctx c = {N, C, H, W, k, s, p, inc, OH, OW, xd, rd, yd};
    dq_tensor tx = dq_tensor_view4(x, N, C, H, W), ty = dq_tensor_view4(y, N, C, OH, OW);
    dq_err err = {{0}};
    char what[80];
    snprintf(what, sizeof what, "avgpool2d %dx%dx%dx%d k%d s%d p%d inc%d", N, C, H, W, k, s, p,
             (int)inc);
    for (int64_t i = 0; i < ny; i++) y[i] = NAN;
    assert_int_equal(dq_avgpool2d_forward(&ty, &tx, k, s, p, inc, &err), DQ_OK);
    av_ref(&c);
    dq_test_assert_close(y, yd, ny, 1e-6, 1e-6, what);
    dq_test_numgrad(num, xd, nx, av_loss, &c, 1e-3);
    for (int64_t i = 0; i < nx; i++) num[i] += gx[i];
    dq_tensor tgx = dq_tensor_view4(gx, N, C, H, W), tr = dq_tensor_view4(r, N, C, OH, OW);
    assert_int_equal(dq_avgpool2d_backward(&tgx, &tr, k, s, p, inc, &err), DQ_OK);
    dq_test_assert_close(gx, num, nx, 1e-5, 1e-5, what);
    free(x), free(y), free(r), free(gx), free(xd), free(yd), free(rd), free(num);
}

static void test_avgpool2d_against_reference(void **state)
{
    (void)state;
    dq_rng rng;
    dq_rng_seed(&rng, 6);
    for (int inc = 0; inc < 2; inc++) {
        av_case(2, 3, 7, 6, 3, 2, 1, inc, &rng); /* padded, kernel does not divide */
        av_case(1, 1, 5, 5, 2, 2, 0, inc, &rng); /* odd: last row/col dropped */
        av_case(2, 2, 4, 7, 3, 1, 1, inc, &rng); /* stride 1, overlapping */
        av_case(1, 3, 6, 6, 5, 3, 2, inc, &rng); /* large padding */
        av_case(3, 1, 3, 3, 3, 3, 0, inc, &rng); /* global-sized window */
        av_case(1, 2, 9, 8, 2, 3, 1, inc, &rng); /* stride > kernel */
    }
}

static void test_avgpool2d_hand_and_errors(void **state)
{
    (void)state;
    /* 3x3 input 1..9, kernel 2 stride 2 pad 1 -> 2x2 windows:
     * {1}, {2,3}, {4,7}, {5,6,8,9} */
    float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, y[4];
    dq_tensor tx = dq_tensor_view4(x, 1, 1, 3, 3), ty = dq_tensor_view4(y, 1, 1, 2, 2);
    dq_err err = {{0}};
    assert_int_equal(dq_avgpool2d_forward(&ty, &tx, 2, 2, 1, true, &err), DQ_OK);
    const float inc[4] = {0.25f, 1.25f, 2.75f, 7.0f};
    for (int i = 0; i < 4; i++) assert_float_equal(y[i], inc[i], 1e-6);
    assert_int_equal(dq_avgpool2d_forward(&ty, &tx, 2, 2, 1, false, &err), DQ_OK);
    const float exc[4] = {1.0f, 2.5f, 5.5f, 7.0f};
    for (int i = 0; i < 4; i++) assert_float_equal(y[i], exc[i], 1e-6);
    float dy[4] = {4, 4, 4, 4}, dx[9] = {0};
    dq_tensor tdy = dq_tensor_view4(dy, 1, 1, 2, 2), tdx = dq_tensor_view4(dx, 1, 1, 3, 3);
    assert_int_equal(dq_avgpool2d_backward(&tdx, &tdy, 2, 2, 1, false, &err), DQ_OK);
    const float want_dx[9] = {4, 2, 2, 2, 1, 1, 2, 1, 1};
    for (int i = 0; i < 9; i++) assert_float_equal(dx[i], want_dx[i], 1e-6);
    assert_int_equal(dq_avgpool2d_out_size(7, 3, 2, 1), 4);
    assert_int_equal(dq_avgpool2d_out_size(2, 5, 1, 1), 0);
    /* padding beyond kernel/2, shapes */
    assert_int_equal(dq_avgpool2d_forward(&ty, &tx, 2, 2, 2, true, &err), DQ_ERR_ARG);
    assert_string_equal(err.msg, "avgpool2d: padding 2 must be in [0, kernel/2 = 1]");
    dq_tensor bad = dq_tensor_view4(y, 1, 1, 1, 4);
    assert_int_equal(dq_avgpool2d_forward(&bad, &tx, 2, 2, 1, true, &err), DQ_ERR_SHAPE);
    assert_string_equal(err.msg, "avgpool2d: output has shape [1, 1, 1, 4], expected "
                                 "[1, 1, 2, 2]");
    assert_int_equal(dq_avgpool2d_forward(&ty, &tx, 4, 1, 0, true, &err), DQ_ERR_SHAPE);
    assert_non_null(strstr(err.msg, "kernel 4 does not fit input"));
    assert_int_equal(dq_avgpool2d_backward(NULL, &tdy, 2, 2, 1, true, &err), DQ_OK);
}

/* ---- clip / relu6 -------------------------------------------------------------------- */

static void test_clip(void **state)
{
    (void)state;
    float x[9] = {-7, -0.5f, 0, 0.25f, 3, 6, 6.5f, 100, NAN}, y[9];
    dq_tensor tx = dq_tensor_view4(x, 1, 1, 3, 3), ty = dq_tensor_view4(y, 1, 1, 3, 3);
    dq_err err = {{0}};
    assert_int_equal(dq_clip_forward(&ty, &tx, 0.0f, 6.0f, &err), DQ_OK);
    const float want[8] = {0, 0, 0, 0.25f, 3, 6, 6, 6};
    for (int i = 0; i < 8; i++) assert_true(y[i] == want[i]);
    assert_true(isnan(y[8]));
    /* backward from the output: passes strictly inside (0, 6) only */
    float dy[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, dx[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    dq_tensor tdy = dq_tensor_view4(dy, 1, 1, 3, 3), tdx = dq_tensor_view4(dx, 1, 1, 3, 3);
    assert_int_equal(dq_clip_backward(&tdx, &tdy, &ty, 0.0f, 6.0f, &err), DQ_OK);
    const float want_dx[9] = {1, 1, 1, 5, 6, 1, 1, 1, 1};
    for (int i = 0; i < 9; i++) assert_true(dx[i] == want_dx[i]);
    /* general bounds, in place, long run against a reference */
    enum { L = 2 * 3 * 5 * 7 };
    float a[L], a0[L], g[L], r[L];
    double wg[L];
    dq_rng rng;
    dq_rng_seed(&rng, 8);
    dq_test_fill(a, NULL, L, &rng, -3, 3);
    dq_test_fill(g, NULL, L, &rng, -1, 1);
    dq_test_fill(r, NULL, L, &rng, -1, 1);
    memcpy(a0, a, sizeof a);
    dq_tensor ta = dq_tensor_view4(a, 2, 3, 5, 7);
    assert_int_equal(dq_clip_forward(&ta, &ta, -1.0f, 1.5f, &err), DQ_OK);
    for (int i = 0; i < L; i++) {
        float v = a0[i] < -1 ? -1 : a0[i] > 1.5f ? 1.5f : a0[i];
        assert_true(a[i] == v);
        wg[i] = g[i] + (a0[i] > -1 && a0[i] < 1.5f ? r[i] : 0.0);
    }
    dq_tensor tg = dq_tensor_view4(g, 2, 3, 5, 7), tr = dq_tensor_view4(r, 2, 3, 5, 7);
    assert_int_equal(dq_clip_backward(&tg, &tr, &ta, -1.0f, 1.5f, &err), DQ_OK);
    dq_test_assert_close(g, wg, L, 0, 0, "clip backward");
    assert_int_equal(dq_clip_forward(&ty, &tx, 1.0f, 0.0f, &err), DQ_ERR_ARG);
    assert_string_equal(err.msg, "clip: min 1 must not exceed max 0");
    dq_tensor bad = dq_tensor_view4(y, 1, 1, 1, 9);
    assert_int_equal(dq_clip_forward(&bad, &tx, 0.0f, 6.0f, &err), DQ_ERR_SHAPE);
    assert_int_equal(dq_clip_backward(NULL, &tdy, &ty, 0.0f, 6.0f, &err), DQ_OK);
}

/* ---- maxpool2d with padding ------------------------------------------------------------- */

typedef struct {
    int N, C, H, W, k, s, p;
    int64_t OH, OW;
    const double *x, *r;
    double *y;
    int32_t *am;
} mp_ctx;

static void mp_ref(const mp_ctx *c)
{
    for (int pl = 0; pl < c->N * c->C; pl++)
        for (int64_t oh = 0; oh < c->OH; oh++)
            for (int64_t ow = 0; ow < c->OW; ow++) {
                double best = -INFINITY;
                int32_t arg = -1;
                for (int kh = 0; kh < c->k; kh++)
                    for (int kw = 0; kw < c->k; kw++) {
                        int64_t ih = oh * c->s - c->p + kh, iw = ow * c->s - c->p + kw;
                        if (ih < 0 || ih >= c->H || iw < 0 || iw >= c->W) continue;
                        double v = c->x[(pl * c->H + ih) * c->W + iw];
                        if (v > best) best = v, arg = (int32_t)(ih * c->W + iw);
                    }
                c->y[(pl * c->OH + oh) * c->OW + ow] = best;
                c->am[(pl * c->OH + oh) * c->OW + ow] = arg;
            }
}

static double mp_loss(const double *unused, void *ctx)
{
    (void)unused;
    mp_ctx *c = ctx;
    mp_ref(c);
    double l = 0.0;
    for (int64_t i = 0; i < c->N * c->C * c->OH * c->OW; i++) l += c->y[i] * c->r[i];
    return l;
}

static void mp_case(int N, int C, int H, int W, int k, int s, int p, dq_rng *rng)
{
    const int64_t OH = dq_maxpool2d_out_size_pad(H, k, s, p);
    const int64_t OW = dq_maxpool2d_out_size_pad(W, k, s, p);
    assert_true(OH > 0 && OW > 0);
    const int64_t nx = (int64_t)N * C * H * W, ny = N * C * OH * OW;
    float *x = s_calloc(nx, 4), *y = s_calloc(ny, 4), *r = s_calloc(ny, 4), *gx = s_calloc(nx, 4);
    double *xd = s_calloc(nx, 8), *yd = s_calloc(ny, 8), *rd = s_calloc(ny, 8);
    double *num = s_calloc(nx, 8);
    int32_t *am = s_calloc(ny, 4), *am_ref = s_calloc(ny, 4), *perm = s_calloc(nx, 4);
    /* distinct values on a 1/n grid, far apart vs the finite-difference step */
    for (int64_t i = 0; i < nx; i++) perm[i] = (int32_t)i;
    dq_rng_shuffle(rng, perm, nx);
    for (int64_t i = 0; i < nx; i++) {
        x[i] = (float)(perm[i] - nx / 2) / (float)nx;
        xd[i] = x[i];
    }
    dq_test_fill(r, rd, ny, rng, -1, 1);
    dq_test_fill(gx, NULL, nx, rng, -1, 1);
    mp_ctx c = {N, C, H, W, k, s, p, OH, OW, xd, rd, yd, am_ref};
    dq_tensor tx = dq_tensor_view4(x, N, C, H, W), ty = dq_tensor_view4(y, N, C, OH, OW);
    dq_err err = {{0}};
    char what[80];
    snprintf(what, sizeof what, "maxpool %dx%dx%dx%d k%d s%d p%d", N, C, H, W, k, s, p);
    assert_int_equal(dq_maxpool2d_forward_pad(&ty, am, &tx, k, s, p, &err), DQ_OK);
    mp_ref(&c);
    dq_test_assert_close(y, yd, ny, 0, 0, what);
    assert_memory_equal(am, am_ref, (size_t)ny * 4);
    dq_test_numgrad(num, xd, nx, mp_loss, &c, 1e-5);
    for (int64_t i = 0; i < nx; i++) num[i] += gx[i];
    dq_tensor tgx = dq_tensor_view4(gx, N, C, H, W), tr = dq_tensor_view4(r, N, C, OH, OW);
    assert_int_equal(dq_maxpool2d_backward(&tgx, &tr, am, &err), DQ_OK);
    dq_test_assert_close(gx, num, nx, 1e-5, 1e-5, what);
    free(x), free(y), free(r), free(gx), free(xd), free(yd), free(rd), free(num);
    free(am), free(am_ref), free(perm);
}

static void test_maxpool_padding(void **state)
{
    (void)state;
    dq_rng rng;
    dq_rng_seed(&rng, 13);
    mp_case(2, 3, 7, 6, 3, 2, 1, &rng); /* ResNet's stem pool on odd sizes */
    mp_case(1, 1, 14, 14, 3, 2, 1, &rng);
    mp_case(1, 2, 5, 5, 2, 2, 1, &rng); /* 2x2 with padding: not the fast path */
    mp_case(2, 1, 4, 7, 5, 1, 2, &rng); /* k 5, pad 2, stride 1 */
    mp_case(1, 1, 1, 1, 3, 1, 1, &rng); /* 1x1 input, window mostly padding */
    mp_case(3, 2, 6, 5, 3, 3, 1, &rng);
    mp_case(1, 2, 5, 5, 3, 2, 0, &rng); /* padding 0 through the _pad form */
    /* four-wide inner windows, with a last partial group redone overlapped */
    mp_case(2, 2, 9, 13, 3, 1, 1, &rng);
    mp_case(1, 2, 11, 20, 3, 3, 1, &rng);
    mp_case(1, 1, 28, 28, 2, 2, 1, &rng);
    mp_case(1, 1, 6, 30, 4, 2, 2, &rng);

    /* hand: 3x3 1..9 with k 3 s 2 p 1 -> 2x2 windows whose max is the
     * bottom-right valid element: 5, 6, 8, 9; all-negative plane with
     * -inf padding still picks a real element */
    float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, y[4];
    int32_t am[4];
    dq_tensor tx = dq_tensor_view4(x, 1, 1, 3, 3), ty = dq_tensor_view4(y, 1, 1, 2, 2);
    dq_err err = {{0}};
    assert_int_equal(dq_maxpool2d_forward_pad(&ty, am, &tx, 3, 2, 1, &err), DQ_OK);
    const float want[4] = {5, 6, 8, 9};
    const int32_t want_am[4] = {4, 5, 7, 8};
    for (int i = 0; i < 4; i++) assert_true(y[i] == want[i] && am[i] == want_am[i]);
    for (int i = 0; i < 9; i++) x[i] = -(float)(i + 1);
    assert_int_equal(dq_maxpool2d_forward_pad(&ty, am, &tx, 3, 2, 1, &err), DQ_OK);
    const float wneg[4] = {-1, -2, -4, -5};
    const int32_t wneg_am[4] = {0, 1, 3, 4};
    for (int i = 0; i < 4; i++) assert_true(y[i] == wneg[i] && am[i] == wneg_am[i]);
    /* all -inf: the first element of the clipped window, as PyTorch */
    for (int i = 0; i < 9; i++) x[i] = -INFINITY;
    assert_int_equal(dq_maxpool2d_forward_pad(&ty, am, &tx, 3, 2, 1, &err), DQ_OK);
    const int32_t winf_am[4] = {0, 1, 3, 4};
    for (int i = 0; i < 4; i++) assert_true(isinf(y[i]) && am[i] == winf_am[i]);
    /* the same rules on a plane wide enough for the four-at-a-time path
     * (5x9 -> 3x5): all -inf picks each clipped window's first element; a
     * NaN wins and a later NaN in row-major window order replaces it; ties
     * keep the first */
    float xw[5 * 9], yw[3 * 5];
    int32_t amw[3 * 5];
    dq_tensor txw = dq_tensor_view4(xw, 1, 1, 5, 9), tyw = dq_tensor_view4(yw, 1, 1, 3, 5);
    for (int i = 0; i < 45; i++) xw[i] = -INFINITY;
    assert_int_equal(dq_maxpool2d_forward_pad(&tyw, amw, &txw, 3, 2, 1, &err), DQ_OK);
    for (int oh = 0; oh < 3; oh++)
        for (int ow = 0; ow < 5; ow++) {
            int h = oh * 2 - 1 < 0 ? 0 : oh * 2 - 1, w = ow * 2 - 1 < 0 ? 0 : ow * 2 - 1;
            assert_true(isinf(yw[oh * 5 + ow]));
            assert_int_equal(amw[oh * 5 + ow], h * 9 + w);
        }
    for (int i = 0; i < 45; i++) xw[i] = 1.0f; /* ties everywhere */
    xw[2 * 9 + 3] = NAN, xw[3 * 9 + 3] = NAN;   /* rows 2 and 3 of column 3 */
    assert_int_equal(dq_maxpool2d_forward_pad(&tyw, amw, &txw, 3, 2, 1, &err), DQ_OK);
    assert_int_equal(amw[0], 0);
    assert_int_equal(amw[1], 1);             /* window (0,1): rows 0..1, cols 1..3: first tie */
    assert_int_equal(amw[5 + 0], 1 * 9 + 0); /* window (1,0): first tie */
    for (int ow = 1; ow <= 2; ow++)          /* rows 1..3 / 3..4 with column 3: the later NaN */
        for (int oh = 1; oh <= 2; oh++) {
            assert_int_equal(amw[oh * 5 + ow], 3 * 9 + 3);
            assert_true(isnan(yw[oh * 5 + ow]));
        }
    assert_true(yw[5 + 3] == 1.0f);
    assert_int_equal(amw[2 * 5 + 4], 3 * 9 + 7);
    assert_int_equal(dq_maxpool2d_out_size_pad(7, 3, 2, 1), 4);
    assert_int_equal(dq_maxpool2d_out_size_pad(112, 3, 2, 1), 56);
    assert_int_equal(dq_maxpool2d_out_size_pad(28, 2, 2, 0), dq_maxpool2d_out_size(28, 2, 2));
    /* PyTorch's limit: padding at most half the kernel */
    assert_int_equal(dq_maxpool2d_forward_pad(&ty, am, &tx, 3, 2, 2, &err), DQ_ERR_ARG);
    assert_string_equal(err.msg, "maxpool2d: padding 2 must be in [0, kernel/2 = 1]");
    assert_int_equal(dq_maxpool2d_forward_pad(&ty, am, &tx, 3, 2, -1, &err), DQ_ERR_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batchnorm_hand_computed),
        cmocka_unit_test(test_batchnorm_against_reference),
        cmocka_unit_test(test_batchnorm_errors),
        cmocka_unit_test(test_batchnorm_fold),
        cmocka_unit_test(test_add),
        cmocka_unit_test(test_global_avgpool),
        cmocka_unit_test(test_avgpool2d_hand_and_errors),
        cmocka_unit_test(test_avgpool2d_against_reference),
        cmocka_unit_test(test_clip),
        cmocka_unit_test(test_maxpool_padding),
    };
    return cmocka_run_group_tests_name("ops_resnet", tests, NULL, NULL);
}
