/* reply_check.c - what the broker checks in a worker's ok reply before it
 * forwards the frame (docs/protocol.md 3, "reply checks").
 *
 * The broker forwards reply frames unchanged (no re-encoding), so it either
 * passes a reply as it is or replaces it with an `error` reply of its own.
 * Decided for protocol version 1: an ok reply must name the teacher its
 * worker announced (service, model, sha256) and carry exactly the requested
 * outputs, in request order, each with n = the request's batch rows.
 * Anything else is a teacher bug the client cannot detect by itself (a
 * different sha256 would make a student silently learn from another
 * teacher), so the client gets `error` naming the fault, and the broker
 * counts it in `bad_replies` (not `malformed`: the body decoded).
 */
#include "broker/broker_int.h"

#include <stdio.h>
#include <string.h>

const char *dq_broker_check_reply(const dq_msg_ready *id, const dq_msg_request *rq,
                                  const dq_msg_reply *rep, char *why, size_t cap)
{
    if (rep->status != DQ_REPLY_OK) return NULL;
    const dq_msg_teacher *t = &rep->teacher;
    if (strcmp(t->service, id->teacher.service) || strcmp(t->model, id->teacher.model) ||
        strcmp(t->sha256, id->teacher.sha256)) {
        snprintf(why, cap, "reply names teacher %s/%s (sha256 %.12s), the worker announced "
                 "%s/%s (%.12s)", t->service, t->model, t->sha256, id->teacher.service,
                 id->teacher.model, id->teacher.sha256);
        return why;
    }
    if (rep->n_outputs != rq->n_outputs) {
        snprintf(why, cap, "reply has %d outputs, the request asked for %d", rep->n_outputs,
                 rq->n_outputs);
        return why;
    }
    for (int i = 0; i < rq->n_outputs; i++) {
        const dq_msg_output *o = &rep->outputs[i];
        if (strcmp(o->name, rq->outputs[i]) != 0) {
            snprintf(why, cap, "reply output %d is '%s', the request asked for '%s'", i,
                     o->name, rq->outputs[i]);
            return why;
        }
        if (o->shape[0] != rq->shape[0]) {
            snprintf(why, cap, "reply output '%s' has %lld rows, the request %lld", o->name,
                     (long long)o->shape[0], (long long)rq->shape[0]);
            return why;
        }
    }
    return NULL;
}
