/* test_net.c - networks built from model files: forward against a naive
 * double reference, whole-network backward against central finite
 * differences (with a from= branch, a flatten view with two consumers and
 * dropout), dropout modes, planning, outputs, init, normalisation, and the
 * shipped models' sizes. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "gradcheck.h"
#include "model/net.h"
#include "tensor/init.h"

#ifndef DQ_TOP_SRCDIR
#define DQ_TOP_SRCDIR ".."
#endif

/* Writes text to a temporary model file and loads it. */
static dq_net_t *s_net_from_text(const char *text)
{
    char path[] = "/tmp/dq_test_net_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    dq_net_t *net = NULL;
    dq_err err = {{0}};
    dq_status st = dq_net_load(&net, path, &err);
    remove(path);
    if (st != DQ_OK) fail_msg("loading test model: %s", err.msg);
    return net;
}

static dq_net_t *s_net_shipped(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/models/%s.model", DQ_TOP_SRCDIR, name);
    dq_net_t *net = NULL;
    dq_err err = {{0}};
    if (dq_net_load(&net, path, &err) != DQ_OK) fail_msg("%s: %s", path, err.msg);
    return net;
}

static int64_t s_off(dq_net_t *net, const char *name)
{
    for (int i = 0; i < dq_net_param_count(net); i++)
        if (strcmp(dq_net_param_name(net, i), name) == 0)
            return dq_net_param(net, i)->data - dq_net_params(net);
    fail_msg("no parameter %s", name);
    return -1;
}

/* ---- naive double reference ops --------------------------------------------------- */

static void s_conv(double *out, const double *in, const double *w, const double *b, int N, int C,
                   int H, int W, int OC, int K, int S, int P)
{
    int OH = (H + 2 * P - K) / S + 1, OW = (W + 2 * P - K) / S + 1;
    for (int n = 0; n < N; n++)
        for (int oc = 0; oc < OC; oc++)
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    double acc = b ? b[oc] : 0.0;
                    for (int c = 0; c < C; c++)
                        for (int kh = 0; kh < K; kh++)
                            for (int kw = 0; kw < K; kw++) {
                                int ih = oh * S - P + kh, iw = ow * S - P + kw;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                acc += w[((oc * C + c) * K + kh) * K + kw] *
                                       in[((n * C + c) * H + ih) * W + iw];
                            }
                    out[((n * OC + oc) * OH + oh) * OW + ow] = acc;
                }
}

static void s_maxpool(double *out, const double *in, int N, int C, int H, int W, int K, int S)
{
    int OH = (H - K) / S + 1, OW = (W - K) / S + 1;
    for (int nc = 0; nc < N * C; nc++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                double m = -INFINITY;
                for (int kh = 0; kh < K; kh++)
                    for (int kw = 0; kw < K; kw++)
                        m = fmax(m, in[(nc * H + oh * S + kh) * W + ow * S + kw]);
                out[(nc * OH + oh) * OW + ow] = m;
            }
}

static void s_linear(double *out, const double *in, const double *w, const double *b, int N,
                     int I, int O)
{
    for (int n = 0; n < N; n++)
        for (int o = 0; o < O; o++) {
            double acc = b ? b[o] : 0.0;
            for (int i = 0; i < I; i++) acc += w[o * I + i] * in[n * I + i];
            out[n * O + o] = acc;
        }
}

static void s_relu(double *x, int n)
{
    for (int i = 0; i < n; i++) x[i] = x[i] > 0.0 ? x[i] : 0.0;
}

/* ---- forward against the reference -------------------------------------------------- */

static const char *s_fwd_model = "name fwd\n"
                                 "input channels=3 height=7 width=5\n"
                                 "layer c conv2d in=3 out=4 kernel=3 stride=2 padding=1 bias=0\n"
                                 "layer r relu\n"
                                 "layer p maxpool2d kernel=2 stride=1\n" /* [4,3,2] */
                                 "layer f flatten\n"
                                 "layer l linear in=24 out=6\n"
                                 "output logits l\n";

static void test_forward_matches_reference(void **state)
{
    (void)state;
    dq_net_t *net = s_net_from_text(s_fwd_model);
    dq_err err = {{0}};
    dq_rng rng;
    dq_rng_seed(&rng, 11);
    dq_net_init_params(net, &rng);
    enum { N = 3, IN = 3 * 7 * 5 };
    float x[N * IN];
    double xd[N * IN], P[4 * 3 * 9 + 24 * 6 + 6];
    assert_int_equal(dq_net_param_floats(net), sizeof P / sizeof P[0]);
    dq_test_fill(x, xd, N * IN, &rng, -1.0f, 1.0f);
    for (int64_t i = 0; i < dq_net_param_floats(net); i++) P[i] = dq_net_params(net)[i];
    assert_int_equal(dq_net_plan(net, N, &err), DQ_OK);
    dq_tensor in = dq_tensor_view4(x, N, 3, 7, 5);
    if (dq_net_forward(net, &in, false, NULL, &err) != DQ_OK) fail_msg("%s", err.msg);

    double c[N * 4 * 4 * 3], p[N * 24], l[N * 6];
    s_conv(c, xd, P + s_off(net, "c.weight"), NULL, N, 3, 7, 5, 4, 3, 2, 1);
    s_relu(c, N * 48);
    s_maxpool(p, c, N, 4, 4, 3, 2, 1);
    s_linear(l, p, P + s_off(net, "l.weight"), P + s_off(net, "l.bias"), N, 24, 6);
    const dq_tensor *logits = dq_net_output(net, "logits");
    assert_non_null(logits);
    assert_int_equal(logits->ndim, 2);
    assert_int_equal(logits->shape[0], N);
    assert_int_equal(logits->shape[1], 6);
    dq_test_assert_close(logits->data, l, N * 6, 1e-5, 1e-6, "logits");
    dq_net_destroy(&net);
    assert_null(net);
}

