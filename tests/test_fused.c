/* test_fused.c - the training-mode fused ops: conv2d with its relu/maxpool
 * epilogue and the backward that reads the forward's saved columns
 * (conv2d_fused.c), the dense relu -> maxpool backward (maxpool2d_fused.c)
 * and the per-image conv -> relu -> maxpool backward (conv2d_fused.c).
 *
 * The fused ops promise to be the unfused ones, bit for bit: every case runs
 * dq_conv2d_forward -> dq_relu_forward (in place) -> dq_maxpool2d_forward and
 * the fused forward (with and without saved columns) on the same inputs and
 * workspace and compares output, pool output and argmax with memcmp; and
 * dq_conv2d_backward against dq_conv2d_backward_cols from pre-filled
 * gradients (so "adds into" is compared too). The unfused ops themselves are
 * checked against references in test_conv2d and test_pool; one hand-computed
 * case here pins the fused values directly. The table covers grouped images
 * (OC <= K) with a partial last group, one image per GEMM (OC > K), a
 * workspace planned for more images than the batch, max_group = 1, the
 * pointwise path, stride 2, overlapping and floor-mode pools, relu or pool
 * alone, and NaN inputs.
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
    int N, C, H, W, OC, KH, KW, stride, pad;
    bool bias, relu;
    int pool_k, pool_s; /* pool_k 0: no pool */
    int ws_images;      /* workspace planned for this many images (0: N) */
    int max_group;
    bool nan;           /* a few NaN inputs */
} cfg;

static void *s_calloc(int64_t n, size_t size)
{
    void *p = calloc((size_t)(n > 0 ? n : 1), size);
    assert_non_null(p);
    return p;
}

static void s_fill_nan(float *x, int64_t n, float v)
{
    for (int64_t i = 0; i < n; i++) x[i] = v;
}

