/* svc_poke.c - test helper for tests/test_service.sh: sends malformed and
 * unservable frames to a broker frontend and checks that each one gets a
 * bad_request reply, then that a good request is still served.
 *
 *   svc_poke FRONTEND SERVICE     (the service takes 1x28x28 u8 images)
 *
 * Prints one line per reply; exits 0 when every expected reply came with
 * the expected status within 5 s, 1 otherwise.
 */
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/msg.h"
#include "proto/wire.h"

static void s_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

/* A request whose data bin is shorter than its shape says. */
static void s_pack_short_data(msgpack_sbuffer *sb, const char *service)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 7);
    s_str(&pk, "v"); msgpack_pack_uint64(&pk, 1);
    s_str(&pk, "type"); s_str(&pk, "request");
    s_str(&pk, "req_id"); msgpack_pack_uint64(&pk, 78);
    s_str(&pk, "service"); s_str(&pk, service);
    s_str(&pk, "dtype"); s_str(&pk, "u8");
    s_str(&pk, "shape"); msgpack_pack_array(&pk, 4);
    msgpack_pack_uint64(&pk, 1); msgpack_pack_uint64(&pk, 1);
    msgpack_pack_uint64(&pk, 28); msgpack_pack_uint64(&pk, 28);
    s_str(&pk, "data"); msgpack_pack_bin(&pk, 10); msgpack_pack_bin_body(&pk, "0123456789", 10);
}

/* A request map with a req_id but nothing else it needs. */
static void s_pack_missing(msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    s_str(&pk, "v"); msgpack_pack_uint64(&pk, 1);
    s_str(&pk, "type"); s_str(&pk, "request");
    s_str(&pk, "req_id"); msgpack_pack_uint64(&pk, 77);
}

static int s_send1(void *s, const void *d, size_t n)
{
    dq_err err;
    const void *dd[1] = {d};
    size_t ll[1] = {n};
    if (dq_wire_send(s, 1, dd, ll, 0, &err) == DQ_OK) return 0;
    fprintf(stderr, "svc_poke: %s\n", err.msg);
    return -1;
}

static int s_send_request(void *s, const char *service, uint64_t id, int64_t c,
                          const char *output)
{
    static uint8_t px[3 * 28 * 28];
    dq_msg_request r;
    memset(&r, 0, sizeof r);
    r.req_id = id;
    snprintf(r.service, sizeof r.service, "%s", service);
    r.dtype = DQ_DTYPE_U8;
    r.shape[0] = 1;
    r.shape[1] = c;
    r.shape[2] = r.shape[3] = 28;
    r.data = px;
    r.data_len = (size_t)c * 28 * 28;
    r.n_outputs = 1;
    snprintf(r.outputs[0], sizeof r.outputs[0], "%s", output);
    dq_msg_buf b = {0};
    dq_err err;
    int rc = dq_msg_encode_request(&b, &r, &err) == DQ_OK ? s_send1(s, b.data, b.len) : -1;
    dq_msg_buf_free(&b);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: svc_poke FRONTEND SERVICE\n");
        return 2;
    }
    const char *service = argv[2];
    void *ctx = zmq_ctx_new();
    void *s = NULL;
    dq_err err;
    if (!ctx || dq_wire_dealer_new(&s, ctx, argv[1], NULL, &err) != DQ_OK) {
        fprintf(stderr, "svc_poke: %s\n", err.msg);
        return 1;
    }
    int rc = 0;
    /* 1. not msgpack, 2. a two-frame message: replies with req_id 0 */
    rc |= s_send1(s, "garbage!", 8);
    zmq_send(s, "a", 1, ZMQ_SNDMORE);
    rc |= s_send1(s, "b", 1);
    /* 3. fields missing (77), 4. data shorter than the shape (78) */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    s_pack_missing(&sb);
    rc |= s_send1(s, sb.data, sb.size);
    msgpack_sbuffer_clear(&sb);
    s_pack_short_data(&sb, service);
    rc |= s_send1(s, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    /* 5. 3 channels for a 1-channel model (79), 6. unknown output (80),
     * 7. a good request (81) */
    rc |= s_send_request(s, service, 79, 3, "logits");
    rc |= s_send_request(s, service, 80, 1, "no_such_output");
    rc |= s_send_request(s, service, 81, 1, "logits");
    if (rc) return 1;

    int want_zero = 2, got_zero = 0, ok = 0;
    const uint64_t bad_ids[] = {77, 78, 79, 80};
    int got_bad[4] = {0};
    dq_msg_decoder_t *dec = NULL;
    if (dq_msg_decoder_new(&dec, &err) != DQ_OK) return 1;
    int64_t end = dq_clock_now_ms() + 5000;
    int replies = 0;
    while (replies < 7 && dq_clock_now_ms() < end) {
        zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 100) <= 0) continue;
        dq_wire_parts p;
        if (dq_wire_recv(s, &p, 0, &err) != DQ_OK) break;
        dq_msg m;
        if (p.n == 1 && dq_msg_decode(dec, zmq_msg_data(&p.f[0]), zmq_msg_size(&p.f[0]), &m,
                                      &err) == DQ_OK && m.type == DQ_MSG_REPLY) {
            const dq_msg_reply *r = &m.u.reply;
            replies++;
            printf("reply req_id=%llu status=%s error=%s\n", (unsigned long long)r->req_id,
                   dq_reply_status_name(r->status), r->error);
            if (r->req_id == 0 && r->status == DQ_REPLY_BAD_REQUEST) got_zero++;
            for (int i = 0; i < 4; i++)
                if (r->req_id == bad_ids[i] && r->status == DQ_REPLY_BAD_REQUEST) got_bad[i]++;
            if (r->req_id == 81 && r->status == DQ_REPLY_OK) ok++;
        }
        dq_wire_parts_close(&p);
    }
    dq_msg_decoder_destroy(&dec);
    zmq_close(s);
    zmq_ctx_term(ctx);
    int good = got_zero == want_zero && ok == 1 && replies == 7;
    for (int i = 0; i < 4; i++) good = good && got_bad[i] == 1;
    printf("%s: %d replies, %d bad_request without req_id, good request %s\n",
           good ? "PASS" : "FAIL", replies, got_zero, ok ? "served" : "NOT served");
    return good ? 0 : 1;
}
