/* workers.c - the broker's worker table: join, leave, death and the sends
 * that tell a worker about them.
 *
 * A worker is known by its routing id from the moment its `ready` is
 * accepted (dq_broker_add_worker) until it says goodbye, re-announces,
 * becomes unreachable, or is silent for liveness x heartbeat
 * (dq_broker_purge). Forgetting a worker (dq_broker_remove_worker) requeues
 * what it held at the head of its service's queue, oldest first, so the FIFO
 * order of a service survives worker deaths.
 *
 * Slots come from a free list; a live worker is in its service's member
 * list (for the service's max_batch when a worker joins or leaves) and in
 * its ready level (ready.c): joining and leaving cost O(workers of that
 * service) at most, and no request looks at any worker but the one it goes
 * to.
 *
 * This file owns the worker life cycle and nothing else: it never
 * dispatches. Whoever removes a worker dispatches its service afterwards
 * (broker.c for messages and ticks, dispatch.c when a send fails), so calls
 * only point down: broker.c -> dispatch.c -> workers.c -> records.c.
 */
#include "broker/broker_int.h"

#include <stdlib.h>
#include <string.h>

static void s_service_limits(dq_broker_t *b, int32_t svc);

dq_status dq_broker_workers_init(dq_broker_t *b, dq_err *err)
{
    b->workers = calloc((size_t)b->cfg.max_workers, sizeof *b->workers);
    if (!b->workers) return dq_fail(err, DQ_ERR_NOMEM, "broker: cannot allocate the worker table");
    b->worker_free = -1;
    for (int32_t i = b->cfg.max_workers - 1; i >= 0; i--) { /* slot 0 first */
        b->workers[i].mnext = b->worker_free;
        b->worker_free = i;
    }
    return dq_bwindex_init(b, err);
}

void dq_broker_workers_fini(dq_broker_t *b)
{
    free(b->workers);
    b->workers = NULL;
    dq_bwindex_free(b);
}

/* Its service's member list. */
static void s_join(dq_broker_t *b, int32_t w)
{
    dq_bworker *wk = &b->workers[w];
    dq_bservice *s = &b->services[wk->service];
    wk->mprev = -1;
    wk->mnext = s->members;
    if (s->members >= 0) b->workers[s->members].mprev = w;
    s->members = w;
}

static void s_leave(dq_broker_t *b, int32_t w)
{
    dq_bworker *wk = &b->workers[w];
    dq_bservice *s = &b->services[wk->service];
    if (wk->mprev >= 0) b->workers[wk->mprev].mnext = wk->mnext;
    else s->members = wk->mnext;
    if (wk->mnext >= 0) b->workers[wk->mnext].mprev = wk->mprev;
}

void dq_broker_send_worker(dq_broker_t *b, const uint8_t *id, size_t len, const void *body,
                           size_t body_len)
{
    const void *data[2] = {id, body};
    size_t lens[2] = {len, body_len};
    if (dq_wire_send(b->backend, 2, data, lens, ZMQ_DONTWAIT, NULL) != DQ_OK)
        b->n_worker_send_failed++; /* gone or not reading: purge finds out */
}

static void s_send_msg(dq_broker_t *b, const uint8_t *id, size_t len, const dq_msg_buf *body)
{
    dq_broker_send_worker(b, id, len, body->data, body->len);
}

void dq_broker_reannounce(dq_broker_t *b, const uint8_t *id, size_t len)
{
    dq_msg_buf_reset(&b->out);
    if (dq_msg_encode_simple(&b->out, DQ_MSG_REANNOUNCE, NULL) == DQ_OK)
        s_send_msg(b, id, len, &b->out);
}

void dq_broker_disconnect(dq_broker_t *b, const uint8_t *id, size_t len, const char *why)
{
    dq_msg_buf_reset(&b->out);
    if (dq_msg_encode_disconnect(&b->out, why, true, NULL) == DQ_OK)
        s_send_msg(b, id, len, &b->out);
}

