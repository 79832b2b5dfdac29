/* test_curve.c - CURVE authentication and encryption of the teacher
 * service (issue 12 section 1), on the real distillq-broker with fake
 * workers (tests/broker_harness.c, which takes its keys from DQ_H_CURVE_*)
 * and the real client library:
 *   - distillq-keygen's files: modes, both keys, readable by czmq's zcert;
 *   - listed keys are served, and named by their file names in the stats;
 *   - an unlisted student key gets no service but a clear DQ_ERR_AUTH
 *     within the timeout, and the broker logs the refusal;
 *   - a student's key cannot join as a worker; a wrong server key is an
 *     error too, not a silent hang, and the broker logs it;
 *   - a plain client at a CURVE broker, and a CURVE client at a plain one,
 *     get an error saying so, not a timeout; the CURVE broker logs it;
 *   - the bytes on the wire are not the plaintext: a TCP relay between the
 *     client and the broker scans the stream for the request's pixels, and
 *     does see them when the broker runs without CURVE;
 *   - a worker SIGKILLed mid-run under CURVE: every request answered once,
 *     correctly (the requeue path with encrypted connections);
 *   - without CURVE the broker refuses a non-loopback bind unless --insecure;
 *   - the frontend's and the backend's crypto run on different I/O threads
 *     (ZMQ_AFFINITY halves): with --io-threads 2, one student and one worker
 *     each thread does a fair part of the work (left to libzmq, both
 *     connections landed on one thread in every run: 0 and 11-13 ticks).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>
#ifdef HAVE_CZMQ
#include <czmq.h>
#endif

#include "broker_harness.h"
#include "base/clock.h"
#include "client/client.h"
#include "proto/curve.h"

typedef struct {
    char dir[64];
    char keys[128], students[128], workers[128];
    char server_pub[192], server_sec[192], s1_sec[192], w1_sec[192], intruder_sec[192],
        other_pub[192];
    char args_buf[6][192];
    const char *args[16];
    h_broker b;
    h_worker w;
    bool w_started;
    pid_t child;
    char json[16384];
} fixture;

static void s_path(char *out, size_t cap, const char *dir, const char *name)
{
    snprintf(out, cap, "%s/%s", dir, name);
}

/* keys/: broker, s1, w1, intruder, other; students/ holds s1, workers/ w1. */
static int s_setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/dq-test-curve-XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    s_path(f->keys, sizeof f->keys, f->dir, "keys");
    s_path(f->students, sizeof f->students, f->dir, "students");
    s_path(f->workers, sizeof f->workers, f->dir, "workers");
    if (mkdir(f->keys, 0700) || mkdir(f->students, 0755) || mkdir(f->workers, 0755)) return -1;
    const char *names[] = {"broker", "s1", "w1", "intruder", "other"};
    for (int i = 0; i < 5; i++) {
        char p[192];
        s_path(p, sizeof p, f->keys, names[i]);
        if (dq_curve_keygen(p, NULL) != DQ_OK) return -1;
    }
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "cp %s/s1 %s/ && cp %s/w1 %s/", f->keys, f->students, f->keys,
             f->workers);
    if (system(cmd) != 0) return -1;
    s_path(f->server_pub, sizeof f->server_pub, f->keys, "broker");
    s_path(f->server_sec, sizeof f->server_sec, f->keys, "broker_secret");
    s_path(f->s1_sec, sizeof f->s1_sec, f->keys, "s1_secret");
    s_path(f->w1_sec, sizeof f->w1_sec, f->keys, "w1_secret");
    s_path(f->intruder_sec, sizeof f->intruder_sec, f->keys, "intruder_secret");
    s_path(f->other_pub, sizeof f->other_pub, f->keys, "other");
    *state = f;
    return 0;
}

static void s_env_clear(void)
{
    unsetenv("DQ_H_CURVE_SERVER");
    unsetenv("DQ_H_CURVE_STUDENT");
    unsetenv("DQ_H_CURVE_WORKER");
}

