/* FUSE lowlevel request handlers: each one asks core's fb_mount_tree and
 * turns the answer into a reply with the cache lifetimes that fit it (long
 * for backup contents, about a second for the live root/session listings).
 * Everything that would modify the file system answers EROFS. */
#include "fs_i.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>

static fs_daemon *daemon_of(fuse_req_t req)
{
    return fuse_req_userdata(req);
}

static fb_mount_tree *tree_of(fuse_req_t req)
{
    return daemon_of(req)->tree;
}

int fs_errno_from_fb(int code)
{
    switch (code) {
    case FB_ENOTFOUND:
        return ENOENT;
    case FB_ENOMEM:
        return ENOMEM;
    case FB_ECORRUPT:
    default:
        return EIO;
    }
}

void fs_log_warning(void *ctx, const char *message)
{
    (void)ctx;
    fuse_log(FUSE_LOG_WARNING, "flowloom-backupfs: %s\n", message);
}

/* Failures the user should hear about (corrupt data, I/O errors) are logged
 * once per distinct message, so a reader looping on a bad file cannot flood
 * the log. "Not found" is ordinary traffic and is not logged. FB_EMISUSE
 * (readlink of a non-symlink, open of a directory...) cannot come from the
 * kernel, which checks the file type first; it ends as EIO like any other
 * unexpected code. */
static void reply_fb_error(fuse_req_t req, const fb_error *err, int code)
{
    static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
    static char last[FB_ERROR_MESSAGE_MAX];
    if (code != FB_ENOTFOUND) {
        pthread_mutex_lock(&log_lock);
        if (strcmp(last, err->message) != 0) {
            snprintf(last, sizeof last, "%s", err->message);
            fuse_log(FUSE_LOG_ERR, "flowloom-backupfs: %s: %s\n", fb_error_code_name(code),
                     err->message);
        }
        pthread_mutex_unlock(&log_lock);
    }
    fuse_reply_err(req, fs_errno_from_fb(code));
}

static double timeout_for(const fb_mount_attr *a)
{
    return a->immutable ? FS_IMMUTABLE_TIMEOUT : FS_LIVE_TIMEOUT;
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
    fs_daemon *d = userdata;
    /* Contents are immutable: an open has nothing to say that the first
     * read cannot (docs/mount.md, "Opens the kernel skips"). Without open
     * and release requests a cached file costs the reader no round trip. */
    d->skip_opens = !d->want_opens && (conn->capable & FUSE_CAP_NO_OPEN_SUPPORT);
    if (d->skip_opens)
        conn->want |= FUSE_CAP_NO_OPEN_SUPPORT;
    /* Contents never change: size/mtime checks on getattr are pointless. */
    conn->want &= ~(unsigned)FUSE_CAP_AUTO_INVAL_DATA;
    /* Nothing to lock: a read-only tree. Let the kernel handle locks locally. */
    conn->want &= ~(unsigned)(FUSE_CAP_POSIX_LOCKS | FUSE_CAP_FLOCK_LOCKS);
    /* After fuse_daemonize's fork: the tree's thread can start now. */
    fb_mount_tree_start(d->tree);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    if (strlen(name) > FB_MOUNT_NAME_MAX) {
        fuse_reply_err(req, ENAMETOOLONG);
        return;
    }
    fb_mount_tree *t = tree_of(req);
    fb_mount_attr a;
    fb_error err;
    fb_error_clear(&err);
    int rc = fb_mount_tree_lookup(t, parent, name, &a, &err);
    if (rc) {
        reply_fb_error(req, &err, rc);
        return;
    }
    struct fuse_entry_param e;
    memset(&e, 0, sizeof e);
    e.ino = a.st.st_ino;
    /* Inode numbers are never reused while the daemon runs. */
    e.generation = 1;
    e.attr = a.st;
    e.attr_timeout = timeout_for(&a);
    e.entry_timeout = timeout_for(&a);
    /* The kernel did not get the entry (interrupted): it will never forget it. */
    if (fuse_reply_entry(req, &e) != 0)
        fb_mount_tree_forget(t, a.st.st_ino, 1);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    fb_mount_tree_forget(tree_of(req), ino, nlookup);
    fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
    fb_mount_tree *t = tree_of(req);
    for (size_t i = 0; i < count; i++)
        fb_mount_tree_forget(t, forgets[i].ino, forgets[i].nlookup);
    fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)fi;
    fb_mount_attr a;
    fb_error err;
    fb_error_clear(&err);
    int rc = fb_mount_tree_getattr(tree_of(req), ino, &a, &err);
    if (rc) {
        reply_fb_error(req, &err, rc);
        return;
    }
    fuse_reply_attr(req, &a.st, timeout_for(&a));
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
    char *target = NULL;
    fb_error err;
    fb_error_clear(&err);
    int rc = fb_mount_tree_readlink(tree_of(req), ino, &target, &err);
    if (rc) {
        reply_fb_error(req, &err, rc);
        return;
    }
    fuse_reply_readlink(req, target);
    free(target);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
        fuse_reply_err(req, EROFS);
        return;
    }
    if (daemon_of(req)->skip_opens) {
        /* The kernel sends no open after this answer; it then keeps the
         * cached pages of every file as keep_cache does below. */
        fuse_reply_err(req, ENOSYS);
        return;
    }
    fb_mount_tree *t = tree_of(req);
    fb_mount_file *f = NULL;
    fb_error err;
    fb_error_clear(&err);
    int rc = fb_mount_tree_open(t, ino, &f, &err);
    if (rc) {
        reply_fb_error(req, &err, rc);
        return;
    }
    fi->fh = (uint64_t)(uintptr_t)f;
    /* Immutable contents: pages cached by an earlier open stay valid (a
     * number never names other contents, include/fb_mount_tree.h). This
     * open is where the file's header and, for small files, its hash are
     * proven before any byte is served. */
    fi->keep_cache = 1;
    fi->noflush = 1;
    if (fuse_reply_open(req, fi) != 0)
        fb_mount_file_close(t, f); /* no release will come for it */
}

