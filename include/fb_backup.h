/* Taking a backup (SPEC "Backup"): lock, clear leftovers, scan the session
 * directory, write archive + manifest into .tmp-*, validate, publish
 * (fsync, rename), update the index, apply retention. */
#ifndef FB_BACKUP_H
#define FB_BACKUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fb_config.h"
#include "fb_error.h"
#include "fb_lock.h"
#include "fb_manifest.h"
#include "fb_retention.h"
#include "fb_store.h"

typedef struct fb_backup_request {
    const char *session_id;
    fb_backup_type type;
    const char *note;          /* NULL = none */
    int64_t now;               /* seconds since the epoch */
    const fb_config *config;   /* borrowed */
    double lock_wait_seconds;
    fb_lock_wait_fn lock_waiting; /* told when the lock is busy and waited for; may be NULL */
    void *lock_waiting_ctx;
    bool verify;               /* validate before publishing (default true) */
    bool cleanup;              /* apply retention after publishing */
    fb_warn_fn warn;
    void *warn_ctx;
    /* fb_error.h: called from the backup thread after each file and at
     * phase changes; phase is "scan", "write" (file bytes), "validate"
     * (archive bytes re-read), "publish". */
    fb_progress_fn progress;   /* may be NULL */
    void *progress_ctx;
    /* Test hook (RELIABILITY F14): called once after the scan, before any
     * file is opened, so a test can change the tree in between. NULL in
     * normal use. */
    void (*after_scan)(void *ctx);
    void *after_scan_ctx;
    /* Test hook: called on the calling thread each time a frame of the
     * archive has been written (c_size bytes at c_offset of archive_fd,
     * open for writing), before the validation reads it back, so a test can
     * damage it in between. NULL in normal use. */
    void (*frame_written)(void *ctx, int archive_fd, uint64_t index, uint64_t c_offset,
                          uint32_t c_size);
    void *frame_written_ctx;
    /* A stop request (SIGINT, SIGTERM, SIGHUP in the CLI), polled during
     * the scan, between files, per chunk of a file, during validation and
     * just before publishing. Before the publish rename the temporary work
     * is removed and the run fails with FB_EINTERRUPTED, nothing visible
     * having changed; from the rename on the backup is finished (index
     * update) and succeeds with result.interrupted set, retention skipped.
     * NULL: never. */
    const fb_cancel *cancel;
} fb_backup_request;

typedef struct fb_backup_result {
    fb_manifest manifest;      /* the published manifest */
    bool verified;
    bool index_rebuilt;
    double seconds;
    fb_retention_decision *retention; /* malloc'd plan applied, NULL if no cleanup */
    size_t n_retention;
    uint64_t changed_files;    /* files that changed while read (warned) */
    uint64_t skipped_entries;  /* special files, vanished or replaced entries (warned) */
    /* Retention runs after the backup is committed, so its failure does not
     * undo the backup: fb_backup_run still returns 0 and reports it here
     * (code 0 when retention succeeded or did not run) and through warn. */
    fb_error retention_error;
    /* The stop request came once publishing had started: the backup is
     * complete and in the index, and retention was not applied (the next
     * backup or cleanup applies it). */
    bool interrupted;
} fb_backup_result;

void fb_backup_result_init(fb_backup_result *r);
void fb_backup_result_fini(fb_backup_result *r);

/* Returns 0 or: FB_EINVAL (bad session id), FB_ENOTFOUND (no session source
 * dir), FB_EBUSY (lock), FB_EIO / FB_ECHANGED (reading a source file; the
 * message names it), FB_ECORRUPT (validation failed), FB_EINTERRUPTED
 * (req->cancel, before publishing). On any error nothing new is visible in
 * the store. */
int fb_backup_run(fb_store *store, const fb_backup_request *req, fb_backup_result *out,
                  fb_error *err);

#endif
