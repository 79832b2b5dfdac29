/* broker_harness.c - broker process control, fake teacher workers and the
 * checking client used by test_broker (see broker_harness.h).
 *
 * Every loop here is bounded in time; every process started is tracked by
 * pid and ended by pid. Ports come from a range derived from getpid(), and a
 * broker that fails to bind (it exits) is retried on the next pair.
 */
#include "broker_harness.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "proto/wire.h"

#define H_MAX_HELD 64
#define H_MAX_N 64

static void s_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ---- broker process ----------------------------------------------------------- */

static const char *s_broker_path(char *buf, size_t cap)
{
    const char *top = getenv("top_builddir");
    snprintf(buf, cap, "%s/distillq-broker", top && *top ? top : ".");
    return buf;
}

static char *s_read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, len = 0;
    char *b = malloc(cap + 1);
    while (b) {
        size_t n = fread(b + len, 1, cap - len, f);
        len += n;
        if (len < cap) break;
        char *nb = realloc(b, 2 * cap + 1);
        if (!nb) {
            free(b);
            b = NULL;
            break;
        }
        b = nb;
        cap *= 2;
    }
    fclose(f);
    if (b) b[len] = '\0';
    return b;
}

int h_log_count(const h_broker *b, const char *needle)
{
    char *t = s_read_file(b->log_path);
    int n = 0;
    for (const char *p = t; p && (p = strstr(p, needle)); p += strlen(needle)) n++;
    free(t);
    return n;
}

bool h_log_contains(const h_broker *b, const char *needle)
{
    return h_log_count(b, needle) > 0;
}

static pid_t s_spawn_broker(h_broker *b, const char *const *extra)
{
    char path[512];
    s_broker_path(path, sizeof path);
    const char *argv[32];
    int n = 0;
    argv[n++] = path;
    argv[n++] = "--frontend";
    argv[n++] = b->frontend;
    argv[n++] = "--backend";
    argv[n++] = b->backend;
    for (int i = 0; extra && extra[i] && n < 30; i++) argv[n++] = extra[i];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(b->log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 2);
            dup2(fd, 1);
            close(fd);
        }
        execv(path, (char *const *)argv);
        _exit(127);
    }
    return pid;
}

/* Waits for the "serving" log line of a live broker; -1 if it exited. */
static int s_wait_serving(h_broker *b, int lines_before)
{
    for (int i = 0; i < 500; i++) {
        int st;
        if (waitpid(b->pid, &st, WNOHANG) == b->pid) {
            b->pid = -1;
            return -1;
        }
        if (h_log_count(b, "distillq-broker: serving clients on") > lines_before) return 0;
        s_sleep_ms(10);
    }
    return -1;
}

int h_broker_start(h_broker *b, const char *dir, bool use_ipc, const char *const *extra)
{
    static int seq; /* test-process-wide: successive brokers get fresh ports */
    for (int attempt = 0; attempt < 30; attempt++, seq++) {
        if (use_ipc) {
            snprintf(b->frontend, sizeof b->frontend, "ipc://%s/fe-%d", dir, seq);
            snprintf(b->backend, sizeof b->backend, "ipc://%s/be-%d", dir, seq);
        } else {
            int port = 20000 + (int)(getpid() % 1400) * 20 + (seq % 10) * 2;
            snprintf(b->frontend, sizeof b->frontend, "tcp://127.0.0.1:%d", port);
            snprintf(b->backend, sizeof b->backend, "tcp://127.0.0.1:%d", port + 1);
        }
        snprintf(b->log_path, sizeof b->log_path, "%s/broker-%d.log", dir, seq);
        unlink(b->log_path);
        b->pid = s_spawn_broker(b, extra);
        if (b->pid < 0) return -1;
        if (s_wait_serving(b, 0) == 0) {
            seq++;
            return 0;
        }
        if (b->pid > 0) h_broker_stop(b);
    }
    return -1;
}

int h_broker_restart(h_broker *b, const char *const *extra)
{
    int before = h_log_count(b, "distillq-broker: serving clients on");
    for (int attempt = 0; attempt < 50; attempt++) {
        b->pid = s_spawn_broker(b, extra);
        if (b->pid < 0) return -1;
        if (s_wait_serving(b, before) == 0) return 0;
        s_sleep_ms(50); /* the old listener may linger a moment */
    }
    return -1;
}

