/* test_broker.c - the real distillq-broker binary driven by fake teacher
 * workers (threads, and a child process that gets SIGKILLed) and checking
 * clients on 127.0.0.1 (and ipc://): exactly-once replies with K in flight,
 * capacity and FIFO, requeue after a hung or killed worker with the late
 * reply dropped, timeouts naming the service, overload, malformed frames,
 * stats, two services, drain/goodbye, identity conflicts, and workers
 * re-joining a restarted broker. Heartbeat 100 ms x liveness 10: a worker
 * is declared dead after 1 s of silence, so a live one (a thread of this
 * process, 100 ms heartbeats) must be starved for 1 s under ASan on busy
 * cores before an exact count of requeues or deaths goes wrong; the cases
 * that wait for a death wait on the broker's state, and late replies come
 * well after it. Each case stays within a few seconds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>
#include <zmq.h>

#include "broker_harness.h"
#include "proto/msg.h"
#include "proto/wire.h"

static const char *const s_fast[] = {"--heartbeat-ms", "100", "--liveness", "10",
                                     "--request-timeout-ms", "3000", NULL};

#define S_MAX_WORKERS 6

/* Workers live in the fixture (not on a test's stack) so that the per-test
 * teardown can stop them, the broker and any child even when an assertion
 * failed half-way through a test. */
typedef struct {
    char dir[64];
    h_broker b;
    char json[16384];
    h_worker workers[S_MAX_WORKERS];
    int n_workers;
    pid_t child;
} fixture;

/* A fresh fake worker of service on this test's broker (defaults set). */
static h_worker *s_worker(fixture *f, const char *service)
{
    if (f->n_workers == S_MAX_WORKERS) fail_msg("too many fake workers in one test");
    h_worker *w = &f->workers[f->n_workers++];
    h_worker_defaults(w, f->b.backend, service);
    return w;
}

/* After each test, pass or fail: nothing it started keeps running. */
static int s_after(void **state)
{
    fixture *f = *state;
    for (int i = 0; i < f->n_workers; i++) h_worker_join(&f->workers[i]);
    f->n_workers = 0;
    if (f->child > 0) {
        kill(f->child, SIGKILL);
        waitpid(f->child, NULL, 0);
        f->child = 0;
    }
    if (f->b.pid > 0) h_broker_stop(&f->b);
    return 0;
}

static int s_setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/dq-test-broker-XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    *state = f;
    return 0;
}

static int s_teardown(void **state)
{
    fixture *f = *state;
    if (getenv("DQ_KEEP_LOGS")) { /* debugging aid: leave the broker logs */
        fprintf(stderr, "# broker logs kept in %s\n", f->dir);
        free(f);
        return 0;
    }
    DIR *d = opendir(f->dir);
    struct dirent *e;
    char path[512];
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", f->dir, e->d_name);
        unlink(path);
    }
    if (d) closedir(d);
    rmdir(f->dir);
    free(f);
    return 0;
}

static fixture *s_start(void **state, bool ipc, const char *const *args)
{
    fixture *f = *state;
    if (h_broker_start(&f->b, f->dir, ipc, args) != 0) fail_msg("broker did not start");
    return f;
}

static void s_stop(fixture *f)
{
    assert_int_equal(h_broker_stop(&f->b), 0); /* clean exit on SIGTERM */
}

static void s_stats(fixture *f)
{
    assert_int_equal(h_stats(f->b.frontend, f->json, sizeof f->json), 0);
}

/* Waits (bounded) until the broker counts `want` live workers. */
static void s_wait_workers(fixture *f, int want)
{
    for (int i = 0; i < 200; i++) {
        s_stats(f);
        if (h_json_num(f->json, NULL, "workers") == want) return;
        usleep(10000);
    }
    fail_msg("broker never saw %d workers: %s", want, f->json);
}

static void test_many_requests_exactly_once_and_stats(void **state)
{
    fixture *f = s_start(state, false, s_fast);
    h_worker *w1 = s_worker(f, "fmnist");
    h_worker *w2 = s_worker(f, "fmnist");
    w1->capacity = 2, w1->delay_ms = 1;
    w2->capacity = 3, w2->delay_ms = 2;
    assert_int_equal(h_worker_start(w1), 0);
    assert_int_equal(h_worker_start(w2), 0);
    s_wait_workers(f, 2);
    h_client c;
    h_client_defaults(&c, f->b.frontend, "fmnist");
    c.total = 300, c.inflight = 16, c.after_ms = 100;
    h_client_run(&c);
    assert_int_equal(c.ok, 300);
    assert_int_equal(c.missing, 0);
    assert_int_equal(c.dup, 0);
    assert_int_equal(c.wrong, 0);
    assert_int_equal(c.unknown, 0);
    assert_string_equal(c.teacher_service, "fmnist");
    assert_true(atomic_load(&w1->max_held) <= 2);
    assert_true(atomic_load(&w2->max_held) <= 3);
    assert_true(atomic_load(&w1->served) > 0 && atomic_load(&w2->served) > 0);
    assert_int_equal(atomic_load(&w1->served) + atomic_load(&w2->served), 300);
    /* stats match what was sent and served */
    s_stats(f);
    assert_int_equal(h_json_num(f->json, NULL, "requests"), 300);
    assert_int_equal(h_json_num(f->json, NULL, "replies"), 300);
    assert_int_equal(h_json_num(f->json, "\"name\": \"fmnist\"", "served"), 300);
    assert_int_equal(h_json_num(f->json, "\"name\": \"fmnist\"", "errors"), 0);
    assert_int_equal(h_json_num(f->json, "\"name\": \"fmnist\"", "queue"), 0);
    assert_int_equal(h_json_num(f->json, NULL, "in_flight"), 0);
    assert_int_equal(h_json_num(f->json, NULL, "worker_send_failed"), 0);
    long long s1 = h_json_num(f->json, "\"capacity\": 2", "served");
    long long s2 = h_json_num(f->json, "\"capacity\": 3", "served");
    assert_int_equal(s1, atomic_load(&w1->served));
    assert_int_equal(s2, atomic_load(&w2->served));
    assert_non_null(strstr(f->json, "\"model\": \"fake-teacher\""));
    assert_true(h_log_count(&f->b, "joined 'fmnist'") == 2);
    h_worker_join(w1);
    h_worker_join(w2);
    s_stop(f);
}

