/* test_conv2d.c - conv2d forward/backward and the shared im2col helpers.
 *
 * Every case runs the float op against a naive double reference written
 * here (seven nested loops, no lowering), and the backward against central
 * finite differences of L = sum(out * R) on that reference, with gradients
 * pre-filled so that "adds into" is checked at the same time. The case table
 * covers the edge cases of the lowering: odd sizes, stride 2/3 with padding,
 * kernels 1 (pointwise path), 5 and non-square, padding >= kernel/2, C = 1,
 * OC = 1, N = 1 and 3, grouped images with a partial last group.
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
#include "tensor/im2col.h"
#include "tensor/ops.h"

typedef struct {
    int N, C, H, W, OC, KH, KW, stride, pad;
    bool bias;
    int ws_images; /* workspace: 0: dq_conv2d_workspace(N); > 0: the same planned
                    * for ws_images; < 0: exactly K*P*(-ws_images) floats */
} cfg;

/* Everything one case needs, in float (for the op) and double (reference). */
typedef struct {
    const cfg *c;
    int64_t OH, OW, nx, nw, nb, ny;
    float *x, *w, *b, *r;
    double *xd, *wd, *bd, *rd, *yd;
} ref_case;

static void *s_calloc(int64_t n, size_t size)
{
    void *p = calloc((size_t)(n > 0 ? n : 1), size);
    assert_non_null(p);
    return p;
}

static void ref_forward(double *y, const ref_case *k)
{
    const cfg *c = k->c;
    for (int n = 0; n < c->N; n++)
        for (int o = 0; o < c->OC; o++)
            for (int64_t oh = 0; oh < k->OH; oh++)
                for (int64_t ow = 0; ow < k->OW; ow++) {
                    double s = c->bias ? k->bd[o] : 0.0;
                    for (int ci = 0; ci < c->C; ci++)
                        for (int kh = 0; kh < c->KH; kh++)
                            for (int kw = 0; kw < c->KW; kw++) {
                                int64_t ih = oh * c->stride - c->pad + kh;
                                int64_t iw = ow * c->stride - c->pad + kw;
                                if (ih < 0 || ih >= c->H || iw < 0 || iw >= c->W) continue;
                                s += k->xd[((n * c->C + ci) * c->H + ih) * c->W + iw] *
                                     k->wd[((o * c->C + ci) * c->KH + kh) * c->KW + kw];
                            }
                    y[((n * c->OC + o) * k->OH + oh) * k->OW + ow] = s;
                }
}

/* L = sum(out * R) on the reference; numgrad perturbs xd/wd/bd in place. */
static double ref_loss(const double *unused, void *ctx)
{
    (void)unused;
    ref_case *k = ctx;
    ref_forward(k->yd, k);
    double l = 0.0;
    for (int64_t i = 0; i < k->ny; i++) l += k->yd[i] * k->rd[i];
    return l;
}

static void case_init(ref_case *k, const cfg *c, dq_rng *rng)
{
    memset(k, 0, sizeof *k);
    k->c = c;
    k->OH = dq_conv2d_out_size(c->H, c->KH, c->stride, c->pad);
    k->OW = dq_conv2d_out_size(c->W, c->KW, c->stride, c->pad);
    assert_true(k->OH > 0 && k->OW > 0);
    k->nx = (int64_t)c->N * c->C * c->H * c->W;
    k->nw = (int64_t)c->OC * c->C * c->KH * c->KW;
    k->nb = c->OC;
    k->ny = (int64_t)c->N * c->OC * k->OH * k->OW;
    k->x = s_calloc(k->nx, sizeof(float));
    k->w = s_calloc(k->nw, sizeof(float));
    k->b = s_calloc(k->nb, sizeof(float));
    k->r = s_calloc(k->ny, sizeof(float));
    k->xd = s_calloc(k->nx, sizeof(double));
    k->wd = s_calloc(k->nw, sizeof(double));
    k->bd = s_calloc(k->nb, sizeof(double));
    k->rd = s_calloc(k->ny, sizeof(double));
    k->yd = s_calloc(k->ny, sizeof(double));
    dq_test_fill(k->x, k->xd, k->nx, rng, -1.0f, 1.0f);
    dq_test_fill(k->w, k->wd, k->nw, rng, -1.0f, 1.0f);
    dq_test_fill(k->b, k->bd, k->nb, rng, -1.0f, 1.0f);
    dq_test_fill(k->r, k->rd, k->ny, rng, -1.0f, 1.0f);
}