static void run_case(const cfg *c, int idx, dq_rng *rng)
{
    dq_conv2d_params p = {c->stride, c->pad, c->max_group};
    dq_conv2d_epilogue e = {c->relu, c->pool_k, c->pool_s, false};
    const int64_t OH = dq_conv2d_out_size(c->H, c->KH, c->stride, c->pad);
    const int64_t OW = dq_conv2d_out_size(c->W, c->KW, c->stride, c->pad);
    assert_true(OH > 0 && OW > 0);
    const int64_t PH = c->pool_k ? dq_maxpool2d_out_size(OH, c->pool_k, c->pool_s) : 0;
    const int64_t PW = c->pool_k ? dq_maxpool2d_out_size(OW, c->pool_k, c->pool_s) : 0;
    const int64_t nx = (int64_t)c->N * c->C * c->H * c->W;
    const int64_t nw = (int64_t)c->OC * c->C * c->KH * c->KW;
    const int64_t ny = (int64_t)c->N * c->OC * OH * OW, np = (int64_t)c->N * c->OC * PH * PW;
    float *x = s_calloc(nx, 4), *w = s_calloc(nw, 4), *b = s_calloc(c->OC, 4);
    dq_test_fill(x, NULL, nx, rng, -1.0f, 1.0f);
    dq_test_fill(w, NULL, nw, rng, -1.0f, 1.0f);
    dq_test_fill(b, NULL, c->OC, rng, -1.0f, 1.0f);
    if (c->nan) {
        x[0] = NAN;
        x[nx / 2] = NAN;
    }
    const int64_t wsn = dq_conv2d_workspace(c->ws_images ? c->ws_images : c->N, c->C, c->H,
                                            c->W, c->KH, c->KW, p);
    const int64_t coln = dq_conv2d_cols_floats(c->N, c->C, c->H, c->W, c->KH, c->KW, p);
    float *ws = s_calloc(wsn, 4), *cols = s_calloc(coln, 4);
    float *y0 = s_calloc(ny, 4), *y1 = s_calloc(ny, 4), *pl0 = s_calloc(np, 4);
    float *pl1 = s_calloc(np, 4);
    int32_t *am0 = s_calloc(np, 4), *am1 = s_calloc(np, 4);
    int64_t bshape[1] = {c->OC};
    dq_tensor tx = dq_tensor_view4(x, c->N, c->C, c->H, c->W);
    dq_tensor tw = dq_tensor_view4(w, c->OC, c->C, c->KH, c->KW);
    dq_tensor tb = dq_tensor_view(b, 1, bshape);
    dq_tensor ty0 = dq_tensor_view4(y0, c->N, c->OC, OH, OW);
    dq_tensor ty1 = dq_tensor_view4(y1, c->N, c->OC, OH, OW);
    dq_tensor tp0 = dq_tensor_view4(pl0, c->N, c->OC, PH ? PH : 1, PW ? PW : 1);
    dq_tensor tp1 = dq_tensor_view4(pl1, c->N, c->OC, PH ? PH : 1, PW ? PW : 1);
    const dq_tensor *bias = c->bias ? &tb : NULL;
    dq_err err = {{0}};
    char what[96];

    /* the unfused composition */
    assert_int_equal(dq_conv2d_forward(&ty0, &tx, &tw, bias, p, ws, wsn, &err), DQ_OK);
    if (c->relu) assert_int_equal(dq_relu_forward(&ty0, &ty0, &err), DQ_OK);
    if (c->pool_k)
        assert_int_equal(dq_maxpool2d_forward(&tp0, am0, &ty0, c->pool_k, c->pool_s, &err),
                         DQ_OK);

    /* fused, without and with saved columns: the same bits */
    for (int saved = 0; saved < 2; saved++) {
        s_fill_nan(y1, ny, -7.0f); /* everything must be written */
        s_fill_nan(pl1, np, -7.0f);
        memset(am1, 0xff, (size_t)np * 4);
        assert_int_equal(dq_conv2d_fused_forward(&ty1, c->pool_k ? &tp1 : NULL, am1,
                                                 saved ? cols : NULL, coln, &tx, &tw, bias, p,
                                                 e, ws, wsn, &err),
                         DQ_OK);
        snprintf(what, sizeof what, "case %d (saved %d): output", idx, saved);
        if (memcmp(y0, y1, (size_t)ny * 4) != 0) fail_msg("%s differs", what);
        if (c->pool_k && memcmp(pl0, pl1, (size_t)np * 4) != 0)
            fail_msg("case %d (saved %d): pool output differs", idx, saved);
        if (c->pool_k && memcmp(am0, am1, (size_t)np * 4) != 0)
            fail_msg("case %d (saved %d): argmax differs", idx, saved);
    }

    /* discard_out: the same pool output and argmax, out left untouched */
    if (c->pool_k) {
        int64_t wsd = dq_conv2d_fused_workspace(c->N, c->C, c->H, c->W, c->KH, c->KW, c->OC, p);
        if (wsd < wsn) wsd = wsn;
        float *ws2 = s_calloc(wsd, 4);
        dq_conv2d_epilogue ed = e;
        ed.discard_out = true;
        s_fill_nan(y1, ny, -7.0f);
        s_fill_nan(pl1, np, -7.0f);
        memset(am1, 0xff, (size_t)np * 4);
        assert_int_equal(dq_conv2d_fused_forward(&ty1, &tp1, am1, NULL, 0, &tx, &tw, bias, p, ed,
                                                 ws2, wsd, &err),
                         DQ_OK);
        if (memcmp(pl0, pl1, (size_t)np * 4) != 0)
            fail_msg("case %d (discard): pool output differs", idx);
        if (memcmp(am0, am1, (size_t)np * 4) != 0)
            fail_msg("case %d (discard): argmax differs", idx);
        for (int64_t i = 0; i < ny; i++)
            if (y1[i] != -7.0f) fail_msg("case %d (discard): output written at %lld", idx,
                                         (long long)i);
        /* one float short of the workspace, or no pool: refused */
        assert_int_equal(dq_conv2d_fused_forward(&ty1, &tp1, am1, NULL, 0, &tx, &tw, bias, p, ed,
                                                 ws2, dq_conv2d_fused_workspace(c->N, c->C, c->H,
                                                 c->W, c->KH, c->KW, c->OC, p) - 1, &err)
                             == DQ_OK,
                         false);
        ed.pool_kernel = 0;
        assert_int_equal(dq_conv2d_fused_forward(&ty1, NULL, NULL, NULL, 0, &tx, &tw, bias, p, ed,
                                                 ws2, wsd, &err),
                         DQ_ERR_ARG);
        assert_non_null(strstr(err.msg, "needs a pool"));
        free(ws2);
    }

    /* backward from the saved columns == backward that lowers again */
    if (!c->nan) {
        float *dy = s_calloc(ny, 4);
        dq_test_fill(dy, NULL, ny, rng, -1.0f, 1.0f);
        float *g[2][3];
        for (int v = 0; v < 2; v++) {
            g[v][0] = s_calloc(nx, 4);
            g[v][1] = s_calloc(nw, 4);
            g[v][2] = s_calloc(c->OC, 4);
        }
        dq_test_fill(g[0][0], NULL, nx, rng, -1.0f, 1.0f);
        dq_test_fill(g[0][1], NULL, nw, rng, -1.0f, 1.0f);
        dq_test_fill(g[0][2], NULL, c->OC, rng, -1.0f, 1.0f);
        memcpy(g[1][0], g[0][0], (size_t)nx * 4);
        memcpy(g[1][1], g[0][1], (size_t)nw * 4);
        memcpy(g[1][2], g[0][2], (size_t)c->OC * 4);
        dq_tensor tdy = dq_tensor_view4(dy, c->N, c->OC, OH, OW);
        dq_tensor dx[2], dw[2], db[2];
        for (int v = 0; v < 2; v++) {
            dx[v] = dq_tensor_view4(g[v][0], c->N, c->C, c->H, c->W);
            dw[v] = dq_tensor_view4(g[v][1], c->OC, c->C, c->KH, c->KW);
            db[v] = dq_tensor_view(g[v][2], 1, bshape);
        }
        assert_int_equal(dq_conv2d_backward(&dx[0], &dw[0], &db[0], &tdy, &tx, &tw, p, ws, wsn,
                                            &err),
                         DQ_OK);
        assert_int_equal(dq_conv2d_backward_cols(&dx[1], &dw[1], &db[1], &tdy, &tx, &tw, p, cols,
                                                 coln, ws, wsn, &err),
                         DQ_OK);
        if (memcmp(g[0][0], g[1][0], (size_t)nx * 4) != 0)
            fail_msg("case %d: dinput differs", idx);
        if (memcmp(g[0][1], g[1][1], (size_t)nw * 4) != 0)
            fail_msg("case %d: dweight differs", idx);
        if (memcmp(g[0][2], g[1][2], (size_t)c->OC * 4) != 0)
            fail_msg("case %d: dbias differs", idx);
        /* no input gradient (a first layer): the weight gradient still matches */
        assert_int_equal(dq_conv2d_backward_cols(NULL, &dw[1], NULL, &tdy, &tx, &tw, p, cols,
                                                 coln, ws, wsn, &err),
                         DQ_OK);
        assert_int_equal(dq_conv2d_backward(NULL, &dw[0], NULL, &tdy, &tx, &tw, p, ws, wsn,
                                            &err),
                         DQ_OK);
        if (memcmp(g[0][1], g[1][1], (size_t)nw * 4) != 0)
            fail_msg("case %d: dweight (no din) differs", idx);
        for (int v = 0; v < 2; v++) free(g[v][0]), free(g[v][1]), free(g[v][2]);
        free(dy);
    }
    free(x), free(w), free(b), free(ws), free(cols), free(y0), free(y1), free(pl0), free(pl1);
    free(am0), free(am1);
}