static void test_capacity_and_fifo(void **state)
{
    fixture *f = s_start(state, false, s_fast);
    /* one worker of capacity 1: requests are served strictly in send order */
    h_worker *w = s_worker(f, "seq");
    w->capacity = 1, w->delay_ms = 1;
    assert_int_equal(h_worker_start(w), 0);
    s_wait_workers(f, 1);
    h_client c;
    h_client_defaults(&c, f->b.frontend, "seq");
    c.total = 40, c.inflight = 8;
    h_client_run(&c);
    assert_int_equal(c.ok, 40);
    assert_true(c.in_order);
    assert_int_equal(atomic_load(&w->max_held), 1);
    h_worker_join(w);
    /* capacity 2 with slow compute and 16 in flight: it holds exactly 2 */
    w = s_worker(f, "seq");
    w->capacity = 2, w->delay_ms = 15;
    assert_int_equal(h_worker_start(w), 0);
    h_client_defaults(&c, f->b.frontend, "seq");
    c.total = 20, c.inflight = 16, c.first_id = 1000;
    h_client_run(&c);
    assert_int_equal(c.ok, 20);
    assert_int_equal(atomic_load(&w->max_held), 2);
    h_worker_join(w);
    s_stop(f);
}

static void test_hung_worker_requeued_late_reply_dropped(void **state)
{
    fixture *f = s_start(state, false, s_fast);
    h_worker *hung = s_worker(f, "svc");
    h_worker *good = s_worker(f, "svc");
    /* late replies 3 s after the hang: 2 s after the broker (1 s liveness)
     * declared it dead, even when a busy machine delays that */
    hung->capacity = 2, hung->delay_ms = 2, hung->hang_after = 6, hung->late_after_ms = 3000;
    good->capacity = 2, good->delay_ms = 3;
    assert_int_equal(h_worker_start(hung), 0);
    s_wait_workers(f, 1);
    assert_int_equal(h_worker_start(good), 0);
    s_wait_workers(f, 2);
    h_client c;
    h_client_defaults(&c, f->b.frontend, "svc");
    /* keeps listening 3 s after the last reply (which comes after the
     * requeue, >= 1 s after the hang): the late replies (sent 3 s after the
     * hang) must not reach it */
    c.total = 80, c.inflight = 8, c.after_ms = 3000, c.timeout_ms = 20000;
    h_client_run(&c);
    h_worker_wait(hung); /* it has sent its late replies and left */
    assert_int_equal(atomic_load(&hung->late_sent), 2);
    assert_int_equal(c.ok, 80);
    assert_int_equal(c.dup, 0);
    assert_int_equal(c.missing, 0);
    assert_int_equal(c.wrong, 0);
    s_stats(f);
    assert_int_equal(h_json_num(f->json, NULL, "late_dropped"), 2);
    assert_int_equal(h_json_num(f->json, NULL, "replies"), 80);
    assert_int_equal(h_json_num(f->json, "\"name\": \"svc\"", "requeues"), 2);
    assert_true(h_log_contains(&f->b, "died (silent for"));
    assert_true(h_log_contains(&f->b, "requeued 2 requests of worker"));
    assert_true(h_log_contains(&f->b, "dropped a reply from unknown worker"));
    h_worker_join(good);
    s_stop(f);
}

/* A worker that keeps heartbeating but stops answering (a stuck compute
 * thread) is not dead by liveness; --service-timeout-ms catches it: its
 * requests go to the other worker, each answered exactly once, and its
 * late replies are dropped. */
static const char *const s_stuck_args[] = {"--heartbeat-ms", "100", "--liveness", "10",
                                           "--request-timeout-ms", "3000",
                                           "--service-timeout-ms", "400", NULL};