static void case_free(ref_case *k)
{
    free(k->x), free(k->w), free(k->b), free(k->r);
    free(k->xd), free(k->wd), free(k->bd), free(k->rd), free(k->yd);
}

static int64_t s_ws_floats(const cfg *c, int64_t OH, int64_t OW)
{
    dq_conv2d_params p = {c->stride, c->pad, 0};
    if (c->ws_images >= 0)
        return dq_conv2d_workspace(c->ws_images ? c->ws_images : c->N, c->C, c->H, c->W, c->KH,
                                   c->KW, p);
    return (int64_t)c->C * c->KH * c->KW * OH * OW * -c->ws_images;
}

/* Forward vs reference, backward vs finite differences, for one case. */
static void run_case(const cfg *c, int idx, dq_rng *rng)
{
    ref_case k;
    case_init(&k, c, rng);
    dq_conv2d_params p = {c->stride, c->pad, 0};
    dq_err err = {{0}};
    char what[64];

    dq_tensor x = dq_tensor_view4(k.x, c->N, c->C, c->H, c->W);
    dq_tensor w = dq_tensor_view4(k.w, c->OC, c->C, c->KH, c->KW);
    int64_t bshape[1] = {c->OC};
    dq_tensor b = dq_tensor_view(k.b, 1, bshape);
    float *y = s_calloc(k.ny, sizeof(float));
    dq_tensor out = dq_tensor_view4(y, c->N, c->OC, k.OH, k.OW);
    int64_t wsn = s_ws_floats(c, k.OH, k.OW);
    float *ws = s_calloc(wsn, sizeof(float));

    /* forward */
    for (int64_t i = 0; i < k.ny; i++) y[i] = NAN; /* all must be written */
    assert_int_equal(dq_conv2d_forward(&out, &x, &w, c->bias ? &b : NULL, p, ws, wsn, &err),
                     DQ_OK);
    ref_forward(k.yd, &k);
    snprintf(what, sizeof what, "case %d forward", idx);
    dq_test_assert_close(y, k.yd, k.ny, 1e-5, 1e-5, what);

    /* backward: gradients start from random values and must be ADDED to */
    float *gx = s_calloc(k.nx, sizeof(float)), *gw = s_calloc(k.nw, sizeof(float));
    float *gb = s_calloc(k.nb, sizeof(float));
    double *want_x = s_calloc(k.nx, sizeof(double)), *want_w = s_calloc(k.nw, sizeof(double));
    double *want_b = s_calloc(k.nb, sizeof(double));
    double *tmp = s_calloc(k.nx + k.nw + k.nb, sizeof(double));
    dq_test_fill(gx, NULL, k.nx, rng, -1.0f, 1.0f);
    dq_test_fill(gw, NULL, k.nw, rng, -1.0f, 1.0f);
    dq_test_fill(gb, NULL, k.nb, rng, -1.0f, 1.0f);
    dq_test_numgrad(tmp, k.xd, k.nx, ref_loss, &k, 1e-3);
    for (int64_t i = 0; i < k.nx; i++) want_x[i] = gx[i] + tmp[i];
    dq_test_numgrad(tmp, k.wd, k.nw, ref_loss, &k, 1e-3);
    for (int64_t i = 0; i < k.nw; i++) want_w[i] = gw[i] + tmp[i];
    dq_test_numgrad(tmp, k.bd, k.nb, ref_loss, &k, 1e-3);
    for (int64_t i = 0; i < k.nb; i++) want_b[i] = gb[i] + tmp[i];

    dq_tensor dx = dq_tensor_view4(gx, c->N, c->C, c->H, c->W);
    dq_tensor dw = dq_tensor_view4(gw, c->OC, c->C, c->KH, c->KW);
    dq_tensor db = dq_tensor_view(gb, 1, bshape);
    dq_tensor dy = dq_tensor_view4(k.r, c->N, c->OC, k.OH, k.OW);
    assert_int_equal(dq_conv2d_backward(&dx, &dw, c->bias ? &db : NULL, &dy, &x, &w, p, ws, wsn,
                                        &err),
                     DQ_OK);
    snprintf(what, sizeof what, "case %d dinput", idx);
    dq_test_assert_close(gx, want_x, k.nx, 1e-4, 1e-4, what);
    snprintf(what, sizeof what, "case %d dweight", idx);
    dq_test_assert_close(gw, want_w, k.nw, 1e-4, 1e-4, what);
    if (c->bias) {
        snprintf(what, sizeof what, "case %d dbias", idx);
        dq_test_assert_close(gb, want_b, k.nb, 1e-4, 1e-4, what);
    }
    free(gx), free(gw), free(gb), free(want_x), free(want_w), free(want_b), free(tmp);
    free(y), free(ws);
    case_free(&k);
}

