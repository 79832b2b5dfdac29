/* avgpool2d.c - average pooling over square windows (PyTorch nn.AvgPool2d,
 * floor mode) and global average pooling (adaptive_avg_pool2d to 1x1).
 *
 * Padding (at most kernel/2, as PyTorch requires) counts as zeros. With
 * count_include_pad every window divides by kernel*kernel (in floor mode no
 * window reaches past the padding, so PyTorch's clipped divisor is always
 * k*k); without it, by the number of window elements inside the input
 * (ONNX AveragePool's default). Windows are clipped to the input once per
 * output, so there is no bounds test per element. Backward spreads each
 * output gradient over its window divided by the same divisor, adding.
 *
 * Global pooling is the mean of each [H,W] plane, summed with 8 float lanes
 * combined in double; its backward adds dout/(H*W) to every element.
 * Both are per-sample, hence batch-invariant.
 */
#include "tensor/ops.h"

int64_t dq_avgpool2d_out_size(int64_t in, int kernel, int stride, int padding)
{
    if (kernel < 1 || stride < 1 || padding < 0 || in + 2 * (int64_t)padding < kernel) return 0;
    return (in + 2 * (int64_t)padding - kernel) / stride + 1;
}

/* Checks in [N,C,H,W] (or din) against out [N,C,OH,OW] (or dout). */
static dq_status s_check(const char *op, const dq_tensor *in, const char *in_what,
                         const dq_tensor *out, const char *out_what, int kernel, int stride,
                         int padding, dq_err *err)
{
    DQ_TRY(dq_tensor_expect_rank(in, op, in_what, 4, err));
    if (kernel < 1 || stride < 1)
        return dq_fail(err, DQ_ERR_ARG, "%s: kernel %d / stride %d must be >= 1", op, kernel,
                       stride);
    if (padding < 0 || padding > kernel / 2)
        return dq_fail(err, DQ_ERR_ARG, "%s: padding %d must be in [0, kernel/2 = %d]", op,
                       padding, kernel / 2);
    const int64_t OH = dq_avgpool2d_out_size(in->shape[2], kernel, stride, padding);
    const int64_t OW = dq_avgpool2d_out_size(in->shape[3], kernel, stride, padding);
    if (OH < 1 || OW < 1) {
        char b[96];
        return dq_fail(err, DQ_ERR_SHAPE, "%s: kernel %d does not fit %s %s", op, kernel,
                       in_what, dq_tensor_shape_str(in, b, sizeof b));
    }
    int64_t oshape[4] = {in->shape[0], in->shape[1], OH, OW};
    return dq_tensor_expect(out, op, out_what, 4, oshape, err);
}

/* Window of output o along one dim, clipped to [0, in): [*s, *e). */
static void s_window(int64_t *s, int64_t *e, int64_t o, int64_t in, int k, int stride, int pad)
{
    int64_t a = o * stride - pad, b = a + k;
    *s = a < 0 ? 0 : a;
    *e = b < in ? b : in;
}

dq_status dq_avgpool2d_forward(dq_tensor *out, const dq_tensor *in, int kernel, int stride,
                               int padding, bool count_include_pad, dq_err *err)
{
    DQ_TRY(s_check("avgpool2d", in, "input", out, "output", kernel, stride, padding, err));
    const int64_t planes = in->shape[0] * in->shape[1], H = in->shape[2], W = in->shape[3];
    const int64_t OH = out->shape[2], OW = out->shape[3];
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *x = in->data + pl * H * W;
        float *y = out->data + pl * OH * OW;
        for (int64_t oh = 0; oh < OH; oh++) {
            int64_t hs, he;
            s_window(&hs, &he, oh, H, kernel, stride, padding);
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t ws, we;
                s_window(&ws, &we, ow, W, kernel, stride, padding);
                float s = 0.0f;
                for (int64_t h = hs; h < he; h++)
                    for (int64_t w = ws; w < we; w++) s += x[h * W + w];
                int64_t div = count_include_pad ? (int64_t)kernel * kernel : (he - hs) * (we - ws);
                y[oh * OW + ow] = s / (float)div;
            }
        }
    }
    return DQ_OK;
}