static void test_stuck_heartbeating_worker_requeued(void **state)
{
    fixture *f = s_start(state, false, s_stuck_args);
    h_worker *stuck = s_worker(f, "svc");
    h_worker *good = s_worker(f, "svc");
    stuck->capacity = 2, stuck->delay_ms = 2, stuck->hang_after = 6;
    stuck->hang_heartbeats = true, stuck->late_after_ms = 1200;
    good->capacity = 2, good->delay_ms = 3;
    assert_int_equal(h_worker_start(stuck), 0);
    s_wait_workers(f, 1);
    assert_int_equal(h_worker_start(good), 0);
    s_wait_workers(f, 2);
    h_client c;
    h_client_defaults(&c, f->b.frontend, "svc");
    c.total = 80, c.inflight = 8, c.after_ms = 1500;
    h_client_run(&c);
    h_worker_wait(stuck);
    assert_int_equal(c.ok, 80);
    assert_int_equal(c.dup, 0);
    assert_int_equal(c.missing, 0);
    assert_int_equal(c.wrong, 0);
    assert_true(h_log_contains(&f->b, "is stuck (held a request for"));
    assert_false(h_log_contains(&f->b, "died (silent for"));
    assert_true(h_log_contains(&f->b, "requeued 2 requests of worker"));
    s_stats(f);
    assert_int_equal(h_json_num(f->json, NULL, "replies"), 80);
    assert_int_equal(h_json_num(f->json, "\"name\": \"svc\"", "requeues"), 2);
    h_worker_join(good);
    s_stop(f);
}

/* A stalled worker that comes back (re-announces, so the broker knows it
 * again) and then replies to requests that were requeued and now sit at
 * another worker: the tickets no longer match, so each stale reply (whose
 * values are deliberately wrong) is dropped and the client gets exactly the
 * good worker's answer once. */
static void *s_client_thread(void *arg);

static void test_stale_ticket_after_rejoin_dropped(void **state)
{
    fixture *f = s_start(state, false, s_fast);
    h_worker *stall = s_worker(f, "svc");
    h_worker *good = s_worker(f, "svc");
    stall->capacity = 2, stall->hang_after = 2, stall->late_on_release = true;
    stall->delay_ms = 5000; /* answers nothing before it hangs */
    stall->rejoin_late = true;
    good->capacity = 2, good->delay_ms = 300;
    assert_int_equal(h_worker_start(stall), 0);
    s_wait_workers(f, 1);
    h_client c;
    h_client_defaults(&c, f->b.frontend, "svc");
    c.total = 4, c.inflight = 4, c.after_ms = 300;
    pthread_t tc;
    assert_int_equal(pthread_create(&tc, NULL, s_client_thread, &c), 0);
    /* the stalled worker is declared dead and its 2 requests requeued ... */
    for (int i = 0; i < 1000 && !h_log_contains(&f->b, "requeued 2 requests"); i++) usleep(10000);
    assert_true(h_log_contains(&f->b, "requeued 2 requests"));
    /* ... the good worker takes them (the 2 oldest, from the queue head) ... */
    assert_int_equal(h_worker_start(good), 0);
    for (int i = 0; i < 2500 && atomic_load(&good->received) < 2; i++) usleep(2000);
    assert_int_equal(atomic_load(&good->received), 2);
    /* ... and while it holds them, the stalled one rejoins and replies */
    atomic_store(&stall->release_late, 1);
    pthread_join(tc, NULL);
    h_worker_wait(stall);
    assert_int_equal(atomic_load(&stall->late_sent), 2);
    assert_int_equal(atomic_load(&stall->readies), 2);
    assert_int_equal(c.ok, 4);
    assert_int_equal(c.wrong, 0);
    assert_int_equal(c.dup, 0);
    assert_int_equal(c.missing, 0);
    h_worker_join(good); /* its counter is bumped just after its send */
    assert_int_equal(atomic_load(&good->served), 4);
    s_stats(f);
    assert_int_equal(h_json_num(f->json, NULL, "late_dropped"), 2);
    assert_int_equal(h_log_count(&f->b, "dropped a late reply from worker"), 2);
    assert_int_equal(h_json_num(f->json, NULL, "replies"), 4);
    s_stop(f);
}

typedef struct {
    pid_t child;
    bool killed;
} s_killer;

static void s_kill_mid_stream(void *arg, int answered)
{
    s_killer *k = arg;
    if (!k->killed && answered >= 20) {
        kill(k->child, SIGKILL);
        k->killed = true;
    }
}

