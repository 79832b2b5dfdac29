/* cache.c - opening the LMDB environment, batch put and get, stats.
 *
 * A put is one write transaction over n samples x outputs (MDB_RESERVE, so
 * each value is written straight into its page, no staging copy), plus the
 * teacher's entry count; a get is one read transaction whose values are
 * copied from the map into the caller's buffers. Hashing is done inline per
 * sample so neither path allocates (get may grow the caller's buffers once).
 * Policies (full map, sync, concurrency) are described in cache.h.
 */
#include "cache/cache_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void dq_cache_config_defaults(dq_cache_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->max_bytes = DQ_CACHE_DEFAULT_MAX_BYTES;
}

const char *dq_cache_dir(const dq_cache_t *c)
{
    return c->dir;
}

bool dq_cache_is_full(const dq_cache_t *c)
{
    return c->full;
}

/* Begins a transaction; when another process grew the file past our map
 * (MDB_MAP_RESIZED), adopts its size and retries once. Allowed here: this
 * handle never has another transaction open at that point. */
static dq_status s_txn_begin(dq_cache_t *c, unsigned flags, MDB_txn **txn, dq_err *err)
{
    int rc = mdb_txn_begin(c->env, NULL, flags, txn);
    if (rc == MDB_MAP_RESIZED) {
        rc = mdb_env_set_mapsize(c->env, 0);
        if (rc) return dq_cache_mdb_fail(c, err, DQ_ERR_IO, rc, "re-map after growth");
        rc = mdb_txn_begin(c->env, NULL, flags, txn);
    }
    if (rc) return dq_cache_mdb_fail(c, err, DQ_ERR_IO, rc,
                                     flags & MDB_RDONLY ? "begin read transaction"
                                                        : "begin write transaction");
    return DQ_OK;
}

dq_status dq_cache_read_begin(dq_cache_t *c, MDB_txn **txn, dq_err *err)
{
    return s_txn_begin(c, MDB_RDONLY, txn, err);
}

/* Opens one named database in txn (creating it when writable). */
static dq_status s_open_db(dq_cache_t *c, MDB_txn *txn, const char *name, MDB_dbi *dbi,
                           dq_err *err)
{
    int rc = mdb_dbi_open(txn, name, c->read_only ? 0 : MDB_CREATE, dbi);
    if (rc == MDB_NOTFOUND)
        return dq_fail(err, DQ_ERR_NOT_FOUND, "cache %s: not a distillq cache (no '%s' database)",
                       c->dir, name);
    if (rc) return dq_cache_mdb_fail(c, err, DQ_ERR_IO, rc, name);
    return DQ_OK;
}

/* Checks (or, when writable and new, writes) the format record. */
static dq_status s_check_format(dq_cache_t *c, MDB_txn *txn, dq_err *err)
{
    MDB_val k = {6, "format"}, v;
    int rc = mdb_get(txn, c->meta, &k, &v);
    if (rc == MDB_NOTFOUND && !c->read_only) {
        uint32_t fmt = DQ_CACHE_FORMAT;
        v.mv_size = sizeof fmt;
        v.mv_data = &fmt;
        rc = mdb_put(txn, c->meta, &k, &v, 0);
        if (rc) return dq_cache_mdb_fail(c, err, DQ_ERR_IO, rc, "write format record");
        return DQ_OK;
    }
    if (rc == MDB_NOTFOUND)
        return dq_fail(err, DQ_ERR_FORMAT, "cache %s: no format record", c->dir);
    if (rc) return dq_cache_mdb_fail(c, err, DQ_ERR_IO, rc, "read format record");
    uint32_t fmt = 0;
    if (v.mv_size == sizeof fmt) memcpy(&fmt, v.mv_data, sizeof fmt);
    if (fmt != DQ_CACHE_FORMAT)
        return dq_fail(err, DQ_ERR_FORMAT, "cache %s: format %u, this build reads %d", c->dir,
                       fmt, DQ_CACHE_FORMAT);
    return DQ_OK;
}

