/* metrics.h - per-epoch training metrics as JSON lines (one object a line).
 *
 * Written with jansson so the file is valid JSON Lines for any tool; a resumed
 * run appends to the same file, so the file tells the whole run.
 */
#ifndef DQ_METRICS_H
#define DQ_METRICS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "base/status.h"

typedef struct {
    int64_t epoch;        /* 1-based */
    double train_loss;    /* mean over the epoch's samples */
    double train_acc;     /* fraction in [0,1] */
    double test_loss;
    double test_acc;
    double samples_per_s; /* training samples per second of training time */
    double seconds;       /* training time of the epoch (excl. evaluation) */
    double teacher_wait_s; /* of seconds: waiting for the next batch from the source
                            * (the teacher service, local teachers or the replay
                            * cache); since the resume for a resumed epoch */
    int64_t train_samples, test_samples;
} dq_epoch_metrics;

typedef struct dq_metrics dq_metrics_t;

/* Opens path for writing (append=true keeps earlier lines). path NULL gives
 * a writer that discards. */
dq_status dq_metrics_open(dq_metrics_t **out, const char *path, bool append, dq_err *err);
dq_status dq_metrics_write(dq_metrics_t *m, const dq_epoch_metrics *e, dq_err *err);
void dq_metrics_close(dq_metrics_t **m);

#endif
