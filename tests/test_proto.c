/* test_proto.c - the wire codec: round trip of every message type, and the
 * decoder on malformed input (truncated, wrong types, missing fields, bad
 * lengths, overflowing shapes, hostile container counts, random bytes),
 * which must fail with a reason and never crash or over-allocate. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <msgpack.h>

#include "proto/msg.h"

#define SHA "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

typedef struct {
    dq_msg_decoder_t *dec;
    dq_msg_buf buf;
} fixture;

static int s_setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    dq_err err = {{0}};
    if (dq_msg_decoder_new(&f->dec, &err) != DQ_OK) return -1;
    dq_msg_buf_init(&f->buf);
    *state = f;
    return 0;
}

/* Each test starts with an empty buffer (the group shares one). */
static fixture *s_fix(void **state)
{
    fixture *f = *state;
    dq_msg_buf_reset(&f->buf);
    return f;
}

static int s_teardown(void **state)
{
    fixture *f = *state;
    dq_msg_decoder_destroy(&f->dec);
    assert_null(f->dec);
    dq_msg_buf_free(&f->buf);
    free(f);
    return 0;
}

static void s_fill_request(dq_msg_request *r, uint8_t *px, size_t npx)
{
    memset(r, 0, sizeof *r);
    r->req_id = 0x1122334455667788ull;
    strcpy(r->service, "fmnist");
    r->dtype = DQ_DTYPE_U8;
    r->shape[0] = 2, r->shape[1] = 1, r->shape[2] = 4, r->shape[3] = 3;
    for (size_t i = 0; i < npx; i++) px[i] = (uint8_t)(i * 7 + 1);
    r->data = px;
    r->data_len = npx;
    r->n_outputs = 2;
    strcpy(r->outputs[0], "logits");
    strcpy(r->outputs[1], "features");
}

static void test_request_round_trip_zero_copy(void **state)
{
    fixture *f = s_fix(state);
    dq_err err = {{0}};
    uint8_t px[24];
    dq_msg_request r;
    s_fill_request(&r, px, sizeof px);
    assert_int_equal(dq_msg_encode_request(&f->buf, &r, &err), DQ_OK);
    dq_msg m;
    assert_int_equal(dq_msg_decode(f->dec, f->buf.data, f->buf.len, &m, &err), DQ_OK);
    assert_int_equal(m.type, DQ_MSG_REQUEST);
    assert_true(m.has_req_id);
    assert_true(m.req_id == 0x1122334455667788ull);
    const dq_msg_request *d = &m.u.request;
    assert_true(d->req_id == r.req_id);
    assert_string_equal(d->service, "fmnist");
    assert_int_equal(d->dtype, DQ_DTYPE_U8);
    assert_int_equal(d->shape[0], 2);
    assert_int_equal(d->shape[1], 1);
    assert_int_equal(d->shape[2], 4);
    assert_int_equal(d->shape[3], 3);
    assert_int_equal(d->data_len, 24);
    assert_memory_equal(d->data, px, 24);
    /* zero copy: the data points into the encoded buffer */
    assert_true((const uint8_t *)d->data > f->buf.data &&
                (const uint8_t *)d->data + 24 <= f->buf.data + f->buf.len);
    assert_int_equal(d->n_outputs, 2);
    assert_string_equal(d->outputs[0], "logits");
    assert_string_equal(d->outputs[1], "features");

    /* f32 variant: 4 bytes per element */
    float xf[24];
    for (int i = 0; i < 24; i++) xf[i] = -1.5f + 0.25f * (float)i;
    r.dtype = DQ_DTYPE_F32;
    r.data = xf;
    r.data_len = sizeof xf;
    dq_msg_buf_reset(&f->buf);
    assert_int_equal(dq_msg_encode_request(&f->buf, &r, &err), DQ_OK);
    assert_int_equal(dq_msg_decode(f->dec, f->buf.data, f->buf.len, &m, &err), DQ_OK);
    assert_int_equal(m.u.request.dtype, DQ_DTYPE_F32);
    float back[24];
    dq_msg_f32_copy(back, m.u.request.data, 24);
    assert_memory_equal(back, xf, sizeof xf);
}

