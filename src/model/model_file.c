/* model_file.c - line-oriented parser of the text model format.
 *
 * Each non-blank line (after stripping a '#' comment) is a directive and
 * whitespace-separated tokens; arguments are key=value. The parser is a
 * single pass: `input` must precede the layers so that every layer's input
 * shape is known when its line is read, which is what lets a size mismatch
 * be reported against the line that declares it. Every key a directive
 * accepts is looked up explicitly, and any key left unused is an error, so a
 * typo ("kernal=3") never silently falls back to a default.
 */
#include "model/model_file.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const s_type_names[] = {
    [DQ_LAYER_CONV2D] = "conv2d",       [DQ_LAYER_LINEAR] = "linear",
    [DQ_LAYER_RELU] = "relu",           [DQ_LAYER_MAXPOOL2D] = "maxpool2d",
    [DQ_LAYER_AVGPOOL1D] = "avgpool1d", [DQ_LAYER_FLATTEN] = "flatten",
    [DQ_LAYER_DROPOUT] = "dropout",     [DQ_LAYER_BATCHNORM2D] = "batchnorm2d",
    [DQ_LAYER_RELU6] = "relu6",         [DQ_LAYER_CLIP] = "clip",
    [DQ_LAYER_AVGPOOL2D] = "avgpool2d", [DQ_LAYER_GLOBAL_AVGPOOL] = "global_avgpool",
    [DQ_LAYER_ADD] = "add",
};
_Static_assert(sizeof s_type_names / sizeof s_type_names[0] == DQ_LAYER_TYPE_COUNT,
               "every layer type needs a name");

#define S_MAX_LINE 1024
#define S_MAX_TOKENS 32
#define S_MAX_DIM 65536
#define S_MAX_FEAT (1 << 24)
#define S_MAX_LAYER_FLOATS (1LL << 31) /* guards later size arithmetic */

const char *dq_layer_type_name(dq_layer_type t)
{
    if ((int)t < 0 || t >= DQ_LAYER_TYPE_COUNT) return "?";
    return s_type_names[t];
}

/* ---- parse state ------------------------------------------------------------ */

typedef struct {
    const char *key, *val;
    bool used;
} s_kv;

typedef struct {
    dq_model_file *mf;
    const char *source;
    int line;
    dq_err *err;
    bool have_name, have_input;
    int norm_line, n_mean, n_std;
} s_parser;

static dq_status s_fail(s_parser *p, dq_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static dq_status s_fail(s_parser *p, dq_status st, const char *fmt, ...)
{
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (p->line > 0) return dq_fail(p->err, st, "%s:%d: %s", p->source, p->line, what);
    return dq_fail(p->err, st, "%s: %s", p->source, what);
}

static const char *s_shape_str(int rank, const int64_t *shape, char *buf, size_t len)
{
    size_t off = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < rank && off < len; i++)
        off += (size_t)snprintf(buf + off, len - off, "%s%lld", i ? ", " : "",
                                (long long)shape[i]);
    if (off < len) snprintf(buf + off, len - off, "]");
    return buf;
}

static bool s_valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= DQ_MF_NAME_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == '-';
        if (!ok) return false;
    }
    return true;
}

/* Splits tokens[first..n) into key=value pairs; rejects bare words and
 * repeated keys. */
static dq_status s_split_kv(s_parser *p, char **tok, int first, int n, s_kv *kv, int *n_kv)
{
    *n_kv = 0;
    for (int i = first; i < n; i++) {
        char *eq = strchr(tok[i], '=');
        if (!eq || eq == tok[i])
            return s_fail(p, DQ_ERR_FORMAT, "expected key=value, got '%s'", tok[i]);
        *eq = '\0';
        for (int j = 0; j < *n_kv; j++)
            if (strcmp(kv[j].key, tok[i]) == 0)
                return s_fail(p, DQ_ERR_FORMAT, "key '%s' given twice", tok[i]);
        kv[*n_kv] = (s_kv){tok[i], eq + 1, false};
        (*n_kv)++;
    }
    return DQ_OK;
}

static s_kv *s_find_kv(s_kv *kv, int n, const char *key)
{
    for (int i = 0; i < n; i++)
        if (strcmp(kv[i].key, key) == 0) {
            kv[i].used = true;
            return &kv[i];
        }
    return NULL;
}

