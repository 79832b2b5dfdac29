/* net_cuda.c - net_cuda.h over the one executor: a dq_net_cuda_t is a
 * second dq_net_t built from the CPU net's model file and moved to the CUDA
 * backend (dq_net_set_device), so the layer walk is net_exec.c's and the
 * ops are the CUDA table's (tensor/backend_cuda_ops.c). This file only
 * keeps the executor-shaped API that the programs, tests/test_cuda.c and
 * bench/bench_gpu.c use; it includes nothing from kernels/ and builds the
 * same with and without CUDA (without, dq_net_cuda_new is the backend's
 * one-line DQ_ERR_UNSUPPORTED).
 *
 * Batch invariance (an inference executor): cuBLAS and cuDNN pick their
 * kernels (tiling, split-K, algorithm) by the problem's shape, so one call
 * over a merged batch of N samples would give a sample bits that depend on
 * N. The eval forward therefore never runs at the caller's N: the device
 * net is planned for exactly one chunk of samples (DQ_NET_CUDA_EVAL_CHUNK
 * unless dq_net_cuda_new_chunked says otherwise; so its cuDNN
 * algorithms are chosen for that one shape, whatever max_batch is), and a
 * batch runs as ceil(N / chunk) forwards of that shape, the last one
 * zero-padded in a pinned buffer; the outputs are gathered into host
 * buffers of max_batch samples. Every sample thus sees the same kernels
 * at every N, in every executor and process on the same card and
 * libraries; what remains assumed is that a kernel's result for a row does
 * not depend on the row's position within a fixed shape, which
 * tests/test_cuda.c checks bit for bit. A training executor runs at the
 * caller's N (batch statistics make training batch-dependent anyway).
 */
#include "model/net_cuda.h"

#include <stdlib.h>
#include <string.h>

#include "model/model_file.h"

struct dq_net_cuda {
    dq_net_t *net;  /* on the device: planned for max_batch (train) or the chunk (eval) */
    float *h_in;    /* pinned, max_batch inputs */
    float *h_pad;   /* eval: pinned, one chunk; the padded last chunk */
    int64_t max_batch;
    int64_t chunk; /* eval: samples per device forward */
    bool train;
    /* eval: the gathered outputs, max_batch samples each; out[o].shape[0]
     * is the last forward's N; fetched[o] whether o came down */
    float *h_out[DQ_MF_MAX_OUTPUTS];
    dq_tensor out[DQ_MF_MAX_OUTPUTS];
    bool fetched[DQ_MF_MAX_OUTPUTS];
};

static dq_status s_need_train(const dq_net_cuda_t *g, const char *what, dq_err *err)
{
    if (!g->train)
        return dq_fail(err, DQ_ERR_ARG, "net %s on cuda: %s needs an executor made for "
                       "training", dq_net_name(g->net), what);
    return DQ_OK;
}

/* Parameters and buffers (batch-norm running statistics) of src into dst,
 * two nets of the same model file. */
static void s_copy_weights(dq_net_t *dst, dq_net_t *src)
{
    memcpy(dq_net_params(dst), dq_net_params(src), (size_t)dq_net_param_floats(src) * sizeof(float));
    for (int k = 0; k < dq_net_buffer_count(src); k++) {
        dq_tensor *b = dq_net_buffer(src, k);
        if (b)
            memcpy(dq_net_buffer(dst, k)->data, b->data,
                   (size_t)dq_tensor_numel(b) * sizeof(float));
        else
            *dq_net_buffer_i64(dst, k) = *dq_net_buffer_i64(src, k);
    }
}

/* Pinned host memory (zeroed) of the executor's backend. */
static dq_status s_host(dq_backend_t *bk, float **out, size_t bytes, dq_err *err)
{
    void *p = NULL;
    dq_status st = bk->ops->host_alloc(bk, &p, bytes, err);
    *out = p;
    return st;
}

/* Eval: the host buffer of output o for max_batch samples and its view
 * [max_batch, per-sample shape], named like the net's. */