/* A read is replied straight from the cached frames that hold it, one
 * iovec per frame: no buffer, no copy in the daemon. With 1 MiB frames, a
 * file's 256 KiB reads cross a frame boundary one time in four (its data
 * starts wherever the tar put it); copying those into a buffer cost a
 * malloc and a memcpy each. Only a read spanning more frames than
 * READ_SPANS_MAX (frames far smaller than the read) is copied. */
#define READ_SPANS_MAX 4

static void op_read_copy(fuse_req_t req, fb_mount_file *f, size_t size, off_t off)
{
    char *buf = malloc(size);
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    size_t got = 0;
    fb_error err;
    fb_error_clear(&err);
    int rc = fb_mount_file_read(f, buf, size, (uint64_t)off, &got, &err);
    if (rc)
        reply_fb_error(req, &err, rc);
    else
        fuse_reply_buf(req, buf, got);
    free(buf);
}

/* Serves one read from f. */
static void read_from(fuse_req_t req, fb_mount_file *f, size_t size, off_t off)
{
    uint64_t fsize = fb_mount_file_size(f);
    if ((uint64_t)off >= fsize || size == 0) {
        fuse_reply_buf(req, NULL, 0);
        return;
    }
    if (size > fsize - (uint64_t)off)
        size = (size_t)(fsize - (uint64_t)off);
    fb_archive_span spans[READ_SPANS_MAX];
    size_t n = 0, got = 0;
    fb_error err;
    fb_error_clear(&err);
    int rc = fb_mount_file_read_spans(f, size, (uint64_t)off, spans, READ_SPANS_MAX, &n, &got,
                                      &err);
    if (rc) {
        reply_fb_error(req, &err, rc);
        return;
    }
    if (got != size) { /* more frames than spans */
        fb_archive_spans_release(spans, n);
        op_read_copy(req, f, size, off);
        return;
    }
    struct iovec iov[READ_SPANS_MAX];
    for (size_t i = 0; i < n; i++)
        iov[i] = (struct iovec){.iov_base = (void *)spans[i].data, .iov_len = spans[i].len};
    fuse_reply_iov(req, iov, (int)n);
    fb_archive_spans_release(spans, n);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    if (off < 0) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    if (fi->fh) {
        read_from(req, (fb_mount_file *)(uintptr_t)fi->fh, size, off);
        return;
    }
    /* No open came (skip_opens): the file the first read proved is kept. */
    fb_mount_tree *t = tree_of(req);
    fb_mount_file *f = NULL;
    fb_error err;
    fb_error_clear(&err);
    int rc = fb_mount_tree_file_get(t, ino, &f, &err);
    if (rc) {
        reply_fb_error(req, &err, rc);
        return;
    }
    read_from(req, f, size, off);
    fb_mount_file_put(t, f);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    fb_mount_file_close(tree_of(req), (fb_mount_file *)(uintptr_t)fi->fh);
    fuse_reply_err(req, 0);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    fb_mount_tree *t = tree_of(req);
    fb_mount_dir *d = NULL;
    fb_error err;
    fb_error_clear(&err);
    int rc = fb_mount_tree_opendir(t, ino, &d, &err);
    if (rc) {
        reply_fb_error(req, &err, rc);
        return;
    }
    fi->fh = (uint64_t)(uintptr_t)d;
    if (fb_mount_dir_is_immutable(d)) {
        /* A backup's listing never changes: let the kernel keep it. */
        fi->cache_readdir = 1;
        fi->keep_cache = 1;
    }
    if (fuse_reply_open(req, fi) != 0)
        fb_mount_dir_close(t, d);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
    (void)ino;
    fb_mount_dir *d = (fb_mount_dir *)(uintptr_t)fi->fh;
    if (off < 0) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    char *buf = malloc(size ? size : 1);
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    size_t used = 0;
    const char *name;
    uint64_t child;
    uint32_t mode;
    for (uint64_t pos = (uint64_t)off; fb_mount_dir_get(d, pos, &name, &child, &mode); pos++) {
        struct stat st;
        memset(&st, 0, sizeof st);
        st.st_ino = child;
        st.st_mode = mode;
        /* The offset stored with an entry is where the next call resumes. */
        size_t need = fuse_add_direntry(req, buf + used, size - used, name, &st, (off_t)pos + 1);
        if (need > size - used)
            break;
        used += need;
    }
    fuse_reply_buf(req, buf, used);
    free(buf);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    fb_mount_dir_close(tree_of(req), (fb_mount_dir *)(uintptr_t)fi->fh);
    fuse_reply_err(req, 0);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
    (void)ino;
    struct statvfs sv;
    fb_error err;
    fb_error_clear(&err);
    int rc = fb_mount_tree_statfs(tree_of(req), &sv, &err);
    if (rc) {
        reply_fb_error(req, &err, rc);
        return;
    }
    fuse_reply_statfs(req, &sv);
}

