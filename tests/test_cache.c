/* test_cache.c - the LMDB teacher-output cache: bit-exact round trips, exact
 * miss counts, key separation (teacher, dtype, shape), read-only refusal,
 * exact stats, verify catching values corrupted behind its back (raw
 * mdb_put), the map-full policy, export and the broker hook. The tests with
 * other processes (SIGKILL crash, a reader beside a growing writer) are in
 * test_cache_crash.c.
 *
 * `test_cache --fixture DIR [--corrupt]` instead writes a small known cache
 * for tests/test_cache_tool.sh (the tool itself only reads). */
#include "cache_testutil.h"

#include <lmdb.h>
#include <xxhash.h>
#include <zmq.h>

#include "broker/cache_hook.h"

/* A batch with two outputs: logits [10] and feat [2, 3] per sample. */
typedef struct {
    int64_t shape[4];
    dq_msg_dtype dtype;
    void *x;
    float *logits, *feat;
} s_batch;

static const int64_t s_lshape[1] = {10}, s_fshape[2] = {2, 3};

static void s_batch_make(s_batch *b, dq_msg_dtype dt, int64_t n, int64_t c, int64_t h,
                         int64_t w, uint64_t seed)
{
    b->dtype = dt;
    b->shape[0] = n, b->shape[1] = c, b->shape[2] = h, b->shape[3] = w;
    size_t bytes = (size_t)(n * c * h * w) * (dt == DQ_DTYPE_F32 ? 4 : 1);
    b->x = malloc(bytes);
    b->logits = malloc((size_t)n * 10 * sizeof(float));
    b->feat = malloc((size_t)n * 6 * sizeof(float));
    assert_true(b->x && b->logits && b->feat);
    s_bytes(b->x, bytes, seed);
    s_floats(b->logits, (size_t)n * 10, seed + 1);
    s_floats(b->feat, (size_t)n * 6, seed + 2);
}

static void s_batch_free(s_batch *b)
{
    free(b->x);
    free(b->logits);
    free(b->feat);
}

static int64_t s_put(dq_cache_t *c, const char *sha, const s_batch *b, int n_outputs)
{
    dq_msg_teacher t = s_teacher(sha);
    dq_cache_put_output outs[2] = {{"logits", 1, s_lshape, b->logits},
                                   {"feat", 2, s_fshape, b->feat}};
    int64_t stored = -1;
    dq_err err = {{0}};
    dq_status st = dq_cache_put_batch(c, &t, b->dtype, b->shape, b->x, n_outputs, outs, &stored,
                                      &err);
    if (st) print_error("put: %s\n", err.msg);
    assert_int_equal(st, DQ_OK);
    return stored;
}

/* Gets logits+feat for b's samples; returns the miss count. */
static int64_t s_get(dq_cache_t *c, const char *sha, const s_batch *b, dq_cache_get_output o[2])
{
    o[0].name = "logits";
    o[1].name = "feat";
    int64_t missing = -1;
    dq_err err = {{0}};
    dq_status st = dq_cache_get_batch(c, sha, "deepnn-fmnist", b->dtype, b->shape, b->x, 2, o, &missing, &err);
    if (st) print_error("get: %s\n", err.msg);
    assert_int_equal(st, DQ_OK);
    return missing;
}

/* ---- tests ------------------------------------------------------------------ */

