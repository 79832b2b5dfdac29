/* test_conv_grouped.c - grouped and depthwise conv2d (params.groups > 1).
 *
 * Every case runs the float op against a naive double reference with
 * groups (no lowering), and its backward against central finite
 * differences of L = sum(out * R) on that reference, gradients pre-filled so
 * that "adds into" is checked too. Then the three ways of computing the
 * same convolution are compared with each other: the depthwise direct
 * kernel, the per-group im2col + GEMM path forced on the same shapes, and an
 * ordinary (groups = 1) convolution with block-diagonal weights. Last, the
 * eval forward (max_group = 1) must give a sample the same bits whatever
 * its batch and position.
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
#include "tensor/conv2d_int.h"
#include "tensor/ops.h"

typedef struct {
    int N, C, H, W, OC, KH, KW, stride, pad, G;
    bool bias;
} cfg;

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
    const int Cg = c->C / c->G, OCg = c->OC / c->G;
    for (int n = 0; n < c->N; n++)
        for (int o = 0; o < c->OC; o++)
            for (int64_t oh = 0; oh < k->OH; oh++)
                for (int64_t ow = 0; ow < k->OW; ow++) {
                    double s = c->bias ? k->bd[o] : 0.0;
                    const int g = o / OCg;
                    for (int ci = 0; ci < Cg; ci++)
                        for (int kh = 0; kh < c->KH; kh++)
                            for (int kw = 0; kw < c->KW; kw++) {
                                int64_t ih = oh * c->stride - c->pad + kh;
                                int64_t iw = ow * c->stride - c->pad + kw;
                                if (ih < 0 || ih >= c->H || iw < 0 || iw >= c->W) continue;
                                s += k->xd[((n * c->C + g * Cg + ci) * c->H + ih) * c->W + iw] *
                                     k->wd[((o * Cg + ci) * c->KH + kh) * c->KW + kw];
                            }
                    y[((n * c->OC + o) * k->OH + oh) * k->OW + ow] = s;
                }
}

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
    k->nw = (int64_t)c->OC * (c->C / c->G) * c->KH * c->KW;
    k->nb = c->OC;
    k->ny = (int64_t)c->N * c->OC * k->OH * k->OW;
    k->x = s_calloc(k->nx, 4), k->w = s_calloc(k->nw, 4), k->b = s_calloc(k->nb, 4);
    k->r = s_calloc(k->ny, 4);
    k->xd = s_calloc(k->nx, 8), k->wd = s_calloc(k->nw, 8), k->bd = s_calloc(k->nb, 8);
    k->rd = s_calloc(k->ny, 8), k->yd = s_calloc(k->ny, 8);
    dq_test_fill(k->x, k->xd, k->nx, rng, -1, 1);
    dq_test_fill(k->w, k->wd, k->nw, rng, -1, 1);
    dq_test_fill(k->b, k->bd, k->nb, rng, -1, 1);
    dq_test_fill(k->r, k->rd, k->ny, rng, -1, 1);
}

static void case_free(ref_case *k)
{
    free(k->x), free(k->w), free(k->b), free(k->r);
    free(k->xd), free(k->wd), free(k->bd), free(k->rd), free(k->yd);
}

static dq_conv2d_params s_params(const cfg *c, int max_group)
{
    return (dq_conv2d_params){.stride = c->stride, .padding = c->pad, .max_group = max_group,
                              .groups = c->G};
}

/* Workspace for the GEMM path whatever the public planner says. */
static int64_t s_gemm_ws(const cfg *c, int64_t OH, int64_t OW)
{
    return (int64_t)c->C * c->KH * c->KW * (OH * OW + 16);
}

/* The gradients of one backward run, pre-filled with the same values. */
typedef struct {
    float *gx, *gw, *gb;
} grads;

static grads s_grads(const ref_case *k, uint64_t seed)
{
    grads g = {s_calloc(k->nx, 4), s_calloc(k->nw, 4), s_calloc(k->nb, 4)};
    dq_rng rng;
    dq_rng_seed(&rng, seed);
    dq_test_fill(g.gx, NULL, k->nx, &rng, -1, 1);
    dq_test_fill(g.gw, NULL, k->nw, &rng, -1, 1);
    dq_test_fill(g.gb, NULL, k->nb, &rng, -1, 1);
    return g;
}

