/* net.c - runs the layer list of a model file forward and backward.
 *
 * Memory, llm.c-style: parameters are one allocation and their gradients
 * another, carved into tensors named by their state_dict keys, so the
 * optimiser steps one flat array and zero_grad is one memset. dq_net_plan
 * lays out one arena holding, in order: a copy of the input (so backward
 * never depends on the caller's buffer), every layer's output, every
 * activation gradient, dropout
 * masks, the im2col workspace shared by all convolutions (they run one at a
 * time), and maxpool argmax indices. The same layout function computes the
 * size (base == NULL) and then assigns the pointers, so the two cannot
 * disagree. Forward and backward only use what plan laid out.
 *
 * Flatten is a view: its output and output gradient alias its input's, so a
 * linear layer after it adds its input gradient straight into the conv
 * map's gradient. Backward walks the layers in reverse; every consumer of an
 * activation comes later in the file than its producer, and every op ADDS
 * into din, so when a layer's backward runs its output gradient already
 * holds the sum over all consumers (branches via from= need nothing extra).
 * The one exception saves zeroing: a gradient whose only writer is a relu
 * or maxpool is overwritten by it instead (s_plan_writers).
 *
 * Training-mode fusions (s_plan_fusions, tensor/conv2d_fused.c): a conv
 * followed by its in-place relu (and a maxpool of that) runs them in its
 * epilogue, while its output is in cache; when that maxpool's backward also
 * does the relu's (pool_relu), the conv's backward does both, image by
 * image, and the conv/relu activation and its gradient never reach memory.
 * Eval forward keeps the separate batch-invariant ops, so its numerics are
 * untouched; training values are bitwise the unfused ones (test_fused).
 * Backward lowers each image again rather than keeping
 * the forward's columns (dq_conv2d_backward_cols could): kept, LightNN's
 * would be 19 MB streamed from memory per step, measured no faster than
 * re-lowering from the 1.6 MB input into a cache-resident workspace.
 */
#include "model/net.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model_file.h"
#include "tensor/init.h"
#include "tensor/ops.h"

#define S_MAX_PARAMS (2 * DQ_MF_MAX_LAYERS)
#define S_PNAME_MAX (DQ_MF_NAME_MAX + 8) /* layer name + ".weight" */
#define S_ALIGN 64
#define S_MAX_ARENA_BYTES (1ULL << 46)  /* beyond this plan reports NOMEM up front */

struct dq_net {
    dq_model_file mf;

    /* Parameters and gradients: n_floats each, one allocation each. */
    int64_t n_floats;
    float *params, *grads;
    int n_params;
    dq_tensor param[S_MAX_PARAMS], grad[S_MAX_PARAMS];
    char pname[S_MAX_PARAMS][S_PNAME_MAX];
    int w_idx[DQ_MF_MAX_LAYERS], b_idx[DQ_MF_MAX_LAYERS]; /* -1: none */

    /* Plan: everything below points into arena. */
    int64_t max_batch;
    unsigned char *arena;
    dq_tensor in;                     /* copy of the last forward's input */
    dq_tensor out[DQ_MF_MAX_LAYERS];  /* batch dim = last forward's N */
    dq_tensor dout[DQ_MF_MAX_LAYERS];
    float *mask[DQ_MF_MAX_LAYERS];    /* dropout */
    int32_t *argmax[DQ_MF_MAX_LAYERS]; /* maxpool2d */
    float *ws;
    int64_t ws_floats;

    bool fwd_done, fwd_train;

    /* Gradient writers (s_plan_writers): set_din[i]: layer i's backward is
     * the only writer of its input's gradient and overwrites it; zero[i]:
     * dout[i] owns a buffer that zero_grad must clear (not one overwritten
     * by its only writer, not a flatten view). */
    bool set_din[DQ_MF_MAX_LAYERS];
    bool zero[DQ_MF_MAX_LAYERS];
    /* relu_inplace[i]: relu layer i writes over its input, a conv/linear
     * output read by nothing else (saves a buffer and a memory stream). */
    bool relu_inplace[DQ_MF_MAX_LAYERS];
    /* pool_relu[i]: maxpool layer i also does the backward of the relu it
     * reads (both overwrite their only-written gradient), which then skips
     * its own (relu_folded). */
    bool pool_relu[DQ_MF_MAX_LAYERS];
    bool relu_folded[DQ_MF_MAX_LAYERS];
    /* FUSION (training forward, s_plan_fusions): conv i also runs relu
     * fuse_relu[i] and maxpool fuse_pool[i] (-1: none) in its epilogue, and
     * fused[j] says layer j's training forward was done that way. */
    int fuse_relu[DQ_MF_MAX_LAYERS], fuse_pool[DQ_MF_MAX_LAYERS];
    bool fused[DQ_MF_MAX_LAYERS];
    /* FUSION (backward): pool_in_conv[m]: maxpool m's backward (with the
     * relu folded into it) is done per image by the conv before them; the
     * conv/relu output is then read by nobody and not even written. */
    bool pool_in_conv[DQ_MF_MAX_LAYERS];
};

