/* tensor.c - allocation, views and shape checks for dq_tensor. */
#include "tensor/tensor.h"

#include "base/shape.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

dq_status dq_tensor_alloc(dq_tensor *t, int ndim, const int64_t *shape, dq_err *err)
{
    memset(t, 0, sizeof *t);
    if (ndim < 0 || ndim > DQ_MAX_DIMS)
        return dq_fail(err, DQ_ERR_ARG, "tensor rank %d outside 0..%d", ndim, DQ_MAX_DIMS);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (shape[i] > 0 && n > INT64_MAX / 4 / shape[i]))
            return dq_fail(err, DQ_ERR_ARG, "tensor dim %d has invalid size %lld", i,
                           (long long)shape[i]);
        n *= shape[i];
    }
    size_t bytes = (size_t)n * sizeof(float);
    size_t rounded = (bytes + 63) / 64 * 64;
    float *data = NULL;
    if (rounded > 0) {
        data = aligned_alloc(64, rounded);
        if (!data)
            return dq_fail(err, DQ_ERR_NOMEM, "cannot allocate %zu bytes for a tensor", bytes);
        memset(data, 0, rounded);
    }
    t->data = data;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->owns = true;
    return DQ_OK;
}

void dq_tensor_free(dq_tensor *t)
{
    if (!t) return;
    if (t->owns) free(t->data);
    memset(t, 0, sizeof *t);
}

dq_tensor dq_tensor_view(float *data, int ndim, const int64_t *shape)
{
    dq_tensor t;
    memset(&t, 0, sizeof t);
    t.data = data;
    t.ndim = ndim;
    for (int i = 0; i < ndim && i < DQ_MAX_DIMS; i++) t.shape[i] = shape[i];
    return t;
}

dq_tensor dq_tensor_view2(float *data, int64_t d0, int64_t d1)
{
    int64_t s[2] = {d0, d1};
    return dq_tensor_view(data, 2, s);
}

dq_tensor dq_tensor_view4(float *data, int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
    int64_t s[4] = {d0, d1, d2, d3};
    return dq_tensor_view(data, 4, s);
}

int64_t dq_tensor_numel(const dq_tensor *t)
{
    return dq_tensor_inner(t, 0);
}

int64_t dq_tensor_inner(const dq_tensor *t, int from)
{
    int64_t n = 1;
    for (int i = from; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

const char *dq_tensor_shape_str(const dq_tensor *t, char *buf, size_t len)
{
    return dq_shape_str(t->shape, t->ndim, buf, len);
}

dq_status dq_tensor_expect_rank(const dq_tensor *t, const char *op, const char *what,
                                int ndim, dq_err *err)
{
    if (!t || (!t->data && dq_tensor_numel(t) > 0))
        return dq_fail(err, DQ_ERR_ARG, "%s: %s tensor is missing", op, what);
    if (t->ndim != ndim) {
        char b[96];
        return dq_fail(err, DQ_ERR_SHAPE, "%s: %s%s%s must have %d dims, got %s", op, what,
                       t->name ? " " : "", t->name ? t->name : "", ndim,
                       dq_tensor_shape_str(t, b, sizeof b));
    }
    return DQ_OK;
}

dq_status dq_tensor_expect(const dq_tensor *t, const char *op, const char *what,
                           int ndim, const int64_t *shape, dq_err *err)
{
    DQ_TRY(dq_tensor_expect_rank(t, op, what, ndim, err));
    for (int i = 0; i < ndim; i++) {
        if (t->shape[i] != shape[i]) {
            char got[96], want[96];
            dq_tensor w = dq_tensor_view(NULL, ndim, shape);
            return dq_fail(err, DQ_ERR_SHAPE, "%s: %s%s%s has shape %s, expected %s", op, what,
                           t->name ? " " : "", t->name ? t->name : "",
                           dq_tensor_shape_str(t, got, sizeof got),
                           dq_tensor_shape_str(&w, want, sizeof want));
        }
    }
    return DQ_OK;
}

void dq_tensor_zero(dq_tensor *t)
{
    int64_t n = dq_tensor_numel(t);
    if (t->data && n > 0) memset(t->data, 0, (size_t)n * sizeof(float));
}
