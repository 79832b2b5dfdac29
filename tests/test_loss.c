/* test_loss.c - losses: hand-computed values, finite-difference gradients,
 * scale/additivity, weighted recipes, error reporting, accuracy counting.
 *
 * Every gradient is compared with central differences of a naive double
 * reference written here (tests/gradcheck.h); every value with either a
 * number worked out by hand or that reference.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "gradcheck.h"
#include "tensor/loss.h"
#include "tensor/rng.h"

#define MAXN 64

/* ---- naive double references ------------------------------------------------ */

typedef struct {
    int64_t N, K;          /* rows and columns (F for cosine, numel for mse: N=1) */
    const int32_t *labels; /* cross-entropy */
    const double *other;   /* teacher logits / target features */
    double T;              /* kd temperature */
    double w_ce, w_kd, w_cos, w_mse; /* weighted recipe */
} ref_ctx;

static double ref_ce(const double *x, void *vctx)
{
    const ref_ctx *c = vctx;
    double total = 0.0;
    for (int64_t i = 0; i < c->N; i++) {
        double sum = 0.0;
        for (int64_t j = 0; j < c->K; j++) sum += exp(x[i * c->K + j]);
        total += log(sum) - x[i * c->K + c->labels[i]];
    }
    return total / (double)c->N;
}

static double ref_kd(const double *s, void *vctx)
{
    const ref_ctx *c = vctx;
    double total = 0.0;
    for (int64_t i = 0; i < c->N; i++) {
        double zs = 0.0, zt = 0.0;
        for (int64_t j = 0; j < c->K; j++) {
            zs += exp(s[i * c->K + j] / c->T);
            zt += exp(c->other[i * c->K + j] / c->T);
        }
        for (int64_t j = 0; j < c->K; j++) {
            double p = exp(c->other[i * c->K + j] / c->T) / zt;
            double logq = log(exp(s[i * c->K + j] / c->T) / zs);
            total -= p * logq;
        }
    }
    return total / (double)c->N * c->T * c->T;
}

static double ref_cos(const double *a, void *vctx)
{
    const ref_ctx *c = vctx;
    const double eps = (double)1e-12f; /* PyTorch's `constexpr float EPSILON` */
    double total = 0.0;
    for (int64_t i = 0; i < c->N; i++) {
        double dot = 0.0, aa = 0.0, bb = 0.0;
        for (int64_t j = 0; j < c->K; j++) {
            double x = a[i * c->K + j], y = c->other[i * c->K + j];
            dot += x * y;
            aa += x * x;
            bb += y * y;
        }
        total += 1.0 - dot / sqrt((aa + eps) * (bb + eps));
    }
    return total / (double)c->N;
}

static double ref_mse(const double *a, void *vctx)
{
    const ref_ctx *c = vctx;
    double total = 0.0;
    for (int64_t i = 0; i < c->N * c->K; i++) total += (a[i] - c->other[i]) * (a[i] - c->other[i]);
    return total / (double)(c->N * c->K);
}

static double ref_mix(const double *s, void *vctx)
{
    const ref_ctx *c = vctx;
    return c->w_ce * ref_ce(s, vctx) + c->w_kd * ref_kd(s, vctx) + c->w_cos * ref_cos(s, vctx) +
           c->w_mse * ref_mse(s, vctx);
}

/* |got - want| <= tol, reported with both values (cmocka's float assert casts
 * only the first token of an expression and prints few digits). */
#define assert_near(got, want, tol) s_near((double)(got), (double)(want), (double)(tol), #got)
static void s_near(double got, double want, double tol, const char *what)
{
    if (!(fabs(got - want) <= tol)) fail_msg("%s: got %.9g, want %.9g (tol %.3g)", what, got, want, tol);
}

