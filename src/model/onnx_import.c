/* onnx_import.c - ONNX file -> model-file text + parameters -> net.
 *
 * The walk: decode the ModelProto (protoc-c), register the initializers as
 * constants and the one image input as the model input, then map the nodes
 * in file order (ONNX requires a topological order, which is exactly the
 * model format's "from= names an earlier layer"), each through
 * onnx_ops.c. A node either emits a layer or renames a value (Identity,
 * Dropout, a Reshape that changes nothing) or defines a constant. At the end
 * the layers are printed as model-file text with the input spec, the
 * normalisation from metadata_props and the graph outputs (the first also
 * as `logits`), and the parameters are handed out re-laid out for the net.
 *
 * Everything printed into the text is either a number this code formatted
 * or a name sanitised to [A-Za-z0-9_.-], so no string from the file can
 * inject a directive. The text is parsed by the ordinary model-file parser,
 * which re-checks every size.
 */
#include "model/onnx_int.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "model/model_file.h" /* DQ_MF_* limits */

#define S_MAX_OUTPUTS (DQ_MF_MAX_OUTPUTS - 1) /* + logits */
_Static_assert(DQ_ONNX_LAYER_NAME_MAX < DQ_MF_NAME_MAX, "layer names must fit model files");
#define S_MAX_HW 65536

/* ---- messages ---- */

dq_status dq_onnx_node_fail(dq_onnx_ctx *c, dq_err *err, dq_status st, const char *fmt, ...)
{
    char what[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (!c->node) return dq_fail(err, st, "%s: %s", c->source, what);
    char name[64], op[48];
    snprintf(name, sizeof name, "%s", c->node->name ? c->node->name : "");
    snprintf(op, sizeof op, "%s", c->node->op_type ? c->node->op_type : "?");
    for (char *p = name; *p; p++)
        if (*p < 0x20 || *p > 0x7e) *p = '?';
    for (char *p = op; *p; p++)
        if (*p < 0x20 || *p > 0x7e) *p = '?';
    return dq_fail(err, st, "%s: node '%s' (%s, opset %lld): %s", c->source, name, op,
                   (long long)c->opset, what);
}

/* ---- names ---- */

static bool s_name_char(int ch)
{
    return isalnum(ch) || ch == '_' || ch == '.' || ch == '-';
}

/* Sanitises s into dst (at most max chars): '/' becomes '.', other bytes
 * outside [A-Za-z0-9_.-] become '_', leading separators are dropped. */
static void s_sanitize(char *dst, const char *s, size_t max)
{
    size_t n = 0;
    if (s) {
        while (*s == '/' || *s == '.' || *s == '_') s++;
        for (; *s && n < max; s++) {
            unsigned char ch = (unsigned char)*s;
            dst[n++] = ch == '/' ? '.' : (ch < 0x80 && s_name_char(ch)) ? (char)ch : '_';
        }
    }
    dst[n] = '\0';
}

static bool s_layer_taken(const dq_onnx_ctx *c, const char *name)
{
    if (strcmp(name, "input") == 0) return true; /* reserved by from=input */
    for (int i = 0; i < c->n_layers; i++)
        if (strcmp(c->layers[i].name, name) == 0) return true;
    return false;
}

/* torch.onnx's scoped node name "/layer1/layer1.0/conv1/Conv" as a module
 * path plus the op: each scope repeats its parent's path when it is a
 * child of a container ("layer1" then "layer1.0"), so a component that
 * starts with the previous one + "." replaces it. Returns false for names
 * of another form. */
static bool s_scoped(char *dst, size_t size, const char *name)
{
    if (!name || name[0] != '/') return false;
    size_t n = 0, last = 0; /* last: where the previous component starts */
    const char *p = name + 1;
    while (*p) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        size_t prev = n - last;
        if (n > 0 && len > prev && strncmp(p, dst + last, prev) == 0 && p[prev] == '.') {
            n = last;                          /* replace the previous component */
        } else if (n > 0) {
            if (n + 1 >= size) break;
            dst[n++] = '.';
        }
        last = n;
        if (n + len >= size) len = size - 1 - n;
        memcpy(dst + n, p, len);
        n += len;
        dst[n] = '\0';
        if (!e) break;
        p = e + 1;
    }
    dst[n] = '\0';
    return n > 0;
}

