/* test_onnx.c - the ONNX importer's translation alone: small models are
 * built here with protoc-c's structs and packed to bytes (no PyTorch
 * needed), and the model-file text, the re-laid-out parameters and the
 * one-line errors are checked exactly. The forward against PyTorch is
 * tests/test_onnx_torch.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "model/model_file.h"
#include "model/model_load.h"
#include "model/onnx.pb-c.h"
#include "model/onnx_import.h"
#include "teacher_worker/teacher.h"
#include "tmpdir.h"

#define S_N 16  /* nodes */
#define S_A 48  /* attributes */
#define S_I 16  /* initializers */

/* A model under construction; every pointer points into the builder. */
typedef struct {
    Onnx__ModelProto m;
    Onnx__GraphProto g;
    Onnx__OperatorSetIdProto opset, *opsets[1];
    Onnx__NodeProto node[S_N], *nodes[S_N];
    char *io[S_N][2][6];
    Onnx__AttributeProto attr[S_A];
    Onnx__AttributeProto *attrs[S_N][8];
    int n_attr;
    Onnx__TensorProto init[S_I], *inits[S_I];
    float fdata[S_I][512];
    int64_t dims[S_I][4];
    int64_t ints[S_A][8];
    Onnx__ValueInfoProto vin, vout[4], *vins[1], *vouts[4];
    Onnx__TypeProto tp;
    Onnx__TypeProto__Tensor tt;
    Onnx__TensorShapeProto shp;
    Onnx__TensorShapeProto__Dimension dim[4], *pdim[4];
    Onnx__StringStringEntryProto meta[2], *metas[2];
    char pool[4096];
    size_t pool_used;
} s_b;

static char *s_str(s_b *b, const char *s)
{
    size_t n = strlen(s) + 1;
    assert_true(b->pool_used + n <= sizeof b->pool);
    char *p = b->pool + b->pool_used;
    memcpy(p, s, n);
    b->pool_used += n;
    return p;
}

/* Model with opset `opset`, input "x" [N, c, h, w]. */
static void s_begin(s_b *b, int64_t opset, int64_t c, int64_t h, int64_t w)
{
    memset(b, 0, sizeof *b);
    onnx__model_proto__init(&b->m);
    onnx__graph_proto__init(&b->g);
    onnx__operator_set_id_proto__init(&b->opset);
    b->opset.domain = s_str(b, "");
    b->opset.has_version = 1;
    b->opset.version = opset;
    b->opsets[0] = &b->opset;
    b->m.has_ir_version = 1;
    b->m.ir_version = 8;
    b->m.n_opset_import = 1;
    b->m.opset_import = b->opsets;
    b->m.graph = &b->g;
    b->g.node = b->nodes;
    b->g.initializer = b->inits;
    b->g.output = b->vouts;
    onnx__value_info_proto__init(&b->vin);
    onnx__type_proto__init(&b->tp);
    onnx__type_proto__tensor__init(&b->tt);
    onnx__tensor_shape_proto__init(&b->shp);
    int64_t d[4] = {0, c, h, w};
    for (int i = 0; i < 4; i++) {
        onnx__tensor_shape_proto__dimension__init(&b->dim[i]);
        if (i == 0) {
            b->dim[i].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            b->dim[i].dim_param = s_str(b, "N");
        } else {
            b->dim[i].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            b->dim[i].dim_value = d[i];
        }
        b->pdim[i] = &b->dim[i];
    }
    b->shp.n_dim = 4;
    b->shp.dim = b->pdim;
    b->tt.has_elem_type = 1;
    b->tt.elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    b->tt.shape = &b->shp;
    b->tp.value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    b->tp.tensor_type = &b->tt;
    b->vin.name = s_str(b, "x");
    b->vin.type = &b->tp;
    b->vins[0] = &b->vin;
    b->g.n_input = 1;
    b->g.input = b->vins;
}

