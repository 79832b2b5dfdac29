/* lr_schedule.c - learning-rate schedules (optim.h).
 *
 * Cosine annealing without restarts (Loshchilov & Hutter; PyTorch's
 * CosineAnnealingLR with eta_min = 0 and T_max = total steps, stepped once
 * per optimiser step): step 1 takes the base rate and the rate falls to
 * near zero at the last step. A short run's last epochs at a small rate is
 * what makes it land well: it is the usual way to get the most out of a
 * fixed, small budget of epochs. Computed in double from the step alone, so
 * a resumed run continues on the same curve.
 */
#include "tensor/optim.h"

#include <math.h>

float dq_lr_at(dq_lr_schedule s, float lr, int64_t step, int64_t total)
{
    if (s != DQ_LR_COSINE || total < 1) return lr;
    if (step < 1) step = 1;
    if (step > total) step = total;
    const double pi = 3.14159265358979323846;
    return (float)(0.5 * (double)lr * (1.0 + cos(pi * (double)(step - 1) / (double)total)));
}