static void s_grads_free(grads *g)
{
    free(g->gx), free(g->gw), free(g->gb);
}

static void s_close(const float *got, const float *want, int64_t n, double tol, const char *what)
{
    double *wd = s_calloc(n, 8);
    for (int64_t i = 0; i < n; i++) wd[i] = want[i];
    dq_test_assert_close(got, wd, n, tol, tol, what);
    free(wd);
}

/* Forward and backward with one algorithm; out must be ny floats. */
static void s_run(const ref_case *k, dq_conv2d_algo algo, float *y, grads *g)
{
    const cfg *c = k->c;
    dq_conv2d_params p = s_params(c, 0);
    int64_t wsn = algo == DQ_CONV2D_ALGO_GEMM ? s_gemm_ws(c, k->OH, k->OW)
                                              : dq_conv2d_workspace(c->N, c->C, c->H, c->W,
                                                                    c->KH, c->KW, p);
    float *ws = wsn > 0 ? s_calloc(wsn, 4) : NULL;
    int64_t bs[1] = {c->OC};
    dq_tensor x = dq_tensor_view4(k->x, c->N, c->C, c->H, c->W);
    dq_tensor w = dq_tensor_view4(k->w, c->OC, c->C / c->G, c->KH, c->KW);
    dq_tensor b = dq_tensor_view(k->b, 1, bs);
    dq_tensor out = dq_tensor_view4(y, c->N, c->OC, k->OH, k->OW);
    dq_tensor dy = dq_tensor_view4(k->r, c->N, c->OC, k->OH, k->OW);
    dq_tensor dx = dq_tensor_view4(g->gx, c->N, c->C, c->H, c->W);
    dq_tensor dw = dq_tensor_view4(g->gw, c->OC, c->C / c->G, c->KH, c->KW);
    dq_tensor db = dq_tensor_view(g->gb, 1, bs);
    dq_err err = {{0}};
    for (int64_t i = 0; i < k->ny; i++) y[i] = NAN; /* all must be written */
    if (algo == DQ_CONV2D_ALGO_AUTO) {
        assert_int_equal(dq_conv2d_forward(&out, &x, &w, c->bias ? &b : NULL, p, ws, wsn, &err),
                         DQ_OK);
        assert_int_equal(dq_conv2d_backward(&dx, &dw, c->bias ? &db : NULL, &dy, &x, &w, p, ws,
                                            wsn, &err),
                         DQ_OK);
    } else {
        assert_int_equal(dq_conv2d_grouped_forward(&out, &x, &w, c->bias ? &b : NULL, p, ws, wsn,
                                                   algo, &err),
                         DQ_OK);
        assert_int_equal(dq_conv2d_grouped_backward(&dx, &dw, c->bias ? &db : NULL, &dy, &x, &w,
                                                    p, ws, wsn, algo, &err),
                         DQ_OK);
    }
    free(ws);
}

