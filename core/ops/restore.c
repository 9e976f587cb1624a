/* Restoring a backup (SPEC `recover`): staged, verified extraction, then an
 * atomic move into place. docs/restore.md explains the order of the steps.
 *
 * Why a child process: libarchive's archive_write_disk resolves entry paths
 * against the current directory, and its SECURE_* checks (no "..", no
 * absolute path, no component that is a symlink) are only meaningful for
 * relative paths - an absolute "<staging>/<path>" is refused by
 * SECURE_NOABSOLUTEPATHS and would make SECURE_SYMLINKS trip over any
 * symlink in the staging dir's own ancestry. Changing the working directory
 * of the caller's process would break every relative path it holds and any
 * other thread. So the extraction runs in a forked child that fchdir()s into
 * the staging dir, hands its verdict back over a pipe and exits; a crash on
 * hostile input there cannot take the caller down either, and the parent
 * removes the staging dir whatever happened. That part is
 * restore_extract.c; this file holds the steps around it.
 *
 * What is written comes from the manifest, not from the tar header: each
 * header must equal the next manifest entry (path, type, size, mode, owner,
 * mtime, link target, data offset) or the backup is corrupt, and the entry
 * handed to archive_write_disk is then built from the manifest entry alone,
 * so pax extras (xattrs, ACLs, file flags, sparse maps) never reach the disk
 * and device nodes, FIFOs and sockets cannot be expressed at all. */
#include "fb_restore.h"

#include <dirent.h>
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
#include <time.h>
#include <unistd.h>

#include "fb_archive_reader.h"
#include "fb_backup.h"
#include "fb_fsutil.h"
#include "fb_hash.h"
#include "fb_index.h"
#include "fb_lock.h"
#include "fb_manifest.h"
#include "fb_text.h"
#include "clock_i.h"
#include "restore_i.h"
#include "tar_check_i.h"

#define STAGING_PREFIX ".restore-"
/* Hex digits fb_make_temp_dir_at appends to a prefix. */
#define STAGING_HEX 16
/* Live trees deeper than this are not walked (fds are held per level). */
#define WALK_DEPTH_MAX 512
/* Rough per-entry allowance in the free-space check (inode, dir entry). */
#define ENTRY_OVERHEAD 512

const char *fb_restore_change_kind_name(fb_restore_change_kind kind)
{
    switch (kind) {
    case FB_RESTORE_ADDED:
        return "added";
    case FB_RESTORE_MODIFIED:
        return "modified";
    case FB_RESTORE_REMOVED:
        return "removed";
    case FB_RESTORE_CHANGED:
        return "changed";
    }
    return "unknown";
}

void fb_restore_result_init(fb_restore_result *r)
{
    memset(r, 0, sizeof *r);
}

static void changes_clear(fb_restore_result *r)
{
    for (size_t i = 0; i < r->n_changes; i++)
        free(r->changes[i].path);
    free(r->changes);
    r->changes = NULL;
    r->n_changes = 0;
    r->n_added = r->n_modified = r->n_removed = r->n_changed = 0;
}

void fb_restore_result_fini(fb_restore_result *r)
{
    if (!r)
        return;
    changes_clear(r);
    free(r->destination);
    r->destination = NULL;
}

/* ---- one run ---- */

