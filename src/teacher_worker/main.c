/* main.c - distillq-teacher: serve one model to a distillq-broker's backend.
 *
 * A thin shell over worker.c: parse options, install the SIGTERM/SIGINT
 * handler (the only global: the stop counter main owns; the first signal
 * drains, a second leaves at once), run, map the status to an exit code.
 */
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cli/parse.h"
#include "teacher_worker/teacher.h"
#include "model/onnx_import.h"
#include "teacher_worker/worker.h"
#include "tensor/backend.h"
#include "tensor/backend_cuda.h"

static volatile sig_atomic_t s_stop = 0;

/* Requests a GPU worker holds by default: while one is computed the next
 * ones are already here, so the card does not wait on the network. */
#define S_GPU_CAPACITY 8

static void s_on_signal(int sig)
{
    (void)sig;
    if (s_stop < 2) s_stop = s_stop + 1;
}

static void s_usage(FILE *f)
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
"\n"
"  --broker ENDPOINT    broker backend, e.g. tcp://127.0.0.1:5556 or ipc:///tmp/dq-be\n"
"  --service NAME       service name the students ask for\n"
"  --model M            model file (models/*.model), or an ONNX file (*.onnx;\n"
"                       see docs/model-format.md, \"ONNX import\")\n"
"  --weights W          weights (safetensors); not with an ONNX model\n"
"  --threads N          BLAS/compute threads (default 1)\n"
"  --capacity K         requests held at once (default 2; %d with --device cuda, so\n"
"                       the GPU always has the next ones)\n"
"  --no-merge           compute queued requests one by one; by default those\n"
"                       queued together run as one forward of up to --max-batch\n"
"                       samples (dynamic batching; replies are unchanged)\n"
"  --max-batch N        largest batch accepted (default %d)\n"
"  --device D           cpu (default) or cuda[:N]: run the forward on that GPU\n"
"  --heartbeat-ms MS    heartbeat interval (default 1000)\n"
"  --liveness N         broker dead after N heartbeats of silence (default 3)\n"
"  --delay-ms MS        testing: sleep MS before every forward (default 0)\n"
"  --help, --version\n"
"\n"
"SIGTERM/SIGINT: take no new work, finish what is held, say goodbye, exit 0.\n"
"A second signal leaves at once (the broker requeues what was held).\n",
            S_GPU_CAPACITY, DQ_TEACHER_DEFAULT_MAX_BATCH);
}

int main(int argc, char **argv)
{
    dq_worker_config cfg;
    dq_worker_config_default(&cfg);
    cfg.log = stderr;
    int64_t threads = 1, v = 0;
    dq_err err = {{0}};
    dq_status st = DQ_OK;
    enum { O_BROKER = 256, O_SERVICE, O_MODEL, O_WEIGHTS, O_THREADS, O_CAPACITY, O_MAXBATCH,
           O_DEVICE, O_HB, O_LIVENESS, O_DELAY, O_HELP, O_VERSION, O_NOMERGE };
    static const struct option opts[] = {
        {"broker", required_argument, 0, O_BROKER}, {"service", required_argument, 0, O_SERVICE},
        {"model", required_argument, 0, O_MODEL}, {"weights", required_argument, 0, O_WEIGHTS},
        {"threads", required_argument, 0, O_THREADS},
        {"capacity", required_argument, 0, O_CAPACITY},
        {"max-batch", required_argument, 0, O_MAXBATCH},
        {"no-merge", no_argument, 0, O_NOMERGE},
        {"device", required_argument, 0, O_DEVICE},
        {"heartbeat-ms", required_argument, 0, O_HB},
        {"liveness", required_argument, 0, O_LIVENESS},
        {"delay-ms", required_argument, 0, O_DELAY},
        {"help", no_argument, 0, O_HELP}, {"version", no_argument, 0, O_VERSION},
        {0, 0, 0, 0}};
    const char *device = NULL;
    bool capacity_set = false;
    int c;
    while (st == DQ_OK && (c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_BROKER: cfg.broker = optarg; break;
        case O_SERVICE: cfg.service = optarg; break;
        case O_MODEL: cfg.model_path = optarg; break;
        case O_WEIGHTS: cfg.weights_path = optarg; break;
        case O_THREADS: st = dq_cli_parse_int("--threads", optarg, 1, 256, &threads, &err); break;
        case O_CAPACITY:
            st = dq_cli_parse_int("--capacity", optarg, 1, 1024, &v, &err);
            cfg.capacity = (int)v;
            capacity_set = true;
            break;
        case O_MAXBATCH:
            st = dq_cli_parse_int("--max-batch", optarg, 1, 1 << 20, &cfg.max_batch, &err);
            break;
        case O_DEVICE: device = optarg; break;
        case O_HB:
            st = dq_cli_parse_int("--heartbeat-ms", optarg, 10, 600000, &v, &err);
            cfg.heartbeat_ms = (int)v;
            break;
        case O_LIVENESS:
            st = dq_cli_parse_int("--liveness", optarg, 1, 1000, &v, &err);
            cfg.liveness = (int)v;
            break;
        case O_DELAY:
            st = dq_cli_parse_int("--delay-ms", optarg, 0, 600000, &v, &err);
            cfg.delay_ms = (int)v;
            break;
        case O_NOMERGE: cfg.no_merge = true; break;
        case O_HELP: s_usage(stdout); return 0;
        case O_VERSION: printf("distillq-teacher %s\n", PACKAGE_VERSION); return 0;
        default: fprintf(stderr, "distillq-teacher: try --help\n"); return 2;
        }
    }
    if (st == DQ_OK && optind < argc)
        st = dq_fail(&err, DQ_ERR_ARG, "unexpected argument '%s'", argv[optind]);
    if (st == DQ_OK && (!cfg.broker || !cfg.service || !cfg.model_path))
        st = dq_fail(&err, DQ_ERR_ARG,
                     "--broker, --service and --model are required (see --help)");
    if (st == DQ_OK && !cfg.weights_path && !dq_onnx_is_path(cfg.model_path))
        st = dq_fail(&err, DQ_ERR_ARG, "--weights is required with a model file (see --help)");
    if (st == DQ_OK && cfg.weights_path && dq_onnx_is_path(cfg.model_path))
        st = dq_fail(&err, DQ_ERR_ARG, "--weights with an ONNX model: its weights are the "
                     "file's initializers (see --help)");
    if (st == DQ_OK) st = dq_backend_select(device, &cfg.device, &err);
    if (st == DQ_OK && cfg.device.kind == DQ_DEVICE_CUDA && !capacity_set)
        cfg.capacity = S_GPU_CAPACITY;
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

    dq_worker_t *w = NULL;
    st = dq_worker_new(&w, &cfg, &err);
    if (st == DQ_OK) st = dq_worker_run(w, &err);
    dq_worker_destroy(&w);
    if (st != DQ_OK) {
        fprintf(stderr, "distillq-teacher: %s: %s\n", dq_strerror(st), err.msg);
        return 1;
    }
    return 0;
}
