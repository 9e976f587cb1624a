/* File-system helpers shared by every writer of the store: the crash-safe
 * publish sequence (temp name, fsync, rename, fsync dir), whole-file reads
 * that refuse symlinks and oversized files, and a tree removal that never
 * follows a symlink. See docs/crash-safety.md. */
#include "fb_fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fb_hash.h"

/* "dir/name" for messages; falls back to name alone. */
static void display_path(const char *dir_name, const char *name, char *out, size_t size)
{
    if (dir_name && *dir_name)
        snprintf(out, size, "%s/%s", dir_name, name);
    else
        snprintf(out, size, "%s", name);
}

int fb_random_bytes(void *buf, size_t len, fb_error *err)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t r = getrandom(p, len, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return fb_error_set_errno(err, errno, "cannot get random bytes");
        }
        p += r;
        len -= (size_t)r;
    }
    return 0;
}

/* 16 lowercase hex digits of fresh randomness. */
static int random_hex16(char out[17], fb_error *err)
{
    uint8_t raw[8];
    int rc = fb_random_bytes(raw, sizeof raw, err);
    if (rc)
        return rc;
    fb_hex_encode(raw, sizeof raw, out);
    return 0;
}

int fb_write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        if (w == 0)
            return EIO;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int fb_fsync_dir(int dirfd, const char *dir_name, fb_error *err)
{
    /* Never retried: after a failed fsync the kernel may have dropped the
     * dirty pages, so a second fsync could succeed without the data. */
    if (fsync(dirfd) != 0)
        return fb_error_set_errno(err, errno, "cannot sync directory %s",
                                  dir_name ? dir_name : "(directory)");
    return 0;
}

int fb_atomic_write_at(int dirfd, const char *dir_name, const char *name, const void *data,
                       size_t len, fb_error *err)
{
    char shown[PATH_MAX];
    display_path(dir_name, name, shown, sizeof shown);
    if (!name || !*name || strchr(name, '/'))
        return fb_error_set(err, FB_EMISUSE, "atomic write: bad file name '%s'", name ? name : "");

    char tmp[NAME_MAX + 1];
    int fd = -1;
    for (int attempt = 0; attempt < 16 && fd < 0; attempt++) {
        char hex[17];
        int rc = random_hex16(hex, err);
        if (rc)
            return rc;
        /* The name part is cut so the temp name always fits NAME_MAX. */
        snprintf(tmp, sizeof tmp, FB_WORK_PREFIX "%.200s-%s", name, hex);
        fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EEXIST)
            return fb_error_set_errno(err, errno, "cannot create a temporary file for %s", shown);
    }
    if (fd < 0)
        return fb_error_set_errno(err, EEXIST, "cannot create a temporary file for %s", shown);

    int rc = fb_write_all(fd, data, len);
    if (rc) {
        rc = fb_error_set_errno(err, rc, "cannot write %s", shown);
        goto fail_open;
    }
    if (fsync(fd) != 0) {
        rc = fb_error_set_errno(err, errno, "cannot sync %s", shown);
        goto fail_open;
    }
    if (close(fd) != 0) {
        rc = fb_error_set_errno(err, errno, "cannot close %s", shown);
        goto fail_closed;
    }
    if (renameat(dirfd, tmp, dirfd, name) != 0) {
        rc = fb_error_set_errno(err, errno, "cannot rename the temporary file into %s", shown);
        goto fail_closed;
    }
    /* The rename is only durable once the directory is synced. */
    return fb_fsync_dir(dirfd, dir_name ? dir_name : name, err);

fail_open:
    close(fd);
fail_closed:
    unlinkat(dirfd, tmp, 0);
    return rc;
}

int fb_read_file_at(int dirfd, const char *dir_name, const char *name, size_t cap, char **out,
                    size_t *out_len, fb_error *err)
{
    return fb_read_file_at_stat(dirfd, dir_name, name, cap, out, out_len, NULL, err);
}