static void test_matches_unfused(void **state)
{
    (void)state;
    static const cfg cases[] = {
        /* N  C   H   W  OC KH KW s pad bias relu pk ps ws mg nan */
        {128, 1, 28, 28, 16, 3, 3, 1, 1, true, true, 2, 2, 0, 0, false},   /* LightNN 1 */
        {128, 16, 14, 14, 16, 3, 3, 1, 1, true, true, 2, 2, 0, 0, false},  /* LightNN 2 */
        {5, 4, 7, 6, 3, 3, 3, 1, 1, true, true, 2, 2, 0, 2, false},   /* groups of 2, odd */
        {7, 3, 9, 9, 4, 3, 3, 1, 1, false, true, 3, 2, 64, 0, false}, /* overlapping pool */
        {3, 8, 5, 5, 4, 1, 1, 1, 0, true, true, 2, 1, 0, 0, false},   /* pointwise */
        {4, 2, 11, 9, 5, 3, 2, 2, 1, true, true, 2, 2, 0, 0, false},  /* stride 2, OC > K */
        {6, 5, 8, 8, 6, 3, 3, 1, 1, true, false, 0, 0, 0, 0, false},  /* relu only */
        {6, 5, 8, 8, 6, 3, 3, 1, 1, true, false, 2, 2, 0, 0, false},  /* pool, no relu */
        {6, 5, 8, 8, 6, 3, 3, 1, 1, false, false, 0, 0, 0, 1, false}, /* plain, max_group 1 */
        {4, 3, 6, 6, 2, 3, 3, 1, 1, true, true, 2, 2, 0, 0, true},    /* NaN inputs */
    };
    dq_rng rng;
    dq_rng_seed(&rng, 17);
    for (int i = 0; i < (int)(sizeof cases / sizeof cases[0]); i++) run_case(&cases[i], i, &rng);
}

