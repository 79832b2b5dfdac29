/* broker.c - the broker's life cycle, poll loop, frontend (clients) and
 * dispatch. The backend side (workers) is in workers.c.
 *
 * The loop is the guide's load-balancing broker grown up: one zmq_poll over
 * both ROUTERs with a timeout of one tick; the backend is drained before the
 * frontend so returning credits are used before new work is accepted; every
 * event ends with dispatch() of the service it touched; a tick sends
 * heartbeats, purges dead workers and times out queued requests. Requests
 * are decoded once (zero copy) to read their header, then forwarded as the
 * very frame the client sent. Sends never block (ZMQ_DONTWAIT): a peer that
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
    c->max_inflight = 1024;
    c->max_workers = 256;
    c->max_services = 64;
    c->max_msg_bytes = (int64_t)64 << 20;
}

uint64_t dq_broker_epoch(const dq_broker_t *b)
{
    return b->epoch;
}

void dq_broker_log(dq_broker_t *b, const char *fmt, ...)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    char line[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(b->log, "%s.%03ldZ distillq-broker: %s\n", stamp, ts.tv_nsec / 1000000, line);
    fflush(b->log);
}

/* ---- replies made by the broker ---------------------------------------------- */

static void s_send_to_client(dq_broker_t *b, const uint8_t *cid, size_t cid_len, const void *body,
                             size_t len)
{
    const void *data[2] = {cid, body};
    size_t lens[2] = {cid_len, len};
    if (dq_wire_send(b->frontend, 2, data, lens, ZMQ_DONTWAIT, NULL) != DQ_OK)
        b->n_undeliverable++; /* client gone or not reading: its loss only */
}