static void warn(run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn(run *r, const char *fmt, ...)
{
    if (!r->req->warn)
        return;
    char msg[FB_ERROR_MESSAGE_MAX + 256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    r->req->warn(r->req->warn_ctx, msg);
}

/* ---- the manifest, looked up by path ---- */

/* Index of the entry whose path is exactly p[0..n), or -1. */
static long manifest_lookup(const run *r, const char *p, size_t n)
{
    return fb_manifest_find_path(&r->m, r->by_path, p, n);
}

/* The parser already refuses duplicates, entries below a non-directory and
 * hardlinks to anything but an earlier file. Restore also needs every
 * entry's parent to be an earlier directory entry, so each directory it
 * creates is one whose mode and mtime the backup holds (a backup's walk
 * always lists a directory before what it contains). */
static int check_tree_order(run *r)
{
    size_t n = r->m.n_entries;
    if (!(r->by_path = fb_manifest_sort_by_path(&r->m)))
        return restore_oom(r->err);
    for (size_t i = 0; i < n; i++) {
        const fb_manifest_entry *e = &r->m.entries[i];
        const char *slash = strrchr(e->path, '/');
        if (!slash)
            continue;
        long j = manifest_lookup(r, e->path, (size_t)(slash - e->path));
        if (j < 0 || (size_t)j >= i || r->m.entries[j].meta.type != FB_ENTRY_DIR) {
            char esc[600];
            fb_path_escape(e->path, esc, sizeof esc);
            return fb_error_set(r->err, FB_ECORRUPT,
                                "%s: manifest.json: %s: its parent is not an earlier directory "
                                "entry",
                                r->label, esc);
        }
    }
    return 0;
}

/* For a hardlink, the file entry holding its data; else e itself. */
static const fb_manifest_entry *data_entry(const run *r, const fb_manifest_entry *e)
{
    if (e->meta.type != FB_ENTRY_HARDLINK)
        return e;
    long j = manifest_lookup(r, e->target, strlen(e->target));
    return j >= 0 ? &r->m.entries[j] : e;
}

/* ---- the change list ---- */

static int add_change(run *r, const char *path, fb_restore_change_kind kind)
{
    fb_restore_result *o = r->out;
    if (o->n_changes == r->changes_cap) {
        size_t cap = r->changes_cap ? r->changes_cap * 2 : 16;
        fb_restore_change *nc = realloc(o->changes, cap * sizeof *nc);
        if (!nc)
            return restore_oom(r->err);
        o->changes = nc;
        r->changes_cap = cap;
    }
    char *p = strdup(path);
    if (!p)
        return restore_oom(r->err);
    o->changes[o->n_changes].path = p;
    o->changes[o->n_changes].kind = kind;
    o->n_changes++;
    switch (kind) {
    case FB_RESTORE_ADDED:
        o->n_added++;
        break;
    case FB_RESTORE_MODIFIED:
        o->n_modified++;
        break;
    case FB_RESTORE_REMOVED:
        o->n_removed++;
        break;
    case FB_RESTORE_CHANGED:
        o->n_changed++;
        break;
    }
    return 0;
}

static int cmp_change(const void *a, const void *b)
{
    return strcmp(((const fb_restore_change *)a)->path, ((const fb_restore_change *)b)->path);
}

static int all_added(run *r)
{
    for (size_t i = 0; i < r->m.n_entries; i++) {
        int rc = add_change(r, r->m.entries[i].path, FB_RESTORE_ADDED);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ---- walking a destination without following symlinks ---- */

enum { WALK_OK = 0, WALK_ABSENT = 1, WALK_CONFLICT = 2 };

/* Opens the parent directory of relative path below root_fd one component at
 * a time with O_NOFOLLOW. With create, missing components are made (0700;
 * their stored mode comes later). Returns WALK_OK (*pfd owned), WALK_ABSENT
 * (a component is missing), WALK_CONFLICT (a component is a symlink or not
 * a directory: err holds an FB_EINVAL message), or a negative code. */
static int walk_parent(run *r, int root_fd, const char *root_shown, const char *path, bool create,
                       int *pfd, const char **base)
{
    size_t failed_len;
    int e = fb_open_parent_beneath(root_fd, path, create, pfd, base, &failed_len);
    if (e == 0)
        return WALK_OK;
    if (e == ENOENT)
        return WALK_ABSENT;
    if (e == EINVAL)
        return fb_error_set(r->err, FB_ECORRUPT, "%s: bad path component", r->label);
    char *comp = strndup(path, failed_len);
    char esc[600];
    fb_path_escape(comp ? comp : path, esc, sizeof esc);
    free(comp);
    if (e == ELOOP || e == ENOTDIR) {
        fb_error_set(r->err, FB_EINVAL, "%s: %s is %s; refusing to restore through it",
                     root_shown, esc, e == ELOOP ? "a symlink" : "not a directory");
        return WALK_CONFLICT;
    }
    if (create)
        return fb_error_set_errno(r->err, e, "%s: cannot create the directories of %s",
                                  root_shown, esc);
    return fb_error_set_errno(r->err, e, "%s: cannot open %s", root_shown, esc);
}

/* ---- comparing the backup with a live tree ---- */

/* Does the live regular file at path (whose lstat is st) hold data's bytes?
 * Opened by O_NOFOLLOW walk and checked to still be that inode; anything
 * unreadable or replaced counts as different (with a warning when unreadable). */
static int live_content_equal(run *r, int root_fd, const char *path, const struct stat *st,
                              const fb_manifest_entry *data, bool *equal)
{
    *equal = false;
    int pfd;
    const char *base;
    int rc = walk_parent(r, root_fd, r->dest_shown, path, false, &pfd, &base);
    if (rc < 0)
        return rc;
    if (rc != WALK_OK)
        return 0;
    int fd = openat(pfd, base, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    int e = errno;
    close(pfd);
    char esc[600];
    if (fd < 0) {
        if (e != ENOENT && e != ELOOP && e != ENXIO) {
            fb_path_escape(path, esc, sizeof esc);
            warn(r, "%s/%s: cannot read it to compare (%s); counted as modified", r->dest_shown,
                 esc, strerror(e));
        }
        return 0;
    }
    struct stat now;
    if (fstat(fd, &now) != 0 || !S_ISREG(now.st_mode) || now.st_ino != st->st_ino ||
        now.st_dev != st->st_dev) {
        close(fd);
        return 0;
    }
    fb_sha256 h;
    if ((rc = fb_sha256_init(&h, r->err)) < 0) {
        close(fd);
        return rc;
    }
    uint8_t buf[65536];
    uint64_t total = 0;
    bool failed = false;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fb_path_escape(path, esc, sizeof esc);
            warn(r, "%s/%s: cannot read it to compare (%s); counted as modified", r->dest_shown,
                 esc, strerror(errno));
            failed = true;
            break;
        }
        if (n == 0)
            break;
        total += (uint64_t)n;
        if (total > data->meta.size) {
            failed = true;
            break;
        }
        fb_sha256_update(&h, buf, (size_t)n);
    }
    close(fd);
    uint8_t digest[FB_SHA256_LEN];
    fb_sha256_final(&h, digest);
    fb_sha256_fini(&h);
    *equal = !failed && total == data->meta.size &&
             memcmp(digest, data->sha256, FB_SHA256_LEN) == 0;
    return 0;
}

/* What restoring e over the live entry (lstat st, symlink target
 * live_target) would do: 0 (nothing), 'M' or 'C'. Ownership only counts
 * with same_owner, and modes are compared as they would be restored. */
static int compare_entry(run *r, int root_fd, const fb_manifest_entry *e, const struct stat *st,
                         const char *live_target, int *kind)
{
    *kind = 0;
    mode_t want = e->meta.type == FB_ENTRY_DIR       ? S_IFDIR
                  : e->meta.type == FB_ENTRY_SYMLINK ? S_IFLNK
                                                     : S_IFREG;
    if ((st->st_mode & S_IFMT) != want) {
        *kind = FB_RESTORE_MODIFIED;
        return 0;
    }
    bool same_mtime = (int64_t)st->st_mtim.tv_sec == e->meta.mtime &&
                      (uint32_t)st->st_mtim.tv_nsec == e->meta.mtime_nsec;
    bool meta = !same_mtime;
    if (e->meta.type != FB_ENTRY_SYMLINK && (st->st_mode & 07777) != restore_mode(e->meta.mode))
        meta = true;
    if (r->req->same_owner && (st->st_uid != e->meta.uid || st->st_gid != e->meta.gid))
        meta = true;
    if (e->meta.type == FB_ENTRY_SYMLINK) {
        if (!live_target || strcmp(live_target, e->target) != 0) {
            *kind = FB_RESTORE_MODIFIED;
            return 0;
        }
    } else if (e->meta.type != FB_ENTRY_DIR) {
        const fb_manifest_entry *d = data_entry(r, e);
        if ((uint64_t)st->st_size != d->meta.size) {
            *kind = FB_RESTORE_MODIFIED;
            return 0;
        }
        /* Same size and mtime is taken as same content, as rsync does;
         * otherwise the live bytes decide. */
        if (!same_mtime) {
            bool equal;
            int rc = live_content_equal(r, root_fd, e->path, st, d, &equal);
            if (rc < 0)
                return rc;
            if (!equal) {
                *kind = FB_RESTORE_MODIFIED;
                return 0;
            }
        }
    }
    if (meta)
        *kind = FB_RESTORE_CHANGED;
    return 0;
}

static int read_link_at(int dfd, const char *name, size_t hint, char **out)
{
    size_t cap = hint + 2 < 64 ? 64 : hint + 2;
    for (;;) {
        char *buf = malloc(cap);
        if (!buf)
            return -ENOMEM;
        ssize_t n = readlinkat(dfd, name, buf, cap);
        if (n < 0) {
            int e = errno;
            free(buf);
            return -e;
        }
        if ((size_t)n < cap) {
            buf[n] = '\0';
            *out = buf;
            return 0;
        }
        free(buf);
        if (cap > 16 * FB_PATH_MAX)
            return -ENAMETOOLONG;
        cap *= 2;
    }
}

typedef struct live_entry {
    char *path;
    struct stat st;
    char *target; /* symlinks */
} live_entry;

typedef struct live_list {
    live_entry *v;
    size_t n, cap;
} live_list;

static void live_list_fini(live_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].path);
        free(l->v[i].target);
    }
    free(l->v);
}

