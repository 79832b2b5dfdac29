/* index.c - the broker's one hash index: key -> table slot, used for
 * workers by routing id (worker_index.c), services by name (dispatch.c) and
 * client flows by (service, name) (flows.c), so that no message costs a
 * scan over any of those tables (issue 13: a broker for hundreds of
 * workers and clients).
 *
 * Open addressing with linear probing over a power-of-two table at least
 * twice the table it indexes, so the load stays under 1/2. An entry is the
 * slot and its key's hash: a probe compares hashes first and calls the
 * caller's key comparison only on a match, and deletion (backward shift,
 * no tombstones, so churn never degrades lookups) needs no key at all. The
 * keys live in the indexed tables themselves. Allocated once with the
 * broker: nothing is allocated per message.
 *
 * Names come from the network (service names, client names): hashes are
 * seeded with the broker's random epoch, so colliding names cannot be
 * prepared in advance.
 */
#include "broker/broker_int.h"

#include <stdlib.h>

uint32_t dq_bix_hash(const void *key, size_t len, uint64_t seed)
{
    const uint8_t *p = key;
    uint64_t h = 1469598103934665603ull ^ seed;
    for (size_t i = 0; i < len; i++) h = (h ^ p[i]) * 1099511628211ull;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    return (uint32_t)(h ^ (h >> 32));
}

dq_status dq_bix_init(dq_bix *ix, int64_t max_entries, const char *what, dq_err *err)
{
    uint32_t cap = 16;
    while ((int64_t)cap < 2 * max_entries) cap <<= 1;
    ix->e = malloc((size_t)cap * sizeof *ix->e);
    if (!ix->e) return dq_fail(err, DQ_ERR_NOMEM, "broker: cannot allocate the %s index", what);
    for (uint32_t i = 0; i < cap; i++) ix->e[i].slot = -1;
    ix->mask = cap - 1;
    return DQ_OK;
}

void dq_bix_free(dq_bix *ix)
{
    free(ix->e);
    ix->e = NULL;
    ix->mask = 0;
}

int32_t dq_bix_find(const dq_bix *ix, uint32_t hash, dq_bix_eq eq, const void *ctx,
                    const void *key)
{
    for (uint32_t i = hash & ix->mask;; i = (i + 1) & ix->mask) {
        const dq_bix_entry *e = &ix->e[i];
        if (e->slot < 0) return -1;
        if (e->hash == hash && eq(ctx, e->slot, key)) return e->slot;
    }
}

void dq_bix_put(dq_bix *ix, uint32_t hash, int32_t slot)
{
    uint32_t i = hash & ix->mask;
    while (ix->e[i].slot >= 0) i = (i + 1) & ix->mask;
    ix->e[i].slot = slot;
    ix->e[i].hash = hash;
}

void dq_bix_del(dq_bix *ix, uint32_t hash, int32_t slot)
{
    uint32_t m = ix->mask, i = hash & m;
    while (ix->e[i].slot != slot) {
        if (ix->e[i].slot < 0) return; /* not indexed */
        i = (i + 1) & m;
    }
    /* Backward shift: move later entries of the run into the hole unless
     * their home position lies cyclically in (hole, j]. */
    uint32_t hole = i;
    for (uint32_t j = (i + 1) & m; ix->e[j].slot >= 0; j = (j + 1) & m) {
        uint32_t home = ix->e[j].hash & m;
        bool stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (stays) continue;
        ix->e[hole] = ix->e[j];
        hole = j;
    }
    ix->e[hole].slot = -1;
}
