/* main.c - distillq-broker: options, signals, and the broker library's loop.
 *
 * The only global in the broker is the signal flag, owned here: SIGINT and
 * SIGTERM set it (installed without SA_RESTART so zmq_poll returns EINTR at
 * once) and dq_broker_run sees it within one tick. `--stats ENDPOINT` is a
 * small client mode that asks a running broker for its stats and prints the
 * JSON (what `scripts/cluster status` uses). `--cache DIR` puts the LMDB
 * reply cache (src/cache) behind the broker's cache hook.
 */
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/broker.h"
#include "broker/cache_hook.h"
#include "cache/cache.h"
#include "cli/opts.h"
#include "metrics/httpd.h"
#include "proto/msg.h"
#include "proto/wire.h"

static volatile sig_atomic_t s_stop;

#define S_MAX_SHARES 64

typedef struct {
    dq_broker_share v[S_MAX_SHARES];
    int n;
} s_shares;

/* --share NAME=W, repeatable. */
static dq_status s_parse_share(void *dst, const char *opt, const char *val, dq_err *err)
{
    s_shares *sh = dst;
    const char *eq = strrchr(val, '=');
    char *end = NULL;
    long w = eq ? strtol(eq + 1, &end, 10) : 0;
    if (!eq || eq == val || !end || *end || w < 1 || w > 1000000)
        return dq_fail(err, DQ_ERR_ARG, "%s %s: expected NAME=W with W in 1..1000000", opt, val);
    if (sh->n == S_MAX_SHARES)
        return dq_fail(err, DQ_ERR_ARG, "%s: at most %d", opt, S_MAX_SHARES);
    char *name = strndup(val, (size_t)(eq - val));
    if (!name) return dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", opt);
    sh->v[sh->n].name = name; /* lives as long as the program */
    sh->v[sh->n].weight = (uint32_t)w;
    sh->n++;
    return DQ_OK;
}

static void s_on_signal(int sig)
{
    (void)sig;
    s_stop = 1;
}

static void s_usage(FILE *f, const dq_opt *opts, int n)
{
    fprintf(f, "usage: distillq-broker [options]\n");
    dq_opts_print_help(f, opts, n, 26);
    fprintf(f, "Endpoints are tcp://HOST:PORT or ipc://PATH. Protocol: docs/protocol.md.\n");
}

static void s_publish(void *ctx, const char *text, size_t len)
{
    dq_metrics_http_publish(ctx, text, len);
}

/* True for ipc:// and inproc:// and for tcp:// on 127.x.x.x, localhost, [::1]. */
static bool s_is_loopback(const char *ep)
{
    if (strncmp(ep, "tcp://", 6) != 0) return true;
    const char *h = ep + 6;
    return strncmp(h, "127.", 4) == 0 || strncmp(h, "localhost:", 10) == 0 ||
           strncmp(h, "[::1]:", 6) == 0 || strncmp(h, "lo:", 3) == 0;
}

