/* cache.h - the LMDB cache of teacher outputs (issue 5 section 3).
 *
 * The broker stores every ok teacher reply here, one entry per sample and
 * output, and answers a request without a worker when every sample hits;
 * `distillq-train --replay DIR` reads it (read-only) to train with no broker;
 * `distillq-cache stats|verify|export` inspects it.
 *
 * LAYOUT. One LMDB environment directory (data.mdb + lock.mdb), three named
 * databases:
 *   "outputs"  key   = sha256 of the teacher's weights (32 raw bytes)
 *                    | XXH3-128 of the sample (16 bytes, canonical big-endian)
 *                    | output name (1..64 bytes, no NUL)
 *              value = u32 magic "DQC1" | u16 ndim | u16 0 | u64 checksum
 *                    | i64 dims[ndim] | f32 data[prod(dims)]      (LE)
 *              The sample hash is seeded with (model name, dtype, c, h, w),
 *              so the same bytes as u8 or f32 or with another shape never
 *              share a key, nor do two models sharing one weights file.
 *              checksum = XXH3-64(dims|data, seed = XXH3-64(key)): it catches
 *              flipped bytes and a value sitting under the wrong key.
 *   "teachers" key = sha256 (32 bytes); value = u64 entries | service[65]
 *              | model[65] (NUL-padded): what `stats` lists. The count is
 *              updated in the same transaction as the entries it counts.
 *   "meta"     "format" -> u32 DQ_CACHE_FORMAT.
 * Keys sort by teacher, then sample hash, so an export is in hash order.
 *
 * CRASH SAFETY. LMDB is the only writer path (no side files); a batch is one
 * write transaction, so a crash leaves all of it or none. Commits use
 * MDB_NOMETASYNC by default: one fsync per batch, integrity kept even on
 * power loss, where at most the last batch may be lost (it is a cache).
 *
 * FULL POLICY. The map size is the hard limit (max_bytes, default 4 GiB; the
 * data file grows only as needed). Above 80 % of it, whole teachers are
 * evicted, least recently written first, never the one being written, down
 * to 65 % (evict.c). Should a put still hit MDB_MAP_FULL (one teacher
 * alone fills the map) the batch is dropped, the cache logs one line and
 * stops inserting for the rest of the session, and reads keep working: a
 * full cache never fails the broker.
 *
 * CONCURRENCY. Locking stays on, so one writer (the broker) and any number of
 * read-only readers (replay, the tool) in other processes may share a DIR.
 * A dq_cache_t is used by one thread at a time (it may move between threads:
 * MDB_NOTLS). A reader whose map was outgrown by the writer re-maps itself.
 */
#ifndef DQ_CACHE_H
#define DQ_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "proto/msg.h"
#include "base/status.h"

#define DQ_CACHE_FORMAT 1
#define DQ_CACHE_MAX_DIMS (DQ_MSG_MAX_DIMS - 1)     /* per-sample rank (no n) */
#define DQ_CACHE_DEFAULT_MAX_BYTES (4ull << 30)

typedef struct dq_cache dq_cache_t;

/* XXH3-128 of one sample, canonical (big-endian) bytes. */
typedef struct {
    uint8_t b[16];
} dq_cache_hash;

typedef struct {
    bool read_only;       /* MDB_RDONLY: replay and the tool */
    uint64_t max_bytes;   /* map size limit; 0: DQ_CACHE_DEFAULT_MAX_BYTES.
                           * Read-only opens use the file's own size. */
    bool no_sync;         /* MDB_NOSYNC: no fsync at all; a process crash is
                           * still safe, a power loss may corrupt. Benchmarks. */
    FILE *log;            /* the one "cache full" line; NULL: stderr */
} dq_cache_config;

/* One teacher output of a batch, to store: name, the per-sample shape
 * (without n) and n x prod(shape) little-endian f32, possibly unaligned
 * (e.g. straight from a decoded reply). Borrowed for the call. */
typedef struct {
    const char *name;
    int ndim;
    const int64_t *shape;
    const void *data;
} dq_cache_put_output;

/* One teacher output of a batch, to fetch. The caller sets name and may
 * preset data/cap (floats); get grows data with realloc when n x numel does
 * not fit, so a reused array allocates nothing in steady state. The caller
 * owns data (dq_cache_get_output_free). ndim/shape receive the per-sample
 * shape. */
typedef struct {
    const char *name;
    float *data;
    size_t cap;
    int ndim;
    int64_t shape[DQ_CACHE_MAX_DIMS];
} dq_cache_get_output;

typedef struct {
    dq_msg_teacher teacher;   /* service, model, sha256 (of its latest put) */
    int64_t entries;
    uint64_t bytes;           /* keys + values; only after dq_cache_teacher_bytes */
} dq_cache_teacher_info;

typedef struct {
    int64_t entries;          /* (teacher, sample, output) entries */
    uint64_t used_bytes;      /* pages in use x page size */
    uint64_t file_bytes;      /* size of data.mdb on disk */
    uint64_t map_bytes;       /* the limit */
    uint32_t page_size;
    bool full;                /* this handle hit the limit and stopped inserting */
    int n_teachers;
    dq_cache_teacher_info *teachers; /* owned: dq_cache_info_free */
} dq_cache_info;

