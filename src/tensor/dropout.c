/* dropout.c - inverted dropout with a caller-owned mask and rng.
 *
 * Training keeps each element with probability 1-p and scales kept ones by
 * 1/(1-p), so evaluation is a plain copy. The mask stores the multiplier
 * itself (0 or 1/(1-p)), so backward is one multiply. The rng is advanced
 * exactly once per element in training (also when p = 0) and never in eval,
 * so a run's random stream does not depend on p or on how often it is
 * evaluated.
 */
#include "tensor/ops.h"

#include <string.h>

static dq_status s_check_p(const char *op, float p, dq_err *err)
{
    if (!(p >= 0.0f && p < 1.0f))
        return dq_fail(err, DQ_ERR_ARG, "%s: p = %g must be in [0, 1)", op, (double)p);
    return DQ_OK;
}

dq_status dq_dropout_forward(dq_tensor *out, float *mask, const dq_tensor *in, float p,
                             bool train, dq_rng *rng, dq_err *err)
{
    DQ_TRY(s_check_p("dropout", p, err));
    if (!in) return dq_fail(err, DQ_ERR_ARG, "dropout: input tensor is missing");
    DQ_TRY(dq_tensor_expect_rank(in, "dropout", "input", in->ndim, err));
    DQ_TRY(dq_tensor_expect(out, "dropout", "output", in->ndim, in->shape, err));
    const int64_t n = dq_tensor_numel(in);
    if (!train) {
        if (out->data != in->data && n > 0)
            memmove(out->data, in->data, (size_t)n * sizeof(float));
        return DQ_OK;
    }
    if (!rng || (!mask && n > 0))
        return dq_fail(err, DQ_ERR_ARG, "dropout: training needs a %s", rng ? "mask" : "rng");
    const float scale = 1.0f / (1.0f - p);
    for (int64_t i = 0; i < n; i++) {
        mask[i] = dq_rng_uniform(rng) >= p ? scale : 0.0f;
        out->data[i] = in->data[i] * mask[i];
    }
    return DQ_OK;
}

dq_status dq_dropout_backward(dq_tensor *din, const dq_tensor *dout, const float *mask,
                              float p, bool train, dq_err *err)
{
    const char *op = "dropout backward";
    DQ_TRY(s_check_p(op, p, err));
    if (!dout) return dq_fail(err, DQ_ERR_ARG, "%s: output gradient is missing", op);
    DQ_TRY(dq_tensor_expect_rank(dout, op, "output gradient", dout->ndim, err));
    if (!din) return DQ_OK;
    DQ_TRY(dq_tensor_expect(din, op, "input gradient", dout->ndim, dout->shape, err));
    const int64_t n = dq_tensor_numel(dout);
    float *restrict dx = din->data;
    const float *restrict dy = dout->data;
    if (!train) {
        for (int64_t i = 0; i < n; i++) dx[i] += dy[i];
        return DQ_OK;
    }
    if (!mask && n > 0) return dq_fail(err, DQ_ERR_ARG, "%s: mask is missing", op);
    for (int64_t i = 0; i < n; i++) dx[i] += dy[i] * mask[i];
    return DQ_OK;
}
