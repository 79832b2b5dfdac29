/* net_cuda.c - net_cuda.h over the one executor: a dq_net_cuda_t is a
 * second dq_net_t built from the CPU net's model file and moved to the CUDA
 * backend (dq_net_set_device), so the layer walk is net_exec.c's and the
 * ops are the CUDA table's (tensor/backend_cuda_ops.c). This file only
 * keeps the executor-shaped API that the programs, tests/test_cuda.c and
 * bench/bench_gpu.c use; it includes nothing from kernels/ and builds the
 * same with and without CUDA (without, dq_net_cuda_new is the backend's
 * one-line DQ_ERR_UNSUPPORTED).
 */
#include "model/net_cuda.h"

#include <stdlib.h>
#include <string.h>

#include "model/model_file.h"

struct dq_net_cuda {
    dq_net_t *net;  /* on the device */
    float *h_in;    /* pinned, max_batch inputs */
    int64_t max_batch;
    bool train;
};

static dq_status s_need_train(const dq_net_cuda_t *g, const char *what, dq_err *err)
{
    if (!g->train)
        return dq_fail(err, DQ_ERR_ARG, "net %s on cuda: %s needs an executor made for "
                       "training", dq_net_name(g->net), what);
    return DQ_OK;
}

dq_status dq_net_cuda_new(dq_net_cuda_t **out, dq_net_t *net, const char *model_path,
                          dq_device dev, int64_t max_batch, bool train, uint64_t seed,
                          dq_err *err)
{
    *out = NULL;
    if (dev.kind != DQ_DEVICE_CUDA)
        return dq_fail(err, DQ_ERR_ARG, "net on cuda: device is not a CUDA device");
    if (max_batch < 1)
        return dq_fail(err, DQ_ERR_ARG, "net %s on cuda:%d: batch size %lld must be >= 1",
                       dq_net_name(net), dev.index, (long long)max_batch);
    if (model_path) {
        dq_model_file *mf = malloc(sizeof *mf);
        if (!mf) return dq_fail(err, DQ_ERR_NOMEM, "net on cuda: out of memory");
        dq_status st = dq_mf_load(mf, model_path, err);
        if (st == DQ_OK && strcmp(mf->name, dq_net_name(net)) != 0)
            st = dq_fail(err, DQ_ERR_ARG, "%s describes model %s, the net is %s", model_path,
                         mf->name, dq_net_name(net));
        free(mf);
        DQ_TRY(st);
    }
    dq_net_cuda_t *g = calloc(1, sizeof *g);
    if (!g) return dq_fail(err, DQ_ERR_NOMEM, "net on cuda: out of memory");
    g->max_batch = max_batch;
    g->train = train;
    dq_status st = dq_net_from_model_file(&g->net, dq_net_model_file(net), err);
    if (st == DQ_OK) {
        memcpy(dq_net_params(g->net), dq_net_params(net),
               (size_t)dq_net_param_floats(net) * sizeof(float));
        st = dq_net_set_device(g->net, dev, train, seed, err);
    }
    if (st == DQ_OK) st = dq_net_plan(g->net, max_batch, err); /* uploads the parameters */
    if (st == DQ_OK) {
        const dq_net_input *ip = dq_net_input_spec(net);
        size_t bytes = (size_t)(max_batch * ip->channels * ip->height * ip->width) * sizeof(float);
        dq_backend_t *bk = (dq_backend_t *)dq_net_backend(g->net);
        void *p = NULL;
        st = bk->ops->host_alloc(bk, &p, bytes, err);
        g->h_in = p;
    }
    if (st != DQ_OK) {
        dq_net_cuda_destroy(&g);
        return st;
    }
    *out = g;
    return DQ_OK;
}

void dq_net_cuda_destroy(dq_net_cuda_t **pg)
{
    if (!pg || !*pg) return;
    dq_net_cuda_t *g = *pg;
    if (g->h_in) {
        dq_backend_t *bk = (dq_backend_t *)dq_net_backend(g->net);
        bk->ops->host_free(bk, g->h_in);
    }
    dq_net_destroy(&g->net);
    free(g);
    *pg = NULL;
}

