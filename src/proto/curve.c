/* curve.c - CURVE certificates (czmq's ZPL text format) and socket setup;
 * see curve.h for the format and for how handshake failures surface.
 *
 * The ZPL reader is the small subset certificates use: '#' comment lines,
 * a section name at indent 0, `key = "value"` (or unquoted) below it at a
 * deeper indent. Only the `curve` section is read; `metadata` is ignored.
 */
#include "proto/curve.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "proto/wire.h"

/* ---- writing ------------------------------------------------------------------- */

static dq_status s_write(const char *path, int mode, const char *kind, const char *pub,
                         const char *sec, dq_err *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);
    if (fd < 0)
        return dq_fail(err, DQ_ERR_IO, "keygen: cannot create %s: %s", path, strerror(errno));
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        return dq_fail(err, DQ_ERR_IO, "keygen: %s: %s", path, strerror(errno));
    }
    time_t now = time(NULL);
    struct tm tm;
    char stamp[32];
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm);
    fprintf(f, "#   ****  Generated on %s by distillq-keygen  ****\n", stamp);
    fprintf(f, "#   ZeroMQ CURVE %s Certificate\n", kind);
    if (sec)
        fprintf(f, "#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.\n");
    else
        fprintf(f, "#   Exchange securely, or use a secure mechanism to verify the contents\n"
                   "#   of this file after exchange.\n");
    fprintf(f, "\nmetadata\ncurve\n    public-key = \"%s\"\n", pub);
    if (sec) fprintf(f, "    secret-key = \"%s\"\n", sec);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad)
        return dq_fail(err, DQ_ERR_IO, "keygen: writing %s failed", path);
    return DQ_OK;
}

dq_status dq_curve_keygen(const char *path, dq_err *err)
{
    char pub[DQ_CURVE_Z85_LEN + 1], sec[DQ_CURVE_Z85_LEN + 1], spath[4096];
    if (zmq_curve_keypair(pub, sec) != 0)
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "keygen: zmq_curve_keypair: %s (libzmq without "
                       "CURVE?)", zmq_strerror(zmq_errno()));
    if ((size_t)snprintf(spath, sizeof spath, "%s_secret", path) >= sizeof spath)
        return dq_fail(err, DQ_ERR_ARG, "keygen: path too long: %s", path);
    if (access(path, F_OK) == 0 || access(spath, F_OK) == 0)
        return dq_fail(err, DQ_ERR_ARG, "keygen: %s or %s exists already (not overwritten)", path,
                       spath);
    DQ_TRY(s_write(spath, 0600, "**Secret**", pub, sec, err));
    dq_status st = s_write(path, 0644, "Public", pub, NULL, err);
    memset(sec, 0, sizeof sec);
    return st;
}

/* ---- reading ------------------------------------------------------------------- */

static bool s_is_z85_key(const char *s)
{
    uint8_t bin[32];
    return strlen(s) == DQ_CURVE_Z85_LEN && zmq_z85_decode(bin, s) != NULL;
}

/* Value of a `key = value` line (quotes removed) into out; false if the
 * line is not such a line. */
static bool s_kv(const char *line, char *key, size_t kcap, char *val, size_t vcap)
{
    const char *eq = strchr(line, '=');
    if (!eq) return false;
    const char *k = line, *ke = eq;
    while (*k == ' ' || *k == '\t') k++;
    while (ke > k && (ke[-1] == ' ' || ke[-1] == '\t')) ke--;
    if ((size_t)(ke - k) >= kcap) return false;
    memcpy(key, k, (size_t)(ke - k));
    key[ke - k] = '\0';
    const char *v = eq + 1;
    while (*v == ' ' || *v == '\t') v++;
    size_t n = strcspn(v, "\r\n");
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t')) n--;
    if (n >= 2 && (v[0] == '"' || v[0] == '\'') && v[n - 1] == v[0]) {
        v++;
        n -= 2;
    }
    if (n >= vcap) return false;
    memcpy(val, v, n);
    val[n] = '\0';
    return true;
}

