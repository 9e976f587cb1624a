/* A cache of decompressed frames bounded in bytes, shared by any number of
 * archive readers and threads (the mount uses one per daemon).
 *
 * Threads: every function is thread-safe. Frames are reference counted, so an
 * evicted frame stays valid until its last user releases it; the byte bound
 * counts cached frames (frames in use but evicted are briefly extra, and up
 * to 4 MiB of buffers of frames gone are kept for the next decodes). */
#ifndef FB_FRAME_CACHE_H
#define FB_FRAME_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "fb_error.h"

typedef struct fb_frame_cache fb_frame_cache;

typedef struct fb_frame_cache_stats {
    uint64_t hits;
    uint64_t misses;
    uint64_t evictions;
    size_t bytes;     /* decompressed bytes currently cached */
    size_t max_bytes; /* the bound given to _new */
} fb_frame_cache_stats;

/* max_bytes 0 means "cache nothing" (each read decompresses). */
int fb_frame_cache_new(size_t max_bytes, fb_frame_cache **out, fb_error *err);
/* Accepts NULL. Every reader using the cache must be freed first. */
void fb_frame_cache_free(fb_frame_cache *cache);
void fb_frame_cache_get_stats(fb_frame_cache *cache, fb_frame_cache_stats *out);

/* ---- used by the archive reader ----
 * Keys are (archive_key, frame_index); archive_key comes from
 * fb_frame_cache_new_key() so two readers never share entries. */
typedef struct fb_frame_ref fb_frame_ref;

uint64_t fb_frame_cache_new_key(fb_frame_cache *cache);
/* Returns a referenced frame or NULL on a miss. */
fb_frame_ref *fb_frame_cache_lookup(fb_frame_cache *cache, uint64_t archive_key, uint32_t frame);
/* Inserts data (malloc'd, ownership passes to the cache even on failure) and
 * returns a reference to it (or to an entry another thread inserted first).
 * Returns NULL only on allocation failure. */
fb_frame_ref *fb_frame_cache_insert(fb_frame_cache *cache, uint64_t archive_key, uint32_t frame,
                                    uint8_t *data, size_t len);
const uint8_t *fb_frame_ref_data(const fb_frame_ref *ref);
size_t fb_frame_ref_size(const fb_frame_ref *ref);
void fb_frame_ref_release(fb_frame_cache *cache, fb_frame_ref *ref);
/* Drops every cached frame of one archive (reader being freed). */
void fb_frame_cache_forget(fb_frame_cache *cache, uint64_t archive_key);
/* Takes one frame out (freed once no reference holds it), if cached. */
void fb_frame_cache_drop(fb_frame_cache *cache, uint64_t archive_key, uint32_t frame);

#endif
