/* fuzz_broker.c - libFuzzer target for the broker's handling of whole
 * multi-frame messages from clients and workers (src/broker), in-process.
 *
 * For each input a fresh broker (small tables, inproc:// endpoints, a zmq
 * context of its own) runs dq_broker_run in a thread; two client and
 * two worker DEALER sockets then send what the input says, frame by frame:
 *   u8 op | frames, each u16 LE length | bytes
 * with op % 4: 0 a client sends, 1 a worker sends, 2 a worker replies to
 * the latest request the broker gave it (its ticket, then the input's
 * body), 3 only synchronise; (op >> 2) & 1 picks the client or worker and
 * ((op >> 3) & 3) + 1 is the number of frames. Synchronising is a stats
 * request answered twice in a row on a third client: the broker polls
 * workers before clients in every round, so after the second answer it has
 * handled everything sent before the first. Every stats reply must be valid
 * JSON (service and model names from the input are in it) within the
 * config's limits; at the end the broker must still answer and stop cleanly; ASan, UBSan
 * (fatal) and LeakSanitizer watch the rest: a crash, overrun, leak or hang
 * (a stats request unanswered for 10 s) keeps the input.
 * Seeds: scripted sessions of valid messages (tests/fuzz_msgs.h): a worker
 * joins, requests come and are answered, workers drain and leave.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <zmq.h>

#include "base/clock.h"
#include "broker/broker.h"
#include "fuzz_msgs.h"
#include "fuzz_util.h"
#include "proto/msg.h"

#define S_PEERS 2
#define S_MAX_WORKERS 3
#define S_MAX_QUEUE 6
#define S_MAX_INFLIGHT 6
#define S_TICKET_MAX 64

typedef struct {
    dq_broker_t *b;
    volatile sig_atomic_t stop;
    dq_status st;
} s_run;

static void *s_ctx;

static void *s_thread(void *arg)
{
    s_run *r = arg;
    dq_err err;
    r->st = dq_broker_run(r->b, &r->stop, &err);
    return NULL;
}

static void *s_dealer(const char *ep, const char *id)
{
    void *s = zmq_socket(s_ctx, ZMQ_DEALER);
    int zero = 0;
    if (!s || zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero) ||
        zmq_setsockopt(s, ZMQ_ROUTING_ID, id, strlen(id)) || zmq_connect(s, ep))
        abort();
    return s;
}

static FILE *s_devnull;

static void s_send(void *s, int n, const uint8_t *const *f, const size_t *len)
{
    for (int i = 0; i < n; i++) {
        int rc;
        do rc = zmq_send(s, f[i], len[i], (i + 1 < n ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT);
        while (rc < 0 && zmq_errno() == EINTR);
        if (rc < 0) {
            if (s_devnull == stderr)
                fprintf(stderr, "fuzz_broker: send: %s\n", zmq_strerror(zmq_errno()));
            /* a full pipe drops the message; finish a started one */
            if (i > 0) (void)zmq_send(s, "", 0, 0);
            return;
        }
    }
}

/* Stats request on the sync socket; true when answered with a JSON object
 * within 10 s. libFuzzer's SIGALRM (its -timeout watchdog) interrupts
 * blocking calls: EINTR is retried, never taken for a failure. */
