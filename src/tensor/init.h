/* init.h - PyTorch-default parameter initialisation from a seeded rng.
 *
 * nn.Conv2d and nn.Linear use kaiming_uniform_(a=sqrt(5)) for weights, i.e.
 * U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the same bound for biases.
 */
#ifndef DQ_INIT_H
#define DQ_INIT_H

#include <stdint.h>

#include "tensor/rng.h"

/* Fills w[0..n) with U(-1/sqrt(fan_in), 1/sqrt(fan_in)). */
void dq_init_uniform_fan_in(float *w, int64_t n, int64_t fan_in, dq_rng *rng);

#endif
