/* test_client.c - the client library against a scripted fake broker: a
 * ROUTER in this thread (ipc:// in a temp dir, so a "restart" can bind the
 * same endpoint again) that records every request it receives and answers
 * exactly what each test tells it to. Checks: the request body on the wire,
 * exactly one delivery per req_id (out-of-order replies, duplicates
 * dropped), resend after a broker restart (reconnect) and after an epoch
 * change, a fresh socket when the broker goes silent, local timeouts, error
 * statuses mapped to dq_status with the reason, the stats call, URL
 * parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <pthread.h>
#include <cmocka.h>

#include "client/client.h"
#include "client/ordered.h"
#include "proto/wire.h"

#define MAX_SEEN 64

typedef struct {
    uint64_t req_id;
    unsigned char id[DQ_WIRE_ID_MAX];   /* routing id of the client connection */
    size_t id_len;
} s_seen;

typedef struct {
    void *ctx, *router;
    char ep[256];
    uint64_t epoch;
    bool answer_pings;
    dq_msg_decoder_t *dec;
    s_seen seen[MAX_SEEN];
    int n_seen;
    int pings, stats;
    dq_msg_request last;       /* the last request's header (data pointer not kept) */
    unsigned char last_data[64];
} s_fake;

static char s_dir[64];

static int s_setup(void **state)
{
    (void)state;
    snprintf(s_dir, sizeof s_dir, "/tmp/dq-test-client.XXXXXX");
    return mkdtemp(s_dir) ? 0 : -1;
}

static int s_teardown(void **state)
{
    (void)state;
    char ep[128];
    snprintf(ep, sizeof ep, "%s/fe", s_dir);
    unlink(ep);
    return rmdir(s_dir);
}

static void s_fake_bind(s_fake *f)
{
    f->router = zmq_socket(f->ctx, ZMQ_ROUTER);
    assert_non_null(f->router);
    int zero = 0;
    zmq_setsockopt(f->router, ZMQ_LINGER, &zero, sizeof zero);
    assert_int_equal(zmq_bind(f->router, f->ep), 0);
}

static void s_fake_start(s_fake *f, uint64_t epoch)
{
    memset(f, 0, sizeof *f);
    f->ctx = zmq_ctx_new();
    snprintf(f->ep, sizeof f->ep, "ipc://%s/fe", s_dir);
    f->epoch = epoch;
    f->answer_pings = true;
    dq_err err;
    assert_int_equal(dq_msg_decoder_new(&f->dec, &err), DQ_OK);
    s_fake_bind(f);
}

/* "Restart": close the ROUTER (connections drop) and bind a new one. */
static void s_fake_restart(s_fake *f, uint64_t epoch)
{
    zmq_close(f->router);
    f->epoch = epoch;
    s_fake_bind(f);
}

static void s_fake_stop(s_fake *f)
{
    zmq_close(f->router);
    zmq_ctx_term(f->ctx);
    dq_msg_decoder_destroy(&f->dec);
}

static void s_fake_send(s_fake *f, const void *id, size_t id_len, const dq_msg_buf *b)
{
    const void *d[2] = {id, b->data};
    size_t l[2] = {id_len, b->len};
    dq_err err;
    assert_int_equal(dq_wire_send(f->router, 2, d, l, 0, &err), DQ_OK);
}

/* Waits up to ms for a message, then handles it and whatever else is there:
 * answers pings (if enabled), records requests, answers stats. Returns the
 * number of requests recorded. */
