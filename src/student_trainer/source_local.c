/* source_local.c - batches straight from the batcher, with teacher outputs
 * from networks in this process (conventional distillation) or none.
 *
 * The teacher runs synchronously just before the student's step, as in the
 * tutorial's training loop: simple, and the baseline that service
 * distillation is measured against. With a CUDA teacher_device each teacher
 * runs through a GPU executor (model/net_cuda.h), whose eval forward is
 * batch-invariant like the CPU's, so a service teacher on the same GPU
 * gives the same bytes.
 */
#include <stdlib.h>
#include <string.h>

#include "model/model_load.h"
#include "model/net_cuda.h"
#include "model/onnx_import.h"
#include "student_trainer/shard.h"
#include "student_trainer/source.h"

typedef struct {
    dq_source_t base;
    dq_source_config cfg;
    dq_batcher batcher;
    int64_t next_index;
    dq_train_batch batch;
    dq_net_t *teachers[DQ_SOURCE_MAX_TEACHERS];
    dq_net_cuda_t *gpu[DQ_SOURCE_MAX_TEACHERS]; /* CUDA teacher_device: the forward runs here */
    float weights[DQ_SOURCE_MAX_TEACHERS];
} s_local;

static void s_destroy(dq_source_t *base)
{
    s_local *s = (s_local *)base;
    dq_batcher_free(&s->batcher);
    for (int i = 0; i < DQ_SOURCE_MAX_TEACHERS; i++) {
        dq_net_cuda_destroy(&s->gpu[i]);
        dq_net_destroy(&s->teachers[i]);
    }
    free(s->batch.pix);
    free(s->batch.labels);
    free(s->batch.teacher);
    free(s);
}

static dq_status s_start(dq_source_t *base, int64_t epoch, int64_t first, dq_err *err)
{
    (void)err;
    s_local *s = (s_local *)base;
    dq_batcher_epoch(&s->batcher, epoch);
    s->next_index = first;
    return DQ_OK;
}

/* teacher = sum_i w_i * output_i, in teacher order (fixed, so deterministic). */
static dq_status s_teach(s_local *s, dq_train_batch *b, dq_err *err)
{
    int64_t floats = s->base.tshape.floats * b->n;
    for (int i = 0; i < s->cfg.n_teachers; i++) {
        /* straight into the teacher's own input buffer: no copy on the CPU */
        float *in = dq_net_input_buffer(s->teachers[i]);
        dq_net_normalize_u8(s->teachers[i], in, b->pix, b->n);
        const float *o;
        if (s->gpu[i]) {
            const dq_net_input *ip = dq_net_input_spec(s->teachers[i]);
            dq_tensor x = dq_tensor_view4(in, b->n, ip->channels, ip->height, ip->width);
            const char *want[1] = {s->cfg.output};
            DQ_TRY(dq_net_cuda_forward(s->gpu[i], &x, false, want, 1, err));
            o = dq_net_cuda_output(s->gpu[i], s->cfg.output)->data;
        } else {
            DQ_TRY(dq_net_forward_input(s->teachers[i], b->n, false, NULL, err));
            o = dq_net_output(s->teachers[i], s->cfg.output)->data;
        }
        dq_source_blend(b->teacher, o, floats, s->weights[i], i == 0);
    }
    return DQ_OK;
}

static dq_status s_next(dq_source_t *base, dq_train_batch **out, dq_err *err)
{
    s_local *s = (s_local *)base;
    *out = NULL;
    dq_train_batch *b = &s->batch;
    b->n = dq_batcher_fill_shard(&s->batcher, s->next_index, s->cfg.rank, s->cfg.ranks, b->pix,
                                 b->labels);
    if (b->n == 0) return DQ_OK;
    b->index = s->next_index++;
    if (s->cfg.n_teachers > 0) DQ_TRY(s_teach(s, b, err));
    *out = b;
    return DQ_OK;
}

/* Splits "MODEL:WEIGHTS" (or takes "FILE.onnx", which holds its weights)
 * and loads the teacher. */
static dq_status s_load_teacher(dq_net_t **net, const char *spec, int64_t batch, dq_err *err)
{
    if (dq_onnx_is_path(spec)) {
        DQ_TRY(dq_model_load(net, spec, NULL, err));
        return dq_net_plan(*net, batch, err);
    }
    const char *colon = strrchr(spec, ':');
    if (!colon || colon == spec || !colon[1])
        return dq_fail(err, DQ_ERR_ARG, "--teacher-local: expected MODEL:WEIGHTS or FILE.onnx, "
                       "got '%s'", spec);
    char model[4096];
    snprintf(model, sizeof model, "%.*s", (int)(colon - spec), spec);
    DQ_TRY(dq_model_load(net, model, colon + 1, err));
    return dq_net_plan(*net, batch, err);
}

