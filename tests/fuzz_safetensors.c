/* fuzz_safetensors.c - libFuzzer target for the safetensors reader
 * (src/model/safetensors.c): checkpoints and teacher weights come from
 * outside, so any file must open or fail with a message, never crash, leak
 * or read outside the file. A file that opens must hold what the reader
 * promises: each tensor's bytes inside the data area (every byte is read
 * here, so ASan sees any overrun), nbytes = dtype size x shape, names found
 * by dq_st_find, metadata values found by their keys.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "model/safetensors.h"

static const size_t s_esize[DQ_ST_DTYPE_COUNT] = {4, 8, 8, 8};

static void s_write_seeds(void)
{
    const char *dir = getenv("DQ_FUZZ_SEED_DIR");
    char path[4096];
    float w[6] = {1, 2, 3, 4, 5, 6};
    int64_t step[1] = {7};
    uint64_t rng[2] = {1, 2};
    double sum[3] = {0.5, 1.5, 2.5};
    dq_st_tensor t[4] = {
        {.name = "fc.weight", .dtype = DQ_ST_F32, .ndim = 2, .shape = {2, 3}, .data = w,
         .nbytes = sizeof w},
        {.name = "step", .dtype = DQ_ST_I64, .ndim = 1, .shape = {1}, .data = step,
         .nbytes = sizeof step},
        {.name = "rng", .dtype = DQ_ST_U64, .ndim = 1, .shape = {2}, .data = rng,
         .nbytes = sizeof rng},
        {.name = "sums", .dtype = DQ_ST_F64, .ndim = 1, .shape = {3}, .data = sum,
         .nbytes = sizeof sum},
    };
    const char *meta[4] = {"model", "lightnn-fmnist", "format", "pt"};
    dq_err err;
    snprintf(path, sizeof path, "%s/all-dtypes", dir);
    if (dq_st_write(path, t, 4, meta, 2, &err) != DQ_OK) abort();
    snprintf(path, sizeof path, "%s/one-f32", dir);
    if (dq_st_write(path, t, 1, NULL, 0, &err) != DQ_OK) abort();
    snprintf(path, sizeof path, "%s/empty", dir);
    if (dq_st_write(path, t, 0, meta, 1, &err) != DQ_OK) abort();
    /* a misaligned tensor (copied by the reader) and a scalar, by hand */
    static const char hand[] = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[1,5]},"
                               "\"s\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[5,13]}}";
    uint8_t buf[8 + sizeof hand - 1 + 13] = {0};
    uint64_t hl = sizeof hand - 1;
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(hl >> (8 * i));
    memcpy(buf + 8, hand, hl);
    fz_seed("misaligned", buf, sizeof buf);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    FZ_SEEDS_THEN_EXIT(s_write_seeds);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fz_file(0, data, size);
    dq_st_file_t *f = NULL;
    dq_err err = {{0}};
    if (dq_st_open(&f, path, &err) != DQ_OK) {
        fz_check(f == NULL && err.msg[0] != '\0');
        return 0;
    }
    volatile uint8_t sink = 0;
    int n = dq_st_count(f);
    fz_check(n >= 0);
    for (int i = 0; i < n; i++) {
        const dq_st_tensor *t = dq_st_at(f, i);
        fz_check(t && t->name && (int)t->dtype >= 0 && t->dtype < DQ_ST_DTYPE_COUNT);
        fz_check(t->ndim >= 0 && t->ndim <= DQ_ST_MAX_DIMS);
        uint64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            fz_check(t->shape[d] >= 0);
            numel *= (uint64_t)t->shape[d];
        }
        fz_check(t->nbytes == numel * s_esize[t->dtype]);
        fz_check(t->nbytes <= size);
        const uint8_t *p = t->data;
        for (size_t k = 0; k < t->nbytes; k++) sink ^= p[k];
        if (t->nbytes >= s_esize[t->dtype]) /* aligned for its dtype, as promised */
            fz_check((uintptr_t)p % s_esize[t->dtype] == 0);
        fz_check(dq_st_find(f, t->name) != NULL);
    }
    (void)sink;
    dq_st_close(&f);
    fz_check(f == NULL);
    return 0;
}
