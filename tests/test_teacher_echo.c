/* test_teacher_echo.c - the echo teacher (distillq-teacher --echo): it
 * announces the model file's shapes, its identity can never be a real
 * teacher's (model "echo:<name>", sha256 of "distillq-echo\n<name>",
 * checked against Python's hashlib), every output row is the documented
 * hash of the sample's bytes (recomputed here independently), and a merged
 * serve equals serving one by one (so replies do not depend on batching). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "teacher_worker/teacher.h"
#include "tensor/rng.h"

static char s_model[512];

static dq_msg_request s_req(const void *data, int64_t n, uint64_t id)
{
    dq_msg_request r;
    memset(&r, 0, sizeof r);
    r.req_id = id;
    strcpy(r.service, "fm");
    r.dtype = DQ_DTYPE_U8;
    r.shape[0] = n;
    r.shape[1] = 1;
    r.shape[2] = 28;
    r.shape[3] = 28;
    r.data = data;
    r.data_len = (size_t)n * 784;
    r.n_outputs = 1;
    strcpy(r.outputs[0], "logits");
    return r;
}

/* The row for one sample, written out from teacher_echo.h's description. */
static void s_ref_row(const uint8_t *p, float *row)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (int i = 0; i < 784; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
    h ^= 0x9e3779b97f4a7c15ULL; /* output 0 */
    for (int i = 0; i < 10; i++) {
        h ^= h >> 33;
        h *= 0xff51afd7ed558ccdULL;
        row[i] = (float)((double)(h >> 40) / 16777216.0 * 8.0 - 4.0);
    }
}

static void test_echo_identity_and_announce(void **state)
{
    (void)state;
    dq_err err = {{0}};
    dq_teacher_t *t = NULL;
    assert_int_equal(dq_teacher_new_echo(&t, "fm", s_model, 64, &err), DQ_OK);
    const dq_msg_teacher *id = dq_teacher_identity(t);
    assert_string_equal(id->model, "echo:lightnn-fmnist");
    assert_string_equal(id->sha256,
                        "89ba91fdd005215e8440a57d8595d4b981b13de007dc76fa015e5e18cae83a22");
    dq_msg_ready a;
    memset(&a, 0, sizeof a);
    dq_teacher_announce(t, &a);
    assert_int_equal(a.input[0], 1);
    assert_int_equal(a.input[1], 28);
    assert_int_equal(a.input[2], 28);
    assert_int_equal(a.n_outputs, 1);
    assert_string_equal(a.outputs[0].name, "logits");
    assert_int_equal(a.outputs[0].ndim, 1);
    assert_int_equal(a.outputs[0].shape[0], 10);
    dq_teacher_destroy(&t);
}

static void test_echo_rows_and_merging(void **state)
{
    (void)state;
    enum { N = 9 };
    static uint8_t px[N * 784];
    dq_rng r;
    dq_rng_seed(&r, 7);
    for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)dq_rng_below(&r, 256);
    memcpy(px + 8 * 784, px + 1 * 784, 784); /* sample 8 repeats sample 1 */
    dq_err err = {{0}};
    dq_teacher_t *t = NULL;
    dq_msg_decoder_t *dec = NULL;
    assert_int_equal(dq_teacher_new_echo(&t, "fm", s_model, 64, &err), DQ_OK);
    assert_int_equal(dq_msg_decoder_new(&dec, &err), DQ_OK);
    dq_msg_request rq[3] = {s_req(px, 2, 1), s_req(px + 2 * 784, 6, 2), s_req(px + 8 * 784, 1, 3)};
    const dq_msg_request *rs[3] = {&rq[0], &rq[1], &rq[2]};
    dq_msg_buf many[3], one;
    dq_msg_buf_init(&one);
    for (int i = 0; i < 3; i++) dq_msg_buf_init(&many[i]);
    assert_int_equal(dq_teacher_serve_many(t, rs, 3, many, &err), DQ_OK);
    int64_t first = 0;
    for (int i = 0; i < 3; i++) {
        dq_msg_buf_reset(&one);
        assert_int_equal(dq_teacher_serve(t, rs[i], &one, &err), DQ_OK);
        assert_int_equal(many[i].len, one.len);
        assert_memory_equal(many[i].data, one.data, one.len);
        dq_msg m;
        assert_int_equal(dq_msg_decode(dec, one.data, one.len, &m, &err), DQ_OK);
        assert_int_equal(m.u.reply.status, DQ_REPLY_OK);
        assert_string_equal(m.u.reply.teacher.model, "echo:lightnn-fmnist");
        const dq_msg_output *o = dq_msg_reply_output(&m.u.reply, "logits");
        assert_non_null(o);
        assert_int_equal(o->shape[0], rq[i].shape[0]);
        assert_int_equal(o->shape[1], 10);
        float got[6 * 10], ref[10];
        dq_msg_f32_copy(got, o->data, (size_t)rq[i].shape[0] * 10);
        for (int64_t s = 0; s < rq[i].shape[0]; s++) {
            s_ref_row(px + (size_t)(first + s) * 784, ref);
            assert_memory_equal(got + s * 10, ref, sizeof ref);
            for (int k = 0; k < 10; k++) assert_true(got[s * 10 + k] >= -4 && got[s * 10 + k] < 4);
        }
        first += rq[i].shape[0];
    }
    for (int i = 0; i < 3; i++) dq_msg_buf_free(&many[i]);
    dq_msg_buf_free(&one);
    dq_msg_decoder_destroy(&dec);
    dq_teacher_destroy(&t);
}

int main(void)
{
    const char *top = getenv("top_srcdir");
    snprintf(s_model, sizeof s_model, "%s/models/lightnn-fmnist.model", top ? top : "..");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_echo_identity_and_announce),
        cmocka_unit_test(test_echo_rows_and_merging),
    };
    return cmocka_run_group_tests_name("teacher_echo", tests, NULL, NULL);
}
