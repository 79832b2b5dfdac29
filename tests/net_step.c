/* net_step.c - a helper for tests/resnet_torch.py (not a test by itself):
 * runs a model file on given inputs and writes every tensor PyTorch is
 * compared against into one safetensors file.
 *
 *   net_step MODEL WEIGHTS X.f32 DY.f32 N OUT.safetensors
 *
 * X.f32 holds N normalised inputs [N,C,H,W] and DY.f32 N logits gradients
 * [N,K], raw little-endian float32. Written: "eval" (eval-mode logits, batch
 * norms folded into their convs), "eval_unfolded" (the same without
 * folding), "train" (training-mode logits of one forward, which also moves
 * the running statistics), "grad.<param>" (the parameter gradients of
 * sum(train * DY)), and the parameters and buffers after that forward
 * under their state_dict names.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/checkpoint.h"
#include "model/net.h"
#include "model/safetensors.h"

static float *s_read(const char *path, size_t n)
{
    FILE *f = fopen(path, "rb");
    float *p = malloc(n * sizeof(float));
    if (!f || !p || fread(p, sizeof(float), n, f) != n) {
        fprintf(stderr, "net_step: cannot read %zu floats from %s\n", n, path);
        exit(2);
    }
    fclose(f);
    return p;
}

static void s_check(dq_status st, const dq_err *err)
{
    if (st != DQ_OK) {
        fprintf(stderr, "net_step: %s\n", err->msg);
        exit(1);
    }
}

static dq_st_tensor s_t(const char *name, const dq_tensor *t, const float *data)
{
    dq_st_tensor s;
    memset(&s, 0, sizeof s);
    s.name = name;
    s.dtype = DQ_ST_F32;
    s.ndim = t->ndim;
    for (int i = 0; i < t->ndim; i++) s.shape[i] = t->shape[i];
    s.data = data;
    s.nbytes = (size_t)dq_tensor_numel(t) * sizeof(float);
    return s;
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: net_step MODEL WEIGHTS X.f32 DY.f32 N OUT.safetensors\n");
        return 2;
    }
    dq_err err = {{0}};
    dq_net_t *net = NULL;
    s_check(dq_net_load(&net, argv[1], &err), &err);
    s_check(dq_ckpt_load_weights(net, argv[2], &err), &err);
    const dq_net_input *ip = dq_net_input_spec(net);
    int64_t N = atoll(argv[5]), per = (int64_t)ip->channels * ip->height * ip->width;
    float *x = s_read(argv[3], (size_t)(N * per)), *dy = s_read(argv[4], (size_t)(N * ip->classes));
    s_check(dq_net_plan(net, N, &err), &err);
    dq_tensor in = dq_tensor_view4(x, N, ip->channels, ip->height, ip->width);
    size_t lbytes = (size_t)(N * ip->classes) * sizeof(float);
    float *ev = malloc(lbytes), *evu = malloc(lbytes), *tr = malloc(lbytes);
    s_check(dq_net_forward(net, &in, false, NULL, &err), &err);
    memcpy(ev, dq_net_output(net, "logits")->data, lbytes);
    dq_net_set_bn_fold(net, false);
    s_check(dq_net_forward(net, &in, false, NULL, &err), &err);
    memcpy(evu, dq_net_output(net, "logits")->data, lbytes);
    dq_net_set_bn_fold(net, true);
    dq_rng rng;
    dq_rng_seed(&rng, 1);
    dq_net_zero_grad(net);
    s_check(dq_net_forward(net, &in, true, &rng, &err), &err);
    memcpy(tr, dq_net_output(net, "logits")->data, lbytes);
    memcpy(dq_net_output_grad(net, "logits")->data, dy, lbytes);
    s_check(dq_net_backward(net, &err), &err);

    int np = dq_net_param_count(net), nb = dq_net_buffer_count(net);
    int n = 3 + 2 * np + nb;
    dq_st_tensor *t = calloc((size_t)n, sizeof *t);
    char (*gname)[160] = calloc((size_t)np + 1, sizeof *gname);
    const dq_tensor *logits = dq_net_output(net, "logits");
    int k = 0;
    t[k++] = s_t("eval", logits, ev);
    t[k++] = s_t("eval_unfolded", logits, evu);
    t[k++] = s_t("train", logits, tr);
    for (int i = 0; i < np; i++) {
        const dq_tensor *p = dq_net_param(net, i);
        snprintf(gname[i], sizeof gname[i], "grad.%s", dq_net_param_name(net, i));
        t[k++] = s_t(dq_net_param_name(net, i), p, p->data);
        t[k++] = s_t(gname[i], p, dq_net_param_grad(net, i)->data);
    }
    for (int i = 0; i < nb; i++) {
        const dq_tensor *b = dq_net_buffer(net, i);
        if (b) {
            t[k++] = s_t(dq_net_buffer_name(net, i), b, b->data);
        } else {
            dq_st_tensor s;
            memset(&s, 0, sizeof s);
            s.name = dq_net_buffer_name(net, i);
            s.dtype = DQ_ST_I64;
            s.data = dq_net_buffer_i64(net, i);
            s.nbytes = 8;
            t[k++] = s;
        }
    }
    s_check(dq_st_write(argv[6], t, k, NULL, 0, &err), &err);
    free(t), free(gname), free(x), free(dy), free(ev), free(evu), free(tr);
    dq_net_destroy(&net);
    return 0;
}
