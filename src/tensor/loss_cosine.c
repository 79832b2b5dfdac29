/* loss_cosine.c - cosine-embedding loss with target 1 (feature matching).
 *
 * Same formula as PyTorch's cosine_embedding_loss (ATen native/Loss.cpp), so
 * a student trained here sees the same loss surface, including for tiny or
 * zero feature vectors:
 *   A = sum(a*a) + EPS, B = sum(b*b) + EPS, EPS = 1e-12f (a float constant)
 *   cos = sum(a*b) / sqrt(A * B), loss = mean_i (1 - cos_i)
 * There is no clamp on the norms; EPS only keeps the denominator non-zero.
 *
 * Gradient w.r.t. a (EPS is a constant):
 *   d cos / d a_j = b_j / sqrt(A*B) - cos * a_j / A
 * so d loss / d a_j = -(b_j / sqrt(A*B) - cos * a_j / A) / N.
 *
 * Inputs of rank >= 2 are flattened per sample (the recipe matches conv
 * feature maps [N,C,H,W]). Dot products are summed in double: the features are
 * thousands of elements long and cos close to 1 is what training aims for.
 */
#include "tensor/loss.h"

#include <math.h>

static const char *const s_op = "cosine_loss";

/* PyTorch declares `constexpr float EPSILON = 1e-12;`, so the value is the
 * float nearest 1e-12, added to the sums in float there and in double here. */
static const float s_eps = 1e-12f;

dq_status dq_loss_cosine(float *loss, dq_tensor *grad, const dq_tensor *a, const dq_tensor *b,
                         float scale, dq_err *err)
{
    if (!a || !a->data)
        return dq_fail(err, DQ_ERR_ARG, "%s: student features are missing", s_op);
    if (a->ndim < 2) {
        char buf[96];
        return dq_fail(err, DQ_ERR_SHAPE, "%s: student features %s must have rank >= 2", s_op,
                       dq_tensor_shape_str(a, buf, sizeof buf));
    }
    DQ_TRY(dq_tensor_expect(b, s_op, "teacher features", a->ndim, a->shape, err));
    int64_t N = a->shape[0], F = dq_tensor_inner(a, 1);
    if (N <= 0 || F <= 0) {
        char buf[96];
        return dq_fail(err, DQ_ERR_SHAPE, "%s: features %s are empty", s_op,
                       dq_tensor_shape_str(a, buf, sizeof buf));
    }
    if (grad) DQ_TRY(dq_tensor_expect(grad, s_op, "grad", a->ndim, a->shape, err));

    double eps = (double)s_eps;
    double total = 0.0;
    double gscale = (double)scale / (double)N;
    for (int64_t i = 0; i < N; i++) {
        const float *x = a->data + i * F;
        const float *y = b->data + i * F;
        double dot = 0.0, xx = 0.0, yy = 0.0;
        for (int64_t j = 0; j < F; j++) {
            dot += (double)x[j] * y[j];
            xx += (double)x[j] * x[j];
            yy += (double)y[j] * y[j];
        }
        double A = xx + eps, B = yy + eps;
        double denom = sqrt(A * B);
        double cos = dot / denom;
        total += 1.0 - cos;
        if (grad) {
            float *g = grad->data + i * F;
            double cy = -gscale / denom, cx = gscale * cos / A;
            for (int64_t j = 0; j < F; j++) g[j] += (float)(cy * y[j] + cx * x[j]);
        }
    }
    if (loss) *loss = (float)(total / (double)N);
    return DQ_OK;
}
