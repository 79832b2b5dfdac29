/* im2col.c - the one window-lowering routine pair shared by the conv layers.
 *
 * Each column-matrix row (c, kh, kw) is written as a sequence of output rows:
 * zeros where the tap falls into the top/bottom padding, and for the others a
 * left zero run, a copy of the input row (contiguous when stride is 1, so
 * gcc vectorises it) and a right zero run. The valid ranges come from
 * dq_im2col_range, computed once per kernel tap instead of a bounds test per
 * element. When stride is 1 and the output is as wide as the input ("same"
 * padding, the common 3x3/pad 1 case) a whole row is one shifted copy of the
 * input plane plus a few zeroed edge columns, which avoids a short copy per
 * output row.
 */
#include "tensor/im2col.h"

#include <string.h>

dq_im2col_geom dq_im2col_geom_make(int64_t C, int64_t H, int64_t W, int64_t KH, int64_t KW,
                                   int64_t stride, int64_t pad)
{
    dq_im2col_geom g = {.C = C, .H = H, .W = W, .KH = KH, .KW = KW,
                        .stride = stride, .pad = pad};
    g.OH = stride > 0 && H + 2 * pad >= KH ? (H + 2 * pad - KH) / stride + 1 : 0;
    g.OW = stride > 0 && W + 2 * pad >= KW ? (W + 2 * pad - KW) / stride + 1 : 0;
    return g;
}

