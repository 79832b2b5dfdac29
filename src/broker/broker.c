/* broker.c - the broker's life cycle, poll loop, timers and the handling
 * of each message from clients (frontend) and workers (backend). Dispatch
 * and the service table are in dispatch.c, the worker table's life cycle
 * (join, leave, death, requeue) in workers.c; calls only point down:
 * broker.c -> dispatch.c -> workers.c -> records.c.
 *
 * The loop is the guide's load-balancing broker grown up: one zmq_poll over
 * both ROUTERs with a timeout of one tick; the backend is drained before the
 * frontend so returning credits are used before new work is accepted; every
 * event ends with dispatch() of the service it touched; a tick sends
 * heartbeats, purges dead workers and times out queued requests. A request
 * is decoded once (zero copy) when it arrives; the decoded struct is kept
 * beside its frame (b->req[r]) for the check at dispatch and the cache, and
 * the very frame the client sent is forwarded. A worker's reply is decoded
 * once (its req_id is checked, the cache stores it) and forwarded as
 * received. Sends never block (ZMQ_DONTWAIT): a peer that
 * does not read loses its own messages, never the broker's time.
 */
#include "broker/broker_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define S_BATCH 256 /* messages handled per socket per poll round */

void dq_broker_config_defaults(dq_broker_config *c)
{
    memset(c, 0, sizeof *c);
    c->frontend = "tcp://*:5555";
    c->backend = "tcp://*:5556";
    c->heartbeat_ms = 1000;
    c->liveness = 3;
    c->request_timeout_ms = 30000;
    c->service_timeout_ms = 120000;
    c->max_queue = 1024;
    c->max_clients = 1024;
    c->max_inflight = 1024;
    c->max_workers = 256;
    c->max_services = 64;
    c->max_msg_bytes = (int64_t)64 << 20;
    c->max_queue_bytes = (int64_t)1 << 30;
}

uint64_t dq_broker_epoch(const dq_broker_t *b)
{
    return b->epoch;
}

/* ---- frontend --------------------------------------------------------------------- */

/* Who a request is from, for fair sharing (flows.c): the name its frame
 * carries from authentication (ZAP user id, the key's name), else the
 * request's "client" field, else "#" + the routing id in hex. */
static void s_client_name(dq_broker_t *b, dq_wire_parts *p, const dq_msg_request *rq, char *out,
                          size_t cap)
{
    (void)b;
    const char *user = zmq_msg_gets(&p->f[1], "User-Id");
    if (user && user[0]) {
        snprintf(out, cap, "%s", user);
    } else if (rq->client[0]) {
        snprintf(out, cap, "%s", rq->client);
    } else {
        char hex[24];
        dq_wire_id_hex(zmq_msg_data(&p->f[0]), zmq_msg_size(&p->f[0]), hex, sizeof hex);
        snprintf(out, cap, "#%s", hex);
    }
}

