/* test_net_backend.c - the one layer walk (src/model/net_exec.c) over a
 * backend op table (src/tensor/backend_ops.h):
 *  - the walk on the CPU table gives bitwise what the CPU ops called by hand
 *    give, forward (eval and train) and backward, on a small net;
 *  - a backend wrapping the CPU table sees exactly the calls the model file
 *    implies (so the walk really goes through the table), and gives the same
 *    bits as the default CPU backend;
 *  - without the overwriting-backward capability the walk zeroes and
 *    accumulates instead, with the same gradients bit for bit;
 *  - asking for a CUDA device in a build or on a machine without one is a
 *    clean DQ_ERR_UNSUPPORTED and the net stays usable on the CPU. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "gradcheck.h"
#include "model/model_file.h"
#include "model/net.h"
#include "tensor/ops.h"

#ifndef DQ_TOP_SRCDIR
#define DQ_TOP_SRCDIR ".."
#endif

#define S_OK(expr)                                                                   \
    do {                                                                             \
        dq_err e_ = {{0}};                                                           \
        (void)e_;                                                                    \
        dq_status st_ = (expr);                                                      \
        if (st_ != DQ_OK) fail_msg("%s: %s", #expr, err.msg);                        \
    } while (0)

static const char *const s_small =
    "name small\n"
    "input channels=2 height=7 width=6\n"
    "normalize mean=0.5 std=0.5\n"
    "layer c1 conv2d in=2 out=3 kernel=3 padding=1\n"
    "layer r1 relu\n"
    "layer p1 maxpool2d kernel=2 stride=2\n"
    "layer fl flatten\n"
    "layer fc linear in=27 out=5\n"
    "output logits fc\n";

static dq_net_t *s_small_net(dq_rng *r)
{
    dq_model_file *mf = malloc(sizeof *mf);
    assert_non_null(mf);
    dq_err err = {{0}};
    S_OK(dq_mf_parse(mf, s_small, "small", &err));
    dq_net_t *net = NULL;
    S_OK(dq_net_from_model_file(&net, mf, &err));
    free(mf);
    dq_net_init_params(net, r);
    return net;
}

/* Forward and backward of the small net by calling the CPU ops by hand. */
static void test_walk_equals_direct_ops(void **state)
{
    (void)state;
    dq_err err = {{0}};
    dq_rng r;
    dq_rng_seed(&r, 5);
    dq_net_t *net = s_small_net(&r);
    enum { N = 4 };
    float x[N * 2 * 7 * 6];
    dq_test_fill(x, NULL, N * 2 * 7 * 6, &r, -1, 1);
    S_OK(dq_net_plan(net, N, &err));
    dq_tensor in = dq_tensor_view4(x, N, 2, 7, 6);
    dq_tensor *w1 = dq_net_find_tensor(net, "c1.weight"), *b1 = dq_net_find_tensor(net, "c1.bias");
    dq_tensor *w2 = dq_net_find_tensor(net, "fc.weight"), *b2 = dq_net_find_tensor(net, "fc.bias");
    assert_non_null(w1), assert_non_null(b1), assert_non_null(w2), assert_non_null(b2);
    assert_null(dq_net_find_tensor(net, "c1.nope"));

    /* By hand: conv -> relu -> maxpool -> (flatten) -> linear. */
    float c[N * 3 * 7 * 6], p[N * 3 * 3 * 3], y[N * 5];
    int32_t am[N * 3 * 3 * 3];
    dq_tensor tc = dq_tensor_view4(c, N, 3, 7, 6), tp = dq_tensor_view4(p, N, 3, 3, 3);
    dq_tensor tf = dq_tensor_view2(p, N, 27), ty = dq_tensor_view2(y, N, 5);
    dq_conv2d_params cp = {1, 1, 0};
    /* The workspace the plan sizes (grouping in conv depends on it). */
    int64_t wsf = dq_linear_invariant_workspace();
    int64_t cws = dq_conv2d_invariant_workspace(N, 2, 7, 6, 3, 3, 3, cp);
    int64_t gws = dq_conv2d_workspace(N, 2, 7, 6, 3, 3, cp);
    if (cws > wsf) wsf = cws;
    if (gws > wsf) wsf = gws;
    /* sized from the thread count (dq_backend_threads): 16 cores need more
     * than a fixed array held */
    float *ws = malloc((size_t)wsf * sizeof(float));
    assert_non_null(ws);
    (void)tf;
    for (int train = 0; train <= 1; train++) {
        if (train) S_OK(dq_conv2d_forward(&tc, &in, w1, b1, cp, ws, wsf, &err));
        else S_OK(dq_conv2d_forward_invariant(&tc, &in, w1, b1, cp, ws, wsf, &err));
        S_OK(dq_relu_forward(&tc, &tc, &err));
        S_OK(dq_maxpool2d_forward(&tp, am, &tc, 2, 2, &err));
        dq_tensor flat = dq_tensor_view2(p, N, 27);
        if (train) S_OK(dq_linear_forward(&ty, &flat, w2, b2, &err));
        else S_OK(dq_linear_forward_invariant(&ty, &flat, w2, b2, ws, wsf, &err));
        dq_rng dr;
        dq_rng_seed(&dr, 1);
        dq_net_zero_grad(net);
        S_OK(dq_net_forward(net, &in, train, &dr, &err));
        const dq_tensor *o = dq_net_output(net, "logits");
        assert_int_equal(o->shape[0], N);
        assert_memory_equal(o->data, y, sizeof y);
    }
    /* Backward of the train forward by hand. */
    float dy[N * 5], dp[N * 27], dc[N * 3 * 7 * 6];
    for (int i = 0; i < N * 5; i++) dy[i] = 0.1f * (float)(i % 7) - 0.3f;
    memcpy(dq_net_output_grad(net, "logits")->data, dy, sizeof dy);
    S_OK(dq_net_backward(net, &err));
    int64_t np = dq_net_param_floats(net);
    float *gw = calloc((size_t)np, sizeof(float));
    assert_non_null(gw);
    dq_tensor gw1 = dq_tensor_view(gw + (w1->data - dq_net_params(net)), w1->ndim, w1->shape);
    dq_tensor gb1 = dq_tensor_view(gw + (b1->data - dq_net_params(net)), 1, b1->shape);
    dq_tensor gw2 = dq_tensor_view(gw + (w2->data - dq_net_params(net)), 2, w2->shape);
    dq_tensor gb2 = dq_tensor_view(gw + (b2->data - dq_net_params(net)), 1, b2->shape);
    memset(dp, 0, sizeof dp);
    memset(dc, 0, sizeof dc);
    dq_tensor tdy = dq_tensor_view2(dy, N, 5), tdp = dq_tensor_view2(dp, N, 27);
    dq_tensor flat = dq_tensor_view2(p, N, 27);
    S_OK(dq_linear_backward(&tdp, &gw2, &gb2, &tdy, &flat, w2, &err));
    dq_tensor tdp4 = dq_tensor_view4(dp, N, 3, 3, 3), tdc = dq_tensor_view4(dc, N, 3, 7, 6);
    S_OK(dq_maxpool2d_backward(&tdc, &tdp4, am, &err));
    float dr[N * 3 * 7 * 6];
    memset(dr, 0, sizeof dr);
    dq_tensor tdr = dq_tensor_view4(dr, N, 3, 7, 6);
    S_OK(dq_relu_backward(&tdr, &tdc, &tc, &err));
    S_OK(dq_conv2d_backward(NULL, &gw1, &gb1, &tdr, &in, w1, cp, ws, wsf, &err));
    assert_memory_equal(gw, dq_net_grads(net), sizeof(float) * (size_t)np);
    free(gw);
    free(ws);
    dq_net_destroy(&net);
}