static void test_reply_round_trip(void **state)
{
    fixture *f = s_fix(state);
    dq_err err = {{0}};
    float logits[2 * 10], feat[2 * 3 * 2];
    for (int i = 0; i < 20; i++) logits[i] = (float)i * 0.5f - 3.0f;
    for (int i = 0; i < 12; i++) feat[i] = 1.0f / (float)(i + 1);
    dq_msg_reply r;
    memset(&r, 0, sizeof r);
    r.req_id = 42;
    r.status = DQ_REPLY_OK;
    r.n_outputs = 2;
    strcpy(r.outputs[0].name, "logits");
    r.outputs[0].ndim = 2, r.outputs[0].shape[0] = 2, r.outputs[0].shape[1] = 10;
    r.outputs[0].data = logits, r.outputs[0].data_len = sizeof logits;
    strcpy(r.outputs[1].name, "features");
    r.outputs[1].ndim = 3, r.outputs[1].shape[0] = 2, r.outputs[1].shape[1] = 3;
    r.outputs[1].shape[2] = 2;
    r.outputs[1].data = feat, r.outputs[1].data_len = sizeof feat;
    r.has_teacher = true;
    strcpy(r.teacher.service, "fmnist");
    strcpy(r.teacher.model, "deepnn");
    strcpy(r.teacher.sha256, SHA);
    assert_int_equal(dq_msg_encode_reply(&f->buf, &r, &err), DQ_OK);
    dq_msg m;
    assert_int_equal(dq_msg_decode(f->dec, f->buf.data, f->buf.len, &m, &err), DQ_OK);
    assert_int_equal(m.type, DQ_MSG_REPLY);
    const dq_msg_reply *d = &m.u.reply;
    assert_int_equal(d->req_id, 42);
    assert_int_equal(d->status, DQ_REPLY_OK);
    assert_string_equal(d->error, "");
    assert_int_equal(d->n_outputs, 2);
    const dq_msg_output *o = dq_msg_reply_output(d, "features");
    assert_non_null(o);
    assert_int_equal(o->ndim, 3);
    assert_int_equal(o->shape[2], 2);
    float back[12];
    dq_msg_f32_copy(back, o->data, 12);
    assert_memory_equal(back, feat, sizeof feat);
    assert_null(dq_msg_reply_output(d, "nope"));
    assert_true(d->has_teacher);
    assert_string_equal(d->teacher.model, "deepnn");
    assert_string_equal(d->teacher.sha256, SHA);

    /* error replies carry the reason and no outputs */
    dq_msg_buf_reset(&f->buf);
    assert_int_equal(dq_msg_encode_error_reply(&f->buf, 7, DQ_REPLY_TIMEOUT,
                                               "service 'x' has no worker", &err), DQ_OK);
    assert_int_equal(dq_msg_decode(f->dec, f->buf.data, f->buf.len, &m, &err), DQ_OK);
    assert_int_equal(m.u.reply.status, DQ_REPLY_TIMEOUT);
    assert_int_equal(m.u.reply.req_id, 7);
    assert_string_equal(m.u.reply.error, "service 'x' has no worker");
    assert_int_equal(m.u.reply.n_outputs, 0);
    assert_false(m.u.reply.has_teacher);
    assert_int_equal(dq_msg_encode_error_reply(&f->buf, 7, DQ_REPLY_OK, "x", &err), DQ_ERR_ARG);
}

