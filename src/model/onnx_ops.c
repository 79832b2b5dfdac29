/* onnx_ops.c - one mapping per supported ONNX operator type.
 *
 * Each mapping reads the current node's inputs and attributes, refuses in
 * one line what the model format cannot express (dilation, asymmetric
 * padding, ceil_mode, non-square kernels, batch-mixing reshapes, ...),
 * then emits a layer (with its parameters re-laid out as PyTorch's) or
 * renames a value. The set is what torch.onnx.export writes for
 * convolutional classifiers at opsets 11 to 17, plus the older attribute
 * forms of Clip and BatchNormalization:
 *
 *   Conv -> conv2d (groups)      BatchNormalization -> batchnorm2d
 *   Relu -> relu                 Clip -> relu6 / clip (relu when [0, inf))
 *   MaxPool -> maxpool2d         AveragePool -> avgpool2d
 *   GlobalAveragePool -> global_avgpool
 *   Add -> add, or the bias of a preceding MatMul (x @ W + b)
 *   Gemm, MatMul -> linear       Flatten, Reshape to [N, -1] -> flatten
 *   Identity, Dropout -> the same value; Constant -> a constant
 *   Pad (zeros on H, W) -> the padding of the Conv / AveragePool reading it
 *     (torch writes AvgPool2d(count_include_pad=True) as Pad + AveragePool)
 */
#include "model/onnx_int.h"

#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_MAX_K 4096 /* bound on kernel, stride and padding from the file */

static dq_status s_image(dq_onnx_ctx *c, const dq_onnx_value *x, dq_err *err)
{
    if (x->kind == DQ_ONNX_V_CONST)
        return dq_onnx_node_fail(c, err, DQ_ERR_UNSUPPORTED, "input '%.64s' is a constant",
                                 x->name);
    if (x->rank != 3)
        return dq_onnx_node_fail(c, err, DQ_ERR_UNSUPPORTED, "needs an [N, C, H, W] input; "
                                 "'%.64s' is [N, %lld]", x->name, (long long)x->dims[0]);
    return DQ_OK;
}

static dq_status s_computed(dq_onnx_ctx *c, const dq_onnx_value *x, dq_err *err)
{
    if (x->kind == DQ_ONNX_V_CONST)
        return dq_onnx_node_fail(c, err, DQ_ERR_UNSUPPORTED, "input '%.64s' is a constant "
                                 "(constant folding is not done here)", x->name);
    return DQ_OK;
}

/* A 2-d attribute that must hold one value twice (kernel_shape, strides):
 * *v = def when absent. */
static dq_status s_square(dq_onnx_ctx *c, const char *name, int64_t def, int64_t lo,
                          int64_t *v, dq_err *err)
{
    int64_t a[4];
    int n;
    DQ_TRY(dq_onnx_attr_ints(c, name, a, 4, &n, err));
    *v = def;
    if (n < 0) return DQ_OK;
    if (n != 2 || a[0] != a[1])
        return dq_onnx_node_fail(c, err, DQ_ERR_UNSUPPORTED, "%s must be two equal values "
                                 "(square, 2-d)", name);
    if (a[0] < lo || a[0] > S_MAX_K)
        return dq_onnx_node_fail(c, err, DQ_ERR_UNSUPPORTED, "%s %lld out of range", name,
                                 (long long)a[0]);
    *v = a[0];
    return DQ_OK;
}

static dq_status s_no_dilation(dq_onnx_ctx *c, dq_err *err)
{
    int64_t d[4];
    int n;
    DQ_TRY(dq_onnx_attr_ints(c, "dilations", d, 4, &n, err));
    for (int i = 0; i < n; i++)
        if (d[i] != 1)
            return dq_onnx_node_fail(c, err, DQ_ERR_UNSUPPORTED, "dilation %lld (only 1)",
                                     (long long)d[i]);
    return DQ_OK;
}

