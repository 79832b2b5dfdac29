/* batchnorm2d.c - batch normalisation over NCHW channels (PyTorch
 * nn.BatchNorm2d, affine), forward in both modes, training backward, and
 * the fold of an eval batch norm into the convolution before it.
 *
 * Training: per channel c over n = N*H*W values, mean and biased variance
 * (two passes: the mean first, then the squared deviations, which is exact
 * where the one-pass E[x^2] - mean^2 cancels), each plane summed with 8
 * float lanes and the planes added in double. The output is then one
 * multiply-add per element, out = x*scale + shift with scale = w*invstd and
 * shift = b - mean*scale. Running statistics follow PyTorch exactly:
 * running = (1 - momentum)*running + momentum*batch, with the UNBIASED
 * variance var*n/(n-1) (so n = 1 is refused, as PyTorch does).
 *
 * Eval uses the running statistics in the same multiply-add form; every
 * element depends only on itself and the channel's constants, so the eval
 * forward is batch-invariant. In a network it normally disappears: the
 * executor folds it into the preceding convolution (dq_batchnorm2d_fold).
 *
 * Backward (training mode, the statistics depend on the input): with
 * xhat = (x - mean)*invstd,
 *     db += sum dy,  dw += sum dy*xhat,
 *     dx += w*invstd * (dy - sum(dy)/n - xhat*sum(dy*xhat)/n).
 */
#include "tensor/ops.h"

#include <math.h>

/* Sum of x[0..n) with 8 float lanes. */
static double s_sum(const float *x, int64_t n)
{
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) acc[k] += x[i + k];
    double s = 0.0;
    for (; i < n; i++) s += x[i];
    for (int k = 0; k < 8; k++) s += acc[k];
    return s;
}

/* Sum of (x - m)^2 over x[0..n). */
static double s_sumsq_dev(const float *x, float m, int64_t n)
{
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) {
            float d = x[i + k] - m;
            acc[k] += d * d;
        }
    double s = 0.0;
    for (; i < n; i++) s += (double)(x[i] - m) * (x[i] - m);
    for (int k = 0; k < 8; k++) s += acc[k];
    return s;
}

/* y = x*a + c over n elements (y may alias x). */
static void s_affine(float *y, const float *x, float a, float c, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) y[i + k] = x[i + k] * a + c;
    for (; i < n; i++) y[i] = x[i] * a + c;
}

/* Channels are processed in blocks, image by image inside a block: with
 * small planes (ResNet's last stages are 2x2 and 1x1) a loop per channel
 * over the batch strode across memory and spent its time in per-plane
 * overhead (1x1: 22 ns per element), while a block of an image is
 * contiguous. A block's data (cb * N * HW floats) stays within
 * S_BLOCK_FLOATS so that the second and third passes over it hit the cache:
 * large planes get blocks of one or two channels, as before. */
#define S_CB 64
#define S_BLOCK_FLOATS ((int64_t)32768)

static int64_t s_block(int64_t N, int64_t HW)
{
    int64_t per = N * HW < 1 ? 1 : N * HW, cb = S_BLOCK_FLOATS / per;
    return cb < 1 ? 1 : cb > S_CB ? S_CB : cb;
}

/* Planes shorter than this are summed element by element in double. */
#define S_SMALL 8

/* acc[j] += sum of plane j of a block of cb planes of HW floats. */
static void s_acc_sum(double *acc, const float *x, int64_t cb, int64_t HW)
{
    for (int64_t j = 0; j < cb; j++) {
        const float *p = x + j * HW;
        if (HW >= S_SMALL) {
            acc[j] += s_sum(p, HW);
        } else {
            double t = 0.0;
            for (int64_t i = 0; i < HW; i++) t += p[i];
            acc[j] += t;
        }
    }
}

/* acc[j] += sum of (x - m[j])^2 over plane j. */
static void s_acc_sumsq_dev(double *acc, const float *x, const float *m, int64_t cb, int64_t HW)
{
    for (int64_t j = 0; j < cb; j++) {
        const float *p = x + j * HW;
        if (HW >= S_SMALL) {
            acc[j] += s_sumsq_dev(p, m[j], HW);
        } else {
            double t = 0.0;
            for (int64_t i = 0; i < HW; i++) t += (double)(p[i] - m[j]) * (p[i] - m[j]);
            acc[j] += t;
        }
    }
}

static dq_status s_check_vec(const dq_tensor *t, const char *op, const char *what, int64_t C,
                             dq_err *err)
{
    int64_t shape[1] = {C};
    return dq_tensor_expect(t, op, what, 1, shape, err);
}

