/* The contents of one backup as the mount shows them (core/mount/mount_contents.c):
 * its manifest, one node per entry plus the directories its paths imply,
 * parents resolved, hardlinks pointing at their file, and each directory's
 * children sorted by name for lookups. Built from a parsed manifest, then
 * read-only: safe to read from any thread while the tree keeps it alive. */
#ifndef FB_MOUNT_CONTENTS_I_H
#define FB_MOUNT_CONTENTS_I_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "fb_error.h"
#include "fb_manifest.h"

#define MT_NONE UINT32_MAX
/* Parent index of the entries at the top of a backup. */
#define MT_TOP (UINT32_MAX - 1)
/* Entries plus implied directories must fit in uint32 indexes below MT_TOP. */
#define MT_MAX_NODES (UINT32_MAX / 4)

/* ---------------------------------------------------------------- types */

typedef struct mt_node {
    const char *name;  /* last path component, NUL-terminated */
    uint32_t name_len;
    uint32_t entry;    /* manifest entry index; MT_NONE for an implied directory */
    uint32_t parent;   /* node index or MT_TOP */
    uint32_t target;   /* node whose inode/attributes this name shows (hardlink -> file) */
    uint32_t nlink;
    uint32_t child_start; /* directories: slice of contents.children */
    uint32_t child_count;
} mt_node;

/* A backup a view's entries are read from (as-of/ and history/): the file's
 * bytes are in that backup's archive, which must still be the one the view
 * was built from. */
typedef struct mt_source {
    char id[FB_BACKUP_ID_LEN + 1];
    uint8_t archive_sha256[FB_SHA256_LEN];
    uint64_t archive_size;
} mt_source;

typedef struct mt_contents {
    fb_manifest m;
    /* Views only (NULL for a backup's own contents, whose entries are all
     * in its own archive): the backups the entries come from, and per
     * entry its source (MT_NONE for a synthetic symlink) and the path of
     * its bytes in that source's tar stream when it is not the entry's
     * own path (NULL otherwise). */
    mt_source *sources;
    uint32_t n_sources;
    uint32_t *entry_source;
    char **data_paths;
    /* history/: names change when a backup is added, so the kernel must
     * not cache them for long (backups and as-of trees never change). */
    bool live;
    /* history/: an entry `<path>/<version>` holds the bytes of <path>
     * (when data_paths does not say otherwise). */
    bool data_in_parent;
    mt_node *nodes;
    uint32_t n_nodes;
    uint32_t *children; /* node indexes sorted by (parent, name) */
    uint32_t top_start, top_count;
    uint32_t top_subdirs;
    int64_t created_at;  /* for implied directories */
    uid_t uid;           /* owner of implied directories: the store's */
    gid_t gid;
    uint64_t bytes;      /* mt_contents_bytes, set once built */
    struct mt_contents *next_evicted; /* a batch freed after the tree's lock is dropped */
} mt_contents;

/* Builds c->nodes and c->children from c->m (filled by the caller). name
 * names the backup in messages. Returns 0, FB_ECORRUPT (a path that
 * appears twice, an empty name, an entry below a non-directory, a hardlink
 * to no file), FB_ENOMEM. */
int mt_contents_build(mt_contents *c, const char *name, fb_error *err);
/* An estimate of the heap c holds: its arrays as allocated and each string
 * as the allocator rounds it. Used for the mount's metadata budget. */
uint64_t mt_contents_bytes(const mt_contents *c);
/* Takes c->sources, entry_source and data_paths into account in
 * mt_contents_bytes; called by it. */
uint64_t mt_contents_view_bytes(const mt_contents *c);
/* The path of entry e's bytes in its source's tar stream, malloc'd:
 * data_paths[e], else (data_in_parent) the entry's path without its last
 * component, else the entry's own path. NULL when out of memory. */
char *mt_entry_data_path(const mt_contents *c, uint32_t e);
/* Frees c and what it owns (NULL is accepted). */
void mt_contents_free(mt_contents *c);
/* True when node n is a directory (an entry or an implied one). */
bool mt_node_is_dir(const mt_contents *c, uint32_t n);
/* The child named nm among children[start .. start+count), or MT_NONE. */
uint32_t mt_child_find(const mt_contents *c, uint32_t start, uint32_t count, const char *nm);

#endif