/* ---- load / destroy ---------------------------------------------------------- */

static float *s_alloc_floats(int64_t n)
{
    size_t bytes = ((size_t)n * sizeof(float) + S_ALIGN - 1) / S_ALIGN * S_ALIGN;
    if (bytes == 0) bytes = S_ALIGN;
    float *p = aligned_alloc(S_ALIGN, bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

/* Adds one named parameter view (and its gradient) at offset *off. */
static int s_add_param(dq_net_t *net, const char *layer, const char *suffix, int ndim,
                       const int64_t *shape, int64_t *off)
{
    int i = net->n_params++;
    snprintf(net->pname[i], S_PNAME_MAX, "%s.%s", layer, suffix);
    net->param[i] = dq_tensor_view(net->params + *off, ndim, shape);
    net->grad[i] = dq_tensor_view(net->grads + *off, ndim, shape);
    net->param[i].name = net->grad[i].name = net->pname[i];
    *off += dq_tensor_numel(&net->param[i]);
    return i;
}

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
 * output), can instead be overwritten by that op when it has an overwriting
 * form (relu, maxpool). Everything else is still zeroed and accumulated. */
static void s_plan_writers(dq_net_t *net)
{
    const dq_model_file *mf = &net->mf;
    int writers[DQ_MF_MAX_LAYERS] = {0};
    for (int k = 0; k < mf->n_outputs; k++) writers[s_grad_root(mf, mf->outputs[k].layer)]++;
    for (int j = 0; j < mf->n_layers; j++) {
        const dq_mf_layer *l = &mf->layers[j];
        if (l->type != DQ_LAYER_FLATTEN && l->from != DQ_MF_INPUT)
            writers[s_grad_root(mf, l->from)]++;
    }
    for (int i = 0; i < mf->n_layers; i++) net->zero[i] = s_grad_root(mf, i) == i;
    /* A relu may run in place on a conv/linear output that nothing else
     * reads (relu backward needs only its output; conv and linear backward
     * never read their own output). */
    int readers[DQ_MF_MAX_LAYERS] = {0};
    for (int k = 0; k < mf->n_outputs; k++) readers[mf->outputs[k].layer]++;
    for (int j = 0; j < mf->n_layers; j++)
        if (mf->layers[j].from != DQ_MF_INPUT) readers[mf->layers[j].from]++;
    for (int j = 0; j < mf->n_layers; j++) {
        const dq_mf_layer *l = &mf->layers[j];
        if (l->type != DQ_LAYER_RELU || l->from == DQ_MF_INPUT) continue;
        dq_layer_type src = mf->layers[l->from].type;
        net->relu_inplace[j] = readers[l->from] == 1 &&
                               (src == DQ_LAYER_CONV2D || src == DQ_LAYER_LINEAR);
    }
    for (int j = 0; j < mf->n_layers; j++) {
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
    for (int j = 0; j < mf->n_layers; j++) {
        const dq_mf_layer *l = &mf->layers[j];
        if (l->type != DQ_LAYER_MAXPOOL2D || !net->set_din[j]) continue;
        int r = l->from;
        if (mf->layers[r].type == DQ_LAYER_RELU && net->set_din[r]) {
            net->pool_relu[j] = true;
            net->relu_folded[r] = true;
        }
    }
}

/* FUSION: conv -> relu (in place, s_plan_writers) [-> maxpool of that
 * relu], adjacent in the file, become one training-mode forward op; with
 * the pool, and the relu's backward folded into the pool's, one backward op
 * too (pool_in_conv). The pool still writes its output and argmax. */
static void s_plan_fusions(dq_net_t *net)
{
    const dq_model_file *mf = &net->mf;
    for (int i = 0; i < mf->n_layers; i++) {
        net->fuse_relu[i] = net->fuse_pool[i] = -1;
        const dq_mf_layer *l = &mf->layers[i];
        int r = i + 1, m = i + 2;
        if (l->type != DQ_LAYER_CONV2D || r >= mf->n_layers) continue;
        if (mf->layers[r].type != DQ_LAYER_RELU || mf->layers[r].from != i ||
            !net->relu_inplace[r])
            continue;
        net->fuse_relu[i] = r;
        net->fused[r] = true;
        if (m < mf->n_layers && mf->layers[m].type == DQ_LAYER_MAXPOOL2D &&
            mf->layers[m].from == r) {
            net->fuse_pool[i] = m;
            net->fused[m] = true;
            /* The conv's output gradient then has no other writer or reader. */
            net->pool_in_conv[m] = net->pool_relu[m];
        }
    }
}

dq_status dq_net_load(dq_net_t **out, const char *model_path, dq_err *err)
{
    *out = NULL;
    dq_net_t *net = calloc(1, sizeof *net);
    if (!net) return dq_fail(err, DQ_ERR_NOMEM, "%s: cannot allocate the net", model_path);
    dq_status st = dq_mf_load(&net->mf, model_path, err);
    if (st != DQ_OK) {
        free(net);
        return st;
    }
    net->n_floats = dq_mf_param_floats(&net->mf);
    net->params = s_alloc_floats(net->n_floats);
    net->grads = s_alloc_floats(net->n_floats);
    if (!net->params || !net->grads) {
        long long n = (long long)net->n_floats;
        dq_net_destroy(&net);
        return dq_fail(err, DQ_ERR_NOMEM, "%s: cannot allocate %lld parameters", model_path, n);
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
    s_plan_writers(net);
    s_plan_fusions(net);
    *out = net;
    return DQ_OK;
}

void dq_net_destroy(dq_net_t **pnet)
{
    if (!pnet || !*pnet) return;
    dq_net_t *net = *pnet;
    free(net->params);
    free(net->grads);
    free(net->arena);
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

void dq_net_init_params(dq_net_t *net, dq_rng *rng)
{
    for (int i = 0; i < net->mf.n_layers; i++) {
        const dq_mf_layer *l = &net->mf.layers[i];
        if (net->w_idx[i] < 0) continue;
        int64_t fan_in = l->in;
        if (l->type == DQ_LAYER_CONV2D) fan_in *= (int64_t)l->kernel * l->kernel;
        dq_tensor *w = &net->param[net->w_idx[i]];
        dq_init_uniform_fan_in(w->data, dq_tensor_numel(w), fan_in, rng);
        if (net->b_idx[i] >= 0) dq_init_uniform_fan_in(net->param[net->b_idx[i]].data, l->out,
                                                       fan_in, rng);
    }
}

/* ---- plan -------------------------------------------------------------------------- */

/* Reserves bytes at *off (64-byte aligned); returns the address when base is
 * set, else NULL (sizing pass). */
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

/* The arena layout (see the top of the file). Returns its size in bytes. */
static size_t s_layout(dq_net_t *net, unsigned char *base, int64_t N)
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
        if (l->type == DQ_LAYER_RELU && net->relu_inplace[i]) p = net->out[l->from].data;
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

    int64_t ws = 0;
    for (int i = 0; i < mf->n_layers; i++) {
        const dq_mf_layer *l = &mf->layers[i];
        net->mask[i] = NULL;
        if (l->type == DQ_LAYER_DROPOUT)
            net->mask[i] = s_carve(base, &off, (size_t)(N * dq_mf_out_numel(l)) * fsz);
        if (l->type == DQ_LAYER_CONV2D) {
            dq_conv2d_params cp = {l->stride, l->padding, 0};
            int64_t w = dq_conv2d_workspace(N, l->in_shape[0], l->in_shape[1], l->in_shape[2],
                                            l->kernel, l->kernel, cp);
            int64_t we = dq_conv2d_invariant_workspace(N, l->in_shape[0], l->in_shape[1],
                                                       l->in_shape[2], l->kernel, l->kernel,
                                                       l->out, cp);
            if (w > ws) ws = w;
            if (we > ws) ws = we;
        }
        if (l->type == DQ_LAYER_LINEAR && dq_linear_invariant_workspace() > ws)
            ws = dq_linear_invariant_workspace();
        if (l->type == DQ_LAYER_CONV2D && net->fuse_pool[i] >= 0 &&
            net->pool_in_conv[net->fuse_pool[i]]) { /* FUSION: its backward's scratch */
            dq_conv2d_params cp = {l->stride, l->padding, 0};
            int64_t wf = dq_conv2d_relu_maxpool_backward_workspace(
                l->in_shape[0], l->in_shape[1], l->in_shape[2], l->kernel, l->kernel, l->out, cp);
            int64_t wo = dq_conv2d_fused_workspace(N, l->in_shape[0], l->in_shape[1],
                                                   l->in_shape[2], l->kernel, l->kernel, l->out,
                                                   cp);
            if (wf > ws) ws = wf;
            if (wo > ws) ws = wo;
        }
    }
    net->ws_floats = ws;
    net->ws = s_carve(base, &off, (size_t)ws * fsz);
    for (int i = 0; i < mf->n_layers; i++) {
        const dq_mf_layer *l = &mf->layers[i];
        net->argmax[i] = NULL;
        if (l->type == DQ_LAYER_MAXPOOL2D)
            net->argmax[i] = s_carve(base, &off, (size_t)(N * dq_mf_out_numel(l)) * sizeof(int32_t));
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
    return (double)N * per * 4.0 + 64.0 * 4 * (mf->n_layers + 2);
}

dq_status dq_net_plan(dq_net_t *net, int64_t max_batch, dq_err *err)
{
    if (max_batch < 1)
        return dq_fail(err, DQ_ERR_ARG, "net %s: batch size %lld must be >= 1", net->mf.name,
                       (long long)max_batch);
    if (max_batch <= net->max_batch) return DQ_OK;
    if (s_arena_estimate(net, max_batch) > (double)S_MAX_ARENA_BYTES)
        return dq_fail(err, DQ_ERR_NOMEM, "net %s: batch %lld needs more than 64 TiB",
                       net->mf.name, (long long)max_batch);
    size_t bytes = s_layout(net, NULL, max_batch);
    unsigned char *arena = aligned_alloc(S_ALIGN, bytes ? bytes : S_ALIGN);
    if (!arena) {
        s_layout(net, net->arena, net->max_batch); /* keep the old plan's views */
        return dq_fail(err, DQ_ERR_NOMEM, "net %s: cannot allocate %zu bytes of activations "
                       "for batch %lld", net->mf.name, bytes, (long long)max_batch);
    }
    memset(arena, 0, bytes);
    free(net->arena);
    net->arena = arena;
    net->max_batch = max_batch;
    s_layout(net, arena, max_batch);
    net->fwd_done = false;
    return DQ_OK;
}

/* ---- forward / backward ---------------------------------------------------------- */

static dq_tensor *s_input_of(dq_net_t *net, int i)
{
    int from = net->mf.layers[i].from;
    return from == DQ_MF_INPUT ? &net->in : &net->out[from];
}

static dq_tensor *s_param(dq_net_t *net, int idx)
{
    return idx >= 0 ? &net->param[idx] : NULL;
}

static dq_tensor *s_grad(dq_net_t *net, int idx)
{
    return idx >= 0 ? &net->grad[idx] : NULL;
}

static void s_set_batch(dq_net_t *net, int64_t n)
{
    net->in.shape[0] = n;
    for (int i = 0; i < net->mf.n_layers; i++) net->out[i].shape[0] = net->dout[i].shape[0] = n;
}

/* Runs every layer on the first N samples of net->in. */
static dq_status s_forward(dq_net_t *net, int64_t N, bool train, dq_rng *rng, dq_err *err)
{
    const dq_model_file *mf = &net->mf;
    if (train && !rng)
        return dq_fail(err, DQ_ERR_ARG, "net %s: training forward needs an rng", mf->name);
    net->fwd_done = false;
    s_set_batch(net, N);

    for (int i = 0; i < mf->n_layers; i++) {
        const dq_mf_layer *l = &mf->layers[i];
        const dq_tensor *in = s_input_of(net, i);
        dq_tensor *out = &net->out[i];
        dq_status st = DQ_OK;
        switch (l->type) {
        case DQ_LAYER_CONV2D: {
            /* eval: position-invariant GEMMs (batch-invariant, see net.h) */
            dq_conv2d_params cp = {l->stride, l->padding, 0};
            const dq_tensor *w = s_param(net, net->w_idx[i]), *b = s_param(net, net->b_idx[i]);
            /* FUSION: training conv with its relu [+ maxpool] epilogue */
            int r = net->fuse_relu[i], m = net->fuse_pool[i];
            if (train && r >= 0) {
                dq_conv2d_epilogue e = {true, 0, 0, false};
                if (m >= 0) {
                    e.pool_kernel = mf->layers[m].kernel;
                    e.pool_stride = mf->layers[m].stride;
                    /* nothing reads the relu output when backward is fused too */
                    e.discard_out = net->pool_in_conv[m];
                }
                st = dq_conv2d_fused_forward(out, m >= 0 ? &net->out[m] : NULL,
                                             m >= 0 ? net->argmax[m] : NULL, NULL, 0, in, w, b,
                                             cp, e, net->ws, net->ws_floats, err);
                break;
            }
            st = train ? dq_conv2d_forward(out, in, w, b, cp, net->ws, net->ws_floats, err)
                       : dq_conv2d_forward_invariant(out, in, w, b, cp, net->ws, net->ws_floats,
                                                     err);
            break;
        }
        case DQ_LAYER_LINEAR: {
            const dq_tensor *w = s_param(net, net->w_idx[i]), *b = s_param(net, net->b_idx[i]);
            st = train ? dq_linear_forward(out, in, w, b, err)
                       : dq_linear_forward_invariant(out, in, w, b, net->ws, net->ws_floats, err);
            break;
        }
        case DQ_LAYER_RELU:
            if (train && net->fused[i]) break; /* FUSION: done by the conv before it */
            st = dq_relu_forward(out, in, err);
            break;
        case DQ_LAYER_MAXPOOL2D:
            if (train && net->fused[i]) break; /* FUSION: done by the conv before it */
            st = dq_maxpool2d_forward(out, net->argmax[i], in, l->kernel, l->stride, err);
            break;
        case DQ_LAYER_AVGPOOL1D: st = dq_avgpool1d_forward(out, in, l->kernel, err); break;
        case DQ_LAYER_DROPOUT:
            st = dq_dropout_forward(out, net->mask[i], in, l->p, train, rng, err);
            break;
        case DQ_LAYER_FLATTEN: break; /* a view laid out by plan */
        default: st = dq_fail(err, DQ_ERR_ARG, "unknown layer type"); break;
        }
        if (st != DQ_OK)
            return dq_fail_prefix(err, st, "net %s: layer %s (line %d): ", mf->name, l->name,
                                  l->line);
    }
    net->fwd_done = true;
    net->fwd_train = train;
    return DQ_OK;
}

dq_status dq_net_forward(dq_net_t *net, const dq_tensor *input, bool train, dq_rng *rng,
                         dq_err *err)
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
    int64_t N = input->shape[0];
    if (input->data != net->in.data) /* not already in dq_net_input_buffer */
        memcpy(net->in.data, input->data, (size_t)(N * ip->channels * ip->height * ip->width) *
                                              sizeof(float));
    return s_forward(net, N, train, rng, err);
}

float *dq_net_input_buffer(dq_net_t *net)
{
    return net->max_batch > 0 ? net->in.data : NULL;
}

dq_status dq_net_forward_input(dq_net_t *net, int64_t n, bool train, dq_rng *rng, dq_err *err)
{
    if (net->max_batch == 0)
        return dq_fail(err, DQ_ERR_ARG, "net %s: forward before dq_net_plan", net->mf.name);
    if (n < 1 || n > net->max_batch)
        return dq_fail(err, DQ_ERR_SHAPE, "net %s: batch of %lld in the input buffer, expected "
                       "1 <= N <= %lld (the planned batch)", net->mf.name, (long long)n,
                       (long long)net->max_batch);
    return s_forward(net, n, train, rng, err);
}

dq_status dq_net_backward(dq_net_t *net, dq_err *err)
{
    const dq_model_file *mf = &net->mf;
    if (!net->fwd_done || !net->fwd_train)
        return dq_fail(err, DQ_ERR_ARG, "net %s: backward needs a preceding forward with "
                       "train=true", mf->name);
    for (int i = mf->n_layers - 1; i >= 0; i--) {
        const dq_mf_layer *l = &mf->layers[i];
        dq_tensor *din = l->from == DQ_MF_INPUT ? NULL : &net->dout[l->from];
        const dq_tensor *in = s_input_of(net, i);
        const dq_tensor *dout = &net->dout[i];
        dq_status st = DQ_OK;
        switch (l->type) {
        case DQ_LAYER_CONV2D: {
            dq_conv2d_params cp = {l->stride, l->padding, 0};
            int m = net->fuse_pool[i];
            if (m >= 0 && net->pool_in_conv[m]) { /* FUSION: relu + maxpool backward too */
                const dq_mf_layer *pl = &mf->layers[m];
                st = dq_conv2d_relu_maxpool_backward(
                    din, s_grad(net, net->w_idx[i]), s_grad(net, net->b_idx[i]), &net->dout[m],
                    net->argmax[m], &net->out[m], in, s_param(net, net->w_idx[i]), cp,
                    pl->kernel, pl->stride, net->ws, net->ws_floats, err);
                break;
            }
            st = dq_conv2d_backward(din, s_grad(net, net->w_idx[i]), s_grad(net, net->b_idx[i]),
                                    dout, in, s_param(net, net->w_idx[i]), cp, net->ws,
                                    net->ws_floats, err);
            break;
        }
        case DQ_LAYER_LINEAR:
            st = dq_linear_backward(din, s_grad(net, net->w_idx[i]), s_grad(net, net->b_idx[i]),
                                    dout, in, s_param(net, net->w_idx[i]), err);
            break;
        /* Parameter-free layers reading the input have nothing to propagate. */
        case DQ_LAYER_RELU:
            if (net->relu_folded[i]) break; /* done by the maxpool after it */
            if (din && net->set_din[i]) st = dq_relu_backward_set(din, dout, &net->out[i], err);
            else if (din) st = dq_relu_backward(din, dout, &net->out[i], err);
            break;
        case DQ_LAYER_MAXPOOL2D:
            if (net->pool_in_conv[i]) break; /* FUSION: done by the conv before it */
            if (net->pool_relu[i]) /* FUSION: dense, tested on the pool output */
                st = dq_maxpool2d_relu_backward_pooled(&net->dout[mf->layers[l->from].from],
                                                       dout, net->argmax[i], &net->out[i],
                                                       l->kernel, l->stride, err);
            else if (din && net->set_din[i])
                st = dq_maxpool2d_backward_set(din, dout, net->argmax[i], err);
            else if (din)
                st = dq_maxpool2d_backward(din, dout, net->argmax[i], err);
            break;
        case DQ_LAYER_AVGPOOL1D:
            if (din) st = dq_avgpool1d_backward(din, dout, l->kernel, err);
            break;
        case DQ_LAYER_DROPOUT:
            if (din) st = dq_dropout_backward(din, dout, net->mask[i], l->p, true, err);
            break;
        case DQ_LAYER_FLATTEN: break; /* its gradient aliases its input's */
        default: st = dq_fail(err, DQ_ERR_ARG, "unknown layer type"); break;
        }
        if (st != DQ_OK)
            return dq_fail_prefix(err, st, "net %s: backward of layer %s (line %d): ", mf->name,
                                  l->name, l->line);
    }
    return DQ_OK;
}

void dq_net_zero_grad(dq_net_t *net)
{
    memset(net->grads, 0, (size_t)net->n_floats * sizeof(float));
    if (!net->arena) return;
    /* Activation gradients over the whole planned batch, except those their
     * only writer overwrites (s_plan_writers). */
    for (int i = 0; i < net->mf.n_layers; i++)
        if (net->zero[i])
            memset(net->dout[i].data, 0,
                   (size_t)(net->max_batch * dq_mf_out_numel(&net->mf.layers[i])) *
                       sizeof(float));
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
    int o = dq_mf_find_output(&net->mf, name);
    return o < 0 ? NULL : &net->out[net->mf.outputs[o].layer];
}

dq_tensor *dq_net_output_grad(dq_net_t *net, const char *name)
{
    int o = dq_mf_find_output(&net->mf, name);
    return o < 0 ? NULL : &net->dout[net->mf.outputs[o].layer];
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

float *dq_net_params(dq_net_t *net)
{
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
    return i >= 0 && i < net->n_params ? &net->param[i] : NULL;
}

dq_tensor *dq_net_param_grad(dq_net_t *net, int i)
{
    return i >= 0 && i < net->n_params ? &net->grad[i] : NULL;
}

double dq_net_flops_per_sample(const dq_net_t *net)
{
    double f = 0.0;
    for (int i = 0; i < net->mf.n_layers; i++) {
        const dq_mf_layer *l = &net->mf.layers[i];
        if (l->type == DQ_LAYER_CONV2D)
            f += 2.0 * (double)dq_mf_out_numel(l) * (double)l->in * l->kernel * l->kernel;
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
