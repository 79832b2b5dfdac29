/* test_checkpoint.c - weights and training state through safetensors: bit-
 * exact round trips, PyTorch-compatible names and metadata, and every way a
 * file can fail to fit a model, each named by tensor and file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "model/checkpoint.h"
#include "model/safetensors.h"

#ifndef DQ_TOP_SRCDIR
#define DQ_TOP_SRCDIR ".."
#endif

typedef struct {
    char dir[64];
    char path[128]; /* dir/ckpt.safetensors */
} s_tmp;

static int s_setup(void **state)
{
    s_tmp *t = calloc(1, sizeof *t);
    if (!t) return -1;
    snprintf(t->dir, sizeof t->dir, "/tmp/dq_test_ckpt_XXXXXX");
    if (!mkdtemp(t->dir)) {
        free(t);
        return -1;
    }
    snprintf(t->path, sizeof t->path, "%s/ckpt.safetensors", t->dir);
    *state = t;
    return 0;
}

static int s_teardown(void **state)
{
    s_tmp *t = *state;
    remove(t->path);
    rmdir(t->dir);
    free(t);
    return 0;
}

static dq_net_t *s_net(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/models/%s.model", DQ_TOP_SRCDIR, name);
    dq_net_t *net = NULL;
    dq_err err = {{0}};
    if (dq_net_load(&net, path, &err) != DQ_OK) fail_msg("%s: %s", path, err.msg);
    return net;
}

static dq_net_t *s_net_init(const char *name, uint64_t seed)
{
    dq_net_t *net = s_net(name);
    dq_rng rng;
    dq_rng_seed(&rng, seed);
    dq_net_init_params(net, &rng);
    return net;
}

static void test_weights_round_trip_bit_exact(void **state)
{
    s_tmp *t = *state;
    dq_err err = {{0}};
    dq_net_t *a = s_net_init("lightnn-regressor-fmnist", 1);
    if (dq_ckpt_save_weights(a, t->path, &err) != DQ_OK) fail_msg("%s", err.msg);

    /* The file is what PyTorch's save_file(model.state_dict()) would hold. */
    dq_st_file_t *f = NULL;
    assert_int_equal(dq_st_open(&f, t->path, &err), DQ_OK);
    assert_int_equal(dq_st_count(f), dq_net_param_count(a));
    assert_string_equal(dq_st_meta(f, "format"), "pt");
    assert_string_equal(dq_st_meta(f, "model"), "lightnn-regressor-fmnist");
    const dq_st_tensor *w = dq_st_find(f, "regressor.0.weight");
    assert_non_null(w);
    assert_int_equal(w->dtype, DQ_ST_F32);
    assert_int_equal(w->ndim, 4);
    assert_true(w->shape[0] == 32 && w->shape[1] == 16 && w->shape[2] == 3 && w->shape[3] == 3);
    dq_st_close(&f);

    dq_net_t *b = s_net("lightnn-regressor-fmnist");
    if (dq_ckpt_load_weights(b, t->path, &err) != DQ_OK) fail_msg("%s", err.msg);
    assert_memory_equal(dq_net_params(a), dq_net_params(b),
                        (size_t)dq_net_param_floats(a) * sizeof(float));
    dq_net_destroy(&a);
    dq_net_destroy(&b);
}

/* Batch-norm buffers go beside the parameters under their state_dict names
 * (running stats F32, num_batches_tracked an I64 scalar) and come back bit
 * for bit; a file without them does not load. */
