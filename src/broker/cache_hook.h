/* cache_hook.h - the LMDB cache behind the broker's reply-cache hook.
 *
 * distillq-broker --cache DIR opens a dq_cache_t, wraps it here and puts
 * dq_cache_hook_broker(h) into dq_broker_config.cache:
 *   lookup: the request's samples x wanted outputs are read in one read
 *           transaction; only when every sample hits is a complete ok reply
 *           (req_id, outputs [n, ...], the service's teacher identity)
 *           encoded into *reply, and the broker answers without a worker.
 *   store:  every ok worker reply is written as one batch (one transaction);
 *           failures are counted and logged (the first few), never fatal,
 *           and a full cache stops inserting (see cache.h FULL POLICY).
 * The hook keeps reusable buffers (outputs, encoder), so in steady state a
 * hit allocates only the zmq message it returns. Single-threaded, like the
 * broker loop that calls it. Link: BROKER_LIBS, CACHE_LIBS.
 */
#ifndef DQ_CACHE_HOOK_H
#define DQ_CACHE_HOOK_H

#include <stdint.h>
#include <stdio.h>

#include "broker/broker.h"
#include "cache/cache.h"

typedef struct dq_cache_hook dq_cache_hook_t;

typedef struct {
    uint64_t hits;            /* requests answered from the cache */
    uint64_t misses;          /* requests with at least one sample missing */
    uint64_t stored_batches;  /* replies stored (possibly with 0 new entries) */
    uint64_t stored_entries;  /* new (sample, output) entries written */
    uint64_t errors;          /* lookups or stores that failed */
} dq_cache_hook_counts;

/* Wraps cache (borrowed: it must outlive the hook); log NULL means stderr. */
dq_status dq_cache_hook_new(dq_cache_hook_t **out, dq_cache_t *cache, FILE *log, dq_err *err);

/* Frees the hook and its buffers (not the cache); *p = NULL. NULL-safe. */
void dq_cache_hook_destroy(dq_cache_hook_t **p);

/* The hook table for dq_broker_config.cache; valid while h lives. */
const dq_broker_cache *dq_cache_hook_broker(dq_cache_hook_t *h);

void dq_cache_hook_get_counts(const dq_cache_hook_t *h, dq_cache_hook_counts *out);

#endif
