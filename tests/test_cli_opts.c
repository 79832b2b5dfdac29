/* test_cli_opts.c - option tables (src/cli/opts.h): every kind converts and
 * range-checks into its destination, errors name the option, getopt's
 * rejections and positional arguments are USAGE (dq_opts_parse_args takes
 * them, in order, wherever they stand), --help/--version stop the parse,
 * and the help lines are laid out at the requested column. */
#include <getopt.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cli/opts.h"

typedef struct {
    bool flag;
    const char *str;
    int i;
    int64_t big;
    uint64_t u;
    float f;
    int calls;
    char seen[64];
} s_vals;

/* CALL: counts and records each occurrence; "bad" fails. */
static dq_status s_call(void *dst, const char *opt, const char *val, dq_err *err)
{
    s_vals *v = dst;
    if (val && strcmp(val, "bad") == 0) return dq_fail(err, DQ_ERR_ARG, "%s: bad", opt);
    v->calls++;
    strncat(v->seen, val ? val : "-", sizeof v->seen - strlen(v->seen) - 1);
    return DQ_OK;
}

#define S_TABLE(v)                                                                     \
    const dq_opt opts[] = {                                                            \
        DQ_OPT_FLAG("flag", &(v).flag, "a flag"),                                      \
        DQ_OPT_STR("str", "S", &(v).str, "a string"),                                  \
        DQ_OPT_INT("int", "N", &(v).i, -5, 10, "an int\nin a range"),                  \
        DQ_OPT_I64("big", "N", &(v).big, 1, INT64_MAX, "a big one"),                   \
        DQ_OPT_U64("seed", "S", &(v).u, "unsigned"),                                   \
        DQ_OPT_F32("lr", "LR", &(v).f, 0.5, 2, "a float"),                             \
        DQ_OPT_TEXT("\nSection:"),                                                     \
        DQ_OPT_CALL("each", "X", s_call, &(v), "called each time"),                    \
        DQ_OPT_CALL("a-rather-long-option", "VALUE", s_call, &(v), "past the column"), \
        DQ_OPT_HELP,                                                                   \
        DQ_OPT_VERSION,                                                                \
    };                                                                                 \
    const int n = (int)(sizeof opts / sizeof opts[0])

static dq_status s_parse(const dq_opt *opts, int n, dq_opts_action *act, dq_err *err, ...)
{
    char *argv[32] = {"prog"};
    int argc = 1;
    va_list ap;
    va_start(ap, err);
    for (char *a; (a = va_arg(ap, char *)) != NULL && argc < 31;) argv[argc++] = a;
    va_end(ap);
    return dq_opts_parse(opts, n, argc, argv, act, err);
}

static void test_every_kind_converts(void **state)
{
    (void)state;
    s_vals v = {0};
    S_TABLE(v);
    dq_opts_action act = DQ_OPTS_USAGE;
    dq_err err = {{0}};
    assert_int_equal(s_parse(opts, n, &act, &err, "--flag", "--str", "abc", "--int", "-5",
                             "--big", "9223372036854775807", "--seed", "18446744073709551615",
                             "--lr=1.5", "--each", "x", "--each", "y", "--int", "10", NULL),
                     DQ_OK);
    assert_int_equal(act, DQ_OPTS_RUN);
    assert_true(v.flag);
    assert_string_equal(v.str, "abc");
    assert_int_equal(v.i, 10); /* the last occurrence wins */
    assert_true(v.big == INT64_MAX);
    assert_true(v.u == UINT64_MAX);
    assert_true(v.f == 1.5f);
    assert_int_equal(v.calls, 2);
    assert_string_equal(v.seen, "xy");
}

static void test_errors_name_option_and_range(void **state)
{
    (void)state;
    s_vals v = {0};
    S_TABLE(v);
    dq_opts_action act;
    dq_err err = {{0}};
    assert_int_equal(s_parse(opts, n, &act, &err, "--int", "11", NULL), DQ_ERR_ARG);
    assert_int_equal(act, DQ_OPTS_RUN);
    assert_string_equal(err.msg, "--int: expected an integer in [-5, 10], got '11'");
    assert_int_equal(s_parse(opts, n, &act, &err, "--int", "3x", NULL), DQ_ERR_ARG);
    assert_int_equal(s_parse(opts, n, &act, &err, "--big", "0", NULL), DQ_ERR_ARG);
    assert_int_equal(s_parse(opts, n, &act, &err, "--seed", "-1", NULL), DQ_ERR_ARG);
    assert_string_equal(err.msg, "--seed: expected a non-negative integer, got '-1'");
    assert_int_equal(s_parse(opts, n, &act, &err, "--lr", "2.5", NULL), DQ_ERR_ARG);
    assert_string_equal(err.msg, "--lr: expected a number in [0.5, 2], got '2.5'");
    assert_int_equal(s_parse(opts, n, &act, &err, "--each", "bad", NULL), DQ_ERR_ARG);
    assert_string_equal(err.msg, "--each: bad");
    /* parsing stops at the first error: later options are not applied */
    v.flag = false;
    assert_int_equal(s_parse(opts, n, &act, &err, "--int", "99", "--flag", NULL), DQ_ERR_ARG);
    assert_false(v.flag);
}