static int s_after(void **state)
{
    fixture *f = *state;
    if (f->w_started) h_worker_join(&f->w);
    f->w_started = false;
    if (f->child > 0) {
        kill(f->child, SIGKILL);
        waitpid(f->child, NULL, 0);
        f->child = 0;
    }
    if (f->b.pid > 0) h_broker_stop(&f->b);
    f->b.pid = 0;
    s_env_clear();
    return 0;
}

static int s_teardown(void **state)
{
    fixture *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    if (system(cmd) != 0) return -1;
    free(f);
    return 0;
}

/* A CURVE broker (the harness's clients and workers use s1 and w1), with
 * --io-threads io unless NULL. */
static void s_start_curve_io(fixture *f, const char *io)
{
    setenv("DQ_H_CURVE_SERVER", f->server_pub, 1);
    setenv("DQ_H_CURVE_STUDENT", f->s1_sec, 1);
    setenv("DQ_H_CURVE_WORKER", f->w1_sec, 1);
    int n = 0;
    const char *a[] = {"--heartbeat-ms", "100", "--request-timeout-ms", "5000", "--curve-cert",
                       f->server_sec, "--allow-students", f->students, "--allow-workers",
                       f->workers};
    for (size_t i = 0; i < sizeof a / sizeof a[0]; i++) f->args[n++] = a[i];
    if (io) f->args[n++] = "--io-threads", f->args[n++] = io;
    f->args[n] = NULL;
    if (h_broker_start(&f->b, f->dir, false, f->args) != 0) fail_msg("CURVE broker did not start");
}

static void s_start_curve(fixture *f)
{
    s_start_curve_io(f, NULL);
}

static void s_start_worker(fixture *f)
{
    h_worker_defaults(&f->w, f->b.backend, "fm");
    f->w.delay_ms = 1;
    assert_int_equal(h_worker_start(&f->w), 0);
    f->w_started = true;
    for (int i = 0; i < 300; i++) {
        if (h_stats(f->b.frontend, f->json, sizeof f->json) == 0 &&
            h_json_num(f->json, NULL, "workers") == 1)
            return;
        usleep(10000);
    }
    fail_msg("the worker did not join");
}

/* One request of 64 pixels carrying the text pattern, through the client
 * library with the given CURVE files (NULL: plain); returns its status and
 * the time it took in *ms. */
#define S_PATTERN "DQ-PLAINTEXT-PIXELS-"
static dq_status s_one_request(const char *ep, const char *server_cert, const char *cert,
                               int timeout_ms, int64_t *ms, dq_err *err)
{
    dq_client_opts o;
    dq_client_opts_default(&o);
    o.curve_server_cert = server_cert;
    o.curve_cert = cert;
    o.heartbeat_ms = 200;
    dq_client_t *c = NULL;
    uint8_t px[64];
    for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)S_PATTERN[i % strlen(S_PATTERN)];
    const char *outs[] = {"logits"};
    dq_client_request rq = {.req_id = 1, .service = "fm", .dtype = DQ_DTYPE_U8,
                            .shape = {1, 1, 8, 8}, .data = px, .n_outputs = 1, .outputs = outs};
    int64_t t0 = dq_clock_now_ms();
    dq_status st = dq_client_new(&c, ep, &o, err);
    if (st == DQ_OK) st = dq_client_send(c, &rq, err);
    dq_client_reply rep;
    if (st == DQ_OK) st = dq_client_recv(c, &rep, timeout_ms, err);
    if (st == DQ_OK) st = dq_client_reply_status(&rep, err);
    *ms = dq_clock_now_ms() - t0;
    dq_client_destroy(&c);
    return st;
}

/* Whether the broker's log gets a line containing needle within 2 s. */
static bool s_log_within(fixture *f, const char *needle)
{
    for (int i = 0; i < 200; i++) {
        if (h_log_contains(&f->b, needle)) return true;
        usleep(10000);
    }
    return false;
}