/* ---- everything that would write: the kernel already refuses these on a
 * read-only mount; answering EROFS here too keeps it so even if the mount
 * were remounted read-write. */

static void erofs(fuse_req_t req)
{
    fuse_reply_err(req, EROFS);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi)
{
    (void)ino, (void)attr, (void)to_set, (void)fi;
    erofs(req);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
    (void)parent, (void)name, (void)mode, (void)rdev;
    erofs(req);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    (void)parent, (void)name, (void)mode;
    erofs(req);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    (void)parent, (void)name;
    erofs(req);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
    (void)link, (void)parent, (void)name;
    erofs(req);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags)
{
    (void)parent, (void)name, (void)newparent, (void)newname, (void)flags;
    erofs(req);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
    (void)ino, (void)newparent, (void)newname;
    erofs(req);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
    (void)ino, (void)buf, (void)size, (void)off, (void)fi;
    erofs(req);
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                        size_t size, int flags)
{
    (void)ino, (void)name, (void)value, (void)size, (void)flags;
    erofs(req);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
    (void)ino, (void)name;
    erofs(req);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi)
{
    (void)parent, (void)name, (void)mode, (void)fi;
    erofs(req);
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                         struct fuse_file_info *fi)
{
    (void)ino, (void)mode, (void)offset, (void)length, (void)fi;
    erofs(req);
}

static const struct fuse_lowlevel_ops ops = {
    .init = op_init,
    .lookup = op_lookup,
    .forget = op_forget,
    .forget_multi = op_forget_multi,
    .getattr = op_getattr,
    .setattr = op_setattr,
    .readlink = op_readlink,
    .mknod = op_mknod,
    .mkdir = op_mkdir,
    .unlink = op_unlink,
    .rmdir = op_unlink,
    .symlink = op_symlink,
    .rename = op_rename,
    .link = op_link,
    .open = op_open,
    .read = op_read,
    .write = op_write,
    .release = op_release,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .releasedir = op_releasedir,
    .statfs = op_statfs,
    .setxattr = op_setxattr,
    .removexattr = op_removexattr,
    .create = op_create,
    .fallocate = op_fallocate,
};

const struct fuse_lowlevel_ops *fs_ll_ops(void)
{
    return &ops;
}