int h_broker_stop(h_broker *b)
{
    if (b->pid <= 0) return -1;
    kill(b->pid, SIGTERM);
    int st = 0;
    for (int i = 0; i < 300; i++) {
        if (waitpid(b->pid, &st, WNOHANG) == b->pid) {
            b->pid = -1;
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        s_sleep_ms(10);
    }
    kill(b->pid, SIGKILL);
    waitpid(b->pid, &st, 0);
    b->pid = -1;
    return -1;
}

/* ---- stats ----------------------------------------------------------------------- */

/* CURVE for the harness's sockets, from the environment (so that a child
 * fake worker inherits it): DQ_H_CURVE_SERVER (the broker's public cert)
 * with DQ_H_CURVE_STUDENT (clients, stats) or DQ_H_CURVE_WORKER. */
static void s_curve_opts(dq_wire_opts *o, const char *side_var)
{
    const char *srv = getenv("DQ_H_CURVE_SERVER"), *me = getenv(side_var);
    if (srv && *srv && me && *me) {
        o->curve_server_cert = srv;
        o->curve_cert = me;
    }
}

int h_stats(const char *frontend, char *out, size_t cap)
{
    int rc = -1, tmo = 2000;
    void *ctx = zmq_ctx_new(), *s = NULL;
    dq_msg_decoder_t *dec = NULL;
    dq_msg_buf buf;
    dq_msg_buf_init(&buf);
    dq_wire_opts so = {0};
    s_curve_opts(&so, "DQ_H_CURVE_STUDENT");
    if (!ctx || dq_wire_dealer_new(&s, ctx, frontend, &so, NULL) != DQ_OK ||
        zmq_setsockopt(s, ZMQ_RCVTIMEO, &tmo, sizeof tmo) ||
        dq_msg_decoder_new(&dec, NULL) != DQ_OK ||
        dq_msg_encode_stats_request(&buf, 77, NULL) != DQ_OK)
        goto done;
    if (zmq_send(s, buf.data, buf.len, 0) < 0) goto done;
    dq_wire_parts p;
    if (dq_wire_recv(s, &p, 0, NULL) != DQ_OK) goto done;
    dq_msg m;
    if (p.n == 1 && dq_msg_decode(dec, zmq_msg_data(&p.f[0]), zmq_msg_size(&p.f[0]), &m, NULL) ==
                        DQ_OK &&
        m.type == DQ_MSG_STATS_REPLY && m.u.stats_reply.req_id == 77 &&
        m.u.stats_reply.json_len < cap) {
        memcpy(out, m.u.stats_reply.json, m.u.stats_reply.json_len);
        out[m.u.stats_reply.json_len] = '\0';
        rc = 0;
    }
    dq_wire_parts_close(&p);
done:
    dq_msg_decoder_destroy(&dec);
    dq_msg_buf_free(&buf);
    if (s) zmq_close(s);
    if (ctx) zmq_ctx_term(ctx);
    return rc;
}

long long h_json_num(const char *json, const char *after, const char *key)
{
    const char *p = json;
    if (after && !(p = strstr(json, after))) return -1;
    char k[80];
    snprintf(k, sizeof k, "\"%s\": ", key);
    p = strstr(p, k);
    return p ? strtoll(p + strlen(k), NULL, 10) : -1;
}

/* ---- the fake teacher --------------------------------------------------------------- */

void h_fill(uint8_t *px, size_t bytes, uint64_t req_id)
{
    uint64_t s = req_id * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < bytes; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        px[i] = (uint8_t)(s >> 56);
    }
}

static void s_teacher(uint32_t S, float *logits, float *feat)
{
    for (int k = 0; k < 10; k++) logits[k] = (float)S + 0.25f * (float)k;
    for (int j = 0; j < 4; j++) feat[j] = (float)S * (float)(j + 1);
}

void h_worker_defaults(h_worker *w, const char *endpoint, const char *service)
{
    memset(w, 0, sizeof *w);
    snprintf(w->endpoint, sizeof w->endpoint, "%s", endpoint);
    snprintf(w->service, sizeof w->service, "%s", service);
    w->sha = H_SHA_A;
    w->c = 1, w->h = 8, w->w = 8;
    w->capacity = 2;
    w->heartbeat_ms = 100;
    w->reannounce_ok = true;
    w->max_seconds = 20;
}