static void run_case(const cfg *c, int idx, dq_rng *rng)
{
    ref_case k;
    case_init(&k, c, rng);
    char what[80];
    float *y = s_calloc(k.ny, 4);
    grads g = s_grads(&k, 100 + (uint64_t)idx);

    /* the public path against the reference */
    s_run(&k, DQ_CONV2D_ALGO_AUTO, y, &g);
    ref_forward(k.yd, &k);
    snprintf(what, sizeof what, "case %d forward", idx);
    dq_test_assert_close(y, k.yd, k.ny, 1e-5, 1e-5, what);
    grads want = s_grads(&k, 100 + (uint64_t)idx); /* the same pre-fill */
    double *num = s_calloc(k.nx + k.nw + k.nb, 8), *wd = s_calloc(k.nx + k.nw + k.nb, 8);
    dq_test_numgrad(num, k.xd, k.nx, ref_loss, &k, 1e-3);
    for (int64_t i = 0; i < k.nx; i++) wd[i] = want.gx[i] + num[i];
    snprintf(what, sizeof what, "case %d dinput", idx);
    dq_test_assert_close(g.gx, wd, k.nx, 1e-4, 1e-4, what);
    dq_test_numgrad(num, k.wd, k.nw, ref_loss, &k, 1e-3);
    for (int64_t i = 0; i < k.nw; i++) wd[i] = want.gw[i] + num[i];
    snprintf(what, sizeof what, "case %d dweight", idx);
    dq_test_assert_close(g.gw, wd, k.nw, 1e-4, 1e-4, what);
    if (c->bias) {
        dq_test_numgrad(num, k.bd, k.nb, ref_loss, &k, 1e-3);
        for (int64_t i = 0; i < k.nb; i++) wd[i] = want.gb[i] + num[i];
        snprintf(what, sizeof what, "case %d dbias", idx);
        dq_test_assert_close(g.gb, wd, k.nb, 1e-4, 1e-4, what);
    }

    /* depthwise: the direct kernel (AUTO) against the per-group GEMM path */
    if (c->G == c->C) {
        float *y2 = s_calloc(k.ny, 4);
        s_run(&k, DQ_CONV2D_ALGO_GEMM, y2, &want);
        snprintf(what, sizeof what, "case %d direct vs gemm forward", idx);
        s_close(y, y2, k.ny, 1e-5, what);
        snprintf(what, sizeof what, "case %d direct vs gemm dinput", idx);
        s_close(g.gx, want.gx, k.nx, 1e-5, what);
        snprintf(what, sizeof what, "case %d direct vs gemm dweight", idx);
        s_close(g.gw, want.gw, k.nw, 1e-5, what);
        snprintf(what, sizeof what, "case %d direct vs gemm dbias", idx);
        s_close(g.gb, want.gb, k.nb, 1e-5, what);
        free(y2);
    }
    s_grads_free(&g), s_grads_free(&want);
    free(num), free(wd), free(y);
    case_free(&k);
}

static const cfg s_cases[] = {
    /* N  C  H  W OC KH KW  s  p  G  bias */
    {2, 3, 7, 6, 3, 3, 3, 1, 1, 3, true},   /* depthwise, same size */
    {1, 4, 5, 7, 8, 3, 3, 2, 1, 4, true},   /* depthwise x2 multiplier, stride 2 */
    {2, 5, 9, 8, 5, 5, 5, 2, 2, 5, false},  /* depthwise 5x5, odd C, no bias */
    {2, 3, 6, 5, 6, 3, 1, 1, 0, 3, true},   /* depthwise non-square kernel */
    {1, 2, 7, 7, 2, 2, 2, 3, 0, 2, true},   /* depthwise stride > kernel */
    {1, 2, 2, 3, 4, 7, 7, 1, 3, 2, true},   /* depthwise, taps wholly in padding */
    {3, 1, 5, 4, 3, 3, 3, 1, 1, 1, true},   /* C = 1 "depthwise" is ungrouped: G 1 */
    {2, 4, 5, 5, 6, 3, 3, 1, 1, 2, true},   /* 2 groups */
    {3, 6, 7, 6, 9, 3, 3, 2, 1, 3, true},   /* 3 groups, stride 2, odd sizes */
    {2, 4, 5, 3, 6, 1, 1, 1, 0, 2, true},   /* grouped pointwise (no lowering) */
    {1, 6, 5, 5, 4, 1, 1, 2, 0, 2, false},  /* grouped 1x1 stride 2 */
    {2, 6, 16, 16, 4, 3, 3, 1, 1, 2, true}, /* P = 256: padded column rows */
    {1, 8, 3, 3, 8, 3, 3, 1, 0, 4, true},   /* 1x1 output */
    {1, 2, 3, 40, 2, 1, 34, 2, 1, 2, true}, /* depthwise strided, kernel wider than 32 */
    {1, 2, 4, 40, 4, 2, 34, 1, 1, 2, true}, /* the same at stride 1 */
};

