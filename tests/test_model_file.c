/* test_model_file.c - the text model format: every shipped model parses to
 * the PyTorch tutorial's architecture (parameter counts, keys, output
 * shapes), and each kind of mistake is reported with its line number. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "model/model_file.h"

#ifndef DQ_TOP_SRCDIR
#define DQ_TOP_SRCDIR ".."
#endif

typedef struct {
    const char *file;
    int channels, hw;
    int64_t params;
    const char *keys; /* layers with parameters, in order */
    int feat_rank;    /* 0: no "features" output */
    int64_t feat[3];
} s_shipped;

#define S_DEEP "features.0 features.2 features.5 features.7 classifier.0 classifier.3"
#define S_LIGHT "features.0 features.3 classifier.0 classifier.3"
#define S_LIGHT_REG "features.0 features.3 regressor.0 classifier.0 classifier.3"

/* Parameter counts are PyTorch's sum(p.numel() for p in model.parameters()). */
static const s_shipped s_models[] = {
    {"deepnn-fmnist", 1, 28, 938922, S_DEEP, 0, {0}},
    {"lightnn-fmnist", 1, 28, 206010, S_LIGHT, 0, {0}},
    {"deepnn-cifar10", 3, 32, 1186986, S_DEEP, 0, {0}},
    {"lightnn-cifar10", 3, 32, 267738, S_LIGHT, 0, {0}},
    {"deepnn-cosine-fmnist", 1, 28, 938922, S_DEEP, 1, {784}},
    {"lightnn-cosine-fmnist", 1, 28, 206010, S_LIGHT, 1, {784}},
    {"deepnn-cosine-cifar10", 3, 32, 1186986, S_DEEP, 1, {1024}},
    {"lightnn-cosine-cifar10", 3, 32, 267738, S_LIGHT, 1, {1024}},
    {"deepnn-regressor-fmnist", 1, 28, 938922, S_DEEP, 3, {32, 7, 7}},
    {"lightnn-regressor-fmnist", 1, 28, 210650, S_LIGHT_REG, 3, {32, 7, 7}},
    {"deepnn-regressor-cifar10", 3, 32, 1186986, S_DEEP, 3, {32, 8, 8}},
    {"lightnn-regressor-cifar10", 3, 32, 272378, S_LIGHT_REG, 3, {32, 8, 8}},
};

static void test_shipped_models(void **state)
{
    (void)state;
    for (size_t m = 0; m < sizeof s_models / sizeof s_models[0]; m++) {
        const s_shipped *e = &s_models[m];
        char path[512];
        snprintf(path, sizeof path, "%s/models/%s.model", DQ_TOP_SRCDIR, e->file);
        dq_model_file mf;
        dq_err err = {{0}};
        if (dq_mf_load(&mf, path, &err) != DQ_OK) fail_msg("%s: %s", path, err.msg);
        assert_string_equal(mf.name, e->file);
        assert_int_equal(mf.input.channels, e->channels);
        assert_int_equal(mf.input.height, e->hw);
        assert_int_equal(mf.input.width, e->hw);
        assert_int_equal(mf.input.classes, 10);
        if (dq_mf_param_floats(&mf) != e->params)
            fail_msg("%s: %lld params, PyTorch has %lld", e->file,
                     (long long)dq_mf_param_floats(&mf), (long long)e->params);

        /* Layers with parameters, in order, are exactly the PyTorch modules. */
        char keys[256] = "";
        for (int i = 0; i < mf.n_layers; i++) {
            if (dq_mf_layer_param_floats(&mf.layers[i]) == 0) continue;
            assert_true(mf.layers[i].bias);
            if (keys[0]) strcat(keys, " ");
            strcat(keys, mf.layers[i].name);
        }
        assert_string_equal(keys, e->keys);

        int lo = dq_mf_find_output(&mf, "logits");
        assert_true(lo >= 0);
        const dq_mf_layer *ll = &mf.layers[mf.outputs[lo].layer];
        assert_int_equal(ll->out_rank, 1);
        assert_int_equal(ll->out_shape[0], 10);
        int fo = dq_mf_find_output(&mf, "features");
        if (e->feat_rank == 0) {
            assert_int_equal(fo, -1);
            assert_int_equal(mf.n_outputs, 1);
            continue;
        }
        assert_true(fo >= 0);
        const dq_mf_layer *fl = &mf.layers[mf.outputs[fo].layer];
        assert_int_equal(fl->out_rank, e->feat_rank);
        for (int d = 0; d < e->feat_rank; d++) assert_int_equal(fl->out_shape[d], e->feat[d]);
    }
}