static void test_round_trip_bit_exact(void **state)
{
    s_fixture *fx = *state;
    dq_cache_t *c = s_open(fx->dir, false, 0);
    s_batch u, f;
    s_batch_make(&u, DQ_DTYPE_U8, 9, 1, 28, 28, 1);
    s_batch_make(&f, DQ_DTYPE_F32, 5, 3, 4, 4, 2);
    assert_int_equal(s_put(c, SHA_A, &u, 2), 9 * 2);
    assert_int_equal(s_put(c, SHA_A, &f, 2), 5 * 2);
    assert_int_equal(s_put(c, SHA_A, &u, 2), 0); /* already there: nothing new */

    dq_cache_get_output o[2] = {{0}};
    assert_int_equal(s_get(c, SHA_A, &u, o), 0);
    assert_int_equal(o[0].ndim, 1);
    assert_int_equal(o[0].shape[0], 10);
    assert_int_equal(o[1].ndim, 2);
    assert_int_equal(o[1].shape[0], 2);
    assert_int_equal(o[1].shape[1], 3);
    assert_memory_equal(o[0].data, u.logits, 9 * 10 * sizeof(float));
    assert_memory_equal(o[1].data, u.feat, 9 * 6 * sizeof(float));
    float *keep = o[0].data;
    assert_int_equal(s_get(c, SHA_A, &f, o), 0); /* smaller batch: buffers reused */
    assert_ptr_equal(o[0].data, keep);
    assert_memory_equal(o[0].data, f.logits, 5 * 10 * sizeof(float));
    assert_memory_equal(o[1].data, f.feat, 5 * 6 * sizeof(float));

    /* The same after reopening read-only (what --replay does). */
    dq_cache_close(&c);
    assert_null(c);
    c = s_open(fx->dir, true, 0);
    assert_int_equal(s_get(c, SHA_A, &u, o), 0);
    assert_memory_equal(o[0].data, u.logits, 9 * 10 * sizeof(float));
    assert_memory_equal(o[1].data, u.feat, 9 * 6 * sizeof(float));
    dq_cache_get_output_free(o, 2);
    assert_null(o[0].data);
    dq_cache_close(&c);
    s_batch_free(&u);
    s_batch_free(&f);
}

static void test_misses_counted_exactly(void **state)
{
    s_fixture *fx = *state;
    dq_cache_t *c = s_open(fx->dir, false, 0);
    s_batch a, q;
    s_batch_make(&a, DQ_DTYPE_U8, 8, 1, 6, 6, 10);
    s_batch_make(&q, DQ_DTYPE_U8, 8, 1, 6, 6, 11); /* all new samples... */
    assert_int_equal(s_put(c, SHA_A, &a, 2), 16);
    /* ...except rows 0, 3 and 6, copied from a (rows 1, 4, 7). */
    const int from[3] = {1, 4, 7}, to[3] = {0, 3, 6};
    for (int i = 0; i < 3; i++)
        memcpy((uint8_t *)q.x + to[i] * 36, (uint8_t *)a.x + from[i] * 36, 36);
    dq_cache_get_output o[2] = {{0}};
    assert_int_equal(s_get(c, SHA_A, &q, o), 5);
    /* Storing only logits for q: asking for logits+feat still misses those 5
     * samples, asking for logits alone hits all 8. */
    assert_int_equal(s_put(c, SHA_A, &q, 1), 5);
    assert_int_equal(s_get(c, SHA_A, &q, o), 5);
    int64_t missing = -1;
    dq_err err = {{0}};
    assert_int_equal(dq_cache_get_batch(c, SHA_A, "deepnn-fmnist", q.dtype, q.shape, q.x, 1, o, &missing, &err),
                     DQ_OK);
    assert_int_equal(missing, 0);
    for (int i = 0; i < 8; i++) {
        const float *want = q.logits + i * 10;
        for (int j = 0; j < 3; j++)
            if (to[j] == i) want = a.logits + from[j] * 10; /* the first put wins */
        assert_memory_equal(o[0].data + i * 10, want, 10 * sizeof(float));
    }
    /* An output nobody stored misses everywhere. */
    o[0].name = "hidden";
    assert_int_equal(dq_cache_get_batch(c, SHA_A, "deepnn-fmnist", q.dtype, q.shape, q.x, 1, o, &missing, &err),
                     DQ_OK);
    assert_int_equal(missing, 8);
    dq_cache_get_output_free(o, 2);
    dq_cache_close(&c);
    s_batch_free(&a);
    s_batch_free(&q);
}