/* Symmetric padding from pads / auto_pad, given kernel k and stride s. */
static dq_status s_pads(dq_onnx_ctx *c, int64_t k, int64_t s, int64_t *pad, dq_err *err)
{
    char ap[32];
    int64_t p[4];
    int n;
    DQ_TRY(dq_onnx_attr_string(c, "auto_pad", ap, sizeof ap, err));
    DQ_TRY(dq_onnx_attr_ints(c, "pads", p, 4, &n, err));
    *pad = 0;
    if (ap[0] && strcmp(ap, "NOTSET") != 0) {
        if (n > 0 && (p[0] || p[1] || p[2] || p[3]))
            return dq_onnx_node_fail(c, err, DQ_ERR_FORMAT, "both auto_pad and pads");
        if (strcmp(ap, "VALID") == 0) return DQ_OK;
        if ((strcmp(ap, "SAME_UPPER") == 0 || strcmp(ap, "SAME_LOWER") == 0) && s == 1 &&
            k % 2 == 1) {
            *pad = (k - 1) / 2;
            return DQ_OK;
        }
        return dq_onnx_node_fail(c, err, DQ_ERR_UNSUPPORTED, "auto_pad %s (only symmetric "
                                 "padding: stride 1 and an odd kernel)", ap);
    }
    if (n < 0) return DQ_OK;
    if (n != 4 || p[0] != p[1] || p[0] != p[2] || p[0] != p[3])
        return dq_onnx_node_fail(c, err, DQ_ERR_UNSUPPORTED, "pads must be 4 equal values "
                                 "(symmetric padding)");
    if (p[0] < 0 || p[0] > S_MAX_K)
        return dq_onnx_node_fail(c, err, DQ_ERR_UNSUPPORTED, "padding %lld out of range",
                                 (long long)p[0]);
    *pad = p[0];
    return DQ_OK;
}

/* Output size of a window op along a dimension of size in (floor mode). */
static dq_status s_out_size(dq_onnx_ctx *c, int64_t in, int64_t k, int64_t s, int64_t p,
                            int64_t *out, dq_err *err)
{
    if (in + 2 * p < k)
        return dq_onnx_node_fail(c, err, DQ_ERR_SHAPE, "kernel %lld does not fit input size "
                                 "%lld with padding %lld", (long long)k, (long long)in,
                                 (long long)p);
    *out = (in + 2 * p - k) / s + 1;
    return DQ_OK;
}

static dq_status s_one_output(dq_onnx_ctx *c, const char *what, dq_err *err)
{
    for (size_t i = 1; i < c->node->n_output; i++)
        if (c->node->output[i][0] && dq_onnx_consumers(c, c->node->output[i]) > 0)
            return dq_onnx_node_fail(c, err, DQ_ERR_UNSUPPORTED, "output %zu (%s) is used",
                                     i, what);
    return DQ_OK;
}

/* Reads a constant of want floats (dims [want] or [1, want] and the like). */
static dq_status s_floats(dq_onnx_ctx *c, int input, int64_t want, float **out, dq_err *err)
{
    const Onnx__TensorProto *t;
    DQ_TRY(dq_onnx_in_const(c, input, &t, err));
    return dq_onnx_tensor_floats(c, t, want, out, NULL, err);
}

/* ---- the mappings ---- */

