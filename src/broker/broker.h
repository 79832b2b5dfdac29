/* broker.h - the distillq teacher-service broker as a library.
 *
 * Clients (DEALER) talk to the frontend ROUTER, teacher workers (DEALER) to
 * the backend ROUTER; the protocol and the state machine are specified in
 * docs/protocol.md. One dq_broker_t runs one zmq_poll loop in the calling
 * thread (dq_broker_run) until *stop becomes non-zero; the program
 * (src/broker/main.c) owns the signal flag, tests and benchmarks may run a
 * broker in a thread of their own with a flag they set.
 *
 * Everything the hot path needs is allocated by dq_broker_new and sized by
 * the config: request records (max_queue + max_inflight), the (client,
 * req_id) hash, the worker and service tables. A request body is held as
 * the received zmq frame and forwarded by reference, never re-encoded.
 */
#ifndef DQ_BROKER_H
#define DQ_BROKER_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <zmq.h>

#include "proto/curve.h"
#include "proto/msg.h"
#include "base/status.h"

typedef struct dq_broker dq_broker_t;

/* Reply-cache hook, for the LMDB cache of issue 5; NULL (no cache) for now.
 * lookup: called for each valid request of a service whose teacher identity
 *   is known (even with no live worker); return true after initialising
 *   *reply (ownership passes to the broker) with a complete reply body for
 *   req->req_id to answer without a worker; false to queue it as usual.
 * store: called for every ok reply a worker sends, with the request it
 *   answers; the pointers are only valid during the call. */
typedef struct dq_broker_cache {
    void *ctx;
    bool (*lookup)(void *ctx, const dq_msg_teacher *teacher, const dq_msg_request *req,
                   zmq_msg_t *reply);
    void (*store)(void *ctx, const dq_msg_teacher *teacher, const dq_msg_request *req,
                  const dq_msg_reply *rep);
    /* for metrics (may be NULL): lookups answered, missed, entries stored,
     * failures, and the bytes the cache holds */
    void (*counts)(void *ctx, uint64_t *hits, uint64_t *misses, uint64_t *stored, uint64_t *errors,
                   uint64_t *bytes);
} dq_broker_cache;

/* A client's weight in its services' round robin (--share NAME=W). */
typedef struct {
    const char *name;           /* key name under CURVE, else the request's "client" */
    uint32_t weight;            /* >= 1: requests served per turn */
} dq_broker_share;

/* CURVE (--curve-cert, --allow-students, --allow-workers): both sockets
 * are CURVE servers with the server's key; zap.c admits the keys of
 * students on the frontend and of workers on the backend only. */
typedef struct {
    dq_curve_cert server;                /* with its secret key */
    const dq_curve_allow *students, *workers;
} dq_broker_curve;

typedef struct {
    const char *frontend;       /* bind endpoint for clients (default: all interfaces, port 5555) */
    const char *backend;        /* bind endpoint for workers (default: all interfaces, port 5556) */
    int heartbeat_ms;           /* 1000 */
    int liveness;               /* 3: heartbeats missed before a worker is dead */
    int request_timeout_ms;     /* 30000: longest wait in the queue */
    int service_timeout_ms;     /* 120000: a worker holding a request longer is
                                 * stuck (alive but not computing): it is
                                 * dropped like a dead one; 0: never */
    int max_queue;              /* 1024: queued requests per client (and service) */
    int max_queued_total;       /* 0: 4 x max_queue; queued requests, all clients */
    int max_clients;            /* 1024: (service, client) queues at once */
    const dq_broker_share *shares; /* n_shares weights; a client not named: weight 1 */
    int n_shares;
    int max_inflight;           /* 1024: requests held by workers, all services */
    int max_workers;            /* 256 */
    int max_services;           /* 64 */
    int64_t max_msg_bytes;      /* 64 MiB: larger frames get bad_request */
    int64_t max_queue_bytes;    /* 1 GiB: request bodies held (queued + in flight),
                                 * all clients; beyond it requests get overloaded */
    int64_t max_client_bytes;   /* 0: max_queue_bytes / 4; the same per client queue */
    FILE *log;                  /* join/leave/death/requeue lines; NULL: stderr */
    void *zmq_ctx;              /* NULL: the broker makes and owns one */
    int io_threads;             /* 0: dq_broker_io_threads(); libzmq I/O threads of the
                                 * context the broker makes (not of zmq_ctx) */
    const dq_broker_cache *cache; /* NULL: no cache */
    const dq_broker_curve *curve; /* NULL: no authentication, no encryption */
    /* --metrics: called from the loop each tick with the /metrics page
     * (Prometheus text), for a server in another thread; NULL: none */
    void (*metrics_publish)(void *ctx, const char *text, size_t len);
    void *metrics_ctx;
} dq_broker_config;

/* Fills c with the defaults above (both endpoints on all interfaces, ports 5555 and 5556). */
void dq_broker_config_defaults(dq_broker_config *c);

/* The libzmq I/O threads a broker's context gets by default: 1 without
 * CURVE (one thread moves both sides' bytes), 4 with: every byte is
 * decrypted on the frontend and encrypted again on the backend (~85 us a
 * 100 KB batch per pass, several times the plain broker's whole cost), and
 * one connection's crypto runs on one thread, so each side gets two
 * (the frontend's connections on the lower half of the threads, the
 * backend's on the upper half) and several students and workers spread
 * over them. docs/benchmarks.md has the numbers. */
int dq_broker_io_threads(bool curve);

/* Validates cfg, allocates every table and binds both sockets. The strings
 * and pointers of cfg must outlive the broker. On failure *out is NULL and
 * err names the bad option or the endpoint that did not bind. */
dq_status dq_broker_new(dq_broker_t **out, const dq_broker_config *cfg, dq_err *err);

/* Serves until *stop != 0 (checked at least every tick, and zmq_poll returns
 * early on a signal), then sends every worker `disconnect {retry:true}`.
 * Returns DQ_OK on a requested stop, DQ_ERR_NET if polling or receiving
 * on a socket failed (err says which). */
dq_status dq_broker_run(dq_broker_t *b, volatile sig_atomic_t *stop, dq_err *err);

/* Closes the sockets (and the context if owned), frees everything, *p = NULL. */
void dq_broker_destroy(dq_broker_t **p);

/* The random non-zero instance id the broker puts in its heartbeats. */
uint64_t dq_broker_epoch(const dq_broker_t *b);

#endif
