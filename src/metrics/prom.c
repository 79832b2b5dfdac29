/* prom.c - Prometheus text format writer (see prom.h). */
#include "metrics/prom.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void s_append(dq_prom *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_append(dq_prom *p, const char *fmt, ...)
{
    if (p->oom) return;
    for (int attempt = 0; attempt < 2; attempt++) {
        size_t room = p->cap - p->len;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(p->data ? p->data + p->len : NULL, p->data ? room : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            p->oom = true;
            return;
        }
        if (p->data && (size_t)n < room) {
            p->len += (size_t)n;
            return;
        }
        size_t want = p->len + (size_t)n + 1, cap = p->cap ? p->cap : 4096;
        while (cap < want) cap *= 2;
        char *d = realloc(p->data, cap);
        if (!d) {
            p->oom = true;
            return;
        }
        p->data = d;
        p->cap = cap;
    }
}

void dq_prom_reset(dq_prom *p)
{
    p->len = 0;
    p->oom = false;
    if (p->data) p->data[0] = '\0';
}

void dq_prom_free(dq_prom *p)
{
    free(p->data);
    memset(p, 0, sizeof *p);
}

void dq_prom_family(dq_prom *p, const char *name, const char *type, const char *help)
{
    s_append(p, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void s_value(char *out, size_t cap, double v)
{
    if (isinf(v)) snprintf(out, cap, "%s", v > 0 ? "+Inf" : "-Inf");
    else if (isnan(v)) snprintf(out, cap, "NaN");
    else if (v == floor(v) && fabs(v) < 1e15) snprintf(out, cap, "%.0f", v);
    else snprintf(out, cap, "%.9g", v);
}

void dq_prom_sample(dq_prom *p, const char *name, const char *labels, double v)
{
    char num[64];
    s_value(num, sizeof num, v);
    if (labels && labels[0]) s_append(p, "%s{%s} %s\n", name, labels, num);
    else s_append(p, "%s %s\n", name, num);
}

void dq_prom_labels(char *out, size_t cap, int n, ...)
{
    size_t j = 0;
    if (cap) out[0] = '\0';
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++) {
        const char *k = va_arg(ap, const char *), *v = va_arg(ap, const char *);
        int w = snprintf(out + j, j < cap ? cap - j : 0, "%s%s=\"", i ? "," : "", k);
        if (w < 0) break;
        j += (size_t)w;
        for (const char *c = v; *c && j + 3 < cap; c++) {
            if (*c == '\\' || *c == '"') out[j++] = '\\', out[j++] = *c;
            else if (*c == '\n') out[j++] = '\\', out[j++] = 'n';
            else out[j++] = *c;
        }
        if (j + 1 < cap) out[j++] = '"';
        if (j < cap) out[j] = '\0';
    }
    va_end(ap);
    if (cap) out[j < cap ? j : cap - 1] = '\0';
}

void dq_prom_hist_init_seconds(dq_prom_hist *h)
{
    static const double le[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                0.25,  0.5,    1,     2.5,  5,     10,   60};
    memset(h, 0, sizeof *h);
    h->n = (int)(sizeof le / sizeof le[0]);
    memcpy(h->le, le, sizeof le);
}

void dq_prom_hist_observe(dq_prom_hist *h, double v)
{
    int i = 0;
    while (i < h->n && v > h->le[i]) i++;
    h->count[i]++;
    h->sum += v;
    h->total++;
}

void dq_prom_hist_write(dq_prom *p, const char *name, const char *labels, const dq_prom_hist *h)
{
    const char *sep = labels && labels[0] ? "," : "";
    uint64_t cum = 0;
    for (int i = 0; i <= h->n; i++) {
        cum += h->count[i];
        char le[32];
        if (i == h->n) snprintf(le, sizeof le, "+Inf");
        else s_value(le, sizeof le, h->le[i]);
        s_append(p, "%s_bucket{%s%sle=\"%s\"} %llu\n", name, labels ? labels : "", sep, le,
                 (unsigned long long)cum);
    }
    char sum[64];
    s_value(sum, sizeof sum, h->sum);
    if (labels && labels[0]) {
        s_append(p, "%s_sum{%s} %s\n", name, labels, sum);
        s_append(p, "%s_count{%s} %llu\n", name, labels, (unsigned long long)h->total);
    } else {
        s_append(p, "%s_sum %s\n", name, sum);
        s_append(p, "%s_count %llu\n", name, (unsigned long long)h->total);
    }
}
