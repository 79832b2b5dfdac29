/* cudnn_conv.c - conv2d forward, backward data and backward filter on cuDNN.
 *
 * Uses cuDNN's legacy convolution API (cudnnConvolutionForward & co.): it is
 * marked deprecated in cuDNN 9 in favour of the graph API, but it is still
 * shipped, it covers exactly our op (NCHW float, square kernel, symmetric
 * padding, no dilation, optionally grouped through
 * cudnnSetConvolutionGroupCount, depthwise included) and it is a fraction of
 * the code.
 *
 * Algorithms are chosen once per layer, at the planned batch, from the
 * ranked heuristics of cudnnGet*Algorithm_v7 (no benchmarking run, so the
 * choice is the same on every start), taking the first that succeeds in
 * plain FP32 within the workspace limit; backward additionally requires a
 * deterministic algorithm so that a training step is reproducible. The
 * caller sizes one workspace for all layers from cv->ws_bytes.
 */
#include "kernels/cuda_glue.h"

#include <limits.h>
#include <string.h>

/* Only FMA math: CUDNN_DEFAULT_MATH permits TF32 tensor cores for float
 * data on Ampere and later, and the CPU is our reference (cuda_glue.h). */
static bool s_fp32(cudnnMathType_t m)
{
    return m == CUDNN_FMA_MATH;
}

static dq_status s_set_nchw(cudnnTensorDescriptor_t d, int64_t n, int64_t c, int64_t h, int64_t w,
                            dq_err *err)
{
    DQ_CUDNN_TRY(cudnnSetTensor4dDescriptor(d, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, (int)n, (int)c,
                                            (int)h, (int)w),
                 err);
    return DQ_OK;
}

#define S_MAX_ALGOS 16

static dq_status s_pick_fwd(dq_cuda_conv *cv, cudnnHandle_t h, size_t limit, dq_err *err)
{
    cudnnConvolutionFwdAlgoPerf_t perf[S_MAX_ALGOS];
    int got = 0;
    DQ_CUDNN_TRY(cudnnGetConvolutionForwardAlgorithm_v7(h, cv->x, cv->w, cv->conv, cv->y,
                                                        S_MAX_ALGOS, &got, perf),
                 err);
    for (int i = 0; i < got; i++) {
        if (perf[i].status != CUDNN_STATUS_SUCCESS || !s_fp32(perf[i].mathType)) continue;
        size_t need = 0;
        if (cudnnGetConvolutionForwardWorkspaceSize(h, cv->x, cv->w, cv->conv, cv->y,
                                                    perf[i].algo, &need) != CUDNN_STATUS_SUCCESS ||
            need > limit)
            continue;
        cv->fwd = perf[i].algo;
        if (need > cv->ws_bytes) cv->ws_bytes = need;
        return DQ_OK;
    }
    return dq_fail(err, DQ_ERR_UNSUPPORTED, "cuDNN offers no FP32 forward algorithm within %zu "
                   "bytes of workspace (of %d ranked)", limit, got);
}

static dq_status s_pick_bwd_data(dq_cuda_conv *cv, cudnnHandle_t h, size_t limit, dq_err *err)
{
    cudnnConvolutionBwdDataAlgoPerf_t perf[S_MAX_ALGOS];
    int got = 0;
    DQ_CUDNN_TRY(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, cv->w, cv->y, cv->conv, cv->x,
                                                             S_MAX_ALGOS, &got, perf),
                 err);
    for (int i = 0; i < got; i++) {
        if (perf[i].status != CUDNN_STATUS_SUCCESS || !s_fp32(perf[i].mathType) ||
            perf[i].determinism != CUDNN_DETERMINISTIC)
            continue;
        size_t need = 0;
        if (cudnnGetConvolutionBackwardDataWorkspaceSize(h, cv->w, cv->y, cv->conv, cv->x,
                                                         perf[i].algo, &need) !=
                CUDNN_STATUS_SUCCESS ||
            need > limit)
            continue;
        cv->bwd_data = perf[i].algo;
        if (need > cv->ws_bytes) cv->ws_bytes = need;
        return DQ_OK;
    }
    return dq_fail(err, DQ_ERR_UNSUPPORTED, "cuDNN offers no deterministic FP32 backward-data "
                   "algorithm within %zu bytes of workspace (of %d ranked)", limit, got);
}