static bool s_sync_once(void *sync, uint64_t id)
{
    dq_msg_buf b = {0};
    if (dq_msg_encode_stats_request(&b, id, NULL) != DQ_OK) abort();
    int rc;
    do rc = zmq_send(sync, b.data, b.len, 0);
    while (rc < 0 && zmq_errno() == EINTR);
    bool sent = rc == (int)b.len;
    dq_msg_buf_free(&b);
    if (!sent) return false;
    int64_t deadline = dq_clock_now_ms() + 10000;
    zmq_pollitem_t it = {sync, 0, ZMQ_POLLIN, 0};
    for (;;) {
        int64_t left = deadline - dq_clock_now_ms();
        if (left <= 0) return false; /* a hang */
        rc = zmq_poll(&it, 1, (long)left);
        if (rc < 0 && zmq_errno() == EINTR) continue;
        if (rc < 0) return false;
        if (rc == 0) continue;
        uint8_t buf[65536];
        int n = zmq_recv(sync, buf, sizeof buf, ZMQ_DONTWAIT);
        if (n < 0 && (zmq_errno() == EINTR || zmq_errno() == EAGAIN)) continue;
        if (n < 0) return false;
        int more = 0;
        size_t ml = sizeof more;
        zmq_getsockopt(sync, ZMQ_RCVMORE, &more, &ml);
        if (more) continue;
        static dq_msg_decoder_t *dec;
        static dq_msg m;
        if (!dec && dq_msg_decoder_new(&dec, NULL) != DQ_OK) abort();
        if (dq_msg_decode(dec, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf, &m, NULL) !=
                DQ_OK ||
            m.type != DQ_MSG_STATS_REPLY || m.u.stats_reply.req_id != id)
            continue; /* e.g. a heartbeat */
        /* valid JSON (names from the input are in it), an object, and the
         * tables within the limits of the config */
        json_error_t je;
        json_t *root = json_loadb(m.u.stats_reply.json, m.u.stats_reply.json_len, 0, &je);
        if (!root) {
            fprintf(stderr, "fuzz_broker: stats reply is not JSON: %s: %.*s\n", je.text,
                    (int)m.u.stats_reply.json_len, m.u.stats_reply.json);
            return false;
        }
        json_t *w = json_object_get(root, "workers"), *q = json_object_get(root, "queued");
        json_t *f = json_object_get(root, "in_flight");
        bool ok = json_is_object(root) && json_is_integer(w) && json_is_integer(q) &&
                  json_is_integer(f) && json_integer_value(w) <= S_MAX_WORKERS &&
                  json_integer_value(q) <= S_MAX_QUEUE && json_integer_value(f) <= S_MAX_INFLIGHT;
        json_decref(root);
        return ok;
    }
}

/* Reads what the broker sent a worker; keeps the latest request's ticket. */
static void s_drain_worker(void *w, uint8_t *ticket, size_t *tlen)
{
    for (;;) {
        zmq_msg_t f[4];
        int n = 0, more = 1;
        while (more) {
            zmq_msg_t part;
            zmq_msg_init(&part);
            int rc;
            do rc = zmq_msg_recv(&part, w, ZMQ_DONTWAIT);
            while (rc < 0 && zmq_errno() == EINTR);
            if (rc < 0) {
                zmq_msg_close(&part);
                for (int i = 0; i < n; i++) zmq_msg_close(&f[i]);
                return;
            }
            more = zmq_msg_more(&part);
            if (n < 4) f[n++] = part;
            else zmq_msg_close(&part);
        }
        if (n == 2 && zmq_msg_size(&f[0]) <= S_TICKET_MAX) { /* ticket, request */
            *tlen = zmq_msg_size(&f[0]);
            memcpy(ticket, zmq_msg_data(&f[0]), *tlen);
        }
        for (int i = 0; i < n; i++) zmq_msg_close(&f[i]);
    }
}

