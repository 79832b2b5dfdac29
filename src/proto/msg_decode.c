/* msg_decode.c - the wire message decoder: arbitrary bytes in, a checked
 * dq_msg or an error with a reason out.
 *
 * Two passes. s_prescan walks the raw msgpack without allocating and rejects
 * truncation, trailing bytes, nesting deeper than S_MAX_DEPTH, more than
 * DQ_MSG_MAX_OBJECTS objects and containers declaring more elements than
 * bytes remain. That matters because msgpack-c allocates a container's
 * element array from the declared count before reading the elements: a
 * 5-byte "array of 4 billion" would otherwise ask for ~100 GB. Only then
 * msgpack_unpack builds the object tree in the decoder's reusable zone
 * (bounded by the prescan, so it never grows past the first chunk: no
 * allocation per message) with bin/str objects pointing into the input.
 * The second pass reads our fields out of the tree, checking each.
 */
#include "proto/msg.h"

#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#define S_MAX_DEPTH 8
/* Worst case zone use: every object a map entry (msgpack_object_kv). */
#define S_ZONE_CHUNK (DQ_MSG_MAX_OBJECTS * sizeof(msgpack_object_kv) + 4096)
#define S_MAX_TENSOR_BYTES ((uint64_t)1 << 40)

struct dq_msg_decoder {
    msgpack_zone zone;
};

dq_status dq_msg_decoder_new(dq_msg_decoder_t **out, dq_err *err)
{
    *out = NULL;
    dq_msg_decoder_t *d = calloc(1, sizeof *d);
    if (!d) return dq_fail(err, DQ_ERR_NOMEM, "msg decoder: out of memory");
    if (!msgpack_zone_init(&d->zone, S_ZONE_CHUNK)) {
        free(d);
        return dq_fail(err, DQ_ERR_NOMEM, "msg decoder: cannot allocate the msgpack zone");
    }
    *out = d;
    return DQ_OK;
}

void dq_msg_decoder_destroy(dq_msg_decoder_t **p)
{
    if (!p || !*p) return;
    msgpack_zone_destroy(&(*p)->zone);
    free(*p);
    *p = NULL;
}

/* ---- pass 1: structural prescan ------------------------------------------ */

static uint64_t s_be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = (v << 8) | p[i];
    return v;
}

