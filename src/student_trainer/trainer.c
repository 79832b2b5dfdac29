/* trainer.c - the student training loop (see trainer.h for the contract).
 *
 * All buffers (batch pixels, network activations, the source's batches)
 * are allocated once before the first step; the loop itself does not
 * allocate. Batches are normalised straight into the net's own input buffer
 * (dq_net_input_buffer), saving a copy per forward. Batch b of epoch e is a pure function of
 * (seed, e, b) (batcher.h), so resuming mid-epoch only needs the batch count.
 *
 * Data-parallel (cfg->dist with R > 1 ranks, dist.h): every rank runs this
 * loop on its shard of each batch (shard.h), scales its gradient by its share
 * of the batch (n_r / N, so the sum is the whole batch's mean gradient),
 * and the ranks sum gradients and per-step statistics in rank order before
 * the identical optimiser step. Agreement points are the per-step exchange
 * (which also carries stop requests and a rank's teacher failure, so all
 * ranks stop at the same batch) and the end of an epoch. Dropout masks come
 * from an rng reseeded each step from (seed, step, rank), so a resume needs
 * no per-rank state. Batch norm normalises over the rank's shard (as
 * PyTorch's DDP without SyncBatchNorm); rank 0's running statistics are saved.
 */
#include "student_trainer/trainer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/progress.h"
#include "data/dataset.h"
#include "model/checkpoint.h"
#include "model/net.h"
#include "student_trainer/metrics.h"
#include "tensor/loss.h"
#include "tensor/optim.h"

void dq_train_config_defaults(dq_train_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->epochs = 1;
    cfg->batch = 128;
    cfg->lr = 1e-3f;
    cfg->optim = DQ_OPTIM_ADAM;
    cfg->momentum = 0.9f;
    cfg->seed = 42;
    cfg->recipe = dq_recipe_defaults(DQ_RECIPE_CE);
    cfg->inflight = 0; /* service source picks */
    cfg->teacher_timeout_ms = 60000;
    for (int i = 0; i < DQ_SOURCE_MAX_TEACHERS; i++) cfg->teacher_weights[i] = 1.0f;
}

void dq_train_state_path(char *buf, size_t len, const char *weights_path)
{
    const char *ext = ".safetensors";
    size_t n = strlen(weights_path), e = strlen(ext);
    if (n > e && strcmp(weights_path + n - e, ext) == 0)
        snprintf(buf, len, "%.*s.state%s", (int)(n - e), weights_path, ext);
    else
        snprintf(buf, len, "%s.state", weights_path);
}

/* Everything the loop owns; freed by s_trainer_free. */
typedef struct {
    const dq_train_config *cfg;
    dq_dataset train, test;
    dq_net_t *net;
    int64_t nparams;
    int64_t total_steps;   /* optimiser steps of the whole run (the lr schedule's length) */
    float *m, *v;          /* optimiser moments (Adam m/v; SGD uses m) */
    dq_source_t *source;   /* training batches with teacher outputs */
    uint8_t *pix;          /* one test batch of raw pixels */
    int32_t *labels;       /* the batch's labels */
    dq_train_state st;
    dq_metrics_t *metrics; /* rank 0 only */
    int rank, ranks;       /* data-parallel position (1 rank: this process) */
    char state_path[4096];
    char metrics_path[4096];
} s_trainer;

static void s_trainer_free(s_trainer *t)
{
    dq_dataset_free(&t->train);
    dq_dataset_free(&t->test);
    dq_net_destroy(&t->net);
    free(t->m);
    free(t->v);
    dq_source_destroy(&t->source);
    free(t->pix);
    free(t->labels);
    dq_metrics_close(&t->metrics);
}

/* Copies test samples [first, first+n) into the batch buffers and normalises
 * them into the net's input buffer. */
static void s_gather_test(s_trainer *t, int64_t first, int64_t n)
{
    const dq_dataset *ds = &t->test;
    size_t sz = (size_t)ds->c * (size_t)ds->h * (size_t)ds->w;
    memcpy(t->pix, ds->images + (size_t)first * sz, (size_t)n * sz);
    memcpy(t->labels, ds->labels + first, (size_t)n * sizeof(int32_t));
    dq_net_normalize_u8(t->net, dq_net_input_buffer(t->net), t->pix, n);
}

