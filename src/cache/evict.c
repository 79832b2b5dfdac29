/* evict.c - the cache's size limit: eviction of whole teachers, least
 * recently written first, and `distillq-cache gc --keep SHA...`.
 *
 * EVICTION POLICY. The map size (--cache-max-gb) is the hard limit. Before
 * each stored batch the writer compares the pages the cache's data holds
 * (outputs, teachers and meta trees: mdb_stat, so pages freed by deletes
 * count as free) with the limit; above 80 % it deletes whole teachers -
 * every entry under one weights sha256 - starting with the teacher written
 * least recently and never the teacher being written, until the data is
 * below 65 % (LMDB's copy-on-write needs the rest: a map whose data pages
 * reach about 90 % of it is full). Whole teachers, because a student replays or distils from
 * one teacher's complete set: half a teacher is a miss on every epoch,
 * while an old teacher is usually one nobody trains against any more.
 * If only the teacher being written is left, nothing is evicted and a full
 * map stops inserts as before (cache.h, FULL POLICY).
 *
 * The last-write time of a teacher is kept in the "meta" tree under the key
 * "t" + sha (8 bytes, unix ms); a teacher without one (written by an older
 * version) counts as the oldest. Readers in other processes (replay, the
 * tool) keep their snapshot while a teacher is evicted: LMDB frees the
 * pages only after the last reader of the old version is gone.
 */
#include "cache/cache_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S_HIGH 0.80
#define S_LOW 0.65

static int64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void s_time_key(uint8_t k[1 + DQ_CACHE_SHA_BYTES], const uint8_t *sha)
{
    k[0] = 't';
    memcpy(k + 1, sha, DQ_CACHE_SHA_BYTES);
}

int dq_cache_touch_teacher(dq_cache_t *c, MDB_txn *txn, const uint8_t *sha)
{
    uint8_t kb[1 + DQ_CACHE_SHA_BYTES];
    s_time_key(kb, sha);
    int64_t now = s_now_ms();
    MDB_val k = {sizeof kb, kb}, v = {sizeof now, &now};
    return mdb_put(txn, c->meta, &k, &v, 0);
}

static int64_t s_written(dq_cache_t *c, MDB_txn *txn, const uint8_t *sha)
{
    uint8_t kb[1 + DQ_CACHE_SHA_BYTES];
    s_time_key(kb, sha);
    MDB_val k = {sizeof kb, kb}, v;
    int64_t t = 0;
    if (mdb_get(txn, c->meta, &k, &v) == 0 && v.mv_size == sizeof t) memcpy(&t, v.mv_data, 8);
    return t;
}

/* Bytes of the pages the three trees hold. */
static int s_used(dq_cache_t *c, MDB_txn *txn, uint64_t *used)
{
    MDB_dbi dbs[3] = {c->outputs, c->teachers, c->meta};
    MDB_stat env;
    int rc = mdb_env_stat(c->env, &env);
    if (rc) return rc;
    uint64_t pages = 0;
    for (int i = 0; i < 3; i++) {
        MDB_stat ms;
        if ((rc = mdb_stat(txn, dbs[i], &ms)) != 0) return rc;
        pages += ms.ms_branch_pages + ms.ms_leaf_pages + ms.ms_overflow_pages;
    }
    *used = pages * env.ms_psize;
    return 0;
}

/* Deletes every entry of teacher sha, its count and its time. */
static int s_evict(dq_cache_t *c, MDB_txn *txn, const uint8_t *sha, int64_t *removed)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, c->outputs, &cur);
    if (rc) return rc;
    MDB_val k = {DQ_CACHE_SHA_BYTES, (void *)sha}, v;
    int64_t n = 0;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (rc == 0 && k.mv_size >= DQ_CACHE_SHA_BYTES &&
           memcmp(k.mv_data, sha, DQ_CACHE_SHA_BYTES) == 0) {
        if ((rc = mdb_cursor_del(cur, 0)) != 0) break;
        n++;
        rc = mdb_cursor_get(cur, &k, &v, MDB_GET_CURRENT);
        if (rc == MDB_NOTFOUND || rc == EINVAL) rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (rc && rc != MDB_NOTFOUND) return rc;
    MDB_val tk = {DQ_CACHE_SHA_BYTES, (void *)sha};
    rc = mdb_del(txn, c->teachers, &tk, NULL);
    if (rc && rc != MDB_NOTFOUND) return rc;
    uint8_t kb[1 + DQ_CACHE_SHA_BYTES];
    s_time_key(kb, sha);
    MDB_val mk = {sizeof kb, kb};
    rc = mdb_del(txn, c->meta, &mk, NULL);
    if (rc && rc != MDB_NOTFOUND) return rc;
    *removed = n;
    return 0;
}

