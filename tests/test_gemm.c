/* test_gemm.c - the position-invariant GEMM and the eval ops built on it.
 *
 * Values against a double reference (tolerance scaled by K), every
 * option (transposed B, accumulate, K = 0, sizes across the MC/KC/NC block
 * edges), and the property the cache rests on: an element's bits do not
 * change when its row or column moves inside the matrix, or when the
 * matrix is cut narrower or shorter around it. The eval conv and linear are
 * checked the same way against the training-mode ops and across batches.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "tensor/backend.h"
#include "tensor/gemm.h"
#include "tensor/im2col.h"
#include "tensor/ops.h"
#include "tensor/rng.h"

static float *s_rand(int64_t n, dq_rng *r)
{
    float *p = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    assert_non_null(p);
    for (int64_t i = 0; i < n; i++) p[i] = (float)dq_rng_uniform(r) * 2.0f - 1.0f;
    return p;
}

enum { S_THREADS = 3 };
#define S_WSN dq_gemm_fixed_workspace(S_THREADS)

static float *s_ws(void)
{
    float *ws = aligned_alloc(64, sizeof(float) * (size_t)S_WSN);
    assert_non_null(ws);
    return ws;
}

/* C = A op(B) (+ C0) in double; compares with tolerance 1e-6 * (K + 1). */
static void s_check_values(int64_t M, int64_t N, int64_t K, bool trans, bool acc)
{
    dq_rng r;
    dq_rng_seed(&r, (uint64_t)(M * 1000003 + N * 1009 + K));
    float *A = s_rand(M * K, &r), *B = s_rand(K * N, &r), *C = s_rand(M * N, &r);
    float *C0 = malloc(sizeof(float) * (size_t)(M * N));
    assert_non_null(C0);
    memcpy(C0, C, sizeof(float) * (size_t)(M * N));
    float *ws = s_ws();
    dq_gemm_fixed(M, N, K, A, K, B, trans ? K : N, trans, C, N, acc, S_THREADS, ws, S_WSN);
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double s = acc ? C0[i * N + j] : 0.0;
            for (int64_t k = 0; k < K; k++)
                s += (double)A[i * K + k] * (trans ? B[j * K + k] : B[k * N + j]);
            if (fabs(s - C[i * N + j]) > 1e-6 * (double)(K + 1))
                fail_msg("%lldx%lldx%lld trans=%d acc=%d: C[%lld,%lld] = %g, expected %g",
                         (long long)M, (long long)N, (long long)K, trans, acc, (long long)i,
                         (long long)j, C[i * N + j], s);
        }
    free(A), free(B), free(C), free(C0), free(ws);
}

static void test_values(void **state)
{
    (void)state;
    static const int64_t sz[][3] = {{1, 1, 1},   {5, 7, 3},     {6, 16, 9},   {7, 17, 300},
                                    {73, 33, 257}, {13, 2049, 5}, {150, 40, 520}};
    for (size_t i = 0; i < sizeof sz / sizeof sz[0]; i++)
        for (int t = 0; t < 2; t++)
            for (int a = 0; a < 2; a++) s_check_values(sz[i][0], sz[i][1], sz[i][2], t, a);
}

static void test_k_zero(void **state)
{
    (void)state;
    float C[6] = {1, 2, 3, 4, 5, 6}, A[1] = {0}, B[1] = {0};
    float *ws = s_ws();
    dq_gemm_fixed(2, 3, 0, A, 1, B, 3, false, C, 3, true, 1, ws, S_WSN);
    assert_true(C[5] == 6.0f);
    dq_gemm_fixed(2, 3, 0, A, 1, B, 3, false, C, 3, false, 1, ws, S_WSN);
    for (int i = 0; i < 6; i++) assert_true(C[i] == 0.0f);
    free(ws);
}

/* Every element of a sub-matrix (rows r0.., cols c0..) computed on its own
 * equals, bit for bit, the same element in the full product. */