static void test_control_round_trips(void **state)
{
    fixture *f = s_fix(state);
    dq_err err = {{0}};
    dq_msg m;
    dq_msg_ready r;
    memset(&r, 0, sizeof r);
    strcpy(r.teacher.service, "cifar");
    strcpy(r.teacher.model, "deepnn-cifar10");
    strcpy(r.teacher.sha256, SHA);
    r.input[0] = 3, r.input[1] = 32, r.input[2] = 32;
    r.dtypes = (1u << DQ_DTYPE_U8) | (1u << DQ_DTYPE_F32);
    r.n_outputs = 2;
    strcpy(r.outputs[0].name, "logits");
    r.outputs[0].ndim = 1, r.outputs[0].shape[0] = 10;
    strcpy(r.outputs[1].name, "features");
    r.outputs[1].ndim = 3, r.outputs[1].shape[0] = 32, r.outputs[1].shape[1] = 8;
    r.outputs[1].shape[2] = 8;
    r.capacity = 3;
    r.max_batch = 256;
    assert_int_equal(dq_msg_encode_ready(&f->buf, &r, &err), DQ_OK);
    assert_int_equal(dq_msg_decode(f->dec, f->buf.data, f->buf.len, &m, &err), DQ_OK);
    assert_int_equal(m.type, DQ_MSG_READY);
    assert_false(m.has_req_id);
    assert_string_equal(m.u.ready.teacher.service, "cifar");
    assert_string_equal(m.u.ready.teacher.model, "deepnn-cifar10");
    assert_int_equal(m.u.ready.input[0], 3);
    assert_int_equal(m.u.ready.input[2], 32);
    assert_int_equal(m.u.ready.dtypes, 3);
    assert_int_equal(m.u.ready.n_outputs, 2);
    assert_int_equal(m.u.ready.outputs[1].ndim, 3);
    assert_int_equal(m.u.ready.outputs[1].shape[0], 32);
    assert_int_equal(m.u.ready.capacity, 3);
    assert_int_equal(m.u.ready.max_batch, 256);

    dq_msg_buf_reset(&f->buf);
    assert_int_equal(dq_msg_encode_heartbeat(&f->buf, 0xdeadbeefcafeull, &err), DQ_OK);
    assert_int_equal(dq_msg_decode(f->dec, f->buf.data, f->buf.len, &m, &err), DQ_OK);
    assert_int_equal(m.type, DQ_MSG_HEARTBEAT);
    assert_true(m.u.heartbeat.epoch == 0xdeadbeefcafeull);

    const dq_msg_type simple[] = {DQ_MSG_DRAIN, DQ_MSG_GOODBYE, DQ_MSG_REANNOUNCE};
    for (int i = 0; i < 3; i++) {
        dq_msg_buf_reset(&f->buf);
        assert_int_equal(dq_msg_encode_simple(&f->buf, simple[i], &err), DQ_OK);
        assert_int_equal(dq_msg_decode(f->dec, f->buf.data, f->buf.len, &m, &err), DQ_OK);
        assert_int_equal(m.type, simple[i]);
    }
    assert_int_equal(dq_msg_encode_simple(&f->buf, DQ_MSG_REQUEST, &err), DQ_ERR_ARG);

    dq_msg_buf_reset(&f->buf);
    assert_int_equal(dq_msg_encode_disconnect(&f->buf, "broker shutting down", false, &err),
                     DQ_OK);
    assert_int_equal(dq_msg_decode(f->dec, f->buf.data, f->buf.len, &m, &err), DQ_OK);
    assert_int_equal(m.type, DQ_MSG_DISCONNECT);
    assert_string_equal(m.u.disconnect.reason, "broker shutting down");
    assert_false(m.u.disconnect.retry);

    dq_msg_buf_reset(&f->buf);
    assert_int_equal(dq_msg_encode_stats_request(&f->buf, 99, &err), DQ_OK);
    assert_int_equal(dq_msg_decode(f->dec, f->buf.data, f->buf.len, &m, &err), DQ_OK);
    assert_int_equal(m.type, DQ_MSG_STATS_REQUEST);
    assert_int_equal(m.u.stats_request.req_id, 99);

    const char *json = "{\"services\":[]}";
    dq_msg_buf_reset(&f->buf);
    assert_int_equal(dq_msg_encode_stats_reply(&f->buf, 99, json, strlen(json), &err), DQ_OK);
    assert_int_equal(dq_msg_decode(f->dec, f->buf.data, f->buf.len, &m, &err), DQ_OK);
    assert_int_equal(m.type, DQ_MSG_STATS_REPLY);
    assert_int_equal(m.u.stats_reply.json_len, strlen(json));
    assert_memory_equal(m.u.stats_reply.json, json, strlen(json));

    /* the generic entry point encodes the same bytes as the typed one */
    dq_msg g;
    memset(&g, 0, sizeof g);
    g.type = DQ_MSG_READY;
    g.u.ready = r;
    dq_msg_buf other;
    dq_msg_buf_init(&other);
    dq_msg_buf_reset(&f->buf);
    assert_int_equal(dq_msg_encode(&other, &g, &err), DQ_OK);
    assert_int_equal(dq_msg_encode_ready(&f->buf, &r, &err), DQ_OK);
    assert_int_equal(other.len, f->buf.len);
    assert_memory_equal(other.data, f->buf.data, other.len);
    dq_msg_buf_free(&other);
}