static void test_cases_against_reference(void **state)
{
    (void)state;
    static const cfg cases[] = {
        /* N  C  H  W OC KH KW  s  p  bias  ws_images */
        {3, 2, 5, 7, 3, 3, 3, 1, 1, true, 0},  /* same width, one group of 3 */
        {1, 1, 7, 7, 1, 3, 3, 2, 1, true, 0},  /* stride 2 pad 1 odd H, C=OC=N=1 */
        {2, 3, 6, 5, 4, 1, 1, 1, 0, true, 0},  /* 1x1 pointwise, OC > K */
        {2, 2, 9, 8, 2, 5, 5, 1, 2, false, 0}, /* kernel 5, no bias */
        {3, 2, 4, 5, 3, 3, 3, 1, 2, true, 0},  /* padding 2 > kernel/2 */
        {2, 3, 5, 6, 2, 2, 3, 1, 1, true, 0},  /* non-square kernel, OH != H */
        {3, 2, 7, 6, 3, 3, 2, 2, 0, true, 0},  /* stride 2 no padding */
        {2, 1, 5, 5, 3, 1, 1, 2, 0, true, 0},  /* kernel 1 stride 2 */
        {2, 2, 6, 6, 3, 2, 2, 3, 1, true, 0},  /* stride 3 pad 1 */
        {3, 4, 3, 3, 2, 3, 3, 1, 1, true, 2},  /* groups of 2, partial last */
        {3, 4, 3, 3, 2, 3, 3, 1, 1, true, -2}, /* the same, exact-size ws */
        {3, 3, 4, 4, 2, 3, 3, 1, 1, false, 9}, /* ws planned for 9 images */
        {5, 2, 8, 8, 2, 3, 3, 1, 1, true, 4},  /* groups of 4*64: padded rows */
        {1, 1, 16, 16, 2, 3, 3, 1, 1, true, 0},  /* P = 256: padded rows */
        {1, 1, 16, 16, 2, 3, 3, 1, 1, true, -1}, /* P = 256, no room to pad */
        {1, 2, 2, 3, 2, 3, 3, 1, 1, true, 0},  /* kernel larger than input */
        {2, 1, 7, 7, 2, 2, 2, 3, 0, true, 0},  /* stride > kernel: skipped pixels */
        {2, 2, 1, 9, 3, 1, 3, 1, 1, true, 0},  /* H = 1 row, 1x3 kernel */
        {2, 2, 2, 2, 2, 7, 7, 1, 3, true, 0},  /* taps wholly in padding (same) */
        {1, 2, 2, 3, 2, 7, 5, 2, 3, true, 0},  /* taps wholly in padding (strided) */
    };
    dq_rng rng;
    dq_rng_seed(&rng, 2024);
    for (int i = 0; i < (int)(sizeof cases / sizeof cases[0]); i++) run_case(&cases[i], i, &rng);
}