void dq_im2col_range(int64_t *lo, int64_t *hi, int64_t in, int64_t out, int64_t k,
                     int64_t stride, int64_t pad)
{
    int64_t first = pad - k;          /* need o*stride >= pad - k */
    int64_t last = in - 1 + pad - k;  /* need o*stride <= in - 1 + pad - k */
    int64_t l = first <= 0 ? 0 : (first + stride - 1) / stride;
    int64_t h = last < 0 ? 0 : last / stride + 1;
    if (h > out) h = out;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

/* Clamps an output-row range to the band [oh0, oh1). */
static void s_clamp(int64_t *lo, int64_t *hi, int64_t oh0, int64_t oh1)
{
    if (*lo < oh0) *lo = oh0;
    if (*hi > oh1) *hi = oh1;
    if (*lo > *hi) *lo = *hi;
}

/* Zeroes the entries of a "same width" column row whose tap wrapped into a
 * neighbouring input row, so the row can be added back as one contiguous
 * run. Column 0 of row0 is output row oh0. */
static void s_zero_wrapped(float *row0, int64_t W, int64_t oh0, int64_t oh_lo, int64_t oh_hi,
                           int64_t ow_lo, int64_t ow_hi)
{
    for (int64_t oh = oh_lo; oh < oh_hi; oh++) {
        float *row = row0 + (oh - oh0) * W;
        if (oh > oh_lo)
            for (int64_t ow = 0; ow < ow_lo; ow++) row[ow] = 0.0f;
        if (oh < oh_hi - 1)
            for (int64_t ow = ow_hi; ow < W; ow++) row[ow] = 0.0f;
    }
}

/* One column row for the "same width, stride 1" case: col[p] = src[p + d]
 * for every valid output position, where d is the constant plane offset of
 * the tap. Positions whose tap wrapped into a neighbouring input row are
 * zeroed afterwards. Column 0 of dst is output row oh0. */
static void s_row_same(float *dst, const float *src, const dq_im2col_geom *g, int64_t kh,
                       int64_t kw, int64_t oh0, int64_t oh1, int64_t oh_lo, int64_t oh_hi,
                       int64_t ow_lo, int64_t ow_hi)
{
    const int64_t W = g->W, base = oh0 * W, n = (oh1 - oh0) * W;
    if (oh_lo >= oh_hi || ow_lo >= ow_hi) {
        memset(dst, 0, (size_t)n * sizeof(float));
        return;
    }
    const int64_t d = (kh - g->pad) * W + (kw - g->pad);
    const int64_t begin = oh_lo * W + ow_lo - base, end = (oh_hi - 1) * W + ow_hi - base;
    memset(dst, 0, (size_t)begin * sizeof(float));
    memcpy(dst + begin, src + base + begin + d, (size_t)(end - begin) * sizeof(float));
    memset(dst + end, 0, (size_t)(n - end) * sizeof(float));
    s_zero_wrapped(dst, W, oh0, oh_lo, oh_hi, ow_lo, ow_hi);
}

void dq_im2col(float *col, int64_t ld, const float *img, const dq_im2col_geom *g, int64_t oh0,
               int64_t oh1)
{
    const int64_t H = g->H, W = g->W, OW = g->OW, s = g->stride;
    const int same = s == 1 && OW == W;
    for (int64_t c = 0; c < g->C; c++) {
        const float *src = img + c * H * W;
        for (int64_t kh = 0; kh < g->KH; kh++) {
            int64_t oh_lo, oh_hi;
            dq_im2col_range(&oh_lo, &oh_hi, H, g->OH, kh, s, g->pad);
            s_clamp(&oh_lo, &oh_hi, oh0, oh1);
            for (int64_t kw = 0; kw < g->KW; kw++) {
                float *dst = col + ((c * g->KH + kh) * g->KW + kw) * ld;
                int64_t ow_lo, ow_hi;
                dq_im2col_range(&ow_lo, &ow_hi, W, OW, kw, s, g->pad);
                if (same) {
                    s_row_same(dst, src, g, kh, kw, oh0, oh1, oh_lo, oh_hi, ow_lo, ow_hi);
                    continue;
                }
                const int64_t off = kw - g->pad; /* input column = ow*s + off */
                memset(dst, 0, (size_t)((oh_lo - oh0) * OW) * sizeof(float));
                for (int64_t oh = oh_lo; oh < oh_hi; oh++) {
                    float *d = dst + (oh - oh0) * OW;
                    const float *srow = src + (oh * s - g->pad + kh) * W;
                    for (int64_t ow = 0; ow < ow_lo; ow++) d[ow] = 0.0f;
                    if (s == 1)
                        for (int64_t ow = ow_lo; ow < ow_hi; ow++) d[ow] = srow[ow + off];
                    else
                        for (int64_t ow = ow_lo; ow < ow_hi; ow++) d[ow] = srow[ow * s + off];
                    for (int64_t ow = ow_hi; ow < OW; ow++) d[ow] = 0.0f;
                }
                memset(dst + (oh_hi - oh0) * OW, 0, (size_t)((oh1 - oh_hi) * OW) * sizeof(float));
            }
        }
    }
}

void dq_col2im_add(float *img, float *col, int64_t ld, const dq_im2col_geom *g, int64_t oh0,
                   int64_t oh1)
{
    const int64_t H = g->H, W = g->W, OW = g->OW, s = g->stride;
    const int same = s == 1 && OW == W;
    for (int64_t c = 0; c < g->C; c++) {
        float *dst = img + c * H * W;
        for (int64_t kh = 0; kh < g->KH; kh++) {
            int64_t oh_lo, oh_hi;
            dq_im2col_range(&oh_lo, &oh_hi, H, g->OH, kh, s, g->pad);
            s_clamp(&oh_lo, &oh_hi, oh0, oh1);
            for (int64_t kw = 0; kw < g->KW; kw++) {
                float *src = col + ((c * g->KH + kh) * g->KW + kw) * ld;
                int64_t ow_lo, ow_hi;
                dq_im2col_range(&ow_lo, &ow_hi, W, OW, kw, s, g->pad);
                if (oh_lo >= oh_hi || ow_lo >= ow_hi) continue;
                const int64_t off = kw - g->pad;
                if (same) {
                    /* One run over the plane; wrapped entries now add 0. */
                    s_zero_wrapped(src, W, oh0, oh_lo, oh_hi, ow_lo, ow_hi);
                    const int64_t base = oh0 * W, d = (kh - g->pad) * W + off;
                    const int64_t begin = oh_lo * W + ow_lo - base;
                    const int64_t end = (oh_hi - 1) * W + ow_hi - base;
                    for (int64_t i = begin; i < end; i++) dst[base + d + i] += src[i];
                    continue;
                }
                for (int64_t oh = oh_lo; oh < oh_hi; oh++) {
                    const float *srow = src + (oh - oh0) * OW;
                    float *drow = dst + (oh * s - g->pad + kh) * W;
                    if (s == 1)
                        for (int64_t ow = ow_lo; ow < ow_hi; ow++) drow[ow + off] += srow[ow];
                    else
                        for (int64_t ow = ow_lo; ow < ow_hi; ow++) drow[ow * s + off] += srow[ow];
                }
            }
        }
    }
}
