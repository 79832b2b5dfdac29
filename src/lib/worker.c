/* worker.c - libdistillq's worker side (include/distillq.h): a caller's
 * forward callback as the model of the one worker state machine
 * (src/teacher_worker/worker.c, what distillq-teacher runs).
 *
 * The model here checks a request against the announce (service, dtype,
 * c x h x w, batch limit, output names), turns u8 into float exactly as
 * the C teacher does (a per-channel table of (v / 255 - mean) / std in
 * float: bit-identical to torchvision's ToTensor + Normalize), calls the
 * forward once per request on the worker's compute thread, and encodes the
 * reply (outputs in request order, the teacher identity, "impl"). The input
 * and output buffers grow to the largest batch seen and are reused.
 */
#include "lib/lib_int.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "teacher_worker/teacher.h"
#include "teacher_worker/worker.h"

typedef struct {
    dq_msg_ready announce;           /* capacity filled by the worker */
    char impl[DQ_MSG_IMPL_MAX + 1];
    distillq_forward_fn forward;
    void *user;
    int64_t per_out[DQ_MSG_MAX_OUTPUTS];  /* floats per sample of each output */
    float lut[DQ_MSG_MAX_CHANNELS][256];
    float *input;
    size_t input_cap;                /* floats */
    float *out[DQ_MSG_MAX_OUTPUTS];
    size_t out_cap[DQ_MSG_MAX_OUTPUTS];
} s_model;

struct distillq_worker {
    dq_worker_t *w;
    volatile sig_atomic_t stop;
    char broker[1024];
    char service[DQ_MSG_NAME_MAX + 1];
};

/* ---- the model ------------------------------------------------------------------ */

static void s_announce(void *ctx, dq_msg_ready *ready)
{
    *ready = ((s_model *)ctx)->announce;
}

static const dq_msg_teacher *s_identity(void *ctx)
{
    return &((s_model *)ctx)->announce.teacher;
}

static int64_t s_max_data_bytes(void *ctx)
{
    const dq_msg_ready *a = &((s_model *)ctx)->announce;
    return (int64_t)a->max_batch * a->input[0] * a->input[1] * a->input[2] * 4;
}

static int s_output_index(const s_model *m, const char *name)
{
    for (int j = 0; j < m->announce.n_outputs; j++)
        if (strcmp(m->announce.outputs[j].name, name) == 0) return j;
    return -1;
}

static dq_status s_check(void *ctx, const dq_msg_request *r, dq_err *err)
{
    const s_model *m = ctx;
    const dq_msg_ready *a = &m->announce;
    const char *svc = a->teacher.service;
    if (strcmp(r->service, svc) != 0)
        return dq_fail(err, DQ_ERR_ARG, "service %s: request for service '%s'", svc, r->service);
    if (!(a->dtypes & (1u << r->dtype)))
        return dq_fail(err, DQ_ERR_ARG, "service %s: dtype %s not accepted (no normalisation "
                       "announced: send f32)", svc, dq_msg_dtype_name(r->dtype));
    if (r->shape[1] != a->input[0] || r->shape[2] != a->input[1] || r->shape[3] != a->input[2])
        return dq_fail(err, DQ_ERR_ARG, "service %s: takes %lldx%lldx%lld inputs, request has "
                       "%lldx%lldx%lld", svc, (long long)a->input[0], (long long)a->input[1],
                       (long long)a->input[2], (long long)r->shape[1], (long long)r->shape[2],
                       (long long)r->shape[3]);
    if (r->shape[0] > (int64_t)a->max_batch)
        return dq_fail(err, DQ_ERR_ARG, "service %s: batch of %lld, at most %u", svc,
                       (long long)r->shape[0], a->max_batch);
    for (int i = 0; i < r->n_outputs; i++)
        if (s_output_index(m, r->outputs[i]) < 0)
            return dq_fail(err, DQ_ERR_ARG, "service %s: no output '%s'", svc, r->outputs[i]);
    return DQ_OK;
}

