/* backend_cpu.c - the CPU backend's op table (backend_ops.h): each entry is
 * the CPU op of tensor/ops.h; eval-mode conv2d and linear take the
 * position-invariant GEMM forms that make the network's eval forward
 * batch-invariant (model/net.h, tensor/gemm.h).
 *
 * Memory is the host's (64-byte aligned, zeroed), and the backend has the
 * overwriting relu/maxpool backward forms and the fused relu+maxpool one,
 * which the walk uses to skip zeroing gradients (DQ_BK_SET_GRAD), and the
 * training conv -> relu -> maxpool fusions of conv2d_fused.c
 * (conv_fusions: ungrouped convs, unpadded pools).
 */
#include "tensor/backend_ops.h"

#include "tensor/conv2d_int.h"

#include <stdlib.h>
#include <string.h>

#define S_ALIGN 64

static void s_destroy(dq_backend_t *b)
{
    (void)b;
}

static dq_status s_alloc(dq_backend_t *b, void **p, size_t bytes, dq_err *err)
{
    (void)b;
    size_t n = (bytes + S_ALIGN - 1) / S_ALIGN * S_ALIGN; /* aligned_alloc's rule */
    *p = aligned_alloc(S_ALIGN, n ? n : S_ALIGN);
    if (!*p) return dq_fail(err, DQ_ERR_NOMEM, "cpu: cannot allocate %zu bytes", bytes);
    memset(*p, 0, n);
    return DQ_OK;
}

static void s_free(dq_backend_t *b, void *p)
{
    (void)b;
    free(p);
}

static dq_status s_memcpy(dq_backend_t *b, void *dst, const void *src, size_t bytes,
                          dq_err *err)
{
    (void)b, (void)err;
    if (dst != src && bytes) memcpy(dst, src, bytes);
    return DQ_OK;
}

static dq_status s_zero(dq_backend_t *b, void *p, size_t bytes, dq_err *err)
{
    (void)b, (void)err;
    if (bytes) memset(p, 0, bytes);
    return DQ_OK;
}

static dq_status s_sync(dq_backend_t *b, dq_err *err)
{
    (void)b, (void)err;
    return DQ_OK;
}

static dq_status s_conv_plan(dq_backend_t *b, void **state, const dq_backend_conv *g,
                             int64_t max_n, bool train, size_t *ws_bytes, dq_err *err)
{
    (void)b, (void)train, (void)err;
    *state = NULL;
    dq_conv2d_params p = g->p;
    p.max_group = 0;
    int64_t ws = dq_conv2d_workspace(max_n, g->c, g->h, g->w, g->kernel, g->kernel, p);
    int64_t we = dq_conv2d_invariant_workspace(max_n, g->c, g->h, g->w, g->kernel, g->kernel,
                                               g->oc, p);
    *ws_bytes = (size_t)(ws > we ? ws : we) * sizeof(float);
    return DQ_OK;
}

static void s_conv_release(dq_backend_t *b, void *state)
{
    (void)b, (void)state;
}

static size_t s_linear_ws(dq_backend_t *b, int64_t in, int64_t out)
{
    (void)b, (void)in, (void)out;
    return (size_t)dq_linear_invariant_workspace() * sizeof(float);
}

static dq_status s_conv_fwd(dq_backend_t *b, void *state, dq_tensor *out, const dq_tensor *in,
                            const dq_tensor *w, const dq_tensor *bias, const dq_backend_conv *g,
                            bool eval, void *ws, size_t ws_bytes, dq_err *err)
{
    (void)b, (void)state;
    dq_conv2d_params p = g->p;
    p.max_group = 0;
    int64_t wf = (int64_t)(ws_bytes / sizeof(float));
    /* eval: position-invariant GEMMs (batch-invariant, see model/net.h);
     * grouped and depthwise convolutions are invariant by construction */
    return eval ? dq_conv2d_forward_invariant_relu(out, in, w, bias, p, g->relu, ws, wf, err)
                : dq_conv2d_forward(out, in, w, bias, p, ws, wf, err);
}

static dq_status s_conv_bwd(dq_backend_t *b, void *state, dq_tensor *din, dq_tensor *dw,
                            dq_tensor *db, const dq_tensor *dout, const dq_tensor *in,
                            const dq_tensor *w, const dq_backend_conv *g, void *ws,
                            size_t ws_bytes, dq_err *err)
{
    (void)b, (void)state;
    dq_conv2d_params p = g->p;
    p.max_group = 0;
    return dq_conv2d_backward(din, dw, db, dout, in, w, p, ws,
                              (int64_t)(ws_bytes / sizeof(float)), err);
}

