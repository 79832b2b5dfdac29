/* wire.h - small zmq helpers shared by the broker, the teacher worker and
 * the client library: whole multipart receive, multipart send, a DEALER
 * connected with our standard options (the clock is base/clock.h, included
 * here for the callers that time their waits).
 *
 * Frame layouts are in docs/protocol.md. A received message is kept as up to
 * DQ_WIRE_MAX_FRAMES zmq_msg_t (zero copy: large frames are refcounted by
 * libzmq, so forwarding one with zmq_msg_send/zmq_msg_copy copies nothing);
 * further frames are received and dropped but counted, so a peer sending
 * too many frames cannot desynchronise us. Plain functions over a caller's
 * socket: no global state, no background threads.
 */
#ifndef DQ_PROTO_WIRE_H
#define DQ_PROTO_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#include "base/clock.h"
#include "base/status.h"

#define DQ_WIRE_MAX_FRAMES 4
#define DQ_WIRE_TICKET_MAX 32   /* the broker's opaque per-request ticket frame */
#define DQ_WIRE_ID_MAX 255      /* a zmq routing id */

typedef struct {
    zmq_msg_t f[DQ_WIRE_MAX_FRAMES];
    int n;          /* frames kept in f (all initialised) */
    int total;      /* frames the message had (> n when some were dropped) */
    size_t bytes;   /* sum of all frame sizes, dropped ones included */
} dq_wire_parts;

/* Receives one whole multipart message into *p (which need not be
 * initialised; on success the caller closes it with dq_wire_parts_close).
 * flags: 0 or ZMQ_DONTWAIT. Returns DQ_OK, DQ_ERR_TIMEOUT (EAGAIN: nothing
 * there, or ZMQ_RCVTIMEO expired), DQ_ERR_INTERRUPTED (EINTR, ETERM) or
 * DQ_ERR_NET. On failure *p holds nothing to close. */
dq_status dq_wire_recv(void *sock, dq_wire_parts *p, int flags, dq_err *err);

/* Closes the frames of p; safe on an already closed one. */
void dq_wire_parts_close(dq_wire_parts *p);

/* One pending event of a socket monitor's PAIR (zmq_socket_monitor: a
 * frame of u16 event and u32 value, then the endpoint), without blocking:
 * DQ_OK with *ev and *value (0 for a malformed one), DQ_ERR_TIMEOUT when none
 * is pending, else dq_wire_recv's error. */
dq_status dq_wire_monitor_event(void *mon, uint16_t *ev, uint32_t *value, dq_err *err);

/* Sends n frames (data[i], len[i]) as one message; flags 0 or ZMQ_DONTWAIT.
 * Copies the bytes into zmq. DQ_ERR_TIMEOUT on EAGAIN (nothing was sent),
 * DQ_ERR_UNREACHABLE on EHOSTUNREACH (ROUTER_MANDATORY: peer gone), else
 * DQ_ERR_NET / DQ_ERR_INTERRUPTED. */
dq_status dq_wire_send(void *sock, int n, const void *const *data, const size_t *len,
                       int flags, dq_err *err);

/* Options for dq_wire_dealer_new; zero fields take the defaults in (). */
typedef struct {
    int linger_ms;           /* ZMQ_LINGER (0: queued messages dropped on close) */
    int64_t max_msg_bytes;   /* ZMQ_MAXMSGSIZE on receive (0: no limit) */
    int reconnect_ivl_ms;    /* ZMQ_RECONNECT_IVL (100) */
    int reconnect_max_ms;    /* ZMQ_RECONNECT_IVL_MAX: exponential backoff cap (2000) */
    int sndhwm, rcvhwm;      /* ZMQ_SNDHWM / ZMQ_RCVHWM (libzmq default 1000) */
    const void *identity;    /* ZMQ_ROUTING_ID (none: the ROUTER picks one) */
    size_t identity_len;
    /* CURVE (src/proto/curve.h): both set, or neither (plain TCP) */
    const char *curve_server_cert; /* the broker's public certificate */
    const char *curve_cert;        /* our NAME_secret certificate */
    int handshake_ms;              /* ZMQ_HANDSHAKE_IVL (libzmq default 30000) */
    struct dq_curve_watch_s *watch; /* a handshake watch attached before
                                     * connecting (NULL: none); without CURVE
                                     * it reports a broker that wants CURVE */
} dq_wire_opts;

/* Creates a DEALER in ctx with opts (NULL: defaults) and connects it to
 * endpoint (tcp:// or ipc://). *out is owned by the caller (zmq_close). */
dq_status dq_wire_dealer_new(void **out, void *ctx, const char *endpoint,
                             const dq_wire_opts *opts, dq_err *err);

/* Writes the first bytes of a routing id as hex into buf ("0080000029"),
 * for log lines. Returns buf. */
const char *dq_wire_id_hex(const void *id, size_t len, char *buf, size_t cap);

#endif