static dq_status s_check_data(s_trainer *t, const dq_dataset *ds, const char *split,
                              dq_err *err)
{
    const dq_net_input *in = dq_net_input_spec(t->net);
    if (ds->c != in->channels || ds->h != in->height || ds->w != in->width)
        return dq_fail(err, DQ_ERR_SHAPE, "%s split of %s has images %dx%dx%d but model %s "
                       "expects %dx%dx%d", split, t->cfg->data_dir, ds->c, ds->h, ds->w,
                       dq_net_name(t->net), in->channels, in->height, in->width);
    if (ds->classes > in->classes)
        return dq_fail(err, DQ_ERR_SHAPE, "%s split of %s has %d classes but model %s has %d "
                       "logits", split, t->cfg->data_dir, ds->classes, dq_net_name(t->net),
                       in->classes);
    if (ds->n == 0) return dq_fail(err, DQ_ERR_ARG, "%s split of %s is empty", split,
                                   t->cfg->data_dir);
    return DQ_OK;
}

/* Picks the source from the flags and checks the teacher output against the
 * recipe before any training happens. */
static dq_status s_open_source(s_trainer *t, dq_err *err)
{
    const dq_train_config *cfg = t->cfg;
    dq_source_config sc;
    memset(&sc, 0, sizeof sc);
    sc.train = &t->train;
    sc.seed = cfg->seed;
    sc.batch = cfg->batch;
    sc.augment = cfg->augment;
    sc.output = dq_recipe_teacher_output(&cfg->recipe);
    sc.inflight = cfg->inflight;
    sc.inflight_bytes = cfg->inflight_bytes;
    sc.client_name = cfg->client_name;
    sc.curve_server_cert = cfg->curve_server_cert;
    sc.curve_cert = cfg->curve_cert;
    sc.timeout_ms = cfg->teacher_timeout_ms;
    sc.epochs = cfg->epochs;
    sc.allow_teacher_change = cfg->allow_teacher_change;
    sc.replay_dir = cfg->replay_dir;
    sc.rank = t->rank;
    sc.ranks = t->ranks;
    sc.teacher_device = cfg->teacher_device;
    sc.log = cfg->log;
    int kinds = (cfg->n_teachers > 0) + (cfg->n_local_teachers > 0) + (cfg->replay_dir != NULL);
    if (kinds > 1)
        return dq_fail(err, DQ_ERR_ARG, "--teacher, --teacher-local and --replay exclude each "
                       "other");
    if (sc.output && kinds == 0)
        return dq_fail(err, DQ_ERR_ARG, "--loss %s needs a teacher: --teacher URL, "
                       "--teacher-local MODEL:WEIGHTS|FILE.onnx or --replay DIR",
                       dq_recipe_name(cfg->recipe.kind));
    if (!sc.output && kinds > 0)
        return dq_fail(err, DQ_ERR_ARG, "a teacher was given but --loss ce uses none; choose "
                       "--loss kd, cosine or regressor");
    const char *const *list = cfg->n_teachers ? cfg->teachers : cfg->local_teachers;
    sc.n_teachers = cfg->n_teachers ? cfg->n_teachers : cfg->n_local_teachers;
    for (int i = 0; i < sc.n_teachers; i++) sc.teachers[i] = list[i];
    for (int i = 0; i < DQ_SOURCE_MAX_TEACHERS; i++) sc.weights[i] = cfg->teacher_weights[i];
    if (cfg->replay_dir) {
        sc.n_replay_teachers = cfg->n_replay_teachers;
        for (int i = 0; i < cfg->n_replay_teachers; i++)
            sc.replay_teachers[i] = cfg->replay_teachers[i];
        DQ_TRY(dq_source_replay_new(&t->source, &sc, err));
    } else if (cfg->n_teachers > 0) {
        DQ_TRY(dq_source_service_new(&t->source, &sc, err));
    } else {
        DQ_TRY(dq_source_local_new(&t->source, &sc, err));
    }
    if (sc.output)
        DQ_TRY(dq_recipe_check(&cfg->recipe, t->net, t->source->tshape.shape,
                               t->source->tshape.ndim, err));
    return DQ_OK;
}

/* Every rank needs at least one sample of every batch. */
static dq_status s_check_ranks(s_trainer *t, dq_err *err)
{
    const dq_train_config *cfg = t->cfg;
    if (t->ranks <= 1) return DQ_OK;
    if (cfg->device.kind == DQ_DEVICE_CUDA)
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "data-parallel training (%d ranks) runs on the "
                       "CPU only", t->ranks);
    int64_t last = t->train.n % cfg->batch;
    if (cfg->batch < t->ranks || (last > 0 && last < t->ranks))
        return dq_fail(err, DQ_ERR_ARG, "--batch %lld over %lld samples leaves a batch of fewer "
                       "samples than the %d ranks", (long long)cfg->batch,
                       (long long)t->train.n, t->ranks);
    return DQ_OK;
}

