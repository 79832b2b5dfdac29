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
 * shifted input, on stride*stride phase planes of a zero-bordered copy of
 * the input so that each tap is one long contiguous axpy (a few planes of
 * workspace; details above s_dw_forward). Each output element sums bias
 * then the taps in (kh, kw) order, whatever the batch: batch-invariant too.
 * Backward: db by plane sums, dw by per-tap dot products of dout with the
 * shifted input, din by the adjoint axpys.
 */
#include "tensor/conv2d_int.h"

#include <cblas.h>
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

/* The depthwise kernel's layout (see "depthwise" below): stride^2 phase
 * planes of the zero-bordered input, as many for their gradient, and one
 * wide output plane. */
typedef struct {
    int64_t s, Hq, Wq, plane, n_ph; /* plane: floats per phase incl. slack */
} s_phase_geom;

static s_phase_geom s_phase_make(const dq_im2col_geom *g)
{
    s_phase_geom q = {.s = g->stride};
    q.Hq = (g->H + 2 * g->pad + q.s - 1) / q.s;
    q.Wq = (g->W + 2 * g->pad + q.s - 1) / q.s;
    q.plane = q.Hq * q.Wq + (g->KW - 1) / q.s + 1; /* a tap's run may end past the plane */
    q.n_ph = q.s * q.s * q.plane;
    return q;
}

static int64_t s_dw_ws(const dq_im2col_geom *g)
{
    const s_phase_geom q = s_phase_make(g);
    return 2 * q.n_ph + g->OH * q.Wq;
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

/* conv2d_check.c's checks (t: the output or output gradient, b: the bias or
 * its gradient), the direct kernel's restriction to depthwise, and the
 * workspace of the path taken. Fills the geometry of one image. */
static dq_status s_check(const dq_conv2d_call *c, dq_conv2d_params p, int direct,
                         const float *ws, int64_t ws_floats, dq_im2col_geom *g, dq_err *err)
{
    DQ_TRY(dq_conv2d_check(c, p, g, err));
    if (direct && s_groups(p) != g->C)
        return dq_fail(err, DQ_ERR_ARG, "%s: the direct kernel is depthwise only (groups %lld, "
                       "%lld channels)", c->op, (long long)s_groups(p), (long long)g->C);
    int64_t need = direct ? s_dw_ws(g) : g->C * g->KH * g->KW * g->OH * g->OW;
    return dq_conv2d_check_workspace(c->op, ws, ws_floats, need, err);
}

static int s_use_direct(dq_conv2d_algo algo, const dq_tensor *in, dq_conv2d_params p)
{
    if (algo == DQ_CONV2D_ALGO_DIRECT) return 1;
    if (algo == DQ_CONV2D_ALGO_GEMM) return 0;
    return in && in->ndim == 4 && s_groups(p) > 1 && s_groups(p) == in->shape[1];
}


/* ---- depthwise: the direct kernel ------------------------------------------------
 * Output (oh, ow) takes tap (kh, kw) from bordered-input position
 * (oh*s + kh, ow*s + kw). Splitting the zero-bordered input into s*s phase
 * planes P[a][b][i][j] = xpad[i*s + a][j*s + b] (each Hq x Wq) makes that
 * P[kh%s][kw%s][oh + kh/s][ow + kw/s]: with the output also laid out in
 * rows of Wq (its last Wq - OW columns scratch), a tap is ONE contiguous
 * axpy over OH*Wq floats at a fixed offset, for every stride. On 14x14 and
 * 7x7 planes, row pieces with their own bounds were mostly loop overhead
 * and scalar tails. Backward uses the same layout: the output gradient
 * widened with zero scratch columns gives dw as one dot product per tap and
 * the phase-plane gradient as one axpy per tap, whose entries are then
 * added back to din. Per element the sum is bias, then the taps in (kh, kw)
 * order (padding taps add zeros): batch-invariant. */

/* y[i] += a * x[i], in blocks of 8 so gcc -O2 vectorises it (its cheap
 * cost model skips loops that need an epilogue). */
static inline void s_axpy(float *restrict y, const float *restrict x, float a, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) y[i + k] += a * x[i + k];
    for (; i < n; i++) y[i] += a * x[i];
}