int fb_read_file_at_stat(int dirfd, const char *dir_name, const char *name, size_t cap,
                         char **out, size_t *out_len, struct stat *st_out, fb_error *err)
{
    char shown[PATH_MAX];
    display_path(dir_name, name, shown, sizeof shown);
    *out = NULL;
    if (out_len)
        *out_len = 0;

    /* O_NONBLOCK so a planted FIFO cannot hang us before fstat rejects it. */
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT)
            return fb_error_set(err, FB_ENOTFOUND, "%s does not exist", shown);
        if (e == ELOOP)
            return fb_error_set(err, FB_ECORRUPT, "%s is a symlink; refusing to follow it",
                                shown);
        return fb_error_from_errno(err, e, "cannot open %s", shown);
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return fb_error_set_errno(err, e, "cannot stat %s", shown);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return fb_error_set(err, FB_ECORRUPT, "%s is not a regular file", shown);
    }
    if (st.st_size < 0 || (uint64_t)st.st_size > cap) {
        close(fd);
        return fb_error_set(err, FB_ECORRUPT, "%s is %lld bytes, over the limit of %zu bytes",
                            shown, (long long)st.st_size, cap);
    }
    if (st_out)
        *st_out = st;

    /* The file may grow or shrink after fstat: read until EOF, with room for
     * one byte past cap so growth over the limit is seen. */
    if (cap > SIZE_MAX - 2)
        cap = SIZE_MAX - 2;
    size_t alloc = (size_t)st.st_size + 2;
    size_t used = 0;
    char *buf = malloc(alloc);
    if (!buf) {
        close(fd);
        return fb_error_set(err, FB_ENOMEM, "out of memory reading %s", shown);
    }
    for (;;) {
        if (used + 1 >= alloc) {
            /* used <= cap here (checked after each read), so alloc < cap + 2 */
            size_t grown = alloc < 4096 ? 4096 : alloc * 2;
            if (grown > cap + 2 || grown < alloc)
                grown = cap + 2;
            char *nb = realloc(buf, grown);
            if (!nb) {
                free(buf);
                close(fd);
                return fb_error_set(err, FB_ENOMEM, "out of memory reading %s", shown);
            }
            buf = nb;
            alloc = grown;
        }
        ssize_t r = read(fd, buf + used, alloc - 1 - used);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            free(buf);
            close(fd);
            return fb_error_set_errno(err, e, "cannot read %s", shown);
        }
        if (r == 0)
            break;
        used += (size_t)r;
        if (used > cap) {
            free(buf);
            close(fd);
            return fb_error_set(err, FB_ECORRUPT, "%s grew over the limit of %zu bytes", shown,
                                cap);
        }
    }
    close(fd);
    buf[used] = '\0';
    *out = buf;
    if (out_len)
        *out_len = used;
    return 0;
}

/* One level of the removal walk: the directory's name in its parent and its
 * identity, checked again when we climb back so a directory swapped in
 * during the walk is detected instead of deleted through. */
typedef struct remove_level {
    char *name;
    dev_t dev;
    ino_t ino;
} remove_level;

static void free_levels(remove_level *levels, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(levels[i].name);
    free(levels);
}

