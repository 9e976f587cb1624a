/* The contents of the mount's views (core/mount/mount_asof.c,
 * core/mount/mount_history.c): `<session>/as-of/<backup_id>/` and
 * `<session>/history/`, each built as an mt_contents whose entries name the
 * backup their bytes are in (mt_contents.sources), so that the tree serves
 * them like a backup's own entries: same nodes, inode ranges, attributes,
 * budget and eviction.
 *
 * A view is named by a signature: the SHA-256 of the ids and archive hashes
 * of the backups it is made of, read from the session's index without any
 * manifest. The tree compares it at every refresh; a view whose signature
 * changed (a base full removed, a backup added to the history) is replaced
 * by a new node with new inode numbers, so that a number the kernel caches
 * never names other contents. A load checks that what it built has the
 * signature the node was made for. */
#ifndef FB_MOUNT_VIEWS_I_H
#define FB_MOUNT_VIEWS_I_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "fb_index.h"
#include "fb_manifest_cache.h"
#include "fb_store.h"
#include "mount_contents_i.h"

/* What a view's loader needs (copied under the tree's lock, used without). */
typedef struct mt_view_load {
    const fb_store *store;
    fb_manifest_cache *manifest_cache; /* may be NULL */
    const char *session_id;
    const char *backup_id;  /* as-of: the backup; history: unused */
    int64_t created_at;     /* for implied directories */
    uid_t uid;              /* owner of implied directories and synthetic links */
    gid_t gid;
    uint8_t sig[FB_SHA256_LEN];
} mt_view_load;

/* ------------------------------------------------------ mount_asof.c */

/* The signature of backup_id's as-of tree in idx; false when idx has no
 * such backup (a damaged base relation still gets a signature: the load
 * then reports it). */
bool mt_asof_signature(const fb_index *idx, const char *backup_id, uint8_t sig[FB_SHA256_LEN]);
/* Builds the as-of tree (fb_as_of_build with FB_AS_OF_WITHOUT_BASE) from
 * a fresh read of the index. FB_ENOTFOUND when its signature is no longer
 * l->sig; the errors of fb_as_of_build and mt_contents_build otherwise. */
int mt_asof_load(const mt_view_load *l, mt_contents **out, fb_error *err);

/* --------------------------------------------------- mount_history.c */

/* The signature of the session's history: every backup of idx. */
void mt_history_signature(const fb_index *idx, uint8_t sig[FB_SHA256_LEN]);
/* Builds history/ from a fresh read of the index, reading each manifest
 * once, one at a time. FB_ENOTFOUND when its signature is no longer l->sig. */
int mt_history_load(const mt_view_load *l, mt_contents **out, fb_error *err);

#endif
