/* What archive_reader.c (random access) and archive_stream.c (the
 * sequential stream) share: the reader itself, its pool of decompression
 * contexts and the decoding of one frame under every check. */
#ifndef FB_ARCHIVE_READER_I_H
#define FB_ARCHIVE_READER_I_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <zstd.h>

#include "fb_archive_reader.h"
#include "fb_frame_cache.h"
#include "fb_frame_prefetch.h"
#include "seek_table_i.h"

/* Sequential streams a reader tells apart (files of one archive read at
 * once). */
#define FB_ARCHIVE_STREAMS 8

/* Where one stream's reads have got to (archive_reader.c, seq_track). */
typedef struct fb_archive_stream_pos {
    uint64_t end;  /* furthest end of its reads */
    uint64_t run;  /* bytes it has read */
    uint64_t used; /* seq_clock at its last read; 0: free */
} fb_archive_stream_pos;

/* Frames decoded at once into the shared cache, tracked so that no frame
 * is decoded twice at once; more threads than this decode untracked. */
#define FB_ARCHIVE_DECODING_MAX 16

struct fb_archive_reader {
    int fd;
    char *name;
    uint64_t file_size;
    fb_seek_table table;
    fb_frame_cache *cache; /* borrowed, may be NULL */
    uint64_t key;

    /* Without a shared cache, the last decoded frame is kept so sequential
     * small reads do not decode the same frame again and again. The frames
     * live in a private zero-byte cache, which only does reference counting. */
    fb_frame_cache *own_cache;
    pthread_mutex_t slot_lock;
    fb_frame_ref *slot_ref;
    size_t slot_frame;

    /* Random access maps an offset to a frame through the sizes of every
     * frame before it, so frames 0 .. proven-1 are proven against the
     * table (frame_proof_i.h) before any offset at or past them is
     * served. Proven in order, on demand: a small file near the start of
     * a large archive costs a few header reads. `proven` is read without
     * the lock (acquire) and advanced under prove_lock (release). */
    pthread_mutex_t prove_lock;
    atomic_size_t proven;
    size_t bad_frame;  /* guarded by prove_lock: first frame whose proof failed */
    fb_error bad_err;  /* guarded by prove_lock: why */
    fb_archive_proof identity; /* the file as fstat saw it at open (frames unused) */
    /* decoded[i]: frame i decoded once to exactly its declared size, so
     * its size is proven by its content, not only by its header (see
     * fb_archive_reader_pread_anchored). Set and read with atomics. */
    _Atomic unsigned char *decoded;
    bool keep_frames; /* the key's frames outlive r (fb_archive_reader_keep_frames) */

    /* Frames being decoded into the shared cache right now, by a reader
     * or the prefetcher (fb_frame_prefetch.h): a thread missing one of
     * them waits for it instead of decoding it a second time (readers of
     * one file often miss the same 1 MiB frame at once: the kernel sends
     * several 128 KiB reads of it together). pf_frame: the frame asked of
     * the prefetcher, also in the set until its job ends. streams: where
     * the sequential readers have got to, to tell them apart. */
    fb_frame_prefetcher *pf;   /* borrowed, may be NULL */
    pthread_mutex_t pf_lock;
    pthread_cond_t pf_cv;      /* a frame left the set */
    size_t decoding[FB_ARCHIVE_DECODING_MAX]; /* guarded by pf_lock */
    size_t n_decoding;         /* guarded by pf_lock */
    size_t pf_frame;           /* guarded by pf_lock: SIZE_MAX when none */
    size_t pf_asked;           /* guarded by pf_lock: last frame asked for, SIZE_MAX none */
    pthread_mutex_t seq_lock;
    fb_archive_stream_pos streams[FB_ARCHIVE_STREAMS]; /* guarded by seq_lock */
    uint64_t seq_clock;                                /* guarded by seq_lock */
};

/* A new decompression context with the window limit set (NULL: out of
 * memory), for a thread that keeps its own. */
ZSTD_DCtx *fb_archive_dctx_new(void);
/* A decompression context kept by r's frame cache (the shared one, else
 * its own), or a new one (NULL: out of memory); give it back with
 * fb_archive_dctx_release, which keeps it there for the next decode of any
 * reader of that cache. Thread-safe. */
ZSTD_DCtx *fb_archive_dctx_acquire(fb_archive_reader *r);
void fb_archive_dctx_release(fb_archive_reader *r, ZSTD_DCtx *d);

/* Decodes frame i from its c_size compressed bytes in `in` into `out`
 * (capacity exactly d_size), checking the frame against the seek table.
 * Returns 0, FB_ECORRUPT (names r's file and the frame). Thread-safe. */
int fb_archive_decode_frame(fb_archive_reader *r, ZSTD_DCtx *dctx, size_t i, const uint8_t *in,
                            uint8_t *out, fb_error *err);
/* The same for frame i described by f, outside any reader (the follower of
 * a file being written, fb_archive_follow.h); name starts its messages. */
int fb_frame_decode_checked(const fb_frame_entry *f, bool has_checksums, const char *name,
                            ZSTD_DCtx *dctx, size_t i, const uint8_t *in, uint8_t *out,
                            fb_error *err);

/* Makes *buf (of *cap bytes) hold at least need bytes (1 for 0), for frame
 * buffers whose old contents are never needed: no realloc, no copy.
 * Returns 0, or -1 out of memory with *buf unchanged. */
int fb_frame_buffer_grow(uint8_t **buf, size_t *cap, size_t need);

#endif
