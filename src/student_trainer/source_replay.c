/* source_replay.c - teacher outputs replayed from the broker's LMDB cache.
 *
 * Offline distillation: no broker, no teacher. The cache (opened read-only,
 * so a live broker may keep writing it) holds one entry per (teacher,
 * sample bytes, output); batches come from the same batcher as every other
 * source and are looked up by content, so the student sees exactly the bytes
 * the service gave. Without --augment every sample of the training set is
 * checked up front, and a missing one is an error naming how many.
 *
 * An ensemble (--replay-teacher given once per teacher) reads each teacher's
 * outputs and blends them in that order with dq_source_blend and the
 * weights normalised as the service source does, so a replay in the order
 * of the live run's --teacher list equals that run bit for bit.
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
    int n_t;                                     /* teachers (1: no blending) */
    dq_msg_teacher teacher[DQ_SOURCE_MAX_TEACHERS];
    dq_cache_get_output out[DQ_SOURCE_MAX_TEACHERS];
    float weights[DQ_SOURCE_MAX_TEACHERS];       /* normalised as source_service.c's */
    float *blend;                                /* batch x floats, when n_t > 1 */
    int64_t next_index;
    dq_train_batch batch;
} s_replay;

static void s_destroy(dq_source_t *base)
{
    s_replay *s = (s_replay *)base;
    dq_batcher_free(&s->batcher);
    dq_cache_get_output_free(s->out, DQ_SOURCE_MAX_TEACHERS);
    dq_cache_close(&s->cache);
    free(s->blend);
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

/* Looks up n samples of pix for teacher t; outputs land in s->out[t].data. */
static dq_status s_lookup(s_replay *s, int t, const uint8_t *pix, int64_t n, int64_t *missing,
                          dq_err *err)
{
    const dq_dataset *ds = s->cfg.train;
    int64_t shape[4] = {n, ds->c, ds->h, ds->w};
    return dq_cache_get_batch(s->cache, s->teacher[t].sha256, s->teacher[t].model, DQ_DTYPE_U8,
                              shape, pix, 1, &s->out[t], missing, err);
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
    for (int t = 0; t < s->n_t; t++) {
        int64_t missing = 0;
        DQ_TRY(s_lookup(s, t, b->pix, b->n, &missing, err));
        if (missing)
            return dq_fail(err, DQ_ERR_NOT_FOUND, "--replay %s: %lld of the %lld samples of "
                           "batch %lld (epoch %lld) are missing from the cache for teacher %s",
                           s->cfg.replay_dir, (long long)missing, (long long)b->n,
                           (long long)b->index, (long long)s->batcher.epoch + 1,
                           s->teacher[t].model);
    }
    b->teacher = s->out[0].data;
    if (s->n_t > 1) {
        for (int t = 0; t < s->n_t; t++)
            dq_source_blend(s->blend, s->out[t].data, b->n * s->base.tshape.floats,
                            s->weights[t], t == 0);
        b->teacher = s->blend;
    }
    *out = b;
    return DQ_OK;
}

/* Picks teacher slot t of the cache: the one given (sha256 prefix) or the
 * only one. */
static dq_status s_pick_teacher(s_replay *s, int t, const char *want, dq_err *err)
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
                                  : "several teachers: choose one with --replay-teacher SHA256 "
                                    "(once per teacher for an ensemble)",
                     info.n_teachers ? list : " none");
    }
    if (st == DQ_OK) s->teacher[t] = info.teachers[found].teacher;
    dq_cache_info_free(&info);
    return st;
}

/* Every training sample must be there for teacher t (checked once,
 * un-augmented), its per-sample shape the first teacher's. */
static dq_status s_check_all(s_replay *s, int t, dq_err *err)
{
    const dq_dataset *ds = s->cfg.train;
    size_t sz = (size_t)ds->c * (size_t)ds->h * (size_t)ds->w;
    const dq_cache_get_output *o = &s->out[t];
    dq_teacher_shape *ts = &s->base.tshape;
    int64_t missing = 0;
    for (int64_t first = 0; first < ds->n; first += s->cfg.batch) {
        int64_t n = ds->n - first < s->cfg.batch ? ds->n - first : s->cfg.batch, m = 0;
        DQ_TRY(s_lookup(s, t, ds->images + (size_t)first * sz, n, &m, err));
        if (first == 0 && m == 0 && t == 0) {
            ts->output = s->cfg.output;
            ts->ndim = o->ndim;
            ts->floats = 1;
            for (int k = 0; k < o->ndim; k++)
                ts->shape[k] = o->shape[k], ts->floats *= o->shape[k];
        }
        bool same = o->ndim == ts->ndim;
        for (int k = 0; same && k < o->ndim; k++) same = o->shape[k] == ts->shape[k];
        if (first == 0 && m == 0 && !same)
            return dq_fail(err, DQ_ERR_SHAPE, "--replay %s: output '%s' of teacher %s has "
                           "another shape per sample than teacher %s's: not an ensemble",
                           s->cfg.replay_dir, s->cfg.output, s->teacher[t].model,
                           s->teacher[0].model);
        missing += m;
    }
    if (missing)
        return dq_fail(err, DQ_ERR_NOT_FOUND, "--replay %s: %lld of the %lld training samples "
                       "are missing from the cache (output '%s' of teacher %s, %.12s...); fill "
                       "it with a service run first", s->cfg.replay_dir, (long long)missing,
                       (long long)ds->n, s->cfg.output, s->teacher[t].model,
                       s->teacher[t].sha256);
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
    s->n_t = cfg->n_replay_teachers > 0 ? cfg->n_replay_teachers : 1;
    float wsum = 0; /* source_service.c's normalisation, for the same bits */
    for (int t = 0; t < s->n_t; t++) wsum += cfg->weights[t];
    for (int t = 0; t < DQ_SOURCE_MAX_TEACHERS; t++) {
        s->out[t].name = cfg->output;
        if (t < s->n_t) s->weights[t] = cfg->weights[t] / wsum;
    }
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
    for (int t = 0; t < s->n_t && st == DQ_OK; t++) {
        st = s_pick_teacher(s, t, cfg->n_replay_teachers ? cfg->replay_teachers[t] : NULL, err);
        if (st == DQ_OK) st = s_check_all(s, t, err);
        if (st == DQ_OK && cfg->log)
            fprintf(cfg->log, "replaying teacher %s (weights sha256 %.16s...) from %s\n",
                    s->teacher[t].model, s->teacher[t].sha256, cfg->replay_dir);
    }
    if (st == DQ_OK && s->n_t > 1) {
        s->blend = malloc((size_t)cfg->batch * (size_t)s->base.tshape.floats * sizeof(float));
        if (!s->blend) st = dq_fail(err, DQ_ERR_NOMEM, "source: out of memory");
    }
    if (st != DQ_OK) {
        s_destroy(&s->base);
        return st;
    }
    *out = &s->base;
    return DQ_OK;
}