/* Integer key in [lo, hi]; *out keeps its default when absent and optional. */
static dq_status s_get_int(s_parser *p, s_kv *kv, int n, const char *what, const char *key,
                           bool required, int64_t lo, int64_t hi, int64_t *out)
{
    s_kv *e = s_find_kv(kv, n, key);
    if (!e) {
        if (required) return s_fail(p, DQ_ERR_FORMAT, "%s: missing key '%s'", what, key);
        return DQ_OK;
    }
    char *end = NULL;
    errno = 0;
    long long v = strtoll(e->val, &end, 10);
    if (e->val[0] == '\0' || *end != '\0' || errno == ERANGE)
        return s_fail(p, DQ_ERR_FORMAT, "%s: bad number '%s' for %s (expected an integer)",
                      what, e->val, key);
    if (v < lo || v > hi)
        return s_fail(p, DQ_ERR_FORMAT, "%s: %s=%lld outside %lld..%lld", what, key, v,
                      (long long)lo, (long long)hi);
    *out = v;
    return DQ_OK;
}

static dq_status s_parse_float(s_parser *p, const char *s, const char *key, float *out)
{
    char *end = NULL;
    errno = 0;
    float v = strtof(s, &end);
    if (s[0] == '\0' || *end != '\0' || errno == ERANGE || !isfinite(v))
        return s_fail(p, DQ_ERR_FORMAT, "bad number '%s' for %s (expected a finite number)",
                      s, key);
    *out = v;
    return DQ_OK;
}

/* Comma-separated floats ("0.485,0.456,0.406") into out[0..DQ_NET_MAX_CHANNELS). */
static dq_status s_get_floats(s_parser *p, s_kv *kv, int n, const char *key, float *out,
                              int *count)
{
    s_kv *e = s_find_kv(kv, n, key);
    if (!e) return s_fail(p, DQ_ERR_FORMAT, "normalize: missing key '%s'", key);
    char buf[S_MAX_LINE];
    snprintf(buf, sizeof buf, "%s", e->val);
    *count = 0;
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (*count == DQ_NET_MAX_CHANNELS)
            return s_fail(p, DQ_ERR_FORMAT, "normalize: more than %d values for %s",
                          DQ_NET_MAX_CHANNELS, key);
        DQ_TRY(s_parse_float(p, t, key, &out[*count]));
        (*count)++;
    }
    if (*count == 0) return s_fail(p, DQ_ERR_FORMAT, "normalize: %s has no values", key);
    return DQ_OK;
}

static dq_status s_no_unused(s_parser *p, const s_kv *kv, int n, const char *what,
                             const char *accepted)
{
    for (int i = 0; i < n; i++)
        if (!kv[i].used)
            return s_fail(p, DQ_ERR_FORMAT, "%s: unknown key '%s' (accepted: %s)", what,
                          kv[i].key, accepted);
    return DQ_OK;
}

/* ---- directives ----------------------------------------------------------------- */

static dq_status s_dir_name(s_parser *p, char **tok, int n)
{
    if (n != 2) return s_fail(p, DQ_ERR_FORMAT, "expected 'name <model-name>'");
    if (p->have_name) return s_fail(p, DQ_ERR_FORMAT, "name given twice");
    if (!s_valid_name(tok[1]))
        return s_fail(p, DQ_ERR_FORMAT, "bad model name '%s' (letters, digits, _ . -)", tok[1]);
    snprintf(p->mf->name, sizeof p->mf->name, "%s", tok[1]);
    p->have_name = true;
    return DQ_OK;
}

static dq_status s_dir_input(s_parser *p, char **tok, int n)
{
    if (p->have_input) return s_fail(p, DQ_ERR_FORMAT, "input given twice");
    if (p->mf->n_layers > 0)
        return s_fail(p, DQ_ERR_FORMAT, "input must come before the first layer");
    s_kv kv[S_MAX_TOKENS];
    int nkv;
    DQ_TRY(s_split_kv(p, tok, 1, n, kv, &nkv));
    int64_t c = 0, h = 0, w = 0;
    DQ_TRY(s_get_int(p, kv, nkv, "input", "channels", true, 1, DQ_NET_MAX_CHANNELS, &c));
    DQ_TRY(s_get_int(p, kv, nkv, "input", "height", true, 1, S_MAX_DIM, &h));
    DQ_TRY(s_get_int(p, kv, nkv, "input", "width", true, 1, S_MAX_DIM, &w));
    DQ_TRY(s_no_unused(p, kv, nkv, "input", "channels, height, width"));
    p->mf->input.channels = (int)c;
    p->mf->input.height = (int)h;
    p->mf->input.width = (int)w;
    p->have_input = true;
    return DQ_OK;
}