static void test_keygen_files(void **state)
{
    fixture *f = *state;
    struct stat sp, ss;
    assert_int_equal(stat(f->server_pub, &sp), 0);
    assert_int_equal(stat(f->server_sec, &ss), 0);
    assert_int_equal(ss.st_mode & 0777, 0600);
    assert_int_equal(sp.st_mode & 0600, 0600);
    dq_curve_cert pub, sec;
    dq_err err = {{0}};
    assert_int_equal(dq_curve_cert_load(&pub, f->server_pub, false, &err), DQ_OK);
    assert_int_equal(dq_curve_cert_load(&sec, f->server_sec, true, &err), DQ_OK);
    assert_string_equal(pub.public_key, sec.public_key);
    assert_string_equal(pub.secret_key, "");
    assert_int_equal((int)strlen(sec.secret_key), 40);
    assert_string_equal(sec.name, "broker");
    /* the public file has no secret: loading it as one fails, naming it */
    assert_int_equal(dq_curve_cert_load(&pub, f->server_pub, true, &err), DQ_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "secret"));
    /* never overwritten */
    char p[192];
    s_path(p, sizeof p, f->keys, "broker");
    assert_int_equal(dq_curve_keygen(p, &err), DQ_ERR_ARG);
    /* the program */
    const char *top = getenv("top_builddir");
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s/distillq-keygen %s/keys/prog >/dev/null && test -f "
             "%s/keys/prog_secret", top && *top ? top : ".", f->dir, f->dir);
    assert_int_equal(system(cmd), 0);
#ifdef HAVE_CZMQ
    zcert_t *z = zcert_load(f->server_sec);
    assert_non_null(z);
    assert_string_equal(zcert_public_txt(z), sec.public_key);
    assert_string_equal(zcert_secret_txt(z), sec.secret_key);
    zcert_destroy(&z);
    /* and czmq's own certificate reads with ours */
    z = zcert_new();
    snprintf(p, sizeof p, "%s/keys/czmq", f->dir);
    assert_int_equal(zcert_save(z, p), 0);
    snprintf(p, sizeof p, "%s/keys/czmq_secret", f->dir);
    assert_int_equal(dq_curve_cert_load(&sec, p, true, &err), DQ_OK);
    assert_string_equal(sec.public_key, zcert_public_txt(z));
    assert_string_equal(sec.secret_key, zcert_secret_txt(z));
    zcert_destroy(&z);
#else
    print_message("# czmq not installed: czmq interoperability not checked\n");
#endif
}

static void test_listed_keys_served_and_named(void **state)
{
    fixture *f = *state;
    s_start_curve(f);
    s_start_worker(f);
    h_client c;
    h_client_defaults(&c, f->b.frontend, "fm");
    c.total = 200, c.inflight = 16;
    h_client_run(&c);
    assert_int_equal(c.ok, 200);
    assert_int_equal(c.wrong + c.dup + c.missing, 0);
    assert_int_equal(h_stats(f->b.frontend, f->json, sizeof f->json), 0);
    assert_non_null(strstr(f->json, "\"id\": \"w1@"));         /* the worker's key name */
    assert_non_null(strstr(f->json, "\"clients\": [{\"name\": \"s1\""));
    assert_int_equal(h_json_num(f->json, "\"name\": \"s1\"", "dispatched"), 200);
    assert_true(h_log_contains(&f->b, "CURVE on"));
    assert_true(h_log_contains(&f->b, "worker w1@"));
}