static dq_status s_plan_output(dq_net_cuda_t *g, dq_net_t *net, int o, dq_err *err)
{
    const char *name = dq_net_output_name(net, o);
    int64_t shape[DQ_MAX_DIMS];
    int rank = dq_net_output_shape(net, name, shape + 1);
    if (rank < 1 || rank + 1 > DQ_MAX_DIMS)
        return dq_fail(err, DQ_ERR_SHAPE, "net %s on cuda: output %s has rank %d",
                       dq_net_name(net), name, rank);
    shape[0] = g->max_batch;
    int64_t per = 1;
    for (int i = 1; i <= rank; i++) per *= shape[i];
    g->h_out[o] = malloc((size_t)(g->max_batch * per) * sizeof(float));
    if (!g->h_out[o]) return dq_fail(err, DQ_ERR_NOMEM, "net on cuda: out of memory");
    g->out[o] = dq_tensor_view(g->h_out[o], rank + 1, shape);
    g->out[o].name = name;
    return DQ_OK;
}

dq_status dq_net_cuda_new(dq_net_cuda_t **out, dq_net_t *net, const char *model_path,
                          dq_device dev, int64_t max_batch, bool train, uint64_t seed,
                          dq_err *err)
{
    return dq_net_cuda_new_chunked(out, net, model_path, dev, max_batch, train, seed,
                                   DQ_NET_CUDA_EVAL_CHUNK, err);
}