static void test_position_invariance(void **state)
{
    (void)state;
    const int64_t M = 40, N = 170, K = 600; /* K spans three KC blocks */
    dq_rng r;
    dq_rng_seed(&r, 7);
    float *A = s_rand(M * K, &r), *B = s_rand(K * N, &r);
    float *C = malloc(sizeof(float) * M * N), *D = malloc(sizeof(float) * M * N);
    assert_non_null(C);
    assert_non_null(D);
    float *ws = s_ws();
    for (int t = 0; t < 2; t++) {
        const int64_t ldb = t ? K : N;
        dq_gemm_fixed(M, N, K, A, K, B, ldb, t, C, N, false, 1, ws, S_WSN);
        int checked = 0;
        for (int64_t r0 = 0; r0 < M; r0 += 7)
            for (int64_t c0 = 0; c0 < N; c0 += 31) {
                int64_t m = M - r0 < 9 ? M - r0 : 9, n = N - c0 < 123 ? N - c0 : 123;
                const float *Bs = t ? B + c0 * K : B + c0;
                /* 1 thread for the full product, 3 for the parts: the
                 * thread count must not matter either */
                dq_gemm_fixed(m, n, K, A + r0 * K, K, Bs, ldb, t, D, n, false, S_THREADS, ws,
                              S_WSN);
                for (int64_t i = 0; i < m; i++)
                    for (int64_t j = 0; j < n; j++, checked++)
                        if (memcmp(&D[i * n + j], &C[(r0 + i) * N + c0 + j], sizeof(float)))
                            fail_msg("trans=%d: C[%lld,%lld] differs when computed in a "
                                     "%lldx%lld block at (%lld,%lld)", t, (long long)(r0 + i),
                                     (long long)(c0 + j), (long long)m, (long long)n,
                                     (long long)r0, (long long)c0);
            }
        assert_true(checked > 1000);
    }
    free(A), free(B), free(C), free(D), free(ws);
}

/* Threads split the columns: 1 and 3 threads give the same bits (the
 * product is big enough for the split to happen). */
static void test_thread_count_invariance(void **state)
{
    (void)state;
    const int64_t M = 64, N = 300, K = 300;
    dq_rng r;
    dq_rng_seed(&r, 8);
    float *A = s_rand(M * K, &r), *B = s_rand(K * N, &r);
    float *C = malloc(sizeof(float) * M * N), *D = malloc(sizeof(float) * M * N);
    assert_non_null(C);
    assert_non_null(D);
    float *ws = s_ws();
    dq_gemm_fixed(M, N, K, A, K, B, N, false, C, N, false, 1, ws, S_WSN);
    dq_gemm_fixed(M, N, K, A, K, B, N, false, D, N, false, S_THREADS, ws, S_WSN);
    assert_memory_equal(C, D, sizeof(float) * M * N);
    /* a workspace for one thread only: still correct, on one thread */
    dq_gemm_fixed(M, N, K, A, K, B, N, false, D, N, false, S_THREADS, ws,
                  dq_gemm_fixed_workspace(1));
    assert_memory_equal(C, D, sizeof(float) * M * N);
    free(A), free(B), free(C), free(D), free(ws);
}

/* One eval-conv case: a random batch x [N, C, H, W], weights, bias, two
 * output buffers y and z, and a workspace of ws_floats (the eval conv's at
 * the current thread count, the training conv's and the plain GEMM's, the
 * largest). wsn and wst: the eval and the training conv's own sizes. */
typedef struct {
    int64_t N, C, H, W, KS, OC, OH, OW, per; /* per: output floats of one image */
    dq_conv2d_params p;
    float *x, *w, *b, *y, *z, *ws;
    int64_t wsn, wst;
    dq_tensor tx, tw, tb, ty, tz;
} s_conv;

