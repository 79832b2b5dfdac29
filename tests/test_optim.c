/* test_optim.c - Adam and SGD against hand-computed steps, a double
 * reference, and a float statement-by-statement transcription of PyTorch
 * 1.13's _single_tensor_adam (which must agree bit for bit).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "gradcheck.h"
#include "tensor/optim.h"
#include "tensor/rng.h"

#define assert_near(got, want, tol) s_near((double)(got), (double)(want), (double)(tol), #got)
static void s_near(double got, double want, double tol, const char *what)
{
    if (!(fabs(got - want) <= tol)) fail_msg("%s: got %.9g, want %.9g (tol %.3g)", what, got, want, tol);
}

/* ---- Adam ------------------------------------------------------------------- */

static void test_adam_defaults(void **state)
{
    (void)state;
    dq_adam_config c = dq_adam_defaults();
    assert_true(c.lr == 1e-3 && c.beta1 == 0.9 && c.beta2 == 0.999);
    assert_true(c.eps == 1e-8 && c.weight_decay == 0.0);
}

static void test_adam_first_step_by_hand(void **state)
{
    (void)state;
    /* Step 1: m = 0.1 g, v = 0.001 g^2, bc1 = 0.1, bc2 = 0.001, so
     * p -= (lr / 0.1) * 0.1 g / (|g| + eps) = lr * g / (|g| + eps):
     * a move of ~lr against the sign of g, whatever |g| is. */
    float p[4] = {1.0f, -2.0f, 0.5f, 3.0f};
    float g[4] = {2.0f, -0.5f, 1e-3f, 0.0f};
    float m[4] = {0}, v[4] = {0};
    dq_adam_config c = dq_adam_defaults();
    c.lr = 0.1;
    dq_adam_step(p, g, m, v, 4, 1, &c);
    assert_near(p[0], 0.9, 1e-7);        /* 1 - 0.1 * 2 / (2 + 1e-8) */
    assert_near(p[1], -1.9, 1e-7);       /* -2 + 0.1 */
    assert_near(p[2], 0.40000099999, 1e-7); /* 0.5 - 0.1 / (1 + 1e-5) */
    assert_near(p[3], 3.0, 0.0);         /* g = 0: m = 0, no move */
    assert_near(m[0], 0.2, 1e-8);
    assert_near(v[0], 0.004, 1e-9);
    assert_near(v[1], 0.00025, 1e-10);
}

static void test_adam_weight_decay_by_hand(void **state)
{
    (void)state;
    /* g' = g + wd p: p = 1, wd = 0.5 makes g' = 0.5 from g = 0 (move -lr) and
     * g' = 0 from g = -0.5 (no move) */
    float p[2] = {1.0f, 1.0f}, g[2] = {0.0f, -0.5f}, m[2] = {0}, v[2] = {0};
    dq_adam_config c = dq_adam_defaults();
    c.lr = 0.1;
    c.weight_decay = 0.5;
    dq_adam_step(p, g, m, v, 2, 1, &c);
    assert_near(p[0], 0.9, 1e-7);
    assert_near(p[1], 1.0, 0.0);
    assert_near(m[0], 0.05, 1e-8);
}

/* torch/optim/adam.py _single_tensor_adam (1.13), non-capturable branch,
 * written out in float32 the way its tensor ops round: every op's result is
 * a float, Python-float scalars are converted to float when they meet a float
 * tensor, and the step scalars come from double arithmetic. */
static void torch_adam_float(float *param, const float *grad, float *exp_avg, float *exp_avg_sq,
                             int64_t n, int64_t step, const dq_adam_config *c)
{
    double bias_correction1 = 1.0 - pow(c->beta1, (double)step);
    double bias_correction2 = 1.0 - pow(c->beta2, (double)step);
    double step_size = c->lr / bias_correction1;
    double bias_correction2_sqrt = sqrt(bias_correction2);
    for (int64_t i = 0; i < n; i++) {
        float g = grad[i];
        if (c->weight_decay != 0) g = g + (float)c->weight_decay * param[i]; /* grad.add */
        exp_avg[i] = exp_avg[i] * (float)c->beta1;                        /* mul_ */
        exp_avg[i] = exp_avg[i] + (float)(1.0 - c->beta1) * g;             /* add_ alpha */
        exp_avg_sq[i] = exp_avg_sq[i] * (float)c->beta2;                   /* mul_ */
        exp_avg_sq[i] = exp_avg_sq[i] + (float)(1.0 - c->beta2) * g * g;   /* addcmul_ */
        float denom = sqrtf(exp_avg_sq[i]);                                /* sqrt() */
        denom = denom / (float)bias_correction2_sqrt;                      /* / python float */
        denom = denom + (float)c->eps;                                     /* add_(eps) */
        param[i] = param[i] + (float)(-step_size) * exp_avg[i] / denom;    /* addcdiv_ */
    }
}

