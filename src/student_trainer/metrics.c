/* metrics.c - JSON-lines writer for epoch metrics (jansson). */
#include "student_trainer/metrics.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

struct dq_metrics {
    FILE *f;
    char *path;
};

dq_status dq_metrics_open(dq_metrics_t **out, const char *path, bool append, dq_err *err)
{
    *out = NULL;
    dq_metrics_t *m = calloc(1, sizeof *m);
    if (!m) return dq_fail(err, DQ_ERR_NOMEM, "metrics: out of memory");
    if (path) {
        m->f = fopen(path, append ? "a" : "w");
        m->path = strdup(path);
        if (!m->f || !m->path) {
            int e = errno;
            if (m->f) fclose(m->f);
            free(m->path);
            free(m);
            return dq_fail(err, DQ_ERR_IO, "%s: cannot open metrics file: %s", path, strerror(e));
        }
    }
    *out = m;
    return DQ_OK;
}

dq_status dq_metrics_write(dq_metrics_t *m, const dq_epoch_metrics *e, dq_err *err)
{
    if (!m || !m->f) return DQ_OK;
    json_t *o = json_pack("{s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:I, s:I}", "epoch",
                          (json_int_t)e->epoch, "train_loss", e->train_loss, "train_acc",
                          e->train_acc, "test_loss", e->test_loss, "test_acc", e->test_acc,
                          "samples_per_s", e->samples_per_s, "seconds", e->seconds,
                          "teacher_wait_s", e->teacher_wait_s,
                          "train_samples", (json_int_t)e->train_samples, "test_samples",
                          (json_int_t)e->test_samples);
    if (!o) return dq_fail(err, DQ_ERR_NOMEM, "%s: cannot build metrics record", m->path);
    int rc = json_dumpf(o, m->f, JSON_COMPACT | JSON_REAL_PRECISION(8));
    json_decref(o);
    if (rc != 0 || fputc('\n', m->f) == EOF || fflush(m->f) != 0)
        return dq_fail(err, DQ_ERR_IO, "%s: cannot write metrics: %s", m->path, strerror(errno));
    return DQ_OK;
}

void dq_metrics_close(dq_metrics_t **pm)
{
    if (!pm || !*pm) return;
    dq_metrics_t *m = *pm;
    if (m->f) fclose(m->f);
    free(m->path);
    free(m);
    *pm = NULL;
}
