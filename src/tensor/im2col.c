/* im2col.c - the one window-lowering routine pair shared by the conv layers.
 *
 * Each column-matrix row (c, kh, kw) is written output row by output row:
 * zeros where the tap falls into the top/bottom padding, and otherwise a
 * left zero run, a copy of the input row and a right zero run. The valid
 * ranges come from dq_im2col_range, computed once per kernel tap instead of
 * a bounds test per element.
 *
 * Fast path, measured on the teacher's 3x3/pad 1 layers: when stride is 1
 * and the output is as wide as the input ("same" width), a whole column row
 * is ONE shifted copy of the input plane, plus a few zeroed entries where the
 * tap wrapped into the neighbouring input row. This replaces a 28-float copy
 * per output row; col2im does the mirror image (zero the wrapped entries of
 * the scratch column, then one contiguous add), which cut col2im on the
 * 128->64 28x28 layer from 66 ms to 22 ms for a batch of 128.
 */
#include "tensor/im2col.h"

#include <stdint.h>
#include <string.h>

/* DQ_PORTABLE_KERNELS: the portable C packer only, as on a machine without
 * AVX2 (tests/test_gemm_portable builds this file so, to test that path). */
#if (defined(__x86_64__) || defined(__i386__)) && !defined(DQ_PORTABLE_KERNELS)
#define S_HAVE_X86 1
#else
#define S_HAVE_X86 0
#endif

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
    int64_t first = pad - k;         /* need o*stride >= pad - k */
    int64_t last = in - 1 + pad - k; /* need o*stride <= in - 1 + pad - k */
    int64_t l = first <= 0 ? 0 : (first + stride - 1) / stride;
    int64_t h = last < 0 ? 0 : last / stride + 1;
    if (h > out) h = out;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

/* dst[i] += src[i]. Written in blocks of 8 so that gcc -O2 (whose very
 * cheap cost model skips loops that need an epilogue) still vectorises it. */
static void s_add(float *restrict dst, const float *restrict src, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) dst[i + k] += src[i + k];
    for (; i < n; i++) dst[i] += src[i];
}

/* The "same width" layout of one tap: col[p] = plane[p + d] for p in
 * [begin, end), the valid output rows [oh_lo, oh_hi) and columns
 * [ow_lo, ow_hi). Entries inside that run whose tap wrapped into a
 * neighbouring input row are zeroed by s_zero_wrapped. */
typedef struct {
    int64_t d, begin, end;
    int64_t oh_lo, oh_hi, ow_lo, ow_hi;
} s_run;

static s_run s_same_run(const dq_im2col_geom *g, int64_t kh, int64_t kw)
{
    s_run r;
    dq_im2col_range(&r.oh_lo, &r.oh_hi, g->H, g->OH, kh, 1, g->pad);
    dq_im2col_range(&r.ow_lo, &r.ow_hi, g->W, g->OW, kw, 1, g->pad);
    r.d = (kh - g->pad) * g->W + (kw - g->pad);
    if (r.oh_lo >= r.oh_hi || r.ow_lo >= r.ow_hi) { /* tap never inside */
        r.begin = r.end = r.oh_lo = r.oh_hi = 0;
        return r;
    }
    r.begin = r.oh_lo * g->W + r.ow_lo;
    r.end = (r.oh_hi - 1) * g->W + r.ow_hi;
    return r;
}

/* Zeroes n floats where n is usually the padding (1 or 2). gcc turns a
 * plain loop into a memset call, and one call per output row was 5% of a
 * LightNN training step, so small counts are stored directly. */
static inline void s_zero_few(float *p, int64_t n)
{
    switch (n) {
    case 4: p[3] = 0.0f; /* fall through */
    case 3: p[2] = 0.0f; /* fall through */
    case 2: p[1] = 0.0f; /* fall through */
    case 1: p[0] = 0.0f; /* fall through */
    case 0: return;
    default: memset(p, 0, (size_t)n * sizeof(float));
    }
}

/* The wrapped entries of one tap: the right tail of output row oh (from
 * ow_hi) and the left head of row oh + 1 (up to ow_lo) are one contiguous
 * run of n floats, for oh in [oh_lo, oh_hi - 1). With padding 1, n is 1 on
 * the side taps and 0 on the middle one; one store per row instead of two
 * tests and calls (this was 10 % of a LightNN step's instructions). */
static void s_zero_wrapped(float *col, int64_t W, const s_run *r)
{
    const int64_t n = r->ow_lo + (W - r->ow_hi);
    if (n == 0 || r->oh_hi - r->oh_lo < 2) return;
    float *p = col + r->oh_lo * W + r->ow_hi;
    const float *end = col + (r->oh_hi - 1) * W + r->ow_hi;
    if (n == 1)
        for (; p < end; p += W) *p = 0.0f;
    else
        for (; p < end; p += W) s_zero_few(p, n);
}

