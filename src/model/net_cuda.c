/* net_cuda.c - net.c's layer loop on one CUDA device (see net_cuda.h).
 *
 * Memory mirrors net.c: parameters, gradients and Adam moments are one
 * device allocation carved in the CPU's flat layout (so a parameter upload
 * is one copy and the Adam step one launch); activations are one device
 * arena laid out as net.c's (input copy, every layer's output, then every
 * activation gradient contiguously so zero_grad is one memset, dropout
 * masks, maxpool argmax); flatten is a view there too. The cuDNN workspace
 * is sized once from the algorithms chosen for every convolution at
 * max_batch. Host side, pinned buffers hold the input batch, the fetched
 * outputs and the output gradients; all copies are async on the one stream
 * and a forward synchronises once, after the last output is queued.
 *
 * Conv and linear go to cuDNN / cuBLAS (kernels/cuda_glue.h), the other
 * layers to our kernels (kernels/kernels.h); every call is checked and a
 * failure names the layer as net.c does.
 */
#include "model/net_cuda.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda_glue.h"
#include "kernels/kernels.h"
#include "model/model_file.h"

#define S_ALIGN 256
#define S_WS_CAP ((size_t)1 << 30) /* cuDNN workspace limit: 1 GiB or 1/4 of free */

struct dq_net_cuda {
    dq_model_file mf;
    dq_device dev;
    int64_t max_batch;
    bool train;
    uint64_t seed, dropout_ctr;
    cudaStream_t stream;
    cudnnHandle_t cudnn;
    cublasHandle_t cublas;

    int64_t n_floats;
    float *d_params, *d_grads, *d_m, *d_v; /* one allocation, d_params first */
    int64_t w_off[DQ_MF_MAX_LAYERS], b_off[DQ_MF_MAX_LAYERS]; /* -1: none */
    dq_cuda_conv conv[DQ_MF_MAX_LAYERS];
    bool conv_up[DQ_MF_MAX_LAYERS];

    unsigned char *d_arena;
    float *d_in, *d_out[DQ_MF_MAX_LAYERS], *d_dout[DQ_MF_MAX_LAYERS], *d_mask[DQ_MF_MAX_LAYERS];
    int32_t *d_argmax[DQ_MF_MAX_LAYERS];
    unsigned char *d_grad_begin;
    size_t grad_bytes;
    void *d_ws;
    size_t ws_bytes;

    float *h_in;                             /* pinned, max_batch inputs */
    float *h_out[DQ_MF_MAX_LAYERS];          /* pinned, per output layer */
    float *h_dout[DQ_MF_MAX_LAYERS];         /* pinned, per output layer (train) */
    dq_tensor out_view[DQ_MF_MAX_OUTPUTS], grad_view[DQ_MF_MAX_OUTPUTS];
    bool fetched[DQ_MF_MAX_OUTPUTS];

    int64_t n; /* batch of the last forward */
    bool fwd_done, fwd_train;
};

/* ---- setup --------------------------------------------------------------------------- */

static dq_status s_use(const dq_net_cuda_t *g, dq_err *err)
{
    DQ_CUDA_TRY(cudaSetDevice(g->dev.index), err);
    return DQ_OK;
}

/* Parameter offsets in net.c's order (per layer: weight, then bias), checked
 * against the net's own names and total so the two layouts cannot drift. */
static dq_status s_param_layout(dq_net_cuda_t *g, dq_net_t *net, dq_err *err)
{
    int64_t off = 0;
    int p = 0;
    for (int i = 0; i < g->mf.n_layers; i++) {
        const dq_mf_layer *l = &g->mf.layers[i];
        int64_t shape[4];
        int r = dq_mf_weight_shape(l, shape);
        g->w_off[i] = g->b_off[i] = -1;
        if (r == 0) continue;
        char want[DQ_MF_NAME_MAX + 8];
        for (int k = 0; k < (l->bias ? 2 : 1); k++) {
            snprintf(want, sizeof want, "%s.%s", l->name, k ? "bias" : "weight");
            const char *have = dq_net_param_name(net, p);
            if (!have || strcmp(have, want) != 0)
                return dq_fail(err, DQ_ERR_ARG, "net %s: parameter %d is '%s', the model file "
                               "says '%s'", g->mf.name, p, have ? have : "(none)", want);
            int64_t numel = dq_tensor_numel(dq_net_param(net, p));
            if (k == 0) g->w_off[i] = off;
            else g->b_off[i] = off;
            off += numel;
            p++;
        }
    }
    if (off != dq_net_param_floats(net) || p != dq_net_param_count(net))
        return dq_fail(err, DQ_ERR_ARG, "net %s: %lld parameter floats in the net, %lld in the "
                       "model file", g->mf.name, (long long)dq_net_param_floats(net),
                       (long long)off);
    g->n_floats = off;
    return DQ_OK;
}

