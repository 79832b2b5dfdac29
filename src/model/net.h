/* net.h - a network described by a text model file (docs/model-format.md).
 *
 * A dq_net_t owns: the layer list parsed from the model file, all parameters
 * in one allocation and their gradients in another (carved into named tensors
 * whose names are the PyTorch state_dict keys, e.g. "features.0.weight"), and,
 * once planned for a batch size, every activation, activation gradient and
 * scratch buffer. Forward and backward therefore never allocate.
 *
 * Layers run in file order; each reads the output of the previous layer or of
 * a named earlier one (`from=`), so branches such as a regressor on the
 * convolutional features are expressed without a hidden graph. Named outputs
 * ("logits" always, hidden ones such as "features") point at layer outputs.
 *
 * Eval-mode forward is batch-invariant: a sample's outputs are bitwise the
 * same whatever batch, and position in it, the sample comes in (conv and
 * linear run on a GEMM whose arithmetic per element does not depend on its
 * row or column, tensor/gemm.h; every other op is per element). That makes a teacher's output a function of the sample alone, so
 * the broker can cache it per sample and a student trained on cached,
 * served or local teacher outputs comes out bit-identical.
 *
 * Training: zero_grad, forward(train=true), write d(loss)/d(output) into
 * dq_net_output_grad(...) for each output used by a loss, backward, then step
 * an optimiser over dq_net_params/dq_net_grads (or dq_net_adam_step, which
 * runs wherever the net runs).
 *
 * Where it runs: one layer walk (net_exec.c) calls a backend's op table
 * (tensor/backend_ops.h): the CPU's by default, CUDA's after
 * dq_net_set_device. The CPU's fast paths (relu in place, overwriting
 * relu/maxpool backward, batch-invariant eval forms, batch norm folded into
 * the conv before it) are choices of the walk that the table's caps allow.
 */
#ifndef DQ_NET_H
#define DQ_NET_H

#include <stdbool.h>
#include <stdint.h>

#include "tensor/backend_ops.h"
#include "tensor/optim.h"
#include "tensor/rng.h"
#include "tensor/tensor.h"

typedef struct dq_net dq_net_t;
typedef struct dq_model_file dq_model_file; /* model/model_file.h */

#define DQ_NET_MAX_CHANNELS 4

/* What the model expects as input and how raw u8 pixels are normalised:
 * x = (pixel / 255 - mean[c]) / std[c]. */
typedef struct {
    int channels, height, width;
    float mean[DQ_NET_MAX_CHANNELS];
    float std[DQ_NET_MAX_CHANNELS];
    int classes; /* size of the logits output */
} dq_net_input;

/* Parses the model file and allocates parameters (zeroed; see init).
 * On failure *out is NULL and err names the file, line and problem. */
dq_status dq_net_load(dq_net_t **out, const char *model_path, dq_err *err);

/* Builds a net from an already parsed (or constructed) model file, which is
 * copied; dq_net_load is dq_mf_load + this. */
dq_status dq_net_from_model_file(dq_net_t **out, const dq_model_file *mf, dq_err *err);

/* Frees everything and sets *net to NULL. */
void dq_net_destroy(dq_net_t **net);

/* Model name from the file ("deepnn-fmnist"). */
const char *dq_net_name(const dq_net_t *net);
const dq_net_input *dq_net_input_spec(const dq_net_t *net);
const dq_model_file *dq_net_model_file(const dq_net_t *net);

/* PyTorch-default initialisation of every parameter, in file order. */
void dq_net_init_params(dq_net_t *net, dq_rng *rng);

/* Where the net runs. Every net starts on the CPU backend; these move it
 * (before dq_net_plan; a plan is dropped) to the backend for dev or to a
 * caller-made backend bk, which the net then owns (dq_backend_destroy).
 * train keeps parameter gradients and Adam moments on a device too; seed
 * starts a device's dropout stream. On a device the host parameter array
 * (dq_net_params) is copied there by the first dq_net_plan and by
 * dq_net_upload, and back by dq_net_download; outputs are copied to host
 * buffers by each forward, output gradients up by backward. On failure the
 * net is back on the CPU. */
dq_status dq_net_set_device(dq_net_t *net, dq_device dev, bool train, uint64_t seed,
                            dq_err *err);
dq_status dq_net_use_backend(dq_net_t *net, dq_backend_t *bk, bool train, dq_err *err);
const dq_backend_t *dq_net_backend(const dq_net_t *net);

/* Host -> backend: parameters, and the Adam moments m/v when given (n floats
 * each, see dq_net_adam_step). No-ops on the CPU. */
dq_status dq_net_upload(dq_net_t *net, const float *m, const float *v, dq_err *err);
/* Backend -> host: parameters, their gradients when grads, moments when given. */
dq_status dq_net_download(dq_net_t *net, bool grads, float *m, float *v, dq_err *err);

/* Allocates activations and scratch for batches of up to max_batch samples;
 * may be called again with a larger size. */
