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
 * shifted input. Stride 1 (nearly every depthwise layer) works on a
 * zero-bordered copy of the plane so that each tap is one long contiguous
 * axpy (s_dw_forward_s1 below; a few KB of workspace); strided layers add
 * row pieces whose bounds come from the shared dq_im2col_range helper.
 * Each output element sums bias then the taps in (kh, kw) order, whatever
 * the batch: batch-invariant too. Backward: db by plane sums, dw by per-tap
 * dot products of dout with the shifted input, din by the adjoint axpys.
 */
#include "tensor/conv2d_int.h"

#include <cblas.h>
#include <limits.h>
#include <string.h>

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

/* Stride-1 depthwise planes run in a zero-bordered layout (see
 * s_dw_forward_s1): Hp*Wp + KW floats for the padded input and for its
 * gradient, OH*Wp for the wide output (or output gradient). Strided ones
 * need no scratch. */
static int64_t s_dw_ws(const dq_im2col_geom *g)
{
    if (g->stride != 1) return 0;
    const int64_t Hp = g->H + 2 * g->pad, Wp = g->W + 2 * g->pad;
    return 2 * (Hp * Wp + g->KW) + g->OH * Wp;
}

int64_t dq_conv2d_grouped_workspace(int64_t C, int64_t H, int64_t W, int64_t KH, int64_t KW,
                                    dq_conv2d_params p)
{
    dq_im2col_geom g = dq_im2col_geom_make(C, H, W, KH, KW, p.stride, p.padding);
    if (C < 1 || g.OH < 1 || g.OW < 1 || p.padding < 0) return 0;
    if (s_groups(p) == C) return s_dw_ws(&g); /* depthwise: direct kernel */
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
    int64_t need = direct ? s_dw_ws(g) : C * g->KH * g->KW * g->OH * g->OW;
    if (!direct && (need > INT_MAX || OC > INT_MAX))
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "%s: %lld-float column matrix exceeds BLAS "
                       "int sizes", op, (long long)need);
    if (need > 0 && (!ws || ws_floats < need))
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

/* Output columns [lo[kw], hi[kw]) whose tap kw lands inside the input row,
 * computed once per call for kernels up to S_MAXK wide. */
#define S_MAXK 32

typedef struct {
    int64_t lo[S_MAXK], hi[S_MAXK];
} s_cols;

static void s_cols_make(s_cols *c, const dq_im2col_geom *g)
{
    for (int64_t kw = 0; kw < g->KW && kw < S_MAXK; kw++)
        dq_im2col_range(&c->lo[kw], &c->hi[kw], g->W, g->OW, kw, g->stride, g->pad);
}

static inline void s_cols_get(const s_cols *c, const dq_im2col_geom *g, int64_t kw, int64_t *lo,
                              int64_t *hi)
{
    if (kw < S_MAXK) {
        *lo = c->lo[kw];
        *hi = c->hi[kw];
    } else {
        dq_im2col_range(lo, hi, g->W, g->OW, kw, g->stride, g->pad);
    }
}

/* y[i] += a * x[i*s], i < n, in blocks of 8 so gcc -O2 vectorises the
 * contiguous case (its cheap cost model skips loops that need an epilogue). */
static inline void s_axpy(float *restrict y, const float *restrict x, float a, int64_t s,
                          int64_t n)
{
    int64_t i = 0;
    if (s == 1) {
        for (; i + 8 <= n; i += 8)
            for (int k = 0; k < 8; k++) y[i + k] += a * x[i + k];
        for (; i < n; i++) y[i] += a * x[i];
    } else {
        for (; i < n; i++) y[i] += a * x[i * s];
    }
}

/* y[i*s] += a * x[i], i < n (the adjoint of s_axpy). */
static inline void s_axpy_scatter(float *restrict y, const float *restrict x, float a, int64_t s,
                                  int64_t n)
{
    if (s == 1) {
        s_axpy(y, x, a, 1, n);
        return;
    }
    for (int64_t i = 0; i < n; i++) y[i * s] += a * x[i];
}

/* sum_i y[i] * x[i*s], i < n, with 8 lanes when contiguous. */
static inline float s_dot(const float *restrict y, const float *restrict x, int64_t s, int64_t n)
{
    float acc = 0.0f;
    int64_t i = 0;
    if (s == 1) {
        float l[8] = {0};
        for (; i + 8 <= n; i += 8)
            for (int k = 0; k < 8; k++) l[k] += y[i + k] * x[i + k];
        for (int k = 0; k < 8; k++) acc += l[k];
        for (; i < n; i++) acc += y[i] * x[i];
    } else {
        for (; i < n; i++) acc += y[i] * x[i * s];
    }
    return acc;
}

/* y = bias + sum_taps k[kh,kw] * x[oh*s - pad + kh, ow*s - pad + kw]: per
 * output row, the bias, then one axpy of a shifted input row per tap in
 * (kh, kw) order. */