static int cmp_live(const void *a, const void *b)
{
    return strcmp(((const live_entry *)a)->path, ((const live_entry *)b)->path);
}

/* Lists every entry below dfd (never following a symlink) into out. */
static int walk_live(run *r, int dfd, const char *prefix, live_list *out, unsigned depth)
{
    char esc[600];
    if (depth > WALK_DEPTH_MAX) {
        fb_path_escape(prefix ? prefix : "", esc, sizeof esc);
        return fb_error_set(r->err, FB_EIO, "%s: %s: directory tree deeper than %d levels",
                            r->dest_shown, esc, WALK_DEPTH_MAX);
    }
    char **names;
    size_t n;
    int rc = fb_list_dir_names_at(dfd, NULL, NULL, &names, &n);
    if (rc == ENOMEM)
        return restore_oom(r->err);
    if (rc) {
        fb_path_escape(prefix ? prefix : ".", esc, sizeof esc);
        return fb_error_set_errno(r->err, rc, "%s: cannot list %s", r->dest_shown, esc);
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        char *path = prefix ? fb_path_join(prefix, names[i]) : strdup(names[i]);
        if (!path) {
            rc = restore_oom(r->err);
            break;
        }
        struct stat st;
        if (fstatat(dfd, names[i], &st, AT_SYMLINK_NOFOLLOW) != 0) {
            int e = errno;
            if (e == ENOENT) {
                free(path);
                continue;
            }
            fb_path_escape(path, esc, sizeof esc);
            free(path);
            rc = fb_error_set_errno(r->err, e, "%s: cannot stat %s", r->dest_shown, esc);
            break;
        }
        char *target = NULL;
        if (S_ISLNK(st.st_mode)) {
            int e = read_link_at(dfd, names[i], (size_t)st.st_size, &target);
            if (e == -ENOMEM) {
                free(path);
                rc = restore_oom(r->err);
                break;
            }
            /* Unreadable or vanished: compared as a symlink with no target. */
        }
        if (out->n == out->cap) {
            size_t ncap = out->cap ? out->cap * 2 : 64;
            live_entry *nv = realloc(out->v, ncap * sizeof *nv);
            if (!nv) {
                free(path);
                free(target);
                rc = restore_oom(r->err);
                break;
            }
            out->v = nv;
            out->cap = ncap;
        }
        out->v[out->n++] = (live_entry){.path = path, .st = st, .target = target};
        if (S_ISDIR(st.st_mode)) {
            int sub = openat(dfd, names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0) {
                int e = errno;
                if (e == ENOENT || e == ENOTDIR || e == ELOOP)
                    continue; /* replaced since the stat */
                fb_path_escape(path, esc, sizeof esc);
                rc = fb_error_set_errno(r->err, e, "%s: cannot open %s", r->dest_shown, esc);
                break;
            }
            rc = walk_live(r, sub, path, out, depth + 1);
            close(sub);
        }
    }
    fb_string_list_free(names, n);
    return rc;
}