/* ---- backward against finite differences ----------------------------------------------
 * c0 feeds p0, which has two consumers: the regressor conv `reg` (a from=
 * branch) and the flatten `fl`, itself read by both `ap` and `fc`. The loss
 * uses three outputs, so p0's gradient is the sum of three paths and
 * c0.weight's gradient is only right if they all accumulate. */
static const char *s_bwd_model =
    "name bwd\n"
    "input channels=2 height=6 width=6\n"
    "layer c0 conv2d in=2 out=3 kernel=3 padding=1\n"              /* [3,6,6] */
    "layer r0 relu\n"
    "layer p0 maxpool2d kernel=2\n"                                /* [3,3,3] */
    "layer reg conv2d in=3 out=2 kernel=2 stride=2 padding=1 bias=0\n" /* [2,2,2] */
    "layer fl flatten from=p0\n"                                   /* [27] */
    "layer ap avgpool1d kernel=3\n"                                /* [9] */
    "layer fc linear in=27 out=8 from=fl\n"
    "layer rr relu\n"
    "layer dr dropout p=0.3\n"
    "layer fc2 linear in=8 out=4\n"
    "output logits fc2\n"
    "output features reg\n"
    "output pooled ap\n"
    "output pre rr\n"
    "output drop dr\n";

enum { B_N = 2, B_IN = 2 * 36, B_LOG = 4, B_FEAT = 8, B_POOL = 9, B_HID = 8 };

typedef struct {
    const double *x, *mask, *a, *b, *c;
    int64_t c0w, c0b, regw, fcw, fcb, fc2w, fc2b;
    double logits[B_N * B_LOG], feat[B_N * B_FEAT], pooled[B_N * B_POOL];
} s_bwd_ctx;

static double s_bwd_loss(const double *P, void *vctx)
{
    s_bwd_ctx *k = vctx;
    double c0[B_N * 3 * 36], p0[B_N * 27], h[B_N * B_HID];
    s_conv(c0, k->x, P + k->c0w, P + k->c0b, B_N, 2, 6, 6, 3, 3, 1, 1);
    s_relu(c0, B_N * 3 * 36);
    s_maxpool(p0, c0, B_N, 3, 6, 6, 2, 2);
    s_conv(k->feat, p0, P + k->regw, NULL, B_N, 3, 3, 3, 2, 2, 2, 1);
    for (int n = 0; n < B_N; n++)
        for (int j = 0; j < B_POOL; j++)
            k->pooled[n * B_POOL + j] =
                (p0[n * 27 + 3 * j] + p0[n * 27 + 3 * j + 1] + p0[n * 27 + 3 * j + 2]) / 3.0;
    s_linear(h, p0, P + k->fcw, P + k->fcb, B_N, 27, B_HID);
    s_relu(h, B_N * B_HID);
    for (int i = 0; i < B_N * B_HID; i++) h[i] *= k->mask[i];
    s_linear(k->logits, h, P + k->fc2w, P + k->fc2b, B_N, B_HID, B_LOG);
    double L = 0.0;
    for (int i = 0; i < B_N * B_LOG; i++) L += k->a[i] * k->logits[i];
    for (int i = 0; i < B_N * B_FEAT; i++) L += k->b[i] * k->feat[i];
    for (int i = 0; i < B_N * B_POOL; i++) L += k->c[i] * k->pooled[i];
    return L;
}

