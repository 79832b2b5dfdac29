/* source_service.c - the pipelined teacher reader (service distillation).
 *
 * A reader thread builds batches with its own batcher (same content as every
 * other source: batcher.h), sends each to every teacher service, and keeps up
 * to K batches at the teachers while the trainer computes. Slots form a ring
 * of K + 1 (K at the teachers, one with the trainer); batch i lives in slot
 * i % (K + 1). The trainer takes batches strictly in order, so the result
 * never depends on which worker answered when. Ensemble outputs are blended
 * in teacher order with dq_source_blend, the same formula as the local source.
 *
 * req_id = sequence * n_teachers + teacher, with the sequence counting every
 * batch this source ever sent, so ids stay unique across epochs and restarts
 * of the epoch (start()).
 *
 * Across epochs: the reader counts positions over the whole run (epoch x
 * batches + index) and keeps K batches at the teachers up to the run's last
 * epoch, so while the trainer finishes an epoch, evaluates and saves, the
 * next epoch's first batches are already on their way; start() of the
 * epoch that follows keeps them. Without this every epoch began with an
 * empty pipeline: a full round trip plus the first forwards (4 x the
 * one-way delay through a relay), which cost 15-25 % of a 40-batch epoch at
 * 20 ms (docs/scaling.md). A batch is a function of (seed, epoch, index)
 * and the teacher's output of the batch alone, so when a batch is sent
 * changes no bit of the run. A start() anywhere else (resume, the first
 * epoch) drops what is in flight and begins at that batch.
 *
 * Memory (issue 15): a batch at the teachers holds its pixels, one encoded
 * copy per teacher (the client keeps it for resends) and its outputs per
 * teacher and blended; K is lowered until K + 1 slots fit inflight_bytes.
 * After the probe every reply's size is known: the clients' ZMQ_MAXMSGSIZE
 * is lowered to it and each request says how many floats it expects, so a
 * larger reply is refused before anything of it is copied.
 *
 * Faults: the client library resends on broker restarts and drops duplicate
 * replies; this file retries "overloaded" and "unknown service" (workers not
 * back yet after a broker restart) with backoff, and gives up with
 * DQ_ERR_TIMEOUT when a batch stays unserved for timeout_ms. A teacher whose
 * identity changes mid-run is an error unless allow_teacher_change.
 *
 * THREADS. A slot's position and ready flag are shared (the trainer frees a
 * slot and the reader fills it): they are read and written under mu only.
 * Its other fields (n, seq's sends, pending, answered, retry_at_ms,
 * first_sent, the buffers) belong to the reader from the send until ready,
 * and to the trainer from ready until it frees the slot.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "client/client.h"
#include "cli/progress.h"
#include "student_trainer/inflight_rule.h"
#include "student_trainer/shard.h"
#include "student_trainer/source.h"

_Static_assert(DQ_SOURCE_MAX_TEACHERS < 32, "s_slot.answered has one bit per teacher");

typedef struct {
    int64_t pos;          /* position in the run (epoch x batches + index); -1: free (under mu) */
    int64_t seq;          /* sequence number of the send */
    int64_t n;
    int pending;          /* teachers not yet answered */
    bool ready;           /* (under mu) */
    double first_sent;    /* for the unserved timeout */
    int64_t retry_at_ms;  /* > 0: resend the missing teachers at this time */
    unsigned answered;    /* bit per teacher */
    dq_train_batch b;
    float *per_teacher;   /* n_teachers x batch x floats, blended when complete */
} s_slot;