/* The least recently written teacher other than keep (NULL: none), or false. */
static bool s_oldest(dq_cache_t *c, MDB_txn *txn, const uint8_t *keep, uint8_t *out,
                     char *service, size_t cap)
{
    MDB_cursor *cur;
    if (mdb_cursor_open(txn, c->teachers, &cur) != 0) return false;
    MDB_val k, v;
    bool found = false;
    int64_t best = 0;
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size != DQ_CACHE_SHA_BYTES) continue;
        if (keep && memcmp(k.mv_data, keep, DQ_CACHE_SHA_BYTES) == 0) continue;
        int64_t t = s_written(c, txn, k.mv_data);
        if (!found || t < best) {
            found = true;
            best = t;
            memcpy(out, k.mv_data, DQ_CACHE_SHA_BYTES);
            if (v.mv_size == DQ_CACHE_TEACHER_VAL)
                snprintf(service, cap, "%.*s", DQ_MSG_NAME_MAX, (const char *)v.mv_data + 8);
            else
                snprintf(service, cap, "?");
        }
    }
    mdb_cursor_close(cur);
    return found;
}

static void s_hex(const uint8_t *sha, char *out)
{
    static const char h[] = "0123456789abcdef";
    for (int i = 0; i < 6; i++) {
        out[2 * i] = h[sha[i] >> 4];
        out[2 * i + 1] = h[sha[i] & 15];
    }
    out[12] = '\0';
}

dq_status dq_cache_make_room(dq_cache_t *c, const uint8_t *keep, dq_err *err)
{
    MDB_envinfo ei;
    int rc = mdb_env_info(c->env, &ei);
    if (rc) return dq_cache_mdb_fail(c, err, DQ_ERR_IO, rc, "env info");
    double map = (double)ei.me_mapsize;
    { /* the common case: a read-only look, no writer lock */
        MDB_txn *rt;
        rc = mdb_txn_begin(c->env, NULL, MDB_RDONLY, &rt);
        if (rc) return dq_cache_mdb_fail(c, err, DQ_ERR_IO, rc, "begin size check");
        uint64_t used = 0;
        rc = s_used(c, rt, &used);
        mdb_txn_abort(rt);
        if (rc) return dq_cache_mdb_fail(c, err, DQ_ERR_IO, rc, "size check");
        if ((double)used <= S_HIGH * map) return DQ_OK;
    }
    for (int round = 0; round < 64; round++) {
        MDB_txn *txn;
        rc = mdb_txn_begin(c->env, NULL, 0, &txn);
        if (rc) return dq_cache_mdb_fail(c, err, DQ_ERR_IO, rc, "begin eviction");
        uint64_t used = 0;
        rc = s_used(c, txn, &used);
        double limit = round == 0 ? S_HIGH : S_LOW;
        uint8_t sha[DQ_CACHE_SHA_BYTES];
        char service[DQ_MSG_NAME_MAX + 1];
        if (rc || (double)used <= limit * map ||
            !s_oldest(c, txn, keep, sha, service, sizeof service)) {
            mdb_txn_abort(txn);
            return rc ? dq_cache_mdb_fail(c, err, DQ_ERR_IO, rc, "eviction stat") : DQ_OK;
        }
        int64_t removed = 0;
        rc = s_evict(c, txn, sha, &removed);
        if (rc) {
            mdb_txn_abort(txn);
            return dq_cache_mdb_fail(c, err, DQ_ERR_IO, rc, "evict teacher");
        }
        rc = mdb_txn_commit(txn);
        if (rc) return dq_cache_mdb_fail(c, err, DQ_ERR_IO, rc, "commit eviction");
        char hex[13];
        s_hex(sha, hex);
        fprintf(c->log, "cache %s: evicted teacher %s... (service %s, %lld entries, least "
                        "recently written): data was %.0f%% of the %.0f MiB limit\n",
                c->dir, hex, service, (long long)removed, 100.0 * (double)used / map,
                map / (1 << 20));
        fflush(c->log);
    }
    return DQ_OK;
}