/* The residual models: PyTorch's parameter counts (sum of p.numel() over
 * model.parameters(); the names are checked against PyTorch's state_dict by
 * test_resnet_torch.sh), their batch norms and shapes. */
static void test_shipped_residual_models(void **state)
{
    (void)state;
    static const struct {
        const char *file;
        int64_t params;
        int bn, adds, groups_max, layers_min;
    } m[] = {{"resnet18-fmnist", 11175370, 20, 8, 1, 60}, {"mobilenet-tiny-fmnist", 9034, 7, 1, 64, 20}};
    for (size_t k = 0; k < sizeof m / sizeof m[0]; k++) {
        char path[512];
        snprintf(path, sizeof path, "%s/models/%s.model", DQ_TOP_SRCDIR, m[k].file);
        dq_model_file *mf = malloc(sizeof *mf);
        assert_non_null(mf);
        dq_err err = {{0}};
        if (dq_mf_load(mf, path, &err) != DQ_OK) fail_msg("%s: %s", path, err.msg);
        assert_string_equal(mf->name, m[k].file);
        assert_int_equal(mf->input.classes, 10);
        assert_int_equal(dq_mf_param_floats(mf), m[k].params);
        int bn = 0, adds = 0, gmax = 0;
        for (int i = 0; i < mf->n_layers; i++) {
            const dq_mf_layer *l = &mf->layers[i];
            bn += l->type == DQ_LAYER_BATCHNORM2D;
            adds += l->type == DQ_LAYER_ADD;
            if (l->type == DQ_LAYER_CONV2D && l->groups > gmax) gmax = l->groups;
        }
        assert_int_equal(bn, m[k].bn);
        assert_int_equal(adds, m[k].adds);
        assert_int_equal(gmax, m[k].groups_max);
        assert_true(mf->n_layers >= m[k].layers_min);
        free(mf);
    }
}

static void test_shipped_normalisation(void **state)
{
    (void)state;
    dq_model_file mf;
    dq_err err = {{0}};
    assert_int_equal(dq_mf_load(&mf, DQ_TOP_SRCDIR "/models/lightnn-fmnist.model", &err), DQ_OK);
    assert_true(mf.input.mean[0] == 0.5f && mf.input.std[0] == 0.5f);
    assert_int_equal(dq_mf_load(&mf, DQ_TOP_SRCDIR "/models/deepnn-cifar10.model", &err), DQ_OK);
    assert_true(mf.input.mean[0] == 0.485f && mf.input.mean[1] == 0.456f &&
                mf.input.mean[2] == 0.406f);
    assert_true(mf.input.std[0] == 0.229f && mf.input.std[1] == 0.224f &&
                mf.input.std[2] == 0.225f);
}

static void test_syntax_defaults_and_shapes(void **state)
{
    (void)state;
    /* Comments, tabs, CRLF, defaults, from=input and a broadcast normalize. */
    const char *text = "# a comment line\r\n"
                       "name tiny-1   # trailing comment\r\n"
                       "input channels=2 height=9 width=7\n"
                       "normalize mean=0.25 std=2\n"
                       "\n"
                       "layer c\tconv2d in=2 out=5 kernel=3 stride=2 bias=0\n"
                       "layer p maxpool2d kernel=2\n"
                       "layer f flatten\n"
                       "layer side conv2d in=2 out=1 kernel=1 from=input\n"
                       "layer fi flatten from=side\n"
                       "layer ap avgpool1d kernel=4 from=fi\n"
                       "layer l linear in=10 out=3 from=f\n"
                       "layer d dropout p=0.25\n"
                       "output logits d\n"
                       "output side ap";
    dq_model_file mf;
    dq_err err = {{0}};
    if (dq_mf_parse(&mf, text, "tiny.model", &err) != DQ_OK) fail_msg("%s", err.msg);
    assert_string_equal(mf.name, "tiny-1");
    assert_true(mf.input.mean[1] == 0.25f && mf.input.std[1] == 2.0f);
    assert_int_equal(mf.n_layers, 8);
    const dq_mf_layer *c = &mf.layers[0];
    assert_int_equal(c->from, DQ_MF_INPUT);
    assert_int_equal(c->padding, 0);
    assert_false(c->bias);
    assert_int_equal(c->line, 6);
    /* (9-3)/2+1 = 4, (7-3)/2+1 = 3 */
    assert_int_equal(c->out_shape[0], 5);
    assert_int_equal(c->out_shape[1], 4);
    assert_int_equal(c->out_shape[2], 3);
    const dq_mf_layer *p = &mf.layers[1];
    assert_int_equal(p->stride, 2); /* defaults to the kernel */
    assert_int_equal(p->out_shape[1], 2);
    assert_int_equal(p->out_shape[2], 1);
    assert_int_equal(mf.layers[2].out_shape[0], 10);
    assert_int_equal(mf.layers[3].from, DQ_MF_INPUT);
    assert_int_equal(mf.layers[3].stride, 1);
    assert_true(mf.layers[3].bias);
    assert_int_equal(mf.layers[4].out_shape[0], 63);
    assert_int_equal(mf.layers[5].out_shape[0], 15); /* (63-4)/4+1 */
    assert_int_equal(mf.layers[6].from, 5 - 3);      /* from=f */
    assert_true(mf.layers[7].p == 0.25f);
    assert_int_equal(mf.input.classes, 3);
    /* 5*2*3*3 (no bias) + 1*2*1*1 + 1 + 10*3 + 3 */
    assert_int_equal(dq_mf_param_floats(&mf), 90 + 3 + 33);
    int64_t ws[4];
    assert_int_equal(dq_mf_weight_shape(&mf.layers[0], ws), 4);
    assert_true(ws[0] == 5 && ws[1] == 2 && ws[2] == 3 && ws[3] == 3);
    assert_int_equal(dq_mf_weight_shape(&mf.layers[1], ws), 0);
}

