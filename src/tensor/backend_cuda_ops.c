/* backend_cuda_ops.c - the CUDA backend's op table (backend_ops.h).
 *
 * One instance per device: a non-blocking stream and the cuDNN and cuBLAS
 * handles bound to it, plus the dropout stream's seed and counter. Conv
 * (grouped too), batch norm and linear go to cuDNN / cuBLAS
 * (kernels/cuda_glue.h; per-layer descriptors are the layer state of
 * conv_plan/bn_plan), every other op to our kernels (kernels/kernels.h);
 * the CPU ops are their reference
 * (tests/test_cuda.c). All work is enqueued on the one stream; to_host is
 * the only synchronising call. Math is FP32 FMA only (no TF32: cuBLAS
 * default math, cuDNN FMA-math algorithms), so results
 * equal the CPU's up to float rounding, not bit for bit; dropout masks come
 * from a counter-based hash, not the caller's rng.
 *
 * The overwriting backward forms are a CPU capability this table leaves out
 * (no DQ_BK_SET_GRAD): the walk then zeroes every gradient and accumulates. This file and
 * backend_cuda.c are the src/tensor files that test DQ_HAVE_CUDA; without
 * CUDA, dq_backend_cuda_new is a one-line DQ_ERR_UNSUPPORTED.
 */
#include "tensor/backend_ops.h"

#ifdef DQ_HAVE_CUDA

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda_glue.h"
#include "kernels/kernels.h"

/* Workspace the chosen algorithms of one conv may need. A constant, not a
 * share of the free memory: the choice (and so a sample's bits) must depend
 * on the layer's shape alone, never on what else the card holds. The net
 * allocates the largest need over its layers (net.c s_plan_ops), not this. */
#define S_WS_LIMIT ((size_t)256 << 20)

typedef struct {
    dq_backend_t base; /* first: a dq_backend_t * is a s_cuda * */
    int dev;
    cudaStream_t stream;
    cudnnHandle_t cudnn;
    cublasHandle_t cublas;
    uint64_t seed, dropout_ctr;
} s_cuda;

static s_cuda *s_of(dq_backend_t *b)
{
    return (s_cuda *)b;
}

static dq_status s_use(s_cuda *c, dq_err *err)
{
    DQ_CUDA_TRY(cudaSetDevice(c->dev), err);
    return DQ_OK;
}

static void s_destroy(dq_backend_t *b)
{
    s_cuda *c = s_of(b);
    if (cudaSetDevice(c->dev) == cudaSuccess && c->stream) (void)cudaStreamSynchronize(c->stream);
    if (c->cublas) (void)cublasDestroy(c->cublas);
    if (c->cudnn) (void)cudnnDestroy(c->cudnn);
    if (c->stream) (void)cudaStreamDestroy(c->stream);
    free(c);
}

static dq_status s_alloc(dq_backend_t *b, void **p, size_t bytes, dq_err *err)
{
    s_cuda *c = s_of(b);
    *p = NULL;
    DQ_TRY(s_use(c, err));
    DQ_CUDA_TRY(cudaMalloc(p, bytes ? bytes : 256), err);
    DQ_CUDA_TRY(cudaMemsetAsync(*p, 0, bytes, c->stream), err);
    return DQ_OK;
}

static void s_free(dq_backend_t *b, void *p)
{
    s_cuda *c = s_of(b);
    if (!p) return;
    if (cudaSetDevice(c->dev) == cudaSuccess) {
        (void)cudaStreamSynchronize(c->stream);
        (void)cudaFree(p);
    }
}

static dq_status s_host_alloc(dq_backend_t *b, void **p, size_t bytes, dq_err *err)
{
    DQ_TRY(s_use(s_of(b), err));
    *p = NULL;
    DQ_CUDA_TRY(cudaMallocHost(p, bytes ? bytes : 256), err);
    memset(*p, 0, bytes);
    return DQ_OK;
}

static void s_host_free(dq_backend_t *b, void *p)
{
    s_cuda *c = s_of(b);
    if (!p) return;
    if (cudaSetDevice(c->dev) == cudaSuccess) (void)cudaStreamSynchronize(c->stream);
    (void)cudaFreeHost(p);
}