/* Client mode: one stats request, reply printed, 0 on success. */
static int s_query_stats(const char *ep, const char *server_cert, const char *cert)
{
    void *ctx = zmq_ctx_new();
    void *s = NULL;
    dq_err err = {{0}};
    dq_msg_buf buf;
    dq_msg_buf_init(&buf);
    dq_msg_decoder_t *dec = NULL;
    int rc = 1, tmo = 3000;
    if (!ctx) {
        fprintf(stderr, "distillq-broker: zmq_ctx_new failed\n");
        return 1;
    }
    dq_curve_watch watch = {0};
    if (server_cert || cert) {
        /* CURVE must be set before connecting: make the socket by hand */
        s = zmq_socket(ctx, ZMQ_DEALER);
        int linger = 0;
        if (!s || zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger) != 0) {
            fprintf(stderr, "distillq-broker: --stats: zmq_socket failed\n");
            goto done;
        }
        if (!server_cert || !cert) {
            fprintf(stderr, "distillq-broker: --stats under CURVE needs --curve-server-cert and "
                            "--curve-cert\n");
            goto done;
        }
        if (dq_curve_client_apply(s, server_cert, cert, tmo, &err) != DQ_OK ||
            dq_curve_watch_start(&watch, ctx, s, true, &err) != DQ_OK) {
            fprintf(stderr, "distillq-broker: --stats %s: %s\n", ep, err.msg);
            goto done;
        }
        if (zmq_connect(s, ep) != 0) {
            fprintf(stderr, "distillq-broker: --stats %s: %s\n", ep, zmq_strerror(zmq_errno()));
            goto done;
        }
    } else if (dq_wire_dealer_new(&s, ctx, ep, &(dq_wire_opts){.watch = &watch}, &err) != DQ_OK) {
        fprintf(stderr, "distillq-broker: --stats %s: %s\n", ep, err.msg);
        goto done;
    }
    if (zmq_setsockopt(s, ZMQ_RCVTIMEO, &tmo, sizeof tmo) != 0 ||
        dq_msg_decoder_new(&dec, &err) != DQ_OK || dq_msg_encode_stats_request(&buf, 1, &err) != DQ_OK) {
        fprintf(stderr, "distillq-broker: --stats %s: %s\n", ep, err.msg);
        goto done;
    }
    const void *data[1] = {buf.data};
    size_t len[1] = {buf.len};
    dq_wire_parts p;
    dq_msg m;
    if (dq_wire_send(s, 1, data, len, 0, &err) != DQ_OK) {
        fprintf(stderr, "distillq-broker: --stats %s: %s\n", ep, err.msg);
        goto done;
    }
    /* wait in slices, so that a refused key is named instead of a timeout */
    dq_status rs = DQ_ERR_TIMEOUT;
    for (int waited = 0; waited < tmo && rs == DQ_ERR_TIMEOUT; waited += 50) {
        zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
        zmq_poll(&it, 1, 50);
        if (dq_curve_watch_poll(&watch, ep, &err) != DQ_OK) {
            fprintf(stderr, "distillq-broker: --stats: %s\n", err.msg);
            goto done;
        }
        rs = dq_wire_recv(s, &p, ZMQ_DONTWAIT, &err);
    }
    if (rs != DQ_OK) {
        fprintf(stderr, "distillq-broker: --stats %s: %s\n", ep,
                rs == DQ_ERR_TIMEOUT ? "no answer within 3 s" : err.msg);
        goto done;
    }
    bool decoded = p.n == 1 && dq_msg_decode(dec, zmq_msg_data(&p.f[0]), zmq_msg_size(&p.f[0]),
                                             &m, &err) == DQ_OK;
    if (decoded && m.type == DQ_MSG_STATS_REPLY) {
        printf("%.*s\n", (int)m.u.stats_reply.json_len, m.u.stats_reply.json);
        rc = 0;
    } else if (decoded && m.type == DQ_MSG_REPLY && m.u.reply.error[0]) {
        /* e.g. the worker port, which says which port to use */
        fprintf(stderr, "distillq-broker: --stats %s: %s\n", ep, m.u.reply.error);
    } else {
        fprintf(stderr, "distillq-broker: --stats %s: unexpected answer: %s\n", ep,
                err.msg[0] ? err.msg : "not a stats reply");
    }
    dq_wire_parts_close(&p);
done:
    dq_curve_watch_stop(&watch, s);
    dq_msg_decoder_destroy(&dec);
    dq_msg_buf_free(&buf);
    if (s) zmq_close(s);
    zmq_ctx_term(ctx);
    return rc;
}