static void test_killed_worker_requeued(void **state)
{
    fixture *f = s_start(state, false, s_fast);
    s_killer k = {h_worker_spawn(NULL, f->b.backend, "svc", 3, 20), false};
    assert_true(k.child > 0);
    f->child = k.child;
    s_wait_workers(f, 1);
    h_worker *good = s_worker(f, "svc");
    good->capacity = 2, good->delay_ms = 20;
    assert_int_equal(h_worker_start(good), 0);
    s_wait_workers(f, 2);
    h_client c;
    h_client_defaults(&c, f->b.frontend, "svc");
    c.total = 60, c.inflight = 16, c.after_ms = 300;
    c.on_progress = s_kill_mid_stream, c.arg = &k;
    h_client_run(&c);
    int st = 0;
    assert_int_equal(waitpid(k.child, &st, 0), k.child);
    f->child = 0;
    assert_true(k.killed && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    assert_int_equal(c.ok, 60);
    assert_int_equal(c.dup, 0);
    assert_int_equal(c.missing, 0);
    s_stats(f);
    assert_true(h_json_num(f->json, "\"name\": \"svc\"", "requeues") >= 1);
    /* the dead worker's connection is gone before liveness runs out: the
     * heartbeats (or requests) sent to it meanwhile fail and are counted */
    assert_true(h_json_num(f->json, NULL, "worker_send_failed") >= 1);
    assert_int_equal(h_json_num(f->json, NULL, "workers"), 1);
    assert_true(h_log_contains(&f->b, "requeued"));
    h_worker_join(good);
    s_stop(f);
}

static void test_no_worker_timeout_names_service(void **state)
{
    static const char *const args[] = {"--heartbeat-ms", "100", "--request-timeout-ms", "300",
                                       NULL};
    fixture *f = s_start(state, false, args);
    h_client c;
    h_client_defaults(&c, f->b.frontend, "ghost");
    c.total = 3, c.inflight = 3, c.timeout_ms = 10000;
    int64_t t0 = dq_clock_now_ms();
    h_client_run(&c);
    int64_t dt = dq_clock_now_ms() - t0;
    /* The broker answered all three (not the client's own 10 s timeout),
     * each after its 300 ms in the queue: a lower bound that load cannot
     * break (the clock starts before the requests are sent); the upper
     * bound only says the expiry came from the broker's timer (ticks of
     * 30 ms), with seconds of margin for a loaded machine. */
    assert_int_equal(c.status_count[DQ_REPLY_UNKNOWN_SERVICE], 3);
    assert_int_equal(c.missing, 0);
    assert_non_null(strstr(c.last_error, "'ghost'"));
    assert_true(dt >= 290 && dt < 6000);
    /* a service whose only worker left: "timeout", also naming it */
    h_worker *w = s_worker(f, "gone");
    w->graceful = true;
    assert_int_equal(h_worker_start(w), 0);
    s_wait_workers(f, 1);
    h_worker_join(w);
    s_wait_workers(f, 0);
    h_client_defaults(&c, f->b.frontend, "gone");
    c.total = 2, c.inflight = 2, c.timeout_ms = 3000;
    h_client_run(&c);
    assert_int_equal(c.status_count[DQ_REPLY_TIMEOUT], 2);
    assert_non_null(strstr(c.last_error, "'gone'"));
    assert_true(h_log_contains(&f->b, "left"));
    s_stats(f);
    assert_int_equal(h_json_num(f->json, "\"name\": \"ghost\"", "timeouts"), 3);
    /* rejected counts every error reply the broker made (unknown_service and
     * timeout included); malformed only what failed to decode: nothing here */
    assert_int_equal(h_json_num(f->json, NULL, "rejected"), 5);
    assert_int_equal(h_json_num(f->json, NULL, "malformed"), 0);
    s_stop(f);
}

/* Issue 11: a capacity limit is no identity. Workers of the same weights
 * announcing different max_batch share a service, which takes the least of
 * them (so any worker can serve what it accepts) and forgets a limit when
 * its worker leaves. */
static void test_max_batch_is_not_identity(void **state)
{
    static const char *const args[] = {"--heartbeat-ms", "100", NULL};
    fixture *f = s_start(state, false, args);
    h_worker *a = s_worker(f, "mb"), *b = s_worker(f, "mb");
    a->max_batch = 8;
    b->max_batch = 3;
    b->graceful = true;
    assert_int_equal(h_worker_start(a), 0);
    assert_int_equal(h_worker_start(b), 0);
    s_wait_workers(f, 2);
    assert_int_equal(atomic_load(&b->disconnects), 0);
    s_stats(f);
    assert_int_equal(h_json_num(f->json, "\"name\": \"mb\"", "max_batch"), 3);
    h_client c;
    h_client_defaults(&c, f->b.frontend, "mb");
    c.n = 3, c.total = 40, c.inflight = 8, c.timeout_ms = 5000;
    h_client_run(&c);
    assert_int_equal(c.ok, 40);
    assert_int_equal(c.wrong, 0);
    assert_true(atomic_load(&a->served) > 0 && atomic_load(&b->served) > 0);
    h_client_defaults(&c, f->b.frontend, "mb"); /* above the least limit */
    c.n = 4, c.total = 1, c.inflight = 1, c.timeout_ms = 3000;
    h_client_run(&c);
    assert_int_equal(c.status_count[DQ_REPLY_BAD_REQUEST], 1);
    assert_non_null(strstr(c.last_error, "at most 3"));
    h_worker_join(b); /* the limit of 3 leaves with its worker */
    s_wait_workers(f, 1);
    s_stats(f);
    assert_int_equal(h_json_num(f->json, "\"name\": \"mb\"", "max_batch"), 8);
    h_client_run(&c);
    assert_int_equal(c.ok, 1);
    h_worker_join(a);
    s_stop(f);
}

/* Issue 11: an ok reply naming another teacher than its worker announced,
 * or carrying an output nobody asked for, is not forwarded: the client gets
 * `error` naming the fault, the broker counts a bad reply (not malformed). */
static void test_reply_checks(void **state)
{
    static const char *const args[] = {"--heartbeat-ms", "100", NULL};
    fixture *f = s_start(state, false, args);
    for (int k = 0; k < 2; k++) {
        h_worker *w = s_worker(f, k ? "extra" : "liar");
        if (k) w->extra_output = true;
        else w->reply_sha = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";
        assert_int_equal(h_worker_start(w), 0);
        s_wait_workers(f, 1);
        h_client c;
        h_client_defaults(&c, f->b.frontend, k ? "extra" : "liar");
        c.total = 3, c.inflight = 3, c.timeout_ms = 3000;
        h_client_run(&c);
        assert_int_equal(c.ok, 0);
        assert_int_equal(c.status_count[DQ_REPLY_ERROR], 3);
        assert_non_null(strstr(c.last_error, k ? "the request asked for 1" : "reply names teacher"));
        h_worker_join(w);
        s_wait_workers(f, 0);
    }
    s_stats(f);
    assert_int_equal(h_json_num(f->json, NULL, "bad_replies"), 6);
    assert_int_equal(h_json_num(f->json, NULL, "malformed"), 0);
    assert_int_equal(h_json_num(f->json, NULL, "rejected"), 6);
    s_stop(f);
}

static void test_overloaded(void **state)
{
    static const char *const args[] = {"--heartbeat-ms", "100", "--request-timeout-ms", "500",
                                       "--max-queue", "4", NULL};
    fixture *f = s_start(state, false, args);
    h_client c;
    h_client_defaults(&c, f->b.frontend, "busy");
    c.total = 7, c.inflight = 7, c.timeout_ms = 3000;
    h_client_run(&c);
    assert_int_equal(c.missing, 0);
    assert_int_equal(c.status_count[DQ_REPLY_OVERLOADED], 3);
    assert_int_equal(c.status_count[DQ_REPLY_UNKNOWN_SERVICE], 4);
    s_stats(f);
    assert_int_equal(h_json_num(f->json, "\"name\": \"busy\"", "overloaded"), 3);
    s_stop(f);
}

/* Issue 15: request bodies held are counted in bytes, per client queue
 * (--max-client-bytes) and in total (--max-queue-bytes). Requests of 8
 * images (~6.4 KB) for a service with no worker stay queued until the
 * timeout: client a gets 2 in (its budget holds 2), b only 1 (the total
 * holds 3), the rest are answered overloaded at once, every request exactly
 * once, and the bytes held go back to 0. */
static void test_byte_budget(void **state)
{
    static const char *const args[] = {"--heartbeat-ms", "100", "--request-timeout-ms", "1500",
                                       "--max-queue-bytes", "20000", "--max-client-bytes",
                                       "13000", NULL};
    fixture *f = s_start(state, false, args);
    h_client a, c;
    h_client_defaults(&a, f->b.frontend, "big");
    a.n = 8, a.h = a.w = 28, a.total = 4, a.inflight = 4, a.timeout_ms = 5000, a.name = "a";
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, s_client_thread, &a), 0);
    long long held = 0;
    for (int i = 0; i < 200 && held < 2 * 6272; i++) {
        s_stats(f);
        held = h_json_num(f->json, NULL, "bytes_held");
        usleep(10000);
    }
    assert_true(held > 2 * 6272 && held < 2 * 6600); /* two bodies, encoded */
    h_client_defaults(&c, f->b.frontend, "big");
    c.n = 8, c.h = c.w = 28, c.total = 4, c.inflight = 4, c.timeout_ms = 5000, c.name = "b", c.first_id = 100;
    h_client_run(&c);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(a.missing + a.dup + c.missing + c.dup, 0);
    assert_int_equal(a.status_count[DQ_REPLY_OVERLOADED], 2);
    assert_int_equal(a.status_count[DQ_REPLY_UNKNOWN_SERVICE], 2);
    assert_int_equal(c.status_count[DQ_REPLY_OVERLOADED], 3);
    assert_int_equal(c.status_count[DQ_REPLY_UNKNOWN_SERVICE], 1);
    s_stats(f);
    assert_int_equal(h_json_num(f->json, NULL, "bytes_held"), 0);
    long long peak = h_json_num(f->json, NULL, "bytes_held_peak");
    assert_true(peak > 3 * 6272 && peak <= 20000);
    assert_int_equal(h_json_num(f->json, NULL, "over_budget"), 5);
    assert_int_equal(h_json_num(f->json, NULL, "max_client_bytes"), 13000);
    assert_int_equal(h_json_num(f->json, "\"name\": \"a\"", "overloaded"), 2);
    assert_int_equal(h_json_num(f->json, "\"name\": \"a\"", "bytes_held"), 0);
    s_stop(f);
}