static void test_weights_with_buffers(void **state)
{
    s_tmp *t = *state;
    dq_err err = {{0}};
    dq_net_t *a = s_net_init("mobilenet-tiny-fmnist", 5);
    for (int k = 0; k < dq_net_buffer_count(a); k++) {
        dq_tensor *b = dq_net_buffer(a, k);
        if (b)
            for (int64_t i = 0; i < dq_tensor_numel(b); i++) b->data[i] = 0.5f + 0.01f * (float)(i + k);
        else
            *dq_net_buffer_i64(a, k) = 1000 + k;
    }
    if (dq_ckpt_save_weights(a, t->path, &err) != DQ_OK) fail_msg("%s", err.msg);
    dq_st_file_t *f = NULL;
    assert_int_equal(dq_st_open(&f, t->path, &err), DQ_OK);
    assert_int_equal(dq_st_count(f), dq_net_param_count(a) + dq_net_buffer_count(a));
    const dq_st_tensor *nbt = dq_st_find(f, "stem.1.num_batches_tracked");
    assert_non_null(nbt);
    assert_int_equal(nbt->dtype, DQ_ST_I64);
    assert_int_equal(nbt->ndim, 0);
    const dq_st_tensor *rv = dq_st_find(f, "block2.pw.1.running_var");
    assert_non_null(rv);
    assert_int_equal(rv->dtype, DQ_ST_F32);
    assert_true(rv->ndim == 1 && rv->shape[0] == 64);
    dq_st_close(&f);

    dq_net_t *b = s_net("mobilenet-tiny-fmnist");
    if (dq_ckpt_load_weights(b, t->path, &err) != DQ_OK) fail_msg("%s", err.msg);
    assert_memory_equal(dq_net_params(a), dq_net_params(b),
                        (size_t)dq_net_param_floats(a) * sizeof(float));
    for (int k = 0; k < dq_net_buffer_count(a); k++) {
        assert_string_equal(dq_net_buffer_name(a, k), dq_net_buffer_name(b, k));
        if (dq_net_buffer(a, k))
            assert_memory_equal(dq_net_buffer(a, k)->data, dq_net_buffer(b, k)->data,
                                sizeof(float) * (size_t)dq_tensor_numel(dq_net_buffer(a, k)));
        else
            assert_int_equal(*dq_net_buffer_i64(a, k), *dq_net_buffer_i64(b, k));
    }
    assert_non_null(dq_net_find_tensor(b, "block3.dw.1.running_mean"));

    /* Parameters only (as an older writer would): the buffers are missing. */
    int np = dq_net_param_count(a);
    dq_st_tensor *w = calloc((size_t)np, sizeof *w);
    assert_non_null(w);
    for (int i = 0; i < np; i++) {
        const dq_tensor *p = dq_net_param(a, i);
        w[i].name = dq_net_param_name(a, i);
        w[i].dtype = DQ_ST_F32;
        w[i].ndim = p->ndim;
        for (int d = 0; d < p->ndim; d++) w[i].shape[d] = p->shape[d];
        w[i].data = p->data;
        w[i].nbytes = sizeof(float) * (size_t)dq_tensor_numel(p);
    }
    assert_int_equal(dq_st_write(t->path, w, np, NULL, 0, &err), DQ_OK);
    free(w);
    assert_int_equal(dq_ckpt_load_weights(b, t->path, &err), DQ_ERR_NOT_FOUND);
    char want[512];
    snprintf(want, sizeof want, "%s: tensor stem.1.running_mean is missing (model "
             "mobilenet-tiny-fmnist needs it)", t->path);
    assert_string_equal(err.msg, want);
    dq_net_destroy(&a);
    dq_net_destroy(&b);
}

static void test_weights_shape_mismatch_names_tensor_and_file(void **state)
{
    s_tmp *t = *state;
    dq_err err = {{0}};
    dq_net_t *fm = s_net_init("lightnn-fmnist", 2);
    assert_int_equal(dq_ckpt_save_weights(fm, t->path, &err), DQ_OK);
    dq_net_t *cf = s_net_init("lightnn-cifar10", 3);
    float before = dq_net_params(cf)[0];
    assert_int_equal(dq_ckpt_load_weights(cf, t->path, &err), DQ_ERR_SHAPE);
    char want[512];
    snprintf(want, sizeof want, "%s: tensor features.0.weight has shape [16, 1, 3, 3], model "
             "lightnn-cifar10 expects [16, 3, 3, 3]", t->path);
    assert_string_equal(err.msg, want);
    assert_true(dq_net_params(cf)[0] == before); /* nothing was copied */
    dq_net_destroy(&fm);
    dq_net_destroy(&cf);
}

static void test_weights_missing_tensor(void **state)
{
    s_tmp *t = *state;
    dq_err err = {{0}};
    dq_net_t *light = s_net_init("lightnn-fmnist", 4);
    assert_int_equal(dq_ckpt_save_weights(light, t->path, &err), DQ_OK);
    dq_net_t *reg = s_net("lightnn-regressor-fmnist");
    assert_int_equal(dq_ckpt_load_weights(reg, t->path, &err), DQ_ERR_NOT_FOUND);
    char want[512];
    snprintf(want, sizeof want, "%s: tensor regressor.0.weight is missing (model "
             "lightnn-regressor-fmnist needs it)", t->path);
    assert_string_equal(err.msg, want);
    /* Validation precedes copying: features.0.weight (present) was not loaded. */
    assert_true(dq_net_params(reg)[0] == 0.0f);
    dq_net_destroy(&light);
    dq_net_destroy(&reg);
}