static dq_status s_setup(s_trainer *t, dq_err *err)
{
    const dq_train_config *cfg = t->cfg;
    DQ_TRY(dq_net_load(&t->net, cfg->model_path, err));
    if (cfg->device.kind == DQ_DEVICE_CUDA) {
        if (cfg->optim != DQ_OPTIM_ADAM)
            return dq_fail(err, DQ_ERR_UNSUPPORTED, "--optimizer sgd: training on cuda:%d has "
                           "Adam only", cfg->device.index);
        DQ_TRY(dq_net_set_device(t->net, cfg->device, true, cfg->seed, err));
    }
    DQ_TRY(dq_dataset_load_dir(&t->train, cfg->data_dir, 1, err));
    DQ_TRY(dq_dataset_load_dir(&t->test, cfg->data_dir, 0, err));
    dq_dataset_truncate(&t->train, cfg->limit_train);
    dq_dataset_truncate(&t->test, cfg->limit_test);
    DQ_TRY(s_check_data(t, &t->train, "train", err));
    DQ_TRY(s_check_data(t, &t->test, "test", err));
    DQ_TRY(s_check_ranks(t, err));
    DQ_TRY(dq_net_plan(t->net, cfg->batch, err));

    t->nparams = dq_net_param_floats(t->net);
    size_t sz = (size_t)t->train.c * (size_t)t->train.h * (size_t)t->train.w;
    t->m = calloc((size_t)t->nparams, sizeof(float));
    t->v = calloc((size_t)t->nparams, sizeof(float));
    t->pix = malloc((size_t)cfg->batch * sz);
    t->labels = malloc((size_t)cfg->batch * sizeof(int32_t));
    if (!t->m || !t->v || !t->pix || !t->labels)
        return dq_fail(err, DQ_ERR_NOMEM, "trainer: out of memory for %lld parameters",
                       (long long)t->nparams);
    t->st.m = t->m;
    t->st.v = t->v;

    dq_train_state_path(t->state_path, sizeof t->state_path, cfg->out_path);
    if (cfg->metrics_path)
        snprintf(t->metrics_path, sizeof t->metrics_path, "%s", cfg->metrics_path);
    else
        snprintf(t->metrics_path, sizeof t->metrics_path, "%s.metrics.jsonl", cfg->out_path);

    if (cfg->resume) {
        DQ_TRY(dq_ckpt_load_weights(t->net, cfg->out_path, err));
        DQ_TRY(dq_ckpt_load_state(t->net, &t->st, t->state_path, err));
        if (t->st.seed != cfg->seed)
            return dq_fail(err, DQ_ERR_ARG, "--resume: %s was trained with --seed %llu, not %llu",
                           t->state_path, (unsigned long long)t->st.seed,
                           (unsigned long long)cfg->seed);
    } else {
        dq_rng init;
        dq_rng_seed(&init, cfg->seed);
        dq_net_init_params(t->net, &init);
        if (cfg->init_weights) DQ_TRY(dq_ckpt_load_weights(t->net, cfg->init_weights, err));
        t->st.seed = cfg->seed;
        dq_rng_seed(&t->st.rng, cfg->seed ^ 0xd1b54a32d192ed03ULL);
    }
    /* A device starts from the host's weights and moments (no-op on the CPU). */
    DQ_TRY(dq_net_upload(t->net, t->m, t->v, err));
    DQ_TRY(s_open_source(t, err));
    if (t->ranks > 1) DQ_TRY(dq_dist_reserve(cfg->dist, t->nparams, err));
    if (t->rank != 0) return DQ_OK;
    return dq_metrics_open(&t->metrics, t->metrics_path, cfg->resume, err);
}

static dq_status s_save(s_trainer *t, dq_err *err)
{
    if (t->rank != 0) return DQ_OK; /* the ranks hold the same weights */
    DQ_TRY(dq_net_download(t->net, false, t->m, t->v, err)); /* no-op on the CPU */
    DQ_TRY(dq_ckpt_save_weights(t->net, t->cfg->out_path, err));
    return dq_ckpt_save_state(t->net, &t->st, t->state_path, err);
}

/* Forward, loss and backward of one batch (or shard): the gradients, the
 * mean loss and the correct count. */
