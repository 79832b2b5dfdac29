/* softmax.c - softmax and log_softmax over the last dim, with temperature.
 *
 * Rows of [N,K] are independent: z = x / T, shifted by the row maximum
 * before exp so large logits cannot overflow; the normaliser is summed in
 * double. Backward uses only the forward output (as PyTorch does):
 *     softmax:      dx_i = (1/T) * y_i * (g_i - sum_j g_j y_j)
 *     log_softmax:  dx_i = (1/T) * (g_i - exp(y_i) * sum_j g_j)
 */
#include "tensor/ops.h"

#include <math.h>

/* Shapes and temperature shared by all four entry points: a [N,K] with
 * K >= 1, b the same shape, T finite and > 0. */
static dq_status s_check(const char *op, const dq_tensor *a, const char *a_what,
                         const dq_tensor *b, const char *b_what, float T, dq_err *err)
{
    if (!(T > 0.0f) || isinf(T))
        return dq_fail(err, DQ_ERR_ARG, "%s: temperature %g must be finite and > 0", op,
                       (double)T);
    DQ_TRY(dq_tensor_expect_rank(a, op, a_what, 2, err));
    if (a->shape[1] < 1)
        return dq_fail(err, DQ_ERR_SHAPE, "%s: %s has no classes", op, a_what);
    return dq_tensor_expect(b, op, b_what, 2, a->shape, err);
}

/* y = softmax(x / T) (as_log = false) or log_softmax(x / T) (as_log = true) over one row. */
static void s_row_forward(float *y, const float *x, int64_t K, float T, bool as_log)
{
    float m = x[0];
    for (int64_t k = 1; k < K; k++)
        if (x[k] > m) m = x[k];
    const float invT = 1.0f / T;
    double s = 0.0;
    for (int64_t k = 0; k < K; k++) {
        float e = expf((x[k] - m) * invT);
        if (!as_log) y[k] = e;
        s += e;
    }
    if (as_log) {
        const float ls = (float)log(s);
        for (int64_t k = 0; k < K; k++) y[k] = (x[k] - m) * invT - ls;
    } else {
        const float inv = (float)(1.0 / s);
        for (int64_t k = 0; k < K; k++) y[k] *= inv;
    }
}

static dq_status s_forward(const char *op, dq_tensor *out, const dq_tensor *in, float T,
                           bool as_log, dq_err *err)
{
    DQ_TRY(s_check(op, in, "input", out, "output", T, err));
    const int64_t N = in->shape[0], K = in->shape[1];
    for (int64_t n = 0; n < N; n++)
        s_row_forward(out->data + n * K, in->data + n * K, K, T, as_log);
    return DQ_OK;
}

dq_status dq_softmax_forward(dq_tensor *out, const dq_tensor *in, float T, dq_err *err)
{
    return s_forward("softmax", out, in, T, false, err);
}

dq_status dq_log_softmax_forward(dq_tensor *out, const dq_tensor *in, float T, dq_err *err)
{
    return s_forward("log_softmax", out, in, T, true, err);
}

static dq_status s_backward(const char *op, dq_tensor *din, const dq_tensor *dout,
                            const dq_tensor *out, float T, bool as_log, dq_err *err)
{
    DQ_TRY(s_check(op, out, "output", dout, "output gradient", T, err));
    if (!din) return DQ_OK;
    DQ_TRY(dq_tensor_expect(din, op, "input gradient", 2, out->shape, err));
    const int64_t N = out->shape[0], K = out->shape[1];
    const float invT = 1.0f / T;
    for (int64_t n = 0; n < N; n++) {
        const float *y = out->data + n * K, *g = dout->data + n * K;
        float *dx = din->data + n * K;
        double dot = 0.0; /* sum_j g_j y_j (softmax) or sum_j g_j (log_softmax) */
        for (int64_t k = 0; k < K; k++) dot += as_log ? (double)g[k] : (double)g[k] * y[k];
        const float d = (float)dot;
        if (as_log)
            for (int64_t k = 0; k < K; k++) dx[k] += invT * (g[k] - expf(y[k]) * d);
        else
            for (int64_t k = 0; k < K; k++) dx[k] += invT * y[k] * (g[k] - d);
    }
    return DQ_OK;
}

dq_status dq_softmax_backward(dq_tensor *din, const dq_tensor *dout, const dq_tensor *out,
                              float T, dq_err *err)
{
    return s_backward("softmax backward", din, dout, out, T, false, err);
}

dq_status dq_log_softmax_backward(dq_tensor *din, const dq_tensor *dout, const dq_tensor *out,
                                  float T, dq_err *err)
{
    return s_backward("log_softmax backward", din, dout, out, T, true, err);
}
