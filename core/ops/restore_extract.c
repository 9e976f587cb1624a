/* The extraction of a restore: the archive is read once, every tar header
 * is checked against the next manifest entry, and what archive_write_disk
 * gets is built from the manifest entry alone, written into the staging
 * dir. The child reports its verdict over a pipe and ends with its
 * caller's process.
 *
 * Why a child process: libarchive's archive_write_disk resolves entry paths
 * against the current directory, and its SECURE_* checks (no "..", no
 * absolute path, no component that is a symlink) are only meaningful for
 * relative paths - an absolute "<staging>/<path>" is refused by
 * SECURE_NOABSOLUTEPATHS and would make SECURE_SYMLINKS trip over any
 * symlink in the staging dir's own ancestry. Changing the working directory
 * of the caller's process would break every relative path it holds and any
 * other thread. So the extraction runs in a forked child that fchdir()s into
 * the staging dir; a crash on hostile input there cannot take the caller
 * down either, and the parent removes the staging dir whatever happened. */
#include "restore_i.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fb_fsutil.h"
#include "fb_hash.h"
#include "fb_text.h"
#include "clock_i.h"
#include "tar_check_i.h"

/* Progress crosses the report pipe as 8-byte counts of file bytes written,
 * ahead of the report, which this value announces; at most one count per
 * PROGRESS_INTERVAL_SECONDS keeps the pipe from ever filling up. */
#define PROGRESS_REPORT_FOLLOWS UINT64_MAX
#define PROGRESS_INTERVAL_SECONDS 0.05
/* How often the parent looks at the request's cancel flag while it waits. */
#define CANCEL_POLL_MS 100

typedef struct xreport {
    int rc;
    fb_error err;
    uint64_t entries, files, bytes;
} xreport;

typedef struct xctx {
    const run *r;
    const fb_manifest *m;
    const char *name;
    fb_error *err;
    fb_tar_source src;
    xreport *rep;
    int progress_fd;      /* -1 when nobody listens */
    uint64_t written;     /* file bytes written so far */
    double last_progress;
} xctx;

/* Errors are ignored: the count is a courtesy, the report is the verdict. */
static void x_progress(xctx *x, bool force)
{
    if (x->progress_fd < 0)
        return;
    double now = fb_monotonic_seconds();
    if (!force && now - x->last_progress < PROGRESS_INTERVAL_SECONDS)
        return;
    x->last_progress = now;
    uint64_t v = x->written;
    (void)fb_write_all(x->progress_fd, &v, sizeof v);
}

/* libarchive reports its own refusals (a "..", an absolute path, a symlink
 * in the way) without a positive errno; those mean a hostile or broken
 * backup. A real errno is a failure of the disk we write to. */
static int x_write_failure(xctx *x, struct archive *w, const char *path)
{
    char esc[600];
    fb_path_escape(path, esc, sizeof esc);
    int e = archive_errno(w);
    const char *msg = archive_error_string(w);
    if (e > 0)
        return fb_error_set_errno(x->err, e, "%s: cannot restore %s: %s", x->name, esc,
                                  msg ? msg : "write failed");
    return fb_error_set(x->err, FB_ECORRUPT, "%s: %s: refused: %s", x->name, esc,
                        msg ? msg : "unsafe entry");
}

/* What archive_write_disk gets: built from the manifest entry only. */
static struct archive_entry *x_disk_entry(xctx *x, const fb_manifest_entry *e)
{
    struct archive_entry *oe = archive_entry_new();
    if (!oe)
        return NULL;
    archive_entry_copy_pathname(oe, e->path);
    uint32_t perm = restore_mode(e->meta.mode);
    switch (e->meta.type) {
    case FB_ENTRY_FILE:
        archive_entry_set_filetype(oe, AE_IFREG);
        archive_entry_set_size(oe, (la_int64_t)e->meta.size);
        break;
    case FB_ENTRY_DIR:
        archive_entry_set_filetype(oe, AE_IFDIR);
        /* Merged directories (--only) get their stored mode and mtime in
         * the session dir, those of a tree of several backups once all
         * are extracted (a later backup's directory may already exist,
         * made by an earlier one for a file in it, and libarchive sets an
         * existing directory's attributes at once, not at its close):
         * meanwhile they stay 0700, so that files can be written into them
         * and moved out of them by any user. */
        if (x->r->merge || x->r->tree->n_sources > 1)
            perm = 0700;
        break;
    case FB_ENTRY_SYMLINK:
        archive_entry_set_filetype(oe, AE_IFLNK);
        archive_entry_copy_symlink(oe, e->target);
        break;
    case FB_ENTRY_HARDLINK:
        archive_entry_set_filetype(oe, AE_IFREG);
        archive_entry_copy_hardlink(oe, e->target);
        archive_entry_set_size(oe, 0);
        break;
    }
    archive_entry_set_perm(oe, perm);
    archive_entry_set_mtime(oe, (time_t)e->meta.mtime, (long)e->meta.mtime_nsec);
    archive_entry_set_atime(oe, (time_t)e->meta.mtime, (long)e->meta.mtime_nsec);
    if (x->r->req->same_owner) {
        archive_entry_set_uid(oe, (la_int64_t)e->meta.uid);
        archive_entry_set_gid(oe, (la_int64_t)e->meta.gid);
    }
    return oe;
}