static dq_status s_prescan(const uint8_t *b, size_t len, dq_err *err)
{
    uint64_t pending[S_MAX_DEPTH + 1];
    int top = 0;
    pending[0] = 1;
    size_t pos = 0, objects = 0;
    while (top >= 0) {
        if (pending[top] == 0) {
            top--;
            continue;
        }
        pending[top]--;
        if (pos >= len)
            return dq_fail(err, DQ_ERR_FORMAT, "msgpack truncated at byte %zu of %zu", pos, len);
        if (++objects > DQ_MSG_MAX_OBJECTS)
            return dq_fail(err, DQ_ERR_FORMAT, "more than %d msgpack objects",
                           DQ_MSG_MAX_OBJECTS);
        uint8_t c = b[pos];
        size_t hdr = 1;      /* marker + length bytes */
        int lenbytes = 0;    /* width of a big-endian length/count after marker */
        uint64_t payload = 0, children = 0;
        if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3) {
            /* fixint, nil, bool */
        } else if (c >= 0x80 && c <= 0x8f) {
            children = 2u * (c & 0x0f);
        } else if (c >= 0x90 && c <= 0x9f) {
            children = c & 0x0f;
        } else if (c >= 0xa0 && c <= 0xbf) {
            payload = c & 0x1f;
        } else {
            switch (c) {
            case 0xc4: case 0xd9: lenbytes = 1; break;          /* bin8, str8 */
            case 0xc5: case 0xda: lenbytes = 2; break;          /* bin16, str16 */
            case 0xc6: case 0xdb: lenbytes = 4; break;          /* bin32, str32 */
            case 0xc7: lenbytes = 1; payload = 1; break;        /* ext8: +type */
            case 0xc8: lenbytes = 2; payload = 1; break;
            case 0xc9: lenbytes = 4; payload = 1; break;
            case 0xca: payload = 4; break;                      /* float32 */
            case 0xcb: payload = 8; break;
            case 0xcc: case 0xd0: payload = 1; break;           /* (u)int8 */
            case 0xcd: case 0xd1: payload = 2; break;
            case 0xce: case 0xd2: payload = 4; break;
            case 0xcf: case 0xd3: payload = 8; break;
            case 0xd4: payload = 2; break;                      /* fixext1 */
            case 0xd5: payload = 3; break;
            case 0xd6: payload = 5; break;
            case 0xd7: payload = 9; break;
            case 0xd8: payload = 17; break;
            case 0xdc: case 0xde: lenbytes = 2; break;          /* array16, map16 */
            case 0xdd: case 0xdf: lenbytes = 4; break;          /* array32, map32 */
            default:
                return dq_fail(err, DQ_ERR_FORMAT, "invalid msgpack byte 0x%02x at %zu", c, pos);
            }
        }
        if (lenbytes) {
            if (len - pos - 1 < (size_t)lenbytes)
                return dq_fail(err, DQ_ERR_FORMAT, "msgpack truncated at byte %zu of %zu", pos,
                               len);
            uint64_t n = s_be(b + pos + 1, lenbytes);
            hdr += (size_t)lenbytes;
            if (c == 0xdc || c == 0xdd) children = n;
            else if (c == 0xde || c == 0xdf) children = 2 * n;
            else payload += n;
        }
        if (payload > len - pos - hdr)
            return dq_fail(err, DQ_ERR_FORMAT,
                           "msgpack object at byte %zu needs %llu bytes, %zu remain", pos,
                           (unsigned long long)payload, len - pos - hdr);
        pos += hdr + (size_t)payload;
        if (children) {
            /* Each element takes at least one byte. */
            if (children > len - pos)
                return dq_fail(err, DQ_ERR_FORMAT,
                               "msgpack container at byte %zu declares %llu elements, %zu bytes "
                               "remain",
                               pos - hdr, (unsigned long long)children, len - pos);
            if (top == S_MAX_DEPTH)
                return dq_fail(err, DQ_ERR_FORMAT, "msgpack nested deeper than %d", S_MAX_DEPTH);
            pending[++top] = children;
        }
    }
    if (pos != len)
        return dq_fail(err, DQ_ERR_FORMAT, "%zu trailing bytes after the msgpack body",
                       len - pos);
    return DQ_OK;
}

/* ---- pass 2: field readers ---------------------------------------------------- */

