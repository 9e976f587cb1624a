/* Taking a backup: the SPEC's steps in order (identify the session, lock,
 * clear leftovers, scan, write archive + manifest into .tmp-*, validate,
 * publish with fsync + RENAME_NOREPLACE, update the index, retention).
 * Until the rename nothing is visible; a failure removes the temp dir. A
 * failure after the rename takes the new dir back out of view (renamed to a
 * .tmp-* name, which the next locked run clears anyway) so that a backup
 * that reports failure is never left behind looking valid. The validate
 * step is in backup_validate.c (backup_i.h holds the run's state). */
#include "fb_backup.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fb_archive_writer.h"
#include "fb_fsutil.h"
#include "fb_hash.h"
#include "fb_index.h"
#include "fb_lock.h"
#include "fb_text.h"
#include "clock_i.h"
#include "live_i.h"
#include "scan_i.h"
#include "backup_source_i.h"
#include "backup_i.h"

#ifndef FB_VERSION
#define FB_VERSION "unknown"
#endif


void fb_backup_result_init(fb_backup_result *r)
{
    memset(r, 0, sizeof *r);
    fb_manifest_init(&r->manifest);
    fb_error_clear(&r->retention_error);
}

void fb_backup_result_fini(fb_backup_result *r)
{
    if (!r)
        return;
    fb_manifest_fini(&r->manifest);
    free(r->retention);
    r->retention = NULL;
    r->n_retention = 0;
}

/* ---- one run ---- */

static void warn_entry(backup_run *r, const char *what, const char *path)
{
    char esc[600];
    fb_path_escape(path, esc, sizeof esc);
    r->out->skipped_entries++;
    fb_warnf(r->req->warn, r->req->warn_ctx, "%s: %s", what, esc);
}

/* fb_src_cursor_parent with errors that name the source directory. */
static int source_parent(backup_run *r, fb_src_cursor *cur, const char *path, int *dirfd,
                         const char **base)
{
    int why = 0;
    int rc = fb_src_cursor_parent(cur, path, dirfd, base, &why, r->err);
    if (rc < 0)
        fb_error_prefix(r->err, "%s", r->src_name);
    return rc;
}

/* The live check holds the file just added to the manifest against the
 * fingerprint the writer took of its bytes. */
static void keep_fingerprint(backup_run *r, const fb_archive_file_result *res)
{
    if (r->fingerprints)
        memcpy(r->fingerprints[r->m.n_entries - 1], res->fingerprint, FB_XXH128_LEN);
}

/* Stores one regular file whose scan stat is expect. Returns 0 (stored, its
 * manifest entry appended), 1 (skipped with a warning), or an error. */
static int store_file(backup_run *r, fb_src_cursor *cur, fb_archive_writer *w, const char *path,
                      const fb_scan_stat *expect)
{
    int dirfd;
    const char *base;
    int rc = source_parent(r, cur, path, &dirfd, &base);
    if (rc < 0)
        return rc;
    if (rc > 0) {
        warn_entry(r, "skipped, its directory vanished or was replaced before it was read",
                   path);
        return 1;
    }
    /* O_NONBLOCK: if a FIFO was swapped in since the scan, open must not hang. */
    int fd = openat(dirfd, base, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT || e == ENOTDIR) {
            warn_entry(r, "skipped, vanished before it was read", path);
            return 1;
        }
        if (e == ELOOP || e == ENXIO || e == EISDIR) {
            warn_entry(r, "skipped, replaced by something else than a file before it was read",
                       path);
            return 1;
        }
        char esc[600];
        fb_path_escape(path, esc, sizeof esc);
        return fb_error_set_errno(r->err, e, "%s: cannot read %s", r->src_name, esc);
    }
    struct stat before, after;
    if (fstat(fd, &before) != 0) {
        int e = errno;
        close(fd);
        char esc[600];
        fb_path_escape(path, esc, sizeof esc);
        return fb_error_set_errno(r->err, e, "%s: cannot stat %s", r->src_name, esc);
    }
    if (!S_ISREG(before.st_mode) || before.st_dev != expect->dev ||
        before.st_ino != expect->ino) {
        close(fd);
        warn_entry(r, "skipped, replaced by another file or type before it was read", path);
        return 1;
    }
    /* The metadata of what is read now, not of the scan: size especially,
     * since exactly meta.size bytes are stored. */
    fb_scan_entry now = {.type = FB_ENTRY_FILE};
    fb_scan_stat_set(&now.st, &before);
    fb_entry_meta meta;
    fb_live_meta(&now, &meta);

    fb_archive_file_result res;
    rc = fb_archive_writer_add_file(w, path, &meta, fd, &res, r->err);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    if (fstat(fd, &after) == 0 && fb_live_stat_changed(&before, &after)) {
        char esc[600];
        fb_path_escape(path, esc, sizeof esc);
        r->out->changed_files++;
        fb_warnf(r->req->warn, r->req->warn_ctx, "file changed while being read: %s", esc);
    }
    close(fd);
    rc = fb_manifest_add_entry(&r->m, path, &meta, res.sha256, res.offset, NULL, r->err);
    if (rc < 0)
        return rc;
    keep_fingerprint(r, &res);
    r->done_bytes += meta.size;
    fb_backup_progress(r, "write", r->done_bytes, r->file_bytes);
    return 0;
}

