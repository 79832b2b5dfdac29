/* net.c - a network's parameters, plan and memory; the layer walk that runs
 * it is net_exec.c, over a backend's op table (tensor/backend_ops.h), and
 * its batch-norm buffers and eval folding are net_bn.c.
 *
 * Memory, llm.c-style: parameters are one allocation and their gradients
 * another, carved into tensors named by their state_dict keys, so the
 * optimiser steps one flat array and zero_grad is one memset. dq_net_plan
 * lays out one arena in the backend's memory holding, in order: a copy of
 * the input (so backward never depends on the caller's buffer), every
 * layer's output, every activation gradient, dropout masks, maxpool argmax
 * indices and the workspace shared by all convolutions and eval linears
 * (they run one at a time). The same layout function computes the size
 * (base == NULL) and then assigns the pointers, so the two cannot disagree.
 * Forward and backward only use what plan laid out.
 *
 * On the CPU (the default backend) the host arrays are the backend's, so
 * nothing is copied. On a device (dq_net_set_device) the parameters live in
 * one device allocation in the same flat layout (with gradients and Adam
 * moments when training), copied there by dq_net_plan and dq_net_upload and
 * back by dq_net_download; outputs come back to host buffers after each
 * forward and output gradients go up at backward.
 *
 * Flatten is a view: its output and output gradient alias its input's, so a
 * linear layer after it adds its input gradient straight into the conv
 * map's gradient. Every consumer of an activation comes later in the file
 * than its producer and every op ADDS into din, so when a layer's backward
 * runs its output gradient already holds the sum over all consumers. The
 * one exception saves zeroing: a gradient whose only writer is a relu or
 * maxpool is overwritten by it instead (s_plan_writers), on backends that
 * have the overwriting forms.
 *
 * Training-mode fusions (s_plan_fusions, on backends whose table has them:
 * the CPU's, tensor/conv2d_fused.c): conv -> relu [-> maxpool] runs as one
 * op in the conv's epilogue and, where nothing else needs the conv/relu
 * output, its backward is one op too and that output is never written. The
 * fused ops get a larger workspace (ws_fused_bytes) than the unfused ones,
 * which keep exactly the size their group choices were made for, so every
 * training value is bitwise the unfused walk's. Eval never fuses.
 */
#include "model/net.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/net_int.h"
#include "tensor/init.h"

#define S_ALIGN 64
#define S_MAX_ARENA_BYTES (1ULL << 46) /* beyond this plan reports NOMEM up front */

/* ---- load / destroy ---------------------------------------------------------- */

