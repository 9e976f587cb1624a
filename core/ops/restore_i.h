/* Private to restore: the state of one restore run, shared by its steps
 * (core/ops/restore.c), the extraction in a child (restore_extract.c), the
 * change list (restore_changes.c) and the move into place
 * (restore_place.c). */
#ifndef FB_RESTORE_I_H
#define FB_RESTORE_I_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "fb_archive_reader.h"
#include "fb_as_of.h"
#include "fb_lock.h"
#include "fb_manifest.h"
#include "fb_restore.h"
#include "fb_store.h"

/* Staging dirs are named as FB_RESTORE_STAGING_PREFIX (fb_types.h) says:
 * the next restore of the session, and cleanup, clear leftovers by that
 * name. */

typedef struct run {
    fb_store *store;
    const fb_restore_request *req;
    fb_restore_result *out;
    fb_error *err;
    char label[FB_SESSION_ID_MAX + FB_BACKUP_ID_LEN + 2]; /* "<sid>/<backup_id>" */
    /* What is restored: the backup's as-of tree, or with req->only its own
     * entries (fb_as_of.h). */
    fb_as_of *tree;
    /* Into the session dir with req->only or req->paths: the tree's entries
     * are merged into the live ones and nothing is removed but, with paths
     * alone, what they match and the tree lacks (else the session dir is
     * swapped for the tree). */
    bool merge;
    /* While the tree's sources are extracted in turn (restore_layers.c):
     * the one being extracted (label names it), its manifest, its entries
     * sorted by path, and per manifest entry the tree entry written from
     * it, or -1 for one only verified (a later source replaces it). */
    size_t layer;
    fb_manifest m;
    size_t *by_path;
    long *plan;
    uint64_t bytes_before; /* file bytes the earlier sources wrote */
    int store_session_fd; /* .flowloom/backups/<sid> */
    fb_archive_reader *reader;
    /* The destination: dest_name inside parent_fd, which also holds the
     * staging dir. parent_fd is -1 in a dry run whose parent is absent. */
    bool into_session;
    int parent_fd;
    char *parent_shown;
    char *dest_name;
    char *dest_shown;
    /* The staging dir, while it exists under its own name. */
    char staging[NAME_MAX + 1];
    bool staging_made;
    int staging_fd;
    fb_lock lock;
    size_t changes_cap;
} run;

/* Setuid, setgid and sticky bits are never restored, nor write permission
 * for others: a restored tree must not hand privileges or write access to
 * other local users (RELIABILITY A7), and FlowLoom sessions never need it. */
static inline uint32_t restore_mode(uint32_t mode)
{
    return mode & 0777u & ~0002u;
}

static inline int restore_oom(fb_error *err)
{
    return fb_error_set(err, FB_ENOMEM, "out of memory");
}

/* A warning through the request's fb_warn_fn. */
#define fb_restore_warn(r, ...) fb_warnf((r)->req->warn, (r)->req->warn_ctx, __VA_ARGS__)

/* Extracts source r->layer of the tree (r->m, r->reader, r->plan) into
 * r's staging dir in a child process (see restore_extract.c): every entry
 * of the archive checked against its manifest, those of r->plan written.
 * Adds to r->out's counts. Returns 0, FB_ECORRUPT (the backup is damaged),
 * FB_EINTERRUPTED (req->cancel), FB_EIO, FB_ENOMEM. */
int fb_restore_extract(run *r);

/* ---- restore_layers.c ---- */

/* Every source of r->tree, oldest first, into the staging dir: its
 * manifest read again and checked to be the one the tree was built from,
 * its archive opened and checked, then fb_restore_extract. */
int fb_restore_extract_tree(run *r);

/* FB_EINTERRUPTED when req->cancel is set, else 0. */
int fb_restore_check_cancel(run *r);

/* ---- restore_changes.c ---- */

/* Fills r->out->changes for the destination as it is now (sorted by path).
 * For an incremental into the session dir this is also the refusal
 * (FB_EINVAL) of an entry that would be written through a symlink or
 * replace a directory. A live file that cannot be read counts as modified,
 * with a warning. Returns 0, FB_EINVAL, FB_EIO (the walk), FB_ENOMEM. */
int fb_restore_compute_changes(run *r);

/* Frees and empties res's change list. */
void fb_restore_changes_clear(fb_restore_result *res);

/* ---- restore_place.c ---- */

/* fb_restore_walk_parent's results besides 0 and errors. */
enum { FB_RESTORE_WALK_ABSENT = 1, FB_RESTORE_WALK_CONFLICT = 2 };

/* Opens the parent directory of relative path below root_fd one component
 * at a time with O_NOFOLLOW (fb_open_parent_beneath). With create, missing
 * components are made (0700; their stored mode comes later). Returns 0
 * (*pfd owned), FB_RESTORE_WALK_ABSENT (a component is missing),
 * FB_RESTORE_WALK_CONFLICT (a component is a symlink or not a directory:
 * r->err holds an FB_EINVAL message), or a negative code. */
int fb_restore_walk_parent(run *r, int root_fd, const char *root_shown, const char *path,
                           bool create, int *pfd, const char **base);

/* The destination as it is now: *exists, and its stat. Refuses a symlink,
 * a non-directory, and (for --target) a non-empty directory. */
int fb_restore_check_destination(run *r, bool *exists, struct stat *st);

/* syncfs of fd's file system; the error names what. */
int fb_restore_sync_fs(run *r, int fd, const char *what);

/* Moves the verified staging tree into place (docs/restore.md, step 7). */
int fb_restore_place(run *r);

/* Gives every directory of r->tree below root_fd its stored mode, mtime
 * (and owner with same_owner), deepest first: after a merge into the
 * session dir, and in the staging dir of a tree of several backups, whose
 * directories may hold files the extraction of an earlier backup wrote. */
int fb_restore_apply_dir_attrs(run *r, int root_fd, const char *root_shown);

/* Removes the staging dir, whatever it holds now (what names it in the
 * warning if that fails); it is not retried. */
void fb_restore_remove_staging(run *r, const char *what);

#endif
