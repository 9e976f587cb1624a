/* `flowloom-backup backup`: argument handling and the report of one backup
 * run. The work itself is fb_backup_run (core); the bar is progress.c's. */
#include "cli_i.h"
#include "fb_text.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fb_backup.h"
#include "fb_hash.h"
#include "fb_store.h"

/* Notes are free text from the command line; bound them so a manifest stays
 * a manifest. */
#define NOTE_MAX 4096
#define DEFAULT_WAIT_SECONDS 10.0

enum {
    OPT_TYPE = CLI_OPT_COMMAND,
    OPT_NOTE,
    OPT_NO_VERIFY,
    OPT_NO_CLEANUP,
    OPT_WAIT,
    OPT_PROGRESS,
    OPT_NO_PROGRESS,
};

static const cli_option backup_options[] = {
    {"type", 0, true, OPT_TYPE},
    {"note", 0, true, OPT_NOTE},
    {"no-verify", 0, false, OPT_NO_VERIFY},
    {"no-cleanup", 0, false, OPT_NO_CLEANUP},
    {"wait", 0, true, OPT_WAIT},
    {"progress", 0, false, OPT_PROGRESS},
    {"no-progress", 0, false, OPT_NO_PROGRESS},
    {NULL, 0, false, 0},
};

static const char backup_usage[] =
    "Usage: " CLI_PROG " backup [session_id] [full|incremental] [note] [options]\n"
    "\n"
    "Writes a backup of the session into .flowloom/backups/<session_id>/, validates it,\n"
    "publishes it atomically, records it in the index and applies the retention policy.\n"
    "The session defaults to the current one; a first argument 'full' or 'incremental'\n"
    "is the type (give a session with such a name with --session). Default type:\n"
    "incremental (the files matched by incremental.include in .flowloom/backup.json).\n"
    "Another file system mounted inside the session is skipped with a warning. Ctrl-C\n"
    "(or SIGTERM, SIGHUP) before the backup is published removes its temporary work\n"
    "and exits 130 (143, 129); once it is publishing, it finishes first.\n"
    "\n"
    "Options:\n"
    "      --type TYPE       full or incremental\n"
    "      --note TEXT       note stored in the manifest\n"
    "      --no-verify       skip validation before publishing\n"
    "      --no-cleanup      do not apply the retention policy\n"
    "      --wait SECONDS    wait this long for the session lock (default 10)\n"
    "      --progress        always show a progress bar on stderr\n"
    "      --no-progress     never show it (default: shown on a terminal after a second)\n"
    "      --json            print the result as one JSON object\n"
    "  -q, --quiet           print nothing on success\n"
    "  -v, --verbose         list the names of the stored entries, and every backup\n"
    "                        retention kept with the rule that kept it\n";

typedef struct backup_args {
    const char *session_arg;
    fb_backup_type type;
    const char *note;
    bool verify;
    bool cleanup;
    double wait;
    cli_progress_mode progress;
} backup_args;

