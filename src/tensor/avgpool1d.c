/* avgpool1d.c - average pooling over flattened features, stride = kernel.
 *
 * Matches F.avg_pool1d(x, k) applied to [N,F] (as the distillation tutorial
 * does to align teacher and student feature sizes): window j averages
 * features [j*k, j*k + k); trailing F mod k features are dropped (floor) and
 * so get no gradient.
 */
#include "tensor/ops.h"

/* Checks in [N,F] against out [N,(F-k)/k+1]; works for forward (in, out)
 * and backward (din, dout). */
static dq_status s_check(const char *op, const dq_tensor *in, const char *in_what,
                         const dq_tensor *out, const char *out_what, int kernel, dq_err *err)
{
    DQ_TRY(dq_tensor_expect_rank(in, op, in_what, 2, err));
    if (kernel < 1) return dq_fail(err, DQ_ERR_ARG, "%s: kernel %d must be >= 1", op, kernel);
    if (in->shape[1] < kernel) {
        char b[96];
        return dq_fail(err, DQ_ERR_SHAPE, "%s: kernel %d does not fit %s %s", op, kernel,
                       in_what, dq_tensor_shape_str(in, b, sizeof b));
    }
    int64_t oshape[2] = {in->shape[0], in->shape[1] / kernel};
    return dq_tensor_expect(out, op, out_what, 2, oshape, err);
}

dq_status dq_avgpool1d_forward(dq_tensor *out, const dq_tensor *in, int kernel, dq_err *err)
{
    DQ_TRY(s_check("avgpool1d", in, "input", out, "output", kernel, err));
    const int64_t N = in->shape[0], F = in->shape[1], OF = out->shape[1];
    for (int64_t n = 0; n < N; n++) {
        const float *x = in->data + n * F;
        float *y = out->data + n * OF;
        for (int64_t j = 0; j < OF; j++) {
            float s = 0.0f;
            for (int k = 0; k < kernel; k++) s += x[j * kernel + k];
            y[j] = s / (float)kernel;
        }
    }
    return DQ_OK;
}

dq_status dq_avgpool1d_backward(dq_tensor *din, const dq_tensor *dout, int kernel,
                                dq_err *err)
{
    if (!din) return DQ_OK;
    DQ_TRY(s_check("avgpool1d backward", din, "input gradient", dout, "output gradient",
                   kernel, err));
    const int64_t N = din->shape[0], F = din->shape[1], OF = dout->shape[1];
    const float inv = 1.0f / (float)kernel;
    for (int64_t n = 0; n < N; n++) {
        float *dx = din->data + n * F;
        const float *dy = dout->data + n * OF;
        for (int64_t j = 0; j < OF; j++)
            for (int k = 0; k < kernel; k++) dx[j * kernel + k] += dy[j] * inv;
    }
    return DQ_OK;
}
