/* msg.c - names, the growable buffer and the encoders of the wire messages.
 *
 * Encoders write with msgpack-c's packer straight into a dq_msg_buf through a
 * write callback, so a caller that reuses its buffer allocates nothing once
 * the buffer has grown to its message size. Every encoder validates what the
 * decoder (msg_decode.c) would reject, so a peer never receives a message we
 * ourselves consider malformed.
 */
#include "proto/msg.h"

#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

static const char *const s_type_names[] = {
    [DQ_MSG_INVALID] = "invalid",
    [DQ_MSG_REQUEST] = "request",
    [DQ_MSG_REPLY] = "reply",
    [DQ_MSG_READY] = "ready",
    [DQ_MSG_HEARTBEAT] = "heartbeat",
    [DQ_MSG_DRAIN] = "drain",
    [DQ_MSG_GOODBYE] = "goodbye",
    [DQ_MSG_REANNOUNCE] = "reannounce",
    [DQ_MSG_DISCONNECT] = "disconnect",
    [DQ_MSG_STATS_REQUEST] = "stats_request",
    [DQ_MSG_STATS_REPLY] = "stats_reply",
};
_Static_assert(sizeof s_type_names / sizeof s_type_names[0] == DQ_MSG_TYPE_COUNT,
               "every dq_msg_type needs a wire name");

static const char *const s_dtype_names[] = {[DQ_DTYPE_U8] = "u8", [DQ_DTYPE_F32] = "f32"};
_Static_assert(sizeof s_dtype_names / sizeof s_dtype_names[0] == DQ_DTYPE_COUNT,
               "every dtype needs a wire name");

static const char *const s_status_names[] = {
    [DQ_REPLY_OK] = "ok",
    [DQ_REPLY_ERROR] = "error",
    [DQ_REPLY_OVERLOADED] = "overloaded",
    [DQ_REPLY_TIMEOUT] = "timeout",
    [DQ_REPLY_BAD_REQUEST] = "bad_request",
    [DQ_REPLY_UNKNOWN_SERVICE] = "unknown_service",
};
_Static_assert(sizeof s_status_names / sizeof s_status_names[0] == DQ_REPLY_STATUS_COUNT,
               "every reply status needs a wire name");

const char *dq_msg_type_name(dq_msg_type t)
{
    return ((int)t >= 0 && t < DQ_MSG_TYPE_COUNT) ? s_type_names[t] : "?";
}

const char *dq_msg_dtype_name(dq_msg_dtype d)
{
    return ((int)d >= 0 && d < DQ_DTYPE_COUNT) ? s_dtype_names[d] : "?";
}

const char *dq_reply_status_name(dq_reply_status s)
{
    return ((int)s >= 0 && s < DQ_REPLY_STATUS_COUNT) ? s_status_names[s] : "?";
}

bool dq_msg_utf8_valid(const void *s, size_t n)
{
    const uint8_t *p = s, *end = p + n;
    while (p < end) {
        uint8_t c = *p;
        if (c < 0x80) {
            p++;
            continue;
        }
        /* lead byte: length and the range of the second byte (RFC 3629) */
        size_t len;
        uint8_t lo = 0x80, hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf) len = 2;
        else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            if (c == 0xe0) lo = 0xa0;      /* overlong */
            if (c == 0xed) hi = 0x9f;      /* surrogates */
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            if (c == 0xf0) lo = 0x90;      /* overlong */
            if (c == 0xf4) hi = 0x8f;      /* above U+10FFFF */
        } else {
            return false;                  /* continuation, overlong C0/C1, F5.. */
        }
        if ((size_t)(end - p) < len || p[1] < lo || p[1] > hi) return false;
        for (size_t k = 2; k < len; k++)
            if (p[k] < 0x80 || p[k] > 0xbf) return false;
        p += len;
    }
    return true;
}

size_t dq_msg_dtype_size(dq_msg_dtype d)
{
    return d == DQ_DTYPE_F32 ? 4 : 1;
}

void dq_msg_f32_copy(float *dst, const void *src, size_t count)
{
    /* Wire floats are little-endian; every target we build for is too. */
    _Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "little-endian host assumed");
    if (count) memcpy(dst, src, count * sizeof(float));
}

