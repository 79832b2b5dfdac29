/* client.c - one DEALER to the broker frontend with exactly-once replies.
 *
 * State: the in-flight table (inflight.c) plus, per slot, the encoded
 * request body, so a resend is one zmq_send of bytes we already have. A
 * socket monitor (inproc PAIR) tells us when the TCP connection drops and
 * comes back; the broker's heartbeat epoch tells us when it restarted;
 * pings while we wait tell us it is alive. Any of those events resends what
 * is in flight, in first-send order. Resends can make the broker answer a
 * request twice (once per copy it got); the table drops the second answer.
 *
 * The received message a delivered reply points into is kept until the next
 * recv, so replies are handed out without copying their outputs. Sends never
 * block: a send that finds the pipe full leaves the request in the table,
 * and the silence rule (new socket + resend) pushes it out later.
 */
#include "client/client.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client/inflight.h"
#include "proto/curve.h"
#include "proto/wire.h"

#define S_MAX_SERVICES 16

typedef struct {
    dq_msg_buf body;                      /* the encoded request, for resends */
    int64_t max_reply;                    /* largest acceptable reply frame; 0: any */
    int64_t retry_at;                     /* retry_ms: send again then (0: not waiting) */
    char service[DQ_MSG_NAME_MAX + 1];
} s_slot;

typedef struct {
    char service[DQ_MSG_NAME_MAX + 1];
    dq_msg_teacher id;                    /* first teacher seen for the service */
} s_known;

struct dq_client {
    dq_client_opts o;
    char endpoint[512];
    void *ctx, *sock, *mon;
    int mon_seq;
    bool lost;                            /* the monitor saw a disconnect */
    dq_curve_watch watch;                 /* CURVE handshake state (events of mon) */
    dq_msg_decoder_t *dec;
    dq_inflight fl;
    s_slot *slots;
    int32_t *order;                       /* scratch for resends, fl.cap entries */
    dq_msg_buf ping;
    /* what the last delivered reply points into */
    dq_wire_parts last;
    dq_msg last_msg;
    char last_service[DQ_MSG_NAME_MAX + 1];
    char last_error[DQ_MSG_ERROR_MAX + 1];
    s_known known[S_MAX_SERVICES];
    int n_known;
    int64_t last_heard, last_ping;
    uint64_t my_epoch, stats_seq;
    dq_client_counters k;
};

