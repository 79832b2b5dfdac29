/* opts.c - option tables: the getopt_long array, checked parsing and the
 * --help lines from one dq_opt array (see opts.h). */
#include "cli/opts.h"

#include <getopt.h>
#include <string.h>

#include "cli/parse.h"

#define S_VAL_BASE 256 /* getopt_long value of entry i: S_VAL_BASE + i */

/* Converts one occurrence of option o (its argument val) into o->dst. */
static dq_status s_apply(const dq_opt *o, const char *val, dq_err *err)
{
    char opt[80];
    snprintf(opt, sizeof opt, "--%s", o->name);
    int64_t v = 0;
    switch (o->kind) {
    case DQ_OPTK_FLAG: *(bool *)o->dst = true; return DQ_OK;
    case DQ_OPTK_STR: *(const char **)o->dst = val; return DQ_OK;
    case DQ_OPTK_INT:
        DQ_TRY(dq_cli_parse_int(opt, val, o->min, o->max, &v, err));
        if (v < INT32_MIN || v > INT32_MAX) /* a table whose range exceeds int */
            return dq_fail(err, DQ_ERR_INTERNAL, "%s: range [%lld, %lld] exceeds an int", opt,
                           (long long)o->min, (long long)o->max);
        *(int *)o->dst = (int)v;
        return DQ_OK;
    case DQ_OPTK_I64: return dq_cli_parse_int(opt, val, o->min, o->max, (int64_t *)o->dst, err);
    case DQ_OPTK_U64: return dq_cli_parse_u64(opt, val, (uint64_t *)o->dst, err);
    case DQ_OPTK_F32: return dq_cli_parse_float(opt, val, o->fmin, o->fmax, (float *)o->dst, err);
    case DQ_OPTK_CALL: return o->fn(o->dst, opt, val, err);
    default: return dq_fail(err, DQ_ERR_INTERNAL, "%s: no value to convert", opt);
    }
}

dq_status dq_opts_parse(const dq_opt *opts, int n, int argc, char **argv,
                        dq_opts_action *action, dq_err *err)
{
    int first = argc;
    DQ_TRY(dq_opts_parse_args(opts, n, argc, argv, &first, action, err));
    if (*action == DQ_OPTS_RUN && first < argc) {
        *action = DQ_OPTS_USAGE;
        return dq_fail(err, DQ_ERR_ARG, "unexpected argument '%s'", argv[first]);
    }
    return DQ_OK;
}

dq_status dq_opts_parse_args(const dq_opt *opts, int n, int argc, char **argv, int *first,
                             dq_opts_action *action, dq_err *err)
{
    *action = DQ_OPTS_RUN;
    *first = argc;
    struct option lo[DQ_OPTS_MAX + 1];
    if (n > DQ_OPTS_MAX)
        return dq_fail(err, DQ_ERR_INTERNAL, "option table of %d entries (at most %d)", n,
                       DQ_OPTS_MAX);
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (opts[i].kind == DQ_OPTK_TEXT) continue;
        lo[k++] = (struct option){opts[i].name, opts[i].arg ? required_argument : no_argument,
                                  NULL, S_VAL_BASE + i};
    }
    lo[k] = (struct option){NULL, 0, NULL, 0};
    optind = 1; /* a fresh scan, also when a test parses twice */
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        if (c < S_VAL_BASE || c >= S_VAL_BASE + n) { /* getopt printed the reason */
            *action = DQ_OPTS_USAGE;
            return dq_fail(err, DQ_ERR_ARG, "try --help");
        }
        const dq_opt *o = &opts[c - S_VAL_BASE];
        if (o->kind == DQ_OPTK_HELP) {
            *action = DQ_OPTS_HELP;
            return DQ_OK;
        }
        if (o->kind == DQ_OPTK_VERSION) {
            *action = DQ_OPTS_VERSION;
            return DQ_OK;
        }
        DQ_TRY(s_apply(o, o->arg ? optarg : NULL, err));
    }
    *first = optind; /* getopt_long moved the arguments that are not options here */
    return DQ_OK;
}

void dq_opts_print_help(FILE *f, const dq_opt *opts, int n, int col)
{
    bool version = false;
    for (int i = 0; i < n; i++) version |= opts[i].kind == DQ_OPTK_VERSION;
    for (int i = 0; i < n; i++) {
        const dq_opt *o = &opts[i];
        if (o->kind == DQ_OPTK_TEXT) {
            fprintf(f, "%s\n", o->help ? o->help : "");
            continue;
        }
        if (o->kind == DQ_OPTK_VERSION) continue; /* printed with --help */
        if (o->kind == DQ_OPTK_HELP) {
            fprintf(f, "  --help%s\n", version ? ", --version" : "");
            continue;
        }
        int len = fprintf(f, "  --%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
        const char *h = o->help ? o->help : "";
        fprintf(f, "%*s", len < col ? col - len : 2, "");
        for (;;) { /* one line of help, then each continuation line at col */
            size_t l = strcspn(h, "\n");
            fprintf(f, "%.*s\n", (int)l, h);
            if (!h[l]) break;
            h += l + 1;
            fprintf(f, "%*s", col, "");
        }
    }
}
