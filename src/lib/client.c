/* client.c - libdistillq's client side (include/distillq.h): a thin skin
 * over the ordered client (src/client/ordered.c), which is what
 * distillq-predict --teacher runs, so the resend / restart / exactly-once
 * logic exists once. This file only converts types and error codes.
 */
#include "lib/lib_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/ordered.h"

_Static_assert(DISTILLQ_MAX_OUTPUTS == DQ_MSG_MAX_OUTPUTS, "public and wire output counts");
_Static_assert(DISTILLQ_MAX_DIMS == DQ_MSG_MAX_DIMS, "public and wire ranks");
_Static_assert(DISTILLQ_MAX_CHANNELS == DQ_MSG_MAX_CHANNELS, "public and wire channels");
_Static_assert(DISTILLQ_NAME_MAX == DQ_MSG_NAME_MAX, "public and wire names");
_Static_assert(DISTILLQ_U8 == DQ_DTYPE_U8 && DISTILLQ_F32 == DQ_DTYPE_F32, "dtype values");

struct distillq_client {
    dq_ordered_t *o;
};

int dq_lib_code(dq_status st)
{
    switch (st) {
    case DQ_OK: return DISTILLQ_OK;
    case DQ_ERR_NOMEM: return DISTILLQ_ENOMEM;
    case DQ_ERR_ARG: case DQ_ERR_SHAPE: case DQ_ERR_FORMAT: return DISTILLQ_EARG;
    case DQ_ERR_NOT_FOUND: return DISTILLQ_ENOTFOUND;
    case DQ_ERR_UNSUPPORTED: return DISTILLQ_ETEACHER;
    case DQ_ERR_INTERRUPTED: return DISTILLQ_EINTR;
    case DQ_ERR_PROTO: return DISTILLQ_EPROTO;
    case DQ_ERR_TIMEOUT: return DISTILLQ_ETIMEOUT;
    case DQ_ERR_NET: case DQ_ERR_UNREACHABLE: return DISTILLQ_ENET;
    case DQ_ERR_OVERLOADED: return DISTILLQ_EAGAIN;
    case DQ_ERR_AUTH: return DISTILLQ_EAUTH;
    default: return DISTILLQ_EOTHER;
    }
}

int dq_lib_fail(distillq_error *out, dq_status st, const dq_err *e)
{
    int code = dq_lib_code(st);
    if (out) {
        out->code = code;
        snprintf(out->msg, sizeof out->msg, "%s", code == DISTILLQ_OK ? "" : e->msg);
    }
    return code;
}

const char *distillq_strerror(int code)
{
    switch (code) {
    case DISTILLQ_OK: return "DISTILLQ_OK";
    case DISTILLQ_EARG: return "DISTILLQ_EARG";
    case DISTILLQ_ENOMEM: return "DISTILLQ_ENOMEM";
    case DISTILLQ_ENET: return "DISTILLQ_ENET";
    case DISTILLQ_EPROTO: return "DISTILLQ_EPROTO";
    case DISTILLQ_ETIMEOUT: return "DISTILLQ_ETIMEOUT";
    case DISTILLQ_EAGAIN: return "DISTILLQ_EAGAIN";
    case DISTILLQ_ENOTFOUND: return "DISTILLQ_ENOTFOUND";
    case DISTILLQ_EINTR: return "DISTILLQ_EINTR";
    case DISTILLQ_ETEACHER: return "DISTILLQ_ETEACHER";
    case DISTILLQ_EAUTH: return "DISTILLQ_EAUTH";
    default: return "DISTILLQ_EOTHER";
    }
}

void distillq_client_opts_default(distillq_client_opts *o)
{
    memset(o, 0, sizeof *o);
    o->inflight = 16;
    o->request_timeout_ms = 60000;
    o->resend_ms = 60000;
    o->heartbeat_ms = 1000;
}

int distillq_client_open(distillq_client **out, const char *url, const distillq_client_opts *opts,
                         distillq_error *err)
{
    dq_err e = {{0}};
    *out = NULL;
    distillq_client_opts po;
    if (opts) po = *opts;
    else distillq_client_opts_default(&po);
    if (!url) return dq_lib_fail(err, dq_fail(&e, DQ_ERR_ARG, "client: no teacher URL"), &e);
    if (po.inflight < 1 || po.request_timeout_ms < 0 || po.resend_ms < 0 || po.heartbeat_ms < 1)
        return dq_lib_fail(err, dq_fail(&e, DQ_ERR_ARG, "client %s: inflight and heartbeat_ms "
                                        "must be >= 1, timeouts >= 0", url), &e);
    dq_client_opts co;
    dq_client_opts_default(&co);
    co.max_inflight = po.inflight;
    co.request_timeout_ms = po.request_timeout_ms;
    co.resend_ms = po.resend_ms;
    co.heartbeat_ms = po.heartbeat_ms;
    co.curve_server_cert = po.curve_server_cert;
    co.curve_cert = po.curve_cert;
    co.name = po.name;
    distillq_client *c = calloc(1, sizeof *c);
    if (!c) return dq_lib_fail(err, dq_fail(&e, DQ_ERR_NOMEM, "client: out of memory"), &e);
    dq_status st = dq_ordered_new(&c->o, url, &co, &e);
    if (st != DQ_OK) {
        free(c);
        return dq_lib_fail(err, st, &e);
    }
    *out = c;
    return dq_lib_fail(err, DQ_OK, &e);
}

