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
 * and each number is the median over rounds. Wall clock on a loaded machine
 * says little, so each config also reports the CPU time (user+sys, from the
 * per-thread CPU clocks) that the client, the broker and the worker spent
 * per request in the timed part, each with its libzmq I/O threads: that is
 * where CURVE's cost shows whatever the load.
 *
 * The "busiest" column is the CPU per request of the broker's busiest
 * thread (its loop or one libzmq I/O thread): with a free core for each
 * thread, the broker cannot serve more than 1e6 / busiest requests a
 * second, whatever the load here; the CURVE line compares those ceilings.
 *
 * usage: bench_broker [--requests N] [--warmup N] [--rounds R] [--inflight K]
 *                     [--clients C] [--workers W] [--io-threads N] [--curve]
 *                     (not in make check)
 * --inflight K: the deep level (default 16; a student keeps its batches in
 * flight), from each of C clients (1) to W workers (1; direct mode: 1);
 * --io-threads N: the brokers' libzmq I/O threads (default as
 * distillq-broker: dq_broker_io_threads); --curve: only the plain and the
 * CURVE broker over tcp, the issue-12 comparison.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/syscall.h>
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

/* ---- CPU time per part ----------------------------------------------------------
 * The client, the broker and the worker live in this one process, each with
 * a libzmq context whose I/O threads do the TCP and CURVE work. A part's
 * threads are the ones that appear while it starts (its own thread and its
 * context's); their CPU clocks are read at the start and the end of the
 * timed part. Linux's per-thread CPU clock id for a tid is what glibc's
 * pthread_getcpuclockid builds: (~tid << 3) | CPUCLOCK_PERTHREAD | SCHED. */

enum { P_CLIENT, P_BROKER, P_WORKER, P_COUNT };
#define S_MAX_TIDS 64

typedef struct {
    int n[P_COUNT];
    pid_t tid[P_COUNT][S_MAX_TIDS];
} s_tids;

static int s_list_tids(pid_t *out, int max)
{
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < max)
        if (e->d_name[0] != '.') out[n++] = (pid_t)atoi(e->d_name);
    closedir(d);
    return n;
}

/* Adds to part the threads in now[] that were not in before[]. */
static void s_tids_add_new(s_tids *t, int part, const pid_t *before, int nb)
{
    pid_t now[256];
    int nn = s_list_tids(now, 256);
    for (int i = 0; i < nn; i++) {
        bool old = false;
        for (int j = 0; j < nb && !old; j++) old = now[i] == before[j];
        for (int p = 0; p < P_COUNT && !old; p++)
            for (int j = 0; j < t->n[p] && !old; j++) old = now[i] == t->tid[p][j];
        if (!old && t->n[part] < S_MAX_TIDS) t->tid[part][t->n[part]++] = now[i];
    }
}

