/* test_teacher.c - the teacher's model side: the reply to a request equals
 * the local prediction path (normalise + eval forward on the same batch)
 * bit for bit, for u8 and f32 inputs and across plan growth; bad requests
 * become bad_request replies naming the service and the field; the
 * identity is the SHA-256 of the weights file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "model/checkpoint.h"
#include "model/net.h"
#include "teacher_worker/teacher.h"
#include "tensor/rng.h"

typedef struct {
    char dir[64], model[512], weights[128];
    dq_teacher_t *t;
    dq_msg_decoder_t *dec;
    dq_msg_buf buf;
} s_fix;

static int s_setup(void **state)
{
    static s_fix f;
    memset(&f, 0, sizeof f);
    const char *top = getenv("top_srcdir");
    snprintf(f.model, sizeof f.model, "%s/models/lightnn-fmnist.model", top ? top : "..");
    snprintf(f.dir, sizeof f.dir, "/tmp/dq-test-teacher.XXXXXX");
    if (!mkdtemp(f.dir)) return -1;
    snprintf(f.weights, sizeof f.weights, "%s/w.safetensors", f.dir);
    dq_err err;
    dq_net_t *net = NULL;
    if (dq_net_load(&net, f.model, &err) != DQ_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    dq_rng r;
    dq_rng_seed(&r, 5);
    dq_net_init_params(net, &r);
    dq_status st = dq_ckpt_save_weights(net, f.weights, &err);
    dq_net_destroy(&net);
    if (st != DQ_OK) return -1;
    if (dq_teacher_new(&f.t, "fm", f.model, f.weights, 16, &err) != DQ_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    if (dq_msg_decoder_new(&f.dec, &err) != DQ_OK) return -1;
    *state = &f;
    return 0;
}

static int s_teardown(void **state)
{
    s_fix *f = *state;
    if (!f) return 0; /* s_setup failed (its message says why) */
    dq_teacher_destroy(&f->t);
    dq_msg_decoder_destroy(&f->dec);
    dq_msg_buf_free(&f->buf);
    unlink(f->weights);
    return rmdir(f->dir);
}

/* Local reference: a fresh net planned for exactly n, as distillq-predict. */
static void s_local_logits(const s_fix *f, const uint8_t *px, int64_t n, float *out)
{
    dq_err err;
    dq_net_t *net = NULL;
    assert_int_equal(dq_net_load(&net, f->model, &err), DQ_OK);
    assert_int_equal(dq_ckpt_load_weights(net, f->weights, &err), DQ_OK);
    assert_int_equal(dq_net_plan(net, n, &err), DQ_OK);
    float *x = malloc((size_t)n * 784 * sizeof(float));
    assert_non_null(x);
    dq_net_normalize_u8(net, x, px, n);
    dq_tensor t = dq_tensor_view4(x, n, 1, 28, 28);
    assert_int_equal(dq_net_forward(net, &t, false, NULL, &err), DQ_OK);
    memcpy(out, dq_net_output(net, "logits")->data, (size_t)n * 10 * sizeof(float));
    free(x);
    dq_net_destroy(&net);
}

static dq_msg_request s_req(const void *data, int64_t n, dq_msg_dtype dt)
{
    dq_msg_request r;
    memset(&r, 0, sizeof r);
    r.req_id = 42;
    strcpy(r.service, "fm");
    r.dtype = dt;
    r.shape[0] = n;
    r.shape[1] = 1;
    r.shape[2] = 28;
    r.shape[3] = 28;
    r.data = data;
    r.data_len = (size_t)n * 784 * dq_msg_dtype_size(dt);
    r.n_outputs = 1;
    strcpy(r.outputs[0], "logits");
    return r;
}

/* Serves r and decodes the reply into *m (pointing into f->buf). */
static void s_serve(s_fix *f, const dq_msg_request *r, dq_msg *m)
{
    dq_err err;
    dq_msg_buf_reset(&f->buf);
    assert_int_equal(dq_teacher_serve(f->t, r, &f->buf, &err), DQ_OK);
    assert_int_equal(dq_msg_decode(f->dec, f->buf.data, f->buf.len, m, &err), DQ_OK);
    assert_int_equal(m->type, DQ_MSG_REPLY);
    assert_int_equal(m->u.reply.req_id, 42);
}

