/* Command-line parsing: one small parser for the global options (accepted
 * before or after the command name) and each command's own options, plus
 * the strict parsers for option values and positional shapes. getopt_long
 * is not used because global and command options share one pass and
 * mount must pass FUSE options through untouched. */
#include "cli_i.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

const cli_option cli_global_options[] = {
    {"root", 'C', true, CLI_OPT_ROOT},
    {"session", 0, true, CLI_OPT_SESSION},
    {"json", 0, false, CLI_OPT_JSON},
    {"quiet", 'q', false, CLI_OPT_QUIET},
    {"verbose", 'v', false, CLI_OPT_VERBOSE},
    {"help", 'h', false, CLI_OPT_HELP},
    {"version", 0, false, CLI_OPT_VERSION},
    {NULL, 0, false, 0},
};

static const cli_option *find_long(const cli_option *table, const char *name, size_t len)
{
    for (const cli_option *o = table; o && o->long_name; o++)
        if (strlen(o->long_name) == len && memcmp(o->long_name, name, len) == 0)
            return o;
    return NULL;
}

static const cli_option *find_short(const cli_option *table, char c)
{
    for (const cli_option *o = table; o && o->long_name; o++)
        if (o->short_name && o->short_name == c)
            return o;
    return NULL;
}

static const cli_option *lookup_long(const cli_command *cmd, const char *name, size_t len)
{
    const cli_option *o = cmd ? find_long(cmd->options, name, len) : NULL;
    return o ? o : find_long(cli_global_options, name, len);
}

static const cli_option *lookup_short(const cli_command *cmd, char c)
{
    const cli_option *o = cmd ? find_short(cmd->options, c) : NULL;
    return o ? o : find_short(cli_global_options, c);
}

static int push_pos(cli_ctx *ctx, const char *arg)
{
    const char **p = realloc(ctx->pos, (ctx->n_pos + 1) * sizeof *p);
    if (!p)
        return cli_failf(CLI_EXIT_RUNTIME, "out of memory");
    ctx->pos = p;
    ctx->pos[ctx->n_pos++] = arg;
    return 0;
}

static int apply(cli_ctx *ctx, const cli_option *o, const char *value)
{
    switch (o->id) {
    case CLI_OPT_ROOT:
        ctx->root_opt = value;
        return 0;
    case CLI_OPT_SESSION:
        ctx->session_opt = value;
        return 0;
    case CLI_OPT_JSON:
        ctx->json = true;
        return 0;
    case CLI_OPT_QUIET:
        ctx->quiet = true;
        return 0;
    case CLI_OPT_VERBOSE:
        ctx->verbose++;
        return 0;
    case CLI_OPT_HELP:
        ctx->help = true;
        return 0;
    case CLI_OPT_VERSION:
        ctx->version = true;
        return 0;
    default:
        break;
    }
    cli_optval *v = realloc(ctx->opts, (ctx->n_opts + 1) * sizeof *v);
    if (!v)
        return cli_failf(CLI_EXIT_RUNTIME, "out of memory");
    ctx->opts = v;
    ctx->opts[ctx->n_opts++] = (cli_optval){o->id, o->long_name, value};
    return 0;
}

/* A "-xyz" cluster is ours only if every letter is known and only the last
 * may take a value; otherwise a pass-through command keeps it verbatim. */
static bool cluster_is_known(const cli_command *cmd, const char *arg)
{
    for (const char *c = arg + 1; *c; c++) {
        const cli_option *o = lookup_short(cmd, *c);
        if (!o)
            return false;
        if (o->has_arg)
            return true;
    }
    return true;
}

static int parse_long(cli_ctx *ctx, const cli_command *cmd, int argc, char **argv, int *i)
{
    const char *arg = argv[*i];
    const char *name = arg + 2;
    const char *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    const cli_option *o = lookup_long(cmd, name, len);
    if (!o) {
        if (cmd && cmd->pass_unknown)
            return push_pos(ctx, arg);
        return cli_usage_error(cmd, "unknown option '%.*s'", (int)len + 2, arg);
    }
    const char *value = NULL;
    if (o->has_arg) {
        if (eq) {
            value = eq + 1;
        } else {
            if (*i + 1 >= argc)
                return cli_usage_error(cmd, "option '--%s' needs a value", o->long_name);
            value = argv[++*i];
        }
    } else if (eq) {
        return cli_usage_error(cmd, "option '--%s' takes no value", o->long_name);
    }
    return apply(ctx, o, value);
}

static int parse_short(cli_ctx *ctx, const cli_command *cmd, int argc, char **argv, int *i)
{
    const char *arg = argv[*i];
    if (cmd && cmd->pass_unknown && !cluster_is_known(cmd, arg))
        return push_pos(ctx, arg);
    for (const char *c = arg + 1; *c; c++) {
        const cli_option *o = lookup_short(cmd, *c);
        if (!o)
            return cli_usage_error(cmd, "unknown option '-%c'", *c);
        if (!o->has_arg) {
            int rc = apply(ctx, o, NULL);
            if (rc)
                return rc;
            continue;
        }
        const char *value;
        if (c[1]) {
            value = c + 1;
        } else {
            if (*i + 1 >= argc)
                return cli_usage_error(cmd, "option '-%c' needs a value", *c);
            value = argv[++*i];
        }
        return apply(ctx, o, value);
    }
    return 0;
}

