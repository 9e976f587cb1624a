/* `flowloom-backup log`: the history of one path across the session's
 * backups, oldest first: one line per backup where it changed (--all: every
 * backup that holds it). The history is core's (core/ops/path_log.c, one
 * manifest in memory at a time); this file parses, prints and maps errors.
 * A reader: no lock, nothing written except a rebuilt index when the
 * session lock is free, as every reader does. */
#include "cli_i.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "fb_hash.h"
#include "fb_path_log.h"
#include "fb_store.h"
#include "fb_text.h"

/* How much of a SHA-256 a line shows: enough to tell versions apart. */
#define SHORT_SHA_HEX 12

enum { OPT_ALL = CLI_OPT_COMMAND };

static const cli_option log_options[] = {
    {"all", 'a', false, OPT_ALL},
    {NULL, 0, false, 0},
};

static const char log_usage[] =
    "Usage: " CLI_PROG " log [session_id] <path> [--all] [--json]\n"
    "\n"
    "The history of one path of the session (default: the current one) across its\n"
    "backups, oldest first: one line per backup that holds the path where it differs\n"
    "from the previous backup that holds it (entry type, size, SHA-256 or symlink\n"
    "target): backup id, type, creation time (local), entry type, size in bytes, and the\n"
    "first 12 hex digits of the SHA-256 ('-> target' for a symlink, '=> file' after a\n"
    "hardlink's content). The path is relative to the session directory (state.json,\n"
    "logs/run.log). Manifests are read one at a time. Exit 3 when no backup holds the\n"
    "path, 2 for a path that is absolute or has a '..' component.\n"
    "\n"
    "Options:\n"
    "  -a, --all     every backup that holds the path, unchanged ones marked\n"
    "      --json    {session, path, versions: [{id, seq, created_at, type, entry_type,\n"
    "                size, sha256, target, changed}]}\n"
    "  -q, --quiet   only the version lines, no heading\n";

typedef struct log_args {
    const char *session_arg;
    char *path; /* checked and normalised (owned) */
    bool all;
} log_args;

static int parse_log_args(cli_ctx *ctx, log_args *a)
{
    const cli_command *cmd = ctx->command;
    memset(a, 0, sizeof *a);
    for (size_t i = 0; i < ctx->n_opts; i++)
        if (ctx->opts[i].id == OPT_ALL)
            a->all = true;
    size_t at = 0;
    a->session_arg = ctx->session_opt;
    if (!a->session_arg && ctx->n_pos == 2)
        a->session_arg = ctx->pos[at++];
    if (ctx->n_pos == 0)
        return cli_usage_error(cmd, "which path? Give a path relative to the session directory "
                                    "(e.g. state.json)");
    if (ctx->n_pos - at > 1)
        return cli_usage_error(cmd, "unexpected argument '%s'", ctx->pos[at + 1]);
    /* Checked before anything is looked up: a bad path is bad input
     * whatever the session holds. */
    fb_error err;
    fb_error_clear(&err);
    if (fb_path_log_check_path(ctx->pos[at], &a->path, &err) != 0)
        return cli_fail(&err);
    return 0;
}

/* "3fa9c2e1b2c4", "-> target", "3fa9c2e1b2c4 => file", or "-". */
static void print_content(const fb_path_version *v)
{
    char hex[FB_SHA256_HEX_LEN + 1];
    if (v->entry_type == FB_ENTRY_SYMLINK) {
        fputs("-> ", stdout);
        cli_print_escaped(stdout, v->target ? v->target : "");
        return;
    }
    if (!v->has_sha256) {
        fputs("-", stdout);
        return;
    }
    fb_hex_encode(v->sha256, FB_SHA256_LEN, hex);
    printf("%.*s", SHORT_SHA_HEX, hex);
    if (v->entry_type == FB_ENTRY_HARDLINK && v->target) {
        fputs(" => ", stdout);
        cli_print_escaped(stdout, v->target);
    }
}

static void print_version(const fb_path_version *v, bool all)
{
    char when[64];
    cli_format_local_time(v->created_at, false, when);
    printf("%-28s  %-11s  %-19s  %-8s  %12" PRIu64 "  ", v->id,
           fb_backup_type_name(v->backup_type), when, fb_entry_type_name(v->entry_type),
           v->size);
    print_content(v);
    if (all && !v->changed)
        fputs("  (unchanged)", stdout);
    fputc('\n', stdout);
}

