/* backend_ops.h - a compute backend as a small op table (ggml's backends in
 * miniature): the network walk (src/model/net.c) is written once and calls
 * these ops; each backend (CPU here, CUDA in backend_cuda_ops.c) implements
 * every op once.
 *
 * A backend instance owns its memory space and whatever handles it needs
 * (for CUDA a stream, cuDNN and cuBLAS handles and the dropout counter).
 * Every tensor an op gets is a dq_tensor whose data lives in the backend's
 * memory (host memory for the CPU, device memory for CUDA); shapes are the
 * per-call shapes (batch dim = the current batch). The conventions are the
 * CPU ops' (tensor/ops.h): outputs first, backward ADDS into gradients, a
 * NULL gradient is skipped; the op_*_set variants OVERWRITE instead.
 *
 * What a backend can do beyond the common set is said by caps, so the walk
 * keeps the CPU's fast paths without knowing which backend it runs on:
 * overwriting relu/maxpool backward (and the fused relu+maxpool one) saves
 * zeroing gradient buffers; a host-memory backend needs no copies to
 * return outputs; a host-rng backend draws dropout masks from the caller's
 * rng. Ops are enqueued in order and may run asynchronously on a device;
 * to_host synchronises.
 */
#ifndef DQ_BACKEND_OPS_H
#define DQ_BACKEND_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tensor/backend_cuda.h"
#include "tensor/ops.h"
#include "tensor/optim.h"
#include "tensor/rng.h"
#include "tensor/tensor.h"

typedef struct dq_backend dq_backend_t;

enum {
    DQ_BK_HOST_MEMORY = 1u << 0, /* tensors are host memory: outputs need no copy */
    DQ_BK_SET_GRAD = 1u << 1,    /* relu_backward/maxpool_backward honour `set` */
    DQ_BK_HOST_RNG = 1u << 2,    /* training dropout draws from the caller's rng */
    DQ_BK_EVAL_CONV_RELU = 1u << 3, /* eval conv2d_forward honours dq_backend_conv.relu */
};

/* conv_fusions' answer: which training fusions a conv may take. */
enum {
    DQ_BK_FUSE_RELU = 1u << 0,     /* conv -> relu forward in one op */
    DQ_BK_FUSE_POOL = 1u << 1,     /* ... -> maxpool too */
    DQ_BK_FUSE_BACKWARD = 1u << 2, /* conv2d_relu_maxpool_backward applies */
};

/* Geometry of one conv2d layer, for conv_plan. */
typedef struct {
    int64_t c, h, w, oc;
    int kernel;
    dq_conv2d_params p; /* p.groups: 0/1 ordinary, G grouped (depthwise when G == c) */
    /* Eval forward on a DQ_BK_EVAL_CONV_RELU backend: the output clamped at
     * 0, the relu after the conv done as it is written (model/net.c
     * s_plan_eval_relu). Never set for training or other backends. */
    bool relu;
} dq_backend_conv;

