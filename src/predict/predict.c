/* predict.c - prediction over a dataset to .npy files: locally (model +
 * weights, the reference path) or from a teacher service (--teacher).
 *
 * The remote path is the ordered client (client/ordered.h, the same code
 * as libdistillq's client): at most K = inflight batches are outstanding
 * and results come back in dataset order whatever order the workers answer
 * in.
 *
 * Memory (issue 15): the first batch goes out alone; its reply gives the
 * output sizes, from which K is lowered until K batches fit
 * inflight_bytes, the client's ZMQ_MAXMSGSIZE is set to one batch's reply
 * and every request says how many floats it expects, so a larger reply is
 * refused before anything of it is copied. "Overloaded" and "timeout"
 * replies are sent again by the ordered client until request_timeout_ms.
 * Output
 * shapes come from the first reply (no model file needed); the same .npy
 * writer as the local path writes them.
 */
#include "predict/predict.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/dataset.h"
#include "client/ordered.h"
#include "data/npy.h"
#include "model/model_load.h"
#include "model/onnx_import.h"
#include "model/checkpoint.h"
#include "model/net.h"
#include "model/net_cuda.h"
#include "tensor/loss.h"

void dq_predict_output_path(char *buf, size_t len, const char *path, const char *name,
                            int n_outputs)
{
    size_t n = strlen(path);
    if (n_outputs <= 1)
        snprintf(buf, len, "%s", path);
    else if (n > 4 && strcmp(path + n - 4, ".npy") == 0)
        snprintf(buf, len, "%.*s.%s.npy", (int)(n - 4), path, name);
    else
        snprintf(buf, len, "%s.%s.npy", path, name);
}

/* Loads a directory's test split, an IDX images file (labels found beside
 * it by name) or CIFAR-10 .bin files. */
static dq_status s_load_data(dq_dataset *ds, const char *path, dq_err *err)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return dq_fail(err, DQ_ERR_IO, "%s: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) return dq_dataset_load_dir(ds, path, 0, err);
    size_t n = strlen(path);
    if (n > 4 && strcmp(path + n - 4, ".bin") == 0) {
        const char *paths[1] = {path};
        return dq_cifar_load(ds, paths, 1, err);
    }
    const char *at = strstr(path, "images-idx3");
    if (!at)
        return dq_fail(err, DQ_ERR_ARG, "%s: expected a dataset directory, an IDX images file "
                       "(*images-idx3-ubyte[.gz]) or a CIFAR-10 .bin batch", path);
    char labels[4096];
    snprintf(labels, sizeof labels, "%.*slabels-idx1%s", (int)(at - path), path,
             at + strlen("images-idx3"));
    return dq_idx_load(ds, path, labels, err);
}

typedef struct {
    dq_dataset ds;
    dq_net_t *net;
    dq_net_cuda_t *gpu;     /* with --device cuda:N: the forward runs here */
    FILE *files[DQ_PREDICT_MAX_OUTPUTS];
    char paths[DQ_PREDICT_MAX_OUTPUTS][4096];
    char names[DQ_PREDICT_MAX_OUTPUTS][64];
    int n_out;
    uint8_t *pix;
    float *input;
} s_predict;

static void s_predict_free(s_predict *p, int remove_files)
{
    for (int i = 0; i < p->n_out; i++) {
        if (p->files[i]) fclose(p->files[i]);
        if (remove_files && p->paths[i][0]) remove(p->paths[i]);
    }
    dq_net_cuda_destroy(&p->gpu);
    dq_net_destroy(&p->net);
    dq_dataset_free(&p->ds);
    free(p->pix);
    free(p->input);
}

static dq_status s_parse_outputs(s_predict *p, const char *list, dq_err *err)
{
    const char *s = list && *list ? list : "logits";
    while (*s) {
        size_t len = strcspn(s, ",");
        if (len == 0 || len >= sizeof p->names[0])
            return dq_fail(err, DQ_ERR_ARG, "--outputs: bad name list '%s'", list);
        if (p->n_out == DQ_PREDICT_MAX_OUTPUTS)
            return dq_fail(err, DQ_ERR_ARG, "--outputs: at most %d names",
                           DQ_PREDICT_MAX_OUTPUTS);
        memcpy(p->names[p->n_out], s, len);
        p->names[p->n_out][len] = '\0';
        p->n_out++;
        s += len;
        if (*s == ',') s++;
    }
    return DQ_OK;
}

