/* A local cache of manifests already read, in a binary form that loads
 * without parsing JSON, for the mount's first touch of a backup (as
 * restic keeps ~/.cache/restic and borg ~/.cache/borg). It lives outside
 * the store, is never needed (a miss reads manifest.json) and is never the
 * truth: the store stays plain files.
 *
 * An entry is the manifest of one manifest.json, keyed by that file's
 * identity: device, inode, size, mtime and ctime. Any write to the file
 * changes its ctime; a replaced file is another inode. A file changed less
 * than FB_MANIFEST_CACHE_SETTLE_SECONDS ago is not cached (timestamps
 * come from a coarse clock: a write in the same tick as the read would
 * keep the key). Each entry carries an XXH64 of itself against torn or
 * rotted files, and what it holds is checked again by every rule of
 * fb_manifest_parse (fb_manifest_check) when it loads: a damaged or forged
 * entry is a miss, never a manifest the JSON would have refused.
 *
 * Entries are written to a temporary name and renamed (not fsynced: a
 * torn entry fails its checksum and is a miss). The directory is bounded:
 * past FB_MANIFEST_CACHE_BYTES_MAX the entries used longest ago go.
 *
 * Threads: one fb_manifest_cache may be used by any number of threads at
 * once; processes sharing the directory only ever rename whole entries. */
#ifndef FB_MANIFEST_CACHE_H
#define FB_MANIFEST_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "fb_error.h"
#include "fb_manifest.h"

#define FB_MANIFEST_CACHE_SETTLE_SECONDS 2
#define FB_MANIFEST_CACHE_BYTES_MAX (256u * 1024 * 1024)

typedef struct fb_manifest_cache fb_manifest_cache;

/* Where the cache lives by default: $XDG_CACHE_HOME/flowloom-backup, else
 * $HOME/.cache/flowloom-backup (relative or empty settings are ignored, as
 * the XDG spec says). Returns a malloc'd path, or NULL when neither is set
 * (or out of memory): then there is no cache. */
char *fb_manifest_cache_default_dir(void);

/* Opens (creating it, and its parents, mode 0700) the cache directory
 * dir/manifests. Refused (FB_EINVAL naming the path and why) when it is a
 * symlink, not a directory, or not owned by this user: another user's
 * entries would be trusted. FB_EIO when it cannot be made. *out is freed
 * with fb_manifest_cache_free. */
int fb_manifest_cache_open(const char *dir, fb_manifest_cache **out, fb_error *err);
void fb_manifest_cache_free(fb_manifest_cache *c);

/* Bounds the directory at bytes instead of FB_MANIFEST_CACHE_BYTES_MAX
 * (checked after each entry written). Call before c is shared. */
void fb_manifest_cache_set_bytes_max(fb_manifest_cache *c, uint64_t bytes);

/* What fb_store_read_manifest does (same checks, same errors), with the
 * manifest taken from c when c holds one for this very manifest.json, and
 * put into c otherwise (best effort: a cache that cannot be written only
 * counts a failure). c may be NULL: then it is fb_store_read_manifest.
 * *hit (may be NULL) tells whether c answered. A manifest c answered
 * holds its strings in one block (fb_manifest.strings); it is freed with
 * fb_manifest_fini like any other. */
int fb_manifest_cache_read(fb_manifest_cache *c, int session_fd, const char *session_id,
                           const char *backup_id, fb_manifest *out, bool *hit, fb_error *err);

typedef struct fb_manifest_cache_stats {
    uint64_t hits;
    uint64_t misses;   /* no entry, a stale one or a refused one */
    uint64_t refused;  /* entries that failed their checksum or a rule */
    uint64_t stored;
    uint64_t store_failures;
    uint64_t pruned;   /* entries removed to stay under the bound */
} fb_manifest_cache_stats;

void fb_manifest_cache_get_stats(const fb_manifest_cache *c, fb_manifest_cache_stats *out);

#endif
