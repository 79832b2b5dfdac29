/* backend.h - process-wide compute settings chosen once at start by main().
 *
 * The CPU backend is OpenBLAS; its thread count is the only knob. The CUDA
 * device is chosen elsewhere: --device through dq_backend_select
 * (backend_cuda.h), whose dq_device value main passes down.
 */
#ifndef DQ_BACKEND_H
#define DQ_BACKEND_H

/* Sets BLAS threads (and any of our own) to n >= 1. */
void dq_backend_set_threads(int n);
int dq_backend_threads(void);

/* Name of the BLAS library and its build config, for benchmarks and logs. */
const char *dq_backend_blas_info(void);

#endif
