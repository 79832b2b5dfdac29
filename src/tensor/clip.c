/* clip.c - clamp to [lo, hi] on any shape: relu6 (lo 0, hi 6) and ONNX
 * Clip, with PyTorch's hardtanh semantics.
 *
 * Forward is x < lo ? lo : x > hi ? hi : x, so NaN propagates (both
 * comparisons are false), as torch.clamp does. Backward reads the forward
 * OUTPUT: the gradient passes where lo < out < hi, which is exactly where
 * lo < in < hi (hardtanh_backward's test), so the forward may run in place;
 * a NaN output passes nothing, as in PyTorch.
 */
#include "tensor/ops.h"

static dq_status s_check_bounds(const char *op, float lo, float hi, dq_err *err)
{
    if (!(lo <= hi))
        return dq_fail(err, DQ_ERR_ARG, "%s: min %g must not exceed max %g", op, (double)lo,
                       (double)hi);
    return DQ_OK;
}

dq_status dq_clip_forward(dq_tensor *out, const dq_tensor *in, float lo, float hi, dq_err *err)
{
    if (!in) return dq_fail(err, DQ_ERR_ARG, "clip: input tensor is missing");
    DQ_TRY(dq_tensor_expect_rank(in, "clip", "input", in->ndim, err));
    DQ_TRY(dq_tensor_expect(out, "clip", "output", in->ndim, in->shape, err));
    DQ_TRY(s_check_bounds("clip", lo, hi, err));
    const int64_t n = dq_tensor_numel(in);
    float *y = out->data;
    const float *x = in->data;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) {
            float v = x[i + k];
            y[i + k] = v < lo ? lo : v > hi ? hi : v;
        }
    for (; i < n; i++) y[i] = x[i] < lo ? lo : x[i] > hi ? hi : x[i];
    return DQ_OK;
}

dq_status dq_clip_backward(dq_tensor *din, const dq_tensor *dout, const dq_tensor *out,
                           float lo, float hi, dq_err *err)
{
    const char *op = "clip backward";
    if (!dout || !out) return dq_fail(err, DQ_ERR_ARG, "%s: a tensor is missing", op);
    DQ_TRY(dq_tensor_expect_rank(dout, op, "output gradient", dout->ndim, err));
    DQ_TRY(dq_tensor_expect(out, op, "output", dout->ndim, dout->shape, err));
    DQ_TRY(s_check_bounds(op, lo, hi, err));
    if (!din) return DQ_OK;
    DQ_TRY(dq_tensor_expect(din, op, "input gradient", dout->ndim, dout->shape, err));
    const int64_t n = dq_tensor_numel(dout);
    float *restrict dx = din->data;
    const float *restrict dy = dout->data, *restrict y = out->data;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            dx[i + k] += y[i + k] > lo && y[i + k] < hi ? dy[i + k] : 0.0f;
    for (; i < n; i++) dx[i] += y[i] > lo && y[i] < hi ? dy[i] : 0.0f;
    return DQ_OK;
}
