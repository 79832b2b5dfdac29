/* predict.h - run a model over a dataset and write its outputs as .npy.
 *
 * The batch path is dataset -> normalise -> forward -> requested outputs ->
 * one .npy per output, streamed row by row so memory stays one batch.
 * With teacher_url set, the outputs come from a teacher service instead
 * (u8 batches sent with up to `inflight` in flight, written in dataset
 * order): the same files, bit for bit, when the service runs the same model
 * and weights with the same batch size.
 */
#ifndef DQ_PREDICT_H
#define DQ_PREDICT_H

#include <stdint.h>
#include <stdio.h>

#include "tensor/backend_cuda.h"
#include "base/status.h"

#define DQ_PREDICT_MAX_OUTPUTS 8

typedef struct {
    const char *model_path;
    const char *weights_path;
    const char *data_path;   /* dataset dir (test split), IDX images file or CIFAR .bin */
    const char *output_path; /* OUT.npy; with several outputs OUT.<name>.npy each */
    const char *outputs;     /* comma-separated output names (default "logits") */
    int64_t limit;           /* first N samples only (0: all) */
    int64_t batch;
    FILE *log;
    /* Remote: tcp://HOST:PORT/SERVICE or ipc:///PATH/SERVICE (the service is
     * what follows the last '/'); model_path and weights_path are unused. */
    const char *teacher_url;
    int inflight;            /* batches in flight (default 16) */
    int64_t inflight_bytes;  /* ...fewer if they would hold more bytes (0: 256 MiB) */
    const char *client_name; /* fair-sharing name at the broker (NULL: none) */
    const char *curve_server_cert, *curve_cert; /* CURVE: both or neither */
    int request_timeout_ms;  /* give up on a batch unanswered this long (0: never;
                              * distillq-predict's default is 60 s) */
    /* Where the local forward runs (zero-filled: the CPU); a CUDA device
     * goes through the GPU executor (model/net_cuda.h). */
    dq_device device;
    int64_t eval_chunk;      /* GPU: samples per device forward (0: the default) */
} dq_predict_config;

/* Output file for output `name` given the configured path and output count. */
void dq_predict_output_path(char *buf, size_t len, const char *path, const char *name,
                            int n_outputs);

/* Runs prediction; prints accuracy to cfg->log when labels are available. */
dq_status dq_predict_run(const dq_predict_config *cfg, dq_err *err);

#endif
