/* The mounted view of a store (SPEC "The mount"), free of FUSE so that it can
 * be unit-tested: the tree of sessions -> backups -> entries, inode numbers,
 * lookup, attributes, directory listings, symlink targets and file reads.
 * fs/ is the only code that talks to the kernel; it calls these functions
 * and turns their results into FUSE replies.
 *
 * Inodes: 1 is the root. Every other node gets a number from one counter that
 * only grows, so a number is never reused while the daemon runs:
 *   - a session: 6 numbers (the session dir, `latest`, `latest-full`,
 *     `as-of/`, `as-of/latest`, `history/`), given when it is first seen and
 *     kept for the daemon's life;
 *   - a backup dir: 1 number, given when it is first seen in its session's
 *     index;
 *   - a backup's entries: a contiguous range, given when its manifest is first
 *     loaded (entry i of the manifest is range_base + i; directories implied by
 *     paths follow). Hardlinks answer with the inode of the file they link to.
 *   - the views `as-of/<backup_id>/` (1 number for the dir) and `history/`
 *     (the session's number): their entries get a range as a backup's do.
 *     A view is named by the backups it is built from; when those change
 *     (a base removed, a backup added to the history) it is replaced by a
 *     new one with new numbers (docs/mount.md, "The views").
 * Backup contents are immutable, so a range stays valid for as long as the
 * backup exists: contents dropped from memory are reloaded into the same range.
 * A backup is its id and its archive's hash in the index: an id that comes
 * back with another archive is a new backup with new numbers, so that no
 * number the kernel caches (for a year, inside a backup) names other contents.
 *
 * Liveness: the root and session listings are re-read from the store when
 * they are older than opts.live_seconds (and on every opendir), so backups
 * that appear or disappear show within that time. Nothing reads a manifest or
 * an archive until a path inside that backup needs it.
 *
 * Memory: the kernel's lookup counts (lookup / forget) decide what may be
 * freed. A backup whose count and in-flight users drop to zero has its loaded
 * manifest freed; if it has also left the store, its node is freed. Open
 * files hold a reference to their backup's archive reader, so a backup that
 * is removed while a file of it is open keeps serving that file.
 * Loaded contents are also bounded by opts.meta_cache_bytes: past it, the
 * least recently used backups nobody is using (no operation in flight, no
 * open file or directory handle) lose their contents even while the kernel
 * still holds their inode numbers; those numbers keep their range and the
 * contents are reloaded, numbered the same, on the next use.
 *
 * Threads: every function may be called from any number of threads at once. */
#ifndef FB_MOUNT_TREE_H
#define FB_MOUNT_TREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "fb_archive_reader.h"
#include "fb_error.h"

#define FB_MOUNT_ROOT_INO 1u
/* Longest name the kernel can look up (NAME_MAX). */
#define FB_MOUNT_NAME_MAX 255u
#define FB_MOUNT_CACHE_DEFAULT_MIB 64u
#define FB_MOUNT_META_CACHE_DEFAULT_MIB 32u

typedef struct fb_mount_tree fb_mount_tree;

typedef struct fb_mount_options {
    uint64_t cache_bytes; /* bound of the shared decompressed-frame cache */
    uint64_t meta_cache_bytes; /* bound of loaded backup contents; 0: none */
    double live_seconds;  /* how stale root/session listings may get; <= 0: always re-read */
    /* The local manifest cache's directory (fb_manifest_cache.h); NULL:
     * every manifest is parsed from its JSON. A directory that cannot be
     * used is warned about, and the mount goes on without. */
    const char *manifest_cache_dir;
    /* Free heap left in place after a load that parsed or evicted: the
     * heap is handed back to the system (malloc_trim) only when more than
     * this is free. 0: whenever such a load freed anything. A program that
     * keeps heap in memory for its buffers (the daemon writes its first
     * heap at start) passes at least that much, or the trim undoes it. */
    uint64_t heap_keep_bytes;
    fb_warn_fn warn;      /* store warnings (index rebuilt, ...); may be NULL */
    void *warn_ctx;
} fb_mount_options;

typedef struct fb_mount_attr {
    struct stat st;  /* st_ino is the node's inode number */
    bool immutable;  /* inside a backup: never changes while the backup exists */
} fb_mount_attr;

typedef struct fb_mount_stats {
    size_t sessions;          /* session nodes known (present or not) */
    size_t backups;           /* backup nodes alive */
    size_t loaded_manifests;  /* backups whose contents are in memory */
    size_t open_archives;     /* archive readers held by open files */
    size_t idle_archives;     /* kept a moment after their last file closed */
    size_t kept_files;        /* proven files kept for reads without an open */
    uint64_t next_ino;        /* the next inode number to be given */
    uint64_t meta_loads;      /* contents loaded (first loads and reloads) */
    uint64_t meta_evictions;  /* contents dropped to keep under the bound */
    uint64_t meta_bytes;      /* estimated memory of the loaded contents */
    uint64_t meta_bytes_peak; /* the most meta_bytes has been */
    uint64_t janitor_wakeups; /* times the thread that expires kept files woke */
    uint64_t manifest_cache_hits;   /* manifests loaded from the local cache */
    uint64_t manifest_cache_misses; /* ... parsed from their JSON instead */
} fb_mount_stats;

/* The root of the store from backups_dir, which must be a
 * `<root>/.flowloom/backups` directory (checked as given, then by realpath).
 * *root_out is malloc'd and absolute. FB_EINVAL naming the path otherwise. */
int fb_mount_store_root(const char *backups_dir, char **root_out, fb_error *err);

/* Refuses (FB_EINVAL, naming both) a mountpoint that is backups_dir, inside it
 * or a parent of it, comparing realpaths. Missing paths: FB_ENOTFOUND. */
