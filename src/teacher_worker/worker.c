/* worker.c - the teacher worker's zmq side: join, serve, heartbeat, re-join,
 * drain and leave (docs/protocol.md section 5).
 *
 * Two threads. The I/O thread (the caller of dq_worker_run) owns the DEALER
 * to the broker and never computes: it decodes and checks each request ONCE
 * (dq_msg_decode, the model's check), keeps up to K in a local FIFO,
 * heartbeats and watches the broker's liveness. The compute thread owns the
 * network and runs one forward at a time. A hand-off moves the queued jobs
 * (frames and decoded request, whose data points into the body frame) into
 * the worker's hand[] array and wakes the compute thread with a "go" frame
 * on an inproc PAIR; it serves them as decoded (the model's serve: no
 * second decode, no second check), writes one reply per job into hbufs[]
 * and answers "done".
 *
 * OWNERSHIP: hand[] and hbufs[] belong to the compute thread from "go" until
 * "done", to the I/O thread otherwise. hand_mu, held by the compute thread
 * over that span and taken by the I/O thread around its own use, says so to
 * ThreadSanitizer too, which cannot see the ordering inside libzmq.
 *
 * We chose the thread over "compute between polls" because the length of a
 * forward is not ours to bound: DeepNN on a batch of 128 takes ~0.3 s on
 * one core here, a batch of 1024 or a busy host passes liveness x
 * heartbeat, and a worker that computed in its poll loop would then be
 * declared dead and its work requeued exactly when it is busiest. Feeding
 * the compute thread only when it is idle (instead of pushing every job
 * into the PAIR as it comes) keeps the queue on this side, where a re-join
 * can throw away work that the broker has already requeued elsewhere.
 *
 * Dynamic batching: when the compute thread is free, ALL queued jobs (up to
 * capacity, DQ_WORKER_MAX_MERGE) go to it in one hand-off; it serves those
 * that fit together as one forward (same dtype and outputs, at most
 * max_batch samples) and the rest one by one. Bigger batches keep a GPU
 * busy; on the CPU they cost nothing, and since the eval forward is
 * batch-invariant no reply changes. `no_merge` hands one job at a time.
 *
 * Every (re-)join bumps a generation number: a hand-off that was computing
 * when the broker went away comes back with an old generation (hand_gen)
 * and its replies are dropped instead of being sent to a broker that never
 * asked for it.
 *
 * The model is a vtable (worker.h dq_worker_model): a model file
 * (worker_teacher.c) or libdistillq's forward callback (src/lib/worker.c),
 * so every worker, C or Python, runs this one state machine.
 *
 * Backoff: a re-join waits 100 ms doubling to 2 s plus up to 50% jitter. It
 * is reset by any broker message except a disconnect, so a worker the
 * broker keeps refusing (identity mismatch, disconnect {retry}) backs off
 * instead of retrying every 100-150 ms.
 *
 * Signals: the compute thread blocks them all, so SIGTERM/SIGINT interrupt
 * the I/O thread's zmq_poll (EINTR) and the stop flag (owned by main) is
 * seen at once. Stop 1: DRAIN, finish what we hold, GOODBYE, return DQ_OK.
 * Stop 2 (a second signal): GOODBYE at once; the broker requeues the rest.
 */
#include "teacher_worker/worker.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "metrics/prom.h"
#include "proto/curve.h"
#include "proto/msg.h"
#include "proto/wire.h"

#define S_BACKOFF_MIN_MS 100
#define S_BACKOFF_MAX_MS 2000
#define S_GOODBYE_LINGER_MS 1000
#define S_RECV_BURST 64          /* broker messages handled per poll round */

/* A request the I/O thread accepted: its frames, and the request decoded
 * and checked once; req.data points into body (s_job_move keeps it so). */
typedef struct {
    zmq_msg_t ticket, body;
    dq_msg_request req;
} s_job;

struct dq_worker {
    dq_worker_config cfg;
    dq_worker_model model;
    void *ctx;

    /* I/O thread */
    void *sock;                  /* DEALER to the broker; NULL between joins */
    dq_curve_watch watch;        /* CURVE handshake failures of sock */
    void *pair;                  /* our end of the compute PAIR */
    dq_msg_decoder_t *dec;
    dq_msg_buf buf;
    s_job *queue;                /* ring of capacity jobs not yet computing */
    int q_head, q_count;
    int busy;                    /* jobs the compute thread holds (hand_n or 0) */
    uint32_t busy_gen, gen;
    uint64_t my_epoch, rnd;
    int64_t last_heard, last_hb, reconnect_at, last_ready, last_reannounce_log;
    int backoff_ms;
    bool draining;
    bool drain_acked;        /* the broker confirmed: it sends us nothing new */
    int64_t drain_sent;      /* when we asked (ms) */
    uint64_t served, rejected, stale;
    uint64_t handoffs;           /* compute hand-offs: < served when merging */