static dq_status s_grow(float **p, size_t *cap, size_t want, dq_err *err)
{
    if (want <= *cap) return DQ_OK;
    float *n = realloc(*p, want * sizeof(float));
    if (!n) return dq_fail(err, DQ_ERR_NOMEM, "worker: out of memory (%zu floats)", want);
    *p = n;
    *cap = want;
    return DQ_OK;
}

/* One request: input, forward, reply (ok, or error with the callback's reason). */
static dq_status s_serve_one(s_model *m, const dq_msg_request *r, dq_msg_buf *buf, dq_err *err)
{
    const dq_msg_ready *a = &m->announce;
    int64_t n = r->shape[0], plane = a->input[1] * a->input[2], c = a->input[0];
    size_t count = (size_t)(n * c * plane);
    char why[DQ_MSG_ERROR_MAX + 1] = "";
    dq_err e2 = {{0}};
    dq_status st = s_grow(&m->input, &m->input_cap, count, &e2);
    int idx[DQ_MSG_MAX_OUTPUTS];
    float *outs[DQ_MSG_MAX_OUTPUTS];
    const char *names[DQ_MSG_MAX_OUTPUTS];
    for (int i = 0; st == DQ_OK && i < r->n_outputs; i++) {
        idx[i] = s_output_index(m, r->outputs[i]);
        names[i] = r->outputs[i];
        /* the same output twice gets its own buffer: slot i, not idx[i] */
        st = s_grow(&m->out[i], &m->out_cap[i], (size_t)(n * m->per_out[idx[i]]), &e2);
        outs[i] = m->out[i];
    }
    if (st != DQ_OK) {
        snprintf(why, sizeof why, "%.200s", e2.msg);
    } else {
        if (r->dtype == DQ_DTYPE_U8) {
            const uint8_t *in = r->data;
            for (int64_t s = 0; s < n; s++)
                for (int64_t ch = 0; ch < c; ch++) {
                    const float *t = m->lut[ch];
                    int64_t base = (s * c + ch) * plane;
                    for (int64_t k = 0; k < plane; k++) m->input[base + k] = t[in[base + k]];
                }
        } else {
            dq_msg_f32_copy(m->input, r->data, count);
        }
        int64_t shape[4] = {n, c, a->input[1], a->input[2]};
        char msg[DQ_MSG_ERROR_MAX + 1] = "";
        int rc = m->forward(m->user, m->input, shape, r->n_outputs, names, outs, msg, sizeof msg);
        if (rc != 0)
            snprintf(why, sizeof why, "service %.64s: the forward failed: %.160s", a->teacher.service,
                     msg[0] ? msg : "(no reason given)");
    }
    if (why[0]) return dq_msg_encode_error_reply(buf, r->req_id, DQ_REPLY_ERROR, why, err);
    dq_msg_reply rep;
    memset(&rep, 0, sizeof rep);
    rep.req_id = r->req_id;
    rep.status = DQ_REPLY_OK;
    rep.n_outputs = r->n_outputs;
    for (int i = 0; i < r->n_outputs; i++) {
        const dq_msg_output_spec *sp = &a->outputs[idx[i]];
        dq_msg_output *o = &rep.outputs[i];
        memcpy(o->name, sp->name, sizeof o->name);
        o->ndim = sp->ndim + 1;
        o->shape[0] = n;
        memcpy(o->shape + 1, sp->shape, (size_t)sp->ndim * sizeof sp->shape[0]);
        o->data = outs[i];
        o->data_len = (size_t)(n * m->per_out[idx[i]]) * sizeof(float);
    }
    rep.has_teacher = true;
    rep.teacher = a->teacher;
    memcpy(rep.impl, m->impl, sizeof rep.impl);
    return dq_msg_encode_reply(buf, &rep, err);
}

static dq_status s_serve(void *ctx, const dq_msg_request *const *rs, int n, dq_msg_buf *bufs,
                         dq_err *err)
{
    for (int i = 0; i < n; i++) DQ_TRY(s_serve_one(ctx, rs[i], &bufs[i], err));
    return DQ_OK;
}

static void s_destroy(void *ctx)
{
    s_model *m = ctx;
    if (!m) return;
    free(m->input);
    for (int i = 0; i < DQ_MSG_MAX_OUTPUTS; i++) free(m->out[i]);
    free(m);
}

