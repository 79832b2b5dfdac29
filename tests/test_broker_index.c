/* test_broker_index.c - the broker's indexes against the linear scans they
 * replace (issue 13):
 *  - routing id -> worker slot (worker_index.c): 200,000 random joins and
 *    leaves of workers with colliding and varying-length ids, every id
 *    looked up after each step;
 *  - the ready levels (ready.c): under random joins, dispatches, replies,
 *    drains and leaves, the picked worker always has the most free credits
 *    of its service (capped at the top level), every eligible worker is in
 *    exactly its level, and equal workers are served in turn;
 *  - (service, client) -> flow (flows.c) and name -> service (dispatch.c):
 *    lookups against a scan, the longest-idle flow reused when the table is
 *    full and never a flow a record names, a reclaimed service's flows
 *    forgotten. */
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

/* ---- ready levels ------------------------------------------------------------ */

static uint32_t s_rand(uint32_t *rng)
{
    *rng = *rng * 1664525u + 1013904223u;
    return *rng >> 8;
}

static uint32_t s_free_capped(const dq_bworker *w)
{
    if (!w->used || w->draining || w->in_flight >= w->capacity) return 0;
    uint32_t f = w->capacity - w->in_flight;
    return f < DQ_BREADY_LEVELS - 1 ? f : DQ_BREADY_LEVELS - 1;
}

/* Every level list is consistent and holds exactly its workers. */
static void s_check_levels(const dq_broker_t *b, int n_svc, int n_w)
{
    int seen = 0;
    for (int32_t sv = 0; sv < n_svc; sv++) {
        const dq_bservice *s = &b->services[sv];
        uint32_t best = 0;
        for (int32_t i = 0; i < n_w; i++)
            if (b->workers[i].used && b->workers[i].service == sv) {
                uint32_t f = s_free_capped(&b->workers[i]);
                if (f > best) best = f;
            }
        assert_int_equal(s->top, (int)best);
        for (int l = 1; l < DQ_BREADY_LEVELS; l++) {
            int32_t prev = -1;
            for (int32_t w = s->ready[l].head; w >= 0; w = b->workers[w].lnext) {
                assert_int_equal(b->workers[w].lprev, prev);
                assert_int_equal(b->workers[w].service, sv);
                assert_int_equal(b->workers[w].level, l);
                assert_int_equal(s_free_capped(&b->workers[w]), (uint32_t)l);
                prev = w;
                seen++;
            }
            assert_int_equal(s->ready[l].tail, prev);
        }
    }
    int eligible = 0;
    for (int32_t i = 0; i < n_w; i++) eligible += s_free_capped(&b->workers[i]) > 0;
    assert_int_equal(seen, eligible);
}

static void test_ready_levels_pick_most_free(void **state)
{
    (void)state;
    enum { NW = 48, NS = 3 };
    dq_broker_t b;
    memset(&b, 0, sizeof b);
    b.workers = calloc(NW, sizeof *b.workers);
    b.services = calloc(NS, sizeof *b.services);
    assert_non_null(b.workers);
    assert_non_null(b.services);
    for (int i = 0; i < NS; i++) dq_bready_init_service(&b.services[i]);
    uint32_t rng = 777;
    int dispatches = 0;
    for (int step = 0; step < 200000; step++) {
        int32_t w = (int32_t)(s_rand(&rng) % NW);
        dq_bworker *wk = &b.workers[w];
        uint32_t op = s_rand(&rng) % 16;
        if (!wk->used) {
            if (op < 4) continue;
            memset(wk, 0, sizeof *wk);
            wk->used = true;
            wk->service = (int32_t)(s_rand(&rng) % NS);
            /* mostly small, some past the top level */
            wk->capacity = op < 14 ? 1 + s_rand(&rng) % 6 : 60 + s_rand(&rng) % 10;
            wk->lprev = wk->lnext = -1;
            dq_bready_update(&b, w, false);
        } else if (op < 8) { /* dispatch in this worker's service */
            int32_t sv = wk->service, best = -1;
            uint32_t best_free = 0;
            for (int32_t i = 0; i < NW; i++)
                if (b.workers[i].used && b.workers[i].service == sv &&
                    s_free_capped(&b.workers[i]) > best_free) {
                    best_free = s_free_capped(&b.workers[i]);
                    best = i;
                }
            int32_t p = dq_bready_pick(&b, sv);
            if (best < 0) {
                assert_int_equal(p, -1);
                continue;
            }
            assert_true(p >= 0);
            assert_int_equal(s_free_capped(&b.workers[p]), best_free);
            b.workers[p].in_flight++;
            dq_bready_update(&b, p, true);
            dispatches++;
        } else if (op < 13) { /* a reply */
            if (wk->in_flight == 0) continue;
            wk->in_flight--;
            dq_bready_update(&b, w, false);
        } else if (op < 14) {
            wk->draining = true;
            dq_bready_update(&b, w, false);
        } else {
            wk->used = false;
            wk->in_flight = 0;
            dq_bready_update(&b, w, false);
        }
        if (step % 61 == 0) s_check_levels(&b, NS, NW);
    }
    s_check_levels(&b, NS, NW);
    assert_true(dispatches > 10000);

    /* Equal workers take turns: 6 workers of capacity 2, 12 dispatches
     * give each one request before any gets a second, in join order. */
    memset(b.workers, 0, NW * sizeof *b.workers);
    dq_bready_init_service(&b.services[0]);
    for (int32_t i = 0; i < 6; i++) {
        b.workers[i].used = true;
        b.workers[i].capacity = 2;
        b.workers[i].lprev = b.workers[i].lnext = -1;
        dq_bready_update(&b, i, false);
    }
    for (int k = 0; k < 12; k++) {
        int32_t p = dq_bready_pick(&b, 0);
        assert_int_equal(p, k % 6);
        b.workers[p].in_flight++;
        dq_bready_update(&b, p, true);
    }
    assert_int_equal(dq_bready_pick(&b, 0), -1);
    /* a reply makes its worker the only one with a credit */
    b.workers[4].in_flight--;
    dq_bready_update(&b, 4, false);
    assert_int_equal(dq_bready_pick(&b, 0), 4);
    free(b.workers);
    free(b.services);
}

