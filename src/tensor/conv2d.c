/* conv2d.c - 2-D convolution as im2col + one sgemm per group of images.
 *
 * Forward, per group of G images: lower them side by side into the column
 * buffer col [K = C*KH*KW, G*P] (P = OH*OW), then one GEMM
 *     out_slab [OC, G*P] = w [OC, K] x col
 * written straight into the output memory of those G images. For G = 1 that
 * already is NCHW and the bias was pre-filled (beta = 1, saving a pass); for
 * G > 1 the slab is [OC][G][P] and is permuted to [G][OC][P] through the now
 * free column buffer, adding the bias on the way.
 *
 * Group size, measured single-threaded on the teacher's layers: grouping
 * only pays while the column buffer stays cache-sized (~2 MB: 64->64 at
 * 14x14 gains ~5-10%); past that, lowering and GEMM both slow down (G = 8 on
 * the 128->64 28x28 layer, a 29 MB buffer, costs 40%), and when OC > K (first
 * layers) the permute costs more than the wider GEMM gains. So
 * dq_conv2d_workspace plans G from a 2 MB budget and the op falls back to
 * G = 1 when OC > K or the workspace is smaller.
 *
 * Backward, per image (grouping measured no gain there):
 *     dw  [OC, K] += dout_n [OC, P] x col^T          (beta = 1: accumulates)
 *     dcol [K, P]  = w^T x dout_n;  din_n += col2im(dcol)
 *     db  [OC]    += row sums of dout_n
 * A 1x1 kernel with stride 1 and no padding needs no lowering: the image
 * itself is the column matrix, and din is then a GEMM with beta = 1.
 *
 * Grouped and depthwise convolutions (params.groups > 1) are dispatched to
 * conv2d_grouped.c on entry; groups 0 and 1 run the code below unchanged.
 */
#include "tensor/ops.h"

#include <cblas.h>
#include <string.h>

#include "tensor/conv2d_int.h"
#include "tensor/im2col.h"

/* Column-buffer size beyond which a group stops getting faster (see top). */
#define S_GROUP_BYTES ((int64_t)2 << 20)

int64_t dq_conv2d_out_size(int64_t in, int64_t k, int stride, int padding)
{
    if (stride < 1 || padding < 0 || k < 1 || in + 2 * (int64_t)padding < k) return 0;
    return (in + 2 * (int64_t)padding - k) / stride + 1;
}

/* Images per group for a column of k*p floats: as many as fit the budget,
 * at least one, at most n. */
static int64_t s_plan_group(int64_t n, int64_t k, int64_t p)
{
    int64_t g = S_GROUP_BYTES / ((int64_t)sizeof(float) * k * p);
    if (g > n) g = n;
    return g < 1 ? 1 : g;
}

/* Row stride for a column buffer of n columns. sgemm packs rows of the
 * column matrix; when they are a multiple of 1 KB apart (P = 256 at 16x16,
 * 1024 at 32x32) they alias in the cache and the GEMMs lose 15-30%
 * (measured: 128->64 at 32x32, 75 vs 96 GFLOP/s), so such rows get 64 bytes
 * of padding. */
static int64_t s_pad_ld(int64_t n)
{
    return n % 256 == 0 ? n + 16 : n;
}

/* The padded stride if the workspace has room for it, else n. */
static int64_t s_col_ld(int64_t n, int64_t K, int64_t ws_floats)
{
    return K * s_pad_ld(n) <= ws_floats ? s_pad_ld(n) : n;
}

int64_t dq_conv2d_workspace(int64_t N, int64_t C, int64_t H, int64_t W, int64_t KH,
                            int64_t KW, dq_conv2d_params p)
{
    if (p.groups > 1) return N < 1 ? 0 : dq_conv2d_grouped_workspace(C, H, W, KH, KW, p);
    int64_t OH = dq_conv2d_out_size(H, KH, p.stride, p.padding);
    int64_t OW = dq_conv2d_out_size(W, KW, p.stride, p.padding);
    if (N < 1 || C < 1 || OH < 1 || OW < 1) return 0;
    int64_t K = C * KH * KW, P = OH * OW;
    return K * s_pad_ld(P * s_plan_group(N, K, P));
}

/* conv2d_check.c's checks, then one image's columns of workspace. */
static dq_status s_check(const dq_conv2d_call *c, dq_conv2d_params p, const float *ws,
                         int64_t ws_floats, dq_im2col_geom *g, dq_err *err)
{
    DQ_TRY(dq_conv2d_check(c, p, g, err));
    return dq_conv2d_check_workspace(c->op, ws, ws_floats, g->C * g->KH * g->KW * g->OH * g->OW,
                                     err);
}

/* Pure 1x1 convolution: the image is its own column matrix. */
static int s_is_pointwise(const dq_im2col_geom *g)
{
    return g->KH == 1 && g->KW == 1 && g->stride == 1 && g->pad == 0;
}

