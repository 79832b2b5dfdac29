/* trainer.c - the student training loop (see trainer.h for the contract).
 *
 * All buffers (batch pixels, normalised input, index permutation, network
 * activations) are allocated once before the first step; the loop itself
 * does not allocate. The epoch's batch order comes from an rng seeded with
 * (seed, epoch), so resuming mid-epoch only needs the batch count.
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
    float *m, *v;          /* optimiser moments (Adam m/v; SGD uses m) */
    int32_t *perm;         /* this epoch's sample order */
    uint8_t *pix;          /* one batch of raw pixels */
    float *input;          /* the same batch normalised */
    int32_t *labels;       /* the batch's labels */
    dq_train_state st;
    dq_metrics_t *metrics;
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
    free(t->perm);
    free(t->pix);
    free(t->input);
    free(t->labels);
    dq_metrics_close(&t->metrics);
}

static void s_epoch_order(s_trainer *t, int64_t epoch)
{
    dq_rng r;
    dq_rng_seed(&r, t->cfg->seed ^ (0x5851f42d4c957f2dULL * (uint64_t)(epoch + 1)));
    for (int64_t i = 0; i < t->train.n; i++) t->perm[i] = (int32_t)i;
    dq_rng_shuffle(&r, t->perm, t->train.n);
}