/* Stores a file the helper read whole (slot s, state FB_PREFETCH_READY): the same
 * metadata, warning and manifest entry as store_file. */
static int store_prefetched(backup_run *r, fb_archive_writer *w, const char *path,
                            const fb_prefetch_slot *s)
{
    fb_scan_entry now = {.type = FB_ENTRY_FILE};
    fb_scan_stat_set(&now.st, &s->before);
    fb_entry_meta meta;
    fb_live_meta(&now, &meta);
    fb_archive_file_result res;
    int rc = fb_archive_writer_add_data(w, path, &meta, s->data, &res, r->err);
    if (rc < 0)
        return rc;
    if (s->changed) {
        char esc[600];
        fb_path_escape(path, esc, sizeof esc);
        r->out->changed_files++;
        fb_warnf(r->req->warn, r->req->warn_ctx, "file changed while being read: %s", esc);
    }
    rc = fb_manifest_add_entry(&r->m, path, &meta, res.sha256, res.offset, NULL, r->err);
    if (rc < 0)
        return rc;
    keep_fingerprint(r, &res);
    r->done_bytes += meta.size;
    fb_backup_progress(r, "write", r->done_bytes, r->file_bytes);
    return 0;
}

/* A FILE entry: from its prefetched slot when the helper read it, else by
 * store_file. */
static int store_entry_file(backup_run *r, fb_prefetcher *pf, fb_src_cursor *cur,
                            fb_archive_writer *w, size_t i)
{
    const fb_scan_entry *e = &r->scan.entries[i];
    fb_prefetch_lane *lane = NULL;
    fb_prefetch_slot *s = fb_prefetch_wanted(e) ? fb_prefetch_take(pf, i, &lane) : NULL;
    if (!s)
        return store_file(r, cur, w, e->path, &e->st);
    int rc = s->state == FB_PREFETCH_READY ? store_prefetched(r, w, e->path, s)
                                    : store_file(r, cur, w, e->path, &e->st);
    fb_prefetch_release(lane);
    return rc;
}