static void test_encoder_refuses_what_decoder_rejects(void **state)
{
    fixture *f = s_fix(state);
    dq_err err = {{0}};
    uint8_t px[24];
    dq_msg_request r;
    s_fill_request(&r, px, sizeof px);
    r.data_len = 23;
    assert_int_equal(dq_msg_encode_request(&f->buf, &r, &err), DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "23 data bytes, shape needs 24"));
    assert_int_equal(f->buf.len, 0);
    s_fill_request(&r, px, sizeof px);
    r.service[0] = '\0';
    assert_int_equal(dq_msg_encode_request(&f->buf, &r, &err), DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "service"));
    s_fill_request(&r, px, sizeof px);
    r.n_outputs = 0;
    assert_int_equal(dq_msg_encode_request(&f->buf, &r, &err), DQ_ERR_ARG);
    dq_msg_reply rep;
    memset(&rep, 0, sizeof rep);
    rep.status = DQ_REPLY_OK;
    rep.n_outputs = 1;
    strcpy(rep.outputs[0].name, "logits");
    rep.outputs[0].ndim = 1, rep.outputs[0].shape[0] = 1;
    float one = 1;
    rep.outputs[0].data = &one, rep.outputs[0].data_len = 4;
    rep.has_teacher = true;
    strcpy(rep.teacher.service, "s"), strcpy(rep.teacher.model, "m");
    strcpy(rep.teacher.sha256, "ABCDEF");
    assert_int_equal(dq_msg_encode_reply(&f->buf, &rep, &err), DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "sha256"));
}

/* Names are UTF-8 (docs/protocol.md): they reach the broker's stats JSON.
 * fuzz_broker found that a service name with a byte 0xff made every later
 * stats reply invalid JSON; the decoder now rejects it, the encoder too. */
