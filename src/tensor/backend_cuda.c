/* backend_cuda.c - --device parsing and CUDA device detection.
 *
 * Parsing is common to both builds, so "--device gpu" is the same error
 * everywhere; only the check that a CUDA device is usable differs. Detection
 * asks the runtime (cudaGetDeviceCount, cudaGetDeviceProperties) and then
 * whether our kernels have an image for the device (dq_k_probe_image), so a
 * card older than the build's target architecture is reported here and not
 * at the first kernel launch. This and kernels/ are the only places that
 * test DQ_HAVE_CUDA.
 */
#include "tensor/backend_cuda.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef DQ_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "kernels/kernels.h"
#endif

/* "cuda" -> 0, "cuda:N" -> N; -1 when spec is not a CUDA spec. */
static int s_parse_cuda(const char *spec)
{
    if (strcmp(spec, "cuda") == 0) return 0;
    if (strncmp(spec, "cuda:", 5) != 0) return -1;
    const char *num = spec + 5;
    if (*num < '0' || *num > '9') return -1;
    char *end = NULL;
    long v = strtol(num, &end, 10);
    if (*end != '\0' || v < 0 || v > 1023) return -1;
    return (int)v;
}

#ifdef DQ_HAVE_CUDA

bool dq_backend_has_cuda(void)
{
    return true;
}

static dq_status s_check_device(const char *spec, int index, dq_err *err)
{
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess)
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "--device %s: no CUDA device found "
                       "(cudaGetDeviceCount: %s)", spec, cudaGetErrorString(e));
    if (count < 1)
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "--device %s: no CUDA device found "
                       "(cudaGetDeviceCount: 0 devices)", spec);
    if (index >= count && count == 1)
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "--device %s: only 1 CUDA device (cuda:0)", spec);
    if (index >= count)
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "--device %s: only %d CUDA devices (cuda:0 to "
                       "cuda:%d)", spec, count, count - 1);
    e = cudaSetDevice(index);
    if (e == cudaSuccess) e = dq_k_probe_image();
    if (e != cudaSuccess) {
        struct cudaDeviceProp p;
        memset(&p, 0, sizeof p);
        (void)cudaGetDeviceProperties(&p, index);
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "--device %s: %s (sm_%d%d) cannot run this "
                       "build's kernels: %s (reconfigure with NVCC_ARCHFLAGS for it)", spec,
                       p.name, p.major, p.minor, cudaGetErrorString(e));
    }
    return DQ_OK;
}

const char *dq_device_describe(const dq_device *dev, char *buf, size_t len)
{
    if (dev->kind != DQ_DEVICE_CUDA) {
        snprintf(buf, len, "cpu");
        return buf;
    }
    struct cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, dev->index) != cudaSuccess)
        snprintf(buf, len, "cuda:%d", dev->index);
    else
        snprintf(buf, len, "cuda:%d (%s, sm_%d%d, %.1f GiB)", dev->index, p.name, p.major,
                 p.minor, (double)p.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
    return buf;
}

#else /* !DQ_HAVE_CUDA */

bool dq_backend_has_cuda(void)
{
    return false;
}

static dq_status s_check_device(const char *spec, int index, dq_err *err)
{
    (void)index;
    return dq_fail(err, DQ_ERR_UNSUPPORTED, "--device %s: this build has no CUDA support "
                   "(configure --with-cuda)", spec);
}

const char *dq_device_describe(const dq_device *dev, char *buf, size_t len)
{
    if (dev->kind == DQ_DEVICE_CUDA)
        snprintf(buf, len, "cuda:%d", dev->index);
    else
        snprintf(buf, len, "cpu");
    return buf;
}

#endif

dq_status dq_backend_select(const char *spec, dq_device *dev, dq_err *err)
{
    *dev = (dq_device){DQ_DEVICE_CPU, 0};
    if (!spec || strcmp(spec, "cpu") == 0) return DQ_OK;
    int index = s_parse_cuda(spec);
    if (index < 0)
        return dq_fail(err, DQ_ERR_ARG, "--device %s: expected cpu, cuda or cuda:N", spec);
    DQ_TRY(s_check_device(spec, index, err));
    *dev = (dq_device){DQ_DEVICE_CUDA, index};
    return DQ_OK;
}
