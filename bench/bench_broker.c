/* bench_broker.c - what reliability costs: one client and one echo worker on
 * loopback, three ways in one run:
 *   direct  - the client's DEALER talks to the worker's ROUTER;
 *   proxy   - through zmq_proxy(ROUTER, DEALER), the cheapest broker there
 *             is (no heartbeats, no credits, no requeue, no decoding);
 *   broker  - through dq_broker (the library distillq-broker runs), with the
 *             worker speaking protocol v1 (ready, tickets, heartbeats);
 * with 1 and 16 requests in flight, and with the worker side over tcp:// or
 * ipc://. Fashion-MNIST batches: 128 u8 images of 28x28 (100,352 B) up,
 * 128x10 f32 logits (5,120 B) down. The worker does the same work in every
 * mode (decode the request, encode a reply), so the differences are the hops.
 * Prints req/s, MB/s (both directions) and median/p99 latency per config.
 *
 * The machine is shared, so the whole set runs --rounds times interleaved
 * and each number is the median over rounds.
 *
 * usage: bench_broker [--requests N] [--warmup N] [--rounds R] (not in make check)
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "broker/broker.h"
#include "proto/curve.h"
#include "proto/msg.h"
#include "proto/wire.h"

enum { M_DIRECT, M_PROXY, M_BROKER, M_CURVE, M_COUNT };
static const char *const s_mode_names[] = {"direct", "zmq_proxy", "distillq-broker",
                                           "broker+CURVE"};

/* CURVE keys of the broker+CURVE mode (issue 12): made once in the run's
 * directory with dq_curve_keygen; the worker over tcp only. */
typedef struct {
    char server_pub[512], server_sec[512], student_sec[600], worker_sec[600];
    char students[256], workers[256];
    dq_curve_cert server;
    dq_curve_allow allow_students, allow_workers;
    dq_broker_curve bc;
} s_keys;
static s_keys s_k;

#define N_IMG 128
#define IMG 784
#define N_CLS 10

typedef struct {
    int mode;
    char endpoint[160];       /* the worker binds (direct) or connects here */
    atomic_int stop;
    atomic_int ready;
} s_worker_arg;

static double s_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* ---- the echo worker ------------------------------------------------------------ */

static void s_send_ready(void *s, dq_msg_buf *buf)
{
    dq_msg_ready r;
    memset(&r, 0, sizeof r);
    snprintf(r.teacher.service, sizeof r.teacher.service, "bench");
    snprintf(r.teacher.model, sizeof r.teacher.model, "echo");
    memset(r.teacher.sha256, 'a', DQ_MSG_SHA256_HEX);
    r.input[0] = 1, r.input[1] = 28, r.input[2] = 28;
    r.dtypes = 1u << DQ_DTYPE_U8;
    r.n_outputs = 1;
    snprintf(r.outputs[0].name, sizeof r.outputs[0].name, "logits");
    r.outputs[0].ndim = 1, r.outputs[0].shape[0] = N_CLS;
    r.capacity = 32;
    dq_msg_buf_reset(buf);
    if (dq_msg_encode_ready(buf, &r, NULL) == DQ_OK) zmq_send(s, buf->data, buf->len, 0);
}