static const msgpack_object *s_get(const msgpack_object *map, const char *key)
{
    size_t kl = strlen(key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == kl &&
            memcmp(k->via.str.ptr, key, kl) == 0)
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

static dq_status s_missing(const char *ctx, const char *key, dq_err *err)
{
    return dq_fail(err, DQ_ERR_PROTO, "%s: missing field '%s'", ctx, key);
}

static dq_status s_u64(const msgpack_object *map, const char *ctx, const char *key, bool required,
                       uint64_t *out, dq_err *err)
{
    const msgpack_object *o = s_get(map, key);
    if (!o) return required ? s_missing(ctx, key, err) : DQ_OK;
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return dq_fail(err, DQ_ERR_PROTO, "%s: field '%s' must be a non-negative integer", ctx,
                       key);
    *out = o->via.u64;
    return DQ_OK;
}

/* A name: UTF-8 str of 1..DQ_MSG_NAME_MAX bytes without NUL, copied and
 * terminated (names reach the broker's stats JSON: a byte that is not
 * UTF-8 there made every later stats reply invalid JSON). */
static dq_status s_name_obj(const msgpack_object *o, const char *ctx, const char *key, char *dst,
                            dq_err *err)
{
    if (o->type != MSGPACK_OBJECT_STR || o->via.str.size == 0 ||
        o->via.str.size > DQ_MSG_NAME_MAX || memchr(o->via.str.ptr, 0, o->via.str.size))
        return dq_fail(err, DQ_ERR_PROTO, "%s: '%s' must be a string of 1..%d bytes", ctx, key,
                       DQ_MSG_NAME_MAX);
    if (!dq_msg_utf8_valid(o->via.str.ptr, o->via.str.size))
        return dq_fail(err, DQ_ERR_PROTO, "%s: '%s' is not UTF-8", ctx, key);
    memcpy(dst, o->via.str.ptr, o->via.str.size);
    dst[o->via.str.size] = '\0';
    return DQ_OK;
}

static dq_status s_name(const msgpack_object *map, const char *ctx, const char *key, char *dst,
                        dq_err *err)
{
    const msgpack_object *o = s_get(map, key);
    if (!o) return s_missing(ctx, key, err);
    return s_name_obj(o, ctx, key, dst, err);
}

/* Free text (error, reason): any str, truncated to DQ_MSG_ERROR_MAX bytes. */
static dq_status s_text(const msgpack_object *map, const char *ctx, const char *key,
                        bool required, char *dst, dq_err *err)
{
    dst[0] = '\0';
    const msgpack_object *o = s_get(map, key);
    if (!o) return required ? s_missing(ctx, key, err) : DQ_OK;
    if (o->type != MSGPACK_OBJECT_STR)
        return dq_fail(err, DQ_ERR_PROTO, "%s: field '%s' must be a string", ctx, key);
    size_t n = o->via.str.size < DQ_MSG_ERROR_MAX ? o->via.str.size : DQ_MSG_ERROR_MAX;
    if (n) memcpy(dst, o->via.str.ptr, n);
    dst[n] = '\0';
    return DQ_OK;
}

/* Index of the str o in names[count], or -1. */
static int s_enum(const msgpack_object *o, const char *const *names, int count)
{
    if (o->type != MSGPACK_OBJECT_STR) return -1;
    for (int i = 0; i < count; i++) {
        size_t n = strlen(names[i]);
        if (o->via.str.size == n && memcmp(o->via.str.ptr, names[i], n) == 0) return i;
    }
    return -1;
}

/* An array of min..max integers each in 1..2^31, into dims (ndim set). */
static dq_status s_dims(const msgpack_object *o, const char *ctx, const char *key, int min,
                        int max, int64_t *dims, int *ndim, dq_err *err)
{
    if (!o) return s_missing(ctx, key, err);
    if (o->type != MSGPACK_OBJECT_ARRAY || (int64_t)o->via.array.size < min ||
        (int64_t)o->via.array.size > max)
        return dq_fail(err, DQ_ERR_PROTO, "%s: '%s' must be an array of %d..%d dims", ctx, key,
                       min, max);
    for (uint32_t i = 0; i < o->via.array.size; i++) {
        const msgpack_object *d = &o->via.array.ptr[i];
        if (d->type != MSGPACK_OBJECT_POSITIVE_INTEGER || d->via.u64 < 1 ||
            d->via.u64 > ((uint64_t)1 << 31))
            return dq_fail(err, DQ_ERR_PROTO, "%s: '%s' dim %u must be an integer in 1..2^31",
                           ctx, key, i);
        dims[i] = (int64_t)d->via.u64;
    }
    *ndim = (int)o->via.array.size;
    return DQ_OK;
}

/* The bin at key, whose length must be product(dims) * elem. */
static dq_status s_tensor_bin(const msgpack_object *map, const char *ctx, const char *key,
                              const int64_t *dims, int ndim, size_t elem, const void **data,
                              size_t *len, dq_err *err)
{
    const msgpack_object *o = s_get(map, key);
    if (!o) return s_missing(ctx, key, err);
    if (o->type != MSGPACK_OBJECT_BIN)
        return dq_fail(err, DQ_ERR_PROTO, "%s: field '%s' must be bin", ctx, key);
    uint64_t want = elem;
    for (int i = 0; i < ndim; i++) {
        want *= (uint64_t)dims[i]; /* dims <= 2^31: checked before overflow */
        if (want > S_MAX_TENSOR_BYTES)
            return dq_fail(err, DQ_ERR_PROTO, "%s: shape of '%s' is too large", ctx, key);
    }
    if (want != o->via.bin.size)
        return dq_fail(err, DQ_ERR_PROTO, "%s: '%s' has %u bytes, shape needs %llu", ctx, key,
                       o->via.bin.size, (unsigned long long)want);
    *data = o->via.bin.ptr;
    *len = o->via.bin.size;
    return DQ_OK;
}

static bool s_is_hex64(const char *s)
{
    if (strlen(s) != DQ_MSG_SHA256_HEX) return false;
    for (int i = 0; i < DQ_MSG_SHA256_HEX; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
    return true;
}

/* service/model/sha256 keys of map (a reply's teacher map or a ready body). */
static dq_status s_teacher(const msgpack_object *map, const char *ctx, dq_msg_teacher *t,
                           dq_err *err)
{
    DQ_TRY(s_name(map, ctx, "service", t->service, err));
    DQ_TRY(s_name(map, ctx, "model", t->model, err));
    const msgpack_object *o = s_get(map, "sha256");
    if (!o) return s_missing(ctx, "sha256", err);
    if (o->type != MSGPACK_OBJECT_STR || o->via.str.size != DQ_MSG_SHA256_HEX)
        return dq_fail(err, DQ_ERR_PROTO, "%s: 'sha256' must be %d lowercase hex digits", ctx,
                       DQ_MSG_SHA256_HEX);
    memcpy(t->sha256, o->via.str.ptr, DQ_MSG_SHA256_HEX);
    t->sha256[DQ_MSG_SHA256_HEX] = '\0';
    if (!s_is_hex64(t->sha256))
        return dq_fail(err, DQ_ERR_PROTO, "%s: 'sha256' must be %d lowercase hex digits", ctx,
                       DQ_MSG_SHA256_HEX);
    return DQ_OK;
}

static const char *const s_dtypes[] = {"u8", "f32"};
static const char *const s_statuses[] = {"ok", "error", "overloaded", "timeout", "bad_request",
                                         "unknown_service"};
_Static_assert(sizeof s_statuses / sizeof s_statuses[0] == DQ_REPLY_STATUS_COUNT,
               "status table matches dq_reply_status");
_Static_assert(sizeof s_dtypes / sizeof s_dtypes[0] == DQ_DTYPE_COUNT,
               "dtype table matches dq_msg_dtype");

/* ---- per-type decoders -------------------------------------------------------- */

static dq_status s_request(const msgpack_object *m, dq_msg_request *r, dq_err *err)
{
    const char *ctx = "request";
    DQ_TRY(s_u64(m, ctx, "req_id", true, &r->req_id, err));
    DQ_TRY(s_name(m, ctx, "service", r->service, err));
    const msgpack_object *o = s_get(m, "dtype");
    if (!o) return s_missing(ctx, "dtype", err);
    int dt = s_enum(o, s_dtypes, DQ_DTYPE_COUNT);
    if (dt < 0) return dq_fail(err, DQ_ERR_PROTO, "request: 'dtype' must be \"u8\" or \"f32\"");
    r->dtype = (dq_msg_dtype)dt;
    int ndim = 0;
    DQ_TRY(s_dims(s_get(m, "shape"), ctx, "shape", 4, 4, r->shape, &ndim, err));
    DQ_TRY(s_tensor_bin(m, ctx, "data", r->shape, 4, dq_msg_dtype_size(r->dtype), &r->data,
                        &r->data_len, err));
    o = s_get(m, "outputs");
    if (!o) return s_missing(ctx, "outputs", err);
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size < 1 ||
        o->via.array.size > DQ_MSG_MAX_OUTPUTS)
        return dq_fail(err, DQ_ERR_PROTO, "request: 'outputs' must be an array of 1..%d names",
                       DQ_MSG_MAX_OUTPUTS);
    r->n_outputs = (int)o->via.array.size;
    for (int i = 0; i < r->n_outputs; i++)
        DQ_TRY(s_name_obj(&o->via.array.ptr[i], ctx, "outputs[]", r->outputs[i], err));
    r->client[0] = '\0';
    o = s_get(m, "client"); /* optional (fair sharing, docs/protocol.md) */
    if (o) DQ_TRY(s_name_obj(o, ctx, "client", r->client, err));
    return DQ_OK;
}

static dq_status s_reply(const msgpack_object *m, dq_msg_reply *r, dq_err *err)
{
    const char *ctx = "reply";
    DQ_TRY(s_u64(m, ctx, "req_id", true, &r->req_id, err));
    const msgpack_object *o = s_get(m, "status");
    if (!o) return s_missing(ctx, "status", err);
    int st = s_enum(o, s_statuses, DQ_REPLY_STATUS_COUNT);
    if (st < 0) return dq_fail(err, DQ_ERR_PROTO, "reply: unknown 'status'");
    r->status = (dq_reply_status)st;
    r->n_outputs = 0;
    r->has_teacher = false;
    r->impl[0] = '\0';
    if (r->status != DQ_REPLY_OK) return s_text(m, ctx, "error", true, r->error, err);
    r->error[0] = '\0';
    o = s_get(m, "outputs");
    if (!o) return s_missing(ctx, "outputs", err);
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size < 1 ||
        o->via.array.size > DQ_MSG_MAX_OUTPUTS)
        return dq_fail(err, DQ_ERR_PROTO, "reply: 'outputs' must be an array of 1..%d maps",
                       DQ_MSG_MAX_OUTPUTS);
    for (uint32_t i = 0; i < o->via.array.size; i++) {
        const msgpack_object *om = &o->via.array.ptr[i];
        dq_msg_output *out = &r->outputs[i];
        if (om->type != MSGPACK_OBJECT_MAP)
            return dq_fail(err, DQ_ERR_PROTO, "reply: outputs[%u] must be a map", i);
        DQ_TRY(s_name(om, "reply output", "name", out->name, err));
        DQ_TRY(s_dims(s_get(om, "shape"), "reply output", "shape", 1, DQ_MSG_MAX_DIMS,
                      out->shape, &out->ndim, err));
        DQ_TRY(s_tensor_bin(om, "reply output", "data", out->shape, out->ndim, 4, &out->data,
                            &out->data_len, err));
        r->n_outputs = (int)i + 1;
    }
    o = s_get(m, "teacher");
    if (!o) return s_missing(ctx, "teacher", err);
    if (o->type != MSGPACK_OBJECT_MAP)
        return dq_fail(err, DQ_ERR_PROTO, "reply: 'teacher' must be a map");
    DQ_TRY(s_teacher(o, "reply teacher", &r->teacher, err));
    r->has_teacher = true;
    r->impl[0] = '\0';
    o = s_get(m, "impl"); /* optional; a malformed one is ignored, never fatal */
    if (o && o->type == MSGPACK_OBJECT_STR && o->via.str.size <= DQ_MSG_IMPL_MAX &&
        !memchr(o->via.str.ptr, 0, o->via.str.size)) {
        memcpy(r->impl, o->via.str.ptr, o->via.str.size);
        r->impl[o->via.str.size] = '\0';
    }
    return DQ_OK;
}