dq_status dq_curve_cert_load(dq_curve_cert *c, const char *path, bool need_secret, dq_err *err)
{
    memset(c, 0, sizeof *c);
    FILE *f = fopen(path, "r");
    if (!f) return dq_fail(err, DQ_ERR_IO, "certificate %s: %s", path, strerror(errno));
    char line[1024], section[64] = "", key[64], val[128];
    while (fgets(line, sizeof line, f)) {
        const char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        if (*p == '#' || *p == '\n' || *p == '\r' || *p == '\0') continue;
        if (p == line) { /* indent 0: a section */
            size_t n = strcspn(p, " \t\r\n=");
            if (n >= sizeof section) n = sizeof section - 1;
            memcpy(section, p, n);
            section[n] = '\0';
            continue;
        }
        if (strcmp(section, "curve") != 0 || !s_kv(p, key, sizeof key, val, sizeof val)) continue;
        if (strcmp(key, "public-key") == 0) snprintf(c->public_key, sizeof c->public_key, "%.40s", val);
        else if (strcmp(key, "secret-key") == 0)
            snprintf(c->secret_key, sizeof c->secret_key, "%.40s", val);
    }
    fclose(f);
    memset(line, 0, sizeof line);
    memset(val, 0, sizeof val);
    if (!s_is_z85_key(c->public_key))
        return dq_fail(err, DQ_ERR_FORMAT, "certificate %s: no valid public-key (40 Z85 "
                       "characters) in its curve section", path);
    if (need_secret && !s_is_z85_key(c->secret_key))
        return dq_fail(err, DQ_ERR_FORMAT, "certificate %s: no valid secret-key: give the "
                       "NAME_secret file", path);
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    if (n > 7 && strcmp(base + n - 7, "_secret") == 0) n -= 7;
    if (n > DQ_CURVE_NAME_MAX) n = DQ_CURVE_NAME_MAX;
    memcpy(c->name, base, n);
    c->name[n] = '\0';
    return DQ_OK;
}

static int s_cmp_name(const void *a, const void *b)
{
    return strcmp(((const dq_curve_cert *)a)->name, ((const dq_curve_cert *)b)->name);
}

