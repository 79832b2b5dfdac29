/* scan.c - whole-cache walks: verify and export.
 *
 * Both run inside ONE read transaction, so they see a consistent snapshot
 * while a broker keeps writing. Keys sort by teacher first, so a teacher's
 * entries are one contiguous run: verify checks each run's length against
 * the teacher's recorded count as it passes, and export visits only the
 * run of the teacher asked for (twice: count and check shapes, then write).
 */
#include "cache/cache_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/npy.h"

static void s_sha_hex(const uint8_t *sha, char hex[2 * DQ_CACHE_SHA_BYTES + 1])
{
    static const char hexd[] = "0123456789abcdef";
    for (int i = 0; i < DQ_CACHE_SHA_BYTES; i++) {
        hex[2 * i] = hexd[sha[i] >> 4];
        hex[2 * i + 1] = hexd[sha[i] & 15];
    }
    hex[2 * DQ_CACHE_SHA_BYTES] = 0;
}

typedef struct {
    dq_cache_report_fn report;
    void *ctx;
    int64_t bad;
} s_verify;

static void s_bad(s_verify *vf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_bad(s_verify *vf, const char *fmt, ...)
{
    vf->bad++;
    if (!vf->report) return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    vf->report(vf->ctx, line);
}

/* Compares a run of `count` entries of teacher sha with its record. */
static int s_check_run(dq_cache_t *c, MDB_txn *txn, const uint8_t *sha, int64_t count,
                       s_verify *vf)
{
    MDB_val k = {DQ_CACHE_SHA_BYTES, (void *)sha}, v;
    char hex[2 * DQ_CACHE_SHA_BYTES + 1];
    s_sha_hex(sha, hex);
    int rc = mdb_get(txn, c->teachers, &k, &v);
    if (rc == MDB_NOTFOUND) {
        s_bad(vf, "teacher %s: %lld entries but no teacher record", hex, (long long)count);
        return 0;
    }
    if (rc) return rc;
    uint64_t rec = 0;
    if (v.mv_size != DQ_CACHE_TEACHER_VAL) {
        s_bad(vf, "teacher %s: malformed teacher record", hex);
        return 0;
    }
    memcpy(&rec, v.mv_data, 8);
    if ((int64_t)rec != count)
        s_bad(vf, "teacher %s: record says %llu entries, cache holds %lld", hex,
              (unsigned long long)rec, (long long)count);
    return 0;
}

/* Reports teacher records whose teacher has no entry at all. */
static int s_check_orphans(dq_cache_t *c, MDB_txn *txn, int64_t runs, s_verify *vf)
{
    MDB_stat ms;
    int rc = mdb_stat(txn, c->teachers, &ms);
    if (rc || (int64_t)ms.ms_entries == runs) return rc;
    MDB_cursor *tc, *oc;
    if ((rc = mdb_cursor_open(txn, c->teachers, &tc)) != 0) return rc;
    if ((rc = mdb_cursor_open(txn, c->outputs, &oc)) != 0) {
        mdb_cursor_close(tc);
        return rc;
    }
    MDB_val k, v;
    for (rc = mdb_cursor_get(tc, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(tc, &k, &v, MDB_NEXT)) {
        if (k.mv_size != DQ_CACHE_SHA_BYTES) continue; /* reported by s_check_run */
        MDB_val ok = k, ov;
        int r2 = mdb_cursor_get(oc, &ok, &ov, MDB_SET_RANGE);
        if (r2 && r2 != MDB_NOTFOUND) {
            rc = r2;
            break;
        }
        if (r2 == MDB_NOTFOUND || ok.mv_size < DQ_CACHE_SHA_BYTES ||
            memcmp(ok.mv_data, k.mv_data, DQ_CACHE_SHA_BYTES) != 0) {
            char hex[2 * DQ_CACHE_SHA_BYTES + 1];
            s_sha_hex(k.mv_data, hex);
            s_bad(vf, "teacher %s: has a record but no entries", hex);
        }
    }
    mdb_cursor_close(oc);
    mdb_cursor_close(tc);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

dq_status dq_cache_verify(dq_cache_t *c, int64_t *entries, int64_t *bad,
                          dq_cache_report_fn report, void *ctx, dq_err *err)
{
    *entries = 0;
    *bad = 0;
    s_verify vf = {report, ctx, 0};
    MDB_txn *txn;
    DQ_TRY(dq_cache_read_begin(c, &txn, err));
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, c->outputs, &cur);
    if (rc) {
        mdb_txn_abort(txn);
        return dq_cache_mdb_fail(c, err, DQ_ERR_IO, rc, "open outputs cursor");
    }
    uint8_t run_sha[DQ_CACHE_SHA_BYTES];
    int64_t run = 0, runs = 0, n = 0;
    MDB_val k, v;
    char ks[160];
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        n++;
        if (k.mv_size >= DQ_CACHE_SHA_BYTES) {
            if (run > 0 && memcmp(k.mv_data, run_sha, DQ_CACHE_SHA_BYTES) != 0) {
                if ((rc = s_check_run(c, txn, run_sha, run, &vf)) != 0) break;
                run = 0;
            }
            if (run++ == 0) {
                memcpy(run_sha, k.mv_data, DQ_CACHE_SHA_BYTES);
                runs++;
            }
        }
        dq_cache_key_str(&k, ks, sizeof ks);
        if (k.mv_size <= DQ_CACHE_KEY_FIXED || k.mv_size > DQ_CACHE_KEY_MAX ||
            memchr((const uint8_t *)k.mv_data + DQ_CACHE_KEY_FIXED, 0,
                   k.mv_size - DQ_CACHE_KEY_FIXED)) {
            s_bad(&vf, "%s: malformed key", ks);
            continue;
        }
        dq_cache_val pv;
        const char *why = dq_cache_val_parse(&k, &v, &pv);
        if (why) s_bad(&vf, "%s: %s", ks, why);
    }
    if (rc == MDB_NOTFOUND) rc = run > 0 ? s_check_run(c, txn, run_sha, run, &vf) : 0;
    if (!rc) rc = s_check_orphans(c, txn, runs, &vf);
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    if (rc) return dq_cache_mdb_fail(c, err, DQ_ERR_IO, rc, "verify walk");
    *entries = n;
    *bad = vf.bad;
    return DQ_OK;
}

/* ---- export ---------------------------------------------------------------- */

typedef struct {
    const char *path;
    int64_t rows;
    int ndim;
    int64_t shape[DQ_CACHE_MAX_DIMS];
    FILE *f;               /* NULL in the counting pass */
} s_export;

/* Visits every entry of (sha, name): checks it and counts or writes it. */
static dq_status s_export_pass(dq_cache_t *c, MDB_txn *txn, const uint8_t *sha,
                               const char *name, size_t name_len, s_export *ex, dq_err *err)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, c->outputs, &cur);
    if (rc) return dq_cache_mdb_fail(c, err, DQ_ERR_IO, rc, "open outputs cursor");
    MDB_val k = {DQ_CACHE_SHA_BYTES, (void *)sha}, v;
    dq_status st = DQ_OK;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0 && !st;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size < DQ_CACHE_SHA_BYTES || memcmp(k.mv_data, sha, DQ_CACHE_SHA_BYTES) != 0)
            break; /* past this teacher's run */
        if (k.mv_size != DQ_CACHE_KEY_FIXED + name_len ||
            memcmp((const uint8_t *)k.mv_data + DQ_CACHE_KEY_FIXED, name, name_len) != 0)
            continue;
        dq_cache_val pv;
        char ks[160];
        const char *why = dq_cache_val_parse(&k, &v, &pv);
        if (!why && ex->rows > 0 && !ex->f &&
            (pv.ndim != ex->ndim || memcmp(pv.shape, ex->shape, sizeof(int64_t) * (size_t)pv.ndim)))
            why = "shape differs from the first entry";
        if (why) {
            dq_cache_key_str(&k, ks, sizeof ks);
            st = dq_fail(err, DQ_ERR_FORMAT, "cache %s: entry %s: %s", c->dir, ks, why);
            break;
        }
        if (!ex->f) {
            if (ex->rows++ == 0) {
                ex->ndim = pv.ndim;
                memcpy(ex->shape, pv.shape, sizeof pv.shape);
            }
        } else if (fwrite(pv.data, 4, (size_t)pv.numel, ex->f) != (size_t)pv.numel) {
            st = dq_fail(err, DQ_ERR_IO, "%s: write failed: %s", ex->path, strerror(errno));
        }
    }
    if (!st && rc && rc != MDB_NOTFOUND)
        st = dq_cache_mdb_fail(c, err, DQ_ERR_IO, rc, "export walk");
    mdb_cursor_close(cur);
    return st;
}