/* ---- a backend that wraps the CPU table and counts calls ------------------------- */

enum { S_CONV_F, S_CONV_RELU_F, S_CONV_B, S_LIN_F, S_LIN_B, S_RELU_F, S_RELU_B, S_POOL_F, S_POOL_B, S_FUSED_B,
       S_DROP_F, S_DROP_B, S_ADAM, S_CONVF_F, S_CONVF_B, S_POOLED_B, S_NCALLS };

typedef struct {
    dq_backend_t base;
    dq_backend_ops ops;
    const dq_backend_ops *cpu;
    int calls[S_NCALLS];
    int destroyed;
} s_counting;

static s_counting *s_cnt(dq_backend_t *b)
{
    return (s_counting *)b;
}

static void s_c_destroy(dq_backend_t *b)
{
    s_cnt(b)->destroyed++;
}

static dq_status s_c_conv_f(dq_backend_t *b, void *st, dq_tensor *out, const dq_tensor *in,
                            const dq_tensor *w, const dq_tensor *bias, const dq_backend_conv *g,
                            bool eval, void *ws, size_t wsb, dq_err *err)
{
    s_cnt(b)->calls[S_CONV_F]++;
    if (g->relu) s_cnt(b)->calls[S_CONV_RELU_F]++;
    if (g->relu && !eval) fail_msg("conv2d_forward: relu epilogue asked for in training");
    return s_cnt(b)->cpu->conv2d_forward(b, st, out, in, w, bias, g, eval, ws, wsb, err);
}

