/* batcher.h - the dataset side of a training batch: order and augmentation.
 *
 * Batch b of epoch e is a pure function of (seed, e, b): the epoch's sample
 * order comes from an rng seeded with (seed, e), the augmentation of batch b
 * from one seeded with (seed, e, b). Who builds the batch (the trainer, a
 * prefetching reader thread) and when therefore never changes its content,
 * which is what makes local, service and replayed distillation and resumed
 * runs bit-identical. Augmentation works on the u8 pixels so that teacher
 * requests stay u8.
 */
#ifndef DQ_BATCHER_H
#define DQ_BATCHER_H

#include <stdbool.h>
#include <stdint.h>

#include "data/dataset.h"
#include "tensor/rng.h"

typedef struct {
    const dq_dataset *ds; /* not owned */
    uint64_t seed;
    int64_t batch;
    bool augment;         /* random crop (2-pixel zero padding) + horizontal flip */
    int64_t epoch;        /* epoch whose order is in perm (-1: none yet) */
    int32_t *perm;        /* owned, ds->n entries */
} dq_batcher;

dq_status dq_batcher_init(dq_batcher *b, const dq_dataset *ds, uint64_t seed, int64_t batch,
                          bool augment, dq_err *err);
void dq_batcher_free(dq_batcher *b);

/* Batches per epoch (the last one may be short). */
int64_t dq_batcher_count(const dq_batcher *b);

/* Computes the sample order of epoch e (cheap to call again for the same e). */
void dq_batcher_epoch(dq_batcher *b, int64_t epoch);

/* Writes batch `index` of the current epoch into pix [n,c,h,w] and labels
 * [n]; returns n (0 past the end). Buffers hold b->batch samples. */
int64_t dq_batcher_fill(const dq_batcher *b, int64_t index, uint8_t *pix, int32_t *labels);

/* Random crop with `pad` zero pixels on every side, then a horizontal flip
 * with probability 1/2, for each of n images [c,h,w] in place (as
 * torchvision's RandomCrop(h, padding=pad) + RandomHorizontalFlip()). */
void dq_augment_crop_flip(uint8_t *pix, int64_t n, int c, int h, int w, int pad,
                          dq_rng *rng);

#endif
