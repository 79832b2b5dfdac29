/* test_linear.c - linear forward/backward against a double reference.
 *
 * Forward is compared with a naive double out = in @ w^T + b; gradients with
 * central finite differences of L = sum(out * R) on that reference, starting
 * from non-zero gradients so that accumulation is checked too.
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

typedef struct {
    int N, I, O;
    bool bias;
    const double *x, *w, *b, *r;
    double *y;
} ref_ctx;

static void *s_calloc(int64_t n, size_t size)
{
    void *p = calloc((size_t)(n > 0 ? n : 1), size);
    assert_non_null(p);
    return p;
}

static void ref_forward(const ref_ctx *k)
{
    for (int n = 0; n < k->N; n++)
        for (int o = 0; o < k->O; o++) {
            double s = k->bias ? k->b[o] : 0.0;
            for (int i = 0; i < k->I; i++) s += k->x[n * k->I + i] * k->w[o * k->I + i];
            k->y[n * k->O + o] = s;
        }
}

static double ref_loss(const double *unused, void *ctx)
{
    (void)unused;
    ref_ctx *k = ctx;
    ref_forward(k);
    double l = 0.0;
    for (int i = 0; i < k->N * k->O; i++) l += k->y[i] * k->r[i];
    return l;
}

static void run_case(int N, int I, int O, bool bias, dq_rng *rng)
{
    const int64_t nx = (int64_t)N * I, nw = (int64_t)O * I, ny = (int64_t)N * O;
    float *x = s_calloc(nx, 4), *w = s_calloc(nw, 4), *b = s_calloc(O, 4);
    float *r = s_calloc(ny, 4), *y = s_calloc(ny, 4);
    double *xd = s_calloc(nx, 8), *wd = s_calloc(nw, 8), *bd = s_calloc(O, 8);
    double *rd = s_calloc(ny, 8), *yd = s_calloc(ny, 8);
    dq_test_fill(x, xd, nx, rng, -1, 1);
    dq_test_fill(w, wd, nw, rng, -1, 1);
    dq_test_fill(b, bd, O, rng, -1, 1);
    dq_test_fill(r, rd, ny, rng, -1, 1);
    ref_ctx k = {N, I, O, bias, xd, wd, bd, rd, yd};
    int64_t bs[1] = {O};
    dq_tensor tx = dq_tensor_view2(x, N, I), tw = dq_tensor_view2(w, O, I);
    dq_tensor tb = dq_tensor_view(b, 1, bs), ty = dq_tensor_view2(y, N, O);
    dq_err err = {{0}};
    char what[64];

    for (int64_t i = 0; i < ny; i++) y[i] = NAN;
    assert_int_equal(dq_linear_forward(&ty, &tx, &tw, bias ? &tb : NULL, &err), DQ_OK);
    ref_forward(&k);
    snprintf(what, sizeof what, "linear %dx%d->%d forward", N, I, O);
    dq_test_assert_close(y, yd, ny, 1e-5, 1e-5, what);

    float *gx = s_calloc(nx, 4), *gw = s_calloc(nw, 4), *gb = s_calloc(O, 4);
    dq_test_fill(gx, NULL, nx, rng, -1, 1);
    dq_test_fill(gw, NULL, nw, rng, -1, 1);
    dq_test_fill(gb, NULL, O, rng, -1, 1);
    double *num = s_calloc(nx + nw + O, 8), *want = s_calloc(nx + nw + O, 8);
    dq_test_numgrad(num, xd, nx, ref_loss, &k, 1e-3);
    dq_test_numgrad(num + nx, wd, nw, ref_loss, &k, 1e-3);
    dq_test_numgrad(num + nx + nw, bd, O, ref_loss, &k, 1e-3);
    for (int64_t i = 0; i < nx; i++) want[i] = gx[i] + num[i];
    for (int64_t i = 0; i < nw; i++) want[nx + i] = gw[i] + num[nx + i];
    for (int64_t i = 0; i < O; i++) want[nx + nw + i] = gb[i] + num[nx + nw + i];
    dq_tensor tgx = dq_tensor_view2(gx, N, I), tgw = dq_tensor_view2(gw, O, I);
    dq_tensor tgb = dq_tensor_view(gb, 1, bs), tr = dq_tensor_view2(r, N, O);
    assert_int_equal(dq_linear_backward(&tgx, &tgw, bias ? &tgb : NULL, &tr, &tx, &tw, &err),
                     DQ_OK);
    snprintf(what, sizeof what, "linear %dx%d->%d dinput", N, I, O);
    dq_test_assert_close(gx, want, nx, 1e-4, 1e-4, what);
    snprintf(what, sizeof what, "linear %dx%d->%d dweight", N, I, O);
    dq_test_assert_close(gw, want + nx, nw, 1e-4, 1e-4, what);
    if (bias) {
        snprintf(what, sizeof what, "linear %dx%d->%d dbias", N, I, O);
        dq_test_assert_close(gb, want + nx + nw, O, 1e-4, 1e-4, what);
    }
    free(x), free(w), free(b), free(r), free(y), free(xd), free(wd), free(bd), free(rd);
    free(yd), free(gx), free(gw), free(gb), free(num), free(want);
}

static void test_against_reference(void **state)
{
    (void)state;
    dq_rng rng;
    dq_rng_seed(&rng, 11);
    run_case(1, 1, 1, true, &rng);
    run_case(1, 7, 3, true, &rng);
    run_case(3, 5, 4, false, &rng);
    run_case(5, 37, 11, true, &rng);  /* odd sizes, not multiples of 8 */
    run_case(17, 9, 10, true, &rng);  /* N > I */
    run_case(4, 64, 33, true, &rng);
}

