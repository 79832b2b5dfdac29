/* progress.h - progress reporting for long work.
 *
 * On a terminal: one bar redrawn in place (\r) at most every 100 ms, with
 * samples/s and the running loss. Otherwise (logs, CI): a plain line every
 * `plain_every` seconds, so logs stay readable.
 */
#ifndef DQ_CLI_PROGRESS_H
#define DQ_CLI_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct {
    FILE *out;
    bool tty;
    char label[64];
    int64_t total;
    double start, last_draw;
    double plain_every;
} dq_progress;

/* Monotonic seconds. */
double dq_now(void);

void dq_progress_start(dq_progress *p, FILE *out, const char *label, int64_t total);
/* done: samples finished so far; loss: running mean loss (NaN to omit). */
void dq_progress_update(dq_progress *p, int64_t done, double loss);
/* Clears the bar on a terminal. */
void dq_progress_end(dq_progress *p);

#endif