static void s_on_request(dq_broker_t *b, dq_wire_parts *p, int64_t now)
{
    const uint8_t *cid = zmq_msg_data(&p->f[0]);
    size_t cid_len = zmq_msg_size(&p->f[0]);
    const dq_msg_request *rq = &b->msg.u.request;
    b->n_requests++;
    int32_t svc = dq_broker_service(b, rq->service, true);
    if (svc < 0) {
        dq_broker_error_reply(b, cid, cid_len, rq->req_id, DQ_REPLY_BAD_REQUEST,
                              "service '%s': broker already serves %d services", rq->service,
                              b->cfg.max_services);
        return;
    }
    dq_bservice *s = &b->services[svc];
    if (dq_brec_find(b, cid, cid_len, rq->req_id) >= 0) {
        b->n_dup++;
        dq_broker_log(b, "ignored duplicate req_id %llu for '%s' (the first copy is answered)",
                      (unsigned long long)rq->req_id, s->name);
        return;
    }
    char why[DQ_MSG_ERROR_MAX + 1];
    bool live = s->n_workers > 0;
    if (live && dq_broker_check_request(s, rq, why, sizeof why)) {
        s->bad_requests++;
        s->errors++;
        dq_broker_count_reply(b, svc, DQ_REPLY_BAD_REQUEST, now, now);
        dq_broker_error_reply(b, cid, cid_len, rq->req_id, DQ_REPLY_BAD_REQUEST, "%s", why);
        return;
    }
    if (b->cfg.cache && s->has_identity && b->cfg.cache->lookup) {
        zmq_msg_t rep;
        if (b->cfg.cache->lookup(b->cfg.cache->ctx, &s->identity.teacher, rq, &rep)) {
            if (zmq_send(b->frontend, cid, cid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
                zmq_msg_send(&rep, b->frontend, ZMQ_DONTWAIT) < 0)
                b->n_undeliverable++;
            zmq_msg_close(&rep);
            b->n_replies++;
            dq_broker_count_reply(b, svc, DQ_REPLY_OK, now, now);
            return;
        }
    }
    char name[DQ_MSG_NAME_MAX + 2];
    s_client_name(b, p, rq, name, sizeof name);
    int32_t fi = dq_bflow_get(b, svc, name);
    if (fi < 0) {
        s->overloaded++;
        s->errors++;
        dq_broker_count_reply(b, svc, DQ_REPLY_OVERLOADED, now, now);
        dq_broker_error_reply(b, cid, cid_len, rq->req_id, DQ_REPLY_OVERLOADED,
                              "service '%s': broker serves %d clients already (--max-clients)",
                              s->name, b->cfg.max_clients);
        return;
    }
    dq_bflow *fl = &b->flows[fi];
    fl->requests++;
    if (fl->queue.count >= b->cfg.max_queue) {
        fl->overloaded++;
        s->overloaded++;
        s->errors++;
        dq_broker_count_reply(b, svc, DQ_REPLY_OVERLOADED, now, now);
        dq_broker_error_reply(b, cid, cid_len, rq->req_id, DQ_REPLY_OVERLOADED,
                              "service '%s': client %s has %d requests queued (--max-queue)",
                              s->name, fl->name, fl->queue.count);
        return;
    }
    if (dq_budget_refuse(b, fi, zmq_msg_size(&p->f[1]), why, sizeof why)) {
        /* the frame is closed when we return: nothing of it stays */
        b->n_over_budget++;
        fl->overloaded++;
        s->overloaded++;
        s->errors++;
        dq_broker_count_reply(b, svc, DQ_REPLY_OVERLOADED, now, now);
        dq_broker_error_reply(b, cid, cid_len, rq->req_id, DQ_REPLY_OVERLOADED,
                              "service '%s': %s", s->name, why);
        return;
    }
    int32_t r = b->queued < b->max_queued ? dq_brec_alloc(b) : -1;
    if (r < 0) {
        fl->overloaded++;
        s->overloaded++;
        s->errors++;
        dq_broker_count_reply(b, svc, DQ_REPLY_OVERLOADED, now, now);
        dq_broker_error_reply(b, cid, cid_len, rq->req_id, DQ_REPLY_OVERLOADED,
                              "service '%s': broker queue full (%d queued, %d in flight)", s->name,
                              b->queued, b->inflight);
        return;
    }
    dq_brec *x = &b->rec[r];
    x->service = svc;
    x->flow = fi;
    dq_bflow_ref(b, fi);
    x->worker = -1;
    x->state = REC_QUEUED;
    x->checked = live;
    x->req_id = rq->req_id;
    x->cid_len = (uint8_t)cid_len;
    memcpy(x->cid, cid, cid_len);
    x->deadline_ms = now + b->cfg.request_timeout_ms;
    x->arrived_ms = now;
    /* Keep the frame and the request decoded from it, data re-pointed into
     * the kept frame (a tiny frame lives inside the zmq_msg_t and moves). */
    size_t off = (size_t)((const uint8_t *)rq->data - (const uint8_t *)zmq_msg_data(&p->f[1]));
    if (zmq_msg_move(&x->body, &p->f[1]) != 0) {
        dq_broker_log(b, "zmq_msg_move: %s", zmq_strerror(zmq_errno()));
        dq_brec_release(b, r);
        dq_broker_error_reply(b, cid, cid_len, rq->req_id, DQ_REPLY_ERROR,
                              "broker: internal error keeping the request");
        return;
    }
    b->req[r] = *rq;
    b->req[r].data = (const uint8_t *)zmq_msg_data(&x->body) + off;
    dq_brec_hash_insert(b, r);
    dq_budget_take(b, r);
    dq_bflow_push_back(b, r);
    b->queued++;
    dq_broker_dispatch(b, svc, now);
}

static void s_on_frontend(dq_broker_t *b, dq_wire_parts *p, int64_t now)
{
    const uint8_t *cid = zmq_msg_data(&p->f[0]);
    size_t cid_len = zmq_msg_size(&p->f[0]);
    dq_err err = {{0}};
    if (p->total != 2) {
        b->n_malformed++;
        dq_broker_error_reply(b, cid, cid_len, 0, DQ_REPLY_BAD_REQUEST,
                              "expected 1 body frame, got %d frames", p->total - 1);
        return;
    }
    size_t len = zmq_msg_size(&p->f[1]);
    if ((int64_t)len > b->cfg.max_msg_bytes) {
        b->n_malformed++;
        dq_broker_error_reply(b, cid, cid_len, 0, DQ_REPLY_BAD_REQUEST,
                              "message of %zu bytes exceeds the broker's limit of %lld", len,
                              (long long)b->cfg.max_msg_bytes);
        return;
    }
    if (dq_msg_decode(b->dec, zmq_msg_data(&p->f[1]), len, &b->msg, &err) != DQ_OK) {
        b->n_malformed++;
        dq_broker_error_reply(b, cid, cid_len, b->msg.req_id, DQ_REPLY_BAD_REQUEST, "%s",
                              err.msg);
        return;
    }
    switch (b->msg.type) {
    case DQ_MSG_REQUEST: s_on_request(b, p, now); break;
    case DQ_MSG_HEARTBEAT: dq_broker_send_client(b, cid, cid_len, b->hb.data, b->hb.len); break;
    case DQ_MSG_STATS_REQUEST: {
        uint64_t id = b->msg.u.stats_request.req_id;
        dq_msg_buf_reset(&b->out);
        if (dq_broker_stats_json(b, now, &err) != DQ_OK ||
            dq_msg_encode_stats_reply(&b->out, id, (const char *)b->json.data, b->json.len,
                                      &err) != DQ_OK) {
            dq_broker_log(b, "stats: %s", err.msg);
            break;
        }
        dq_broker_send_client(b, cid, cid_len, b->out.data, b->out.len);
        break;
    }
    case DQ_MSG_READY:
    case DQ_MSG_DRAIN:
    case DQ_MSG_GOODBYE:
        /* A teacher worker given the client port: tell it (it stops, worker.c). */
        b->n_malformed++;
        dq_broker_error_reply(b, cid, cid_len, b->msg.req_id, DQ_REPLY_BAD_REQUEST,
                              "%s is the broker's client port (frontend): teacher workers "
                              "connect to its worker port (backend) %s",
                              b->cfg.frontend, b->cfg.backend);
        break;
    default:
        b->n_malformed++;
        dq_broker_error_reply(b, cid, cid_len, b->msg.req_id, DQ_REPLY_BAD_REQUEST,
                              "message type '%s' is not accepted from clients",
                              dq_msg_type_name(b->msg.type));
    }
}

/* A student (or --stats) given the worker port: its request gets an error
 * reply naming the right port, not silence until its timeout. */
static void s_client_at_backend(dq_broker_t *b, const uint8_t *id, size_t id_len,
                                const char *hex)
{
    uint64_t req_id = b->msg.type == DQ_MSG_STATS_REQUEST ? b->msg.u.stats_request.req_id
                                                         : b->msg.req_id;
    b->n_malformed++;
    dq_broker_error_reply_backend(b, id, id_len, req_id, DQ_REPLY_BAD_REQUEST,
                                  "%s is the broker's worker port (backend): students and "
                                  "clients connect to its client port (frontend) %s",
                                  b->cfg.backend, b->cfg.frontend);
    dq_broker_log(b, "a client (%s) sent a '%s' to the worker port: told it to use %s", hex,
                  dq_msg_type_name(b->msg.type), b->cfg.frontend);
}

/* ---- backend --------------------------------------------------------------------- */

static void s_on_ready(dq_broker_t *b, int32_t w, const uint8_t *id, size_t len,
                       const char *name, int64_t now)
{
    const dq_msg_ready *rd = &b->msg.u.ready;
    if (w >= 0) {
        int32_t old = b->workers[w].service;
        dq_broker_remove_worker(b, w, "re-announced itself", now);
        dq_broker_dispatch(b, old, now);
    }
    int32_t svc = dq_broker_service(b, rd->teacher.service, true);
    if (svc < 0) {
        char hex[24], why[DQ_MSG_ERROR_MAX + 1];
        dq_wire_id_hex(id, len, hex, sizeof hex);
        snprintf(why, sizeof why, "broker already serves %d services", b->cfg.max_services);
        dq_broker_log(b, "rejected worker %s for '%s': %s", hex, rd->teacher.service, why);
        dq_broker_disconnect(b, id, len, why);
        return;
    }
    int32_t nw = dq_broker_add_worker(b, svc, id, len, name, rd, now);
    if (nw >= 0) dq_broker_dispatch(b, svc, now);
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
    bool decoded = st == DQ_OK; /* later failures are the reply checks: bad_replies */
    if (st == DQ_OK && b->msg.u.reply.req_id != x->req_id)
        st = dq_fail(&err, DQ_ERR_PROTO, "reply for req_id %llu to request %llu",
                     (unsigned long long)b->msg.u.reply.req_id, (unsigned long long)x->req_id);
    double ms = (double)(now - x->dispatched_ms);
    wk->served++;
    s->served++;
    wk->service_ms_sum += ms;
    s->service_ms_sum += ms;
    char bad[DQ_MSG_ERROR_MAX + 1];
    if (st == DQ_OK && dq_broker_check_reply(&s->identity, &b->req[r], &b->msg.u.reply, bad,
                                             sizeof bad))
        st = dq_fail(&err, DQ_ERR_PROTO, "%s", bad);
    if (st != DQ_OK) {
        wk->errors++;
        if (decoded) b->n_bad_replies++; /* decoded, failed the checks */
        else b->n_malformed++;
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
        /* The request is still held, decoded since it arrived. */
        b->cfg.cache->store(b->cfg.cache->ctx, &rep->teacher, &b->req[r], rep);
    }
    /* Forward the worker's frame itself: zmq_msg_send moves it, no copy. */
    if (zmq_send(b->frontend, x->cid, x->cid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_msg_send(&p->f[2], b->frontend, ZMQ_DONTWAIT) < 0)
        b->n_undeliverable++;
    b->n_replies++;
    dq_broker_count_reply(b, x->service, rep->status, x->arrived_ms, now);
    dq_blist_remove(b, &wk->held, r);
    wk->in_flight--;
    dq_bready_update(b, w, false);
    b->inflight--;
    dq_brec_release(b, r);
    dq_broker_dispatch(b, wk->service, now);
}

static void s_on_backend(dq_broker_t *b, dq_wire_parts *p, int64_t now)
{
    if (p->n < 1) return;
    const uint8_t *id = zmq_msg_data(&p->f[0]);
    size_t id_len = zmq_msg_size(&p->f[0]);
    int32_t w = dq_broker_find_worker(b, id, id_len);
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
            dq_broker_reannounce(b, id, id_len);
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
    case DQ_MSG_READY: s_on_ready(b, w, id, id_len, zmq_msg_gets(&p->f[1], "User-Id"), now); break;
    case DQ_MSG_HEARTBEAT:
        if (w < 0) dq_broker_reannounce(b, id, id_len);
        break;
    case DQ_MSG_DRAIN:
        if (w < 0) {
            dq_broker_reannounce(b, id, id_len);
        } else {
            if (!b->workers[w].draining)
                dq_broker_log(b, "worker %s of '%s' is draining (%u in flight)", hex,
                              b->services[b->workers[w].service].name, b->workers[w].in_flight);
            b->workers[w].draining = true;
            dq_bready_update(b, w, false); /* no more work for it */
            /* Ack: the pipe is FIFO, so once the worker reads this it has
             * every request it will ever get and may say goodbye when done. */
            dq_msg_buf_reset(&b->out);
            if (dq_msg_encode_simple(&b->out, DQ_MSG_DRAIN, NULL) == DQ_OK)
                dq_broker_send_worker(b, id, id_len, b->out.data, b->out.len);
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
        if (w < 0 && (b->msg.type == DQ_MSG_REQUEST || b->msg.type == DQ_MSG_STATS_REQUEST)) {
            s_client_at_backend(b, id, id_len, hex);
            break;
        }
        b->n_malformed++;
        dq_broker_log(b, "unexpected '%s' from worker %s", dq_msg_type_name(b->msg.type), hex);
    }
}

/* ---- timers ------------------------------------------------------------------------- */

static void s_expire_queued(dq_broker_t *b, int64_t now)
{
    for (int32_t fi = 0; fi < b->flow_hi; fi++) {
        dq_bflow *f = &b->flows[fi];
        if (!f->used || f->queue.count == 0) continue;
        dq_bservice *s = &b->services[f->service];
        for (int32_t r = f->queue.head; r >= 0;) {
            int32_t next = b->rec[r].next;
            if (b->rec[r].deadline_ms <= now) {
                if (!s->has_identity)
                    dq_broker_fail_record(b, r, DQ_REPLY_UNKNOWN_SERVICE,
                                          "no worker has announced service '%s' (waited %d ms)",
                                          s->name, b->cfg.request_timeout_ms);
                else
                    dq_broker_fail_record(b, r, DQ_REPLY_TIMEOUT,
                                          "service '%s': no free worker within %d ms (%d live)",
                                          s->name, b->cfg.request_timeout_ms, s->n_workers);
            }
            r = next;
        }
    }
}

static void s_tick(dq_broker_t *b, int64_t now)
{
    if (dq_broker_purge(b, now) > 0) /* their requests went back to the queues */
        for (int32_t i = 0; i < b->service_hi; i++)
            if (b->services[i].used && b->services[i].queued > 0) dq_broker_dispatch(b, i, now);
    if (now >= b->next_hb_ms) {
        for (int32_t i = 0; i < b->worker_hi; i++) {
            dq_bworker *w = &b->workers[i];
            if (!w->used) continue;
            dq_broker_send_worker(b, w->id, w->id_len, b->hb.data, b->hb.len);
        }
        b->next_hb_ms = now + b->cfg.heartbeat_ms;
    }
    s_expire_queued(b, now);
    if (b->cfg.metrics_publish) dq_broker_metrics_publish(b, now);
}

/* ---- life cycle --------------------------------------------------------------------- */

int dq_broker_io_threads(bool curve)
{
    return curve ? 4 : 1;
}

/* With two or more I/O threads (CURVE: each side's crypto on a core of its
 * own), the frontend's connections go to the lower half of the threads and
 * the backend's to the upper half (ZMQ_AFFINITY, set before the bind: the
 * listener and every accepted connection follow it). Left to itself libzmq
 * places a connection on the thread with the fewest sockets at that moment,
 * and with one student and one worker both sides can end up on one thread
 * (bench_broker --curve: one I/O thread at 266-300 us a request, the other
 * idle). One I/O thread: no affinity (a mask naming no thread is a libzmq
 * assertion). */
static uint64_t s_affinity(void *ctx, bool backend)
{
    int n = zmq_ctx_get(ctx, ZMQ_IO_THREADS);
    if (n < 2) return 0;
    if (n > 64) n = 64;
    uint64_t low = (1ull << (n / 2)) - 1, all = n == 64 ? ~0ull : (1ull << n) - 1;
    return backend ? all & ~low : low;
}

static dq_status s_router(dq_broker_t *b, void **out, const char *ep, const char *domain,
                          dq_err *err)
{
    void *s = zmq_socket(b->ctx, ZMQ_ROUTER);
    if (!s) return dq_fail(err, DQ_ERR_NET, "zmq_socket(ROUTER): %s", zmq_strerror(zmq_errno()));
    *out = s;
    int one = 1, linger = 200;
    int64_t zmax = b->cfg.max_msg_bytes > INT64_MAX / 2 ? -1 : 2 * b->cfg.max_msg_bytes;
    if (zmq_setsockopt(s, ZMQ_ROUTER_MANDATORY, &one, sizeof one) ||
        zmq_setsockopt(s, ZMQ_ROUTER_HANDOVER, &one, sizeof one) ||
        zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger) ||
        zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &zmax, sizeof zmax))
        return dq_fail(err, DQ_ERR_NET, "zmq_setsockopt on %s: %s", ep, zmq_strerror(zmq_errno()));
    uint64_t aff = s_affinity(b->ctx, out == &b->backend);
    if (aff && zmq_setsockopt(s, ZMQ_AFFINITY, &aff, sizeof aff))
        return dq_fail(err, DQ_ERR_NET, "zmq_setsockopt(AFFINITY) on %s: %s", ep,
                       zmq_strerror(zmq_errno()));
    if (b->cfg.curve) DQ_TRY(dq_curve_server_apply(s, &b->cfg.curve->server, domain, err));
    DQ_TRY(dq_broker_handshake_watch(b, out == &b->backend, s, err));
    if (zmq_bind(s, ep) != 0)
        return dq_fail(err, DQ_ERR_NET, "cannot bind %s: %s", ep, zmq_strerror(zmq_errno()));
    return DQ_OK;
}

