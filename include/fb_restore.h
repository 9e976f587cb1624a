/* Restoring a backup (SPEC "Other commands", `recover` / `restore`).
 *
 * What is restored is the session as it stood at the backup: its as-of
 * tree (fb_as_of.h): a full backup as itself, an incremental as its base
 * full with every incremental of that base up to it laid over it; with
 * `only`, the backup's own entries alone. An incremental whose base is gone
 * is refused (FB_ENOTFOUND) unless `only`.
 *
 * The archives of the tree's backups are extracted, oldest first, into one
 * fresh 0700 staging directory created next to the destination (same file
 * system, so the final renames are atomic), every entry of every archive
 * checked against its manifest as it is read, and each entry of the tree
 * written from the backup that holds it; only a complete and verified tree
 * is then moved into place:
 *   - into the session dir: the staging dir and the session dir are swapped
 *     with renameat2(RENAME_EXCHANGE), then the old tree is deleted: the
 *     session dir becomes equal to the tree;
 *   - `only` or `paths` into the session dir: only the backup's (or the
 *     selected) entries are renamed over the live ones (directories are
 *     merged and get their stored mode and mtime), nothing is removed; a
 *     path component of the session dir that is a symlink, or a directory
 *     where the backup has a file (and the reverse), is refused before
 *     anything is moved;
 *   - --target DIR (absent or an empty directory, never a symlink): the
 *     staging dir is renamed to DIR; nothing else is touched.
 * Into the session dir a full safety backup of the current state is taken
 * first (note "pre-recover <backup_id>"), once the backup has been extracted
 * and verified, so a corrupt backup leaves the store and the session dir as
 * they were. See docs/restore.md for the rules and the reasons. */
#ifndef FB_RESTORE_H
#define FB_RESTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fb_config.h"
#include "fb_error.h"
#include "fb_live.h"
#include "fb_lock.h"
#include "fb_store.h"
#include "fb_types.h"

typedef struct fb_restore_request {
    const char *session_id;
    const char *backup;        /* backup id or "latest"; NULL = "latest" */
    const char *target_dir;    /* NULL: the session directory */
    bool dry_run;              /* compute the change list, touch nothing */
    bool safety_backup;        /* into the session dir: full backup first */
    bool same_owner;           /* restore stored uid/gid (else the caller owns
                                * everything restored; RELIABILITY A8) */
    bool only;                 /* the backup's own entries, nothing removed */
    /* --path: restore only the entries of the tree (with `only`, of the
     * backup's own entries) that one of these patterns matches
     * (fb_as_of_select), with the directories above them. Into the session
     * dir they are merged into it as with `only`, and what the patterns
     * match there that the selection does not hold is removed (not with
     * `only`): the part of the session they select becomes equal to the
     * backup's, the rest is not touched. A pattern that matches nothing is
     * FB_ENOTFOUND before anything is touched. Borrowed; n_paths 0: the
     * whole tree. */
    const char *const *paths;
    size_t n_paths;
    int64_t now;               /* the safety backup's time */
    const fb_config *config;   /* borrowed: the safety backup's settings */
    double lock_wait_seconds;  /* the session lock, as for backup */
    fb_lock_wait_fn lock_waiting; /* told when the lock is busy and waited for; may be NULL */
    void *lock_waiting_ctx;
    fb_warn_fn warn;
    void *warn_ctx;
    /* Phase "extract": file bytes written into the staging dir of the
     * restored tree's total (all its backups), every 50 ms at most; then the safety backup's
     * phases (fb_backup.h). On the caller's thread. May be NULL. */
    fb_progress_fn progress;
    void *progress_ctx;
    /* Polled between entries and data blocks of the extraction and between
     * the steps before the tree is moved into place: once set, the staging
     * dir is removed and FB_EINTERRUPTED returned, the destination
     * untouched. Once the move has begun it is finished. May be NULL. */
    const fb_cancel *cancel;
} fb_restore_request;

/* What a restore does (or, with dry_run, would do) to one path of the
 * destination, in the words `diff --live` uses (fb_live.h):
 *   FB_CHANGE_ADDED     in the backup, absent from the destination;
 *   FB_CHANGE_MODIFIED  content differs: type, size, SHA-256, symlink
 *                       target, or a live file that cannot be read (warned);
 *   FB_CHANGE_REMOVED   into the session dir without `only`: not in the
 *                       restored tree (with `paths`: matched by a pattern,
 *                       not in the selection, and nothing below it stays);
 *   FB_CHANGE_CHANGED   same content, metadata differs: mode (as restored),
 *                       mtime (and owner with same_owner). */
typedef struct fb_restore_change {
    char *path; /* owned, raw bytes, relative to the destination */
    fb_change_kind kind;
} fb_restore_change;

/* One backup the restored tree came from. */
typedef struct fb_restore_source {
    char id[FB_BACKUP_ID_LEN + 1];
    fb_backup_type type;
    size_t entries; /* entries of the tree taken from it */
} fb_restore_source;

typedef struct fb_restore_result {
    char backup_id[FB_BACKUP_ID_LEN + 1];        /* the backup restored */
    fb_backup_type type;
    bool only;               /* its own entries only */
    /* With req->paths: the entries the patterns selected, directories above
     * them included (0 without --path); also set by a dry run. */
    uint64_t selected;
    /* Owned: the backups the tree came from, oldest first (the base full,
     * then its incrementals up to backup_id; backup_id alone for a full or
     * with `only`). */
    fb_restore_source *sources;
    size_t n_sources;
    char safety_backup_id[FB_BACKUP_ID_LEN + 1]; /* "" when none was taken */
    bool into_session;       /* false for --target */
    bool dry_run;
    char *destination;       /* owned: the directory restored into */
    uint64_t entries;        /* entries of the tree extracted (0 for a dry run) */
    uint64_t files;          /* file and hardlink entries extracted */
    uint64_t bytes;          /* file bytes extracted and verified */
    /* The change list, sorted by path (strcmp). In a real run it is computed
     * just before the tree is moved into place. */
    fb_restore_change *changes;
    size_t n_changes;
    size_t n_added, n_modified, n_removed, n_changed;
    uint64_t leftovers_removed; /* .restore-* of interrupted runs cleared */
    double seconds;
} fb_restore_result;

void fb_restore_result_init(fb_restore_result *r);
void fb_restore_result_fini(fb_restore_result *r);

/* Returns 0 or:
 *   FB_EINVAL     bad session id or backup spec; the target is not empty,
 *                 not a directory or a symlink; the session dir is a
 *                 symlink; with `only`, the backup would have to write
 *                 through a symlink or replace a directory of the session
 *                 dir;
 *   FB_ENOTFOUND  the session has no backups, no such backup; a --path
 *                 pattern that matches nothing (the message names it); an
 *                 incremental whose base full backup is gone, without
 *                 `only` (the message says so and names --only);
 *   FB_EBUSY      the session lock (safety backup or the move) timed out;
 *   FB_ECORRUPT   the backup fails a check (manifest, archive SHA-256, a
 *                 frame, a tar header that differs from its manifest entry,
 *                 a file's size or SHA-256, an unsafe entry);
 *   FB_EINTERRUPTED  req->cancel was set before the move began: "interrupted:
 *                 the session is unchanged" (into the session dir);
 *   FB_EIO, FB_ENOMEM.
 * On any error before the move the destination is untouched and the staging
 * dir is removed. `out` must be initialised; on error it holds what was
 * known (backup id, safety backup id). */
int fb_restore_run(fb_store *store, const fb_restore_request *req, fb_restore_result *out,
                   fb_error *err);

#endif