typedef struct {
    const char *name; /* "cpu", "cuda" */
    unsigned caps;    /* DQ_BK_* */
    void (*destroy)(dq_backend_t *b);

    /* Memory. alloc returns zeroed memory (aligned for any op). to_host
     * returns once the bytes are on the host; host_alloc is host memory the
     * backend copies from/to fastest (pinned for CUDA). */
    dq_status (*alloc)(dq_backend_t *b, void **p, size_t bytes, dq_err *err);
    void (*free)(dq_backend_t *b, void *p);
    dq_status (*host_alloc)(dq_backend_t *b, void **p, size_t bytes, dq_err *err);
    void (*host_free)(dq_backend_t *b, void *p);
    dq_status (*to_device)(dq_backend_t *b, void *dst, const void *src, size_t bytes,
                           dq_err *err);
    dq_status (*to_host)(dq_backend_t *b, void *dst, const void *src, size_t bytes,
                         dq_err *err);
    dq_status (*zero)(dq_backend_t *b, void *p, size_t bytes, dq_err *err);
    dq_status (*copy)(dq_backend_t *b, void *dst, const void *src, size_t bytes, dq_err *err);
    /* Returns when everything enqueued so far has run. */
    dq_status (*sync)(dq_backend_t *b, dq_err *err);

    /* Per-layer state of a conv2d for batches up to max_n (CUDA: descriptors
     * and algorithms) and the workspace bytes its forward/backward need;
     * *state may be NULL for a backend that keeps none. */
    dq_status (*conv_plan)(dq_backend_t *b, void **state, const dq_backend_conv *g,
                           int64_t max_n, bool train, size_t *ws_bytes, dq_err *err);
    void (*conv_release)(dq_backend_t *b, void *state);
    /* Workspace bytes of a linear layer [*, in] -> [*, out] in eval mode. */
    size_t (*linear_ws)(dq_backend_t *b, int64_t in, int64_t out);

    /* Ops. eval forwards are batch-invariant on backends that promise it
     * (the CPU: see model/net.h). */
    dq_status (*conv2d_forward)(dq_backend_t *b, void *state, dq_tensor *out, const dq_tensor *in,
                                const dq_tensor *w, const dq_tensor *bias,
                                const dq_backend_conv *g, bool eval, void *ws, size_t ws_bytes,
                                dq_err *err);
    dq_status (*conv2d_backward)(dq_backend_t *b, void *state, dq_tensor *din, dq_tensor *dw,
                                 dq_tensor *db, const dq_tensor *dout, const dq_tensor *in,
                                 const dq_tensor *w, const dq_backend_conv *g, void *ws,
                                 size_t ws_bytes, dq_err *err);
    dq_status (*linear_forward)(dq_backend_t *b, dq_tensor *out, const dq_tensor *in,
                                const dq_tensor *w, const dq_tensor *bias, bool eval, void *ws,
                                size_t ws_bytes, dq_err *err);
    dq_status (*linear_backward)(dq_backend_t *b, dq_tensor *din, dq_tensor *dw, dq_tensor *db,
                                 const dq_tensor *dout, const dq_tensor *in, const dq_tensor *w,
                                 dq_err *err);
    dq_status (*relu_forward)(dq_backend_t *b, dq_tensor *out, const dq_tensor *in, dq_err *err);
    dq_status (*relu_backward)(dq_backend_t *b, dq_tensor *din, const dq_tensor *dout,
                               const dq_tensor *out, bool set, dq_err *err);
    dq_status (*maxpool2d_forward)(dq_backend_t *b, dq_tensor *out, int32_t *argmax,
                                   const dq_tensor *in, int kernel, int stride, int padding,
                                   dq_err *err);
    dq_status (*maxpool2d_backward)(dq_backend_t *b, dq_tensor *din, const dq_tensor *dout,
                                    const int32_t *argmax, int kernel, int stride, int padding,
                                    bool set, dq_err *err);
    /* Fused relu -> maxpool backward, overwriting (NULL: not available). */
    dq_status (*maxpool2d_relu_backward_set)(dq_backend_t *b, dq_tensor *din,
                                             const dq_tensor *dout, const int32_t *argmax,
                                             const dq_tensor *relu_out, dq_err *err);
    /* The same from the pool's OUTPUT (dense for 2x2 / stride 2, padding 0
     * only; NULL: not available). */
    dq_status (*maxpool2d_relu_backward_pooled)(dq_backend_t *b, dq_tensor *din,
                                                const dq_tensor *dout, const int32_t *argmax,
                                                const dq_tensor *pool_out, int kernel,
                                                int stride, dq_err *err);
    /* Training-mode conv fusions (CPU: tensor/conv2d_fused.c; NULL where a
     * backend has none). conv_fusions says which DQ_BK_FUSE_* apply to conv
     * g followed by a relu and a maxpool (pool_kernel 0: none) and the
     * workspace bytes they need for batches up to max_n.
     * conv2d_fused_forward: the training conv with the relu (in place) and
     * the pool in its epilogue, bitwise the unfused ops; discard_out: out is
     * not written (only the pool output and argmax are).
     * conv2d_relu_maxpool_backward: conv backward from the POOL's output
     * gradient (the relu folded into the pool's), bitwise the unfused chain;
     * adds into din, dw, db. */
    unsigned (*conv_fusions)(dq_backend_t *b, const dq_backend_conv *g, int64_t max_n,
                             int pool_kernel, int pool_stride, int pool_padding,
                             size_t *ws_bytes);
    dq_status (*conv2d_fused_forward)(dq_backend_t *b, dq_tensor *out, dq_tensor *pool_out,
                                      int32_t *argmax, const dq_tensor *in, const dq_tensor *w,
                                      const dq_tensor *bias, const dq_backend_conv *g,
                                      int pool_kernel, int pool_stride, bool discard_out,
                                      void *ws, size_t ws_bytes, dq_err *err);
    dq_status (*conv2d_relu_maxpool_backward)(dq_backend_t *b, dq_tensor *din, dq_tensor *dw,
                                              dq_tensor *db, const dq_tensor *pool_dout,
                                              const int32_t *argmax, const dq_tensor *pool_out,
                                              const dq_tensor *in, const dq_tensor *w,
                                              const dq_backend_conv *g, int pool_kernel,
                                              int pool_stride, void *ws, size_t ws_bytes,
                                              dq_err *err);
    dq_status (*avgpool1d_forward)(dq_backend_t *b, dq_tensor *out, const dq_tensor *in,
                                   int kernel, dq_err *err);
    dq_status (*avgpool1d_backward)(dq_backend_t *b, dq_tensor *din, const dq_tensor *dout,
                                    int kernel, dq_err *err);
    /* mask: numel(in) floats; rng used only with DQ_BK_HOST_RNG. */
    dq_status (*dropout_forward)(dq_backend_t *b, dq_tensor *out, float *mask,
                                 const dq_tensor *in, float p, bool train, dq_rng *rng,
                                 dq_err *err);
    dq_status (*dropout_backward)(dq_backend_t *b, dq_tensor *din, const dq_tensor *dout,
                                  const float *mask, float p, dq_err *err);
    /* The residual-network ops (ops.h); NULL where a backend has none yet,
     * which the walk reports as DQ_ERR_UNSUPPORTED naming the layer.
     * batchnorm2d: per-layer state from bn_plan (CUDA: descriptors) for
     * [max_n, c, h, w]; running_* are updated in training; save_* ([C]
     * each) keep the batch statistics for backward. */
    dq_status (*bn_plan)(dq_backend_t *b, void **state, int64_t c, int64_t h, int64_t w,
                         int64_t max_n, dq_err *err);
    void (*bn_release)(dq_backend_t *b, void *state);
    dq_status (*batchnorm2d_forward)(dq_backend_t *b, void *state, dq_tensor *out,
                                     float *save_mean, float *save_invstd,
                                     dq_tensor *running_mean, dq_tensor *running_var,
                                     const dq_tensor *in, const dq_tensor *w,
                                     const dq_tensor *bias, float eps, float momentum, bool train,
                                     dq_err *err);
    dq_status (*batchnorm2d_backward)(dq_backend_t *b, void *state, dq_tensor *din,
                                      dq_tensor *dw, dq_tensor *db, const dq_tensor *dout,
                                      const dq_tensor *in, const dq_tensor *w,
                                      const float *save_mean, const float *save_invstd,
                                      float eps, dq_err *err);
    dq_status (*add_forward)(dq_backend_t *b, dq_tensor *out, const dq_tensor *x,
                             const dq_tensor *y, dq_err *err);
    /* din += dout (once per input of the add). */
    dq_status (*add_backward)(dq_backend_t *b, dq_tensor *din, const dq_tensor *dout,
                              dq_err *err);
    dq_status (*clip_forward)(dq_backend_t *b, dq_tensor *out, const dq_tensor *in, float lo,
                              float hi, dq_err *err);
    dq_status (*clip_backward)(dq_backend_t *b, dq_tensor *din, const dq_tensor *dout,
                               const dq_tensor *out, float lo, float hi, dq_err *err);
    dq_status (*avgpool2d_forward)(dq_backend_t *b, dq_tensor *out, const dq_tensor *in,
                                   int kernel, int stride, int padding, bool count_include_pad,
                                   dq_err *err);
    dq_status (*avgpool2d_backward)(dq_backend_t *b, dq_tensor *din, const dq_tensor *dout,
                                    int kernel, int stride, int padding, bool count_include_pad,
                                    dq_err *err);
    dq_status (*global_avgpool_forward)(dq_backend_t *b, dq_tensor *out, const dq_tensor *in,
                                        dq_err *err);
    dq_status (*global_avgpool_backward)(dq_backend_t *b, dq_tensor *din, const dq_tensor *dout,
                                         dq_err *err);
    /* One Adam step over flat arrays in backend memory (see optim.h). */
    dq_status (*adam_step)(dq_backend_t *b, float *params, const float *grads, float *m,
                           float *v, int64_t n, int64_t step, const dq_adam_config *cfg,
                           dq_err *err);
} dq_backend_ops;

/* Every backend instance starts with its table. */
struct dq_backend {
    const dq_backend_ops *ops;
};

/* The CPU backend (a shared stateless instance; destroy is a no-op). */
dq_backend_t *dq_backend_cpu(void);

/* The backend for dev: the CPU's, or a new CUDA instance on that device
 * (seed starts its dropout stream). A build without CUDA answers
 * DQ_ERR_UNSUPPORTED for a CUDA device. Free with dq_backend_destroy. */
dq_status dq_backend_new(dq_backend_t **out, dq_device dev, uint64_t seed, dq_err *err);
void dq_backend_destroy(dq_backend_t **b);

/* The CUDA instance (backend_cuda_ops.c); DQ_ERR_UNSUPPORTED without CUDA. */
dq_status dq_backend_cuda_new(dq_backend_t **out, dq_device dev, uint64_t seed, dq_err *err);

#endif