/* Is the hardlink at path still a link to the inode of holder? 0 yes, 1 no (warned). */
static int hardlink_still_same(backup_run *r, fb_src_cursor *cur, const char *path,
                               const fb_scan_stat *expect)
{
    int dirfd;
    const char *base;
    int rc = source_parent(r, cur, path, &dirfd, &base);
    if (rc < 0)
        return rc;
    struct stat st;
    if (rc > 0 || fstatat(dirfd, base, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (rc == 0 && errno != ENOENT && errno != ENOTDIR) {
            char esc[600];
            fb_path_escape(path, esc, sizeof esc);
            return fb_error_set_errno(r->err, errno, "%s: cannot stat %s", r->src_name, esc);
        }
        warn_entry(r, "skipped, vanished before it was read", path);
        return 1;
    }
    if (!S_ISREG(st.st_mode) || st.st_dev != expect->dev || st.st_ino != expect->ino) {
        warn_entry(r, "skipped, replaced by another file or type before it was read", path);
        return 1;
    }
    return 0;
}

static int write_entries(backup_run *r, fb_archive_writer *w)
{
    size_t n = r->scan.n;
    /* holder[i] for a FILE entry i: manifest index of the entry holding the
     * inode's data, or SIZE_MAX while none does (the file was skipped; the
     * next link of the same inode then becomes the file). */
    size_t *holder = malloc((n ? n : 1) * sizeof *holder);
    if (!holder)
        return fb_error_set(r->err, FB_ENOMEM, "out of memory");
    fb_src_cursor cur;
    fb_src_cursor_init(&cur, r->source_fd);
    fb_prefetcher *pf = malloc(sizeof *pf);
    if (!pf) {
        free(holder);
        return fb_error_set(r->err, FB_ENOMEM, "out of memory");
    }
    fb_prefetch_start(pf, &r->scan, r->source_fd);
    int rc = 0;
    for (size_t i = 0; i < n && rc >= 0; i++) {
        const fb_scan_entry *e = &r->scan.entries[i];
        fb_entry_meta meta;
        holder[i] = SIZE_MAX;
        if ((rc = fb_backup_check_cancel(r)) < 0)
            break;
        switch (e->type) {
        case FB_ENTRY_DIR:
            fb_live_meta(e, &meta);
            rc = fb_archive_writer_add_dir(w, e->path, &meta, r->err);
            if (rc >= 0)
                rc = fb_manifest_add_entry(&r->m, e->path, &meta, NULL, 0, NULL, r->err);
            break;
        case FB_ENTRY_SYMLINK:
            fb_live_meta(e, &meta); /* like lstat: size is the target's length */
            rc = fb_archive_writer_add_symlink(w, e->path, &meta, e->target, r->err);
            if (rc >= 0)
                rc = fb_manifest_add_entry(&r->m, e->path, &meta, NULL, 0, e->target, r->err);
            break;
        case FB_ENTRY_FILE:
            rc = store_entry_file(r, pf, &cur, w, i);
            if (rc == 0)
                holder[i] = r->m.n_entries - 1;
            break;
        case FB_ENTRY_HARDLINK: {
            size_t k = e->link_index;
            if (holder[k] == SIZE_MAX) {
                rc = store_file(r, &cur, w, e->path, &e->st);
                if (rc == 0)
                    holder[k] = r->m.n_entries - 1;
                break;
            }
            rc = hardlink_still_same(r, &cur, e->path, &e->st);
            if (rc != 0)
                break;
            const fb_manifest_entry *h = &r->m.entries[holder[k]];
            meta = h->meta;
            meta.type = FB_ENTRY_HARDLINK;
            rc = fb_archive_writer_add_hardlink(w, e->path, &meta, h->path, r->err);
            if (rc >= 0)
                rc = fb_manifest_add_entry(&r->m, e->path, &meta, NULL, 0, h->path, r->err);
            break;
        }
        }
        if (r->live)
            fb_live_check_entries(r->live, r->m.entries, r->fingerprints, r->m.n_entries);
    }
    fb_prefetch_stop(pf);
    free(pf);
    fb_src_cursor_fini(&cur);
    free(holder);
    return rc < 0 ? rc : 0;
}

/* The manifest's text goes to its file chunk by chunk as it is written:
 * the whole text is never in memory (issue 10). */
typedef struct fd_sink {
    backup_run *r;
    int fd;
    fb_sha256 *sha; /* of the text written */
} fd_sink;

static int write_to_fd(void *ctx, const char *data, size_t len, fb_error *err)
{
    fd_sink *s = ctx;
    fb_sha256_update(s->sha, data, len);
    int e = fb_write_all(s->fd, data, len);
    if (e)
        return fb_error_set_errno(err, e, "%s/%s/%s: cannot write", s->r->sess_name,
                                  s->r->tmpname, FB_MANIFEST_NAME);
    return 0;
}

static int write_manifest(backup_run *r)
{
    int fd = openat(r->tmp_fd, FB_MANIFEST_NAME,
                    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return fb_error_set_errno(r->err, errno, "%s/%s/%s: cannot create", r->sess_name,
                                  r->tmpname, FB_MANIFEST_NAME);
    fb_sha256 sha;
    int rc = fb_sha256_init(&sha, r->err);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    fd_sink sink = {.r = r, .fd = fd, .sha = &sha};
    rc = fb_manifest_write(&r->m, write_to_fd, &sink, r->err);
    fb_sha256_final(&sha, r->manifest_sha);
    fb_sha256_fini(&sha);
    int e = 0;
    if (rc >= 0 && fsync(fd) != 0)
        e = errno;
    if (close(fd) != 0 && !e && rc >= 0)
        e = errno;
    if (e)
        return fb_error_set_errno(r->err, e, "%s/%s/%s: cannot write", r->sess_name, r->tmpname,
                                  FB_MANIFEST_NAME);
    return rc < 0 ? rc : 0;
}

/* The manifest's fields besides its entries, once the archive is written. */
static int fill_manifest(backup_run *r, const fb_archive_summary *sum)
{
    const fb_backup_request *req = r->req;
    fb_manifest *m = &r->m;
    m->format = FB_MANIFEST_FORMAT;
    memcpy(m->backup_id, r->id, sizeof m->backup_id);
    snprintf(m->session_id, sizeof m->session_id, "%s", req->session_id);
    m->type = req->type;
    m->created_at = req->now;
    m->archive.size = sum->compressed_size;
    memcpy(m->archive.sha256, sum->sha256, FB_SHA256_LEN);
    m->archive.frame_size = req->config->frame_size;
    m->archive.frames = sum->frames;
    m->archive.level = req->config->level;
    int rc = fb_manifest_set_note(m, req->note, r->err);
    if (rc == 0)
        rc = fb_manifest_set_tool_version(m, FB_VERSION, r->err);
    return rc < 0 ? rc : 0;
}

/* Scan + archive + manifest, all inside the temp dir. */
static int build(backup_run *r)
{
    const fb_backup_request *req = r->req;
    fb_backup_progress(r, "scan", 0, 0);
    fb_scan_options so = {
        .include = req->type == FB_BACKUP_INCREMENTAL ? req->config : NULL,
        .warn = req->warn,
        .warn_ctx = req->warn_ctx,
        .cancel = req->cancel,
    };
    int rc = fb_scan_dir(r->source_fd, r->src_name, &so, &r->scan, r->err);
    if (rc == FB_EINTERRUPTED)
        return fb_backup_check_cancel(r);
    if (rc < 0)
        return rc;
    r->out->skipped_entries += r->scan.skipped;
    r->file_bytes = r->scan.file_bytes;
    /* At most one manifest entry per scanned entry: the array is sized once
     * instead of growing by doubling (up to twice the room it needs), and
     * it never moves while the live check reads it. */
    if ((rc = fb_manifest_reserve(&r->m, r->scan.n, r->err)) < 0)
        return rc;
    if (req->after_scan)
        req->after_scan(req->after_scan_ctx);

    r->archive_fd = openat(r->tmp_fd, FB_ARCHIVE_NAME,
                           O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (r->archive_fd < 0)
        return fb_error_set_errno(r->err, errno, "%s/%s/%s: cannot create", r->sess_name,
                                  r->tmpname, FB_ARCHIVE_NAME);
    char archive_name[FB_PATH_MAX];
    snprintf(archive_name, sizeof archive_name, "%s/%s/%s", r->sess_name, r->tmpname,
             FB_ARCHIVE_NAME);
    if (req->verify)
        fb_backup_start_live_check(r);
    if (r->live && !(r->fingerprints = calloc(r->scan.n ? r->scan.n : 1, FB_XXH128_LEN)))
        return fb_error_set(r->err, FB_ENOMEM, "out of memory");
    fb_archive_writer_options wo = {
        .name = archive_name,
        .level = req->config->level,
        .frame_size = req->config->frame_size,
        .threads = req->config->threads,
        .cancel = req->cancel,
        /* The live check reads every byte back: it hashes the archive
         * there, and holds each file against the writer's fingerprint. */
        .on_written = r->live || req->frame_written ? fb_backup_frame_written : NULL,
        .written_ctx = r,
        .no_output_hash = r->live != NULL,
        .file_fingerprints = r->live != NULL,
    };
    fb_archive_writer *w = NULL;
    rc = fb_archive_writer_new(r->archive_fd, &wo, &w, r->err);
    if (rc < 0)
        return rc;
    fb_backup_progress(r, "write", 0, r->file_bytes);
    rc = write_entries(r, w);
    /* The scan is not needed once the entries are stored: freed before the
     * manifest is written and read back, the run's largest allocations. */
    fb_scan_result_fini(&r->scan);
    fb_scan_result_init(&r->scan);
    fb_archive_summary sum;
    memset(&sum, 0, sizeof sum);
    if (rc >= 0)
        rc = fb_archive_writer_finish(w, &sum, r->err);
    fb_archive_writer_free(w);
    if (rc == FB_EINTERRUPTED)
        return fb_backup_check_cancel(r);
    if (rc < 0)
        return rc;
    /* Never retried: after a failed fsync the page cache may already have
     * dropped the dirty pages (fsyncgate), so the backup just fails. */
    if (fsync(r->archive_fd) != 0)
        return fb_error_set_errno(r->err, errno, "%s/%s/%s: fsync", r->sess_name, r->tmpname,
                                  FB_ARCHIVE_NAME);
    int cr = close(r->archive_fd);
    r->archive_fd = -1;
    if (cr != 0)
        return fb_error_set_errno(r->err, errno, "%s/%s/%s: close", r->sess_name, r->tmpname,
                                  FB_ARCHIVE_NAME);

    if (r->live && (rc = fb_backup_end_live_check(r, &sum)) < 0)
        return rc;
    r->archive_size = sum.compressed_size;
    if ((rc = fill_manifest(r, &sum)) < 0)
        return rc;
    if ((rc = write_manifest(r)) < 0)
        return rc;
    char tmp_label[PATH_MAX];
    snprintf(tmp_label, sizeof tmp_label, "%s/%s", r->sess_name, r->tmpname);
    return fb_fsync_dir(r->tmp_fd, tmp_label, r->err);
}

/* Takes a just-published backup dir back out of view after a later step
 * failed. Best effort: if this fails too the dir stays, and the next index
 * load finds and indexes it (it is complete and validated). */
static void unpublish(backup_run *r)
{
    if (renameat2(r->session_fd, r->id, r->session_fd, r->tmpname, RENAME_NOREPLACE) != 0)
        return;
    r->tmp_made = true;
    if (fsync(r->session_fd) != 0)
        return;
}

/* Does the index.json now on disk list backup id? One that cannot be read
 * or parsed lists nothing (readers rebuild it from the dirs on disk). */
static bool index_on_disk_lists(backup_run *r, const char *id)
{
    char *json = NULL;
    size_t len = 0;
    if (fb_read_file_at(r->session_fd, r->sess_name, FB_INDEX_NAME, FB_MANIFEST_SIZE_MAX, &json,
                        &len, NULL) != 0)
        return false;
    fb_index idx;
    fb_index_init(&idx, r->req->session_id);
    bool listed = fb_index_parse(json, len, FB_INDEX_NAME, &idx, NULL) == 0 &&
                  fb_index_find(&idx, id) >= 0;
    fb_index_fini(&idx);
    free(json);
    return listed;
}

static int publish(backup_run *r)
{
    fb_backup_progress(r, "publish", r->file_bytes, r->file_bytes);
    /* The temp dir's fd is closed first: nothing may write into the backup
     * once it has its final name. */
    close(r->tmp_fd);
    r->tmp_fd = -1;
    /* We hold the lock: no other writer creates r->id meanwhile. */
    int e = fb_rename_noreplace_at(r->session_fd, r->tmpname, r->id);
    if (e)
        return fb_error_set_errno(r->err, e, "%s: cannot publish %s as %s", r->sess_name,
                                  r->tmpname, r->id);
    r->tmp_made = false;
    int rc = fb_fsync_dir(r->session_fd, r->sess_name, r->err);
    if (rc < 0) {
        unpublish(r);
        return rc;
    }
    rc = fb_index_add_from_manifest(&r->idx, &r->m, r->err);
    if (rc < 0) {
        fb_error_prefix(r->err, "%s: backup %s not recorded in the index", r->sess_name, r->id);
        unpublish(r);
        return rc;
    }
    rc = fb_store_save_index(r->session_fd, r->req->session_id, &r->idx, r->err);
    if (rc < 0) {
        fb_error_prefix(r->err, "%s: backup %s not recorded in the index", r->sess_name, r->id);
        /* The save can fail after its rename (the dir fsync), with the new
         * index already in place. Put the previous index back before taking
         * the backup out of view, so the index never names a missing backup;
         * if even that fails, the backup (complete and validated) stays. */
        fb_error undo_err;
        fb_error_clear(&undo_err);
        if (fb_index_remove(&r->idx, r->id, &undo_err) == 0 &&
            (!index_on_disk_lists(r, r->id) ||
             fb_store_save_index(r->session_fd, r->req->session_id, &r->idx, &undo_err) == 0))
            unpublish(r);
        else
            fb_warnf(r->req->warn, r->req->warn_ctx,
                     "%s: backup %s left published: restoring the previous index failed: %s",
                     r->sess_name, r->id, undo_err.message);
        return rc;
    }
    return 0;
}

static void apply_retention(backup_run *r)
{
    const fb_backup_request *req = r->req;
    fb_error *rerr = &r->out->retention_error;
    fb_retention_decision *plan = NULL;
    size_t n = 0;
    int rc = fb_retention_plan(&r->idx, &req->config->retention, req->now, &plan, &n, rerr);
    if (rc >= 0)
        rc = fb_retention_apply(r->session_fd, req->session_id, &r->idx, plan, n, rerr);
    if (rc < 0) {
        fb_warnf(req->warn, req->warn_ctx, "retention failed (backup %s is kept): %s", r->id,
                 rerr->message);
        free(plan);
        return;
    }
    r->out->retention = plan;
    r->out->n_retention = n;
}

static int pick_backup_id(backup_run *r)
{
    for (int tries = 0; tries < 64; tries++) {
        int rc = fb_backup_id_generate(r->req->now, r->req->type, r->id, r->err);
        if (rc < 0)
            return rc;
        struct stat st;
        if (fstatat(r->session_fd, r->id, &st, AT_SYMLINK_NOFOLLOW) != 0 && errno == ENOENT &&
            fb_index_find(&r->idx, r->id) < 0)
            return 0;
    }
    return fb_error_set(r->err, FB_EEXIST, "%s: could not find an unused backup id",
                        r->sess_name);
}

static int open_source(backup_run *r)
{
    int rc = fb_store_open_source(r->store, r->req->session_id, &r->source_fd, r->err);
    if (rc == FB_ENOTFOUND)
        fb_error_set(r->err, FB_ENOTFOUND, "session %s not found: no directory %s",
                     r->req->session_id, r->src_name);
    return rc;
}

static int run_steps(backup_run *r)
{
    const fb_backup_request *req = r->req;
    int rc;
    if ((rc = open_source(r)) < 0)
        return rc;
    if ((rc = fb_store_open_session(r->store, req->session_id, true, &r->session_fd, r->err)) < 0)
        return rc;
    if ((rc = fb_lock_acquire(r->session_fd, req->session_id, req->lock_wait_seconds,
                              req->lock_waiting, req->lock_waiting_ctx, &r->lock, r->err)) < 0)
        return fb_cancelled(req->cancel) ? fb_backup_check_cancel(r) : rc;
    /* A leftover that cannot be removed does not make this backup unsafe
     * (temp names are random), so it is reported and the backup goes on. */
    fb_error sub;
    fb_error_clear(&sub);
    if (fb_store_clear_leftovers(r->store, r->session_fd, req->session_id, req->warn,
                                 req->warn_ctx, &sub) < 0)
        fb_warnf(req->warn, req->warn_ctx, "could not clear leftovers: %s", sub.message);
    if ((rc = fb_store_load_index(r->store, req->session_id, FB_INDEX_LOAD_LOCKED, &r->idx,
                                  &r->out->index_rebuilt, req->warn, req->warn_ctx, r->err)) < 0 ||
        (rc = fb_backup_check_cancel(r)) < 0)
        return rc;
    r->m.seq = fb_index_next_seq(&r->idx);
    if (req->type == FB_BACKUP_INCREMENTAL) {
        const fb_index_record *full = fb_index_newest_full(&r->idx);
        if (full)
            memcpy(r->m.base, full->id, sizeof r->m.base);
    }
    if ((rc = pick_backup_id(r)) < 0)
        return rc;
    snprintf(r->label, sizeof r->label, "%s/%s", req->session_id, r->id);
    if ((rc = fb_make_temp_dir_at(r->session_fd, r->sess_name, FB_WORK_PREFIX, r->tmpname,
                                  sizeof r->tmpname, &r->tmp_fd, r->err)) < 0)
        return rc;
    r->tmp_made = true;
    if ((rc = build(r)) < 0 || (rc = fb_backup_check_cancel(r)) < 0)
        return rc;
    if (req->verify) {
        if ((rc = fb_backup_validate(r)) < 0)
            return rc == FB_EINTERRUPTED ? fb_backup_check_cancel(r) : rc;
        r->out->verified = true;
    }
    /* The last look before the rename; from the rename on, a stop request
     * waits for the index update, which makes the backup whole. */
    if ((rc = fb_backup_check_cancel(r)) < 0 || (rc = publish(r)) < 0)
        return rc;
    if (fb_cancelled(req->cancel))
        r->out->interrupted = true;
    else if (req->cleanup)
        apply_retention(r);
    return 0;
}

int fb_backup_run(fb_store *store, const fb_backup_request *req, fb_backup_result *out,
                  fb_error *err)
{
    double t0 = fb_monotonic_seconds();
    if (!store || !req || !out || !req->config)
        return fb_error_set(err, FB_EMISUSE, "fb_backup_run: missing argument");
    int rc = fb_session_id_check(req->session_id, err);
    if (rc < 0)
        return rc;

    backup_run *r = calloc(1, sizeof *r);
    if (!r)
        return fb_error_set(err, FB_ENOMEM, "out of memory");
    r->store = store;
    r->req = req;
    r->out = out;
    r->err = err;
    r->session_fd = r->source_fd = r->tmp_fd = r->archive_fd = r->archive_rfd = -1;
    r->lock.fd = -1;
    fb_index_init(&r->idx, req->session_id);
    fb_scan_result_init(&r->scan);
    fb_manifest_init(&r->m);
    r->sess_name = fb_path_join(fb_store_backups_path(store), req->session_id);
    char *sessions = fb_path_join(fb_store_root(store), FB_SESSIONS_PATH);
    r->src_name = sessions ? fb_path_join(sessions, req->session_id) : NULL;
    free(sessions);

    if (!r->sess_name || !r->src_name)
        rc = fb_error_set(err, FB_ENOMEM, "out of memory");
    else
        rc = run_steps(r);

    /* Stopped before the manifest it reads is freed. */
    fb_live_check_free(r->live);
    free(r->fingerprints);
    if (r->archive_rfd >= 0)
        close(r->archive_rfd);
    if (r->archive_fd >= 0)
        close(r->archive_fd);
    if (r->tmp_fd >= 0)
        close(r->tmp_fd);
    if (r->tmp_made) {
        /* Nothing of a failed run may stay; if even this fails the next
         * locked run clears the .tmp-* leftover. */
        if (fb_remove_tree_at(r->session_fd, r->sess_name, r->tmpname, NULL) == 0)
            fsync(r->session_fd);
    }
    if (rc >= 0) {
        fb_manifest_fini(&out->manifest);
        out->manifest = r->m;
        fb_manifest_init(&r->m);
    }
    fb_lock_release(&r->lock);
    if (r->session_fd >= 0)
        close(r->session_fd);
    if (r->source_fd >= 0)
        close(r->source_fd);
    fb_manifest_fini(&r->m);
    fb_scan_result_fini(&r->scan);
    fb_index_fini(&r->idx);
    free(r->sess_name);
    free(r->src_name);
    free(r);
    out->seconds = fb_monotonic_seconds() - t0;
    return rc < 0 ? rc : 0;
}
