/* dispatch.c - the broker's service table, dispatch and the replies the
 * broker makes itself.
 *
 * Services are found by name through a hash index (index.c). Dispatch
 * hands the request the service's fair-share round robin serves next
 * (flows.c) to the live, non-draining worker with the most free credits
 * (ready.c; both O(1)) until the queue or the credits run out. A request queued before its service had a
 * live identity is checked against it here, at dispatch. A send that fails
 * means the worker's connection is gone: the worker is removed at once
 * (workers.c requeues what it held) rather than after the liveness period.
 * Called by broker.c after every event that may free a credit or queue a
 * request; calls only workers.c and records.c below it.
 */
#include "broker/broker_int.h"

#include <stdarg.h>
#include <string.h>

/* ---- replies made by the broker ---------------------------------------------- */

void dq_broker_send_client(dq_broker_t *b, const uint8_t *cid, size_t cid_len, const void *body,
                             size_t len)
{
    const void *data[2] = {cid, body};
    size_t lens[2] = {cid_len, len};
    if (dq_wire_send(b->frontend, 2, data, lens, ZMQ_DONTWAIT, NULL) != DQ_OK)
        b->n_undeliverable++; /* client gone or not reading: its loss only */
}

/* Encodes an error reply into b->out; false (logged) if it cannot. */
static bool s_encode_error(dq_broker_t *b, uint64_t req_id, dq_reply_status st, const char *fmt,
                           va_list ap)
{
    char why[DQ_MSG_ERROR_MAX + 1];
    vsnprintf(why, sizeof why, fmt, ap);
    dq_msg_buf_reset(&b->out);
    if (dq_msg_encode_error_reply(&b->out, req_id, st, why, NULL) == DQ_OK) return true;
    dq_broker_log(b, "cannot encode an error reply (%s)", why);
    return false;
}

static void s_verror_reply(dq_broker_t *b, const uint8_t *cid, size_t cid_len, uint64_t req_id,
                           dq_reply_status st, const char *fmt, va_list ap)
{
    if (!s_encode_error(b, req_id, st, fmt, ap)) return;
    dq_broker_send_client(b, cid, cid_len, b->out.data, b->out.len);
    b->n_replies++;
}

void dq_broker_error_reply(dq_broker_t *b, const uint8_t *cid, size_t cid_len, uint64_t req_id,
                           dq_reply_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    s_verror_reply(b, cid, cid_len, req_id, st, fmt, ap);
    va_end(ap);
    b->n_rejected++;
}

void dq_broker_error_reply_backend(dq_broker_t *b, const uint8_t *id, size_t id_len,
                                   uint64_t req_id, dq_reply_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (s_encode_error(b, req_id, st, fmt, ap))
        dq_broker_send_worker(b, id, id_len, b->out.data, b->out.len);
    va_end(ap);
    b->n_rejected++;
}

void dq_broker_fail_record(dq_broker_t *b, int32_t r, dq_reply_status st, const char *fmt, ...)
{
    dq_brec *x = &b->rec[r];
    dq_bservice *s = &b->services[x->service];
    s->errors++;
    if (st == DQ_REPLY_TIMEOUT || st == DQ_REPLY_UNKNOWN_SERVICE) s->timeouts++;
    if (st == DQ_REPLY_BAD_REQUEST) s->bad_requests++;
    dq_broker_count_reply(b, x->service, st, x->arrived_ms, dq_clock_now_ms());
    b->n_rejected++; /* every error reply the broker makes counts (docs/protocol.md 3) */
    va_list ap;
    va_start(ap, fmt);
    s_verror_reply(b, x->cid, x->cid_len, x->req_id, st, fmt, ap);
    va_end(ap);
    if (x->state == REC_QUEUED) {
        dq_bflow_remove(b, r);
        b->queued--;
    } else if (x->state == REC_INFLIGHT) {
        dq_bworker *w = &b->workers[x->worker];
        dq_blist_remove(b, &w->held, r);
        w->in_flight--;
        dq_bready_update(b, x->worker, false);
        b->inflight--;
    }
    dq_brec_release(b, r);
}

/* ---- services ------------------------------------------------------------------- */

/* A service nobody ever announced and nothing waits for: clients naming
 * random services must not use up the table for good. */
static bool s_reclaimable(const dq_bservice *s)
{
    return !s->has_identity && s->n_workers == 0 && s->queued == 0;
}

static uint32_t s_hash(const dq_broker_t *b, const char *name)
{
    return dq_bix_hash(name, strlen(name), b->epoch);
}

static bool s_eq(const void *ctx, int32_t i, const void *name)
{
    return strcmp(((const dq_broker_t *)ctx)->services[i].name, (const char *)name) == 0;
}

dq_status dq_broker_services_init(dq_broker_t *b, dq_err *err)
{
    return dq_bix_init(&b->svc_ix, b->cfg.max_services, "service", err);
}

void dq_broker_services_fini(dq_broker_t *b)
{
    dq_bix_free(&b->svc_ix);
}

/* Found by name through the index. Slots are never freed, so a new service
 * takes the next one; only when all --max-services are taken does a new
 * name look for a reclaimable one (a scan of the service table, bounded by
 * --max-services and never by the workers, on that path only). */
