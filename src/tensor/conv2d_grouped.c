/* conv2d_grouped.c - grouped and depthwise convolution (params.groups > 1).
 *
 * Weight [OC, C/G, KH, KW]: output channels [g*OC/G, (g+1)*OC/G) see only
 * input channels [g*C/G, (g+1)*C/G), as PyTorch's groups=G.
 *
 * Grouped (1 < G < C): one image at a time, the whole image is lowered once
 * (dq_im2col orders column rows by channel, so group g's rows are the
 * contiguous block [g*Kg, (g+1)*Kg), Kg = C/G*KH*KW) and each group is one
 * GEMM  out_g [OC/G, P] = w_g [OC/G, Kg] x col_g. Backward mirrors conv2d.c
 * per group (dw_g += dout_g x col_g^T; dcol_g = w_g^T x dout_g, then one
 * col2im for the image). Every GEMM of a layer has the same shape and works
 * on one image, so the results are batch-invariant by construction.
 *
 * Depthwise (G == C, OC = C*mult): a GEMM per group would be [mult, KH*KW]
 * x [KH*KW, P], far too small for BLAS, so a direct kernel computes each
 * output plane as bias + sum over taps (kh, kw) of w[kh,kw] times the
 * shifted input rows, tap ranges from the shared dq_im2col_range helper.
 * The inner loop is an axpy along an output row (contiguous when stride 1,
 * vectorised by gcc). Each output element sums bias then the taps in
 * (kh, kw) order, whatever the batch: batch-invariant too. Backward: db by
 * plane sums, dw by per-tap dot products of dout with the shifted input,
 * din by scattering w*dout back along the same rows. No workspace.
 */
#include "tensor/conv2d_int.h"

#include <cblas.h>
#include <limits.h>

#include "tensor/im2col.h"

/* Padded column row stride as conv2d.c's s_pad_ld: rows 1 KB apart alias. */
static int64_t s_col_ld(int64_t P, int64_t K, int64_t ws_floats)
{
    int64_t ld = P % 256 == 0 ? P + 16 : P;
    return K * ld <= ws_floats ? ld : P;
}

static int s_is_pointwise(const dq_im2col_geom *g)
{
    return g->KH == 1 && g->KW == 1 && g->stride == 1 && g->pad == 0;
}

static int64_t s_groups(dq_conv2d_params p)
{
    return p.groups < 1 ? 1 : p.groups;
}

int64_t dq_conv2d_grouped_workspace(int64_t C, int64_t H, int64_t W, int64_t KH, int64_t KW,
                                    dq_conv2d_params p)
{
    dq_im2col_geom g = dq_im2col_geom_make(C, H, W, KH, KW, p.stride, p.padding);
    if (C < 1 || g.OH < 1 || g.OW < 1 || p.padding < 0) return 0;
    if (s_groups(p) == C) return 0; /* depthwise: direct kernel */
    int64_t P = g.OH * g.OW;
    return C * KH * KW * (P % 256 == 0 ? P + 16 : P);
}

/* Shapes, groups, bias and workspace, shared by forward (t = out) and
 * backward (t = dout). Fills the geometry of one image. */