typedef struct {
    dq_source_t base;
    dq_source_config cfg;
    dq_batcher batcher;            /* used by the reader thread only */
    dq_client_t *clients[DQ_SOURCE_MAX_TEACHERS];
    char services[DQ_SOURCE_MAX_TEACHERS][DQ_MSG_NAME_MAX + 1];
    float weights[DQ_SOURCE_MAX_TEACHERS];
    int64_t K, nslots;
    int64_t auto_K;                /* the rule's K over the teachers (inflight_rule.h) */
    s_slot *slots;

    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* under mu: */
    bool quit, running;            /* running: the reader works on an epoch */
    int64_t produce, consume;      /* positions in the run (epoch x nbatches + index) */
    int64_t end;                   /* 1 + the last position of the trainer's epoch */
    int64_t limit;                 /* the reader sends positions below this */
    int64_t nbatches;              /* per epoch */
    int64_t seq;
    dq_status failed;              /* reader's error, handed to next() */
    dq_err ferr;
} s_service;

static int64_t s_ms(void)
{
    return (int64_t)(dq_now() * 1000.0);
}

/* Sends batch slot s to teacher t. */
static dq_status s_send(s_service *sv, s_slot *s, int t, dq_err *err)
{
    const dq_dataset *ds = sv->cfg.train;
    const char *outs[1] = {sv->cfg.output};
    dq_client_request r = {
        .req_id = (uint64_t)(s->seq * sv->cfg.n_teachers + t),
        .service = sv->services[t],
        .dtype = DQ_DTYPE_U8,
        .shape = {s->n, ds->c, ds->h, ds->w},
        .data = s->b.pix,
        .n_outputs = 1,
        .outputs = outs,
        .reply_floats = sv->base.tshape.floats,
    };
    return dq_client_send(sv->clients[t], &r, err);
}

/* Takes one reply for slot s from teacher t; DQ_OK when handled (including
 * a scheduled retry), an error to stop the run. */
static dq_status s_take(s_service *sv, int t, const dq_client_reply *rep, dq_err *err)
{
    int64_t seq = (int64_t)(rep->req_id / (uint64_t)sv->cfg.n_teachers);
    s_slot *s = NULL;
    pthread_mutex_lock(&sv->mu);
    for (int64_t i = 0; i < sv->nslots; i++)
        if (sv->slots[i].pos >= 0 && sv->slots[i].seq == seq && !sv->slots[i].ready)
            s = &sv->slots[i];
    pthread_mutex_unlock(&sv->mu);
    if (!s || (s->answered & (1u << t))) return DQ_OK; /* stale: an earlier epoch start */

    if (rep->status == DQ_REPLY_OVERLOADED || rep->status == DQ_REPLY_UNKNOWN_SERVICE ||
        rep->status == DQ_REPLY_TIMEOUT) {
        /* No teacher free (yet): retry until the batch is unserved too long. */
        if (s_ms() - (int64_t)(s->first_sent * 1000) > sv->cfg.timeout_ms)
            return dq_fail(err, DQ_ERR_TIMEOUT, "teacher service '%s' did not serve batch %lld "
                           "within %lld ms (last answer: %s: %s)", sv->services[t],
                           (long long)s->b.index, (long long)sv->cfg.timeout_ms,
                           dq_reply_status_name(rep->status), rep->error);
        s->retry_at_ms = s_ms() + 200;
        return DQ_OK;
    }
    DQ_TRY(dq_client_reply_status(rep, err));
    if (rep->teacher_changed && !sv->cfg.allow_teacher_change)
        return dq_fail(err, DQ_ERR_PROTO, "teacher of service '%s' changed mid-run (now model "
                       "%s, weights sha256 %s); restart the run or pass "
                       "--allow-teacher-change", sv->services[t], rep->teacher->model,
                       rep->teacher->sha256);
    const dq_msg_output *o = rep->n_outputs == 1 ? &rep->outputs[0] : NULL;
    int64_t floats = sv->base.tshape.floats;
    if (!o || o->shape[0] != s->n || (int64_t)o->data_len != s->n * floats * 4)
        return dq_fail(err, DQ_ERR_PROTO, "teacher service '%s' answered batch %lld with an "
                       "output of a different size than the first reply", sv->services[t],
                       (long long)s->b.index);
    dq_msg_f32_copy(s->per_teacher + (size_t)t * (size_t)(sv->cfg.batch * floats), o->data,
                    (size_t)(s->n * floats));
    s->answered |= 1u << t;
    if (--s->pending > 0) return DQ_OK;
    for (int i = 0; i < sv->cfg.n_teachers; i++)
        dq_source_blend(s->b.teacher, s->per_teacher + (size_t)i * (size_t)(sv->cfg.batch * floats),
                        s->n * floats, sv->weights[i], i == 0);
    pthread_mutex_lock(&sv->mu);
    s->ready = true;
    pthread_cond_broadcast(&sv->cv);
    pthread_mutex_unlock(&sv->mu);
    return DQ_OK;
}

