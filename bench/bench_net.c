/* bench_net.c - eval forward and training step of any model file, on real
 * Fashion-MNIST images, for comparison with PyTorch in the same run
 * (bench/run_resnet.sh, bench/pytorch_resnet.py).
 *
 * bench_foundation measures the tutorial's two fixed networks; this one takes
 * --model FILE so that ResNet-18 (issue 9 section 5), the depthwise student
 * or a user's network is measured the same way: the first --images test
 * images, normalised by the model's own spec, are cycled through in batches
 * of --batch; forward runs in eval mode (the teacher's path: batch-invariant
 * GEMMs, batch norm folded), training is zero_grad + forward(train) + cross-
 * entropy + backward + Adam. Each number is the median of 5 windows after a
 * warm-up. Prints "RESULT distillq <threads> <metric> <value>" lines.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "data/dataset.h"
#include "model/net.h"
#include "tensor/backend.h"
#include "tensor/loss.h"
#include "tensor/optim.h"
#include "tensor/rng.h"

typedef struct {
    const char *model, *data, *tag;
    int threads[8], n_threads, batch, images;
    double seconds;
    bool fwd, train;
} s_options;

typedef struct {
    dq_net_t *net;
    float *x;         /* all images, normalised */
    int32_t *labels;
    int64_t n, pos, per;
    int batch;
    float *m, *v;
    int64_t step;
    dq_rng rng;
    dq_adam_config cfg;
} s_ctx;

typedef dq_status (*s_step_fn)(s_ctx *c, dq_err *err);

static dq_tensor s_next(s_ctx *c)
{
    const dq_net_input *in = dq_net_input_spec(c->net);
    if (c->pos + c->batch > c->n) c->pos = 0;
    dq_tensor t = dq_tensor_view4(c->x + c->pos * c->per, c->batch, in->channels, in->height,
                                  in->width);
    c->pos += c->batch;
    return t;
}

static dq_status s_fwd(s_ctx *c, dq_err *err)
{
    dq_tensor t = s_next(c);
    return dq_net_forward(c->net, &t, false, NULL, err);
}

static dq_status s_train(s_ctx *c, dq_err *err)
{
    int64_t at = c->pos + c->batch > c->n ? 0 : c->pos;
    dq_tensor t = s_next(c);
    dq_net_zero_grad(c->net);
    DQ_TRY(dq_net_forward(c->net, &t, true, &c->rng, err));
    float loss;
    DQ_TRY(dq_loss_cross_entropy(&loss, dq_net_output_grad(c->net, "logits"),
                                 dq_net_output(c->net, "logits"), c->labels + at, 1.0f, err));
    DQ_TRY(dq_net_backward(c->net, err));
    dq_adam_step(dq_net_params(c->net), dq_net_grads(c->net), c->m, c->v,
                 dq_net_param_floats(c->net), ++c->step, &c->cfg);
    return DQ_OK;
}

static int s_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Batches per second: warm-up (>= 2 steps and 0.5 s), then the median of 5
 * windows over `seconds`. */
static dq_status s_rate(double *rate, s_step_fn f, s_ctx *c, double seconds, dq_err *err)
{
    double t0 = dq_clock_now_s(), r[5];
    for (int i = 0; i < 2 || dq_clock_now_s() - t0 < 0.5; i++) DQ_TRY(f(c, err));
    for (int w = 0; w < 5; w++) {
        int it = 0;
        double el;
        t0 = dq_clock_now_s();
        do {
            DQ_TRY(f(c, err));
            it++;
            el = dq_clock_now_s() - t0;
        } while (el < seconds / 5);
        r[w] = it / el;
    }
    qsort(r, 5, sizeof r[0], s_cmp);
    *rate = r[2];
    return DQ_OK;
}

