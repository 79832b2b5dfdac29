/* conv2d_fused.c - training-mode conv2d with relu and max pooling fused into
 * its epilogue, and a backward that reuses the forward's column matrix.
 *
 * Why: in LightNN's training step the conv output (6.4 MB for the first
 * layer at batch 128) was written by the GEMM, read and written again by
 * relu, and read a third time by maxpool, each pass over the whole batch and
 * so from memory; and backward lowered every image a second time (im2col)
 * for the weight gradient. Here relu and the pool of an image (or a group of
 * images) run right after its GEMM, while its output is still in cache, and
 * the column matrix the forward built can be kept for backward.
 *
 * Forward, per group of G images: exactly dq_conv2d_forward's groups, GEMMs,
 * bias pre-fill and permute (conv2d.c; s_group mirrors its rule), so every
 * value is bitwise what the unfused composition conv -> relu -> maxpool
 * gives (test_conv2d_fused asserts that). The relu is applied on the way
 * (in the permute for G > 1, in place for G = 1, with relu.c's expression
 * x <= 0 ? 0 : x), and the pool is dq_maxpool2d_forward itself on a
 * view of the group, so pooling is the same code. The relu'd conv output is
 * written to out unless the caller says nothing reads it (discard_out: the
 * backward below rebuilds what it needs from the pool's output), in which
 * case it only ever lives in the workspace, after the group's columns.
 *
 * Saved columns: with a cols buffer of dq_conv2d_cols_floats, im2col writes
 * each group's columns there instead of into the shared workspace. Layout:
 * group q (images [q*G, q*G + gn)) at cols + q*K*(G*P + 16), row stride
 * s_pad_ld(gn*P) (<= G*P + 16), image j of the group at column j*P. The
 * backward computes G from the same arguments, so both agree on where an
 * image's columns are; its GEMMs are dq_conv2d_backward's (same shapes and
 * values, only the column source differs), so gradients are bitwise equal.
 * A pointwise (1x1, stride 1, unpadded) conv needs no columns: the image is
 * its own column matrix, and cols is then ignored.
 *
 * The net (model/net.c) does not keep columns today. Measured on LightNN at
 * batch 128 (callgrind, 1 MB L2 modelled): keeping them saves 6.8 M of 177 M
 * instructions per step but adds 0.33 M L2 misses (19 MB written in the
 * forward, streamed back in the backward, where re-lowering reads the 1.6 MB
 * input into a cache-resident workspace), and CPU time was no better. A
 * layer whose lowering is expensive relative to memory bandwidth may differ.
 */
#include "tensor/ops.h"

#include <cblas.h>
#include <string.h>

#include "tensor/conv2d_int.h"
#include "tensor/im2col.h"

/* conv2d.c's group budget and row padding (see its top comment). */
#define S_GROUP_BYTES ((int64_t)2 << 20)
#define S_LD_PAD 16

static int64_t s_pad_ld(int64_t n)
{
    return n % 256 == 0 ? n + S_LD_PAD : n;
}

static int64_t s_col_ld(int64_t n, int64_t K, int64_t ws_floats)
{
    return K * s_pad_ld(n) <= ws_floats ? s_pad_ld(n) : n;
}

static int s_is_pointwise(const dq_im2col_geom *g)
{
    return g->KH == 1 && g->KW == 1 && g->stride == 1 && g->pad == 0;
}

/* Images per GEMM: dq_conv2d_forward's rule for these arguments. */
static int64_t s_group(int64_t N, int64_t K, int64_t P, int64_t OC, int pointwise,
                       int64_t ws_floats, int max_group)
{
    int64_t plan = S_GROUP_BYTES / ((int64_t)sizeof(float) * K * P);
    if (plan > N) plan = N;
    if (plan < 1) plan = 1;
    int64_t G = ws_floats / (K * P);
    if (G > plan) G = plan;
    if (OC > K || pointwise) G = 1;
    if (max_group > 0 && G > max_group) G = max_group;
    return G;
}

