/* bench_gpu.c - teacher forward throughput on a CUDA device (issue 6, section 4).
 *
 * Measures, in one process on one card:
 *   sgemm    cuBLAS FP32 sgemm on N x N matrices (N = 8192, default math,
 *            which keeps FP32: no TF32), the card's practical FP32 peak and
 *            the yardstick;
 *   forward  DeepNN-cifar10 and DeepNN-fmnist eval forward through the GPU
 *            executor (src/model/net_cuda.c) at batch 128 and 1024, end to
 *            end as a teacher worker sees it: the batch is written to the
 *            pinned input buffer, uploaded, run, and the logits copied back.
 *            samples/s and TFLOP/s from dq_net_flops_per_sample. The
 *            executor runs every eval batch as padded chunks of
 *            DQ_NET_CUDA_EVAL_CHUNK samples (batch invariance, net_cuda.h),
 *            so batch 128 costs a chunk of 256: the price is measured here.
 *            ResNet-18 (models/resnet18-fmnist.model) the same way;
 *   train    a student training step (zero_grad, train forward, backward,
 *            Adam) of LightNN at batch 64 and 256 and ResNet-18 at 128.
 * Inputs and weights are random with a fixed seed (throughput does not
 * depend on the values). Each measurement warms up, then runs whole
 * iterations for --seconds split into 5 windows and reports the median
 * window, as bench_foundation.c does.
 *
 * Results go to stdout as tab-separated "RESULT distillq-gpu <what> <batch>
 * <metric> <value>" and "INFO <key> <value>" lines, the format
 * bench/pytorch_gpu.py prints for PyTorch on the same card, so the two can be
 * put side by side (docs/cuda.md). Built with the tests when configure found
 * CUDA; run by `make bench-gpu`. Needs a GPU: without one it says so in one
 * line and exits 1.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/cuda_glue.h"
#include "kernels/kernels.h"
#include "model/net.h"
#include "model/net_cuda.h"
#include "tensor/backend_cuda.h"
#include "tensor/rng.h"

#ifndef DQ_BENCH_MODELS_DIR
#define DQ_BENCH_MODELS_DIR "models"
#endif

#define S_WINDOWS 5

typedef struct {
    const char *models_dir;
    const char *device;
    double seconds;
    int sgemm_n;
} s_options;

static double s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int s_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One timed iteration; returns DQ_OK or the failure. */
typedef dq_status (*s_iter_fn)(void *ctx, dq_err *err);

/* Median over S_WINDOWS windows of iterations per second. */
static dq_status s_measure(s_iter_fn fn, void *ctx, double seconds, double *rate, dq_err *err)
{
    double t0 = s_now();
    for (int i = 0; i < 3 || s_now() - t0 < 0.3; i++) DQ_TRY(fn(ctx, err));
    double w[S_WINDOWS];
    for (int k = 0; k < S_WINDOWS; k++) {
        double start = s_now(), now = start;
        int64_t n = 0;
        do {
            DQ_TRY(fn(ctx, err));
            n++;
            now = s_now();
        } while (now - start < seconds / S_WINDOWS);
        w[k] = (double)n / (now - start);
    }
    qsort(w, S_WINDOWS, sizeof w[0], s_cmp);
    *rate = w[S_WINDOWS / 2];
    return DQ_OK;
}

/* ---- sgemm ------------------------------------------------------------------------------ */

typedef struct {
    cublasHandle_t h;
    cudaStream_t stream;
    int n;
    float *a, *b, *c;
} s_gemm;

static dq_status s_gemm_iter(void *ctx, dq_err *err)
{
    s_gemm *g = ctx;
    const float one = 1.0f, zero = 0.0f;
    DQ_CUBLAS_TRY(cublasSgemm(g->h, CUBLAS_OP_N, CUBLAS_OP_N, g->n, g->n, g->n, &one, g->a, g->n,
                              g->b, g->n, &zero, g->c, g->n),
                  err);
    DQ_CUDA_TRY(cudaStreamSynchronize(g->stream), err);
    return DQ_OK;
}