static void s_conv_make(s_conv *c, int64_t N, int64_t C, int64_t H, int64_t W, int64_t KS,
                        int64_t OC, dq_conv2d_params p, dq_rng *r)
{
    const int64_t G = p.groups > 1 ? p.groups : 1;
    *c = (s_conv){.N = N, .C = C, .H = H, .W = W, .KS = KS, .OC = OC, .p = p};
    c->OH = dq_conv2d_out_size(H, KS, p.stride, p.padding);
    c->OW = dq_conv2d_out_size(W, KS, p.stride, p.padding);
    c->per = OC * c->OH * c->OW;
    c->x = s_rand(N * C * H * W, r);
    c->w = s_rand(OC * C / G * KS * KS, r);
    c->b = s_rand(OC, r);
    c->y = malloc(sizeof(float) * (size_t)(N * c->per));
    c->z = malloc(sizeof(float) * (size_t)(N * c->per));
    c->wsn = dq_conv2d_invariant_workspace(N, C, H, W, KS, KS, OC, p);
    c->wst = G > 1 ? 0 : dq_conv2d_workspace(N, C, H, W, KS, KS, p);
    int64_t n = c->wsn > c->wst ? c->wsn : c->wst;
    n = n > S_WSN ? n : S_WSN;
    /* aligned_alloc wants a size that is a multiple of the alignment */
    c->ws = aligned_alloc(64, sizeof(float) * (size_t)((n + 15) / 16 * 16));
    assert_non_null(c->y);
    assert_non_null(c->z);
    assert_non_null(c->ws);
    c->tx = dq_tensor_view4(c->x, N, C, H, W);
    c->tw = dq_tensor_view4(c->w, OC, C / G, KS, KS);
    c->tb = dq_tensor_view(c->b, 1, &OC);
    c->ty = dq_tensor_view4(c->y, N, OC, c->OH, c->OW);
    c->tz = dq_tensor_view4(c->z, N, OC, c->OH, c->OW);
}

static void s_conv_free(s_conv *c)
{
    free(c->x), free(c->w), free(c->b), free(c->y), free(c->z), free(c->ws);
}

/* The eval conv of images [off, off + n) into z, with a workspace of wsn
 * floats; compared with their rows of y, bit for bit. */
static void s_conv_sub_batch(s_conv *c, int64_t off, int64_t n, int64_t wsn)
{
    dq_err err = {{0}};
    dq_tensor sx = dq_tensor_view4(c->x + off * c->C * c->H * c->W, n, c->C, c->H, c->W);
    dq_tensor sz = dq_tensor_view4(c->z, n, c->OC, c->OH, c->OW);
    memset(c->z, 0, sizeof(float) * (size_t)(n * c->per));
    assert_int_equal(dq_conv2d_forward_invariant(&sz, &sx, &c->tw, &c->tb, c->p, c->ws, wsn, &err),
                     DQ_OK);
    assert_memory_equal(c->z, c->y + off * c->per, sizeof(float) * (size_t)(n * c->per));
}

/* y = the eval conv, z = the training conv of the whole batch: equal up to
 * rounding. */
static void s_conv_against_training(s_conv *c)
{
    dq_err err = {{0}};
    assert_int_equal(
        dq_conv2d_forward_invariant(&c->ty, &c->tx, &c->tw, &c->tb, c->p, c->ws, c->wsn, &err),
        DQ_OK);
    assert_int_equal(dq_conv2d_forward(&c->tz, &c->tx, &c->tw, &c->tb, c->p, c->ws, c->wst, &err),
                     DQ_OK);
    for (int64_t i = 0; i < c->N * c->per; i++) assert_true(fabsf(c->y[i] - c->z[i]) < 1e-5f);
}

/* The eval conv equals the training conv (up to rounding) and gives every
 * image the same bits in any batch. */
static void test_conv_invariant(void **state)
{
    (void)state;
    dq_rng r;
    dq_rng_seed(&r, 3);
    s_conv c;
    s_conv_make(&c, 9, 5, 9, 7, 3, 11, (dq_conv2d_params){2, 1, 0}, &r);
    s_conv_against_training(&c);
    for (int64_t n = 1; n <= c.N; n += 3)
        for (int64_t off = 0; off + n <= c.N; off += 2) s_conv_sub_batch(&c, off, n, c.wsn);
    /* too small a workspace is an error naming the op */
    dq_err err = {{0}};
    assert_int_equal(dq_conv2d_forward_invariant(&c.ty, &c.tx, &c.tw, &c.tb, c.p, c.ws, 10, &err),
                     DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "conv2d (eval)"));
    s_conv_free(&c);
}

