/* test_cache_evict.c - the cache's size limit (issue 12 section 5,
 * src/cache/evict.c): above 90 % of the map whole teachers are evicted,
 * least recently written first and never the one being written, so a
 * cache smaller than the data keeps storing instead of going full; `gc`
 * keeps only the named teachers; per-teacher bytes for `stats`. */
#include "cache_testutil.h"

#include <unistd.h>

#define SHA_C "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
enum { N = 32, F = 256 }; /* 32 samples x 1 KiB values per batch */

/* Puts batch b of teacher sha (inputs and outputs from seeds); returns stored. */
static int64_t s_put(dq_cache_t *c, const char *sha, int b)
{
    static float y[N * F];
    uint8_t x[N * 16];
    const int64_t shape[4] = {N, 1, 4, 4}, oshape[1] = {F};
    dq_msg_teacher t = s_teacher(sha);
    s_bytes(x, sizeof x, (uint64_t)sha[0] * 1000 + (uint64_t)b);
    s_floats(y, N * F, (uint64_t)sha[0] * 7000 + (uint64_t)b);
    dq_cache_put_output out = {"logits", 1, oshape, y};
    int64_t stored = -1;
    dq_err err = {{0}};
    dq_status st = dq_cache_put_batch(c, &t, DQ_DTYPE_U8, shape, x, 1, &out, &stored, &err);
    if (st) print_error("put: %s\n", err.msg);
    assert_int_equal(st, DQ_OK);
    return stored;
}

/* Missing samples of batch b of teacher sha (0: all there). */
static int64_t s_missing(dq_cache_t *c, const char *sha, int b)
{
    uint8_t x[N * 16];
    const int64_t shape[4] = {N, 1, 4, 4};
    s_bytes(x, sizeof x, (uint64_t)sha[0] * 1000 + (uint64_t)b);
    dq_cache_get_output o = {.name = "logits"};
    int64_t missing = -1;
    dq_err err = {{0}};
    assert_int_equal(dq_cache_get_batch(c, sha, "deepnn-fmnist", DQ_DTYPE_U8, shape, x, 1, &o,
                                        &missing, &err),
                     DQ_OK);
    dq_cache_get_output_free(&o, 1);
    return missing;
}

static dq_cache_t *s_open_log(const char *dir, uint64_t max, FILE *log)
{
    dq_cache_config cfg;
    dq_cache_config_defaults(&cfg);
    cfg.max_bytes = max;
    cfg.log = log;
    dq_cache_t *c = NULL;
    dq_err err = {{0}};
    assert_int_equal(dq_cache_open(&c, dir, &cfg, &err), DQ_OK);
    return c;
}