static void print_human(const cli_ctx *ctx, const fb_path_log *log, bool all)
{
    if (!ctx->quiet) {
        fputs("History of ", stdout);
        cli_print_escaped(stdout, log->path);
        printf(" in session %s: %zu version%s, held by %zu of %zu backup%s\n", log->session_id,
               log->n_changes, log->n_changes == 1 ? "" : "s", log->n_holding, log->n_backups,
               log->n_backups == 1 ? "" : "s");
        printf("%-28s  %-11s  %-19s  %-8s  %12s  %s\n", "ID", "TYPE", "CREATED", "ENTRY", "SIZE",
               "CONTENT");
    }
    for (size_t i = 0; i < log->n_versions; i++)
        print_version(&log->versions[i], all);
}

static bool add_version_json(cJSON *arr, const fb_path_version *v)
{
    char hex[FB_SHA256_HEX_LEN + 1];
    fb_hex_encode(v->sha256, FB_SHA256_LEN, hex);
    cJSON *o = cJSON_CreateObject();
    return cli_json_add(arr, NULL, o) && cli_json_add(o, "id", cJSON_CreateString(v->id)) &&
           cli_json_add(o, "seq", cli_json_uint(v->seq)) &&
           cli_json_add(o, "created_at", cli_json_time(v->created_at)) &&
           cli_json_add(o, "type", cJSON_CreateString(fb_backup_type_name(v->backup_type))) &&
           cli_json_add(o, "entry_type",
                        cJSON_CreateString(fb_entry_type_name(v->entry_type))) &&
           cli_json_add(o, "size", cli_json_uint(v->size)) &&
           cli_json_add(o, "sha256", v->has_sha256 ? cJSON_CreateString(hex)
                                                   : cJSON_CreateNull()) &&
           (v->target ? cli_json_add_name(o, "target", v->target)
                      : cli_json_add(o, "target", cJSON_CreateNull())) &&
           cli_json_add(o, "changed", cJSON_CreateBool(v->changed));
}

static int emit_json(const fb_path_log *log)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *versions = NULL;
    bool ok = o && cli_json_add(o, "session_id", cJSON_CreateString(log->session_id)) &&
              cli_json_add_name(o, "path", log->path) &&
              cli_json_add(o, "backups", cli_json_uint(log->n_backups)) &&
              cli_json_add(o, "holding", cli_json_uint(log->n_holding)) &&
              cli_json_add(o, "changes", cli_json_uint(log->n_changes)) &&
              cli_json_add(o, "versions", versions = cJSON_CreateArray());
    for (size_t i = 0; ok && i < log->n_versions; i++)
        ok = add_version_json(versions, &log->versions[i]);
    if (!ok) {
        cJSON_Delete(o);
        return cli_failf(CLI_EXIT_RUNTIME, "out of memory while formatting JSON");
    }
    return cli_json_emit(o);
}

static int run_log(cli_ctx *ctx)
{
    log_args a;
    int status = parse_log_args(ctx, &a);
    if (status) {
        free(a.path);
        return status;
    }
    char *session_id = NULL;
    fb_store *store = NULL;
    fb_path_log *log = NULL;
    fb_index idx;
    fb_index_init(&idx, "");
    fb_error err;
    fb_error_clear(&err);

    if ((status = cli_resolve_existing_session(ctx, a.session_arg, &session_id)) != 0 ||
        (status = cli_open_store_readonly(ctx, &store)) != 0)
        goto out;
    fb_index_fini(&idx);
    if ((status = cli_load_index(ctx, store, session_id, &idx)) != 0)
        goto out;
    if (!store || idx.n == 0) {
        char esc[600];
        status = cli_failf(CLI_EXIT_NOTFOUND, "session %s has no backups: no history of %s",
                           session_id, fb_path_escape(a.path, esc, sizeof esc));
        goto out;
    }
    fb_path_log_request req = {
        .session_id = session_id,
        .path = a.path,
        .all = a.all,
        .warn = cli_warn,
        .warn_ctx = ctx,
    };
    if (fb_path_log_build(store, &idx, &req, &log, &err) != 0) {
        status = err.code == FB_ENOTFOUND ? cli_fail_in_session(ctx, &err) : cli_fail(&err);
        goto out;
    }
    if (ctx->json)
        status = emit_json(log);
    else
        print_human(ctx, log, a.all);

out:
    fb_path_log_free(log);
    fb_index_fini(&idx);
    fb_store_free(store);
    free(session_id);
    free(a.path);
    return status;
}

const cli_command cli_cmd_log = {
    .name = "log",
    .alias = NULL,
    .summary = "the history of one path across the session's backups",
    .usage = log_usage,
    .options = log_options,
    .pass_unknown = false,
    .run = run_log,
};
