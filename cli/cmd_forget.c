/* `flowloom-backup forget` (alias `delete`): removes chosen backups of one
 * session (SPEC "Other commands"). Which backups go, the rule for bases and
 * the crash-safe removal are core's fb_forget_run; this file splits the
 * positionals (an optional session, then any number of backups), and
 * prints one line per backup removed, as cleanup does.
 *
 * A dry run is a reader, like cleanup's: no lock, nothing cleared, no
 * rebuilt index written back, so it changes nothing on disk. */
#include "cli_i.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fb_forget.h"
#include "fb_store.h"

#define DEFAULT_WAIT_SECONDS 10.0

enum {
    OPT_DRY_RUN = CLI_OPT_COMMAND,
    OPT_WITH_INCREMENTALS,
    OPT_WAIT,
};

static const cli_option forget_options[] = {
    {"dry-run", 'n', false, OPT_DRY_RUN},
    {"with-incrementals", 0, false, OPT_WITH_INCREMENTALS},
    {"wait", 0, true, OPT_WAIT},
    {NULL, 0, false, 0},
};

static const char forget_usage[] =
    "Usage: " CLI_PROG " forget [session_id] <backup_id>... [--dry-run]\n"
    "           [--with-incrementals] [--wait SECONDS] [--json]\n"
    "       " CLI_PROG " delete ...   (the same command)\n"
    "\n"
    "Removes the named backups of the session (default: the current session) the way\n"
    "retention removes them: the index is updated first, then each backup directory is\n"
    "moved aside and deleted, under the session lock. A backup is named by its id,\n"
    "'latest', 'latest-full', or a prefix of its id or of its 6-hex suffix that names\n"
    "exactly one backup. Every name is resolved before anything is removed: if one\n"
    "names no backup (exit 3) or several (exit 2), nothing is removed.\n"
    "\n"
    "A full backup that is the base of incremental backups goes only with them: name\n"
    "them too, or give --with-incrementals. Without its base an incremental can no\n"
    "longer be recovered as the session stood then (only its own files, with\n"
    "'recover --only'), so forget refuses (exit 2, naming them) rather than leave\n"
    "that behind. Retention (cleanup) is not bound by this rule.\n"
    "\n"
    "Options:\n"
    "  -n, --dry-run            show what would be removed; change nothing (takes no lock)\n"
    "      --with-incrementals  also remove the incrementals based on a named full backup\n"
    "      --wait SECONDS       wait this long for the session lock (default 10)\n"
    "      --json               one JSON object ({session_id, dry_run, index_rebuilt,\n"
    "                           removed: [{id, type, created_at, rule, name, base}],\n"
    "                           remaining})\n"
    "  -q, --quiet              print only errors and warnings\n";

typedef struct forget_args {
    bool dry_run;
    bool with_incrementals;
    double wait;
    const char *session_arg;
    const char *const *names;
    size_t n_names;
} forget_args;

/* Is there a current session to look a backup up in? */
static bool have_current_session(cli_ctx *ctx)
{
    if (!ctx->root && cli_resolve_root_quietly(ctx) != 0)
        return false;
    fb_error err;
    fb_error_clear(&err);
    char *current = NULL;
    if (fb_current_session_find(ctx->root, getenv("FLOWLOOM_SESSION"), &current, NULL, &err) != 0)
        return false;
    free(current);
    return true;
}

/* The first positional is the session (SPEC "Positionals", as
 * cli_split_session_backup decides for one backup) unless --session is
 * given or it is certainly a backup (`latest`, the id shape); otherwise it
 * is the session when a session of that name exists, or when there is no
 * current session and more names follow (so `forget typo ID` says the
 * session is not found). A lone name that is no session is a backup of the
 * current session: `forget 3fa9c2`. */
static bool first_is_session(cli_ctx *ctx)
{
    if (ctx->session_opt || ctx->n_pos == 0)
        return false;
    const char *arg = ctx->pos[0];
    fb_error err;
    fb_error_clear(&err);
    if (strcmp(arg, "current") == 0)
        return true;
    if (cli_is_backup_spec(arg) || fb_session_id_check(arg, &err) != 0)
        return false;
    if (!ctx->root && cli_resolve_root_quietly(ctx) != 0)
        return ctx->n_pos > 1;
    if (cli_session_source_errno(ctx, arg) != ENOENT || cli_session_store_errno(ctx, arg) != ENOENT)
        return true;
    return ctx->n_pos > 1 && !have_current_session(ctx);
}

static int parse_forget_args(cli_ctx *ctx, forget_args *a)
{
    memset(a, 0, sizeof *a);
    a->wait = DEFAULT_WAIT_SECONDS;
    for (size_t i = 0; i < ctx->n_opts; i++) {
        const cli_optval *o = &ctx->opts[i];
        int rc = 0;
        switch (o->id) {
        case OPT_DRY_RUN:
            a->dry_run = true;
            break;
        case OPT_WITH_INCREMENTALS:
            a->with_incrementals = true;
            break;
        case OPT_WAIT:
            rc = cli_parse_seconds("--wait", o->value, &a->wait);
            break;
        default:
            break;
        }
        if (rc)
            return rc;
    }
    a->session_arg = ctx->session_opt;
    size_t first = 0;
    if (first_is_session(ctx)) {
        a->session_arg = ctx->pos[0];
        first = 1;
    }
    a->names = ctx->pos + first;
    a->n_names = ctx->n_pos - first;
    if (a->n_names == 0) {
        if (first)
            return cli_usage_error(ctx->command,
                                   "no backup named: '%s' is taken as the session; give the "
                                   "backups to remove after it",
                                   ctx->pos[0]);
        return cli_usage_error(ctx->command, "no backup named: give the backups to remove");
    }
    return 0;
}