/* out = [[1,2,3],[4,5,6]] @ [[1,0,-1],[2,1,0]]^T + [0.5,-1] */
static void test_hand_computed(void **state)
{
    (void)state;
    float x[6] = {1, 2, 3, 4, 5, 6}, w[6] = {1, 0, -1, 2, 1, 0}, b[2] = {0.5f, -1}, y[4];
    int64_t bs[1] = {2};
    dq_tensor tx = dq_tensor_view2(x, 2, 3), tw = dq_tensor_view2(w, 2, 3);
    dq_tensor tb = dq_tensor_view(b, 1, bs), ty = dq_tensor_view2(y, 2, 2);
    dq_err err = {{0}};
    assert_int_equal(dq_linear_forward(&ty, &tx, &tw, &tb, &err), DQ_OK);
    const float want[4] = {-1.5f, 3.0f, -1.5f, 12.0f};
    for (int i = 0; i < 4; i++) assert_true(y[i] == want[i]);

    /* dout = [[1,0],[0,2]]: dx = dout @ w, dw = dout^T @ x, db = col sums */
    float dy[4] = {1, 0, 0, 2}, dx[6] = {0}, dw[6] = {0}, db[2] = {0};
    dq_tensor tdy = dq_tensor_view2(dy, 2, 2), tdx = dq_tensor_view2(dx, 2, 3);
    dq_tensor tdw = dq_tensor_view2(dw, 2, 3), tdb = dq_tensor_view(db, 1, bs);
    assert_int_equal(dq_linear_backward(&tdx, &tdw, &tdb, &tdy, &tx, &tw, &err), DQ_OK);
    const float want_dx[6] = {1, 0, -1, 4, 2, 0}, want_dw[6] = {1, 2, 3, 8, 10, 12};
    for (int i = 0; i < 6; i++) assert_true(dx[i] == want_dx[i]);
    for (int i = 0; i < 6; i++) assert_true(dw[i] == want_dw[i]);
    assert_true(db[0] == 1.0f && db[1] == 2.0f);
    /* a second call adds again; NULL gradients are skipped */
    assert_int_equal(dq_linear_backward(NULL, &tdw, NULL, &tdy, &tx, &tw, &err), DQ_OK);
    for (int i = 0; i < 6; i++) assert_true(dw[i] == 2 * want_dw[i]);
    for (int i = 0; i < 6; i++) assert_true(dx[i] == want_dx[i]);
    assert_true(db[0] == 1.0f && db[1] == 2.0f);
    assert_int_equal(dq_linear_backward(&tdx, NULL, &tdb, &tdy, &tx, &tw, &err), DQ_OK);
    for (int i = 0; i < 6; i++) assert_true(dx[i] == 2 * want_dx[i]);
    assert_true(db[0] == 2.0f && db[1] == 4.0f);
}

