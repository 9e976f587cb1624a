/* What backup.c (the steps of a backup) and backup_validate.c (its
 * validation: the live check that follows the writer, and the read-back of
 * the manifest) share: the state of one run. */
#ifndef FB_BACKUP_I_H
#define FB_BACKUP_I_H

#include <stdbool.h>
#include <stdint.h>

#include "fb_archive_writer.h"
#include "fb_backup.h"
#include "fb_index.h"
#include "fb_lock.h"
#include "fb_manifest.h"
#include "scan_i.h"
#include "verify_live_i.h"

typedef struct backup_run {
    fb_store *store;
    const fb_backup_request *req;
    fb_backup_result *out;
    fb_error *err;
    char *sess_name;  /* <backups>/<sid>, for messages */
    char *src_name;   /* <root>/.flowloom/sessions/<sid> */
    char label[FB_SESSION_ID_MAX + FB_BACKUP_ID_LEN + 2]; /* "<sid>/<id>" */
    int session_fd;
    int source_fd;
    int tmp_fd;
    int archive_fd;
    char tmpname[64];
    bool tmp_made;
    fb_lock lock;
    fb_index idx;
    fb_scan_result scan;
    fb_manifest m;
    char id[FB_BACKUP_ID_LEN + 1];
    uint64_t file_bytes; /* the scan's, kept for progress once the scan is freed */
    uint64_t done_bytes;
    /* The validation that follows the writer (verify_live_i.h), when it
     * could be started: it reads the archive back through archive_rfd. */
    fb_live_check *live;
    /* With the live check: the writer's XXH3-128 of each file entry's
     * bytes, fingerprints[i] beside m.entries[i] (zero for other entries);
     * reserved like the entries and never moved while the check runs. */
    uint8_t (*fingerprints)[FB_XXH128_LEN];
    int archive_rfd;
    uint64_t written_bytes; /* of archive_fd, for the frame_written hook */
    bool live_passed;
    uint64_t archive_size;
    /* SHA-256 of manifest.json as written, to prove that the manifest read
     * back is the one the live check held the archive against. */
    uint8_t manifest_sha[FB_SHA256_LEN];
} backup_run;

static inline void fb_backup_progress(backup_run *r, const char *phase, uint64_t done,
                                      uint64_t total)
{
    if (r->req->progress)
        r->req->progress(r->req->progress_ctx, phase, done > total ? total : done, total);
}

/* A stop request before the publish rename: the run fails and its caller
 * removes the temporary work, so nothing visible has changed. */
static inline int fb_backup_check_cancel(backup_run *r)
{
    if (!fb_cancelled(r->req->cancel))
        return 0;
    return fb_error_set(r->err, FB_EINTERRUPTED, "interrupted: nothing was published");
}

/* Starts the validation that follows the writer (r->live), once the
 * archive exists in the temp dir. Only a speed-up: if it cannot start,
 * fb_backup_validate checks the archive after it is written. */
void fb_backup_start_live_check(backup_run *r);
/* The writer's fb_archive_written_fn (ctx: the run): the test hook
 * frame_written first, then the live check. */
void fb_backup_frame_written(void *ctx, uint64_t index, uint32_t c_size, uint32_t d_size,
                             uint32_t checksum);
/* After the writing (and the archive's fsync): waits for the live check,
 * and sets sum->sha256 to the SHA-256 of the archive as read back. */
int fb_backup_end_live_check(backup_run *r, fb_archive_summary *sum);
/* The validate step, once archive and manifest are written and synced. */
int fb_backup_validate(backup_run *r);

#endif
