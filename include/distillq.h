/* distillq.h - libdistillq: the teacher service from any program.
 *
 * Two sides of the distillq teacher service (docs/protocol.md):
 *
 *   CLIENT (a student): open a teacher URL, submit batches (u8 pixels or
 *   normalised f32, NCHW) with up to K in flight, and receive the teacher's
 *   outputs strictly in submission order, each exactly once. Underneath:
 *   resends when the connection is lost or the broker restarts, duplicate
 *   replies dropped, a local timeout so nothing waits forever - the same
 *   code distillq-predict --teacher runs.
 *
 *   WORKER (a teacher): join a broker as a teacher for a service with an
 *   identity, input, outputs, capacity and max batch; requests come in, the
 *   caller's forward callback computes them, replies go out. Heartbeats,
 *   re-joins after broker restarts, drain and leave are the library's (the
 *   same state machine as distillq-teacher); heartbeats continue while the
 *   callback runs, because it runs on the worker's compute thread.
 *
 * Conventions. Every function that can fail returns 0 (DISTILLQ_OK) or a
 * negative DISTILLQ_E* code and, when err is not NULL, fills err with the
 * code and a one-line message naming the service, field or file at fault.
 * Objects are opaque; x_open/x_new return an owned object, x_close/
 * x_destroy(&p) free it and set p to NULL (NULL is fine). Strings passed in
 * are copied unless said otherwise. No global state: objects are
 * independent, and different objects may be used from different threads;
 * each object's thread rule is given with its functions.
 *
 * Link: pkg-config --cflags --libs distillq.
 */
#ifndef DISTILLQ_H
#define DISTILLQ_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DISTILLQ_VERSION "0.1.0"

/* ---- errors --------------------------------------------------------------------- */

enum {
    DISTILLQ_OK = 0,
    DISTILLQ_EARG = -1,          /* bad argument, malformed batch, bad_request reply */
    DISTILLQ_ENOMEM = -2,
    DISTILLQ_ENET = -3,          /* socket failure */
    DISTILLQ_EPROTO = -4,        /* a peer broke the protocol, or refused a worker */
    DISTILLQ_ETIMEOUT = -5,      /* nothing within the timeout (or a timeout reply) */
    DISTILLQ_EAGAIN = -6,        /* K batches already in flight / broker overloaded */
    DISTILLQ_ENOTFOUND = -7,     /* unknown service (no worker of it) */
    DISTILLQ_EINTR = -8,         /* interrupted by a signal */
    DISTILLQ_ETEACHER = -9,      /* the teacher failed (error reply) */
    DISTILLQ_EOTHER = -10,
    DISTILLQ_EAUTH = -11         /* CURVE: key refused, wrong server key, CURVE on one side */
};

typedef struct {
    int code;                    /* a DISTILLQ_E* code, 0 when fine */
    char msg[512];               /* one line, NUL-terminated */
} distillq_error;

/* "DISTILLQ_EARG" etc. for a code; never NULL. Thread-safe. */
const char *distillq_strerror(int code);

#define DISTILLQ_U8 0            /* dtypes: raw pixels, the teacher normalises */
#define DISTILLQ_F32 1           /* normalised float32, little-endian */
#define DISTILLQ_MAX_OUTPUTS 16
#define DISTILLQ_MAX_DIMS 8
#define DISTILLQ_MAX_CHANNELS 4
#define DISTILLQ_NAME_MAX 64

/* What a service serves (its workers' announce). */
typedef struct {
    char service[DISTILLQ_NAME_MAX + 1];
    char model[DISTILLQ_NAME_MAX + 1];
    char sha256[65];             /* lowercase hex of the teacher's weights file */
    int64_t input[3];            /* c, h, w */
    int dtypes;                  /* bit (1 << DISTILLQ_U8) | (1 << DISTILLQ_F32) */
    int n_norm;                  /* channels of mean/std; 0: not announced */
    float mean[DISTILLQ_MAX_CHANNELS];  /* a u8 request means x = (p/255 - mean)/std */
    float std[DISTILLQ_MAX_CHANNELS];
    int n_outputs;
    char output_names[DISTILLQ_MAX_OUTPUTS][DISTILLQ_NAME_MAX + 1];
    int output_ndim[DISTILLQ_MAX_OUTPUTS];           /* per sample, without n */
    int64_t output_shape[DISTILLQ_MAX_OUTPUTS][DISTILLQ_MAX_DIMS];
    int64_t max_batch;           /* largest n accepted (0: any) */
    int n_workers;               /* live now */
    int capacity;                /* their credits together */
} distillq_service_info;