static dq_status s_c_conv_b(dq_backend_t *b, void *st, dq_tensor *din, dq_tensor *dw,
                            dq_tensor *db, const dq_tensor *dout, const dq_tensor *in,
                            const dq_tensor *w, const dq_backend_conv *g, void *ws, size_t wsb,
                            dq_err *err)
{
    s_cnt(b)->calls[S_CONV_B]++;
    return s_cnt(b)->cpu->conv2d_backward(b, st, din, dw, db, dout, in, w, g, ws, wsb, err);
}

static dq_status s_c_lin_f(dq_backend_t *b, dq_tensor *out, const dq_tensor *in,
                           const dq_tensor *w, const dq_tensor *bias, bool eval, void *ws,
                           size_t wsb, dq_err *err)
{
    s_cnt(b)->calls[S_LIN_F]++;
    return s_cnt(b)->cpu->linear_forward(b, out, in, w, bias, eval, ws, wsb, err);
}

static dq_status s_c_lin_b(dq_backend_t *b, dq_tensor *din, dq_tensor *dw, dq_tensor *db,
                           const dq_tensor *dout, const dq_tensor *in, const dq_tensor *w,
                           dq_err *err)
{
    s_cnt(b)->calls[S_LIN_B]++;
    return s_cnt(b)->cpu->linear_backward(b, din, dw, db, dout, in, w, err);
}

static dq_status s_c_relu_f(dq_backend_t *b, dq_tensor *out, const dq_tensor *in, dq_err *err)
{
    s_cnt(b)->calls[S_RELU_F]++;
    return s_cnt(b)->cpu->relu_forward(b, out, in, err);
}

static dq_status s_c_relu_b(dq_backend_t *b, dq_tensor *din, const dq_tensor *dout,
                            const dq_tensor *out, bool set, dq_err *err)
{
    s_cnt(b)->calls[S_RELU_B]++;
    if (set && !(s_cnt(b)->ops.caps & DQ_BK_SET_GRAD)) fail_msg("relu: set without the cap");
    return s_cnt(b)->cpu->relu_backward(b, din, dout, out, set, err);
}

static dq_status s_c_pool_f(dq_backend_t *b, dq_tensor *out, int32_t *am, const dq_tensor *in,
                            int k, int s, int pad, dq_err *err)
{
    s_cnt(b)->calls[S_POOL_F]++;
    return s_cnt(b)->cpu->maxpool2d_forward(b, out, am, in, k, s, pad, err);
}

static dq_status s_c_pool_b(dq_backend_t *b, dq_tensor *din, const dq_tensor *dout,
                            const int32_t *am, int k, int s, int pad, bool set, dq_err *err)
{
    s_cnt(b)->calls[S_POOL_B]++;
    if (set && !(s_cnt(b)->ops.caps & DQ_BK_SET_GRAD)) fail_msg("maxpool: set without the cap");
    return s_cnt(b)->cpu->maxpool2d_backward(b, din, dout, am, k, s, pad, set, err);
}

static dq_status s_c_fused_b(dq_backend_t *b, dq_tensor *din, const dq_tensor *dout,
                             const int32_t *am, const dq_tensor *relu_out, dq_err *err)
{
    s_cnt(b)->calls[S_FUSED_B]++;
    return s_cnt(b)->cpu->maxpool2d_relu_backward_set(b, din, dout, am, relu_out, err);
}

static dq_status s_c_pooled_b(dq_backend_t *b, dq_tensor *din, const dq_tensor *dout,
                              const int32_t *am, const dq_tensor *pool_out, int k, int st,
                              dq_err *err)
{
    s_cnt(b)->calls[S_POOLED_B]++;
    return s_cnt(b)->cpu->maxpool2d_relu_backward_pooled(b, din, dout, am, pool_out, k, st, err);
}