static dq_status s_grads(s_trainer *t, const dq_train_batch *b, float *loss, int64_t *correct,
                         dq_err *err)
{
    int64_t n = b->n;
    dq_net_normalize_u8(t->net, dq_net_input_buffer(t->net), b->pix, n);
    dq_net_zero_grad(t->net);
    DQ_TRY(dq_net_forward_input(t->net, n, true, &t->st.rng, err));
    const dq_tensor *logits = dq_net_output(t->net, "logits");
    DQ_TRY(dq_recipe_loss(&t->cfg->recipe, t->net, b->labels, b->teacher, loss, err));
    DQ_TRY(dq_net_backward(t->net, err));
    *correct = dq_count_correct(logits, b->labels);
    return DQ_OK;
}

/* The optimiser step on the gradients in the net. */
static dq_status s_update(s_trainer *t, dq_err *err)
{
    t->st.step++;
    float lr = dq_lr_at(t->cfg->lr_schedule, t->cfg->lr, t->st.step, t->total_steps);
    if (t->cfg->optim == DQ_OPTIM_ADAM) {
        dq_adam_config a = dq_adam_defaults();
        a.lr = lr;
        a.weight_decay = t->cfg->weight_decay;
        DQ_TRY(dq_net_adam_step(t->net, t->m, t->v, t->st.step, &a, err));
    } else {
        dq_sgd_config s = dq_sgd_defaults(lr);
        s.momentum = t->cfg->momentum;
        s.weight_decay = t->cfg->weight_decay;
        dq_sgd_step(dq_net_params(t->net), dq_net_grads(t->net), t->m, t->nparams,
                    t->st.step == 1, &s);
    }
    return DQ_OK;
}

/* One optimiser step on one batch from the source (one process). */
static dq_status s_step(s_trainer *t, const dq_train_batch *b, dq_err *err)
{
    float loss = 0;
    int64_t correct = 0, n = b->n;
    DQ_TRY(s_grads(t, b, &loss, &correct, err));
    DQ_TRY(s_update(t, err));
    t->st.loss_sum += (double)loss * (double)n;
    t->st.correct += correct;
    t->st.seen += n;
    if (!isfinite(loss))
        return dq_fail(err, DQ_ERR_ARG, "loss became %f at step %lld: lower --lr", (double)loss,
                       (long long)t->st.step);
    return DQ_OK;
}

/* One data-parallel step of batch b: this rank's shard (when got is DQ_OK)
 * or its source's failure `got`, exchanged with the other ranks. Afterwards
 * *fail is a rank's failure (DQ_OK: none; then the step was taken on the
 * rank-ordered sum of the gradients) and *stop whether any rank asked to
 * stop after this batch. */
static dq_status s_dist_step(s_trainer *t, int64_t b, dq_status got, const dq_train_batch *batch,
                             bool want_stop, dq_status *fail, bool *stop, dq_err *err)
{
    const dq_train_config *cfg = t->cfg;
    int64_t flags[2] = {got == DQ_OK ? 0 : (int64_t)got, want_stop};
    double stats[3] = {0, 0, 0}; /* loss x n, correct, n */
    float *g = dq_net_grads(t->net);
    if (got == DQ_OK) {
        /* dropout masks: a function of (seed, step, rank), not of history */
        uint64_t k = (uint64_t)(t->st.step + 1) * 0x9e3779b97f4a7c15ULL ^
                     (uint64_t)(t->rank + 1) * 0xc2b2ae3d27d4eb4fULL;
        dq_rng_seed(&t->st.rng, cfg->seed ^ 0xd1b54a32d192ed03ULL ^ k);
        float loss = 0;
        int64_t correct = 0;
        DQ_TRY(s_grads(t, batch, &loss, &correct, err));
        int64_t first = b * cfg->batch;
        int64_t N = t->train.n - first < cfg->batch ? t->train.n - first : cfg->batch;
        float share = (float)batch->n / (float)N;
        for (int64_t i = 0; i < t->nparams; i++) g[i] *= share;
        stats[0] = (double)loss * (double)batch->n;
        stats[1] = (double)correct;
        stats[2] = (double)batch->n;
    } else {
        dq_net_zero_grad(t->net);
    }
    DQ_TRY(dq_dist_max_i64(cfg->dist, flags, 2, err));
    *fail = (dq_status)flags[0];
    *stop = flags[1] != 0;
    if (*fail != DQ_OK) return DQ_OK;
    DQ_TRY(dq_dist_sum_f32(cfg->dist, g, t->nparams, err));
    DQ_TRY(dq_dist_sum_f64(cfg->dist, stats, 3, err));
    DQ_TRY(s_update(t, err));
    t->st.loss_sum += stats[0];
    t->st.correct += (int64_t)stats[1];
    t->st.seen += (int64_t)stats[2];
    if (!isfinite(stats[0]))
        return dq_fail(err, DQ_ERR_ARG, "loss became %f at step %lld: lower --lr",
                       stats[0] / stats[2], (long long)t->st.step);
    return DQ_OK;
}