static dq_status s_check_config(const dq_broker_config *c, dq_err *err)
{
    if (!c->frontend || !c->backend)
        return dq_fail(err, DQ_ERR_ARG, "broker: frontend and backend endpoints are required");
    if (c->heartbeat_ms < 1 || c->heartbeat_ms > 3600000)
        return dq_fail(err, DQ_ERR_ARG, "broker: --heartbeat-ms must be 1..3600000");
    if (c->liveness < 1 || c->liveness > 1000)
        return dq_fail(err, DQ_ERR_ARG, "broker: --liveness must be 1..1000");
    if (c->request_timeout_ms < 1)
        return dq_fail(err, DQ_ERR_ARG, "broker: --request-timeout-ms must be >= 1");
    if (c->max_queue < 1 || c->max_inflight < 1 || c->max_queued_total < 0)
        return dq_fail(err, DQ_ERR_ARG, "broker: --max-queue and --max-inflight must be >= 1");
    if (c->max_clients < 1 || c->max_clients > (1 << 20))
        return dq_fail(err, DQ_ERR_ARG, "broker: --max-clients must be 1..%d", 1 << 20);
    for (int i = 0; i < c->n_shares; i++)
        if (!c->shares[i].name || !c->shares[i].name[0] || c->shares[i].weight < 1)
            return dq_fail(err, DQ_ERR_ARG, "broker: --share %d needs NAME=W with W >= 1", i + 1);
    if (c->max_workers < 1 || c->max_workers > 65536 || c->max_services < 1 ||
        c->max_services > 65536)
        return dq_fail(err, DQ_ERR_ARG, "broker: max workers/services must be 1..65536");
    if (c->max_msg_bytes < 1024)
        return dq_fail(err, DQ_ERR_ARG, "broker: --max-msg-bytes must be >= 1024");
    if (c->max_queue_bytes < 1024 || c->max_client_bytes < 0)
        return dq_fail(err, DQ_ERR_ARG, "broker: --max-queue-bytes must be >= 1024 and "
                       "--max-client-bytes >= 0");
    return DQ_OK;
}

