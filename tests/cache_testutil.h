/* cache_testutil.h - what the cache tests share: a fresh mkdtemp directory
 * per test (removed after), deterministic bytes and awkward floats, a
 * teacher identity, and an asserting open. Header-only (static inline). */
#ifndef DQ_CACHE_TESTUTIL_H
#define DQ_CACHE_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cache/cache.h"

#define SHA_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define SHA_B "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

typedef struct {
    char dir[64];
} s_fixture;

static inline int s_rm(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static inline int s_setup(void **state)
{
    s_fixture *fx = calloc(1, sizeof *fx);
    if (!fx) return -1;
    strcpy(fx->dir, "/tmp/dq_cache_XXXXXX");
    if (!mkdtemp(fx->dir)) return -1;
    *state = fx;
    return 0;
}

static inline int s_teardown(void **state)
{
    s_fixture *fx = *state;
    int rc = nftw(fx->dir, s_rm, 8, FTW_DEPTH | FTW_PHYS);
    free(fx);
    return rc;
}

static inline uint64_t s_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline void s_bytes(void *dst, size_t n, uint64_t seed)
{
    uint8_t *p = dst;
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)s_next(&seed);
}

/* Random floats including values a lossy path would alter: -0, denormals,
 * infinities and NaNs with payloads (compared with memcmp). */
static inline void s_floats(float *dst, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)s_next(&seed);
        if (i % 7 == 3) u = 0x80000000u;        /* -0 */
        if (i % 11 == 5) u = 0x00000123u;       /* denormal */
        if (i % 13 == 6) u = 0x7fc01234u;       /* NaN with payload */
        memcpy(&dst[i], &u, 4);
    }
}

static inline dq_msg_teacher s_teacher(const char *sha)
{
    dq_msg_teacher t = {0};
    strcpy(t.service, "fmnist");
    strcpy(t.model, "deepnn-fmnist");
    strcpy(t.sha256, sha);
    return t;
}

static inline dq_cache_t *s_open(const char *dir, bool ro, uint64_t max_bytes)
{
    dq_cache_config cfg;
    dq_cache_config_defaults(&cfg);
    cfg.read_only = ro;
    if (max_bytes) cfg.max_bytes = max_bytes;
    dq_cache_t *c = NULL;
    dq_err err = {{0}};
    dq_status st = dq_cache_open(&c, dir, &cfg, &err);
    if (st) print_error("open %s: %s\n", dir, err.msg);
    assert_int_equal(st, DQ_OK);
    return c;
}


#endif