static int x_interrupted(xctx *x)
{
    return fb_error_set(x->err, FB_EINTERRUPTED, "%s: interrupted", x->name);
}

/* Where the data of the current entry goes: the disk writer. */
typedef struct x_sink {
    xctx *x;
    struct archive *w;
    const char *path;
} x_sink;

static int x_write_block(void *ctx, const void *buf, size_t len, fb_error *err)
{
    (void)err; /* x_write_failure fills x->err, which is err */
    x_sink *s = ctx;
    if (fb_cancelled(s->x->r->req->cancel))
        return x_interrupted(s->x);
    la_ssize_t wr = archive_write_data(s->w, buf, len);
    if (wr < 0 || (size_t)wr != len)
        return x_write_failure(s->x, s->w, s->path);
    s->x->written += len;
    x_progress(s->x, false);
    return 0;
}

/* The data of an entry that is only verified: a later backup of the tree
 * replaces it. */
static int x_skip_block(void *ctx, const void *buf, size_t len, fb_error *err)
{
    (void)buf;
    (void)len;
    (void)err;
    xctx *x = ctx;
    return fb_cancelled(x->r->req->cancel) ? x_interrupted(x) : 0;
}

/* Handles the entry whose tar header a has just read, once that header is
 * found to equal manifest entry e: its data is always read and checked
 * against e; it is written as tree entry o (built from o alone), or not at
 * all when o is NULL. o is e itself, or for a hardlink of the tree made a
 * file, the hardlink that takes e's data (fb_as_of.h). */
static int x_write_entry(xctx *x, struct archive *a, struct archive_entry *ae,
                         struct archive *w, const fb_manifest_entry *e,
                         const fb_manifest_entry *o)
{
    int rc = fb_tar_entry_check(ae, e, archive_filter_bytes(a, 0), x->name, x->err);
    if (rc < 0)
        return rc;
    if (fb_cancelled(x->r->req->cancel))
        return x_interrupted(x);
    if (!o)
        return fb_tar_entry_data(&x->src, a, e, x_skip_block, x, x->err);
    struct archive_entry *oe = x_disk_entry(x, o);
    if (!oe)
        return restore_oom(x->err);
    if (archive_write_header(w, oe) != ARCHIVE_OK) {
        archive_entry_free(oe);
        return x_write_failure(x, w, o->path);
    }
    archive_entry_free(oe);
    x_sink sink = {.x = x, .w = w, .path = o->path};
    if ((rc = fb_tar_entry_data(&x->src, a, e, x_write_block, &sink, x->err)) < 0)
        return rc;
    if (archive_write_finish_entry(w) != ARCHIVE_OK)
        return x_write_failure(x, w, o->path);
    x->rep->entries++;
    if (o->meta.type == FB_ENTRY_FILE || o->meta.type == FB_ENTRY_HARDLINK)
        x->rep->files++;
    if (o->meta.type == FB_ENTRY_FILE)
        x->rep->bytes += o->meta.size;
    return 0;
}

