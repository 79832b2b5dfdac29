/* ordered.c - submission-order delivery over dq_client_t (ordered.h).
 *
 * Slots: K of them; batch s lives in slot s % K from its submit until the
 * caller has taken it AND called next again (the result it holds points
 * into the slot's floats). Since at most K batches are outstanding, and the
 * slot of the batch just taken is only reused by a submit after that, a
 * slot is never overwritten while its result is in the caller's hands.
 * Float buffers grow to the largest reply seen and are then reused: a
 * steady stream allocates nothing.
 */
#include "client/ordered.h"

#include "base/clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    bool busy;                       /* submitted, not yet taken */
    bool ready;                      /* its reply is parked here */
    dq_msg_dtype dtype;              /* the batch, kept to send it again after an */
    int64_t shape[4];                /*  overloaded/timeout reply */
    uint8_t *data;
    size_t data_cap;
    int64_t first_ms;                /* first send */
    int64_t retry_at;                /* > 0: send again then */
    int64_t n;
    int n_want;
    char want[DQ_MSG_MAX_OUTPUTS][DQ_MSG_NAME_MAX + 1];
    dq_ordered_result res;
    float *buf[DQ_MSG_MAX_OUTPUTS];
    size_t cap[DQ_MSG_MAX_OUTPUTS];  /* floats */
} s_slot;

struct dq_ordered {
    dq_client_t *client;
    char endpoint[512];
    char service[DQ_MSG_NAME_MAX + 1];
    int K;
    s_slot *slots;
    uint64_t next_seq, next_take;    /* next batch to submit / to take */
    int64_t request_timeout_ms;      /* retry "later" replies until this age (0: always) */
    int64_t reply_floats;            /* per sample, told to the client (0: not known) */
    uint64_t retries;
    dq_status broken;                /* sticky: an error reply or a bad one */
    dq_err broken_err;
};

dq_status dq_ordered_new(dq_ordered_t **out, const char *url, const dq_client_opts *opts,
                         dq_err *err)
{
    *out = NULL;
    dq_client_opts o;
    if (opts) o = *opts;
    else dq_client_opts_default(&o);
    if (o.max_inflight < 1)
        return dq_fail(err, DQ_ERR_ARG, "client: %d batches in flight (>= 1)", o.max_inflight);
    dq_ordered_t *c = calloc(1, sizeof *c);
    if (!c) return dq_fail(err, DQ_ERR_NOMEM, "client: out of memory");
    dq_status st = dq_client_parse_url(url, c->endpoint, sizeof c->endpoint, c->service, err);
    c->K = o.max_inflight;
    c->request_timeout_ms = o.request_timeout_ms;
    if (st == DQ_OK && !(c->slots = calloc((size_t)c->K, sizeof *c->slots)))
        st = dq_fail(err, DQ_ERR_NOMEM, "client: out of memory");
    if (st == DQ_OK) st = dq_client_new(&c->client, c->endpoint, &o, err);
    if (st != DQ_OK) {
        dq_ordered_destroy(&c);
        return st;
    }
    *out = c;
    return DQ_OK;
}

void dq_ordered_destroy(dq_ordered_t **p)
{
    if (!p || !*p) return;
    dq_ordered_t *c = *p;
    dq_client_destroy(&c->client);
    for (int k = 0; c->slots && k < c->K; k++)
        for (int i = 0; i < DQ_MSG_MAX_OUTPUTS; i++) free(c->slots[k].buf[i]);
    for (int k = 0; c->slots && k < c->K; k++) free(c->slots[k].data);
    free(c->slots);
    free(c);
    *p = NULL;
}

bool dq_ordered_broken(const dq_ordered_t *o)
{
    return o->broken != DQ_OK;
}

int dq_ordered_pending(const dq_ordered_t *o)
{
    return (int)(o->next_seq - o->next_take);
}

const char *dq_ordered_service(const dq_ordered_t *o)
{
    return o->service;
}

dq_client_t *dq_ordered_client(dq_ordered_t *o)
{
    return o->client;
}

void dq_ordered_set_reply_floats(dq_ordered_t *o, int64_t floats_per_sample)
{
    o->reply_floats = floats_per_sample;
}

uint64_t dq_ordered_retries(const dq_ordered_t *o)
{
    return o->retries;
}

