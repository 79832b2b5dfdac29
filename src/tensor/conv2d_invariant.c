/* conv2d_invariant.c - the eval-mode convolution whose result for an image
 * does not depend on the batch it comes in (see tensor/gemm.h for why
 * OpenBLAS cannot promise that).
 *
 * Images are lowered side by side into the column buffer, G at a time, and
 * one position-invariant GEMM (dq_gemm_fixed) computes the [OC, G*P] slab
 * into scratch, which is then permuted to NCHW while the bias is added. The
 * arithmetic of an output element is therefore the same for every G and
 * every position: the GEMM's fixed k-order, then one addition of the bias.
 * G is planned from the column buffer's size as the training path does, so
 * the wide GEMMs that make small late layers fast (P = 1 at ResNet's last
 * stage) are kept. The GEMM runs on the backend's thread count
 * (dq_backend_threads at plan and at call time; the workspace bounds it).
 * Grouped and depthwise convolutions (groups > 1) go to conv2d_grouped.c,
 * whose paths are invariant by construction (one image per GEMM, or the
 * direct depthwise kernel).
 */
#include "tensor/ops.h"

#include <string.h>

#include "tensor/backend.h"
#include "tensor/conv2d_int.h"
#include "tensor/gemm.h"
#include "tensor/im2col.h"

#define S_GROUP_BYTES ((int64_t)2 << 20) /* column buffer per group, as conv2d.c */

/* Images per GEMM: as many as fit the budget, at least 1, at most n. */
static int64_t s_group(int64_t n, int64_t k, int64_t p)
{
    int64_t g = S_GROUP_BYTES / ((int64_t)sizeof(float) * k * p);
    if (g > n) g = n;
    return g < 1 ? 1 : g;
}

int64_t dq_conv2d_invariant_workspace(int64_t N, int64_t C, int64_t H, int64_t W, int64_t KH,
                                      int64_t KW, int64_t OC, dq_conv2d_params p)
{
    if (p.groups > 1) return N < 1 ? 0 : dq_conv2d_grouped_workspace(C, H, W, KH, KW, p);
    int64_t OH = dq_conv2d_out_size(H, KH, p.stride, p.padding);
    int64_t OW = dq_conv2d_out_size(W, KW, p.stride, p.padding);
    if (N < 1 || C < 1 || OC < 1 || OH < 1 || OW < 1) return 0;
    int64_t K = C * KH * KW, P = OH * OW, G = s_group(N, K, P);
    /* GEMM packing, columns, then the [OC, G*P] slab; each 16-float aligned. */
    int64_t gw = (dq_gemm_fixed_workspace(dq_backend_threads()) + 15) / 16 * 16;
    return gw + (K * G * P + 15) / 16 * 16 + OC * G * P;
}

dq_status dq_conv2d_forward_invariant(dq_tensor *out, const dq_tensor *in, const dq_tensor *w,
                                      const dq_tensor *b, dq_conv2d_params p, float *ws,
                                      int64_t ws_floats, dq_err *err)
{
    if (p.groups != 0 && p.groups != 1)
        return dq_conv2d_grouped_forward(out, in, w, b, p, ws, ws_floats, DQ_CONV2D_ALGO_AUTO,
                                         err);
    const char *op = "conv2d (eval)";
    const dq_conv2d_call c = {.op = op, .in = in, .w = w, .y = out, .b = b};
    dq_im2col_geom g;
    DQ_TRY(dq_conv2d_check(&c, p, &g, err));
    const int64_t N = in->shape[0], C = in->shape[1], OC = w->shape[0];
    if (N == 0) return DQ_OK;
    const int64_t K = C * g.KH * g.KW, P = g.OH * g.OW, img = C * g.H * g.W;
    const int64_t G = s_group(N, K, P);
    const int64_t need1 = (dq_gemm_fixed_workspace(1) + 15) / 16 * 16; /* one thread */
    const int64_t cols = (K * G * P + 15) / 16 * 16, need = need1 + cols + OC * G * P;
    DQ_TRY(dq_conv2d_check_workspace(op, ws, ws_floats, need, err));
    /* Packing space for as many threads as the workspace was planned for. */
    const int64_t gw = ws_floats - cols - OC * G * P;
    float *col = ws + gw, *slab = col + cols;

    for (int64_t n0 = 0; n0 < N; n0 += G) {
        const int64_t gn = N - n0 < G ? N - n0 : G, ld = gn * P;
        for (int64_t j = 0; j < gn; j++) dq_im2col(col + j * P, ld, in->data + (n0 + j) * img, &g);
        dq_gemm_fixed(OC, ld, K, w->data, K, col, ld, false, slab, ld, false, dq_backend_threads(),
                      ws, gw);
        /* [OC][gn][P] -> [gn][OC][P], adding the bias (one addition per
         * element, the same in every group size). */
        for (int64_t j = 0; j < gn; j++)
            for (int64_t o = 0; o < OC; o++) {
                const float *src = slab + o * ld + j * P;
                float *dst = out->data + ((n0 + j) * OC + o) * P;
                float bias = b ? b->data[o] : 0.0f;
                for (int64_t q = 0; q < P; q++) dst[q] = src[q] + bias;
            }
    }
    return DQ_OK;
}
