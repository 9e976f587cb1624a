/* Verifying a session (see fb_verify.h, fb_verify_session): each backup
 * checked completely (fb_verify_backup_dir) and against its index record,
 * and the session's index.json, read as it is on disk without a rebuild,
 * audited against the backup directories: a backup the index forgot, a
 * record whose directory is gone, an index that does not parse. */
#include "fb_verify.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fb_fsutil.h"

typedef struct session_run {
    const char *session_id;
    int session_fd;
    fb_verify_sink sink;
    void *ctx;
    fb_progress_fn progress;
    void *progress_ctx;
    uint64_t done;  /* archive bytes of the backups checked so far */
    uint64_t total; /* of all the backups to check */
} session_run;

/* The size of a backup's archive, as the progress counts it: 0 when it
 * is not a regular file (verify_one says what is wrong with it). */
static uint64_t archive_size(const session_run *s, const char *id)
{
    char path[FB_BACKUP_ID_LEN + sizeof FB_ARCHIVE_NAME + 2];
    snprintf(path, sizeof path, "%s/%s", id, FB_ARCHIVE_NAME);
    struct stat st;
    if (fstatat(s->session_fd, path, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
        return 0;
    return (uint64_t)st.st_size;
}

/* One backup's progress, as a part of the session's. */
static void backup_progress(void *ctx, const char *phase, uint64_t done, uint64_t total)
{
    (void)total;
    session_run *s = ctx;
    uint64_t at = s->done + done;
    s->progress(s->progress_ctx, phase, at < s->total ? at : s->total, s->total);
}

/* The messages of the checks below name the backup ("S/<id>: ..." or
 * "S/<id>/manifest.json: ...", the name this module gives them); the sink
 * is told which backup, so the reason goes without that part. */
static const char *reason_of(const char *message, const char *name)
{
    size_t n = strlen(name);
    if (strncmp(message, name, n) != 0)
        return message;
    if (message[n] == ':' && message[n + 1] == ' ')
        return message + n + 2;
    if (message[n] == '/')
        return message + n + 1;
    return message;
}

/* Checks one backup; reports it; returns true when it is good. */
static bool verify_one(session_run *s, const char *id, const fb_index_record *rec)
{
    char name[FB_SESSION_ID_MAX + FB_BACKUP_ID_LEN + 2];
    snprintf(name, sizeof name, "%s/%s", s->session_id, id);
    int dirfd = openat(s->session_fd, id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dirfd < 0) {
        int e = errno;
        if (e == ENOENT) {
            s->sink(s->ctx, id, FB_VERIFY_CORRUPT,
                    "listed in " FB_INDEX_NAME " but the backup directory is missing");
        } else if (e == ELOOP || e == ENOTDIR) {
            s->sink(s->ctx, id, FB_VERIFY_CORRUPT, "the backup directory is not a directory");
        } else {
            char msg[256];
            snprintf(msg, sizeof msg, "cannot open the backup directory: %s", strerror(e));
            s->sink(s->ctx, id, FB_VERIFY_FAILED, msg);
        }
        return false;
    }
    fb_error err;
    fb_error_clear(&err);
    fb_manifest m;
    fb_manifest_init(&m);
    fb_verify_outcome outcome = FB_VERIFY_OK;
    const char *problem = NULL;
    int rc = fb_store_read_manifest(s->session_fd, s->session_id, id, &m, &err);
    if (rc == FB_ENOTFOUND) {
        outcome = FB_VERIFY_CORRUPT;
        problem = FB_MANIFEST_NAME " is missing";
    } else if (rc != 0) {
        outcome = rc == FB_ECORRUPT || rc == FB_EUNSUPPORTED ? FB_VERIFY_CORRUPT : FB_VERIFY_FAILED;
        problem = reason_of(err.message, name);
    } else {
        fb_verify_dir_options o = {.phase = "verify",
                                   .progress = s->progress ? backup_progress : NULL,
                                   .progress_ctx = s};
        rc = fb_verify_backup_dir_with(dirfd, &m, name, &o, &err);
        if (rc == 0 && rec)
            rc = fb_verify_index_record(rec, &m, &err);
        if (rc != 0) {
            outcome = rc == FB_ECORRUPT ? FB_VERIFY_CORRUPT : FB_VERIFY_FAILED;
            problem = reason_of(err.message, name);
        }
    }
    /* A backup that failed early still counts as checked. */
    if (s->progress) {
        uint64_t at = s->done + archive_size(s, id);
        s->done = at < s->total ? at : s->total;
        s->progress(s->progress_ctx, "verify", s->done, s->total);
    }
    s->sink(s->ctx, id, outcome, problem);
    fb_manifest_fini(&m);
    close(dirfd);
    return outcome == FB_VERIFY_OK;
}

/* index.json as it is on disk. *present: the file exists; *problem (""
 * when none): why it cannot be used. Returns 0, or an error that is not
 * about the index's content (I/O, memory). */
static int read_raw_index(session_run *s, fb_index *raw, bool *present, char *problem,
                          size_t problem_size, fb_error *err)
{
    char *buf = NULL;
    size_t len = 0;
    fb_error e;
    fb_error_clear(&e);
    *present = false;
    problem[0] = '\0';
    int rc = fb_read_file_at(s->session_fd, s->session_id, FB_INDEX_NAME, FB_MANIFEST_SIZE_MAX,
                             &buf, &len, &e);
    if (rc == FB_ENOTFOUND)
        return 0;
    *present = true;
    if (rc != 0) {
        if (rc == FB_ECORRUPT || e.sys_errno == ELOOP) {
            snprintf(problem, problem_size, "%s", e.message);
            return 0;
        }
        if (err)
            *err = e;
        return rc;
    }
    char source[FB_SESSION_ID_MAX + 16];
    snprintf(source, sizeof source, "%s/" FB_INDEX_NAME, s->session_id);
    rc = fb_index_parse(buf, len, source, raw, &e);
    free(buf);
    if (rc == FB_ENOMEM) {
        if (err)
            *err = e;
        return rc;
    }
    if (rc != 0) {
        fb_index_init(raw, s->session_id);
        snprintf(problem, problem_size, "%s", e.message);
    } else if (strcmp(raw->session_id, s->session_id) != 0) {
        snprintf(problem, problem_size, "names session '%s'", raw->session_id);
        fb_index_fini(raw);
        fb_index_init(raw, s->session_id);
    }
    return 0;
}

/* Directories of the session shaped like backup ids, manifest or not. */
static bool is_backup_shaped_dir(int dirfd, const char *name, void *ctx)
{
    (void)ctx;
    struct stat st;
    return fb_backup_id_has_shape(name) &&
           fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

static bool in_list(char **list, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], s) == 0)
            return true;
    return false;
}