/* Checks grad (float, from our code) against central differences of f. */
static void check_grad(const float *grad, double *x, int64_t n, dq_test_fn f, ref_ctx *c,
                       const char *what)
{
    double num[MAXN * 8];
    assert_true(n <= MAXN * 8);
    dq_test_numgrad(num, x, n, f, c, 1e-4);
    dq_test_assert_close(grad, num, n, 1e-5, 1e-7, what);
}

/* ---- cross-entropy ----------------------------------------------------------- */

static void test_ce_hand_values(void **state)
{
    (void)state;
    float x[6] = {1, 2, 3, 1, 2, 3};
    int32_t lab[2] = {2, 0};
    float g[6] = {0};
    dq_tensor t = dq_tensor_view2(x, 1, 3), gt = dq_tensor_view2(g, 1, 3);
    float loss = 0;
    dq_err err = {{0}};
    /* log(e^1 + e^2 + e^3) - 3 */
    assert_int_equal(dq_loss_cross_entropy(&loss, &gt, &t, lab, 1.0f, &err), DQ_OK);
    assert_near(loss, 0.40760596444438, 1e-7);
    /* softmax([1,2,3]) = [0.09003057, 0.24472847, 0.66524096], minus one-hot */
    double want[3] = {0.09003057, 0.24472847, 0.66524096 - 1.0};
    dq_test_assert_close(g, want, 3, 1e-6, 1e-8, "ce grad");
    /* two samples, mean of 0.40760596 and 2.40760596 */
    t = dq_tensor_view2(x, 2, 3);
    assert_int_equal(dq_loss_cross_entropy(&loss, NULL, &t, lab, 1.0f, &err), DQ_OK);
    assert_near(loss, 1.40760596444438, 2e-7);
}

static void test_ce_large_logits_are_stable(void **state)
{
    (void)state;
    float x[3] = {1000.0f, 0.0f, -1000.0f};
    float g[3] = {0};
    dq_tensor t = dq_tensor_view2(x, 1, 3), gt = dq_tensor_view2(g, 1, 3);
    dq_err err = {{0}};
    float loss = -1;
    int32_t lab = 0;
    assert_int_equal(dq_loss_cross_entropy(&loss, &gt, &t, &lab, 1.0f, &err), DQ_OK);
    assert_near(loss, 0.0f, 1e-6);
    lab = 2;
    assert_int_equal(dq_loss_cross_entropy(&loss, &gt, &t, &lab, 1.0f, &err), DQ_OK);
    assert_near(loss, 2000.0f, 1e-3);
    /* both gradients summed: [1-1, 0, 0] + [1, 0, -1] */
    double want[3] = {1.0, 0.0, -1.0};
    dq_test_assert_close(g, want, 3, 1e-6, 1e-6, "ce grad at large logits");
}

static void test_ce_gradcheck(void **state)
{
    (void)state;
    enum { N = 5, K = 7 };
    float x[N * K], g[N * K] = {0};
    double xd[N * K];
    int32_t lab[N] = {0, 6, 3, 3, 1};
    dq_rng rng;
    dq_rng_seed(&rng, 11);
    dq_test_fill(x, xd, N * K, &rng, -3.0f, 3.0f);
    dq_tensor t = dq_tensor_view2(x, N, K), gt = dq_tensor_view2(g, N, K);
    dq_err err = {{0}};
    float loss;
    assert_int_equal(dq_loss_cross_entropy(&loss, &gt, &t, lab, 1.0f, &err), DQ_OK);
    ref_ctx c = {.N = N, .K = K, .labels = lab};
    double want = ref_ce(xd, &c);
    assert_true(fabs(loss - want) <= 1e-6 * fabs(want));
    check_grad(g, xd, N * K, ref_ce, &c, "ce grad");
}

