/* `flowloom-backup verify`: full check of stored backups, done by core's
 * fb_verify_session (each backup completely, and the session's index.json
 * against the backup directories); this file picks the sessions and the
 * backup, and prints the results. Nothing is modified, except that a
 * derived index found inconsistent is rebuilt by the store as every command
 * does (SPEC "index.json"). */
#include "cli_i.h"

#include <stdlib.h>
#include <string.h>

#include "fb_store.h"
#include "fb_text.h"
#include "fb_verify.h"

enum { OPT_ALL = CLI_OPT_COMMAND, OPT_PROGRESS, OPT_NO_PROGRESS };

static const cli_option verify_options[] = {
    {"all", 0, false, OPT_ALL},
    {"progress", 0, false, OPT_PROGRESS},
    {"no-progress", 0, false, OPT_NO_PROGRESS},
    {NULL, 0, false, 0},
};

static const char verify_usage[] =
    "Usage: " CLI_PROG " verify [session_id] [backup_id|latest|--all] [--json] [--progress]\n"
    "\n"
    "Checks stored backups completely: the archive's SHA-256 and size, every zstd frame,\n"
    "every file's SHA-256 and size, the JSON members of incrementals, the manifest against\n"
    "the index. Prints 'OK <id>' or 'CORRUPT <id>: <reason>' per backup. Without a backup\n"
    "id every backup of the session is checked; --all without a session checks every\n"
    "session. Never modifies a backup.\n"
    "\n"
    "Exit status: 0 all good, 1 corruption found, 3 not found, 5 I/O error.\n"
    "\n"
    "Options:\n"
    "      --all           every backup (of every session when no session is given)\n"
    "      --progress      always show a progress bar on stderr (archive bytes read,\n"
    "                      rate, ETA)\n"
    "      --no-progress   never show it (default: shown on a terminal after a second)\n"
    "      --json          one JSON object with a result per backup\n"
    "  -q, --quiet         print only problems\n";

typedef struct verify_run {
    cli_ctx *ctx;
    cli_progress_mode progress;
    bool multi_session;
    size_t checked;
    size_t corrupt;
    size_t errors;
    size_t index_problems;
    cJSON *json;    /* the object being built, NULL without --json */
    cJSON *results; /* array in json */
    cJSON *index;   /* array in json */
    bool json_failed;
} verify_run;

static void print_label(const verify_run *v, const char *session_id, const char *id)
{
    if (v->multi_session)
        printf("%s/", session_id);
    printf("%s", id);
}

/* problem NULL: the backup is OK. error: the check itself failed (I/O). */
static void report_backup(verify_run *v, const char *session_id, const char *id,
                          const char *problem, bool error)
{
    cli_progress_clear(v->ctx);
    v->checked++;
    if (problem && error)
        v->errors++;
    else if (problem)
        v->corrupt++;
    if (v->json) {
        cJSON *o = cJSON_CreateObject();
        if (!(cli_json_add(v->results, NULL, o) &&
              cli_json_add(o, "session_id", cJSON_CreateString(session_id)) &&
              cli_json_add(o, "id", cJSON_CreateString(id)) &&
              cli_json_add(o, "status",
                           cJSON_CreateString(!problem ? "ok" : error ? "error" : "corrupt")) &&
              cli_json_add(o, "error", cli_json_string_or_null(problem))))
            v->json_failed = true;
        return;
    }
    if (!problem) {
        if (!v->ctx->quiet) {
            fputs("OK ", stdout);
            print_label(v, session_id, id);
            fputc('\n', stdout);
        }
        return;
    }
    fputs(error ? "ERROR " : "CORRUPT ", stdout);
    print_label(v, session_id, id);
    fputs(": ", stdout);
    cli_print_message(stdout, problem);
    fputc('\n', stdout);
}

static void report_index(verify_run *v, const char *session_id, const char *problem)
{
    cli_progress_clear(v->ctx);
    v->index_problems++;
    if (v->json) {
        cJSON *o = cJSON_CreateObject();
        if (!(cli_json_add(v->index, NULL, o) &&
              cli_json_add(o, "session_id", cJSON_CreateString(session_id)) &&
              cli_json_add(o, "error", cli_json_string_or_null(problem))))
            v->json_failed = true;
        return;
    }
    printf("CORRUPT %s/index.json: ", session_id);
    cli_print_message(stdout, problem);
    fputc('\n', stdout);
}

typedef struct sink_ctx {
    verify_run *v;
    const char *session_id;
} sink_ctx;

static void on_result(void *vctx, const char *backup_id, fb_verify_outcome outcome,
                      const char *problem)
{
    sink_ctx *s = vctx;
    if (backup_id)
        report_backup(s->v, s->session_id, backup_id, problem, outcome == FB_VERIFY_FAILED);
    else
        report_index(s->v, s->session_id, problem);
}

