/* test_fairshare.c - fair sharing between students in the real broker
 * (src/broker/flows.c): a greedy student (64 requests in flight) and a
 * light one (2 in flight) on ONE fake worker of capacity 1. With one FIFO
 * per service the light student would get about 2 of every 66 batches;
 * with per-client queues served round robin it gets its weighted share:
 * 1/2 with equal weights (clients told apart by routing id), 1/4 with
 * --share greedy=3. The share is measured over the time both are active
 * (until the light student is done) and must be within 10 % of the target.
 * Also: --max-queue bounds each client's queue, not the other clients'. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "broker_harness.h"

typedef struct {
    char dir[64];
    h_broker b;
    h_worker w;
    bool w_started;
    char json[16384];
} fixture;

static int s_setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/dq-test-fair-XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    *state = f;
    return 0;
}

static int s_after(void **state)
{
    fixture *f = *state;
    if (f->w_started) h_worker_join(&f->w);
    f->w_started = false;
    if (f->b.pid > 0) h_broker_stop(&f->b);
    f->b.pid = 0;
    return 0;
}

static int s_teardown(void **state)
{
    fixture *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    if (system(cmd) != 0) return -1;
    free(f);
    return 0;
}

static void *s_client_thread(void *arg)
{
    h_client_run(arg);
    return NULL;
}

/* Broker with args, one worker of capacity 1 taking delay_ms per request. */
static void s_start(fixture *f, const char *const *args, int delay_ms)
{
    if (h_broker_start(&f->b, f->dir, false, args) != 0) fail_msg("broker did not start");
    h_worker_defaults(&f->w, f->b.backend, "fm");
    f->w.capacity = 1;
    f->w.delay_ms = delay_ms;
    f->w.max_seconds = 60;
    assert_int_equal(h_worker_start(&f->w), 0);
    f->w_started = true;
    for (int i = 0; i < 200; i++) {
        assert_int_equal(h_stats(f->b.frontend, f->json, sizeof f->json), 0);
        if (h_json_num(f->json, NULL, "workers") == 1) return;
        usleep(10000);
    }
    fail_msg("the worker did not join");
}

/* Runs greedy (64 in flight) and light (2 in flight, light_total requests)
 * together; returns the light student's share of the batches the worker
 * served until the light student had all its replies. */
static double s_share(fixture *f, const char *greedy_name, const char *light_name,
                      int light_total)
{
    h_client g, l;
    h_client_defaults(&g, f->b.frontend, "fm");
    h_client_defaults(&l, f->b.frontend, "fm");
    g.name = greedy_name, l.name = light_name;
    g.inflight = 64, g.total = 6 * light_total, g.timeout_ms = 60000;
    l.inflight = 2, l.total = light_total, l.timeout_ms = 60000, l.first_id = 1000000;
    pthread_t tg, tl;
    assert_int_equal(pthread_create(&tg, NULL, s_client_thread, &g), 0);
    usleep(20000); /* the greedy student's 64 are queued first */
    assert_int_equal(pthread_create(&tl, NULL, s_client_thread, &l), 0);
    pthread_join(tl, NULL);
    int served = atomic_load(&f->w.served);
    pthread_join(tg, NULL);
    assert_int_equal(l.ok, light_total);
    assert_int_equal(g.ok, g.total);
    assert_int_equal(g.wrong + l.wrong + g.dup + l.dup, 0);
    double share = (double)light_total / (double)served;
    print_message("# light student: %d of %d batches served while both were active "
                  "(share %.3f)\n", light_total, served, share);
    return share;
}

static void test_equal_share_by_routing_id(void **state)
{
    fixture *f = *state;
    static const char *const args[] = {"--heartbeat-ms", "100", "--request-timeout-ms", "60000",
                                       NULL};
    s_start(f, args, 2);
    double share = s_share(f, NULL, NULL, 150);
    assert_true(share >= 0.45 && share <= 0.55);
    /* the stats list both clients of the service, named by routing id */
    assert_int_equal(h_stats(f->b.frontend, f->json, sizeof f->json), 0);
    assert_non_null(strstr(f->json, "\"clients\": [{\"name\": \"#"));
}

static void test_weighted_share_by_name(void **state)
{
    fixture *f = *state;
    static const char *const args[] = {"--heartbeat-ms", "100", "--request-timeout-ms", "60000",
                                       "--share", "greedy=3", "--share", "light=1", NULL};
    s_start(f, args, 2);
    double share = s_share(f, "greedy", "light", 100);
    assert_true(share >= 0.225 && share <= 0.275);
    assert_int_equal(h_stats(f->b.frontend, f->json, sizeof f->json), 0);
    assert_int_equal(h_json_num(f->json, "\"name\": \"greedy\"", "weight"), 3);
    assert_int_equal(h_json_num(f->json, "\"name\": \"light\"", "dispatched"), 100);
    assert_int_equal(h_json_num(f->json, "\"name\": \"greedy\"", "dispatched"), 600);
}

/* --max-queue is per client: the greedy student is told 'overloaded', the
 * light one never. */
static void test_max_queue_per_client(void **state)
{
    fixture *f = *state;
    static const char *const args[] = {"--heartbeat-ms", "100", "--request-timeout-ms", "60000",
                                       "--max-queue", "8", NULL};
    s_start(f, args, 2);
    h_client g, l;
    h_client_defaults(&g, f->b.frontend, "fm");
    h_client_defaults(&l, f->b.frontend, "fm");
    g.name = "greedy", l.name = "light";
    g.inflight = 32, g.total = 32, g.timeout_ms = 10000;
    l.inflight = 2, l.total = 40, l.timeout_ms = 10000, l.first_id = 1000;
    pthread_t tg, tl;
    assert_int_equal(pthread_create(&tg, NULL, s_client_thread, &g), 0);
    usleep(20000);
    assert_int_equal(pthread_create(&tl, NULL, s_client_thread, &l), 0);
    pthread_join(tg, NULL);
    pthread_join(tl, NULL);
    assert_int_equal(l.ok, 40);
    assert_int_equal(l.status_count[DQ_REPLY_OVERLOADED], 0);
    /* about 1 at the worker + 8 queued; the rest is refused at once */
    int over = g.status_count[DQ_REPLY_OVERLOADED];
    assert_int_equal(g.ok + over, 32);
    assert_true(over >= 16);
    assert_non_null(strstr(g.last_error, "client greedy"));
    assert_int_equal(h_stats(f->b.frontend, f->json, sizeof f->json), 0);
    assert_int_equal(h_json_num(f->json, "\"name\": \"greedy\"", "overloaded"), over);
}

int main(int argc, char **argv)
{
    if (h_child_main(argc, argv)) return 0;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_equal_share_by_routing_id, s_after),
        cmocka_unit_test_teardown(test_weighted_share_by_name, s_after),
        cmocka_unit_test_teardown(test_max_queue_per_client, s_after),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
