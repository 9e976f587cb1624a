/* `flowloom-backup diff`: what differs between two backups of a session, or
 * between a backup and the live session directory (--live), from the
 * manifests (core/ops/diff.c). A reader: no lock, nothing written except a
 * rebuilt index when the session lock is free, as every reader does. */
#include "cli_i.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fb_diff.h"
#include "fb_manifest.h"
#include "fb_store.h"

enum {
    OPT_LIVE = CLI_OPT_COMMAND,
    OPT_CHECKSUM,
};

static const cli_option diff_options[] = {
    {"live", 0, false, OPT_LIVE},
    {"checksum", 'c', false, OPT_CHECKSUM},
    {NULL, 0, false, 0},
};

static const char diff_usage[] =
    "Usage: " CLI_PROG " diff [session_id] <backup_a> <backup_b|--live> [--checksum] [--json]\n"
    "\n"
    "Lists the paths that differ between backup_a (older) and backup_b (newer), or\n"
    "between backup_a and the live session directory with --live:\n"
    "  added: PATH            only in b (or live)\n"
    "  removed: PATH          only in a\n"
    "  modified: PATH (...)   content differs (type, size, SHA-256, symlink target)\n"
    "  changed: PATH (...)    metadata only (mode, owner, mtime, hardlink structure)\n"
    "Backups are 'latest' or backup ids. It is computed from the manifests; with --live a\n"
    "live file is read and hashed only when its size or mtime differs from the manifest\n"
    "(always with --checksum). When a side is an incremental, both sides are compared\n"
    "within the incremental.include patterns, so files an incremental does not hold are\n"
    "not reported as removed. Exit 0 whether or not there are differences.\n"
    "\n"
    "Options:\n"
    "      --live        compare backup_a with the session directory as it is now\n"
    "  -c, --checksum    with --live: hash every file, not only those whose size or mtime\n"
    "                    differs\n"
    "      --json        the differences as one JSON object\n"
    "  -q, --quiet       print only the difference lines\n";

typedef struct diff_args {
    const char *session_arg;
    const char *a;
    const char *b; /* NULL with --live */
    bool live;
    bool checksum;
} diff_args;

static int parse_diff_args(cli_ctx *ctx, diff_args *d)
{
    const cli_command *cmd = ctx->command;
    memset(d, 0, sizeof *d);
    for (size_t i = 0; i < ctx->n_opts; i++) {
        if (ctx->opts[i].id == OPT_LIVE)
            d->live = true;
        else if (ctx->opts[i].id == OPT_CHECKSUM)
            d->checksum = true;
    }
    size_t need = d->live ? 1 : 2;
    size_t at = 0;
    d->session_arg = ctx->session_opt;
    if (!d->session_arg && ctx->n_pos == need + 1)
        d->session_arg = ctx->pos[at++];
    if (ctx->n_pos - at > need)
        return cli_usage_error(cmd, "unexpected argument '%s'", ctx->pos[at + need]);
    if (ctx->n_pos - at < need) {
        if (d->live)
            return cli_usage_error(cmd, "which backup? Give a backup id or 'latest' to compare "
                                        "with the live session");
        return cli_usage_error(cmd, "give two backups (ids or 'latest'), or one and --live");
    }
    d->a = ctx->pos[at++];
    d->b = d->live ? NULL : ctx->pos[at++];
    if (d->checksum && !d->live)
        return cli_usage_error(cmd, "--checksum only applies with --live (backups are compared "
                                    "by their stored SHA-256s)");
    return 0;
}

static void print_items(const fb_diff *d, fb_change_kind kind)
{
    for (size_t i = 0; i < d->n; i++) {
        const fb_diff_item *it = &d->items[i];
        if (it->kind != kind)
            continue;
        printf("%s: ", fb_change_kind_name(kind));
        cli_print_escaped(stdout, it->path);
        if (it->changes) {
            char what[128];
            fb_differs_format(it->changes, what, sizeof what);
            printf(" (%s)", what);
        }
        fputc('\n', stdout);
    }
}

static void describe_side(const fb_manifest *m)
{
    char when[64];
    cli_format_local_time(m->created_at, false, when);
    printf("%s (%s, %s)", m->backup_id, fb_backup_type_name(m->type), when);
}

static void print_human(const cli_ctx *ctx, const fb_config *config, const fb_manifest *a,
                        const fb_manifest *b, const char *live_path, const fb_diff *d)
{
    if (!ctx->quiet) {
        printf("Comparing ");
        describe_side(a);
        printf(" with ");
        if (b) {
            describe_side(b);
        } else {
            fputs("the live session directory ", stdout);
            cli_print_escaped(stdout, live_path);
        }
        fputc('\n', stdout);
        if (d->scoped) {
            fputs("Scope: an incremental holds only incremental.include (", stdout);
            for (size_t i = 0; i < config->n_include; i++) {
                if (i)
                    fputs(", ", stdout);
                cli_print_escaped(stdout, config->include[i]);
            }
            fputs("); other paths are not compared\n", stdout);
        }
    }
    print_items(d, FB_CHANGE_ADDED);
    print_items(d, FB_CHANGE_REMOVED);
    print_items(d, FB_CHANGE_MODIFIED);
    print_items(d, FB_CHANGE_CHANGED);
    if (ctx->quiet)
        return;
    if (d->n == 0)
        printf("No differences.\n");
    else
        printf("%zu difference%s: %zu added, %zu removed, %zu modified, %zu changed\n", d->n,
               d->n == 1 ? "" : "s", d->n_added, d->n_removed, d->n_modified, d->n_changed);
    if (!b) {
        char bytes[32];
        cli_format_size(d->bytes_hashed, bytes);
        printf("Live files read and hashed: %" PRIu64 " (%s)\n", d->files_hashed, bytes);
    }
}