static void *s_carve(unsigned char *base, size_t *off, size_t bytes)
{
    size_t at = *off;
    *off += (bytes + S_ALIGN - 1) / S_ALIGN * S_ALIGN;
    return base ? base + at : NULL;
}

/* net.c's arena layout on the device; returns its size (sizing pass: base NULL). */
static size_t s_layout(dq_net_cuda_t *g, unsigned char *base)
{
    const dq_model_file *mf = &g->mf;
    const int64_t N = g->max_batch;
    const size_t fsz = sizeof(float);
    size_t off = 0;
    g->d_in = s_carve(base, &off, (size_t)(N * mf->input.channels * mf->input.height *
                                           mf->input.width) * fsz);
    for (int i = 0; i < mf->n_layers; i++) {
        const dq_mf_layer *l = &mf->layers[i];
        if (l->type == DQ_LAYER_FLATTEN)
            g->d_out[i] = l->from == DQ_MF_INPUT ? g->d_in : g->d_out[l->from];
        else
            g->d_out[i] = s_carve(base, &off, (size_t)(N * dq_mf_out_numel(l)) * fsz);
    }
    size_t grad_at = off;
    for (int i = 0; g->train && i < mf->n_layers; i++) {
        const dq_mf_layer *l = &mf->layers[i];
        if (l->type == DQ_LAYER_FLATTEN && l->from != DQ_MF_INPUT)
            g->d_dout[i] = g->d_dout[l->from];
        else
            g->d_dout[i] = s_carve(base, &off, (size_t)(N * dq_mf_out_numel(l)) * fsz);
    }
    g->d_grad_begin = base ? base + grad_at : NULL;
    g->grad_bytes = off - grad_at;
    for (int i = 0; i < mf->n_layers; i++) {
        const dq_mf_layer *l = &mf->layers[i];
        size_t numel = (size_t)(N * dq_mf_out_numel(l));
        g->d_mask[i] = NULL;
        g->d_argmax[i] = NULL;
        if (l->type == DQ_LAYER_DROPOUT && g->train) g->d_mask[i] = s_carve(base, &off, numel * fsz);
        if (l->type == DQ_LAYER_MAXPOOL2D)
            g->d_argmax[i] = s_carve(base, &off, numel * sizeof(int32_t));
    }
    return off;
}

static dq_status s_plan_convs(dq_net_cuda_t *g, dq_err *err)
{
    size_t free_b = 0, total_b = 0;
    DQ_CUDA_TRY(cudaMemGetInfo(&free_b, &total_b), err);
    size_t limit = free_b / 4 < S_WS_CAP ? free_b / 4 : S_WS_CAP;
    for (int i = 0; i < g->mf.n_layers; i++) {
        const dq_mf_layer *l = &g->mf.layers[i];
        if (l->type != DQ_LAYER_CONV2D) continue;
        dq_status st = dq_cuda_conv_init(&g->conv[i], g->cudnn, g->max_batch, l->in_shape[0],
                                         l->in_shape[1], l->in_shape[2], l->out, l->kernel,
                                         l->stride, l->padding, g->train, limit, err);
        if (st != DQ_OK)
            return dq_fail_prefix(err, st, "net %s: layer %s (line %d): ", g->mf.name, l->name,
                                  l->line);
        g->conv_up[i] = true;
        if (g->conv[i].ws_bytes > g->ws_bytes) g->ws_bytes = g->conv[i].ws_bytes;
    }
    if (g->ws_bytes > 0) DQ_CUDA_TRY(cudaMalloc(&g->d_ws, g->ws_bytes), err);
    return DQ_OK;
}

