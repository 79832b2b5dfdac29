/* conv2d_int.h - what the convolution files share, visible to them and the
 * tests only: the argument checks every entry point runs (conv2d_check.c)
 * and the grouped convolution paths behind dq_conv2d_forward /
 * dq_conv2d_backward.
 *
 * dq_conv2d_forward dispatches here when params.groups > 1. The algorithm
 * is normally chosen by the shape (AUTO: the direct kernel for depthwise,
 * groups == C; per-group im2col + GEMM otherwise); the tests force each one
 * to compare them with each other.
 */
#ifndef DQ_CONV2D_INT_H
#define DQ_CONV2D_INT_H

#include "tensor/im2col.h"
#include "tensor/ops.h"

/* One convolution call as dq_conv2d_check sees it. */
typedef struct {
    const char *op;            /* the call's name, opening every message */
    const dq_tensor *in;       /* input [N, C, H, W] */
    const dq_tensor *w;        /* weight [OC, C/groups, KH, KW] */
    const dq_tensor *y;        /* output, or output gradient, [N, OC, OH, OW]; NULL: none */
    const dq_tensor *b;        /* bias, or bias gradient, [OC]; may be NULL */
    const dq_tensor *din, *dw; /* backward: input / weight gradients, may be NULL */
    bool backward;             /* y and b are gradients (named so in messages) */
    bool gemm;                 /* lowered to BLAS: the column matrix and OC must fit an int */
} dq_conv2d_call;

/* Ranks, params (stride >= 1, padding >= 0, groups >= 0), channels divisible
 * by the groups, then the shapes of w, y, b, din and dw against in's and
 * w's, and the kernel fitting the padded input. Fills the geometry of one
 * image. DQ_ERR_SHAPE / DQ_ERR_ARG naming the tensor at fault with the shape
 * it has and the one expected; DQ_ERR_UNSUPPORTED past BLAS's int sizes. */
dq_status dq_conv2d_check(const dq_conv2d_call *c, dq_conv2d_params p, dq_im2col_geom *g,
                          dq_err *err);

/* DQ_ERR_ARG "<op>: workspace has X floats, needs at least need" when ws is
 * NULL or short; DQ_OK when need <= 0. */
dq_status dq_conv2d_check_workspace(const char *op, const float *ws, int64_t ws_floats,
                                    int64_t need, dq_err *err);

/* Output-plane positions from which dq_conv2d_backward runs image by image
 * (below, it lays a group of images side by side: conv2d.c); the fused
 * conv -> relu -> maxpool backward (conv2d_fused.c) is per image, so it is
 * bitwise the unfused one only from here on. */
#define DQ_CONV2D_BWD_GROUP_P 128

/* Whether dq_conv2d_backward runs image by image for N images, K = C*KH*KW
 * column rows, P output positions, OC channels and ws_floats of workspace
 * (always from DQ_CONV2D_BWD_GROUP_P positions or for one image). */
bool dq_conv2d_backward_per_image(int64_t N, int64_t K, int64_t P, int64_t OC,
                                  int64_t ws_floats);

/* Sum of x[0..n) with 8 partial sums (vectorisable, and more accurate than
 * one running float): every conv path's bias gradient, so that they agree
 * bit for bit. */
float dq_conv2d_bias_sum(const float *x, int64_t n);

/* The training forward's GEMM for gn images side by side (ld = gn * P):
 * lowers them into colbuf (ldcol floats per row; a pointwise conv reads x0,
 * the first image, itself) and computes slab [OC, ld] = w x col, starting
 * from the bias when gn == 1 (a group's bias is added after its permute). */
void dq_conv2d_group_gemm(float *slab, float *colbuf, int64_t ldcol, const float *x0, int64_t gn,
                          const dq_tensor *w, const dq_tensor *b, const dq_im2col_geom *g);

/* One image's ungrouped conv backward, as dq_conv2d_backward runs it image
 * by image: db += row sums of dy [OC, P]; dw += dy x col^T; din_img +=
 * col2im(w^T x dy). col/ld_col are the image's lowered input when the
 * caller has them (NULL: lowered here into ws, ldcol floats per row; a
 * pointwise conv reads x itself); ws's first K * ldcol floats are scratch. */
void dq_conv2d_backward_image(dq_tensor *din, dq_tensor *dw, dq_tensor *db, const float *dy,
                              const float *x, float *din_img, const float *col, int64_t ld_col,
                              const dq_tensor *w, const dq_im2col_geom *g, float *ws,
                              int64_t ldcol);

typedef enum {
    DQ_CONV2D_ALGO_AUTO,   /* direct when depthwise, else GEMM */
    DQ_CONV2D_ALGO_GEMM,   /* im2col + one GEMM per group and image (any groups >= 1) */
    DQ_CONV2D_ALGO_DIRECT, /* depthwise only: no lowering, a few planes of workspace */
} dq_conv2d_algo;

/* Floats of scratch for the grouped paths: one image's columns for the
 * GEMM path; for depthwise (direct) about two bordered input planes and
 * one output plane. */
int64_t dq_conv2d_grouped_workspace(int64_t C, int64_t H, int64_t W, int64_t KH, int64_t KW,
                                    dq_conv2d_params p);

dq_status dq_conv2d_grouped_forward(dq_tensor *out, const dq_tensor *in, const dq_tensor *w,
                                    const dq_tensor *b, dq_conv2d_params p, float *ws,
                                    int64_t ws_floats, dq_conv2d_algo algo, dq_err *err);

dq_status dq_conv2d_grouped_backward(dq_tensor *din, dq_tensor *dw, dq_tensor *db,
                                     const dq_tensor *dout, const dq_tensor *in,
                                     const dq_tensor *w, dq_conv2d_params p, float *ws,
                                     int64_t ws_floats, dq_conv2d_algo algo, dq_err *err);

#endif