const dq_msg_output *dq_msg_reply_output(const dq_msg_reply *r, const char *name)
{
    for (int i = 0; i < r->n_outputs; i++)
        if (strcmp(r->outputs[i].name, name) == 0) return &r->outputs[i];
    return NULL;
}

/* ---- buffer ------------------------------------------------------------- */

void dq_msg_buf_init(dq_msg_buf *b)
{
    memset(b, 0, sizeof *b);
}

void dq_msg_buf_reset(dq_msg_buf *b)
{
    b->len = 0;
}

void dq_msg_buf_free(dq_msg_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

dq_status dq_msg_buf_reserve(dq_msg_buf *b, size_t extra, dq_err *err)
{
    if (extra <= b->cap - b->len) return DQ_OK;
    if (extra > SIZE_MAX / 2 - b->len)
        return dq_fail(err, DQ_ERR_NOMEM, "msg buffer: %zu more bytes is too much", extra);
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < extra) cap *= 2;
    uint8_t *p = realloc(b->data, cap);
    if (!p) return dq_fail(err, DQ_ERR_NOMEM, "msg buffer: cannot grow to %zu bytes", cap);
    b->data = p;
    b->cap = cap;
    return DQ_OK;
}

/* ---- encoding helpers ---------------------------------------------------- */

typedef struct {
    msgpack_packer pk;
    dq_msg_buf *buf;
    bool nomem;
} s_enc;

static int s_write(void *data, const char *src, size_t len)
{
    s_enc *e = data;
    if (len == 0) return 0;
    if (dq_msg_buf_reserve(e->buf, len, NULL) != DQ_OK) {
        e->nomem = true;
        return -1;
    }
    memcpy(e->buf->data + e->buf->len, src, len);
    e->buf->len += len;
    return 0;
}

static void s_enc_init(s_enc *e, dq_msg_buf *buf)
{
    e->buf = buf;
    e->nomem = false;
    msgpack_packer_init(&e->pk, e, s_write);
}

/* Write failures are sticky in e->nomem and reported once at the end. */
static void s_key(s_enc *e, const char *k)
{
    msgpack_pack_str_with_body(&e->pk, k, strlen(k));
}

static void s_kstr(s_enc *e, const char *k, const char *v, size_t len)
{
    s_key(e, k);
    msgpack_pack_str_with_body(&e->pk, v, len);
}

static void s_ku64(s_enc *e, const char *k, uint64_t v)
{
    s_key(e, k);
    msgpack_pack_uint64(&e->pk, v);
}

static void s_kbin(s_enc *e, const char *k, const void *p, size_t len)
{
    s_key(e, k);
    msgpack_pack_bin(&e->pk, len);
    if (len) msgpack_pack_bin_body(&e->pk, p, len);
}

static void s_dims(s_enc *e, const int64_t *d, int n)
{
    msgpack_pack_array(&e->pk, (size_t)n);
    for (int i = 0; i < n; i++) msgpack_pack_uint64(&e->pk, (uint64_t)d[i]);
}

/* Opens the top-level map with n_fields besides "v" and "type". */
static void s_head(s_enc *e, dq_msg_type t, size_t n_fields)
{
    msgpack_pack_map(&e->pk, 2 + n_fields);
    s_ku64(e, "v", DQ_PROTO_VERSION);
    s_kstr(e, "type", s_type_names[t], strlen(s_type_names[t]));
}

static dq_status s_done(s_enc *e, size_t start, dq_err *err)
{
    if (!e->nomem) return DQ_OK;
    e->buf->len = start;
    return dq_fail(err, DQ_ERR_NOMEM, "msg encode: out of memory");
}

static dq_status s_check_name(const char *what, const char *s, dq_err *err)
{
    size_t n = s ? strnlen(s, DQ_MSG_NAME_MAX + 1) : 0;
    if (n == 0 || n > DQ_MSG_NAME_MAX)
        return dq_fail(err, DQ_ERR_ARG, "msg encode: %s must be 1..%d bytes", what,
                       DQ_MSG_NAME_MAX);
    if (!dq_msg_utf8_valid(s, n))
        return dq_fail(err, DQ_ERR_ARG, "msg encode: %s is not UTF-8", what);
    return DQ_OK;
}

