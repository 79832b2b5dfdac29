/* test_ops_torch.c - the new ops against PyTorch itself.
 *
 * The group setup runs tests/ops_ref.py (${PYTHON:-/usr/bin/python3}) into a
 * fresh temp dir: it draws inputs with a fixed torch seed and writes them
 * with PyTorch's outputs and gradients as raw float32 files. Each test reads
 * the inputs, runs our op and compares: a BatchNorm2d training step (output,
 * running statistics, dx/dw/db) and its eval forward, avg_pool2d with
 * padding in both count_include_pad modes, max_pool2d with padding (values,
 * indices, dx), depthwise and grouped conv2d (out, dx, dw, db),
 * adaptive_avg_pool2d to 1x1 and relu6. Without torch the script exits 77
 * and every test is skipped; any other script failure fails the setup.
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
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "gradcheck.h"
#include "tensor/ops.h"
#include "tmpdir.h"

#ifndef DQ_TOP_SRCDIR
#define DQ_TOP_SRCDIR ".."
#endif

static int s_setup(void **state)
{
    if (dq_test_tmpdir_setup(state, "dq_opsref") != 0) return -1;
    const dq_test_tmpdir *t = *state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "\"${PYTHON:-/usr/bin/python3}\" '%s/tests/ops_ref.py' '%s'",
             DQ_TOP_SRCDIR, t->dir);
    int rc = system(cmd);
    if (rc == -1) return -1;
    if (WIFEXITED(rc) && (WEXITSTATUS(rc) == 0 || WEXITSTATUS(rc) == 77 ||
                          WEXITSTATUS(rc) == 127)) /* 77: no torch, 127: no python */
        return 0;
    fprintf(stderr, "ops_ref.py failed (status %d)\n", rc);
    return -1;
}

static int s_teardown(void **state)
{
    return dq_test_tmpdir_teardown(state);
}

/* Skips the test when the reference was not produced (no torch). */
static void s_need_ref(void **state)
{
    const dq_test_tmpdir *t = *state;
    char path[128];
    snprintf(path, sizeof path, "%s/bn_x.f32", t->dir);
    if (access(path, R_OK) != 0) skip();
}

/* Reads <case>_<what>.<ext>, which must hold exactly n 4-byte values. */
static void *s_load(void **state, const char *name, const char *ext, int64_t n)
{
    const dq_test_tmpdir *t = *state;
    char path[160];
    snprintf(path, sizeof path, "%s/%s.%s", t->dir, name, ext);
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    void *p = calloc((size_t)n + 1, 4);
    assert_non_null(p);
    size_t got = fread(p, 4, (size_t)n + 1, f);
    fclose(f);
    if ((int64_t)got != n) fail_msg("%s holds %zu values, expected %lld", path, got, (long long)n);
    return p;
}

static float *s_f32(void **state, const char *name, int64_t n)
{
    return s_load(state, name, "f32", n);
}

/* got vs PyTorch's float values, |d| <= tol*(1 + |want|). */
static void s_close(const float *got, const float *want, int64_t n, double tol, const char *what)
{
    double *wd = calloc((size_t)n, sizeof(double));
    assert_non_null(wd);
    for (int64_t i = 0; i < n; i++) wd[i] = want[i];
    dq_test_assert_close(got, wd, n, tol, tol, what);
    free(wd);
}

