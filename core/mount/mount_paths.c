/* Where a mount may go (fb_mount_tree.h): the store root behind a backups
 * directory, and the refusal of a mountpoint that is, contains or lies
 * inside the store (a mount of the store inside itself would loop). Pure
 * path logic, no tree. */
#include "fb_mount_tree.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