static void test_backward_matches_finite_differences(void **state)
{
    (void)state;
    dq_net_t *net = s_net_from_text(s_bwd_model);
    dq_err err = {{0}};
    dq_rng rng, drop_rng;
    dq_rng_seed(&rng, 5);
    dq_rng_seed(&drop_rng, 6);
    dq_net_init_params(net, &rng);
    int64_t np = dq_net_param_floats(net);
    assert_int_equal(np, 2 * 9 * 3 + 3 + 3 * 4 * 2 + 27 * 8 + 8 + 8 * 4 + 4);

    float x[B_N * B_IN], x_copy[B_N * B_IN];
    double xd[B_N * B_IN], a[B_N * B_LOG], b[B_N * B_FEAT], c[B_N * B_POOL], mask[B_N * B_HID];
    dq_test_fill(x, xd, B_N * B_IN, &rng, -1.0f, 1.0f);
    memcpy(x_copy, x, sizeof x);
    float af[B_N * B_LOG], bf[B_N * B_FEAT], cf[B_N * B_POOL];
    dq_test_fill(af, a, B_N * B_LOG, &rng, -1.0f, 1.0f);
    dq_test_fill(bf, b, B_N * B_FEAT, &rng, -1.0f, 1.0f);
    dq_test_fill(cf, c, B_N * B_POOL, &rng, -1.0f, 1.0f);

    /* Planned for more than we run: the batch may be smaller. */
    assert_int_equal(dq_net_plan(net, 5, &err), DQ_OK);
    dq_net_zero_grad(net);
    dq_tensor in = dq_tensor_view4(x, B_N, 2, 6, 6);
    if (dq_net_forward(net, &in, true, &drop_rng, &err) != DQ_OK) fail_msg("%s", err.msg);
    assert_memory_equal(x, x_copy, sizeof x);

    /* Recover the dropout mask from the layer's input and output. */
    const float *pre = dq_net_output(net, "pre")->data, *drop = dq_net_output(net, "drop")->data;
    int kept = 0, dropped = 0;
    for (int i = 0; i < B_N * B_HID; i++) {
        bool d = pre[i] > 0.0f && drop[i] == 0.0f;
        mask[i] = d ? 0.0 : 1.0 / (1.0 - 0.3);
        if (pre[i] > 0.0f) d ? dropped++ : kept++;
    }
    assert_true(kept > 0 && dropped > 0); /* the test exercises both */

    double *P = malloc((size_t)np * sizeof *P), *g = malloc((size_t)np * sizeof *g);
    assert_true(P && g);
    for (int64_t i = 0; i < np; i++) P[i] = dq_net_params(net)[i];
    s_bwd_ctx k = {.x = xd, .mask = mask, .a = a, .b = b, .c = c,
                   .c0w = s_off(net, "c0.weight"), .c0b = s_off(net, "c0.bias"),
                   .regw = s_off(net, "reg.weight"), .fcw = s_off(net, "fc.weight"),
                   .fcb = s_off(net, "fc.bias"), .fc2w = s_off(net, "fc2.weight"),
                   .fc2b = s_off(net, "fc2.bias")};
    s_bwd_loss(P, &k);
    dq_test_assert_close(dq_net_output(net, "logits")->data, k.logits, B_N * B_LOG, 1e-5, 1e-6,
                         "logits");
    dq_test_assert_close(dq_net_output(net, "features")->data, k.feat, B_N * B_FEAT, 1e-5, 1e-6,
                         "features");
    dq_test_assert_close(dq_net_output(net, "pooled")->data, k.pooled, B_N * B_POOL, 1e-5, 1e-6,
                         "pooled");

    memcpy(dq_net_output_grad(net, "logits")->data, af, sizeof af);
    memcpy(dq_net_output_grad(net, "features")->data, bf, sizeof bf);
    memcpy(dq_net_output_grad(net, "pooled")->data, cf, sizeof cf);
    if (dq_net_backward(net, &err) != DQ_OK) fail_msg("%s", err.msg);

    dq_test_numgrad(g, P, np, s_bwd_loss, &k, 1e-6);
    for (int i = 0; i < dq_net_param_count(net); i++) {
        const dq_tensor *gt = dq_net_param_grad(net, i);
        int64_t off = gt->data - dq_net_grads(net);
        dq_test_assert_close(gt->data, g + off, dq_tensor_numel(gt), 1e-4, 1e-5,
                             dq_net_param_name(net, i));
    }
    /* The gradient is not trivially zero anywhere it matters. */
    double c0_norm = 0.0;
    for (int i = 0; i < 18; i++) c0_norm += fabs(dq_net_grads(net)[k.c0w + i]);
    assert_true(c0_norm > 1e-3);

    /* zero_grad clears parameter and activation gradients. */
    dq_net_zero_grad(net);
    for (int64_t i = 0; i < np; i++) assert_true(dq_net_grads(net)[i] == 0.0f);
    for (int i = 0; i < B_N * B_LOG; i++)
        assert_true(dq_net_output_grad(net, "logits")->data[i] == 0.0f);
    for (int i = 0; i < B_N * B_FEAT; i++)
        assert_true(dq_net_output_grad(net, "features")->data[i] == 0.0f);
    free(P);
    free(g);
    dq_net_destroy(&net);
}

/* ---- dropout modes --------------------------------------------------------------------- */

static const char *s_drop_model = "name drop\n"
                                  "input channels=1 height=10 width=10\n"
                                  "layer f flatten\n"
                                  "layer d dropout p=0.5\n"
                                  "output logits d\n"
                                  "output pre f\n";

static void test_dropout_eval_identity_train_reproducible(void **state)
{
    (void)state;
    dq_net_t *net = s_net_from_text(s_drop_model);
    dq_err err = {{0}};
    enum { N = 4, F = 100 };
    assert_int_equal(dq_net_plan(net, N, &err), DQ_OK);
    float x[N * F];
    dq_rng rng;
    dq_rng_seed(&rng, 1);
    dq_test_fill(x, NULL, N * F, &rng, 0.5f, 1.5f); /* never 0 */
    dq_tensor in = dq_tensor_view4(x, N, 1, 10, 10);

    /* Eval: identity, and the rng is not touched. */
    dq_rng r;
    dq_rng_seed(&r, 7);
    dq_rng before = r;
    assert_int_equal(dq_net_forward(net, &in, false, &r, &err), DQ_OK);
    assert_memory_equal(dq_net_output(net, "logits")->data, x, sizeof x);
    assert_memory_equal(&r, &before, sizeof r);
    assert_int_equal(dq_net_backward(net, &err), DQ_ERR_ARG); /* eval forward */
    assert_non_null(strstr(err.msg, "train=true"));

    /* Train: each value is dropped or scaled by 2; same seed, same result. */
    float first[N * F];
    assert_int_equal(dq_net_forward(net, &in, true, &r, &err), DQ_OK);
    memcpy(first, dq_net_output(net, "logits")->data, sizeof first);
    int dropped = 0;
    for (int i = 0; i < N * F; i++) {
        if (first[i] == 0.0f) dropped++;
        else assert_true(first[i] == x[i] * 2.0f);
    }
    assert_in_range(dropped, 140, 260); /* binomial(400, 0.5): 200 +- 6 sigma */
    dq_rng_seed(&r, 7);
    assert_int_equal(dq_net_forward(net, &in, true, &r, &err), DQ_OK);
    assert_memory_equal(dq_net_output(net, "logits")->data, first, sizeof first);
    dq_rng_seed(&r, 8);
    assert_int_equal(dq_net_forward(net, &in, true, &r, &err), DQ_OK);
    assert_memory_not_equal(dq_net_output(net, "logits")->data, first, sizeof first);
    /* Train without an rng is refused. */
    assert_int_equal(dq_net_forward(net, &in, true, NULL, &err), DQ_ERR_ARG);
    dq_net_destroy(&net);
}

/* ---- planning, outputs, errors ------------------------------------------------------------ */

