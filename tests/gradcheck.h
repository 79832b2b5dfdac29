/* gradcheck.h - shared helpers for the numerical tests.
 *
 * Gradients are checked against central finite differences computed in
 * double precision on a double reference implementation of the same
 * function (written naively in the test), and the float forward is checked
 * against that reference. This keeps finite differences free of float32
 * rounding noise while still testing our float code.
 */
#ifndef DQ_TEST_GRADCHECK_H
#define DQ_TEST_GRADCHECK_H

#include <stdint.h>

#include "tensor/rng.h"

/* A scalar function of a double vector (the reference loss). */
typedef double (*dq_test_fn)(const double *x, void *ctx);

/* g[i] = (f(x + h e_i) - f(x - h e_i)) / 2h; x is restored afterwards. */
void dq_test_numgrad(double *g, double *x, int64_t n, dq_test_fn f, void *ctx, double h);

/* Max over i of |got - want| / (atol + rtol * |want|); > 1 means failure.
 * NaN in either array returns +inf. */
double dq_test_max_err(const float *got, const double *want, int64_t n, double rtol,
                       double atol);

/* Fails the current cmocka test with a message naming `what` and the worst
 * index unless every element is within atol + rtol*|want|. */
void dq_test_assert_close(const float *got, const double *want, int64_t n, double rtol,
                          double atol, const char *what);

/* Uniform values in [lo, hi) into float and (optionally) double copies. */
void dq_test_fill(float *xf, double *xd, int64_t n, dq_rng *rng, float lo, float hi);

#endif
