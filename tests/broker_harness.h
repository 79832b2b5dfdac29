/* broker_harness.h - what the broker tests (and the broker benchmark) use to
 * drive a real distillq-broker: start/stop the binary on free loopback
 * ports, fake teacher workers speaking protocol v1 (in threads, or in a
 * child process that a test can SIGKILL), and a pipelined test client that
 * checks every reply against the deterministic "teacher" function below.
 *
 * The fake teacher answers "logits" [n,10] with logits[i][k] = S_i + k/4 and
 * "features" [n,4] with features[i][j] = S_i * (j+1), where S_i is the sum
 * of the bytes of sample i, so the client can check each value exactly.
 */
#ifndef DQ_TESTS_BROKER_HARNESS_H
#define DQ_TESTS_BROKER_HARNESS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "proto/msg.h"

#define H_SHA_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define H_SHA_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

/* A running broker process. */
typedef struct {
    pid_t pid;
    char frontend[128], backend[128];
    char log_path[256];
} h_broker;

/* Starts distillq-broker ($top_builddir/distillq-broker) with extra args
 * (NULL-terminated) on 127.0.0.1 ports picked from a pid-based range,
 * retrying other ports if a bind fails, or on ipc:// in dir when use_ipc.
 * Waits until it answers a stats request. Returns 0 on success. */
int h_broker_start(h_broker *b, const char *dir, bool use_ipc, const char *const *extra);
/* Same endpoints again (for a restart); 0 on success. */
int h_broker_restart(h_broker *b, const char *const *extra);
/* SIGTERM, wait up to 3 s (then SIGKILL); returns the exit status or -1. */
int h_broker_stop(h_broker *b);
/* True if the broker's log holds needle. */
bool h_log_contains(const h_broker *b, const char *needle);
/* Counts occurrences of needle in the log. */
int h_log_count(const h_broker *b, const char *needle);

/* Stats JSON of the broker at frontend into buf (NUL-terminated); 0 on success. */
int h_stats(const char *frontend, char *buf, size_t cap);
/* Reads the number after "key": in json, starting at the first occurrence of
 * after (or at the beginning if NULL); -1 if not found. */
long long h_json_num(const char *json, const char *after, const char *key);

/* ---- fake workers -------------------------------------------------------------- */
typedef struct {
    char endpoint[128];
    char service[DQ_MSG_NAME_MAX + 1];
    const char *sha;          /* H_SHA_A by default */
    int c, h, w;              /* input the worker announces (1x8x8 default) */
    int capacity;             /* 2 */
    int delay_ms;             /* time to "compute" each request */
    int heartbeat_ms;         /* 100 */
    int hang_after;           /* go silent after receiving this many requests */
    bool hang_heartbeats;     /* ...but keep heartbeating (stuck, not dead) */
    int late_after_ms;        /* when hung: then send the held replies and stop */
    bool rejoin_late;         /* ...after announcing itself again (stale tickets) */
    bool late_on_release;     /* when hung: send them when release_late is set */
    atomic_int release_late;  /* (late replies carry wrong values on purpose) */
    bool reannounce_ok;       /* answer `reannounce` with `ready` (default true) */
    bool garbage_first;       /* send junk on the backend before ready */
    bool graceful;            /* on stop: drain, finish held, goodbye */
    int max_seconds;          /* safety bound on its life (20) */
    int max_batch;            /* announced (0: H_MAX_N) */
    const char *reply_sha;    /* sha256 its replies name (NULL: sha; else a lying teacher) */
    bool extra_output;        /* ok replies carry an output nobody asked for */
    /* observed, readable from other threads */
    atomic_int stop;
    atomic_int received, served, max_held, readies, disconnects, late_sent;
    pthread_t th;
    bool started;
} h_worker;

void h_worker_defaults(h_worker *w, const char *endpoint, const char *service);
int h_worker_start(h_worker *w);         /* in a thread */
void h_worker_join(h_worker *w);         /* sets stop, joins */
void h_worker_wait(h_worker *w);         /* joins without setting stop */
/* The worker loop itself (thread body / child process body). */
void h_worker_run(h_worker *w);
/* Runs a default worker for service in a child process (exec of argv0 with
 * --fake-worker ...); returns its pid. The test's main must call
 * h_child_main first thing. */
pid_t h_worker_spawn(const char *argv0, const char *endpoint, const char *service, int capacity,
                     int delay_ms);
/* If argv asks for a fake worker, runs it and returns true (main returns 0). */
bool h_child_main(int argc, char **argv);

/* ---- the test client ------------------------------------------------------------- */
typedef struct {
    const char *frontend;
    const char *service;
    int c, h, w, n;           /* request shape (n samples of c x h x w) */
    int total, inflight;
    int timeout_ms;           /* whole run */
    uint64_t first_id;        /* req_ids first_id .. first_id+total-1 */
    const char *name;         /* the requests' "client" name (fair sharing); NULL: none */
    /* results */
    int ok, wrong, dup, unknown, errors, missing;
    int status_count[DQ_REPLY_STATUS_COUNT];
    char last_error[DQ_MSG_ERROR_MAX + 1];
    bool in_order;            /* replies arrived in send order */
    char teacher_service[DQ_MSG_NAME_MAX + 1];
    int after_ms;             /* listen this long after the last reply for extras */
    void (*on_progress)(void *arg, int answered);
    void *arg;
} h_client;

void h_client_defaults(h_client *c, const char *frontend, const char *service);
void h_client_run(h_client *c);

/* Fills n samples of the given size deterministically from req_id. */
void h_fill(uint8_t *px, size_t bytes, uint64_t req_id);

#endif
