/* shard.c - a rank's share of a global batch (see shard.h). */
#include "student_trainer/shard.h"

#include <string.h>

void dq_shard_range(int64_t n, int rank, int ranks, int64_t *lo, int64_t *hi)
{
    if (ranks <= 1) {
        *lo = 0;
        *hi = n;
        return;
    }
    *lo = n * rank / ranks;
    *hi = n * (rank + 1) / ranks;
}

int64_t dq_batcher_fill_shard(const dq_batcher *b, int64_t index, int rank, int ranks,
                              uint8_t *pix, int32_t *labels)
{
    int64_t n = dq_batcher_fill(b, index, pix, labels);
    if (n == 0 || ranks <= 1) return n;
    int64_t lo, hi;
    dq_shard_range(n, rank, ranks, &lo, &hi);
    const dq_dataset *ds = b->ds;
    size_t sz = (size_t)ds->c * (size_t)ds->h * (size_t)ds->w;
    memmove(pix, pix + (size_t)lo * sz, (size_t)(hi - lo) * sz);
    memmove(labels, labels + lo, (size_t)(hi - lo) * sizeof(int32_t));
    return hi - lo;
}