static void test_cases_against_reference(void **state)
{
    (void)state;
    dq_rng rng;
    dq_rng_seed(&rng, 909);
    for (int i = 0; i < (int)(sizeof s_cases / sizeof s_cases[0]); i++)
        run_case(&s_cases[i], i, &rng);
}

/* The same convolution as an ordinary one whose weight is block-diagonal:
 * w_full[o, c] = w[o, c - g*C/G] when c is in o's group g, else 0. */
static void test_block_diagonal_equivalent(void **state)
{
    (void)state;
    static const cfg cases[] = {
        {2, 4, 6, 5, 8, 3, 3, 1, 1, 4, true}, /* depthwise x2 */
        {3, 6, 5, 7, 6, 3, 3, 2, 1, 3, true}, /* grouped, stride 2 */
        {2, 3, 5, 5, 3, 5, 5, 1, 2, 3, true}, /* depthwise 5x5 */
    };
    dq_rng rng;
    dq_rng_seed(&rng, 31);
    for (int ci = 0; ci < 3; ci++) {
        const cfg *c = &cases[ci];
        ref_case k;
        case_init(&k, c, &rng);
        const int Cg = c->C / c->G, OCg = c->OC / c->G, KK = c->KH * c->KW;
        const int64_t nwf = (int64_t)c->OC * c->C * KK;
        float *wf = s_calloc(nwf, 4), *y = s_calloc(k.ny, 4), *yf = s_calloc(k.ny, 4);
        for (int o = 0; o < c->OC; o++)
            for (int i = 0; i < Cg; i++)
                memcpy(wf + ((int64_t)o * c->C + (o / OCg) * Cg + i) * KK,
                       k.w + ((int64_t)o * Cg + i) * KK, (size_t)KK * 4);
        grads g = s_grads(&k, 7);
        s_run(&k, DQ_CONV2D_ALGO_AUTO, y, &g);

        dq_conv2d_params p = {c->stride, c->pad, 0};
        int64_t wsn = dq_conv2d_workspace(c->N, c->C, c->H, c->W, c->KH, c->KW, p);
        float *ws = s_calloc(wsn, 4), *gxf = s_calloc(k.nx, 4), *gwf = s_calloc(nwf, 4);
        float *gbf = s_calloc(k.nb, 4);
        grads pre = s_grads(&k, 7);
        memcpy(gxf, pre.gx, (size_t)k.nx * 4);
        memcpy(gbf, pre.gb, (size_t)k.nb * 4);
        int64_t bs[1] = {c->OC};
        dq_tensor x = dq_tensor_view4(k.x, c->N, c->C, c->H, c->W);
        dq_tensor w = dq_tensor_view4(wf, c->OC, c->C, c->KH, c->KW);
        dq_tensor b = dq_tensor_view(k.b, 1, bs);
        dq_tensor out = dq_tensor_view4(yf, c->N, c->OC, k.OH, k.OW);
        dq_tensor dy = dq_tensor_view4(k.r, c->N, c->OC, k.OH, k.OW);
        dq_tensor dx = dq_tensor_view4(gxf, c->N, c->C, c->H, c->W);
        dq_tensor dw = dq_tensor_view4(gwf, c->OC, c->C, c->KH, c->KW);
        dq_tensor db = dq_tensor_view(gbf, 1, bs);
        dq_err err = {{0}};
        assert_int_equal(dq_conv2d_forward(&out, &x, &w, &b, p, ws, wsn, &err), DQ_OK);
        assert_int_equal(dq_conv2d_backward(&dx, &dw, &db, &dy, &x, &w, p, ws, wsn, &err),
                         DQ_OK);
        s_close(y, yf, k.ny, 1e-5, "block-diagonal forward");
        s_close(g.gx, gxf, k.nx, 1e-5, "block-diagonal dinput");
        s_close(g.gb, gbf, k.nb, 1e-5, "block-diagonal dbias");
        /* dw: the block entries, plus the pre-fill the grouped run started from */
        float *blk = s_calloc(k.nw, 4);
        for (int o = 0; o < c->OC; o++)
            for (int i = 0; i < Cg; i++)
                for (int t = 0; t < KK; t++)
                    blk[((int64_t)o * Cg + i) * KK + t] =
                        pre.gw[((int64_t)o * Cg + i) * KK + t] +
                        gwf[((int64_t)o * c->C + (o / OCg) * Cg + i) * KK + t];
        s_close(g.gw, blk, k.nw, 1e-5, "block-diagonal dweight");
        free(blk), free(wf), free(y), free(yf), free(ws), free(gxf), free(gwf), free(gbf);
        s_grads_free(&g), s_grads_free(&pre);
        case_free(&k);
    }
}

