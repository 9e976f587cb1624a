/* Private frame-cache helpers for the archive reader. */
#ifndef FB_FRAME_CACHE_I_H
#define FB_FRAME_CACHE_I_H

#include "fb_frame_cache.h"

/* Takes one more reference on ref (paired with fb_frame_ref_release). */
void fb_frame_ref_retain(fb_frame_cache *cache, fb_frame_ref *ref);

#endif