void dq_broker_remove_worker(dq_broker_t *b, int32_t w, const char *why, int64_t now)
{
    dq_bworker *wk = &b->workers[w];
    dq_bservice *s = &b->services[wk->service];
    int n = wk->held.count;
    int32_t r;
    /* From the newest back, each to the front: the oldest ends up first. */
    while ((r = dq_blist_pop_back(b, &wk->held)) >= 0) {
        dq_brec *x = &b->rec[r];
        x->state = REC_QUEUED;
        x->worker = -1;
        x->deadline_ms = now + b->cfg.request_timeout_ms;
        dq_bflow_push_front(b, r);
        b->queued++;
        b->inflight--;
    }
    wk->requeues += (uint64_t)n;
    s->requeues += (uint64_t)n;
    dq_bwindex_del(b, w);
    wk->used = false;
    wk->in_flight = 0;
    dq_bready_update(b, w, false); /* out of its ready level */
    s_leave(b, w);
    wk->mnext = b->worker_free;
    b->worker_free = w;
    while (b->worker_hi > 0 && !b->workers[b->worker_hi - 1].used) b->worker_hi--;
    s->n_workers--;
    b->n_workers--;
    s_service_limits(b, wk->service);
    dq_broker_log(b, "worker %s %s; service '%s' (served %llu) has %d live workers", wk->id_hex,
                  why, s->name, (unsigned long long)wk->served, s->n_workers);
    if (n > 0)
        dq_broker_log(b, "requeued %d requests of worker %s at the head of '%s' (%d queued)", n,
                      wk->id_hex, s->name, s->queued);
}

/* How long worker w has held its oldest request (0 if none): the held list
 * is in dispatch order. */
static int64_t s_held_for(const dq_broker_t *b, const dq_bworker *w, int64_t now)
{
    return w->held.head >= 0 ? now - b->rec[w->held.head].dispatched_ms : 0;
}

int dq_broker_purge(dq_broker_t *b, int64_t now)
{
    int64_t limit = (int64_t)b->cfg.liveness * b->cfg.heartbeat_ms;
    int64_t stuck = b->cfg.service_timeout_ms;
    int removed = 0;
    for (int32_t i = 0; i < b->worker_hi; i++) {
        dq_bworker *w = &b->workers[i];
        if (!w->used) continue;
        char why[96];
        if (stuck > 0 && s_held_for(b, w, now) > stuck) {
            /* Alive (it heartbeats) but not answering: its work goes to
             * others, and it is told to re-join afresh; any reply it sends
             * later carries a stale ticket and is dropped. */
            snprintf(why, sizeof why, "is stuck (held a request for %lld ms)",
                     (long long)s_held_for(b, w, now));
            dq_broker_disconnect(b, w->id, w->id_len,
                                 "stuck: a request held past --service-timeout-ms");
        } else if (now - w->last_seen_ms > limit) {
            snprintf(why, sizeof why, "died (silent for %lld ms)",
                     (long long)(now - w->last_seen_ms));
        } else {
            continue;
        }
        dq_broker_remove_worker(b, i, why, now);
        removed++;
    }
    return removed;
}

/* Why a (new worker's) announce differs from the live workers', or NULL. */
static const char *s_identity_diff(const dq_msg_ready *a, const dq_msg_ready *live, char *why,
                                   size_t cap)
{
    if (strcmp(a->teacher.model, live->teacher.model) || strcmp(a->teacher.sha256, live->teacher.sha256))
        snprintf(why, cap, "model %s (sha256 %.12s) differs from the live workers' %s (%.12s)",
                 a->teacher.model, a->teacher.sha256, live->teacher.model, live->teacher.sha256);
    else if (memcmp(a->input, live->input, sizeof a->input) || a->dtypes != live->dtypes)
        snprintf(why, cap, "input shape or dtypes differ from the live workers'");
    else if (a->n_norm && live->n_norm &&
             (memcmp(a->mean, live->mean, (size_t)a->n_norm * sizeof a->mean[0]) ||
              memcmp(a->std, live->std, (size_t)a->n_norm * sizeof a->std[0])))
        snprintf(why, cap, "input normalisation (mean/std) differs from the live workers'");
    else if (a->n_outputs != live->n_outputs)
        snprintf(why, cap, "%d outputs, live workers have %d", a->n_outputs, live->n_outputs);
    else {
        for (int i = 0; i < a->n_outputs; i++) {
            const dq_msg_output_spec *x = &a->outputs[i], *y = &live->outputs[i];
            if (strcmp(x->name, y->name) || x->ndim != y->ndim ||
                memcmp(x->shape, y->shape, (size_t)x->ndim * sizeof x->shape[0])) {
                snprintf(why, cap, "output '%s' differs from the live workers'", x->name);
                return why;
            }
        }
        return NULL;
    }
    return why;
}