/* A unique layer name for the current node (see dq_onnx_add_layer); "_2",
 * "_3", ... on a collision. */
static dq_status s_layer_name(dq_onnx_ctx *c, const char *weight, char *dst, dq_err *err)
{
    const Onnx__NodeProto *n = c->node;
    const size_t room = DQ_ONNX_LAYER_NAME_MAX - 6; /* for "_NNNNN" */
    char base[DQ_ONNX_LAYER_NAME_MAX + 1], path[256];
    size_t wl = weight ? strlen(weight) : 0;
    if (wl > 7 && wl - 7 <= room && strcmp(weight + wl - 7, ".weight") == 0) {
        snprintf(path, sizeof path, "%.*s", (int)(wl - 7), weight);
        s_sanitize(base, path, room);
    } else if (s_scoped(path, sizeof path, n->name)) {
        /* A layer with parameters is the module itself: drop the op
         * ("/layer1/layer1.0/conv1/Conv" -> layer1.0.conv1, also when the
         * exporter renamed the weight, e.g. after folding a batch norm). */
        char *dot = weight ? strrchr(path, '.') : NULL;
        if (dot && !strchr(n->name + 1, '/')) dot = NULL; /* "/Conv": no module */
        if (dot) *dot = '\0';
        s_sanitize(base, path, room);
    } else {
        s_sanitize(base, n->name, room);
    }
    if (!base[0] && n->n_output > 0) s_sanitize(base, n->output[0], room);
    if (!base[0]) s_sanitize(base, n->op_type, room);
    if (!base[0]) snprintf(base, sizeof base, "layer");
    snprintf(dst, DQ_ONNX_LAYER_NAME_MAX + 1, "%s", base);
    for (int k = 2; s_layer_taken(c, dst); k++) {
        if (k > 99999) return dq_onnx_node_fail(c, err, DQ_ERR_FORMAT, "too many layers named %s",
                                                base);
        snprintf(dst, DQ_ONNX_LAYER_NAME_MAX + 1, "%.57s_%d", base, k % 100000);
    }
    return DQ_OK;
}

/* ---- values ---- */

static dq_onnx_value *s_find(dq_onnx_ctx *c, const char *name)
{
    for (int i = c->n_values - 1; i >= 0; i--)
        if (strcmp(c->values[i].name, name) == 0) return &c->values[i];
    return NULL;
}

static dq_status s_grow(void **arr, int *cap, int need, size_t elem, dq_onnx_ctx *c,
                        dq_err *err)
{
    if (need <= *cap) return DQ_OK;
    int ncap = *cap ? *cap * 2 : 32;
    while (ncap < need) ncap *= 2;
    void *p = realloc(*arr, (size_t)ncap * elem);
    if (!p) return dq_onnx_node_fail(c, err, DQ_ERR_NOMEM, "out of memory");
    *arr = p;
    *cap = ncap;
    return DQ_OK;
}

static dq_status s_def(dq_onnx_ctx *c, const char *name, const dq_onnx_value *v, dq_err *err)
{
    if (!name || !name[0])
        return dq_onnx_node_fail(c, err, DQ_ERR_FORMAT, "a value without a name");
    if (s_find(c, name))
        return dq_onnx_node_fail(c, err, DQ_ERR_FORMAT, "value '%.64s' is defined twice", name);
    DQ_TRY(s_grow((void **)&c->values, &c->cap_values, c->n_values + 1, sizeof *c->values, c,
                  err));
    dq_onnx_value *d = &c->values[c->n_values++];
    *d = *v;
    d->name = name;
    return DQ_OK;
}

bool dq_onnx_has_in(const dq_onnx_ctx *c, int i)
{
    return i < (int)c->node->n_input && c->node->input[i][0] != '\0';
}

