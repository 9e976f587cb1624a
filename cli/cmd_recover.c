/* `flowloom-backup recover` (alias restore): restores the session as it
 * stood at a backup (an incremental with its base full and the
 * incrementals before it; --only: the backup's own entries) into the
 * session directory (after a full safety backup of its current state) or
 * into --target DIR, or lists what that would change (--dry-run). The work,
 * the tree, staging, verification and the atomic move, is fb_restore_run
 * (core); an interruption before the move leaves the session unchanged. */
#include "cli_i.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "fb_restore.h"
#include "fb_store.h"

#define DEFAULT_WAIT_SECONDS 10.0

enum {
    OPT_TARGET = CLI_OPT_COMMAND,
    OPT_DRY_RUN,
    OPT_NO_SAFETY,
    OPT_SAME_OWNER,
    OPT_WAIT,
    OPT_ONLY,
    OPT_PROGRESS,
    OPT_NO_PROGRESS,
    OPT_PATH,
};

static const cli_option recover_options[] = {
    {"target", 't', true, OPT_TARGET},
    {"dry-run", 'n', false, OPT_DRY_RUN},
    {"no-safety-backup", 0, false, OPT_NO_SAFETY},
    {"same-owner", 0, false, OPT_SAME_OWNER},
    {"wait", 0, true, OPT_WAIT},
    {"only", 0, false, OPT_ONLY},
    {"progress", 0, false, OPT_PROGRESS},
    {"no-progress", 0, false, OPT_NO_PROGRESS},
    {"path", 'p', true, OPT_PATH},
    {NULL, 0, false, 0},
};

static const char recover_usage[] =
    "Usage: " CLI_PROG " recover [session_id] [backup_id|latest] [--target DIR] [--only]\n"
    "           [--path PATTERN]... [--dry-run] [--no-safety-backup] [--same-owner]\n"
    "           [--wait SECONDS] [--json] [--progress|--no-progress]\n"
    "       " CLI_PROG " restore ...   (the same)\n"
    "\n"
    "Restores the session (default: the current one) as it stood at a backup (default:\n"
    "the latest): a full backup as itself; an incremental as its base full backup with\n"
    "every incremental after it up to this one laid over it. An incremental whose base\n"
    "is gone cannot be restored that way (exit 3): use --only. The archives are\n"
    "extracted into a staging directory and every entry is checked against its\n"
    "manifest (SHA-256, size, type) before anything is moved into place; a backup that\n"
    "fails a check is refused (exit 1) and nothing is touched.\n"
    "\n"
    "Into the session directory (default), a full safety backup of its current state is\n"
    "taken first (note 'pre-recover <backup_id>'; recover it to undo); the session\n"
    "directory then becomes equal to the restored tree (extra entries removed).\n"
    "Setuid/setgid/sticky bits and write permission for others are never restored;\n"
    "files belong to the user running the command unless --same-owner is given.\n"
    "Interrupted (Ctrl-C) before the tree is moved into place, it removes its staging\n"
    "directory and the session is unchanged (exit 130; 143 for SIGTERM).\n"
    "\n"
    "Options:\n"
    "  -t, --target DIR        restore into DIR instead (absent or empty, not a symlink);\n"
    "                          nothing else is touched and no safety backup is taken\n"
    "      --only              restore just the backup's own entries (an incremental's\n"
    "                          files only), removing nothing\n"
    "  -p, --path PATTERN      restore only the entries PATTERN matches (repeatable):\n"
    "                          fnmatch on the path relative to the session, '*' not\n"
    "                          crossing '/' ('artifacts/*.json'); a PATTERN ending in '/'\n"
    "                          takes that directory and everything below it ('logs/').\n"
    "                          Their parent directories come along. Into the session,\n"
    "                          what the patterns match there that the backup does not\n"
    "                          hold is removed (not with --only); nothing outside the\n"
    "                          patterns is written or removed. A hardlink whose file is\n"
    "                          not matched comes back as a copy of the file. A PATTERN\n"
    "                          matching nothing in the backup is an error (exit 3)\n"
    "                          before anything is touched\n"
    "  -n, --dry-run           list what would change (added, modified, removed, changed:\n"
    "                          metadata only); change nothing\n"
    "      --no-safety-backup  do not take the safety backup first\n"
    "      --same-owner        restore the stored owners (uid/gid)\n"
    "      --wait SECONDS      wait this long for the session lock (default 10)\n"
    "      --progress          always show a progress bar on stderr (bytes extracted,\n"
    "                          then the safety backup's; rate, ETA)\n"
    "      --no-progress       never show it (default: shown on a terminal after a second)\n"
    "      --json              print the result as one JSON object\n"
    "  -q, --quiet             print only errors and warnings\n"
    "  -v, --verbose           list every path changed (also without --dry-run)\n";

