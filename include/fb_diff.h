/* Comparing two backups, or a backup and the live session directory (SPEC
 * "Other commands", `diff`), from the manifests alone (no archive is read).
 *
 * Every path that differs gives one item, sorted by path bytewise (strcmp),
 * of one of the kinds of fb_live.h (the ones recover's change list uses):
 *   added     in b (or live) only;
 *   removed   in a only;
 *   modified  the content differs: the entry type (file, dir, symlink),
 *             a file's size or SHA-256, a symlink's target;
 *   changed   same content, metadata only: mode, owner (uid/gid), mtime
 *             (seconds or nanoseconds), or the hardlink structure.
 * A modified item also lists the metadata that changed with it. A hardlink
 * entry is compared as the file it links to (its content is that file's
 * SHA-256); a file becoming a hardlink (or linking to another path) is a
 * "link" change. Directory mtimes are compared too, so adding or removing a
 * file in a subdirectory also shows that directory as changed (mtime), as
 * rsync -i does.
 *
 * Incrementals. An incremental holds only the entries its include patterns
 * select. When either side is an incremental and options.include is given
 * (the config's incremental.include, normally), the comparison is restricted
 * to that scope on BOTH sides: non-directory entries the patterns do not
 * select are left out (so logs absent from an incremental do not show as
 * removed), directories the patterns do not select themselves (kept only as
 * parents in an incremental) are compared when present on both sides but
 * never reported as added or removed, and a hardlink to a path outside the
 * scope counts as a plain file. fb_diff.scoped says whether this applied.
 * The scope is today's patterns: if they changed since the incremental was
 * taken, the result reflects the current ones. Without options.include the
 * entries are compared exactly as each manifest holds them.
 *
 * Live. The session directory is walked exactly as a backup of a's type
 * would walk it (core/store/scan.c: no symlink followed, special files skipped
 * with a warning, an incremental's include patterns, a mount point of another
 * file system neither entered nor listed, with a warning), and each entry is
 * compared by core/store/live.c, as recover's change list is. A live
 * regular file is hashed only when the quick check fails: same size and
 * same mtime (seconds and nanoseconds) as in the manifest means unmodified,
 * a different size means modified without reading it; with
 * options.checksum every live file is hashed. Files are opened relative to
 * source_fd component by component with O_NOFOLLOW (O_NONBLOCK, so a FIFO
 * swapped in cannot block) and must still be the inode the walk saw; one
 * that vanished or was replaced before it was read, or that cannot be
 * opened or read (EACCES, EIO, ...), is reported as modified with a warning
 * naming it ("cannot read <path> (<reason>): counted as modified"). A file
 * that changes while it is hashed is named in a warning. Each inode is
 * hashed at most once. The stored entries at and below a mount point the
 * walk left out are not compared either: they are not reported as removed,
 * since what is there now was not looked at.
 *
 * Not thread-safe; an fb_diff is owned by its caller. */
#ifndef FB_DIFF_H
#define FB_DIFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fb_config.h"
#include "fb_error.h"
#include "fb_live.h"
#include "fb_manifest.h"
#include "fb_types.h"

/* One side of an item. */
typedef struct fb_diff_side {
    bool present;
    fb_entry_meta meta;  /* as stored (a hardlink keeps type HARDLINK) */
    char *target;        /* owned: symlink target or hardlink link; NULL otherwise */
    /* Files and hardlinks: the content's SHA-256 (a hardlink's is its file's).
     * Always set for a manifest side; for the live side only when it was
     * hashed. */
    bool has_sha256;
    uint8_t sha256[FB_SHA256_LEN];
} fb_diff_side;

typedef struct fb_diff_item {
    fb_change_kind kind;
    unsigned changes;   /* FB_DIFFERS_* bits (fb_live.h) */
    char *path;         /* owned, raw bytes */
    fb_diff_side a;     /* present unless added */
    fb_diff_side b;     /* present unless removed */
} fb_diff_item;

typedef struct fb_diff {
    fb_diff_item *items; /* owned, sorted by path (strcmp) */
    size_t n;
    size_t cap;
    size_t n_added, n_removed, n_modified, n_changed;
    bool scoped;           /* restricted to the include patterns (see above) */
    uint64_t files_hashed; /* live: files read and hashed */
    uint64_t bytes_hashed;
} fb_diff;

typedef struct fb_diff_options {
    /* Scope applied when a side is an incremental (see above); NULL: compare
     * every entry. For --live against an incremental it is also the walk's
     * filter. Borrowed. */
    const fb_config *include;
    bool checksum;       /* live: hash every file, not only those failing the quick check */
    fb_warn_fn warn;     /* live: vanished / changed / skipped files */
    void *warn_ctx;
    /* Test hook (RELIABILITY F14, as in fb_backup_request): live only,
     * called once after the walk, before any file is opened, so a test can
     * change the tree in between. NULL in normal use. */
    void (*after_scan)(void *ctx);
    void *after_scan_ctx;
} fb_diff_options;

void fb_diff_init(fb_diff *d);
void fb_diff_fini(fb_diff *d);

/* Compares a (older) with b (newer). opts may be NULL (no scope).
 * out must be initialised; previous items are dropped. Returns 0,
 * FB_ECORRUPT (a manifest with duplicate paths or a hardlink to something
 * that is not one of its file entries: names the backup and path),
 * FB_EMISUSE, FB_ENOMEM. */
int fb_diff_manifests(const fb_manifest *a, const fb_manifest *b, const fb_diff_options *opts,
                      fb_diff *out, fb_error *err);

/* Compares backup a with the session directory open on source_fd (borrowed,
 * O_DIRECTORY; never an entry itself). source_name names it in messages.
 * Returns 0, FB_EIO (a directory that cannot be listed or an entry that
 * cannot be stat'ed: names it; a file that cannot be read is only a
 * warning), FB_ECORRUPT, FB_EMISUSE, FB_ENOMEM. */
int fb_diff_live(const fb_manifest *a, int source_fd, const char *source_name,
                 const fb_diff_options *opts, fb_diff *out, fb_error *err);

/* The diff as pretty JSON (malloc'd, trailing newline):
 * {"a": a_name, "b": b_name, "scoped": bool,
 *  "summary": {"added", "removed", "modified", "changed"},
 *  "hashed": {"files", "bytes"},
 *  "items": [{"path", ["path_b64"], "kind", "changes": [names],
 *             "a": side|null, "b": side|null}]}
 * where a side is {"type", "mode", "uid", "gid", "mtime", "mtime_nsec",
 * "size", ["sha256"], ["target"|"link" (+ "_b64")]}. Names that are not
 * valid UTF-8 carry their exact bytes in base64 in "<key>_b64", as in the
 * manifest. a_name / b_name are backup ids or "live". */
int fb_diff_to_json(const fb_diff *d, const char *a_name, const char *b_name, char **out,
                    size_t *out_len, fb_error *err);

#endif
