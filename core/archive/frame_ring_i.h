/* The frame ring of the archive writer: the tar stream is poured into frames
 * of frame_size bytes (the last one shorter, and any the writer ends early
 * with fb_frame_ring_end_frame), each compressed as an
 * independent zstd frame by a pool of worker threads, recorded in the seek
 * table and hashed in order, and written to the archive file in order by the
 * thread that fills the frames. A ring of (threads + 2) frame slots bounds
 * the memory whatever the archive size. archive_writer.c formats the tar
 * stream into it; see docs/archive-format.md, "How the writer produces it".
 *
 * Division of work: the filling thread copies (or reads) the stream into
 * the frame being filled and write()s the finished frames in order; the
 * workers compress, and whichever worker finishes the oldest frame not yet
 * hashed takes the "hashing turn": it adds the compressed bytes to the
 * archive SHA-256 in order and records the frame in the seek table.
 * Hashing the output on the filling thread made it the bottleneck for
 * incompressible data, where compression is cheap. The write()s stay on the
 * filling thread, so the archive's writes are one thread's sequence of
 * calls (fault-injection tests count them per thread). */
#ifndef FB_FRAME_RING_I_H
#define FB_FRAME_RING_I_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fb_archive_writer.h"
#include "fb_error.h"
#include "fb_hash.h"
#include "fb_seek_table.h"

typedef struct fb_frame_slot {
    uint8_t *in;      /* frame_size bytes, allocated on first use */
    size_t in_len;
    uint64_t d_end;   /* stream offset where the frame ends, set when submitted */
    uint8_t *out;     /* out_cap bytes */
    size_t result;    /* ZSTD_compress2's return value; guarded by mu */
    bool done;        /* compression finished; guarded by mu */
    /* Its seek table entry, set by the hashing turn before it counts the
     * frame hashed; the filling thread reads it once it sees that count. */
    fb_frame_entry entry;
} fb_frame_slot;

typedef struct fb_frame_ring {
    int fd;
    const char *name; /* borrowed from the writer */
    int level;
    size_t frame_size;
    size_t out_cap;
    unsigned n_threads;
    bool hash_output; /* keep the archive SHA-256 (off: the caller reads it back) */
    fb_archive_written_fn on_written; /* may be NULL */
    void *written_ctx;
    /* Called before a slot is refilled: every reader of the stream bytes
     * before d_end (the end of the frame it held) must be done with them.
     * May be NULL. */
    void (*before_reuse)(void *ctx, uint64_t d_end);
    void *reuse_ctx;

    /* Frame sequence numbers: frame s lives in slots[s % n_slots]. Frames
     * [written, submitted) are with the workers or waiting to be written;
     * cur, when set, is frame `submitted` being filled. */
    fb_frame_slot *slots;
    size_t n_slots;
    fb_frame_slot *cur;
    uint64_t submitted; /* guarded by mu (read by workers) */
    uint64_t taken;     /* guarded by mu */
    uint64_t hashed;    /* guarded by mu: frames hashed and in the seek table */
    bool hashing;       /* guarded by mu: a worker has the hashing turn */
    int async_code;     /* guarded by mu: the hashing turn's first failure */
    fb_error async_error;
    uint64_t written;   /* filling thread only */

    pthread_mutex_t mu;
    pthread_cond_t work_cv; /* a frame was submitted, or stop */
    pthread_cond_t done_cv; /* a frame was hashed, the turn ended, or it failed */
    bool sync_ready;
    pthread_t *workers;
    unsigned n_started;
    unsigned n_idle; /* guarded by mu */
    bool stop;       /* guarded by mu */

    /* Owned by the hashing turn until every frame is hashed, then by the
     * filling thread (the seek table and the summary). */
    fb_sha256 out_hash;
    bool out_hash_ready;
    fb_frame_entry *frames;
    size_t n_frames, cap_frames;

    uint64_t c_total; /* bytes written to fd */
    uint64_t flushed; /* bytes of fd whose writeback was started */
    uint64_t d_total; /* bytes of tar stream taken in */

    int failed;     /* first error code, 0 while healthy */
    fb_error error; /* its message */
} fb_frame_ring;

/* Sets up g (no thread starts before the first full frame). Returns 0 or
 * FB_ENOMEM; g is then to be released with fb_frame_ring_fini either way. */
int fb_frame_ring_init(fb_frame_ring *g, int fd, const char *name,
                       const fb_archive_writer_options *opts, fb_error *err);
/* Stops the workers and frees everything. */
void fb_frame_ring_fini(fb_frame_ring *g);

/* Where the next stream bytes go: *dst with room for *room bytes, in the
 * frame being filled (writing out finished frames to free a slot). Returns
 * 0 or the ring's error (g->failed, g->error). */
int fb_frame_ring_room(fb_frame_ring *g, uint8_t **dst, size_t *room);
/* The n bytes at the last *dst are stream: counts them and hands the frame
 * to the workers once full. */
int fb_frame_ring_commit(fb_frame_ring *g, size_t n);
/* Ends the frame being filled here, shorter than frame_size (nothing when
 * it is empty): the next bytes start a frame. Returns 0 or the ring's
 * error. */
int fb_frame_ring_end_frame(fb_frame_ring *g);
/* Bytes in the frame being filled. */
size_t fb_frame_ring_filled(const fb_frame_ring *g);
/* Compresses the last frame, writes every frame and the seek table. */
int fb_frame_ring_finish(fb_frame_ring *g, fb_archive_summary *out);

#endif
