/* svc_flood.c - test helper for tests/test_flood.sh (issue 15): a hostile
 * client that floods a broker frontend with large valid requests, and
 * oversize frames, from many connections at once, then checks that every
 * request it sent was answered exactly once (whatever the status).
 *
 *   svc_flood FRONTEND SERVICE [-c CONNS] [-n REQUESTS] [-b BATCH]
 *             [-o OVERSIZE_BYTES] [-k OVERSIZE_COUNT] [-t SECONDS]
 *
 * REQUESTS valid u8 requests of BATCH 1x28x28 images (BATCH*784 bytes
 * each) are sent round-robin over CONNS DEALER sockets as fast as the
 * sockets take them; OVERSIZE_COUNT frames of OVERSIZE_BYTES (a request
 * whose data is that large) go out among them. Then it waits up to SECONDS
 * for the answers. One summary line on stdout:
 *
 *   flood: sent=N ok=.. overloaded=.. bad_request=.. timeout=.. error=..
 *          oversize_sent=.. oversize_answered=.. duplicates=.. missing=..
 *
 * Exit 0 when no request was answered twice and none went unanswered.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto/msg.h"
#include "proto/wire.h"

typedef struct {
    int conns, requests, oversize_count;
    int64_t batch, oversize_bytes;
    int seconds;
} s_args;

typedef struct {
    int ok, overloaded, bad, timeout, error, over_answered, dup, unknown;
} s_tally;

static int s_encode(dq_msg_buf *b, const char *service, uint64_t id, int64_t n, const void *px)
{
    dq_msg_request r;
    memset(&r, 0, sizeof r);
    r.req_id = id;
    snprintf(r.service, sizeof r.service, "%s", service);
    r.dtype = DQ_DTYPE_U8;
    r.shape[0] = n;
    r.shape[1] = 1;
    r.shape[2] = r.shape[3] = 28;
    r.data = px;
    r.data_len = (size_t)n * 28 * 28;
    r.n_outputs = 1;
    snprintf(r.outputs[0], sizeof r.outputs[0], "logits");
    dq_err err;
    dq_msg_buf_reset(b);
    if (dq_msg_encode_request(b, &r, &err) != DQ_OK) {
        fprintf(stderr, "svc_flood: %s\n", err.msg);
        return -1;
    }
    return 0;
}

/* Reads every reply waiting on socket c into the tally; answers[] counts
 * the answers per request (req_id = 1 + request index). */
static void s_drain(void *s, dq_msg_decoder_t *dec, int *answers, int n, s_tally *t)
{
    for (;;) {
        dq_wire_parts p;
        dq_err err;
        if (dq_wire_recv(s, &p, ZMQ_DONTWAIT, &err) != DQ_OK) return;
        dq_msg m;
        if (p.n == 1 &&
            dq_msg_decode(dec, zmq_msg_data(&p.f[0]), zmq_msg_size(&p.f[0]), &m, &err) ==
                DQ_OK &&
            m.type == DQ_MSG_REPLY) {
            const dq_msg_reply *r = &m.u.reply;
            if (r->req_id == 0) {
                t->over_answered++;
            } else if (r->req_id > (uint64_t)n) {
                t->unknown++;
            } else if (answers[r->req_id - 1]++ > 0) {
                t->dup++;
            } else {
                switch (r->status) {
                case DQ_REPLY_OK: t->ok++; break;
                case DQ_REPLY_OVERLOADED: t->overloaded++; break;
                case DQ_REPLY_BAD_REQUEST: t->bad++; break;
                case DQ_REPLY_TIMEOUT: t->timeout++; break;
                default: t->error++; break;
                }
            }
        }
        dq_wire_parts_close(&p);
    }
}

static int s_parse(s_args *a, int argc, char **argv)
{
    a->conns = 4;
    a->requests = 100;
    a->batch = 4000;
    a->oversize_bytes = 0;
    a->oversize_count = 0;
    a->seconds = 60;
    int c;
    while ((c = getopt(argc, argv, "c:n:b:o:k:t:")) != -1) {
        switch (c) {
        case 'c': a->conns = atoi(optarg); break;
        case 'n': a->requests = atoi(optarg); break;
        case 'b': a->batch = atoll(optarg); break;
        case 'o': a->oversize_bytes = atoll(optarg); break;
        case 'k': a->oversize_count = atoi(optarg); break;
        case 't': a->seconds = atoi(optarg); break;
        default: return -1;
        }
    }
    if (argc - optind != 2 || a->conns < 1 || a->conns > 1024 || a->requests < 1 ||
        a->batch < 1 || a->seconds < 1 || (a->oversize_count > 0 && a->oversize_bytes < 784))
        return -1;
    return optind;
}

