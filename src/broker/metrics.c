/* metrics.c - the broker's Prometheus page (--metrics HOST:PORT).
 *
 * Counted in the loop as replies go out (dq_broker_count_reply: per service,
 * by status, and the latency from arrival to reply) next to the counters
 * the stats JSON already has; each tick the page is rebuilt here from those
 * counters, in the loop's thread, and handed to cfg.metrics_publish (the
 * HTTP server in src/metrics/httpd.c keeps a copy under its mutex and
 * serves it from its own thread). So a scrape is at most one tick old, and
 * the counters it shows are the same ones `--stats` reports.
 *
 * Families (all prefixed distillq_broker_):
 *   requests_total{service,outcome}      replies to clients by status
 *   request_duration_seconds{service}     histogram, arrival to reply
 *   queue_length{service}, in_flight{service}, workers{service,state}
 *   requeues_total{service}, timeouts_total{service}
 *   worker_served_total{service,worker}, worker_errors_total{service,worker}
 *   client_dispatched_total{service,client}, client_overloaded_total{...}
 *   cache_hits_total, cache_misses_total, cache_stored_total,
 *   cache_errors_total, cache_bytes       (with --cache)
 *   auth_refused_total, handshake_failures_total, malformed_total, late_replies_total,
 *   undeliverable_total, uptime_seconds
 *   request_bytes_held, request_bytes_held_peak, request_bytes_budget,
 *   over_budget_total                     (the byte budget, budget.c)
 * A worker is named by its CURVE key's name and routing id ("w1@0080...")
 * or the routing id alone.
 */
#include "broker/broker_int.h"

#include <string.h>

#define S_P "distillq_broker_"

void dq_broker_count_reply(dq_broker_t *b, int32_t svc, dq_reply_status st, int64_t arrived_ms,
                           int64_t now)
{
    if (svc < 0 || (int)st < 0 || st >= DQ_REPLY_STATUS_COUNT) return;
    dq_bservice *s = &b->services[svc];
    s->replies[st]++;
    dq_prom_hist_observe(&s->latency, (double)(now - arrived_ms) / 1000.0);
}

static void s_per_service_u64(dq_broker_t *b, const char *name, const char *type,
                              const char *help, size_t offset)
{
    dq_prom *p = &b->prom;
    dq_prom_family(p, name, type, help);
    char lab[256];
    for (int32_t i = 0; i < b->service_hi; i++) {
        const dq_bservice *s = &b->services[i];
        if (!s->used) continue;
        dq_prom_labels(lab, sizeof lab, 1, "service", s->name);
        uint64_t v;
        memcpy(&v, (const char *)s + offset, sizeof v);
        dq_prom_sample(p, name, lab, (double)v);
    }
}

static void s_scalar(dq_prom *p, const char *name, const char *type, const char *help, double v)
{
    dq_prom_family(p, name, type, help);
    dq_prom_sample(p, name, "", v);
}

