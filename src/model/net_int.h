/* net_int.h - the inside of a dq_net_t, shared by net.c (load, plan,
 * parameters, transfers) and net_exec.c (the layer walk). Not for callers.
 *
 * Two memory spaces: the host side (params, grads, named views, output and
 * output-gradient views) is what the public API hands out; the backend side
 * (bparams/bgrads, the arena with every activation) is what the walk runs
 * on. For the CPU backend they are the same memory: bparams == params, the
 * arena is host memory and outputs are arena views, so nothing is copied.
 */
#ifndef DQ_NET_INT_H
#define DQ_NET_INT_H

#include "model/model_file.h"
#include "model/net.h"
#include "tensor/backend_ops.h"

#define DQ_NET_MAX_PARAMS (2 * DQ_MF_MAX_LAYERS)
#define DQ_NET_MAX_BUFS (3 * DQ_MF_MAX_LAYERS)
#define DQ_NET_PNAME_MAX (DQ_MF_NAME_MAX + 24) /* layer name + ".num_batches_tracked" */

struct dq_net {
    dq_model_file mf;
    dq_backend_t *bk;
    bool host;      /* bk has DQ_BK_HOST_MEMORY */
    bool dev_train; /* device backend keeps gradients and Adam moments */

    /* Host parameters and gradients: n_floats each, one allocation each. */
    int64_t n_floats;
    float *params, *grads;
    int n_params;
    dq_tensor param[DQ_NET_MAX_PARAMS], grad[DQ_NET_MAX_PARAMS];
    char pname[DQ_NET_MAX_PARAMS][DQ_NET_PNAME_MAX];
    int w_idx[DQ_MF_MAX_LAYERS], b_idx[DQ_MF_MAX_LAYERS]; /* -1: none */

    /* Buffers (state_dict entries that are not trained): per batchnorm2d
     * layer running_mean and running_var (F32, in bufs, one allocation) and
     * num_batches_tracked (I64 scalar, in nbt); buf[k] views bufs (data NULL
     * for an I64 entry, whose value is *buf_i64[k]). */
    int n_bufs;
    int64_t n_buf_floats;
    float *bufs;
    int64_t *nbt;
    dq_tensor buf[DQ_NET_MAX_BUFS];
    int64_t *buf_i64[DQ_NET_MAX_BUFS];
    char bname[DQ_NET_MAX_BUFS][DQ_NET_PNAME_MAX];
    int rm_idx[DQ_MF_MAX_LAYERS], rv_idx[DQ_MF_MAX_LAYERS], nbt_idx[DQ_MF_MAX_LAYERS];

    /* Backend parameters, gradients, Adam moments and buffers (device
     * backends: one allocation; the CPU: the host arrays, no moments). */
    float *bparams, *bgrads, *bm, *bv, *bbufs;
    void *bparam_mem;
    dq_tensor bparam[DQ_NET_MAX_PARAMS], bgrad[DQ_NET_MAX_PARAMS], bbuf[DQ_NET_MAX_BUFS];

    /* Eval-mode batch-norm folding (CPU only): fold_bn[i] for a conv2d i is
     * the batchnorm2d j that is its only reader (-1: none), folded_into[j]
     * the conv. In an eval forward conv i runs with fold_w/fold_b (its
     * weights scaled by the BN, computed once after each parameter change:
     * fold_stale) straight into j's output, and j is skipped. */
    bool fold_on, fold_stale;
    int fold_bn[DQ_MF_MAX_LAYERS], folded_into[DQ_MF_MAX_LAYERS];
    float *fold_mem;
    dq_tensor fold_w[DQ_MF_MAX_LAYERS], fold_b[DQ_MF_MAX_LAYERS];

