/* Restoring a backup (SPEC `recover`): the steps, in the order
 * docs/restore.md explains - identify the backup, check the destination,
 * extract into a staging dir and verify (restore_extract.c, in a child
 * process), take the safety backup, lock, list the changes
 * (restore_changes.c) and move the tree into place (restore_place.c). This
 * file decides whether and when each part runs, and cleans up after any of
 * them fails, so a failed restore leaves the destination as it was.
 *
 * What is written comes from the manifest, not from the tar header: each
 * header must equal the next manifest entry (path, type, size, mode, owner,
 * mtime, link target, data offset) or the backup is corrupt, and the entry
 * handed to archive_write_disk is then built from the manifest entry alone,
 * so pax extras (xattrs, ACLs, file flags, sparse maps) never reach the disk
 * and device nodes, FIFOs and sockets cannot be expressed at all. */
#include "fb_restore.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "fb_archive_reader.h"
#include "fb_backup.h"
#include "fb_fsutil.h"
#include "fb_index.h"
#include "fb_lock.h"
#include "fb_manifest.h"
#include "fb_text.h"
#include "clock_i.h"
#include "restore_i.h"
#include "tar_check_i.h"

/* Rough per-entry allowance in the free-space check (inode, dir entry). */
#define ENTRY_OVERHEAD 512

void fb_restore_result_init(fb_restore_result *r)
{
    memset(r, 0, sizeof *r);
}

void fb_restore_result_fini(fb_restore_result *r)
{
    if (!r)
        return;
    fb_restore_changes_clear(r);
    free(r->destination);
    r->destination = NULL;
    free(r->sources);
    r->sources = NULL;
    r->n_sources = 0;
}

/* ---- the backup ---- */

/* The backups the tree came from, for the report. */
static int report_sources(run *r)
{
    const fb_as_of *t = r->tree;
    r->out->type = t->type;
    r->out->only = r->req->only;
    if (!(r->out->sources = calloc(t->n_sources, sizeof *r->out->sources)))
        return restore_oom(r->err);
    for (size_t i = 0; i < t->n_sources; i++) {
        fb_restore_source *s = &r->out->sources[i];
        memcpy(s->id, t->sources[i].id, sizeof s->id);
        s->type = t->sources[i].type;
        s->entries = t->sources[i].held;
    }
    r->out->n_sources = t->n_sources;
    return 0;
}

/* --path: the tree narrowed to what the patterns select. Checked here, the
 * first step, so that a pattern that matches nothing is refused before a
 * staging dir, a safety backup or the lock exists. */
static int select_paths(run *r)
{
    const fb_restore_request *req = r->req;
    size_t *matches = calloc(req->n_paths, sizeof *matches);
    if (!matches)
        return restore_oom(r->err);
    int rc = fb_as_of_select(r->tree, req->paths, req->n_paths, matches, r->err);
    for (size_t p = 0; rc == 0 && p < req->n_paths; p++) {
        if (matches[p])
            continue;
        char quoted[FB_TEXT_QUOTE_SIZE(FB_TEXT_QUOTE_CUT)];
        fb_text_quote(req->paths[p], quoted, sizeof quoted);
        rc = fb_error_set(r->err, FB_ENOTFOUND,
                          "--path '%s' matches nothing in backup %s of session %s (%s); "
                          "nothing was restored",
                          quoted, r->out->backup_id, req->session_id,
                          req->only ? "its own entries, --only"
                                    : "the session as it stood at that backup");
    }
    free(matches);
    if (rc == 0)
        r->out->selected = r->tree->n_entries;
    return rc;
}

/* The backup, and the tree to restore: its as-of tree (fb_as_of.h) or, with
 * req->only, its own entries; with req->paths, only what they select. */
static int load_backup(run *r)
{
    const fb_restore_request *req = r->req;
    int rc = fb_store_open_session(r->store, req->session_id, false, &r->store_session_fd,
                                   r->err);
    if (rc < 0)
        return rc;
    fb_index idx;
    rc = fb_store_load_index(r->store, req->session_id, FB_INDEX_LOAD_WRITE_BACK_IF_UNLOCKED,
                             &idx, NULL, req->warn, req->warn_ctx, r->err);
    if (rc == 0)
        rc = fb_store_resolve_backup(&idx, req->backup ? req->backup : FB_BACKUP_SPEC_LATEST,
                                     r->out->backup_id, r->err);
    if (rc == 0) {
        snprintf(r->label, sizeof r->label, "%s/%s", req->session_id, r->out->backup_id);
        if (!req->only && (rc = fb_as_of_check_base(&idx, r->out->backup_id, r->err)) ==
                              FB_ENOTFOUND) {
            char why[FB_ERROR_MESSAGE_MAX];
            snprintf(why, sizeof why, "%s", r->err->message);
            fb_error_set(r->err, FB_ENOTFOUND, "%s: recover it alone with --only", why);
        }
        if (rc == 0)
            rc = fb_as_of_build(r->store, req->session_id, &idx, r->out->backup_id,
                                req->only ? FB_AS_OF_ONLY : 0, &r->tree, r->err);
    }
    fb_index_fini(&idx);
    if (rc == 0 && req->n_paths > 0)
        rc = select_paths(r);
    if (rc < 0)
        return rc;
    return report_sources(r);
}

