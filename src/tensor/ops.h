/* ops.h - every layer's forward and backward pass on the CPU.
 *
 * In the spirit of llm.c: one free function per op and direction, outputs
 * first, then inputs, then parameters; shapes are in the comments and are
 * checked on entry (a mismatch is DQ_ERR_SHAPE naming the op and tensor).
 * Forward keeps what backward needs in caller-owned buffers (argmax indices,
 * dropout masks); backward ADDS into every gradient it is given (din, dw,
 * db), so gradients from several consumers of one activation accumulate and
 * zeroing is the caller's job. A NULL gradient pointer means "not needed".
 * No op allocates: scratch space (im2col columns) is passed in, sized by the
 * matching *_workspace function once shapes are known.
 *
 * Batch size N may be smaller than the buffers were planned for: ops use the
 * shapes of the tensors they are given.
 */
#ifndef DQ_OPS_H
#define DQ_OPS_H

#include <stdbool.h>
#include <stdint.h>

#include "tensor/rng.h"
#include "tensor/tensor.h"

/* ---- conv2d: im2col + one sgemm per group of images ------------------------
 * in [N,C,H,W], w [OC,C/groups,KH,KW], b [OC] or NULL, out [N,OC,OH,OW] with
 * OH = (H + 2*pad - KH)/stride + 1 (same for W).
 * groups > 1 (C and OC multiples of it): channel group g of the input feeds
 * only output channels [g*OC/groups, (g+1)*OC/groups), as PyTorch's groups=.
 * Depthwise (groups == C, OC = C*multiplier) runs a direct kernel (its
 * workspace is a few planes); other groupings run
 * im2col + one GEMM per group and image. Plan the workspace with the
 * layer's groups in the params. */
typedef struct {
    int stride;
    int padding;
    /* 0: group as many images per GEMM as the workspace plans (fastest);
     * 1: one GEMM per image, all of the same shape, so an image's output is
     * bitwise the same whatever batch and position it comes in (BLAS
     * kernels treat tile edges differently, so grouped results are not).
     * Grouped convolutions (groups > 1) always run one image at a time. */
    int max_group;
    /* 0 or 1: an ordinary convolution; G > 1: G channel groups (above). */
    int groups;
} dq_conv2d_params;

/* Output spatial size for one dim; <= 0 means the kernel does not fit. */
int64_t dq_conv2d_out_size(int64_t in, int64_t k, int stride, int padding);

/* Floats of scratch needed by forward/backward for a batch of up to N images. */
int64_t dq_conv2d_workspace(int64_t N, int64_t C, int64_t H, int64_t W, int64_t KH,
                            int64_t KW, dq_conv2d_params p);

dq_status dq_conv2d_forward(dq_tensor *out, const dq_tensor *in, const dq_tensor *w,
                            const dq_tensor *b, dq_conv2d_params p, float *ws,
                            int64_t ws_floats, dq_err *err);

/* din [N,C,H,W] (NULL: skip, e.g. first layer), dw like w, db [OC] or NULL. */
dq_status dq_conv2d_backward(dq_tensor *din, dq_tensor *dw, dq_tensor *db,
                             const dq_tensor *dout, const dq_tensor *in, const dq_tensor *w,
                             dq_conv2d_params p, float *ws, int64_t ws_floats, dq_err *err);

/* Eval-mode forward that is batch-invariant: an image's output is bitwise
 * the same whatever batch and position it comes in, on any BLAS (images
 * grouped into position-invariant GEMMs, tensor/gemm.h). Same shapes as
 * dq_conv2d_forward (p.max_group is ignored); the workspace is its own and
 * sized for dq_backend_threads() GEMM threads (the result does not depend
 * on the thread count). groups > 1 runs the grouped/depthwise forward
 * (invariant too) with its own workspace size. */
int64_t dq_conv2d_invariant_workspace(int64_t N, int64_t C, int64_t H, int64_t W, int64_t KH,
                                      int64_t KW, int64_t OC, dq_conv2d_params p);
dq_status dq_conv2d_forward_invariant(dq_tensor *out, const dq_tensor *in, const dq_tensor *w,
                                      const dq_tensor *b, dq_conv2d_params p, float *ws,
                                      int64_t ws_floats, dq_err *err);
/* The same with relu: the output clamped at 0 as it is written (the values
 * of dq_relu_forward on it, bit for bit), which saves the eval forward the
 * relu's pass over the conv's output. */