/* 1x1x3x3 input 1..9 with hand-computed outputs and gradients. */
static void test_hand_computed(void **state)
{
    (void)state;
    float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    float w[4] = {1, 2, 3, 4}, b[1] = {0.5f}, y[4], ws[81];
    int64_t one[1] = {1};
    dq_tensor tx = dq_tensor_view4(x, 1, 1, 3, 3), tw = dq_tensor_view4(w, 1, 1, 2, 2);
    dq_tensor tb = dq_tensor_view(b, 1, one), ty = dq_tensor_view4(y, 1, 1, 2, 2);
    dq_err err = {{0}};
    dq_conv2d_params p = {1, 0, 0};
    assert_int_equal(dq_conv2d_forward(&ty, &tx, &tw, &tb, p, ws, 81, &err), DQ_OK);
    const float want[4] = {37.5f, 47.5f, 67.5f, 77.5f};
    for (int i = 0; i < 4; i++) assert_true(y[i] == want[i]);

    float dy[4] = {1, 1, 1, 1}, dx[9] = {0}, dw[4] = {0}, db[1] = {0};
    dq_tensor tdy = dq_tensor_view4(dy, 1, 1, 2, 2), tdx = dq_tensor_view4(dx, 1, 1, 3, 3);
    dq_tensor tdw = dq_tensor_view4(dw, 1, 1, 2, 2), tdb = dq_tensor_view(db, 1, one);
    assert_int_equal(dq_conv2d_backward(&tdx, &tdw, &tdb, &tdy, &tx, &tw, p, ws, 81, &err),
                     DQ_OK);
    const float want_dx[9] = {1, 3, 2, 4, 10, 6, 3, 7, 4};
    const float want_dw[4] = {12, 16, 24, 28};
    for (int i = 0; i < 9; i++) assert_true(dx[i] == want_dx[i]);
    for (int i = 0; i < 4; i++) assert_true(dw[i] == want_dw[i]);
    assert_true(db[0] == 4.0f);

    /* 3x3 box filter with padding 1: each output is its neighbourhood sum */
    float box[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1}, y3[9];
    dq_tensor tbox = dq_tensor_view4(box, 1, 1, 3, 3), ty3 = dq_tensor_view4(y3, 1, 1, 3, 3);
    dq_conv2d_params p1 = {1, 1, 0};
    assert_int_equal(dq_conv2d_forward(&ty3, &tx, &tbox, NULL, p1, ws, 81, &err), DQ_OK);
    const float want3[9] = {12, 21, 16, 27, 45, 33, 24, 39, 28};
    for (int i = 0; i < 9; i++) assert_true(y3[i] == want3[i]);
}

static void test_sizes_and_ranges(void **state)
{
    (void)state;
    assert_int_equal(dq_conv2d_out_size(28, 3, 1, 1), 28);
    assert_int_equal(dq_conv2d_out_size(7, 3, 2, 1), 4);
    assert_int_equal(dq_conv2d_out_size(2, 3, 1, 0), 0);
    assert_int_equal(dq_conv2d_out_size(5, 3, 0, 1), 0);
    /* in 5, k 3, stride 2, pad 1 -> 3 outputs; which ones see each tap */
    int64_t lo, hi;
    dq_im2col_range(&lo, &hi, 5, 3, 0, 2, 1);
    assert_int_equal(lo, 1);
    assert_int_equal(hi, 3);
    dq_im2col_range(&lo, &hi, 5, 3, 1, 2, 1);
    assert_int_equal(lo, 0);
    assert_int_equal(hi, 3);
    dq_im2col_range(&lo, &hi, 5, 3, 2, 2, 1);
    assert_int_equal(lo, 0);
    assert_int_equal(hi, 2);
    dq_im2col_range(&lo, &hi, 2, 2, 0, 1, 3); /* tap entirely in padding */
    assert_int_equal(lo, hi);
    /* workspace: at least one image's columns, grows with N up to a cap */
    dq_conv2d_params p = {1, 1, 0};
    int64_t one = dq_conv2d_workspace(1, 128, 28, 28, 3, 3, p);
    assert_int_equal(one, 128 * 9 * 28 * 28);
    assert_int_equal(dq_conv2d_workspace(128, 128, 28, 28, 3, 3, p), one);
    int64_t small = dq_conv2d_workspace(1, 4, 5, 5, 3, 3, p);
    assert_int_equal(small, 4 * 9 * 25);
    assert_int_equal(dq_conv2d_workspace(3, 4, 5, 5, 3, 3, p), 3 * small);
    assert_int_equal(dq_conv2d_workspace(3, 4, 1, 1, 3, 3, (dq_conv2d_params){1, 0, 0}), 0);
    /* rows 1 KB apart get 16 floats of padding (P = 32*32) */
    assert_int_equal(dq_conv2d_workspace(8, 128, 32, 32, 3, 3, p), 128 * 9 * (1024 + 16));
}

