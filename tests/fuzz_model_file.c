/* fuzz_model_file.c - libFuzzer target for the text model format
 * (src/model/model_file.c) through dq_mf_load, the entry point every
 * program uses: a model file is outside input (users write them), so any
 * bytes must parse or fail with "file:line: what", never crash or overflow
 * (UBSan is fatal). A model that parses must keep the parser's promises
 * that the net builds on: layers read only earlier layers, every shape is
 * positive and of rank 1..3, per-sample sizes and weights stay under 2^31,
 * names are unique and found, outputs point at layers, logits are flat.
 * Seeds: the shipped models/ (copied by tests/test_fuzz.sh) and one small
 * model of every layer type written here.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "model/model_file.h"

static void s_write_seeds(void)
{
    static const char m[] =
        "name tiny\n"
        "input channels=3 height=8 width=8\n"
        "normalize mean=0.5,0.4,0.3 std=0.2\n"
        "layer c conv2d in=3 out=4 kernel=3 padding=1 stride=1\n"
        "layer r relu\n"
        "layer p maxpool2d kernel=2 stride=2\n"
        "layer f flatten\n"
        "layer d dropout p=0.25\n"
        "layer fc linear in=64 out=10 bias=0\n"
        "layer a avgpool1d kernel=2 from=f   # 64 -> 32\n"
        "output logits fc\n"
        "output features a\n";
    fz_seed("tiny.model", m, sizeof m - 1);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    FZ_SEEDS_THEN_EXIT(s_write_seeds);
    return 0;
}

static void s_check_shape(int rank, const int64_t *shape)
{
    fz_check(rank >= 1 && rank <= 3);
    int64_t n = 1;
    for (int i = 0; i < rank; i++) {
        fz_check(shape[i] >= 1);
        n *= shape[i];
        fz_check(n < (INT64_C(1) << 31));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static dq_model_file mf; /* ~30 KB: not on the stack */
    dq_err err = {{0}};
    if (dq_mf_load(&mf, fz_file(0, data, size), &err) != DQ_OK) {
        fz_check(err.msg[0] != '\0');
        return 0;
    }
    fz_check(memchr(mf.name, '\0', sizeof mf.name) && mf.name[0]);
    const dq_net_input *in = &mf.input;
    fz_check(in->channels >= 1 && in->channels <= DQ_NET_MAX_CHANNELS);
    fz_check(in->height >= 1 && in->width >= 1);
    for (int c = 0; c < in->channels; c++) fz_check(in->std[c] > 0.0f);
    fz_check(mf.n_layers >= 1 && mf.n_layers <= DQ_MF_MAX_LAYERS);
    for (int i = 0; i < mf.n_layers; i++) {
        const dq_mf_layer *l = &mf.layers[i];
        fz_check(memchr(l->name, '\0', sizeof l->name) && l->name[0]);
        fz_check((int)l->type >= 0 && l->type < DQ_LAYER_TYPE_COUNT);
        fz_check(l->from >= DQ_MF_INPUT && l->from < i);
        s_check_shape(l->in_rank, l->in_shape);
        s_check_shape(l->out_rank, l->out_shape);
        if (l->from >= 0) {
            const dq_mf_layer *src = &mf.layers[l->from];
            fz_check(src->out_rank == l->in_rank);
            fz_check(memcmp(src->out_shape, l->in_shape, 8 * (size_t)l->in_rank) == 0);
        }
        int64_t w = dq_mf_layer_param_floats(l);
        fz_check(w >= 0 && w < (INT64_C(1) << 31));
        fz_check(dq_mf_out_numel(l) >= 1);
        fz_check(dq_mf_find_layer(&mf, l->name) == i);
        fz_check(strcmp(dq_layer_type_name(l->type), "") != 0);
    }
    fz_check(dq_mf_param_floats(&mf) >= 0);
    fz_check(mf.n_outputs >= 1 && mf.n_outputs <= DQ_MF_MAX_OUTPUTS);
    for (int i = 0; i < mf.n_outputs; i++) {
        fz_check(mf.outputs[i].layer >= 0 && mf.outputs[i].layer < mf.n_layers);
        fz_check(dq_mf_find_output(&mf, mf.outputs[i].name) == i);
    }
    int lo = dq_mf_find_output(&mf, "logits");
    fz_check(lo >= 0 && mf.layers[mf.outputs[lo].layer].out_rank == 1);
    fz_check(in->classes == mf.layers[mf.outputs[lo].layer].out_shape[0]);
    return 0;
}
