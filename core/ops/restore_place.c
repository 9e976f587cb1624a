/* Putting a restore's verified staging tree in place (docs/restore.md,
 * step 7): the renameat2(RENAME_EXCHANGE) swap of the restored tree with
 * the session dir, the rename of the tree to --target, and the entry by
 * entry merge of a backup's own entries (--only). This is the only part of
 * a restore that changes the destination, so it is kept apart from the
 * steps (restore.c) that decide whether it may run; every path in the
 * destination is opened beneath a directory fd, never through a symlink. */
#include "restore_i.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fb_fsutil.h"
#include "fb_hash.h"
#include "fb_text.h"

int fb_restore_walk_parent(run *r, int root_fd, const char *root_shown, const char *path,
                           bool create, int *pfd, const char **base)
{
    size_t failed_len;
    int e = fb_open_parent_beneath(root_fd, path, create, pfd, base, &failed_len);
    if (e == 0)
        return 0;
    if (e == ENOENT)
        return FB_RESTORE_WALK_ABSENT;
    if (e == EINVAL)
        return fb_error_set(r->err, FB_ECORRUPT, "%s: bad path component", r->label);
    char *comp = strndup(path, failed_len);
    char esc[600];
    fb_path_escape(comp ? comp : path, esc, sizeof esc);
    free(comp);
    if (e == ELOOP || e == ENOTDIR) {
        fb_error_set(r->err, FB_EINVAL, "%s: %s is %s; refusing to restore through it",
                     root_shown, esc, e == ELOOP ? "a symlink" : "not a directory");
        return FB_RESTORE_WALK_CONFLICT;
    }
    if (create)
        return fb_error_set_errno(r->err, e, "%s: cannot create the directories of %s",
                                  root_shown, esc);
    return fb_error_set_errno(r->err, e, "%s: cannot open %s", root_shown, esc);
}

/* ---- the destination ---- */

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

/* A mount inside the session directory would go wherever the directory
 * goes: the swap would carry it into the old tree, whose removal would then
 * delete the mounted file system's contents (and a merge would write into
 * it). Refused, naming up to three, before anything is touched; the check
 * runs again under the lock just before the swap. */
static int refuse_mounts_inside(run *r)
{
    int fd = openat(r->parent_fd, r->dest_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return fb_error_set_errno(r->err, errno, "cannot open %s", r->dest_shown);
    char **mounts;
    size_t n;
    int rc = fb_mounts_within(fd, r->dest_shown, NULL, &mounts, &n, r->err);
    close(fd);
    if (rc < 0 || n == 0)
        return rc;
    if (strcmp(mounts[0], ".") == 0) {
        rc = fb_error_set(r->err, FB_EINVAL,
                          "session directory %s is a mount point; recover replaces the "
                          "directory as a whole and cannot replace a mount: recover with "
                          "--target DIR instead",
                          r->dest_shown);
    } else {
        char list[1900] = "", esc[600];
        for (size_t i = 0; i < n && i < 3; i++) {
            fb_path_escape(mounts[i], esc, sizeof esc);
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "",
                     esc);
        }
        rc = fb_error_set(r->err, FB_EINVAL,
                          "%s: another filesystem is mounted inside the session directory "
                          "(%s%s); recover would carry it along with the directory and "
                          "delete what it holds: unmount it first, or recover with --target "
                          "DIR",
                          r->dest_shown, list, n > 3 ? ", ..." : "");
    }
    fb_string_list_free(mounts, n);
    return rc;
}

int fb_restore_check_destination(run *r, bool *exists, struct stat *st)
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
        return refuse_mounts_inside(r);
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

/* The whole file system of fd: every staged file and dir is durable before
 * it is given its final name. One call instead of walking a tree whose
 * directories may already carry their restrictive stored modes. */
int fb_restore_sync_fs(run *r, int fd, const char *what)
{
    if (syncfs(fd) != 0)
        return fb_error_set_errno(r->err, errno, "cannot sync %s", what);
    return 0;
}

void fb_restore_remove_staging(run *r, const char *what)
{
    fb_error sub;
    fb_error_clear(&sub);
    if (fb_remove_tree_at(r->parent_fd, r->parent_shown, r->staging, &sub) == 0)
        fsync(r->parent_fd);
    else
        fb_restore_warn(r, "could not remove %s %s/%s: %s", what, r->parent_shown, r->staging,
                        sub.message);
    r->staging_made = false;
}

