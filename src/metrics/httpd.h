/* httpd.h - `--metrics HOST:PORT`: serves GET /metrics with libmicrohttpd
 * from its own thread, off the broker's or worker's message loop.
 *
 * The loop builds the page (prom.h) from its own counters whenever it
 * likes (each tick) and publishes it; the server copies the last published
 * page under a mutex for each scrape. So a scrape never waits for the
 * loop, and the loop never waits for a scrape beyond one memcpy.
 */
#ifndef DQ_METRICS_HTTPD_H
#define DQ_METRICS_HTTPD_H

#include <stddef.h>

#include "base/status.h"

typedef struct dq_metrics_http dq_metrics_http_t;

/* Listens on HOST:PORT ("127.0.0.1:9101", "0.0.0.0:9101", ":9101" = all). */
dq_status dq_metrics_http_start(dq_metrics_http_t **out, const char *hostport, dq_err *err);
/* Replaces the page served (copied). */
void dq_metrics_http_publish(dq_metrics_http_t *h, const char *text, size_t len);
/* The port actually bound (for HOST:0). */
int dq_metrics_http_port(const dq_metrics_http_t *h);
void dq_metrics_http_stop(dq_metrics_http_t **p);

#endif
