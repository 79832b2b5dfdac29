/* main.c - distillq-predict: write a model's outputs for a dataset as .npy,
 * computed locally or by a teacher service (--teacher). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/parse.h"
#include "predict/predict.h"
#include "model/onnx_import.h"
#include "tensor/backend.h"
#include "tensor/backend_cuda.h"

static void s_usage(FILE *f)
{
    fprintf(f,
"usage: distillq-predict --model M --weights W --data FILE|DIR --output OUT.npy [options]\n"
"       distillq-predict --model M.onnx --data FILE|DIR --output OUT.npy [options]\n"
"       distillq-predict --teacher URL --data FILE|DIR --output OUT.npy [options]\n"
"\n"
"Runs the model (eval mode) over the images and writes the requested outputs as\n"
"float32 NumPy arrays of shape [N, ...]. With several --outputs, OUT.<name>.npy\n"
"is written for each. Prints the accuracy when labels are available.\n"
"\n"
"With --teacher the outputs come from a teacher service through its broker: the\n"
"batches are sent as raw u8 pixels with up to --inflight in flight and written in\n"
"dataset order. URL is tcp://HOST:PORT/SERVICE or ipc:///PATH/SERVICE: the service\n"
"name is what follows the LAST '/', the broker's frontend endpoint what precedes\n"
"it. --model and --weights are not needed. Same batch size => same bits as local.\n"
"\n"
"  --model M          model file (models/*.model), or an ONNX file (*.onnx: its\n"
"                     initializers are the weights; see docs/model-format.md)\n"
"  --weights W        weights (safetensors); not with an ONNX model\n"
"  --data FILE|DIR    dataset directory (test split), IDX images file or CIFAR .bin\n"
"  --output OUT.npy   where to write\n"
"  --outputs a,b      output names (default logits; e.g. logits,features)\n"
"  --limit N          first N samples only\n"
"  --batch B          batch size (default 128)\n"
"  --threads N        BLAS/compute threads (default 1)\n"
"  --device D         cpu (default) or cuda[:N]: run the forward on that GPU\n"
"  --teacher URL      get the outputs from this teacher service (see above)\n"
"  --inflight K       batches in flight with --teacher (default 16)\n"
"  --request-timeout-ms MS  with --teacher: give up on a batch unanswered for MS\n"
"                     (default 60000; 0: wait for ever)\n"

"  --help, --version\n");
}

int main(int argc, char **argv)
{
    dq_predict_config cfg = {0};
    cfg.log = stderr;
    cfg.batch = 128;
    int64_t threads = 1;
    dq_err err = {{0}};
    dq_status st = DQ_OK;
    int64_t v = 0;
    cfg.inflight = 16;
    /* finite by default: a broker that is not there, or gone for good, ends
     * the run with an error naming its endpoint (a restart within this time
     * is survived: the client resends) */
    cfg.request_timeout_ms = 60000;
    enum { O_MODEL = 256, O_WEIGHTS, O_DATA, O_OUTPUT, O_OUTPUTS, O_LIMIT, O_BATCH, O_THREADS,
           O_TEACHER, O_INFLIGHT, O_RTIMEOUT, O_DEVICE, O_HELP, O_VERSION };
    static const struct option opts[] = {
        {"model", required_argument, 0, O_MODEL}, {"weights", required_argument, 0, O_WEIGHTS},
        {"data", required_argument, 0, O_DATA}, {"output", required_argument, 0, O_OUTPUT},
        {"outputs", required_argument, 0, O_OUTPUTS}, {"limit", required_argument, 0, O_LIMIT},
        {"batch", required_argument, 0, O_BATCH}, {"threads", required_argument, 0, O_THREADS},
        {"teacher", required_argument, 0, O_TEACHER},
        {"inflight", required_argument, 0, O_INFLIGHT},
        {"request-timeout-ms", required_argument, 0, O_RTIMEOUT},
        {"device", required_argument, 0, O_DEVICE},
        {"help", no_argument, 0, O_HELP}, {"version", no_argument, 0, O_VERSION},
        {0, 0, 0, 0}};
    const char *device = NULL;
    int c;
    while (st == DQ_OK && (c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_MODEL: cfg.model_path = optarg; break;
        case O_WEIGHTS: cfg.weights_path = optarg; break;
        case O_DATA: cfg.data_path = optarg; break;
        case O_OUTPUT: cfg.output_path = optarg; break;
        case O_OUTPUTS: cfg.outputs = optarg; break;
        case O_LIMIT: st = dq_cli_parse_int("--limit", optarg, 1, INT32_MAX, &cfg.limit, &err); break;
        case O_BATCH: st = dq_cli_parse_int("--batch", optarg, 1, 65536, &cfg.batch, &err); break;
        case O_THREADS: st = dq_cli_parse_int("--threads", optarg, 1, 256, &threads, &err); break;
        case O_TEACHER: cfg.teacher_url = optarg; break;
        case O_INFLIGHT:
            st = dq_cli_parse_int("--inflight", optarg, 1, 4096, &v, &err);
            cfg.inflight = (int)v;
            break;
        case O_RTIMEOUT:
            st = dq_cli_parse_int("--request-timeout-ms", optarg, 0, INT32_MAX, &v, &err);
            cfg.request_timeout_ms = (int)v;
            break;
        case O_DEVICE: device = optarg; break;
        case O_HELP: s_usage(stdout); return 0;
        case O_VERSION: printf("distillq-predict %s\n", PACKAGE_VERSION); return 0;
        default: fprintf(stderr, "distillq-predict: try --help\n"); return 2;
        }
    }
    if (st == DQ_OK && optind < argc)
        st = dq_fail(&err, DQ_ERR_ARG, "unexpected argument '%s'", argv[optind]);
    if (st == DQ_OK && cfg.teacher_url && (!cfg.data_path || !cfg.output_path))
        st = dq_fail(&err, DQ_ERR_ARG, "--teacher needs --data and --output (see --help)");
    if (st == DQ_OK && !cfg.teacher_url &&
        (!cfg.model_path || !cfg.data_path || !cfg.output_path))
        st = dq_fail(&err, DQ_ERR_ARG, "--model, --data and --output are required (see --help)");
    if (st == DQ_OK && !cfg.teacher_url && !cfg.weights_path && !dq_onnx_is_path(cfg.model_path))
        st = dq_fail(&err, DQ_ERR_ARG, "--weights is required with a model file (see --help)");
    if (st == DQ_OK && !cfg.teacher_url && cfg.weights_path && dq_onnx_is_path(cfg.model_path))
        st = dq_fail(&err, DQ_ERR_ARG, "--weights with an ONNX model: its weights are the "
                     "file's initializers (see --help)");
    if (st == DQ_OK && device && strcmp(device, "cpu") != 0 && cfg.teacher_url)
        st = dq_fail(&err, DQ_ERR_ARG, "--device is for local prediction; the service decides "
                     "where --teacher runs");
    if (st == DQ_OK) st = dq_backend_select(device, &cfg.device, &err);
    if (st != DQ_OK) {
        fprintf(stderr, "distillq-predict: %s\n", err.msg);
        return 2;
    }
    dq_backend_set_threads((int)threads);
    st = dq_predict_run(&cfg, &err);
    if (st != DQ_OK) {
        fprintf(stderr, "distillq-predict: %s: %s\n", dq_strerror(st), err.msg);
        return 1;
    }
    return 0;
}