static void s_verror_reply(dq_broker_t *b, const uint8_t *cid, size_t cid_len, uint64_t req_id,
                           dq_reply_status st, const char *fmt, va_list ap)
{
    char why[DQ_MSG_ERROR_MAX + 1];
    vsnprintf(why, sizeof why, fmt, ap);
    dq_msg_buf_reset(&b->out);
    if (dq_msg_encode_error_reply(&b->out, req_id, st, why, NULL) != DQ_OK) {
        dq_broker_log(b, "cannot encode an error reply (%s)", why);
        return;
    }
    s_send_to_client(b, cid, cid_len, b->out.data, b->out.len);
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

void dq_broker_fail_record(dq_broker_t *b, int32_t r, dq_reply_status st, const char *fmt, ...)
{
    dq_brec *x = &b->rec[r];
    dq_bservice *s = &b->services[x->service];
    s->errors++;
    if (st == DQ_REPLY_TIMEOUT || st == DQ_REPLY_UNKNOWN_SERVICE) s->timeouts++;
    if (st == DQ_REPLY_BAD_REQUEST) s->bad_requests++;
    va_list ap;
    va_start(ap, fmt);
    s_verror_reply(b, x->cid, x->cid_len, x->req_id, st, fmt, ap);
    va_end(ap);
    if (x->state == REC_QUEUED) {
        dq_blist_remove(b, &s->queue, r);
        b->queued--;
    } else if (x->state == REC_INFLIGHT) {
        dq_bworker *w = &b->workers[x->worker];
        dq_blist_remove(b, &w->held, r);
        w->in_flight--;
        b->inflight--;
    }
    dq_brec_release(b, r);
}

/* ---- services ------------------------------------------------------------------- */

/* A service nobody ever announced and nothing waits for: clients naming
 * random services must not use up the table for good. */
static bool s_reclaimable(const dq_bservice *s)
{
    return !s->has_identity && s->n_workers == 0 && s->queue.count == 0;
}

int32_t dq_broker_service(dq_broker_t *b, const char *name, bool create)
{
    int32_t free_slot = -1, spare = -1;
    for (int32_t i = 0; i < b->cfg.max_services && i <= b->service_hi; i++) {
        if (b->services[i].used) {
            if (strcmp(b->services[i].name, name) == 0) return i;
            if (spare < 0 && s_reclaimable(&b->services[i])) spare = i;
        } else if (free_slot < 0) {
            free_slot = i;
        }
    }
    if (free_slot < 0) free_slot = spare;
    if (!create || free_slot < 0) return -1;
    dq_bservice *s = &b->services[free_slot];
    memset(s, 0, sizeof *s);
    if (free_slot >= b->service_hi) b->service_hi = free_slot + 1;
    s->used = true;
    snprintf(s->name, sizeof s->name, "%s", name);
    dq_blist_init(&s->queue);
    return free_slot;
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

/* The live, non-draining worker of svc with the most free credits (ties:
 * the one that got work least recently), or -1. */
static int32_t s_pick_worker(const dq_broker_t *b, int32_t svc)
{
    int32_t best = -1;
    uint32_t best_free = 0;
    for (int32_t i = 0; i < b->worker_hi; i++) {
        const dq_bworker *w = &b->workers[i];
        if (!w->used || w->service != svc || w->draining || w->in_flight >= w->capacity)
            continue;
        uint32_t fr = w->capacity - w->in_flight;
        if (best < 0 || fr > best_free ||
            (fr == best_free && w->last_dispatch < b->workers[best].last_dispatch)) {
            best = i;
            best_free = fr;
        }
    }
    return best;
}

/* Re-reads a request that was queued before its service had a live
 * identity; false (and the record answered) if the live workers cannot take it. */
static bool s_late_check(dq_broker_t *b, int32_t r)
{
    dq_brec *x = &b->rec[r];
    dq_bservice *s = &b->services[x->service];
    dq_err err = {{0}};
    char why[DQ_MSG_ERROR_MAX + 1];
    if (dq_msg_decode(b->dec, zmq_msg_data(&x->body), zmq_msg_size(&x->body), &b->msg, &err) !=
        DQ_OK) { /* cannot happen: it decoded when it arrived */
        dq_broker_fail_record(b, r, DQ_REPLY_BAD_REQUEST, "%s", err.msg);
        return false;
    }
    if (dq_broker_check_request(s, &b->msg.u.request, why, sizeof why)) {
        dq_broker_fail_record(b, r, DQ_REPLY_BAD_REQUEST, "%s", why);
        return false;
    }
    x->checked = true;
    return true;
}

void dq_broker_dispatch(dq_broker_t *b, int32_t svc, int64_t now)
{
    dq_bservice *s = &b->services[svc];
    while (s->queue.count > 0) {
        int32_t w = s_pick_worker(b, svc);
        if (w < 0) return;
        int32_t r = s->queue.head;
        dq_brec *x = &b->rec[r];
        if (!x->checked && !s_late_check(b, r)) continue;
        dq_bworker *wk = &b->workers[w];
        x->gen++;
        uint8_t ticket[S_TICKET_LEN];
        dq_brec_ticket(b, r, ticket);
        zmq_msg_t copy;
        zmq_msg_init(&copy);
        zmq_msg_copy(&copy, &x->body); /* shares the frame: no byte copied */
        int rc = zmq_send(b->backend, wk->id, wk->id_len, ZMQ_SNDMORE | ZMQ_DONTWAIT);
        if (rc >= 0) rc = zmq_send(b->backend, ticket, sizeof ticket, ZMQ_SNDMORE | ZMQ_DONTWAIT);
        if (rc >= 0) rc = zmq_msg_send(&copy, b->backend, ZMQ_DONTWAIT);
        if (rc < 0) {
            int e = zmq_errno();
            zmq_msg_close(&copy);
            /* EHOSTUNREACH: the worker's connection is gone; treat it as dead
             * now rather than after the liveness period. */
            dq_broker_log(b, "cannot send to worker %s of '%s' (%s)", wk->id_hex, s->name,
                          zmq_strerror(e));
            dq_broker_remove_worker(b, w, "unreachable", now);
            continue;
        }
        dq_blist_remove(b, &s->queue, r);
        b->queued--;
        x->state = REC_INFLIGHT;
        x->worker = w;
        x->dispatched_ms = now;
        dq_blist_push_back(b, &wk->held, r);
        wk->in_flight++;
        wk->last_dispatch = ++b->dispatch_seq;
        b->inflight++;
    }
}

/* ---- frontend --------------------------------------------------------------------- */

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
            return;
        }
    }
    int32_t r = b->queued < b->cfg.max_queue ? dq_brec_alloc(b) : -1;
    if (r < 0) {
        s->overloaded++;
        s->errors++;
        dq_broker_error_reply(b, cid, cid_len, rq->req_id, DQ_REPLY_OVERLOADED,
                              "service '%s': broker queue full (%d queued, %d in flight)", s->name,
                              b->queued, b->inflight);
        return;
    }
    dq_brec *x = &b->rec[r];
    x->service = svc;
    x->worker = -1;
    x->state = REC_QUEUED;
    x->checked = live;
    x->req_id = rq->req_id;
    x->cid_len = (uint8_t)cid_len;
    memcpy(x->cid, cid, cid_len);
    x->deadline_ms = now + b->cfg.request_timeout_ms;
    zmq_msg_move(&x->body, &p->f[1]);
    dq_brec_hash_insert(b, r);
    dq_blist_push_back(b, &s->queue, r);
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
    case DQ_MSG_HEARTBEAT: s_send_to_client(b, cid, cid_len, b->hb.data, b->hb.len); break;
    case DQ_MSG_STATS_REQUEST: {
        uint64_t id = b->msg.u.stats_request.req_id;
        dq_msg_buf_reset(&b->out);
        if (dq_broker_stats_json(b, now, &err) != DQ_OK ||
            dq_msg_encode_stats_reply(&b->out, id, (const char *)b->json.data, b->json.len,
                                      &err) != DQ_OK) {
            dq_broker_log(b, "stats: %s", err.msg);
            break;
        }
        s_send_to_client(b, cid, cid_len, b->out.data, b->out.len);
        break;
    }
    default:
        b->n_malformed++;
        dq_broker_error_reply(b, cid, cid_len, b->msg.req_id, DQ_REPLY_BAD_REQUEST,
                              "message type '%s' is not accepted from clients",
                              dq_msg_type_name(b->msg.type));
    }
}

