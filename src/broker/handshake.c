/* handshake.c - connections that fail before they are anyone.
 *
 * A plain student or worker at a CURVE broker is dropped by libzmq at the
 * ZMTP greeting (mechanism mismatch), before the ZAP handler (zap.c) hears
 * of it, and a CURVE HELLO made with a wrong server key is dropped when it
 * does not decrypt. Without this file the broker would say nothing while
 * such a peer retries for ever. (The reverse, a CURVE peer at a plain
 * broker, reaches no event on the broker's side in libzmq 4.3: that peer's
 * own error says it, curve.c.)
 * A monitor on each ROUTER reports those failures (only them: no event per
 * connection otherwise); they are counted (`handshake_failed` in --stats,
 * distillq_broker_handshake_failures_total) and logged, at most one line per
 * side every S_LOG_EVERY_MS with the number since the last line, because a
 * misconfigured peer reconnects every 0.1-2 s.
 */
#include "broker/broker_int.h"

#include <stdio.h>

#include "proto/wire.h"

#define S_LOG_EVERY_MS 10000

static const char *const s_side[2] = {"frontend", "backend"};

dq_status dq_broker_handshake_watch(dq_broker_t *b, int side, void *router, dq_err *err)
{
    char ep[80];
    snprintf(ep, sizeof ep, "inproc://dq-broker-handshake-%p-%d", (void *)b, side);
    dq_bhandshake *h = &b->hs[side];
    h->router = router;
    if (zmq_socket_monitor(router, ep, ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) != 0 ||
        !(h->mon = zmq_socket(b->ctx, ZMQ_PAIR)) || zmq_connect(h->mon, ep) != 0)
        return dq_fail(err, DQ_ERR_NET, "%s: socket monitor: %s", s_side[side],
                       zmq_strerror(zmq_errno()));
    return DQ_OK;
}

/* Why a handshake failed, in the words of the one who must fix it. */
static const char *s_why(const dq_broker_t *b, uint32_t value)
{
    if (value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH)
        return b->cfg.curve ? "the peer does not use CURVE (it needs --curve-server-cert and "
                              "--curve-cert)"
                            : "the peer uses CURVE and this broker does not (--curve-cert)";
    if (value == ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC)
        return "its CURVE handshake did not decrypt: the peer's --curve-server-cert is not "
               "this broker's key";
    return NULL;
}

void dq_broker_handshake_handle(dq_broker_t *b, int side, int64_t now)
{
    dq_bhandshake *h = &b->hs[side];
    for (int burst = 0; burst < 64; burst++) {
        uint16_t ev;
        uint32_t value;
        if (dq_wire_monitor_event(h->mon, &ev, &value, NULL) != DQ_OK) return;
        if (ev != ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) continue;
        b->n_handshake_failed++;
        h->unlogged++;
        if (h->logged_ms && now - h->logged_ms < S_LOG_EVERY_MS) continue;
        const char *why = s_why(b, value);
        char more[96] = "";
        if (h->unlogged > 1)
            snprintf(more, sizeof more, " (%llu failures on this side since the last line)",
                     (unsigned long long)h->unlogged);
        if (why)
            dq_broker_log(b, "handshake failed on the %s: %s%s", s_side[side], why, more);
        else
            dq_broker_log(b, "handshake failed on the %s: ZMTP protocol error 0x%08x%s",
                          s_side[side], value, more);
        h->logged_ms = now;
        h->unlogged = 0;
    }
}

void dq_broker_handshake_stop(dq_broker_t *b)
{
    for (int side = 0; side < 2; side++) {
        dq_bhandshake *h = &b->hs[side];
        if (h->router && h->mon) zmq_socket_monitor(h->router, NULL, 0);
        if (h->mon) zmq_close(h->mon);
        h->mon = h->router = NULL;
    }
}