/* An output of the last forward, from the device's host copy on a GPU. */
static const dq_tensor *s_output(const s_predict *p, const char *name)
{
    return p->gpu ? dq_net_cuda_output(p->gpu, name) : dq_net_output(p->net, name);
}

static dq_status s_run(s_predict *p, const dq_predict_config *cfg, dq_err *err)
{
    DQ_TRY(s_parse_outputs(p, cfg->outputs, err));
    DQ_TRY(dq_model_load(&p->net, cfg->model_path, cfg->weights_path, err));
    const dq_net_input *in = dq_net_input_spec(p->net);
    for (int i = 0; i < p->n_out; i++) {
        int64_t shape[DQ_MAX_DIMS];
        if (dq_net_output_shape(p->net, p->names[i], shape) < 0)
            return dq_fail(err, DQ_ERR_NOT_FOUND, "model %s has no output '%s'",
                           cfg->model_path, p->names[i]);
    }
    DQ_TRY(s_load_data(&p->ds, cfg->data_path, err));
    dq_dataset_truncate(&p->ds, cfg->limit);
    if (p->ds.c != in->channels || p->ds.h != in->height || p->ds.w != in->width)
        return dq_fail(err, DQ_ERR_SHAPE, "%s has images %dx%dx%d but %s expects %dx%dx%d",
                       cfg->data_path, p->ds.c, p->ds.h, p->ds.w, cfg->model_path,
                       in->channels, in->height, in->width);
    int64_t batch = cfg->batch > 0 ? cfg->batch : 128;
    if (cfg->device.kind != DQ_DEVICE_CUDA) DQ_TRY(dq_net_plan(p->net, batch, err));
    const char *want[DQ_PREDICT_MAX_OUTPUTS + 1]; /* what the GPU copies back */
    int n_want = 0;
    for (int i = 0; i < p->n_out; i++) want[n_want++] = p->names[i];
    if (p->ds.labels) want[n_want++] = "logits";
    if (cfg->device.kind == DQ_DEVICE_CUDA)
        DQ_TRY(dq_net_cuda_new_chunked(&p->gpu, p->net,
                                       dq_onnx_is_path(cfg->model_path) ? NULL : cfg->model_path,
                                       cfg->device, batch, false, 0,
                                       cfg->eval_chunk > 0 ? cfg->eval_chunk
                                                           : DQ_NET_CUDA_EVAL_CHUNK,
                                       err));
    size_t sz = (size_t)in->channels * (size_t)in->height * (size_t)in->width;
    p->pix = malloc((size_t)batch * sz);
    p->input = malloc((size_t)batch * sz * sizeof(float));
    if (!p->pix || !p->input) return dq_fail(err, DQ_ERR_NOMEM, "predict: out of memory");

    for (int i = 0; i < p->n_out; i++) {
        int64_t shape[DQ_MAX_DIMS + 1];
        int r = dq_net_output_shape(p->net, p->names[i], shape + 1);
        shape[0] = p->ds.n;
        dq_predict_output_path(p->paths[i], sizeof p->paths[i], cfg->output_path, p->names[i],
                               p->n_out);
        p->files[i] = fopen(p->paths[i], "wb");
        if (!p->files[i])
            return dq_fail(err, DQ_ERR_IO, "%s: %s", p->paths[i], strerror(errno));
        DQ_TRY(dq_npy_begin(p->files[i], p->paths[i], r + 1, shape, err));
    }

    int64_t correct = 0;
    for (int64_t first = 0; first < p->ds.n; first += batch) {
        int64_t n = p->ds.n - first < batch ? p->ds.n - first : batch;
        memcpy(p->pix, p->ds.images + (size_t)first * sz, (size_t)n * sz);
        float *input = p->gpu ? dq_net_cuda_input_buffer(p->gpu) : p->input;
        dq_net_normalize_u8(p->net, input, p->pix, n);
        dq_tensor x = dq_tensor_view4(input, n, in->channels, in->height, in->width);
        if (p->gpu)
            DQ_TRY(dq_net_cuda_forward(p->gpu, &x, false, want, n_want, err));
        else
            DQ_TRY(dq_net_forward(p->net, &x, false, NULL, err));
        for (int i = 0; i < p->n_out; i++) {
            const dq_tensor *o = s_output(p, p->names[i]);
            size_t cnt = (size_t)dq_tensor_numel(o);
            if (fwrite(o->data, sizeof(float), cnt, p->files[i]) != cnt)
                return dq_fail(err, DQ_ERR_IO, "%s: write failed: %s", p->paths[i],
                               strerror(errno));
        }
        if (p->ds.labels)
            correct += dq_count_correct(s_output(p, "logits"), p->ds.labels + first);
    }
    for (int i = 0; i < p->n_out; i++) {
        int rc = fclose(p->files[i]);
        p->files[i] = NULL;
        if (rc != 0) return dq_fail(err, DQ_ERR_IO, "%s: close failed: %s", p->paths[i],
                                    strerror(errno));
        if (cfg->log) fprintf(cfg->log, "wrote %s\n", p->paths[i]);
    }
    if (cfg->log && p->ds.labels)
        fprintf(cfg->log, "accuracy %.2f%% (%lld/%lld)\n", 100.0 * (double)correct /
                (double)p->ds.n, (long long)correct, (long long)p->ds.n);
    return DQ_OK;
}