dq_status dq_conv2d_forward_invariant_relu(dq_tensor *out, const dq_tensor *in,
                                           const dq_tensor *w, const dq_tensor *b,
                                           dq_conv2d_params p, bool relu, float *ws,
                                           int64_t ws_floats, dq_err *err);

/* Training-mode conv2d with its epilogue fused in (conv2d_fused.c): out =
 * conv(in) as dq_conv2d_forward computes it, then, per group of images while
 * still in cache, relu in place (e.relu) and a max pool of out into pool_out
 * [N,OC,PH,PW] / argmax (e.pool_kernel > 0; see maxpool2d below). Every
 * value equals the unfused composition's bit for bit. cols (NULL: none) of
 * dq_conv2d_cols_floats receives the column matrix for
 * dq_conv2d_backward_cols; ws and ws_floats are dq_conv2d_forward's. */
typedef struct {
    bool relu;
    int pool_kernel; /* 0: no pool */
    int pool_stride;
    /* Only the pool output is wanted: out's data is not written (its shape
     * is still checked), the conv output lives in ws, which then needs
     * dq_conv2d_fused_workspace floats. */
    bool discard_out;
} dq_conv2d_epilogue;
int64_t dq_conv2d_fused_workspace(int64_t N, int64_t C, int64_t H, int64_t W, int64_t KH,
                                  int64_t KW, int64_t OC, dq_conv2d_params p);
int64_t dq_conv2d_cols_floats(int64_t N, int64_t C, int64_t H, int64_t W, int64_t KH,
                              int64_t KW, dq_conv2d_params p);
dq_status dq_conv2d_fused_forward(dq_tensor *out, dq_tensor *pool_out, int32_t *argmax,
                                  float *cols, int64_t cols_floats, const dq_tensor *in,
                                  const dq_tensor *w, const dq_tensor *b, dq_conv2d_params p,
                                  dq_conv2d_epilogue e, float *ws, int64_t ws_floats,
                                  dq_err *err);
/* dq_conv2d_backward, reading the columns dq_conv2d_fused_forward saved for
 * the same in, w, p and ws_floats instead of lowering again; bitwise the
 * same gradients. */
dq_status dq_conv2d_backward_cols(dq_tensor *din, dq_tensor *dw, dq_tensor *db,
                                  const dq_tensor *dout, const dq_tensor *in,
                                  const dq_tensor *w, dq_conv2d_params p, const float *cols,
                                  int64_t cols_floats, float *ws, int64_t ws_floats,
                                  dq_err *err);
/* The backward of conv -> relu -> maxpool from the POOL's output gradient
 * pool_dout [N,OC,PH,PW], argmax and output pool_out (as the fused forward
 * left them): per image, dq_maxpool2d_relu_backward_pooled into a scratch
 * plane, then dq_conv2d_backward's GEMMs on it. Bitwise the unfused
 * composition; the conv's output gradient is never materialised. ws needs
 * dq_conv2d_relu_maxpool_backward_workspace floats (C, H, W of the input). */
int64_t dq_conv2d_relu_maxpool_backward_workspace(int64_t C, int64_t H, int64_t W, int64_t KH,
                                                  int64_t KW, int64_t OC, dq_conv2d_params p);
dq_status dq_conv2d_relu_maxpool_backward(dq_tensor *din, dq_tensor *dw, dq_tensor *db,
                                          const dq_tensor *pool_dout, const int32_t *argmax,
                                          const dq_tensor *pool_out, const dq_tensor *in,
                                          const dq_tensor *w, dq_conv2d_params p,
                                          int pool_kernel, int pool_stride, float *ws,
                                          int64_t ws_floats, dq_err *err);

/* ---- linear: out = in @ w^T + b ----------------------------------------------
 * in [N,I], w [O,I] (PyTorch layout), b [O] or NULL, out [N,O]. */
dq_status dq_linear_forward(dq_tensor *out, const dq_tensor *in, const dq_tensor *w,
                            const dq_tensor *b, dq_err *err);
dq_status dq_linear_backward(dq_tensor *din, dq_tensor *dw, dq_tensor *db,
                             const dq_tensor *dout, const dq_tensor *in, const dq_tensor *w,
                             dq_err *err);

/* Eval-mode linear, batch-invariant as dq_conv2d_forward_invariant: a
 * sample's row is bitwise the same in any batch and at any row. */
