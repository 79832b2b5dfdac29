/* msg.h - the distillq wire messages (protocol version 1) and their codec.
 *
 * Every message body on the wire is ONE msgpack map with at least
 *   "v"    : 1 (DQ_PROTO_VERSION)          "type" : "request" | "reply" | ...
 * The frames around the bodies (client/worker/broker) are described in
 * docs/protocol.md; src/proto/wire.h has the zmq helpers that send and
 * receive them.
 *
 * Encoding: dq_msg_encode*() append one body to a caller-owned growable
 * dq_msg_buf (reused across messages, so a steady stream allocates nothing).
 *
 * Decoding: dq_msg_decode() checks every field for presence, type and range,
 * the bin lengths against shape x dtype size, and the nesting/element counts
 * before anything is allocated, so arbitrary bytes yield DQ_ERR_FORMAT or
 * DQ_ERR_PROTO with a reason in err, never a crash or a huge allocation.
 * Unknown keys are ignored (forward compatibility within version 1).
 *
 * OWNERSHIP of decoded messages: short strings (names, sha256, error text)
 * are COPIED into fixed NUL-terminated arrays of the dq_msg struct. The
 * large payloads (request data, reply output data, stats JSON) are NOT
 * copied: their pointers point INTO the buffer given to dq_msg_decode (e.g.
 * the zmq_msg_t data) and stay valid exactly as long as that buffer does.
 * They are not aligned: read f32 data with memcpy (dq_msg_f32_copy). The
 * decoder object itself may be reused (or destroyed) at once after a call.
 */
#ifndef DQ_PROTO_MSG_H
#define DQ_PROTO_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/status.h"

#define DQ_PROTO_VERSION 1

#define DQ_MSG_NAME_MAX 64        /* service, model and output names (bytes) */
#define DQ_MSG_ERROR_MAX 255      /* error / reason text (longer is truncated) */
#define DQ_MSG_MAX_OUTPUTS 16     /* outputs per request, reply or announce */
#define DQ_MSG_MAX_DIMS 8         /* dims of an output shape */
#define DQ_MSG_SHA256_HEX 64      /* lowercase hex digest length */
#define DQ_MSG_MAX_OBJECTS 2048   /* msgpack objects per body (decoder bound) */
#define DQ_MSG_MAX_CHANNELS 4     /* channels of an announced u8 normalisation */
#define DQ_MSG_IMPL_MAX 64        /* reply "impl": implementation and device */

typedef enum {
    DQ_MSG_INVALID = 0,
    DQ_MSG_REQUEST,       /* client -> broker -> worker  */
    DQ_MSG_REPLY,         /* worker -> broker -> client; broker -> client */
    DQ_MSG_READY,         /* worker -> broker: announce / join */
    DQ_MSG_HEARTBEAT,     /* both ways on both sockets */
    DQ_MSG_DRAIN,         /* worker -> broker: no new work; broker -> worker: ack */
    DQ_MSG_GOODBYE,       /* worker -> broker: I am leaving now */
    DQ_MSG_REANNOUNCE,    /* broker -> worker: I do not know you, send ready */
    DQ_MSG_DISCONNECT,    /* broker -> worker: rejected / broker stopping */
    DQ_MSG_STATS_REQUEST, /* client -> broker */
    DQ_MSG_STATS_REPLY,   /* broker -> client */
    DQ_MSG_TYPE_COUNT
} dq_msg_type;

typedef enum { DQ_DTYPE_U8 = 0, DQ_DTYPE_F32 = 1, DQ_DTYPE_COUNT } dq_msg_dtype;

typedef enum {
    DQ_REPLY_OK = 0,
    DQ_REPLY_ERROR,           /* the teacher failed (reason in error) */
    DQ_REPLY_OVERLOADED,      /* broker queue full: retry later */
    DQ_REPLY_TIMEOUT,         /* no free worker within the request timeout */
    DQ_REPLY_BAD_REQUEST,     /* malformed, or not servable by this service */
    DQ_REPLY_UNKNOWN_SERVICE, /* no worker ever announced this service */
    DQ_REPLY_STATUS_COUNT
} dq_reply_status;

/* A request: n samples of c x h x w, u8 pixels or normalised f32. */
typedef struct {
    uint64_t req_id;                       /* unique per client connection */
    char service[DQ_MSG_NAME_MAX + 1];
    dq_msg_dtype dtype;
    int64_t shape[4];                      /* n, c, h, w; n >= 1 */
    const void *data;                      /* n*c*h*w*dtype_size bytes, */
    size_t data_len;                       /*  points into the decoded buffer */
    int n_outputs;                         /* >= 1 */
    char outputs[DQ_MSG_MAX_OUTPUTS][DQ_MSG_NAME_MAX + 1];
    char client[DQ_MSG_NAME_MAX + 1];      /* optional name for fair sharing; "" none */
} dq_msg_request;