static dq_status s_remote_run(const dq_predict_config *cfg, dq_err *err);

dq_status dq_predict_run(const dq_predict_config *cfg, dq_err *err)
{
    if (cfg->teacher_url) return s_remote_run(cfg, err);
    s_predict p;
    memset(&p, 0, sizeof p);
    dq_status st = s_run(&p, cfg, err);
    s_predict_free(&p, st != DQ_OK);
    return st;
}

/* ---- remote: outputs from a teacher service --------------------------------------- */

#define S_MAX_WANT (DQ_PREDICT_MAX_OUTPUTS + 1)

typedef struct {
    s_predict p;            /* dataset, files, output names (p.net unused) */
    dq_ordered_t *client;   /* the ordered client: results in dataset order */
    const char *want[S_MAX_WANT]; /* requested: the outputs, plus logits for accuracy */
    int n_want, logits;     /* logits: index in want, -1 if none */
    int ndim[S_MAX_WANT];
    int64_t shape[S_MAX_WANT][DQ_MSG_MAX_DIMS];
    int K, K_max;           /* in flight: 1 until the first result, then by bytes */
    int64_t inflight_bytes;
    FILE *log;
    int64_t batch;
    bool have_teacher;
    dq_msg_teacher teacher;
} s_remote;

static void s_remote_free(s_remote *r, int remove_files)
{
    s_predict_free(&r->p, remove_files);
    dq_ordered_destroy(&r->client);
}

/* Learns the output shapes from the first result and writes the .npy
 * headers (nothing has been written before). */
static dq_status s_remote_shapes(s_remote *r, const dq_ordered_result *res, dq_err *err)
{
    const char *service = dq_ordered_service(r->client);
    for (int i = 0; i < r->n_want; i++) {
        const dq_ordered_output *o = &res->outputs[i];
        if (o->ndim < 1 || o->ndim > DQ_MAX_DIMS)
            return dq_fail(err, DQ_ERR_PROTO, "service %s: output '%s' has rank %d (1..%d)",
                           service, o->name, o->ndim, DQ_MAX_DIMS);
        r->ndim[i] = o->ndim;
        memcpy(r->shape[i], o->shape, sizeof r->shape[i]);
    }
    int64_t reply_floats = 0;
    for (int i = 0; i < r->n_want; i++) {
        int64_t per = 1;
        for (int d = 1; d < r->ndim[i]; d++) per *= r->shape[i][d];
        reply_floats += per;
    }
    const dq_dataset *ds = &r->p.ds;
    int64_t per_batch = r->batch * (ds->c * ds->h * ds->w * 2 + reply_floats * 4);
    int64_t k = r->inflight_bytes / (per_batch > 0 ? per_batch : 1);
    r->K = (int)(k < 1 ? 1 : k < r->K_max ? k : r->K_max);
    if (r->K < r->K_max && r->log)
        fprintf(r->log, "teacher %s: %d batches in flight (a batch holds %lld bytes, "
                "--inflight-bytes %lld)\n", service, r->K, (long long)per_batch,
                (long long)r->inflight_bytes);
    dq_ordered_set_reply_floats(r->client, reply_floats);
    /* nothing in flight now (K was 1 and this was its batch) */
    DQ_TRY(dq_client_set_max_msg_bytes(dq_ordered_client(r->client),
                                       r->batch * reply_floats * 4 + DQ_CLIENT_REPLY_SLACK, err));
    if (r->logits >= 0 && r->ndim[r->logits] != 2) r->logits = -1;
    for (int i = 0; i < r->p.n_out; i++) {
        int64_t shape[DQ_MAX_DIMS];
        shape[0] = r->p.ds.n;
        for (int d = 1; d < r->ndim[i]; d++) shape[d] = r->shape[i][d];
        DQ_TRY(dq_npy_begin(r->p.files[i], r->p.paths[i], r->ndim[i], shape, err));
    }
    return DQ_OK;
}