static void *s_worker(void *argp)
{
    s_worker_arg *a = argp;
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, a->mode == M_DIRECT ? ZMQ_ROUTER : ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    if (a->mode == M_CURVE &&
        dq_curve_client_apply(s, s_k.server_pub, s_k.worker_sec, 0, NULL) != DQ_OK)
        exit(1);
    int rc = a->mode == M_DIRECT ? zmq_bind(s, a->endpoint) : zmq_connect(s, a->endpoint);
    if (rc != 0) {
        fprintf(stderr, "bench worker: %s: %s\n", a->endpoint, zmq_strerror(zmq_errno()));
        exit(1);
    }
    dq_msg_decoder_t *dec = NULL;
    if (dq_msg_decoder_new(&dec, NULL) != DQ_OK) exit(1);
    dq_msg_buf buf;
    dq_msg_buf_init(&buf);
    dq_msg *m = malloc(sizeof *m);
    dq_msg_reply *rep = calloc(1, sizeof *rep);
    float *logits = calloc(N_IMG * N_CLS, sizeof(float));
    if (!m || !rep || !logits) exit(1);
    rep->status = DQ_REPLY_OK;
    rep->n_outputs = 1;
    snprintf(rep->outputs[0].name, sizeof rep->outputs[0].name, "logits");
    rep->outputs[0].ndim = 2;
    rep->outputs[0].shape[0] = N_IMG, rep->outputs[0].shape[1] = N_CLS;
    rep->outputs[0].data = logits;
    rep->outputs[0].data_len = N_IMG * N_CLS * sizeof(float);
    rep->has_teacher = true;
    snprintf(rep->teacher.service, sizeof rep->teacher.service, "bench");
    snprintf(rep->teacher.model, sizeof rep->teacher.model, "echo");
    memset(rep->teacher.sha256, 'a', DQ_MSG_SHA256_HEX);
    if (a->mode >= M_BROKER) s_send_ready(s, &buf);
    atomic_store(&a->ready, 1);
    double next_hb = s_now_us() + 1e6;
    while (!atomic_load(&a->stop)) {
        zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
        zmq_poll(&it, 1, 100);
        dq_wire_parts p;
        while (dq_wire_recv(s, &p, ZMQ_DONTWAIT, NULL) == DQ_OK) {
            zmq_msg_t *body = &p.f[p.n - 1];
            if (dq_msg_decode(dec, zmq_msg_data(body), zmq_msg_size(body), m, NULL) == DQ_OK &&
                m->type == DQ_MSG_REQUEST) {
                rep->req_id = m->u.request.req_id;
                logits[0] = (float)((const uint8_t *)m->u.request.data)[0];
                dq_msg_buf_reset(&buf);
                dq_msg_encode_reply(&buf, rep, NULL);
                /* echo the envelope (client id / ticket), then the reply */
                for (int i = 0; i < p.n - 1; i++)
                    zmq_send(s, zmq_msg_data(&p.f[i]), zmq_msg_size(&p.f[i]), ZMQ_SNDMORE);
                zmq_send(s, buf.data, buf.len, 0);
            }
            dq_wire_parts_close(&p);
        }
        if (a->mode >= M_BROKER && s_now_us() >= next_hb) {
            dq_msg_buf_reset(&buf);
            dq_msg_encode_heartbeat(&buf, 0, NULL);
            zmq_send(s, buf.data, buf.len, 0);
            next_hb = s_now_us() + 1e6;
        }
    }
    free(m);
    free(rep);
    free(logits);
    dq_msg_buf_free(&buf);
    dq_msg_decoder_destroy(&dec);
    zmq_close(s);
    zmq_ctx_term(ctx);
    return NULL;
}

/* ---- the brokers -------------------------------------------------------------------- */

typedef struct {
    char fe[160], be[160];
    void *ctx, *control;
    volatile sig_atomic_t stop;
    dq_broker_t *broker;
} s_mid;