/* Sends raw frames from a DEALER and returns the decoded reply's status
 * (-1 if none within 2 s); why receives the error text. */
static int s_raw(void *s, dq_msg_decoder_t *dec, const void *const *data, const size_t *len,
                 int n, uint64_t *req_id, char *why)
{
    if (dq_wire_send(s, n, data, len, 0, NULL) != DQ_OK) return -1;
    zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, 2000) != 1) return -1;
    dq_wire_parts p;
    dq_msg m;
    int st = -1;
    if (dq_wire_recv(s, &p, 0, NULL) != DQ_OK) return -1;
    if (p.n == 1 && dq_msg_decode(dec, zmq_msg_data(&p.f[0]), zmq_msg_size(&p.f[0]), &m, NULL) ==
                        DQ_OK &&
        m.type == DQ_MSG_REPLY) {
        st = (int)m.u.reply.status;
        *req_id = m.u.reply.req_id;
        snprintf(why, DQ_MSG_ERROR_MAX + 1, "%s", m.u.reply.error);
    }
    dq_wire_parts_close(&p);
    return st;
}

static void test_malformed_frames_get_error_replies(void **state)
{
    static const char *const args[] = {"--heartbeat-ms", "100", "--max-msg-bytes", "65536", NULL};
    fixture *f = s_start(state, false, args);
    h_worker *w = s_worker(f, "fm");
    w->garbage_first = true; /* junk on the backend: logged, not fatal */
    assert_int_equal(h_worker_start(w), 0);
    s_wait_workers(f, 1);
    void *ctx = zmq_ctx_new(), *s = NULL;
    dq_wire_opts o = {.linger_ms = 0};
    assert_int_equal(dq_wire_dealer_new(&s, ctx, f->b.frontend, &o, NULL), DQ_OK);
    dq_msg_decoder_t *dec = NULL;
    assert_int_equal(dq_msg_decoder_new(&dec, NULL), DQ_OK);
    char why[DQ_MSG_ERROR_MAX + 1];
    uint64_t id = 0;

    const void *junk[1] = {"\xdd\xff\xff\xff\xffgarbage"};
    size_t junk_len[1] = {12};
    assert_int_equal(s_raw(s, dec, junk, junk_len, 1, &id, why), DQ_REPLY_BAD_REQUEST);
    assert_non_null(strstr(why, "declares"));

    const void *two[2] = {"a", "b"};
    size_t two_len[2] = {1, 1};
    assert_int_equal(s_raw(s, dec, two, two_len, 2, &id, why), DQ_REPLY_BAD_REQUEST);
    assert_non_null(strstr(why, "got 2 frames"));

    dq_msg_buf buf;
    dq_msg_buf_init(&buf);
    assert_int_equal(dq_msg_encode_simple(&buf, DQ_MSG_GOODBYE, NULL), DQ_OK);
    const void *gb[1] = {buf.data};
    size_t gb_len[1] = {buf.len};
    assert_int_equal(s_raw(s, dec, gb, gb_len, 1, &id, why), DQ_REPLY_BAD_REQUEST);
    /* a worker's message: a worker was given the client port, and is told so */
    assert_non_null(strstr(why, "is the broker's client port (frontend): teacher workers "
                                "connect to its worker port (backend) "));
    assert_non_null(strstr(why, f->b.backend));
    dq_msg_buf_reset(&buf);
    assert_int_equal(dq_msg_encode_simple(&buf, DQ_MSG_REANNOUNCE, NULL), DQ_OK);
    gb[0] = buf.data;
    gb_len[0] = buf.len;
    assert_int_equal(s_raw(s, dec, gb, gb_len, 1, &id, why), DQ_REPLY_BAD_REQUEST);
    assert_non_null(strstr(why, "'reannounce' is not accepted"));

    /* a request the service's workers announced they cannot take */
    uint8_t px[3 * 32 * 32];
    dq_msg_request rq;
    memset(&rq, 0, sizeof rq);
    rq.req_id = 4242;
    snprintf(rq.service, sizeof rq.service, "fm");
    rq.dtype = DQ_DTYPE_U8;
    rq.shape[0] = 1, rq.shape[1] = 3, rq.shape[2] = 32, rq.shape[3] = 32;
    rq.data = px, rq.data_len = sizeof px;
    memset(px, 1, sizeof px);
    rq.n_outputs = 1;
    snprintf(rq.outputs[0], sizeof rq.outputs[0], "logits");
    dq_msg_buf_reset(&buf);
    assert_int_equal(dq_msg_encode_request(&buf, &rq, NULL), DQ_OK);
    gb[0] = buf.data, gb_len[0] = buf.len;
    assert_int_equal(s_raw(s, dec, gb, gb_len, 1, &id, why), DQ_REPLY_BAD_REQUEST);
    assert_int_equal(id, 4242);
    assert_non_null(strstr(why, "takes 1x8x8 inputs"));
    /* an output the service does not have */
    rq.shape[1] = 1, rq.shape[2] = 8, rq.shape[3] = 8, rq.data_len = 64;
    snprintf(rq.outputs[0], sizeof rq.outputs[0], "nope");
    dq_msg_buf_reset(&buf);
    assert_int_equal(dq_msg_encode_request(&buf, &rq, NULL), DQ_OK);
    gb[0] = buf.data, gb_len[0] = buf.len;
    assert_int_equal(s_raw(s, dec, gb, gb_len, 1, &id, why), DQ_REPLY_BAD_REQUEST);
    assert_non_null(strstr(why, "no output 'nope'"));
    /* data length not matching the shape: the req_id is still echoed */
    snprintf(rq.outputs[0], sizeof rq.outputs[0], "logits");
    dq_msg_buf_reset(&buf);
    assert_int_equal(dq_msg_encode_request(&buf, &rq, NULL), DQ_OK);
    /* the bin is the last field: shorten its payload and header length by one */
    uint8_t *bad = malloc(buf.len);
    assert_non_null(bad);
    memcpy(bad, buf.data, buf.len);
    assert_int_equal(bad[buf.len - 64 - 2], 0xc4); /* bin8 marker, length 64 */
    bad[buf.len - 64 - 1] = 63;
    gb[0] = bad, gb_len[0] = buf.len - 1;
    assert_int_equal(s_raw(s, dec, gb, gb_len, 1, &id, why), DQ_REPLY_BAD_REQUEST);
    assert_int_equal(id, 4242);
    assert_non_null(strstr(why, "63 bytes, shape needs 64"));
    free(bad);
    /* a frame over --max-msg-bytes */
    size_t big = 100000;
    uint8_t *huge = calloc(big, 1);
    assert_non_null(huge);
    gb[0] = huge, gb_len[0] = big;
    assert_int_equal(s_raw(s, dec, gb, gb_len, 1, &id, why), DQ_REPLY_BAD_REQUEST);
    assert_non_null(strstr(why, "exceeds"));
    free(huge);

    /* and the broker still serves */
    h_client c;
    h_client_defaults(&c, f->b.frontend, "fm");
    c.total = 20;
    h_client_run(&c);
    assert_int_equal(c.ok, 20);
    assert_true(h_log_contains(&f->b, "malformed message from worker"));
    s_stats(f);
    assert_int_equal(h_json_num(f->json, "\"name\": \"fm\"", "bad_requests"), 2);
    assert_true(h_json_num(f->json, NULL, "malformed") >= 6);
    dq_msg_buf_free(&buf);
    dq_msg_decoder_destroy(&dec);
    zmq_close(s);
    zmq_ctx_term(ctx);
    h_worker_join(w);
    s_stop(f);
}

