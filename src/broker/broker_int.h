/* broker_int.h - the broker's private state, shared by its .c files only.
 *
 * Four tables, all allocated once by dq_broker_new:
 *   records  - one per request the broker holds; a record is FREE (on the
 *              free list), QUEUED (in its client flow's FIFO) or INFLIGHT
 *              (in its worker's held list). Lists are intrusive (prev/next
 *              indices), so moving a request between them never allocates.
 *   workers  - by slot; free slots on a free list. A live worker is in its
 *              service's member list and, while it has a free credit, in
 *              one of its service's ready levels (ready.c).
 *   services - by slot; a service keeps the identity its workers announced.
 *   flows    - one per (service, client): fair sharing (flows.c).
 * Every lookup a message makes goes through a hash index (index.c):
 * records by (client id, req_id) to find duplicates, workers by routing id,
 * services by name, flows by (service, client name); tickets (epoch, slot,
 * generation) find a record from a reply. No message costs a scan of a
 * table: what scans is the periodic tick (heartbeats, purge, expiry) and
 * the stats.
 */
#ifndef DQ_BROKER_INT_H
#define DQ_BROKER_INT_H

#include "broker/broker.h"
#include "proto/msg.h"
#include "proto/wire.h"
#include "metrics/prom.h"

#define S_TICKET_LEN 16

typedef enum { REC_FREE = 0, REC_QUEUED, REC_INFLIGHT } dq_rec_state;

typedef struct {
    int32_t head, tail, count;
} dq_blist;

/* A hash index entry: a table slot (-1: empty) and its key's hash (index.c). */
typedef struct {
    int32_t slot;
    uint32_t hash;
} dq_bix_entry;

typedef struct {
    dq_bix_entry *e;
    uint32_t mask;
} dq_bix;

/* Does table slot `slot` hold key `key`? (ctx: the broker) */
typedef bool (*dq_bix_eq)(const void *ctx, int32_t slot, const void *key);

/* Free credits are counted in levels 1..DQ_BREADY_LEVELS-1, the top level
 * holding every worker with that many or more (ready.c). */
#define DQ_BREADY_LEVELS 64

/* Head and tail of an intrusive list of worker slots. */
typedef struct {
    int32_t head, tail;
} dq_bwlist;

typedef struct {
    int32_t prev, next;       /* links in the list the record is in */
    int32_t worker;           /* INFLIGHT: worker slot; else -1 */
    int32_t service;          /* service slot */
    int32_t flow;             /* client queue (flows.c) the record belongs to */
    uint8_t state;            /* dq_rec_state */
    bool checked;             /* request checked against the live identity */
    uint8_t cid_len;
    uint32_t gen;             /* bumped on every dispatch: ticket generation */
    uint64_t req_id;
    int64_t deadline_ms;      /* QUEUED: time out after this */
    int64_t dispatched_ms;    /* INFLIGHT: for the service time */
    int64_t arrived_ms;       /* for the request latency (metrics.c) */
    int64_t bytes;            /* body bytes charged to the budget (budget.c) */
    zmq_msg_t body;           /* the client's request frame (refcounted) */
    uint8_t cid[DQ_WIRE_ID_MAX];
} dq_brec;

typedef struct {
    /* what dispatch and lookup read first */
    bool used;
    bool draining;
    uint8_t id_len;
    int32_t service;
    uint32_t capacity, in_flight;
    uint32_t max_batch;       /* its announce's (0: any); the service takes the least */
    uint8_t level;            /* ready level (free credits, capped); 0: in none */
    int32_t lprev, lnext;     /* links in its service's ready level (ready.c) */
    int32_t mprev, mnext;     /* links in its service's members; mnext: free list when unused */
    int64_t last_seen_ms, joined_ms;
    dq_blist held;
    uint64_t served, errors, requeues;
    double service_ms_sum;
    char id_hex[24 + DQ_CURVE_NAME_MAX + 1]; /* for log lines and stats: the routing id's
                               * first 10 bytes in hex, "NAME@hex" under CURVE */
    char name[DQ_CURVE_NAME_MAX + 1]; /* its CURVE key's name; "" without CURVE */
    uint8_t id[DQ_WIRE_ID_MAX];
} dq_bworker;