static void *s_proxy(void *argp)
{
    s_mid *x = argp;
    void *f = zmq_socket(x->ctx, ZMQ_ROUTER), *b = zmq_socket(x->ctx, ZMQ_DEALER);
    void *c = zmq_socket(x->ctx, ZMQ_PAIR);
    if (zmq_bind(f, x->fe) || zmq_bind(b, x->be) || zmq_connect(c, "inproc://bench-control")) {
        fprintf(stderr, "proxy bind: %s\n", zmq_strerror(zmq_errno()));
        exit(1);
    }
    zmq_proxy_steerable(f, b, NULL, c);
    int zero = 0;
    zmq_setsockopt(f, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(b, ZMQ_LINGER, &zero, sizeof zero);
    zmq_close(f);
    zmq_close(b);
    zmq_close(c);
    return NULL;
}

static void *s_broker(void *argp)
{
    s_mid *x = argp;
    dq_err err = {{0}};
    if (dq_broker_run(x->broker, &x->stop, &err) != DQ_OK) fprintf(stderr, "broker: %s\n", err.msg);
    return NULL;
}

/* ---- the client ----------------------------------------------------------------------- */

static int s_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct {
    double rps, mbps, p50, p99;
} s_result;

static int s_client(const char *ep, bool curve, int inflight, int warmup, int total,
                    s_result *res)
{
    void *ctx = zmq_ctx_new(), *s = NULL;
    dq_wire_opts o = {0};
    if (curve) o.curve_server_cert = s_k.server_pub, o.curve_cert = s_k.student_sec;
    if (dq_wire_dealer_new(&s, ctx, ep, &o, NULL) != DQ_OK) return -1;
    dq_msg_decoder_t *dec = NULL;
    dq_msg_buf req;
    dq_msg_buf_init(&req);
    dq_msg *m = malloc(sizeof *m);
    uint8_t *px = malloc(N_IMG * IMG);
    double *sent_at = calloc((size_t)(warmup + total), sizeof(double));
    double *lat = calloc((size_t)total, sizeof(double));
    if (dq_msg_decoder_new(&dec, NULL) != DQ_OK || !m || !px || !sent_at || !lat) return -1;
    for (int i = 0; i < N_IMG * IMG; i++) px[i] = (uint8_t)(i * 31);
    dq_msg_request r;
    memset(&r, 0, sizeof r);
    snprintf(r.service, sizeof r.service, "bench");
    r.dtype = DQ_DTYPE_U8;
    r.shape[0] = N_IMG, r.shape[1] = 1, r.shape[2] = 28, r.shape[3] = 28;
    r.data = px, r.data_len = N_IMG * IMG;
    r.n_outputs = 1;
    snprintf(r.outputs[0], sizeof r.outputs[0], "logits");
    int n = warmup + total, sent = 0, done = 0, bad = 0;
    size_t up = 0, down = 0;
    double t0 = 0, deadline = s_now_us() + 120e6;
    while (done < n && s_now_us() < deadline) {
        while (sent < n && sent - done < inflight) {
            r.req_id = (uint64_t)sent + 1;
            dq_msg_buf_reset(&req);
            dq_msg_encode_request(&req, &r, NULL);
            sent_at[sent] = s_now_us();
            zmq_send(s, req.data, req.len, 0);
            up = req.len;
            sent++;
        }
        dq_wire_parts p;
        if (dq_wire_recv(s, &p, 0, NULL) != DQ_OK) continue;
        double now = s_now_us();
        if (dq_msg_decode(dec, zmq_msg_data(&p.f[0]), zmq_msg_size(&p.f[0]), m, NULL) == DQ_OK &&
            m->type == DQ_MSG_REPLY && m->u.reply.status == DQ_REPLY_OK &&
            m->u.reply.req_id >= 1 && m->u.reply.req_id <= (uint64_t)sent) {
            int i = (int)m->u.reply.req_id - 1;
            if (i >= warmup) lat[i - warmup] = now - sent_at[i];
            down = zmq_msg_size(&p.f[0]);
        } else {
            bad++;
        }
        dq_wire_parts_close(&p);
        done++;
        if (done == warmup) t0 = s_now_us();
    }
    double el = (s_now_us() - t0) / 1e6;
    qsort(lat, (size_t)total, sizeof(double), s_cmp);
    res->rps = total / el;
    res->mbps = (double)total * (double)(up + down) / el / 1e6;
    res->p50 = lat[total / 2];
    res->p99 = lat[(int)(total * 0.99)];
    free(m);
    free(px);
    free(sent_at);
    free(lat);
    dq_msg_buf_free(&req);
    dq_msg_decoder_destroy(&dec);
    zmq_close(s);
    zmq_ctx_term(ctx);
    return done == n && bad == 0 ? 0 : -1;
}

/* ---- one configuration ------------------------------------------------------------------ */

static int s_run(int mode, bool worker_ipc, const char *dir, int port, int warmup, int total,
                 s_result res[2])
{
    s_worker_arg wa;
    memset(&wa, 0, sizeof wa);
    wa.mode = mode;
    s_mid mid;
    memset(&mid, 0, sizeof mid);
    snprintf(mid.fe, sizeof mid.fe, "tcp://127.0.0.1:%d", port);
    if (worker_ipc) snprintf(mid.be, sizeof mid.be, "ipc://%s/be-%d", dir, port);
    else snprintf(mid.be, sizeof mid.be, "tcp://127.0.0.1:%d", port + 1);
    const char *client_ep = mid.fe;
    pthread_t tm = 0, tw;
    if (mode == M_DIRECT) {
        snprintf(wa.endpoint, sizeof wa.endpoint, "%s", worker_ipc ? mid.be : mid.fe);
        client_ep = wa.endpoint;
    } else {
        snprintf(wa.endpoint, sizeof wa.endpoint, "%s", mid.be);
        mid.ctx = zmq_ctx_new();
        if (mode == M_CURVE) zmq_ctx_set(mid.ctx, ZMQ_IO_THREADS, 2); /* as distillq-broker does */
        if (mode == M_PROXY) {
            mid.control = zmq_socket(mid.ctx, ZMQ_PAIR);
            zmq_bind(mid.control, "inproc://bench-control");
            pthread_create(&tm, NULL, s_proxy, &mid);
        } else {
            dq_broker_config cfg;
            dq_broker_config_defaults(&cfg);
            cfg.frontend = mid.fe, cfg.backend = mid.be, cfg.zmq_ctx = mid.ctx;
            if (mode == M_CURVE) cfg.curve = &s_k.bc;
            dq_err err = {{0}};
            if (dq_broker_new(&mid.broker, &cfg, &err) != DQ_OK) {
                fprintf(stderr, "bench: %s\n", err.msg);
                return -1;
            }
            pthread_create(&tm, NULL, s_broker, &mid);
        }
    }
    pthread_create(&tw, NULL, s_worker, &wa);
    while (!atomic_load(&wa.ready)) usleep(1000);
    usleep(100000); /* connections up, the worker announced */
    bool curve = mode == M_CURVE;
    int rc = s_client(client_ep, curve, 1, warmup, total / 2, &res[0]);
    if (!rc) rc = s_client(client_ep, curve, 16, warmup, total, &res[1]);
    atomic_store(&wa.stop, 1);
    pthread_join(tw, NULL);
    if (mode == M_PROXY) {
        zmq_send(mid.control, "TERMINATE", 9, 0);
        pthread_join(tm, NULL);
        zmq_close(mid.control);
    } else if (mode == M_BROKER || mode == M_CURVE) {
        mid.stop = 1;
        pthread_join(tm, NULL);
        dq_broker_destroy(&mid.broker);
    }
    if (mid.ctx) zmq_ctx_term(mid.ctx);
    if (worker_ipc) unlink(mid.be + strlen("ipc://"));
    return rc;
}

/* Keys for the CURVE mode: broker, one student, one worker. */
static int s_make_keys(const char *dir)
{
    dq_err err = {{0}};
    char p[520];
    snprintf(s_k.students, sizeof s_k.students, "%s/students", dir);
    snprintf(s_k.workers, sizeof s_k.workers, "%s/workers", dir);
    if (mkdir(s_k.students, 0700) || mkdir(s_k.workers, 0700)) return -1;
    snprintf(s_k.server_pub, sizeof s_k.server_pub, "%s/broker", dir);
    snprintf(s_k.server_sec, sizeof s_k.server_sec, "%s/broker_secret", dir);
    snprintf(p, sizeof p, "%s/student", s_k.students);
    snprintf(s_k.student_sec, sizeof s_k.student_sec, "%s_secret", p);
    if (dq_curve_keygen(s_k.server_pub, &err) || dq_curve_keygen(p, &err)) goto fail;
    snprintf(p, sizeof p, "%s/worker", s_k.workers);
    snprintf(s_k.worker_sec, sizeof s_k.worker_sec, "%s_secret", p);
    if (dq_curve_keygen(p, &err) || dq_curve_cert_load(&s_k.server, s_k.server_sec, true, &err) ||
        dq_curve_allow_load(&s_k.allow_students, s_k.students, &err) ||
        dq_curve_allow_load(&s_k.allow_workers, s_k.workers, &err))
        goto fail;
    s_k.bc.server = s_k.server;
    s_k.bc.students = &s_k.allow_students;
    s_k.bc.workers = &s_k.allow_workers;
    return 0;
fail:
    fprintf(stderr, "bench: keys: %s\n", err.msg);
    return -1;
}

static double s_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, s_cmp);
    return v[n / 2];
}

