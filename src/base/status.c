/* status.c - status names and the detail-message helpers. */
#include "base/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const s_names[] = {
    [DQ_OK] = "ok",
    [DQ_ERR_NOMEM] = "out of memory",
    [DQ_ERR_ARG] = "invalid argument",
    [DQ_ERR_SHAPE] = "shape mismatch",
    [DQ_ERR_IO] = "i/o error",
    [DQ_ERR_FORMAT] = "malformed data",
    [DQ_ERR_NOT_FOUND] = "not found",
    [DQ_ERR_UNSUPPORTED] = "unsupported",
    [DQ_ERR_DEVICE] = "device failed",
    [DQ_ERR_INTERRUPTED] = "interrupted",
    [DQ_ERR_PROTO] = "protocol error",
    [DQ_ERR_TIMEOUT] = "timed out",
    [DQ_ERR_NET] = "network error",
    [DQ_ERR_OVERLOADED] = "overloaded",
    [DQ_ERR_UNREACHABLE] = "peer unreachable",
    [DQ_ERR_SYSTEM] = "system resource error",
    [DQ_ERR_INTERNAL] = "internal error",
    [DQ_ERR_AUTH] = "authentication failed",
};
_Static_assert(sizeof s_names / sizeof s_names[0] == DQ_STATUS_COUNT,
               "every dq_status needs a name");

const char *dq_strerror(dq_status st)
{
    if ((int)st < 0 || st >= DQ_STATUS_COUNT) return "unknown status";
    return s_names[st];
}

dq_status dq_fail(dq_err *err, dq_status st, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return st;
}

dq_status dq_fail_prefix(dq_err *err, dq_status st, const char *fmt, ...)
{
    if (!err) return st;
    char prefix[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    char old[sizeof err->msg];
    memcpy(old, err->msg, sizeof old);
    old[sizeof old - 1] = '\0';
    /* Concatenate by hand: truncation of an over-long detail is intended. */
    size_t pl = strnlen(prefix, sizeof err->msg - 1);
    size_t ol = strnlen(old, sizeof err->msg - 1 - pl);
    memcpy(err->msg, prefix, pl);
    memcpy(err->msg + pl, old, ol);
    err->msg[pl + ol] = '\0';
    return st;
}