/* Fills and sends the next batch if the ring has room. Returns true if sent. */
static bool s_produce(s_service *sv, dq_status *st, dq_err *err)
{
    pthread_mutex_lock(&sv->mu);
    bool room = sv->running && sv->produce < sv->limit && sv->produce - sv->consume < sv->K;
    int64_t pos = sv->produce;
    s_slot *s = &sv->slots[pos % sv->nslots];
    pthread_mutex_unlock(&sv->mu);
    if (!room) return false;
    int64_t epoch = pos / sv->nbatches, index = pos % sv->nbatches;
    dq_batcher_epoch(&sv->batcher, epoch);
    s->n = dq_batcher_fill_shard(&sv->batcher, index, sv->cfg.rank, sv->cfg.ranks, s->b.pix,
                                 s->b.labels);
    s->b.n = s->n;
    s->b.index = index;
    s->pending = sv->cfg.n_teachers;
    s->answered = 0;
    s->retry_at_ms = 0;
    s->first_sent = dq_now();
    pthread_mutex_lock(&sv->mu);
    s->seq = sv->seq++;
    s->pos = pos;
    s->ready = false;
    sv->produce++;
    pthread_mutex_unlock(&sv->mu);
    for (int t = 0; t < sv->cfg.n_teachers && *st == DQ_OK; t++) *st = s_send(sv, s, t, err);
    return true;
}

/* Resends the missing teachers of slots whose retry time has come; fails
 * when a batch has been unserved for longer than the timeout. */
static dq_status s_retry(s_service *sv, dq_err *err)
{
    int64_t now = s_ms();
    for (int64_t i = 0; i < sv->nslots; i++) {
        s_slot *s = &sv->slots[i];
        pthread_mutex_lock(&sv->mu); /* the trainer frees slots under mu */
        bool waiting = s->pos >= 0 && !s->ready;
        pthread_mutex_unlock(&sv->mu);
        if (!waiting) continue; /* a waiting slot stays so: only we make it ready */
        if (now - (int64_t)(s->first_sent * 1000) > sv->cfg.timeout_ms) {
            for (int t = 0; t < sv->cfg.n_teachers; t++)
                if (!(s->answered & (1u << t)))
                    return dq_fail(err, DQ_ERR_TIMEOUT, "teacher service '%s' left batch %lld "
                                   "unserved for %lld ms", sv->services[t], (long long)s->b.index,
                                   (long long)sv->cfg.timeout_ms);
        }
        if (s->retry_at_ms == 0 || now < s->retry_at_ms) continue;
        s->retry_at_ms = 0;
        for (int t = 0; t < sv->cfg.n_teachers; t++)
            if (!(s->answered & (1u << t))) DQ_TRY(s_send(sv, s, t, err));
    }
    return DQ_OK;
}