/* Gives the staging root the mode (and, where allowed, the owner) of the
 * directory it replaces: that directory itself is not part of the backup. */
static void adopt_root_attributes(run *r, const struct stat *old)
{
    (void)fchmod(r->staging_fd, old->st_mode & 07777);
    if (old->st_uid != geteuid() || old->st_gid != getegid())
        (void)fchown(r->staging_fd, old->st_uid, old->st_gid);
}

/* ---- the tree into the session dir, and --target ---- */

/* Gives the staging tree the destination's name, which is free: never
 * over something that appeared there meanwhile. */
static int rename_staging_to_destination(run *r)
{
    int e = fb_rename_noreplace_at(r->parent_fd, r->staging, r->dest_name);
    if (e == EEXIST || e == ENOTEMPTY)
        return fb_error_set(r->err, FB_EINVAL, "%s %s appeared while restoring",
                            r->into_session ? "session directory" : "target", r->dest_shown);
    if (e)
        return fb_error_set_errno(r->err, e, "cannot move the restored tree to %s",
                                  r->dest_shown);
    r->staging_made = false;
    return fb_fsync_dir(r->parent_fd, r->parent_shown, r->err);
}

/* Without RENAME_EXCHANGE: the old tree is renamed aside under another
 * staging name first. A crash in between leaves no session dir but the old
 * tree under that name (and the safety backup). On success the staging
 * name is the old tree's. */
static int swap_by_two_renames(run *r)
{
    char aside[NAME_MAX + 1];
    uint8_t raw[FB_RESTORE_STAGING_HEX / 2];
    char hex[FB_RESTORE_STAGING_HEX + 1];
    int rc = fb_random_bytes(raw, sizeof raw, r->err);
    if (rc < 0)
        return rc;
    fb_hex_encode(raw, sizeof raw, hex);
    snprintf(aside, sizeof aside, "%s%s-%s", FB_RESTORE_STAGING_PREFIX, r->req->session_id, hex);
    int e = fb_rename_noreplace_at(r->parent_fd, r->dest_name, aside);
    if (e)
        return fb_error_set_errno(r->err, e, "cannot move %s aside", r->dest_shown);
    e = fb_rename_noreplace_at(r->parent_fd, r->staging, r->dest_name);
    if (e) {
        if (renameat(r->parent_fd, aside, r->parent_fd, r->dest_name) != 0)
            fb_restore_warn(r, "%s could not be put back; it is at %s/%s", r->dest_shown,
                            r->parent_shown, aside);
        return fb_error_set_errno(r->err, e, "cannot move the restored tree to %s",
                                  r->dest_shown);
    }
    memcpy(r->staging, aside, sizeof r->staging);
    return 0;
}

/* The tree into the session dir: swap, then delete the old tree. */
static int move_full(run *r, bool exists, const struct stat *old)
{
    if (!exists)
        return rename_staging_to_destination(r);
    adopt_root_attributes(r, old);
    if (renameat2(r->parent_fd, r->staging, r->parent_fd, r->dest_name, RENAME_EXCHANGE) != 0) {
        int e = errno;
        if (e != EINVAL && e != ENOSYS)
            return fb_error_set_errno(r->err, e, "cannot swap the restored tree with %s",
                                      r->dest_shown);
        int rc = swap_by_two_renames(r);
        if (rc < 0)
            return rc;
    }
    /* From here the staging name holds the old tree: the restore is done,
     * and a tree that cannot be deleted is cleared by the next restore. */
    int rc = fb_fsync_dir(r->parent_fd, r->parent_shown, r->err);
    fb_restore_remove_staging(r, "the previous tree, left as");
    return rc;
}