int64_t dq_linear_invariant_workspace(void);
dq_status dq_linear_forward_invariant(dq_tensor *out, const dq_tensor *in, const dq_tensor *w,
                                      const dq_tensor *b, float *ws, int64_t ws_floats,
                                      dq_err *err);

/* ---- relu (any shape; out may alias in) ------------------------------------- */
dq_status dq_relu_forward(dq_tensor *out, const dq_tensor *in, dq_err *err);
/* Uses the forward OUTPUT (out > 0) so in-place forward is allowed. */
dq_status dq_relu_backward(dq_tensor *din, const dq_tensor *dout, const dq_tensor *out,
                           dq_err *err);
/* The same, OVERWRITING din instead of adding: for a network whose din has
 * this op as its only writer, which then need not zero it first. */
dq_status dq_relu_backward_set(dq_tensor *din, const dq_tensor *dout, const dq_tensor *out,
                               dq_err *err);

/* ---- maxpool2d ----------------------------------------------------------------
 * in [N,C,H,W], out [N,C,OH,OW], OH = (H + 2*padding - k)/stride + 1 (floor
 * mode; the padding is -inf, as PyTorch, and at most k/2), argmax
 * [N*C*OH*OW] int32 index into the unpadded H*W plane, kept for backward. */
int64_t dq_maxpool2d_out_size(int64_t in, int kernel, int stride);
int64_t dq_maxpool2d_out_size_pad(int64_t in, int kernel, int stride, int padding);
/* = dq_maxpool2d_forward_pad with padding 0. */
dq_status dq_maxpool2d_forward(dq_tensor *out, int32_t *argmax, const dq_tensor *in,
                               int kernel, int stride, dq_err *err);
dq_status dq_maxpool2d_forward_pad(dq_tensor *out, int32_t *argmax, const dq_tensor *in,
                                   int kernel, int stride, int padding, dq_err *err);
dq_status dq_maxpool2d_backward(dq_tensor *din, const dq_tensor *dout, const int32_t *argmax,
                                dq_err *err);
/* Overwriting form (din = gradient), as dq_relu_backward_set. */
dq_status dq_maxpool2d_backward_set(dq_tensor *din, const dq_tensor *dout,
                                    const int32_t *argmax, dq_err *err);
/* relu -> maxpool backward in one pass, overwriting: din (the relu's INPUT
 * gradient) = relu'(relu_out) * maxpool backward of dout. relu_out is the
 * relu's output, i.e. the pool's input, [N,C,H,W]. Saves the pass over,
 * and the buffer of, the gradient between the two. */
dq_status dq_maxpool2d_relu_backward_set(dq_tensor *din, const dq_tensor *dout,
                                         const int32_t *argmax, const dq_tensor *relu_out,
                                         dq_err *err);
/* The same result from the POOL output [N,C,OH,OW] (the relu output at each
 * argmax) instead of the relu output, in one dense pass for 2x2 / stride 2
 * (maxpool2d_fused.c); kernel and stride are the forward's. */
dq_status dq_maxpool2d_relu_backward_pooled(dq_tensor *din, const dq_tensor *dout,
                                            const int32_t *argmax, const dq_tensor *pool_out,
                                            int kernel, int stride, dq_err *err);

/* ---- avgpool1d over flattened features (PyTorch F.avg_pool1d on [N,F]) -------
 * in [N,F], out [N,(F - k)/k + 1] with stride = kernel. */
dq_status dq_avgpool1d_forward(dq_tensor *out, const dq_tensor *in, int kernel, dq_err *err);
dq_status dq_avgpool1d_backward(dq_tensor *din, const dq_tensor *dout, int kernel,
                                dq_err *err);

/* ---- avgpool2d (PyTorch nn.AvgPool2d, floor mode) ---------------------------
 * in [N,C,H,W], out [N,C,OH,OW], OH = (H + 2*padding - k)/stride + 1,
 * padding <= k/2. count_include_pad: divide by k*k (PyTorch's default) or
 * by the number of window elements inside the input (ONNX's default). */
int64_t dq_avgpool2d_out_size(int64_t in, int kernel, int stride, int padding);
dq_status dq_avgpool2d_forward(dq_tensor *out, const dq_tensor *in, int kernel, int stride,
                               int padding, bool count_include_pad, dq_err *err);
dq_status dq_avgpool2d_backward(dq_tensor *din, const dq_tensor *dout, int kernel, int stride,
                                int padding, bool count_include_pad, dq_err *err);

