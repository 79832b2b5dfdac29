/* teacher.c - one network answering requests: check, normalise, forward,
 * encode the reply.
 *
 * Everything a request is checked against (input shape, output names and
 * shapes) is copied out of the net once at load, so the I/O thread can check
 * requests while the compute thread runs a forward. The net is planned for
 * the largest batch seen so far and the f32 input buffer grows with it: a
 * steady stream of requests allocates nothing (the reply body is encoded
 * into the caller's reused buffer, with the output data read straight from
 * the net's activations). With dq_teacher_use_device the same steps run
 * through the GPU executor instead: the request is normalised straight into
 * its pinned input buffer and only the requested outputs come back.
 *
 * Memory bound (issue 15): the activations grow with the forward's batch
 * (DeepNN: ~2 MB a sample, so a 4,096-sample request or merge made the
 * worker hold ~9 GB). A forward therefore runs in chunks of at most
 * max_forward samples: the net is planned for one chunk, each chunk's inputs
 * are normalised into the chunk-sized input buffer and its requested outputs
 * are copied into staging buffers (stage[], sized to the request, which the
 * reply holds anyway). A batch that fits one chunk reads its outputs from the
 * net as before. The eval forward is batch-invariant (net.h), so chunking
 * changes no bit of a reply.
 */
#include "teacher_worker/teacher.h"
#include "teacher_worker/teacher_echo.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model_load.h"
#include "model/onnx_import.h"
#include "model/net.h"
#include "model/net_cuda.h"

struct dq_teacher {
    dq_net_t *net;
    dq_net_cuda_t *gpu;   /* set by dq_teacher_use_device: the forward runs there */
    char model_path[4096];
    dq_msg_teacher id;
    dq_msg_ready announce;
    int64_t c, h, w;
    int64_t max_batch;
    int64_t max_forward;  /* samples per forward (chunk); the net is planned for it */
    int64_t planned;      /* batch the net and input are planned for (0: none) */
    float *input;         /* planned * c*h*w floats */
    /* outputs of a chunked forward, in the group's request order */
    float *stage[DQ_MSG_MAX_OUTPUTS];
    int64_t stage_cap[DQ_MSG_MAX_OUTPUTS]; /* floats */
    bool staged;          /* the last forward's outputs are in stage[], not the net */
    bool echo;            /* --echo: shapes only, no weights, no forward (teacher_echo.h) */
    char impl[DQ_MSG_IMPL_MAX + 1]; /* reply "impl": "distillq-c/cpu" or ".../cuda:N" */
    /* health (dq_teacher_lost): forwards that failed in a row, the last
     * failure, the limit (0: never lost) and the test hook's threshold */
    int64_t fail_streak, max_failures, forwards, fail_after;
    dq_err last_fail;
    /* A sticky device failure (DQ_ERR_DEVICE): every later forward fails
     * with it, and dq_teacher_lost tells the worker to leave. */
    dq_status lost;
    dq_err lost_err;
    /* Test hook (tests/test_device_fault.sh): the environment variable
     * DQ_TEST_DEVICE_FAULT_AFTER=N, read once at creation, makes every
     * forward after the first N fail as a sticky GPU error would, on any
     * device; -1 (unset): off. */
    int64_t fault_after;
};

#define S_FAULT_ENV "DQ_TEST_DEVICE_FAULT_AFTER"

static int64_t s_fault_after(void)
{
    const char *v = getenv(S_FAULT_ENV);
    if (!v || !*v) return -1;
    char *end = NULL;
    long long n = strtoll(v, &end, 10);
    return *end == '\0' && n >= 0 ? (int64_t)n : -1;
}

#define S_FAIL_ENV "DQ_TEST_FORWARD_FAIL_AFTER"

/* Test hook: DQ_TEST_FORWARD_FAIL_AFTER=N makes every forward after the
 * first N fail (a failure that is not sticky: the streak counts it); -1
 * when unset. */
static int64_t s_fail_after(void)
{
    const char *v = getenv(S_FAIL_ENV);
    if (!v || !*v) return -1;
    char *end = NULL;
    long long n = strtoll(v, &end, 10);
    return *end == '\0' && n >= 0 ? (int64_t)n : -1;
}