static dq_status s_conv(dq_onnx_ctx *c, dq_err *err)
{
    dq_onnx_value *x;
    const Onnx__TensorProto *w;
    DQ_TRY(dq_onnx_in(c, 0, &x, err));
    DQ_TRY(s_image(c, x, err));
    DQ_TRY(dq_onnx_in_const(c, 1, &w, err));
    if (w->n_dims != 4)
        return dq_onnx_node_fail(c, err, DQ_ERR_UNSUPPORTED, "weight has %zu dims (a 2-d "
                                 "convolution has 4)", w->n_dims);
    int64_t oc = w->dims[0], icg = w->dims[1], k = w->dims[2], g, ks, s, p, oh = 0, ow = 0;
    if (w->dims[2] != w->dims[3])
        return dq_onnx_node_fail(c, err, DQ_ERR_UNSUPPORTED, "kernel %lldx%lld is not square",
                                 (long long)w->dims[2], (long long)w->dims[3]);
    int64_t wn;
    DQ_TRY(dq_onnx_tensor_numel(c, w, &wn, err)); /* bounds the product of the dims */
    if (oc < 1 || icg < 1 || k < 1 || k > S_MAX_K)
        return dq_onnx_node_fail(c, err, DQ_ERR_UNSUPPORTED, "weight shape out of range");
    DQ_TRY(s_square(c, "kernel_shape", k, 1, &ks, err));
    if (ks != k)
        return dq_onnx_node_fail(c, err, DQ_ERR_FORMAT, "kernel_shape %lld but the weight's "
                                 "kernel is %lld", (long long)ks, (long long)k);
    DQ_TRY(dq_onnx_attr_int(c, "group", 1, &g, err));
    DQ_TRY(s_no_dilation(c, err));
    DQ_TRY(s_square(c, "strides", 1, 1, &s, err));
    DQ_TRY(s_pads(c, k, s, &p, err));
    p += x->pad; /* zeros from a Pad node: the same as the conv's own */
    if (g < 1 || g > x->dims[0] || icg * g != x->dims[0] || oc % g != 0)
        return dq_onnx_node_fail(c, err, DQ_ERR_SHAPE, "weight [%lld, %lld, %lld, %lld] with "
                                 "group %lld does not fit %lld input channels", (long long)oc,
                                 (long long)icg, (long long)k, (long long)k, (long long)g,
                                 (long long)x->dims[0]);
    DQ_TRY(s_out_size(c, x->dims[1], k, s, p, &oh, err));
    DQ_TRY(s_out_size(c, x->dims[2], k, s, p, &ow, err));
    int idx;
    DQ_TRY(dq_onnx_add_layer(c, DQ_ONNX_L_CONV2D, x->layer, w->name, &idx, err));
    dq_onnx_layer *l = &c->layers[idx];
    l->in = x->dims[0];
    l->out = oc;
    l->kernel = (int)k;
    l->stride = (int)s;
    l->padding = (int)p;
    l->groups = (int)g;
    l->bias = dq_onnx_has_in(c, 2);
    float *data;
    DQ_TRY(dq_onnx_tensor_floats(c, w, wn, &data, NULL, err));
    int64_t wshape[4] = {oc, icg, k, k};
    DQ_TRY(dq_onnx_add_param(c, idx, "weight", 4, wshape, data, err));
    if (c->layers[idx].bias) {
        DQ_TRY(s_floats(c, 2, oc, &data, err));
        DQ_TRY(dq_onnx_add_param(c, idx, "bias", 1, &oc, data, err));
    }
    int64_t dims[3] = {oc, oh, ow};
    return dq_onnx_def_layer_out(c, idx, 3, dims, err);
}

static dq_status s_batchnorm(dq_onnx_ctx *c, dq_err *err)
{
    dq_onnx_value *x;
    DQ_TRY(dq_onnx_in(c, 0, &x, err));
    DQ_TRY(s_image(c, x, err));
    int64_t train, spatial;
    float eps;
    DQ_TRY(dq_onnx_attr_int(c, "training_mode", 0, &train, err));
    DQ_TRY(dq_onnx_attr_int(c, "spatial", 1, &spatial, err));
    DQ_TRY(dq_onnx_attr_float(c, "epsilon", 1e-5f, &eps, err));
    if (train != 0)
        return dq_onnx_node_fail(c, err, DQ_ERR_UNSUPPORTED, "training_mode=1 (export the "
                                 "model in eval mode)");
    if (spatial != 1)
        return dq_onnx_node_fail(c, err, DQ_ERR_UNSUPPORTED, "spatial=0");
    if (!(eps > 0) || eps > 1)
        return dq_onnx_node_fail(c, err, DQ_ERR_UNSUPPORTED, "epsilon %g", (double)eps);
    DQ_TRY(s_one_output(c, "training statistics", err));
    int64_t ch = x->dims[0];
    int idx;
    DQ_TRY(dq_onnx_add_layer(c, DQ_ONNX_L_BATCHNORM2D, x->layer,
                             dq_onnx_has_in(c, 1) ? c->node->input[1] : NULL, &idx, err));
    c->layers[idx].in = ch;
    c->layers[idx].eps = eps;
    static const char *const names[4] = {"weight", "bias", "running_mean", "running_var"};
    for (int i = 0; i < 4; i++) {
        float *data;
        DQ_TRY(s_floats(c, i + 1, ch, &data, err));
        if (i == 3)
            for (int64_t j = 0; j < ch; j++)
                if (data[j] < 0) {
                    free(data);
                    return dq_onnx_node_fail(c, err, DQ_ERR_FORMAT, "negative variance");
                }
        DQ_TRY(dq_onnx_add_param(c, idx, names[i], 1, &ch, data, err));
    }
    return dq_onnx_def_layer_out(c, idx, 3, x->dims, err);
}

