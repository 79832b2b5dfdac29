/* safetensors.h - read and write the safetensors checkpoint format.
 *
 * Layout: 8-byte little-endian header length, a JSON header (parsed and
 * written with jansson) mapping tensor names to {dtype, shape, data_offsets},
 * then the raw little-endian data. We write F32 (weights, optimiser moments)
 * I64/U64 (step counters, rng state) and F64 (running sums); we read those dtypes and reject
 * others with a clear error. Files are written to NAME.tmp, fsynced and
 * renamed, so a crash never leaves a half-written checkpoint.
 */
#ifndef DQ_SAFETENSORS_H
#define DQ_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "base/status.h"

typedef enum { DQ_ST_F32, DQ_ST_I64, DQ_ST_U64, DQ_ST_F64, DQ_ST_DTYPE_COUNT } dq_st_dtype;

#define DQ_ST_MAX_DIMS 8

/* One tensor to write, or one tensor found in a file (data points into the
 * file's buffer then; not owned). */
typedef struct {
    const char *name;
    dq_st_dtype dtype;
    int ndim;
    int64_t shape[DQ_ST_MAX_DIMS];
    const void *data;
    size_t nbytes;
} dq_st_tensor;

typedef struct dq_st_file dq_st_file_t;

/* Writes tensors (in the given order) and optional string metadata pairs
 * (meta_kv[2*i] key, [2*i+1] value; n_meta pairs) into path atomically. */
dq_status dq_st_write(const char *path, const dq_st_tensor *tensors, int n,
                      const char *const *meta_kv, int n_meta, dq_err *err);

/* Reads and validates a whole file (header JSON, offsets inside the data,
 * sizes matching dtype x shape). Errors name the file and tensor. */
dq_status dq_st_open(dq_st_file_t **out, const char *path, dq_err *err);
void dq_st_close(dq_st_file_t **f);

int dq_st_count(const dq_st_file_t *f);
const dq_st_tensor *dq_st_at(const dq_st_file_t *f, int i);
/* NULL when absent. */
const dq_st_tensor *dq_st_find(const dq_st_file_t *f, const char *name);
/* Metadata value for key, or NULL. */
const char *dq_st_meta(const dq_st_file_t *f, const char *key);
const char *dq_st_path(const dq_st_file_t *f);

#endif