static void test_identity_and_announce(void **state)
{
    s_fix *f = *state;
    char hex[DQ_MSG_SHA256_HEX + 1];
    dq_err err;
    char abc[128];
    snprintf(abc, sizeof abc, "%s/abc", f->dir);
    FILE *fp = fopen(abc, "wb");
    assert_non_null(fp);
    fputs("abc", fp);
    fclose(fp);
    assert_int_equal(dq_teacher_sha256_file(abc, hex, &err), DQ_OK);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    unlink(abc);
    assert_int_equal(dq_teacher_sha256_file(abc, hex, &err), DQ_ERR_IO);
    assert_non_null(strstr(err.msg, abc));

    assert_int_equal(dq_teacher_sha256_file(f->weights, hex, &err), DQ_OK);
    const dq_msg_teacher *id = dq_teacher_identity(f->t);
    assert_string_equal(id->sha256, hex);
    assert_string_equal(id->service, "fm");
    assert_string_equal(id->model, "lightnn-fmnist");
    dq_msg_ready a;
    dq_teacher_announce(f->t, &a);
    assert_int_equal(a.input[0], 1);
    assert_int_equal(a.input[1], 28);
    assert_int_equal(a.input[2], 28);
    assert_int_equal(a.dtypes, (1u << DQ_DTYPE_U8) | (1u << DQ_DTYPE_F32));
    assert_int_equal(a.max_batch, 16);
    assert_int_equal(a.n_outputs, 1);
    assert_string_equal(a.outputs[0].name, "logits");
    assert_int_equal(a.outputs[0].ndim, 1);
    assert_int_equal(a.outputs[0].shape[0], 10);
    assert_int_equal(dq_teacher_max_data_bytes(f->t), 16 * 784 * 4);

    dq_teacher_t *bad = NULL;
    assert_int_not_equal(dq_teacher_new(&bad, "fm", f->model, "/nonexistent.safetensors", 0,
                                        &err), DQ_OK);
    assert_null(bad);
    assert_non_null(strstr(err.msg, "/nonexistent.safetensors"));
}

static void test_reply_equals_local_forward(void **state)
{
    s_fix *f = *state;
    enum { N = 7 };
    uint8_t px[N * 784];
    dq_rng r;
    dq_rng_seed(&r, 9);
    for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)dq_rng_below(&r, 256);
    float ref[N * 10], got[N * 10];

    /* a larger batch first, so the teacher's plan is bigger than the request */
    dq_msg m;
    dq_msg_request big = s_req(px, N, DQ_DTYPE_U8);
    s_serve(f, &big, &m);
    s_local_logits(f, px, N, ref);
    assert_int_equal(m.u.reply.status, DQ_REPLY_OK);
    const dq_msg_output *o = dq_msg_reply_output(&m.u.reply, "logits");
    assert_non_null(o);
    assert_int_equal(o->ndim, 2);
    assert_int_equal(o->shape[0], N);
    assert_int_equal(o->shape[1], 10);
    assert_int_equal(o->data_len, sizeof ref);
    dq_msg_f32_copy(got, o->data, N * 10);
    assert_memory_equal(got, ref, sizeof ref);
    assert_true(m.u.reply.has_teacher);
    assert_string_equal(m.u.reply.teacher.sha256, dq_teacher_identity(f->t)->sha256);

    /* n = 3 on the plan for 7 equals a net planned for 3 */
    dq_msg_request small = s_req(px + 784, 3, DQ_DTYPE_U8);
    s_serve(f, &small, &m);
    s_local_logits(f, px + 784, 3, ref);
    o = dq_msg_reply_output(&m.u.reply, "logits");
    dq_msg_f32_copy(got, o->data, 30);
    assert_memory_equal(got, ref, 30 * sizeof(float));

    /* f32 input already normalised gives the same bits as u8 */
    float *x = malloc(3 * 784 * sizeof(float));
    assert_non_null(x);
    for (int i = 0; i < 3 * 784; i++) x[i] = ((float)px[784 + i] / 255.0f - 0.5f) / 0.5f;
    dq_msg_request fr = s_req(x, 3, DQ_DTYPE_F32);
    s_serve(f, &fr, &m);
    o = dq_msg_reply_output(&m.u.reply, "logits");
    dq_msg_f32_copy(got, o->data, 30);
    assert_memory_equal(got, ref, 30 * sizeof(float));
    free(x);
}

