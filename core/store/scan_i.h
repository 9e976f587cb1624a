/* Private to core: the walk of a session source directory that decides
 * which entries a backup holds, in archive order; also the walk of the live
 * tree that diff and restore compare with a backup (core/store/live.c). */
#ifndef FB_SCAN_I_H
#define FB_SCAN_I_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "fb_config.h"
#include "fb_error.h"
#include "fb_types.h"

/* What the walk saw of one entry (from fstatat(AT_SYMLINK_NOFOLLOW)). */
typedef struct fb_scan_stat {
    dev_t dev;
    ino_t ino;
    mode_t mode;          /* full st_mode, type bits included */
    uid_t uid;
    gid_t gid;
    uint64_t size;
    int64_t mtime;
    uint32_t mtime_nsec;
    nlink_t nlink;
} fb_scan_stat;

typedef struct fb_scan_entry {
    char *path;           /* owned, relative, raw bytes */
    fb_entry_type type;   /* FILE, DIR, SYMLINK or HARDLINK */
    fb_scan_stat st;
    char *target;         /* owned: the symlink's target; NULL otherwise */
    size_t link_index;    /* HARDLINK: index of the FILE entry of the same inode */
    /* A FIFO, socket or device, listed only with keep_special: type is then
     * FB_ENTRY_FILE, st.mode says what it is, and it must never be opened. */
    bool special;
} fb_scan_entry;

typedef struct fb_scan_result {
    fb_scan_entry *entries; /* owned; each dir before its children, names sorted bytewise */
    size_t n;
    size_t cap;
    uint64_t file_bytes;    /* sum of FILE entry sizes (progress total) */
    uint64_t skipped;       /* special files, mount points and over-long paths left out (warned) */
    /* Mount points left out (another file system, see scan.c), in walk
     * order: neither they nor anything below them is in entries. */
    char **mounts;          /* owned */
    size_t n_mounts;
} fb_scan_result;

typedef struct fb_scan_options {
    /* NULL: every entry (full backup). Otherwise only entries whose path
     * fb_config_include_matches, plus the directories above them. */
    const fb_config *include;
    /* List special files (see fb_scan_entry.special) instead of skipping
     * them with a warning: a restore removes them, so it must see them. */
    bool keep_special;
    fb_warn_fn warn;
    void *warn_ctx;
    /* Checked before each entry: once set, the walk stops with
     * FB_EINTERRUPTED. NULL: never. */
    const fb_cancel *cancel;
} fb_scan_options;

void fb_scan_result_init(fb_scan_result *r);
void fb_scan_result_fini(fb_scan_result *r);

/* Walks the directory open on source_fd (borrowed; never an entry itself)
 * without following any symlink or leaving its file system (mount points
 * go to out->mounts, with a warning). source_name is used in messages.
 * Returns 0, FB_EIO naming the path that could not be listed or stat'ed,
 * FB_ENOMEM, FB_EINTERRUPTED (opts->cancel). */
int fb_scan_dir(int source_fd, const char *source_name, const fb_scan_options *opts,
                fb_scan_result *out, fb_error *err);

/* What fstatat(AT_SYMLINK_NOFOLLOW) said, as the walk records it. */
void fb_scan_stat_set(fb_scan_stat *out, const struct stat *st);

/* The target of symlink name in dirfd into *out (malloc'd); size_hint is
 * its lstat size. Returns 0 or a positive errno (EINVAL: no longer a
 * symlink, ENAMETOOLONG, ENOMEM). */
int fb_scan_read_link(int dirfd, const char *name, uint64_t size_hint, char **out);

#endif