static int parse_backup_args(cli_ctx *ctx, backup_args *a)
{
    const cli_command *cmd = ctx->command;
    const char *type_opt = NULL;
    a->type = FB_BACKUP_INCREMENTAL;
    a->note = NULL;
    a->verify = true;
    a->cleanup = true;
    a->wait = DEFAULT_WAIT_SECONDS;
    a->progress = CLI_PROGRESS_AUTO;
    for (size_t i = 0; i < ctx->n_opts; i++) {
        const cli_optval *o = &ctx->opts[i];
        int rc = 0;
        switch (o->id) {
        case OPT_TYPE:
            type_opt = o->value;
            break;
        case OPT_NOTE:
            a->note = o->value;
            break;
        case OPT_NO_VERIFY:
            a->verify = false;
            break;
        case OPT_NO_CLEANUP:
            a->cleanup = false;
            break;
        case OPT_WAIT:
            rc = cli_parse_seconds("--wait", o->value, &a->wait);
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

    /* backup [session_id] [full|incremental] [note] */
    size_t i = 0;
    fb_backup_type t;
    a->session_arg = ctx->session_opt;
    if (!a->session_arg && i < ctx->n_pos && !cli_parse_backup_type(ctx->pos[i], &t))
        a->session_arg = ctx->pos[i++];
    const char *type_pos = NULL;
    if (i < ctx->n_pos && cli_parse_backup_type(ctx->pos[i], &t))
        type_pos = ctx->pos[i++];
    const char *note_pos = NULL;
    if (i < ctx->n_pos)
        note_pos = ctx->pos[i++];
    if (i < ctx->n_pos)
        return cli_usage_error(cmd, "unexpected argument '%s' (arguments are [session_id] "
                                    "[full|incremental] [note])",
                               ctx->pos[i]);

    if (type_opt && !cli_parse_backup_type(type_opt, &t))
        return cli_usage_error(cmd, "--type: '%s' is not a backup type (full or incremental)",
                               type_opt);
    if (type_opt && type_pos) {
        fb_backup_type t1, t2;
        cli_parse_backup_type(type_opt, &t1);
        cli_parse_backup_type(type_pos, &t2);
        if (t1 != t2)
            return cli_usage_error(cmd, "type given twice: --type %s and '%s'", type_opt,
                                   type_pos);
    }
    const char *type_str = type_opt ? type_opt : type_pos;
    if (type_str)
        cli_parse_backup_type(type_str, &a->type);

    if (a->note && note_pos)
        return cli_usage_error(cmd, "note given twice: --note and '%s'", note_pos);
    if (note_pos)
        a->note = note_pos;
    if (a->note) {
        if (strlen(a->note) > NOTE_MAX)
            return cli_usage_error(cmd, "note is longer than %d bytes", NOTE_MAX);
        char *clean = cli_utf8_sanitize(a->note);
        if (!clean)
            return cli_failf(CLI_EXIT_RUNTIME, "out of memory");
        bool utf8 = strcmp(clean, a->note) == 0;
        free(clean);
        if (!utf8)
            return cli_usage_error(cmd, "note is not valid UTF-8");
    }
    return 0;
}

static void print_entry_name(const fb_manifest_entry *e)
{
    fputs("      ", stdout);
    cli_print_escaped(stdout, e->path);
    switch (e->meta.type) {
    case FB_ENTRY_DIR:
        fputc('/', stdout);
        break;
    case FB_ENTRY_SYMLINK:
        fputs(" -> ", stdout);
        cli_print_escaped(stdout, e->target ? e->target : "");
        break;
    case FB_ENTRY_HARDLINK:
        fputs(" => ", stdout);
        cli_print_escaped(stdout, e->target ? e->target : "");
        break;
    default:
        break;
    }
    fputc('\n', stdout);
}

static double ratio_of(const fb_manifest *m)
{
    if (m->archive.size == 0)
        return 0.0;
    return (double)m->totals.bytes / (double)m->archive.size;
}

static void print_human(const cli_ctx *ctx, const fb_backup_result *r, const char *location,
                        const fb_retention_policy *policy, bool cleanup)
{
    const fb_manifest *m = &r->manifest;
    char local[64], utc[32], orig[32], stored[32];
    cli_format_local_time(m->created_at, true, local);
    fb_rfc3339_format(m->created_at, utc);
    cli_format_size(m->totals.bytes, orig);
    cli_format_size(m->archive.size, stored);

    printf("Backup %s of session %s\n", m->backup_id, m->session_id);
    printf("  created:    %s (%s)\n", local, utc);
    printf("  type:       %s\n", fb_backup_type_name(m->type));
    fputs("  note:       ", stdout);
    if (m->note)
        cli_print_escaped(stdout, m->note);
    else
        fputs("(none)", stdout);
    fputc('\n', stdout);
    if (m->type == FB_BACKUP_INCREMENTAL)
        printf("  base:       %s\n", m->base[0] ? m->base : "(no full backup yet)");
    printf("  files:      %" PRIu64 " (%" PRIu64 " %s, %" PRIu64 " %s)\n", m->totals.files,
           m->totals.dirs, m->totals.dirs == 1 ? "directory" : "directories", m->totals.symlinks,
           m->totals.symlinks == 1 ? "symlink" : "symlinks");
    if (ctx->verbose)
        for (size_t i = 0; i < m->n_entries; i++)
            print_entry_name(&m->entries[i]);
    printf("  original:   %s (%" PRIu64 " bytes)\n", orig, m->totals.bytes);
    printf("  stored:     %s (%" PRIu64 " bytes, %" PRIu64 " zstd frame%s), ratio %.2f\n",
           stored, m->archive.size, m->archive.frames, m->archive.frames == 1 ? "" : "s",
           ratio_of(m));
    fputs("  location:   ", stdout);
    cli_print_escaped(stdout, location);
    fputc('\n', stdout);
    if (r->verified)
        printf("  validation: passed (archive re-read: every frame, every file's SHA-256%s)\n",
               m->type == FB_BACKUP_INCREMENTAL ? ", JSON members parsed" : "");
    else
        printf("  validation: skipped (--no-verify)\n");
    if (r->changed_files)
        printf("  changed:    %" PRIu64 " file%s changed while being read (see warnings)\n",
               r->changed_files, r->changed_files == 1 ? "" : "s");
    if (r->skipped_entries)
        printf("  skipped:    %" PRIu64 " entr%s not stored (see warnings)\n", r->skipped_entries,
               r->skipped_entries == 1 ? "y" : "ies");
    fputs("  retention:  ", stdout);
    if (r->retention_error.code) {
        fputs("failed: ", stdout);
        cli_print_message(stdout, r->retention_error.message);
        fputs(" (the backup itself is complete)\n", stdout);
        return;
    }
    if (r->interrupted) {
        fputs("not applied (interrupted)\n", stdout);
        return;
    }
    if (!cleanup || !r->retention) {
        fputs("not applied (--no-cleanup)\n", stdout);
        return;
    }
    size_t removed = 0;
    for (size_t i = 0; i < r->n_retention; i++)
        removed += r->retention[i].remove;
    size_t kept = r->n_retention - removed;
    if (removed)
        printf("removed %zu backup%s, kept %zu", removed, removed == 1 ? "" : "s", kept);
    else if (kept == 1)
        fputs("kept the only backup", stdout);
    else
        printf("kept all %zu backups", kept);
    fputs("; policy ", stdout);
    cli_print_policy(stdout, policy);
    fputc('\n', stdout);
    /* Every backup would otherwise list the whole session again: what was
     * removed is news and always named with its rule; what was kept is
     * the count above unless -v asks for each backup's rule (cleanup
     * lists them all). */
    for (size_t i = 0; i < r->n_retention; i++) {
        if (!r->retention[i].remove && !ctx->verbose)
            continue;
        char desc[256];
        fb_retention_describe(&r->retention[i], policy, desc, sizeof desc);
        printf("    %s  %s\n", r->retention[i].id, desc);
    }
}

static int emit_json(const cli_ctx *ctx, const fb_backup_result *r, const char *location,
                     const fb_retention_policy *policy, bool cleanup)
{
    const fb_manifest *m = &r->manifest;
    cJSON *o = cJSON_CreateObject();
    char sha[FB_SHA256_HEX_LEN + 1];
    fb_hex_encode(m->archive.sha256, FB_SHA256_LEN, sha);
    bool ok = o && cli_json_add(o, "id", cJSON_CreateString(m->backup_id)) &&
              cli_json_add(o, "session_id", cJSON_CreateString(m->session_id)) &&
              cli_json_add(o, "type", cJSON_CreateString(fb_backup_type_name(m->type))) &&
              cli_json_add(o, "created_at", cli_json_time(m->created_at)) &&
              cli_json_add(o, "note", cli_json_string_or_null(m->note)) &&
              cli_json_add(o, "base", m->base[0] ? cJSON_CreateString(m->base)
                                                 : cJSON_CreateNull()) &&
              cli_json_add(o, "seq", cli_json_uint(m->seq)) &&
              cli_json_add(o, "files", cli_json_uint(m->totals.files)) &&
              cli_json_add(o, "dirs", cli_json_uint(m->totals.dirs)) &&
              cli_json_add(o, "symlinks", cli_json_uint(m->totals.symlinks)) &&
              cli_json_add(o, "bytes", cli_json_uint(m->totals.bytes)) &&
              cli_json_add(o, "stored_bytes", cli_json_uint(m->archive.size)) &&
              cli_json_add(o, "ratio", cJSON_CreateNumber(round(ratio_of(m) * 1000.0) / 1000.0)) &&
              cli_json_add(o, "frames", cli_json_uint(m->archive.frames)) &&
              cli_json_add(o, "archive_sha256", cJSON_CreateString(sha)) &&
              cli_json_add(o, "path", cli_json_string_or_null(location)) &&
              cli_json_add(o, "verified", cJSON_CreateBool(r->verified)) &&
              cli_json_add(o, "changed_files", cli_json_uint(r->changed_files)) &&
              cli_json_add(o, "skipped_entries", cli_json_uint(r->skipped_entries)) &&
              cli_json_add(o, "retention_error",
                           cli_json_string_or_null(r->retention_error.code
                                                       ? r->retention_error.message
                                                       : NULL)) &&
              cli_json_add(o, "index_rebuilt", cJSON_CreateBool(r->index_rebuilt)) &&
              cli_json_add(o, "interrupted", cJSON_CreateBool(r->interrupted));
    if (ok && ctx->verbose) {
        cJSON *names = cJSON_CreateArray();
        ok = cli_json_add(o, "entries", names);
        for (size_t i = 0; ok && i < m->n_entries; i++)
            ok = cli_json_add(names, NULL, cli_json_string_or_null(m->entries[i].path));
    }
    if (ok && (!cleanup || !r->retention)) {
        ok = cli_json_add(o, "retention", cJSON_CreateNull());
    } else if (ok) {
        cJSON *ret = cJSON_CreateObject();
        ok = cli_json_add(o, "retention", ret) &&
             cli_json_add_retention(ret, policy, r->retention, r->n_retention);
    }
    if (!ok) {
        cJSON_Delete(o);
        return cli_failf(CLI_EXIT_RUNTIME, "out of memory while formatting JSON");
    }
    return cli_json_emit(o);
}

/* The first positional of `backup` was taken for a session id and is not
 * one (invalid, or no such session): say what the user probably meant, as
 * git and restic suggest commands. A word close to a type is a mistyped
 * type; anything else that is no session id is a note given without
 * --note. */
static void hint_for_session_word(const cli_ctx *ctx, const backup_args *a, bool valid_id)
{
    static const char *const types[] = {"full", "incremental", "incr", NULL};
    const char *word = a->session_arg;
    const char *type = cli_closest_word(word, types);
    if (type) {
        fprintf(stderr, "Did you mean the backup type '%s'? (usage: %s %s [session_id] "
                        "[full|incremental] [note])\n",
                type, CLI_PROG, ctx->command->name);
    } else if (!valid_id && !a->note) {
        char shown[256];
        fb_text_quote(word, shown, sizeof shown);
        fprintf(stderr, "To give a note, use --note: %s %s --note '%s'\n", CLI_PROG,
                ctx->command->name, shown);
    }
}

/* The session to back up, checked before anything on disk is created: its
 * id first (before anything on disk is looked at), then that its directory
 * exists. A word that is no session gets a hint. *out malloc'd. Returns 0
 * or an exit status. */
static int find_backup_session(cli_ctx *ctx, const backup_args *a, char **out)
{
    *out = NULL;
    int status = cli_check_session_arg(a->session_arg);
    if (status) {
        if (a->session_arg != ctx->session_opt)
            hint_for_session_word(ctx, a, false);
        return status;
    }
    if ((status = cli_resolve_root(ctx)) != 0 ||
        (status = cli_resolve_session(ctx, a->session_arg, out)) != 0)
        return status;
    if (cli_session_source_errno(ctx, *out) != ENOENT)
        return 0;
    status = cli_failf(CLI_EXIT_NOTFOUND,
                       "session '%s' (from %s) not found: %s/" FB_SESSIONS_PATH "/%s "
                       "does not exist",
                       *out, cli_session_origin_text(ctx), ctx->root, *out);
    if (ctx->session_origin == FB_SESSION_FROM_ARGUMENT)
        hint_for_session_word(ctx, a, true);
    free(*out);
    *out = NULL;
    return status;
}

/* Prints the report (human or --json) of a backup that succeeded. */
static int report_backup(cli_ctx *ctx, const fb_store *store, const char *session_id,
                         const fb_backup_result *result, const fb_config *config,
                         const backup_args *a)
{
    if (result->interrupted)
        cli_warn(ctx, "interrupted after the backup was published: it is complete and in the "
                      "index; retention was not applied");
    size_t len = strlen(fb_store_backups_path(store)) + strlen(session_id) +
                 strlen(result->manifest.backup_id) + 3;
    char *location = malloc(len);
    if (!location)
        return cli_failf(CLI_EXIT_RUNTIME, "out of memory");
    snprintf(location, len, "%s/%s/%s", fb_store_backups_path(store), session_id,
             result->manifest.backup_id);
    int status = 0;
    if (ctx->json)
        status = emit_json(ctx, result, location, &config->retention, a->cleanup);
    else if (!ctx->quiet)
        print_human(ctx, result, location, &config->retention, a->cleanup);
    free(location);
    return status;
}

static int run_backup(cli_ctx *ctx)
{
    backup_args a;
    int status = parse_backup_args(ctx, &a);
    if (status)
        return status;
    char *session_id = NULL;
    if ((status = find_backup_session(ctx, &a, &session_id)) != 0)
        return status;

    fb_store *store = NULL;
    bool config_ready = false;
    fb_config config;
    fb_backup_result result;
    fb_backup_result_init(&result);
    fb_error err;
    fb_error_clear(&err);
    if (fb_config_load(ctx->root, &config, cli_warn, ctx, &err) != 0) {
        status = cli_fail(&err);
        goto out;
    }
    config_ready = true;
    if (fb_store_open(ctx->root, true, &store, &err) != 0) {
        status = cli_fail(&err);
        goto out;
    }

    cli_progress prog;
    cli_progress_init(&prog, ctx, a.progress);
    fb_backup_request req = {
        .session_id = session_id,
        .type = a.type,
        .note = a.note,
        .now = ctx->now,
        .config = &config,
        .lock_wait_seconds = a.wait,
        .lock_waiting = cli_lock_waiting,
        .lock_waiting_ctx = ctx,
        .verify = a.verify,
        .cleanup = a.cleanup,
        .warn = cli_warn,
        .warn_ctx = ctx,
        .progress = cli_progress_fn(&prog),
        .progress_ctx = &prog,
        .cancel = &cli_interrupt_signal,
    };
    /* From here a first SIGINT, SIGTERM or SIGHUP asks core to stop: it
     * removes its unpublished work, or finishes a publish it began. */
    cli_signals_install();
    int rc = fb_backup_run(store, &req, &result, &err);
    cli_progress_end(&prog);
    if (rc == FB_EINTERRUPTED) {
        fprintf(stderr, "%s: interrupted: nothing was published\n", CLI_PROG);
        status = cli_interrupted_status();
    } else if (rc != 0) {
        status = cli_fail(&err);
    } else {
        status = report_backup(ctx, store, session_id, &result, &config, &a);
    }

out:
    fb_backup_result_fini(&result);
    fb_store_free(store);
    if (config_ready)
        fb_config_fini(&config);
    free(session_id);
    return status;
}

const cli_command cli_cmd_backup = {
    .name = "backup",
    .alias = NULL,
    .summary = "write a full or incremental backup of a session",
    .usage = backup_usage,
    .options = backup_options,
    .pass_unknown = false,
    .run = run_backup,
};
