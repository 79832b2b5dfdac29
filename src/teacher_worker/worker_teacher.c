/* worker_teacher.c - a model file as the worker's model: dq_teacher_t (the
 * C forward, teacher.c) behind worker.h's dq_worker_model vtable.
 *
 * Kept apart from worker.c so that the zmq state machine links without the
 * model and tensor libraries (libdistillq's worker side is worker.c with a
 * caller's forward callback as the model).
 */
#include "teacher_worker/worker.h"

#include "teacher_worker/teacher.h"

_Static_assert(DQ_WORKER_MAX_MERGE <= DQ_TEACHER_MAX_MERGE,
               "the worker hands the teacher no more than it merges");

static void s_announce(void *ctx, dq_msg_ready *ready)
{
    dq_teacher_announce(ctx, ready);
}

static const dq_msg_teacher *s_identity(void *ctx)
{
    return dq_teacher_identity(ctx);
}

static int64_t s_max_data_bytes(void *ctx)
{
    return dq_teacher_max_data_bytes(ctx);
}

static dq_status s_check(void *ctx, const dq_msg_request *r, dq_err *err)
{
    return dq_teacher_check(ctx, r, err);
}

static dq_status s_serve(void *ctx, const dq_msg_request *const *rs, int n, dq_msg_buf *bufs,
                         dq_err *err)
{
    return dq_teacher_serve_checked(ctx, rs, n, bufs, err);
}

static dq_status s_lost(void *ctx, dq_err *err)
{
    return dq_teacher_lost(ctx, err);
}

static void s_destroy(void *ctx)
{
    dq_teacher_t *t = ctx;
    dq_teacher_destroy(&t);
}

dq_status dq_worker_new(dq_worker_t **out, const dq_worker_config *cfg, dq_err *err)
{
    *out = NULL;
    /* weights_path may be NULL for an ONNX model (dq_teacher_new checks). */
    if (!cfg->broker || !cfg->service || !cfg->model_path)
        return dq_fail(err, DQ_ERR_ARG, "worker: broker, service and model are required");
    dq_teacher_t *t = NULL;
    if (cfg->echo)
        DQ_TRY(dq_teacher_new_echo(&t, cfg->service, cfg->model_path, cfg->max_batch, err));
    else
        DQ_TRY(dq_teacher_new(&t, cfg->service, cfg->model_path, cfg->weights_path,
                              cfg->max_batch, err));
    dq_status st = DQ_OK;
    if (cfg->max_forward > 0) st = dq_teacher_set_max_forward(t, cfg->max_forward, err);
    if (cfg->max_failures > 0) dq_teacher_set_max_failures(t, cfg->max_failures);
    if (st == DQ_OK) st = dq_teacher_use_device_chunked(t, cfg->device, cfg->eval_chunk, err);
    if (st != DQ_OK) {
        dq_teacher_destroy(&t);
        return st;
    }
    dq_worker_model m = {.ctx = t, .announce = s_announce, .identity = s_identity,
                         .max_data_bytes = s_max_data_bytes, .check = s_check, .serve = s_serve,
                         .destroy = s_destroy, .lost = s_lost};
    return dq_worker_new_model(out, cfg, &m, err);
}
