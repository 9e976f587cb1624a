/* `flowloom-backup recover` (alias restore): restores a backup into the
 * session directory (after a full safety backup of its current state) or
 * into --target DIR, or lists what that would change (--dry-run). The work,
 * staging, verification and the atomic move, is fb_restore_run (core). */
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
};

static const cli_option recover_options[] = {
    {"target", 't', true, OPT_TARGET},
    {"dry-run", 'n', false, OPT_DRY_RUN},
    {"no-safety-backup", 0, false, OPT_NO_SAFETY},
    {"same-owner", 0, false, OPT_SAME_OWNER},
    {"wait", 0, true, OPT_WAIT},
    {NULL, 0, false, 0},
};

static const char recover_usage[] =
    "Usage: " CLI_PROG " recover [session_id] [backup_id|latest] [--target DIR] [--dry-run]\n"
    "           [--no-safety-backup] [--same-owner] [--wait SECONDS] [--json]\n"
    "       " CLI_PROG " restore ...   (the same)\n"
    "\n"
    "Restores a backup (default: the latest) of the session (default: the current one).\n"
    "The archive is extracted into a staging directory and every entry is checked\n"
    "against the manifest (SHA-256, size, type) before anything is moved into place; a\n"
    "backup that fails a check is refused (exit 1) and nothing is touched.\n"
    "\n"
    "Into the session directory (default), a full safety backup of its current state is\n"
    "taken first (note 'pre-recover <backup_id>'; recover it to undo). A full backup then\n"
    "makes the session directory equal to the backup (extra entries removed); an\n"
    "incremental overwrites only its own files. Setuid/setgid/sticky bits and write\n"
    "permission for others are never restored; files belong to the user running the\n"
    "command unless --same-owner is given.\n"
    "\n"
    "Options:\n"
    "  -t, --target DIR        restore into DIR instead (absent or empty, not a symlink);\n"
    "                          nothing else is touched and no safety backup is taken\n"
    "  -n, --dry-run           list what would change (added, modified, removed, changed:\n"
    "                          metadata only); change nothing\n"
    "      --no-safety-backup  do not take the safety backup first\n"
    "      --same-owner        restore the stored owners (uid/gid)\n"
    "      --wait SECONDS      wait this long for the session lock (default 10)\n"
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
    double wait;
} recover_args;

static int parse_recover_args(cli_ctx *ctx, recover_args *a)
{
    a->target = NULL;
    a->dry_run = false;
    a->safety = true;
    a->same_owner = false;
    a->wait = DEFAULT_WAIT_SECONDS;
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
static int emit_json(const char *session_id, const fb_restore_result *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *summary = NULL, *changes = NULL;
    bool ok = o && cli_json_add(o, "session_id", cJSON_CreateString(session_id)) &&
              cli_json_add(o, "id", cJSON_CreateString(r->backup_id)) &&
              cli_json_add(o, "type", cJSON_CreateString(fb_backup_type_name(r->type))) &&
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

static int run_recover(cli_ctx *ctx)
{
    recover_args a;
    int status = parse_recover_args(ctx, &a);
    if (status)
        return status;

    char *session_id = NULL;
    fb_store *store = NULL;
    bool config_ready = false;
    fb_config config;
    fb_restore_result result;
    fb_restore_result_init(&result);
    fb_index idx;
    fb_index_init(&idx, "");
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

    fb_restore_request req = {
        .session_id = session_id,
        .backup = a.backup_arg ? a.backup_arg : "latest",
        .target_dir = a.target,
        .dry_run = a.dry_run,
        .safety_backup = a.safety,
        .same_owner = a.same_owner,
        .now = ctx->now,
        .config = &config,
        .lock_wait_seconds = a.wait,
        .warn = cli_warn,
        .warn_ctx = ctx,
    };
    if (fb_restore_run(store, &req, &result, &err) != 0) {
        status = err.code == FB_ENOTFOUND || err.code == FB_EINVAL ? cli_fail_in_session(ctx, &err)
                                                                   : cli_fail(&err);
        if (result.safety_backup_id[0])
            fprintf(stderr, "%s: the safety backup %s of session %s was taken before the "
                            "failure and is kept\n",
                    CLI_PROG, result.safety_backup_id, session_id);
        goto out;
    }

    if (ctx->json) {
        status = emit_json(session_id, &result);
    } else if (!ctx->quiet) {
        /* The backup's time and note, from the index (read-only). */
        fb_index_fini(&idx);
        const fb_index_record *rec = NULL;
        if (cli_load_index(ctx, store, session_id, &idx) == 0) {
            long at = fb_index_find(&idx, result.backup_id);
            rec = at >= 0 ? &idx.records[at] : NULL;
        }
        print_human(ctx, session_id, &a, &result, rec);
    }

out:
    fb_index_fini(&idx);
    fb_restore_result_fini(&result);
    fb_store_free(store);
    if (config_ready)
        fb_config_fini(&config);
    free(session_id);
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
