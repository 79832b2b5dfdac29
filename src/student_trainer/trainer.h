/* trainer.h - the student training loop behind distillq-train.
 *
 * source (dataset -> batcher -> teacher outputs) -> normalise -> forward ->
 * recipe loss -> backward -> optimiser step, with evaluation on the test split after every epoch,
 * JSON-lines metrics, progress, and resumable checkpoints (weights file plus a
 * training-state file beside it) written after every epoch and when the
 * caller's stop flag is raised (Ctrl-C). A resumed run is bit-identical to an
 * uninterrupted one: the batch order of epoch e is a pure function of
 * (seed, e), and everything else that evolves (weights, Adam moments, dropout
 * rng, the running sums of the current epoch) is in the checkpoint.
 */
#ifndef DQ_TRAINER_H
#define DQ_TRAINER_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "student_trainer/dist.h"
#include "student_trainer/recipe.h"
#include "student_trainer/source.h"
#include "base/status.h"
#include "tensor/backend_cuda.h"
#include "tensor/optim.h"

typedef enum { DQ_OPTIM_ADAM, DQ_OPTIM_SGD } dq_optim_kind;

typedef struct {
    const char *model_path;   /* student model file */
    const char *data_dir;     /* dataset directory (IDX or CIFAR-10 layout) */
    const char *out_path;     /* weights checkpoint (safetensors) */
    const char *init_weights; /* optional: start from these weights */
    const char *metrics_path; /* JSON lines; NULL: <out>.metrics.jsonl */
    int64_t epochs;
    int64_t batch;
    int64_t limit_train;      /* use the first N training samples (0: all) */
    int64_t limit_test;       /* evaluate on the first N test samples (0: all) */
    int64_t stop_after_batches; /* testing aid: act as if interrupted after N batches (0: off) */
    float lr;
    dq_lr_schedule lr_schedule; /* constant (default) or cosine over all epochs' steps */
    dq_optim_kind optim;
    float momentum;           /* SGD only */
    float weight_decay;
    uint64_t seed;
    /* Where the student runs (zero: the CPU). On a GPU the same loop runs on
     * the net's CUDA backend (Adam only; dropout masks come from the
     * device's counter stream, so a resumed GPU run is not bit-identical). */
    dq_device device;
    /* Where --teacher-local teachers run their eval forward (zero: the CPU). */
    dq_device teacher_device;
    bool resume;
    /* Distillation: the loss recipe and where teacher outputs come from. */
    dq_recipe recipe;
    bool augment;
    int n_teachers;                      /* --teacher URL ... (service) */
    const char *teachers[DQ_SOURCE_MAX_TEACHERS];
    int n_local_teachers;                /* --teacher-local M:W ... (conventional) */
    const char *local_teachers[DQ_SOURCE_MAX_TEACHERS];
    float teacher_weights[DQ_SOURCE_MAX_TEACHERS]; /* ensemble weights (default 1 each) */
    const char *replay_dir;              /* --replay DIR (offline, LMDB cache) */
    int n_replay_teachers;               /* --replay-teacher SHA ... (0: the only one) */
    const char *replay_teachers[DQ_SOURCE_MAX_TEACHERS]; /* several: an ensemble */
    int64_t inflight;                    /* batches kept at the teacher service */
    int64_t inflight_bytes;              /* ... and the bytes they may hold (0: 256 MiB) */
    int64_t teacher_timeout_ms;          /* service unavailable this long: stop */
    bool allow_teacher_change;
    const char *client_name;             /* --client-name: fair-sharing name at the broker */
    const char *curve_server_cert;       /* --curve-server-cert: the broker's public cert */
    const char *curve_cert;              /* --curve-cert: our NAME_secret certificate */
    /* Data-parallel ranks (dist.h): each trains on its shard of every batch
     * and the gradients are summed in rank order; rank 0 alone evaluates and
     * writes checkpoints and metrics. NULL or one rank: this process alone. */
    dq_dist_t *dist;
    FILE *log;                /* progress and per-epoch lines; NULL: silent */
    volatile sig_atomic_t *stop; /* raised by main's signal handler; may be NULL */
} dq_train_config;

/* Fills defaults: Adam lr 1e-3, batch 128, 1 epoch, seed 42. */
void dq_train_config_defaults(dq_train_config *cfg);

/* Path of the training-state file that belongs to a weights path:
 * "x.safetensors" -> "x.state.safetensors", otherwise "<path>.state". */
void dq_train_state_path(char *buf, size_t len, const char *weights_path);

/* Runs the whole training. Returns DQ_ERR_INTERRUPTED after saving a
 * resumable checkpoint when *cfg->stop was raised. */
dq_status dq_train_run(const dq_train_config *cfg, dq_err *err);

#endif
