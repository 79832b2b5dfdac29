/* test_safetensors.c - safetensors write/read round trip, foreign files
 * written byte by byte the way the Python library lays them out, and every
 * validation error (message must name the file and the tensor). */
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
#include "model/safetensors.h"

typedef dq_test_tmpdir s_fixture;

static int s_setup(void **state)
{
    return dq_test_tmpdir_setup(state, "dq_st_");
}

static int s_teardown(void **state)
{
    return dq_test_tmpdir_teardown(state);
}

static void s_path(char *out, size_t cap, void **state, const char *name)
{
    s_fixture *fx = *state;
    snprintf(out, cap, "%s/%s", fx->dir, name);
}

static void s_write_bytes(const char *path, const void *p, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static unsigned char *s_read_bytes(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    unsigned char *buf = malloc(1 << 16);
    assert_non_null(buf);
    *len = fread(buf, 1, 1 << 16, f);
    fclose(f);
    return buf;
}

/* A file as a foreign writer makes it: u64 LE length of header+pad spaces,
 * the header text, the pad, then the data area. */
static void s_write_st(const char *path, const char *json, size_t pad, const void *data,
                       size_t dlen)
{
    size_t jl = strlen(json), n = jl + pad;
    unsigned char *buf = malloc(8 + n + dlen + 1);
    assert_non_null(buf);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(buf + 8, json, jl);
    memset(buf + 8 + jl, ' ', pad);
    if (dlen) memcpy(buf + 8 + n, data, dlen);
    s_write_bytes(path, buf, 8 + n + dlen);
    free(buf);
}

static void test_round_trip(void **state)
{
    char path[128];
    s_path(path, sizeof path, state, "rt.safetensors");
    float w[2 * 3 * 4];
    for (int i = 0; i < 24; i++) w[i] = (float)i * 0.25f - 3.0f;
    float scalar = 1.5e-7f;
    int64_t counters[3] = {-1, INT64_MIN, 1234567890123LL};
    uint64_t rng[2] = {UINT64_MAX, 0x0123456789abcdefULL};
    dq_st_tensor t[4] = {
        {.name = "features.0.weight", .dtype = DQ_ST_F32, .ndim = 3, .shape = {2, 3, 4},
         .data = w, .nbytes = sizeof w},
        {.name = "step", .dtype = DQ_ST_I64, .ndim = 1, .shape = {3}, .data = counters,
         .nbytes = sizeof counters},
        {.name = "scale", .dtype = DQ_ST_F32, .ndim = 0, .data = &scalar, .nbytes = 4},
        {.name = "rng", .dtype = DQ_ST_U64, .ndim = 1, .shape = {2}, .data = rng,
         .nbytes = sizeof rng},
    };
    const char *meta[] = {"format", "pt", "model", "deepnn-fmnist"};
    dq_err err = {{0}};
    assert_int_equal(dq_st_write(path, t, 4, meta, 2, &err), DQ_OK);
    /* Second write replaces the first atomically and leaves no .tmp. */
    assert_int_equal(dq_st_write(path, t, 4, meta, 2, &err), DQ_OK);
    char tmp[160];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_int_equal(access(tmp, F_OK), -1);

    /* File layout: header padded to 8 so data is 8-aligned; data contiguous. */
    size_t flen;
    unsigned char *raw = s_read_bytes(path, &flen);
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)raw[i] << (8 * i);
    assert_int_equal(hlen % 8, 0);
    assert_int_equal(flen, 8 + hlen + sizeof w + 4 + sizeof counters + sizeof rng);
    assert_memory_equal(raw + 8, "{\"__metadata__\":{", 17);
    assert_true(raw[8 + hlen - 1] == '}' || raw[8 + hlen - 1] == ' ');
    free(raw);

    dq_st_file_t *f = NULL;
    assert_int_equal(dq_st_open(&f, path, &err), DQ_OK);
    assert_string_equal(dq_st_path(f), path);
    assert_int_equal(dq_st_count(f), 4);
    for (int i = 0; i < 4; i++) {
        const dq_st_tensor *g = dq_st_at(f, i);
        assert_string_equal(g->name, t[i].name); /* header keeps the caller's order */
        assert_int_equal(g->dtype, t[i].dtype);
        assert_int_equal(g->ndim, t[i].ndim);
        for (int d = 0; d < t[i].ndim; d++) assert_int_equal(g->shape[d], t[i].shape[d]);
        assert_int_equal(g->nbytes, t[i].nbytes);
        assert_memory_equal(g->data, t[i].data, t[i].nbytes);
        size_t align = g->dtype == DQ_ST_F32 ? 4 : 8;
        assert_int_equal((uintptr_t)g->data % align, 0);
    }
    assert_null(dq_st_at(f, 4));
    assert_null(dq_st_at(f, -1));
    const dq_st_tensor *s = dq_st_find(f, "step");
    assert_non_null(s);
    assert_true(((const int64_t *)s->data)[1] == INT64_MIN);
    assert_true(((const uint64_t *)dq_st_find(f, "rng")->data)[0] == UINT64_MAX);
    assert_true(((const float *)dq_st_find(f, "features.0.weight")->data)[23] == 2.75f);
    assert_null(dq_st_find(f, "nope"));
    assert_string_equal(dq_st_meta(f, "format"), "pt");
    assert_string_equal(dq_st_meta(f, "model"), "deepnn-fmnist");
    assert_null(dq_st_meta(f, "missing"));
    dq_st_close(&f);
    assert_null(f);
    dq_st_close(&f); /* closing twice is harmless */

    /* No metadata and no tensors: still a valid file. */
    assert_int_equal(dq_st_write(path, NULL, 0, NULL, 0, &err), DQ_OK);
    assert_int_equal(dq_st_open(&f, path, &err), DQ_OK);
    assert_int_equal(dq_st_count(f), 0);
    assert_null(dq_st_meta(f, "format"));
    dq_st_close(&f);
}