void distillq_client_close(distillq_client **p)
{
    if (!p || !*p) return;
    dq_ordered_destroy(&(*p)->o);
    free(*p);
    *p = NULL;
}

int distillq_client_info(distillq_client *c, distillq_service_info *info, int timeout_ms,
                         distillq_error *err)
{
    dq_err e = {{0}};
    dq_msg_ready r;
    int nw = 0;
    memset(info, 0, sizeof *info);
    dq_status st = dq_ordered_info(c->o, &r, &nw, timeout_ms, &e);
    if (st != DQ_OK) return dq_lib_fail(err, st, &e);
    memcpy(info->service, r.teacher.service, sizeof info->service);
    memcpy(info->model, r.teacher.model, sizeof info->model);
    memcpy(info->sha256, r.teacher.sha256, sizeof info->sha256);
    memcpy(info->input, r.input, sizeof info->input);
    info->dtypes = (int)r.dtypes;
    info->n_norm = r.n_norm;
    memcpy(info->mean, r.mean, sizeof info->mean);
    memcpy(info->std, r.std, sizeof info->std);
    info->n_outputs = r.n_outputs;
    for (int i = 0; i < r.n_outputs; i++) {
        memcpy(info->output_names[i], r.outputs[i].name, sizeof info->output_names[i]);
        info->output_ndim[i] = r.outputs[i].ndim;
        memcpy(info->output_shape[i], r.outputs[i].shape, sizeof info->output_shape[i]);
    }
    info->max_batch = r.max_batch;
    info->n_workers = nw;
    info->capacity = (int)r.capacity;
    return dq_lib_fail(err, DQ_OK, &e);
}

int distillq_client_submit(distillq_client *c, int dtype, const int64_t shape[4],
                           const void *data, int n_outputs, const char *const *outputs,
                           uint64_t *seq, distillq_error *err)
{
    dq_err e = {{0}};
    if (dtype != DISTILLQ_U8 && dtype != DISTILLQ_F32)
        return dq_lib_fail(err, dq_fail(&e, DQ_ERR_ARG, "service %s: dtype %d is neither "
                                        "DISTILLQ_U8 nor DISTILLQ_F32",
                                        dq_ordered_service(c->o), dtype), &e);
    if (!data || !shape)
        return dq_lib_fail(err, dq_fail(&e, DQ_ERR_ARG, "service %s: no batch data",
                                        dq_ordered_service(c->o)), &e);
    dq_status st = dq_ordered_submit(c->o, (dq_msg_dtype)dtype, shape, data, n_outputs, outputs,
                                     seq, &e);
    return dq_lib_fail(err, st, &e);
}

int distillq_client_next(distillq_client *c, distillq_result *out, int timeout_ms,
                         distillq_error *err)
{
    dq_err e = {{0}};
    const dq_ordered_result *r = NULL;
    memset(out, 0, sizeof *out);
    dq_status st = dq_ordered_next(c->o, &r, timeout_ms, &e);
    if (st == DQ_ERR_TIMEOUT && !dq_ordered_broken(c->o))
        return dq_lib_fail(err, dq_fail(&e, DQ_ERR_OVERLOADED, "service %s: no result yet",
                                        dq_ordered_service(c->o)), &e);
    if (st != DQ_OK) return dq_lib_fail(err, st, &e);
    out->seq = r->seq;
    out->n_outputs = r->n_outputs;
    for (int i = 0; i < r->n_outputs; i++) {
        out->outputs[i].name = r->outputs[i].name;
        out->outputs[i].ndim = r->outputs[i].ndim;
        out->outputs[i].shape = r->outputs[i].shape;
        out->outputs[i].data = r->outputs[i].data;
    }
    out->model = r->teacher.model;
    out->sha256 = r->teacher.sha256;
    out->impl = r->impl;
    out->teacher_changed = r->teacher_changed;
    out->sends = r->sends;
    return dq_lib_fail(err, DQ_OK, &e);
}

int distillq_client_pending(const distillq_client *c)
{
    return dq_ordered_pending(c->o);
}
