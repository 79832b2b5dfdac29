/* source_replay.c - teacher outputs replayed from the broker's LMDB cache.
 *
 * Offline distillation: no broker, no teacher. The cache (opened read-only,
 * so a live broker may keep writing it) holds one entry per (teacher,
 * sample bytes, output); batches come from the same batcher as every other
 * source and are looked up by content, so the student sees exactly the bytes
 * the service gave. Without --augment every sample of the training set is
 * checked up front, and a missing one is an error naming how many.
 */
#include <stdlib.h>
#include <string.h>

#include "cache/cache.h"
#include "student_trainer/shard.h"
#include "student_trainer/source.h"

typedef struct {
    dq_source_t base;
    dq_source_config cfg;
    dq_batcher batcher;
    dq_cache_t *cache;
    dq_msg_teacher teacher;
    dq_cache_get_output out;
    int64_t next_index;
    dq_train_batch batch;
} s_replay;

static void s_destroy(dq_source_t *base)
{
    s_replay *s = (s_replay *)base;
    dq_batcher_free(&s->batcher);
    dq_cache_get_output_free(&s->out, 1);
    dq_cache_close(&s->cache);
    free(s->batch.pix);
    free(s->batch.labels);
    free(s);
}

static dq_status s_start(dq_source_t *base, int64_t epoch, int64_t first, dq_err *err)
{
    (void)err;
    s_replay *s = (s_replay *)base;
    dq_batcher_epoch(&s->batcher, epoch);
    s->next_index = first;
    return DQ_OK;
}

/* Looks up n samples of pix; outputs land in s->out.data. */
static dq_status s_lookup(s_replay *s, const uint8_t *pix, int64_t n, int64_t *missing,
                          dq_err *err)
{
    const dq_dataset *ds = s->cfg.train;
    int64_t shape[4] = {n, ds->c, ds->h, ds->w};
    return dq_cache_get_batch(s->cache, s->teacher.sha256, s->teacher.model, DQ_DTYPE_U8,
                              shape, pix, 1, &s->out, missing, err);
}

static dq_status s_next(dq_source_t *base, dq_train_batch **out, dq_err *err)
{
    s_replay *s = (s_replay *)base;
    *out = NULL;
    dq_train_batch *b = &s->batch;
    b->n = dq_batcher_fill_shard(&s->batcher, s->next_index, s->cfg.rank, s->cfg.ranks, b->pix,
                                 b->labels);
    if (b->n == 0) return DQ_OK;
    b->index = s->next_index++;
    int64_t missing = 0;
    DQ_TRY(s_lookup(s, b->pix, b->n, &missing, err));
    if (missing)
        return dq_fail(err, DQ_ERR_NOT_FOUND, "--replay %s: %lld of the %lld samples of batch "
                       "%lld (epoch %lld) are missing from the cache for teacher %s",
                       s->cfg.replay_dir, (long long)missing, (long long)b->n,
                       (long long)b->index, (long long)s->batcher.epoch + 1, s->teacher.model);
    b->teacher = s->out.data;
    *out = b;
    return DQ_OK;
}

/* Picks the cache's teacher: the one given (sha256 prefix) or the only one. */
static dq_status s_pick_teacher(s_replay *s, const char *want, dq_err *err)
{
    dq_cache_info info;
    memset(&info, 0, sizeof info);
    dq_status st = dq_cache_stats(s->cache, &info, err);
    int found = -1, matches = 0;
    for (int i = 0; st == DQ_OK && i < info.n_teachers; i++) {
        const dq_msg_teacher *t = &info.teachers[i].teacher;
        if (!want || strncmp(t->sha256, want, strlen(want)) == 0) found = i, matches++;
    }
    if (st == DQ_OK && matches != 1) {
        char list[1024] = "";
        size_t off = 0;
        for (int i = 0; i < info.n_teachers && off < sizeof list; i++)
            off += (size_t)snprintf(list + off, sizeof list - off, "%s %s (%s)",
                                    i ? "," : "", info.teachers[i].teacher.sha256,
                                    info.teachers[i].teacher.model);
        st = dq_fail(err, DQ_ERR_NOT_FOUND, "--replay %s: %s; teachers in the cache:%s",
                     s->cfg.replay_dir,
                     matches == 0 ? (want ? "no teacher matches --replay-teacher"
                                          : "the cache holds no teacher")
                                  : "several teachers: choose one with --replay-teacher SHA256",
                     info.n_teachers ? list : " none");
    }
    if (st == DQ_OK) s->teacher = info.teachers[found].teacher;
    dq_cache_info_free(&info);
    return st;
}

