/* progress.c - terminal progress bar / plain progress lines. */
#include "cli/progress.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double dq_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void dq_progress_start(dq_progress *p, FILE *out, const char *label, int64_t total)
{
    memset(p, 0, sizeof *p);
    p->out = out;
    p->tty = out && isatty(fileno(out));
    snprintf(p->label, sizeof p->label, "%s", label);
    p->total = total;
    p->start = dq_now();
    p->last_draw = p->start;
    p->plain_every = 10.0;
}

void dq_progress_update(dq_progress *p, int64_t done, double loss)
{
    if (!p->out) return;
    double now = dq_now();
    bool finished = done >= p->total;
    double gap = p->tty ? 0.1 : p->plain_every;
    if (!finished && now - p->last_draw < gap) return;
    if (!p->tty && finished) return; /* the caller prints the epoch summary */
    p->last_draw = now;
    double el = now - p->start;
    double rate = el > 0 ? (double)done / el : 0.0;
    char lossbuf[32] = "";
    if (!isnan(loss)) snprintf(lossbuf, sizeof lossbuf, "  loss %.4f", loss);
    if (p->tty) {
        int width = 30;
        int fill = p->total > 0 ? (int)(width * done / p->total) : 0;
        char bar[64];
        for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
        bar[width] = '\0';
        fprintf(p->out, "\r%s [%s] %lld/%lld  %.0f samples/s%s\033[K", p->label, bar,
                (long long)done, (long long)p->total, rate, lossbuf);
    } else {
        fprintf(p->out, "%s: %lld/%lld  %.0f samples/s%s\n", p->label, (long long)done,
                (long long)p->total, rate, lossbuf);
    }
    fflush(p->out);
}

void dq_progress_end(dq_progress *p)
{
    if (p->out && p->tty) {
        fprintf(p->out, "\r\033[K");
        fflush(p->out);
    }
}