static void test_unlisted_key_refused_clearly(void **state)
{
    fixture *f = *state;
    s_start_curve(f);
    s_start_worker(f);
    dq_err err = {{0}};
    int64_t ms = 0;
    /* the listed student is served through the library too */
    assert_int_equal(s_one_request(f->b.frontend, f->server_pub, f->s1_sec, 5000, &ms, &err),
                     DQ_OK);
    dq_status st = s_one_request(f->b.frontend, f->server_pub, f->intruder_sec, 5000, &ms, &err);
    assert_int_equal(st, DQ_ERR_AUTH);
    assert_true(ms < 3000);
    assert_non_null(strstr(err.msg, "refused our CURVE key"));
    assert_true(h_log_contains(&f->b, "refused students connection from 127.0.0.1"));
    assert_true(h_log_contains(&f->b, "key not in --allow-students"));
    assert_int_equal(h_stats(f->b.frontend, f->json, sizeof f->json), 0);
    assert_true(h_json_num(f->json, NULL, "auth_refused") >= 1);
    assert_int_equal(h_json_num(f->json, "\"name\": \"fm\"", "served"), 1);
    /* a wrong server key: an error within the timeout, not a hang */
    st = s_one_request(f->b.frontend, f->other_pub, f->s1_sec, 5000, &ms, &err);
    assert_int_equal(st, DQ_ERR_AUTH);
    assert_true(ms < 3000);
    assert_non_null(strstr(err.msg, "curve-server-cert"));
    /* ... which the broker names too, though ZAP never saw it */
    assert_true(s_log_within(f, "handshake failed on the frontend: its CURVE handshake did not "
                             "decrypt"));
}

/* A peer on the other mechanism fails at the greeting, before any key: a
 * plain client at a CURVE broker and a CURVE client at a plain broker each
 * get DQ_ERR_AUTH saying so, well within the request timeout (before, the
 * plain client resent into silence until its timeout), and the CURVE broker
 * logs and counts a plain peer.
 * Which end sees the mismatch is a race (the first to see it drops the
 * connection, and the other may see only the drop; a socket that saw it
 * does not reconnect), so the broker's side is checked with fresh plain
 * DEALERs until one loses the race (up to 5 s; usually the first); and a
 * CURVE client that saw only drops says "wrong --curve-server-cert ..., or
 * a broker without CURVE" (1 run in 5 here). */
static void test_other_mechanism_named(void **state)
{
    fixture *f = *state;
    dq_err err = {{0}};
    int64_t ms = 0;
    s_start_curve(f);
    s_start_worker(f);
    dq_status st = s_one_request(f->b.frontend, NULL, NULL, 5000, &ms, &err);
    assert_int_equal(st, DQ_ERR_AUTH);
    assert_true(ms < 3000);
    assert_non_null(strstr(err.msg, "requires CURVE"));
    assert_non_null(strstr(err.msg, f->b.frontend));
    const char *line = "handshake failed on the frontend: the peer does not use CURVE";
    for (int i = 0; i < 50 && !h_log_contains(&f->b, line); i++) {
        void *ctx = zmq_ctx_new(), *d = zmq_socket(ctx, ZMQ_DEALER);
        int linger = 0;
        assert_int_equal(zmq_setsockopt(d, ZMQ_LINGER, &linger, sizeof linger), 0);
        assert_int_equal(zmq_connect(d, f->b.frontend), 0);
        usleep(100000);
        zmq_close(d);
        zmq_ctx_term(ctx);
    }
    assert_true(s_log_within(f, line));
    assert_int_equal(h_stats(f->b.frontend, f->json, sizeof f->json), 0);
    assert_true(h_json_num(f->json, NULL, "handshake_failed") >= 1);
    assert_int_equal(h_json_num(f->json, NULL, "auth_refused"), 0);
    s_after(state);
    static const char *const plain[] = {"--heartbeat-ms", "100", NULL};
    if (h_broker_start(&f->b, f->dir, false, plain) != 0) fail_msg("broker did not start");
    st = s_one_request(f->b.frontend, f->server_pub, f->s1_sec, 5000, &ms, &err);
    assert_int_equal(st, DQ_ERR_AUTH);
    assert_true(ms < 3000);
    if (!strstr(err.msg, "broker without CURVE")) fail_msg("%s", err.msg);
}