static void test_key_separates_teacher_dtype_shape(void **state)
{
    s_fixture *fx = *state;
    dq_cache_t *c = s_open(fx->dir, false, 0);
    s_batch u;
    s_batch_make(&u, DQ_DTYPE_U8, 4, 1, 8, 8, 20); /* 64 bytes per sample */
    assert_int_equal(s_put(c, SHA_A, &u, 2), 8);
    dq_cache_get_output o[2] = {{0}};
    assert_int_equal(s_get(c, SHA_A, &u, o), 0);
    assert_int_equal(s_get(c, SHA_B, &u, o), 4);          /* other teacher */
    s_batch v = u;
    v.shape[2] = 4, v.shape[3] = 16;                       /* same bytes, 1x4x16 */
    assert_int_equal(s_get(c, SHA_A, &v, o), 4);
    v.shape[1] = 4, v.shape[2] = 4, v.shape[3] = 4;        /* 4x4x4 */
    assert_int_equal(s_get(c, SHA_A, &v, o), 4);
    v.dtype = DQ_DTYPE_F32;                                /* same bytes as f32 1x4x4 */
    v.shape[1] = 1, v.shape[2] = 4, v.shape[3] = 4;
    assert_int_equal(s_get(c, SHA_A, &v, o), 4);

    /* Another model with the same weights file (e.g. deepnn-cosine next to
     * deepnn-regressor) does not see these entries. */
    {
        dq_err e2 = {{0}};
        int64_t miss = 0;
        assert_int_equal(dq_cache_get_batch(c, SHA_A, "deepnn-cosine-fmnist", u.dtype, u.shape,
                                            u.x, 2, o, &miss, &e2), DQ_OK);
        assert_int_equal(miss, u.shape[0]);
    }

    /* The hash is the documented one: XXH3-128 seeded with XXH3-64 of the
     * model name, itself seeded with XXH3-64 of {"DQS1", dtype, c, h, w};
     * canonical bytes. Pins the on-disk format. */
    dq_cache_hash h[4];
    dq_cache_hash_batch(h, "deepnn-fmnist", DQ_DTYPE_U8, u.shape, u.x);
    uint8_t hdr[32] = {'D', 'Q', 'S', '1', 0, 0, 0, 0};
    memcpy(hdr + 8, &u.shape[1], 24);
    XXH128_canonical_t can;
    XXH128_canonicalFromHash(&can, XXH3_128bits_withSeed(
                                       (uint8_t *)u.x + 64, 64,
                                       XXH3_64bits_withSeed("deepnn-fmnist", 13,
                                                            XXH3_64bits(hdr, 32))));
    assert_memory_equal(h[1].b, can.digest, 16);
    dq_cache_hash hf[4];
    dq_cache_hash_batch(hf, "deepnn-fmnist", DQ_DTYPE_F32, v.shape, u.x);
    assert_memory_not_equal(h[0].b, hf[0].b, 16);

    dq_err err = {{0}};
    int64_t missing = 0;
    assert_int_equal(dq_cache_get_batch(c, "abc", "deepnn-fmnist", u.dtype, u.shape, u.x, 2, o,
                                        &missing, &err),
                     DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "64 hex digits"));
    dq_cache_get_output_free(o, 2);
    dq_cache_close(&c);
    s_batch_free(&u);
}

static void test_read_only_refuses_put(void **state)
{
    s_fixture *fx = *state;
    dq_cache_config cfg;
    dq_cache_config_defaults(&cfg);
    cfg.read_only = true;
    dq_cache_t *c = NULL;
    dq_err err = {{0}};
    /* An empty directory is not a cache. */
    assert_int_equal(dq_cache_open(&c, fx->dir, &cfg, &err), DQ_ERR_NOT_FOUND);
    assert_null(c);
    assert_non_null(strstr(err.msg, fx->dir));
    assert_non_null(strstr(err.msg, "no cache"));

    c = s_open(fx->dir, false, 0);
    dq_cache_close(&c);
    c = s_open(fx->dir, true, 0);
    s_batch u;
    s_batch_make(&u, DQ_DTYPE_U8, 2, 1, 4, 4, 30);
    dq_msg_teacher t = s_teacher(SHA_A);
    dq_cache_put_output out = {"logits", 1, s_lshape, u.logits};
    int64_t stored = -1;
    assert_int_equal(dq_cache_put_batch(c, &t, u.dtype, u.shape, u.x, 1, &out, &stored, &err),
                     DQ_ERR_ARG);
    assert_int_equal(stored, 0);
    assert_non_null(strstr(err.msg, "read-only"));
    assert_non_null(strstr(err.msg, fx->dir));
    dq_cache_close(&c);
    s_batch_free(&u);
}