static void test_ce_errors(void **state)
{
    (void)state;
    float x[6] = {1, 2, 3, 4, 5, 6}, g[6] = {7, 7, 7, 7, 7, 7};
    dq_tensor t = dq_tensor_view2(x, 2, 3), gt = dq_tensor_view2(g, 2, 3);
    dq_err err = {{0}};
    float loss = 0;
    int32_t bad_hi[2] = {0, 3}, bad_lo[2] = {-1, 0}, ok[2] = {0, 2};
    assert_int_equal(dq_loss_cross_entropy(&loss, &gt, &t, bad_hi, 1.0f, &err), DQ_ERR_ARG);
    assert_string_equal(err.msg, "cross_entropy: label 3 of sample 1 is outside [0, 3)");
    assert_int_equal(dq_loss_cross_entropy(&loss, &gt, &t, bad_lo, 1.0f, &err), DQ_ERR_ARG);
    assert_string_equal(err.msg, "cross_entropy: label -1 of sample 0 is outside [0, 3)");
    for (int i = 0; i < 6; i++) assert_true(g[i] == 7.0f); /* untouched on error */

    dq_tensor small = dq_tensor_view2(g, 3, 2);
    assert_int_equal(dq_loss_cross_entropy(&loss, &small, &t, ok, 1.0f, &err), DQ_ERR_SHAPE);
    assert_non_null(strstr(err.msg, "grad"));
    int64_t s1[1] = {6};
    dq_tensor flat = dq_tensor_view(x, 1, s1);
    assert_int_equal(dq_loss_cross_entropy(&loss, NULL, &flat, ok, 1.0f, &err), DQ_ERR_SHAPE);
    assert_int_equal(dq_loss_cross_entropy(&loss, NULL, &t, NULL, 1.0f, &err), DQ_ERR_ARG);
    dq_tensor empty = dq_tensor_view2(x, 0, 3);
    assert_int_equal(dq_loss_cross_entropy(&loss, NULL, &empty, ok, 1.0f, &err), DQ_ERR_SHAPE);
}

/* ---- knowledge distillation --------------------------------------------------- */

static void test_kd_hand_T2(void **state)
{
    (void)state;
    float s[6] = {1.0f, 2.0f, 3.0f, 0.5f, -1.0f, 2.0f};
    float t[6] = {3.0f, 1.0f, 0.25f, 0.0f, 0.0f, 1.0f};
    float g[6] = {0};
    dq_tensor st = dq_tensor_view2(s, 2, 3), tt = dq_tensor_view2(t, 2, 3);
    dq_tensor gt = dq_tensor_view2(g, 2, 3);
    dq_err err = {{0}};
    float loss;
    assert_int_equal(dq_loss_kd(&loss, &gt, &st, &tt, 2.0f, 1.0f, &err), DQ_OK);

    /* By the book: p = softmax(t/2), q = softmax(s/2),
     * loss = -sum p log q / 2 * 4, grad = 2 (q - p) / 2. */
    double want_loss = 0.0, want_g[6];
    for (int i = 0; i < 2; i++) {
        double zp = 0, zq = 0;
        for (int j = 0; j < 3; j++) {
            zp += exp(t[i * 3 + j] / 2.0);
            zq += exp(s[i * 3 + j] / 2.0);
        }
        for (int j = 0; j < 3; j++) {
            double p = exp(t[i * 3 + j] / 2.0) / zp, q = exp(s[i * 3 + j] / 2.0) / zq;
            want_loss -= p * log(q);
            want_g[i * 3 + j] = 2.0 * (q - p) / 2.0;
        }
    }
    want_loss = want_loss / 2.0 * 4.0;
    assert_true(fabs(loss - want_loss) <= 1e-6 * want_loss);
    dq_test_assert_close(g, want_g, 6, 1e-6, 1e-8, "kd grad T=2");
    /* the gradient of each row sums to zero (softmax minus softmax) */
    assert_near(g[0] + g[1] + g[2], 0.0f, 1e-7);
}