static dq_status s_check_teacher(const dq_msg_teacher *t, dq_err *err)
{
    DQ_TRY(s_check_name("teacher service", t->service, err));
    DQ_TRY(s_check_name("teacher model", t->model, err));
    size_t n = strnlen(t->sha256, DQ_MSG_SHA256_HEX + 1);
    bool hex = n == DQ_MSG_SHA256_HEX;
    for (size_t i = 0; hex && i < n; i++)
        hex = (t->sha256[i] >= '0' && t->sha256[i] <= '9') ||
              (t->sha256[i] >= 'a' && t->sha256[i] <= 'f');
    if (!hex)
        return dq_fail(err, DQ_ERR_ARG, "msg encode: teacher sha256 must be %d lowercase hex digits",
                       DQ_MSG_SHA256_HEX);
    return DQ_OK;
}

/* Product of dims times elem, failing past 2^40 bytes (never a real tensor). */
static dq_status s_check_bytes(const char *what, const int64_t *d, int n, size_t elem,
                               size_t have, dq_err *err)
{
    uint64_t bytes = elem;
    for (int i = 0; i < n; i++) {
        if (d[i] < 1 || d[i] > ((int64_t)1 << 31))
            return dq_fail(err, DQ_ERR_ARG, "msg encode: %s dim %d is %lld", what, i,
                           (long long)d[i]);
        bytes *= (uint64_t)d[i];
        if (bytes > ((uint64_t)1 << 40))
            return dq_fail(err, DQ_ERR_ARG, "msg encode: %s is too large", what);
    }
    if (bytes != have)
        return dq_fail(err, DQ_ERR_ARG, "msg encode: %s has %zu data bytes, shape needs %llu",
                       what, have, (unsigned long long)bytes);
    return DQ_OK;
}

static void s_teacher(s_enc *e, const dq_msg_teacher *t)
{
    msgpack_pack_map(&e->pk, 3);
    s_kstr(e, "service", t->service, strlen(t->service));
    s_kstr(e, "model", t->model, strlen(t->model));
    s_kstr(e, "sha256", t->sha256, DQ_MSG_SHA256_HEX);
}

/* ---- encoders ---------------------------------------------------------------- */

dq_status dq_msg_encode_request(dq_msg_buf *buf, const dq_msg_request *r, dq_err *err)
{
    DQ_TRY(s_check_name("request service", r->service, err));
    if ((int)r->dtype < 0 || r->dtype >= DQ_DTYPE_COUNT)
        return dq_fail(err, DQ_ERR_ARG, "msg encode: request dtype %d unknown", (int)r->dtype);
    DQ_TRY(s_check_bytes("request data", r->shape, 4, dq_msg_dtype_size(r->dtype), r->data_len,
                         err));
    if (r->n_outputs < 1 || r->n_outputs > DQ_MSG_MAX_OUTPUTS)
        return dq_fail(err, DQ_ERR_ARG, "msg encode: request wants %d outputs (1..%d)",
                       r->n_outputs, DQ_MSG_MAX_OUTPUTS);
    for (int i = 0; i < r->n_outputs; i++) DQ_TRY(s_check_name("output name", r->outputs[i], err));
    if (r->client[0]) DQ_TRY(s_check_name("request client", r->client, err));
    size_t start = buf->len;
    s_enc e;
    s_enc_init(&e, buf);
    s_head(&e, DQ_MSG_REQUEST, r->client[0] ? 7 : 6);
    s_ku64(&e, "req_id", r->req_id);
    if (r->client[0]) s_kstr(&e, "client", r->client, strlen(r->client));
    s_kstr(&e, "service", r->service, strlen(r->service));
    s_kstr(&e, "dtype", s_dtype_names[r->dtype], strlen(s_dtype_names[r->dtype]));
    s_key(&e, "shape");
    s_dims(&e, r->shape, 4);
    s_key(&e, "outputs");
    msgpack_pack_array(&e.pk, (size_t)r->n_outputs);
    for (int i = 0; i < r->n_outputs; i++)
        msgpack_pack_str_with_body(&e.pk, r->outputs[i], strlen(r->outputs[i]));
    s_kbin(&e, "data", r->data, r->data_len); /* last: the big part */
    return s_done(&e, start, err);
}

