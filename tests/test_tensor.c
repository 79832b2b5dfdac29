/* test_tensor.c - tensor allocation, views, shape checks, status, rng. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "tensor/init.h"
#include "tensor/rng.h"
#include "tensor/tensor.h"

static void test_alloc_zeroed_and_free(void **state)
{
    (void)state;
    dq_tensor t;
    dq_err err = {{0}};
    int64_t shape[4] = {2, 3, 5, 7};
    assert_int_equal(dq_tensor_alloc(&t, 4, shape, &err), DQ_OK);
    assert_true(t.owns);
    assert_int_equal(dq_tensor_numel(&t), 210);
    assert_int_equal(dq_tensor_inner(&t, 1), 105);
    for (int i = 0; i < 210; i++) assert_true(t.data[i] == 0.0f);
    assert_int_equal(((uintptr_t)t.data) % 64, 0);
    dq_tensor_free(&t);
    assert_null(t.data);
    assert_int_equal(t.ndim, 0);
}

static void test_alloc_rejects_bad_shapes(void **state)
{
    (void)state;
    dq_tensor t;
    dq_err err = {{0}};
    int64_t neg[2] = {3, -1};
    assert_int_equal(dq_tensor_alloc(&t, 2, neg, &err), DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "dim 1"));
    int64_t huge[4] = {INT64_MAX / 2, 4, 4, 4};
    assert_int_equal(dq_tensor_alloc(&t, 4, huge, &err), DQ_ERR_ARG);
    assert_int_equal(dq_tensor_alloc(&t, 5, huge, &err), DQ_ERR_ARG);
}

static void test_view_does_not_own(void **state)
{
    (void)state;
    float buf[6] = {1, 2, 3, 4, 5, 6};
    dq_tensor v = dq_tensor_view2(buf, 2, 3);
    assert_false(v.owns);
    assert_int_equal(dq_tensor_numel(&v), 6);
    dq_tensor_free(&v); /* must not free the stack buffer */
    assert_true(buf[5] == 6.0f);
}

static void test_expect_names_tensor_and_shapes(void **state)
{
    (void)state;
    float buf[12];
    dq_tensor v = dq_tensor_view4(buf, 1, 3, 2, 2);
    v.name = "features.0.weight";
    dq_err err = {{0}};
    int64_t want[4] = {1, 3, 2, 2};
    assert_int_equal(dq_tensor_expect(&v, "conv2d", "weight", 4, want, &err), DQ_OK);
    int64_t other[4] = {1, 4, 2, 2};
    assert_int_equal(dq_tensor_expect(&v, "conv2d", "weight", 4, other, &err), DQ_ERR_SHAPE);
    assert_string_equal(err.msg, "conv2d: weight features.0.weight has shape [1, 3, 2, 2], "
                                 "expected [1, 4, 2, 2]");
    assert_int_equal(dq_tensor_expect_rank(&v, "linear", "input", 2, &err), DQ_ERR_SHAPE);
    assert_int_equal(dq_tensor_expect_rank(NULL, "linear", "input", 2, &err), DQ_ERR_ARG);
}

static void test_strerror_and_fail_prefix(void **state)
{
    (void)state;
    assert_string_equal(dq_strerror(DQ_ERR_SHAPE), "shape mismatch");
    assert_string_equal(dq_strerror((dq_status)999), "unknown status");
    dq_err err = {{0}};
    assert_int_equal(dq_fail(&err, DQ_ERR_IO, "reading %s", "x.bin"), DQ_ERR_IO);
    assert_int_equal(dq_fail_prefix(&err, DQ_ERR_IO, "%s: ", "model"), DQ_ERR_IO);
    assert_string_equal(err.msg, "model: reading x.bin");
}

static void test_rng_reproducible_and_uniform(void **state)
{
    (void)state;
    dq_rng a, b, c;
    dq_rng_seed(&a, 42);
    dq_rng_seed(&b, 42);
    dq_rng_seed(&c, 43);
    int differ = 0;
    for (int i = 0; i < 100; i++) {
        uint64_t x = dq_rng_next(&a);
        assert_true(x == dq_rng_next(&b));
        if (x != dq_rng_next(&c)) differ++;
    }
    assert_true(differ > 95);
    /* mean of U[0,1) over 100k draws is 0.5 +- a few 1e-3 */
    double sum = 0;
    for (int i = 0; i < 100000; i++) {
        float u = dq_rng_uniform(&a);
        assert_true(u >= 0.0f && u < 1.0f);
        sum += u;
    }
    assert_true(sum / 100000 > 0.495 && sum / 100000 < 0.505);
    /* dq_rng_below stays in range and hits every value */
    int seen[7] = {0};
    for (int i = 0; i < 1000; i++) seen[dq_rng_below(&a, 7)]++;
    for (int i = 0; i < 7; i++) assert_true(seen[i] > 80);
}

static void test_shuffle_is_permutation(void **state)
{
    (void)state;
    dq_rng r;
    dq_rng_seed(&r, 7);
    int32_t idx[1000];
    for (int i = 0; i < 1000; i++) idx[i] = i;
    dq_rng_shuffle(&r, idx, 1000);
    int hits[1000] = {0};
    int moved = 0;
    for (int i = 0; i < 1000; i++) {
        hits[idx[i]]++;
        if (idx[i] != i) moved++;
    }
    for (int i = 0; i < 1000; i++) assert_int_equal(hits[i], 1);
    assert_true(moved > 900);
}

static void test_init_bound_matches_pytorch(void **state)
{
    (void)state;
    /* kaiming_uniform(a=sqrt(5)) on fan_in 9 -> bound 1/3 */
    dq_rng r;
    dq_rng_seed(&r, 1);
    float w[9000];
    dq_init_uniform_fan_in(w, 9000, 9, &r);
    float lo = 1, hi = -1;
    for (int i = 0; i < 9000; i++) {
        if (w[i] < lo) lo = w[i];
        if (w[i] > hi) hi = w[i];
    }
    assert_true(lo >= -1.0f / 3 && lo < -0.33f);
    assert_true(hi < 1.0f / 3 && hi > 0.33f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alloc_zeroed_and_free),
        cmocka_unit_test(test_alloc_rejects_bad_shapes),
        cmocka_unit_test(test_view_does_not_own),
        cmocka_unit_test(test_expect_names_tensor_and_shapes),
        cmocka_unit_test(test_strerror_and_fail_prefix),
        cmocka_unit_test(test_rng_reproducible_and_uniform),
        cmocka_unit_test(test_shuffle_is_permutation),
        cmocka_unit_test(test_init_bound_matches_pytorch),
    };
    return cmocka_run_group_tests_name("tensor", tests, NULL, NULL);
}