/* The optional per-channel "mean"/"std" of a ready: both or neither, one
 * finite float per input channel, std non-zero. */
static dq_status s_norm_array(const msgpack_object *o, const char *key, int n, float *dst,
                              dq_err *err)
{
    if (!o || o->type != MSGPACK_OBJECT_ARRAY || (int)o->via.array.size != n)
        return dq_fail(err, DQ_ERR_PROTO, "ready: '%s' must be an array of %d floats (one per "
                       "input channel, with '%s')", key, n, strcmp(key, "mean") ? "mean" : "std");
    for (int c = 0; c < n; c++) {
        const msgpack_object *v = &o->via.array.ptr[c];
        double x;
        if (v->type == MSGPACK_OBJECT_FLOAT32 || v->type == MSGPACK_OBJECT_FLOAT64) x = v->via.f64;
        else if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) x = (double)v->via.u64;
        else if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) x = (double)v->via.i64;
        else return dq_fail(err, DQ_ERR_PROTO, "ready: %s[%d] must be a number", key, c);
        if (!(x == x) || x > 1e30 || x < -1e30)
            return dq_fail(err, DQ_ERR_PROTO, "ready: %s[%d] is not finite", key, c);
        dst[c] = (float)x;
    }
    return DQ_OK;
}

static dq_status s_norm(const msgpack_object *m, dq_msg_ready *r, dq_err *err)
{
    const msgpack_object *mo = s_get(m, "mean"), *so = s_get(m, "std");
    r->n_norm = 0;
    if (!mo && !so) return DQ_OK;
    if (r->input[0] > DQ_MSG_MAX_CHANNELS)
        return dq_fail(err, DQ_ERR_PROTO, "ready: normalisation of %lld channels (max %d)",
                       (long long)r->input[0], DQ_MSG_MAX_CHANNELS);
    int n = (int)r->input[0];
    DQ_TRY(s_norm_array(mo, "mean", n, r->mean, err));
    DQ_TRY(s_norm_array(so, "std", n, r->std, err));
    for (int c = 0; c < n; c++)
        if (r->std[c] == 0.0f) return dq_fail(err, DQ_ERR_PROTO, "ready: std[%d] is 0", c);
    r->n_norm = n;
    return DQ_OK;
}