/* One image, one channel, 3x3 input, 2x2 kernel -> 2x2 conv -> relu -> one
 * 2x2 pool, worked out by hand. */
static void test_hand_computed(void **state)
{
    (void)state;
    float x[9] = {1, 2, 0, -1, 3, 1, 0, -2, 4};
    float w[4] = {1, -1, 0.5f, 2}; /* [[1, -1], [0.5, 2]] */
    float b[1] = {-1};
    float y[4], pl[1], cols[80], ws[16];
    int32_t am[1];
    int64_t b1[1] = {1};
    dq_tensor tx = dq_tensor_view4(x, 1, 1, 3, 3), tw = dq_tensor_view4(w, 1, 1, 2, 2);
    dq_tensor tb = dq_tensor_view(b, 1, b1), ty = dq_tensor_view4(y, 1, 1, 2, 2);
    dq_tensor tp = dq_tensor_view4(pl, 1, 1, 1, 1);
    dq_conv2d_params p = {1, 0, 0};
    dq_conv2d_epilogue e = {true, 2, 2, false};
    dq_err err = {{0}};
    assert_true(dq_conv2d_cols_floats(1, 1, 3, 3, 2, 2, p) == 80);
    assert_int_equal(dq_conv2d_fused_forward(&ty, &tp, am, cols, 80, &tx, &tw, &tb, p, e, ws,
                                             16, &err),
                     DQ_OK);
    /* y[0] = 1*1 + 2*-1 + -1*0.5 + 3*2 - 1 = 3.5
     * y[1] = 2*1 + 0*-1 + 3*0.5 + 1*2 - 1 = 4.5
     * y[2] = -1*1 + 3*-1 + 0*0.5 + -2*2 - 1 = -9 -> relu 0
     * y[3] = 3*1 + 1*-1 + -2*0.5 + 4*2 - 1 = 8 */
    assert_float_equal(y[0], 3.5f, 0.0f);
    assert_float_equal(y[1], 4.5f, 0.0f);
    assert_float_equal(y[2], 0.0f, 0.0f);
    assert_float_equal(y[3], 8.0f, 0.0f);
    assert_float_equal(pl[0], 8.0f, 0.0f);
    assert_int_equal(am[0], 3); /* bottom-right of the 2x2 conv plane */
}

