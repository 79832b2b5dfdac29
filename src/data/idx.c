/* idx.c - MNIST / Fashion-MNIST IDX files, raw or gzip-compressed.
 *
 * An IDX file is a big-endian header (magic, then one u32 per dim) followed
 * by u8 data: images are magic 0x00000803 with dims n, rows, cols; labels
 * are 0x00000801 with dim n. Both are read through zlib's gzread, which
 * passes uncompressed files through unchanged, so "x" and "x.gz" need no
 * separate code. Byte offsets in messages count uncompressed bytes.
 *
 * The label header is read first so a count mismatch is caught before any
 * big allocation, and data buffers grow as bytes actually arrive, so a
 * corrupt header claiming a billion images fails as truncated rather than
 * allocating gigabytes.
 */
#include "data/dataset.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define S_MAGIC_IMAGES 0x00000803u
#define S_MAGIC_LABELS 0x00000801u
#define S_IDX_CLASSES 10
#define S_MAX_SIDE 4096u        /* rows and cols above this are not an image set */
#define S_MAX_COUNT 100000000u  /* 1e8 samples */

typedef struct {
    gzFile gz;
    const char *path;
    uint64_t off; /* uncompressed bytes consumed so far */
} s_reader;

static dq_status s_open(s_reader *r, const char *path, dq_err *err)
{
    r->path = path;
    r->off = 0;
    errno = 0;
    r->gz = gzopen(path, "rb");
    if (!r->gz)
        return dq_fail(err, errno == ENOENT ? DQ_ERR_NOT_FOUND : DQ_ERR_IO,
                       "%s: cannot open: %s", path, errno ? strerror(errno) : "out of memory");
    gzbuffer(r->gz, 1 << 17);
    return DQ_OK;
}

static void s_close(s_reader *r)
{
    if (r->gz) gzclose(r->gz);
    r->gz = NULL;
}

/* Reads up to len bytes; *got says how many arrived before end of file. */
static dq_status s_read_some(s_reader *r, void *buf, size_t len, size_t *got, dq_err *err)
{
    *got = 0;
    while (*got < len) {
        size_t want = len - *got;
        if (want > (1u << 30)) want = 1u << 30; /* gzread counts in unsigned int */
        int n = gzread(r->gz, (unsigned char *)buf + *got, (unsigned)want);
        if (n < 0) {
            int zerr;
            const char *msg = gzerror(r->gz, &zerr);
            return dq_fail(err, zerr == Z_ERRNO ? DQ_ERR_IO : DQ_ERR_FORMAT,
                           "%s: read error at byte %llu: %s", r->path,
                           (unsigned long long)(r->off + *got),
                           zerr == Z_ERRNO ? strerror(errno) : msg);
        }
        if (n == 0) break;
        *got += (size_t)n;
    }
    r->off += *got;
    return DQ_OK;
}

/* Reads exactly len bytes of `what`, failing with the offset where it ran out. */
static dq_status s_read_exact(s_reader *r, void *buf, size_t len, const char *what,
                              dq_err *err)
{
    size_t got;
    uint64_t start = r->off;
    DQ_TRY(s_read_some(r, buf, len, &got, err));
    if (got < len)
        return dq_fail(err, DQ_ERR_FORMAT,
                       "%s: truncated at byte %llu: expected %zu bytes of %s from byte %llu, "
                       "got %zu", r->path, (unsigned long long)r->off, len, what,
                       (unsigned long long)start, got);
    return DQ_OK;
}

/* Reads len bytes into a malloc'd buffer that grows as data arrives. */
static dq_status s_read_alloc(s_reader *r, uint8_t **out, size_t len, const char *what,
                              dq_err *err)
{
    *out = NULL;
    uint64_t start = r->off;
    size_t cap = len < (1u << 24) ? len : (1u << 24), have = 0;
    uint8_t *buf = malloc(cap ? cap : 1);
    if (!buf) return dq_fail(err, DQ_ERR_NOMEM, "%s: cannot allocate %zu bytes", r->path, cap);
    for (;;) {
        size_t got;
        dq_status st = s_read_some(r, buf + have, cap - have, &got, err);
        have += got;
        if (st) {
            free(buf);
            return st;
        }
        if (have == len) break;
        if (have < cap) {
            free(buf);
            return dq_fail(err, DQ_ERR_FORMAT,
                           "%s: truncated at byte %llu: expected %zu bytes of %s from byte "
                           "%llu, got %zu", r->path, (unsigned long long)r->off, len, what,
                           (unsigned long long)start, have);
        }
        size_t ncap = cap > len / 2 ? len : cap * 2;
        uint8_t *nb = realloc(buf, ncap);
        if (!nb) {
            free(buf);
            return dq_fail(err, DQ_ERR_NOMEM, "%s: cannot allocate %zu bytes", r->path, ncap);
        }
        buf = nb;
        cap = ncap;
    }
    *out = buf;
    return DQ_OK;
}