static dq_status s_c_convf_f(dq_backend_t *b, dq_tensor *out, dq_tensor *pool_out, int32_t *am,
                             const dq_tensor *in, const dq_tensor *w, const dq_tensor *bias,
                             const dq_backend_conv *g, int pk, int ps, bool discard, void *ws,
                             size_t wsb, dq_err *err)
{
    s_cnt(b)->calls[S_CONVF_F]++;
    if (g->p.groups > 1) fail_msg("fused forward of a grouped conv");
    return s_cnt(b)->cpu->conv2d_fused_forward(b, out, pool_out, am, in, w, bias, g, pk, ps,
                                               discard, ws, wsb, err);
}

static dq_status s_c_convf_b(dq_backend_t *b, dq_tensor *din, dq_tensor *dw, dq_tensor *db,
                             const dq_tensor *pd, const int32_t *am, const dq_tensor *po,
                             const dq_tensor *in, const dq_tensor *w, const dq_backend_conv *g,
                             int pk, int ps, void *ws, size_t wsb, dq_err *err)
{
    s_cnt(b)->calls[S_CONVF_B]++;
    return s_cnt(b)->cpu->conv2d_relu_maxpool_backward(b, din, dw, db, pd, am, po, in, w, g, pk,
                                                       ps, ws, wsb, err);
}

static dq_status s_c_drop_f(dq_backend_t *b, dq_tensor *out, float *mask, const dq_tensor *in,
                            float p, bool train, dq_rng *rng, dq_err *err)
{
    s_cnt(b)->calls[S_DROP_F]++;
    return s_cnt(b)->cpu->dropout_forward(b, out, mask, in, p, train, rng, err);
}

static dq_status s_c_drop_b(dq_backend_t *b, dq_tensor *din, const dq_tensor *dout,
                            const float *mask, float p, dq_err *err)
{
    s_cnt(b)->calls[S_DROP_B]++;
    return s_cnt(b)->cpu->dropout_backward(b, din, dout, mask, p, err);
}

static dq_status s_c_adam(dq_backend_t *b, float *p, const float *g, float *m, float *v,
                          int64_t n, int64_t step, const dq_adam_config *cfg, dq_err *err)
{
    s_cnt(b)->calls[S_ADAM]++;
    return s_cnt(b)->cpu->adam_step(b, p, g, m, v, n, step, cfg, err);
}

static void s_counting_init(s_counting *c, bool set_grad, bool fused)
{
    memset(c, 0, sizeof *c);
    c->cpu = dq_backend_cpu()->ops;
    c->ops = *c->cpu;
    c->ops.name = "counting";
    c->ops.destroy = s_c_destroy;
    c->ops.conv2d_forward = s_c_conv_f;
    c->ops.conv2d_backward = s_c_conv_b;
    c->ops.linear_forward = s_c_lin_f;
    c->ops.linear_backward = s_c_lin_b;
    c->ops.relu_forward = s_c_relu_f;
    c->ops.relu_backward = s_c_relu_b;
    c->ops.maxpool2d_forward = s_c_pool_f;
    c->ops.maxpool2d_backward = s_c_pool_b;
    c->ops.maxpool2d_relu_backward_set = set_grad ? s_c_fused_b : NULL;
    /* unless fused: the unfused walk, no pooled relu backward, no conv
     * fusions and no eval relu epilogue (the reference net on the CPU table
     * takes them: same bits) */
    c->ops.maxpool2d_relu_backward_pooled = NULL;
    c->ops.conv_fusions = NULL;
    c->ops.conv2d_fused_forward = NULL;
    c->ops.conv2d_relu_maxpool_backward = NULL;
    if (fused) { /* the CPU's fusions, counted */
        c->ops.maxpool2d_relu_backward_pooled = s_c_pooled_b;
        c->ops.conv_fusions = c->cpu->conv_fusions;
        c->ops.conv2d_fused_forward = s_c_convf_f;
        c->ops.conv2d_relu_maxpool_backward = s_c_convf_b;
    }
    c->ops.dropout_forward = s_c_drop_f;
    c->ops.dropout_backward = s_c_drop_b;
    c->ops.adam_step = s_c_adam;
    if (!set_grad) c->ops.caps &= ~(unsigned)DQ_BK_SET_GRAD;
    if (!fused) c->ops.caps &= ~(unsigned)DQ_BK_EVAL_CONV_RELU;
    c->base.ops = &c->ops;
}

