/* main.c - distillq-broker: options, signals, and the broker library's loop.
 *
 * The only global in the broker is the signal flag, owned here: SIGINT and
 * SIGTERM set it (installed without SA_RESTART so zmq_poll returns EINTR at
 * once) and dq_broker_run sees it within one tick. `--stats ENDPOINT` is a
 * small client mode that asks a running broker for its stats and prints the
 * JSON (what `scripts/cluster status` uses). `--cache DIR` puts the LMDB
 * reply cache (src/cache) behind the broker's cache hook.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/broker.h"
#include "broker/cache_hook.h"
#include "cache/cache.h"
#include "cli/parse.h"
#include "proto/msg.h"
#include "proto/wire.h"

static volatile sig_atomic_t s_stop;

static void s_on_signal(int sig)
{
    (void)sig;
    s_stop = 1;
}

static void s_usage(FILE *f)
{
    fprintf(f,
            "usage: distillq-broker [options]\n"
            "  --frontend EP           bind for clients (tcp://*:5555)\n"
            "  --backend EP            bind for teacher workers (tcp://*:5556)\n"
            "  --heartbeat-ms N        heartbeat interval (1000)\n"
            "  --liveness N            heartbeats missed before a worker is dead (3)\n"
            "  --request-timeout-ms N  longest wait for a free worker (30000)\n"
            "  --service-timeout-ms N  a worker holding a request longer is stuck: its\n"
            "                          work is requeued and it must re-join (120000; 0: off)\n"
            "  --max-queue N           queued requests before 'overloaded' (1024)\n"
            "  --max-inflight N        requests held by workers at once (1024)\n"
            "  --max-msg-bytes B       largest accepted frame (67108864)\n"
            "  --cache DIR             answer from / store into the LMDB cache in DIR\n"
            "  --cache-max-gb G        cache size limit in GiB (4); when full, stop inserting\n"
            "  --stats EP              print the stats of the broker at EP as JSON and exit\n"
            "  --help, --version\n"
            "Endpoints are tcp://HOST:PORT or ipc://PATH. Protocol: docs/protocol.md.\n");
}

/* The shared checked parser (src/cli), reporting like every program: 0 or -1. */
static int s_int(const char *opt, const char *v, long long lo, long long hi, long long *out)
{
    char name[64];
    snprintf(name, sizeof name, "--%s", opt);
    int64_t x = 0;
    dq_err err = {{0}};
    if (dq_cli_parse_int(name, v, lo, hi, &x, &err) != DQ_OK) {
        fprintf(stderr, "distillq-broker: %s\n", err.msg);
        return -1;
    }
    *out = x;
    return 0;
}

/* Client mode: one stats request, reply printed, 0 on success. */
static int s_query_stats(const char *ep)
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
    if (dq_wire_dealer_new(&s, ctx, ep, NULL, &err) != DQ_OK ||
        zmq_setsockopt(s, ZMQ_RCVTIMEO, &tmo, sizeof tmo) != 0 ||
        dq_msg_decoder_new(&dec, &err) != DQ_OK || dq_msg_encode_stats_request(&buf, 1, &err) != DQ_OK) {
        fprintf(stderr, "distillq-broker: --stats %s: %s\n", ep, err.msg);
        goto done;
    }
    const void *data[1] = {buf.data};
    size_t len[1] = {buf.len};
    dq_wire_parts p;
    dq_msg m;
    if (dq_wire_send(s, 1, data, len, 0, &err) != DQ_OK || dq_wire_recv(s, &p, 0, &err) != DQ_OK) {
        fprintf(stderr, "distillq-broker: --stats %s: %s\n", ep, err.msg);
        goto done;
    }
    if (p.n == 1 &&
        dq_msg_decode(dec, zmq_msg_data(&p.f[0]), zmq_msg_size(&p.f[0]), &m, &err) == DQ_OK &&
        m.type == DQ_MSG_STATS_REPLY) {
        printf("%.*s\n", (int)m.u.stats_reply.json_len, m.u.stats_reply.json);
        rc = 0;
    } else {
        fprintf(stderr, "distillq-broker: --stats %s: unexpected answer: %s\n", ep,
                err.msg[0] ? err.msg : "not a stats reply");
    }
    dq_wire_parts_close(&p);