dq_status dq_batchnorm2d_forward(dq_tensor *out, float *save_mean, float *save_invstd,
                                 dq_tensor *running_mean, dq_tensor *running_var,
                                 const dq_tensor *in, const dq_tensor *w, const dq_tensor *b,
                                 float eps, float momentum, bool train, dq_err *err)
{
    const char *op = "batchnorm2d";
    DQ_TRY(dq_tensor_expect_rank(in, op, "input", 4, err));
    const int64_t N = in->shape[0], C = in->shape[1], HW = in->shape[2] * in->shape[3];
    DQ_TRY(dq_tensor_expect(out, op, "output", 4, in->shape, err));
    DQ_TRY(s_check_vec(w, op, "weight", C, err));
    DQ_TRY(s_check_vec(b, op, "bias", C, err));
    if (!(eps > 0.0f) || !(momentum >= 0.0f && momentum <= 1.0f))
        return dq_fail(err, DQ_ERR_ARG, "%s: eps %g must be > 0 and momentum %g in [0, 1]", op,
                       (double)eps, (double)momentum);
    if (!running_mean != !running_var)
        return dq_fail(err, DQ_ERR_ARG, "%s: running mean and variance come together", op);
    if (running_mean) {
        DQ_TRY(s_check_vec(running_mean, op, "running mean", C, err));
        DQ_TRY(s_check_vec(running_var, op, "running variance", C, err));
    }
    if (!train && !running_mean)
        return dq_fail(err, DQ_ERR_ARG, "%s: eval mode needs the running statistics", op);
    const int64_t cnt = N * HW;
    if (train && cnt < 2)
        return dq_fail(err, DQ_ERR_SHAPE, "%s: training needs more than 1 value per channel "
                       "(input [%lld, %lld, %lld, %lld])", op, (long long)N, (long long)C,
                       (long long)in->shape[2], (long long)in->shape[3]);
    if (train && (!save_mean || !save_invstd))
        return dq_fail(err, DQ_ERR_ARG, "%s: training needs save_mean and save_invstd", op);
    const int64_t blk = s_block(N, HW);
    for (int64_t c0 = 0; c0 < C; c0 += blk) {
        const int64_t cb = C - c0 < blk ? C - c0 : blk;
        float scale[S_CB], shift[S_CB];
        if (!train) {
            for (int64_t j = 0; j < cb; j++) {
                const int64_t c = c0 + j;
                const float invstd = (float)(1.0 / sqrt((double)running_var->data[c] + eps));
                scale[j] = w->data[c] * invstd;
                shift[j] = b->data[c] - running_mean->data[c] * scale[j];
            }
        } else {
            double acc[S_CB] = {0};
            float mean[S_CB];
            for (int64_t n = 0; n < N; n++) s_acc_sum(acc, in->data + (n * C + c0) * HW, cb, HW);
            for (int64_t j = 0; j < cb; j++) {
                mean[j] = (float)(acc[j] / (double)cnt);
                acc[j] = 0.0;
            }
            for (int64_t n = 0; n < N; n++)
                s_acc_sumsq_dev(acc, in->data + (n * C + c0) * HW, mean, cb, HW);
            for (int64_t j = 0; j < cb; j++) {
                const int64_t c = c0 + j;
                const double var = acc[j] / (double)cnt;
                const float invstd = (float)(1.0 / sqrt(var + eps));
                save_mean[c] = mean[j];
                save_invstd[c] = invstd;
                if (running_mean) {
                    const double m = momentum, unbiased = var * (double)cnt / (double)(cnt - 1);
                    running_mean->data[c] = (float)((1.0 - m) * running_mean->data[c] + m * mean[j]);
                    running_var->data[c] = (float)((1.0 - m) * running_var->data[c] + m * unbiased);
                }
                scale[j] = w->data[c] * invstd;
                shift[j] = b->data[c] - mean[j] * scale[j];
            }
        }
        for (int64_t n = 0; n < N; n++) {
            const int64_t off = (n * C + c0) * HW;
            for (int64_t j = 0; j < cb; j++)
                s_affine(out->data + off + j * HW, in->data + off + j * HW, scale[j], shift[j], HW);
        }
    }
    return DQ_OK;
}