/* A layer of one type that keeps its input's shape. */
static dq_status s_pointwise(dq_onnx_ctx *c, dq_onnx_ltype type, float lo, float hi,
                             dq_err *err)
{
    dq_onnx_value *x;
    DQ_TRY(dq_onnx_in(c, 0, &x, err));
    DQ_TRY(s_computed(c, x, err));
    int idx;
    DQ_TRY(dq_onnx_add_layer(c, type, x->layer, NULL, &idx, err));
    c->layers[idx].lo = lo;
    c->layers[idx].hi = hi;
    return dq_onnx_def_layer_out(c, idx, x->rank, x->dims, err);
}

static dq_status s_relu(dq_onnx_ctx *c, dq_err *err)
{
    return s_pointwise(c, DQ_ONNX_L_RELU, 0, 0, err);
}

/* A Clip bound: input i (opset >= 11) or the attribute (older opsets). */
static dq_status s_clip_bound(dq_onnx_ctx *c, int i, const char *attr, float def, float *v,
                              dq_err *err)
{
    *v = def;
    if (c->opset < 11) {
        DQ_TRY(dq_onnx_attr_float(c, attr, def, v, err));
    } else if (dq_onnx_has_in(c, i)) {
        float *data;
        DQ_TRY(s_floats(c, i, 1, &data, err));
        *v = data[0];
        free(data);
    }
    if (*v > FLT_MAX) *v = FLT_MAX;
    if (*v < -FLT_MAX) *v = -FLT_MAX;
    return DQ_OK;
}

static dq_status s_clip(dq_onnx_ctx *c, dq_err *err)
{
    float lo, hi;
    DQ_TRY(s_clip_bound(c, 1, "min", -FLT_MAX, &lo, err));
    DQ_TRY(s_clip_bound(c, 2, "max", FLT_MAX, &hi, err));
    if (!(lo <= hi))
        return dq_onnx_node_fail(c, err, DQ_ERR_UNSUPPORTED, "min %g > max %g", (double)lo,
                                 (double)hi);
    if (lo == 0 && hi == FLT_MAX) return s_pointwise(c, DQ_ONNX_L_RELU, 0, 0, err);
    return s_pointwise(c, DQ_ONNX_L_CLIP, lo, hi, err);
}

static dq_status s_pool(dq_onnx_ctx *c, dq_onnx_ltype type, dq_err *err)
{
    dq_onnx_value *x;
    DQ_TRY(dq_onnx_in(c, 0, &x, err));
    DQ_TRY(s_image(c, x, err));
    int64_t k, s, p, ceil, cip, oh = 0, ow = 0;
    DQ_TRY(s_square(c, "kernel_shape", 0, 1, &k, err));
    if (k == 0) return dq_onnx_node_fail(c, err, DQ_ERR_FORMAT, "no kernel_shape");
    DQ_TRY(s_square(c, "strides", 1, 1, &s, err));
    DQ_TRY(s_pads(c, k, s, &p, err));
    DQ_TRY(s_no_dilation(c, err));
    DQ_TRY(dq_onnx_attr_int(c, "ceil_mode", 0, &ceil, err));
    DQ_TRY(dq_onnx_attr_int(c, "count_include_pad", 0, &cip, err));
    if (ceil != 0)
        return dq_onnx_node_fail(c, err, DQ_ERR_UNSUPPORTED, "ceil_mode=1 (only floor)");
    if (x->pad) { /* torch writes AvgPool2d(count_include_pad=True) as Pad + AveragePool */
        if (p && !cip)
            return dq_onnx_node_fail(c, err, DQ_ERR_UNSUPPORTED, "padding both from a Pad and "
                                     "excluded from the average");
        p += x->pad;
        cip = 1;
    }
    if (2 * p > k)
        return dq_onnx_node_fail(c, err, DQ_ERR_UNSUPPORTED, "padding %lld is more than half "
                                 "the kernel %lld", (long long)p, (long long)k);
    DQ_TRY(s_one_output(c, "Indices", err));
    DQ_TRY(s_out_size(c, x->dims[1], k, s, p, &oh, err));
    DQ_TRY(s_out_size(c, x->dims[2], k, s, p, &ow, err));
    int idx;
    DQ_TRY(dq_onnx_add_layer(c, type, x->layer, NULL, &idx, err));
    dq_onnx_layer *l = &c->layers[idx];
    l->kernel = (int)k;
    l->stride = (int)s;
    l->padding = (int)p;
    l->count_include_pad = cip != 0;
    int64_t dims[3] = {x->dims[0], oh, ow};
    return dq_onnx_def_layer_out(c, idx, 3, dims, err);
}