static dq_status s_pick_bwd_filter(dq_cuda_conv *cv, cudnnHandle_t h, size_t limit, dq_err *err)
{
    cudnnConvolutionBwdFilterAlgoPerf_t perf[S_MAX_ALGOS];
    int got = 0;
    DQ_CUDNN_TRY(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, cv->x, cv->y, cv->conv, cv->w,
                                                               S_MAX_ALGOS, &got, perf),
                 err);
    for (int i = 0; i < got; i++) {
        if (perf[i].status != CUDNN_STATUS_SUCCESS || !s_fp32(perf[i].mathType) ||
            perf[i].determinism != CUDNN_DETERMINISTIC)
            continue;
        size_t need = 0;
        if (cudnnGetConvolutionBackwardFilterWorkspaceSize(h, cv->x, cv->y, cv->conv, cv->w,
                                                           perf[i].algo, &need) !=
                CUDNN_STATUS_SUCCESS ||
            need > limit)
            continue;
        cv->bwd_filter = perf[i].algo;
        if (need > cv->ws_bytes) cv->ws_bytes = need;
        return DQ_OK;
    }
    return dq_fail(err, DQ_ERR_UNSUPPORTED, "cuDNN offers no deterministic FP32 backward-filter "
                   "algorithm within %zu bytes of workspace (of %d ranked)", limit, got);
}

static dq_status s_init(dq_cuda_conv *cv, cudnnHandle_t h, size_t ws_limit, dq_err *err)
{
    DQ_CUDNN_TRY(cudnnCreateTensorDescriptor(&cv->x), err);
    DQ_CUDNN_TRY(cudnnCreateTensorDescriptor(&cv->y), err);
    DQ_CUDNN_TRY(cudnnCreateTensorDescriptor(&cv->bias), err);
    DQ_CUDNN_TRY(cudnnCreateFilterDescriptor(&cv->w), err);
    DQ_CUDNN_TRY(cudnnCreateConvolutionDescriptor(&cv->conv), err);
    DQ_TRY(s_set_nchw(cv->x, cv->n, cv->c, cv->h, cv->w_, err));
    DQ_TRY(s_set_nchw(cv->y, cv->n, cv->oc, cv->oh, cv->ow, err));
    DQ_TRY(s_set_nchw(cv->bias, 1, cv->oc, 1, 1, err));
    DQ_CUDNN_TRY(cudnnSetFilter4dDescriptor(cv->w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW,
                                            (int)cv->oc, (int)(cv->c / cv->groups), cv->kernel,
                                            cv->kernel),
                 err);
    /* CROSS_CORRELATION is what PyTorch (and conv2d.c) call convolution. */
    DQ_CUDNN_TRY(cudnnSetConvolution2dDescriptor(cv->conv, cv->padding, cv->padding, cv->stride,
                                                 cv->stride, 1, 1, CUDNN_CROSS_CORRELATION,
                                                 CUDNN_DATA_FLOAT),
                 err);
    DQ_CUDNN_TRY(cudnnSetConvolutionMathType(cv->conv, CUDNN_FMA_MATH), err);
    if (cv->groups > 1) DQ_CUDNN_TRY(cudnnSetConvolutionGroupCount(cv->conv, cv->groups), err);
    int dims[4];
    DQ_CUDNN_TRY(cudnnGetConvolution2dForwardOutputDim(cv->conv, cv->x, cv->w, &dims[0],
                                                       &dims[1], &dims[2], &dims[3]),
                 err);
    if (dims[0] != cv->n || dims[1] != cv->oc || dims[2] != cv->oh || dims[3] != cv->ow)
        return dq_fail(err, DQ_ERR_SHAPE, "cuDNN computes output [%d, %d, %d, %d], the model "
                       "[%lld, %lld, %lld, %lld]", dims[0], dims[1], dims[2], dims[3],
                       (long long)cv->n, (long long)cv->oc, (long long)cv->oh,
                       (long long)cv->ow);
    DQ_TRY(s_pick_fwd(cv, h, ws_limit, err));
    if (cv->backward) {
        DQ_TRY(s_pick_bwd_data(cv, h, ws_limit, err));
        DQ_TRY(s_pick_bwd_filter(cv, h, ws_limit, err));
    }
    return DQ_OK;
}