typedef struct recover_args {
    const char *session_arg;
    const char *backup_arg;
    const char *target;
    bool dry_run;
    bool safety;
    bool same_owner;
    bool only;
    const char **paths; /* --path, in order; owned array of borrowed strings */
    size_t n_paths;
    double wait;
    cli_progress_mode progress;
} recover_args;

/* A --path pattern. An empty one could only ever match nothing; it is a
 * typo (an unset shell variable), said as such. */
static int add_path(cli_ctx *ctx, recover_args *a, const char *pattern)
{
    if (!*pattern)
        return cli_usage_error(ctx->command, "--path: empty pattern");
    const char **v = realloc(a->paths, (a->n_paths + 1) * sizeof *v);
    if (!v)
        return cli_failf(CLI_EXIT_RUNTIME, "out of memory");
    a->paths = v;
    a->paths[a->n_paths++] = pattern;
    return 0;
}

static int parse_recover_args(cli_ctx *ctx, recover_args *a)
{
    a->target = NULL;
    a->dry_run = false;
    a->safety = true;
    a->same_owner = false;
    a->only = false;
    a->paths = NULL;
    a->n_paths = 0;
    a->wait = DEFAULT_WAIT_SECONDS;
    a->progress = CLI_PROGRESS_AUTO;
    for (size_t i = 0; i < ctx->n_opts; i++) {
        const cli_optval *o = &ctx->opts[i];
        int rc = 0;
        switch (o->id) {
        case OPT_TARGET:
            a->target = o->value;
            if (!*a->target)
                rc = cli_usage_error(ctx->command, "--target: empty directory name");
            break;
        case OPT_DRY_RUN:
            a->dry_run = true;
            break;
        case OPT_NO_SAFETY:
            a->safety = false;
            break;
        case OPT_SAME_OWNER:
            a->same_owner = true;
            break;
        case OPT_WAIT:
            rc = cli_parse_seconds("--wait", o->value, &a->wait);
            break;
        case OPT_ONLY:
            a->only = true;
            break;
        case OPT_PATH:
            rc = add_path(ctx, a, o->value);
            break;
        case OPT_PROGRESS:
            a->progress = CLI_PROGRESS_ON;
            break;
        case OPT_NO_PROGRESS:
            a->progress = CLI_PROGRESS_OFF;
            break;
        default:
            break;
        }
        if (rc)
            return rc;
    }
    int status = cli_split_session_backup(ctx, &a->session_arg, &a->backup_arg);
    if (status)
        return status;
    return 0;
}

static void print_change(const fb_restore_change *c)
{
    printf("%s: ", fb_change_kind_name(c->kind));
    cli_print_escaped(stdout, c->path);
    fputc('\n', stdout);
}

static void print_summary(const fb_restore_result *r)
{
    printf("%zu added, %zu modified, %zu removed, %zu changed (metadata only)", r->n_added,
           r->n_modified, r->n_removed, r->n_changed);
}

/* The backups the restored tree came from: a recover that names only the
 * backup asked for hides that an incremental holds a few files. */
static void print_sources(const fb_restore_result *r)
{
    fputs("  from:           ", stdout);
    if (r->n_sources == 0) {
        fputs("?\n", stdout);
        return;
    }
    fputs(r->sources[0].id, stdout);
    if (r->only) {
        fputs(" alone (--only: its own entries; nothing is removed)\n", stdout);
        return;
    }
    size_t n_incr = r->n_sources - 1;
    if (n_incr > 0) {
        printf(" + %zu incremental%s (", n_incr, n_incr == 1 ? "" : "s");
        for (size_t i = 1; i < r->n_sources; i++)
            printf("%s%s", i > 1 ? ", " : "", r->sources[i].id);
        fputc(')', stdout);
    }
    fputc('\n', stdout);
}

/* --path: the patterns and what they selected, so that a report of "3
 * added" is not read as the whole backup. */
static void print_paths(const recover_args *a, const fb_restore_result *r)
{
    fputs("  paths:          ", stdout);
    for (size_t i = 0; i < a->n_paths; i++) {
        if (i)
            fputs(", ", stdout);
        cli_print_escaped(stdout, a->paths[i]);
    }
    printf(" (%" PRIu64 " entr%s with their parent directories; nothing outside the "
           "patterns is touched)\n",
           r->selected, r->selected == 1 ? "y" : "ies");
}