static int s_fake_poll(s_fake *f, int ms)
{
    int got = 0;
    for (long wait = ms;; wait = 0) {
        zmq_pollitem_t it = {f->router, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, wait) <= 0) return got;
        dq_wire_parts p;
        dq_err err;
        assert_int_equal(dq_wire_recv(f->router, &p, 0, &err), DQ_OK);
        assert_int_equal(p.total, 2);
        dq_msg m;
        assert_int_equal(dq_msg_decode(f->dec, zmq_msg_data(&p.f[1]), zmq_msg_size(&p.f[1]), &m,
                                       &err), DQ_OK);
        if (m.type == DQ_MSG_HEARTBEAT) {
            f->pings++;
            if (f->answer_pings) {
                dq_msg_buf b = {0};
                assert_int_equal(dq_msg_encode_heartbeat(&b, f->epoch, &err), DQ_OK);
                s_fake_send(f, zmq_msg_data(&p.f[0]), zmq_msg_size(&p.f[0]), &b);
                dq_msg_buf_free(&b);
            }
        } else if (m.type == DQ_MSG_REQUEST) {
            assert_true(f->n_seen < MAX_SEEN);
            s_seen *s = &f->seen[f->n_seen++];
            s->req_id = m.u.request.req_id;
            s->id_len = zmq_msg_size(&p.f[0]);
            memcpy(s->id, zmq_msg_data(&p.f[0]), s->id_len);
            f->last = m.u.request;
            size_t n = m.u.request.data_len < sizeof f->last_data ? m.u.request.data_len
                                                                   : sizeof f->last_data;
            memcpy(f->last_data, m.u.request.data, n);
            f->last.data = NULL;
            got++;
        } else if (m.type == DQ_MSG_STATS_REQUEST) {
            dq_msg_buf b = {0};
            const char *json = "{\"workers\": 3}";
            assert_int_equal(dq_msg_encode_stats_reply(&b, m.u.stats_request.req_id, json,
                                                       strlen(json), &err), DQ_OK);
            s_fake_send(f, zmq_msg_data(&p.f[0]), zmq_msg_size(&p.f[0]), &b);
            dq_msg_buf_free(&b);
            f->stats++;
        }
        dq_wire_parts_close(&p);
    }
}

/* The index in seen of the latest copy of req_id (-1 if never seen). */
static int s_fake_find(const s_fake *f, uint64_t req_id)
{
    for (int i = f->n_seen - 1; i >= 0; i--)
        if (f->seen[i].req_id == req_id) return i;
    return -1;
}

/* Answers the latest copy of req_id: ok with logits [n,2] = {req_id, -req_id}
 * per sample from teacher sha, or an error status with reason. */
static void s_fake_reply(s_fake *f, uint64_t req_id, dq_reply_status status, const char *sha)
{
    int i = s_fake_find(f, req_id);
    assert_true(i >= 0);
    dq_msg_buf b = {0};
    dq_err err;
    if (status != DQ_REPLY_OK) {
        assert_int_equal(dq_msg_encode_error_reply(&b, req_id, status, "queue full", &err), DQ_OK);
    } else {
        dq_msg_reply r;
        memset(&r, 0, sizeof r);
        r.req_id = req_id;
        r.status = DQ_REPLY_OK;
        r.n_outputs = 1;
        float v[2] = {(float)req_id, -(float)req_id};
        strcpy(r.outputs[0].name, "logits");
        r.outputs[0].ndim = 2;
        r.outputs[0].shape[0] = 1;
        r.outputs[0].shape[1] = 2;
        r.outputs[0].data = v;
        r.outputs[0].data_len = sizeof v;
        r.has_teacher = true;
        strcpy(r.teacher.service, "svc");
        strcpy(r.teacher.model, "m");
        memset(r.teacher.sha256, sha[0], DQ_MSG_SHA256_HEX);
        assert_int_equal(dq_msg_encode_reply(&b, &r, &err), DQ_OK);
    }
    s_fake_send(f, f->seen[i].id, f->seen[i].id_len, &b);
    dq_msg_buf_free(&b);
}

static dq_client_t *s_client(const s_fake *f, int hb_ms, int timeout_ms)
{
    dq_client_opts o;
    dq_client_opts_default(&o);
    o.max_inflight = 4;
    o.heartbeat_ms = hb_ms;
    o.request_timeout_ms = timeout_ms;
    dq_client_t *c = NULL;
    dq_err err;
    assert_int_equal(dq_client_new(&c, f->ep, &o, &err), DQ_OK);
    return c;
}

static void s_send(dq_client_t *c, uint64_t req_id)
{
    static const char *const outs[] = {"logits"};
    uint8_t px[1 * 1 * 2 * 3] = {1, 2, 3, 4, 5, (uint8_t)req_id};
    dq_client_request q = {.req_id = req_id, .service = "svc", .dtype = DQ_DTYPE_U8,
                           .shape = {1, 1, 2, 3}, .data = px, .n_outputs = 1, .outputs = outs};
    dq_err err;
    assert_int_equal(dq_client_send(c, &q, &err), DQ_OK);
}