dq_status dq_onnx_in(dq_onnx_ctx *c, int i, dq_onnx_value **v, dq_err *err)
{
    if (!dq_onnx_has_in(c, i))
        return dq_onnx_node_fail(c, err, DQ_ERR_FORMAT, "input %d is missing", i);
    *v = s_find(c, c->node->input[i]);
    if (!*v)
        return dq_onnx_node_fail(c, err, DQ_ERR_FORMAT, "input '%.64s' is not defined before "
                                 "the node", c->node->input[i]);
    if ((*v)->pad && strcmp(c->node->op_type, "Conv") != 0 &&
        strcmp(c->node->op_type, "AveragePool") != 0 && strcmp(c->node->op_type, "Pad") != 0)
        return dq_onnx_node_fail(c, err, DQ_ERR_UNSUPPORTED, "reads the output of a Pad (only "
                                 "Conv and AveragePool take padded input)");
    return DQ_OK;
}

dq_status dq_onnx_in_const(dq_onnx_ctx *c, int i, const Onnx__TensorProto **t, dq_err *err)
{
    dq_onnx_value *v;
    DQ_TRY(dq_onnx_in(c, i, &v, err));
    if (v->kind != DQ_ONNX_V_CONST)
        return dq_onnx_node_fail(c, err, DQ_ERR_UNSUPPORTED, "input %d ('%.64s') must be a "
                                 "constant (an initializer)", i, v->name);
    *t = v->tensor;
    return DQ_OK;
}

int dq_onnx_consumers(const dq_onnx_ctx *c, const char *name)
{
    int k = 0;
    const Onnx__GraphProto *g = c->graph;
    for (size_t i = 0; i < g->n_node; i++)
        for (size_t j = 0; j < g->node[i]->n_input; j++)
            k += strcmp(g->node[i]->input[j], name) == 0;
    for (size_t i = 0; i < g->n_output; i++)
        k += g->output[i]->name && strcmp(g->output[i]->name, name) == 0;
    return k;
}

static dq_status s_out0(dq_onnx_ctx *c, const char **name, dq_err *err)
{
    if (c->node->n_output < 1 || !c->node->output[0][0])
        return dq_onnx_node_fail(c, err, DQ_ERR_FORMAT, "no output");
    *name = c->node->output[0];
    return DQ_OK;
}

dq_status dq_onnx_def_layer_out(dq_onnx_ctx *c, int idx, int rank, const int64_t *dims,
                                dq_err *err)
{
    const char *name = NULL;
    DQ_TRY(s_out0(c, &name, err));
    dq_onnx_value v = {.kind = DQ_ONNX_V_LAYER, .layer = idx, .rank = rank};
    for (int i = 0; i < rank; i++) v.dims[i] = dims[i];
    return s_def(c, name, &v, err);
}

dq_status dq_onnx_def_alias(dq_onnx_ctx *c, const dq_onnx_value *v, dq_err *err)
{
    const char *name = NULL;
    DQ_TRY(s_out0(c, &name, err));
    return s_def(c, name, v, err);
}

dq_status dq_onnx_def_const(dq_onnx_ctx *c, const char *name, const Onnx__TensorProto *t,
                            dq_err *err)
{
    dq_onnx_value v = {.kind = DQ_ONNX_V_CONST, .layer = DQ_ONNX_INPUT, .tensor = t};
    return s_def(c, name, &v, err);
}

/* ---- layers and parameters ---- */

dq_status dq_onnx_add_layer(dq_onnx_ctx *c, dq_onnx_ltype type, int from, const char *weight,
                            int *idx, dq_err *err)
{
    if (c->n_layers >= DQ_MF_MAX_LAYERS)
        return dq_onnx_node_fail(c, err, DQ_ERR_UNSUPPORTED, "more than %d layers",
                                 DQ_MF_MAX_LAYERS);
    DQ_TRY(s_grow((void **)&c->layers, &c->cap_layers, c->n_layers + 1, sizeof *c->layers, c,
                  err));
    dq_onnx_layer *l = &c->layers[c->n_layers];
    memset(l, 0, sizeof *l);
    DQ_TRY(s_layer_name(c, weight, l->name, err));
    l->type = type;
    l->from = from;
    l->from2 = DQ_ONNX_INPUT;
    l->groups = 1;
    l->eps = 1e-5f;
    *idx = c->n_layers++;
    return DQ_OK;
}