static dq_status s_dir_normalize(s_parser *p, char **tok, int n)
{
    if (p->norm_line) return s_fail(p, DQ_ERR_FORMAT, "normalize given twice");
    s_kv kv[S_MAX_TOKENS];
    int nkv;
    DQ_TRY(s_split_kv(p, tok, 1, n, kv, &nkv));
    DQ_TRY(s_get_floats(p, kv, nkv, "mean", p->mf->input.mean, &p->n_mean));
    DQ_TRY(s_get_floats(p, kv, nkv, "std", p->mf->input.std, &p->n_std));
    DQ_TRY(s_no_unused(p, kv, nkv, "normalize", "mean, std"));
    for (int i = 0; i < p->n_std; i++)
        if (!(p->mf->input.std[i] > 0.0f))
            return s_fail(p, DQ_ERR_FORMAT, "normalize: std values must be > 0");
    p->norm_line = p->line;
    return DQ_OK;
}

static int64_t s_window_out(int64_t in, int64_t k, int64_t stride, int64_t pad)
{
    int64_t span = in + 2 * pad - k;
    return span < 0 ? 0 : span / stride + 1;
}

/* Reads the type's keys into l and computes its output shape from the input
 * shape already in l, checking declared sizes against it. */
static dq_status s_layer_shape(s_parser *p, dq_mf_layer *l, s_kv *kv, int nkv,
                               const char *from_name)
{
    char what[2 * DQ_MF_NAME_MAX], sh[96];
    snprintf(what, sizeof what, "%s %s", dq_layer_type_name(l->type), l->name);
    const int64_t *in = l->in_shape;
    s_shape_str(l->in_rank, in, sh, sizeof sh);
    int64_t v = 0, bias = 1;

    switch (l->type) {
    case DQ_LAYER_CONV2D: {
        int64_t k = 0, stride = 1, pad = 0, groups = 1;
        DQ_TRY(s_get_int(p, kv, nkv, what, "in", true, 1, S_MAX_FEAT, &l->in));
        DQ_TRY(s_get_int(p, kv, nkv, what, "out", true, 1, S_MAX_FEAT, &l->out));
        DQ_TRY(s_get_int(p, kv, nkv, what, "kernel", true, 1, S_MAX_DIM, &k));
        DQ_TRY(s_get_int(p, kv, nkv, what, "stride", false, 1, S_MAX_DIM, &stride));
        DQ_TRY(s_get_int(p, kv, nkv, what, "padding", false, 0, S_MAX_DIM, &pad));
        DQ_TRY(s_get_int(p, kv, nkv, what, "bias", false, 0, 1, &bias));
        DQ_TRY(s_get_int(p, kv, nkv, what, "groups", false, 1, S_MAX_FEAT, &groups));
        DQ_TRY(s_no_unused(p, kv, nkv, what,
                           "in, out, kernel, stride, padding, bias, groups, from"));
        l->kernel = (int)k, l->stride = (int)stride, l->padding = (int)pad;
        l->groups = (int)groups;
        l->bias = bias != 0;
        if (l->in % groups != 0 || l->out % groups != 0)
            return s_fail(p, DQ_ERR_SHAPE, "%s: groups=%lld must divide in=%lld and out=%lld",
                          what, (long long)groups, (long long)l->in, (long long)l->out);
        if (l->in_rank != 3)
            return s_fail(p, DQ_ERR_SHAPE, "%s needs a [C, H, W] input but %s gives %s", what,
                          from_name, sh);
        if (l->in != in[0])
            return s_fail(p, DQ_ERR_SHAPE, "%s in=%lld but its input has %lld channels", what,
                          (long long)l->in, (long long)in[0]);
        int64_t oh = s_window_out(in[1], k, stride, pad), ow = s_window_out(in[2], k, stride, pad);
        if (oh <= 0 || ow <= 0)
            return s_fail(p, DQ_ERR_SHAPE, "%s: kernel %lld does not fit its input %s", what,
                          (long long)k, sh);
        l->out_rank = 3;
        l->out_shape[0] = l->out, l->out_shape[1] = oh, l->out_shape[2] = ow;
        return DQ_OK;
    }
    case DQ_LAYER_LINEAR:
        DQ_TRY(s_get_int(p, kv, nkv, what, "in", true, 1, S_MAX_FEAT, &l->in));
        DQ_TRY(s_get_int(p, kv, nkv, what, "out", true, 1, S_MAX_FEAT, &l->out));
        DQ_TRY(s_get_int(p, kv, nkv, what, "bias", false, 0, 1, &bias));
        DQ_TRY(s_no_unused(p, kv, nkv, what, "in, out, bias, from"));
        l->bias = bias != 0;
        if (l->in_rank != 1)
            return s_fail(p, DQ_ERR_SHAPE, "%s needs a flat input but %s gives %s (add a flatten "
                          "layer)", what, from_name, sh);
        if (l->in != in[0])
            return s_fail(p, DQ_ERR_SHAPE, "%s in=%lld but its input has %lld features", what,
                          (long long)l->in, (long long)in[0]);
        l->out_rank = 1;
        l->out_shape[0] = l->out;
        return DQ_OK;
    case DQ_LAYER_MAXPOOL2D:
    case DQ_LAYER_AVGPOOL2D: {
        int64_t k = 0, stride = 0, pad = 0, cip = 1;
        bool avg = l->type == DQ_LAYER_AVGPOOL2D;
        DQ_TRY(s_get_int(p, kv, nkv, what, "kernel", true, 1, S_MAX_DIM, &k));
        stride = k;
        DQ_TRY(s_get_int(p, kv, nkv, what, "stride", false, 1, S_MAX_DIM, &stride));
        DQ_TRY(s_get_int(p, kv, nkv, what, "padding", false, 0, S_MAX_DIM, &pad));
        if (avg) DQ_TRY(s_get_int(p, kv, nkv, what, "count_include_pad", false, 0, 1, &cip));
        DQ_TRY(s_no_unused(p, kv, nkv, what, avg ? "kernel, stride, padding, count_include_pad, "
                                                   "from"
                                                 : "kernel, stride, padding, from"));
        l->kernel = (int)k, l->stride = (int)stride, l->padding = (int)pad;
        l->count_include_pad = cip != 0;
        if (pad > k / 2)
            return s_fail(p, DQ_ERR_FORMAT, "%s: padding=%lld is more than half the kernel %lld",
                          what, (long long)pad, (long long)k);
        if (l->in_rank != 3)
            return s_fail(p, DQ_ERR_SHAPE, "%s needs a [C, H, W] input but %s gives %s", what,
                          from_name, sh);
        int64_t oh = s_window_out(in[1], k, stride, pad), ow = s_window_out(in[2], k, stride, pad);
        if (oh <= 0 || ow <= 0)
            return s_fail(p, DQ_ERR_SHAPE, "%s: kernel %lld does not fit its input %s", what,
                          (long long)k, sh);
        l->out_rank = 3;
        l->out_shape[0] = in[0], l->out_shape[1] = oh, l->out_shape[2] = ow;
        return DQ_OK;
    }
    case DQ_LAYER_AVGPOOL1D:
        DQ_TRY(s_get_int(p, kv, nkv, what, "kernel", true, 1, S_MAX_FEAT, &v));
        DQ_TRY(s_no_unused(p, kv, nkv, what, "kernel, from"));
        l->kernel = l->stride = (int)v;
        if (l->in_rank != 1)
            return s_fail(p, DQ_ERR_SHAPE, "%s needs a flat input but %s gives %s (add a flatten "
                          "layer)", what, from_name, sh);
        if (in[0] < v)
            return s_fail(p, DQ_ERR_SHAPE, "%s: kernel %lld is larger than its %lld features",
                          what, (long long)v, (long long)in[0]);
        l->out_rank = 1;
        l->out_shape[0] = (in[0] - v) / v + 1;
        return DQ_OK;
    case DQ_LAYER_DROPOUT: {
        s_kv *e = s_find_kv(kv, nkv, "p");
        if (!e) return s_fail(p, DQ_ERR_FORMAT, "%s: missing key 'p'", what);
        DQ_TRY(s_parse_float(p, e->val, "p", &l->p));
        if (!(l->p >= 0.0f && l->p < 1.0f))
            return s_fail(p, DQ_ERR_FORMAT, "%s: p=%s outside [0, 1)", what, e->val);
        DQ_TRY(s_no_unused(p, kv, nkv, what, "p, from"));
        break;
    }
    case DQ_LAYER_RELU:
        DQ_TRY(s_no_unused(p, kv, nkv, what, "from"));
        break;
    case DQ_LAYER_RELU6:
        DQ_TRY(s_no_unused(p, kv, nkv, what, "from"));
        l->lo = 0.0f, l->hi = 6.0f;
        break;
    case DQ_LAYER_CLIP: {
        s_kv *lo = s_find_kv(kv, nkv, "min"), *hi = s_find_kv(kv, nkv, "max");
        if (!lo || !hi) return s_fail(p, DQ_ERR_FORMAT, "%s: needs min= and max=", what);
        DQ_TRY(s_parse_float(p, lo->val, "min", &l->lo));
        DQ_TRY(s_parse_float(p, hi->val, "max", &l->hi));
        DQ_TRY(s_no_unused(p, kv, nkv, what, "min, max, from"));
        if (!(l->lo <= l->hi))
            return s_fail(p, DQ_ERR_FORMAT, "%s: min=%s is above max=%s", what, lo->val, hi->val);
        break;
    }
    case DQ_LAYER_BATCHNORM2D: {
        l->eps = 1e-5f, l->momentum = 0.1f;
        s_kv *e = s_find_kv(kv, nkv, "eps"), *m = s_find_kv(kv, nkv, "momentum");
        DQ_TRY(s_get_int(p, kv, nkv, what, "features", true, 1, S_MAX_FEAT, &l->in));
        if (e) DQ_TRY(s_parse_float(p, e->val, "eps", &l->eps));
        if (m) DQ_TRY(s_parse_float(p, m->val, "momentum", &l->momentum));
        DQ_TRY(s_no_unused(p, kv, nkv, what, "features, eps, momentum, from"));
        if (!(l->eps > 0.0f) || !(l->momentum >= 0.0f && l->momentum <= 1.0f))
            return s_fail(p, DQ_ERR_FORMAT, "%s: eps must be > 0 and momentum in [0, 1]", what);
        l->out = l->in;
        l->bias = true;
        if (l->in_rank != 3)
            return s_fail(p, DQ_ERR_SHAPE, "%s needs a [C, H, W] input but %s gives %s", what,
                          from_name, sh);
        if (l->in != in[0])
            return s_fail(p, DQ_ERR_SHAPE, "%s features=%lld but its input has %lld channels",
                          what, (long long)l->in, (long long)in[0]);
        break;
    }
    case DQ_LAYER_GLOBAL_AVGPOOL:
        DQ_TRY(s_no_unused(p, kv, nkv, what, "from"));
        if (l->in_rank != 3)
            return s_fail(p, DQ_ERR_SHAPE, "%s needs a [C, H, W] input but %s gives %s", what,
                          from_name, sh);
        l->out_rank = 3;
        l->out_shape[0] = in[0], l->out_shape[1] = 1, l->out_shape[2] = 1;
        return DQ_OK;
    case DQ_LAYER_ADD:
        DQ_TRY(s_no_unused(p, kv, nkv, what, "from"));
        break; /* both inputs' shapes were checked by s_dir_layer */
    case DQ_LAYER_FLATTEN: {
        DQ_TRY(s_no_unused(p, kv, nkv, what, "from"));
        int64_t f = 1;
        for (int i = 0; i < l->in_rank; i++) f *= in[i];
        l->out_rank = 1;
        l->out_shape[0] = f;
        return DQ_OK;
    }
    default:
        return s_fail(p, DQ_ERR_FORMAT, "internal: unhandled layer type");
    }
    /* Elementwise layers keep their input shape. */
    l->out_rank = l->in_rank;
    memcpy(l->out_shape, l->in_shape, sizeof l->out_shape);
    return DQ_OK;
}