/* Writes the array of the counted run to ex->path via a .tmp file. */
static dq_status s_export_write(dq_cache_t *c, MDB_txn *txn, const uint8_t *sha,
                                const char *name, size_t name_len, s_export *ex, dq_err *err)
{
    size_t plen = strlen(ex->path);
    char *tmp = malloc(plen + 5);
    if (!tmp) return dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", ex->path);
    memcpy(tmp, ex->path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    dq_status st = DQ_OK;
    ex->f = fopen(tmp, "wb");
    if (!ex->f) {
        st = dq_fail(err, DQ_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        return st;
    }
    int64_t full[DQ_CACHE_MAX_DIMS + 1] = {ex->rows};
    memcpy(full + 1, ex->shape, sizeof(int64_t) * (size_t)ex->ndim);
    st = dq_npy_begin(ex->f, tmp, ex->ndim + 1, full, err);
    if (!st) st = s_export_pass(c, txn, sha, name, name_len, ex, err);
    if (!st && (fflush(ex->f) != 0 || fsync(fileno(ex->f)) != 0))
        st = dq_fail(err, DQ_ERR_IO, "%s: flush failed: %s", tmp, strerror(errno));
    if (fclose(ex->f) != 0 && !st)
        st = dq_fail(err, DQ_ERR_IO, "%s: close failed: %s", tmp, strerror(errno));
    ex->f = NULL;
    if (!st && rename(tmp, ex->path) != 0)
        st = dq_fail(err, DQ_ERR_IO, "cannot rename %s to %s: %s", tmp, ex->path,
                     strerror(errno));
    if (st) remove(tmp);
    free(tmp);
    return st;
}

dq_status dq_cache_export(dq_cache_t *c, const char *sha256, const char *output,
                          const char *path, int64_t *rows, dq_err *err)
{
    if (rows) *rows = 0;
    uint8_t sha[DQ_CACHE_SHA_BYTES];
    DQ_TRY(dq_cache_parse_sha256(sha, sha256, err));
    size_t name_len = output ? strnlen(output, DQ_MSG_NAME_MAX + 1) : 0;
    if (name_len < 1 || name_len > DQ_MSG_NAME_MAX)
        return dq_fail(err, DQ_ERR_ARG, "cache %s: output name must be 1..%d bytes", c->dir,
                       DQ_MSG_NAME_MAX);
    if (!path) return dq_fail(err, DQ_ERR_ARG, "cache %s: no export path", c->dir);
    MDB_txn *txn;
    DQ_TRY(dq_cache_read_begin(c, &txn, err));
    s_export ex = {.path = path};
    dq_status st = s_export_pass(c, txn, sha, output, name_len, &ex, err);
    if (!st && ex.rows == 0)
        st = dq_fail(err, DQ_ERR_NOT_FOUND, "cache %s: no entry for teacher %s output '%s'",
                     c->dir, sha256, output);
    if (!st) st = s_export_write(c, txn, sha, output, name_len, &ex, err);
    mdb_txn_abort(txn);
    if (!st && rows) *rows = ex.rows;
    return st;
}
