/* sgd.c - SGD with momentum over one flat parameter array, as torch.optim.SGD.
 *
 * Follows _single_tensor_sgd operation by operation in float32:
 *   g   = g + wd * p                          (d_p.add(param, alpha=wd))
 *   buf = g on the first step, else buf = buf * mu; buf = buf + (1 - damp) * g
 *   g   = nesterov ? g + mu * buf : buf       (momentum != 0 only)
 *   p   = p + (-lr) * g                       (param.add_(d_p, alpha=-lr))
 * With momentum 0 PyTorch keeps no buffer and neither do we (velocity may be
 * NULL). The recipes train with Adam, so this is one plain loop whose option
 * tests are loop-invariant (predicted perfectly) rather than blocked like adam.c.
 */
#include "tensor/optim.h"

#include <assert.h>

dq_sgd_config dq_sgd_defaults(float lr)
{
    return (dq_sgd_config){
        .lr = lr, .momentum = 0.9f, .weight_decay = 0.0f, .dampening = 0.0f, .nesterov = 0};
}

void dq_sgd_step(float *params, const float *grads, float *velocity, int64_t n, int first_step,
                 const dq_sgd_config *cfg)
{
    assert(cfg && n >= 0);
    assert(n == 0 || (params && grads && (velocity || cfg->momentum == 0.0f)));
    float *restrict p = params;
    const float *restrict g = grads;
    float *restrict buf = velocity;
    const float wd = cfg->weight_decay, mu = cfg->momentum, nlr = -cfg->lr;
    /* Python computes 1 - dampening in double before it becomes a float. */
    const float keep = (float)(1.0 - (double)cfg->dampening);
    const int use_wd = wd != 0.0f;

    if (mu == 0.0f) {
        if (use_wd) {
            for (int64_t i = 0; i < n; i++) p[i] = p[i] + nlr * (g[i] + wd * p[i]);
        } else {
            for (int64_t i = 0; i < n; i++) p[i] = p[i] + nlr * g[i];
        }
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        float gi = use_wd ? g[i] + wd * p[i] : g[i];
        float b = first_step ? gi : buf[i] * mu;
        if (!first_step) b = b + keep * gi;
        buf[i] = b;
        float d = cfg->nesterov ? gi + mu * b : b;
        p[i] = p[i] + nlr * d;
    }
}
