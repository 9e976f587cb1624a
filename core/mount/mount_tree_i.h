/* The mount tree's nodes and the functions its modules share
 * (include/fb_mount_tree.h is the public side). Each section names the
 * module that defines it; a module calls only the sections above its own, so
 * calls between the modules go one way:
 *
 *   mount_asof, mount_history (mount_views_i.h)  the contents of the
 *                  as-of/ and history/ views, below everything else here
 *   mount_inodes   inode numbers: ranges handed out, number -> node
 *   mount_attr     what stat shows for each kind of node
 *   mount_nodes    sessions and backups: finding, adding, pins and kernel
 *                  counts, loading and freeing a backup's contents, and the
 *                  budget of loaded contents (least recently used evicted)
 *   mount_refresh  re-reading the root and session listings from the store
 *   mount_dirs     directory handles (opendir, readdir, closedir)
 *   mount_files    file handles and the shared archive readers
 *   mount_tree     the tree's lifetime and the other operations
 *
 * Locking: one mutex (t->lock) guards every table and node. Slow work (reading
 * an index, loading a manifest, opening an archive) runs with t->lock released:
 * a backup being worked on is pinned so that it cannot be freed, sessions are
 * never freed before the tree, and refreshes of one listing are serialised by
 * their own mutex (taken before t->lock, never while holding it). */
#ifndef FB_MOUNT_TREE_I_H
#define FB_MOUNT_TREE_I_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "fb_archive_reader.h"
#include "fb_frame_cache.h"
#include "fb_frame_prefetch.h"
#include "fb_index.h"
#include "fb_manifest_cache.h"
#include "fb_mount_tree.h"
#include "fb_store.h"
#include "mount_contents_i.h"
#include "mount_views_i.h"

/* ---------------------------------------------------------------- types */

typedef struct mt_archive mt_archive;
typedef struct mt_session mt_session;
typedef struct mt_range mt_range; /* mount_inodes.c's own */

/* What an mt_backup node is: a backup, or a view whose contents are built
 * from several backups (mount_views_i.h). Views share the backups'
 * machinery: inode ranges, kernel counts, pins, the budget and eviction. */
enum { MT_KIND_BACKUP, MT_KIND_ASOF, MT_KIND_HISTORY };

typedef struct mt_backup {
    mt_session *session;
    int kind;               /* MT_KIND_*; views are in session->views */
    /* Views: the signature of the backups the contents are built from
     * (mount_views_i.h); present is false once it no longer matches. */
    uint8_t sig[FB_SHA256_LEN];
    char id[FB_BACKUP_ID_LEN + 1];
    uint64_t seq;
    int64_t created_at;
    fb_backup_type type;
    uint64_t ino;           /* the backup directory (history: the session's history/) */
    uint64_t entries_base;  /* range of its entries, 0 until first loaded */
    uint64_t entries_count;
    bool present;           /* in the session's index at the last refresh */
    /* The id came back naming other contents (another archive hash): the
     * kernel may cache this node's numbers, attributes and pages for a year,
     * so the new backup gets a new node and this one can never load again. */
    bool retired;
    uint8_t archive_sha256[FB_SHA256_LEN];
    bool loading;
    uint64_t kref;          /* kernel lookups on the dir and its entries */
    unsigned pins;          /* in-flight operations and open dir handles */
    mt_contents *contents;
    /* Loaded backups in use order (the tree's lru_head is the latest used);
     * only backups whose contents are in memory are on the list. */
    struct mt_backup *lru_prev, *lru_next;
    uint64_t meta_bytes;    /* contents' size at the last load, kept after eviction */
    mt_archive *archive;    /* shared reader while files of it are open */
    /* What the last reader of the archive proved of its frame map, so a
     * file opened after all were closed does not prove it again. */
    fb_archive_proof proof;
    bool has_proof;
} mt_backup;

struct mt_archive {
    fb_archive_reader *reader;
    unsigned refs;          /* open files */
    /* Of refs, those of kept files (mount_files.c): files read without an
     * open, which need no contents, so they leave the backup evictable. */
    unsigned kept;
    mt_backup *backup;      /* NULL once the backup node is gone */
    mt_archive *next, *prev; /* the tree's list, freed at exit */
};

/* The views' names in a session directory. */
#define MT_ASOF_NAME "as-of"
#define MT_HISTORY_NAME "history"

/* A session's numbers: the dir, then these offsets. */
enum { MT_SINO_DIR, MT_SINO_LATEST, MT_SINO_LATEST_FULL, MT_SINO_ASOF, MT_SINO_ASOF_LATEST,
       MT_SINO_HISTORY, MT_SINO_COUNT };