static void s_drain(void *s)
{
    zmq_msg_t part;
    zmq_msg_init(&part);
    while (zmq_msg_recv(&part, s, ZMQ_DONTWAIT) >= 0 || zmq_errno() == EINTR) {}
    zmq_msg_close(&part);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- seeds ---------------------------------------------------------------------- */

typedef struct {
    uint8_t b[8192];
    size_t n;
} s_seed;

static void s_op(s_seed *s, int action, int peer, int nf, const dq_msg_buf *const *bodies)
{
    s->b[s->n++] = (uint8_t)(action | peer << 2 | (nf - 1) << 3);
    for (int i = 0; i < nf; i++) {
        size_t len = bodies[i] ? bodies[i]->len : 0;
        s->b[s->n++] = (uint8_t)len, s->b[s->n++] = (uint8_t)(len >> 8);
        if (len) memcpy(s->b + s->n, bodies[i]->data, len);
        s->n += len;
    }
}

static void s_write_seeds(void)
{
    dq_msg_buf ready = {0}, req1 = {0}, req2 = {0}, rep1 = {0}, rep2 = {0}, hb = {0},
               drain = {0}, bye = {0}, stats = {0};
    fzm_ready(&ready);
    fzm_request(&req1, 1);
    fzm_request(&req2, 2);
    fzm_reply(&rep1, 1);
    fzm_reply(&rep2, 2);
    if (dq_msg_encode_heartbeat(&hb, 0, NULL) || dq_msg_encode_simple(&drain, DQ_MSG_DRAIN, NULL) ||
        dq_msg_encode_simple(&bye, DQ_MSG_GOODBYE, NULL) ||
        dq_msg_encode_stats_request(&stats, 9, NULL))
        abort();
#define B1(x) ((const dq_msg_buf *const[]){&(x)})
    s_seed s = {.n = 0};
    /* a worker joins, a request is answered, stats */
    s_op(&s, 1, 0, 1, B1(ready));
    s_op(&s, 3, 0, 1, B1(hb));
    s_op(&s, 0, 0, 1, B1(req1));
    s_op(&s, 2, 0, 1, B1(rep1));
    s_op(&s, 0, 0, 1, B1(stats));
    fz_seed("join-request-reply", s.b, s.n);
    /* two workers, two clients, a duplicate, a drain and a goodbye */
    s.n = 0;
    s_op(&s, 1, 0, 1, B1(ready));
    s_op(&s, 1, 1, 1, B1(ready));
    s_op(&s, 0, 0, 1, B1(req1));
    s_op(&s, 0, 0, 1, B1(req1));
    s_op(&s, 0, 1, 1, B1(req2));
    s_op(&s, 2, 0, 1, B1(rep1));
    s_op(&s, 1, 1, 1, B1(drain));
    s_op(&s, 2, 1, 1, B1(rep2));
    s_op(&s, 1, 1, 1, B1(bye));
    s_op(&s, 1, 0, 1, B1(hb));
    fz_seed("two-workers-drain-goodbye", s.b, s.n);
    /* requests before any worker, then one joins and leaves holding them */
    s.n = 0;
    s_op(&s, 0, 0, 1, B1(req1));
    s_op(&s, 0, 1, 1, B1(req2));
    s_op(&s, 1, 0, 1, B1(hb));
    s_op(&s, 1, 0, 1, B1(ready));
    s_op(&s, 3, 0, 1, B1(hb));
    s_op(&s, 1, 0, 1, B1(bye));
    s_op(&s, 1, 1, 1, B1(ready));
    s_op(&s, 2, 1, 1, B1(rep1));
    fz_seed("queued-then-worker-leaves", s.b, s.n);
    /* wrong frame counts on both sides */
    s.n = 0;
    s_op(&s, 0, 0, 2, (const dq_msg_buf *const[]){&req1, &req2});
    s_op(&s, 1, 0, 3, (const dq_msg_buf *const[]){&ready, &hb, &hb});
    s_op(&s, 0, 1, 1, B1(ready));
    s_op(&s, 1, 1, 2, (const dq_msg_buf *const[]){&hb, &rep1});
    fz_seed("frame-counts", s.b, s.n);
    dq_msg_buf *all[] = {&ready, &req1, &req2, &rep1, &rep2, &hb, &drain, &bye, &stats};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) dq_msg_buf_free(all[i]);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    FZ_SEEDS_THEN_EXIT(s_write_seeds);
    /* DQ_FUZZ_BROKER_LOG=1: the broker's log on stderr (to read a kept input) */
    s_devnull = getenv("DQ_FUZZ_BROKER_LOG") ? stderr : fopen("/dev/null", "w");
    if (!s_devnull) abort();
    return 0;
}

