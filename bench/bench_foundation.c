/* bench_foundation.c - CPU throughput of the tensor engine (issue 3, section 6).
 *
 * For each thread count it measures, in one process:
 *   sgemm    OpenBLAS cblas_sgemm on square N x N matrices (N = 4096): this
 *            machine's practical peak, the yardstick for the two below;
 *   teacher  DeepNN-fmnist forward, batch 128, eval mode: samples/s and
 *            GFLOP/s from dq_net_flops_per_sample;
 *   share    the teacher forward's GFLOP/s as a share of sgemm's, from
 *            rounds that alternate the two (about --seconds each half):
 *            the median round's ratio. The separate medians above are
 *            seconds apart, and this VM's speed drifts by 10-20 % over
 *            seconds, which moved their ratio by as much (70-86 % for one
 *            build); alternating measures both under the same conditions;
 *   student  LightNN-fmnist training step, batch 128: zero_grad, forward
 *            (train) from the input buffer the trainer normalises into,
 *            cross-entropy, backward, Adam; GFLOP/s counts 3x the
 *            forward FLOPs (forward + input gradient + weight gradient).
 * Inputs are random with a fixed seed: throughput does not depend on the
 * values. Each measurement warms up (>= 3 iterations and >= 0.5 s: the first
 * seconds after large allocations are slow here while the kernel settles the
 * new pages), then runs whole iterations for --seconds split into windows and
 * reports the median window's rate: on a small shared VM a neighbour's burst
 * then spoils one window, not the number.
 *
 * Results go to stdout as tab-separated lines "RESULT distillq <threads>
 * <metric> <value>" and "INFO <key> <value>", the format bench/pytorch_models.py
 * also prints, so bench/run_foundation.sh can join them into one table.
 * Progress goes to stderr. Built by `make bench`, not by `make check`.
 */
#include <assert.h>
#include <cblas.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/net.h"
#include "tensor/backend.h"
#include "tensor/loss.h"
#include "tensor/optim.h"
#include "tensor/rng.h"

#ifndef DQ_BENCH_MODELS_DIR
#define DQ_BENCH_MODELS_DIR "models"
#endif

#define S_MAX_THREAD_COUNTS 8

typedef struct {
    const char *models_dir;
    int threads[S_MAX_THREAD_COUNTS];
    int n_threads;
    int batch;
    int sgemm_n;
    double seconds;
    int steps; /* --steps: exactly this many iterations, no warm-up (0: timed) */
    bool run_sgemm, run_teacher, run_share, run_student; /* --only */
} s_options;

static double s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One iteration of a measurement (an sgemm, a forward, a training step). */
typedef dq_status (*s_step_fn)(void *ctx, dq_err *err);

static int s_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#define S_MAX_WINDOWS 9

/* Runs step until `seconds` have passed (at least once); returns calls/s. */
static dq_status s_rate_for(double *rate, s_step_fn step, void *ctx, double seconds, dq_err *err)
{
    int iters = 0;
    double el, t0 = s_now();
    do {
        DQ_TRY(step(ctx, err));
        iters++;
        el = s_now() - t0;
    } while (el < seconds);
    *rate = iters / el;
    return DQ_OK;
}

/* Warms up, then runs step for `seconds` in `windows` equal windows (each at
 * least one whole iteration) and sets *rate to the median window's
 * iterations per second. With steps > 0 it runs exactly that many
 * iterations instead, without warm-up (a fixed amount of work, e.g. for
 * instruction counts under valgrind --tool=callgrind). */
static dq_status s_time_median(double *rate, s_step_fn step, void *ctx, double seconds,
                               int windows, int steps, dq_err *err)
{
    assert(windows >= 1 && windows <= S_MAX_WINDOWS);
    double t0 = s_now();
    if (steps > 0) {
        for (int i = 0; i < steps; i++) DQ_TRY(step(ctx, err));
        *rate = steps / (s_now() - t0);
        return DQ_OK;
    }
    for (int i = 0; i < 3 || s_now() - t0 < 0.5; i++) DQ_TRY(step(ctx, err));
    double r[S_MAX_WINDOWS];
    for (int w = 0; w < windows; w++) DQ_TRY(s_rate_for(&r[w], step, ctx, seconds / windows, err));
    qsort(r, (size_t)windows, sizeof r[0], s_cmp_double);
    *rate = windows % 2 ? r[windows / 2] : 0.5 * (r[windows / 2 - 1] + r[windows / 2]);
    return DQ_OK;
}

