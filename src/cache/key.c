/* key.c - sample hashing and the key/value byte layouts of the cache.
 *
 * Layouts are described in cache.h. Everything here is pure (no LMDB calls
 * beyond mdb_strerror), so the codecs are shared by put/get (cache.c) and
 * verify/export (scan.c) and cannot drift apart. Fields are read and written
 * with memcpy: LMDB hands out values at any alignment.
 */
#include "cache/cache_int.h"

#include <string.h>
#include <xxhash.h>

static size_t s_dtype_size(dq_msg_dtype d)
{
    return d == DQ_DTYPE_F32 ? 4 : 1;
}

uint64_t dq_cache_hash_seed(const char *model, dq_msg_dtype dtype, const int64_t shape[4],
                            size_t *bytes)
{
    /* The seed binds the teacher's model name, dtype and (c, h, w): XXH3 with
     * another seed is another hash function, so equal bytes of another
     * dtype/shape land elsewhere, and so do two models sharing one weights
     * file (deepnn-cosine and deepnn-regressor both have a "features"). */
    uint8_t hdr[32];
    uint32_t tag = 0x31535144u; /* "DQS1" */
    uint32_t dt = (uint32_t)dtype;
    memcpy(hdr, &tag, 4);
    memcpy(hdr + 4, &dt, 4);
    memcpy(hdr + 8, &shape[1], 24);
    *bytes = (size_t)shape[1] * (size_t)shape[2] * (size_t)shape[3] * s_dtype_size(dtype);
    return XXH3_64bits_withSeed(model, strlen(model), XXH3_64bits(hdr, sizeof hdr));
}

void dq_cache_hash_one(dq_cache_hash *out, uint64_t seed, const void *sample, size_t bytes)
{
    XXH128_canonical_t can;
    XXH128_canonicalFromHash(&can, XXH3_128bits_withSeed(sample, bytes, seed));
    _Static_assert(sizeof can.digest == sizeof out->b, "XXH128 is 16 bytes");
    memcpy(out->b, can.digest, sizeof can.digest);
}

void dq_cache_hash_batch(dq_cache_hash *out, const char *model, dq_msg_dtype dtype,
                         const int64_t shape[4], const void *samples)
{
    size_t bytes;
    uint64_t seed = dq_cache_hash_seed(model, dtype, shape, &bytes);
    const uint8_t *p = samples;
    for (int64_t i = 0; i < shape[0]; i++) dq_cache_hash_one(&out[i], seed, p + (size_t)i * bytes, bytes);
}