int cli_parse_args(cli_ctx *ctx, int argc, char **argv, int start, const cli_command *cmd,
                   bool stop_at_positional, int *next)
{
    int i = start;
    for (; i < argc; i++) {
        const char *arg = argv[i];
        int rc = 0;
        if (strcmp(arg, "--") == 0) {
            if (stop_at_positional) {
                i++;
                break;
            }
            for (i++; i < argc; i++)
                if ((rc = push_pos(ctx, argv[i])) != 0)
                    return rc;
            break;
        }
        if (arg[0] == '-' && arg[1] == '-')
            rc = parse_long(ctx, cmd, argc, argv, &i);
        else if (arg[0] == '-' && arg[1] != '\0')
            rc = parse_short(ctx, cmd, argc, argv, &i);
        else if (stop_at_positional)
            break;
        else
            rc = push_pos(ctx, arg);
        if (rc)
            return rc;
    }
    if (next)
        *next = i;
    return 0;
}

int cli_parse_seconds(const char *opt, const char *value, double *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(value, &end);
    if (value[0] == '\0' || *end != '\0' || errno || !isfinite(v) || v < 0 || v > 1e7)
        return cli_failf(CLI_EXIT_USAGE, "%s: '%s' is not a number of seconds (0 to 10000000)",
                         opt, value);
    *out = v;
    return 0;
}

int cli_parse_uint32(const char *opt, const char *value, uint32_t *out)
{
    char *end = NULL;
    errno = 0;
    if (value[0] < '0' || value[0] > '9')
        return cli_failf(CLI_EXIT_USAGE, "%s: '%s' is not a non-negative integer", opt, value);
    unsigned long long v = strtoull(value, &end, 10);
    if (*end != '\0' || errno || v > UINT32_MAX)
        return cli_failf(CLI_EXIT_USAGE, "%s: '%s' is not a non-negative integer", opt, value);
    *out = (uint32_t)v;
    return 0;
}

bool cli_is_backup_spec(const char *s)
{
    return strcmp(s, FB_BACKUP_SPEC_LATEST) == 0 || strcmp(s, FB_BACKUP_SPEC_LATEST_FULL) == 0 ||
           fb_backup_id_has_shape(s);
}

/* A lone positional that is neither certainly a backup nor an existing
 * session: SPEC takes it for a backup of the current session (so `show
 * 3fa9c2` works) when there is a current session; otherwise it stays a
 * session and the command says that session does not exist. Nothing is
 * printed here: the command's own resolution reports what is wrong. */
static bool lone_positional_is_backup(cli_ctx *ctx, const char *arg)
{
    fb_error err;
    fb_error_clear(&err);
    if (strcmp(arg, "current") == 0 || fb_session_id_check(arg, &err) != 0)
        return false;
    if (!ctx->root && cli_resolve_root_quietly(ctx) != 0)
        return false;
    if (cli_session_source_errno(ctx, arg) != ENOENT || cli_session_store_errno(ctx, arg) != ENOENT)
        return false;
    char *current = NULL;
    if (fb_current_session_find(ctx->root, getenv("FLOWLOOM_SESSION"), &current, NULL, &err) != 0)
        return false;
    free(current);
    return true;
}

bool cli_parse_backup_type(const char *s, fb_backup_type *out)
{
    if (strcmp(s, "full") == 0) {
        *out = FB_BACKUP_FULL;
        return true;
    }
    if (strcmp(s, "incremental") == 0 || strcmp(s, "incr") == 0) {
        *out = FB_BACKUP_INCREMENTAL;
        return true;
    }
    return false;
}

int cli_split_session_backup(cli_ctx *ctx, const char **session_arg, const char **backup_arg)
{
    *session_arg = ctx->session_opt;
    *backup_arg = NULL;
    size_t max = ctx->session_opt ? 1 : 2;
    if (ctx->n_pos > max)
        return cli_usage_error(ctx->command, "unexpected argument '%s'", ctx->pos[max]);
    if (ctx->n_pos == 2) {
        *session_arg = ctx->pos[0];
        *backup_arg = ctx->pos[1];
    } else if (ctx->n_pos == 1) {
        if (ctx->session_opt || cli_is_backup_spec(ctx->pos[0]) ||
            lone_positional_is_backup(ctx, ctx->pos[0]))
            *backup_arg = ctx->pos[0];
        else
            *session_arg = ctx->pos[0];
    }
    return 0;
}

/* Levenshtein distance of a and b, stopping at cap + 1: only "close or
 * not" matters, and words here are short. */
static size_t edit_distance_capped(const char *a, const char *b, size_t cap)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 32 || lb > 32)
        return cap + 1;
    size_t row[33];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb] > cap ? cap + 1 : row[lb];
}

const char *cli_closest_word(const char *s, const char *const *words)
{
    /* One edit for short words, two for longer ones: "ful" is "full", but
     * "S1" is not "incr". */
    size_t cap = strlen(s) < 5 ? 1 : 2;
    const char *best = NULL;
    size_t best_d = cap + 1;
    for (size_t i = 0; words[i]; i++) {
        size_t d = edit_distance_capped(s, words[i], cap);
        if (d < best_d) {
            best = words[i];
            best_d = d;
        }
    }
    return best;
}