/* The residual-network layers: shapes, defaults, parameter and weight shapes. */
static void test_residual_layers(void **state)
{
    (void)state;
    const char *text = "name res\n"
                       "input channels=2 height=9 width=9\n"
                       "layer c1 conv2d in=2 out=4 kernel=3 stride=2 padding=1 bias=0\n" /* 4x5x5 */
                       "layer bn1 batchnorm2d features=4 eps=0.001 momentum=0.5\n"
                       "layer r1 relu6\n"
                       "layer dw conv2d in=4 out=8 kernel=3 padding=1 groups=4\n"      /* 8x5x5 */
                       "layer pw conv2d in=8 out=4 kernel=1\n"                         /* 4x5x5 */
                       "layer sum add from=pw,r1\n"
                       "layer cl clip min=-1 max=2.5\n"
                       "layer mp maxpool2d kernel=3 stride=2 padding=1\n"              /* 4x3x3 */
                       "layer ap avgpool2d kernel=2 stride=1 count_include_pad=0 from=sum\n"
                       "layer gap global_avgpool from=mp\n"                            /* 4x1x1 */
                       "layer f flatten\n"
                       "layer fc linear in=4 out=3\n"
                       "output logits fc\n"
                       "output pooled ap\n";
    dq_model_file mf;
    dq_err err = {{0}};
    if (dq_mf_parse(&mf, text, "res.model", &err) != DQ_OK) fail_msg("%s", err.msg);
    const dq_mf_layer *bn = &mf.layers[1], *r6 = &mf.layers[2], *dw = &mf.layers[3];
    const dq_mf_layer *sum = &mf.layers[5], *cl = &mf.layers[6], *mp = &mf.layers[7];
    const dq_mf_layer *ap = &mf.layers[8], *gap = &mf.layers[9];
    assert_int_equal(bn->type, DQ_LAYER_BATCHNORM2D);
    assert_true(bn->eps == 0.001f && bn->momentum == 0.5f && bn->bias);
    assert_true(r6->lo == 0.0f && r6->hi == 6.0f);
    assert_int_equal(dw->groups, 4);
    assert_int_equal(mf.layers[0].groups, 1);
    assert_int_equal(sum->from, 4);
    assert_int_equal(sum->from2, 2);
    assert_int_equal(sum->out_shape[0], 4);
    assert_true(cl->lo == -1.0f && cl->hi == 2.5f);
    assert_int_equal(mp->padding, 1);
    assert_int_equal(mp->out_shape[1], 3); /* (5 + 2 - 3)/2 + 1 */
    assert_int_equal(ap->stride, 1);
    assert_false(ap->count_include_pad);
    assert_int_equal(ap->out_shape[1], 4);
    assert_int_equal(gap->out_rank, 3);
    assert_true(gap->out_shape[0] == 4 && gap->out_shape[1] == 1 && gap->out_shape[2] == 1);
    assert_int_equal(mf.input.classes, 3);
    int64_t ws[4];
    assert_int_equal(dq_mf_weight_shape(dw, ws), 4);
    assert_true(ws[0] == 8 && ws[1] == 1 && ws[2] == 3 && ws[3] == 3); /* [out, in/groups, k, k] */
    assert_int_equal(dq_mf_weight_shape(bn, ws), 1);
    assert_int_equal(ws[0], 4);
    /* c1 4*2*9, bn1 4+4, dw 8*9+8, pw 4*8+4, fc 3*4+3 (buffers are not parameters) */
    assert_int_equal(dq_mf_param_floats(&mf), 72 + 8 + 80 + 36 + 15);
    /* an add may read the input, and a default avgpool2d stride is its kernel */
    const char *t2 = "name r2\ninput channels=1 height=4 width=4\n"
                     "layer a add from=input,input\nlayer p avgpool2d kernel=2\nlayer f flatten\n"
                     "output logits f\n";
    if (dq_mf_parse(&mf, t2, "r2", &err) != DQ_OK) fail_msg("%s", err.msg);
    assert_int_equal(mf.layers[0].from, DQ_MF_INPUT);
    assert_int_equal(mf.layers[0].from2, DQ_MF_INPUT);
    assert_int_equal(mf.layers[1].stride, 2);
    assert_true(mf.layers[1].count_include_pad);
    assert_int_equal(mf.input.classes, 4);
}