dq_status dq_net_cuda_new_chunked(dq_net_cuda_t **out, dq_net_t *net, const char *model_path,
                                  dq_device dev, int64_t max_batch, bool train, uint64_t seed,
                                  int64_t eval_chunk, dq_err *err)
{
    *out = NULL;
    if (!train && (eval_chunk < 1 || eval_chunk > 65536))
        return dq_fail(err, DQ_ERR_ARG, "net %s on cuda:%d: eval chunk %lld must be in "
                       "1..65536", dq_net_name(net), dev.index, (long long)eval_chunk);
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
    g->chunk = eval_chunk;
    g->train = train;
    dq_status st = dq_net_from_model_file(&g->net, dq_net_model_file(net), err);
    if (st == DQ_OK) {
        s_copy_weights(g->net, net);
        st = dq_net_set_device(g->net, dev, train, seed, err);
    }
    /* uploads the parameters and buffers (batch-norm running statistics) */
    if (st == DQ_OK) st = dq_net_plan(g->net, train ? max_batch : g->chunk, err);
    const dq_net_input *ip = dq_net_input_spec(net);
    const size_t per = (size_t)(ip->channels * ip->height * ip->width) * sizeof(float);
    dq_backend_t *bk = (dq_backend_t *)dq_net_backend(g->net);
    if (st == DQ_OK) st = s_host(bk, &g->h_in, (size_t)max_batch * per, err);
    if (st == DQ_OK && !train) st = s_host(bk, &g->h_pad, (size_t)g->chunk * per, err);
    for (int o = 0; st == DQ_OK && !train && o < dq_net_output_count(net); o++)
        st = s_plan_output(g, g->net, o, err);
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
    if (g->net) {
        dq_backend_t *bk = (dq_backend_t *)dq_net_backend(g->net);
        if (g->h_in) bk->ops->host_free(bk, g->h_in);
        if (g->h_pad) bk->ops->host_free(bk, g->h_pad);
    }
    for (int o = 0; o < DQ_MF_MAX_OUTPUTS; o++) free(g->h_out[o]);
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

/* Eval: rows [off, off + take) of the chunk's fetched outputs into the
 * gathered buffers. */
static void s_gather(dq_net_cuda_t *g, int64_t off, int64_t take)
{
    for (int o = 0; o < dq_net_output_count(g->net); o++) {
        const dq_tensor *t = dq_net_output(g->net, dq_net_output_name(g->net, o));
        g->fetched[o] = t != NULL;
        if (!t) continue;
        int64_t per = dq_tensor_inner(t, 1);
        memcpy(g->h_out[o] + off * per, t->data, (size_t)(take * per) * sizeof(float));
    }
}

/* Eval: the batch as chunk-sized forwards (see the top of the file). */
static dq_status s_forward_chunked(dq_net_cuda_t *g, const dq_tensor *input,
                                   const char *const *want, int n_want, dq_err *err)
{
    const int64_t C = g->chunk;
    const dq_net_input *ip = dq_net_input_spec(g->net);
    for (int o = 0; o < DQ_MF_MAX_OUTPUTS; o++) g->fetched[o] = false;
    if (!input || !input->data || input->ndim != 4 || input->shape[0] < 1 ||
        input->shape[0] > g->max_batch || input->shape[1] != ip->channels ||
        input->shape[2] != ip->height || input->shape[3] != ip->width) {
        char got[96] = "none";
        if (input) dq_tensor_shape_str(input, got, sizeof got);
        return dq_fail(err, input && input->data ? DQ_ERR_SHAPE : DQ_ERR_ARG,
                       "net %s on cuda: input has shape %s, expected [N, %d, %d, %d] with "
                       "1 <= N <= %lld (the executor's batch)", dq_net_name(g->net), got,
                       ip->channels, ip->height, ip->width, (long long)g->max_batch);
    }
    const int64_t N = input->shape[0], per = dq_tensor_inner(input, 1);
    for (int64_t off = 0; off < N; off += C) {
        int64_t take = N - off < C ? N - off : C;
        const float *src = input->data + off * per;
        if (take < C) { /* the last chunk: zero rows after the batch */
            memcpy(g->h_pad, src, (size_t)(take * per) * sizeof(float));
            memset(g->h_pad + take * per, 0, (size_t)((C - take) * per) * sizeof(float));
            src = g->h_pad;
        }
        dq_tensor x = *input;
        x.data = (float *)src;
        x.shape[0] = C;
        dq_status st = dq_net_forward_outputs(g->net, &x, false, NULL, want, n_want, err);
        if (st != DQ_OK) { /* no half-gathered outputs */
            for (int o = 0; o < DQ_MF_MAX_OUTPUTS; o++) g->fetched[o] = false;
            return st;
        }
        s_gather(g, off, take);
    }
    for (int o = 0; o < dq_net_output_count(g->net); o++) g->out[o].shape[0] = N;
    return DQ_OK;
}

dq_status dq_net_cuda_forward(dq_net_cuda_t *g, const dq_tensor *input, bool train,
                              const char *const *want, int n_want, dq_err *err)
{
    if (!g->train) {
        if (train) return s_need_train(g, "a training forward", err);
        return s_forward_chunked(g, input, want, n_want, err);
    }
    return dq_net_forward_outputs(g->net, input, train, NULL, want, n_want, err);
}

const dq_tensor *dq_net_cuda_output(const dq_net_cuda_t *g, const char *name)
{
    if (g->train) return dq_net_output(g->net, name);
    for (int o = 0; name && o < dq_net_output_count(g->net); o++)
        if (strcmp(dq_net_output_name(g->net, o), name) == 0)
            return g->fetched[o] ? &g->out[o] : NULL;
    return NULL;
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
    if (dq_net_param_floats(net) != dq_net_param_floats(g->net) ||
        dq_net_buffer_count(net) != dq_net_buffer_count(g->net))
        return dq_fail(err, DQ_ERR_ARG, "net %s on cuda: parameter count differs",
                       dq_net_name(g->net));
    s_copy_weights(g->net, net);
    return dq_net_upload(g->net, NULL, NULL, err);
}

dq_status dq_net_cuda_download_params(dq_net_cuda_t *g, dq_net_t *net, dq_err *err)
{
    if (dq_net_param_floats(net) != dq_net_param_floats(g->net) ||
        dq_net_buffer_count(net) != dq_net_buffer_count(g->net))
        return dq_fail(err, DQ_ERR_ARG, "net %s on cuda: parameter count differs",
                       dq_net_name(g->net));
    DQ_TRY(dq_net_download(g->net, false, NULL, NULL, err));
    s_copy_weights(net, g->net);
    return DQ_OK;
}

dq_status dq_net_cuda_download_grads(dq_net_cuda_t *g, dq_net_t *net, dq_err *err)
{
    DQ_TRY(s_need_train(g, "download_grads", err));
    if (dq_net_param_floats(net) != dq_net_param_floats(g->net) ||
        dq_net_buffer_count(net) != dq_net_buffer_count(g->net))
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
