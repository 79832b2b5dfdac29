/* net_bn.c - a net's batch-norm state: the buffers (running_mean,
 * running_var F32 and num_batches_tracked I64 per batchnorm2d layer, saved
 * beside the parameters under their state_dict names but not trained) and
 * the eval-mode folding of each batch norm into the conv before it.
 *
 * Folding writes into a separate copy of the conv's weights and bias
 * (fold_w/fold_b), never into the trained parameters, so training and
 * checkpoints see the model as PyTorch does; the copy is recomputed lazily,
 * before the first eval forward after anything that may have changed the
 * weights or statistics (fold_stale: net.h lists what sets it). Only the
 * CPU backend folds (a device runs its own inference batch norm).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/net_int.h"
#include "tensor/ops.h"

/* Adds one named buffer: F32 of n floats at *off in bufs, or (i64) an I64
 * scalar at nbt[*nb]. */
static int s_add_buf(dq_net_t *net, const char *layer, const char *suffix, int64_t n,
                     bool i64, int64_t *off, int *nb)
{
    int k = net->n_bufs++;
    snprintf(net->bname[k], DQ_NET_PNAME_MAX, "%s.%s", layer, suffix);
    if (i64) {
        net->buf[k] = dq_tensor_view(NULL, 0, NULL);
        net->buf_i64[k] = &net->nbt[(*nb)++];
    } else {
        net->buf[k] = dq_tensor_view(net->bufs + *off, 1, &n);
        net->buf_i64[k] = NULL;
        *off += n;
    }
    net->buf[k].name = net->bname[k];
    return k;
}

/* Running stats as PyTorch starts them: mean 0, var 1, no batches. */
void dq_net_reset_bufs(dq_net_t *net)
{
    for (int i = 0; i < net->mf.n_layers; i++) {
        if (net->mf.layers[i].type != DQ_LAYER_BATCHNORM2D) continue;
        dq_tensor *m = &net->buf[net->rm_idx[i]], *v = &net->buf[net->rv_idx[i]];
        for (int64_t c = 0; c < dq_tensor_numel(m); c++) m->data[c] = 0.0f, v->data[c] = 1.0f;
        *net->buf_i64[net->nbt_idx[i]] = 0;
    }
}

dq_status dq_net_setup_bufs(dq_net_t *net, dq_err *err)
{
    const dq_model_file *mf = &net->mf;
    int n_bn = 0;
    int64_t fold_floats = 0;
    int readers[DQ_MF_MAX_LAYERS] = {0};
    for (int k = 0; k < mf->n_outputs; k++) readers[mf->outputs[k].layer]++;
    for (int j = 0; j < mf->n_layers; j++) {
        const dq_mf_layer *l = &mf->layers[j];
        if (l->from != DQ_MF_INPUT) readers[l->from]++;
        if (l->type == DQ_LAYER_ADD && l->from2 != DQ_MF_INPUT) readers[l->from2]++;
        if (l->type == DQ_LAYER_BATCHNORM2D) n_bn++, net->n_buf_floats += 2 * l->in;
    }
    for (int j = 0; j < mf->n_layers; j++) net->fold_bn[j] = net->folded_into[j] = -1;
    for (int j = 0; j < mf->n_layers; j++) {
        const dq_mf_layer *l = &mf->layers[j];
        if (l->type != DQ_LAYER_BATCHNORM2D || l->from == DQ_MF_INPUT) continue;
        const dq_mf_layer *c = &mf->layers[l->from];
        if (c->type != DQ_LAYER_CONV2D || readers[l->from] != 1) continue;
        net->fold_bn[l->from] = j;
        net->folded_into[j] = l->from;
        fold_floats += dq_tensor_numel(&net->param[net->w_idx[l->from]]) + c->out;
    }
    net->bufs = dq_net_alloc_floats(net->n_buf_floats);
    net->nbt = calloc((size_t)(n_bn > 0 ? n_bn : 1), sizeof(int64_t));
    net->fold_mem = dq_net_alloc_floats(fold_floats);
    if (!net->bufs || !net->nbt || !net->fold_mem)
        return dq_fail(err, DQ_ERR_NOMEM, "%s: cannot allocate batch-norm buffers", mf->name);
    int64_t off = 0, foff = 0;
    int nb = 0;
    for (int i = 0; i < mf->n_layers; i++) {
        const dq_mf_layer *l = &mf->layers[i];
        net->rm_idx[i] = net->rv_idx[i] = net->nbt_idx[i] = -1;
        if (l->type == DQ_LAYER_BATCHNORM2D) {
            net->rm_idx[i] = s_add_buf(net, l->name, "running_mean", l->in, false, &off, &nb);
            net->rv_idx[i] = s_add_buf(net, l->name, "running_var", l->in, false, &off, &nb);
            net->nbt_idx[i] = s_add_buf(net, l->name, "num_batches_tracked", 0, true, &off, &nb);
        }
        if (net->fold_bn[i] >= 0) {
            const dq_tensor *w = &net->param[net->w_idx[i]];
            net->fold_w[i] = dq_tensor_view(net->fold_mem + foff, w->ndim, w->shape);
            foff += dq_tensor_numel(w);
            net->fold_b[i] = dq_tensor_view(net->fold_mem + foff, 1, &l->out);
            foff += l->out;
        }
    }
    dq_net_reset_bufs(net);
    net->fold_on = true;
    net->fold_stale = true;
    return DQ_OK;
}

/* Recomputes the folded conv weights of every conv -> batchnorm2d pair
 * from the current parameters and running statistics (net_int.h). */
void dq_net_refold(dq_net_t *net)
{
    for (int i = 0; i < net->mf.n_layers; i++) {
        int j = net->fold_bn[i];
        if (j < 0) continue;
        const dq_mf_layer *c = &net->mf.layers[i], *bn = &net->mf.layers[j];
        const dq_tensor *w = &net->param[net->w_idx[i]];
        memcpy(net->fold_w[i].data, w->data, (size_t)dq_tensor_numel(w) * sizeof(float));
        if (net->b_idx[i] >= 0)
            memcpy(net->fold_b[i].data, net->param[net->b_idx[i]].data,
                   (size_t)c->out * sizeof(float));
        else
            memset(net->fold_b[i].data, 0, (size_t)c->out * sizeof(float));
        dq_batchnorm2d_fold(net->fold_w[i].data, net->fold_b[i].data, c->out,
                            dq_tensor_numel(w) / c->out, net->param[net->w_idx[j]].data,
                            net->param[net->b_idx[j]].data, net->buf[net->rm_idx[j]].data,
                            net->buf[net->rv_idx[j]].data, bn->eps);
    }
    net->fold_stale = false;
}

void dq_net_params_changed(dq_net_t *net)
{
    net->fold_stale = true;
}

void dq_net_set_bn_fold(dq_net_t *net, bool on)
{
    net->fold_on = on;
    net->fold_stale = true;
}

int dq_net_buffer_count(const dq_net_t *net)
{
    return net->n_bufs;
}

const char *dq_net_buffer_name(const dq_net_t *net, int i)
{
    return i >= 0 && i < net->n_bufs ? net->bname[i] : NULL;
}

dq_tensor *dq_net_buffer(dq_net_t *net, int i)
{
    net->fold_stale = true;
    return i >= 0 && i < net->n_bufs && net->buf[i].data ? &net->buf[i] : NULL;
}

int64_t *dq_net_buffer_i64(dq_net_t *net, int i)
{
    return i >= 0 && i < net->n_bufs ? net->buf_i64[i] : NULL;
}