typedef struct {
    uint8_t ticket[DQ_WIRE_TICKET_MAX];
    size_t tlen;
    uint64_t req_id;
    int64_t due;
    int n, n_out;
    bool feat_first, want_logits, want_feat, bad;
    uint32_t sums[H_MAX_N];
} s_held;

static void s_send_body(void *s, const dq_msg_buf *b)
{
    zmq_send(s, b->data, b->len, ZMQ_DONTWAIT);
}

static void s_ready(h_worker *w, void *s, dq_msg_buf *buf)
{
    dq_msg_ready r;
    memset(&r, 0, sizeof r);
    snprintf(r.teacher.service, sizeof r.teacher.service, "%s", w->service);
    snprintf(r.teacher.model, sizeof r.teacher.model, "fake-teacher");
    snprintf(r.teacher.sha256, sizeof r.teacher.sha256, "%s", w->sha);
    r.input[0] = w->c, r.input[1] = w->h, r.input[2] = w->w;
    r.dtypes = 1u << DQ_DTYPE_U8;
    r.n_outputs = 2;
    snprintf(r.outputs[0].name, sizeof r.outputs[0].name, "logits");
    r.outputs[0].ndim = 1, r.outputs[0].shape[0] = 10;
    snprintf(r.outputs[1].name, sizeof r.outputs[1].name, "features");
    r.outputs[1].ndim = 1, r.outputs[1].shape[0] = 4;
    r.capacity = (uint32_t)w->capacity;
    r.max_batch = w->max_batch > 0 ? (uint32_t)w->max_batch : H_MAX_N;
    dq_msg_buf_reset(buf);
    if (dq_msg_encode_ready(buf, &r, NULL) == DQ_OK) s_send_body(s, buf);
    atomic_fetch_add(&w->readies, 1);
}

