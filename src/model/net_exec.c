/* net_exec.c - the one layer walk: forward, backward, zero_grad and the
 * Adam step of a dq_net_t, each a loop over the model file's layers that
 * calls the net's backend op table (tensor/backend_ops.h). The walk holds
 * the network logic (which buffer each layer reads and writes, what
 * backward may overwrite, which outputs go back to the host); the backend
 * holds the arithmetic. The CPU's fast paths are the walk's choices, taken
 * when the backend's caps allow them (net.c s_plan_writers), the training
 * conv -> relu -> maxpool fusions among them (net.c s_plan_fusions: the
 * marked FUSION branches; eval forwards never take them), and the eval
 * forward's relu done in the conv's epilogue (net.c s_plan_eval_relu: the
 * EVAL RELU branches).
 */
#include <stdio.h>
#include <string.h>

#include "model/net_int.h"

static dq_tensor *s_input_of(dq_net_t *net, int i)
{
    int from = net->mf.layers[i].from;
    return from == DQ_MF_INPUT ? &net->in : &net->out[from];
}

static dq_tensor *s_param(dq_net_t *net, int idx)
{
    return idx >= 0 ? &net->bparam[idx] : NULL;
}

static dq_tensor *s_grad(dq_net_t *net, int idx)
{
    return idx >= 0 && net->bgrads ? &net->bgrad[idx] : NULL;
}

static void s_set_batch(dq_net_t *net, int64_t n)
{
    net->in.shape[0] = n;
    for (int i = 0; i < net->mf.n_layers; i++) net->out[i].shape[0] = net->dout[i].shape[0] = n;
    for (int o = 0; !net->host && o < net->mf.n_outputs; o++)
        net->out_view[o].shape[0] = net->grad_view[o].shape[0] = n;
}

/* A layer whose op a backend's table leaves NULL (every shipped table has
 * every layer type; a table may omit optional capabilities only): one line
 * naming the op and the backend, never a crash. */
static dq_status s_unsupported(const dq_net_t *net, const dq_mf_layer *l, dq_err *err)
{
    return dq_fail(err, DQ_ERR_UNSUPPORTED, "the %s backend has no %s op",
                   net->bk->ops->name, dq_layer_type_name(l->type));
}

#define S_NEED(fn)                                         \
    do {                                                   \
        if (!ops->fn) return s_unsupported(net, l, err);   \
    } while (0)