static dq_status s_bench_sgemm(const s_options *o, double *tflops, dq_err *err)
{
    s_gemm g = {.n = o->sgemm_n};
    size_t bytes = (size_t)g.n * (size_t)g.n * sizeof(float);
    dq_status st = DQ_OK;
    if ((st = dq_cuda_check(cudaStreamCreate(&g.stream), "cudaStreamCreate", err)) != DQ_OK ||
        (st = dq_cublas_check(cublasCreate(&g.h), "cublasCreate", err)) != DQ_OK ||
        (st = dq_cublas_check(cublasSetStream(g.h, g.stream), "cublasSetStream", err)) != DQ_OK ||
        (st = dq_cublas_check(cublasSetMathMode(g.h, CUBLAS_DEFAULT_MATH), "cublasSetMathMode",
                              err)) != DQ_OK ||
        (st = dq_cuda_check(cudaMalloc((void **)&g.a, bytes), "cudaMalloc", err)) != DQ_OK ||
        (st = dq_cuda_check(cudaMalloc((void **)&g.b, bytes), "cudaMalloc", err)) != DQ_OK ||
        (st = dq_cuda_check(cudaMalloc((void **)&g.c, bytes), "cudaMalloc", err)) != DQ_OK ||
        /* random operands: zeros draw less power and would flatter the peak */
        (st = dq_cuda_check(dq_k_uniform(g.a, (int64_t)g.n * g.n, 1, 0, g.stream),
                            "dq_k_uniform", err)) != DQ_OK ||
        (st = dq_cuda_check(dq_k_uniform(g.b, (int64_t)g.n * g.n, 2, 0, g.stream),
                            "dq_k_uniform", err)) != DQ_OK)
        goto done;
    double rate = 0;
    st = s_measure(s_gemm_iter, &g, o->seconds, &rate, err);
    *tflops = rate * 2.0 * (double)g.n * (double)g.n * (double)g.n / 1e12;
done:
    if (g.a) (void)cudaFree(g.a);
    if (g.b) (void)cudaFree(g.b);
    if (g.c) (void)cudaFree(g.c);
    if (g.h) (void)cublasDestroy(g.h);
    if (g.stream) (void)cudaStreamDestroy(g.stream);
    return st;
}

/* ---- teacher forward -------------------------------------------------------------------- */

typedef struct {
    dq_net_cuda_t *gx;
    dq_tensor in;
} s_fwd;

static const char *const s_logits[1] = {"logits"};

static dq_status s_fwd_iter(void *ctx, dq_err *err)
{
    s_fwd *f = ctx;
    return dq_net_cuda_forward(f->gx, &f->in, false, s_logits, 1, err);
}

/* The model's net with random weights (fixed seed), its path in path. */
static dq_status s_load_random(const s_options *o, const char *model, char *path, size_t len,
                               dq_net_t **net, dq_rng *rng, dq_err *err)
{
    snprintf(path, len, "%s/%s.model", o->models_dir, model);
    DQ_TRY(dq_net_load(net, path, err));
    dq_rng_seed(rng, 42);
    dq_net_init_params(*net, rng);
    return DQ_OK;
}

/* batch random inputs in [-1, 1) in the executor's pinned input buffer. */
static dq_tensor s_random_input(dq_net_cuda_t *gx, const dq_net_t *net, int batch, dq_rng *rng)
{
    const dq_net_input *ip = dq_net_input_spec(net);
    float *x = dq_net_cuda_input_buffer(gx);
    int64_t n = (int64_t)batch * ip->channels * ip->height * ip->width;
    for (int64_t i = 0; i < n; i++) x[i] = dq_rng_range(rng, -1.0f, 1.0f);
    return dq_tensor_view4(x, batch, ip->channels, ip->height, ip->width);
}