/* The eval conv splits a batch between its threads (and a single image's
 * GEMM columns): any thread count, any workspace and any sub-batch give
 * the bits of one thread. 64 output channels of 64x64 at stride 1 make
 * groups of two images (a 2 MB slab), so a worker runs several groups and
 * the last is partial, and the lowering reads neighbouring pixels; at
 * stride 2 it gathers every other one. */
static void s_conv_threads(int stride)
{
    dq_conv2d_params p = {stride, 1, 0};
    dq_rng r;
    dq_rng_seed(&r, 5);
    const int saved = dq_backend_threads();
    dq_backend_set_threads(1);
    const int64_t ws1 = dq_conv2d_invariant_workspace(7, 4, 64, 64, 3, 3, 64, p);
    dq_backend_set_threads(4);
    s_conv c; /* its workspace planned for 4 threads */
    s_conv_make(&c, 7, 4, 64, 64, 3, 64, p, &r);
    assert_true(c.wsn > ws1);
    dq_err err = {{0}};
    dq_backend_set_threads(1);
    assert_int_equal(
        dq_conv2d_forward_invariant(&c.ty, &c.tx, &c.tw, &c.tb, p, c.ws, c.wsn, &err), DQ_OK);
    for (int t = 2; t <= 4; t++) {
        dq_backend_set_threads(t);
        for (int64_t n = 1; n <= c.N; n++) {
            s_conv_sub_batch(&c, c.N - n, n, c.wsn);
            /* a workspace planned for one thread: that thread, the same bits */
            s_conv_sub_batch(&c, c.N - n, n, ws1);
        }
    }
    dq_backend_set_threads(saved);
    s_conv_free(&c);
}

static void test_conv_invariant_threads(void **state)
{
    (void)state;
    s_conv_threads(1);
    s_conv_threads(2);
}

/* Taps that only ever meet the padding are dropped (a 1x1 plane under a
 * 3x3 kernel keeps its centre tap): still the training conv's values, and
 * still batch-invariant. Shapes: {H, W, kernel, stride, padding}. */
static void test_conv_invariant_cropped(void **state)
{
    (void)state;
    const int64_t shapes[][5] = {{1, 1, 3, 1, 1}, {2, 2, 3, 2, 1}, {2, 2, 5, 1, 2},
                                 {1, 1, 7, 2, 3}, {3, 1, 3, 1, 1}, {2, 2, 3, 1, 1}};
    dq_rng r;
    dq_rng_seed(&r, 6);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t *q = shapes[s];
        s_conv c;
        s_conv_make(&c, 6, 7, q[0], q[1], q[2], 13, (dq_conv2d_params){(int)q[3], (int)q[4], 0},
                    &r);
        s_conv_against_training(&c);
        for (int64_t n = 1; n <= c.N; n++) s_conv_sub_batch(&c, c.N - n, n, c.wsn);
        s_conv_free(&c);
    }
}

/* The eval conv (weights packed once, images lowered straight into the
 * GEMM's panels, several images per GEMM) gives, bit for bit, what
 * dq_im2col + dq_gemm_fixed + one bias addition give for each image on its
 * own. Shapes {C, H, W, kernel, stride, padding, OC}: DeepNN's 28x28 3x3,
 * a 5x5, a 1x1, an unpadded 3x3, a small plane, a strided one. */