static void test_stats_exact(void **state)
{
    s_fixture *fx = *state;
    dq_cache_t *c = s_open(fx->dir, false, 64ull << 20);
    s_batch a, b;
    s_batch_make(&a, DQ_DTYPE_U8, 7, 1, 5, 5, 40);
    s_batch_make(&b, DQ_DTYPE_F32, 3, 1, 5, 5, 41);
    assert_int_equal(s_put(c, SHA_A, &a, 2), 14);
    assert_int_equal(s_put(c, SHA_B, &a, 1), 7);
    assert_int_equal(s_put(c, SHA_B, &b, 2), 6);
    assert_int_equal(s_put(c, SHA_B, &b, 2), 0);
    dq_cache_info info;
    dq_err err = {{0}};
    assert_int_equal(dq_cache_stats(c, &info, &err), DQ_OK);
    assert_int_equal(info.entries, 14 + 7 + 6);
    assert_int_equal(info.map_bytes, 64ull << 20);
    assert_int_equal(info.page_size, 4096);
    assert_true(info.used_bytes > 0 && info.used_bytes % 4096 == 0);
    assert_true(info.used_bytes <= info.file_bytes && info.file_bytes < (1u << 20));
    assert_false(info.full);
    assert_int_equal(info.n_teachers, 2);
    /* Teachers sort by sha bytes: 0123... before aaaa... */
    assert_string_equal(info.teachers[0].teacher.sha256, SHA_B);
    assert_int_equal(info.teachers[0].entries, 13);
    assert_string_equal(info.teachers[1].teacher.sha256, SHA_A);
    assert_int_equal(info.teachers[1].entries, 14);
    assert_string_equal(info.teachers[1].teacher.service, "fmnist");
    assert_string_equal(info.teachers[1].teacher.model, "deepnn-fmnist");
    dq_cache_info_free(&info);
    int64_t entries = -1, bad = -1;
    assert_int_equal(dq_cache_verify(c, &entries, &bad, NULL, NULL, &err), DQ_OK);
    assert_int_equal(entries, 27);
    assert_int_equal(bad, 0);
    dq_cache_close(&c);
    s_batch_free(&a);
    s_batch_free(&b);
}

typedef struct {
    int lines;
    char first[512];
} s_report;

static void s_collect(void *ctx, const char *line)
{
    s_report *r = ctx;
    if (r->lines++ == 0) snprintf(r->first, sizeof r->first, "%s", line);
}

/* Rewrites the `which`-th entry of "outputs" (0 = first) with mutate(). */
static void s_raw_edit(const char *dir, int which, void (*mutate)(MDB_txn *, MDB_dbi, MDB_val *,
                                                                  MDB_val *))
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_cursor *cur;
    MDB_val k, v;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 3), 0);
    assert_int_equal(mdb_env_open(env, dir, 0, 0664), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "outputs", 0, &dbi), 0);
    assert_int_equal(mdb_cursor_open(txn, dbi, &cur), 0);
    assert_int_equal(mdb_cursor_get(cur, &k, &v, MDB_FIRST), 0);
    for (int i = 0; i < which; i++) assert_int_equal(mdb_cursor_get(cur, &k, &v, MDB_NEXT), 0);
    mdb_cursor_close(cur);
    uint8_t kb[128];
    assert_true(k.mv_size <= sizeof kb);
    memcpy(kb, k.mv_data, k.mv_size);
    k.mv_data = kb;
    mutate(txn, dbi, &k, &v);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