/* A from= value: "input" or an earlier layer's name. */
static dq_status s_resolve_from(s_parser *p, const char *name, const char *type,
                                const char *layer, int *out)
{
    if (strcmp(name, "input") == 0) {
        *out = DQ_MF_INPUT;
        return DQ_OK;
    }
    *out = dq_mf_find_layer(p->mf, name);
    if (*out < 0)
        return s_fail(p, DQ_ERR_FORMAT, "%s %s: from=%s is not an earlier layer", type, layer,
                      name);
    return DQ_OK;
}

/* Per-sample shape (and a name for messages) of what layer index `from` outputs. */
static void s_input_shape(const dq_model_file *mf, int from, int *rank, int64_t shape[3],
                          char *name, size_t len)
{
    if (from == DQ_MF_INPUT) {
        *rank = 3;
        shape[0] = mf->input.channels;
        shape[1] = mf->input.height;
        shape[2] = mf->input.width;
        snprintf(name, len, "the input");
    } else {
        const dq_mf_layer *src = &mf->layers[from];
        *rank = src->out_rank;
        memcpy(shape, src->out_shape, sizeof(int64_t) * 3);
        snprintf(name, len, "%s", src->name);
    }
}

static dq_status s_dir_layer(s_parser *p, char **tok, int n)
{
    dq_model_file *mf = p->mf;
    if (n < 3) return s_fail(p, DQ_ERR_FORMAT, "expected 'layer <name> <type> key=value...'");
    if (!p->have_input)
        return s_fail(p, DQ_ERR_FORMAT, "layer before 'input' (the input shape must come first)");
    if (!s_valid_name(tok[1]) || strcmp(tok[1], "input") == 0)
        return s_fail(p, DQ_ERR_FORMAT, "bad layer name '%s' (letters, digits, _ . -; not 'input')",
                      tok[1]);
    if (dq_mf_find_layer(mf, tok[1]) >= 0)
        return s_fail(p, DQ_ERR_FORMAT, "duplicate layer name '%s' (first on line %d)", tok[1],
                      mf->layers[dq_mf_find_layer(mf, tok[1])].line);
    if (mf->n_layers == DQ_MF_MAX_LAYERS)
        return s_fail(p, DQ_ERR_FORMAT, "more than %d layers", DQ_MF_MAX_LAYERS);
    int type = -1;
    for (int t = 0; t < DQ_LAYER_TYPE_COUNT; t++)
        if (strcmp(tok[2], s_type_names[t]) == 0) type = t;
    if (type < 0)
        return s_fail(p, DQ_ERR_FORMAT, "unknown layer type '%s' (expected conv2d, linear, relu, "
                      "maxpool2d, avgpool1d, flatten, dropout, batchnorm2d, relu6, clip, "
                      "avgpool2d, global_avgpool or add)", tok[2]);

    dq_mf_layer *l = &mf->layers[mf->n_layers];
    memset(l, 0, sizeof *l);
    snprintf(l->name, sizeof l->name, "%s", tok[1]);
    l->type = (dq_layer_type)type;
    l->line = p->line;

    s_kv kv[S_MAX_TOKENS];
    int nkv;
    DQ_TRY(s_split_kv(p, tok, 3, n, kv, &nkv));
    /* from=: default is the previous layer, or the input for the first one;
     * add takes exactly two, from=a,b. */
    l->from = mf->n_layers - 1;
    l->from2 = DQ_MF_INPUT;
    s_kv *from = s_find_kv(kv, nkv, "from");
    bool is_add = l->type == DQ_LAYER_ADD;
    if (is_add && (!from || !strchr(from->val, ',')))
        return s_fail(p, DQ_ERR_FORMAT, "add %s: needs from=a,b (two earlier layers or input)",
                      l->name);
    if (from) {
        char names[S_MAX_LINE];
        snprintf(names, sizeof names, "%s", from->val);
        char *second = strchr(names, ',');
        if (second) {
            if (!is_add)
                return s_fail(p, DQ_ERR_FORMAT, "%s %s: from=%s names two layers (only add "
                              "takes two)", tok[2], l->name, from->val);
            *second++ = '\0';
            if (strchr(second, ','))
                return s_fail(p, DQ_ERR_FORMAT, "add %s: from=%s names more than two layers",
                              l->name, from->val);
        }
        DQ_TRY(s_resolve_from(p, names, tok[2], l->name, &l->from));
        if (second) DQ_TRY(s_resolve_from(p, second, tok[2], l->name, &l->from2));
    }
    char from_name[DQ_MF_NAME_MAX + 8];
    s_input_shape(mf, l->from, &l->in_rank, l->in_shape, from_name, sizeof from_name);
    if (is_add) {
        int r2;
        int64_t s2[3];
        char n2[DQ_MF_NAME_MAX + 8], a[96], b[96];
        s_input_shape(mf, l->from2, &r2, s2, n2, sizeof n2);
        if (r2 != l->in_rank || memcmp(s2, l->in_shape, sizeof(int64_t) * (size_t)r2) != 0)
            return s_fail(p, DQ_ERR_SHAPE, "add %s: %s gives %s but %s gives %s (the shapes must "
                          "be equal)", l->name, from_name, s_shape_str(l->in_rank, l->in_shape,
                          a, sizeof a), n2, s_shape_str(r2, s2, b, sizeof b));
    }
    DQ_TRY(s_layer_shape(p, l, kv, nkv, from_name));
    double out_n = 1.0, w_n = (double)l->in * (double)l->out / (l->groups > 1 ? l->groups : 1);
    if (l->type == DQ_LAYER_CONV2D) w_n *= (double)l->kernel * (double)l->kernel;
    for (int i = 0; i < l->out_rank; i++) out_n *= (double)l->out_shape[i];
    if (out_n > (double)S_MAX_LAYER_FLOATS || w_n > (double)S_MAX_LAYER_FLOATS)
        return s_fail(p, DQ_ERR_FORMAT, "%s %s: more than 2^31 values per sample or weights",
                      tok[2], l->name);
    mf->n_layers++;
    return DQ_OK;
}

