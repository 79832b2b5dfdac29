/* fuzz_onnx.c - libFuzzer target for the ONNX importer (src/model/onnx_*.c
 * and protoc-c's decoder generated from onnx.proto).
 *
 * Any input must translate or fail with a one-line reason naming the
 * source, never crash, leak or read out of bounds (ASan/UBSan, every
 * sanitizer finding fatal). A translation must also hold what the loader
 * relies on: text present, every parameter named "<layer>.<suffix>" with
 * numel = product of its shape and data for all of it; and its text must go
 * through the model-file parser to a model or a reason, never a crash.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/model_file.h"
#include "model/onnx_import.h"

static void s_check(int cond)
{
    if (!cond) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static dq_model_file mf;
    dq_onnx_import imp;
    dq_err err = {{0}};
    if (dq_onnx_import_buffer(&imp, data, size, "f.onnx", &err) != DQ_OK) {
        s_check(strncmp(err.msg, "f.onnx: ", 8) == 0);
        s_check(strchr(err.msg, '\n') == NULL);
        s_check(imp.text == NULL && imp.params == NULL);
        return 0;
    }
    s_check(imp.text != NULL);
    for (int i = 0; i < imp.n_params; i++) {
        const dq_onnx_param *p = &imp.params[i];
        int64_t n = 1;
        for (int d = 0; d < p->ndim; d++) n *= p->shape[d];
        s_check(n == p->numel && strchr(p->name, '.') != NULL);
        volatile float sum = 0;
        for (int64_t k = 0; k < p->numel; k++) sum += p->data[k]; /* ASan checks the extent */
        (void)sum;
    }
    if (dq_mf_parse(&mf, imp.text, "f.onnx (imported)", &err) != DQ_OK)
        s_check(err.msg[0] != '\0');
    dq_onnx_import_free(&imp);
    return 0;
}