/* ---- the public side --------------------------------------------------------------- */

void distillq_worker_config_default(distillq_worker_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->capacity = 2;
    cfg->heartbeat_ms = 1000;
}

static dq_status s_name(char *dst, const char *s, const char *what, dq_err *err)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > DQ_MSG_NAME_MAX)
        return dq_fail(err, DQ_ERR_ARG, "worker: %s must be 1..%d bytes", what, DQ_MSG_NAME_MAX);
    memcpy(dst, s, n + 1);
    return DQ_OK;
}

/* The announce from the public config, checked. */
static dq_status s_model_new(s_model *m, const distillq_worker_config *cfg, dq_err *err)
{
    dq_msg_ready *a = &m->announce;
    DQ_TRY(s_name(a->teacher.service, cfg->service, "service", err));
    DQ_TRY(s_name(a->teacher.model, cfg->model, "model", err));
    if (!cfg->sha256 || strlen(cfg->sha256) != DQ_MSG_SHA256_HEX ||
        strspn(cfg->sha256, "0123456789abcdef") != DQ_MSG_SHA256_HEX)
        return dq_fail(err, DQ_ERR_ARG, "worker %s: sha256 must be 64 lowercase hex digits",
                       cfg->service);
    memcpy(a->teacher.sha256, cfg->sha256, DQ_MSG_SHA256_HEX + 1);
    for (int i = 0; i < 3; i++) {
        if (cfg->input[i] < 1 || cfg->input[i] > (1 << 20))
            return dq_fail(err, DQ_ERR_ARG, "worker %s: input dim %d is %lld", cfg->service, i,
                           (long long)cfg->input[i]);
        a->input[i] = cfg->input[i];
    }
    a->dtypes = 1u << DQ_DTYPE_F32;
    if (cfg->n_norm != 0) {
        if (cfg->n_norm != cfg->input[0] || cfg->n_norm > DQ_MSG_MAX_CHANNELS)
            return dq_fail(err, DQ_ERR_ARG, "worker %s: mean/std for %d channels, the input has "
                           "%lld (at most %d)", cfg->service, cfg->n_norm,
                           (long long)cfg->input[0], DQ_MSG_MAX_CHANNELS);
        a->dtypes |= 1u << DQ_DTYPE_U8;
        a->n_norm = cfg->n_norm;
        for (int c = 0; c < cfg->n_norm; c++) {
            if (!(cfg->std[c] != 0.0f) || cfg->mean[c] != cfg->mean[c])
                return dq_fail(err, DQ_ERR_ARG, "worker %s: std[%d] is 0 or not a number",
                               cfg->service, c);
            a->mean[c] = cfg->mean[c];
            a->std[c] = cfg->std[c];
            for (int v = 0; v < 256; v++)
                m->lut[c][v] = ((float)v / 255.0f - cfg->mean[c]) / cfg->std[c];
        }
    }
    if (cfg->n_outputs < 1 || cfg->n_outputs > DQ_MSG_MAX_OUTPUTS)
        return dq_fail(err, DQ_ERR_ARG, "worker %s: %d outputs (1..%d)", cfg->service,
                       cfg->n_outputs, DQ_MSG_MAX_OUTPUTS);
    for (int i = 0; i < cfg->n_outputs; i++) {
        dq_msg_output_spec *o = &a->outputs[i];
        DQ_TRY(s_name(o->name, cfg->output_names[i], "output name", err));
        if (cfg->output_ndim[i] < 0 || cfg->output_ndim[i] > DQ_MSG_MAX_DIMS - 1)
            return dq_fail(err, DQ_ERR_ARG, "worker %s: output '%s' has %d dims per sample",
                           cfg->service, o->name, cfg->output_ndim[i]);
        o->ndim = cfg->output_ndim[i];
        m->per_out[i] = 1;
        for (int d = 0; d < o->ndim; d++) {
            if (cfg->output_shape[i][d] < 1)
                return dq_fail(err, DQ_ERR_ARG, "worker %s: output '%s' dim %d is %lld",
                               cfg->service, o->name, d, (long long)cfg->output_shape[i][d]);
            o->shape[d] = cfg->output_shape[i][d];
            m->per_out[i] *= o->shape[d];
        }
    }
    a->n_outputs = cfg->n_outputs;
    int64_t mb = cfg->max_batch > 0 ? cfg->max_batch : DQ_TEACHER_DEFAULT_MAX_BATCH;
    if (mb > UINT32_MAX) return dq_fail(err, DQ_ERR_ARG, "worker: max_batch too large");
    a->max_batch = (uint32_t)mb;
    a->capacity = 1;
    if (cfg->impl) snprintf(m->impl, sizeof m->impl, "%s", cfg->impl);
    if (!cfg->forward)
        return dq_fail(err, DQ_ERR_ARG, "worker %s: no forward callback", cfg->service);
    m->forward = cfg->forward;
    m->user = cfg->user;
    return DQ_OK;
}

