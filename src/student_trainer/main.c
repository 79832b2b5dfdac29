/* main.c - distillq-train: train a student, plainly or by distillation.
 *
 * A thin shell over trainer.c: parse options, install the Ctrl-C handler
 * (the only global: the stop flag main owns), run, map the status to an
 * exit code with a one-line reason.
 *
 * Under mpirun (an MPI build, dist.h) every rank runs this main: rank 0
 * prints progress and writes the checkpoint and metrics, the others are quiet;
 * a rank that fails ends the whole job (dq_dist_abort) so that none waits in
 * a collective.
 */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cli/opts.h"
#include "cli/parse.h"
#include "student_trainer/recipe.h"
#include "student_trainer/trainer.h"
#include "tensor/backend.h"
#include "tensor/backend_cuda.h"

static volatile sig_atomic_t s_stop = 0;

static void s_on_signal(int sig)
{
    (void)sig;
    s_stop = 1;
}

static void s_usage(FILE *f, const dq_opt *opts, int n)
{
    fprintf(f,
"usage: distillq-train --model M --data DIR --out CKPT [options]\n"
"\n"
"Trains the model in the model file M on the dataset in DIR (Fashion-MNIST/MNIST\n"
"IDX files, raw or .gz, or CIFAR-10 binary batches), with cross-entropy or a\n"
"distillation recipe, evaluates on the test split after every epoch and writes\n"
"the weights to CKPT (safetensors, PyTorch state_dict keys) plus CKPT's training\n"
"state for --resume.\n"
"\n");
    dq_opts_print_help(f, opts, n, 23);
    fprintf(f,
"\n"
"Ctrl-C saves a resumable checkpoint and exits with status 130.\n");
}

/* --loss ce|kd|cosine|regressor */
static dq_status s_loss(void *dst, const char *opt, const char *val, dq_err *err)
{
    (void)opt;
    return dq_recipe_parse(dst, val, err);
}

/* --optimizer adam|sgd */
static dq_status s_optim(void *dst, const char *opt, const char *val, dq_err *err)
{
    dq_optim_kind *k = dst;
    if (strcmp(val, "adam") == 0) *k = DQ_OPTIM_ADAM;
    else if (strcmp(val, "sgd") == 0) *k = DQ_OPTIM_SGD;
    else return dq_fail(err, DQ_ERR_ARG, "%s: expected adam or sgd, got '%s'", opt, val);
    return DQ_OK;
}

/* --lr-schedule constant|cosine */
static dq_status s_schedule(void *dst, const char *opt, const char *val, dq_err *err)
{
    dq_lr_schedule *s = dst;
    if (strcmp(val, "constant") == 0) *s = DQ_LR_CONSTANT;
    else if (strcmp(val, "cosine") == 0) *s = DQ_LR_COSINE;
    else return dq_fail(err, DQ_ERR_ARG, "%s: expected constant or cosine, got '%s'", opt, val);
    return DQ_OK;
}

/* A repeatable option's list (--teacher, --teacher-local, --replay-teacher). */
typedef struct {
    int *n;
    const char **items;
} s_list;

static dq_status s_append(void *dst, const char *opt, const char *val, dq_err *err)
{
    (void)opt;
    s_list *l = dst;
    if (*l->n == DQ_SOURCE_MAX_TEACHERS)
        return dq_fail(err, DQ_ERR_ARG, "at most %d teachers", DQ_SOURCE_MAX_TEACHERS);
    l->items[(*l->n)++] = val;
    return DQ_OK;
}

static int s_main(int argc, char **argv, dq_dist_t *dist);

int main(int argc, char **argv)
{
    dq_dist_t *dist = NULL;
    dq_err err = {{0}};
    if (dq_dist_new(&dist, &argc, &argv, &err) != DQ_OK) {
        fprintf(stderr, "distillq-train: %s\n", err.msg);
        return 1;
    }
    int rc = s_main(argc, argv, dist);
    if (rc != 0 && rc != 130 && dq_dist_size(dist) > 1) dq_dist_abort(dist, rc);
    dq_dist_destroy(&dist);
    return rc;
}