static dq_status s_check(const char *op, const dq_tensor *t, const char *t_what,
                         const dq_tensor *in, const dq_tensor *w, const dq_tensor *b,
                         const char *b_what, dq_conv2d_params p, int direct, const float *ws,
                         int64_t ws_floats, dq_im2col_geom *g, dq_err *err)
{
    DQ_TRY(dq_tensor_expect_rank(in, op, "input", 4, err));
    DQ_TRY(dq_tensor_expect_rank(w, op, "weight", 4, err));
    if (p.stride < 1 || p.padding < 0 || p.groups < 0)
        return dq_fail(err, DQ_ERR_ARG, "%s: stride %d / padding %d / groups %d invalid", op,
                       p.stride, p.padding, p.groups);
    const int64_t N = in->shape[0], C = in->shape[1], OC = w->shape[0], G = s_groups(p);
    if (C % G != 0 || OC % G != 0)
        return dq_fail(err, DQ_ERR_SHAPE, "%s: %lld input and %lld output channels are not "
                       "both divisible by groups %lld", op, (long long)C, (long long)OC,
                       (long long)G);
    if (direct && G != C)
        return dq_fail(err, DQ_ERR_ARG, "%s: the direct kernel is depthwise only (groups %lld, "
                       "%lld channels)", op, (long long)G, (long long)C);
    int64_t wshape[4] = {OC, C / G, w->shape[2], w->shape[3]};
    DQ_TRY(dq_tensor_expect(w, op, "weight", 4, wshape, err));
    *g = dq_im2col_geom_make(C, in->shape[2], in->shape[3], w->shape[2], w->shape[3], p.stride,
                             p.padding);
    if (g->OH < 1 || g->OW < 1 || w->shape[2] < 1 || w->shape[3] < 1) {
        char buf[96];
        return dq_fail(err, DQ_ERR_SHAPE, "%s: kernel %lldx%lld does not fit input %s", op,
                       (long long)w->shape[2], (long long)w->shape[3],
                       dq_tensor_shape_str(in, buf, sizeof buf));
    }
    int64_t oshape[4] = {N, OC, g->OH, g->OW};
    DQ_TRY(dq_tensor_expect(t, op, t_what, 4, oshape, err));
    if (b) {
        int64_t bshape[1] = {OC};
        DQ_TRY(dq_tensor_expect(b, op, b_what, 1, bshape, err));
    }
    if (direct) return DQ_OK;
    int64_t need = C * g->KH * g->KW * g->OH * g->OW;
    if (need > INT_MAX || OC > INT_MAX)
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "%s: %lld-float column matrix exceeds BLAS "
                       "int sizes", op, (long long)need);
    if (!ws || ws_floats < need)
        return dq_fail(err, DQ_ERR_ARG, "%s: workspace has %lld floats, needs at least %lld",
                       op, (long long)(ws ? ws_floats : 0), (long long)need);
    return DQ_OK;
}

static int s_use_direct(dq_conv2d_algo algo, const dq_tensor *in, dq_conv2d_params p)
{
    if (algo == DQ_CONV2D_ALGO_DIRECT) return 1;
    if (algo == DQ_CONV2D_ALGO_GEMM) return 0;
    return in && in->ndim == 4 && s_groups(p) > 1 && s_groups(p) == in->shape[1];
}

/* Sum of x[0..n) with 8 partial sums (as conv2d.c). */
static float s_sum(const float *x, int64_t n)
{
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) acc[k] += x[i + k];
    float s = 0.0f;
    for (; i < n; i++) s += x[i];
    for (int k = 0; k < 8; k++) s += acc[k];
    return s;
}

/* ---- depthwise: direct kernel, one [H,W] plane -> one [OH,OW] plane ---------- */

/* y = bias + sum_taps k[kh,kw] * x[oh*s - pad + kh, ow*s - pad + kw]. */
static void s_dw_forward_plane(float *restrict y, const float *restrict x,
                               const float *restrict k, float bias, const dq_im2col_geom *g)
{
    const int64_t H = g->H, W = g->W, OW = g->OW, s = g->stride, pad = g->pad;
    for (int64_t oh = 0; oh < g->OH; oh++) {
        float *restrict yr = y + oh * OW;
        for (int64_t ow = 0; ow < OW; ow++) yr[ow] = bias;
        for (int64_t kh = 0; kh < g->KH; kh++) {
            const int64_t ih = oh * s - pad + kh;
            if (ih < 0 || ih >= H) continue;
            const float *xr = x + ih * W;
            for (int64_t kw = 0; kw < g->KW; kw++) {
                int64_t lo, hi;
                dq_im2col_range(&lo, &hi, W, OW, kw, s, pad);
                const float wv = k[kh * g->KW + kw];
                const float *xs = xr + kw - pad; /* input column = ow*s + (kw - pad) */
                if (s == 1)
                    for (int64_t ow = lo; ow < hi; ow++) yr[ow] += wv * xs[ow];
                else
                    for (int64_t ow = lo; ow < hi; ow++) yr[ow] += wv * xs[ow * s];
            }
        }
    }
}

/* dk[kh,kw] += sum dy * shifted x;  dx += k * dy scattered back (each may
 * be NULL). */
