/* gradcheck.c - finite differences and closeness checks for tests. */
#include "gradcheck.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <cmocka.h>

void dq_test_numgrad(double *g, double *x, int64_t n, dq_test_fn f, void *ctx, double h)
{
    for (int64_t i = 0; i < n; i++) {
        double old = x[i];
        x[i] = old + h;
        double fp = f(x, ctx);
        x[i] = old - h;
        double fm = f(x, ctx);
        x[i] = old;
        g[i] = (fp - fm) / (2.0 * h);
    }
}

double dq_test_max_err(const float *got, const double *want, int64_t n, double rtol,
                       double atol)
{
    double worst = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(got[i]) || isnan(want[i])) return INFINITY;
        double e = fabs((double)got[i] - want[i]) / (atol + rtol * fabs(want[i]));
        if (e > worst) worst = e;
    }
    return worst;
}

void dq_test_assert_close(const float *got, const double *want, int64_t n, double rtol,
                          double atol, const char *what)
{
    for (int64_t i = 0; i < n; i++) {
        double tol = atol + rtol * fabs(want[i]);
        if (isnan(got[i]) || isnan(want[i]) || fabs((double)got[i] - want[i]) > tol) {
            fail_msg("%s[%lld]: got %.9g, want %.9g (tol %.3g)", what, (long long)i,
                     (double)got[i], want[i], tol);
        }
    }
}

void dq_test_fill(float *xf, double *xd, int64_t n, dq_rng *rng, float lo, float hi)
{
    for (int64_t i = 0; i < n; i++) {
        float v = dq_rng_range(rng, lo, hi);
        if (xf) xf[i] = v;
        if (xd) xd[i] = (double)v;
    }
}
