/* workers.c - the broker's backend: worker join/leave/death, heartbeats and
 * replies.
 *
 * A worker is known by its routing id from the moment its `ready` is
 * accepted until it says goodbye, re-announces, becomes unreachable, or is
 * silent for liveness x heartbeat. Forgetting a worker requeues what it held
 * at the head of its service's queue, oldest first, so the FIFO order of a
 * service survives worker deaths. A reply is accepted only with a ticket
 * naming a record held by that very worker (records.c); anything else is a
 * late reply and is dropped, which is what makes "exactly one reply" hold.
 * Messages from unknown workers other than `ready` are answered with
 * `reannounce` (Majordomo style): that is how workers re-join by themselves
 * after a broker restart.
 */
#include "broker/broker_int.h"

#include <string.h>

static int32_t s_find(const dq_broker_t *b, const uint8_t *id, size_t len)
{
    for (int32_t i = 0; i < b->worker_hi; i++) {
        const dq_bworker *w = &b->workers[i];
        if (w->used && w->id_len == len && memcmp(w->id, id, len) == 0) return i;
    }
    return -1;
}

static void s_send(dq_broker_t *b, const uint8_t *id, size_t len, const dq_msg_buf *body)
{
    const void *data[2] = {id, body->data};
    size_t lens[2] = {len, body->len};
    (void)dq_wire_send(b->backend, 2, data, lens, ZMQ_DONTWAIT, NULL);
}

static void s_reannounce(dq_broker_t *b, const uint8_t *id, size_t len)
{
    dq_msg_buf_reset(&b->out);
    if (dq_msg_encode_simple(&b->out, DQ_MSG_REANNOUNCE, NULL) == DQ_OK) s_send(b, id, len, &b->out);
}

static void s_disconnect(dq_broker_t *b, const uint8_t *id, size_t len, const char *why)
{
    dq_msg_buf_reset(&b->out);
    if (dq_msg_encode_disconnect(&b->out, why, true, NULL) == DQ_OK) s_send(b, id, len, &b->out);
}

void dq_broker_remove_worker(dq_broker_t *b, int32_t w, const char *why, int64_t now)
{
    dq_bworker *wk = &b->workers[w];
    dq_bservice *s = &b->services[wk->service];
    int n = wk->held.count;
    int32_t r;
    /* From the newest back, each to the front: the oldest ends up first. */
    while ((r = dq_blist_pop_back(b, &wk->held)) >= 0) {
        dq_brec *x = &b->rec[r];
        x->state = REC_QUEUED;
        x->worker = -1;
        x->deadline_ms = now + b->cfg.request_timeout_ms;
        dq_blist_push_front(b, &s->queue, r);
        b->queued++;
        b->inflight--;
    }
    wk->requeues += (uint64_t)n;
    s->requeues += (uint64_t)n;
    wk->used = false;
    wk->in_flight = 0;
    while (b->worker_hi > 0 && !b->workers[b->worker_hi - 1].used) b->worker_hi--;
    s->n_workers--;
    b->n_workers--;
    dq_broker_log(b, "worker %s %s; service '%s' (served %llu) has %d live workers", wk->id_hex,
                  why, s->name, (unsigned long long)wk->served, s->n_workers);
    if (n > 0)
        dq_broker_log(b, "requeued %d requests of worker %s at the head of '%s' (%d queued)", n,
                      wk->id_hex, s->name, s->queue.count);
}

/* How long worker w has held its oldest request (0 if none): the held list
 * is in dispatch order. */
static int64_t s_held_for(const dq_broker_t *b, const dq_bworker *w, int64_t now)
{
    return w->held.head >= 0 ? now - b->rec[w->held.head].dispatched_ms : 0;
}

void dq_broker_purge(dq_broker_t *b, int64_t now)
{
    int64_t limit = (int64_t)b->cfg.liveness * b->cfg.heartbeat_ms;
    int64_t stuck = b->cfg.service_timeout_ms;
    for (int32_t i = 0; i < b->worker_hi; i++) {
        dq_bworker *w = &b->workers[i];
        if (!w->used) continue;
        char why[96];
        if (stuck > 0 && s_held_for(b, w, now) > stuck) {
            /* Alive (it heartbeats) but not answering: its work goes to
             * others, and it is told to re-join afresh; any reply it sends
             * later carries a stale ticket and is dropped. */
            snprintf(why, sizeof why, "is stuck (held a request for %lld ms)",
                     (long long)s_held_for(b, w, now));
            s_disconnect(b, w->id, w->id_len, "stuck: a request held past --service-timeout-ms");
        } else if (now - w->last_seen_ms > limit) {
            snprintf(why, sizeof why, "died (silent for %lld ms)",
                     (long long)(now - w->last_seen_ms));
        } else {
            continue;
        }
        int32_t svc = w->service;
        dq_broker_remove_worker(b, i, why, now);
        dq_broker_dispatch(b, svc, now);
    }
}