/* One client's queue inside one service (flows.c): the unit of fair
 * sharing. A flow with queued requests is in its service's ring. */
typedef struct {
    bool used;
    int32_t service;
    int32_t prev, next;       /* ring of the service's flows with queued requests */
    bool in_ring;
    uint32_t weight, credit;  /* credit: dispatches left in the current turn */
    int32_t refs;             /* records (queued or in flight) naming this flow */
    uint32_t hash;            /* of (service, name) in flow_ix */
    int32_t iprev, inext;     /* idle list (refs == 0) while used; inext: free list when not */
    int32_t sprev, snext;     /* the flows of its service */
    int64_t bytes;            /* their body bytes (budget.c) */
    dq_blist queue;
    uint64_t requests, dispatched, overloaded;
    char name[DQ_MSG_NAME_MAX + 2]; /* key or client name; "#<hex id>" when unnamed */
} dq_bflow;

typedef struct {
    bool used;
    bool has_identity;        /* some worker announced since start */
    uint32_t hash;            /* of name in svc_ix */
    char name[DQ_MSG_NAME_MAX + 1];
    dq_msg_ready identity;    /* of the live workers (else the last ones) */
    int n_workers;            /* live */
    int queued;               /* over all its flows */
    int32_t rr;               /* flow whose turn it is; -1: nothing queued */
    int32_t flows;            /* head of its flows (flows.c), -1: none */
    int32_t members;          /* head of its live workers (workers.c), -1: none */
    int32_t top;              /* highest non-empty ready level, 0: no worker free */
    dq_bwlist ready[DQ_BREADY_LEVELS]; /* [l]: workers with l free credits (ready.c) */
    uint64_t served, errors, requeues, timeouts, overloaded, bad_requests;
    double service_ms_sum;
    uint64_t replies[DQ_REPLY_STATUS_COUNT]; /* to clients, by status (metrics.c) */
    dq_prom_hist latency;     /* arrival to reply, seconds */
} dq_bservice;

/* A ROUTER's failed handshakes (handshake.c). */
typedef struct {
    void *router, *mon;       /* mon: PAIR receiving router's monitor events */
    int64_t logged_ms;        /* last log line about them; 0: none yet */
    uint64_t unlogged;        /* failures since that line */
} dq_bhandshake;

struct dq_broker {
    dq_broker_config cfg;
    FILE *log;
    void *ctx;
    bool own_ctx;
    void *frontend, *backend;
    void *zap;                /* ZAP handler socket (zap.c); NULL without CURVE */
    dq_bhandshake hs[2];      /* frontend, backend (handshake.c) */
    uint64_t epoch;
    int64_t start_ms, next_hb_ms, tick_ms;

    dq_brec *rec;
    dq_msg_request *req;      /* per record: the request as decoded on arrival,
                               * its data pointing into rec[r].body; the only
                               * decode of a request in the broker. calloc'd:
                               * pages are touched only by records in use */
    int32_t n_rec;
    dq_blist free_list;
    dq_bix rec_ix;            /* (client id, req_id) -> record (records.c) */

    dq_bworker *workers;
    dq_bix widx;              /* routing id -> worker slot (worker_index.c) */
    int32_t worker_free;      /* free worker slots, linked by mnext; -1: full */
    dq_bservice *services;
    dq_bix svc_ix;            /* name -> service slot (dispatch.c) */
    dq_bflow *flows;          /* cfg.max_clients */
    dq_bix flow_ix;           /* (service, client name) -> flow (flows.c) */
    int32_t flow_free;        /* unused flow slots below flow_hi, linked by inext */
    int32_t idle_head, idle_tail; /* used flows no record names, oldest first */
    int32_t flow_hi;          /* 1 + highest used flow slot */
    int n_workers;            /* live */
    int32_t worker_hi;        /* 1 + highest used worker slot: loops stop here */
    int32_t service_hi;       /* 1 + highest used service slot (never shrinks) */
    int queued, inflight;
    int max_queued;           /* all clients: cfg.max_queued_total or 4 x max_queue */
    int64_t held_bytes, held_bytes_peak; /* request bodies held (budget.c) */
    uint64_t n_over_budget;   /* requests answered overloaded for bytes */