static char *s_slurp(FILE *f)
{
    static char buf[8192];
    fflush(f);
    rewind(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    return buf;
}

/* 4 MiB map (about 40 batches): A (16 batches), B (8), then C 40: more
 * than fit, A goes first, every C batch is stored, never full. */
static void test_oldest_teacher_evicted_first(void **state)
{
    s_fixture *fx = *state;
    FILE *log = tmpfile();
    assert_non_null(log);
    dq_cache_t *c = s_open_log(fx->dir, 4 << 20, log);
    for (int b = 0; b < 16; b++) assert_int_equal(s_put(c, SHA_A, b), N);
    usleep(5000);
    for (int b = 0; b < 8; b++) assert_int_equal(s_put(c, SHA_B, b), N);
    usleep(5000);
    for (int b = 0; b < 40; b++) assert_int_equal(s_put(c, SHA_C, b), N);
    assert_false(dq_cache_is_full(c));
    const char *text = s_slurp(log);
    const char *first = strstr(text, "evicted teacher");
    assert_non_null(first);
    assert_non_null(strstr(first, "evicted teacher aaaaaaaaaaaa"));
    /* A is gone, C (being written) is complete */
    assert_int_equal(s_missing(c, SHA_A, 0), N);
    for (int b = 0; b < 40; b++) assert_int_equal(s_missing(c, SHA_C, b), 0);
    dq_cache_info info;
    dq_err err = {{0}};
    assert_int_equal(dq_cache_stats(c, &info, &err), DQ_OK);
    bool has_a = false, has_c = false;
    for (int i = 0; i < info.n_teachers; i++) {
        has_a |= strcmp(info.teachers[i].teacher.sha256, SHA_A) == 0;
        has_c |= strcmp(info.teachers[i].teacher.sha256, SHA_C) == 0;
    }
    assert_false(has_a);
    assert_true(has_c);
    dq_cache_info_free(&info);
    /* a reader sees a consistent cache */
    int64_t entries = 0, bad = -1;
    assert_int_equal(dq_cache_verify(c, &entries, &bad, NULL, NULL, &err), DQ_OK);
    assert_int_equal(bad, 0);
    dq_cache_close(&c);
    fclose(log);
}

/* With a single teacher nothing is evicted: the old full policy. */
static void test_single_teacher_still_goes_full(void **state)
{
    s_fixture *fx = *state;
    FILE *log = tmpfile();
    dq_cache_t *c = s_open_log(fx->dir, 4 << 20, log);
    int b = 0;
    while (b < 128 && s_put(c, SHA_A, b) == N) b++;
    print_message("# %d batches fit in 4 MiB\n", b);
    assert_true(b > 16 && b < 128);
    assert_true(dq_cache_is_full(c));
    assert_null(strstr(s_slurp(log), "evicted"));
    assert_int_equal(s_missing(c, SHA_A, 0), 0);
    dq_cache_close(&c);
    fclose(log);
}

static void test_gc_keeps_named_and_bytes(void **state)
{
    s_fixture *fx = *state;
    dq_cache_t *c = s_open(fx->dir, false, 0);
    for (int b = 0; b < 3; b++) {
        s_put(c, SHA_A, b);
        s_put(c, SHA_B, b);
        s_put(c, SHA_C, b);
    }
    dq_cache_info info;
    dq_err err = {{0}};
    assert_int_equal(dq_cache_stats(c, &info, &err), DQ_OK);
    assert_int_equal(dq_cache_teacher_bytes(c, &info, &err), DQ_OK);
    assert_int_equal(info.n_teachers, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(info.teachers[i].entries, 3 * N);
        /* each value holds 1 KiB of floats plus header and key */
        assert_true(info.teachers[i].bytes > (uint64_t)3 * N * F * 4);
        assert_true(info.teachers[i].bytes < (uint64_t)3 * N * (F * 4 + 200));
    }
    dq_cache_info_free(&info);
    const char *keep[] = {SHA_B};
    int teachers = 0;
    int64_t entries = 0;
    assert_int_equal(dq_cache_gc(c, keep, 1, &teachers, &entries, &err), DQ_OK);
    assert_int_equal(teachers, 2);
    assert_int_equal(entries, 6 * N);
    assert_int_equal(s_missing(c, SHA_A, 1), N);
    assert_int_equal(s_missing(c, SHA_C, 2), N);
    assert_int_equal(s_missing(c, SHA_B, 2), 0);
    assert_int_equal(dq_cache_stats(c, &info, &err), DQ_OK);
    assert_int_equal(info.n_teachers, 1);
    assert_string_equal(info.teachers[0].teacher.sha256, SHA_B);
    dq_cache_info_free(&info);
    /* a bad sha is an error, nothing deleted */
    const char *bad[] = {"xyz"};
    assert_int_not_equal(dq_cache_gc(c, bad, 1, &teachers, &entries, &err), DQ_OK);
    assert_int_equal(s_missing(c, SHA_B, 0), 0);
    dq_cache_close(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_oldest_teacher_evicted_first, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_single_teacher_still_goes_full, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_gc_keeps_named_and_bytes, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