static uint64_t s_random_epoch(void)
{
    uint64_t e = 0;
    if (getrandom(&e, sizeof e, 0) != (ssize_t)sizeof e)
        e = ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid() ^ (uint64_t)dq_clock_now_ms();
    return e ? e : 1;
}

dq_status dq_broker_new(dq_broker_t **out, const dq_broker_config *cfg, dq_err *err)
{
    *out = NULL;
    DQ_TRY(s_check_config(cfg, err));
    dq_broker_t *b = calloc(1, sizeof *b);
    if (!b) return dq_fail(err, DQ_ERR_NOMEM, "broker: out of memory");
    b->cfg = *cfg;
    b->log = cfg->log ? cfg->log : stderr;
    b->epoch = s_random_epoch();
    b->start_ms = dq_clock_now_ms();
    b->next_hb_ms = b->start_ms;
    int tick = cfg->request_timeout_ms / 10;
    if (tick < 5) tick = 5;
    b->tick_ms = tick < cfg->heartbeat_ms ? tick : cfg->heartbeat_ms;
    int64_t total = cfg->max_queued_total ? cfg->max_queued_total : 4 * (int64_t)cfg->max_queue;
    b->max_queued = (int)(total < (1 << 23) ? total : (1 << 23));
    if (b->tick_ms > 250) b->tick_ms = 250;
    dq_status st = dq_brec_init(b, err);
    if (!st) {
        b->services = calloc((size_t)cfg->max_services, sizeof *b->services);
        b->flows = calloc((size_t)cfg->max_clients, sizeof *b->flows);
        if (!b->services || !b->flows)
            st = dq_fail(err, DQ_ERR_NOMEM, "broker: cannot allocate the service and client "
                         "tables");
    }
    if (!st) st = dq_broker_workers_init(b, err);
    if (!st) st = dq_broker_services_init(b, err);
    if (!st) st = dq_bflow_init(b, err);
    if (!st) st = dq_msg_decoder_new(&b->dec, err);
    /* Both sockets get this one: it tells the epoch and our interval. */
    if (!st) st = dq_msg_encode_heartbeat_interval(&b->hb, b->epoch, (uint32_t)cfg->heartbeat_ms,
                                                   err);
    if (!st) st = dq_msg_buf_reserve(&b->out, 4096, err);
    if (!st) st = dq_msg_buf_reserve(&b->json, 4096, err);
    if (!st) {
        b->ctx = cfg->zmq_ctx;
        if (!b->ctx) {
            b->ctx = zmq_ctx_new();
            b->own_ctx = true;
            if (!b->ctx) st = dq_fail(err, DQ_ERR_NET, "zmq_ctx_new failed");
            else if (zmq_ctx_set(b->ctx, ZMQ_IO_THREADS,
                                 cfg->io_threads > 0 ? cfg->io_threads
                                                     : dq_broker_io_threads(cfg->curve)) != 0)
                st = dq_fail(err, DQ_ERR_NET, "zmq_ctx_set(IO_THREADS): %s",
                             zmq_strerror(zmq_errno()));
        }
    }
    if (!st) st = dq_broker_zap_start(b, err);
    if (!st) st = s_router(b, &b->frontend, cfg->frontend, "students", err);
    if (!st) st = s_router(b, &b->backend, cfg->backend, "workers", err);
    if (st) {
        dq_broker_destroy(&b);
        return st;
    }
    *out = b;
    return DQ_OK;
}

