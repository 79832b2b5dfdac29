/* fuzz_dataset.c - libFuzzer target for the dataset readers (src/data):
 * IDX image/label pairs (raw or gzip, through zlib) and CIFAR-10 batches.
 * Dataset files come from outside: any bytes must load or fail naming the
 * file, never crash, overrun or allocate without bound. A set that loads
 * must be what the trainer assumes: n >= 1, a sane [c, h, w], every pixel
 * readable (ASan sees an overrun), every label a class.
 *
 * Input: byte 0 picks the reader (even: IDX, odd: CIFAR-10); for IDX, bytes
 * 1-2 (LE) are the length of the labels file that follows, the rest is the
 * images file; for CIFAR-10, byte 1 bit 0 says whether the data is split
 * into two batch files at its middle.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "data/dataset.h"
#include "fuzz_util.h"

static size_t s_idx_header(uint8_t *p, uint32_t magic, int nd, const uint32_t *dims)
{
    size_t k = 0;
    for (int s = 24; s >= 0; s -= 8) p[k++] = (uint8_t)(magic >> s);
    for (int d = 0; d < nd; d++)
        for (int s = 24; s >= 0; s -= 8) p[k++] = (uint8_t)(dims[d] >> s);
    return k;
}

/* Gzip of src into dst (capacity cap); returns its length. */
static size_t s_gzip(uint8_t *dst, size_t cap, const uint8_t *src, size_t len)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 9, Z_DEFLATED, 16 + 15, 8, Z_DEFAULT_STRATEGY) != Z_OK) abort();
    z.next_in = (Bytef *)src;
    z.avail_in = (uInt)len;
    z.next_out = dst;
    z.avail_out = (uInt)cap;
    if (deflate(&z, Z_FINISH) != Z_STREAM_END) abort();
    size_t n = z.total_out;
    deflateEnd(&z);
    return n;
}

/* One input for IDX: mode, labels length, labels, images (each maybe gzipped). */
static void s_idx_seed(const char *name, int n, int h, int w, int gz)
{
    uint8_t lab[64], img[512], lz[256], iz[1024], out[2048];
    uint32_t ld[1] = {(uint32_t)n}, id[3] = {(uint32_t)n, (uint32_t)h, (uint32_t)w};
    size_t ll = s_idx_header(lab, 0x801, 1, ld), il = s_idx_header(img, 0x803, 3, id);
    for (int i = 0; i < n; i++) lab[ll++] = (uint8_t)(i % 10);
    for (int i = 0; i < n * h * w; i++) img[il++] = (uint8_t)(i * 37);
    const uint8_t *lp = lab, *ip = img;
    if (gz) {
        ll = s_gzip(lz, sizeof lz, lab, ll), lp = lz;
        il = s_gzip(iz, sizeof iz, img, il), ip = iz;
    }
    out[0] = 0;
    out[1] = (uint8_t)ll, out[2] = (uint8_t)(ll >> 8);
    memcpy(out + 3, lp, ll);
    memcpy(out + 3 + ll, ip, il);
    fz_seed(name, out, 3 + ll + il);
}

static void s_write_seeds(void)
{
    s_idx_seed("idx-2x3x3", 2, 3, 3, 0);
    s_idx_seed("idx-5x4x2.gz", 5, 4, 2, 1);
    static uint8_t c[2 + 2 * 3073];
    c[0] = 1, c[1] = 0;
    for (int r = 0; r < 2; r++) {
        c[2 + r * 3073] = (uint8_t)(r + 3);
        for (int i = 1; i < 3073; i++) c[2 + r * 3073 + i] = (uint8_t)(i + r);
    }
    fz_seed("cifar-2", c, 2 + 3073);
    c[1] = 1;
    fz_seed("cifar-2-split", c, sizeof c);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    FZ_SEEDS_THEN_EXIT(s_write_seeds);
    return 0;
}

static void s_check_set(const dq_dataset *ds, int c, int max_side)
{
    fz_check(ds->n >= 1 && ds->c == c && ds->classes == 10);
    fz_check(ds->h >= 1 && ds->h <= max_side && ds->w >= 1 && ds->w <= max_side);
    volatile uint8_t sink = 0;
    size_t px = (size_t)ds->n * (size_t)ds->c * (size_t)ds->h * (size_t)ds->w;
    for (size_t i = 0; i < px; i++) sink ^= ds->images[i];
    for (int64_t i = 0; i < ds->n; i++) fz_check(ds->labels[i] >= 0 && ds->labels[i] < 10);
    (void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    dq_dataset ds;
    dq_err err = {{0}};
    dq_status st;
    if ((data[0] & 1) == 0) {
        if (size < 3) return 0;
        size_t ll = (size_t)data[1] | (size_t)data[2] << 8;
        if (ll > size - 3) ll = size - 3;
        const char *lp = fz_file(0, data + 3, ll);
        const char *ip = fz_file(1, data + 3 + ll, size - 3 - ll);
        st = dq_idx_load(&ds, ip, lp, &err);
        if (st == DQ_OK) s_check_set(&ds, 1, 4096);
    } else {
        size_t body = size - 2, half = (data[1] & 1) ? body / 2 : body;
        const char *paths[2] = {fz_file(0, data + 2, half),
                                fz_file(1, data + 2 + half, body - half)};
        st = dq_cifar_load(&ds, paths, (data[1] & 1) ? 2 : 1, &err);
        if (st == DQ_OK) s_check_set(&ds, 3, 32);
    }
    if (st != DQ_OK) {
        fz_check(err.msg[0] != '\0' && ds.images == NULL && ds.labels == NULL);
        return 0;
    }
    dq_dataset_free(&ds);
    return 0;
}