/* dst[0..n) = v, in blocks of 8 so gcc -O2 vectorises it. */
static void s_fill(float *dst, float v, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) dst[i + k] = v;
    for (; i < n; i++) dst[i] = v;
}

/* dst[i] = src[i] + b, in blocks of 8 so gcc -O2 vectorises it. */
static void s_copy_add(float *restrict dst, const float *restrict src, float b, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) dst[i + k] = src[i + k] + b;
    for (; i < n; i++) dst[i] = src[i] + b;
}

void dq_conv2d_group_gemm(float *slab, float *colbuf, int64_t ldcol, const float *x0, int64_t gn,
                          const dq_tensor *w, const dq_tensor *b, const dq_im2col_geom *g)
{
    const int64_t OC = w->shape[0], K = g->C * g->KH * g->KW, P = g->OH * g->OW, ld = gn * P;
    const float *col = colbuf;
    if (s_is_pointwise(g)) {
        col = x0;
        ldcol = ld;
    } else {
        const int64_t img = g->C * g->H * g->W;
        for (int64_t j = 0; j < gn; j++) dq_im2col(colbuf + j * P, ldcol, x0 + j * img, g);
    }
    float beta = 0.0f;
    if (gn == 1 && b) {
        for (int64_t o = 0; o < OC; o++) s_fill(slab + o * P, b->data[o], P);
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)OC, (int)ld, (int)K, 1.0f,
                w->data, (int)K, col, (int)ldcol, beta, slab, (int)ld);
}

float dq_conv2d_bias_sum(const float *x, int64_t n)
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

dq_status dq_conv2d_forward(dq_tensor *out, const dq_tensor *in, const dq_tensor *w,
                            const dq_tensor *b, dq_conv2d_params p, float *ws,
                            int64_t ws_floats, dq_err *err)
{
    if (p.groups != 0 && p.groups != 1)
        return dq_conv2d_grouped_forward(out, in, w, b, p, ws, ws_floats, DQ_CONV2D_ALGO_AUTO,
                                         err);
    dq_im2col_geom g;
    const dq_conv2d_call c = {.op = "conv2d", .in = in, .w = w, .y = out, .b = b, .gemm = true};
    DQ_TRY(s_check(&c, p, ws, ws_floats, &g, err));
    const int64_t N = in->shape[0], OC = w->shape[0];
    const int64_t K = g.C * g.KH * g.KW, P = g.OH * g.OW, img = g.C * g.H * g.W;
    const int pointwise = s_is_pointwise(&g);

    /* Groups only when OC <= K: besides being when they pay, that is what
     * lets the [OC, G*P] slab be permuted through the K*P*G column buffer. */
    int64_t G = ws_floats / (K * P);
    if (G > s_plan_group(N, K, P)) G = s_plan_group(N, K, P);
    if (OC > K || pointwise) G = 1;
    if (p.max_group > 0 && G > p.max_group) G = p.max_group;

    for (int64_t n0 = 0; n0 < N; n0 += G) {
        const int64_t gn = N - n0 < G ? N - n0 : G, ld = gn * P;
        float *slab = out->data + n0 * OC * P;
        dq_conv2d_group_gemm(slab, ws, s_col_ld(ld, K, ws_floats), in->data + n0 * img, gn, w, b,
                             &g);
        if (gn == 1) continue;
        /* [OC][gn][P] -> [gn][OC][P] via the column buffer (OC <= K here). */
        memcpy(ws, slab, (size_t)(OC * ld) * sizeof(float));
        for (int64_t j = 0; j < gn; j++)
            for (int64_t o = 0; o < OC; o++)
                s_copy_add(slab + (j * OC + o) * P, ws + (o * gn + j) * P,
                           b ? b->data[o] : 0.0f, P);
    }
    return DQ_OK;
}

/* Images per backward GEMM. Per image, a small output plane makes the
 * weight-gradient GEMM a thin sum over P positions that reads and writes
 * all of dw (at ResNet's last stage P = 1: a rank-1 update of 512 x 4608
 * per image), so below S_BWD_GROUP_P positions the images of a group are
 * laid side by side and dw gets one GEMM over G*P. Above it, per-image GEMMs
 * are already efficient (LightNN's 28x28 and 14x14 planes measured no gain:
 * see the top). The group needs K*G*P floats of columns plus OC*G*P for the
 * permuted output gradient. */
#define S_BWD_GROUP_P DQ_CONV2D_BWD_GROUP_P
static int64_t s_backward_group(int64_t N, int64_t K, int64_t P, int64_t OC,
                                int64_t ws_floats)
{
    if (P >= S_BWD_GROUP_P || N < 2) return 1;
    int64_t g = s_plan_group(N, K, P), fit = ws_floats / ((K + OC) * P);
    return g < fit ? g : fit;
}

bool dq_conv2d_backward_per_image(int64_t N, int64_t K, int64_t P, int64_t OC,
                                  int64_t ws_floats)
{
    return s_backward_group(N, K, P, OC, ws_floats) <= 1;
}