static void test_bad_requests_get_reasons(void **state)
{
    s_fix *f = *state;
    static uint8_t px[20 * 3 * 784];
    dq_msg m;
    dq_err err;

    dq_msg_request r = s_req(px, 2, DQ_DTYPE_U8);
    r.shape[1] = 3;
    r.data_len = 2 * 3 * 784;
    assert_int_equal(dq_teacher_check(f->t, &r, &err), DQ_ERR_ARG);
    s_serve(f, &r, &m);
    assert_int_equal(m.u.reply.status, DQ_REPLY_BAD_REQUEST);
    assert_non_null(strstr(m.u.reply.error, "service fm"));
    assert_non_null(strstr(m.u.reply.error, "[2, 3, 28, 28]"));
    assert_non_null(strstr(m.u.reply.error, "lightnn-fmnist takes [N, 1, 28, 28]"));
    assert_false(m.u.reply.has_teacher);

    r = s_req(px, 2, DQ_DTYPE_U8);
    strcpy(r.outputs[0], "features");
    s_serve(f, &r, &m);
    assert_int_equal(m.u.reply.status, DQ_REPLY_BAD_REQUEST);
    assert_non_null(strstr(m.u.reply.error, "no output 'features' (has: logits)"));

    r = s_req(px, 17, DQ_DTYPE_U8); /* max batch 16 */
    s_serve(f, &r, &m);
    assert_int_equal(m.u.reply.status, DQ_REPLY_BAD_REQUEST);
    assert_non_null(strstr(m.u.reply.error, "batch of 17 samples"));

    r = s_req(px, 2, DQ_DTYPE_U8);
    strcpy(r.service, "other");
    s_serve(f, &r, &m);
    assert_int_equal(m.u.reply.status, DQ_REPLY_BAD_REQUEST);
    assert_non_null(strstr(m.u.reply.error, "service 'other'"));

    r = s_req(px, 2, DQ_DTYPE_F32);
    r.data_len = 2 * 784; /* the u8 size for an f32 request */
    assert_int_equal(dq_teacher_check(f->t, &r, &err), DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "1568 bytes"));
    assert_non_null(strstr(err.msg, "need 6272"));

    /* a good request still works after all that */
    r = s_req(px, 2, DQ_DTYPE_U8);
    s_serve(f, &r, &m);
    assert_int_equal(m.u.reply.status, DQ_REPLY_OK);
}

/* Dynamic batching: requests served together (one forward where they fit)
 * get byte for byte the replies they get one by one. */
static void test_serve_many_equals_one_by_one(void **state)
{
    s_fix *f = *state;
    enum { N = 16 };
    uint8_t px[N * 784];
    float xf[2 * 784];
    dq_rng r;
    dq_rng_seed(&r, 33);
    for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)dq_rng_below(&r, 256);
    for (int i = 0; i < 2 * 784; i++) xf[i] = ((float)px[i] / 255.0f - 0.5f) / 0.5f;
    dq_msg_request rq[6] = {
        s_req(px, 3, DQ_DTYPE_U8),             /* merged */
        s_req(px + 3 * 784, 5, DQ_DTYPE_U8),   /* merged */
        s_req(xf, 2, DQ_DTYPE_F32),            /* other dtype: alone */
        s_req(px + 8 * 784, 4, DQ_DTYPE_U8),   /* merged */
        s_req(px, 1, DQ_DTYPE_U8),             /* bad: wrong service */
        s_req(px + 12 * 784, 1, DQ_DTYPE_U8),  /* merged */
    };
    strcpy(rq[4].service, "other");
    for (int i = 0; i < 6; i++) rq[i].req_id = 100 + (uint64_t)i;
    const dq_msg_request *rs[6];
    dq_msg_buf many[6], one;
    dq_msg_buf_init(&one);
    for (int i = 0; i < 6; i++) {
        rs[i] = &rq[i];
        dq_msg_buf_init(&many[i]);
    }
    dq_err err = {{0}};
    assert_int_equal(dq_teacher_serve_many(f->t, rs, 6, many, &err), DQ_OK);
    for (int i = 0; i < 6; i++) {
        dq_msg_buf_reset(&one);
        assert_int_equal(dq_teacher_serve(f->t, rs[i], &one, &err), DQ_OK);
        assert_int_equal(many[i].len, one.len);
        assert_memory_equal(many[i].data, one.data, one.len);
        dq_msg m;
        assert_int_equal(dq_msg_decode(f->dec, many[i].data, many[i].len, &m, &err), DQ_OK);
        assert_int_equal(m.u.reply.req_id, 100 + i);
        assert_int_equal(m.u.reply.status, i == 4 ? DQ_REPLY_BAD_REQUEST : DQ_REPLY_OK);
    }
    /* and equal to the local forward of each request's own batch */
    float ref[5 * 10], got[5 * 10];
    dq_msg m;
    assert_int_equal(dq_msg_decode(f->dec, many[1].data, many[1].len, &m, &err), DQ_OK);
    s_local_logits(f, px + 3 * 784, 5, ref);
    dq_msg_f32_copy(got, dq_msg_reply_output(&m.u.reply, "logits")->data, 50);
    assert_memory_equal(got, ref, sizeof ref);
    for (int i = 0; i < 6; i++) dq_msg_buf_free(&many[i]);
    dq_msg_buf_free(&one);
}