static void s_log(dq_client_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_log(dq_client_t *c, const char *fmt, ...)
{
    if (!c->o.log) return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(c->o.log, "client %s: %s\n", c->endpoint, line);
    fflush(c->o.log);
}

/* Copies a reason into a reply's error field, truncating (as the wire does). */
static void s_set_error(char *dst, const char *src)
{
    size_t n = strlen(src);
    if (n > DQ_MSG_ERROR_MAX) n = DQ_MSG_ERROR_MAX;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

void dq_client_opts_default(dq_client_opts *o)
{
    memset(o, 0, sizeof *o);
    o->max_inflight = 64;
    o->heartbeat_ms = 1000;
    o->liveness = 3;
    o->resend_ms = 60000;
    o->max_msg_bytes = (int64_t)1 << 30;
}

dq_status dq_client_parse_url(const char *url, char *endpoint, size_t endpoint_cap,
                              char service[DQ_MSG_NAME_MAX + 1], dq_err *err)
{
    const char *scheme = strstr(url, "://");
    const char *slash = strrchr(url, '/');
    if (!scheme || (strncmp(url, "tcp://", 6) != 0 && strncmp(url, "ipc://", 6) != 0))
        return dq_fail(err, DQ_ERR_ARG, "teacher URL '%s': expected tcp://HOST:PORT/SERVICE "
                       "or ipc:///PATH/SERVICE", url);
    size_t ep_len = (size_t)(slash - url), svc_len = strlen(slash + 1);
    if (slash < scheme + 3 || ep_len <= 6 || svc_len == 0)
        return dq_fail(err, DQ_ERR_ARG, "teacher URL '%s': no service name after the last '/' "
                       "(expected tcp://HOST:PORT/SERVICE)", url);
    if (svc_len > DQ_MSG_NAME_MAX)
        return dq_fail(err, DQ_ERR_ARG, "teacher URL '%s': service name longer than %d bytes",
                       url, DQ_MSG_NAME_MAX);
    if (ep_len >= endpoint_cap)
        return dq_fail(err, DQ_ERR_ARG, "teacher URL '%s': endpoint too long", url);
    if (strncmp(url, "tcp://", 6) == 0 && !memchr(url + 6, ':', ep_len - 6))
        return dq_fail(err, DQ_ERR_ARG, "teacher URL '%s': no port (tcp://HOST:PORT/SERVICE)",
                       url);
    memcpy(endpoint, url, ep_len);
    endpoint[ep_len] = '\0';
    memcpy(service, slash + 1, svc_len + 1);
    return DQ_OK;
}

/* ---- the socket ------------------------------------------------------------------- */

static void s_close_socket(dq_client_t *c)
{
    if (c->sock) {
        zmq_socket_monitor(c->sock, NULL, 0);
        zmq_close(c->sock);
    }
    if (c->mon) zmq_close(c->mon);
    c->sock = c->mon = NULL;
    c->lost = false;
}

static dq_status s_send_ping(dq_client_t *c, dq_err *err)
{
    dq_msg_buf_reset(&c->ping);
    DQ_TRY(dq_msg_encode_heartbeat(&c->ping, c->my_epoch, err));
    c->last_ping = dq_clock_now_ms();
    if (zmq_send(c->sock, c->ping.data, c->ping.len, ZMQ_DONTWAIT) < 0 && zmq_errno() != EAGAIN)
        return dq_fail(err, DQ_ERR_NET, "client %s: send: %s", c->endpoint,
                       zmq_strerror(zmq_errno()));
    return DQ_OK;
}

static dq_status s_open_socket(dq_client_t *c, dq_err *err)
{
    dq_wire_opts wo = {0};
    wo.max_msg_bytes = c->o.max_msg_bytes;
    wo.curve_server_cert = c->o.curve_server_cert;
    wo.curve_cert = c->o.curve_cert;
    wo.handshake_ms = c->o.heartbeat_ms * c->o.liveness;
    DQ_TRY(dq_wire_dealer_new(&c->sock, c->ctx, c->endpoint, &wo, err));
    char ep[64];
    snprintf(ep, sizeof ep, "inproc://dq-client-%p-%d", (void *)c, c->mon_seq++);
    memset(&c->watch, 0, sizeof c->watch);
    c->watch.curve = c->o.curve_cert != NULL;
    int events = ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED;
    events |= c->watch.curve ? DQ_CURVE_WATCH_EVENTS : DQ_CURVE_WATCH_EVENTS_PLAIN;
    if (zmq_socket_monitor(c->sock, ep, events) != 0 ||
        !(c->mon = zmq_socket(c->ctx, ZMQ_PAIR)) || zmq_connect(c->mon, ep) != 0) {
        dq_status st = dq_fail(err, DQ_ERR_NET, "client %s: socket monitor: %s", c->endpoint,
                               zmq_strerror(zmq_errno()));
        s_close_socket(c);
        return st;
    }
    c->last_heard = dq_clock_now_ms();
    return s_send_ping(c, err); /* learn the broker's epoch early */
}

/* Sends (or resends) the body in slot. A full pipe is not an error: the
 * request stays in flight and goes out with the next resend. */
static dq_status s_send_slot(dq_client_t *c, int slot, dq_err *err)
{
    const dq_msg_buf *b = &c->slots[slot].body;
    if (zmq_send(c->sock, b->data, b->len, ZMQ_DONTWAIT) < 0 && zmq_errno() != EAGAIN)
        return dq_fail(err, DQ_ERR_NET, "client %s: send: %s", c->endpoint,
                       zmq_strerror(zmq_errno()));
    return DQ_OK;
}

/* Resends everything in flight, oldest first. */
static dq_status s_resend_all(dq_client_t *c, const char *why, dq_err *err)
{
    int n = dq_inflight_in_order(&c->fl, c->order);
    if (n == 0) return DQ_OK;
    int64_t now = dq_clock_now_ms();
    for (int i = 0; i < n; i++) {
        DQ_TRY(s_send_slot(c, c->order[i], err));
        dq_inflight_resent(&c->fl, c->order[i], now);
    }
    c->k.resent += (uint64_t)n;
    s_log(c, "%s: resent %d request(s) in flight", why, n);
    return DQ_OK;
}

/* ---- life cycle -------------------------------------------------------------------- */

dq_status dq_client_new(dq_client_t **out, const char *endpoint, const dq_client_opts *opts,
                        dq_err *err)
{
    *out = NULL;
    dq_client_opts d;
    dq_client_opts_default(&d);
    if (!opts) opts = &d;
    if (opts->max_inflight < 1 || opts->heartbeat_ms < 1 || opts->liveness < 1 ||
        opts->resend_ms < 0 || opts->request_timeout_ms < 0)
        return dq_fail(err, DQ_ERR_ARG, "client: max_inflight, heartbeat_ms and liveness must "
                       "be >= 1, timeouts >= 0");
    if (strlen(endpoint) >= sizeof ((dq_client_t *)0)->endpoint)
        return dq_fail(err, DQ_ERR_ARG, "client: endpoint '%s' too long", endpoint);
    dq_client_t *c = calloc(1, sizeof *c);
    if (!c) return dq_fail(err, DQ_ERR_NOMEM, "client: out of memory");
    c->o = *opts;
    snprintf(c->endpoint, sizeof c->endpoint, "%s", endpoint);
    uint64_t r = 0;
    if (getentropy(&r, sizeof r) != 0) r = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    c->my_epoch = r ? r : 1;
    dq_status st = dq_inflight_init(&c->fl, opts->max_inflight, err);
    if (st == DQ_OK) {
        c->slots = calloc((size_t)opts->max_inflight, sizeof *c->slots);
        c->order = calloc((size_t)opts->max_inflight, sizeof *c->order);
        if (!c->slots || !c->order) st = dq_fail(err, DQ_ERR_NOMEM, "client: out of memory");
    }
    if (st == DQ_OK) st = dq_msg_decoder_new(&c->dec, err);
    if (st == DQ_OK && !(c->ctx = zmq_ctx_new()))
        st = dq_fail(err, DQ_ERR_NET, "zmq_ctx_new: %s", zmq_strerror(zmq_errno()));
    if (st == DQ_OK) st = s_open_socket(c, err);
    if (st != DQ_OK) {
        dq_client_destroy(&c);
        return st;
    }
    *out = c;
    return DQ_OK;
}

void dq_client_destroy(dq_client_t **p)
{
    if (!p || !*p) return;
    dq_client_t *c = *p;
    dq_wire_parts_close(&c->last);
    s_close_socket(c);
    if (c->ctx) zmq_ctx_term(c->ctx);
    if (c->slots)
        for (int i = 0; i < c->fl.cap; i++) dq_msg_buf_free(&c->slots[i].body);
    dq_inflight_free(&c->fl);
    dq_msg_decoder_destroy(&c->dec);
    dq_msg_buf_free(&c->ping);
    free(c->slots);
    free(c->order);
    free(c);
    *p = NULL;
}

int dq_client_inflight(const dq_client_t *c)
{
    return c->fl.count;
}

dq_status dq_client_set_max_msg_bytes(dq_client_t *c, int64_t bytes, dq_err *err)
{
    if (c->fl.count != 0 || bytes < 1)
        return dq_fail(err, DQ_ERR_ARG, "client %s: the reply limit changes only with nothing "
                       "in flight, to >= 1 byte", c->endpoint);
    if (bytes == c->o.max_msg_bytes) return DQ_OK;
    c->o.max_msg_bytes = bytes;
    dq_wire_parts_close(&c->last);
    s_close_socket(c);
    return s_open_socket(c, err);
}

void dq_client_get_counters(const dq_client_t *c, dq_client_counters *out)
{
    *out = c->k;
}

/* ---- sending ---------------------------------------------------------------------- */

dq_status dq_client_send(dq_client_t *c, const dq_client_request *r, dq_err *err)
{
    if (c->fl.count == c->fl.cap)
        return dq_fail(err, DQ_ERR_OVERLOADED, "client %s: %d requests already in flight",
                       c->endpoint, c->fl.cap);
    if (dq_inflight_find(&c->fl, r->req_id) >= 0)
        return dq_fail(err, DQ_ERR_ARG, "client %s: req_id %llu is already in flight",
                       c->endpoint, (unsigned long long)r->req_id);
    dq_msg_request m;
    memset(&m, 0, sizeof m);
    size_t sl = r->service ? strlen(r->service) : 0;
    if (sl == 0 || sl > DQ_MSG_NAME_MAX)
        return dq_fail(err, DQ_ERR_ARG, "client: service name must be 1..%d bytes",
                       DQ_MSG_NAME_MAX);
    if (r->n_outputs < 1 || r->n_outputs > DQ_MSG_MAX_OUTPUTS)
        return dq_fail(err, DQ_ERR_ARG, "client: service %s: %d outputs requested (1..%d)",
                       r->service, r->n_outputs, DQ_MSG_MAX_OUTPUTS);
    memcpy(m.service, r->service, sl + 1);
    if (c->o.name) snprintf(m.client, sizeof m.client, "%s", c->o.name);
    m.req_id = r->req_id;
    m.dtype = r->dtype;
    size_t count = 1;
    for (int i = 0; i < 4; i++) {
        if (r->shape[i] < 1 || r->shape[i] > (int64_t)1 << 31)
            return dq_fail(err, DQ_ERR_ARG, "client: service %s: shape[%d] = %lld", r->service,
                           i, (long long)r->shape[i]);
        m.shape[i] = r->shape[i];
        count *= (size_t)r->shape[i];
    }
    m.data = r->data;
    m.data_len = count * dq_msg_dtype_size(r->dtype);
    m.n_outputs = r->n_outputs;
    for (int i = 0; i < r->n_outputs; i++) {
        size_t ol = strlen(r->outputs[i]);
        if (ol == 0 || ol > DQ_MSG_NAME_MAX)
            return dq_fail(err, DQ_ERR_ARG, "client: output name '%s' must be 1..%d bytes",
                           r->outputs[i], DQ_MSG_NAME_MAX);
        memcpy(m.outputs[i], r->outputs[i], ol + 1);
    }
    int64_t now = dq_clock_now_ms();
    if (c->fl.count == 0) c->last_heard = now; /* start watching the broker from here */
    int slot = dq_inflight_add(&c->fl, r->req_id, now);
    if (slot < 0) /* room and no duplicate were checked above */
        return dq_fail(err, DQ_ERR_INTERNAL, "client: in-flight table refused %llu",
                       (unsigned long long)r->req_id);
    s_slot *s = &c->slots[slot];
    dq_msg_buf_reset(&s->body);
    dq_status st = dq_msg_encode_request(&s->body, &m, err);
    if (st == DQ_OK) st = s_send_slot(c, slot, err);
    if (st != DQ_OK) {
        dq_inflight_remove(&c->fl, slot);
        return st;
    }
    memcpy(s->service, m.service, sizeof s->service);
    s->retry_at = 0;
    s->max_reply = r->reply_floats > 0
                       ? r->shape[0] * r->reply_floats * (int64_t)sizeof(float) +
                             DQ_CLIENT_REPLY_SLACK
                       : 0;
    c->k.sent++;
    return DQ_OK;
}

/* ---- receiving -------------------------------------------------------------------- */

static void s_note_epoch(dq_client_t *c, uint64_t epoch, dq_err *err, dq_status *st)
{
    if (epoch == 0) return;
    if (c->k.broker_epoch != 0 && epoch != c->k.broker_epoch) {
        c->k.restarts++;
        c->k.broker_epoch = epoch;
        *st = s_resend_all(c, "broker restarted (new epoch)", err);
        return;
    }
    c->k.broker_epoch = epoch;
}

/* Monitor events: a reconnect after a disconnect resends what is in flight. */
static dq_status s_on_monitor(dq_client_t *c, dq_err *err)
{
    for (;;) {
        uint16_t ev;
        uint32_t value;
        dq_status st = dq_wire_monitor_event(c->mon, &ev, &value, err);
        if (st == DQ_ERR_TIMEOUT) return DQ_OK;
        if (st != DQ_OK) return st;
        DQ_TRY(dq_curve_watch_event(&c->watch, ev, value, c->endpoint, err));
        if (ev == ZMQ_EVENT_DISCONNECTED) {
            c->lost = true;
        } else if (ev == ZMQ_EVENT_CONNECTED && c->lost) {
            c->lost = false;
            c->k.reconnects++;
            c->k.broker_epoch = 0; /* whoever is there now: learn its epoch afresh */
            c->last_heard = dq_clock_now_ms();
            DQ_TRY(s_resend_all(c, "reconnected", err));
            DQ_TRY(s_send_ping(c, err));
        }
    }
}

/* Fills out from a decoded reply for slot and forgets the slot. */
static void s_deliver(dq_client_t *c, int slot, dq_client_reply *out)
{
    const dq_inflight_entry *e = &c->fl.e[slot];
    const dq_msg_reply *rp = &c->last_msg.u.reply;
    memset(out, 0, sizeof *out);
    memcpy(c->last_service, c->slots[slot].service, sizeof c->last_service);
    out->req_id = e->req_id;
    out->status = rp->status;
    out->error = rp->error;
    out->service = c->last_service;
    out->sends = e->sends;
    out->latency_ms = dq_clock_now_ms() - e->first_sent_ms;
    if (rp->status == DQ_REPLY_OK) {
        out->n_outputs = rp->n_outputs;
        out->outputs = rp->outputs;
    }
    out->impl = rp->impl;
    if (rp->has_teacher) {
        out->teacher = &rp->teacher;
        int i = 0;
        while (i < c->n_known && strcmp(c->known[i].service, c->last_service) != 0) i++;
        if (i == c->n_known && i < S_MAX_SERVICES) {
            memcpy(c->known[i].service, c->last_service, sizeof c->known[i].service);
            c->known[i].id = rp->teacher;
            c->n_known++;
        } else if (i < c->n_known) {
            out->teacher_changed = strcmp(c->known[i].id.sha256, rp->teacher.sha256) != 0 ||
                                   strcmp(c->known[i].id.model, rp->teacher.model) != 0 ||
                                   strcmp(c->known[i].id.service, rp->teacher.service) != 0;
        }
    }
    dq_inflight_remove(&c->fl, slot);
    c->k.delivered++;
}

/* Handles one message from the broker; true when it was a reply for out. */
static bool s_on_message(dq_client_t *c, dq_client_reply *out, dq_err *err, dq_status *st)
{
    c->last_heard = dq_clock_now_ms();
    if (c->last.total != 1) return false; /* frontend bodies are one frame */
    dq_err why = {{0}};
    dq_msg *m = &c->last_msg;
    dq_status ds = dq_msg_decode(c->dec, zmq_msg_data(&c->last.f[0]), zmq_msg_size(&c->last.f[0]),
                                 m, &why);
    if (ds != DQ_OK) {
        int slot = m->has_req_id ? dq_inflight_find(&c->fl, m->req_id) : -1;
        if (slot < 0 || m->type != DQ_MSG_REPLY) {
            s_log(c, "ignored a malformed message: %s", why.msg);
            return false;
        }
        /* A reply we cannot read is still that request's one answer. */
        memset(&m->u.reply, 0, sizeof m->u.reply);
        m->u.reply.status = DQ_REPLY_ERROR;
        char reason[sizeof why + 32];
        snprintf(reason, sizeof reason, "malformed reply: %s", why.msg);
        s_set_error(m->u.reply.error, reason);
        s_deliver(c, slot, out);
        return true;
    }
    if (m->type == DQ_MSG_HEARTBEAT) {
        s_note_epoch(c, m->u.heartbeat.epoch, err, st);
        return false;
    }
    if (m->type != DQ_MSG_REPLY) return false;
    int slot = dq_inflight_find(&c->fl, m->u.reply.req_id);
    if (slot < 0) {
        c->k.duplicates++;
        return false;
    }
    dq_reply_status rs = m->u.reply.status;
    int64_t now = dq_clock_now_ms(), age = now - c->fl.e[slot].first_sent_ms;
    if (c->o.retry_ms > 0 && (rs == DQ_REPLY_OVERLOADED || rs == DQ_REPLY_TIMEOUT) &&
        (c->o.request_timeout_ms == 0 || age < c->o.request_timeout_ms)) {
        c->slots[slot].retry_at = now + c->o.retry_ms; /* s_timers sends it again */
        c->k.retried++;
        return false;
    }
    size_t got = zmq_msg_size(&c->last.f[0]);
    int64_t lim = c->slots[slot].max_reply;
    if (lim > 0 && (int64_t)got > lim) {
        /* Its one answer, but none of its data reaches the caller. */
        char reason[DQ_MSG_ERROR_MAX + 1];
        snprintf(reason, sizeof reason, "reply of %zu bytes is larger than the %lld bytes "
                 "request %llu asked for", got, (long long)lim,
                 (unsigned long long)m->u.reply.req_id);
        memset(&m->u.reply, 0, sizeof m->u.reply);
        m->u.reply.status = DQ_REPLY_ERROR;
        s_set_error(m->u.reply.error, reason);
        c->k.oversize++;
        s_log(c, "%s", reason);
    }
    s_deliver(c, slot, out);
    return true;
}

/* A local timeout reply for slot. */
static void s_give_up(dq_client_t *c, int slot, dq_client_reply *out)
{
    const dq_inflight_entry *e = &c->fl.e[slot];
    dq_msg_reply *rp = &c->last_msg.u.reply;
    memset(rp, 0, sizeof *rp);
    rp->req_id = e->req_id;
    rp->status = DQ_REPLY_TIMEOUT;
    char reason[1024];
    snprintf(reason, sizeof reason, "no reply from the broker at %s within %d ms (sent %d "
             "time(s))", c->endpoint, c->o.request_timeout_ms, e->sends);
    s_set_error(rp->error, reason);
    c->k.local_timeouts++;
    s_deliver(c, slot, out);
}

static int64_t s_min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* Runs the timers; returns the time of the next one (INT64_MAX: none), or
 * sets *slot_out to a request to give up on. */
static dq_status s_timers(dq_client_t *c, int64_t now, int64_t *next, int *give_up, dq_err *err)
{
    *next = INT64_MAX;
    *give_up = -1;
    if (c->fl.count == 0) return DQ_OK;
    int64_t hb = c->o.heartbeat_ms, dead = hb * c->o.liveness;
    if (now - c->last_heard >= dead) {
        /* Broker unreachable (a half-open connection never reports a
         * disconnect): a fresh socket, and everything again. */
        s_log(c, "broker silent for %lld ms: new connection", (long long)(now - c->last_heard));
        s_close_socket(c);
        DQ_TRY(s_open_socket(c, err));
        c->k.reconnects++;
        c->k.broker_epoch = 0;
        DQ_TRY(s_resend_all(c, "new connection", err));
        now = c->last_heard;
    }
    int64_t ping_at = (c->last_heard > c->last_ping ? c->last_heard : c->last_ping) + hb;
    if (now >= ping_at) {
        DQ_TRY(s_send_ping(c, err));
        ping_at = now + hb;
    }
    *next = s_min64(ping_at, c->last_heard + dead);
    if (c->o.resend_ms > 0) {
        int s;
        int n = 0;
        while ((s = dq_inflight_oldest(&c->fl, false)) >= 0 &&
               now - c->fl.e[s].last_sent_ms >= c->o.resend_ms) {
            DQ_TRY(s_send_slot(c, s, err));
            dq_inflight_resent(&c->fl, s, now);
            n++;
        }
        if (n) {
            c->k.resent += (uint64_t)n;
            s_log(c, "resent %d request(s) unanswered for %d ms", n, c->o.resend_ms);
        }
        if (s >= 0) *next = s_min64(*next, c->fl.e[s].last_sent_ms + c->o.resend_ms);
    }
    for (int s = 0; c->o.retry_ms > 0 && s < c->fl.cap; s++) {
        if (!c->fl.e[s].used || c->slots[s].retry_at == 0) continue;
        if (now >= c->slots[s].retry_at) {
            c->slots[s].retry_at = 0;
            DQ_TRY(s_send_slot(c, s, err));
            dq_inflight_resent(&c->fl, s, now);
        } else {
            *next = s_min64(*next, c->slots[s].retry_at);
        }
    }
    if (c->o.request_timeout_ms > 0) {
        int s = dq_inflight_oldest(&c->fl, true);
        if (now - c->fl.e[s].first_sent_ms >= c->o.request_timeout_ms) *give_up = s;
        else *next = s_min64(*next, c->fl.e[s].first_sent_ms + c->o.request_timeout_ms);
    }
    return DQ_OK;
}

dq_status dq_client_recv(dq_client_t *c, dq_client_reply *out, int timeout_ms, dq_err *err)
{
    dq_wire_parts_close(&c->last);
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : dq_clock_now_ms() + timeout_ms;
    for (;;) {
        int64_t now = dq_clock_now_ms(), next;
        int give_up;
        DQ_TRY(s_timers(c, now, &next, &give_up, err));
        if (give_up >= 0) {
            s_give_up(c, give_up, out);
            return DQ_OK;
        }
        int64_t wake = s_min64(deadline, next);
        long wait = wake <= now ? 0 : wake - now > 1000000 ? 1000000 : (long)(wake - now);
        zmq_pollitem_t items[2] = {{c->mon, 0, ZMQ_POLLIN, 0}, {c->sock, 0, ZMQ_POLLIN, 0}};
        if (zmq_poll(items, 2, wait) < 0) {
            if (zmq_errno() == EINTR)
                return dq_fail(err, DQ_ERR_INTERRUPTED, "client %s: interrupted", c->endpoint);
            return dq_fail(err, DQ_ERR_NET, "client %s: zmq_poll: %s", c->endpoint,
                           zmq_strerror(zmq_errno()));
        }
        if (items[0].revents & ZMQ_POLLIN) DQ_TRY(s_on_monitor(c, err));
        for (int burst = 0; burst < 256; burst++) {
            dq_status st = dq_wire_recv(c->sock, &c->last, ZMQ_DONTWAIT, err);
            if (st == DQ_ERR_TIMEOUT) break;
            if (st != DQ_OK) return st;
            st = DQ_OK;
            if (s_on_message(c, out, err, &st)) return DQ_OK; /* keeps c->last */
            dq_wire_parts_close(&c->last);
            if (st != DQ_OK) return st;
        }
        if (dq_clock_now_ms() >= deadline)
            return dq_fail(err, DQ_ERR_TIMEOUT, "client %s: no reply within %d ms", c->endpoint,
                           timeout_ms);
    }
}

dq_status dq_client_reply_status(const dq_client_reply *r, dq_err *err)
{
    dq_status st;
    switch (r->status) {
    case DQ_REPLY_OK: return DQ_OK;
    case DQ_REPLY_OVERLOADED: st = DQ_ERR_OVERLOADED; break;
    case DQ_REPLY_TIMEOUT: st = DQ_ERR_TIMEOUT; break;
    case DQ_REPLY_UNKNOWN_SERVICE: st = DQ_ERR_NOT_FOUND; break;
    case DQ_REPLY_BAD_REQUEST: st = DQ_ERR_ARG; break;
    default: st = DQ_ERR_UNSUPPORTED; break;
    }
    return dq_fail(err, st, "service %s: request %llu: %s: %s", r->service,
                   (unsigned long long)r->req_id, dq_reply_status_name(r->status),
                   r->error && *r->error ? r->error : "(no reason given)");
}

/* ---- stats -------------------------------------------------------------------------- */

dq_status dq_client_stats(dq_client_t *c, char **json, int timeout_ms, dq_err *err)
{
    *json = NULL;
    if (c->fl.count != 0)
        return dq_fail(err, DQ_ERR_ARG, "client %s: stats only with nothing in flight",
                       c->endpoint);
    dq_wire_parts_close(&c->last);
    uint64_t id = ++c->stats_seq;
    dq_msg_buf_reset(&c->ping);
    DQ_TRY(dq_msg_encode_stats_request(&c->ping, id, err));
    if (zmq_send(c->sock, c->ping.data, c->ping.len, ZMQ_DONTWAIT) < 0)
        return dq_fail(err, DQ_ERR_NET, "client %s: send: %s", c->endpoint,
                       zmq_strerror(zmq_errno()));
    int64_t deadline = dq_clock_now_ms() + timeout_ms;
    for (;;) {
        int64_t left = deadline - dq_clock_now_ms();
        if (left <= 0) break;
        /* the monitor too: a refused CURVE key fails here, not at the deadline */
        zmq_pollitem_t its[2] = {{c->sock, 0, ZMQ_POLLIN, 0}, {c->mon, 0, ZMQ_POLLIN, 0}};
        int rc = zmq_poll(its, c->mon ? 2 : 1, (long)left);
        if (rc < 0 && zmq_errno() == EINTR)
            return dq_fail(err, DQ_ERR_INTERRUPTED, "client %s: interrupted", c->endpoint);
        if (rc < 0) return dq_fail(err, DQ_ERR_NET, "client %s: zmq_poll: %s", c->endpoint,
                                   zmq_strerror(zmq_errno()));
        if (c->mon && (its[1].revents & ZMQ_POLLIN)) DQ_TRY(s_on_monitor(c, err));
        if (!(its[0].revents & ZMQ_POLLIN)) continue;
        dq_wire_parts p;
        DQ_TRY(dq_wire_recv(c->sock, &p, ZMQ_DONTWAIT, err));
        dq_msg m;
        dq_err why;
        bool mine = p.total == 1 &&
                    dq_msg_decode(c->dec, zmq_msg_data(&p.f[0]), zmq_msg_size(&p.f[0]), &m,
                                  &why) == DQ_OK &&
                    m.type == DQ_MSG_STATS_REPLY && m.u.stats_reply.req_id == id;
        if (mine) {
            *json = malloc(m.u.stats_reply.json_len + 1);
            if (*json) {
                memcpy(*json, m.u.stats_reply.json, m.u.stats_reply.json_len);
                (*json)[m.u.stats_reply.json_len] = '\0';
            }
        }
        dq_wire_parts_close(&p);
        if (mine) return *json ? DQ_OK : dq_fail(err, DQ_ERR_NOMEM, "client: out of memory");
    }
    return dq_fail(err, DQ_ERR_TIMEOUT, "broker at %s did not answer a stats request within "
                   "%d ms", c->endpoint, timeout_ms);
}