static void test_batch_smaller_than_planned_and_replan(void **state)
{
    (void)state;
    dq_net_t *net = s_net_from_text(s_fwd_model);
    dq_err err = {{0}};
    dq_rng rng;
    dq_rng_seed(&rng, 2);
    dq_net_init_params(net, &rng);
    enum { IN = 3 * 7 * 5 };
    float x[6 * IN], full[4 * 6];
    dq_test_fill(x, NULL, 6 * IN, &rng, -1.0f, 1.0f);
    assert_int_equal(dq_net_plan(net, 4, &err), DQ_OK);
    dq_tensor in4 = dq_tensor_view4(x, 4, 3, 7, 5), in2 = dq_tensor_view4(x, 2, 3, 7, 5);
    assert_int_equal(dq_net_forward(net, &in4, false, NULL, &err), DQ_OK);
    memcpy(full, dq_net_output(net, "logits")->data, sizeof full);
    assert_int_equal(dq_net_forward(net, &in2, false, NULL, &err), DQ_OK);
    const dq_tensor *lo = dq_net_output(net, "logits");
    assert_int_equal(lo->shape[0], 2);
    double want[2 * 6];
    for (int i = 0; i < 12; i++) want[i] = full[i];
    dq_test_assert_close(lo->data, want, 12, 1e-6, 1e-7, "logits of 2 of 4");

    /* Over the plan: refused with the limits named; a larger plan fixes it. */
    dq_tensor in6 = dq_tensor_view4(x, 6, 3, 7, 5);
    assert_int_equal(dq_net_forward(net, &in6, false, NULL, &err), DQ_ERR_SHAPE);
    assert_string_equal(err.msg, "net fwd: input has shape [6, 3, 7, 5], expected [N, 3, 7, 5] "
                                 "with 1 <= N <= 4 (the planned batch)");
    assert_int_equal(dq_net_plan(net, 6, &err), DQ_OK);
    assert_int_equal(dq_net_forward(net, &in6, false, NULL, &err), DQ_OK);
    dq_test_assert_close(dq_net_output(net, "logits")->data, want, 12, 1e-6, 1e-7,
                         "logits after replan");
    dq_tensor wrong = dq_tensor_view4(x, 2, 3, 5, 7);
    assert_int_equal(dq_net_forward(net, &wrong, false, NULL, &err), DQ_ERR_SHAPE);
    assert_int_equal(dq_net_plan(net, 0, &err), DQ_ERR_ARG);
    dq_net_destroy(&net);
}

static void test_outputs_and_misuse(void **state)
{
    (void)state;
    dq_net_t *net = s_net_from_text(s_bwd_model);
    dq_err err = {{0}};
    float x[2 * 72] = {0};
    dq_tensor in = dq_tensor_view4(x, 2, 2, 6, 6);
    assert_int_equal(dq_net_forward(net, &in, false, NULL, &err), DQ_ERR_ARG);
    assert_string_equal(err.msg, "net bwd: forward before dq_net_plan");
    assert_int_equal(dq_net_backward(net, &err), DQ_ERR_ARG);

    assert_null(dq_net_output(net, "nope"));
    assert_null(dq_net_output_grad(net, "nope"));
    int64_t shape[4];
    assert_int_equal(dq_net_output_shape(net, "nope", shape), -1);
    assert_int_equal(dq_net_output_count(net), 5);
    assert_string_equal(dq_net_output_name(net, 0), "logits");
    assert_string_equal(dq_net_output_name(net, 1), "features");
    assert_null(dq_net_output_name(net, 5));
    assert_int_equal(dq_net_output_shape(net, "features", shape), 3);
    assert_true(shape[0] == 2 && shape[1] == 2 && shape[2] == 2);
    assert_int_equal(dq_net_input_spec(net)->classes, 4);
    assert_string_equal(dq_net_name(net), "bwd");
    assert_null(dq_net_param(net, dq_net_param_count(net)));

    /* A bad model file: no net, and the message names file and line. */
    dq_net_t *bad = net; /* any non-NULL value: load must reset it */
    assert_int_equal(dq_net_load(&bad, "/nonexistent.model", &err), DQ_ERR_IO);
    assert_null(bad);
    dq_net_destroy(&net);
    dq_net_destroy(&net); /* idempotent */
}

/* ---- shipped models, init, normalisation ------------------------------------------------- */

static void test_shipped_sizes_and_flops(void **state)
{
    (void)state;
    dq_net_t *net = s_net_shipped("deepnn-fmnist");
    assert_int_equal(dq_net_param_floats(net), 938922);
    assert_int_equal(dq_net_param_count(net), 12);
    const char *keys[] = {"features.0.weight", "features.0.bias", "features.2.weight",
                          "features.2.bias", "features.5.weight", "features.5.bias",
                          "features.7.weight", "features.7.bias", "classifier.0.weight",
                          "classifier.0.bias", "classifier.3.weight", "classifier.3.bias"};
    for (int i = 0; i < 12; i++) {
        assert_string_equal(dq_net_param_name(net, i), keys[i]);
        assert_string_equal(dq_net_param(net, i)->name, keys[i]);
    }
    dq_tensor *w = dq_net_param(net, 8);
    assert_int_equal(w->ndim, 2);
    assert_true(w->shape[0] == 512 && w->shape[1] == 1568);
    /* Parameters and gradients are contiguous, in file order. */
    assert_true(dq_net_param(net, 11)->data + 10 == dq_net_params(net) + 938922);
    assert_true(dq_net_param_grad(net, 11)->data + 10 == dq_net_grads(net) + 938922);
    /* 2 * MACs: 28*28*(128*9 + 64*128*9) + 14*14*(64*64*9 + 32*64*9) + 1568*512 + 512*10 */
    assert_true(dq_net_flops_per_sample(net) == 140703744.0);
    dq_net_destroy(&net);

    net = s_net_shipped("lightnn-fmnist");
    assert_int_equal(dq_net_param_floats(net), 206010);
    assert_true(dq_net_flops_per_sample(net) == 1535488.0);
    dq_net_destroy(&net);

    net = s_net_shipped("lightnn-regressor-fmnist");
    assert_int_equal(dq_net_param_floats(net), 210650);
    assert_string_equal(dq_net_param_name(net, 4), "regressor.0.weight");
    int64_t shape[4];
    assert_int_equal(dq_net_output_shape(net, "features", shape), 3);
    assert_true(shape[0] == 32 && shape[1] == 7 && shape[2] == 7);
    dq_net_destroy(&net);
}