/* Byte layout as Python's safetensors writes it for {"a": 2x2 f32}. */
static void test_reads_python_layout(void **state)
{
    char path[128];
    s_path(path, sizeof path, state, "py.safetensors");
    const char *json = "{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"F32\","
                       "\"shape\":[2,2],\"data_offsets\":[0,16]}}";
    size_t pad = (8 - strlen(json) % 8) % 8;
    float a[4] = {1.0f, -2.0f, 3.5f, 1e30f};
    s_write_st(path, json, pad, a, sizeof a);
    dq_st_file_t *f = NULL;
    dq_err err = {{0}};
    assert_int_equal(dq_st_open(&f, path, &err), DQ_OK);
    assert_int_equal(dq_st_count(f), 1);
    const dq_st_tensor *t = dq_st_find(f, "a");
    assert_non_null(t);
    assert_int_equal(t->ndim, 2);
    assert_int_equal(t->shape[0], 2);
    assert_int_equal(t->shape[1], 2);
    assert_memory_equal(t->data, a, sizeof a);
    assert_string_equal(dq_st_meta(f, "format"), "pt");
    dq_st_close(&f);
}

/* Odd header length (no padding), metadata last, a junk byte before the
 * first tensor and an I64 at an odd offset: data must come back aligned. */
static void test_reads_odd_offsets(void **state)
{
    char path[128];
    s_path(path, sizeof path, state, "odd.safetensors");
    const char *json = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[1,17]},"
                       "\"b\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[17,25]},"
                       "\"z\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[25,25]},"
                       "\"__metadata__\":{\"format\":\"pt\"}}";
    unsigned char data[25];
    float a[4] = {0.5f, -0.25f, 7.0f, -1e-20f};
    int64_t b = -987654321012345LL;
    data[0] = 0xAB;
    memcpy(data + 1, a, 16);
    memcpy(data + 17, &b, 8);
    for (size_t pad = 0; pad < 4; pad += 3) {
        s_write_st(path, json, pad, data, sizeof data);
        dq_st_file_t *f = NULL;
        dq_err err = {{0}};
        assert_int_equal(dq_st_open(&f, path, &err), DQ_OK);
        assert_int_equal(dq_st_count(f), 3);
        const dq_st_tensor *ta = dq_st_find(f, "a"), *tb = dq_st_find(f, "b");
        assert_int_equal((uintptr_t)ta->data % 4, 0);
        assert_int_equal((uintptr_t)tb->data % 8, 0);
        const float *fa = ta->data;
        for (int i = 0; i < 4; i++) assert_true(fa[i] == a[i]);
        assert_true(*(const int64_t *)tb->data == b);
        assert_int_equal(dq_st_find(f, "z")->nbytes, 0);
        assert_string_equal(dq_st_meta(f, "format"), "pt");
        dq_st_close(&f);
    }
}