dq_status dq_net_plan(dq_net_t *net, int64_t max_batch, dq_err *err);

/* Runs every layer on input [N,C,H,W] (N <= planned batch). train enables
 * dropout, which draws from rng (may be NULL when !train). */
dq_status dq_net_forward(dq_net_t *net, const dq_tensor *input, bool train, dq_rng *rng,
                         dq_err *err);

/* The same, copying back to the host only the outputs named in
 * want[0..n_want) (want NULL: all; on the CPU every output is readable
 * anyway). dq_net_output is NULL for an output a device did not fetch. */
dq_status dq_net_forward_outputs(dq_net_t *net, const dq_tensor *input, bool train, dq_rng *rng,
                                 const char *const *want, int n_want, dq_err *err);

/* The net's own input buffer: room for [planned batch, C, H, W] floats, NULL
 * before dq_net_plan, moved by a dq_net_plan that grows the batch. Writing a
 * batch there (e.g. with dq_net_normalize_u8) and running
 * dq_net_forward_input on its first n samples saves the copy dq_net_forward
 * makes of its input. The buffer is the forward's input until the next
 * forward (backward reads it). On a device backend it is a host staging
 * buffer that dq_net_forward_input copies up. */
float *dq_net_input_buffer(dq_net_t *net);
dq_status dq_net_forward_input(dq_net_t *net, int64_t n, bool train, dq_rng *rng, dq_err *err);

/* Backward from the output gradients set since the last zero_grad; adds into
 * the parameter gradients. Requires the preceding forward with train=true. */
dq_status dq_net_backward(dq_net_t *net, dq_err *err);

/* Zeroes parameter gradients and every activation gradient. (On a device a
 * failure is reported by the next forward.) */
void dq_net_zero_grad(dq_net_t *net);

/* One Adam step of every parameter on the backend (step 1-based, as
 * dq_adam_step). On the CPU m and v are the caller's moments (n floats
 * each, zero at first); a device keeps its own (dq_net_upload/download). */
dq_status dq_net_adam_step(dq_net_t *net, float *m, float *v, int64_t step,
                           const dq_adam_config *cfg, dq_err *err);

/* Named outputs (host memory). The tensor views are valid until the next
 * plan/destroy and have the batch size of the last forward. NULL if the
 * name is unknown. */
int dq_net_output_count(const dq_net_t *net);
const char *dq_net_output_name(const dq_net_t *net, int i);
const dq_tensor *dq_net_output(const dq_net_t *net, const char *name);
dq_tensor *dq_net_output_grad(dq_net_t *net, const char *name);
/* Per-sample shape of an output (without the batch dim); returns its rank. */
int dq_net_output_shape(const dq_net_t *net, const char *name, int64_t *shape);

/* Parameters: flat arrays plus named views. */
int64_t dq_net_param_floats(const dq_net_t *net);
float *dq_net_params(dq_net_t *net);
float *dq_net_grads(dq_net_t *net);
int dq_net_param_count(const dq_net_t *net);
const char *dq_net_param_name(const dq_net_t *net, int i);
dq_tensor *dq_net_param(dq_net_t *net, int i);
dq_tensor *dq_net_param_grad(dq_net_t *net, int i);
/* A parameter or a float buffer (host view) by its state_dict name, NULL if
 * none. */
dq_tensor *dq_net_find_tensor(dq_net_t *net, const char *name);

/* Buffers: state_dict entries that are not trained, saved beside the
 * parameters: per batchnorm2d layer "<layer>.running_mean" and
 * ".running_var" (F32 [features]) and ".num_batches_tracked" (I64 scalar).
 * dq_net_buffer is NULL for the I64 one, dq_net_buffer_i64 for the others. */
int dq_net_buffer_count(const dq_net_t *net);
const char *dq_net_buffer_name(const dq_net_t *net, int i);
dq_tensor *dq_net_buffer(dq_net_t *net, int i);
int64_t *dq_net_buffer_i64(dq_net_t *net, int i);

/* Eval forward folds each batchnorm2d whose input is a conv2d read by
 * nothing else into that conv (weights scaled, bias shifted: outputs within
 * float rounding of the unfolded pair), recomputed before the first eval
 * forward after any change of the parameters or buffers: a training
 * forward, an Adam step, init, upload, or handing out a writable pointer
 * (dq_net_params, dq_net_param, dq_net_find_tensor, dq_net_buffer). A
 * caller that writes through a pointer it kept from before must call
 * dq_net_params_changed. set_bn_fold(false) runs the batch norms as they
 * are (for tests; default on). CPU backend only. */
void dq_net_params_changed(dq_net_t *net);
void dq_net_set_bn_fold(dq_net_t *net, bool on);

/* Forward FLOPs per sample (multiply-add = 2), for benchmarks. */
double dq_net_flops_per_sample(const dq_net_t *net);

/* Normalises n images of u8 pixels [n,C,H,W] into out (same count, f32). */
void dq_net_normalize_u8(const dq_net_t *net, float *out, const uint8_t *in, int64_t n);

#endif