/* (Re)sends batch seq from its slot. */
static dq_status s_send(dq_ordered_t *o, uint64_t seq, dq_err *err)
{
    s_slot *s = &o->slots[seq % (uint64_t)o->K];
    const char *names[DQ_MSG_MAX_OUTPUTS];
    for (int i = 0; i < s->n_want; i++) names[i] = s->want[i];
    dq_client_request r = {.req_id = seq + 1, .service = o->service, .dtype = s->dtype,
                           .shape = {s->shape[0], s->shape[1], s->shape[2], s->shape[3]},
                           .data = s->data, .n_outputs = s->n_want, .outputs = names,
                           .reply_floats = o->reply_floats};
    return dq_client_send(o->client, &r, err);
}

dq_status dq_ordered_submit(dq_ordered_t *o, dq_msg_dtype dtype, const int64_t shape[4],
                            const void *data, int n_outputs, const char *const *outputs,
                            uint64_t *seq, dq_err *err)
{
    if (dq_ordered_pending(o) >= o->K)
        return dq_fail(err, DQ_ERR_OVERLOADED, "client %s/%s: %d batches already in flight "
                       "(take one first)", o->endpoint, o->service, o->K);
    if (n_outputs < 1 || n_outputs > DQ_MSG_MAX_OUTPUTS)
        return dq_fail(err, DQ_ERR_ARG, "client %s/%s: %d outputs asked (1..%d)", o->endpoint,
                       o->service, n_outputs, DQ_MSG_MAX_OUTPUTS);
    s_slot *s = &o->slots[o->next_seq % (uint64_t)o->K];
    for (int i = 0; i < n_outputs; i++) {
        size_t len = outputs[i] ? strlen(outputs[i]) : 0;
        if (len == 0 || len > DQ_MSG_NAME_MAX)
            return dq_fail(err, DQ_ERR_ARG, "client %s/%s: output name %d must be 1..%d bytes",
                           o->endpoint, o->service, i, DQ_MSG_NAME_MAX);
        memcpy(s->want[i], outputs[i], len + 1);
    }
    size_t bytes = dtype == DQ_DTYPE_U8 || dtype == DQ_DTYPE_F32
                       ? (size_t)(shape[0] * shape[1] * shape[2] * shape[3]) *
                             dq_msg_dtype_size(dtype)
                       : 0;
    if (shape[0] < 1 || shape[1] < 1 || shape[2] < 1 || shape[3] < 1 || bytes == 0 ||
        (double)shape[0] * (double)shape[1] * (double)shape[2] * (double)shape[3] > 2147483648.0)
        return dq_fail(err, DQ_ERR_ARG, "client %s/%s: batch shape or dtype invalid",
                       o->endpoint, o->service);
    if (bytes > s->data_cap) {
        uint8_t *nb = realloc(s->data, bytes);
        if (!nb) return dq_fail(err, DQ_ERR_NOMEM, "client: out of memory");
        s->data = nb;
        s->data_cap = bytes;
    }
    memcpy(s->data, data, bytes);
    s->dtype = dtype;
    memcpy(s->shape, shape, sizeof s->shape);
    s->n_want = n_outputs;
    DQ_TRY(s_send(o, o->next_seq, err));
    s->busy = true;
    s->ready = false;
    s->n = shape[0];
    s->first_ms = dq_clock_now_ms();
    s->retry_at = 0;
    if (seq) *seq = o->next_seq;
    o->next_seq++;
    return DQ_OK;
}

