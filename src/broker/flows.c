/* flows.c - fair sharing: one queue per client inside each service, served
 * by weighted round robin.
 *
 * With one FIFO per service, a student keeping 64 batches in flight has 64
 * requests ahead of a student keeping 2, so the light one waits for the
 * greedy one's whole backlog at every step. Instead each (service, client)
 * pair has its own queue, a "flow"; a flow with queued requests sits in its
 * service's ring, and the service's cursor (rr) serves up to `weight`
 * requests from the flow whose turn it is before moving on (weights from
 * --share NAME=W, default 1). A newcomer joins the ring just behind the
 * cursor, i.e. at the end of the current round. A flow that runs empty
 * leaves the ring and loses the rest of its turn (it had nothing to send),
 * so an idle student builds up no credit.
 *
 * The client's name is its CURVE key name when the broker authenticates
 * (it cannot be forged), else the optional "client" field of its requests,
 * else its routing id ("#" + hex): a client that names itself shares its
 * weight across its connections.
 *
 * Flows live in a fixed table (--max-clients): a flow no record refers to
 * is idle and stays for its counters until its slot is needed by a new one,
 * the longest idle first (an LRU list: refs going to 0 puts a flow at its
 * back, going to 1 takes it out). Lookup is by index.c's hash over
 * (service, name), seeded with the broker's epoch since clients choose
 * their names; each service links its own flows, for the rare walks over
 * one service's flows (a new identity, a reclaimed service). No request
 * scans the table.
 */
#include "broker/broker_int.h"

#include <string.h>

static uint32_t s_weight(const dq_broker_t *b, const char *name)
{
    for (int i = 0; i < b->cfg.n_shares; i++)
        if (strcmp(b->cfg.shares[i].name, name) == 0) return b->cfg.shares[i].weight;
    return 1;
}

typedef struct {
    int32_t svc;
    const char *name;
} s_key;

static uint32_t s_hash(const dq_broker_t *b, int32_t svc, const char *name)
{
    return dq_bix_hash(name, strlen(name), b->epoch ^ ((uint64_t)(uint32_t)svc << 32));
}

static bool s_eq(const void *ctx, int32_t fi, const void *key)
{
    const dq_bflow *f = &((const dq_broker_t *)ctx)->flows[fi];
    const s_key *k = key;
    return f->service == k->svc && strcmp(f->name, k->name) == 0;
}

dq_status dq_bflow_init(dq_broker_t *b, dq_err *err)
{
    b->flow_free = b->idle_head = b->idle_tail = -1;
    return dq_bix_init(&b->flow_ix, b->cfg.max_clients, "client", err);
}

void dq_bflow_fini(dq_broker_t *b)
{
    dq_bix_free(&b->flow_ix);
}

/* ---- the idle list ---------------------------------------------------------- */

static void s_idle_push(dq_broker_t *b, int32_t fi)
{
    dq_bflow *f = &b->flows[fi];
    f->inext = -1;
    f->iprev = b->idle_tail;
    if (b->idle_tail >= 0) b->flows[b->idle_tail].inext = fi;
    else b->idle_head = fi;
    b->idle_tail = fi;
}

static void s_idle_remove(dq_broker_t *b, int32_t fi)
{
    dq_bflow *f = &b->flows[fi];
    if (f->iprev >= 0) b->flows[f->iprev].inext = f->inext;
    else b->idle_head = f->inext;
    if (f->inext >= 0) b->flows[f->inext].iprev = f->iprev;
    else b->idle_tail = f->iprev;
    f->iprev = f->inext = -1;
}

void dq_bflow_ref(dq_broker_t *b, int32_t fi)
{
    if (b->flows[fi].refs++ == 0) s_idle_remove(b, fi);
}

void dq_bflow_unref(dq_broker_t *b, int32_t fi)
{
    if (--b->flows[fi].refs == 0) s_idle_push(b, fi);
}

/* ---- the table ---------------------------------------------------------------- */

/* Takes idle flow fi out of the index, the idle list and its service's
 * flows; the slot keeps `used` (the caller reuses or frees it). */
static void s_forget(dq_broker_t *b, int32_t fi)
{
    dq_bflow *f = &b->flows[fi];
    dq_bservice *s = &b->services[f->service];
    dq_bix_del(&b->flow_ix, f->hash, fi);
    s_idle_remove(b, fi);
    if (f->sprev >= 0) b->flows[f->sprev].snext = f->snext;
    else s->flows = f->snext;
    if (f->snext >= 0) b->flows[f->snext].sprev = f->sprev;
}

