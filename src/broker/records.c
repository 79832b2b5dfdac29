/* records.c - the broker's request records: pool, intrusive lists, the
 * (client id, req_id) hash and tickets.
 *
 * The pool is one array; every list (free list, each service's FIFO, each
 * worker's held list) links records by index, so queueing, dispatching and
 * requeueing are O(1) pointer moves with no allocation. The hash is linear
 * probing over a power-of-two table at least twice the pool, with backward
 * shift deletion (no tombstones, so it never degrades). A ticket is
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
    uint32_t hsize = 16;
    while (hsize < 2 * (uint32_t)n) hsize *= 2;
    b->hash = malloc(hsize * sizeof *b->hash);
    if (!b->rec || !b->req || !b->hash)
        return dq_fail(err, DQ_ERR_NOMEM, "broker: cannot allocate %lld request records",
                       (long long)n);
    b->hash_mask = hsize - 1;
    for (uint32_t i = 0; i < hsize; i++) b->hash[i] = -1;
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
    free(b->hash);
    b->rec = NULL;
    b->hash = NULL;
}

int32_t dq_brec_alloc(dq_broker_t *b)
{
    return dq_blist_pop_front(b, &b->free_list);
}

/* FNV-1a over the client id, then the req_id bytes. */
static uint32_t s_hash(const uint8_t *cid, size_t len, uint64_t req_id)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) h = (h ^ cid[i]) * 1099511628211ull;
    for (int i = 0; i < 8; i++) h = (h ^ ((req_id >> (8 * i)) & 0xff)) * 1099511628211ull;
    return (uint32_t)(h ^ (h >> 32));
}

static bool s_same(const dq_brec *x, const uint8_t *cid, size_t len, uint64_t req_id)
{
    return x->req_id == req_id && x->cid_len == len && memcmp(x->cid, cid, len) == 0;
}

int32_t dq_brec_find(const dq_broker_t *b, const uint8_t *cid, size_t cid_len, uint64_t req_id)
{
    uint32_t i = s_hash(cid, cid_len, req_id) & b->hash_mask;
    for (;;) {
        int32_t r = b->hash[i];
        if (r < 0) return -1;
        if (s_same(&b->rec[r], cid, cid_len, req_id)) return r;
        i = (i + 1) & b->hash_mask;
    }
}

void dq_brec_hash_insert(dq_broker_t *b, int32_t r)
{
    const dq_brec *x = &b->rec[r];
    uint32_t i = s_hash(x->cid, x->cid_len, x->req_id) & b->hash_mask;
    while (b->hash[i] >= 0) i = (i + 1) & b->hash_mask;
    b->hash[i] = r;
}

static void s_hash_remove(dq_broker_t *b, int32_t r)
{
    const dq_brec *x = &b->rec[r];
    uint32_t i = s_hash(x->cid, x->cid_len, x->req_id) & b->hash_mask;
    while (b->hash[i] != r) {
        if (b->hash[i] < 0) return; /* not hashed */
        i = (i + 1) & b->hash_mask;
    }
    /* Backward shift: pull later members of the probe run into the hole. */
    uint32_t hole = i;
    for (uint32_t j = (i + 1) & b->hash_mask; b->hash[j] >= 0; j = (j + 1) & b->hash_mask) {
        const dq_brec *y = &b->rec[b->hash[j]];
        uint32_t home = s_hash(y->cid, y->cid_len, y->req_id) & b->hash_mask;
        /* y may move to hole iff home is not cyclically in (hole, j]. */
        bool in_range = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!in_range) {
            b->hash[hole] = b->hash[j];
            hole = j;
        }
    }
    b->hash[hole] = -1;
}

void dq_brec_release(dq_broker_t *b, int32_t r)
{
    dq_brec *x = &b->rec[r];
    s_hash_remove(b, r);
    dq_budget_give(b, r);
    zmq_msg_close(&x->body);
    zmq_msg_init(&x->body);
    x->state = REC_FREE;
    x->worker = -1;
    if (x->flow >= 0) b->flows[x->flow].refs--;
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
