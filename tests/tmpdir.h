/* tmpdir.h - a cmocka fixture owning a fresh directory under /tmp.
 *
 * setup makes /tmp/<prefix>XXXXXX and stores a dq_test_tmpdir in *state;
 * teardown removes the whole tree and frees it. Tests that write files
 * (datasets, checkpoints, .npy) share it instead of each keeping a copy.
 */
#ifndef DQ_TEST_TMPDIR_H
#define DQ_TEST_TMPDIR_H

typedef struct {
    char dir[64];
} dq_test_tmpdir;

/* 0 on success, -1 (cmocka: setup failed) otherwise. prefix < 40 chars. */
int dq_test_tmpdir_setup(void **state, const char *prefix);
int dq_test_tmpdir_teardown(void **state);

#endif