static dq_status s_dir_output(s_parser *p, char **tok, int n)
{
    dq_model_file *mf = p->mf;
    if (n != 3) return s_fail(p, DQ_ERR_FORMAT, "expected 'output <name> <layer>'");
    if (!s_valid_name(tok[1]))
        return s_fail(p, DQ_ERR_FORMAT, "bad output name '%s'", tok[1]);
    if (dq_mf_find_output(mf, tok[1]) >= 0)
        return s_fail(p, DQ_ERR_FORMAT, "duplicate output name '%s'", tok[1]);
    if (mf->n_outputs == DQ_MF_MAX_OUTPUTS)
        return s_fail(p, DQ_ERR_FORMAT, "more than %d outputs", DQ_MF_MAX_OUTPUTS);
    int li = dq_mf_find_layer(mf, tok[2]);
    if (li < 0)
        return s_fail(p, DQ_ERR_FORMAT, "output %s: '%s' is not a layer defined above", tok[1],
                      tok[2]);
    dq_mf_output *o = &mf->outputs[mf->n_outputs++];
    snprintf(o->name, sizeof o->name, "%s", tok[1]);
    o->layer = li;
    return DQ_OK;
}

/* Checks that need the whole file. */
static dq_status s_finish(s_parser *p)
{
    dq_model_file *mf = p->mf;
    p->line = 0;
    if (!p->have_name) return s_fail(p, DQ_ERR_FORMAT, "no 'name' line");
    if (!p->have_input) return s_fail(p, DQ_ERR_FORMAT, "no 'input' line");
    if (mf->n_layers == 0) return s_fail(p, DQ_ERR_FORMAT, "no layers");
    int c = mf->input.channels;
    if (p->norm_line) {
        p->line = p->norm_line;
        if ((p->n_mean != 1 && p->n_mean != c) || (p->n_std != 1 && p->n_std != c))
            return s_fail(p, DQ_ERR_FORMAT, "normalize: mean and std need 1 value or one per "
                          "channel (%d); got %d and %d", c, p->n_mean, p->n_std);
        p->line = 0;
        for (int i = 1; i < c; i++) {
            if (p->n_mean == 1) mf->input.mean[i] = mf->input.mean[0];
            if (p->n_std == 1) mf->input.std[i] = mf->input.std[0];
        }
    } else {
        for (int i = 0; i < c; i++) mf->input.mean[i] = 0.0f, mf->input.std[i] = 1.0f;
    }
    int lo = dq_mf_find_output(mf, "logits");
    if (lo < 0)
        return s_fail(p, DQ_ERR_FORMAT, "no 'output logits <layer>' line (every model needs "
                      "logits)");
    const dq_mf_layer *l = &mf->layers[mf->outputs[lo].layer];
    if (l->out_rank != 1)
        return s_fail(p, DQ_ERR_SHAPE, "output logits: layer %s is not flat (logits must be "
                      "[classes])", l->name);
    mf->input.classes = (int)l->out_shape[0];
    return DQ_OK;
}