dq_status dq_cuda_conv_init(dq_cuda_conv *cv, cudnnHandle_t h, int64_t max_n, int64_t C,
                            int64_t H, int64_t W, int64_t OC, int kernel, int stride,
                            int padding, bool backward, size_t ws_limit, dq_err *err)
{
    return dq_cuda_conv_init_grouped(cv, h, max_n, C, H, W, OC, kernel, stride, padding, 1,
                                     backward, ws_limit, err);
}

dq_status dq_cuda_conv_init_grouped(dq_cuda_conv *cv, cudnnHandle_t h, int64_t max_n, int64_t C,
                                    int64_t H, int64_t W, int64_t OC, int kernel, int stride,
                                    int padding, int groups, bool backward, size_t ws_limit,
                                    dq_err *err)
{
    memset(cv, 0, sizeof *cv);
    if (groups < 1) groups = 1;
    if (C % groups != 0 || OC % groups != 0)
        return dq_fail(err, DQ_ERR_SHAPE, "conv2d on cuDNN: %lld input and %lld output channels "
                       "are not both divisible by groups %d", (long long)C, (long long)OC,
                       groups);
    int64_t OH = stride > 0 ? (H + 2 * (int64_t)padding - kernel) / stride + 1 : 0;
    int64_t OW = stride > 0 ? (W + 2 * (int64_t)padding - kernel) / stride + 1 : 0;
    if (max_n < 1 || C < 1 || OC < 1 || kernel < 1 || stride < 1 || padding < 0 || OH < 1 ||
        OW < 1)
        return dq_fail(err, DQ_ERR_SHAPE, "conv2d on cuDNN: kernel %d / stride %d / padding %d "
                       "does not fit [%lld, %lld, %lld, %lld]", kernel, stride, padding,
                       (long long)max_n, (long long)C, (long long)H, (long long)W);
    if (max_n > INT_MAX / 2 || C * H * W > INT_MAX / max_n || OC * OH * OW > INT_MAX / max_n)
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "conv2d on cuDNN: batch %lld of [%lld, %lld, "
                       "%lld] exceeds cuDNN's int sizes", (long long)max_n, (long long)C,
                       (long long)H, (long long)W);
    *cv = (dq_cuda_conv){.backward = backward, .n = max_n, .c = C, .h = H, .w_ = W, .oc = OC,
                         .oh = OH, .ow = OW, .kernel = kernel, .stride = stride,
                         .padding = padding, .groups = groups};
    dq_status st = s_init(cv, h, ws_limit, err);
    if (st != DQ_OK) dq_cuda_conv_destroy(cv);
    return st;
}

dq_status dq_cuda_ws_admit(int64_t *planned_n, int64_t n, size_t need, size_t ws_bytes,
                           dq_err *err)
{
    if (need > ws_bytes)
        return dq_fail(err, DQ_ERR_NOMEM, "conv2d on cuDNN: batch %lld needs %zu bytes of "
                       "workspace, %zu were planned", (long long)n, need, ws_bytes);
    *planned_n = n;
    return DQ_OK;
}

/* The workspace the chosen algorithms need with the descriptors as set. */
static dq_status s_ws_need(const dq_cuda_conv *cv, cudnnHandle_t h, size_t *need, dq_err *err)
{
    size_t more = 0;
    *need = 0;
    DQ_CUDNN_TRY(cudnnGetConvolutionForwardWorkspaceSize(h, cv->x, cv->w, cv->conv, cv->y,
                                                         cv->fwd, need),
                 err);
    if (!cv->backward) return DQ_OK;
    DQ_CUDNN_TRY(cudnnGetConvolutionBackwardDataWorkspaceSize(h, cv->w, cv->y, cv->conv, cv->x,
                                                              cv->bwd_data, &more),
                 err);
    if (more > *need) *need = more;
    DQ_CUDNN_TRY(cudnnGetConvolutionBackwardFilterWorkspaceSize(h, cv->x, cv->y, cv->conv, cv->w,
                                                                cv->bwd_filter, &more),
                 err);
    if (more > *need) *need = more;
    return DQ_OK;
}