static int s_hexval(char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

dq_status dq_cache_parse_sha256(uint8_t out[32], const char *hex, dq_err *err)
{
    if (!hex || strlen(hex) != 2 * DQ_CACHE_SHA_BYTES)
        return dq_fail(err, DQ_ERR_ARG, "teacher sha256 '%s' is not 64 hex digits",
                       hex ? hex : "(null)");
    for (int i = 0; i < DQ_CACHE_SHA_BYTES; i++) {
        int hi = s_hexval(hex[2 * i]), lo = s_hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return dq_fail(err, DQ_ERR_ARG, "teacher sha256 '%s' is not 64 hex digits", hex);
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return DQ_OK;
}

dq_status dq_cache_mdb_fail(const dq_cache_t *c, dq_err *err, dq_status st, int rc,
                            const char *what)
{
    return dq_fail(err, st, "cache %s: %s: %s", c && c->dir ? c->dir : "?", what,
                   mdb_strerror(rc));
}

size_t dq_cache_key(uint8_t key[DQ_CACHE_KEY_MAX], const uint8_t sha[DQ_CACHE_SHA_BYTES],
                    const dq_cache_hash *h, const char *name, size_t name_len)
{
    memcpy(key, sha, DQ_CACHE_SHA_BYTES);
    memcpy(key + DQ_CACHE_SHA_BYTES, h->b, sizeof h->b);
    memcpy(key + DQ_CACHE_KEY_FIXED, name, name_len);
    return DQ_CACHE_KEY_FIXED + name_len;
}

size_t dq_cache_val_size(int ndim, int64_t numel)
{
    return DQ_CACHE_VAL_HEADER + 8 * (size_t)ndim + 4 * (size_t)numel;
}

static uint64_t s_checksum(const MDB_val *key, const uint8_t *val, size_t len)
{
    XXH64_hash_t seed = XXH3_64bits(key->mv_data, key->mv_size);
    return XXH3_64bits_withSeed(val + DQ_CACHE_VAL_HEADER, len - DQ_CACHE_VAL_HEADER, seed);
}

void dq_cache_val_write(uint8_t *dst, const MDB_val *key, int ndim, const int64_t *shape,
                        int64_t numel, const void *data)
{
    uint32_t magic = DQ_CACHE_MAGIC;
    uint16_t nd = (uint16_t)ndim, zero = 0;
    size_t len = dq_cache_val_size(ndim, numel);
    memcpy(dst, &magic, 4);
    memcpy(dst + 4, &nd, 2);
    memcpy(dst + 6, &zero, 2);
    memcpy(dst + DQ_CACHE_VAL_HEADER, shape, 8 * (size_t)ndim);
    memcpy(dst + DQ_CACHE_VAL_HEADER + 8 * (size_t)ndim, data, 4 * (size_t)numel);
    uint64_t sum = s_checksum(key, dst, len);
    memcpy(dst + 8, &sum, 8);
}

const char *dq_cache_val_parse(const MDB_val *key, const MDB_val *val, dq_cache_val *out)
{
    const uint8_t *v = val->mv_data;
    if (val->mv_size < DQ_CACHE_VAL_HEADER) return "value shorter than its header";
    uint32_t magic;
    uint16_t nd, pad;
    uint64_t sum;
    memcpy(&magic, v, 4);
    memcpy(&nd, v + 4, 2);
    memcpy(&pad, v + 6, 2);
    memcpy(&sum, v + 8, 8);
    if (magic != DQ_CACHE_MAGIC || pad != 0) return "bad value magic";
    if (nd > DQ_CACHE_MAX_DIMS) return "value rank out of range";
    if (val->mv_size < DQ_CACHE_VAL_HEADER + 8 * (size_t)nd) return "value shorter than its dims";
    out->ndim = nd;
    out->numel = 1;
    for (int i = 0; i < nd; i++) {
        int64_t d;
        memcpy(&d, v + DQ_CACHE_VAL_HEADER + 8 * (size_t)i, 8);
        if (d < 1 || d > (INT64_C(1) << 40) / out->numel) return "value dims out of range";
        out->shape[i] = d;
        out->numel *= d;
    }
    if (val->mv_size != dq_cache_val_size(nd, out->numel)) return "value length does not match its dims";
    if (s_checksum(key, v, val->mv_size) != sum) return "checksum mismatch";
    out->data = v + DQ_CACHE_VAL_HEADER + 8 * (size_t)nd;
    return NULL;
}

void dq_cache_key_str(const MDB_val *key, char *buf, size_t cap)
{
    static const char hexd[] = "0123456789abcdef";
    const uint8_t *k = key->mv_data;
    if (key->mv_size <= DQ_CACHE_KEY_FIXED || key->mv_size > DQ_CACHE_KEY_MAX) {
        snprintf(buf, cap, "<key of %zu bytes>", key->mv_size);
        return;
    }
    char sha[13], hash[33], name[DQ_MSG_NAME_MAX + 1];
    for (int i = 0; i < 6; i++) {
        sha[2 * i] = hexd[k[i] >> 4];
        sha[2 * i + 1] = hexd[k[i] & 15];
    }
    sha[12] = 0;
    for (int i = 0; i < 16; i++) {
        hash[2 * i] = hexd[k[DQ_CACHE_SHA_BYTES + i] >> 4];
        hash[2 * i + 1] = hexd[k[DQ_CACHE_SHA_BYTES + i] & 15];
    }
    hash[32] = 0;
    size_t nl = key->mv_size - DQ_CACHE_KEY_FIXED;
    for (size_t i = 0; i < nl; i++) {
        char ch = (char)k[DQ_CACHE_KEY_FIXED + i];
        name[i] = ch >= 0x20 && ch < 0x7f ? ch : '?';
    }
    name[nl] = 0;
    snprintf(buf, cap, "%s../%s/%s", sha, hash, name);
}