    /* the hand-off (see OWNERSHIP above) */
    s_job *hand;                 /* capacity slots; hand_n in use */
    dq_msg_buf *hbufs;           /* reply body per hand[] job; empty: encoding failed */
    int hand_n;
    uint32_t hand_gen;           /* w->gen at the hand-off: older replies are stale */
    pthread_mutex_t hand_mu;
    bool hand_mu_up;

    /* compute thread */
    pthread_t thread;
    bool thread_up;
    void *cpair;
    char pair_ep[64];
    /* set by the compute thread (lost_err first) when the model is lost:
     * the device (a sticky CUDA error) or N failed forwards in a row */
    atomic_bool lost;
    dq_err lost_err;
    /* metrics (cfg.metrics_publish): forward times, observed by the compute
     * thread under hand_mu; the page, built on the I/O thread */
    dq_prom_hist fwd;
    uint64_t forwards;
    dq_prom prom;
    int64_t last_metrics;
};

/* ---- small helpers --------------------------------------------------------------- */

static void s_log(dq_worker_t *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_log(dq_worker_t *w, const char *fmt, ...)
{
    if (!w->cfg.log) return;
    char line[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(w->cfg.log, "%s[%ld] %s: %s\n", w->cfg.log_name ? w->cfg.log_name : "distillq-teacher",
            (long)getpid(), w->cfg.service,
            line);
    fflush(w->cfg.log);
}

static uint64_t s_rand(dq_worker_t *w)
{
    w->rnd ^= w->rnd << 13; /* xorshift64: jitter only */
    w->rnd ^= w->rnd >> 7;
    w->rnd ^= w->rnd << 17;
    return w->rnd;
}

static void s_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

void dq_worker_config_default(dq_worker_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->capacity = 2;
    cfg->heartbeat_ms = 1000;
    cfg->liveness = 3;
}

/* ---- the compute thread ------------------------------------------------------------ */

/* Serves the jobs of one hand-off into hbufs (compute thread, hand_mu held). */
static void s_compute_many(dq_worker_t *w)
{
    const dq_msg_request *reqs[DQ_WORKER_MAX_MERGE];
    int k = w->hand_n;
    if (w->cfg.delay_ms > 0) s_sleep_ms(w->cfg.delay_ms);
    for (int j = 0; j < k; j++) {
        dq_msg_buf_reset(&w->hbufs[j]);
        reqs[j] = &w->hand[j].req;
    }
    dq_err err = {{0}};
    double t0 = dq_clock_now_s();
    dq_status st = w->model.serve(w->model.ctx, reqs, k, w->hbufs, &err);
    dq_prom_hist_observe(&w->fwd, dq_clock_now_s() - t0);
    w->forwards++;
    if (st != DQ_OK)
        for (int j = 0; j < k; j++) w->hbufs[j].len = 0; /* the I/O thread answers */
    if (w->model.lost && w->model.lost(w->model.ctx, &w->lost_err) != DQ_OK)
        atomic_store(&w->lost, true);
}

static void *s_compute_main(void *arg)
{
    dq_worker_t *w = arg;
    for (;;) {
        /* "g": serve the hand-off; an empty frame (or a failed receive: the
         * context is terminating, signals are blocked here) means stop. */
        char go = 0;
        if (zmq_recv(w->cpair, &go, 1, 0) != 1 || go != 'g') break;
        pthread_mutex_lock(&w->hand_mu);
        s_compute_many(w);
        pthread_mutex_unlock(&w->hand_mu);
        if (zmq_send(w->cpair, "d", 1, 0) != 1) break;
    }
    return NULL;
}

static dq_status s_compute_start(dq_worker_t *w, dq_err *err)
{
    snprintf(w->pair_ep, sizeof w->pair_ep, "inproc://dq-worker-%p", (void *)w);
    w->pair = zmq_socket(w->ctx, ZMQ_PAIR);
    w->cpair = zmq_socket(w->ctx, ZMQ_PAIR);
    if (!w->pair || !w->cpair || zmq_bind(w->pair, w->pair_ep) != 0 ||
        zmq_connect(w->cpair, w->pair_ep) != 0)
        return dq_fail(err, DQ_ERR_NET, "worker: inproc pair: %s", zmq_strerror(zmq_errno()));
    /* The compute thread takes no signals, so they reach zmq_poll here. */
    sigset_t all, old;
    sigfillset(&all);
    int rc = pthread_sigmask(SIG_BLOCK, &all, &old);
    if (rc != 0)
        return dq_fail(err, DQ_ERR_SYSTEM, "worker: pthread_sigmask: %s", strerror(rc));
    rc = pthread_create(&w->thread, NULL, s_compute_main, w);
    int rc2 = pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        return dq_fail(err, DQ_ERR_SYSTEM, "worker: pthread_create (compute thread): %s",
                       strerror(rc));
    w->thread_up = true;
    if (rc2 != 0) /* signals would stay blocked here: stop could never be seen */
        return dq_fail(err, DQ_ERR_SYSTEM, "worker: pthread_sigmask (restore): %s",
                       strerror(rc2));
    return DQ_OK;
}

static void s_compute_stop(dq_worker_t *w)
{
    if (w->thread_up && w->pair) {
        /* Blocks only until the current forward ends; the PAIR never fills
         * because we hand it one hand-off at a time. */
        if (zmq_send(w->pair, "", 0, 0) < 0)
            zmq_ctx_shutdown(w->ctx); /* its blocking recv then fails with ETERM */
        pthread_join(w->thread, NULL);
        w->thread_up = false;
    }
    if (w->cpair) zmq_close(w->cpair);
    if (w->pair) zmq_close(w->pair);
    w->cpair = w->pair = NULL;
    /* A hand-off whose "done" was never read: the thread is gone, it is ours. */
    for (int i = 0; i < w->hand_n; i++) {
        zmq_msg_close(&w->hand[i].ticket);
        zmq_msg_close(&w->hand[i].body);
    }
    w->hand_n = w->busy = 0;
}

/* ---- sending to the broker -------------------------------------------------------- */

/* Sends one body frame (or [ticket, body] when ticket is non-NULL, the
 * ticket frame being moved). Never blocks: a broker that is not reading is
 * one we are about to declare dead. */
static dq_status s_send(dq_worker_t *w, zmq_msg_t *ticket, const void *body, size_t len,
                        dq_err *err)
{
    if (!w->sock) return DQ_OK;
    if (ticket && zmq_msg_send(ticket, w->sock, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return dq_fail(err, DQ_ERR_NET, "send to broker: %s", zmq_strerror(zmq_errno()));
    if (zmq_send(w->sock, body, len, ZMQ_DONTWAIT) < 0)
        return dq_fail(err, DQ_ERR_NET, "send to broker: %s", zmq_strerror(zmq_errno()));
    return DQ_OK;
}

static dq_status s_send_buf(dq_worker_t *w, zmq_msg_t *ticket, dq_err *err)
{
    return s_send(w, ticket, w->buf.data, w->buf.len, err);
}

static dq_status s_send_ready(dq_worker_t *w, dq_err *err)
{
    dq_msg_ready r;
    w->model.announce(w->model.ctx, &r);
    r.capacity = (uint32_t)w->cfg.capacity;
    dq_msg_buf_reset(&w->buf);
    DQ_TRY(dq_msg_encode_ready(&w->buf, &r, err));
    w->last_ready = dq_clock_now_ms();
    return s_send_buf(w, NULL, err);
}

static dq_status s_send_simple(dq_worker_t *w, dq_msg_type type, dq_err *err)
{
    dq_msg_buf_reset(&w->buf);
    if (type == DQ_MSG_HEARTBEAT)
        DQ_TRY(dq_msg_encode_heartbeat(&w->buf, w->my_epoch, err));
    else
        DQ_TRY(dq_msg_encode_simple(&w->buf, type, err));
    return s_send_buf(w, NULL, err);
}

/* Answers [ticket, request] with an error reply (status, reason). */
static void s_reply_error(dq_worker_t *w, zmq_msg_t *ticket, uint64_t req_id,
                          dq_reply_status status, const char *reason)
{
    dq_err err = {{0}};
    dq_msg_buf_reset(&w->buf);
    dq_status st = dq_msg_encode_error_reply(&w->buf, req_id, status, reason, &err);
    if (st == DQ_OK) st = s_send_buf(w, ticket, &err);
    if (st != DQ_OK) s_log(w, "cannot send an error reply for request %llu: %s",
                           (unsigned long long)req_id, err.msg);
    w->rejected++;
}

/* ---- the local queue ------------------------------------------------------------- */

/* Moves the frames (ticket, body) into dst (uninitialised; they are left
 * empty) with the request decoded from body, re-pointing req.data into
 * dst's body: a message small enough to live inside the zmq_msg_t moves
 * with it. */
static dq_status s_job_take(s_job *dst, zmq_msg_t *ticket, zmq_msg_t *body,
                            const dq_msg_request *req, dq_err *err)
{
    const uint8_t *old = zmq_msg_data(body);
    size_t off = req->data ? (size_t)((const uint8_t *)req->data - old) : 0;
    zmq_msg_init(&dst->ticket);
    zmq_msg_init(&dst->body);
    if (zmq_msg_move(&dst->ticket, ticket) != 0 || zmq_msg_move(&dst->body, body) != 0)
        return dq_fail(err, DQ_ERR_INTERNAL, "worker: zmq_msg_move: %s",
                       zmq_strerror(zmq_errno()));
    dst->req = *req;
    if (req->data) dst->req.data = (const uint8_t *)zmq_msg_data(&dst->body) + off;
    return DQ_OK;
}

static dq_status s_job_move(s_job *dst, s_job *src, dq_err *err)
{
    return s_job_take(dst, &src->ticket, &src->body, &src->req, err);
}

static void s_job_close(s_job *j)
{
    zmq_msg_close(&j->ticket);
    zmq_msg_close(&j->body);
}

/* Drops every queued job (the broker they came from requeues or forgot them)
 * and makes the computing one's reply stale. */
static void s_purge(dq_worker_t *w)
{
    while (w->q_count > 0) {
        s_job_close(&w->queue[w->q_head]);
        w->q_head = (w->q_head + 1) % w->cfg.capacity;
        w->q_count--;
        w->stale++;
    }
    w->gen++;
}

static int s_held(const dq_worker_t *w)
{
    return w->q_count + (w->busy_gen == w->gen ? w->busy : 0);
}

/* Hands the queued jobs (all of them, or the oldest one with no_merge) to
 * the compute thread if it is idle. */
static dq_status s_kick(dq_worker_t *w, dq_err *err)
{
    if (w->busy > 0 || w->q_count == 0) return DQ_OK;
    int k = w->cfg.no_merge ? 1 : w->q_count;
    if (k > DQ_WORKER_MAX_MERGE) k = DQ_WORKER_MAX_MERGE;
    dq_status st = DQ_OK;
    pthread_mutex_lock(&w->hand_mu); /* the compute thread is idle: never waits */
    w->hand_n = 0;
    for (int i = 0; i < k; i++) {
        s_job *j = &w->queue[w->q_head];
        w->q_head = (w->q_head + 1) % w->cfg.capacity;
        w->q_count--;
        if (st == DQ_OK) st = s_job_move(&w->hand[w->hand_n], j, err);
        if (st == DQ_OK) w->hand_n++;
        s_job_close(j);
    }
    w->hand_gen = w->gen;
    pthread_mutex_unlock(&w->hand_mu);
    if (st != DQ_OK) return st;
    if (zmq_send(w->pair, "g", 1, 0) != 1)
        return dq_fail(err, DQ_ERR_NET, "worker: hand-off to compute: %s",
                       zmq_strerror(zmq_errno()));
    w->busy = k;
    w->busy_gen = w->gen;
    w->handoffs++;
    return DQ_OK;
}

/* The compute thread's "done": sends each job's reply (unless the broker it
 * came from is gone), frees the hand-off and hands over the next one. */
static dq_status s_on_result(dq_worker_t *w, dq_err *err)
{
    char done = 0;
    if (zmq_recv(w->pair, &done, 1, ZMQ_DONTWAIT) < 0) {
        int e = zmq_errno();
        if (e == EAGAIN || e == EINTR) return DQ_OK;
        return dq_fail(err, DQ_ERR_NET, "worker: result from compute: %s", zmq_strerror(e));
    }
    pthread_mutex_lock(&w->hand_mu); /* the compute thread released it before "done" */
    for (int i = 0; i < w->hand_n; i++) {
        s_job *j = &w->hand[i];
        const dq_msg_buf *rb = &w->hbufs[i];
        if (w->hand_gen != w->gen || !w->sock || atomic_load(&w->lost)) {
            w->stale++; /* lost: the broker requeues it when we leave */
        } else if (rb->len == 0) {
            s_reply_error(w, &j->ticket, j->req.req_id, DQ_REPLY_ERROR,
                          "teacher could not encode its reply");
        } else {
            dq_err e2 = {{0}};
            if (s_send(w, &j->ticket, rb->data, rb->len, &e2) != DQ_OK) {
                s_log(w, "reply not sent (broker not reading): %s", e2.msg);
                w->stale++;
            } else {
                w->served++;
            }
        }
        s_job_close(j);
    }
    w->hand_n = 0;
    w->busy = 0;
    pthread_mutex_unlock(&w->hand_mu);
    return atomic_load(&w->lost) ? DQ_OK : s_kick(w, err);
}

/* ---- joining and leaving ------------------------------------------------------------ */

static dq_status s_join(dq_worker_t *w, const char *why, dq_err *err)
{
    dq_wire_opts o = {0};
    o.max_msg_bytes = w->model.max_data_bytes(w->model.ctx) + (1 << 20);
    o.curve_server_cert = w->cfg.curve_server_cert;
    o.curve_cert = w->cfg.curve_cert;
    o.handshake_ms = w->cfg.heartbeat_ms * w->cfg.liveness;
    o.watch = &w->watch;
    DQ_TRY(dq_wire_dealer_new(&w->sock, w->ctx, w->cfg.broker, &o, err));
    w->gen++;
    w->last_heard = w->last_hb = dq_clock_now_ms();
    DQ_TRY(s_send_ready(w, err));
    const dq_msg_teacher *id = w->model.identity(w->model.ctx);
    s_log(w, "%s %s: model %s, sha256 %.16s..., capacity %d", why, w->cfg.broker, id->model,
          id->sha256, w->cfg.capacity);
    return DQ_OK;
}

/* Closes the socket and schedules a re-join after a jittered backoff. */
static void s_drop(dq_worker_t *w, const char *why)
{
    s_purge(w);
    dq_curve_watch_stop(&w->watch, w->sock);
    if (w->sock) zmq_close(w->sock);
    w->sock = NULL;
    int wait = w->backoff_ms + (int)(s_rand(w) % (uint64_t)(w->backoff_ms / 2 + 1));
    w->reconnect_at = dq_clock_now_ms() + wait;
    w->backoff_ms = w->backoff_ms * 2 > S_BACKOFF_MAX_MS ? S_BACKOFF_MAX_MS : w->backoff_ms * 2;
    s_log(w, "%s: re-joining in %d ms", why, wait);
}

static void s_leave(dq_worker_t *w, const char *why)
{
    int held = s_held(w);
    if (w->sock) {
        dq_err err;
        int linger = S_GOODBYE_LINGER_MS;
        if (zmq_setsockopt(w->sock, ZMQ_LINGER, &linger, sizeof linger) != 0)
            s_log(w, "goodbye may be lost: ZMQ_LINGER: %s", zmq_strerror(zmq_errno()));
        if (s_send_simple(w, DQ_MSG_GOODBYE, &err) != DQ_OK) s_log(w, "goodbye: %s", err.msg);
        dq_curve_watch_stop(&w->watch, w->sock);
        zmq_close(w->sock);
        w->sock = NULL;
    }
    char rest[96] = "";
    if (held > 0) snprintf(rest, sizeof rest, ", %d held ones go back to the broker's queue", held);
    s_log(w, "leave (%s): served %llu in %llu hand-offs, rejected %llu, stale %llu%s", why,
          (unsigned long long)w->served, (unsigned long long)w->handoffs,
          (unsigned long long)w->rejected, (unsigned long long)w->stale, rest);
    s_purge(w);
}

/* ---- messages from the broker -------------------------------------------------------- */

static void s_on_request(dq_worker_t *w, dq_wire_parts *p)
{
    dq_err why = {{0}};
    dq_msg m;
    zmq_msg_t *ticket = &p->f[0];
    dq_status st = dq_msg_decode(w->dec, zmq_msg_data(&p->f[1]), zmq_msg_size(&p->f[1]), &m,
                                 &why);
    if (st == DQ_OK && m.type != DQ_MSG_REQUEST)
        st = dq_fail(&why, DQ_ERR_PROTO, "a %s in a [ticket, body] message",
                     dq_msg_type_name(m.type));
    if (st != DQ_OK) {
        char reason[sizeof(dq_err) + 128]; /* encoder truncates */
        snprintf(reason, sizeof reason, "service %s: malformed request: %s", w->cfg.service,
                 why.msg);
        if (m.has_req_id) s_reply_error(w, ticket, m.req_id, DQ_REPLY_BAD_REQUEST, reason);
        else s_log(w, "dropped: %s", reason);
        return;
    }
    if (w->model.check(w->model.ctx, &m.u.request, &why) != DQ_OK) {
        s_reply_error(w, ticket, m.req_id, DQ_REPLY_BAD_REQUEST, why.msg);
        return;
    }
    if (w->q_count == w->cfg.capacity) {
        char reason[sizeof(dq_err) + 128]; /* encoder truncates */
        snprintf(reason, sizeof reason, "service %s: worker already holds its capacity of %d "
                 "requests", w->cfg.service, w->cfg.capacity);
        s_reply_error(w, ticket, m.req_id, DQ_REPLY_ERROR, reason);
        return;
    }
    /* The frames move into the queue with the request decoded from them. */
    s_job *j = &w->queue[(w->q_head + w->q_count) % w->cfg.capacity];
    if (s_job_take(j, &p->f[0], &p->f[1], &m.u.request, &why) != DQ_OK) {
        s_log(w, "dropped request %llu: %s", (unsigned long long)m.req_id, why.msg);
        s_job_close(j);
        return;
    }
    w->q_count++;
}

/* Handles one broker message. Returns DQ_ERR_PROTO only when the broker
 * refused us for good, DQ_ERR_ARG when --broker is its client port. */
static dq_status s_on_broker(dq_worker_t *w, dq_wire_parts *p, dq_err *err)
{
    int64_t now = dq_clock_now_ms();
    w->last_heard = now;
    if (p->total == 2 && p->n == 2) {
        w->backoff_ms = S_BACKOFF_MIN_MS;
        s_on_request(w, p);
        return s_kick(w, err);
    }
    if (p->total != 1) {
        s_log(w, "ignored a broker message of %d frames", p->total);
        return DQ_OK;
    }
    dq_err why = {{0}};
    dq_msg m;
    if (dq_msg_decode(w->dec, zmq_msg_data(&p->f[0]), zmq_msg_size(&p->f[0]), &m, &why) != DQ_OK) {
        s_log(w, "ignored a malformed broker message: %s", why.msg);
        return DQ_OK;
    }
    if (m.type != DQ_MSG_DISCONNECT) w->backoff_ms = S_BACKOFF_MIN_MS; /* accepted */
    switch (m.type) {
    case DQ_MSG_HEARTBEAT:
        /* The broker tells its interval: heartbeat and judge it at that pace
         * (its liveness x interval is what it judges us by). */
        if (m.u.heartbeat.interval_ms && (int)m.u.heartbeat.interval_ms != w->cfg.heartbeat_ms) {
            s_log(w, "heartbeat interval %d ms, as the broker's", (int)m.u.heartbeat.interval_ms);
            w->cfg.heartbeat_ms = (int)m.u.heartbeat.interval_ms;
        }
        return DQ_OK;
    case DQ_MSG_DRAIN:
        /* The broker's acknowledgement: no new request is on its way. */
        w->drain_acked = true;
        return DQ_OK;
    case DQ_MSG_REANNOUNCE:
        /* The broker does not know us (it restarted, or declared us dead and
         * requeued our work): what we queued is nobody's now. A broker that
         * hears several messages from us before our ready sends one
         * reannounce per message; a second ready would make it requeue what
         * it gave us meanwhile (a known worker's ready is a restart), so
         * within one heartbeat of a ready we ignore them. Should the broker
         * really have lost us again, our next heartbeat brings another. */
        if (now - w->last_ready < w->cfg.heartbeat_ms) return DQ_OK;
        s_purge(w);
        if (now - w->last_reannounce_log > (int64_t)w->cfg.heartbeat_ms * w->cfg.liveness) {
            s_log(w, "re-join %s: the broker asked us to announce again", w->cfg.broker);
            w->last_reannounce_log = now;
        }
        DQ_TRY(s_send_ready(w, err));
        if (w->draining) {
            w->drain_acked = false; /* ask the broker that now knows us */
            w->drain_sent = now;
            return s_send_simple(w, DQ_MSG_DRAIN, err);
        }
        return DQ_OK;
    case DQ_MSG_DISCONNECT:
        if (!m.u.disconnect.retry) {
            s_log(w, "the broker refused us: %s", m.u.disconnect.reason);
            return dq_fail(err, DQ_ERR_PROTO, "broker %s refused service %s: %s",
                           w->cfg.broker, w->cfg.service, m.u.disconnect.reason);
        }
        {
            char why2[DQ_MSG_ERROR_MAX + 64];
            snprintf(why2, sizeof why2, "broker disconnected us (%s)", m.u.disconnect.reason);
            s_drop(w, why2);
        }
        return DQ_OK;
    case DQ_MSG_REPLY:
        /* Only a broker's client port (frontend) answers with replies: we
         * were given the wrong endpoint, and no retry will mend that. */
        return dq_fail(err, DQ_ERR_ARG, "--broker %s is not a worker port; the broker says: %s",
                       w->cfg.broker,
                       m.u.reply.error[0] ? m.u.reply.error : "(no reason given)");
    default:
        s_log(w, "ignored a '%s' from the broker", dq_msg_type_name(m.type));
        return DQ_OK;
    }
}

/* ---- the loop -------------------------------------------------------------------- */

static int64_t s_min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* The /metrics page: the I/O thread's counters, and the compute thread's
 * forward-time histogram copied under hand_mu. */
static void s_metrics(dq_worker_t *w)
{
    dq_prom *p = &w->prom;
    char lab[256];
    dq_prom_reset(p);
    pthread_mutex_lock(&w->hand_mu);
    dq_prom_hist fwd = w->fwd;
    uint64_t forwards = w->forwards;
    pthread_mutex_unlock(&w->hand_mu);
    dq_prom_labels(lab, sizeof lab, 1, "service", w->cfg.service);
    dq_prom_family(p, "distillq_worker_forward_seconds", "histogram",
                   "Time of one compute hand-off (merged requests: one forward).");
    dq_prom_hist_write(p, "distillq_worker_forward_seconds", lab, &fwd);
    dq_prom_family(p, "distillq_worker_forwards_total", "counter", "Compute hand-offs.");
    dq_prom_sample(p, "distillq_worker_forwards_total", lab, (double)forwards);
    dq_prom_family(p, "distillq_worker_requests_total", "counter",
                   "Requests by outcome: replied (the model's reply sent), rejected (an error "
                   "reply by the worker), stale (dropped: broker gone or worker unhealthy).");
    static const char *const outcomes[3] = {"replied", "rejected", "stale"};
    const uint64_t counts[3] = {w->served, w->rejected, w->stale};
    for (int i = 0; i < 3; i++) {
        dq_prom_labels(lab, sizeof lab, 2, "service", w->cfg.service, "outcome", outcomes[i]);
        dq_prom_sample(p, "distillq_worker_requests_total", lab, (double)counts[i]);
    }
    dq_prom_labels(lab, sizeof lab, 1, "service", w->cfg.service);
    dq_prom_family(p, "distillq_worker_held", "gauge", "Requests the worker holds now.");
    dq_prom_sample(p, "distillq_worker_held", lab, s_held(w));
    dq_prom_family(p, "distillq_worker_capacity", "gauge", "Requests the worker may hold.");
    dq_prom_sample(p, "distillq_worker_capacity", lab, w->cfg.capacity);
    dq_prom_family(p, "distillq_worker_connected", "gauge",
                   "1 while joined to a broker (not draining), else 0.");
    dq_prom_sample(p, "distillq_worker_connected", lab, w->sock && !w->draining ? 1 : 0);
    if (!p->oom) w->cfg.metrics_publish(w->cfg.metrics_ctx, p->data, p->len);
}

/* One poll round: waits for the broker, the compute thread or a timer. */
static dq_status s_step(dq_worker_t *w, dq_err *err)
{
    int64_t now = dq_clock_now_ms();
    int64_t hb = w->cfg.heartbeat_ms, dead = hb * w->cfg.liveness;
    int64_t next = now + hb;
    if (w->sock) next = s_min64(s_min64(next, w->last_hb + hb), w->last_heard + dead);
    else next = s_min64(next, w->reconnect_at);
    zmq_pollitem_t items[3] = {{w->pair, 0, ZMQ_POLLIN, 0}, {w->sock, 0, ZMQ_POLLIN, 0},
                               {w->watch.mon, 0, ZMQ_POLLIN, 0}};
    int n_items = !w->sock ? 1 : w->watch.mon ? 3 : 2;
    int rc = zmq_poll(items, n_items, next > now ? (long)(next - now) : 0);
    if (rc < 0) {
        if (zmq_errno() == EINTR) return DQ_OK;
        return dq_fail(err, DQ_ERR_NET, "worker: zmq_poll: %s", zmq_strerror(zmq_errno()));
    }
    if (items[0].revents & ZMQ_POLLIN) DQ_TRY(s_on_result(w, err));
    if (w->sock) DQ_TRY(dq_curve_watch_poll(&w->watch, w->cfg.broker, err));
    if (w->sock && (items[1].revents & ZMQ_POLLIN)) {
        for (int i = 0; i < S_RECV_BURST && w->sock; i++) {
            dq_wire_parts p;
            dq_status st = dq_wire_recv(w->sock, &p, ZMQ_DONTWAIT, err);
            if (st == DQ_ERR_TIMEOUT || st == DQ_ERR_INTERRUPTED) break;
            if (st != DQ_OK) return st;
            st = s_on_broker(w, &p, err);
            dq_wire_parts_close(&p);
            if (st != DQ_OK) return st;
        }
    }
    now = dq_clock_now_ms();
    if (w->sock && now - w->last_heard >= dead) {
        char why[96];
        snprintf(why, sizeof why, "broker silent for %lld ms", (long long)(now - w->last_heard));
        s_drop(w, why);
    }
    if (!w->sock && now >= w->reconnect_at) DQ_TRY(s_join(w, "re-join", err));
    if (w->cfg.metrics_publish && now - w->last_metrics >= hb) {
        s_metrics(w);
        w->last_metrics = now;
    }
    if (w->sock && now - w->last_hb >= hb) {
        dq_err e2;
        if (s_send_simple(w, DQ_MSG_HEARTBEAT, &e2) == DQ_OK) w->last_hb = now;
    }
    return DQ_OK;
}

static dq_status s_serve(dq_worker_t *w, dq_err *err)
{
    DQ_TRY(s_join(w, "join", err));
    for (;;) {
        if (atomic_load(&w->lost)) {
            /* "device lost": a sticky device error or failing forwards alike */
            s_log(w, "unhealthy (device lost), leaving; held requests go back to the broker: %s",
                  w->lost_err.msg);
            s_leave(w, "unhealthy");
            return dq_fail(err, DQ_ERR_DEVICE, "%s", w->lost_err.msg);
        }
        sig_atomic_t stop = w->cfg.stop ? *w->cfg.stop : 0;
        if (stop >= 2) {
            s_leave(w, "second signal");
            return DQ_OK;
        }
        if (stop >= 1 && !w->draining) {
            w->draining = true;
            s_log(w, "draining: finishing %d held request(s)", s_held(w));
            w->drain_sent = dq_clock_now_ms();
            if (w->sock) DQ_TRY(s_send_simple(w, DQ_MSG_DRAIN, err));
        }
        /* Leave once the broker acknowledged the drain (so no request is
         * still on its way to us) and nothing is held; without an answer
         * within the liveness window the broker is gone or deaf: leave. */
        bool acked = w->drain_acked || !w->sock ||
                     dq_clock_now_ms() - w->drain_sent >
                         (int64_t)w->cfg.heartbeat_ms * w->cfg.liveness;
        if (w->draining && acked && s_held(w) == 0) {
            s_leave(w, "stopped");
            return DQ_OK;
        }
        DQ_TRY(s_step(w, err));
    }
}

dq_status dq_worker_run(dq_worker_t *w, dq_err *err)
{
    dq_status st = s_compute_start(w, err);
    if (st == DQ_OK) st = s_serve(w, err);
    dq_curve_watch_stop(&w->watch, w->sock);
    if (w->sock) {
        zmq_close(w->sock);
        w->sock = NULL;
    }
    s_purge(w);
    s_compute_stop(w);
    return st;
}

/* ---- construction -------------------------------------------------------------------- */

dq_status dq_worker_new_model(dq_worker_t **out, const dq_worker_config *cfg,
                              const dq_worker_model *model, dq_err *err)
{
    *out = NULL;
    dq_status st0 = DQ_OK;
    if (!cfg->broker || !cfg->service)
        st0 = dq_fail(err, DQ_ERR_ARG, "worker: broker and service are required");
    else if (cfg->capacity < 1 || cfg->heartbeat_ms < 1 || cfg->liveness < 1)
        st0 = dq_fail(err, DQ_ERR_ARG, "worker: capacity, heartbeat and liveness must be >= 1");
    dq_worker_t *w = st0 == DQ_OK ? calloc(1, sizeof *w) : NULL;
    if (!w) {
        if (model->destroy) model->destroy(model->ctx);
        return st0 != DQ_OK ? st0 : dq_fail(err, DQ_ERR_NOMEM, "worker: out of memory");
    }
    w->cfg = *cfg;
    w->model = *model;
    w->backoff_ms = S_BACKOFF_MIN_MS;
    atomic_init(&w->lost, false);
    dq_prom_hist_init_seconds(&w->fwd);
    dq_status st = DQ_OK;
    w->queue = calloc((size_t)cfg->capacity, sizeof *w->queue);
    if (!w->queue) st = dq_fail(err, DQ_ERR_NOMEM, "worker: capacity %d: out of memory",
                                cfg->capacity);
    if (st == DQ_OK) st = dq_msg_decoder_new(&w->dec, err);
    if (st == DQ_OK) {
        w->hand = calloc((size_t)cfg->capacity, sizeof *w->hand);
        w->hbufs = calloc((size_t)cfg->capacity, sizeof *w->hbufs);
        if (!w->hand || !w->hbufs)
            st = dq_fail(err, DQ_ERR_NOMEM, "worker: capacity %d: out of memory", cfg->capacity);
    }
    if (st == DQ_OK) {
        int rc = pthread_mutex_init(&w->hand_mu, NULL);
        if (rc != 0)
            st = dq_fail(err, DQ_ERR_SYSTEM, "worker: pthread_mutex_init: %s", strerror(rc));
        else
            w->hand_mu_up = true;
    }
    if (st == DQ_OK && !(w->ctx = zmq_ctx_new()))
        st = dq_fail(err, DQ_ERR_NET, "zmq_ctx_new: %s", zmq_strerror(zmq_errno()));
    if (st != DQ_OK) {
        dq_worker_destroy(&w);
        return st;
    }
    /* A random non-zero instance id for our heartbeats, and the jitter seed. */
    uint64_t r = 0;
    if (getentropy(&r, sizeof r) != 0) r = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    w->my_epoch = r ? r : 1;
    w->rnd = w->my_epoch;
    *out = w;
    return DQ_OK;
}

void dq_worker_destroy(dq_worker_t **p)
{
    if (!p || !*p) return;
    dq_worker_t *w = *p;
    dq_curve_watch_stop(&w->watch, w->sock);
    if (w->sock) zmq_close(w->sock);
    if (w->queue) s_purge(w);
    s_compute_stop(w);
    if (w->ctx) zmq_ctx_term(w->ctx);
    dq_msg_decoder_destroy(&w->dec);
    dq_msg_buf_free(&w->buf);
    for (int i = 0; w->hbufs && i < w->cfg.capacity; i++) dq_msg_buf_free(&w->hbufs[i]);
    free(w->hbufs);
    dq_prom_free(&w->prom);
    free(w->hand);
    if (w->hand_mu_up) pthread_mutex_destroy(&w->hand_mu);
    if (w->model.destroy) w->model.destroy(w->model.ctx);
    free(w->queue);
    free(w);
    *p = NULL;
}