static void s_fill_uniform(float *x, int64_t n, dq_rng *rng, float lo, float hi)
{
    for (int64_t i = 0; i < n; i++) x[i] = dq_rng_range(rng, lo, hi);
}

/* ---- sgemm ------------------------------------------------------------------- */

typedef struct {
    const float *a, *b;
    float *c;
    int n;
} s_sgemm_ctx;

static dq_status s_sgemm_step(void *ctx, dq_err *err)
{
    (void)err;
    s_sgemm_ctx *g = ctx;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->n, g->n, g->n, 1.0f, g->a, g->n,
                g->b, g->n, 0.0f, g->c, g->n);
    return DQ_OK;
}

/* The n x n operands of the sgemm measurement, random (fixed seed). */
static dq_status s_sgemm_setup(s_sgemm_ctx *g, int n, dq_err *err)
{
    size_t bytes = ((size_t)n * (size_t)n * sizeof(float) + 63) / 64 * 64;
    float *a = aligned_alloc(64, bytes), *b = aligned_alloc(64, bytes),
          *c = aligned_alloc(64, bytes);
    *g = (s_sgemm_ctx){a, b, c, n};
    if (!a || !b || !c)
        return dq_fail(err, DQ_ERR_NOMEM, "sgemm: cannot allocate 3 x %zu bytes", bytes);
    dq_rng rng;
    dq_rng_seed(&rng, 42);
    s_fill_uniform(a, (int64_t)n * n, &rng, -1.0f, 1.0f);
    s_fill_uniform(b, (int64_t)n * n, &rng, -1.0f, 1.0f);
    memset(c, 0, bytes);
    return DQ_OK;
}

static void s_sgemm_free(s_sgemm_ctx *g)
{
    free((float *)g->a), free((float *)g->b), free(g->c);
    *g = (s_sgemm_ctx){0};
}

/* GFLOP/s of C = A * B with A, B, C n x n (2 n^3 FLOPs per call); 3 windows,
 * as one call is over a second on 1 thread. */
static dq_status s_bench_sgemm(double *gflops, int n, double seconds, dq_err *err)
{
    s_sgemm_ctx g;
    double rate = 0.0;
    dq_status st = s_sgemm_setup(&g, n, err);
    if (st == DQ_OK) st = s_time_median(&rate, s_sgemm_step, &g, seconds, 3, 0, err);
    *gflops = 2.0 * (double)n * n * n * rate / 1e9;
    s_sgemm_free(&g);
    return st;
}

/* ---- networks ---------------------------------------------------------------- */

/* Loads model `file` from the models directory, initialises it (seed 42) and
 * plans it for `batch`; *x gets a random input batch in [-1, 1] (owned). */
static dq_status s_setup_net(dq_net_t **net, dq_tensor *x, const s_options *o, const char *file,
                             dq_rng *rng, dq_err *err)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", o->models_dir, file) >= (int)sizeof path)
        return dq_fail(err, DQ_ERR_ARG, "--models: path too long");
    DQ_TRY(dq_net_load(net, path, err));
    dq_net_init_params(*net, rng);
    dq_status st = dq_net_plan(*net, o->batch, err);
    if (st != DQ_OK) return st;
    const dq_net_input *in = dq_net_input_spec(*net);
    int64_t shape[4] = {o->batch, in->channels, in->height, in->width};
    st = dq_tensor_alloc(x, 4, shape, err);
    if (st != DQ_OK) return st;
    s_fill_uniform(x->data, dq_tensor_numel(x), rng, -1.0f, 1.0f);
    return DQ_OK;
}

typedef struct {
    dq_net_t *net;
    const dq_tensor *x;
} s_teacher_ctx;

static dq_status s_teacher_step(void *ctx, dq_err *err)
{
    s_teacher_ctx *t = ctx;
    return dq_net_forward(t->net, t->x, false, NULL, err);
}

/* Teacher forward in eval mode: samples/s and forward GFLOP/s. */
static dq_status s_bench_teacher(double *sps, double *gflops, const s_options *o, dq_err *err)
{
    dq_rng rng;
    dq_rng_seed(&rng, 42);
    dq_net_t *net = NULL;
    dq_tensor x = {0};
    dq_status st = s_setup_net(&net, &x, o, "deepnn-fmnist.model", &rng, err);
    s_teacher_ctx t = {net, &x};
    double rate = 0.0;
    if (st == DQ_OK) st = s_time_median(&rate, s_teacher_step, &t, o->seconds, 5, o->steps, err);
    if (st == DQ_OK) {
        *sps = rate * o->batch;
        *gflops = *sps * dq_net_flops_per_sample(net) / 1e9;
    }
    dq_tensor_free(&x);
    dq_net_destroy(&net);
    return st;
}

