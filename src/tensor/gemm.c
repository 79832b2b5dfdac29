/* gemm.c - the position-invariant GEMM of gemm.h.
 *
 * BLIS's loop nest, reduced to what the eval forward needs: columns in
 * NC-wide slabs, k in KC-long blocks (B's block packed once into
 * [NR]-wide micro-panels), rows in MC-tall blocks (A's block packed into
 * [MR]-tall micro-panels), then MR x NR micro-tiles. Packing pads the last
 * micro-panel of each with zeros, so every tile runs the one full-size
 * kernel and an element's arithmetic never depends on where it sits; edge
 * tiles go through a small buffer and only their valid part is written.
 */
#include "tensor/gemm.h"

#include <pthread.h>
#include <string.h>

/* DQ_PORTABLE_KERNELS: the portable C kernel only, as on a machine without
 * AVX2 (tests/test_gemm_portable builds this file so, to test that path). */
#if (defined(__x86_64__) || defined(__i386__)) && !defined(DQ_PORTABLE_KERNELS)
#include <immintrin.h>
#define S_HAVE_X86 1
#endif

#define S_MR 6
#define S_NR DQ_GEMM_NR
#define S_MC 72   /* A block: 72 x 256 floats = 72 KB, stays in L2 */
#define S_KC 256
#define S_NC 2048 /* B block: 256 x 2048 floats = 2 MB */
/* With A packed once beforehand (dq_gemm_pack_a) nothing is repacked per
 * column slab, so the slab can shrink until B's block (256 KB) stays in L2
 * between the packing and the kernels; with 2048 it went out to L3 and
 * back, and the packing's stores missed (DeepNN's 28x28 layers: 12 % of the
 * forward in the packer). */
#define S_NC_PREPACKED 256

/* Packing space of one thread, a multiple of 16 floats (64 bytes). */
#define S_THREAD_WS ((int64_t)S_MC * S_KC + (int64_t)S_KC * S_NC)

int64_t dq_gemm_fixed_workspace(int threads)
{
    return S_THREAD_WS * (threads < 1 ? 1 : threads);
}

/* Ap[panel][k][i] = A[ir + i][k] for the mc x kc block at A (0 past mc). */
static void s_pack_a(float *restrict ap, const float *restrict a, int64_t lda, int64_t mc,
                     int64_t kc)
{
    for (int64_t ir = 0; ir < mc; ir += S_MR) {
        int64_t mr = mc - ir < S_MR ? mc - ir : S_MR;
        for (int64_t k = 0; k < kc; k++) {
            for (int64_t i = 0; i < mr; i++) ap[i] = a[(ir + i) * lda + k];
            for (int64_t i = mr; i < S_MR; i++) ap[i] = 0.0f;
            ap += S_MR;
        }
    }
}

int64_t dq_gemm_a_floats(int64_t M, int64_t K)
{
    return (M + S_MR - 1) / S_MR * S_MR * (K > 0 ? K : 0);
}

/* Block pc (k in [pc, pc + kc)) starts at pc * Mp; in it, the micro-panel
 * of rows [ir, ir + MR) at ir * kc: s_pack_a's layout, block after block. */
void dq_gemm_pack_a(float *ap, const float *A, int64_t lda, int64_t M, int64_t K)
{
    const int64_t Mp = (M + S_MR - 1) / S_MR * S_MR;
    for (int64_t pc = 0; pc < K; pc += S_KC)
        s_pack_a(ap + pc * Mp, A + pc, lda, M, K - pc < S_KC ? K - pc : S_KC);
}

/* Bp[panel][k][j] = op(B)[k][jr + j] for the kc x nc block (0 past nc). */
static void s_pack_b(float *restrict bp, const float *restrict b, int64_t ldb, bool trans,
                     int64_t kc, int64_t nc)
{
    for (int64_t jr = 0; jr < nc; jr += S_NR) {
        int64_t nr = nc - jr < S_NR ? nc - jr : S_NR;
        if (!trans && nr == S_NR) { /* constant size: inlined, not a memcpy call per row */
            for (int64_t k = 0; k < kc; k++, bp += S_NR)
                memcpy(bp, b + k * ldb + jr, sizeof(float) * S_NR);
        } else if (!trans) {
            for (int64_t k = 0; k < kc; k++) {
                const float *row = b + k * ldb + jr;
                for (int64_t j = 0; j < nr; j++) bp[j] = row[j];
                for (int64_t j = nr; j < S_NR; j++) bp[j] = 0.0f;
                bp += S_NR;
            }
        } else {
            for (int64_t k = 0; k < kc; k++) {
                for (int64_t j = 0; j < nr; j++) bp[j] = b[(jr + j) * ldb + k];
                for (int64_t j = nr; j < S_NR; j++) bp[j] = 0.0f;
                bp += S_NR;
            }
        }
    }
}

/* One MR x NR tile: c (row stride ldc) = acc, or c + acc when add. acc is a
 * chain of multiply-adds over k in order, the same for every element. */
