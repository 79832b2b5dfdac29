/* model_load.h - load a model for inference, from a model file + weights
 * or from an ONNX file that carries both.
 *
 * Every program that runs a teacher (distillq-teacher, distillq-predict,
 * distillq-train --teacher-local) loads it through here, so the rules are
 * the same everywhere: "*.onnx" is imported (its initializers are the
 * weights, and giving weights as well is an error rather than a silent
 * choice between two sources), anything else is a model file that needs
 * its safetensors weights.
 */
#ifndef DQ_MODEL_LOAD_H
#define DQ_MODEL_LOAD_H

#include "base/status.h"
#include "model/net.h"

/* Loads model_path (and weights_path unless it is an ONNX file, for which
 * weights_path must be NULL). On failure *out is NULL and err says why. */
dq_status dq_model_load(dq_net_t **out, const char *model_path, const char *weights_path,
                        dq_err *err);

#endif