static void test_kd_gradcheck(void **state)
{
    (void)state;
    enum { N = 3, K = 5 };
    float s[N * K], t[N * K], g[N * K] = {0};
    double sd[N * K], td[N * K];
    dq_rng rng;
    dq_rng_seed(&rng, 12);
    dq_test_fill(s, sd, N * K, &rng, -4.0f, 4.0f);
    dq_test_fill(t, td, N * K, &rng, -6.0f, 6.0f);
    dq_tensor st = dq_tensor_view2(s, N, K), tt = dq_tensor_view2(t, N, K);
    dq_tensor gt = dq_tensor_view2(g, N, K);
    dq_err err = {{0}};
    float loss;
    assert_int_equal(dq_loss_kd(&loss, &gt, &st, &tt, 3.0f, 1.0f, &err), DQ_OK);
    ref_ctx c = {.N = N, .K = K, .other = td, .T = 3.0};
    double want = ref_kd(sd, &c);
    assert_true(fabs(loss - want) <= 1e-6 * fabs(want));
    check_grad(g, sd, N * K, ref_kd, &c, "kd grad T=3");
}

static void test_kd_T_squared_scaling(void **state)
{
    (void)state;
    enum { N = 2, K = 4 };
    float s[N * K] = {0.3f, -1.2f, 2.5f, 0.0f, 1.0f, 1.5f, -0.5f, 4.0f};
    float t[N * K] = {2.0f, -3.0f, 1.0f, 0.5f, -1.0f, 3.0f, 0.0f, 2.0f};
    float g[N * K] = {0};
    dq_tensor st = dq_tensor_view2(s, N, K), tt = dq_tensor_view2(t, N, K);
    dq_tensor gt = dq_tensor_view2(g, N, K);
    dq_err err = {{0}};
    float loss4, loss1;
    const double T = 4.0;
    assert_int_equal(dq_loss_kd(&loss4, &gt, &st, &tt, 4.0f, 1.0f, &err), DQ_OK);
    /* grad = T (softmax(s/T) - softmax(t/T)) / N, the T^2 of the loss times 1/T */
    double want[N * K];
    for (int i = 0; i < N; i++) {
        double zs = 0, zt = 0;
        for (int j = 0; j < K; j++) {
            zs += exp(s[i * K + j] / T);
            zt += exp(t[i * K + j] / T);
        }
        for (int j = 0; j < K; j++)
            want[i * K + j] =
                T * (exp(s[i * K + j] / T) / zs - exp(t[i * K + j] / T) / zt) / N;
    }
    dq_test_assert_close(g, want, N * K, 1e-6, 1e-8, "kd grad T=4");
    /* loss(s, t, T) = T^2 loss(s/T, t/T, 1); dividing by 4 is exact in float */
    float s4[N * K], t4[N * K];
    for (int i = 0; i < N * K; i++) {
        s4[i] = s[i] / 4.0f;
        t4[i] = t[i] / 4.0f;
    }
    dq_tensor s4t = dq_tensor_view2(s4, N, K), t4t = dq_tensor_view2(t4, N, K);
    assert_int_equal(dq_loss_kd(&loss1, NULL, &s4t, &t4t, 1.0f, 1.0f, &err), DQ_OK);
    assert_near(loss4, 16.0 * loss1, 1e-6 * loss4);
}