float *dq_net_alloc_floats(int64_t n)
{
    size_t bytes = ((size_t)n * sizeof(float) + 63) / 64 * 64;
    if (bytes == 0) bytes = 64;
    float *p = aligned_alloc(64, bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

/* Adds one named parameter view (and its gradient) at offset *off. */
static int s_add_param(dq_net_t *net, const char *layer, const char *suffix, int ndim,
                       const int64_t *shape, int64_t *off)
{
    int i = net->n_params++;
    snprintf(net->pname[i], DQ_NET_PNAME_MAX, "%s.%s", layer, suffix);
    net->param[i] = dq_tensor_view(net->params + *off, ndim, shape);
    net->grad[i] = dq_tensor_view(net->grads + *off, ndim, shape);
    net->param[i].name = net->grad[i].name = net->pname[i];
    *off += dq_tensor_numel(&net->param[i]);
    return i;
}

/* The backend views of the parameters: the same offsets in bparams/bgrads. */
static void s_bind_bparams(dq_net_t *net)
{
    for (int i = 0; i < net->n_params; i++) {
        int64_t off = net->param[i].data - net->params;
        net->bparam[i] = dq_tensor_view(net->bparams + off, net->param[i].ndim,
                                        net->param[i].shape);
        net->bgrad[i] = dq_tensor_view(net->bgrads ? net->bgrads + off : NULL,
                                       net->param[i].ndim, net->param[i].shape);
        net->bparam[i].name = net->bgrad[i].name = net->pname[i];
    }
    for (int k = 0; k < net->n_bufs; k++) {
        net->bbuf[k] = net->buf[k];
        if (net->buf[k].data) net->bbuf[k].data = net->bbufs + (net->buf[k].data - net->bufs);
    }
}

dq_status dq_net_from_model_file(dq_net_t **out, const dq_model_file *mf, dq_err *err)
{
    *out = NULL;
    dq_net_t *net = calloc(1, sizeof *net);
    if (!net) return dq_fail(err, DQ_ERR_NOMEM, "%s: cannot allocate the net", mf->name);
    net->mf = *mf;
    net->bk = dq_backend_cpu();
    net->host = true;
    net->n_floats = dq_mf_param_floats(&net->mf);
    net->params = dq_net_alloc_floats(net->n_floats);
    net->grads = dq_net_alloc_floats(net->n_floats);
    if (!net->params || !net->grads) {
        long long n = (long long)net->n_floats;
        dq_net_destroy(&net);
        return dq_fail(err, DQ_ERR_NOMEM, "%s: cannot allocate %lld parameters", mf->name, n);
    }
    int64_t off = 0;
    for (int i = 0; i < net->mf.n_layers; i++) {
        const dq_mf_layer *l = &net->mf.layers[i];
        int64_t wshape[4];
        int r = dq_mf_weight_shape(l, wshape);
        net->w_idx[i] = net->b_idx[i] = -1;
        if (r == 0) continue;
        net->w_idx[i] = s_add_param(net, l->name, "weight", r, wshape, &off);
        if (l->bias) net->b_idx[i] = s_add_param(net, l->name, "bias", 1, &l->out, &off);
    }
    dq_status st = dq_net_setup_bufs(net, err);
    if (st != DQ_OK) {
        dq_net_destroy(&net);
        return st;
    }
    net->bparams = net->params;
    net->bgrads = net->grads;
    net->bbufs = net->bufs;
    s_bind_bparams(net);
    *out = net;
    return DQ_OK;
}

dq_status dq_net_load(dq_net_t **out, const char *model_path, dq_err *err)
{
    *out = NULL;
    dq_model_file *mf = malloc(sizeof *mf);
    if (!mf) return dq_fail(err, DQ_ERR_NOMEM, "%s: cannot allocate the model", model_path);
    dq_status st = dq_mf_load(mf, model_path, err);
    if (st == DQ_OK) st = dq_net_from_model_file(out, mf, err);
    free(mf);
    return st;
}

/* Releases a backend per-layer state of layer i (conv or batch norm). */
static void s_release_state(dq_net_t *net, int i, void *state)
{
    if (!state) return;
    if (net->mf.layers[i].type == DQ_LAYER_CONV2D) net->bk->ops->conv_release(net->bk, state);
    else net->bk->ops->bn_release(net->bk, state);
}

/* Frees the plan (arena, layer states, host output buffers). */
static void s_free_plan(dq_net_t *net)
{
    const dq_backend_ops *ops = net->bk->ops;
    for (int i = 0; i < net->mf.n_layers; i++) {
        s_release_state(net, i, net->lstate[i]);
        net->lstate[i] = NULL;
        if (net->h_out[i]) ops->host_free(net->bk, net->h_out[i]);
        if (net->h_dout[i]) ops->host_free(net->bk, net->h_dout[i]);
        net->h_out[i] = net->h_dout[i] = NULL;
    }
    if (net->h_in) ops->host_free(net->bk, net->h_in);
    net->h_in = NULL;
    if (net->arena) ops->free(net->bk, net->arena);
    net->arena = NULL;
    net->max_batch = 0;
    net->fwd_done = false;
}

static void s_free_backend(dq_net_t *net)
{
    s_free_plan(net);
    if (!net->host && net->bparam_mem) net->bk->ops->free(net->bk, net->bparam_mem);
    net->bparam_mem = NULL;
    dq_backend_destroy(&net->bk);
}

void dq_net_destroy(dq_net_t **pnet)
{
    if (!pnet || !*pnet) return;
    dq_net_t *net = *pnet;
    if (net->bk) s_free_backend(net);
    free(net->params);
    free(net->grads);
    free(net->bufs);
    free(net->nbt);
    free(net->fold_mem);
    free(net);
    *pnet = NULL;
}

const char *dq_net_name(const dq_net_t *net)
{
    return net->mf.name;
}

const dq_net_input *dq_net_input_spec(const dq_net_t *net)
{
    return &net->mf.input;
}

const dq_model_file *dq_net_model_file(const dq_net_t *net)
{
    return &net->mf;
}

void dq_net_init_params(dq_net_t *net, dq_rng *rng)
{
    net->fold_stale = true;
    dq_net_reset_bufs(net);
    for (int i = 0; i < net->mf.n_layers; i++) {
        const dq_mf_layer *l = &net->mf.layers[i];
        if (net->w_idx[i] < 0) continue;
        if (l->type == DQ_LAYER_BATCHNORM2D) { /* PyTorch: weight 1, bias 0, no rng draws */
            dq_tensor *w = &net->param[net->w_idx[i]], *b = &net->param[net->b_idx[i]];
            for (int64_t c = 0; c < l->in; c++) w->data[c] = 1.0f, b->data[c] = 0.0f;
            continue;
        }
        int64_t fan_in = l->in;
        if (l->type == DQ_LAYER_CONV2D)
            fan_in = fan_in / (l->groups > 1 ? l->groups : 1) * l->kernel * l->kernel;
        dq_tensor *w = &net->param[net->w_idx[i]];
        dq_init_uniform_fan_in(w->data, dq_tensor_numel(w), fan_in, rng);
        if (net->b_idx[i] >= 0) dq_init_uniform_fan_in(net->param[net->b_idx[i]].data, l->out,
                                                       fan_in, rng);
    }
}

/* ---- backend ---------------------------------------------------------------------- */

/* Switches to backend bk (owned by the net from now on): frees the plan and
 * any device parameters of the previous one. */
static dq_status s_use_backend(dq_net_t *net, dq_backend_t *bk, bool train, dq_err *err)
{
    s_free_backend(net);
    net->bk = bk;
    net->host = (bk->ops->caps & DQ_BK_HOST_MEMORY) != 0;
    net->dev_train = train && !net->host;
    net->bparams = net->params;
    net->bgrads = net->grads;
    net->bbufs = net->bufs;
    net->bm = net->bv = NULL;
    if (!net->host) {
        size_t copies = net->dev_train ? 4 : 1;
        size_t pbytes = ((size_t)net->n_floats * sizeof(float) + S_ALIGN - 1) / S_ALIGN * S_ALIGN;
        size_t bbytes = (size_t)net->n_buf_floats * sizeof(float);
        void *mem = NULL;
        DQ_TRY(bk->ops->alloc(bk, &mem, copies * pbytes + bbytes, err));
        net->bparam_mem = mem;
        net->bparams = mem;
        net->bgrads = net->dev_train ? (float *)((char *)mem + pbytes) : NULL;
        net->bm = net->dev_train ? (float *)((char *)mem + 2 * pbytes) : NULL;
        net->bv = net->dev_train ? (float *)((char *)mem + 3 * pbytes) : NULL;
        net->bbufs = (float *)((char *)mem + copies * pbytes);
    }
    s_bind_bparams(net);
    return DQ_OK;
}

dq_status dq_net_use_backend(dq_net_t *net, dq_backend_t *bk, bool train, dq_err *err)
{
    dq_status st = s_use_backend(net, bk, train, err);
    if (st != DQ_OK) {
        dq_err ignore;
        (void)s_use_backend(net, dq_backend_cpu(), false, &ignore);
        return dq_fail_prefix(err, st, "net %s: ", net->mf.name);
    }
    return DQ_OK;
}

dq_status dq_net_set_device(dq_net_t *net, dq_device dev, bool train, uint64_t seed,
                            dq_err *err)
{
    dq_backend_t *bk = NULL;
    DQ_TRY(dq_backend_new(&bk, dev, seed, err));
    return dq_net_use_backend(net, bk, train, err);
}

const dq_backend_t *dq_net_backend(const dq_net_t *net)
{
    return net->bk;
}

/* ---- plan -------------------------------------------------------------------------- */

/* The layer whose gradient buffer layer i's gradient is: flattens are views
 * of their input's (a flatten of the network input has a buffer of its own). */
static int s_grad_root(const dq_model_file *mf, int i)
{
    while (mf->layers[i].type == DQ_LAYER_FLATTEN && mf->layers[i].from != DQ_MF_INPUT)
        i = mf->layers[i].from;
    return i;
}

/* Zeroing every activation gradient before each step cost ~7% of a LightNN
 * training step (the 28x28 ones are 6 MB each at batch 128). A gradient
 * buffer written by exactly one backward op, and by no loss (not a named
 * output), can instead be overwritten by that op when the backend has an
 * overwriting form (relu, maxpool). Everything else is still zeroed and
 * accumulated. */
static void s_plan_fusions(dq_net_t *net);
static void s_plan_eval_relu(dq_net_t *net);

static void s_plan_writers(dq_net_t *net)
{
    const dq_model_file *mf = &net->mf;
    const bool can_set = (net->bk->ops->caps & DQ_BK_SET_GRAD) != 0;
    int writers[DQ_MF_MAX_LAYERS] = {0};
    for (int k = 0; k < mf->n_outputs; k++) writers[s_grad_root(mf, mf->outputs[k].layer)]++;
    for (int j = 0; j < mf->n_layers; j++) {
        const dq_mf_layer *l = &mf->layers[j];
        if (l->type != DQ_LAYER_FLATTEN && l->from != DQ_MF_INPUT)
            writers[s_grad_root(mf, l->from)]++;
        if (l->type == DQ_LAYER_ADD && l->from2 != DQ_MF_INPUT) /* add writes both inputs' */
            writers[s_grad_root(mf, l->from2)]++;
    }
    for (int i = 0; i < mf->n_layers; i++) {
        net->zero[i] = s_grad_root(mf, i) == i;
        net->set_din[i] = net->pool_relu[i] = net->relu_folded[i] = net->relu_inplace[i] = false;
    }
    /* A relu (relu6, clip) may run in place on an output that nothing else
     * reads when the layer that made it never reads its own output in
     * backward (conv, linear, batchnorm2d: their input; add: nothing); the
     * relu's backward needs only its output. */
    int readers[DQ_MF_MAX_LAYERS] = {0};
    for (int k = 0; k < mf->n_outputs; k++) readers[mf->outputs[k].layer]++;
    for (int j = 0; j < mf->n_layers; j++) {
        const dq_mf_layer *l = &mf->layers[j];
        if (l->from != DQ_MF_INPUT) readers[l->from]++;
        if (l->type == DQ_LAYER_ADD && l->from2 != DQ_MF_INPUT) readers[l->from2]++;
    }
    for (int j = 0; j < mf->n_layers; j++) {
        const dq_mf_layer *l = &mf->layers[j];
        bool act = l->type == DQ_LAYER_RELU || l->type == DQ_LAYER_RELU6 ||
                   l->type == DQ_LAYER_CLIP;
        if (!act || l->from == DQ_MF_INPUT) continue;
        dq_layer_type src = mf->layers[l->from].type;
        net->relu_inplace[j] = readers[l->from] == 1 &&
                               (src == DQ_LAYER_CONV2D || src == DQ_LAYER_LINEAR ||
                                src == DQ_LAYER_BATCHNORM2D || src == DQ_LAYER_ADD);
    }
    for (int j = 0; can_set && j < mf->n_layers; j++) {
        const dq_mf_layer *l = &mf->layers[j];
        bool can = l->type == DQ_LAYER_RELU || l->type == DQ_LAYER_MAXPOOL2D;
        if (!can || l->from == DQ_MF_INPUT) continue;
        int r = s_grad_root(mf, l->from);
        if (writers[r] == 1) {
            net->set_din[j] = true;
            net->zero[r] = false;
        }
    }
    /* relu -> maxpool, each the only writer of its input's gradient: one
     * fused backward pass, straight into the relu's input gradient. */
    for (int j = 0; net->bk->ops->maxpool2d_relu_backward_set && j < mf->n_layers; j++) {
        const dq_mf_layer *l = &mf->layers[j];
        if (l->type != DQ_LAYER_MAXPOOL2D || !net->set_din[j]) continue;
        int r = l->from;
        if (mf->layers[r].type == DQ_LAYER_RELU && net->set_din[r]) {
            net->pool_relu[j] = true;
            net->relu_folded[r] = true;
        }
    }
    s_plan_fusions(net);
    s_plan_eval_relu(net);
}

/* EVAL RELU: a relu that works in place on a conv's output (relu_inplace:
 * nothing else reads it), directly or through a batch norm folded into the
 * conv, is done by the conv's eval forward as it writes (the same values,
 * one pass over the output less). */
static void s_plan_eval_relu(dq_net_t *net)
{
    const dq_model_file *mf = &net->mf;
    for (int i = 0; i < mf->n_layers; i++) {
        net->eval_relu[i] = net->eval_relu_by[i] = -1;
        net->eval_relu_folded[i] = false;
    }
    if (!(net->bk->ops->caps & DQ_BK_EVAL_CONV_RELU)) return;
    for (int r = 0; r < mf->n_layers; r++) {
        const dq_mf_layer *l = &mf->layers[r];
        if (l->type != DQ_LAYER_RELU || l->from == DQ_MF_INPUT || !net->relu_inplace[r]) continue;
        int src = l->from;
        bool via_bn = mf->layers[src].type == DQ_LAYER_BATCHNORM2D && net->folded_into[src] >= 0;
        if (via_bn) src = net->folded_into[src];
        if (mf->layers[src].type != DQ_LAYER_CONV2D) continue;
        net->eval_relu[src] = r;
        net->eval_relu_by[r] = src;
        net->eval_relu_folded[r] = via_bn;
    }
}

/* The backend geometry of conv2d layer l. */
static dq_backend_conv s_conv_geom(const dq_mf_layer *l)
{
    return (dq_backend_conv){l->in_shape[0], l->in_shape[1], l->in_shape[2], l->out, l->kernel,
                             {l->stride, l->padding, 0, l->groups}};
}

/* The training fusions of conv i (a DQ_BK_FUSE_* set) and, via *ws_bytes,
 * their workspace for batches up to max_n. */
static unsigned s_conv_fusions(const dq_net_t *net, int i, int64_t max_n, size_t *ws_bytes)
{
    const dq_model_file *mf = &net->mf;
    int m = net->fuse_pool[i];
    const dq_mf_layer *pl = m >= 0 ? &mf->layers[m] : NULL;
    dq_backend_conv g = s_conv_geom(&mf->layers[i]);
    return net->bk->ops->conv_fusions(net->bk, &g, max_n, pl ? pl->kernel : 0,
                                      pl ? pl->stride : 0, pl ? pl->padding : 0, ws_bytes);
}

/* FUSION (training forward and backward, tensor/conv2d_fused.c): a conv
 * followed by its in-place relu (and a maxpool of that relu), adjacent in
 * the file, becomes one training forward op that runs them in its epilogue
 * while its output is in cache. relu_inplace already says nothing but the
 * relu reads the conv output (no named output, no from= reader, no add
 * input, no batchnorm2d in between); with the pool, when the pool's backward
 * also does the relu's (pool_relu: nothing else reads or writes the relu
 * output's gradient), the conv's backward does both, image by image, and
 * the conv/relu output is never written. What the backend can fuse
 * (ungrouped convs, unpadded pools) it says in conv_fusions. */
static void s_plan_fusions(dq_net_t *net)
{
    const dq_model_file *mf = &net->mf;
    for (int i = 0; i < mf->n_layers; i++) {
        net->fuse_relu[i] = net->fuse_pool[i] = -1;
        net->fused[i] = net->pool_in_conv[i] = false;
    }
    if (!net->bk->ops->conv_fusions || !net->bk->ops->conv2d_fused_forward) return;
    for (int i = 0; i < mf->n_layers; i++) {
        int r = i + 1, m = i + 2;
        if (mf->layers[i].type != DQ_LAYER_CONV2D || r >= mf->n_layers) continue;
        if (mf->layers[r].type != DQ_LAYER_RELU || mf->layers[r].from != i ||
            !net->relu_inplace[r])
            continue;
        if (m < mf->n_layers && mf->layers[m].type == DQ_LAYER_MAXPOOL2D &&
            mf->layers[m].from == r)
            net->fuse_pool[i] = m;
        size_t ws = 0;
        unsigned f = s_conv_fusions(net, i, 1, &ws);
        if (!(f & DQ_BK_FUSE_RELU)) {
            net->fuse_pool[i] = -1;
            continue;
        }
        net->fuse_relu[i] = r;
        net->fused[r] = true;
        if (m != net->fuse_pool[i]) continue;
        if (!(f & DQ_BK_FUSE_POOL)) {
            net->fuse_pool[i] = -1;
            continue;
        }
        net->fused[m] = true;
        net->pool_in_conv[m] = net->pool_relu[m] && (f & DQ_BK_FUSE_BACKWARD) &&
                               net->bk->ops->conv2d_relu_maxpool_backward;
    }
}

/* Reserves bytes at *off (aligned); returns the address when base is set,
 * else NULL (sizing pass). */
static void *s_carve(unsigned char *base, size_t *off, size_t bytes)
{
    size_t at = *off;
    *off += (bytes + S_ALIGN - 1) / S_ALIGN * S_ALIGN;
    return base ? base + at : NULL;
}

static dq_tensor s_batched(float *data, int64_t n, int rank, const int64_t *shape)
{
    int64_t s[DQ_MAX_DIMS] = {n};
    for (int i = 0; i < rank; i++) s[i + 1] = shape[i];
    return dq_tensor_view(data, rank + 1, s);
}

/* The arena layout (see the top of the file) for batch N with a workspace
 * of ws_bytes for the unfused ops and ws_fused_bytes for the fused ones
 * (s_plan_fusions). Returns its size in bytes. */
static size_t s_layout(dq_net_t *net, unsigned char *base, int64_t N, size_t ws_bytes,
                       size_t ws_fused_bytes)
{
    const dq_model_file *mf = &net->mf;
    const dq_net_input *ip = &mf->input;
    size_t off = 0, fsz = sizeof(float);
    int64_t in_shape[3] = {ip->channels, ip->height, ip->width};
    int64_t in_numel = N * ip->channels * ip->height * ip->width;
    net->in = s_batched(s_carve(base, &off, (size_t)in_numel * fsz), N, 3, in_shape);
    net->in.name = "input";
    for (int i = 0; i < mf->n_layers; i++) {
        const dq_mf_layer *l = &mf->layers[i];
        size_t bytes = (size_t)(N * dq_mf_out_numel(l)) * fsz;
        float *p = NULL;
        if (net->relu_inplace[i]) p = net->out[l->from].data;
        else if (l->type != DQ_LAYER_FLATTEN) p = s_carve(base, &off, bytes);
        else p = l->from == DQ_MF_INPUT ? net->in.data : net->out[l->from].data;
        net->out[i] = s_batched(p, N, l->out_rank, l->out_shape);
        net->out[i].name = l->name;
    }
    for (int i = 0; i < mf->n_layers; i++) {
        const dq_mf_layer *l = &mf->layers[i];
        size_t bytes = (size_t)(N * dq_mf_out_numel(l)) * fsz;
        float *p = NULL;
        /* A flatten of the input has no gradient to alias: give it a sink. */
        if (l->type != DQ_LAYER_FLATTEN || l->from == DQ_MF_INPUT)
            p = s_carve(base, &off, bytes);
        else p = net->dout[l->from].data;
        net->dout[i] = s_batched(p, N, l->out_rank, l->out_shape);
        net->dout[i].name = l->name;
    }
    /* Masks, workspace, argmax: the order matters beyond tidiness, since
     * OpenBLAS's results can depend on where its operands sit (see the
     * batch-invariance test), so keep it stable. */
    for (int i = 0; i < mf->n_layers; i++) {
        const dq_mf_layer *l = &mf->layers[i];
        net->mask[i] = NULL;
        if (l->type == DQ_LAYER_DROPOUT)
            net->mask[i] = s_carve(base, &off, (size_t)(N * dq_mf_out_numel(l)) * fsz);
    }
    net->ws_bytes = ws_bytes;
    net->ws_fused_bytes = ws_fused_bytes > ws_bytes ? ws_fused_bytes : ws_bytes;
    net->ws = s_carve(base, &off, net->ws_fused_bytes);
    for (int i = 0; i < mf->n_layers; i++) {
        const dq_mf_layer *l = &mf->layers[i];
        net->argmax[i] = NULL;
        net->save_mean[i] = net->save_invstd[i] = NULL;
        if (l->type == DQ_LAYER_MAXPOOL2D)
            net->argmax[i] = s_carve(base, &off, (size_t)(N * dq_mf_out_numel(l)) * sizeof(int32_t));
        if (l->type == DQ_LAYER_BATCHNORM2D) {
            net->save_mean[i] = s_carve(base, &off, (size_t)l->in * fsz);
            net->save_invstd[i] = s_carve(base, &off, (size_t)l->in * fsz);
        }
    }
    return off;
}

/* Rough upper bound of the arena in bytes, in double so it cannot wrap. */
static double s_arena_estimate(const dq_net_t *net, int64_t N)
{
    const dq_model_file *mf = &net->mf;
    double per = (double)mf->input.channels * mf->input.height * mf->input.width;
    for (int i = 0; i < mf->n_layers; i++) {
        const dq_mf_layer *l = &mf->layers[i];
        per += 3.0 * (double)dq_mf_out_numel(l); /* out, dout, mask or argmax */
        if (l->type == DQ_LAYER_CONV2D)
            per += (double)l->in * l->kernel * l->kernel * (double)dq_mf_out_numel(l) /
                   (double)l->out;
    }
    return (double)N * per * 4.0 + 64.0 * 6 * (mf->n_layers + 2);
}

/* The backend's per-layer state for max_batch into st[] (convolutions,
 * batch norms), and the largest workspace any conv or eval linear needs.
 * On failure st[] is released. */
static dq_status s_plan_ops(dq_net_t *net, int64_t max_batch, void **st, size_t *ws,
                            size_t *ws_fused, dq_err *err)
{
    const dq_model_file *mf = &net->mf;
    const dq_backend_ops *ops = net->bk->ops;
    *ws = *ws_fused = 0;
    for (int i = 0; i < mf->n_layers; i++) st[i] = NULL;
    for (int i = 0; i < mf->n_layers; i++) {
        const dq_mf_layer *l = &mf->layers[i];
        dq_status s = DQ_OK;
        size_t w = 0;
        if (l->type == DQ_LAYER_LINEAR) w = ops->linear_ws(net->bk, l->in, l->out);
        if (l->type == DQ_LAYER_CONV2D) {
            net->geom[i] = s_conv_geom(l);
            s = ops->conv_plan(net->bk, &st[i], &net->geom[i], max_batch, net->dev_train, &w,
                               err);
            size_t wf = 0;
            if (net->fuse_relu[i] >= 0) (void)s_conv_fusions(net, i, max_batch, &wf);
            if (wf > *ws_fused) *ws_fused = wf;
        }
        if (l->type == DQ_LAYER_BATCHNORM2D && ops->bn_plan)
            s = ops->bn_plan(net->bk, &st[i], l->in_shape[0], l->in_shape[1], l->in_shape[2],
                             max_batch, err);
        if (s != DQ_OK) {
            for (int k = 0; k < i; k++) s_release_state(net, k, st[k]);
            return dq_fail_prefix(err, s, "net %s: layer %s (line %d): ", mf->name, l->name,
                                  l->line);
        }
        if (w > *ws) *ws = w;
    }
    if (*ws_fused < *ws) *ws_fused = *ws;
    return DQ_OK;
}

/* Device backends: host buffers for every output and its gradient. */
static dq_status s_plan_host(dq_net_t *net, dq_err *err)
{
    const dq_model_file *mf = &net->mf;
    const dq_backend_ops *ops = net->bk->ops;
    const dq_net_input *ip = &mf->input;
    if (!net->h_in)
        DQ_TRY(ops->host_alloc(net->bk, &net->h_in,
                               (size_t)(net->max_batch * ip->channels * ip->height * ip->width) *
                                   sizeof(float),
                               err));
    for (int o = 0; o < mf->n_outputs; o++) {
        int li = mf->outputs[o].layer;
        const dq_mf_layer *l = &mf->layers[li];
        size_t bytes = (size_t)(net->max_batch * dq_mf_out_numel(l)) * sizeof(float);
        if (!net->h_out[li]) DQ_TRY(ops->host_alloc(net->bk, &net->h_out[li], bytes, err));
        if (!net->h_dout[li]) DQ_TRY(ops->host_alloc(net->bk, &net->h_dout[li], bytes, err));
        net->out_view[o] = s_batched(net->h_out[li], net->max_batch, l->out_rank, l->out_shape);
        net->grad_view[o] = s_batched(net->h_dout[li], net->max_batch, l->out_rank, l->out_shape);
        net->out_view[o].name = net->grad_view[o].name = mf->outputs[o].name;
        net->fetched[o] = false;
    }
    return DQ_OK;
}

dq_status dq_net_plan(dq_net_t *net, int64_t max_batch, dq_err *err)
{
    const dq_backend_ops *ops = net->bk->ops;
    if (max_batch < 1)
        return dq_fail(err, DQ_ERR_ARG, "net %s: batch size %lld must be >= 1", net->mf.name,
                       (long long)max_batch);
    if (max_batch <= net->max_batch) return DQ_OK;
    if (s_arena_estimate(net, max_batch) > (double)S_MAX_ARENA_BYTES)
        return dq_fail(err, DQ_ERR_NOMEM, "net %s: batch %lld needs more than 64 TiB",
                       net->mf.name, (long long)max_batch);
    bool first = net->max_batch == 0;
    s_plan_writers(net);
    void *st_new[DQ_MF_MAX_LAYERS];
    size_t ws = 0, ws_fused = 0;
    DQ_TRY(s_plan_ops(net, max_batch, st_new, &ws, &ws_fused, err));
    size_t bytes = s_layout(net, NULL, max_batch, ws, ws_fused);
    void *arena = NULL;
    dq_status st = ops->alloc(net->bk, &arena, bytes, err);
    if (st != DQ_OK) {
        for (int i = 0; i < net->mf.n_layers; i++) s_release_state(net, i, st_new[i]);
        s_layout(net, net->arena, net->max_batch, net->ws_bytes,
                 net->ws_fused_bytes); /* keep the old plan's views */
        return dq_fail_prefix(err, st, "net %s: activations for batch %lld: ", net->mf.name,
                              (long long)max_batch);
    }
    s_free_plan(net);
    net->arena = arena;
    net->max_batch = max_batch;
    memcpy(net->lstate, st_new, sizeof st_new[0] * (size_t)net->mf.n_layers);
    s_layout(net, arena, max_batch, ws, ws_fused);
    if (!net->host) {
        DQ_TRY(s_plan_host(net, err));
        if (first) DQ_TRY(dq_net_upload(net, NULL, NULL, err));
    }
    return DQ_OK;
}

/* ---- host <-> backend copies --------------------------------------------------------- */

dq_status dq_net_upload(dq_net_t *net, const float *m, const float *v, dq_err *err)
{
    net->fold_stale = true;
    if (net->host) return DQ_OK;
    const dq_backend_ops *ops = net->bk->ops;
    size_t bytes = (size_t)net->n_floats * sizeof(float);
    DQ_TRY(ops->to_device(net->bk, net->bparams, net->params, bytes, err));
    DQ_TRY(ops->to_device(net->bk, net->bbufs, net->bufs,
                          (size_t)net->n_buf_floats * sizeof(float), err));
    if (m && net->bm) DQ_TRY(ops->to_device(net->bk, net->bm, m, bytes, err));
    if (v && net->bv) DQ_TRY(ops->to_device(net->bk, net->bv, v, bytes, err));
    return ops->sync(net->bk, err);
}

dq_status dq_net_download(dq_net_t *net, bool grads, float *m, float *v, dq_err *err)
{
    if (net->host) return DQ_OK;
    const dq_backend_ops *ops = net->bk->ops;
    size_t bytes = (size_t)net->n_floats * sizeof(float);
    DQ_TRY(ops->to_host(net->bk, net->params, net->bparams, bytes, err));
    DQ_TRY(ops->to_host(net->bk, net->bufs, net->bbufs, (size_t)net->n_buf_floats * sizeof(float),
                        err));
    if (grads && net->bgrads) DQ_TRY(ops->to_host(net->bk, net->grads, net->bgrads, bytes, err));
    if (m && net->bm) DQ_TRY(ops->to_host(net->bk, m, net->bm, bytes, err));
    if (v && net->bv) DQ_TRY(ops->to_host(net->bk, v, net->bv, bytes, err));
    return DQ_OK;
}

/* ---- outputs and parameters ------------------------------------------------------- */

int dq_net_output_count(const dq_net_t *net)
{
    return net->mf.n_outputs;
}

const char *dq_net_output_name(const dq_net_t *net, int i)
{
    return i >= 0 && i < net->mf.n_outputs ? net->mf.outputs[i].name : NULL;
}

const dq_tensor *dq_net_output(const dq_net_t *net, const char *name)
{
    int o = name ? dq_mf_find_output(&net->mf, name) : -1;
    if (o < 0) return NULL;
    if (net->host) return &net->out[net->mf.outputs[o].layer];
    return net->fetched[o] ? &net->out_view[o] : NULL;
}

dq_tensor *dq_net_output_grad(dq_net_t *net, const char *name)
{
    int o = name ? dq_mf_find_output(&net->mf, name) : -1;
    if (o < 0) return NULL;
    if (net->host) return &net->dout[net->mf.outputs[o].layer];
    return net->max_batch ? &net->grad_view[o] : NULL;
}

int dq_net_output_shape(const dq_net_t *net, const char *name, int64_t *shape)
{
    int o = dq_mf_find_output(&net->mf, name);
    if (o < 0) return -1;
    const dq_mf_layer *l = &net->mf.layers[net->mf.outputs[o].layer];
    for (int i = 0; i < l->out_rank; i++) shape[i] = l->out_shape[i];
    return l->out_rank;
}

int64_t dq_net_param_floats(const dq_net_t *net)
{
    return net->n_floats;
}

/* Handing out writable parameters (or buffers) may change them: the eval
 * folding is redone before the next eval forward. */
float *dq_net_params(dq_net_t *net)
{
    net->fold_stale = true;
    return net->params;
}

float *dq_net_grads(dq_net_t *net)
{
    return net->grads;
}

int dq_net_param_count(const dq_net_t *net)
{
    return net->n_params;
}

const char *dq_net_param_name(const dq_net_t *net, int i)
{
    return i >= 0 && i < net->n_params ? net->pname[i] : NULL;
}

dq_tensor *dq_net_param(dq_net_t *net, int i)
{
    net->fold_stale = true;
    return i >= 0 && i < net->n_params ? &net->param[i] : NULL;
}

dq_tensor *dq_net_param_grad(dq_net_t *net, int i)
{
    return i >= 0 && i < net->n_params ? &net->grad[i] : NULL;
}

dq_tensor *dq_net_find_tensor(dq_net_t *net, const char *name)
{
    net->fold_stale = true;
    for (int i = 0; name && i < net->n_params; i++)
        if (strcmp(net->pname[i], name) == 0) return &net->param[i];
    for (int k = 0; name && k < net->n_bufs; k++)
        if (net->buf[k].data && strcmp(net->bname[k], name) == 0) return &net->buf[k];
    return NULL;
}

double dq_net_flops_per_sample(const dq_net_t *net)
{
    double f = 0.0;
    for (int i = 0; i < net->mf.n_layers; i++) {
        const dq_mf_layer *l = &net->mf.layers[i];
        if (l->type == DQ_LAYER_CONV2D)
            f += 2.0 * (double)dq_mf_out_numel(l) * (double)(l->in / (l->groups > 1 ? l->groups : 1)) *
                 l->kernel * l->kernel;
        else if (l->type == DQ_LAYER_LINEAR)
            f += 2.0 * (double)l->in * (double)l->out;
    }
    return f;
}

void dq_net_normalize_u8(const dq_net_t *net, float *out, const uint8_t *in, int64_t n)
{
    const dq_net_input *ip = &net->mf.input;
    /* A table per channel computed exactly as torchvision does it
     * (ToTensor: x / 255, then Normalize: (x - mean) / std, in float), so
     * the result matches PyTorch bit for bit. */
    float lut[DQ_NET_MAX_CHANNELS][256];
    for (int c = 0; c < ip->channels; c++)
        for (int v = 0; v < 256; v++)
            lut[c][v] = ((float)v / 255.0f - ip->mean[c]) / ip->std[c];
    int64_t plane = (int64_t)ip->height * ip->width;
    for (int64_t s = 0; s < n; s++)
        for (int c = 0; c < ip->channels; c++) {
            const float *t = lut[c];
            int64_t base = (s * ip->channels + c) * plane;
            for (int64_t k = 0; k < plane; k++) out[base + k] = t[in[base + k]];
        }
}
