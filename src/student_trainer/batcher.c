/* batcher.c - deterministic batch order and u8 augmentation. */
#include "student_trainer/batcher.h"

#include <stdlib.h>
#include <string.h>

#include "tensor/rng.h"

#define S_PAD 2
#define S_MAX_SIDE 64

dq_status dq_batcher_init(dq_batcher *b, const dq_dataset *ds, uint64_t seed, int64_t batch,
                          bool augment, dq_err *err)
{
    memset(b, 0, sizeof *b);
    if (augment && (ds->h > S_MAX_SIDE || ds->w > S_MAX_SIDE))
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "--augment: images of %dx%d exceed %dx%d",
                       ds->h, ds->w, S_MAX_SIDE, S_MAX_SIDE);
    b->perm = malloc((size_t)(ds->n > 0 ? ds->n : 1) * sizeof(int32_t));
    if (!b->perm) return dq_fail(err, DQ_ERR_NOMEM, "batcher: out of memory");
    b->ds = ds;
    b->seed = seed;
    b->batch = batch;
    b->augment = augment;
    b->epoch = -1;
    return DQ_OK;
}

void dq_batcher_free(dq_batcher *b)
{
    free(b->perm);
    memset(b, 0, sizeof *b);
}

int64_t dq_batcher_count(const dq_batcher *b)
{
    return (b->ds->n + b->batch - 1) / b->batch;
}

void dq_batcher_epoch(dq_batcher *b, int64_t epoch)
{
    if (b->epoch == epoch) return;
    dq_rng r;
    dq_rng_seed(&r, b->seed ^ (0x5851f42d4c957f2dULL * (uint64_t)(epoch + 1)));
    for (int64_t i = 0; i < b->ds->n; i++) b->perm[i] = (int32_t)i;
    dq_rng_shuffle(&r, b->perm, b->ds->n);
    b->epoch = epoch;
}

int64_t dq_batcher_fill(const dq_batcher *b, int64_t index, uint8_t *pix, int32_t *labels)
{
    const dq_dataset *ds = b->ds;
    int64_t first = index * b->batch;
    if (index < 0 || first >= ds->n) return 0;
    int64_t n = ds->n - first < b->batch ? ds->n - first : b->batch;
    size_t sz = (size_t)ds->c * (size_t)ds->h * (size_t)ds->w;
    for (int64_t i = 0; i < n; i++) {
        int64_t s = b->perm[first + i];
        memcpy(pix + (size_t)i * sz, ds->images + (size_t)s * sz, sz);
        labels[i] = ds->labels[s];
    }
    if (b->augment) {
        dq_rng r;
        dq_rng_seed(&r, b->seed ^ (0x9e3779b97f4a7c15ULL * (uint64_t)(b->epoch + 1)) ^
                            (0xbf58476d1ce4e5b9ULL * (uint64_t)(index + 1)));
        dq_augment_crop_flip(pix, n, ds->c, ds->h, ds->w, S_PAD, &r);
    }
    return n;
}

void dq_augment_crop_flip(uint8_t *pix, int64_t n, int c, int h, int w, int pad,
                          dq_rng *rng)
{
    uint8_t plane[S_MAX_SIDE * S_MAX_SIDE];
    for (int64_t i = 0; i < n; i++) {
        int dy = (int)dq_rng_below(rng, (uint64_t)(2 * pad + 1)) - pad;
        int dx = (int)dq_rng_below(rng, (uint64_t)(2 * pad + 1)) - pad;
        int flip = (int)dq_rng_below(rng, 2);
        for (int ch = 0; ch < c; ch++) {
            uint8_t *img = pix + ((size_t)i * (size_t)c + (size_t)ch) * (size_t)h * (size_t)w;
            memcpy(plane, img, (size_t)h * (size_t)w);
            for (int y = 0; y < h; y++) {
                int sy = y + dy;
                for (int x = 0; x < w; x++) {
                    int sx = (flip ? w - 1 - x : x) + dx;
                    img[y * w + x] = (sy >= 0 && sy < h && sx >= 0 && sx < w)
                                         ? plane[sy * w + sx] : 0;
                }
            }
        }
    }
}