static dq_status s_copy_kind(dq_backend_t *b, void *dst, const void *src, size_t bytes,
                             enum cudaMemcpyKind kind, bool sync, dq_err *err)
{
    s_cuda *c = s_of(b);
    DQ_TRY(s_use(c, err));
    if (bytes) DQ_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, kind, c->stream), err);
    if (sync) DQ_CUDA_TRY(cudaStreamSynchronize(c->stream), err);
    return DQ_OK;
}

/* Host to device is asynchronous: the host buffer must stay unchanged until
 * the next synchronising call (the walk's host buffers are only rewritten
 * after one). */
static dq_status s_to_device(dq_backend_t *b, void *dst, const void *src, size_t bytes,
                             dq_err *err)
{
    return s_copy_kind(b, dst, src, bytes, cudaMemcpyHostToDevice, false, err);
}

static dq_status s_to_host(dq_backend_t *b, void *dst, const void *src, size_t bytes,
                           dq_err *err)
{
    return s_copy_kind(b, dst, src, bytes, cudaMemcpyDeviceToHost, true, err);
}

static dq_status s_copy(dq_backend_t *b, void *dst, const void *src, size_t bytes, dq_err *err)
{
    return s_copy_kind(b, dst, src, bytes, cudaMemcpyDeviceToDevice, false, err);
}

static dq_status s_zero(dq_backend_t *b, void *p, size_t bytes, dq_err *err)
{
    s_cuda *c = s_of(b);
    DQ_TRY(s_use(c, err));
    if (bytes) DQ_CUDA_TRY(cudaMemsetAsync(p, 0, bytes, c->stream), err);
    return DQ_OK;
}

static dq_status s_sync(dq_backend_t *b, dq_err *err)
{
    s_cuda *c = s_of(b);
    DQ_TRY(s_use(c, err));
    DQ_CUDA_TRY(cudaStreamSynchronize(c->stream), err);
    return DQ_OK;
}

static dq_status s_conv_plan(dq_backend_t *b, void **state, const dq_backend_conv *g,
                             int64_t max_n, bool train, size_t *ws_bytes, dq_err *err)
{
    s_cuda *c = s_of(b);
    *state = NULL;
    *ws_bytes = 0;
    DQ_TRY(s_use(c, err));
    dq_cuda_conv *cv = calloc(1, sizeof *cv);
    if (!cv) return dq_fail(err, DQ_ERR_NOMEM, "conv2d on cuda: out of memory");
    dq_status st = dq_cuda_conv_init_grouped(cv, c->cudnn, max_n, g->c, g->h, g->w, g->oc,
                                             g->kernel, g->p.stride, g->p.padding, g->p.groups,
                                             train, S_WS_LIMIT, err);
    if (st != DQ_OK) {
        free(cv);
        return st;
    }
    *state = cv;
    *ws_bytes = cv->ws_bytes;
    return DQ_OK;
}

static void s_conv_release(dq_backend_t *b, void *state)
{
    (void)b;
    if (!state) return;
    dq_cuda_conv_destroy(state);
    free(state);
}

static size_t s_linear_ws(dq_backend_t *b, int64_t in, int64_t out)
{
    (void)b, (void)in, (void)out;
    return 0;
}

static dq_status s_conv_fwd(dq_backend_t *b, void *state, dq_tensor *out, const dq_tensor *in,
                            const dq_tensor *w, const dq_tensor *bias, const dq_backend_conv *g,
                            bool eval, void *ws, size_t ws_bytes, dq_err *err)
{
    s_cuda *c = s_of(b);
    (void)g, (void)eval;
    DQ_TRY(dq_cuda_conv_set_batch(state, c->cudnn, in->shape[0], ws_bytes, err));
    return dq_cuda_conv_forward(state, c->cudnn, out->data, in->data, w->data,
                                bias ? bias->data : NULL, ws, ws_bytes, err);
}

static dq_status s_conv_bwd(dq_backend_t *b, void *state, dq_tensor *din, dq_tensor *dw,
                            dq_tensor *db, const dq_tensor *dout, const dq_tensor *in,
                            const dq_tensor *w, const dq_backend_conv *g, void *ws,
                            size_t ws_bytes, dq_err *err)
{
    s_cuda *c = s_of(b);
    (void)g;
    DQ_TRY(dq_cuda_conv_set_batch(state, c->cudnn, in->shape[0], ws_bytes, err));
    return dq_cuda_conv_backward(state, c->cudnn, din ? din->data : NULL, dw ? dw->data : NULL,
                                 db ? db->data : NULL, dout->data, in->data, w->data, ws,
                                 ws_bytes, err);
}

