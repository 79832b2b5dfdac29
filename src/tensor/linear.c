/* linear.c - fully connected layer, out = in @ w^T + b, on sgemm.
 *
 * w keeps PyTorch's [O,I] layout so checkpoints load without transposing;
 * the transposes live in the GEMM flags instead (NI = I, NO = O in the code,
 * since <complex.h> via cblas.h owns the name I):
 *     forward   out [N,O]  = in [N,I] x w^T       (bias pre-filled, beta = 1)
 *     backward  dw  [O,I] += dout^T x in          (beta = 1: accumulates)
 *               din [N,I] += dout x w
 *               db  [O]   += column sums of dout
 */
#include "tensor/ops.h"

#include <cblas.h>
#include <limits.h>
#include <string.h>

/* Checks in [N,I] and w [O,I] with every size usable as a BLAS int. */
static dq_status s_check(const char *op, const dq_tensor *in, const dq_tensor *w, dq_err *err)
{
    DQ_TRY(dq_tensor_expect_rank(in, op, "input", 2, err));
    DQ_TRY(dq_tensor_expect_rank(w, op, "weight", 2, err));
    int64_t wshape[2] = {w->shape[0], in->shape[1]};
    DQ_TRY(dq_tensor_expect(w, op, "weight", 2, wshape, err));
    if (in->shape[1] < 1 || w->shape[0] < 1)
        return dq_fail(err, DQ_ERR_SHAPE, "%s: %lld inputs / %lld outputs, need at least 1",
                       op, (long long)in->shape[1], (long long)w->shape[0]);
    if (in->shape[0] > INT_MAX || in->shape[1] > INT_MAX || w->shape[0] > INT_MAX)
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "%s: sizes exceed BLAS int range", op);
    return DQ_OK;
}

/* dst[i] += src[i], in blocks of 8 so gcc -O2 vectorises it. */
static void s_add(float *restrict dst, const float *restrict src, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) dst[i + k] += src[i + k];
    for (; i < n; i++) dst[i] += src[i];
}

static dq_status s_check_bias(const char *op, const char *what, const dq_tensor *b, int64_t NO,
                              dq_err *err)
{
    if (!b) return DQ_OK;
    int64_t shape[1] = {NO};
    return dq_tensor_expect(b, op, what, 1, shape, err);
}

dq_status dq_linear_forward(dq_tensor *out, const dq_tensor *in, const dq_tensor *w,
                            const dq_tensor *b, dq_err *err)
{
    DQ_TRY(s_check("linear", in, w, err));
    const int64_t N = in->shape[0], NI = in->shape[1], NO = w->shape[0];
    DQ_TRY(s_check_bias("linear", "bias", b, NO, err));
    int64_t oshape[2] = {N, NO};
    DQ_TRY(dq_tensor_expect(out, "linear", "output", 2, oshape, err));
    if (N == 0) return DQ_OK;
    float beta = 0.0f;
    if (b) {
        for (int64_t n = 0; n < N; n++)
            memcpy(out->data + n * NO, b->data, (size_t)NO * sizeof(float));
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)NO, (int)NI, 1.0f,
                in->data, (int)NI, w->data, (int)NI, beta, out->data, (int)NO);
    return DQ_OK;
}

dq_status dq_linear_backward(dq_tensor *din, dq_tensor *dw, dq_tensor *db,
                             const dq_tensor *dout, const dq_tensor *in, const dq_tensor *w,
                             dq_err *err)
{
    const char *op = "linear backward";
    DQ_TRY(s_check(op, in, w, err));
    const int64_t N = in->shape[0], NI = in->shape[1], NO = w->shape[0];
    int64_t oshape[2] = {N, NO};
    DQ_TRY(dq_tensor_expect(dout, op, "output gradient", 2, oshape, err));
    if (din) DQ_TRY(dq_tensor_expect(din, op, "input gradient", 2, in->shape, err));
    if (dw) DQ_TRY(dq_tensor_expect(dw, op, "weight gradient", 2, w->shape, err));
    DQ_TRY(s_check_bias(op, "bias gradient", db, NO, err));
    if (N == 0) return DQ_OK;
    if (db)
        for (int64_t n = 0; n < N; n++) s_add(db->data, dout->data + n * NO, NO);
    if (dw)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)NO, (int)NI, (int)N, 1.0f,
                    dout->data, (int)NO, in->data, (int)NI, 1.0f, dw->data, (int)NI);
    if (din)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)NI, (int)NO, 1.0f,
                    dout->data, (int)NO, w->data, (int)NI, 1.0f, din->data, (int)NI);
    return DQ_OK;
}