dq_status dq_avgpool2d_backward(dq_tensor *din, const dq_tensor *dout, int kernel, int stride,
                                int padding, bool count_include_pad, dq_err *err)
{
    const char *op = "avgpool2d backward";
    DQ_TRY(dq_tensor_expect_rank(dout, op, "output gradient", 4, err));
    if (!din) return DQ_OK;
    DQ_TRY(s_check(op, din, "input gradient", dout, "output gradient", kernel, stride, padding,
                   err));
    const int64_t planes = din->shape[0] * din->shape[1], H = din->shape[2], W = din->shape[3];
    const int64_t OH = dout->shape[2], OW = dout->shape[3];
    for (int64_t pl = 0; pl < planes; pl++) {
        float *dx = din->data + pl * H * W;
        const float *dy = dout->data + pl * OH * OW;
        for (int64_t oh = 0; oh < OH; oh++) {
            int64_t hs, he;
            s_window(&hs, &he, oh, H, kernel, stride, padding);
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t ws, we;
                s_window(&ws, &we, ow, W, kernel, stride, padding);
                int64_t div = count_include_pad ? (int64_t)kernel * kernel : (he - hs) * (we - ws);
                const float g = dy[oh * OW + ow] / (float)div;
                for (int64_t h = hs; h < he; h++)
                    for (int64_t w = ws; w < we; w++) dx[h * W + w] += g;
            }
        }
    }
    return DQ_OK;
}

/* ---- global average pooling ----------------------------------------------------- */

static dq_status s_check_global(const char *op, const dq_tensor *in, const char *in_what,
                                const dq_tensor *out, const char *out_what, dq_err *err)
{
    DQ_TRY(dq_tensor_expect_rank(in, op, in_what, 4, err));
    if (in->shape[2] < 1 || in->shape[3] < 1) {
        char b[96];
        return dq_fail(err, DQ_ERR_SHAPE, "%s: %s %s has an empty plane", op, in_what,
                       dq_tensor_shape_str(in, b, sizeof b));
    }
    int64_t oshape[4] = {in->shape[0], in->shape[1], 1, 1};
    return dq_tensor_expect(out, op, out_what, 4, oshape, err);
}

dq_status dq_global_avgpool_forward(dq_tensor *out, const dq_tensor *in, dq_err *err)
{
    DQ_TRY(s_check_global("global_avgpool", in, "input", out, "output", err));
    const int64_t planes = in->shape[0] * in->shape[1], HW = in->shape[2] * in->shape[3];
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *x = in->data + pl * HW;
        float acc[8] = {0};
        int64_t i = 0;
        for (; i + 8 <= HW; i += 8)
            for (int k = 0; k < 8; k++) acc[k] += x[i + k];
        double s = 0.0;
        for (; i < HW; i++) s += x[i];
        for (int k = 0; k < 8; k++) s += acc[k];
        out->data[pl] = (float)(s / (double)HW);
    }
    return DQ_OK;
}

dq_status dq_global_avgpool_backward(dq_tensor *din, const dq_tensor *dout, dq_err *err)
{
    const char *op = "global_avgpool backward";
    DQ_TRY(dq_tensor_expect_rank(dout, op, "output gradient", 4, err));
    if (!din) return DQ_OK;
    DQ_TRY(s_check_global(op, din, "input gradient", dout, "output gradient", err));
    const int64_t planes = din->shape[0] * din->shape[1], HW = din->shape[2] * din->shape[3];
    const float inv = 1.0f / (float)HW;
    for (int64_t pl = 0; pl < planes; pl++) {
        float *dx = din->data + pl * HW;
        const float g = dout->data[pl] * inv;
        for (int64_t i = 0; i < HW; i++) dx[i] += g;
    }
    return DQ_OK;
}
