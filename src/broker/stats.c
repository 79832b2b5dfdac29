/* stats.c - what the broker tells the outside: its stats as JSON text
 * (schema in docs/protocol.md) and its log lines (dq_broker_log).
 *
 * JSON rather than a msgpack map so that `scripts/cluster status` and a
 * human can read it without a decoder. Written by hand with an appending
 * printf into the broker's reusable buffer: stats requests are rare, and
 * names are escaped because a service name is any UTF-8 a client sent.
 */
#include "broker/broker_int.h"

#include <stdarg.h>
#include <string.h>
#include <time.h>

void dq_broker_log(dq_broker_t *b, const char *fmt, ...)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    char line[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(b->log, "%s.%03ldZ distillq-broker: %s\n", stamp, ts.tv_nsec / 1000000, line);
    fflush(b->log);
}

typedef struct {
    dq_msg_buf *buf;
    dq_status st;
    dq_err *err;
} s_out;

static void s_printf(s_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void s_printf(s_out *o, const char *fmt, ...)
{
    if (o->st) return;
    for (int attempt = 0; attempt < 2; attempt++) {
        size_t room = o->buf->cap - o->buf->len;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf((char *)o->buf->data + o->buf->len, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->st = dq_fail(o->err, DQ_ERR_FORMAT, "stats: formatting failed");
            return;
        }
        if ((size_t)n < room) {
            o->buf->len += (size_t)n;
            return;
        }
        o->st = dq_msg_buf_reserve(o->buf, (size_t)n + 1, o->err);
        if (o->st) return;
    }
}

static void s_str(s_out *o, const char *s)
{
    s_printf(o, "\"");
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\') s_printf(o, "\\%c", *c);
        else if (*c < 0x20) s_printf(o, "\\u%04x", *c);
        else s_printf(o, "%c", *c);
    }
    s_printf(o, "\"");
}

static void s_dims(s_out *o, const int64_t *d, int n)
{
    s_printf(o, "[");
    for (int i = 0; i < n; i++) s_printf(o, "%s%lld", i ? ", " : "", (long long)d[i]);
    s_printf(o, "]");
}

static double s_mean(double sum, uint64_t n)
{
    return n ? sum / (double)n : 0.0;
}

