/* The session as it stood at one backup (SPEC "Other commands", `recover`;
 * "The mount", `as-of/<backup_id>/`): built once here, from the session's
 * index and manifests, for both.
 *
 * Which backups the tree is made of (its sources, oldest first):
 *   - a full backup: itself;
 *   - an incremental: its base full backup (the manifest's and index's
 *     `base`: the newest full at the time it was taken), then every
 *     incremental whose `base` is that same full and whose seq is above the
 *     base's and at most the incremental's own, in seq order. An incremental
 *     of an older or newer base is never mixed in.
 *   - with FB_AS_OF_ONLY: the backup alone, whatever its type.
 *
 * How they are laid over each other (later sources over earlier ones):
 *   - an entry of a later source replaces the entry at the same path, with
 *     its type, metadata and content;
 *   - incrementals delete nothing: their manifests list only the entries
 *     their include patterns took, and record no removals, so a path that a
 *     later incremental does not hold keeps the entry of the last source
 *     that does;
 *   - the result is still a tree: where a later source puts a non-directory
 *     at the path of a directory, or an entry has no directory at its parent
 *     path, everything below that path from every source is left out;
 *   - a hardlink links to an entry of its own source. When that entry was
 *     replaced (or left out) by the layering, the hardlink keeps the content
 *     it had in its source: the first such hardlink (in path order) becomes
 *     a file whose data is the replaced entry's (data_path says where its
 *     bytes are in the source's archive), and the others of the same entry
 *     link to it.
 *
 * Memory: the tree owns one copy of each entry it holds; manifests are read
 * one at a time while it is built and freed, and an entry that a later
 * source replaces is freed then. Nothing of the store stays open.
 *
 * Not thread-safe while built; a built tree is immutable and may be read by
 * many threads. */
#ifndef FB_AS_OF_H
#define FB_AS_OF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fb_error.h"
#include "fb_index.h"
#include "fb_manifest.h"
#include "fb_store.h"
#include "fb_types.h"

/* One backup the tree is made of. */
typedef struct fb_as_of_source {
    char id[FB_BACKUP_ID_LEN + 1];
    uint64_t seq;
    fb_backup_type type;
    /* What its manifest said when the tree was built: a reader of the
     * archive later checks it is still the same one. */
    uint64_t archive_size;
    uint8_t archive_sha256[FB_SHA256_LEN];
    size_t manifest_entries; /* entries its manifest lists */
    size_t held;             /* entries of the tree taken from it */
} fb_as_of_source;

/* One entry of the tree. */
typedef struct fb_as_of_entry {
    /* Owned. As its source's manifest stores it (path, type, metadata,
     * SHA-256, data offset in that source's tar stream, symlink target or
     * hardlink link), except for the hardlink rule above: a hardlink's
     * `target` always names an entry of the tree from the same source, and
     * a hardlink made a file has type FB_ENTRY_FILE with its content's size,
     * SHA-256 and offset. */
    fb_manifest_entry e;
    uint32_t source;  /* index in fb_as_of.sources */
    /* Owned; NULL, or for a hardlink made a file: the path of the entry of
     * the source's manifest (and tar stream) that holds its bytes. */
    char *data_path;
} fb_as_of_entry;

typedef struct fb_as_of {
    char session_id[FB_SESSION_ID_MAX + 1];
    char backup_id[FB_BACKUP_ID_LEN + 1]; /* the backup the tree is "as of" */
    fb_backup_type type;                  /* its type */
    char base[FB_BACKUP_ID_LEN + 1];      /* an incremental's base id ("" for none) */
    /* Only with FB_AS_OF_WITHOUT_BASE: the base is gone, the tree is the
     * incrementals alone. */
    bool base_missing;
    fb_as_of_source *sources; /* oldest (lowest seq) first; the last is backup_id */
    size_t n_sources;
    fb_as_of_entry *entries;  /* sorted by path (strcmp): a directory before its contents */
    size_t n_entries;
    fb_manifest_totals totals; /* of entries, as a manifest counts them */
} fb_as_of;

