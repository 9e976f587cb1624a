/* Where a mount may go (fb_mount_tree.h, fb_mount_paths.h): the store root
 * behind a backups directory, the refusal of a mountpoint that is, contains or
 * lies inside the store (a mount of the store inside itself would loop), of
 * one that is not a directory or already a mount point, and which mount
 * `umount` may stop. No tree. */
#include "fb_mount_tree.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fb_fsutil.h"
#include "fb_mount_paths.h"
#include "fb_text.h"
#include "fb_types.h"

static bool ends_with_store_dir(const char *p, size_t len, size_t *prefix_len)
{
    static const char suffix[] = FB_BACKUPS_PATH;
    size_t sl = sizeof suffix - 1;
    if (len < sl || memcmp(p + len - sl, suffix, sl) != 0)
        return false;
    if (len == sl) {
        *prefix_len = 0;
        return true;
    }
    if (p[len - sl - 1] != '/')
        return false;
    *prefix_len = len - sl - 1;
    return true;
}

static char *root_from_path(const char *path)
{
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/')
        len--;
    size_t prefix;
    if (!ends_with_store_dir(path, len, &prefix))
        return NULL;
    if (prefix == 0)
        return strdup(path[0] == '/' ? "/" : ".");
    return strndup(path, prefix);
}

int fb_mount_store_root(const char *backups_dir, char **root_out, fb_error *err)
{
    *root_out = NULL;
    char *root = root_from_path(backups_dir);
    if (!root) {
        /* The path may reach the store through a symlink or "..". */
        char *real = realpath(backups_dir, NULL);
        if (!real)
            return fb_error_from_errno(err, errno, "%s", backups_dir);
        root = root_from_path(real);
        free(real);
        if (!root)
            return fb_error_set(err, FB_EINVAL,
                                "%s: not a store directory (expected <root>/.flowloom/backups)",
                                backups_dir);
    }
    /* Absolute, because the daemon changes to "/" when it goes to the
     * background. Only the root is resolved: .flowloom stays as named. */
    char *abs = realpath(root, NULL);
    int saved = errno;
    free(root);
    if (!abs)
        return fb_error_from_errno(err, saved, "%s: root of the store", backups_dir);
    *root_out = abs;
    return 0;
}

static bool path_is_inside(const char *inner, const char *outer)
{
    size_t ol = strlen(outer);
    if (strcmp(outer, "/") == 0)
        return true;
    return strncmp(inner, outer, ol) == 0 && inner[ol] == '/';
}

int fb_mount_check_mountpoint(const char *backups_dir, const char *mountpoint, fb_error *err)
{
    char *store = realpath(backups_dir, NULL);
    if (!store)
        return fb_error_from_errno(err, errno, "%s", backups_dir);
    char *mnt = realpath(mountpoint, NULL);
    if (!mnt) {
        int saved = errno;
        free(store);
        return fb_error_from_errno(err, saved, "mountpoint %s", mountpoint);
    }
    int rc = 0;
    if (strcmp(store, mnt) == 0)
        rc = fb_error_set(err, FB_EINVAL, "mountpoint %s is the store %s itself", mountpoint,
                          store);
    else if (path_is_inside(mnt, store))
        rc = fb_error_set(err, FB_EINVAL, "mountpoint %s is inside the store %s", mountpoint,
                          store);
    else if (path_is_inside(store, mnt))
        rc = fb_error_set(err, FB_EINVAL, "mountpoint %s contains the store %s", mountpoint,
                          store);
    free(store);
    free(mnt);
    return rc;
}

/* The absolute, symlink-free path of path, as mountinfo names mount points.
 * realpath() resolves the path itself, which a FUSE mount whose daemon died
 * may answer with ENOTCONN; then the parent is resolved and the last name
 * appended, so that such a mount can still be found (and unmounted). Returns
 * 0 or a positive errno (ENOENT: the path or its parent is missing). */
static int canonical_path(const char *path, char **out)
{
    *out = realpath(path, NULL);
    if (*out)
        return 0;
    int e = errno;
    if (e == ENOENT || e == ENOTDIR || e == ENOMEM || e == ENAMETOOLONG || e == ELOOP)
        return e;
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/')
        len--;
    size_t b = len;
    while (b > 0 && path[b - 1] != '/')
        b--;
    size_t blen = len - b;
    if (blen == 0 || (blen == 1 && path[b] == '.') ||
        (blen == 2 && path[b] == '.' && path[b + 1] == '.'))
        return e;
    char *parent = b == 0 ? strdup(".") : strndup(path, b);
    if (!parent)
        return ENOMEM;
    char *real_parent = realpath(parent, NULL);
    int pe = errno;
    free(parent);
    if (!real_parent)
        return pe;
    bool at_root = strcmp(real_parent, "/") == 0;
    if (asprintf(out, "%s%s%.*s", real_parent, at_root ? "" : "/", (int)blen, path + b) < 0) {
        *out = NULL;
        free(real_parent);
        return ENOMEM;
    }
    free(real_parent);
    return 0;
}