static dq_status s_linear_fwd(dq_backend_t *b, dq_tensor *out, const dq_tensor *in,
                              const dq_tensor *w, const dq_tensor *bias, bool eval, void *ws,
                              size_t ws_bytes, dq_err *err)
{
    (void)b;
    if (!eval) return dq_linear_forward(out, in, w, bias, err);
    return dq_linear_forward_invariant(out, in, w, bias, ws, (int64_t)(ws_bytes / sizeof(float)),
                                       err);
}

static dq_status s_linear_bwd(dq_backend_t *b, dq_tensor *din, dq_tensor *dw, dq_tensor *db,
                              const dq_tensor *dout, const dq_tensor *in, const dq_tensor *w,
                              dq_err *err)
{
    (void)b;
    return dq_linear_backward(din, dw, db, dout, in, w, err);
}

static dq_status s_relu_fwd(dq_backend_t *b, dq_tensor *out, const dq_tensor *in, dq_err *err)
{
    (void)b;
    return dq_relu_forward(out, in, err);
}

static dq_status s_relu_bwd(dq_backend_t *b, dq_tensor *din, const dq_tensor *dout,
                            const dq_tensor *out, bool set, dq_err *err)
{
    (void)b;
    return set ? dq_relu_backward_set(din, dout, out, err) : dq_relu_backward(din, dout, out, err);
}

static dq_status s_maxpool_fwd(dq_backend_t *b, dq_tensor *out, int32_t *argmax,
                               const dq_tensor *in, int kernel, int stride, int padding,
                               dq_err *err)
{
    (void)b;
    return dq_maxpool2d_forward_pad(out, argmax, in, kernel, stride, padding, err);
}

static dq_status s_maxpool_bwd(dq_backend_t *b, dq_tensor *din, const dq_tensor *dout,
                               const int32_t *argmax, int kernel, int stride, int padding,
                               bool set, dq_err *err)
{
    (void)b, (void)kernel, (void)stride, (void)padding;
    return set ? dq_maxpool2d_backward_set(din, dout, argmax, err)
               : dq_maxpool2d_backward(din, dout, argmax, err);
}

static dq_status s_maxpool_relu_bwd(dq_backend_t *b, dq_tensor *din, const dq_tensor *dout,
                                    const int32_t *argmax, const dq_tensor *relu_out, dq_err *err)
{
    (void)b;
    return dq_maxpool2d_relu_backward_set(din, dout, argmax, relu_out, err);
}

static dq_status s_maxpool_relu_pooled(dq_backend_t *b, dq_tensor *din, const dq_tensor *dout,
                                       const int32_t *argmax, const dq_tensor *pool_out,
                                       int kernel, int stride, dq_err *err)
{
    (void)b;
    return dq_maxpool2d_relu_backward_pooled(din, dout, argmax, pool_out, kernel, stride, err);
}

/* The fusions of conv2d_fused.c apply to ordinary (ungrouped) convs and
 * unpadded pools; the fused backward runs image by image, which is bitwise
 * dq_conv2d_backward only where that one does too (output planes of at
 * least DQ_CONV2D_BWD_GROUP_P positions, conv2d_int.h). */
static unsigned s_conv_fusions(dq_backend_t *b, const dq_backend_conv *g, int64_t max_n,
                               int pool_kernel, int pool_stride, int pool_padding,
                               size_t *ws_bytes)
{
    (void)b, (void)pool_stride; /* any stride: the pool epilogue is maxpool2d's */
    *ws_bytes = 0;
    if (g->p.groups > 1) return 0;
    unsigned f = DQ_BK_FUSE_RELU;
    dq_conv2d_params p = g->p;
    p.max_group = 0;
    int64_t oh = dq_conv2d_out_size(g->h, g->kernel, p.stride, p.padding);
    int64_t ow = dq_conv2d_out_size(g->w, g->kernel, p.stride, p.padding);
    int64_t ws = 0;
    if (pool_kernel > 0 && pool_padding == 0) {
        f |= DQ_BK_FUSE_POOL;
        ws = dq_conv2d_fused_workspace(max_n, g->c, g->h, g->w, g->kernel, g->kernel, g->oc, p);
        if (oh * ow >= DQ_CONV2D_BWD_GROUP_P) {
            f |= DQ_BK_FUSE_BACKWARD;
            int64_t wb = dq_conv2d_relu_maxpool_backward_workspace(g->c, g->h, g->w, g->kernel,
                                                                   g->kernel, g->oc, p);
            if (wb > ws) ws = wb;
        }
    }
    *ws_bytes = (size_t)ws * sizeof(float);
    return f;
}