static void test_kd_errors(void **state)
{
    (void)state;
    float s[8] = {0}, t[8] = {0}, g[8] = {0};
    dq_tensor st = dq_tensor_view2(s, 2, 3), tt = dq_tensor_view2(t, 2, 4);
    dq_tensor gt = dq_tensor_view2(g, 2, 3);
    st.name = "student.out";
    tt.name = "teacher.out";
    dq_err err = {{0}};
    float loss;
    assert_int_equal(dq_loss_kd(&loss, &gt, &st, &tt, 2.0f, 1.0f, &err), DQ_ERR_SHAPE);
    assert_string_equal(err.msg,
                        "kd_loss: teacher logits teacher.out has shape [2, 4], expected [2, 3]");
    tt = dq_tensor_view2(t, 2, 3);
    assert_int_equal(dq_loss_kd(&loss, &gt, &st, &tt, 0.0f, 1.0f, &err), DQ_ERR_ARG);
    assert_string_equal(err.msg, "kd_loss: temperature 0 must be finite and > 0");
    assert_int_equal(dq_loss_kd(&loss, &gt, &st, &tt, -2.0f, 1.0f, &err), DQ_ERR_ARG);
    assert_int_equal(dq_loss_kd(&loss, &gt, &st, &tt, NAN, 1.0f, &err), DQ_ERR_ARG);
    assert_int_equal(dq_loss_kd(&loss, &gt, &st, &tt, INFINITY, 1.0f, &err), DQ_ERR_ARG);
    dq_tensor gbad = dq_tensor_view2(g, 3, 2);
    assert_int_equal(dq_loss_kd(&loss, &gbad, &st, &tt, 2.0f, 1.0f, &err), DQ_ERR_SHAPE);
    for (int i = 0; i < 8; i++) assert_true(g[i] == 0.0f);
}

/* ---- cosine embedding --------------------------------------------------------- */

static void test_cosine_hand_values(void **state)
{
    (void)state;
    /* orthogonal (cos 0), 45 degrees (cos 1/sqrt 2), parallel (cos 1) */
    float a[6] = {1, 0, 1, 1, 1, 2}, b[6] = {0, 1, 1, 0, 2, 4};
    dq_tensor at = dq_tensor_view2(a, 3, 2), bt = dq_tensor_view2(b, 3, 2);
    dq_err err = {{0}};
    float loss;
    assert_int_equal(dq_loss_cosine(&loss, NULL, &at, &bt, 1.0f, &err), DQ_OK);
    assert_near(loss, (1.0 + (1.0 - 0.70710678118655) + 0.0) / 3.0, 1e-7);
}

static void test_cosine_epsilon_is_pytorchs(void **state)
{
    (void)state;
    /* |a|^2 = |b|^2 ~ 1e-12, the size of EPSILON: PyTorch's formula gives
     * cos ~ 1e-12 / (1e-12 + 1e-12) ~ 0.5, where a norm clamp at 1e-8 would
     * give cos = 1 and loss 0. */
    float a[2] = {1e-6f, 0.0f}, b[2] = {1e-6f, 0.0f};
    dq_tensor at = dq_tensor_view2(a, 1, 2), bt = dq_tensor_view2(b, 1, 2);
    dq_err err = {{0}};
    float loss;
    assert_int_equal(dq_loss_cosine(&loss, NULL, &at, &bt, 1.0f, &err), DQ_OK);
    double sq = (double)1e-6f * (double)1e-6f, eps = (double)1e-12f;
    assert_near(loss, 1.0 - sq / (sq + eps), 1e-6);
    assert_true(loss > 0.45f && loss < 0.55f);

    /* a zero student vector: cos = 0, loss 1, and a finite gradient
     * -b / sqrt(eps * (|b|^2 + eps)) */
    float z[2] = {0.0f, 0.0f}, y[2] = {3.0f, 4.0f}, g[2] = {0};
    dq_tensor zt = dq_tensor_view2(z, 1, 2), yt = dq_tensor_view2(y, 1, 2);
    dq_tensor gt = dq_tensor_view2(g, 1, 2);
    assert_int_equal(dq_loss_cosine(&loss, &gt, &zt, &yt, 1.0f, &err), DQ_OK);
    assert_near(loss, 1.0f, 0.0);
    double d = sqrt(eps * (25.0 + eps));
    double want[2] = {-3.0 / d, -4.0 / d};
    dq_test_assert_close(g, want, 2, 1e-6, 0.0, "cosine grad at a = 0");
}