/* Why a (new worker's) announce differs from the live workers', or NULL. */
static const char *s_identity_diff(const dq_msg_ready *a, const dq_msg_ready *live, char *why,
                                   size_t cap)
{
    if (strcmp(a->teacher.model, live->teacher.model) || strcmp(a->teacher.sha256, live->teacher.sha256))
        snprintf(why, cap, "model %s (sha256 %.12s) differs from the live workers' %s (%.12s)",
                 a->teacher.model, a->teacher.sha256, live->teacher.model, live->teacher.sha256);
    else if (memcmp(a->input, live->input, sizeof a->input) || a->dtypes != live->dtypes ||
             a->max_batch != live->max_batch)
        snprintf(why, cap, "input shape, dtypes or max_batch differ from the live workers'");
    else if (a->n_outputs != live->n_outputs)
        snprintf(why, cap, "%d outputs, live workers have %d", a->n_outputs, live->n_outputs);
    else {
        for (int i = 0; i < a->n_outputs; i++) {
            const dq_msg_output_spec *x = &a->outputs[i], *y = &live->outputs[i];
            if (strcmp(x->name, y->name) || x->ndim != y->ndim ||
                memcmp(x->shape, y->shape, (size_t)x->ndim * sizeof x->shape[0])) {
                snprintf(why, cap, "output '%s' differs from the live workers'", x->name);
                return why;
            }
        }
        return NULL;
    }
    return why;
}

static void s_on_ready(dq_broker_t *b, int32_t w, const uint8_t *id, size_t len, int64_t now)
{
    const dq_msg_ready *rd = &b->msg.u.ready;
    char hex[24], why[DQ_MSG_ERROR_MAX + 1];
    dq_wire_id_hex(id, len, hex, sizeof hex);
    if (w >= 0) {
        int32_t old = b->workers[w].service;
        dq_broker_remove_worker(b, w, "re-announced itself", now);
        dq_broker_dispatch(b, old, now);
    }
    int32_t svc = dq_broker_service(b, rd->teacher.service, true);
    if (svc < 0) {
        snprintf(why, sizeof why, "broker already serves %d services", b->cfg.max_services);
        dq_broker_log(b, "rejected worker %s for '%s': %s", hex, rd->teacher.service, why);
        s_disconnect(b, id, len, why);
        return;
    }
    dq_bservice *s = &b->services[svc];
    if (s->n_workers > 0 && s_identity_diff(rd, &s->identity, why, sizeof why)) {
        dq_broker_log(b, "rejected worker %s for '%s': %s", hex, s->name, why);
        s_disconnect(b, id, len, why);
        return;
    }
    int32_t slot = -1;
    for (int32_t i = 0; i < b->cfg.max_workers && slot < 0; i++)
        if (!b->workers[i].used) slot = i;
    if (slot < 0) {
        snprintf(why, sizeof why, "broker full (%d workers)", b->cfg.max_workers);
        dq_broker_log(b, "rejected worker %s for '%s': %s", hex, s->name, why);
        s_disconnect(b, id, len, why);
        return;
    }
    dq_bworker *wk = &b->workers[slot];
    memset(wk, 0, sizeof *wk);
    if (slot >= b->worker_hi) b->worker_hi = slot + 1;
    wk->used = true;
    wk->id_len = (uint8_t)len;
    memcpy(wk->id, id, len);
    memcpy(wk->id_hex, hex, sizeof wk->id_hex);
    wk->service = svc;
    wk->capacity = rd->capacity;
    wk->last_seen_ms = wk->joined_ms = now;
    dq_blist_init(&wk->held);
    if (s->n_workers == 0) {
        /* A (possibly new) identity: queued requests are checked at dispatch. */
        s->identity = *rd;
        s->has_identity = true;
        for (int32_t r = s->queue.head; r >= 0; r = b->rec[r].next) b->rec[r].checked = false;
    }
    s->n_workers++;
    b->n_workers++;
    dq_broker_log(b, "worker %s joined '%s' (model %s, sha256 %.12s, capacity %u); %d live", hex,
                  s->name, rd->teacher.model, rd->teacher.sha256, rd->capacity, s->n_workers);
    dq_broker_dispatch(b, svc, now);
}

