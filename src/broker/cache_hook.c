/* cache_hook.c - dq_broker_cache callbacks over a dq_cache_t (see cache_hook.h).
 *
 * A lookup that misses costs one read transaction and the hash and B-tree
 * probe of each sample up to the first miss (about 1 us per sample);
 * a hit copies each value once into the hook's output buffers and once more
 * into the encoded reply. Errors never reach the broker: a failed lookup is
 * a miss and a failed store is a reply not cached.
 */
#include "broker/cache_hook.h"

#include "base/clock.h"
#include "cache/cache.h"

#include <stdlib.h>
#include <string.h>

#define S_LOG_ERRORS 10 /* errors logged before the hook goes quiet */

struct dq_cache_hook {
    dq_broker_cache iface;
    dq_cache_t *cache;
    FILE *log;
    dq_cache_get_output outs[DQ_MSG_MAX_OUTPUTS];
    dq_msg_reply rep;          /* ~3 KB: kept here, not on the stack */
    dq_msg_buf buf;
    dq_cache_hook_counts n;
    uint64_t bytes;            /* used_bytes of the last dq_cache_stats (metrics) */
    int64_t bytes_at_ms;       /* when; refreshed at most every 5 s */
};

static void s_error(dq_cache_hook_t *h, const char *what, const dq_err *err)
{
    h->n.errors++;
    if (h->n.errors <= S_LOG_ERRORS)
        fprintf(h->log, "cache %s: %s: %s%s\n", dq_cache_dir(h->cache), what, err->msg,
                h->n.errors == S_LOG_ERRORS ? " (further cache errors are only counted)" : "");
}

static bool s_lookup(void *ctx, const dq_msg_teacher *teacher, const dq_msg_request *req,
                     zmq_msg_t *reply)
{
    dq_cache_hook_t *h = ctx;
    if (req->n_outputs < 1 || req->n_outputs > DQ_MSG_MAX_OUTPUTS) return false;
    for (int k = 0; k < req->n_outputs; k++) h->outs[k].name = req->outputs[k];
    dq_err err = {{0}};
    bool hit = false;
    dq_status st = dq_cache_probe_batch(h->cache, teacher->sha256, teacher->model, req->dtype,
                                        req->shape, req->data, req->n_outputs, h->outs, &hit,
                                        &err);
    if (st) {
        s_error(h, "lookup", &err);
        return false;
    }
    if (!hit) {
        h->n.misses++;
        return false;
    }
    dq_msg_reply *rep = &h->rep;
    memset(rep, 0, sizeof *rep);
    rep->req_id = req->req_id;
    rep->status = DQ_REPLY_OK;
    rep->n_outputs = req->n_outputs;
    for (int k = 0; k < req->n_outputs; k++) {
        dq_msg_output *o = &rep->outputs[k];
        const dq_cache_get_output *g = &h->outs[k];
        memcpy(o->name, req->outputs[k], sizeof o->name);
        o->ndim = g->ndim + 1;
        o->shape[0] = req->shape[0];
        int64_t numel = req->shape[0];
        for (int d = 0; d < g->ndim; d++) {
            o->shape[d + 1] = g->shape[d];
            numel *= g->shape[d];
        }
        o->data = g->data;
        o->data_len = (size_t)numel * sizeof(float);
    }
    rep->has_teacher = true;
    rep->teacher = *teacher;
    dq_msg_buf_reset(&h->buf);
    st = dq_msg_encode_reply(&h->buf, rep, &err);
    if (st) {
        s_error(h, "encode cached reply", &err);
        return false;
    }
    if (zmq_msg_init_size(reply, h->buf.len) != 0) {
        dq_fail(&err, DQ_ERR_NOMEM, "zmq_msg_init_size(%zu): %s", h->buf.len,
                zmq_strerror(zmq_errno()));
        s_error(h, "lookup", &err);
        return false;
    }
    memcpy(zmq_msg_data(reply), h->buf.data, h->buf.len);
    h->n.hits++;
    return true;
}

static void s_store(void *ctx, const dq_msg_teacher *teacher, const dq_msg_request *req,
                    const dq_msg_reply *rep)
{
    dq_cache_hook_t *h = ctx;
    if (rep->status != DQ_REPLY_OK || rep->n_outputs < 1) return;
    dq_err err = {{0}};
    dq_cache_put_output puts[DQ_MSG_MAX_OUTPUTS];
    for (int k = 0; k < rep->n_outputs; k++) {
        const dq_msg_output *o = &rep->outputs[k];
        if (o->ndim < 1 || o->shape[0] != req->shape[0]) {
            dq_fail(&err, DQ_ERR_SHAPE, "output '%s' of req_id %llu is not [%lld, ...]",
                    o->name, (unsigned long long)rep->req_id, (long long)req->shape[0]);
            s_error(h, "store", &err);
            return;
        }
        puts[k] = (dq_cache_put_output){o->name, o->ndim - 1, o->shape + 1, o->data};
    }
    int64_t stored = 0;
    dq_status st = dq_cache_put_batch(h->cache, teacher, req->dtype, req->shape, req->data,
                                      rep->n_outputs, puts, &stored, &err);
    if (st) {
        s_error(h, "store", &err);
        return;
    }
    h->n.stored_batches++;
    h->n.stored_entries += (uint64_t)stored;
}

/* For the broker's metrics: the counters, and the cache's size looked up
 * at most every 5 s (a stats call opens a read transaction). */
static void s_counts(void *ctx, uint64_t *hits, uint64_t *misses, uint64_t *stored,
                     uint64_t *errors, uint64_t *bytes)
{
    dq_cache_hook_t *h = ctx;
    int64_t now = dq_clock_now_ms();
    if (h->bytes_at_ms == 0 || now - h->bytes_at_ms >= 5000) {
        dq_cache_info info;
        dq_err err = {{0}};
        if (dq_cache_stats(h->cache, &info, &err) == DQ_OK) {
            h->bytes = info.used_bytes;
            dq_cache_info_free(&info);
        }
        h->bytes_at_ms = now;
    }
    *hits = h->n.hits;
    *misses = h->n.misses;
    *stored = h->n.stored_entries;
    *errors = h->n.errors;
    *bytes = h->bytes;
}

dq_status dq_cache_hook_new(dq_cache_hook_t **out, dq_cache_t *cache, FILE *log, dq_err *err)
{
    *out = NULL;
    dq_cache_hook_t *h = calloc(1, sizeof *h);
    if (!h) return dq_fail(err, DQ_ERR_NOMEM, "cache hook: out of memory");
    h->cache = cache;
    h->log = log ? log : stderr;
    dq_msg_buf_init(&h->buf);
    h->iface.ctx = h;
    h->iface.lookup = s_lookup;
    h->iface.store = s_store;
    h->iface.counts = s_counts;
    *out = h;
    return DQ_OK;
}

void dq_cache_hook_destroy(dq_cache_hook_t **p)
{
    if (!p || !*p) return;
    dq_cache_get_output_free((*p)->outs, DQ_MSG_MAX_OUTPUTS);
    dq_msg_buf_free(&(*p)->buf);
    free(*p);
    *p = NULL;
}

const dq_broker_cache *dq_cache_hook_broker(dq_cache_hook_t *h)
{
    return &h->iface;
}

void dq_cache_hook_get_counts(const dq_cache_hook_t *h, dq_cache_hook_counts *out)
{
    *out = h->n;
}