    dq_msg_decoder_t *dec;
    dq_msg msg;               /* scratch decoded message (a few KB) */
    dq_msg_buf out;           /* scratch for bodies the broker makes */
    dq_msg_buf hb;            /* our heartbeat body, encoded once */
    dq_msg_buf json;          /* stats text */
    dq_prom prom;             /* /metrics page (metrics.c) */

    uint64_t n_requests, n_replies, n_rejected, n_malformed, n_late, n_dup, n_undeliverable;
    uint64_t n_bad_replies;   /* worker replies failing dq_broker_check_reply */
    uint64_t n_worker_send_failed; /* sends to a worker that failed (gone, not reading) */
    uint64_t n_auth_refused;  /* handshakes the ZAP handler refused */
    uint64_t n_handshake_failed; /* before ZAP: mechanism mismatch, wrong server key */
};

/* Layering: broker.c (loop, messages, timers) -> dispatch.c (services,
 * dispatch, broker-made replies) -> workers.c (worker life cycle) ->
 * records.c; stats.c (stats JSON, log lines) is called from any of them. */

/* ---- index.c ---- */
/* Seeded FNV-1a with a final mix. */
uint32_t dq_bix_hash(const void *key, size_t len, uint64_t seed);
/* A table for up to max_entries keys (load under 1/2); `what` names it in errors. */
dq_status dq_bix_init(dq_bix *ix, int64_t max_entries, const char *what, dq_err *err);
void dq_bix_free(dq_bix *ix);
/* The slot whose hash is `hash` and for which eq(ctx, slot, key) holds, or -1. */
int32_t dq_bix_find(const dq_bix *ix, uint32_t hash, dq_bix_eq eq, const void *ctx,
                    const void *key);
/* Adds slot (its key not already indexed) / removes it (no-op if absent). */
void dq_bix_put(dq_bix *ix, uint32_t hash, int32_t slot);
void dq_bix_del(dq_bix *ix, uint32_t hash, int32_t slot);

/* ---- ready.c ---- */
/* Puts worker w in the ready level its free credits, draining and used
 * flags say (none when it has no free credit); after a dispatch to it
 * (dispatched), it goes to the back of its level even when the level is
 * unchanged. Call after every change of those fields. */
void dq_bready_update(dq_broker_t *b, int32_t w, bool dispatched);
/* The worker of svc with the most free credits (within a level: the one
 * that entered it first), or -1: O(1). */
int32_t dq_bready_pick(const dq_broker_t *b, int32_t svc);
/* Empty ready levels and member list for a new service. */
void dq_bready_init_service(dq_bservice *s);

/* ---- records.c ---- */
void dq_blist_init(dq_blist *l);
void dq_blist_push_back(dq_broker_t *b, dq_blist *l, int32_t r);
void dq_blist_push_front(dq_broker_t *b, dq_blist *l, int32_t r);
void dq_blist_remove(dq_broker_t *b, dq_blist *l, int32_t r);
int32_t dq_blist_pop_front(dq_broker_t *b, dq_blist *l); /* -1 if empty */
int32_t dq_blist_pop_back(dq_broker_t *b, dq_blist *l);

dq_status dq_brec_init(dq_broker_t *b, dq_err *err);  /* allocs pool + hash */
void dq_brec_fini(dq_broker_t *b);
/* A free record (state left FREE, body empty), or -1 when the pool is empty. */
int32_t dq_brec_alloc(dq_broker_t *b);
/* Closes the body, unhashes, and returns r to the free list. */
void dq_brec_release(dq_broker_t *b, int32_t r);
int32_t dq_brec_find(const dq_broker_t *b, const uint8_t *cid, size_t cid_len, uint64_t req_id);
void dq_brec_hash_insert(dq_broker_t *b, int32_t r);
/* Ticket of record r (its current gen) into t[S_TICKET_LEN]. */
void dq_brec_ticket(const dq_broker_t *b, int32_t r, uint8_t *t);
/* The record a ticket names if it is still in flight at worker w, else -1. */
int32_t dq_brec_from_ticket(const dq_broker_t *b, const void *t, size_t len, int32_t w);