static void s_flip_data_byte(MDB_txn *txn, MDB_dbi dbi, MDB_val *k, MDB_val *v)
{
    uint8_t buf[256];
    assert_true(v->mv_size <= sizeof buf);
    memcpy(buf, v->mv_data, v->mv_size);
    buf[v->mv_size - 3] ^= 0x10; /* a bit of the last float */
    MDB_val nv = {v->mv_size, buf};
    assert_int_equal(mdb_put(txn, dbi, k, &nv, 0), 0);
}

static void s_truncate(MDB_txn *txn, MDB_dbi dbi, MDB_val *k, MDB_val *v)
{
    uint8_t buf[256]; /* a copy: the source must not alias the page being rewritten */
    assert_true(v->mv_size <= sizeof buf);
    memcpy(buf, v->mv_data, v->mv_size);
    MDB_val nv = {v->mv_size - 4, buf}; /* one float short */
    assert_int_equal(mdb_put(txn, dbi, k, &nv, 0), 0);
}

static void s_delete(MDB_txn *txn, MDB_dbi dbi, MDB_val *k, MDB_val *v)
{
    (void)v;
    assert_int_equal(mdb_del(txn, dbi, k, NULL), 0);
}

static void test_verify_detects_corruption(void **state)
{
    s_fixture *fx = *state;
    dq_cache_t *c = s_open(fx->dir, false, 0);
    s_batch a;
    s_batch_make(&a, DQ_DTYPE_U8, 6, 1, 4, 4, 50);
    assert_int_equal(s_put(c, SHA_A, &a, 2), 12);
    dq_cache_close(&c);

    s_raw_edit(fx->dir, 0, s_flip_data_byte);
    c = s_open(fx->dir, true, 0);
    int64_t entries = -1, bad = -1;
    s_report rep = {0};
    dq_err err = {{0}};
    assert_int_equal(dq_cache_verify(c, &entries, &bad, s_collect, &rep, &err), DQ_OK);
    assert_int_equal(entries, 12);
    assert_int_equal(bad, 1);
    assert_int_equal(rep.lines, 1);
    assert_non_null(strstr(rep.first, "aaaaaaaaaaaa../"));
    assert_non_null(strstr(rep.first, "checksum mismatch"));
    /* A read of that sample fails loudly instead of returning bad floats. */
    dq_cache_get_output o[2] = {{.name = "logits"}, {.name = "feat"}};
    int64_t missing;
    assert_int_equal(dq_cache_get_batch(c, SHA_A, "deepnn-fmnist", a.dtype, a.shape, a.x, 2, o, &missing, &err),
                     DQ_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "checksum mismatch"));
    dq_cache_close(&c);

    s_raw_edit(fx->dir, 5, s_truncate);
    s_raw_edit(fx->dir, 8, s_delete); /* the teacher's count is now off by one */
    c = s_open(fx->dir, true, 0);
    memset(&rep, 0, sizeof rep);
    assert_int_equal(dq_cache_verify(c, &entries, &bad, s_collect, &rep, &err), DQ_OK);
    assert_int_equal(entries, 11);
    assert_int_equal(bad, 3);
    assert_int_equal(rep.lines, 3);
    dq_cache_get_output_free(o, 2);
    dq_cache_close(&c);
    s_batch_free(&a);
}