/* Writes the result of batch b (the next in dataset order); adds to *correct. */
static dq_status s_remote_write(s_remote *r, const dq_ordered_result *res, int64_t *correct,
                                dq_err *err)
{
    const char *service = dq_ordered_service(r->client);
    const dq_dataset *ds = &r->p.ds;
    int64_t b = (int64_t)res->seq, first = b * r->batch;
    int64_t n = ds->n - first < r->batch ? ds->n - first : r->batch;
    if (!r->have_teacher) {
        DQ_TRY(s_remote_shapes(r, res, err));
        r->teacher = res->teacher;
        r->have_teacher = true;
    }
    if (res->teacher_changed)
        return dq_fail(err, DQ_ERR_PROTO, "service %s: the teacher changed mid-run (was %s "
                       "sha256 %s, now %s sha256 %s)", service, r->teacher.model,
                       r->teacher.sha256, res->teacher.model, res->teacher.sha256);
    int64_t per[S_MAX_WANT];
    for (int i = 0; i < r->n_want; i++) {
        const dq_ordered_output *o = &res->outputs[i];
        bool same = o->ndim == r->ndim[i];
        per[i] = 1;
        for (int d = 1; same && d < o->ndim; d++) {
            same = o->shape[d] == r->shape[i][d];
            per[i] *= o->shape[d];
        }
        if (!same)
            return dq_fail(err, DQ_ERR_PROTO, "service %s: batch %lld: output '%s' (rank %d) "
                           "does not match the first reply's", service, (long long)b, o->name,
                           o->ndim);
    }
    for (int i = 0; i < r->p.n_out; i++) {
        size_t cnt = (size_t)(n * per[i]);
        if (fwrite(res->outputs[i].data, sizeof(float), cnt, r->p.files[i]) != cnt)
            return dq_fail(err, DQ_ERR_IO, "%s: write failed: %s", r->p.paths[i],
                           strerror(errno));
    }
    if (r->logits >= 0 && ds->labels) {
        dq_tensor t = dq_tensor_view2((float *)res->outputs[r->logits].data, n, per[r->logits]);
        *correct += dq_count_correct(&t, ds->labels + first);
    }
    return DQ_OK;
}

static dq_status s_remote_send(s_remote *r, int64_t b, dq_err *err)
{
    const dq_dataset *ds = &r->p.ds;
    int64_t first = b * r->batch;
    int64_t n = ds->n - first < r->batch ? ds->n - first : r->batch;
    size_t sz = (size_t)ds->c * (size_t)ds->h * (size_t)ds->w;
    int64_t shape[4] = {n, ds->c, ds->h, ds->w};
    return dq_ordered_submit(r->client, DQ_DTYPE_U8, shape, ds->images + (size_t)first * sz,
                             r->n_want, r->want, NULL, err);
}

