/* conv2d_invariant.c - the eval-mode convolution whose result for an image
 * does not depend on the batch it comes in (see tensor/gemm.h for why
 * OpenBLAS cannot promise that).
 *
 * Images are lowered side by side, G at a time, and one position-invariant
 * GEMM computes the [OC, G*P] slab into scratch, which is then permuted to
 * NCHW while the bias is added. The arithmetic of an output element is
 * therefore the same for every G and every position: the GEMM's fixed
 * k-order, then one addition of the bias. G is planned from the slab's
 * size, so the wide GEMMs that make small late layers fast (P = 1 at
 * ResNet's last stage) are kept.
 *
 * The lowering writes no column matrix: the GEMM packs its B panels
 * straight from the pixels (dq_gemm_fixed_packed with dq_im2col_pack), the
 * values dq_im2col would give, so the same bits, without writing and
 * re-reading a matrix several times the input's size. ResNet-18-fmnist's
 * small planes spent more in dq_im2col's short copies than in the GEMM;
 * DeepNN-fmnist's 28x28 layers gain 10-15 %.
 *
 * Threads (dq_backend_threads at plan and at call time; the workspace
 * bounds them) split the batch: each worker takes a contiguous run of
 * images and lowers, multiplies, permutes and biases them in its own slice
 * of the workspace, with a one-thread GEMM. The lowering and the epilogue,
 * a third of the forward on one thread, then run in parallel too, and no
 * worker waits on another between groups. Since an image's output does not
 * depend on its group or its column, the split changes no bit. A batch of
 * one image cannot be split: it runs on one worker whose GEMM takes the
 * threads instead (splitting its columns, also bitwise neutral).
 *
 * Taps that fall into the padding for every output position are dropped
 * before lowering (s_crop): at ResNet's last stage (1x1 planes, 3x3
 * kernels, padding 1) only the centre tap ever meets the input, so 8/9 of
 * the column rows and of the GEMM's multiply-adds were products with the
 * padding's zeros (a fifth of ResNet-18-fmnist's forward). The kept taps
 * form a rectangle, so the layer becomes an ordinary smaller convolution:
 * the weights' matching [C, KH', KW'] window is copied once per call into
 * the workspace and the geometry's padding shrinks to match.
 * This depends on the layer's shape only, never on the batch or threads.
 * The weights are packed into the GEMM's A panels once per call, at the
 * head of the workspace, and shared read-only by every worker and group
 * (dq_gemm_pack_a): repacking them for each group and column slab would
 * cost as much as the narrow slabs that keep the packed images in L2 save.
 * Grouped and depthwise convolutions (groups > 1) go to conv2d_grouped.c,
 * whose paths are invariant by construction (one image per GEMM, or the
 * direct depthwise kernel).
 */
#include "tensor/ops.h"

#include <pthread.h>
#include <string.h>

#include "tensor/backend.h"
#include "tensor/conv2d_int.h"
#include "tensor/gemm.h"
#include "tensor/im2col.h"

#define S_GROUP_BYTES ((int64_t)2 << 20) /* output slab per group */

static int64_t s_align16(int64_t n)
{
    return (n + 15) / 16 * 16;
}

/* How a batch of N images runs on T threads: `workers` slices of the
 * workspace, each `floats` long (GEMM packing for `gemm_threads`, then the
 * slab of `G` images), and images per group. */
typedef struct {
    int64_t workers, gemm_threads, G, floats;
} s_plan;

_Static_assert(DQ_IM2COL_NR == DQ_GEMM_NR, "im2col packs the GEMM's micro-panels");

static s_plan s_make_plan(const dq_im2col_geom *cg, int64_t N, int64_t OC, int64_t T)
{
    const int64_t P = cg->OH * cg->OW;
    if (T < 1) T = 1;
    if (T > DQ_GEMM_MAX_THREADS) T = DQ_GEMM_MAX_THREADS;
    s_plan pl = {.workers = T < N ? T : N, .gemm_threads = 1};
    if (pl.workers < 1) pl.workers = 1;
    if (pl.workers == 1) pl.gemm_threads = T;
    const int64_t share = (N + pl.workers - 1) / pl.workers; /* images per worker, at most */
    int64_t g = S_GROUP_BYTES / ((int64_t)sizeof(float) * OC * P);
    if (g > share) g = share;
    pl.G = g < 1 ? 1 : g;
    pl.floats = s_align16(dq_gemm_fixed_workspace((int)pl.gemm_threads)) +
                s_align16(OC * pl.G * P);
    return pl;
}

/* The taps of g that meet the input for at least one output position form
 * the rectangle [k0, k0 + KH') x [k0, k0 + KW') (the padding's side is the
 * same in both dims: one pad). *cg is g cut to it: kernel KH' x KW',
 * padding pad - k0 (>= 0: the tap at pad meets row 0), the same output
 * plane. Returns whether anything was cut (false when the rows and the
 * columns would need different paddings). */
