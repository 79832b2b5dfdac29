/* cudnn_batchnorm.c - batchnorm2d on cuDNN: the device twin of
 * src/tensor/batchnorm2d.c.
 *
 * cuDNN's spatial batch norm (CUDNN_BATCHNORM_SPATIAL: statistics per
 * channel over N*H*W) computes exactly our op: the batch mean and biased
 * variance normalise, the running variance is updated with the unbiased
 * one (this is the path PyTorch's CUDA BatchNorm2d takes), and the saved
 * statistics are the mean and the inverse standard deviation
 * 1/sqrt(var + eps), the same pair batchnorm2d.c keeps for backward. The
 * legacy API is deprecated in cuDNN 9 but shipped, like the convolution's
 * (cudnn_conv.c); the non-persistent spatial mode is used because the
 * persistent one may overflow and is not deterministic.
 *
 * Backward adds into din, dw and db (beta = 1) and cuDNN computes the three
 * together, so on the GPU all three must be given.
 */
#include "kernels/cuda_glue.h"

#include <limits.h>
#include <string.h>

static dq_status s_set_x(dq_cuda_bn *bn, int64_t n, dq_err *err)
{
    DQ_CUDNN_TRY(cudnnSetTensor4dDescriptor(bn->x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, (int)n,
                                            (int)bn->c, (int)bn->h, (int)bn->w),
                 err);
    bn->n = n;
    return DQ_OK;
}

static dq_status s_init(dq_cuda_bn *bn, int64_t n, dq_err *err)
{
    DQ_CUDNN_TRY(cudnnCreateTensorDescriptor(&bn->x), err);
    DQ_CUDNN_TRY(cudnnCreateTensorDescriptor(&bn->param), err);
    DQ_TRY(s_set_x(bn, n, err));
    DQ_CUDNN_TRY(cudnnSetTensor4dDescriptor(bn->param, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1,
                                            (int)bn->c, 1, 1),
                 err);
    return DQ_OK;
}

dq_status dq_cuda_bn_init(dq_cuda_bn *bn, int64_t max_n, int64_t C, int64_t H, int64_t W,
                          dq_err *err)
{
    memset(bn, 0, sizeof *bn);
    if (max_n < 1 || C < 1 || H < 1 || W < 1)
        return dq_fail(err, DQ_ERR_SHAPE, "batchnorm2d on cuDNN: empty input [%lld, %lld, %lld, "
                       "%lld]", (long long)max_n, (long long)C, (long long)H, (long long)W);
    if (max_n > INT_MAX || C * H * W > INT_MAX / max_n)
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "batchnorm2d on cuDNN: batch %lld of [%lld, "
                       "%lld, %lld] exceeds cuDNN's int sizes", (long long)max_n, (long long)C,
                       (long long)H, (long long)W);
    bn->c = C, bn->h = H, bn->w = W;
    dq_status st = s_init(bn, max_n, err);
    if (st != DQ_OK) dq_cuda_bn_destroy(bn);
    return st;
}

dq_status dq_cuda_bn_set_batch(dq_cuda_bn *bn, int64_t n, dq_err *err)
{
    if (n == bn->n) return DQ_OK;
    if (n < 1) return dq_fail(err, DQ_ERR_ARG, "batchnorm2d on cuDNN: batch %lld", (long long)n);
    return s_set_x(bn, n, err);
}

static dq_status s_check_eps(double eps, dq_err *err)
{
    if (eps < CUDNN_BN_MIN_EPSILON)
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "batchnorm2d on cuDNN: eps %g is below cuDNN's "
                       "minimum %g", eps, (double)CUDNN_BN_MIN_EPSILON);
    return DQ_OK;
}

dq_status dq_cuda_bn_forward(const dq_cuda_bn *bn, cudnnHandle_t h, float *out, float *save_mean,
                             float *save_invstd, float *running_mean, float *running_var,
                             const float *in, const float *w, const float *b, float eps,
                             float momentum, bool train, dq_err *err)
{
    const float one = 1.0f, zero = 0.0f;
    DQ_TRY(s_check_eps(eps, err));
    if (!train) {
        if (!running_mean || !running_var)
            return dq_fail(err, DQ_ERR_ARG, "batchnorm2d on cuDNN: eval mode needs the running "
                           "statistics");
        DQ_CUDNN_TRY(cudnnBatchNormalizationForwardInference(
                         h, CUDNN_BATCHNORM_SPATIAL, &one, &zero, bn->x, in, bn->x, out, bn->param,
                         w, b, running_mean, running_var, (double)eps),
                     err);
        return DQ_OK;
    }
    if (bn->n * bn->h * bn->w < 2)
        return dq_fail(err, DQ_ERR_SHAPE, "batchnorm2d on cuDNN: training needs more than 1 "
                       "value per channel");
    if (!save_mean || !save_invstd || !running_mean != !running_var)
        return dq_fail(err, DQ_ERR_ARG, "batchnorm2d on cuDNN: training needs save_mean and "
                       "save_invstd, and both running statistics or neither");
    DQ_CUDNN_TRY(cudnnBatchNormalizationForwardTraining(
                     h, CUDNN_BATCHNORM_SPATIAL, &one, &zero, bn->x, in, bn->x, out, bn->param, w,
                     b, (double)momentum, running_mean, running_var, (double)eps, save_mean,
                     save_invstd),
                 err);
    return DQ_OK;
}

dq_status dq_cuda_bn_backward(const dq_cuda_bn *bn, cudnnHandle_t h, float *din, float *dw,
                              float *db, const float *dout, const float *in, const float *w,
                              const float *save_mean, const float *save_invstd, float eps,
                              dq_err *err)
{
    const float one = 1.0f;
    DQ_TRY(s_check_eps(eps, err));
    if (!din || !dw || !db || !save_mean || !save_invstd)
        return dq_fail(err, DQ_ERR_ARG, "batchnorm2d backward on cuDNN: din, dw, db and the "
                       "saved statistics are all required");
    DQ_CUDNN_TRY(cudnnBatchNormalizationBackward(h, CUDNN_BATCHNORM_SPATIAL, &one, &one, &one,
                                                 &one, bn->x, in, bn->x, dout, bn->x, din,
                                                 bn->param, w, dw, db, (double)eps, save_mean,
                                                 save_invstd),
                 err);
    return DQ_OK;
}

/* Destroy results are ignored: nothing useful can follow a failure there. */
void dq_cuda_bn_destroy(dq_cuda_bn *bn)
{
    if (bn->param) (void)cudnnDestroyTensorDescriptor(bn->param);
    if (bn->x) (void)cudnnDestroyTensorDescriptor(bn->x);
    memset(bn, 0, sizeof *bn);
}
