/* inflight.h - the client's table of requests awaiting their one reply.
 *
 * A fixed number of slots (the most requests in flight at once), each
 * holding a req_id, its send order and its send times, plus a hash from
 * req_id to slot. This is the whole exactly-once bookkeeping of the client:
 * a reply is delivered only if its req_id is found here, and finding it
 * removes it, so a duplicate (a resend answered twice, a late reply after a
 * broker restart) finds nothing and is dropped. Resending walks the slots in
 * send order so a restarted broker sees the old FIFO order again.
 *
 * Plain memory, no sockets: tests/test_client_inflight.c drives it directly.
 */
#ifndef DQ_INFLIGHT_H
#define DQ_INFLIGHT_H

#include <stdbool.h>
#include <stdint.h>

#include "base/status.h"

typedef struct {
    uint64_t req_id;
    uint64_t seq;             /* order of first send */
    int64_t first_sent_ms;    /* for the give-up timeout */
    int64_t last_sent_ms;     /* for the resend timeout */
    int sends;                /* 1 + resends */
    bool used;
} dq_inflight_entry;

typedef struct {
    dq_inflight_entry *e;     /* cap entries; the index of an entry is its slot */
    int cap, count;
    int32_t *hash;            /* open addressing, linear probing: slot + 1, 0 = empty */
    uint32_t mask;
    int32_t *free_slots;      /* stack of unused slots */
    int n_free;
    uint64_t next_seq;
} dq_inflight;

#define DQ_INFLIGHT_FULL (-1)
#define DQ_INFLIGHT_DUPLICATE (-2)

/* Room for cap >= 1 requests. */
dq_status dq_inflight_init(dq_inflight *t, int cap, dq_err *err);
void dq_inflight_free(dq_inflight *t);

/* Records req_id as sent at now_ms. Returns its slot (0..cap-1), or
 * DQ_INFLIGHT_FULL, or DQ_INFLIGHT_DUPLICATE when req_id is in flight. */
int dq_inflight_add(dq_inflight *t, uint64_t req_id, int64_t now_ms);

/* The slot of req_id, or -1 when it is not in flight. */
int dq_inflight_find(const dq_inflight *t, uint64_t req_id);

/* Forgets the request in slot (its reply was delivered). */
void dq_inflight_remove(dq_inflight *t, int slot);

/* Notes that slot was sent again at now_ms. */
void dq_inflight_resent(dq_inflight *t, int slot, int64_t now_ms);

/* Writes every used slot into slots (room for cap) in first-send order;
 * returns how many. */
int dq_inflight_in_order(const dq_inflight *t, int32_t *slots);

/* The used slot with the smallest first_sent_ms (by_first) or
 * last_sent_ms, or -1 when empty. */
int dq_inflight_oldest(const dq_inflight *t, bool by_first);

#endif