static int x_extract(xctx *x)
{
    const fb_manifest *m = x->m;
    struct archive *a = NULL;
    struct archive *w = archive_write_disk_new();
    int rc = 0;
    if (!w) {
        rc = restore_oom(x->err);
        goto out;
    }
    /* SPARSE: runs of zero bytes become holes again (the archive stores a
     * sparse file dense; restored dense, a mostly empty disk image would
     * take its full size). */
    int flags = ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_SECURE_SYMLINKS |
                ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS | ARCHIVE_EXTRACT_TIME |
                ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_SPARSE;
    if (x->r->req->same_owner)
        flags |= ARCHIVE_EXTRACT_OWNER;
    if (archive_write_disk_set_options(w, flags) != ARCHIVE_OK) {
        rc = fb_error_set(x->err, FB_EIO, "%s: libarchive: %s", x->name, archive_error_string(w));
        goto out;
    }
    if ((rc = fb_tar_source_open(&x->src, &a, x->err)) < 0)
        goto out;
    size_t idx = 0;
    for (;;) {
        struct archive_entry *ae;
        int ar = fb_tar_source_next(&x->src, a, &ae, x->err);
        if (ar <= 0) {
            rc = ar;
            break;
        }
        if (idx >= m->n_entries) {
            rc = fb_error_set(x->err, FB_ECORRUPT,
                              "%s: the archive has more entries than the %zu of the manifest",
                              x->name, m->n_entries);
            break;
        }
        long at = x->r->plan[idx];
        if ((rc = x_write_entry(x, a, ae, w, &m->entries[idx],
                                at >= 0 ? &x->r->tree->entries[at].e : NULL)) < 0)
            break;
        idx++;
    }
    if (rc == 0 && idx < m->n_entries)
        rc = fb_error_set(x->err, FB_ECORRUPT, "%s: the archive has %zu entries, the manifest %zu",
                          x->name, idx, m->n_entries);
    /* Directory modes and mtimes are applied here, deepest first, after
     * everything inside them was written. */
    if (rc == 0 && archive_write_close(w) != ARCHIVE_OK)
        rc = x_write_failure(x, w, "(directory modes and times)");
    if (rc < 0)
        goto out;
    /* Whatever follows the tar end is hashed too: the whole file must be
     * the one the manifest describes. */
    rc = fb_tar_source_finish(&x->src, m->archive.sha256, x->err);
out:
    if (w)
        archive_write_free(w);
    if (a)
        archive_read_free(a);
    return rc;
}

/* If the calling process dies, its extraction must not carry on alone.
 * The child holds the read end of a pipe whose write end only the caller
 * holds: when the caller's process ends, however it ends, the read sees the
 * end of the file. (PR_SET_PDEATHSIG would follow the thread that forked,
 * not the process: a library must not tie the child to its caller's
 * thread.) */
static void *lifeline_main(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char c;
    ssize_t n;
    do {
        n = read(fd, &c, 1);
    } while (n < 0 && errno == EINTR);
    _exit(120);
}

/* The child's whole life: into the staging dir, extract, report, exit. */
__attribute__((noreturn)) static void child_main(run *r, int report_fd, int lifeline_fd)
{
    xreport rep;
    memset(&rep, 0, sizeof rep);
    /* The watcher only blocks in read(): a small stack, so that it still
     * starts under a tight address-space limit. */
    pthread_attr_t attr;
    pthread_t watcher;
    int e = pthread_attr_init(&attr);
    if (e == 0) {
        pthread_attr_setstacksize(&attr, 64 * 1024);
        e = pthread_create(&watcher, &attr, lifeline_main, (void *)(intptr_t)lifeline_fd);
        pthread_attr_destroy(&attr);
    }
    if (e != 0) {
        rep.rc = fb_error_set_errno(&rep.err, e, "cannot start the extraction's watcher thread");
        _exit(fb_write_all(report_fd, &rep, sizeof rep) == 0 ? 0 : 121);
    }
    /* Parents libarchive may have to create, and files before their mode
     * is set, are private. */
    umask(077);
    if (fchdir(r->staging_fd) != 0) {
        rep.rc = fb_error_set_errno(&rep.err, errno, "cannot enter the staging directory");
    } else {
        xctx x;
        memset(&x, 0, sizeof x);
        x.r = r;
        x.m = &r->m;
        x.name = r->label;
        x.err = &rep.err;
        x.rep = &rep;
        x.progress_fd = r->req->progress ? report_fd : -1;
        fb_archive_stream *stream = NULL;
        rep.rc = fb_archive_stream_new(r->reader, &stream, &rep.err);
        if (rep.rc == 0) {
            fb_tar_source_init(&x.src, stream, x.name, NULL, NULL);
            rep.rc = x_extract(&x);
        }
        if (rep.rc == 0)
            x_progress(&x, true);
        fb_archive_stream_free(stream);
    }
    if (r->req->progress) {
        uint64_t mark = PROGRESS_REPORT_FOLLOWS;
        if (fb_write_all(report_fd, &mark, sizeof mark) != 0)
            _exit(121);
    }
    _exit(fb_write_all(report_fd, &rep, sizeof rep) == 0 ? 0 : 121);
}