/* Eval (max_group = 1): a sample's output is bitwise the same alone, in a
 * batch, and at another position of a shuffled batch. */
static void test_eval_batch_invariance(void **state)
{
    (void)state;
    static const cfg cases[] = {
        {5, 6, 9, 7, 12, 3, 3, 1, 1, 6, true}, /* depthwise x2 */
        {5, 8, 7, 7, 8, 3, 3, 2, 1, 8, true},  /* depthwise stride 2 */
        {5, 6, 9, 7, 9, 3, 3, 1, 1, 3, true},  /* grouped */
        {5, 4, 6, 6, 8, 1, 1, 1, 0, 2, false}, /* grouped pointwise */
    };
    dq_rng rng;
    dq_rng_seed(&rng, 77);
    for (int ci = 0; ci < 4; ci++) {
        const cfg *c = &cases[ci];
        ref_case k;
        case_init(&k, c, &rng);
        dq_conv2d_params p = s_params(c, 1);
        int64_t wsn = dq_conv2d_workspace(c->N, c->C, c->H, c->W, c->KH, c->KW, p);
        float *ws = wsn > 0 ? s_calloc(wsn, 4) : NULL;
        const int64_t img = (int64_t)c->C * c->H * c->W, oimg = (int64_t)c->OC * k.OH * k.OW;
        float *y = s_calloc(k.ny, 4), *y1 = s_calloc(oimg, 4);
        float *xs = s_calloc(k.nx, 4), *ys = s_calloc(k.ny, 4);
        int64_t bs[1] = {c->OC};
        dq_tensor w = dq_tensor_view4(k.w, c->OC, c->C / c->G, c->KH, c->KW);
        dq_tensor b = dq_tensor_view(k.b, 1, bs);
        dq_tensor x = dq_tensor_view4(k.x, c->N, c->C, c->H, c->W);
        dq_tensor out = dq_tensor_view4(y, c->N, c->OC, k.OH, k.OW);
        dq_err err = {{0}};
        const dq_tensor *bp = c->bias ? &b : NULL;
        assert_int_equal(dq_conv2d_forward(&out, &x, &w, bp, p, ws, wsn, &err), DQ_OK);
        /* shuffled batch: sample n goes to position N-1-n */
        for (int n = 0; n < c->N; n++)
            memcpy(xs + (c->N - 1 - n) * img, k.x + n * img, (size_t)img * 4);
        /* the eval entry point (dq_conv2d_forward_invariant) gives the same bits */
        int64_t wsi = dq_conv2d_invariant_workspace(c->N, c->C, c->H, c->W, c->KH, c->KW,
                                                    c->OC, p);
        assert_int_equal(wsi, wsn);
        assert_int_equal(dq_conv2d_forward_invariant(&out, &x, &w, bp, p, ws, wsn, &err), DQ_OK);
        float *yi = s_calloc(k.ny, 4);
        memcpy(yi, y, (size_t)k.ny * 4);
        assert_int_equal(dq_conv2d_forward(&out, &x, &w, bp, p, ws, wsn, &err), DQ_OK);
        assert_memory_equal(yi, y, (size_t)k.ny * 4);
        free(yi);
        dq_tensor xsv = dq_tensor_view4(xs, c->N, c->C, c->H, c->W);
        dq_tensor ysv = dq_tensor_view4(ys, c->N, c->OC, k.OH, k.OW);
        assert_int_equal(dq_conv2d_forward(&ysv, &xsv, &w, bp, p, ws, wsn, &err), DQ_OK);
        for (int n = 0; n < c->N; n++) {
            dq_tensor x1 = dq_tensor_view4(k.x + n * img, 1, c->C, c->H, c->W);
            dq_tensor o1 = dq_tensor_view4(y1, 1, c->OC, k.OH, k.OW);
            assert_int_equal(dq_conv2d_forward(&o1, &x1, &w, bp, p, ws, wsn, &err), DQ_OK);
            assert_memory_equal(y1, y + n * oimg, (size_t)oimg * 4);
            assert_memory_equal(ys + (c->N - 1 - n) * oimg, y + n * oimg, (size_t)oimg * 4);
        }
        free(ws), free(y), free(y1), free(xs), free(ys);
        case_free(&k);
    }
}