dq_status dq_onnx_add_param(dq_onnx_ctx *c, int layer, const char *suffix, int ndim,
                            const int64_t *shape, float *data, dq_err *err)
{
    dq_status st = s_grow((void **)&c->params, &c->cap_params, c->n_params + 1,
                          sizeof *c->params, c, err);
    if (st != DQ_OK) {
        free(data);
        return st;
    }
    dq_onnx_param *p = &c->params[c->n_params++];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s.%s", c->layers[layer].name, suffix);
    p->ndim = ndim;
    p->numel = 1;
    for (int i = 0; i < ndim; i++) {
        p->shape[i] = shape[i];
        p->numel *= shape[i];
    }
    p->data = data;
    return DQ_OK;
}

/* The shortest %g form of f that reads back as f ("0.485", not
 * "0.485000014"). */
static void s_fmt(char *buf, size_t size, float f)
{
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, size, "%.*g", prec, (double)f);
        if (strtof(buf, NULL) == f) return;
    }
}

/* ---- the model input, metadata and outputs ---- */

/* The graph's one non-initializer input: float [N, C, H, W], N free. */
static dq_status s_input(dq_onnx_ctx *c, int *ch, int *h, int *w, dq_err *err)
{
    const Onnx__GraphProto *g = c->graph;
    const Onnx__ValueInfoProto *in = NULL;
    int n = 0;
    for (size_t i = 0; i < g->n_input; i++) {
        if (!g->input[i]->name || s_find(c, g->input[i]->name)) continue; /* an initializer */
        in = g->input[i];
        n++;
    }
    if (n != 1)
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "%s: the graph has %d inputs besides its "
                       "initializers; distillq models take one image batch", c->source, n);
    const char *name = in->name;
    const Onnx__TypeProto *tp = in->type;
    const Onnx__TypeProto__Tensor *tt =
        tp && tp->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE ? tp->tensor_type : NULL;
    if (!tt || !tt->has_elem_type || tt->elem_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT)
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "%s: input '%.64s' is not a float tensor",
                       c->source, name);
    if (!tt->shape || tt->shape->n_dim != 4)
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "%s: input '%.64s' must have shape "
                       "[N, C, H, W]", c->source, name);
    int64_t d[3];
    for (int i = 0; i < 3; i++) {
        const Onnx__TensorShapeProto__Dimension *dim = tt->shape->dim[i + 1];
        if (dim->value_case != ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE ||
            dim->dim_value < 1 || dim->dim_value > S_MAX_HW)
            return dq_fail(err, DQ_ERR_UNSUPPORTED, "%s: input '%.64s' needs fixed C, H, W "
                           "(1..%d); dimension %d is not", c->source, name, S_MAX_HW, i + 1);
        d[i] = dim->dim_value;
    }
    if (d[0] > DQ_NET_MAX_CHANNELS)
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "%s: input '%.64s' has %lld channels (at most "
                       "%d)", c->source, name, (long long)d[0], DQ_NET_MAX_CHANNELS);
    *ch = (int)d[0];
    *h = (int)d[1];
    *w = (int)d[2];
    dq_onnx_value v = {.kind = DQ_ONNX_V_INPUT, .layer = DQ_ONNX_INPUT, .rank = 3,
                       .dims = {d[0], d[1], d[2]}};
    return s_def(c, name, &v, err);
}

/* metadata_props[key] parsed as 1 or `channels` floats, printed into buf
 * ("" when absent). */
