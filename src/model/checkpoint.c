/* checkpoint.c - a net's weights and training state as safetensors files.
 *
 * Loading is validate-then-copy: every expected tensor is looked up and its
 * dtype and shape checked, then every tensor in the file is checked to be
 * expected, and only then is anything copied. A file that does not fit the
 * model therefore leaves the net (or training state) untouched, and the
 * error names the tensor and the file so a mixed-up checkpoint is obvious.
 *
 * Training-state scalars are 0-dim tensors (what PyTorch saves for a Python
 * int turned tensor); the rng is U64 [4], the xoshiro state words.
 */
#include "model/checkpoint.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/safetensors.h"

#define S_NAME_MAX 128 /* "m." + parameter name */

static const char *s_dtype_name(dq_st_dtype d)
{
    switch (d) {
    case DQ_ST_F32: return "F32";
    case DQ_ST_I64: return "I64";
    case DQ_ST_U64: return "U64";
    case DQ_ST_F64: return "F64";
    case DQ_ST_DTYPE_COUNT: break;
    }
    return "?";
}

static const char *s_shape_str(int ndim, const int64_t *shape, char *buf, size_t len)
{
    size_t off = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < ndim && off < len; i++)
        off += (size_t)snprintf(buf + off, len - off, "%s%lld", i ? ", " : "",
                                (long long)shape[i]);
    if (off < len) snprintf(buf + off, len - off, "]");
    return buf;
}

/* Describes a tensor to write from a parameter-shaped slice of floats. */
static dq_st_tensor s_f32(const char *name, const dq_tensor *like, const float *data)
{
    dq_st_tensor t;
    memset(&t, 0, sizeof t);
    t.name = name;
    t.dtype = DQ_ST_F32;
    t.ndim = like->ndim;
    for (int i = 0; i < like->ndim; i++) t.shape[i] = like->shape[i];
    t.data = data;
    t.nbytes = (size_t)dq_tensor_numel(like) * sizeof(float);
    return t;
}

static dq_st_tensor s_words(const char *name, dq_st_dtype dtype, int64_t n, const void *data)
{
    dq_st_tensor t;
    memset(&t, 0, sizeof t);
    t.name = name;
    t.dtype = dtype;
    t.ndim = n == 0 ? 0 : 1; /* n == 0: a scalar */
    t.shape[0] = n;
    t.data = data;
    t.nbytes = (size_t)(n == 0 ? 1 : n) * 8;
    return t;
}

/* Finds name in f and checks its dtype and shape against want. */
static dq_status s_expect(const dq_st_tensor **out, const dq_st_file_t *f, const dq_st_tensor *want,
                          const char *model, dq_err *err)
{
    const char *path = dq_st_path(f);
    const dq_st_tensor *t = dq_st_find(f, want->name);
    *out = t;
    if (!t)
        return dq_fail(err, DQ_ERR_NOT_FOUND, "%s: tensor %s is missing (model %s needs it)",
                       path, want->name, model);
    if (t->dtype != want->dtype)
        return dq_fail(err, DQ_ERR_FORMAT, "%s: tensor %s has dtype %s, expected %s", path,
                       want->name, s_dtype_name(t->dtype), s_dtype_name(want->dtype));
    bool same = t->ndim == want->ndim;
    for (int i = 0; same && i < t->ndim; i++) same = t->shape[i] == want->shape[i];
    if (!same || t->nbytes != want->nbytes) {
        char got[128], exp[128];
        return dq_fail(err, DQ_ERR_SHAPE, "%s: tensor %s has shape %s, model %s expects %s", path,
                       want->name, s_shape_str(t->ndim, t->shape, got, sizeof got), model,
                       s_shape_str(want->ndim, want->shape, exp, sizeof exp));
    }
    return DQ_OK;
}

/* Fails on the first tensor of f that is not among want[0..n). */
static dq_status s_no_extra(const dq_st_file_t *f, const dq_st_tensor *want, int n,
                            const char *model, dq_err *err)
{
    for (int i = 0; i < dq_st_count(f); i++) {
        const char *name = dq_st_at(f, i)->name;
        bool known = false;
        for (int j = 0; j < n && !known; j++) known = strcmp(want[j].name, name) == 0;
        if (!known)
            return dq_fail(err, DQ_ERR_FORMAT, "%s: unexpected tensor %s (not part of model %s)",
                           dq_st_path(f), name, model);
    }
    return DQ_OK;
}

/* Checks every expected tensor, then extras, then copies into want[i].data
 * (which for loading points at the destination). */
static dq_status s_load(const char *path, dq_st_tensor *want, int n, const char *model,
                        dq_err *err)
{
    dq_st_file_t *f = NULL;
    DQ_TRY(dq_st_open(&f, path, err));
    const dq_st_tensor **found = calloc((size_t)(n > 0 ? n : 1), sizeof *found);
    dq_status st = found ? DQ_OK : dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", path);
    for (int i = 0; st == DQ_OK && i < n; i++) st = s_expect(&found[i], f, &want[i], model, err);
    if (st == DQ_OK) st = s_no_extra(f, want, n, model, err);
    if (st == DQ_OK)
        for (int i = 0; i < n; i++) memcpy((void *)want[i].data, found[i]->data, want[i].nbytes);
    free(found);
    dq_st_close(&f);
    return st;
}

/* The weights file's tensors: every parameter, then every buffer (batch
 * norm running statistics F32, num_batches_tracked I64 scalars), under
 * their state_dict names. data points at the net's own arrays, so the same
 * list serves writing and loading. *out is freed by the caller. */
