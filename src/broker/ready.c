/* ready.c - which worker of a service gets the next request, in O(1).
 *
 * Dispatch gives the head of a service's queue to the live, non-draining
 * worker with the most free credits, so that work spreads over idle workers
 * before any worker gets a second request. A scan for that worker on every
 * dispatch made the broker's cost per request grow with its worker count
 * (issue 13). Instead each service keeps its workers in levels by free
 * credits: level l is an intrusive list (links in the worker) of the
 * workers with l free credits, and `top` is the highest non-empty level. A
 * dispatch takes the head of level `top` and moves it to the back of the
 * level below; a reply moves its worker one level up, to the back. Within a
 * level workers are served in the order they entered it: the least
 * recently used first among equals, as the ZeroMQ guide's LRU queue does.
 *
 * Capacities go to 65,535, so levels are capped: the top level
 * (DQ_BREADY_LEVELS - 1) holds every worker with that many free credits or
 * more, in round robin. Finding the new `top` when a level empties walks
 * down at most DQ_BREADY_LEVELS levels: a constant, not the worker count.
 * A worker with no free credit, draining or gone is in no level.
 */
#include "broker/broker_int.h"

static uint8_t s_level(const dq_bworker *w)
{
    if (!w->used || w->draining || w->in_flight >= w->capacity) return 0;
    uint32_t fr = w->capacity - w->in_flight;
    return (uint8_t)(fr < DQ_BREADY_LEVELS - 1 ? fr : DQ_BREADY_LEVELS - 1);
}

static void s_unlink(dq_broker_t *b, int32_t w)
{
    dq_bworker *wk = &b->workers[w];
    if (wk->level == 0) return;
    dq_bservice *s = &b->services[wk->service];
    dq_bwlist *l = &s->ready[wk->level];
    if (wk->lprev >= 0) b->workers[wk->lprev].lnext = wk->lnext;
    else l->head = wk->lnext;
    if (wk->lnext >= 0) b->workers[wk->lnext].lprev = wk->lprev;
    else l->tail = wk->lprev;
    wk->lprev = wk->lnext = -1;
    if (wk->level == s->top)
        while (s->top > 0 && s->ready[s->top].head < 0) s->top--;
    wk->level = 0;
}

static void s_link_back(dq_broker_t *b, int32_t w, uint8_t level)
{
    dq_bworker *wk = &b->workers[w];
    dq_bservice *s = &b->services[wk->service];
    dq_bwlist *l = &s->ready[level];
    wk->level = level;
    wk->lnext = -1;
    wk->lprev = l->tail;
    if (l->tail >= 0) b->workers[l->tail].lnext = w;
    else l->head = w;
    l->tail = w;
    if (level > s->top) s->top = level;
}

void dq_bready_update(dq_broker_t *b, int32_t w, bool dispatched)
{
    dq_bworker *wk = &b->workers[w];
    uint8_t level = s_level(wk);
    if (level == wk->level && !dispatched) return;
    s_unlink(b, w);
    if (level > 0) s_link_back(b, w, level);
}

int32_t dq_bready_pick(const dq_broker_t *b, int32_t svc)
{
    const dq_bservice *s = &b->services[svc];
    return s->top > 0 ? s->ready[s->top].head : -1;
}

void dq_bready_init_service(dq_bservice *s)
{
    for (int l = 0; l < DQ_BREADY_LEVELS; l++) s->ready[l].head = s->ready[l].tail = -1;
    s->top = 0;
    s->members = -1;
}
