/* checkpoint.h - network weights and training state as safetensors files.
 *
 * Weights: one F32 tensor per parameter under its PyTorch state_dict key,
 * then the buffers (batch-norm running_mean/running_var F32,
 * num_batches_tracked I64 scalar), so the file loads in PyTorch with
 * load_state_dict(strict=True) and PyTorch's files load here. Training state (for --resume) goes in a second file beside it:
 * Adam moments "m.<param>", "v.<param>" and counters/rng as I64/U64 tensors.
 */
#ifndef DQ_CHECKPOINT_H
#define DQ_CHECKPOINT_H

#include <stdint.h>

#include "model/net.h"
#include "tensor/rng.h"

dq_status dq_ckpt_save_weights(dq_net_t *net, const char *path, dq_err *err);

/* Every parameter and buffer must be present with its exact shape; a missing name, an
 * unexpected extra tensor, a shape or dtype mismatch is an error naming the
 * tensor and the file. */
dq_status dq_ckpt_load_weights(dq_net_t *net, const char *path, dq_err *err);

/* Everything needed to continue a run bit-identically. m and v have
 * dq_net_param_floats(net) floats each. */
typedef struct {
    int64_t epoch;        /* completed epochs */
    int64_t step;         /* optimiser steps taken */
    int64_t batch_in_epoch; /* batches done in the current epoch */
    uint64_t seed;        /* the run's seed, to check --resume uses the same */
    dq_rng rng;           /* training rng (dropout, shuffling) */
    float *m, *v;         /* Adam moments, owned by the caller */
    /* Running sums of the interrupted epoch, so its metrics come out the
     * same after a resume: */
    double loss_sum;      /* sum of per-batch mean loss x batch size */
    int64_t correct;      /* correct predictions so far in the epoch */
    int64_t seen;         /* samples seen so far in the epoch */
    double seconds;       /* training time spent so far in the epoch */
} dq_train_state;

dq_status dq_ckpt_save_state(dq_net_t *net, const dq_train_state *st, const char *path,
                             dq_err *err);
/* Fills *st (m and v must already be allocated by the caller). */
dq_status dq_ckpt_load_state(dq_net_t *net, dq_train_state *st, const char *path,
                             dq_err *err);

#endif