#define MAX_ROUNDS 9

int main(int argc, char **argv)
{
    int total = 3000, warmup = 300, rounds = 3;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--requests")) total = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--warmup")) warmup = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--rounds")) rounds = atoi(argv[i + 1]);
    }
    if (total < 100) total = 100;
    if (rounds < 1) rounds = 1;
    if (rounds > MAX_ROUNDS) rounds = MAX_ROUNDS;
    char dir[] = "/tmp/dq-bench-broker-XXXXXX";
    if (!mkdtemp(dir)) return 1;
    int port = 40000 + (int)(getpid() % 1000) * 10;
    printf("broker overhead: %d x u8 1x28x28 up (%d B), %dx%d f32 down; %d requests at 16 "
           "in flight, %d at 1; median of %d interleaved rounds\n",
           N_IMG, N_IMG * IMG, N_IMG, N_CLS, total, total / 2, rounds);
    if (s_make_keys(dir) != 0) return 1;
    static s_result all[MAX_ROUNDS][2][M_COUNT][2];
    for (int round = 0; round < rounds; round++)
        for (int ipc = 0; ipc < 2; ipc++)
            for (int mode = 0; mode < (ipc ? M_CURVE : M_COUNT); mode++) {
                if (s_run(mode, ipc, dir, port, warmup, total, all[round][ipc][mode]) != 0) {
                    fprintf(stderr, "bench: %s failed\n", s_mode_names[mode]);
                    return 1;
                }
                port += 2;
            }
    printf("%-16s %-8s %8s | %9s %8s %9s %9s\n", "path", "workers", "inflight", "req/s", "MB/s",
           "p50 us", "p99 us");
    s_result base[2][M_COUNT][2];
    for (int ipc = 0; ipc < 2; ipc++) {
        for (int mode = 0; mode < (ipc ? M_CURVE : M_COUNT); mode++) {
            s_result *r = base[ipc][mode];
            for (int k = 0; k < 2; k++) {
                double v[4][MAX_ROUNDS];
                for (int i = 0; i < rounds; i++) {
                    const s_result *x = &all[i][ipc][mode][k];
                    v[0][i] = x->rps, v[1][i] = x->mbps, v[2][i] = x->p50, v[3][i] = x->p99;
                }
                r[k].rps = s_median(v[0], rounds), r[k].mbps = s_median(v[1], rounds);
                r[k].p50 = s_median(v[2], rounds), r[k].p99 = s_median(v[3], rounds);
                printf("%-16s %-8s %8d | %9.0f %8.0f %9.0f %9.0f\n", s_mode_names[mode],
                       ipc ? "ipc" : "tcp", k ? 16 : 1, r[k].rps, r[k].mbps, r[k].p50, r[k].p99);
            }
        }
        const s_result *p = base[ipc][M_PROXY], *b = base[ipc][M_BROKER];
        printf("  workers over %s: broker/proxy throughput at 16 in flight %.1f %% (target >= 90 "
               "%%), median latency at 1 in flight %+.0f us (target <= +50 us)\n",
               ipc ? "ipc" : "tcp", 100.0 * b[1].rps / p[1].rps, b[0].p50 - p[0].p50);
        if (!ipc) {
            const s_result *c = base[0][M_CURVE];
            printf("  CURVE (both sides, tcp): throughput at 16 in flight %.1f %% of the plain "
                   "broker (target >= 85 %%), at 1 in flight %.1f %%\n",
                   100.0 * c[1].rps / b[1].rps, 100.0 * c[0].rps / b[0].rps);
        }
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "bench: could not remove %s\n", dir);
    return 0;
}