static int s_is_same(const dq_im2col_geom *g)
{
    return g->stride == 1 && g->OW == g->W;
}

/* The runs of a same-width geometry depend on the tap only, not on the
 * channel: computed once per call for up to S_MAX_TAPS taps (a 7x7 kernel)
 * instead of once per (channel, tap). Returns whether runs was filled. */
#define S_MAX_TAPS 49
static int s_same_runs(s_run *runs, const dq_im2col_geom *g)
{
    if (!s_is_same(g) || g->KH * g->KW > S_MAX_TAPS) return 0;
    for (int64_t kh = 0; kh < g->KH; kh++)
        for (int64_t kw = 0; kw < g->KW; kw++) runs[kh * g->KW + kw] = s_same_run(g, kh, kw);
    return 1;
}

void dq_im2col(float *col, int64_t ld, const float *img, const dq_im2col_geom *g)
{
    const int64_t H = g->H, W = g->W, OH = g->OH, OW = g->OW, s = g->stride;
    const int same = s_is_same(g);
    s_run runs[S_MAX_TAPS];
    const int cached = s_same_runs(runs, g);
    for (int64_t c = 0; c < g->C; c++) {
        const float *src = img + c * H * W;
        for (int64_t kh = 0; kh < g->KH; kh++) {
            int64_t oh_lo, oh_hi;
            dq_im2col_range(&oh_lo, &oh_hi, H, OH, kh, s, g->pad);
            for (int64_t kw = 0; kw < g->KW; kw++) {
                float *dst = col + ((c * g->KH + kh) * g->KW + kw) * ld;
                if (same) {
                    s_run r = cached ? runs[kh * g->KW + kw] : s_same_run(g, kh, kw);
                    memset(dst, 0, (size_t)r.begin * sizeof(float));
                    if (r.end > r.begin)
                        memcpy(dst + r.begin, src + r.begin + r.d,
                               (size_t)(r.end - r.begin) * sizeof(float));
                    memset(dst + r.end, 0, (size_t)(OH * OW - r.end) * sizeof(float));
                    s_zero_wrapped(dst, W, &r);
                    continue;
                }
                int64_t ow_lo, ow_hi;
                dq_im2col_range(&ow_lo, &ow_hi, W, OW, kw, s, g->pad);
                const int64_t off = kw - g->pad; /* input column = ow*s + off */
                memset(dst, 0, (size_t)(oh_lo * OW) * sizeof(float));
                for (int64_t oh = oh_lo; oh < oh_hi; oh++) {
                    float *d = dst + oh * OW;
                    const float *srow = src + (oh * s - g->pad + kh) * W;
                    s_zero_few(d, ow_lo);
                    if (s == 1)
                        memcpy(d + ow_lo, srow + ow_lo + off,
                               (size_t)(ow_hi - ow_lo) * sizeof(float));
                    else
                        for (int64_t ow = ow_lo; ow < ow_hi; ow++) d[ow] = srow[ow * s + off];
                    s_zero_few(d + ow_hi, OW - ow_hi);
                }
                memset(dst + oh_hi * OW, 0, (size_t)((OH - oh_hi) * OW) * sizeof(float));
            }
        }
    }
}

void dq_col2im_add(float *img, float *col, int64_t ld, const dq_im2col_geom *g)
{
    const int64_t H = g->H, W = g->W, OW = g->OW, s = g->stride;
    const int same = s_is_same(g);
    s_run runs[S_MAX_TAPS];
    const int cached = s_same_runs(runs, g);
    for (int64_t c = 0; c < g->C; c++) {
        float *dst = img + c * H * W;
        for (int64_t kh = 0; kh < g->KH; kh++) {
            int64_t oh_lo, oh_hi;
            dq_im2col_range(&oh_lo, &oh_hi, H, g->OH, kh, s, g->pad);
            for (int64_t kw = 0; kw < g->KW; kw++) {
                float *src = col + ((c * g->KH + kh) * g->KW + kw) * ld;
                if (same) {
                    /* Wrapped entries are made 0, then one run adds the row. */
                    s_run r = cached ? runs[kh * g->KW + kw] : s_same_run(g, kh, kw);
                    s_zero_wrapped(src, W, &r);
                    if (r.end > r.begin)
                        s_add(dst + r.begin + r.d, src + r.begin, r.end - r.begin);
                    continue;
                }
                int64_t ow_lo, ow_hi;
                dq_im2col_range(&ow_lo, &ow_hi, W, OW, kw, s, g->pad);
                const int64_t off = kw - g->pad;
                for (int64_t oh = oh_lo; oh < oh_hi; oh++) {
                    const float *srow = src + oh * OW;
                    float *drow = dst + (oh * s - g->pad + kh) * W;
                    if (s == 1)
                        s_add(drow + ow_lo + off, srow + ow_lo, ow_hi - ow_lo);
                    else
                        for (int64_t ow = ow_lo; ow < ow_hi; ow++) drow[ow * s + off] += srow[ow];
                }
            }
        }
    }
}