/* ---- budget.c (bytes of request bodies held; the level of records.c) ---- */
/* NULL when a body of len bytes fits the total budget and flow's, else the
 * reason (written into why). */
const char *dq_budget_refuse(const dq_broker_t *b, int32_t flow, size_t len, char *why,
                             size_t cap);
/* The per-client budget in effect: --max-client-bytes, else a quarter of the total. */
int64_t dq_budget_client_limit(const dq_broker_t *b);
/* Charges record r's body (rec.flow set) / gives its charge back (release). */
void dq_budget_take(dq_broker_t *b, int32_t r);
void dq_budget_give(dq_broker_t *b, int32_t r);

/* ---- flows.c ---- */
/* The flow table's index and lists (dq_broker_new) / its index freed. */
dq_status dq_bflow_init(dq_broker_t *b, dq_err *err);
void dq_bflow_fini(dq_broker_t *b);
/* A record names / stops naming flow fi (refs; a flow nothing names is idle). */
void dq_bflow_ref(dq_broker_t *b, int32_t fi);
void dq_bflow_unref(dq_broker_t *b, int32_t fi);
/* Frees every flow of service svc (all idle: the service is reclaimed). */
void dq_bflow_drop_service(dq_broker_t *b, int32_t svc);
/* The flow of client `name` in service svc (created, with its --share
 * weight, when absent; an idle flow is reused when the table is full), or -1. */
int32_t dq_bflow_get(dq_broker_t *b, int32_t svc, const char *name);
/* Queues record r (rec[r].flow set) at the back (new) or front (requeue). */
void dq_bflow_push_back(dq_broker_t *b, int32_t r);
void dq_bflow_push_front(dq_broker_t *b, int32_t r);
/* Takes queued record r out of its flow (answered or expired: no credit used). */
void dq_bflow_remove(dq_broker_t *b, int32_t r);
/* The record the round robin serves next in svc (not removed), or -1. */
int32_t dq_bflow_peek(dq_broker_t *b, int32_t svc);
/* Removes r, the record dq_bflow_peek returned, for dispatch: uses a credit. */
void dq_bflow_take(dq_broker_t *b, int32_t r);

/* ---- zap.c ---- */
/* Binds the ZAP handler when cfg.curve is set (before the ROUTERs bind). */
dq_status dq_broker_zap_start(dq_broker_t *b, dq_err *err);
/* Answers the pending ZAP requests (the loop polls b->zap). */
void dq_broker_zap_handle(dq_broker_t *b);
void dq_broker_zap_stop(dq_broker_t *b);

/* ---- handshake.c ---- */
/* Watches router (side 0: frontend, 1: backend) for failed handshakes;
 * before it binds. */
dq_status dq_broker_handshake_watch(dq_broker_t *b, int side, void *router, dq_err *err);
/* Counts and logs (rate-limited) the pending failures (the loop polls hs[side].mon). */
void dq_broker_handshake_handle(dq_broker_t *b, int side, int64_t now);
/* Detaches the monitors; before the ROUTERs close. */
void dq_broker_handshake_stop(dq_broker_t *b);

/* ---- metrics.c ---- */
/* Counts one reply to a client of service svc (status, arrival to now). */
void dq_broker_count_reply(dq_broker_t *b, int32_t svc, dq_reply_status st, int64_t arrived_ms,
                           int64_t now);
/* Builds the /metrics page and hands it to cfg.metrics_publish. */
void dq_broker_metrics_publish(dq_broker_t *b, int64_t now);