static void s_service(s_out *o, const dq_broker_t *b, int32_t si)
{
    const dq_bservice *s = &b->services[si];
    s_printf(o, "{\"name\": ");
    s_str(o, s->name);
    if (s->has_identity) {
        const dq_msg_ready *id = &s->identity;
        s_printf(o, ", \"model\": ");
        s_str(o, id->teacher.model);
        s_printf(o, ", \"sha256\": \"%s\", \"input\": ", id->teacher.sha256);
        s_dims(o, id->input, 3);
        s_printf(o, ", \"dtypes\": [");
        const char *sep = "";
        for (int d = 0; d < DQ_DTYPE_COUNT; d++)
            if (id->dtypes & (1u << d)) {
                s_printf(o, "%s\"%s\"", sep, dq_msg_dtype_name((dq_msg_dtype)d));
                sep = ", ";
            }
        s_printf(o, "], \"max_batch\": %u, ", id->max_batch);
        if (id->n_norm > 0) { /* what a u8 request implies: (x / 255 - mean) / std */
            s_printf(o, "\"mean\": [");
            for (int c = 0; c < id->n_norm; c++) s_printf(o, "%s%.9g", c ? ", " : "", id->mean[c]);
            s_printf(o, "], \"std\": [");
            for (int c = 0; c < id->n_norm; c++) s_printf(o, "%s%.9g", c ? ", " : "", id->std[c]);
            s_printf(o, "], ");
        }
        s_printf(o, "\"outputs\": [");
        for (int i = 0; i < id->n_outputs; i++) {
            s_printf(o, "%s{\"name\": ", i ? ", " : "");
            s_str(o, id->outputs[i].name);
            s_printf(o, ", \"shape\": ");
            s_dims(o, id->outputs[i].shape, id->outputs[i].ndim);
            s_printf(o, "}");
        }
        s_printf(o, "]");
    }
    int inflight = 0;
    for (int32_t i = 0; i < b->worker_hi; i++)
        if (b->workers[i].used && b->workers[i].service == si)
            inflight += (int)b->workers[i].in_flight;
    s_printf(o,
             ", \"queue\": %d, \"in_flight\": %d, \"served\": %llu, \"errors\": %llu, "
             "\"requeues\": %llu, \"timeouts\": %llu, \"overloaded\": %llu, "
             "\"bad_requests\": %llu, \"mean_service_ms\": %.3f, \"workers\": [",
             s->queued, inflight, (unsigned long long)s->served,
             (unsigned long long)s->errors, (unsigned long long)s->requeues,
             (unsigned long long)s->timeouts, (unsigned long long)s->overloaded,
             (unsigned long long)s->bad_requests, s_mean(s->service_ms_sum, s->served));
    const char *sep = "";
    for (int32_t i = 0; i < b->worker_hi; i++) {
        const dq_bworker *w = &b->workers[i];
        if (!w->used || w->service != si) continue;
        s_printf(o,
                 "%s{\"id\": \"%s\", \"capacity\": %u, \"in_flight\": %u, \"served\": %llu, "
                 "\"errors\": %llu, \"requeues\": %llu, \"mean_service_ms\": %.3f, "
                 "\"draining\": %s}",
                 sep, w->id_hex, w->capacity, w->in_flight, (unsigned long long)w->served,
                 (unsigned long long)w->errors, (unsigned long long)w->requeues,
                 s_mean(w->service_ms_sum, w->served), w->draining ? "true" : "false");
        sep = ", ";
    }
    s_printf(o, "], \"clients\": [");
    sep = "";
    for (int32_t i = 0; i < b->flow_hi; i++) {
        const dq_bflow *f = &b->flows[i];
        if (!f->used || f->service != si) continue;
        s_printf(o, "%s{\"name\": ", sep);
        s_str(o, f->name);
        s_printf(o,
                 ", \"weight\": %u, \"queue\": %d, \"requests\": %llu, \"dispatched\": %llu, "
                 "\"overloaded\": %llu, \"bytes_held\": %lld}",
                 f->weight, f->queue.count, (unsigned long long)f->requests,
                 (unsigned long long)f->dispatched, (unsigned long long)f->overloaded,
                 (long long)f->bytes);
        sep = ", ";
    }
    s_printf(o, "]}");
}

dq_status dq_broker_stats_json(dq_broker_t *b, int64_t now, dq_err *err)
{
    s_out o = {&b->json, DQ_OK, err};
    dq_msg_buf_reset(&b->json);
    s_printf(&o,
             "{\"epoch\": \"%016llx\", \"uptime_ms\": %lld, \"queued\": %d, \"in_flight\": %d, "
             "\"workers\": %d, \"requests\": %llu, \"replies\": %llu, \"rejected\": %llu, "
             "\"malformed\": %llu, \"late_dropped\": %llu, \"duplicates\": %llu, "
             "\"undeliverable\": %llu, \"worker_send_failed\": %llu, \"bad_replies\": %llu, "
             "\"auth_refused\": %llu, \"handshake_failed\": %llu, \"bytes_held\": %lld, "
             "\"bytes_held_peak\": %lld, \"max_queue_bytes\": %lld, \"max_client_bytes\": %lld, "
             "\"over_budget\": %llu, \"services\": [",
             (unsigned long long)b->epoch, (long long)(now - b->start_ms), b->queued, b->inflight,
             b->n_workers, (unsigned long long)b->n_requests, (unsigned long long)b->n_replies,
             (unsigned long long)b->n_rejected, (unsigned long long)b->n_malformed,
             (unsigned long long)b->n_late, (unsigned long long)b->n_dup,
             (unsigned long long)b->n_undeliverable, (unsigned long long)b->n_worker_send_failed,
             (unsigned long long)b->n_bad_replies, (unsigned long long)b->n_auth_refused,
             (unsigned long long)b->n_handshake_failed,
             (long long)b->held_bytes, (long long)b->held_bytes_peak,
             (long long)b->cfg.max_queue_bytes, (long long)dq_budget_client_limit(b),
             (unsigned long long)b->n_over_budget);
    const char *sep = "";
    for (int32_t i = 0; i < b->service_hi; i++) {
        if (!b->services[i].used) continue;
        s_printf(&o, "%s", sep);
        s_service(&o, b, i);
        sep = ", ";
    }
    s_printf(&o, "]}");
    return o.st;
}