/* The same step in double with the textbook formulas. */
static void ref_adam_double(double *p, const double *g, double *m, double *v, int64_t n,
                            int64_t t, double lr, double b1, double b2, double eps, double wd)
{
    for (int64_t i = 0; i < n; i++) {
        double gi = g[i] + wd * p[i];
        m[i] = b1 * m[i] + (1 - b1) * gi;
        v[i] = b2 * v[i] + (1 - b2) * gi * gi;
        double mhat = m[i] / (1 - pow(b1, (double)t)), vhat = v[i] / (1 - pow(b2, (double)t));
        p[i] -= lr * mhat / (sqrt(vhat) + eps);
    }
}

enum { AN = 37 }; /* two full blocks of 16 and a tail of 5 */

static void run_adam_three_steps(double wd)
{
    float p[AN + 3], m[AN + 3] = {0}, v[AN + 3] = {0};
    float tp[AN], tm[AN] = {0}, tv[AN] = {0};
    double dp[AN], dm[AN] = {0}, dv[AN] = {0};
    dq_rng rng;
    dq_rng_seed(&rng, 21);
    dq_test_fill(p, dp, AN, &rng, -1.0f, 1.0f);
    memcpy(tp, p, sizeof tp);
    float p0[AN];
    memcpy(p0, p, sizeof p0);
    for (int i = AN; i < AN + 3; i++) p[i] = m[i] = v[i] = 42.0f; /* sentinels */
    dq_adam_config c = dq_adam_defaults();
    c.lr = 1e-2;
    c.weight_decay = wd;
    for (int64_t t = 1; t <= 3; t++) {
        float g[AN];
        double dg[AN];
        dq_test_fill(g, dg, AN, &rng, -1.0f, 1.0f);
        dq_adam_step(p, g, m, v, AN, t, &c);
        torch_adam_float(tp, g, tm, tv, AN, t, &c);
        ref_adam_double(dp, dg, dm, dv, AN, t, c.lr, c.beta1, c.beta2, c.eps, wd);
        /* bit for bit with the PyTorch transcription */
        for (int i = 0; i < AN; i++) {
            if (memcmp(&p[i], &tp[i], sizeof(float)) || memcmp(&m[i], &tm[i], sizeof(float)) ||
                memcmp(&v[i], &tv[i], sizeof(float)))
                fail_msg("step %lld elem %d: p %.9g/%.9g m %.9g/%.9g v %.9g/%.9g", (long long)t,
                         i, p[i], tp[i], m[i], tm[i], v[i], tv[i]);
        }
        /* and within float rounding of exact arithmetic */
        dq_test_assert_close(p, dp, AN, 1e-6, 1e-7, "adam params vs double");
        dq_test_assert_close(m, dm, AN, 1e-5, 1e-8, "adam m vs double");
        dq_test_assert_close(v, dv, AN, 1e-5, 1e-10, "adam v vs double");
    }
    for (int i = AN; i < AN + 3; i++) assert_true(p[i] == 42.0f && m[i] == 42.0f && v[i] == 42.0f);
    /* the comparison was not vacuous: the parameters moved by ~lr per step */
    double moved = 0;
    for (int i = 0; i < AN; i++) moved = fmax(moved, fabs(p[i] - p0[i]));
    assert_true(moved > 0.015 && moved < 0.0301);
}

static void test_adam_three_steps(void **state)
{
    (void)state;
    run_adam_three_steps(0.0);
}

static void test_adam_three_steps_weight_decay(void **state)
{
    (void)state;
    run_adam_three_steps(0.1);
}

static void test_adam_tiny_and_empty(void **state)
{
    (void)state;
    dq_adam_config c = dq_adam_defaults();
    dq_adam_step(NULL, NULL, NULL, NULL, 0, 1, &c); /* no-op */
    /* n < one block goes only through the padded tail */
    float p[1] = {0.25f}, g[1] = {-3.0f}, m[1] = {0}, v[1] = {0};
    dq_adam_step(p, g, m, v, 1, 1, &c);
    assert_near(p[0], 0.251, 1e-7);
}

/* ---- SGD --------------------------------------------------------------------- */

static void test_sgd_momentum_two_steps_by_hand(void **state)
{
    (void)state;
    dq_sgd_config c = dq_sgd_defaults(0.1f);
    assert_true(c.momentum == 0.9f && c.dampening == 0.0f && !c.nesterov);
    float p[2] = {1.0f, -1.0f}, buf[2] = {0};
    float g1[2] = {0.5f, -2.0f}, g2[2] = {1.0f, 1.0f};
    /* step 1: buf = g1 = [0.5, -2]; p = [1 - 0.05, -1 + 0.2] */
    dq_sgd_step(p, g1, buf, 2, 1, &c);
    assert_near(buf[0], 0.5, 0.0);
    assert_near(p[0], 0.95, 1e-7);
    assert_near(p[1], -0.8, 1e-7);
    /* step 2: buf = 0.9 buf + g2 = [1.45, -0.8]; p = [0.95 - 0.145, -0.8 + 0.08] */
    dq_sgd_step(p, g2, buf, 2, 0, &c);
    assert_near(buf[0], 1.45, 1e-7);
    assert_near(buf[1], -0.8, 1e-7);
    assert_near(p[0], 0.805, 1e-7);
    assert_near(p[1], -0.72, 1e-7);
}