static dq_status s_maxpool(dq_onnx_ctx *c, dq_err *err)
{
    int64_t order;
    DQ_TRY(dq_onnx_attr_int(c, "storage_order", 0, &order, err));
    return s_pool(c, DQ_ONNX_L_MAXPOOL2D, err);
}

static dq_status s_avgpool(dq_onnx_ctx *c, dq_err *err)
{
    return s_pool(c, DQ_ONNX_L_AVGPOOL2D, err);
}

static dq_status s_gap(dq_onnx_ctx *c, dq_err *err)
{
    dq_onnx_value *x;
    DQ_TRY(dq_onnx_in(c, 0, &x, err));
    DQ_TRY(s_image(c, x, err));
    int idx;
    DQ_TRY(dq_onnx_add_layer(c, DQ_ONNX_L_GLOBAL_AVGPOOL, x->layer, NULL, &idx, err));
    int64_t dims[3] = {x->dims[0], 1, 1};
    return dq_onnx_def_layer_out(c, idx, 3, dims, err);
}

/* x @ W + b as exported for a linear layer on MatMul: the constant becomes
 * the bias of the linear layer x comes from, when nothing else reads it. */
static dq_status s_add_bias(dq_onnx_ctx *c, dq_onnx_value *x, int const_in, dq_err *err)
{
    dq_onnx_layer *l = x->kind == DQ_ONNX_V_LAYER ? &c->layers[x->layer] : NULL;
    int readers = 0;
    for (int i = 0; l && i < c->n_values; i++)
        if (c->values[i].kind == DQ_ONNX_V_LAYER && c->values[i].layer == x->layer)
            readers += dq_onnx_consumers(c, c->values[i].name);
    if (!l || l->type != DQ_ONNX_L_LINEAR || l->bias || readers != 1)
        return dq_onnx_node_fail(c, err, DQ_ERR_UNSUPPORTED, "adding a constant is supported "
                                 "only as the bias of a MatMul read by nothing else");
    float *data;
    DQ_TRY(s_floats(c, const_in, l->out, &data, err));
    l->bias = true;
    DQ_TRY(dq_onnx_add_param(c, x->layer, "bias", 1, &l->out, data, err));
    return dq_onnx_def_alias(c, x, err);
}

static dq_status s_add(dq_onnx_ctx *c, dq_err *err)
{
    dq_onnx_value *a, *b;
    DQ_TRY(dq_onnx_in(c, 0, &a, err));
    DQ_TRY(dq_onnx_in(c, 1, &b, err));
    if (a->kind == DQ_ONNX_V_CONST && b->kind != DQ_ONNX_V_CONST) return s_add_bias(c, b, 0, err);
    if (b->kind == DQ_ONNX_V_CONST && a->kind != DQ_ONNX_V_CONST) return s_add_bias(c, a, 1, err);
    DQ_TRY(s_computed(c, a, err));
    bool same = a->rank == b->rank;
    for (int i = 0; same && i < a->rank; i++) same = a->dims[i] == b->dims[i];
    if (!same)
        return dq_onnx_node_fail(c, err, DQ_ERR_UNSUPPORTED, "inputs of different shapes "
                                 "(no broadcasting)");
    int idx;
    DQ_TRY(dq_onnx_add_layer(c, DQ_ONNX_L_ADD, a->layer, NULL, &idx, err));
    c->layers[idx].from2 = b->layer;
    return dq_onnx_def_layer_out(c, idx, a->rank, a->dims, err);
}