int main(int argc, char **argv)
{
    dq_broker_config cfg;
    dq_broker_config_defaults(&cfg);
    const char *stats_ep = NULL, *cache_dir = NULL;
    const char *curve_cert = NULL, *curve_server_cert = NULL, *allow_students = NULL,
               *allow_workers = NULL;
    bool insecure = false;
    const char *metrics_addr = NULL;
    cfg.frontend = cfg.backend = NULL; /* defaults below: they depend on CURVE */
    float cache_gb = 4;
    static s_shares shares;
    const dq_opt opts[] = {
        DQ_OPT_STR("frontend", "EP", &cfg.frontend,
                   "bind for clients (tcp://*:5555 with CURVE, else\ntcp://127.0.0.1:5555)"),
        DQ_OPT_STR("backend", "EP", &cfg.backend,
                   "bind for teacher workers (tcp://*:5556 with CURVE,\nelse tcp://127.0.0.1:5556)"),
        DQ_OPT_STR("curve-cert", "FILE", &curve_cert,
                   "CURVE: the broker's secret certificate (NAME_secret\nof distillq-keygen)"),
        DQ_OPT_STR("allow-students", "DIR", &allow_students,
                   "CURVE: public certificates of the students admitted"),
        DQ_OPT_STR("allow-workers", "DIR", &allow_workers,
                   "CURVE: public certificates of the workers admitted"),
        DQ_OPT_STR("metrics", "HOST:PORT", &metrics_addr,
                   "serve Prometheus metrics at http://HOST:PORT/metrics"),
        DQ_OPT_FLAG("insecure", &insecure,
                    "allow binding a non-loopback address without CURVE"),
        DQ_OPT_STR("curve-server-cert", "FILE", &curve_server_cert,
                   "with --stats: the broker's public certificate"),
        DQ_OPT_INT("io-threads", "N", &cfg.io_threads, 1, 64,
                   "libzmq I/O threads (1; 4 with CURVE: the frontend's\nconnections on half, the "
                   "backend's on the other half)"),
        DQ_OPT_INT("heartbeat-ms", "N", &cfg.heartbeat_ms, 1, 1 << 30, "heartbeat interval (1000)"),
        DQ_OPT_INT("liveness", "N", &cfg.liveness, 1, 1 << 30,
                   "heartbeats missed before a worker is dead (3)"),
        DQ_OPT_INT("request-timeout-ms", "N", &cfg.request_timeout_ms, 1, 1 << 30,
                   "longest wait for a free worker (30000)"),
        DQ_OPT_INT("service-timeout-ms", "N", &cfg.service_timeout_ms, 0, 1 << 30,
                   "a worker holding a request longer is stuck: its\n"
                   "work is requeued and it must re-join (120000; 0: off)"),
        DQ_OPT_INT("max-queue", "N", &cfg.max_queue, 1, 1 << 22,
                   "queued requests per client before 'overloaded' (1024)"),
        DQ_OPT_INT("max-queue-total", "N", &cfg.max_queued_total, 1, 1 << 23,
                   "queued requests of all clients (4 x --max-queue)"),
        DQ_OPT_INT("max-clients", "N", &cfg.max_clients, 1, 1 << 20,
                   "client queues (service, client) at once (1024)"),
        DQ_OPT_CALL("share", "NAME=W", s_parse_share, &shares,
                    "client NAME gets W turns per round (1); repeatable"),
        DQ_OPT_INT("max-inflight", "N", &cfg.max_inflight, 1, 1 << 30,
                   "requests held by workers at once (1024)"),
        DQ_OPT_I64("max-queue-bytes", "B", &cfg.max_queue_bytes, 1024, 1LL << 50,
                   "bytes of request bodies held (queued and in flight)\n"
                   "before 'overloaded', all clients (1073741824)"),
        DQ_OPT_I64("max-client-bytes", "B", &cfg.max_client_bytes, 1024, 1LL << 50,
                   "the same per client queue (--max-queue-bytes / 4)"),
        DQ_OPT_I64("max-msg-bytes", "B", &cfg.max_msg_bytes, 1024, 1LL << 40,
                   "largest accepted frame (67108864)"),
        DQ_OPT_STR("cache", "DIR", &cache_dir, "answer from / store into the LMDB cache in DIR"),
        DQ_OPT_F32("cache-max-gb", "G", &cache_gb, 0.001, 1024,
                   "cache size limit in GiB (4); above 80 %, whole\nteachers are evicted, least recently written first"),
        DQ_OPT_STR("stats", "EP", &stats_ep, "print the stats of the broker at EP as JSON and exit"),
        DQ_OPT_HELP,
        DQ_OPT_VERSION,
    };
    const int n_opts = (int)(sizeof opts / sizeof opts[0]);
    dq_opts_action act;
    dq_err perr = {{0}};
    if (dq_opts_parse(opts, n_opts, argc, argv, &act, &perr) != DQ_OK) {
        if (act == DQ_OPTS_USAGE) {
            if (strcmp(perr.msg, "try --help") != 0) /* getopt said why already */
                fprintf(stderr, "distillq-broker: %s\n", perr.msg);
            s_usage(stderr, opts, n_opts);
        } else {
            fprintf(stderr, "distillq-broker: %s\n", perr.msg);
        }
        return 2;
    }
    if (act == DQ_OPTS_HELP) {
        s_usage(stdout, opts, n_opts);
        return 0;
    }
    if (act == DQ_OPTS_VERSION) {
        printf("distillq-broker %s (protocol %d)\n", PACKAGE_VERSION, DQ_PROTO_VERSION);
        return 0;
    }
    if (stats_ep) return s_query_stats(stats_ep, curve_server_cert, curve_cert);
    static dq_broker_curve curve;
    static dq_curve_allow students, workers;
    if (curve_cert || allow_students || allow_workers) {
        dq_err cerr = {{0}};
        if (!curve_cert || !allow_students || !allow_workers) {
            fprintf(stderr, "distillq-broker: CURVE needs --curve-cert, --allow-students and "
                            "--allow-workers together\n");
            return 2;
        }
        if (!zmq_has("curve")) {
            fprintf(stderr, "distillq-broker: this libzmq has no CURVE support\n");
            return 1;
        }
        const char *which = "--curve-cert";
        dq_status cst = dq_curve_cert_load(&curve.server, curve_cert, true, &cerr);
        if (cst == DQ_OK) {
            which = "--allow-students";
            cst = dq_curve_allow_load(&students, allow_students, &cerr);
        }
        if (cst == DQ_OK) {
            which = "--allow-workers";
            cst = dq_curve_allow_load(&workers, allow_workers, &cerr);
        }
        if (cst != DQ_OK) {
            fprintf(stderr, "distillq-broker: %s: %s\n", which, cerr.msg);
            return 1;
        }
        curve.students = &students;
        curve.workers = &workers;
        cfg.curve = &curve;
        fprintf(stderr, "distillq-broker: CURVE on: server key %s, %d student key(s), %d worker "
                "key(s)\n", curve.server.name, students.n, workers.n);
        /* legal (keys are read at start: add them, then restart), but worth a word */
        if (students.n == 0 || workers.n == 0)
            fprintf(stderr, "distillq-broker: WARNING: %s %s holds no certificate: no %s can "
                    "connect until one is added and the broker restarted\n",
                    students.n == 0 ? "--allow-students" : "--allow-workers",
                    students.n == 0 ? allow_students : allow_workers,
                    students.n == 0 ? "student" : "worker");
    }
    if (!cfg.frontend) cfg.frontend = cfg.curve ? "tcp://*:5555" : "tcp://127.0.0.1:5555";
    if (!cfg.backend) cfg.backend = cfg.curve ? "tcp://*:5556" : "tcp://127.0.0.1:5556";
    if (!cfg.curve) {
        bool open_fe = !s_is_loopback(cfg.frontend), open_be = !s_is_loopback(cfg.backend);
        if ((open_fe || open_be) && !insecure) {
            fprintf(stderr, "distillq-broker: refusing to bind %s without CURVE: anyone who can "
                            "reach it could join as a teacher or use the teachers. Use "
                            "--curve-cert/--allow-students/--allow-workers, or --insecure\n",
                    open_fe ? cfg.frontend : cfg.backend);
            return 2;
        }
        if (open_fe || open_be)
            fprintf(stderr, "distillq-broker: WARNING: --insecure: %s%s%s open to anyone who can "
                            "reach it, unauthenticated and unencrypted\n",
                    open_fe ? cfg.frontend : "", open_fe && open_be ? " and " : "",
                    open_be ? cfg.backend : "");
    }
    cfg.shares = shares.v;
    cfg.n_shares = shares.n;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: interrupt zmq_poll */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* Request frames are malloc'd by libzmq's I/O thread and freed here. glibc
     * raises its mmap threshold to the size of a freed mmap'd block, after
     * which multi-MB frames come from the heap and their pages stay resident
     * after a flood is over; a fixed threshold keeps every frame above it
     * mmap'd, returned to the system when freed (issue 15). */
    if (mallopt(M_MMAP_THRESHOLD, 256 * 1024) != 1)
        fprintf(stderr, "distillq-broker: mallopt(M_MMAP_THRESHOLD) failed, continuing\n");

    dq_err err = {{0}};
    dq_cache_t *cache = NULL;
    dq_cache_hook_t *hook = NULL;
    if (cache_dir) {
        dq_cache_config cc;
        dq_cache_config_defaults(&cc);
        cc.max_bytes = (uint64_t)(cache_gb * (double)(1ull << 30));
        if (dq_cache_open(&cache, cache_dir, &cc, &err) != DQ_OK ||
            dq_cache_hook_new(&hook, cache, stderr, &err) != DQ_OK) {
            fprintf(stderr, "distillq-broker: %s\n", err.msg);
            dq_cache_close(&cache);
            return 1;
        }
        cfg.cache = dq_cache_hook_broker(hook);
        fprintf(stderr, "distillq-broker: caching teacher replies in %s (limit %.3g GiB)\n",
                cache_dir, cache_gb);
    }
    dq_metrics_http_t *http = NULL;
    if (metrics_addr) {
        if (dq_metrics_http_start(&http, metrics_addr, &err) != DQ_OK) {
            fprintf(stderr, "distillq-broker: %s\n", err.msg);
            dq_cache_hook_destroy(&hook);
            dq_cache_close(&cache);
            return 1;
        }
        cfg.metrics_publish = s_publish;
        cfg.metrics_ctx = http;
        fprintf(stderr, "distillq-broker: metrics at http://%s/metrics\n", metrics_addr);
    }
    dq_broker_t *b = NULL;
    if (dq_broker_new(&b, &cfg, &err) != DQ_OK) {
        dq_metrics_http_stop(&http);
        fprintf(stderr, "distillq-broker: %s\n", err.msg);
        dq_cache_hook_destroy(&hook);
        dq_cache_close(&cache);
        return 1;
    }
    dq_status st = dq_broker_run(b, &s_stop, &err);
    dq_broker_destroy(&b);
    dq_metrics_http_stop(&http);
    if (hook) {
        dq_cache_hook_counts k;
        dq_cache_hook_get_counts(hook, &k);
        fprintf(stderr, "distillq-broker: cache: %llu hits, %llu misses, %llu entries stored, "
                "%llu errors\n", (unsigned long long)k.hits, (unsigned long long)k.misses,
                (unsigned long long)k.stored_entries, (unsigned long long)k.errors);
    }
    dq_cache_hook_destroy(&hook);
    dq_cache_close(&cache);
    if (st != DQ_OK) {
        fprintf(stderr, "distillq-broker: %s\n", err.msg);
        return 1;
    }
    return 0;
}