    /* Plan: everything below points into arena (backend memory). */
    int64_t max_batch;
    void *arena;
    dq_tensor in;                     /* copy of the last forward's input */
    dq_tensor out[DQ_MF_MAX_LAYERS];  /* batch dim = last forward's N */
    dq_tensor dout[DQ_MF_MAX_LAYERS];
    float *mask[DQ_MF_MAX_LAYERS];    /* dropout */
    int32_t *argmax[DQ_MF_MAX_LAYERS]; /* maxpool2d */
    float *save_mean[DQ_MF_MAX_LAYERS], *save_invstd[DQ_MF_MAX_LAYERS]; /* batchnorm2d, [C] */
    void *ws;
    size_t ws_bytes;       /* what the unfused ops are given (their choices depend on it) */
    size_t ws_fused_bytes; /* >= ws_bytes: the workspace's size, for the fused ops */
    void *lstate[DQ_MF_MAX_LAYERS];   /* backend per-layer state (conv_plan, bn_plan) */
    dq_backend_conv geom[DQ_MF_MAX_LAYERS];

    /* Device backends: host copies of the outputs (fetched[o] by the last
     * forward) and of the output gradients (uploaded by backward). */
    void *h_out[DQ_MF_MAX_LAYERS], *h_dout[DQ_MF_MAX_LAYERS];
    dq_tensor out_view[DQ_MF_MAX_OUTPUTS], grad_view[DQ_MF_MAX_OUTPUTS];
    bool fetched[DQ_MF_MAX_OUTPUTS];
    dq_status sticky;  /* a failed zero_grad, reported by the next forward */
    dq_err sticky_err;

    bool fwd_done, fwd_train;

    /* Gradient writers (net.c s_plan_writers): set_din[i]: layer i's backward is
     * the only writer of its input's gradient and overwrites it; zero[i]:
     * dout[i] owns a buffer that zero_grad must clear (not one overwritten
     * by its only writer, not a flatten view). */
    bool set_din[DQ_MF_MAX_LAYERS];
    bool zero[DQ_MF_MAX_LAYERS];
    /* relu_inplace[i]: relu (relu6, clip) layer i writes over its input, a
     * conv/linear/batchnorm2d/add output read by nothing else (saves a
     * buffer and a memory stream). */
    bool relu_inplace[DQ_MF_MAX_LAYERS];
    /* pool_relu[i]: maxpool layer i also does the backward of the relu it
     * reads (both overwrite their only-written gradient), which then skips
     * its own (relu_folded). */
    bool pool_relu[DQ_MF_MAX_LAYERS];
    bool relu_folded[DQ_MF_MAX_LAYERS];
    /* Training-mode conv fusions (s_plan_writers, on a backend with
     * conv_fusions): conv i runs relu fuse_relu[i] and maxpool fuse_pool[i]
     * (-1: none) in its epilogue, and fused[j] says layer j's training
     * forward was done that way. pool_in_conv[m]: maxpool m's backward (with
     * its relu's folded in, pool_relu) is done image by image by the conv
     * before them, so the conv/relu output is read by nobody and not even
     * written (discard_out). Eval forwards never take these (eval_relu
     * below is theirs). */
    int fuse_relu[DQ_MF_MAX_LAYERS], fuse_pool[DQ_MF_MAX_LAYERS];
    bool fused[DQ_MF_MAX_LAYERS];
    bool pool_in_conv[DQ_MF_MAX_LAYERS];
    /* Eval-mode relu epilogue (net.c s_plan_eval_relu, on a backend with
     * DQ_BK_EVAL_CONV_RELU): relu layer r is done by the eval forward of
     * conv eval_relu_by[r] (-1: none), whose output (or, with the batch norm
     * between them folded, the batch norm's) only r reads, in place;
     * eval_relu_folded[r]: only when that batch norm is folded.
     * eval_relu[i]: the relu conv i does (-1: none). */
    int eval_relu[DQ_MF_MAX_LAYERS], eval_relu_by[DQ_MF_MAX_LAYERS];
    bool eval_relu_folded[DQ_MF_MAX_LAYERS];
    void *h_in; /* device backends: host staging of dq_net_input_buffer */
};

/* net.c: a zeroed, 64-byte aligned array of n floats (NULL if out of memory). */
float *dq_net_alloc_floats(int64_t n);

/* net_bn.c: buffers and folding (after the parameters are laid out), the
 * running statistics as PyTorch starts them, and the folded weights
 * recomputed from the current parameters and statistics. */
dq_status dq_net_setup_bufs(dq_net_t *net, dq_err *err);
void dq_net_reset_bufs(dq_net_t *net);
void dq_net_refold(dq_net_t *net);

#endif