static void test_errors(void **state)
{
    (void)state;
    float x[2 * 2 * 6 * 6] = {0}, w[3 * 2 * 9] = {0}, y[2 * 3 * 36] = {0}, pl[2 * 3 * 9] = {0};
    int32_t am[2 * 3 * 9];
    dq_conv2d_params p = {1, 1, 0};
    int64_t wsn = dq_conv2d_workspace(2, 2, 6, 6, 3, 3, p);
    int64_t coln = dq_conv2d_cols_floats(2, 2, 6, 6, 3, 3, p);
    assert_int_equal(coln, 2 * 18 * (36 + 16));
    float *ws = s_calloc(wsn, 4), *cols = s_calloc(coln, 4);
    dq_tensor tx = dq_tensor_view4(x, 2, 2, 6, 6), tw = dq_tensor_view4(w, 3, 2, 3, 3);
    dq_tensor ty = dq_tensor_view4(y, 2, 3, 6, 6), tp = dq_tensor_view4(pl, 2, 3, 3, 3);
    dq_tensor tp_bad = dq_tensor_view4(pl, 2, 3, 2, 3);
    dq_conv2d_epilogue e = {true, 2, 2, false};
    dq_err err = {{0}};
    assert_int_equal(dq_conv2d_fused_forward(&ty, &tp_bad, am, NULL, 0, &tx, &tw, NULL, p, e, ws,
                                             wsn, &err),
                     DQ_ERR_SHAPE);
    assert_non_null(strstr(err.msg, "conv2d (fused): pool output"));
    assert_int_equal(dq_conv2d_fused_forward(&ty, &tp, NULL, NULL, 0, &tx, &tw, NULL, p, e, ws,
                                             wsn, &err),
                     DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "argmax is missing"));
    dq_conv2d_epilogue e7 = {true, 7, 7, false};
    assert_int_equal(dq_conv2d_fused_forward(&ty, &tp, am, NULL, 0, &tx, &tw, NULL, p, e7, ws,
                                             wsn, &err),
                     DQ_ERR_SHAPE);
    assert_non_null(strstr(err.msg, "does not fit"));
    assert_int_equal(dq_conv2d_fused_forward(&ty, &tp, am, cols, coln - 1, &tx, &tw, NULL, p, e,
                                             ws, wsn, &err),
                     DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "column buffer"));
    assert_int_equal(dq_conv2d_fused_forward(&ty, &tp, am, NULL, 0, &tx, &tw, NULL, p, e, NULL,
                                             wsn, &err),
                     DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "workspace"));
    float gw[3 * 2 * 9] = {0};
    dq_tensor tgw = dq_tensor_view4(gw, 3, 2, 3, 3);
    assert_int_equal(dq_conv2d_backward_cols(NULL, &tgw, NULL, &ty, &tx, &tw, p, NULL, coln, ws,
                                             wsn, &err),
                     DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "column buffer is missing"));
    dq_tensor tgw_bad = dq_tensor_view4(gw, 3, 2, 1, 9);
    assert_int_equal(dq_conv2d_backward_cols(NULL, &tgw_bad, NULL, &ty, &tx, &tw, p, cols, coln,
                                             ws, wsn, &err),
                     DQ_ERR_SHAPE);
    assert_non_null(strstr(err.msg, "weight gradient"));
    /* the fused backward checks the weight against the input's channels as
     * the others do (conv2d_check.c), naming what it has and expects */
    float w3[3 * 3 * 9] = {0}, pd[2 * 3 * 9] = {0};
    dq_tensor tw3 = dq_tensor_view4(w3, 3, 3, 3, 3), tpd = dq_tensor_view4(pd, 2, 3, 3, 3);
    int64_t rwsn = dq_conv2d_relu_maxpool_backward_workspace(2, 6, 6, 3, 3, 3, p);
    assert_true(rwsn > 0 && rwsn <= wsn);
    assert_int_equal(dq_conv2d_relu_maxpool_backward(NULL, &tgw, NULL, &tpd, am, &tp, &tx, &tw3,
                                                     p, 2, 2, ws, rwsn, &err),
                     DQ_ERR_SHAPE);
    assert_string_equal(err.msg, "conv2d+relu+maxpool backward: weight has shape [3, 3, 3, 3], "
                                 "expected [3, 2, 3, 3]");
    /* these paths are ungrouped: a grouped call is refused, not computed wrong */
    dq_conv2d_params pg = p;
    pg.groups = 2;
    dq_tensor tw_g = dq_tensor_view4(w, 2, 1, 3, 3), ty_g = dq_tensor_view4(y, 2, 2, 6, 6);
    assert_int_equal(dq_conv2d_fused_forward(&ty_g, NULL, NULL, NULL, 0, &tx, &tw_g, NULL, pg,
                                             (dq_conv2d_epilogue){true, 0, 0, false}, ws, wsn,
                                             &err),
                     DQ_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "groups 2: this path is ungrouped only"));
    free(ws), free(cols);
}

/* ---- relu -> maxpool backward from the pool output ------------------------
 * Against dq_maxpool2d_relu_backward_set on the same forward, bit for bit,
 * from differently pre-filled input gradients (both overwrite). Inputs have
 * ties and negatives, output gradients -0 and inf. */
typedef struct {
    int N, C, H, W, k, s;
} pool_cfg;