static dq_status s_open_env(dq_cache_t *c, const dq_cache_config *cfg, dq_err *err)
{
    struct stat sb;
    if (c->read_only) {
        char path[4096];
        snprintf(path, sizeof path, "%s/data.mdb", c->dir);
        if (stat(path, &sb) != 0)
            return dq_fail(err, DQ_ERR_NOT_FOUND, "cache %s: no cache there (%s: %s)", c->dir,
                           path, strerror(errno));
    } else if (mkdir(c->dir, 0777) != 0 && errno != EEXIST) {
        return dq_fail(err, DQ_ERR_IO, "cache %s: cannot create directory: %s", c->dir,
                       strerror(errno));
    }
    int rc = mdb_env_create(&c->env);
    if (rc) return dq_cache_mdb_fail(c, err, DQ_ERR_IO, rc, "mdb_env_create");
    rc = mdb_env_set_maxdbs(c->env, 3);
    if (rc) return dq_cache_mdb_fail(c, err, DQ_ERR_IO, rc, "mdb_env_set_maxdbs");
    if (!c->read_only) {
        uint64_t max = cfg->max_bytes ? cfg->max_bytes : DQ_CACHE_DEFAULT_MAX_BYTES;
        max = (max + 65535) / 65536 * 65536; /* a multiple of any page size */
        if (max > SIZE_MAX / 2)
            return dq_fail(err, DQ_ERR_ARG, "cache %s: max size %llu too large", c->dir,
                           (unsigned long long)max);
        rc = mdb_env_set_mapsize(c->env, (size_t)max);
        if (rc) return dq_cache_mdb_fail(c, err, DQ_ERR_IO, rc, "mdb_env_set_mapsize");
    }
    unsigned flags = MDB_NOTLS;
    if (c->read_only) flags |= MDB_RDONLY;
    else flags |= cfg->no_sync ? MDB_NOSYNC : MDB_NOMETASYNC;
    rc = mdb_env_open(c->env, c->dir, flags, 0664);
    if (rc) return dq_cache_mdb_fail(c, err, rc == ENOENT ? DQ_ERR_NOT_FOUND : DQ_ERR_IO, rc,
                                     "mdb_env_open");
    if (!c->read_only) {
        int dead = 0; /* reader slots of killed processes would pin old pages */
        rc = mdb_reader_check(c->env, &dead);
        if (rc) return dq_cache_mdb_fail(c, err, DQ_ERR_IO, rc, "mdb_reader_check");
    }
    MDB_txn *txn;
    rc = mdb_txn_begin(c->env, NULL, c->read_only ? MDB_RDONLY : 0, &txn);
    if (rc) return dq_cache_mdb_fail(c, err, DQ_ERR_IO, rc, "begin open transaction");
    dq_status st = s_open_db(c, txn, "outputs", &c->outputs, err);
    if (!st) st = s_open_db(c, txn, "teachers", &c->teachers, err);
    if (!st) st = s_open_db(c, txn, "meta", &c->meta, err);
    if (!st) st = s_check_format(c, txn, err);
    if (st) {
        mdb_txn_abort(txn);
        return st;
    }
    /* Commit (also when read-only): that is what publishes the dbi handles. */
    rc = mdb_txn_commit(txn);
    if (rc) return dq_cache_mdb_fail(c, err, DQ_ERR_IO, rc, "commit open transaction");
    return DQ_OK;
}

dq_status dq_cache_open(dq_cache_t **out, const char *dir, const dq_cache_config *cfg,
                        dq_err *err)
{
    *out = NULL;
    dq_cache_config def;
    if (!cfg) {
        dq_cache_config_defaults(&def);
        cfg = &def;
    }
    if (!dir || !*dir) return dq_fail(err, DQ_ERR_ARG, "cache: no directory given");
    dq_cache_t *c = calloc(1, sizeof *c);
    if (!c || !(c->dir = strdup(dir))) {
        free(c);
        return dq_fail(err, DQ_ERR_NOMEM, "cache %s: out of memory", dir);
    }
    c->read_only = cfg->read_only;
    c->log = cfg->log ? cfg->log : stderr;
    dq_status st = s_open_env(c, cfg, err);
    if (st) {
        dq_cache_close(&c);
        return st;
    }
    *out = c;
    return DQ_OK;
}