/* Reads exactly len bytes unless the pipe ends first, or the caller asks
 * to stop (polled every CANCEL_POLL_MS: a signal handler installed with
 * SA_RESTART would not interrupt a read, and the signal may not have
 * reached the child); returns the count. */
static size_t read_full(const fb_cancel *cancel, int fd, void *buf, size_t len)
{
    size_t got = 0;
    while (got < len && !fb_cancelled(cancel)) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int pr = poll(&pfd, 1, CANCEL_POLL_MS);
        if (pr == 0 || (pr < 0 && errno == EINTR))
            continue;
        ssize_t n = read(fd, (char *)buf + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    return got;
}

/* The child's report, and before it, when the request wants progress, the
 * counts it sends, passed on as they come: the parent is the one whose
 * caller may be told, in its own thread. Returns the report bytes read. */
static size_t read_report(run *r, int fd, xreport *rep)
{
    const fb_restore_request *req = r->req;
    while (req->progress) {
        uint64_t v;
        if (read_full(req->cancel, fd, &v, sizeof v) != sizeof v)
            return 0;
        if (v == PROGRESS_REPORT_FOLLOWS)
            break;
        uint64_t total = r->tree->totals.bytes, done = r->bytes_before + v;
        req->progress(req->progress_ctx, "extract", done < total ? done : total, total);
    }
    return read_full(req->cancel, fd, rep, sizeof *rep);
}

int fb_restore_extract(run *r)
{
    int p[2], life[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        return fb_error_set_errno(r->err, errno, "cannot create a pipe for the extraction");
    if (pipe2(life, O_CLOEXEC) != 0) {
        int e = errno;
        close(p[0]);
        close(p[1]);
        return fb_error_set_errno(r->err, e, "cannot create a pipe for the extraction");
    }
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(p[0]);
        close(p[1]);
        close(life[0]);
        close(life[1]);
        return fb_error_set_errno(r->err, e, "cannot start the extraction process");
    }
    if (pid == 0) {
        close(p[0]);
        close(life[1]);
        child_main(r, p[1], life[0]);
    }
    close(p[1]);
    close(life[0]);
    xreport rep;
    size_t got = read_report(r, p[0], &rep);
    close(p[0]);
    /* Asked to stop before the child reported (the signal may have reached
     * only this process): its work is thrown away with the staging dir. */
    bool stopped = got != sizeof rep && fb_cancelled(r->req->cancel);
    if (stopped)
        kill(pid, SIGKILL);
    int status = 0;
    pid_t w;
    do {
        w = waitpid(pid, &status, 0);
    } while (w < 0 && errno == EINTR);
    close(life[1]); /* only now: closing it tells the child we are gone */
    /* With SIGCHLD ignored by the caller the child is reaped for us; its
     * complete report is then the verdict. */
    bool exited_ok = (w == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0) ||
                     (w < 0 && errno == ECHILD);
    if (stopped || ((got != sizeof rep || !exited_ok) && fb_cancelled(r->req->cancel)))
        return fb_error_set(r->err, FB_EINTERRUPTED, "%s: interrupted", r->label);
    if (got != sizeof rep || !exited_ok) {
        if (w == pid && WIFSIGNALED(status))
            return fb_error_set(r->err, FB_EIO,
                                "%s: the extraction process was killed by signal %d", r->label,
                                WTERMSIG(status));
        return fb_error_set(r->err, FB_EIO, "%s: the extraction process ended without a result",
                            r->label);
    }
    rep.err.message[sizeof rep.err.message - 1] = '\0';
    if (rep.rc < 0) {
        *r->err = rep.err;
        return rep.rc;
    }
    r->out->entries += rep.entries;
    r->out->files += rep.files;
    r->out->bytes += rep.bytes;
    return 0;
}
