/* bench_depthwise.c - depthwise conv2d throughput on the CPU, the direct
 * kernel against the per-group im2col + GEMM path on the same layers.
 *
 * MobileNet-style 3x3 depthwise layers at the sizes a 28x28 input gives
 * (batch 128 by default): eval forward (max_group 1) and a training pass
 * (forward + backward with din, dw, db). Each measurement warms up, then
 * runs whole iterations for --seconds and reports samples/s. Output lines
 * are "RESULT depthwise <layer> <algo> <pass> <samples/s>". Built by
 * `make bench-depthwise` (not by make check); single-threaded unless
 * OPENBLAS_NUM_THREADS says otherwise (the direct kernel is one thread).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tensor/conv2d_int.h"
#include "tensor/ops.h"
#include "tensor/rng.h"

typedef struct {
    const char *name;
    int C, H, mult, stride;
} s_layer;

static double s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void s_fill(float *x, int64_t n, dq_rng *rng)
{
    for (int64_t i = 0; i < n; i++) x[i] = dq_rng_range(rng, -1, 1);
}

/* Runs one pass until `seconds` have passed; returns samples/s. */
static double s_measure(int N, double seconds, int backward, dq_conv2d_algo algo,
                        dq_tensor *y, dq_tensor *x, dq_tensor *w, dq_tensor *b, dq_tensor *dx,
                        dq_tensor *dw, dq_tensor *db, dq_conv2d_params p, float *ws,
                        int64_t wsn)
{
    dq_err err = {{0}};
    int iters = 0;
    double t0 = 0.0;
    for (int warm = 3;; warm--) {
        if (warm == 0) t0 = s_now();
        if (dq_conv2d_grouped_forward(y, x, w, b, p, ws, wsn, algo, &err) != DQ_OK ||
            (backward && dq_conv2d_grouped_backward(dx, dw, db, y, x, w, p, ws, wsn, algo,
                                                    &err) != DQ_OK)) {
            fprintf(stderr, "bench_depthwise: %s\n", err.msg);
            exit(1);
        }
        if (warm > 0) continue;
        iters++;
        double dt = s_now() - t0;
        if (dt >= seconds) return (double)iters * N / dt;
    }
}

int main(int argc, char **argv)
{
    int N = 128;
    double seconds = 1.0;
    for (int i = 1; i < argc; i++) {
        char *end = NULL;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: bench_depthwise [--batch N] [--seconds S]\n"
                   "Depthwise conv2d samples/s, direct kernel against per-group GEMM, on\n"
                   "MobileNet-style 3x3 layers (batch N, default 128; S seconds, default 1,\n"
                   "per number).\n");
            return 0;
        }
        bool ok = false;
        if (i + 1 < argc && !strcmp(argv[i], "--batch")) {
            long v = strtol(argv[++i], &end, 10);
            ok = !*end && v >= 1 && v <= 4096;
            N = (int)v;
        } else if (i + 1 < argc && !strcmp(argv[i], "--seconds")) {
            seconds = strtod(argv[++i], &end);
            ok = !*end && seconds > 0 && seconds <= 600;
        }
        if (!ok) {
            fprintf(stderr, "bench_depthwise: bad argument '%s' (try --help)\n", argv[i]);
            return 2;
        }
    }
    static const s_layer layers[] = {
        {"dw32x28", 32, 28, 1, 1},
        {"dw64x14s2", 64, 28, 1, 2},
        {"dw128x14", 128, 14, 1, 1},
        {"dw256x7", 256, 7, 1, 1},
    };
    dq_rng rng;
    dq_rng_seed(&rng, 1);
    for (size_t li = 0; li < sizeof layers / sizeof layers[0]; li++) {
        const s_layer *l = &layers[li];
        const int C = l->C, H = l->H, OC = C * l->mult;
        dq_conv2d_params p = {.stride = l->stride, .padding = 1, .max_group = 1, .groups = C};
        const int64_t OH = dq_conv2d_out_size(H, 3, l->stride, 1);
        const int64_t nx = (int64_t)N * C * H * H, ny = (int64_t)N * OC * OH * OH;
        const int64_t nw = (int64_t)OC * 9, wsn = (int64_t)C * 9 * (OH * OH + 16);
        /* the GEMM path's columns cover the direct kernel's few planes too */
        float *xs = malloc((size_t)nx * 4), *ys = malloc((size_t)ny * 4);
        float *gx = calloc((size_t)nx, 4), *ws = malloc((size_t)wsn * 4);
        float wv[256 * 9], bv[256], gw[256 * 9] = {0}, gb[256] = {0};
        if (!xs || !ys || !gx || !ws) return 1;
        s_fill(xs, nx, &rng);
        s_fill(wv, nw, &rng);
        s_fill(bv, OC, &rng);
        int64_t bs[1] = {OC};
        dq_tensor x = dq_tensor_view4(xs, N, C, H, H), y = dq_tensor_view4(ys, N, OC, OH, OH);
        dq_tensor w = dq_tensor_view4(wv, OC, 1, 3, 3), b = dq_tensor_view(bv, 1, bs);
        dq_tensor dx = dq_tensor_view4(gx, N, C, H, H), dw = dq_tensor_view4(gw, OC, 1, 3, 3);
        dq_tensor db = dq_tensor_view(gb, 1, bs);
        for (int algo = 0; algo < 2; algo++) {
            dq_conv2d_algo a = algo ? DQ_CONV2D_ALGO_GEMM : DQ_CONV2D_ALGO_DIRECT;
            for (int bw = 0; bw < 2; bw++) {
                double r = s_measure(N, seconds, bw, a, &y, &x, &w, &b, &dx, &dw, &db, p, ws,
                                     wsn);
                printf("RESULT\tdepthwise\t%s\t%s\t%s\t%.0f\n", l->name,
                       algo ? "gemm" : "direct", bw ? "fwd+bwd" : "fwd", r);
                fflush(stdout);
            }
        }
        free(xs), free(ys), free(gx), free(ws);
    }
    return 0;
}
