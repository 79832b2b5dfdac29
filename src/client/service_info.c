/* service_info.c - a service's announce read back from the broker's stats
 * (dq_ordered_info): what a client needs to know before it sends anything
 * (model, teacher sha256, input shape, dtypes, the normalisation a u8
 * request implies, outputs, batch limit). The stats JSON (docs/protocol.md
 * 3) is the one place the broker publishes announces, so no new message
 * type is needed; jansson parses it.
 */
#include "client/ordered.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

static dq_status s_name(char *dst, json_t *v, const char *what, dq_err *err)
{
    const char *s = json_string_value(v);
    if (!s || strlen(s) > DQ_MSG_NAME_MAX)
        return dq_fail(err, DQ_ERR_PROTO, "broker stats: service '%s' is missing or too long",
                       what);
    strcpy(dst, s);
    return DQ_OK;
}

static dq_status s_dims(json_t *a, int64_t *dims, int max, int *n, const char *what, dq_err *err)
{
    if (!json_is_array(a) || (int)json_array_size(a) > max)
        return dq_fail(err, DQ_ERR_PROTO, "broker stats: service '%s' is not a shape", what);
    *n = (int)json_array_size(a);
    for (int i = 0; i < *n; i++) dims[i] = (int64_t)json_integer_value(json_array_get(a, i));
    return DQ_OK;
}

static dq_status s_parse(json_t *svc, dq_msg_ready *info, int *n_workers, dq_err *err)
{
    memset(info, 0, sizeof *info);
    DQ_TRY(s_name(info->teacher.service, json_object_get(svc, "name"), "name", err));
    DQ_TRY(s_name(info->teacher.model, json_object_get(svc, "model"), "model", err));
    const char *sha = json_string_value(json_object_get(svc, "sha256"));
    if (!sha || strlen(sha) != DQ_MSG_SHA256_HEX)
        return dq_fail(err, DQ_ERR_PROTO, "broker stats: service sha256 missing");
    strcpy(info->teacher.sha256, sha);
    int n = 0;
    DQ_TRY(s_dims(json_object_get(svc, "input"), info->input, 3, &n, "input", err));
    if (n != 3) return dq_fail(err, DQ_ERR_PROTO, "broker stats: service input is not c, h, w");
    json_t *dt = json_object_get(svc, "dtypes"), *v;
    size_t i;
    json_array_foreach(dt, i, v) {
        const char *s = json_string_value(v);
        if (s && strcmp(s, "u8") == 0) info->dtypes |= 1u << DQ_DTYPE_U8;
        if (s && strcmp(s, "f32") == 0) info->dtypes |= 1u << DQ_DTYPE_F32;
    }
    info->max_batch = (uint32_t)json_integer_value(json_object_get(svc, "max_batch"));
    json_t *mean = json_object_get(svc, "mean"), *sd = json_object_get(svc, "std");
    if (json_is_array(mean) && json_is_array(sd) && json_array_size(mean) == json_array_size(sd) &&
        json_array_size(mean) == (size_t)info->input[0] &&
        json_array_size(mean) <= DQ_MSG_MAX_CHANNELS) {
        info->n_norm = (int)json_array_size(mean);
        for (int c = 0; c < info->n_norm; c++) {
            info->mean[c] = (float)json_number_value(json_array_get(mean, (size_t)c));
            info->std[c] = (float)json_number_value(json_array_get(sd, (size_t)c));
        }
    }
    json_t *outs = json_object_get(svc, "outputs");
    json_array_foreach(outs, i, v) {
        if (i >= DQ_MSG_MAX_OUTPUTS) break;
        DQ_TRY(s_name(info->outputs[i].name, json_object_get(v, "name"), "output name", err));
        DQ_TRY(s_dims(json_object_get(v, "shape"), info->outputs[i].shape, DQ_MSG_MAX_DIMS - 1,
                      &info->outputs[i].ndim, "output shape", err));
        info->n_outputs = (int)i + 1;
    }
    json_t *ws = json_object_get(svc, "workers");
    *n_workers = 0;
    uint64_t cap = 0;
    json_array_foreach(ws, i, v) {
        cap += (uint64_t)json_integer_value(json_object_get(v, "capacity"));
        (*n_workers)++;
    }
    info->capacity = (uint32_t)cap;
    return DQ_OK;
}

dq_status dq_ordered_info(dq_ordered_t *o, dq_msg_ready *info, int *n_workers, int timeout_ms,
                          dq_err *err)
{
    const char *service = dq_ordered_service(o);
    char *text = NULL;
    dq_status st = dq_client_stats(dq_ordered_client(o), &text, timeout_ms, err);
    if (st == DQ_ERR_TIMEOUT || st == DQ_ERR_NET)
        return dq_fail(err, st, "service %s: the broker did not answer within %d ms (is it "
                       "running?)", service, timeout_ms);
    DQ_TRY(st);
    json_error_t je;
    json_t *root = json_loads(text, 0, &je);
    free(text);
    if (!root) return dq_fail(err, DQ_ERR_PROTO, "broker stats: not JSON: %s", je.text);
    json_t *svcs = json_object_get(root, "services"), *v;
    size_t i;
    st = dq_fail(err, DQ_ERR_NOT_FOUND, "unknown service '%s': no worker of it is live at the "
                 "broker", service);
    json_array_foreach(svcs, i, v) {
        const char *name = json_string_value(json_object_get(v, "name"));
        if (!name || strcmp(name, service) != 0) continue;
        if (!json_object_get(v, "sha256")) break; /* known, but never announced */
        int nw = 0;
        st = s_parse(v, info, &nw, err);
        if (st == DQ_OK && nw == 0)
            st = dq_fail(err, DQ_ERR_NOT_FOUND, "service '%s': no live worker now (model %s "
                         "was served before)", service, info->teacher.model);
        if (n_workers) *n_workers = nw;
        break;
    }
    json_decref(root);
    return st;
}