static void test_map_full_policy(void **state)
{
    s_fixture *fx = *state;
    char *logbuf = NULL;
    size_t loglen = 0;
    FILE *log = open_memstream(&logbuf, &loglen);
    assert_non_null(log);
    dq_cache_config cfg;
    dq_cache_config_defaults(&cfg);
    cfg.max_bytes = 256 << 10;
    cfg.log = log;
    dq_cache_t *c = NULL;
    dq_err err = {{0}};
    assert_int_equal(dq_cache_open(&c, fx->dir, &cfg, &err), DQ_OK);
    /* 32 samples x 1 KiB values per batch: a 256 KiB map holds a few. */
    enum { N = 32, F = 256 };
    static float y[N * F];
    uint8_t x[N * 16];
    const int64_t shape[4] = {N, 1, 4, 4}, oshape[1] = {F};
    dq_msg_teacher t = s_teacher(SHA_A);
    int full_at = -1;
    for (int b = 0; b < 40 && full_at < 0; b++) {
        s_bytes(x, sizeof x, 100 + (uint64_t)b);
        s_floats(y, N * F, 200 + (uint64_t)b);
        dq_cache_put_output out = {"logits", 1, oshape, y};
        int64_t stored = -1;
        assert_int_equal(dq_cache_put_batch(c, &t, DQ_DTYPE_U8, shape, x, 1, &out, &stored,
                                            &err), DQ_OK);
        if (stored == 0) full_at = b;
        else assert_int_equal(stored, N);
        assert_int_equal(dq_cache_is_full(c), stored == 0);
    }
    assert_true(full_at >= 2);
    /* Full: more puts are accepted and dropped, reads of earlier batches work. */
    for (int b = 0; b < 3; b++) {
        int64_t stored = -1;
        s_bytes(x, sizeof x, 999 + (uint64_t)b);
        dq_cache_put_output out = {"logits", 1, oshape, y};
        assert_int_equal(dq_cache_put_batch(c, &t, DQ_DTYPE_U8, shape, x, 1, &out, &stored,
                                            &err), DQ_OK);
        assert_int_equal(stored, 0);
    }
    dq_cache_get_output o = {.name = "logits"};
    int64_t missing = -1;
    s_bytes(x, sizeof x, 100 + (uint64_t)(full_at - 1));
    s_floats(y, N * F, 200 + (uint64_t)(full_at - 1));
    assert_int_equal(dq_cache_get_batch(c, SHA_A, "deepnn-fmnist", DQ_DTYPE_U8, shape, x, 1, &o, &missing, &err),
                     DQ_OK);
    assert_int_equal(missing, 0);
    assert_memory_equal(o.data, y, sizeof y);
    s_bytes(x, sizeof x, 100 + (uint64_t)full_at); /* the dropped batch */
    assert_int_equal(dq_cache_get_batch(c, SHA_A, "deepnn-fmnist", DQ_DTYPE_U8, shape, x, 1, &o, &missing, &err),
                     DQ_OK);
    assert_int_equal(missing, N);
    dq_cache_info info;
    assert_int_equal(dq_cache_stats(c, &info, &err), DQ_OK);
    assert_true(info.full);
    assert_int_equal(info.entries, full_at * N);
    assert_int_equal(info.teachers[0].entries, full_at * N);
    dq_cache_info_free(&info);
    int64_t entries, bad;
    assert_int_equal(dq_cache_verify(c, &entries, &bad, NULL, NULL, &err), DQ_OK);
    assert_int_equal(bad, 0);
    dq_cache_close(&c);
    fflush(log);
    int lines = 0;
    for (const char *p = logbuf; (p = strstr(p, "full")) != NULL; p++) lines++;
    assert_int_equal(lines, 1); /* logged once */
    assert_non_null(strstr(logbuf, "--cache-max-gb"));
    fclose(log);
    free(logbuf);

    /* Reopened with room, it inserts again. */
    c = s_open(fx->dir, false, 4ull << 20);
    int64_t stored = -1;
    dq_cache_put_output out = {"logits", 1, oshape, y};
    assert_int_equal(dq_cache_put_batch(c, &t, DQ_DTYPE_U8, shape, x, 1, &out, &stored, &err),
                     DQ_OK);
    assert_int_equal(stored, N);
    dq_cache_get_output_free(&o, 1);
    dq_cache_close(&c);
}