static dq_status s_norm(dq_onnx_ctx *c, const Onnx__ModelProto *m, const char *key,
                        int channels, bool positive, char *buf, size_t size, dq_err *err)
{
    buf[0] = '\0';
    const char *val = NULL;
    for (size_t i = 0; i < m->n_metadata_props; i++)
        if (m->metadata_props[i]->key && strcmp(m->metadata_props[i]->key, key) == 0)
            val = m->metadata_props[i]->value;
    if (!val) return DQ_OK;
    const char *p = val;
    size_t len = 0;
    for (int k = 0;; k++) {
        char *end;
        errno = 0;
        float f = strtof(p, &end);
        if (end == p || errno || !isfinite(f) || (positive && !(f > 0)) || k >= channels)
            return dq_fail(err, DQ_ERR_FORMAT, "%s: metadata %s='%.64s' is not 1 or %d "
                           "comma-separated %snumbers", c->source, key, val, channels,
                           positive ? "positive " : "");
        char num[32];
        s_fmt(num, sizeof num, f);
        len += (size_t)snprintf(buf + len, size - len, "%s%s", k ? "," : "", num);
        while (*end == ' ') end++;
        if (*end == '\0') {
            if (k + 1 != 1 && k + 1 != channels)
                return dq_fail(err, DQ_ERR_FORMAT, "%s: metadata %s has %d values for %d "
                               "channels", c->source, key, k + 1, channels);
            return DQ_OK;
        }
        if (*end != ',')
            return dq_fail(err, DQ_ERR_FORMAT, "%s: metadata %s='%.64s' is not 1 or %d "
                           "comma-separated numbers", c->source, key, val, channels);
        p = end + 1;
    }
}

/* ---- text ---- */

static const char *s_from(const dq_onnx_ctx *c, int from)
{
    return from == DQ_ONNX_INPUT ? "input" : c->layers[from].name;
}

static void s_print_layer(FILE *f, const dq_onnx_ctx *c, int i)
{
    const dq_onnx_layer *l = &c->layers[i];
    char num[32];
    fprintf(f, "layer %s ", l->name);
    switch (l->type) {
    case DQ_ONNX_L_CONV2D:
        fprintf(f, "conv2d in=%lld out=%lld kernel=%d stride=%d padding=%d bias=%d",
                (long long)l->in, (long long)l->out, l->kernel, l->stride, l->padding, l->bias);
        if (l->groups != 1) fprintf(f, " groups=%d", l->groups);
        break;
    case DQ_ONNX_L_BATCHNORM2D:
        fprintf(f, "batchnorm2d features=%lld", (long long)l->in);
        if (l->eps != 1e-5f) {
            s_fmt(num, sizeof num, l->eps);
            fprintf(f, " eps=%s", num);
        }
        break;
    case DQ_ONNX_L_RELU: fprintf(f, "relu"); break;
    case DQ_ONNX_L_CLIP:
        if (l->lo == 0.0f && l->hi == 6.0f) fprintf(f, "relu6");
        else {
            s_fmt(num, sizeof num, l->lo);
            fprintf(f, "clip min=%s", num);
            s_fmt(num, sizeof num, l->hi);
            fprintf(f, " max=%s", num);
        }
        break;
    case DQ_ONNX_L_MAXPOOL2D:
        fprintf(f, "maxpool2d kernel=%d stride=%d", l->kernel, l->stride);
        if (l->padding) fprintf(f, " padding=%d", l->padding);
        break;
    case DQ_ONNX_L_AVGPOOL2D:
        fprintf(f, "avgpool2d kernel=%d stride=%d padding=%d count_include_pad=%d", l->kernel,
                l->stride, l->padding, l->count_include_pad);
        break;
    case DQ_ONNX_L_GLOBAL_AVGPOOL: fprintf(f, "global_avgpool"); break;
    case DQ_ONNX_L_ADD:
        fprintf(f, "add from=%s,%s", s_from(c, l->from), s_from(c, l->from2));
        break;
    case DQ_ONNX_L_LINEAR:
        fprintf(f, "linear in=%lld out=%lld bias=%d", (long long)l->in, (long long)l->out,
                l->bias);
        break;
    case DQ_ONNX_L_FLATTEN: fprintf(f, "flatten"); break;
    case DQ_ONNX_L_COUNT: break;
    }
    if (l->type != DQ_ONNX_L_ADD && l->from != i - 1) fprintf(f, " from=%s", s_from(c, l->from));
    fputc('\n', f);
}