/* A second backward call adds the same gradient again; NULL grads skip. */
static void test_backward_accumulates_and_skips(void **state)
{
    (void)state;
    const int N = 2, C = 3, H = 6, W = 5, OC = 4;
    dq_conv2d_params p = {2, 1, 0};
    const int64_t OH = dq_conv2d_out_size(H, 3, 2, 1), OW = dq_conv2d_out_size(W, 3, 2, 1);
    const int64_t nx = N * C * H * W, nw = OC * C * 9, ny = N * OC * OH * OW;
    dq_rng rng;
    dq_rng_seed(&rng, 5);
    float *x = s_calloc(nx, 4), *w = s_calloc(nw, 4), *dy = s_calloc(ny, 4);
    dq_test_fill(x, NULL, nx, &rng, -1, 1);
    dq_test_fill(w, NULL, nw, &rng, -1, 1);
    dq_test_fill(dy, NULL, ny, &rng, -1, 1);
    int64_t wsn = dq_conv2d_workspace(N, C, H, W, 3, 3, p);
    float *ws = s_calloc(wsn, 4);
    float *g1x = s_calloc(nx, 4), *g1w = s_calloc(nw, 4), g1b[4] = {0};
    float *g2x = s_calloc(nx, 4), *g2w = s_calloc(nw, 4), g2b[4] = {0};
    float *sx = s_calloc(nx, 4), *sw = s_calloc(nw, 4), sb[4] = {0};
    int64_t bs[1] = {OC};
    dq_tensor tx = dq_tensor_view4(x, N, C, H, W), tw = dq_tensor_view4(w, OC, C, 3, 3);
    dq_tensor tdy = dq_tensor_view4(dy, N, OC, OH, OW);
    dq_tensor a_x = dq_tensor_view4(g1x, N, C, H, W), a_w = dq_tensor_view4(g1w, OC, C, 3, 3);
    dq_tensor a_b = dq_tensor_view(g1b, 1, bs);
    dq_tensor b_x = dq_tensor_view4(g2x, N, C, H, W), b_w = dq_tensor_view4(g2w, OC, C, 3, 3);
    dq_tensor b_b = dq_tensor_view(g2b, 1, bs);
    dq_tensor s_x = dq_tensor_view4(sx, N, C, H, W), s_w = dq_tensor_view4(sw, OC, C, 3, 3);
    dq_tensor s_b = dq_tensor_view(sb, 1, bs);
    dq_err err = {{0}};
    assert_int_equal(dq_conv2d_backward(&a_x, &a_w, &a_b, &tdy, &tx, &tw, p, ws, wsn, &err),
                     DQ_OK);
    for (int rep = 0; rep < 2; rep++)
        assert_int_equal(dq_conv2d_backward(&b_x, &b_w, &b_b, &tdy, &tx, &tw, p, ws, wsn, &err),
                         DQ_OK);
    double *want = s_calloc(nx + nw, sizeof(double));
    for (int64_t i = 0; i < nx; i++) want[i] = 2.0 * g1x[i];
    dq_test_assert_close(g2x, want, nx, 1e-5, 1e-6, "twice dinput");
    for (int64_t i = 0; i < nw; i++) want[i] = 2.0 * g1w[i];
    dq_test_assert_close(g2w, want, nw, 1e-5, 1e-6, "twice dweight");
    for (int i = 0; i < OC; i++) want[i] = 2.0 * g1b[i];
    dq_test_assert_close(g2b, want, OC, 1e-5, 1e-6, "twice dbias");

    /* each gradient alone gives the same values as all three together */
    assert_int_equal(dq_conv2d_backward(NULL, &s_w, NULL, &tdy, &tx, &tw, p, ws, wsn, &err),
                     DQ_OK);
    assert_int_equal(dq_conv2d_backward(&s_x, NULL, &s_b, &tdy, &tx, &tw, p, ws, wsn, &err),
                     DQ_OK);
    assert_memory_equal(sx, g1x, (size_t)nx * 4);
    assert_memory_equal(sw, g1w, (size_t)nw * 4);
    assert_memory_equal(sb, g1b, sizeof sb);
    free(x), free(w), free(dy), free(ws), free(g1x), free(g1w), free(g2x), free(g2w);
    free(sx), free(sw), free(want);
}