int64_t dq_conv2d_fused_workspace(int64_t N, int64_t C, int64_t H, int64_t W, int64_t KH,
                                  int64_t KW, int64_t OC, dq_conv2d_params p)
{
    int64_t OH = dq_conv2d_out_size(H, KH, p.stride, p.padding);
    int64_t OW = dq_conv2d_out_size(W, KW, p.stride, p.padding);
    if (N < 1 || C < 1 || OH < 1 || OW < 1) return 0;
    const int64_t K = C * KH * KW, P = OH * OW;
    const int pointwise = KH == 1 && KW == 1 && p.stride == 1 && p.padding == 0;
    const int64_t G = s_group(N, K, P, OC, pointwise, INT64_MAX, p.max_group);
    return K * (G * P + S_LD_PAD) + OC * G * P;
}

int64_t dq_conv2d_cols_floats(int64_t N, int64_t C, int64_t H, int64_t W, int64_t KH,
                              int64_t KW, dq_conv2d_params p)
{
    int64_t OH = dq_conv2d_out_size(H, KH, p.stride, p.padding);
    int64_t OW = dq_conv2d_out_size(W, KW, p.stride, p.padding);
    if (N < 1 || C < 1 || OH < 1 || OW < 1) return 0;
    if (KH == 1 && KW == 1 && p.stride == 1 && p.padding == 0) return 0;
    /* G*P + 16 per image row covers every group layout above. */
    return N * C * KH * KW * (OH * OW + S_LD_PAD);
}

/* The paths here are ungrouped (conv2d.c's GEMMs); groups > 1 would pass
 * dq_conv2d_check with a [OC, C/groups, ...] weight. */
static dq_status s_check_ungrouped(const char *op, dq_conv2d_params p, dq_err *err)
{
    if (p.groups > 1)
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "%s: groups %d: this path is ungrouped only",
                       op, p.groups);
    return DQ_OK;
}

/* conv2d_check.c's checks, one image's columns of workspace, and room in
 * the saved column buffer when there is one. */
static dq_status s_check(const dq_conv2d_call *c, dq_conv2d_params p, const float *cols,
                         int64_t cols_floats, const float *ws, int64_t ws_floats,
                         dq_im2col_geom *g, dq_err *err)
{
    DQ_TRY(s_check_ungrouped(c->op, p, err));
    DQ_TRY(dq_conv2d_check(c, p, g, err));
    DQ_TRY(dq_conv2d_check_workspace(c->op, ws, ws_floats,
                                     g->C * g->KH * g->KW * g->OH * g->OW, err));
    int64_t cneed = dq_conv2d_cols_floats(c->in->shape[0], g->C, g->H, g->W, g->KH, g->KW, p);
    if (cols && cols_floats < cneed)
        return dq_fail(err, DQ_ERR_ARG, "%s: column buffer has %lld floats, needs %lld", c->op,
                       (long long)cols_floats, (long long)cneed);
    return DQ_OK;
}


/* dst[i] = src[i] + b, then relu when asked (relu.c's x <= 0 ? 0 : x). */
static void s_copy_add(float *restrict dst, const float *restrict src, float b, int64_t n,
                       bool relu)
{
    int64_t i = 0;
    if (relu) {
        for (; i + 8 <= n; i += 8)
            for (int k = 0; k < 8; k++) {
                float y = src[i + k] + b;
                dst[i + k] = y <= 0.0f ? 0.0f : y;
            }
        for (; i < n; i++) {
            float y = src[i] + b;
            dst[i] = y <= 0.0f ? 0.0f : y;
        }
        return;
    }
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) dst[i + k] = src[i + k] + b;
    for (; i < n; i++) dst[i] = src[i] + b;
}

static void s_relu_inplace(float *x, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) x[i + k] = x[i + k] <= 0.0f ? 0.0f : x[i + k];
    for (; i < n; i++) x[i] = x[i] <= 0.0f ? 0.0f : x[i];
}


/* Pools gn images at x (shaped like out's) into images [n0, n0 + gn) of
 * pool_out/argmax. */