/* ---- client --------------------------------------------------------------------- */

typedef struct distillq_client distillq_client;

typedef struct {
    int inflight;                /* K: batches at the teachers at once (16) */
    int request_timeout_ms;      /* a batch unanswered this long fails with
                                    DISTILLQ_ETIMEOUT (60000; 0: never) */
    int resend_ms;               /* resend a batch unanswered this long (60000; 0: never) */
    int heartbeat_ms;            /* ping a silent broker after this (1000) */
    /* CURVE (docs/operations.md): the broker's public certificate and our
     * NAME_secret certificate (distillq-keygen), both or neither (NULL) */
    const char *curve_server_cert;
    const char *curve_cert;
    const char *name;            /* fair-sharing name without CURVE (NULL: none) */
} distillq_client_opts;

/* Fills the defaults in. */
void distillq_client_opts_default(distillq_client_opts *o);

/* Opens "tcp://HOST:PORT/SERVICE" or "ipc:///PATH/SERVICE" (the service is
 * what follows the last '/'). opts NULL: defaults. Connects in the
 * background: a broker that is down shows as DISTILLQ_ETIMEOUT later. */
int distillq_client_open(distillq_client **out, const char *url, const distillq_client_opts *opts,
                         distillq_error *err);
void distillq_client_close(distillq_client **c);

/* The service's description, asked from the broker (waits up to
 * timeout_ms). Only with no batch in flight. DISTILLQ_ENOTFOUND when no
 * worker of the service is live, DISTILLQ_ETIMEOUT when the broker does not
 * answer. */
int distillq_client_info(distillq_client *c, distillq_service_info *info, int timeout_ms,
                         distillq_error *err);

/* Submits one batch: shape = {n, c, h, w}, data n*c*h*w bytes (u8) or
 * floats (f32), copied before return. outputs: n_outputs names ("logits",
 * hidden outputs), copied. *seq (may be NULL) gets the batch's number: 0, 1,
 * 2... DISTILLQ_EAGAIN when K batches are in flight: take one first. */
int distillq_client_submit(distillq_client *c, int dtype, const int64_t shape[4],
                           const void *data, int n_outputs, const char *const *outputs,
                           uint64_t *seq, distillq_error *err);

/* One output of a result. data is owned by the client: valid until the
 * next distillq_client_next or close. */
typedef struct {
    const char *name;
    int ndim;
    const int64_t *shape;        /* shape[0] = the batch's n */
    const float *data;           /* product(shape) floats, aligned */
} distillq_output;

typedef struct {
    uint64_t seq;                /* submission number */
    int n_outputs;               /* as asked, in that order */
    distillq_output outputs[DISTILLQ_MAX_OUTPUTS];
    const char *model, *sha256;  /* the teacher that answered */
    const char *impl;            /* its implementation/device ("" if not told),
                                    e.g. "distillq-c/cpu", "python-torch/cuda:0" */
    int teacher_changed;         /* differs from the first teacher seen */
    int sends;                   /* 1 + resends */
} distillq_result;

/* The result of the OLDEST batch in flight, waiting up to timeout_ms
 * (< 0: until the request timeout answers it). *out (and everything it
 * points to) is valid until the next call to next or close.
 * DISTILLQ_EAGAIN: not yet (call again); DISTILLQ_EARG: nothing in
 * flight; an error reply from the service (DISTILLQ_ETIMEOUT when the
 * batch was not answered within request_timeout_ms, DISTILLQ_ENOTFOUND for
 * an unknown service, DISTILLQ_EARG for a bad_request...): its code and
 * the reason, returned again by every later call (the order is broken). */