/* Reads a whole small file. */
static size_t s_slurp(const char *path, uint8_t *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

static int s_cmp_hash(const void *a, const void *b)
{
    return memcmp(a, b, 16);
}

static void test_export_npy(void **state)
{
    s_fixture *fx = *state;
    dq_cache_t *c = s_open(fx->dir, false, 0);
    s_batch a, b;
    s_batch_make(&a, DQ_DTYPE_U8, 5, 1, 4, 4, 60);
    s_batch_make(&b, DQ_DTYPE_U8, 5, 1, 4, 4, 61);
    assert_int_equal(s_put(c, SHA_A, &a, 2), 10);
    assert_int_equal(s_put(c, SHA_B, &b, 2), 10); /* another teacher: not exported */
    char path[128];
    snprintf(path, sizeof path, "%s/feat.npy", fx->dir);
    int64_t rows = -1;
    dq_err err = {{0}};
    assert_int_equal(dq_cache_export(c, SHA_A, "feat", path, &rows, &err), DQ_OK);
    assert_int_equal(rows, 5);
    static uint8_t buf[4096];
    size_t len = s_slurp(path, buf, sizeof buf);
    assert_int_equal(len, 128 + 5 * 6 * 4);
    assert_non_null(strstr((char *)buf + 10, "'shape': (5, 2, 3)"));
    /* Rows in key order: by sample hash. */
    struct { uint8_t h[16]; int row; } order[5];
    dq_cache_hash h[5];
    dq_cache_hash_batch(h, "deepnn-fmnist", a.dtype, a.shape, a.x);
    for (int i = 0; i < 5; i++) {
        memcpy(order[i].h, h[i].b, 16);
        order[i].row = i;
    }
    qsort(order, 5, sizeof order[0], s_cmp_hash);
    for (int r = 0; r < 5; r++)
        assert_memory_equal(buf + 128 + r * 24, a.feat + order[r].row * 6, 24);
    assert_int_equal(dq_cache_export(c, SHA_A, "hidden", path, &rows, &err), DQ_ERR_NOT_FOUND);
    assert_non_null(strstr(err.msg, "hidden"));
    dq_cache_close(&c);
    s_batch_free(&a);
    s_batch_free(&b);
}

static void test_broker_hook(void **state)
{
    s_fixture *fx = *state;
    dq_cache_t *c = s_open(fx->dir, false, 0);
    dq_cache_hook_t *h = NULL;
    dq_err err = {{0}};
    char *logbuf = NULL;
    size_t loglen = 0;
    FILE *log = open_memstream(&logbuf, &loglen);
    assert_non_null(log);
    assert_int_equal(dq_cache_hook_new(&h, c, log, &err), DQ_OK);
    const dq_broker_cache *bc = dq_cache_hook_broker(h);
    s_batch a;
    s_batch_make(&a, DQ_DTYPE_U8, 4, 1, 28, 28, 70);
    dq_msg_request rq = {.req_id = 42, .dtype = DQ_DTYPE_U8, .data = a.x,
                         .data_len = 4 * 784, .n_outputs = 2};
    memcpy(rq.shape, a.shape, sizeof rq.shape);
    strcpy(rq.service, "fmnist");
    strcpy(rq.outputs[0], "logits");
    strcpy(rq.outputs[1], "feat");
    dq_msg_teacher t = s_teacher(SHA_A);
    zmq_msg_t zm;
    assert_false(bc->lookup(bc->ctx, &t, &rq, &zm));

    dq_msg_reply rep = {.req_id = 42, .status = DQ_REPLY_OK, .n_outputs = 2,
                        .has_teacher = true, .teacher = t};
    strcpy(rep.outputs[0].name, "logits");
    rep.outputs[0].ndim = 2;
    rep.outputs[0].shape[0] = 4, rep.outputs[0].shape[1] = 10;
    rep.outputs[0].data = a.logits, rep.outputs[0].data_len = 160;
    strcpy(rep.outputs[1].name, "feat");
    rep.outputs[1].ndim = 3;
    rep.outputs[1].shape[0] = 4, rep.outputs[1].shape[1] = 2, rep.outputs[1].shape[2] = 3;
    rep.outputs[1].data = a.feat, rep.outputs[1].data_len = 96;
    bc->store(bc->ctx, &t, &rq, &rep);

    rq.req_id = 43;
    assert_true(bc->lookup(bc->ctx, &t, &rq, &zm));
    dq_msg_decoder_t *dec;
    assert_int_equal(dq_msg_decoder_new(&dec, &err), DQ_OK);
    dq_msg m;
    assert_int_equal(dq_msg_decode(dec, zmq_msg_data(&zm), zmq_msg_size(&zm), &m, &err), DQ_OK);
    assert_int_equal(m.type, DQ_MSG_REPLY);
    assert_int_equal(m.u.reply.req_id, 43);
    assert_int_equal(m.u.reply.status, DQ_REPLY_OK);
    assert_string_equal(m.u.reply.teacher.sha256, SHA_A);
    const dq_msg_output *lo = dq_msg_reply_output(&m.u.reply, "logits");
    const dq_msg_output *fo = dq_msg_reply_output(&m.u.reply, "feat");
    assert_true(lo && fo);
    assert_int_equal(lo->ndim, 2);
    assert_int_equal(lo->shape[0], 4);
    assert_int_equal(lo->shape[1], 10);
    assert_int_equal(fo->ndim, 3);
    assert_int_equal(fo->shape[2], 3);
    assert_memory_equal(lo->data, a.logits, 160);
    assert_memory_equal(fo->data, a.feat, 96);
    zmq_msg_close(&zm);
    /* One sample changed (the last): no longer a full hit, no reply. */
    ((uint8_t *)a.x)[4 * 784 - 1] ^= 1;
    assert_false(bc->lookup(bc->ctx, &t, &rq, &zm));
    ((uint8_t *)a.x)[4 * 784 - 1] ^= 1;

    /* A reply whose output is not [n, ...] is counted, not stored. */
    rep.outputs[0].shape[0] = 3;
    bc->store(bc->ctx, &t, &rq, &rep);
    dq_cache_hook_counts n;
    dq_cache_hook_get_counts(h, &n);
    assert_int_equal(n.hits, 1);
    assert_int_equal(n.misses, 2);
    assert_int_equal(n.stored_batches, 1);
    assert_int_equal(n.stored_entries, 8);
    assert_int_equal(n.errors, 1);
    fflush(log);
    assert_non_null(strstr(logbuf, "store: output 'logits' of req_id 42 is not [4, ...]"));
    fclose(log);
    free(logbuf);
    dq_msg_decoder_destroy(&dec);
    dq_cache_hook_destroy(&h);
    assert_null(h);
    dq_cache_close(&c);
    s_batch_free(&a);
}

/* ---- fixture for the tool test ------------------------------------------------- */

static int s_make_fixture(const char *dir, bool corrupt)
{
    dq_cache_t *c = NULL;
    dq_err err = {{0}};
    if (dq_cache_open(&c, dir, NULL, &err) != DQ_OK) {
        fprintf(stderr, "test_cache: %s\n", err.msg);
        return 1;
    }
    enum { N = 20 };
    static uint8_t x[N * 784];
    static float lg[N * 10], ft[N * 8];
    for (int i = 0; i < N * 784; i++) x[i] = (uint8_t)(i * 7 + i / 784);
    for (int i = 0; i < N * 10; i++) lg[i] = (float)i; /* sample i: 10i .. 10i+9 */
    for (int i = 0; i < N * 8; i++) ft[i] = -(float)i;
    const int64_t shape[4] = {N, 1, 28, 28}, fsh[2] = {4, 2};
    dq_msg_teacher t = s_teacher(SHA_B);
    dq_cache_put_output outs[2] = {{"logits", 1, s_lshape, lg}, {"features", 2, fsh, ft}};
    dq_status st = dq_cache_put_batch(c, &t, DQ_DTYPE_U8, shape, x, 2, outs, NULL, &err);
    dq_cache_close(&c);
    if (st) {
        fprintf(stderr, "test_cache: %s\n", err.msg);
        return 1;
    }
    if (corrupt) s_raw_edit(dir, 3, s_flip_data_byte);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "--fixture") == 0)
        return s_make_fixture(argv[2], argc >= 4 && strcmp(argv[3], "--corrupt") == 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip_bit_exact, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_misses_counted_exactly, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_key_separates_teacher_dtype_shape, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_read_only_refuses_put, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_stats_exact, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_verify_detects_corruption, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_map_full_policy, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_export_npy, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_broker_hook, s_setup, s_teardown),
    };
    return cmocka_run_group_tests_name("cache", tests, NULL, NULL);
}