/* sum y[i] * x[i] with 8 lanes. */
static inline float s_dot(const float *restrict y, const float *restrict x, int64_t n)
{
    float l[8] = {0}, acc = 0.0f;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) l[k] += y[i + k] * x[i + k];
    for (int k = 0; k < 8; k++) acc += l[k];
    for (; i < n; i++) acc += y[i] * x[i];
    return acc;
}

/* The phase plane and offset of tap (kh, kw). */
static inline int64_t s_tap_at(const s_phase_geom *q, int64_t kh, int64_t kw)
{
    return ((kh % q->s) * q->s + kw % q->s) * q->plane + (kh / q->s) * q->Wq + kw / q->s;
}

/* Tap offsets computed once per call for kernels of up to S_TAPS taps. */
#define S_TAPS 64

static void s_taps_make(int64_t *at, const dq_im2col_geom *g, const s_phase_geom *q)
{
    for (int64_t kh = 0; kh < g->KH; kh++)
        for (int64_t kw = 0; kw < g->KW; kw++)
            if (kh * g->KW + kw < S_TAPS) at[kh * g->KW + kw] = s_tap_at(q, kh, kw);
}

static inline int64_t s_tap(const int64_t *at, const dq_im2col_geom *g, const s_phase_geom *q,
                            int64_t kh, int64_t kw)
{
    const int64_t t = kh * g->KW + kw;
    return t < S_TAPS ? at[t] : s_tap_at(q, kh, kw);
}

/* y[0..n) = v, in blocks of 8 (vectorised). */
static inline void s_fill(float *y, float v, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) y[i + k] = v;
    for (; i < n; i++) y[i] = v;
}

/* Input row h's elements of phase column b: w = w0 + t*s for t < n, going
 * to phase columns j0 + t. */
static inline void s_phase_cols(int64_t *w0, int64_t *j0, int64_t *n, int64_t b, int64_t W,
                                int64_t pad, int64_t s)
{
    int64_t w = ((b - pad) % s + s) % s; /* first w >= 0 with (w + pad) % s == b */
    *w0 = w;
    *j0 = (w + pad) / s;
    *n = w < W ? (W - w + s - 1) / s : 0;
}

/* Phases of one [H,W] input plane (zero where the bordered position is
 * padding or past it). */
static void s_phase_load(float *ph, const float *x, const dq_im2col_geom *g, const s_phase_geom *q)
{
    memset(ph, 0, (size_t)q->n_ph * sizeof(float));
    const int64_t s = q->s, W = g->W;
    for (int64_t h = 0; h < g->H; h++) {
        const int64_t hp = h + g->pad, i = hp / s, a = hp % s;
        const float *xr = x + h * W;
        if (s == 1) {
            memcpy(ph + i * q->Wq + g->pad, xr, (size_t)W * sizeof(float));
            continue;
        }
        for (int64_t b = 0; b < s; b++) {
            int64_t w0, j0, n;
            s_phase_cols(&w0, &j0, &n, b, W, g->pad, s);
            float *dst = ph + (a * s + b) * q->plane + i * q->Wq + j0;
            for (int64_t t = 0; t < n; t++) dst[t] = xr[w0 + t * s];
        }
    }
}

/* din[h][w] += the phase-plane gradient at its bordered position. */
static void s_phase_store_add(float *dx, const float *dph, const dq_im2col_geom *g,
                              const s_phase_geom *q)
{
    const int64_t s = q->s, W = g->W;
    for (int64_t h = 0; h < g->H; h++) {
        const int64_t hp = h + g->pad, i = hp / s, a = hp % s;
        float *dr = dx + h * W;
        if (s == 1) {
            s_axpy(dr, dph + i * q->Wq + g->pad, 1.0f, W);
            continue;
        }
        for (int64_t b = 0; b < s; b++) {
            int64_t w0, j0, n;
            s_phase_cols(&w0, &j0, &n, b, W, g->pad, s);
            const float *src = dph + (a * s + b) * q->plane + i * q->Wq + j0;
            for (int64_t t = 0; t < n; t++) dr[w0 + t * s] += src[t];
        }
    }
}