static dq_status s_weights_list(dq_net_t *net, dq_st_tensor **out, int *n_out, const char *path,
                                dq_err *err)
{
    int np = dq_net_param_count(net), nb = dq_net_buffer_count(net), n = np + nb;
    dq_st_tensor *t = calloc((size_t)(n > 0 ? n : 1), sizeof *t);
    if (!t) return dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", path);
    for (int i = 0; i < np; i++) {
        const dq_tensor *p = dq_net_param(net, i);
        t[i] = s_f32(dq_net_param_name(net, i), p, p->data);
    }
    for (int k = 0; k < nb; k++) {
        const dq_tensor *b = dq_net_buffer(net, k);
        const char *name = dq_net_buffer_name(net, k);
        t[np + k] = b ? s_f32(name, b, b->data)
                      : s_words(name, DQ_ST_I64, 0, dq_net_buffer_i64(net, k));
    }
    *out = t;
    *n_out = n;
    return DQ_OK;
}

dq_status dq_ckpt_save_weights(dq_net_t *net, const char *path, dq_err *err)
{
    dq_st_tensor *t;
    int n;
    DQ_TRY(s_weights_list(net, &t, &n, path, err));
    const char *meta[] = {"format", "pt", "model", dq_net_name(net)};
    dq_status st = dq_st_write(path, t, n, meta, 2, err);
    free(t);
    return st;
}

dq_status dq_ckpt_load_weights(dq_net_t *net, const char *path, dq_err *err)
{
    dq_st_tensor *want;
    int n;
    DQ_TRY(s_weights_list(net, &want, &n, path, err));
    dq_status st = s_load(path, want, n, dq_net_name(net), err);
    free(want);
    return st;
}

/* The training-state tensor list: m.* and v.* per parameter (slices of
 * m and v at each parameter's offset), then the counters and the rng. The
 * same list serves writing (data = source) and loading (data = target). */
enum { S_STATE_EXTRA = 9 };

static dq_status s_state_list(dq_net_t *net, const dq_train_state *st, dq_st_tensor **out,
                              char **names_out, int *n_out, const char *path, dq_err *err)
{
    int np = dq_net_param_count(net);
    int n = 2 * np + S_STATE_EXTRA;
    dq_st_tensor *t = calloc((size_t)n, sizeof *t);
    char *names = calloc((size_t)(2 * np > 0 ? 2 * np : 1), S_NAME_MAX);
    if (!t || !names) {
        free(t);
        free(names);
        return dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", path);
    }
    const float *base = dq_net_params(net);
    for (int i = 0; i < np; i++) {
        const dq_tensor *p = dq_net_param(net, i);
        ptrdiff_t off = p->data - base;
        char *mn = names + (size_t)(2 * i) * S_NAME_MAX, *vn = mn + S_NAME_MAX;
        snprintf(mn, S_NAME_MAX, "m.%s", dq_net_param_name(net, i));
        snprintf(vn, S_NAME_MAX, "v.%s", dq_net_param_name(net, i));
        t[2 * i] = s_f32(mn, p, st->m + off);
        t[2 * i + 1] = s_f32(vn, p, st->v + off);
    }
    dq_st_tensor *x = t + 2 * np;
    x[0] = s_words("epoch", DQ_ST_I64, 0, &st->epoch);
    x[1] = s_words("step", DQ_ST_I64, 0, &st->step);
    x[2] = s_words("batch_in_epoch", DQ_ST_I64, 0, &st->batch_in_epoch);
    x[3] = s_words("seed", DQ_ST_U64, 0, &st->seed);
    x[4] = s_words("rng", DQ_ST_U64, 4, st->rng.s);
    /* The interrupted epoch's running sums, so its metrics survive a resume. */
    x[5] = s_words("epoch_loss_sum", DQ_ST_F64, 0, &st->loss_sum);
    x[6] = s_words("epoch_correct", DQ_ST_I64, 0, &st->correct);
    x[7] = s_words("epoch_seen", DQ_ST_I64, 0, &st->seen);
    x[8] = s_words("epoch_seconds", DQ_ST_F64, 0, &st->seconds);
    *out = t;
    *names_out = names;
    *n_out = n;
    return DQ_OK;
}

dq_status dq_ckpt_save_state(dq_net_t *net, const dq_train_state *st, const char *path,
                             dq_err *err)
{
    if (!st->m || !st->v)
        return dq_fail(err, DQ_ERR_ARG, "%s: training state has no Adam moments", path);
    dq_st_tensor *t;
    char *names;
    int n;
    DQ_TRY(s_state_list(net, st, &t, &names, &n, path, err));
    const char *meta[] = {"format", "pt", "model", dq_net_name(net), "content", "train_state"};
    dq_status s = dq_st_write(path, t, n, meta, 3, err);
    free(t);
    free(names);
    return s;
}

dq_status dq_ckpt_load_state(dq_net_t *net, dq_train_state *st, const char *path, dq_err *err)
{
    if (!st->m || !st->v)
        return dq_fail(err, DQ_ERR_ARG, "%s: m and v must be allocated before loading", path);
    dq_st_tensor *t;
    char *names;
    int n;
    DQ_TRY(s_state_list(net, st, &t, &names, &n, path, err));
    dq_status s = s_load(path, t, n, dq_net_name(net), err);
    free(t);
    free(names);
    return s;
}