static const char *rule_text(const fb_forget_item *it, char *buf, size_t size)
{
    if (!it->named_as)
        snprintf(buf, size, "incremental of %s", it->base);
    else
        snprintf(buf, size, "named");
    return buf;
}

static void print_human(cli_ctx *ctx, const fb_forget_result *r, const forget_args *a,
                        const char *session_id)
{
    if (ctx->quiet)
        return;
    if (r->index_rebuilt)
        printf("Index: rebuilt from the manifests%s\n",
               a->dry_run ? " (in memory only: dry run)" : " and written");
    for (size_t i = 0; i < r->n_items; i++) {
        const fb_forget_item *it = &r->items[i];
        char when[64], rule[128];
        cli_format_local_time(it->created_at, false, when);
        printf("  %-28s  %-11s  %-19s  removed: %s", it->id, fb_backup_type_name(it->type),
               when, rule_text(it, rule, sizeof rule));
        /* Say what a short name stood for, so a prefix typed in a hurry
         * shows which backup it took. */
        if (it->named_as && strcmp(it->named_as, it->id) != 0) {
            fputs(" as '", stdout);
            cli_print_escaped(stdout, it->named_as);
            fputc('\'', stdout);
        }
        fputc('\n', stdout);
    }
    const char *s = r->n_items == 1 ? "" : "s";
    if (a->dry_run)
        printf("Dry run: would remove %zu backup%s of session %s, %zu would remain; nothing "
               "was changed.\n",
               r->n_items, s, session_id, r->n_remaining);
    else
        printf("Removed %zu backup%s of session %s, %zu remain%s.\n", r->n_items, s, session_id,
               r->n_remaining, r->n_remaining == 1 ? "s" : "");
}

static int print_json(const fb_forget_result *r, const forget_args *a, const char *session_id)
{
    cJSON *o = cJSON_CreateObject();
    bool ok = o && cli_json_add(o, "session_id", cJSON_CreateString(session_id)) &&
              cli_json_add(o, "dry_run", cJSON_CreateBool(a->dry_run)) &&
              cli_json_add(o, "index_rebuilt", cJSON_CreateBool(r->index_rebuilt));
    cJSON *removed = ok ? cJSON_CreateArray() : NULL;
    ok = ok && cli_json_add(o, "removed", removed);
    for (size_t i = 0; ok && i < r->n_items; i++) {
        const fb_forget_item *it = &r->items[i];
        char rule[128];
        cJSON *item = cJSON_CreateObject();
        ok = cli_json_add(removed, NULL, item) &&
             cli_json_add(item, "id", cJSON_CreateString(it->id)) &&
             cli_json_add(item, "type", cJSON_CreateString(fb_backup_type_name(it->type))) &&
             cli_json_add(item, "created_at", cli_json_time(it->created_at)) &&
             cli_json_add(item, "stored_bytes", cli_json_uint(it->stored_bytes)) &&
             cli_json_add(item, "rule", cJSON_CreateString(rule_text(it, rule, sizeof rule))) &&
             cli_json_add(item, "name", cli_json_string_or_null(it->named_as)) &&
             cli_json_add(item, "base", cli_json_string_or_null(it->named_as ? NULL : it->base));
    }
    ok = ok && cli_json_add(o, "remaining", cli_json_uint(r->n_remaining));
    if (!ok) {
        cJSON_Delete(o);
        return cli_failf(CLI_EXIT_RUNTIME, "out of memory while formatting JSON");
    }
    return cli_json_emit(o);
}

static int run_forget(cli_ctx *ctx)
{
    forget_args a;
    int status = parse_forget_args(ctx, &a);
    if (status)
        return status;
    char *session_id = NULL;
    fb_store *store = NULL;
    fb_forget_result r;
    fb_forget_result_init(&r);
    fb_error err;
    fb_error_clear(&err);

    status = cli_resolve_existing_session(ctx, a.session_arg, &session_id);
    if (status)
        goto out;
    status = cli_open_store_readonly(ctx, &store);
    if (status)
        goto out;
    fb_forget_request req = {
        .session_id = session_id,
        .names = a.names,
        .n_names = a.n_names,
        .with_incrementals = a.with_incrementals,
        .dry_run = a.dry_run,
        .lock_wait_seconds = a.wait,
        .lock_waiting = cli_lock_waiting,
        .lock_waiting_ctx = ctx,
        .warn = cli_warn,
        .warn_ctx = ctx,
    };
    if (!store) {
        /* No .flowloom/backups yet: no session has a backup to name. */
        fb_error_set(&err, FB_ENOTFOUND, "session %s has no backups; nothing was removed",
                     session_id);
        status = cli_fail_in_session(ctx, &err);
        goto out;
    }
    if (fb_forget_run(store, &req, &r, &err) != 0) {
        status = err.code == FB_ENOTFOUND || err.code == FB_EINVAL
                     ? cli_fail_in_session(ctx, &err)
                     : cli_fail(&err);
        goto out;
    }
    if (ctx->json)
        status = print_json(&r, &a, session_id);
    else
        print_human(ctx, &r, &a, session_id);
out:
    fb_forget_result_fini(&r);
    fb_store_free(store);
    free(session_id);
    return status;
}

const cli_command cli_cmd_forget = {
    .name = "forget",
    .alias = "delete",
    .summary = "remove chosen backups (crash-safe, as retention does)",
    .usage = forget_usage,
    .options = forget_options,
    .pass_unknown = false,
    .run = run_forget,
};
