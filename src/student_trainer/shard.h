/* shard.h - a rank's share of a global batch (data-parallel students).
 *
 * Batch b of an epoch is built whole, exactly as one process builds it
 * (batcher.h: order and augmentation are functions of (seed, epoch, b) over
 * the whole batch), and rank r of R keeps the contiguous samples
 * [n*r/R, n*(r+1)/R). Building the whole batch costs a copy of u8 pixels;
 * in exchange every rank's samples are bit for bit those the single-process
 * run uses, so only the gradient summation order differs. Each source
 * (plain/local, service, replay) then asks its teacher for its shard only.
 */
#ifndef DQ_SHARD_H
#define DQ_SHARD_H

#include <stdint.h>

#include "student_trainer/batcher.h"

/* [*lo, *hi) of the n samples of a global batch for rank of ranks
 * (ranks <= 1: all of them). */
void dq_shard_range(int64_t n, int rank, int ranks, int64_t *lo, int64_t *hi);

/* dq_batcher_fill of the whole batch `index`, then keeps rank's shard at the
 * front of pix and labels (which hold b->batch samples). Returns the shard's
 * sample count; 0 past the end of the epoch. */
int64_t dq_batcher_fill_shard(const dq_batcher *b, int64_t index, int rank, int ranks,
                              uint8_t *pix, int32_t *labels);

#endif
