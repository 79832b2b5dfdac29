/* onnx_import.h - an ONNX model (what torch.onnx.export writes) as a
 * distillq network.
 *
 * The importer does not execute ONNX graphs. It translates one: the graph's
 * nodes (topologically sorted, as ONNX requires) are mapped one by one onto
 * layers of the text model format (docs/model-format.md), and the result is
 * model-file TEXT plus the initializers re-laid out as that model's
 * parameters and buffers ("<layer>.weight", "<layer>.running_mean", ...).
 * The text then goes through the ordinary parser and net builder, so an
 * imported model is checked, planned and run exactly like a shipped one
 * (batch-invariant eval forward, the GPU executor, checkpoints), and the
 * translation alone is testable: unit tests compare the emitted text.
 *
 * The protobuf decoding is protoc-c's, generated at build time from the
 * onnx.proto that libonnx-dev installs. Everything read from the file is
 * untrusted: any malformed, truncated or unsupported input is a one-line
 * DQ_ERR_FORMAT / DQ_ERR_UNSUPPORTED naming the file (and the node, its
 * operator type and the opset where one is at fault), never a crash
 * (tests/fuzz_onnx.c).
 */
#ifndef DQ_ONNX_IMPORT_H
#define DQ_ONNX_IMPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/status.h"
#include "model/net.h"

/* Layer names the importer makes are at most DQ_ONNX_LAYER_NAME_MAX
 * characters (the model format's limit); parameter / buffer names are
 * "<layer>.<suffix>" (longest suffix: ".num_batches_tracked"). */
#define DQ_ONNX_LAYER_NAME_MAX 63
#define DQ_ONNX_PARAM_NAME_MAX 88
/* Larger files are refused before reading (protobuf's own 2 GiB limit). */
#define DQ_ONNX_MAX_BYTES ((size_t)1 << 31)

/* One parameter or float buffer of the imported model, in the layout the
 * net expects (PyTorch's: conv [out, in/groups, k, k], linear [out, in]). */
typedef struct {
    char name[DQ_ONNX_PARAM_NAME_MAX];
    int ndim;
    int64_t shape[4];
    int64_t numel;
    float *data; /* owned */
} dq_onnx_param;

/* The translation of one ONNX file. */
typedef struct {
    char *text;             /* model-file text, NUL-terminated (owned) */
    int n_params;
    dq_onnx_param *params;  /* owned */
    int64_t opset;          /* of the default ("ai.onnx") domain */
} dq_onnx_import;

/* Translates an ONNX model held in memory; source names it in messages.
 * The model's name is source's file name without directory and ".onnx".
 * On failure *out is empty (nothing to free) and err says why in one line. */
dq_status dq_onnx_import_buffer(dq_onnx_import *out, const uint8_t *buf, size_t len,
                                const char *source, dq_err *err);

/* Reads path and translates it (DQ_ERR_IO if unreadable). */
dq_status dq_onnx_import_file(dq_onnx_import *out, const char *path, dq_err *err);

/* Frees what an import owns and empties it (safe on an empty one). */
void dq_onnx_import_free(dq_onnx_import *imp);

/* Imports path, builds the net from the emitted text and copies every
 * initializer into it: the result is ready for an eval forward. */
dq_status dq_onnx_load_net(dq_net_t **out, const char *path, dq_err *err);

/* True when path names an ONNX file (ends in ".onnx", any case): the
 * programs' --model switches on this. */
bool dq_onnx_is_path(const char *path);

#endif