static void test_shipped_forward_backward_runs(void **state)
{
    (void)state;
    /* The real ops through a real model: shapes flow, gradients reach every
     * parameter, including the regressor branch's. */
    dq_net_t *net = s_net_shipped("lightnn-regressor-fmnist");
    dq_err err = {{0}};
    dq_rng rng;
    dq_rng_seed(&rng, 9);
    dq_net_init_params(net, &rng);
    enum { N = 2 };
    float x[N * 784];
    dq_test_fill(x, NULL, N * 784, &rng, -1.0f, 1.0f);
    assert_int_equal(dq_net_plan(net, N, &err), DQ_OK);
    dq_net_zero_grad(net);
    dq_tensor in = dq_tensor_view4(x, N, 1, 28, 28);
    if (dq_net_forward(net, &in, true, &rng, &err) != DQ_OK) fail_msg("%s", err.msg);
    dq_tensor *gl = dq_net_output_grad(net, "logits"), *gf = dq_net_output_grad(net, "features");
    assert_int_equal(dq_tensor_numel(gl), N * 10);
    assert_int_equal(dq_tensor_numel(gf), N * 32 * 49);
    for (int64_t i = 0; i < dq_tensor_numel(gl); i++) gl->data[i] = 1.0f;
    for (int64_t i = 0; i < dq_tensor_numel(gf); i++) gf->data[i] = 0.01f;
    if (dq_net_backward(net, &err) != DQ_OK) fail_msg("%s", err.msg);
    for (int i = 0; i < dq_net_param_count(net); i++) {
        const dq_tensor *g = dq_net_param_grad(net, i);
        double s = 0.0;
        for (int64_t j = 0; j < dq_tensor_numel(g); j++) s += fabs(g->data[j]);
        if (!(s > 0.0 && isfinite(s)))
            fail_msg("%s: gradient sum %g", dq_net_param_name(net, i), s);
    }
    dq_net_destroy(&net);
}

static void test_init_params_pytorch_default(void **state)
{
    (void)state;
    dq_net_t *net = s_net_shipped("lightnn-fmnist");
    dq_rng rng, ref;
    dq_rng_seed(&rng, 3);
    dq_rng_seed(&ref, 3);
    dq_net_init_params(net, &rng);
    /* Same stream as calling init per tensor in file order, weight then bias. */
    float w0[144], b0[16];
    dq_init_uniform_fan_in(w0, 144, 9, &ref);
    dq_init_uniform_fan_in(b0, 16, 9, &ref);
    assert_memory_equal(dq_net_param(net, 0)->data, w0, sizeof w0);
    assert_memory_equal(dq_net_param(net, 1)->data, b0, sizeof b0);
    /* Every tensor lies within, and nearly fills, +-1/sqrt(fan_in). */
    const int64_t fan_in[8] = {9, 9, 144, 144, 784, 784, 256, 256};
    for (int i = 0; i < 8; i++) {
        const dq_tensor *t = dq_net_param(net, i);
        double bound = 1.0 / sqrt((double)fan_in[i]), mx = 0.0;
        for (int64_t j = 0; j < dq_tensor_numel(t); j++) {
            mx = fmax(mx, fabs(t->data[j]));
            assert_true(fabs(t->data[j]) <= bound * (1 + 1e-6));
        }
        if (mx < 0.8 * bound) fail_msg("%s: max %g, bound %g", t->name, mx, bound);
    }
    dq_net_destroy(&net);
}

static void test_normalize_u8(void **state)
{
    (void)state;
    dq_net_t *net = s_net_shipped("deepnn-cifar10");
    enum { PIX = 3 * 32 * 32 };
    uint8_t *in = malloc(2 * PIX);
    float *out = malloc(2 * PIX * sizeof(float));
    assert_true(in && out);
    for (int i = 0; i < 2 * PIX; i++) in[i] = (uint8_t)(i * 7);
    dq_net_normalize_u8(net, out, in, 2);
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    for (int i = 0; i < 2 * PIX; i++) {
        int c = (i / 1024) % 3;
        double want = ((double)in[i] / 255.0 - mean[c]) / std[c];
        assert_true(fabs(out[i] - want) < 1e-6);
    }
    assert_true(fabs(out[0] - (-0.485 / 0.229)) < 1e-6); /* pixel 0 of channel 0 */
    dq_net_destroy(&net);

    /* Fashion-MNIST: (x/255 - 0.5)/0.5 maps 0 -> -1 and 255 -> 1 exactly. */
    net = s_net_shipped("lightnn-fmnist");
    uint8_t img[784] = {0, 255, 51};
    float o[784];
    dq_net_normalize_u8(net, o, img, 1);
    assert_true(o[0] == -1.0f && o[1] == 1.0f && o[783] == -1.0f);
    assert_true(fabs(o[2] - (-0.6)) < 1e-6);
    free(in);
    free(out);
    dq_net_destroy(&net);
}

/* Gradients overwritten by their only writer are not zeroed by zero_grad:
 * a second step must still give exactly the first step's gradients. */
