/* npy.h - write float32 arrays as NumPy .npy (format 1.0, C order). */
#ifndef DQ_NPY_H
#define DQ_NPY_H

#include <stdint.h>
#include <stdio.h>

#include "base/status.h"

/* Writes data with the given shape to path in one go. */
dq_status dq_npy_write(const char *path, const float *data, int ndim, const int64_t *shape,
                       dq_err *err);

/* Streaming: write the header for the final shape, then rows as they come. */
dq_status dq_npy_begin(FILE *f, const char *path, int ndim, const int64_t *shape, dq_err *err);

#endif