static dq_status s_pool(dq_tensor *pool_out, int32_t *argmax, float *x_data,
                        const dq_tensor *out, int64_t n0, int64_t gn, dq_conv2d_epilogue e,
                        dq_err *err)
{
    const int64_t pimg = pool_out->shape[1] * pool_out->shape[2] * pool_out->shape[3];
    dq_tensor x = dq_tensor_view4(x_data, gn, out->shape[1], out->shape[2], out->shape[3]);
    dq_tensor y = dq_tensor_view4(pool_out->data + n0 * pimg, gn, pool_out->shape[1],
                                  pool_out->shape[2], pool_out->shape[3]);
    return dq_maxpool2d_forward(&y, argmax + n0 * pimg, &x, e.pool_kernel, e.pool_stride, err);
}

dq_status dq_conv2d_fused_forward(dq_tensor *out, dq_tensor *pool_out, int32_t *argmax,
                                  float *cols, int64_t cols_floats, const dq_tensor *in,
                                  const dq_tensor *w, const dq_tensor *b, dq_conv2d_params p,
                                  dq_conv2d_epilogue e, float *ws, int64_t ws_floats,
                                  dq_err *err)
{
    const char *op = "conv2d (fused)";
    dq_im2col_geom g;
    const dq_conv2d_call c = {.op = op, .in = in, .w = w, .y = out, .b = b, .gemm = true};
    DQ_TRY(s_check(&c, p, cols, cols_floats, ws, ws_floats, &g, err));
    const int64_t N = in->shape[0], OC = w->shape[0];
    if (e.pool_kernel > 0) {
        if (!pool_out || !argmax)
            return dq_fail(err, DQ_ERR_ARG, "%s: pool output or argmax is missing", op);
        int64_t ph = dq_maxpool2d_out_size(g.OH, e.pool_kernel, e.pool_stride);
        int64_t pw = dq_maxpool2d_out_size(g.OW, e.pool_kernel, e.pool_stride);
        if (ph < 1 || pw < 1)
            return dq_fail(err, DQ_ERR_SHAPE, "%s: pool kernel %d / stride %d does not fit the "
                           "%lldx%lld output", op, e.pool_kernel, e.pool_stride,
                           (long long)g.OH, (long long)g.OW);
        int64_t pshape[4] = {N, OC, ph, pw};
        DQ_TRY(dq_tensor_expect(pool_out, op, "pool output", 4, pshape, err));
    }
    const int64_t K = g.C * g.KH * g.KW, P = g.OH * g.OW, img = g.C * g.H * g.W;
    const int pointwise = s_is_pointwise(&g);
    const int64_t G = s_group(N, K, P, OC, pointwise, ws_floats, p.max_group);
    const int64_t blk = K * (G * P + S_LD_PAD); /* one group's (saved) columns */
    if (pointwise) cols = NULL;
    float *scratch = NULL; /* discard_out: the group's conv output, after the columns */
    if (e.discard_out) {
        if (e.pool_kernel <= 0)
            return dq_fail(err, DQ_ERR_ARG, "%s: discarding the output needs a pool", op);
        if (ws_floats < blk + OC * G * P)
            return dq_fail(err, DQ_ERR_ARG, "%s: workspace has %lld floats, needs %lld to "
                           "discard the output", op, (long long)ws_floats,
                           (long long)(blk + OC * G * P));
        scratch = ws + blk;
    }

    for (int64_t n0 = 0; n0 < N; n0 += G) {
        const int64_t gn = N - n0 < G ? N - n0 : G, ld = gn * P;
        float *slab = scratch ? scratch : out->data + n0 * OC * P;
        float *colbuf = cols ? cols + (n0 / G) * blk : ws;
        dq_conv2d_group_gemm(slab, colbuf, cols ? s_pad_ld(ld) : s_col_ld(ld, K, ws_floats),
                             in->data + n0 * img, gn, w, b, &g);
        float *done = slab; /* the group's [gn][OC][P] output, relu applied */
        if (gn == 1) {
            if (e.relu) s_relu_inplace(slab, OC * P);
        } else if (scratch) {
            /* [OC][gn][P] -> [gn][OC][P] into ws, whose columns are used up
             * (OC <= K here), bias and relu on the way */
            for (int64_t j = 0; j < gn; j++)
                for (int64_t o = 0; o < OC; o++)
                    s_copy_add(ws + (j * OC + o) * P, slab + (o * gn + j) * P,
                               b ? b->data[o] : 0.0f, P, e.relu);
            done = ws;
        } else {
            /* the same permute back into out, through ws */
            memcpy(ws, slab, (size_t)(OC * ld) * sizeof(float));
            for (int64_t j = 0; j < gn; j++)
                for (int64_t o = 0; o < OC; o++)
                    s_copy_add(slab + (j * OC + o) * P, ws + (o * gn + j) * P,
                               b ? b->data[o] : 0.0f, P, e.relu);
        }
        if (e.pool_kernel > 0) DQ_TRY(s_pool(pool_out, argmax, done, out, n0, gn, e, err));
    }
    return DQ_OK;
}

