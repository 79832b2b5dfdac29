/* shape.c - "[d0, d1, ...]" for messages (shape.h). */
#include "base/shape.h"

#include <stdio.h>

const char *dq_shape_str(const int64_t *shape, int ndim, char *buf, size_t len)
{
    size_t off = 0;
    if (len == 0) return buf;
    off += (size_t)snprintf(buf + off, len - off, "[");
    for (int i = 0; i < ndim && off < len; i++)
        off += (size_t)snprintf(buf + off, len - off, "%s%lld", i ? ", " : "",
                                (long long)shape[i]);
    if (off < len) snprintf(buf + off, len - off, "]");
    return buf;
}
