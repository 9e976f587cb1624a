/* Reads back an archive.tar.zst while it is being written, frame by frame,
 * so that a backup's validation runs beside the writing instead of after
 * it (docs/archive-format.md, "Validation follows the writer").
 *
 * The writer's thread tells the follower of each frame once its bytes are
 * in the file (fb_archive_follower_written, an fb_archive_written_fn) and
 * of the end (fb_archive_follower_end). One other thread reads: each frame
 * is read back from the file with pread, its compressed bytes are added to
 * the SHA-256 of the file, and it is decoded under every check a reader
 * makes (zstd header, declared content size, exact extent, content
 * checksum, decoded size). At the end the seek table is read back from the
 * file, hashed, and must list exactly the frames that were read, and the
 * file must be exactly as long as the frames and the table. */
#ifndef FB_ARCHIVE_FOLLOW_H
#define FB_ARCHIVE_FOLLOW_H

#include <stddef.h>
#include <stdint.h>

#include "fb_error.h"
#include "fb_types.h"

typedef struct fb_archive_follower fb_archive_follower;

/* fd: the archive opened for reading (borrowed; open until _free). name:
 * starts every message (copied). Returns 0 or FB_ENOMEM. */
int fb_archive_follower_new(int fd, const char *name, fb_archive_follower **out, fb_error *err);

/* Writer's side (one thread). ctx is the follower: this is an
 * fb_archive_written_fn. Never blocks for long and never fails (a failure
 * to record the frame is reported to the reader). */
void fb_archive_follower_written(void *ctx, uint64_t index, uint32_t c_size, uint32_t d_size,
                                 uint32_t checksum);
/* Everything is written: file_size bytes, the seek table last. */
void fb_archive_follower_end(fb_archive_follower *f, uint64_t file_size);
/* The writing stopped (failed or interrupted): a waiting reader returns
 * FB_EINTERRUPTED. */
void fb_archive_follower_abort(fb_archive_follower *f);

/* Reader's side (one other thread). The decoded bytes of the next frame,
 * valid until the next call; waits for the writer as needed. *len == 0:
 * the end, after the seek table and the size were checked. Returns 0,
 * FB_ECORRUPT (what was read back is not what was written), FB_EIO,
 * FB_ENOMEM, FB_EINTERRUPTED (aborted). */
int fb_archive_follower_next(fb_archive_follower *f, const uint8_t **data, size_t *len,
                             fb_error *err);
/* After the end: the SHA-256 of every byte of the file as read back, and
 * the number of data frames. */
int fb_archive_follower_sha256(fb_archive_follower *f, uint8_t out[FB_SHA256_LEN],
                               uint64_t *frames, fb_error *err);

/* Accepts NULL. The reader must have stopped using it. */
void fb_archive_follower_free(fb_archive_follower *f);

#endif
