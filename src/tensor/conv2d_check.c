/* conv2d_check.c - the argument checks every convolution entry point shares.
 *
 * conv2d.c (training), conv2d_fused.c (conv -> relu -> maxpool, saved
 * columns), conv2d_invariant.c (eval) and conv2d_grouped.c (groups > 1) each
 * used to carry their own copy of the same rank / weight / output / bias /
 * workspace checks, and the copies had drifted (one never checked the
 * weight's channels against the input's). They now describe their call in a
 * dq_conv2d_call and ask dq_conv2d_check, which fills the one-image geometry
 * they go on to use; only the checks peculiar to one path (the pool of the
 * fused op, the saved column buffer, the depthwise-only direct kernel) stay
 * with that path. Every message starts with the call's name and names the
 * tensor at fault with the shape it has and the one expected.
 */
#include "tensor/conv2d_int.h"

#include <limits.h>

dq_status dq_conv2d_check(const dq_conv2d_call *c, dq_conv2d_params p, dq_im2col_geom *g,
                          dq_err *err)
{
    const char *op = c->op;
    DQ_TRY(dq_tensor_expect_rank(c->in, op, "input", 4, err));
    DQ_TRY(dq_tensor_expect_rank(c->w, op, "weight", 4, err));
    if (p.stride < 1 || p.padding < 0 || p.groups < 0)
        return dq_fail(err, DQ_ERR_ARG, "%s: stride %d / padding %d / groups %d invalid", op,
                       p.stride, p.padding, p.groups);
    const dq_tensor *in = c->in, *w = c->w;
    const int64_t N = in->shape[0], C = in->shape[1], OC = w->shape[0];
    const int64_t G = p.groups < 1 ? 1 : p.groups;
    if (C % G != 0 || OC % G != 0)
        return dq_fail(err, DQ_ERR_SHAPE, "%s: %lld input and %lld output channels are not "
                       "both divisible by groups %lld", op, (long long)C, (long long)OC,
                       (long long)G);
    const int64_t wshape[4] = {OC, C / G, w->shape[2], w->shape[3]};
    DQ_TRY(dq_tensor_expect(w, op, "weight", 4, wshape, err));
    *g = dq_im2col_geom_make(C, in->shape[2], in->shape[3], w->shape[2], w->shape[3], p.stride,
                             p.padding);
    if (g->OH < 1 || g->OW < 1 || g->KH < 1 || g->KW < 1) {
        char s[96];
        return dq_fail(err, DQ_ERR_SHAPE, "%s: kernel %lldx%lld does not fit input %s", op,
                       (long long)g->KH, (long long)g->KW, dq_tensor_shape_str(in, s, sizeof s));
    }
    if (c->y) {
        const int64_t yshape[4] = {N, OC, g->OH, g->OW};
        DQ_TRY(dq_tensor_expect(c->y, op, c->backward ? "output gradient" : "output", 4, yshape,
                                err));
    }
    if (c->b) {
        const int64_t bshape[1] = {OC};
        DQ_TRY(dq_tensor_expect(c->b, op, c->backward ? "bias gradient" : "bias", 1, bshape,
                                err));
    }
    if (c->din) DQ_TRY(dq_tensor_expect(c->din, op, "input gradient", 4, in->shape, err));
    if (c->dw) DQ_TRY(dq_tensor_expect(c->dw, op, "weight gradient", 4, w->shape, err));
    const int64_t cols = C * g->KH * g->KW * g->OH * g->OW;
    if (c->gemm && (cols > INT_MAX || OC > INT_MAX))
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "%s: %lld-float column matrix exceeds BLAS "
                       "int sizes", op, (long long)cols);
    return DQ_OK;
}

dq_status dq_conv2d_check_workspace(const char *op, const float *ws, int64_t ws_floats,
                                    int64_t need, dq_err *err)
{
    if (need > 0 && (!ws || ws_floats < need))
        return dq_fail(err, DQ_ERR_ARG, "%s: workspace has %lld floats, needs at least %lld",
                       op, (long long)(ws ? ws_floats : 0), (long long)need);
    return DQ_OK;
}
