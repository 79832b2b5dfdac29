/* im2col.h - lowering of convolution windows to GEMM columns, and back.
 *
 * Every layer that slides a window (conv2d forward and backward) shares this
 * one pair of routines and the stride helper below instead of carrying its
 * own index arithmetic. For one image [C,H,W] the column matrix has
 * C*KH*KW rows (ordered c, kh, kw - the layout of a PyTorch weight row) and
 * OH*OW columns; a caller lowering a group of G images side by side passes
 * col + g*OH*OW and a row stride ld = G*OH*OW, so one GEMM covers the group.
 * Zero padding is written explicitly, so a column buffer needs no clearing.
 */
#ifndef DQ_IM2COL_H
#define DQ_IM2COL_H

#include <stdbool.h>
#include <stdint.h>

/* Shape of one sliding-window pass over a single image. */
typedef struct {
    int64_t C, H, W;   /* input plane */
    int64_t KH, KW;    /* window */
    int64_t OH, OW;    /* output plane */
    int64_t stride, pad;
} dq_im2col_geom;

/* Fills a geometry; OH/OW follow (in + 2*pad - k)/stride + 1 and are <= 0
 * when the window does not fit. */
dq_im2col_geom dq_im2col_geom_make(int64_t C, int64_t H, int64_t W, int64_t KH, int64_t KW,
                                   int64_t stride, int64_t pad);

/* The stride helper: output positions o in [*lo, *hi) are those whose tap k
 * lands inside the input, i.e. 0 <= o*stride - pad + k < in (clamped to
 * [0, out)). Empty ranges come back as lo == hi. */
void dq_im2col_range(int64_t *lo, int64_t *hi, int64_t in, int64_t out, int64_t k,
                     int64_t stride, int64_t pad);

/* col[r*ld + p] = img[c, oh*s-pad+kh, ow*s-pad+kw] (0 outside), for row
 * r = (c*KH + kh)*KW + kw and column p = oh*OW + ow. img is [C,H,W]. */
void dq_im2col(float *col, int64_t ld, const float *img, const dq_im2col_geom *g);

/* The adjoint of dq_im2col: ADDS every column entry back
 * into the image position it was read from (padding entries are dropped).
 * col is scratch: entries that belong to padding may be overwritten with 0,
 * which lets the common stride-1 case add a whole row in one run. */
void dq_col2im_add(float *img, float *col, int64_t ld, const dq_im2col_geom *g);

/* Columns of a packed GEMM micro-panel (tensor/gemm.h's DQ_GEMM_NR). */
#define DQ_IM2COL_NR 16

/* Whether dq_im2col_pack's 32-bit plane coordinates hold for g (planes,
 * kernels and padding below 2^29). */
bool dq_im2col_pack_fits(const dq_im2col_geom *g);

/* The lowered columns of images laid side by side (column n = image n / P,
 * position n % P, as dq_im2col with col + i*P) packed straight into GEMM
 * micro-panels (gemm.h dq_gemm_pack_b_fn) for rows [k0, k0 + kc) and
 * columns [n0, n0 + nc); imgs is the first image [C,H,W] of the side-by-side
 * set. The same values as dq_im2col followed by the GEMM's packing, without
 * writing and re-reading a column matrix (the small late planes of a ResNet
 * spent more in the lowering's many short copies than in the GEMM). */
void dq_im2col_pack(float *bp, const float *imgs, const dq_im2col_geom *g, int64_t k0,
                    int64_t kc, int64_t n0, int64_t nc);

#endif