/* Copies samples idx[0..n) of ds into the batch buffers and normalises. */
static void s_gather(s_trainer *t, const dq_dataset *ds, const int32_t *idx, int64_t first,
                     int64_t n)
{
    size_t sz = (size_t)ds->c * (size_t)ds->h * (size_t)ds->w;
    for (int64_t i = 0; i < n; i++) {
        int64_t s = idx ? idx[first + i] : first + i;
        memcpy(t->pix + (size_t)i * sz, ds->images + (size_t)s * sz, sz);
        t->labels[i] = ds->labels[s];
    }
    dq_net_normalize_u8(t->net, t->input, t->pix, n);
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

static dq_status s_setup(s_trainer *t, dq_err *err)
{
    const dq_train_config *cfg = t->cfg;
    DQ_TRY(dq_net_load(&t->net, cfg->model_path, err));
    DQ_TRY(dq_dataset_load_dir(&t->train, cfg->data_dir, 1, err));
    DQ_TRY(dq_dataset_load_dir(&t->test, cfg->data_dir, 0, err));
    dq_dataset_truncate(&t->train, cfg->limit_train);
    dq_dataset_truncate(&t->test, cfg->limit_test);
    DQ_TRY(s_check_data(t, &t->train, "train", err));
    DQ_TRY(s_check_data(t, &t->test, "test", err));
    DQ_TRY(dq_net_plan(t->net, cfg->batch, err));

    t->nparams = dq_net_param_floats(t->net);
    size_t sz = (size_t)t->train.c * (size_t)t->train.h * (size_t)t->train.w;
    t->m = calloc((size_t)t->nparams, sizeof(float));
    t->v = calloc((size_t)t->nparams, sizeof(float));
    t->perm = malloc((size_t)t->train.n * sizeof(int32_t));
    t->pix = malloc((size_t)cfg->batch * sz);
    t->input = malloc((size_t)cfg->batch * sz * sizeof(float));
    t->labels = malloc((size_t)cfg->batch * sizeof(int32_t));
    if (!t->m || !t->v || !t->perm || !t->pix || !t->input || !t->labels)
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
    return dq_metrics_open(&t->metrics, t->metrics_path, cfg->resume, err);
}

static dq_status s_save(s_trainer *t, dq_err *err)
{
    DQ_TRY(dq_ckpt_save_weights(t->net, t->cfg->out_path, err));
    return dq_ckpt_save_state(t->net, &t->st, t->state_path, err);
}

/* One optimiser step on batch [first, first+n) of the epoch order. */
static dq_status s_step(s_trainer *t, int64_t first, int64_t n, dq_err *err)
{
    const dq_net_input *in = dq_net_input_spec(t->net);
    s_gather(t, &t->train, t->perm, first, n);
    dq_tensor x = dq_tensor_view4(t->input, n, in->channels, in->height, in->width);
    dq_net_zero_grad(t->net);
    DQ_TRY(dq_net_forward(t->net, &x, true, &t->st.rng, err));
    const dq_tensor *logits = dq_net_output(t->net, "logits");
    dq_tensor *dlogits = dq_net_output_grad(t->net, "logits");
    float loss = 0;
    DQ_TRY(dq_loss_cross_entropy(&loss, dlogits, logits, t->labels, 1.0f, err));
    DQ_TRY(dq_net_backward(t->net, err));
    t->st.step++;
    if (t->cfg->optim == DQ_OPTIM_ADAM) {
        dq_adam_config a = dq_adam_defaults();
        a.lr = t->cfg->lr;
        a.weight_decay = t->cfg->weight_decay;
        dq_adam_step(dq_net_params(t->net), dq_net_grads(t->net), t->m, t->v, t->nparams,
                     t->st.step, &a);
    } else {
        dq_sgd_config s = dq_sgd_defaults(t->cfg->lr);
        s.momentum = t->cfg->momentum;
        s.weight_decay = t->cfg->weight_decay;
        dq_sgd_step(dq_net_params(t->net), dq_net_grads(t->net), t->m, t->nparams,
                    t->st.step == 1, &s);
    }
    t->st.loss_sum += (double)loss * (double)n;
    t->st.correct += dq_count_correct(logits, t->labels);
    t->st.seen += n;
    if (!isfinite(loss))
        return dq_fail(err, DQ_ERR_ARG, "loss became %f at step %lld: lower --lr", (double)loss,
                       (long long)t->st.step);
    return DQ_OK;
}

static dq_status s_evaluate(s_trainer *t, double *loss, double *acc, dq_err *err)
{
    const dq_net_input *in = dq_net_input_spec(t->net);
    double lsum = 0;
    int64_t correct = 0;
    for (int64_t first = 0; first < t->test.n; first += t->cfg->batch) {
        int64_t n = t->test.n - first < t->cfg->batch ? t->test.n - first : t->cfg->batch;
        s_gather(t, &t->test, NULL, first, n);
        dq_tensor x = dq_tensor_view4(t->input, n, in->channels, in->height, in->width);
        DQ_TRY(dq_net_forward(t->net, &x, false, NULL, err));
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
    int64_t batches_run = 0;
    if (log && t->st.epoch == 0 && t->st.batch_in_epoch == 0)
        fprintf(log, "training %s on %lld samples (%lld test), %lld parameters, batch %lld\n",
                dq_net_name(t->net), (long long)t->train.n, (long long)t->test.n,
                (long long)t->nparams, (long long)cfg->batch);
    if (log && cfg->resume)
        fprintf(log, "resuming at epoch %lld, batch %lld of %lld\n", (long long)t->st.epoch + 1,
                (long long)t->st.batch_in_epoch, (long long)nb);

    while (t->st.epoch < cfg->epochs) {
        s_epoch_order(t, t->st.epoch);
        char label[64];
        snprintf(label, sizeof label, "epoch %lld/%lld", (long long)t->st.epoch + 1,
                 (long long)cfg->epochs);
        dq_progress prog;
        dq_progress_start(&prog, log, label, t->train.n);
        double t0 = dq_now() - t->st.seconds;
        for (int64_t b = t->st.batch_in_epoch; b < nb; b++) {
            int64_t first = b * cfg->batch;
            int64_t n = t->train.n - first < cfg->batch ? t->train.n - first : cfg->batch;
            DQ_TRY(s_step(t, first, n, err));
            t->st.batch_in_epoch = b + 1;
            batches_run++;
            dq_progress_update(&prog, first + n, t->st.loss_sum / (double)t->st.seen);
            bool stop = (cfg->stop && *cfg->stop) ||
                        (cfg->stop_after_batches > 0 && batches_run >= cfg->stop_after_batches);
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
        em.train_samples = t->st.seen;
        em.train_loss = t->st.loss_sum / (double)t->st.seen;
        em.train_acc = (double)t->st.correct / (double)t->st.seen;
        em.samples_per_s = secs > 0 ? (double)t->st.seen / secs : 0;
        DQ_TRY(s_evaluate(t, &em.test_loss, &em.test_acc, err));
        em.test_samples = t->test.n;
        DQ_TRY(dq_metrics_write(t->metrics, &em, err));
        if (log)
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
        if (cfg->stop && *cfg->stop && t->st.epoch < cfg->epochs) {
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
    dq_status st = s_setup(&t, err);
    if (st == DQ_OK) st = s_run(&t, err);
    s_trainer_free(&t);
    return st;
}