/* The same (client, req_id) sent twice while the first is held: one reply. */
static void test_duplicate_req_id_answered_once(void **state)
{
    fixture *f = s_start(state, false, s_fast);
    h_worker *w = s_worker(f, "dup");
    w->delay_ms = 200;
    assert_int_equal(h_worker_start(w), 0);
    s_wait_workers(f, 1);
    void *ctx = zmq_ctx_new(), *s = NULL;
    dq_wire_opts o = {.linger_ms = 0};
    assert_int_equal(dq_wire_dealer_new(&s, ctx, f->b.frontend, &o, NULL), DQ_OK);
    uint8_t px[64];
    h_fill(px, sizeof px, 5);
    dq_msg_request rq;
    memset(&rq, 0, sizeof rq);
    rq.req_id = 5;
    snprintf(rq.service, sizeof rq.service, "dup");
    rq.shape[0] = 1, rq.shape[1] = 1, rq.shape[2] = 8, rq.shape[3] = 8;
    rq.data = px, rq.data_len = sizeof px, rq.n_outputs = 1;
    snprintf(rq.outputs[0], sizeof rq.outputs[0], "logits");
    dq_msg_buf buf;
    dq_msg_buf_init(&buf);
    assert_int_equal(dq_msg_encode_request(&buf, &rq, NULL), DQ_OK);
    assert_true(zmq_send(s, buf.data, buf.len, 0) >= 0);
    assert_true(zmq_send(s, buf.data, buf.len, 0) >= 0);
    int replies = 0;
    int64_t end = dq_clock_now_ms() + 800;
    for (int64_t now = dq_clock_now_ms(); now < end; now = dq_clock_now_ms()) {
        zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, (long)(end - now)) != 1) continue;
        dq_wire_parts p;
        if (dq_wire_recv(s, &p, 0, NULL) == DQ_OK) {
            replies++;
            dq_wire_parts_close(&p);
        }
    }
    assert_int_equal(replies, 1);
    assert_int_equal(atomic_load(&w->received), 1);
    s_stats(f);
    assert_int_equal(h_json_num(f->json, NULL, "duplicates"), 1);
    assert_true(h_log_contains(&f->b, "ignored duplicate req_id 5"));
    dq_msg_buf_free(&buf);
    zmq_close(s);
    zmq_ctx_term(ctx);
    h_worker_join(w);
    s_stop(f);
}