static dq_status s_bench_forward(const s_options *o, dq_device dev, const char *model, int batch,
                                 int chunk, double peak, dq_err *err)
{
    char path[1024];
    dq_net_t *net = NULL;
    dq_rng rng;
    DQ_TRY(s_load_random(o, model, path, sizeof path, &net, &rng, err));
    s_fwd f = {0};
    dq_status st = dq_net_cuda_new_chunked(&f.gx, net, path, dev, batch, false, 1, chunk, err);
    char label[160];
    if (chunk == DQ_NET_CUDA_EVAL_CHUNK) snprintf(label, sizeof label, "%s", model);
    else snprintf(label, sizeof label, "%s@chunk%d", model, chunk);
    if (st == DQ_OK) {
        f.in = s_random_input(f.gx, net, batch, &rng);
        double rate = 0;
        st = s_measure(s_fwd_iter, &f, o->seconds, &rate, err);
        if (st == DQ_OK) {
            double sps = rate * batch, tf = sps * dq_net_flops_per_sample(net) / 1e12;
            printf("RESULT\tdistillq-gpu\t%s\t%d\tsamples_per_s\t%.1f\n", label, batch, sps);
            printf("RESULT\tdistillq-gpu\t%s\t%d\ttflops\t%.3f\n", label, batch, tf);
            fprintf(stderr, "%-26s batch %5d  %10.0f samples/s  %6.2f TFLOP/s  %5.1f%% of sgemm\n",
                    label, batch, sps, tf, peak > 0 ? 100.0 * tf / peak : 0.0);
        }
    }
    dq_net_cuda_destroy(&f.gx);
    dq_net_destroy(&net);
    return st;
}

/* ---- training step ---------------------------------------------------------------------- */

typedef struct {
    dq_net_cuda_t *gx;
    dq_tensor in;
    const char *out_name;
    int64_t step;
    dq_adam_config adam;
} s_train;

/* One student step as the trainer runs it: zero_grad, forward (train),
 * d(loss)/d(logits) written on the host (a fixed pattern: throughput does
 * not depend on the values), backward, Adam. */
static dq_status s_train_iter(void *ctx, dq_err *err)
{
    s_train *t = ctx;
    DQ_TRY(dq_net_cuda_zero_grad(t->gx, err));
    const char *want[1] = {t->out_name};
    DQ_TRY(dq_net_cuda_forward(t->gx, &t->in, true, want, 1, err));
    dq_tensor *g = dq_net_cuda_output_grad(t->gx, t->out_name);
    if (!g) return dq_fail(err, DQ_ERR_ARG, "bench_gpu: no gradient for output %s", t->out_name);
    int64_t n = dq_tensor_numel(g);
    for (int64_t i = 0; i < n; i++) g->data[i] = (float)((i % 7) - 3) * 1e-3f;
    DQ_TRY(dq_net_cuda_backward(t->gx, err));
    return dq_net_cuda_adam_step(t->gx, ++t->step, &t->adam, err);
}

static dq_status s_bench_train(const s_options *o, dq_device dev, const char *model, int batch,
                               dq_err *err)
{
    char path[1024];
    dq_net_t *net = NULL;
    dq_rng rng;
    DQ_TRY(s_load_random(o, model, path, sizeof path, &net, &rng, err));
    s_train t = {.out_name = dq_net_output_name(net, 0), .adam = dq_adam_defaults()};
    dq_status st = dq_net_cuda_new(&t.gx, net, path, dev, batch, true, 1, err);
    if (st == DQ_OK) {
        t.in = s_random_input(t.gx, net, batch, &rng);
        double rate = 0;
        st = s_measure(s_train_iter, &t, o->seconds, &rate, err);
        if (st == DQ_OK) {
            printf("RESULT\tdistillq-gpu\ttrain-%s\t%d\tsamples_per_s\t%.1f\n", model, batch,
                   rate * batch);
            fprintf(stderr, "train %-16s batch %5d  %10.0f samples/s\n", model, batch,
                    rate * batch);
        }
    }
    dq_net_cuda_destroy(&t.gx);
    dq_net_destroy(&net);
    return st;
}

