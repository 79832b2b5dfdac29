/* loss_mse.c - mean squared error, the regressor recipe's feature loss.
 *
 * loss = sum((a - b)^2) / numel (PyTorch's MSELoss, mean reduction over every
 * element, not per sample), d loss / d a = 2 (a - b) / numel. The sum is in
 * double: feature maps have ~10^5 elements per batch and float accumulation
 * would lose digits long before that.
 */
#include "tensor/loss.h"

static const char *const s_op = "mse_loss";

dq_status dq_loss_mse(float *loss, dq_tensor *grad, const dq_tensor *a, const dq_tensor *b,
                      float scale, dq_err *err)
{
    if (!a || !a->data) return dq_fail(err, DQ_ERR_ARG, "%s: input is missing", s_op);
    DQ_TRY(dq_tensor_expect(b, s_op, "target", a->ndim, a->shape, err));
    int64_t n = dq_tensor_numel(a);
    if (a->ndim < 1 || n <= 0) {
        char buf[96];
        return dq_fail(err, DQ_ERR_SHAPE, "%s: input %s is empty", s_op,
                       dq_tensor_shape_str(a, buf, sizeof buf));
    }
    if (grad) DQ_TRY(dq_tensor_expect(grad, s_op, "grad", a->ndim, a->shape, err));

    double total = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)a->data[i] - (double)b->data[i];
        total += d * d;
    }
    if (grad) {
        double gscale = 2.0 * (double)scale / (double)n;
        for (int64_t i = 0; i < n; i++)
            grad->data[i] += (float)(gscale * ((double)a->data[i] - (double)b->data[i]));
    }
    if (loss) *loss = (float)(total / (double)n);
    return DQ_OK;
}
