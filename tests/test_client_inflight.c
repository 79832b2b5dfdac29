/* test_client_inflight.c - the client's exactly-once bookkeeping: a reply is
 * delivered only while its req_id is in flight, resends keep the send
 * order, and the hash survives long add/remove churn (backward-shift
 * deletion) without losing or inventing an entry. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "client/inflight.h"
#include "tensor/rng.h"

static void test_reply_delivered_once(void **state)
{
    (void)state;
    dq_inflight t;
    dq_err err = {{0}};
    assert_int_equal(dq_inflight_init(&t, 4, &err), DQ_OK);
    int a = dq_inflight_add(&t, 100, 10);
    int b = dq_inflight_add(&t, 200, 11);
    assert_true(a >= 0 && b >= 0 && a != b);
    assert_int_equal(t.count, 2);
    /* first reply for 100: found, removed */
    assert_int_equal(dq_inflight_find(&t, 100), a);
    dq_inflight_remove(&t, a);
    /* the duplicate (answer to a resend) finds nothing: dropped */
    assert_int_equal(dq_inflight_find(&t, 100), -1);
    assert_int_equal(dq_inflight_find(&t, 200), b);
    assert_int_equal(dq_inflight_find(&t, 300), -1);
    assert_int_equal(t.count, 1);
    /* the req_id may be reused once its reply was delivered */
    assert_true(dq_inflight_add(&t, 100, 12) >= 0);
    dq_inflight_free(&t);
}

static void test_duplicate_and_full(void **state)
{
    (void)state;
    dq_inflight t;
    dq_err err = {{0}};
    assert_int_equal(dq_inflight_init(&t, 3, &err), DQ_OK);
    assert_true(dq_inflight_add(&t, 7, 0) >= 0);
    assert_int_equal(dq_inflight_add(&t, 7, 1), DQ_INFLIGHT_DUPLICATE);
    assert_true(dq_inflight_add(&t, 8, 2) >= 0);
    assert_true(dq_inflight_add(&t, 9, 3) >= 0);
    assert_int_equal(dq_inflight_add(&t, 10, 4), DQ_INFLIGHT_FULL);
    assert_int_equal(dq_inflight_add(&t, 8, 4), DQ_INFLIGHT_DUPLICATE);
    assert_int_equal(t.count, 3);
    dq_inflight_free(&t);
    assert_int_equal(dq_inflight_init(&t, 0, &err), DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "capacity 0"));
}

static void test_resend_order_and_oldest(void **state)
{
    (void)state;
    dq_inflight t;
    dq_err err = {{0}};
    assert_int_equal(dq_inflight_init(&t, 8, &err), DQ_OK);
    int s[6];
    for (int i = 0; i < 6; i++) s[i] = dq_inflight_add(&t, 50 - (uint64_t)i, 100 + i);
    dq_inflight_remove(&t, s[1]);
    dq_inflight_remove(&t, s[4]);
    /* a freed slot is reused by a later request: it must still sort last */
    int late = dq_inflight_add(&t, 99, 200);
    int32_t order[8];
    int n = dq_inflight_in_order(&t, order);
    assert_int_equal(n, 5);
    assert_int_equal(t.e[order[0]].req_id, 50);
    assert_int_equal(t.e[order[1]].req_id, 48);
    assert_int_equal(t.e[order[2]].req_id, 47);
    assert_int_equal(t.e[order[3]].req_id, 45);
    assert_int_equal(order[4], late);
    /* oldest by first send is req 50; after resending it, by last send is 48 */
    assert_int_equal(dq_inflight_oldest(&t, true), s[0]);
    dq_inflight_resent(&t, s[0], 300);
    assert_int_equal(t.e[s[0]].sends, 2);
    assert_int_equal(t.e[s[0]].first_sent_ms, 100);
    assert_int_equal(dq_inflight_oldest(&t, true), s[0]);
    assert_int_equal(dq_inflight_oldest(&t, false), s[2]);
    dq_inflight_free(&t);
    assert_int_equal(dq_inflight_init(&t, 2, &err), DQ_OK);
    assert_int_equal(dq_inflight_oldest(&t, true), -1);
    dq_inflight_free(&t);
}

/* Random churn against a plain reference: every id the reference holds is
 * found at its slot, every id it does not hold is not found. Ids are drawn
 * from a small range so probe runs collide, wrap and get shifted. */
static void test_churn_matches_reference(void **state)
{
    (void)state;
    enum { CAP = 24, IDS = 64, STEPS = 20000 };
    dq_inflight t;
    dq_err err = {{0}};
    assert_int_equal(dq_inflight_init(&t, CAP, &err), DQ_OK);
    int ref[IDS];
    for (int i = 0; i < IDS; i++) ref[i] = -1;
    int held = 0;
    dq_rng r;
    dq_rng_seed(&r, 2024);
    for (int step = 0; step < STEPS; step++) {
        uint64_t id = dq_rng_below(&r, IDS);
        if (ref[id] >= 0) {
            assert_int_equal(dq_inflight_find(&t, id), ref[id]);
            dq_inflight_remove(&t, ref[id]);
            ref[id] = -1;
            held--;
        } else {
            int s = dq_inflight_add(&t, id, step);
            if (held == CAP) {
                assert_int_equal(s, DQ_INFLIGHT_FULL);
            } else {
                assert_true(s >= 0 && s < CAP);
                ref[id] = s;
                held++;
            }
        }
        assert_int_equal(t.count, held);
        if (step % 97 == 0)
            for (int i = 0; i < IDS; i++) assert_int_equal(dq_inflight_find(&t, (uint64_t)i), ref[i]);
    }
    dq_inflight_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reply_delivered_once),
        cmocka_unit_test(test_duplicate_and_full),
        cmocka_unit_test(test_resend_order_and_oldest),
        cmocka_unit_test(test_churn_matches_reference),
    };
    return cmocka_run_group_tests_name("client_inflight", tests, NULL, NULL);
}