static void s_dw_backward_plane(float *restrict dx, float *restrict dk, const float *restrict dy,
                                const float *restrict x, const float *restrict k,
                                const dq_im2col_geom *g)
{
    const int64_t H = g->H, W = g->W, OW = g->OW, s = g->stride, pad = g->pad;
    for (int64_t oh = 0; oh < g->OH; oh++) {
        const float *dyr = dy + oh * OW;
        for (int64_t kh = 0; kh < g->KH; kh++) {
            const int64_t ih = oh * s - pad + kh;
            if (ih < 0 || ih >= H) continue;
            for (int64_t kw = 0; kw < g->KW; kw++) {
                int64_t lo, hi;
                dq_im2col_range(&lo, &hi, W, OW, kw, s, pad);
                if (lo >= hi) continue;
                const int64_t t = kh * g->KW + kw, off = ih * W + kw - pad;
                if (dk) {
                    const float *xs = x + off;
                    float acc = 0.0f;
                    if (s == 1)
                        for (int64_t ow = lo; ow < hi; ow++) acc += dyr[ow] * xs[ow];
                    else
                        for (int64_t ow = lo; ow < hi; ow++) acc += dyr[ow] * xs[ow * s];
                    dk[t] += acc;
                }
                if (dx) {
                    float *ds = dx + off;
                    const float wv = k[t];
                    if (s == 1)
                        for (int64_t ow = lo; ow < hi; ow++) ds[ow] += wv * dyr[ow];
                    else
                        for (int64_t ow = lo; ow < hi; ow++) ds[ow * s] += wv * dyr[ow];
                }
            }
        }
    }
}

static void s_dw_forward(dq_tensor *out, const dq_tensor *in, const dq_tensor *w,
                         const dq_tensor *b, const dq_im2col_geom *g)
{
    const int64_t N = in->shape[0], C = g->C, OC = w->shape[0], mult = OC / C;
    const int64_t HW = g->H * g->W, P = g->OH * g->OW, KK = g->KH * g->KW;
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < OC; o++)
            s_dw_forward_plane(out->data + (n * OC + o) * P, in->data + (n * C + o / mult) * HW,
                               w->data + o * KK, b ? b->data[o] : 0.0f, g);
}

static void s_dw_backward(dq_tensor *din, dq_tensor *dw, dq_tensor *db, const dq_tensor *dout,
                          const dq_tensor *in, const dq_tensor *w, const dq_im2col_geom *g)
{
    const int64_t N = in->shape[0], C = g->C, OC = w->shape[0], mult = OC / C;
    const int64_t HW = g->H * g->W, P = g->OH * g->OW, KK = g->KH * g->KW;
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < OC; o++) {
            const float *dy = dout->data + (n * OC + o) * P;
            const int64_t plane = (n * C + o / mult) * HW;
            if (db) db->data[o] += s_sum(dy, P);
            if (din || dw)
                s_dw_backward_plane(din ? din->data + plane : NULL, dw ? dw->data + o * KK : NULL,
                                    dy, in->data + plane, w->data + o * KK, g);
        }
}

/* ---- grouped: im2col + one GEMM per group and image -------------------------- */

static void s_gemm_forward(dq_tensor *out, const dq_tensor *in, const dq_tensor *w,
                           const dq_tensor *b, int64_t G, float *ws, int64_t ws_floats,
                           const dq_im2col_geom *g)
{
    const int64_t N = in->shape[0], OC = w->shape[0], OCg = OC / G;
    const int64_t Kg = g->C / G * g->KH * g->KW, K = Kg * G, P = g->OH * g->OW;
    const int64_t img = g->C * g->H * g->W;
    const int pointwise = s_is_pointwise(g);
    const int64_t ldcol = s_col_ld(P, K, ws_floats);
    for (int64_t n = 0; n < N; n++) {
        const float *col = in->data + n * img;
        int64_t ld = P;
        if (!pointwise) {
            dq_im2col(ws, ldcol, col, g);
            col = ws;
            ld = ldcol;
        }
        float *y = out->data + n * OC * P, beta = 0.0f;
        if (b) {
            for (int64_t o = 0; o < OC; o++)
                for (int64_t i = 0; i < P; i++) y[o * P + i] = b->data[o];
            beta = 1.0f;
        }
        for (int64_t gr = 0; gr < G; gr++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)OCg, (int)P, (int)Kg,
                        1.0f, w->data + gr * OCg * Kg, (int)Kg, col + gr * Kg * ld, (int)ld, beta,
                        y + gr * OCg * P, (int)P);
    }
}

