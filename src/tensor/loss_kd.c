/* loss_kd.c - soft-target distillation loss (Hinton et al.), student side.
 *
 * Exactly the PyTorch knowledge-distillation tutorial's term:
 *   p = softmax(t/T), log q = log_softmax(s/T)
 *   loss = -sum_ij p_ij log q_ij / N * T^2
 * This is the cross-entropy form, not KL: it is larger than KL(p||q) by the
 * teacher's entropy, which has no gradient, so training is the same.
 *
 * Gradient: d(-sum_k p_k log q_k)/ds_j = (q_j - p_j) / T because sum_k p_k = 1,
 * so with the T^2/N factor d loss/ds_j = T * (q_j - p_j) / N. The T^2 keeps the
 * soft term's gradient on the scale of the hard-label term as T grows.
 *
 * Both log-partition functions use max subtraction and double sums; nothing is
 * allocated (each row is a few passes over K logits).
 */
#include "tensor/loss.h"

#include <math.h>

static const char *const s_op = "kd_loss";

/* log sum_j exp(x_j / T), stable for any logits. */
static double s_logsumexp_t(const float *x, int64_t K, double T)
{
    double mx = (double)x[0] / T;
    for (int64_t j = 1; j < K; j++) {
        double z = (double)x[j] / T;
        if (z > mx) mx = z;
    }
    double sum = 0.0;
    for (int64_t j = 0; j < K; j++) sum += exp((double)x[j] / T - mx);
    return mx + log(sum);
}

dq_status dq_loss_kd(float *loss, dq_tensor *grad, const dq_tensor *student,
                     const dq_tensor *teacher, float T, float scale, dq_err *err)
{
    DQ_TRY(dq_tensor_expect_rank(student, s_op, "student logits", 2, err));
    DQ_TRY(dq_tensor_expect(teacher, s_op, "teacher logits", 2, student->shape, err));
    int64_t N = student->shape[0], K = student->shape[1];
    if (N <= 0 || K <= 0)
        return dq_fail(err, DQ_ERR_SHAPE, "%s: logits [%lld, %lld] are empty", s_op,
                       (long long)N, (long long)K);
    if (!(T > 0.0f) || isinf(T))
        return dq_fail(err, DQ_ERR_ARG, "%s: temperature %g must be finite and > 0", s_op,
                       (double)T);
    if (grad) DQ_TRY(dq_tensor_expect(grad, s_op, "grad", 2, student->shape, err));

    double Td = (double)T;
    double total = 0.0;
    double gscale = (double)scale * Td / (double)N;
    for (int64_t i = 0; i < N; i++) {
        const float *s = student->data + i * K;
        const float *t = teacher->data + i * K;
        double lse_s = s_logsumexp_t(s, K, Td);
        double lse_t = s_logsumexp_t(t, K, Td);
        double row = 0.0;
        for (int64_t j = 0; j < K; j++) {
            double p = exp((double)t[j] / Td - lse_t);
            row -= p * ((double)s[j] / Td - lse_s);
        }
        total += row;
        if (grad) {
            float *g = grad->data + i * K;
            for (int64_t j = 0; j < K; j++) {
                double p = exp((double)t[j] / Td - lse_t);
                double q = exp((double)s[j] / Td - lse_s);
                g[j] += (float)(gscale * (q - p));
            }
        }
    }
    if (loss) *loss = (float)(total / (double)N * Td * Td);
    return DQ_OK;
}
