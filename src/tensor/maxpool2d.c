/* maxpool2d.c - max pooling over square windows, no padding, floor mode.
 *
 * Forward records, per output, the index of the winning input inside its
 * H*W plane (int32, as PyTorch's return_indices does), so backward is a
 * scatter-add that needs neither the input nor the kernel geometry. Ties go
 * to the first maximum in row-major window order and a NaN wins, both as in
 * PyTorch's CPU kernel. Overlapping windows (stride < kernel) accumulate.
 */
#include "tensor/ops.h"

#include <math.h>

int64_t dq_maxpool2d_out_size(int64_t in, int kernel, int stride)
{
    if (kernel < 1 || stride < 1 || in < kernel) return 0;
    return (in - kernel) / stride + 1;
}

dq_status dq_maxpool2d_forward(dq_tensor *out, int32_t *argmax, const dq_tensor *in,
                               int kernel, int stride, dq_err *err)
{
    DQ_TRY(dq_tensor_expect_rank(in, "maxpool2d", "input", 4, err));
    if (kernel < 1 || stride < 1)
        return dq_fail(err, DQ_ERR_ARG, "maxpool2d: kernel %d / stride %d must be >= 1",
                       kernel, stride);
    const int64_t N = in->shape[0], C = in->shape[1], H = in->shape[2], W = in->shape[3];
    const int64_t OH = dq_maxpool2d_out_size(H, kernel, stride);
    const int64_t OW = dq_maxpool2d_out_size(W, kernel, stride);
    if (OH < 1 || OW < 1) {
        char b[96];
        return dq_fail(err, DQ_ERR_SHAPE, "maxpool2d: kernel %d does not fit input %s", kernel,
                       dq_tensor_shape_str(in, b, sizeof b));
    }
    if (H * W > INT32_MAX)
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "maxpool2d: %lldx%lld plane too large for "
                       "int32 indices", (long long)H, (long long)W);
    int64_t oshape[4] = {N, C, OH, OW};
    DQ_TRY(dq_tensor_expect(out, "maxpool2d", "output", 4, oshape, err));
    if (!argmax && N * C > 0)
        return dq_fail(err, DQ_ERR_ARG, "maxpool2d: argmax buffer is missing");

    for (int64_t pl = 0; pl < N * C; pl++) {
        const float *x = in->data + pl * H * W;
        float *y = out->data + pl * OH * OW;
        int32_t *am = argmax + pl * OH * OW;
        for (int64_t oh = 0; oh < OH; oh++) {
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t best = oh * stride * W + ow * stride;
                float v = x[best];
                for (int64_t kh = 0; kh < kernel; kh++) {
                    const int64_t row = (oh * stride + kh) * W + ow * stride;
                    for (int64_t kw = 0; kw < kernel; kw++) {
                        float c = x[row + kw];
                        if (c > v || isnan(c)) {
                            v = c;
                            best = row + kw;
                        }
                    }
                }
                y[oh * OW + ow] = v;
                am[oh * OW + ow] = (int32_t)best;
            }
        }
    }
    return DQ_OK;
}

dq_status dq_maxpool2d_backward(dq_tensor *din, const dq_tensor *dout, const int32_t *argmax,
                                dq_err *err)
{
    const char *op = "maxpool2d backward";
    DQ_TRY(dq_tensor_expect_rank(dout, op, "output gradient", 4, err));
    if (!din) return DQ_OK;
    DQ_TRY(dq_tensor_expect_rank(din, op, "input gradient", 4, err));
    int64_t ishape[4] = {dout->shape[0], dout->shape[1], din->shape[2], din->shape[3]};
    DQ_TRY(dq_tensor_expect(din, op, "input gradient", 4, ishape, err));
    const int64_t planes = dout->shape[0] * dout->shape[1];
    const int64_t HW = din->shape[2] * din->shape[3], P = dout->shape[2] * dout->shape[3];
    if (!argmax && planes * P > 0) return dq_fail(err, DQ_ERR_ARG, "%s: argmax is missing", op);
    /* Indices come from our forward; a bad one means the wrong buffer was
     * passed, and must not become an out-of-bounds write. */
    for (int64_t i = 0; i < planes * P; i++)
        if (argmax[i] < 0 || argmax[i] >= HW)
            return dq_fail(err, DQ_ERR_ARG, "%s: argmax[%lld] = %d is outside the %lld-element "
                           "plane", op, (long long)i, (int)argmax[i], (long long)HW);
    for (int64_t pl = 0; pl < planes; pl++) {
        float *dx = din->data + pl * HW;
        const float *dy = dout->data + pl * P;
        const int32_t *am = argmax + pl * P;
        for (int64_t i = 0; i < P; i++) dx[am[i]] += dy[i];
    }
    return DQ_OK;
}
