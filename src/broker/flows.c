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
 * stays for its counters until its slot is needed by a new one. Lookup is a
 * scan of the used slots, comparing the service first.
 */
#include "broker/broker_int.h"

#include <string.h>

static uint32_t s_weight(const dq_broker_t *b, const char *name)
{
    for (int i = 0; i < b->cfg.n_shares; i++)
        if (strcmp(b->cfg.shares[i].name, name) == 0) return b->cfg.shares[i].weight;
    return 1;
}

int32_t dq_bflow_get(dq_broker_t *b, int32_t svc, const char *name)
{
    int32_t free_slot = -1, idle = -1;
    for (int32_t i = 0; i < b->flow_hi; i++) {
        const dq_bflow *f = &b->flows[i];
        if (!f->used) {
            if (free_slot < 0) free_slot = i;
            continue;
        }
        if (f->service == svc && strcmp(f->name, name) == 0) return i;
        if (idle < 0 && f->refs == 0) idle = i;
    }
    if (free_slot < 0 && b->flow_hi < b->cfg.max_clients) free_slot = b->flow_hi;
    if (free_slot < 0) free_slot = idle;
    if (free_slot < 0) return -1;
    dq_bflow *f = &b->flows[free_slot];
    memset(f, 0, sizeof *f);
    f->used = true;
    f->service = svc;
    f->prev = f->next = -1;
    f->weight = s_weight(b, name);
    dq_blist_init(&f->queue);
    snprintf(f->name, sizeof f->name, "%s", name);
    if (free_slot >= b->flow_hi) b->flow_hi = free_slot + 1;
    return free_slot;
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