static const char *type_name(mode_t mode)
{
    if (S_ISREG(mode))
        return "a regular file";
    if (S_ISLNK(mode))
        return "a symbolic link";
    if (S_ISCHR(mode))
        return "a character device";
    if (S_ISBLK(mode))
        return "a block device";
    if (S_ISFIFO(mode))
        return "a FIFO";
    if (S_ISSOCK(mode))
        return "a socket";
    return "of an unknown type";
}

/* mountpoint for messages: a name with a newline cannot forge a line. */
#define SHOWN_MAX 512
#define MOUNT_FIELD_MAX 256

int fb_mount_check_target(const char *mountpoint, fb_error *err)
{
    char shown[SHOWN_MAX];
    fb_path_escape(mountpoint, shown, sizeof shown);
    char *path = NULL;
    int e = canonical_path(mountpoint, &path);
    if (e == ENOENT)
        return fb_error_set(err, FB_EINVAL, "mountpoint %s does not exist", shown);
    if (e == ENOTDIR)
        return fb_error_set(err, FB_EINVAL,
                            "mountpoint %s does not exist (a component of its path is not a "
                            "directory)",
                            shown);
    if (e == ENOMEM)
        return fb_error_set(err, FB_ENOMEM, "out of memory");
    if (e)
        return fb_error_set(err, FB_EINVAL, "mountpoint %s cannot be used: %s", shown,
                            strerror(e));

    fb_mount_entry m;
    int rc = fb_mount_find(path, NULL, &m, err);
    if (rc == 0) {
        char type[MOUNT_FIELD_MAX], source[MOUNT_FIELD_MAX];
        fb_path_escape(m.fstype, type, sizeof type);
        fb_path_escape(m.source, source, sizeof source);
        fb_mount_entry_free(&m);
        free(path);
        return fb_error_set(err, FB_EINVAL,
                            "mountpoint %s is already a mount point: %s is mounted there "
                            "(source %s)",
                            shown, type, source);
    }
    if (rc != FB_ENOTFOUND) {
        free(path);
        return rc;
    }
    struct stat st;
    rc = stat(path, &st);
    e = errno;
    free(path);
    if (rc != 0)
        return fb_error_set(err, e == ENOMEM ? FB_ENOMEM : FB_EINVAL,
                            "mountpoint %s cannot be used: %s", shown, strerror(e));
    if (!S_ISDIR(st.st_mode))
        return fb_error_set(err, FB_EINVAL, "mountpoint %s is not a directory (it is %s)", shown,
                            type_name(st.st_mode));
    return 0;
}

int fb_mount_check_unmount(const char *mountpoint, char **path_out, fb_error *err)
{
    *path_out = NULL;
    char shown[SHOWN_MAX];
    fb_path_escape(mountpoint, shown, sizeof shown);
    char *path = NULL;
    int e = canonical_path(mountpoint, &path);
    if (e == ENOENT || e == ENOTDIR)
        return fb_error_set(err, FB_ENOTFOUND, "%s: not mounted (it does not exist)", shown);
    if (e == ENOMEM)
        return fb_error_set(err, FB_ENOMEM, "out of memory");
    if (e)
        return fb_error_set_errno(err, e, "%s", shown);

    fb_mount_entry m;
    int rc = fb_mount_find(path, NULL, &m, err);
    if (rc == FB_ENOTFOUND) {
        free(path);
        return fb_error_set(err, FB_ENOTFOUND, "%s: not mounted", shown);
    }
    if (rc) {
        free(path);
        return rc;
    }
    if (strcmp(m.fstype, FB_MOUNT_FSTYPE) != 0) {
        char type[MOUNT_FIELD_MAX], source[MOUNT_FIELD_MAX];
        fb_path_escape(m.fstype, type, sizeof type);
        fb_path_escape(m.source, source, sizeof source);
        fb_mount_entry_free(&m);
        free(path);
        return fb_error_set(err, FB_EINVAL,
                            "%s: not a " FB_MOUNT_SUBTYPE " mount: %s is mounted there "
                            "(source %s); left mounted",
                            shown, type, source);
    }
    fb_mount_entry_free(&m);
    *path_out = path;
    return 0;
}