static void s_kernel_c(int64_t kc, const float *restrict a, const float *restrict b,
                       float *restrict c, int64_t ldc, bool add)
{
    float acc[S_MR][S_NR] = {{0}};
    for (int64_t k = 0; k < kc; k++, a += S_MR, b += S_NR)
        for (int i = 0; i < S_MR; i++)
            for (int j = 0; j < S_NR; j++) acc[i][j] += a[i] * b[j];
    for (int i = 0; i < S_MR; i++)
        for (int j = 0; j < S_NR; j++) c[i * ldc + j] = add ? c[i * ldc + j] + acc[i][j]
                                                             : acc[i][j];
}

#ifdef S_HAVE_X86
__attribute__((target("avx2,fma"))) static void
s_kernel_avx2(int64_t kc, const float *restrict a, const float *restrict b, float *restrict c,
              int64_t ldc, bool add)
{
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
#pragma GCC unroll 4
    for (int64_t k = 0; k < kc; k++, a += S_MR, b += S_NR) {
        __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8), x;
        x = _mm256_broadcast_ss(a + 0);
        c00 = _mm256_fmadd_ps(x, b0, c00);
        c01 = _mm256_fmadd_ps(x, b1, c01);
        x = _mm256_broadcast_ss(a + 1);
        c10 = _mm256_fmadd_ps(x, b0, c10);
        c11 = _mm256_fmadd_ps(x, b1, c11);
        x = _mm256_broadcast_ss(a + 2);
        c20 = _mm256_fmadd_ps(x, b0, c20);
        c21 = _mm256_fmadd_ps(x, b1, c21);
        x = _mm256_broadcast_ss(a + 3);
        c30 = _mm256_fmadd_ps(x, b0, c30);
        c31 = _mm256_fmadd_ps(x, b1, c31);
        x = _mm256_broadcast_ss(a + 4);
        c40 = _mm256_fmadd_ps(x, b0, c40);
        c41 = _mm256_fmadd_ps(x, b1, c41);
        x = _mm256_broadcast_ss(a + 5);
        c50 = _mm256_fmadd_ps(x, b0, c50);
        c51 = _mm256_fmadd_ps(x, b1, c51);
    }
    __m256 r[S_MR][2] = {{c00, c01}, {c10, c11}, {c20, c21},
                         {c30, c31}, {c40, c41}, {c50, c51}};
    for (int i = 0; i < S_MR; i++) {
        float *ci = c + i * ldc;
        if (add) {
            r[i][0] = _mm256_add_ps(_mm256_loadu_ps(ci), r[i][0]);
            r[i][1] = _mm256_add_ps(_mm256_loadu_ps(ci + 8), r[i][1]);
        }
        _mm256_storeu_ps(ci, r[i][0]);
        _mm256_storeu_ps(ci + 8, r[i][1]);
    }
}
#endif

typedef void (*s_kernel_fn)(int64_t, const float *, const float *, float *, int64_t, bool);

static s_kernel_fn s_pick_kernel(void)
{
#ifdef S_HAVE_X86
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return s_kernel_avx2;
#endif
    return s_kernel_c;
}

/* B given as a matrix: the packer of dq_gemm_fixed. */
typedef struct {
    const float *B;
    int64_t ldb;
    bool trans_b;
} s_matrix_b;

static void s_pack_matrix_b(const void *ctx, float *bp, int64_t k0, int64_t kc, int64_t n0,
                            int64_t nc)
{
    const s_matrix_b *m = ctx;
    s_pack_b(bp, m->trans_b ? m->B + n0 * m->ldb + k0 : m->B + k0 * m->ldb + n0, m->ldb,
             m->trans_b, kc, nc);
}

/* One thread's share: columns [n0, n0 + N) of B, into C (already offset
 * to column n0). A is either packed here block by block (ap_all NULL) or
 * was packed whole by dq_gemm_pack_a. */
