/* worker_index.c - routing id -> worker slot, so that a worker's message
 * (reply, heartbeat, drain) finds its slot in O(1) instead of a scan over
 * every worker (issue 13: a broker for hundreds of workers).
 *
 * The hash index of index.c over a table at least twice max_workers; the
 * key bytes live in the worker table itself (workers[slot].id). Routing ids
 * are made by libzmq (or set by the worker), so the hash is unseeded: the
 * index must work on a broker assembled by hand (tests/test_broker_index).
 */
#include "broker/broker_int.h"

#include <string.h>

typedef struct {
    const uint8_t *id;
    size_t len;
} s_key;

static uint32_t s_hash(const uint8_t *id, size_t len)
{
    return dq_bix_hash(id, len, 0);
}

static bool s_eq(const void *ctx, int32_t w, const void *key)
{
    const dq_broker_t *b = ctx;
    const s_key *k = key;
    const dq_bworker *wk = &b->workers[w];
    return wk->id_len == k->len && memcmp(wk->id, k->id, k->len) == 0;
}

dq_status dq_bwindex_init(dq_broker_t *b, dq_err *err)
{
    return dq_bix_init(&b->widx, b->cfg.max_workers, "worker", err);
}

void dq_bwindex_free(dq_broker_t *b)
{
    dq_bix_free(&b->widx);
}

int32_t dq_broker_find_worker(const dq_broker_t *b, const uint8_t *id, size_t len)
{
    s_key k = {id, len};
    return dq_bix_find(&b->widx, s_hash(id, len), s_eq, b, &k);
}

void dq_bwindex_put(dq_broker_t *b, int32_t w)
{
    dq_bix_put(&b->widx, s_hash(b->workers[w].id, b->workers[w].id_len), w);
}

void dq_bwindex_del(dq_broker_t *b, int32_t w)
{
    dq_bix_del(&b->widx, s_hash(b->workers[w].id, b->workers[w].id_len), w);
}
