/* cache_int.h - what the files of src/cache share: the handle, the key and
 * value codecs (key.c) and LMDB error formatting. Not for other modules. */
#ifndef DQ_CACHE_INT_H
#define DQ_CACHE_INT_H

#include <lmdb.h>

#include "cache/cache.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "cache values are little-endian; this code stores host order");

#define DQ_CACHE_SHA_BYTES 32
#define DQ_CACHE_KEY_FIXED (DQ_CACHE_SHA_BYTES + 16)         /* before the name */
#define DQ_CACHE_KEY_MAX (DQ_CACHE_KEY_FIXED + DQ_MSG_NAME_MAX)
#define DQ_CACHE_VAL_HEADER 16                                 /* before the dims */
#define DQ_CACHE_MAGIC 0x31435144u                              /* "DQC1" */
#define DQ_CACHE_TEACHER_VAL (8 + 2 * (DQ_MSG_NAME_MAX + 1))

struct dq_cache {
    MDB_env *env;
    MDB_dbi outputs, teachers, meta;
    bool read_only;
    bool full;              /* hit MDB_MAP_FULL: no more inserts */
    FILE *log;
    char *dir;
};

/* A parsed value: per-sample shape and its (unaligned) f32 data. */
typedef struct {
    int ndim;
    int64_t shape[DQ_CACHE_MAX_DIMS];
    int64_t numel;
    const void *data;
} dq_cache_val;

/* Formats "DIR: what: mdb_strerror(rc)" and returns st. */
dq_status dq_cache_mdb_fail(const dq_cache_t *c, dq_err *err, dq_status st, int rc,
                            const char *what);

/* The per-batch hash seed (from dtype and c, h, w) and the bytes of one
 * sample; then the hash of one sample. dq_cache_hash_batch = both. */
uint64_t dq_cache_hash_seed(const char *model, dq_msg_dtype dtype, const int64_t shape[4],
                            size_t *bytes);
void dq_cache_hash_one(dq_cache_hash *out, uint64_t seed, const void *sample, size_t bytes);

/* Key bytes for (sha, hash, name); returns the key length. The name must be
 * 1..DQ_MSG_NAME_MAX bytes (checked by callers). */
size_t dq_cache_key(uint8_t key[DQ_CACHE_KEY_MAX], const uint8_t sha[DQ_CACHE_SHA_BYTES],
                    const dq_cache_hash *h, const char *name, size_t name_len);

/* Bytes of the value of a per-sample shape (header + dims + data). */
size_t dq_cache_val_size(int ndim, int64_t numel);

/* Writes the value for (key, shape, data) into dst of dq_cache_val_size. */
void dq_cache_val_write(uint8_t *dst, const MDB_val *key, int ndim, const int64_t *shape,
                        int64_t numel, const void *data);

/* Parses and checks a value (magic, rank, dims, length, checksum against
 * key). Returns NULL and fills *out, or a static reason on failure. */
const char *dq_cache_val_parse(const MDB_val *key, const MDB_val *val, dq_cache_val *out);

/* Renders a key for messages: "<sha12>../<hash hex>/<name>". */
void dq_cache_key_str(const MDB_val *key, char *buf, size_t cap);

/* evict.c: records teacher sha's last write (in the put's transaction). */
int dq_cache_touch_teacher(dq_cache_t *c, MDB_txn *txn, const uint8_t *sha);
/* evict.c: above 80 % of the map, evicts whole teachers but keep. */
dq_status dq_cache_make_room(dq_cache_t *c, const uint8_t *keep, dq_err *err);

/* Begins a read transaction (end it with mdb_txn_abort), re-mapping once
 * if a writer in another process grew the map beyond ours. */
dq_status dq_cache_read_begin(dq_cache_t *c, MDB_txn **txn, dq_err *err);

#endif