dq_status dq_cache_gc(dq_cache_t *c, const char *const *keep, int n_keep, int *teachers,
                      int64_t *entries, dq_err *err)
{
    *teachers = 0;
    *entries = 0;
    if (c->read_only) return dq_fail(err, DQ_ERR_ARG, "cache %s: gc needs a writable open", c->dir);
    uint8_t (*ks)[DQ_CACHE_SHA_BYTES] = n_keep ? calloc((size_t)n_keep, DQ_CACHE_SHA_BYTES) : NULL;
    if (n_keep && !ks) return dq_fail(err, DQ_ERR_NOMEM, "cache %s: out of memory", c->dir);
    dq_status st = DQ_OK;
    for (int i = 0; i < n_keep && !st; i++) st = dq_cache_parse_sha256(ks[i], keep[i], err);
    MDB_txn *txn = NULL;
    int rc = st ? 0 : mdb_txn_begin(c->env, NULL, 0, &txn);
    if (rc) st = dq_cache_mdb_fail(c, err, DQ_ERR_IO, rc, "begin gc");
    /* Collect the doomed first: deleting under an open cursor of the same tree is avoided. */
    uint8_t doomed[256][DQ_CACHE_SHA_BYTES];
    int n_doomed = 0;
    if (!st) {
        MDB_cursor *cur;
        rc = mdb_cursor_open(txn, c->teachers, &cur);
        MDB_val k, v;
        for (int r = rc ? rc : mdb_cursor_get(cur, &k, &v, MDB_FIRST); r == 0 && n_doomed < 256;
             r = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            if (k.mv_size != DQ_CACHE_SHA_BYTES) continue;
            bool kept = false;
            for (int i = 0; i < n_keep && !kept; i++)
                kept = memcmp(k.mv_data, ks[i], DQ_CACHE_SHA_BYTES) == 0;
            if (!kept) memcpy(doomed[n_doomed++], k.mv_data, DQ_CACHE_SHA_BYTES);
        }
        if (!rc) mdb_cursor_close(cur);
        else st = dq_cache_mdb_fail(c, err, DQ_ERR_IO, rc, "gc cursor");
    }
    for (int i = 0; i < n_doomed && !st; i++) {
        int64_t removed = 0;
        rc = s_evict(c, txn, doomed[i], &removed);
        if (rc) st = dq_cache_mdb_fail(c, err, DQ_ERR_IO, rc, "gc delete");
        *entries += removed;
        (*teachers)++;
    }
    if (txn) {
        if (st) mdb_txn_abort(txn);
        else if ((rc = mdb_txn_commit(txn)) != 0)
            st = dq_cache_mdb_fail(c, err, DQ_ERR_IO, rc, "commit gc");
    }
    free(ks);
    return st;
}

dq_status dq_cache_teacher_bytes(dq_cache_t *c, dq_cache_info *info, dq_err *err)
{
    MDB_txn *txn;
    DQ_TRY(dq_cache_read_begin(c, &txn, err));
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, c->outputs, &cur);
    if (rc) {
        mdb_txn_abort(txn);
        return dq_cache_mdb_fail(c, err, DQ_ERR_IO, rc, "bytes cursor");
    }
    for (int i = 0; i < info->n_teachers; i++) {
        uint8_t sha[DQ_CACHE_SHA_BYTES];
        info->teachers[i].bytes = 0;
        if (dq_cache_parse_sha256(sha, info->teachers[i].teacher.sha256, NULL) != DQ_OK) continue;
        MDB_val k = {DQ_CACHE_SHA_BYTES, sha}, v;
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
             rc == 0 && k.mv_size >= DQ_CACHE_SHA_BYTES &&
             memcmp(k.mv_data, sha, DQ_CACHE_SHA_BYTES) == 0;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
            info->teachers[i].bytes += k.mv_size + v.mv_size;
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return DQ_OK;
}