int fb_verify_session(fb_store *store, const fb_verify_request *req, bool *index_stale,
                      fb_error *err)
{
    *index_stale = false;
    const char *session_id = req->session_id;
    const char *backup_id = req->backup_id;
    fb_verify_sink sink = req->sink;
    void *ctx = req->sink_ctx;
    session_run s = {.session_id = session_id,
                     .session_fd = -1,
                     .sink = sink,
                     .ctx = ctx,
                     .progress = req->progress,
                     .progress_ctx = req->progress_ctx};
    int rc = fb_store_open_session(store, session_id, false, &s.session_fd, err);
    if (rc == FB_ENOTFOUND && backup_id)
        return fb_error_set(err, rc, "backup '%s' not found: session %s has no backups",
                            backup_id, session_id);
    if (rc == FB_ENOTFOUND)
        return fb_error_set(err, rc, "session %s has no backups", session_id);
    if (rc)
        return rc;
    fb_index raw;
    fb_index_init(&raw, session_id);
    char **dirs = NULL;
    size_t n_dirs = 0;
    bool present;
    char problem[FB_ERROR_MESSAGE_MAX];
    rc = read_raw_index(&s, &raw, &present, problem, sizeof problem, err);
    if (rc)
        goto out;
    rc = fb_list_dir_names_at(s.session_fd, is_backup_shaped_dir, NULL, &dirs, &n_dirs);
    if (rc) {
        rc = fb_error_from_errno(err, rc, "%s/%s: cannot list the backups",
                                 fb_store_backups_path(store), session_id);
        goto out;
    }

    if (backup_id) {
        long at = fb_index_find(&raw, backup_id);
        if (at < 0 && !in_list(dirs, n_dirs, backup_id)) {
            rc = fb_error_set(err, FB_ENOTFOUND, "backup '%s' not found in session %s", backup_id,
                              session_id);
            goto out;
        }
        s.total = archive_size(&s, backup_id);
        verify_one(&s, backup_id, at >= 0 ? &raw.records[at] : NULL);
        goto out;
    }

    for (size_t i = 0; s.progress && i < raw.n; i++)
        s.total += archive_size(&s, raw.records[i].id);
    for (size_t i = 0; s.progress && i < n_dirs; i++)
        if (fb_index_find(&raw, dirs[i]) < 0)
            s.total += archive_size(&s, dirs[i]);

    bool raw_ok = present && !problem[0];
    if (present && !raw_ok) {
        sink(ctx, NULL, FB_VERIFY_CORRUPT, problem);
        *index_stale = true;
    } else if (!present && n_dirs > 0) {
        sink(ctx, NULL, FB_VERIFY_CORRUPT, "missing while backup directories exist");
        *index_stale = true;
    }
    for (size_t i = 0; i < raw.n; i++) {
        verify_one(&s, raw.records[i].id, &raw.records[i]);
        if (!in_list(dirs, n_dirs, raw.records[i].id))
            *index_stale = true;
    }
    for (size_t i = 0; i < n_dirs; i++) {
        if (fb_index_find(&raw, dirs[i]) >= 0)
            continue;
        /* A damaged backup is rightly absent from the index: reported once,
         * as corrupt; a good one the index forgot is the index's fault. */
        if (verify_one(&s, dirs[i], NULL) && raw_ok) {
            snprintf(problem, sizeof problem, "does not list backup %s", dirs[i]);
            sink(ctx, NULL, FB_VERIFY_CORRUPT, problem);
            *index_stale = true;
        }
    }

out:
    if (dirs)
        fb_string_list_free(dirs, n_dirs);
    fb_index_fini(&raw);
    close(s.session_fd);
    return rc;
}
