/* main.c - distillq-cache: inspect the broker's LMDB teacher-output cache.
 *
 * Opens the cache read-only (with locking), so it is safe to run beside a
 * live broker that keeps writing: every command sees one consistent
 * snapshot. `gc` opens it for writing: LMDB serialises it with the broker's
 * writes, and readers keep their snapshots. Exit status: 0 ok, 1 failure or bad entries found,
 * 2 usage error. Options come from a src/cli/opts table; the command and
 * DIR are its two arguments that are not options, in any place on the line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache.h"
#include "cli/opts.h"

#define S_MAX_KEEP 64

/* The weights named by --keep, repeatable, each a comma-separated list. */
typedef struct {
    const char *v[S_MAX_KEEP];
    int n;
    char *copies[S_MAX_KEEP]; /* the strtok'd copies v points into; main frees them */
    int n_copies;
} s_keep;

/* --keep SHA256[,SHA256...]: the list is copied (strtok writes into it) and
 * kept in k->copies until main returns. Empty items are skipped. */
static dq_status s_parse_keep(void *dst, const char *opt, const char *val, dq_err *err)
{
    s_keep *k = dst;
    if (k->n_copies == S_MAX_KEEP)
        return dq_fail(err, DQ_ERR_ARG, "%s: at most %d teachers", opt, S_MAX_KEEP);
    char *copy = strdup(val), *save = NULL;
    if (!copy) return dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", opt);
    k->copies[k->n_copies++] = copy;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (k->n == S_MAX_KEEP)
            return dq_fail(err, DQ_ERR_ARG, "%s: at most %d teachers", opt, S_MAX_KEEP);
        k->v[k->n++] = tok;
    }
    return DQ_OK;
}

static void s_usage(FILE *f, const dq_opt *opts, int n)
{
    fprintf(f,
"usage: distillq-cache stats DIR\n"
"       distillq-cache verify DIR\n"
"       distillq-cache export DIR [--teacher SHA256] [--output NAME] --out FILE.npy\n"
"       distillq-cache gc DIR --keep SHA256 [--keep SHA256...]\n"
"\n"
"Inspects the teacher-output cache that distillq-broker --cache DIR writes.\n"
"  stats    entries, size on disk, map size limit, and per teacher its service,\n"
"           model, weights sha256, entry count and bytes (keys + values)\n"
"  verify   checks every entry's key, header and checksum and each teacher's\n"
"           count; prints 'ok N entries', or lists the bad keys and exits 1\n"
"  gc       deletes every teacher not named by a --keep (a sha256 as stats shows\n"
"           it; comma-separated lists too); safe beside a live broker\n"
"  export   writes every cached sample of one teacher output as a float32 .npy\n"
"           array [N, ...] in key (hash) order\n"
"\n");
    dq_opts_print_help(f, opts, n, 21);
}

static double s_mib(uint64_t b)
{
    return (double)b / (1024.0 * 1024.0);
}

static int s_stats(dq_cache_t *c)
{
    dq_cache_info info;
    dq_err err = {{0}};
    dq_status st = dq_cache_stats(c, &info, &err);
    if (!st) st = dq_cache_teacher_bytes(c, &info, &err);
    if (st) {
        fprintf(stderr, "distillq-cache: %s: %s\n", dq_strerror(st), err.msg);
        dq_cache_info_free(&info);
        return 1;
    }
    printf("cache      %s\n", dq_cache_dir(c));
    printf("entries    %lld\n", (long long)info.entries);
    printf("file size  %.1f MiB (%llu bytes)\n", s_mib(info.file_bytes),
           (unsigned long long)info.file_bytes);
    printf("used       %.1f MiB (%llu bytes, %u-byte pages)\n", s_mib(info.used_bytes),
           (unsigned long long)info.used_bytes, info.page_size);
    printf("map size   %.1f MiB (%llu bytes, the limit)\n", s_mib(info.map_bytes),
           (unsigned long long)info.map_bytes);
    printf("teachers   %d\n", info.n_teachers);
    for (int i = 0; i < info.n_teachers; i++) {
        const dq_cache_teacher_info *t = &info.teachers[i];
        printf("teacher    service=%s model=%s sha256=%s entries=%lld\n", t->teacher.service,
               t->teacher.model, t->teacher.sha256, (long long)t->entries);
        printf("  bytes    %llu (%.1f MiB of keys and values)\n", (unsigned long long)t->bytes,
               s_mib(t->bytes));
    }
    dq_cache_info_free(&info);
    return 0;
}

static void s_print_bad(void *ctx, const char *line)
{
    (void)ctx;
    printf("bad %s\n", line);
}

static int s_verify(dq_cache_t *c)
{
    int64_t entries, bad;
    dq_err err = {{0}};
    dq_status st = dq_cache_verify(c, &entries, &bad, s_print_bad, NULL, &err);
    if (st) {
        fprintf(stderr, "distillq-cache: %s: %s\n", dq_strerror(st), err.msg);
        return 1;
    }
    if (bad) {
        printf("FAILED %lld bad of %lld entries\n", (long long)bad, (long long)entries);
        return 1;
    }
    printf("ok %lld entries\n", (long long)entries);
    return 0;
}