static int s_main(int argc, char **argv, dq_dist_t *dist)
{
    dq_train_config cfg;
    dq_train_config_defaults(&cfg);
    cfg.log = stderr;
    int64_t threads = 1;
    dq_err err = {{0}};
    dq_status st = DQ_OK;

    /* Recipe weights given explicitly survive a later --loss. */
    dq_recipe_kind kind = DQ_RECIPE_CE;
    float T = -1, softw = -1, hidw = -1, cew = -1;
    const char *tweights = NULL;
    const char *device = NULL, *tdevice = NULL;
    bool quiet = false;
    s_list remote = {&cfg.n_teachers, cfg.teachers};
    s_list local = {&cfg.n_local_teachers, cfg.local_teachers};
    s_list replayed = {&cfg.n_replay_teachers, cfg.replay_teachers};
    const dq_opt opts[] = {
        DQ_OPT_STR("model", "M", &cfg.model_path, "model file (models/*.model)"),
        DQ_OPT_STR("data", "DIR", &cfg.data_dir, "dataset directory"),
        DQ_OPT_STR("out", "CKPT", &cfg.out_path, "weights file to write, e.g. student.safetensors"),
        DQ_OPT_I64("epochs", "E", &cfg.epochs, 1, 100000, "epochs (default 1)"),
        DQ_OPT_I64("batch", "B", &cfg.batch, 1, 65536, "batch size (default 128)"),
        DQ_OPT_F32("lr", "LR", &cfg.lr, 1e-12, 100, "learning rate (default 1e-3)"),
        DQ_OPT_CALL("lr-schedule", "constant|cosine", s_schedule, &cfg.lr_schedule,
                    "learning rate over the run (default constant; cosine:\n"
                    "from --lr at the first step to 0 at the last of all epochs)"),
        DQ_OPT_CALL("optimizer", "adam|sgd", s_optim, &cfg.optim,
                    "optimiser (default adam; sgd uses --momentum)"),
        DQ_OPT_F32("momentum", "M", &cfg.momentum, 0, 1, "SGD momentum (default 0.9)"),
        DQ_OPT_F32("weight-decay", "WD", &cfg.weight_decay, 0, 1, "L2 weight decay (default 0)"),
        DQ_OPT_U64("seed", "S", &cfg.seed, "seed for init, shuffling and dropout (default 42)"),
        DQ_OPT_I64("threads", "N", &threads, 1, 256, "BLAS/compute threads (default 1)"),
        DQ_OPT_STR("device", "D", &device,
                   "cpu (default) or cuda[:N]: the student trains on that GPU\n"
                   "(Adam only; see docs/cuda.md)"),
        DQ_OPT_STR("teacher-device", "D", &tdevice,
                   "cpu (default) or cuda[:N]: --teacher-local teachers run\n"
                   "their (batch-invariant) eval forward on that GPU"),
        DQ_OPT_I64("limit-train", "N", &cfg.limit_train, 1, INT32_MAX,
                   "use only the first N training samples"),
        DQ_OPT_I64("limit-test", "N", &cfg.limit_test, 1, INT32_MAX,
                   "evaluate on only the first N test samples"),
        DQ_OPT_STR("init-weights", "W", &cfg.init_weights,
                   "start from these weights instead of a random init"),
        DQ_OPT_STR("metrics", "FILE", &cfg.metrics_path,
                   "per-epoch JSON lines (default CKPT.metrics.jsonl)"),
        DQ_OPT_FLAG("resume", &cfg.resume, "continue the run saved in CKPT (bit-identical)"),
        DQ_OPT_I64("stop-after", "N", &cfg.stop_after_batches, 1, INT64_MAX,
                   "save a resumable checkpoint and stop after N batches"),
        DQ_OPT_TEXT("\nDistillation:"),
        DQ_OPT_CALL("loss", "ce|kd|cosine|regressor", s_loss, &kind, "recipe (default ce)"),
        DQ_OPT_F32("T", "T", &T, 1e-3, 1e3, "kd temperature (default 2)"),
        DQ_OPT_F32("soft-weight", "W", &softw, 0, 1e3, "kd soft-target weight (default 0.25)"),
        DQ_OPT_F32("hidden-weight", "W", &hidw, 0, 1e3,
                   "cosine/regressor hidden-feature weight (default 0.25)"),
        DQ_OPT_F32("ce-weight", "W", &cew, 0, 1e3,
                   "cross-entropy weight (default 0.75; 1 for --loss ce)"),
        DQ_OPT_CALL("teacher", "URL", s_append, &remote,
                    "teacher service tcp://HOST:PORT/NAME (repeatable: ensemble)"),
        DQ_OPT_CALL("teacher-local", "M:W", s_append, &local,
                    "teacher model file and weights in this process, or"),
        /* the option's second form, in the help only */
        DQ_OPT_TEXT("  --teacher-local FILE.onnx  an ONNX teacher (its initializers are the weights)\n"
                    "                       (conventional distillation; repeatable: ensemble)"),
        DQ_OPT_STR("teacher-weights", "a,b,...", &tweights,
                   "ensemble weights, in teacher order (default equal)"),
        DQ_OPT_STR("replay", "DIR", &cfg.replay_dir,
                   "teacher outputs from the broker's LMDB cache DIR"),
        DQ_OPT_CALL("replay-teacher", "SHA", s_append, &replayed,
                    "which teacher of the cache (sha256 or a prefix), when\n"
                    "it holds several (repeatable: ensemble, in --teacher order)"),
        DQ_OPT_I64("inflight", "K", &cfg.inflight, 1, 1024,
                   "batches kept at the teacher service (default: what keeps\n"
                   "the workers busy at the measured round trip)"),
        DQ_OPT_I64("inflight-bytes", "B", &cfg.inflight_bytes, 1024, 1LL << 40,
                   "...fewer if those batches would hold more than B bytes\n"
                   "(inputs, request copies, teacher outputs; 268435456)"),
        DQ_OPT_I64("teacher-timeout-ms", "T", &cfg.teacher_timeout_ms, 100, INT32_MAX,
                   "stop (after saving) when unserved this long (60000)"),
        DQ_OPT_FLAG("allow-teacher-change", &cfg.allow_teacher_change,
                    "accept a teacher whose weights change mid-run"),
        DQ_OPT_STR("client-name", "NAME", &cfg.client_name,
                   "name for the broker's fair sharing (--share NAME=W)"),
        DQ_OPT_STR("curve-server-cert", "FILE", &cfg.curve_server_cert,
                   "CURVE: the broker's public certificate"),
        DQ_OPT_STR("curve-cert", "FILE", &cfg.curve_cert,
                   "CURVE: our secret certificate (NAME_secret)"),
        DQ_OPT_FLAG("augment", &cfg.augment,
                    "seeded random crop (2-pixel padding) + horizontal flip"),
        DQ_OPT_FLAG("quiet", &quiet, "no progress output"),
        DQ_OPT_HELP,
        DQ_OPT_VERSION,
    };
    const int n_opts = (int)(sizeof opts / sizeof opts[0]);
    dq_opts_action act;
    st = dq_opts_parse(opts, n_opts, argc, argv, &act, &err);
    if (act == DQ_OPTS_HELP) {
        s_usage(stdout, opts, n_opts);
        return 0;
    }
    if (act == DQ_OPTS_VERSION) {
        printf("distillq-train %s\n", PACKAGE_VERSION);
        return 0;
    }
    if (quiet || dq_dist_rank(dist) != 0) cfg.log = NULL;
    cfg.dist = dist;
    if (st == DQ_OK) {
        cfg.recipe = dq_recipe_defaults(kind);
        if (T > 0) cfg.recipe.T = T;
        if (softw >= 0) cfg.recipe.soft_weight = softw;
        if (hidw >= 0) cfg.recipe.hidden_weight = hidw;
        if (cew >= 0) cfg.recipe.ce_weight = cew;
    }
    for (int i = 0; st == DQ_OK && tweights && *tweights; i++) {
        char tok[64];
        size_t len = strcspn(tweights, ",");
        if (i == DQ_SOURCE_MAX_TEACHERS || len == 0 || len >= sizeof tok) {
            st = dq_fail(&err, DQ_ERR_ARG, "--teacher-weights: expected up to %d numbers "
                         "separated by commas", DQ_SOURCE_MAX_TEACHERS);
            break;
        }
        memcpy(tok, tweights, len);
        tok[len] = '\0';
        st = dq_cli_parse_float("--teacher-weights", tok, 1e-6, 1e6, &cfg.teacher_weights[i], &err);
        tweights += len + (tweights[len] == ',');
    }
    if (st == DQ_OK && (!cfg.model_path || !cfg.data_dir || !cfg.out_path))
        st = dq_fail(&err, DQ_ERR_ARG, "--model, --data and --out are required (see --help)");
    /* The student's forward, backward and Adam run on the chosen device
     * through the same loop (dq_net_set_device). */
    if (st == DQ_OK) st = dq_backend_select(device, &cfg.device, &err);
    if (st == DQ_OK && dq_backend_select(tdevice, &cfg.teacher_device, &err) != DQ_OK)
        st = dq_fail_prefix(&err, DQ_ERR_UNSUPPORTED, "--teacher-device: ");
    if (st == DQ_OK && tdevice && cfg.n_local_teachers == 0)
        st = dq_fail(&err, DQ_ERR_ARG, "--teacher-device is for --teacher-local teachers");
    if (st != DQ_OK) {
        fprintf(stderr, "distillq-train: %s\n", err.msg);
        return 2;
    }

    dq_backend_set_threads((int)threads);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    cfg.stop = &s_stop;

    st = dq_train_run(&cfg, &err);
    if (st == DQ_ERR_INTERRUPTED) {
        fprintf(stderr, "distillq-train: %s\n", err.msg);
        return s_stop ? 130 : 0; /* --stop-after is a requested stop */
    }
    if (st != DQ_OK) {
        fprintf(stderr, "distillq-train: %s: %s\n", dq_strerror(st), err.msg);
        return 1;
    }
    return 0;
}