/* Writes every parameter of net, plus `extra` (if non-NULL) and with
 * `retype` (if non-NULL) stored as I64, straight through dq_st_write. */
static void s_write_custom(dq_net_t *net, const char *path, const char *extra,
                           const char *retype)
{
    int n = dq_net_param_count(net);
    dq_st_tensor *ts = calloc((size_t)n + 1, sizeof *ts);
    assert_non_null(ts);
    static float one[4] = {1, 2, 3, 4};
    for (int i = 0; i < n; i++) {
        const dq_tensor *p = dq_net_param(net, i);
        ts[i].name = dq_net_param_name(net, i);
        ts[i].dtype = DQ_ST_F32;
        ts[i].ndim = p->ndim;
        for (int d = 0; d < p->ndim; d++) ts[i].shape[d] = p->shape[d];
        ts[i].data = p->data;
        ts[i].nbytes = (size_t)dq_tensor_numel(p) * sizeof(float);
        if (retype && strcmp(ts[i].name, retype) == 0) {
            ts[i].dtype = DQ_ST_I64; /* same element count, twice the bytes */
            ts[i].nbytes *= 2;
            ts[i].data = calloc(ts[i].nbytes, 1);
            assert_non_null(ts[i].data);
        }
    }
    if (extra) ts[n] = (dq_st_tensor){extra, DQ_ST_F32, 1, {4}, one, sizeof one};
    dq_err err = {{0}};
    if (dq_st_write(path, ts, n + (extra != NULL), NULL, 0, &err) != DQ_OK)
        fail_msg("%s", err.msg);
    for (int i = 0; i < n; i++)
        if (ts[i].dtype == DQ_ST_I64) free((void *)ts[i].data);
    free(ts);
}

static void test_weights_extra_tensor_and_wrong_dtype(void **state)
{
    s_tmp *t = *state;
    dq_err err = {{0}};
    dq_net_t *net = s_net_init("lightnn-fmnist", 5);
    char want[512];

    s_write_custom(net, t->path, "teacher.0.weight", NULL);
    assert_int_equal(dq_ckpt_load_weights(net, t->path, &err), DQ_ERR_FORMAT);
    snprintf(want, sizeof want, "%s: unexpected tensor teacher.0.weight (not part of model "
             "lightnn-fmnist)", t->path);
    assert_string_equal(err.msg, want);

    s_write_custom(net, t->path, NULL, "classifier.3.bias");
    assert_int_equal(dq_ckpt_load_weights(net, t->path, &err), DQ_ERR_FORMAT);
    snprintf(want, sizeof want, "%s: tensor classifier.3.bias has dtype I64, expected F32",
             t->path);
    assert_string_equal(err.msg, want);

    /* A file written without our metadata (as by another tool) still loads. */
    s_write_custom(net, t->path, NULL, NULL);
    assert_int_equal(dq_ckpt_load_weights(net, t->path, &err), DQ_OK);

    assert_int_not_equal(dq_ckpt_load_weights(net, "/nonexistent/w.safetensors", &err), DQ_OK);
    assert_non_null(strstr(err.msg, "/nonexistent/w.safetensors"));
    dq_net_destroy(&net);
}

