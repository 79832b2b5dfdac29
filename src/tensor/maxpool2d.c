/* maxpool2d.c - max pooling over square windows, floor mode.
 *
 * Padding (at most kernel/2, as PyTorch requires) acts as -inf: a window is
 * clipped to the input, so every output has at least one real element and
 * argmax always indexes the unpadded plane.
 *
 * Forward records, per output, the index of the winning input inside its
 * H*W plane (int32, as PyTorch's return_indices does), so backward is a
 * scatter-add that needs neither the input nor the kernel geometry. Ties go
 * to the first maximum in row-major window order and a NaN wins, both as in
 * PyTorch's CPU kernel. Overlapping windows (stride < kernel) accumulate.
 */
#include "tensor/ops.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

int64_t dq_maxpool2d_out_size(int64_t in, int kernel, int stride)
{
    if (kernel < 1 || stride < 1 || in < kernel) return 0;
    return (in - kernel) / stride + 1;
}

/* One step of the running max: c replaces v when it is larger or NaN. */
static inline void s_pick(float *v, int32_t *best, float c, int32_t idx)
{
    if (c > *v || c != c) {
        *v = c;
        *best = idx;
    }
}

#ifdef __SSE2__
/* Four outputs of a 2x2 / stride 2 row at once (SSE2 is part of x86-64).
 * On real activations the comparisons are unpredictable, and a branch per
 * element made pooling the student's most expensive op; masks don't branch.
 * Same rule as s_pick, applied in row-major window order. */
static inline void s_pick4(__m128 *v, __m128i *best, __m128 c, __m128i idx)
{
    __m128 m = _mm_or_ps(_mm_cmpgt_ps(c, *v), _mm_cmpunord_ps(c, c));
    *v = _mm_or_ps(_mm_and_ps(m, c), _mm_andnot_ps(m, *v));
    __m128i mi = _mm_castps_si128(m);
    *best = _mm_or_si128(_mm_and_si128(mi, idx), _mm_andnot_si128(mi, *best));
}
#endif

/* The networks' 2x2 / stride 2 case. */
static void s_pool2x2(float *restrict out, int32_t *restrict argmax, const float *restrict in,
                      int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW)
{
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *x = in + pl * H * W;
        float *y = out + pl * OH * OW;
        int32_t *am = argmax + pl * OH * OW;
        for (int64_t oh = 0; oh < OH; oh++) {
            const float *r0 = x + 2 * oh * W, *r1 = r0 + W;
            int32_t base = (int32_t)(2 * oh * W), w = (int32_t)W;
            int64_t ow = 0;
#ifdef __SSE2__
            for (; ow + 4 <= OW; ow += 4) {
                const float *p0 = r0 + 2 * ow, *p1 = r1 + 2 * ow;
                __m128 a0 = _mm_loadu_ps(p0), a1 = _mm_loadu_ps(p0 + 4);
                __m128 b0 = _mm_loadu_ps(p1), b1 = _mm_loadu_ps(p1 + 4);
                __m128 v = _mm_shuffle_ps(a0, a1, _MM_SHUFFLE(2, 0, 2, 0));
                __m128i i0 = _mm_add_epi32(_mm_set1_epi32(base + (int32_t)(2 * ow)),
                                           _mm_setr_epi32(0, 2, 4, 6));
                __m128i best = i0, one = _mm_set1_epi32(1), down = _mm_set1_epi32(w);
                s_pick4(&v, &best, _mm_shuffle_ps(a0, a1, _MM_SHUFFLE(3, 1, 3, 1)),
                        _mm_add_epi32(i0, one));
                s_pick4(&v, &best, _mm_shuffle_ps(b0, b1, _MM_SHUFFLE(2, 0, 2, 0)),
                        _mm_add_epi32(i0, down));
                s_pick4(&v, &best, _mm_shuffle_ps(b0, b1, _MM_SHUFFLE(3, 1, 3, 1)),
                        _mm_add_epi32(_mm_add_epi32(i0, down), one));
                _mm_storeu_ps(y + oh * OW + ow, v);
                _mm_storeu_si128((__m128i *)(void *)(am + oh * OW + ow), best);
            }
#endif
            for (; ow < OW; ow++) {
                int32_t i0 = (int32_t)(2 * ow);
                float v = r0[i0];
                int32_t best = base + i0;
                s_pick(&v, &best, r0[i0 + 1], base + i0 + 1);
                s_pick(&v, &best, r1[i0], base + w + i0);
                s_pick(&v, &best, r1[i0 + 1], base + w + i0 + 1);
                y[oh * OW + ow] = v;
                am[oh * OW + ow] = best;
            }
        }
    }
}

