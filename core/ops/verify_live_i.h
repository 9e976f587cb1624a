/* A backup's validation running beside the writing (docs/archive-format.md,
 * "Validation follows the writer"): a thread reads the archive back from
 * the file frame by frame as the writer appends them (fb_archive_follow.h),
 * walks the tar stream with libarchive, fingerprints every file's data and
 * holds every header, data offset and content against the manifest entries
 * the backup publishes as it stores them. It makes the checks of
 * fb_verify_backup_dir (the frames, the headers, every file's content, the
 * JSON members of an incremental, the whole file's SHA-256 and size), but
 * on the core that compression leaves idle instead of after the writing.
 * A file's content is held against the XXH3-128 fingerprint the writer
 * took beside its SHA-256, of the same bytes: equal fingerprints prove the
 * bytes stored are the bytes read, whose SHA-256 the manifest records, for
 * a twentieth of the CPU of a second SHA-256 pass (docs/archive-format.md,
 * "Validation follows the writer").
 *
 * Used by one calling thread (the backup's), besides the check's own. */
#ifndef FB_VERIFY_LIVE_I_H
#define FB_VERIFY_LIVE_I_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fb_error.h"
#include "fb_hash.h"
#include "fb_manifest.h"
#include "fb_types.h"

typedef struct fb_live_check fb_live_check;

/* Starts the check on archive_rfd (the archive being written, opened for
 * reading; borrowed until _free). name: "<sid>/<backup_id>", starts every
 * message. incremental: its .json members must parse. Returns 0, FB_ENOMEM
 * or FB_EIO (no thread): the caller then validates after writing. */
int fb_live_check_start(int archive_rfd, const char *name, bool incremental,
                        fb_live_check **out, fb_error *err);

/* The fb_archive_written_fn to give the writer, with the check as ctx. */
void fb_live_check_written(void *ctx, uint64_t index, uint32_t c_size, uint32_t d_size,
                           uint32_t checksum);

/* The manifest entries stored so far (entries[0 .. n)), and beside each
 * file entry the XXH3-128 fingerprint the writer took of the bytes it read
 * (fingerprints[i] for entries[i]; fb_archive_file_result.fingerprint):
 * the check holds the tar stream against them as far as they go, copying
 * each one under its lock. Neither array may move or be freed while the
 * check runs (the backup reserves both for every scanned entry before
 * writing), and each entry's strings must live until _free. */
void fb_live_check_entries(fb_live_check *v, const fb_manifest_entry *entries,
                           const uint8_t (*fingerprints)[FB_XXH128_LEN], size_t n);

/* The writing is over: file_size bytes, entries[0 .. n) the whole manifest
 * (with their fingerprints, as for fb_live_check_entries).
 * Waits for the check to read everything back, polling cancel (then
 * FB_EINTERRUPTED). Returns its result: 0, FB_ECORRUPT, FB_EIO, FB_ENOMEM;
 * on success *sha256 is the SHA-256 of the file as read back, *frames its
 * number of data frames. */
int fb_live_check_end(fb_live_check *v, const fb_manifest_entry *entries,
                      const uint8_t (*fingerprints)[FB_XXH128_LEN], size_t n, uint64_t file_size, const fb_cancel *cancel,
                      uint8_t sha256[FB_SHA256_LEN], uint64_t *frames, fb_error *err);

/* Accepts NULL. A check still running is stopped (the writing failed). */
void fb_live_check_free(fb_live_check *v);

#endif
