/* init.c - PyTorch-default uniform initialisation. */
#include "tensor/init.h"

#include <math.h>

void dq_init_uniform_fan_in(float *w, int64_t n, int64_t fan_in, dq_rng *rng)
{
    float bound = fan_in > 0 ? 1.0f / sqrtf((float)fan_in) : 0.0f;
    for (int64_t i = 0; i < n; i++) w[i] = dq_rng_range(rng, -bound, bound);
}
