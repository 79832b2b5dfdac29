/* backend.c - CPU backend settings (OpenBLAS threads). */
#include "tensor/backend.h"

#include <cblas.h>

void dq_backend_set_threads(int n)
{
    if (n < 1) n = 1;
    openblas_set_num_threads(n);
}

int dq_backend_threads(void)
{
    return openblas_get_num_threads();
}

const char *dq_backend_blas_info(void)
{
    return openblas_get_config();
}
