/* svc_load.c - closed-loop load on a teacher service for the broker scale
 * bench (issue 13 section 3): C client threads, each with its own dq_client
 * and K requests of 8 Fashion-MNIST test images in flight, for S seconds,
 * then a drain. Every reply is checked against the echo teacher's rows
 * (teacher_echo.c recomputed here), and every request id must be delivered
 * exactly once: lost (never answered within the drain), twice, wrong bytes
 * and non-ok replies are counted. Prints one JSON line: requests, req/s,
 * p50/p99 latency (ms), and the counts.
 *
 * usage: svc_load --endpoint tcp://H:P --service S --model M.model --data DIR
 *                 [--clients 32] [--inflight 1] [--seconds 5] [--images 8]
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "client/client.h"
#include "data/dataset.h"
#include "teacher_worker/teacher_echo.h"

#define S_MAX_REQ (1 << 17)

typedef struct {
    int id;
    const char *endpoint, *service;
    const dq_dataset *ds;
    int inflight, images;
    double end;
    /* results */
    int64_t sent, delivered, lost, twice, wrong, notok, dup_dropped, resends;
    float *lat_ms;          /* per delivered request */
    uint8_t *seen;          /* per req_id: deliveries */
    double *sent_at;
} s_thread;

static const uint8_t *s_images(const s_thread *t, int64_t req)
{
    size_t sz = 784;
    int64_t n = t->ds->n - t->images;
    int64_t first = ((int64_t)t->id * 7919 + req * t->images) % n;
    return t->ds->images + (size_t)first * sz;
}

static dq_status s_send(s_thread *t, dq_client_t *c, int64_t req, dq_err *err)
{
    const char *outs[1] = {"logits"};
    dq_client_request r = {.req_id = (uint64_t)req, .service = t->service,
                           .dtype = DQ_DTYPE_U8, .shape = {t->images, 1, 28, 28},
                           .data = s_images(t, req), .n_outputs = 1, .outputs = outs};
    t->sent_at[req] = dq_clock_now_s();
    return dq_client_send(c, &r, err);
}

static void s_take(s_thread *t, const dq_client_reply *rep)
{
    int64_t req = (int64_t)rep->req_id;
    if (req < 0 || req >= t->sent) {
        t->wrong++;
        return;
    }
    if (t->seen[req]++) {
        t->twice++;
        return;
    }
    if (rep->status != DQ_REPLY_OK) {
        t->notok++;
        return;
    }
    t->lat_ms[t->delivered++] = (float)((dq_clock_now_s() - t->sent_at[req]) * 1000.0);
    float ref[64 * 10], got[64 * 10];
    dq_msg_request q = {.dtype = DQ_DTYPE_U8, .shape = {t->images, 1, 28, 28},
                        .data = s_images(t, req)};
    const dq_msg_request *qs[1] = {&q};
    dq_teacher_echo_rows(ref, 10, 0, qs, 1, 784);
    const dq_msg_output *o = rep->n_outputs == 1 ? &rep->outputs[0] : NULL;
    if (!o || o->data_len != (size_t)t->images * 40 || !rep->teacher ||
        strncmp(rep->teacher->model, "echo:", 5) != 0) {
        t->wrong++;
        return;
    }
    dq_msg_f32_copy(got, o->data, (size_t)t->images * 10);
    if (memcmp(got, ref, (size_t)t->images * 40) != 0) t->wrong++;
}

static void *s_run(void *arg)
{
    s_thread *t = arg;
    dq_err err = {{0}};
    dq_client_t *c = NULL;
    dq_client_opts o;
    dq_client_opts_default(&o);
    o.max_inflight = t->inflight;
    o.resend_ms = 5000;
    if (dq_client_new(&c, t->endpoint, &o, &err) != DQ_OK) {
        fprintf(stderr, "svc_load: %s\n", err.msg);
        return NULL;
    }
    while (dq_clock_now_s() < t->end && t->sent < S_MAX_REQ) {
        while (dq_client_inflight(c) < t->inflight && t->sent < S_MAX_REQ) {
            if (s_send(t, c, t->sent, &err) != DQ_OK) {
                fprintf(stderr, "svc_load: send: %s\n", err.msg);
                goto done;
            }
            t->sent++;
        }
        dq_client_reply rep;
        dq_status st = dq_client_recv(c, &rep, 100, &err);
        if (st == DQ_OK) s_take(t, &rep);
        else if (st != DQ_ERR_TIMEOUT) {
            fprintf(stderr, "svc_load: recv: %s\n", err.msg);
            goto done;
        }
    }
    double drain_end = dq_clock_now_s() + 30.0;
    while (dq_client_inflight(c) > 0 && dq_clock_now_s() < drain_end) {
        dq_client_reply rep;
        if (dq_client_recv(c, &rep, 100, &err) == DQ_OK) s_take(t, &rep);
    }
    /* late duplicates, if any, would arrive now */
    for (int i = 0; i < 3; i++) {
        dq_client_reply rep;
        if (dq_client_recv(c, &rep, 100, &err) == DQ_OK) s_take(t, &rep);
    }
done:;
    dq_client_counters cc;
    dq_client_get_counters(c, &cc);
    t->dup_dropped = (int64_t)cc.duplicates;
    t->resends = (int64_t)cc.resent;
    for (int64_t i = 0; i < t->sent; i++) t->lost += t->seen[i] == 0;
    dq_client_destroy(&c);
    return NULL;
}