static dq_status s_ready(const msgpack_object *m, dq_msg_ready *r, dq_err *err)
{
    const char *ctx = "ready";
    DQ_TRY(s_teacher(m, ctx, &r->teacher, err));
    int ndim = 0;
    DQ_TRY(s_dims(s_get(m, "input"), ctx, "input", 3, 3, r->input, &ndim, err));
    const msgpack_object *o = s_get(m, "dtypes");
    if (!o) return s_missing(ctx, "dtypes", err);
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size < 1 ||
        o->via.array.size > DQ_DTYPE_COUNT)
        return dq_fail(err, DQ_ERR_PROTO, "ready: 'dtypes' must be an array of 1..%d dtypes",
                       DQ_DTYPE_COUNT);
    r->dtypes = 0;
    for (uint32_t i = 0; i < o->via.array.size; i++) {
        int dt = s_enum(&o->via.array.ptr[i], s_dtypes, DQ_DTYPE_COUNT);
        if (dt < 0) return dq_fail(err, DQ_ERR_PROTO, "ready: dtypes[%u] is not u8 or f32", i);
        r->dtypes |= 1u << dt;
    }
    o = s_get(m, "outputs");
    if (!o) return s_missing(ctx, "outputs", err);
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size < 1 ||
        o->via.array.size > DQ_MSG_MAX_OUTPUTS)
        return dq_fail(err, DQ_ERR_PROTO, "ready: 'outputs' must be an array of 1..%d maps",
                       DQ_MSG_MAX_OUTPUTS);
    for (uint32_t i = 0; i < o->via.array.size; i++) {
        const msgpack_object *om = &o->via.array.ptr[i];
        dq_msg_output_spec *s = &r->outputs[i];
        if (om->type != MSGPACK_OBJECT_MAP)
            return dq_fail(err, DQ_ERR_PROTO, "ready: outputs[%u] must be a map", i);
        DQ_TRY(s_name(om, "ready output", "name", s->name, err));
        DQ_TRY(s_dims(s_get(om, "shape"), "ready output", "shape", 0, DQ_MSG_MAX_DIMS - 1,
                      s->shape, &s->ndim, err));
    }
    r->n_outputs = (int)o->via.array.size;
    uint64_t cap = 0, mb = 0;
    DQ_TRY(s_u64(m, ctx, "capacity", true, &cap, err));
    if (cap < 1 || cap > 65535)
        return dq_fail(err, DQ_ERR_PROTO, "ready: 'capacity' must be in 1..65535");
    DQ_TRY(s_u64(m, ctx, "max_batch", false, &mb, err));
    if (mb > UINT32_MAX) return dq_fail(err, DQ_ERR_PROTO, "ready: 'max_batch' too large");
    r->capacity = (uint32_t)cap;
    r->max_batch = (uint32_t)mb;
    return s_norm(m, r, err);
}