/* stale: a late reply, given wrong values so a client accepting it notices. */
static void s_reply(h_worker *w, void *s, dq_msg_buf *buf, const s_held *h, bool stale)
{
    static const float zero = 0;
    float logits[H_MAX_N * 10], feat[H_MAX_N * 4];
    for (int i = 0; i < h->n; i++)
        s_teacher(h->sums[i] + (stale ? 100000u : 0u), logits + 10 * i, feat + 4 * i);
    dq_msg_reply r;
    memset(&r, 0, sizeof r);
    r.req_id = h->req_id;
    dq_msg_buf_reset(buf);
    if (h->bad) {
        dq_msg_encode_error_reply(buf, h->req_id, DQ_REPLY_BAD_REQUEST, "fake teacher: bad output",
                                  NULL);
    } else {
        r.status = DQ_REPLY_OK;
        for (int o = 0; o < h->n_out; o++) {
            bool f = (o == 0) == h->feat_first;
            dq_msg_output *x = &r.outputs[o];
            snprintf(x->name, sizeof x->name, "%s", f ? "features" : "logits");
            x->ndim = 2, x->shape[0] = h->n, x->shape[1] = f ? 4 : 10;
            x->data = h->n ? (const void *)(f ? feat : logits) : &zero;
            x->data_len = (size_t)h->n * (f ? 4 : 10) * sizeof(float);
        }
        r.n_outputs = h->n_out;
        if (w->extra_output && h->n_out < DQ_MSG_MAX_OUTPUTS) { /* a second logits */
            r.outputs[h->n_out] = r.outputs[0];
            r.n_outputs++;
        }
        r.has_teacher = true;
        snprintf(r.teacher.service, sizeof r.teacher.service, "%s", w->service);
        snprintf(r.teacher.model, sizeof r.teacher.model, "fake-teacher");
        snprintf(r.teacher.sha256, sizeof r.teacher.sha256, "%s",
                 w->reply_sha ? w->reply_sha : w->sha);
        if (dq_msg_encode_reply(buf, &r, NULL) != DQ_OK) return;
    }
    zmq_send(s, h->ticket, h->tlen, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    s_send_body(s, buf);
}

/* Records a request; false if it is not one we can hold. */
static bool s_take(s_held *h, const dq_msg_request *rq, const void *ticket, size_t tlen)
{
    if (tlen > sizeof h->ticket || rq->shape[0] > H_MAX_N) return false;
    memcpy(h->ticket, ticket, tlen);
    h->tlen = tlen;
    h->req_id = rq->req_id;
    h->n = (int)rq->shape[0];
    size_t per = rq->data_len / (size_t)h->n;
    const uint8_t *d = rq->data;
    for (int i = 0; i < h->n; i++) {
        uint32_t s = 0;
        for (size_t j = 0; j < per; j++) s += d[(size_t)i * per + j];
        h->sums[i] = s;
    }
    h->n_out = rq->n_outputs > 2 ? 2 : rq->n_outputs;
    h->bad = false;
    h->feat_first = strcmp(rq->outputs[0], "features") == 0;
    for (int o = 0; o < rq->n_outputs; o++)
        if (strcmp(rq->outputs[o], "logits") && strcmp(rq->outputs[o], "features")) h->bad = true;
    return true;
}

void h_worker_run(h_worker *w)
{
    void *ctx = zmq_ctx_new(), *s = NULL;
    dq_msg_decoder_t *dec = NULL;
    dq_msg_buf buf;
    dq_msg_buf_init(&buf);
    s_held *held = calloc(H_MAX_HELD, sizeof *held);
    dq_msg *m = malloc(sizeof *m);
    dq_wire_opts o = {.linger_ms = 200};
    s_curve_opts(&o, "DQ_H_CURVE_WORKER");
    if (!ctx || !held || !m || dq_wire_dealer_new(&s, ctx, w->endpoint, &o, NULL) != DQ_OK ||
        dq_msg_decoder_new(&dec, NULL) != DQ_OK)
        goto done;
    if (w->garbage_first) {
        zmq_send(s, "\x01\x02garbage", 9, 0);
        zmq_send(s, "a", 1, ZMQ_SNDMORE);
        zmq_send(s, "b", 1, ZMQ_SNDMORE);
        zmq_send(s, "c", 1, 0);
    }
    s_ready(w, s, &buf);
    int nheld = 0;
    bool hung = false, draining = false, drain_acked = false;
    int64_t start = dq_clock_now_ms(), next_hb = start + w->heartbeat_ms, hung_since = 0;
    for (int64_t now = start; now - start < (int64_t)w->max_seconds * 1000; now = dq_clock_now_ms()) {
        if (atomic_load(&w->stop)) {
            if (!w->graceful || hung) break;
            if (!draining) {
                dq_msg_buf_reset(&buf);
                dq_msg_encode_simple(&buf, DQ_MSG_DRAIN, NULL);
                s_send_body(s, &buf);
                draining = true;
            }
            /* goodbye once the broker acked the drain (nothing more will
             * come) and all held work is answered; bounded if no ack comes */
            if (nheld == 0 && (drain_acked || now - start > (int64_t)w->max_seconds * 1000 - 1000)) {
                dq_msg_buf_reset(&buf);
                dq_msg_encode_simple(&buf, DQ_MSG_GOODBYE, NULL);
                s_send_body(s, &buf);
                break;
            }
        }
        zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
        zmq_poll(&it, 1, 5);
        dq_wire_parts p;
        while (dq_wire_recv(s, &p, ZMQ_DONTWAIT, NULL) == DQ_OK) {
            const zmq_msg_t *body = &p.f[p.n - 1];
            /* A hung worker still takes requests (they sit in its socket
             * buffer in real life) but answers nothing, not even heartbeats. */
            bool ok = p.n == p.total &&
                      dq_msg_decode(dec, zmq_msg_data((zmq_msg_t *)body),
                                    zmq_msg_size((zmq_msg_t *)body), m, NULL) == DQ_OK;
            if (ok && p.n == 2 && m->type == DQ_MSG_REQUEST && nheld < H_MAX_HELD &&
                s_take(&held[nheld], &m->u.request, zmq_msg_data(&p.f[0]), zmq_msg_size(&p.f[0]))) {
                held[nheld].due = now + w->delay_ms;
                nheld++;
                int mh = atomic_load(&w->max_held);
                if (nheld > mh) atomic_store(&w->max_held, nheld);
                int got = atomic_fetch_add(&w->received, 1) + 1;
                if (w->hang_after && got >= w->hang_after) {
                    hung = true;
                    hung_since = now;
                }
            } else if (ok && !hung && p.n == 1 && m->type == DQ_MSG_REANNOUNCE &&
                       w->reannounce_ok) {
                s_ready(w, s, &buf);
            } else if (ok && p.n == 1 && m->type == DQ_MSG_DRAIN) {
                drain_acked = true;
            } else if (ok && !hung && p.n == 1 && m->type == DQ_MSG_DISCONNECT) {
                atomic_fetch_add(&w->disconnects, 1);
            }
            dq_wire_parts_close(&p);
        }
        now = dq_clock_now_ms();
        if (hung) {
            if ((w->late_after_ms && now - hung_since >= w->late_after_ms) ||
                (w->late_on_release && atomic_load(&w->release_late))) {
                if (w->rejoin_late) s_ready(w, s, &buf);
                for (int i = 0; i < nheld; i++) s_reply(w, s, &buf, &held[i], true);
                atomic_fetch_add(&w->late_sent, nheld);
                s_sleep_ms(300); /* stay connected while the broker reads them */
                break;
            }
            if (w->hang_heartbeats && now >= next_hb) { /* alive, but not computing */
                dq_msg_buf_reset(&buf);
                dq_msg_encode_heartbeat(&buf, 0, NULL);
                s_send_body(s, &buf);
                next_hb = now + w->heartbeat_ms;
            }
            continue;
        }
        for (int i = 0; i < nheld;) {
            if (held[i].due <= now) {
                /* counted before the send: a client that has every reply
                 * must find every one counted */
                atomic_fetch_add(&w->served, 1);
                s_reply(w, s, &buf, &held[i], false);
                held[i] = held[--nheld]; /* order among held ones is irrelevant */
            } else {
                i++;
            }
        }
        if (now >= next_hb) {
            dq_msg_buf_reset(&buf);
            dq_msg_encode_heartbeat(&buf, 0, NULL);
            s_send_body(s, &buf);
            next_hb = now + w->heartbeat_ms;
        }
    }
done:
    free(held);
    free(m);
    dq_msg_decoder_destroy(&dec);
    dq_msg_buf_free(&buf);
    if (s) zmq_close(s);
    if (ctx) zmq_ctx_term(ctx);
}

static void *s_worker_thread(void *arg)
{
    h_worker_run(arg);
    return NULL;
}

int h_worker_start(h_worker *w)
{
    w->started = pthread_create(&w->th, NULL, s_worker_thread, w) == 0;
    return w->started ? 0 : -1;
}

void h_worker_wait(h_worker *w)
{
    if (w->started) pthread_join(w->th, NULL);
    w->started = false;
}

void h_worker_join(h_worker *w)
{
    atomic_store(&w->stop, 1);
    h_worker_wait(w);
}

pid_t h_worker_spawn(const char *argv0, const char *endpoint, const char *service, int capacity,
                     int delay_ms)
{
    (void)argv0;
    char cap[16], delay[16];
    snprintf(cap, sizeof cap, "%d", capacity);
    snprintf(delay, sizeof delay, "%d", delay_ms);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/proc/self/exe", "fake-worker", "--fake-worker", endpoint, service, cap, delay,
              (char *)NULL);
        _exit(127);
    }
    return pid;
}