static void s_gemm_cols(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                        const float *ap_all, dq_gemm_pack_b_fn pack_b, const void *ctx,
                        int64_t n0, float *C, int64_t ldc, bool accumulate, float *ws)
{
    s_kernel_fn kernel = s_pick_kernel();
    const int64_t Mp = (M + S_MR - 1) / S_MR * S_MR, NC = ap_all ? S_NC_PREPACKED : S_NC;
    float *ap = ws, *bp = ws + (int64_t)S_MC * S_KC;
    float tile[S_MR * S_NR];
    for (int64_t jc = 0; jc < N; jc += NC) {
        int64_t nc = N - jc < NC ? N - jc : NC;
        for (int64_t pc = 0; pc < K; pc += S_KC) {
            int64_t kc = K - pc < S_KC ? K - pc : S_KC;
            bool add = accumulate || pc > 0;
            pack_b(ctx, bp, pc, kc, n0 + jc, nc);
            for (int64_t ic = 0; ic < M; ic += S_MC) {
                int64_t mc = M - ic < S_MC ? M - ic : S_MC;
                const float *ab = ap_all ? ap_all + pc * Mp + ic * kc : ap;
                if (!ap_all) s_pack_a(ap, A + ic * lda + pc, lda, mc, kc);
                for (int64_t jr = 0; jr < nc; jr += S_NR) {
                    int64_t nr = nc - jr < S_NR ? nc - jr : S_NR;
                    for (int64_t ir = 0; ir < mc; ir += S_MR) {
                        int64_t mr = mc - ir < S_MR ? mc - ir : S_MR;
                        float *c = C + (ic + ir) * ldc + jc + jr;
                        const float *pa = ab + ir * kc, *pb = bp + jr * kc;
                        if (mr == S_MR && nr == S_NR) {
                            kernel(kc, pa, pb, c, ldc, add);
                            continue;
                        }
                        /* Edge tile: the same kernel into a buffer, then
                         * the valid part, added exactly as the kernel adds. */
                        kernel(kc, pa, pb, tile, S_NR, false);
                        for (int64_t i = 0; i < mr; i++)
                            for (int64_t j = 0; j < nr; j++)
                                c[i * ldc + j] = add ? c[i * ldc + j] + tile[i * S_NR + j]
                                                     : tile[i * S_NR + j];
                    }
                }
            }
        }
    }
}

typedef struct {
    int64_t M, N, K, lda, n0, ldc;
    const float *A, *ap;
    dq_gemm_pack_b_fn pack_b;
    const void *ctx;
    float *C, *ws;
    bool accumulate;
} s_job;

static void *s_run_job(void *arg)
{
    const s_job *j = arg;
    s_gemm_cols(j->M, j->N, j->K, j->A, j->lda, j->ap, j->pack_b, j->ctx, j->n0, j->C, j->ldc,
                j->accumulate, j->ws);
    return NULL;
}

/* The column split over threads shared by both entry points; A is raw
 * (lda) when ap is NULL, else packed by dq_gemm_pack_a. */
static void s_gemm(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                   const float *ap, dq_gemm_pack_b_fn pack_b, const void *ctx, float *C,
                   int64_t ldc, bool accumulate, int threads, float *ws, int64_t ws_floats)
{
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        if (!accumulate)
            for (int64_t i = 0; i < M; i++) memset(C + i * ldc, 0, (size_t)N * sizeof(float));
        return;
    }
    /* Threads split the columns in whole micro-panels; each column is
     * computed by one thread with the same kernel, so the split never
     * changes a bit. Small products stay on one thread. */
    int64_t T = threads < 1 ? 1 : threads;
    if (T > ws_floats / S_THREAD_WS) T = ws_floats / S_THREAD_WS;
    if (T > (N + S_NR - 1) / S_NR) T = (N + S_NR - 1) / S_NR;
    if ((double)M * (double)N * (double)K < 4e6) T = 1;
    if (T > DQ_GEMM_MAX_THREADS) T = DQ_GEMM_MAX_THREADS;
    if (T < 1) T = 1;
    s_job jobs[DQ_GEMM_MAX_THREADS];
    pthread_t tid[DQ_GEMM_MAX_THREADS];
    bool started[DQ_GEMM_MAX_THREADS] = {false};
    int64_t panels = (N + S_NR - 1) / S_NR, c0 = 0;
    for (int64_t t = 0; t < T; t++) {
        int64_t np = panels / T + (t < panels % T ? 1 : 0);
        int64_t c1 = c0 + np * S_NR < N ? c0 + np * S_NR : N;
        jobs[t] = (s_job){M, c1 - c0, K, lda, c0, ldc, A, ap, pack_b, ctx, C + c0,
                          ws + t * S_THREAD_WS, accumulate};
        c0 = c1;
    }
    /* A thread that cannot be started has its share done here instead:
     * slower, never different. */
    for (int64_t t = 1; t < T; t++)
        started[t] = pthread_create(&tid[t], NULL, s_run_job, &jobs[t]) == 0;
    s_run_job(&jobs[0]);
    for (int64_t t = 1; t < T; t++) {
        if (started[t]) pthread_join(tid[t], NULL);
        else s_run_job(&jobs[t]);
    }
}

void dq_gemm_fixed(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                   const float *B, int64_t ldb, bool trans_b, float *C, int64_t ldc,
                   bool accumulate, int threads, float *ws, int64_t ws_floats)
{
    const s_matrix_b m = {B, ldb, trans_b};
    s_gemm(M, N, K, A, lda, NULL, s_pack_matrix_b, &m, C, ldc, accumulate, threads, ws,
           ws_floats);
}

void dq_gemm_fixed_packed(int64_t M, int64_t N, int64_t K, const float *ap,
                          dq_gemm_pack_b_fn pack_b, const void *ctx, float *C, int64_t ldc,
                          bool accumulate, int threads, float *ws, int64_t ws_floats)
{
    s_gemm(M, N, K, NULL, 0, ap, pack_b, ctx, C, ldc, accumulate, threads, ws, ws_floats);
}
