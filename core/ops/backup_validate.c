/* The validation of a backup (SPEC, backup step "validate"): the live
 * check that reads the archive back while it is written (verify_live_i.h),
 * or, when it could not start, the full verify of the archive afterwards;
 * then the manifest read back strictly. See docs/archive-format.md,
 * "Validation follows the writer". */
#include "backup_i.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fb_fsutil.h"
#include "fb_hash.h"
#include "fb_verify.h"

/* Starts the validation that follows the writer. Only a speed-up: if it
 * cannot start, the archive is validated after it is written. */
void fb_backup_start_live_check(backup_run *r)
{
    r->archive_rfd = openat(r->tmp_fd, FB_ARCHIVE_NAME, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (r->archive_rfd < 0)
        return;
    fb_error e;
    fb_error_clear(&e);
    if (fb_live_check_start(r->archive_rfd, r->label, r->req->type == FB_BACKUP_INCREMENTAL,
                            &r->live, &e) < 0) {
        close(r->archive_rfd);
        r->archive_rfd = -1;
        r->live = NULL;
    }
}

/* The writer's fb_archive_written_fn: the test hook first, then the live
 * check (the hook may damage the frame before it is read back). */
void fb_backup_frame_written(void *ctx, uint64_t index, uint32_t c_size, uint32_t d_size,
                             uint32_t checksum)
{
    backup_run *r = ctx;
    if (r->req->frame_written)
        r->req->frame_written(r->req->frame_written_ctx, r->archive_fd, index, r->written_bytes,
                              c_size);
    r->written_bytes += c_size;
    if (r->live)
        fb_live_check_written(r->live, index, c_size, d_size, checksum);
}

/* Waits for the live check to have read back the whole archive, and takes
 * the file's SHA-256 from it: the SHA-256 of the bytes read back from the
 * file, where the writer's own (of the bytes it wrote) was left out. */
int fb_backup_end_live_check(backup_run *r, fb_archive_summary *sum)
{
    fb_backup_progress(r, "validate", 0, sum->compressed_size);
    uint64_t frames = 0;
    int rc = fb_live_check_end(r->live, r->m.entries, r->fingerprints, r->m.n_entries,
                               sum->compressed_size, r->req->cancel, sum->sha256, &frames,
                               r->err);
    if (rc == FB_EINTERRUPTED)
        return fb_backup_check_cancel(r);
    if (rc == 0 && frames != sum->frames)
        rc = fb_error_set(r->err, FB_ECORRUPT, "%s: %llu frames read back, %llu written",
                          r->label, (unsigned long long)frames,
                          (unsigned long long)sum->frames);
    if (rc < 0) {
        fb_error_prefix(r->err, "validation failed");
        return rc;
    }
    r->live_passed = true;
    return 0;
}

/* Compares the re-serialised manifest, chunk by chunk as it is written,
 * with the text read from disk: the second text is never built whole. */
typedef struct readback {
    const char *disk;
    size_t len;
    size_t pos; /* bytes of disk matched so far */
    const char *label;
} readback;

static int readback_differs(const readback *b, fb_error *err)
{
    return fb_error_set(err, FB_ECORRUPT, "%s: manifest.json does not read back as written",
                        b->label);
}

static int compare_chunk(void *ctx, const char *data, size_t len, fb_error *err)
{
    readback *b = ctx;
    if (len > b->len - b->pos || memcmp(b->disk + b->pos, data, len) != 0)
        return readback_differs(b, err);
    b->pos += len;
    return 0;
}

/* Reads manifest.json back into *parsed, strictly, and checks that it
 * serialises to exactly the bytes on disk. */
static int read_back(backup_run *r, fb_manifest *parsed)
{
    char tmp_label[PATH_MAX];
    snprintf(tmp_label, sizeof tmp_label, "%s/%s", r->sess_name, r->tmpname);
    char *json = NULL;
    size_t len = 0;
    int rc = fb_read_file_at(r->tmp_fd, tmp_label, FB_MANIFEST_NAME, FB_MANIFEST_SIZE_MAX, &json,
                             &len, r->err);
    if (rc < 0)
        return rc;
    if (r->live_passed) {
        /* The live check held the archive against the manifest in memory:
         * the text on disk must be exactly what was written from it. */
        uint8_t sha[FB_SHA256_LEN];
        rc = fb_sha256_buffer(json, len, sha, r->err);
        if (rc >= 0 && memcmp(sha, r->manifest_sha, FB_SHA256_LEN) != 0)
            rc = fb_error_set(r->err, FB_ECORRUPT,
                              "%s: manifest.json does not read back as written", r->label);
        if (rc < 0) {
            free(json);
            return rc;
        }
    }
    char source[PATH_MAX];
    snprintf(source, sizeof source, "%s/%s", r->label, FB_MANIFEST_NAME);
    rc = fb_manifest_parse(json, len, source, parsed, r->err);
    readback b = {.disk = json, .len = len, .label = r->label};
    if (rc >= 0)
        rc = fb_manifest_write(parsed, compare_chunk, &b, r->err);
    if (rc >= 0 && b.pos != len)
        rc = readback_differs(&b, r->err);
    free(json);
    return rc;
}

/* After the live check: the archive the manifest read back describes is
 * the one read back (its size and SHA-256 came from there). */
static int check_live_archive(backup_run *r, const fb_manifest *parsed)
{
    if (parsed->archive.size != r->archive_size)
        return fb_error_set(r->err, FB_ECORRUPT,
                            "%s: %s: the manifest says %llu bytes, %llu were written", r->label,
                            FB_ARCHIVE_NAME, (unsigned long long)parsed->archive.size,
                            (unsigned long long)r->archive_size);
    fb_backup_progress(r, "validate", r->archive_size, r->archive_size);
    return 0;
}

/* Re-reads what is on disk: the manifest strictly parsed must serialise to
 * the same bytes, and the archive must pass the full verify against it:
 * either the live check, which read the archive back while it was written
 * (then the manifest on disk must be the very text it was checked
 * against), or, if it could not start, the verify of the archive now.
 * What was written is on disk by now, so the in-memory manifest is freed
 * first and the one read back takes its place: the same bytes, hence the
 * same manifest, and two copies of 100,000 entries never live at once. */
int fb_backup_validate(backup_run *r)
{
    fb_manifest_fini(&r->m);
    fb_manifest parsed;
    fb_manifest_init(&parsed);
    int rc = read_back(r, &parsed);
    if (rc >= 0 && r->live_passed)
        rc = check_live_archive(r, &parsed);
    else if (rc >= 0)
        rc = fb_verify_backup_dir_with(r->tmp_fd, &parsed, r->label,
                                       &(fb_verify_dir_options){.cancel = r->req->cancel,
                                                                .phase = "validate",
                                                                .progress = r->req->progress,
                                                                .progress_ctx =
                                                                    r->req->progress_ctx},
                                       r->err);
    if (rc < 0) {
        fb_manifest_fini(&parsed);
        fb_error_prefix(r->err, "validation failed");
        return rc;
    }
    r->m = parsed;
    return 0;
}
