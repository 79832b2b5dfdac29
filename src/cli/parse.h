/* parse.h - checked conversion of command-line option values.
 *
 * Every program's main parses options with getopt_long and these helpers, so
 * "--epochs abc" or "--lr -1" is a one-line error naming the option and the
 * accepted range instead of a silent atoi() zero.
 */
#ifndef DQ_CLI_PARSE_H
#define DQ_CLI_PARSE_H

#include <stdint.h>

#include "base/status.h"

dq_status dq_cli_parse_int(const char *opt, const char *val, int64_t min, int64_t max,
                           int64_t *out, dq_err *err);
dq_status dq_cli_parse_u64(const char *opt, const char *val, uint64_t *out, dq_err *err);
/* Finite float in [min, max]. */
dq_status dq_cli_parse_float(const char *opt, const char *val, double min, double max,
                             float *out, dq_err *err);

#endif
