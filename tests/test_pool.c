/* test_pool.c - maxpool2d and avgpool1d forward/backward.
 *
 * Forward outputs (and maxpool's argmax) are compared with naive double
 * references; gradients with central finite differences of
 * L = sum(out * R) on those references. Max pooling is only piecewise
 * linear, so its inputs are distinct values on a 1/n grid (shuffled), far
 * apart compared with the finite-difference step.
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

/* ---- maxpool2d ------------------------------------------------------------- */

typedef struct {
    int N, C, H, W, k, s;
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
                        int64_t i = (oh * c->s + kh) * c->W + ow * c->s + kw;
                        double v = c->x[pl * c->H * c->W + i];
                        if (v > best) {
                            best = v;
                            arg = (int32_t)i;
                        }
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

static void mp_case(int N, int C, int H, int W, int k, int s, dq_rng *rng)
{
    const int64_t OH = dq_maxpool2d_out_size(H, k, s), OW = dq_maxpool2d_out_size(W, k, s);
    const int64_t nx = (int64_t)N * C * H * W, ny = N * C * OH * OW;
    float *x = s_calloc(nx, 4), *y = s_calloc(ny, 4), *r = s_calloc(ny, 4);
    float *gx = s_calloc(nx, 4);
    double *xd = s_calloc(nx, 8), *yd = s_calloc(ny, 8), *rd = s_calloc(ny, 8);
    double *num = s_calloc(nx, 8);
    int32_t *am = s_calloc(ny, 4), *am_ref = s_calloc(ny, 4), *perm = s_calloc(nx, 4);
    for (int64_t i = 0; i < nx; i++) perm[i] = (int32_t)i;
    dq_rng_shuffle(rng, perm, nx);
    for (int64_t i = 0; i < nx; i++) {
        x[i] = (float)(perm[i] - nx / 2) / (float)nx; /* exact in float and double */
        xd[i] = x[i];
    }
    dq_test_fill(r, rd, ny, rng, -1, 1);
    dq_test_fill(gx, NULL, nx, rng, -1, 1);
    mp_ctx c = {N, C, H, W, k, s, OH, OW, xd, rd, yd, am_ref};
    dq_tensor tx = dq_tensor_view4(x, N, C, H, W), ty = dq_tensor_view4(y, N, C, OH, OW);
    dq_err err = {{0}};
    char what[64];
    snprintf(what, sizeof what, "maxpool %dx%dx%dx%d k%d s%d", N, C, H, W, k, s);

    assert_int_equal(dq_maxpool2d_forward(&ty, am, &tx, k, s, &err), DQ_OK);
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

static void test_maxpool_against_reference(void **state)
{
    (void)state;
    dq_rng rng;
    dq_rng_seed(&rng, 3);
    mp_case(2, 3, 4, 4, 2, 2, &rng);
    mp_case(1, 1, 5, 5, 2, 2, &rng); /* odd size: last row/col dropped */
    mp_case(2, 2, 7, 6, 3, 2, &rng); /* overlapping windows accumulate */
    mp_case(1, 2, 5, 7, 3, 3, &rng);
    mp_case(3, 1, 6, 6, 1, 1, &rng); /* identity */
    mp_case(1, 1, 3, 8, 3, 1, &rng); /* window as tall as the input */
    mp_case(2, 1, 9, 9, 2, 3, &rng); /* stride > kernel: gaps */
    mp_case(2, 2, 14, 14, 2, 2, &rng); /* 2x2 fast path: 4-wide blocks + tail of 3 */
    mp_case(1, 1, 28, 29, 2, 2, &rng);
}

/* The 2x2 / stride 2 fast path with ties and NaNs in every lane position:
 * first maximum in row-major order wins; a NaN replaces the running max. */
static void test_maxpool_2x2_ties_and_nan(void **state)
{
    (void)state;
    enum { W = 18, OW = 9 };
    float x[2 * W];
    dq_rng rng;
    dq_rng_seed(&rng, 21);
    for (int i = 0; i < 2 * W; i++) x[i] = (float)(int)dq_rng_below(&rng, 3); /* many ties */
    x[2] = NAN;            /* window 1, top-left */
    x[W + 9] = NAN;        /* window 4, bottom-right */
    x[12] = NAN, x[W + 13] = NAN; /* window 6: two NaNs, the later one wins */
    float y[OW];
    int32_t am[OW];
    dq_tensor tx = dq_tensor_view4(x, 1, 1, 2, W), ty = dq_tensor_view4(y, 1, 1, 1, OW);
    dq_err err = {{0}};
    assert_int_equal(dq_maxpool2d_forward(&ty, am, &tx, 2, 2, &err), DQ_OK);
    for (int ow = 0; ow < OW; ow++) {
        int idx[4] = {2 * ow, 2 * ow + 1, W + 2 * ow, W + 2 * ow + 1};
        float v = x[idx[0]];
        int best = idx[0];
        for (int k = 1; k < 4; k++)
            if (x[idx[k]] > v || isnan(x[idx[k]])) v = x[idx[k]], best = idx[k];
        assert_int_equal(am[ow], best);
        if (isnan(v))
            assert_true(isnan(y[ow]));
        else
            assert_true(y[ow] == v);
    }
    assert_int_equal(am[1], 2);
    assert_int_equal(am[4], W + 9);
    assert_int_equal(am[6], W + 13);
}

/* 4x4 -> 2x2 with known winners, including two ties (first max wins). */
static void test_maxpool_hand_computed(void **state)
{
    (void)state;
    float x[16] = {1, 3, 2, 0, 5, 4, 7, 1, 0, 2, 9, 9, 6, 6, 3, 9}, y[4];
    int32_t am[4];
    dq_tensor tx = dq_tensor_view4(x, 1, 1, 4, 4), ty = dq_tensor_view4(y, 1, 1, 2, 2);
    dq_err err = {{0}};
    assert_int_equal(dq_maxpool2d_forward(&ty, am, &tx, 2, 2, &err), DQ_OK);
    const float want[4] = {5, 7, 6, 9};
    const int32_t want_am[4] = {4, 6, 12, 10};
    for (int i = 0; i < 4; i++) {
        assert_true(y[i] == want[i]);
        assert_int_equal(am[i], want_am[i]);
    }
    float dy[4] = {1, 2, 3, 4}, dx[16] = {0};
    dq_tensor tdy = dq_tensor_view4(dy, 1, 1, 2, 2), tdx = dq_tensor_view4(dx, 1, 1, 4, 4);
    for (int rep = 1; rep <= 2; rep++) { /* adds: the second call doubles */
        assert_int_equal(dq_maxpool2d_backward(&tdx, &tdy, am, &err), DQ_OK);
        for (int i = 0; i < 16; i++) {
            float w = i == 4 ? 1 : i == 6 ? 2 : i == 12 ? 3 : i == 10 ? 4 : 0;
            assert_true(dx[i] == rep * w);
        }
    }
    /* a constant plane: every window picks its top-left element */
    float c[8] = {1, 1, 1, 1, 1, 1, 1, 1}, yc[2];
    dq_tensor tc = dq_tensor_view4(c, 1, 1, 2, 4), tyc = dq_tensor_view4(yc, 1, 1, 1, 2);
    assert_int_equal(dq_maxpool2d_forward(&tyc, am, &tc, 2, 2, &err), DQ_OK);
    assert_int_equal(am[0], 0);
    assert_int_equal(am[1], 2);
    /* NaN propagates, as in PyTorch */
    c[6] = NAN;
    assert_int_equal(dq_maxpool2d_forward(&tyc, am, &tc, 2, 2, &err), DQ_OK);
    assert_true(yc[0] == 1.0f && isnan(yc[1]));
    assert_int_equal(am[1], 6);
    assert_int_equal(dq_maxpool2d_out_size(28, 2, 2), 14);
    assert_int_equal(dq_maxpool2d_out_size(5, 2, 2), 2);
    assert_int_equal(dq_maxpool2d_out_size(7, 3, 2), 3);
    assert_int_equal(dq_maxpool2d_out_size(2, 3, 1), 0);
}

static void test_maxpool_errors(void **state)
{
    (void)state;
    float x[2 * 3 * 4 * 4] = {0}, y[2 * 3 * 2 * 2] = {0};
    int32_t am[24] = {0};
    dq_tensor tx = dq_tensor_view4(x, 2, 3, 4, 4), ty = dq_tensor_view4(y, 2, 3, 2, 2);
    dq_err err = {{0}};
    assert_int_equal(dq_maxpool2d_forward(&ty, am, &tx, 2, 2, &err), DQ_OK);
    dq_tensor y_bad = dq_tensor_view4(y, 2, 3, 2, 1);
    assert_int_equal(dq_maxpool2d_forward(&y_bad, am, &tx, 2, 2, &err), DQ_ERR_SHAPE);
    assert_string_equal(err.msg,
                        "maxpool2d: output has shape [2, 3, 2, 1], expected [2, 3, 2, 2]");
    assert_int_equal(dq_maxpool2d_forward(&ty, am, &tx, 5, 1, &err), DQ_ERR_SHAPE);
    assert_string_equal(err.msg, "maxpool2d: kernel 5 does not fit input [2, 3, 4, 4]");
    assert_int_equal(dq_maxpool2d_forward(&ty, am, &tx, 0, 2, &err), DQ_ERR_ARG);
    assert_int_equal(dq_maxpool2d_forward(&ty, NULL, &tx, 2, 2, &err), DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "argmax"));
    dq_tensor x3 = dq_tensor_view(x, 3, tx.shape);
    assert_int_equal(dq_maxpool2d_forward(&ty, am, &x3, 2, 2, &err), DQ_ERR_SHAPE);
    assert_non_null(strstr(err.msg, "maxpool2d: input must have 4 dims"));

    float gx[96] = {0};
    dq_tensor gx_bad = dq_tensor_view4(gx, 2, 2, 4, 4);
    assert_int_equal(dq_maxpool2d_backward(&gx_bad, &ty, am, &err), DQ_ERR_SHAPE);
    assert_non_null(strstr(err.msg, "maxpool2d backward: input gradient"));
    dq_tensor tgx = dq_tensor_view4(gx, 2, 3, 4, 4);
    am[7] = 16; /* outside a 4x4 plane: must not write out of bounds */
    assert_int_equal(dq_maxpool2d_backward(&tgx, &ty, am, &err), DQ_ERR_ARG);
    assert_string_equal(err.msg, "maxpool2d backward: argmax[7] = 16 is outside the "
                                 "16-element plane");
    assert_int_equal(dq_maxpool2d_backward(NULL, &ty, am, &err), DQ_OK);
}

/* ---- avgpool1d ------------------------------------------------------------- */

typedef struct {
    int N, F, k, OF;
    const double *x, *r;
    double *y;
} ap_ctx;

static void ap_ref(const ap_ctx *c)
{
    for (int n = 0; n < c->N; n++)
        for (int j = 0; j < c->OF; j++) {
            double s = 0.0;
            for (int t = 0; t < c->k; t++) s += c->x[n * c->F + j * c->k + t];
            c->y[n * c->OF + j] = s / c->k;
        }
}

static double ap_loss(const double *unused, void *ctx)
{
    (void)unused;
    ap_ctx *c = ctx;
    ap_ref(c);
    double l = 0.0;
    for (int i = 0; i < c->N * c->OF; i++) l += c->y[i] * c->r[i];
    return l;
}

static void ap_case(int N, int F, int k, dq_rng *rng)
{
    const int OF = F / k;
    float *x = s_calloc(N * F, 4), *y = s_calloc(N * OF, 4), *r = s_calloc(N * OF, 4);
    float *gx = s_calloc(N * F, 4);
    double *xd = s_calloc(N * F, 8), *yd = s_calloc(N * OF, 8), *rd = s_calloc(N * OF, 8);
    double *num = s_calloc(N * F, 8);
    dq_test_fill(x, xd, N * F, rng, -1, 1);
    dq_test_fill(r, rd, N * OF, rng, -1, 1);
    dq_test_fill(gx, NULL, N * F, rng, -1, 1);
    ap_ctx c = {N, F, k, OF, xd, rd, yd};
    dq_tensor tx = dq_tensor_view2(x, N, F), ty = dq_tensor_view2(y, N, OF);
    dq_err err = {{0}};
    char what[64];
    snprintf(what, sizeof what, "avgpool1d %dx%d k%d", N, F, k);
    assert_int_equal(dq_avgpool1d_forward(&ty, &tx, k, &err), DQ_OK);
    ap_ref(&c);
    dq_test_assert_close(y, yd, N * OF, 1e-6, 1e-6, what);
    dq_test_numgrad(num, xd, N * F, ap_loss, &c, 1e-3);
    for (int i = 0; i < N * F; i++) num[i] += gx[i];
    dq_tensor tgx = dq_tensor_view2(gx, N, F), tr = dq_tensor_view2(r, N, OF);
    assert_int_equal(dq_avgpool1d_backward(&tgx, &tr, k, &err), DQ_OK);
    dq_test_assert_close(gx, num, N * F, 1e-5, 1e-5, what);
    free(x), free(y), free(r), free(gx), free(xd), free(yd), free(rd), free(num);
}

static void test_avgpool_against_reference(void **state)
{
    (void)state;
    dq_rng rng;
    dq_rng_seed(&rng, 4);
    ap_case(2, 10, 3, &rng); /* 10 = 3*3 + 1 dropped */
    ap_case(1, 8, 8, &rng);
    ap_case(3, 5, 1, &rng);
    ap_case(2, 9, 2, &rng);
}

static void test_avgpool_hand_and_errors(void **state)
{
    (void)state;
    float x[7] = {1, 2, 3, 4, 5, 6, 7}, y[2], dy[2] = {3, 6}, dx[7] = {0};
    dq_tensor tx = dq_tensor_view2(x, 1, 7), ty = dq_tensor_view2(y, 1, 2);
    dq_tensor tdy = dq_tensor_view2(dy, 1, 2), tdx = dq_tensor_view2(dx, 1, 7);
    dq_err err = {{0}};
    assert_int_equal(dq_avgpool1d_forward(&ty, &tx, 3, &err), DQ_OK);
    assert_true(y[0] == 2.0f && y[1] == 5.0f);
    for (int rep = 1; rep <= 2; rep++) {
        assert_int_equal(dq_avgpool1d_backward(&tdx, &tdy, 3, &err), DQ_OK);
        const float want[7] = {1, 1, 1, 2, 2, 2, 0};
        for (int i = 0; i < 7; i++) assert_true(dx[i] == rep * want[i]);
    }
    dq_tensor y_bad = dq_tensor_view2(y, 1, 3);
    assert_int_equal(dq_avgpool1d_forward(&y_bad, &tx, 3, &err), DQ_ERR_SHAPE);
    assert_string_equal(err.msg, "avgpool1d: output has shape [1, 3], expected [1, 2]");
    assert_int_equal(dq_avgpool1d_forward(&ty, &tx, 0, &err), DQ_ERR_ARG);
    assert_int_equal(dq_avgpool1d_forward(&ty, &tx, 8, &err), DQ_ERR_SHAPE);
    assert_non_null(strstr(err.msg, "avgpool1d: kernel 8 does not fit input"));
    dq_tensor x4 = dq_tensor_view4(x, 1, 1, 1, 7);
    assert_int_equal(dq_avgpool1d_forward(&ty, &x4, 3, &err), DQ_ERR_SHAPE);
    dq_tensor dx_bad = dq_tensor_view2(dx, 2, 3);
    assert_int_equal(dq_avgpool1d_backward(&dx_bad, &tdy, 3, &err), DQ_ERR_SHAPE);
    assert_string_equal(err.msg,
                        "avgpool1d backward: output gradient has shape [1, 2], expected [2, 1]");
    assert_int_equal(dq_avgpool1d_backward(NULL, &tdy, 3, &err), DQ_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_maxpool_hand_computed),
        cmocka_unit_test(test_maxpool_against_reference),
        cmocka_unit_test(test_maxpool_2x2_ties_and_nan),
        cmocka_unit_test(test_maxpool_errors),
        cmocka_unit_test(test_avgpool_hand_and_errors),
        cmocka_unit_test(test_avgpool_against_reference),
    };
    return cmocka_run_group_tests_name("pool", tests, NULL, NULL);
}