static void test_student_key_cannot_join_as_worker(void **state)
{
    fixture *f = *state;
    s_start_curve(f);
    setenv("DQ_H_CURVE_WORKER", f->s1_sec, 1);
    h_worker_defaults(&f->w, f->b.backend, "fm");
    assert_int_equal(h_worker_start(&f->w), 0);
    f->w_started = true;
    for (int i = 0; i < 200 && !h_log_contains(&f->b, "refused workers connection"); i++)
        usleep(10000);
    assert_true(h_log_contains(&f->b, "refused workers connection"));
    assert_true(h_log_contains(&f->b, "which is s1 in --allow-students"));
    usleep(300000);
    assert_int_equal(h_stats(f->b.frontend, f->json, sizeof f->json), 0);
    assert_int_equal(h_json_num(f->json, NULL, "workers"), 0);
    assert_int_equal(atomic_load(&f->w.received), 0);
}

/* ---- the relay ------------------------------------------------------------------- */

typedef struct {
    int listen_fd, port, upstream_port;
    atomic_int stop, seen, bytes;
    pthread_t th;
} s_relay;

static int s_port_of(const char *ep)
{
    const char *c = strrchr(ep, ':');
    return c ? atoi(c + 1) : -1;
}

/* Forwards every connection to the upstream port; scans client -> broker
 * bytes for the pattern (keeping the tail of the previous read). */
static void *s_relay_main(void *arg)
{
    s_relay *r = arg;
    enum { MAXC = 8 };
    int down[MAXC], up[MAXC], n = 0;
    char tail[MAXC][32];
    size_t tail_len[MAXC];
    const size_t plen = strlen(S_PATTERN);
    while (!atomic_load(&r->stop)) {
        struct pollfd pf[1 + 2 * MAXC];
        pf[0] = (struct pollfd){r->listen_fd, POLLIN, 0};
        for (int i = 0; i < n; i++) {
            pf[1 + 2 * i] = (struct pollfd){down[i], POLLIN, 0};
            pf[2 + 2 * i] = (struct pollfd){up[i], POLLIN, 0};
        }
        if (poll(pf, (nfds_t)(1 + 2 * n), 50) <= 0) continue;
        if ((pf[0].revents & POLLIN) && n < MAXC) {
            int d = accept(r->listen_fd, NULL, NULL);
            int u = socket(AF_INET, SOCK_STREAM, 0);
            struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)r->upstream_port)};
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            if (d >= 0 && u >= 0 && connect(u, (struct sockaddr *)&a, sizeof a) == 0) {
                down[n] = d, up[n] = u, tail_len[n] = 0;
                n++;
            } else {
                if (d >= 0) close(d);
                if (u >= 0) close(u);
            }
        }
        for (int i = 0; i < n; i++) {
            for (int dir = 0; dir < 2; dir++) {
                if (!(pf[1 + 2 * i + dir].revents & (POLLIN | POLLHUP | POLLERR))) continue;
                char buf[65536 + 32];
                int from = dir ? up[i] : down[i], to = dir ? down[i] : up[i];
                size_t off = dir ? 0 : tail_len[i];
                if (!dir) memcpy(buf, tail[i], off);
                ssize_t k = read(from, buf + off, 65536);
                if (k <= 0) { /* one side closed: close both */
                    close(down[i]);
                    close(up[i]);
                    down[i] = down[n - 1], up[i] = up[n - 1], tail_len[i] = tail_len[n - 1];
                    memcpy(tail[i], tail[n - 1], sizeof tail[i]);
                    n--;
                    break;
                }
                if (!dir) {
                    atomic_fetch_add(&r->bytes, (int)k);
                    size_t tot = off + (size_t)k;
                    if (memmem(buf, tot, S_PATTERN, plen)) atomic_store(&r->seen, 1);
                    size_t keep = tot < plen ? tot : plen - 1;
                    memcpy(tail[i], buf + tot - keep, keep);
                    tail_len[i] = keep;
                }
                const char *p = dir ? buf : buf + off;
                for (ssize_t w = 0, m; w < k; w += m)
                    if ((m = write(to, p + w, (size_t)(k - w))) <= 0) break;
            }
        }
    }
    for (int i = 0; i < n; i++) close(down[i]), close(up[i]);
    return NULL;
}