static void test_names_must_be_utf8(void **state)
{
    static const struct {
        const char *s;
        bool ok;
    } cases[] = {
        {"fmnist", true},          {"caf\xc3\xa9", true},      {"\xe2\x82\xac", true},
        {"\xf0\x9f\x98\x80", true},  {"\xf4\x8f\xbf\xbf", true},  {"\xff", false},
        {"\xc3\x28", false},       {"\xc0\xaf", false},        {"\xe0\x80\xaf", false},
        {"\xed\xa0\x80", false},   {"\xf4\x90\x80\x80", false}, {"\xe2\x82", false},
        {"\x80", false},           {"ab\xf0\x9f\x98", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_int_equal(dq_msg_utf8_valid(cases[i].s, strlen(cases[i].s)), cases[i].ok);

    fixture *f = s_fix(state);
    dq_err err = {{0}};
    dq_msg m;
    uint8_t px[24];
    dq_msg_request r;
    s_fill_request(&r, px, sizeof px);
    strcpy(r.service, "fmn\xffst");
    assert_int_equal(dq_msg_encode_request(&f->buf, &r, &err), DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "not UTF-8"));
    /* a valid body whose service name is then broken on the wire */
    s_fill_request(&r, px, sizeof px);
    strcpy(r.service, "fmnXst");
    assert_int_equal(dq_msg_encode_request(&f->buf, &r, &err), DQ_OK);
    uint8_t *x = memmem(f->buf.data, f->buf.len, "fmnXst", 6);
    assert_non_null(x);
    x[3] = 0xff;
    assert_int_equal(dq_msg_decode(f->dec, f->buf.data, f->buf.len, &m, &err), DQ_ERR_PROTO);
    assert_non_null(strstr(err.msg, "'service' is not UTF-8"));
    x[3] = 'X';
    assert_int_equal(dq_msg_decode(f->dec, f->buf.data, f->buf.len, &m, &err), DQ_OK);
    assert_string_equal(m.u.request.service, "fmnXst");
}

/* ---- malformed input ----------------------------------------------------------- */

/* Builds a request body by hand so a test can break one field at a time.
 * skip: key to leave out; bad: key whose value is replaced by nil. */
static void s_raw_request(msgpack_sbuffer *sb, const char *skip, const char *bad,
                          uint64_t version, const int64_t *shape, size_t data_len)
{
    static const uint8_t zeros[64];
    msgpack_packer pk;
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    const char *keys[] = {"v", "type", "req_id", "service", "dtype", "shape", "data", "outputs"};
    int n = 0;
    for (int i = 0; i < 8; i++) n += !(skip && strcmp(skip, keys[i]) == 0);
    msgpack_pack_map(&pk, (size_t)n);
    for (int i = 0; i < 8; i++) {
        const char *k = keys[i];
        if (skip && strcmp(skip, k) == 0) continue;
        msgpack_pack_str_with_body(&pk, k, strlen(k));
        if (bad && strcmp(bad, k) == 0) {
            msgpack_pack_nil(&pk);
        } else if (i == 0) {
            msgpack_pack_uint64(&pk, version);
        } else if (i == 1) {
            msgpack_pack_str_with_body(&pk, "request", 7);
        } else if (i == 2) {
            msgpack_pack_uint64(&pk, 5);
        } else if (i == 3) {
            msgpack_pack_str_with_body(&pk, "svc", 3);
        } else if (i == 4) {
            msgpack_pack_str_with_body(&pk, "u8", 2);
        } else if (i == 5) {
            msgpack_pack_array(&pk, 4);
            for (int d = 0; d < 4; d++) msgpack_pack_uint64(&pk, (uint64_t)shape[d]);
        } else if (i == 6) {
            msgpack_pack_bin_with_body(&pk, zeros, data_len);
        } else {
            msgpack_pack_array(&pk, 1);
            msgpack_pack_str_with_body(&pk, "logits", 6);
        }
    }
}

static dq_status s_decode_raw(fixture *f, const msgpack_sbuffer *sb, dq_msg *m, dq_err *err)
{
    return dq_msg_decode(f->dec, sb->data, sb->size, m, err);
}

static void test_decoder_field_errors(void **state)
{
    fixture *f = s_fix(state);
    dq_err err = {{0}};
    dq_msg m;
    msgpack_sbuffer sb;
    const int64_t ok_shape[4] = {1, 1, 2, 3};

    s_raw_request(&sb, NULL, NULL, 1, ok_shape, 6);
    assert_int_equal(s_decode_raw(f, &sb, &m, &err), DQ_OK);
    msgpack_sbuffer_destroy(&sb);

    const char *fields[] = {"v", "type", "req_id", "service", "dtype", "shape", "data",
                            "outputs"};
    for (int i = 0; i < 8; i++) {
        s_raw_request(&sb, fields[i], NULL, 1, ok_shape, 6);
        assert_int_not_equal(s_decode_raw(f, &sb, &m, &err), DQ_OK);
        assert_non_null(strstr(err.msg, "missing field"));
        assert_non_null(strstr(err.msg, fields[i]));
        msgpack_sbuffer_destroy(&sb);
        s_raw_request(&sb, NULL, fields[i], 1, ok_shape, 6);
        assert_int_not_equal(s_decode_raw(f, &sb, &m, &err), DQ_OK);
        assert_non_null(strstr(err.msg, i == 1 ? "type" : fields[i]));
        msgpack_sbuffer_destroy(&sb);
    }
    /* a failed request still reports its req_id so the error reply can name it */
    s_raw_request(&sb, "service", NULL, 1, ok_shape, 6);
    assert_int_equal(s_decode_raw(f, &sb, &m, &err), DQ_ERR_PROTO);
    assert_int_equal(m.type, DQ_MSG_REQUEST);
    assert_true(m.has_req_id);
    assert_int_equal(m.req_id, 5);
    msgpack_sbuffer_destroy(&sb);

    s_raw_request(&sb, NULL, NULL, 2, ok_shape, 6);
    assert_int_equal(s_decode_raw(f, &sb, &m, &err), DQ_ERR_PROTO);
    assert_non_null(strstr(err.msg, "version 2"));
    msgpack_sbuffer_destroy(&sb);

    s_raw_request(&sb, NULL, NULL, 1, ok_shape, 5);
    assert_int_equal(s_decode_raw(f, &sb, &m, &err), DQ_ERR_PROTO);
    assert_non_null(strstr(err.msg, "'data' has 5 bytes, shape needs 6"));
    msgpack_sbuffer_destroy(&sb);

    const int64_t zero_dim[4] = {1, 0, 2, 3};
    s_raw_request(&sb, NULL, NULL, 1, zero_dim, 0);
    assert_int_equal(s_decode_raw(f, &sb, &m, &err), DQ_ERR_PROTO);
    assert_non_null(strstr(err.msg, "shape"));
    msgpack_sbuffer_destroy(&sb);

    /* n*c*h*w*size overflows 64 bits if multiplied blindly */
    const int64_t huge[4] = {(int64_t)1 << 31, (int64_t)1 << 31, (int64_t)1 << 31,
                             (int64_t)1 << 31};
    s_raw_request(&sb, NULL, NULL, 1, huge, 6);
    assert_int_equal(s_decode_raw(f, &sb, &m, &err), DQ_ERR_PROTO);
    assert_non_null(strstr(err.msg, "too large"));
    msgpack_sbuffer_destroy(&sb);
    const int64_t over[4] = {(int64_t)1 << 32, 1, 1, 1};
    s_raw_request(&sb, NULL, NULL, 1, over, 6);
    assert_int_equal(s_decode_raw(f, &sb, &m, &err), DQ_ERR_PROTO);
    assert_non_null(strstr(err.msg, "dim 0"));
    msgpack_sbuffer_destroy(&sb);
}

static void s_expect_format(fixture *f, const void *b, size_t n, const char *needle)
{
    dq_err err = {{0}};
    dq_msg m;
    dq_status st = dq_msg_decode(f->dec, b, n, &m, &err);
    assert_int_not_equal(st, DQ_OK);
    assert_true(err.msg[0] != '\0');
    if (needle && !strstr(err.msg, needle)) fail_msg("'%s' lacks '%s'", err.msg, needle);
}

static void test_decoder_hostile_bytes(void **state)
{
    fixture *f = s_fix(state);
    s_expect_format(f, NULL, 0, "empty");
    /* array32 / map32 declaring 4 billion elements in 5 bytes: rejected before
     * msgpack-c would allocate 100 GB for them */
    const uint8_t arr[] = {0xdd, 0xff, 0xff, 0xff, 0xff};
    s_expect_format(f, arr, sizeof arr, "declares 4294967295 elements");
    const uint8_t map[] = {0xdf, 0xff, 0xff, 0xff, 0xff, 0xc0};
    s_expect_format(f, map, sizeof map, "elements");
    const uint8_t bin[] = {0xc6, 0x7f, 0xff, 0xff, 0xff, 0x00};
    s_expect_format(f, bin, sizeof bin, "remain");
    const uint8_t never[] = {0xc1};
    s_expect_format(f, never, 1, "0xc1");
    const uint8_t notmap[] = {0x93, 0x01, 0x02, 0x03};
    s_expect_format(f, notmap, sizeof notmap, "must be a msgpack map");
    const uint8_t trailing[] = {0x80, 0x00};
    s_expect_format(f, trailing, sizeof trailing, "trailing");
    uint8_t deep[64];
    for (int i = 0; i < 63; i++) deep[i] = 0x91;
    deep[63] = 0xc0;
    s_expect_format(f, deep, sizeof deep, "deeper");
    /* many objects: an array of 5000 nils */
    size_t nn = 3 + 5000;
    uint8_t *many = malloc(nn);
    assert_non_null(many);
    many[0] = 0xdc, many[1] = 5000 >> 8, many[2] = 5000 & 0xff;
    memset(many + 3, 0xc0, 5000);
    s_expect_format(f, many, nn, "objects");
    free(many);
    /* an unknown type name and a map with a non-string type */
    const uint8_t unk[] = {0x82, 0xa1, 'v', 0x01, 0xa4, 't', 'y', 'p', 'e', 0xa3, 'f', 'o', 'o'};
    s_expect_format(f, unk, sizeof unk, "unknown 'type'");
}

static void test_decoder_every_truncation_and_random_bytes(void **state)
{
    fixture *f = s_fix(state);
    dq_err err = {{0}};
    dq_msg m;
    uint8_t px[24];
    dq_msg_request r;
    s_fill_request(&r, px, sizeof px);
    assert_int_equal(dq_msg_encode_request(&f->buf, &r, &err), DQ_OK);
    size_t n = f->buf.len;
    uint8_t *copy = malloc(n);
    assert_non_null(copy);
    memcpy(copy, f->buf.data, n);
    /* each strict prefix is a truncated message */
    for (size_t k = 0; k < n; k++)
        assert_int_not_equal(dq_msg_decode(f->dec, copy, k, &m, &err), DQ_OK);
    /* single-byte corruptions at every position: must never crash; any
     * accepted result must still be self-consistent */
    size_t accepted = 0;
    for (size_t k = 0; k < n; k++) {
        for (int v = 0; v < 256; v += 37) {
            uint8_t save = copy[k];
            copy[k] = (uint8_t)v;
            if (dq_msg_decode(f->dec, copy, n, &m, &err) == DQ_OK) {
                accepted++;
                if (m.type == DQ_MSG_REQUEST)
                    assert_int_equal(m.u.request.data_len,
                                     (size_t)(m.u.request.shape[0] * m.u.request.shape[1] *
                                              m.u.request.shape[2] * m.u.request.shape[3]) *
                                         dq_msg_dtype_size(m.u.request.dtype));
            } else {
                assert_true(err.msg[0] != '\0');
            }
            copy[k] = save;
        }
    }
    assert_true(accepted > 0 && accepted < n * 7); /* pixel bytes are free to change */
    free(copy);
    /* random buffers (fixed seed) */
    uint32_t s = 12345;
    uint8_t rnd[256];
    for (int it = 0; it < 2000; it++) {
        size_t len = 1 + (size_t)(it % 255);
        for (size_t i = 0; i < len; i++) {
            s = s * 1664525u + 1013904223u;
            rnd[i] = (uint8_t)(s >> 24);
        }
        if (dq_msg_decode(f->dec, rnd, len, &m, &err) != DQ_OK) assert_true(err.msg[0] != '\0');
    }
}

/* Issue 11 (protocol 1, optional fields): a ready announces the u8
 * normalisation (mean/std per channel, exact floats), a reply names the
 * implementation and device ("impl"), a heartbeat tells the interval. Old
 * bodies without them decode as "not told"; a mean without std, or of the
 * wrong length, is refused. */
static void s_pack_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body(pk, s, strlen(s));
}