void dq_broker_destroy(dq_broker_t **p)
{
    if (!p || !*p) return;
    dq_broker_t *b = *p;
    dq_broker_handshake_stop(b);
    if (b->frontend) zmq_close(b->frontend);
    if (b->backend) zmq_close(b->backend);
    dq_broker_zap_stop(b);
    dq_brec_fini(b); /* closes held frames before the context goes */
    if (b->own_ctx && b->ctx) zmq_ctx_term(b->ctx);
    dq_msg_decoder_destroy(&b->dec);
    dq_msg_buf_free(&b->out);
    dq_msg_buf_free(&b->hb);
    dq_msg_buf_free(&b->json);
    dq_prom_free(&b->prom);
    dq_broker_workers_fini(b);
    dq_broker_services_fini(b);
    dq_bflow_fini(b);
    free(b->services);
    free(b->flows);
    free(b);
    *p = NULL;
}

/* After a receive burst: nothing more to read (EAGAIN) or a signal (EINTR)
 * ends the burst and clears *st; any other failure of a ROUTER socket is
 * not ours to survive: logged, and the loop stops with it. */
static bool s_recv_failed(dq_broker_t *b, dq_status *st, const char *which, dq_err *err)
{
    if (*st == DQ_OK || *st == DQ_ERR_TIMEOUT || *st == DQ_ERR_INTERRUPTED) {
        *st = DQ_OK;
        return false;
    }
    dq_fail_prefix(err, *st, "%s: ", which);
    dq_broker_log(b, "receive failed: %s", err ? err->msg : dq_strerror(*st));
    return true;
}