static void s_relay_start(s_relay *r, int upstream_port)
{
    memset(r, 0, sizeof *r);
    r->upstream_port = upstream_port;
    r->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(r->listen_fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    assert_int_equal(bind(r->listen_fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(r->listen_fd, 8), 0);
    assert_int_equal(getsockname(r->listen_fd, (struct sockaddr *)&a, &al), 0);
    r->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&r->th, NULL, s_relay_main, r), 0);
}

static void s_relay_stop(s_relay *r)
{
    atomic_store(&r->stop, 1);
    pthread_join(r->th, NULL);
    close(r->listen_fd);
}

static void test_wire_is_not_plaintext(void **state)
{
    fixture *f = *state;
    dq_err err = {{0}};
    int64_t ms;
    char ep[64];
    /* without CURVE the relay sees the pixels: the scan works */
    static const char *const plain[] = {"--heartbeat-ms", "100", NULL};
    if (h_broker_start(&f->b, f->dir, false, plain) != 0) fail_msg("broker did not start");
    s_start_worker(f);
    s_relay r;
    s_relay_start(&r, s_port_of(f->b.frontend));
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", r.port);
    assert_int_equal(s_one_request(ep, NULL, NULL, 5000, &ms, &err), DQ_OK);
    s_relay_stop(&r);
    assert_true(atomic_load(&r.bytes) > 64);
    assert_int_equal(atomic_load(&r.seen), 1);
    s_after(state);
    /* with CURVE the same request passes, and the relay never sees them */
    s_start_curve(f);
    s_start_worker(f);
    s_relay_start(&r, s_port_of(f->b.frontend));
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", r.port);
    assert_int_equal(s_one_request(ep, f->server_pub, f->s1_sec, 5000, &ms, &err), DQ_OK);
    s_relay_stop(&r);
    assert_true(atomic_load(&r.bytes) > 64);
    assert_int_equal(atomic_load(&r.seen), 0);
}

static void *s_run_client(void *arg)
{
    h_client_run(arg);
    return NULL;
}

static void test_killed_worker_under_curve(void **state)
{
    fixture *f = *state;
    s_start_curve(f);
    s_start_worker(f);
    /* a second worker in a child process (it inherits DQ_H_CURVE_*) */
    f->child = h_worker_spawn(NULL, f->b.backend, "fm", 4, 5);
    for (int i = 0; i < 300; i++) {
        if (h_stats(f->b.frontend, f->json, sizeof f->json) == 0 &&
            h_json_num(f->json, NULL, "workers") == 2)
            break;
        usleep(10000);
    }
    assert_int_equal(h_json_num(f->json, NULL, "workers"), 2);
    h_client c;
    h_client_defaults(&c, f->b.frontend, "fm");
    c.total = 300, c.inflight = 16, c.timeout_ms = 15000;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, s_run_client, &c), 0);
    usleep(150000);
    kill(f->child, SIGKILL);
    waitpid(f->child, NULL, 0);
    f->child = 0;
    pthread_join(t, NULL);
    assert_int_equal(c.ok, 300);
    assert_int_equal(c.wrong + c.dup + c.missing, 0);
    for (int i = 0; i < 100 && !h_log_contains(&f->b, "died"); i++) usleep(10000);
    assert_true(h_log_contains(&f->b, "died"));
}

/* Without CURVE a non-loopback bind is refused unless --insecure. */
/* CPU ticks (user + system) of the broker's libzmq I/O threads ZMQbg/IO/N,
 * by N; returns how many were found. */