/* ---- the destination ---- */

/* Into the session dir: .flowloom/sessions/<sid>, whose parent is created
 * if need be (not in a dry run, which creates nothing). */
static int setup_session_destination(run *r)
{
    const fb_restore_request *req = r->req;
    char *flowloom = fb_path_join(fb_store_root(r->store), FB_FLOWLOOM_DIR);
    r->parent_shown = flowloom ? fb_path_join(flowloom, FB_SESSIONS_SUBDIR) : NULL;
    r->dest_name = strdup(req->session_id);
    r->dest_shown = r->parent_shown ? fb_path_join(r->parent_shown, req->session_id) : NULL;
    if (!flowloom || !r->parent_shown || !r->dest_name || !r->dest_shown) {
        free(flowloom);
        return restore_oom(r->err);
    }
    int ffd = open(flowloom, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int e = errno;
    free(flowloom);
    if (ffd < 0)
        return fb_error_from_errno(r->err, e, "cannot open the .flowloom directory of %s",
                                   fb_store_root(r->store));
    r->parent_fd = openat(ffd, FB_SESSIONS_SUBDIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (r->parent_fd < 0 && errno == ENOENT && !req->dry_run) {
        if (mkdirat(ffd, FB_SESSIONS_SUBDIR, 0700) != 0 && errno != EEXIST) {
            e = errno;
            close(ffd);
            return fb_error_set_errno(r->err, e, "cannot create %s", r->parent_shown);
        }
        r->parent_fd = openat(ffd, FB_SESSIONS_SUBDIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    }
    e = errno;
    close(ffd);
    if (r->parent_fd < 0 && !(e == ENOENT && req->dry_run))
        return fb_error_set_errno(r->err, e, "cannot open %s", r->parent_shown);
    return 0;
}

/* --target DIR: DIR's own name is never followed; the path leading to it
 * is the caller's choice and resolved normally. */
static int setup_target_destination(run *r)
{
    const char *dir = r->req->target_dir;
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/')
        len--;
    char *t = strndup(dir, len);
    if (!t)
        return restore_oom(r->err);
    char *slash = strrchr(t, '/');
    const char *base = slash ? slash + 1 : t;
    if (!*base || !strcmp(base, ".") || !strcmp(base, "..") || len == 0) {
        free(t);
        return fb_error_set(r->err, FB_EINVAL,
                            "target '%s' must name a directory (not '.', '..' or '/')", dir);
    }
    r->dest_name = strdup(base);
    if (slash == t)
        r->parent_shown = strdup("/");
    else if (slash)
        r->parent_shown = strndup(t, (size_t)(slash - t));
    else
        r->parent_shown = strdup(".");
    r->dest_shown = t;
    if (!r->dest_name || !r->parent_shown)
        return restore_oom(r->err);
    r->parent_fd = open(r->parent_shown, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (r->parent_fd < 0)
        return fb_error_from_errno(r->err, errno, "cannot open %s, the parent of target %s",
                                   r->parent_shown, r->dest_shown);
    return 0;
}

/* Finds the directory that holds the destination (and will hold the
 * staging dir) and the destination's name in it. */
static int setup_destination(run *r)
{
    int rc = r->into_session ? setup_session_destination(r) : setup_target_destination(r);
    if (rc < 0)
        return rc;
    r->out->destination = strdup(r->dest_shown);
    if (!r->out->destination)
        return restore_oom(r->err);
    bool exists;
    struct stat st;
    return fb_restore_check_destination(r, &exists, &st);
}

/* ---- the staging dir ---- */

/* Refuse early rather than fill the disk: writes are capped at the
 * manifest's sizes, so this bounds what the extraction can use. */
static int check_free_space(run *r)
{
    struct statvfs vs;
    if (fstatvfs(r->staging_fd, &vs) != 0 || vs.f_frsize == 0)
        return 0;
    uint64_t blocks = geteuid() == 0 ? vs.f_bfree : vs.f_bavail;
    uint64_t avail, need, overhead;
    if (__builtin_mul_overflow(blocks, (uint64_t)vs.f_frsize, &avail))
        avail = UINT64_MAX;
    size_t n_entries = r->tree->n_entries;
    if (__builtin_mul_overflow((uint64_t)n_entries, (uint64_t)ENTRY_OVERHEAD, &overhead) ||
        __builtin_add_overflow(r->tree->totals.bytes, overhead, &need))
        need = UINT64_MAX;
    if (need > avail)
        return fb_error_set_errno(r->err, ENOSPC,
                                  "%s: restoring %s needs about %llu bytes, %llu are free",
                                  r->parent_shown, r->label, (unsigned long long)need,
                                  (unsigned long long)avail);
    if (vs.f_files > 0 && vs.f_favail < n_entries)
        return fb_error_set_errno(r->err, ENOSPC,
                                  "%s: restoring %s needs %zu inodes, %llu are free",
                                  r->parent_shown, r->label, n_entries,
                                  (unsigned long long)vs.f_favail);
    return 0;
}

static int make_staging(run *r)
{
    char prefix[NAME_MAX + 1];
    if (r->into_session)
        snprintf(prefix, sizeof prefix, "%s%s-", FB_RESTORE_STAGING_PREFIX, r->req->session_id);
    else
        snprintf(prefix, sizeof prefix, "%s", FB_RESTORE_STAGING_PREFIX);
    int rc = fb_make_temp_dir_at(r->parent_fd, r->parent_shown, prefix, r->staging,
                                 sizeof r->staging, &r->staging_fd, r->err);
    if (rc < 0)
        return rc;
    r->staging_made = true;
    /* Held until we are done: tells a concurrent restore's leftover sweep
     * that this one is in use. */
    if (flock(r->staging_fd, LOCK_EX | LOCK_NB) != 0)
        return fb_error_set_errno(r->err, errno, "%s/%s: cannot lock the staging directory",
                                  r->parent_shown, r->staging);
    return check_free_space(r);
}

/* Removes .restore-<sid>-* left by interrupted recovers of this session
 * (called with the session lock held), through the store's one sweep; ours
 * is skipped there because this run holds its flock. */
static void clear_leftovers(run *r)
{
    size_t removed = 0;
    fb_error sub;
    fb_error_clear(&sub);
    if (fb_store_clear_restore_staging(r->store, r->req->session_id, r->req->warn,
                                       r->req->warn_ctx, &removed, &sub) != 0)
        fb_restore_warn(r, "could not remove a leftover of an interrupted recover: %s",
                        sub.message);
    r->out->leftovers_removed += removed;
}

static int take_safety_backup(run *r)
{
    const fb_restore_request *req = r->req;
    char note[64];
    snprintf(note, sizeof note, "pre-recover %s", r->out->backup_id);
    fb_backup_request b;
    memset(&b, 0, sizeof b);
    b.session_id = req->session_id;
    b.type = FB_BACKUP_FULL;
    b.note = note;
    b.now = req->now;
    b.config = req->config;
    b.lock_wait_seconds = req->lock_wait_seconds;
    b.lock_waiting = req->lock_waiting;
    b.lock_waiting_ctx = req->lock_waiting_ctx;
    b.verify = true;
    /* Retention could remove the very backup being restored. */
    b.cleanup = false;
    b.warn = req->warn;
    b.warn_ctx = req->warn_ctx;
    /* Stopped, it publishes nothing: the session and the store stay. */
    b.cancel = req->cancel;
    b.progress = req->progress;
    b.progress_ctx = req->progress_ctx;
    fb_backup_result res;
    fb_backup_result_init(&res);
    int rc = fb_backup_run(r->store, &b, &res, r->err);
    if (rc == 0)
        memcpy(r->out->safety_backup_id, res.manifest.backup_id, FB_BACKUP_ID_LEN + 1);
    else
        fb_error_prefix(r->err, "safety backup failed, nothing was restored");
    fb_backup_result_fini(&res);
    return rc;
}

static int run_steps(run *r)
{
    const fb_restore_request *req = r->req;
    int rc;
    if ((rc = load_backup(r)) < 0)
        return rc;
    if ((rc = setup_destination(r)) < 0)
        return rc;
    if (req->dry_run)
        return fb_restore_compute_changes(r);

    /* Extract and verify first: a corrupt backup is refused before the
     * safety backup or the lock, leaving the store and the session dir
     * exactly as they were. */
    if ((rc = make_staging(r)) < 0)
        return rc;
    if ((rc = fb_restore_extract_tree(r)) < 0)
        return rc;
    char staged_shown[PATH_MAX];
    snprintf(staged_shown, sizeof staged_shown, "%s/%s", r->parent_shown, r->staging);
    if ((rc = fb_restore_sync_fs(r, r->staging_fd, staged_shown)) < 0 ||
        (rc = fb_restore_check_cancel(r)) < 0)
        return rc;

    if (r->into_session) {
        bool exists;
        struct stat st;
        if ((rc = fb_restore_check_destination(r, &exists, &st)) < 0)
            return rc;
        /* A merge that would have to write through a symlink is refused
         * before the safety backup (and checked again under the lock,
         * where it counts). */
        if (exists && r->merge && (rc = fb_restore_compute_changes(r)) < 0)
            return rc;
        if ((rc = fb_restore_check_cancel(r)) < 0)
            return rc;
        if (exists && req->safety_backup && (rc = take_safety_backup(r)) < 0)
            return rc;
        if ((rc = fb_restore_check_cancel(r)) < 0)
            return rc;
        if ((rc = fb_lock_acquire(r->store_session_fd, req->session_id, req->lock_wait_seconds,
                                  req->lock_waiting, req->lock_waiting_ctx, &r->lock,
                                  r->err)) < 0)
            return rc;
        clear_leftovers(r);
    }

    rc = fb_restore_compute_changes(r);
    if (rc < 0) {
        /* For a merge this is also the refusal of a conflict. */
        if (r->merge)
            return rc;
        fb_restore_warn(r, "could not list the changes: %s", r->err->message);
        fb_restore_changes_clear(r->out);
        r->changes_cap = 0;
        fb_error_clear(r->err);
    }
    /* The last point where stopping leaves the destination as it was:
     * once the move has begun it is finished. */
    if ((rc = fb_restore_check_cancel(r)) < 0)
        return rc;
    return fb_restore_place(r);
}

/* Whatever run_steps got to: nothing of a failed run stays (if even the
 * staging dir cannot be removed, the next restore of the session clears
 * it), and the lock is released. */
static void run_free(run *r)
{
    fb_archive_reader_free(r->reader);
    if (r->staging_fd >= 0)
        close(r->staging_fd);
    if (r->staging_made)
        fb_restore_remove_staging(r, "the staging directory");
    fb_lock_release(&r->lock);
    if (r->store_session_fd >= 0)
        close(r->store_session_fd);
    if (r->parent_fd >= 0)
        close(r->parent_fd);
    fb_manifest_fini(&r->m);
    free(r->by_path);
    free(r->plan);
    fb_as_of_free(r->tree);
    free(r->parent_shown);
    free(r->dest_name);
    free(r->dest_shown);
    free(r);
}

int fb_restore_run(fb_store *store, const fb_restore_request *req, fb_restore_result *out,
                   fb_error *err)
{
    double t0 = fb_monotonic_seconds();
    if (!store || !req || !out)
        return fb_error_set(err, FB_EMISUSE, "fb_restore_run: missing argument");
    int rc = fb_session_id_check(req->session_id, err);
    if (rc < 0)
        return rc;
    bool into_session = req->target_dir == NULL;
    if (into_session && req->safety_backup && !req->dry_run && !req->config)
        return fb_error_set(err, FB_EMISUSE, "fb_restore_run: a safety backup needs a config");
    if (req->n_paths > 0 && !req->paths)
        return fb_error_set(err, FB_EMISUSE, "fb_restore_run: n_paths without paths");
    if (!into_session && !*req->target_dir)
        return fb_error_set(err, FB_EINVAL, "target directory is empty");

    fb_error local;
    fb_error_clear(&local);
    run *r = calloc(1, sizeof *r);
    if (!r)
        return fb_error_set(err, FB_ENOMEM, "out of memory");
    r->store = store;
    r->req = req;
    r->out = out;
    r->err = err ? err : &local;
    r->into_session = into_session;
    /* --only and --path cover part of the session: their entries are merged
     * into the session dir instead of a whole tree swapped in for it, so
     * what they do not cover stays. */
    r->merge = into_session && (req->only || req->n_paths > 0);
    r->store_session_fd = r->parent_fd = r->staging_fd = -1;
    r->lock.fd = -1;
    fb_manifest_init(&r->m);
    out->into_session = into_session;
    out->dry_run = req->dry_run;

    rc = run_steps(r);
    run_free(r);
    /* Said once the staging dir is gone, whichever step noticed. */
    if (rc == FB_EINTERRUPTED) {
        if (into_session)
            fb_error_set(err, FB_EINTERRUPTED, "interrupted: the session is unchanged");
        else
            fb_error_set(err, FB_EINTERRUPTED, "interrupted: nothing was restored into %s",
                         req->target_dir);
    }
    out->seconds = fb_monotonic_seconds() - t0;
    return rc < 0 ? rc : 0;
}