dq_status dq_broker_run(dq_broker_t *b, volatile sig_atomic_t *stop, dq_err *err)
{
    dq_broker_log(b, "serving clients on %s, workers on %s (epoch %016llx)%s", b->cfg.frontend,
                  b->cfg.backend, (unsigned long long)b->epoch,
                  b->cfg.curve ? "; CURVE: only listed keys, encrypted" : "");
    int64_t next_tick = dq_clock_now_ms();
    dq_wire_parts p;
    dq_status st = DQ_OK;
    while (!*stop) {
        int64_t now = dq_clock_now_ms();
        long wait = next_tick > now ? (long)(next_tick - now) : 0;
        zmq_pollitem_t items[5] = {{b->backend, 0, ZMQ_POLLIN, 0},
                                   {b->frontend, 0, ZMQ_POLLIN, 0},
                                   {b->hs[0].mon, 0, ZMQ_POLLIN, 0},
                                   {b->hs[1].mon, 0, ZMQ_POLLIN, 0},
                                   {b->zap, 0, ZMQ_POLLIN, 0}};
        if (zmq_poll(items, b->zap ? 5 : 4, wait) < 0) {
            if (zmq_errno() == EINTR) continue;
            st = dq_fail(err, DQ_ERR_NET, "zmq_poll: %s", zmq_strerror(zmq_errno()));
            break;
        }
        for (int i = 0; i < S_BATCH && (items[0].revents & ZMQ_POLLIN); i++) {
            if ((st = dq_wire_recv(b->backend, &p, ZMQ_DONTWAIT, err)) != DQ_OK) break;
            s_on_backend(b, &p, dq_clock_now_ms());
            dq_wire_parts_close(&p);
        }
        if (s_recv_failed(b, &st, "backend", err)) break;
        for (int i = 0; i < S_BATCH && (items[1].revents & ZMQ_POLLIN); i++) {
            if ((st = dq_wire_recv(b->frontend, &p, ZMQ_DONTWAIT, err)) != DQ_OK) break;
            if (p.n >= 1) s_on_frontend(b, &p, dq_clock_now_ms());
            dq_wire_parts_close(&p);
        }
        if (s_recv_failed(b, &st, "frontend", err)) break;
        for (int side = 0; side < 2; side++)
            if (items[2 + side].revents & ZMQ_POLLIN)
                dq_broker_handshake_handle(b, side, dq_clock_now_ms());
        if (b->zap && (items[4].revents & ZMQ_POLLIN)) dq_broker_zap_handle(b);
        now = dq_clock_now_ms();
        if (now >= next_tick) {
            s_tick(b, now);
            next_tick = now + b->tick_ms;
        }
    }
    dq_msg_buf_reset(&b->out);
    if (dq_msg_encode_disconnect(&b->out, "broker shutting down", true, NULL) == DQ_OK)
        for (int32_t i = 0; i < b->worker_hi; i++) {
            dq_bworker *w = &b->workers[i];
            if (!w->used) continue;
            dq_broker_send_worker(b, w->id, w->id_len, b->out.data, b->out.len);
        }
    dq_broker_log(b, "stopping: %d queued and %d in-flight requests abandoned (clients resend)",
                  b->queued, b->inflight);
    return st;
}