/* Opens path, expects status st and every needle in the message. */
static void s_expect_fail(const char *path, dq_status st, const char *n1, const char *n2,
                          const char *n3)
{
    dq_st_file_t *f = (dq_st_file_t *)&f; /* must be reset to NULL on failure */
    dq_err err = {{0}};
    dq_status got = dq_st_open(&f, path, &err);
    if (got != st) print_error("message: %s\n", err.msg);
    assert_int_equal(got, st);
    assert_null(f);
    assert_non_null(strstr(err.msg, path));
    const char *needles[3] = {n1, n2, n3};
    for (int i = 0; i < 3; i++)
        if (needles[i] && !strstr(err.msg, needles[i]))
            fail_msg("'%s' not in message: %s", needles[i], err.msg);
}

/* One F32 tensor "w" described by the given entry body, over 16 data bytes. */
static void s_case(const char *path, const char *entry, dq_status st, const char *n1,
                   const char *n2)
{
    char json[512];
    snprintf(json, sizeof json, "{\"__metadata__\":{\"k\":\"v\"},\"w\":%s}", entry);
    float data[4] = {1, 2, 3, 4};
    s_write_st(path, json, 0, data, sizeof data);
    s_expect_fail(path, st, "'w'", n1, n2);
}

static void test_entry_errors(void **state)
{
    char p[128];
    s_path(p, sizeof p, state, "bad.safetensors");
    s_case(p, "{\"shape\":[4],\"data_offsets\":[0,16]}", DQ_ERR_FORMAT, "dtype", NULL);
    s_case(p, "{\"dtype\":\"F32\",\"data_offsets\":[0,16]}", DQ_ERR_FORMAT, "shape", NULL);
    s_case(p, "{\"dtype\":\"F32\",\"shape\":[4]}", DQ_ERR_FORMAT, "data_offsets", NULL);
    s_case(p, "{\"dtype\":\"BF16\",\"shape\":[8],\"data_offsets\":[0,16]}",
           DQ_ERR_UNSUPPORTED, "BF16", NULL);
    s_case(p, "{\"dtype\":\"F32\",\"shape\":[-1,4],\"data_offsets\":[0,16]}", DQ_ERR_FORMAT,
           "shape[0]", NULL);
    s_case(p, "{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4],\"data_offsets\":[0,16]}",
           DQ_ERR_FORMAT, "too large", NULL);
    s_case(p, "{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,16]}", DQ_ERR_FORMAT,
           "shape[0]", NULL);
    s_case(p, "{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}",
           DQ_ERR_UNSUPPORTED, "9 dims", NULL);
    /* The data area starts at 8 + header length: offsets are also given as file bytes. */
    s_case(p, "{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[0,32]}", DQ_ERR_FORMAT,
           "[0, 32]", "16-byte data area");
    s_case(p, "{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}", DQ_ERR_FORMAT,
           "end before begin", NULL);
    s_case(p, "{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}", DQ_ERR_FORMAT,
           "12 bytes", "need 16");
    s_case(p, "{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}", DQ_ERR_FORMAT,
           "data_offsets", NULL);
    s_case(p, "{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}", DQ_ERR_FORMAT,
           "data_offsets", NULL);
    s_case(p, "[1,2]", DQ_ERR_FORMAT, "not a JSON object", NULL);
    s_case(p, "{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}", DQ_ERR_FORMAT, "dtype",
           NULL);

    /* The file byte offset of a too-long tensor is reported. */
    char json[256];
    const char *e = "{\"w\":{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[4,36]}}";
    snprintf(json, sizeof json, "%s", e);
    float d[4] = {0};
    s_write_st(p, json, 0, d, sizeof d);
    char where[64];
    snprintf(where, sizeof where, "file bytes %zu..%zu", 8 + strlen(e) + 4,
             8 + strlen(e) + 36);
    s_expect_fail(p, DQ_ERR_FORMAT, "'w'", where, NULL);
}