/* linear in=k out=n from a constant weight: wt = [k, n] (transposed here)
 * or [n, k]; bias from input bias_in (-1: none). */
static dq_status s_linear(dq_onnx_ctx *c, const dq_onnx_value *x, const Onnx__TensorProto *w,
                          bool transposed, int bias_in, dq_err *err)
{
    if (x->rank != 1)
        return dq_onnx_node_fail(c, err, DQ_ERR_UNSUPPORTED, "needs a flat [N, F] input "
                                 "(flatten first)");
    if (w->n_dims != 2)
        return dq_onnx_node_fail(c, err, DQ_ERR_UNSUPPORTED, "weight has %zu dims (2 here)",
                                 w->n_dims);
    int64_t wn;
    DQ_TRY(dq_onnx_tensor_numel(c, w, &wn, err)); /* bounds k * n */
    int64_t k = transposed ? w->dims[1] : w->dims[0];
    int64_t n = transposed ? w->dims[0] : w->dims[1];
    if (k != x->dims[0] || k < 1 || n < 1)
        return dq_onnx_node_fail(c, err, DQ_ERR_SHAPE, "weight [%lld, %lld] does not fit %lld "
                                 "input features", (long long)w->dims[0], (long long)w->dims[1],
                                 (long long)x->dims[0]);
    int idx;
    DQ_TRY(dq_onnx_add_layer(c, DQ_ONNX_L_LINEAR, x->layer, w->name, &idx, err));
    c->layers[idx].in = k;
    c->layers[idx].out = n;
    c->layers[idx].bias = bias_in >= 0;
    float *data;
    DQ_TRY(dq_onnx_tensor_floats(c, w, wn, &data, NULL, err));
    if (!transposed) {
        float *t = malloc((size_t)(k * n) * sizeof *t);
        if (!t) {
            free(data);
            return dq_onnx_node_fail(c, err, DQ_ERR_NOMEM, "out of memory");
        }
        for (int64_t i = 0; i < k; i++)
            for (int64_t j = 0; j < n; j++) t[j * k + i] = data[i * n + j];
        free(data);
        data = t;
    }
    int64_t shape[2] = {n, k};
    DQ_TRY(dq_onnx_add_param(c, idx, "weight", 2, shape, data, err));
    if (bias_in >= 0) {
        DQ_TRY(s_floats(c, bias_in, n, &data, err));
        DQ_TRY(dq_onnx_add_param(c, idx, "bias", 1, &n, data, err));
    }
    return dq_onnx_def_layer_out(c, idx, 1, &n, err);
}

static dq_status s_gemm(dq_onnx_ctx *c, dq_err *err)
{
    dq_onnx_value *x;
    const Onnx__TensorProto *w;
    int64_t ta, tb;
    float alpha, beta;
    DQ_TRY(dq_onnx_in(c, 0, &x, err));
    DQ_TRY(s_computed(c, x, err));
    DQ_TRY(dq_onnx_in_const(c, 1, &w, err));
    DQ_TRY(dq_onnx_attr_int(c, "transA", 0, &ta, err));
    DQ_TRY(dq_onnx_attr_int(c, "transB", 0, &tb, err));
    DQ_TRY(dq_onnx_attr_float(c, "alpha", 1, &alpha, err));
    DQ_TRY(dq_onnx_attr_float(c, "beta", 1, &beta, err));
    bool bias = dq_onnx_has_in(c, 2);
    if (ta != 0) return dq_onnx_node_fail(c, err, DQ_ERR_UNSUPPORTED, "transA=1");
    if (alpha != 1 || (bias && beta != 1))
        return dq_onnx_node_fail(c, err, DQ_ERR_UNSUPPORTED, "alpha %g, beta %g (only 1)",
                                 (double)alpha, (double)beta);
    return s_linear(c, x, w, tb != 0, bias ? 2 : -1, err);
}