int main(int argc, char **argv)
{
    s_args a;
    int at = s_parse(&a, argc, argv);
    if (at < 0) {
        fprintf(stderr, "usage: svc_flood FRONTEND SERVICE [-c CONNS] [-n REQUESTS] "
                        "[-b BATCH] [-o OVERSIZE_BYTES] [-k OVERSIZE_COUNT] [-t SECONDS]\n");
        return 2;
    }
    const char *fe = argv[at], *service = argv[at + 1];
    int64_t over_n = a.oversize_bytes / 784;
    int64_t px_n = a.batch > over_n ? a.batch : over_n;
    uint8_t *px = malloc((size_t)px_n * 784);
    void **socks = calloc((size_t)a.conns, sizeof *socks);
    int *answers = calloc((size_t)a.requests, sizeof *answers);
    void *ctx = zmq_ctx_new();
    dq_msg_decoder_t *dec = NULL;
    dq_err err;
    if (!px || !socks || !answers || !ctx || dq_msg_decoder_new(&dec, &err) != DQ_OK) {
        fprintf(stderr, "svc_flood: out of memory\n");
        return 1;
    }
    for (int64_t i = 0; i < px_n * 784; i++) px[i] = (uint8_t)(i * 131 + (i >> 9));
    for (int i = 0; i < a.conns; i++) {
        dq_wire_opts o = {0};
        o.sndhwm = 100000; /* a flood: never stop sending on our side */
        o.rcvhwm = 100000;
        if (dq_wire_dealer_new(&socks[i], ctx, fe, &o, &err) != DQ_OK) {
            fprintf(stderr, "svc_flood: %s\n", err.msg);
            return 1;
        }
    }
    dq_msg_buf b;
    dq_msg_buf_init(&b);
    s_tally t;
    memset(&t, 0, sizeof t);
    int over_sent = 0, sent = 0;
    int over_every = a.oversize_count > 0 ? a.requests / a.oversize_count : 0;
    if (over_every < 1) over_every = 1;
    int64_t t0 = dq_clock_now_ms();
    for (int i = 0; i < a.requests; i++) {
        void *s = socks[i % a.conns];
        if (s_encode(&b, service, (uint64_t)i + 1, a.batch, px) != 0) return 1;
        if (zmq_send(s, b.data, b.len, 0) < 0) {
            fprintf(stderr, "svc_flood: send: %s\n", zmq_strerror(zmq_errno()));
            return 1;
        }
        sent++;
        if (over_sent < a.oversize_count && i % over_every == 0) {
            /* req_id 0: the broker answers an oversize frame without decoding it */
            if (s_encode(&b, service, 0, over_n, px) != 0) return 1;
            if (zmq_send(s, b.data, b.len, 0) >= 0) over_sent++;
        }
        for (int c = 0; c < a.conns; c++) s_drain(socks[c], dec, answers, a.requests, &t);
    }
    int64_t end = t0 + (int64_t)a.seconds * 1000;
    for (;;) {
        int missing = 0;
        for (int i = 0; i < a.requests; i++) missing += answers[i] == 0;
        if ((missing == 0 && t.over_answered >= over_sent) || dq_clock_now_ms() >= end) break;
        zmq_pollitem_t items[1024];
        for (int c = 0; c < a.conns; c++) items[c] = (zmq_pollitem_t){socks[c], 0, ZMQ_POLLIN, 0};
        zmq_poll(items, a.conns, 100);
        for (int c = 0; c < a.conns; c++) s_drain(socks[c], dec, answers, a.requests, &t);
    }
    int missing = 0;
    for (int i = 0; i < a.requests; i++) missing += answers[i] == 0;
    printf("flood: sent=%d ok=%d overloaded=%d bad_request=%d timeout=%d error=%d "
           "oversize_sent=%d oversize_answered=%d duplicates=%d missing=%d unknown=%d "
           "seconds=%.1f\n",
           sent, t.ok, t.overloaded, t.bad, t.timeout, t.error, over_sent, t.over_answered,
           t.dup, missing, t.unknown, (double)(dq_clock_now_ms() - t0) / 1000.0);
    fflush(stdout);
    int linger = 0;
    for (int c = 0; c < a.conns; c++) {
        zmq_setsockopt(socks[c], ZMQ_LINGER, &linger, sizeof linger);
        zmq_close(socks[c]);
    }
    zmq_ctx_term(ctx);
    dq_msg_decoder_destroy(&dec);
    dq_msg_buf_free(&b);
    free(px);
    free(socks);
    free(answers);
    return t.dup == 0 && missing == 0 && t.unknown == 0 ? 0 : 1;
}
