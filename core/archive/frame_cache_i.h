/* Private frame-cache helpers for the archive reader. */
#ifndef FB_FRAME_CACHE_I_H
#define FB_FRAME_CACHE_I_H

#include <zstd.h>

#include "fb_frame_cache.h"

/* Takes one more reference on ref (paired with fb_frame_ref_release). */
void fb_frame_ref_retain(fb_frame_cache *cache, fb_frame_ref *ref);

/* A buffer of exactly len bytes for a frame about to be decoded: a spare
 * that a frame leaving the cache gave back (its pages already faulted in),
 * or a new one. NULL: out of memory. Hand it to fb_frame_cache_insert, or
 * give it back with fb_frame_cache_buffer_return. Thread-safe. */
uint8_t *fb_frame_cache_buffer(fb_frame_cache *cache, size_t len);
void fb_frame_cache_buffer_return(fb_frame_cache *cache, uint8_t *data, size_t len);
/* A buffer of at least need bytes for work that does not outlive the call
 * (the compressed bytes of a frame being decoded): the smallest spare that
 * is large enough, or a new one. *size: what it holds, to give back with
 * fb_frame_cache_buffer_return(cache, data, *size). NULL: out of memory. */
uint8_t *fb_frame_cache_scratch(fb_frame_cache *cache, size_t need, size_t *size);

/* Decompression contexts kept for the next decode, of any reader of the
 * cache (a context is about 100 KB that zstd allocates and sets up: 0.04
 * ms of a first read in a fresh process). take: a kept one, or NULL. give:
 * kept while there is room, else freed (d may be NULL). Thread-safe. */
ZSTD_DCtx *fb_frame_cache_dctx_take(fb_frame_cache *cache);
void fb_frame_cache_dctx_give(fb_frame_cache *cache, ZSTD_DCtx *d);

#endif