static void test_conv_invariant_exact(void **state)
{
    (void)state;
    static const int64_t shapes[][7] = {{3, 28, 28, 3, 1, 1, 13}, {2, 20, 30, 5, 1, 2, 7},
                                        {4, 16, 16, 1, 1, 0, 6},  {3, 14, 17, 3, 1, 0, 8},
                                        {5, 6, 6, 3, 1, 1, 9},    {2, 17, 17, 3, 2, 1, 5}};
    dq_rng r;
    dq_rng_seed(&r, 12);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t *q = shapes[s];
        s_conv c;
        s_conv_make(&c, 3, q[0], q[1], q[2], q[3], q[6], (dq_conv2d_params){(int)q[4], (int)q[5], 0},
                    &r);
        dq_im2col_geom g = dq_im2col_geom_make(c.C, c.H, c.W, c.KS, c.KS, q[4], q[5]);
        const int64_t K = c.C * c.KS * c.KS, P = g.OH * g.OW, OC = c.OC;
        float *col = malloc(sizeof(float) * (size_t)(K * P));
        float *ref = malloc(sizeof(float) * (size_t)c.per);
        assert_non_null(col);
        assert_non_null(ref);
        dq_err err = {{0}};
        assert_int_equal(
            dq_conv2d_forward_invariant(&c.ty, &c.tx, &c.tw, &c.tb, c.p, c.ws, c.wsn, &err), DQ_OK);
        for (int64_t n = 0; n < c.N; n++) {
            dq_im2col(col, P, c.x + n * c.C * c.H * c.W, &g);
            dq_gemm_fixed(OC, P, K, c.w, K, col, P, false, ref, P, false, 1, c.ws, S_WSN);
            for (int64_t o = 0; o < OC; o++)
                for (int64_t i = 0; i < P; i++) ref[o * P + i] += c.b[o];
            for (int64_t i = 0; i < c.per; i++)
                if (memcmp(&ref[i], &c.y[n * c.per + i], sizeof(float)))
                    fail_msg("shape %zu image %lld element %lld: %.9g, expected %.9g", s,
                             (long long)n, (long long)i, c.y[n * c.per + i], ref[i]);
        }
        free(col), free(ref);
        s_conv_free(&c);
    }
}

/* The eval conv's relu epilogue gives dq_relu_forward's values on the
 * plain eval conv's output, bit for bit (zeros, negatives, the grouped
 * path's separate pass). Shapes {C, H, W, kernel, stride, padding, OC,
 * groups}. */
static void test_conv_invariant_relu(void **state)
{
    (void)state;
    static const int64_t shapes[][8] = {{3, 28, 28, 3, 1, 1, 13, 1}, {4, 9, 7, 3, 2, 1, 8, 1},
                                        {6, 8, 8, 3, 1, 1, 6, 6}};
    dq_rng r;
    dq_rng_seed(&r, 13);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t *q = shapes[s];
        s_conv c;
        s_conv_make(&c, 4, q[0], q[1], q[2], q[3], q[6],
                    (dq_conv2d_params){(int)q[4], (int)q[5], 0, (int)q[7]}, &r);
        const int64_t n = c.N * c.per;
        dq_err err = {{0}};
        assert_int_equal(
            dq_conv2d_forward_invariant(&c.ty, &c.tx, &c.tw, &c.tb, c.p, c.ws, c.wsn, &err), DQ_OK);
        assert_int_equal(dq_relu_forward(&c.ty, &c.ty, &err), DQ_OK);
        assert_int_equal(dq_conv2d_forward_invariant_relu(&c.tz, &c.tx, &c.tw, &c.tb, c.p, true,
                                                          c.ws, c.wsn, &err),
                         DQ_OK);
        assert_memory_equal(c.y, c.z, sizeof(float) * (size_t)n);
        int64_t zeros = 0;
        for (int64_t i = 0; i < n; i++) zeros += c.z[i] == 0.0f;
        assert_true(zeros > n / 5 && zeros < n); /* the clamp did something, not everything */
        s_conv_free(&c);
    }
}

/* A matrix B [K, N] (row stride ld) through gemm.h's packer contract. */
typedef struct {
    const float *B;
    int64_t ld;
} s_mat;