/* Runs client and fake for up to ms, collecting delivered req_ids. */
static int s_pump(dq_client_t *c, s_fake *f, int ms, uint64_t *got, int cap)
{
    int n = 0;
    int64_t end = dq_clock_now_ms() + ms;
    while (dq_clock_now_ms() < end) {
        s_fake_poll(f, 5);
        dq_client_reply r;
        dq_err err;
        dq_status st = dq_client_recv(c, &r, 5, &err);
        if (st == DQ_ERR_TIMEOUT) continue;
        assert_int_equal(st, DQ_OK);
        assert_true(n < cap);
        got[n++] = r.req_id;
    }
    return n;
}

static void test_exactly_once_out_of_order(void **state)
{
    (void)state;
    s_fake f;
    s_fake_start(&f, 11);
    dq_client_t *c = s_client(&f, 1000, 0);
    s_send(c, 1);
    s_send(c, 2);
    s_send(c, 3);
    dq_err err;
    /* the same req_id twice in flight is the caller's bug */
    static const char *const outs[] = {"logits"};
    uint8_t px[6] = {0};
    dq_client_request dup = {.req_id = 2, .service = "svc", .dtype = DQ_DTYPE_U8,
                             .shape = {1, 1, 2, 3}, .data = px, .n_outputs = 1, .outputs = outs};
    assert_int_equal(dq_client_send(c, &dup, &err), DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "req_id 2"));
    for (int i = 0; i < 100 && f.n_seen < 3; i++) s_fake_poll(&f, 20);
    assert_int_equal(f.n_seen, 3);
    /* the body on the wire is what we asked for */
    assert_string_equal(f.last.service, "svc");
    assert_int_equal(f.last.dtype, DQ_DTYPE_U8);
    assert_int_equal(f.last.shape[3], 3);
    assert_int_equal(f.last.n_outputs, 1);
    assert_string_equal(f.last.outputs[0], "logits");
    assert_int_equal(f.last_data[5], 3);
    s_fake_reply(&f, 3, DQ_REPLY_OK, "a");
    s_fake_reply(&f, 1, DQ_REPLY_OK, "a");
    s_fake_reply(&f, 1, DQ_REPLY_OK, "a"); /* duplicate */
    s_fake_reply(&f, 2, DQ_REPLY_OK, "a");
    uint64_t order[3];
    for (int i = 0; i < 3; i++) {
        dq_client_reply r;
        assert_int_equal(dq_client_recv(c, &r, 2000, &err), DQ_OK);
        order[i] = r.req_id;
        assert_int_equal(r.status, DQ_REPLY_OK);
        assert_string_equal(r.service, "svc");
        assert_int_equal(r.n_outputs, 1);
        float v[2];
        dq_msg_f32_copy(v, r.outputs[0].data, 2);
        assert_true(v[0] == (float)r.req_id && v[1] == -(float)r.req_id);
        assert_non_null(r.teacher);
        assert_string_equal(r.teacher->model, "m");
        assert_false(r.teacher_changed);
        assert_int_equal(r.sends, 1);
        assert_int_equal(dq_client_reply_status(&r, &err), DQ_OK);
    }
    assert_int_equal(order[0], 3);
    assert_int_equal(order[1], 1);
    assert_int_equal(order[2], 2);
    dq_client_reply r;
    assert_int_equal(dq_client_recv(c, &r, 100, &err), DQ_ERR_TIMEOUT);
    dq_client_counters k;
    dq_client_get_counters(c, &k);
    assert_int_equal(k.duplicates, 1);
    assert_int_equal(k.delivered, 3);
    assert_int_equal(k.sent, 3);
    assert_int_equal(k.broker_epoch, 11);
    /* a different teacher for the same service is flagged */
    s_send(c, 4);
    for (int i = 0; i < 100 && f.n_seen < 4; i++) s_fake_poll(&f, 20);
    assert_int_equal(f.n_seen, 4);
    s_fake_reply(&f, 4, DQ_REPLY_OK, "b");
    assert_int_equal(dq_client_recv(c, &r, 2000, &err), DQ_OK);
    assert_true(r.teacher_changed);
    dq_client_destroy(&c);
    assert_null(c);
    s_fake_stop(&f);
}