static void s_dw_forward(dq_tensor *out, const dq_tensor *in, const dq_tensor *w,
                         const dq_tensor *b, const dq_im2col_geom *g, float *ws)
{
    const int64_t N = in->shape[0], C = g->C, OC = w->shape[0], mult = OC / C;
    const int64_t HW = g->H * g->W, P = g->OH * g->OW, KK = g->KH * g->KW, OW = g->OW;
    const s_phase_geom q = s_phase_make(g);
    float *ph = ws, *yw = ws + 2 * q.n_ph;
    const int64_t n_out = g->OH * q.Wq;
    int64_t at[S_TAPS];
    s_taps_make(at, g, &q);
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++) {
            s_phase_load(ph, in->data + (n * C + c) * HW, g, &q);
            for (int64_t o = c * mult; o < (c + 1) * mult; o++) {
                const float *k = w->data + o * KK, bias = b ? b->data[o] : 0.0f;
                s_fill(yw, bias, n_out);
                for (int64_t kh = 0; kh < g->KH; kh++)
                    for (int64_t kw = 0; kw < g->KW; kw++)
                        s_axpy(yw, ph + s_tap(at, g, &q, kh, kw), k[kh * g->KW + kw], n_out);
                float *y = out->data + (n * OC + o) * P;
                for (int64_t oh = 0; oh < g->OH; oh++)
                    memcpy(y + oh * OW, yw + oh * q.Wq, (size_t)OW * sizeof(float));
            }
        }
}

static void s_dw_backward(dq_tensor *din, dq_tensor *dw, dq_tensor *db, const dq_tensor *dout,
                          const dq_tensor *in, const dq_tensor *w, const dq_im2col_geom *g,
                          float *ws)
{
    const int64_t N = in->shape[0], C = g->C, OC = w->shape[0], mult = OC / C;
    const int64_t HW = g->H * g->W, P = g->OH * g->OW, KK = g->KH * g->KW, OW = g->OW;
    const s_phase_geom q = s_phase_make(g);
    float *ph = ws, *dph = ws + q.n_ph, *dyw = ws + 2 * q.n_ph;
    const int64_t n_out = g->OH * q.Wq;
    int64_t at_[S_TAPS];
    s_taps_make(at_, g, &q);
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++) {
            if (dw) s_phase_load(ph, in->data + (n * C + c) * HW, g, &q);
            if (din) memset(dph, 0, (size_t)q.n_ph * sizeof(float));
            for (int64_t o = c * mult; o < (c + 1) * mult; o++) {
                const float *dy = dout->data + (n * OC + o) * P;
                if (db) db->data[o] += dq_conv2d_bias_sum(dy, P);
                if (!dw && !din) continue;
                memset(dyw, 0, (size_t)n_out * sizeof(float));
                for (int64_t oh = 0; oh < g->OH; oh++)
                    memcpy(dyw + oh * q.Wq, dy + oh * OW, (size_t)OW * sizeof(float));
                for (int64_t kh = 0; kh < g->KH; kh++)
                    for (int64_t kw = 0; kw < g->KW; kw++) {
                        const int64_t t = kh * g->KW + kw, at = s_tap(at_, g, &q, kh, kw);
                        if (dw) dw->data[o * KK + t] += s_dot(dyw, ph + at, n_out);
                        if (din) s_axpy(dph + at, dyw, w->data[o * KK + t], n_out);
                    }
            }
            if (din) s_phase_store_add(din->data + (n * C + c) * HW, dph, g, &q);
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
            for (int64_t o = 0; o < OC; o++) db->data[o] += dq_conv2d_bias_sum(dy + o * P, P);
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
    const dq_conv2d_call c = {.op = "conv2d", .in = in, .w = w, .y = out, .b = b,
                              .gemm = !direct};
    DQ_TRY(s_check(&c, p, direct, ws, ws_floats, &g, err));
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
    const dq_conv2d_call c = {.op = op, .in = in, .w = w, .y = dout, .b = db, .din = din,
                              .dw = dw, .backward = true, .gemm = !direct};
    DQ_TRY(s_check(&c, p, direct, ws, ws_floats, &g, err));
    if (direct)
        s_dw_backward(din, dw, db, dout, in, w, &g, ws);
    else
        s_gemm_backward(din, dw, db, dout, in, w, s_groups(p), ws, ws_floats, &g);
    return DQ_OK;
}