/* Full backup over an existing tree: added, modified, changed, removed. */
static int changes_full(run *r, int root_fd)
{
    live_list live = {0};
    int rc = walk_live(r, root_fd, NULL, &live, 0);
    if (rc < 0) {
        live_list_fini(&live);
        return rc;
    }
    if (live.n > 1)
        qsort(live.v, live.n, sizeof *live.v, cmp_live);
    size_t i = 0, j = 0, n = r->m.n_entries;
    while (rc == 0 && (i < n || j < live.n)) {
        const fb_manifest_entry *e = i < n ? &r->m.entries[r->by_path[i]] : NULL;
        const live_entry *l = j < live.n ? &live.v[j] : NULL;
        int c = !e ? 1 : !l ? -1 : strcmp(e->path, l->path);
        if (c < 0) {
            rc = add_change(r, e->path, FB_RESTORE_ADDED);
            i++;
        } else if (c > 0) {
            rc = add_change(r, l->path, FB_RESTORE_REMOVED);
            j++;
        } else {
            int kind;
            rc = compare_entry(r, root_fd, e, &l->st, l->target, &kind);
            if (rc == 0 && kind)
                rc = add_change(r, e->path, (fb_restore_change_kind)kind);
            i++;
            j++;
        }
    }
    live_list_fini(&live);
    return rc;
}

/* Incremental over an existing tree: what happens to each of its entries.
 * This is also the check that nothing would be written through a symlink or
 * replace a directory, run before anything is moved. */
static int changes_incremental(run *r, int root_fd)
{
    for (size_t i = 0; i < r->m.n_entries; i++) {
        const fb_manifest_entry *e = &r->m.entries[i];
        int pfd;
        const char *base;
        int rc = walk_parent(r, root_fd, r->dest_shown, e->path, false, &pfd, &base);
        if (rc < 0)
            return rc;
        if (rc == WALK_CONFLICT)
            return FB_EINVAL;
        if (rc == WALK_ABSENT) {
            if ((rc = add_change(r, e->path, FB_RESTORE_ADDED)) < 0)
                return rc;
            continue;
        }
        struct stat st;
        char *target = NULL;
        char esc[600];
        if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            int e2 = errno;
            close(pfd);
            if (e2 != ENOENT) {
                fb_path_escape(e->path, esc, sizeof esc);
                return fb_error_set_errno(r->err, e2, "%s: cannot stat %s", r->dest_shown, esc);
            }
            if ((rc = add_change(r, e->path, FB_RESTORE_ADDED)) < 0)
                return rc;
            continue;
        }
        if (S_ISLNK(st.st_mode) &&
            read_link_at(pfd, base, (size_t)st.st_size, &target) == -ENOMEM) {
            close(pfd);
            return restore_oom(r->err);
        }
        close(pfd);
        bool want_dir = e->meta.type == FB_ENTRY_DIR;
        if (want_dir != (bool)S_ISDIR(st.st_mode)) {
            free(target);
            fb_path_escape(e->path, esc, sizeof esc);
            if (want_dir)
                return fb_error_set(r->err, FB_EINVAL,
                                    "%s: %s is %s, the backup has a directory there; refusing "
                                    "to restore through it",
                                    r->dest_shown, esc,
                                    S_ISLNK(st.st_mode) ? "a symlink" : "not a directory");
            return fb_error_set(r->err, FB_EINVAL,
                                "%s: %s is a directory, the backup has a %s there; an "
                                "incremental restore does not replace directories",
                                r->dest_shown, esc, fb_entry_type_name(e->meta.type));
        }
        int kind;
        rc = compare_entry(r, root_fd, e, &st, target, &kind);
        free(target);
        if (rc < 0)
            return rc;
        if (kind && (rc = add_change(r, e->path, (fb_restore_change_kind)kind)) < 0)
            return rc;
    }
    return 0;
}

/* Fills out->changes for the destination as it is now. */
static int compute_changes(run *r)
{
    changes_clear(r->out);
    r->changes_cap = 0;
    int root_fd = -1;
    if (r->into_session && r->parent_fd >= 0) {
        root_fd = openat(r->parent_fd, r->dest_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
                                                          O_CLOEXEC);
        if (root_fd < 0 && errno != ENOENT)
            return fb_error_set_errno(r->err, errno, "cannot open %s", r->dest_shown);
    }
    int rc;
    if (root_fd < 0)
        rc = all_added(r);
    else if (r->m.type == FB_BACKUP_FULL)
        rc = changes_full(r, root_fd);
    else
        rc = changes_incremental(r, root_fd);
    if (root_fd >= 0)
        close(root_fd);
    if (rc < 0)
        return rc;
    if (r->out->n_changes > 1)
        qsort(r->out->changes, r->out->n_changes, sizeof *r->out->changes, cmp_change);
    return 0;
}

/* ---- steps ---- */

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
        rc = fb_store_resolve_backup(&idx, req->backup ? req->backup : "latest",
                                     r->out->backup_id, r->err);
    fb_index_fini(&idx);
    if (rc < 0)
        return rc;
    snprintf(r->label, sizeof r->label, "%s/%s", req->session_id, r->out->backup_id);
    rc = fb_store_read_manifest(r->store_session_fd, req->session_id, r->out->backup_id, &r->m,
                                r->err);
    if (rc < 0)
        return rc;
    r->out->type = r->m.type;
    return check_tree_order(r);
}

/* Opens the archive and checks what can be checked before reading it: its
 * size, seek table and frame count against the manifest. */
static int open_archive(run *r)
{
    int fd;
    int rc = fb_store_open_archive(r->store_session_fd, r->out->backup_id, &fd, r->err);
    if (rc == FB_ENOTFOUND)
        return fb_error_set(r->err, FB_ECORRUPT, "%s: archive.tar.zst is missing", r->label);
    if (rc < 0)
        return rc;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return fb_error_set_errno(r->err, e, "%s: " FB_ARCHIVE_NAME, r->label);
    }
    if ((uint64_t)st.st_size != r->m.archive.size) {
        close(fd);
        return fb_error_set(r->err, FB_ECORRUPT,
                            "%s: archive.tar.zst: size is %lld bytes, the manifest says %llu",
                            r->label, (long long)st.st_size,
                            (unsigned long long)r->m.archive.size);
    }
    char name[sizeof r->label + 32];
    snprintf(name, sizeof name, "%s: " FB_ARCHIVE_NAME, r->label);
    rc = fb_archive_reader_open(fd, NULL, name, &r->reader, r->err);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fb_tar_frames_check(fb_archive_reader_seek_table(r->reader), &r->m, r->label, r->err);
}