static void s_pack_mat(const void *ctx, float *bp, int64_t k0, int64_t kc, int64_t n0,
                       int64_t nc)
{
    const s_mat *m = ctx;
    for (int64_t jr = 0; jr < nc; jr += DQ_GEMM_NR)
        for (int64_t k = 0; k < kc; k++)
            for (int64_t j = 0; j < DQ_GEMM_NR; j++)
                *bp++ = jr + j < nc ? m->B[(k0 + k) * m->ld + n0 + jr + j] : 0.0f;
}

/* A packed once (dq_gemm_pack_a) and B through a packer give dq_gemm_fixed's
 * bits: rows across the 6-row panels and the 72-row blocks, k across the
 * 256 blocks, columns across the slabs of either path; 1 and 3 threads;
 * plain and accumulating. */
static void test_prepacked_a(void **state)
{
    (void)state;
    static const int64_t sz[][3] = {{64, 784, 1152}, {73, 300, 257}, {5, 17, 9}, {150, 520, 40}};
    dq_rng r;
    dq_rng_seed(&r, 11);
    for (size_t i = 0; i < sizeof sz / sizeof sz[0]; i++) {
        const int64_t M = sz[i][0], N = sz[i][1], K = sz[i][2];
        float *A = s_rand(M * K, &r), *B = s_rand(K * N, &r), *C = s_rand(M * N, &r);
        float *D = malloc(sizeof(float) * (size_t)(M * N));
        float *ap = malloc(sizeof(float) * (size_t)dq_gemm_a_floats(M, K));
        assert_non_null(D);
        assert_non_null(ap);
        assert_int_equal(dq_gemm_a_floats(M, K), (M + 5) / 6 * 6 * K);
        float *ws = s_ws();
        dq_gemm_pack_a(ap, A, K, M, K);
        const s_mat m = {B, N};
        for (int acc = 0; acc < 2; acc++)
            for (int t = 1; t <= S_THREADS; t += S_THREADS - 1) {
                memcpy(D, C, sizeof(float) * (size_t)(M * N));
                dq_gemm_fixed_packed(M, N, K, ap, s_pack_mat, &m, D, N, acc, t, ws, S_WSN);
                float *E = malloc(sizeof(float) * (size_t)(M * N));
                assert_non_null(E);
                memcpy(E, C, sizeof(float) * (size_t)(M * N));
                dq_gemm_fixed(M, N, K, A, K, B, N, false, E, N, acc, 1, ws, S_WSN);
                if (memcmp(D, E, sizeof(float) * (size_t)(M * N)))
                    fail_msg("%lldx%lldx%lld acc=%d threads=%d: pre-packed A differs",
                             (long long)M, (long long)N, (long long)K, acc, t);
                free(E);
            }
        free(A), free(B), free(C), free(D), free(ap), free(ws);
    }
}

/* dq_im2col_pack gives the panels the GEMM would pack from dq_im2col's
 * columns, bit for bit: blocks of rows starting mid-tap, column ranges
 * starting mid-image and ending mid-panel. Geometries {C, H, W, k, stride,
 * pad}. */