/* One output of any window: the window clipped to the input (padding is
 * -inf), scanned in row-major order with s_pick's rule. */
static inline void s_pool_one(float *y, int32_t *am, const float *x, int64_t H, int64_t W,
                              int64_t h0, int64_t w0, int kernel)
{
    const int64_t hs = h0 < 0 ? 0 : h0, he = h0 + kernel < H ? h0 + kernel : H;
    const int64_t ws = w0 < 0 ? 0 : w0, we = w0 + kernel < W ? w0 + kernel : W;
    int32_t best = (int32_t)(hs * W + ws);
    float v = -INFINITY;
    for (int64_t h = hs; h < he; h++)
        for (int64_t w = ws; w < we; w++) {
            const float c = x[h * W + w];
            const int up = (c > v) | (c != c); /* s_pick's rule, without a branch */
            v = up ? c : v;
            best = up ? (int32_t)(h * W + w) : best;
        }
    *y = v;
    *am = best;
}

/* Output positions along one dim whose window lies wholly inside: [lo, hi). */
static void s_inside(int64_t *lo, int64_t *hi, int64_t in, int64_t out, int kernel, int stride,
                     int padding)
{
    int64_t l = (padding + stride - 1) / stride; /* o*stride - padding >= 0 */
    int64_t h = in + padding - kernel < 0 ? 0 : (in + padding - kernel) / stride + 1;
    if (h > out) h = out;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

/* A -inf bordered copy of a padded plane, on the stack, up to this size. */
#define S_BORDER_FLOATS 8192

#ifdef __SSE2__
/* Four neighbouring windows, rows from h0, columns from w0 + j*stride (in
 * input coordinates, possibly in the padding): their taps in row-major
 * window order. Values are loaded from xl, a plane of row stride ld in
 * which (h0, w0) is at xl[0] and every tap is readable (the input itself
 * for windows wholly inside, else a -inf bordered copy); indices are into
 * the unpadded [H, W] plane. best starts at each window's first element
 * inside the input, as s_pool_one's. */
static inline void s_pool4(float *y, int32_t *am, const float *xl, int64_t ld, int64_t W,
                           int64_t h0, int64_t w0, int kernel, int stride, __m128i lanes)
{
    __m128 v = _mm_set1_ps(-INFINITY);
    /* first element inside: row max(h0, 0), column max(w0 + j*stride, 0) */
    __m128i col = _mm_add_epi32(_mm_set1_epi32((int32_t)w0), lanes);
    col = _mm_andnot_si128(_mm_cmplt_epi32(col, _mm_setzero_si128()), col);
    __m128i best = _mm_add_epi32(_mm_set1_epi32((int32_t)((h0 < 0 ? 0 : h0) * W)), col);
    for (int64_t kh = 0; kh < kernel; kh++) {
        const float *r = xl + kh * ld;
        for (int64_t kw = 0; kw < kernel; kw++) {
            const float *q = r + kw;
            __m128 c;
            if (stride == 1)
                c = _mm_loadu_ps(q);
            else if (stride == 2) /* q[0..6], all in the row: q0 q2 q4 q6 */
                c = _mm_shuffle_ps(_mm_loadu_ps(q), _mm_loadu_ps(q + 3), _MM_SHUFFLE(3, 1, 2, 0));
            else
                c = _mm_setr_ps(q[0], q[stride], q[2 * stride], q[3 * stride]);
            __m128i idx =
                _mm_add_epi32(_mm_set1_epi32((int32_t)((h0 + kh) * W + w0 + kw)), lanes);
            s_pick4(&v, &best, c, idx);
        }
    }
    _mm_storeu_ps(y, v);
    _mm_storeu_si128((__m128i *)(void *)am, best);
}

/* Padded planes: the plane is copied into a -inf bordered buffer so that
 * every window, border ones included, runs four at a time. */
static void s_pool_plane_bordered(float *restrict y, int32_t *restrict am,
                                  const float *restrict x, int64_t H, int64_t W, int64_t OH,
                                  int64_t OW, int kernel, int stride, int padding, float *buf)
{
    const int64_t Hp = H + 2 * padding, Wp = W + 2 * padding;
    for (int64_t i = 0; i < Hp * Wp; i++) buf[i] = -INFINITY;
    for (int64_t h = 0; h < H; h++)
        memcpy(buf + (h + padding) * Wp + padding, x + h * W, (size_t)W * sizeof(float));
    const __m128i lanes = _mm_setr_epi32(0, stride, 2 * stride, 3 * stride);
    for (int64_t oh = 0; oh < OH; oh++) {
        const int64_t h0 = oh * stride - padding;
        for (int64_t ow = 0; ow < OW; ow += 4) {
            const int64_t o4 = ow + 4 <= OW ? ow : OW - 4; /* last group overlaps */
            s_pool4(y + oh * OW + o4, am + oh * OW + o4, buf + oh * stride * Wp + o4 * stride, Wp,
                    W, h0, o4 * stride - padding, kernel, stride, lanes);
        }
    }
}
#endif

/* Any kernel, stride and padding, one [H,W] plane. Windows wholly inside
 * the input take four outputs at a time through s_pool4 (the taps of four
 * neighbouring windows in row-major window order): a branch per element
 * made the padded 3x3 / stride 2 stem pool 5x slower than the masks.
 * Padded planes of up to S_BORDER_FLOATS go through a bordered copy so the
 * border windows are vectorised too; otherwise, and where fewer than four
 * outputs are left, border windows go one at a time through s_pool_one. */
static void s_pool_plane(float *restrict y, int32_t *restrict am, const float *restrict x,
                         int64_t H, int64_t W, int64_t OH, int64_t OW, int kernel, int stride,
                         int padding, float *buf)
{
#ifdef __SSE2__
    if (padding > 0 && OW >= 4 && (H + 2 * padding) * (W + 2 * padding) <= S_BORDER_FLOATS) {
        s_pool_plane_bordered(y, am, x, H, W, OH, OW, kernel, stride, padding, buf);
        return;
    }
#else
    (void)buf;
#endif
    int64_t oh_lo, oh_hi, ow_lo, ow_hi;
    s_inside(&oh_lo, &oh_hi, H, OH, kernel, stride, padding);
    s_inside(&ow_lo, &ow_hi, W, OW, kernel, stride, padding);
    for (int64_t oh = 0; oh < OH; oh++) {
        const int64_t h0 = oh * stride - padding;
        int64_t ow = 0;
#ifdef __SSE2__
        if (oh >= oh_lo && oh < oh_hi) {
            for (; ow < ow_lo; ow++)
                s_pool_one(y + oh * OW + ow, am + oh * OW + ow, x, H, W, h0,
                           ow * stride - padding, kernel);
            const __m128i lanes = _mm_setr_epi32(0, stride, 2 * stride, 3 * stride);
            for (; ow < ow_hi; ow += 4) {
                /* a last partial group is redone as the 4 ending at ow_hi:
                 * the overlapping outputs get the same values again */
                const int64_t o4 = ow + 4 <= ow_hi ? ow : ow_hi - 4;
                if (o4 < ow_lo) break;
                const int64_t w0 = o4 * stride - padding;
                s_pool4(y + oh * OW + o4, am + oh * OW + o4, x + h0 * W + w0, W, W, h0, w0,
                        kernel, stride, lanes);
            }
            if (ow > ow_hi) ow = ow_hi;
        }
#else
        (void)oh_lo, (void)oh_hi, (void)ow_lo, (void)ow_hi;
#endif
        for (; ow < OW; ow++)
            s_pool_one(y + oh * OW + ow, am + oh * OW + ow, x, H, W, h0, ow * stride - padding,
                       kernel);
    }
}

int64_t dq_maxpool2d_out_size_pad(int64_t in, int kernel, int stride, int padding)
{
    if (kernel < 1 || stride < 1 || padding < 0 || in + 2 * (int64_t)padding < kernel) return 0;
    return (in + 2 * (int64_t)padding - kernel) / stride + 1;
}

dq_status dq_maxpool2d_forward(dq_tensor *out, int32_t *argmax, const dq_tensor *in,
                               int kernel, int stride, dq_err *err)
{
    return dq_maxpool2d_forward_pad(out, argmax, in, kernel, stride, 0, err);
}

dq_status dq_maxpool2d_forward_pad(dq_tensor *out, int32_t *argmax, const dq_tensor *in,
                                   int kernel, int stride, int padding, dq_err *err)
{
    DQ_TRY(dq_tensor_expect_rank(in, "maxpool2d", "input", 4, err));
    if (kernel < 1 || stride < 1)
        return dq_fail(err, DQ_ERR_ARG, "maxpool2d: kernel %d / stride %d must be >= 1",
                       kernel, stride);
    if (padding < 0 || padding > kernel / 2)
        return dq_fail(err, DQ_ERR_ARG, "maxpool2d: padding %d must be in [0, kernel/2 = %d]",
                       padding, kernel / 2);
    const int64_t N = in->shape[0], C = in->shape[1], H = in->shape[2], W = in->shape[3];
    const int64_t OH = dq_maxpool2d_out_size_pad(H, kernel, stride, padding);
    const int64_t OW = dq_maxpool2d_out_size_pad(W, kernel, stride, padding);
    if (OH < 1 || OW < 1) {
        char b[96];
        return dq_fail(err, DQ_ERR_SHAPE, "maxpool2d: kernel %d does not fit input %s", kernel,
                       dq_tensor_shape_str(in, b, sizeof b));
    }
    if (H * W > INT32_MAX)
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "maxpool2d: %lldx%lld plane too large for "
                       "int32 indices", (long long)H, (long long)W);
    int64_t oshape[4] = {N, C, OH, OW};
    DQ_TRY(dq_tensor_expect(out, "maxpool2d", "output", 4, oshape, err));
    if (!argmax && N * C > 0)
        return dq_fail(err, DQ_ERR_ARG, "maxpool2d: argmax buffer is missing");

    if (kernel == 2 && stride == 2 && padding == 0) {
        s_pool2x2(out->data, argmax, in->data, N * C, H, W, OH, OW);
        return DQ_OK;
    }
    float buf[S_BORDER_FLOATS];
    for (int64_t pl = 0; pl < N * C; pl++)
        s_pool_plane(out->data + pl * OH * OW, argmax + pl * OH * OW, in->data + pl * H * W, H, W,
                     OH, OW, kernel, stride, padding, buf);
    return DQ_OK;
}

