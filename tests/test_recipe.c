/* test_recipe.c - the combined distillation recipes against hand-computed
 * values: loss and the gradient each writes into the student's outputs,
 * on a tiny student (flatten -> linear) whose outputs we set by hand. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "gradcheck.h"
#include "model/net.h"
#include "student_trainer/batcher.h"
#include "student_trainer/recipe.h"

#define N 2
#define K 3
#define F 4

/* A student with logits [3] (linear on 4 inputs) and features [4] (the
 * flattened input), so we control both outputs exactly. */
static const char *s_model =
    "name tiny\n"
    "input channels=1 height=2 width=2\n"
    "layer flat flatten\n"
    "layer fc linear in=4 out=3\n"
    "output logits fc\n"
    "output features flat\n";

typedef struct {
    dq_net_t *net;
    char path[64];
    float x[N * F];
    double xd[N * F];
    double logit[N][K];
} s_fix;

static int s_setup(void **state)
{
    s_fix *f = calloc(1, sizeof *f);
    snprintf(f->path, sizeof f->path, "/tmp/dq-recipe-XXXXXX");
    int fd = mkstemp(f->path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, s_model, strlen(s_model)), (ssize_t)strlen(s_model));
    close(fd);
    dq_err err = {{0}};
    assert_int_equal(dq_net_load(&f->net, f->path, &err), DQ_OK);
    assert_int_equal(dq_net_plan(f->net, N, &err), DQ_OK);
    dq_rng r;
    dq_rng_seed(&r, 3);
    dq_net_init_params(f->net, &r);
    dq_test_fill(f->x, f->xd, N * F, &r, -1, 1);
    dq_tensor in = dq_tensor_view4(f->x, N, 1, 2, 2);
    assert_int_equal(dq_net_forward(f->net, &in, false, NULL, &err), DQ_OK);
    /* logits in double from the weights, to compare against */
    dq_tensor *w = dq_net_param(f->net, 0), *b = dq_net_param(f->net, 1);
    for (int i = 0; i < N; i++)
        for (int k = 0; k < K; k++) {
            double s = b->data[k];
            for (int j = 0; j < F; j++) s += (double)w->data[k * F + j] * f->xd[i * F + j];
            f->logit[i][k] = s;
        }
    *state = f;
    return 0;
}

static int s_teardown(void **state)
{
    s_fix *f = *state;
    dq_net_destroy(&f->net);
    unlink(f->path);
    free(f);
    return 0;
}

static void s_softmax(double *p, const double *z, int k, double T)
{
    double m = z[0];
    for (int i = 1; i < k; i++) m = z[i] > m ? z[i] : m;
    double s = 0;
    for (int i = 0; i < k; i++) s += (p[i] = exp((z[i] - m) / T));
    for (int i = 0; i < k; i++) p[i] /= s;
}

static const int32_t s_labels[N] = {2, 0};

static void test_ce_recipe_is_plain_cross_entropy(void **state)
{
    s_fix *f = *state;
    dq_recipe r = dq_recipe_defaults(DQ_RECIPE_CE);
    assert_null(dq_recipe_teacher_output(&r));
    dq_net_zero_grad(f->net);
    float loss = 0;
    dq_err err = {{0}};
    assert_int_equal(dq_recipe_loss(&r, f->net, s_labels, NULL, &loss, &err), DQ_OK);
    double want = 0, g[N * K];
    for (int i = 0; i < N; i++) {
        double p[K];
        s_softmax(p, f->logit[i], K, 1);
        want += -log(p[s_labels[i]]) / N;
        for (int k = 0; k < K; k++) g[i * K + k] = (p[k] - (k == s_labels[i])) / N;
    }
    assert_true(fabs(loss - want) < 1e-5);
    dq_test_assert_close(dq_net_output_grad(f->net, "logits")->data, g, N * K, 1e-4, 1e-6,
                         "dlogits");
}

static void test_kd_recipe_matches_tutorial_formula(void **state)
{
    s_fix *f = *state;
    dq_recipe r = dq_recipe_defaults(DQ_RECIPE_KD);
    assert_true(r.T == 2.0f && r.soft_weight == 0.25f && r.ce_weight == 0.75f);
    assert_string_equal(dq_recipe_teacher_output(&r), "logits");
    float teacher[N * K] = {2.0f, -1.0f, 0.5f, 0.1f, 0.2f, 3.0f};
    dq_net_zero_grad(f->net);
    float loss = 0;
    dq_err err = {{0}};
    assert_int_equal(dq_recipe_loss(&r, f->net, s_labels, teacher, &loss, &err), DQ_OK);
    /* 0.75 * CE + 0.25 * (-sum(softmax(t/T) log_softmax(s/T)) / N * T^2) */
    double T = 2, ce = 0, soft = 0, g[N * K];
    for (int i = 0; i < N; i++) {
        double p[K], ps[K], pt[K], td[K];
        for (int k = 0; k < K; k++) td[k] = teacher[i * K + k];
        s_softmax(p, f->logit[i], K, 1);
        s_softmax(ps, f->logit[i], K, T);
        s_softmax(pt, td, K, T);
        ce += -log(p[s_labels[i]]) / N;
        for (int k = 0; k < K; k++) {
            soft += -pt[k] * log(ps[k]) / N * T * T;
            g[i * K + k] = 0.75 * (p[k] - (k == s_labels[i])) / N + 0.25 * T * (ps[k] - pt[k]) / N;
        }
    }
    double want = 0.75 * ce + 0.25 * soft;
    assert_true(fabs(loss - want) < 1e-5 * fabs(want) + 1e-6);
    dq_test_assert_close(dq_net_output_grad(f->net, "logits")->data, g, N * K, 1e-4, 1e-6,
                         "dlogits");
}