/* ---- errors ------------------------------------------------------------------- */

static const char *s_base = "name t\n"                                           /* 1 */
                            "input channels=1 height=8 width=8\n"               /* 2 */
                            "layer c conv2d in=1 out=4 kernel=3 padding=1\n"    /* 3 */
                            "layer r relu\n"                                    /* 4 */
                            "layer p maxpool2d kernel=2\n"                      /* 5 */
                            "layer f flatten\n"                                 /* 6 */
                            "layer l linear in=64 out=10\n"                     /* 7 */
                            "output logits l\n";                                /* 8 */

/* Replaces line `line` (1-based) of s_base with repl ("" drops it; a text
 * ending in '\n' may add lines) and parses the result. */
static dq_status s_parse_edited(int line, const char *repl, dq_err *err)
{
    char text[2048] = "";
    const char *cur = s_base;
    for (int i = 1; *cur; i++) {
        const char *eol = strchr(cur, '\n');
        size_t len = (size_t)(eol - cur) + 1;
        if (i == line) strcat(text, repl);
        else strncat(text, cur, len);
        cur += len;
    }
    dq_model_file mf;
    return dq_mf_parse(&mf, text, "t.model", err);
}

typedef struct {
    int line;
    const char *repl;
    dq_status st;
    const char *msg; /* exact message */
} s_bad;