void dq_cache_close(dq_cache_t **p)
{
    if (!p || !*p) return;
    dq_cache_t *c = *p;
    if (c->env) mdb_env_close(c->env); /* also closes the dbi handles */
    free(c->dir);
    free(c);
    *p = NULL;
}

/* Validates a batch description shared by put and get. */
static dq_status s_check_batch(const dq_cache_t *c, dq_msg_dtype dtype, const int64_t shape[4],
                               const void *samples, int n_outputs, dq_err *err)
{
    if ((unsigned)dtype >= DQ_DTYPE_COUNT)
        return dq_fail(err, DQ_ERR_ARG, "cache %s: bad dtype %d", c->dir, (int)dtype);
    for (int i = 0; i < 4; i++)
        if (shape[i] < 1 || shape[i] > (INT64_C(1) << 30))
            return dq_fail(err, DQ_ERR_ARG, "cache %s: batch shape dim %d is %lld", c->dir, i,
                           (long long)shape[i]);
    if (!samples) return dq_fail(err, DQ_ERR_ARG, "cache %s: no sample data", c->dir);
    if (n_outputs < 1 || n_outputs > DQ_MSG_MAX_OUTPUTS)
        return dq_fail(err, DQ_ERR_ARG, "cache %s: %d outputs (1..%d)", c->dir, n_outputs,
                       DQ_MSG_MAX_OUTPUTS);
    return DQ_OK;
}

static dq_status s_check_name(const dq_cache_t *c, const char *name, size_t *len, dq_err *err)
{
    *len = name ? strnlen(name, DQ_MSG_NAME_MAX + 1) : 0;
    if (*len < 1 || *len > DQ_MSG_NAME_MAX)
        return dq_fail(err, DQ_ERR_ARG, "cache %s: output name must be 1..%d bytes", c->dir,
                       DQ_MSG_NAME_MAX);
    return DQ_OK;
}

/* Adds n_new to the teacher's count, refreshing its service/model names. */
static int s_bump_teacher(dq_cache_t *c, MDB_txn *txn, const uint8_t *sha,
                          const dq_msg_teacher *t, int64_t n_new)
{
    MDB_val k = {DQ_CACHE_SHA_BYTES, (void *)sha}, v;
    uint8_t rec[DQ_CACHE_TEACHER_VAL] = {0};
    uint64_t entries = 0;
    int rc = mdb_get(txn, c->teachers, &k, &v);
    if (rc == 0 && v.mv_size == sizeof rec) memcpy(&entries, v.mv_data, 8);
    else if (rc != 0 && rc != MDB_NOTFOUND) return rc;
    entries += (uint64_t)n_new;
    memcpy(rec, &entries, 8);
    /* NUL-padded fields; rec is zeroed, so copying the string is enough. */
    memcpy(rec + 8, t->service, strnlen(t->service, DQ_MSG_NAME_MAX));
    memcpy(rec + 8 + DQ_MSG_NAME_MAX + 1, t->model, strnlen(t->model, DQ_MSG_NAME_MAX));
    v.mv_size = sizeof rec;
    v.mv_data = rec;
    return mdb_put(txn, c->teachers, &k, &v, 0);
}

