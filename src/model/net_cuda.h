/* net_cuda.h - a network's forward (and backward + Adam) on one CUDA device,
 * as an executor object: the API the programs (predict, teacher), the GPU
 * tests and bench/bench_gpu.c use.
 *
 * Since issue 9 there is one layer walk (model/net_exec.c) over a backend op
 * table; an executor is a second dq_net_t built from the CPU net's model
 * file, given the CPU net's weights and moved to the CUDA backend
 * (dq_net_set_device), so the CPU dq_net_t stays the reference and the
 * source of the weights. Per batch only the input goes up (through a pinned
 * host buffer) and only the requested outputs come down. Activations,
 * gradients, Adam moments, the cuDNN workspace and the pinned buffers are
 * allocated once at creation for up to max_batch samples; forward and
 * backward allocate nothing.
 *
 * The eval forward of an inference executor is batch-invariant like the
 * CPU's (model/net.h): a sample's outputs are bitwise the same in any batch,
 * at any position, in any executor on the same card and libraries, because
 * every batch runs as forwards of exactly DQ_NET_CUDA_EVAL_CHUNK samples
 * (the last zero-padded), whose kernels are chosen for that shape alone
 * (net_cuda.c). The cost: a batch smaller than the chunk computes a whole
 * chunk.
 *
 * Results equal the CPU's up to float rounding (FP32 math, no TF32), not bit
 * for bit; dropout uses a counter-based stream (kernels/kernels.h), so its
 * masks differ from the CPU's. Each call makes the device current in the
 * calling thread, so the executor may be created in one thread and used in
 * another (one thread at a time).
 *
 * In a build without CUDA dq_net_cuda_new fails with DQ_ERR_UNSUPPORTED;
 * callers reach it only after dq_backend_select.
 */
#ifndef DQ_NET_CUDA_H
#define DQ_NET_CUDA_H

#include <stdbool.h>
#include <stdint.h>

#include "model/net.h"
#include "tensor/backend_cuda.h"
#include "tensor/optim.h"

typedef struct dq_net_cuda dq_net_cuda_t;

/* Samples per eval forward on the device: one fixed shape (see above). */
#define DQ_NET_CUDA_EVAL_CHUNK 256

/* Builds the executor for `net`, which was loaded from model_path (the file
 * is parsed again for its layer list; a net from another file is
 * DQ_ERR_ARG). Parameters and buffers
 * (batch-norm running statistics) are copied up from net. train also plans parameter gradients, Adam moments, output
 * gradients and backward algorithms. seed starts the dropout stream. */
dq_status dq_net_cuda_new(dq_net_cuda_t **out, dq_net_t *net, const char *model_path,
                          dq_device dev, int64_t max_batch, bool train, uint64_t seed,
                          dq_err *err);
/* dq_net_cuda_new with another eval chunk (inference executors): larger
 * chunks run large batches faster and pad small ones more. A sample's bits
 * depend on the chunk, so every executor whose outputs must agree (the
 * workers of one service, a cache's writers) must use the same one. */
dq_status dq_net_cuda_new_chunked(dq_net_cuda_t **out, dq_net_t *net, const char *model_path,
                                  dq_device dev, int64_t max_batch, bool train, uint64_t seed,
                                  int64_t eval_chunk, dq_err *err);
void dq_net_cuda_destroy(dq_net_cuda_t **g);

int64_t dq_net_cuda_max_batch(const dq_net_cuda_t *g);

/* Pinned host buffer of max_batch input samples: a batch written here is
 * uploaded without an extra copy when passed to forward. */
float *dq_net_cuda_input_buffer(dq_net_cuda_t *g);

/* Runs every layer on input [N,C,H,W] (host memory, 1 <= N <= max_batch)
 * and copies the outputs named in want[0..n_want) (want NULL: all) to the
 * host; returns when they are there. train enables dropout and needs an
 * executor made for training; eval forwards of an inference executor are
 * batch-invariant (above). A DQ_ERR_DEVICE failure means the GPU is lost to
 * this process (a sticky CUDA error): every later call fails too, so a
 * server should leave and exit. */
dq_status dq_net_cuda_forward(dq_net_cuda_t *g, const dq_tensor *input, bool train,
                              const char *const *want, int n_want, dq_err *err);

/* Host copy of an output fetched by the last forward, batch dim = its N.
 * NULL if the name is unknown or the output was not requested. */
const dq_tensor *dq_net_cuda_output(const dq_net_cuda_t *g, const char *name);

/* Training (executor made with train = true). The loop is the CPU one:
 * zero_grad, forward(train), write d(loss)/d(output) into the host tensors
 * of dq_net_cuda_output_grad, backward (uploads them, adds into the
 * parameter gradients on the device), adam_step. */
dq_status dq_net_cuda_zero_grad(dq_net_cuda_t *g, dq_err *err);
dq_tensor *dq_net_cuda_output_grad(dq_net_cuda_t *g, const char *name);
dq_status dq_net_cuda_backward(dq_net_cuda_t *g, dq_err *err);
/* step is the 1-based step count after incrementing, as dq_adam_step. */
dq_status dq_net_cuda_adam_step(dq_net_cuda_t *g, int64_t step, const dq_adam_config *cfg,
                                dq_err *err);

/* Copies between the device and net's flat arrays (dq_net_params /
 * dq_net_grads) or the caller's Adam moments (dq_net_param_floats each):
 * for checkpoints, resume and the tests. */
dq_status dq_net_cuda_upload_params(dq_net_cuda_t *g, dq_net_t *net, dq_err *err);
dq_status dq_net_cuda_download_params(dq_net_cuda_t *g, dq_net_t *net, dq_err *err);
dq_status dq_net_cuda_download_grads(dq_net_cuda_t *g, dq_net_t *net, dq_err *err);
dq_status dq_net_cuda_moments(dq_net_cuda_t *g, float *m, float *v, bool upload, dq_err *err);

#endif