/* 1 channel 3x3 input 1..9, depthwise 2x2 kernel {1,2,3,4} + 0.5 and a
 * second output channel (multiplier 2) with the box kernel, by hand. */
static void test_hand_computed(void **state)
{
    (void)state;
    float x[18] = {1, 2, 3, 4, 5, 6, 7, 8, 9, -1, -2, -3, -4, -5, -6, -7, -8, -9};
    float w[4 * 4] = {1, 2, 3, 4, 1, 1, 1, 1, 1, 2, 3, 4, 1, 1, 1, 1};
    float b[4] = {0.5f, 0, 0.5f, 0}, y[4 * 4];
    int64_t bs[1] = {4};
    dq_tensor tx = dq_tensor_view4(x, 1, 2, 3, 3), tw = dq_tensor_view4(w, 4, 1, 2, 2);
    dq_tensor tb = dq_tensor_view(b, 1, bs), ty = dq_tensor_view4(y, 1, 4, 2, 2);
    dq_conv2d_params p = {.stride = 1, .padding = 0, .max_group = 0, .groups = 2};
    dq_err err = {{0}};
    /* direct, stride 1: two bordered 3x3 planes (+ KW) and a 2x3 wide output */
    float ws[28];
    assert_int_equal(dq_conv2d_workspace(1, 2, 3, 3, 2, 2, p), 2 * (9 + 2) + 2 * 3);
    assert_int_equal(dq_conv2d_forward(&ty, &tx, &tw, &tb, p, NULL, 0, &err), DQ_ERR_ARG);
    assert_string_equal(err.msg, "conv2d: workspace has 0 floats, needs at least 28");
    assert_int_equal(dq_conv2d_forward(&ty, &tx, &tw, &tb, p, ws, 28, &err), DQ_OK);
    const float want[16] = {37.5f, 47.5f, 67.5f, 77.5f, 12, 16, 24, 28,
                            -36.5f, -46.5f, -66.5f, -76.5f, -12, -16, -24, -28};
    for (int i = 0; i < 16; i++) assert_true(y[i] == want[i]);
    float dy[16], dx[18] = {0}, dw[16] = {0}, db[4] = {0};
    for (int i = 0; i < 16; i++) dy[i] = i < 4 ? 1.0f : 0.0f; /* only output channel 0 */
    dq_tensor tdy = dq_tensor_view4(dy, 1, 4, 2, 2), tdx = dq_tensor_view4(dx, 1, 2, 3, 3);
    dq_tensor tdw = dq_tensor_view4(dw, 4, 1, 2, 2), tdb = dq_tensor_view(db, 1, bs);
    assert_int_equal(dq_conv2d_backward(&tdx, &tdw, &tdb, &tdy, &tx, &tw, p, ws, 28, &err),
                     DQ_OK);
    const float want_dx[9] = {1, 3, 2, 4, 10, 6, 3, 7, 4};
    for (int i = 0; i < 9; i++) assert_true(dx[i] == want_dx[i] && dx[9 + i] == 0.0f);
    const float want_dw[4] = {12, 16, 24, 28};
    for (int i = 0; i < 4; i++) assert_true(dw[i] == want_dw[i]);
    for (int i = 4; i < 16; i++) assert_true(dw[i] == 0.0f);
    assert_true(db[0] == 4.0f && db[1] == 0.0f && db[2] == 0.0f && db[3] == 0.0f);
    /* grouped (not depthwise) needs one image's columns; strided depthwise none */
    dq_conv2d_params pg = {.stride = 1, .padding = 1, .groups = 2};
    assert_int_equal(dq_conv2d_workspace(8, 4, 5, 5, 3, 3, pg), 4 * 9 * 25);
    dq_conv2d_params ps = {.stride = 2, .padding = 1, .groups = 4};
    assert_int_equal(dq_conv2d_workspace(8, 4, 5, 5, 3, 3, ps), 0);
}

