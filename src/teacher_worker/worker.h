/* worker.h - a teacher worker: one model served to a broker's backend.
 *
 * The worker joins the broker (READY), holds at most `capacity` requests,
 * computes them in a compute thread (what is queued when it is free goes as
 * one merged forward where the requests fit together, unless no_merge;
 * worker.c), heartbeats, re-joins by
 * itself when the broker goes silent or restarts, and on a stop request
 * drains (DRAIN, finish what it holds, GOODBYE). Protocol and state machine:
 * docs/protocol.md sections 3 and 5.
 */
#ifndef DQ_WORKER_H
#define DQ_WORKER_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include "tensor/backend_cuda.h"
#include "base/status.h"

typedef struct dq_worker dq_worker_t;

typedef struct {
    const char *broker;          /* backend endpoint, tcp:// or ipc:// */
    const char *service;
    const char *model_path;      /* a model file, or an ONNX file ("*.onnx") */
    const char *weights_path;    /* safetensors; NULL with an ONNX model or echo */
    bool echo;                   /* benches/tests: an echo teacher (teacher_echo.h) */
    int capacity;                /* K >= 1: requests held at once (default 2) */
    int heartbeat_ms;            /* (default 1000) */
    int liveness;                /* broker dead after liveness x heartbeat of silence (3) */
    int64_t max_batch;           /* largest batch accepted (0: DQ_TEACHER_DEFAULT_MAX_BATCH) */
    int64_t max_forward;         /* samples per forward (0: DQ_TEACHER_DEFAULT_MAX_FORWARD) */
    int delay_ms;                /* test hook: sleep this long before each forward (0) */
    bool no_merge;               /* hand the compute thread one request at a time
                                  * instead of merging what is queued (dynamic
                                  * batching, on by default; see worker.c) */
    dq_device device;            /* where the forward runs (zero-filled: the CPU) */
    FILE *log;                   /* one line per join, re-join, leave; NULL: silent */
    /* Owned by main's signal handler: 1 = drain and leave, >= 2 = leave now
     * (what the worker still holds is requeued by the broker). May be NULL. */
    const volatile sig_atomic_t *stop;
} dq_worker_config;

/* Fills the defaults in (); the strings stay NULL. */
void dq_worker_config_default(dq_worker_config *cfg);

/* Loads the model and weights and hashes the weights; connects nothing yet.
 * The strings of cfg must outlive the worker. */
dq_status dq_worker_new(dq_worker_t **out, const dq_worker_config *cfg, dq_err *err);

/* Runs until stopped: DQ_OK after a graceful leave; DQ_ERR_PROTO when the
 * broker refused us for good (disconnect without retry); DQ_ERR_NET or
 * DQ_ERR_NOMEM on a local failure. */
dq_status dq_worker_run(dq_worker_t *w, dq_err *err);

void dq_worker_destroy(dq_worker_t **p);

#endif
