/* `flowloom-backup verify`: full check of stored backups. For each backup:
 * its directory and manifest exist and parse, fb_verify_backup_dir (archive
 * SHA-256, every frame, every file, JSON members), and its index record
 * against the manifest. The session's index.json itself is checked against
 * the backup directories on disk: a backup the index forgot, or a record
 * whose directory is gone, is reported. Nothing is modified, except that a
 * derived index found inconsistent is rebuilt by the store as every command
 * does (SPEC "index.json"). */
#include "cli_i.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fb_fsutil.h"
#include "fb_store.h"
#include "fb_verify.h"

enum { OPT_ALL = CLI_OPT_COMMAND };

static const cli_option verify_options[] = {
    {"all", 0, false, OPT_ALL},
    {NULL, 0, false, 0},
};

static const char verify_usage[] =
    "Usage: " CLI_PROG " verify [session_id] [backup_id|latest|--all] [--json]\n"
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
    "      --all     every backup (of every session when no session is given)\n"
    "      --json    one JSON object with a result per backup\n"
    "  -q, --quiet   print only problems\n";

typedef struct verify_run {
    cli_ctx *ctx;
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

/* Core messages name the backup ("S/<id>: ..." or "S/<id>/manifest.json:
 * ..."); the line already starts with the id, so drop that part. */
static const char *strip_backup_name(const char *problem, const char *session_id,
                                     const char *id)
{
    size_t ls = strlen(session_id), li = strlen(id);
    if (strncmp(problem, session_id, ls) != 0 || problem[ls] != '/' ||
        strncmp(problem + ls + 1, id, li) != 0)
        return problem;
    const char *rest = problem + ls + 1 + li;
    if (rest[0] == ':' && rest[1] == ' ')
        return rest + 2;
    if (rest[0] == '/')
        return rest + 1;
    return problem;
}

/* problem NULL: the backup is OK. error: the check itself failed (I/O). */
static void report_backup(verify_run *v, const char *session_id, const char *id,
                          const char *problem, bool error)
{
    v->checked++;
    if (problem)
        problem = strip_backup_name(problem, session_id, id);
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
    cli_print_escaped(stdout, problem);
    fputc('\n', stdout);
}

static void report_index(verify_run *v, const char *session_id, const char *problem)
{
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
    cli_print_escaped(stdout, problem);
    fputc('\n', stdout);
}

/* Returns true when the backup is good. */
static bool verify_backup(verify_run *v, int session_fd, const char *session_id, const char *id,
                          const fb_index_record *rec)
{
    size_t bad_before = v->corrupt + v->errors;
    fb_error err;
    fb_error_clear(&err);
    int dirfd = openat(session_fd, id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dirfd < 0) {
        int e = errno;
        char msg[256];
        if (e == ENOENT) {
            report_backup(v, session_id, id,
                          "listed in index.json but the backup directory is missing", false);
        } else if (e == ELOOP || e == ENOTDIR) {
            report_backup(v, session_id, id, "the backup directory is not a directory", false);
        } else {
            snprintf(msg, sizeof msg, "cannot open the backup directory: %s", strerror(e));
            report_backup(v, session_id, id, msg, true);
        }
        return false;
    }
    fb_manifest m;
    fb_manifest_init(&m);
    int rc = fb_store_read_manifest(session_fd, session_id, id, &m, &err);
    if (rc == FB_ENOTFOUND) {
        report_backup(v, session_id, id, "manifest.json is missing", false);
    } else if (rc == FB_ECORRUPT || rc == FB_EUNSUPPORTED) {
        report_backup(v, session_id, id, err.message, false);
    } else if (rc != 0) {
        report_backup(v, session_id, id, err.message, true);
    } else {
        char name[FB_SESSION_ID_MAX + FB_BACKUP_ID_LEN + 2];
        snprintf(name, sizeof name, "%s/%s", session_id, id);
        rc = fb_verify_backup_dir(dirfd, &m, name, &err);
        if (rc == 0 && rec)
            rc = fb_verify_index_record(rec, &m, &err);
        if (rc == 0)
            report_backup(v, session_id, id, NULL, false);
        else
            report_backup(v, session_id, id, err.message, rc != FB_ECORRUPT);
    }
    fb_manifest_fini(&m);
    close(dirfd);
    return v->corrupt + v->errors == bad_before;
}

/* Names of the directories in the session dir shaped like backup ids. */
static bool is_backup_shaped_dir(int dirfd, const char *name, void *ctx)
{
    (void)ctx;
    struct stat st;
    return cli_is_backup_spec(name) && strcmp(name, "latest") != 0 &&
           fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

static int list_backup_shaped_dirs(int session_fd, char ***out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    return fb_list_dir_names_at(session_fd, is_backup_shaped_dir, NULL, out, n_out);
}

static bool in_list(char **list, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], s) == 0)
            return true;
    return false;
}