static dq_status s_set_n(dq_cuda_conv *cv, int64_t n, dq_err *err)
{
    DQ_TRY(s_set_nchw(cv->x, n, cv->c, cv->h, cv->w_, err));
    return s_set_nchw(cv->y, n, cv->oc, cv->oh, cv->ow, err);
}

/* cv->n changes only once the workspace check passed (dq_cuda_ws_admit):
 * recording it first made a second call at the same n skip the check and
 * run with too small a workspace. On failure the descriptors go back to
 * cv->n, so cv stays consistent. */
dq_status dq_cuda_conv_set_batch(dq_cuda_conv *cv, cudnnHandle_t h, int64_t n, size_t ws_bytes,
                                 dq_err *err)
{
    if (n == cv->n) return DQ_OK;
    size_t need = 0;
    dq_status st = s_set_n(cv, n, err);
    if (st == DQ_OK) st = s_ws_need(cv, h, &need, err);
    if (st == DQ_OK) st = dq_cuda_ws_admit(&cv->n, n, need, ws_bytes, err);
    if (st != DQ_OK) {
        dq_err ignored;
        (void)s_set_n(cv, cv->n, &ignored);
    }
    return st;
}

dq_status dq_cuda_conv_forward(const dq_cuda_conv *cv, cudnnHandle_t h, float *out,
                               const float *in, const float *w, const float *b, void *ws,
                               size_t ws_bytes, dq_err *err)
{
    const float one = 1.0f, zero = 0.0f;
    DQ_CUDNN_TRY(cudnnConvolutionForward(h, &one, cv->x, in, cv->w, w, cv->conv, cv->fwd, ws,
                                         ws_bytes, &zero, cv->y, out),
                 err);
    if (b) DQ_CUDNN_TRY(cudnnAddTensor(h, &one, cv->bias, b, &one, cv->y, out), err);
    return DQ_OK;
}

dq_status dq_cuda_conv_backward(const dq_cuda_conv *cv, cudnnHandle_t h, float *din, float *dw,
                                float *db, const float *dout, const float *in, const float *w,
                                void *ws, size_t ws_bytes, dq_err *err)
{
    if (!cv->backward && (din || dw))
        return dq_fail(err, DQ_ERR_ARG, "conv2d on cuDNN: layer planned for inference only");
    const float one = 1.0f;
    if (db) DQ_CUDNN_TRY(cudnnConvolutionBackwardBias(h, &one, cv->y, dout, &one, cv->bias, db),
                         err);
    if (dw)
        DQ_CUDNN_TRY(cudnnConvolutionBackwardFilter(h, &one, cv->x, in, cv->y, dout, cv->conv,
                                                    cv->bwd_filter, ws, ws_bytes, &one, cv->w,
                                                    dw),
                     err);
    if (din)
        DQ_CUDNN_TRY(cudnnConvolutionBackwardData(h, &one, cv->w, w, cv->y, dout, cv->conv,
                                                  cv->bwd_data, ws, ws_bytes, &one, cv->x, din),
                     err);
    return DQ_OK;
}

/* Destroy results are ignored: nothing useful can follow a failure there. */
void dq_cuda_conv_destroy(dq_cuda_conv *cv)
{
    if (cv->conv) (void)cudnnDestroyConvolutionDescriptor(cv->conv);
    if (cv->w) (void)cudnnDestroyFilterDescriptor(cv->w);
    if (cv->bias) (void)cudnnDestroyTensorDescriptor(cv->bias);
    if (cv->y) (void)cudnnDestroyTensorDescriptor(cv->y);
    if (cv->x) (void)cudnnDestroyTensorDescriptor(cv->x);
    memset(cv, 0, sizeof *cv);
}
