/* c_client_worker.c - libdistillq from C: a teacher worker whose forward is
 * a tiny hand-written "model" (logits = per-class mean of the image times
 * the class index), and a client that sends it batches through a broker
 * and checks every result, in order.
 *
 *   distillq-broker --frontend tcp://127.0.0.1:5555 --backend tcp://127.0.0.1:5556 &
 *   cc c_client_worker.c $(pkg-config --cflags --libs distillq) -lpthread -o example
 *   ./example tcp://127.0.0.1:5556 tcp://127.0.0.1:5555/toy
 *
 * Prints "ok: N batches" and exits 0 when every logit is what the forward
 * computes for that batch.
 */
#include <distillq.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define C 1
#define H 4
#define W 4
#define CLASSES 3

/* The forward: logits[s][k] = k * mean(x[s]). */
static int forward(void *user, const float *in, const int64_t shape[4], int n_outputs,
                   const char *const *names, float *const *outputs, char *errmsg, size_t errlen)
{
    (void)user;
    for (int i = 0; i < n_outputs; i++) {
        if (strcmp(names[i], "logits") != 0) {
            snprintf(errmsg, errlen, "no output %s", names[i]);
            return 1;
        }
        int64_t per = shape[1] * shape[2] * shape[3];
        for (int64_t s = 0; s < shape[0]; s++) {
            double m = 0;
            for (int64_t k = 0; k < per; k++) m += in[s * per + k];
            for (int k = 0; k < CLASSES; k++) outputs[i][s * CLASSES + k] = (float)(k * m / per);
        }
    }
    return 0;
}

static void *serve(void *arg)
{
    distillq_error err;
    if (distillq_worker_run(arg, &err) != 0) fprintf(stderr, "worker: %s\n", err.msg);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s BACKEND TEACHER_URL\n", argv[0]);
        return 2;
    }
    distillq_error err;
    distillq_worker_config wc;
    distillq_worker_config_default(&wc);
    wc.broker = argv[1];
    const char *slash = strrchr(argv[2], '/');
    wc.service = slash ? slash + 1 : "toy";
    wc.model = "toy-mean";
    wc.sha256 = "0000000000000000000000000000000000000000000000000000000000000001";
    wc.input[0] = C, wc.input[1] = H, wc.input[2] = W;
    wc.n_norm = 1, wc.mean[0] = 0.5f, wc.std[0] = 0.25f;
    wc.n_outputs = 1;
    wc.output_names[0] = "logits";
    wc.output_ndim[0] = 1, wc.output_shape[0][0] = CLASSES;
    wc.impl = "example-c/cpu";
    wc.quiet = 1;
    wc.forward = forward;
    distillq_worker *w;
    if (distillq_worker_new(&w, &wc, &err) != 0) {
        fprintf(stderr, "worker: %s\n", err.msg);
        return 1;
    }
    pthread_t th;
    if (pthread_create(&th, NULL, serve, w) != 0) return 1;

    distillq_client_opts o;
    distillq_client_opts_default(&o);
    o.inflight = 4;
    o.request_timeout_ms = 10000;
    distillq_client *c;
    int rc = distillq_client_open(&c, argv[2], &o, &err);
    const char *want[1] = {"logits"};
    int batches = 20, taken = 0, sent = 0, bad = 0;
    uint8_t px[8 * C * H * W];
    while (rc == 0 && taken < batches) {
        while (sent < batches && distillq_client_pending(c) < o.inflight) {
            int64_t n = 1 + sent % 8, shape[4] = {n, C, H, W};
            for (int64_t k = 0; k < n * C * H * W; k++) px[k] = (uint8_t)(sent * 7 + k);
            rc = distillq_client_submit(c, DISTILLQ_U8, shape, px, 1, want, NULL, &err);
            if (rc != 0) break;
            sent++;
        }
        distillq_result r;
        if (rc == 0) rc = distillq_client_next(c, &r, 1000, &err);
        if (rc == DISTILLQ_EAGAIN) { rc = 0; continue; }
        if (rc != 0) break;
        /* Recompute what the worker should have answered for batch r.seq. */
        int64_t n = 1 + (int64_t)r.seq % 8;
        for (int64_t s = 0; s < n; s++) {
            double m = 0;
            for (int k = 0; k < C * H * W; k++) {
                uint8_t p = (uint8_t)(r.seq * 7 + s * C * H * W + k);
                m += ((float)p / 255.0f - 0.5f) / 0.25f;
            }
            float want1 = (float)(1 * m / (C * H * W));
            float got = r.outputs[0].data[s * CLASSES + 1];
            if (r.outputs[0].shape[0] != n || got - want1 > 1e-4f || want1 - got > 1e-4f) bad++;
        }
        if ((int64_t)r.seq != taken || strcmp(r.impl, "example-c/cpu") != 0) bad++;
        taken++;
    }
    if (rc != 0) fprintf(stderr, "client: %s (%s)\n", err.msg, distillq_strerror(rc));
    distillq_client_close(&c);
    distillq_worker_stop(w, 1);
    pthread_join(th, NULL);
    distillq_worker_destroy(&w);
    if (rc != 0 || bad != 0) {
        fprintf(stderr, "FAILED: %d bad results\n", bad);
        return 1;
    }
    printf("ok: %d batches\n", taken);
    return 0;
}