static bool s_crop(dq_im2col_geom *cg, const dq_im2col_geom *g)
{
    int64_t h0 = g->KH, h1 = 0, w0 = g->KW, w1 = 0, lo, hi;
    for (int64_t k = 0; k < g->KH; k++) {
        dq_im2col_range(&lo, &hi, g->H, g->OH, k, g->stride, g->pad);
        if (lo < hi) h0 = k < h0 ? k : h0, h1 = k + 1;
    }
    for (int64_t k = 0; k < g->KW; k++) {
        dq_im2col_range(&lo, &hi, g->W, g->OW, k, g->stride, g->pad);
        if (lo < hi) w0 = k < w0 ? k : w0, w1 = k + 1;
    }
    *cg = *g;
    if (h1 <= h0 || w1 <= w0 || h0 != w0 || (h1 - h0 == g->KH && w1 - w0 == g->KW)) return false;
    cg->KH = h1 - h0;
    cg->KW = w1 - w0;
    cg->pad = g->pad - h0;
    return true;
}

int64_t dq_conv2d_invariant_workspace(int64_t N, int64_t C, int64_t H, int64_t W, int64_t KH,
                                      int64_t KW, int64_t OC, dq_conv2d_params p)
{
    if (p.groups > 1) return N < 1 ? 0 : dq_conv2d_grouped_workspace(C, H, W, KH, KW, p);
    int64_t OH = dq_conv2d_out_size(H, KH, p.stride, p.padding);
    int64_t OW = dq_conv2d_out_size(W, KW, p.stride, p.padding);
    if (N < 1 || C < 1 || OC < 1 || OH < 1 || OW < 1) return 0;
    dq_im2col_geom g = dq_im2col_geom_make(C, H, W, KH, KW, p.stride, p.padding), cg;
    const bool crop = s_crop(&cg, &g);
    const int64_t K = C * cg.KH * cg.KW, wc = crop ? s_align16(OC * K) : 0;
    s_plan pl = s_make_plan(&cg, N, OC, dq_backend_threads());
    return s_align16(dq_gemm_a_floats(OC, K)) + wc + pl.workers * pl.floats;
}

/* One worker: images [n0, n1) of the call, in groups of G, in its slice. */
typedef struct {
    const dq_tensor *in, *b;
    const float *a; /* weights [OC, K], packed by dq_gemm_pack_a */
    dq_tensor *out;
    const dq_im2col_geom *g;
    int64_t n0, n1, G, K, P, OC, gemm_threads;
    bool relu;
    float *ws;
} s_job;

/* The GEMM's packer: the lowered columns of the group at imgs. */
typedef struct {
    const float *imgs;
    const dq_im2col_geom *g;
} s_lowered;

static void s_pack_lowered(const void *ctx, float *bp, int64_t k0, int64_t kc, int64_t n0,
                           int64_t nc)
{
    const s_lowered *l = ctx;
    dq_im2col_pack(bp, l->imgs, l->g, k0, kc, n0, nc);
}

/* dst[q] = src[q] + bias. In blocks of 8 so that gcc -O2 (whose very cheap
 * cost model skips loops that need an epilogue) still vectorises it. */
static void s_add_bias(float *restrict dst, const float *restrict src, float bias, int64_t n)
{
    int64_t q = 0;
    for (; q + 8 <= n; q += 8)
        for (int k = 0; k < 8; k++) dst[q + k] = src[q + k] + bias;
    for (; q < n; q++) dst[q] = src[q] + bias;
}

/* The same, then relu as dq_relu_forward computes it (x <= 0 ? 0 : x). */
static void s_add_bias_relu(float *restrict dst, const float *restrict src, float bias,
                            int64_t n)
{
    int64_t q = 0;
    for (; q + 8 <= n; q += 8)
        for (int k = 0; k < 8; k++) {
            const float v = src[q + k] + bias;
            dst[q + k] = v <= 0.0f ? 0.0f : v;
        }
    for (; q < n; q++) {
        const float v = src[q] + bias;
        dst[q] = v <= 0.0f ? 0.0f : v;
    }
}

static void s_run(const s_job *j)
{
    const int64_t K = j->K, P = j->P, OC = j->OC, img = j->g->C * j->g->H * j->g->W;
    const int64_t gw = s_align16(dq_gemm_fixed_workspace((int)j->gemm_threads));
    float *slab = j->ws + gw;
    for (int64_t n0 = j->n0; n0 < j->n1; n0 += j->G) {
        const int64_t gn = j->n1 - n0 < j->G ? j->n1 - n0 : j->G, ld = gn * P;
        const s_lowered l = {j->in->data + n0 * img, j->g};
        dq_gemm_fixed_packed(OC, ld, K, j->a, s_pack_lowered, &l, slab, ld, false,
                             (int)j->gemm_threads, j->ws, gw);
        /* [OC][gn][P] -> [gn][OC][P], adding the bias (one addition per
         * element, the same in every group size). */
        for (int64_t i = 0; i < gn; i++)
            for (int64_t o = 0; o < OC; o++)
                (j->relu ? s_add_bias_relu : s_add_bias)(j->out->data + ((n0 + i) * OC + o) * P,
                                                         slab + o * ld + i * P,
                                                         j->b ? j->b->data[o] : 0.0f, P);
    }
}

