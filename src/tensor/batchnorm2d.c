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
    if (!train) {
        if (!running_mean)
            return dq_fail(err, DQ_ERR_ARG, "%s: eval mode needs the running statistics", op);
        for (int64_t c = 0; c < C; c++) {
            const float invstd = (float)(1.0 / sqrt((double)running_var->data[c] + eps));
            const float scale = w->data[c] * invstd;
            const float shift = b->data[c] - running_mean->data[c] * scale;
            for (int64_t n = 0; n < N; n++) {
                const int64_t off = (n * C + c) * HW;
                s_affine(out->data + off, in->data + off, scale, shift, HW);
            }
        }
        return DQ_OK;
    }
    const int64_t cnt = N * HW;
    if (cnt < 2)
        return dq_fail(err, DQ_ERR_SHAPE, "%s: training needs more than 1 value per channel "
                       "(input [%lld, %lld, %lld, %lld])", op, (long long)N, (long long)C,
                       (long long)in->shape[2], (long long)in->shape[3]);
    if (!save_mean || !save_invstd)
        return dq_fail(err, DQ_ERR_ARG, "%s: training needs save_mean and save_invstd", op);
    for (int64_t c = 0; c < C; c++) {
        double sum = 0.0;
        for (int64_t n = 0; n < N; n++) sum += s_sum(in->data + (n * C + c) * HW, HW);
        const float mean = (float)(sum / (double)cnt);
        double ss = 0.0;
        for (int64_t n = 0; n < N; n++) ss += s_sumsq_dev(in->data + (n * C + c) * HW, mean, HW);
        const double var = ss / (double)cnt;
        const float invstd = (float)(1.0 / sqrt(var + eps));
        save_mean[c] = mean;
        save_invstd[c] = invstd;
        if (running_mean) {
            const double m = momentum, unbiased = var * (double)cnt / (double)(cnt - 1);
            running_mean->data[c] = (float)((1.0 - m) * running_mean->data[c] + m * mean);
            running_var->data[c] = (float)((1.0 - m) * running_var->data[c] + m * unbiased);
        }
        const float scale = w->data[c] * invstd, shift = b->data[c] - mean * scale;
        for (int64_t n = 0; n < N; n++) {
            const int64_t off = (n * C + c) * HW;
            s_affine(out->data + off, in->data + off, scale, shift, HW);
        }
    }
    return DQ_OK;
}

/* sum dy and sum dy*(x - m) over n elements. */
static void s_dot_stats(double *sdy, double *sdyx, const float *dy, const float *x, float m,
                        int64_t n)
{
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
    for (int64_t c = 0; c < C; c++) {
        const float m = save_mean[c], is = save_invstd[c];
        double sdy = 0.0, sdyx = 0.0;
        for (int64_t n = 0; n < N; n++) {
            const int64_t off = (n * C + c) * HW;
            s_dot_stats(&sdy, &sdyx, dout->data + off, in->data + off, m, HW);
        }
        /* sum dy*xhat = invstd * sum dy*(x - mean) */
        if (db) db->data[c] += (float)sdy;
        if (dw) dw->data[c] += (float)(sdyx * is);
        if (!din) continue;
        const double a = (double)w->data[c] * is;
        const float fa = (float)a;
        const float fk = (float)(-a * is * is * sdyx / cnt);
        const float fc = (float)(-a * sdy / cnt);
        for (int64_t n = 0; n < N; n++) {
            const int64_t off = (n * C + c) * HW;
            s_dx(din->data + off, dout->data + off, in->data + off, fa, fk, m, fc, HW);
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