dq_status dq_cache_put_batch(dq_cache_t *c, const dq_msg_teacher *teacher, dq_msg_dtype dtype,
                             const int64_t shape[4], const void *samples, int n_outputs,
                             const dq_cache_put_output *outs, int64_t *stored, dq_err *err)
{
    if (stored) *stored = 0;
    if (c->read_only)
        return dq_fail(err, DQ_ERR_ARG, "cache %s: opened read-only, cannot store", c->dir);
    DQ_TRY(s_check_batch(c, dtype, shape, samples, n_outputs, err));
    uint8_t sha[DQ_CACHE_SHA_BYTES];
    DQ_TRY(dq_cache_parse_sha256(sha, teacher->sha256, err));
    size_t name_len[DQ_MSG_MAX_OUTPUTS];
    int64_t numel[DQ_MSG_MAX_OUTPUTS];
    for (int k = 0; k < n_outputs; k++) {
        DQ_TRY(s_check_name(c, outs[k].name, &name_len[k], err));
        if (outs[k].ndim < 0 || outs[k].ndim > DQ_CACHE_MAX_DIMS || !outs[k].data ||
            (outs[k].ndim > 0 && !outs[k].shape))
            return dq_fail(err, DQ_ERR_ARG, "cache %s: output '%s': rank %d (0..%d) or no data",
                           c->dir, outs[k].name, outs[k].ndim, DQ_CACHE_MAX_DIMS);
        numel[k] = 1;
        for (int d = 0; d < outs[k].ndim; d++) {
            if (outs[k].shape[d] < 1 || outs[k].shape[d] > (INT64_C(1) << 30) / numel[k])
                return dq_fail(err, DQ_ERR_ARG, "cache %s: output '%s': bad dim %d", c->dir,
                               outs[k].name, d);
            numel[k] *= outs[k].shape[d];
        }
    }
    if (c->full) return DQ_OK; /* FULL POLICY: silently keep serving */
    DQ_TRY(dq_cache_make_room(c, sha, err));

    MDB_txn *txn;
    DQ_TRY(s_txn_begin(c, 0, &txn, err));
    int rc = 0;
    size_t bytes;
    uint64_t seed = dq_cache_hash_seed(teacher->model, dtype, shape, &bytes);
    int64_t n_new = 0;
    uint8_t kb[DQ_CACHE_KEY_MAX];
    for (int64_t i = 0; i < shape[0] && !rc; i++) {
        dq_cache_hash h;
        dq_cache_hash_one(&h, seed, (const uint8_t *)samples + (size_t)i * bytes, bytes);
        for (int k = 0; k < n_outputs; k++) {
            MDB_val key = {dq_cache_key(kb, sha, &h, outs[k].name, name_len[k]), kb};
            MDB_val val = {dq_cache_val_size(outs[k].ndim, numel[k]), NULL};
            rc = mdb_put(txn, c->outputs, &key, &val, MDB_NOOVERWRITE | MDB_RESERVE);
            if (rc == MDB_KEYEXIST) {
                rc = 0;
                continue;
            }
            if (rc) break;
            const uint8_t *src = (const uint8_t *)outs[k].data + (size_t)(i * numel[k]) * 4;
            dq_cache_val_write(val.mv_data, &key, outs[k].ndim, outs[k].shape, numel[k], src);
            n_new++;
        }
    }
    if (!rc && n_new > 0) rc = s_bump_teacher(c, txn, sha, teacher, n_new);
    if (!rc && n_new > 0) rc = dq_cache_touch_teacher(c, txn, sha);
    if (rc) {
        mdb_txn_abort(txn);
    } else if (n_new == 0) {
        mdb_txn_abort(txn); /* nothing new: no commit, no fsync */
    } else {
        rc = mdb_txn_commit(txn); /* frees txn on failure too */
    }
    if (rc == MDB_MAP_FULL) {
        c->full = true;
        fprintf(c->log, "cache %s: full (map size limit reached); no more inserts, reads "
                        "continue (raise --cache-max-gb to grow it)\n", c->dir);
        fflush(c->log);
        return DQ_OK;
    }
    if (rc) return dq_cache_mdb_fail(c, err, DQ_ERR_IO, rc, "store batch");
    if (stored) *stored = n_new;
    return DQ_OK;
}

/* dq_cache_get_batch, or with stop_at_miss the probe that stops at the
 * first missing sample (*missing is then 0 or 1). */