dq_status dq_msg_encode_reply(dq_msg_buf *buf, const dq_msg_reply *r, dq_err *err)
{
    if ((int)r->status < 0 || r->status >= DQ_REPLY_STATUS_COUNT)
        return dq_fail(err, DQ_ERR_ARG, "msg encode: reply status %d unknown", (int)r->status);
    bool ok = r->status == DQ_REPLY_OK;
    if (ok) {
        if (r->n_outputs < 1 || r->n_outputs > DQ_MSG_MAX_OUTPUTS)
            return dq_fail(err, DQ_ERR_ARG, "msg encode: ok reply has %d outputs (1..%d)",
                           r->n_outputs, DQ_MSG_MAX_OUTPUTS);
        for (int i = 0; i < r->n_outputs; i++) {
            const dq_msg_output *o = &r->outputs[i];
            DQ_TRY(s_check_name("output name", o->name, err));
            if (o->ndim < 1 || o->ndim > DQ_MSG_MAX_DIMS)
                return dq_fail(err, DQ_ERR_ARG, "msg encode: output '%s' has %d dims", o->name,
                               o->ndim);
            DQ_TRY(s_check_bytes("reply output", o->shape, o->ndim, 4, o->data_len, err));
        }
        if (!r->has_teacher)
            return dq_fail(err, DQ_ERR_ARG, "msg encode: ok reply needs the teacher identity");
        DQ_TRY(s_check_teacher(&r->teacher, err));
    }
    size_t start = buf->len;
    s_enc e;
    s_enc_init(&e, buf);
    bool impl = ok && r->impl[0] != '\0';
    s_head(&e, DQ_MSG_REPLY, ok ? (impl ? 5 : 4) : 3);
    s_ku64(&e, "req_id", r->req_id);
    const char *sn = s_status_names[r->status];
    s_kstr(&e, "status", sn, strlen(sn));
    if (!ok) {
        size_t n = strnlen(r->error, DQ_MSG_ERROR_MAX);
        /* "present, non-empty iff status != ok": name the status if no reason. */
        if (n == 0) s_kstr(&e, "error", sn, strlen(sn));
        else s_kstr(&e, "error", r->error, n);
        return s_done(&e, start, err);
    }
    s_key(&e, "outputs");
    msgpack_pack_array(&e.pk, (size_t)r->n_outputs);
    for (int i = 0; i < r->n_outputs; i++) {
        const dq_msg_output *o = &r->outputs[i];
        msgpack_pack_map(&e.pk, 3);
        s_kstr(&e, "name", o->name, strlen(o->name));
        s_key(&e, "shape");
        s_dims(&e, o->shape, o->ndim);
        s_kbin(&e, "data", o->data, o->data_len);
    }
    s_key(&e, "teacher");
    s_teacher(&e, &r->teacher);
    if (impl) s_kstr(&e, "impl", r->impl, strnlen(r->impl, DQ_MSG_IMPL_MAX));
    return s_done(&e, start, err);
}

