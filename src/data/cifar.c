/* cifar.c - CIFAR-10 binary batches (data_batch_N.bin, test_batch.bin).
 *
 * Each file is a run of 3073-byte records: one label byte (0..9) and 3072
 * pixel bytes stored channel-major (1024 red, 1024 green, 1024 blue, each
 * 32x32 row-major), which is already our [C,H,W] layout, so pixels are
 * copied straight through. Official files hold 10000 records; any whole
 * number is accepted. File sizes are taken up front so the dataset is one
 * allocation and a trailing partial record is reported before reading.
 */
#include "data/dataset.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define S_PIXELS 3072
#define S_RECORD (1 + S_PIXELS)
#define S_CLASSES 10

/* Reads count records of one file into images [count,3,32,32] and labels. */
static dq_status s_read_file(FILE *fp, const char *path, int64_t count, uint8_t *images,
                             int32_t *labels, dq_err *err)
{
    uint8_t rec[S_RECORD];
    for (int64_t i = 0; i < count; i++) {
        long long off = (long long)i * S_RECORD;
        size_t got = fread(rec, 1, S_RECORD, fp);
        if (got != S_RECORD) {
            if (ferror(fp))
                return dq_fail(err, DQ_ERR_IO, "%s: read error at byte %lld: %s", path,
                               off + (long long)got, strerror(errno));
            return dq_fail(err, DQ_ERR_FORMAT, "%s: truncated at byte %lld: record %lld "
                           "needs %d bytes, got %zu", path, off + (long long)got,
                           (long long)i, S_RECORD, got);
        }
        if (rec[0] >= S_CLASSES)
            return dq_fail(err, DQ_ERR_FORMAT, "%s: label %u at byte %lld (record %lld) is "
                           "not a CIFAR-10 class 0..%d", path, rec[0], off, (long long)i,
                           S_CLASSES - 1);
        labels[i] = rec[0];
        memcpy(images + i * S_PIXELS, rec + 1, S_PIXELS);
    }
    return DQ_OK;
}

/* Record count of one file from its size; a partial record is an error. */
static dq_status s_count(const char *path, int64_t *count, dq_err *err)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return dq_fail(err, errno == ENOENT ? DQ_ERR_NOT_FOUND : DQ_ERR_IO,
                       "%s: cannot open: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode)) return dq_fail(err, DQ_ERR_IO, "%s: not a regular file", path);
    int64_t size = sb.st_size;
    if (size % S_RECORD != 0)
        return dq_fail(err, DQ_ERR_FORMAT, "%s: partial record at byte %lld: %lld bytes where "
                       "a record is %d (file is %lld bytes)", path,
                       (long long)(size / S_RECORD * S_RECORD), (long long)(size % S_RECORD),
                       S_RECORD, (long long)size);
    *count = size / S_RECORD;
    return DQ_OK;
}

dq_status dq_cifar_load(dq_dataset *ds, const char *const *paths, int n_paths, dq_err *err)
{
    memset(ds, 0, sizeof *ds);
    if (n_paths <= 0 || !paths)
        return dq_fail(err, DQ_ERR_ARG, "cifar: no batch files given");
    int64_t total = 0;
    for (int i = 0; i < n_paths; i++) {
        int64_t c;
        DQ_TRY(s_count(paths[i], &c, err));
        total += c;
    }
    if (total == 0)
        return dq_fail(err, DQ_ERR_FORMAT, "%s: no records in %d CIFAR-10 file(s)", paths[0],
                       n_paths);
    ds->images = malloc((size_t)total * S_PIXELS);
    ds->labels = malloc((size_t)total * sizeof *ds->labels);
    if (!ds->images || !ds->labels) {
        dq_dataset_free(ds);
        return dq_fail(err, DQ_ERR_NOMEM, "%s: cannot allocate %lld CIFAR-10 images",
                       paths[0], (long long)total);
    }
    dq_status st = DQ_OK;
    int64_t first = 0;
    for (int i = 0; i < n_paths && !st; i++) {
        int64_t c = 0;
        FILE *fp = NULL;
        st = s_count(paths[i], &c, err); /* again: the file may have changed */
        if (!st && first + c > total)
            st = dq_fail(err, DQ_ERR_IO, "%s: file grew while loading", paths[i]);
        if (!st && !(fp = fopen(paths[i], "rb")))
            st = dq_fail(err, DQ_ERR_IO, "%s: cannot open: %s", paths[i], strerror(errno));
        if (!st)
            st = s_read_file(fp, paths[i], c, ds->images + first * S_PIXELS,
                             ds->labels + first, err);
        if (fp) fclose(fp);
        first += c;
    }
    if (!st && first != total)
        st = dq_fail(err, DQ_ERR_IO, "%s: files changed while loading", paths[0]);
    if (st) {
        dq_dataset_free(ds);
        return st;
    }
    ds->n = total;
    ds->c = 3;
    ds->h = 32;
    ds->w = 32;
    ds->classes = S_CLASSES;
    return DQ_OK;
}