/* Reads index.json as it is on disk (no rebuild). Returns 0 with *ok set,
 * or an exit status for a failure that is not about the index's content. */
static int read_raw_index(int session_fd, const char *session_id, fb_index *raw, bool *present,
                          bool *ok, char *problem, size_t problem_size)
{
    fb_error err;
    fb_error_clear(&err);
    char *buf = NULL;
    size_t len = 0;
    *present = false;
    *ok = false;
    problem[0] = '\0';
    int rc = fb_read_file_at(session_fd, session_id, FB_INDEX_NAME, FB_MANIFEST_SIZE_MAX, &buf,
                             &len, &err);
    if (rc == FB_ENOTFOUND)
        return 0;
    *present = true;
    if (rc != 0) {
        if (rc == FB_ECORRUPT || err.sys_errno == ELOOP) {
            snprintf(problem, problem_size, "%s", err.message);
            return 0;
        }
        return cli_fail(&err);
    }
    char source[FB_SESSION_ID_MAX + 16];
    snprintf(source, sizeof source, "%s/" FB_INDEX_NAME, session_id);
    rc = fb_index_parse(buf, len, source, raw, &err);
    free(buf);
    if (rc == FB_ENOMEM)
        return cli_fail(&err);
    if (rc != 0) {
        fb_index_init(raw, session_id);
        snprintf(problem, problem_size, "%s", err.message);
        return 0;
    }
    if (strcmp(raw->session_id, session_id) != 0) {
        snprintf(problem, problem_size, "names session '%s'", raw->session_id);
        fb_index_fini(raw);
        fb_index_init(raw, session_id);
        return 0;
    }
    *ok = true;
    return 0;
}

