/* test_cache_crash.c - the cache with other processes: a child writing
 * batches is SIGKILLed at random moments (6 times, one reader verifying
 * beside it), after which the cache opens, verify finds nothing bad and
 * every batch is all there or not at all; and a read-only reader keeps
 * working while a writer in another process grows the file past the
 * reader's map (MDB_MAP_RESIZED). Children die with the test (PDEATHSIG)
 * and stop by themselves after 10 s. */
#include "cache_testutil.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const int64_t s_lshape[1] = {10}, s_fshape[2] = {2, 3};

enum { CR_N = 32, CR_ROUNDS = 6 };

/* Batch `id`: 32 u8 samples 1x8x8, logits [10] and feat [2, 3], all derived
 * from id, so the parent can check what the killed child wrote. */
static void s_crash_batch(uint64_t id, uint8_t *x, float *lg, float *ft)
{
    s_bytes(x, CR_N * 64, id * 3 + 1);
    s_floats(lg, CR_N * 10, id * 3 + 2);
    s_floats(ft, CR_N * 6, id * 3 + 3);
}

static void s_crash_child(const char *dir, uint64_t first)
{
    /* Never outlive the test: die with the parent, and stop after 10 s. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() == 1) _exit(5);
    time_t until = time(NULL) + 10;
    dq_cache_t *c = NULL;
    dq_err err = {{0}};
    if (dq_cache_open(&c, dir, NULL, &err) != DQ_OK) _exit(3);
    uint8_t x[CR_N * 64];
    float lg[CR_N * 10], ft[CR_N * 6];
    const int64_t shape[4] = {CR_N, 1, 8, 8};
    dq_msg_teacher t = s_teacher(SHA_A);
    for (uint64_t id = first; time(NULL) < until; id++) {
        s_crash_batch(id, x, lg, ft);
        dq_cache_put_output outs[2] = {{"logits", 1, s_lshape, lg}, {"feat", 2, s_fshape, ft}};
        int64_t stored;
        if (dq_cache_put_batch(c, &t, DQ_DTYPE_U8, shape, x, 2, outs, &stored, &err) != DQ_OK ||
            stored != 2 * CR_N)
            _exit(4);
    }
    _exit(0);
}

static void test_crash_sigkill_leaves_whole_batches(void **state)
{
    s_fixture *fx = *state;
    uint64_t seed = (uint64_t)time(NULL) ^ (uint64_t)getpid();
    print_message("# crash test seed %llu\n", (unsigned long long)seed);
    for (int r = 0; r < CR_ROUNDS; r++) {
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) s_crash_child(fx->dir, (uint64_t)r * 1000000);
        struct timespec ts = {0, (long)(20 + s_next(&seed) % 130) * 1000000L};
        nanosleep(&ts, NULL);
        /* A reader beside the live writer sees a consistent snapshot (the
         * asserts wait until the child is dead: a failure must not orphan it). */
        dq_status rst = DQ_OK;
        int64_t rbad = 0, rentries;
        dq_err rerr = {{0}};
        if (r == 2) {
            dq_cache_config cfg;
            dq_cache_config_defaults(&cfg);
            cfg.read_only = true;
            dq_cache_t *ro = NULL;
            rst = dq_cache_open(&ro, fx->dir, &cfg, &rerr);
            if (!rst) rst = dq_cache_verify(ro, &rentries, &rbad, NULL, NULL, &rerr);
            dq_cache_close(&ro);
        }
        assert_int_equal(kill(pid, SIGKILL), 0);
        if (rst) print_error("reader: %s\n", rerr.msg);
        assert_int_equal(rst, DQ_OK);
        assert_int_equal(rbad, 0);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (!WIFSIGNALED(status)) print_error("child exited with %d\n", WEXITSTATUS(status));
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    }
    /* Reopen for writing, as a restarted broker would (stale lock owner). */
    dq_cache_t *c = s_open(fx->dir, false, 0);
    int64_t entries = -1, bad = -1;
    dq_err err = {{0}};
    assert_int_equal(dq_cache_verify(c, &entries, &bad, NULL, NULL, &err), DQ_OK);
    assert_int_equal(bad, 0);
    uint8_t x[CR_N * 64];
    float lg[CR_N * 10], ft[CR_N * 6];
    const int64_t shape[4] = {CR_N, 1, 8, 8};
    dq_cache_get_output o[2] = {{.name = "logits"}, {.name = "feat"}};
    int64_t total = 0;
    for (int r = 0; r < CR_ROUNDS; r++) {
        int64_t present = 0;
        for (uint64_t id = (uint64_t)r * 1000000;; id++) {
            s_crash_batch(id, x, lg, ft);
            int64_t missing = -1;
            assert_int_equal(dq_cache_get_batch(c, SHA_A, "deepnn-fmnist", DQ_DTYPE_U8, shape, x, 2, o, &missing,
                                                &err), DQ_OK);
            if (missing == CR_N) { /* the first absent batch: the rest are absent too */
                for (uint64_t j = id + 1; j < id + 4; j++) {
                    s_crash_batch(j, x, lg, ft);
                    assert_int_equal(dq_cache_get_batch(c, SHA_A, "deepnn-fmnist", DQ_DTYPE_U8, shape, x, 2, o,
                                                        &missing, &err), DQ_OK);
                    assert_int_equal(missing, CR_N);
                }
                break;
            }
            assert_int_equal(missing, 0); /* never a partial batch */
            assert_memory_equal(o[0].data, lg, sizeof lg);
            assert_memory_equal(o[1].data, ft, sizeof ft);
            present++;
        }
        total += present;
    }
    print_message("# crash test: %lld whole batches survived %d kills, %lld entries\n",
                  (long long)total, CR_ROUNDS, (long long)entries);
    assert_int_equal(entries, total * CR_N * 2);
    assert_true(total > 0);
    dq_cache_get_output_free(o, 2);
    dq_cache_close(&c);
}