/* dq_im2col_pack: one micro-panel's columns as (first input pixel, top-left
 * tap position) once, then every row k = (c, kh, kw) of the block as a
 * masked gather: the tap's pixel where it lies inside the input, else 0 -
 * the values dq_im2col writes, with no column matrix in between. */
typedef struct {
    int64_t base[DQ_IM2COL_NR];             /* offset of the top-left tap's pixel */
    int32_t ih[DQ_IM2COL_NR], iw[DQ_IM2COL_NR]; /* its row and column (may be < 0) */
} s_panel;

static void s_panel_make(s_panel *pn, const dq_im2col_geom *g, int64_t img, int64_t n0,
                         int64_t nr)
{
    const int64_t P = g->OH * g->OW;
    for (int64_t j = 0; j < DQ_IM2COL_NR; j++) {
        if (j >= nr) { /* past the block: a position no tap reaches, so 0 */
            pn->base[j] = 0;
            pn->ih[j] = pn->iw[j] = INT32_MIN / 2;
            continue;
        }
        const int64_t col = n0 + j, p = col % P, oh = p / g->OW, ow = p % g->OW;
        const int64_t ih = oh * g->stride - g->pad, iw = ow * g->stride - g->pad;
        pn->ih[j] = (int32_t)ih;
        pn->iw[j] = (int32_t)iw;
        pn->base[j] = (col / P - n0 / P) * img + ih * g->W + iw;
    }
}

static void s_pack_rows_c(float *restrict bp, const float *restrict first, const s_panel *pn,
                          const dq_im2col_geom *g, int64_t k0, int64_t kc)
{
    const int64_t taps = g->KH * g->KW, HW = g->H * g->W;
    int64_t c = k0 / taps, kh = k0 % taps / g->KW, kw = k0 % g->KW;
    for (int64_t k = 0; k < kc; k++, bp += DQ_IM2COL_NR) {
        const int64_t off = c * HW + kh * g->W + kw;
        for (int j = 0; j < DQ_IM2COL_NR; j++) {
            const int64_t ih = pn->ih[j] + kh, iw = pn->iw[j] + kw;
            bp[j] = ih >= 0 && ih < g->H && iw >= 0 && iw < g->W ? first[pn->base[j] + off] : 0.0f;
        }
        if (++kw == g->KW && (kw = 0, ++kh == g->KH)) kh = 0, c++;
    }
}

#if S_HAVE_X86
#include <immintrin.h>