/* Verifies the session's backups: all of them (spec NULL) or one. */
static int verify_session(verify_run *v, fb_store *store, const char *session_id,
                          const char *spec)
{
    cli_ctx *ctx = v->ctx;
    fb_error err;
    fb_error_clear(&err);
    char id[FB_BACKUP_ID_LEN + 1] = "";
    if (spec && !fb_backup_id_is_valid(spec)) {
        /* latest, latest-full or the start of an id: the store's view, the
         * index, rebuilt in memory if it must be. A full id is verified as
         * given, even when the index has lost it. */
        fb_index idx;
        int status = cli_load_index(ctx, store, session_id, &idx);
        if (status == 0 && idx.n == 0) {
            char shown[256];
            fb_text_quote(spec, shown, sizeof shown);
            status = cli_failf(CLI_EXIT_NOTFOUND, "backup '%s' not found: session %s has no backups",
                               shown, session_id);
        }
        if (status == 0 && fb_store_resolve_backup(&idx, spec, id, &err) != 0)
            status = cli_fail_in_session(v->ctx, &err);
        fb_index_fini(&idx);
        if (status)
            return status;
    } else if (spec) {
        snprintf(id, sizeof id, "%s", spec);
    }
    sink_ctx sc = {.v = v, .session_id = session_id};
    bool index_stale = false;
    cli_progress prog;
    cli_progress_init(&prog, ctx, v->progress);
    fb_verify_request req = {
        .session_id = session_id,
        .backup_id = spec ? id : NULL,
        .sink = on_result,
        .sink_ctx = &sc,
        .progress = cli_progress_fn(&prog),
        .progress_ctx = &prog,
    };
    int rc = store ? fb_verify_session(store, &req, &index_stale, &err)
                   : fb_error_set(&err, FB_ENOTFOUND, "backup '%s' not found: session %s has no "
                                  "backups", spec ? spec : "", session_id);
    cli_progress_end(&prog);
    if (rc == FB_ENOTFOUND && !spec) {
        if (!ctx->json && !ctx->quiet)
            printf("No backups of session %s yet.\n", session_id);
        return 0;
    }
    if (rc)
        return cli_fail(&err);
    if (index_stale) {
        /* Derived data: let the store rebuild it (it says so on stderr and
         * writes it back only if nobody holds the session lock). */
        fb_index idx;
        int status = cli_load_index(ctx, store, session_id, &idx);
        fb_index_fini(&idx);
        return status;
    }
    return 0;
}

static int verify_each_session(cli_ctx *ctx, fb_store *store, const char *session_id,
                               bool first, void *run)
{
    (void)ctx;
    (void)first;
    return verify_session(run, store, session_id, NULL);
}

static int run_verify(cli_ctx *ctx)
{
    bool all = false;
    cli_progress_mode progress = CLI_PROGRESS_AUTO;
    for (size_t i = 0; i < ctx->n_opts; i++) {
        if (ctx->opts[i].id == OPT_ALL)
            all = true;
        else if (ctx->opts[i].id == OPT_PROGRESS)
            progress = CLI_PROGRESS_ON;
        else if (ctx->opts[i].id == OPT_NO_PROGRESS)
            progress = CLI_PROGRESS_OFF;
    }
    const char *session_arg, *backup_arg;
    int status = cli_split_session_backup(ctx, &session_arg, &backup_arg);
    if (status)
        return status;
    if (backup_arg && all)
        return cli_usage_error(ctx->command, "give a backup or --all, not both");
    bool every_session = all && !session_arg;

    verify_run v;
    memset(&v, 0, sizeof v);
    v.ctx = ctx;
    v.progress = progress;
    v.multi_session = every_session;
    char *session_id = NULL;
    fb_store *store = NULL;

    if (!every_session) {
        status = cli_resolve_existing_session(ctx, session_arg, &session_id);
        if (status)
            goto out;
    }
    status = cli_open_store_readonly(ctx, &store);
    if (status)
        goto out;
    if (ctx->json) {
        v.json = cJSON_CreateObject();
        v.results = cJSON_CreateArray();
        v.index = cJSON_CreateArray();
        if (!v.json || !cli_json_add(v.json, "results", v.results) ||
            !cli_json_add(v.json, "index_problems", v.index)) {
            status = cli_failf(CLI_EXIT_RUNTIME, "out of memory");
            goto out;
        }
    }
    if (!every_session)
        status = verify_session(&v, store, session_id, backup_arg);
    else
        status = cli_for_each_session(ctx, store, false, verify_each_session, &v);
    if (status)
        goto out;

    if (v.json) {
        bool ok = v.corrupt == 0 && v.errors == 0 && v.index_problems == 0;
        if (v.json_failed || !cli_json_add(v.json, "ok", cJSON_CreateBool(ok)) ||
            !cli_json_add(v.json, "checked", cli_json_uint(v.checked)) ||
            !cli_json_add(v.json, "corrupt", cli_json_uint(v.corrupt)) ||
            !cli_json_add(v.json, "errors", cli_json_uint(v.errors)) ||
            !cli_json_add(v.json, "index_problem_count", cli_json_uint(v.index_problems))) {
            status = cli_failf(CLI_EXIT_RUNTIME, "out of memory while formatting JSON");
            goto out;
        }
        status = cli_json_emit(v.json);
        v.json = NULL;
        if (status)
            goto out;
    } else if (!ctx->quiet && (v.checked > 0 || v.index_problems > 0)) {
        printf("%zu backup%s checked: %zu OK, %zu corrupt", v.checked, v.checked == 1 ? "" : "s",
               v.checked - v.corrupt - v.errors, v.corrupt);
        if (v.errors)
            printf(", %zu could not be checked", v.errors);
        if (v.index_problems)
            printf(", %zu index problem%s", v.index_problems, v.index_problems == 1 ? "" : "s");
        fputc('\n', stdout);
    }
    if (v.corrupt || v.index_problems)
        status = CLI_EXIT_CORRUPT;
    else if (v.errors)
        status = CLI_EXIT_RUNTIME;

out:
    cJSON_Delete(v.json);
    fb_store_free(store);
    free(session_id);
    return status;
}

const cli_command cli_cmd_verify = {
    .name = "verify",
    .alias = NULL,
    .summary = "check stored backups completely (exit 1 on corruption)",
    .usage = verify_usage,
    .options = verify_options,
    .pass_unknown = false,
    .run = run_verify,
};
