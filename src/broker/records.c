/* records.c - the broker's request records: pool, intrusive lists, the
 * (client id, req_id) hash and tickets.
 *
 * The pool is one array; every list (free list, each service's FIFO, each
 * worker's held list) links records by index, so queueing, dispatching and
 * requeueing are O(1) pointer moves with no allocation. The (client id,
 * req_id) hash is index.c's over a table at least twice the pool. A ticket is
 * (broker epoch, slot, generation): the generation changes on each dispatch
 * so a reply to an earlier dispatch of the same slot - from a worker
 * declared dead, or from before a broker restart - matches nothing.
 */
#include "broker/broker_int.h"

#include <stdlib.h>
#include <string.h>

void dq_blist_init(dq_blist *l)
{
    l->head = l->tail = -1;
    l->count = 0;
}

void dq_blist_push_back(dq_broker_t *b, dq_blist *l, int32_t r)
{
    dq_brec *x = &b->rec[r];
    x->prev = l->tail;
    x->next = -1;
    if (l->tail >= 0) b->rec[l->tail].next = r;
    else l->head = r;
    l->tail = r;
    l->count++;
}

void dq_blist_push_front(dq_broker_t *b, dq_blist *l, int32_t r)
{
    dq_brec *x = &b->rec[r];
    x->next = l->head;
    x->prev = -1;
    if (l->head >= 0) b->rec[l->head].prev = r;
    else l->tail = r;
    l->head = r;
    l->count++;
}

void dq_blist_remove(dq_broker_t *b, dq_blist *l, int32_t r)
{
    dq_brec *x = &b->rec[r];
    if (x->prev >= 0) b->rec[x->prev].next = x->next;
    else l->head = x->next;
    if (x->next >= 0) b->rec[x->next].prev = x->prev;
    else l->tail = x->prev;
    x->prev = x->next = -1;
    l->count--;
}

int32_t dq_blist_pop_front(dq_broker_t *b, dq_blist *l)
{
    int32_t r = l->head;
    if (r >= 0) dq_blist_remove(b, l, r);
    return r;
}

int32_t dq_blist_pop_back(dq_broker_t *b, dq_blist *l)
{
    int32_t r = l->tail;
    if (r >= 0) dq_blist_remove(b, l, r);
    return r;
}

/* ---- pool ------------------------------------------------------------------- */

dq_status dq_brec_init(dq_broker_t *b, dq_err *err)
{
    int64_t n = (int64_t)b->max_queued + b->cfg.max_inflight;
    if (n < 1 || n > (1 << 24))
        return dq_fail(err, DQ_ERR_ARG, "broker: max-queue + max-inflight must be 1..%d", 1 << 24);
    b->n_rec = (int32_t)n;
    b->rec = calloc((size_t)n, sizeof *b->rec);
    b->req = calloc((size_t)n, sizeof *b->req);
    if (!b->rec || !b->req)
        return dq_fail(err, DQ_ERR_NOMEM, "broker: cannot allocate %lld request records",
                       (long long)n);
    DQ_TRY(dq_bix_init(&b->rec_ix, n, "request", err));
    dq_blist_init(&b->free_list);
    for (int32_t i = 0; i < b->n_rec; i++) {
        b->rec[i].worker = -1;
        b->rec[i].flow = -1;
        zmq_msg_init(&b->rec[i].body);
        dq_blist_push_back(b, &b->free_list, i);
    }
    return DQ_OK;
}

void dq_brec_fini(dq_broker_t *b)
{
    if (b->rec)
        for (int32_t i = 0; i < b->n_rec; i++) zmq_msg_close(&b->rec[i].body);
    free(b->rec);
    free(b->req);
    dq_bix_free(&b->rec_ix);
    b->rec = NULL;
    b->req = NULL;
}

int32_t dq_brec_alloc(dq_broker_t *b)
{
    return dq_blist_pop_front(b, &b->free_list);
}

typedef struct {
    const uint8_t *cid;
    size_t len;
    uint64_t req_id;
} s_key;

/* Over the client id, seeded with the req_id and the broker's epoch (both
 * chosen by others: the epoch keeps colliding keys from being prepared). */
static uint32_t s_hash(const dq_broker_t *b, const uint8_t *cid, size_t len, uint64_t req_id)
{
    return dq_bix_hash(cid, len, b->epoch ^ (req_id * 0x9e3779b97f4a7c15ull));
}

static uint32_t s_hash_of(const dq_broker_t *b, int32_t r)
{
    const dq_brec *x = &b->rec[r];
    return s_hash(b, x->cid, x->cid_len, x->req_id);
}

static bool s_eq(const void *ctx, int32_t r, const void *key)
{
    const dq_brec *x = &((const dq_broker_t *)ctx)->rec[r];
    const s_key *k = key;
    return x->req_id == k->req_id && x->cid_len == k->len &&
           memcmp(x->cid, k->cid, k->len) == 0;
}

int32_t dq_brec_find(const dq_broker_t *b, const uint8_t *cid, size_t cid_len, uint64_t req_id)
{
    s_key k = {cid, cid_len, req_id};
    return dq_bix_find(&b->rec_ix, s_hash(b, cid, cid_len, req_id), s_eq, b, &k);
}

void dq_brec_hash_insert(dq_broker_t *b, int32_t r)
{
    dq_bix_put(&b->rec_ix, s_hash_of(b, r), r);
}

void dq_brec_release(dq_broker_t *b, int32_t r)
{
    dq_brec *x = &b->rec[r];
    dq_bix_del(&b->rec_ix, s_hash_of(b, r), r);
    dq_budget_give(b, r);
    zmq_msg_close(&x->body);
    zmq_msg_init(&x->body);
    x->state = REC_FREE;
    x->worker = -1;
    if (x->flow >= 0) dq_bflow_unref(b, x->flow);
    x->flow = -1;
    dq_blist_push_back(b, &b->free_list, r);
}

void dq_brec_ticket(const dq_broker_t *b, int32_t r, uint8_t *t)
{
    uint32_t slot = (uint32_t)r, gen = b->rec[r].gen;
    memcpy(t, &b->epoch, 8);
    memcpy(t + 8, &slot, 4);
    memcpy(t + 12, &gen, 4);
}

int32_t dq_brec_from_ticket(const dq_broker_t *b, const void *t, size_t len, int32_t w)
{
    if (len != S_TICKET_LEN) return -1;
    uint64_t epoch;
    uint32_t slot, gen;
    memcpy(&epoch, t, 8);
    memcpy(&slot, (const uint8_t *)t + 8, 4);
    memcpy(&gen, (const uint8_t *)t + 12, 4);
    if (epoch != b->epoch || slot >= (uint32_t)b->n_rec) return -1;
    const dq_brec *x = &b->rec[slot];
    if (x->state != REC_INFLIGHT || x->gen != gen || x->worker != w) return -1;
    return (int32_t)slot;
}