/* The GPU executor of a loaded teacher; spec as s_load_teacher's (an ONNX
 * file is no model file to re-check the net against). */
static dq_status s_teacher_gpu(dq_net_cuda_t **gpu, dq_net_t *net, const char *spec,
                               dq_device dev, int64_t batch, dq_err *err)
{
    char model[4096];
    const char *colon = strrchr(spec, ':');
    const char *mf = NULL;
    if (!dq_onnx_is_path(spec) && colon) {
        snprintf(model, sizeof model, "%.*s", (int)(colon - spec), spec);
        mf = model;
    }
    return dq_net_cuda_new(gpu, net, mf, dev, batch, false, 0, err);
}

dq_status dq_source_local_new(dq_source_t **out, const dq_source_config *cfg, dq_err *err)
{
    *out = NULL;
    s_local *s = calloc(1, sizeof *s);
    if (!s) return dq_fail(err, DQ_ERR_NOMEM, "source: out of memory");
    s->base.kind = cfg->n_teachers ? "local teacher" : "plain";
    s->base.start = s_start;
    s->base.next = s_next;
    s->base.destroy = s_destroy;
    s->cfg = *cfg;
    const dq_dataset *ds = cfg->train;
    size_t sz = (size_t)ds->c * (size_t)ds->h * (size_t)ds->w;
    dq_status st = dq_batcher_init(&s->batcher, ds, cfg->seed, cfg->batch, cfg->augment, err);
    s->batch.pix = malloc((size_t)cfg->batch * sz);
    s->batch.labels = malloc((size_t)cfg->batch * sizeof(int32_t));
    if (st == DQ_OK && (!s->batch.pix || !s->batch.labels))
        st = dq_fail(err, DQ_ERR_NOMEM, "source: out of memory");
    float wsum = 0;
    for (int i = 0; i < cfg->n_teachers && st == DQ_OK; i++) {
        st = s_load_teacher(&s->teachers[i], cfg->teachers[i], cfg->batch, err);
        if (st == DQ_OK && cfg->teacher_device.kind == DQ_DEVICE_CUDA)
            st = s_teacher_gpu(&s->gpu[i], s->teachers[i], cfg->teachers[i], cfg->teacher_device,
                               cfg->batch, err);
        wsum += cfg->weights[i];
    }
    if (st == DQ_OK && cfg->n_teachers > 0) {
        dq_teacher_shape *ts = &s->base.tshape;
        ts->output = cfg->output;
        for (int i = 0; i < cfg->n_teachers && st == DQ_OK; i++) {
            int64_t shape[DQ_MAX_DIMS];
            int nd = dq_net_output_shape(s->teachers[i], cfg->output, shape);
            if (nd < 0) {
                st = dq_fail(err, DQ_ERR_NOT_FOUND, "teacher %s has no output '%s'",
                             cfg->teachers[i], cfg->output);
            } else if (i == 0) {
                ts->ndim = nd;
                memcpy(ts->shape, shape, sizeof shape);
                ts->floats = 1;
                for (int k = 0; k < nd; k++) ts->floats *= shape[k];
            } else if (nd != ts->ndim || memcmp(shape, ts->shape, (size_t)nd * sizeof *shape)) {
                st = dq_fail(err, DQ_ERR_SHAPE, "teacher %s's output '%s' differs in shape from "
                             "teacher %s's", cfg->teachers[i], cfg->output, cfg->teachers[0]);
            }
            s->weights[i] = cfg->weights[i] / wsum;
        }
        if (st == DQ_OK) {
            s->batch.teacher = malloc((size_t)(cfg->batch * ts->floats) * sizeof(float));
            if (!s->batch.teacher)
                st = dq_fail(err, DQ_ERR_NOMEM, "source: out of memory");
        }
    }
    if (st != DQ_OK) {
        s_destroy(&s->base);
        return st;
    }
    *out = &s->base;
    return DQ_OK;
}

void dq_source_blend(float *dst, const float *src, int64_t n, float w, bool first)
{
    if (first && w == 1.0f)
        memcpy(dst, src, (size_t)n * sizeof(float));
    else if (first)
        for (int64_t k = 0; k < n; k++) dst[k] = w * src[k];
    else
        for (int64_t k = 0; k < n; k++) dst[k] += w * src[k];
}

void dq_source_destroy(dq_source_t **s)
{
    if (!s || !*s) return;
    (*s)->destroy(*s);
    *s = NULL;
}
