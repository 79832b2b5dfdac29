/* clock.h - the monotonic clock every layer times things with.
 *
 * Deadlines, heartbeats and throughput all need a clock that never jumps
 * back with the wall clock, so there is one, here, below every module.
 */
#ifndef DQ_CLOCK_H
#define DQ_CLOCK_H

#include <stdint.h>

/* Milliseconds of CLOCK_MONOTONIC (arbitrary origin). */
int64_t dq_clock_now_ms(void);

/* Seconds of CLOCK_MONOTONIC as a double, for rates and durations. */
double dq_clock_now_s(void);

#endif