/* Small output planes run the backward over groups of images (one weight-
 * gradient GEMM per group): with a workspace that allows groups it must give
 * the per-image result (the minimum workspace, one image's columns) up to
 * rounding, for dx, dw and db, with a partial last group and a 1x1 plane. */
static void test_grouped_backward_equals_per_image(void **state)
{
    (void)state;
    static const int cfg[][6] = {{7, 5, 6, 5, 8, 2}, {5, 16, 2, 2, 12, 1}, {9, 3, 4, 4, 5, 2}};
    for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
        const int N = cfg[c][0], C = cfg[c][1], H = cfg[c][2], W = cfg[c][3], OC = cfg[c][4];
        dq_conv2d_params p = {cfg[c][5], 1, 0};
        const int64_t OH = dq_conv2d_out_size(H, 3, p.stride, 1);
        const int64_t OW = dq_conv2d_out_size(W, 3, p.stride, 1);
        const int64_t nx = N * C * H * W, nw = OC * C * 9, ny = N * OC * OH * OW;
        const int64_t K = C * 9, P = OH * OW;
        dq_rng rng;
        dq_rng_seed(&rng, 11 + c);
        float *x = s_calloc(nx, 4), *w = s_calloc(nw, 4), *dy = s_calloc(ny, 4);
        dq_test_fill(x, NULL, nx, &rng, -1, 1);
        dq_test_fill(w, NULL, nw, &rng, -1, 1);
        dq_test_fill(dy, NULL, ny, &rng, -1, 1);
        const int64_t big = (K + OC) * P * N * 2, small = K * P;
        float *ws = s_calloc(big, 4);
        float *gx[2], *gw[2], gb[2][16] = {{0}};
        int64_t bs[1] = {OC};
        dq_tensor tx = dq_tensor_view4(x, N, C, H, W), tw = dq_tensor_view4(w, OC, C, 3, 3);
        dq_tensor tdy = dq_tensor_view4(dy, N, OC, OH, OW);
        dq_err err = {{0}};
        for (int k = 0; k < 2; k++) {
            gx[k] = s_calloc(nx, 4);
            gw[k] = s_calloc(nw, 4);
            dq_tensor a_x = dq_tensor_view4(gx[k], N, C, H, W);
            dq_tensor a_w = dq_tensor_view4(gw[k], OC, C, 3, 3);
            dq_tensor a_b = dq_tensor_view(gb[k], 1, bs);
            assert_int_equal(dq_conv2d_backward(&a_x, &a_w, &a_b, &tdy, &tx, &tw, p, ws,
                                                k ? big : small, &err), DQ_OK);
        }
        double *want = s_calloc(nx + nw + OC, sizeof(double));
        for (int64_t i = 0; i < nx; i++) want[i] = gx[0][i];
        dq_test_assert_close(gx[1], want, nx, 1e-5, 1e-5, "grouped dinput");
        for (int64_t i = 0; i < nw; i++) want[i] = gw[0][i];
        dq_test_assert_close(gw[1], want, nw, 1e-5, 1e-5, "grouped dweight");
        for (int i = 0; i < OC; i++) want[i] = gb[0][i];
        dq_test_assert_close(gb[1], want, OC, 1e-5, 1e-5, "grouped dbias");
        free(x), free(w), free(dy), free(ws), free(want);
        for (int k = 0; k < 2; k++) free(gx[k]), free(gw[k]);
    }
}