/* The grouped backward (see s_backward_group): per group of gn images,
 *     dy  [OC, gn*P] = the group's output gradients side by side
 *     col [K, gn*P]  = their lowered inputs;  dw += dy x col^T
 *     dcol [K, gn*P] = w^T x dy (into col);   din_j += col2im(dcol_j)
 *     db  [OC]      += row sums of dy */
static void s_backward_grouped(dq_tensor *din, dq_tensor *dw, dq_tensor *db,
                               const dq_tensor *dout, const dq_tensor *in, const dq_tensor *w,
                               const dq_im2col_geom *g, int64_t G, float *ws)
{
    const int64_t N = in->shape[0], OC = w->shape[0];
    const int64_t K = g->C * g->KH * g->KW, P = g->OH * g->OW, img = g->C * g->H * g->W;
    float *col = ws, *dy = ws + K * G * P;
    for (int64_t n0 = 0; n0 < N; n0 += G) {
        const int64_t gn = N - n0 < G ? N - n0 : G, ld = gn * P;
        for (int64_t j = 0; j < gn; j++)
            for (int64_t o = 0; o < OC; o++)
                memcpy(dy + o * ld + j * P, dout->data + ((n0 + j) * OC + o) * P,
                       (size_t)P * sizeof(float));
        if (db)
            for (int64_t o = 0; o < OC; o++) db->data[o] += dq_conv2d_bias_sum(dy + o * ld, ld);
        if (dw) {
            for (int64_t j = 0; j < gn; j++)
                dq_im2col(col + j * P, ld, in->data + (n0 + j) * img, g);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)OC, (int)K, (int)ld, 1.0f,
                        dy, (int)ld, col, (int)ld, 1.0f, dw->data, (int)K);
        }
        if (!din) continue;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)ld, (int)OC, 1.0f,
                    w->data, (int)K, dy, (int)ld, 0.0f, col, (int)ld);
        for (int64_t j = 0; j < gn; j++)
            dq_col2im_add(din->data + (n0 + j) * img, col + j * P, ld, g);
    }
}

dq_status dq_conv2d_backward(dq_tensor *din, dq_tensor *dw, dq_tensor *db,
                             const dq_tensor *dout, const dq_tensor *in, const dq_tensor *w,
                             dq_conv2d_params p, float *ws, int64_t ws_floats, dq_err *err)
{
    if (p.groups != 0 && p.groups != 1)
        return dq_conv2d_grouped_backward(din, dw, db, dout, in, w, p, ws, ws_floats,
                                          DQ_CONV2D_ALGO_AUTO, err);
    dq_im2col_geom g;
    const dq_conv2d_call c = {.op = "conv2d backward", .in = in, .w = w, .y = dout, .b = db,
                              .din = din, .dw = dw, .backward = true, .gemm = true};
    DQ_TRY(s_check(&c, p, ws, ws_floats, &g, err));
    const int64_t N = in->shape[0], OC = w->shape[0];
    const int64_t K = g.C * g.KH * g.KW, P = g.OH * g.OW, img = g.C * g.H * g.W;
    const int64_t ldcol = s_col_ld(P, K, ws_floats);

    int64_t G = s_backward_group(N, K, P, OC, ws_floats);
    if (G > 1) {
        s_backward_grouped(din, dw, db, dout, in, w, &g, G, ws);
        return DQ_OK;
    }
    for (int64_t n = 0; n < N; n++)
        dq_conv2d_backward_image(din, dw, db, dout->data + n * OC * P, in->data + n * img,
                                 din ? din->data + n * img : NULL, NULL, 0, w, &g, ws, ldcol);
    return DQ_OK;
}

void dq_conv2d_backward_image(dq_tensor *din, dq_tensor *dw, dq_tensor *db, const float *dy,
                              const float *x, float *din_img, const float *col, int64_t ld_col,
                              const dq_tensor *w, const dq_im2col_geom *g, float *ws,
                              int64_t ldcol)
{
    const int64_t OC = w->shape[0], K = g->C * g->KH * g->KW, P = g->OH * g->OW;
    const int pointwise = s_is_pointwise(g);
    if (db)
        for (int64_t o = 0; o < OC; o++) db->data[o] += dq_conv2d_bias_sum(dy + o * P, P);
    if (dw) {
        if (pointwise) {
            col = x;
            ld_col = P;
        } else if (!col) {
            dq_im2col(ws, ldcol, x, g);
            col = ws;
            ld_col = ldcol;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)OC, (int)K, (int)P, 1.0f, dy,
                    (int)P, col, (int)ld_col, 1.0f, dw->data, (int)K);
    }
    if (!din) return;
    if (pointwise) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)P, (int)OC, 1.0f,
                    w->data, (int)K, dy, (int)P, 1.0f, din_img, (int)P);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)P, (int)OC, 1.0f, w->data,
                (int)K, dy, (int)P, 0.0f, ws, (int)ldcol);
    dq_col2im_add(din_img, ws, ldcol, g);
}
