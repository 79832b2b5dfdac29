/* main.c - distillq-teacher: serve one model to a distillq-broker's backend.
 *
 * A thin shell over worker.c: parse options, install the SIGTERM/SIGINT
 * handler (the only global: the stop counter main owns; the first signal
 * drains, a second leaves at once), run, map the status to an exit code.
 */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cli/opts.h"
#include "metrics/httpd.h"
#include "teacher_worker/teacher.h"
#include "model/net_cuda.h"
#include "model/onnx_import.h"
#include "teacher_worker/worker.h"
#include "tensor/backend.h"
#include "tensor/backend_cuda.h"

static volatile sig_atomic_t s_stop = 0;

/* Requests a GPU worker holds by default: while one is computed the next
 * ones are already here, so the card does not wait on the network. */
#define S_GPU_CAPACITY 8
#define S_STR2(x) #x
#define S_STR(x) S_STR2(x) /* a number macro as a string, for the help text */

static void s_on_signal(int sig)
{
    (void)sig;
    if (s_stop < 2) s_stop = s_stop + 1;
}

static void s_usage(FILE *f, const dq_opt *opts, int n)
{
    fprintf(f,
"usage: distillq-teacher --broker ENDPOINT --service NAME --model M --weights W [options]\n"
"       distillq-teacher --broker ENDPOINT --service NAME --model M.onnx [options]\n"
"\n"
"Loads the model M with the weights W and serves its forward pass (eval mode)\n"
"to the broker's backend as service NAME: u8 requests are normalised as the\n"
"model file says, f32 requests are taken as they are. The teacher identity sent\n"
"with every reply is the service, the model name and the SHA-256 of W (of\n"
"M.onnx for an ONNX model, whose initializers are its weights).\n"
"Re-joins by itself when the broker restarts or goes silent.\n"
"\n");
    dq_opts_print_help(f, opts, n, 23);
    fprintf(f,
"\n"
"SIGTERM/SIGINT: take no new work, finish what is held, say goodbye, exit 0.\n"
"A second signal leaves at once (the broker requeues what was held).\n"
"Exit 2: bad options, or --broker is not a broker's worker port; 3: the\n"
"device or the forward failed for good; 4: CURVE refused (key, server key,\n"
"or CURVE on one side only); 1: anything else.\n");
}

static void s_publish(void *ctx, const char *text, size_t len)
{
    dq_metrics_http_publish(ctx, text, len);
}