static void test_errors_name_line_and_problem(void **state)
{
    (void)state;
    static const s_bad cases[] = {
        {4, "layer r relo\n", DQ_ERR_FORMAT,
         "t.model:4: unknown layer type 'relo' (expected conv2d, linear, relu, maxpool2d, "
         "avgpool1d, flatten, dropout, batchnorm2d, relu6, clip, avgpool2d, global_avgpool or "
         "add)"},
        {3, "layer c conv2d in=1 out=4 padding=1\n", DQ_ERR_FORMAT,
         "t.model:3: conv2d c: missing key 'kernel'"},
        {3, "layer c conv2d in=1 out=4 kernel=3x\n", DQ_ERR_FORMAT,
         "t.model:3: conv2d c: bad number '3x' for kernel (expected an integer)"},
        {3, "layer c conv2d in=1 out=4 kernel=0\n", DQ_ERR_FORMAT,
         "t.model:3: conv2d c: kernel=0 outside 1..65536"},
        {4, "layer r relu from=nope\n", DQ_ERR_FORMAT,
         "t.model:4: relu r: from=nope is not an earlier layer"},
        {4, "layer r relu from=l\n", DQ_ERR_FORMAT,
         "t.model:4: relu r: from=l is not an earlier layer"},
        {4, "layer c relu\n", DQ_ERR_FORMAT,
         "t.model:4: duplicate layer name 'c' (first on line 3)"},
        {8, "", DQ_ERR_FORMAT,
         "t.model: no 'output logits <layer>' line (every model needs logits)"},
        {7, "layer l linear in=63 out=10\n", DQ_ERR_SHAPE,
         "t.model:7: linear l in=63 but its input has 64 features"},
        {3, "layer c conv2d in=3 out=4 kernel=3 padding=1\n", DQ_ERR_SHAPE,
         "t.model:3: conv2d c in=3 but its input has 1 channels"},
        {6, "", DQ_ERR_SHAPE,
         "t.model:6: linear l needs a flat input but p gives [4, 4, 4] (add a flatten layer)"},
        {6, "layer f relu\n", DQ_ERR_SHAPE,
         "t.model:7: linear l needs a flat input but f gives [4, 4, 4] (add a flatten layer)"},
        {3, "layer c conv2d in=1 out=4 kernal=3 kernel=3\n", DQ_ERR_FORMAT,
         "t.model:3: conv2d c: unknown key 'kernal' (accepted: in, out, kernel, stride, "
         "padding, bias, groups, from)"},
        {3, "layer c conv2d in=1 out=4 kernel=3 kernel=3\n", DQ_ERR_FORMAT,
         "t.model:3: key 'kernel' given twice"},
        {3, "layer c conv2d in=1 out=4 kernel 3\n", DQ_ERR_FORMAT,
         "t.model:3: expected key=value, got 'kernel'"},
        {3, "layer c conv2d in=1 out=4 kernel=9\n", DQ_ERR_SHAPE,
         "t.model:3: conv2d c: kernel 9 does not fit its input [1, 8, 8]"},
        {5, "layer p maxpool2d kernel=2\nlayer d dropout p=1\n", DQ_ERR_FORMAT,
         "t.model:6: dropout d: p=1 outside [0, 1)"},
        {4, "layr r relu\n", DQ_ERR_FORMAT,
         "t.model:4: unknown directive 'layr' (expected name, input, normalize, layer or "
         "output)"},
        {8, "output logits p\n", DQ_ERR_SHAPE,
         "t.model: output logits: layer p is not flat (logits must be [classes])"},
        {8, "output logits nope\n", DQ_ERR_FORMAT,
         "t.model:8: output logits: 'nope' is not a layer defined above"},
        {8, "output logits l\noutput logits c\n", DQ_ERR_FORMAT,
         "t.model:9: duplicate output name 'logits'"},
        {1, "", DQ_ERR_FORMAT, "t.model: no 'name' line"},
        {1, "name bad/name\n", DQ_ERR_FORMAT,
         "t.model:1: bad model name 'bad/name' (letters, digits, _ . -)"},
        {2, "input channels=1 height=8\n", DQ_ERR_FORMAT, "t.model:2: input: missing key 'width'"},
        {2, "input channels=5 height=8 width=8\n", DQ_ERR_FORMAT,
         "t.model:2: input: channels=5 outside 1..4"},
        {2, "", DQ_ERR_FORMAT,
         "t.model:2: layer before 'input' (the input shape must come first)"},
        {4, "layer r relu\ninput channels=1 height=8 width=8\n", DQ_ERR_FORMAT,
         "t.model:5: input given twice"},
        {2, "input channels=1 height=8 width=8\nnormalize mean=0.1,0.2 std=1\n", DQ_ERR_FORMAT,
         "t.model:3: normalize: mean and std need 1 value or one per channel (1); got 2 and 1"},
        {2, "input channels=1 height=8 width=8\nnormalize mean=0.1 std=0\n", DQ_ERR_FORMAT,
         "t.model:3: normalize: std values must be > 0"},
        {2, "input channels=1 height=8 width=8\nnormalize mean=abc std=1\n", DQ_ERR_FORMAT,
         "t.model:3: bad number 'abc' for mean (expected a finite number)"},
        /* the residual-network layers (issue 9) */
        {5, "layer p maxpool2d kernel=2\nlayer a add\n", DQ_ERR_FORMAT,
         "t.model:6: add a: needs from=a,b (two earlier layers or input)"},
        {5, "layer p maxpool2d kernel=2\nlayer a add from=c,p\n", DQ_ERR_SHAPE,
         "t.model:6: add a: c gives [4, 8, 8] but p gives [4, 4, 4] (the shapes must be equal)"},
        {5, "layer p maxpool2d kernel=2\nlayer a add from=p,nope\n", DQ_ERR_FORMAT,
         "t.model:6: add a: from=nope is not an earlier layer"},
        {5, "layer p maxpool2d kernel=2\nlayer a add from=p,p,p\n", DQ_ERR_FORMAT,
         "t.model:6: add a: from=p,p,p names more than two layers"},
        {4, "layer r relu from=c,c\n", DQ_ERR_FORMAT,
         "t.model:4: relu r: from=c,c names two layers (only add takes two)"},
        {4, "layer r batchnorm2d features=3\n", DQ_ERR_SHAPE,
         "t.model:4: batchnorm2d r features=3 but its input has 4 channels"},
        {4, "layer r batchnorm2d features=4 eps=0\n", DQ_ERR_FORMAT,
         "t.model:4: batchnorm2d r: eps must be > 0 and momentum in [0, 1]"},
        {7, "layer l batchnorm2d features=64\n", DQ_ERR_SHAPE,
         "t.model:7: batchnorm2d l needs a [C, H, W] input but f gives [64]"},
        {3, "layer c conv2d in=1 out=4 kernel=3 padding=1 groups=3\n", DQ_ERR_SHAPE,
         "t.model:3: conv2d c: groups=3 must divide in=1 and out=4"},
        {5, "layer p maxpool2d kernel=2 padding=2\n", DQ_ERR_FORMAT,
         "t.model:5: maxpool2d p: padding=2 is more than half the kernel 2"},
        {5, "layer p avgpool2d kernel=2 count_include_pad=2\n", DQ_ERR_FORMAT,
         "t.model:5: avgpool2d p: count_include_pad=2 outside 0..1"},
        {4, "layer r clip min=2 max=1\n", DQ_ERR_FORMAT, "t.model:4: clip r: min=2 is above max=1"},
        {4, "layer r clip min=0\n", DQ_ERR_FORMAT, "t.model:4: clip r: needs min= and max="},
        {7, "layer l global_avgpool\n", DQ_ERR_SHAPE,
         "t.model:7: global_avgpool l needs a [C, H, W] input but f gives [64]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dq_err err = {{0}};
        dq_status st = s_parse_edited(cases[i].line, cases[i].repl, &err);
        if (st != cases[i].st || strcmp(err.msg, cases[i].msg) != 0)
            fail_msg("case %zu: got status %d \"%s\"\n  want %d \"%s\"", i, st, err.msg,
                     cases[i].st, cases[i].msg);
    }
    /* The unedited base is valid, so each case fails for its own reason. */
    dq_err err = {{0}};
    assert_int_equal(s_parse_edited(0, "", &err), DQ_OK);
}

static void test_load_errors(void **state)
{
    (void)state;
    dq_model_file mf;
    dq_err err = {{0}};
    assert_int_equal(dq_mf_load(&mf, "/nonexistent/x.model", &err), DQ_ERR_IO);
    assert_non_null(strstr(err.msg, "/nonexistent/x.model: cannot open model file"));
    /* A file's errors carry its path. */
    char path[] = "/tmp/dq_test_mf_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    fputs("name x\ninput channels=1 height=4 width=4\nlayer a softmax\n", f);
    fclose(f);
    assert_int_equal(dq_mf_load(&mf, path, &err), DQ_ERR_FORMAT);
    char want[256];
    snprintf(want, sizeof want, "%s:3: unknown layer type 'softmax'", path);
    assert_non_null(strstr(err.msg, want));
    remove(path);
}

static void test_over_long_line_and_too_many_layers(void **state)
{
    (void)state;
    static char text[16384];
    dq_model_file mf;
    dq_err err = {{0}};
    snprintf(text, sizeof text, "name x\n# %01100d\n", 0);
    assert_int_equal(dq_mf_parse(&mf, text, "x", &err), DQ_ERR_FORMAT);
    assert_string_equal(err.msg, "x:2: line longer than 1023 characters");
    size_t off = (size_t)snprintf(text, sizeof text, "name x\ninput channels=1 height=2 width=2\n");
    for (int i = 0; i <= DQ_MF_MAX_LAYERS; i++)
        off += (size_t)snprintf(text + off, sizeof text - off, "layer r%d relu\n", i);
    assert_int_equal(dq_mf_parse(&mf, text, "x", &err), DQ_ERR_FORMAT);
    char want[64];
    snprintf(want, sizeof want, "x:%d: more than %d layers", DQ_MF_MAX_LAYERS + 3,
             DQ_MF_MAX_LAYERS);
    assert_string_equal(err.msg, want);
    assert_true(DQ_MF_MAX_LAYERS >= 128); /* ResNet-18 with its adds and relus is ~70 */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shipped_models),
        cmocka_unit_test(test_shipped_normalisation),
        cmocka_unit_test(test_syntax_defaults_and_shapes),
        cmocka_unit_test(test_residual_layers),
        cmocka_unit_test(test_shipped_residual_models),
        cmocka_unit_test(test_errors_name_line_and_problem),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_over_long_line_and_too_many_layers),
    };
    return cmocka_run_group_tests_name("model_file", tests, NULL, NULL);
}