/* Copies s into a name field, failing if it does not fit. */
static dq_status s_name(char *dst, const char *s, const char *what, dq_err *err)
{
    size_t n = strlen(s);
    if (n == 0 || n > DQ_MSG_NAME_MAX)
        return dq_fail(err, DQ_ERR_ARG, "%s '%s' must be 1..%d bytes", what, s,
                       DQ_MSG_NAME_MAX);
    memcpy(dst, s, n + 1);
    return DQ_OK;
}

static dq_status s_setup(dq_teacher_t *t, const char *service, const char *model_path,
                         const char *weights_path, dq_err *err)
{
    DQ_TRY(s_name(t->id.service, service, "service name", err));
    if (snprintf(t->model_path, sizeof t->model_path, "%s", model_path) >=
        (int)sizeof t->model_path)
        return dq_fail(err, DQ_ERR_ARG, "%s: model path too long", model_path);
    /* The identity is the SHA-256 of the file the weights came from: the
     * safetensors file, or the ONNX file that holds them. */
    if (t->echo) {
        DQ_TRY(dq_net_load(&t->net, model_path, err));
        DQ_TRY(dq_teacher_echo_identity(&t->id, dq_net_name(t->net), err));
        DQ_TRY(dq_net_plan(t->net, 1, err)); /* output shapes for the replies */
    } else {
        DQ_TRY(dq_model_load(&t->net, model_path, weights_path, err));
        DQ_TRY(dq_teacher_sha256_file(weights_path ? weights_path : model_path, t->id.sha256,
                                      err));
        DQ_TRY(s_name(t->id.model, dq_net_name(t->net), "model name", err));
    }

    const dq_net_input *in = dq_net_input_spec(t->net);
    t->c = in->channels;
    t->h = in->height;
    t->w = in->width;
    dq_msg_ready *a = &t->announce;
    a->teacher = t->id;
    a->input[0] = t->c;
    a->input[1] = t->h;
    a->input[2] = t->w;
    a->dtypes = (1u << DQ_DTYPE_U8) | (1u << DQ_DTYPE_F32);
    a->max_batch = (uint32_t)t->max_batch;
    if (t->c > DQ_MSG_MAX_CHANNELS)
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "%s: %lld input channels, the announce carries "
                       "the normalisation of at most %d", model_path, (long long)t->c,
                       DQ_MSG_MAX_CHANNELS);
    a->n_norm = (int)t->c; /* what a u8 request implies (dq_net_normalize_u8) */
    for (int c = 0; c < (int)t->c; c++) {
        a->mean[c] = in->mean[c];
        a->std[c] = in->std[c];
    }
    snprintf(t->impl, sizeof t->impl, t->echo ? "distillq-echo" : "distillq-c/cpu");
    int n_out = dq_net_output_count(t->net);
    if (n_out < 1 || n_out > DQ_MSG_MAX_OUTPUTS)
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "%s: %d outputs, a teacher announces 1..%d",
                       model_path, n_out, DQ_MSG_MAX_OUTPUTS);
    for (int i = 0; i < n_out; i++) {
        dq_msg_output_spec *o = &a->outputs[i];
        DQ_TRY(s_name(o->name, dq_net_output_name(t->net, i), "output name", err));
        int64_t shape[DQ_MSG_MAX_DIMS];
        int r = dq_net_output_shape(t->net, o->name, shape);
        if (r < 0 || r >= DQ_MSG_MAX_DIMS)
            return dq_fail(err, DQ_ERR_UNSUPPORTED, "%s: output '%s' has rank %d",
                           model_path, o->name, r);
        o->ndim = r;
        memcpy(o->shape, shape, (size_t)r * sizeof shape[0]);
    }
    a->n_outputs = n_out;
    return DQ_OK;
}