int fb_mount_check_mountpoint(const char *backups_dir, const char *mountpoint, fb_error *err);

/* Opens the store holding backups_dir read-only (nothing is ever written).
 * Reads no index, manifest or archive yet. */
int fb_mount_tree_new(const char *backups_dir, const fb_mount_options *opts, fb_mount_tree **out,
                      fb_error *err);
/* Accepts NULL. Every dir and file handle must be closed first. */
void fb_mount_tree_free(fb_mount_tree *t);
/* Starts the tree's helper thread (the janitor, which closes archives left
 * idle) now rather than when the first file is closed, where its creation
 * would delay the requests queued behind that close. Call once the process
 * will not fork again (the daemon: when the kernel's INIT arrives); without
 * it the thread starts when first needed. Thread-safe, idempotent. */
void fb_mount_tree_start(fb_mount_tree *t);
void fb_mount_tree_get_stats(fb_mount_tree *t, fb_mount_stats *out);

/* Looks name up in directory parent. On success the node's kernel lookup count
 * is incremented (undo with _forget(ino, 1) if the reply cannot be sent).
 * FB_ENOTFOUND when absent; FB_EMISUSE when parent is not a directory. */
int fb_mount_tree_lookup(fb_mount_tree *t, uint64_t parent, const char *name, fb_mount_attr *out,
                         fb_error *err);
/* The kernel dropped nlookup references to ino. */
void fb_mount_tree_forget(fb_mount_tree *t, uint64_t ino, uint64_t nlookup);
/* FB_ENOTFOUND for an inode the tree no longer knows. */
int fb_mount_tree_getattr(fb_mount_tree *t, uint64_t ino, fb_mount_attr *out, fb_error *err);
/* Symlink target as stored (malloc'd copy); `latest`/`latest-full` give the
 * backup id. FB_EMISUSE when ino is not a symlink. */
int fb_mount_tree_readlink(fb_mount_tree *t, uint64_t ino, char **out, fb_error *err);
/* The file system that holds the store. */
int fb_mount_tree_statfs(fb_mount_tree *t, struct statvfs *out, fb_error *err);

/* Directory listings. Root and session listings are a snapshot taken at
 * open (after re-reading the store); backup listings come straight from the
 * loaded manifest, which the handle keeps in memory until closed. */
typedef struct fb_mount_dir fb_mount_dir;

int fb_mount_tree_opendir(fb_mount_tree *t, uint64_t ino, fb_mount_dir **out, fb_error *err);
/* Whether the listing can never change (inside a backup). */
bool fb_mount_dir_is_immutable(const fb_mount_dir *d);
/* Entry number pos (0 is ".", 1 is "..", then the children in a stable order).
 * name stays valid until the handle is closed; mode carries only the S_IFMT
 * bits. Returns false past the end. */
bool fb_mount_dir_get(fb_mount_dir *d, uint64_t pos, const char **name, uint64_t *ino,
                      uint32_t *mode);
/* Accepts NULL. */
void fb_mount_dir_close(fb_mount_tree *t, fb_mount_dir *d);

/* Files. A handle holds a reference to the backup's archive reader (and so
 * its fd): it keeps reading after the backup is removed from the store. */
typedef struct fb_mount_file fb_mount_file;

/* FB_EMISUSE when ino is not a regular file; FB_ECORRUPT when the archive
 * does not match its manifest (size, seek table, too short for the entry). */
int fb_mount_tree_open(fb_mount_tree *t, uint64_t ino, fb_mount_file **out, fb_error *err);
uint64_t fb_mount_file_size(const fb_mount_file *f);
/* Copies up to len bytes at offset off of the file into buf; *out_len is 0 at
 * or past the end. Data failing any check is FB_ECORRUPT, never wrong bytes.
 * Safe to call from several threads on one handle. */
int fb_mount_file_read(fb_mount_file *f, void *buf, size_t len, uint64_t off, size_t *out_len,
                       fb_error *err);
/* fb_mount_file_read without the copy: the bytes as up to max spans
 * pinned in the frame cache (fb_archive_reader_pread_spans), to be
 * released with fb_archive_spans_release before the handle is closed.
 * *out_len below the wanted length (len clipped at the end of the file)
 * with no error means max spans did not suffice: release them and use
 * fb_mount_file_read. Same checks and returns as fb_mount_file_read. */
int fb_mount_file_read_spans(fb_mount_file *f, size_t len, uint64_t off, fb_archive_span *spans,
                             size_t max, size_t *n_spans, size_t *out_len, fb_error *err);
/* Accepts NULL. */
void fb_mount_file_close(fb_mount_tree *t, fb_mount_file *f);

/* Reads without an open. A kernel that skips open and release
 * (FUSE_CAP_NO_OPEN_SUPPORT) sends reads naming only the inode: the tree
 * then opens and proves the file at its first read and keeps it, so that
 * the next reads of the same inode only decode and copy. A kept file no
 * read uses is closed FB_MOUNT_KEPT_SECONDS after its last read, or at
 * once when more than FB_MOUNT_KEPT_MAX are kept (least recently read
 * first); a file being read keeps its backup's archive open, so it keeps
 * reading after the backup is removed from the store.
 *
 * _get returns the kept file for ino, opening it if needed (the returns of
 * fb_mount_tree_open), with one use more; give it back with _put. Both
 * are thread-safe: concurrent first reads of one inode share one file. */
#define FB_MOUNT_KEPT_SECONDS 1.0
#define FB_MOUNT_KEPT_MAX 256
int fb_mount_tree_file_get(fb_mount_tree *t, uint64_t ino, fb_mount_file **out, fb_error *err);
void fb_mount_file_put(fb_mount_tree *t, fb_mount_file *f);

#endif