dq_status dq_mf_parse(dq_model_file *mf, const char *text, const char *source, dq_err *err)
{
    memset(mf, 0, sizeof *mf);
    s_parser p = {.mf = mf, .source = source ? source : "<model>", .err = err};
    const char *cur = text;
    while (*cur) {
        p.line++;
        const char *eol = strchr(cur, '\n');
        size_t len = eol ? (size_t)(eol - cur) : strlen(cur);
        if (len >= S_MAX_LINE)
            return s_fail(&p, DQ_ERR_FORMAT, "line longer than %d characters", S_MAX_LINE - 1);
        char buf[S_MAX_LINE];
        memcpy(buf, cur, len);
        buf[len] = '\0';
        cur = eol ? eol + 1 : cur + len;

        char *hash = strchr(buf, '#');
        if (hash) *hash = '\0';
        char *tok[S_MAX_TOKENS];
        int n = 0;
        char *save = NULL;
        for (char *t = strtok_r(buf, " \t\r", &save); t; t = strtok_r(NULL, " \t\r", &save)) {
            if (n == S_MAX_TOKENS)
                return s_fail(&p, DQ_ERR_FORMAT, "more than %d words on one line", S_MAX_TOKENS);
            tok[n++] = t;
        }
        if (n == 0) continue;
        if (strcmp(tok[0], "name") == 0) DQ_TRY(s_dir_name(&p, tok, n));
        else if (strcmp(tok[0], "input") == 0) DQ_TRY(s_dir_input(&p, tok, n));
        else if (strcmp(tok[0], "normalize") == 0) DQ_TRY(s_dir_normalize(&p, tok, n));
        else if (strcmp(tok[0], "layer") == 0) DQ_TRY(s_dir_layer(&p, tok, n));
        else if (strcmp(tok[0], "output") == 0) DQ_TRY(s_dir_output(&p, tok, n));
        else
            return s_fail(&p, DQ_ERR_FORMAT, "unknown directive '%s' (expected name, input, "
                          "normalize, layer or output)", tok[0]);
    }
    return s_finish(&p);
}