static dq_status s_new(dq_teacher_t **out, const char *service, const char *model_path,
                       const char *weights_path, int64_t max_batch, bool echo, dq_err *err)
{
    *out = NULL;
    if (max_batch < 0 || max_batch > UINT32_MAX)
        return dq_fail(err, DQ_ERR_ARG, "teacher: max batch %lld out of range",
                       (long long)max_batch);
    dq_teacher_t *t = calloc(1, sizeof *t);
    if (!t) return dq_fail(err, DQ_ERR_NOMEM, "teacher: out of memory");
    t->max_batch = max_batch > 0 ? max_batch : DQ_TEACHER_DEFAULT_MAX_BATCH;
    t->max_forward = DQ_TEACHER_DEFAULT_MAX_FORWARD;
    t->echo = echo;
    t->max_failures = DQ_TEACHER_DEFAULT_MAX_FAILURES;
    t->fail_after = s_fail_after();
    t->fault_after = s_fault_after();
    dq_status st = s_setup(t, service, model_path, weights_path, err);
    if (st != DQ_OK) {
        dq_teacher_destroy(&t);
        return st;
    }
    *out = t;
    return DQ_OK;
}

dq_status dq_teacher_new(dq_teacher_t **out, const char *service, const char *model_path,
                         const char *weights_path, int64_t max_batch, dq_err *err)
{
    return s_new(out, service, model_path, weights_path, max_batch, false, err);
}

dq_status dq_teacher_new_echo(dq_teacher_t **out, const char *service, const char *model_path,
                              int64_t max_batch, dq_err *err)
{
    return s_new(out, service, model_path, NULL, max_batch, true, err);
}

void dq_teacher_destroy(dq_teacher_t **p)
{
    if (!p || !*p) return;
    dq_net_cuda_destroy(&(*p)->gpu);
    dq_net_destroy(&(*p)->net);
    free((*p)->input);
    for (int i = 0; i < DQ_MSG_MAX_OUTPUTS; i++) free((*p)->stage[i]);
    free(*p);
    *p = NULL;
}

const dq_msg_teacher *dq_teacher_identity(const dq_teacher_t *t)
{
    return &t->id;
}

void dq_teacher_announce(const dq_teacher_t *t, dq_msg_ready *ready)
{
    *ready = t->announce;
}

dq_status dq_teacher_set_max_forward(dq_teacher_t *t, int64_t n, dq_err *err)
{
    if (n < 1 || n > UINT32_MAX)
        return dq_fail(err, DQ_ERR_ARG, "teacher: --max-forward-batch %lld must be >= 1",
                       (long long)n);
    if (t->gpu || t->planned)
        return dq_fail(err, DQ_ERR_ARG, "teacher: the forward batch is set before the first "
                       "forward and before dq_teacher_use_device");
    t->max_forward = n;
    return DQ_OK;
}

int64_t dq_teacher_max_forward(const dq_teacher_t *t)
{
    return t->max_forward < t->max_batch ? t->max_forward : t->max_batch;
}

int64_t dq_teacher_max_data_bytes(const dq_teacher_t *t)
{
    return t->max_batch * t->c * t->h * t->w * (int64_t)sizeof(float);
}

static const dq_msg_output_spec *s_spec(const dq_teacher_t *t, const char *name)
{
    for (int i = 0; i < t->announce.n_outputs; i++)
        if (strcmp(t->announce.outputs[i].name, name) == 0) return &t->announce.outputs[i];
    return NULL;
}

dq_status dq_teacher_check(const dq_teacher_t *t, const dq_msg_request *r, dq_err *err)
{
    const char *svc = t->id.service;
    if (strcmp(r->service, svc) != 0)
        return dq_fail(err, DQ_ERR_ARG, "service %s: request is for service '%s'", svc,
                       r->service);
    if (r->dtype != DQ_DTYPE_U8 && r->dtype != DQ_DTYPE_F32)
        return dq_fail(err, DQ_ERR_ARG, "service %s: dtype %d not served (u8 or f32)", svc,
                       (int)r->dtype);
    if (r->shape[1] != t->c || r->shape[2] != t->h || r->shape[3] != t->w)
        return dq_fail(err, DQ_ERR_ARG, "service %s: input shape [%lld, %lld, %lld, %lld] but "
                       "model %s takes [N, %lld, %lld, %lld]", svc, (long long)r->shape[0],
                       (long long)r->shape[1], (long long)r->shape[2], (long long)r->shape[3],
                       t->id.model, (long long)t->c, (long long)t->h, (long long)t->w);
    if (r->shape[0] < 1 || r->shape[0] > t->max_batch)
        return dq_fail(err, DQ_ERR_ARG, "service %s: batch of %lld samples, this teacher takes "
                       "1..%lld", svc, (long long)r->shape[0], (long long)t->max_batch);
    size_t want = (size_t)(r->shape[0] * t->c * t->h * t->w) * dq_msg_dtype_size(r->dtype);
    if (r->data_len != want || !r->data)
        return dq_fail(err, DQ_ERR_ARG, "service %s: data has %zu bytes, shape and dtype %s "
                       "need %zu", svc, r->data_len, dq_msg_dtype_name(r->dtype), want);
    if (r->n_outputs < 1 || r->n_outputs > DQ_MSG_MAX_OUTPUTS)
        return dq_fail(err, DQ_ERR_ARG, "service %s: %d outputs requested (1..%d)", svc,
                       r->n_outputs, DQ_MSG_MAX_OUTPUTS);
    for (int i = 0; i < r->n_outputs; i++) {
        if (s_spec(t, r->outputs[i])) continue;
        char have[DQ_MSG_MAX_OUTPUTS * (DQ_MSG_NAME_MAX + 2) + 1] = "";
        for (int j = 0; j < t->announce.n_outputs; j++) {
            if (j) strcat(have, ", ");
            strcat(have, t->announce.outputs[j].name);
        }
        return dq_fail(err, DQ_ERR_ARG, "service %s: model %s has no output '%s' (has: %s)",
                       svc, t->id.model, r->outputs[i], have);
    }
    return DQ_OK;
}