static dq_status s_linear_fwd(dq_backend_t *b, dq_tensor *out, const dq_tensor *in,
                              const dq_tensor *w, const dq_tensor *bias, bool eval, void *ws,
                              size_t ws_bytes, dq_err *err)
{
    s_cuda *c = s_of(b);
    (void)eval, (void)ws, (void)ws_bytes;
    return dq_cuda_linear_forward(c->cublas, c->stream, out->data, in->data, w->data,
                                  bias ? bias->data : NULL, in->shape[0], dq_tensor_inner(in, 1),
                                  dq_tensor_inner(out, 1), err);
}

static dq_status s_linear_bwd(dq_backend_t *b, dq_tensor *din, dq_tensor *dw, dq_tensor *db,
                              const dq_tensor *dout, const dq_tensor *in, const dq_tensor *w,
                              dq_err *err)
{
    s_cuda *c = s_of(b);
    return dq_cuda_linear_backward(c->cublas, c->stream, din ? din->data : NULL,
                                   dw ? dw->data : NULL, db ? db->data : NULL, dout->data,
                                   in->data, w->data, in->shape[0], dq_tensor_inner(in, 1),
                                   dq_tensor_inner(dout, 1), err);
}

static dq_status s_relu_fwd(dq_backend_t *b, dq_tensor *out, const dq_tensor *in, dq_err *err)
{
    DQ_CUDA_TRY(dq_k_relu_forward(out->data, in->data, dq_tensor_numel(out), s_of(b)->stream),
                err);
    return DQ_OK;
}

static dq_status s_relu_bwd(dq_backend_t *b, dq_tensor *din, const dq_tensor *dout,
                            const dq_tensor *out, bool set, dq_err *err)
{
    if (set) return dq_fail(err, DQ_ERR_UNSUPPORTED, "relu: no overwriting backward on cuda");
    DQ_CUDA_TRY(dq_k_relu_backward(din->data, dout->data, out->data, dq_tensor_numel(out),
                                   s_of(b)->stream),
                err);
    return DQ_OK;
}

static dq_status s_maxpool_fwd(dq_backend_t *b, dq_tensor *out, int32_t *argmax,
                               const dq_tensor *in, int kernel, int stride, int padding,
                               dq_err *err)
{
    DQ_CUDA_TRY(dq_k_maxpool2d_forward_pad(out->data, argmax, in->data,
                                           in->shape[0] * in->shape[1], in->shape[2],
                                           in->shape[3], out->shape[2], out->shape[3], kernel,
                                           stride, padding, s_of(b)->stream),
                err);
    return DQ_OK;
}

static dq_status s_maxpool_bwd(dq_backend_t *b, dq_tensor *din, const dq_tensor *dout,
                               const int32_t *argmax, int kernel, int stride, int padding,
                               bool set, dq_err *err)
{
    if (set) return dq_fail(err, DQ_ERR_UNSUPPORTED, "maxpool2d: no overwriting backward on cuda");
    DQ_CUDA_TRY(dq_k_maxpool2d_backward_pad(din->data, dout->data, argmax,
                                            din->shape[0] * din->shape[1], din->shape[2],
                                            din->shape[3], dout->shape[2], dout->shape[3], kernel,
                                            stride, padding, s_of(b)->stream),
                err);
    return DQ_OK;
}

static dq_status s_avgpool1d_fwd(dq_backend_t *b, dq_tensor *out, const dq_tensor *in,
                                 int kernel, dq_err *err)
{
    DQ_CUDA_TRY(dq_k_avgpool1d_forward(out->data, in->data, in->shape[0], dq_tensor_inner(in, 1),
                                       kernel, s_of(b)->stream),
                err);
    return DQ_OK;
}

static dq_status s_avgpool1d_bwd(dq_backend_t *b, dq_tensor *din, const dq_tensor *dout,
                                 int kernel, dq_err *err)
{
    DQ_CUDA_TRY(dq_k_avgpool1d_backward(din->data, dout->data, din->shape[0],
                                        dq_tensor_inner(din, 1), kernel, s_of(b)->stream),
                err);
    return DQ_OK;
}