dq_status dq_mf_load(dq_model_file *mf, const char *path, dq_err *err)
{
    memset(mf, 0, sizeof *mf);
    FILE *f = fopen(path, "rb");
    if (!f) return dq_fail(err, DQ_ERR_IO, "%s: cannot open model file: %s", path, strerror(errno));
    char *text = malloc(DQ_MF_MAX_BYTES + 1);
    if (!text) {
        fclose(f);
        return dq_fail(err, DQ_ERR_NOMEM, "%s: cannot allocate a read buffer", path);
    }
    size_t n = fread(text, 1, DQ_MF_MAX_BYTES + 1, f);
    bool bad = ferror(f) != 0;
    fclose(f);
    dq_status st;
    if (bad) st = dq_fail(err, DQ_ERR_IO, "%s: read error", path);
    else if (n > DQ_MF_MAX_BYTES)
        st = dq_fail(err, DQ_ERR_FORMAT, "%s: larger than %d bytes", path, DQ_MF_MAX_BYTES);
    else if (memchr(text, '\0', n))
        st = dq_fail(err, DQ_ERR_FORMAT, "%s: contains a NUL byte (not a text model file)", path);
    else {
        text[n] = '\0';
        st = dq_mf_parse(mf, text, path, err);
    }
    free(text);
    return st;
}