static void test_errors_name_op_and_tensor(void **state)
{
    (void)state;
    float x[12] = {0}, w[12] = {0}, b[4] = {0}, y[12] = {0};
    int64_t b3[1] = {3}, b4[1] = {4};
    dq_tensor tx = dq_tensor_view2(x, 2, 4), tw = dq_tensor_view2(w, 3, 4);
    dq_tensor tb = dq_tensor_view(b, 1, b3), ty = dq_tensor_view2(y, 2, 3);
    dq_err err = {{0}};
    assert_int_equal(dq_linear_forward(&ty, &tx, &tw, &tb, &err), DQ_OK);

    dq_tensor w_bad = dq_tensor_view2(w, 3, 5);
    w_bad.name = "fc.0.weight";
    assert_int_equal(dq_linear_forward(&ty, &tx, &w_bad, &tb, &err), DQ_ERR_SHAPE);
    assert_string_equal(err.msg, "linear: weight fc.0.weight has shape [3, 5], expected [3, 4]");
    dq_tensor y_bad = dq_tensor_view2(y, 2, 4);
    assert_int_equal(dq_linear_forward(&y_bad, &tx, &tw, &tb, &err), DQ_ERR_SHAPE);
    assert_string_equal(err.msg, "linear: output has shape [2, 4], expected [2, 3]");
    dq_tensor b_bad = dq_tensor_view(b, 1, b4);
    assert_int_equal(dq_linear_forward(&ty, &tx, &tw, &b_bad, &err), DQ_ERR_SHAPE);
    assert_string_equal(err.msg, "linear: bias has shape [4], expected [3]");
    dq_tensor x4 = dq_tensor_view4(x, 2, 1, 2, 2);
    assert_int_equal(dq_linear_forward(&ty, &x4, &tw, &tb, &err), DQ_ERR_SHAPE);
    assert_non_null(strstr(err.msg, "linear: input must have 2 dims"));

    assert_int_equal(dq_linear_backward(NULL, NULL, NULL, &y_bad, &tx, &tw, &err), DQ_ERR_SHAPE);
    assert_non_null(strstr(err.msg, "linear backward: output gradient"));
    dq_tensor gx_bad = dq_tensor_view2(x, 4, 2);
    assert_int_equal(dq_linear_backward(&gx_bad, NULL, NULL, &ty, &tx, &tw, &err), DQ_ERR_SHAPE);
    assert_non_null(strstr(err.msg, "linear backward: input gradient"));
    dq_tensor gw_bad = dq_tensor_view2(w, 4, 3);
    assert_int_equal(dq_linear_backward(NULL, &gw_bad, NULL, &ty, &tx, &tw, &err), DQ_ERR_SHAPE);
    assert_non_null(strstr(err.msg, "linear backward: weight gradient"));
    assert_int_equal(dq_linear_backward(NULL, NULL, &b_bad, &ty, &tx, &tw, &err), DQ_ERR_SHAPE);
    assert_non_null(strstr(err.msg, "linear backward: bias gradient"));
    /* an empty batch is valid and touches nothing */
    dq_tensor x0 = dq_tensor_view2(NULL, 0, 4), y0 = dq_tensor_view2(NULL, 0, 3);
    assert_int_equal(dq_linear_forward(&y0, &x0, &tw, &tb, &err), DQ_OK);
    assert_int_equal(dq_linear_backward(&x0, NULL, &tb, &y0, &x0, &tw, &err), DQ_OK);
    assert_int_equal(dq_linear_forward(&ty, NULL, &tw, &tb, &err), DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "linear: input tensor is missing"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_computed),
        cmocka_unit_test(test_against_reference),
        cmocka_unit_test(test_errors_name_op_and_tensor),
    };
    return cmocka_run_group_tests_name("linear", tests, NULL, NULL);
}
