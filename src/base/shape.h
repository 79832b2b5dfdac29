/* shape.h - formatting a shape for error messages ("[128, 1, 28, 28]").
 *
 * Every layer names the shapes it rejects; the format lives here so that the
 * wire, the cache and the tensor engine print them alike without one
 * depending on another.
 */
#ifndef DQ_SHAPE_H
#define DQ_SHAPE_H

#include <stddef.h>
#include <stdint.h>

/* Writes "[d0, d1, ...]" into buf (truncated to len) and returns buf. */
const char *dq_shape_str(const int64_t *shape, int ndim, char *buf, size_t len);

#endif
