/* ordered.h - the ordered client: batches in, teacher outputs out strictly
 * in submission order, exactly once.
 *
 * One dq_client_t (client.h: resends, broker restarts, duplicate drops,
 * local timeouts) plus the reordering every ordered consumer needs: batch s
 * is request s + 1 (ids start at 1: 0 is the id of the broker's errors for
 * undecodable requests), at most K = max_inflight are outstanding, and a
 * reply is parked in slot s % K, copied into aligned floats, until every
 * earlier batch has been taken. distillq-predict --teacher and libdistillq's
 * client (include/distillq.h, Python's distillq.Teacher) are this file.
 *
 * The batch is kept (copied) until its result is taken: an "overloaded" or
 * "timeout" reply (the broker's "retry later") sends it again after 100 ms,
 * until request_timeout_ms since its first send; then it is an error.
 *
 * Every ok reply is checked against its request (outputs by name and order,
 * n rows, a teacher identity): a mismatch is DQ_ERR_PROTO. An error reply
 * (overloaded, timeout, bad_request, unknown_service...) is returned at once
 * by dq_ordered_next as its dq_status with the broker's reason, and again by
 * every later call (dq_ordered_broken): the order cannot go on without it.
 *
 * One thread per dq_ordered_t.
 */
#ifndef DQ_CLIENT_ORDERED_H
#define DQ_CLIENT_ORDERED_H

#include <stdbool.h>
#include <stdint.h>

#include "client/client.h"

typedef struct dq_ordered dq_ordered_t;

typedef struct {
    char name[DQ_MSG_NAME_MAX + 1];
    int ndim;
    int64_t shape[DQ_MSG_MAX_DIMS];   /* shape[0] = the batch's n */
    const float *data;                /* product(shape) floats, aligned */
} dq_ordered_output;

typedef struct {
    uint64_t seq;                     /* 0, 1, 2, ... in submission order */
    int n_outputs;                    /* as requested, in request order */
    dq_ordered_output outputs[DQ_MSG_MAX_OUTPUTS];
    dq_msg_teacher teacher;           /* who answered */
    char impl[DQ_MSG_IMPL_MAX + 1];   /* reply "impl" ("" when not told) */
    bool teacher_changed;             /* differs from the first teacher seen */
    int sends;                        /* 1 + resends */
} dq_ordered_result;

/* Opens a teacher URL (dq_client_parse_url); K = opts->max_inflight (opts
 * NULL: client defaults). Connects in the background. */
dq_status dq_ordered_new(dq_ordered_t **out, const char *url, const dq_client_opts *opts,
                         dq_err *err);
void dq_ordered_destroy(dq_ordered_t **p);

/* Sends batch number *seq (returned): n x c x h x w u8 or f32 NCHW at data
 * (copied), asking for outputs[n_outputs]. DQ_ERR_OVERLOADED when K batches
 * are outstanding (take one first), DQ_ERR_ARG for a malformed batch. */
dq_status dq_ordered_submit(dq_ordered_t *o, dq_msg_dtype dtype, const int64_t shape[4],
                            const void *data, int n_outputs, const char *const *outputs,
                            uint64_t *seq, dq_err *err);

/* The result of the oldest outstanding batch, waiting up to timeout_ms
 * (< 0: forever) for it. *out stays valid until the next dq_ordered_next or
 * destroy. DQ_ERR_TIMEOUT: not yet; DQ_ERR_ARG: nothing outstanding;
 * DQ_ERR_INTERRUPTED: a signal; an error reply: its status (client.h's
 * dq_client_reply_status) with the reason. */
dq_status dq_ordered_next(dq_ordered_t *o, const dq_ordered_result **out, int timeout_ms,
                          dq_err *err);

/* True once an error reply (or a reply failing the checks) has ended the
 * order: dq_ordered_next then returns that error again, so a caller can
 * tell DQ_ERR_TIMEOUT "not yet" (false) from a request timeout (true). */
bool dq_ordered_broken(const dq_ordered_t *o);

/* Batches submitted and not yet taken. */
int dq_ordered_pending(const dq_ordered_t *o);

/* The service's announce as the broker's stats tell it (model, sha256,
 * input, dtypes, normalisation, outputs, max_batch; capacity = live
 * workers' total). Only with nothing outstanding. DQ_ERR_NOT_FOUND when no
 * worker of the service is live; DQ_ERR_TIMEOUT when the broker does not
 * answer within timeout_ms. */
dq_status dq_ordered_info(dq_ordered_t *o, dq_msg_ready *info, int *n_workers, int timeout_ms,
                          dq_err *err);

/* Tells every later request the floats per sample of all its outputs
 * together (client.h's reply_floats: a larger reply is refused unread). */
void dq_ordered_set_reply_floats(dq_ordered_t *o, int64_t floats_per_sample);

/* Batches sent again after an overloaded or timeout reply. */
uint64_t dq_ordered_retries(const dq_ordered_t *o);

const char *dq_ordered_service(const dq_ordered_t *o);
dq_client_t *dq_ordered_client(dq_ordered_t *o);

#endif