dq_status dq_conv2d_backward_cols(dq_tensor *din, dq_tensor *dw, dq_tensor *db,
                                  const dq_tensor *dout, const dq_tensor *in,
                                  const dq_tensor *w, dq_conv2d_params p, const float *cols,
                                  int64_t cols_floats, float *ws, int64_t ws_floats,
                                  dq_err *err)
{
    const char *op = "conv2d backward (saved columns)";
    dq_im2col_geom g;
    if (!cols) return dq_fail(err, DQ_ERR_ARG, "%s: column buffer is missing", op);
    const dq_conv2d_call c = {.op = op, .in = in, .w = w, .y = dout, .b = db, .din = din,
                              .dw = dw, .backward = true, .gemm = true};
    DQ_TRY(s_check(&c, p, cols, cols_floats, ws, ws_floats, &g, err));
    const int64_t N = in->shape[0], OC = w->shape[0];
    const int64_t K = g.C * g.KH * g.KW, P = g.OH * g.OW, img = g.C * g.H * g.W;
    const int pointwise = s_is_pointwise(&g);
    /* Where dq_conv2d_backward lays images side by side (small planes) its
     * sums run in another order: take it as it is, lowering again. */
    if (!dq_conv2d_backward_per_image(N, K, P, OC, ws_floats))
        return dq_conv2d_backward(din, dw, db, dout, in, w, p, ws, ws_floats, err);
    const int64_t G = s_group(N, K, P, OC, pointwise, ws_floats, p.max_group);
    const int64_t blk = K * (G * P + S_LD_PAD);
    const int64_t ldcol = s_col_ld(P, K, ws_floats);

    for (int64_t n = 0; n < N; n++) {
        /* the columns the forward saved (a pointwise conv reads the input) */
        const int64_t q = n / G, gn = N - q * G < G ? N - q * G : G;
        const float *col = pointwise ? NULL : cols + q * blk + (n - q * G) * P;
        dq_conv2d_backward_image(din, dw, db, dout->data + n * OC * P, in->data + n * img,
                                 din ? din->data + n * img : NULL, col, s_pad_ld(gn * P), w, &g,
                                 ws, ldcol);
    }
    return DQ_OK;
}

/* ---- backward of conv -> relu -> maxpool, one image at a time ----------------
 * Unfused, the relu/maxpool backward wrote the conv's whole output gradient
 * (6.4 MB for LightNN's first layer at batch 128) and the conv backward read
 * it back, both from memory. Here each image's output gradient is rebuilt
 * (dq_maxpool2d_relu_backward_pooled on a one-image view) into a scratch
 * plane after the workspace's columns and consumed there by the same GEMMs
 * as dq_conv2d_backward, so it never leaves the cache; the values, and so
 * the gradients, are bitwise the unfused ones. Only where dq_conv2d_backward
 * itself runs image by image (conv2d_int.h dq_conv2d_backward_per_image;
 * always from DQ_CONV2D_BWD_GROUP_P output positions): elsewhere it answers
 * DQ_ERR_UNSUPPORTED. */