static dq_status s_matmul(dq_onnx_ctx *c, dq_err *err)
{
    dq_onnx_value *x;
    const Onnx__TensorProto *w;
    DQ_TRY(dq_onnx_in(c, 0, &x, err));
    DQ_TRY(s_computed(c, x, err));
    DQ_TRY(dq_onnx_in_const(c, 1, &w, err));
    return s_linear(c, x, w, false, -1, err);
}

/* Flatten to [N, F]: a flatten layer, or a new name for an already flat value. */
static dq_status s_to_flat(dq_onnx_ctx *c, const dq_onnx_value *x, dq_err *err)
{
    if (x->rank == 1) return dq_onnx_def_alias(c, x, err);
    int idx;
    DQ_TRY(dq_onnx_add_layer(c, DQ_ONNX_L_FLATTEN, x->layer, NULL, &idx, err));
    int64_t f = x->dims[0] * x->dims[1] * x->dims[2];
    return dq_onnx_def_layer_out(c, idx, 1, &f, err);
}

static dq_status s_flatten(dq_onnx_ctx *c, dq_err *err)
{
    dq_onnx_value *x;
    int64_t axis;
    DQ_TRY(dq_onnx_in(c, 0, &x, err));
    DQ_TRY(s_computed(c, x, err));
    DQ_TRY(dq_onnx_attr_int(c, "axis", 1, &axis, err));
    if (axis < 0) axis += x->rank + 1;
    if (axis != 1)
        return dq_onnx_node_fail(c, err, DQ_ERR_UNSUPPORTED, "axis %lld (only 1: keep the batch)",
                                 (long long)axis);
    return s_to_flat(c, x, err);
}

static dq_status s_reshape(dq_onnx_ctx *c, dq_err *err)
{
    dq_onnx_value *x;
    const Onnx__TensorProto *t;
    int64_t s[8], allowzero;
    int n;
    DQ_TRY(dq_onnx_in(c, 0, &x, err));
    DQ_TRY(s_computed(c, x, err));
    DQ_TRY(dq_onnx_in_const(c, 1, &t, err));
    DQ_TRY(dq_onnx_tensor_ints(c, t, s, 8, &n, err));
    DQ_TRY(dq_onnx_attr_int(c, "allowzero", 0, &allowzero, err));
    int64_t f = 1;
    for (int i = 0; i < x->rank; i++) f *= x->dims[i];
    /* The batch dimension: 0 (copy, unless allowzero), -1, or the exporter's
     * own batch size (x.view(x.size(0), -1) traced with a fixed batch). */
    bool batch_ok = n >= 1 && (s[0] == -1 || s[0] > 0 || (s[0] == 0 && !allowzero));
    if (batch_ok && n == 2 && ((s[1] == -1 && s[0] != -1) || s[1] == f))
        return s_to_flat(c, x, err);
    bool same = batch_ok && n == 1 + x->rank;
    for (int i = 0; same && i < x->rank; i++)
        same = s[i + 1] == x->dims[i] || (s[i + 1] == 0 && !allowzero);
    if (same) return dq_onnx_def_alias(c, x, err);
    char want[128];
    int len = 0;
    for (int i = 0; i < n && len < 100; i++)
        len += snprintf(want + len, sizeof want - (size_t)len, "%s%lld", i ? ", " : "",
                        (long long)s[i]);
    want[len < 0 ? 0 : len] = '\0';
    return dq_onnx_node_fail(c, err, DQ_ERR_UNSUPPORTED, "reshape to [%s] is not a flatten "
                             "to [N, %lld]", want, (long long)f);
}

/* Zero padding of H and W only, symmetric: remembered on the value and
 * taken up by the Conv or AveragePool that reads it (dq_onnx_in refuses
 * any other reader). */
