/* relu.c - rectified linear unit, element-wise on any shape.
 *
 * Backward reads the forward OUTPUT (out > 0, which is the same set as
 * in > 0), so the forward may run in place and the input need not be kept.
 * Written as x <= 0 ? 0 : x so NaN propagates as in PyTorch. Loops are
 * written in blocks of 8 with restrict (or a single pointer when
 * in place) so gcc -O2 vectorises them.
 */
#include "tensor/ops.h"

#include <stdbool.h>

/* Checks that b has exactly a's rank and shape. */
static dq_status s_same_shape(const dq_tensor *b, const dq_tensor *a, const char *op,
                              const char *what, dq_err *err)
{
    return dq_tensor_expect(b, op, what, a->ndim, a->shape, err);
}

static void s_relu_inplace(float *x, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) x[i + k] = x[i + k] <= 0.0f ? 0.0f : x[i + k];
    for (; i < n; i++) x[i] = x[i] <= 0.0f ? 0.0f : x[i];
}

static void s_relu(float *restrict y, const float *restrict x, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) y[i + k] = x[i + k] <= 0.0f ? 0.0f : x[i + k];
    for (; i < n; i++) y[i] = x[i] <= 0.0f ? 0.0f : x[i];
}

dq_status dq_relu_forward(dq_tensor *out, const dq_tensor *in, dq_err *err)
{
    if (!in) return dq_fail(err, DQ_ERR_ARG, "relu: input tensor is missing");
    DQ_TRY(dq_tensor_expect_rank(in, "relu", "input", in->ndim, err));
    DQ_TRY(s_same_shape(out, in, "relu", "output", err));
    int64_t n = dq_tensor_numel(in);
    if (out->data == in->data)
        s_relu_inplace(out->data, n);
    else
        s_relu(out->data, in->data, n);
    return DQ_OK;
}

/* Shared by both backward forms: accumulate adds into din, else sets it. */
static dq_status s_relu_backward(dq_tensor *din, const dq_tensor *dout, const dq_tensor *out,
                                 bool accumulate, dq_err *err)
{
    if (!out) return dq_fail(err, DQ_ERR_ARG, "relu backward: output tensor is missing");
    DQ_TRY(dq_tensor_expect_rank(out, "relu backward", "output", out->ndim, err));
    DQ_TRY(s_same_shape(dout, out, "relu backward", "output gradient", err));
    if (!din) return DQ_OK;
    DQ_TRY(s_same_shape(din, out, "relu backward", "input gradient", err));
    float *restrict d = din->data;
    const float *restrict g = dout->data, *restrict y = out->data;
    int64_t n = dq_tensor_numel(out);
    /* A select, not g * (y > 0), so an inf gradient on a dead unit gives 0
     * rather than NaN (as PyTorch does). Blocks of 8 so gcc -O2 vectorises
     * the select (a blend) instead of branching on random signs. */
    int64_t i = 0;
    if (accumulate) {
        for (; i + 8 <= n; i += 8)
            for (int k = 0; k < 8; k++) {
                float gv = g[i + k]; /* loaded unconditionally: lets gcc use a blend */
                d[i + k] += y[i + k] > 0.0f ? gv : 0.0f;
            }
        for (; i < n; i++) d[i] += y[i] > 0.0f ? g[i] : 0.0f;
    } else {
        for (; i + 8 <= n; i += 8)
            for (int k = 0; k < 8; k++) {
                float gv = g[i + k];
                d[i + k] = y[i + k] > 0.0f ? gv : 0.0f;
            }
        for (; i < n; i++) d[i] = y[i] > 0.0f ? g[i] : 0.0f;
    }
    return DQ_OK;
}

dq_status dq_relu_backward(dq_tensor *din, const dq_tensor *dout, const dq_tensor *out,
                           dq_err *err)
{
    return s_relu_backward(din, dout, out, true, err);
}

dq_status dq_relu_backward_set(dq_tensor *din, const dq_tensor *dout, const dq_tensor *out,
                               dq_err *err)
{
    return s_relu_backward(din, dout, out, false, err);
}