/* Called by verify with one line per bad entry ("<key>: <reason>"). */
typedef void (*dq_cache_report_fn)(void *ctx, const char *line);

void dq_cache_config_defaults(dq_cache_config *cfg);

/* Opens (read-write: creates DIR and the databases as needed) the cache at
 * dir; cfg NULL means defaults. A read-only open of a directory that holds no
 * cache fails with DQ_ERR_NOT_FOUND. On failure *out is NULL and err names
 * dir and the LMDB error. */
dq_status dq_cache_open(dq_cache_t **out, const char *dir, const dq_cache_config *cfg,
                        dq_err *err);

/* Closes the environment and frees the handle; *p = NULL. NULL-safe. */
void dq_cache_close(dq_cache_t **p);

const char *dq_cache_dir(const dq_cache_t *c);
bool dq_cache_is_full(const dq_cache_t *c);

/* The n sample hashes of a [n, c, h, w] batch of dtype for a teacher model
 * (XXH3-128 seeded with the model name, dtype and shape). About 10 us for
 * 128 Fashion-MNIST images. */
void dq_cache_hash_batch(dq_cache_hash *out, const char *model, dq_msg_dtype dtype,
                         const int64_t shape[4], const void *samples);

/* Parses a 64-char lowercase/uppercase hex sha256 into 32 bytes. */
dq_status dq_cache_parse_sha256(uint8_t out[32], const char *hex, dq_err *err);

/* Stores n = shape[0] samples x n_outputs in ONE write transaction: all or
 * nothing. Entries already present are kept as they are (a teacher is
 * deterministic). *stored (may be NULL) receives the number of new entries.
 * A full map is not an error: DQ_OK with *stored = 0 and the cache stops
 * inserting (see FULL POLICY). DQ_ERR_ARG for a read-only cache or bad
 * arguments, DQ_ERR_IO for LMDB failures (err names dir and the error). */
dq_status dq_cache_put_batch(dq_cache_t *c, const dq_msg_teacher *teacher, dq_msg_dtype dtype,
                             const int64_t shape[4], const void *samples, int n_outputs,
                             const dq_cache_put_output *outs, int64_t *stored, dq_err *err);

/* Looks up n = shape[0] samples x n_outputs for the teacher whose weights
 * have hex sha256 `sha256` and whose model is named `model`, in one read
 * transaction, copying each value into outs[k].data + i * numel. *missing receives the number of samples with at
 * least one output absent; only when it is 0 are the outputs complete.
 * DQ_ERR_FORMAT when a stored value is corrupt or an output's per-sample
 * shape differs between samples; DQ_ERR_NOMEM if a buffer cannot grow. */
dq_status dq_cache_get_batch(dq_cache_t *c, const char *sha256, const char *model,
                             dq_msg_dtype dtype,
                             const int64_t shape[4], const void *samples, int n_outputs,
                             dq_cache_get_output *outs, int64_t *missing, dq_err *err);

/* The broker's probe: dq_cache_get_batch that stops at the first sample
 * with an output absent, so a miss costs one B-tree lookup per sample up to
 * it. *hit is true only when every sample and output hit; then outs hold
 * them all, as dq_cache_get_batch leaves them. Same errors. */
dq_status dq_cache_probe_batch(dq_cache_t *c, const char *sha256, const char *model,
                               dq_msg_dtype dtype, const int64_t shape[4], const void *samples,
                               int n_outputs, dq_cache_get_output *outs, bool *hit, dq_err *err);

/* Frees outs[k].data of a get array and zeroes data/cap. */
void dq_cache_get_output_free(dq_cache_get_output *outs, int n_outputs);

/* Fills *info (free with dq_cache_info_free, also after a failure). */
dq_status dq_cache_stats(dq_cache_t *c, dq_cache_info *info, dq_err *err);
/* Fills info->teachers[i].bytes (keys + values) by scanning the entries. */
dq_status dq_cache_teacher_bytes(dq_cache_t *c, dq_cache_info *info, dq_err *err);
/* Deletes every teacher whose sha256 is not in keep[n_keep] (writable
 * open; safe beside a live broker: LMDB serialises writers). */
dq_status dq_cache_gc(dq_cache_t *c, const char *const *keep, int n_keep, int *teachers,
                      int64_t *entries, dq_err *err);
void dq_cache_info_free(dq_cache_info *info);

/* Walks every entry in one read transaction checking key layout, value
 * header, length and checksum, and that each teacher's recorded count equals
 * its entries. *entries and *bad receive the totals; report (may be NULL)
 * gets a line per problem. DQ_OK whenever the walk completed, even with bad
 * entries; an error only when LMDB itself fails. */
dq_status dq_cache_verify(dq_cache_t *c, int64_t *entries, int64_t *bad,
                          dq_cache_report_fn report, void *ctx, dq_err *err);

/* Writes every entry of (teacher sha256, output) as one float32 .npy array
 * [N, ...] in key order to path (through path.tmp + rename). *rows (may be
 * NULL) receives N. DQ_ERR_NOT_FOUND when there is no such entry,
 * DQ_ERR_FORMAT when entries are corrupt or differ in shape. */
dq_status dq_cache_export(dq_cache_t *c, const char *sha256, const char *output,
                          const char *path, int64_t *rows, dq_err *err);

#endif