/* Checks an ok reply against its batch and copies it into the slot. */
static dq_status s_park(dq_ordered_t *o, s_slot *s, uint64_t seq, const dq_client_reply *rep,
                        dq_err *err)
{
    if (!rep->teacher)
        return dq_fail(err, DQ_ERR_PROTO, "service %s: batch %llu: ok reply without the teacher "
                       "identity", o->service, (unsigned long long)seq);
    if (rep->n_outputs != s->n_want)
        return dq_fail(err, DQ_ERR_PROTO, "service %s: batch %llu: %d outputs in the reply, %d "
                       "requested", o->service, (unsigned long long)seq, rep->n_outputs,
                       s->n_want);
    dq_ordered_result *res = &s->res;
    for (int i = 0; i < rep->n_outputs; i++) {
        const dq_msg_output *m = &rep->outputs[i];
        if (strcmp(m->name, s->want[i]) != 0 || m->shape[0] != s->n)
            return dq_fail(err, DQ_ERR_PROTO, "service %s: batch %llu: output %d is '%s' of %lld "
                           "rows, asked '%s' of %lld", o->service, (unsigned long long)seq, i,
                           m->name, (long long)m->shape[0], s->want[i], (long long)s->n);
        size_t count = m->data_len / 4;
        if (count > s->cap[i]) {
            float *nb = realloc(s->buf[i], count * sizeof(float));
            if (!nb) return dq_fail(err, DQ_ERR_NOMEM, "client: out of memory");
            s->buf[i] = nb;
            s->cap[i] = count;
        }
        dq_msg_f32_copy(s->buf[i], m->data, count);
        dq_ordered_output *out = &res->outputs[i];
        memcpy(out->name, m->name, sizeof out->name);
        out->ndim = m->ndim;
        memcpy(out->shape, m->shape, sizeof out->shape);
        out->data = s->buf[i];
    }
    res->seq = seq;
    res->n_outputs = rep->n_outputs;
    res->teacher = *rep->teacher;
    res->teacher_changed = rep->teacher_changed;
    res->sends = rep->sends;
    snprintf(res->impl, sizeof res->impl, "%s", rep->impl ? rep->impl : "");
    s->ready = true;
    return DQ_OK;
}

dq_status dq_ordered_next(dq_ordered_t *o, const dq_ordered_result **out, int timeout_ms,
                          dq_err *err)
{
    *out = NULL;
    if (o->broken != DQ_OK) {
        *err = o->broken_err;
        return o->broken;
    }
    if (dq_ordered_pending(o) == 0)
        return dq_fail(err, DQ_ERR_ARG, "client %s/%s: no batch in flight", o->endpoint,
                       o->service);
    s_slot *head = &o->slots[o->next_take % (uint64_t)o->K];
    int64_t deadline = timeout_ms < 0 ? -1 : dq_clock_now_ms() + timeout_ms;
    while (!head->ready) {
        int wait = -1;
        if (deadline >= 0) {
            int64_t left = deadline - dq_clock_now_ms();
            wait = left > 0 ? (int)left : 0;
        }
        int64_t now = dq_clock_now_ms();
        for (uint64_t q = o->next_take; q < o->next_seq; q++) {
            s_slot *s = &o->slots[q % (uint64_t)o->K];
            if (s->retry_at && now >= s->retry_at) {
                s->retry_at = 0;
                DQ_TRY(s_send(o, q, err));
            }
            if (s->retry_at && (wait < 0 || wait > 20)) wait = 20;
        }
        dq_client_reply rep;
        dq_status st = dq_client_recv(o->client, &rep, wait, err);
        DQ_TRY(st);
        uint64_t seq = rep.req_id - 1;
        if (rep.req_id == 0 || seq < o->next_take || seq >= o->next_seq) continue; /* not ours */
        /* The broker's "retry later" (no room, no worker in time): send the
         * batch again after a pause, until request_timeout_ms since its
         * first send. */
        s_slot *rs = &o->slots[seq % (uint64_t)o->K];
        bool later = rep.status == DQ_REPLY_OVERLOADED || rep.status == DQ_REPLY_TIMEOUT;
        int64_t age = dq_clock_now_ms() - rs->first_ms;
        if (later && (o->request_timeout_ms == 0 || age < o->request_timeout_ms)) {
            rs->retry_at = dq_clock_now_ms() + 100;
            o->retries++;
            if (deadline >= 0 && dq_clock_now_ms() >= deadline)
                return dq_fail(err, DQ_ERR_TIMEOUT, "client: no result yet");
            continue;
        }
        st = dq_client_reply_status(&rep, err);
        if (st == DQ_OK) st = s_park(o, &o->slots[seq % (uint64_t)o->K], seq, &rep, err);
        if (st != DQ_OK) { /* the batch is lost to the order: every later call says so */
            o->broken = st;
            o->broken_err = *err;
            return st;
        }
    }
    head->busy = head->ready = false;
    o->next_take++;
    *out = &head->res;
    return DQ_OK;
}