static double s_thread_cpu_us(pid_t tid)
{
    clockid_t c = (clockid_t)((~(unsigned)tid << 3) | 6u);
    struct timespec ts;
    if (clock_gettime(c, &ts) != 0) return 0; /* gone: counted up to here */
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static void s_cpu_read(const s_tids *t, double out[P_COUNT])
{
    for (int p = 0; p < P_COUNT; p++) {
        out[p] = 0;
        for (int i = 0; i < t->n[p]; i++) out[p] += s_thread_cpu_us(t->tid[p][i]);
    }
}

/* DQ_BENCH_THREADS=1: each thread's CPU per request, with its name (libzmq
 * names its I/O threads ZMQbg/IO/N), to see which thread is the bottleneck. */
static void s_threads_read(const s_tids *t, double out[P_COUNT][S_MAX_TIDS])
{
    for (int p = 0; p < P_COUNT; p++)
        for (int i = 0; i < t->n[p]; i++) out[p][i] = s_thread_cpu_us(t->tid[p][i]);
}

static void s_threads_print(const s_tids *t, double before[P_COUNT][S_MAX_TIDS], int total,
                            int inflight)
{
    static const char *const part[P_COUNT] = {"client", "broker", "worker"};
    for (int p = 0; p < P_COUNT; p++)
        for (int i = 0; i < t->n[p]; i++) {
            char path[64], comm[32] = "?";
            snprintf(path, sizeof path, "/proc/self/task/%d/comm", (int)t->tid[p][i]);
            FILE *f = fopen(path, "r");
            if (f) {
                if (!fgets(comm, sizeof comm, f)) snprintf(comm, sizeof comm, "?");
                fclose(f);
                comm[strcspn(comm, "\n")] = 0;
            }
            fprintf(stderr, "  inflight %2d %-6s tid %-7d %-14s %7.1f us/req\n", inflight,
                    part[p], (int)t->tid[p][i], comm,
                    (s_thread_cpu_us(t->tid[p][i]) - before[p][i]) / total);
        }
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
    double cpu_us[P_COUNT]; /* CPU time per request in the timed part */
    double busiest_us;      /* the broker's busiest thread, CPU per request: with free
                             * cores its throughput is at most 1e6 / busiest_us */
} s_result;

/* One client: its own context and DEALER, `inflight` requests kept in
 * flight, `warmup` replies, then the timed `total`. Several clients run as
 * threads in step: all connect (bar), all finish their warmup (bar, the
 * caller starts the clock and the CPU clocks), all finish (bar, the caller
 * stops them while the threads still exist), then they close. */
typedef struct {
    const char *ep;
    bool curve;
    int inflight, warmup, total;
    pthread_barrier_t *bar;
    double *lat;     /* total entries, this client's share of the latencies */
    size_t up, down; /* bytes of one request, one reply */
    int rc;
} s_client_arg;

static void *s_client(void *argp)
{
    s_client_arg *a = argp;
    a->rc = -1;
    void *ctx = zmq_ctx_new(), *s = NULL;
    dq_wire_opts o = {0};
    if (a->curve) o.curve_server_cert = s_k.server_pub, o.curve_cert = s_k.student_sec;
    if (dq_wire_dealer_new(&s, ctx, a->ep, &o, NULL) != DQ_OK) exit(1);
    dq_msg_decoder_t *dec = NULL;
    dq_msg_buf req;
    dq_msg_buf_init(&req);
    dq_msg *m = malloc(sizeof *m);
    uint8_t *px = malloc(N_IMG * IMG);
    double *sent_at = calloc((size_t)(a->warmup + a->total), sizeof(double));
    if (dq_msg_decoder_new(&dec, NULL) != DQ_OK || !m || !px || !sent_at) exit(1);
    for (int i = 0; i < N_IMG * IMG; i++) px[i] = (uint8_t)(i * 31);
    dq_msg_request r;
    memset(&r, 0, sizeof r);
    snprintf(r.service, sizeof r.service, "bench");
    r.dtype = DQ_DTYPE_U8;
    r.shape[0] = N_IMG, r.shape[1] = 1, r.shape[2] = 28, r.shape[3] = 28;
    r.data = px, r.data_len = N_IMG * IMG;
    r.n_outputs = 1;
    snprintf(r.outputs[0], sizeof r.outputs[0], "logits");
    pthread_barrier_wait(a->bar); /* connected */
    int warmup = a->warmup, n = warmup + a->total, sent = 0, done = 0, bad = 0;
    double deadline = s_now_us() + 120e6;
    while (done < n && s_now_us() < deadline) {
        while (sent < n && sent - done < a->inflight) {
            r.req_id = (uint64_t)sent + 1;
            dq_msg_buf_reset(&req);
            dq_msg_encode_request(&req, &r, NULL);
            sent_at[sent] = s_now_us();
            zmq_send(s, req.data, req.len, 0);
            a->up = req.len;
            sent++;
        }
        dq_wire_parts p;
        if (dq_wire_recv(s, &p, 0, NULL) != DQ_OK) continue;
        double now = s_now_us();
        if (dq_msg_decode(dec, zmq_msg_data(&p.f[0]), zmq_msg_size(&p.f[0]), m, NULL) == DQ_OK &&
            m->type == DQ_MSG_REPLY && m->u.reply.status == DQ_REPLY_OK &&
            m->u.reply.req_id >= 1 && m->u.reply.req_id <= (uint64_t)sent) {
            int i = (int)m->u.reply.req_id - 1;
            if (i >= warmup) a->lat[i - warmup] = now - sent_at[i];
            a->down = zmq_msg_size(&p.f[0]);
        } else {
            bad++;
        }
        dq_wire_parts_close(&p);
        done++;
        if (done == warmup) pthread_barrier_wait(a->bar); /* steady: the clock starts */
    }
    if (done < warmup) pthread_barrier_wait(a->bar);
    pthread_barrier_wait(a->bar); /* done: the clock stops */
    pthread_barrier_wait(a->bar); /* the CPU clocks are read */
    free(m);
    free(px);
    free(sent_at);
    dq_msg_buf_free(&req);
    dq_msg_decoder_destroy(&dec);
    zmq_close(s);
    zmq_ctx_term(ctx);
    a->rc = done == n && bad == 0 ? 0 : -1;
    return NULL;
}

#define S_MAX_CLIENTS 16
#define S_MAX_WORKERS 16

/* Runs n clients of `inflight` each, `total` timed requests in all. */
static int s_clients(const char *ep, bool curve, int n, int inflight, int warmup, int total,
                     s_tids *tids, s_result *res)
{
    pid_t before[256];
    int nb = s_list_tids(before, 256);
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, (unsigned)n + 1);
    s_client_arg a[S_MAX_CLIENTS];
    pthread_t th[S_MAX_CLIENTS];
    int each = total / n;
    total = each * n;
    double *lat = calloc((size_t)total, sizeof(double));
    if (!lat) return -1;
    for (int i = 0; i < n; i++) {
        a[i] = (s_client_arg){.ep = ep, .curve = curve, .inflight = inflight, .warmup = warmup,
                              .total = each, .bar = &bar, .lat = lat + (size_t)i * each};
        pthread_create(&th[i], NULL, s_client, &a[i]);
    }
    pthread_barrier_wait(&bar); /* all connected: their threads are there */
    s_tids t = *tids;
    t.n[P_CLIENT] = 0;
    s_tids_add_new(&t, P_CLIENT, before, nb);
    double cpu0[P_COUNT], cpu1[P_COUNT], th0[P_COUNT][S_MAX_TIDS];
    pthread_barrier_wait(&bar); /* all past warmup */
    double t0 = s_now_us();
    s_cpu_read(&t, cpu0);
    s_threads_read(&t, th0);
    pthread_barrier_wait(&bar); /* all done */
    double el = (s_now_us() - t0) / 1e6;
    s_cpu_read(&t, cpu1);
    if (getenv("DQ_BENCH_THREADS")) s_threads_print(&t, th0, total, inflight);
    pthread_barrier_wait(&bar);
    int rc = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        rc |= a[i].rc;
    }
    pthread_barrier_destroy(&bar);
    for (int p = 0; p < P_COUNT; p++) res->cpu_us[p] = (cpu1[p] - cpu0[p]) / total;
    res->busiest_us = 0;
    for (int i = 0; i < t.n[P_BROKER]; i++) {
        double us = (s_thread_cpu_us(t.tid[P_BROKER][i]) - th0[P_BROKER][i]) / total;
        if (us > res->busiest_us) res->busiest_us = us;
    }
    qsort(lat, (size_t)total, sizeof(double), s_cmp);
    res->rps = total / el;
    res->mbps = (double)total * (double)(a[0].up + a[0].down) / el / 1e6;
    res->p50 = lat[total / 2];
    res->p99 = lat[(int)(total * 0.99)];
    free(lat);
    return rc;
}