int fb_open_parent_beneath(int root_fd, const char *path, bool create, int *pfd,
                           const char **base, size_t *failed_len)
{
    *pfd = -1;
    *failed_len = 0;
    const char *slash = strrchr(path, '/');
    *base = slash ? slash + 1 : path;
    size_t dlen = slash ? (size_t)(slash - path) : 0;
    int cur = fcntl(root_fd, F_DUPFD_CLOEXEC, 0);
    if (cur < 0)
        return errno;
    size_t pos = 0;
    while (pos < dlen) {
        const char *e = memchr(path + pos, '/', dlen - pos);
        size_t end = e ? (size_t)(e - path) : dlen;
        size_t nl = end - pos;
        char name[NAME_MAX + 1];
        *failed_len = end;
        if (nl == 0 || nl > NAME_MAX) {
            close(cur);
            return EINVAL;
        }
        memcpy(name, path + pos, nl);
        name[nl] = '\0';
        int fd = openat(cur, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT && create) {
            if (mkdirat(cur, name, 0700) != 0 && errno != EEXIST) {
                int e2 = errno;
                close(cur);
                return e2;
            }
            fd = openat(cur, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
        if (fd < 0) {
            int e2 = errno;
            if (e2 == ELOOP || e2 == ENOTDIR) {
                /* O_DIRECTORY on a symlink says ENOTDIR: tell the two apart. */
                struct stat st;
                e2 = fstatat(cur, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)
                         ? ELOOP
                         : ENOTDIR;
            }
            close(cur);
            return e2;
        }
        close(cur);
        cur = fd;
        pos = end + 1;
    }
    *failed_len = 0;
    *pfd = cur;
    return 0;
}

int fb_rename_noreplace_at(int dirfd, const char *from, const char *to)
{
    if (renameat2(dirfd, from, dirfd, to, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return errno;
    /* No RENAME_NOREPLACE on this file system. Every caller holds the lock
     * that keeps others from creating `to`, so a check just before a plain
     * rename is enough. */
    struct stat st;
    if (fstatat(dirfd, to, &st, AT_SYMLINK_NOFOLLOW) == 0)
        return EEXIST;
    return renameat(dirfd, from, dirfd, to) == 0 ? 0 : errno;
}

/* Opens dir parent/name for removal without following a symlink. A
 * directory of ours whose stored mode denies us (a restored 0555 or 0000
 * tree) is made 0700 first: it is being deleted anyway. The chmod of a
 * directory we cannot open goes through an O_PATH fd of the very inode we
 * looked up, never through the name again. */
static int open_dir_for_removal(int parent, const char *name)
{
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == EACCES) {
        int p = openat(parent, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (p >= 0) {
            char proc[64];
            snprintf(proc, sizeof proc, "/proc/self/fd/%d", p);
            /* On failure the open below reports EACCES. */
            (void)chmod(proc, 0700);
            close(p);
        }
        fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            errno = EACCES;
    }
    if (fd >= 0) {
        struct stat st;
        /* If it is not ours, unlinking inside reports the real error. */
        if (fstat(fd, &st) == 0 && (st.st_mode & 0700) != 0700)
            (void)fchmod(fd, 0700);
    }
    return fd;
}

/* Removes everything in cur that is not a directory and returns the name of
 * the first subdirectory found (malloc'd) in *subdir, or NULL when none. */
static int empty_level(int cur, const char *shown, char **subdir, fb_error *err)
{
    *subdir = NULL;
    int lfd = openat(cur, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (lfd < 0)
        return fb_error_set_errno(err, errno, "cannot open %s for removal", shown);
    DIR *d = fdopendir(lfd);
    if (!d) {
        int e = errno;
        close(lfd);
        return fb_error_set_errno(err, e, "cannot list %s for removal", shown);
    }
    int rc = 0;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno)
                rc = fb_error_set_errno(err, errno, "cannot list %s for removal", shown);
            break;
        }
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        struct stat st;
        if (fstatat(cur, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            if (errno == ENOENT)
                continue;
            rc = fb_error_set_errno(err, errno, "cannot stat %s/%s", shown, de->d_name);
            break;
        }
        if (S_ISDIR(st.st_mode)) {
            *subdir = strdup(de->d_name);
            if (!*subdir)
                rc = fb_error_set(err, FB_ENOMEM, "out of memory removing %s", shown);
            break;
        }
        if (unlinkat(cur, de->d_name, 0) != 0 && errno != ENOENT) {
            rc = fb_error_set_errno(err, errno, "cannot remove %s/%s", shown, de->d_name);
            break;
        }
    }
    closedir(d);
    return rc;
}

/* The mount id of the directory open on fd, 0 when the kernel gives none. */
static uint64_t mount_id_of(int fd)
{
    struct statx stx;
    if (statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_MNT_ID, &stx) != 0 ||
        !(stx.stx_mask & STATX_MNT_ID))
        return 0;
    return stx.stx_mnt_id;
}

/* A removal stays on the file system of the directory it started in: a
 * directory inside the tree with another st_dev or mount id is something
 * mounted there (a tmpfs, a bind mount, a FUSE mount), whose contents are
 * not ours to delete. The removal fails there, naming it. */
static int refuse_mount(int fd, const struct stat *st, dev_t dev, uint64_t mnt_id,
                        const char *shown, const char *sub, fb_error *err)
{
    uint64_t id = mnt_id ? mount_id_of(fd) : 0;
    if (st->st_dev == dev && id == mnt_id)
        return 0;
    return fb_error_set(err, FB_EIO,
                        "cannot remove %s%s%s: another filesystem is mounted there; nothing "
                        "inside it was touched",
                        shown, sub ? "/.../" : "", sub ? sub : "");
}

/* The state of one fb_remove_tree_at below its top directory: the chain of
 * directories from the top to cur, each with the identity it had when it
 * was entered. */
typedef struct remove_walk {
    const char *shown; /* the top, for messages */
    dev_t top_dev;     /* of the directory holding the top */
    uint64_t top_mnt;
    int cur;           /* the directory being emptied */
    remove_level *levels;
    size_t depth, cap;
} remove_walk;

/* Enters the subdirectory sub of cur (taking ownership of sub). Returns 0
 * when entered, 1 when sub was replaced meanwhile (handled on the next
 * pass), or an error. */
static int remove_descend(remove_walk *w, char *sub, fb_error *err)
{
    int rc = 0;
    int nfd = open_dir_for_removal(w->cur, sub);
    if (nfd < 0) {
        int e = errno;
        if (e != ENOENT && e != ENOTDIR && e != ELOOP) {
            rc = fb_error_set_errno(err, e, "cannot open %s/.../%s for removal", w->shown, sub);
        } else if (e != ENOENT && unlinkat(w->cur, sub, 0) != 0 && errno != ENOENT) {
            /* Replaced between stat and open by a non-directory. */
            rc = fb_error_set_errno(err, errno, "cannot remove %s/.../%s", w->shown, sub);
        } else {
            rc = 1;
        }
        free(sub);
        return rc;
    }
    struct stat nst;
    if (fstat(nfd, &nst) != 0)
        rc = fb_error_set_errno(err, errno, "cannot stat %s/.../%s", w->shown, sub);
    else
        rc = refuse_mount(nfd, &nst, w->top_dev, w->top_mnt, w->shown, sub, err);
    if (rc == 0 && w->depth == w->cap) {
        remove_level *nl = realloc(w->levels, sizeof *w->levels * w->cap * 2);
        if (!nl)
            rc = fb_error_set(err, FB_ENOMEM, "out of memory removing %s", w->shown);
        else {
            w->levels = nl;
            w->cap *= 2;
        }
    }
    if (rc) {
        close(nfd);
        free(sub);
        return rc;
    }
    w->levels[w->depth++] = (remove_level){.name = sub, .dev = nst.st_dev, .ino = nst.st_ino};
    close(w->cur);
    w->cur = nfd;
    return 0;
}

/* cur is empty: climbs to its parent through "..", checked against the
 * identity recorded on the way down (a directory moved meanwhile would
 * make ".." somewhere else), and removes it there. */
static int remove_climb(remove_walk *w, fb_error *err)
{
    int pfd = openat(w->cur, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (pfd < 0)
        return fb_error_set_errno(err, errno, "cannot reopen a directory under %s", w->shown);
    struct stat pst, chk;
    remove_level *parent = &w->levels[w->depth - 2], *child = &w->levels[w->depth - 1];
    if (fstat(pfd, &pst) != 0 || pst.st_dev != parent->dev || pst.st_ino != parent->ino ||
        fstatat(pfd, child->name, &chk, AT_SYMLINK_NOFOLLOW) != 0 || chk.st_dev != child->dev ||
        chk.st_ino != child->ino) {
        close(pfd);
        return fb_error_set(err, FB_EIO, "%s was moved while it was being removed", w->shown);
    }
    close(w->cur);
    w->cur = pfd;
    if (unlinkat(w->cur, child->name, AT_REMOVEDIR) != 0 && errno != ENOENT)
        return fb_error_set_errno(err, errno, "cannot remove directory %s/.../%s", w->shown,
                                  child->name);
    free(child->name);
    child->name = NULL;
    w->depth--;
    return 0;
}

/* Empties the directory open on w->cur (the top) depth first. */
static int remove_contents(remove_walk *w, fb_error *err)
{
    for (;;) {
        char *sub = NULL;
        int rc = empty_level(w->cur, w->shown, &sub, err);
        if (rc)
            return rc;
        if (sub) {
            if ((rc = remove_descend(w, sub, err)) < 0)
                return rc;
            continue;
        }
        if (w->depth == 1)
            return 0;
        if ((rc = remove_climb(w, err)) != 0)
            return rc;
    }
}

int fb_remove_tree_at(int dirfd, const char *dir_name, const char *name, fb_error *err)
{
    char shown[PATH_MAX];
    display_path(dir_name, name, shown, sizeof shown);
    struct stat st, top;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT)
            return 0;
        return fb_error_set_errno(err, errno, "cannot stat %s", shown);
    }
    if (!S_ISDIR(st.st_mode)) {
        if (unlinkat(dirfd, name, 0) != 0 && errno != ENOENT)
            return fb_error_set_errno(err, errno, "cannot remove %s", shown);
        return 0;
    }
    if (fstat(dirfd, &top) != 0)
        return fb_error_set_errno(err, errno, "cannot stat the directory that holds %s", shown);

    /* Iterative walk holding one directory fd at a time (a deep tree cannot
     * exhaust fds); we climb back with "..", verified against the recorded
     * identity of the parent. */
    remove_walk w = {.shown = shown, .top_dev = top.st_dev, .top_mnt = mount_id_of(dirfd)};
    w.cur = open_dir_for_removal(dirfd, name);
    if (w.cur < 0) {
        if (errno == ENOENT)
            return 0;
        return fb_error_set_errno(err, errno, "cannot open %s for removal", shown);
    }
    struct stat cst;
    int rc = fstat(w.cur, &cst) != 0
                 ? fb_error_set_errno(err, errno, "cannot stat %s", shown)
                 : refuse_mount(w.cur, &cst, w.top_dev, w.top_mnt, shown, NULL, err);
    if (rc == 0 && !(w.levels = malloc(sizeof *w.levels * 8)))
        rc = fb_error_set(err, FB_ENOMEM, "out of memory removing %s", shown);
    if (rc == 0) {
        w.cap = 8;
        w.levels[0] = (remove_level){.name = NULL, .dev = cst.st_dev, .ino = cst.st_ino};
        w.depth = 1;
        rc = remove_contents(&w, err);
    }
    close(w.cur);
    if (rc == 0 && unlinkat(dirfd, name, AT_REMOVEDIR) != 0 && errno != ENOENT)
        rc = fb_error_set_errno(err, errno, "cannot remove directory %s", shown);
    free_levels(w.levels, w.depth);
    return rc;
}

int fb_make_temp_dir_at(int dirfd, const char *dir_name, const char *prefix, char *name_out,
                        size_t name_out_size, int *fd_out, fb_error *err)
{
    if (fd_out)
        *fd_out = -1;
    if (!prefix || strchr(prefix, '/') || name_out_size < strlen(prefix) + 17)
        return fb_error_set(err, FB_EMISUSE, "temporary directory: bad prefix or buffer");
    const char *where = dir_name ? dir_name : "(directory)";
    for (int attempt = 0; attempt < 64; attempt++) {
        char hex[17];
        int rc = random_hex16(hex, err);
        if (rc)
            return rc;
        snprintf(name_out, name_out_size, "%s%s", prefix, hex);
        if (mkdirat(dirfd, name_out, 0700) != 0) {
            if (errno == EEXIST)
                continue;
            return fb_error_set_errno(err, errno, "cannot create a temporary directory in %s",
                                      where);
        }
        if (!fd_out)
            return 0;
        int fd = openat(dirfd, name_out, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            unlinkat(dirfd, name_out, AT_REMOVEDIR);
            return fb_error_set_errno(err, e, "cannot open temporary directory %s/%s", where,
                                      name_out);
        }
        *fd_out = fd;
        return 0;
    }
    return fb_error_set_errno(err, EEXIST, "cannot create a temporary directory in %s", where);
}

char *fb_path_join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    bool slash = la > 0 && a[la - 1] != '/';
    size_t total = la + (slash ? 1 : 0) + lb + 1;
    char *out = malloc(total);
    if (!out)
        return NULL;
    memcpy(out, a, la);
    if (slash)
        out[la] = '/';
    memcpy(out + la + (slash ? 1 : 0), b, lb + 1);
    return out;
}

