/* main.c - distillq-predict: write a model's outputs for a dataset as .npy,
 * computed locally or by a teacher service (--teacher). */
#include <stdio.h>
#include <string.h>

#include "cli/opts.h"
#include "predict/predict.h"
#include "model/onnx_import.h"
#include "tensor/backend.h"
#include "tensor/backend_cuda.h"

static void s_usage(FILE *f, const dq_opt *opts, int n)
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
"\n");
    dq_opts_print_help(f, opts, n, 21);
}

int main(int argc, char **argv)
{
    dq_predict_config cfg = {0};
    cfg.log = stderr;
    cfg.batch = 128;
    int64_t threads = 1;
    dq_err err = {{0}};
    dq_status st = DQ_OK;
    cfg.inflight = 16;
    /* finite by default: a broker that is not there, or gone for good, ends
     * the run with an error naming its endpoint (a restart within this time
     * is survived: the client resends) */
    cfg.request_timeout_ms = 60000;
    const char *device = NULL;
    const dq_opt opts[] = {
        DQ_OPT_STR("model", "M", &cfg.model_path,
                   "model file (models/*.model), or an ONNX file (*.onnx: its\n"
                   "initializers are the weights; see docs/model-format.md)"),
        DQ_OPT_STR("weights", "W", &cfg.weights_path, "weights (safetensors); not with an ONNX model"),
        DQ_OPT_STR("data", "FILE|DIR", &cfg.data_path,
                   "dataset directory (test split), IDX images file or CIFAR .bin"),
        DQ_OPT_STR("output", "OUT.npy", &cfg.output_path, "where to write"),
        DQ_OPT_STR("outputs", "a,b", &cfg.outputs,
                   "output names (default logits; e.g. logits,features)"),
        DQ_OPT_I64("limit", "N", &cfg.limit, 1, INT32_MAX, "first N samples only"),
        DQ_OPT_I64("batch", "B", &cfg.batch, 1, 65536, "batch size (default 128)"),
        DQ_OPT_I64("threads", "N", &threads, 1, 256, "BLAS/compute threads (default 1)"),
        DQ_OPT_STR("device", "D", &device, "cpu (default) or cuda[:N]: run the forward on that GPU"),
        DQ_OPT_I64("eval-chunk", "N", &cfg.eval_chunk, 1, 65536,
                   "with --device cuda: samples per GPU forward (default 256;\n"
                   "see distillq-teacher --help)"),
        DQ_OPT_STR("teacher", "URL", &cfg.teacher_url,
                   "get the outputs from this teacher service (see above)"),
        DQ_OPT_INT("inflight", "K", &cfg.inflight, 1, 4096,
                   "batches in flight with --teacher (default 16)"),
        DQ_OPT_I64("inflight-bytes", "B", &cfg.inflight_bytes, 1024, 1LL << 40,
                   "...fewer if those batches would hold more than B\n"
                   "bytes (request copies and outputs; 268435456)"),
        DQ_OPT_STR("client-name", "NAME", &cfg.client_name,
                   "name for the broker's fair sharing (--share NAME=W)"),
        DQ_OPT_STR("curve-server-cert", "FILE", &cfg.curve_server_cert,
                   "CURVE: the broker's public certificate"),
        DQ_OPT_STR("curve-cert", "FILE", &cfg.curve_cert,
                   "CURVE: our secret certificate (NAME_secret)"),
        DQ_OPT_INT("request-timeout-ms", "MS", &cfg.request_timeout_ms, 0, INT32_MAX,
                   "with --teacher: give up on a batch unanswered for MS\n"
                   "(default 60000; 0: wait for ever)"),
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
        printf("distillq-predict %s\n", PACKAGE_VERSION);
        return 0;
    }
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
    if (st == DQ_OK && cfg.eval_chunk > 0 && cfg.device.kind != DQ_DEVICE_CUDA)
        st = dq_fail(&err, DQ_ERR_ARG, "--eval-chunk is for --device cuda (the CPU forward is "
                     "batch-invariant at any batch)");
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