static bool dir_is_empty(int fd, int *err_out)
{
    *err_out = 0;
    int lfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = lfd >= 0 ? fdopendir(lfd) : NULL;
    if (!d) {
        *err_out = errno;
        if (lfd >= 0)
            close(lfd);
        return false;
    }
    bool empty = true;
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
            empty = false;
            break;
        }
    }
    if (empty && errno)
        *err_out = errno;
    closedir(d);
    return empty;
}

/* The destination as it is now: *exists, and its stat. Refuses a symlink,
 * a non-directory, and (for --target) a non-empty directory. */
static int check_destination(run *r, bool *exists, struct stat *st)
{
    *exists = false;
    if (r->parent_fd < 0)
        return 0;
    if (fstatat(r->parent_fd, r->dest_name, st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT)
            return 0;
        return fb_error_set_errno(r->err, errno, "cannot stat %s", r->dest_shown);
    }
    const char *what = r->into_session ? "session directory" : "target";
    if (S_ISLNK(st->st_mode))
        return fb_error_set(r->err, FB_EINVAL, "%s %s is a symlink; refusing to restore through it",
                            what, r->dest_shown);
    if (!S_ISDIR(st->st_mode))
        return fb_error_set(r->err, FB_EINVAL, "%s %s exists and is not a directory", what,
                            r->dest_shown);
    *exists = true;
    if (r->into_session)
        return 0;
    int fd = openat(r->parent_fd, r->dest_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ELOOP || errno == ENOTDIR)
            return fb_error_set(r->err, FB_EINVAL, "target %s is a symlink or not a directory",
                                r->dest_shown);
        return fb_error_set_errno(r->err, errno, "cannot open target %s", r->dest_shown);
    }
    int e;
    bool empty = dir_is_empty(fd, &e);
    close(fd);
    if (e)
        return fb_error_set_errno(r->err, e, "cannot list target %s", r->dest_shown);
    if (!empty)
        return fb_error_set(r->err, FB_EINVAL, "target %s is not empty", r->dest_shown);
    return 0;
}

/* Finds the directory that holds the destination (and will hold the
 * staging dir) and the destination's name in it. */
