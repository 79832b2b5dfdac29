/* inflight.c - req_id -> slot table with exactly-once removal (inflight.h).
 *
 * Linear probing with backward-shift deletion (no tombstones, so a long run
 * of sends and replies never degrades the table); the hash has at least
 * twice as many cells as there are slots. Scans over all slots (in_order,
 * oldest) are O(cap), which is fine for the tens to hundreds of requests a
 * client keeps in flight and happens once per poll round at most.
 */
#include "client/inflight.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

static uint32_t s_mix(uint64_t x)
{
    x ^= x >> 33; /* murmur3 finaliser: req_ids are often sequential */
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return (uint32_t)x;
}

dq_status dq_inflight_init(dq_inflight *t, int cap, dq_err *err)
{
    memset(t, 0, sizeof *t);
    if (cap < 1 || cap > (1 << 20))
        return dq_fail(err, DQ_ERR_ARG, "in-flight table: capacity %d out of 1..%d", cap,
                       1 << 20);
    uint32_t cells = 1;
    while (cells < 2u * (uint32_t)cap) cells <<= 1;
    t->e = calloc((size_t)cap, sizeof *t->e);
    t->hash = calloc(cells, sizeof *t->hash);
    t->free_slots = malloc((size_t)cap * sizeof *t->free_slots);
    if (!t->e || !t->hash || !t->free_slots) {
        dq_inflight_free(t);
        return dq_fail(err, DQ_ERR_NOMEM, "in-flight table of %d: out of memory", cap);
    }
    t->cap = cap;
    t->mask = cells - 1;
    for (int i = 0; i < cap; i++) t->free_slots[i] = cap - 1 - i; /* pop gives slot 0 first */
    t->n_free = cap;
    return DQ_OK;
}

void dq_inflight_free(dq_inflight *t)
{
    free(t->e);
    free(t->hash);
    free(t->free_slots);
    memset(t, 0, sizeof *t);
}

/* The hash cell holding req_id, or the empty cell where it would go. */
static uint32_t s_cell(const dq_inflight *t, uint64_t req_id)
{
    uint32_t i = s_mix(req_id) & t->mask;
    while (t->hash[i] != 0 && t->e[t->hash[i] - 1].req_id != req_id) i = (i + 1) & t->mask;
    return i;
}

int dq_inflight_find(const dq_inflight *t, uint64_t req_id)
{
    uint32_t i = s_cell(t, req_id);
    return t->hash[i] ? t->hash[i] - 1 : -1;
}

int dq_inflight_add(dq_inflight *t, uint64_t req_id, int64_t now_ms)
{
    uint32_t i = s_cell(t, req_id);
    if (t->hash[i]) return DQ_INFLIGHT_DUPLICATE;
    if (t->n_free == 0) return DQ_INFLIGHT_FULL;
    int slot = t->free_slots[--t->n_free];
    dq_inflight_entry *e = &t->e[slot];
    e->req_id = req_id;
    e->seq = t->next_seq++;
    e->first_sent_ms = e->last_sent_ms = now_ms;
    e->sends = 1;
    e->used = true;
    t->hash[i] = slot + 1;
    t->count++;
    return slot;
}

void dq_inflight_remove(dq_inflight *t, int slot)
{
    assert(slot >= 0 && slot < t->cap && t->e[slot].used);
    uint32_t i = s_cell(t, t->e[slot].req_id);
    assert(t->hash[i] == slot + 1);
    /* Backward-shift: pull later members of the probe run into the hole. */
    uint32_t hole = i, j = i;
    for (;;) {
        j = (j + 1) & t->mask;
        if (t->hash[j] == 0) break;
        uint32_t home = s_mix(t->e[t->hash[j] - 1].req_id) & t->mask;
        /* Move j into the hole unless its home lies cyclically in (hole, j]. */
        bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
        if (!stays) {
            t->hash[hole] = t->hash[j];
            hole = j;
        }
    }
    t->hash[hole] = 0;
    t->e[slot].used = false;
    t->free_slots[t->n_free++] = slot;
    t->count--;
}

void dq_inflight_resent(dq_inflight *t, int slot, int64_t now_ms)
{
    assert(slot >= 0 && slot < t->cap && t->e[slot].used);
    t->e[slot].last_sent_ms = now_ms;
    t->e[slot].sends++;
}

int dq_inflight_in_order(const dq_inflight *t, int32_t *slots)
{
    int n = 0;
    for (int s = 0; s < t->cap; s++) {
        if (!t->e[s].used) continue;
        /* Insertion sort by seq: n is small and this runs on a restart only. */
        int k = n++;
        while (k > 0 && t->e[slots[k - 1]].seq > t->e[s].seq) {
            slots[k] = slots[k - 1];
            k--;
        }
        slots[k] = s;
    }
    return n;
}

int dq_inflight_oldest(const dq_inflight *t, bool by_first)
{
    int best = -1;
    for (int s = 0; s < t->cap; s++) {
        if (!t->e[s].used) continue;
        int64_t v = by_first ? t->e[s].first_sent_ms : t->e[s].last_sent_ms;
        int64_t b = best < 0 ? 0 : by_first ? t->e[best].first_sent_ms : t->e[best].last_sent_ms;
        if (best < 0 || v < b) best = s;
    }
    return best;
}
