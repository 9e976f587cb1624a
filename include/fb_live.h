/* How one path differs between a backup and another backup or the live
 * session directory: the one vocabulary of `diff` (fb_diff.h) and of
 * `recover`'s change list (fb_restore.h), so that both name a difference
 * the same way. The comparison with the live tree itself is private to core
 * (core/store/live.c, core/store/live_i.h).
 *
 * A path is
 *   added     only in the newer side (for a restore: the backup, not live);
 *   removed   only in the older side (for a restore: live, not the backup);
 *   modified  its content differs: the entry type (file, dir, symlink), a
 *             file's size or SHA-256, a symlink's target; a live file that
 *             cannot be read counts as modified (with a warning);
 *   changed   same content, metadata only: mode, owner, mtime, or the
 *             hardlink structure. */
#ifndef FB_LIVE_H
#define FB_LIVE_H

#include <stddef.h>

typedef enum fb_change_kind {
    FB_CHANGE_ADDED = 0,
    FB_CHANGE_REMOVED,
    FB_CHANGE_MODIFIED, /* content */
    FB_CHANGE_CHANGED,  /* metadata only */
} fb_change_kind;

/* What differs, as bits (0 for an added or removed path). */
enum {
    FB_DIFFERS_TYPE = 1u << 0,    /* file / dir / symlink (a hardlink counts as a file) */
    FB_DIFFERS_CONTENT = 1u << 1, /* file size or SHA-256, or a live file not readable */
    FB_DIFFERS_TARGET = 1u << 2,  /* symlink target */
    FB_DIFFERS_LINK = 1u << 3,    /* file <-> hardlink, or a hardlink to another path */
    FB_DIFFERS_MODE = 1u << 4,    /* permission bits */
    FB_DIFFERS_OWNER = 1u << 5,   /* uid or gid */
    FB_DIFFERS_MTIME = 1u << 6,   /* seconds or nanoseconds */
};
/* Bits that make a path "modified" rather than "changed". */
#define FB_DIFFERS_CONTENT_BITS (FB_DIFFERS_TYPE | FB_DIFFERS_CONTENT | FB_DIFFERS_TARGET)

/* FB_CHANGE_MODIFIED when differs holds a content bit, else FB_CHANGE_CHANGED
 * (differs must not be 0). */
fb_change_kind fb_change_kind_of(unsigned differs);

/* "added", "removed", "modified", "changed". */
const char *fb_change_kind_name(fb_change_kind kind);

/* Name of one FB_DIFFERS_* bit: "type", "content", "target", "link", "mode",
 * "owner", "mtime"; NULL for anything else. */
const char *fb_differs_name(unsigned bit);

/* The names of the bits set in differs, comma separated in the order above
 * ("content,mode"), "" for none; cut to fit size (>= 1). */
void fb_differs_format(unsigned differs, char *buf, size_t size);

#endif