__attribute__((target("avx2"))) static void
s_pack_rows_avx2(float *restrict bp, const float *restrict first, const s_panel *pn,
                 const dq_im2col_geom *g, int64_t k0, int64_t kc)
{
    const int64_t taps = g->KH * g->KW;
    const int32_t HW = (int32_t)(g->H * g->W), W = (int32_t)g->W, KW = (int32_t)g->KW;
    int32_t c = (int32_t)(k0 / taps), kh = (int32_t)(k0 % taps / g->KW),
            kw = (int32_t)(k0 % g->KW);
    const __m256i ih0 = _mm256_loadu_si256((const __m256i *)pn->ih);
    const __m256i ih1 = _mm256_loadu_si256((const __m256i *)(pn->ih + 8));
    const __m256i iw0 = _mm256_loadu_si256((const __m256i *)pn->iw);
    const __m256i iw1 = _mm256_loadu_si256((const __m256i *)(pn->iw + 8));
    const __m256i lo = _mm256_set1_epi32(-1), h = _mm256_set1_epi32((int32_t)g->H),
                  w = _mm256_set1_epi32(W);
    const __m256 zero = _mm256_setzero_ps();
    /* 16 neighbouring pixels of one image (a stride-1 layer's panel inside
     * one output row, or a same-width one's anywhere): two masked loads
     * instead of two gathers. */
    bool contig = true;
    for (int j = 1; j < DQ_IM2COL_NR; j++) contig = contig && pn->base[j] == pn->base[0] + j;
    if (contig) {
        /* Tap by tap: the tap's masks once, then its row of every channel
         * in the block (rows k0.. of the same tap are `taps` apart). */
        for (int64_t t = 0; t < taps && t < kc; t++) {
            const int64_t k1 = k0 + t, tap = k1 % taps;
            const int32_t th = (int32_t)(tap / g->KW), tw = (int32_t)(tap % g->KW);
            const __m256i vkh = _mm256_set1_epi32(th), vkw = _mm256_set1_epi32(tw);
            __m256i a = _mm256_add_epi32(ih0, vkh), b = _mm256_add_epi32(iw0, vkw);
            const __m256i m0 = _mm256_and_si256(
                _mm256_and_si256(_mm256_cmpgt_epi32(a, lo), _mm256_cmpgt_epi32(h, a)),
                _mm256_and_si256(_mm256_cmpgt_epi32(b, lo), _mm256_cmpgt_epi32(w, b)));
            a = _mm256_add_epi32(ih1, vkh), b = _mm256_add_epi32(iw1, vkw);
            const __m256i m1 = _mm256_and_si256(
                _mm256_and_si256(_mm256_cmpgt_epi32(a, lo), _mm256_cmpgt_epi32(h, a)),
                _mm256_and_si256(_mm256_cmpgt_epi32(b, lo), _mm256_cmpgt_epi32(w, b)));
            const float *src = first + pn->base[0] + (k1 / taps) * HW + th * W + tw;
            float *dst = bp + t * DQ_IM2COL_NR;
            for (int64_t k = t; k < kc; k += taps, src += HW, dst += taps * DQ_IM2COL_NR) {
                _mm256_storeu_ps(dst, _mm256_maskload_ps(src, m0));
                _mm256_storeu_ps(dst + 8, _mm256_maskload_ps(src + 8, m1));
            }
        }
        return;
    }
    int32_t b32[DQ_IM2COL_NR]; /* dq_im2col_pack checked that they fit */
    for (int j = 0; j < DQ_IM2COL_NR; j++) b32[j] = (int32_t)pn->base[j];
    const __m256i base0 = _mm256_loadu_si256((const __m256i *)b32);
    const __m256i base1 = _mm256_loadu_si256((const __m256i *)(b32 + 8));
    for (int64_t k = 0; k < kc; k++, bp += DQ_IM2COL_NR) {
        const __m256i vkh = _mm256_set1_epi32(kh), vkw = _mm256_set1_epi32(kw);
        const __m256i off = _mm256_set1_epi32(c * HW + kh * W + kw);
        __m256i a = _mm256_add_epi32(ih0, vkh), b = _mm256_add_epi32(iw0, vkw);
        __m256i m = _mm256_and_si256(
            _mm256_and_si256(_mm256_cmpgt_epi32(a, lo), _mm256_cmpgt_epi32(h, a)),
            _mm256_and_si256(_mm256_cmpgt_epi32(b, lo), _mm256_cmpgt_epi32(w, b)));
        _mm256_storeu_ps(bp, _mm256_mask_i32gather_ps(zero, first, _mm256_add_epi32(base0, off),
                                                      _mm256_castsi256_ps(m), 4));
        a = _mm256_add_epi32(ih1, vkh), b = _mm256_add_epi32(iw1, vkw);
        m = _mm256_and_si256(
            _mm256_and_si256(_mm256_cmpgt_epi32(a, lo), _mm256_cmpgt_epi32(h, a)),
            _mm256_and_si256(_mm256_cmpgt_epi32(b, lo), _mm256_cmpgt_epi32(w, b)));
        _mm256_storeu_ps(bp + 8, _mm256_mask_i32gather_ps(zero, first,
                                                          _mm256_add_epi32(base1, off),
                                                          _mm256_castsi256_ps(m), 4));
        if (++kw == KW && (kw = 0, ++kh == g->KH)) kh = 0, c++;
    }
}
#endif

bool dq_im2col_pack_fits(const dq_im2col_geom *g)
{
    const int64_t lim = INT32_MAX / 4;
    return g->H < lim && g->W < lim && g->OH * g->stride < lim && g->OW * g->stride < lim &&
           g->KH < lim && g->KW < lim && g->pad < lim;
}

void dq_im2col_pack(float *bp, const float *imgs, const dq_im2col_geom *g, int64_t k0,
                    int64_t kc, int64_t n0, int64_t nc)
{
    const int64_t img = g->C * g->H * g->W, P = g->OH * g->OW;
#if S_HAVE_X86
    /* the gathers' 32-bit offsets span at most DQ_IM2COL_NR + 1 images */
    const bool avx2 = __builtin_cpu_supports("avx2") && (DQ_IM2COL_NR + 1) * img < INT32_MAX / 2;
#else
    const bool avx2 = false;
#endif
    for (int64_t jr = 0; jr < nc; jr += DQ_IM2COL_NR, bp += kc * DQ_IM2COL_NR) {
        const int64_t col = n0 + jr, nr = nc - jr < DQ_IM2COL_NR ? nc - jr : DQ_IM2COL_NR;
        s_panel pn;
        s_panel_make(&pn, g, img, col, nr);
        const float *first = imgs + col / P * img;
#if S_HAVE_X86
        if (avx2) {
            s_pack_rows_avx2(bp, first, &pn, g, k0, kc);
            continue;
        }
#endif
        (void)avx2;
        s_pack_rows_c(bp, first, &pn, g, k0, kc);
    }
}