static void *s_reader(void *arg)
{
    s_service *sv = arg;
    dq_status st = DQ_OK;
    dq_err err = {{0}};
    for (;;) {
        pthread_mutex_lock(&sv->mu);
        while (!sv->quit && !sv->running) pthread_cond_wait(&sv->cv, &sv->mu);
        bool quit = sv->quit;
        pthread_mutex_unlock(&sv->mu);
        if (quit) break;
        while (st == DQ_OK && s_produce(sv, &st, &err)) {}
        if (st == DQ_OK) st = s_retry(sv, &err);
        bool idle = true;
        for (int t = 0; t < sv->cfg.n_teachers && st == DQ_OK; t++) {
            if (dq_client_inflight(sv->clients[t]) == 0) continue;
            idle = false;
            dq_client_reply rep;
            dq_status r = dq_client_recv(sv->clients[t], &rep, sv->cfg.n_teachers > 1 ? 5 : 50,
                                         &err);
            if (r == DQ_OK) st = s_take(sv, t, &rep, &err);
            else if (r != DQ_ERR_TIMEOUT) st = r;
        }
        if (st == DQ_OK && idle) {
            /* Nothing in flight: wait for the trainer to free a slot. */
            pthread_mutex_lock(&sv->mu);
            bool busy = false;
            for (int64_t i = 0; i < sv->nslots; i++)
                busy |= sv->slots[i].pos >= 0 && !sv->slots[i].ready;
            if (!busy && !sv->quit && sv->running &&
                (sv->produce >= sv->limit || sv->produce - sv->consume >= sv->K)) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_nsec += 50 * 1000000L;
                if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
                pthread_cond_timedwait(&sv->cv, &sv->mu, &ts);
            }
            pthread_mutex_unlock(&sv->mu);
        }
        if (st != DQ_OK) {
            pthread_mutex_lock(&sv->mu);
            sv->failed = st;
            sv->ferr = err;
            sv->running = false;
            pthread_cond_broadcast(&sv->cv);
            pthread_mutex_unlock(&sv->mu);
            st = DQ_OK;
        }
    }
    return NULL;
}

static dq_status s_start(dq_source_t *base, int64_t epoch, int64_t first, dq_err *err)
{
    (void)err;
    s_service *sv = (s_service *)base;
    pthread_mutex_lock(&sv->mu);
    int64_t at = epoch * sv->nbatches + first;
    /* Where the trainer left off (the next epoch after a whole one): keep
     * what the reader sent ahead. Anywhere else: start afresh there. */
    if (!(sv->running && sv->failed == DQ_OK && sv->consume == at)) {
        for (int64_t i = 0; i < sv->nslots; i++) sv->slots[i].pos = -1;
        sv->produce = sv->consume = at;
    }
    int64_t ahead = sv->produce - at;
    sv->end = (epoch + 1) * sv->nbatches;
    sv->limit = sv->cfg.epochs > epoch + 1 ? sv->cfg.epochs * sv->nbatches : sv->end;
    sv->running = sv->failed == DQ_OK;
    pthread_cond_broadcast(&sv->cv);
    pthread_mutex_unlock(&sv->mu);
    if (ahead > 0 && sv->cfg.log)
        fprintf(sv->cfg.log, "teacher: %lld batches of epoch %lld were sent ahead\n",
                (long long)ahead, (long long)epoch + 1);
    return DQ_OK;
}

static dq_status s_next(dq_source_t *base, dq_train_batch **out, dq_err *err)
{
    s_service *sv = (s_service *)base;
    *out = NULL;
    pthread_mutex_lock(&sv->mu);
    /* The batch handed out last time is done: free its slot. */
    if (sv->consume > 0) {
        s_slot *prev = &sv->slots[(sv->consume - 1) % sv->nslots];
        if (prev->pos == sv->consume - 1 && prev->ready) prev->pos = -1;
    }
    if (sv->consume >= sv->end) {
        pthread_mutex_unlock(&sv->mu);
        return DQ_OK;
    }
    s_slot *s = &sv->slots[sv->consume % sv->nslots];
    pthread_cond_broadcast(&sv->cv);
    while (sv->failed == DQ_OK && !(s->pos == sv->consume && s->ready))
        pthread_cond_wait(&sv->cv, &sv->mu);
    dq_status st = sv->failed;
    if (st != DQ_OK) {
        if (err) *err = sv->ferr;
    } else {
        sv->consume++;
        *out = &s->b;
    }
    pthread_mutex_unlock(&sv->mu);
    return st;
}

