/* client.h - the student side of the teacher service (docs/protocol.md 6).
 *
 * A dq_client_t is one DEALER connected to a broker's frontend, used by one
 * thread. The caller picks a unique req_id per request, sends up to
 * max_inflight requests and receives their replies in whatever order they
 * come; the client guarantees exactly one reply per request:
 *
 *   - it keeps the encoded body of every request in flight, and resends it
 *     when the connection was lost and re-established, when the broker's
 *     epoch changes (a restart, seen in its heartbeat), when the broker stays
 *     silent while we wait (then it also opens a fresh socket), and when a
 *     request waits longer than resend_ms;
 *   - a reply whose req_id is no longer in flight (the second answer to a
 *     resend) is dropped and counted, never delivered;
 *   - a request unanswered for request_timeout_ms is answered locally with
 *     a timeout reply, so the caller never waits forever.
 *
 * Ordered consumers (distillq-predict --teacher, issue 5's pipelined reader)
 * use req_id = sequence number, keep at most K = max_inflight outstanding
 * and park each reply in slot req_id % K until the one they need next has
 * come: that is all the reordering needed (see predict.c's remote path).
 */
#ifndef DQ_CLIENT_H
#define DQ_CLIENT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "proto/msg.h"
#include "base/status.h"

typedef struct dq_client dq_client_t;

typedef struct {
    int max_inflight;         /* requests awaiting a reply at once (64) */
    int heartbeat_ms;         /* ping the broker after this much silence while waiting (1000) */
    int liveness;             /* silent for liveness x heartbeat: new socket + resend (3) */
    int resend_ms;            /* resend a request unanswered this long (60000; 0: never) */
    int request_timeout_ms;   /* answer locally with a timeout after this long (0: never) */
    int64_t max_msg_bytes;    /* largest reply accepted (1 GiB) */
    int retry_ms;             /* > 0: an `overloaded` or `timeout` reply from the broker
                               * ("retry later") is not delivered; the request is sent
                               * again after retry_ms, until request_timeout_ms since its
                               * first send (0: delivered as they come) */
    FILE *log;                /* one line per reconnect or resend round; NULL: silent */
    const char *name;         /* sent as the request's "client" for the broker's fair
                               * sharing (--share NAME=W); NULL: none (docs/protocol.md) */
    const char *curve_server_cert; /* CURVE: the broker's public certificate and */
    const char *curve_cert;   /* ours (NAME_secret); both NULL: plain TCP. A refused key
                               * or a wrong server key makes dq_client_recv fail with
                               * DQ_ERR_AUTH (within about 2 reconnects), not wait */
} dq_client_opts;

void dq_client_opts_default(dq_client_opts *o);

/* Splits a teacher URL into the broker endpoint and the service name: the
 * service is what follows the LAST '/', the endpoint everything before it
 * ("tcp://host:5555/fmnist" -> "tcp://host:5555" + "fmnist";
 * "ipc:///run/dq/fe/fmnist" -> "ipc:///run/dq/fe" + "fmnist"). */
dq_status dq_client_parse_url(const char *url, char *endpoint, size_t endpoint_cap,
                              char service[DQ_MSG_NAME_MAX + 1], dq_err *err);

/* Connects to the broker frontend endpoint (opts NULL: defaults). The
 * connection is made in the background; sends queue until it is up. */
dq_status dq_client_new(dq_client_t **out, const char *endpoint, const dq_client_opts *opts,
                        dq_err *err);
void dq_client_destroy(dq_client_t **p);

typedef struct {
    uint64_t req_id;             /* unique among this client's requests in flight */
    const char *service;
    dq_msg_dtype dtype;          /* DQ_DTYPE_U8 raw pixels or DQ_DTYPE_F32 normalised */
    int64_t shape[4];            /* n, c, h, w */
    const void *data;            /* n*c*h*w*(1 or 4) bytes; copied, reusable on return */
    int n_outputs;
    const char *const *outputs;  /* "logits", hidden output names */
    int64_t reply_floats;        /* floats per sample of all the outputs asked for (0:
                                  * unknown): a reply frame larger than
                                  * n x reply_floats x 4 + DQ_CLIENT_REPLY_SLACK bytes is
                                  * not handed out but answered as an error (issue 15) */
} dq_client_request;