/* One output tensor of a reply: f32 little-endian, shape [n, ...]. */
typedef struct {
    char name[DQ_MSG_NAME_MAX + 1];
    int ndim;
    int64_t shape[DQ_MSG_MAX_DIMS];
    const void *data;                      /* product(shape)*4 bytes, may be */
    size_t data_len;                       /*  unaligned; into decoded buffer */
} dq_msg_output;

/* Which teacher answered: students detect a teacher change by comparing. */
typedef struct {
    char service[DQ_MSG_NAME_MAX + 1];
    char model[DQ_MSG_NAME_MAX + 1];
    char sha256[DQ_MSG_SHA256_HEX + 1];    /* of the weights file */
} dq_msg_teacher;

typedef struct {
    uint64_t req_id;
    dq_reply_status status;
    char error[DQ_MSG_ERROR_MAX + 1];      /* "" when status is ok */
    int n_outputs;                         /* 0 unless status is ok */
    dq_msg_output outputs[DQ_MSG_MAX_OUTPUTS];
    bool has_teacher;                      /* always true when status is ok */
    dq_msg_teacher teacher;
    /* Optional "impl" (docs/protocol.md 3): which implementation and device
     * answered, e.g. "distillq-c/cpu", "python-torch/cuda:0"; "" if absent. */
    char impl[DQ_MSG_IMPL_MAX + 1];
} dq_msg_reply;

/* What a worker can serve; per-sample output shapes (without n). */
typedef struct {
    char name[DQ_MSG_NAME_MAX + 1];
    int ndim;
    int64_t shape[DQ_MSG_MAX_DIMS];
} dq_msg_output_spec;

typedef struct {
    dq_msg_teacher teacher;                /* service, model, sha256 */
    int64_t input[3];                      /* c, h, w */
    unsigned dtypes;                       /* bit (1u << DQ_DTYPE_x) per dtype */
    int n_outputs;                         /* >= 1 */
    dq_msg_output_spec outputs[DQ_MSG_MAX_OUTPUTS];
    uint32_t capacity;                     /* requests it may hold, >= 1 */
    uint32_t max_batch;                    /* largest n accepted; 0 = any */
    /* Optional "mean"/"std": what a u8 request implies, per channel
     * x = (pixel / 255 - mean[c]) / std[c] in float. n_norm 0: not announced
     * (older workers); else n_norm == input[0]. Part of the identity. */
    int n_norm;
    float mean[DQ_MSG_MAX_CHANNELS];
    float std[DQ_MSG_MAX_CHANNELS];
} dq_msg_ready;

typedef struct {
    uint64_t epoch;   /* sender's instance id (broker: random per start); 0 if none */
    uint32_t interval_ms; /* optional "interval_ms": the broker's --heartbeat-ms; 0 if none */
} dq_msg_heartbeat;

typedef struct {
    char reason[DQ_MSG_ERROR_MAX + 1];
    bool retry;       /* true: reconnect with backoff; false: give up */
} dq_msg_disconnect;

typedef struct {
    uint64_t req_id;
} dq_msg_stats_request;

typedef struct {
    uint64_t req_id;
    const char *json;  /* UTF-8 JSON text, NOT NUL-terminated; into buffer */
    size_t json_len;
} dq_msg_stats_reply;

/* A decoded (or to-be-encoded) message. */
typedef struct {
    dq_msg_type type;
    /* Set by dq_msg_decode whenever a valid "req_id" was read, even when the
     * message as a whole failed to decode (so an error reply can name it). */
    bool has_req_id;
    uint64_t req_id;
    union {
        dq_msg_request request;
        dq_msg_reply reply;
        dq_msg_ready ready;
        dq_msg_heartbeat heartbeat;
        dq_msg_disconnect disconnect;
        dq_msg_stats_request stats_request;
        dq_msg_stats_reply stats_reply;
    } u;               /* DRAIN, GOODBYE, REANNOUNCE carry no fields */
} dq_msg;

/* ---- names -------------------------------------------------------------- */