/* Shared by both backward forms: accumulate adds into din, else each
 * plane of din is zeroed just before its scatter (while it is in cache). */
static dq_status s_maxpool2d_backward(dq_tensor *din, const dq_tensor *dout,
                                      const int32_t *argmax, bool accumulate,
                                      const dq_tensor *relu_out, dq_err *err)
{
    const char *op = "maxpool2d backward";
    DQ_TRY(dq_tensor_expect_rank(dout, op, "output gradient", 4, err));
    if (!din) return DQ_OK;
    DQ_TRY(dq_tensor_expect_rank(din, op, "input gradient", 4, err));
    int64_t ishape[4] = {dout->shape[0], dout->shape[1], din->shape[2], din->shape[3]};
    DQ_TRY(dq_tensor_expect(din, op, "input gradient", 4, ishape, err));
    if (relu_out) DQ_TRY(dq_tensor_expect(relu_out, op, "relu output", 4, ishape, err));
    const int64_t planes = dout->shape[0] * dout->shape[1];
    const int64_t HW = din->shape[2] * din->shape[3], P = dout->shape[2] * dout->shape[3];
    if (!argmax && planes * P > 0) return dq_fail(err, DQ_ERR_ARG, "%s: argmax is missing", op);
    /* Indices come from our forward; a bad one means the wrong buffer was
     * passed, and must not become an out-of-bounds write. */
    for (int64_t i = 0; i < planes * P; i++)
        if (argmax[i] < 0 || argmax[i] >= HW)
            return dq_fail(err, DQ_ERR_ARG, "%s: argmax[%lld] = %d is outside the %lld-element "
                           "plane", op, (long long)i, (int)argmax[i], (long long)HW);
    for (int64_t pl = 0; pl < planes; pl++) {
        float *dx = din->data + pl * HW;
        const float *dy = dout->data + pl * P;
        const int32_t *am = argmax + pl * P;
        if (!accumulate) memset(dx, 0, (size_t)HW * sizeof(float));
        if (relu_out) {
            /* relu backward folded in: only where the relu's output is > 0 */
            const float *y = relu_out->data + pl * HW;
            for (int64_t i = 0; i < P; i++)
                if (y[am[i]] > 0.0f) dx[am[i]] += dy[i];
        } else {
            for (int64_t i = 0; i < P; i++) dx[am[i]] += dy[i];
        }
    }
    return DQ_OK;
}

dq_status dq_maxpool2d_relu_backward_set(dq_tensor *din, const dq_tensor *dout,
                                         const int32_t *argmax, const dq_tensor *relu_out,
                                         dq_err *err)
{
    if (!relu_out)
        return dq_fail(err, DQ_ERR_ARG, "maxpool2d+relu backward: relu output is missing");
    return s_maxpool2d_backward(din, dout, argmax, false, relu_out, err);
}

dq_status dq_maxpool2d_backward(dq_tensor *din, const dq_tensor *dout, const int32_t *argmax,
                                dq_err *err)
{
    return s_maxpool2d_backward(din, dout, argmax, true, NULL, err);
}

dq_status dq_maxpool2d_backward_set(dq_tensor *din, const dq_tensor *dout,
                                    const int32_t *argmax, dq_err *err)
{
    return s_maxpool2d_backward(din, dout, argmax, false, NULL, err);
}