static int s_io_ticks(pid_t pid, long long ticks[8])
{
    char path[320];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d) return 0;
    int found = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char comm[64] = "", stat[512];
        snprintf(path, sizeof path, "/proc/%d/task/%s/comm", (int)pid, e->d_name);
        FILE *fc = fopen(path, "r");
        if (!fc) continue;
        bool got = fgets(comm, sizeof comm, fc) != NULL;
        fclose(fc);
        int io;
        if (!got || sscanf(comm, "ZMQbg/IO/%d", &io) != 1 || io < 0 || io >= 8) continue;
        snprintf(path, sizeof path, "/proc/%d/task/%s/stat", (int)pid, e->d_name);
        FILE *fs = fopen(path, "r");
        if (!fs) continue;
        size_t n = fread(stat, 1, sizeof stat - 1, fs);
        fclose(fs);
        stat[n] = 0;
        const char *q = strrchr(stat, ')'); /* fields after the command name */
        long long ut = 0, st = 0;
        if (q && sscanf(q + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lld %lld", &ut,
                        &st) == 2) {
            ticks[io] = ut + st;
            found++;
        }
    }
    closedir(d);
    return found;
}

static void test_curve_sides_on_their_own_io_threads(void **state)
{
    fixture *f = *state;
    s_start_curve_io(f, "2");
    h_worker_defaults(&f->w, f->b.backend, "fm");
    f->w.h = 56, f->w.w = 56;
    assert_int_equal(h_worker_start(&f->w), 0);
    f->w_started = true;
    for (int i = 0; i < 300 && !(h_stats(f->b.frontend, f->json, sizeof f->json) == 0 &&
                                 h_json_num(f->json, NULL, "workers") == 1); i++)
        usleep(10000);
    /* 400 requests of 32 x 56 x 56 = 100,352 B, as bench_broker's: the
     * frontend decrypts and the backend encrypts each (~0.1 ms apiece);
     * the stats requests above came and went on the frontend first, as
     * they do in life, which is what let libzmq put both sides on one */
    h_client c;
    h_client_defaults(&c, f->b.frontend, "fm");
    c.h = 56, c.w = 56, c.n = 32, c.total = 400, c.inflight = 16, c.timeout_ms = 60000;
    h_client_run(&c);
    assert_int_equal(c.ok, 400);
    assert_int_equal(c.wrong + c.dup + c.missing, 0);
    long long t[8] = {0};
    assert_int_equal(s_io_ticks(f->b.pid, t), 2);
    long long front = t[0], back = t[1];
    print_message("# broker I/O thread ticks: %lld | %lld\n", t[0], t[1]);
    /* both halves busy: each at least a quarter of the I/O threads' CPU
     * (one side on the other's threads would leave its own half ~idle) */
    assert_true(front + back >= 4);
    assert_true(4 * front >= front + back);
    assert_true(4 * back >= front + back);
}

static void test_insecure_bind_refused(void **state)
{
    fixture *f = *state;
    const char *top = getenv("top_builddir");
    char cmd[768];
    snprintf(cmd, sizeof cmd, "%s/distillq-broker --frontend tcp://0.0.0.0:29901 --backend "
             "tcp://127.0.0.1:29902 > %s/insecure.log 2>&1", top && *top ? top : ".", f->dir);
    int rc = system(cmd);
    assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) == 2);
    snprintf(cmd, sizeof cmd, "grep -q 'refusing to bind tcp://0.0.0.0:29901 without CURVE' "
             "%s/insecure.log", f->dir);
    assert_int_equal(system(cmd), 0);
}

int main(int argc, char **argv)
{
    if (h_child_main(argc, argv)) return 0;
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_keygen_files, s_after),
        cmocka_unit_test_teardown(test_listed_keys_served_and_named, s_after),
        cmocka_unit_test_teardown(test_unlisted_key_refused_clearly, s_after),
        cmocka_unit_test_teardown(test_other_mechanism_named, s_after),
        cmocka_unit_test_teardown(test_student_key_cannot_join_as_worker, s_after),
        cmocka_unit_test_teardown(test_wire_is_not_plaintext, s_after),
        cmocka_unit_test_teardown(test_killed_worker_under_curve, s_after),
        cmocka_unit_test_teardown(test_insecure_bind_refused, s_after),
        cmocka_unit_test_teardown(test_curve_sides_on_their_own_io_threads, s_after),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
