/* npy.c - float32 arrays as NumPy .npy files (format version 1.0).
 *
 * Layout: "\x93NUMPY", version bytes 1 0, a u16 LE header length, then an
 * ASCII Python dict literal such as
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (N, 10), }
 * padded with spaces and ended by '\n' so that magic + length + header is a
 * multiple of 64 bytes (what numpy itself writes, so the data that follows
 * is aligned for memory mapping), then the raw little-endian floats in C
 * order. dq_npy_begin writes only the header so predictions can be streamed
 * row by row; dq_npy_write writes a whole array to PATH.tmp and renames it.
 */
#include "data/npy.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "'<f4' means little-endian floats; this code writes host order");

#define S_NPY_MAX_DIMS 16
#define S_NPY_ALIGN 64

/* Element count, or -1 for a negative dim or overflow. */
static int64_t s_numel(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return -1;
        if (shape[i] > 0 && n > INT64_MAX / 4 / shape[i]) return -1;
        n *= shape[i];
    }
    return n;
}

/* Builds the full preamble (magic .. '\n') into buf; returns its length. */
static size_t s_header(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    char dict[512];
    size_t n = (size_t)snprintf(dict, sizeof dict,
                                "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    for (int i = 0; i < ndim; i++)
        n += (size_t)snprintf(dict + n, sizeof dict - n, "%s%lld", i ? ", " : "",
                              (long long)shape[i]);
    n += (size_t)snprintf(dict + n, sizeof dict - n, "%s), }", ndim == 1 ? "," : "");
    size_t total = (10 + n + 1 + S_NPY_ALIGN - 1) / S_NPY_ALIGN * S_NPY_ALIGN;
    size_t hlen = total - 10; /* dict + spaces + '\n' */
    if (total > cap) return 0;
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (char)(hlen & 0xff);
    buf[9] = (char)(hlen >> 8);
    memcpy(buf + 10, dict, n);
    memset(buf + 10 + n, ' ', hlen - n - 1);
    buf[total - 1] = '\n';
    return total;
}

static dq_status s_check(const char *path, int ndim, const int64_t *shape, int64_t *numel,
                         dq_err *err)
{
    if (ndim < 0 || ndim > S_NPY_MAX_DIMS || (ndim > 0 && !shape))
        return dq_fail(err, DQ_ERR_ARG, "%s: npy rank %d outside 0..%d", path, ndim,
                       S_NPY_MAX_DIMS);
    *numel = s_numel(ndim, shape);
    if (*numel < 0) return dq_fail(err, DQ_ERR_ARG, "%s: npy shape is invalid", path);
    return DQ_OK;
}

dq_status dq_npy_begin(FILE *f, const char *path, int ndim, const int64_t *shape, dq_err *err)
{
    int64_t numel;
    DQ_TRY(s_check(path, ndim, shape, &numel, err));
    char hdr[640];
    size_t len = s_header(hdr, sizeof hdr, ndim, shape);
    if (len == 0) return dq_fail(err, DQ_ERR_ARG, "%s: npy header too long", path);
    if (fwrite(hdr, 1, len, f) != len)
        return dq_fail(err, DQ_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    return DQ_OK;
}

dq_status dq_npy_write(const char *path, const float *data, int ndim, const int64_t *shape,
                       dq_err *err)
{
    int64_t numel;
    DQ_TRY(s_check(path, ndim, shape, &numel, err));
    if (numel > 0 && !data) return dq_fail(err, DQ_ERR_ARG, "%s: no data to write", path);
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 5);
    if (!tmp) return dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", path);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    dq_status st = DQ_OK;
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        st = dq_fail(err, DQ_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        return st;
    }
    st = dq_npy_begin(f, tmp, ndim, shape, err);
    size_t nbytes = (size_t)numel * sizeof(float);
    if (!st && nbytes > 0 && fwrite(data, 1, nbytes, f) != nbytes)
        st = dq_fail(err, DQ_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
    if (!st && (fflush(f) != 0 || fsync(fileno(f)) != 0))
        st = dq_fail(err, DQ_ERR_IO, "%s: flush failed: %s", tmp, strerror(errno));
    if (fclose(f) != 0 && !st)
        st = dq_fail(err, DQ_ERR_IO, "%s: close failed: %s", tmp, strerror(errno));
    if (!st && rename(tmp, path) != 0)
        st = dq_fail(err, DQ_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    if (st) remove(tmp);
    free(tmp);
    return st;
}