int64_t dq_conv2d_relu_maxpool_backward_workspace(int64_t C, int64_t H, int64_t W, int64_t KH,
                                                  int64_t KW, int64_t OC, dq_conv2d_params p)
{
    int64_t OH = dq_conv2d_out_size(H, KH, p.stride, p.padding);
    int64_t OW = dq_conv2d_out_size(W, KW, p.stride, p.padding);
    if (C < 1 || OH < 1 || OW < 1) return 0;
    return C * KH * KW * s_pad_ld(OH * OW) + OC * OH * OW;
}

dq_status dq_conv2d_relu_maxpool_backward(dq_tensor *din, dq_tensor *dw, dq_tensor *db,
                                          const dq_tensor *pool_dout, const int32_t *argmax,
                                          const dq_tensor *pool_out, const dq_tensor *in,
                                          const dq_tensor *w, dq_conv2d_params p,
                                          int pool_kernel, int pool_stride, float *ws,
                                          int64_t ws_floats, dq_err *err)
{
    const char *op = "conv2d+relu+maxpool backward";
    dq_im2col_geom g;
    const dq_conv2d_call c = {.op = op, .in = in, .w = w, .b = db, .din = din, .dw = dw,
                              .backward = true, .gemm = true};
    DQ_TRY(s_check_ungrouped(op, p, err));
    DQ_TRY(dq_conv2d_check(&c, p, &g, err));
    const int64_t N = in->shape[0], OC = w->shape[0];
    const int64_t K = g.C * g.KH * g.KW, P = g.OH * g.OW, img = g.C * g.H * g.W;
    DQ_TRY(dq_conv2d_check_workspace(op, ws, ws_floats,
                                     dq_conv2d_relu_maxpool_backward_workspace(
                                         g.C, g.H, g.W, g.KH, g.KW, OC, p),
                                     err));
    DQ_TRY(dq_tensor_expect_rank(pool_dout, op, "pool output gradient", 4, err));
    if (pool_dout->shape[0] != N || pool_dout->shape[1] != OC) {
        char b[96];
        return dq_fail(err, DQ_ERR_SHAPE, "%s: pool output gradient %s does not match %lld "
                       "images of %lld channels", op,
                       dq_tensor_shape_str(pool_dout, b, sizeof b), (long long)N, (long long)OC);
    }
    DQ_TRY(dq_tensor_expect(pool_out, op, "pool output", 4, pool_dout->shape, err));
    if (!argmax) return dq_fail(err, DQ_ERR_ARG, "%s: argmax is missing", op);
    /* Image by image is bitwise dq_conv2d_backward only where that one runs
     * image by image too (not on small planes of several images). */
    if (!dq_conv2d_backward_per_image(N, K, P, OC, ws_floats))
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "%s: %lld images of %lld positions: "
                       "dq_conv2d_backward groups these, use the unfused ops", op,
                       (long long)N, (long long)P);
    const int64_t ldcol = s_pad_ld(P);
    float *dy = ws + K * ldcol; /* one image's conv output gradient [OC, P] */
    const int64_t PP = pool_dout->shape[2] * pool_dout->shape[3];

    for (int64_t n = 0; n < N; n++) {
        dq_tensor t_dy = dq_tensor_view4(dy, 1, OC, g.OH, g.OW);
        dq_tensor t_pd = dq_tensor_view4(pool_dout->data + n * OC * PP, 1, OC,
                                         pool_dout->shape[2], pool_dout->shape[3]);
        dq_tensor t_po = dq_tensor_view4(pool_out->data + n * OC * PP, 1, OC,
                                         pool_dout->shape[2], pool_dout->shape[3]);
        DQ_TRY(dq_maxpool2d_relu_backward_pooled(&t_dy, &t_pd, argmax + n * OC * PP, &t_po,
                                                 pool_kernel, pool_stride, err));
        dq_conv2d_backward_image(din, dw, db, dy, in->data + n * img,
                                 din ? din->data + n * img : NULL, NULL, 0, w, &g, ws, ldcol);
    }
    return DQ_OK;
}