/* Bytes a reply may have beyond its output data: keys, names, shapes, the
 * teacher identity. */
#define DQ_CLIENT_REPLY_SLACK 4096

/* Encodes and sends one request and keeps it until its reply. DQ_ERR_ARG
 * for a malformed request or a req_id already in flight, DQ_ERR_OVERLOADED
 * when max_inflight requests are in flight (receive first), DQ_ERR_NET. */
dq_status dq_client_send(dq_client_t *c, const dq_client_request *r, dq_err *err);

typedef struct {
    uint64_t req_id;
    dq_reply_status status;
    const char *error;               /* reason ("" when ok) */
    const char *service;             /* the request's service */
    int n_outputs;
    const dq_msg_output *outputs;    /* data may be unaligned: dq_msg_f32_copy */
    const dq_msg_teacher *teacher;   /* who answered; NULL unless ok */
    const char *impl;                /* the reply's "impl" ("" when not told) */
    bool teacher_changed;            /* differs from the first teacher this client saw
                                        for the service */
    int sends;                       /* 1 + resends */
    int64_t latency_ms;              /* from the first send */
} dq_client_reply;

/* Waits up to timeout_ms (0: just look, < 0: forever) for the next reply.
 * DQ_OK: *out holds one reply, valid until the next dq_client_recv or
 * destroy; its status may be an error (check it, e.g. dq_client_reply_status).
 * DQ_ERR_TIMEOUT: no reply yet. DQ_ERR_INTERRUPTED: a signal arrived.
 * DQ_ERR_NET: the socket failed. */
dq_status dq_client_recv(dq_client_t *c, dq_client_reply *out, int timeout_ms, dq_err *err);

/* DQ_OK for an ok reply; otherwise the status as a dq_status
 * (overloaded -> DQ_ERR_OVERLOADED, timeout -> DQ_ERR_TIMEOUT,
 * unknown_service -> DQ_ERR_NOT_FOUND, bad_request -> DQ_ERR_ARG,
 * error -> DQ_ERR_UNSUPPORTED) with "service S: status: reason" in err. */
dq_status dq_client_reply_status(const dq_client_reply *r, dq_err *err);

/* Requests awaiting a reply. */
int dq_client_inflight(const dq_client_t *c);

/* Lowers (or raises) the largest frame the client accepts (ZMQ_MAXMSGSIZE:
 * libzmq drops a larger one before allocating it) once the caller knows how
 * large its replies are. Only with nothing in flight (DQ_ERR_ARG otherwise):
 * the socket is reopened with the new limit. */
dq_status dq_client_set_max_msg_bytes(dq_client_t *c, int64_t bytes, dq_err *err);

/* Asks the broker for its stats JSON; *json is NUL-terminated, owned by the
 * caller (free). Only with nothing in flight (DQ_ERR_ARG otherwise). */
dq_status dq_client_stats(dq_client_t *c, char **json, int timeout_ms, dq_err *err);

typedef struct {
    uint64_t sent;          /* requests sent the first time */
    uint64_t resent;        /* resends of requests */
    uint64_t delivered;     /* replies handed to the caller (local timeouts included) */
    uint64_t duplicates;    /* replies dropped: req_id no longer in flight */
    uint64_t reconnects;    /* connection re-established or socket replaced */
    uint64_t restarts;      /* broker epoch changes seen */
    uint64_t local_timeouts;
    uint64_t oversize;      /* replies larger than their request asked for (errors) */
    uint64_t retried;       /* overloaded/timeout replies answered by a resend (retry_ms) */
    uint64_t broker_epoch;  /* last epoch the broker told us (0: none yet) */
} dq_client_counters;

void dq_client_get_counters(const dq_client_t *c, dq_client_counters *out);

#endif
