/* rng.c - xoshiro256** (Blackman & Vigna), seeded with splitmix64. */
#include "tensor/rng.h"

static uint64_t s_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t s_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void dq_rng_seed(dq_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = s_splitmix64(&x);
}

uint64_t dq_rng_next(dq_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = s_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = s_rotl(s[3], 45);
    return result;
}

float dq_rng_uniform(dq_rng *r)
{
    return (float)(dq_rng_next(r) >> 40) * (1.0f / 16777216.0f);
}

float dq_rng_range(dq_rng *r, float lo, float hi)
{
    return lo + (hi - lo) * dq_rng_uniform(r);
}

uint64_t dq_rng_below(dq_rng *r, uint64_t n)
{
    /* Rejection sampling: discard the top partial range. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do {
        x = dq_rng_next(r);
    } while (x >= limit);
    return x % n;
}

void dq_rng_shuffle(dq_rng *r, int32_t *idx, int64_t n)
{
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)dq_rng_below(r, (uint64_t)i + 1);
        int32_t t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
}