int dq_mf_find_layer(const dq_model_file *mf, const char *name)
{
    for (int i = 0; i < mf->n_layers; i++)
        if (strcmp(mf->layers[i].name, name) == 0) return i;
    return -1;
}

int dq_mf_find_output(const dq_model_file *mf, const char *name)
{
    for (int i = 0; i < mf->n_outputs; i++)
        if (strcmp(mf->outputs[i].name, name) == 0) return i;
    return -1;
}

int dq_mf_weight_shape(const dq_mf_layer *l, int64_t shape[4])
{
    if (l->type == DQ_LAYER_CONV2D) {
        shape[0] = l->out, shape[1] = l->in / (l->groups > 1 ? l->groups : 1);
        shape[2] = l->kernel, shape[3] = l->kernel;
        return 4;
    }
    if (l->type == DQ_LAYER_BATCHNORM2D) {
        shape[0] = l->in;
        return 1;
    }
    if (l->type == DQ_LAYER_LINEAR) {
        shape[0] = l->out, shape[1] = l->in;
        return 2;
    }
    return 0;
}

int64_t dq_mf_layer_param_floats(const dq_mf_layer *l)
{
    int64_t shape[4];
    int r = dq_mf_weight_shape(l, shape);
    if (r == 0) return 0;
    int64_t n = 1;
    for (int i = 0; i < r; i++) n *= shape[i];
    return n + (l->bias ? l->out : 0);
}

int64_t dq_mf_param_floats(const dq_model_file *mf)
{
    int64_t n = 0;
    for (int i = 0; i < mf->n_layers; i++) n += dq_mf_layer_param_floats(&mf->layers[i]);
    return n;
}

int64_t dq_mf_out_numel(const dq_mf_layer *l)
{
    int64_t n = 1;
    for (int i = 0; i < l->out_rank; i++) n *= l->out_shape[i];
    return n;
}