/* Plans the net (and the input buffer) for n samples if it is the largest
 * batch so far. */
static dq_status s_plan(dq_teacher_t *t, int64_t n, dq_err *err)
{
    if (n <= t->planned) return DQ_OK;
    float *in = realloc(t->input, (size_t)(n * t->c * t->h * t->w) * sizeof(float));
    if (!in)
        return dq_fail(err, DQ_ERR_NOMEM, "service %s: no memory for a batch of %lld",
                       t->id.service, (long long)n);
    t->input = in;
    DQ_TRY(dq_net_plan(t->net, n, err));
    t->planned = n;
    return DQ_OK;
}

dq_status dq_teacher_use_device(dq_teacher_t *t, dq_device dev, dq_err *err)
{
    return dq_teacher_use_device_chunked(t, dev, 0, err);
}

dq_status dq_teacher_use_device_chunked(dq_teacher_t *t, dq_device dev, int64_t eval_chunk,
                                        dq_err *err)
{
    if (t->echo) return DQ_OK; /* nothing to run anywhere */
    if (dev.kind != DQ_DEVICE_CUDA || t->gpu) return DQ_OK;
    /* An ONNX file is no model file to re-check the net against. */
    const char *mf = dq_onnx_is_path(t->model_path) ? NULL : t->model_path;
    DQ_TRY(dq_net_cuda_new_chunked(&t->gpu, t->net, mf, dev, dq_teacher_max_forward(t), false, 0,
                                   eval_chunk > 0 ? eval_chunk : DQ_NET_CUDA_EVAL_CHUNK, err));
    snprintf(t->impl, sizeof t->impl, "distillq-c/cuda:%d", dev.index);
    return DQ_OK;
}

/* Normalises samples [first, first + m) of the k requests' inputs, taken
 * one after another, into dst. */
static void s_fill(const dq_teacher_t *t, const dq_msg_request *const *rs, int k, int64_t first,
                   int64_t m, float *dst)
{
    const int64_t sz = t->c * t->h * t->w;
    int64_t base = 0;
    for (int j = 0; j < k && m > 0; base += rs[j]->shape[0], j++) {
        const dq_msg_request *r = rs[j];
        if (first >= base + r->shape[0]) continue;
        int64_t off = first - base, take = r->shape[0] - off < m ? r->shape[0] - off : m;
        const uint8_t *src = (const uint8_t *)r->data + (size_t)(off * sz) *
                                                            dq_msg_dtype_size(r->dtype);
        if (r->dtype == DQ_DTYPE_U8)
            dq_net_normalize_u8(t->net, dst, src, take);
        else
            dq_msg_f32_copy(dst, src, (size_t)(take * sz));
        dst += take * sz;
        first += take;
        m -= take;
    }
}

static const dq_tensor *s_net_output(const dq_teacher_t *t, const char *name)
{
    return t->gpu ? dq_net_cuda_output(t->gpu, name) : dq_net_output(t->net, name);
}