/* Verifies the session's backups: all of them (spec NULL) or one. */
static int verify_session(verify_run *v, fb_store *store, const char *session_id,
                          const char *spec)
{
    cli_ctx *ctx = v->ctx;
    fb_error err;
    fb_error_clear(&err);
    int session_fd = -1;
    if (!store || fb_store_open_session(store, session_id, false, &session_fd, &err) != 0) {
        if (store && err.code != FB_ENOTFOUND)
            return cli_fail(&err);
        if (spec)
            return cli_failf(CLI_EXIT_NOTFOUND, "backup '%s' not found: session %s has no backups",
                             spec, session_id);
        if (!ctx->json && !ctx->quiet)
            printf("No backups of session %s yet.\n", session_id);
        return 0;
    }

    int status = 0;
    fb_index raw;
    fb_index_init(&raw, session_id);
    char **dirs = NULL;
    size_t n_dirs = 0;
    bool present, raw_ok;
    char problem[FB_ERROR_MESSAGE_MAX];

    status = read_raw_index(session_fd, session_id, &raw, &present, &raw_ok, problem,
                            sizeof problem);
    if (status)
        goto out;
    int rc = list_backup_shaped_dirs(session_fd, &dirs, &n_dirs);
    if (rc) {
        status = cli_failf(CLI_EXIT_RUNTIME, "reading %s/%s: %s", fb_store_backups_path(store),
                           session_id, strerror(-rc));
        goto out;
    }

    if (spec) {
        char id[FB_BACKUP_ID_LEN + 1];
        if (strcmp(spec, "latest") == 0) {
            /* The store's view: the index, rebuilt in memory if it must be. */
            fb_index idx;
            status = cli_load_index(ctx, store, session_id, &idx);
            if (status == 0 && fb_store_resolve_backup(&idx, spec, id, &err) != 0)
                status = cli_fail(&err);
            fb_index_fini(&idx);
            if (status)
                goto out;
        } else if (fb_index_find(&raw, spec) >= 0 || in_list(dirs, n_dirs, spec)) {
            snprintf(id, sizeof id, "%s", spec);
        } else {
            status = cli_failf(CLI_EXIT_NOTFOUND, "backup '%s' not found in session %s", spec,
                               session_id);
            goto out;
        }
        long at = fb_index_find(&raw, id);
        verify_backup(v, session_fd, session_id, id, at >= 0 ? &raw.records[at] : NULL);
        goto out;
    }

    bool index_problem = false;
    if (present && !raw_ok) {
        report_index(v, session_id, problem);
        index_problem = true;
    } else if (!present && n_dirs > 0) {
        report_index(v, session_id, "missing while backup directories exist");
        index_problem = true;
    }
    for (size_t i = 0; i < raw.n; i++) {
        verify_backup(v, session_fd, session_id, raw.records[i].id, &raw.records[i]);
        if (!in_list(dirs, n_dirs, raw.records[i].id))
            index_problem = true;
    }
    for (size_t i = 0; i < n_dirs; i++) {
        if (fb_index_find(&raw, dirs[i]) >= 0)
            continue;
        /* A damaged backup is rightly absent from the index: report it
         * once, as corrupt; a good one the index forgot is an index fault. */
        if (verify_backup(v, session_fd, session_id, dirs[i], NULL) && raw_ok) {
            snprintf(problem, sizeof problem, "does not list backup %s", dirs[i]);
            report_index(v, session_id, problem);
            index_problem = true;
        }
    }
    if (index_problem) {
        /* Derived data: let the store rebuild it (it says so on stderr and
         * writes it back only if nobody holds the session lock). */
        fb_index idx;
        int st = cli_load_index(ctx, store, session_id, &idx);
        fb_index_fini(&idx);
        if (st && !status)
            status = st;
    }

out:
    if (dirs)
        fb_string_list_free(dirs, n_dirs);
    fb_index_fini(&raw);
    close(session_fd);
    return status;
}

static int run_verify(cli_ctx *ctx)
{
    bool all = false;
    for (size_t i = 0; i < ctx->n_opts; i++)
        if (ctx->opts[i].id == OPT_ALL)
            all = true;
    const char *session_arg, *backup_arg;
    int status = cli_split_session_backup(ctx, &session_arg, &backup_arg);
    if (status)
        return status;
    if (backup_arg && all)
        return cli_usage_error(ctx->command, "give a backup or --all, not both");
    if (backup_arg && !cli_is_backup_spec(backup_arg))
        return cli_usage_error(ctx->command,
                               "'%s' is not a backup id (YYYYMMDDTHHMMSSZ-full|incr-xxxxxx) "
                               "or 'latest'",
                               backup_arg);
    bool every_session = all && !session_arg;

    verify_run v;
    memset(&v, 0, sizeof v);
    v.ctx = ctx;
    v.multi_session = every_session;
    char *session_id = NULL;
    fb_store *store = NULL;
    char **sessions = NULL;
    size_t n_sessions = 0;

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
    if (!every_session) {
        status = verify_session(&v, store, session_id, backup_arg);
    } else {
        fb_error err;
        fb_error_clear(&err);
        if (store && fb_store_list_sessions(store, &sessions, &n_sessions, &err) != 0) {
            sessions = NULL;
            status = cli_fail(&err);
            goto out;
        }
        if (n_sessions == 0 && !ctx->json && !ctx->quiet)
            printf("No backups under %s/.flowloom/backups.\n", ctx->root);
        for (size_t i = 0; i < n_sessions && status == 0; i++)
            status = verify_session(&v, store, sessions[i], NULL);
    }
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
    if (sessions)
        fb_string_list_free(sessions, n_sessions);
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
