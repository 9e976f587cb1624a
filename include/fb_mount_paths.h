/* Where a flowloom-backupfs mount may go and which mount `umount` may stop
 * (core/mount/mount_paths.c; the store-overlap rule and the store root are
 * declared in fb_mount_tree.h). The CLI and the daemon both call these, so a
 * mountpoint is refused the same way whichever program is run. */
#ifndef FB_MOUNT_PATHS_H
#define FB_MOUNT_PATHS_H

#include "fb_error.h"

/* The daemon's FUSE subtype: its mounts show as this file-system type in
 * /proc/self/mountinfo and mount(8). */
#define FB_MOUNT_SUBTYPE "flowloom-backupfs"
#define FB_MOUNT_FSTYPE "fuse." FB_MOUNT_SUBTYPE

/* A mountpoint must be an existing directory that is not already a mount
 * point: a FUSE mount on a file serves nothing but EIO, and a second mount on
 * the same directory hides the first (two daemons, one reachable). Returns 0,
 * or FB_EINVAL with a message naming mountpoint and saying which rule failed
 * (does not exist; is not a directory, naming its type; is already a mount
 * point, naming the file system there); FB_EIO when /proc/self/mountinfo
 * cannot be read; FB_ENOMEM. */
int fb_mount_check_target(const char *mountpoint, fb_error *err);

/* What `umount` may stop: 0 when a flowloom-backupfs mount is at mountpoint,
 * with *path_out (malloc'd) its absolute symlink-free path, the one to hand
 * to fusermount3. FB_ENOTFOUND "not mounted" when nothing is mounted there or
 * the path does not exist; FB_EINVAL naming the file system when another one
 * is mounted there; FB_EIO, FB_ENOMEM. */
int fb_mount_check_unmount(const char *mountpoint, char **path_out, fb_error *err);

#endif