static void test_repeated_backward_same_gradients(void **state)
{
    (void)state;
    const char *models[] = {"lightnn-fmnist", "lightnn-regressor-fmnist", "lightnn-cosine-fmnist"};
    for (int m = 0; m < 3; m++) {
        dq_net_t *net = s_net_shipped(models[m]);
        dq_err err = {{0}};
        dq_rng r, d1, d2;
        dq_rng_seed(&r, 5);
        dq_net_init_params(net, &r);
        enum { N = 3 };
        float x[N * 784];
        dq_test_fill(x, NULL, N * 784, &r, -1, 1);
        assert_int_equal(dq_net_plan(net, N, &err), DQ_OK);
        dq_tensor t = dq_tensor_view4(x, N, 1, 28, 28);
        int64_t np = dq_net_param_floats(net);
        float *g1 = malloc(sizeof(float) * (size_t)np);
        assert_non_null(g1);
        dq_rng_seed(&d1, 9);
        d2 = d1;
        for (int step = 0; step < 2; step++) {
            dq_net_zero_grad(net);
            assert_int_equal(dq_net_forward(net, &t, true, step ? &d2 : &d1, &err), DQ_OK);
            for (int k = 0; k < dq_net_output_count(net); k++) {
                dq_tensor *g = dq_net_output_grad(net, dq_net_output_name(net, k));
                for (int64_t i = 0; i < dq_tensor_numel(g); i++) g->data[i] = 0.01f * (float)(i % 7);
            }
            assert_int_equal(dq_net_backward(net, &err), DQ_OK);
            if (step == 0) memcpy(g1, dq_net_grads(net), sizeof(float) * (size_t)np);
        }
        assert_memory_equal(g1, dq_net_grads(net), sizeof(float) * (size_t)np);
        free(g1);
        dq_net_destroy(&net);
    }
}

/* Random batch-norm affine parameters and running statistics (init leaves
 * them at the identity), so folding and invariance are tested for real. */
static void s_random_bn(dq_net_t *net, dq_rng *r)
{
    for (int i = 0; i < dq_net_param_count(net); i++) {
        const char *name = dq_net_param_name(net, i);
        if (!strstr(name, "bn") && !strstr(name, ".1.") && !strstr(name, "stem.1")) continue;
        dq_tensor *t = dq_net_param(net, i);
        if (t->ndim != 1) continue;
        bool w = strstr(name, "weight") != NULL;
        dq_test_fill(t->data, NULL, dq_tensor_numel(t), r, w ? 0.5f : -0.3f, w ? 1.5f : 0.3f);
    }
    for (int k = 0; k < dq_net_buffer_count(net); k++) {
        dq_tensor *b = dq_net_buffer(net, k);
        if (!b) continue;
        bool var = strstr(dq_net_buffer_name(net, k), "running_var") != NULL;
        dq_test_fill(b->data, NULL, dq_tensor_numel(b), r, var ? 0.5f : -0.2f, var ? 1.5f : 0.2f);
    }
}

/* A batch written into the net's own input buffer and run with
 * dq_net_forward_input gives bitwise what dq_net_forward gives on a copy of
 * it (training forward with dropout, and backward), in eval mode too. */
static void test_forward_from_input_buffer(void **state)
{
    (void)state;
    dq_net_t *net = s_net_shipped("lightnn-fmnist");
    dq_err err = {{0}};
    dq_rng r, d1, d2;
    dq_rng_seed(&r, 21);
    dq_net_init_params(net, &r);
    enum { N = 3, IN = 784 };
    float x[N * IN], logits[N * 10];
    dq_test_fill(x, NULL, N * IN, &r, -1, 1);
    assert_null(dq_net_input_buffer(net)); /* no plan yet */
    assert_int_equal(dq_net_forward_input(net, N, false, NULL, &err), DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "before dq_net_plan"));
    assert_int_equal(dq_net_plan(net, 4, &err), DQ_OK);
    int64_t np = dq_net_param_floats(net);
    float *g1 = malloc(sizeof(float) * (size_t)np);
    assert_non_null(g1);
    dq_rng_seed(&d1, 4);
    d2 = d1;
    for (int pass = 0; pass < 2; pass++) {
        dq_net_zero_grad(net);
        if (pass == 0) {
            dq_tensor t = dq_tensor_view4(x, N, 1, 28, 28);
            assert_int_equal(dq_net_forward(net, &t, true, &d1, &err), DQ_OK);
        } else {
            float *buf = dq_net_input_buffer(net);
            assert_non_null(buf);
            memset(buf, 0, sizeof x);
            memcpy(buf, x, sizeof x);
            assert_int_equal(dq_net_forward_input(net, N, true, &d2, &err), DQ_OK);
        }
        const dq_tensor *lo = dq_net_output(net, "logits");
        assert_int_equal(lo->shape[0], N);
        if (pass == 0) memcpy(logits, lo->data, sizeof logits);
        else assert_memory_equal(logits, lo->data, sizeof logits);
        dq_tensor *g = dq_net_output_grad(net, "logits");
        for (int64_t i = 0; i < dq_tensor_numel(g); i++) g->data[i] = 0.01f * (float)(i % 5) - 0.02f;
        assert_int_equal(dq_net_backward(net, &err), DQ_OK);
        if (pass == 0) memcpy(g1, dq_net_grads(net), sizeof(float) * (size_t)np);
        else assert_memory_equal(g1, dq_net_grads(net), sizeof(float) * (size_t)np);
    }
    /* eval, and dq_net_forward on a view of the buffer itself */
    dq_tensor t = dq_tensor_view4(x, N, 1, 28, 28);
    assert_int_equal(dq_net_forward(net, &t, false, NULL, &err), DQ_OK);
    memcpy(logits, dq_net_output(net, "logits")->data, sizeof logits);
    dq_tensor own = dq_tensor_view4(dq_net_input_buffer(net), N, 1, 28, 28);
    assert_int_equal(dq_net_forward(net, &own, false, NULL, &err), DQ_OK);
    assert_memory_equal(logits, dq_net_output(net, "logits")->data, sizeof logits);
    assert_int_equal(dq_net_forward_input(net, N, false, NULL, &err), DQ_OK);
    assert_memory_equal(logits, dq_net_output(net, "logits")->data, sizeof logits);
    /* batch sizes outside the plan */
    assert_int_equal(dq_net_forward_input(net, 0, false, NULL, &err), DQ_ERR_SHAPE);
    assert_int_equal(dq_net_forward_input(net, 5, false, NULL, &err), DQ_ERR_SHAPE);
    assert_string_equal(err.msg, "net lightnn-fmnist: batch of 5 in the input buffer, expected "
                                 "1 <= N <= 4 (the planned batch)");
    assert_int_equal(dq_net_forward_input(net, N, true, NULL, &err), DQ_ERR_ARG);
    free(g1);
    dq_net_destroy(&net);
}