static dq_status s_layer_forward(dq_net_t *net, int i, bool train, bool fold, dq_rng *rng,
                                 dq_err *err)
{
    const dq_backend_ops *ops = net->bk->ops;
    dq_backend_t *bk = net->bk;
    const dq_mf_layer *l = &net->mf.layers[i];
    const dq_tensor *in = s_input_of(net, i);
    dq_tensor *out = &net->out[i];
    switch (l->type) {
    case DQ_LAYER_CONV2D: {
        /* EVAL RELU: the relu after it (or after its folded BN) in its epilogue */
        dq_backend_conv g = net->geom[i];
        const int r = net->eval_relu[i];
        if (fold && net->fold_bn[i] >= 0) { /* eval: conv with the BN folded in, into its output */
            g.relu = r >= 0;
            return ops->conv2d_forward(bk, net->lstate[i], &net->out[net->fold_bn[i]], in,
                                       &net->fold_w[i], &net->fold_b[i], &g, true, net->ws,
                                       net->ws_bytes, err);
        }
        if (train && net->fuse_relu[i] >= 0) { /* FUSION: relu [+ maxpool] in the epilogue */
            int m = net->fuse_pool[i];
            const dq_mf_layer *pl = m >= 0 ? &net->mf.layers[m] : NULL;
            return ops->conv2d_fused_forward(bk, out, pl ? &net->out[m] : NULL,
                                             pl ? net->argmax[m] : NULL, in,
                                             s_param(net, net->w_idx[i]),
                                             s_param(net, net->b_idx[i]), &net->geom[i],
                                             pl ? pl->kernel : 0, pl ? pl->stride : 0,
                                             pl && net->pool_in_conv[m], net->ws,
                                             net->ws_fused_bytes, err);
        }
        g.relu = !train && r >= 0 && !net->eval_relu_folded[r];
        return ops->conv2d_forward(bk, net->lstate[i], out, in, s_param(net, net->w_idx[i]),
                                   s_param(net, net->b_idx[i]), &g, !train, net->ws,
                                   net->ws_bytes, err);
    }
    case DQ_LAYER_LINEAR:
        return ops->linear_forward(bk, out, in, s_param(net, net->w_idx[i]),
                                   s_param(net, net->b_idx[i]), !train, net->ws, net->ws_bytes,
                                   err);
    case DQ_LAYER_RELU:
        if (train && net->fused[i]) return DQ_OK; /* FUSION: done by the conv before it */
        if (!train && net->eval_relu_by[i] >= 0 && (fold || !net->eval_relu_folded[i]))
            return DQ_OK; /* EVAL RELU: done by the conv before it */
        return ops->relu_forward(bk, out, in, err);
    case DQ_LAYER_MAXPOOL2D:
        if (train && net->fused[i]) return DQ_OK; /* FUSION: done by the conv before it */
        return ops->maxpool2d_forward(bk, out, net->argmax[i], in, l->kernel, l->stride,
                                      l->padding, err);
    case DQ_LAYER_AVGPOOL1D: return ops->avgpool1d_forward(bk, out, in, l->kernel, err);
    case DQ_LAYER_DROPOUT:
        return ops->dropout_forward(bk, out, net->mask[i], in, l->p, train, rng, err);
    case DQ_LAYER_FLATTEN: return DQ_OK; /* a view laid out by plan */
    case DQ_LAYER_BATCHNORM2D:
        if (fold && net->folded_into[i] >= 0) return DQ_OK; /* done by its conv */
        S_NEED(batchnorm2d_forward);
        if (train) (*net->buf_i64[net->nbt_idx[i]])++;
        return ops->batchnorm2d_forward(bk, net->lstate[i], out, net->save_mean[i], net->save_invstd[i],
                                        &net->bbuf[net->rm_idx[i]], &net->bbuf[net->rv_idx[i]],
                                        in, s_param(net, net->w_idx[i]),
                                        s_param(net, net->b_idx[i]), l->eps, l->momentum, train,
                                        err);
    case DQ_LAYER_RELU6:
    case DQ_LAYER_CLIP:
        S_NEED(clip_forward);
        return ops->clip_forward(bk, out, in, l->lo, l->hi, err);
    case DQ_LAYER_AVGPOOL2D:
        S_NEED(avgpool2d_forward);
        return ops->avgpool2d_forward(bk, out, in, l->kernel, l->stride, l->padding,
                                      l->count_include_pad, err);
    case DQ_LAYER_GLOBAL_AVGPOOL:
        S_NEED(global_avgpool_forward);
        return ops->global_avgpool_forward(bk, out, in, err);
    case DQ_LAYER_ADD:
        S_NEED(add_forward);
        return ops->add_forward(bk, out, in,
                                l->from2 == DQ_MF_INPUT ? &net->in : &net->out[l->from2], err);
    default: return dq_fail(err, DQ_ERR_ARG, "unknown layer type");
    }
}

/* Validates want[] into fetch[] (want NULL: every output). */
static dq_status s_wanted(const dq_net_t *net, const char *const *want, int n_want, bool *fetch,
                          dq_err *err)
{
    const dq_model_file *mf = &net->mf;
    for (int o = 0; o < mf->n_outputs; o++) fetch[o] = want == NULL;
    for (int k = 0; want && k < n_want; k++) {
        int o = want[k] ? dq_mf_find_output(mf, want[k]) : -1;
        if (o < 0)
            return dq_fail(err, DQ_ERR_NOT_FOUND, "net %s has no output '%s'", mf->name,
                           want[k] ? want[k] : "(null)");
        fetch[o] = true;
    }
    return DQ_OK;
}

/* Runs every layer on the first N samples of net->in; src (NULL: the input
 * is already there) is a host batch to copy in first. */
