/* optim.h - Adam and SGD with momentum over flat parameter arrays.
 *
 * Parameters, gradients and optimiser moments are each one contiguous array
 * (the network carves them into named tensors), so a step is one loop.
 * Formulas follow PyTorch's torch.optim (non-foreach path) so that the same
 * gradients give the same parameters up to float rounding.
 */
#ifndef DQ_OPTIM_H
#define DQ_OPTIM_H

#include <stdint.h>

#include "base/status.h"

/* Hyperparameters are doubles like the Python floats torch.optim gets: it
 * computes 1 - beta and the bias corrections in double and only then rounds to
 * float, and a float 0.999 would shift 1 - beta2 by 1.3e-5 relative. */
typedef struct {
    double lr;           /* 1e-3 */
    double beta1;        /* 0.9 */
    double beta2;        /* 0.999 */
    double eps;          /* 1e-8 */
    double weight_decay; /* 0: L2 added to the gradient, as torch.optim.Adam */
} dq_adam_config;

dq_adam_config dq_adam_defaults(void);

/* One Adam step; step is the 1-based step count AFTER incrementing (t).
 * m and v hold n floats each and start at zero. The four arrays must not
 * overlap. */
void dq_adam_step(float *params, const float *grads, float *m, float *v, int64_t n,
                  int64_t step, const dq_adam_config *cfg);

typedef struct {
    float lr;
    float momentum;     /* 0.9 typical; 0 = plain SGD */
    float weight_decay;
    float dampening;    /* 0 */
    int nesterov;       /* 0 */
} dq_sgd_config;

dq_sgd_config dq_sgd_defaults(float lr);

/* Learning-rate schedules (lr_schedule.c). */
typedef enum { DQ_LR_CONSTANT, DQ_LR_COSINE } dq_lr_schedule;

/* The rate of 1-based optimiser step `step` of `total`: constant: lr;
 * cosine: lr * (1 + cos(pi * (step - 1) / total)) / 2, lr at step 1 and
 * near 0 at the last. */
float dq_lr_at(dq_lr_schedule s, float lr, int64_t step, int64_t total);

/* One SGD step; velocity holds n floats (zero before the first step; may be
 * NULL when momentum is 0, as PyTorch then keeps no buffer).
 * first_step != 0 initialises the buffer with the gradient as PyTorch does. */
void dq_sgd_step(float *params, const float *grads, float *velocity, int64_t n, int first_step,
                 const dq_sgd_config *cfg);

#endif