static void test_batchnorm_train_step(void **state)
{
    s_need_ref(state);
    enum { N = 3, C = 5, H = 7, W = 5, NX = N * C * H * W };
    float *x = s_f32(state, "bn_x", NX), *w = s_f32(state, "bn_w", C);
    float *b = s_f32(state, "bn_b", C), *rm = s_f32(state, "bn_rm", C);
    float *rv = s_f32(state, "bn_rv", C), *dy = s_f32(state, "bn_dy", NX);
    float *out = s_f32(state, "bn_out", NX), *rm1 = s_f32(state, "bn_rm1", C);
    float *rv1 = s_f32(state, "bn_rv1", C), *dx = s_f32(state, "bn_dx", NX);
    float *dw = s_f32(state, "bn_dw", C), *db = s_f32(state, "bn_db", C);
    float *ev = s_f32(state, "bn_eval", NX);
    float y[NX], gx[NX] = {0}, gw[C] = {0}, gb[C] = {0}, sm[C], si[C];
    int64_t cs[1] = {C};
    dq_tensor tx = dq_tensor_view4(x, N, C, H, W), ty = dq_tensor_view4(y, N, C, H, W);
    dq_tensor tw = dq_tensor_view(w, 1, cs), tb = dq_tensor_view(b, 1, cs);
    dq_tensor trm = dq_tensor_view(rm, 1, cs), trv = dq_tensor_view(rv, 1, cs);
    dq_tensor tdy = dq_tensor_view4(dy, N, C, H, W), tgx = dq_tensor_view4(gx, N, C, H, W);
    dq_tensor tgw = dq_tensor_view(gw, 1, cs), tgb = dq_tensor_view(gb, 1, cs);
    dq_err err = {{0}};
    assert_int_equal(dq_batchnorm2d_forward(&ty, sm, si, &trm, &trv, &tx, &tw, &tb, 1e-5f, 0.1f,
                                            true, &err),
                     DQ_OK);
    s_close(y, out, NX, 1e-5, "bn train out");
    s_close(rm, rm1, C, 1e-6, "bn running_mean");
    s_close(rv, rv1, C, 1e-6, "bn running_var");
    assert_int_equal(dq_batchnorm2d_backward(&tgx, &tgw, &tgb, &tdy, &tx, &tw, sm, si, &err),
                     DQ_OK);
    s_close(gx, dx, NX, 1e-5, "bn dx");
    s_close(gw, dw, C, 1e-5, "bn dweight");
    s_close(gb, db, C, 1e-5, "bn dbias");
    assert_int_equal(dq_batchnorm2d_forward(&ty, NULL, NULL, &trm, &trv, &tx, &tw, &tb, 1e-5f,
                                            0.1f, false, &err),
                     DQ_OK);
    s_close(y, ev, NX, 1e-5, "bn eval out");
    free(x), free(w), free(b), free(rm), free(rv), free(dy), free(out), free(rm1), free(rv1);
    free(dx), free(dw), free(db), free(ev);
}

static void test_avgpool2d_padding(void **state)
{
    s_need_ref(state);
    enum { N = 2, C = 3, H = 7, W = 6, OH = 4, OW = 3, NX = N * C * H * W, NY = N * C * OH * OW };
    float *x = s_f32(state, "ap_x", NX), *dy = s_f32(state, "ap_dy", NY);
    dq_tensor tx = dq_tensor_view4(x, N, C, H, W), tdy = dq_tensor_view4(dy, N, C, OH, OW);
    dq_err err = {{0}};
    for (int inc = 0; inc < 2; inc++) {
        char name[32];
        snprintf(name, sizeof name, "ap%d_out", inc);
        float *out = s_f32(state, name, NY);
        snprintf(name, sizeof name, "ap%d_dx", inc);
        float *dx = s_f32(state, name, NX);
        float y[NY], gx[NX] = {0};
        dq_tensor ty = dq_tensor_view4(y, N, C, OH, OW), tgx = dq_tensor_view4(gx, N, C, H, W);
        assert_int_equal(dq_avgpool2d_forward(&ty, &tx, 3, 2, 1, inc, &err), DQ_OK);
        s_close(y, out, NY, 1e-6, inc ? "avgpool count_include_pad" : "avgpool exclude pad");
        assert_int_equal(dq_avgpool2d_backward(&tgx, &tdy, 3, 2, 1, inc, &err), DQ_OK);
        s_close(gx, dx, NX, 1e-6, inc ? "avgpool dx include pad" : "avgpool dx exclude pad");
        free(out), free(dx);
    }
    free(x), free(dy);
}