/* Eval forward is batch-invariant: every sample's outputs are bitwise the
 * same in any batch and at any position (what the teacher cache relies on).
 * Batches of 1..50 at several offsets against one batch of 50, on models
 * whose convs would otherwise be grouped and whose linears see every tail. */
static void s_check_invariance(const char *model, const char *output)
{
    dq_net_t *net = s_net_shipped(model);
    dq_err err = {{0}};
    dq_rng r;
    dq_rng_seed(&r, 99);
    dq_net_init_params(net, &r);
    s_random_bn(net, &r);
    enum { N = 50 };
    const dq_net_input *in = dq_net_input_spec(net);
    int64_t sz = (int64_t)in->channels * in->height * in->width;
    float *x = malloc(sizeof(float) * (size_t)(N * sz));
    assert_non_null(x);
    dq_test_fill(x, NULL, N * sz, &r, -1, 1);
    assert_int_equal(dq_net_plan(net, N, &err), DQ_OK);
    dq_tensor t = dq_tensor_view4(x, N, in->channels, in->height, in->width);
    assert_int_equal(dq_net_forward(net, &t, false, NULL, &err), DQ_OK);
    const dq_tensor *o = dq_net_output(net, output);
    int64_t K = dq_tensor_inner(o, 1);
    float *ref = malloc(sizeof(float) * (size_t)(N * K));
    assert_non_null(ref);
    memcpy(ref, o->data, sizeof(float) * (size_t)(N * K));
    int checked = 0;
    for (int n = 1; n <= N; n += 7)
        for (int off = 0; off + n <= N; off += 13) {
            dq_tensor t2 = dq_tensor_view4(x + off * sz, n, in->channels, in->height, in->width);
            assert_int_equal(dq_net_forward(net, &t2, false, NULL, &err), DQ_OK);
            o = dq_net_output(net, output);
            for (int i = 0; i < n; i++, checked++)
                if (memcmp(o->data + i * K, ref + (off + i) * K, sizeof(float) * (size_t)K))
                    fail_msg("%s %s: sample %d differs in a batch of %d at row %d", model,
                             output, off + i, n, i);
        }
    assert_true(checked > 100);
    free(x);
    free(ref);
    dq_net_destroy(&net);
}

static void test_eval_forward_is_batch_invariant(void **state)
{
    (void)state;
    s_check_invariance("lightnn-fmnist", "logits");
    s_check_invariance("lightnn-cosine-fmnist", "features");
    s_check_invariance("deepnn-regressor-fmnist", "features");
    /* residual + batch norm (folded), depthwise + relu6 + residual add */
    s_check_invariance("resnet18-fmnist", "logits");
    s_check_invariance("mobilenet-tiny-fmnist", "logits");
}

/* Eval folds each conv -> batchnorm2d pair: within 1e-5 of the unfolded
 * network, redone after every change of the weights or statistics. */
static void test_bn_fold_matches_unfolded(void **state)
{
    (void)state;
    const char *models[] = {"resnet18-fmnist", "mobilenet-tiny-fmnist"};
    for (int m = 0; m < 2; m++) {
        dq_net_t *net = s_net_shipped(models[m]);
        dq_err err = {{0}};
        dq_rng r;
        dq_rng_seed(&r, 7);
        dq_net_init_params(net, &r);
        s_random_bn(net, &r);
        enum { N = 6 };
        float x[N * 784], a[N * 10], b[N * 10];
        dq_test_fill(x, NULL, N * 784, &r, -1, 1);
        dq_tensor in = dq_tensor_view4(x, N, 1, 28, 28);
        assert_int_equal(dq_net_plan(net, N, &err), DQ_OK);
        for (int round = 0; round < 3; round++) {
            if (round == 1) { /* a weight change through the API refolds */
                dq_tensor *w = dq_net_find_tensor(net, m ? "stem.1.weight" : "bn1.weight");
                assert_non_null(w);
                w->data[0] *= 3.0f;
            }
            if (round == 2) { /* a training forward moves the running statistics */
                dq_rng d;
                dq_rng_seed(&d, 1);
                assert_int_equal(dq_net_forward(net, &in, true, &d, &err), DQ_OK);
            }
            assert_int_equal(dq_net_forward(net, &in, false, NULL, &err), DQ_OK);
            memcpy(a, dq_net_output(net, "logits")->data, sizeof a);
            dq_net_set_bn_fold(net, false);
            assert_int_equal(dq_net_forward(net, &in, false, NULL, &err), DQ_OK);
            memcpy(b, dq_net_output(net, "logits")->data, sizeof b);
            dq_net_set_bn_fold(net, true);
            double scale = 0, e = 0;
            for (int i = 0; i < N * 10; i++) {
                scale = fmax(scale, fabs(b[i]));
                e = fmax(e, fabs((double)a[i] - b[i]));
            }
            if (!(e <= 1e-5 * fmax(scale, 1.0)))
                fail_msg("%s round %d: folded differs from unfolded by %g (scale %g)", models[m],
                         round, e, scale);
            assert_true(scale > 1e-3);
            if (round == 0) assert_memory_not_equal(a, b, sizeof a); /* the fold did run */
        }
        dq_net_destroy(&net);
    }
}

