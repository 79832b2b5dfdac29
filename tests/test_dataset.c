/* test_dataset.c - IDX (raw and .gz) and CIFAR-10 readers on small files
 * generated here, the directory layout detection, and (when present) the
 * real Fashion-MNIST test split. Error messages must name file and offset. */
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
#include <zlib.h>

#include "tmpdir.h"
#include "data/dataset.h"

#define FMNIST_DIR "/usr/share/datasets/fashion-mnist"

typedef dq_test_tmpdir s_fixture;

static int s_setup(void **state)
{
    return dq_test_tmpdir_setup(state, "dq_ds_");
}

static int s_teardown(void **state)
{
    return dq_test_tmpdir_teardown(state);
}

static const char *s_path(void **state, const char *name)
{
    static char buf[8][256]; /* a ring: a test keeps at most a few paths at once */
    static int k;
    s_fixture *fx = *state;
    char *out = buf[k++ % 8];
    snprintf(out, 256, "%s/%s", fx->dir, name);
    return out;
}

/* Writes bytes raw, or gzip-compressed when the name ends in .gz. */
static void s_write(const char *path, const void *p, size_t len)
{
    size_t pl = strlen(path);
    if (pl > 3 && !strcmp(path + pl - 3, ".gz")) {
        gzFile gz = gzopen(path, "wb");
        assert_non_null(gz);
        if (len) assert_int_equal(gzwrite(gz, p, (unsigned)len), (int)len);
        assert_int_equal(gzclose(gz), Z_OK);
        return;
    }
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (len) assert_int_equal(fwrite(p, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void s_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint8_t s_pixel(int64_t i, int64_t j)
{
    return (uint8_t)((i * 37 + j * 11) & 0xff);
}

/* IDX images file with header dims n x h x w and pixel s_pixel(i, j); len
 * is the number of bytes to write (0: the whole file), so a file can be cut
 * short or carry extra bytes without materialising what the header claims. */
static void s_idx_images(const char *path, uint32_t magic, uint32_t n, uint32_t h, uint32_t w,
                         size_t len)
{
    size_t hw = (size_t)h * w;
    if (!len) len = 16 + n * hw;
    uint8_t *b = calloc(len < 16 ? 16 : len, 1);
    assert_non_null(b);
    s_be32(b, magic), s_be32(b + 4, n), s_be32(b + 8, h), s_be32(b + 12, w);
    for (size_t k = 16; hw && k < len; k++) b[k] = s_pixel((k - 16) / hw, (k - 16) % hw);
    s_write(path, b, len);
    free(b);
}

/* IDX labels file whose header says n but holds only `have` label bytes. */
static void s_idx_labels_cut(const char *path, uint32_t magic, uint32_t n,
                             const uint8_t *labels, uint32_t have)
{
    uint8_t *b = malloc(8 + (size_t)have);
    assert_non_null(b);
    s_be32(b, magic), s_be32(b + 4, n);
    memcpy(b + 8, labels, have);
    s_write(path, b, 8 + (size_t)have);
    free(b);
}

static void s_idx_labels(const char *path, uint32_t magic, uint32_t n, const uint8_t *labels)
{
    s_idx_labels_cut(path, magic, n, labels, n);
}

static void s_expect_msg(const dq_err *err, const char *n1, const char *n2, const char *n3)
{
    const char *needles[3] = {n1, n2, n3};
    for (int i = 0; i < 3; i++)
        if (needles[i] && !strstr(err->msg, needles[i]))
            fail_msg("'%s' not in message: %s", needles[i], err->msg);
}

static void s_check_idx(const dq_dataset *ds, uint32_t n, uint32_t h, uint32_t w,
                        const uint8_t *labels)
{
    assert_int_equal(ds->n, n);
    assert_int_equal(ds->c, 1);
    assert_int_equal(ds->h, h);
    assert_int_equal(ds->w, w);
    assert_int_equal(ds->classes, 10);
    for (uint32_t i = 0; i < n; i++) {
        assert_int_equal(ds->labels[i], labels[i]);
        for (uint32_t j = 0; j < h * w; j++)
            assert_int_equal(ds->images[i * h * w + j], s_pixel(i, j));
    }
}

static const uint8_t s_labels[5] = {0, 9, 5, 3, 9};

static void test_idx_raw_and_gz(void **state)
{
    const char *names[4][2] = {
        {"i", "l"}, {"i.gz", "l.gz"}, {"i.gz", "l"}, {"i", "l.gz"}};
    for (int k = 0; k < 4; k++) {
        const char *ip = s_path(state, names[k][0]), *lp = s_path(state, names[k][1]);
        s_idx_images(ip, 0x803, 5, 4, 3, 0);
        s_idx_labels(lp, 0x801, 5, s_labels);
        dq_dataset ds;
        dq_err err = {{0}};
        assert_int_equal(dq_idx_load(&ds, ip, lp, &err), DQ_OK);
        s_check_idx(&ds, 5, 4, 3, s_labels);
        dq_dataset_truncate(&ds, 2);
        assert_int_equal(ds.n, 2);
        dq_dataset_truncate(&ds, 0);
        dq_dataset_truncate(&ds, 7);
        assert_int_equal(ds.n, 2);
        s_check_idx(&ds, 2, 4, 3, s_labels);
        dq_dataset_free(&ds);
        assert_null(ds.images);
        assert_int_equal(ds.n, 0);
    }
}

static void test_idx_errors(void **state)
{
    const char *ip = s_path(state, "images"), *lp = s_path(state, "labels");
    dq_dataset ds;
    dq_err err = {{0}};
    s_idx_labels(lp, 0x801, 5, s_labels);

    /* Wrong magic (a labels file given as images). */
    s_idx_labels(ip, 0x801, 5, s_labels);
    assert_int_equal(dq_idx_load(&ds, ip, lp, &err), DQ_ERR_FORMAT);
    s_expect_msg(&err, ip, "0x00000801", "expected 0x00000803");
    assert_null(ds.images);
    assert_int_equal(ds.n, 0);
    s_idx_images(ip, 0x803, 5, 4, 3, 0);
    assert_int_equal(dq_idx_load(&ds, ip, ip, &err), DQ_ERR_FORMAT);
    s_expect_msg(&err, ip, "0x00000803", "expected 0x00000801");

    /* Truncated pixel data: 5*4*3 = 60 bytes expected from byte 16, 50 there. */
    const char *cuts[2] = {ip, s_path(state, "images.gz")};
    for (int k = 0; k < 2; k++) {
        s_idx_images(cuts[k], 0x803, 5, 4, 3, 16 + 50);
        assert_int_equal(dq_idx_load(&ds, cuts[k], lp, &err), DQ_ERR_FORMAT);
        s_expect_msg(&err, cuts[k], "truncated at byte 66", "expected 60 bytes");
    }
    /* Truncated inside the header. */
    s_idx_images(ip, 0x803, 5, 4, 3, 6);
    assert_int_equal(dq_idx_load(&ds, ip, lp, &err), DQ_ERR_FORMAT);
    s_expect_msg(&err, ip, "truncated at byte 6", "IDX header");
    /* Header claiming 1e8 images over 3 real ones: truncated, not out of memory. */
    uint8_t many[100] = {0};
    s_idx_labels_cut(lp, 0x801, 100000000, many, 100);
    s_idx_images(ip, 0x803, 100000000, 28, 28, 16 + 3 * 784);
    assert_int_equal(dq_idx_load(&ds, ip, lp, &err), DQ_ERR_FORMAT);
    s_expect_msg(&err, lp, "truncated", NULL);

    /* Count mismatch names both files and counts. */
    s_idx_labels(lp, 0x801, 4, s_labels);
    s_idx_images(ip, 0x803, 5, 4, 3, 0);
    assert_int_equal(dq_idx_load(&ds, ip, lp, &err), DQ_ERR_FORMAT);
    s_expect_msg(&err, lp, ip, "4 labels");
    s_expect_msg(&err, "5 images", NULL, NULL);

    /* Label out of range at its byte offset (8 + index). */
    uint8_t bad[5] = {1, 2, 3, 10, 4};
    s_idx_labels(lp, 0x801, 5, bad);
    assert_int_equal(dq_idx_load(&ds, ip, lp, &err), DQ_ERR_FORMAT);
    s_expect_msg(&err, lp, "label 10 at byte 11", NULL);

    /* Absurd dims, trailing data, missing file. */
    s_idx_labels(lp, 0x801, 5, s_labels);
    s_idx_images(ip, 0x803, 5, 0, 3, 16);
    assert_int_equal(dq_idx_load(&ds, ip, lp, &err), DQ_ERR_FORMAT);
    s_expect_msg(&err, ip, "5 x 0 x 3", NULL);
    s_idx_images(ip, 0x803, 5, 100000, 3, 16);
    assert_int_equal(dq_idx_load(&ds, ip, lp, &err), DQ_ERR_FORMAT);
    s_expect_msg(&err, ip, "implausible", NULL);
    s_idx_images(ip, 0x803, 4, 4, 3, 16 + 60); /* 5 images' bytes, header says 4 */
    s_idx_labels(lp, 0x801, 4, s_labels);
    assert_int_equal(dq_idx_load(&ds, ip, lp, &err), DQ_ERR_FORMAT);
    s_expect_msg(&err, ip, "unexpected data after byte 64", NULL);
    const char *none = s_path(state, "none");
    assert_int_equal(dq_idx_load(&ds, none, lp, &err), DQ_ERR_NOT_FOUND);
    s_expect_msg(&err, none, NULL, NULL);
    assert_null(ds.images);
    assert_null(ds.labels);
}

/* CIFAR file of n records: labels (first + i) % 10, pixels s_pixel(first + i, j). */
static void s_cifar(const char *path, int first, int n, size_t extra, int bad_at)
{
    size_t len = (size_t)n * 3073 + extra;
    uint8_t *b = calloc(len + 1, 1);
    assert_non_null(b);
    for (int i = 0; i < n; i++) {
        b[(size_t)i * 3073] = (uint8_t)(i == bad_at ? 10 : (first + i) % 10);
        for (int j = 0; j < 3072; j++) b[(size_t)i * 3073 + 1 + j] = s_pixel(first + i, j);
    }
    s_write(path, b, len);
    free(b);
}

static void s_check_cifar(const dq_dataset *ds, int n)
{
    assert_int_equal(ds->n, n);
    assert_int_equal(ds->c, 3);
    assert_int_equal(ds->h, 32);
    assert_int_equal(ds->w, 32);
    assert_int_equal(ds->classes, 10);
    for (int i = 0; i < n; i++) {
        assert_int_equal(ds->labels[i], i % 10);
        for (int j = 0; j < 3072; j++)
            assert_int_equal(ds->images[(size_t)i * 3072 + j], s_pixel(i, j));
    }
}

static void test_cifar(void **state)
{
    const char *a = s_path(state, "a.bin"), *b = s_path(state, "b.bin");
    dq_dataset ds;
    dq_err err = {{0}};
    s_cifar(a, 0, 3, 0, -1);
    s_cifar(b, 3, 9, 0, -1);
    const char *one[1] = {a}, *two[2] = {a, b};
    assert_int_equal(dq_cifar_load(&ds, one, 1, &err), DQ_OK);
    s_check_cifar(&ds, 3);
    dq_dataset_free(&ds);
    assert_int_equal(dq_cifar_load(&ds, two, 2, &err), DQ_OK);
    s_check_cifar(&ds, 12); /* concatenated in the given order */
    dq_dataset_free(&ds);

    /* Partial record at the end of the second file. */
    s_cifar(b, 3, 2, 100, -1);
    assert_int_equal(dq_cifar_load(&ds, two, 2, &err), DQ_ERR_FORMAT);
    s_expect_msg(&err, b, "partial record at byte 6146", "100 bytes");
    assert_null(ds.images);
    /* Label 10 in record 1 (byte 3073). */
    s_cifar(b, 3, 2, 0, 1);
    assert_int_equal(dq_cifar_load(&ds, two, 2, &err), DQ_ERR_FORMAT);
    s_expect_msg(&err, b, "label 10 at byte 3073", NULL);
    assert_null(ds.labels);
    /* Nothing at all, and a missing file. */
    s_cifar(b, 0, 0, 0, -1);
    const char *empty[1] = {b};
    assert_int_equal(dq_cifar_load(&ds, empty, 1, &err), DQ_ERR_FORMAT);
    s_expect_msg(&err, b, "no records", NULL);
    const char *missing[1] = {s_path(state, "nope.bin")};
    assert_int_equal(dq_cifar_load(&ds, missing, 1, &err), DQ_ERR_NOT_FOUND);
    s_expect_msg(&err, missing[0], NULL, NULL);
}

static void test_load_dir_idx(void **state)
{
    dq_dataset ds;
    dq_err err = {{0}};
    s_idx_images(s_path(state, "train-images-idx3-ubyte.gz"), 0x803, 5, 4, 3, 0);
    s_idx_labels(s_path(state, "train-labels-idx1-ubyte.gz"), 0x801, 5, s_labels);
    s_idx_images(s_path(state, "t10k-images-idx3-ubyte"), 0x803, 3, 2, 2, 0);
    s_idx_labels(s_path(state, "t10k-labels-idx1-ubyte"), 0x801, 3, s_labels + 2);
    const char *dir = ((s_fixture *)*state)->dir;
    assert_int_equal(dq_dataset_load_dir(&ds, dir, 1, &err), DQ_OK);
    s_check_idx(&ds, 5, 4, 3, s_labels);
    dq_dataset_free(&ds);
    assert_int_equal(dq_dataset_load_dir(&ds, dir, 0, &err), DQ_OK);
    s_check_idx(&ds, 3, 2, 2, s_labels + 2);
    dq_dataset_free(&ds);
    /* Half a layout is reported, not skipped. */
    assert_int_equal(remove(s_path(state, "t10k-labels-idx1-ubyte")), 0);
    assert_int_equal(dq_dataset_load_dir(&ds, dir, 0, &err), DQ_ERR_NOT_FOUND);
    s_expect_msg(&err, dir, "t10k-labels-idx1-ubyte", NULL);
}

static void test_load_dir_cifar(void **state)
{
    dq_dataset ds;
    dq_err err = {{0}};
    const char *dir = ((s_fixture *)*state)->dir;
    /* Directly in the directory: 5 train batches of 2 records each. */
    for (int i = 0; i < 5; i++) {
        char name[32];
        snprintf(name, sizeof name, "data_batch_%d.bin", i + 1);
        s_cifar(s_path(state, name), 2 * i, 2, 0, -1);
    }
    s_cifar(s_path(state, "test_batch.bin"), 0, 3, 0, -1);
    assert_int_equal(dq_dataset_load_dir(&ds, dir, 1, &err), DQ_OK);
    s_check_cifar(&ds, 10);
    dq_dataset_free(&ds);
    assert_int_equal(dq_dataset_load_dir(&ds, dir, 0, &err), DQ_OK);
    s_check_cifar(&ds, 3);
    dq_dataset_free(&ds);
    /* A missing batch is named. */
    assert_int_equal(remove(s_path(state, "data_batch_3.bin")), 0);
    assert_int_equal(dq_dataset_load_dir(&ds, dir, 1, &err), DQ_ERR_NOT_FOUND);
    s_expect_msg(&err, "data_batch_3.bin", NULL, NULL);

    /* In cifar-10-batches-bin/ as the tarball unpacks. */
    const char *sub = s_path(state, "cifar-10-batches-bin");
    assert_int_equal(mkdir(sub, 0700), 0);
    s_cifar(s_path(state, "cifar-10-batches-bin/test_batch.bin"), 0, 4, 0, -1);
    assert_int_equal(remove(s_path(state, "test_batch.bin")), 0);
    assert_int_equal(dq_dataset_load_dir(&ds, dir, 0, &err), DQ_OK);
    s_check_cifar(&ds, 4);
    dq_dataset_free(&ds);
}

static void test_load_dir_empty(void **state)
{
    dq_dataset ds;
    dq_err err = {{0}};
    const char *dir = ((s_fixture *)*state)->dir;
    assert_int_equal(dq_dataset_load_dir(&ds, dir, 1, &err), DQ_ERR_NOT_FOUND);
    s_expect_msg(&err, "train-images-idx3-ubyte[.gz]", "data_batch_1..5.bin",
                 "cifar-10-batches-bin");
    s_expect_msg(&err, dir, NULL, NULL);
    assert_int_equal(dq_dataset_load_dir(&ds, dir, 0, &err), DQ_ERR_NOT_FOUND);
    s_expect_msg(&err, "t10k-images-idx3-ubyte[.gz]", "test_batch.bin", NULL);
    const char *none = s_path(state, "missing");
    assert_int_equal(dq_dataset_load_dir(&ds, none, 0, &err), DQ_ERR_NOT_FOUND);
    s_expect_msg(&err, none, NULL, NULL);
}

static void test_real_fashion_mnist(void **state)
{
    (void)state;
    struct stat sb;
    if (stat(FMNIST_DIR, &sb) != 0) skip();
    dq_dataset ds;
    dq_err err = {{0}};
    dq_status st = dq_dataset_load_dir(&ds, FMNIST_DIR, 0, &err);
    if (st != DQ_OK) fail_msg("%s", err.msg);
    assert_int_equal(ds.n, 10000);
    assert_int_equal(ds.c, 1);
    assert_int_equal(ds.h, 28);
    assert_int_equal(ds.w, 28);
    int count[10] = {0};
    for (int64_t i = 0; i < ds.n; i++) {
        assert_in_range(ds.labels[i], 0, 9);
        count[ds.labels[i]]++;
    }
    for (int k = 0; k < 10; k++) assert_int_equal(count[k], 1000);
    uint64_t sum = 0;
    for (int64_t i = 0; i < ds.n * 784; i++) sum += ds.images[i];
    assert_true(sum > 0); /* real pixels, not a zeroed buffer */
    dq_dataset_free(&ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_idx_raw_and_gz, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_idx_errors, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_cifar, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_load_dir_idx, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_load_dir_cifar, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_load_dir_empty, s_setup, s_teardown),
        cmocka_unit_test(test_real_fashion_mnist),
    };
    return cmocka_run_group_tests_name("dataset", tests, NULL, NULL);
}