/* Every training sample must be there (checked once, un-augmented). */
static dq_status s_check_all(s_replay *s, dq_err *err)
{
    const dq_dataset *ds = s->cfg.train;
    size_t sz = (size_t)ds->c * (size_t)ds->h * (size_t)ds->w;
    int64_t missing = 0;
    for (int64_t first = 0; first < ds->n; first += s->cfg.batch) {
        int64_t n = ds->n - first < s->cfg.batch ? ds->n - first : s->cfg.batch, m = 0;
        DQ_TRY(s_lookup(s, ds->images + (size_t)first * sz, n, &m, err));
        if (first == 0 && m == 0) {
            dq_teacher_shape *ts = &s->base.tshape;
            ts->output = s->cfg.output;
            ts->ndim = s->out.ndim;
            ts->floats = 1;
            for (int k = 0; k < s->out.ndim; k++)
                ts->shape[k] = s->out.shape[k], ts->floats *= s->out.shape[k];
        }
        missing += m;
    }
    if (missing)
        return dq_fail(err, DQ_ERR_NOT_FOUND, "--replay %s: %lld of the %lld training samples "
                       "are missing from the cache (output '%s' of teacher %s, %.12s...); fill "
                       "it with a service run first", s->cfg.replay_dir, (long long)missing,
                       (long long)ds->n, s->cfg.output, s->teacher.model, s->teacher.sha256);
    return DQ_OK;
}

dq_status dq_source_replay_new(dq_source_t **out, const dq_source_config *cfg, dq_err *err)
{
    *out = NULL;
    if (!cfg->replay_dir || !cfg->output)
        return dq_fail(err, DQ_ERR_ARG, "replay source needs a cache directory and an output");
    if (cfg->augment)
        return dq_fail(err, DQ_ERR_ARG, "--replay with --augment: augmented samples are new "
                       "every epoch, so a cache cannot hold them; drop --augment");
    s_replay *s = calloc(1, sizeof *s);
    if (!s) return dq_fail(err, DQ_ERR_NOMEM, "source: out of memory");
    s->base.kind = "replay";
    s->base.start = s_start;
    s->base.next = s_next;
    s->base.destroy = s_destroy;
    s->cfg = *cfg;
    s->out.name = cfg->output;
    const dq_dataset *ds = cfg->train;
    size_t sz = (size_t)ds->c * (size_t)ds->h * (size_t)ds->w;
    dq_cache_config cc;
    dq_cache_config_defaults(&cc);
    cc.read_only = true;
    dq_status st = dq_cache_open(&s->cache, cfg->replay_dir, &cc, err);
    if (st == DQ_OK) st = dq_batcher_init(&s->batcher, ds, cfg->seed, cfg->batch, false, err);
    s->batch.pix = malloc((size_t)cfg->batch * sz);
    s->batch.labels = malloc((size_t)cfg->batch * sizeof(int32_t));
    if (st == DQ_OK && (!s->batch.pix || !s->batch.labels))
        st = dq_fail(err, DQ_ERR_NOMEM, "source: out of memory");
    if (st == DQ_OK) st = s_pick_teacher(s, cfg->replay_teacher, err);
    if (st == DQ_OK) st = s_check_all(s, err);
    if (st == DQ_OK && cfg->log)
        fprintf(cfg->log, "replaying teacher %s (weights sha256 %.16s...) from %s\n",
                s->teacher.model, s->teacher.sha256, cfg->replay_dir);
    if (st != DQ_OK) {
        s_destroy(&s->base);
        return st;
    }
    *out = &s->base;
    return DQ_OK;
}
