/* onnx_tensor.c - checked reads of ONNX tensor payloads and node attributes.
 *
 * A TensorProto carries its values in one of several places (float_data,
 * double_data, int64_data, int32_data or little-endian raw_data) and its
 * dims separately; nothing ties the two together on the wire. Every read
 * here therefore checks the dims (non-negative, bounded product), the
 * payload's length against them, and the element type, before copying, so
 * that a hostile or truncated file is an error message and never an
 * out-of-bounds read. raw_data is little-endian on the wire; this code
 * assumes a little-endian host (x86-64, arm64), checked at compile time.
 */
#include "model/onnx_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "ONNX raw_data is little-endian; a big-endian host needs byte swaps here");

#define S_MAX_NUMEL ((int64_t)1 << 31)

dq_status dq_onnx_tensor_numel(dq_onnx_ctx *c, const Onnx__TensorProto *t, int64_t *n,
                               dq_err *err)
{
    const char *name = t->name ? t->name : "?";
    if (t->n_dims > 8)
        return dq_onnx_node_fail(c, err, DQ_ERR_FORMAT, "tensor '%s' has %zu dims", name,
                                 t->n_dims);
    int64_t k = 1;
    for (size_t i = 0; i < t->n_dims; i++) {
        if (t->dims[i] < 0 || t->dims[i] > S_MAX_NUMEL || k * t->dims[i] > S_MAX_NUMEL)
            return dq_onnx_node_fail(c, err, DQ_ERR_FORMAT, "tensor '%s': bad dims", name);
        k *= t->dims[i];
    }
    *n = k;
    return DQ_OK;
}

/* Checks location and computes numel; the payload checks are per type. */
static dq_status s_begin(dq_onnx_ctx *c, const Onnx__TensorProto *t, int64_t *n, dq_err *err)
{
    if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
        return dq_onnx_node_fail(c, err, DQ_ERR_UNSUPPORTED,
                                 "tensor '%s' keeps its data in an external file "
                                 "(save the model with its weights inside)",
                                 t->name ? t->name : "?");
    if (t->segment)
        return dq_onnx_node_fail(c, err, DQ_ERR_UNSUPPORTED, "tensor '%s' is segmented",
                                 t->name ? t->name : "?");
    return dq_onnx_tensor_numel(c, t, n, err);
}

static dq_status s_count(dq_onnx_ctx *c, const Onnx__TensorProto *t, int64_t have,
                         int64_t numel, dq_err *err)
{
    if (have != numel)
        return dq_onnx_node_fail(c, err, DQ_ERR_FORMAT,
                                 "tensor '%s' has %lld values for %lld elements",
                                 t->name ? t->name : "?", (long long)have, (long long)numel);
    return DQ_OK;
}

dq_status dq_onnx_tensor_floats(dq_onnx_ctx *c, const Onnx__TensorProto *t, int64_t want,
                                float **out, int64_t *n, dq_err *err)
{
    *out = NULL;
    int64_t numel;
    DQ_TRY(s_begin(c, t, &numel, err));
    if (want >= 0 && numel != want)
        return dq_onnx_node_fail(c, err, DQ_ERR_SHAPE, "tensor '%s' has %lld elements, "
                                 "expected %lld", t->name ? t->name : "?", (long long)numel,
                                 (long long)want);
    int32_t type = t->has_data_type ? t->data_type : 0;
    bool is_f32 = type == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    bool is_f64 = type == ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE;
    if (!is_f32 && !is_f64)
        return dq_onnx_node_fail(c, err, DQ_ERR_UNSUPPORTED, "tensor '%s' has element type "
                                 "%d (float or double expected)", t->name ? t->name : "?",
                                 (int)type);
    size_t esize = is_f32 ? 4 : 8;
    bool raw = t->has_raw_data && t->raw_data.len > 0;
    if (raw && t->raw_data.len != (size_t)numel * esize)
        return dq_onnx_node_fail(c, err, DQ_ERR_FORMAT, "tensor '%s' has %zu data bytes for "
                                 "%lld elements", t->name ? t->name : "?", t->raw_data.len,
                                 (long long)numel);
    if (!raw)
        DQ_TRY(s_count(c, t, (int64_t)(is_f32 ? t->n_float_data : t->n_double_data), numel,
                       err));
    float *v = malloc((size_t)(numel > 0 ? numel : 1) * sizeof *v);
    if (!v) return dq_onnx_node_fail(c, err, DQ_ERR_NOMEM, "no memory for tensor '%s'",
                                     t->name ? t->name : "?");
    for (int64_t i = 0; i < numel; i++) {
        double x;
        if (raw) {
            if (is_f32) {
                float f;
                memcpy(&f, t->raw_data.data + i * 4, 4);
                x = f;
            } else {
                memcpy(&x, t->raw_data.data + i * 8, 8);
            }
        } else {
            x = is_f32 ? (double)t->float_data[i] : t->double_data[i];
        }
        if (!isfinite((float)x)) {
            free(v);
            return dq_onnx_node_fail(c, err, DQ_ERR_FORMAT, "tensor '%s' holds a non-finite "
                                     "value at element %lld", t->name ? t->name : "?",
                                     (long long)i);
        }
        v[i] = (float)x;
    }
    *out = v;
    if (n) *n = numel;
    return DQ_OK;
}

