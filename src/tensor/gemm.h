/* gemm.h - a position-invariant single-precision GEMM for the eval forward.
 *
 * The teacher cache and the bit-identical promise need a sample's outputs to
 * be a function of the sample alone. OpenBLAS does not give that: its
 * kernels treat rows and columns differently by their position in the
 * matrix (edge kernels, thread partitions; measured on the Haswell/Zen
 * kernels of 0.3.21 at 1 and 2 threads: a row's result changes with its
 * row index in a 32-row GEMM). This GEMM computes every element of C with
 * the same arithmetic, whatever its row or column: packed panels are
 * zero-padded to whole micro-tiles, every micro-tile runs the same kernel,
 * each element is a chain of multiply-adds over k = 0..K-1 in order, split
 * into fixed KC-long blocks that are added to C one after another. So an
 * image may sit in any column of a grouped convolution, or a sample in any
 * row of a linear layer, and come out bitwise the same - which lets the eval
 * forward batch images into wide GEMMs again (speed) without giving up
 * invariance. Thread count does not change the result either: threads
 * split the columns in whole micro-panels, each computed as on one thread.
 *
 * Kernel: 6x16 micro-tiles with AVX2+FMA where the CPU has them (chosen per
 * call with __builtin_cpu_supports), else a portable C kernel with the same
 * loop order (a different machine type may give different bits; one
 * machine always gives the same).
 */
#ifndef DQ_GEMM_H
#define DQ_GEMM_H

#include <stdbool.h>
#include <stdint.h>

#define DQ_GEMM_MAX_THREADS 64
#define DQ_GEMM_NR 16 /* columns of a packed micro-panel of B */

/* Floats of packing workspace for up to `threads` threads. */
int64_t dq_gemm_fixed_workspace(int threads);

/* C[M,N] = A[M,K] x op(B) (accumulate: C += ...), row-major with leading
 * dimensions lda, ldb, ldc. op(B) is B [K,N], or with trans_b B^T where B is
 * given as [N,K]. Runs on up to `threads` threads (fewer when ws_floats holds
 * less than their workspace or the product is small; a thread that cannot be
 * started costs time, not correctness); the result is the same for any
 * count. M, N, K >= 0 (K == 0 leaves C, or zeroes it without accumulate). */
void dq_gemm_fixed(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                   const float *B, int64_t ldb, bool trans_b, float *C, int64_t ldc,
                   bool accumulate, int threads, float *ws, int64_t ws_floats);

/* Packs rows [k0, k0 + kc) and columns [n0, n0 + nc) of op(B) into
 * micro-panels of DQ_GEMM_NR columns, k-major inside each:
 * bp[(jr / NR) * kc * NR + k * NR + j] = op(B)[k0 + k][n0 + jr + j], 0 for
 * columns past nc. kc <= 256, nc <= 2048. */
typedef void (*dq_gemm_pack_b_fn)(const void *ctx, float *bp, int64_t k0, int64_t kc,
                                  int64_t n0, int64_t nc);

/* A packed once for dq_gemm_fixed_packed: dq_gemm_a_floats(M, K) floats
 * at ap (64-byte alignment helps, not needed). A caller that multiplies the
 * same A by many B's (an eval conv's weights by each group of images) packs
 * it once and shares it, read-only, between its threads. */
int64_t dq_gemm_a_floats(int64_t M, int64_t K);
void dq_gemm_pack_a(float *ap, const float *A, int64_t lda, int64_t M, int64_t K);

/* dq_gemm_fixed with A packed by dq_gemm_pack_a and B known only through its
 * packer, e.g. an image whose lowered columns are packed straight from the
 * pixels (conv2d_invariant.c) without a column matrix in between. The
 * packer is called from up to `threads` threads at once, on disjoint column
 * ranges. ws: dq_gemm_fixed_workspace(threads) as for dq_gemm_fixed. Same
 * arithmetic, so the same bits as dq_gemm_fixed on the A and B given. */
void dq_gemm_fixed_packed(int64_t M, int64_t N, int64_t K, const float *ap,
                          dq_gemm_pack_b_fn pack_b, const void *ctx, float *C, int64_t ldc,
                          bool accumulate, int threads, float *ws, int64_t ws_floats);

#endif
