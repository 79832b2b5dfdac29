/* budget.c - the broker's byte budget for the request bodies it holds
 * (issue 15).
 *
 * --max-queue and --max-inflight count requests, but a request is anything
 * from a few hundred bytes to --max-msg-bytes (64 MiB): one client sending
 * large valid requests made the broker hold 1,024 x 64 MiB. So the bodies
 * of the requests the broker holds, queued and in flight (it keeps an
 * in-flight body to requeue it when its worker dies), are counted in bytes:
 * in total (--max-queue-bytes) and per client queue (--max-client-bytes,
 * on the (service, client) flows of flows.c). A request that would go over
 * either is answered `overloaded` before a record is taken, and its frame
 * is closed when the handler returns: nothing of it stays.
 *
 * Each record remembers the bytes it was charged (rec.bytes), so the
 * release in records.c gives back exactly that, whatever path the record
 * took (answered, timed out, failed, requeued and answered later). What
 * libzmq buffers before the broker reads a frame is outside this count: at
 * most ZMQ_RCVHWM + 1 frames per connection (docs/protocol.md).
 */
#include "broker/broker_int.h"

#include <stdio.h>

int64_t dq_budget_client_limit(const dq_broker_t *b)
{
    int64_t c = b->cfg.max_client_bytes ? b->cfg.max_client_bytes : b->cfg.max_queue_bytes / 4;
    return c < b->cfg.max_queue_bytes ? c : b->cfg.max_queue_bytes;
}

const char *dq_budget_refuse(const dq_broker_t *b, int32_t flow, size_t len, char *why,
                             size_t cap)
{
    const int64_t n = (int64_t)len;
    if (b->held_bytes + n > b->cfg.max_queue_bytes) {
        snprintf(why, cap, "broker holds %lld bytes of requests, this one of %lld would pass "
                 "its budget of %lld (--max-queue-bytes)", (long long)b->held_bytes,
                 (long long)n, (long long)b->cfg.max_queue_bytes);
        return why;
    }
    const dq_bflow *f = &b->flows[flow];
    int64_t lim = dq_budget_client_limit(b);
    if (f->bytes + n > lim) {
        snprintf(why, cap, "client %s has %lld bytes of requests held, this one of %lld would "
                 "pass its budget of %lld (--max-client-bytes)", f->name, (long long)f->bytes,
                 (long long)n, (long long)lim);
        return why;
    }
    return NULL;
}

void dq_budget_take(dq_broker_t *b, int32_t r)
{
    dq_brec *x = &b->rec[r];
    x->bytes = (int64_t)zmq_msg_size(&x->body);
    b->held_bytes += x->bytes;
    if (b->held_bytes > b->held_bytes_peak) b->held_bytes_peak = b->held_bytes;
    if (x->flow >= 0) b->flows[x->flow].bytes += x->bytes;
}

void dq_budget_give(dq_broker_t *b, int32_t r)
{
    dq_brec *x = &b->rec[r];
    b->held_bytes -= x->bytes;
    if (x->flow >= 0) b->flows[x->flow].bytes -= x->bytes;
    x->bytes = 0;
}
