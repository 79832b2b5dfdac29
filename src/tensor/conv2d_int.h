/* conv2d_int.h - the grouped convolution paths behind dq_conv2d_forward /
 * dq_conv2d_backward, visible to conv2d.c and the tests only.
 *
 * dq_conv2d_forward dispatches here when params.groups > 1. The algorithm
 * is normally chosen by the shape (AUTO: the direct kernel for depthwise,
 * groups == C; per-group im2col + GEMM otherwise); the tests force each one
 * to compare them with each other.
 */
#ifndef DQ_CONV2D_INT_H
#define DQ_CONV2D_INT_H

#include "tensor/ops.h"

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