static dq_status s_dropout_fwd(dq_backend_t *b, dq_tensor *out, float *mask, const dq_tensor *in,
                               float p, bool train, dq_rng *rng, dq_err *err)
{
    s_cuda *c = s_of(b);
    (void)rng;
    int64_t n = dq_tensor_numel(in);
    if (!train) return s_copy(b, out->data, in->data, (size_t)n * sizeof(float), err);
    DQ_CUDA_TRY(dq_k_dropout_forward(out->data, mask, in->data, n, p, c->seed, c->dropout_ctr,
                                     c->stream),
                err);
    c->dropout_ctr += (uint64_t)n;
    return DQ_OK;
}

static dq_status s_dropout_bwd(dq_backend_t *b, dq_tensor *din, const dq_tensor *dout,
                               const float *mask, float p, dq_err *err)
{
    (void)p;
    DQ_CUDA_TRY(dq_k_mul_add(din->data, dout->data, mask, dq_tensor_numel(dout),
                             s_of(b)->stream),
                err);
    return DQ_OK;
}

/* ---- the residual-network ops ---------------------------------------------------- */

static dq_status s_bn_plan(dq_backend_t *b, void **state, int64_t c, int64_t h, int64_t w,
                           int64_t max_n, dq_err *err)
{
    *state = NULL;
    DQ_TRY(s_use(s_of(b), err));
    dq_cuda_bn *bn = calloc(1, sizeof *bn);
    if (!bn) return dq_fail(err, DQ_ERR_NOMEM, "batchnorm2d on cuda: out of memory");
    dq_status st = dq_cuda_bn_init(bn, max_n, c, h, w, err);
    if (st != DQ_OK) {
        free(bn);
        return st;
    }
    *state = bn;
    return DQ_OK;
}

static void s_bn_release(dq_backend_t *b, void *state)
{
    (void)b;
    if (!state) return;
    dq_cuda_bn_destroy(state);
    free(state);
}

static dq_status s_bn_fwd(dq_backend_t *b, void *state, dq_tensor *out, float *save_mean,
                          float *save_invstd, dq_tensor *running_mean, dq_tensor *running_var,
                          const dq_tensor *in, const dq_tensor *w, const dq_tensor *bias,
                          float eps, float momentum, bool train, dq_err *err)
{
    DQ_TRY(dq_cuda_bn_set_batch(state, in->shape[0], err));
    return dq_cuda_bn_forward(state, s_of(b)->cudnn, out->data, save_mean, save_invstd,
                              running_mean->data, running_var->data, in->data, w->data,
                              bias->data, eps, momentum, train, err);
}

static dq_status s_bn_bwd(dq_backend_t *b, void *state, dq_tensor *din, dq_tensor *dw,
                          dq_tensor *db, const dq_tensor *dout, const dq_tensor *in,
                          const dq_tensor *w, const float *save_mean, const float *save_invstd,
                          float eps, dq_err *err)
{
    if (!din || !dw || !db) /* cuDNN computes all three */
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "batchnorm2d on cuda: backward needs the input, "
                       "weight and bias gradients (a batch norm reading the model input)");
    DQ_TRY(dq_cuda_bn_set_batch(state, in->shape[0], err));
    return dq_cuda_bn_backward(state, s_of(b)->cudnn, din->data, dw->data, db->data, dout->data,
                               in->data, w->data, save_mean, save_invstd, eps, err);
}

static dq_status s_add_fwd(dq_backend_t *b, dq_tensor *out, const dq_tensor *x,
                           const dq_tensor *y, dq_err *err)
{
    DQ_CUDA_TRY(dq_k_add_forward(out->data, x->data, y->data, dq_tensor_numel(out),
                                 s_of(b)->stream),
                err);
    return DQ_OK;
}

static dq_status s_add_bwd(dq_backend_t *b, dq_tensor *din, const dq_tensor *dout, dq_err *err)
{
    DQ_CUDA_TRY(dq_k_add_backward(din->data, dout->data, dq_tensor_numel(dout), s_of(b)->stream),
                err);
    return DQ_OK;
}