/* Answers the latest copy of req_id with ok logits of nf floats (1 sample). */
static void s_fake_reply_floats(s_fake *f, uint64_t req_id, int nf)
{
    int i = s_fake_find(f, req_id);
    assert_true(i >= 0);
    float *v = calloc((size_t)nf, sizeof *v);
    assert_non_null(v);
    dq_msg_reply r;
    memset(&r, 0, sizeof r);
    r.req_id = req_id;
    r.status = DQ_REPLY_OK;
    r.n_outputs = 1;
    strcpy(r.outputs[0].name, "logits");
    r.outputs[0].ndim = 2;
    r.outputs[0].shape[0] = 1;
    r.outputs[0].shape[1] = nf;
    r.outputs[0].data = v;
    r.outputs[0].data_len = (size_t)nf * sizeof *v;
    r.has_teacher = true;
    strcpy(r.teacher.service, "svc");
    strcpy(r.teacher.model, "m");
    memset(r.teacher.sha256, 'a', DQ_MSG_SHA256_HEX);
    dq_msg_buf b = {0};
    dq_err err;
    assert_int_equal(dq_msg_encode_reply(&b, &r, &err), DQ_OK);
    s_fake_send(f, f->seen[i].id, f->seen[i].id_len, &b);
    dq_msg_buf_free(&b);
    free(v);
}

/* Issue 15: a request that says how many floats it expects gets a reply
 * that is larger (a hostile or broken teacher) as an error, its data never
 * handed out, still exactly once; one of the size asked for is delivered.
 * The socket's frame limit changes only with nothing in flight. */
static void test_oversize_reply_refused(void **state)
{
    (void)state;
    s_fake f;
    s_fake_start(&f, 12);
    dq_client_t *c = s_client(&f, 1000, 0);
    static const char *const outs[] = {"logits"};
    uint8_t px[6] = {0};
    dq_client_request q = {.req_id = 1, .service = "svc", .dtype = DQ_DTYPE_U8,
                           .shape = {1, 1, 2, 3}, .data = px, .n_outputs = 1, .outputs = outs,
                           .reply_floats = 2000};
    dq_err err;
    assert_int_equal(dq_client_send(c, &q, &err), DQ_OK);
    q.req_id = 2;
    assert_int_equal(dq_client_send(c, &q, &err), DQ_OK);
    assert_int_equal(dq_client_set_max_msg_bytes(c, 1 << 20, &err), DQ_ERR_ARG);
    for (int i = 0; i < 100 && f.n_seen < 2; i++) s_fake_poll(&f, 20);
    assert_int_equal(f.n_seen, 2);
    s_fake_reply_floats(&f, 1, 2000);  /* what it asked for */
    s_fake_reply_floats(&f, 2, 3200);  /* 4.8 KB more than 1 x 2000 floats + slack */
    s_fake_reply_floats(&f, 2, 3200);  /* and again: a duplicate, dropped */
    for (int k = 0; k < 2; k++) {
        dq_client_reply r;
        assert_int_equal(dq_client_recv(c, &r, 2000, &err), DQ_OK);
        if (r.req_id == 1) {
            assert_int_equal(r.status, DQ_REPLY_OK);
            assert_int_equal(r.outputs[0].shape[1], 2000);
        } else {
            assert_int_equal(r.req_id, 2);
            assert_int_equal(r.status, DQ_REPLY_ERROR);
            assert_int_equal(r.n_outputs, 0);
            assert_null(r.outputs);
            assert_non_null(strstr(r.error, "larger than the 12096 bytes request 2 asked for"));
        }
    }
    dq_client_reply r;
    assert_int_equal(dq_client_recv(c, &r, 100, &err), DQ_ERR_TIMEOUT);
    dq_client_counters k;
    dq_client_get_counters(c, &k);
    assert_int_equal(k.oversize, 1);
    assert_int_equal(k.delivered, 2);
    assert_int_equal(k.duplicates, 1);
    /* nothing in flight: a new socket with the new limit, which still works */
    assert_int_equal(dq_client_set_max_msg_bytes(c, 64 << 10, &err), DQ_OK);
    q.req_id = 3;
    assert_int_equal(dq_client_send(c, &q, &err), DQ_OK);
    for (int i = 0; i < 100 && f.n_seen < 3; i++) s_fake_poll(&f, 20);
    assert_int_equal(f.n_seen, 3);
    s_fake_reply_floats(&f, 3, 10);
    assert_int_equal(dq_client_recv(c, &r, 2000, &err), DQ_OK);
    assert_int_equal(r.req_id, 3);
    assert_int_equal(r.status, DQ_REPLY_OK);
    dq_client_destroy(&c);
    s_fake_stop(&f);
}

