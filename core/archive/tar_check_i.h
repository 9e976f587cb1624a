/* A backup's tar stream read through libarchive and held against its
 * manifest, for the two modules that do it: verify (reads only) and restore
 * (extracts). Both must refuse exactly the same archives - a backup that
 * verify passes must restore - so the feeding of decompressed frames to
 * libarchive, the comparison of each tar header with the next manifest
 * entry, the checks on an entry's data and the whole-file SHA-256 at the end
 * live here once. */
#ifndef FB_TAR_CHECK_I_H
#define FB_TAR_CHECK_I_H

#include <archive.h>
#include <archive_entry.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fb_archive_follow.h"
#include "fb_archive_reader.h"
#include "fb_error.h"
#include "fb_manifest.h"
#include "fb_seek_table.h"

/* Sees each decompressed chunk before libarchive does, on the caller's
 * thread. (verify hashes the raw byte ranges through the archive stream's
 * frame hook instead, which runs where the frame was decoded.) Returns 0, or
 * an error with err filled. */
typedef int (*fb_tar_chunk_fn)(void *ctx, const uint8_t *data, size_t len, fb_error *err);

typedef struct fb_tar_source {
    fb_archive_stream *stream; /* borrowed; or else: */
    fb_archive_follower *follower; /* borrowed: an archive read back as it is written */
    const char *name;          /* "<sid>/<backup_id>", starts every message */
    fb_tar_chunk_fn on_chunk;  /* may be NULL */
    void *chunk_ctx;
    bool at_end;
    int stream_rc;             /* error from inside the read callback... */
    fb_error stream_err;       /* ...and its message */
} fb_tar_source;

void fb_tar_source_init(fb_tar_source *src, fb_archive_stream *stream, const char *name,
                        fb_tar_chunk_fn on_chunk, void *chunk_ctx);
/* The same on a follower (fb_archive_follow.h) instead of a stream. */
void fb_tar_source_init_follower(fb_tar_source *src, fb_archive_follower *follower,
                                 const char *name);

/* The archive's frames as its seek table t lists them against what the
 * manifest m says: their number, and none larger than the frame size. */
int fb_tar_frames_check(const fb_seek_table *t, const fb_manifest *m, const char *name,
                        fb_error *err);

/* A libarchive tar reader (no filter: the frames are decompressed already)
 * open on src. *out is freed by the caller with archive_read_free. */
int fb_tar_source_open(fb_tar_source *src, struct archive **out, fb_error *err);

/* The error after a libarchive read call on src failed: the stream's own
 * (I/O, a bad frame) when it was the cause, else libarchive's parse error
 * as FB_ECORRUPT. */
int fb_tar_source_failure(fb_tar_source *src, struct archive *a, fb_error *err);

/* The next member's header: 1 with *ae (owned by a), 0 at the tar end, or
 * the error of fb_tar_source_failure. ARCHIVE_WARN (a name that does not
 * convert to the locale's charset) is a member like any other: the
 * readers compare the path's bytes, not their conversion. */
int fb_tar_source_next(fb_tar_source *src, struct archive *a, struct archive_entry **ae,
                       fb_error *err);

/* After the tar end: reads the rest of the stream (through on_chunk; what
 * follows the tar end belongs to the file too) and compares the SHA-256 of
 * the whole archive file with want (NULL: only reads to the end). */
int fb_tar_source_finish(fb_tar_source *src, const uint8_t want[FB_SHA256_LEN], fb_error *err);

/* The tar header ae must be exactly manifest entry e: path, type, link
 * target, size, mode, uid, gid, mtime and its nanoseconds, no sparse map,
 * and for a file the data offset, which is archive_filter_bytes(a, 0) right
 * after the header was read (libarchive has consumed exactly the headers).
 * Any difference is FB_ECORRUPT naming the field. */
int fb_tar_entry_check(struct archive_entry *ae, const fb_manifest_entry *e,
                       int64_t data_offset, const char *name, fb_error *err);

/* Receives the entry's data blocks in order. Returns 0 or an error. */
typedef int (*fb_tar_data_fn)(void *ctx, const void *buf, size_t len, fb_error *err);

/* Reads the data of the current entry e, handing each block to sink (may be
 * NULL): no holes, never more than the manifest size, then exactly that
 * size and, for a file, its SHA-256. */
int fb_tar_entry_data(fb_tar_source *src, struct archive *a, const fb_manifest_entry *e,
                      fb_tar_data_fn sink, void *sink_ctx, fb_error *err);

/* Parses the data of a JSON member (len bytes at buf) strictly: one value,
 * nothing but blanks after it; FB_ECORRUPT naming path otherwise. */
int fb_tar_json_check(const char *name, const char *path, const char *buf, size_t len,
                      fb_error *err);

/* FB_ECORRUPT "<name>: <path>: <what>", the path escaped. */
int fb_tar_corrupt(fb_error *err, const char *name, const char *path, const char *what);

#endif
