/* prom.h - the Prometheus text exposition format (version 0.0.4), written
 * into a growable buffer: metric families (# HELP, # TYPE), samples with
 * escaped label values, and fixed-bucket histograms.
 *
 * The broker and the teacher worker build their /metrics page with this in
 * their own thread (from their own counters, no locks needed there) and
 * hand the finished text to the HTTP server (httpd.h), which serves the
 * last page from another thread. Names follow Prometheus conventions:
 * distillq_<component>_<what>_<unit>, counters end in _total, durations
 * are in seconds.
 */
#ifndef DQ_METRICS_PROM_H
#define DQ_METRICS_PROM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *data;
    size_t len, cap;
    bool oom;           /* an append failed: the page is incomplete */
} dq_prom;

void dq_prom_reset(dq_prom *p);   /* len = 0, keeps the memory */
void dq_prom_free(dq_prom *p);

/* "# HELP name help" and "# TYPE name type" (counter, gauge, histogram). */
void dq_prom_family(dq_prom *p, const char *name, const char *type, const char *help);
/* One sample; labels is "" or the inside of {...} as dq_prom_labels makes it. */
void dq_prom_sample(dq_prom *p, const char *name, const char *labels, double v);

/* Writes n (key, value) pairs, values escaped, as k1="v1",k2="v2" into out. */
void dq_prom_labels(char *out, size_t cap, int n, ...);

#define DQ_PROM_MAX_BUCKETS 16

typedef struct {
    int n;                                   /* finite upper bounds */
    double le[DQ_PROM_MAX_BUCKETS];
    uint64_t count[DQ_PROM_MAX_BUCKETS + 1]; /* per bucket, not cumulative; last: +Inf */
    double sum;
    uint64_t total;
} dq_prom_hist;

/* Seconds from 1 ms to 60 s, for request and forward times. */
void dq_prom_hist_init_seconds(dq_prom_hist *h);
void dq_prom_hist_observe(dq_prom_hist *h, double v);
/* name_bucket{labels,le="..."} (cumulative), name_sum, name_count. */
void dq_prom_hist_write(dq_prom *p, const char *name, const char *labels, const dq_prom_hist *h);

#endif