static void test_cosine_recipe(void **state)
{
    s_fix *f = *state;
    dq_recipe r = dq_recipe_defaults(DQ_RECIPE_COSINE);
    float teacher[N * F] = {1, 0, 0, 1, -0.5f, 0.25f, 2, 1};
    dq_net_zero_grad(f->net);
    float loss = 0;
    dq_err err = {{0}};
    assert_int_equal(dq_recipe_loss(&r, f->net, s_labels, teacher, &loss, &err), DQ_OK);
    double ce = 0, cos_l = 0, gf[N * F];
    for (int i = 0; i < N; i++) {
        double p[K];
        s_softmax(p, f->logit[i], K, 1);
        ce += -log(p[s_labels[i]]) / N;
        double ab = 0, aa = 0, bb = 0;
        for (int j = 0; j < F; j++) {
            double a = f->xd[i * F + j], b = teacher[i * F + j];
            ab += a * b, aa += a * a, bb += b * b;
        }
        double na = sqrt(aa), nb = sqrt(bb), c = ab / (na * nb);
        cos_l += (1 - c) / N;
        for (int j = 0; j < F; j++) {
            double a = f->xd[i * F + j], b = teacher[i * F + j];
            /* d(1 - cos)/da = -(b/(|a||b|) - cos * a/|a|^2) */
            gf[i * F + j] = 0.25 * -(b / (na * nb) - c * a / aa) / N;
        }
    }
    double want = 0.75 * ce + 0.25 * cos_l;
    assert_true(fabs(loss - want) < 1e-5);
    dq_test_assert_close(dq_net_output_grad(f->net, "features")->data, gf, N * F, 1e-4, 1e-6,
                         "dfeatures");
}

static void test_regressor_recipe(void **state)
{
    s_fix *f = *state;
    dq_recipe r = dq_recipe_defaults(DQ_RECIPE_REGRESSOR);
    r.hidden_weight = 0.5f;
    float teacher[N * F] = {0.5f, -0.5f, 1, 0, 0, 0, 0, 2};
    dq_net_zero_grad(f->net);
    float loss = 0;
    dq_err err = {{0}};
    assert_int_equal(dq_recipe_loss(&r, f->net, s_labels, teacher, &loss, &err), DQ_OK);
    double ce = 0, mse = 0, gf[N * F];
    for (int i = 0; i < N; i++) {
        double p[K];
        s_softmax(p, f->logit[i], K, 1);
        ce += -log(p[s_labels[i]]) / N;
    }
    for (int j = 0; j < N * F; j++) {
        double d = f->xd[j] - teacher[j];
        mse += d * d / (N * F);
        gf[j] = 0.5 * 2 * d / (N * F);
    }
    assert_true(fabs(loss - (0.75 * ce + 0.5 * mse)) < 1e-5);
    dq_test_assert_close(dq_net_output_grad(f->net, "features")->data, gf, N * F, 1e-4, 1e-6,
                         "dfeatures");
}

static void test_check_rejects_mismatched_teacher(void **state)
{
    s_fix *f = *state;
    dq_err err = {{0}};
    dq_recipe kd = dq_recipe_defaults(DQ_RECIPE_KD);
    int64_t hundred[1] = {100}, three[1] = {3};
    assert_int_equal(dq_recipe_check(&kd, f->net, three, 1, &err), DQ_OK);
    assert_int_equal(dq_recipe_check(&kd, f->net, hundred, 1, &err), DQ_ERR_SHAPE);
    assert_non_null(strstr(err.msg, "[3] per sample but the teacher's is [100]"));
    dq_recipe reg = dq_recipe_defaults(DQ_RECIPE_REGRESSOR);
    int64_t map[3] = {1, 2, 2}, flat[1] = {4};
    assert_int_equal(dq_recipe_check(&reg, f->net, flat, 1, &err), DQ_OK);
    assert_int_equal(dq_recipe_check(&reg, f->net, map, 3, &err), DQ_ERR_SHAPE);
    dq_recipe cos = dq_recipe_defaults(DQ_RECIPE_COSINE);
    assert_int_equal(dq_recipe_check(&cos, f->net, map, 3, &err), DQ_OK); /* flattened */
    dq_recipe_kind k;
    assert_int_equal(dq_recipe_parse(&k, "regressor", &err), DQ_OK);
    assert_int_equal(k, DQ_RECIPE_REGRESSOR);
    assert_int_equal(dq_recipe_parse(&k, "kl", &err), DQ_ERR_ARG);
    assert_int_equal(dq_recipe_loss(&kd, f->net, s_labels, NULL, &(float){0}, &err), DQ_ERR_ARG);
}