static dq_status s_get_batch(dq_cache_t *c, const char *sha256, const char *model,
                             dq_msg_dtype dtype, const int64_t shape[4], const void *samples,
                             int n_outputs, dq_cache_get_output *outs, bool stop_at_miss,
                             int64_t *missing, dq_err *err)
{
    *missing = shape[0];
    DQ_TRY(s_check_batch(c, dtype, shape, samples, n_outputs, err));
    uint8_t sha[DQ_CACHE_SHA_BYTES];
    DQ_TRY(dq_cache_parse_sha256(sha, sha256, err));
    size_t name_len[DQ_MSG_MAX_OUTPUTS];
    int64_t numel[DQ_MSG_MAX_OUTPUTS];
    for (int k = 0; k < n_outputs; k++) {
        DQ_TRY(s_check_name(c, outs[k].name, &name_len[k], err));
        numel[k] = -1; /* known at its first hit */
    }
    MDB_txn *txn;
    DQ_TRY(dq_cache_read_begin(c, &txn, err));
    size_t bytes;
    uint64_t seed = dq_cache_hash_seed(model, dtype, shape, &bytes);
    const int64_t n = shape[0];
    int64_t miss = 0;
    dq_status st = DQ_OK;
    uint8_t kb[DQ_CACHE_KEY_MAX];
    for (int64_t i = 0; i < n && !st && !(miss && stop_at_miss); i++) {
        dq_cache_hash h;
        dq_cache_hash_one(&h, seed, (const uint8_t *)samples + (size_t)i * bytes, bytes);
        for (int k = 0; k < n_outputs && !st; k++) {
            MDB_val key = {dq_cache_key(kb, sha, &h, outs[k].name, name_len[k]), kb}, val;
            int rc = mdb_get(txn, c->outputs, &key, &val);
            if (rc == MDB_NOTFOUND) {
                miss++;
                break;
            }
            if (rc) {
                st = dq_cache_mdb_fail(c, err, DQ_ERR_IO, rc, "read entry");
                break;
            }
            dq_cache_val v;
            const char *why = dq_cache_val_parse(&key, &val, &v);
            char ks[160];
            if (why) {
                dq_cache_key_str(&key, ks, sizeof ks);
                st = dq_fail(err, DQ_ERR_FORMAT, "cache %s: entry %s: %s", c->dir, ks, why);
                break;
            }
            dq_cache_get_output *o = &outs[k];
            if (numel[k] < 0) {
                size_t need = (size_t)(n * v.numel);
                if (need > o->cap) {
                    float *p = realloc(o->data, need * sizeof(float));
                    if (!p) {
                        st = dq_fail(err, DQ_ERR_NOMEM, "cache %s: no memory for %zu floats of "
                                                        "'%s'", c->dir, need, o->name);
                        break;
                    }
                    o->data = p;
                    o->cap = need;
                }
                numel[k] = v.numel;
                o->ndim = v.ndim;
                memcpy(o->shape, v.shape, sizeof v.shape);
            } else if (v.ndim != o->ndim ||
                       memcmp(v.shape, o->shape, (size_t)v.ndim * sizeof v.shape[0]) != 0) {
                dq_cache_key_str(&key, ks, sizeof ks);
                st = dq_fail(err, DQ_ERR_FORMAT, "cache %s: entry %s: shape differs from other "
                                                 "samples of '%s'", c->dir, ks, o->name);
                break;
            }
            memcpy(o->data + (size_t)(i * numel[k]), v.data, (size_t)v.numel * sizeof(float));
        }
    }
    mdb_txn_abort(txn);
    if (!st) *missing = miss;
    return st;
}

dq_status dq_cache_get_batch(dq_cache_t *c, const char *sha256, const char *model,
                             dq_msg_dtype dtype,
                             const int64_t shape[4], const void *samples, int n_outputs,
                             dq_cache_get_output *outs, int64_t *missing, dq_err *err)
{
    return s_get_batch(c, sha256, model, dtype, shape, samples, n_outputs, outs, false, missing,
                       err);
}

dq_status dq_cache_probe_batch(dq_cache_t *c, const char *sha256, const char *model,
                               dq_msg_dtype dtype, const int64_t shape[4], const void *samples,
                               int n_outputs, dq_cache_get_output *outs, bool *hit, dq_err *err)
{
    int64_t missing = 0;
    *hit = false;
    DQ_TRY(s_get_batch(c, sha256, model, dtype, shape, samples, n_outputs, outs, true, &missing,
                       err));
    *hit = missing == 0;
    return DQ_OK;
}

void dq_cache_get_output_free(dq_cache_get_output *outs, int n_outputs)
{
    for (int k = 0; k < n_outputs; k++) {
        free(outs[k].data);
        outs[k].data = NULL;
        outs[k].cap = 0;
    }
}