#define S_SHARE_ROUNDS 5

/* The teacher forward's share of the sgemm rate (percent), measured in
 * S_SHARE_ROUNDS rounds of (sgemm, teacher), each half about --seconds /
 * S_SHARE_ROUNDS (at least one call); the median round's ratio. */
static dq_status s_bench_share(double *share, const s_options *o, dq_err *err)
{
    const int n = o->sgemm_n;
    dq_rng rng;
    dq_rng_seed(&rng, 42);
    dq_net_t *net = NULL;
    dq_tensor x = {0};
    s_sgemm_ctx g;
    dq_status st = s_sgemm_setup(&g, n, err);
    if (st == DQ_OK) st = s_setup_net(&net, &x, o, "deepnn-fmnist.model", &rng, err);
    s_teacher_ctx t = {net, &x};
    const double half = o->seconds / S_SHARE_ROUNDS, flops = 2.0 * (double)n * n * n;
    double r[S_SHARE_ROUNDS], rs = 0.0, rt = 0.0;
    if (st == DQ_OK) st = s_rate_for(&rs, s_sgemm_step, &g, 0.0, err); /* warm-up */
    if (st == DQ_OK) st = s_rate_for(&rt, s_teacher_step, &t, 0.5, err);
    for (int k = 0; k < S_SHARE_ROUNDS && st == DQ_OK; k++) {
        st = s_rate_for(&rs, s_sgemm_step, &g, half, err);
        if (st == DQ_OK) st = s_rate_for(&rt, s_teacher_step, &t, half, err);
        r[k] = 100.0 * rt * o->batch * dq_net_flops_per_sample(net) / (rs * flops);
    }
    if (st == DQ_OK) {
        qsort(r, S_SHARE_ROUNDS, sizeof r[0], s_cmp_double);
        *share = r[S_SHARE_ROUNDS / 2];
    }
    dq_tensor_free(&x);
    dq_net_destroy(&net);
    s_sgemm_free(&g);
    return st;
}

typedef struct {
    dq_net_t *net;
    const dq_tensor *x;
    const int32_t *labels;
    float *m, *v;  /* Adam moments */
    int64_t step;
    dq_rng *rng;
    dq_adam_config cfg;
} s_student_ctx;

/* One training step: the loop body of a cross-entropy epoch. The batch sits
 * in the net's input buffer, where distillq-train normalises each batch. */
static dq_status s_train_step(void *ctx, dq_err *err)
{
    s_student_ctx *s = ctx;
    dq_net_t *net = s->net;
    dq_net_zero_grad(net);
    DQ_TRY(dq_net_forward_input(net, s->x->shape[0], true, s->rng, err));
    const dq_tensor *logits = dq_net_output(net, "logits");
    dq_tensor *dlogits = dq_net_output_grad(net, "logits");
    if (!logits || !dlogits) return dq_fail(err, DQ_ERR_NOT_FOUND, "student: no 'logits' output");
    float loss;
    DQ_TRY(dq_loss_cross_entropy(&loss, dlogits, logits, s->labels, 1.0f, err));
    DQ_TRY(dq_net_backward(net, err));
    dq_adam_step(dq_net_params(net), dq_net_grads(net), s->m, s->v, dq_net_param_floats(net),
                 ++s->step, &s->cfg);
    return DQ_OK;
}