static int setup_destination(run *r)
{
    const fb_restore_request *req = r->req;
    if (r->into_session) {
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
    } else {
        /* DIR's own name is never followed; the path leading to it is the
         * caller's choice and resolved normally. */
        size_t len = strlen(req->target_dir);
        while (len > 1 && req->target_dir[len - 1] == '/')
            len--;
        char *t = strndup(req->target_dir, len);
        if (!t)
            return restore_oom(r->err);
        char *slash = strrchr(t, '/');
        const char *base = slash ? slash + 1 : t;
        if (!*base || !strcmp(base, ".") || !strcmp(base, "..") || len == 0) {
            free(t);
            return fb_error_set(r->err, FB_EINVAL,
                                "target '%s' must name a directory (not '.', '..' or '/')",
                                req->target_dir);
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
    }
    r->out->destination = strdup(r->dest_shown);
    if (!r->out->destination)
        return restore_oom(r->err);
    bool exists;
    struct stat st;
    return check_destination(r, &exists, &st);
}

static int make_staging(run *r)
{
    char prefix[NAME_MAX + 1];
    if (r->into_session)
        snprintf(prefix, sizeof prefix, "%s%s-", STAGING_PREFIX, r->req->session_id);
    else
        snprintf(prefix, sizeof prefix, "%s", STAGING_PREFIX);
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
    /* Refuse early rather than fill the disk: writes are capped at the
     * manifest's sizes, so this bounds what the extraction can use. */
    struct statvfs vs;
    if (fstatvfs(r->staging_fd, &vs) == 0 && vs.f_frsize > 0) {
        uint64_t blocks = geteuid() == 0 ? vs.f_bfree : vs.f_bavail;
        uint64_t avail, need, overhead;
        if (__builtin_mul_overflow(blocks, (uint64_t)vs.f_frsize, &avail))
            avail = UINT64_MAX;
        if (__builtin_mul_overflow((uint64_t)r->m.n_entries, (uint64_t)ENTRY_OVERHEAD,
                                   &overhead) ||
            __builtin_add_overflow(r->m.totals.bytes, overhead, &need))
            need = UINT64_MAX;
        if (need > avail)
            return fb_error_set_errno(r->err, ENOSPC,
                                      "%s: restoring %s needs about %llu bytes, %llu are free",
                                      r->parent_shown, r->label, (unsigned long long)need,
                                      (unsigned long long)avail);
        if (vs.f_files > 0 && vs.f_favail < r->m.n_entries)
            return fb_error_set_errno(r->err, ENOSPC,
                                      "%s: restoring %s needs %zu inodes, %llu are free",
                                      r->parent_shown, r->label, r->m.n_entries,
                                      (unsigned long long)vs.f_favail);
    }
    return 0;
}

static bool is_staging_name_of(const char *name, const char *sid)
{
    size_t pl = strlen(STAGING_PREFIX), sl = strlen(sid);
    if (strncmp(name, STAGING_PREFIX, pl) != 0 || strncmp(name + pl, sid, sl) != 0 ||
        name[pl + sl] != '-')
        return false;
    const char *hex = name + pl + sl + 1;
    if (strlen(hex) != STAGING_HEX)
        return false;
    for (const char *p = hex; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

/* Removes .restore-<sid>-* left by interrupted restores of this session
 * (called with the session lock held). One still locked by a running
 * restore is left alone. */
/* A staging dir of this session other than the one of this run. */
static bool is_leftover(int dirfd, const char *name, void *ctx)
{
    (void)dirfd;
    const run *r = ctx;
    return is_staging_name_of(name, r->req->session_id) &&
           !(r->staging_made && !strcmp(name, r->staging));
}

static void clear_leftovers(run *r)
{
    char **names;
    size_t n;
    int rc = fb_list_dir_names_at(r->parent_fd, is_leftover, r, &names, &n);
    if (rc) {
        warn(r, "cannot list %s for leftovers of interrupted restores: %s", r->parent_shown,
             strerror(rc));
        return;
    }
    bool removed = false;
    for (size_t i = 0; i < n; i++) {
        int fd = openat(r->parent_fd, names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) != 0) {
            close(fd);
            continue;
        }
        fb_error sub;
        fb_error_clear(&sub);
        if (fb_remove_tree_at(r->parent_fd, r->parent_shown, names[i], &sub) == 0) {
            removed = true;
            r->out->leftovers_removed++;
            warn(r, "removed %s/%s left by an interrupted restore", r->parent_shown, names[i]);
        } else {
            warn(r, "could not remove a leftover of an interrupted restore: %s", sub.message);
        }
        if (fd >= 0)
            close(fd);
    }
    fb_string_list_free(names, n);
    if (removed)
        fsync(r->parent_fd);
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
    b.verify = true;
    /* Retention could remove the very backup being restored. */
    b.cleanup = false;
    b.warn = req->warn;
    b.warn_ctx = req->warn_ctx;
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

/* The whole file system of the staging dir: every staged file and dir is
 * durable before it is given its final name. One call instead of walking a
 * tree whose directories may already carry their restrictive stored modes. */
static int sync_fs(run *r, int fd, const char *what)
{
    if (syncfs(fd) != 0)
        return fb_error_set_errno(r->err, errno, "cannot sync %s", what);
    return 0;
}

/* Gives the staging root the mode (and, where allowed, the owner) of the
 * directory it replaces: that directory itself is not part of the backup. */
static void adopt_root_attributes(run *r, const struct stat *old)
{
    (void)fchmod(r->staging_fd, old->st_mode & 07777);
    if (old->st_uid != geteuid() || old->st_gid != getegid())
        (void)fchown(r->staging_fd, old->st_uid, old->st_gid);
}

static int rename_noreplace(int fd, const char *from, const char *to)
{
    if (renameat2(fd, from, fd, to, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return -1;
    struct stat st;
    if (fstatat(fd, to, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        errno = EEXIST;
        return -1;
    }
    return renameat(fd, from, fd, to);
}

static void remove_old_tree(run *r)
{
    fb_error sub;
    fb_error_clear(&sub);
    if (fb_remove_tree_at(r->parent_fd, r->parent_shown, r->staging, &sub) == 0) {
        r->staging_made = false;
        fsync(r->parent_fd);
    } else {
        /* The restore is done; the next one of this session clears it. */
        warn(r, "the previous tree could not be removed (left as %s/%s): %s", r->parent_shown,
             r->staging, sub.message);
        r->staging_made = false;
    }
}

/* Full backup into the session dir: swap, then delete the old tree. */
static int move_full(run *r)
{
    bool exists;
    struct stat old;
    int rc = check_destination(r, &exists, &old);
    if (rc < 0)
        return rc;
    if (!exists) {
        if (rename_noreplace(r->parent_fd, r->staging, r->dest_name) != 0)
            return fb_error_set_errno(r->err, errno, "cannot move the restored tree to %s",
                                      r->dest_shown);
        r->staging_made = false;
        return fb_fsync_dir(r->parent_fd, r->parent_shown, r->err);
    }
    adopt_root_attributes(r, &old);
    if (renameat2(r->parent_fd, r->staging, r->parent_fd, r->dest_name, RENAME_EXCHANGE) != 0) {
        int e = errno;
        if (e != EINVAL && e != ENOSYS)
            return fb_error_set_errno(r->err, e, "cannot swap the restored tree with %s",
                                      r->dest_shown);
        /* No RENAME_EXCHANGE here: move the old tree aside under another
         * staging name first. A crash in between leaves no session dir but
         * the old tree under that name (and the safety backup). */
        char aside[NAME_MAX + 1];
        uint8_t raw[STAGING_HEX / 2];
        char hex[STAGING_HEX + 1];
        if ((rc = fb_random_bytes(raw, sizeof raw, r->err)) < 0)
            return rc;
        fb_hex_encode(raw, sizeof raw, hex);
        snprintf(aside, sizeof aside, "%s%s-%s", STAGING_PREFIX, r->req->session_id, hex);
        if (rename_noreplace(r->parent_fd, r->dest_name, aside) != 0)
            return fb_error_set_errno(r->err, errno, "cannot move %s aside", r->dest_shown);
        if (rename_noreplace(r->parent_fd, r->staging, r->dest_name) != 0) {
            e = errno;
            if (renameat(r->parent_fd, aside, r->parent_fd, r->dest_name) != 0)
                warn(r, "%s could not be put back; it is at %s/%s", r->dest_shown,
                     r->parent_shown, aside);
            return fb_error_set_errno(r->err, e, "cannot move the restored tree to %s",
                                      r->dest_shown);
        }
        memcpy(r->staging, aside, sizeof r->staging);
    }
    /* From here the staging name holds the old tree. */
    rc = fb_fsync_dir(r->parent_fd, r->parent_shown, r->err);
    remove_old_tree(r);
    return rc;
}

/* --target DIR: DIR is absent or an empty directory (checked again now). */
static int move_target(run *r)
{
    bool exists;
    struct stat old;
    int rc = check_destination(r, &exists, &old);
    if (rc < 0)
        return rc;
    if (exists) {
        adopt_root_attributes(r, &old);
        /* rmdir refuses a directory that is no longer empty and a symlink. */
        if (unlinkat(r->parent_fd, r->dest_name, AT_REMOVEDIR) != 0) {
            int e = errno;
            if (e == ENOTEMPTY || e == EEXIST)
                return fb_error_set(r->err, FB_EINVAL, "target %s is not empty", r->dest_shown);
            if (e == ENOTDIR)
                return fb_error_set(r->err, FB_EINVAL, "target %s is not a directory",
                                    r->dest_shown);
            return fb_error_set_errno(r->err, e, "cannot replace target %s", r->dest_shown);
        }
    }
    if (rename_noreplace(r->parent_fd, r->staging, r->dest_name) != 0) {
        int e = errno;
        if (e == EEXIST || e == ENOTEMPTY)
            return fb_error_set(r->err, FB_EINVAL, "target %s appeared while restoring",
                                r->dest_shown);
        return fb_error_set_errno(r->err, e, "cannot move the restored tree to %s",
                                  r->dest_shown);
    }
    r->staging_made = false;
    return fb_fsync_dir(r->parent_fd, r->parent_shown, r->err);
}

static size_t path_depth(const char *p)
{
    size_t d = 0;
    for (; *p; p++)
        d += *p == '/';
    return d;
}

static int cmp_depth_desc(const void *a, const void *b, void *ctx)
{
    const fb_manifest_entry *e = ctx;
    size_t da = path_depth(e[*(const size_t *)a].path), db = path_depth(e[*(const size_t *)b].path);
    return da < db ? 1 : da > db ? -1 : 0;
}

/* Opens directory base in pfd by O_PATH (never a symlink, no read or write
 * permission needed) and the /proc path through which its attributes can be
 * set. */
static int open_dir_attrs(run *r, int pfd, const char *path, const char *base, char proc[64])
{
    int fd = openat(pfd, base, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        char esc[600];
        fb_path_escape(path, esc, sizeof esc);
        if (errno == ELOOP || errno == ENOTDIR)
            return fb_error_set(r->err, FB_EINVAL,
                                "%s: %s is no longer a directory; refusing to restore into it",
                                r->dest_shown, esc);
        return fb_error_set_errno(r->err, errno, "%s: cannot open %s", r->dest_shown, esc);
    }
    snprintf(proc, 64, "/proc/self/fd/%d", fd);
    return fd;
}

/* The stored mode, mtime (and owner) of a merged directory. */
static int apply_dir_meta(run *r, int root_fd, const fb_manifest_entry *e)
{
    int pfd;
    const char *base;
    int rc = walk_parent(r, root_fd, r->dest_shown, e->path, false, &pfd, &base);
    if (rc < 0)
        return rc;
    if (rc != WALK_OK)
        return FB_EINVAL; /* changed under us; the message says what */
    char proc[64];
    int fd = open_dir_attrs(r, pfd, e->path, base, proc);
    close(pfd);
    if (fd < 0)
        return fd;
    char esc[600];
    fb_path_escape(e->path, esc, sizeof esc);
    struct timespec ts[2] = {{.tv_sec = 0, .tv_nsec = UTIME_OMIT},
                             {.tv_sec = (time_t)e->meta.mtime, .tv_nsec = e->meta.mtime_nsec}};
    rc = 0;
    if (r->req->same_owner && fchownat(fd, "", e->meta.uid, e->meta.gid, AT_EMPTY_PATH) != 0)
        rc = fb_error_set_errno(r->err, errno, "%s: cannot set the owner of %s", r->dest_shown,
                                esc);
    if (rc == 0 && chmod(proc, restore_mode(e->meta.mode)) != 0)
        rc = fb_error_set_errno(r->err, errno, "%s: cannot set the mode of %s", r->dest_shown,
                                esc);
    if (rc == 0 && utimensat(AT_FDCWD, proc, ts, 0) != 0)
        rc = fb_error_set_errno(r->err, errno, "%s: cannot set the mtime of %s", r->dest_shown,
                                esc);
    close(fd);
    return rc;
}

/* Incremental into the session dir: each staged entry renamed over the live
 * one (never through a symlink), directories merged. The conflicts were
 * refused by changes_incremental just before, under the lock. */
static int move_incremental(run *r)
{
    bool exists;
    struct stat old;
    int rc = check_destination(r, &exists, &old);
    if (rc < 0)
        return rc;
    if (!exists) {
        if (mkdirat(r->parent_fd, r->dest_name, 0700) != 0 && errno != EEXIST)
            return fb_error_set_errno(r->err, errno, "cannot create %s", r->dest_shown);
        if ((rc = fb_fsync_dir(r->parent_fd, r->parent_shown, r->err)) < 0)
            return rc;
    }
    int root_fd = openat(r->parent_fd, r->dest_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
                                                          O_CLOEXEC);
    if (root_fd < 0)
        return fb_error_set_errno(r->err, errno, "cannot open %s", r->dest_shown);
    char staged_shown[PATH_MAX];
    snprintf(staged_shown, sizeof staged_shown, "%s/%s", r->parent_shown, r->staging);
    size_t n = r->m.n_entries, n_dirs = 0;
    size_t *dirs = malloc((n ? n : 1) * sizeof *dirs);
    if (!dirs) {
        close(root_fd);
        return restore_oom(r->err);
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        const fb_manifest_entry *e = &r->m.entries[i];
        char esc[600];
        fb_path_escape(e->path, esc, sizeof esc);
        int dp, sp = -1;
        const char *base;
        rc = walk_parent(r, root_fd, r->dest_shown, e->path, true, &dp, &base);
        if (rc > 0)
            rc = FB_EINVAL;
        if (rc < 0)
            break;
        if (e->meta.type == FB_ENTRY_DIR) {
            dirs[n_dirs++] = i;
            if (mkdirat(dp, base, 0700) != 0 && errno != EEXIST) {
                rc = fb_error_set_errno(r->err, errno, "%s: cannot create %s", r->dest_shown, esc);
                close(dp);
                continue;
            }
            /* A live directory we may not write into (a restored 0555 one)
             * is opened up until its stored mode is applied at the end. */
            char proc[64];
            int fd = open_dir_attrs(r, dp, e->path, base, proc);
            struct stat st;
            if (fd < 0)
                rc = fd;
            else if (fstat(fd, &st) != 0)
                rc = fb_error_set_errno(r->err, errno, "%s: cannot stat %s", r->dest_shown, esc);
            else if ((st.st_mode & 0700) != 0700 && chmod(proc, (st.st_mode & 07777) | 0700) != 0)
                rc = fb_error_set_errno(r->err, errno, "%s: cannot make %s writable",
                                        r->dest_shown, esc);
            if (fd >= 0)
                close(fd);
            close(dp);
            continue;
        }
        rc = walk_parent(r, r->staging_fd, staged_shown, e->path, false, &sp, &base);
        if (rc > 0)
            rc = fb_error_set(r->err, FB_EIO, "%s: %s vanished from the staging directory",
                              staged_shown, esc);
        if (rc == 0 && renameat(sp, base, dp, base) != 0)
            rc = fb_error_set_errno(r->err, errno, "%s: cannot move %s into place",
                                    r->dest_shown, esc);
        if (sp >= 0)
            close(sp);
        close(dp);
    }
    if (rc == 0) {
        qsort_r(dirs, n_dirs, sizeof *dirs, cmp_depth_desc, r->m.entries);
        for (size_t k = 0; k < n_dirs && rc == 0; k++)
            rc = apply_dir_meta(r, root_fd, &r->m.entries[dirs[k]]);
    }
    free(dirs);
    if (rc == 0)
        rc = sync_fs(r, root_fd, r->dest_shown);
    close(root_fd);
    if (rc == 0) {
        /* Only empty directories are left in the staging dir. */
        fb_error sub;
        fb_error_clear(&sub);
        if (fb_remove_tree_at(r->parent_fd, r->parent_shown, r->staging, &sub) == 0)
            r->staging_made = false;
        else
            warn(r, "could not remove the staging directory: %s", sub.message);
    }
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
        return compute_changes(r);

    /* Extract and verify first: a corrupt backup is refused before the
     * safety backup or the lock, leaving the store and the session dir
     * exactly as they were. */
    if ((rc = open_archive(r)) < 0)
        return rc;
    if ((rc = make_staging(r)) < 0)
        return rc;
    if ((rc = restore_extract(r)) < 0)
        return rc;
    fb_archive_reader_free(r->reader);
    r->reader = NULL;
    char staged_shown[PATH_MAX];
    snprintf(staged_shown, sizeof staged_shown, "%s/%s", r->parent_shown, r->staging);
    if ((rc = sync_fs(r, r->staging_fd, staged_shown)) < 0)
        return rc;

    if (r->into_session) {
        bool exists;
        struct stat st;
        if ((rc = check_destination(r, &exists, &st)) < 0)
            return rc;
        /* An incremental that would have to write through a symlink is
         * refused before the safety backup (and checked again under the
         * lock, where it counts). */
        if (exists && r->m.type == FB_BACKUP_INCREMENTAL && (rc = compute_changes(r)) < 0)
            return rc;
        if (exists && req->safety_backup && (rc = take_safety_backup(r)) < 0)
            return rc;
        if ((rc = fb_lock_acquire(r->store_session_fd, req->session_id, req->lock_wait_seconds,
                                  &r->lock, r->err)) < 0)
            return rc;
        clear_leftovers(r);
    }

    rc = compute_changes(r);
    if (rc < 0) {
        /* For an incremental this is also the refusal of a conflict. */
        if (r->m.type == FB_BACKUP_INCREMENTAL && r->into_session)
            return rc;
        warn(r, "could not list the changes: %s", r->err->message);
        changes_clear(r->out);
        r->changes_cap = 0;
        fb_error_clear(r->err);
    }
    if (!r->into_session)
        return move_target(r);
    if (r->m.type == FB_BACKUP_FULL)
        return move_full(r);
    return move_incremental(r);
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
    r->store_session_fd = r->parent_fd = r->staging_fd = -1;
    r->lock.fd = -1;
    fb_manifest_init(&r->m);
    out->into_session = into_session;
    out->dry_run = req->dry_run;

    rc = run_steps(r);

    fb_archive_reader_free(r->reader);
    if (r->staging_fd >= 0)
        close(r->staging_fd);
    if (r->staging_made) {
        /* Nothing of a failed run stays; if even this fails the next
         * restore of the session clears the leftover. */
        fb_error sub;
        fb_error_clear(&sub);
        if (fb_remove_tree_at(r->parent_fd, r->parent_shown, r->staging, &sub) == 0)
            fsync(r->parent_fd);
        else
            warn(r, "could not remove the staging directory %s/%s: %s", r->parent_shown,
                 r->staging, sub.message);
    }
    fb_lock_release(&r->lock);
    if (r->store_session_fd >= 0)
        close(r->store_session_fd);
    if (r->parent_fd >= 0)
        close(r->parent_fd);
    fb_manifest_fini(&r->m);
    free(r->by_path);
    free(r->parent_shown);
    free(r->dest_name);
    free(r->dest_shown);
    free(r);
    out->seconds = fb_monotonic_seconds() - t0;
    return rc < 0 ? rc : 0;
}
