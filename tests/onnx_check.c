/* onnx_check.c - imports the ONNX files tests/onnx_export.py wrote and
 * compares each forward with PyTorch's (TAP, one test per case).
 *
 * usage: onnx_check DIR        run DIR/manifest.txt (see onnx_export.py)
 *        onnx_check --text F   print the model-file text F.onnx becomes
 *
 * A case "NAME ok OUT[,OUT..] [mean=..] [std=..]" must import, carry that
 * normalisation, and give each output within 1e-4 of PyTorch's relative to
 * the largest |value| of the reference (the logits' scale); "NAME error
 * TEXT" must fail with a one-line message containing TEXT. The exit status
 * is non-zero when any case fails.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model_file.h"
#include "model/net.h"
#include "model/onnx_import.h"

#define S_TOL 1e-4
#ifndef DQ_TOP_SRCDIR
#define DQ_TOP_SRCDIR ".."
#endif

/* Reads a float32 C-order .npy (format 1.x); returns its data (malloc'd) and
 * fills shape/ndim, or NULL with a reason in why. */
static float *s_npy(const char *path, int64_t shape[8], int *ndim, char *why, size_t wsz)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(why, wsz, "%s: cannot open", path);
        return NULL;
    }
    unsigned char pre[10];
    char hdr[1024];
    float *data = NULL;
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0 || pre[6] != 1) {
        snprintf(why, wsz, "%s: not a .npy 1.x", path);
        goto done;
    }
    size_t hl = (size_t)pre[8] | (size_t)pre[9] << 8;
    if (hl >= sizeof hdr || fread(hdr, 1, hl, f) != hl) {
        snprintf(why, wsz, "%s: bad header", path);
        goto done;
    }
    hdr[hl] = '\0';
    const char *sp = strstr(hdr, "'shape': (");
    if (!strstr(hdr, "'descr': '<f4'") || !strstr(hdr, "'fortran_order': False") || !sp) {
        snprintf(why, wsz, "%s: not float32 C order", path);
        goto done;
    }
    sp += 10;
    int64_t n = 1;
    *ndim = 0;
    while (*sp && *sp != ')' && *ndim < 8) {
        char *end;
        long long d = strtoll(sp, &end, 10);
        if (end == sp) break;
        shape[(*ndim)++] = d;
        n *= d;
        sp = end;
        while (*sp == ',' || *sp == ' ') sp++;
    }
    data = malloc((size_t)n * sizeof *data);
    if (!data || fread(data, sizeof *data, (size_t)n, f) != (size_t)n) {
        snprintf(why, wsz, "%s: short data", path);
        free(data);
        data = NULL;
    }
done:
    fclose(f);
    return data;
}

/* Parses "a,b,c" into v; returns the count. */
static int s_floats(const char *s, float *v, int max)
{
    int n = 0;
    while (s && *s && n < max) {
        char *end;
        v[n++] = strtof(s, &end);
        s = *end == ',' ? end + 1 : NULL;
    }
    return n;
}

/* The spec's normalisation against mean=/std= words of the manifest. */
static int s_check_norm(const dq_net_t *net, char *words, char *why, size_t wsz)
{
    const dq_net_input *in = dq_net_input_spec(net);
    float mean[4] = {0, 0, 0, 0}, std[4] = {1, 1, 1, 1};
    for (char *w = strtok(words, " "); w; w = strtok(NULL, " ")) {
        float *dst = strncmp(w, "mean=", 5) == 0 ? mean : strncmp(w, "std=", 4) == 0 ? std : NULL;
        if (!dst) continue;
        int n = s_floats(strchr(w, '=') + 1, dst, 4);
        for (int c = n; c < 4; c++) dst[c] = dst[0];
    }
    for (int c = 0; c < in->channels; c++)
        if (fabsf(in->mean[c] - mean[c]) > 1e-6f || fabsf(in->std[c] - std[c]) > 1e-6f) {
            snprintf(why, wsz, "channel %d normalises with mean %g std %g, metadata says %g %g",
                     c, (double)in->mean[c], (double)in->std[c], (double)mean[c],
                     (double)std[c]);
            return 0;
        }
    return 1;
}

/* params=NAME: the imported net has exactly the parameters and buffers of
 * models/NAME.model, by name and size (state_dict keys). */
static int s_check_params(dq_net_t *net, const char *words, char *why, size_t wsz)
{
    const char *p = strstr(words, "params=");
    if (!p) return 1;
    char path[512];
    snprintf(path, sizeof path, "%s/models/%.*s.model", DQ_TOP_SRCDIR,
             (int)strcspn(p + 7, " "), p + 7);
    dq_net_t *ref = NULL;
    dq_err err = {{0}};
    if (dq_net_load(&ref, path, &err) != DQ_OK) {
        snprintf(why, wsz, "%.400s", err.msg);
        return 0;
    }
    int good = dq_net_param_count(ref) == dq_net_param_count(net) &&
               dq_net_buffer_count(ref) == dq_net_buffer_count(net);
    if (!good)
        snprintf(why, wsz, "%d parameters and %d buffers, %.300s has %d and %d",
                 dq_net_param_count(net), dq_net_buffer_count(net), path,
                 dq_net_param_count(ref), dq_net_buffer_count(ref));
    for (int i = 0; good && i < dq_net_param_count(ref); i++) {
        const char *name = dq_net_param_name(ref, i);
        dq_tensor *t = dq_net_find_tensor(net, name);
        good = t && dq_tensor_numel(t) == dq_tensor_numel(dq_net_param(ref, i));
        if (!good) snprintf(why, wsz, "no parameter %.100s of %.300s's size", name, path);
    }
    for (int i = 0; good && i < dq_net_buffer_count(ref); i++) {
        const char *name = dq_net_buffer_name(ref, i);
        good = dq_net_buffer(ref, i) == NULL || dq_net_find_tensor(net, name) != NULL;
        if (!good) snprintf(why, wsz, "no buffer %.100s", name);
    }
    dq_net_destroy(&ref);
    return good;
}

