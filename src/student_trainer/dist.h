/* dist.h - the ranks of a data-parallel student (distillq-train under mpirun).
 *
 * R processes train one student: every global batch is split across the
 * ranks (shard.h), each rank computes the gradient of its shard, and the
 * gradients are summed IN RANK ORDER, so every rank applies the same bits
 * and two runs with the same R give byte-identical weights.
 *
 * Why allgather and not MPI_Allreduce(MPI_SUM): Open MPI's tuned collectives
 * pick the reduction algorithm (recursive doubling, ring, Rabenseifner,
 * ...) from the message size, the rank count and the process placement; each
 * adds the float contributions in a different association, so the sum (and
 * the run) could change with R's layout or a library upgrade, and the MPI
 * standard only *advises* that every rank get the same bits. Gathering every
 * rank's gradient (MPI_Allgather) and adding them locally as
 * g_0 + g_1 + ... + g_{R-1} fixes the order by construction, costs R x P
 * floats of traffic and scratch instead of about 2 P, and is cheap for the
 * students distillq trains (up to a few million parameters). Small exact
 * totals (sample and correct counts, flags) use MPI_Allreduce on integers,
 * where order cannot matter.
 *
 * Two implementations behind this interface: dist_mpi.c (Open MPI, when
 * configure found it) and dist_single.c (one rank, every call a no-op), so
 * the trainer has one code path and the non-MPI build is unchanged.
 */
#ifndef DQ_DIST_H
#define DQ_DIST_H

#include <stdbool.h>
#include <stdint.h>

#include "base/status.h"

typedef struct dq_dist dq_dist_t;

/* Starts the ranks (MPI_Init under MPI; argc/argv may be NULL). One per
 * process, from main, before anything else. */
dq_status dq_dist_new(dq_dist_t **out, int *argc, char ***argv, dq_err *err);

/* Ends the ranks (MPI_Finalize) and sets *d to NULL. */
void dq_dist_destroy(dq_dist_t **d);

/* Ends the whole job now with `code` (MPI_Abort): a rank that fails alone
 * must not leave the others waiting in a collective. */
void dq_dist_abort(dq_dist_t *d, int code);

int dq_dist_rank(const dq_dist_t *d);
int dq_dist_size(const dq_dist_t *d);
/* Which implementation: "mpi" or "single". */
const char *dq_dist_kind(void);

/* Reserves scratch for summing up to n floats (allocates; call before the
 * training loop so that the loop does not). */
dq_status dq_dist_reserve(dq_dist_t *d, int64_t n, dq_err *err);

/* buf[i] = sum over ranks r in order 0..R-1 of rank r's buf[i], the same bits
 * on every rank. n <= the reserved size. */
dq_status dq_dist_sum_f32(dq_dist_t *d, float *buf, int64_t n, dq_err *err);

/* The same for a few doubles (per-step statistics), summed in rank order. */
dq_status dq_dist_sum_f64(dq_dist_t *d, double *buf, int n, dq_err *err);

/* buf = the maximum over ranks (flags: stop, failure codes). */
dq_status dq_dist_max_i64(dq_dist_t *d, int64_t *buf, int n, dq_err *err);

#endif
