/* status.h - recoverable errors: a status code plus a detail message.
 *
 * Library functions return dq_status and, on failure, write a one-line detail
 * (which file, tensor or field is at fault) into a caller-owned dq_err. Only a
 * program's main() turns that into an exit code. Programmer errors are asserts.
 */
#ifndef DQ_STATUS_H
#define DQ_STATUS_H

#include <stddef.h>

typedef enum {
    DQ_OK = 0,
    DQ_ERR_NOMEM,       /* allocation failed */
    DQ_ERR_ARG,         /* bad argument or option value */
    DQ_ERR_SHAPE,       /* tensor shapes do not fit the op */
    DQ_ERR_IO,          /* open/read/write failed */
    DQ_ERR_FORMAT,      /* malformed or truncated file or message */
    DQ_ERR_NOT_FOUND,   /* named thing (tensor, output, service) missing */
    DQ_ERR_UNSUPPORTED, /* valid request this build cannot serve */
    DQ_ERR_DEVICE,      /* the accelerator is unusable until the process exits
                         * (a sticky CUDA error: illegal address, ECC, ...) */
    DQ_ERR_INTERRUPTED, /* stopped by a signal */
    DQ_ERR_PROTO,       /* wire protocol violation */
    DQ_ERR_TIMEOUT,     /* waited too long */
    DQ_ERR_NET,         /* socket-level failure */
    DQ_ERR_OVERLOADED,  /* queue full: retry later */
    DQ_ERR_UNREACHABLE, /* the peer's connection is gone (EHOSTUNREACH) */
    DQ_ERR_SYSTEM,      /* the OS refused a resource: thread, mutex, signal mask */
    DQ_ERR_INTERNAL,    /* an invariant of our own code does not hold (a bug) */
    DQ_ERR_AUTH,        /* CURVE: key refused, wrong server key, CURVE on one side only */
    DQ_STATUS_COUNT
} dq_status;

/* Detail buffer filled by the failing function (innermost wins). */
typedef struct {
    char msg[512];
} dq_err;

/* Short constant name of a status ("shape mismatch", ...). */
const char *dq_strerror(dq_status st);

/* Formats a detail into err (if non-NULL) and returns st, so callers write
 * `return dq_fail(err, DQ_ERR_SHAPE, "conv2d: input has %d channels", c);`. */
dq_status dq_fail(dq_err *err, dq_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes context to an existing detail ("loading model.st: " + old msg). */
dq_status dq_fail_prefix(dq_err *err, dq_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Propagate a failure unchanged. */
#define DQ_TRY(expr)                                                          \
    do {                                                                      \
        dq_status dq_try_st_ = (expr);                                        \
        if (dq_try_st_ != DQ_OK) return dq_try_st_;                           \
    } while (0)

#endif
