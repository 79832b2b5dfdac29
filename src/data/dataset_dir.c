/* dataset_dir.c - find a dataset's files in a directory.
 *
 * Programs take --data DIR and the split; this file decides the format from
 * the file names that are present, in this order:
 *   1. IDX (Fashion-MNIST / MNIST): {train,t10k}-{images-idx3,labels-idx1}-ubyte,
 *      each either raw or with .gz (the raw file wins when both exist);
 *   2. CIFAR-10: data_batch_1..5.bin or test_batch.bin, in DIR or in
 *      DIR/cifar-10-batches-bin (how the official tarball unpacks).
 * Finding half of a layout (images without labels, batch 3 missing) is an
 * error naming the missing file rather than a silent fall-through.
 * It calls the readers (idx.c, cifar.c); they call only dataset.c (the
 * dataset's lifetime), never this file.
 */
#include "data/dataset.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define S_PATH 4096
#define S_CIFAR_TRAIN_BATCHES 5

static int s_is_file(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static dq_status s_join(char *out, const char *dir, const char *name, dq_err *err)
{
    int n = snprintf(out, S_PATH, "%s/%s", dir, name);
    if (n < 0 || n >= S_PATH)
        return dq_fail(err, DQ_ERR_ARG, "%s: path too long", dir);
    return DQ_OK;
}

/* Sets out to dir/base or dir/base.gz, whichever exists; *found says if any. */
static dq_status s_find_idx(char *out, const char *dir, const char *base, int *found,
                            dq_err *err)
{
    char gz[S_PATH];
    int n = snprintf(gz, sizeof gz, "%s.gz", base);
    if (n < 0 || n >= (int)sizeof gz) return dq_fail(err, DQ_ERR_ARG, "%s: name too long", base);
    DQ_TRY(s_join(out, dir, base, err));
    *found = s_is_file(out);
    if (*found) return DQ_OK;
    DQ_TRY(s_join(out, dir, gz, err));
    *found = s_is_file(out);
    return DQ_OK;
}

static dq_status s_load_cifar(dq_dataset *ds, const char *dir, int train, dq_err *err)
{
    char bufs[S_CIFAR_TRAIN_BATCHES][S_PATH];
    const char *paths[S_CIFAR_TRAIN_BATCHES];
    int n = train ? S_CIFAR_TRAIN_BATCHES : 1;
    for (int i = 0; i < n; i++) {
        char name[32];
        if (train)
            snprintf(name, sizeof name, "data_batch_%d.bin", i + 1);
        else
            snprintf(name, sizeof name, "test_batch.bin");
        DQ_TRY(s_join(bufs[i], dir, name, err));
        if (!s_is_file(bufs[i]))
            return dq_fail(err, DQ_ERR_NOT_FOUND, "%s: CIFAR-10 batch file missing", bufs[i]);
        paths[i] = bufs[i];
    }
    return dq_cifar_load(ds, paths, n, err);
}

dq_status dq_dataset_load_dir(dq_dataset *ds, const char *dir, int train, dq_err *err)
{
    memset(ds, 0, sizeof *ds);
    struct stat sb;
    if (stat(dir, &sb) != 0)
        return dq_fail(err, errno == ENOENT ? DQ_ERR_NOT_FOUND : DQ_ERR_IO,
                       "%s: cannot open dataset directory: %s", dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        return dq_fail(err, DQ_ERR_ARG, "%s: dataset path is not a directory", dir);

    const char *pre = train ? "train" : "t10k";
    char ibase[64], lbase[64], ipath[S_PATH], lpath[S_PATH];
    snprintf(ibase, sizeof ibase, "%s-images-idx3-ubyte", pre);
    snprintf(lbase, sizeof lbase, "%s-labels-idx1-ubyte", pre);
    int have_i, have_l;
    DQ_TRY(s_find_idx(ipath, dir, ibase, &have_i, err));
    DQ_TRY(s_find_idx(lpath, dir, lbase, &have_l, err));
    if (have_i && have_l) return dq_idx_load(ds, ipath, lpath, err);
    if (have_i || have_l)
        return dq_fail(err, DQ_ERR_NOT_FOUND, "%s: found %s but not %s[.gz]", dir,
                       have_i ? ibase : lbase, have_i ? lbase : ibase);

    /* CIFAR-10: look for the first batch of the split to pick the folder. */
    const char *probe = train ? "data_batch_1.bin" : "test_batch.bin";
    char sub[S_PATH], p[S_PATH];
    DQ_TRY(s_join(sub, dir, "cifar-10-batches-bin", err));
    const char *where[2] = {dir, sub};
    for (int i = 0; i < 2; i++) {
        DQ_TRY(s_join(p, where[i], probe, err));
        if (s_is_file(p)) return s_load_cifar(ds, where[i], train, err);
    }
    return dq_fail(err, DQ_ERR_NOT_FOUND,
                   "%s: no %s dataset found: looked for %s[.gz] + %s[.gz] (Fashion-MNIST/MNIST "
                   "IDX) and %s (CIFAR-10) in %s and %s/cifar-10-batches-bin", dir,
                   train ? "train" : "test", ibase, lbase,
                   train ? "data_batch_1..5.bin" : "test_batch.bin", dir, dir);
}