dq_status dq_curve_allow_load(dq_curve_allow *a, const char *dir, dq_err *err)
{
    memset(a, 0, sizeof *a);
    DIR *d = opendir(dir);
    if (!d) return dq_fail(err, DQ_ERR_IO, "allow directory %s: %s", dir, strerror(errno));
    int cap = 0;
    dq_status st = DQ_OK;
    struct dirent *e;
    while (st == DQ_OK && (e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (e->d_name[0] == '.' || (n > 7 && strcmp(e->d_name + n - 7, "_secret") == 0)) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
        if (a->n == cap) {
            int nc = cap ? 2 * cap : 16;
            dq_curve_cert *nv = realloc(a->certs, (size_t)nc * sizeof *nv);
            if (!nv) {
                st = dq_fail(err, DQ_ERR_NOMEM, "allow directory %s: out of memory", dir);
                break;
            }
            a->certs = nv;
            cap = nc;
        }
        st = dq_curve_cert_load(&a->certs[a->n], path, false, err);
        if (st == DQ_OK) a->certs[a->n++].secret_key[0] = '\0';
    }
    closedir(d);
    if (st != DQ_OK) {
        dq_curve_allow_free(a);
        return st;
    }
    if (a->n > 1) qsort(a->certs, (size_t)a->n, sizeof *a->certs, s_cmp_name);
    return DQ_OK;
}

void dq_curve_allow_free(dq_curve_allow *a)
{
    free(a->certs);
    a->certs = NULL;
    a->n = 0;
}

const dq_curve_cert *dq_curve_allow_find(const dq_curve_allow *a, const uint8_t *key)
{
    char z[DQ_CURVE_Z85_LEN + 1];
    if (!zmq_z85_encode(z, key, 32)) return NULL;
    for (int i = 0; i < a->n; i++)
        if (strcmp(a->certs[i].public_key, z) == 0) return &a->certs[i];
    return NULL;
}

/* ---- sockets ------------------------------------------------------------------- */

static dq_status s_set(void *s, int opt, const void *v, size_t len, const char *name, dq_err *err)
{
    if (zmq_setsockopt(s, opt, v, len) == 0) return DQ_OK;
    return dq_fail(err, DQ_ERR_NET, "zmq_setsockopt(%s): %s", name, zmq_strerror(zmq_errno()));
}

dq_status dq_curve_client_apply(void *sock, const char *server_cert, const char *my_secret_cert,
                                int handshake_ms, dq_err *err)
{
    dq_curve_cert srv, me;
    DQ_TRY(dq_curve_cert_load(&srv, server_cert, false, err));
    DQ_TRY(dq_curve_cert_load(&me, my_secret_cert, true, err));
    dq_status st = s_set(sock, ZMQ_CURVE_SERVERKEY, srv.public_key, DQ_CURVE_Z85_LEN,
                         "CURVE_SERVERKEY", err);
    if (!st) st = s_set(sock, ZMQ_CURVE_PUBLICKEY, me.public_key, DQ_CURVE_Z85_LEN,
                        "CURVE_PUBLICKEY", err);
    if (!st) st = s_set(sock, ZMQ_CURVE_SECRETKEY, me.secret_key, DQ_CURVE_Z85_LEN,
                        "CURVE_SECRETKEY", err);
    if (!st && handshake_ms > 0)
        st = s_set(sock, ZMQ_HANDSHAKE_IVL, &handshake_ms, sizeof handshake_ms, "HANDSHAKE_IVL",
                   err);
    memset(&me, 0, sizeof me);
    return st;
}

dq_status dq_curve_server_apply(void *sock, const dq_curve_cert *server, const char *domain,
                                dq_err *err)
{
    int one = 1;
    DQ_TRY(s_set(sock, ZMQ_CURVE_SERVER, &one, sizeof one, "CURVE_SERVER", err));
    DQ_TRY(s_set(sock, ZMQ_CURVE_SECRETKEY, server->secret_key, DQ_CURVE_Z85_LEN,
                 "CURVE_SECRETKEY", err));
    return s_set(sock, ZMQ_ZAP_DOMAIN, domain, strlen(domain), "ZAP_DOMAIN", err);
}

/* ---- handshake watch ----------------------------------------------------------- */

dq_status dq_curve_watch_start(dq_curve_watch *w, void *ctx, void *sock, bool curve,
                               dq_err *err)
{
    memset(w, 0, sizeof *w);
    w->curve = curve;
    char ep[64];
    snprintf(ep, sizeof ep, "inproc://dq-curve-watch-%p", (void *)sock);
    int events = curve ? DQ_CURVE_WATCH_EVENTS : DQ_CURVE_WATCH_EVENTS_PLAIN;
    if (zmq_socket_monitor(sock, ep, events) != 0 || !(w->mon = zmq_socket(ctx, ZMQ_PAIR)) ||
        zmq_connect(w->mon, ep) != 0) {
        dq_status st = dq_fail(err, DQ_ERR_NET, "socket monitor: %s", zmq_strerror(zmq_errno()));
        dq_curve_watch_stop(w, sock);
        return st;
    }
    return DQ_OK;
}

dq_status dq_curve_watch_event(dq_curve_watch *w, int ev, uint32_t value, const char *endpoint,
                               dq_err *err)
{
    if (ev == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL &&
        value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH)
        return w->curve
                   ? dq_fail(err, DQ_ERR_AUTH, "%s is a broker without CURVE (started without "
                             "--curve-cert): drop --curve-server-cert and --curve-cert, or "
                             "start the broker with CURVE", endpoint)
                   : dq_fail(err, DQ_ERR_AUTH, "%s requires CURVE (the broker runs with "
                             "--curve-cert): give --curve-server-cert BROKER_CERT and "
                             "--curve-cert YOUR_CERT_secret", endpoint);
    if (!w->curve) return DQ_OK;
    switch (ev) {
    case ZMQ_EVENT_CONNECTED: w->connected = true; break;
    case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
        w->ok = true;
        w->connected = false;
        w->failures = 0;
        break;
    case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
        return dq_fail(err, DQ_ERR_AUTH, "%s refused our CURVE key (ZAP status %u): it is not "
                       "in the broker's allow directory for this side (students: "
                       "--allow-students, workers: --allow-workers)", endpoint, value);
    case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
    case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
        w->connected = false;
        if (!w->ok && ++w->failures >= 2)
            return dq_fail(err, DQ_ERR_AUTH, "%s: CURVE handshake failed %d times (%s): wrong "
                           "--curve-server-cert (not this broker's key), or a broker without "
                           "CURVE", endpoint, w->failures,
                           ev == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL ? "protocol error"
                                                                     : "connection closed");
        break;
    case ZMQ_EVENT_DISCONNECTED:
        if (w->connected && !w->ok && ++w->failures >= 2)
            return dq_fail(err, DQ_ERR_AUTH, "%s: the connection closed %d times before the "
                           "CURVE handshake completed: wrong --curve-server-cert (not this "
                           "broker's key), or a broker without CURVE", endpoint, w->failures);
        w->connected = false;
        w->ok = false;
        break;
    default: break;
    }
    return DQ_OK;
}

dq_status dq_curve_watch_poll(dq_curve_watch *w, const char *endpoint, dq_err *err)
{
    if (!w->mon) return DQ_OK;
    for (;;) {
        uint16_t ev;
        uint32_t value;
        if (dq_wire_monitor_event(w->mon, &ev, &value, NULL) != DQ_OK) return DQ_OK;
        DQ_TRY(dq_curve_watch_event(w, ev, value, endpoint, err));
    }
}

void dq_curve_watch_stop(dq_curve_watch *w, void *sock)
{
    if (sock && w->mon) zmq_socket_monitor(sock, NULL, 0);
    if (w->mon) zmq_close(w->mon);
    w->mon = NULL;
}
