/* opts.h - a program's options as one declarative table.
 *
 * Each program's main lists its options once - name, argument name, help
 * text and a typed destination with its accepted range - and gets from that
 * table the getopt_long array, checked parsing (the src/cli/parse.h
 * converters: "--epochs abc" is a one-line error naming the option and the
 * range) and the option lines of --help. Before, every main had its own
 * enum, getopt array and switch, over 120 lines in the trainer and the
 * broker, with the help text kept apart from both.
 *
 * A table is an array of dq_opt, usually built with the DQ_OPT_* macros
 * below inside main (the destinations are main's variables). Parsing writes
 * a destination each time its option appears (the last one wins; a CALL
 * option sees every occurrence in order). Tables are small: at most
 * DQ_OPTS_MAX entries.
 */
#ifndef DQ_CLI_OPTS_H
#define DQ_CLI_OPTS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "base/status.h"

#define DQ_OPTS_MAX 64

typedef enum {
    DQ_OPTK_TEXT = 0, /* no option: a line of help text (a section heading) */
    DQ_OPTK_FLAG,     /* no argument: *(bool *)dst = true */
    DQ_OPTK_STR,      /* *(const char **)dst = the argument (borrowed from argv) */
    DQ_OPTK_INT,      /* *(int *)dst, an integer in [min, max] */
    DQ_OPTK_I64,      /* *(int64_t *)dst, an integer in [min, max] */
    DQ_OPTK_U64,      /* *(uint64_t *)dst, a non-negative integer */
    DQ_OPTK_F32,      /* *(float *)dst, a finite number in [fmin, fmax] */
    DQ_OPTK_CALL,     /* fn(dst, "--name", argument or NULL, err) */
    DQ_OPTK_HELP,     /* --help: parsing stops with DQ_OPTS_HELP */
    DQ_OPTK_VERSION,  /* --version: parsing stops with DQ_OPTS_VERSION */
} dq_opt_kind;

/* A CALL option's parser: converts val (NULL for an option without an
 * argument) into dst; on failure the detail names opt ("--loss"). */
typedef dq_status (*dq_opt_fn)(void *dst, const char *opt, const char *val, dq_err *err);

typedef struct {
    const char *name;   /* long name without "--"; NULL for TEXT */
    const char *arg;    /* argument name in the help ("N", "DIR"); NULL: takes none */
    dq_opt_kind kind;
    void *dst;
    int64_t min, max;   /* INT, I64 */
    double fmin, fmax;  /* F32 */
    dq_opt_fn fn;       /* CALL */
    const char *help;   /* help text; '\n' starts a continuation line */
} dq_opt;

#define DQ_OPT_TEXT(text) {.kind = DQ_OPTK_TEXT, .help = (text)}
#define DQ_OPT_FLAG(nm, d, h) {.name = (nm), .kind = DQ_OPTK_FLAG, .dst = (d), .help = (h)}
#define DQ_OPT_STR(nm, a, d, h) {.name = (nm), .arg = (a), .kind = DQ_OPTK_STR, .dst = (d), .help = (h)}
#define DQ_OPT_INT(nm, a, d, lo, hi, h)                                                  \
    {.name = (nm), .arg = (a), .kind = DQ_OPTK_INT, .dst = (d), .min = (lo), .max = (hi), \
     .help = (h)}
#define DQ_OPT_I64(nm, a, d, lo, hi, h)                                                  \
    {.name = (nm), .arg = (a), .kind = DQ_OPTK_I64, .dst = (d), .min = (lo), .max = (hi), \
     .help = (h)}
#define DQ_OPT_U64(nm, a, d, h) {.name = (nm), .arg = (a), .kind = DQ_OPTK_U64, .dst = (d), .help = (h)}
#define DQ_OPT_F32(nm, a, d, lo, hi, h)                                                    \
    {.name = (nm), .arg = (a), .kind = DQ_OPTK_F32, .dst = (d), .fmin = (lo), .fmax = (hi), \
     .help = (h)}
#define DQ_OPT_CALL(nm, a, f, d, h)                                                  \
    {.name = (nm), .arg = (a), .kind = DQ_OPTK_CALL, .dst = (d), .fn = (f), .help = (h)}
#define DQ_OPT_HELP {.name = "help", .kind = DQ_OPTK_HELP}
#define DQ_OPT_VERSION {.name = "version", .kind = DQ_OPTK_VERSION}

/* What main does after a successful parse. USAGE: getopt rejected an
 * option (unknown, missing argument: getopt printed why) or an argument
 * that is not an option was given; err says so too. */
typedef enum { DQ_OPTS_RUN = 0, DQ_OPTS_HELP, DQ_OPTS_VERSION, DQ_OPTS_USAGE } dq_opts_action;

/* Parses argv[1..] with getopt_long against the n entries of opts. DQ_OK
 * with *action RUN (all parsed) or HELP/VERSION (stopped there); on a bad
 * value, DQ_ERR_ARG with the option and the accepted range in err and
 * *action RUN; on an unknown option, a missing argument or a positional
 * argument ("unexpected argument 'x'"), DQ_ERR_ARG with *action USAGE; a
 * table over DQ_OPTS_MAX entries is DQ_ERR_INTERNAL. */
dq_status dq_opts_parse(const dq_opt *opts, int n, int argc, char **argv,
                        dq_opts_action *action, dq_err *err);

/* As dq_opts_parse, for a program that also takes arguments that are not
 * options (distillq-cache's command and DIR): getopt_long moves them, in
 * their order, to argv[*first .. argc) (options may come before, between
 * or after them; "--" ends the options); *first is argc when there are
 * none. */
dq_status dq_opts_parse_args(const dq_opt *opts, int n, int argc, char **argv, int *first,
                             dq_opts_action *action, dq_err *err);

/* The option lines of --help: "  --name ARG" padded to column col (or two
 * spaces when longer), then the help text, its continuation lines indented
 * to col; TEXT entries verbatim; HELP (with VERSION) as "  --help, --version". */
void dq_opts_print_help(FILE *f, const dq_opt *opts, int n, int col);

#endif
