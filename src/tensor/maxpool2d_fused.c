/* maxpool2d_fused.c - the backward of relu -> maxpool, written densely.
 *
 * dq_maxpool2d_relu_backward_set (maxpool2d.c) zeroes each input-gradient
 * plane, then scatters dout through argmax where the relu's output at the
 * winner is > 0, after a validation pass over argmax: three passes, the
 * relu test a gather from the full-size relu output (6.4 MB for LightNN's
 * first layer at batch 128), and the memset and the scatter together were
 * the largest non-GEMM item of a training step.
 *
 * Here the relu test reads the POOL output instead: pool_out[i] is the
 * relu output at argmax[i], copied, so pool_out[i] > 0 is the same test on
 * a 4x smaller array read in order. And for the networks' 2x2 / stride 2
 * pool, whose windows tile the plane, each window's four gradient entries
 * are written at once (the winner gets the gradient, the rest 0), SSE2
 * four windows at a time: no memset, no scatter, and argmax is checked on
 * the way (an index outside its window is reported after the pass; nothing
 * is written out of bounds). Values are bitwise those of the unfused
 * backward (its 0 + dy included). Other geometries take the zero + scatter path with the same
 * pool-output test.
 */
#include "tensor/ops.h"

#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* Gradient reaching window i: dout where the (relu'd) pool output is > 0.
 * A select, not a product, as relu.c: an inf gradient on a dead unit is 0.
 * 0 + dy, as the zero-then-add form computes it (-0 becomes +0). */
static inline float s_grad(float dy, float pooled)
{
    return pooled > 0.0f ? 0.0f + dy : 0.0f;
}

/* 2x2 / stride 2 windows of one plane [H, W] with OH = H/2, OW = W/2 (floor:
 * a last odd row or column belongs to no window and gets 0). Returns the
 * number of argmax entries outside their window. */
static int64_t s_plane2x2(float *restrict dx, const float *restrict dy,
                          const float *restrict pooled, const int32_t *restrict am, int64_t H,
                          int64_t W, int64_t OH, int64_t OW)
{
    int64_t bad = 0;
    for (int64_t oh = 0; oh < OH; oh++) {
        float *r0 = dx + 2 * oh * W, *r1 = r0 + W;
        const float *g = dy + oh * OW, *pv = pooled + oh * OW;
        const int32_t *a = am + oh * OW;
        const int32_t base = (int32_t)(2 * oh * W), w = (int32_t)W;
        int64_t ow = 0;
#ifdef __SSE2__
        __m128i nbad = _mm_setzero_si128();
        for (; ow + 4 <= OW; ow += 4) {
            __m128 gv = _mm_loadu_ps(g + ow), p = _mm_loadu_ps(pv + ow);
            gv = _mm_and_ps(_mm_add_ps(_mm_setzero_ps(), gv),
                            _mm_cmpgt_ps(p, _mm_setzero_ps())); /* s_grad */
            __m128i av = _mm_loadu_si128((const __m128i *)(const void *)(a + ow));
            __m128i tl = _mm_add_epi32(_mm_set1_epi32(base + (int32_t)(2 * ow)),
                                       _mm_setr_epi32(0, 2, 4, 6));
            __m128i one = _mm_set1_epi32(1), down = _mm_set1_epi32(w);
            __m128i bl = _mm_add_epi32(tl, down);
            __m128i m00 = _mm_cmpeq_epi32(av, tl), m01 = _mm_cmpeq_epi32(av, _mm_add_epi32(tl, one));
            __m128i m10 = _mm_cmpeq_epi32(av, bl), m11 = _mm_cmpeq_epi32(av, _mm_add_epi32(bl, one));
            __m128 v00 = _mm_and_ps(gv, _mm_castsi128_ps(m00));
            __m128 v01 = _mm_and_ps(gv, _mm_castsi128_ps(m01));
            __m128 v10 = _mm_and_ps(gv, _mm_castsi128_ps(m10));
            __m128 v11 = _mm_and_ps(gv, _mm_castsi128_ps(m11));
            /* interleave left/right entries of the four windows of a row */
            _mm_storeu_ps(r0 + 2 * ow, _mm_unpacklo_ps(v00, v01));
            _mm_storeu_ps(r0 + 2 * ow + 4, _mm_unpackhi_ps(v00, v01));
            _mm_storeu_ps(r1 + 2 * ow, _mm_unpacklo_ps(v10, v11));
            _mm_storeu_ps(r1 + 2 * ow + 4, _mm_unpackhi_ps(v10, v11));
            __m128i hit = _mm_or_si128(_mm_or_si128(m00, m01), _mm_or_si128(m10, m11));
            nbad = _mm_sub_epi32(nbad, _mm_cmpeq_epi32(hit, _mm_setzero_si128()));
        }
        int32_t nb[4];
        _mm_storeu_si128((__m128i *)(void *)nb, nbad);
        bad += (int64_t)nb[0] + nb[1] + nb[2] + nb[3];
#endif
        for (; ow < OW; ow++) {
            const int32_t tl = base + (int32_t)(2 * ow);
            const float v = s_grad(g[ow], pv[ow]);
            const int32_t k = a[ow];
            r0[2 * ow] = k == tl ? v : 0.0f;
            r0[2 * ow + 1] = k == tl + 1 ? v : 0.0f;
            r1[2 * ow] = k == tl + w ? v : 0.0f;
            r1[2 * ow + 1] = k == tl + w + 1 ? v : 0.0f;
            bad += k != tl && k != tl + 1 && k != tl + w && k != tl + w + 1;
        }
        if (2 * OW < W) r0[W - 1] = r1[W - 1] = 0.0f; /* odd width: last column */
    }
    if (2 * OH < H) memset(dx + (H - 1) * W, 0, (size_t)W * sizeof(float)); /* odd height */
    return bad;
}