/* retry_ms: the broker's "retry later" (overloaded, timeout) is answered by
 * sending the request again, not delivered; the ok answer to the second
 * copy is the one delivered, exactly once. */
static void test_retry_overloaded(void **state)
{
    (void)state;
    s_fake f;
    s_fake_start(&f, 13);
    dq_client_opts o;
    dq_client_opts_default(&o);
    o.max_inflight = 4;
    o.retry_ms = 50;
    dq_client_t *c = NULL;
    dq_err err;
    assert_int_equal(dq_client_new(&c, f.ep, &o, &err), DQ_OK);
    s_send(c, 1);
    for (int i = 0; i < 100 && f.n_seen < 1; i++) s_fake_poll(&f, 20);
    s_fake_reply(&f, 1, DQ_REPLY_OVERLOADED, "a");
    dq_client_reply r;
    assert_int_equal(dq_client_recv(c, &r, 30, &err), DQ_ERR_TIMEOUT); /* not delivered */
    for (int i = 0; i < 100 && f.n_seen < 2; i++) {
        s_fake_poll(&f, 10);
        if (dq_client_recv(c, &r, 10, &err) == DQ_OK) fail_msg("delivered a retried reply");
    }
    assert_int_equal(f.n_seen, 2);
    s_fake_reply(&f, 1, DQ_REPLY_TIMEOUT, "a");
    for (int i = 0; i < 100 && f.n_seen < 3; i++) {
        s_fake_poll(&f, 10);
        if (dq_client_recv(c, &r, 10, &err) == DQ_OK) fail_msg("delivered a retried reply");
    }
    assert_int_equal(f.n_seen, 3);
    s_fake_reply(&f, 1, DQ_REPLY_OK, "a");
    assert_int_equal(dq_client_recv(c, &r, 2000, &err), DQ_OK);
    assert_int_equal(r.req_id, 1);
    assert_int_equal(r.status, DQ_REPLY_OK);
    assert_int_equal(r.sends, 3);
    dq_client_counters k;
    dq_client_get_counters(c, &k);
    assert_int_equal(k.retried, 2);
    assert_int_equal(k.delivered, 1);
    dq_client_destroy(&c);
    s_fake_stop(&f);
}

static void test_resend_after_restart(void **state)
{
    (void)state;
    s_fake f;
    s_fake_start(&f, 21);
    dq_client_t *c = s_client(&f, 100, 0);
    s_send(c, 1);
    s_send(c, 2);
    uint64_t got[8];
    assert_int_equal(s_pump(c, &f, 150, got, 8), 0);
    assert_int_equal(f.n_seen, 2);
    s_fake_reply(&f, 1, DQ_REPLY_OK, "a");
    assert_int_equal(s_pump(c, &f, 100, got, 8), 1);
    assert_int_equal(got[0], 1);
    /* the broker dies holding request 2 and comes back with a new epoch */
    s_fake_restart(&f, 22);
    f.n_seen = 0;
    int64_t end = dq_clock_now_ms() + 5000;
    while (s_fake_find(&f, 2) < 0 && dq_clock_now_ms() < end) s_pump(c, &f, 20, got, 8);
    assert_true(s_fake_find(&f, 2) >= 0);
    assert_int_equal(s_fake_find(&f, 1), -1); /* delivered: never resent */
    s_fake_reply(&f, 2, DQ_REPLY_OK, "a");
    s_fake_reply(&f, 2, DQ_REPLY_OK, "a");
    int n = s_pump(c, &f, 300, got, 8);
    assert_int_equal(n, 1);
    assert_int_equal(got[0], 2);
    dq_client_counters k;
    dq_client_get_counters(c, &k);
    assert_true(k.reconnects >= 1);
    assert_true(k.resent >= 1);
    assert_int_equal(k.delivered, 2);
    assert_true(k.duplicates >= 1);
    assert_int_equal(k.broker_epoch, 22);
    assert_int_equal(dq_client_inflight(c), 0);
    dq_client_destroy(&c);
    s_fake_stop(&f);
}