/* One "ok" case: import, forward, compare every output. */
static int s_ok_case(const char *dir, const char *name, char *outs, char *rest, char *why,
                     size_t wsz)
{
    char path[1024];
    dq_err err = {{0}};
    dq_net_t *net = NULL;
    float *x = NULL;
    int good = 0;
    snprintf(path, sizeof path, "%s/%s.onnx", dir, name);
    if (dq_onnx_load_net(&net, path, &err) != DQ_OK) {
        snprintf(why, wsz, "import failed: %.400s", err.msg);
        return 0;
    }
    if (!s_check_params(net, rest, why, wsz)) goto done;
    if (!s_check_norm(net, rest, why, wsz)) goto done;
    int64_t xs[8];
    int xd;
    snprintf(path, sizeof path, "%s/%s.input.npy", dir, name);
    if (!(x = s_npy(path, xs, &xd, why, wsz))) goto done;
    dq_tensor in = dq_tensor_view(x, 4, xs);
    if (dq_net_plan(net, xs[0], &err) != DQ_OK ||
        dq_net_forward(net, &in, false, NULL, &err) != DQ_OK) {
        snprintf(why, wsz, "forward: %.400s", err.msg);
        goto done;
    }
    double worst = 0;
    char *save = NULL;
    for (char *o = strtok_r(outs, ",", &save); o; o = strtok_r(NULL, ",", &save)) {
        int64_t rs[8];
        int rd;
        snprintf(path, sizeof path, "%s/%s.%s.npy", dir, name, o);
        float *ref = s_npy(path, rs, &rd, why, wsz);
        if (!ref) goto done;
        const dq_tensor *y = dq_net_output(net, o);
        int64_t n = 1;
        for (int i = 0; i < rd; i++) n *= rs[i];
        if (!y || dq_tensor_numel(y) != n) {
            snprintf(why, wsz, "output %s: %s", o, y ? "wrong size" : "missing");
            free(ref);
            goto done;
        }
        double scale = 0, err_max = 0;
        for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(ref[i]));
        for (int64_t i = 0; i < n; i++) err_max = fmax(err_max, fabs(y->data[i] - ref[i]));
        free(ref);
        double rel = err_max / fmax(scale, 1e-6);
        worst = fmax(worst, rel);
        if (!(rel <= S_TOL)) {
            snprintf(why, wsz, "output %s: max abs error %.3g at scale %.3g (> %g relative)",
                     o, err_max, scale, S_TOL);
            goto done;
        }
    }
    /* The first output is also "logits". */
    if (!dq_net_output(net, "logits")) {
        snprintf(why, wsz, "no 'logits' output");
        goto done;
    }
    snprintf(why, wsz, "max relative error %.2g", worst);
    good = 1;
done:
    free(x);
    dq_net_destroy(&net);
    return good;
}

static int s_error_case(const char *dir, const char *name, const char *want, char *why,
                        size_t wsz)
{
    char path[1024];
    dq_err err = {{0}};
    dq_net_t *net = NULL;
    snprintf(path, sizeof path, "%s/%s.onnx", dir, name);
    if (dq_onnx_load_net(&net, path, &err) == DQ_OK) {
        dq_net_destroy(&net);
        snprintf(why, wsz, "imported, expected an error");
        return 0;
    }
    if (strchr(err.msg, '\n') || !strstr(err.msg, want)) {
        snprintf(why, wsz, "message '%.300s' lacks '%.100s' or is not one line", err.msg, want);
        return 0;
    }
    snprintf(why, wsz, "%.400s", err.msg);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--text") == 0) {
        dq_onnx_import imp;
        dq_err err = {{0}};
        if (dq_onnx_import_file(&imp, argv[2], &err) != DQ_OK) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        fputs(imp.text, stdout);
        dq_onnx_import_free(&imp);
        return 0;
    }
    if (argc != 2) {
        fprintf(stderr, "usage: onnx_check DIR | --text FILE.onnx\n");
        return 2;
    }
    char path[1024], line[1024];
    snprintf(path, sizeof path, "%s/manifest.txt", argv[1]);
    FILE *f = fopen(path, "r");
    if (!f) {
        printf("1..1\nnot ok 1 - %s missing\n", path);
        return 1;
    }
    int n = 0, failed = 0;
    char results[64][600];
    while (n < 64 && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *save = NULL;
        char *name = strtok_r(line, " ", &save);
        char *kind = strtok_r(NULL, " ", &save);
        char *arg = strtok_r(NULL, kind && strcmp(kind, "error") == 0 ? "" : " ", &save);
        char *rest = save ? save : (char *)"";
        if (!name || !kind || !arg) continue;
        char why[512];
        int good = strcmp(kind, "ok") == 0 ? s_ok_case(argv[1], name, arg, rest, why, sizeof why)
                                           : s_error_case(argv[1], name, arg, why, sizeof why);
        failed += !good;
        snprintf(results[n], sizeof results[n], "%s %d - %.40s: %.500s", good ? "ok" : "not ok", n + 1,
                 name, why);
        n++;
    }
    fclose(f);
    printf("1..%d\n", n);
    for (int i = 0; i < n; i++) printf("%s\n", results[i]);
    return failed ? 1 : 0;
}