static void s_on_reply(dq_broker_t *b, int32_t w, dq_wire_parts *p, int64_t now)
{
    dq_bworker *wk = &b->workers[w];
    int32_t r = dq_brec_from_ticket(b, zmq_msg_data(&p->f[1]), zmq_msg_size(&p->f[1]), w);
    if (r < 0) {
        b->n_late++;
        dq_broker_log(b, "dropped a late reply from worker %s (request no longer held by it)",
                      wk->id_hex);
        return;
    }
    dq_brec *x = &b->rec[r];
    dq_bservice *s = &b->services[x->service];
    dq_err err = {{0}};
    size_t len = zmq_msg_size(&p->f[2]);
    dq_status st = (int64_t)len > b->cfg.max_msg_bytes
                       ? dq_fail(&err, DQ_ERR_PROTO, "reply of %zu bytes is too large", len)
                       : dq_msg_decode(b->dec, zmq_msg_data(&p->f[2]), len, &b->msg, &err);
    if (st == DQ_OK && b->msg.type != DQ_MSG_REPLY)
        st = dq_fail(&err, DQ_ERR_PROTO, "a '%s' message with a ticket",
                     dq_msg_type_name(b->msg.type));
    if (st == DQ_OK && b->msg.u.reply.req_id != x->req_id)
        st = dq_fail(&err, DQ_ERR_PROTO, "reply for req_id %llu to request %llu",
                     (unsigned long long)b->msg.u.reply.req_id, (unsigned long long)x->req_id);
    double ms = (double)(now - x->dispatched_ms);
    wk->served++;
    s->served++;
    wk->service_ms_sum += ms;
    s->service_ms_sum += ms;
    if (st != DQ_OK) {
        wk->errors++;
        b->n_malformed++;
        dq_broker_log(b, "worker %s sent a malformed reply: %s", wk->id_hex, err.msg);
        dq_broker_fail_record(b, r, DQ_REPLY_ERROR, "teacher worker of '%s' sent a bad reply: %s",
                              s->name, err.msg);
        dq_broker_dispatch(b, wk->service, now);
        return;
    }
    const dq_msg_reply *rep = &b->msg.u.reply;
    if (rep->status != DQ_REPLY_OK) {
        wk->errors++;
        s->errors++;
    } else if (b->cfg.cache && b->cfg.cache->store) {
        /* The request is still held: decode it beside the reply. */
        if (dq_msg_decode(b->dec2, zmq_msg_data(&x->body), zmq_msg_size(&x->body), &b->msg2,
                          NULL) == DQ_OK)
            b->cfg.cache->store(b->cfg.cache->ctx, &rep->teacher, &b->msg2.u.request, rep);
    }
    /* Forward the worker's frame itself: zmq_msg_send moves it, no copy. */
    if (zmq_send(b->frontend, x->cid, x->cid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_msg_send(&p->f[2], b->frontend, ZMQ_DONTWAIT) < 0)
        b->n_undeliverable++;
    b->n_replies++;
    dq_blist_remove(b, &wk->held, r);
    wk->in_flight--;
    b->inflight--;
    dq_brec_release(b, r);
    dq_broker_dispatch(b, wk->service, now);
}

void dq_broker_on_backend(dq_broker_t *b, dq_wire_parts *p, int64_t now)
{
    if (p->n < 1) return;
    const uint8_t *id = zmq_msg_data(&p->f[0]);
    size_t id_len = zmq_msg_size(&p->f[0]);
    int32_t w = s_find(b, id, id_len);
    char hex[24];
    dq_wire_id_hex(id, id_len, hex, sizeof hex);
    if (w >= 0) b->workers[w].last_seen_ms = now;
    if (p->total != 2 && p->total != 3) {
        b->n_malformed++;
        dq_broker_log(b, "malformed message from worker %s: %d frames", hex, p->total - 1);
        return;
    }
    if (p->total == 3) {
        if (w < 0) {
            b->n_late++;
            dq_broker_log(b, "dropped a reply from unknown worker %s (declared dead?); asked it "
                             "to re-announce", hex);
            s_reannounce(b, id, id_len);
            return;
        }
        s_on_reply(b, w, p, now);
        return;
    }
    dq_err err = {{0}};
    size_t len = zmq_msg_size(&p->f[1]);
    if ((int64_t)len > b->cfg.max_msg_bytes ||
        dq_msg_decode(b->dec, zmq_msg_data(&p->f[1]), len, &b->msg, &err) != DQ_OK) {
        b->n_malformed++;
        dq_broker_log(b, "malformed message from worker %s: %s", hex,
                      err.msg[0] ? err.msg : "too large");
        return;
    }
    switch (b->msg.type) {
    case DQ_MSG_READY: s_on_ready(b, w, id, id_len, now); break;
    case DQ_MSG_HEARTBEAT:
        if (w < 0) s_reannounce(b, id, id_len);
        break;
    case DQ_MSG_DRAIN:
        if (w < 0) {
            s_reannounce(b, id, id_len);
        } else {
            if (!b->workers[w].draining)
                dq_broker_log(b, "worker %s of '%s' is draining (%u in flight)", hex,
                              b->services[b->workers[w].service].name, b->workers[w].in_flight);
            b->workers[w].draining = true;
            /* Ack: the pipe is FIFO, so once the worker reads this it has
             * every request it will ever get and may say goodbye when done. */
            dq_msg_buf_reset(&b->out);
            if (dq_msg_encode_simple(&b->out, DQ_MSG_DRAIN, NULL) == DQ_OK)
                s_send(b, id, id_len, &b->out);
        }
        break;
    case DQ_MSG_GOODBYE:
        if (w >= 0) {
            int32_t svc = b->workers[w].service;
            dq_broker_remove_worker(b, w, "left", now);
            dq_broker_dispatch(b, svc, now);
        }
        break;
    default:
        b->n_malformed++;
        dq_broker_log(b, "unexpected '%s' from worker %s", dq_msg_type_name(b->msg.type), hex);
    }
}