void fb_string_list_free(char **list, size_t n)
{
    if (!list)
        return;
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int fb_read_dir_names(DIR *d, fb_name_filter_fn keep, void *ctx, char ***names, size_t *n_out)
{
    *names = NULL;
    *n_out = 0;
    char **list = NULL;
    size_t n = 0, cap = 0;
    int e = 0;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            e = errno;
            break;
        }
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (keep && !keep(dirfd(d), de->d_name, ctx))
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 32;
            char **nl = realloc(list, ncap * sizeof *nl);
            if (!nl) {
                e = ENOMEM;
                break;
            }
            list = nl;
            cap = ncap;
        }
        if (!(list[n] = strdup(de->d_name))) {
            e = ENOMEM;
            break;
        }
        n++;
    }
    if (e) {
        fb_string_list_free(list, n);
        return e;
    }
    if (n > 1)
        qsort(list, n, sizeof *list, cmp_names);
    *names = list;
    *n_out = n;
    return 0;
}

int fb_list_dir_names_at(int dirfd, fb_name_filter_fn keep, void *ctx, char ***names,
                         size_t *n)
{
    *names = NULL;
    *n = 0;
    int lfd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (lfd < 0)
        return errno;
    DIR *d = fdopendir(lfd);
    if (!d) {
        int e = errno;
        close(lfd);
        return e;
    }
    int rc = fb_read_dir_names(d, keep, ctx, names, n);
    closedir(d);
    return rc;
}