static void test_cosine_gradcheck_rank4(void **state)
{
    (void)state;
    enum { N = 2, F = 2 * 2 * 3 };
    float a[N * F], b[N * F], g[N * F] = {0};
    double ad[N * F], bd[N * F];
    dq_rng rng;
    dq_rng_seed(&rng, 13);
    dq_test_fill(a, ad, N * F, &rng, -1.0f, 1.0f);
    dq_test_fill(b, bd, N * F, &rng, -1.0f, 1.0f);
    dq_tensor at = dq_tensor_view4(a, N, 2, 2, 3), bt = dq_tensor_view4(b, N, 2, 2, 3);
    dq_tensor gt = dq_tensor_view4(g, N, 2, 2, 3);
    dq_err err = {{0}};
    float loss;
    assert_int_equal(dq_loss_cosine(&loss, &gt, &at, &bt, 1.0f, &err), DQ_OK);
    ref_ctx c = {.N = N, .K = F, .other = bd};
    double want = ref_cos(ad, &c);
    assert_true(fabs(loss - want) <= 1e-6 * fabs(want));
    check_grad(g, ad, N * F, ref_cos, &c, "cosine grad");
}

static void test_cosine_errors(void **state)
{
    (void)state;
    float a[12] = {1}, b[12] = {1}, g[12] = {0};
    int64_t s1[1] = {12};
    dq_tensor a1 = dq_tensor_view(a, 1, s1), b1 = dq_tensor_view(b, 1, s1);
    dq_err err = {{0}};
    float loss;
    assert_int_equal(dq_loss_cosine(&loss, NULL, &a1, &b1, 1.0f, &err), DQ_ERR_SHAPE);
    assert_string_equal(err.msg, "cosine_loss: student features [12] must have rank >= 2");
    dq_tensor at = dq_tensor_view4(a, 2, 3, 2, 1), bt = dq_tensor_view4(b, 2, 2, 3, 1);
    assert_int_equal(dq_loss_cosine(&loss, NULL, &at, &bt, 1.0f, &err), DQ_ERR_SHAPE);
    assert_non_null(strstr(err.msg, "teacher features"));
    dq_tensor b2 = dq_tensor_view2(b, 2, 6);
    assert_int_equal(dq_loss_cosine(&loss, NULL, &at, &b2, 1.0f, &err), DQ_ERR_SHAPE);
    dq_tensor gt = dq_tensor_view2(g, 2, 6);
    bt = dq_tensor_view4(b, 2, 3, 2, 1);
    assert_int_equal(dq_loss_cosine(&loss, &gt, &at, &bt, 1.0f, &err), DQ_ERR_SHAPE);
    assert_non_null(strstr(err.msg, "grad"));
}

/* ---- mean squared error ------------------------------------------------------- */

static void test_mse_hand_and_gradcheck(void **state)
{
    (void)state;
    float a[4] = {1, 2, 3, 4}, b[4] = {0, 2, 5, 4}, g[4] = {0};
    dq_tensor at = dq_tensor_view2(a, 2, 2), bt = dq_tensor_view2(b, 2, 2);
    dq_tensor gt = dq_tensor_view2(g, 2, 2);
    dq_err err = {{0}};
    float loss;
    /* (1 + 0 + 4 + 0) / 4; grad 2 (a - b) / 4 */
    assert_int_equal(dq_loss_mse(&loss, &gt, &at, &bt, 1.0f, &err), DQ_OK);
    assert_near(loss, 1.25f, 0.0);
    double want[4] = {0.5, 0.0, -1.0, 0.0};
    dq_test_assert_close(g, want, 4, 0.0, 0.0, "mse grad");

    enum { N = 3, F = 5 };
    float x[N * F], y[N * F], gx[N * F] = {0};
    double xd[N * F], yd[N * F];
    dq_rng rng;
    dq_rng_seed(&rng, 14);
    dq_test_fill(x, xd, N * F, &rng, -2.0f, 2.0f);
    dq_test_fill(y, yd, N * F, &rng, -2.0f, 2.0f);
    dq_tensor xt = dq_tensor_view2(x, N, F), yt = dq_tensor_view2(y, N, F);
    dq_tensor gxt = dq_tensor_view2(gx, N, F);
    assert_int_equal(dq_loss_mse(&loss, &gxt, &xt, &yt, 1.0f, &err), DQ_OK);
    ref_ctx c = {.N = N, .K = F, .other = yd};
    assert_true(fabs(loss - ref_mse(xd, &c)) <= 1e-6 * ref_mse(xd, &c));
    check_grad(gx, xd, N * F, ref_mse, &c, "mse grad");
}