static void s_destroy(dq_source_t *base)
{
    s_service *sv = (s_service *)base;
    if (sv->thread_started) {
        pthread_mutex_lock(&sv->mu);
        sv->quit = true;
        pthread_cond_broadcast(&sv->cv);
        pthread_mutex_unlock(&sv->mu);
        pthread_join(sv->thread, NULL);
    }
    pthread_mutex_destroy(&sv->mu);
    pthread_cond_destroy(&sv->cv);
    for (int t = 0; t < DQ_SOURCE_MAX_TEACHERS; t++) dq_client_destroy(&sv->clients[t]);
    for (int64_t i = 0; sv->slots && i < sv->nslots; i++) {
        free(sv->slots[i].b.pix);
        free(sv->slots[i].b.labels);
        free(sv->slots[i].b.teacher);
        free(sv->slots[i].per_teacher);
    }
    free(sv->slots);
    dq_batcher_free(&sv->batcher);
    free(sv);
}

/* Asks teacher t for its output on the first few training samples, before
 * training: an unreachable broker, unknown service or missing output is a
 * clear error now, and the reply fixes the output shape and identity. */
/* The default K for teacher t: the student-broker round trip from stats
 * requests (the fastest of 3), the worker slots from the same stats, and the
 * probe's full-batch round trip (inflight_rule.h). */
static void s_rule(s_service *sv, int t, double probe_ms)
{
    double rtt = 1e9;
    int64_t cap = 0;
    for (int i = 0; i < 3; i++) {
        dq_err e = {{0}};
        char *json = NULL;
        double t0 = dq_now();
        if (dq_client_stats(sv->clients[t], &json, 2000, &e) != DQ_OK) break;
        double ms = (dq_now() - t0) * 1000.0;
        if (ms < rtt) rtt = ms;
        if (i == 0 && dq_inflight_capacity(json, sv->services[t], &cap, &e) != DQ_OK) cap = 0;
        free(json);
    }
    if (rtt > probe_ms) rtt = 0; /* no stats answer: count the probe as work */
    int64_t k = dq_inflight_rule(cap > 0 ? cap : 2, probe_ms, rtt);
    if (k > sv->auto_K) sv->auto_K = k;
    if (sv->cfg.log && sv->cfg.inflight <= 0)
        fprintf(sv->cfg.log, "teacher %s: %lld worker slots, round trip %.1f ms, batch %.1f ms: "
                "--inflight %lld\n", sv->cfg.teachers[t], (long long)cap, rtt, probe_ms,
                (long long)k);
}