/* Copies s[0..n) decoding mountinfo's octal escapes: the kernel writes a
 * space, tab, newline or backslash in a path as "\040", "\011", "\012",
 * "\134". An escape that would decode to NUL is kept as written. */
static char *mountinfo_unescape(const char *s, size_t n)
{
    char *out = malloc(n + 1);
    if (!out)
        return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\' && i + 3 < n && s[i + 1] >= '0' && s[i + 1] <= '3' && s[i + 2] >= '0' &&
            s[i + 2] <= '7' && s[i + 3] >= '0' && s[i + 3] <= '7') {
            int v = (s[i + 1] - '0') << 6 | (s[i + 2] - '0') << 3 | (s[i + 3] - '0');
            if (v != 0) {
                out[j++] = (char)v;
                i += 3;
                continue;
            }
        }
        out[j++] = s[i];
    }
    out[j] = '\0';
    return out;
}

void fb_mount_entry_free(fb_mount_entry *e)
{
    if (!e)
        return;
    free(e->mount_point);
    free(e->fstype);
    free(e->source);
    memset(e, 0, sizeof *e);
}

/* More than any kernel writes: ten fixed fields and a few optional
 * ("shared:N", "master:N", "propagate_from:N", "unbindable"). */
#define MOUNTINFO_MAX_FIELDS 64