static dq_status s_teachers(dq_cache_t *c, MDB_txn *txn, dq_cache_info *info, dq_err *err)
{
    MDB_stat ms;
    int rc = mdb_stat(txn, c->teachers, &ms);
    if (rc) return dq_cache_mdb_fail(c, err, DQ_ERR_IO, rc, "stat teachers");
    if (ms.ms_entries == 0) return DQ_OK;
    info->teachers = calloc(ms.ms_entries, sizeof *info->teachers);
    if (!info->teachers) return dq_fail(err, DQ_ERR_NOMEM, "cache %s: out of memory", c->dir);
    MDB_cursor *cur;
    rc = mdb_cursor_open(txn, c->teachers, &cur);
    if (rc) return dq_cache_mdb_fail(c, err, DQ_ERR_IO, rc, "open teachers cursor");
    MDB_val k, v;
    dq_status st = DQ_OK;
    static const char hexd[] = "0123456789abcdef";
    while (!st && (size_t)info->n_teachers < ms.ms_entries &&
           (rc = mdb_cursor_get(cur, &k, &v, info->n_teachers ? MDB_NEXT : MDB_FIRST)) == 0) {
        if (k.mv_size != DQ_CACHE_SHA_BYTES || v.mv_size != DQ_CACHE_TEACHER_VAL) {
            st = dq_fail(err, DQ_ERR_FORMAT, "cache %s: malformed teacher record", c->dir);
            break;
        }
        dq_cache_teacher_info *t = &info->teachers[info->n_teachers++];
        const uint8_t *kb = k.mv_data, *vb = v.mv_data;
        for (int i = 0; i < DQ_CACHE_SHA_BYTES; i++) {
            t->teacher.sha256[2 * i] = hexd[kb[i] >> 4];
            t->teacher.sha256[2 * i + 1] = hexd[kb[i] & 15];
        }
        uint64_t e;
        memcpy(&e, vb, 8);
        t->entries = (int64_t)e;
        memcpy(t->teacher.service, vb + 8, DQ_MSG_NAME_MAX);
        memcpy(t->teacher.model, vb + 8 + DQ_MSG_NAME_MAX + 1, DQ_MSG_NAME_MAX);
    }
    if (!st && rc && rc != MDB_NOTFOUND)
        st = dq_cache_mdb_fail(c, err, DQ_ERR_IO, rc, "read teachers");
    mdb_cursor_close(cur);
    return st;
}

dq_status dq_cache_stats(dq_cache_t *c, dq_cache_info *info, dq_err *err)
{
    memset(info, 0, sizeof *info);
    info->full = c->full;
    MDB_txn *txn;
    DQ_TRY(dq_cache_read_begin(c, &txn, err));
    MDB_stat ms;
    MDB_envinfo ei;
    dq_status st = DQ_OK;
    int rc = mdb_stat(txn, c->outputs, &ms);
    if (rc) st = dq_cache_mdb_fail(c, err, DQ_ERR_IO, rc, "stat outputs");
    if (!st && (rc = mdb_env_info(c->env, &ei)) != 0)
        st = dq_cache_mdb_fail(c, err, DQ_ERR_IO, rc, "mdb_env_info");
    if (!st) {
        info->entries = (int64_t)ms.ms_entries;
        info->page_size = ms.ms_psize;
        info->map_bytes = ei.me_mapsize;
        info->used_bytes = ((uint64_t)ei.me_last_pgno + 1) * ms.ms_psize;
        st = s_teachers(c, txn, info, err);
    }
    mdb_txn_abort(txn);
    if (st) return st;
    char path[4096];
    struct stat sb;
    snprintf(path, sizeof path, "%s/data.mdb", c->dir);
    if (stat(path, &sb) != 0)
        return dq_fail(err, DQ_ERR_IO, "cache %s: stat %s: %s", c->dir, path, strerror(errno));
    info->file_bytes = (uint64_t)sb.st_size;
    return DQ_OK;
}

void dq_cache_info_free(dq_cache_info *info)
{
    free(info->teachers);
    info->teachers = NULL;
    info->n_teachers = 0;
}