static void *s_run_thread(void *arg)
{
    s_run(arg);
    return NULL;
}

dq_status dq_conv2d_forward_invariant(dq_tensor *out, const dq_tensor *in, const dq_tensor *w,
                                      const dq_tensor *b, dq_conv2d_params p, float *ws,
                                      int64_t ws_floats, dq_err *err)
{
    return dq_conv2d_forward_invariant_relu(out, in, w, b, p, false, ws, ws_floats, err);
}

dq_status dq_conv2d_forward_invariant_relu(dq_tensor *out, const dq_tensor *in,
                                           const dq_tensor *w, const dq_tensor *b,
                                           dq_conv2d_params p, bool relu, float *ws,
                                           int64_t ws_floats, dq_err *err)
{
    if (p.groups != 0 && p.groups != 1) { /* no epilogue of its own: relu as its own pass */
        DQ_TRY(dq_conv2d_grouped_forward(out, in, w, b, p, ws, ws_floats, DQ_CONV2D_ALGO_AUTO,
                                         err));
        return relu ? dq_relu_forward(out, out, err) : DQ_OK;
    }
    const char *op = "conv2d (eval)";
    const dq_conv2d_call c = {.op = op, .in = in, .w = w, .y = out, .b = b};
    dq_im2col_geom g;
    DQ_TRY(dq_conv2d_check(&c, p, &g, err));
    const int64_t N = in->shape[0], OC = w->shape[0];
    if (N == 0) return DQ_OK;
    dq_im2col_geom cg;
    const bool crop = s_crop(&cg, &g);
    if (!dq_im2col_pack_fits(&cg))
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "%s: input plane %lldx%lld is too large", op,
                       (long long)g.H, (long long)g.W);
    const int64_t K = g.C * cg.KH * cg.KW, P = g.OH * g.OW;
    const int64_t wa = s_align16(dq_gemm_a_floats(OC, K)), wc = crop ? s_align16(OC * K) : 0;
    /* The backend's threads, fewer when the workspace was planned for
     * fewer; one thread's plan is the least any call may be given. */
    s_plan pl = s_make_plan(&cg, N, OC, 1);
    DQ_TRY(dq_conv2d_check_workspace(op, ws, ws_floats, wa + wc + pl.floats, err));
    const float *a = w->data;
    if (crop) { /* the kept taps' window of every [C, KH, KW] filter, in order */
        const int64_t k0 = g.pad - cg.pad;
        for (int64_t r = 0; r < OC * g.C; r++)
            for (int64_t i = 0; i < cg.KH; i++) {
                const float *src = w->data + (r * g.KH + k0 + i) * g.KW + k0;
                float *dst = ws + wa + (r * cg.KH + i) * cg.KW;
                for (int64_t j = 0; j < cg.KW; j++) dst[j] = src[j]; /* a few: no memcpy call */
            }
        a = ws + wa;
    }
    /* The weights packed once for every group of every worker. */
    dq_gemm_pack_a(ws, a, K, OC, K);
    a = ws;
    ws += wa + wc;
    ws_floats -= wa + wc;
    for (int64_t t = dq_backend_threads(); t > 1; t--) {
        s_plan q = s_make_plan(&cg, N, OC, t);
        if (q.workers * q.floats <= ws_floats) {
            pl = q;
            break;
        }
    }
    s_job jobs[DQ_GEMM_MAX_THREADS];
    for (int64_t t = 0, n0 = 0; t < pl.workers; t++) {
        const int64_t n1 = n0 + N / pl.workers + (t < N % pl.workers ? 1 : 0);
        jobs[t] = (s_job){.in = in, .a = a, .b = b, .out = out, .g = &cg, .n0 = n0, .n1 = n1,
                          .G = pl.G, .K = K, .P = P, .OC = OC,
                          .gemm_threads = pl.gemm_threads, .relu = relu,
                          .ws = ws + t * pl.floats};
        n0 = n1;
    }
    /* A worker that cannot be started has its share done here instead:
     * slower, never different. */
    pthread_t tid[DQ_GEMM_MAX_THREADS];
    bool started[DQ_GEMM_MAX_THREADS] = {false};
    for (int64_t t = 1; t < pl.workers; t++)
        started[t] = pthread_create(&tid[t], NULL, s_run_thread, &jobs[t]) == 0;
    s_run(&jobs[0]);
    for (int64_t t = 1; t < pl.workers; t++) {
        if (started[t]) pthread_join(tid[t], NULL);
        else s_run(&jobs[t]);
    }
    return DQ_OK;
}