bool h_child_main(int argc, char **argv)
{
    if (argc != 6 || strcmp(argv[1], "--fake-worker") != 0) return false;
    h_worker w;
    h_worker_defaults(&w, argv[2], argv[3]);
    w.capacity = atoi(argv[4]);
    w.delay_ms = atoi(argv[5]);
    h_worker_run(&w);
    return true;
}

/* ---- the checking client -------------------------------------------------------------- */

void h_client_defaults(h_client *c, const char *frontend, const char *service)
{
    memset(c, 0, sizeof *c);
    c->frontend = frontend;
    c->service = service;
    c->c = 1, c->h = 8, c->w = 8, c->n = 4;
    c->total = 100;
    c->inflight = 16;
    c->timeout_ms = 8000;
    c->first_id = 1;
}

/* Checks an ok reply against the fake teacher; true if every value matches. */
static bool s_check(const h_client *c, const dq_msg_reply *r, uint8_t *px)
{
    size_t per = (size_t)c->c * c->h * c->w;
    h_fill(px, per * c->n, r->req_id);
    const dq_msg_output *lo = dq_msg_reply_output(r, "logits");
    if (!lo || lo->ndim != 2 || lo->shape[0] != c->n || lo->shape[1] != 10) return false;
    float got[H_MAX_N * 10], want[10], feat[4];
    dq_msg_f32_copy(got, lo->data, (size_t)c->n * 10);
    for (int i = 0; i < c->n; i++) {
        uint32_t S = 0;
        for (size_t j = 0; j < per; j++) S += px[(size_t)i * per + j];
        s_teacher(S, want, feat);
        if (memcmp(got + 10 * i, want, sizeof want) != 0) return false;
    }
    return r->has_teacher;
}