static void test_im2col_pack(void **state)
{
    (void)state;
    const int64_t geoms[][6] = {{3, 7, 7, 3, 1, 1}, {2, 28, 28, 7, 2, 3}, {5, 4, 3, 3, 2, 1},
                                {4, 1, 1, 1, 1, 0}, {2, 6, 5, 2, 1, 0}};
    dq_rng r;
    dq_rng_seed(&r, 7);
    for (size_t s = 0; s < sizeof geoms / sizeof geoms[0]; s++) {
        const int64_t *q = geoms[s], G = 5;
        dq_im2col_geom g = dq_im2col_geom_make(q[0], q[1], q[2], q[3], q[3], q[4], q[5]);
        const int64_t K = g.C * g.KH * g.KW, P = g.OH * g.OW, ld = G * P, img = g.C * g.H * g.W;
        assert_true(dq_im2col_pack_fits(&g));
        float *x = s_rand(G * img, &r), *col = malloc(sizeof(float) * (size_t)(K * ld));
        float *bp = malloc(sizeof(float) * (size_t)(K * (ld + 16)));
        assert_non_null(col);
        assert_non_null(bp);
        for (int64_t i = 0; i < G; i++) dq_im2col(col + i * P, ld, x + i * img, &g);
        const int64_t ranges[][4] = {{0, K, 0, ld}, {1, K - 1, P - 1, ld - P + 3},
                                     {K / 2, K - K / 2, 3, 17}};
        for (int t = 0; t < 3; t++) {
            const int64_t k0 = ranges[t][0], kc = ranges[t][1], n0 = ranges[t][2];
            const int64_t nc = n0 + ranges[t][3] <= ld ? ranges[t][3] : ld - n0;
            dq_im2col_pack(bp, x, &g, k0, kc, n0, nc);
            for (int64_t jr = 0; jr < nc; jr += 16)
                for (int64_t k = 0; k < kc; k++)
                    for (int64_t j = 0; j < 16; j++) {
                        float want = jr + j < nc ? col[(k0 + k) * ld + n0 + jr + j] : 0.0f;
                        float got = bp[jr * kc + k * 16 + j];
                        assert_memory_equal(&got, &want, sizeof got);
                    }
        }
        free(x), free(col), free(bp);
    }
}

static void test_linear_invariant(void **state)
{
    (void)state;
    const int64_t N = 45, I = 37, O = 19;
    dq_rng r;
    dq_rng_seed(&r, 4);
    float *x = s_rand(N * I, &r), *w = s_rand(O * I, &r), *b = s_rand(O, &r);
    float *y = malloc(sizeof(float) * (size_t)(N * O)), *z = malloc(sizeof(float) * (size_t)(N * O));
    assert_non_null(y);
    assert_non_null(z);
    int64_t wsn = dq_linear_invariant_workspace();
    float *ws = aligned_alloc(64, sizeof(float) * (size_t)wsn);
    assert_non_null(ws);
    dq_err err = {{0}};
    dq_tensor tx = dq_tensor_view2(x, N, I), tw = dq_tensor_view2(w, O, I);
    dq_tensor ty = dq_tensor_view2(y, N, O), tz = dq_tensor_view2(z, N, O);
    int64_t bs[1] = {O};
    dq_tensor tb = dq_tensor_view(b, 1, bs);
    assert_int_equal(dq_linear_forward_invariant(&ty, &tx, &tw, &tb, ws, wsn, &err), DQ_OK);
    assert_int_equal(dq_linear_forward(&tz, &tx, &tw, &tb, &err), DQ_OK);
    for (int64_t i = 0; i < N * O; i++) assert_true(fabsf(y[i] - z[i]) < 1e-5f);
    for (int64_t n = 1; n <= N; n += 4)
        for (int64_t off = 0; off + n <= N; off += 5) {
            dq_tensor sx = dq_tensor_view2(x + off * I, n, I), sz = dq_tensor_view2(z, n, O);
            assert_int_equal(dq_linear_forward_invariant(&sz, &sx, &tw, &tb, ws, wsn, &err), DQ_OK);
            assert_memory_equal(z, y + off * O, sizeof(float) * (size_t)(n * O));
        }
    free(x), free(w), free(b), free(y), free(z), free(ws);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_k_zero),
        cmocka_unit_test(test_position_invariance),
        cmocka_unit_test(test_thread_count_invariance),
        cmocka_unit_test(test_conv_invariant),
        cmocka_unit_test(test_conv_invariant_threads),
        cmocka_unit_test(test_conv_invariant_cropped),
        cmocka_unit_test(test_conv_invariant_exact),
        cmocka_unit_test(test_conv_invariant_relu),
        cmocka_unit_test(test_prepacked_a),
        cmocka_unit_test(test_im2col_pack),
        cmocka_unit_test(test_linear_invariant),
    };
    return cmocka_run_group_tests_name("gemm", tests, NULL, NULL);
}