static void test_resend_on_epoch_change(void **state)
{
    (void)state;
    s_fake f;
    s_fake_start(&f, 31);
    dq_client_t *c = s_client(&f, 50, 0);
    s_send(c, 7);
    uint64_t got[4];
    assert_int_equal(s_pump(c, &f, 150, got, 4), 0); /* pings answered with epoch 31 */
    assert_int_equal(f.n_seen, 1);
    dq_client_counters k;
    dq_client_get_counters(c, &k);
    assert_int_equal(k.broker_epoch, 31);
    /* same connection, new epoch (a restart the socket did not notice) */
    f.epoch = 32;
    int64_t end = dq_clock_now_ms() + 3000;
    while (f.n_seen < 2 && dq_clock_now_ms() < end) s_pump(c, &f, 20, got, 4);
    assert_int_equal(f.n_seen, 2);
    assert_int_equal(f.seen[1].req_id, 7);
    dq_client_get_counters(c, &k);
    assert_int_equal(k.restarts, 1);
    assert_int_equal(k.resent, 1);
    dq_client_destroy(&c);
    s_fake_stop(&f);
}

static void test_silent_broker_gets_new_socket(void **state)
{
    (void)state;
    s_fake f;
    s_fake_start(&f, 41);
    f.answer_pings = false;
    dq_client_t *c = s_client(&f, 40, 0); /* silent after 3 x 40 ms */
    s_send(c, 5);
    uint64_t got[4];
    int64_t end = dq_clock_now_ms() + 3000;
    while (f.n_seen < 2 && dq_clock_now_ms() < end) s_pump(c, &f, 20, got, 4);
    assert_int_equal(f.n_seen, 2);
    assert_int_equal(f.seen[1].req_id, 5);
    /* the resend came over a different connection */
    assert_false(f.seen[0].id_len == f.seen[1].id_len &&
                 memcmp(f.seen[0].id, f.seen[1].id, f.seen[0].id_len) == 0);
    assert_true(f.pings >= 1);
    s_fake_reply(&f, 5, DQ_REPLY_OK, "a");
    assert_int_equal(s_pump(c, &f, 200, got, 4), 1);
    dq_client_counters k;
    dq_client_get_counters(c, &k);
    assert_true(k.reconnects >= 1);
    dq_client_destroy(&c);
    s_fake_stop(&f);
}

static void test_error_statuses_and_local_timeout(void **state)
{
    (void)state;
    s_fake f;
    s_fake_start(&f, 51);
    dq_client_t *c = s_client(&f, 1000, 300);
    s_send(c, 1);
    s_send(c, 2);
    for (int i = 0; i < 100 && f.n_seen < 2; i++) s_fake_poll(&f, 20);
    assert_int_equal(f.n_seen, 2);
    s_fake_reply(&f, 1, DQ_REPLY_OVERLOADED, NULL);
    dq_client_reply r;
    dq_err err;
    assert_int_equal(dq_client_recv(c, &r, 2000, &err), DQ_OK);
    assert_int_equal(r.req_id, 1);
    assert_int_equal(r.status, DQ_REPLY_OVERLOADED);
    assert_null(r.teacher);
    assert_int_equal(dq_client_reply_status(&r, &err), DQ_ERR_OVERLOADED);
    assert_non_null(strstr(err.msg, "service svc"));
    assert_non_null(strstr(err.msg, "overloaded: queue full"));
    /* request 2 is never answered: a local timeout naming the service */
    int64_t t0 = dq_clock_now_ms();
    assert_int_equal(dq_client_recv(c, &r, 2000, &err), DQ_OK);
    assert_true(dq_clock_now_ms() - t0 < 1000);
    assert_int_equal(r.req_id, 2);
    assert_int_equal(r.status, DQ_REPLY_TIMEOUT);
    assert_non_null(strstr(r.error, "within 300 ms"));
    assert_int_equal(dq_client_reply_status(&r, &err), DQ_ERR_TIMEOUT);
    assert_non_null(strstr(err.msg, "service svc: request 2: timeout: no reply"));
    /* its late reply is dropped */
    s_fake_reply(&f, 2, DQ_REPLY_OK, "a");
    assert_int_equal(dq_client_recv(c, &r, 200, &err), DQ_ERR_TIMEOUT);
    dq_client_counters k;
    dq_client_get_counters(c, &k);
    assert_int_equal(k.local_timeouts, 1);
    assert_int_equal(k.duplicates, 1);
    /* max_inflight (4) */
    for (uint64_t i = 10; i < 14; i++) s_send(c, i);
    static const char *const outs[] = {"logits"};
    uint8_t px[6] = {0};
    dq_client_request q = {.req_id = 99, .service = "svc", .dtype = DQ_DTYPE_U8,
                           .shape = {1, 1, 2, 3}, .data = px, .n_outputs = 1, .outputs = outs};
    assert_int_equal(dq_client_send(c, &q, &err), DQ_ERR_OVERLOADED);
    dq_client_destroy(&c);
    s_fake_stop(&f);
}