static dq_status s_plan_host(dq_net_cuda_t *g, dq_err *err)
{
    const dq_model_file *mf = &g->mf;
    const dq_net_input *ip = &mf->input;
    size_t in_floats = (size_t)(g->max_batch * ip->channels * ip->height * ip->width);
    DQ_CUDA_TRY(cudaMallocHost((void **)&g->h_in, in_floats * sizeof(float)), err);
    for (int o = 0; o < mf->n_outputs; o++) {
        int li = mf->outputs[o].layer;
        const dq_mf_layer *l = &mf->layers[li];
        size_t bytes = (size_t)(g->max_batch * dq_mf_out_numel(l)) * sizeof(float);
        if (!g->h_out[li]) DQ_CUDA_TRY(cudaMallocHost((void **)&g->h_out[li], bytes), err);
        if (g->train && !g->h_dout[li]) {
            DQ_CUDA_TRY(cudaMallocHost((void **)&g->h_dout[li], bytes), err);
            memset(g->h_dout[li], 0, bytes);
        }
        int64_t s[DQ_MAX_DIMS] = {g->max_batch};
        for (int d = 0; d < l->out_rank; d++) s[d + 1] = l->out_shape[d];
        g->out_view[o] = dq_tensor_view(g->h_out[li], l->out_rank + 1, s);
        g->out_view[o].name = mf->outputs[o].name;
        if (g->train) {
            g->grad_view[o] = dq_tensor_view(g->h_dout[li], l->out_rank + 1, s);
            g->grad_view[o].name = mf->outputs[o].name;
        }
    }
    return DQ_OK;
}

static dq_status s_setup(dq_net_cuda_t *g, dq_net_t *net, const char *model_path, dq_err *err)
{
    DQ_TRY(dq_mf_load(&g->mf, model_path, err));
    if (strcmp(g->mf.name, dq_net_name(net)) != 0)
        return dq_fail(err, DQ_ERR_ARG, "%s describes model %s, the net is %s", model_path,
                       g->mf.name, dq_net_name(net));
    DQ_TRY(s_param_layout(g, net, err));
    DQ_TRY(s_use(g, err));
    DQ_CUDA_TRY(cudaStreamCreateWithFlags(&g->stream, cudaStreamNonBlocking), err);
    DQ_CUDNN_TRY(cudnnCreate(&g->cudnn), err);
    DQ_CUDNN_TRY(cudnnSetStream(g->cudnn, g->stream), err);
    DQ_CUBLAS_TRY(cublasCreate(&g->cublas), err);
    DQ_CUBLAS_TRY(cublasSetStream(g->cublas, g->stream), err);
    /* Default math never lowers FP32 to TF32 (that takes CUBLAS_TF32_TENSOR_OP_MATH
     * or NVIDIA_TF32_OVERRIDE=1); set explicitly so nothing inherited changes it. */
    DQ_CUBLAS_TRY(cublasSetMathMode(g->cublas, CUBLAS_DEFAULT_MATH), err);

    size_t copies = g->train ? 4 : 1;
    size_t pbytes = (size_t)g->n_floats * sizeof(float);
    DQ_CUDA_TRY(cudaMalloc((void **)&g->d_params, copies * pbytes + S_ALIGN), err);
    if (g->train) {
        g->d_grads = g->d_params + g->n_floats;
        g->d_m = g->d_grads + g->n_floats;
        g->d_v = g->d_m + g->n_floats;
        DQ_CUDA_TRY(cudaMemsetAsync(g->d_grads, 0, 3 * pbytes, g->stream), err);
    }
    size_t bytes = s_layout(g, NULL);
    DQ_CUDA_TRY(cudaMalloc((void **)&g->d_arena, bytes ? bytes : S_ALIGN), err);
    DQ_CUDA_TRY(cudaMemsetAsync(g->d_arena, 0, bytes, g->stream), err);
    s_layout(g, g->d_arena);
    DQ_TRY(s_plan_convs(g, err));
    DQ_TRY(s_plan_host(g, err));
    DQ_TRY(dq_net_cuda_upload_params(g, net, err));
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
    dq_net_cuda_t *g = calloc(1, sizeof *g);
    if (!g) return dq_fail(err, DQ_ERR_NOMEM, "net on cuda: out of memory");
    g->dev = dev;
    g->max_batch = max_batch;
    g->train = train;
    g->seed = seed;
    dq_status st = s_setup(g, net, model_path, err);
    if (st != DQ_OK) {
        dq_fail_prefix(err, st, "cuda:%d: ", dev.index);
        dq_net_cuda_destroy(&g);
        return st;
    }
    *out = g;
    return DQ_OK;
}