static void run_pool_case(const pool_cfg *c, int idx, dq_rng *rng)
{
    const int64_t OH = dq_maxpool2d_out_size(c->H, c->k, c->s);
    const int64_t OW = dq_maxpool2d_out_size(c->W, c->k, c->s);
    const int64_t nx = (int64_t)c->N * c->C * c->H * c->W, ny = (int64_t)c->N * c->C * OH * OW;
    float *x = s_calloc(nx, 4), *y = s_calloc(ny, 4), *dy = s_calloc(ny, 4);
    float *d0 = s_calloc(nx, 4), *d1 = s_calloc(nx, 4);
    int32_t *am = s_calloc(ny, 4);
    /* a coarse grid: ties inside windows; about half the values <= 0 */
    for (int64_t i = 0; i < nx; i++) x[i] = (float)((int)(dq_rng_range(rng, 0, 8)) - 4) * 0.5f;
    dq_test_fill(dy, NULL, ny, rng, -1.0f, 1.0f);
    for (int64_t i = 0; i < ny; i += 7) dy[i] = -0.0f;
    dy[ny / 2] = INFINITY;
    s_fill_nan(d0, nx, 3.0f);
    s_fill_nan(d1, nx, -5.0f);
    dq_tensor tx = dq_tensor_view4(x, c->N, c->C, c->H, c->W);
    dq_tensor ty = dq_tensor_view4(y, c->N, c->C, OH, OW);
    dq_tensor tdy = dq_tensor_view4(dy, c->N, c->C, OH, OW);
    dq_tensor td0 = dq_tensor_view4(d0, c->N, c->C, c->H, c->W);
    dq_tensor td1 = dq_tensor_view4(d1, c->N, c->C, c->H, c->W);
    dq_err err = {{0}};
    assert_int_equal(dq_relu_forward(&tx, &tx, &err), DQ_OK);
    assert_int_equal(dq_maxpool2d_forward(&ty, am, &tx, c->k, c->s, &err), DQ_OK);
    assert_int_equal(dq_maxpool2d_relu_backward_set(&td0, &tdy, am, &tx, &err), DQ_OK);
    assert_int_equal(dq_maxpool2d_relu_backward_pooled(&td1, &tdy, am, &ty, c->k, c->s, &err),
                     DQ_OK);
    if (memcmp(d0, d1, (size_t)nx * 4) != 0) {
        int64_t i = 0;
        while (memcmp(&d0[i], &d1[i], 4) == 0) i++;
        fail_msg("pool case %d: input gradient differs at %lld: %g vs %g", idx, (long long)i,
                 (double)d0[i], (double)d1[i]);
    }
    int nonzero = 0;
    for (int64_t i = 0; i < nx; i++) nonzero += d1[i] != 0.0f;
    assert_true(nonzero > 0); /* the case exercises real gradients */
    free(x), free(y), free(dy), free(d0), free(d1), free(am);
}

/* conv -> relu -> maxpool backward in one per-image pass == the unfused
 * chain (pool+relu backward into the conv's output gradient, then conv
 * backward), bit for bit, with pre-filled parameter and input gradients. */