/* Wire names: "request", "u8", "ok", "bad_request", ...; "?" if out of range. */
const char *dq_msg_type_name(dq_msg_type t);
const char *dq_msg_dtype_name(dq_msg_dtype d);
const char *dq_reply_status_name(dq_reply_status s);
size_t dq_msg_dtype_size(dq_msg_dtype d);   /* 1 or 4 */
/* True when the n bytes at s are well-formed UTF-8 (no overlong forms,
 * surrogates or code points above U+10FFFF), as every name must be: names
 * reach JSON (the broker's stats), logs and the cache's records. */
bool dq_msg_utf8_valid(const void *s, size_t n);

/* ---- encoding ----------------------------------------------------------- */

/* A growable byte buffer owned by the caller. Zero-initialise or call init;
 * encoders APPEND, so reset (len = 0) between messages. */
typedef struct {
    uint8_t *data;
    size_t len;
    size_t cap;
} dq_msg_buf;

void dq_msg_buf_init(dq_msg_buf *b);
void dq_msg_buf_reset(dq_msg_buf *b);       /* len = 0, keeps the memory */
void dq_msg_buf_free(dq_msg_buf *b);        /* frees and zeroes */
/* Ensures room for `extra` more bytes; DQ_ERR_NOMEM on failure. */
dq_status dq_msg_buf_reserve(dq_msg_buf *b, size_t extra, dq_err *err);

/* Appends the body of msg (any type; the union member for msg->type) to buf.
 * Checks what the decoder checks (names fit, data_len matches shape, ...) so
 * that we never send what we would reject: DQ_ERR_ARG with the field named.
 * The req_id of request/reply/stats messages is taken from the union member,
 * not from msg->req_id. */
dq_status dq_msg_encode(dq_msg_buf *buf, const dq_msg *msg, dq_err *err);

/* Typed shorthands for dq_msg_encode. */
dq_status dq_msg_encode_request(dq_msg_buf *buf, const dq_msg_request *r, dq_err *err);
dq_status dq_msg_encode_reply(dq_msg_buf *buf, const dq_msg_reply *r, dq_err *err);
dq_status dq_msg_encode_ready(dq_msg_buf *buf, const dq_msg_ready *r, dq_err *err);
dq_status dq_msg_encode_heartbeat(dq_msg_buf *buf, uint64_t epoch, dq_err *err);
/* A heartbeat that also tells the sender's heartbeat interval (the broker's). */
dq_status dq_msg_encode_heartbeat_interval(dq_msg_buf *buf, uint64_t epoch,
                                           uint32_t interval_ms, dq_err *err);
/* DRAIN, GOODBYE or REANNOUNCE (no fields). */
dq_status dq_msg_encode_simple(dq_msg_buf *buf, dq_msg_type type, dq_err *err);
dq_status dq_msg_encode_disconnect(dq_msg_buf *buf, const char *reason, bool retry,
                                   dq_err *err);
dq_status dq_msg_encode_stats_request(dq_msg_buf *buf, uint64_t req_id, dq_err *err);
dq_status dq_msg_encode_stats_reply(dq_msg_buf *buf, uint64_t req_id, const char *json,
                                    size_t json_len, dq_err *err);
/* An error reply (status != ok) without outputs or teacher; reason may be
 * NULL and is truncated to DQ_MSG_ERROR_MAX bytes. */
dq_status dq_msg_encode_error_reply(dq_msg_buf *buf, uint64_t req_id,
                                    dq_reply_status status, const char *reason,
                                    dq_err *err);

/* ---- decoding ----------------------------------------------------------- */

typedef struct dq_msg_decoder dq_msg_decoder_t;

/* A decoder keeps a preallocated msgpack zone so decoding allocates nothing.
 * Not thread-safe: one per thread. */
dq_status dq_msg_decoder_new(dq_msg_decoder_t **out, dq_err *err);
void dq_msg_decoder_destroy(dq_msg_decoder_t **p);

/* Decodes one body of len bytes into *out (see OWNERSHIP above). Returns
 * DQ_OK, DQ_ERR_FORMAT (not msgpack / trailing bytes / too deep / too many
 * objects) or DQ_ERR_PROTO (wrong version, unknown type, missing or mistyped
 * field, bad size), with the reason in err. On failure out->type holds the
 * type if it was readable (else DQ_MSG_INVALID) and has_req_id/req_id are
 * set if a valid req_id was read. */
dq_status dq_msg_decode(dq_msg_decoder_t *dec, const void *buf, size_t len, dq_msg *out,
                        dq_err *err);

/* Copies count little-endian f32 values from possibly unaligned src. */
void dq_msg_f32_copy(float *dst, const void *src, size_t count);

/* Finds the output called name in a decoded reply, NULL if absent. */
const dq_msg_output *dq_msg_reply_output(const dq_msg_reply *r, const char *name);

#endif