static void s_build(dq_broker_t *b, int64_t now)
{
    dq_prom *p = &b->prom;
    char lab[512];
    dq_prom_reset(p);

    dq_prom_family(p, S_P "requests_total", "counter",
                   "Replies sent to clients, by service and outcome (reply status).");
    for (int32_t i = 0; i < b->service_hi; i++) {
        const dq_bservice *s = &b->services[i];
        if (!s->used) continue;
        for (int st = 0; st < DQ_REPLY_STATUS_COUNT; st++) {
            dq_prom_labels(lab, sizeof lab, 2, "service", s->name, "outcome",
                           dq_reply_status_name((dq_reply_status)st));
            dq_prom_sample(p, S_P "requests_total", lab, (double)s->replies[st]);
        }
    }
    dq_prom_family(p, S_P "request_duration_seconds", "histogram",
                   "Time from a request's arrival to its reply.");
    for (int32_t i = 0; i < b->service_hi; i++) {
        const dq_bservice *s = &b->services[i];
        if (!s->used) continue;
        dq_prom_labels(lab, sizeof lab, 1, "service", s->name);
        dq_prom_hist_write(p, S_P "request_duration_seconds", lab, &s->latency);
    }

    /* queue, in flight and workers by state */
    dq_prom_family(p, S_P "queue_length", "gauge", "Requests queued for a worker.");
    for (int32_t i = 0; i < b->service_hi; i++) {
        if (!b->services[i].used) continue;
        dq_prom_labels(lab, sizeof lab, 1, "service", b->services[i].name);
        dq_prom_sample(p, S_P "queue_length", lab, b->services[i].queued);
    }
    dq_prom_family(p, S_P "in_flight", "gauge", "Requests held by workers.");
    for (int32_t i = 0; i < b->service_hi; i++) {
        if (!b->services[i].used) continue;
        int n = 0;
        for (int32_t w = 0; w < b->worker_hi; w++)
            if (b->workers[w].used && b->workers[w].service == i) n += (int)b->workers[w].in_flight;
        dq_prom_labels(lab, sizeof lab, 1, "service", b->services[i].name);
        dq_prom_sample(p, S_P "in_flight", lab, n);
    }
    dq_prom_family(p, S_P "workers", "gauge",
                   "Live workers by state: idle (a free credit), busy (all credits used), draining.");
    for (int32_t i = 0; i < b->service_hi; i++) {
        if (!b->services[i].used) continue;
        int n[3] = {0, 0, 0};
        for (int32_t w = 0; w < b->worker_hi; w++) {
            const dq_bworker *wk = &b->workers[w];
            if (!wk->used || wk->service != i) continue;
            n[wk->draining ? 2 : wk->in_flight >= wk->capacity ? 1 : 0]++;
        }
        static const char *const names[3] = {"idle", "busy", "draining"};
        for (int k = 0; k < 3; k++) {
            dq_prom_labels(lab, sizeof lab, 2, "service", b->services[i].name, "state", names[k]);
            dq_prom_sample(p, S_P "workers", lab, n[k]);
        }
    }
    s_per_service_u64(b, S_P "requeues_total", "counter",
                      "Requests requeued because their worker died, left or was stuck.",
                      offsetof(dq_bservice, requeues));
    s_per_service_u64(b, S_P "timeouts_total", "counter",
                      "Requests answered timeout or unknown_service.",
                      offsetof(dq_bservice, timeouts));

    /* per worker */
    dq_prom_family(p, S_P "worker_served_total", "counter", "Replies a live worker sent.");
    for (int32_t w = 0; w < b->worker_hi; w++) {
        const dq_bworker *wk = &b->workers[w];
        if (!wk->used) continue;
        dq_prom_labels(lab, sizeof lab, 2, "service", b->services[wk->service].name, "worker",
                       wk->id_hex);
        dq_prom_sample(p, S_P "worker_served_total", lab, (double)wk->served);
    }
    dq_prom_family(p, S_P "worker_errors_total", "counter",
                   "Replies of a live worker that were errors or malformed.");
    for (int32_t w = 0; w < b->worker_hi; w++) {
        const dq_bworker *wk = &b->workers[w];
        if (!wk->used) continue;
        dq_prom_labels(lab, sizeof lab, 2, "service", b->services[wk->service].name, "worker",
                       wk->id_hex);
        dq_prom_sample(p, S_P "worker_errors_total", lab, (double)wk->errors);
    }

    /* per client (fair sharing) */
    dq_prom_family(p, S_P "client_dispatched_total", "counter",
                   "Requests of a client (key name, client name or #routing id) sent to workers.");
    for (int32_t f = 0; f < b->flow_hi; f++) {
        const dq_bflow *fl = &b->flows[f];
        if (!fl->used) continue;
        dq_prom_labels(lab, sizeof lab, 2, "service", b->services[fl->service].name, "client",
                       fl->name);
        dq_prom_sample(p, S_P "client_dispatched_total", lab, (double)fl->dispatched);
    }
    dq_prom_family(p, S_P "client_overloaded_total", "counter",
                   "Requests of a client refused as overloaded (--max-queue, budgets).");
    for (int32_t f = 0; f < b->flow_hi; f++) {
        const dq_bflow *fl = &b->flows[f];
        if (!fl->used) continue;
        dq_prom_labels(lab, sizeof lab, 2, "service", b->services[fl->service].name, "client",
                       fl->name);
        dq_prom_sample(p, S_P "client_overloaded_total", lab, (double)fl->overloaded);
    }

    /* cache */
    const dq_broker_cache *c = b->cfg.cache;
    if (c && c->counts) {
        uint64_t hits = 0, misses = 0, stored = 0, errors = 0, bytes = 0;
        c->counts(c->ctx, &hits, &misses, &stored, &errors, &bytes);
        s_scalar(p, S_P "cache_hits_total", "counter", "Requests answered from the cache.",
                 (double)hits);
        s_scalar(p, S_P "cache_misses_total", "counter",
                 "Requests of a known teacher not (fully) in the cache.", (double)misses);
        s_scalar(p, S_P "cache_stored_total", "counter", "Entries written to the cache.",
                 (double)stored);
        s_scalar(p, S_P "cache_errors_total", "counter", "Cache lookups or stores that failed.",
                 (double)errors);
        s_scalar(p, S_P "cache_bytes", "gauge", "Bytes the cache's pages hold (LMDB).",
                 (double)bytes);
    }

    /* the broker */
    s_scalar(p, S_P "requests_received_total", "counter", "Requests received from clients.",
             (double)b->n_requests);
    s_scalar(p, S_P "auth_refused_total", "counter", "CURVE handshakes the ZAP handler refused.",
             (double)b->n_auth_refused);
    s_scalar(p, S_P "handshake_failures_total", "counter",
             "Connections dropped in the handshake before ZAP: the peer on the other mechanism "
             "(CURVE or not), or a CURVE peer with a wrong server key.",
             (double)b->n_handshake_failed);
    s_scalar(p, S_P "malformed_total", "counter", "Messages that failed to decode.",
             (double)b->n_malformed);
    s_scalar(p, S_P "late_replies_total", "counter", "Worker replies dropped as late or stale.",
             (double)b->n_late);
    s_scalar(p, S_P "undeliverable_total", "counter", "Replies whose client was gone.",
             (double)b->n_undeliverable);
    s_scalar(p, S_P "request_bytes_held", "gauge",
             "Bytes of request bodies the broker holds, queued and in flight.",
             (double)b->held_bytes);
    s_scalar(p, S_P "request_bytes_held_peak", "gauge",
             "Highest request_bytes_held since start.", (double)b->held_bytes_peak);
    s_scalar(p, S_P "request_bytes_budget", "gauge",
             "--max-queue-bytes: beyond it requests are answered overloaded.",
             (double)b->cfg.max_queue_bytes);
    s_scalar(p, S_P "over_budget_total", "counter",
             "Requests answered overloaded by the byte budget (total or per client).",
             (double)b->n_over_budget);
    s_scalar(p, S_P "uptime_seconds", "gauge", "Seconds since the broker started.",
             (double)(now - b->start_ms) / 1000.0);
}

void dq_broker_metrics_publish(dq_broker_t *b, int64_t now)
{
    s_build(b, now);
    if (!b->prom.oom) b->cfg.metrics_publish(b->cfg.metrics_ctx, b->prom.data, b->prom.len);
}