static void test_errors(void **state)
{
    (void)state;
    float x[2 * 6 * 25] = {0}, w[6 * 3 * 9] = {0}, y[2 * 6 * 25] = {0}, ws[6 * 9 * 25];
    dq_tensor tx = dq_tensor_view4(x, 2, 6, 5, 5), ty = dq_tensor_view4(y, 2, 6, 5, 5);
    dq_tensor tw = dq_tensor_view4(w, 6, 3, 3, 3);
    dq_conv2d_params p = {.stride = 1, .padding = 1, .groups = 2};
    dq_err err = {{0}};
    assert_int_equal(dq_conv2d_forward(&ty, &tx, &tw, NULL, p, ws, 6 * 9 * 25, &err), DQ_OK);
    p.groups = 4; /* 6 channels are not divisible by 4 */
    assert_int_equal(dq_conv2d_forward(&ty, &tx, &tw, NULL, p, ws, 6 * 9 * 25, &err),
                     DQ_ERR_SHAPE);
    assert_string_equal(err.msg, "conv2d: 6 input and 6 output channels are not both "
                                 "divisible by groups 4");
    p.groups = 3; /* weight must then be [6, 2, 3, 3] */
    assert_int_equal(dq_conv2d_forward(&ty, &tx, &tw, NULL, p, ws, 6 * 9 * 25, &err),
                     DQ_ERR_SHAPE);
    assert_string_equal(err.msg, "conv2d: weight has shape [6, 3, 3, 3], expected [6, 2, 3, 3]");
    p.groups = -2;
    assert_int_equal(dq_conv2d_forward(&ty, &tx, &tw, NULL, p, ws, 6 * 9 * 25, &err),
                     DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "groups -2 invalid"));
    p.groups = 2; /* grouped needs the workspace */
    assert_int_equal(dq_conv2d_forward(&ty, &tx, &tw, NULL, p, ws, 100, &err), DQ_ERR_ARG);
    assert_string_equal(err.msg, "conv2d: workspace has 100 floats, needs at least 1350");
    assert_int_equal(dq_conv2d_backward(NULL, NULL, NULL, &ty, &tx, &tw, p, NULL, 0, &err),
                     DQ_ERR_ARG);
    /* the direct kernel is depthwise only */
    assert_int_equal(dq_conv2d_grouped_forward(&ty, &tx, &tw, NULL, p, ws, 6 * 9 * 25,
                                               DQ_CONV2D_ALGO_DIRECT, &err),
                     DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "depthwise only"));
    /* backward names the gradient at fault */
    p.groups = 6;
    p.stride = 2; /* strided depthwise: no workspace */
    dq_tensor tw6 = dq_tensor_view4(w, 6, 1, 3, 3), ty2 = dq_tensor_view4(y, 2, 6, 3, 3);
    float dwb[6 * 9];
    dq_tensor tdw = dq_tensor_view4(dwb, 6, 1, 9, 1);
    assert_int_equal(dq_conv2d_forward(&ty2, &tx, &tw6, NULL, p, NULL, 0, &err), DQ_OK);
    assert_int_equal(dq_conv2d_backward(NULL, &tdw, NULL, &ty2, &tx, &tw6, p, NULL, 0, &err),
                     DQ_ERR_SHAPE);
    assert_non_null(strstr(err.msg, "conv2d backward: weight gradient"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_computed),
        cmocka_unit_test(test_cases_against_reference),
        cmocka_unit_test(test_block_diagonal_equivalent),
        cmocka_unit_test(test_eval_batch_invariance),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests_name("conv_grouped", tests, NULL, NULL);
}