int32_t dq_broker_service(dq_broker_t *b, const char *name, bool create)
{
    uint32_t h = s_hash(b, name);
    int32_t slot = dq_bix_find(&b->svc_ix, h, s_eq, b, name);
    if (slot >= 0 || !create) return slot;
    if (b->service_hi < b->cfg.max_services) {
        slot = b->service_hi++;
    } else {
        for (int32_t i = 0; i < b->service_hi && slot < 0; i++)
            if (s_reclaimable(&b->services[i])) slot = i;
        if (slot < 0) return -1;
        /* Its flows are idle: they must not match the new service. */
        dq_bix_del(&b->svc_ix, b->services[slot].hash, slot);
        dq_bflow_drop_service(b, slot);
    }
    dq_bservice *s = &b->services[slot];
    memset(s, 0, sizeof *s);
    s->used = true;
    snprintf(s->name, sizeof s->name, "%s", name);
    s->hash = h;
    s->rr = -1;
    s->flows = -1;
    dq_bready_init_service(s);
    dq_prom_hist_init_seconds(&s->latency);
    dq_bix_put(&b->svc_ix, h, slot);
    return slot;
}

const char *dq_broker_check_request(const dq_bservice *s, const dq_msg_request *r, char *why,
                                    size_t cap)
{
    const dq_msg_ready *id = &s->identity;
    if (!(id->dtypes & (1u << r->dtype))) {
        snprintf(why, cap, "service '%s' does not take dtype %s", s->name,
                 dq_msg_dtype_name(r->dtype));
        return why;
    }
    if (r->shape[1] != id->input[0] || r->shape[2] != id->input[1] ||
        r->shape[3] != id->input[2]) {
        snprintf(why, cap, "service '%s' takes %lldx%lldx%lld inputs, request has %lldx%lldx%lld",
                 s->name, (long long)id->input[0], (long long)id->input[1],
                 (long long)id->input[2], (long long)r->shape[1], (long long)r->shape[2],
                 (long long)r->shape[3]);
        return why;
    }
    if (id->max_batch && r->shape[0] > (int64_t)id->max_batch) {
        snprintf(why, cap, "service '%s' takes batches of at most %u, request has %lld", s->name,
                 id->max_batch, (long long)r->shape[0]);
        return why;
    }
    for (int i = 0; i < r->n_outputs; i++) {
        bool found = false;
        for (int j = 0; j < id->n_outputs && !found; j++)
            found = strcmp(r->outputs[i], id->outputs[j].name) == 0;
        if (!found) {
            snprintf(why, cap, "service '%s' has no output '%s'", s->name, r->outputs[i]);
            return why;
        }
    }
    return NULL;
}

/* ---- dispatch --------------------------------------------------------------------- */

/* Checks a request that was queued before its service had a live identity
 * (as decoded on arrival, b->req[r]); false (and the record answered) if
 * the live workers cannot take it. */
static bool s_late_check(dq_broker_t *b, int32_t r)
{
    dq_brec *x = &b->rec[r];
    dq_bservice *s = &b->services[x->service];
    char why[DQ_MSG_ERROR_MAX + 1];
    if (dq_broker_check_request(s, &b->req[r], why, sizeof why)) {
        dq_broker_fail_record(b, r, DQ_REPLY_BAD_REQUEST, "%s", why);
        return false;
    }
    x->checked = true;
    return true;
}

void dq_broker_dispatch(dq_broker_t *b, int32_t svc, int64_t now)
{
    dq_bservice *s = &b->services[svc];
    while (s->queued > 0) {
        int32_t w = dq_bready_pick(b, svc);
        if (w < 0) return;
        int32_t r = dq_bflow_peek(b, svc);
        dq_brec *x = &b->rec[r];
        if (!x->checked && !s_late_check(b, r)) continue;
        dq_bworker *wk = &b->workers[w];
        x->gen++;
        uint8_t ticket[S_TICKET_LEN];
        dq_brec_ticket(b, r, ticket);
        zmq_msg_t copy;
        zmq_msg_init(&copy);
        if (zmq_msg_copy(&copy, &x->body) != 0) { /* shares the frame: no byte copied */
            dq_broker_log(b, "zmq_msg_copy: %s", zmq_strerror(zmq_errno()));
            zmq_msg_close(&copy);
            dq_broker_fail_record(b, r, DQ_REPLY_ERROR, "broker: internal error forwarding "
                                  "the request to service '%s'", s->name);
            continue;
        }
        int rc = zmq_send(b->backend, wk->id, wk->id_len, ZMQ_SNDMORE | ZMQ_DONTWAIT);
        if (rc >= 0) rc = zmq_send(b->backend, ticket, sizeof ticket, ZMQ_SNDMORE | ZMQ_DONTWAIT);
        if (rc >= 0) rc = zmq_msg_send(&copy, b->backend, ZMQ_DONTWAIT);
        if (rc < 0) {
            int e = zmq_errno();
            zmq_msg_close(&copy);
            b->n_worker_send_failed++;
            /* EHOSTUNREACH: the worker's connection is gone; treat it as dead
             * now rather than after the liveness period. */
            dq_broker_log(b, "cannot send to worker %s of '%s' (%s)", wk->id_hex, s->name,
                          zmq_strerror(e));
            dq_broker_remove_worker(b, w, "unreachable", now);
            continue;
        }
        dq_bflow_take(b, r);
        b->queued--;
        x->state = REC_INFLIGHT;
        x->worker = w;
        x->dispatched_ms = now;
        dq_blist_push_back(b, &wk->held, r);
        wk->in_flight++;
        dq_bready_update(b, w, true);
        b->inflight++;
    }
}