static dq_status s_text(dq_onnx_ctx *c, const Onnx__ModelProto *m, int ch, int h, int w,
                        char **text, dq_err *err)
{
    char mean[256], std[256], name[DQ_MF_NAME_MAX];
    DQ_TRY(s_norm(c, m, "distillq.mean", ch, false, mean, sizeof mean, err));
    DQ_TRY(s_norm(c, m, "distillq.std", ch, true, std, sizeof std, err));
    const char *base = strrchr(c->source, '/');
    base = base ? base + 1 : c->source;
    s_sanitize(name, base, DQ_MF_NAME_MAX - 1);
    size_t nl = strlen(name);
    if (nl > 5 && strcasecmp(name + nl - 5, ".onnx") == 0) name[nl - 5] = '\0';
    if (!name[0]) snprintf(name, sizeof name, "onnx-model");

    const Onnx__GraphProto *g = c->graph;
    if (g->n_output < 1 || g->n_output > S_MAX_OUTPUTS)
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "%s: the graph has %zu outputs (1..%d)",
                       c->source, g->n_output, S_MAX_OUTPUTS);
    char onames[S_MAX_OUTPUTS][DQ_MF_NAME_MAX];
    int olayer[S_MAX_OUTPUTS];
    for (size_t i = 0; i < g->n_output; i++) {
        const char *on = g->output[i]->name;
        dq_onnx_value *v = on ? s_find(c, on) : NULL;
        if (!v)
            return dq_fail(err, DQ_ERR_FORMAT, "%s: graph output '%.64s' is not computed by "
                           "any node", c->source, on ? on : "");
        if (v->kind != DQ_ONNX_V_LAYER)
            return dq_fail(err, DQ_ERR_UNSUPPORTED, "%s: graph output '%.64s' is the input or "
                           "a constant, not computed", c->source, on);
        s_sanitize(onames[i], on, DQ_MF_NAME_MAX - 1);
        if (!onames[i][0]) snprintf(onames[i], sizeof onames[i], "output%zu", i);
        for (size_t j = 0; j < i; j++)
            if (strcmp(onames[j], onames[i]) == 0)
                return dq_fail(err, DQ_ERR_UNSUPPORTED, "%s: graph outputs %zu and %zu both "
                               "become '%s'", c->source, j, i, onames[i]);
        if (i > 0 && strcmp(onames[i], "logits") == 0)
            return dq_fail(err, DQ_ERR_UNSUPPORTED, "%s: graph output %zu is named 'logits', "
                           "which is the first output's second name", c->source, i);
        olayer[i] = v->layer;
    }

    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return dq_fail(err, DQ_ERR_NOMEM, "%s: cannot open a text buffer", c->source);
    fprintf(f, "# imported from ONNX (opset %lld) by distillq\n", (long long)c->opset);
    fprintf(f, "name %s\ninput channels=%d height=%d width=%d\n", name, ch, h, w);
    if (mean[0] || std[0])
        fprintf(f, "normalize mean=%s std=%s\n", mean[0] ? mean : "0", std[0] ? std : "1");
    for (int i = 0; i < c->n_layers; i++) s_print_layer(f, c, i);
    if (strcmp(onames[0], "logits") != 0) fprintf(f, "output logits %s\n",
                                                  c->layers[olayer[0]].name);
    for (size_t i = 0; i < g->n_output; i++)
        fprintf(f, "output %s %s\n", onames[i], c->layers[olayer[i]].name);
    bool bad = ferror(f) != 0;
    if (fclose(f) != 0 || bad) {
        free(buf);
        return dq_fail(err, DQ_ERR_NOMEM, "%s: cannot write the model text", c->source);
    }
    *text = buf;
    return DQ_OK;
}

/* ---- the whole translation ---- */

