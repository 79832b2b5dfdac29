/* adam.c - Adam over one flat parameter array, as torch.optim.Adam 1.13.
 *
 * Follows _single_tensor_adam (the default path in PyTorch 1.13) operation by
 * operation in float32, with its scalars computed in double and rounded to
 * float where PyTorch passes a Python float to a float tensor op:
 *   g  = g + wd * p                       (grad.add(param, alpha=wd))
 *   m  = m * b1;  m = m + (1 - b1) * g    (exp_avg.mul_(b1).add_(g, alpha=1-b1))
 *   v  = v * b2;  v = v + ((1 - b2) * g) * g          (.mul_(b2).addcmul_(...))
 *   bc1 = 1 - b1^t, bc2 = 1 - b2^t        (double)
 *   d  = sqrt(v) / (float)sqrt(bc2) + eps
 *   p  = p + ((float)(-lr / bc1) * m) / d (param.addcdiv_(m, d, value=-lr/bc1))
 * PyTorch 2.x replaced the m update with exp_avg.lerp_(g, 1 - b1), which
 * rounds differently by an ulp; we match the version the references were
 * measured with. PyTorch's AVX2 kernels also fuse `m + alpha * g` into an
 * FMA, so agreement is to about an ulp per step, not bit for bit.
 *
 * Speed: the array is all parameters of a network, so the step is one pass.
 * The pass runs in blocks of S_BLOCK floats whose inner loops have a constant
 * trip count and no branches (weight decay is decided once per block), which
 * gcc -O2's "very cheap" vectoriser accepts. sqrtf itself does not vectorise
 * unless errno is off (-fno-math-errno), so the block's square roots use SSE
 * sqrtps where available; it is correctly rounded, exactly like sqrtf.
 */
#include "tensor/optim.h"

#include <assert.h>
#include <math.h>
#include <string.h>

#if defined(__SSE__)
#include <xmmintrin.h>
#endif

#define S_BLOCK 16

dq_adam_config dq_adam_defaults(void)
{
    return (dq_adam_config){
        .lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.0};
}

/* The float scalars of one step, as PyTorch hands them to its kernels. */
typedef struct {
    float b1, a1;  /* beta1, 1 - beta1 */
    float b2, a2;  /* beta2, 1 - beta2 */
    float wd;      /* weight decay, used only when use_wd */
    int use_wd;
    float bc2s;    /* sqrt(1 - beta2^t) */
    float eps;
    float nstep;   /* -lr / (1 - beta1^t) */
} s_adam_k;

/* x[j] = sqrt(x[j]) for the S_BLOCK floats of a block. */
static inline void s_sqrt_block(float *x)
{
#if defined(__SSE__)
    for (int j = 0; j < S_BLOCK; j += 4) _mm_storeu_ps(x + j, _mm_sqrt_ps(_mm_loadu_ps(x + j)));
#else
    for (int j = 0; j < S_BLOCK; j++) x[j] = sqrtf(x[j]);
#endif
}

/* One block of exactly S_BLOCK elements (constant trip counts vectorise). */
static inline void s_adam_block(float *restrict p, const float *restrict g, float *restrict m,
                                float *restrict v, const s_adam_k *k)
{
    const int cnt = S_BLOCK;
    const float b1 = k->b1, a1 = k->a1, b2 = k->b2, a2 = k->a2, wd = k->wd;
    const float bc2s = k->bc2s, eps = k->eps, nstep = k->nstep;
    float gb[S_BLOCK], d[S_BLOCK];

    if (k->use_wd) {
        for (int j = 0; j < cnt; j++) gb[j] = g[j] + wd * p[j];
    } else {
        for (int j = 0; j < cnt; j++) gb[j] = g[j];
    }
    for (int j = 0; j < cnt; j++) {
        float mj = m[j] * b1;
        mj = mj + a1 * gb[j];
        float vj = v[j] * b2;
        vj = vj + a2 * gb[j] * gb[j];
        m[j] = mj;
        v[j] = vj;
        d[j] = vj;
    }
    s_sqrt_block(d);
    for (int j = 0; j < cnt; j++) {
        float den = d[j] / bc2s + eps;
        p[j] = p[j] + nstep * m[j] / den;
    }
}

void dq_adam_step(float *params, const float *grads, float *m, float *v, int64_t n,
                  int64_t step, const dq_adam_config *cfg)
{
    assert(cfg && step >= 1 && n >= 0);
    assert(n == 0 || (params && grads && m && v));
    /* Python: bias_correction = 1 - beta ** step, step a float; C pow is what
     * CPython's float ** calls. */
    double bc1 = 1.0 - pow(cfg->beta1, (double)step);
    double bc2 = 1.0 - pow(cfg->beta2, (double)step);
    s_adam_k k = {
        .b1 = (float)cfg->beta1,
        .a1 = (float)(1.0 - cfg->beta1),
        .b2 = (float)cfg->beta2,
        .a2 = (float)(1.0 - cfg->beta2),
        .wd = (float)cfg->weight_decay,
        .use_wd = cfg->weight_decay != 0.0,
        .bc2s = (float)sqrt(bc2),
        .eps = (float)cfg->eps,
        .nstep = (float)(-(cfg->lr / bc1)),
    };
    int64_t i = 0;
    for (; i + S_BLOCK <= n; i += S_BLOCK) s_adam_block(params + i, grads + i, m + i, v + i, &k);
    if (i == n) return;
    /* The tail runs through the same block code on zero-padded copies: the
     * padding (g = m = v = p = 0) computes 0 / eps = 0 and is dropped. */
    float tp[S_BLOCK] = {0}, tg[S_BLOCK] = {0}, tm[S_BLOCK] = {0}, tv[S_BLOCK] = {0};
    int64_t rest = n - i;
    memcpy(tp, params + i, (size_t)rest * sizeof(float));
    memcpy(tg, grads + i, (size_t)rest * sizeof(float));
    memcpy(tm, m + i, (size_t)rest * sizeof(float));
    memcpy(tv, v + i, (size_t)rest * sizeof(float));
    s_adam_block(tp, tg, tm, tv, &k);
    memcpy(params + i, tp, (size_t)rest * sizeof(float));
    memcpy(m + i, tm, (size_t)rest * sizeof(float));
    memcpy(v + i, tv, (size_t)rest * sizeof(float));
}
