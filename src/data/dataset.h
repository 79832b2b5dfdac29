/* dataset.h - image classification datasets held in memory as u8 pixels.
 *
 * Readers for IDX files (MNIST/Fashion-MNIST, raw or .gz via zlib) and the
 * CIFAR-10 binary batches. Pixels stay u8 [N,C,H,W] until a batch is
 * normalised by the model (dq_net_normalize_u8), so requests to teachers can
 * carry raw bytes. A corrupt, truncated or mismatched file is an error naming
 * the file and byte offset.
 */
#ifndef DQ_DATASET_H
#define DQ_DATASET_H

#include <stdint.h>

#include "base/status.h"

typedef struct {
    int64_t n;
    int c, h, w;
    uint8_t *images; /* n*c*h*w, owned */
    int32_t *labels; /* n, owned */
    int classes;
} dq_dataset;

/* IDX pair: images (magic 0x00000803, dims n,h,w) and labels (0x00000801). */
dq_status dq_idx_load(dq_dataset *ds, const char *images_path, const char *labels_path,
                      dq_err *err);

/* CIFAR-10 binary batches: records of 1 label byte + 3072 pixel bytes. */
dq_status dq_cifar_load(dq_dataset *ds, const char *const *paths, int n_paths, dq_err *err);

/* Loads the train or test split from a directory holding either the four
 * Fashion-MNIST/MNIST IDX files (optionally .gz) or CIFAR-10 batches
 * (data_batch_1..5.bin, test_batch.bin, possibly in cifar-10-batches-bin/). */
dq_status dq_dataset_load_dir(dq_dataset *ds, const char *dir, int train, dq_err *err);

/* Keeps only the first n samples (no-op if n <= 0 or n >= ds->n). */
void dq_dataset_truncate(dq_dataset *ds, int64_t n);

void dq_dataset_free(dq_dataset *ds);

#endif