/* ---- one configuration ------------------------------------------------------------------ */

typedef struct {
    int inflight, clients, workers, io_threads; /* the deep level's shape */
} s_shape;

static int s_run(int mode, bool worker_ipc, const char *dir, int port, int warmup, int total,
                 const s_shape *sh, s_result res[2])
{
    int nw = mode == M_DIRECT ? 1 : sh->workers; /* direct: the client's one peer */
    s_tids tids;
    memset(&tids, 0, sizeof tids);
    pid_t before[256];
    int nb = s_list_tids(before, 256);
    s_worker_arg wa[S_MAX_WORKERS];
    memset(wa, 0, sizeof wa);
    for (int i = 0; i < nw; i++) wa[i].mode = mode;
    s_mid mid;
    memset(&mid, 0, sizeof mid);
    snprintf(mid.fe, sizeof mid.fe, "tcp://127.0.0.1:%d", port);
    if (worker_ipc) snprintf(mid.be, sizeof mid.be, "ipc://%s/be-%d", dir, port);
    else snprintf(mid.be, sizeof mid.be, "tcp://127.0.0.1:%d", port + 1);
    const char *client_ep = mid.fe;
    pthread_t tm = 0, tw[S_MAX_WORKERS];
    if (mode == M_DIRECT) {
        snprintf(wa[0].endpoint, sizeof wa[0].endpoint, "%s", worker_ipc ? mid.be : mid.fe);
        client_ep = wa[0].endpoint;
    } else {
        for (int i = 0; i < nw; i++) snprintf(wa[i].endpoint, sizeof wa[i].endpoint, "%s", mid.be);
        mid.ctx = zmq_ctx_new();
        /* as distillq-broker does (dq_broker_io_threads), or --io-threads N */
        if (mode == M_BROKER || mode == M_CURVE) {
            int io = sh->io_threads ? sh->io_threads : dq_broker_io_threads(mode == M_CURVE);
            zmq_ctx_set(mid.ctx, ZMQ_IO_THREADS, io);
        }
        if (mode == M_PROXY) {
            mid.control = zmq_socket(mid.ctx, ZMQ_PAIR);
            zmq_bind(mid.control, "inproc://bench-control");
            pthread_create(&tm, NULL, s_proxy, &mid);
            usleep(50000); /* its sockets made: its threads are there */
            s_tids_add_new(&tids, P_BROKER, before, nb);
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
            usleep(50000);
            s_tids_add_new(&tids, P_BROKER, before, nb);
        }
    }
    for (int i = 0; i < nw; i++) {
        pthread_create(&tw[i], NULL, s_worker, &wa[i]);
        while (!atomic_load(&wa[i].ready)) usleep(1000);
    }
    usleep(100000); /* connections up, the workers announced */
    s_tids_add_new(&tids, P_WORKER, before, nb);
    bool curve = mode == M_CURVE;
    int rc = s_clients(client_ep, curve, 1, 1, warmup, total / 2, &tids, &res[0]);
    if (!rc)
        rc = s_clients(client_ep, curve, sh->clients, sh->inflight, warmup, total, &tids, &res[1]);
    for (int i = 0; i < nw; i++) atomic_store(&wa[i].stop, 1);
    for (int i = 0; i < nw; i++) pthread_join(tw[i], NULL);
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

static bool s_mode_on(bool curve_only, int ipc, int mode)
{
    if (curve_only) return !ipc && (mode == M_BROKER || mode == M_CURVE);
    return mode < (ipc ? M_CURVE : M_COUNT);
}

static void s_usage(FILE *f)
{
    fprintf(f,
"usage: bench_broker [--requests N] [--warmup N] [--rounds R] [--inflight K]\n"
"                    [--clients C] [--workers W] [--io-threads N] [--curve]\n"
"\n"
"What the broker costs: one echo worker behind direct DEALER/ROUTER, zmq_proxy\n"
"and distillq-broker (tcp and ipc), at 1 and K (16) requests in flight from each\n"
"of C (1, at most %d) clients to W (1, at most %d) workers; N (3000) timed\n"
"requests after N (300) warm-up ones, median of R (3, at most %d) interleaved\n"
"rounds. --io-threads: the brokers' libzmq I/O threads (default: as\n"
"distillq-broker). --curve: only the plain and the CURVE broker over tcp\n"
"(issue 12's comparison). Prints req/s, MB/s, latency and CPU per request.\n",
            S_MAX_CLIENTS, S_MAX_WORKERS, MAX_ROUNDS);
}

/* A whole number in [lo, hi] from --NAME's argument, or -1 with a message. */
static int s_arg_int(const char *name, const char *arg, int lo, int hi)
{
    char *end;
    long v = strtol(arg, &end, 10);
    if (end == arg || *end || v < lo || v > hi) {
        fprintf(stderr, "bench_broker: --%s: expected a whole number in [%d, %d], not '%s'\n",
                name, lo, hi, arg);
        return -1;
    }
    return (int)v;
}

int main(int argc, char **argv)
{
    int total = 3000, warmup = 300, rounds = 3;
    s_shape sh = {.inflight = 16, .clients = 1, .workers = 1, .io_threads = 0};
    bool curve_only = false;
    static const struct option opts[] = {
        {"requests", required_argument, 0, 'n'}, {"warmup", required_argument, 0, 'w'},
        {"rounds", required_argument, 0, 'r'}, {"inflight", required_argument, 0, 'k'},
        {"clients", required_argument, 0, 'c'}, {"workers", required_argument, 0, 'W'},
        {"io-threads", required_argument, 0, 'i'}, {"curve", no_argument, 0, 'C'},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int ch, idx;
    while ((ch = getopt_long(argc, argv, "", opts, &idx)) != -1) {
        int *to = NULL, lo = 1, hi = 1 << 24;
        switch (ch) {
        case 'n': to = &total; lo = 100; break;
        case 'w': to = &warmup; break;
        case 'r': to = &rounds; hi = MAX_ROUNDS; break;
        case 'k': to = &sh.inflight; hi = 4096; break;
        case 'c': to = &sh.clients; hi = S_MAX_CLIENTS; break;
        case 'W': to = &sh.workers; hi = S_MAX_WORKERS; break;
        case 'i': to = &sh.io_threads; hi = 64; break;
        case 'C': curve_only = true; break;
        case 'h': s_usage(stdout); return 0;
        default: s_usage(stderr); return 2;
        }
        if (to && (*to = s_arg_int(opts[idx].name, optarg, lo, hi)) < 0) return 2;
    }
    if (optind < argc) {
        fprintf(stderr, "bench_broker: unexpected argument '%s' (try --help)\n", argv[optind]);
        return 2;
    }
    int inflight = sh.inflight;
    char io_str[16] = "default";
    if (sh.io_threads) snprintf(io_str, sizeof io_str, "%d", sh.io_threads);
    char dir[] = "/tmp/dq-bench-broker-XXXXXX";
    if (!mkdtemp(dir)) return 1;
    /* below Linux's ephemeral range, where outgoing connections take ports */
    int port = 20000 + (int)(getpid() % 100) * 120;
    printf("broker overhead: %d x u8 1x28x28 up (%d B), %dx%d f32 down; %d requests from %d "
           "client(s) at %d in flight each to %d worker(s) (broker I/O threads: %s), %d at 1; "
           "median of %d interleaved rounds\n", N_IMG, N_IMG * IMG, N_IMG, N_CLS, total,
           sh.clients, inflight, sh.workers, io_str,
           total / 2, rounds);
    if (s_make_keys(dir) != 0) return 1;
    static s_result all[MAX_ROUNDS][2][M_COUNT][2];
    for (int round = 0; round < rounds; round++)
        for (int ipc = 0; ipc < 2; ipc++)
            for (int mode = 0; mode < M_COUNT; mode++) {
                if (!s_mode_on(curve_only, ipc, mode)) continue;
                if (s_run(mode, ipc, dir, port, warmup, total, &sh,
                          all[round][ipc][mode]) != 0) {
                    fprintf(stderr, "bench: %s failed\n", s_mode_names[mode]);
                    return 1;
                }
                port += 2;
            }
    printf("%-16s %-8s %8s | %9s %8s %9s %9s | %29s | %7s\n", "path", "workers", "inflight",
           "req/s", "MB/s", "p50 us", "p99 us", "CPU us/req client broker worker", "busiest");
    s_result base[2][M_COUNT][2];
    for (int ipc = 0; ipc < 2; ipc++) {
        for (int mode = 0; mode < M_COUNT; mode++) {
            if (!s_mode_on(curve_only, ipc, mode)) continue;
            s_result *r = base[ipc][mode];
            for (int k = 0; k < 2; k++) {
                double v[5 + P_COUNT][MAX_ROUNDS];
                for (int i = 0; i < rounds; i++) {
                    const s_result *x = &all[i][ipc][mode][k];
                    v[0][i] = x->rps, v[1][i] = x->mbps, v[2][i] = x->p50, v[3][i] = x->p99;
                    for (int p = 0; p < P_COUNT; p++) v[4 + p][i] = x->cpu_us[p];
                    v[4 + P_COUNT][i] = x->busiest_us;
                }
                r[k].rps = s_median(v[0], rounds), r[k].mbps = s_median(v[1], rounds);
                r[k].p50 = s_median(v[2], rounds), r[k].p99 = s_median(v[3], rounds);
                for (int p = 0; p < P_COUNT; p++) r[k].cpu_us[p] = s_median(v[4 + p], rounds);
                r[k].busiest_us = s_median(v[4 + P_COUNT], rounds);
                printf("%-16s %-8s %8d | %9.0f %8.0f %9.0f %9.0f | %11.0f %7.0f %7.0f | %7.0f\n",
                       s_mode_names[mode], ipc ? "ipc" : "tcp", k ? inflight : 1, r[k].rps,
                       r[k].mbps, r[k].p50, r[k].p99, r[k].cpu_us[P_CLIENT],
                       r[k].cpu_us[P_BROKER], r[k].cpu_us[P_WORKER], r[k].busiest_us);
            }
        }
        const s_result *p = base[ipc][M_PROXY], *b = base[ipc][M_BROKER];
        if (!curve_only)
            printf("  workers over %s: broker/proxy throughput at %d in flight %.1f %% (target >= "
                   "90 %%), median latency at 1 in flight %+.0f us (target <= +50 us)\n",
                   ipc ? "ipc" : "tcp", inflight, 100.0 * b[1].rps / p[1].rps,
                   b[0].p50 - p[0].p50);
        if (!ipc) {
            const s_result *c = base[0][M_CURVE];
            printf("  CURVE (both sides, tcp): throughput at %d in flight %.1f %% of the plain "
                   "broker (target >= 85 %%), at 1 in flight %.1f %%\n",
                   inflight, 100.0 * c[1].rps / b[1].rps, 100.0 * c[0].rps / b[0].rps);
            printf("  CURVE, the broker's busiest thread at %d in flight: %.0f us a request vs %.0f "
                   "us plain: with free cores CURVE's ceiling is %.1f %% of plain's\n", inflight,
                   c[1].busiest_us, b[1].busiest_us, 100.0 * b[1].busiest_us / c[1].busiest_us);
            printf("  CURVE CPU per request at %d in flight: broker %.0f us vs %.0f us plain "
                   "(%.2fx), all parts %.0f us vs %.0f us (%.2fx)\n", inflight,
                   c[1].cpu_us[P_BROKER], b[1].cpu_us[P_BROKER],
                   c[1].cpu_us[P_BROKER] / b[1].cpu_us[P_BROKER],
                   c[1].cpu_us[0] + c[1].cpu_us[1] + c[1].cpu_us[2],
                   b[1].cpu_us[0] + b[1].cpu_us[1] + b[1].cpu_us[2],
                   (c[1].cpu_us[0] + c[1].cpu_us[1] + c[1].cpu_us[2]) /
                       (b[1].cpu_us[0] + b[1].cpu_us[1] + b[1].cpu_us[2]));
        }
        if (curve_only) break;
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "bench: could not remove %s\n", dir);
    return 0;
}