/* Float initializer; values 0.01 * (i + 1) * sign alternating unless v. */
static void s_init(s_b *b, const char *name, int ndim, const int64_t *dims, const float *v)
{
    int i = (int)b->g.n_initializer++;
    Onnx__TensorProto *t = &b->init[i];
    onnx__tensor_proto__init(t);
    t->name = s_str(b, name);
    t->has_data_type = 1;
    t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    t->n_dims = (size_t)ndim;
    t->dims = b->dims[i];
    int64_t n = 1;
    for (int k = 0; k < ndim; k++) n *= (b->dims[i][k] = dims[k]);
    assert_true(n <= 512);
    for (int64_t k = 0; k < n; k++)
        b->fdata[i][k] = v ? v[k] : 0.01f * (float)(k + 1) * (k % 2 ? -1.0f : 1.0f);
    t->n_float_data = (size_t)n;
    t->float_data = b->fdata[i];
    b->inits[i] = t;
}

/* Int64 initializer. */
static void s_init_i64(s_b *b, const char *name, int n, const int64_t *v)
{
    int i = (int)b->g.n_initializer++;
    Onnx__TensorProto *t = &b->init[i];
    onnx__tensor_proto__init(t);
    t->name = s_str(b, name);
    t->has_data_type = 1;
    t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__INT64;
    t->n_dims = 1;
    t->dims = b->dims[i];
    b->dims[i][0] = n;
    t->n_int64_data = (size_t)n;
    t->int64_data = b->ints[S_A - 1 - i];
    memcpy(t->int64_data, v, (size_t)n * sizeof *v);
    b->inits[i] = t;
}

/* Node op named name, inputs/outputs as "a,b" lists ("" = absent input). */
static Onnx__NodeProto *s_node(s_b *b, const char *op, const char *name, const char *in,
                               const char *out)
{
    int i = (int)b->g.n_node++;
    Onnx__NodeProto *nd = &b->node[i];
    onnx__node_proto__init(nd);
    nd->op_type = s_str(b, op);
    nd->name = s_str(b, name);
    const char *lists[2] = {in, out};
    for (int k = 0; k < 2; k++) {
        char *s = s_str(b, lists[k]);
        size_t n = 0;
        for (char *p = s; n < 6;) {
            char *comma = strchr(p, ',');
            if (comma) *comma = '\0';
            if (*p || comma) b->io[i][k][n++] = p;
            if (!comma) break;
            p = comma + 1;
        }
        if (k == 0) {
            nd->n_input = n;
            nd->input = b->io[i][0];
        } else {
            nd->n_output = n;
            nd->output = b->io[i][1];
        }
    }
    nd->attribute = b->attrs[i];
    b->nodes[i] = nd;
    return nd;
}

static Onnx__AttributeProto *s_attr(s_b *b, Onnx__NodeProto *nd, const char *name,
                                    Onnx__AttributeProto__AttributeType type)
{
    Onnx__AttributeProto *a = &b->attr[b->n_attr++];
    onnx__attribute_proto__init(a);
    a->name = s_str(b, name);
    a->has_type = 1;
    a->type = type;
    nd->attribute[nd->n_attribute++] = a;
    return a;
}

