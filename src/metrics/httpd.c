/* httpd.c - the /metrics HTTP server (see httpd.h): libmicrohttpd with its
 * internal polling thread; the page is a mutex-guarded copy. */
#include "metrics/httpd.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct dq_metrics_http {
    struct MHD_Daemon *d;
    pthread_mutex_t mu;
    char *page;
    size_t len, cap;
    int port;
    atomic_bool started;      /* MHD's messages: to why until then, then stderr */
    char why[256];            /* MHD's message when the start failed */
};

/* libmicrohttpd's error log: a failed start is reported in our own error
 * (which names the --metrics address), later trouble on stderr. */
static void s_mhd_log(void *cls, const char *fmt, va_list ap)
{
    dq_metrics_http_t *h = cls;
    if (!atomic_load(&h->started)) {
        vsnprintf(h->why, sizeof h->why, fmt, ap);
        size_t n = strlen(h->why);
        while (n > 0 && (h->why[n - 1] == '\n' || h->why[n - 1] == '.')) h->why[--n] = '\0';
        return;
    }
    fprintf(stderr, "metrics httpd: ");
    vfprintf(stderr, fmt, ap);
}

#if MHD_VERSION >= 0x00097002
typedef enum MHD_Result s_result;
#else
typedef int s_result;
#endif

static s_result s_answer(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                         const char *version, const char *upload, size_t *upload_len, void **ptr)
{
    (void)version, (void)upload, (void)upload_len, (void)ptr;
    dq_metrics_http_t *h = cls;
    struct MHD_Response *r;
    unsigned code = MHD_HTTP_OK;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        static const char no[] = "only GET\n";
        r = MHD_create_response_from_buffer(sizeof no - 1, (void *)no, MHD_RESPMEM_PERSISTENT);
        code = MHD_HTTP_METHOD_NOT_ALLOWED;
    } else if (strcmp(url, "/metrics") != 0) {
        static const char nf[] = "see /metrics\n";
        r = MHD_create_response_from_buffer(sizeof nf - 1, (void *)nf, MHD_RESPMEM_PERSISTENT);
        code = MHD_HTTP_NOT_FOUND;
    } else {
        pthread_mutex_lock(&h->mu);
        r = MHD_create_response_from_buffer(h->len, h->page ? h->page : (void *)"",
                                            MHD_RESPMEM_MUST_COPY);
        pthread_mutex_unlock(&h->mu);
        if (r) MHD_add_response_header(r, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    }
    if (!r) return MHD_NO;
    s_result ret = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ret;
}

dq_status dq_metrics_http_start(dq_metrics_http_t **out, const char *hostport, dq_err *err)
{
    *out = NULL;
    const char *colon = strrchr(hostport, ':');
    if (!colon) return dq_fail(err, DQ_ERR_ARG, "--metrics %s: expected HOST:PORT", hostport);
    char host[256];
    size_t hl = (size_t)(colon - hostport);
    if (hl >= sizeof host) return dq_fail(err, DQ_ERR_ARG, "--metrics %s: host too long", hostport);
    memcpy(host, hostport, hl);
    host[hl] = '\0';
    char *end = NULL;
    long port = strtol(colon + 1, &end, 10);
    if (!end || *end || port < 0 || port > 65535)
        return dq_fail(err, DQ_ERR_ARG, "--metrics %s: bad port", hostport);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (host[0] == '\0' || strcmp(host, "*") == 0) {
        sa.sin_addr.s_addr = htonl(INADDR_ANY);
    } else if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai = NULL;
        if (getaddrinfo(host, NULL, &hints, &ai) != 0 || !ai)
            return dq_fail(err, DQ_ERR_ARG, "--metrics %s: cannot resolve %s", hostport, host);
        sa.sin_addr = ((struct sockaddr_in *)ai->ai_addr)->sin_addr;
        freeaddrinfo(ai);
    }
    dq_metrics_http_t *h = calloc(1, sizeof *h);
    if (!h) return dq_fail(err, DQ_ERR_NOMEM, "metrics: out of memory");
    int rc = pthread_mutex_init(&h->mu, NULL);
    if (rc != 0) {
        free(h);
        return dq_fail(err, DQ_ERR_SYSTEM, "metrics: pthread_mutex_init: %s", strerror(rc));
    }
    /* the port also as the daemon's argument: MHD's messages name it */
    h->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG,
                            (uint16_t)port, NULL, NULL, s_answer, h,
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                            MHD_OPTION_EXTERNAL_LOGGER, s_mhd_log, h,
                            MHD_OPTION_CONNECTION_LIMIT, 16u, MHD_OPTION_CONNECTION_TIMEOUT, 10u,
                            MHD_OPTION_END);
    if (!h->d) {
        dq_status st = dq_fail(err, DQ_ERR_NET, "--metrics %s: cannot listen: %s", hostport,
                               h->why[0] ? h->why : "libmicrohttpd gave no reason");
        pthread_mutex_destroy(&h->mu);
        free(h);
        return st;
    }
    atomic_store(&h->started, true);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info ? info->port : (int)port;
    *out = h;
    return DQ_OK;
}

void dq_metrics_http_publish(dq_metrics_http_t *h, const char *text, size_t len)
{
    if (!h) return;
    pthread_mutex_lock(&h->mu);
    if (len > h->cap) {
        char *p = realloc(h->page, len);
        if (p) {
            h->page = p;
            h->cap = len;
        }
    }
    if (len <= h->cap) {
        memcpy(h->page, text, len);
        h->len = len;
    }
    pthread_mutex_unlock(&h->mu);
}

int dq_metrics_http_port(const dq_metrics_http_t *h)
{
    return h->port;
}

void dq_metrics_http_stop(dq_metrics_http_t **p)
{
    if (!p || !*p) return;
    dq_metrics_http_t *h = *p;
    MHD_stop_daemon(h->d);
    pthread_mutex_destroy(&h->mu);
    free(h->page);
    free(h);
    *p = NULL;
}