static int s_export(dq_cache_t *c, const char *teacher, const char *output, const char *out)
{
    dq_err err = {{0}};
    dq_status st = DQ_OK;
    char sha[DQ_MSG_SHA256_HEX + 1];
    if (teacher) {
        snprintf(sha, sizeof sha, "%s", teacher);
    } else {
        dq_cache_info info;
        st = dq_cache_stats(c, &info, &err);
        if (!st && info.n_teachers != 1)
            st = dq_fail(&err, DQ_ERR_ARG, "cache %s holds %d teachers: pick one with --teacher "
                         "(see stats)", dq_cache_dir(c), info.n_teachers);
        if (!st) memcpy(sha, info.teachers[0].teacher.sha256, sizeof sha);
        dq_cache_info_free(&info);
    }
    int64_t rows = 0;
    if (!st) st = dq_cache_export(c, sha, output, out, &rows, &err);
    if (st) {
        fprintf(stderr, "distillq-cache: %s: %s\n", dq_strerror(st), err.msg);
        return 1;
    }
    printf("wrote %lld rows of '%s' (teacher %s) to %s\n", (long long)rows, output, sha, out);
    return 0;
}

static int s_gc(dq_cache_t *c, const char *const *keep, int n_keep)
{
    dq_err err = {{0}};
    int teachers = 0;
    int64_t entries = 0;
    dq_status st = dq_cache_gc(c, keep, n_keep, &teachers, &entries, &err);
    if (st) {
        fprintf(stderr, "distillq-cache: %s: %s\n", dq_strerror(st), err.msg);
        return 1;
    }
    printf("removed %d teacher(s), %lld entries; kept %d\n", teachers, (long long)entries, n_keep);
    return 0;
}

static int s_main(int argc, char **argv, s_keep *kp)
{
    const char *teacher = NULL, *output = "logits", *out = NULL;
    s_keep *keep = kp;
    const dq_opt opts[] = {
        DQ_OPT_STR("teacher", "SHA256", &teacher,
                   "teacher weights sha256 (default: the only teacher present)"),
        DQ_OPT_STR("output", "NAME", &output, "output name (default logits)"),
        DQ_OPT_STR("out", "FILE.npy", &out, "where export writes"),
        DQ_OPT_CALL("keep", "SHA256", s_parse_keep, keep,
                    "gc: a teacher to keep; repeatable, or comma-separated"),
        DQ_OPT_HELP,
        DQ_OPT_VERSION,
    };
    const int n_opts = (int)(sizeof opts / sizeof opts[0]);
    dq_opts_action act;
    dq_err perr = {{0}};
    int first = argc;
    if (dq_opts_parse_args(opts, n_opts, argc, argv, &first, &act, &perr) != DQ_OK) {
        if (act != DQ_OPTS_USAGE || strcmp(perr.msg, "try --help") != 0)
            fprintf(stderr, "distillq-cache: %s\n", perr.msg); /* else getopt said why */
        fprintf(stderr, "distillq-cache: try --help\n");
        return 2;
    }
    if (act == DQ_OPTS_HELP) {
        s_usage(stdout, opts, n_opts);
        return 0;
    }
    if (act == DQ_OPTS_VERSION) {
        printf("distillq-cache %s\n", PACKAGE_VERSION);
        return 0;
    }
    if (argc - first != 2) {
        fprintf(stderr, "distillq-cache: expected a command and DIR (see --help)\n");
        return 2;
    }
    const char *cmd = argv[first], *dir = argv[first + 1];
    bool is_export = strcmp(cmd, "export") == 0, is_gc = strcmp(cmd, "gc") == 0;
    if (strcmp(cmd, "stats") != 0 && strcmp(cmd, "verify") != 0 && !is_export && !is_gc) {
        fprintf(stderr, "distillq-cache: unknown command '%s' (stats, verify, export, gc)\n",
                cmd);
        return 2;
    }
    if (is_gc != (keep->n > 0)) {
        fprintf(stderr, "distillq-cache: gc needs --keep SHA256 (and --keep is for gc only)\n");
        return 2;
    }
    if (is_export && !out) {
        fprintf(stderr, "distillq-cache: export needs --out FILE.npy\n");
        return 2;
    }
    if (!is_export && (teacher || out)) {
        fprintf(stderr, "distillq-cache: --teacher/--out are for export only\n");
        return 2;
    }
    dq_cache_config cfg;
    dq_cache_config_defaults(&cfg);
    cfg.read_only = !is_gc; /* gc writes; LMDB serialises it with a live broker */
    dq_cache_t *c = NULL;
    dq_err err = {{0}};
    dq_status st = dq_cache_open(&c, dir, &cfg, &err);
    if (st) {
        fprintf(stderr, "distillq-cache: %s: %s\n", dq_strerror(st), err.msg);
        return 1;
    }
    int rc = strcmp(cmd, "stats") == 0 ? s_stats(c)
           : is_gc ? s_gc(c, keep->v, keep->n)
           : strcmp(cmd, "verify") == 0 ? s_verify(c)
           : s_export(c, teacher, output, out);
    dq_cache_close(&c);
    return rc;
}

int main(int argc, char **argv)
{
    s_keep keep = {.n = 0};
    int rc = s_main(argc, argv, &keep);
    for (int i = 0; i < keep.n_copies; i++) free(keep.copies[i]);
    return rc;
}