static void test_header_errors(void **state)
{
    char p[128];
    s_path(p, sizeof p, state, "hdr.safetensors");
    float d[4] = {0};
    s_write_bytes(p, "\x10\0\0\0\0", 5);
    s_expect_fail(p, DQ_ERR_FORMAT, "5 bytes", "too short", NULL);
    s_write_bytes(p, "", 0);
    s_expect_fail(p, DQ_ERR_FORMAT, "0 bytes", NULL, NULL);
    /* Length beyond the file. */
    unsigned char buf[40] = {200, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    s_write_bytes(p, buf, 10);
    s_expect_fail(p, DQ_ERR_FORMAT, "header length 200", "file size", NULL);
    /* Length beyond 100 MB (and beyond the file). */
    unsigned char big[10] = {0, 0, 0, 0x10, 0, 0, 0, 0, '{', '}'};
    s_write_bytes(p, big, 10);
    s_expect_fail(p, DQ_ERR_FORMAT, "100 MB", NULL, NULL);
    unsigned char huge[10] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}'};
    s_write_bytes(p, huge, 10);
    s_expect_fail(p, DQ_ERR_FORMAT, "header length", NULL, NULL);
    /* Invalid JSON, not an object, bad metadata, duplicate names. */
    s_write_st(p, "{\"w\": {\"dtype\": ", 0, d, sizeof d);
    s_expect_fail(p, DQ_ERR_FORMAT, "invalid JSON", NULL, NULL);
    s_write_st(p, "[]", 0, d, sizeof d);
    s_expect_fail(p, DQ_ERR_FORMAT, "not an object", NULL, NULL);
    s_write_st(p, "{\"__metadata__\":{\"epoch\":3}}", 0, d, sizeof d);
    s_expect_fail(p, DQ_ERR_FORMAT, "'epoch'", "not a string", NULL);
    s_write_st(p, "{\"__metadata__\":[]}", 0, d, sizeof d);
    s_expect_fail(p, DQ_ERR_FORMAT, "__metadata__", NULL, NULL);
    s_write_st(p,
               "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
               0, d, sizeof d);
    s_expect_fail(p, DQ_ERR_FORMAT, "invalid JSON", "duplicate", NULL);
    /* Padding with something other than whitespace is not JSON. */
    unsigned char nul[16] = {8, 0, 0, 0, 0, 0, 0, 0, '{', '}', 0, 0, 0, 0, 0, 0};
    s_write_bytes(p, nul, 16);
    s_expect_fail(p, DQ_ERR_FORMAT, "invalid JSON", NULL, NULL);

    char missing[160];
    snprintf(missing, sizeof missing, "%s.nope", p);
    s_expect_fail(missing, DQ_ERR_NOT_FOUND, "cannot open", NULL, NULL);
}