int main(int argc, char **argv)
{
    dq_worker_config cfg;
    dq_worker_config_default(&cfg);
    cfg.log = stderr;
    int64_t threads = 1, capacity = 0; /* 0: the default for the device */
    dq_err err = {{0}};
    dq_status st = DQ_OK;
    const char *device = NULL, *metrics_addr = NULL;
    dq_metrics_http_t *http = NULL;
    const dq_opt opts[] = {
        DQ_OPT_STR("broker", "ENDPOINT", &cfg.broker,
                   "broker backend, e.g. tcp://127.0.0.1:5556 or ipc:///tmp/dq-be"),
        DQ_OPT_STR("service", "NAME", &cfg.service, "service name the students ask for"),
        DQ_OPT_STR("curve-server-cert", "FILE", &cfg.curve_server_cert,
                   "CURVE: the broker's public certificate"),
        DQ_OPT_STR("curve-cert", "FILE", &cfg.curve_cert,
                   "CURVE: this worker's secret certificate (NAME_secret);\n"
                   "NAME must be in the broker's --allow-workers"),
        DQ_OPT_STR("model", "M", &cfg.model_path,
                   "model file (models/*.model), or an ONNX file (*.onnx;\n"
                   "see docs/model-format.md, \"ONNX import\")"),
        DQ_OPT_STR("weights", "W", &cfg.weights_path, "weights (safetensors); not with an ONNX model"),
        DQ_OPT_I64("threads", "N", &threads, 1, 256, "BLAS/compute threads (default 1)"),
        DQ_OPT_I64("capacity", "K", &capacity, 1, 1024,
                   "requests held at once (default 2; " S_STR(S_GPU_CAPACITY)
                   " with --device cuda, so\nthe GPU always has the next ones)"),
        DQ_OPT_FLAG("no-merge", &cfg.no_merge,
                    "compute queued requests one by one; by default those\n"
                    "queued together run as one forward of up to --max-batch\n"
                    "samples (dynamic batching; replies are unchanged)"),
        DQ_OPT_I64("max-batch", "N", &cfg.max_batch, 1, 1 << 20,
                   "largest batch accepted (default " S_STR(DQ_TEACHER_DEFAULT_MAX_BATCH) ")"),
        DQ_OPT_STR("metrics", "HOST:PORT", &metrics_addr,
                   "serve Prometheus metrics at http://HOST:PORT/metrics"),
        DQ_OPT_I64("max-failed-forwards", "N", &cfg.max_failures, 1, 1 << 20,
                   "leave (held requests requeued) and exit 3 after N\n"
                   "forwards in a row failed (default 3)"),
        DQ_OPT_I64("max-forward-batch", "N", &cfg.max_forward, 1, 1 << 20,
                   "samples per forward (default " S_STR(DQ_TEACHER_DEFAULT_MAX_FORWARD) "): larger\n"
                   "requests and merges run in chunks, bounding the\n"
                   "activation memory (replies are unchanged)"),
        DQ_OPT_STR("device", "D", &device, "cpu (default) or cuda[:N]: run the forward on that GPU"),
        DQ_OPT_I64("eval-chunk", "N", &cfg.eval_chunk, 1, 65536,
                   "with --device cuda: samples per GPU forward (default\n"
                   S_STR(DQ_NET_CUDA_EVAL_CHUNK) "; batches run as padded chunks of N, so a\n"
                   "sample's outputs do not depend on its batch). Larger N\n"
                   "runs large batches faster and pads small ones more; every\n"
                   "worker of a service must use the same N (bits differ)"),
        DQ_OPT_INT("heartbeat-ms", "MS", &cfg.heartbeat_ms, 10, 600000,
                   "heartbeat interval (default 1000)"),
        DQ_OPT_INT("liveness", "N", &cfg.liveness, 1, 1000,
                   "broker dead after N heartbeats of silence (default 3)"),
        DQ_OPT_INT("delay-ms", "MS", &cfg.delay_ms, 0, 600000,
                   "testing: sleep MS before every forward (default 0)"),
        DQ_OPT_FLAG("echo", &cfg.echo,
                    "benches/tests: answer with deterministic outputs of the model's\n"
                    "shapes without computing (identity echo:<model>; no --weights)"),
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
        printf("distillq-teacher %s\n", PACKAGE_VERSION);
        return 0;
    }
    if (st == DQ_OK && (!cfg.broker || !cfg.service || !cfg.model_path))
        st = dq_fail(&err, DQ_ERR_ARG,
                     "--broker, --service and --model are required (see --help)");
    if (st == DQ_OK && !cfg.echo && !cfg.weights_path && !dq_onnx_is_path(cfg.model_path))
        st = dq_fail(&err, DQ_ERR_ARG, "--weights is required with a model file (see --help)");
    if (st == DQ_OK && cfg.echo && (cfg.weights_path || dq_onnx_is_path(cfg.model_path)))
        st = dq_fail(&err, DQ_ERR_ARG, "--echo takes a model file and no --weights");
    if (st == DQ_OK && cfg.weights_path && dq_onnx_is_path(cfg.model_path))
        st = dq_fail(&err, DQ_ERR_ARG, "--weights with an ONNX model: its weights are the "
                     "file's initializers (see --help)");
    if (st == DQ_OK) st = dq_backend_select(device, &cfg.device, &err);
    if (st == DQ_OK && cfg.eval_chunk > 0 && cfg.device.kind != DQ_DEVICE_CUDA)
        st = dq_fail(&err, DQ_ERR_ARG, "--eval-chunk is for --device cuda (the CPU forward is "
                     "batch-invariant at any batch)");
    if (st == DQ_OK)
        cfg.capacity = capacity ? (int)capacity
                                : cfg.device.kind == DQ_DEVICE_CUDA ? S_GPU_CAPACITY : cfg.capacity;
    if (st != DQ_OK) {
        fprintf(stderr, "distillq-teacher: %s\n", err.msg);
        return 2;
    }

    dq_backend_set_threads((int)threads);
    if (cfg.device.kind == DQ_DEVICE_CUDA) {
        char desc[256];
        fprintf(stderr, "distillq-teacher: forward on %s\n",
                dq_device_describe(&cfg.device, desc, sizeof desc));
    }
    /* No SA_RESTART: the signal must interrupt zmq_poll. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    cfg.stop = &s_stop;

    if (metrics_addr && dq_metrics_http_start(&http, metrics_addr, &err) != DQ_OK) {
        fprintf(stderr, "distillq-teacher: %s\n", err.msg);
        return 1;
    }
    if (http) {
        cfg.metrics_publish = s_publish;
        cfg.metrics_ctx = http;
    }
    dq_worker_t *w = NULL;
    st = dq_worker_new(&w, &cfg, &err);
    if (st == DQ_OK) st = dq_worker_run(w, &err);
    dq_worker_destroy(&w);
    dq_metrics_http_stop(&http);
    if (st != DQ_OK) {
        fprintf(stderr, "distillq-teacher: %s: %s\n", dq_strerror(st), err.msg);
        return st == DQ_ERR_ARG ? 2 : st == DQ_ERR_DEVICE ? 3 : st == DQ_ERR_AUTH ? 4 : 1;
    }
    return 0;
}