/* A capacity limit is not an identity: workers of one service may announce
 * different max_batch (and capacity). The service takes the least non-zero
 * max_batch of its live workers, so any of them can serve what it accepts;
 * recomputed whenever a worker joins or leaves. A worker that announces a
 * normalisation teaches it to a service whose first workers did not. */
static void s_service_limits(dq_broker_t *b, int32_t svc)
{
    dq_bservice *s = &b->services[svc];
    uint32_t mb = 0;
    for (int32_t i = s->members; i >= 0; i = b->workers[i].mnext) {
        const dq_bworker *w = &b->workers[i];
        if (w->max_batch && (mb == 0 || w->max_batch < mb)) mb = w->max_batch;
    }
    if (s->n_workers > 0) s->identity.max_batch = mb;
}

int32_t dq_broker_add_worker(dq_broker_t *b, int32_t svc, const uint8_t *id, size_t len,
                             const char *name, const dq_msg_ready *rd, int64_t now)
{
    char hex[24 + DQ_CURVE_NAME_MAX + 1], why[DQ_MSG_ERROR_MAX + 1], raw[24];
    dq_wire_id_hex(id, len, raw, sizeof raw);
    if (name && name[0]) snprintf(hex, sizeof hex, "%.64s@%s", name, raw);
    else snprintf(hex, sizeof hex, "%s", raw);
    dq_bservice *s = &b->services[svc];
    if (s->n_workers > 0 && s_identity_diff(rd, &s->identity, why, sizeof why)) {
        dq_broker_log(b, "rejected worker %s for '%s': %s", hex, s->name, why);
        dq_broker_disconnect(b, id, len, why);
        return -1;
    }
    int32_t slot = b->worker_free;
    if (slot < 0) {
        snprintf(why, sizeof why, "broker full (%d workers)", b->cfg.max_workers);
        dq_broker_log(b, "rejected worker %s for '%s': %s", hex, s->name, why);
        dq_broker_disconnect(b, id, len, why);
        return -1;
    }
    dq_bworker *wk = &b->workers[slot];
    b->worker_free = wk->mnext;
    memset(wk, 0, sizeof *wk);
    if (slot >= b->worker_hi) b->worker_hi = slot + 1;
    wk->used = true;
    wk->id_len = (uint8_t)len;
    memcpy(wk->id, id, len);
    dq_bwindex_put(b, slot);
    memcpy(wk->id_hex, hex, sizeof wk->id_hex);
    snprintf(wk->name, sizeof wk->name, "%s", name ? name : "");
    wk->service = svc;
    wk->capacity = rd->capacity;
    wk->max_batch = rd->max_batch;
    wk->last_seen_ms = wk->joined_ms = now;
    wk->lprev = wk->lnext = -1;
    dq_blist_init(&wk->held);
    if (s->n_workers == 0) {
        /* A (possibly new) identity: queued requests are checked at dispatch. */
        s->identity = *rd;
        s->has_identity = true;
        for (int32_t fi = s->flows; fi >= 0; fi = b->flows[fi].snext)
            for (int32_t r = b->flows[fi].queue.head; r >= 0; r = b->rec[r].next)
                b->rec[r].checked = false;
    }
    else if (rd->n_norm && !s->identity.n_norm) {
        s->identity.n_norm = rd->n_norm;
        memcpy(s->identity.mean, rd->mean, sizeof rd->mean);
        memcpy(s->identity.std, rd->std, sizeof rd->std);
    }
    s->n_workers++;
    b->n_workers++;
    s_join(b, slot);
    dq_bready_update(b, slot, false);
    s_service_limits(b, svc);
    dq_broker_log(b, "worker %s joined '%s' (model %s, sha256 %.12s, capacity %u); %d live", hex,
                  s->name, rd->teacher.model, rd->teacher.sha256, rd->capacity, s->n_workers);
    return slot;
}
