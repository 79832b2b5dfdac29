/* main.c - distillq-train: train a student, plainly or by distillation.
 *
 * A thin shell over trainer.c: parse options, install the Ctrl-C handler
 * (the only global: the stop flag main owns), run, map the status to an
 * exit code with a one-line reason.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

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

static void s_usage(FILE *f)
{
    fprintf(f,
"usage: distillq-train --model M --data DIR --out CKPT [options]\n"
"\n"
"Trains the model in the model file M on the dataset in DIR (Fashion-MNIST/MNIST\n"
"IDX files, raw or .gz, or CIFAR-10 binary batches), with cross-entropy or a\n"
"distillation recipe, evaluates on the test split after every epoch and writes\n"
"the weights to CKPT (safetensors, PyTorch state_dict keys) plus CKPT's training\n"
"state for --resume.\n"
"\n"
"  --model M            model file (models/*.model)\n"
"  --data DIR           dataset directory\n"
"  --out CKPT           weights file to write, e.g. student.safetensors\n"
"  --epochs E           epochs (default 1)\n"
"  --batch B            batch size (default 128)\n"
"  --lr LR              learning rate (default 1e-3)\n"
"  --optimizer adam|sgd optimiser (default adam; sgd uses --momentum)\n"
"  --momentum M         SGD momentum (default 0.9)\n"
"  --weight-decay WD    L2 weight decay (default 0)\n"
"  --seed S             seed for init, shuffling and dropout (default 42)\n"
"  --threads N          BLAS/compute threads (default 1)\n"
"  --device D           cpu (default) or cuda[:N]: the student trains on that GPU\n"
"  --teacher-device D   cpu (default) or cuda[:N]: --teacher-local teachers run\n"
"                       their (batch-invariant) eval forward on that GPU\n"
"                       (Adam only; see docs/cuda.md)\n"
"  --limit-train N      use only the first N training samples\n"
"  --limit-test N       evaluate on only the first N test samples\n"
"  --init-weights W     start from these weights instead of a random init\n"
"  --metrics FILE       per-epoch JSON lines (default CKPT.metrics.jsonl)\n"
"  --resume             continue the run saved in CKPT (bit-identical)\n"
"  --stop-after N       save a resumable checkpoint and stop after N batches\n"
"\n"
"Distillation:\n"
"  --loss ce|kd|cosine|regressor  recipe (default ce)\n"
"  --T T                kd temperature (default 2)\n"
"  --soft-weight W      kd soft-target weight (default 0.25)\n"
"  --hidden-weight W    cosine/regressor hidden-feature weight (default 0.25)\n"
"  --ce-weight W        cross-entropy weight (default 0.75; 1 for --loss ce)\n"
"  --teacher URL        teacher service tcp://HOST:PORT/NAME (repeatable: ensemble)\n"
"  --teacher-local M:W  teacher model file and weights in this process, or\n"
"  --teacher-local FILE.onnx  an ONNX teacher (its initializers are the weights)\n"
"                       (conventional distillation; repeatable: ensemble)\n"
"  --teacher-weights a,b,...  ensemble weights, in teacher order (default equal)\n"
"  --replay DIR         teacher outputs from the broker's LMDB cache DIR\n"
"  --replay-teacher SHA which teacher of the cache (sha256 or a prefix), when\n"
"                       it holds several\n"
"  --inflight K         batches kept at the teacher service (default: 2 x workers)\n"
"  --teacher-timeout-ms T  stop (after saving) when unserved this long (60000)\n"
"  --allow-teacher-change  accept a teacher whose weights change mid-run\n"
"  --augment            seeded random crop (2-pixel padding) + horizontal flip\n"
"  --quiet              no progress output\n"
"  --help, --version\n"
"\n"
"Ctrl-C saves a resumable checkpoint and exits with status 130.\n");
}

int main(int argc, char **argv)
{
    dq_train_config cfg;
    dq_train_config_defaults(&cfg);
    cfg.log = stderr;
    int64_t threads = 1;
    dq_err err = {{0}};
    dq_status st = DQ_OK;

    enum { O_MODEL = 256, O_DATA, O_OUT, O_EPOCHS, O_BATCH, O_LR, O_OPTIM, O_MOM, O_WD, O_SEED,
           O_THREADS, O_LTRAIN, O_LTEST, O_INIT, O_METRICS, O_RESUME, O_STOPAFTER, O_QUIET,
           O_HELP, O_VERSION, O_LOSS, O_T, O_SOFTW, O_HIDW, O_CEW, O_TEACHER, O_TLOCAL,
           O_TWEIGHTS, O_REPLAY, O_INFLIGHT, O_TTIMEOUT, O_ALLOWCHG, O_AUGMENT, O_RTEACHER,
           O_DEVICE, O_TDEVICE };
    static const struct option opts[] = {
        {"loss", required_argument, 0, O_LOSS}, {"T", required_argument, 0, O_T},
        {"soft-weight", required_argument, 0, O_SOFTW},
        {"hidden-weight", required_argument, 0, O_HIDW},
        {"ce-weight", required_argument, 0, O_CEW}, {"teacher", required_argument, 0, O_TEACHER},
        {"teacher-local", required_argument, 0, O_TLOCAL},
        {"teacher-weights", required_argument, 0, O_TWEIGHTS},
        {"replay", required_argument, 0, O_REPLAY},
        {"replay-teacher", required_argument, 0, O_RTEACHER}, {"inflight", required_argument, 0, O_INFLIGHT},
        {"teacher-timeout-ms", required_argument, 0, O_TTIMEOUT},
        {"allow-teacher-change", no_argument, 0, O_ALLOWCHG},
        {"augment", no_argument, 0, O_AUGMENT},
        {"device", required_argument, 0, O_DEVICE},
        {"teacher-device", required_argument, 0, O_TDEVICE},
        {"model", required_argument, 0, O_MODEL}, {"data", required_argument, 0, O_DATA},
        {"out", required_argument, 0, O_OUT}, {"epochs", required_argument, 0, O_EPOCHS},
        {"batch", required_argument, 0, O_BATCH}, {"lr", required_argument, 0, O_LR},
        {"optimizer", required_argument, 0, O_OPTIM}, {"momentum", required_argument, 0, O_MOM},
        {"weight-decay", required_argument, 0, O_WD}, {"seed", required_argument, 0, O_SEED},
        {"threads", required_argument, 0, O_THREADS},
        {"limit-train", required_argument, 0, O_LTRAIN},
        {"limit-test", required_argument, 0, O_LTEST},
        {"init-weights", required_argument, 0, O_INIT},
        {"metrics", required_argument, 0, O_METRICS}, {"resume", no_argument, 0, O_RESUME},
        {"stop-after", required_argument, 0, O_STOPAFTER}, {"quiet", no_argument, 0, O_QUIET},
        {"help", no_argument, 0, O_HELP}, {"version", no_argument, 0, O_VERSION},
        {0, 0, 0, 0}};
    /* Recipe weights given explicitly survive a later --loss. */
    dq_recipe_kind kind = DQ_RECIPE_CE;
    float T = -1, softw = -1, hidw = -1, cew = -1;
    const char *tweights = NULL;
    const char *device = NULL, *tdevice = NULL;
    int c;
    while (st == DQ_OK && (c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_LOSS: st = dq_recipe_parse(&kind, optarg, &err); break;
        case O_T: st = dq_cli_parse_float("--T", optarg, 1e-3, 1e3, &T, &err); break;
        case O_SOFTW: st = dq_cli_parse_float("--soft-weight", optarg, 0, 1e3, &softw, &err); break;
        case O_HIDW: st = dq_cli_parse_float("--hidden-weight", optarg, 0, 1e3, &hidw, &err); break;
        case O_CEW: st = dq_cli_parse_float("--ce-weight", optarg, 0, 1e3, &cew, &err); break;
        case O_TEACHER:
        case O_TLOCAL: {
            int *n = c == O_TEACHER ? &cfg.n_teachers : &cfg.n_local_teachers;
            const char **list = c == O_TEACHER ? cfg.teachers : cfg.local_teachers;
            if (*n == DQ_SOURCE_MAX_TEACHERS)
                st = dq_fail(&err, DQ_ERR_ARG, "at most %d teachers", DQ_SOURCE_MAX_TEACHERS);
            else
                list[(*n)++] = optarg;
            break;
        }
        case O_TWEIGHTS: tweights = optarg; break;
        case O_REPLAY: cfg.replay_dir = optarg; break;
        case O_RTEACHER: cfg.replay_teacher = optarg; break;
        case O_INFLIGHT: st = dq_cli_parse_int("--inflight", optarg, 1, 1024, &cfg.inflight, &err); break;
        case O_TTIMEOUT: st = dq_cli_parse_int("--teacher-timeout-ms", optarg, 100, INT32_MAX, &cfg.teacher_timeout_ms, &err); break;
        case O_ALLOWCHG: cfg.allow_teacher_change = true; break;
        case O_AUGMENT: cfg.augment = true; break;
        case O_DEVICE: device = optarg; break;
        case O_TDEVICE: tdevice = optarg; break;
        case O_MODEL: cfg.model_path = optarg; break;
        case O_DATA: cfg.data_dir = optarg; break;
        case O_OUT: cfg.out_path = optarg; break;
        case O_EPOCHS: st = dq_cli_parse_int("--epochs", optarg, 1, 100000, &cfg.epochs, &err); break;
        case O_BATCH: st = dq_cli_parse_int("--batch", optarg, 1, 65536, &cfg.batch, &err); break;
        case O_LR: st = dq_cli_parse_float("--lr", optarg, 1e-12, 100, &cfg.lr, &err); break;
        case O_OPTIM:
            if (strcmp(optarg, "adam") == 0) cfg.optim = DQ_OPTIM_ADAM;
            else if (strcmp(optarg, "sgd") == 0) cfg.optim = DQ_OPTIM_SGD;
            else st = dq_fail(&err, DQ_ERR_ARG, "--optimizer: expected adam or sgd, got '%s'", optarg);
            break;
        case O_MOM: st = dq_cli_parse_float("--momentum", optarg, 0, 1, &cfg.momentum, &err); break;
        case O_WD: st = dq_cli_parse_float("--weight-decay", optarg, 0, 1, &cfg.weight_decay, &err); break;
        case O_SEED: st = dq_cli_parse_u64("--seed", optarg, &cfg.seed, &err); break;
        case O_THREADS: st = dq_cli_parse_int("--threads", optarg, 1, 256, &threads, &err); break;
        case O_LTRAIN: st = dq_cli_parse_int("--limit-train", optarg, 1, INT32_MAX, &cfg.limit_train, &err); break;
        case O_LTEST: st = dq_cli_parse_int("--limit-test", optarg, 1, INT32_MAX, &cfg.limit_test, &err); break;
        case O_INIT: cfg.init_weights = optarg; break;
        case O_METRICS: cfg.metrics_path = optarg; break;
        case O_RESUME: cfg.resume = true; break;
        case O_STOPAFTER: st = dq_cli_parse_int("--stop-after", optarg, 1, INT64_MAX, &cfg.stop_after_batches, &err); break;
        case O_QUIET: cfg.log = NULL; break;
        case O_HELP: s_usage(stdout); return 0;
        case O_VERSION: printf("distillq-train %s\n", PACKAGE_VERSION); return 0;
        default: fprintf(stderr, "distillq-train: try --help\n"); return 2;
        }
    }
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
    if (st == DQ_OK && optind < argc)
        st = dq_fail(&err, DQ_ERR_ARG, "unexpected argument '%s'", argv[optind]);
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