static void test_sgd_nesterov_by_hand(void **state)
{
    (void)state;
    dq_sgd_config c = dq_sgd_defaults(0.1f);
    c.nesterov = 1;
    float p[2] = {1.0f, -1.0f}, buf[2] = {0};
    float g1[2] = {0.5f, -2.0f}, g2[2] = {1.0f, 1.0f};
    /* step 1: buf = g1, d = g1 + 0.9 g1 = [0.95, -3.8], p = [0.905, -0.62] */
    dq_sgd_step(p, g1, buf, 2, 1, &c);
    assert_near(p[0], 0.905, 1e-7);
    assert_near(p[1], -0.62, 1e-7);
    /* step 2: buf = [1.45, -0.8], d = g2 + 0.9 buf = [2.305, 0.28] */
    dq_sgd_step(p, g2, buf, 2, 0, &c);
    assert_near(p[0], 0.6745, 1e-7);
    assert_near(p[1], -0.648, 1e-7);
}

static void test_sgd_weight_decay_and_dampening(void **state)
{
    (void)state;
    /* plain SGD with L2: g' = 1 + 0.01 * 2 = 1.02, p = 2 - 0.102; no buffer */
    dq_sgd_config c = dq_sgd_defaults(0.1f);
    c.momentum = 0.0f;
    c.weight_decay = 0.01f;
    float p[1] = {2.0f}, g[1] = {1.0f};
    dq_sgd_step(p, g, NULL, 1, 1, &c);
    assert_near(p[0], 1.898, 1e-6);

    /* momentum 0.9, dampening 0.5, wd 0.1, lr 1:
     * step 1: g' = 1 + 0.1 * 1 = 1.1, buf = g' (no dampening on the first
     *         step, as PyTorch clones the gradient), p = 1 - 1.1 = -0.1
     * step 2: g' = 1 + 0.1 * -0.1 = 0.99, buf = 0.9 * 1.1 + 0.5 * 0.99 = 1.485,
     *         p = -0.1 - 1.485 = -1.585 */
    c = dq_sgd_defaults(1.0f);
    c.dampening = 0.5f;
    c.weight_decay = 0.1f;
    float q[1] = {1.0f}, buf[1] = {0}, h[1] = {1.0f};
    dq_sgd_step(q, h, buf, 1, 1, &c);
    assert_near(buf[0], 1.1, 1e-7);
    assert_near(q[0], -0.1, 1e-7);
    dq_sgd_step(q, h, buf, 1, 0, &c);
    assert_near(buf[0], 1.485, 1e-6);
    assert_near(q[0], -1.585, 1e-6);
}

/* Cosine annealing: PyTorch's CosineAnnealingLR(T_max = total, eta_min = 0)
 * after step - 1 scheduler steps; values by hand (cos(pi/4) = 0.7071068). */
static void test_lr_cosine_by_hand(void **state)
{
    (void)state;
    const float want[4] = {0.1f, 0.08535534f, 0.05f, 0.01464466f};
    for (int s = 1; s <= 4; s++)
        assert_float_equal(dq_lr_at(DQ_LR_COSINE, 0.1f, s, 4), want[s - 1], 1e-7);
    /* clamped to the run; constant is the base rate at every step */
    assert_float_equal(dq_lr_at(DQ_LR_COSINE, 0.1f, 9, 4), want[3], 1e-7);
    assert_float_equal(dq_lr_at(DQ_LR_COSINE, 0.1f, 0, 4), 0.1f, 0);
    for (int s = 1; s <= 4; s++) assert_float_equal(dq_lr_at(DQ_LR_CONSTANT, 0.1f, s, 4), 0.1f, 0);
    /* strictly falling over a long run, never below 0 */
    float prev = 1.0f;
    for (int s = 2; s <= 1000; s++) {
        float lr = dq_lr_at(DQ_LR_COSINE, 1.0f, s, 1000);
        assert_true(lr < prev && lr > 0.0f);
        prev = lr;
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adam_defaults),
        cmocka_unit_test(test_adam_first_step_by_hand),
        cmocka_unit_test(test_adam_weight_decay_by_hand),
        cmocka_unit_test(test_adam_three_steps),
        cmocka_unit_test(test_adam_three_steps_weight_decay),
        cmocka_unit_test(test_adam_tiny_and_empty),
        cmocka_unit_test(test_sgd_momentum_two_steps_by_hand),
        cmocka_unit_test(test_sgd_nesterov_by_hand),
        cmocka_unit_test(test_sgd_weight_decay_and_dampening),
        cmocka_unit_test(test_lr_cosine_by_hand),
    };
    return cmocka_run_group_tests_name("optim", tests, NULL, NULL);
}