dq_status dq_onnx_tensor_ints(dq_onnx_ctx *c, const Onnx__TensorProto *t, int64_t *out,
                              int max, int *n, dq_err *err)
{
    int64_t numel;
    DQ_TRY(s_begin(c, t, &numel, err));
    if (numel > max)
        return dq_onnx_node_fail(c, err, DQ_ERR_UNSUPPORTED, "tensor '%s' has %lld elements "
                                 "(at most %d here)", t->name ? t->name : "?",
                                 (long long)numel, max);
    int32_t type = t->has_data_type ? t->data_type : 0;
    bool raw = t->has_raw_data && t->raw_data.len > 0;
    size_t esize = type == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 ? 8 : 4;
    if (raw && t->raw_data.len != (size_t)numel * esize)
        return dq_onnx_node_fail(c, err, DQ_ERR_FORMAT, "tensor '%s' has %zu data bytes for "
                                 "%lld elements", t->name ? t->name : "?", t->raw_data.len,
                                 (long long)numel);
    if (type == ONNX__TENSOR_PROTO__DATA_TYPE__INT64) {
        if (raw) {
            if (numel) memcpy(out, t->raw_data.data, (size_t)numel * 8);
        } else {
            DQ_TRY(s_count(c, t, (int64_t)t->n_int64_data, numel, err));
            if (numel) memcpy(out, t->int64_data, (size_t)numel * 8);
        }
    } else if (type == ONNX__TENSOR_PROTO__DATA_TYPE__INT32) {
        for (int64_t i = 0; i < numel; i++) {
            int32_t x;
            if (raw) {
                memcpy(&x, t->raw_data.data + i * 4, 4);
            } else {
                DQ_TRY(s_count(c, t, (int64_t)t->n_int32_data, numel, err));
                x = t->int32_data[i];
            }
            out[i] = x;
        }
    } else {
        return dq_onnx_node_fail(c, err, DQ_ERR_UNSUPPORTED, "tensor '%s' has element type %d "
                                 "(int64 or int32 expected)", t->name ? t->name : "?",
                                 (int)type);
    }
    *n = (int)numel;
    return DQ_OK;
}

const Onnx__AttributeProto *dq_onnx_attr(const dq_onnx_ctx *c, const char *name)
{
    const Onnx__NodeProto *nd = c->node;
    for (size_t i = 0; i < nd->n_attribute; i++)
        if (nd->attribute[i]->name && strcmp(nd->attribute[i]->name, name) == 0)
            return nd->attribute[i];
    return NULL;
}

/* The attribute's declared type, or what its filled field implies (old
 * exporters leave `type` out). */
static int s_attr_type(const Onnx__AttributeProto *a)
{
    if (a->has_type) return (int)a->type;
    if (a->has_f) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
    if (a->has_i) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    if (a->has_s) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
    if (a->t) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR;
    if (a->n_ints) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
    if (a->n_floats) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS;
    return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__UNDEFINED;
}

static dq_status s_attr_type_fail(dq_onnx_ctx *c, const char *name, const char *want,
                                  dq_err *err)
{
    return dq_onnx_node_fail(c, err, DQ_ERR_FORMAT, "attribute '%s' is not %s", name, want);
}

dq_status dq_onnx_attr_int(dq_onnx_ctx *c, const char *name, int64_t def, int64_t *v,
                           dq_err *err)
{
    const Onnx__AttributeProto *a = dq_onnx_attr(c, name);
    *v = def;
    if (!a) return DQ_OK;
    if (s_attr_type(a) != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT)
        return s_attr_type_fail(c, name, "an integer", err);
    *v = a->i;
    return DQ_OK;
}

dq_status dq_onnx_attr_float(dq_onnx_ctx *c, const char *name, float def, float *v,
                             dq_err *err)
{
    const Onnx__AttributeProto *a = dq_onnx_attr(c, name);
    *v = def;
    if (!a) return DQ_OK;
    if (s_attr_type(a) != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT)
        return s_attr_type_fail(c, name, "a float", err);
    if (isnan(a->f)) return s_attr_type_fail(c, name, "a number", err);
    *v = a->f;
    return DQ_OK;
}

dq_status dq_onnx_attr_ints(dq_onnx_ctx *c, const char *name, int64_t *v, int max, int *n,
                            dq_err *err)
{
    const Onnx__AttributeProto *a = dq_onnx_attr(c, name);
    *n = -1;
    if (!a) return DQ_OK;
    if (s_attr_type(a) != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS &&
        !(a->n_ints == 0 && s_attr_type(a) == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__UNDEFINED))
        return s_attr_type_fail(c, name, "a list of integers", err);
    if (a->n_ints > (size_t)max)
        return dq_onnx_node_fail(c, err, DQ_ERR_UNSUPPORTED, "attribute '%s' has %zu values "
                                 "(at most %d here)", name, a->n_ints, max);
    if (a->n_ints) memcpy(v, a->ints, a->n_ints * sizeof *v);
    *n = (int)a->n_ints;
    return DQ_OK;
}

dq_status dq_onnx_attr_string(dq_onnx_ctx *c, const char *name, char *buf, size_t size,
                              dq_err *err)
{
    const Onnx__AttributeProto *a = dq_onnx_attr(c, name);
    buf[0] = '\0';
    if (!a) return DQ_OK;
    if (s_attr_type(a) != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING)
        return s_attr_type_fail(c, name, "a string", err);
    size_t len = a->s.len < size - 1 ? a->s.len : size - 1;
    if (len) memcpy(buf, a->s.data, len);
    buf[len] = '\0';
    for (size_t i = 0; i < len; i++)
        if (buf[i] < 0x20 || buf[i] > 0x7e) buf[i] = '?';
    return DQ_OK;
}
