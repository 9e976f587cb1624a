/* Private interface between the daemon's option handling (main.c) and its
 * FUSE request handlers (ll_ops.c). Only fs/ includes FUSE headers. */
#ifndef FS_I_H
#define FS_I_H

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#include <stdbool.h>

#include "fb_mount_tree.h"

/* Kernel cache lifetimes (seconds). Root and session listings change when
 * backups come and go; everything inside a backup never changes. */
#define FS_LIVE_TIMEOUT 1.0
#define FS_IMMUTABLE_TIMEOUT (365.0 * 86400.0)
/* How stale the daemon's own copy of a listing may get before it re-reads
 * the store: well under FS_LIVE_TIMEOUT so that a change shows within 1 s. */
#define FS_LIVE_REFRESH 0.5

/* What the request handlers share: the session's userdata. */
typedef struct fs_daemon {
    fb_mount_tree *tree;
    /* -o open_round_trips: keep the kernel's open and release requests
     * even where it can go without them. */
    bool want_opens;
    /* Set in init when the kernel can skip opens and we let it: the first
     * open is answered ENOSYS, after which the kernel sends none, and
     * reads name only the inode (fb_mount_tree_file_get). */
    bool skip_opens;
} fs_daemon;

/* Workers fs_loop_run starts at most, whatever max_threads asks. */
#define FS_LOOP_THREADS_MAX 64

/* Serves se until an unmount, an error, or a signal that libfuse's
 * handlers turn into fuse_session_exit (fs/loop.c): one worker reads and
 * answers at a time, and more (up to max_threads) take the reading over
 * while requests queue up or one takes long. Call from the thread that
 * gets the signals; it only waits. Returns 0 for an unmount or a signal,
 * else an errno value. */
int fs_loop_run(struct fuse_session *se, unsigned max_threads);

/* The lowlevel operations; userdata is an fs_daemon. */
const struct fuse_lowlevel_ops *fs_ll_ops(void);

/* The one place FB_E* codes become errno values for the kernel. */
int fs_errno_from_fb(int code);

/* fb_warn_fn that sends core warnings to the FUSE log. */
void fs_log_warning(void *ctx, const char *message);

#endif