static void print_human(const cli_ctx *ctx, const char *session_id, const recover_args *a,
                        const fb_restore_result *r, const fb_index_record *rec)
{
    const char *type = fb_backup_type_name(r->type);
    if (r->dry_run)
        printf("Dry run: recovering backup %s (%s) of session %s\n", r->backup_id, type,
               session_id);
    else
        printf("Recovered backup %s (%s) of session %s\n", r->backup_id, type, session_id);
    if (rec) {
        char when[64];
        cli_format_local_time(rec->created_at, true, when);
        printf("  created:        %s\n", when);
        fputs("  note:           ", stdout);
        if (rec->note)
            cli_print_escaped(stdout, rec->note);
        else
            fputs("(none)", stdout);
        fputc('\n', stdout);
    }
    print_sources(r);
    if (a->n_paths > 0)
        print_paths(a, r);
    fputs(r->dry_run ? "  destination:    " : "  restored into:  ", stdout);
    cli_print_escaped(stdout, r->destination ? r->destination : "?");
    fputc('\n', stdout);
    if (r->into_session) {
        fputs("  safety backup:  ", stdout);
        if (r->safety_backup_id[0])
            printf("%s (note \"pre-recover %s\"; recover it to undo)\n", r->safety_backup_id,
                   r->backup_id);
        else if (!a->safety)
            fputs("none (--no-safety-backup)\n", stdout);
        else if (r->dry_run)
            fputs("would be taken first (full backup of the current state)\n", stdout);
        else
            fputs("none (the session directory did not exist)\n", stdout);
    }
    if (!r->dry_run) {
        char bytes[32];
        cli_format_size(r->bytes, bytes);
        printf("  restored:       %" PRIu64 " entr%s, %" PRIu64 " file%s, %s verified against "
               "the manifest\n",
               r->entries, r->entries == 1 ? "y" : "ies", r->files, r->files == 1 ? "" : "s",
               bytes);
    }
    fputs(r->dry_run ? "  would change:   " : "  changes:        ", stdout);
    print_summary(r);
    fputc('\n', stdout);
    if (r->dry_run || ctx->verbose)
        for (size_t i = 0; i < r->n_changes; i++) {
            fputs("    ", stdout);
            print_change(&r->changes[i]);
        }
    if (r->dry_run)
        printf("Nothing was changed (dry run).\n");
}

/* The backup's id is "id", as in every command's output (list, verify,
 * backup, cleanup), so one jq filter reads them all. */
static int emit_json(const char *session_id, const recover_args *a,
                     const fb_restore_result *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *summary = NULL, *changes = NULL, *sources = NULL, *paths = NULL;
    bool ok = o && cli_json_add(o, "session_id", cJSON_CreateString(session_id)) &&
              cli_json_add(o, "id", cJSON_CreateString(r->backup_id)) &&
              cli_json_add(o, "type", cJSON_CreateString(fb_backup_type_name(r->type))) &&
              cli_json_add(o, "only", cJSON_CreateBool(r->only)) &&
              cli_json_add(o, "paths", paths = cJSON_CreateArray()) &&
              cli_json_add(o, "selected", cli_json_uint(r->selected)) &&
              cli_json_add(o, "sources", sources = cJSON_CreateArray()) &&
              cli_json_add_name(o, "destination", r->destination ? r->destination : "") &&
              cli_json_add(o, "into_session", cJSON_CreateBool(r->into_session)) &&
              cli_json_add(o, "dry_run", cJSON_CreateBool(r->dry_run)) &&
              cli_json_add(o, "safety_backup_id",
                           r->safety_backup_id[0] ? cJSON_CreateString(r->safety_backup_id)
                                                  : cJSON_CreateNull()) &&
              cli_json_add(o, "entries", cli_json_uint(r->entries)) &&
              cli_json_add(o, "files", cli_json_uint(r->files)) &&
              cli_json_add(o, "bytes", cli_json_uint(r->bytes)) &&
              cli_json_add(o, "summary", summary = cJSON_CreateObject()) &&
              cli_json_add(summary, "added", cli_json_uint(r->n_added)) &&
              cli_json_add(summary, "modified", cli_json_uint(r->n_modified)) &&
              cli_json_add(summary, "removed", cli_json_uint(r->n_removed)) &&
              cli_json_add(summary, "changed", cli_json_uint(r->n_changed)) &&
              cli_json_add(o, "changes", changes = cJSON_CreateArray()) &&
              cli_json_add(o, "seconds", cJSON_CreateNumber(r->seconds));
    for (size_t i = 0; ok && i < r->n_sources; i++)
        ok = cli_json_add(sources, NULL, cJSON_CreateString(r->sources[i].id));
    for (size_t i = 0; ok && i < a->n_paths; i++)
        ok = cli_json_add(paths, NULL, cli_json_string_or_null(a->paths[i]));
    for (size_t i = 0; ok && i < r->n_changes; i++) {
        cJSON *c = cJSON_CreateObject();
        ok = cli_json_add(changes, NULL, c) && cli_json_add_name(c, "path", r->changes[i].path) &&
             cli_json_add(c, "kind",
                          cJSON_CreateString(fb_change_kind_name(r->changes[i].kind)));
    }
    if (!ok) {
        cJSON_Delete(o);
        return cli_failf(CLI_EXIT_RUNTIME, "out of memory while formatting JSON");
    }
    return cli_json_emit(o);
}

