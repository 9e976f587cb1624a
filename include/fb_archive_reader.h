/* Reads archive.tar.zst by frames: any byte range of the uncompressed tar
 * stream is served by decompressing only the frames that cover it (seek
 * table, binary search), through a shared fb_frame_cache.
 *
 * The archive is hostile input: the seek table is validated against the file
 * size, the window size is capped (ZSTD_d_windowLogMax 27), every frame must
 * be exactly one zstd frame of exactly its compressed size that decompresses
 * to exactly its declared size with a good content checksum. Any failure is
 * FB_ECORRUPT; wrong bytes are never returned.
 *
 * Threads: fb_archive_reader_pread and the getters are safe to call from any
 * number of threads at once on one reader. A fb_archive_stream is used by one
 * thread. */
#ifndef FB_ARCHIVE_READER_H
#define FB_ARCHIVE_READER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fb_error.h"
#include "fb_frame_cache.h"
#include "fb_frame_prefetch.h"
#include "fb_seek_table.h"
#include "fb_types.h"

typedef struct fb_archive_reader fb_archive_reader;

/* Puts a decompression context in cache's spares now, for the first reader
 * of cache to take, rather than make one while a first read waits (zstd
 * allocates and sets up about 100 KB: 0.04 ms in a fresh process). Readers
 * of cache take their contexts from there and give them back after each
 * decode. Returns 0 or FB_ENOMEM. Thread-safe. */
int fb_archive_prepare(fb_frame_cache *cache, fb_error *err);

/* fd: an open archive; on success the reader owns it (closed by _free), on
 * failure the caller still does. cache: borrowed, may be NULL (no caching),
 * must outlive the reader. name is used in messages (copied).
 * Returns 0, FB_ECORRUPT, FB_EIO, FB_ENOMEM. */
int fb_archive_reader_open(int fd, fb_frame_cache *cache, const char *name,
                           fb_archive_reader **out, fb_error *err);
/* Accepts NULL. */
void fb_archive_reader_free(fb_archive_reader *r);

/* Copies up to len bytes of the uncompressed stream starting at offset into
 * buf; *out_len is len clipped at the end of the stream (0 past the end).
 * Returns 0, FB_ECORRUPT, FB_EIO, FB_ENOMEM. */
int fb_archive_reader_pread(fb_archive_reader *r, void *buf, size_t len, uint64_t offset,
                            size_t *out_len, fb_error *err);

/* What a reader has proven of its archive's frame map (before serving an
 * offset it proves every frame up to it against the seek table, see
 * core/archive/frame_proof_i.h), so that a later reader of the very same file need
 * not prove it again. Identity is the file's device, inode, size, mtime and
 * ctime (any write to the file changes its ctime) and a digest of the seek
 * table the proof was made against (a table that rotted on disk since, with
 * no write, is not the one proven). Frames are still checked whenever they
 * are decoded. */
typedef struct fb_archive_proof {
    uint64_t dev, ino, size;
    int64_t mtime_sec, mtime_nsec, ctime_sec, ctime_nsec;
    uint64_t table_digest;
    size_t frames; /* frames 0 .. frames-1 are proven */
    /* The frame cache key its decoded frames are under, and whether they
     * outlive the reader (fb_archive_reader_keep_frames). */
    uint64_t frame_key;
    bool frames_kept;
} fb_archive_proof;

/* Fills out with what r has proven so far. Any thread. */
void fb_archive_reader_get_proof(fb_archive_reader *r, fb_archive_proof *out);
/* Takes over p when r's file is the one p was proven on (same identity as
 * r saw at open, and the same number of frames); otherwise does nothing.
 * Call before r is shared between threads. */
void fb_archive_reader_adopt_proof(fb_archive_reader *r, const fb_archive_proof *p);
/* Lets p decode frames ahead of r's sequential reads into r's shared
 * cache; nothing without a cache. r tells apart up to 8 streams (files of
 * one archive read at once): a read starting within 1 MiB of where one
 * ended continues it, and once a stream has read 64 KiB each of its reads
 * asks for the first of the next two frames not cached yet, and drops the
 * frame two behind it. Reads flagged FB_ARCHIVE_READ_PROOF are no stream.
 * p is borrowed and must outlive r. Call before r is shared between
 * threads. */
void fb_archive_reader_set_prefetcher(fb_archive_reader *r, fb_frame_prefetcher *p);
/* Leaves r's decoded frames in its shared cache when r is freed, so that a
 * later reader adopting r's proof (same file, same seek table: the frames
 * were checked against exactly that) finds them without decoding again. The
 * caller then owns the key (the proof's frame_key): fb_frame_cache_forget it
 * when no reader will adopt that proof any more. Call when r is no longer
 * shared, just before fb_archive_reader_get_proof and _free. */
void fb_archive_reader_keep_frames(fb_archive_reader *r);

/* fb_archive_reader_pread places an offset through the sizes of the frames
 * before it, each proven against its own header (core/archive/frame_proof_i.h);
 * damage that changed both a frame's header and the seek table the same
 * way would still shift what follows that frame. The anchored read closes
 * that: anchor is a stream offset whose place the caller has proven (0,
 * the start of the stream; the mount: a file's tar header), and every frame
 * from the anchor's up to the one before offset is decoded once (per
 * reader) before any byte is served, so that their sizes are the ones
 * their contents have. Sequential reads cost nothing more; a first read
 * far from the anchor decodes the frames in between. Same returns as
 * fb_archive_reader_pread, FB_EMISUSE when anchor > offset. */
