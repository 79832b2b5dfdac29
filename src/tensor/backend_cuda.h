/* backend_cuda.h - compute device selection: --device cpu | cuda | cuda:N.
 *
 * Every program parses its --device value with dq_backend_select once at
 * start and passes the resulting dq_device value down (no global "current
 * device"). Asking for CUDA in a build without it, or on a machine without a
 * usable GPU, is a one-line DQ_ERR_UNSUPPORTED that names the flag, never a
 * crash and never a silent CPU fallback. The same file builds with and
 * without CUDA (it is one of the two places that test DQ_HAVE_CUDA, with
 * kernels/), so callers need no #ifdef.
 */
#ifndef DQ_BACKEND_CUDA_H
#define DQ_BACKEND_CUDA_H

#include <stdbool.h>
#include <stddef.h>

#include "base/status.h"

typedef enum { DQ_DEVICE_CPU = 0, DQ_DEVICE_CUDA } dq_device_kind;

/* A zero-filled dq_device is the CPU. */
typedef struct {
    dq_device_kind kind;
    int index; /* CUDA device ordinal */
} dq_device;

/* Parses spec ("cpu", "cuda" = "cuda:0", "cuda:N") into *dev and, for CUDA,
 * checks that the device exists and can run this build's kernels.
 * DQ_ERR_ARG for a malformed spec, DQ_ERR_UNSUPPORTED (with the reason:
 * no CUDA in this build, no device, no kernel image for it) otherwise; the
 * message starts with "--device SPEC: ". *dev is the CPU on failure. */
dq_status dq_backend_select(const char *spec, dq_device *dev, dq_err *err);

/* Whether this build has the CUDA backend. */
bool dq_backend_has_cuda(void);

/* "cpu" or "cuda:0 (NVIDIA H100 80GB HBM3, sm_90, 79.1 GiB)" into buf. */
const char *dq_device_describe(const dq_device *dev, char *buf, size_t len);

#endif