/* Room in stage[] for n samples of each output r asks for. */
static dq_status s_stage_reserve(dq_teacher_t *t, const dq_msg_request *r, int64_t n,
                                 dq_err *err)
{
    for (int i = 0; i < r->n_outputs; i++) {
        const dq_msg_output_spec *o = NULL;
        for (int j = 0; j < t->announce.n_outputs && !o; j++)
            if (strcmp(t->announce.outputs[j].name, r->outputs[i]) == 0)
                o = &t->announce.outputs[j];
        assert(o);
        int64_t want = n;
        for (int d = 0; d < o->ndim; d++) want *= o->shape[d];
        if (want <= t->stage_cap[i]) continue;
        float *p = realloc(t->stage[i], (size_t)want * sizeof(float));
        if (!p)
            return dq_fail(err, DQ_ERR_NOMEM, "service %s: no memory for the outputs of a "
                           "batch of %lld", t->id.service, (long long)n);
        t->stage[i] = p;
        t->stage_cap[i] = want;
    }
    return DQ_OK;
}

/* Runs the forward over the k requests' n samples (same dtype and outputs:
 * the caller groups them) in chunks of at most max_forward: into the GPU's
 * pinned buffer or the planned CPU input, one forward per chunk where the
 * net lives; with more than one chunk the requested outputs are staged. */
static dq_status s_forward_run(dq_teacher_t *t, const dq_msg_request *const *rs, int k,
                               int64_t n, dq_err *err);

/* s_forward_run with the health bookkeeping, unless the device is lost: a
 * success resets the streak of failed forwards, a failure extends it, and a
 * DQ_ERR_DEVICE failure (a sticky GPU error, or DQ_TEST_DEVICE_FAULT_AFTER's)
 * is remembered, so every later forward fails alike (dq_teacher_lost). */
static dq_status s_forward(dq_teacher_t *t, const dq_msg_request *const *rs, int k, int64_t n,
                           dq_err *err)
{
    if (t->lost != DQ_OK) return dq_fail(err, t->lost, "%s", t->lost_err.msg);
    dq_status st;
    if (t->fault_after >= 0 && t->forwards >= t->fault_after)
        st = dq_fail(err, DQ_ERR_DEVICE, "%s=%lld: injected sticky device fault at forward %lld",
                     S_FAULT_ENV, (long long)t->fault_after, (long long)t->forwards + 1);
    else if (t->fail_after >= 0 && t->forwards >= t->fail_after)
        st = dq_fail(err, DQ_ERR_INTERNAL, "injected forward failure (%s=%lld)", S_FAIL_ENV,
                     (long long)t->fail_after);
    else
        st = s_forward_run(t, rs, k, n, err);
    t->forwards++;
    if (st == DQ_OK) {
        t->fail_streak = 0;
    } else {
        t->fail_streak++;
        t->last_fail = *err;
        if (st == DQ_ERR_DEVICE) {
            t->lost = st;
            t->lost_err = *err;
        }
    }
    return st;
}

dq_status dq_teacher_lost(const dq_teacher_t *t, dq_err *err)
{
    if (t->lost != DQ_OK)
        return dq_fail(err, t->lost, "service %s: %s", t->id.service, t->lost_err.msg);
    if (t->max_failures <= 0 || t->fail_streak < t->max_failures) return DQ_OK;
    return dq_fail(err, DQ_ERR_DEVICE, "%lld forwards in a row failed (limit %lld), the last: %s",
                   (long long)t->fail_streak, (long long)t->max_failures, t->last_fail.msg);
}

void dq_teacher_set_max_failures(dq_teacher_t *t, int64_t n)
{
    t->max_failures = n;
}