int fb_archive_reader_pread_anchored(fb_archive_reader *r, void *buf, size_t len,
                                     uint64_t offset, uint64_t anchor, size_t *out_len,
                                     fb_error *err);

/* Flags of the reads below. CHECKED: the caller checks every byte it
 * reads against a digest it trusts (the mount: a small file's SHA-256 from
 * the manifest, on open), so the frame map before offset is not proven
 * first. Frames are still decoded under every check of their own; a byte
 * misplaced by a lying map fails the caller's digest instead. This saves a
 * first read deep in a large archive the proof of every frame before it
 * (about 9 small preads a frame: 3.5 ms for a file 590 MB in). */
#define FB_ARCHIVE_READ_CHECKED 1u
/* PROOF: a read made to check a member (its tar header, the pax header
 * before it, its hash), which says nothing of how the file is read: it is
 * left out of the sequential reader's tracking (no frames decoded ahead,
 * none dropped behind). The 64 KiB looked at for a pax header before a
 * small file's header looked like a sequential run, and two more 1 MiB
 * frames were decoded for a 3 KB file. */
#define FB_ARCHIVE_READ_PROOF 2u

/* fb_archive_reader_pread_anchored with flags. */
int fb_archive_reader_pread_flags(fb_archive_reader *r, void *buf, size_t len, uint64_t offset,
                                  uint64_t anchor, unsigned flags, size_t *out_len,
                                  fb_error *err);

/* A part of a read left where it is, in a decoded frame of the cache,
 * which stays pinned (never evicted nor freed) until the span is released:
 * a reply can be written straight from it, without a copy. */
typedef struct fb_archive_span {
    const uint8_t *data;
    size_t len;
    fb_frame_cache *owner; /* private: what the release needs */
    struct fb_frame_ref *ref;
} fb_archive_span;

/* fb_archive_reader_pread_flags without the copy: the bytes as up to
 * max spans, in order; *out_len is their total, which is less than len
 * clipped at the end of the stream only when max spans did not suffice
 * (frames smaller than the read): the caller then releases them and
 * copies with fb_archive_reader_pread_anchored instead. On error no span
 * is held. Release with fb_archive_spans_release, from any thread, before
 * r is freed or forgets its frames. Same returns as the anchored read. */
int fb_archive_reader_pread_spans(fb_archive_reader *r, size_t len, uint64_t offset,
                                  uint64_t anchor, unsigned flags, fb_archive_span *spans,
                                  size_t max, size_t *n_spans, size_t *out_len, fb_error *err);
/* Unpins n spans (and clears them). */
void fb_archive_spans_release(fb_archive_span *spans, size_t n);

uint64_t fb_archive_reader_uncompressed_size(const fb_archive_reader *r);
/* The stream offset where the frame holding stream offset off starts, by
 * the seek table (the stream's size when off is past its end). */
uint64_t fb_archive_reader_frame_start(const fb_archive_reader *r, uint64_t off);
uint64_t fb_archive_reader_file_size(const fb_archive_reader *r);
const fb_seek_table *fb_archive_reader_seek_table(const fb_archive_reader *r);

/* Sequential pass over the whole archive for verify and restore: returns the
 * frames in order (each checked as above, bypassing the cache) and hashes
 * every byte of the archive file on the way, seek table included. The next
 * frames are read and decoded ahead on up to two threads of the stream's
 * own (started by the first fb_archive_stream_next), holding up to 5 frames
 * (4 with frames over 4 MiB, 3 over 8 MiB). The frames returned and the
 * error, and where it comes, are exactly those of a one-thread pass. */
typedef struct fb_archive_stream fb_archive_stream;

/* r: borrowed, must outlive the stream. */
int fb_archive_stream_new(fb_archive_reader *r, fb_archive_stream **out, fb_error *err);
/* Next frame's decompressed bytes: *data valid until the next call or _free.
 * At the end returns 0 with *len == 0. */
int fb_archive_stream_next(fb_archive_stream *s, const uint8_t **data, size_t *len,
                           fb_error *err);
/* Optional, before the first fb_archive_stream_next (else FB_EMISUSE): fn
 * sees every frame's decoded bytes exactly once, in stream order, before that
 * frame is returned by fb_archive_stream_next, and never for an empty frame.
 * It may run on one of the stream's read-ahead threads, never two calls at
 * once. What the calls for the frames returned so far did is visible to the
 * caller's thread; calls for later frames may be running meanwhile, so
 * state they change is read with atomics until the stream has ended (or is
 * freed). A negative FB_E* return fails the stream at that frame with fn's
 * err. Lets verify hash the decoded bytes on the core that decoded them. */
typedef int (*fb_archive_frame_fn)(void *ctx, const uint8_t *data, size_t len, fb_error *err);
int fb_archive_stream_set_frame_hook(fb_archive_stream *s, fb_archive_frame_fn fn, void *ctx,
                                     fb_error *err);
/* After the end was reached: SHA-256 of the entire archive file. Returns
 * FB_EMISUSE before the end. */
int fb_archive_stream_file_sha256(fb_archive_stream *s, uint8_t out[FB_SHA256_LEN],
                                  fb_error *err);
void fb_archive_stream_free(fb_archive_stream *s);

#endif