static dq_status s_clip_fwd(dq_backend_t *b, dq_tensor *out, const dq_tensor *in, float lo,
                            float hi, dq_err *err)
{
    DQ_CUDA_TRY(dq_k_clip_forward(out->data, in->data, dq_tensor_numel(out), lo, hi,
                                  s_of(b)->stream),
                err);
    return DQ_OK;
}

static dq_status s_clip_bwd(dq_backend_t *b, dq_tensor *din, const dq_tensor *dout,
                            const dq_tensor *out, float lo, float hi, dq_err *err)
{
    DQ_CUDA_TRY(dq_k_clip_backward(din->data, dout->data, out->data, dq_tensor_numel(out), lo, hi,
                                   s_of(b)->stream),
                err);
    return DQ_OK;
}

static dq_status s_avgpool2d_fwd(dq_backend_t *b, dq_tensor *out, const dq_tensor *in, int kernel,
                                 int stride, int padding, bool cip, dq_err *err)
{
    DQ_CUDA_TRY(dq_k_avgpool2d_forward(out->data, in->data, in->shape[0] * in->shape[1],
                                       in->shape[2], in->shape[3], out->shape[2], out->shape[3],
                                       kernel, stride, padding, cip, s_of(b)->stream),
                err);
    return DQ_OK;
}

static dq_status s_avgpool2d_bwd(dq_backend_t *b, dq_tensor *din, const dq_tensor *dout,
                                 int kernel, int stride, int padding, bool cip, dq_err *err)
{
    DQ_CUDA_TRY(dq_k_avgpool2d_backward(din->data, dout->data, din->shape[0] * din->shape[1],
                                        din->shape[2], din->shape[3], dout->shape[2],
                                        dout->shape[3], kernel, stride, padding, cip,
                                        s_of(b)->stream),
                err);
    return DQ_OK;
}

static dq_status s_gap_fwd(dq_backend_t *b, dq_tensor *out, const dq_tensor *in, dq_err *err)
{
    DQ_CUDA_TRY(dq_k_global_avgpool_forward(out->data, in->data, in->shape[0] * in->shape[1],
                                            in->shape[2] * in->shape[3], s_of(b)->stream),
                err);
    return DQ_OK;
}

static dq_status s_gap_bwd(dq_backend_t *b, dq_tensor *din, const dq_tensor *dout, dq_err *err)
{
    DQ_CUDA_TRY(dq_k_global_avgpool_backward(din->data, dout->data, din->shape[0] * din->shape[1],
                                             din->shape[2] * din->shape[3], s_of(b)->stream),
                err);
    return DQ_OK;
}

static dq_status s_adam(dq_backend_t *b, float *params, const float *grads, float *m, float *v,
                        int64_t n, int64_t step, const dq_adam_config *cfg, dq_err *err)
{
    s_cuda *c = s_of(b);
    if (step < 1) return dq_fail(err, DQ_ERR_ARG, "adam on cuda: step %lld must be >= 1",
                                 (long long)step);
    DQ_TRY(s_use(c, err));
    /* The scalars exactly as adam.c computes them. */
    double bc1 = 1.0 - pow(cfg->beta1, (double)step);
    double bc2 = 1.0 - pow(cfg->beta2, (double)step);
    dq_k_adam_scalars k = {
        .b1 = (float)cfg->beta1, .a1 = (float)(1.0 - cfg->beta1),
        .b2 = (float)cfg->beta2, .a2 = (float)(1.0 - cfg->beta2),
        .wd = (float)cfg->weight_decay, .use_wd = cfg->weight_decay != 0.0,
        .bc2s = (float)sqrt(bc2), .eps = (float)cfg->eps, .nstep = (float)(-(cfg->lr / bc1)),
    };
    DQ_CUDA_TRY(dq_k_adam_step(params, grads, m, v, n, k, c->stream), err);
    return DQ_OK;
}