dq_status dq_maxpool2d_relu_backward_pooled(dq_tensor *din, const dq_tensor *dout,
                                            const int32_t *argmax, const dq_tensor *pool_out,
                                            int kernel, int stride, dq_err *err)
{
    const char *op = "maxpool2d+relu backward";
    DQ_TRY(dq_tensor_expect_rank(dout, op, "output gradient", 4, err));
    DQ_TRY(dq_tensor_expect_rank(din, op, "input gradient", 4, err));
    DQ_TRY(dq_tensor_expect(pool_out, op, "pool output", 4, dout->shape, err));
    const int64_t H = din->shape[2], W = din->shape[3];
    const int64_t OH = dq_maxpool2d_out_size(H, kernel, stride);
    const int64_t OW = dq_maxpool2d_out_size(W, kernel, stride);
    int64_t ishape[4] = {dout->shape[0], dout->shape[1], H, W};
    DQ_TRY(dq_tensor_expect(din, op, "input gradient", 4, ishape, err));
    if (OH != dout->shape[2] || OW != dout->shape[3]) {
        char b[96];
        return dq_fail(err, DQ_ERR_SHAPE, "%s: output gradient %s does not match kernel %d / "
                       "stride %d on a %lldx%lld input", op,
                       dq_tensor_shape_str(dout, b, sizeof b), kernel, stride, (long long)H,
                       (long long)W);
    }
    const int64_t planes = dout->shape[0] * dout->shape[1], HW = H * W, P = OH * OW;
    if (!argmax && planes * P > 0) return dq_fail(err, DQ_ERR_ARG, "%s: argmax is missing", op);
    if (kernel == 2 && stride == 2) {
        int64_t bad = 0;
        for (int64_t pl = 0; pl < planes; pl++)
            bad += s_plane2x2(din->data + pl * HW, dout->data + pl * P, pool_out->data + pl * P,
                              argmax + pl * P, H, W, OH, OW);
        if (bad)
            return dq_fail(err, DQ_ERR_ARG, "%s: %lld argmax entries lie outside their 2x2 "
                           "window (not this pool's argmax?)", op, (long long)bad);
        return DQ_OK;
    }
    /* Any other geometry: validate, zero, scatter. */
    for (int64_t i = 0; i < planes * P; i++)
        if (argmax[i] < 0 || argmax[i] >= HW)
            return dq_fail(err, DQ_ERR_ARG, "%s: argmax[%lld] = %d is outside the %lld-element "
                           "plane", op, (long long)i, (int)argmax[i], (long long)HW);
    for (int64_t pl = 0; pl < planes; pl++) {
        float *dx = din->data + pl * HW;
        const float *dy = dout->data + pl * P, *pv = pool_out->data + pl * P;
        const int32_t *am = argmax + pl * P;
        memset(dx, 0, (size_t)HW * sizeof(float));
        for (int64_t i = 0; i < P; i++) dx[am[i]] += s_grad(dy[i], pv[i]);
    }
    return DQ_OK;
}