/* --target DIR: DIR is absent or an empty directory (checked again now). */
static int move_target(run *r, bool exists, const struct stat *old)
{
    if (exists) {
        adopt_root_attributes(r, old);
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
    return rename_staging_to_destination(r);
}

/* ---- --only into the session dir ---- */

static size_t path_depth(const char *p)
{
    size_t d = 0;
    for (; *p; p++)
        d += *p == '/';
    return d;
}

static int cmp_depth_desc(const void *a, const void *b, void *ctx)
{
    const fb_as_of_entry *e = ctx;
    size_t da = path_depth(e[*(const size_t *)a].e.path);
    size_t db = path_depth(e[*(const size_t *)b].e.path);
    return da < db ? 1 : da > db ? -1 : 0;
}

/* Opens directory base in pfd by O_PATH (never a symlink, no read or write
 * permission needed) and the /proc path through which its attributes can be
 * set. */
static int open_dir_attrs(run *r, const char *root_shown, int pfd, const char *path,
                          const char *base, char proc[64])
{
    int fd = openat(pfd, base, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        char esc[600];
        fb_path_escape(path, esc, sizeof esc);
        if (errno == ELOOP || errno == ENOTDIR)
            return fb_error_set(r->err, FB_EINVAL,
                                "%s: %s is no longer a directory; refusing to restore into it",
                                root_shown, esc);
        return fb_error_set_errno(r->err, errno, "%s: cannot open %s", root_shown, esc);
    }
    snprintf(proc, 64, "/proc/self/fd/%d", fd);
    return fd;
}

/* The stored mode, mtime (and owner) of directory e below root_fd. */
static int apply_dir_meta(run *r, int root_fd, const char *root_shown,
                          const fb_manifest_entry *e)
{
    int pfd;
    const char *base;
    int rc = fb_restore_walk_parent(r, root_fd, root_shown, e->path, false, &pfd, &base);
    if (rc < 0)
        return rc;
    if (rc != 0)
        return FB_EINVAL; /* changed under us; the message says what */
    char proc[64];
    int fd = open_dir_attrs(r, root_shown, pfd, e->path, base, proc);
    close(pfd);
    if (fd < 0)
        return fd;
    char esc[600];
    fb_path_escape(e->path, esc, sizeof esc);
    struct timespec ts[2] = {{.tv_sec = 0, .tv_nsec = UTIME_OMIT},
                             {.tv_sec = (time_t)e->meta.mtime, .tv_nsec = e->meta.mtime_nsec}};
    rc = 0;
    if (r->req->same_owner && fchownat(fd, "", e->meta.uid, e->meta.gid, AT_EMPTY_PATH) != 0)
        rc = fb_error_set_errno(r->err, errno, "%s: cannot set the owner of %s", root_shown,
                                esc);
    if (rc == 0 && chmod(proc, restore_mode(e->meta.mode)) != 0)
        rc = fb_error_set_errno(r->err, errno, "%s: cannot set the mode of %s", root_shown, esc);
    if (rc == 0 && utimensat(AT_FDCWD, proc, ts, 0) != 0)
        rc = fb_error_set_errno(r->err, errno, "%s: cannot set the mtime of %s", root_shown,
                                esc);
    close(fd);
    return rc;
}

int fb_restore_apply_dir_attrs(run *r, int root_fd, const char *root_shown)
{
    const fb_as_of *t = r->tree;
    size_t n_dirs = 0;
    size_t *dirs = malloc((t->n_entries ? t->n_entries : 1) * sizeof *dirs);
    if (!dirs)
        return restore_oom(r->err);
    for (size_t i = 0; i < t->n_entries; i++)
        if (t->entries[i].e.meta.type == FB_ENTRY_DIR)
            dirs[n_dirs++] = i;
    qsort_r(dirs, n_dirs, sizeof *dirs, cmp_depth_desc, t->entries);
    int rc = 0;
    for (size_t k = 0; k < n_dirs && rc == 0; k++)
        rc = apply_dir_meta(r, root_fd, root_shown, &t->entries[dirs[k]].e);
    free(dirs);
    return rc;
}

/* Directory e (named base in dp) exists in the session dir afterwards. A
 * live directory we may not write into (a restored 0555 one) is opened up
 * until its stored mode is applied at the end. */
static int merge_dir(run *r, int dp, const char *base, const fb_manifest_entry *e)
{
    char esc[600];
    fb_path_escape(e->path, esc, sizeof esc);
    if (mkdirat(dp, base, 0700) != 0 && errno != EEXIST)
        return fb_error_set_errno(r->err, errno, "%s: cannot create %s", r->dest_shown, esc);
    char proc[64];
    int fd = open_dir_attrs(r, r->dest_shown, dp, e->path, base, proc);
    if (fd < 0)
        return fd;
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0)
        rc = fb_error_set_errno(r->err, errno, "%s: cannot stat %s", r->dest_shown, esc);
    else if ((st.st_mode & 0700) != 0700 && chmod(proc, (st.st_mode & 07777) | 0700) != 0)
        rc = fb_error_set_errno(r->err, errno, "%s: cannot make %s writable", r->dest_shown, esc);
    close(fd);
    return rc;
}

/* Renames the staged file, symlink or hardlink e over base in dp: one
 * atomic replacement, a symlink in the way replaced and never followed. */
