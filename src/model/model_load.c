/* model_load.c - the one place that decides how a teacher is loaded
 * (model_load.h): ONNX import or model file + safetensors weights. */
#include "model/model_load.h"

#include "model/checkpoint.h"
#include "model/onnx_import.h"

dq_status dq_model_load(dq_net_t **out, const char *model_path, const char *weights_path,
                        dq_err *err)
{
    *out = NULL;
    if (dq_onnx_is_path(model_path)) {
        if (weights_path)
            return dq_fail(err, DQ_ERR_ARG, "%s: an ONNX model carries its weights; give no "
                           "weights file with it (got %s)", model_path, weights_path);
        return dq_onnx_load_net(out, model_path, err);
    }
    if (!weights_path)
        return dq_fail(err, DQ_ERR_ARG, "%s: a model file needs its weights (safetensors)",
                       model_path);
    DQ_TRY(dq_net_load(out, model_path, err));
    dq_status st = dq_ckpt_load_weights(*out, weights_path, err);
    if (st != DQ_OK) dq_net_destroy(out);
    return st;
}