static void *s_client_thread(void *arg)
{
    h_client_run(arg);
    return NULL;
}

static void test_two_services_two_clients_ipc(void **state)
{
    fixture *f = s_start(state, true, s_fast);
    h_worker *wa = s_worker(f, "alpha");
    h_worker *wb = s_worker(f, "beta");
    wb->c = 3, wb->h = 4, wb->w = 4, wb->sha = H_SHA_B, wb->capacity = 3;
    wa->delay_ms = 1, wb->delay_ms = 1;
    assert_int_equal(h_worker_start(wa), 0);
    assert_int_equal(h_worker_start(wb), 0);
    s_wait_workers(f, 2);
    h_client ca, cb;
    h_client_defaults(&ca, f->b.frontend, "alpha");
    h_client_defaults(&cb, f->b.frontend, "beta");
    cb.c = 3, cb.h = 4, cb.w = 4, cb.n = 2;
    ca.total = cb.total = 150;
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, s_client_thread, &ca), 0);
    assert_int_equal(pthread_create(&tb, NULL, s_client_thread, &cb), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    assert_int_equal(ca.ok, 150);
    assert_int_equal(cb.ok, 150);
    assert_int_equal(ca.dup + cb.dup + ca.wrong + cb.wrong, 0);
    assert_string_equal(ca.teacher_service, "alpha");
    assert_string_equal(cb.teacher_service, "beta");
    assert_int_equal(atomic_load(&wa->served), 150);
    assert_int_equal(atomic_load(&wb->served), 150);
    /* a third worker claiming "beta" with other weights is refused */
    h_worker *bad = s_worker(f, "beta");
    bad->c = 3, bad->h = 4, bad->w = 4, bad->sha = H_SHA_A;
    assert_int_equal(h_worker_start(bad), 0);
    for (int i = 0; i < 200 && atomic_load(&bad->disconnects) == 0; i++) usleep(10000);
    assert_true(atomic_load(&bad->disconnects) >= 1);
    assert_true(h_log_contains(&f->b, "rejected worker"));
    h_worker_join(bad);
    h_worker_join(wa);
    h_worker_join(wb);
    s_stop(f);
}