static dq_status s_evaluate(s_trainer *t, double *loss, double *acc, dq_err *err)
{
    double lsum = 0;
    int64_t correct = 0;
    for (int64_t first = 0; first < t->test.n; first += t->cfg->batch) {
        int64_t n = t->test.n - first < t->cfg->batch ? t->test.n - first : t->cfg->batch;
        s_gather_test(t, first, n);
        DQ_TRY(dq_net_forward_input(t->net, n, false, NULL, err));
        const dq_tensor *logits = dq_net_output(t->net, "logits");
        float l = 0;
        DQ_TRY(dq_loss_cross_entropy(&l, NULL, logits, t->labels, 1.0f, err));
        lsum += (double)l * (double)n;
        correct += dq_count_correct(logits, t->labels);
    }
    *loss = lsum / (double)t->test.n;
    *acc = (double)correct / (double)t->test.n;
    return DQ_OK;
}

static dq_status s_run(s_trainer *t, dq_err *err)
{
    const dq_train_config *cfg = t->cfg;
    FILE *log = cfg->log;
    int64_t nb = (t->train.n + cfg->batch - 1) / cfg->batch;
    t->total_steps = nb * cfg->epochs;
    int64_t batches_run = 0;
    if (log && t->st.epoch == 0 && t->st.batch_in_epoch == 0)
        fprintf(log, "training %s on %lld samples (%lld test), %lld parameters, batch %lld\n",
                dq_net_name(t->net), (long long)t->train.n, (long long)t->test.n,
                (long long)t->nparams, (long long)cfg->batch);
    if (log && cfg->resume)
        fprintf(log, "resuming at epoch %lld, batch %lld of %lld\n", (long long)t->st.epoch + 1,
                (long long)t->st.batch_in_epoch, (long long)nb);

    while (t->st.epoch < cfg->epochs) {
        DQ_TRY(t->source->start(t->source, t->st.epoch, t->st.batch_in_epoch, err));
        char label[64];
        snprintf(label, sizeof label, "epoch %lld/%lld", (long long)t->st.epoch + 1,
                 (long long)cfg->epochs);
        dq_progress prog;
        dq_progress_start(&prog, log, label, t->train.n);
        double t0 = dq_now() - t->st.seconds, wait_s = 0;
        for (int64_t b = t->st.batch_in_epoch; b < nb; b++) {
            dq_train_batch *batch = NULL;
            double w0 = dq_now();
            dq_status st = t->source->next(t->source, &batch, err);
            wait_s += dq_now() - w0;
            int64_t first = b * cfg->batch;
            int64_t n = t->train.n - first < cfg->batch ? t->train.n - first : cfg->batch;
            bool stop = false;
            if (t->ranks > 1) {
                /* Every rank reaches the exchange, with its shard or its failure. */
                if (st != DQ_OK && st != DQ_ERR_TIMEOUT && st != DQ_ERR_NET) return st;
                if (st == DQ_OK && (!batch || batch->index != b))
                    return dq_fail(err, DQ_ERR_ARG, "%s source: expected batch %lld of epoch "
                                   "%lld", t->source->kind, (long long)b,
                                   (long long)t->st.epoch + 1);
                bool want = (cfg->stop && *cfg->stop) ||
                            (cfg->stop_after_batches > 0 &&
                             batches_run + 1 >= cfg->stop_after_batches);
                dq_status fail = DQ_OK;
                DQ_TRY(s_dist_step(t, b, st, batch, want, &fail, &stop, err));
                if (fail != DQ_OK && st == DQ_OK)
                    dq_fail(err, fail, "another rank's teacher source failed at batch %lld",
                            (long long)b);
                if (fail != DQ_OK) st = fail;
            }
            if (st == DQ_ERR_TIMEOUT || st == DQ_ERR_NET) {
                /* The teachers stayed away: keep what was trained. */
                t->st.seconds = dq_now() - t0;
                dq_progress_end(&prog);
                dq_err serr = {{0}};
                if (s_save(t, &serr) == DQ_OK)
                    return dq_fail_prefix(err, st, "saved resumable checkpoint %s at epoch %lld "
                                          "batch %lld; ", cfg->out_path,
                                          (long long)t->st.epoch + 1, (long long)b);
                return st;
            }
            DQ_TRY(st);
            if (t->ranks <= 1) {
                if (!batch || batch->index != b)
                    return dq_fail(err, DQ_ERR_ARG, "%s source: expected batch %lld of epoch "
                                   "%lld", t->source->kind, (long long)b,
                                   (long long)t->st.epoch + 1);
                DQ_TRY(s_step(t, batch, err));
                stop = (cfg->stop && *cfg->stop) ||
                       (cfg->stop_after_batches > 0 &&
                        batches_run + 1 >= cfg->stop_after_batches);
            }
            t->st.batch_in_epoch = b + 1;
            batches_run++;
            dq_progress_update(&prog, first + n, t->st.loss_sum / (double)t->st.seen);
            if (stop && b + 1 < nb) {
                t->st.seconds = dq_now() - t0;
                dq_progress_end(&prog);
                DQ_TRY(s_save(t, err));
                if (log)
                    fprintf(log, "interrupted: saved resumable checkpoint %s (epoch %lld, batch "
                            "%lld/%lld); continue with --resume\n", cfg->out_path,
                            (long long)t->st.epoch + 1, (long long)(b + 1), (long long)nb);
                return dq_fail(err, DQ_ERR_INTERRUPTED, "training interrupted, checkpoint saved");
            }
        }
        dq_progress_end(&prog);
        double secs = dq_now() - t0;
        dq_epoch_metrics em = {0};
        em.epoch = t->st.epoch + 1;
        em.seconds = secs;
        em.teacher_wait_s = wait_s;
        em.train_samples = t->st.seen;
        em.train_loss = t->st.loss_sum / (double)t->st.seen;
        em.train_acc = (double)t->st.correct / (double)t->st.seen;
        em.samples_per_s = secs > 0 ? (double)t->st.seen / secs : 0;
        if (t->rank == 0) {
            DQ_TRY(s_evaluate(t, &em.test_loss, &em.test_acc, err));
            em.test_samples = t->test.n;
            DQ_TRY(dq_metrics_write(t->metrics, &em, err));
        }
        if (log && t->rank == 0)
            fprintf(log, "epoch %lld/%lld  loss %.4f  train acc %.2f%%  test loss %.4f  test acc "
                    "%.2f%%  %.0f samples/s  %.1f s\n", (long long)em.epoch,
                    (long long)cfg->epochs, em.train_loss, 100 * em.train_acc, em.test_loss,
                    100 * em.test_acc, em.samples_per_s, em.seconds);
        t->st.batch_in_epoch = 0;
        t->st.loss_sum = 0;
        t->st.correct = 0;
        t->st.seen = 0;
        t->st.seconds = 0;
        t->st.epoch++;
        DQ_TRY(s_save(t, err));
        int64_t stop_now = cfg->stop && *cfg->stop;
        if (t->ranks > 1) DQ_TRY(dq_dist_max_i64(cfg->dist, &stop_now, 1, err));
        if (stop_now && t->st.epoch < cfg->epochs) {
            if (log)
                fprintf(log, "interrupted after epoch %lld: checkpoint %s; continue with "
                        "--resume\n", (long long)t->st.epoch, cfg->out_path);
            return dq_fail(err, DQ_ERR_INTERRUPTED, "training interrupted, checkpoint saved");
        }
    }
    return DQ_OK;
}

dq_status dq_train_run(const dq_train_config *cfg, dq_err *err)
{
    if (!cfg->model_path || !cfg->data_dir || !cfg->out_path)
        return dq_fail(err, DQ_ERR_ARG, "--model, --data and --out are required");
    if (cfg->epochs < 1 || cfg->batch < 1)
        return dq_fail(err, DQ_ERR_ARG, "--epochs and --batch must be at least 1");
    s_trainer t;
    memset(&t, 0, sizeof t);
    t.cfg = cfg;
    t.rank = cfg->dist ? dq_dist_rank(cfg->dist) : 0;
    t.ranks = cfg->dist ? dq_dist_size(cfg->dist) : 1;
    dq_status st = s_setup(&t, err);
    if (st == DQ_OK) st = s_run(&t, err);
    s_trainer_free(&t);
    return st;
}
