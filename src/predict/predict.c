/* predict.c - local prediction: model + weights over a dataset to .npy files. */
#include "predict/predict.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/dataset.h"
#include "data/npy.h"
#include "model/checkpoint.h"
#include "model/net.h"
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

static dq_status s_run(s_predict *p, const dq_predict_config *cfg, dq_err *err)
{
    DQ_TRY(s_parse_outputs(p, cfg->outputs, err));
    DQ_TRY(dq_net_load(&p->net, cfg->model_path, err));
    DQ_TRY(dq_ckpt_load_weights(p->net, cfg->weights_path, err));
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
    DQ_TRY(dq_net_plan(p->net, batch, err));
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
        dq_net_normalize_u8(p->net, p->input, p->pix, n);
        dq_tensor x = dq_tensor_view4(p->input, n, in->channels, in->height, in->width);
        DQ_TRY(dq_net_forward(p->net, &x, false, NULL, err));
        for (int i = 0; i < p->n_out; i++) {
            const dq_tensor *o = dq_net_output(p->net, p->names[i]);
            size_t cnt = (size_t)dq_tensor_numel(o);
            if (fwrite(o->data, sizeof(float), cnt, p->files[i]) != cnt)
                return dq_fail(err, DQ_ERR_IO, "%s: write failed: %s", p->paths[i],
                               strerror(errno));
        }
        if (p->ds.labels)
            correct += dq_count_correct(dq_net_output(p->net, "logits"), p->ds.labels + first);
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

dq_status dq_predict_run(const dq_predict_config *cfg, dq_err *err)
{
    s_predict p;
    memset(&p, 0, sizeof p);
    dq_status st = s_run(&p, cfg, err);
    s_predict_free(&p, st != DQ_OK);
    return st;
}