static void test_maxpool2d_padding(void **state)
{
    s_need_ref(state);
    enum { N = 2, C = 3, H = 7, W = 6, OH = 4, OW = 3, NX = N * C * H * W, NY = N * C * OH * OW };
    float *x = s_f32(state, "mp_x", NX), *dy = s_f32(state, "mp_dy", NY);
    float *out = s_f32(state, "mp_out", NY), *dx = s_f32(state, "mp_dx", NX);
    int32_t *idx = s_load(state, "mp_idx", "i32", NY);
    float y[NY], gx[NX] = {0};
    int32_t am[NY];
    dq_tensor tx = dq_tensor_view4(x, N, C, H, W), ty = dq_tensor_view4(y, N, C, OH, OW);
    dq_tensor tdy = dq_tensor_view4(dy, N, C, OH, OW), tgx = dq_tensor_view4(gx, N, C, H, W);
    dq_err err = {{0}};
    assert_int_equal(dq_maxpool2d_forward_pad(&ty, am, &tx, 3, 2, 1, &err), DQ_OK);
    s_close(y, out, NY, 0, "maxpool out");
    assert_memory_equal(am, idx, sizeof am); /* PyTorch's indices are into the plane too */
    assert_int_equal(dq_maxpool2d_backward(&tgx, &tdy, am, &err), DQ_OK);
    s_close(gx, dx, NX, 0, "maxpool dx");
    free(x), free(dy), free(out), free(dx), free(idx);
}

typedef struct {
    const char *name;
    int N, C, H, W, OC, k, s, p, G;
} conv_case;

/* As CONVS in ops_ref.py. */
static const conv_case s_convs[] = {
    {"dw1", 2, 4, 7, 6, 4, 3, 1, 1, 4},
    {"dw2", 2, 4, 7, 6, 8, 3, 2, 1, 4},
    {"dw5", 1, 3, 9, 8, 3, 5, 2, 2, 3},
    {"gc2", 2, 4, 5, 5, 6, 3, 1, 1, 2},
};

static void test_grouped_conv(void **state)
{
    s_need_ref(state);
    for (int ci = 0; ci < (int)(sizeof s_convs / sizeof s_convs[0]); ci++) {
        const conv_case *c = &s_convs[ci];
        const int64_t OH = dq_conv2d_out_size(c->H, c->k, c->s, c->p);
        const int64_t OW = dq_conv2d_out_size(c->W, c->k, c->s, c->p);
        const int64_t nx = (int64_t)c->N * c->C * c->H * c->W;
        const int64_t nw = (int64_t)c->OC * (c->C / c->G) * c->k * c->k;
        const int64_t ny = c->N * c->OC * OH * OW;
        char nm[32];
#define LOAD(v, what, n)                                        \
    snprintf(nm, sizeof nm, "%s_%s", c->name, what);            \
    float *v = s_f32(state, nm, n)
        LOAD(x, "x", nx);
        LOAD(w, "w", nw);
        LOAD(b, "b", c->OC);
        LOAD(dy, "dy", ny);
        LOAD(out, "out", ny);
        LOAD(dx, "dx", nx);
        LOAD(dw, "dw", nw);
        LOAD(db, "db", c->OC);
#undef LOAD
        float *y = calloc((size_t)ny, 4), *gx = calloc((size_t)nx, 4), *gw = calloc((size_t)nw, 4);
        float *gb = calloc((size_t)c->OC, 4);
        assert_true(y && gx && gw && gb);
        dq_conv2d_params p = {.stride = c->s, .padding = c->p, .max_group = 1, .groups = c->G};
        int64_t wsn = dq_conv2d_workspace(c->N, c->C, c->H, c->W, c->k, c->k, p);
        float *ws = wsn > 0 ? calloc((size_t)wsn, 4) : NULL;
        int64_t bs[1] = {c->OC};
        dq_tensor tx = dq_tensor_view4(x, c->N, c->C, c->H, c->W);
        dq_tensor tw = dq_tensor_view4(w, c->OC, c->C / c->G, c->k, c->k);
        dq_tensor tb = dq_tensor_view(b, 1, bs), tgb = dq_tensor_view(gb, 1, bs);
        dq_tensor ty = dq_tensor_view4(y, c->N, c->OC, OH, OW);
        dq_tensor tdy = dq_tensor_view4(dy, c->N, c->OC, OH, OW);
        dq_tensor tgx = dq_tensor_view4(gx, c->N, c->C, c->H, c->W);
        dq_tensor tgw = dq_tensor_view4(gw, c->OC, c->C / c->G, c->k, c->k);
        dq_err err = {{0}};
        assert_int_equal(dq_conv2d_forward(&ty, &tx, &tw, &tb, p, ws, wsn, &err), DQ_OK);
        assert_int_equal(dq_conv2d_backward(&tgx, &tgw, &tgb, &tdy, &tx, &tw, p, ws, wsn, &err),
                         DQ_OK);
        char what[48];
        snprintf(what, sizeof what, "%s out", c->name);
        s_close(y, out, ny, 1e-5, what);
        snprintf(what, sizeof what, "%s dx", c->name);
        s_close(gx, dx, nx, 1e-5, what);
        snprintf(what, sizeof what, "%s dw", c->name);
        s_close(gw, dw, nw, 1e-5, what);
        snprintf(what, sizeof what, "%s db", c->name);
        s_close(gb, db, c->OC, 1e-5, what);
        free(x), free(w), free(b), free(dy), free(out), free(dx), free(dw), free(db);
        free(y), free(gx), free(gw), free(gb), free(ws);
    }
}

