/* parse.c - checked option value conversion (strtoll/strtod with full-string checks). */
#include "cli/parse.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>

dq_status dq_cli_parse_int(const char *opt, const char *val, int64_t min, int64_t max,
                           int64_t *out, dq_err *err)
{
    char *end = NULL;
    errno = 0;
    long long v = val ? strtoll(val, &end, 10) : 0;
    if (!val || end == val || *end != '\0' || errno == ERANGE || v < min || v > max)
        return dq_fail(err, DQ_ERR_ARG, "%s: expected an integer in [%" PRId64 ", %" PRId64
                       "], got '%s'", opt, min, max, val ? val : "");
    *out = v;
    return DQ_OK;
}

dq_status dq_cli_parse_u64(const char *opt, const char *val, uint64_t *out, dq_err *err)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = (val && val[0] != '-') ? strtoull(val, &end, 10) : 0;
    if (!val || val[0] == '-' || end == val || *end != '\0' || errno == ERANGE)
        return dq_fail(err, DQ_ERR_ARG, "%s: expected a non-negative integer, got '%s'", opt,
                       val ? val : "");
    *out = v;
    return DQ_OK;
}

dq_status dq_cli_parse_float(const char *opt, const char *val, double min, double max,
                             float *out, dq_err *err)
{
    char *end = NULL;
    errno = 0;
    double v = val ? strtod(val, &end) : 0;
    if (!val || end == val || *end != '\0' || errno == ERANGE || !isfinite(v) || v < min ||
        v > max)
        return dq_fail(err, DQ_ERR_ARG, "%s: expected a number in [%g, %g], got '%s'", opt,
                       min, max, val ? val : "");
    *out = (float)v;
    return DQ_OK;
}
