/* dist_mpi.c - the dq_dist interface on Open MPI (see dist.h for why the
 * sums are an allgather plus a rank-ordered add, not MPI_Allreduce).
 *
 * MPI_COMM_WORLD is the student's communicator: one rank per process that
 * mpirun started. Errors are returned with MPI's own message; a failing rank
 * calls dq_dist_abort so that no peer waits forever in a collective.
 *
 * A process that no MPI launcher started (no OMPI_/PMIX_/PMI_ rank in its
 * environment: a plain `distillq-train`) does not initialise MPI at all: it
 * is rank 0 of 1 without MPI's start-up cost, threads and exit-time
 * allocations (which LeakSanitizer reported in every sanitizer-build run).
 */
#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "student_trainer/dist.h"

struct dq_dist {
    int rank, size;
    bool initialized;   /* we called MPI_Init (and so MPI_Finalize) */
    bool mpi;           /* MPI is in use (launched by mpirun or initialised by the caller) */
    float *scratch;     /* size x reserved floats for the gather */
    int64_t reserved;
    double *dscratch;   /* size x 64 doubles */
};

#define S_MAX_F64 64

static dq_status s_mpi_fail(dq_err *err, int rc, const char *what)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "code %d", rc);
    return dq_fail(err, DQ_ERR_NET, "mpi: %s: %s", what, msg);
}

/* Whether an MPI launcher started this process (Open MPI's mpirun sets
 * OMPI_COMM_WORLD_SIZE; PMIx and PMI launchers set PMIX_RANK / PMI_SIZE). */
static bool s_launched_by_mpi(void)
{
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_SIZE");
}

dq_status dq_dist_new(dq_dist_t **out, int *argc, char ***argv, dq_err *err)
{
    *out = NULL;
    dq_dist_t *d = calloc(1, sizeof *d);
    if (!d) return dq_fail(err, DQ_ERR_NOMEM, "dist: out of memory");
    int flag = 0;
    MPI_Initialized(&flag);
    if (!flag && !s_launched_by_mpi()) { /* a single process: no MPI */
        d->size = 1;
        *out = d;
        return DQ_OK;
    }
    d->mpi = true;
    if (!flag) {
        int rc = MPI_Init(argc, argv);
        if (rc != MPI_SUCCESS) {
            free(d);
            return s_mpi_fail(err, rc, "MPI_Init");
        }
        d->initialized = true;
    }
    /* Errors come back as codes, not as the default abort. */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->size);
    d->dscratch = malloc((size_t)d->size * S_MAX_F64 * sizeof(double));
    if (!d->dscratch) {
        dq_dist_destroy(&d);
        return dq_fail(err, DQ_ERR_NOMEM, "dist: out of memory");
    }
    *out = d;
    return DQ_OK;
}

void dq_dist_destroy(dq_dist_t **pd)
{
    dq_dist_t *d = *pd;
    if (!d) return;
    free(d->scratch);
    free(d->dscratch);
    if (d->initialized) MPI_Finalize();
    free(d);
    *pd = NULL;
}

void dq_dist_abort(dq_dist_t *d, int code)
{
    if (d && d->mpi) MPI_Abort(MPI_COMM_WORLD, code);
    exit(code); /* not reached under MPI */
}

int dq_dist_rank(const dq_dist_t *d)
{
    return d->rank;
}

int dq_dist_size(const dq_dist_t *d)
{
    return d->size;
}

const char *dq_dist_kind(void)
{
    return "mpi";
}

dq_status dq_dist_reserve(dq_dist_t *d, int64_t n, dq_err *err)
{
    if (d->size == 1 || n <= d->reserved) return DQ_OK;
    if (n > INT_MAX / d->size)
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "dist: %lld floats x %d ranks exceed one "
                       "MPI_Allgather", (long long)n, d->size);
    float *s = realloc(d->scratch, (size_t)n * (size_t)d->size * sizeof(float));
    if (!s) return dq_fail(err, DQ_ERR_NOMEM, "dist: out of memory for %d x %lld floats",
                           d->size, (long long)n);
    d->scratch = s;
    d->reserved = n;
    return DQ_OK;
}

dq_status dq_dist_sum_f32(dq_dist_t *d, float *buf, int64_t n, dq_err *err)
{
    if (d->size == 1) return DQ_OK;
    if (n > d->reserved)
        return dq_fail(err, DQ_ERR_INTERNAL, "dist: sum of %lld floats, %lld reserved",
                       (long long)n, (long long)d->reserved);
    int rc = MPI_Allgather(buf, (int)n, MPI_FLOAT, d->scratch, (int)n, MPI_FLOAT,
                           MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) return s_mpi_fail(err, rc, "MPI_Allgather (gradients)");
    /* rank order: ((g0 + g1) + g2) + ... */
    memcpy(buf, d->scratch, (size_t)n * sizeof(float));
    for (int r = 1; r < d->size; r++) {
        const float *g = d->scratch + (size_t)r * (size_t)n;
        for (int64_t i = 0; i < n; i++) buf[i] += g[i];
    }
    return DQ_OK;
}

dq_status dq_dist_sum_f64(dq_dist_t *d, double *buf, int n, dq_err *err)
{
    if (d->size == 1) return DQ_OK;
    if (n > S_MAX_F64)
        return dq_fail(err, DQ_ERR_INTERNAL, "dist: sum of %d doubles, at most %d", n,
                       S_MAX_F64);
    int rc = MPI_Allgather(buf, n, MPI_DOUBLE, d->dscratch, n, MPI_DOUBLE, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) return s_mpi_fail(err, rc, "MPI_Allgather (statistics)");
    memcpy(buf, d->dscratch, (size_t)n * sizeof(double));
    for (int r = 1; r < d->size; r++)
        for (int i = 0; i < n; i++) buf[i] += d->dscratch[(size_t)r * (size_t)n + (size_t)i];
    return DQ_OK;
}

dq_status dq_dist_max_i64(dq_dist_t *d, int64_t *buf, int n, dq_err *err)
{
    if (d->size == 1) return DQ_OK;
    int rc = MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) return s_mpi_fail(err, rc, "MPI_Allreduce (flags)");
    return DQ_OK;
}