/* The manifests of the backups compared: resolves the names against the
 * session's index and reads one or two manifests. Returns 0 or an exit
 * status (message printed). */
static int load_compared(cli_ctx *ctx, fb_store *store, const char *session_id,
                         const diff_args *args, fb_manifest *ma, fb_manifest *mb)
{
    fb_index idx;
    int status = cli_load_index(ctx, store, session_id, &idx);
    if (status)
        return status;
    fb_error err;
    fb_error_clear(&err);
    char id_a[FB_BACKUP_ID_LEN + 1], id_b[FB_BACKUP_ID_LEN + 1];
    int session_fd = -1;
    if (fb_store_resolve_backup(&idx, args->a, id_a, &err) != 0 ||
        (args->b && fb_store_resolve_backup(&idx, args->b, id_b, &err) != 0))
        status = cli_fail_in_session(ctx, &err);
    else if (fb_store_open_session(store, session_id, false, &session_fd, &err) != 0 ||
             fb_store_read_manifest(session_fd, session_id, id_a, ma, &err) != 0 ||
             (args->b && fb_store_read_manifest(session_fd, session_id, id_b, mb, &err) != 0))
        status = cli_fail(&err);
    if (session_fd >= 0)
        close(session_fd);
    fb_index_fini(&idx);
    return status;
}

/* Compares a with b, or with the live session directory. */
static int compare(cli_ctx *ctx, fb_store *store, const char *session_id, const diff_args *args,
                   const fb_diff_options *opts, const fb_manifest *ma, const fb_manifest *mb,
                   char **live_path, fb_diff *d)
{
    fb_error err;
    fb_error_clear(&err);
    if (!args->live)
        return fb_diff_manifests(ma, mb, opts, d, &err) == 0 ? 0 : cli_fail(&err);
    size_t len = strlen(ctx->root) + strlen(session_id) + sizeof "/" FB_SESSIONS_PATH "/";
    if (!(*live_path = malloc(len)))
        return cli_failf(CLI_EXIT_RUNTIME, "out of memory");
    snprintf(*live_path, len, "%s/" FB_SESSIONS_PATH "/%s", ctx->root, session_id);
    int source_fd = -1;
    int rc = fb_store_open_source(store, session_id, &source_fd, &err);
    if (rc == 0)
        rc = fb_diff_live(ma, source_fd, *live_path, opts, d, &err);
    if (source_fd >= 0)
        close(source_fd);
    return rc == 0 ? 0 : cli_fail(&err);
}

static int emit_json(const fb_diff *d, const fb_manifest *ma, const fb_manifest *mb, bool live)
{
    fb_error err;
    fb_error_clear(&err);
    char *json = NULL;
    size_t len = 0;
    if (fb_diff_to_json(d, ma->backup_id, live ? "live" : mb->backup_id, &json, &len, &err) != 0)
        return cli_fail(&err);
    fwrite(json, 1, len, stdout);
    if (len == 0 || json[len - 1] != '\n')
        fputc('\n', stdout);
    free(json);
    return 0;
}

static int run_diff(cli_ctx *ctx)
{
    diff_args args;
    int status = parse_diff_args(ctx, &args);
    if (status)
        return status;

    char *session_id = NULL;
    fb_store *store = NULL;
    bool config_ready = false;
    fb_config config;
    fb_manifest ma, mb;
    fb_manifest_init(&ma);
    fb_manifest_init(&mb);
    fb_diff d;
    fb_diff_init(&d);
    char *live_path = NULL;
    fb_error err;
    fb_error_clear(&err);

    if ((status = cli_resolve_existing_session(ctx, args.session_arg, &session_id)) != 0)
        goto out;
    if (fb_config_load(ctx->root, &config, cli_warn, ctx, &err) != 0) {
        status = cli_fail(&err);
        goto out;
    }
    config_ready = true;
    if ((status = cli_open_store_readonly(ctx, &store)) != 0 ||
        (status = load_compared(ctx, store, session_id, &args, &ma, &mb)) != 0)
        goto out;
    fb_diff_options opts = {
        .include = &config,
        .checksum = args.checksum,
        .warn = cli_warn,
        .warn_ctx = ctx,
    };
    if ((status = compare(ctx, store, session_id, &args, &opts, &ma, &mb, &live_path, &d)) != 0)
        goto out;
    if (ctx->json)
        status = emit_json(&d, &ma, &mb, args.live);
    else
        print_human(ctx, &config, &ma, args.live ? NULL : &mb, live_path, &d);

out:
    free(live_path);
    fb_diff_fini(&d);
    fb_manifest_fini(&ma);
    fb_manifest_fini(&mb);
    fb_store_free(store);
    if (config_ready)
        fb_config_fini(&config);
    free(session_id);
    return status;
}

const cli_command cli_cmd_diff = {
    .name = "diff",
    .alias = NULL,
    .summary = "compare two backups, or a backup and the live session",
    .usage = diff_usage,
    .options = diff_options,
    .pass_unknown = false,
    .run = run_diff,
};