static dq_status s_translate(dq_onnx_ctx *c, const Onnx__ModelProto *m, char **text,
                             dq_err *err)
{
    c->opset = -1;
    for (size_t i = 0; i < m->n_opset_import; i++) {
        const Onnx__OperatorSetIdProto *o = m->opset_import[i];
        if ((!o->domain || !o->domain[0] || strcmp(o->domain, "ai.onnx") == 0) && o->has_version)
            c->opset = o->version;
    }
    if (c->opset < 1)
        return dq_fail(err, DQ_ERR_FORMAT, "%s: no opset for the ai.onnx domain (not an ONNX "
                       "model, or a truncated one)", c->source);
    c->graph = m->graph;
    if (!c->graph)
        return dq_fail(err, DQ_ERR_FORMAT, "%s: no graph (truncated file?)", c->source);
    const Onnx__GraphProto *g = c->graph;
    if (g->n_sparse_initializer)
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "%s: sparse initializers are not supported",
                       c->source);
    for (size_t i = 0; i < g->n_initializer; i++)
        DQ_TRY(dq_onnx_def_const(c, g->initializer[i]->name, g->initializer[i], err));
    int ch = 0, h = 0, w = 0;
    DQ_TRY(s_input(c, &ch, &h, &w, err));
    for (size_t i = 0; i < g->n_node; i++) {
        c->node = g->node[i];
        const char *dom = c->node->domain;
        if (!c->node->op_type)
            return dq_onnx_node_fail(c, err, DQ_ERR_FORMAT, "node without an operator type");
        if (dom && dom[0] && strcmp(dom, "ai.onnx") != 0)
            return dq_onnx_node_fail(c, err, DQ_ERR_UNSUPPORTED, "unsupported operator %.48s "
                                     "of domain '%.48s'", c->node->op_type, dom);
        DQ_TRY(dq_onnx_map_node(c, err));
    }
    c->node = NULL;
    if (c->n_layers == 0)
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "%s: the graph computes nothing", c->source);
    return s_text(c, m, ch, h, w, text, err);
}

static void s_free_params(dq_onnx_param *p, int n)
{
    for (int i = 0; i < n; i++) free(p[i].data);
    free(p);
}

dq_status dq_onnx_import_buffer(dq_onnx_import *out, const uint8_t *buf, size_t len,
                                const char *source, dq_err *err)
{
    memset(out, 0, sizeof *out);
    if (len > DQ_ONNX_MAX_BYTES)
        return dq_fail(err, DQ_ERR_FORMAT, "%s: %zu bytes is larger than any ONNX model "
                       "(2 GiB)", source, len);
    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, len, buf);
    if (!m)
        return dq_fail(err, DQ_ERR_FORMAT, "%s: not a valid ONNX model (protobuf decoding "
                       "failed: truncated or corrupt file)", source);
    dq_onnx_ctx c = {.source = source};
    char *text = NULL;
    dq_status st = s_translate(&c, m, &text, err);
    onnx__model_proto__free_unpacked(m, NULL);
    free(c.values);
    free(c.layers);
    if (st != DQ_OK) {
        s_free_params(c.params, c.n_params);
        /* Names quoted from the file may hold any byte: keep the message one
         * printable line. */
        for (char *p = err ? err->msg : NULL; p && *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
        return st;
    }
    out->text = text;
    out->params = c.params;
    out->n_params = c.n_params;
    out->opset = c.opset;
    return DQ_OK;
}

dq_status dq_onnx_import_file(dq_onnx_import *out, const char *path, dq_err *err)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) return dq_fail(err, DQ_ERR_IO, "%s: %s", path, strerror(errno));
    uint8_t *buf = NULL;
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    dq_status st = DQ_OK;
    if (size < 0 || fseek(f, 0, SEEK_SET) != 0)
        st = dq_fail(err, DQ_ERR_IO, "%s: cannot seek: %s", path, strerror(errno));
    else if ((size_t)size > DQ_ONNX_MAX_BYTES)
        st = dq_fail(err, DQ_ERR_FORMAT, "%s: %ld bytes is larger than any ONNX model (2 GiB)",
                     path, size);
    else if (!(buf = malloc(size ? (size_t)size : 1)))
        st = dq_fail(err, DQ_ERR_NOMEM, "%s: no memory for %ld bytes", path, size);
    else if (size && fread(buf, 1, (size_t)size, f) != (size_t)size)
        st = dq_fail(err, DQ_ERR_IO, "%s: short read", path);
    fclose(f);
    if (st == DQ_OK) st = dq_onnx_import_buffer(out, buf, (size_t)size, path, err);
    free(buf);
    return st;
}

void dq_onnx_import_free(dq_onnx_import *imp)
{
    if (!imp) return;
    free(imp->text);
    s_free_params(imp->params, imp->n_params);
    memset(imp, 0, sizeof *imp);
}

bool dq_onnx_is_path(const char *path)
{
    size_t n = path ? strlen(path) : 0;
    return n >= 5 && strcasecmp(path + n - 5, ".onnx") == 0;
}
