/* fuzz_util.h - what the libFuzzer targets (tests/fuzz_*.c) share.
 *
 * fz_file: parsers that take a path (safetensors, IDX, CIFAR-10) read the
 * fuzz input from a memfd through /proc/self/fd/N: no disk, no cleanup, the
 * same code path as a real file (fopen, fstat, gzopen).
 * fz_seeds: every target writes its own seed corpus of valid inputs when
 * DQ_FUZZ_SEED_DIR is set (tests/test_fuzz.sh does this first), so mutation
 * starts from deep paths and the seeds follow the formats as they change.
 * fz_check: an invariant violated is a crash libFuzzer keeps as an input.
 */
#ifndef DQ_TESTS_FUZZ_UTIL_H
#define DQ_TESTS_FUZZ_UTIL_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static inline void fz_check(int cond)
{
    if (!cond) __builtin_trap();
}

/* A memfd holding the bytes, reachable by the returned path; slot picks one
 * of a few files (a parser that takes two paths gets two). */
static inline const char *fz_file(int slot, const uint8_t *data, size_t size)
{
    static int fds[4] = {-1, -1, -1, -1};
    static char paths[4][64];
    if (fds[slot] < 0) {
        fds[slot] = memfd_create("dq-fuzz", 0);
        if (fds[slot] < 0) {
            perror("memfd_create");
            abort();
        }
        snprintf(paths[slot], sizeof paths[slot], "/proc/self/fd/%d", fds[slot]);
    }
    if (ftruncate(fds[slot], 0) != 0) abort();
    for (size_t off = 0; off < size;) {
        ssize_t n = pwrite(fds[slot], data + off, size - off, (off_t)off);
        if (n <= 0) abort();
        off += (size_t)n;
    }
    return paths[slot];
}

/* Writes one seed file DIR/name when DQ_FUZZ_SEED_DIR is set. */
static inline void fz_seed(const char *name, const void *data, size_t size)
{
    const char *dir = getenv("DQ_FUZZ_SEED_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        fprintf(stderr, "cannot write seed %s: %s\n", path, strerror(errno));
        exit(1);
    }
}

/* Call from LLVMFuzzerInitialize: with DQ_FUZZ_SEED_DIR set, write the
 * seeds and exit 0 without fuzzing. */
#define FZ_SEEDS_THEN_EXIT(write_fn)                                                        \
    do {                                                                                    \
        if (getenv("DQ_FUZZ_SEED_DIR")) {                                                   \
            write_fn();                                                                     \
            exit(0);                                                                        \
        }                                                                                   \
    } while (0)

#endif