static void test_usage_help_version(void **state)
{
    (void)state;
    s_vals v = {0};
    S_TABLE(v);
    dq_opts_action act;
    dq_err err = {{0}};
    opterr = 0; /* keep getopt quiet here */
    assert_int_equal(s_parse(opts, n, &act, &err, "--nosuch", NULL), DQ_ERR_ARG);
    assert_int_equal(act, DQ_OPTS_USAGE);
    assert_int_equal(s_parse(opts, n, &act, &err, "--str", NULL), DQ_ERR_ARG); /* no argument */
    assert_int_equal(act, DQ_OPTS_USAGE);
    assert_int_equal(s_parse(opts, n, &act, &err, "--flag", "stray", NULL), DQ_ERR_ARG);
    assert_int_equal(act, DQ_OPTS_USAGE);
    assert_string_equal(err.msg, "unexpected argument 'stray'");
    assert_int_equal(s_parse(opts, n, &act, &err, "--int", "1", "--help", "--int", "99", NULL),
                     DQ_OK);
    assert_int_equal(act, DQ_OPTS_HELP);
    assert_int_equal(s_parse(opts, n, &act, &err, "--version", NULL), DQ_OK);
    assert_int_equal(act, DQ_OPTS_VERSION);
    opterr = 1;
}

/* distillq-cache's form: a command and a directory among the options. */
static void test_positional_arguments(void **state)
{
    (void)state;
    s_vals v = {0};
    S_TABLE(v);
    dq_opts_action act = DQ_OPTS_USAGE;
    dq_err err = {{0}};
    char *argv[] = {"prog", "export", "--str", "abc", "DIR", "--each", "x", "--flag", NULL};
    int argc = 8, first = -1;
    assert_int_equal(dq_opts_parse_args(opts, n, argc, argv, &first, &act, &err), DQ_OK);
    assert_int_equal(act, DQ_OPTS_RUN);
    assert_int_equal(first, argc - 2);
    assert_string_equal(argv[first], "export");
    assert_string_equal(argv[first + 1], "DIR");
    assert_true(v.flag);
    assert_string_equal(v.str, "abc");
    assert_string_equal(v.seen, "x");
    /* none: first is argc; "--" ends the options */
    char *none[] = {"prog", "--flag", NULL};
    assert_int_equal(dq_opts_parse_args(opts, n, 2, none, &first, &act, &err), DQ_OK);
    assert_int_equal(first, 2);
    char *dash[] = {"prog", "--", "--flag", NULL};
    v.flag = false;
    assert_int_equal(dq_opts_parse_args(opts, n, 3, dash, &first, &act, &err), DQ_OK);
    assert_int_equal(first, 2);
    assert_string_equal(dash[first], "--flag");
    assert_false(v.flag);
    /* a bad value is still an error naming the option */
    char *bad[] = {"prog", "stats", "--int", "11", NULL};
    assert_int_equal(dq_opts_parse_args(opts, n, 4, bad, &first, &act, &err), DQ_ERR_ARG);
    assert_string_equal(err.msg, "--int: expected an integer in [-5, 10], got '11'");
}

static void test_help_layout(void **state)
{
    (void)state;
    s_vals v = {0};
    S_TABLE(v);
    char buf[2048] = "";
    FILE *f = fmemopen(buf, sizeof buf - 1, "w");
    assert_non_null(f);
    dq_opts_print_help(f, opts, n, 16);
    fclose(f);
    assert_string_equal(buf,
                        "  --flag        a flag\n"
                        "  --str S       a string\n"
                        "  --int N       an int\n"
                        "                in a range\n"
                        "  --big N       a big one\n"
                        "  --seed S      unsigned\n"
                        "  --lr LR       a float\n"
                        "\n"
                        "Section:\n"
                        "  --each X      called each time\n"
                        "  --a-rather-long-option VALUE  past the column\n"
                        "  --help, --version\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_kind_converts),
        cmocka_unit_test(test_errors_name_option_and_range),
        cmocka_unit_test(test_usage_help_version),
        cmocka_unit_test(test_positional_arguments),
        cmocka_unit_test(test_help_layout),
    };
    return cmocka_run_group_tests_name("cli_opts", tests, NULL, NULL);
}