/* What the worker's compute thread calls on requests its I/O thread has
 * already checked: the same bytes as the checking entry points, for a merge
 * group and for requests served alone (another dtype). */
static void test_serve_checked_equals_serve_many(void **state)
{
    s_fix *f = *state;
    uint8_t px[7 * 784];
    float xf[2 * 784];
    dq_rng r;
    dq_rng_seed(&r, 34);
    for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)dq_rng_below(&r, 256);
    for (int i = 0; i < 2 * 784; i++) xf[i] = ((float)px[i] / 255.0f - 0.5f) / 0.5f;
    dq_msg_request rq[4] = {
        s_req(px, 2, DQ_DTYPE_U8),
        s_req(xf, 2, DQ_DTYPE_F32),
        s_req(px + 2 * 784, 4, DQ_DTYPE_U8),
        s_req(px + 6 * 784, 1, DQ_DTYPE_U8),
    };
    const dq_msg_request *rs[4];
    dq_msg_buf a[4], b[4];
    dq_err err = {{0}};
    for (int i = 0; i < 4; i++) {
        rq[i].req_id = 200 + (uint64_t)i;
        rs[i] = &rq[i];
        assert_int_equal(dq_teacher_check(f->t, rs[i], &err), DQ_OK);
        dq_msg_buf_init(&a[i]);
        dq_msg_buf_init(&b[i]);
    }
    assert_int_equal(dq_teacher_serve_checked(f->t, rs, 4, a, &err), DQ_OK);
    assert_int_equal(dq_teacher_serve_many(f->t, rs, 4, b, &err), DQ_OK);
    for (int i = 0; i < 4; i++) {
        assert_true(a[i].len > 0);
        assert_int_equal(a[i].len, b[i].len);
        assert_memory_equal(a[i].data, b[i].data, a[i].len);
        dq_msg m;
        assert_int_equal(dq_msg_decode(f->dec, a[i].data, a[i].len, &m, &err), DQ_OK);
        assert_int_equal(m.u.reply.req_id, 200 + i);
        assert_int_equal(m.u.reply.status, DQ_REPLY_OK);
        dq_msg_buf_free(&a[i]);
        dq_msg_buf_free(&b[i]);
    }
}

/* Issue 15: a teacher whose forward runs in chunks of 3 samples answers a
 * request of 16 (5 full chunks and one of 1) and a merge group whose
 * chunks straddle its requests with exactly the bytes of the teacher that
 * runs each group as one forward; the setter refuses 0 and a late call. */