static int s_cmp(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static void s_usage(FILE *f)
{
    fprintf(f, "usage: svc_load --endpoint E [--service S] [--data DIR] [--clients C] "
               "[--inflight K] [--seconds T] [--images N<=64]\n");
}

int main(int argc, char **argv)
{
    const char *endpoint = NULL, *service = "fmnist", *data = "/usr/share/datasets/fashion-mnist";
    int clients = 32, inflight = 1, images = 8;
    double seconds = 5;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            s_usage(stdout);
            return 0;
        }
    if (argc % 2 == 0) {
        fprintf(stderr, "svc_load: %s needs a value (try --help)\n", argv[argc - 1]);
        return 2;
    }
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--endpoint")) endpoint = argv[i + 1];
        else if (!strcmp(argv[i], "--service")) service = argv[i + 1];
        else if (!strcmp(argv[i], "--data")) data = argv[i + 1];
        else if (!strcmp(argv[i], "--clients")) clients = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--inflight")) inflight = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seconds")) seconds = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--images")) images = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "svc_load: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (!endpoint || clients < 1 || inflight < 1 || images < 1 || images > 64) {
        s_usage(stderr);
        return 2;
    }
    dq_dataset ds;
    dq_err err = {{0}};
    if (dq_dataset_load_dir(&ds, data, 0, &err) != DQ_OK) {
        fprintf(stderr, "svc_load: %s\n", err.msg);
        return 1;
    }
    s_thread *ts = calloc((size_t)clients, sizeof *ts);
    pthread_t *th = calloc((size_t)clients, sizeof *th);
    if (!ts || !th) return 1;
    double t0 = dq_clock_now_s();
    for (int i = 0; i < clients; i++) {
        ts[i] = (s_thread){.id = i, .endpoint = endpoint, .service = service, .ds = &ds,
                           .inflight = inflight, .images = images, .end = t0 + seconds};
        ts[i].lat_ms = malloc(S_MAX_REQ * sizeof(float));
        ts[i].seen = calloc(S_MAX_REQ, 1);
        ts[i].sent_at = malloc(S_MAX_REQ * sizeof(double));
        if (!ts[i].lat_ms || !ts[i].seen || !ts[i].sent_at) return 1;
        if (pthread_create(&th[i], NULL, s_run, &ts[i]) != 0) return 1;
    }
    s_thread sum = {0};
    int64_t nlat = 0;
    for (int i = 0; i < clients; i++) {
        pthread_join(th[i], NULL);
        nlat += ts[i].delivered;
    }
    double secs = dq_clock_now_s() - t0;
    float *lat = malloc((size_t)(nlat > 0 ? nlat : 1) * sizeof(float));
    int64_t k = 0;
    for (int i = 0; i < clients; i++) {
        memcpy(lat + k, ts[i].lat_ms, (size_t)ts[i].delivered * sizeof(float));
        k += ts[i].delivered;
        sum.sent += ts[i].sent;
        sum.delivered += ts[i].delivered;
        sum.lost += ts[i].lost;
        sum.twice += ts[i].twice;
        sum.wrong += ts[i].wrong;
        sum.notok += ts[i].notok;
        sum.dup_dropped += ts[i].dup_dropped;
        sum.resends += ts[i].resends;
    }
    qsort(lat, (size_t)nlat, sizeof(float), s_cmp);
    printf("{\"clients\": %d, \"sent\": %lld, \"delivered\": %lld, \"seconds\": %.2f, "
           "\"req_per_s\": %.0f, \"p50_ms\": %.2f, \"p99_ms\": %.2f, \"lost\": %lld, "
           "\"twice\": %lld, \"wrong\": %lld, \"not_ok\": %lld, \"client_dups_dropped\": %lld, "
           "\"resends\": %lld}\n",
           clients, (long long)sum.sent, (long long)sum.delivered, secs,
           (double)sum.delivered / seconds, nlat ? lat[nlat / 2] : 0.0,
           nlat ? lat[(nlat * 99) / 100] : 0.0, (long long)sum.lost, (long long)sum.twice,
           (long long)sum.wrong, (long long)sum.notok, (long long)sum.dup_dropped,
           (long long)sum.resends);
    int bad = sum.lost || sum.twice || sum.wrong || sum.notok;
    for (int i = 0; i < clients; i++) {
        free(ts[i].lat_ms);
        free(ts[i].seen);
        free(ts[i].sent_at);
    }
    free(ts);
    free(th);
    free(lat);
    dq_dataset_free(&ds);
    return bad ? 1 : 0;
}
