/* worker_index.c - routing id -> worker slot, so that a worker's message
 * (reply, heartbeat, drain) finds its slot in O(1) instead of a scan over
 * every worker (issue 13: a broker for hundreds of workers).
 *
 * Open addressing with linear probing over a power-of-two table at least
 * twice max_workers, so the load stays under 1/2; deletion shifts the
 * following run back (no tombstones), so churn - workers SIGKILLed and
 * restarted all day - never degrades lookups. Entries are worker slots; the
 * key bytes live in the worker table itself (workers[slot].id). Allocated
 * once with the broker: no allocation per message.
 */
#include "broker/broker_int.h"

#include <stdlib.h>
#include <string.h>

static uint32_t s_hash(const uint8_t *id, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) h = (h ^ id[i]) * 16777619u;
    return h ^ (h >> 15);
}

dq_status dq_bwindex_init(dq_broker_t *b, dq_err *err)
{
    uint32_t cap = 16;
    while (cap < 2u * (uint32_t)b->cfg.max_workers) cap <<= 1;
    b->widx = malloc((size_t)cap * sizeof *b->widx);
    if (!b->widx) return dq_fail(err, DQ_ERR_NOMEM, "broker: cannot allocate the worker index");
    for (uint32_t i = 0; i < cap; i++) b->widx[i] = -1;
    b->widx_mask = cap - 1;
    return DQ_OK;
}

void dq_bwindex_free(dq_broker_t *b)
{
    free(b->widx);
    b->widx = NULL;
}

int32_t dq_broker_find_worker(const dq_broker_t *b, const uint8_t *id, size_t len)
{
    for (uint32_t i = s_hash(id, len) & b->widx_mask;; i = (i + 1) & b->widx_mask) {
        int32_t w = b->widx[i];
        if (w < 0) return -1;
        const dq_bworker *wk = &b->workers[w];
        if (wk->id_len == len && memcmp(wk->id, id, len) == 0) return w;
    }
}

void dq_bwindex_put(dq_broker_t *b, int32_t w)
{
    const dq_bworker *wk = &b->workers[w];
    uint32_t i = s_hash(wk->id, wk->id_len) & b->widx_mask;
    while (b->widx[i] >= 0) i = (i + 1) & b->widx_mask;
    b->widx[i] = w;
}

void dq_bwindex_del(dq_broker_t *b, int32_t w)
{
    const dq_bworker *wk = &b->workers[w];
    uint32_t m = b->widx_mask, i = s_hash(wk->id, wk->id_len) & m;
    while (b->widx[i] != w) {
        if (b->widx[i] < 0) return; /* not indexed */
        i = (i + 1) & m;
    }
    /* backward shift: move later entries of the run into the hole when
     * their home position does not lie cyclically in (hole, j] */
    uint32_t hole = i;
    for (uint32_t j = (i + 1) & m; b->widx[j] >= 0; j = (j + 1) & m) {
        const dq_bworker *x = &b->workers[b->widx[j]];
        uint32_t home = s_hash(x->id, x->id_len) & m;
        bool stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (stays) continue;
        b->widx[hole] = b->widx[j];
        hole = j;
    }
    b->widx[hole] = -1;
}
