/* Private to core: the live session directory compared with a backup's
 * manifest, for `diff --live` (core/ops/diff.c) and the change list of
 * `recover` (core/ops/restore_changes.c). One walk (the backup's own,
 * fb_scan_dir), one comparison and one way to read a live file, so the two
 * commands cannot disagree on what "modified" means.
 *
 * A live file is hashed only when its metadata cannot tell: same size as
 * stored, and a different mtime (or rules.checksum). It is opened beneath
 * the root one component at a time with O_NOFOLLOW (O_NONBLOCK, so a FIFO
 * swapped in cannot block) and must still be the inode the walk or lstat
 * saw. A file that vanished or was replaced before it was read, or that
 * cannot be opened or read (EACCES, EIO, ...), counts as modified and is
 * named in a warning; only a failure of the walk itself is an error. */
#ifndef FB_LIVE_I_H
#define FB_LIVE_I_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "fb_config.h"
#include "fb_error.h"
#include "fb_live.h"
#include "fb_manifest.h"
#include "fb_types.h"
#include "scan_i.h"

/* How a live entry is held against a stored one. */
typedef struct fb_live_rules {
    bool checksum; /* hash a file even when its size and mtime are the stored ones */
    bool owner;    /* uid and gid count */
    /* The mode a stored mode becomes when written (a restore drops some
     * bits); NULL: compared as stored. With it, a symlink's mode is not
     * compared: nothing can set it. */
    uint32_t (*written_mode)(uint32_t stored_mode);
} fb_live_rules;

/* The live tree below root_fd. */
typedef struct fb_live {
    int root_fd;           /* borrowed, O_DIRECTORY; never an entry itself */
    const char *root_name; /* borrowed, for messages */
    fb_warn_fn warn;
    void *warn_ctx;
    fb_scan_result tree; /* after fb_live_walk: each directory before its contents */
    size_t *by_path;     /* after fb_live_walk: tree indices sorted by path (strcmp) */
    /* Per tree entry: whether its inode was read and what it holds, so each
     * inode is read (and an unreadable one named) once. */
    unsigned char *state;
    uint8_t (*sha256)[FB_SHA256_LEN];
    uint8_t *buf;
    uint64_t files_hashed; /* files read to the end and hashed */
    uint64_t bytes_hashed;
} fb_live;

/* Readies lv for root_fd (nothing is read yet). Returns 0 or FB_ENOMEM. */
int fb_live_init(fb_live *lv, int root_fd, const char *root_name, fb_warn_fn warn,
                 void *warn_ctx, fb_error *err);
void fb_live_fini(fb_live *lv);

/* Walks the tree into lv->tree and lv->by_path, as a backup would
 * (fb_scan_dir): include NULL for every entry, else an incremental's
 * patterns; keep_special lists FIFOs, sockets and devices rather than
 * skipping them with a warning. Returns 0, FB_EIO (a directory that cannot
 * be listed or an entry that cannot be stat'ed: named), FB_ENOMEM. */
int fb_live_walk(fb_live *lv, const fb_config *include, bool keep_special, fb_error *err);

/* One live entry found by its path rather than by the walk (an incremental
 * restore looks at its own paths only): lstat of name in dirfd, and a
 * symlink's target; path is copied into out. Returns 0 or a positive errno
 * (ENOENT: absent). Free with fb_live_entry_fini. */
int fb_live_lstat(int dirfd, const char *name, const char *path, fb_scan_entry *out);
void fb_live_entry_fini(fb_scan_entry *e);

/* A live entry's metadata as a backup records it: permission bits only,
 * size 0 for a directory, a symlink's size is its target's length. */
void fb_live_meta(const fb_scan_entry *e, fb_entry_meta *out);

/* The FB_DIFFERS_* bits metadata alone shows between a stored entry and
 * another one (stored or live, as fb_live_meta gives it): type (a hardlink
 * counts as a file), a file's size (FB_DIFFERS_CONTENT), a symlink's
 * target, mode, owner, mtime. The bytes of two files of one size, and the
 * hardlink structure, are the caller's. */
unsigned fb_meta_differs(const fb_entry_meta *stored, const char *stored_target,
                         const fb_entry_meta *now, const char *now_target,
                         const fb_live_rules *rules);

/* What differs between live entry `index` of the walk and stored (a
 * manifest entry; stored_sha256 is the content's SHA-256 for a file or a
 * hardlink, a hardlink's being its file's). *differs gets FB_DIFFERS_* bits
 * (never FB_DIFFERS_LINK). Returns 0, FB_ENOMEM, FB_EIO (the hash itself). */
int fb_live_compare(fb_live *lv, size_t index, const fb_manifest_entry *stored,
                    const uint8_t *stored_sha256, const fb_live_rules *rules, unsigned *differs,
                    fb_error *err);

/* The same for an entry of fb_live_lstat (nothing cached). */
int fb_live_compare_entry(fb_live *lv, const fb_scan_entry *live, const fb_manifest_entry *stored,
                          const uint8_t *stored_sha256, const fb_live_rules *rules,
                          unsigned *differs, fb_error *err);

/* The SHA-256 of live entry `index` if fb_live_compare read it, else NULL. */
const uint8_t *fb_live_sha256(const fb_live *lv, size_t index);

/* Did a file change while it was read (size, mtime or ctime moved between
 * the fstat before and the one after)? */
bool fb_live_stat_changed(const struct stat *before, const struct stat *after);

#endif
