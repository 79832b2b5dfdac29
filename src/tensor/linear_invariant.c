/* linear_invariant.c - the eval-mode linear layer whose result for a sample
 * does not depend on its batch mates or its row (see tensor/gemm.h).
 *
 * out = in @ w^T through the position-invariant GEMM, then the bias added
 * once per element. Replaces the earlier fixed 32-row OpenBLAS tiles, which
 * were invariant only on BLAS kernels that treat every row alike (they do
 * not on OpenBLAS's Haswell/Zen sgemm, where a row's bits depend on its
 * index in the tile).
 */
#include "tensor/ops.h"

#include "tensor/backend.h"
#include "tensor/gemm.h"

int64_t dq_linear_invariant_workspace(void)
{
    return dq_gemm_fixed_workspace(dq_backend_threads());
}

dq_status dq_linear_forward_invariant(dq_tensor *out, const dq_tensor *in, const dq_tensor *w,
                                      const dq_tensor *b, float *ws, int64_t ws_floats,
                                      dq_err *err)
{
    const char *op = "linear (eval)";
    DQ_TRY(dq_tensor_expect_rank(in, op, "input", 2, err));
    DQ_TRY(dq_tensor_expect_rank(w, op, "weight", 2, err));
    const int64_t N = in->shape[0], NI = in->shape[1], NO = w->shape[0];
    int64_t wshape[2] = {NO, NI}, oshape[2] = {N, NO}, bshape[1] = {NO};
    DQ_TRY(dq_tensor_expect(w, op, "weight", 2, wshape, err));
    DQ_TRY(dq_tensor_expect(out, op, "output", 2, oshape, err));
    if (b) DQ_TRY(dq_tensor_expect(b, op, "bias", 1, bshape, err));
    if (!ws || ws_floats < dq_gemm_fixed_workspace(1))
        return dq_fail(err, DQ_ERR_ARG, "%s: workspace has %lld floats, needs %lld", op,
                       (long long)(ws ? ws_floats : 0), (long long)dq_gemm_fixed_workspace(1));
    if (N == 0) return DQ_OK;
    dq_gemm_fixed(N, NO, NI, in->data, NI, w->data, NI, true, out->data, NO, false,
                  dq_backend_threads(), ws, ws_floats);
    if (b)
        for (int64_t n = 0; n < N; n++)
            for (int64_t o = 0; o < NO; o++) out->data[n * NO + o] += b->data[o];
    return DQ_OK;
}