struct mt_session {
    char id[FB_SESSION_ID_MAX + 1];
    uint64_t ino;           /* ino + MT_SINO_*: dir, latest, latest-full, as-of/, as-of/latest, history/ */
    bool present;           /* listed in the root at the last refresh */
    bool loaded;
    double loaded_at;
    pthread_mutex_t refresh_lock;
    struct stat st;         /* the session's store directory */
    bool have_st;
    /* Store dir stat taken before the last successful load, and whether it
     * is old enough that any later rename in the dir must change it (file
     * timestamps are coarse: a change within the same tick would not). */
    struct stat loaded_st;
    bool loaded_st_trusted;
    mt_backup **backups;    /* alive nodes, present or not */
    size_t n_backups, cap_backups;
    mt_backup **views;      /* alive as-of and history nodes, present or not */
    size_t n_views, cap_views;
    fb_index idx;           /* the last index read, for the views' signatures */
    char latest[FB_BACKUP_ID_LEN + 1];      /* "" when none */
    char latest_full[FB_BACKUP_ID_LEN + 1];
    int64_t newest_time;
    bool has_newest;
    size_t n_present;
    uint64_t kref;
    char *last_warning;     /* guarded by refresh_lock: warn once per change */
};

/* What an inode number names (fb_mount_inode_resolve). */
enum { REF_ROOT, REF_SESSION, REF_LATEST, REF_LATEST_FULL, REF_ASOF_DIR, REF_ASOF_LATEST,
       REF_HISTORY, REF_BACKUP, REF_ENTRY };

typedef struct mt_ref {
    int kind;
    mt_session *s;
    mt_backup *b;
    uint32_t node; /* REF_ENTRY: node index in the backup's contents */
} mt_ref;

/* Buckets of the kept files' hash; a power of two. */
#define MT_KEPT_BUCKETS 512

struct fb_mount_tree {
    pthread_mutex_t lock;
    pthread_cond_t loaded_cond;
    pthread_mutex_t root_refresh_lock;
    fb_store *store;
    int backups_fd; /* borrowed from store */
    fb_frame_cache *cache;
    fb_manifest_cache *manifest_cache; /* NULL: none; used without the lock */
    /* Decodes ahead for every archive reader; made with the first one
     * (mount_files.c), under prefetch_lock (taken alone, or inside lock);
     * its thread starts with its first job. */
    pthread_mutex_t prefetch_lock;
    fb_frame_prefetcher *prefetch;
    bool prefetch_failed;
    fb_mount_options opts;
    uint64_t next_ino;
    mt_range *ranges; /* sorted by base: bases are handed out increasing */
    size_t n_ranges, cap_ranges;
    mt_session **sessions; /* sorted by id */
    size_t n_sessions, cap_sessions;
    size_t n_present_sessions;
    bool root_loaded;
    double root_loaded_at;
    size_t n_backups_alive, n_loaded;
    /* The budget of loaded contents (opts.meta_cache_bytes): most recently
     * used first, their summed estimate, and counters for the stats. */
    mt_backup *lru_head, *lru_tail;
    uint64_t meta_bytes, meta_bytes_peak;
    uint64_t meta_loads, meta_evictions;
    mt_archive *archives; /* every reader alive */
    size_t n_archives;
    /* The last archive reader whose files were all closed, kept for
     * MT_IDLE_READER_SECONDS (mount_files.c): in `find | xargs cat` the next
     * open of the same backup follows at once, and reopening the archive
     * (open, fstat, seek table) cost 12 us a file. The janitor thread closes
     * it when it expires, so a deleted archive's space is freed soon after
     * its last file is closed. Guarded by lock; the thread starts with the
     * first idle reader (not before the daemon forks). */
    mt_archive *idle;
    double idle_until;
    pthread_cond_t janitor_cond;
    pthread_t janitor;
    bool janitor_started, janitor_stop, janitor_failed;
    /* When the janitor wakes by itself (0: it waits for a signal). A new
     * deadline at or after it needs no signal: the janitor finds it when
     * it wakes. Without this, every read of a kept file woke it (its put
     * leaves the file idle again), a context switch per 256 KiB. */
    double janitor_wakes_at;
    uint64_t janitor_wakeups; /* fb_mount_stats */
    fb_mount_dir *dirs;   /* open handles, freed with the tree if left open */
    fb_mount_file *files;
    /* Files kept for reads without an open (fb_mount_tree_file_get): every
     * one in the hash by inode; those no read uses also in the idle list,
     * most recently read first, which the janitor expires from the tail. */
    fb_mount_file *kept_buckets[MT_KEPT_BUCKETS];
    fb_mount_file *kept_idle_head, *kept_idle_tail;
    size_t n_kept, n_kept_idle;
};

/* ------------------------------------------------------- mount_inodes.c */

/* What owns a range of inode numbers. */
enum { RANGE_SESSION, RANGE_BACKUP_DIR, RANGE_ENTRIES };

/* Hands out count fresh numbers (t->lock held) and records owner for them;
 * *base is the first. FB_ENOMEM leaves the numbers used but unowned. */
int fb_mount_inode_range_new(fb_mount_tree *t, uint64_t count, int kind, void *owner,
                             uint64_t *base);