int distillq_client_next(distillq_client *c, distillq_result *out, int timeout_ms,
                         distillq_error *err);

/* Batches submitted and not yet returned by next. */
int distillq_client_pending(const distillq_client *c);

/* Thread rule: a client is used by one thread at a time (any thread). */

/* ---- worker --------------------------------------------------------------------- */

typedef struct distillq_worker distillq_worker;

/* The forward: input is n x c x h x w float32 (u8 requests are normalised
 * with the announced mean/std before the call), for the requested outputs
 * names[0..n_outputs-1]; write each into outputs[i], a library buffer of
 * n x product(output shape) floats. Return 0, or non-zero with a reason in
 * errmsg (errlen bytes): the request is answered with an `error` reply.
 * Called on the worker's compute thread, one call at a time; input and
 * outputs are valid only during the call. */
typedef int (*distillq_forward_fn)(void *user, const float *input, const int64_t shape[4],
                                   int n_outputs, const char *const *names, float *const *outputs,
                                   char *errmsg, size_t errlen);

typedef struct {
    const char *broker;          /* backend endpoint, tcp://HOST:PORT or ipc://PATH */
    const char *service;
    const char *model;           /* model name in the identity */
    const char *sha256;          /* 64 lowercase hex: the weights file's SHA-256
                                    (distillq_sha256_file) */
    int64_t input[3];            /* c, h, w */
    int n_norm;                  /* = c: mean/std per channel for u8 requests;
                                    0: only f32 requests are accepted */
    float mean[DISTILLQ_MAX_CHANNELS];
    float std[DISTILLQ_MAX_CHANNELS];
    int n_outputs;
    const char *output_names[DISTILLQ_MAX_OUTPUTS];
    int output_ndim[DISTILLQ_MAX_OUTPUTS];           /* per sample, without n */
    int64_t output_shape[DISTILLQ_MAX_OUTPUTS][DISTILLQ_MAX_DIMS];
    int capacity;                /* requests held at once (2) */
    int64_t max_batch;           /* largest n accepted (0: 4096) */
    int heartbeat_ms;            /* (1000) */
    const char *impl;            /* reply "impl", e.g. "python-torch/cpu" (NULL: none) */
    int quiet;                   /* non-zero: no log lines on stderr */
    distillq_forward_fn forward;
    void *user;                  /* passed to forward */
    /* CURVE: the broker's public certificate and this worker's NAME_secret
     * (NAME listed in the broker's --allow-workers); both or neither */
    const char *curve_server_cert;
    const char *curve_cert;
} distillq_worker_config;

void distillq_worker_config_default(distillq_worker_config *cfg);

/* Checks cfg and prepares the worker; connects nothing yet. Strings are
 * copied. */
int distillq_worker_new(distillq_worker **out, const distillq_worker_config *cfg,
                        distillq_error *err);

/* Serves until distillq_worker_stop: joins, computes, heartbeats, re-joins
 * after broker restarts. Blocks the calling thread. 0 after a stop;
 * DISTILLQ_EPROTO when the broker refused the worker for good. */
int distillq_worker_run(distillq_worker *w, distillq_error *err);

/* Asks a running worker to stop: level 1 drains (finish what it holds,
 * then leave: nothing is requeued), 2 leaves at once (the broker requeues
 * what it held). Safe from any thread and from a signal handler; seen
 * within one heartbeat. */
void distillq_worker_stop(distillq_worker *w, int level);

/* After run has returned (or without run). */
void distillq_worker_destroy(distillq_worker **w);

/* Thread rule: run on one thread; stop from any; the forward on the
 * worker's own compute thread. */

/* Lowercase hex SHA-256 of a file (hex: 65 bytes), the teacher identity. */
int distillq_sha256_file(const char *path, char *hex, distillq_error *err);

#ifdef __cplusplus
}
#endif
#endif