static dq_status s_remote_predict(s_remote *r, const dq_predict_config *cfg, dq_err *err)
{
    DQ_TRY(s_parse_outputs(&r->p, cfg->outputs, err));
    r->logits = -1;
    for (int i = 0; i < r->p.n_out; i++) {
        r->want[r->n_want++] = r->p.names[i];
        if (strcmp(r->p.names[i], "logits") == 0) r->logits = i;
    }
    DQ_TRY(s_load_data(&r->p.ds, cfg->data_path, err));
    dq_dataset_truncate(&r->p.ds, cfg->limit);
    if (r->logits < 0 && r->p.ds.labels) { /* for the accuracy line, as locally */
        r->logits = r->n_want;
        r->want[r->n_want++] = "logits";
    }
    r->batch = cfg->batch > 0 ? cfg->batch : 128;
    r->log = cfg->log;
    r->K_max = cfg->inflight > 0 ? cfg->inflight : 16;
    r->K = 1;
    r->inflight_bytes = cfg->inflight_bytes > 0 ? cfg->inflight_bytes : (int64_t)256 << 20;
    dq_client_opts co;
    dq_client_opts_default(&co);
    co.max_inflight = r->K_max;
    co.request_timeout_ms = cfg->request_timeout_ms;
    co.log = cfg->log;
    co.name = cfg->client_name;
    co.curve_server_cert = cfg->curve_server_cert;
    co.curve_cert = cfg->curve_cert;
    DQ_TRY(dq_ordered_new(&r->client, cfg->teacher_url, &co, err));
    for (int i = 0; i < r->p.n_out; i++) {
        dq_predict_output_path(r->p.paths[i], sizeof r->p.paths[i], cfg->output_path,
                               r->p.names[i], r->p.n_out);
        r->p.files[i] = fopen(r->p.paths[i], "wb");
        if (!r->p.files[i])
            return dq_fail(err, DQ_ERR_IO, "%s: %s", r->p.paths[i], strerror(errno));
    }

    int64_t nb = (r->p.ds.n + r->batch - 1) / r->batch;
    int64_t next_send = 0, written = 0, correct = 0;
    while (written < nb) {
        while (next_send < nb && dq_ordered_pending(r->client) < r->K)
            DQ_TRY(s_remote_send(r, next_send++, err));
        const dq_ordered_result *res;
        dq_status st = dq_ordered_next(r->client, &res, 1000, err);
        if (st == DQ_ERR_TIMEOUT && !dq_ordered_broken(r->client)) continue; /* not yet */
        DQ_TRY(st);
        DQ_TRY(s_remote_write(r, res, &correct, err));
        written++;
    }
    for (int i = 0; i < r->p.n_out; i++) {
        int rc = fclose(r->p.files[i]);
        r->p.files[i] = NULL;
        if (rc != 0) return dq_fail(err, DQ_ERR_IO, "%s: close failed: %s", r->p.paths[i],
                                    strerror(errno));
        if (cfg->log) fprintf(cfg->log, "wrote %s\n", r->p.paths[i]);
    }
    if (cfg->log) {
        dq_client_counters k;
        dq_client_get_counters(dq_ordered_client(r->client), &k);
        fprintf(cfg->log, "teacher %s: model %s, sha256 %s; %lld batches, %llu resent, "
                "%llu duplicates dropped, %llu reconnects\n", dq_ordered_service(r->client),
                r->teacher.model, r->teacher.sha256, (long long)nb, (unsigned long long)k.resent,
                (unsigned long long)k.duplicates, (unsigned long long)k.reconnects);
        if (dq_ordered_retries(r->client))
            fprintf(cfg->log, "teacher %s: %llu batches sent again after overloaded or "
                    "timeout replies\n", dq_ordered_service(r->client),
                    (unsigned long long)dq_ordered_retries(r->client));
        if (r->logits >= 0 && r->p.ds.labels)
            fprintf(cfg->log, "accuracy %.2f%% (%lld/%lld)\n", 100.0 * (double)correct /
                    (double)r->p.ds.n, (long long)correct, (long long)r->p.ds.n);
    }
    return DQ_OK;
}

static dq_status s_remote_run(const dq_predict_config *cfg, dq_err *err)
{
    s_remote r;
    memset(&r, 0, sizeof r);
    dq_status st = s_remote_predict(&r, cfg, err);
    s_remote_free(&r, st != DQ_OK);
    return st;
}