static void test_global_avgpool_and_relu6(void **state)
{
    s_need_ref(state);
    enum { GN = 2 * 3 * 5 * 7, GY = 2 * 3, RN = 2 * 3 * 4 * 5 };
    float *x = s_f32(state, "gap_x", GN), *dy = s_f32(state, "gap_dy", GY);
    float *out = s_f32(state, "gap_out", GY), *dx = s_f32(state, "gap_dx", GN);
    float y[GY], gx[GN] = {0};
    dq_tensor tx = dq_tensor_view4(x, 2, 3, 5, 7), ty = dq_tensor_view4(y, 2, 3, 1, 1);
    dq_tensor tdy = dq_tensor_view4(dy, 2, 3, 1, 1), tgx = dq_tensor_view4(gx, 2, 3, 5, 7);
    dq_err err = {{0}};
    assert_int_equal(dq_global_avgpool_forward(&ty, &tx, &err), DQ_OK);
    s_close(y, out, GY, 1e-6, "adaptive_avg_pool2d out");
    assert_int_equal(dq_global_avgpool_backward(&tgx, &tdy, &err), DQ_OK);
    s_close(gx, dx, GN, 1e-6, "adaptive_avg_pool2d dx");
    free(x), free(dy), free(out), free(dx);

    float *rx = s_f32(state, "r6_x", RN), *rdy = s_f32(state, "r6_dy", RN);
    float *rout = s_f32(state, "r6_out", RN), *rdx = s_f32(state, "r6_dx", RN);
    float ry[RN], rgx[RN] = {0};
    dq_tensor trx = dq_tensor_view4(rx, 2, 3, 4, 5), try_ = dq_tensor_view4(ry, 2, 3, 4, 5);
    dq_tensor trdy = dq_tensor_view4(rdy, 2, 3, 4, 5), trgx = dq_tensor_view4(rgx, 2, 3, 4, 5);
    assert_int_equal(dq_clip_forward(&try_, &trx, 0.0f, 6.0f, &err), DQ_OK);
    s_close(ry, rout, RN, 0, "relu6 out");
    assert_int_equal(dq_clip_backward(&trgx, &trdy, &try_, 0.0f, 6.0f, &err), DQ_OK);
    s_close(rgx, rdx, RN, 0, "relu6 dx");
    free(rx), free(rdy), free(rout), free(rdx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batchnorm_train_step),
        cmocka_unit_test(test_avgpool2d_padding),
        cmocka_unit_test(test_maxpool2d_padding),
        cmocka_unit_test(test_grouped_conv),
        cmocka_unit_test(test_global_avgpool_and_relu6),
    };
    return cmocka_run_group_tests_name("ops_torch", tests, s_setup, s_teardown);
}