/* Stores batch `id` (s_crash_batch); returns the new entries. */
static int64_t s_put_id(dq_cache_t *c, uint64_t id)
{
    uint8_t x[CR_N * 64];
    float lg[CR_N * 10], ft[CR_N * 6];
    const int64_t shape[4] = {CR_N, 1, 8, 8};
    s_crash_batch(id, x, lg, ft);
    dq_msg_teacher t = s_teacher(SHA_A);
    dq_cache_put_output outs[2] = {{"logits", 1, s_lshape, lg}, {"feat", 2, s_fshape, ft}};
    int64_t stored = -1;
    dq_err err = {{0}};
    if (dq_cache_put_batch(c, &t, DQ_DTYPE_U8, shape, x, 2, outs, &stored, &err) != DQ_OK)
        return -1;
    return stored;
}

/* Whether batch id is fully present and bit-exact in c. */
static bool s_has_id(dq_cache_t *c, uint64_t id)
{
    uint8_t x[CR_N * 64];
    float lg[CR_N * 10], ft[CR_N * 6];
    const int64_t shape[4] = {CR_N, 1, 8, 8};
    s_crash_batch(id, x, lg, ft);
    dq_cache_get_output o[2] = {{.name = "logits"}, {.name = "feat"}};
    int64_t missing = -1;
    dq_err err = {{0}};
    dq_status st = dq_cache_get_batch(c, SHA_A, "deepnn-fmnist", DQ_DTYPE_U8, shape, x, 2, o, &missing, &err);
    if (st) print_error("get batch %llu: %s\n", (unsigned long long)id, err.msg);
    bool ok = st == DQ_OK && missing == 0 && memcmp(o[0].data, lg, sizeof lg) == 0 &&
              memcmp(o[1].data, ft, sizeof ft) == 0;
    dq_cache_get_output_free(o, 2);
    return ok;
}

static void test_reader_follows_growing_writer(void **state)
{
    s_fixture *fx = *state;
    enum { LAST = 80 };
    dq_cache_t *c = s_open(fx->dir, false, 256 << 10);
    assert_int_equal(s_put_id(c, 0), 2 * CR_N);
    dq_cache_close(&c);
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) { /* the writer, with a 16 MiB map, once the reader is open */
        char go;
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || read(pfd[0], &go, 1) != 1) _exit(5);
        dq_cache_t *w = NULL;
        dq_cache_config cfg;
        dq_cache_config_defaults(&cfg);
        cfg.max_bytes = 16 << 20;
        dq_err err = {{0}};
        if (dq_cache_open(&w, fx->dir, &cfg, &err) != DQ_OK) _exit(3);
        for (uint64_t id = 1; id <= LAST; id++)
            if (s_put_id(w, id) != 2 * CR_N) _exit(4);
        dq_cache_close(&w);
        _exit(0);
    }
    close(pfd[0]);
    dq_cache_t *ro = NULL;
    dq_cache_config cfg;
    dq_cache_config_defaults(&cfg);
    cfg.read_only = true;
    dq_err err = {{0}};
    dq_status st = dq_cache_open(&ro, fx->dir, &cfg, &err);
    bool had0 = st == DQ_OK && s_has_id(ro, 0);
    dq_cache_info info = {0};
    if (!st) st = dq_cache_stats(ro, &info, &err);
    uint64_t map_before = info.map_bytes;
    dq_cache_info_free(&info);
    /* Start the writer whatever happened, so that it never waits forever. */
    assert_int_equal(write(pfd[1], "g", 1), 1);
    close(pfd[1]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (st) print_error("reader: %s\n", err.msg);
    assert_int_equal(st, DQ_OK);
    assert_true(had0);
    assert_int_equal(map_before, 256 << 10);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    /* The writer's data now lies beyond our 256 KiB map: the next read
     * transaction must re-map rather than fail. */
    assert_true(s_has_id(ro, LAST));
    assert_true(s_has_id(ro, 1));
    assert_int_equal(dq_cache_stats(ro, &info, &err), DQ_OK);
    assert_int_equal(info.map_bytes, 16 << 20);
    assert_true(info.used_bytes > 256 << 10);
    assert_int_equal(info.entries, (LAST + 1) * 2 * CR_N);
    dq_cache_info_free(&info);
    dq_cache_close(&ro);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_crash_sigkill_leaves_whole_batches, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_reader_follows_growing_writer, s_setup, s_teardown),
    };
    return cmocka_run_group_tests_name("cache_crash", tests, NULL, NULL);
}