/* The last batch of an epoch is smaller than the one the buffers were
 * planned for: the op must use the tensors' N. */
static void test_smaller_batch_than_planned(void **state)
{
    (void)state;
    const int C = 2, H = 5, W = 5, OC = 3;
    dq_conv2d_params p = {1, 1, 0};
    int64_t wsn = dq_conv2d_workspace(64, C, H, W, 3, 3, p);
    float *ws = s_calloc(wsn, 4);
    dq_rng rng;
    dq_rng_seed(&rng, 9);
    float x[2 * 2 * 25], w[3 * 2 * 9], y[2 * 3 * 25], y1[3 * 25];
    dq_test_fill(x, NULL, 100, &rng, -1, 1);
    dq_test_fill(w, NULL, 54, &rng, -1, 1);
    dq_tensor tx = dq_tensor_view4(x, 2, C, H, W), tw = dq_tensor_view4(w, OC, C, 3, 3);
    dq_tensor ty = dq_tensor_view4(y, 2, OC, H, W);
    dq_err err = {{0}};
    assert_int_equal(dq_conv2d_forward(&ty, &tx, &tw, NULL, p, ws, wsn, &err), DQ_OK);
    /* image 1 alone, through a workspace of exactly one image, agrees */
    dq_tensor tx1 = dq_tensor_view4(x + 50, 1, C, H, W), ty1 = dq_tensor_view4(y1, 1, OC, H, W);
    assert_int_equal(dq_conv2d_forward(&ty1, &tx1, &tw, NULL, p, ws, C * 9 * 25, &err), DQ_OK);
    for (int i = 0; i < 75; i++) assert_float_equal(y1[i], y[75 + i], 1e-5);
    free(ws);
}