done:
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
    double cache_gb = 4;
    enum { O_FRONT = 256, O_BACK, O_HB, O_LIVE, O_TMO, O_MAXQ, O_MAXI, O_MAXB, O_STATS, O_VER,
           O_CACHE, O_CACHEGB, O_STMO };
    static const struct option opts[] = {
        {"frontend", required_argument, 0, O_FRONT},
        {"backend", required_argument, 0, O_BACK},
        {"heartbeat-ms", required_argument, 0, O_HB},
        {"liveness", required_argument, 0, O_LIVE},
        {"request-timeout-ms", required_argument, 0, O_TMO},
        {"max-queue", required_argument, 0, O_MAXQ},
        {"max-inflight", required_argument, 0, O_MAXI},
        {"max-msg-bytes", required_argument, 0, O_MAXB},
        {"stats", required_argument, 0, O_STATS},
        {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, O_VER},
        {"cache", required_argument, 0, O_CACHE},
        {"service-timeout-ms", required_argument, 0, O_STMO},
        {"cache-max-gb", required_argument, 0, O_CACHEGB},
        {0, 0, 0, 0},
    };
    int c;
    long long v;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        const char *name = c >= O_FRONT && c <= O_STATS ? opts[c - O_FRONT].name : "";
        switch (c) {
        case O_FRONT: cfg.frontend = optarg; break;
        case O_BACK: cfg.backend = optarg; break;
        case O_STATS: stats_ep = optarg; break;
        case O_CACHE: cache_dir = optarg; break;
        case O_STMO:
            if (s_int("service-timeout-ms", optarg, 0, 1LL << 30, &v)) return 2;
            cfg.service_timeout_ms = (int)v;
            break;
        case O_CACHEGB: {
            float gb = 0;
            dq_err err = {{0}};
            if (dq_cli_parse_float("--cache-max-gb", optarg, 0.001, 1024, &gb, &err) != DQ_OK) {
                fprintf(stderr, "distillq-broker: %s\n", err.msg);
                return 2;
            }
            cache_gb = gb;
            break;
        }
        case O_HB:
        case O_LIVE:
        case O_TMO:
        case O_MAXQ:
        case O_MAXI:
            if (s_int(name, optarg, 1, 1LL << 30, &v)) return 2;
            if (c == O_HB) cfg.heartbeat_ms = (int)v;
            if (c == O_LIVE) cfg.liveness = (int)v;
            if (c == O_TMO) cfg.request_timeout_ms = (int)v;
            if (c == O_MAXQ) cfg.max_queue = (int)v;
            if (c == O_MAXI) cfg.max_inflight = (int)v;
            break;
        case O_MAXB:
            if (s_int(name, optarg, 1024, 1LL << 40, &v)) return 2;
            cfg.max_msg_bytes = v;
            break;
        case 'h': s_usage(stdout); return 0;
        case O_VER: printf("distillq-broker %s (protocol %d)\n", PACKAGE_VERSION, DQ_PROTO_VERSION); return 0;
        default: s_usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "distillq-broker: unexpected argument '%s'\n", argv[optind]);
        s_usage(stderr);
        return 2;
    }
    if (stats_ep) return s_query_stats(stats_ep);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: interrupt zmq_poll */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

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
    dq_broker_t *b = NULL;
    if (dq_broker_new(&b, &cfg, &err) != DQ_OK) {
        fprintf(stderr, "distillq-broker: %s\n", err.msg);
        dq_cache_hook_destroy(&hook);
        dq_cache_close(&cache);
        return 1;
    }
    dq_status st = dq_broker_run(b, &s_stop, &err);
    dq_broker_destroy(&b);
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