static int merge_entry(run *r, int dp, const char *base, const fb_manifest_entry *e,
                       const char *staged_shown)
{
    char esc[600];
    fb_path_escape(e->path, esc, sizeof esc);
    int sp;
    const char *staged_base;
    int rc = fb_restore_walk_parent(r, r->staging_fd, staged_shown, e->path, false, &sp,
                                    &staged_base);
    if (rc > 0)
        return fb_error_set(r->err, FB_EIO, "%s: %s vanished from the staging directory",
                            staged_shown, esc);
    if (rc < 0)
        return rc;
    if (renameat(sp, staged_base, dp, base) != 0)
        rc = fb_error_set_errno(r->err, errno, "%s: cannot move %s into place", r->dest_shown,
                                esc);
    close(sp);
    return rc;
}

/* --path: removes the live entries the change list says go (matched, not
 * selected, nothing below them kept), children before their directory (the
 * list is sorted by path, so backwards). The merge has begun and is
 * finished whatever happens, so one that cannot be removed (it changed
 * meanwhile: a file appeared in the directory, a component became a
 * symlink) is named in a warning and left, not a failure. */
static void remove_unselected(run *r, int root_fd)
{
    for (size_t k = r->out->n_changes; k-- > 0;) {
        const fb_restore_change *c = &r->out->changes[k];
        if (c->kind != FB_CHANGE_REMOVED)
            continue;
        int dp;
        const char *base;
        int rc = fb_restore_walk_parent(r, root_fd, r->dest_shown, c->path, false, &dp, &base);
        if (rc == FB_RESTORE_WALK_ABSENT)
            continue;
        char esc[600];
        fb_path_escape(c->path, esc, sizeof esc);
        if (rc != 0) {
            fb_restore_warn(r, "%s: %s was not removed: %s", r->dest_shown, esc, r->err->message);
            fb_error_clear(r->err);
            continue;
        }
        int e = unlinkat(dp, base, 0) == 0 ? 0 : errno;
        if (e == EISDIR || e == EPERM)
            e = unlinkat(dp, base, AT_REMOVEDIR) == 0 ? 0 : errno;
        close(dp);
        if (e && e != ENOENT)
            fb_restore_warn(r, "%s: could not remove %s: %s", r->dest_shown, esc, strerror(e));
    }
}

/* Every entry of the tree in path order (a directory before its
 * contents), then with --path the live entries it removes, then the
 * directories' stored attributes, deepest first, once nothing more is
 * written into or removed from them. */
static int merge_entries(run *r, int root_fd)
{
    char staged_shown[PATH_MAX];
    snprintf(staged_shown, sizeof staged_shown, "%s/%s", r->parent_shown, r->staging);
    size_t n = r->tree->n_entries;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const fb_manifest_entry *e = &r->tree->entries[i].e;
        int dp;
        const char *base;
        rc = fb_restore_walk_parent(r, root_fd, r->dest_shown, e->path, true, &dp, &base);
        if (rc > 0)
            rc = FB_EINVAL;
        if (rc < 0)
            break;
        if (e->meta.type == FB_ENTRY_DIR) {
            rc = merge_dir(r, dp, base, e);
        } else {
            rc = merge_entry(r, dp, base, e, staged_shown);
        }
        close(dp);
    }
    if (rc == 0 && r->req->n_paths > 0 && !r->req->only)
        remove_unselected(r, root_fd);
    return rc == 0 ? fb_restore_apply_dir_attrs(r, root_fd, r->dest_shown) : rc;
}

/* --only or --path into the session dir: each staged entry renamed over
 * the live one, directories merged; nothing removed, except with --path
 * what the patterns match and the selection does not hold. The conflicts
 * were refused by the change list just before, under the lock. */
static int move_merge(run *r, bool exists)
{
    int rc;
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
    rc = merge_entries(r, root_fd);
    if (rc == 0)
        rc = fb_restore_sync_fs(r, root_fd, r->dest_shown);
    close(root_fd);
    /* Only empty directories are left in the staging dir. */
    if (rc == 0)
        fb_restore_remove_staging(r, "the staging directory");
    return rc;
}

int fb_restore_place(run *r)
{
    bool exists;
    struct stat old;
    int rc = fb_restore_check_destination(r, &exists, &old);
    if (rc < 0)
        return rc;
    if (!r->into_session)
        return move_target(r, exists, &old);
    if (!r->merge)
        return move_full(r, exists, &old);
    return move_merge(r, exists);
}