dq_status dq_msg_encode_ready(dq_msg_buf *buf, const dq_msg_ready *r, dq_err *err)
{
    DQ_TRY(s_check_teacher(&r->teacher, err));
    for (int i = 0; i < 3; i++)
        if (r->input[i] < 1 || r->input[i] > ((int64_t)1 << 31))
            return dq_fail(err, DQ_ERR_ARG, "msg encode: ready input dim %d is %lld", i,
                           (long long)r->input[i]);
    if (r->dtypes == 0 || r->dtypes >= (1u << DQ_DTYPE_COUNT))
        return dq_fail(err, DQ_ERR_ARG, "msg encode: ready dtypes mask 0x%x invalid", r->dtypes);
    if (r->n_outputs < 1 || r->n_outputs > DQ_MSG_MAX_OUTPUTS)
        return dq_fail(err, DQ_ERR_ARG, "msg encode: ready has %d outputs (1..%d)", r->n_outputs,
                       DQ_MSG_MAX_OUTPUTS);
    for (int i = 0; i < r->n_outputs; i++) {
        DQ_TRY(s_check_name("output name", r->outputs[i].name, err));
        if (r->outputs[i].ndim < 0 || r->outputs[i].ndim > DQ_MSG_MAX_DIMS - 1)
            return dq_fail(err, DQ_ERR_ARG, "msg encode: output '%s' has %d dims per sample",
                           r->outputs[i].name, r->outputs[i].ndim);
        for (int d = 0; d < r->outputs[i].ndim; d++)
            if (r->outputs[i].shape[d] < 1 || r->outputs[i].shape[d] > ((int64_t)1 << 31))
                return dq_fail(err, DQ_ERR_ARG, "msg encode: output '%s' dim %d is %lld",
                               r->outputs[i].name, d, (long long)r->outputs[i].shape[d]);
    }
    if (r->capacity < 1)
        return dq_fail(err, DQ_ERR_ARG, "msg encode: ready capacity must be >= 1");
    if (r->n_norm != 0 && r->n_norm != r->input[0])
        return dq_fail(err, DQ_ERR_ARG, "msg encode: ready normalisation has %d channels, the "
                       "input %lld", r->n_norm, (long long)r->input[0]);
    if (r->n_norm < 0 || r->n_norm > DQ_MSG_MAX_CHANNELS)
        return dq_fail(err, DQ_ERR_ARG, "msg encode: ready normalisation has %d channels (max %d)",
                       r->n_norm, DQ_MSG_MAX_CHANNELS);
    for (int c = 0; c < r->n_norm; c++)
        if (!(r->std[c] != 0.0f && r->std[c] == r->std[c] && r->mean[c] == r->mean[c]))
            return dq_fail(err, DQ_ERR_ARG, "msg encode: ready normalisation of channel %d is "
                           "not finite / std 0", c);
    size_t start = buf->len;
    s_enc e;
    s_enc_init(&e, buf);
    s_head(&e, DQ_MSG_READY, r->n_norm > 0 ? 10 : 8);
    s_kstr(&e, "service", r->teacher.service, strlen(r->teacher.service));
    s_kstr(&e, "model", r->teacher.model, strlen(r->teacher.model));
    s_kstr(&e, "sha256", r->teacher.sha256, DQ_MSG_SHA256_HEX);
    s_key(&e, "input");
    s_dims(&e, r->input, 3);
    s_key(&e, "dtypes");
    msgpack_pack_array(&e.pk, (size_t)__builtin_popcount(r->dtypes));
    for (int d = 0; d < DQ_DTYPE_COUNT; d++)
        if (r->dtypes & (1u << d))
            msgpack_pack_str_with_body(&e.pk, s_dtype_names[d], strlen(s_dtype_names[d]));
    s_key(&e, "outputs");
    msgpack_pack_array(&e.pk, (size_t)r->n_outputs);
    for (int i = 0; i < r->n_outputs; i++) {
        msgpack_pack_map(&e.pk, 2);
        s_kstr(&e, "name", r->outputs[i].name, strlen(r->outputs[i].name));
        s_key(&e, "shape");
        s_dims(&e, r->outputs[i].shape, r->outputs[i].ndim);
    }
    s_ku64(&e, "capacity", r->capacity);
    s_ku64(&e, "max_batch", r->max_batch);
    if (r->n_norm > 0) {
        s_key(&e, "mean");
        msgpack_pack_array(&e.pk, (size_t)r->n_norm);
        for (int c = 0; c < r->n_norm; c++) msgpack_pack_float(&e.pk, r->mean[c]);
        s_key(&e, "std");
        msgpack_pack_array(&e.pk, (size_t)r->n_norm);
        for (int c = 0; c < r->n_norm; c++) msgpack_pack_float(&e.pk, r->std[c]);
    }
    return s_done(&e, start, err);
}

dq_status dq_msg_encode_heartbeat(dq_msg_buf *buf, uint64_t epoch, dq_err *err)
{
    size_t start = buf->len;
    s_enc e;
    s_enc_init(&e, buf);
    s_head(&e, DQ_MSG_HEARTBEAT, 1);
    s_ku64(&e, "epoch", epoch);
    return s_done(&e, start, err);
}

dq_status dq_msg_encode_heartbeat_interval(dq_msg_buf *buf, uint64_t epoch,
                                           uint32_t interval_ms, dq_err *err)
{
    if (interval_ms == 0) return dq_msg_encode_heartbeat(buf, epoch, err);
    size_t start = buf->len;
    s_enc e;
    s_enc_init(&e, buf);
    s_head(&e, DQ_MSG_HEARTBEAT, 2);
    s_ku64(&e, "epoch", epoch);
    s_ku64(&e, "interval_ms", interval_ms);
    return s_done(&e, start, err);
}

