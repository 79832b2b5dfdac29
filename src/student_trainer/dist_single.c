/* dist_single.c - one rank: the dq_dist interface without MPI (see dist.h).
 * Built when configure did not find Open MPI; every collective is the
 * identity, so the trainer's data-parallel path costs nothing here.
 */
#include <stdlib.h>

#include "student_trainer/dist.h"

struct dq_dist {
    int unused;
};

dq_status dq_dist_new(dq_dist_t **out, int *argc, char ***argv, dq_err *err)
{
    (void)argc;
    (void)argv;
    *out = calloc(1, sizeof **out);
    if (!*out) return dq_fail(err, DQ_ERR_NOMEM, "dist: out of memory");
    return DQ_OK;
}

void dq_dist_destroy(dq_dist_t **d)
{
    free(*d);
    *d = NULL;
}

void dq_dist_abort(dq_dist_t *d, int code)
{
    (void)d;
    exit(code);
}

int dq_dist_rank(const dq_dist_t *d)
{
    (void)d;
    return 0;
}

int dq_dist_size(const dq_dist_t *d)
{
    (void)d;
    return 1;
}

const char *dq_dist_kind(void)
{
    return "single";
}

dq_status dq_dist_reserve(dq_dist_t *d, int64_t n, dq_err *err)
{
    (void)d;
    (void)n;
    (void)err;
    return DQ_OK;
}

dq_status dq_dist_sum_f32(dq_dist_t *d, float *buf, int64_t n, dq_err *err)
{
    (void)d;
    (void)buf;
    (void)n;
    (void)err;
    return DQ_OK;
}

dq_status dq_dist_sum_f64(dq_dist_t *d, double *buf, int n, dq_err *err)
{
    (void)d;
    (void)buf;
    (void)n;
    (void)err;
    return DQ_OK;
}

dq_status dq_dist_max_i64(dq_dist_t *d, int64_t *buf, int n, dq_err *err)
{
    (void)d;
    (void)buf;
    (void)n;
    (void)err;
    return DQ_OK;
}
