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
 * an optimiser over dq_net_params/dq_net_grads.
 */
#ifndef DQ_NET_H
#define DQ_NET_H

#include <stdbool.h>
#include <stdint.h>

#include "tensor/rng.h"
#include "tensor/tensor.h"

typedef struct dq_net dq_net_t;

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

/* Frees everything and sets *net to NULL. */
void dq_net_destroy(dq_net_t **net);

/* Model name from the file ("deepnn-fmnist"). */
const char *dq_net_name(const dq_net_t *net);
const dq_net_input *dq_net_input_spec(const dq_net_t *net);

/* PyTorch-default initialisation of every parameter, in file order. */
void dq_net_init_params(dq_net_t *net, dq_rng *rng);

/* Allocates activations and scratch for batches of up to max_batch samples;
 * may be called again with a larger size. */
dq_status dq_net_plan(dq_net_t *net, int64_t max_batch, dq_err *err);

/* Runs every layer on input [N,C,H,W] (N <= planned batch). train enables
 * dropout, which draws from rng (may be NULL when !train). */
dq_status dq_net_forward(dq_net_t *net, const dq_tensor *input, bool train, dq_rng *rng,
                         dq_err *err);

/* The net's own input buffer: room for [planned batch, C, H, W] floats, NULL
 * before dq_net_plan, moved by a dq_net_plan that grows the batch. Writing a
 * batch there (e.g. with dq_net_normalize_u8) and running
 * dq_net_forward_input on its first n samples saves the copy dq_net_forward
 * makes of its input. The buffer is the forward's input until the next
 * forward (backward reads it). */
float *dq_net_input_buffer(dq_net_t *net);
dq_status dq_net_forward_input(dq_net_t *net, int64_t n, bool train, dq_rng *rng, dq_err *err);

/* Backward from the output gradients set since the last zero_grad; adds into
 * the parameter gradients. Requires the preceding forward with train=true. */
dq_status dq_net_backward(dq_net_t *net, dq_err *err);

/* Zeroes parameter gradients and every activation gradient. */
void dq_net_zero_grad(dq_net_t *net);

/* Named outputs. The tensor views are valid until the next plan/destroy and
 * have the batch size of the last forward. NULL if the name is unknown. */
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

/* Forward FLOPs per sample (multiply-add = 2), for benchmarks. */
double dq_net_flops_per_sample(const dq_net_t *net);

/* Normalises n images of u8 pixels [n,C,H,W] into out (same count, f32). */
void dq_net_normalize_u8(const dq_net_t *net, float *out, const uint8_t *in, int64_t n);

#endif
