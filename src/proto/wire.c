/* wire.c - zmq multipart receive/send, DEALER setup and the clock (wire.h).
 *
 * Thin wrappers whose only job is to turn every zmq failure into a dq_status
 * with a reason, and to always receive a message whole (a partially read
 * multipart message would make the next read start mid-message).
 */
#include "proto/wire.h"

#include "proto/curve.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static dq_status s_errno_status(int e)
{
    if (e == EAGAIN) return DQ_ERR_TIMEOUT;
    if (e == EINTR || e == ETERM) return DQ_ERR_INTERRUPTED;
    if (e == EHOSTUNREACH) return DQ_ERR_UNREACHABLE;
    return DQ_ERR_NET;
}

void dq_wire_parts_close(dq_wire_parts *p)
{
    for (int i = 0; i < p->n; i++) zmq_msg_close(&p->f[i]);
    p->n = 0;
}

dq_status dq_wire_recv(void *sock, dq_wire_parts *p, int flags, dq_err *err)
{
    p->n = 0;
    p->total = 0;
    p->bytes = 0;
    for (;;) {
        zmq_msg_t tmp;
        zmq_msg_t *m = p->n < DQ_WIRE_MAX_FRAMES ? &p->f[p->n] : &tmp;
        zmq_msg_init(m);
        /* Only the first frame may wait: the rest of a message is atomic. */
        if (zmq_msg_recv(m, sock, p->total == 0 ? flags : 0) < 0) {
            int e = zmq_errno();
            zmq_msg_close(m);
            dq_wire_parts_close(p);
            return dq_fail(err, s_errno_status(e), "zmq recv: %s", zmq_strerror(e));
        }
        p->total++;
        p->bytes += zmq_msg_size(m);
        int more = zmq_msg_more(m);
        if (m == &tmp) zmq_msg_close(&tmp);
        else p->n++;
        if (!more) return DQ_OK;
    }
}

dq_status dq_wire_send(void *sock, int n, const void *const *data, const size_t *len, int flags,
                       dq_err *err)
{
    for (int i = 0; i < n; i++) {
        int f = flags | (i + 1 < n ? ZMQ_SNDMORE : 0);
        if (zmq_send(sock, data[i], len[i], f) < 0) {
            int e = zmq_errno();
            return dq_fail(err, s_errno_status(e), "zmq send (frame %d of %d): %s", i + 1, n,
                           zmq_strerror(e));
        }
    }
    return DQ_OK;
}

static dq_status s_opt(void *s, int opt, const void *v, size_t len, const char *name,
                       dq_err *err)
{
    if (zmq_setsockopt(s, opt, v, len) == 0) return DQ_OK;
    return dq_fail(err, DQ_ERR_NET, "zmq_setsockopt(%s): %s", name, zmq_strerror(zmq_errno()));
}

dq_status dq_wire_dealer_new(void **out, void *ctx, const char *endpoint, const dq_wire_opts *o,
                             dq_err *err)
{
    *out = NULL;
    dq_wire_opts d = {0};
    if (!o) o = &d;
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    if (!s) return dq_fail(err, DQ_ERR_NET, "zmq_socket(DEALER): %s", zmq_strerror(zmq_errno()));
    int linger = o->linger_ms, ivl = o->reconnect_ivl_ms ? o->reconnect_ivl_ms : 100;
    int ivl_max = o->reconnect_max_ms ? o->reconnect_max_ms : 2000;
    dq_status st = s_opt(s, ZMQ_LINGER, &linger, sizeof linger, "LINGER", err);
    if (!st) st = s_opt(s, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl, "RECONNECT_IVL", err);
    if (!st) st = s_opt(s, ZMQ_RECONNECT_IVL_MAX, &ivl_max, sizeof ivl_max, "RECONNECT_IVL_MAX", err);
    if (!st && o->max_msg_bytes > 0)
        st = s_opt(s, ZMQ_MAXMSGSIZE, &o->max_msg_bytes, sizeof o->max_msg_bytes, "MAXMSGSIZE",
                   err);
    if (!st && o->sndhwm > 0) st = s_opt(s, ZMQ_SNDHWM, &o->sndhwm, sizeof o->sndhwm, "SNDHWM", err);
    if (!st && o->rcvhwm > 0) st = s_opt(s, ZMQ_RCVHWM, &o->rcvhwm, sizeof o->rcvhwm, "RCVHWM", err);
    if (!st && o->identity && o->identity_len)
        st = s_opt(s, ZMQ_ROUTING_ID, o->identity, o->identity_len, "ROUTING_ID", err);
    if (!st && (o->curve_server_cert || o->curve_cert)) {
        if (!o->curve_server_cert || !o->curve_cert)
            st = dq_fail(err, DQ_ERR_ARG, "CURVE needs both --curve-server-cert and --curve-cert");
        if (!st) st = dq_curve_client_apply(s, o->curve_server_cert, o->curve_cert,
                                            o->handshake_ms, err);
    }
    if (!st && o->watch)
        st = dq_curve_watch_start(o->watch, ctx, s, o->curve_server_cert != NULL, err);
    if (!st && zmq_connect(s, endpoint) != 0)
        st = dq_fail(err, DQ_ERR_NET, "zmq_connect(%s): %s", endpoint, zmq_strerror(zmq_errno()));
    if (st) {
        if (o->watch) dq_curve_watch_stop(o->watch, s);
        zmq_close(s);
        return st;
    }
    *out = s;
    return DQ_OK;
}

dq_status dq_wire_monitor_event(void *mon, uint16_t *ev, uint32_t *value, dq_err *err)
{
    dq_wire_parts p;
    *ev = 0;
    *value = 0;
    DQ_TRY(dq_wire_recv(mon, &p, ZMQ_DONTWAIT, err));
    if (p.n >= 1 && zmq_msg_size(&p.f[0]) >= 6) {
        memcpy(ev, zmq_msg_data(&p.f[0]), 2);
        memcpy(value, (const uint8_t *)zmq_msg_data(&p.f[0]) + 2, 4);
    }
    dq_wire_parts_close(&p);
    return DQ_OK;
}

const char *dq_wire_id_hex(const void *id, size_t len, char *buf, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    const uint8_t *b = id;
    size_t j = 0;
    for (size_t i = 0; i < len && j + 2 < cap; i++) {
        buf[j++] = hex[b[i] >> 4];
        buf[j++] = hex[b[i] & 15];
    }
    if (cap) buf[j < cap ? j : cap - 1] = '\0';
    return buf;
}
