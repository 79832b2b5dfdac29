/* add.c - elementwise sum of two tensors of one shape: the residual
 * connection (out = a + b, e.g. a block's last batch norm plus its
 * shortcut). Backward is a plain din += dout, called once for each of the
 * two inputs (each receives the whole output gradient). out may alias a or
 * b, so a network can add in place. Loops in blocks of 8 for gcc -O2.
 */
#include "tensor/ops.h"

dq_status dq_add_forward(dq_tensor *out, const dq_tensor *a, const dq_tensor *b, dq_err *err)
{
    if (!a || !b) return dq_fail(err, DQ_ERR_ARG, "add: input tensor is missing");
    DQ_TRY(dq_tensor_expect_rank(a, "add", "first input", a->ndim, err));
    DQ_TRY(dq_tensor_expect(b, "add", "second input", a->ndim, a->shape, err));
    DQ_TRY(dq_tensor_expect(out, "add", "output", a->ndim, a->shape, err));
    const int64_t n = dq_tensor_numel(a);
    float *y = out->data;
    const float *x1 = a->data, *x2 = b->data;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) y[i + k] = x1[i + k] + x2[i + k];
    for (; i < n; i++) y[i] = x1[i] + x2[i];
    return DQ_OK;
}

dq_status dq_add_backward(dq_tensor *din, const dq_tensor *dout, dq_err *err)
{
    if (!dout) return dq_fail(err, DQ_ERR_ARG, "add backward: output gradient is missing");
    DQ_TRY(dq_tensor_expect_rank(dout, "add backward", "output gradient", dout->ndim, err));
    if (!din) return DQ_OK;
    DQ_TRY(dq_tensor_expect(din, "add backward", "input gradient", dout->ndim, dout->shape, err));
    const int64_t n = dq_tensor_numel(dout);
    float *restrict dx = din->data;
    const float *restrict dy = dout->data;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) dx[i + k] += dy[i + k];
    for (; i < n; i++) dx[i] += dy[i];
    return DQ_OK;
}
