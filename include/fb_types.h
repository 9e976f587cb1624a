/* Small types shared by the archive, manifest and backup modules. */
#ifndef FB_TYPES_H
#define FB_TYPES_H

#include <stdbool.h>
#include <stdint.h>

#define FB_SHA256_LEN 32
#define FB_SHA256_HEX_LEN 64
#define FB_SESSION_ID_MAX 128
/* "YYYYMMDDTHHMMSSZ-full-xxxxxx" */
#define FB_BACKUP_ID_LEN 28
/* Longest relative path we store or accept in a manifest. */
#define FB_PATH_MAX 4096

/* The names of the layout on disk (SPEC "Storage layout"), written once:
 * <root>/.flowloom/sessions/<sid>/ is a session, <root>/.flowloom/backups/
 * <sid>/index.json its index, <sid>/<backup_id>/ a backup's two files. */
#define FB_FLOWLOOM_DIR ".flowloom"
#define FB_SESSIONS_SUBDIR "sessions"
#define FB_BACKUPS_SUBDIR "backups"
#define FB_SESSIONS_PATH FB_FLOWLOOM_DIR "/" FB_SESSIONS_SUBDIR
#define FB_BACKUPS_PATH FB_FLOWLOOM_DIR "/" FB_BACKUPS_SUBDIR
#define FB_INDEX_NAME "index.json"
#define FB_MANIFEST_NAME "manifest.json"
#define FB_ARCHIVE_NAME "archive.tar.zst"
/* A recover stages its tree beside the session directory, in
 * .flowloom/sessions/, as <prefix><sid>-<16 hex> (beside a --target DIR:
 * <prefix><16 hex>). One of a session's that a killed recover left is a
 * leftover the next command holding the session's lock removes, unless a
 * running recover still holds its flock. */
#define FB_RESTORE_STAGING_PREFIX ".restore-"
#define FB_RESTORE_STAGING_HEX 16
/* Work in progress (a backup being written, a file being replaced) and
 * removals under way: leftovers of interrupted runs, cleared by the next
 * command holding the session's lock. */
#define FB_WORK_PREFIX ".tmp-"
#define FB_TRASH_PREFIX ".trash-"

/* The names a user may give instead of a backup id (SPEC "Finding things"),
 * which the mount also shows as links in each session directory. */
#define FB_BACKUP_SPEC_LATEST "latest"           /* the newest backup */
#define FB_BACKUP_SPEC_LATEST_FULL "latest-full" /* the newest full backup */

/* Compression settings we write with (config "compression", the archive
 * writer): levels, frame sizes (a frame is at most this many tar bytes;
 * readers refuse larger ones) and worker threads. */
#define FB_LEVEL_MIN 1
#define FB_LEVEL_MAX 19
#define FB_FRAME_SIZE_MIN (64u * 1024)
#define FB_FRAME_SIZE_MAX (64u * 1024 * 1024)
#define FB_THREADS_MAX 256
/* Levels a manifest may record: zstd's whole range (ZSTD_minCLevel() ..
 * ZSTD_maxCLevel()), so a manifest from another writer still reads. */
#define FB_ZSTD_LEVEL_MIN (-131072)
#define FB_ZSTD_LEVEL_MAX 22

typedef enum fb_entry_type {
    FB_ENTRY_FILE = 0,
    FB_ENTRY_DIR,
    FB_ENTRY_SYMLINK,
    FB_ENTRY_HARDLINK,
} fb_entry_type;

typedef enum fb_backup_type {
    FB_BACKUP_FULL = 0,
    FB_BACKUP_INCREMENTAL,
} fb_backup_type;

/* Metadata of one stored entry, as the manifest and the tar header carry it.
 * mode holds permission bits only (st_mode & 07777). For a hardlink, size is
 * the size of the file it links to. */
typedef struct fb_entry_meta {
    fb_entry_type type;
    uint32_t mode;
    uint32_t uid;
    uint32_t gid;
    int64_t mtime;
    uint32_t mtime_nsec;
    uint64_t size;
} fb_entry_meta;

#endif