static dq_net_t *s_shipped(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/models/%s.model", DQ_TOP_SRCDIR, name);
    dq_net_t *net = NULL;
    dq_err err = {{0}};
    if (dq_net_load(&net, path, &err) != DQ_OK) fail_msg("%s: %s", path, err.msg);
    return net;
}

/* One training step (forward, fixed output gradient, backward, Adam) and an
 * eval forward; returns the logits of the eval forward in *logits and the
 * gradients in grads (caller frees both). */
static void s_step(dq_net_t *net, const float *x, int64_t n, float **logits, float **grads)
{
    dq_err err = {{0}};
    const dq_net_input *ip = dq_net_input_spec(net);
    dq_tensor in = dq_tensor_view4((float *)x, n, ip->channels, ip->height, ip->width);
    dq_rng dr;
    dq_rng_seed(&dr, 3);
    int64_t np = dq_net_param_floats(net);
    float *m = calloc((size_t)np, sizeof(float)), *v = calloc((size_t)np, sizeof(float));
    assert_non_null(m), assert_non_null(v);
    S_OK(dq_net_plan(net, n, &err));
    dq_net_zero_grad(net);
    S_OK(dq_net_forward(net, &in, true, &dr, &err));
    dq_tensor *g = dq_net_output_grad(net, "logits");
    for (int64_t i = 0; i < dq_tensor_numel(g); i++) g->data[i] = 0.05f * (float)(i % 11) - 0.2f;
    S_OK(dq_net_backward(net, &err));
    *grads = malloc(sizeof(float) * (size_t)np);
    assert_non_null(*grads);
    memcpy(*grads, dq_net_grads(net), sizeof(float) * (size_t)np);
    dq_adam_config a = dq_adam_defaults();
    S_OK(dq_net_adam_step(net, m, v, 1, &a, &err));
    S_OK(dq_net_forward(net, &in, false, NULL, &err));
    const dq_tensor *o = dq_net_output(net, "logits");
    *logits = malloc(sizeof(float) * (size_t)dq_tensor_numel(o));
    assert_non_null(*logits);
    memcpy(*logits, o->data, sizeof(float) * (size_t)dq_tensor_numel(o));
    free(m);
    free(v);
}