static void *s_stats_thread(void *arg)
{
    s_fake *f = arg;
    for (int i = 0; i < 100 && f->stats == 0; i++) s_fake_poll(f, 20);
    return NULL;
}

static void test_stats(void **state)
{
    (void)state;
    s_fake f;
    s_fake_start(&f, 61);
    dq_client_t *c = s_client(&f, 1000, 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, s_stats_thread, &f), 0);
    char *json = NULL;
    dq_err err;
    assert_int_equal(dq_client_stats(c, &json, 3000, &err), DQ_OK);
    assert_string_equal(json, "{\"workers\": 3}");
    free(json);
    pthread_join(th, NULL);
    s_send(c, 1);
    assert_int_equal(dq_client_stats(c, &json, 100, &err), DQ_ERR_ARG);
    dq_client_destroy(&c);
    s_fake_stop(&f);
}

static void test_parse_url(void **state)
{
    (void)state;
    char ep[64], svc[DQ_MSG_NAME_MAX + 1];
    dq_err err;
    assert_int_equal(dq_client_parse_url("tcp://10.0.0.2:5555/fmnist", ep, sizeof ep, svc, &err),
                     DQ_OK);
    assert_string_equal(ep, "tcp://10.0.0.2:5555");
    assert_string_equal(svc, "fmnist");
    assert_int_equal(dq_client_parse_url("ipc:///run/dq/fe/deep", ep, sizeof ep, svc, &err), DQ_OK);
    assert_string_equal(ep, "ipc:///run/dq/fe");
    assert_string_equal(svc, "deep");
    assert_int_equal(dq_client_parse_url("tcp://host:5555/", ep, sizeof ep, svc, &err), DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "no service name"));
    assert_int_equal(dq_client_parse_url("tcp://host:5555", ep, sizeof ep, svc, &err), DQ_ERR_ARG);
    assert_int_equal(dq_client_parse_url("tcp://host/svc", ep, sizeof ep, svc, &err), DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "no port"));
    assert_int_equal(dq_client_parse_url("http://host:1/svc", ep, sizeof ep, svc, &err), DQ_ERR_ARG);
    assert_int_equal(dq_client_parse_url("fmnist", ep, sizeof ep, svc, &err), DQ_ERR_ARG);
    assert_int_equal(dq_client_parse_url("tcp://a-very-long-host-name-indeed.example:5555/x", ep,
                                         16, svc, &err), DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "too long"));
}

/* The ordered client (libdistillq's and distillq-predict's): results in
 * submission order whatever order the replies come in; at most K
 * outstanding; an "overloaded" reply sends the batch again (same req_id)
 * and is not an error; a bad_request is, and stays one (the order is
 * broken). */
static int s_copies(const s_fake *f, uint64_t req_id)
{
    int n = 0;
    for (int i = 0; i < f->n_seen; i++) n += f->seen[i].req_id == req_id;
    return n;
}