static void test_chunked_forward_equals_unchunked(void **state)
{
    s_fix *f = *state;
    enum { N = 16 };
    uint8_t px[N * 784];
    float xf[5 * 784];
    dq_rng r;
    dq_rng_seed(&r, 35);
    for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)dq_rng_below(&r, 256);
    for (int i = 0; i < 5 * 784; i++) xf[i] = ((float)px[i] / 255.0f - 0.5f) / 0.5f;
    dq_err err = {{0}};
    dq_teacher_t *ch = NULL;
    assert_int_equal(dq_teacher_new(&ch, "fm", f->model, f->weights, 16, &err), DQ_OK);
    assert_int_equal(dq_teacher_max_forward(f->t), 16); /* default 128, capped by max batch */
    assert_int_equal(dq_teacher_set_max_forward(ch, 0, &err), DQ_ERR_ARG);
    assert_int_equal(dq_teacher_set_max_forward(ch, 3, &err), DQ_OK);
    assert_int_equal(dq_teacher_max_forward(ch), 3);
    dq_msg_request rq[6] = {
        s_req(px, N, DQ_DTYPE_U8),             /* alone: 16 > 3 */
        s_req(px, 2, DQ_DTYPE_U8),             /* a merge group of 2 + 4 + 5 + 1 = 12 */
        s_req(px + 2 * 784, 4, DQ_DTYPE_U8),
        s_req(xf, 5, DQ_DTYPE_F32),            /* other dtype: alone, 2 chunks */
        s_req(px + 6 * 784, 5, DQ_DTYPE_U8),
        s_req(px + 11 * 784, 1, DQ_DTYPE_U8),
    };
    const dq_msg_request *rs[6];
    dq_msg_buf a[6], b[6];
    for (int i = 0; i < 6; i++) {
        rq[i].req_id = 300 + (uint64_t)i;
        rs[i] = &rq[i];
        dq_msg_buf_init(&a[i]);
        dq_msg_buf_init(&b[i]);
    }
    /* one by one, then merged (the first is alone: 16 + 2 > max batch) */
    for (int i = 0; i < 6; i++) {
        assert_int_equal(dq_teacher_serve(ch, rs[i], &a[i], &err), DQ_OK);
        assert_int_equal(dq_teacher_serve(f->t, rs[i], &b[i], &err), DQ_OK);
        assert_true(a[i].len > 0);
        assert_int_equal(a[i].len, b[i].len);
        assert_memory_equal(a[i].data, b[i].data, a[i].len);
        dq_msg_buf_reset(&a[i]);
        dq_msg_buf_reset(&b[i]);
    }
    assert_int_equal(dq_teacher_serve_many(ch, rs, 6, a, &err), DQ_OK);
    assert_int_equal(dq_teacher_serve_many(f->t, rs, 6, b, &err), DQ_OK);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(a[i].len, b[i].len);
        assert_memory_equal(a[i].data, b[i].data, a[i].len);
        dq_msg m;
        assert_int_equal(dq_msg_decode(f->dec, a[i].data, a[i].len, &m, &err), DQ_OK);
        assert_int_equal(m.u.reply.status, DQ_REPLY_OK);
        assert_int_equal(m.u.reply.outputs[0].shape[0], rq[i].shape[0]);
    }
    /* and the 16 equal the local forward of all 16 at once */
    float ref[N * 10], got[N * 10];
    dq_msg m;
    assert_int_equal(dq_msg_decode(f->dec, a[0].data, a[0].len, &m, &err), DQ_OK);
    s_local_logits(f, px, N, ref);
    dq_msg_f32_copy(got, dq_msg_reply_output(&m.u.reply, "logits")->data, N * 10);
    assert_memory_equal(got, ref, sizeof ref);
    assert_int_equal(dq_teacher_set_max_forward(ch, 4, &err), DQ_ERR_ARG); /* after a forward */
    for (int i = 0; i < 6; i++) {
        dq_msg_buf_free(&a[i]);
        dq_msg_buf_free(&b[i]);
    }
    dq_teacher_destroy(&ch);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identity_and_announce),
        cmocka_unit_test(test_reply_equals_local_forward),
        cmocka_unit_test(test_serve_many_equals_one_by_one),
        cmocka_unit_test(test_serve_checked_equals_serve_many),
        cmocka_unit_test(test_bad_requests_get_reasons),
        cmocka_unit_test(test_chunked_forward_equals_unchunked),
    };
    return cmocka_run_group_tests_name("teacher", tests, s_setup, s_teardown);
}