static dq_status s_conv_fused_fwd(dq_backend_t *b, dq_tensor *out, dq_tensor *pool_out,
                                  int32_t *argmax, const dq_tensor *in, const dq_tensor *w,
                                  const dq_tensor *bias, const dq_backend_conv *g,
                                  int pool_kernel, int pool_stride, bool discard_out, void *ws,
                                  size_t ws_bytes, dq_err *err)
{
    (void)b;
    dq_conv2d_params p = g->p;
    p.max_group = 0;
    dq_conv2d_epilogue e = {true, pool_kernel, pool_stride, discard_out};
    return dq_conv2d_fused_forward(out, pool_kernel > 0 ? pool_out : NULL,
                                   pool_kernel > 0 ? argmax : NULL, NULL, 0, in, w, bias, p, e,
                                   ws, (int64_t)(ws_bytes / sizeof(float)), err);
}

static dq_status s_conv_relu_pool_bwd(dq_backend_t *b, dq_tensor *din, dq_tensor *dw,
                                      dq_tensor *db, const dq_tensor *pool_dout,
                                      const int32_t *argmax, const dq_tensor *pool_out,
                                      const dq_tensor *in, const dq_tensor *w,
                                      const dq_backend_conv *g, int pool_kernel, int pool_stride,
                                      void *ws, size_t ws_bytes, dq_err *err)
{
    (void)b;
    dq_conv2d_params p = g->p;
    p.max_group = 0;
    return dq_conv2d_relu_maxpool_backward(din, dw, db, pool_dout, argmax, pool_out, in, w, p,
                                           pool_kernel, pool_stride, ws,
                                           (int64_t)(ws_bytes / sizeof(float)), err);
}

static dq_status s_avgpool1d_fwd(dq_backend_t *b, dq_tensor *out, const dq_tensor *in,
                                 int kernel, dq_err *err)
{
    (void)b;
    return dq_avgpool1d_forward(out, in, kernel, err);
}

static dq_status s_avgpool1d_bwd(dq_backend_t *b, dq_tensor *din, const dq_tensor *dout,
                                 int kernel, dq_err *err)
{
    (void)b;
    return dq_avgpool1d_backward(din, dout, kernel, err);
}

static dq_status s_dropout_fwd(dq_backend_t *b, dq_tensor *out, float *mask, const dq_tensor *in,
                               float p, bool train, dq_rng *rng, dq_err *err)
{
    (void)b;
    return dq_dropout_forward(out, mask, in, p, train, rng, err);
}

static dq_status s_dropout_bwd(dq_backend_t *b, dq_tensor *din, const dq_tensor *dout,
                               const float *mask, float p, dq_err *err)
{
    (void)b;
    return dq_dropout_backward(din, dout, mask, p, true, err);
}

static dq_status s_bn_plan(dq_backend_t *b, void **state, int64_t c, int64_t h, int64_t w,
                           int64_t max_n, dq_err *err)
{
    (void)b, (void)c, (void)h, (void)w, (void)max_n, (void)err;
    *state = NULL;
    return DQ_OK;
}

static dq_status s_bn_fwd(dq_backend_t *b, void *state, dq_tensor *out, float *save_mean,
                          float *save_invstd, dq_tensor *running_mean, dq_tensor *running_var,
                          const dq_tensor *in, const dq_tensor *w, const dq_tensor *bias,
                          float eps, float momentum, bool train, dq_err *err)
{
    (void)b, (void)state;
    return dq_batchnorm2d_forward(out, save_mean, save_invstd, running_mean, running_var, in, w,
                                  bias, eps, momentum, train, err);
}

static dq_status s_bn_bwd(dq_backend_t *b, void *state, dq_tensor *din, dq_tensor *dw,
                          dq_tensor *db, const dq_tensor *dout, const dq_tensor *in,
                          const dq_tensor *w, const float *save_mean, const float *save_invstd,
                          float eps, dq_err *err)
{
    (void)b, (void)state, (void)eps;
    return dq_batchnorm2d_backward(din, dw, db, dout, in, w, save_mean, save_invstd, err);
}

