/* onnx_int.h - what the ONNX importer's files share (not a public API).
 *
 * onnx_import.c walks the graph and owns the translation state below (the
 * value table, the layers emitted so far, the parameters); onnx_ops.c maps
 * one node of each supported operator type onto it; onnx_tensor.c reads
 * tensor payloads and attributes with every size checked. The value table
 * gives each ONNX value (by name) its origin - the model input, a layer's
 * output or a constant - and its per-sample shape, which is what the
 * operator mappings need to write sizes (in=, out=) and to refuse shapes
 * the layer types cannot express.
 */
#ifndef DQ_ONNX_INT_H
#define DQ_ONNX_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "model/onnx.pb-c.h"
#include "model/onnx_import.h"
#include "base/status.h"

#define DQ_ONNX_INPUT (-1) /* layer index meaning the model input */

typedef enum { DQ_ONNX_V_INPUT, DQ_ONNX_V_LAYER, DQ_ONNX_V_CONST } dq_onnx_vkind;

typedef struct {
    const char *name;                /* points into the decoded message */
    dq_onnx_vkind kind;
    int layer;                       /* V_LAYER: producer; V_INPUT: DQ_ONNX_INPUT */
    int rank;                        /* per-sample: 1 [F] or 3 [C, H, W] */
    int64_t dims[3];
    const Onnx__TensorProto *tensor; /* V_CONST */
    int pad;                         /* zero padding a Pad node added on H and W,
                                        taken up by the Conv/AveragePool reading it */
} dq_onnx_value;

typedef enum {
    DQ_ONNX_L_CONV2D, DQ_ONNX_L_BATCHNORM2D, DQ_ONNX_L_RELU, DQ_ONNX_L_CLIP,
    DQ_ONNX_L_MAXPOOL2D, DQ_ONNX_L_AVGPOOL2D, DQ_ONNX_L_GLOBAL_AVGPOOL, DQ_ONNX_L_ADD,
    DQ_ONNX_L_LINEAR, DQ_ONNX_L_FLATTEN, DQ_ONNX_L_COUNT
} dq_onnx_ltype;

typedef struct {
    char name[DQ_ONNX_LAYER_NAME_MAX + 1];
    dq_onnx_ltype type;
    int from, from2;            /* layer index or DQ_ONNX_INPUT; from2: add only */
    int64_t in, out;            /* conv2d channels, linear features, batchnorm2d features */
    int kernel, stride, padding, groups;
    bool bias, count_include_pad;
    float eps, lo, hi;          /* batchnorm2d eps; clip bounds */
} dq_onnx_layer;

typedef struct {
    const char *source;          /* file name for messages */
    const Onnx__GraphProto *graph;
    int64_t opset;
    const Onnx__NodeProto *node; /* the node being mapped, for messages */
    dq_onnx_value *values;
    int n_values, cap_values;
    dq_onnx_layer *layers;
    int n_layers, cap_layers;
    dq_onnx_param *params;
    int n_params, cap_params;
} dq_onnx_ctx;

/* ---- onnx_import.c: the translation state ---- */

/* Fails with "source: node 'n' (Op, opset k): <what>" for the current node. */
dq_status dq_onnx_node_fail(dq_onnx_ctx *c, dq_err *err, dq_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Input i of the current node as a known value (error if absent/unknown). */
dq_status dq_onnx_in(dq_onnx_ctx *c, int i, dq_onnx_value **v, dq_err *err);
/* True when the node has a non-empty input i. */
bool dq_onnx_has_in(const dq_onnx_ctx *c, int i);
/* Input i as a constant (an initializer or a Constant node's value). */
dq_status dq_onnx_in_const(dq_onnx_ctx *c, int i, const Onnx__TensorProto **t, dq_err *err);

/* Appends a layer reading `from`; returns its index in *idx. It is named
 * after `weight` (an initializer name) when that is "<path>.weight" - the
 * PyTorch state_dict key, so parameters keep their PyTorch names - and
 * otherwise after the node: its module path for a layer with parameters
 * (weight not NULL: "/layer1/layer1.0/conv1/Conv" -> "layer1.0.conv1"),
 * path and op for the others ("/layer1/layer1.0/relu/Relu" ->
 * "layer1.0.relu.Relu").
 * The caller fills the type-specific fields. */
dq_status dq_onnx_add_layer(dq_onnx_ctx *c, dq_onnx_ltype type, int from, const char *weight,
                            int *idx, dq_err *err);
/* Defines output 0 of the current node as layer idx's output. */
dq_status dq_onnx_def_layer_out(dq_onnx_ctx *c, int idx, int rank, const int64_t *dims,
                                dq_err *err);
/* Defines output 0 of the current node as another name for v. */
dq_status dq_onnx_def_alias(dq_onnx_ctx *c, const dq_onnx_value *v, dq_err *err);
/* Defines a value for a constant tensor (initializers, Constant nodes). */
dq_status dq_onnx_def_const(dq_onnx_ctx *c, const char *name, const Onnx__TensorProto *t,
                            dq_err *err);
/* Adds parameter "<layer>.<suffix>" with data (ownership taken, also on failure). */
dq_status dq_onnx_add_param(dq_onnx_ctx *c, int layer, const char *suffix, int ndim,
                            const int64_t *shape, float *data, dq_err *err);
/* How many node inputs and graph outputs read the value called name. */
int dq_onnx_consumers(const dq_onnx_ctx *c, const char *name);

/* ---- onnx_ops.c: one mapping per operator type ---- */

/* Maps the current node (c->node); DQ_ERR_UNSUPPORTED for an unknown type. */
dq_status dq_onnx_map_node(dq_onnx_ctx *c, dq_err *err);

/* ---- onnx_tensor.c: checked reads of tensors and attributes ---- */

/* Element count from dims (each >= 0, product <= 2^31). */
dq_status dq_onnx_tensor_numel(dq_onnx_ctx *c, const Onnx__TensorProto *t, int64_t *n,
                               dq_err *err);
/* The tensor's values as a new float array of want elements (FLOAT or
 * DOUBLE, float_data/double_data or raw_data); want < 0 accepts any count,
 * returned in *n. */
dq_status dq_onnx_tensor_floats(dq_onnx_ctx *c, const Onnx__TensorProto *t, int64_t want,
                                float **out, int64_t *n, dq_err *err);
/* Up to max integers (INT64 or INT32) into out, their count in *n. */
dq_status dq_onnx_tensor_ints(dq_onnx_ctx *c, const Onnx__TensorProto *t, int64_t *out,
                              int max, int *n, dq_err *err);

/* Attribute name of the current node, or NULL. */
const Onnx__AttributeProto *dq_onnx_attr(const dq_onnx_ctx *c, const char *name);
/* Integer attribute (def when absent); error if present with another type. */
dq_status dq_onnx_attr_int(dq_onnx_ctx *c, const char *name, int64_t def, int64_t *v,
                           dq_err *err);
dq_status dq_onnx_attr_float(dq_onnx_ctx *c, const char *name, float def, float *v,
                             dq_err *err);
/* Integer list attribute: *n = -1 when absent, else its length (<= max). */
dq_status dq_onnx_attr_ints(dq_onnx_ctx *c, const char *name, int64_t *v, int max, int *n,
                            dq_err *err);
/* String attribute into buf ("" when absent). */
dq_status dq_onnx_attr_string(dq_onnx_ctx *c, const char *name, char *buf, size_t size,
                              dq_err *err);

#endif