enum {
    /* The backup's own entries only (recover --only; a backup's own
     * directory in the mount). */
    FB_AS_OF_ONLY = 1u << 0,
    /* An incremental whose base is gone gives the incrementals of that base
     * up to it, with base_missing set (the mount's as-of/), instead of
     * FB_ENOTFOUND (recover). */
    FB_AS_OF_WITHOUT_BASE = 1u << 1,
};

/* Builds the tree of backup_id (a full id, resolved by the caller) of
 * session_id, choosing its sources through idx (the session's index, as
 * fb_store_load_index gives it) and reading their manifests from store.
 * Each manifest must agree with idx on its type, seq and base.
 * Returns 0 (*out owned, free with fb_as_of_free) or:
 *   FB_ENOTFOUND  backup_id is not in idx; a source's manifest is missing;
 *                 an incremental whose base full backup is gone (removed, or
 *                 none was taken before it) without FB_AS_OF_WITHOUT_BASE:
 *                 the message names the session, the backup and the base;
 *   FB_ECORRUPT   a manifest fails to parse or disagrees with idx;
 *   FB_EIO, FB_ENOMEM, FB_EMISUSE (a missing argument).
 * Every message names the session and the backup concerned. */
int fb_as_of_build(const fb_store *store, const char *session_id, const fb_index *idx,
                   const char *backup_id, unsigned flags, fb_as_of **out, fb_error *err);

/* Whether backup_id's tree has its base, without reading a manifest: 0 for
 * a full backup or an incremental whose base is in idx; FB_ENOTFOUND for an
 * unknown id or an incremental whose base is gone ("session S: backup X is
 * an incremental whose base full backup Y is gone (removed or never
 * taken)", or "... with no base full backup (none had been taken before
 * it)"); FB_ECORRUPT for a base that is not an older full backup.
 * fb_as_of_build makes the same check. */
int fb_as_of_check_base(const fb_index *idx, const char *backup_id, fb_error *err);

/* The sources fb_as_of_build would choose for backup_id, without reading
 * a manifest: their indexes in idx->records, oldest first, in out (room
 * for idx->n), their count in *n_out, and whether the base is gone in
 * *base_missing (may be NULL). The mount's as-of/ names a tree by them, so
 * that a removed base or incremental gives it new inode numbers. Same
 * errors as fb_as_of_check_base (none for a missing base with
 * FB_AS_OF_WITHOUT_BASE). */
int fb_as_of_plan(const fb_index *idx, const char *backup_id, unsigned flags, size_t *out,
                  size_t *n_out, bool *base_missing, fb_error *err);

/* Restricts a tree just built (before it is shared) to a selection
 * (recover --path): the entries that at least one of the patterns matches
 * (fb_path_pattern_matches: fnmatch with FNM_PATHNAME, a pattern ending in
 * '/' takes that directory and everything below it), and the directories
 * above them, so that the result is still a tree. A selected hardlink
 * whose file is not selected keeps its content by the layering's rule
 * (above): the first such hardlink of the file (in path order) becomes a
 * file with its data (data_path), the others link to it. Sources that hold
 * no entry of the selection are dropped (nothing of them need be read);
 * totals and `held` are counted again. matches[p] gets how many entries
 * pattern p matched (0: the caller reports it). Returns 0, FB_ECORRUPT (a
 * hardlink whose file is not in the tree), FB_ENOMEM, FB_EMISUSE; after an
 * error the tree is only fit to be freed. */
int fb_as_of_select(fb_as_of *tree, const char *const *patterns, size_t n_patterns,
                    size_t *matches, fb_error *err);

/* Accepts NULL. */
void fb_as_of_free(fb_as_of *tree);

/* The index in tree->entries of the entry whose path is exactly p[0..n),
 * or -1. O(log n). */
long fb_as_of_find(const fb_as_of *tree, const char *p, size_t n);

#endif
