/* tensor.h - float32 NCHW tensors: a data pointer plus a shape.
 *
 * A dq_tensor is a small value type. It either owns its data (made by
 * dq_tensor_alloc, released by dq_tensor_free) or is a view on someone else's
 * memory (dq_tensor_view; never freed through the view). Ops take tensors so
 * that every op can check shapes and report a mismatch by name instead of
 * reading out of bounds. Sizes are int64_t; tensors have at most 4 dims.
 */
#ifndef DQ_TENSOR_H
#define DQ_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/status.h"

#define DQ_MAX_DIMS 4

typedef struct {
    float *data;
    int ndim;
    int64_t shape[DQ_MAX_DIMS];
    bool owns;         /* true: dq_tensor_free releases data */
    const char *name;  /* optional, for error messages; not owned */
} dq_tensor;

/* Allocates a zero-filled tensor of the given shape (64-byte aligned).
 * On failure *t is left empty and DQ_ERR_NOMEM / DQ_ERR_ARG is returned. */
dq_status dq_tensor_alloc(dq_tensor *t, int ndim, const int64_t *shape, dq_err *err);

/* Releases owned data and resets *t to empty; views are only reset. */
void dq_tensor_free(dq_tensor *t);

/* A view of existing memory; the caller keeps ownership of data. */
dq_tensor dq_tensor_view(float *data, int ndim, const int64_t *shape);

/* Convenience views by rank. */
dq_tensor dq_tensor_view2(float *data, int64_t d0, int64_t d1);
dq_tensor dq_tensor_view4(float *data, int64_t d0, int64_t d1, int64_t d2, int64_t d3);

/* Number of elements (1 for a 0-dim tensor, 0 for an empty one). */
int64_t dq_tensor_numel(const dq_tensor *t);

/* Product of dims [from, ndim): e.g. features per sample with from=1. */
int64_t dq_tensor_inner(const dq_tensor *t, int from);

/* Writes "[2, 3, 28, 28]" into buf. Returns buf. */
const char *dq_tensor_shape_str(const dq_tensor *t, char *buf, size_t len);

/* Fails with DQ_ERR_SHAPE, naming op and tensor, unless t has exactly the
 * given shape (ndim dims). Used by ops at entry. */
dq_status dq_tensor_expect(const dq_tensor *t, const char *op, const char *what,
                           int ndim, const int64_t *shape, dq_err *err);

/* Fails unless t is non-NULL, has data and has the given rank. */
dq_status dq_tensor_expect_rank(const dq_tensor *t, const char *op, const char *what,
                                int ndim, dq_err *err);

/* Sets every element to zero. */
void dq_tensor_zero(dq_tensor *t);

#endif