static const dq_backend_ops s_cuda_ops = {
    .name = "cuda",
    .caps = 0,
    .destroy = s_destroy,
    .alloc = s_alloc,
    .free = s_free,
    .host_alloc = s_host_alloc,
    .host_free = s_host_free,
    .to_device = s_to_device,
    .to_host = s_to_host,
    .zero = s_zero,
    .copy = s_copy,
    .sync = s_sync,
    .conv_plan = s_conv_plan,
    .conv_release = s_conv_release,
    .linear_ws = s_linear_ws,
    .conv2d_forward = s_conv_fwd,
    .conv2d_backward = s_conv_bwd,
    .linear_forward = s_linear_fwd,
    .linear_backward = s_linear_bwd,
    .relu_forward = s_relu_fwd,
    .relu_backward = s_relu_bwd,
    .maxpool2d_forward = s_maxpool_fwd,
    .maxpool2d_backward = s_maxpool_bwd,
    .maxpool2d_relu_backward_set = NULL,
    .maxpool2d_relu_backward_pooled = NULL,
    .conv_fusions = NULL, /* the CPU's training fusions: none here */
    .conv2d_fused_forward = NULL,
    .conv2d_relu_maxpool_backward = NULL,
    .avgpool1d_forward = s_avgpool1d_fwd,
    .avgpool1d_backward = s_avgpool1d_bwd,
    .dropout_forward = s_dropout_fwd,
    .dropout_backward = s_dropout_bwd,
    .bn_plan = s_bn_plan,
    .bn_release = s_bn_release,
    .batchnorm2d_forward = s_bn_fwd,
    .batchnorm2d_backward = s_bn_bwd,
    .add_forward = s_add_fwd,
    .add_backward = s_add_bwd,
    .clip_forward = s_clip_fwd,
    .clip_backward = s_clip_bwd,
    .avgpool2d_forward = s_avgpool2d_fwd,
    .avgpool2d_backward = s_avgpool2d_bwd,
    .global_avgpool_forward = s_gap_fwd,
    .global_avgpool_backward = s_gap_bwd,
    .adam_step = s_adam,
};

static dq_status s_setup(s_cuda *c, dq_err *err)
{
    DQ_TRY(s_use(c, err));
    DQ_CUDA_TRY(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking), err);
    DQ_CUDNN_TRY(cudnnCreate(&c->cudnn), err);
    DQ_CUDNN_TRY(cudnnSetStream(c->cudnn, c->stream), err);
    DQ_CUBLAS_TRY(cublasCreate(&c->cublas), err);
    DQ_CUBLAS_TRY(cublasSetStream(c->cublas, c->stream), err);
    /* FP32 as FMA only. Default math never lowers FP32 to TF32 (that takes
     * CUBLAS_TF32_TENSOR_OP_MATH; NVIDIA_TF32_OVERRIDE can only turn TF32
     * off); pedantic math would be FMA too but may refuse the fastest
     * kernels. Set and read back, so nothing inherited changes it. */
    DQ_CUBLAS_TRY(cublasSetMathMode(c->cublas, CUBLAS_DEFAULT_MATH), err);
    cublasMath_t mode = CUBLAS_TF32_TENSOR_OP_MATH;
    DQ_CUBLAS_TRY(cublasGetMathMode(c->cublas, &mode), err);
    if (mode != CUBLAS_DEFAULT_MATH)
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "cuBLAS math mode %d is not FP32 FMA", (int)mode);
    return DQ_OK;
}

dq_status dq_backend_cuda_new(dq_backend_t **out, dq_device dev, uint64_t seed, dq_err *err)
{
    *out = NULL;
    if (dev.kind != DQ_DEVICE_CUDA)
        return dq_fail(err, DQ_ERR_ARG, "cuda backend: device is not a CUDA device");
    s_cuda *c = calloc(1, sizeof *c);
    if (!c) return dq_fail(err, DQ_ERR_NOMEM, "cuda backend: out of memory");
    c->base.ops = &s_cuda_ops;
    c->dev = dev.index;
    c->seed = seed;
    dq_status st = s_setup(c, err);
    if (st != DQ_OK) {
        dq_fail_prefix(err, st, "cuda:%d: ", dev.index);
        s_destroy(&c->base);
        return st;
    }
    *out = &c->base;
    return DQ_OK;
}

#else /* !DQ_HAVE_CUDA */

dq_status dq_backend_cuda_new(dq_backend_t **out, dq_device dev, uint64_t seed, dq_err *err)
{
    (void)seed;
    *out = NULL;
    return dq_fail(err, DQ_ERR_UNSUPPORTED, "cuda:%d: this build has no CUDA support (configure "
                   "--with-cuda)", dev.index);
}

#endif