static void test_graceful_drain_loses_nothing(void **state)
{
    fixture *f = s_start(state, false, s_fast);
    h_worker *leaving = s_worker(f, "d");
    h_worker *staying = s_worker(f, "d");
    leaving->graceful = true, leaving->delay_ms = 10, leaving->capacity = 3;
    staying->delay_ms = 5;
    assert_int_equal(h_worker_start(leaving), 0);
    assert_int_equal(h_worker_start(staying), 0);
    s_wait_workers(f, 2);
    h_client c;
    h_client_defaults(&c, f->b.frontend, "d");
    c.total = 60, c.inflight = 8;
    /* stop the leaving worker while the client runs: drain, finish, goodbye */
    pthread_t tc;
    assert_int_equal(pthread_create(&tc, NULL, s_client_thread, &c), 0);
    for (int i = 0; i < 300 && atomic_load(&leaving->served) < 5; i++) usleep(2000);
    h_worker_join(leaving);
    pthread_join(tc, NULL);
    assert_int_equal(c.ok, 60);
    assert_int_equal(c.dup, 0);
    assert_true(h_log_contains(&f->b, "is draining"));
    assert_true(h_log_contains(&f->b, "left"));
    s_stats(f);
    assert_int_equal(h_json_num(f->json, "\"name\": \"d\"", "requeues"), 0);
    h_worker_join(staying);
    s_stop(f);
}

static void test_worker_rejoins_restarted_broker(void **state)
{
    fixture *f = s_start(state, false, s_fast);
    h_worker *w = s_worker(f, "r");
    assert_int_equal(h_worker_start(w), 0);
    s_wait_workers(f, 1);
    uint64_t epoch1 = 0;
    s_stats(f);
    char *e = strstr(f->json, "\"epoch\": \"");
    assert_non_null(e);
    epoch1 = strtoull(e + 10, NULL, 16);
    s_stop(f);
    for (int i = 0; i < 100 && atomic_load(&w->disconnects) == 0; i++) usleep(10000);
    assert_true(atomic_load(&w->disconnects) >= 1); /* told "shutting down" */
    assert_int_equal(h_broker_restart(&f->b, s_fast), 0);
    s_wait_workers(f, 1); /* heartbeat -> reannounce -> ready */
    e = strstr(f->json, "\"epoch\": \"");
    assert_non_null(e);
    assert_true(strtoull(e + 10, NULL, 16) != epoch1);
    assert_true(atomic_load(&w->readies) >= 2);
    h_client c;
    h_client_defaults(&c, f->b.frontend, "r");
    c.total = 10;
    h_client_run(&c);
    assert_int_equal(c.ok, 10);
    h_worker_join(w);
    s_stop(f);
}

int main(int argc, char **argv)
{
    if (h_child_main(argc, argv)) return 0;
    signal(SIGPIPE, SIG_IGN);
    if (getenv("DQ_TEST_FILTER")) cmocka_set_test_filter(getenv("DQ_TEST_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_many_requests_exactly_once_and_stats, s_after),
        cmocka_unit_test_teardown(test_capacity_and_fifo, s_after),
        cmocka_unit_test_teardown(test_hung_worker_requeued_late_reply_dropped, s_after),
        cmocka_unit_test_teardown(test_stuck_heartbeating_worker_requeued, s_after),
        cmocka_unit_test_teardown(test_stale_ticket_after_rejoin_dropped, s_after),
        cmocka_unit_test_teardown(test_killed_worker_requeued, s_after),
        cmocka_unit_test_teardown(test_no_worker_timeout_names_service, s_after),
        cmocka_unit_test_teardown(test_max_batch_is_not_identity, s_after),
        cmocka_unit_test_teardown(test_reply_checks, s_after),
        cmocka_unit_test_teardown(test_overloaded, s_after),
        cmocka_unit_test_teardown(test_byte_budget, s_after),
        cmocka_unit_test_teardown(test_malformed_frames_get_error_replies, s_after),
        cmocka_unit_test_teardown(test_duplicate_req_id_answered_once, s_after),
        cmocka_unit_test_teardown(test_two_services_two_clients_ipc, s_after),
        cmocka_unit_test_teardown(test_graceful_drain_loses_nothing, s_after),
        cmocka_unit_test_teardown(test_worker_rejoins_restarted_broker, s_after),
    };
    return cmocka_run_group_tests_name("broker", tests, s_setup, s_teardown);
}