/* ---- flows and services ------------------------------------------------------ */

static int32_t s_flow_scan(const dq_broker_t *b, int32_t svc, const char *name)
{
    for (int32_t i = 0; i < b->flow_hi; i++)
        if (b->flows[i].used && b->flows[i].service == svc && strcmp(b->flows[i].name, name) == 0)
            return i;
    return -1;
}

static void test_flow_and_service_index(void **state)
{
    (void)state;
    enum { NF = 24, NS = 4 };
    dq_broker_t b;
    memset(&b, 0, sizeof b);
    b.epoch = 0x1234567887654321ull;
    b.cfg.max_clients = NF;
    b.cfg.max_services = NS;
    b.flows = calloc(NF, sizeof *b.flows);
    b.services = calloc(NS, sizeof *b.services);
    assert_non_null(b.flows);
    assert_non_null(b.services);
    dq_err err = {{0}};
    assert_int_equal(dq_bflow_init(&b, &err), DQ_OK);
    assert_int_equal(dq_broker_services_init(&b, &err), DQ_OK);

    /* services: created once, found again, the table fills up */
    char name[32];
    for (int i = 0; i < NS; i++) {
        snprintf(name, sizeof name, "svc-%d", i);
        assert_int_equal(dq_broker_service(&b, name, false), -1);
        assert_int_equal(dq_broker_service(&b, name, true), i);
    }
    for (int i = 0; i < NS; i++) {
        snprintf(name, sizeof name, "svc-%d", i);
        assert_int_equal(dq_broker_service(&b, name, true), i);
    }
    for (int i = 0; i < NS; i++) b.services[i].has_identity = true; /* announced: kept */
    assert_int_equal(dq_broker_service(&b, "new", true), -1);

    /* flows against a scan: random gets, refs and unrefs */
    uint32_t rng = 99;
    int32_t refs[NF] = {0};
    int reused = 0, refused = 0;
    for (int step = 0; step < 100000; step++) {
        int32_t sv = (int32_t)(s_rand(&rng) % NS);
        snprintf(name, sizeof name, "client-%u", s_rand(&rng) % 40);
        int32_t expect = s_flow_scan(&b, sv, name);
        int idle = 0;
        for (int32_t i = 0; i < b.flow_hi; i++) idle += b.flows[i].used && refs[i] == 0;
        bool full = b.flow_hi == NF && b.flow_free < 0;
        int32_t fi = dq_bflow_get(&b, sv, name);
        if (expect >= 0) {
            assert_int_equal(fi, expect);
        } else if (full && idle == 0) {
            assert_int_equal(fi, -1);
            refused++;
        } else {
            assert_true(fi >= 0);
            if (full) reused++;
            assert_int_equal(refs[fi], 0); /* never a flow a record names */
            assert_int_equal(s_flow_scan(&b, sv, name), fi);
        }
        if (fi >= 0 && s_rand(&rng) % 3 != 0 && refs[fi] < 3) {
            dq_bflow_ref(&b, fi);
            refs[fi]++;
        }
        int32_t u = (int32_t)(s_rand(&rng) % NF);
        if (refs[u] > 0 && s_rand(&rng) % 2) {
            dq_bflow_unref(&b, u);
            refs[u]--;
        }
        for (int32_t i = 0; i < b.flow_hi; i++) assert_int_equal(b.flows[i].refs, refs[i]);
    }
    assert_true(reused > 100);
    assert_true(refused > 10);

    /* the longest idle flow goes first */
    for (int32_t i = 0; i < NF; i++)
        while (refs[i] > 0) {
            dq_bflow_unref(&b, i);
            refs[i]--;
        }
    int32_t oldest = b.idle_head;
    char old_name[DQ_MSG_NAME_MAX + 2];
    snprintf(old_name, sizeof old_name, "%s", b.flows[oldest].name);
    int32_t old_svc = b.flows[oldest].service;
    assert_int_equal(dq_bflow_get(&b, 0, "brand-new"), oldest);
    assert_int_equal(s_flow_scan(&b, old_svc, old_name), -1);

    /* a never-announced idle service is reclaimed, its flows forgotten */
    b.services[2].has_identity = false;
    int32_t f2 = dq_bflow_get(&b, 2, "client-x");
    assert_true(f2 >= 0);
    assert_int_equal(dq_broker_service(&b, "svc-new", true), 2);
    assert_int_equal(dq_broker_service(&b, "svc-2", false), -1);
    assert_int_equal(dq_broker_service(&b, "svc-new", false), 2);
    assert_int_equal(s_flow_scan(&b, 2, "client-x"), -1);
    assert_int_equal(b.services[2].flows, -1);
    assert_false(b.flows[f2].used);
    int32_t g = dq_bflow_get(&b, 2, "client-x"); /* a freed slot again */
    assert_true(g >= 0);
    assert_int_equal(b.flows[g].service, 2);
    assert_int_equal(s_flow_scan(&b, 2, "client-x"), g);

    dq_bflow_fini(&b);
    dq_broker_services_fini(&b);
    free(b.flows);
    free(b.services);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_index_matches_scan_under_churn),
        cmocka_unit_test(test_ready_levels_pick_most_free),
        cmocka_unit_test(test_flow_and_service_index),
    };
    return cmocka_run_group_tests_name("broker_index", tests, NULL, NULL);
}