int64_t dq_net_cuda_max_batch(const dq_net_cuda_t *g)
{
    return g->max_batch;
}

float *dq_net_cuda_input_buffer(dq_net_cuda_t *g)
{
    return g->h_in;
}

dq_status dq_net_cuda_forward(dq_net_cuda_t *g, const dq_tensor *input, bool train,
                              const char *const *want, int n_want, dq_err *err)
{
    return dq_net_forward_outputs(g->net, input, train, NULL, want, n_want, err);
}

const dq_tensor *dq_net_cuda_output(const dq_net_cuda_t *g, const char *name)
{
    return dq_net_output(g->net, name);
}

dq_status dq_net_cuda_zero_grad(dq_net_cuda_t *g, dq_err *err)
{
    DQ_TRY(s_need_train(g, "zero_grad", err));
    dq_net_zero_grad(g->net);
    return DQ_OK;
}

dq_tensor *dq_net_cuda_output_grad(dq_net_cuda_t *g, const char *name)
{
    return dq_net_output_grad(g->net, name);
}

dq_status dq_net_cuda_backward(dq_net_cuda_t *g, dq_err *err)
{
    return dq_net_backward(g->net, err);
}

dq_status dq_net_cuda_adam_step(dq_net_cuda_t *g, int64_t step, const dq_adam_config *cfg,
                                dq_err *err)
{
    DQ_TRY(s_need_train(g, "adam_step", err));
    return dq_net_adam_step(g->net, NULL, NULL, step, cfg, err);
}

dq_status dq_net_cuda_upload_params(dq_net_cuda_t *g, dq_net_t *net, dq_err *err)
{
    if (dq_net_param_floats(net) != dq_net_param_floats(g->net))
        return dq_fail(err, DQ_ERR_ARG, "net %s on cuda: parameter count differs",
                       dq_net_name(g->net));
    memcpy(dq_net_params(g->net), dq_net_params(net),
           (size_t)dq_net_param_floats(net) * sizeof(float));
    return dq_net_upload(g->net, NULL, NULL, err);
}

dq_status dq_net_cuda_download_params(dq_net_cuda_t *g, dq_net_t *net, dq_err *err)
{
    if (dq_net_param_floats(net) != dq_net_param_floats(g->net))
        return dq_fail(err, DQ_ERR_ARG, "net %s on cuda: parameter count differs",
                       dq_net_name(g->net));
    DQ_TRY(dq_net_download(g->net, false, NULL, NULL, err));
    memcpy(dq_net_params(net), dq_net_params(g->net),
           (size_t)dq_net_param_floats(net) * sizeof(float));
    return DQ_OK;
}

dq_status dq_net_cuda_download_grads(dq_net_cuda_t *g, dq_net_t *net, dq_err *err)
{
    DQ_TRY(s_need_train(g, "download_grads", err));
    if (dq_net_param_floats(net) != dq_net_param_floats(g->net))
        return dq_fail(err, DQ_ERR_ARG, "net %s on cuda: parameter count differs",
                       dq_net_name(g->net));
    DQ_TRY(dq_net_download(g->net, true, NULL, NULL, err));
    memcpy(dq_net_grads(net), dq_net_grads(g->net),
           (size_t)dq_net_param_floats(net) * sizeof(float));
    return DQ_OK;
}

dq_status dq_net_cuda_moments(dq_net_cuda_t *g, float *m, float *v, bool upload, dq_err *err)
{
    DQ_TRY(s_need_train(g, "moments", err));
    /* dq_net_upload sends the parameters too: bring the device's first. */
    if (upload) {
        DQ_TRY(dq_net_download(g->net, false, NULL, NULL, err));
        return dq_net_upload(g->net, m, v, err);
    }
    return dq_net_download(g->net, false, m, v, err);
}