static dq_status s_add_fwd(dq_backend_t *b, dq_tensor *out, const dq_tensor *x,
                           const dq_tensor *y, dq_err *err)
{
    (void)b;
    return dq_add_forward(out, x, y, err);
}

static dq_status s_add_bwd(dq_backend_t *b, dq_tensor *din, const dq_tensor *dout, dq_err *err)
{
    (void)b;
    return dq_add_backward(din, dout, err);
}

static dq_status s_clip_fwd(dq_backend_t *b, dq_tensor *out, const dq_tensor *in, float lo,
                            float hi, dq_err *err)
{
    (void)b;
    return dq_clip_forward(out, in, lo, hi, err);
}

static dq_status s_clip_bwd(dq_backend_t *b, dq_tensor *din, const dq_tensor *dout,
                            const dq_tensor *out, float lo, float hi, dq_err *err)
{
    (void)b;
    return dq_clip_backward(din, dout, out, lo, hi, err);
}

static dq_status s_avgpool2d_fwd(dq_backend_t *b, dq_tensor *out, const dq_tensor *in, int kernel,
                                 int stride, int padding, bool cip, dq_err *err)
{
    (void)b;
    return dq_avgpool2d_forward(out, in, kernel, stride, padding, cip, err);
}

static dq_status s_avgpool2d_bwd(dq_backend_t *b, dq_tensor *din, const dq_tensor *dout,
                                 int kernel, int stride, int padding, bool cip, dq_err *err)
{
    (void)b;
    return dq_avgpool2d_backward(din, dout, kernel, stride, padding, cip, err);
}

static dq_status s_gap_fwd(dq_backend_t *b, dq_tensor *out, const dq_tensor *in, dq_err *err)
{
    (void)b;
    return dq_global_avgpool_forward(out, in, err);
}

static dq_status s_gap_bwd(dq_backend_t *b, dq_tensor *din, const dq_tensor *dout, dq_err *err)
{
    (void)b;
    return dq_global_avgpool_backward(din, dout, err);
}

static dq_status s_adam(dq_backend_t *b, float *params, const float *grads, float *m, float *v,
                        int64_t n, int64_t step, const dq_adam_config *cfg, dq_err *err)
{
    (void)b;
    if (step < 1) return dq_fail(err, DQ_ERR_ARG, "adam: step %lld must be >= 1",
                                 (long long)step);
    dq_adam_step(params, grads, m, v, n, step, cfg);
    return DQ_OK;
}

static const dq_backend_ops s_cpu_ops = {
    .name = "cpu",
    .caps = DQ_BK_HOST_MEMORY | DQ_BK_SET_GRAD | DQ_BK_HOST_RNG | DQ_BK_EVAL_CONV_RELU,
    .destroy = s_destroy,
    .alloc = s_alloc,
    .free = s_free,
    .host_alloc = s_alloc,
    .host_free = s_free,
    .to_device = s_memcpy,
    .to_host = s_memcpy,
    .zero = s_zero,
    .copy = s_memcpy,
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
    .maxpool2d_relu_backward_set = s_maxpool_relu_bwd,
    .maxpool2d_relu_backward_pooled = s_maxpool_relu_pooled,
    .conv_fusions = s_conv_fusions,
    .conv2d_fused_forward = s_conv_fused_fwd,
    .conv2d_relu_maxpool_backward = s_conv_relu_pool_bwd,
    .avgpool1d_forward = s_avgpool1d_fwd,
    .avgpool1d_backward = s_avgpool1d_bwd,
    .dropout_forward = s_dropout_fwd,
    .dropout_backward = s_dropout_bwd,
    .bn_plan = s_bn_plan,
    .bn_release = s_conv_release,
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

/* Stateless, so one shared read-only instance serves every net. */
static dq_backend_t s_cpu = {&s_cpu_ops};

dq_backend_t *dq_backend_cpu(void)
{
    return &s_cpu;
}

dq_status dq_backend_new(dq_backend_t **out, dq_device dev, uint64_t seed, dq_err *err)
{
    *out = NULL;
    if (dev.kind == DQ_DEVICE_CUDA) return dq_backend_cuda_new(out, dev, seed, err);
    *out = &s_cpu;
    return DQ_OK;
}

void dq_backend_destroy(dq_backend_t **b)
{
    if (!b || !*b) return;
    if (*b != &s_cpu) (*b)->ops->destroy(*b);
    *b = NULL;
}
