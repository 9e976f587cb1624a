/* Writes archive.tar.zst: a pax tar stream (libarchive, unblocked, into a
 * write callback) cut into independent zstd frames of at most frame_size
 * uncompressed bytes (content checksums on), compressed on worker threads and
 * written in order, followed by the zstd seekable-format seek table.
 *
 * Memory is bounded by about (threads + 2) x (frame_size + compressBound)
 * whatever the file sizes. One writer is used by one thread at a time (it
 * runs its own compression workers internally). */
#ifndef FB_ARCHIVE_WRITER_H
#define FB_ARCHIVE_WRITER_H

#include <stdbool.h>
#include <stdint.h>

#include "fb_error.h"
#include "fb_hash.h"
#include "fb_types.h"

typedef struct fb_archive_writer fb_archive_writer;

/* Frame `index` (c_size bytes in the file, d_size of tar stream, checksum
 * as the seek table records it) has just been written to fd, right after
 * the frames before it. Called on the thread that adds the entries, in
 * frame order; it must not call back into the writer. */
typedef void (*fb_archive_written_fn)(void *ctx, uint64_t index, uint32_t c_size,
                                      uint32_t d_size, uint32_t checksum);

typedef struct fb_archive_writer_options {
    int level;           /* zstd level, 1..19 */
    uint64_t frame_size; /* max uncompressed bytes per frame, 64 KiB..64 MiB */
    unsigned threads;    /* compression workers; 0 = one per online core */
    const char *name;    /* the archive as error messages name it (copied);
                          * NULL = "archive" */
    /* Polled before each chunk of a file's data: once set, add_file fails
     * with FB_EINTERRUPTED (the writer is then failed). NULL: never. */
    const fb_cancel *cancel;
    /* Told of every frame once it is in the file (a reader that follows
     * the writer, see fb_archive_follow.h). NULL: no one. */
    fb_archive_written_fn on_written;
    void *written_ctx;
    /* The caller reads the whole file back and hashes it there: the
     * writer then skips its own SHA-256 of the output, and the summary's
     * sha256 is left zero. */
    bool no_output_hash;
    /* Also take each file's XXH3-128 fingerprint (the result's
     * fingerprint), for a caller that reads the files back and compares. */
    bool file_fingerprints;
} fb_archive_writer_options;

typedef struct fb_archive_file_result {
    uint64_t offset; /* where the file's data starts in the uncompressed tar stream */
    uint8_t sha256[FB_SHA256_LEN]; /* of the bytes stored */
    /* XXH3-128 of the same bytes, canonical form (fb_hash.h); zero unless
     * the options ask for file_fingerprints. */
    uint8_t fingerprint[FB_XXH128_LEN];
} fb_archive_file_result;

typedef struct fb_archive_summary {
    uint64_t compressed_size;   /* bytes written to fd, seek table included */
    uint64_t uncompressed_size; /* length of the tar stream */
    uint64_t frames;            /* data frames (seek table frame not counted) */
    uint8_t sha256[FB_SHA256_LEN]; /* of every byte written to fd (zero with
                                    * no_output_hash) */
} fb_archive_summary;

/* fd: borrowed; written sequentially with write(); must stay open until
 * _finish or _free. Returns 0, FB_EINVAL (bad options), FB_ENOMEM. */
int fb_archive_writer_new(int fd, const fb_archive_writer_options *opts, fb_archive_writer **out,
                          fb_error *err);

/* Entries. path is relative ("logs/run.log"), raw bytes, no trailing slash.
 * meta->type must match the function. Returns 0 or a negative code; after an
 * error the writer is failed and only _free is valid. */
int fb_archive_writer_add_dir(fb_archive_writer *w, const char *path, const fb_entry_meta *meta,
                              fb_error *err);
int fb_archive_writer_add_symlink(fb_archive_writer *w, const char *path,
                                  const fb_entry_meta *meta, const char *target, fb_error *err);
/* link_path: path of an earlier file entry of this archive. */
int fb_archive_writer_add_hardlink(fb_archive_writer *w, const char *path,
                                   const fb_entry_meta *meta, const char *link_path,
                                   fb_error *err);
/* Stores exactly meta->size bytes read with read() from src_fd (borrowed) at
 * its current position. If the source ends early the archive cannot be kept
 * consistent: returns FB_ECHANGED naming the path ("shrank while being
 * read"). Read errors give FB_EIO naming the path. */
int fb_archive_writer_add_file(fb_archive_writer *w, const char *path, const fb_entry_meta *meta,
                               int src_fd, fb_archive_file_result *res, fb_error *err);
/* Stores the meta->size bytes of data, a file the caller has already read
 * whole (a small one, read ahead of the writer). */
int fb_archive_writer_add_data(fb_archive_writer *w, const char *path, const fb_entry_meta *meta,
                               const void *data, fb_archive_file_result *res, fb_error *err);

/* Writes the tar end, the last frame and the seek table. Does not fsync. */
int fb_archive_writer_finish(fb_archive_writer *w, fb_archive_summary *out, fb_error *err);

/* Accepts NULL. Stops the workers; an unfinished archive is left incomplete. */
void fb_archive_writer_free(fb_archive_writer *w);

/* Number of workers that options->threads resolves to on this machine. */
unsigned fb_archive_writer_resolve_threads(unsigned threads);

#endif