static void s_usage(FILE *f)
{
    fprintf(f, "usage: bench_gpu [--device cuda:N] [--seconds S] [--sgemm-n N] [--models-dir D]\n");
}

int main(int argc, char **argv)
{
    s_options o = {DQ_BENCH_MODELS_DIR, "cuda:0", 2.0, 8192};
    static const struct option opts[] = {{"device", required_argument, 0, 'd'},
                                         {"seconds", required_argument, 0, 's'},
                                         {"sgemm-n", required_argument, 0, 'n'},
                                         {"models-dir", required_argument, 0, 'm'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'd': o.device = optarg; break;
        case 's': o.seconds = atof(optarg); break;
        case 'n': o.sgemm_n = atoi(optarg); break;
        case 'm': o.models_dir = optarg; break;
        case 'h': s_usage(stdout); return 0;
        default: s_usage(stderr); return 2;
        }
    }
    if (!(o.seconds > 0) || o.sgemm_n < 64) {
        s_usage(stderr);
        return 2;
    }
    dq_err err = {{0}};
    dq_device dev;
    if (dq_backend_select(o.device, &dev, &err) != DQ_OK) {
        fprintf(stderr, "bench_gpu: %s\n", err.msg);
        return 1;
    }
    char desc[256];
    printf("INFO\tdevice\t%s\n", dq_device_describe(&dev, desc, sizeof desc));
    /* eval forwards run in padded chunks of this many samples (batch invariance) */
    printf("INFO\teval_chunk\t%d\n", DQ_NET_CUDA_EVAL_CHUNK);
    double peak = 0;
    if (s_bench_sgemm(&o, &peak, &err) != DQ_OK) {
        fprintf(stderr, "bench_gpu: sgemm: %s\n", err.msg);
        return 1;
    }
    printf("RESULT\tcublas\tsgemm\t%d\ttflops\t%.3f\n", o.sgemm_n, peak);
    fprintf(stderr, "cuBLAS sgemm %d: %.2f TFLOP/s (FP32, no TF32)\n", o.sgemm_n, peak);
    const char *models[3] = {"deepnn-cifar10", "deepnn-fmnist", "resnet18-fmnist"};
    const int batches[2] = {128, 1024};
    for (int m = 0; m < 3; m++)
        for (int b = 0; b < 2; b++)
            if (s_bench_forward(&o, dev, models[m], batches[b], DQ_NET_CUDA_EVAL_CHUNK, peak,
                                &err) != DQ_OK) {
                fprintf(stderr, "bench_gpu: %s batch %d: %s\n", models[m], batches[b], err.msg);
                return 1;
            }
    /* the chunk's price: each batch as one chunk of its own size (what a
     * service whose workers all use --eval-chunk = the batch would get) */
    for (int m = 0; m < 3; m++)
        for (int b = 0; b < 2; b++)
            if (s_bench_forward(&o, dev, models[m], batches[b], batches[b], peak, &err) !=
                DQ_OK) {
                fprintf(stderr, "bench_gpu: %s batch %d chunk %d: %s\n", models[m], batches[b],
                        batches[b], err.msg);
                return 1;
            }
    /* student training steps: the tutorial's students at the demo's batch,
     * and ResNet-18 as a student-sized upper end */
    const struct { const char *model; int batch; } tr[3] = {
        {"lightnn-fmnist", 64}, {"lightnn-fmnist", 256}, {"resnet18-fmnist", 128}};
    for (int i = 0; i < 3; i++)
        if (s_bench_train(&o, dev, tr[i].model, tr[i].batch, &err) != DQ_OK) {
            fprintf(stderr, "bench_gpu: train %s batch %d: %s\n", tr[i].model, tr[i].batch,
                    err.msg);
            return 1;
        }
    return 0;
}
