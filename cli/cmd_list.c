/* `flowloom-backup list` (alias list-backups): the backups of one session or
 * of every session, newest last, from the session indexes. */
#include "cli_i.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "fb_hash.h"
#include "fb_store.h"

enum { OPT_ALL = CLI_OPT_COMMAND };

static const cli_option list_options[] = {
    {"all", 0, false, OPT_ALL},
    {NULL, 0, false, 0},
};

static const char list_usage[] =
    "Usage: " CLI_PROG " list [session_id|--all] [--json]\n"
    "       " CLI_PROG " list-backups [session_id|--all] [--json]\n"
    "\n"
    "Lists the backups of the session (default: the current one), or of every session\n"
    "with --all: id, type, creation time (local), files, stored size and note, newest\n"
    "last. --json prints an array of backup objects; -q prints only the ids.\n"
    "\n"
    "Options:\n"
    "      --all     every session that has backups\n"
    "      --json    JSON array of backups (each with its session_id)\n"
    "  -q, --quiet   only the backup ids, one per line\n";

static void print_header(void)
{
    printf("%-28s  %-11s  %-19s  %7s  %10s  %s\n", "ID", "TYPE", "CREATED", "FILES", "STORED",
           "NOTE");
}

static void print_record(const fb_index_record *r)
{
    char when[64], stored[32];
    cli_format_local_time(r->created_at, false, when);
    cli_format_size(r->stored_bytes, stored);
    printf("%-28s  %-11s  %-19s  %7" PRIu64 "  %10s  ", r->id, fb_backup_type_name(r->type),
           when, r->files, stored);
    if (r->note)
        cli_print_escaped(stdout, r->note);
    else
        fputs("-", stdout);
    fputc('\n', stdout);
}

static bool add_record_json(cJSON *arr, const char *session_id, const fb_index_record *r)
{
    char sha[FB_SHA256_HEX_LEN + 1];
    fb_hex_encode(r->archive_sha256, FB_SHA256_LEN, sha);
    cJSON *o = cJSON_CreateObject();
    return cli_json_add(arr, NULL, o) &&
           cli_json_add(o, "session_id", cJSON_CreateString(session_id)) &&
           cli_json_add(o, "id", cJSON_CreateString(r->id)) &&
           cli_json_add(o, "seq", cli_json_uint(r->seq)) &&
           cli_json_add(o, "type", cJSON_CreateString(fb_backup_type_name(r->type))) &&
           cli_json_add(o, "created_at", cli_json_time(r->created_at)) &&
           cli_json_add(o, "note", cli_json_string_or_null(r->note)) &&
           cli_json_add(o, "base", r->base[0] ? cJSON_CreateString(r->base) : cJSON_CreateNull()) &&
           cli_json_add(o, "files", cli_json_uint(r->files)) &&
           cli_json_add(o, "bytes", cli_json_uint(r->bytes)) &&
           cli_json_add(o, "stored_bytes", cli_json_uint(r->stored_bytes)) &&
           cli_json_add(o, "archive_sha256", cJSON_CreateString(sha));
}

/* Prints one session's backups; in --all mode with a session heading. */
static int show_session(cli_ctx *ctx, fb_store *store, const char *session_id, bool heading,
                        bool first, cJSON *json_arr)
{
    fb_index idx;
    int status = cli_load_index(ctx, store, session_id, &idx);
    if (status) {
        fb_index_fini(&idx);
        return status;
    }
    if (json_arr) {
        for (size_t i = 0; i < idx.n; i++)
            if (!add_record_json(json_arr, session_id, &idx.records[i])) {
                fb_index_fini(&idx);
                return cli_failf(CLI_EXIT_RUNTIME, "out of memory while formatting JSON");
            }
    } else if (ctx->quiet) {
        for (size_t i = 0; i < idx.n; i++)
            printf("%s\n", idx.records[i].id);
    } else {
        if (heading)
            printf("%sSession %s: %zu backup%s\n", first ? "" : "\n", session_id, idx.n,
                   idx.n == 1 ? "" : "s");
        if (idx.n == 0) {
            if (!heading)
                printf("No backups of session %s yet.\n", session_id);
        } else {
            print_header();
            for (size_t i = 0; i < idx.n; i++)
                print_record(&idx.records[i]);
        }
    }
    fb_index_fini(&idx);
    return 0;
}

static int show_each_session(cli_ctx *ctx, fb_store *store, const char *session_id,
                             bool first, void *json_arr)
{
    return show_session(ctx, store, session_id, true, first, json_arr);
}

static int run_list(cli_ctx *ctx)
{
    bool all = false;
    for (size_t i = 0; i < ctx->n_opts; i++)
        if (ctx->opts[i].id == OPT_ALL)
            all = true;
    const char *session_arg = ctx->session_opt;
    if (ctx->n_pos > 0) {
        if (session_arg || ctx->n_pos > 1)
            return cli_usage_error(ctx->command, "unexpected argument '%s'",
                                   ctx->pos[session_arg ? 0 : 1]);
        session_arg = ctx->pos[0];
    }
    if (all && session_arg)
        return cli_usage_error(ctx->command, "give a session or --all, not both");

    char *session_id = NULL;
    fb_store *store = NULL;
    cJSON *arr = NULL;
    int status = 0;

    if (!all) {
        status = cli_resolve_existing_session(ctx, session_arg, &session_id);
        if (status)
            goto out;
    }
    status = cli_open_store_readonly(ctx, &store);
    if (status)
        goto out;
    if (ctx->json && !(arr = cJSON_CreateArray())) {
        status = cli_failf(CLI_EXIT_RUNTIME, "out of memory");
        goto out;
    }
    if (!all)
        status = show_session(ctx, store, session_id, false, true, arr);
    else
        status = cli_for_each_session(ctx, store, false, show_each_session, arr);
    if (status == 0 && arr) {
        status = cli_json_emit(arr);
        arr = NULL;
    }

out:
    cJSON_Delete(arr);
    fb_store_free(store);
    free(session_id);
    return status;
}

const cli_command cli_cmd_list = {
    .name = "list",
    .alias = "list-backups",
    .summary = "list the backups of a session (or of all sessions)",
    .usage = list_usage,
    .options = list_options,
    .pass_unknown = false,
    .run = run_list,
};