static void s_gemm_backward(dq_tensor *din, dq_tensor *dw, dq_tensor *db, const dq_tensor *dout,
                            const dq_tensor *in, const dq_tensor *w, int64_t G, float *ws,
                            int64_t ws_floats, const dq_im2col_geom *g)
{
    const int64_t N = in->shape[0], OC = w->shape[0], OCg = OC / G;
    const int64_t Kg = g->C / G * g->KH * g->KW, K = Kg * G, P = g->OH * g->OW;
    const int64_t img = g->C * g->H * g->W;
    const int pointwise = s_is_pointwise(g);
    const int64_t ldcol = s_col_ld(P, K, ws_floats);
    for (int64_t n = 0; n < N; n++) {
        const float *dy = dout->data + n * OC * P;
        if (db)
            for (int64_t o = 0; o < OC; o++) db->data[o] += s_sum(dy + o * P, P);
        if (dw) {
            const float *col = in->data + n * img;
            int64_t ld = P;
            if (!pointwise) {
                dq_im2col(ws, ldcol, col, g);
                col = ws;
                ld = ldcol;
            }
            for (int64_t gr = 0; gr < G; gr++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)OCg, (int)Kg, (int)P,
                            1.0f, dy + gr * OCg * P, (int)P, col + gr * Kg * ld, (int)ld, 1.0f,
                            dw->data + gr * OCg * Kg, (int)Kg);
        }
        if (!din) continue;
        float *dst = pointwise ? din->data + n * img : ws;
        const int64_t ld = pointwise ? P : ldcol;
        for (int64_t gr = 0; gr < G; gr++)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)Kg, (int)P, (int)OCg, 1.0f,
                        w->data + gr * OCg * Kg, (int)Kg, dy + gr * OCg * P, (int)P,
                        pointwise ? 1.0f : 0.0f, dst + gr * Kg * ld, (int)ld);
        if (!pointwise) dq_col2im_add(din->data + n * img, ws, ldcol, g);
    }
}

dq_status dq_conv2d_grouped_forward(dq_tensor *out, const dq_tensor *in, const dq_tensor *w,
                                    const dq_tensor *b, dq_conv2d_params p, float *ws,
                                    int64_t ws_floats, dq_conv2d_algo algo, dq_err *err)
{
    const int direct = s_use_direct(algo, in, p);
    dq_im2col_geom g;
    DQ_TRY(s_check("conv2d", out, "output", in, w, b, "bias", p, direct, ws, ws_floats, &g,
                   err));
    if (direct)
        s_dw_forward(out, in, w, b, &g);
    else
        s_gemm_forward(out, in, w, b, s_groups(p), ws, ws_floats, &g);
    return DQ_OK;
}

dq_status dq_conv2d_grouped_backward(dq_tensor *din, dq_tensor *dw, dq_tensor *db,
                                     const dq_tensor *dout, const dq_tensor *in,
                                     const dq_tensor *w, dq_conv2d_params p, float *ws,
                                     int64_t ws_floats, dq_conv2d_algo algo, dq_err *err)
{
    const char *op = "conv2d backward";
    const int direct = s_use_direct(algo, in, p);
    dq_im2col_geom g;
    DQ_TRY(s_check(op, dout, "output gradient", in, w, db, "bias gradient", p, direct, ws,
                   ws_floats, &g, err));
    if (din) DQ_TRY(dq_tensor_expect(din, op, "input gradient", 4, in->shape, err));
    if (dw) DQ_TRY(dq_tensor_expect(dw, op, "weight gradient", 4, w->shape, err));
    if (direct)
        s_dw_backward(din, dw, db, dout, in, w, &g);
    else
        s_gemm_backward(din, dw, db, dout, in, w, s_groups(p), ws, ws_floats, &g);
    return DQ_OK;
}