static void s_check_counting(bool set_grad, bool fused)
{
    dq_err err = {{0}};
    dq_rng r;
    dq_rng_seed(&r, 11);
    dq_net_t *ref = s_shipped("lightnn-fmnist"), *net = s_shipped("lightnn-fmnist");
    dq_net_init_params(ref, &r);
    memcpy(dq_net_params(net), dq_net_params(ref),
           sizeof(float) * (size_t)dq_net_param_floats(ref));
    s_counting c;
    s_counting_init(&c, set_grad, fused);
    S_OK(dq_net_use_backend(net, &c.base, true, &err));
    assert_ptr_equal(dq_net_backend(net), &c.base);
    assert_ptr_equal(dq_net_backend(ref), dq_backend_cpu());
    enum { N = 6 };
    float *x = malloc(sizeof(float) * N * 784);
    assert_non_null(x);
    dq_test_fill(x, NULL, N * 784, &r, -1, 1);
    float *l_ref, *g_ref, *l_got, *g_got;
    s_step(ref, x, N, &l_ref, &g_ref);
    s_step(net, x, N, &l_got, &g_got);
    int64_t np = dq_net_param_floats(net);
    assert_memory_equal(g_got, g_ref, sizeof(float) * (size_t)np);
    assert_memory_equal(l_got, l_ref, sizeof(float) * N * 10);
    assert_memory_equal(dq_net_params(net), dq_net_params(ref), sizeof(float) * (size_t)np);
    /* lightnn: conv relu pool conv relu pool flatten linear relu dropout linear;
     * two forwards (train + eval), one backward, one Adam step. */
    assert_int_equal(c.calls[S_LIN_F], 4);
    assert_int_equal(c.calls[S_DROP_F], 2);
    assert_int_equal(c.calls[S_LIN_B], 2);
    assert_int_equal(c.calls[S_DROP_B], 1);
    assert_int_equal(c.calls[S_ADAM], 1);
    if (fused) {
        /* training: both conv -> relu -> pool chains are one op each way
         * (28x28 and 14x14 planes: per image); eval: each conv does its
         * relu (the classifier's relu runs on its own in both) */
        assert_int_equal(c.calls[S_CONVF_F], 2);
        assert_int_equal(c.calls[S_CONVF_B], 2);
        assert_int_equal(c.calls[S_CONV_F], 2);
        assert_int_equal(c.calls[S_CONV_RELU_F], 2);
        assert_int_equal(c.calls[S_RELU_F], 2);
        assert_int_equal(c.calls[S_POOL_F], 2);
        assert_int_equal(c.calls[S_CONV_B], 0);
        assert_int_equal(c.calls[S_FUSED_B] + c.calls[S_POOLED_B] + c.calls[S_POOL_B], 0);
        assert_int_equal(c.calls[S_RELU_B], 1);
        dq_net_destroy(&net);
        dq_net_destroy(&ref);
        free(x), free(l_ref), free(g_ref), free(l_got), free(g_got);
        return;
    }
    assert_int_equal(c.calls[S_CONVF_F] + c.calls[S_CONVF_B] + c.calls[S_POOLED_B], 0);
    assert_int_equal(c.calls[S_CONV_RELU_F], 0);
    assert_int_equal(c.calls[S_CONV_F], 4);
    assert_int_equal(c.calls[S_LIN_F], 4);
    assert_int_equal(c.calls[S_RELU_F], 6);
    assert_int_equal(c.calls[S_POOL_F], 4);
    assert_int_equal(c.calls[S_DROP_F], 2);
    assert_int_equal(c.calls[S_CONV_B], 2);
    assert_int_equal(c.calls[S_LIN_B], 2);
    assert_int_equal(c.calls[S_DROP_B], 1);
    assert_int_equal(c.calls[S_ADAM], 1);
    if (set_grad) { /* both relu->pool pairs fused; the classifier relu on its own */
        assert_int_equal(c.calls[S_FUSED_B], 2);
        assert_int_equal(c.calls[S_POOL_B], 0);
        assert_int_equal(c.calls[S_RELU_B], 1);
    } else {
        assert_int_equal(c.calls[S_FUSED_B], 0);
        assert_int_equal(c.calls[S_POOL_B], 2);
        assert_int_equal(c.calls[S_RELU_B], 3);
    }
    dq_net_destroy(&net);
    assert_int_equal(c.destroyed, 1); /* the net owned the backend */
    dq_net_destroy(&ref);
    free(x), free(l_ref), free(g_ref), free(l_got), free(g_got);
}

static void test_walk_calls_the_backend_table(void **state)
{
    (void)state;
    s_check_counting(true, false);
}

/* The CPU's training fusions are table entries too: LightNN's two conv ->
 * relu -> maxpool chains take them (and give the unfused bits), and its
 * eval convs do their relus (the same bits as the unfused eval walk of the
 * other two tests). */
static void test_walk_takes_the_fusions(void **state)
{
    (void)state;
    s_check_counting(true, true);
}

static void test_without_overwriting_backward_same_bits(void **state)
{
    (void)state;
    s_check_counting(false, false);
}

/* No CUDA here (or no CUDA build): a clean error, and the net still runs. */
static void test_cuda_unavailable_is_clean(void **state)
{
    (void)state;
    dq_err err = {{0}};
    dq_device dev;
    if (dq_backend_select("cuda:0", &dev, &err) == DQ_OK) skip(); /* a usable GPU: test_cuda's */
    dq_rng r;
    dq_rng_seed(&r, 2);
    dq_net_t *net = s_small_net(&r);
    dq_status st = dq_net_set_device(net, (dq_device){DQ_DEVICE_CUDA, 0}, true, 1, &err);
    assert_int_not_equal(st, DQ_OK);
    assert_ptr_equal(dq_net_backend(net), dq_backend_cpu());
    S_OK(dq_net_plan(net, 2, &err));
    float x[2 * 2 * 7 * 6] = {0};
    dq_tensor in = dq_tensor_view4(x, 2, 2, 7, 6);
    S_OK(dq_net_forward(net, &in, false, NULL, &err));
    dq_net_destroy(&net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_walk_equals_direct_ops),
        cmocka_unit_test(test_walk_calls_the_backend_table),
        cmocka_unit_test(test_without_overwriting_backward_same_bits),
        cmocka_unit_test(test_walk_takes_the_fusions),
        cmocka_unit_test(test_cuda_unavailable_is_clean),
    };
    return cmocka_run_group_tests_name("net_backend", tests, NULL, NULL);
}