dq_status dq_msg_encode_simple(dq_msg_buf *buf, dq_msg_type type, dq_err *err)
{
    if (type != DQ_MSG_DRAIN && type != DQ_MSG_GOODBYE && type != DQ_MSG_REANNOUNCE)
        return dq_fail(err, DQ_ERR_ARG, "msg encode: '%s' is not a field-less message",
                       dq_msg_type_name(type));
    size_t start = buf->len;
    s_enc e;
    s_enc_init(&e, buf);
    s_head(&e, type, 0);
    return s_done(&e, start, err);
}

dq_status dq_msg_encode_disconnect(dq_msg_buf *buf, const char *reason, bool retry, dq_err *err)
{
    size_t start = buf->len;
    s_enc e;
    s_enc_init(&e, buf);
    s_head(&e, DQ_MSG_DISCONNECT, 2);
    s_kstr(&e, "reason", reason ? reason : "", reason ? strnlen(reason, DQ_MSG_ERROR_MAX) : 0);
    s_key(&e, "retry");
    if (retry) msgpack_pack_true(&e.pk);
    else msgpack_pack_false(&e.pk);
    return s_done(&e, start, err);
}

dq_status dq_msg_encode_stats_request(dq_msg_buf *buf, uint64_t req_id, dq_err *err)
{
    size_t start = buf->len;
    s_enc e;
    s_enc_init(&e, buf);
    s_head(&e, DQ_MSG_STATS_REQUEST, 1);
    s_ku64(&e, "req_id", req_id);
    return s_done(&e, start, err);
}

dq_status dq_msg_encode_stats_reply(dq_msg_buf *buf, uint64_t req_id, const char *json,
                                    size_t json_len, dq_err *err)
{
    size_t start = buf->len;
    s_enc e;
    s_enc_init(&e, buf);
    s_head(&e, DQ_MSG_STATS_REPLY, 2);
    s_ku64(&e, "req_id", req_id);
    s_kstr(&e, "stats", json ? json : "", json ? json_len : 0);
    return s_done(&e, start, err);
}

dq_status dq_msg_encode_error_reply(dq_msg_buf *buf, uint64_t req_id, dq_reply_status status,
                                    const char *reason, dq_err *err)
{
    if (status == DQ_REPLY_OK || (int)status < 0 || status >= DQ_REPLY_STATUS_COUNT)
        return dq_fail(err, DQ_ERR_ARG, "msg encode: error reply needs an error status");
    dq_msg_reply r;
    r.req_id = req_id;
    r.status = status;
    r.n_outputs = 0;
    r.has_teacher = false;
    size_t n = reason ? strnlen(reason, DQ_MSG_ERROR_MAX) : 0;
    if (n) memcpy(r.error, reason, n);
    r.error[n] = '\0';
    return dq_msg_encode_reply(buf, &r, err);
}

dq_status dq_msg_encode(dq_msg_buf *buf, const dq_msg *m, dq_err *err)
{
    switch (m->type) {
    case DQ_MSG_REQUEST: return dq_msg_encode_request(buf, &m->u.request, err);
    case DQ_MSG_REPLY: return dq_msg_encode_reply(buf, &m->u.reply, err);
    case DQ_MSG_READY: return dq_msg_encode_ready(buf, &m->u.ready, err);
    case DQ_MSG_HEARTBEAT:
        return dq_msg_encode_heartbeat_interval(buf, m->u.heartbeat.epoch,
                                                m->u.heartbeat.interval_ms, err);
    case DQ_MSG_DRAIN:
    case DQ_MSG_GOODBYE:
    case DQ_MSG_REANNOUNCE: return dq_msg_encode_simple(buf, m->type, err);
    case DQ_MSG_DISCONNECT:
        return dq_msg_encode_disconnect(buf, m->u.disconnect.reason, m->u.disconnect.retry, err);
    case DQ_MSG_STATS_REQUEST:
        return dq_msg_encode_stats_request(buf, m->u.stats_request.req_id, err);
    case DQ_MSG_STATS_REPLY:
        return dq_msg_encode_stats_reply(buf, m->u.stats_reply.req_id, m->u.stats_reply.json,
                                         m->u.stats_reply.json_len, err);
    default: return dq_fail(err, DQ_ERR_ARG, "msg encode: type %d unknown", (int)m->type);
    }
}