static dq_status s_forward(dq_net_t *net, int64_t N, const float *src, bool train, dq_rng *rng,
                           const char *const *want, int n_want, dq_err *err)
{
    const dq_model_file *mf = &net->mf;
    const dq_backend_ops *ops = net->bk->ops;
    if (train && !rng && (ops->caps & DQ_BK_HOST_RNG))
        return dq_fail(err, DQ_ERR_ARG, "net %s: training forward needs an rng", mf->name);
    if (train && !net->host && !net->dev_train)
        return dq_fail(err, DQ_ERR_ARG, "net %s on %s: training forward on a net moved there "
                       "for inference", mf->name, ops->name);
    bool fetch[DQ_MF_MAX_OUTPUTS];
    DQ_TRY(s_wanted(net, want, n_want, fetch, err));
    if (net->sticky != DQ_OK) {
        dq_status st = net->sticky;
        net->sticky = DQ_OK;
        return dq_fail(err, st, "%s", net->sticky_err.msg);
    }
    net->fwd_done = false;
    s_set_batch(net, N);
    if (src && src != net->in.data)
        DQ_TRY(ops->to_device(net->bk, net->in.data, src,
                              (size_t)dq_tensor_numel(&net->in) * sizeof(float), err));
    /* Eval on the CPU runs each conv -> batchnorm2d pair as one folded conv. */
    bool fold = !train && net->fold_on && net->host;
    if (fold && net->fold_stale) dq_net_refold(net);
    if (train) net->fold_stale = true; /* the running statistics move */
    for (int i = 0; i < mf->n_layers; i++) {
        dq_status st = s_layer_forward(net, i, train, fold, rng, err);
        if (st != DQ_OK)
            return dq_fail_prefix(err, st, "net %s: layer %s (line %d): ", mf->name,
                                  mf->layers[i].name, mf->layers[i].line);
    }
    if (!net->host) {
        for (int o = 0; o < mf->n_outputs; o++) {
            net->fetched[o] = fetch[o];
            if (!fetch[o]) continue;
            int li = mf->outputs[o].layer;
            size_t bytes = (size_t)(N * dq_mf_out_numel(&mf->layers[li])) * sizeof(float);
            DQ_TRY(ops->to_host(net->bk, net->h_out[li], net->out[li].data, bytes, err));
        }
        DQ_TRY(ops->sync(net->bk, err));
    }
    net->fwd_done = true;
    net->fwd_train = train;
    return DQ_OK;
}

dq_status dq_net_forward_outputs(dq_net_t *net, const dq_tensor *input, bool train, dq_rng *rng,
                                 const char *const *want, int n_want, dq_err *err)
{
    const dq_model_file *mf = &net->mf;
    const dq_net_input *ip = &mf->input;
    if (net->max_batch == 0)
        return dq_fail(err, DQ_ERR_ARG, "net %s: forward before dq_net_plan", mf->name);
    if (!input || !input->data)
        return dq_fail(err, DQ_ERR_ARG, "net %s: input tensor is missing", mf->name);
    if (input->ndim != 4 || input->shape[1] != ip->channels || input->shape[2] != ip->height ||
        input->shape[3] != ip->width || input->shape[0] < 1 || input->shape[0] > net->max_batch) {
        char got[96];
        return dq_fail(err, DQ_ERR_SHAPE, "net %s: input has shape %s, expected [N, %d, %d, %d] "
                       "with 1 <= N <= %lld (the planned batch)", mf->name,
                       dq_tensor_shape_str(input, got, sizeof got), ip->channels, ip->height,
                       ip->width, (long long)net->max_batch);
    }
    return s_forward(net, input->shape[0], input->data, train, rng, want, n_want, err);
}

dq_status dq_net_forward(dq_net_t *net, const dq_tensor *input, bool train, dq_rng *rng,
                         dq_err *err)
{
    return dq_net_forward_outputs(net, input, train, rng, NULL, 0, err);
}

/* On the CPU the arena's input itself; on a device its host staging. */
float *dq_net_input_buffer(dq_net_t *net)
{
    if (net->max_batch == 0) return NULL;
    return net->host ? net->in.data : net->h_in;
}

dq_status dq_net_forward_input(dq_net_t *net, int64_t n, bool train, dq_rng *rng, dq_err *err)
{
    if (net->max_batch == 0)
        return dq_fail(err, DQ_ERR_ARG, "net %s: forward before dq_net_plan", net->mf.name);
    if (n < 1 || n > net->max_batch)
        return dq_fail(err, DQ_ERR_SHAPE, "net %s: batch of %lld in the input buffer, expected "
                       "1 <= N <= %lld (the planned batch)", net->mf.name, (long long)n,
                       (long long)net->max_batch);
    return s_forward(net, n, net->host ? NULL : net->h_in, train, rng, NULL, 0, err);
}

