/* lib_int.h - what libdistillq's two sides (src/lib/client.c, worker.c)
 * share: the mapping of internal dq_status codes onto the public
 * DISTILLQ_E* codes and the error filling. Internal only. */
#ifndef DQ_LIB_INT_H
#define DQ_LIB_INT_H

#include "distillq.h"
#include "base/status.h"

/* The public code for st (DISTILLQ_OK for DQ_OK). */
int dq_lib_code(dq_status st);

/* Fills out (may be NULL) from st and e; returns the public code. */
int dq_lib_fail(distillq_error *out, dq_status st, const dq_err *e);

#endif