/* Student training: samples/s and GFLOP/s (3x forward FLOPs). */
static dq_status s_bench_student(double *sps, double *gflops, const s_options *o, dq_err *err)
{
    dq_rng rng;
    dq_rng_seed(&rng, 42);
    dq_net_t *net = NULL;
    dq_tensor x = {0};
    float *m = NULL, *v = NULL;
    int32_t *labels = NULL;
    dq_status st = s_setup_net(&net, &x, o, "lightnn-fmnist.model", &rng, err);
    if (st == DQ_OK) {
        int64_t n = dq_net_param_floats(net);
        m = calloc((size_t)n, sizeof *m);
        v = calloc((size_t)n, sizeof *v);
        labels = malloc((size_t)o->batch * sizeof *labels);
        if (!m || !v || !labels)
            st = dq_fail(err, DQ_ERR_NOMEM, "student: cannot allocate Adam state (%lld floats)",
                         (long long)n);
    }
    if (st == DQ_OK) {
        int classes = dq_net_input_spec(net)->classes;
        for (int i = 0; i < o->batch; i++) labels[i] = (int32_t)dq_rng_below(&rng, classes);
        memcpy(dq_net_input_buffer(net), x.data, (size_t)dq_tensor_numel(&x) * sizeof(float));
    }
    s_student_ctx s = {net, &x, labels, m, v, 0, &rng, dq_adam_defaults()};
    double rate = 0.0;
    if (st == DQ_OK) st = s_time_median(&rate, s_train_step, &s, o->seconds, 5, o->steps, err);
    if (st == DQ_OK) {
        *sps = rate * o->batch;
        *gflops = *sps * 3.0 * dq_net_flops_per_sample(net) / 1e9;
    }
    free(m), free(v), free(labels);
    dq_tensor_free(&x);
    dq_net_destroy(&net);
    return st;
}

/* ---- main -------------------------------------------------------------------- */

static void s_usage(FILE *f)
{
    fprintf(f,
"usage: bench_foundation [--threads 1,2] [--batch 128] [--seconds 3] [--sgemm-n 4096]\n"
"                        [--models DIR] [--only sgemm,teacher,share,student] [--steps N]\n"
"\n"
"Measures cblas_sgemm GFLOP/s, DeepNN-fmnist forward (eval) and LightNN-fmnist\n"
"training (forward+backward+Adam) throughput at each thread count, and the\n"
"teacher's share of the sgemm rate from rounds alternating the two. Prints\n"
"tab-separated RESULT/INFO lines; bench/run_foundation.sh compares them with\n"
"PyTorch. Models are read from DIR (default %s). --steps N runs exactly N\n"
"teacher/student iterations without warm-up (for callgrind instruction counts).\n", DQ_BENCH_MODELS_DIR);
}

static dq_status s_parse_threads(s_options *o, const char *list, dq_err *err)
{
    o->n_threads = 0;
    const char *p = list;
    while (*p) {
        char *end;
        long n = strtol(p, &end, 10);
        if (end == p || n < 1 || n > 256 || (*end != ',' && *end != '\0'))
            return dq_fail(err, DQ_ERR_ARG, "--threads: expected a list like 1,2, got '%s'", list);
        if (o->n_threads == S_MAX_THREAD_COUNTS)
            return dq_fail(err, DQ_ERR_ARG, "--threads: at most %d counts", S_MAX_THREAD_COUNTS);
        o->threads[o->n_threads++] = (int)n;
        p = *end ? end + 1 : end;
    }
    if (o->n_threads == 0) return dq_fail(err, DQ_ERR_ARG, "--threads: empty list");
    return DQ_OK;
}

/* --only sgemm,teacher,share,student: a subset, e.g. to profile one of them. */
static dq_status s_parse_only(s_options *o, const char *list, dq_err *err)
{
    o->run_sgemm = strstr(list, "sgemm") != NULL;
    o->run_teacher = strstr(list, "teacher") != NULL;
    o->run_share = strstr(list, "share") != NULL;
    o->run_student = strstr(list, "student") != NULL;
    if (!o->run_sgemm && !o->run_teacher && !o->run_share && !o->run_student)
        return dq_fail(err, DQ_ERR_ARG,
                       "--only: expected some of sgemm,teacher,share,student, got '%s'", list);
    return DQ_OK;
}

static dq_status s_parse_long(const char *opt, const char *val, long lo, long hi, long *out,
                              dq_err *err)
{
    char *end;
    long n = strtol(val, &end, 10);
    if (end == val || *end || n < lo || n > hi)
        return dq_fail(err, DQ_ERR_ARG, "%s: expected an integer in [%ld, %ld], got '%s'", opt,
                       lo, hi, val);
    *out = n;
    return DQ_OK;
}

