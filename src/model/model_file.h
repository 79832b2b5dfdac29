/* model_file.h - the text model format (docs/model-format.md) as a layer list.
 *
 * A model file names the network, its input and normalisation, a list of
 * layers (each reading the previous layer or a named earlier one) and the
 * named outputs. Parsing computes every layer's per-sample input and output
 * shape from the input spec and checks each declared in/out size against
 * what actually flows in, so a wrong file fails at load time with its line
 * number rather than at the first forward pass.
 *
 * The result is a plain value (fixed-size arrays, nothing to free): the net
 * copies it, tests build one from a string.
 */
#ifndef DQ_MODEL_FILE_H
#define DQ_MODEL_FILE_H

#include <stdbool.h>
#include <stdint.h>

#include "model/net.h"
#include "base/status.h"

#define DQ_MF_NAME_MAX 64   /* bytes for a model/layer/output name incl. NUL */
#define DQ_MF_MAX_LAYERS 256 /* ResNet-18 is ~70 with its adds and relus */
#define DQ_MF_MAX_OUTPUTS 8
#define DQ_MF_INPUT (-1)    /* `from` value meaning the model input */
#define DQ_MF_MAX_BYTES (1 << 20) /* larger files are rejected, not truncated */

typedef enum {
    DQ_LAYER_CONV2D,
    DQ_LAYER_LINEAR,
    DQ_LAYER_RELU,
    DQ_LAYER_MAXPOOL2D,
    DQ_LAYER_AVGPOOL1D,
    DQ_LAYER_FLATTEN,
    DQ_LAYER_DROPOUT,
    DQ_LAYER_BATCHNORM2D,
    DQ_LAYER_RELU6,          /* clip with lo=0 hi=6 */
    DQ_LAYER_CLIP,
    DQ_LAYER_AVGPOOL2D,
    DQ_LAYER_GLOBAL_AVGPOOL, /* [C,H,W] -> [C,1,1] */
    DQ_LAYER_ADD,            /* from=a,b: elementwise sum of two earlier outputs */
    DQ_LAYER_TYPE_COUNT
} dq_layer_type;

/* "conv2d", "linear", ... as written in model files. */
const char *dq_layer_type_name(dq_layer_type t);

typedef struct {
    char name[DQ_MF_NAME_MAX]; /* PyTorch module path: params are name.weight/.bias */
    dq_layer_type type;
    int line;                  /* line in the model file, for later messages */
    int from;                  /* index of the layer read, or DQ_MF_INPUT */
    int from2;                 /* add: the second layer read (or DQ_MF_INPUT) */
    int64_t in, out;           /* conv2d: channels; linear, batchnorm2d: features; else 0 */
    int kernel, stride, padding; /* conv2d, maxpool2d, avgpool1d, avgpool2d */
    int groups;                /* conv2d: channel groups (1: ordinary) */
    bool bias;                 /* conv2d, linear (batchnorm2d: always) */
    float p;                   /* dropout probability */
    float eps, momentum;       /* batchnorm2d */
    float lo, hi;              /* clip, relu6 */
    bool count_include_pad;    /* avgpool2d */
    /* Per-sample shapes (no batch dim), computed while parsing. */
    int in_rank, out_rank;
    int64_t in_shape[3], out_shape[3];
} dq_mf_layer;

typedef struct {
    char name[DQ_MF_NAME_MAX];
    int layer; /* index into layers */
} dq_mf_output;

typedef struct dq_model_file {
    char name[DQ_MF_NAME_MAX];
    dq_net_input input; /* classes = size of the logits output */
    int n_layers;
    dq_mf_layer layers[DQ_MF_MAX_LAYERS];
    int n_outputs;
    dq_mf_output outputs[DQ_MF_MAX_OUTPUTS];
} dq_model_file;

/* Parses model text; source names it in messages ("models/x.model").
 * Errors are DQ_ERR_FORMAT (syntax, unknown names) or DQ_ERR_SHAPE (sizes
 * that do not match the shapes flowing in), with "source:line: what". */
dq_status dq_mf_parse(dq_model_file *mf, const char *text, const char *source, dq_err *err);

/* Reads path and parses it (DQ_ERR_IO if unreadable). */
dq_status dq_mf_load(dq_model_file *mf, const char *path, dq_err *err);

/* Index of the layer / output with that name, or -1. */
int dq_mf_find_layer(const dq_model_file *mf, const char *name);
int dq_mf_find_output(const dq_model_file *mf, const char *name);

/* Weight shape of a layer (PyTorch layout: conv2d [out, in/groups, k, k],
 * linear [out, in], batchnorm2d [features]); returns its rank, 0 if none.
 * The bias, when present, has shape [out]. */
int dq_mf_weight_shape(const dq_mf_layer *l, int64_t shape[4]);

/* Floats of weights plus biases of one layer / of the whole model. */
int64_t dq_mf_layer_param_floats(const dq_mf_layer *l);
int64_t dq_mf_param_floats(const dq_model_file *mf);

/* Elements of a layer's per-sample output. */
int64_t dq_mf_out_numel(const dq_mf_layer *l);

#endif
