/* tmpdir.c - the temp-directory fixture of tmpdir.h (mkdtemp + nftw). */
#define _XOPEN_SOURCE 700
#include "tmpdir.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

static int s_rm(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

int dq_test_tmpdir_setup(void **state, const char *prefix)
{
    dq_test_tmpdir *t = calloc(1, sizeof *t);
    if (!t) return -1;
    snprintf(t->dir, sizeof t->dir, "/tmp/%sXXXXXX", prefix);
    if (!mkdtemp(t->dir)) {
        free(t);
        return -1;
    }
    *state = t;
    return 0;
}

int dq_test_tmpdir_teardown(void **state)
{
    dq_test_tmpdir *t = *state;
    int rc = nftw(t->dir, s_rm, 8, FTW_DEPTH | FTW_PHYS);
    free(t);
    return rc;
}