int main(int argc, char **argv)
{
    s_options o = {.models_dir = DQ_BENCH_MODELS_DIR, .threads = {1, 2}, .n_threads = 2,
                   .batch = 128, .sgemm_n = 4096, .seconds = 3.0,
                   .run_sgemm = true, .run_teacher = true, .run_share = true,
                   .run_student = true};
    dq_err err = {{0}};
    dq_status st = DQ_OK;
    static const struct option opts[] = {
        {"threads", required_argument, 0, 't'}, {"batch", required_argument, 0, 'b'},
        {"seconds", required_argument, 0, 's'}, {"sgemm-n", required_argument, 0, 'n'},
        {"models", required_argument, 0, 'm'},  {"only", required_argument, 0, 'o'},
        {"steps", required_argument, 0, 'S'},   {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int c;
    long val;
    while (st == DQ_OK && (c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 't': st = s_parse_threads(&o, optarg, &err); break;
        case 'b':
            st = s_parse_long("--batch", optarg, 1, 65536, &val, &err);
            o.batch = (int)val;
            break;
        case 'n':
            st = s_parse_long("--sgemm-n", optarg, 1, 16384, &val, &err);
            o.sgemm_n = (int)val;
            break;
        case 's': {
            char *end;
            o.seconds = strtod(optarg, &end);
            if (end == optarg || *end || !(o.seconds > 0.0 && o.seconds <= 600.0))
                st = dq_fail(&err, DQ_ERR_ARG, "--seconds: expected (0, 600], got '%s'", optarg);
            break;
        }
        case 'm': o.models_dir = optarg; break;
        case 'S':
            st = s_parse_long("--steps", optarg, 1, 1000000, &val, &err);
            o.steps = (int)val;
            break;
        case 'o': st = s_parse_only(&o, optarg, &err); break;
        case 'h': s_usage(stdout); return 0;
        default: fprintf(stderr, "bench_foundation: try --help\n"); return 2;
        }
    }
    if (st == DQ_OK && optind < argc)
        st = dq_fail(&err, DQ_ERR_ARG, "unexpected argument '%s'", argv[optind]);
    if (st != DQ_OK) {
        fprintf(stderr, "bench_foundation: %s\n", err.msg);
        return 2;
    }

    printf("INFO\tdistillq_blas\t%s\n", dq_backend_blas_info());
    printf("INFO\tbatch\t%d\n", o.batch);
    printf("INFO\tsgemm_n\t%d\n", o.sgemm_n);
    fflush(stdout);
    for (int i = 0; i < o.n_threads && st == DQ_OK; i++) {
        int t = o.threads[i];
        dq_backend_set_threads(t);
        double gf = 0.0, sps = 0.0;
        if (o.run_sgemm) {
            fprintf(stderr, "# %d thread(s): sgemm %dx%dx%d\n", t, o.sgemm_n, o.sgemm_n,
                    o.sgemm_n);
            st = s_bench_sgemm(&gf, o.sgemm_n, o.seconds, &err);
            if (st != DQ_OK) break;
            printf("RESULT\tdistillq\t%d\tsgemm_gflops\t%.2f\n", t, gf);
            fflush(stdout);
        }
        if (o.run_teacher) {
            fprintf(stderr, "# %d thread(s): teacher forward\n", t);
            st = s_bench_teacher(&sps, &gf, &o, &err);
            if (st != DQ_OK) break;
            printf("RESULT\tdistillq\t%d\tteacher_fwd_sps\t%.1f\n", t, sps);
            printf("RESULT\tdistillq\t%d\tteacher_fwd_gflops\t%.2f\n", t, gf);
            fflush(stdout);
        }
        if (o.run_share && o.steps > 0) {
            fprintf(stderr, "# %d thread(s): share skipped: it is timed, --steps is not\n", t);
        } else if (o.run_share) {
            fprintf(stderr, "# %d thread(s): teacher forward and sgemm, alternating\n", t);
            double share = 0.0;
            st = s_bench_share(&share, &o, &err);
            if (st != DQ_OK) break;
            printf("RESULT\tdistillq\t%d\tteacher_sgemm_share_pct\t%.1f\n", t, share);
            fflush(stdout);
        }
        if (o.run_student) {
            fprintf(stderr, "# %d thread(s): student training\n", t);
            st = s_bench_student(&sps, &gf, &o, &err);
            if (st != DQ_OK) break;
            printf("RESULT\tdistillq\t%d\tstudent_train_sps\t%.1f\n", t, sps);
            printf("RESULT\tdistillq\t%d\tstudent_train_gflops\t%.2f\n", t, gf);
            fflush(stdout);
        }
    }
    if (st != DQ_OK) {
        fprintf(stderr, "bench_foundation: %s: %s\n", dq_strerror(st), err.msg);
        return 1;
    }
    return 0;
}
