/* net_cuda_none.c - net_cuda.h in a build without CUDA: every entry point
 * fails with DQ_ERR_UNSUPPORTED.
 *
 * Makefile.am compiles this file instead of net_cuda.c when configure found
 * no CUDA, so the callers (predict, teacher, bench) link and need no #ifdef.
 * They only get here after dq_backend_select accepted a CUDA device, which
 * this build never does, so these are defensive.
 */
#include "model/net_cuda.h"

#include <stddef.h>

static dq_status s_none(dq_err *err)
{
    return dq_fail(err, DQ_ERR_UNSUPPORTED, "this build has no CUDA support (configure "
                   "--with-cuda)");
}

dq_status dq_net_cuda_new(dq_net_cuda_t **out, dq_net_t *net, const char *model_path,
                          dq_device dev, int64_t max_batch, bool train, uint64_t seed,
                          dq_err *err)
{
    (void)net, (void)model_path, (void)dev, (void)max_batch, (void)train, (void)seed;
    *out = NULL;
    return s_none(err);
}

void dq_net_cuda_destroy(dq_net_cuda_t **g)
{
    if (g) *g = NULL;
}

int64_t dq_net_cuda_max_batch(const dq_net_cuda_t *g)
{
    (void)g;
    return 0;
}

float *dq_net_cuda_input_buffer(dq_net_cuda_t *g)
{
    (void)g;
    return NULL;
}

dq_status dq_net_cuda_forward(dq_net_cuda_t *g, const dq_tensor *input, bool train,
                              const char *const *want, int n_want, dq_err *err)
{
    (void)g, (void)input, (void)train, (void)want, (void)n_want;
    return s_none(err);
}

const dq_tensor *dq_net_cuda_output(const dq_net_cuda_t *g, const char *name)
{
    (void)g, (void)name;
    return NULL;
}

dq_status dq_net_cuda_zero_grad(dq_net_cuda_t *g, dq_err *err)
{
    (void)g;
    return s_none(err);
}

dq_tensor *dq_net_cuda_output_grad(dq_net_cuda_t *g, const char *name)
{
    (void)g, (void)name;
    return NULL;
}

dq_status dq_net_cuda_backward(dq_net_cuda_t *g, dq_err *err)
{
    (void)g;
    return s_none(err);
}

dq_status dq_net_cuda_adam_step(dq_net_cuda_t *g, int64_t step, const dq_adam_config *cfg,
                                dq_err *err)
{
    (void)g, (void)step, (void)cfg;
    return s_none(err);
}

dq_status dq_net_cuda_upload_params(dq_net_cuda_t *g, dq_net_t *net, dq_err *err)
{
    (void)g, (void)net;
    return s_none(err);
}

dq_status dq_net_cuda_download_params(dq_net_cuda_t *g, dq_net_t *net, dq_err *err)
{
    (void)g, (void)net;
    return s_none(err);
}

dq_status dq_net_cuda_download_grads(dq_net_cuda_t *g, dq_net_t *net, dq_err *err)
{
    (void)g, (void)net;
    return s_none(err);
}

dq_status dq_net_cuda_moments(dq_net_cuda_t *g, float *m, float *v, bool upload, dq_err *err)
{
    (void)g, (void)m, (void)v, (void)upload;
    return s_none(err);
}