/* sum dy and sum dy*(x - m) over n elements. */
static void s_dot_stats(double *sdy, double *sdyx, const float *dy, const float *x, float m,
                        int64_t n)
{
    if (n < S_SMALL) {
        for (int64_t i = 0; i < n; i++) {
            *sdy += dy[i];
            *sdyx += (double)dy[i] * (x[i] - m);
        }
        return;
    }
    float a[8] = {0}, c[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) {
            a[k] += dy[i + k];
            c[k] += dy[i + k] * (x[i + k] - m);
        }
    double s1 = 0.0, s2 = 0.0;
    for (; i < n; i++) {
        s1 += dy[i];
        s2 += (double)dy[i] * (x[i] - m);
    }
    for (int k = 0; k < 8; k++) s1 += a[k], s2 += c[k];
    *sdy += s1;
    *sdyx += s2;
}

/* dx += a*dy + k*(x - m) + c over n elements. */
static void s_dx(float *restrict dx, const float *restrict dy, const float *restrict x, float a,
                 float k, float m, float c, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) dx[i + j] += a * dy[i + j] + k * (x[i + j] - m) + c;
    for (; i < n; i++) dx[i] += a * dy[i] + k * (x[i] - m) + c;
}

dq_status dq_batchnorm2d_backward(dq_tensor *din, dq_tensor *dw, dq_tensor *db,
                                  const dq_tensor *dout, const dq_tensor *in, const dq_tensor *w,
                                  const float *save_mean, const float *save_invstd,
                                  dq_err *err)
{
    const char *op = "batchnorm2d backward";
    DQ_TRY(dq_tensor_expect_rank(in, op, "input", 4, err));
    const int64_t N = in->shape[0], C = in->shape[1], HW = in->shape[2] * in->shape[3];
    DQ_TRY(dq_tensor_expect(dout, op, "output gradient", 4, in->shape, err));
    DQ_TRY(s_check_vec(w, op, "weight", C, err));
    if (din) DQ_TRY(dq_tensor_expect(din, op, "input gradient", 4, in->shape, err));
    if (dw) DQ_TRY(s_check_vec(dw, op, "weight gradient", C, err));
    if (db) DQ_TRY(s_check_vec(db, op, "bias gradient", C, err));
    if (!save_mean || !save_invstd)
        return dq_fail(err, DQ_ERR_ARG, "%s: save_mean / save_invstd are missing", op);
    const double cnt = (double)(N * HW);
    if (cnt < 1) return DQ_OK;
    const int64_t blk = s_block(N, HW);
    for (int64_t c0 = 0; c0 < C; c0 += blk) {
        const int64_t cb = C - c0 < blk ? C - c0 : blk;
        double sdy[S_CB] = {0}, sdyx[S_CB] = {0};
        for (int64_t n = 0; n < N; n++) {
            const int64_t off = (n * C + c0) * HW;
            for (int64_t j = 0; j < cb; j++)
                s_dot_stats(&sdy[j], &sdyx[j], dout->data + off + j * HW,
                            in->data + off + j * HW, save_mean[c0 + j], HW);
        }
        float fa[S_CB], fk[S_CB], fc[S_CB];
        for (int64_t j = 0; j < cb; j++) {
            const int64_t c = c0 + j;
            const float is = save_invstd[c];
            /* sum dy*xhat = invstd * sum dy*(x - mean) */
            if (db) db->data[c] += (float)sdy[j];
            if (dw) dw->data[c] += (float)(sdyx[j] * is);
            const double a = (double)w->data[c] * is;
            fa[j] = (float)a;
            fk[j] = (float)(-a * is * is * sdyx[j] / cnt);
            fc[j] = (float)(-a * sdy[j] / cnt);
        }
        if (!din) continue;
        for (int64_t n = 0; n < N; n++) {
            const int64_t off = (n * C + c0) * HW;
            for (int64_t j = 0; j < cb; j++)
                s_dx(din->data + off + j * HW, dout->data + off + j * HW,
                     in->data + off + j * HW, fa[j], fk[j], save_mean[c0 + j], fc[j], HW);
        }
    }
    return DQ_OK;
}

void dq_batchnorm2d_fold(float *conv_w, float *conv_b, int64_t oc, int64_t per_oc,
                         const float *w, const float *b, const float *mean, const float *var,
                         float eps)
{
    for (int64_t o = 0; o < oc; o++) {
        const double s = (double)w[o] / sqrt((double)var[o] + eps);
        float *row = conv_w + o * per_oc;
        for (int64_t i = 0; i < per_oc; i++) row[i] = (float)(row[i] * s);
        conv_b[o] = (float)(((double)conv_b[o] - mean[o]) * s + b[o]);
    }
}
