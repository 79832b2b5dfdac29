/* teacher.h - the model side of a teacher worker, free of any socket.
 *
 * A dq_teacher_t owns one network with its weights and answers decoded
 * requests with encoded reply bodies. It is the exact code path of local
 * prediction (dq_net_normalize_u8 or the caller's f32, then dq_net_forward
 * in eval mode on the request's batch), so a reply equals what
 * distillq-predict computes for the same batch bit for bit (on the CPU;
 * on a GPU, dq_teacher_use_device, up to float rounding). The worker
 * (worker.c) adds the zmq state machine around it; tests use it directly.
 *
 * Thread use: dq_teacher_check and the identity/announce accessors read
 * only what dq_teacher_new cached and may run in one thread while
 * dq_teacher_serve runs in another; dq_teacher_serve itself is one thread
 * at a time (it owns the net's activations).
 */
#ifndef DQ_TEACHER_H
#define DQ_TEACHER_H

#include <stdint.h>

#include "proto/msg.h"
#include "tensor/backend_cuda.h"
#include "base/status.h"

typedef struct dq_teacher dq_teacher_t;

/* Largest batch a teacher accepts unless told otherwise: bounds the
 * activation memory a single request can make us allocate. */
#define DQ_TEACHER_DEFAULT_MAX_BATCH 4096

/* Samples per forward unless told otherwise (issue 15): a larger request,
 * or a merge of several, runs as several forwards of at most this many
 * samples, so the activations stay bounded (DeepNN-fmnist ~2 MB a sample:
 * ~0.3 GB at 128) whatever batch a client sends. Replies are unchanged. */
#define DQ_TEACHER_DEFAULT_MAX_FORWARD 128

/* Loads model_path and weights_path, hashes the weights file (the teacher
 * identity) and caches the announce. An ONNX model_path ("*.onnx") carries
 * its weights: weights_path is then NULL and the ONNX file's SHA-256 is the
 * identity. max_batch 0 takes the default. On
 * failure *out is NULL and err names the file at fault. */
dq_status dq_teacher_new(dq_teacher_t **out, const char *service, const char *model_path,
                         const char *weights_path, int64_t max_batch, dq_err *err);
void dq_teacher_destroy(dq_teacher_t **p);

/* An echo teacher (benches and tests only, teacher_echo.h): model_path's
 * shapes, no weights, no forward; identity "echo:<name>" with a sha256 no
 * weights file has. */
dq_status dq_teacher_new_echo(dq_teacher_t **out, const char *service, const char *model_path,
                              int64_t max_batch, dq_err *err);

/* Moves the forward onto a CUDA device (dev from dq_backend_select): the
 * weights go up once and the executor is planned for the teacher's max
 * batch. Replies then equal the CPU's up to float rounding, not bit for bit
 * (docs/cuda.md). A CPU dev leaves the teacher as it is. */
dq_status dq_teacher_use_device(dq_teacher_t *t, dq_device dev, dq_err *err);
/* The same with the GPU eval chunk (dq_net_cuda_new_chunked; 0: the
 * default). Every worker of one service must use the same chunk, or their
 * replies differ in the last bits. */
dq_status dq_teacher_use_device_chunked(dq_teacher_t *t, dq_device dev, int64_t eval_chunk,
                                        dq_err *err);

/* Service, model name and SHA-256 of the weights, as replies carry them. */
const dq_msg_teacher *dq_teacher_identity(const dq_teacher_t *t);

/* DQ_OK while the teacher can compute; DQ_ERR_DEVICE once a forward hit a
 * sticky device error (the GPU is lost to this process: every later forward
 * fails; test hook DQ_TEST_DEVICE_FAULT_AFTER=N) or once max_failures
 * forwards in a row have failed (test hook DQ_TEST_FORWARD_FAIL_AFTER=N):
 * the replies written since are error replies nobody should get. The
 * worker then leaves without answering what it holds, so the broker
 * requeues it to healthy workers, and exits non-zero (3). The hooks are
 * read from the environment at dq_teacher_new. Same thread as the serve
 * calls. */
#define DQ_TEACHER_DEFAULT_MAX_FAILURES 3
dq_status dq_teacher_lost(const dq_teacher_t *t, dq_err *err);
/* Failed forwards in a row before the teacher is lost (0: never). */
void dq_teacher_set_max_failures(dq_teacher_t *t, int64_t n);

/* Fills the READY announce (everything but capacity, which is the worker's). */
void dq_teacher_announce(const dq_teacher_t *t, dq_msg_ready *ready);

/* Sets the most samples one forward runs (>= 1); before the first serve and
 * before dq_teacher_use_device (DQ_ERR_ARG otherwise). */
dq_status dq_teacher_set_max_forward(dq_teacher_t *t, int64_t n, dq_err *err);
/* The samples one forward runs at most: min(max forward, max batch). */
int64_t dq_teacher_max_forward(const dq_teacher_t *t);

/* Input bytes of the largest acceptable request body's data (f32 at
 * max_batch), for ZMQ_MAXMSGSIZE. */
int64_t dq_teacher_max_data_bytes(const dq_teacher_t *t);

/* Checks a decoded request against the model: service name, dtype, input
 * shape, batch size, output names. DQ_ERR_ARG with a reason naming the
 * service and the field otherwise (sent back as a bad_request reply). */
dq_status dq_teacher_check(const dq_teacher_t *t, const dq_msg_request *r, dq_err *err);

/* Serves one request: checks it, grows the plan if n is the largest batch
 * so far, runs the forward and appends the reply body (status ok, the
 * requested outputs in request order, the identity) to buf, which the
 * caller has reset. Whatever fails - a bad request, no memory for the plan -
 * still appends an error reply (bad_request or error) with the reason and
 * returns DQ_OK; only a failure to encode returns an error, and then buf
 * holds nothing to send. */
dq_status dq_teacher_serve(dq_teacher_t *t, const dq_msg_request *r, dq_msg_buf *buf,
                           dq_err *err);

/* Dynamic batching: serves n requests (<= DQ_TEACHER_MAX_MERGE) that were
 * queued together, running those that fit together (valid, same dtype and
 * outputs, at most max_batch samples in all) as ONE forward and splitting
 * the outputs back per request; the rest one by one. bufs[i] (reset by the
 * caller) receives request i's reply, exactly as dq_teacher_serve would
 * write it: the eval forward is batch-invariant, so merging changes no bit.
 * Errors as dq_teacher_serve. */
#define DQ_TEACHER_MAX_MERGE 64
dq_status dq_teacher_serve_many(dq_teacher_t *t, const dq_msg_request *const *rs, int n,
                                dq_msg_buf *bufs, dq_err *err);

/* dq_teacher_serve_many for requests the caller has already passed through
 * dq_teacher_check (the worker checks each one once, on its I/O thread):
 * nothing is checked again. A request that would fail the check is a
 * programmer error here. */
dq_status dq_teacher_serve_checked(dq_teacher_t *t, const dq_msg_request *const *rs, int n,
                                   dq_msg_buf *bufs, dq_err *err);

/* Lowercase hex SHA-256 of a file's bytes (OpenSSL EVP). */
dq_status dq_teacher_sha256_file(const char *path, char hex[DQ_MSG_SHA256_HEX + 1],
                                 dq_err *err);

#endif