/* ---- timers ------------------------------------------------------------------------- */

static void s_expire_queued(dq_broker_t *b, int64_t now)
{
    for (int32_t i = 0; i < b->service_hi; i++) {
        dq_bservice *s = &b->services[i];
        if (!s->used) continue;
        for (int32_t r = s->queue.head; r >= 0;) {
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
    dq_broker_purge(b, now);
    if (now >= b->next_hb_ms) {
        for (int32_t i = 0; i < b->worker_hi; i++) {
            dq_bworker *w = &b->workers[i];
            if (!w->used) continue;
            const void *data[2] = {w->id, b->hb.data};
            size_t lens[2] = {w->id_len, b->hb.len};
            (void)dq_wire_send(b->backend, 2, data, lens, ZMQ_DONTWAIT, NULL);
        }
        b->next_hb_ms = now + b->cfg.heartbeat_ms;
    }
    s_expire_queued(b, now);
}

/* ---- life cycle --------------------------------------------------------------------- */

static dq_status s_router(dq_broker_t *b, void **out, const char *ep, dq_err *err)
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
    if (c->max_queue < 1 || c->max_inflight < 1)
        return dq_fail(err, DQ_ERR_ARG, "broker: --max-queue and --max-inflight must be >= 1");
    if (c->max_workers < 1 || c->max_workers > 65536 || c->max_services < 1 ||
        c->max_services > 65536)
        return dq_fail(err, DQ_ERR_ARG, "broker: max workers/services must be 1..65536");
    if (c->max_msg_bytes < 1024)
        return dq_fail(err, DQ_ERR_ARG, "broker: --max-msg-bytes must be >= 1024");
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
    if (b->tick_ms > 250) b->tick_ms = 250;
    dq_status st = dq_brec_init(b, err);
    if (!st) {
        b->workers = calloc((size_t)cfg->max_workers, sizeof *b->workers);
        b->services = calloc((size_t)cfg->max_services, sizeof *b->services);
        if (!b->workers || !b->services)
            st = dq_fail(err, DQ_ERR_NOMEM, "broker: cannot allocate the worker table");
    }
    if (!st) st = dq_msg_decoder_new(&b->dec, err);
    if (!st && cfg->cache) st = dq_msg_decoder_new(&b->dec2, err);
    if (!st) st = dq_msg_encode_heartbeat(&b->hb, b->epoch, err);
    if (!st) st = dq_msg_buf_reserve(&b->out, 4096, err);
    if (!st) st = dq_msg_buf_reserve(&b->json, 4096, err);
    if (!st) {
        b->ctx = cfg->zmq_ctx;
        if (!b->ctx) {
            b->ctx = zmq_ctx_new();
            b->own_ctx = true;
            if (!b->ctx) st = dq_fail(err, DQ_ERR_NET, "zmq_ctx_new failed");
        }
    }
    if (!st) st = s_router(b, &b->frontend, cfg->frontend, err);
    if (!st) st = s_router(b, &b->backend, cfg->backend, err);
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
    if (b->frontend) zmq_close(b->frontend);
    if (b->backend) zmq_close(b->backend);
    dq_brec_fini(b); /* closes held frames before the context goes */
    if (b->own_ctx && b->ctx) zmq_ctx_term(b->ctx);
    dq_msg_decoder_destroy(&b->dec);
    dq_msg_decoder_destroy(&b->dec2);
    dq_msg_buf_free(&b->out);
    dq_msg_buf_free(&b->hb);
    dq_msg_buf_free(&b->json);
    free(b->workers);
    free(b->services);
    free(b);
    *p = NULL;
}

dq_status dq_broker_run(dq_broker_t *b, volatile sig_atomic_t *stop, dq_err *err)
{
    dq_broker_log(b, "serving clients on %s, workers on %s (epoch %016llx)", b->cfg.frontend,
                  b->cfg.backend, (unsigned long long)b->epoch);
    int64_t next_tick = dq_clock_now_ms();
    dq_wire_parts p;
    dq_status st = DQ_OK;
    while (!*stop) {
        int64_t now = dq_clock_now_ms();
        long wait = next_tick > now ? (long)(next_tick - now) : 0;
        zmq_pollitem_t items[2] = {{b->backend, 0, ZMQ_POLLIN, 0},
                                   {b->frontend, 0, ZMQ_POLLIN, 0}};
        if (zmq_poll(items, 2, wait) < 0) {
            if (zmq_errno() == EINTR) continue;
            st = dq_fail(err, DQ_ERR_NET, "zmq_poll: %s", zmq_strerror(zmq_errno()));
            break;
        }
        for (int i = 0; i < S_BATCH && (items[0].revents & ZMQ_POLLIN); i++) {
            if (dq_wire_recv(b->backend, &p, ZMQ_DONTWAIT, NULL) != DQ_OK) break;
            dq_broker_on_backend(b, &p, dq_clock_now_ms());
            dq_wire_parts_close(&p);
        }
        for (int i = 0; i < S_BATCH && (items[1].revents & ZMQ_POLLIN); i++) {
            if (dq_wire_recv(b->frontend, &p, ZMQ_DONTWAIT, NULL) != DQ_OK) break;
            if (p.n >= 1) s_on_frontend(b, &p, dq_clock_now_ms());
            dq_wire_parts_close(&p);
        }
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
            const void *data[2] = {w->id, b->out.data};
            size_t lens[2] = {w->id_len, b->out.len};
            (void)dq_wire_send(b->backend, 2, data, lens, ZMQ_DONTWAIT, NULL);
        }
    dq_broker_log(b, "stopping: %d queued and %d in-flight requests abandoned (clients resend)",
                  b->queued, b->inflight);
    return st;
}