/* The new layers' wiring in one net, train-mode backward against central
 * finite differences of the float forward: batch-norm parameters through
 * the batch statistics, an add's gradient to both inputs and the sum at a
 * fan-out (bn1 and ap are each read twice), depthwise and grouped weights,
 * padded avgpool2d without the pad in the count, global average pooling.
 * The ops themselves are checked in double against their own references
 * (test_ops_resnet); the kinked ones (relu6, clip, padded maxpool) are left
 * out here, where a finite difference across a kink would mislead, and are
 * checked against PyTorch's autograd in a whole network
 * (test_resnet_torch.sh). */
static const char *s_res_model =
    "name resgrad\n"
    "input channels=2 height=6 width=6\n"
    "layer c1 conv2d in=2 out=4 kernel=3 padding=1\n"
    "layer bn1 batchnorm2d features=4\n"
    "layer dw conv2d in=4 out=4 kernel=3 padding=1 groups=4 bias=0\n"
    "layer bn2 batchnorm2d features=4 momentum=0.3\n"
    "layer up avgpool2d kernel=2 stride=1 padding=1 count_include_pad=0\n" /* 4x7x7 */
    "layer pw conv2d in=4 out=4 kernel=2 groups=2\n"                         /* 4x6x6 */
    "layer s add from=bn1,pw\n"
    "layer ap avgpool2d kernel=3 stride=2 padding=1\n"                       /* 4x3x3 */
    "layer g global_avgpool from=s\n"
    "layer gc conv2d in=4 out=4 kernel=1 groups=2 from=ap\n"
    "layer s2 add from=gc,ap\n"
    "layer f flatten\n"
    "layer fc linear in=36 out=3\n"
    "layer fg flatten from=g\n"
    "output logits fc\n"
    "output pooled fg\n";

enum { R_N = 3 };

static double s_res_loss(dq_net_t *net, const dq_tensor *in, const float *a, const float *b)
{
    dq_err err = {{0}};
    dq_rng d;
    dq_rng_seed(&d, 1);
    if (dq_net_forward(net, in, true, &d, &err) != DQ_OK) fail_msg("%s", err.msg);
    const float *l = dq_net_output(net, "logits")->data, *p = dq_net_output(net, "pooled")->data;
    double s = 0;
    for (int i = 0; i < R_N * 3; i++) s += (double)l[i] * a[i];
    for (int i = 0; i < R_N * 4; i++) s += (double)p[i] * b[i];
    return s;
}

static void test_residual_backward_finite_differences(void **state)
{
    (void)state;
    dq_net_t *net = s_net_from_text(s_res_model);
    dq_err err = {{0}};
    dq_rng r;
    dq_rng_seed(&r, 21);
    dq_net_init_params(net, &r);
    s_random_bn(net, &r);
    float x[R_N * 72], a[R_N * 3], b[R_N * 4];
    dq_test_fill(x, NULL, R_N * 72, &r, -1, 1);
    dq_test_fill(a, NULL, R_N * 3, &r, -1, 1);
    dq_test_fill(b, NULL, R_N * 4, &r, -1, 1);
    dq_tensor in = dq_tensor_view4(x, R_N, 2, 6, 6);
    assert_int_equal(dq_net_plan(net, R_N, &err), DQ_OK);
    dq_net_zero_grad(net);
    s_res_loss(net, &in, a, b);
    memcpy(dq_net_output_grad(net, "logits")->data, a, sizeof a);
    memcpy(dq_net_output_grad(net, "pooled")->data, b, sizeof b);
    assert_int_equal(dq_net_backward(net, &err), DQ_OK);
    int64_t np = dq_net_param_floats(net);
    float *g = malloc(sizeof(float) * (size_t)np);
    assert_non_null(g);
    memcpy(g, dq_net_grads(net), sizeof(float) * (size_t)np);
    float *P = dq_net_params(net);
    const float h = 1e-3f;
    double largest = 0;
    for (int i = 0; i < dq_net_param_count(net); i++) {
        const dq_tensor *t = dq_net_param(net, i);
        int64_t off = t->data - P, n = dq_tensor_numel(t);
        for (int64_t k = off; k < off + n; k++) {
            float keep = P[k];
            P[k] = keep + h;
            double up = s_res_loss(net, &in, a, b);
            P[k] = keep - h;
            double dn = s_res_loss(net, &in, a, b);
            P[k] = keep;
            double fd = (up - dn) / (2.0 * h);
            largest = fmax(largest, fabs(fd));
            if (!(fabs(fd - g[k]) <= 1e-2 * fmax(fabs(fd), 0.1)))
                fail_msg("%s[%lld]: backward %g, finite difference %g",
                         dq_net_param_name(net, i), (long long)(k - off), g[k], fd);
        }
    }
    assert_true(largest > 0.1);
    free(g);
    dq_net_destroy(&net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_matches_reference),
        cmocka_unit_test(test_backward_matches_finite_differences),
        cmocka_unit_test(test_dropout_eval_identity_train_reproducible),
        cmocka_unit_test(test_batch_smaller_than_planned_and_replan),
        cmocka_unit_test(test_outputs_and_misuse),
        cmocka_unit_test(test_shipped_sizes_and_flops),
        cmocka_unit_test(test_shipped_forward_backward_runs),
        cmocka_unit_test(test_init_params_pytorch_default),
        cmocka_unit_test(test_normalize_u8),
        cmocka_unit_test(test_eval_forward_is_batch_invariant),
        cmocka_unit_test(test_repeated_backward_same_gradients),
        cmocka_unit_test(test_bn_fold_matches_unfolded),
        cmocka_unit_test(test_residual_backward_finite_differences),
        cmocka_unit_test(test_forward_from_input_buffer),
    };
    return cmocka_run_group_tests_name("net", tests, NULL, NULL);
}