int fb_mountinfo_parse_line(const char *line, fb_mount_entry *out, fb_error *err)
{
    memset(out, 0, sizeof *out);
    const char *field[MOUNTINFO_MAX_FIELDS];
    size_t flen[MOUNTINFO_MAX_FIELDS];
    size_t nf = 0;
    size_t len = strcspn(line, "\n");
    for (size_t i = 0; i < len;) {
        size_t j = i;
        while (j < len && line[j] != ' ')
            j++;
        if (nf == MOUNTINFO_MAX_FIELDS)
            return fb_error_set(err, FB_ECORRUPT, "mountinfo line has too many fields");
        field[nf] = line + i;
        flen[nf] = j - i;
        nf++;
        i = j + 1;
    }
    /* Six fixed fields, the optional ones, "-", then type and source. */
    size_t sep = 6;
    while (sep < nf && !(flen[sep] == 1 && field[sep][0] == '-'))
        sep++;
    if (sep + 2 >= nf)
        return fb_error_set(err, FB_ECORRUPT,
                            "mountinfo line lacks the \"-\", type and source fields");
    char *end = NULL;
    errno = 0;
    unsigned long id = strtoul(field[0], &end, 10);
    if (errno || end != field[0] + flen[0] || flen[0] == 0)
        return fb_error_set(err, FB_ECORRUPT, "mountinfo line has no mount id");
    out->mount_id = id;
    out->mount_point = mountinfo_unescape(field[4], flen[4]);
    out->fstype = mountinfo_unescape(field[sep + 1], flen[sep + 1]);
    out->source = mountinfo_unescape(field[sep + 2], flen[sep + 2]);
    if (!out->mount_point || !out->fstype || !out->source) {
        fb_mount_entry_free(out);
        return fb_error_set(err, FB_ENOMEM, "out of memory reading mountinfo");
    }
    return 0;
}