static void test_ordered_client_in_order_and_retry(void **state)
{
    (void)state;
    s_fake f;
    s_fake_start(&f, 5);
    dq_client_opts o;
    dq_client_opts_default(&o);
    o.max_inflight = 3;
    o.request_timeout_ms = 5000;
    char url[300];
    snprintf(url, sizeof url, "%s/svc", f.ep);
    dq_ordered_t *q = NULL;
    dq_err err;
    assert_int_equal(dq_ordered_new(&q, url, &o, &err), DQ_OK);
    static const char *const outs[] = {"logits"};
    uint8_t px[6] = {1, 2, 3, 4, 5, 6};
    const int64_t shape[4] = {1, 1, 2, 3};
    for (uint64_t i = 0; i < 3; i++) {
        uint64_t seq = 99;
        assert_int_equal(dq_ordered_submit(q, DQ_DTYPE_U8, shape, px, 1, outs, &seq, &err), DQ_OK);
        assert_true(seq == i);
    }
    assert_int_equal(dq_ordered_submit(q, DQ_DTYPE_U8, shape, px, 1, outs, NULL, &err),
                     DQ_ERR_OVERLOADED);
    for (int i = 0; i < 100 && f.n_seen < 3; i++) s_fake_poll(&f, 20);
    assert_int_equal(f.n_seen, 3);
    assert_true(f.seen[0].req_id == 1); /* ids start at 1 */
    s_fake_reply(&f, 3, DQ_REPLY_OK, "a");
    s_fake_reply(&f, 2, DQ_REPLY_OVERLOADED, "a");
    s_fake_reply(&f, 1, DQ_REPLY_OK, "a");
    uint64_t want = 0;
    int copies2 = 1;
    for (int i = 0; i < 400 && want < 3; i++) {
        s_fake_poll(&f, 5);
        if (s_copies(&f, 2) > copies2) { /* the resend after "overloaded" */
            copies2 = s_copies(&f, 2);
            s_fake_reply(&f, 2, DQ_REPLY_OK, "a");
        }
        const dq_ordered_result *r;
        dq_status st = dq_ordered_next(q, &r, 5, &err);
        if (st == DQ_ERR_TIMEOUT) continue;
        assert_int_equal(st, DQ_OK);
        assert_true(r->seq == want);
        assert_int_equal(r->n_outputs, 1);
        assert_string_equal(r->outputs[0].name, "logits");
        assert_true(r->outputs[0].data[0] == (float)(want + 1));
        assert_true(r->outputs[0].data[1] == -(float)(want + 1));
        assert_false(dq_ordered_broken(q));
        want++;
    }
    assert_true(want == 3);
    assert_int_equal(copies2, 2);
    assert_true(dq_ordered_retries(q) == 1);
    assert_int_equal(dq_ordered_pending(q), 0);
    /* a bad_request is an error, at once and again */
    assert_int_equal(dq_ordered_submit(q, DQ_DTYPE_U8, shape, px, 1, outs, NULL, &err), DQ_OK);
    for (int i = 0; i < 100 && f.n_seen < 5; i++) s_fake_poll(&f, 20);
    assert_true(f.seen[f.n_seen - 1].req_id == 4);
    s_fake_reply(&f, 4, DQ_REPLY_BAD_REQUEST, "a");
    const dq_ordered_result *r;
    dq_status st = DQ_ERR_TIMEOUT;
    for (int i = 0; i < 200 && st == DQ_ERR_TIMEOUT; i++) st = dq_ordered_next(q, &r, 10, &err);
    assert_int_equal(st, DQ_ERR_ARG);
    assert_true(dq_ordered_broken(q));
    assert_int_equal(dq_ordered_next(q, &r, 0, &err), DQ_ERR_ARG);
    dq_ordered_destroy(&q);
    assert_null(q);
    s_fake_stop(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exactly_once_out_of_order),
        cmocka_unit_test(test_resend_after_restart),
        cmocka_unit_test(test_resend_on_epoch_change),
        cmocka_unit_test(test_silent_broker_gets_new_socket),
        cmocka_unit_test(test_error_statuses_and_local_timeout),
        cmocka_unit_test(test_stats),
        cmocka_unit_test(test_parse_url),
        cmocka_unit_test(test_oversize_reply_refused),
        cmocka_unit_test(test_retry_overloaded),
        cmocka_unit_test(test_ordered_client_in_order_and_retry),
    };
    return cmocka_run_group_tests_name("client", tests, s_setup, s_teardown);
}
