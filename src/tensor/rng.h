/* rng.h - seeded, serialisable random numbers (xoshiro256**).
 *
 * No global state: every user (init, dropout, shuffling, augmentation) owns
 * a dq_rng, so a run is reproducible from its seed and the state can be saved
 * in a checkpoint and restored bit for bit.
 */
#ifndef DQ_RNG_H
#define DQ_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4];
} dq_rng;

/* Seeds via splitmix64 so nearby seeds give unrelated streams. */
void dq_rng_seed(dq_rng *r, uint64_t seed);

uint64_t dq_rng_next(dq_rng *r);

/* Uniform float in [0, 1) with 24 random bits. */
float dq_rng_uniform(dq_rng *r);

/* Uniform float in [lo, hi). */
float dq_rng_range(dq_rng *r, float lo, float hi);

/* Uniform integer in [0, n) without modulo bias; n > 0. */
uint64_t dq_rng_below(dq_rng *r, uint64_t n);

/* Fisher-Yates shuffle of idx[0..n). */
void dq_rng_shuffle(dq_rng *r, int32_t *idx, int64_t n);

#endif