int fb_mount_find(const char *path, const char *mountinfo, fb_mount_entry *out, fb_error *err)
{
    memset(out, 0, sizeof *out);
    const char *file = mountinfo ? mountinfo : "/proc/self/mountinfo";
    /* DONT_SYNC: the mount id comes from the path walk, and a FUSE daemon
     * that hangs must not make us hang asking it for attributes. */
    struct statx stx;
    bool have_id = statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT | AT_STATX_DONT_SYNC,
                         STATX_MNT_ID, &stx) == 0 &&
                   (stx.stx_mask & STATX_MNT_ID);
    FILE *fp = fopen(file, "re");
    if (!fp)
        return fb_error_set_errno(err, errno, "cannot read %s", file);
    fb_mount_entry by_id = {0}, last = {0};
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    int rc = 0;
    while (getline(&line, &cap, fp) >= 0) {
        lineno++;
        fb_mount_entry e;
        rc = fb_mountinfo_parse_line(line, &e, err);
        if (rc) {
            if (rc == FB_ECORRUPT) {
                /* The kernel's own file: a line we cannot read is a
                 * runtime failure, not corrupt stored data. */
                fb_error_prefix(err, "%s line %zu", file, lineno);
                rc = FB_EIO;
                if (err)
                    err->code = FB_EIO;
            }
            break;
        }
        if (have_id && e.mount_id == stx.stx_mnt_id && !by_id.mount_point) {
            by_id = e;
        } else if (strcmp(e.mount_point, path) == 0) {
            fb_mount_entry_free(&last);
            last = e;
        } else {
            fb_mount_entry_free(&e);
        }
    }
    if (!rc && ferror(fp))
        rc = fb_error_set_errno(err, errno ? errno : EIO, "cannot read %s", file);
    free(line);
    fclose(fp);
    if (rc) {
        fb_mount_entry_free(&by_id);
        fb_mount_entry_free(&last);
        return rc;
    }
    if (by_id.mount_point) {
        /* The mount path lies in: either path is its root, or path is a
         * directory inside it and whatever "last" names is hidden. */
        fb_mount_entry_free(&last);
        if (strcmp(by_id.mount_point, path) == 0) {
            *out = by_id;
            return 0;
        }
        fb_mount_entry_free(&by_id);
        return fb_error_set(err, FB_ENOTFOUND, "%s: not a mount point", path);
    }
    if (last.mount_point) {
        *out = last;
        return 0;
    }
    return fb_error_set(err, FB_ENOTFOUND, "%s: not a mount point", path);
}