static void run_chain_case(const cfg *c, int idx, dq_rng *rng)
{
    dq_conv2d_params p = {c->stride, c->pad, 0};
    const int64_t OH = dq_conv2d_out_size(c->H, c->KH, c->stride, c->pad);
    const int64_t OW = dq_conv2d_out_size(c->W, c->KW, c->stride, c->pad);
    const int64_t PH = dq_maxpool2d_out_size(OH, c->pool_k, c->pool_s);
    const int64_t PW = dq_maxpool2d_out_size(OW, c->pool_k, c->pool_s);
    const int64_t nx = (int64_t)c->N * c->C * c->H * c->W;
    const int64_t nw = (int64_t)c->OC * c->C * c->KH * c->KW;
    const int64_t ny = (int64_t)c->N * c->OC * OH * OW, np = (int64_t)c->N * c->OC * PH * PW;
    float *x = s_calloc(nx, 4), *w = s_calloc(nw, 4), *b = s_calloc(c->OC, 4);
    float *y = s_calloc(ny, 4), *pl = s_calloc(np, 4), *pd = s_calloc(np, 4);
    float *dy = s_calloc(ny, 4);
    int32_t *am = s_calloc(np, 4);
    dq_test_fill(x, NULL, nx, rng, -1.0f, 1.0f);
    dq_test_fill(w, NULL, nw, rng, -1.0f, 1.0f);
    dq_test_fill(b, NULL, c->OC, rng, -1.0f, 1.0f);
    dq_test_fill(pd, NULL, np, rng, -1.0f, 1.0f);
    int64_t wsn = dq_conv2d_workspace(c->N, c->C, c->H, c->W, c->KH, c->KW, p);
    int64_t wsf = dq_conv2d_relu_maxpool_backward_workspace(c->C, c->H, c->W, c->KH, c->KW,
                                                            c->OC, p);
    if (wsf > wsn) wsn = wsf;
    float *ws = s_calloc(wsn, 4);
    int64_t bshape[1] = {c->OC};
    dq_tensor tx = dq_tensor_view4(x, c->N, c->C, c->H, c->W);
    dq_tensor tw = dq_tensor_view4(w, c->OC, c->C, c->KH, c->KW);
    dq_tensor tb = dq_tensor_view(b, 1, bshape);
    dq_tensor ty = dq_tensor_view4(y, c->N, c->OC, OH, OW);
    dq_tensor tp = dq_tensor_view4(pl, c->N, c->OC, PH, PW);
    dq_tensor tpd = dq_tensor_view4(pd, c->N, c->OC, PH, PW);
    dq_tensor tdy = dq_tensor_view4(dy, c->N, c->OC, OH, OW);
    dq_conv2d_epilogue e = {true, c->pool_k, c->pool_s, false};
    dq_err err = {{0}};
    assert_int_equal(dq_conv2d_fused_forward(&ty, &tp, am, NULL, 0, &tx, &tw, &tb, p, e, ws, wsn,
                                             &err),
                     DQ_OK);
    float *g[2][3];
    for (int v = 0; v < 2; v++) {
        g[v][0] = s_calloc(nx, 4);
        g[v][1] = s_calloc(nw, 4);
        g[v][2] = s_calloc(c->OC, 4);
    }
    dq_test_fill(g[0][0], NULL, nx, rng, -1.0f, 1.0f);
    dq_test_fill(g[0][1], NULL, nw, rng, -1.0f, 1.0f);
    dq_test_fill(g[0][2], NULL, c->OC, rng, -1.0f, 1.0f);
    memcpy(g[1][0], g[0][0], (size_t)nx * 4);
    memcpy(g[1][1], g[0][1], (size_t)nw * 4);
    memcpy(g[1][2], g[0][2], (size_t)c->OC * 4);
    dq_tensor dx[2], dw[2], db[2];
    for (int v = 0; v < 2; v++) {
        dx[v] = dq_tensor_view4(g[v][0], c->N, c->C, c->H, c->W);
        dw[v] = dq_tensor_view4(g[v][1], c->OC, c->C, c->KH, c->KW);
        db[v] = dq_tensor_view(g[v][2], 1, bshape);
    }
    /* unfused: relu+pool backward into dy, then the conv backward */
    assert_int_equal(dq_maxpool2d_relu_backward_set(&tdy, &tpd, am, &ty, &err), DQ_OK);
    assert_int_equal(dq_conv2d_backward(&dx[0], &dw[0], &db[0], &tdy, &tx, &tw, p, ws, wsn,
                                        &err),
                     DQ_OK);
    dq_status fst = dq_conv2d_relu_maxpool_backward(&dx[1], &dw[1], &db[1], &tpd, am, &tp, &tx,
                                                    &tw, p, c->pool_k, c->pool_s, ws, wsn, &err);
    const int64_t P = (int64_t)OH * OW;
    if (c->N > 1 && P < DQ_CONV2D_BWD_GROUP_P &&
        !dq_conv2d_backward_per_image(c->N, (int64_t)c->C * c->KH * c->KW, P, c->OC, wsn)) {
        /* dq_conv2d_backward groups these images: refused, not different */
        assert_int_equal(fst, DQ_ERR_UNSUPPORTED);
        assert_non_null(strstr(err.msg, "groups these"));
        for (int v = 0; v < 2; v++) free(g[v][0]), free(g[v][1]), free(g[v][2]);
        free(x), free(w), free(b), free(y), free(pl), free(pd), free(dy), free(am), free(ws);
        return;
    }
    assert_int_equal(fst, DQ_OK);
    const char *names[3] = {"dinput", "dweight", "dbias"};
    const int64_t sizes[3] = {nx, nw, c->OC};
    for (int k = 0; k < 3; k++)
        if (memcmp(g[0][k], g[1][k], (size_t)sizes[k] * 4) != 0)
            fail_msg("chain case %d: %s differs", idx, names[k]);
    /* first layer: no input gradient */
    assert_int_equal(dq_conv2d_relu_maxpool_backward(NULL, &dw[1], NULL, &tpd, am, &tp, &tx, &tw,
                                                     p, c->pool_k, c->pool_s, ws, wsn, &err),
                     DQ_OK);
    assert_int_equal(dq_conv2d_backward(NULL, &dw[0], NULL, &tdy, &tx, &tw, p, ws, wsn, &err),
                     DQ_OK);
    if (memcmp(g[0][1], g[1][1], (size_t)nw * 4) != 0)
        fail_msg("chain case %d: dweight (no din) differs", idx);
    /* too small a workspace is refused */
    assert_int_equal(dq_conv2d_relu_maxpool_backward(NULL, &dw[1], NULL, &tpd, am, &tp, &tx, &tw,
                                                     p, c->pool_k, c->pool_s, ws, wsf - 1, &err),
                     DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "workspace"));
    for (int v = 0; v < 2; v++) free(g[v][0]), free(g[v][1]), free(g[v][2]);
    free(x), free(w), free(b), free(y), free(pl), free(pd), free(dy), free(am), free(ws);
}

