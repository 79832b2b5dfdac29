/* onnx_net.c - an imported ONNX model as a ready net: the translation's
 * text goes through the model-file parser and the net builder, then every
 * parameter and buffer is copied in by name. Kept apart from the
 * translation (onnx_import.c), which needs no net and is what the fuzz
 * target links. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model_file.h"
#include "model/onnx_import.h"

/* Builds the net from the import's text and copies its tensors in. */
static dq_status s_build(dq_net_t **out, const dq_onnx_import *imp, const char *path,
                         dq_err *err)
{
    dq_model_file *mf = malloc(sizeof *mf);
    if (!mf) return dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", path);
    char src[600];
    snprintf(src, sizeof src, "%s (imported)", path);
    dq_status st = dq_mf_parse(mf, imp->text, src, err);
    if (st == DQ_OK) st = dq_net_from_model_file(out, mf, err);
    free(mf);
    DQ_TRY(st);
    for (int i = 0; i < imp->n_params; i++) {
        const dq_onnx_param *p = &imp->params[i];
        dq_tensor *t = dq_net_find_tensor(*out, p->name);
        if (!t)
            return dq_fail(err, DQ_ERR_NOT_FOUND, "%s: the imported net has no tensor %s",
                           path, p->name);
        if (dq_tensor_numel(t) != p->numel)
            return dq_fail(err, DQ_ERR_SHAPE, "%s: tensor %s has %lld elements in the net, "
                           "%lld in the file", path, p->name, (long long)dq_tensor_numel(t),
                           (long long)p->numel);
        memcpy(t->data, p->data, (size_t)p->numel * sizeof(float));
    }
    return DQ_OK;
}

dq_status dq_onnx_load_net(dq_net_t **out, const char *path, dq_err *err)
{
    *out = NULL;
    dq_onnx_import imp;
    DQ_TRY(dq_onnx_import_file(&imp, path, err));
    dq_status st = s_build(out, &imp, path, err);
    dq_onnx_import_free(&imp);
    if (st != DQ_OK) dq_net_destroy(out);
    return st;
}