static void s_dw_forward_plane(float *restrict y, const float *restrict x,
                               const float *restrict k, float bias, const dq_im2col_geom *g,
                               const s_cols *cols)
{
    const int64_t H = g->H, W = g->W, OW = g->OW, s = g->stride, pad = g->pad;
    for (int64_t oh = 0; oh < g->OH; oh++) {
        float *restrict yr = y + oh * OW;
        for (int64_t ow = 0; ow < OW; ow++) yr[ow] = bias;
        for (int64_t kh = 0; kh < g->KH; kh++) {
            const int64_t ih = oh * s - pad + kh;
            if (ih < 0 || ih >= H) continue;
            const float *xr = x + ih * W + (0 - pad);
            for (int64_t kw = 0; kw < g->KW; kw++) {
                int64_t lo, hi;
                s_cols_get(cols, g, kw, &lo, &hi);
                if (lo < hi) /* input column = ow*s + kw - pad */
                    s_axpy(yr + lo, xr + lo * s + kw, k[kh * g->KW + kw], s, hi - lo);
            }
        }
    }
}

/* dk[kh,kw] += sum dy * shifted x;  dx += k * dy scattered back (each may
 * be NULL). */
static void s_dw_backward_plane(float *restrict dx, float *restrict dk, const float *restrict dy,
                                const float *restrict x, const float *restrict k,
                                const dq_im2col_geom *g, const s_cols *cols)
{
    const int64_t H = g->H, W = g->W, OW = g->OW, s = g->stride, pad = g->pad;
    for (int64_t oh = 0; oh < g->OH; oh++) {
        const float *dyr = dy + oh * OW;
        for (int64_t kh = 0; kh < g->KH; kh++) {
            const int64_t ih = oh * s - pad + kh;
            if (ih < 0 || ih >= H) continue;
            for (int64_t kw = 0; kw < g->KW; kw++) {
                int64_t lo, hi;
                s_cols_get(cols, g, kw, &lo, &hi);
                if (lo >= hi) continue;
                const int64_t t = kh * g->KW + kw, off = ih * W + lo * s + kw - pad;
                if (dk) dk[t] += s_dot(dyr + lo, x + off, s, hi - lo);
                if (dx) s_axpy_scatter(dx + off, dyr + lo, k[t], s, hi - lo);
            }
        }
    }
}

/* ---- depthwise, stride 1: the zero-bordered layout ------------------------------
 * The input plane is copied into a zero-bordered [Hp, Wp] buffer (Hp = H +
 * 2*pad, Wp = W + 2*pad) and the output computed as OH rows of Wp floats
 * whose last Wp - OW are scratch. Output (oh, ow) and its tap (oh + kh,
 * ow + kw) are then kh*Wp + kw apart at every position, so each tap is ONE
 * contiguous axpy over OH*Wp floats instead of OH short row pieces with
 * their own bounds: on 14x14 and 7x7 planes the short rows were mostly
 * loop overhead and scalar tails. Backward uses the same layout: the
 * output gradient widened with zero scratch columns gives dw as one dot
 * product per tap and din as one axpy per tap into a bordered buffer whose
 * interior is then added to din. Per element the sum order is still bias,
 * then taps in (kh, kw) order (padding taps add zeros): batch-invariant. */

typedef struct {
    int64_t Hp, Wp, n_in, n_out;
    float *xp, *dxp, *yp; /* workspace: padded input, its gradient, wide output */
} s_wide;

static s_wide s_wide_make(const dq_im2col_geom *g, float *ws)
{
    s_wide v = {.Hp = g->H + 2 * g->pad, .Wp = g->W + 2 * g->pad};
    v.n_in = v.Hp * v.Wp + g->KW;
    v.n_out = g->OH * v.Wp;
    v.xp = ws;
    v.dxp = ws + v.n_in;
    v.yp = ws + 2 * v.n_in;
    return v;
}

static void s_wide_load(const s_wide *v, const float *x, const dq_im2col_geom *g)
{
    memset(v->xp, 0, (size_t)v->n_in * sizeof(float));
    for (int64_t h = 0; h < g->H; h++)
        memcpy(v->xp + (h + g->pad) * v->Wp + g->pad, x + h * g->W, (size_t)g->W * sizeof(float));
}