static void test_augment_crop_flip(void **state)
{
    (void)state;
    /* With pad 0 the crop is the identity; a flip mirrors each row. */
    uint8_t img[2 * 3 * 4], orig[2 * 3 * 4];
    for (int i = 0; i < 24; i++) orig[i] = img[i] = (uint8_t)(i + 1);
    dq_rng r;
    dq_rng_seed(&r, 11);
    int flips = 0, same = 0;
    for (int t = 0; t < 64; t++) {
        memcpy(img, orig, sizeof img);
        dq_augment_crop_flip(img, 2, 1, 3, 4, 0, &r);
        for (int s = 0; s < 2; s++) {
            const uint8_t *a = img + s * 12, *o = orig + s * 12;
            bool is_same = memcmp(a, o, 12) == 0, is_flip = true;
            for (int y = 0; y < 3; y++)
                for (int x = 0; x < 4; x++) is_flip &= a[y * 4 + x] == o[y * 4 + 3 - x];
            assert_true(is_same || is_flip);
            flips += is_flip, same += is_same;
        }
    }
    assert_true(flips > 30 && same > 30);
    /* With pad 2 every output pixel is a source pixel or 0, shifted by <= 2. */
    uint8_t big[28 * 28], src[28 * 28];
    for (int i = 0; i < 784; i++) src[i] = big[i] = (uint8_t)(1 + i % 251);
    dq_augment_crop_flip(big, 1, 1, 28, 28, 2, &r);
    int zeros = 0;
    for (int i = 0; i < 784; i++) zeros += big[i] == 0;
    assert_true(zeros <= 2 * 2 * 28 + 4 * 4);
    /* Same seed, same result. */
    uint8_t a[784], b[784];
    memcpy(a, src, 784), memcpy(b, src, 784);
    dq_rng r1, r2;
    dq_rng_seed(&r1, 5), dq_rng_seed(&r2, 5);
    dq_augment_crop_flip(a, 1, 1, 28, 28, 2, &r1);
    dq_augment_crop_flip(b, 1, 1, 28, 28, 2, &r2);
    assert_memory_equal(a, b, 784);
}

static void test_batcher_is_pure_function_of_epoch_and_index(void **state)
{
    (void)state;
    enum { M = 10 };
    uint8_t images[M * 4];
    int32_t labels[M];
    for (int i = 0; i < M * 4; i++) images[i] = (uint8_t)(i + 1);
    for (int i = 0; i < M; i++) labels[i] = i;
    dq_dataset ds = {.n = M, .c = 1, .h = 2, .w = 2, .images = images, .labels = labels,
                     .classes = 10};
    dq_batcher b1, b2;
    dq_err err = {{0}};
    assert_int_equal(dq_batcher_init(&b1, &ds, 9, 4, true, &err), DQ_OK);
    assert_int_equal(dq_batcher_init(&b2, &ds, 9, 4, true, &err), DQ_OK);
    assert_int_equal(dq_batcher_count(&b1), 3);
    uint8_t p1[16], p2[16];
    int32_t l1[4], l2[4];
    /* b1 walks the epoch in order, b2 jumps straight to batch 2 */
    dq_batcher_epoch(&b1, 1);
    dq_batcher_epoch(&b2, 1);
    int seen[M] = {0};
    for (int i = 0; i < 3; i++) {
        int64_t n = dq_batcher_fill(&b1, i, p1, l1);
        assert_int_equal(n, i < 2 ? 4 : 2);
        for (int k = 0; k < n; k++) seen[l1[k]]++;
    }
    for (int i = 0; i < M; i++) assert_int_equal(seen[i], 1);
    assert_int_equal(dq_batcher_fill(&b1, 2, p1, l1), 2);
    assert_int_equal(dq_batcher_fill(&b2, 2, p2, l2), 2);
    assert_memory_equal(p1, p2, 8);
    assert_memory_equal(l1, l2, 2 * sizeof(int32_t));
    assert_int_equal(dq_batcher_fill(&b1, 3, p1, l1), 0);
    /* another epoch, another order */
    int32_t e1[4], e2[4];
    dq_batcher_fill(&b1, 0, p1, e1);
    dq_batcher_epoch(&b1, 2);
    dq_batcher_fill(&b1, 0, p1, e2);
    assert_true(memcmp(e1, e2, sizeof e1) != 0);
    dq_batcher_free(&b1);
    dq_batcher_free(&b2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ce_recipe_is_plain_cross_entropy, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_kd_recipe_matches_tutorial_formula, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_cosine_recipe, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_regressor_recipe, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_check_rejects_mismatched_teacher, s_setup, s_teardown),
        cmocka_unit_test(test_augment_crop_flip),
        cmocka_unit_test(test_batcher_is_pure_function_of_epoch_and_index),
    };
    return cmocka_run_group_tests_name("recipe", tests, NULL, NULL);
}