static void test_mse_errors(void **state)
{
    (void)state;
    float a[6] = {0}, b[6] = {0}, g[6] = {0};
    dq_tensor at = dq_tensor_view2(a, 2, 3), bt = dq_tensor_view2(b, 3, 2);
    bt.name = "teacher.fc1";
    dq_err err = {{0}};
    float loss;
    assert_int_equal(dq_loss_mse(&loss, NULL, &at, &bt, 1.0f, &err), DQ_ERR_SHAPE);
    assert_string_equal(err.msg, "mse_loss: target teacher.fc1 has shape [3, 2], expected [2, 3]");
    bt = dq_tensor_view2(b, 2, 3);
    dq_tensor gt = dq_tensor_view2(g, 6, 1);
    assert_int_equal(dq_loss_mse(&loss, &gt, &at, &bt, 1.0f, &err), DQ_ERR_SHAPE);
    assert_int_equal(dq_loss_mse(&loss, NULL, NULL, &bt, 1.0f, &err), DQ_ERR_ARG);
}

/* ---- scale, additivity and the weighted recipe ------------------------------- */

enum { MIX_N = 3, MIX_K = 6 };

typedef struct {
    float s[MIX_N * MIX_K], t[MIX_N * MIX_K];
    double sd[MIX_N * MIX_K], td[MIX_N * MIX_K];
    int32_t lab[MIX_N];
} mix_data;

static void mix_fill(mix_data *m)
{
    dq_rng rng;
    dq_rng_seed(&rng, 15);
    dq_test_fill(m->s, m->sd, MIX_N * MIX_K, &rng, -3.0f, 3.0f);
    dq_test_fill(m->t, m->td, MIX_N * MIX_K, &rng, -3.0f, 3.0f);
    m->lab[0] = 4;
    m->lab[1] = 0;
    m->lab[2] = 5;
}

/* Runs loss `which` (0 ce, 1 kd, 2 cosine, 3 mse) on the mix data. */
static float mix_call(mix_data *m, int which, float *grad, float scale)
{
    dq_tensor st = dq_tensor_view2(m->s, MIX_N, MIX_K), tt = dq_tensor_view2(m->t, MIX_N, MIX_K);
    dq_tensor gt = dq_tensor_view2(grad, MIX_N, MIX_K);
    dq_err err = {{0}};
    float loss = NAN;
    dq_status st_ = DQ_ERR_ARG;
    switch (which) {
    case 0: st_ = dq_loss_cross_entropy(&loss, &gt, &st, m->lab, scale, &err); break;
    case 1: st_ = dq_loss_kd(&loss, &gt, &st, &tt, 2.0f, scale, &err); break;
    case 2: st_ = dq_loss_cosine(&loss, &gt, &st, &tt, scale, &err); break;
    case 3: st_ = dq_loss_mse(&loss, &gt, &st, &tt, scale, &err); break;
    }
    assert_int_equal(st_, DQ_OK);
    return loss;
}

