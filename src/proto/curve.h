/* curve.h - ZeroMQ CURVE keys as czmq certificate files, and the socket
 * options that use them.
 *
 * A certificate is a text file in ZeroMQ's ZPL format, as czmq's zcert
 * writes and reads it: `PATH/NAME` holds the public key
 *
 *     curve
 *         public-key = "<40 Z85 characters>"
 *
 * and `PATH/NAME_secret` (mode 0600) the public and the secret key
 * (`secret-key = "..."`). Writing the format ourselves keeps czmq out of the
 * programs; the files stay readable by czmq's zcert_load and other ZeroMQ
 * tools (tests/test_curve.c checks with czmq where it is installed). The
 * file name without directory is the peer's name: the broker logs, stats
 * and metrics show it, and `--share NAME=W` refers to it.
 *
 * Handshake failures are reported through the socket monitor (the events
 * ZMQ_EVENT_HANDSHAKE_FAILED_*): a key the broker refuses gets an ERROR
 * (status 400) and the client sees HANDSHAKE_FAILED_AUTH; a wrong server
 * key makes the server drop the connection during the handshake, which the
 * client sees as a connection that closed before HANDSHAKE_SUCCEEDED.
 * A peer on the other mechanism (a plain client at a CURVE broker, or the
 * reverse) fails at the ZMTP greeting, before any key is looked at: both
 * ends see HANDSHAKE_FAILED_PROTOCOL with ZMTP_MECHANISM_MISMATCH, and
 * without a watch the plain side would only ever see silence.
 * dq_curve_watch turns those into DQ_ERR_AUTH with a sentence for the user.
 */
#ifndef DQ_PROTO_CURVE_H
#define DQ_PROTO_CURVE_H

#include <stdbool.h>
#include <stdint.h>

#include <zmq.h>

#include "base/status.h"

#define DQ_CURVE_Z85_LEN 40
#define DQ_CURVE_NAME_MAX 64

typedef struct {
    char public_key[DQ_CURVE_Z85_LEN + 1];   /* Z85 */
    char secret_key[DQ_CURVE_Z85_LEN + 1];   /* "" in a public certificate */
    char name[DQ_CURVE_NAME_MAX + 1];        /* file name, "_secret" removed */
} dq_curve_cert;

/* Makes a key pair (zmq_curve_keypair) and writes path (public) and
 * path_secret (both keys, mode 0600). Refuses to overwrite either. */
dq_status dq_curve_keygen(const char *path, dq_err *err);

/* Reads a certificate; need_secret: a secret-key must be there. */
dq_status dq_curve_cert_load(dq_curve_cert *c, const char *path, bool need_secret, dq_err *err);

/* A directory of public certificates (the names it allows). */
typedef struct {
    dq_curve_cert *certs;
    int n;
} dq_curve_allow;

/* Loads every regular file of dir not ending in "_secret" and not starting
 * with '.' (a file that is not a certificate is an error naming it). */
dq_status dq_curve_allow_load(dq_curve_allow *a, const char *dir, dq_err *err);
void dq_curve_allow_free(dq_curve_allow *a);
/* The certificate whose public key is the 32 bytes key, or NULL. */
const dq_curve_cert *dq_curve_allow_find(const dq_curve_allow *a, const uint8_t *key);

/* Client side of CURVE on a socket not yet connected: our key pair from
 * my_secret_cert, the server's public key from server_cert, handshake_ms
 * as ZMQ_HANDSHAKE_IVL. */
dq_status dq_curve_client_apply(void *sock, const char *server_cert, const char *my_secret_cert,
                                int handshake_ms, dq_err *err);
/* Server side on a socket not yet bound: our secret certificate, and the ZAP
 * domain that the broker's handler sees for this socket. */
dq_status dq_curve_server_apply(void *sock, const dq_curve_cert *server, const char *domain,
                                dq_err *err);

/* Watches a connecting socket's handshakes: attach before connect. */
typedef struct dq_curve_watch_s {
    void *mon;              /* PAIR receiving the events; NULL if not attached */
    bool curve;             /* this end uses CURVE (else only a mismatch is an error) */
    bool ok;                /* a handshake succeeded since the last failure */
    bool connected;         /* TCP up, handshake not yet done */
    int failures;           /* connections that closed before a handshake */
} dq_curve_watch;

/* Events to ask for when the caller runs its own monitor of the socket
 * (a socket has one monitor) and feeds them to dq_curve_watch_event. */
#define DQ_CURVE_WATCH_EVENTS                                                                  \
    (ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED |            \
     ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |              \
     ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
/* What a socket without CURVE watches: the greeting's mechanism mismatch. */
#define DQ_CURVE_WATCH_EVENTS_PLAIN ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
/* One monitor event (ev, value): DQ_ERR_AUTH as dq_curve_watch_poll. Set
 * w->curve first when the caller runs its own monitor. */
dq_status dq_curve_watch_event(dq_curve_watch *w, int ev, uint32_t value, const char *endpoint,
                               dq_err *err);

/* Attaches a monitor (inproc endpoint unique per watch) to sock; curve:
 * whether sock uses CURVE. */
dq_status dq_curve_watch_start(dq_curve_watch *w, void *ctx, void *sock, bool curve,
                               dq_err *err);
/* Reads pending events without blocking: DQ_ERR_AUTH (with the reason:
 * key refused by the broker, wrong server key, or the peer on the other
 * mechanism) when a handshake failed, else DQ_OK. */
dq_status dq_curve_watch_poll(dq_curve_watch *w, const char *endpoint, dq_err *err);
void dq_curve_watch_stop(dq_curve_watch *w, void *sock);

#endif
