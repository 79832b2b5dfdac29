/* fuzz_cache.c - libFuzzer target for the cache's record parsing
 * (src/cache): replay and distillq-cache read entries another process
 * wrote, so a corrupt or hostile record must be reported (verify), refused
 * (get, export: DQ_ERR_FORMAT) or counted, never crash or overrun.
 *
 * Each input is a set of raw LMDB records: repeated
 *   u8 db (even: "outputs", odd: "teachers") | u8 key length | u16 LE
 *   value length | key | value
 * written into a real cache (one LMDB environment in a temp dir, emptied
 * for every input, no fsync) in one transaction, which the public API then
 * reads: dq_cache_verify, dq_cache_stats, dq_cache_get_batch of a fixed
 * batch and dq_cache_export. LMDB's own file format is not fuzzed (it
 * trusts its file); the records inside it are ours to check.
 * Seeds: what dq_cache_put_batch stores for that batch, dumped by cursor.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache/cache_int.h"
#include "fuzz_msgs.h"
#include "fuzz_util.h"

static const uint8_t s_px[8] = {1, 2, 3, 4, 5, 6, 7, 8};
static const int64_t s_shape[4] = {2, 1, 2, 2};
static char s_dir[64];
static dq_cache_t *s_cache;

static void s_cleanup(void)
{
    char p[128];
    dq_cache_close(&s_cache);
    const char *files[] = {"data.mdb", "lock.mdb", "out.npy", "out.npy.tmp"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", s_dir, files[i]);
        unlink(p);
    }
    rmdir(s_dir);
}

static void s_open(void)
{
    snprintf(s_dir, sizeof s_dir, "%s/dq-fuzz-cache-XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (!mkdtemp(s_dir)) abort();
    atexit(s_cleanup);
    dq_cache_config cfg;
    dq_cache_config_defaults(&cfg);
    cfg.no_sync = true;
    cfg.max_bytes = 64u << 20;
    cfg.log = stderr;
    dq_err err;
    if (dq_cache_open(&s_cache, s_dir, &cfg, &err) != DQ_OK) {
        fprintf(stderr, "%s\n", err.msg);
        abort();
    }
}

static void s_dump_db(uint8_t *out, size_t *len, size_t cap, MDB_txn *txn, MDB_dbi dbi, int db)
{
    MDB_cursor *cur;
    MDB_val k, v;
    if (mdb_cursor_open(txn, dbi, &cur) != 0) abort();
    for (int op = MDB_FIRST; mdb_cursor_get(cur, &k, &v, op) == 0; op = MDB_NEXT) {
        if (k.mv_size > 255 || v.mv_size > 65535 || *len + 4 + k.mv_size + v.mv_size > cap)
            abort();
        out[(*len)++] = (uint8_t)db;
        out[(*len)++] = (uint8_t)k.mv_size;
        out[(*len)++] = (uint8_t)v.mv_size;
        out[(*len)++] = (uint8_t)(v.mv_size >> 8);
        memcpy(out + *len, k.mv_data, k.mv_size);
        *len += k.mv_size;
        memcpy(out + *len, v.mv_data, v.mv_size);
        *len += v.mv_size;
    }
    mdb_cursor_close(cur);
}

static void s_write_seeds(void)
{
    s_open();
    dq_msg_teacher t;
    memset(&t, 0, sizeof t);
    strcpy(t.service, "s"), strcpy(t.model, "m"), strcpy(t.sha256, FZ_SHA);
    float lg[6] = {1, 2, 3, 4, 5, 6}, ft[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    int64_t s1[1] = {3}, s2[2] = {2, 2};
    dq_cache_put_output o[2] = {{"logits", 1, s1, lg}, {"features", 2, s2, ft}};
    dq_err err;
    for (int k = 1; k <= 2; k++) {
        if (dq_cache_put_batch(s_cache, &t, DQ_DTYPE_U8, s_shape, s_px, k, o, NULL, &err) != DQ_OK)
            abort();
        static uint8_t buf[65536];
        size_t len = 0;
        MDB_txn *txn;
        if (mdb_txn_begin(s_cache->env, NULL, MDB_RDONLY, &txn) != 0) abort();
        s_dump_db(buf, &len, sizeof buf, txn, s_cache->outputs, 0);
        s_dump_db(buf, &len, sizeof buf, txn, s_cache->teachers, 1);
        mdb_txn_abort(txn);
        fz_seed(k == 1 ? "logits" : "logits+features", buf, len);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    FZ_SEEDS_THEN_EXIT(s_write_seeds);
    s_open();
    return 0;
}

static void s_report(void *ctx, const char *line)
{
    (void)ctx;
    fz_check(line && line[0]);
}

/* Replaces both databases' contents with the input's records. */
static void s_load(const uint8_t *data, size_t size)
{
    MDB_txn *txn;
    if (mdb_txn_begin(s_cache->env, NULL, 0, &txn) != 0) abort();
    if (mdb_drop(txn, s_cache->outputs, 0) != 0 || mdb_drop(txn, s_cache->teachers, 0) != 0)
        abort();
    size_t i = 0;
    while (i + 4 <= size) {
        int db = data[i] & 1;
        size_t kl = data[i + 1], vl = (size_t)data[i + 2] | (size_t)data[i + 3] << 8;
        i += 4;
        if (kl > size - i) kl = size - i;
        MDB_val k = {kl, (void *)(data + i)};
        i += kl;
        if (vl > size - i) vl = size - i;
        MDB_val v = {vl, (void *)(data + i)};
        i += vl;
        /* rejected keys (empty, too long) are simply not stored */
        (void)mdb_put(txn, db ? s_cache->teachers : s_cache->outputs, &k, &v, 0);
    }
    if (mdb_txn_commit(txn) != 0) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    s_load(data, size);
    s_cache->full = false;
    dq_err err = {{0}};
    int64_t entries = -1, bad = -1;
    fz_check(dq_cache_verify(s_cache, &entries, &bad, s_report, NULL, &err) == DQ_OK);
    fz_check(entries >= 0 && bad >= 0);

    dq_cache_info info;
    memset(&info, 0, sizeof info);
    if (dq_cache_stats(s_cache, &info, &err) == DQ_OK) {
        fz_check(info.n_teachers >= 0 && info.entries >= 0);
        for (int i = 0; i < info.n_teachers; i++) {
            const dq_msg_teacher *t = &info.teachers[i].teacher;
            fz_check(memchr(t->service, 0, sizeof t->service) != NULL);
            fz_check(memchr(t->model, 0, sizeof t->model) != NULL);
            fz_check(strlen(t->sha256) == DQ_MSG_SHA256_HEX);
        }
    }
    dq_cache_info_free(&info);

    dq_cache_get_output outs[2] = {{.name = "logits"}, {.name = "features"}};
    int64_t missing = -1;
    memset(&err, 0, sizeof err);
    dq_status st = dq_cache_get_batch(s_cache, FZ_SHA, "m", DQ_DTYPE_U8, s_shape, s_px, 2, outs,
                                      &missing, &err);
    if (st == DQ_OK) {
        fz_check(missing >= 0 && missing <= s_shape[0]);
        if (missing == 0)
            for (int k = 0; k < 2; k++) {
                int64_t numel = 1;
                fz_check(outs[k].ndim >= 0 && outs[k].ndim <= DQ_CACHE_MAX_DIMS);
                for (int d = 0; d < outs[k].ndim; d++) numel *= outs[k].shape[d];
                fz_check((size_t)(numel * s_shape[0]) <= outs[k].cap);
                volatile float sink = 0;
                for (int64_t j = 0; j < numel * s_shape[0]; j++) sink += outs[k].data[j];
                (void)sink;
            }
    } else {
        fz_check(err.msg[0] != '\0');
    }
    dq_cache_get_output_free(outs, 2);

    char path[128];
    snprintf(path, sizeof path, "%s/out.npy", s_dir);
    int64_t rows = -1;
    memset(&err, 0, sizeof err);
    if (dq_cache_export(s_cache, FZ_SHA, "logits", path, &rows, &err) == DQ_OK)
        fz_check(rows >= 1);
    else
        fz_check(err.msg[0] != '\0');
    return 0;
}