static void test_errors_name_op_and_tensor(void **state)
{
    (void)state;
    float x[2 * 3 * 5 * 5] = {0}, w[4 * 3 * 9] = {0}, b[4] = {0}, y[2 * 4 * 25] = {0};
    float ws[3 * 9 * 25];
    const int64_t wsn = 3 * 9 * 25;
    int64_t b4[1] = {4}, b5[1] = {5};
    dq_tensor tx = dq_tensor_view4(x, 2, 3, 5, 5), tw = dq_tensor_view4(w, 4, 3, 3, 3);
    dq_tensor tb = dq_tensor_view(b, 1, b4), ty = dq_tensor_view4(y, 2, 4, 5, 5);
    dq_conv2d_params p = {1, 1, 0};
    dq_err err = {{0}};

    dq_tensor w_bad = dq_tensor_view4(w, 4, 2, 3, 3);
    w_bad.name = "features.3.weight";
    assert_int_equal(dq_conv2d_forward(&ty, &tx, &w_bad, &tb, p, ws, wsn, &err), DQ_ERR_SHAPE);
    assert_string_equal(err.msg, "conv2d: weight features.3.weight has shape [4, 2, 3, 3], "
                                 "expected [4, 3, 3, 3]");
    dq_tensor y_bad = dq_tensor_view4(y, 2, 4, 4, 5);
    assert_int_equal(dq_conv2d_forward(&y_bad, &tx, &tw, &tb, p, ws, wsn, &err), DQ_ERR_SHAPE);
    assert_string_equal(err.msg, "conv2d: output has shape [2, 4, 4, 5], expected [2, 4, 5, 5]");
    dq_tensor b_bad = dq_tensor_view(b, 1, b5);
    assert_int_equal(dq_conv2d_forward(&ty, &tx, &tw, &b_bad, p, ws, wsn, &err), DQ_ERR_SHAPE);
    assert_non_null(strstr(err.msg, "conv2d: bias"));
    dq_tensor x3 = dq_tensor_view(x, 3, tx.shape);
    assert_int_equal(dq_conv2d_forward(&ty, &x3, &tw, &tb, p, ws, wsn, &err), DQ_ERR_SHAPE);
    assert_non_null(strstr(err.msg, "conv2d: input must have 4 dims"));
    dq_tensor w_big = dq_tensor_view4(w, 1, 3, 9, 9); /* 9x9 on 5x5 + pad 1 */
    assert_int_equal(dq_conv2d_forward(&ty, &tx, &w_big, NULL, p, ws, wsn, &err),
                     DQ_ERR_SHAPE);
    assert_non_null(strstr(err.msg, "does not fit"));

    /* workspace too small (one float short) or missing */
    assert_int_equal(dq_conv2d_forward(&ty, &tx, &tw, &tb, p, ws, wsn - 1, &err), DQ_ERR_ARG);
    assert_string_equal(err.msg, "conv2d: workspace has 674 floats, needs at least 675");
    assert_int_equal(dq_conv2d_forward(&ty, &tx, &tw, &tb, p, NULL, wsn, &err), DQ_ERR_ARG);
    assert_int_equal(dq_conv2d_forward(&ty, &tx, &tw, &tb, (dq_conv2d_params){0, 1, 0}, ws, wsn,
                                       &err),
                     DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "stride 0"));

    /* backward names the gradient at fault */
    float gx[2 * 3 * 5 * 5] = {0}, gw[4 * 3 * 9] = {0}, gb[5] = {0};
    dq_tensor tgx = dq_tensor_view4(gx, 2, 3, 5, 4), tgw = dq_tensor_view4(gw, 4, 3, 3, 3);
    assert_int_equal(dq_conv2d_backward(&tgx, &tgw, NULL, &ty, &tx, &tw, p, ws, wsn, &err),
                     DQ_ERR_SHAPE);
    assert_non_null(strstr(err.msg, "conv2d backward: input gradient"));
    dq_tensor tgw_bad = dq_tensor_view4(gw, 4, 3, 1, 9);
    assert_int_equal(dq_conv2d_backward(NULL, &tgw_bad, NULL, &ty, &tx, &tw, p, ws, wsn, &err),
                     DQ_ERR_SHAPE);
    assert_non_null(strstr(err.msg, "conv2d backward: weight gradient"));
    dq_tensor tgb = dq_tensor_view(gb, 1, b5);
    assert_int_equal(dq_conv2d_backward(NULL, NULL, &tgb, &ty, &tx, &tw, p, ws, wsn, &err),
                     DQ_ERR_SHAPE);
    assert_non_null(strstr(err.msg, "conv2d backward: bias gradient"));
    assert_int_equal(dq_conv2d_backward(NULL, NULL, NULL, &y_bad, &tx, &tw, p, ws, wsn, &err),
                     DQ_ERR_SHAPE);
    assert_non_null(strstr(err.msg, "conv2d backward: output gradient"));
    assert_int_equal(dq_conv2d_backward(NULL, &tgw, NULL, &ty, &tx, &tw, p, ws, 10, &err),
                     DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "workspace"));
    /* nothing was touched by the failed calls */
    for (int i = 0; i < 4 * 3 * 9; i++) assert_true(gw[i] == 0.0f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_computed),
        cmocka_unit_test(test_sizes_and_ranges),
        cmocka_unit_test(test_cases_against_reference),
        cmocka_unit_test(test_backward_accumulates_and_skips),
        cmocka_unit_test(test_grouped_backward_equals_per_image),
        cmocka_unit_test(test_smaller_batch_than_planned),
        cmocka_unit_test(test_errors_name_op_and_tensor),
    };
    return cmocka_run_group_tests_name("conv2d", tests, NULL, NULL);
}