/* The safety backup reports a backup's steps ("write", ...): named as its
 * own so that they are not taken for the recovery's. */
static void recover_progress(void *vp, const char *phase, uint64_t done, uint64_t total)
{
    char name[32];
    if (strcmp(phase, "extract") != 0) {
        snprintf(name, sizeof name, "safety %s", phase);
        phase = name;
    }
    cli_progress_update(vp, phase, done, total);
}

/* The human report, with the backup's time and note from the index
 * (read-only). */
static void print_report(cli_ctx *ctx, fb_store *store, const char *session_id,
                         const recover_args *a, const fb_restore_result *result)
{
    fb_index idx;
    const fb_index_record *rec = NULL;
    if (cli_load_index(ctx, store, session_id, &idx) == 0) {
        long at = fb_index_find(&idx, result->backup_id);
        rec = at >= 0 ? &idx.records[at] : NULL;
    }
    print_human(ctx, session_id, a, result, rec);
    fb_index_fini(&idx);
}

/* The error, and the safety backup if one was taken before it. An
 * interruption exits with 128 + the signal. */
static int report_failure(const cli_ctx *ctx, const char *session_id, const fb_error *err,
                          const fb_restore_result *result)
{
    int status;
    if (err->code == FB_EINTERRUPTED) {
        cli_fail(err);
        status = cli_interrupted_status();
    } else if (err->code == FB_ENOTFOUND || err->code == FB_EINVAL) {
        status = cli_fail_in_session(ctx, err);
    } else {
        status = cli_fail(err);
    }
    if (result->safety_backup_id[0])
        fprintf(stderr, "%s: the safety backup %s of session %s was taken before the "
                        "failure and is kept\n",
                CLI_PROG, result->safety_backup_id, session_id);
    return status;
}

static int run_recover(cli_ctx *ctx)
{
    recover_args a;
    int status = parse_recover_args(ctx, &a);
    if (status) {
        free(a.paths);
        return status;
    }

    char *session_id = NULL;
    fb_store *store = NULL;
    bool config_ready = false;
    fb_config config;
    fb_restore_result result;
    fb_restore_result_init(&result);
    fb_error err;
    fb_error_clear(&err);

    status = cli_resolve_existing_session(ctx, a.session_arg, &session_id);
    if (status)
        goto out;
    if (fb_config_load(ctx->root, &config, cli_warn, ctx, &err) != 0) {
        status = cli_fail(&err);
        goto out;
    }
    config_ready = true;
    status = cli_open_store_readonly(ctx, &store);
    if (status)
        goto out;
    if (!store) {
        status = cli_failf(CLI_EXIT_NOTFOUND, "session %s has no backups (%s/.flowloom/backups "
                                              "does not exist)",
                           session_id, ctx->root);
        goto out;
    }

    /* From here a signal only asks core to stop: it removes its staging
     * dir, unless the tree is already being moved into place. */
    cli_signals_install();
    cli_progress prog;
    cli_progress_init(&prog, ctx, a.progress);
    fb_restore_request req = {
        .session_id = session_id,
        .backup = a.backup_arg ? a.backup_arg : FB_BACKUP_SPEC_LATEST,
        .target_dir = a.target,
        .dry_run = a.dry_run,
        .safety_backup = a.safety,
        .same_owner = a.same_owner,
        .only = a.only,
        .paths = a.paths,
        .n_paths = a.n_paths,
        .now = ctx->now,
        .config = &config,
        .lock_wait_seconds = a.wait,
        .lock_waiting = cli_lock_waiting,
        .lock_waiting_ctx = ctx,
        .warn = cli_warn,
        .warn_ctx = ctx,
        .progress = cli_progress_fn(&prog) ? recover_progress : NULL,
        .progress_ctx = &prog,
        .cancel = &cli_interrupt_signal,
    };
    int rc = fb_restore_run(store, &req, &result, &err);
    cli_progress_end(&prog);
    if (rc != 0) {
        status = report_failure(ctx, session_id, &err, &result);
        goto out;
    }

    if (ctx->json)
        status = emit_json(session_id, &a, &result);
    else if (!ctx->quiet)
        print_report(ctx, store, session_id, &a, &result);

out:
    fb_restore_result_fini(&result);
    fb_store_free(store);
    if (config_ready)
        fb_config_fini(&config);
    free(session_id);
    free(a.paths);
    return status;
}

const cli_command cli_cmd_recover = {
    .name = "recover",
    .alias = "restore",
    .summary = "restore a backup into the session (after a safety backup) or a directory",
    .usage = recover_usage,
    .options = recover_options,
    .pass_unknown = false,
    .run = run_recover,
};