/* The absolute path of the directory open on fd, as this process sees it
 * (the form mountinfo uses). Returns 0 or an errno. */
static int fd_path(int fd, char *out, size_t size)
{
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, out, size - 1);
    if (n < 0)
        return errno;
    if ((size_t)n >= size - 1 || out[0] != '/')
        return ENAMETOOLONG;
    out[n] = '\0';
    return 0;
}

/* Is the mount e, whose point is rel beneath dirfd ("" for dirfd itself),
 * the one a walk from dirfd reaches there? A mount hidden by a later one
 * above it still has its mountinfo line. A dead FUSE mount cannot answer
 * statx (ENOTCONN), and a kernel without mount ids cannot tell: both count
 * as reached. */
static bool mount_reached(int dirfd, const char *rel, const fb_mount_entry *e)
{
    struct statx stx;
    int flags = AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT | AT_STATX_DONT_SYNC |
                (*rel ? 0 : AT_EMPTY_PATH);
    if (statx(dirfd, rel, flags, STATX_MNT_ID, &stx) != 0)
        return errno == ENOTCONN;
    return !(stx.stx_mask & STATX_MNT_ID) || stx.stx_mnt_id == e->mount_id;
}

static int add_name(char ***list, size_t *n, size_t *cap, const char *name)
{
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 4;
        char **nl = realloc(*list, ncap * sizeof *nl);
        if (!nl)
            return -1;
        *list = nl;
        *cap = ncap;
    }
    if (!((*list)[*n] = strdup(name)))
        return -1;
    (*n)++;
    return 0;
}

int fb_mounts_within(int dirfd, const char *dir_name, const char *mountinfo, char ***out,
                     size_t *n_out, fb_error *err)
{
    *out = NULL;
    *n_out = 0;
    const char *file = mountinfo ? mountinfo : "/proc/self/mountinfo";
    char dir[PATH_MAX];
    int e = fd_path(dirfd, dir, sizeof dir);
    if (e)
        return fb_error_set_errno(err, e, "%s: cannot tell where it is", dir_name);
    size_t dlen = strcmp(dir, "/") == 0 ? 0 : strlen(dir);
    FILE *fp = fopen(file, "re");
    if (!fp)
        return fb_error_set_errno(err, errno, "cannot read %s", file);
    char *line = NULL;
    size_t cap = 0, lcap = 0;
    int rc = 0;
    while (rc == 0 && getline(&line, &cap, fp) >= 0) {
        fb_mount_entry m;
        if ((rc = fb_mountinfo_parse_line(line, &m, err)) != 0) {
            if (rc == FB_ECORRUPT) {
                fb_error_prefix(err, "%s", file);
                rc = FB_EIO; /* the kernel's file: a runtime failure */
                if (err)
                    err->code = FB_EIO;
            }
            break;
        }
        const char *p = m.mount_point;
        if (strncmp(p, dir, dlen) == 0 && (p[dlen] == '\0' || p[dlen] == '/')) {
            const char *rel = p[dlen] == '/' ? p + dlen + 1 : p + dlen;
            if (mount_reached(dirfd, rel, &m) && add_name(out, n_out, &lcap, *rel ? rel : "."))
                rc = fb_error_set(err, FB_ENOMEM, "out of memory reading %s", file);
        }
        fb_mount_entry_free(&m);
    }
    if (rc == 0 && ferror(fp))
        rc = fb_error_set_errno(err, errno ? errno : EIO, "cannot read %s", file);
    free(line);
    fclose(fp);
    if (rc) {
        fb_string_list_free(*out, *n_out);
        *out = NULL;
        *n_out = 0;
    }
    return rc;
}