static dq_status s_probe(s_service *sv, int t, dq_err *err)
{
    const dq_dataset *ds = sv->cfg.train;
    /* a whole batch: its round trip is what the inflight rule needs */
    int64_t n = ds->n < sv->cfg.batch ? ds->n : sv->cfg.batch;
    const char *outs[1] = {sv->cfg.output};
    dq_client_request r = {.req_id = (uint64_t)1 << 62, .service = sv->services[t],
                           .dtype = DQ_DTYPE_U8, .shape = {n, ds->c, ds->h, ds->w},
                           .data = ds->images, .n_outputs = 1, .outputs = outs};
    int64_t deadline = s_ms() + sv->cfg.timeout_ms;
    for (;;) {
        double sent = dq_now();
        DQ_TRY(dq_client_send(sv->clients[t], &r, err));
        dq_client_reply rep;
        dq_status st;
        do {
            int64_t left = deadline - s_ms();
            st = dq_client_recv(sv->clients[t], &rep, left > 0 ? (int)left : 0, err);
        } while (st == DQ_OK && rep.req_id != r.req_id);
        if (st == DQ_ERR_TIMEOUT)
            return dq_fail(err, DQ_ERR_TIMEOUT, "--teacher %s: no answer within %lld ms (is a "
                           "broker running there?)", sv->cfg.teachers[t],
                           (long long)sv->cfg.timeout_ms);
        DQ_TRY(st);
        if (rep.status == DQ_REPLY_OK) {
            const dq_msg_output *o = rep.n_outputs == 1 ? &rep.outputs[0] : NULL;
            if (!o || o->ndim < 1 || o->shape[0] != n)
                return dq_fail(err, DQ_ERR_PROTO, "--teacher %s: reply without output '%s'",
                               sv->cfg.teachers[t], sv->cfg.output);
            dq_teacher_shape ts = {.output = sv->cfg.output, .ndim = o->ndim - 1, .floats = 1};
            for (int k = 1; k < o->ndim; k++) ts.shape[k - 1] = o->shape[k], ts.floats *= o->shape[k];
            if (ts.ndim > DQ_MAX_DIMS)
                return dq_fail(err, DQ_ERR_PROTO, "--teacher %s: output '%s' has %d dims",
                               sv->cfg.teachers[t], sv->cfg.output, o->ndim);
            if (t == 0) {
                sv->base.tshape = ts;
            } else if (ts.floats != sv->base.tshape.floats || ts.ndim != sv->base.tshape.ndim) {
                return dq_fail(err, DQ_ERR_SHAPE, "--teacher %s: output '%s' differs in shape from "
                               "that of %s", sv->cfg.teachers[t], sv->cfg.output,
                               sv->cfg.teachers[0]);
            }
            if (sv->cfg.log)
                fprintf(sv->cfg.log, "teacher %s: model %s, weights sha256 %.16s..., output %s\n",
                        sv->cfg.teachers[t], rep.teacher->model, rep.teacher->sha256,
                        sv->cfg.output);
            s_rule(sv, t, (dq_now() - sent) * 1000.0);
            return DQ_OK;
        }
        bool retry = rep.status == DQ_REPLY_OVERLOADED || rep.status == DQ_REPLY_TIMEOUT ||
                     rep.status == DQ_REPLY_UNKNOWN_SERVICE;
        if (!retry || s_ms() >= deadline) {
            dq_client_reply_status(&rep, err);
            return dq_fail_prefix(err, rep.status == DQ_REPLY_UNKNOWN_SERVICE ? DQ_ERR_NOT_FOUND
                                  : DQ_ERR_ARG, "--teacher %s: ", sv->cfg.teachers[t]);
        }
        struct timespec ts = {0, 200 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

dq_status dq_source_service_new(dq_source_t **out, const dq_source_config *cfg, dq_err *err)
{
    *out = NULL;
    if (cfg->n_teachers < 1 || cfg->n_teachers > DQ_SOURCE_MAX_TEACHERS || !cfg->output)
        return dq_fail(err, DQ_ERR_ARG, "service source needs 1 to %d teachers and an output",
                       DQ_SOURCE_MAX_TEACHERS);
    s_service *sv = calloc(1, sizeof *sv);
    if (!sv) return dq_fail(err, DQ_ERR_NOMEM, "source: out of memory");
    sv->base.kind = "teacher service";
    sv->base.start = s_start;
    sv->base.next = s_next;
    sv->base.destroy = s_destroy;
    sv->cfg = *cfg;
    int rc = pthread_mutex_init(&sv->mu, NULL);
    if (rc != 0) {
        free(sv);
        return dq_fail(err, DQ_ERR_SYSTEM, "source: pthread_mutex_init: %s", strerror(rc));
    }
    rc = pthread_cond_init(&sv->cv, NULL);
    if (rc != 0) {
        pthread_mutex_destroy(&sv->mu);
        free(sv);
        return dq_fail(err, DQ_ERR_SYSTEM, "source: pthread_cond_init: %s", strerror(rc));
    }
    dq_status st = dq_batcher_init(&sv->batcher, cfg->train, cfg->seed, cfg->batch,
                                   cfg->augment, err);
    sv->nbatches = st == DQ_OK ? dq_batcher_count(&sv->batcher) : 0;
    float wsum = 0;
    for (int t = 0; t < cfg->n_teachers; t++) wsum += cfg->weights[t];
    for (int t = 0; t < cfg->n_teachers && st == DQ_OK; t++) {
        char endpoint[512];
        sv->weights[t] = cfg->weights[t] / wsum;
        st = dq_client_parse_url(cfg->teachers[t], endpoint, sizeof endpoint, sv->services[t],
                                 err);
        if (st != DQ_OK) break;
        dq_client_opts o;
        dq_client_opts_default(&o);
        o.max_inflight = 1024;
        o.log = cfg->log;
        o.name = cfg->client_name;
        o.curve_server_cert = cfg->curve_server_cert;
        o.curve_cert = cfg->curve_cert;
        st = dq_client_new(&sv->clients[t], endpoint, &o, err);
        if (st == DQ_OK) st = s_probe(sv, t, err);
    }
    /* K batches at the teachers: what keeps the pool busy at the measured
     * round trip (inflight_rule.h), unless given; fewer when K + 1 slots
     * would hold more than inflight_bytes. */
    const dq_dataset *ds = cfg->train;
    size_t sz = (size_t)ds->c * (size_t)ds->h * (size_t)ds->w;
    size_t tf = (size_t)(cfg->batch * sv->base.tshape.floats);
    int64_t max_reply = (int64_t)(tf * sizeof(float)) + DQ_CLIENT_REPLY_SLACK;
    int64_t per_slot = (int64_t)((size_t)cfg->batch * (sz * (size_t)(1 + cfg->n_teachers) +
                                                       sizeof(int32_t)) +
                                 tf * sizeof(float) * (size_t)(1 + cfg->n_teachers));
    int64_t budget = cfg->inflight_bytes > 0 ? cfg->inflight_bytes : (int64_t)256 << 20;
    sv->K = cfg->inflight > 0 ? cfg->inflight : sv->auto_K > 0 ? sv->auto_K : 8;
    if ((sv->K + 1) * per_slot > budget) {
        int64_t k = budget / per_slot - 1;
        sv->K = k < 1 ? 1 : k;
        if (cfg->log)
            fprintf(cfg->log, "teacher service: %lld batches in flight (a batch holds %lld "
                    "bytes, --inflight-bytes %lld)\n", (long long)sv->K, (long long)per_slot,
                    (long long)budget);
    }
    for (int t = 0; t < cfg->n_teachers && st == DQ_OK; t++)
        st = dq_client_set_max_msg_bytes(sv->clients[t], max_reply, err);
    sv->nslots = sv->K + 1;
    if (st == DQ_OK) {
        sv->slots = calloc((size_t)sv->nslots, sizeof *sv->slots);
        if (!sv->slots) st = dq_fail(err, DQ_ERR_NOMEM, "source: out of memory");
    }
    for (int64_t i = 0; st == DQ_OK && i < sv->nslots; i++) {
        s_slot *s = &sv->slots[i];
        s->pos = -1;
        s->b.pix = malloc((size_t)cfg->batch * sz);
        s->b.labels = malloc((size_t)cfg->batch * sizeof(int32_t));
        s->b.teacher = malloc(tf * sizeof(float));
        s->per_teacher = malloc(tf * (size_t)cfg->n_teachers * sizeof(float));
        if (!s->b.pix || !s->b.labels || !s->b.teacher || !s->per_teacher)
            st = dq_fail(err, DQ_ERR_NOMEM, "source: out of memory for %lld slots",
                         (long long)sv->nslots);
    }
    if (st == DQ_OK) {
        rc = pthread_create(&sv->thread, NULL, s_reader, sv);
        if (rc != 0)
            st = dq_fail(err, DQ_ERR_SYSTEM, "source: cannot start the reader thread: %s",
                         strerror(rc));
        else
            sv->thread_started = true;
    }
    if (st != DQ_OK) {
        s_destroy(&sv->base);
        return st;
    }
    *out = &sv->base;
    return DQ_OK;
}