/* ---- one input ------------------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static unsigned seq;
    char fe[64], be[64];
    snprintf(fe, sizeof fe, "inproc://fzb-fe-%u", seq);
    snprintf(be, sizeof be, "inproc://fzb-be-%u", seq++);
    dq_broker_config cfg;
    dq_broker_config_defaults(&cfg);
    cfg.frontend = fe, cfg.backend = be;
    cfg.heartbeat_ms = 1000, cfg.liveness = 3, cfg.request_timeout_ms = 10000;
    cfg.max_queue = S_MAX_QUEUE, cfg.max_inflight = S_MAX_INFLIGHT, cfg.max_workers = S_MAX_WORKERS;
    cfg.max_services = 3;
    cfg.max_msg_bytes = 4096;
    cfg.log = s_devnull;
    /* A context per input: zmq_ctx_term reaps every socket of the input
     * (closed sockets of a shared context pile up against its socket
     * limit faster than its reaper frees them). */
    s_ctx = zmq_ctx_new();
    if (!s_ctx) abort();
    cfg.zmq_ctx = s_ctx;
    s_run r = {.stop = 0};
    dq_err err;
    if (dq_broker_new(&r.b, &cfg, &err) != DQ_OK) {
        fprintf(stderr, "broker: %s\n", err.msg);
        abort();
    }
    pthread_t th;
    if (pthread_create(&th, NULL, s_thread, &r) != 0) abort();
    void *cl[S_PEERS] = {s_dealer(fe, "client-0"), s_dealer(fe, "client-1")};
    void *wk[S_PEERS] = {s_dealer(be, "worker-0"), s_dealer(be, "worker-1")};
    void *sync = s_dealer(fe, "sync");
    uint8_t ticket[S_PEERS][S_TICKET_MAX];
    size_t tlen[S_PEERS] = {0, 0};
    uint64_t sync_id = 1;

    size_t i = 0;
    while (i < size) {
        uint8_t op = data[i++];
        int action = op & 3, peer = (op >> 2) & 1, nf = ((op >> 3) & 3) + 1;
        const uint8_t *f[5];
        size_t len[5];
        int k = 0;
        if (action == 2) { /* the ticket first */
            fz_check(s_sync_once(sync, sync_id++) && s_sync_once(sync, sync_id++));
            s_drain_worker(wk[peer], ticket[peer], &tlen[peer]);
            f[k] = ticket[peer], len[k++] = tlen[peer];
            nf = 1;
        }
        for (int j = 0; j < nf; j++) {
            size_t l = 0;
            if (i + 2 <= size) l = (size_t)data[i] | (size_t)data[i + 1] << 8;
            i = i + 2 <= size ? i + 2 : size;
            if (l > size - i) l = size - i;
            f[k] = data + i, len[k++] = l;
            i += l;
        }
        if (s_devnull == stderr)
            fprintf(stderr, "fuzz_broker: op %d peer %d frames %d\n", action, peer, k);
        if (action == 0) s_send(cl[peer], k, f, len);
        else if (action == 1 || action == 2) s_send(wk[peer], k, f, len);
        else fz_check(s_sync_once(sync, sync_id++) && s_sync_once(sync, sync_id++));
        for (int p = 0; p < S_PEERS; p++) {
            s_drain(cl[p]);
            s_drain_worker(wk[p], ticket[p], &tlen[p]);
        }
    }
    /* everything handled, and the broker still answers */
    fz_check(s_sync_once(sync, sync_id++) && s_sync_once(sync, sync_id++));
    r.stop = 1;
    dq_msg_buf hb = {0}; /* wakes its poll; it stops without answering */
    if (dq_msg_encode_heartbeat(&hb, 0, NULL) != DQ_OK) abort();
    (void)zmq_send(sync, hb.data, hb.len, ZMQ_DONTWAIT);
    dq_msg_buf_free(&hb);
    if (pthread_join(th, NULL) != 0) abort();
    fz_check(r.st == DQ_OK);
    for (int p = 0; p < S_PEERS; p++) zmq_close(cl[p]), zmq_close(wk[p]);
    zmq_close(sync);
    dq_broker_destroy(&r.b);
    int rc;
    do rc = zmq_ctx_term(s_ctx); /* blocks until every socket is closed */
    while (rc != 0 && zmq_errno() == EINTR);
    if (rc != 0) abort();
    s_ctx = NULL;
    return 0;
}