static dq_status s_layer_backward(dq_net_t *net, int i, dq_err *err)
{
    const dq_backend_ops *ops = net->bk->ops;
    dq_backend_t *bk = net->bk;
    const dq_model_file *mf = &net->mf;
    const dq_mf_layer *l = &mf->layers[i];
    dq_tensor *din = l->from == DQ_MF_INPUT ? NULL : &net->dout[l->from];
    const dq_tensor *in = s_input_of(net, i);
    const dq_tensor *dout = &net->dout[i];
    switch (l->type) {
    case DQ_LAYER_CONV2D:
        if (net->fuse_pool[i] >= 0 && net->pool_in_conv[net->fuse_pool[i]]) {
            /* FUSION: the relu's and the maxpool's backward too, per image */
            int m = net->fuse_pool[i];
            return ops->conv2d_relu_maxpool_backward(
                bk, din, s_grad(net, net->w_idx[i]), s_grad(net, net->b_idx[i]), &net->dout[m],
                net->argmax[m], &net->out[m], in, s_param(net, net->w_idx[i]), &net->geom[i],
                mf->layers[m].kernel, mf->layers[m].stride, net->ws, net->ws_fused_bytes, err);
        }
        return ops->conv2d_backward(bk, net->lstate[i], din, s_grad(net, net->w_idx[i]),
                                    s_grad(net, net->b_idx[i]), dout, in,
                                    s_param(net, net->w_idx[i]), &net->geom[i], net->ws,
                                    net->ws_bytes, err);
    case DQ_LAYER_LINEAR:
        return ops->linear_backward(bk, din, s_grad(net, net->w_idx[i]),
                                    s_grad(net, net->b_idx[i]), dout, in,
                                    s_param(net, net->w_idx[i]), err);
    /* Parameter-free layers reading the input have nothing to propagate. */
    case DQ_LAYER_RELU:
        if (!din || net->relu_folded[i]) return DQ_OK; /* folded: done by the maxpool after it */
        return ops->relu_backward(bk, din, dout, &net->out[i], net->set_din[i], err);
    case DQ_LAYER_MAXPOOL2D:
        if (net->pool_in_conv[i]) return DQ_OK; /* FUSION: done by the conv before it */
        if (net->pool_relu[i] && l->padding == 0 && ops->maxpool2d_relu_backward_pooled)
            /* dense, tested on the (smaller) pool output */
            return ops->maxpool2d_relu_backward_pooled(bk, &net->dout[mf->layers[l->from].from],
                                                       dout, net->argmax[i], &net->out[i],
                                                       l->kernel, l->stride, err);
        if (net->pool_relu[i])
            return ops->maxpool2d_relu_backward_set(bk, &net->dout[mf->layers[l->from].from], dout,
                                                    net->argmax[i], &net->out[l->from], err);
        if (!din) return DQ_OK;
        return ops->maxpool2d_backward(bk, din, dout, net->argmax[i], l->kernel, l->stride,
                                       l->padding, net->set_din[i], err);
    case DQ_LAYER_AVGPOOL1D:
        return din ? ops->avgpool1d_backward(bk, din, dout, l->kernel, err) : DQ_OK;
    case DQ_LAYER_DROPOUT:
        return din ? ops->dropout_backward(bk, din, dout, net->mask[i], l->p, err) : DQ_OK;
    case DQ_LAYER_FLATTEN: return DQ_OK; /* its gradient aliases its input's */
    case DQ_LAYER_BATCHNORM2D:
        S_NEED(batchnorm2d_backward);
        return ops->batchnorm2d_backward(bk, net->lstate[i], din, s_grad(net, net->w_idx[i]),
                                         s_grad(net, net->b_idx[i]), dout, in,
                                         s_param(net, net->w_idx[i]), net->save_mean[i],
                                         net->save_invstd[i], l->eps, err);
    case DQ_LAYER_RELU6:
    case DQ_LAYER_CLIP:
        S_NEED(clip_backward);
        return din ? ops->clip_backward(bk, din, dout, &net->out[i], l->lo, l->hi, err) : DQ_OK;
    case DQ_LAYER_AVGPOOL2D:
        S_NEED(avgpool2d_backward);
        return din ? ops->avgpool2d_backward(bk, din, dout, l->kernel, l->stride, l->padding,
                                             l->count_include_pad, err)
                   : DQ_OK;
    case DQ_LAYER_GLOBAL_AVGPOOL:
        S_NEED(global_avgpool_backward);
        return din ? ops->global_avgpool_backward(bk, din, dout, err) : DQ_OK;
    case DQ_LAYER_ADD: /* the sum's gradient goes to both inputs */
        S_NEED(add_backward);
        if (din) DQ_TRY(ops->add_backward(bk, din, dout, err));
        if (l->from2 != DQ_MF_INPUT) DQ_TRY(ops->add_backward(bk, &net->dout[l->from2], dout, err));
        return DQ_OK;
    default: return dq_fail(err, DQ_ERR_ARG, "unknown layer type");
    }
}