static void s_attr_i(s_b *b, Onnx__NodeProto *nd, const char *name, int64_t v)
{
    Onnx__AttributeProto *a = s_attr(b, nd, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    a->has_i = 1;
    a->i = v;
}

static void s_attr_ints(s_b *b, Onnx__NodeProto *nd, const char *name, int n, ...)
{
    Onnx__AttributeProto *a = s_attr(b, nd, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    a->ints = b->ints[b->n_attr - 1];
    va_list ap;
    va_start(ap, n);
    for (int k = 0; k < n; k++) a->ints[k] = va_arg(ap, int);
    va_end(ap);
    a->n_ints = (size_t)n;
}

static void s_output(s_b *b, const char *name)
{
    int i = (int)b->g.n_output++;
    onnx__value_info_proto__init(&b->vout[i]);
    b->vout[i].name = s_str(b, name);
    b->vouts[i] = &b->vout[i];
}

static void s_meta(s_b *b, const char *key, const char *value)
{
    int i = (int)b->m.n_metadata_props++;
    onnx__string_string_entry_proto__init(&b->meta[i]);
    b->meta[i].key = s_str(b, key);
    b->meta[i].value = s_str(b, value);
    b->metas[i] = &b->meta[i];
    b->m.metadata_props = b->metas;
}

static uint8_t *s_pack(const s_b *b, size_t *len)
{
    *len = onnx__model_proto__get_packed_size(&b->m);
    uint8_t *buf = malloc(*len);
    assert_non_null(buf);
    assert_int_equal(onnx__model_proto__pack(&b->m, buf), *len);
    return buf;
}

/* Imports b as "t.onnx"; returns the status, the import in *imp. */
static dq_status s_import(const s_b *b, dq_onnx_import *imp, dq_err *err)
{
    size_t len;
    uint8_t *buf = s_pack(b, &len);
    dq_status st = dq_onnx_import_buffer(imp, buf, len, "dir/t.onnx", err);
    free(buf);
    return st;
}

/* The import must fail with exactly `want`. */
static void s_expect_error(const s_b *b, const char *want)
{
    dq_onnx_import imp;
    dq_err err = {{0}};
    assert_int_not_equal(s_import(b, &imp, &err), DQ_OK);
    assert_string_equal(err.msg, want);
    assert_null(imp.text);
}

/* conv (bias) -> relu -> maxpool -> flatten -> gemm, torch-style names. */
static void s_cnn(s_b *b, int64_t opset)
{
    s_begin(b, opset, 1, 6, 6);
    s_init(b, "features.0.weight", 4, (int64_t[]){4, 1, 3, 3}, NULL);
    s_init(b, "features.0.bias", 1, (int64_t[]){4}, NULL);
    s_init(b, "fc.weight", 2, (int64_t[]){3, 36}, NULL);
    s_init(b, "fc.bias", 1, (int64_t[]){3}, NULL);
    Onnx__NodeProto *n = s_node(b, "Conv", "/features/features.0/Conv",
                                "x,features.0.weight,features.0.bias", "c");
    s_attr_ints(b, n, "kernel_shape", 2, 3, 3);
    s_attr_ints(b, n, "pads", 4, 1, 1, 1, 1);
    s_attr_ints(b, n, "strides", 2, 1, 1);
    s_attr_ints(b, n, "dilations", 2, 1, 1);
    s_attr_i(b, n, "group", 1);
    s_node(b, "Relu", "/features/features.1/Relu", "c", "r");
    n = s_node(b, "MaxPool", "/features/features.2/MaxPool", "r", "m");
    s_attr_ints(b, n, "kernel_shape", 2, 2, 2);
    s_attr_ints(b, n, "strides", 2, 2, 2);
    n = s_node(b, "Flatten", "/Flatten", "m", "f");
    s_attr_i(b, n, "axis", 1);
    n = s_node(b, "Gemm", "/fc/Gemm", "f,fc.weight,fc.bias", "y");
    s_attr_i(b, n, "transB", 1);
    s_output(b, "y");
}

static void test_cnn_text(void **state)
{
    (void)state;
    s_b *b = malloc(sizeof *b);
    s_cnn(b, 13);
    s_meta(b, "distillq.mean", "0.5");
    s_meta(b, "distillq.std", "0.25");
    dq_onnx_import imp;
    dq_err err = {{0}};
    if (s_import(b, &imp, &err) != DQ_OK) fail_msg("%s", err.msg);
    assert_string_equal(imp.text,
        "# imported from ONNX (opset 13) by distillq\n"
        "name t\n"
        "input channels=1 height=6 width=6\n"
        "normalize mean=0.5 std=0.25\n"
        "layer features.0 conv2d in=1 out=4 kernel=3 stride=1 padding=1 bias=1\n"
        "layer features.1.Relu relu\n"
        "layer features.2.MaxPool maxpool2d kernel=2 stride=2\n"
        "layer Flatten flatten\n"
        "layer fc linear in=36 out=3 bias=1\n"
        "output logits fc\n"
        "output y fc\n");
    assert_int_equal(imp.n_params, 4);
    assert_string_equal(imp.params[0].name, "features.0.weight");
    assert_int_equal(imp.params[0].numel, 36);
    assert_string_equal(imp.params[3].name, "fc.bias");
    assert_true(imp.params[3].data[1] == -0.02f);
    assert_int_equal(imp.opset, 13);
    /* The text is a valid model file as it stands. */
    dq_model_file *mf = malloc(sizeof *mf);
    if (dq_mf_parse(mf, imp.text, "t", &err) != DQ_OK) fail_msg("%s", err.msg);
    assert_int_equal(mf->input.classes, 3);
    free(mf);
    dq_onnx_import_free(&imp);
    assert_null(imp.text);
    free(b);
}

/* Gemm with transB=0 and MatMul + Add: the weight comes out [out, in]. */
static void test_linear_layouts(void **state)
{
    (void)state;
    s_b *b = malloc(sizeof *b);
    s_begin(b, 13, 1, 2, 2);
    float w[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}; /* [K=4, N=3] */
    s_init(b, "w1", 2, (int64_t[]){4, 3}, w);
    s_init(b, "b1", 1, (int64_t[]){3}, (float[]){0.5f, -0.5f, 1});
    s_init(b, "w2", 2, (int64_t[]){3, 2}, NULL);
    s_node(b, "Flatten", "flat", "x", "f");
    s_node(b, "MatMul", "/MatMul", "f,w1", "mm");
    s_node(b, "Add", "/Add", "mm,b1", "a");
    s_node(b, "Gemm", "/Gemm", "a,w2", "y");
    s_output(b, "y");
    dq_onnx_import imp;
    dq_err err = {{0}};
    if (s_import(b, &imp, &err) != DQ_OK) fail_msg("%s", err.msg);
    assert_non_null(strstr(imp.text, "layer MatMul linear in=4 out=3 bias=1\n"
                                     "layer Gemm linear in=3 out=2 bias=0\n"));
    assert_int_equal(imp.n_params, 3);
    assert_string_equal(imp.params[0].name, "MatMul.weight");
    const float want[12] = {1, 4, 7, 10, 2, 5, 8, 11, 3, 6, 9, 12};
    assert_memory_equal(imp.params[0].data, want, sizeof want);
    assert_string_equal(imp.params[1].name, "MatMul.bias");
    assert_true(imp.params[1].data[2] == 1.0f);
    assert_string_equal(imp.params[2].name, "Gemm.weight");
    assert_int_equal(imp.params[2].shape[0], 2);
    assert_int_equal(imp.params[2].shape[1], 3);
    assert_true(imp.params[2].data[1] == b->fdata[2][2]); /* W[0][1] = B[1][0] */
    dq_onnx_import_free(&imp);
    free(b);
}

/* Residual add, batch norm, depthwise conv, Clip from constants, the Pad +
 * AveragePool torch writes for count_include_pad=True, global pool. */
static void test_new_layers_text(void **state)
{
    (void)state;
    s_b *b = malloc(sizeof *b);
    s_begin(b, 11, 2, 4, 4);
    s_init(b, "dw.weight", 4, (int64_t[]){2, 1, 3, 3}, NULL);
    for (int i = 0; i < 4; i++) s_init(b, (const char *[]){"bn.weight", "bn.bias",
                                       "bn.running_mean", "bn.running_var"}[i], 1,
                                       (int64_t[]){2}, (float[]){1, 2});
    s_init(b, "lo", 0, NULL, (float[]){0});
    s_init(b, "hi", 0, NULL, (float[]){6});
    s_init_i64(b, "pads", 8, (int64_t[]){0, 0, 1, 1, 0, 0, 1, 1});
    Onnx__NodeProto *n = s_node(b, "Conv", "/dw/Conv", "x,dw.weight", "c");
    s_attr_i(b, n, "group", 2);
    s_attr_ints(b, n, "pads", 4, 1, 1, 1, 1);
    n = s_node(b, "BatchNormalization", "/bn/BatchNormalization",
               "c,bn.weight,bn.bias,bn.running_mean,bn.running_var", "n");
    s_node(b, "Add", "/Add", "n,x", "a");
    s_node(b, "Clip", "/Clip", "a,lo,hi", "r6");
    s_node(b, "Pad", "/ap/Pad", "r6,pads", "p");
    n = s_node(b, "AveragePool", "/ap/AveragePool", "p", "ap");
    s_attr_ints(b, n, "kernel_shape", 2, 3, 3);
    s_attr_ints(b, n, "strides", 2, 1, 1);
    n = s_node(b, "MaxPool", "/mp/MaxPool", "ap", "mp");
    s_attr_ints(b, n, "kernel_shape", 2, 3, 3);
    s_attr_ints(b, n, "strides", 2, 2, 2);
    s_attr_ints(b, n, "pads", 4, 1, 1, 1, 1);
    s_node(b, "GlobalAveragePool", "/gap/GlobalAveragePool", "mp", "g");
    s_output(b, "g");
    dq_onnx_import imp;
    dq_err err = {{0}};
    if (s_import(b, &imp, &err) != DQ_OK) fail_msg("%s", err.msg);
    assert_string_equal(strstr(imp.text, "layer "),
        "layer dw conv2d in=2 out=2 kernel=3 stride=1 padding=1 bias=0 groups=2\n"
        "layer bn batchnorm2d features=2\n"
        "layer Add add from=bn,input\n"
        "layer Clip relu6\n"
        "layer ap.AveragePool avgpool2d kernel=3 stride=1 padding=1 count_include_pad=1\n"
        "layer mp.MaxPool maxpool2d kernel=3 stride=2 padding=1\n"
        "layer gap.GlobalAveragePool global_avgpool\n"
        "output logits gap.GlobalAveragePool\n"
        "output g gap.GlobalAveragePool\n");
    assert_int_equal(imp.n_params, 5);
    assert_string_equal(imp.params[4].name, "bn.running_var");
    dq_onnx_import_free(&imp);
    free(b);
}

static void test_unsupported(void **state)
{
    (void)state;
    s_b *b = malloc(sizeof *b);
    s_cnn(b, 13);
    b->node[1].op_type = (char *)"Sigmoid";
    s_expect_error(b, "dir/t.onnx: node '/features/features.1/Relu' (Sigmoid, opset 13): "
                      "unsupported operator Sigmoid (supported: Conv, BatchNormalization, "
                      "Relu, Clip, MaxPool, AveragePool, GlobalAveragePool, Add, Gemm, "
                      "MatMul, Flatten, Reshape, Identity, Dropout, Constant, Pad)");
    s_cnn(b, 11);
    b->node[0].attribute[3]->ints[0] = 2; /* dilations */
    s_expect_error(b, "dir/t.onnx: node '/features/features.0/Conv' (Conv, opset 11): "
                      "dilation 2 (only 1)");
    s_cnn(b, 13);
    b->node[0].attribute[1]->ints[2] = 0;
    s_expect_error(b, "dir/t.onnx: node '/features/features.0/Conv' (Conv, opset 13): "
                      "pads must be 4 equal values (symmetric padding)");
    s_cnn(b, 13);
    s_attr_i(b, &b->node[2], "ceil_mode", 1);
    s_expect_error(b, "dir/t.onnx: node '/features/features.2/MaxPool' (MaxPool, opset 13): "
                      "ceil_mode=1 (only floor)");
    s_cnn(b, 13);
    b->node[3].op_type = (char *)"Reshape";
    b->node[3].n_attribute = 0;
    s_init_i64(b, "shape", 3, (int64_t[]){0, 4, 9});
    b->node[3].n_input = 2;
    b->node[3].input[1] = (char *)"shape";
    s_expect_error(b, "dir/t.onnx: node '/Flatten' (Reshape, opset 13): reshape to [0, 4, 9] "
                      "is not a flatten to [N, 36]");
    s_cnn(b, 13);
    b->node[0].domain = (char *)"com.microsoft";
    s_expect_error(b, "dir/t.onnx: node '/features/features.0/Conv' (Conv, opset 13): "
                      "unsupported operator Conv of domain 'com.microsoft'");
    s_cnn(b, 13);
    b->init[0].n_float_data = 35;
    s_expect_error(b, "dir/t.onnx: node '/features/features.0/Conv' (Conv, opset 13): "
                      "tensor 'features.0.weight' has 35 values for 36 elements");
    s_cnn(b, 13);
    s_meta(b, "distillq.std", "1,2");
    s_expect_error(b, "dir/t.onnx: metadata distillq.std='1,2' is not 1 or 1 comma-separated "
                      "positive numbers");
    s_cnn(b, 13);
    b->g.n_output = 0;
    s_expect_error(b, "dir/t.onnx: the graph has 0 outputs (1..7)");
    free(b);
}

/* Every truncation of a valid file fails in one line (or, cut at a field
 * boundary, still translates) - never crashes; garbage fails too. */
static void test_truncated(void **state)
{
    (void)state;
    s_b *b = malloc(sizeof *b);
    s_cnn(b, 13);
    size_t len;
    uint8_t *buf = s_pack(b, &len);
    int failed = 0;
    for (size_t cut = 0; cut < len; cut++) {
        dq_onnx_import imp;
        dq_err err = {{0}};
        if (dq_onnx_import_buffer(&imp, buf, cut, "t.onnx", &err) == DQ_OK) {
            dq_onnx_import_free(&imp);
            continue;
        }
        failed++;
        assert_true(strncmp(err.msg, "t.onnx: ", 8) == 0);
        assert_null(strchr(err.msg, '\n'));
    }
    assert_true(failed > (int)len * 9 / 10);
    for (size_t i = 0; i < len; i++) buf[i] = (uint8_t)(i * 37 + 11);
    dq_onnx_import imp;
    dq_err err = {{0}};
    assert_int_not_equal(dq_onnx_import_buffer(&imp, buf, len, "t.onnx", &err), DQ_OK);
    free(buf);
    free(b);
}

/* A teacher loaded from an ONNX file: weights from its initializers, the
 * file's SHA-256 as identity, the file's name as model name; weights given
 * as well are refused, and a model file without weights too. */
static void test_teacher_identity(void **state)
{
    const dq_test_tmpdir *td = *state;
    s_b *b = malloc(sizeof *b);
    s_cnn(b, 13);
    size_t len;
    uint8_t *buf = s_pack(b, &len);
    char path[128], hex[DQ_MSG_SHA256_HEX + 1];
    snprintf(path, sizeof path, "%s/cnn.onnx", td->dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    dq_err err = {{0}};
    dq_teacher_t *t = NULL;
    if (dq_teacher_new(&t, "svc", path, NULL, 8, &err) != DQ_OK) fail_msg("%s", err.msg);
    assert_int_equal(dq_teacher_sha256_file(path, hex, &err), DQ_OK);
    assert_string_equal(dq_teacher_identity(t)->sha256, hex);
    assert_string_equal(dq_teacher_identity(t)->model, "cnn");
    dq_teacher_destroy(&t);
    assert_int_equal(dq_teacher_new(&t, "svc", path, "w.safetensors", 8, &err), DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "an ONNX model carries its weights"));
    assert_null(t);
    /* The weights really are the initializers: conv weight 0 of the net. */
    dq_net_t *net = NULL;
    if (dq_model_load(&net, path, NULL, &err) != DQ_OK) fail_msg("%s", err.msg);
    assert_true(dq_net_param(net, 0)->data[1] == -0.02f);
    assert_true(dq_net_param(net, 3)->data[2] == 0.03f);
    dq_net_destroy(&net);
    snprintf(path, sizeof path, "%s/../x.model", td->dir);
    assert_int_equal(dq_model_load(&net, path, NULL, &err), DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "needs its weights"));
    free(buf);
    free(b);
}

static int s_setup(void **state)
{
    return dq_test_tmpdir_setup(state, "dq-onnx-");
}

static void test_is_path(void **state)
{
    (void)state;
    assert_true(dq_onnx_is_path("a/b.onnx"));
    assert_true(dq_onnx_is_path("B.ONNX"));
    assert_false(dq_onnx_is_path("x.model"));
    assert_false(dq_onnx_is_path("onnx"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cnn_text),       cmocka_unit_test(test_linear_layouts),
        cmocka_unit_test(test_new_layers_text), cmocka_unit_test(test_unsupported),
        cmocka_unit_test(test_truncated),      cmocka_unit_test(test_is_path),
        cmocka_unit_test_setup_teardown(test_teacher_identity, s_setup,
                                        dq_test_tmpdir_teardown),
    };
    return cmocka_run_group_tests_name("onnx", tests, NULL, NULL);
}
