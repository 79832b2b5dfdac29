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

#include "proto/msg.h"
#include "tensor/backend_cuda.h"
#include "base/status.h"

typedef struct dq_worker dq_worker_t;

/* Requests merged into one hand-off at most (dq_teacher_serve_many's bound). */
#define DQ_WORKER_MAX_MERGE 64

/* What the worker serves: the model side, free of sockets. worker.c is the
 * one zmq state machine; a model file (dq_teacher_t, worker_teacher.c) and a
 * caller's forward callback (libdistillq's distillq_worker, src/lib/) are
 * two models behind it. announce/identity/max_data_bytes/check are called
 * on the I/O thread, serve on the compute thread, never two serves at once;
 * check and serve may overlap (check reads only what is fixed at creation).
 *   serve: answers n (<= DQ_WORKER_MAX_MERGE) checked requests, one reply
 *          body into each bufs[i] (reset by the caller); a failure to encode
 *          leaves bufs empty and the worker answers "error" itself.
 *   lost: after a serve (compute thread): DQ_OK while the model can
 *          compute, else DQ_ERR_DEVICE with why (a sticky device error, N
 *          forwards in a row failed): the worker sends none of that
 *          hand-off's replies, leaves (the broker requeues what it held to
 *          healthy workers) and dq_worker_run returns DQ_ERR_DEVICE. May be NULL.
 *   destroy: frees ctx when the worker is destroyed (may be NULL). */
typedef struct {
    void *ctx;
    void (*announce)(void *ctx, dq_msg_ready *ready);   /* all but capacity */
    const dq_msg_teacher *(*identity)(void *ctx);
    int64_t (*max_data_bytes)(void *ctx);               /* largest request data */
    dq_status (*check)(void *ctx, const dq_msg_request *r, dq_err *err);
    dq_status (*serve)(void *ctx, const dq_msg_request *const *rs, int n, dq_msg_buf *bufs,
                       dq_err *err);
    void (*destroy)(void *ctx);
    dq_status (*lost)(void *ctx, dq_err *err);
} dq_worker_model;

typedef struct {
    const char *broker;          /* backend endpoint, tcp:// or ipc:// */
    const char *curve_server_cert; /* CURVE: the broker's public certificate, */
    const char *curve_cert;      /*  and ours (NAME_secret); both NULL: plain */
    const char *service;
    const char *model_path;      /* a model file, or an ONNX file ("*.onnx") */
    const char *weights_path;    /* safetensors; NULL with an ONNX model or echo */
    bool echo;                   /* benches/tests: an echo teacher (teacher_echo.h) */
    int capacity;                /* K >= 1: requests held at once (default 2) */
    int heartbeat_ms;            /* (default 1000) */
    int liveness;                /* broker dead after liveness x heartbeat of silence (3) */
    int64_t max_batch;           /* largest batch accepted (0: DQ_TEACHER_DEFAULT_MAX_BATCH) */
    int64_t max_forward;         /* samples per forward (0: DQ_TEACHER_DEFAULT_MAX_FORWARD) */
    /* --metrics: called on the I/O thread about once a heartbeat with the
     * worker's /metrics page (Prometheus text); NULL: none */
    void (*metrics_publish)(void *ctx, const char *text, size_t len);
    void *metrics_ctx;
    int64_t max_failures;        /* failed forwards in a row before the worker leaves and
                                  * exits non-zero (0: DQ_TEACHER_DEFAULT_MAX_FAILURES) */
    int delay_ms;                /* test hook: sleep this long before each forward (0) */
    bool no_merge;               /* hand the compute thread one request at a time
                                  * instead of merging what is queued (dynamic
                                  * batching, on by default; see worker.c) */
    dq_device device;            /* where the forward runs (zero-filled: the CPU) */
    int64_t eval_chunk;          /* GPU: samples per device forward (0: the default;
                                  * model/net_cuda.h; same on every worker of a service) */
    FILE *log;                   /* one line per join, re-join, leave; NULL: silent */
    /* Owned by main's signal handler: 1 = drain and leave, >= 2 = leave now
     * (what the worker still holds is requeued by the broker). May be NULL. */
    const volatile sig_atomic_t *stop;
    const char *log_name;        /* log line prefix ("distillq-teacher" when NULL) */
} dq_worker_config;

/* Fills the defaults in (); the strings stay NULL. */
void dq_worker_config_default(dq_worker_config *cfg);

/* Loads the model and weights and hashes the weights; connects nothing yet.
 * The strings of cfg must outlive the worker. (worker_teacher.c: this one
 * needs the model libraries, dq_worker_new_model does not.) */
dq_status dq_worker_new(dq_worker_t **out, const dq_worker_config *cfg, dq_err *err);

/* A worker serving `model` (copied; the worker owns model->ctx from here on,
 * even on failure, and calls model->destroy). cfg's model_path, weights_path,
 * max_batch, no_merge... are the caller's business: the announce says what
 * is served. */
dq_status dq_worker_new_model(dq_worker_t **out, const dq_worker_config *cfg,
                              const dq_worker_model *model, dq_err *err);

/* Runs until stopped: DQ_OK after a graceful leave; DQ_ERR_PROTO when the
 * broker refused us for good (disconnect without retry); DQ_ERR_ARG when
 * cfg.broker is a broker's client port; DQ_ERR_AUTH when the CURVE
 * handshake failed (key refused, wrong server key, CURVE on one side only);
 * DQ_ERR_NET or DQ_ERR_NOMEM on a local failure. */
dq_status dq_worker_run(dq_worker_t *w, dq_err *err);

void dq_worker_destroy(dq_worker_t **p);

#endif
