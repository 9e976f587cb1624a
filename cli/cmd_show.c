/* `flowloom-backup show`: one backup's manifest, readable (or as JSON). */
#include "cli_i.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fb_hash.h"
#include "fb_manifest.h"
#include "fb_store.h"

enum { OPT_FILES = CLI_OPT_COMMAND };

static const cli_option show_options[] = {
    {"files", 0, false, OPT_FILES},
    {NULL, 0, false, 0},
};

static const char show_usage[] =
    "Usage: " CLI_PROG " show [session_id] <backup_id|latest> [--files] [--json]\n"
    "\n"
    "Shows a backup's manifest: id, session, type, sequence number, creation time, note,\n"
    "base, archive (size, SHA-256, frames, compression) and totals.\n"
    "\n"
    "Options:\n"
    "      --files   also list every entry (type, mode, owner, size, mtime, path)\n"
    "      --json    print the manifest as JSON (manifest.json's fields)\n";

static void print_entries(const fb_manifest *m)
{
    printf("Entries:\n");
    printf("  %-8s  %-4s  %-11s  %12s  %-19s  %s\n", "TYPE", "MODE", "OWNER", "SIZE", "MTIME",
           "PATH");
    for (size_t i = 0; i < m->n_entries; i++) {
        const fb_manifest_entry *e = &m->entries[i];
        char when[64], owner[32];
        cli_format_local_time(e->meta.mtime, false, when);
        snprintf(owner, sizeof owner, "%" PRIu32 ":%" PRIu32, e->meta.uid, e->meta.gid);
        printf("  %-8s  %04" PRIo32 "  %-11s  %12" PRIu64 "  %-19s  ",
               fb_entry_type_name(e->meta.type), e->meta.mode, owner, e->meta.size, when);
        cli_print_escaped(stdout, e->path);
        if (e->meta.type == FB_ENTRY_SYMLINK || e->meta.type == FB_ENTRY_HARDLINK) {
            fputs(e->meta.type == FB_ENTRY_SYMLINK ? " -> " : " => ", stdout);
            cli_print_escaped(stdout, e->target ? e->target : "");
        }
        fputc('\n', stdout);
    }
}

static void print_manifest(const cli_ctx *ctx, const fb_manifest *m, const char *archive_path,
                           bool files)
{
    char local[64], utc[32], size[32], bytes[32], frame[32], sha[FB_SHA256_HEX_LEN + 1];
    cli_format_local_time(m->created_at, true, local);
    fb_rfc3339_format(m->created_at, utc);
    cli_format_size(m->archive.size, size);
    cli_format_size(m->totals.bytes, bytes);
    cli_format_size(m->archive.frame_size, frame);
    fb_hex_encode(m->archive.sha256, FB_SHA256_LEN, sha);

    printf("Backup:     %s\n", m->backup_id);
    printf("Session:    %s\n", m->session_id);
    printf("Type:       %s\n", fb_backup_type_name(m->type));
    printf("Seq:        %" PRIu64 "\n", m->seq);
    printf("Created:    %s (%s)\n", local, utc);
    fputs("Note:       ", stdout);
    if (m->note)
        cli_print_escaped(stdout, m->note);
    else
        fputs("(none)", stdout);
    fputc('\n', stdout);
    printf("Base:       %s\n", m->base[0] ? m->base : "(none)");
    fputs("Tool:       ", stdout);
    cli_print_escaped(stdout, m->tool_version ? m->tool_version : "(unknown)");
    fputc('\n', stdout);
    fputs("Archive:    ", stdout);
    cli_print_escaped(stdout, archive_path);
    fputc('\n', stdout);
    printf("  size:     %s (%" PRIu64 " bytes)\n", size, m->archive.size);
    printf("  sha256:   %s\n", sha);
    printf("  frames:   %" PRIu64 " (up to %s each), zstd level %d\n", m->archive.frames, frame,
           m->archive.level);
    printf("Totals:     %" PRIu64 " file%s, %" PRIu64 " director%s, %" PRIu64
           " symlink%s, %s (%" PRIu64 " bytes)\n",
           m->totals.files, m->totals.files == 1 ? "" : "s", m->totals.dirs,
           m->totals.dirs == 1 ? "y" : "ies", m->totals.symlinks,
           m->totals.symlinks == 1 ? "" : "s", bytes, m->totals.bytes);
    if (files || ctx->verbose)
        print_entries(m);
}

static int run_show(cli_ctx *ctx)
{
    bool files = false;
    for (size_t i = 0; i < ctx->n_opts; i++)
        if (ctx->opts[i].id == OPT_FILES)
            files = true;
    const char *session_arg, *backup_arg;
    int status = cli_split_session_backup(ctx, &session_arg, &backup_arg);
    if (status)
        return status;

    char *session_id = NULL;
    fb_store *store = NULL;
    int session_fd = -1;
    char *json = NULL;
    char *archive_path = NULL;
    fb_index idx;
    fb_index_init(&idx, "");
    fb_manifest m;
    fb_manifest_init(&m);
    fb_error err;
    fb_error_clear(&err);
    char id[FB_BACKUP_ID_LEN + 1];

    status = cli_resolve_existing_session(ctx, session_arg, &session_id);
    if (status)
        goto out;
    /* After the session check, so a mistyped id reads "not found" (exit 3)
     * here as in every other command, not "which backup?". */
    if (!backup_arg) {
        status = cli_usage_error(ctx->command, "which backup? Give its id, the start of the id "
                                               "or of its 6-hex suffix, 'latest' or "
                                               "'latest-full'");
        goto out;
    }
    status = cli_open_store_readonly(ctx, &store);
    if (status)
        goto out;
    fb_index_fini(&idx);
    status = cli_load_index(ctx, store, session_id, &idx);
    if (status)
        goto out;
    if (fb_store_resolve_backup(&idx, backup_arg, id, &err) != 0) {
        status = cli_fail_in_session(ctx, &err);
        goto out;
    }
    if (fb_store_open_session(store, session_id, false, &session_fd, &err) != 0 ||
        fb_store_read_manifest(session_fd, session_id, id, &m, &err) != 0) {
        status = cli_fail(&err);
        goto out;
    }
    if (ctx->json) {
        size_t len = 0;
        if (fb_manifest_to_json(&m, &json, &len, &err) != 0) {
            json = NULL;
            status = cli_fail(&err);
            goto out;
        }
        fwrite(json, 1, len, stdout);
        if (len == 0 || json[len - 1] != '\n')
            fputc('\n', stdout);
    } else {
        size_t len = strlen(fb_store_backups_path(store)) + strlen(session_id) + strlen(id) +
                     strlen("/" FB_ARCHIVE_NAME) + 3;
        archive_path = malloc(len);
        if (!archive_path) {
            status = cli_failf(CLI_EXIT_RUNTIME, "out of memory");
            goto out;
        }
        snprintf(archive_path, len, "%s/%s/%s/" FB_ARCHIVE_NAME, fb_store_backups_path(store),
                 session_id, id);
        print_manifest(ctx, &m, archive_path, files);
    }

out:
    free(json);
    free(archive_path);
    fb_manifest_fini(&m);
    fb_index_fini(&idx);
    if (session_fd >= 0)
        close(session_fd);
    fb_store_free(store);
    free(session_id);
    return status;
}

const cli_command cli_cmd_show = {
    .name = "show",
    .alias = NULL,
    .summary = "show a backup's manifest",
    .usage = show_usage,
    .options = show_options,
    .pass_unknown = false,
    .run = run_show,
};