dq_status dq_net_backward(dq_net_t *net, dq_err *err)
{
    const dq_model_file *mf = &net->mf;
    const dq_backend_ops *ops = net->bk->ops;
    if (!net->fwd_done || !net->fwd_train)
        return dq_fail(err, DQ_ERR_ARG, "net %s: backward needs a preceding forward with "
                       "train=true", mf->name);
    if (!net->host) {
        /* zero_grad cleared every activation gradient, so the output
         * gradients are plain copies; outputs sharing a layer share its
         * host buffer. */
        bool sent[DQ_MF_MAX_LAYERS] = {false};
        for (int o = 0; o < mf->n_outputs; o++) {
            int li = mf->outputs[o].layer;
            if (sent[li]) continue;
            sent[li] = true;
            size_t bytes = (size_t)dq_tensor_numel(&net->out[li]) * sizeof(float);
            DQ_TRY(ops->to_device(net->bk, net->dout[li].data, net->h_dout[li], bytes, err));
        }
    }
    for (int i = mf->n_layers - 1; i >= 0; i--) {
        dq_status st = s_layer_backward(net, i, err);
        if (st != DQ_OK)
            return dq_fail_prefix(err, st, "net %s: backward of layer %s (line %d): ", mf->name,
                                  mf->layers[i].name, mf->layers[i].line);
    }
    /* The host output gradients must not be rewritten while being copied. */
    return ops->sync(net->bk, err);
}

void dq_net_zero_grad(dq_net_t *net)
{
    const dq_backend_ops *ops = net->bk->ops;
    dq_status st = DQ_OK;
    dq_err *err = &net->sticky_err;
    if (net->bgrads)
        st = ops->zero(net->bk, net->bgrads, (size_t)net->n_floats * sizeof(float), err);
    if (net->bgrads != net->grads) memset(net->grads, 0, (size_t)net->n_floats * sizeof(float));
    if (!net->arena) return;
    /* Activation gradients over the whole planned batch, except those their
     * only writer overwrites (net.c s_plan_writers). */
    for (int i = 0; st == DQ_OK && i < net->mf.n_layers; i++)
        if (net->zero[i])
            st = ops->zero(net->bk, net->dout[i].data,
                           (size_t)(net->max_batch * dq_mf_out_numel(&net->mf.layers[i])) *
                               sizeof(float),
                           err);
    for (int o = 0; !net->host && o < net->mf.n_outputs; o++)
        memset(net->grad_view[o].data, 0,
               (size_t)(net->max_batch *
                        dq_mf_out_numel(&net->mf.layers[net->mf.outputs[o].layer])) *
                   sizeof(float));
    if (st != DQ_OK && net->sticky == DQ_OK) net->sticky = st;
}

dq_status dq_net_adam_step(dq_net_t *net, float *m, float *v, int64_t step,
                           const dq_adam_config *cfg, dq_err *err)
{
    const dq_backend_ops *ops = net->bk->ops;
    if (!net->host && !net->dev_train)
        return dq_fail(err, DQ_ERR_ARG, "net %s on %s: adam step on a net moved there for "
                       "inference", net->mf.name, ops->name);
    float *bm = net->host ? m : net->bm, *bv = net->host ? v : net->bv;
    net->fold_stale = true;
    return ops->adam_step(net->bk, net->bparams, net->bgrads, bm, bv, net->n_floats, step, cfg,
                          err);
}