int distillq_worker_new(distillq_worker **out, const distillq_worker_config *cfg,
                        distillq_error *err)
{
    dq_err e = {{0}};
    *out = NULL;
    if (!cfg->broker || strlen(cfg->broker) >= sizeof((distillq_worker *)0)->broker)
        return dq_lib_fail(err, dq_fail(&e, DQ_ERR_ARG, "worker: no broker endpoint (or too "
                                        "long)"), &e);
    if (cfg->capacity < 1 || cfg->heartbeat_ms < 1)
        return dq_lib_fail(err, dq_fail(&e, DQ_ERR_ARG, "worker: capacity and heartbeat_ms "
                                        "must be >= 1"), &e);
    distillq_worker *pw = calloc(1, sizeof *pw);
    s_model *m = calloc(1, sizeof *m);
    if (!pw || !m) {
        free(pw);
        free(m);
        return dq_lib_fail(err, dq_fail(&e, DQ_ERR_NOMEM, "worker: out of memory"), &e);
    }
    dq_status st = s_model_new(m, cfg, &e);
    if (st != DQ_OK) {
        s_destroy(m);
        free(pw);
        return dq_lib_fail(err, st, &e);
    }
    snprintf(pw->broker, sizeof pw->broker, "%s", cfg->broker);
    memcpy(pw->service, m->announce.teacher.service, sizeof pw->service);
    dq_worker_config wc;
    dq_worker_config_default(&wc);
    wc.broker = pw->broker;
    wc.service = pw->service;
    wc.capacity = cfg->capacity;
    wc.heartbeat_ms = cfg->heartbeat_ms;
    wc.curve_server_cert = cfg->curve_server_cert;
    wc.curve_cert = cfg->curve_cert;
    wc.max_batch = m->announce.max_batch;
    wc.log = cfg->quiet ? NULL : stderr;
    wc.log_name = "distillq-worker";
    wc.stop = &pw->stop;
    dq_worker_model model = {.ctx = m, .announce = s_announce, .identity = s_identity,
                             .max_data_bytes = s_max_data_bytes, .check = s_check,
                             .serve = s_serve, .destroy = s_destroy};
    st = dq_worker_new_model(&pw->w, &wc, &model, &e); /* owns m from here */
    if (st != DQ_OK) {
        free(pw);
        return dq_lib_fail(err, st, &e);
    }
    *out = pw;
    return dq_lib_fail(err, DQ_OK, &e);
}

int distillq_worker_run(distillq_worker *w, distillq_error *err)
{
    dq_err e = {{0}};
    return dq_lib_fail(err, dq_worker_run(w->w, &e), &e);
}

void distillq_worker_stop(distillq_worker *w, int level)
{
    if (w && level > w->stop) w->stop = (sig_atomic_t)(level > 2 ? 2 : level);
}

void distillq_worker_destroy(distillq_worker **p)
{
    if (!p || !*p) return;
    dq_worker_destroy(&(*p)->w);
    free(*p);
    *p = NULL;
}

int distillq_sha256_file(const char *path, char *hex, distillq_error *err)
{
    dq_err e = {{0}};
    return dq_lib_fail(err, dq_teacher_sha256_file(path, hex, &e), &e);
}