static dq_status s_forward_run(dq_teacher_t *t, const dq_msg_request *const *rs, int k,
                               int64_t n, dq_err *err)
{
    const int64_t chunk = n < dq_teacher_max_forward(t) ? n : dq_teacher_max_forward(t);
    const dq_msg_request *r0 = rs[0];
    if (t->echo) {
        /* no forward: every requested output staged from the samples' bytes */
        t->staged = true;
        DQ_TRY(s_stage_reserve(t, r0, n, err));
        for (int i = 0; i < r0->n_outputs; i++) {
            const dq_tensor *o = dq_net_output(t->net, r0->outputs[i]);
            dq_teacher_echo_rows(t->stage[i], dq_tensor_inner(o, 1), i, rs, k,
                                 (size_t)(t->c * t->h * t->w) * dq_msg_dtype_size(r0->dtype));
        }
        return DQ_OK;
    }
    float *input = t->gpu ? dq_net_cuda_input_buffer(t->gpu) : NULL;
    if (!t->gpu) {
        DQ_TRY(s_plan(t, chunk, err));
        input = t->input;
    }
    t->staged = n > chunk;
    if (t->staged) DQ_TRY(s_stage_reserve(t, r0, n, err));
    const char *want[DQ_MSG_MAX_OUTPUTS];
    for (int i = 0; i < r0->n_outputs; i++) want[i] = r0->outputs[i];
    for (int64_t first = 0; first < n; first += chunk) {
        int64_t m = n - first < chunk ? n - first : chunk;
        s_fill(t, rs, k, first, m, input);
        dq_tensor x = dq_tensor_view4(input, m, t->c, t->h, t->w);
        if (t->gpu)
            DQ_TRY(dq_net_cuda_forward(t->gpu, &x, false, want, r0->n_outputs, err));
        else
            DQ_TRY(dq_net_forward(t->net, &x, false, NULL, err));
        for (int i = 0; t->staged && i < r0->n_outputs; i++) {
            const dq_tensor *o = s_net_output(t, want[i]);
            int64_t inner = dq_tensor_inner(o, 1);
            memcpy(t->stage[i] + first * inner, o->data, (size_t)(m * inner) * sizeof(float));
        }
    }
    return DQ_OK;
}

/* Encodes the ok reply of request r from rows [first, first + n) of the
 * forward's outputs. */
static dq_status s_encode_rows(dq_teacher_t *t, const dq_msg_request *r, int64_t first,
                               dq_msg_buf *buf, dq_err *err)
{
    dq_msg_reply rep;
    memset(&rep, 0, sizeof rep);
    rep.req_id = r->req_id;
    rep.status = DQ_REPLY_OK;
    rep.n_outputs = r->n_outputs;
    for (int i = 0; i < r->n_outputs; i++) {
        const dq_tensor *o = s_net_output(t, r->outputs[i]);
        assert(o && o->ndim <= DQ_MSG_MAX_DIMS &&
               (t->staged || o->shape[0] >= first + r->shape[0]));
        int64_t inner = dq_tensor_inner(o, 1);
        dq_msg_output *mo = &rep.outputs[i];
        memcpy(mo->name, r->outputs[i], sizeof mo->name);
        mo->ndim = o->ndim;
        memcpy(mo->shape, o->shape, (size_t)o->ndim * sizeof o->shape[0]);
        mo->shape[0] = r->shape[0];
        /* staged: a merge group shares its outputs, stage[i] is output i of each */
        mo->data = (t->staged ? t->stage[i] : o->data) + first * inner;
        mo->data_len = (size_t)(r->shape[0] * inner) * sizeof(float);
    }
    rep.has_teacher = true;
    rep.teacher = t->id;
    memcpy(rep.impl, t->impl, sizeof rep.impl);
    return dq_msg_encode_reply(buf, &rep, err);
}

/* Requests that can share one forward: same dtype and the same outputs. */
static bool s_mergeable(const dq_msg_request *a, const dq_msg_request *b)
{
    if (a->dtype != b->dtype || a->n_outputs != b->n_outputs) return false;
    for (int i = 0; i < a->n_outputs; i++)
        if (strcmp(a->outputs[i], b->outputs[i]) != 0) return false;
    return true;
}

/* Forward and reply for one request that passed dq_teacher_check. */
static dq_status s_serve_one(dq_teacher_t *t, const dq_msg_request *r, dq_msg_buf *buf,
                             dq_err *err)
{
    dq_err why = {{0}};
    if (s_forward(t, &r, 1, r->shape[0], &why) != DQ_OK) {
        char reason[sizeof(dq_err) + 128]; /* encoder truncates */
        snprintf(reason, sizeof reason, "service %s: %s", t->id.service, why.msg);
        return dq_msg_encode_error_reply(buf, r->req_id, DQ_REPLY_ERROR, reason, err);
    }
    return s_encode_rows(t, r, 0, buf, err);
}