static void test_scale_and_additivity(void **state)
{
    (void)state;
    static mix_data m;
    mix_fill(&m);
    enum { n = MIX_N * MIX_K };
    for (int which = 0; which < 4; which++) {
        float g1[n] = {0}, g2[n], unscaled[n] = {0};
        for (int i = 0; i < n; i++) g2[i] = 0.5f; /* existing gradient must be kept */
        float l1 = mix_call(&m, which, unscaled, 1.0f);
        float la = mix_call(&m, which, g2, 0.5f);
        float lb = mix_call(&m, which, g2, 1.5f);
        (void)mix_call(&m, which, g1, 2.0f);
        assert_true(l1 == la && la == lb); /* the loss is never scaled */
        double want2[n], want1[n];
        for (int i = 0; i < n; i++) {
            want1[i] = 2.0 * unscaled[i];
            want2[i] = 0.5 + 2.0 * unscaled[i];
        }
        dq_test_assert_close(g1, want1, n, 1e-6, 1e-7, "scaled grad");
        dq_test_assert_close(g2, want2, n, 1e-6, 1e-7, "accumulated grad");
        double nz = 0;
        for (int i = 0; i < n; i++) nz += fabs(unscaled[i]);
        assert_true(nz > 1e-3); /* a non-trivial gradient was compared */
    }
}

static void test_weighted_recipe_of_all_four(void **state)
{
    (void)state;
    static mix_data m;
    mix_fill(&m);
    enum { n = MIX_N * MIX_K };
    float g[n] = {0};
    const float w[4] = {0.75f, 0.25f, 0.3f, 0.1f};
    float l[4];
    for (int which = 0; which < 4; which++) l[which] = mix_call(&m, which, g, w[which]);
    ref_ctx c = {.N = MIX_N,
                 .K = MIX_K,
                 .labels = m.lab,
                 .other = m.td,
                 .T = 2.0,
                 .w_ce = w[0],
                 .w_kd = w[1],
                 .w_cos = w[2],
                 .w_mse = w[3]};
    double total = w[0] * l[0] + w[1] * l[1] + w[2] * l[2] + w[3] * l[3];
    assert_true(fabs(total - ref_mix(m.sd, &c)) <= 1e-6 * fabs(total));
    check_grad(g, m.sd, n, ref_mix, &c, "weighted recipe grad");
}

/* ---- accuracy ------------------------------------------------------------------ */

static void test_count_correct(void **state)
{
    (void)state;
    /* row 0: tie between classes 0 and 1 -> 0 (first max, as torch.argmax)
     * row 1: max at 2; row 2: max at 0; row 3: all equal -> 0 */
    float x[12] = {2, 2, 1, -1, 0, 5, 9, 1, 1, 3, 3, 3};
    dq_tensor t = dq_tensor_view2(x, 4, 3);
    int32_t all_right[4] = {0, 2, 0, 0};
    int32_t tie_second[4] = {1, 2, 1, 2};
    assert_int_equal(dq_count_correct(&t, all_right), 4);
    assert_int_equal(dq_count_correct(&t, tie_second), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ce_hand_values),
        cmocka_unit_test(test_ce_large_logits_are_stable),
        cmocka_unit_test(test_ce_gradcheck),
        cmocka_unit_test(test_ce_errors),
        cmocka_unit_test(test_kd_hand_T2),
        cmocka_unit_test(test_kd_gradcheck),
        cmocka_unit_test(test_kd_T_squared_scaling),
        cmocka_unit_test(test_kd_errors),
        cmocka_unit_test(test_cosine_hand_values),
        cmocka_unit_test(test_cosine_epsilon_is_pytorchs),
        cmocka_unit_test(test_cosine_gradcheck_rank4),
        cmocka_unit_test(test_cosine_errors),
        cmocka_unit_test(test_mse_hand_and_gradcheck),
        cmocka_unit_test(test_mse_errors),
        cmocka_unit_test(test_scale_and_additivity),
        cmocka_unit_test(test_weighted_recipe_of_all_four),
        cmocka_unit_test(test_count_correct),
    };
    return cmocka_run_group_tests_name("loss", tests, NULL, NULL);
}