/* ---- stats.c ---- */
/* Writes the stats JSON (docs/protocol.md) into b->json. */
dq_status dq_broker_stats_json(dq_broker_t *b, int64_t now, dq_err *err);
/* One timestamped line to the broker's log. */
void dq_broker_log(dq_broker_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- workers.c ---- */
/* The worker table, its free list and index (dq_broker_new) / freed. */
dq_status dq_broker_workers_init(dq_broker_t *b, dq_err *err);
void dq_broker_workers_fini(dq_broker_t *b);
/* The live worker with routing id (id, len), or -1. */
int32_t dq_broker_find_worker(const dq_broker_t *b, const uint8_t *id, size_t len);
/* worker_index.c: the routing id index behind dq_broker_find_worker; put
 * after a worker's id is set, del before its slot is freed. */
dq_status dq_bwindex_init(dq_broker_t *b, dq_err *err);
void dq_bwindex_free(dq_broker_t *b);
void dq_bwindex_put(dq_broker_t *b, int32_t w);
void dq_bwindex_del(dq_broker_t *b, int32_t w);
/* Sends [id][body] on the backend without blocking; a failure is counted
 * (n_worker_send_failed), the worker's death is left to the liveness check. */
void dq_broker_send_worker(dq_broker_t *b, const uint8_t *id, size_t len, const void *body,
                           size_t body_len);
void dq_broker_reannounce(dq_broker_t *b, const uint8_t *id, size_t len);
void dq_broker_disconnect(dq_broker_t *b, const uint8_t *id, size_t len, const char *why);
/* Admits the worker that announced rd into service svc: its slot, or -1
 * after telling it why not (identity differs from the live workers', table
 * full). The first live worker sets the service identity. Does not dispatch.
 * name: its CURVE key's name (NULL or "" without CURVE). */
int32_t dq_broker_add_worker(dq_broker_t *b, int32_t svc, const uint8_t *id, size_t len,
                             const char *name, const dq_msg_ready *rd, int64_t now);
/* Requeues what worker w holds at the head of its queue and forgets it.
 * Does not dispatch: the caller dispatches the worker's service. */
void dq_broker_remove_worker(dq_broker_t *b, int32_t w, const char *why, int64_t now);
/* Removes dead and stuck workers; returns how many (the caller dispatches). */
int dq_broker_purge(dq_broker_t *b, int64_t now);

/* ---- dispatch.c ---- */
void dq_broker_dispatch(dq_broker_t *b, int32_t svc, int64_t now);
/* Sends [cid][body] on the frontend; a failure counts as undeliverable. */
void dq_broker_send_client(dq_broker_t *b, const uint8_t *cid, size_t cid_len, const void *body,
                           size_t len);
/* Sends a broker-made error reply for record-less requests. */
void dq_broker_error_reply(dq_broker_t *b, const uint8_t *cid, size_t cid_len, uint64_t req_id,
                           dq_reply_status st, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* The same to a peer of the backend that is not a worker (a client given
 * the wrong port). */
void dq_broker_error_reply_backend(dq_broker_t *b, const uint8_t *id, size_t id_len,
                                   uint64_t req_id, dq_reply_status st, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* Answers record r with an error reply and releases it. */
void dq_broker_fail_record(dq_broker_t *b, int32_t r, dq_reply_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The service table's name index (dq_broker_new) / freed. */
dq_status dq_broker_services_init(dq_broker_t *b, dq_err *err);
void dq_broker_services_fini(dq_broker_t *b);
/* The slot of service `name`, created when absent and create is set (a
 * never-announced idle one is reclaimed when the table is full), or -1. */
int32_t dq_broker_service(dq_broker_t *b, const char *name, bool create);
/* NULL when the request fits the service's live identity, else the reason. */
const char *dq_broker_check_request(const dq_bservice *s, const dq_msg_request *r, char *why,
                                    size_t cap);

/* reply_check.c: NULL when the ok reply rep fits the announce id and the
 * request rq, else why not (written into why). Error replies pass. */
const char *dq_broker_check_reply(const dq_msg_ready *id, const dq_msg_request *rq,
                                  const dq_msg_reply *rep, char *why, size_t cap);

#endif
