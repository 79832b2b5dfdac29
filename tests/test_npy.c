/* test_npy.c - .npy output parsed back byte by byte: magic, version,
 * header text exactly as numpy writes it, 64-byte alignment, data. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tmpdir.h"
#include "data/npy.h"

typedef dq_test_tmpdir s_fixture;

static int s_setup(void **state)
{
    return dq_test_tmpdir_setup(state, "dq_npy_");
}

static int s_teardown(void **state)
{
    return dq_test_tmpdir_teardown(state);
}

/* Checks the file is an npy 1.0 float32 C-order array with exactly the
 * dict text `dict` and the given data. */
static void s_check_file(const char *path, const char *dict, const float *data, size_t n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    unsigned char buf[4096];
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    assert_true(len >= 10);
    assert_memory_equal(buf, "\x93NUMPY\x01\x00", 8);
    size_t hlen = buf[8] | (size_t)buf[9] << 8;
    size_t total = 10 + hlen;
    assert_int_equal(total % 64, 0);
    assert_int_equal(len, total + n * sizeof(float));
    size_t dl = strlen(dict);
    assert_true(dl < hlen);
    assert_memory_equal(buf + 10, dict, dl);
    for (size_t i = 10 + dl; i < total - 1; i++) assert_int_equal(buf[i], ' ');
    assert_int_equal(buf[total - 1], '\n');
    /* Minimal padding: numpy pads to the next multiple of 64, not beyond. */
    assert_true(hlen - dl - 1 < 64);
    if (n) assert_memory_equal(buf + total, data, n * sizeof(float));
}

static void test_write_2d_1d_0d(void **state)
{
    s_fixture *fx = *state;
    char path[128], tmp[140];
    snprintf(path, sizeof path, "%s/logits.npy", fx->dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    float d[30];
    for (int i = 0; i < 30; i++) d[i] = (float)i * -0.5f + 0.125f;
    dq_err err = {{0}};
    int64_t s2[2] = {3, 10};
    assert_int_equal(dq_npy_write(path, d, 2, s2, &err), DQ_OK);
    s_check_file(path, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 10), }", d, 30);
    assert_int_equal(access(tmp, F_OK), -1);
    int64_t s1[1] = {7};
    assert_int_equal(dq_npy_write(path, d, 1, s1, &err), DQ_OK);
    s_check_file(path, "{'descr': '<f4', 'fortran_order': False, 'shape': (7,), }", d, 7);
    assert_int_equal(dq_npy_write(path, d, 0, NULL, &err), DQ_OK);
    s_check_file(path, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }", d, 1);
    int64_t s0[2] = {0, 10};
    assert_int_equal(dq_npy_write(path, NULL, 2, s0, &err), DQ_OK);
    s_check_file(path, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 10), }", d, 0);
    /* A long shape pushes the header past 64 bytes: next multiple of 64. */
    int64_t s4[4] = {1, 1, 1, 30};
    assert_int_equal(dq_npy_write(path, d, 4, s4, &err), DQ_OK);
    s_check_file(path, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 30), }",
                 d, 30);
    int64_t big[2] = {1234567890123LL, 10};
    FILE *f = tmpfile();
    assert_non_null(f);
    assert_int_equal(dq_npy_begin(f, "big", 2, big, &err), DQ_OK);
    assert_int_equal(ftell(f) % 64, 0);
    fclose(f);
}

static void test_stream_rows(void **state)
{
    s_fixture *fx = *state;
    char path[128];
    snprintf(path, sizeof path, "%s/stream.npy", fx->dir);
    float d[4 * 10];
    for (int i = 0; i < 40; i++) d[i] = 1.0f / (float)(i + 1);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    dq_err err = {{0}};
    int64_t shape[2] = {4, 10};
    assert_int_equal(dq_npy_begin(f, path, 2, shape, &err), DQ_OK);
    for (int r = 0; r < 4; r++) assert_int_equal(fwrite(d + 10 * r, sizeof(float), 10, f), 10);
    assert_int_equal(fclose(f), 0);
    s_check_file(path, "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 10), }", d, 40);
}

static void test_errors(void **state)
{
    s_fixture *fx = *state;
    char path[128], tmp[140];
    dq_err err = {{0}};
    float d[4] = {0};
    int64_t neg[2] = {2, -2};
    snprintf(path, sizeof path, "%s/neg.npy", fx->dir);
    assert_int_equal(dq_npy_write(path, d, 2, neg, &err), DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, path));
    assert_int_equal(access(path, F_OK), -1);
    int64_t s[1] = {4};
    assert_int_equal(dq_npy_write(path, NULL, 1, s, &err), DQ_ERR_ARG);
    assert_int_equal(dq_npy_write(path, d, -1, s, &err), DQ_ERR_ARG);
    snprintf(path, sizeof path, "%s/no/such/dir.npy", fx->dir);
    assert_int_equal(dq_npy_write(path, d, 1, s, &err), DQ_ERR_IO);
    assert_non_null(strstr(err.msg, "dir.npy.tmp"));
    /* Rename onto a directory fails; the .tmp must not be left behind. */
    snprintf(path, sizeof path, "%s/isdir", fx->dir);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(dq_npy_write(path, d, 1, s, &err), DQ_ERR_IO);
    assert_non_null(strstr(err.msg, "rename"));
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_int_equal(access(tmp, F_OK), -1);
    /* A stream that cannot be written reports the path it was given. */
    FILE *ro = fopen("/dev/null", "rb");
    assert_non_null(ro);
    int64_t shape[2] = {1, 10};
    assert_int_equal(dq_npy_begin(ro, "out.npy", 2, shape, &err), DQ_ERR_IO);
    assert_non_null(strstr(err.msg, "out.npy"));
    fclose(ro);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_write_2d_1d_0d, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_stream_rows, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_errors, s_setup, s_teardown),
    };
    return cmocka_run_group_tests_name("npy", tests, NULL, NULL);
}