static void s_dw_forward_s1(dq_tensor *out, const dq_tensor *in, const dq_tensor *w,
                            const dq_tensor *b, const dq_im2col_geom *g, float *ws)
{
    const int64_t N = in->shape[0], C = g->C, OC = w->shape[0], mult = OC / C;
    const int64_t HW = g->H * g->W, P = g->OH * g->OW, KK = g->KH * g->KW, OW = g->OW;
    const s_wide v = s_wide_make(g, ws);
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++) {
            s_wide_load(&v, in->data + (n * C + c) * HW, g);
            for (int64_t o = c * mult; o < (c + 1) * mult; o++) {
                const float *k = w->data + o * KK, bias = b ? b->data[o] : 0.0f;
                for (int64_t i = 0; i < v.n_out; i++) v.yp[i] = bias;
                for (int64_t kh = 0; kh < g->KH; kh++)
                    for (int64_t kw = 0; kw < g->KW; kw++)
                        s_axpy(v.yp, v.xp + kh * v.Wp + kw, k[kh * g->KW + kw], 1, v.n_out);
                float *y = out->data + (n * OC + o) * P;
                for (int64_t oh = 0; oh < g->OH; oh++)
                    memcpy(y + oh * OW, v.yp + oh * v.Wp, (size_t)OW * sizeof(float));
            }
        }
}

static void s_dw_backward_s1(dq_tensor *din, dq_tensor *dw, dq_tensor *db, const dq_tensor *dout,
                             const dq_tensor *in, const dq_tensor *w, const dq_im2col_geom *g,
                             float *ws)
{
    const int64_t N = in->shape[0], C = g->C, OC = w->shape[0], mult = OC / C;
    const int64_t HW = g->H * g->W, P = g->OH * g->OW, KK = g->KH * g->KW, OW = g->OW;
    const s_wide v = s_wide_make(g, ws);
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++) {
            if (dw) s_wide_load(&v, in->data + (n * C + c) * HW, g);
            if (din) memset(v.dxp, 0, (size_t)v.n_in * sizeof(float));
            for (int64_t o = c * mult; o < (c + 1) * mult; o++) {
                const float *dy = dout->data + (n * OC + o) * P;
                if (db) db->data[o] += s_sum(dy, P);
                if (!dw && !din) continue;
                memset(v.yp, 0, (size_t)v.n_out * sizeof(float));
                for (int64_t oh = 0; oh < g->OH; oh++)
                    memcpy(v.yp + oh * v.Wp, dy + oh * OW, (size_t)OW * sizeof(float));
                for (int64_t kh = 0; kh < g->KH; kh++)
                    for (int64_t kw = 0; kw < g->KW; kw++) {
                        const int64_t t = kh * g->KW + kw, off = kh * v.Wp + kw;
                        if (dw) dw->data[o * KK + t] += s_dot(v.yp, v.xp + off, 1, v.n_out);
                        if (din) s_axpy(v.dxp + off, v.yp, w->data[o * KK + t], 1, v.n_out);
                    }
            }
            if (!din) continue;
            float *dx = din->data + (n * C + c) * HW;
            for (int64_t h = 0; h < g->H; h++)
                s_axpy(dx + h * g->W, v.dxp + (h + g->pad) * v.Wp + g->pad, 1.0f, 1, g->W);
        }
}

/* ---- depthwise, strided: row pieces ------------------------------------------------- */

static void s_dw_forward(dq_tensor *out, const dq_tensor *in, const dq_tensor *w,
                         const dq_tensor *b, const dq_im2col_geom *g, float *ws)
{
    if (g->stride == 1) {
        s_dw_forward_s1(out, in, w, b, g, ws);
        return;
    }
    const int64_t N = in->shape[0], C = g->C, OC = w->shape[0], mult = OC / C;
    const int64_t HW = g->H * g->W, P = g->OH * g->OW, KK = g->KH * g->KW;
    s_cols cols;
    s_cols_make(&cols, g);
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < OC; o++)
            s_dw_forward_plane(out->data + (n * OC + o) * P, in->data + (n * C + o / mult) * HW,
                               w->data + o * KK, b ? b->data[o] : 0.0f, g, &cols);
}

static void s_dw_backward(dq_tensor *din, dq_tensor *dw, dq_tensor *db, const dq_tensor *dout,
                          const dq_tensor *in, const dq_tensor *w, const dq_im2col_geom *g,
                          float *ws)
{
    if (g->stride == 1) {
        s_dw_backward_s1(din, dw, db, dout, in, w, g, ws);
        return;
    }
    const int64_t N = in->shape[0], C = g->C, OC = w->shape[0], mult = OC / C;
    const int64_t HW = g->H * g->W, P = g->OH * g->OW, KK = g->KH * g->KW;
    s_cols cols;
    s_cols_make(&cols, g);
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < OC; o++) {
            const float *dy = dout->data + (n * OC + o) * P;
            const int64_t plane = (n * C + o / mult) * HW;
            if (db) db->data[o] += s_sum(dy, P);
            if (din || dw)
                s_dw_backward_plane(din ? din->data + plane : NULL, dw ? dw->data + o * KK : NULL,
                                    dy, in->data + plane, w->data + o * KK, g, &cols);
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
        s_dw_forward(out, in, w, b, &g, ws);
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
        s_dw_backward(din, dw, db, dout, in, w, &g, ws);
    else
        s_gemm_backward(din, dw, db, dout, in, w, s_groups(p), ws, ws_floats, &g);
    return DQ_OK;
}