static const char *const s_types[] = {"invalid",   "request",    "reply",      "ready",
                                      "heartbeat", "drain",      "goodbye",    "reannounce",
                                      "disconnect", "stats_request", "stats_reply"};
_Static_assert(sizeof s_types / sizeof s_types[0] == DQ_MSG_TYPE_COUNT,
               "type table matches dq_msg_type");

dq_status dq_msg_decode(dq_msg_decoder_t *dec, const void *buf, size_t len, dq_msg *out,
                        dq_err *err)
{
    out->type = DQ_MSG_INVALID;
    out->has_req_id = false;
    out->req_id = 0;
    if (!buf || len == 0) return dq_fail(err, DQ_ERR_FORMAT, "empty message body");
    DQ_TRY(s_prescan(buf, len, err));

    msgpack_zone_clear(&dec->zone);
    msgpack_object root;
    size_t off = 0;
    /* msgpack_unpack is the only C entry point that fills a caller's zone,
     * which is what lets us reuse one zone and allocate nothing. */
    msgpack_unpack_return ur = msgpack_unpack(buf, len, &off, &dec->zone, &root);
    if (ur != MSGPACK_UNPACK_SUCCESS || off != len)
        return dq_fail(err, DQ_ERR_FORMAT, "msgpack body does not parse (code %d)", (int)ur);
    if (root.type != MSGPACK_OBJECT_MAP)
        return dq_fail(err, DQ_ERR_PROTO, "message body must be a msgpack map");

    uint64_t rid = 0;
    const msgpack_object *o = s_get(&root, "req_id");
    if (o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        rid = o->via.u64;
        out->has_req_id = true;
        out->req_id = rid;
    }
    o = s_get(&root, "type");
    if (!o) return s_missing("message", "type", err);
    int t = s_enum(o, s_types, DQ_MSG_TYPE_COUNT);
    if (t <= 0) return dq_fail(err, DQ_ERR_PROTO, "message: unknown 'type'");
    out->type = (dq_msg_type)t;
    uint64_t v = 0;
    DQ_TRY(s_u64(&root, dq_msg_type_name(out->type), "v", true, &v, err));
    if (v != DQ_PROTO_VERSION)
        return dq_fail(err, DQ_ERR_PROTO, "protocol version %llu not supported (this side speaks %d)",
                       (unsigned long long)v, DQ_PROTO_VERSION);

    switch (out->type) {
    case DQ_MSG_REQUEST: return s_request(&root, &out->u.request, err);
    case DQ_MSG_REPLY: return s_reply(&root, &out->u.reply, err);
    case DQ_MSG_READY: return s_ready(&root, &out->u.ready, err);
    case DQ_MSG_HEARTBEAT:
    {
        out->u.heartbeat.epoch = 0;
        out->u.heartbeat.interval_ms = 0;
        uint64_t iv = 0;
        DQ_TRY(s_u64(&root, "heartbeat", "epoch", false, &out->u.heartbeat.epoch, err));
        DQ_TRY(s_u64(&root, "heartbeat", "interval_ms", false, &iv, err));
        if (iv > 3600000)
            return dq_fail(err, DQ_ERR_PROTO, "heartbeat: 'interval_ms' must be at most 3600000");
        out->u.heartbeat.interval_ms = (uint32_t)iv;
        return DQ_OK;
    }
    case DQ_MSG_DRAIN:
    case DQ_MSG_GOODBYE:
    case DQ_MSG_REANNOUNCE: return DQ_OK;
    case DQ_MSG_DISCONNECT: {
        DQ_TRY(s_text(&root, "disconnect", "reason", true, out->u.disconnect.reason, err));
        out->u.disconnect.retry = true;
        o = s_get(&root, "retry");
        if (o) {
            if (o->type != MSGPACK_OBJECT_BOOLEAN)
                return dq_fail(err, DQ_ERR_PROTO, "disconnect: 'retry' must be a boolean");
            out->u.disconnect.retry = o->via.boolean;
        }
        return DQ_OK;
    }
    case DQ_MSG_STATS_REQUEST:
        return s_u64(&root, "stats_request", "req_id", true, &out->u.stats_request.req_id, err);
    case DQ_MSG_STATS_REPLY:
        DQ_TRY(s_u64(&root, "stats_reply", "req_id", true, &out->u.stats_reply.req_id, err));
        o = s_get(&root, "stats");
        if (!o) return s_missing("stats_reply", "stats", err);
        if (o->type != MSGPACK_OBJECT_STR)
            return dq_fail(err, DQ_ERR_PROTO, "stats_reply: 'stats' must be a string");
        out->u.stats_reply.json = o->via.str.ptr;
        out->u.stats_reply.json_len = o->via.str.size;
        return DQ_OK;
    default: return dq_fail(err, DQ_ERR_PROTO, "message: unknown 'type'");
    }
}