static void test_chain_backward_matches_unfused(void **state)
{
    (void)state;
    static const cfg cases[] = {
        /* N  C   H   W  OC KH KW s pad bias relu pk ps ws mg nan */
        {128, 1, 28, 28, 16, 3, 3, 1, 1, true, true, 2, 2, 0, 0, false},  /* LightNN 1 */
        {128, 16, 14, 14, 16, 3, 3, 1, 1, true, true, 2, 2, 0, 0, false}, /* LightNN 2 */
        {3, 8, 5, 5, 4, 1, 1, 1, 0, true, true, 2, 2, 0, 0, false},       /* pointwise, odd */
        {4, 2, 11, 9, 5, 3, 2, 2, 1, true, true, 3, 2, 0, 0, false},      /* overlapping pool */
        {1, 8, 5, 5, 4, 1, 1, 1, 0, true, true, 2, 2, 0, 0, false},       /* pointwise, 1 image */
        {1, 2, 11, 9, 5, 3, 2, 2, 1, true, true, 3, 2, 0, 0, false},      /* overlap, 1 image */
    };
    dq_rng rng;
    dq_rng_seed(&rng, 29);
    for (int i = 0; i < (int)(sizeof cases / sizeof cases[0]); i++)
        run_chain_case(&cases[i], i, &rng);
}

static void test_pool_backward_matches_unfused(void **state)
{
    (void)state;
    static const pool_cfg cases[] = {
        {128, 16, 28, 28, 2, 2}, /* LightNN 1 */
        {3, 2, 14, 14, 2, 2},    /* OW = 7: SSE + scalar tail */
        {2, 3, 9, 11, 2, 2},     /* odd: last row/column in no window */
        {2, 2, 4, 16, 2, 2},     /* OW = 8: SSE only */
        {2, 2, 7, 7, 3, 2},      /* overlapping windows: scatter path */
        {2, 2, 9, 9, 3, 3},      /* kernel = stride 3 */
        {1, 1, 3, 3, 2, 2},      /* one window */
    };
    dq_rng rng;
    dq_rng_seed(&rng, 23);
    for (int i = 0; i < (int)(sizeof cases / sizeof cases[0]); i++)
        run_pool_case(&cases[i], i, &rng);
}

/* One 2x4 plane by hand: two windows, one live and one dead. */
static void test_pool_backward_hand_computed(void **state)
{
    (void)state;
    float y[2] = {0.5f, 0.0f}, dy[2] = {2.0f, 3.0f}, d[8];
    int32_t am[2] = {5, 2}; /* bottom-left of window 0; top-left of window 1 */
    dq_tensor ty = dq_tensor_view4(y, 1, 1, 1, 2), tdy = dq_tensor_view4(dy, 1, 1, 1, 2);
    dq_tensor td = dq_tensor_view4(d, 1, 1, 2, 4);
    s_fill_nan(d, 8, 9.0f);
    dq_err err = {{0}};
    assert_int_equal(dq_maxpool2d_relu_backward_pooled(&td, &tdy, am, &ty, 2, 2, &err), DQ_OK);
    const float want[8] = {0, 0, 0, 0, 0, 2.0f, 0, 0};
    for (int i = 0; i < 8; i++) assert_float_equal(d[i], want[i], 0.0f);

    /* an argmax outside its window is an error, and nothing is written
     * outside the gradient */
    am[1] = 4;
    assert_int_equal(dq_maxpool2d_relu_backward_pooled(&td, &tdy, am, &ty, 2, 2, &err),
                     DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "1 argmax entries lie outside their 2x2 window"));
    assert_int_equal(dq_maxpool2d_relu_backward_pooled(&td, &tdy, NULL, &ty, 2, 2, &err),
                     DQ_ERR_ARG);
    dq_tensor ty_bad = dq_tensor_view4(y, 1, 1, 2, 1);
    assert_int_equal(dq_maxpool2d_relu_backward_pooled(&td, &tdy, am, &ty_bad, 2, 2, &err),
                     DQ_ERR_SHAPE);
    assert_non_null(strstr(err.msg, "pool output"));
    assert_int_equal(dq_maxpool2d_relu_backward_pooled(&td, &tdy, am, &ty, 3, 3, &err),
                     DQ_ERR_SHAPE);
    assert_non_null(strstr(err.msg, "does not match kernel 3"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_computed),
        cmocka_unit_test(test_matches_unfused),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_pool_backward_hand_computed),
        cmocka_unit_test(test_pool_backward_matches_unfused),
        cmocka_unit_test(test_chain_backward_matches_unfused),
    };
    return cmocka_run_group_tests_name("fused", tests, NULL, NULL);
}