/* A valid file cut short anywhere must fail cleanly with FORMAT. */
static void test_truncated_file(void **state)
{
    char p[128], q[128];
    s_path(p, sizeof p, state, "full.safetensors");
    s_path(q, sizeof q, state, "cut.safetensors");
    float w[6] = {1, 2, 3, 4, 5, 6};
    int64_t c[1] = {42};
    dq_st_tensor t[2] = {
        {.name = "w", .dtype = DQ_ST_F32, .ndim = 2, .shape = {2, 3}, .data = w,
         .nbytes = sizeof w},
        {.name = "c", .dtype = DQ_ST_I64, .ndim = 1, .shape = {1}, .data = c,
         .nbytes = sizeof c},
    };
    dq_err err = {{0}};
    assert_int_equal(dq_st_write(p, t, 2, NULL, 0, &err), DQ_OK);
    size_t len;
    unsigned char *raw = s_read_bytes(p, &len);
    size_t hend = len - sizeof w - sizeof c;
    size_t cuts[] = {0, 3, 7, 8, 20, hend - 1, hend, hend + 4, hend + 8, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        s_write_bytes(q, raw, cuts[i]);
        s_expect_fail(q, DQ_ERR_FORMAT, NULL, NULL, NULL);
        /* Cut inside the data area: "w" (checked first, stored after the
         * 8-byte "c") no longer fits and is named. */
        if (cuts[i] >= hend) s_expect_fail(q, DQ_ERR_FORMAT, "'w'", "past the end", NULL);
    }
    free(raw);
}

static void test_write_errors(void **state)
{
    char p[128], tmp[160];
    s_path(p, sizeof p, state, "w.safetensors");
    float w[4] = {0};
    dq_st_tensor t[2] = {
        {.name = "w", .dtype = DQ_ST_F32, .ndim = 1, .shape = {4}, .data = w, .nbytes = 16},
        {.name = "w", .dtype = DQ_ST_F32, .ndim = 1, .shape = {4}, .data = w, .nbytes = 16},
    };
    dq_err err = {{0}};
    assert_int_equal(dq_st_write(p, t, 2, NULL, 0, &err), DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "'w' appears twice"));
    t[0].nbytes = 12;
    assert_int_equal(dq_st_write(p, t, 1, NULL, 0, &err), DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "'w'"));
    assert_non_null(strstr(err.msg, "need 16"));
    t[0].nbytes = 16;
    t[0].name = "__metadata__";
    assert_int_equal(dq_st_write(p, t, 1, NULL, 0, &err), DQ_ERR_ARG);
    t[0].name = "w\xff";
    assert_int_equal(dq_st_write(p, t, 1, NULL, 0, &err), DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "UTF-8"));
    t[0].name = "w";
    const char *meta[] = {"k", "\xc3"};
    assert_int_equal(dq_st_write(p, t, 1, meta, 1, &err), DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "'k'"));
    assert_int_equal(access(p, F_OK), -1);

    /* Directory missing: cannot create the .tmp. */
    char bad[160];
    s_path(bad, sizeof bad, state, "no/such/dir.safetensors");
    assert_int_equal(dq_st_write(bad, t, 1, NULL, 0, &err), DQ_ERR_IO);
    assert_non_null(strstr(err.msg, "no/such/dir.safetensors.tmp"));

    /* Rename fails (target is a directory): the .tmp must be removed. */
    s_path(p, sizeof p, state, "isdir");
    assert_int_equal(mkdir(p, 0700), 0);
    assert_int_equal(dq_st_write(p, t, 1, NULL, 0, &err), DQ_ERR_IO);
    assert_non_null(strstr(err.msg, "rename"));
    snprintf(tmp, sizeof tmp, "%s.tmp", p);
    assert_int_equal(access(tmp, F_OK), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_reads_python_layout, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_reads_odd_offsets, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_entry_errors, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_header_errors, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_truncated_file, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_write_errors, s_setup, s_teardown),
    };
    return cmocka_run_group_tests_name("safetensors", tests, NULL, NULL);
}