/* ---- global average pooling (adaptive_avg_pool2d to 1x1) ---------------------
 * in [N,C,H,W] -> out [N,C,1,1], the mean of each plane. */
dq_status dq_global_avgpool_forward(dq_tensor *out, const dq_tensor *in, dq_err *err);
dq_status dq_global_avgpool_backward(dq_tensor *din, const dq_tensor *dout, dq_err *err);

/* ---- add: the residual connection (any shape, a and b the same shape) --------
 * out = a + b; out may alias a or b. Backward is din += dout, called once
 * for each input. */
dq_status dq_add_forward(dq_tensor *out, const dq_tensor *a, const dq_tensor *b, dq_err *err);
dq_status dq_add_backward(dq_tensor *din, const dq_tensor *dout, dq_err *err);

/* ---- clip / relu6 (PyTorch hardtanh; any shape; out may alias in) -------------
 * out = min(max(in, lo), hi), NaN propagates. Backward reads the OUTPUT:
 * din += dout where lo < out < hi (hardtanh_backward's lo < in < hi). */
dq_status dq_clip_forward(dq_tensor *out, const dq_tensor *in, float lo, float hi,
                          dq_err *err);
dq_status dq_clip_backward(dq_tensor *din, const dq_tensor *dout, const dq_tensor *out,
                           float lo, float hi, dq_err *err);

/* ---- batchnorm2d (PyTorch nn.BatchNorm2d, affine) -----------------------------
 * in/out [N,C,H,W], w/b/running_mean/running_var [C]. train: normalise with
 * the batch mean and biased variance over n = N*H*W (n >= 2), keep them in
 * save_mean/save_invstd [C] (invstd = 1/sqrt(var + eps)) for backward, and
 * update running_x = (1 - momentum)*running_x + momentum*batch_x with the
 * UNBIASED variance var*n/(n-1), exactly PyTorch (running stats NULL: not
 * tracked). eval: normalise with the running stats (required); save_* are
 * unused and may be NULL. out may alias in. */
dq_status dq_batchnorm2d_forward(dq_tensor *out, float *save_mean, float *save_invstd,
                                 dq_tensor *running_mean, dq_tensor *running_var,
                                 const dq_tensor *in, const dq_tensor *w, const dq_tensor *b,
                                 float eps, float momentum, bool train, dq_err *err);
/* Training-mode backward (the batch statistics depend on the input): din,
 * dw, db ADD; each may be NULL. in is the forward's input. */
dq_status dq_batchnorm2d_backward(dq_tensor *din, dq_tensor *dw, dq_tensor *db,
                                  const dq_tensor *dout, const dq_tensor *in, const dq_tensor *w,
                                  const float *save_mean, const float *save_invstd,
                                  dq_err *err);
/* Folds an eval batch norm into the conv before it: conv_w [oc, per_oc]
 * (per_oc = C/groups*KH*KW) is scaled per output channel by
 * s = w/sqrt(var + eps), conv_b [oc] becomes (conv_b - mean)*s + b. conv_b
 * must exist (a conv without bias passes a zeroed buffer). */
void dq_batchnorm2d_fold(float *conv_w, float *conv_b, int64_t oc, int64_t per_oc,
                         const float *w, const float *b, const float *mean, const float *var,
                         float eps);

/* ---- dropout (inverted: kept values scaled by 1/(1-p)) -------------------------
 * mask has numel(in) floats: 0 or 1/(1-p) in training; unused in eval, where
 * out = in. rng is advanced once per element in training only. */
dq_status dq_dropout_forward(dq_tensor *out, float *mask, const dq_tensor *in, float p,
                             bool train, dq_rng *rng, dq_err *err);
dq_status dq_dropout_backward(dq_tensor *din, const dq_tensor *dout, const float *mask,
                              float p, bool train, dq_err *err);

/* ---- softmax / log_softmax with temperature over the last dim ------------------
 * in [N,K], out [N,K]: out = softmax(in / T) or log_softmax(in / T). */
dq_status dq_softmax_forward(dq_tensor *out, const dq_tensor *in, float T, dq_err *err);
dq_status dq_softmax_backward(dq_tensor *din, const dq_tensor *dout, const dq_tensor *out,
                              float T, dq_err *err);
dq_status dq_log_softmax_forward(dq_tensor *out, const dq_tensor *in, float T, dq_err *err);
dq_status dq_log_softmax_backward(dq_tensor *din, const dq_tensor *dout, const dq_tensor *out,
                                  float T, dq_err *err);

#endif
