/* zap.c - the broker's ZAP handler (ZeroMQ RFC 27): who may connect.
 *
 * With --curve-cert both ROUTERs are CURVE servers, and libzmq asks the
 * handler bound at inproc://zeromq.zap.01 of the broker's context about
 * every handshake, giving the socket's ZAP domain ("students" for the
 * frontend, "workers" for the backend) and the client's public key. The
 * handler admits a key only if its certificate is in the directory for
 * that domain (--allow-students / --allow-workers): a student's key cannot
 * join as a worker, and any other key is refused with status 400, which the
 * peer sees as ZMQ_EVENT_HANDSHAKE_FAILED_AUTH. The reply's user id is the
 * certificate's file name; libzmq attaches it to every message of that
 * connection (zmq_msg_gets "User-Id"), which is how the broker names
 * students (fair sharing) and workers (logs, stats, metrics).
 *
 * The REP socket is polled in the broker's own loop (no thread, no lock):
 * libzmq holds a handshake until its reply comes, and the loop wakes at
 * once for it. It is bound before the ROUTERs so that no handshake ever
 * finds no handler (libzmq would then admit everyone). Refusals are logged
 * with the peer's address and counted.
 */
#include "broker/broker_int.h"

#include <string.h>

#define S_ZAP_EP "inproc://zeromq.zap.01"

dq_status dq_broker_zap_start(dq_broker_t *b, dq_err *err)
{
    const dq_broker_config *c = &b->cfg;
    if (!c->curve) return DQ_OK;
    b->zap = zmq_socket(b->ctx, ZMQ_REP);
    if (!b->zap) return dq_fail(err, DQ_ERR_NET, "zap: zmq_socket: %s", zmq_strerror(zmq_errno()));
    int linger = 0;
    zmq_setsockopt(b->zap, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_bind(b->zap, S_ZAP_EP) != 0)
        return dq_fail(err, DQ_ERR_NET, "zap: cannot bind %s: %s (one CURVE broker per "
                       "context)", S_ZAP_EP, zmq_strerror(zmq_errno()));
    return DQ_OK;
}

static void s_frame(void *sock, const void *data, size_t len, bool more)
{
    zmq_send(sock, data, len, more ? ZMQ_SNDMORE : 0);
}

void dq_broker_zap_handle(dq_broker_t *b)
{
    for (int burst = 0; burst < 64; burst++) {
        zmq_msg_t f[8];
        int n = 0, more = 1;
        while (more) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, b->zap, n == 0 ? ZMQ_DONTWAIT : 0) < 0) {
                zmq_msg_close(&m);
                if (n == 0) return;
                break;
            }
            more = zmq_msg_more(&m);
            if (n < 8) f[n++] = m;
            else zmq_msg_close(&m);
        }
        /* RFC 27: version, request id, domain, address, identity,
         * mechanism, credentials... */
        char domain[32] = "", address[64] = "", mech[16] = "";
        if (n >= 6) {
            snprintf(domain, sizeof domain, "%.*s", (int)zmq_msg_size(&f[2]),
                     (const char *)zmq_msg_data(&f[2]));
            snprintf(address, sizeof address, "%.*s", (int)zmq_msg_size(&f[3]),
                     (const char *)zmq_msg_data(&f[3]));
            snprintf(mech, sizeof mech, "%.*s", (int)zmq_msg_size(&f[5]),
                     (const char *)zmq_msg_data(&f[5]));
        }
        const dq_curve_cert *who = NULL;
        const char *why = "malformed ZAP request";
        bool students = strcmp(domain, "students") == 0, workers = strcmp(domain, "workers") == 0;
        if (n >= 7 && strcmp(mech, "CURVE") == 0 && zmq_msg_size(&f[6]) == 32 &&
            (students || workers)) {
            const dq_curve_allow *a = students ? b->cfg.curve->students : b->cfg.curve->workers;
            who = dq_curve_allow_find(a, zmq_msg_data(&f[6]));
            why = students ? "key not in --allow-students" : "key not in --allow-workers";
        } else if (n >= 6 && strcmp(mech, "CURVE") != 0) {
            why = "not a CURVE connection";
        }
        const char *code = who ? "200" : "400";
        const char *text = who ? "OK" : why;
        const char *user = who ? who->name : "";
        if (n >= 2) {
            s_frame(b->zap, "1.0", 3, true);
            s_frame(b->zap, zmq_msg_data(&f[1]), zmq_msg_size(&f[1]), true);
            s_frame(b->zap, code, 3, true);
            s_frame(b->zap, text, strlen(text), true);
            s_frame(b->zap, user, strlen(user), true);
            s_frame(b->zap, "", 0, false);
        }
        if (!who) {
            b->n_auth_refused++;
            char zkey[DQ_CURVE_Z85_LEN + 1] = "?";
            if (n >= 7 && zmq_msg_size(&f[6]) == 32) zmq_z85_encode(zkey, zmq_msg_data(&f[6]), 32);
            /* Which certificate is it, if it is one we know on the other side? */
            const dq_curve_allow *other = students ? b->cfg.curve->workers : b->cfg.curve->students;
            const dq_curve_cert *known =
                n >= 7 && zmq_msg_size(&f[6]) == 32 && (students || workers)
                    ? dq_curve_allow_find(other, zmq_msg_data(&f[6]))
                    : NULL;
            dq_broker_log(b, "refused %s connection from %s (key %.12s...%s%s%s): %s",
                          domain[0] ? domain : "?", address[0] ? address : "?", zkey,
                          known ? ", which is " : "", known ? known->name : "",
                          known ? (students ? " in --allow-workers" : " in --allow-students") : "",
                          why);
        }
        for (int i = 0; i < n; i++) zmq_msg_close(&f[i]);
    }
}

void dq_broker_zap_stop(dq_broker_t *b)
{
    if (b->zap) zmq_close(b->zap);
    b->zap = NULL;
}
