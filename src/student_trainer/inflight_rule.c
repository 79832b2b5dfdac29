/* inflight_rule.c - the default --inflight (see inflight_rule.h). */
#include "student_trainer/inflight_rule.h"

#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

int64_t dq_inflight_rule(int64_t capacity, double probe_ms, double rtt_ms)
{
    if (capacity < 1) capacity = 1;
    double f = probe_ms - rtt_ms;       /* time a batch holds a worker slot */
    if (f < 0.5) f = 0.5;               /* clock granularity, tiny teachers */
    if (probe_ms < f) probe_ms = f;
    double k = ceil(2.0 * (double)capacity * probe_ms / f);
    if (!(k >= DQ_INFLIGHT_MIN)) k = DQ_INFLIGHT_MIN;
    if (k > DQ_INFLIGHT_MAX) k = DQ_INFLIGHT_MAX;
    return (int64_t)k;
}

dq_status dq_inflight_capacity(const char *stats_json, const char *service, int64_t *capacity,
                               dq_err *err)
{
    *capacity = 0;
    json_error_t jerr;
    json_t *root = json_loads(stats_json, 0, &jerr);
    if (!root) return dq_fail(err, DQ_ERR_FORMAT, "broker stats: %s", jerr.text);
    json_t *svcs = json_object_get(root, "services");
    size_t i;
    json_t *s;
    bool found = false;
    json_array_foreach(svcs, i, s) {
        const char *name = json_string_value(json_object_get(s, "name"));
        if (!name || strcmp(name, service) != 0) continue;
        found = true;
        size_t j;
        json_t *w;
        json_array_foreach(json_object_get(s, "workers"), j, w) {
            if (json_is_true(json_object_get(w, "draining"))) continue;
            *capacity += (int64_t)json_integer_value(json_object_get(w, "capacity"));
        }
    }
    json_decref(root);
    if (!found)
        return dq_fail(err, DQ_ERR_NOT_FOUND, "broker stats: no service '%s'", service);
    return DQ_OK;
}