static dq_status s_run(const s_options *o, dq_err *err)
{
    dq_dataset ds = {0};
    s_ctx c = {0};
    dq_status st = dq_dataset_load_dir(&ds, o->data, 0, err);
    if (st == DQ_OK) st = dq_net_load(&c.net, o->model, err);
    if (st == DQ_OK) {
        dq_dataset_truncate(&ds, o->images);
        const dq_net_input *in = dq_net_input_spec(c.net);
        if (ds.c != in->channels || ds.h != in->height || ds.w != in->width)
            st = dq_fail(err, DQ_ERR_SHAPE, "%s: model input %dx%dx%d, images %dx%dx%d",
                         o->model, in->channels, in->height, in->width, ds.c, ds.h, ds.w);
    }
    if (st == DQ_OK && ds.n < o->batch)
        st = dq_fail(err, DQ_ERR_ARG, "--images %lld < --batch %d", (long long)ds.n, o->batch);
    if (st == DQ_OK) {
        c.n = ds.n;
        c.per = (int64_t)ds.c * ds.h * ds.w;
        c.batch = o->batch;
        c.labels = ds.labels;
        c.x = malloc(sizeof(float) * (size_t)(c.n * c.per));
        int64_t np = dq_net_param_floats(c.net);
        c.m = calloc((size_t)np, sizeof(float));
        c.v = calloc((size_t)np, sizeof(float));
        if (!c.x || !c.m || !c.v) st = dq_fail(err, DQ_ERR_NOMEM, "bench_net: out of memory");
    }
    if (st == DQ_OK) {
        dq_net_normalize_u8(c.net, c.x, ds.images, c.n);
        dq_rng_seed(&c.rng, 42);
        dq_net_init_params(c.net, &c.rng);
        c.cfg = dq_adam_defaults();
        st = dq_net_plan(c.net, o->batch, err);
    }
    double fl = st == DQ_OK ? dq_net_flops_per_sample(c.net) : 0.0;
    if (st == DQ_OK) printf("INFO\tmodel\t%s\nINFO\tmflops_per_sample\t%.1f\n", o->model, fl / 1e6);
    for (int i = 0; st == DQ_OK && i < o->n_threads; i++) {
        int t = o->threads[i];
        dq_backend_set_threads(t);
        double r = 0.0;
        if (o->fwd) {
            fprintf(stderr, "# %d thread(s): %s eval forward\n", t, o->tag);
            st = s_rate(&r, s_fwd, &c, o->seconds, err);
            if (st != DQ_OK) break;
            printf("RESULT\tdistillq\t%d\t%s_fwd_sps\t%.1f\n", t, o->tag, r * o->batch);
            printf("RESULT\tdistillq\t%d\t%s_fwd_gflops\t%.2f\n", t, o->tag,
                   r * o->batch * fl / 1e9);
        }
        if (o->train) {
            fprintf(stderr, "# %d thread(s): %s training step\n", t, o->tag);
            st = s_rate(&r, s_train, &c, o->seconds, err);
            if (st != DQ_OK) break;
            printf("RESULT\tdistillq\t%d\t%s_train_sps\t%.1f\n", t, o->tag, r * o->batch);
        }
        fflush(stdout);
    }
    free(c.x), free(c.m), free(c.v);
    dq_net_destroy(&c.net);
    dq_dataset_free(&ds);
    return st;
}

static void s_usage(FILE *f)
{
    fprintf(f,
"usage: bench_net --model FILE [--tag NAME] [--threads 1,2] [--batch 128]\n"
"                 [--images 4096] [--seconds 5] [--data DIR] [--only fwd|train]\n"
"\n"
"Eval-forward and training-step throughput of a model file on the first\n"
"--images Fashion-MNIST test images (DIR, default /usr/share/datasets/fashion-mnist).\n"
"Prints tab-separated RESULT lines (metric names start with --tag, default 'net').\n");
}

int main(int argc, char **argv)
{
    s_options o = {.data = "/usr/share/datasets/fashion-mnist", .tag = "net",
                   .threads = {1, 2}, .n_threads = 2, .batch = 128, .images = 4096,
                   .seconds = 5.0, .fwd = true, .train = true};
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"tag", required_argument, 0, 'g'},
        {"threads", required_argument, 0, 't'}, {"batch", required_argument, 0, 'b'},
        {"images", required_argument, 0, 'i'}, {"seconds", required_argument, 0, 's'},
        {"data", required_argument, 0, 'd'}, {"only", required_argument, 0, 'o'},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int ch;
    char *end;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'm': o.model = optarg; break;
        case 'g': o.tag = optarg; break;
        case 'd': o.data = optarg; break;
        case 't':
            o.n_threads = 0;
            for (char *p = optarg; *p && o.n_threads < 8; p = *end ? end + 1 : end) {
                long n = strtol(p, &end, 10);
                if (end == p || n < 1 || n > 256 || (*end && *end != ',')) {
                    fprintf(stderr, "bench_net: --threads: expected a list like 1,2\n");
                    return 2;
                }
                o.threads[o.n_threads++] = (int)n;
            }
            break;
        case 'b': case 'i': {
            long n = strtol(optarg, &end, 10);
            if (end == optarg || *end || n < 1 || n > 1 << 20) {
                fprintf(stderr, "bench_net: bad number '%s'\n", optarg);
                return 2;
            }
            if (ch == 'b') o.batch = (int)n;
            else o.images = (int)n;
            break;
        }
        case 's':
            o.seconds = strtod(optarg, &end);
            if (end == optarg || *end || !(o.seconds > 0 && o.seconds <= 600)) {
                fprintf(stderr, "bench_net: --seconds: expected (0, 600]\n");
                return 2;
            }
            break;
        case 'o':
            o.fwd = strcmp(optarg, "fwd") == 0;
            o.train = strcmp(optarg, "train") == 0;
            if (!o.fwd && !o.train) {
                fprintf(stderr, "bench_net: --only: expected fwd or train\n");
                return 2;
            }
            break;
        case 'h': s_usage(stdout); return 0;
        default: s_usage(stderr); return 2;
        }
    }
    if (!o.model || optind < argc) {
        s_usage(stderr);
        return 2;
    }
    dq_err err = {{0}};
    dq_status st = s_run(&o, &err);
    if (st != DQ_OK) {
        fprintf(stderr, "bench_net: %s: %s\n", dq_strerror(st), err.msg);
        return 1;
    }
    return 0;
}