void h_client_run(h_client *c)
{
    void *ctx = zmq_ctx_new(), *s = NULL;
    dq_msg_decoder_t *dec = NULL;
    dq_msg_buf buf;
    dq_msg_buf_init(&buf);
    size_t bytes = (size_t)c->n * c->c * c->h * c->w;
    uint8_t *px = malloc(bytes), *chk = malloc(bytes);
    uint8_t *got = calloc((size_t)c->total + 1, 1);
    dq_msg *m = malloc(sizeof *m);
    c->in_order = true;
    dq_wire_opts o = {.linger_ms = 0};
    s_curve_opts(&o, "DQ_H_CURVE_STUDENT");
    if (!ctx || !px || !chk || !got || !m ||
        dq_wire_dealer_new(&s, ctx, c->frontend, &o, NULL) != DQ_OK ||
        dq_msg_decoder_new(&dec, NULL) != DQ_OK) {
        c->missing = c->total;
        goto done;
    }
    int sent = 0, outstanding = 0, answered = 0, expect_next = 0;
    int64_t deadline = dq_clock_now_ms() + c->timeout_ms, quiet_until = -1;
    for (;;) {
        int64_t now = dq_clock_now_ms();
        if (answered == c->total && quiet_until < 0) quiet_until = now + c->after_ms;
        if (now >= deadline || (quiet_until >= 0 && now >= quiet_until)) break;
        while (outstanding < c->inflight && sent < c->total) {
            dq_msg_request rq;
            memset(&rq, 0, sizeof rq);
            rq.req_id = c->first_id + (uint64_t)sent;
            snprintf(rq.service, sizeof rq.service, "%s", c->service);
            if (c->name) snprintf(rq.client, sizeof rq.client, "%s", c->name);
            rq.dtype = DQ_DTYPE_U8;
            rq.shape[0] = c->n, rq.shape[1] = c->c, rq.shape[2] = c->h, rq.shape[3] = c->w;
            h_fill(px, bytes, rq.req_id);
            rq.data = px;
            rq.data_len = bytes;
            rq.n_outputs = 1;
            snprintf(rq.outputs[0], sizeof rq.outputs[0], "logits");
            dq_msg_buf_reset(&buf);
            if (dq_msg_encode_request(&buf, &rq, NULL) != DQ_OK ||
                zmq_send(s, buf.data, buf.len, 0) < 0)
                goto done;
            sent++;
            outstanding++;
        }
        zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
        zmq_poll(&it, 1, 20);
        dq_wire_parts p;
        while (dq_wire_recv(s, &p, ZMQ_DONTWAIT, NULL) == DQ_OK) {
            if (p.n != 1 || dq_msg_decode(dec, zmq_msg_data(&p.f[0]), zmq_msg_size(&p.f[0]), m,
                                          NULL) != DQ_OK || m->type != DQ_MSG_REPLY) {
                c->wrong++;
                dq_wire_parts_close(&p);
                continue;
            }
            const dq_msg_reply *r = &m->u.reply;
            uint64_t idx = r->req_id - c->first_id;
            if (r->req_id < c->first_id || idx >= (uint64_t)c->total || (int)idx >= sent) {
                c->unknown++;
            } else if (got[idx]) {
                c->dup++;
            } else {
                got[idx] = 1;
                answered++;
                outstanding--;
                if ((int)idx != expect_next) c->in_order = false;
                expect_next = (int)idx + 1;
                c->status_count[r->status]++;
                if (r->status == DQ_REPLY_OK) {
                    if (s_check(c, r, chk)) c->ok++;
                    else c->wrong++;
                    snprintf(c->teacher_service, sizeof c->teacher_service, "%s",
                             r->teacher.service);
                } else {
                    c->errors++;
                    snprintf(c->last_error, sizeof c->last_error, "%s", r->error);
                }
                if (c->on_progress) c->on_progress(c->arg, answered);
            }
            dq_wire_parts_close(&p);
        }
    }
    c->missing = c->total - answered;
done:
    free(px);
    free(chk);
    free(got);
    free(m);
    dq_msg_decoder_destroy(&dec);
    dq_msg_buf_free(&buf);
    if (s) zmq_close(s);
    if (ctx) zmq_ctx_term(ctx);
}
