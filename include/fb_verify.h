/* Full check of one backup directory (published or still in .tmp-*): the
 * archive's SHA-256 and size against the manifest, every frame (exact size,
 * content checksum), the tar stream parsed with libarchive and compared entry
 * by entry to the manifest (path, type, size, mode, mtime, link target),
 * every file's SHA-256 at its recorded offset, and for an incremental that
 * every .json member parses as JSON. Never modifies anything. */
#ifndef FB_VERIFY_H
#define FB_VERIFY_H

#include <stdbool.h>

#include "fb_error.h"
#include "fb_index.h"
#include "fb_manifest.h"
#include "fb_store.h"

/* backup_dirfd: the backup's directory (borrowed). m: its parsed manifest.
 * name: used in messages ("session/backup_id"). Returns 0, FB_ECORRUPT with
 * a message naming the backup and the first problem found, FB_EIO, FB_ENOMEM. */
int fb_verify_backup_dir(int backup_dirfd, const fb_manifest *m, const char *name,
                         fb_error *err);
/* Everything fb_verify_backup_dir can be told, for the callers that need
 * more than the plain check (backup's validation pass). */
typedef struct fb_verify_dir_options {
    const char *phase;       /* NULL: "verify" */
    /* How far the check got, under phase: done and total are bytes of
     * archive.tar.zst, total the manifest's archive size; on the caller's
     * thread, every 50 ms at most, and with done == total once the backup
     * passed. May be NULL. */
    fb_progress_fn progress;
    void *progress_ctx;
    /* Polled as the archive is read (caller's thread): once set, the check
     * stops with FB_EINTERRUPTED. NULL: never. */
    const fb_cancel *cancel;
} fb_verify_dir_options;

/* opts may be NULL (the plain check). */
int fb_verify_backup_dir_with(int backup_dirfd, const fb_manifest *m, const char *name,
                              const fb_verify_dir_options *opts, fb_error *err);

/* Compares an index record with the manifest: FB_ECORRUPT naming the field. */
int fb_verify_index_record(const fb_index_record *rec, const fb_manifest *m, fb_error *err);

/* How one backup, or the session's index, fared. */
typedef enum fb_verify_outcome {
    FB_VERIFY_OK,
    FB_VERIFY_CORRUPT, /* damaged: what verify exists to find */
    FB_VERIFY_FAILED,  /* could not be checked (I/O error, no memory) */
} fb_verify_outcome;

/* Receives each result, in order: backup_id NULL means the session's
 * index.json. problem is NULL when the outcome is FB_VERIFY_OK, else the
 * reason without the session and backup names (the sink is given those).
 * Strings are valid during the call. */
typedef void (*fb_verify_sink)(void *ctx, const char *backup_id, fb_verify_outcome outcome,
                               const char *problem);

typedef struct fb_verify_request {
    const char *session_id;
    const char *backup_id;    /* a full id, or NULL for every backup */
    fb_verify_sink sink;      /* each result */
    void *sink_ctx;
    /* Phase "verify": done and total are bytes of the archive.tar.zst files
     * of all the backups to check (what verify reads), every 50 ms at most,
     * on the caller's thread. May be NULL. */
    fb_progress_fn progress;
    void *progress_ctx;
} fb_verify_request;

/* Verifies session_id's backups: the one named backup_id (a full id that
 * the index lists or that has a directory), or when NULL every backup the
 * index lists or that has a directory, and the index as it is on disk
 * against those directories (a backup the index forgot, a record without a
 * directory, an index that is missing or does not parse). Never writes.
 * *index_stale is set when the index disagrees with the disk, so that the
 * caller can have the store rebuild it (fb_store_load_index).
 * Returns 0 once every result was given to sink, whatever they say;
 * FB_ENOTFOUND when the session has no backups in the store or there is no
 * such backup (the message says which), FB_EIO, FB_ENOMEM when the walk
 * itself fails. */
int fb_verify_session(fb_store *store, const fb_verify_request *req, bool *index_stale,
                      fb_error *err);

#endif