static dq_status s_pad(dq_onnx_ctx *c, dq_err *err)
{
    dq_onnx_value *x;
    int64_t p[8];
    int n;
    float value = 0;
    char mode[32];
    DQ_TRY(dq_onnx_in(c, 0, &x, err));
    DQ_TRY(s_image(c, x, err));
    DQ_TRY(dq_onnx_attr_string(c, "mode", mode, sizeof mode, err));
    if (mode[0] && strcmp(mode, "constant") != 0)
        return dq_onnx_node_fail(c, err, DQ_ERR_UNSUPPORTED, "mode %s (only constant)", mode);
    if (c->opset < 11) {
        DQ_TRY(dq_onnx_attr_ints(c, "pads", p, 8, &n, err));
        DQ_TRY(dq_onnx_attr_float(c, "value", 0, &value, err));
    } else {
        const Onnx__TensorProto *t;
        DQ_TRY(dq_onnx_in_const(c, 1, &t, err));
        DQ_TRY(dq_onnx_tensor_ints(c, t, p, 8, &n, err));
        if (dq_onnx_has_in(c, 2)) {
            float *v;
            DQ_TRY(s_floats(c, 2, 1, &v, err));
            value = v[0];
            free(v);
        }
        if (dq_onnx_has_in(c, 3))
            return dq_onnx_node_fail(c, err, DQ_ERR_UNSUPPORTED, "axes input");
    }
    if (value != 0)
        return dq_onnx_node_fail(c, err, DQ_ERR_UNSUPPORTED, "pad value %g (only 0)",
                                 (double)value);
    if (n != 8 || p[0] || p[1] || p[4] || p[5] || p[2] != p[3] || p[2] != p[6] ||
        p[2] != p[7] || p[2] < 0 || p[2] > S_MAX_K)
        return dq_onnx_node_fail(c, err, DQ_ERR_UNSUPPORTED, "pads must be the same on every "
                                 "side of H and W, none on N and C");
    dq_onnx_value v = *x;
    v.pad += (int)p[2];
    return dq_onnx_def_alias(c, &v, err);
}

static dq_status s_identity(dq_onnx_ctx *c, dq_err *err)
{
    dq_onnx_value *x;
    DQ_TRY(dq_onnx_in(c, 0, &x, err));
    if (c->node->n_output < 1) return dq_onnx_node_fail(c, err, DQ_ERR_FORMAT, "no output");
    if (x->kind == DQ_ONNX_V_CONST) return dq_onnx_def_const(c, c->node->output[0], x->tensor,
                                                             err);
    return dq_onnx_def_alias(c, x, err);
}

static dq_status s_dropout(dq_onnx_ctx *c, dq_err *err)
{
    DQ_TRY(s_one_output(c, "mask", err));
    return s_identity(c, err);
}

static dq_status s_constant(dq_onnx_ctx *c, dq_err *err)
{
    const Onnx__AttributeProto *a = dq_onnx_attr(c, "value");
    if (!a || !a->t || c->node->n_attribute != 1)
        return dq_onnx_node_fail(c, err, DQ_ERR_UNSUPPORTED, "only a Constant with a tensor "
                                 "'value' is supported");
    if (c->node->n_output < 1)
        return dq_onnx_node_fail(c, err, DQ_ERR_FORMAT, "no output");
    return dq_onnx_def_const(c, c->node->output[0], a->t, err);
}

typedef struct {
    const char *op;
    dq_status (*map)(dq_onnx_ctx *c, dq_err *err);
} s_op;

static const s_op s_ops[] = {
    {"Conv", s_conv},           {"BatchNormalization", s_batchnorm},
    {"Relu", s_relu},           {"Clip", s_clip},
    {"MaxPool", s_maxpool},     {"AveragePool", s_avgpool},
    {"GlobalAveragePool", s_gap}, {"Add", s_add},
    {"Gemm", s_gemm},           {"MatMul", s_matmul},
    {"Flatten", s_flatten},     {"Reshape", s_reshape},
    {"Identity", s_identity},   {"Dropout", s_dropout},
    {"Constant", s_constant},   {"Pad", s_pad},
};

dq_status dq_onnx_map_node(dq_onnx_ctx *c, dq_err *err)
{
    for (size_t i = 0; i < sizeof s_ops / sizeof s_ops[0]; i++)
        if (strcmp(c->node->op_type, s_ops[i].op) == 0) return s_ops[i].map(c, err);
    return dq_onnx_node_fail(c, err, DQ_ERR_UNSUPPORTED, "unsupported operator %.48s "
                             "(supported: Conv, BatchNormalization, Relu, Clip, MaxPool, "
                             "AveragePool, GlobalAveragePool, Add, Gemm, MatMul, Flatten, "
                             "Reshape, Identity, Dropout, Constant, Pad)", c->node->op_type);
}