static uint32_t s_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Reads and checks the magic, then ndims u32 dims. */
static dq_status s_header(s_reader *r, uint32_t magic, int ndims, uint32_t *dims,
                          dq_err *err)
{
    uint8_t h[12];
    DQ_TRY(s_read_exact(r, h, 4, "IDX magic", err));
    uint32_t got = s_be32(h);
    if (got != magic)
        return dq_fail(err, DQ_ERR_FORMAT,
                       "%s: wrong magic 0x%08x, expected 0x%08x (IDX %s)", r->path, got, magic,
                       magic == S_MAGIC_IMAGES ? "u8 images, 3 dims" : "u8 labels, 1 dim");
    DQ_TRY(s_read_exact(r, h, 4 * (size_t)ndims, "IDX header dims", err));
    for (int i = 0; i < ndims; i++) dims[i] = s_be32(h + 4 * i);
    return DQ_OK;
}

/* Trailing bytes mean the header's dims do not describe the file. */
static dq_status s_expect_eof(s_reader *r, dq_err *err)
{
    uint8_t b;
    size_t got;
    uint64_t end = r->off;
    DQ_TRY(s_read_some(r, &b, 1, &got, err));
    if (got)
        return dq_fail(err, DQ_ERR_FORMAT,
                       "%s: unexpected data after byte %llu where the header's dims end",
                       r->path, (unsigned long long)end);
    return DQ_OK;
}

dq_status dq_idx_load(dq_dataset *ds, const char *images_path, const char *labels_path,
                      dq_err *err)
{
    memset(ds, 0, sizeof *ds);
    s_reader ri = {0}, rl = {0};
    uint8_t *labels = NULL, *images = NULL;
    uint32_t ldim[1], idim[3];
    dq_status st;
    if ((st = s_open(&rl, labels_path, err))) goto out;
    if ((st = s_header(&rl, S_MAGIC_LABELS, 1, ldim, err))) goto out;
    if ((st = s_open(&ri, images_path, err))) goto out;
    if ((st = s_header(&ri, S_MAGIC_IMAGES, 3, idim, err))) goto out;
    if (idim[0] == 0 || idim[0] > S_MAX_COUNT || idim[1] == 0 || idim[1] > S_MAX_SIDE ||
        idim[2] == 0 || idim[2] > S_MAX_SIDE) {
        st = dq_fail(err, DQ_ERR_FORMAT, "%s: implausible dims %u x %u x %u (n x rows x cols)",
                     images_path, idim[0], idim[1], idim[2]);
        goto out;
    }
    if (ldim[0] != idim[0]) {
        st = dq_fail(err, DQ_ERR_FORMAT, "%s has %u labels but %s has %u images", labels_path,
                     ldim[0], images_path, idim[0]);
        goto out;
    }
    if ((st = s_read_alloc(&rl, &labels, ldim[0], "labels", err))) goto out;
    if ((st = s_expect_eof(&rl, err))) goto out;
    for (uint32_t i = 0; i < ldim[0]; i++)
        if (labels[i] >= S_IDX_CLASSES) {
            st = dq_fail(err, DQ_ERR_FORMAT, "%s: label %u at byte %u is not a class 0..%d",
                         labels_path, labels[i], 8 + i, S_IDX_CLASSES - 1);
            goto out;
        }
    size_t nbytes = (size_t)idim[0] * idim[1] * idim[2];
    if ((st = s_read_alloc(&ri, &images, nbytes, "image data", err))) goto out;
    if ((st = s_expect_eof(&ri, err))) goto out;

    ds->labels = malloc((size_t)ldim[0] * sizeof *ds->labels);
    if (!ds->labels) {
        st = dq_fail(err, DQ_ERR_NOMEM, "%s: cannot allocate labels", labels_path);
        goto out;
    }
    for (uint32_t i = 0; i < ldim[0]; i++) ds->labels[i] = labels[i];
    ds->images = images;
    images = NULL;
    ds->n = idim[0];
    ds->c = 1;
    ds->h = (int)idim[1];
    ds->w = (int)idim[2];
    ds->classes = S_IDX_CLASSES;
out:
    s_close(&rl);
    s_close(&ri);
    free(labels);
    free(images);
    if (st) dq_dataset_free(ds);
    return st;
}