static void test_optional_fields_norm_impl_interval(void **state)
{
    fixture *f = s_fix(state);
    dq_err err = {{0}};
    dq_msg m;
    dq_msg_ready r;
    memset(&r, 0, sizeof r);
    strcpy(r.teacher.service, "cifar");
    strcpy(r.teacher.model, "resnet");
    strcpy(r.teacher.sha256, SHA);
    r.input[0] = 3, r.input[1] = 32, r.input[2] = 32;
    r.dtypes = 3;
    r.n_outputs = 1;
    strcpy(r.outputs[0].name, "logits");
    r.outputs[0].ndim = 1, r.outputs[0].shape[0] = 10;
    r.capacity = 1;
    r.n_norm = 3;
    const float mean[3] = {0.4914f, 0.4822f, 0.4465f}, sd[3] = {0.2470f, 0.2435f, 0.2616f};
    memcpy(r.mean, mean, sizeof mean);
    memcpy(r.std, sd, sizeof sd);
    assert_int_equal(dq_msg_encode_ready(&f->buf, &r, &err), DQ_OK);
    assert_int_equal(dq_msg_decode(f->dec, f->buf.data, f->buf.len, &m, &err), DQ_OK);
    assert_int_equal(m.u.ready.n_norm, 3);
    for (int c = 0; c < 3; c++) { /* bit-exact: float32 on the wire */
        assert_memory_equal(&m.u.ready.mean[c], &mean[c], sizeof(float));
        assert_memory_equal(&m.u.ready.std[c], &sd[c], sizeof(float));
    }
    /* the encoder refuses what the decoder would: 2 channels for a 3-channel input */
    r.n_norm = 2;
    dq_msg_buf_reset(&f->buf);
    assert_int_equal(dq_msg_encode_ready(&f->buf, &r, &err), DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "normalisation"));
    /* without: n_norm 0 (an older worker) */
    r.n_norm = 0;
    dq_msg_buf_reset(&f->buf);
    assert_int_equal(dq_msg_encode_ready(&f->buf, &r, &err), DQ_OK);
    assert_int_equal(dq_msg_decode(f->dec, f->buf.data, f->buf.len, &m, &err), DQ_OK);
    assert_int_equal(m.u.ready.n_norm, 0);

    /* hand-made readies: mean without std; mean of the wrong length */
    for (int k = 0; k < 2; k++) {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, k == 0 ? 10 : 11);
        s_pack_str(&pk, "v"), msgpack_pack_uint64(&pk, 1);
        s_pack_str(&pk, "type"), s_pack_str(&pk, "ready");
        s_pack_str(&pk, "service"), s_pack_str(&pk, "s");
        s_pack_str(&pk, "model"), s_pack_str(&pk, "m");
        s_pack_str(&pk, "sha256"), s_pack_str(&pk, SHA);
        s_pack_str(&pk, "input"), msgpack_pack_array(&pk, 3);
        msgpack_pack_uint64(&pk, 1), msgpack_pack_uint64(&pk, 2), msgpack_pack_uint64(&pk, 2);
        s_pack_str(&pk, "dtypes"), msgpack_pack_array(&pk, 1), s_pack_str(&pk, "u8");
        s_pack_str(&pk, "outputs"), msgpack_pack_array(&pk, 1), msgpack_pack_map(&pk, 2);
        s_pack_str(&pk, "name"), s_pack_str(&pk, "logits");
        s_pack_str(&pk, "shape"), msgpack_pack_array(&pk, 1), msgpack_pack_uint64(&pk, 2);
        s_pack_str(&pk, "capacity"), msgpack_pack_uint64(&pk, 1);
        s_pack_str(&pk, "mean"), msgpack_pack_array(&pk, (size_t)(k + 1));
        for (int c = 0; c <= k; c++) msgpack_pack_float(&pk, 0.5f);
        if (k == 1) s_pack_str(&pk, "std"), msgpack_pack_array(&pk, 2),
                    msgpack_pack_float(&pk, 0.5f), msgpack_pack_float(&pk, 0.5f);
        assert_int_equal(dq_msg_decode(f->dec, sb.data, sb.size, &m, &err), DQ_ERR_PROTO);
        assert_non_null(strstr(err.msg, k == 0 ? "'std'" : "'mean'"));
        msgpack_sbuffer_destroy(&sb);
    }

    /* reply impl: told, and absent */
    static const float lg[2] = {1.5f, -2.0f};
    dq_msg_reply rep;
    memset(&rep, 0, sizeof rep);
    rep.req_id = 7;
    rep.n_outputs = 1;
    strcpy(rep.outputs[0].name, "logits");
    rep.outputs[0].ndim = 2, rep.outputs[0].shape[0] = 1, rep.outputs[0].shape[1] = 2;
    rep.outputs[0].data = lg, rep.outputs[0].data_len = sizeof lg;
    rep.has_teacher = true;
    strcpy(rep.teacher.service, "s"), strcpy(rep.teacher.model, "m");
    strcpy(rep.teacher.sha256, SHA);
    strcpy(rep.impl, "python-torch/cuda:0");
    dq_msg_buf_reset(&f->buf);
    assert_int_equal(dq_msg_encode_reply(&f->buf, &rep, &err), DQ_OK);
    assert_int_equal(dq_msg_decode(f->dec, f->buf.data, f->buf.len, &m, &err), DQ_OK);
    assert_string_equal(m.u.reply.impl, "python-torch/cuda:0");
    rep.impl[0] = '\0';
    dq_msg_buf_reset(&f->buf);
    assert_int_equal(dq_msg_encode_reply(&f->buf, &rep, &err), DQ_OK);
    assert_int_equal(dq_msg_decode(f->dec, f->buf.data, f->buf.len, &m, &err), DQ_OK);
    assert_string_equal(m.u.reply.impl, "");

    /* heartbeat interval */
    dq_msg_buf_reset(&f->buf);
    assert_int_equal(dq_msg_encode_heartbeat_interval(&f->buf, 42, 250, &err), DQ_OK);
    assert_int_equal(dq_msg_decode(f->dec, f->buf.data, f->buf.len, &m, &err), DQ_OK);
    assert_true(m.u.heartbeat.epoch == 42 && m.u.heartbeat.interval_ms == 250);
    dq_msg_buf_reset(&f->buf);
    assert_int_equal(dq_msg_encode_heartbeat(&f->buf, 42, &err), DQ_OK);
    assert_int_equal(dq_msg_decode(f->dec, f->buf.data, f->buf.len, &m, &err), DQ_OK);
    assert_int_equal(m.u.heartbeat.interval_ms, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_round_trip_zero_copy),
        cmocka_unit_test(test_reply_round_trip),
        cmocka_unit_test(test_control_round_trips),
        cmocka_unit_test(test_optional_fields_norm_impl_interval),
        cmocka_unit_test(test_encoder_refuses_what_decoder_rejects),
        cmocka_unit_test(test_names_must_be_utf8),
        cmocka_unit_test(test_decoder_field_errors),
        cmocka_unit_test(test_decoder_hostile_bytes),
        cmocka_unit_test(test_decoder_every_truncation_and_random_bytes),
    };
    return cmocka_run_group_tests_name("proto", tests, s_setup, s_teardown);
}