void dq_bflow_drop_service(dq_broker_t *b, int32_t svc)
{
    while (b->services[svc].flows >= 0) {
        int32_t fi = b->services[svc].flows;
        s_forget(b, fi);
        b->flows[fi].used = false;
        b->flows[fi].inext = b->flow_free;
        b->flow_free = fi;
    }
}

int32_t dq_bflow_get(dq_broker_t *b, int32_t svc, const char *name)
{
    uint32_t h = s_hash(b, svc, name);
    s_key k = {svc, name};
    int32_t fi = dq_bix_find(&b->flow_ix, h, s_eq, b, &k);
    if (fi >= 0) return fi;
    if (b->flow_free >= 0) {
        fi = b->flow_free;
        b->flow_free = b->flows[fi].inext;
    } else if (b->flow_hi < b->cfg.max_clients) {
        fi = b->flow_hi++;
    } else if (b->idle_head >= 0) {
        fi = b->idle_head;
        s_forget(b, fi);
    } else {
        return -1;
    }
    dq_bflow *f = &b->flows[fi];
    memset(f, 0, sizeof *f);
    f->used = true;
    f->service = svc;
    f->prev = f->next = -1;
    f->weight = s_weight(b, name);
    dq_blist_init(&f->queue);
    snprintf(f->name, sizeof f->name, "%s", name);
    f->hash = h;
    dq_bix_put(&b->flow_ix, h, fi);
    dq_bservice *s = &b->services[svc];
    f->sprev = -1;
    f->snext = s->flows;
    if (s->flows >= 0) b->flows[s->flows].sprev = fi;
    s->flows = fi;
    s_idle_push(b, fi); /* nothing names it yet */
    return fi;
}

/* ---- the ring -------------------------------------------------------------- */

static void s_link(dq_broker_t *b, int32_t fi)
{
    dq_bflow *f = &b->flows[fi];
    dq_bservice *s = &b->services[f->service];
    if (f->in_ring) return;
    f->in_ring = true;
    if (s->rr < 0) {
        f->prev = f->next = fi;
        f->credit = f->weight;
        s->rr = fi;
        return;
    }
    /* Just behind the cursor: the end of the current round. */
    int32_t head = s->rr, tail = b->flows[head].prev;
    f->next = head;
    f->prev = tail;
    b->flows[tail].next = fi;
    b->flows[head].prev = fi;
    f->credit = f->weight;
}

/* Moves the cursor to the next flow and starts its turn. */
static void s_advance(dq_broker_t *b, dq_bservice *s)
{
    s->rr = b->flows[s->rr].next;
    b->flows[s->rr].credit = b->flows[s->rr].weight;
}

static void s_unlink(dq_broker_t *b, int32_t fi)
{
    dq_bflow *f = &b->flows[fi];
    dq_bservice *s = &b->services[f->service];
    if (!f->in_ring) return;
    f->in_ring = false;
    if (f->next == fi) {
        s->rr = -1;
    } else {
        if (s->rr == fi) s_advance(b, s);
        b->flows[f->prev].next = f->next;
        b->flows[f->next].prev = f->prev;
    }
    f->prev = f->next = -1;
}

/* ---- queueing -------------------------------------------------------------- */

void dq_bflow_push_back(dq_broker_t *b, int32_t r)
{
    dq_brec *x = &b->rec[r];
    dq_blist_push_back(b, &b->flows[x->flow].queue, r);
    b->services[x->service].queued++;
    s_link(b, x->flow);
}

void dq_bflow_push_front(dq_broker_t *b, int32_t r)
{
    dq_brec *x = &b->rec[r];
    dq_blist_push_front(b, &b->flows[x->flow].queue, r);
    b->services[x->service].queued++;
    s_link(b, x->flow);
}

void dq_bflow_remove(dq_broker_t *b, int32_t r)
{
    dq_brec *x = &b->rec[r];
    dq_bflow *f = &b->flows[x->flow];
    dq_blist_remove(b, &f->queue, r);
    b->services[x->service].queued--;
    if (f->queue.count == 0) s_unlink(b, x->flow);
}

int32_t dq_bflow_peek(dq_broker_t *b, int32_t svc)
{
    dq_bservice *s = &b->services[svc];
    if (s->rr < 0) return -1;
    if (b->flows[s->rr].credit == 0) s_advance(b, s);
    return b->flows[s->rr].queue.head;
}

void dq_bflow_take(dq_broker_t *b, int32_t r)
{
    dq_bflow *f = &b->flows[b->rec[r].flow];
    if (f->credit > 0) f->credit--;
    f->dispatched++;
    dq_bflow_remove(b, r);
}