static void test_train_state_round_trip(void **state)
{
    s_tmp *t = *state;
    dq_err err = {{0}};
    dq_net_t *net = s_net("lightnn-fmnist");
    int64_t n = dq_net_param_floats(net);
    dq_train_state a = {.epoch = 3, .step = 1234, .batch_in_epoch = 17,
                        .seed = 0xfedcba9876543210ULL, .loss_sum = 1234.5678912345,
                        .correct = 987, .seen = 1088, .seconds = 12.25};
    dq_rng_seed(&a.rng, 42);
    for (int i = 0; i < 10; i++) dq_rng_next(&a.rng);
    a.m = malloc((size_t)n * sizeof(float));
    a.v = malloc((size_t)n * sizeof(float));
    assert_true(a.m && a.v);
    dq_rng fill;
    dq_rng_seed(&fill, 7);
    for (int64_t i = 0; i < n; i++) a.m[i] = dq_rng_range(&fill, -1, 1);
    for (int64_t i = 0; i < n; i++) a.v[i] = dq_rng_uniform(&fill) * 1e-3f;
    if (dq_ckpt_save_state(net, &a, t->path, &err) != DQ_OK) fail_msg("%s", err.msg);

    dq_st_file_t *f = NULL;
    assert_int_equal(dq_st_open(&f, t->path, &err), DQ_OK);
    assert_int_equal(dq_st_count(f), 2 * dq_net_param_count(net) + 9);
    const dq_st_tensor *ls = dq_st_find(f, "epoch_loss_sum");
    assert_true(ls && ls->dtype == DQ_ST_F64 && ls->ndim == 0);
    const dq_st_tensor *m0 = dq_st_find(f, "m.features.0.weight");
    assert_non_null(m0);
    assert_int_equal(m0->ndim, 4);
    assert_non_null(dq_st_find(f, "v.classifier.3.bias"));
    const dq_st_tensor *r = dq_st_find(f, "rng");
    assert_true(r && r->dtype == DQ_ST_U64 && r->ndim == 1 && r->shape[0] == 4);
    const dq_st_tensor *ep = dq_st_find(f, "epoch");
    assert_true(ep && ep->dtype == DQ_ST_I64 && ep->ndim == 0);
    dq_st_close(&f);

    dq_train_state b = {0};
    b.m = calloc((size_t)n, sizeof(float));
    b.v = calloc((size_t)n, sizeof(float));
    assert_true(b.m && b.v);
    if (dq_ckpt_load_state(net, &b, t->path, &err) != DQ_OK) fail_msg("%s", err.msg);
    assert_int_equal(b.epoch, 3);
    assert_int_equal(b.step, 1234);
    assert_int_equal(b.batch_in_epoch, 17);
    assert_true(b.seed == 0xfedcba9876543210ULL);
    assert_true(b.loss_sum == a.loss_sum); /* bit-exact doubles */
    assert_int_equal(b.correct, 987);
    assert_int_equal(b.seen, 1088);
    assert_true(b.seconds == 12.25);
    assert_memory_equal(&b.rng, &a.rng, sizeof a.rng);
    assert_true(dq_rng_next(&b.rng) == dq_rng_next(&a.rng)); /* the stream continues */
    assert_memory_equal(b.m, a.m, (size_t)n * sizeof(float));
    assert_memory_equal(b.v, a.v, (size_t)n * sizeof(float));

    /* State of another model: named by tensor and file. */
    dq_net_t *other = s_net("lightnn-cifar10");
    float *om = calloc((size_t)dq_net_param_floats(other), sizeof(float));
    float *ov = calloc((size_t)dq_net_param_floats(other), sizeof(float));
    assert_true(om && ov);
    dq_train_state c = {.m = om, .v = ov};
    assert_int_equal(dq_ckpt_load_state(other, &c, t->path, &err), DQ_ERR_SHAPE);
    char want[512];
    snprintf(want, sizeof want, "%s: tensor m.features.0.weight has shape [16, 1, 3, 3], model "
             "lightnn-cifar10 expects [16, 3, 3, 3]", t->path);
    assert_string_equal(err.msg, want);
    assert_int_equal(c.epoch, 0);

    /* A weights file is not a training state. */
    assert_int_equal(dq_ckpt_save_weights(net, t->path, &err), DQ_OK);
    assert_int_equal(dq_ckpt_load_state(net, &b, t->path, &err), DQ_ERR_NOT_FOUND);
    assert_non_null(strstr(err.msg, "tensor m.features.0.weight is missing"));
    c.m = NULL;
    assert_int_equal(dq_ckpt_load_state(net, &c, t->path, &err), DQ_ERR_ARG);

    free(om);
    free(ov);
    free(a.m);
    free(a.v);
    free(b.m);
    free(b.v);
    dq_net_destroy(&other);
    dq_net_destroy(&net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_weights_round_trip_bit_exact, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_weights_with_buffers, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_weights_shape_mismatch_names_tensor_and_file,
                                        s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_weights_missing_tensor, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_weights_extra_tensor_and_wrong_dtype, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_train_state_round_trip, s_setup, s_teardown),
    };
    return cmocka_run_group_tests_name("checkpoint", tests, NULL, NULL);
}