/* Serves the requests rs[i] with ok[i] (checked) into bufs[i]: the merge
 * group (those like the first one, while the samples fit max_batch) as one
 * forward, every other checked one on its own. Eval forward is
 * batch-invariant (net.h), so merging changes no result. */
static dq_status s_serve_group(dq_teacher_t *t, const dq_msg_request *const *rs, const bool *ok,
                               int n, dq_msg_buf *bufs, dq_err *err)
{
    const dq_msg_request *group[DQ_TEACHER_MAX_MERGE];
    int idx[DQ_TEACHER_MAX_MERGE], k = 0;
    int64_t total = 0;
    bool alone[DQ_TEACHER_MAX_MERGE];
    if (n > DQ_TEACHER_MAX_MERGE)
        return dq_fail(err, DQ_ERR_ARG, "teacher: at most %d requests per merge",
                       DQ_TEACHER_MAX_MERGE);
    for (int i = 0; i < n; i++) {
        alone[i] = ok[i];
        if (!ok[i]) continue;
        if (k > 0 && (!s_mergeable(group[0], rs[i]) || total + rs[i]->shape[0] > t->max_batch))
            continue;
        group[k] = rs[i];
        idx[k++] = i;
        total += rs[i]->shape[0];
        alone[i] = false;
    }
    if (k == 1) alone[idx[0]] = true;
    if (k > 1) {
        dq_err why = {{0}};
        if (s_forward(t, group, k, total, &why) != DQ_OK) {
            char reason[sizeof(dq_err) + 128];
            snprintf(reason, sizeof reason, "service %s: %s", t->id.service, why.msg);
            for (int j = 0; j < k; j++)
                DQ_TRY(dq_msg_encode_error_reply(&bufs[idx[j]], group[j]->req_id, DQ_REPLY_ERROR,
                                                 reason, err));
        } else {
            int64_t first = 0;
            for (int j = 0; j < k; j++) {
                DQ_TRY(s_encode_rows(t, group[j], first, &bufs[idx[j]], err));
                first += group[j]->shape[0];
            }
        }
    }
    for (int i = 0; i < n; i++)
        if (alone[i]) DQ_TRY(s_serve_one(t, rs[i], &bufs[i], err));
    return DQ_OK;
}

dq_status dq_teacher_serve_checked(dq_teacher_t *t, const dq_msg_request *const *rs, int n,
                                   dq_msg_buf *bufs, dq_err *err)
{
    bool ok[DQ_TEACHER_MAX_MERGE];
    if (n > DQ_TEACHER_MAX_MERGE)
        return dq_fail(err, DQ_ERR_ARG, "teacher: at most %d requests per merge",
                       DQ_TEACHER_MAX_MERGE);
    for (int i = 0; i < n; i++) ok[i] = true;
    return s_serve_group(t, rs, ok, n, bufs, err);
}

dq_status dq_teacher_serve_many(dq_teacher_t *t, const dq_msg_request *const *rs, int n,
                                dq_msg_buf *bufs, dq_err *err)
{
    bool ok[DQ_TEACHER_MAX_MERGE];
    if (n > DQ_TEACHER_MAX_MERGE)
        return dq_fail(err, DQ_ERR_ARG, "teacher: at most %d requests per merge",
                       DQ_TEACHER_MAX_MERGE);
    for (int i = 0; i < n; i++) {
        dq_err why = {{0}};
        ok[i] = dq_teacher_check(t, rs[i], &why) == DQ_OK;
        if (!ok[i])
            DQ_TRY(dq_msg_encode_error_reply(&bufs[i], rs[i]->req_id, DQ_REPLY_BAD_REQUEST,
                                             why.msg, err));
    }
    return s_serve_group(t, rs, ok, n, bufs, err);
}

dq_status dq_teacher_serve(dq_teacher_t *t, const dq_msg_request *r, dq_msg_buf *buf,
                           dq_err *err)
{
    dq_err why = {{0}};
    if (dq_teacher_check(t, r, &why) != DQ_OK)
        return dq_msg_encode_error_reply(buf, r->req_id, DQ_REPLY_BAD_REQUEST, why.msg, err);
    return s_serve_one(t, r, buf, err);
}