/* Forgets the range that starts at base, if any (t->lock held). */
void fb_mount_inode_range_remove(fb_mount_tree *t, uint64_t base);
/* What ino names (t->lock held): 0, or FB_ENOTFOUND for a number no node
 * owns any more. */
int fb_mount_inode_resolve(fb_mount_tree *t, uint64_t ino, mt_ref *out);

/* --------------------------------------------------------- mount_attr.c */

/* st_blksize of every node: reads are served a frame at a time. */
#define MT_BLKSIZE 65536

/* Attributes of each kind of node (t->lock held). */
void fb_mount_attr_root(fb_mount_tree *t, fb_mount_attr *out);
void fb_mount_attr_session(const mt_session *s, fb_mount_attr *out);
/* as-of/ or history/ (REF_ASOF_DIR, REF_HISTORY) of s. */
void fb_mount_attr_view_dir(const mt_session *s, int ref_kind, fb_mount_attr *out);
/* as-of/latest: FB_ENOTFOUND when the session has no backup. */
int fb_mount_attr_asof_latest(const mt_session *s, fb_mount_attr *out);
/* FB_ENOTFOUND when the session has no such backup. */
int fb_mount_attr_latest(const mt_session *s, bool full, fb_mount_attr *out);
void fb_mount_attr_backup(const mt_backup *b, fb_mount_attr *out);
/* Attributes of the name at node (hardlinks show their file). */
void fb_mount_attr_entry(const mt_backup *b, uint32_t node, fb_mount_attr *out);
/* S_IFDIR, S_IFLNK or S_IFREG for node n. */
uint32_t fb_mount_node_type_bits(const mt_contents *c, uint32_t n);

/* -------------------------------------------------------- mount_nodes.c */

/* Every function here wants t->lock held. */

/* The session named id, or NULL; *pos (may be NULL) is where it is or would
 * go in t->sessions. */
mt_session *fb_mount_session_find(fb_mount_tree *t, const char *id, size_t *pos);
/* A new session node at pos (from fb_mount_session_find); NULL when out of
 * memory or id is too long. */
mt_session *fb_mount_session_add(fb_mount_tree *t, const char *id, size_t pos);
/* The alive backup node named id, or NULL. */
mt_backup *fb_mount_session_backup(const mt_session *s, const char *id);
/* A new backup node in s for the index record r; NULL when out of memory. */
mt_backup *fb_mount_backup_add(fb_mount_tree *t, mt_session *s, const fb_index_record *r);
/* The present view of s of that kind (as-of: of backup id, which must be
 * present; history: id ignored), made when missing with its signature
 * from s->idx. NULL when there is no such backup or out of memory. */
mt_backup *fb_mount_view_get(fb_mount_tree *t, mt_session *s, int kind, const char *id);
/* After s->idx changed: views whose signature no longer matches leave
 * (present false, freed when unused), so the next use makes a new one. */
void fb_mount_views_refresh(fb_mount_tree *t, mt_session *s);
/* The backup node of s that a view's source names (id and archive hash),
 * or NULL. */
mt_backup *fb_mount_source_backup(const mt_session *s, const mt_source *src);
/* Called whenever a backup loses a user or leaves the store: frees what
 * nobody can reach any more. */
void fb_mount_backup_maybe_release(fb_mount_tree *t, mt_backup *b);
/* Drops one pin and frees what that leaves unreachable. */
void fb_mount_backup_unpin(fb_mount_tree *t, mt_backup *b);
/* Makes b->contents available (b pinned by the caller) and marks b the
 * most recently used; a load evicts other backups' contents to stay under
 * opts.meta_cache_bytes. The lock is released while the manifest is read and
 * while evicted contents are freed. */
int fb_mount_backup_ensure_loaded(fb_mount_tree *t, mt_backup *b, fb_error *err);
/* Loads b (pinned by the caller) for its entry inode ino: FB_ENOTFOUND when
 * the reload no longer has that entry. */
int fb_mount_entry_load(fb_mount_tree *t, mt_backup *b, uint64_t ino, fb_error *err);
/* Frees every session and backup node with the tree (no lock: no users). */
void fb_mount_nodes_free_all(fb_mount_tree *t);

/* ------------------------------------------------------ mount_refresh.c */

/* Re-read the root's or a session's listing from the store when it is stale
 * (or always, with force). Take t->lock only inside: call them unlocked. */
int fb_mount_refresh_root(fb_mount_tree *t, bool force, fb_error *err);
int fb_mount_refresh_session(fb_mount_tree *t, mt_session *s, bool force, fb_error *err);

/* --------------------------------------------- mount_dirs.c, mount_files.c */

/* Free the handles left open, and the archive readers, with the tree. */
void fb_mount_dirs_free_all(fb_mount_tree *t);
void fb_mount_files_free_all(fb_mount_tree *t);
/* Ends the thread that closes the idle reader; before freeing the files. */
void fb_mount_files_stop_janitor(fb_mount_tree *t);

#endif
