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
    for (int64_t pl = 0; pl < N * C; pl++) {
        const float *x = in->data + pl * H * W;
        float *y = out->data + pl * OH * OW;
        int32_t *am = argmax + pl * OH * OW;
        for (int64_t oh = 0; oh < OH; oh++) {
            const int64_t h0 = oh * stride - padding;
            const int64_t hs = h0 < 0 ? 0 : h0, he = h0 + kernel < H ? h0 + kernel : H;
            for (int64_t ow = 0; ow < OW; ow++) {
                const int64_t w0 = ow * stride - padding;
                const int64_t ws = w0 < 0 ? 0 : w0, we = w0 + kernel < W ? w0 + kernel : W;
                int64_t best = hs * W + ws;
                float v = -INFINITY;
                for (int64_t h = hs; h < he; h++)
                    for (int64_t w = ws; w < we; w++) {
                        float c = x[h * W + w];
                        if (c > v || isnan(c)) {
                            v = c;
                            best = h * W + w;
                        }
                    }
                y[oh * OW + ow] = v;
                am[oh * OW + ow] = (int32_t)best;
            }
        }
    }
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