/* Frees in reverse; results are ignored (nothing useful follows a failed free). */
void dq_net_cuda_destroy(dq_net_cuda_t **pg)
{
    if (!pg || !*pg) return;
    dq_net_cuda_t *g = *pg;
    (void)cudaSetDevice(g->dev.index);
    if (g->stream) (void)cudaStreamSynchronize(g->stream);
    for (int i = 0; i < DQ_MF_MAX_LAYERS; i++) {
        if (g->conv_up[i]) dq_cuda_conv_destroy(&g->conv[i]);
        if (g->h_out[i]) (void)cudaFreeHost(g->h_out[i]);
        if (g->h_dout[i]) (void)cudaFreeHost(g->h_dout[i]);
    }
    if (g->h_in) (void)cudaFreeHost(g->h_in);
    if (g->d_ws) (void)cudaFree(g->d_ws);
    if (g->d_arena) (void)cudaFree(g->d_arena);
    if (g->d_params) (void)cudaFree(g->d_params);
    if (g->cublas) (void)cublasDestroy(g->cublas);
    if (g->cudnn) (void)cudnnDestroy(g->cudnn);
    if (g->stream) (void)cudaStreamDestroy(g->stream);
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

/* ---- forward ----------------------------------------------------------------------------- */

static const float *s_in(const dq_net_cuda_t *g, int i)
{
    int from = g->mf.layers[i].from;
    return from == DQ_MF_INPUT ? g->d_in : g->d_out[from];
}

static const float *s_w(const dq_net_cuda_t *g, int i)
{
    return g->w_off[i] >= 0 ? g->d_params + g->w_off[i] : NULL;
}

static const float *s_b(const dq_net_cuda_t *g, int i)
{
    return g->b_off[i] >= 0 ? g->d_params + g->b_off[i] : NULL;
}

static int64_t s_in_numel(const dq_mf_layer *l)
{
    int64_t n = 1;
    for (int d = 0; d < l->in_rank; d++) n *= l->in_shape[d];
    return n;
}

static dq_status s_layer_forward(dq_net_cuda_t *g, int i, bool train, dq_err *err)
{
    const dq_mf_layer *l = &g->mf.layers[i];
    const int64_t N = g->n, count = N * dq_mf_out_numel(l);
    const float *in = s_in(g, i);
    float *out = g->d_out[i];
    switch (l->type) {
    case DQ_LAYER_CONV2D:
        DQ_TRY(dq_cuda_conv_set_batch(&g->conv[i], g->cudnn, N, g->ws_bytes, err));
        return dq_cuda_conv_forward(&g->conv[i], g->cudnn, out, in, s_w(g, i), s_b(g, i), g->d_ws,
                                    g->ws_bytes, err);
    case DQ_LAYER_LINEAR:
        return dq_cuda_linear_forward(g->cublas, g->stream, out, in, s_w(g, i), s_b(g, i), N,
                                      l->in, l->out, err);
    case DQ_LAYER_RELU: DQ_CUDA_TRY(dq_k_relu_forward(out, in, count, g->stream), err); break;
    case DQ_LAYER_MAXPOOL2D:
        DQ_CUDA_TRY(dq_k_maxpool2d_forward(out, g->d_argmax[i], in, N * l->in_shape[0],
                                           l->in_shape[1], l->in_shape[2], l->out_shape[1],
                                           l->out_shape[2], l->kernel, l->stride, g->stream),
                    err);
        break;
    case DQ_LAYER_AVGPOOL1D:
        DQ_CUDA_TRY(dq_k_avgpool1d_forward(out, in, N, s_in_numel(l), l->kernel, g->stream), err);
        break;
    case DQ_LAYER_DROPOUT:
        if (train) {
            DQ_CUDA_TRY(dq_k_dropout_forward(out, g->d_mask[i], in, count, l->p, g->seed,
                                             g->dropout_ctr, g->stream),
                        err);
            g->dropout_ctr += (uint64_t)count;
        } else {
            DQ_CUDA_TRY(cudaMemcpyAsync(out, in, (size_t)count * sizeof(float),
                                        cudaMemcpyDeviceToDevice, g->stream),
                        err);
        }
        break;
    case DQ_LAYER_FLATTEN: break; /* a view laid out by s_layout */
    default: return dq_fail(err, DQ_ERR_ARG, "unknown layer type");
    }
    return DQ_OK;
}

static int s_find_output(const dq_net_cuda_t *g, const char *name)
{
    return name ? dq_mf_find_output(&g->mf, name) : -1;
}

dq_status dq_net_cuda_forward(dq_net_cuda_t *g, const dq_tensor *input, bool train,
                              const char *const *want, int n_want, dq_err *err)
{
    const dq_model_file *mf = &g->mf;
    const dq_net_input *ip = &mf->input;
    if (!input || !input->data)
        return dq_fail(err, DQ_ERR_ARG, "net %s on cuda: input tensor is missing", mf->name);
    if (input->ndim != 4 || input->shape[1] != ip->channels || input->shape[2] != ip->height ||
        input->shape[3] != ip->width || input->shape[0] < 1 || input->shape[0] > g->max_batch) {
        char got[96];
        return dq_fail(err, DQ_ERR_SHAPE, "net %s on cuda: input has shape %s, expected [N, %d, "
                       "%d, %d] with 1 <= N <= %lld", mf->name,
                       dq_tensor_shape_str(input, got, sizeof got), ip->channels, ip->height,
                       ip->width, (long long)g->max_batch);
    }
    if (train && !g->train)
        return dq_fail(err, DQ_ERR_ARG, "net %s on cuda: training forward on an executor made "
                       "for inference", mf->name);
    bool fetch[DQ_MF_MAX_OUTPUTS] = {false};
    for (int k = 0; want && k < n_want; k++) {
        int o = s_find_output(g, want[k]);
        if (o < 0)
            return dq_fail(err, DQ_ERR_NOT_FOUND, "net %s has no output '%s'", mf->name,
                           want[k] ? want[k] : "(null)");
        fetch[o] = true;
    }
    if (!want)
        for (int o = 0; o < mf->n_outputs; o++) fetch[o] = true;
    DQ_TRY(s_use(g, err));
    g->fwd_done = false;
    g->n = input->shape[0];
    size_t in_bytes = (size_t)dq_tensor_numel(input) * sizeof(float);
    if (input->data != g->h_in) memcpy(g->h_in, input->data, in_bytes);
    DQ_CUDA_TRY(cudaMemcpyAsync(g->d_in, g->h_in, in_bytes, cudaMemcpyHostToDevice, g->stream),
                err);
    for (int i = 0; i < mf->n_layers; i++) {
        dq_status st = s_layer_forward(g, i, train, err);
        if (st != DQ_OK)
            return dq_fail_prefix(err, st, "net %s on cuda:%d: layer %s (line %d): ", mf->name,
                                  g->dev.index, mf->layers[i].name, mf->layers[i].line);
    }
    for (int o = 0; o < mf->n_outputs; o++) {
        g->fetched[o] = fetch[o];
        g->out_view[o].shape[0] = g->n;
        if (g->train) g->grad_view[o].shape[0] = g->n;
        if (!fetch[o]) continue;
        int li = mf->outputs[o].layer;
        size_t bytes = (size_t)(g->n * dq_mf_out_numel(&mf->layers[li])) * sizeof(float);
        DQ_CUDA_TRY(cudaMemcpyAsync(g->h_out[li], g->d_out[li], bytes, cudaMemcpyDeviceToHost,
                                    g->stream),
                    err);
    }
    DQ_CUDA_TRY(cudaStreamSynchronize(g->stream), err);
    g->fwd_done = true;
    g->fwd_train = train;
    return DQ_OK;
}

const dq_tensor *dq_net_cuda_output(const dq_net_cuda_t *g, const char *name)
{
    int o = s_find_output(g, name);
    return o >= 0 && g->fetched[o] ? &g->out_view[o] : NULL;
}

/* ---- training ------------------------------------------------------------------------------ */

static dq_status s_need_train(const dq_net_cuda_t *g, const char *what, dq_err *err)
{
    if (!g->train)
        return dq_fail(err, DQ_ERR_ARG, "net %s on cuda: %s needs an executor made for "
                       "training", g->mf.name, what);
    return DQ_OK;
}

dq_status dq_net_cuda_zero_grad(dq_net_cuda_t *g, dq_err *err)
{
    DQ_TRY(s_need_train(g, "zero_grad", err));
    DQ_TRY(s_use(g, err));
    DQ_CUDA_TRY(cudaMemsetAsync(g->d_grads, 0, (size_t)g->n_floats * sizeof(float), g->stream),
                err);
    if (g->grad_bytes)
        DQ_CUDA_TRY(cudaMemsetAsync(g->d_grad_begin, 0, g->grad_bytes, g->stream), err);
    for (int o = 0; o < g->mf.n_outputs; o++) {
        const dq_mf_layer *l = &g->mf.layers[g->mf.outputs[o].layer];
        memset(g->grad_view[o].data, 0, (size_t)(g->max_batch * dq_mf_out_numel(l)) * sizeof(float));
    }
    return DQ_OK;
}

dq_tensor *dq_net_cuda_output_grad(dq_net_cuda_t *g, const char *name)
{
    int o = s_find_output(g, name);
    return o >= 0 && g->train ? &g->grad_view[o] : NULL;
}

static dq_status s_layer_backward(dq_net_cuda_t *g, int i, dq_err *err)
{
    const dq_mf_layer *l = &g->mf.layers[i];
    const int64_t N = g->n, count = N * dq_mf_out_numel(l);
    float *din = l->from == DQ_MF_INPUT ? NULL : g->d_dout[l->from];
    const float *dout = g->d_dout[i];
    float *dw = g->w_off[i] >= 0 ? g->d_grads + g->w_off[i] : NULL;
    float *db = g->b_off[i] >= 0 ? g->d_grads + g->b_off[i] : NULL;
    switch (l->type) {
    case DQ_LAYER_CONV2D:
        return dq_cuda_conv_backward(&g->conv[i], g->cudnn, din, dw, db, dout, s_in(g, i),
                                     s_w(g, i), g->d_ws, g->ws_bytes, err);
    case DQ_LAYER_LINEAR:
        return dq_cuda_linear_backward(g->cublas, g->stream, din, dw, db, dout, s_in(g, i),
                                       s_w(g, i), N, l->in, l->out, err);
    /* Parameter-free layers reading the input have nothing to propagate. */
    case DQ_LAYER_RELU:
        if (din) DQ_CUDA_TRY(dq_k_relu_backward(din, dout, g->d_out[i], count, g->stream), err);
        break;
    case DQ_LAYER_MAXPOOL2D:
        if (din)
            DQ_CUDA_TRY(dq_k_maxpool2d_backward(din, dout, g->d_argmax[i], N * l->in_shape[0],
                                                l->in_shape[1], l->in_shape[2], l->out_shape[1],
                                                l->out_shape[2], l->kernel, l->stride,
                                                g->stream),
                        err);
        break;
    case DQ_LAYER_AVGPOOL1D:
        if (din)
            DQ_CUDA_TRY(dq_k_avgpool1d_backward(din, dout, N, s_in_numel(l), l->kernel,
                                                g->stream),
                        err);
        break;
    case DQ_LAYER_DROPOUT:
        if (din) DQ_CUDA_TRY(dq_k_mul_add(din, dout, g->d_mask[i], count, g->stream), err);
        break;
    case DQ_LAYER_FLATTEN: break; /* its gradient aliases its input's */
    default: return dq_fail(err, DQ_ERR_ARG, "unknown layer type");
    }
    return DQ_OK;
}

dq_status dq_net_cuda_backward(dq_net_cuda_t *g, dq_err *err)
{
    const dq_model_file *mf = &g->mf;
    DQ_TRY(s_need_train(g, "backward", err));
    if (!g->fwd_done || !g->fwd_train)
        return dq_fail(err, DQ_ERR_ARG, "net %s on cuda: backward needs a preceding forward "
                       "with train=true", mf->name);
    DQ_TRY(s_use(g, err));
    /* zero_grad cleared every activation gradient, so the output gradients
     * are plain copies; outputs sharing a layer share its host buffer. */
    bool sent[DQ_MF_MAX_LAYERS] = {false};
    for (int o = 0; o < mf->n_outputs; o++) {
        int li = mf->outputs[o].layer;
        if (sent[li]) continue;
        sent[li] = true;
        size_t bytes = (size_t)(g->n * dq_mf_out_numel(&mf->layers[li])) * sizeof(float);
        DQ_CUDA_TRY(cudaMemcpyAsync(g->d_dout[li], g->h_dout[li], bytes, cudaMemcpyHostToDevice,
                                    g->stream),
                    err);
    }
    for (int i = mf->n_layers - 1; i >= 0; i--) {
        dq_status st = s_layer_backward(g, i, err);
        if (st != DQ_OK)
            return dq_fail_prefix(err, st, "net %s on cuda:%d: backward of layer %s (line %d): ",
                                  mf->name, g->dev.index, mf->layers[i].name,
                                  mf->layers[i].line);
    }
    /* The host output gradients must not be rewritten while being copied. */
    DQ_CUDA_TRY(cudaStreamSynchronize(g->stream), err);
    return DQ_OK;
}

dq_status dq_net_cuda_adam_step(dq_net_cuda_t *g, int64_t step, const dq_adam_config *cfg,
                                dq_err *err)
{
    DQ_TRY(s_need_train(g, "adam_step", err));
    if (step < 1) return dq_fail(err, DQ_ERR_ARG, "adam on cuda: step %lld must be >= 1",
                                 (long long)step);
    DQ_TRY(s_use(g, err));
    /* The scalars exactly as adam.c computes them. */
    double bc1 = 1.0 - pow(cfg->beta1, (double)step);
    double bc2 = 1.0 - pow(cfg->beta2, (double)step);
    dq_k_adam_scalars k = {
        .b1 = (float)cfg->beta1, .a1 = (float)(1.0 - cfg->beta1),
        .b2 = (float)cfg->beta2, .a2 = (float)(1.0 - cfg->beta2),
        .wd = (float)cfg->weight_decay, .use_wd = cfg->weight_decay != 0.0,
        .bc2s = (float)sqrt(bc2), .eps = (float)cfg->eps, .nstep = (float)(-(cfg->lr / bc1)),
    };
    DQ_CUDA_TRY(dq_k_adam_step(g->d_params, g->d_grads, g->d_m, g->d_v, g->n_floats, k,
                               g->stream),
                err);
    return DQ_OK;
}

/* ---- host <-> device copies of the flat arrays ------------------------------------------ */

static dq_status s_copy(dq_net_cuda_t *g, void *dst, const void *src, int64_t floats,
                        enum cudaMemcpyKind kind, dq_err *err)
{
    DQ_TRY(s_use(g, err));
    DQ_CUDA_TRY(cudaMemcpyAsync(dst, src, (size_t)floats * sizeof(float), kind, g->stream), err);
    DQ_CUDA_TRY(cudaStreamSynchronize(g->stream), err);
    return DQ_OK;
}

dq_status dq_net_cuda_upload_params(dq_net_cuda_t *g, dq_net_t *net, dq_err *err)
{
    if (dq_net_param_floats(net) != g->n_floats)
        return dq_fail(err, DQ_ERR_ARG, "net %s on cuda: parameter count differs", g->mf.name);
    return s_copy(g, g->d_params, dq_net_params(net), g->n_floats, cudaMemcpyHostToDevice, err);
}

dq_status dq_net_cuda_download_params(dq_net_cuda_t *g, dq_net_t *net, dq_err *err)
{
    if (dq_net_param_floats(net) != g->n_floats)
        return dq_fail(err, DQ_ERR_ARG, "net %s on cuda: parameter count differs", g->mf.name);
    return s_copy(g, dq_net_params(net), g->d_params, g->n_floats, cudaMemcpyDeviceToHost, err);
}

dq_status dq_net_cuda_download_grads(dq_net_cuda_t *g, dq_net_t *net, dq_err *err)
{
    DQ_TRY(s_need_train(g, "download_grads", err));
    if (dq_net_param_floats(net) != g->n_floats)
        return dq_fail(err, DQ_ERR_ARG, "net %s on cuda: parameter count differs", g->mf.name);
    return s_copy(g, dq_net_grads(net), g->d_grads, g->n_floats, cudaMemcpyDeviceToHost, err);
}

dq_status dq_net_cuda_moments(dq_net_cuda_t *g, float *m, float *v, bool upload, dq_err *err)
{
    DQ_TRY(s_need_train(g, "moments", err));
    enum cudaMemcpyKind k = upload ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost;
    DQ_TRY(s_copy(g, upload ? (void *)g->d_m : (void *)m, upload ? (void *)m : (void *)g->d_m,
                  g->n_floats, k, err));
    return s_copy(g, upload ? (void *)g->d_v : (void *)v, upload ? (void *)v : (void *)g->d_v,
                  g->n_floats, k, err);
}
