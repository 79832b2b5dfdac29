/* loss_xent.c - cross-entropy with integer labels, and argmax accuracy.
 *
 * loss = mean_i (logsumexp(x_i) - x_i[label_i]), the value of PyTorch's
 * F.cross_entropy with mean reduction. Each row is three passes over K
 * logits (max, sum of exponentials, gradient) instead of a softmax buffer, so
 * the loss allocates nothing. Exponentials and sums are in double: the loss is
 * a difference of nearly equal terms when the model is confident, and K is a
 * handful of classes, so the cost is nothing next to the network.
 *
 * d loss / d x_ij = (softmax(x_i)_j - [j == label_i]) / N.
 */
#include "tensor/loss.h"

#include <assert.h>
#include <math.h>

static const char *const s_op = "cross_entropy";

/* log(sum_j exp(x_j)) with the max subtracted first, so large logits cannot
 * overflow and the largest term is exactly exp(0) = 1. */
static double s_logsumexp(const float *x, int64_t K)
{
    double mx = x[0];
    for (int64_t j = 1; j < K; j++)
        if (x[j] > mx) mx = x[j];
    double sum = 0.0;
    for (int64_t j = 0; j < K; j++) sum += exp((double)x[j] - mx);
    return mx + log(sum);
}

dq_status dq_loss_cross_entropy(float *loss, dq_tensor *grad, const dq_tensor *logits,
                                const int32_t *labels, float scale, dq_err *err)
{
    DQ_TRY(dq_tensor_expect_rank(logits, s_op, "logits", 2, err));
    int64_t N = logits->shape[0], K = logits->shape[1];
    if (N <= 0 || K <= 0)
        return dq_fail(err, DQ_ERR_SHAPE, "%s: logits [%lld, %lld] are empty", s_op,
                       (long long)N, (long long)K);
    if (!labels) return dq_fail(err, DQ_ERR_ARG, "%s: labels are missing", s_op);
    for (int64_t i = 0; i < N; i++) {
        if (labels[i] < 0 || labels[i] >= K)
            return dq_fail(err, DQ_ERR_ARG, "%s: label %d of sample %lld is outside [0, %lld)",
                           s_op, (int)labels[i], (long long)i, (long long)K);
    }
    if (grad) DQ_TRY(dq_tensor_expect(grad, s_op, "grad", 2, logits->shape, err));

    double total = 0.0;
    double gscale = (double)scale / (double)N;
    for (int64_t i = 0; i < N; i++) {
        const float *x = logits->data + i * K;
        double lse = s_logsumexp(x, K);
        total += lse - (double)x[labels[i]];
        if (grad) {
            float *g = grad->data + i * K;
            for (int64_t j = 0; j < K; j++) {
                double p = exp((double)x[j] - lse);
                g[j] += (float)(gscale * (p - (j == labels[i] ? 1.0 : 0.0)));
            }
        }
    }
    if (loss) *loss = (float)(total / (double)N);
    return DQ_OK;
}

int64_t dq_count_correct(const dq_tensor *logits, const int32_t *labels)
{
    assert(logits && logits->ndim == 2 && labels);
    int64_t N = logits->shape[0], K = logits->shape[1];
    int64_t correct = 0;
    for (int64_t i = 0; i < N && K > 0; i++) {
        const float *x = logits->data + i * K;
        int64_t best = 0; /* strict > keeps the first of equal maxima, as torch.argmax */
        for (int64_t j = 1; j < K; j++)
            if (x[j] > x[best]) best = j;
        if (best == labels[i]) correct++;
    }
    return correct;
}
