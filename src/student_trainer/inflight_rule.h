/* inflight_rule.h - how many batches a service student keeps at the teachers.
 *
 * The rule (Little's law; docs/scaling.md): a batch occupies a worker slot
 * for f = the worker's forward time plus the broker-worker round trip, and
 * the student waits T = f + the student-broker round trip for it. With C
 * worker slots (sum of the service's worker capacities) all busy, the pool
 * serves C / f batches per second, so C * T / f batches are in flight at
 * any moment; twice that absorbs jitter and the student's own step:
 *     K = clamp(ceil(2 * C * T / f), 4, 256)
 * At zero delay T ~ f and K ~ 2 C (the old "2 x workers" default); at 20 ms
 * one-way delay with f = 10 ms, T = 50 ms and K = 10 C. T is measured by
 * the start-up probe (one full batch), the student-broker round trip by
 * broker stats requests (no teacher work), C from the same stats.
 */
#ifndef DQ_INFLIGHT_RULE_H
#define DQ_INFLIGHT_RULE_H

#include <stdint.h>

#include "base/status.h"

#define DQ_INFLIGHT_MIN 4
#define DQ_INFLIGHT_MAX 256

/* K from the service's slots C (>= 1), the probe's round trip T and the
 * student-broker round trip rtt (milliseconds). */
int64_t dq_inflight_rule(int64_t capacity, double probe_ms, double rtt_ms);

/* The summed capacity of the workers of `service` in a broker stats JSON
 * (draining workers excluded); DQ_ERR_NOT_FOUND when the service is absent. */
dq_status dq_inflight_capacity(const char *stats_json, const char *service, int64_t *capacity,
                               dq_err *err);

#endif
